#!/usr/bin/env bash
# Benchmark: Switchboard side by side with its peers in one run (not part of the test suite).
#
#   tests/bench/run.sh               full run (2 repetitions, 10 s windows, 1000+5000 idle sessions,
#                                    agent overhead at c=100, 15,000 SSE sessions held 60 s)
#   tests/bench/run.sh --quick       smoke run (1 repetition, 2 s windows, 200+500 idle sessions,
#                                    1,000 SSE sessions held 10 s)
#   tests/bench/run.sh --skip-build  reuse the builds and the Python venv
#
# Builds the release gateway, mcpload and the peers from ../shared/bench (or $SWITCHBOARD_BENCH),
# starts each server on its own loopback port, measures `search_incident` with mcpload at
# c = 1, 16, 64 over both transports (gateway with auth and rate limits on, limits high enough not
# to trigger), server CPU per call, and RSS per idle session. Peers: the official Python SDK (the
# seed's stack) on both transports and bare rmcp on axum (Streamable HTTP).
# Output: target/bench/results/<UTC timestamp>/{raw.jsonl,tables.md,env.txt,log.txt,server-*.log}
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
REPS=2; WARMUP=2; DUR=10; CONCS="1 16 64"; IDLE="1000,5000"; HOLD=3
if [ "$QUICK" = 1 ]; then REPS=1; WARMUP=1; DUR=2; IDLE="200,500"; HOLD=1; fi

P_GW=18801; P_PY=18802; P_RMCP=18803
WORK=$ROOT/target/bench
OUT=${OUT:-$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true

GW="$ROOT/target/release/switchboard"
MCPLOAD="$WORK/release/mcpload"
RMCP="$WORK/release/rmcp-baseline"
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
load() { # LABEL TRANSPORT URL PID C ARGS [BEARER]
  local out bearer=()
  [ -n "${7:-}" ] && bearer=(--bearer "$7")
  out=$("$MCPLOAD" --transport "$2" --url "$3" --server-pid "$4" -c "$5" -d "$DUR" --warmup "$WARMUP" \
        --threads 1 --tool search_incident --args "$6" "${bearer[@]}" --label "$1" 2>/dev/null) || true
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
  (cd "$ROOT" && cargo build --release --locked -q)
  CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$BENCH/mcpload/Cargo.toml"
  CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$BENCH/servers/rmcp-baseline/Cargo.toml"
  [ -x "$PYBIN" ] || python3 -m venv "$WORK/venv"
  "$PYBIN" -m pip install -q -r "$BENCH/servers/python/requirements.txt"
fi

# The gateway as shipped (agents/, embedded store), with a client token and limits on.
GWDIR=$(mktemp -d)
cat > "$GWDIR/switchboard.toml" <<TOML
[limits]
requests_per_minute = 100000000
burst = 1000000
agent_runs_per_minute = 1000
max_sessions = 100000

[[clients]]
name = "bench"
token = "$TOKEN"
agents = ["*"]
TOML
# The same, with parking off: what an idle session costs while its MCP engine stays up.
{ echo "[server]"; echo "session_park_after_ms = 0"; cat "$GWDIR/switchboard.toml"; } > "$GWDIR/switchboard-nopark.toml"
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') crates: $(awk '/^name = /{n=$3} /^version = /{v=$3; if (n ~ /"(rmcp|poem|hyper|tokio|rusqlite)"/) printf "%s=%s ", n, v}' "$ROOT/Cargo.lock" | tr -d '"')"
  echo "python: $("$PYBIN" --version 2>&1); $("$PYBIN" -m pip freeze 2>/dev/null | grep -iE '^(mcp|uvicorn|starlette)==' | tr '\n' ' ')"
  echo "ulimit -n: $(ulimit -n)"
  echo "load: mcpload --threads 1, tool search_incident, one call in flight per session"
  echo "gateway: shipped agents/, embedded SQLite store, bearer auth + rate limits on (not triggered)"
  echo "window: ${WARMUP}s warm-up + ${DUR}s measured, repetitions: $REPS, idle targets: $IDLE"
} | tee "$OUT/env.txt"

GWARGS='{"query":"VPN","limit":5}'
PEERARGS='{"query":"payments","limit":5}'
gateway() { # NAME [CONFIG]
  start "$1" $P_GW "$GWDIR" "$GW" serve --config "${2:-$GWDIR/switchboard.toml}" --agents "$ROOT/agents" --data "$GWDIR/data" --listen 127.0.0.1:$P_GW
}

# Throughput: the three servers run side by side and take turns at each concurrency level,
# so that the machine's drift over minutes (other tenants, thermal) touches them alike and the
# ratios compare like with like.
echo "== throughput: switchboard, rmcp baseline, Python SDK, interleaved"
gateway switchboard; GPID=$SPID
start rmcp $P_RMCP "$BENCH" "$RMCP" --port $P_RMCP; RPID=$SPID
start python $P_PY "$BENCH/servers/python" "$PYBIN" server.py --port $P_PY; PPID_=$SPID
for rep in $(seq "$REPS"); do
  for c in $CONCS; do
    load "switchboard#$rep" sse "http://127.0.0.1:$P_GW/agents/servicenow/sse" $GPID "$c" "$GWARGS" "$TOKEN"
    load "python#$rep" sse "http://127.0.0.1:$P_PY/sse" $PPID_ "$c" "$PEERARGS"
    load "switchboard#$rep" streamable "http://127.0.0.1:$P_GW/agents/servicenow/mcp" $GPID "$c" "$GWARGS" "$TOKEN"
    load "rmcp#$rep" streamable "http://127.0.0.1:$P_RMCP/mcp" $RPID "$c" "$PEERARGS"
    load "python#$rep" streamable "http://127.0.0.1:$P_PY/mcp" $PPID_ "$c" "$PEERARGS"
  done
done
stop $GPID; stop $RPID; stop $PPID_

echo "== idle sessions"
for t in sse streamable; do
  path=$([ $t = sse ] && echo sse || echo mcp)
  gateway switchboard-idle; idle "switchboard#1" $t "http://127.0.0.1:$P_GW/agents/servicenow/$path" $SPID "$TOKEN"; stop $SPID
  gateway switchboard-idle-nopark "$GWDIR/switchboard-nopark.toml"
  idle "switchboard-no-parking#1" $t "http://127.0.0.1:$P_GW/agents/servicenow/$path" $SPID "$TOKEN"; stop $SPID
done
# What SDK clients do: hold the session's GET stream too (one more HTTP connection each).
gateway switchboard-idle-get
idle "switchboard-get-stream#1" streamable "http://127.0.0.1:$P_GW/agents/servicenow/mcp" $SPID "$TOKEN" --streamable-get; stop $SPID
start rmcp-idle $P_RMCP "$BENCH" "$RMCP" --port $P_RMCP; idle "rmcp#1" streamable "http://127.0.0.1:$P_RMCP/mcp" $SPID ""; stop $SPID
start rmcp-idle-get $P_RMCP "$BENCH" "$RMCP" --port $P_RMCP
idle "rmcp-get-stream#1" streamable "http://127.0.0.1:$P_RMCP/mcp" $SPID "" --streamable-get; stop $SPID

python3 "$BENCH/summarize.py" "$RAW" "$OUT/env.txt" | sed "s/and a 2 s settle/and a 3 s settle/" > "$OUT/tables.md"
rm -rf "$GWDIR"
trap - EXIT

# The agent tool's overhead per LLM turn, and 15,000 idle SSE sessions held for a minute
# (each script documents itself; --quick makes both short).
SUB=(--skip-build); [ "$QUICK" = 1 ] && SUB+=(--quick)
echo "== agent tool overhead (fake LLM)"
[ "$BUILD" = 1 ] && CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/fake-llm/Cargo.toml"
# A script that reports problems says so in its table; the other one still runs.
OUT="$OUT/agent" bash "$ROOT/tests/bench/agent-overhead.sh" "${SUB[@]}" || echo "agent-overhead.sh reported problems (see its Checks line)"
echo "== idle SSE sessions held"
OUT="$OUT/hold-sse" bash "$ROOT/tests/bench/hold-sse.sh" "${SUB[@]}" || echo "hold-sse.sh reported problems"
{ echo; cat "$OUT/agent/tables.md"; echo; cat "$OUT/hold-sse/tables.md"; } >> "$OUT/tables.md"
cat "$OUT/tables.md"
echo "== done in $(( $(date +%s) - T0 )) s; results in $OUT"
