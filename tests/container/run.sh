#!/usr/bin/env bash
# The container, run (issue 23 item 13). Builds the Dockerfile's `runtime` stage and runs it
# under a real Docker engine, without any image registry:
#
#   - the base is Debian bookworm, built here by `debootstrap --variant=minbase` (cached in
#     target/container/bookworm) and imported as switchboard-base:bookworm, with the apt
#     sources (bookworm, -updates, -security) and the minimizing apt/dpkg config (no apt
#     caches, no docs, man pages or locales) of the official debian:bookworm-slim;
#   - the binary is the host's build of the Dockerfile's profile (`cargo build --profile
#     production --locked`: release, fat LTO, stripped); the host and the base are both bookworm,
#     so the glibc is the same (checked: the binary must print its version inside the image);
#   - the rest is the real Dockerfile's runtime stage, taken from the Dockerfile itself with
#     exactly two lines replaced (its FROM, and the COPY --from=build of the binary); the
#     generated Dockerfile and its diff against the real stage are printed.
#
# Then it runs the image as the README does (`-e MCP_SECRET_TOKEN`, `-e
# SWITCHBOARD_ALLOWED_HOSTS`, a port on 127.0.0.1) and checks, each with a deadline:
#   health      Docker's own HEALTHCHECK (`switchboard healthcheck`) reports `healthy`
#   uid         the gateway process runs as uid/gid 10001 (read from /proc on the host)
#   mcp         initialize + tools/call get_incident over Streamable HTTP with the token
#               (the incident comes from the store seeded in the /app/data volume)
#   no token    401 without a token, 401 with a wrong one
#   host guard  403 host_not_allowed for a foreign Host header, even with the token
#   admin       /admin answers 403 to a peer outside the container without the admin token
#   stop        `docker stop -t 15` with a session and an SSE stream open: exit code 0,
#               within the 10 s drain grace (not killed at 15 s)
#   stop/init   the same stop of a second container run with `--init` (the README's
#               `docker run --init`, compose's `init: true`)
# One PASS/FAIL line per check, figures at the end (image size, time to healthy, stop
# time, exit code); exits non-zero on any failure. Containers are removed on exit; the
# images are kept (`--clean` removes them and the cached base too).
#
#   tests/container/run.sh [--skip-build] [--rebuild-base] [--clean]
#
# Run by hand, not in CI (.ci/run does not call it): it needs root, debootstrap, a running
# Docker engine and Debian's mirror. On a Debian machine:
#
#   apt-get install -y docker.io debootstrap
#   dockerd >/tmp/dockerd.log 2>&1 &        # where no init system starts it
#
# Needs: docker (client and engine), debootstrap (first run only), cargo, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$ROOT/target/container
BASE_IMAGE=switchboard-base:bookworm
IMAGE=switchboard:container-test
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TOKEN=container-test-token-$RANDOM$RANDOM
NAME=switchboard-container-test-$$
BUILD=1 REBUILD_BASE=0
for arg in "$@"; do
  case $arg in
    --skip-build) BUILD=0 ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    --clean)
      docker rmi -f "$IMAGE" "$BASE_IMAGE" >/dev/null 2>&1 || true
      rm -rf "$WORK"
      echo "removed $IMAGE, $BASE_IMAGE and $WORK"
      exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "ERROR: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed${2:+ ($2)}"; }
log() { echo "== $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

need docker "apt-get install docker.io"
need curl
need python3
[ "$BUILD" = 1 ] && need cargo
docker info >/dev/null 2>&1 || die "no Docker engine answers ('docker info' failed). Start one: dockerd >/tmp/dockerd.log 2>&1 &"

# ---- results -----------------------------------------------------------------------------
FAILED=0 PASSED=0
pass() { echo "PASS  $1${2:+: $2}"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL  $1${2:+: $2}"; FAILED=$((FAILED + 1)); }

CONTAINERS=() BG_PIDS=()
cleanup() {
  local rc=$?
  for p in "${BG_PIDS[@]:-}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done
  for c in "${CONTAINERS[@]:-}"; do if [ -n "$c" ]; then docker rm -f -v "$c" >/dev/null 2>&1 || true; fi; done
  exit "$rc"
}
trap cleanup EXIT

mkdir -p "$WORK"

# ---- 1. the base: bookworm minbase, by debootstrap ----------------------------------------
ROOTFS=$WORK/bookworm
if [ "$REBUILD_BASE" = 1 ]; then
  rm -rf "$ROOTFS" "$ROOTFS.tmp"
  docker rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
fi
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ ! -f "$ROOTFS/.complete" ]; then
    need debootstrap "apt-get install debootstrap"
    [ "$(id -u)" = 0 ] || die "debootstrap must run as root"
    log "debootstrap --variant=minbase bookworm (into $ROOTFS; a few minutes, cached after)"
    rm -rf "$ROOTFS.tmp"
    debootstrap --variant=minbase bookworm "$ROOTFS.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    # The official image's apt sources (deb822), so that the runtime stage's apt-get gets
    # the current ca-certificates of bookworm, as it does on debian:bookworm-slim.
    rm -f "$ROOTFS.tmp/etc/apt/sources.list"
    cat >"$ROOTFS.tmp/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # And the official image's minimizing config (what debuerreotype writes for Docker's
    # debian images, slim variant). Without docker-clean, the runtime stage's apt-get leaves
    # apt's package caches (/var/cache/apt/*.bin) and the .debs in its layer: 90 MiB more
    # than on debian:bookworm-slim, which is the base's doing, not the Dockerfile's.
    R=$ROOTFS.tmp
    cat >"$R/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$R/etc/apt/apt.conf.d/docker-autoremove-suggests"
    printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' >"$R/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Acquire::Languages "none";' >"$R/etc/apt/apt.conf.d/docker-no-languages"
    echo 'force-unsafe-io' >"$R/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    cat >"$R/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
    find "$R/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$R/usr/share/groff/"* "$R/usr/share/info/"* "$R/usr/share/linda/"* \
           "$R/usr/share/lintian/overrides/"* "$R/usr/share/man/"*
    find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/cache/apt/"*.bin "$R/var/lib/apt/lists/"*
    : >"$ROOTFS.tmp/.complete"
    mv "$ROOTFS.tmp" "$ROOTFS"
  fi
  log "docker import $ROOTFS as $BASE_IMAGE"
  tar -C "$ROOTFS" --exclude=./.complete -c . | docker import - "$BASE_IMAGE" >/dev/null
fi
echo "glibc: host $(ldd --version | head -1 | awk '{print $NF}'), base $(docker run --rm "$BASE_IMAGE" ldd --version | head -1 | awk '{print $NF}')"

# ---- 2. the production binary -------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "cargo build --profile production --locked (as in the Dockerfile's build stage)"
  (cd "$ROOT" && CARGO_TERM_COLOR=never cargo build --profile production --locked)
fi
BIN=$ROOT/target/production/switchboard
[ -x "$BIN" ] || die "$BIN not found (run without --skip-build)"

# ---- 3. the runtime stage, from the real Dockerfile ----------------------------------------
CTX=$WORK/context
rm -rf "$CTX"; mkdir -p "$CTX"
cp "$BIN" "$CTX/switchboard"
cp -r "$ROOT/agents" "$CTX/agents"
FROM_LINE='FROM debian:bookworm-slim AS runtime'
COPY_LINE='COPY --from=build /src/target/production/switchboard /usr/local/bin/switchboard'
sed -n "/^$FROM_LINE\$/,\$p" "$ROOT/Dockerfile" >"$CTX/runtime.real"
[ "$(grep -cxF "$FROM_LINE" "$CTX/runtime.real")" = 1 ] \
  || die "the Dockerfile has no line '$FROM_LINE': update tests/container/run.sh to its runtime stage"
[ "$(grep -cxF "$COPY_LINE" "$CTX/runtime.real")" = 1 ] \
  || die "the Dockerfile's runtime stage has no line '$COPY_LINE': update tests/container/run.sh"
grep -q '^FROM ' <(tail -n +2 "$CTX/runtime.real") && die "the runtime stage is no longer the Dockerfile's last"
python3 - "$CTX/runtime.real" "$CTX/Dockerfile" "$FROM_LINE" "$COPY_LINE" "$BASE_IMAGE" <<'PY'
import sys
src, dst, from_line, copy_line, base = sys.argv[1:]
lines = open(src).read().split("\n")
out = []
for l in lines:
    if l == from_line:
        l = f"FROM {base} AS runtime"
    elif l == copy_line:
        l = "COPY switchboard /usr/local/bin/switchboard"
    out.append(l)
open(dst, "w").write("\n".join(out))
PY
log "the runtime stage as built (diff against the Dockerfile's):"
diff "$CTX/runtime.real" "$CTX/Dockerfile" | sed 's/^/   /' || true

log "docker build (runtime stage on $BASE_IMAGE)"
# The classic builder: it takes the local base image as it is (BuildKit would look the
# `FROM` up in a registry first) and the Dockerfile needs none of BuildKit's features.
T0=$(now)
if ! DOCKER_BUILDKIT=0 docker build -t "$IMAGE" -f "$CTX/Dockerfile" "$CTX" >"$WORK/build.log" 2>&1; then
  tail -30 "$WORK/build.log" >&2; die "docker build failed (log: $WORK/build.log)"
fi
BUILD_SECS=$(since "$T0")
VERSION=$(docker run --rm "$IMAGE" --version 2>&1) || die "the binary does not run in the image: $VERSION"
case $VERSION in switchboard\ *) ;; *) die "unexpected --version output in the image: $VERSION" ;; esac
echo "image $IMAGE built in ${BUILD_SECS}s: $VERSION"

# ---- 4. run it ------------------------------------------------------------------------------
T_RUN=$(now)   # times below are from the start of `docker run`
C=$(docker run -d --name "$NAME" -p 127.0.0.1::8080 \
      -e MCP_SECRET_TOKEN="$TOKEN" -e SWITCHBOARD_ALLOWED_HOSTS=localhost,127.0.0.1 \
      "$IMAGE")
CONTAINERS+=("$C")
PORT=$(docker port "$C" 8080/tcp | head -1 | sed 's/.*://')
URL=http://127.0.0.1:$PORT
MCP=$URL/agents/servicenow/mcp
echo "container ${C:0:12} on $URL"

state() { docker inspect -f "$1" "$C"; }
running() { [ "$(state '{{.State.Running}}')" = true ]; }
show_logs() { echo "--- docker logs (last 30 lines)"; docker logs --tail 30 "$1" 2>&1 | sed 's/^/   /'; }

# Up: GET /healthz from the host answers 200 (deadline 60 s).
T_UP=""
for _ in $(seq 600); do
  running || break
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/healthz" || true)" = 200 ]; then
    T_UP=$(since "$T_RUN"); break
  fi
  sleep 0.1
done
if [ -z "$T_UP" ]; then
  fail "startup" "GET /healthz did not answer 200 within 60 s (running: $(state '{{.State.Running}}'))"
  show_logs "$C"; exit 1
fi
echo "GET /healthz answers 200 after ${T_UP}s"

# uid: the process Docker started (no --init: the gateway itself is PID 1 in the container).
PID=$(state '{{.State.Pid}}')
UIDS=$(awk '/^Uid:/{print $2, $3}' "/proc/$PID/status" 2>/dev/null || echo "?")
GIDS=$(awk '/^Gid:/{print $2, $3}' "/proc/$PID/status" 2>/dev/null || echo "?")
COMM=$(cat "/proc/$PID/comm" 2>/dev/null || echo "?")
if [ "$COMM" = switchboard ] && [ "$UIDS" = "10001 10001" ] && [ "$GIDS" = "10001 10001" ]; then
  pass "uid" "process '$COMM' runs as uid 10001, gid 10001"
else
  fail "uid" "process '$COMM': uid (real, effective) $UIDS, gid $GIDS; want 10001"
fi

# MCP with the token: initialize, initialized, tools/call get_incident.
HDRS=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream')
# The JSON-RPC message of a body that is JSON or an SSE stream of one `data:` message.
jsonrpc() {
  python3 -c '
import json, sys
body = sys.stdin.read()
msgs = [l[5:].strip() for l in body.splitlines() if l.startswith("data:") and l[5:].strip()]
print(json.dumps(json.loads(msgs[-1] if msgs else body)))'
}
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"container-test","version":"1"}}}'
mcp_ok=0 detail=""
SID=""
for _ in $(seq 50); do   # deadline 10 s for the first answer
  HEAD=$(curl -s -D - -o "$WORK/init.body" --max-time 5 "${HDRS[@]}" -H "authorization: Bearer $TOKEN" "$MCP" -d "$INIT" || true)
  [ -n "$HEAD" ] && break; sleep 0.2
done
CODE=$(printf '%s' "$HEAD" | awk 'NR==1{print $2}')
SID=$(printf '%s' "$HEAD" | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}' | tr -d '\r')
if [ "$CODE" = 200 ] && [ -n "$SID" ]; then
  SERVER=$(jsonrpc <"$WORK/init.body" | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["serverInfo"]["name"], r["protocolVersion"])' 2>/dev/null || true)
  N_CODE=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${HDRS[@]}" -H "authorization: Bearer $TOKEN" \
             -H "mcp-session-id: $SID" -H 'mcp-protocol-version: 2025-06-18' "$MCP" \
             -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' || true)
  CALL='{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_incident","arguments":{"number":"INC0012346"}}}'
  RESULT=$(curl -s --max-time 10 "${HDRS[@]}" -H "authorization: Bearer $TOKEN" -H "mcp-session-id: $SID" \
             -H 'mcp-protocol-version: 2025-06-18' "$MCP" -d "$CALL" | jsonrpc 2>/dev/null || true)
  CHECK=$(printf '%s' "$RESULT" | python3 -c '
import json, sys
r = json.load(sys.stdin)["result"]
text = " ".join(c.get("text", "") for c in r["content"])
assert not r.get("isError"), "isError: " + text[:200]
assert "INC0012346" in text, "no INC0012346 in: " + text[:200]
print(text[:80].replace("\n", " "))' 2>&1) && mcp_ok=1
  detail="initialize 200 ($SERVER), initialized $N_CODE, get_incident INC0012346: $CHECK"
  [ "$N_CODE" = 202 ] || mcp_ok=0
else
  detail="initialize answered ${CODE:-nothing}: $(head -c 300 "$WORK/init.body" 2>/dev/null)"
fi
if [ "$mcp_ok" = 1 ]; then pass "mcp" "$detail"; else fail "mcp" "$detail"; fi

# Without the token, and with a wrong one: 401.
NO_TOKEN=$(curl -s -o "$WORK/401.body" -w '%{http_code}' --max-time 5 "${HDRS[@]}" "$MCP" -d "$INIT" || true)
BAD_TOKEN=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${HDRS[@]}" -H 'authorization: Bearer wrong' "$MCP" -d "$INIT" || true)
if [ "$NO_TOKEN" = 401 ] && [ "$BAD_TOKEN" = 401 ]; then
  pass "no token" "401 without a token, 401 with a wrong one: $(head -c 120 "$WORK/401.body")"
else
  fail "no token" "without a token $NO_TOKEN, with a wrong one $BAD_TOKEN (want 401, 401)"
fi

# A foreign Host header, with the right token: 403 host_not_allowed.
HOST_CODE=$(curl -s -o "$WORK/403.body" -w '%{http_code}' --max-time 5 "${HDRS[@]}" -H 'host: evil.example' \
              -H "authorization: Bearer $TOKEN" "$MCP" -d "$INIT" || true)
if [ "$HOST_CODE" = 403 ] && grep -q '"host_not_allowed"' "$WORK/403.body"; then
  pass "host guard" "Host: evil.example -> 403 $(head -c 140 "$WORK/403.body")"
else
  fail "host guard" "Host: evil.example -> $HOST_CODE $(head -c 200 "$WORK/403.body")"
fi

# /admin from the host: the peer is Docker's bridge, not loopback; no admin token is set.
ADMIN_CODE=$(curl -s -o "$WORK/admin.body" -w '%{http_code}' --max-time 5 "$URL/admin/sessions" || true)
if [ "$ADMIN_CODE" = 403 ]; then
  pass "admin" "GET /admin/sessions from outside the container without an admin token -> 403"
else
  fail "admin" "GET /admin/sessions from outside -> $ADMIN_CODE $(head -c 200 "$WORK/admin.body")"
fi

# Docker's HEALTHCHECK: its first probe runs one interval (30 s) after the start.
HEALTH="" T_HEALTHY=""
for _ in $(seq 900); do   # deadline 90 s: interval 30 s + timeout 5 s, with room
  HEALTH=$(state '{{if .State.Health}}{{.State.Health.Status}}{{end}}')
  [ "$HEALTH" = healthy ] && { T_HEALTHY=$(since "$T_RUN"); break; }
  [ "$HEALTH" = unhealthy ] && break
  running || break
  sleep 0.1
done
if [ "$HEALTH" = healthy ]; then
  PROBE=$(state '{{with (index .State.Health.Log 0)}}exit {{.ExitCode}}{{end}}')
  pass "health" "docker reports healthy ${T_HEALTHY}s after start (probe 'switchboard healthcheck': $PROBE)"
else
  fail "health" "status '${HEALTH:-none}' after 90 s: $(state '{{json .State.Health}}' | head -c 400)"
fi

# docker stop with a session and an SSE stream open: exit 0 within the drain grace.
stop_check() {   # name, container
  local label=$1 c=$2 t0 secs code oom
  t0=$(now)
  docker stop -t 15 "$c" >/dev/null
  secs=$(since "$t0")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  oom=$(docker inspect -f '{{.State.OOMKilled}}' "$c")
  eval "${3}_SECS=$secs ${3}_CODE=$code"
  if [ "$code" = 0 ] && [ "$oom" = false ] && python3 -c "import sys; sys.exit(0 if float('$secs') < 12 else 1)"; then
    pass "$label" "docker stop -t 15 took ${secs}s, exit code $code"
  else
    fail "$label" "docker stop -t 15 took ${secs}s, exit code $code (OOMKilled $oom; want 0 within the 10 s grace)"
    show_logs "$c"
  fi
}
# The session's GET stream stays open through the stop: the drain must end it. A small
# client holds it and writes "open <status>" once the answer's head is in, "closed" at its end.
rm -f "$WORK/stream.state"
python3 - "$MCP" "$TOKEN" "$SID" "$WORK/stream.state" <<'EOF' &
import http.client, sys, urllib.parse
url, token, sid, state = sys.argv[1:]
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
c.request("GET", u.path, headers={"accept": "text/event-stream", "authorization": "Bearer " + token,
                                  "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"})
r = c.getresponse()
open(state, "w").write(f"open {r.status}\n")
try:
    while r.read1(65536):
        pass
    open(state, "a").write("closed\n")
except Exception as e:
    open(state, "a").write(f"error {e!r}\n")
EOF
BG_PIDS+=($!)
for _ in $(seq 100); do grep -q '^open' "$WORK/stream.state" 2>/dev/null && break; sleep 0.1; done
STREAM=$(head -1 "$WORK/stream.state" 2>/dev/null || echo "not open")
echo "SSE stream of the session: $STREAM"
stop_check "stop" "$C" STOP
LAST_LOG=$(docker logs --tail 1 "$C" 2>&1 | cut -c1-160)
for _ in $(seq 50); do grep -qE '^(closed|error)' "$WORK/stream.state" 2>/dev/null && break; sleep 0.1; done
if [ "$STREAM" = "open 200" ] && grep -q '^closed' "$WORK/stream.state"; then
  pass "stream" "the session's open SSE stream was ended by the server on stop"
else
  fail "stream" "the session's SSE stream: $(tr '\n' ' ' <"$WORK/stream.state" 2>/dev/null || echo 'no state')"
fi

# The same with --init (tini as PID 1 forwards the SIGTERM), as the README's docker run does.
C2=$(docker run -d --init --name "$NAME-init" -p 127.0.0.1::8080 -e MCP_SECRET_TOKEN="$TOKEN" "$IMAGE")
CONTAINERS+=("$C2")
PORT2=$(docker port "$C2" 8080/tcp | head -1 | sed 's/.*://')
up2=0
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT2/healthz" || true)" = 200 ] && { up2=1; break; }
  sleep 0.1
done
if [ "$up2" = 1 ]; then
  stop_check "stop/init" "$C2" STOP2
else
  fail "stop/init" "the --init container did not answer /healthz within 60 s"; show_logs "$C2"
fi

# ---- figures ----------------------------------------------------------------------------------
mib() { python3 -c "print(f'{int(\"$1\") / 1048576:.1f} MiB')"; }
IMG_SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
BASE_SIZE=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
BIN_SIZE=$(stat -c %s "$BIN")
echo
echo "figures ($(date -u +%Y-%m-%d), docker $(docker version -f '{{.Server.Version}}'), $VERSION):"
echo "  image size         $(mib "$IMG_SIZE") (base bookworm minbase $(mib "$BASE_SIZE"), binary $(mib "$BIN_SIZE"))"
echo "  /healthz answers   ${T_UP}s after docker run"
echo "  docker healthy     ${T_HEALTHY:-never}s after docker run (first probe at the 30 s interval)"
echo "  docker stop        ${STOP_SECS:-?}s, exit code ${STOP_CODE:-?}; with --init ${STOP2_SECS:-?}s, exit code ${STOP2_CODE:-?}"
echo "  last log line      $LAST_LOG"
echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
