# Multi-stage build: a small, non-root runtime image with the gateway and its shipped agents.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked && strip target/release/switchboard

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /app switchboard \
 && mkdir -p /app/data && chown switchboard /app/data
WORKDIR /app
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
COPY agents /app/agents
USER switchboard
EXPOSE 8080
VOLUME ["/app/data"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--agents", "/app/agents", "--data", "/app/data"]
