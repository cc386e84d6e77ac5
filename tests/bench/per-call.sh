#!/usr/bin/env bash
# Where a call's CPU goes, per variant (not part of the test suite): for each NAME=BINARY[@EXTRA.toml]
# (as in ab.sh), the gateway's idle CPU, then under `search_incident` load ($DUR s, default 8)
# (c = $C, default 16, both transports) its user and system CPU per call, context switches per
# call (voluntary + involuntary, all threads, from /proc) and its thread count. Counts, not
# rates: robust to a busy machine, unlike calls/s. Variants take turns, $REPS rounds (default 3).
set -euo pipefail
. "$(dirname "$0")/variant-config.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MCPLOAD="$ROOT/target/bench/release/mcpload"
C=${C:-16}; DUR=${DUR:-8}; REPS=${REPS:-3}; TOKEN=bench-token
[ $# -ge 1 ] || { sed -n '2,6p' "$0"; exit 2; }
GWDIR=$(mktemp -d); LOGS=$(mktemp -d)
PIDS=(); NAMES=(); PORTS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$GWDIR"; }
trap cleanup EXIT
port=18950
for v in "$@"; do
  name=${v%%=*}; spec=${v#*=}; bin=${spec%%@*}; extra=""
  [ "$spec" != "$bin" ] && extra=${spec#*@}
  mkdir -p "$GWDIR/$name"; cfg="$GWDIR/$name/switchboard.toml"
  variant_config "$extra" > "$cfg"
  port=$((port + 1))
  "$bin" serve --config "$cfg" --agents "${AGENTS:-$ROOT/agents}" --data "$GWDIR/$name/data" \
    --listen "127.0.0.1:$port" >>"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!"); NAMES+=("$name"); PORTS+=("$port")
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
snap() { # pid -> "utime stime vcsw ivcsw threads" (ticks, counts)
  python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]; f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
ut, st = int(f[11]), int(f[12]); v = iv = 0; tasks = os.listdir(f"/proc/{pid}/task")
for t in tasks:
    for line in open(f"/proc/{pid}/task/{t}/status"):
        if line.startswith("voluntary_ctxt_switches"): v += int(line.split()[1])
        if line.startswith("nonvoluntary_ctxt_switches"): iv += int(line.split()[1])
print(ut, st, v, iv, len(tasks))
PY
}
HZ=$(getconf CLK_TCK)
echo "| variant | transport | user µs/call | sys µs/call | ctx switches/call | threads | idle CPU ms/s |"
echo "|---|---|---:|---:|---:|---:|---:|"
for rep in $(seq "$REPS"); do
  for i in "${!NAMES[@]}"; do
    pid=${PIDS[$i]}
    a=($(snap "$pid")); sleep 3; b=($(snap "$pid"))
    idle=$(python3 -c "print(round(((${b[0]}-${a[0]})+(${b[1]}-${a[1]}))*1000/$HZ/3,1))")
    for t in sse streamable; do
      path=$([ $t = sse ] && echo sse || echo mcp)
      a=($(snap "$pid"))
      out=$("$MCPLOAD" --transport $t --url "http://127.0.0.1:${PORTS[$i]}/agents/servicenow/$path" \
        -c "$C" -d "$DUR" --threads 1 --tool search_incident \
        --args '{"query":"VPN","limit":5}' --bearer "$TOKEN" 2>/dev/null | tail -n 1)
      b=($(snap "$pid"))
      n=$(echo "$out" | grep -o '"calls":[0-9]*' | head -1 | cut -d: -f2); n=${n:-1}
      python3 -c "
n=$n; hz=$HZ
print(f'| ${NAMES[$i]} | $t | {(${b[0]}-${a[0]})*1e6/hz/n:.1f} | {(${b[1]}-${a[1]})*1e6/hz/n:.1f} | {((${b[2]}-${a[2]})+(${b[3]}-${a[3]}))/n:.2f} | ${b[4]} | $idle |')"
    done
  done
done
