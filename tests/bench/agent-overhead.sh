#!/usr/bin/env bash
# Benchmark (issue 8): what the agent tool adds per LLM turn over the LLM's own latency.
#
#   tests/bench/agent-overhead.sh               2 repetitions, 2 s warm-up + 10 s windows, c = 100
#   tests/bench/agent-overhead.sh --quick       1 repetition, 1 s + 3 s windows
#   tests/bench/agent-overhead.sh --skip-build  reuse the builds
#   tests/bench/agent-overhead.sh --workflow    the same through a workflow (issue 24): a sequential
#                                               workflow of two `servicenow` steps, 4 LLM turns a run
#   env: OUT (results dir), CONC (100), LATENCY_MS (20), DUR, WARMUP, REPS, MCPLOAD_THREADS (1),
#        SWITCHBOARD_BIN (the gateway measured; default the production build, binaries.sh)
#
# A fake OpenAI-compatible LLM (tests/bench/fake-llm) answers every completion after a fixed
# LATENCY_MS: the first turn of a run with a `search_incident` call, the second with a final
# answer. The gateway serves the shipped agents/ with OPENAI_BASE_URL pointing at the fake.
# Each agent run (`servicenow` tool, task "find VPN incidents") is 2 LLM turns + 1 inner tool call.
#   (a) the fake alone: llm-probe, CONC closed-loop clients replaying the exact two request
#       bodies the gateway sends (fetched from the fake after a sanity run): single requests,
#       then both turns chained (one sample = turn 1 + turn 2, an agent run without the agent);
#   (b) the agent tool: mcpload -c CONC over legacy SSE and Streamable HTTP.
# Overhead per turn = (run latency - 2 x fake-alone latency) / 2, for p50, p99 and mean; and,
# for the tail, (run p99 - chained p99) / 2 (p99s of single requests do not add up).
# Target: <= 1 ms per turn at 100 concurrent runs.
# --workflow: the tool called is `bench-pipeline`, a sequential workflow (written next to a copy
# of the shipped agents) whose two steps each run `servicenow` (the second on the first's
# answer): one run = 4 LLM turns + 2 inner tool calls, plus the workflow's own work (its steps'
# audit records, progress, templates). Overhead per turn = (run - 4 x fake alone) / 4; for the
# tail, (run p99 - 2 x chained p99) / 4.
# Every call must succeed: mcpload errors = 0, gateway tool calls all outcome="ok", LLM requests
# all ok, and the fake saw no inner tool error (`tool_errors_seen`).
# Output: target/bench/results/<UTC timestamp>-agent/{raw.jsonl,tables.md,env.txt,log.txt,*.log}
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
[ -d "$BENCH/mcpload" ] || { echo "peer bench not found at $BENCH (set SWITCHBOARD_BENCH)" >&2; exit 1; }
BENCH=$(cd "$BENCH" && pwd)
BUILD=1; REPS=${REPS:-2}; WARMUP=${WARMUP:-2}; DUR=${DUR:-10}; WORKFLOW=0
for a in "$@"; do
  case "$a" in
    --quick) REPS=1; WARMUP=1; DUR=3 ;;
    --skip-build) BUILD=0 ;;
    --workflow) WORKFLOW=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
CONC=${CONC:-100}; LATENCY_MS=${LATENCY_MS:-20}; MT=${MCPLOAD_THREADS:-1}
P_GW=18821; P_LLM=18822   # not run.sh's ports, so both can run on one machine

WORK=$ROOT/target/bench
KIND=$([ "$WORKFLOW" = 1 ] && echo workflow || echo agent)
OUT=${OUT:-$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)-$KIND}
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true

. "$ROOT/tests/bench/binaries.sh"
MCPLOAD="$WORK/release/mcpload"
FAKE="$WORK/release/fake-llm"
PROBE="$WORK/release/llm-probe"
TOKEN=bench-token
LLM_URL="http://127.0.0.1:$P_LLM"
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
start() { # NAME PORT CMD... -> SPID (env for the command: put it in front with `env`)
  local name=$1 port=$2; shift 2
  (cd "$GWDIR" && exec "$@") >>"$OUT/server-$name.log" 2>&1 &
  SPID=$!; PIDS+=("$SPID"); wait_port "$port"; echo "started $name pid=$SPID"
}
fail() { echo "FAILED: $*" >&2; exit 1; }

T0=$(date +%s)
if [ "$BUILD" = 1 ]; then
  echo "== build"
  build_gateway
  CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/mcpload/Cargo.toml"
  CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/fake-llm/Cargo.toml"
fi

cat > "$GWDIR/switchboard.toml" <<TOML
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
# What is called: the agent tool, or (--workflow) a workflow of two runs of it; TURNS LLM turns a run.
AGENTS=$ROOT/agents; TOOL=servicenow; TURNS=2
if [ "$WORKFLOW" = 1 ]; then
  AGENTS=$GWDIR/agents; TOOL=bench-pipeline; TURNS=4
  mkdir -p "$AGENTS"; cp "$ROOT"/agents/*.toml "$AGENTS/"
  cat > "$AGENTS/bench-pipeline.toml" <<'TOML'
description = "Bench: the servicenow agent twice, the second run on the first one's answer."

[workflow]
kind = "sequential"

[[workflow.steps]]
name = "first"
agent = "servicenow"

[[workflow.steps]]
name = "second"
agent = "servicenow"
input = "Check this again: {{input}}"
TOML
fi
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "binary: $GW, built $(date -u -r "$GW" +%FT%TZ) (with --skip-build it may be of another commit than the line above)"
  echo "fake LLM: $LATENCY_MS ms per completion, 1 tokio thread; llm-probe: 1 thread, c = $CONC"
  if [ "$WORKFLOW" = 1 ]; then
    echo "load: mcpload --threads $MT -c $CONC, tool bench-pipeline {\"task\":\"find VPN incidents\"} (a sequential workflow of 2 servicenow steps: 4 LLM turns + 2 search_incident)"
  else
    echo "load: mcpload --threads $MT -c $CONC, tool servicenow {\"task\":\"find VPN incidents\"} (2 LLM turns + search_incident)"
  fi
  echo "turns per run: $TURNS"
  echo "gateway: shipped agents/, embedded SQLite store, bearer auth + rate limits on (not triggered), log level as shipped"
  echo "window: ${WARMUP}s warm-up + ${DUR}s measured, repetitions: $REPS"
} | tee "$OUT/env.txt"

start fake-llm $P_LLM "$FAKE" --listen 127.0.0.1:$P_LLM --latency-ms "$LATENCY_MS"
start switchboard $P_GW env OPENAI_BASE_URL="$LLM_URL/v1" OPENAI_API_KEY=bench OPENAI_MODEL=fake \
  RUST_LOG=${RUST_LOG:-info} "$GW" serve --config "$GWDIR/switchboard.toml" --agents "$AGENTS" --data "$GWDIR/data" --listen 127.0.0.1:$P_GW
GPID=$SPID

# Sanity: one agent run over Streamable HTTP with curl; it must reach the fake and succeed.
echo "== sanity check: one $TOOL run through the fake"
MCP="$GW_URL/agents/$TOOL/mcp"
H=(-sS -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json"
   -H "Accept: application/json, text/event-stream" -H "MCP-Protocol-Version: 2025-06-18")
SID=$(curl "${H[@]}" -D - -o /dev/null "$MCP" \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sanity","version":"1"}}}' \
  | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
[ -n "$SID" ] || fail "initialize gave no Mcp-Session-Id"
curl "${H[@]}" -H "Mcp-Session-Id: $SID" -o /dev/null "$MCP" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
ANSWER=$(curl "${H[@]}" -H "Mcp-Session-Id: $SID" "$MCP" \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"'"$TOOL"'","arguments":{"task":"find VPN incidents"}}}' \
  | sed -n 's/^data: //p' | grep '"id":2' || true)
curl "${H[@]}" -H "Mcp-Session-Id: $SID" -X DELETE -o /dev/null "$MCP" || true
echo "  answer: $ANSWER"
echo "  fake: $(curl -sS "$LLM_URL/stats")"
echo "$ANSWER" | grep -q '"isError":false' || fail "the agent tool call is not a success"
echo "$ANSWER" | grep -q 'FAKE-ANSWER' || fail "the answer did not come from the fake LLM (or its inner tool call failed)"
# The exact request bodies of the two turns, for llm-probe.
curl -sS "$LLM_URL/last/first" > "$OUT/turn1.json"; curl -sS "$LLM_URL/last/second" > "$OUT/turn2.json"
[ -s "$OUT/turn1.json" ] && [ -s "$OUT/turn2.json" ] || fail "the fake did not record both turns"
echo "  request bodies: turn 1 $(wc -c < "$OUT/turn1.json") bytes, turn 2 $(wc -c < "$OUT/turn2.json") bytes"

metrics() { curl -sS "$GW_URL/metrics" > "$1"; }
probe() { # LABEL [--chain]
  local out
  out=$("$PROBE" --url "$LLM_URL/v1/chat/completions" -c "$CONC" -d "$DUR" --warmup "$WARMUP" \
        --body "$OUT/turn1.json" --body "$OUT/turn2.json" --label "$1" "${@:2}")
  echo "$out" | head -n -1 | sed 's/^/  /'; echo "$out" | tail -n 1 >> "$RAW"
}
load() { # LABEL TRANSPORT PATH
  local out
  metrics "$OUT/metrics-$1-$2-before.txt"
  out=$("$MCPLOAD" --transport "$2" --url "$GW_URL/agents/$TOOL/$3" --server-pid "$GPID" -c "$CONC" \
        -d "$DUR" --warmup "$WARMUP" --threads "$MT" --timeout 30 --tool "$TOOL" \
        --args '{"task":"find VPN incidents"}' --bearer "$TOKEN" --label "$1" 2>/dev/null) || true
  metrics "$OUT/metrics-$1-$2-after.txt"
  echo "$out" | head -n -1 | sed 's/^/  /'
  case "$(echo "$out" | tail -n 1)" in \{*) echo "$out" | tail -n 1 >> "$RAW" ;; *) fail "mcpload gave no result ($1 $2)" ;; esac
}

for rep in $(seq "$REPS"); do
  echo "== repetition $rep: the fake alone (llm-probe -c $CONC: single requests, then both turns chained)"
  probe "fake-alone#$rep"
  probe "fake-2turns#$rep" --chain
  for t in sse streamable; do
    path=$([ $t = sse ] && echo sse || echo mcp)
    echo "== repetition $rep: $TOOL over $t (mcpload -c $CONC)"
    load "agent#$rep" $t $path
  done
done
echo "  fake: $(curl -sS "$LLM_URL/stats" | tee "$OUT/fake-stats.json")"
metrics "$OUT/metrics-end.txt"

STATUS=0
python3 - "$RAW" "$OUT" "$OUT/env.txt" "$TURNS" "$TOOL" > "$OUT/tables.md" <<'PY' || STATUS=$?
import json, re, sys, glob, os
raw, out, env = sys.argv[1:4]
turns, tool = int(sys.argv[4]), sys.argv[5]
rows = [json.loads(l) for l in open(raw) if l.strip()]

def prom(path):
    m = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
    return m
def delta(label, transport, key_re):
    b = prom(f"{out}/metrics-{label}-{transport}-before.txt")
    a = prom(f"{out}/metrics-{label}-{transport}-after.txt")
    return sum(v - b.get(k, 0.0) for k, v in a.items() if re.fullmatch(key_re, k))

problems = []
probes = {(r["label"].split("#")[0], r["label"].split("#")[1]): r for r in rows if r.get("mode") == "llm-probe"}
print(f"# {'Workflow' if turns > 2 else 'Agent-tool'} overhead per LLM turn (fake LLM, fixed latency)\n")
print("```"); print(open(env).read().rstrip()); print("```\n")
print("Fake alone (llm-probe replaying the gateway's two request bodies; 'single' = one request per sample, "
      "'2 turns chained' = turn 1 then turn 2 per sample):\n")
print("| rep | mode | c | samples/s | p50 ms | p90 ms | p99 ms | mean ms | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for (kind, rep), p in sorted(probes.items(), key=lambda kv: (kv[0][1], kv[0][0] != "fake-alone")):
    l = p["latency_us"]
    mode = "2 turns chained" if p.get("chain") else "single"
    print(f"| {rep} | {mode} | {p['concurrency']} | {p['calls_per_s']:.0f} | {l['p50']/1e3:.2f} | {l['p90']/1e3:.2f} | {l['p99']/1e3:.2f} | {l['mean']/1e3:.2f} | {p['errors']['total']} |")
    if p["errors"]["total"]:
        problems.append(f"llm-probe {kind} rep {rep}: {p['errors']}")
what = ("a sequential workflow of two `servicenow` steps = 4 LLM turns + 2 inner tool calls" if turns > 2
        else "one `servicenow` run = 2 LLM turns + 1 inner tool call")
print(f"\n`{tool}` (mcpload, {what}). Overhead per turn = "
      f"(run − {turns} × fake single) / {turns} for p50 and mean; for p99 both (run − {turns} × single p99) / {turns} "
      f"and (run − {turns // 2} × chained p99) / {turns}; same repetition:\n")
print("| rep | transport | c | runs/s | run p50 ms | run p99 ms | run mean ms | **overhead/turn p50 ms** | overhead/turn mean ms | overhead/turn p99 ms (2×single) | overhead/turn p99 ms (chained) | gateway-seen LLM mean ms | gateway CPU µs/run | gateway cores | other cores | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
nan = float("nan")
for r in rows:
    if r.get("mode") != "load":
        continue
    rep = r["label"].split("#")[1]
    f = probes.get(("fake-alone", rep), {}).get("latency_us")
    ch = probes.get(("fake-2turns", rep), {}).get("latency_us")
    l = r["latency_us"]
    ov = {k: (l[k] - turns * f[k]) / turns / 1e3 for k in ("p50", "p99", "mean")} if f else {}
    ov_ch = (l["p99"] - turns // 2 * ch["p99"]) / turns / 1e3 if ch else nan
    n = delta(r["label"], r["transport"], r'switchboard_llm_request_duration_seconds_count\{.*\}')
    s = delta(r["label"], r["transport"], r'switchboard_llm_request_duration_seconds_sum\{.*\}')
    llm_mean = f"{s / n * 1e3:.2f}" if n else "–"
    # Runs still in flight when mcpload ends its window are cancelled by its session DELETEs
    # (at most one per session; a workflow's, with its running step: two): that is the client
    # leaving, not a failure.
    bad_tools = delta(r["label"], r["transport"], r'switchboard_tool_calls_total\{.*outcome="(?!ok|cancelled).*\}')
    cancelled = delta(r["label"], r["transport"], r'switchboard_tool_calls_total\{.*outcome="cancelled".*\}')
    if cancelled > r["concurrency"] * (2 if turns > 2 else 1):
        bad_tools += cancelled
    ok_tools = delta(r["label"], r["transport"], r'switchboard_tool_calls_total\{.*outcome="ok"\}')
    bad_llm = delta(r["label"], r["transport"], r'switchboard_llm_requests_total\{.*outcome="(?!ok").*\}')
    cpu = r.get("cpu") or {}
    err = r["errors"]["total"]
    print(f"| {rep} | {r['transport']} | {r['concurrency']} | {r['calls_per_s']:.0f} | {l['p50']/1e3:.2f} | {l['p99']/1e3:.2f} | {l['mean']/1e3:.2f} | "
          f"**{ov.get('p50', nan):.2f}** | {ov.get('mean', nan):.2f} | {ov.get('p99', nan):.2f} | {ov_ch:.2f} | {llm_mean} | "
          f"{cpu.get('server_cpu_us_per_call') or 0:.0f} | {cpu.get('server_cores')} | {cpu.get('other_cores')} | {err} |")
    if err or r["sessions_failed"] or r["sessions_lost"]:
        problems.append(f"{r['label']} {r['transport']}: errors {r['errors']}, sessions failed {r['sessions_failed']} lost {r['sessions_lost']}")
    if bad_tools or bad_llm or not ok_tools:
        problems.append(f"{r['label']} {r['transport']}: gateway tool calls ok={ok_tools:.0f} not-ok={bad_tools:.0f}, LLM requests not-ok={bad_llm:.0f}")
stats = json.load(open(f"{out}/fake-stats.json"))
if stats["tool_errors_seen"] or stats["bad_requests"]:
    problems.append(f"fake LLM saw inner tool errors or bad requests: {stats}")
print("\n'gateway-seen LLM mean' is the gateway's own chat-completion duration (switchboard_llm_request_duration_seconds, "
      "warm-up included): the fake's latency plus reqwest and loopback as the gateway sees them. "
      "'other cores' is CPU used by processes other than the gateway and mcpload (mostly the fake).")
print(f"\nFake LLM counters at the end: {json.dumps(stats)}")
print("\nChecks: " + ("all calls succeeded (mcpload errors 0, gateway tool calls and LLM requests all ok, no inner tool error)." if not problems else "PROBLEMS:\n- " + "\n- ".join(problems)))
sys.exit(1 if problems else 0)
PY
cat "$OUT/tables.md"
LOG="$OUT/server-switchboard.log"
# Tool-call lines are at debug (issue 22): the checks above read the metrics; with
# RUST_LOG=info,switchboard::mcp::handler=debug the log has them too.
echo "gateway log: $(grep -c 'Tool call\.' "$LOG" || true) \"Tool call.\" lines, $(grep 'Tool call\.' "$LOG" | grep -vc 'outcome="ok"' || true) not outcome=ok; $(grep -cE ' (WARN|ERROR) ' "$LOG" || true) WARN/ERROR lines"
grep -E ' (WARN|ERROR) ' "$LOG" | head -5 | sed 's/^/  /' || true
echo "== done in $(( $(date +%s) - T0 )) s; results in $OUT"
exit $STATUS
