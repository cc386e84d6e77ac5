#!/usr/bin/env bash
# How close one client's `requests_per_minute` holds across three replicas (not part of the
# tests). Starts Redis and three replicas (the production build, or SWITCHBOARD_BIN) in cluster
# mode with one client limited to RATE requests per minute (burst BURST), then loads all three
# replicas at once with that client's token (mcpload, `search_incident` over Streamable HTTP,
# far more than the limit) for DUR seconds, REPS times, and compares the calls let through
# with what GCRA allows: BURST + RATE/60 x DUR.
#
#   tests/bench/cluster-rate.sh [--skip-build]   (RATE, BURST, DUR, REPS from the environment)
#
# Needs redis-server. Output: one line per repetition and the mean, on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
RATE=${RATE:-6000}; BURST=${BURST:-30}; DUR=${DUR:-20}; REPS=${REPS:-3}
BUILD=1; [ "${1:-}" = --skip-build ] && BUILD=0
. "$ROOT/tests/bench/binaries.sh" # GW: the production build, or SWITCHBOARD_BIN
command -v redis-server >/dev/null || { echo "redis-server is required" >&2; exit 1; }
if [ "$BUILD" = 1 ]; then
  build_gateway
  CARGO_TARGET_DIR="$ROOT/target/bench" cargo build --release --manifest-path "$ROOT/tests/bench/mcpload/Cargo.toml"
fi
M=${MCPLOAD:-$ROOT/target/bench/release/mcpload}
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
P_REDIS=18850; P=(18851 18852 18853)
redis-server --port $P_REDIS --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null 2>&1 &
PIDS+=($!); wait_port $P_REDIS
cat > "$WORK/switchboard.toml" <<TOML
[cluster]
redis_url = "redis://127.0.0.1:$P_REDIS"
heartbeat_ms = 500

[limits]
max_sessions = 1000

[[clients]]
name = "metered"
token = "metered-token"
agents = ["*"]
requests_per_minute = $RATE
burst = $BURST
TOML
for i in 0 1 2; do
  "$GW" serve --config "$WORK/switchboard.toml" --agents "$ROOT/agents" --data "$WORK/data$i" \
    --listen 127.0.0.1:${P[$i]} >"$WORK/gw$i.log" 2>&1 &
  PIDS+=($!); wait_port ${P[$i]}
done
allowed=$(python3 -c "print($BURST + $RATE / 60 * $DUR)")
echo "rate $RATE/min, burst $BURST, $DUR s: GCRA allows $allowed requests (each call is one; the sessions' initialize and initialized count too)"
total=0
for rep in $(seq "$REPS"); do
  sleep 2  # let the client's GCRA state recover fully between repetitions
  outs=()
  for i in 0 1 2; do
    "$M" --transport streamable --url http://127.0.0.1:${P[$i]}/agents/servicenow/mcp -c 4 \
      --warmup 0 -d "$DUR" --tool search_incident --args '{"query":"VPN","limit":1}' \
      --bearer metered-token 2>/dev/null | tail -1 > "$WORK/out$i.json" &
    outs+=($!)
  done
  wait "${outs[@]}"
  calls=$(python3 - "$WORK"/out*.json <<'PY'
import json, sys
print(sum(json.load(open(f))["calls"] for f in sys.argv[1:]))
PY
)
  # Each session's handshake (initialize + notifications/initialized) is a request too.
  requests=$((calls + 3 * 4 * 2))
  echo "rep $rep: $calls calls + 24 handshake requests = $requests let through ($(python3 -c "print(f'{($requests / $allowed - 1) * 100:+.1f} %')") vs allowed)"
  total=$((total + requests))
done
python3 -c "m = $total / $REPS; print(f'mean {m:.0f} let through vs {$allowed:.0f} allowed: {(m / $allowed - 1) * 100:+.1f} %')"
