# Sourced by ab.sh, writes.sh, per-call.sh and instructions.sh.

# The switchboard.toml every variant runs with: rate limits on but high, plus the TOML of the
# file $1 if given (e.g. tests/bench/audit-off.toml), and a client with token $TOKEN; with
# $TOKEN empty, no [[clients]] (anonymous callers). Written to standard output.
variant_config() {
  echo "[limits]"; echo "requests_per_minute = 100000000"; echo "burst = 1000000"
  echo "agent_runs_per_minute = 1000"; echo "max_sessions = 100000"
  if [ -n "${1:-}" ]; then cat "$1"; fi
  if [ -n "${TOKEN:-}" ]; then
    echo; echo "[[clients]]"; echo 'name = "bench"'; echo "token = \"$TOKEN\""; echo 'agents = ["*"]'
  fi
}

wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2; return 1
}

# The processes start_variants started (stop_variants ends them; callers trap it on EXIT).
PIDS=()
stop_variants() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }

# start_variants BASE_PORT NAME=BINARY[@EXTRA.toml] ...: each variant serves $AGENTS (default:
# the shipped agents/) on the next port above BASE_PORT, with its own variant_config and data
# directory under $GWDIR, its log in $OUT/server-NAME.log. Fills NAMES, PORTS and GPIDS.
start_variants() {
  local port=$1 v name spec bin extra cfg pid; shift
  NAMES=(); PORTS=(); GPIDS=()
  for v in "$@"; do
    name=${v%%=*}; spec=${v#*=}; bin=${spec%%@*}; extra=""
    [ "$spec" != "$bin" ] && extra=${spec#*@}
    [ -x "$bin" ] || { echo "$name: no binary at $bin" >&2; exit 1; }
    cfg="$GWDIR/$name.toml"
    variant_config "$extra" > "$cfg"
    port=$((port + 1))
    ("$bin" serve --config "$cfg" --agents "${AGENTS:-$ROOT/agents}" --data "$GWDIR/data-$name" --listen "127.0.0.1:$port") \
      >>"$OUT/server-$name.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); wait_port "$port"
    NAMES+=("$name"); PORTS+=("$port"); GPIDS+=("$pid")
    echo "started $name pid=$pid port=$port: $bin ${extra:+(+ $extra)}"
  done
}
