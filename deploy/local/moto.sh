#!/usr/bin/env bash
# moto's server (from the bed's venv) as a local AWS Glue endpoint for the Iceberg Glue catalog.
#
#   moto.sh start     make the venv if needed, start moto_server on 127.0.0.1, wait until a Glue
#                     GetDatabases call works
#   moto.sh stop      stop by pid file and wait
#   moto.sh status    exit 0 if running
#   moto.sh reset     clear every resource moto holds (POST /moto-api/reset), keep it running
#   moto.sh url       print the endpoint URL
#
# moto accepts any credentials (use the bed's lakesink/lakesinksecret) and any region
# (us-east-1). State lives in memory only: it is gone after stop. Tests share the server, so
# each test uses its own Glue database names. Env: LAKESINK_BED_MOTO_PORT (15000).
set -euo pipefail
BED_TAG=moto
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="$BED/venv"
VPY="$VENV/bin/python"
DIR="$RUN/moto"
PIDF="$DIR/moto.pid"
LOGF="$DIR/moto.log"
MARKER="$VENV/bin/moto_server -H 127.0.0.1"
TIMEOUT=60

url() { echo "http://127.0.0.1:$MOTO_PORT"; }

# glue_ok: a signed Glue GetDatabases call answers (boto3 from the venv).
glue_ok() {
  AWS_ACCESS_KEY_ID=lakesink AWS_SECRET_ACCESS_KEY=lakesinksecret "$VPY" - "$(url)" <<'PY'
import sys

import boto3
from botocore.config import Config

c = boto3.client("glue", endpoint_url=sys.argv[1], region_name="us-east-1",
                 config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))
c.get_databases()
PY
}
ready() { port_open "$MOTO_PORT" && glue_ok; }

start() {
  local pid
  if pid=$(pid_of "$PIDF" "$MARKER"); then
    local running; running=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n '/^-p$/{n;p}' | head -n1)
    if [[ -n "$running" && "$running" != "$MOTO_PORT" ]]; then
      die "moto_server is already running on port $running, not $MOTO_PORT: stop it first to change the port"
    fi
    wait_ready "$TIMEOUT" "$pid" "$LOGF" moto_server ready
    log "already running on $(url) (pid $pid)"
    return 0
  fi
  [[ -x "$VENV/bin/moto_server" && -f "$VENV/.bed-stamp" ]] || "$HERE/venv.sh" install
  [[ -x "$VENV/bin/moto_server" ]] || die "no moto_server in $VENV (requirements.txt: moto[server,glue])"
  MOTO_PORT=$MOTO_WANT_PORT
  if port_open "$MOTO_PORT"; then
    port_explicit MOTO && die "port $MOTO_PORT is in use by another process (LAKESINK_BED_MOTO_PORT)"
    local p; p=$(free_port_from $((MOTO_PORT + 100)) 100 1) || die "no free port for moto near $MOTO_PORT"
    log "port $MOTO_PORT is in use by a process that is not this bed's: using $p"
    MOTO_PORT=$p
  fi
  record_port MOTO "$MOTO_PORT"
  mkdir -p "$DIR"
  rm -f "$PIDF" # a stale one (from a machine restart) would be read as the new pid
  [[ -f "$LOGF" ]] && mv -f "$LOGF" "$LOGF.1"
  # setsid: own session; fd 9 (the lock) closed. No AWS settings of the caller leak in.
  nohup setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PIDF" \
    env -u AWS_PROFILE -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE -u AWS_ENDPOINT_URL \
    "$VPY" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >>"$LOGF" 2>&1 9>&- &
  local t=$SECONDS
  for _ in $(seq 50); do [[ -s "$PIDF" ]] && break; sleep 0.1; done
  pid=$(cat "$PIDF" 2>/dev/null) || die "moto_server did not write its pid file"
  wait_ready "$TIMEOUT" "$pid" "$LOGF" moto_server ready
  log "moto $("$VPY" -c 'import moto; print(moto.__version__)') ready on $(url) (pid $pid, $((SECONDS - t))s; log $LOGF)"
}

status() {
  local pid
  if pid=$(pid_of "$PIDF" "$MARKER") && ready; then
    echo "moto: running, pid $pid, $(url) (Glue)"
  else
    echo "moto: not running"
    return 1
  fi
}

reset() {
  if pid_of "$PIDF" "$MARKER" >/dev/null; then
    curl -sS -m 10 -X POST "$(url)/moto-api/reset" >/dev/null || die "POST $(url)/moto-api/reset failed"
    log "cleared moto's state"
  fi
}

LOCK="$DIR.lock"
case "${1:-}" in
  start) with_lock "$LOCK" start ;;
  stop) with_lock "$LOCK" stop_pid moto_server "$PIDF" "$MARKER" 20 ;;
  status) status ;;
  reset) with_lock "$LOCK" reset ;;
  url) url ;;
  port) echo "$MOTO_PORT" ;;
  *) echo "usage: $0 start|stop|status|reset|url|port" >&2; exit 2 ;;
esac
