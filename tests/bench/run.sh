#!/usr/bin/env bash
# Benchmark: Switchboard with everything on, side by side with its peers, in one run (not part
# of the test suite).
#
#   tests/bench/run.sh               full run (2 repetitions of 10 s windows; ~40 min on 2 cores)
#   tests/bench/run.sh --quick       smoke run (1 repetition, 2 s windows, fewer sessions)
#   tests/bench/run.sh --skip-build  reuse the builds and the Python venv
#   env: REPS, DUR, WARMUP (seconds), CONCS ("1 16 64 256"), IDLE ("1000,10000"),
#        STEPS ("1 2 3 4 5 6 7 8": the steps below to run, e.g. STEPS=2 for the federated path)
#
# Builds the gateway as it ships (the production profile, see tests/bench/binaries.sh; or
# measures SWITCHBOARD_BIN), our mcpload (tests/bench/mcpload: the shared load generator plus
# the stateless 2026-07-28 transport), the fake LLM and the peers from ../shared/bench (or
# $SWITCHBOARD_BENCH; bare rmcp with the gateway's optimiser settings). The gateway runs as
# shipped (agents/, embedded store) with everything on: a bearer-token client (identity), rate
# limits (high enough not to trigger), the audit trail, and tracing at the default sampler
# exporting OTLP to tests/bench/otlp-sink.py. Then:
#   1. search_incident, interleaved at c = CONCS: the gateway over legacy SSE, Streamable HTTP
#      (session, 2025) and stateless Streamable HTTP (2026-07-28); bare rmcp (Streamable HTTP);
#      the official Python SDK (both transports; not at c = 256).
#   2. the federated path: rmcp-baseline's search_incident through a gateway agent that serves
#      it as an upstream (`[[servers]]`), against rmcp directly, interleaved (c = 1, 16, 64).
#   3. writes: create_incident and update_incident at c = 1, 16, 64, both transports
#      (anonymous callers: a named client's update appends a line to the incident's notes).
#   4. idle memory per session at IDLE sessions, parking on and off, both transports.
#   5. instructions per call (callgrind) for the gateway and bare rmcp (instructions.sh).
#   6. cluster mode: single, one replica direct, through nginx (cluster.sh; redis + nginx).
#   7. the agent tool and a workflow against the fake LLM (agent-overhead.sh).
#   8. 15,000 idle SSE sessions held (hold-sse.sh).
# Then targets.py turns it all into one table against issue 22's targets.
# Output: target/bench/results/<UTC timestamp>/{raw.jsonl,targets.md,tables.md,env.txt,log.txt,
#   server-*.log, cluster/, agent/, workflow/, hold-sse/, instructions/}
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
[ -d "$BENCH/mcpload" ] || { echo "peer bench not found at $BENCH (set SWITCHBOARD_BENCH)" >&2; exit 1; }
BENCH=$(cd "$BENCH" && pwd)
QUICK=0; BUILD=1
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --skip-build) BUILD=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}; WARMUP=${WARMUP:-1}; DUR=${DUR:-2}; CONCS=${CONCS:-1 16 64 256}; IDLE=${IDLE:-200,500}; HOLD=1
else
  REPS=${REPS:-2}; WARMUP=${WARMUP:-2}; DUR=${DUR:-10}; CONCS=${CONCS:-1 16 64 256}; IDLE=${IDLE:-1000,10000}; HOLD=3
fi
WCONCS="1 16 64"
STEPS=${STEPS:-1 2 3 4 5 6 7 8}
want() { [[ " $STEPS " == *" $1 "* ]]; }

P_GW=18801; P_PY=18802; P_RMCP=18803; P_OTLP=18804; P_FED=18805; P_WR=18806
WORK=$ROOT/target/bench
OUT=${OUT:-$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true

. "$ROOT/tests/bench/binaries.sh"
MCPLOAD="$WORK/release/mcpload"
RMCP="$WORK/lto/release/rmcp-baseline"
PYBIN="$WORK/venv/bin/python"
TOKEN=bench-token

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2; return 1
}
start() { # NAME PORT DIR CMD... -> SPID
  local name=$1 port=$2 dir=$3; shift 3
  (cd "$dir" && exec "$@") >>"$OUT/server-$name.log" 2>&1 &
  SPID=$!; PIDS+=("$SPID"); wait_port "$port"; echo "started $name pid=$SPID: $*"
}
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true
}
load() { # LABEL TRANSPORT URL PID C TOOL ARGS [BEARER]
  local out bearer=()
  [ -n "${8:-}" ] && bearer=(--bearer "$8")
  out=$("$MCPLOAD" --transport "$2" --url "$3" --server-pid "$4" -c "$5" -d "$DUR" --warmup "$WARMUP" \
        --threads 1 --tool "$6" --args "$7" "${bearer[@]}" --label "$1" 2>/dev/null) || true
  echo "$out" | head -n -1 | sed 's/^/  /'; echo "$out" | tail -n 1 >> "$RAW"
}
idle() { # LABEL TRANSPORT URL PID BEARER [MCPLOAD FLAGS...]
  local out bearer=() label=$1 transport=$2 url=$3 pid=$4
  [ -n "${5:-}" ] && bearer=(--bearer "$5")
  shift 5
  "$MCPLOAD" --transport "$transport" --url "$url" -c 1 -d 1 "${bearer[@]}" >/dev/null 2>&1 || true
  # --settle 3: sessions park after 1 s idle (server.session_park_after_ms) and jemalloc hands
  # the freed pages back within about a second more; the RSS is read 3 s after the last opened.
  out=$("$MCPLOAD" --transport "$transport" --url "$url" --server-pid "$pid" --idle-sessions "$IDLE" -d "$HOLD" \
        --settle 3 --timeout 30 "${bearer[@]}" "$@" --label "$label" 2>/dev/null) || true
  echo "$out" | head -n -1 | sed 's/^/  /'; echo "$out" | tail -n 1 >> "$RAW"
}

T0=$(date +%s)
if [ "$BUILD" = 1 ]; then
  echo "== build"
  build_gateway
  for m in "$ROOT/tests/bench/mcpload" "$ROOT/tests/bench/fake-llm"; do
    CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$m/Cargo.toml"
  done
  peer_release "$BENCH/servers/rmcp-baseline/Cargo.toml"
fi
# The Python SDK peer's virtualenv (made once; --skip-build reuses it).
if [ "$BUILD" = 1 ] || [ ! -x "$PYBIN" ]; then
  [ -x "$PYBIN" ] || python3 -m venv "$WORK/venv"
  "$PYBIN" -m pip install -q -r "$BENCH/servers/python/requirements.txt"
fi

# The gateway as shipped (agents/, embedded store), everything on: a client token (identity),
# rate limits, the audit trail (on by default) and tracing at its default sampler, exported.
python3 "$ROOT/tests/bench/otlp-sink.py" $P_OTLP >"$OUT/otlp-sink.log" 2>&1 &
SINK=$!; wait_port $P_OTLP
trap 'cleanup; kill $SINK 2>/dev/null || true' EXIT
GWDIR=$(mktemp -d)
limits() {
  echo "[limits]"; echo "requests_per_minute = 100000000"; echo "burst = 1000000"
  echo "agent_runs_per_minute = 1000"; echo "max_sessions = 100000"
  echo; echo "[telemetry]"; echo "enabled = true"; echo "endpoint = \"http://127.0.0.1:$P_OTLP\""
}
client() { echo; echo "[[clients]]"; echo 'name = "bench"'; echo "token = \"$TOKEN\""; echo 'agents = ["*"]'; }
{ limits; client; } > "$GWDIR/switchboard.toml"
# The same, with parking off: what an idle session costs while its MCP engine stays up.
{ echo "[server]"; echo "session_park_after_ms = 0"; limits; client; } > "$GWDIR/switchboard-nopark.toml"
# Writes: anonymous callers (see above).
limits > "$GWDIR/switchboard-anonymous.toml"
# For instructions.sh, which writes the limits and the client itself.
{ echo "[telemetry]"; echo "enabled = true"; echo "endpoint = \"http://127.0.0.1:$P_OTLP\""; } > "$GWDIR/otel.toml"
# The federated path: an agent serving rmcp-baseline as its upstream.
mkdir -p "$GWDIR/agents-fed"
cat > "$GWDIR/agents-fed/rmcp.toml" <<TOML
description = "Bare rmcp (the baseline), federated."
expose = ["servers"]

[[servers]]
url = "http://127.0.0.1:$P_RMCP/mcp"
TOML
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') crates: $(awk '/^name = /{n=$3} /^version = /{v=$3; if (n ~ /"(rmcp|poem|hyper|tokio|rusqlite)"/) printf "%s=%s ", n, v}' "$ROOT/Cargo.lock" | tr -d '"')"
  echo "binary: $GW, built $(date -u -r "$GW" +%FT%TZ)"
  echo "python: $("$PYBIN" --version 2>&1); $("$PYBIN" -m pip freeze 2>/dev/null | grep -iE '^(mcp|uvicorn|starlette)==' | tr '\n' ' ')"
  echo "ulimit -n: $(ulimit -n); loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "load: mcpload --threads 1 (tests/bench/mcpload), one call in flight per session"
  echo "gateway: shipped agents/, embedded SQLite store, bearer client, rate limits (not triggered), audit trail, tracing at the default sampler exported over OTLP/HTTP"
  echo "window: ${WARMUP}s warm-up + ${DUR}s measured, repetitions: $REPS, c = $CONCS, idle targets: $IDLE"
} | tee "$OUT/env.txt"

GWARGS='{"query":"VPN","limit":5}'
PEERARGS='{"query":"payments","limit":5}'
gateway() { # NAME PORT CONFIG [AGENTS]
  start "$1" "$2" "$GWDIR" "$GW" serve --config "$3" --agents "${4:-$ROOT/agents}" --data "$GWDIR/data-$1" --listen "127.0.0.1:$2"
}

# 1. Throughput: the servers run side by side and take turns at each concurrency level, so
# that the machine's drift over minutes (other tenants, thermal) touches them alike and the
# ratios compare like with like.
SB="http://127.0.0.1:$P_GW/agents/servicenow"
if want 1 || want 2; then start rmcp $P_RMCP "$BENCH" "$RMCP" --port $P_RMCP; RPID=$SPID; fi
if want 1; then
echo "== 1. search_incident: switchboard (3 paths), rmcp baseline, Python SDK, interleaved"
gateway switchboard $P_GW "$GWDIR/switchboard.toml"; GPID=$SPID
start python $P_PY "$BENCH/servers/python" "$PYBIN" server.py --port $P_PY; PPID_=$SPID
for rep in $(seq "$REPS"); do
  for c in $CONCS; do
    load "switchboard#$rep" sse "$SB/sse" $GPID "$c" search_incident "$GWARGS" "$TOKEN"
    [ "$c" -le 64 ] && load "python#$rep" sse "http://127.0.0.1:$P_PY/sse" $PPID_ "$c" search_incident "$PEERARGS"
    load "switchboard#$rep" streamable "$SB/mcp" $GPID "$c" search_incident "$GWARGS" "$TOKEN"
    load "switchboard#$rep" stateless "$SB/mcp" $GPID "$c" search_incident "$GWARGS" "$TOKEN"
    load "rmcp#$rep" streamable "http://127.0.0.1:$P_RMCP/mcp" $RPID "$c" search_incident "$PEERARGS"
    [ "$c" -le 64 ] && load "python#$rep" streamable "http://127.0.0.1:$P_PY/mcp" $PPID_ "$c" search_incident "$PEERARGS"
  done
done
stop $GPID; stop $PPID_
fi

# 2. Federation: the same rmcp server, directly and through the gateway (its server CPU is
# the gateway's alone; rmcp's own CPU is in the direct rows).
if want 2; then
echo "== 2. federated path: rmcp-baseline through the gateway against rmcp directly"
gateway switchboard-fed $P_FED "$GWDIR/switchboard.toml" "$GWDIR/agents-fed"; FPID=$SPID
for rep in $(seq "$REPS"); do
  for c in $WCONCS; do
    load "rmcp-direct#$rep" streamable "http://127.0.0.1:$P_RMCP/mcp" $RPID "$c" search_incident "$PEERARGS"
    load "federated#$rep" streamable "http://127.0.0.1:$P_FED/agents/rmcp/mcp" $FPID "$c" search_incident "$PEERARGS" "$TOKEN"
  done
done
stop $FPID
fi
[ -n "${RPID:-}" ] && stop $RPID

# 3. Writes on the embedded store (synchronous = FULL): each acknowledged call is durable.
if want 3; then
echo "== 3. writes: create_incident and update_incident"
gateway switchboard-writes $P_WR "$GWDIR/switchboard-anonymous.toml"; WPID=$SPID
for rep in $(seq "$REPS"); do
  for tool in create_incident update_incident; do
    case $tool in
      create_incident) wargs='{"short_description":"Printer on floor 3 jams on every job","urgency":"2"}' ;;
      update_incident) wargs='{"number":"INC0012346","assigned_to":"Bench Operator"}' ;;
    esac
    for c in $WCONCS; do
      for t in sse streamable; do
        path=$([ $t = sse ] && echo sse || echo mcp)
        load "$tool#$rep" $t "http://127.0.0.1:$P_WR/agents/servicenow/$path" $WPID "$c" $tool "$wargs"
      done
    done
  done
done
stop $WPID
fi

# 4. Memory per idle session, a fresh gateway each.
if want 4; then
echo "== 4. idle sessions"
for t in sse streamable; do
  path=$([ $t = sse ] && echo sse || echo mcp)
  gateway switchboard-idle $P_GW "$GWDIR/switchboard.toml"; idle "switchboard#1" $t "$SB/$path" $SPID "$TOKEN"; stop $SPID
  rm -rf "$GWDIR/data-switchboard-idle"
  gateway switchboard-idle-nopark $P_GW "$GWDIR/switchboard-nopark.toml"
  idle "switchboard-no-parking#1" $t "$SB/$path" $SPID "$TOKEN"; stop $SPID
  rm -rf "$GWDIR/data-switchboard-idle-nopark"
done
# What SDK clients do: hold the session's GET stream too (one more HTTP connection each).
gateway switchboard-idle-get $P_GW "$GWDIR/switchboard.toml"
idle "switchboard-get-stream#1" streamable "$SB/mcp" $SPID "$TOKEN" --streamable-get; stop $SPID
start rmcp-idle $P_RMCP "$BENCH" "$RMCP" --port $P_RMCP; idle "rmcp#1" streamable "http://127.0.0.1:$P_RMCP/mcp" $SPID ""; stop $SPID
start rmcp-idle-get $P_RMCP "$BENCH" "$RMCP" --port $P_RMCP
idle "rmcp-get-stream#1" streamable "http://127.0.0.1:$P_RMCP/mcp" $SPID "" --streamable-get; stop $SPID
fi

if [ -s "$RAW" ]; then
  python3 "$BENCH/summarize.py" "$RAW" "$OUT/env.txt" | sed "s/and a 2 s settle/and a 3 s settle/" > "$OUT/tables.md"
fi
cleanup; PIDS=()

# 5-8: the scripts beside this one (each documents itself; --quick makes them short). A script
# that reports problems says so in its own table; the others still run.
SUB=(--skip-build); [ "$QUICK" = 1 ] && SUB+=(--quick)
want 5 && echo "== 5. instructions per call (callgrind)"
if ! want 5; then :
elif command -v valgrind >/dev/null; then
  CALLS=$([ "$QUICK" = 1 ] && echo 500 || echo 2000) OUT="$OUT/instructions" RAW="$RAW" \
    bash "$ROOT/tests/bench/instructions.sh" "switchboard=$GW@$GWDIR/otel.toml" "rmcp=$RMCP" \
    || echo "instructions.sh reported problems"
else
  echo "valgrind is not installed: no instructions per call (Debian: apt-get install valgrind)"
fi
if want 6; then
echo "== 6. cluster mode (redis + nginx)"
CREPS=$REPS; [ "$QUICK" = 1 ] && CREPS=1
REPS=$CREPS DUR=$DUR WARMUP=$WARMUP CONCS="$WCONCS" OUT="$OUT/cluster" bash "$ROOT/tests/bench/cluster.sh" --skip-build \
  || echo "cluster.sh reported problems (needs redis-server and nginx)"
fi
if want 7; then
echo "== 7. agent tool and workflow overhead (fake LLM)"
OUT="$OUT/agent" bash "$ROOT/tests/bench/agent-overhead.sh" "${SUB[@]}" || echo "agent-overhead.sh reported problems (see its Checks line)"
OUT="$OUT/workflow" bash "$ROOT/tests/bench/agent-overhead.sh" "${SUB[@]}" --workflow || echo "agent-overhead.sh --workflow reported problems"
fi
if want 8; then
echo "== 8. idle SSE sessions held"
OUT="$OUT/hold-sse" bash "$ROOT/tests/bench/hold-sse.sh" "${SUB[@]}" || echo "hold-sse.sh reported problems"
fi
kill $SINK 2>/dev/null || true; trap - EXIT
rm -rf "$GWDIR"

for d in agent workflow hold-sse cluster; do
  [ -f "$OUT/$d/tables.md" ] && { echo; cat "$OUT/$d/tables.md"; } >> "$OUT/tables.md"
done
python3 "$ROOT/tests/bench/targets.py" "$OUT" | tee "$OUT/targets.md"
echo "== done in $(( $(date +%s) - T0 )) s; results in $OUT (targets.md, tables.md)"
