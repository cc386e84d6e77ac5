# syntax=docker/dockerfile:1
#
# Switchboard: a small, non-root runtime image with the gateway and its shipped agents.
#
#   docker build -t switchboard:local .
#   docker run --rm -p 8080:8080 -v switchboard-data:/app/data switchboard:local
#
# Stage 1 builds the `production` profile (release with fat LTO, stripped: see Cargo.toml);
# dependencies are compiled in their own layer, so editing src/ recompiles only the crate.
# Stage 2 is debian:bookworm-slim (the same glibc as the build image) plus CA certificates for
# outbound HTTPS to LLM APIs.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV CARGO_TERM_COLOR=never

# 1. Dependencies only, cached until Cargo.toml or Cargo.lock change. A placeholder lib and
#    bin stand in for the crate; gcc (in the slim image) builds the bundled SQLite here.
#    Dev-dependencies (used by tests/ only) are not built.
COPY Cargo.toml Cargo.lock ./
# Build settings (SQLite compile flags) live in .cargo/config.toml.
COPY .cargo .cargo
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && cargo build --profile production --locked \
 && rm -rf src

# 2. The real sources. COPY keeps the files' original mtimes, which can be older than the
#    placeholder build: touch the crate roots so cargo rebuilds the crate, and check that the
#    result is the real binary (the stub prints no version).
COPY src src
RUN touch src/main.rs src/lib.rs \
 && cargo build --profile production --locked \
 && ./target/production/switchboard --version | grep '^switchboard '

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates is left unpinned on purpose: it should be the current one of bookworm.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin switchboard \
 && mkdir -p /app/agents /app/data \
 && chown 10001:10001 /app/data

WORKDIR /app
COPY --from=build /src/target/production/switchboard /usr/local/bin/switchboard
# The shipped agents; mount your own directory over /app/agents to replace them. A
# switchboard.toml (clients, limits, [server] settings) is read from /app/switchboard.toml
# when one is mounted there.
COPY agents /app/agents

# Numeric user, so runtimes that check runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8080
# /app/data holds the embedded SQLite incident store; it must be writable by uid 10001 (a new
# named volume inherits the ownership set above).
VOLUME ["/app/agents", "/app/data"]

# No curl in the image: the binary probes its own GET /healthz (exit 0 healthy, 1 not).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["switchboard", "healthcheck"]

# On SIGTERM (docker stop) the gateway stops accepting, ends sessions, drains in-flight calls
# within [server] shutdown_grace_secs (default 10) and exits 0. Give `docker stop` more than
# that: `docker stop -t 15`, or `stop_grace_period: 15s` in compose.
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchboard"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--agents", "/app/agents", "--data", "/app/data"]
