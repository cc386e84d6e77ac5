#!/usr/bin/env bash
# Benchmark (issue 8): 15,000 idle legacy SSE sessions held for a minute, then torn down.
#
#   tests/bench/hold-sse.sh               15,000 sessions, held 60 s, keep-alive 15 s
#   tests/bench/hold-sse.sh --quick       1,000 sessions, held 10 s, keep-alive 5 s
#   tests/bench/hold-sse.sh --skip-build  reuse the builds
#   env: OUT (results dir), SESSIONS, HOLD (s), KEEPALIVE (server.sse_keep_alive_secs), OPEN_CONC
#
# Target: SESSIONS idle SSE sessions (this machine allows 20,000 open files per process) held
# for a minute with none lost, and all of them gone from the registry within two keep-alive
# intervals after the clients disconnect.
# The gateway serves the shipped agents/ (no LLM needed: the sessions stay idle) with a bench
# client token, high limits and an explicit `[server] sse_keep_alive_secs`. mcpload opens the
# sessions (each: GET /agents/servicenow/sse + initialize handshake, then only the stream stays
# open), holds them HOLD s and exits. While it holds, the registry (GET /admin/sessions, `total`)
# is sampled twice; after mcpload exits (its sockets close), the registry is polled every 100 ms
# until it is empty. A gateway notices a vanished SSE client only when it next writes to the
# stream (a keep-alive comment), so up to one interval is expected, two at most.
# Output: target/bench/results/<UTC timestamp>-hold-sse/{raw.jsonl,tables.md,env.txt,log.txt,
#         teardown.csv,server-switchboard.log,mcpload.out}
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
[ -d "$BENCH/mcpload" ] || { echo "peer bench not found at $BENCH (set SWITCHBOARD_BENCH)" >&2; exit 1; }
BENCH=$(cd "$BENCH" && pwd)
BUILD=1; SESSIONS=${SESSIONS:-15000}; HOLD=${HOLD:-60}; KEEPALIVE=${KEEPALIVE:-15}; OPEN_CONC=${OPEN_CONC:-64}
for a in "$@"; do
  case "$a" in
    --quick) SESSIONS=1000; HOLD=10; KEEPALIVE=5 ;;
    --skip-build) BUILD=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
P_GW=18831   # not run.sh's ports

WORK=$ROOT/target/bench
OUT=${OUT:-$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)-hold-sse}
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true

. "$ROOT/tests/bench/binaries.sh"
MCPLOAD="$WORK/release/mcpload"
TOKEN=bench-token
GW_URL="http://127.0.0.1:$P_GW"

PIDS=()
GWDIR=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$GWDIR"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2; return 1
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
registry() { # the registry's session count, or -1 when the admin API does not answer
  curl -sS --max-time 5 "$GW_URL/admin/sessions?limit=1" 2>/dev/null | grep -o '"total":[0-9]*' | cut -d: -f2 || echo -1
}
sample() { # WHEN -> one JSON line in raw.jsonl
  local total gauge fds rss
  total=$(registry)
  gauge=$(curl -sS --max-time 5 "$GW_URL/metrics" | awk '/^switchboard_sessions\{.*transport="sse"/{s+=$2} END{print s+0}')
  fds=$(ls "/proc/$GPID/fd" | wc -l)
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$GPID/status")
  echo "  registry at $1: total=$total sse_gauge=$gauge gateway_fds=$fds gateway_rss_kib=$rss"
  echo "{\"mode\":\"registry-sample\",\"when\":\"$1\",\"total\":${total:-null},\"sse_gauge\":$gauge,\"gateway_fds\":$fds,\"gateway_rss_kib\":$rss}" >> "$RAW"
}

T0=$(date +%s)
if [ "$BUILD" = 1 ]; then
  echo "== build"
  build_gateway
  CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/mcpload/Cargo.toml"
fi

cat > "$GWDIR/switchboard.toml" <<TOML
[server]
sse_keep_alive_secs = $KEEPALIVE

[limits]
requests_per_minute = 100000000
burst = 1000000
agent_runs_per_minute = 100000000
max_sessions = 100000

[[clients]]
name = "bench"
token = "$TOKEN"
agents = ["*"]
TOML
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "ulimit -n: $(ulimit -n) (gateway and mcpload)"
  echo "gateway: shipped agents/, bearer auth + limits on (max_sessions 100000), sse_keep_alive_secs = $KEEPALIVE, other [server] settings default (session_park_after_ms 1000)"
  echo "load: mcpload --transport sse --idle-sessions $SESSIONS -d $HOLD --settle 2 --timeout 60 --open-concurrency $OPEN_CONC"
} | tee "$OUT/env.txt"

(cd "$GWDIR" && exec "$GW" serve --config "$GWDIR/switchboard.toml" --agents "$ROOT/agents" --data "$GWDIR/data" \
  --listen 127.0.0.1:$P_GW) >> "$OUT/server-switchboard.log" 2>&1 &
GPID=$!; PIDS+=("$GPID"); wait_port $P_GW; echo "started switchboard pid=$GPID"
sample "start"

echo "== opening $SESSIONS idle SSE sessions, holding $HOLD s"
"$MCPLOAD" --transport sse --url "$GW_URL/agents/servicenow/sse" --idle-sessions "$SESSIONS" -d "$HOLD" --settle 2 \
  --timeout 60 --open-concurrency "$OPEN_CONC" --server-pid "$GPID" --bearer "$TOKEN" --label "hold-sse" \
  > "$OUT/mcpload.out" 2> "$OUT/mcpload.err" &
MPID=$!; PIDS+=("$MPID")
until grep -q '^READY' "$OUT/mcpload.out" 2>/dev/null; do
  kill -0 "$MPID" 2>/dev/null || { cat "$OUT/mcpload.out" "$OUT/mcpload.err"; echo "mcpload ended before READY" >&2; exit 1; }
  sleep 0.2
done
sed 's/^/  /' "$OUT/mcpload.out"
sleep 1; sample "hold+1s"
sleep $(( HOLD > 8 ? HOLD - 6 : 1 )); sample "hold+$(( HOLD > 8 ? HOLD - 5 : 2 ))s"
MRC=0; wait "$MPID" || MRC=$?
T_DISC=$(now_ms)
head -n -1 "$OUT/mcpload.out" | grep -v '^READY' | sed 's/^/  /'
tail -n 1 "$OUT/mcpload.out" >> "$RAW"
[ "$MRC" = 0 ] || echo "mcpload exited with $MRC"

echo "== clients gone: polling the registry every 100 ms"
echo "ms_after_disconnect,total" > "$OUT/teardown.csv"
LIMIT_MS=$(( 4 * KEEPALIVE * 1000 )); FIRST_DROP=null; EMPTY=null; last=""
while :; do
  t=$(( $(now_ms) - T_DISC )); n=$(registry)
  [ "$n" != "$last" ] && echo "$t,$n" >> "$OUT/teardown.csv" && last=$n
  [ "$FIRST_DROP" = null ] && [ "$n" -ge 0 ] && [ "$n" -lt "$SESSIONS" ] && FIRST_DROP=$t
  if [ "$n" = 0 ]; then EMPTY=$t; break; fi
  [ "$t" -gt "$LIMIT_MS" ] && { echo "  registry still holds $n sessions after $t ms; giving up"; break; }
  sleep 0.1
done
echo "  first session gone after ${FIRST_DROP} ms, registry empty after ${EMPTY} ms (limit 2 x ${KEEPALIVE} s = $(( 2 * KEEPALIVE * 1000 )) ms)"
sleep 3; sample "empty+3s"
echo "{\"mode\":\"teardown\",\"keep_alive_s\":$KEEPALIVE,\"first_gone_ms\":$FIRST_DROP,\"empty_ms\":$EMPTY,\"last_total\":${n:-null},\"poll_ms\":100}" >> "$RAW"

STATUS=0
python3 - "$RAW" "$OUT/env.txt" "$SESSIONS" "$KEEPALIVE" > "$OUT/tables.md" <<'PY' || STATUS=$?
import json, sys
raw, env, want, ka = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(raw) if l.strip()]
idle = next((r for r in rows if r.get("mode") == "idle"), None)
td = next(r for r in rows if r.get("mode") == "teardown")
samples = [r for r in rows if r.get("mode") == "registry-sample"]
problems = []
print(f"# {want:,} idle legacy SSE sessions held, then torn down\n")
print("```"); print(open(env).read().rstrip()); print("```\n")
if idle is None:
    problems.append("mcpload gave no result")
else:
    st = idle["stages"][-1]
    kib = st.get("kib_per_session")
    print("| sessions | established | failed | alive after settle | alive at end of hold | open s | gateway RSS KiB (baseline) | KiB/session |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {want:,} | {idle['established']:,} | {idle['failed']} | {st['alive']:,} | {idle['alive_at_end']:,} | {st['open_s']:.1f} | "
          f"{st['server_rss_kib']:,} ({idle['baseline_rss_kib']:,}) | {kib:.1f} |" if kib is not None else "| – |")
    if idle["established"] != want or idle["failed"] or idle["alive_at_end"] != want:
        problems.append(f"sessions: established {idle['established']}, failed {idle['failed']}, alive at end {idle['alive_at_end']} of {want}"
                        f"; reasons {idle.get('session_failure_reasons')}")
print("\nRegistry (GET /admin/sessions `total`), `switchboard_sessions{transport=\"sse\"}`, gateway fds and RSS:\n")
print("| when | registry total | sse gauge | gateway fds | gateway RSS KiB |")
print("|---|---|---|---|---|")
for s in samples:
    print(f"| {s['when']} | {s['total']} | {s['sse_gauge']} | {s['gateway_fds']} | {s['gateway_rss_kib']:,} |")
    if s["when"].startswith("hold") and s["total"] != want:
        problems.append(f"registry at {s['when']}: {s['total']} sessions, want {want}")
print("\nAfter the clients disconnect (mcpload exited; registry polled every 100 ms):\n")
print("| keep-alive s | first session gone ms | registry empty ms | limit (2 × keep-alive) ms | within |")
print("|---|---|---|---|---|")
ok = td["empty_ms"] is not None and td["empty_ms"] <= 2 * ka * 1000
print(f"| {ka} | {td['first_gone_ms']} | {td['empty_ms'] if td['empty_ms'] is not None else 'not empty: ' + str(td['last_total'])} | {2 * ka * 1000} | {'yes' if ok else 'NO'} |")
if not ok:
    problems.append(f"registry not empty within 2 x {ka} s: {td}")
print("\nChecks: " + ("none lost, registry complete while held and empty within two keep-alive intervals." if not problems
                       else "PROBLEMS:\n- " + "\n- ".join(problems)))
sys.exit(1 if problems else 0)
PY
cat "$OUT/tables.md"
LOG="$OUT/server-switchboard.log"
echo "gateway log: $(grep -c 'Session started' "$LOG" || true) \"Session started\", $(grep -c 'Session ended' "$LOG" || true) \"Session ended\"; $(grep -cE ' (WARN|ERROR) ' "$LOG" || true) WARN/ERROR lines"
grep -E ' (WARN|ERROR) ' "$LOG" | sed -E 's/^[^ ]+ +//; s/[0-9a-f]{32}|[0-9a-f-]{36}/<id>/g' | sort | uniq -c | sort -rn | head -8 | sed 's/^/  /' || true
echo "== done in $(( $(date +%s) - T0 )) s; results in $OUT"
exit $STATUS
