#!/usr/bin/env bash
# Instructions per call (callgrind: deterministic, unlike time on a shared machine; not part of
# the test suite). For each NAME=BINARY[@EXTRA.toml]: the gateway under valgrind, counters
# zeroed once it serves, then CALLS (default 2000) `search_incident` calls at c = 4 over each
# transport, dumped after each; prints instructions per call (all threads, user space).
# A NAME beginning with `rmcp` is the bare rmcp baseline (../shared/bench/servers/rmcp-baseline:
# `BINARY --port P`, its own 100 incidents, Streamable HTTP only, no token), for comparison.
set -euo pipefail
. "$(dirname "$0")/variant-config.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MCPLOAD="$ROOT/target/bench/release/mcpload"
CALLS=${CALLS:-2000}; DUR=${DUR:-90}; TOKEN=bench-token
OUT=${OUT:-$ROOT/target/bench/instructions/$(date -u +%Y%m%dT%H%M%SZ)}; mkdir -p "$OUT"
port=18990
for v in "$@"; do
  name=${v%%=*}; spec=${v#*=}; bin=${spec%%@*}; extra=""
  [ "$spec" != "$bin" ] && extra=${spec#*@}
  dir=$(mktemp -d); cfg="$dir/switchboard.toml"
  variant_config "$extra" > "$cfg"
  port=$((port + 1))
  if [ "${name#rmcp}" != "$name" ]; then
    cmd=("$bin" --port "$port"); transports="streamable"; base="http://127.0.0.1:$port"
    args='{"query":"payments","limit":5}'; auth=()
  else
    cmd=("$bin" serve --config "$cfg" --agents "${AGENTS:-$ROOT/agents}" --data "$dir/data" --listen "127.0.0.1:$port")
    transports="sse streamable"; base="http://127.0.0.1:$port/agents/servicenow"
    args='{"query":"VPN","limit":5}'; auth=(--bearer "$TOKEN")
  fi
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p" "${cmd[@]}" >"$OUT/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  for t in $transports; do
    path=$([ $t = sse ] && echo sse || echo mcp)
    # A few calls first (first-use costs), then zero and measure.
    "$MCPLOAD" --transport $t --url "$base/$path" -c 4 \
      --max-calls 200 -d 15 --tool search_incident --args "$args" "${auth[@]}" >/dev/null 2>&1
    callgrind_control -z "$pid" >/dev/null
    "$MCPLOAD" --transport $t --url "$base/$path" -c 4 -d "$DUR" \
      --max-calls "$CALLS" --tool search_incident --args "$args" "${auth[@]}" >/dev/null 2>&1
    sleep 1 # the audit writer's batch (50 ms gather) is part of the calls' cost
    callgrind_control -d "$t" "$pid" >/dev/null
    f=$(ls -t "$OUT/$name.$pid".* | head -1)
    ir=$(grep -m1 '^summary:' "$f" | awk '{print $2}')
    echo "$name $t: $((ir / CALLS)) instructions/call ($f)"
    if [ -n "${RAW:-}" ]; then echo "{\"mode\":\"instructions\",\"label\":\"$name\",\"transport\":\"$t\",\"calls\":$CALLS,\"instructions_per_call\":$((ir / CALLS))}" >> "$RAW"; fi
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$dir"
done
