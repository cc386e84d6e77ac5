#!/usr/bin/env bash
# A/B benchmark: the same `search_incident` load against variants of the gateway (builds or
# settings), all running side by side and taking turns, so that the machine's drift touches
# them alike (not part of the test suite).
#
#   tests/bench/ab.sh NAME=BINARY[@EXTRA.toml] NAME=BINARY[@EXTRA.toml] ...
#
# Each variant serves the shipped agents (or $AGENTS, e.g. only servicenow.toml for an older
# build that cannot read newer files) on its own port and data directory with the same
# switchboard.toml as run.sh (a client token, rate limits on but high), plus the TOML of
# EXTRA.toml if given (e.g. `[audit]` `enabled = false`). The load: mcpload, one thread,
# c = 16 and 64, both transports, REPS rounds (default 5) of WARMUP + DUR seconds (2 + 5).
# Output: target/bench/ab/<UTC timestamp>/{raw.jsonl,tables.md,env.txt,log.txt}; tables.md has
# each variant's median calls/s, p50/p99 and server CPU per call, and its ratio to the first.
#
# Examples (issue 18, identity; issue 19, audit):
#   tests/bench/ab.sh pre-identity=/work/wt-preid/target/release/switchboard \
#                     now=target/release/switchboard@tests/bench/audit-off.toml
#   tests/bench/ab.sh audit-off=target/release/switchboard@tests/bench/audit-off.toml \
#                     audit-on=target/release/switchboard
set -euo pipefail
. "$(dirname "$0")/variant-config.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
REPS=${REPS:-5}; WARMUP=${WARMUP:-2}; DUR=${DUR:-5}; CONCS=${CONCS:-16 64}
WORK=$ROOT/target/bench
OUT=${OUT:-$WORK/ab/$(date -u +%Y%m%dT%H%M%SZ)}
MCPLOAD="$WORK/release/mcpload"
TOKEN=bench-token
[ $# -ge 2 ] || { sed -n '2,20p' "$0"; exit 2; }
mkdir -p "$OUT"; RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true
[ -x "$MCPLOAD" ] || CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/mcpload/Cargo.toml"

trap stop_variants EXIT
GWDIR=$(mktemp -d)
start_variants 18900 "$@"
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "variants: $*"
  echo "load: mcpload --threads 1, search_incident {query: VPN, limit: 5}, c = $CONCS, ${WARMUP}s + ${DUR}s, $REPS rounds, variants interleaved"
} | tee "$OUT/env.txt"

ARGS='{"query":"VPN","limit":5}'
for rep in $(seq "$REPS"); do
  for c in $CONCS; do
    for t in sse streamable; do
      path=$([ $t = sse ] && echo sse || echo mcp)
      # Each round starts with another variant, so none always runs first.
      n=${#NAMES[@]}
      for k in $(seq 0 $((n - 1))); do
        i=$(( (k + rep) % n ))
        out=$("$MCPLOAD" --transport $t --url "http://127.0.0.1:${PORTS[$i]}/agents/servicenow/$path" \
              --server-pid "${GPIDS[$i]}" -c "$c" -d "$DUR" --warmup "$WARMUP" --threads 1 \
              --tool search_incident --args "$ARGS" --bearer "$TOKEN" --label "${NAMES[$i]}#$rep" 2>/dev/null) || true
        echo "$out" | tail -n 1 >> "$RAW"
        echo "  ${NAMES[$i]} #$rep $t c=$c: $(echo "$out" | tail -n 1 | grep -o '"calls_per_s":[0-9.]*' | cut -d: -f2) calls/s"
      done
    done
  done
done
stop_variants; trap - EXIT; rm -rf "$GWDIR"

python3 - "$RAW" "${NAMES[@]}" > "$OUT/tables.md" <<'PY'
import json, statistics, sys
raw, names = sys.argv[1], sys.argv[2:]
rows = [json.loads(l) for l in open(raw) if l.strip().startswith("{")]
def med(xs): return statistics.median(xs) if xs else float("nan")
print("| variant | transport | c | calls/s (median) | vs " + names[0] + " | p50 ms | p99 ms | server CPU µs/call | rounds |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for t in ("sse", "streamable"):
    for c in sorted({r.get("concurrency") for r in rows}):
        base = None
        for n in names:
            rs = [r for r in rows if r.get("label","").split("#")[0] == n and r.get("transport") == t and r.get("concurrency") == c]
            cps = med([r.get("calls_per_s", 0) for r in rs])
            p50 = med([r.get("latency_us", {}).get("p50", 0) for r in rs]) / 1000
            p99 = med([r.get("latency_us", {}).get("p99", 0) for r in rs]) / 1000
            cpu = med([(r.get("cpu") or {}).get("server_cpu_us_per_call") or 0 for r in rs])
            base = cps if base is None else base
            ratio = f"{cps / base:.3f}" if base else "-"
            print(f"| {n} | {t} | {c} | {cps:,.0f} | {ratio} | {p50:.2f} | {p99:.2f} | {cpu:.0f} | {len(rs)} |")
PY
cat "$OUT/tables.md"
echo "results in $OUT"
