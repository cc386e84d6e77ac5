#!/usr/bin/env bash
# Cluster mode against a single gateway, in one run on this machine (not part of the tests).
#
#   tests/bench/cluster.sh               2 repetitions, 10 s windows, c = 1, 16, 64
#   tests/bench/cluster.sh --quick       1 repetition, 3 s windows
#   tests/bench/cluster.sh --skip-build  reuse the release builds
#   SWITCHBOARD_BIN=path tests/bench/cluster.sh --skip-build   measure another gateway
#                                        binary (e.g. main's, for a before/after)
#
# Needs redis-server and nginx (Debian packages `redis-server`, `nginx`). Starts Redis, three
# replicas of the release gateway in cluster mode and nginx in front of them (the compose
# file's balancer config: round-robin, no stickiness), plus a single gateway without
# [cluster]; all with the same bearer client and limits high enough not to trigger. Then,
# interleaved at each concurrency level, `search_incident` over both transports:
#   single      the single gateway, direct
#   local       one replica, direct: every request's session is local (what the cluster
#               adds per request: the shared limiter, stream events in Redis, renewals)
#   cluster     through nginx: requests land on any replica (sessions taken over, legacy
#               POSTs forwarded to the stream's replica)
# Output: target/bench/results/cluster-<UTC>/{raw.jsonl,tables.md,log.txt}
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${SWITCHBOARD_BENCH:-$ROOT/../shared/bench}
QUICK=0; BUILD=1
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --skip-build) BUILD=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
for tool in redis-server nginx; do
  command -v "$tool" >/dev/null || { echo "$tool is required (Debian: apt-get install redis-server nginx)" >&2; exit 1; }
done
REPS=${REPS:-2}; WARMUP=${WARMUP:-2}; DUR=${DUR:-10}; CONCS=${CONCS:-1 16 64}
if [ "$QUICK" = 1 ]; then REPS=1; WARMUP=1; DUR=3; fi

P_REDIS=18840; P_LB=18841; P_SINGLE=18845; P_R=(18842 18843 18844)
WORK=$ROOT/target/bench
OUT=${OUT:-$WORK/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"; : > "$RAW"
exec > >(tee -a "$OUT/log.txt") 2>&1
ulimit -n "$(ulimit -Hn)" || true
. "$ROOT/tests/bench/binaries.sh"
MCPLOAD="$WORK/release/mcpload"
TOKEN=bench-token
if [ "$BUILD" = 1 ]; then
  build_gateway
  CARGO_TARGET_DIR=$WORK cargo build --release --locked -q --manifest-path "$ROOT/tests/bench/mcpload/Cargo.toml"
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2; return 1
}

redis-server --port $P_REDIS --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >"$OUT/redis.log" 2>&1 &
PIDS+=($!); wait_port $P_REDIS

LIMITS="[limits]
requests_per_minute = 100000000
burst = 1000000
agent_runs_per_minute = 1000
max_sessions = 100000

[[clients]]
name = \"bench\"
token = \"$TOKEN\"
agents = [\"*\"]"
printf '%s\n' "$LIMITS" > "$TMP/single.toml"
printf '[cluster]\nredis_url = "redis://127.0.0.1:%s"\n\n%s\n' $P_REDIS "$LIMITS" > "$TMP/cluster.toml"

serve() { # NAME PORT CONFIG DATA
  (cd "$TMP" && exec "$GW" serve --config "$3" --agents "$ROOT/agents" --data "$4" --listen "127.0.0.1:$2") >>"$OUT/server-$1.log" 2>&1 &
  PIDS+=($!); wait_port "$2"; echo "started $1 pid=$!"
}
serve single $P_SINGLE "$TMP/single.toml" "$TMP/data-single"; SINGLE_PID=${PIDS[-1]}
for i in 0 1 2; do serve "replica$i" "${P_R[$i]}" "$TMP/cluster.toml" "$TMP/data-cluster"; done
LOCAL_PID=${PIDS[2]}

# The compose file's balancer, with loopback addresses for the three replicas.
python3 - "$ROOT/docker-compose.yml" "$TMP" "$P_LB" "${P_R[@]}" <<'PY'
import sys, yaml
compose, tmp, lb, *ports = sys.argv[1:]
conf = yaml.safe_load(open(compose))["configs"]["balancer"]["content"].replace("$$", "$")
for i, port in enumerate(ports, 1):
    conf = conf.replace(f"gw-{i}:8080", f"127.0.0.1:{port}")
conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{lb};")
temp = " ".join(f"{k}_temp_path {tmp};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
open(f"{tmp}/nginx.conf", "w").write(
    f"pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log; worker_processes 1;\n"
    f"events {{ worker_connections 4096; }}\nhttp {{ access_log off; {temp}\n{conf}\n}}\n")
PY
nginx -c "$TMP/nginx.conf"; wait_port $P_LB; echo "started nginx (round-robin over ${P_R[*]})"

{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "switchboard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') (binary: $GW)"
  echo "redis: $(redis-server --version | awk '{print $3}'); nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
  echo "window: ${WARMUP}s warm-up + ${DUR}s measured, repetitions: $REPS; mcpload --threads 1"
} | tee "$OUT/env.txt"

load() { # LABEL TRANSPORT URL PID C
  local out
  out=$("$MCPLOAD" --transport "$2" --url "$3" --server-pid "$4" -c "$5" -d "$DUR" --warmup "$WARMUP" \
        --threads 1 --tool search_incident --args '{"query":"VPN","limit":5}' --bearer "$TOKEN" --label "$1" 2>/dev/null) || true
  echo "$out" | head -n -1 | sed 's/^/  /'; echo "$out" | tail -n 1 >> "$RAW"
}
for rep in $(seq "$REPS"); do
  for c in $CONCS; do
    for t in sse streamable; do
      path=$([ $t = sse ] && echo sse || echo mcp)
      load "single#$rep" $t "http://127.0.0.1:$P_SINGLE/agents/servicenow/$path" "$SINGLE_PID" "$c"
      load "local#$rep" $t "http://127.0.0.1:${P_R[0]}/agents/servicenow/$path" "$LOCAL_PID" "$c"
      # Through the balancer the load spreads over three processes: no single server pid.
      load "cluster#$rep" $t "http://127.0.0.1:$P_LB/agents/servicenow/$path" "$LOCAL_PID" "$c"
    done
  done
done

python3 - "$RAW" > "$OUT/tables.md" <<'PY'
import json, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    rows[(r["label"].split("#")[0], r["transport"], r["concurrency"])].append(r)
print("| setup | transport | c | calls/s | p50 ms | p99 ms | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
for (setup, transport, c), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], ["single", "local", "cluster"].index(kv[0][0]))):
    fmt = lambda f: " / ".join(f(r) for r in rs)
    calls = fmt(lambda r: "{:,.0f}".format(r["calls_per_s"]))
    p50 = fmt(lambda r: "{:.2f}".format(r["latency_us"]["p50"] / 1000))
    p99 = fmt(lambda r: "{:.2f}".format(r["latency_us"]["p99"] / 1000))
    errors = fmt(lambda r: str(r["errors"]["total"]))
    print(f"| {setup} | {transport} | {c} | {calls} | {p50} | {p99} | {errors} |")
print()
print("Added p50 per request on a local session (local − single), ms:")
for transport in ("sse", "streamable"):
    for c in (1, 16, 64):
        s, l = rows.get(("single", transport, c)), rows.get(("local", transport, c))
        if s and l:
            diffs = [(b["latency_us"]["p50"] - a["latency_us"]["p50"]) / 1000 for a, b in zip(s, l)]
            print(f"- {transport} c={c}: " + " / ".join(f"{d:+.2f}" for d in diffs))
PY
cat "$OUT/tables.md"
echo "== results in $OUT"
