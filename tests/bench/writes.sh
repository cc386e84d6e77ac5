#!/usr/bin/env bash
# Write benchmark (issue 22, "writes scale with concurrency"): `create_incident` and
# `update_incident` on the embedded store (WAL, synchronous = FULL) against variants of the
# gateway, side by side and taking turns as in ab.sh (not part of the test suite).
#
#   tests/bench/writes.sh NAME=BINARY[@EXTRA.toml] NAME=BINARY[@EXTRA.toml] ...
#
# Each variant serves the shipped agents (or $AGENTS) on its own port with its own data
# directory (so its own incidents.db) and ab.sh's limits (on but high) and audit trail (on),
# plus EXTRA.toml if given, but no [[clients]]: anonymous callers, because a named client's
# update appends "Updated via Switchboard for client ..." to the incident's work notes, so
# the row and its search index entry would grow with every update of the run, and the figure
# would measure the run's length. The load: mcpload, one thread, c = 1, 16 and 64 (CONCS),
# both transports, REPS rounds (default 3) of WARMUP + DUR seconds (1 + 4). Creates add a new
# incident each; updates set `assigned_to` of INC0012346. Output: target/bench/writes/<UTC
# timestamp>/{raw.jsonl,tables.md,env.txt,log.txt}; tables.md has each variant's median
# calls/s, p50/p99, errors and server CPU per call, and its ratio to the first.
#
# Example (group commit against main's build):
#   tests/bench/writes.sh before=/work/main/target/release/switchboard \
#                         after=target/release/switchboard
set -euo pipefail
. "$(dirname "$0")/variant-config.sh"
# Anonymous callers (see above): variant_config writes no [[clients]] without a token.
TOKEN=""

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
REPS=${REPS:-3}; WARMUP=${WARMUP:-1}; DUR=${DUR:-4}; CONCS=${CONCS:-1 16 64}
TOOLS=${TOOLS:-create_incident update_incident}
WORK=$ROOT/target/bench
OUT=${OUT:-$WORK/writes/$(date -u +%Y%m%dT%H%M%SZ)}
MCPLOAD="$WORK/release/mcpload"
[ $# -ge 1 ] || { sed -n '2,22p' "$0"; exit 2; }
mkdir -p "$OUT"; RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true
[ -x "$MCPLOAD" ] || CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/mcpload/Cargo.toml"

trap stop_variants EXIT
GWDIR=$(mktemp -d)
start_variants 18950 "$@"
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "disk of the data dirs: $(df -T "$GWDIR" | tail -n 1 | awk '{print $1, $2}')"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "variants: $*"
  echo "load: mcpload --threads 1, $TOOLS, c = $CONCS, ${WARMUP}s + ${DUR}s, $REPS rounds, variants interleaved"
} | tee "$OUT/env.txt"

args_of() {
  case $1 in
    create_incident) echo '{"short_description":"Printer on floor 3 jams on every job","urgency":"2"}' ;;
    update_incident) echo '{"number":"INC0012346","assigned_to":"Bench Operator"}' ;;
  esac
}
for rep in $(seq "$REPS"); do
  for tool in $TOOLS; do
    for c in $CONCS; do
      for t in sse streamable; do
        path=$([ $t = sse ] && echo sse || echo mcp)
        n=${#NAMES[@]}
        for k in $(seq 0 $((n - 1))); do
          i=$(( (k + rep) % n ))
          out=$("$MCPLOAD" --transport $t --url "http://127.0.0.1:${PORTS[$i]}/agents/servicenow/$path" \
                --server-pid "${GPIDS[$i]}" -c "$c" -d "$DUR" --warmup "$WARMUP" --threads 1 \
                --tool "$tool" --args "$(args_of "$tool")" \
                --label "${NAMES[$i]}#$rep#$tool" 2>/dev/null) || true
          echo "$out" | tail -n 1 >> "$RAW"
          echo "  ${NAMES[$i]} #$rep $tool $t c=$c: $(echo "$out" | tail -n 1 | grep -o '"calls_per_s":[0-9.]*' | cut -d: -f2) calls/s"
        done
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
def part(r, k): return r.get("label", "").split("#")[k]
print("| tool | transport | c | variant | calls/s (median) | vs " + names[0] + " | p50 ms | p99 ms | errors | server CPU µs/call | rounds |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for tool in sorted({part(r, 2) for r in rows}):
    for t in ("sse", "streamable"):
        for c in sorted({r.get("concurrency") for r in rows}):
            base = None
            for n in names:
                rs = [r for r in rows if part(r, 0) == n and part(r, 2) == tool and r.get("transport") == t and r.get("concurrency") == c]
                cps = med([r.get("calls_per_s", 0) for r in rs])
                p50 = med([r.get("latency_us", {}).get("p50", 0) for r in rs]) / 1000
                p99 = med([r.get("latency_us", {}).get("p99", 0) for r in rs]) / 1000
                errs = sum((r.get("errors") or {}).get("total", 0) for r in rs)
                cpu = med([(r.get("cpu") or {}).get("server_cpu_us_per_call") or 0 for r in rs])
                base = cps if base is None else base
                ratio = f"{cps / base:.2f}" if base else "-"
                print(f"| {tool} | {t} | {c} | {n} | {cps:,.0f} | {ratio} | {p50:.2f} | {p99:.2f} | {errs} | {cpu:.0f} | {len(rs)} |")
PY
cat "$OUT/tables.md"
echo "results in $OUT"
