# Sourced by ab.sh, per-call.sh and instructions.sh: the switchboard.toml every variant runs
# with (a client token $TOKEN, rate limits on but high), plus the TOML of the file $1 if given
# (e.g. tests/bench/audit-off.toml), written to standard output.
variant_config() {
  echo "[limits]"; echo "requests_per_minute = 100000000"; echo "burst = 1000000"
  echo "agent_runs_per_minute = 1000"; echo "max_sessions = 100000"
  if [ -n "${1:-}" ]; then cat "$1"; fi
  echo; echo "[[clients]]"; echo 'name = "bench"'; echo "token = \"$TOKEN\""; echo 'agents = ["*"]'
}
