# Sourced by the benchmark scripts: which gateway they measure and how it is built.
#
# The gateway is measured as it ships: the `production` profile (Cargo.toml: release with fat
# LTO and one codegen unit; what the Docker image builds), or SWITCHBOARD_BIN. CARGO_TARGET_DIR
# moves the default as it moves cargo's output. `cargo run --release` stays the quick build for
# development; A/B runs (ab.sh, instructions.sh) take any binaries they are given.
GW=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/production/switchboard}
# Absolute: the scripts start the gateway from a directory of its own (a relative
# SWITCHBOARD_BIN, e.g. target/release/switchboard, failed with only "port ... did not open").
case "$GW" in /*) ;; *) GW=$PWD/$GW ;; esac

# Builds the gateway GW names (unless SWITCHBOARD_BIN chose another).
build_gateway() {
  if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --profile production --locked -q)
  fi
}

# Bare rmcp (../shared/bench/servers/rmcp-baseline) is built with the same optimiser settings
# as the gateway (fat LTO, one codegen unit) in a target directory of its own, so that a ratio
# between the two compares code, not compiler flags.
peer_release() { # MANIFEST: builds it like the gateway into $WORK/lto
  CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_TARGET_DIR="$WORK/lto" \
    cargo build --release --locked -q --manifest-path "$1"
}
