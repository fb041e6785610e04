#!/usr/bin/env bash
# S3 server for the test bed: versitygw (Apache-2.0) with its POSIX backend, on 127.0.0.1.
#
#   s3.sh install   build versitygw into .bed/bin (go install; or copy an identical one from GOBIN)
#   s3.sh start     install, start, wait until it answers HTTP, create the bucket lakesink-test
#   s3.sh stop      stop by pid file and wait
#   s3.sh status    exit 0 if running
#   s3.sh reset     stop and delete every bucket and object
#   s3.sh dir       print the POSIX root (bucket B, key K is the file <root>/B/K)
#
# Credentials (fixed, test only): access key lakesink, secret lakesinksecret, region us-east-1.
# Env: LAKESINK_BED_S3_PORT (19000), LAKESINK_BED_S3_SIDECAR=1 (keep metadata in a sidecar
#      directory even when the filesystem has user xattrs), LAKESINK_BED_S3_KEEPALIVE=1 (keep
#      connections open, as S3 does; `make bench` sets it). A running server started with the
#      other keep-alive setting is restarted.
#
# Keep-alive is off by default: versitygw then closes every connection after one request, so
# each request of a client dials anew, which costs the client CPU that S3 would not (the sink
# at 5,000 open hours: ~5 %). With it on, versitygw v1.8.0 answers PyArrow's
# CompleteMultipartUpload (PyIceberg writing through the REST catalog) with HTTP 400 "An error
# occurred when parsing the HTTP request", so the tests keep it off.
set -euo pipefail
BED_TAG=s3
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=v1.8.0
MODULE=github.com/versity/versitygw
ACCESS=lakesink
SECRET=lakesinksecret
REGION=us-east-1
BUCKET=lakesink-test
GW="$BIN/versitygw"
DIR="$RUN/s3"
ROOT="$DIR/data"
SIDECAR="$DIR/meta"
MODEF="$DIR/metadata-mode"
PIDF="$DIR/versitygw.pid"
LOGF="$DIR/versitygw.log"
MARKER=" $ROOT"

# gw_version FILE: the versitygw module version a binary was built from ("" if unknown).
gw_version() { go version -m "$1" 2>/dev/null | awk -v m="$MODULE" '$1 == "mod" && $2 == m { print $3 }'; }

install() {
  need_cmd go "versitygw is built with 'go install'"
  [[ -x "$GW" && "$(gw_version "$GW")" == "$VERSION" ]] && return 0
  # An identical binary already built on this machine (e.g. by a plain `go install`) saves minutes.
  local gobin gopath c
  gobin=$(go env GOBIN); gopath=$(go env GOPATH)
  for c in ${gobin:+"$gobin/versitygw"} "${gopath%%:*}/bin/versitygw"; do
    if [[ -x "$c" && "$(gw_version "$c")" == "$VERSION" && "${LAKESINK_BED_NO_COPY:-}" != 1 ]]; then
      cp "$c" "$GW.tmp" && mv -f "$GW.tmp" "$GW"
      log "versitygw $VERSION copied from $c"
      return 0
    fi
  done
  log "building versitygw $VERSION (go install; ~3 min cold on 2 cores)"
  local tmp="$BIN/.gobin.$$" ilog="$CACHE/versitygw-install.log"
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! (cd "$BIN" && GOBIN="$tmp" GOFLAGS='' GOWORK=off go install "$MODULE/cmd/versitygw@$VERSION") >"$ilog" 2>&1 </dev/null; then
    rm -rf "$tmp"
    show_log "$ilog"
    die "go install of versitygw $VERSION failed (log: $ilog)"
  fi
  mv -f "$tmp/versitygw" "$GW"
  rm -rf "$tmp"
  log "versitygw $VERSION built into $GW"
}

# metadata_mode: "xattr" when the filesystem under .bed supports user extended attributes
# (versitygw's default), else "sidecar". Decided once per data directory.
metadata_mode() {
  if [[ -f "$MODEF" ]]; then cat "$MODEF"; return; fi
  local mode=sidecar
  if [[ -d "$SIDECAR" && -n "$(ls -A "$SIDECAR" 2>/dev/null)" ]]; then
    mode=sidecar # data written by an earlier bed that used a sidecar
  elif [[ "${LAKESINK_BED_S3_SIDECAR:-}" != 1 ]] && "$PY" - "$DIR" <<'PY'
import os, sys, tempfile
fd, p = tempfile.mkstemp(dir=sys.argv[1])
try:
    os.setxattr(p, "user.lakesink_probe", b"1")
    ok = os.getxattr(p, "user.lakesink_probe") == b"1"
except OSError:
    ok = False
finally:
    os.close(fd); os.remove(p)
sys.exit(0 if ok else 1)
PY
  then
    mode=xattr
  fi
  echo "$mode" > "$MODEF"
  echo "$mode"
}

url() { echo "http://127.0.0.1:$S3_PORT$1"; }
ready() { local code; code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$(url /)") && [[ "$code" != 000 ]]; }
# s3curl ARGS...: a SigV4-signed request (curl >= 7.75).
s3curl() { curl -sS -m 10 --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }

ensure_bucket() {
  local code
  code=$(s3curl -o /dev/null -w '%{http_code}' -I "$(url "/$BUCKET")") || true
  if [[ "$code" != 200 ]]; then
    code=$(s3curl -o "$DIR/create-bucket.out" -w '%{http_code}' -X PUT "$(url "/$BUCKET")") || true
    [[ "$code" == 200 ]] || { cat "$DIR/create-bucket.out" >&2 2>/dev/null; show_log "$LOGF"; die "could not create bucket $BUCKET (HTTP $code)"; }
    log "created bucket $BUCKET"
  fi
  # The bucket must be listable through the S3 API.
  s3curl -o "$DIR/list.out" "$(url "/$BUCKET?list-type=2&max-keys=1")" && grep -q '<ListBucketResult' "$DIR/list.out" \
    || { cat "$DIR/list.out" >&2 2>/dev/null; die "bucket $BUCKET is not listable"; }
}

start() {
  local pid
  need_cmd curl "it checks the S3 server and creates the bucket"
  local ka=() # versitygw's flag for LAKESINK_BED_S3_KEEPALIVE=1
  [[ "${LAKESINK_BED_S3_KEEPALIVE:-0}" == 1 ]] && ka=(--keep-alive)
  if pid=$(pid_of "$PIDF" "$MARKER"); then
    local args; args=$(tr '\0' '\n' < "/proc/$pid/cmdline")
    if [[ "$(grep -x -- --keep-alive <<<"$args")" != "${ka[*]}" ]]; then
      log "restarting versitygw with LAKESINK_BED_S3_KEEPALIVE=${LAKESINK_BED_S3_KEEPALIVE:-0}"
      stop_pid versitygw "$PIDF" "$MARKER" 20
    else
      local running; running=$(sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$args" | head -n1)
      if [[ -n "$running" && "$running" != "$S3_PORT" ]]; then
        die "versitygw is already running on port $running, not $S3_PORT: stop it first to change the port"
      fi
      wait_ready 30 "$pid" "$LOGF" versitygw ready
      ensure_bucket
      log "already running on http://127.0.0.1:$S3_PORT (pid $pid)"
      return 0
    fi
  fi
  install
  S3_PORT=$S3_WANT_PORT
  if port_open "$S3_PORT"; then
    port_explicit S3 && die "port $S3_PORT is in use by another process (LAKESINK_BED_S3_PORT)"
    local p; p=$(free_port_from $((S3_PORT + 100)) 100 1) || die "no free port for s3 near $S3_PORT"
    log "port $S3_PORT is in use by a process that is not this bed's: using $p"
    S3_PORT=$p
  fi
  record_port S3 "$S3_PORT"
  mkdir -p "$ROOT"
  local mode meta=()
  mode=$(metadata_mode)
  if [[ "$mode" == sidecar ]]; then mkdir -p "$SIDECAR"; meta=(--sidecar "$SIDECAR"); fi
  rm -f "$PIDF" # a stale one (from a machine restart) would be read as the new pid
  [[ -f "$LOGF" ]] && mv -f "$LOGF" "$LOGF.1"
  nohup setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PIDF" \
    "$GW" --access "$ACCESS" --secret "$SECRET" --region "$REGION" --port "127.0.0.1:$S3_PORT" --quiet "${ka[@]}" \
    posix "${meta[@]}" "$ROOT" </dev/null >>"$LOGF" 2>&1 9>&- &
  for _ in $(seq 50); do [[ -s "$PIDF" ]] && break; sleep 0.1; done
  pid=$(cat "$PIDF" 2>/dev/null) || die "versitygw did not write its pid file"
  wait_ready 30 "$pid" "$LOGF" versitygw ready
  ensure_bucket
  log "versitygw $VERSION ready on http://127.0.0.1:$S3_PORT (pid $pid, metadata in $mode, root $ROOT)"
}

status() {
  local pid
  if pid=$(pid_of "$PIDF" "$MARKER") && ready; then
    echo "s3: running, pid $pid, http://127.0.0.1:$S3_PORT, bucket $BUCKET, root $ROOT ($(cat "$MODEF" 2>/dev/null))"
  else
    echo "s3: not running"
    return 1
  fi
}

reset() {
  stop_pid versitygw "$PIDF" "$MARKER" 20
  rm -rf "$DIR"
  log "deleted $DIR"
}

LOCK="$DIR.lock"
case "${1:-}" in
  install) with_lock "$LOCK" install ;;
  start) with_lock "$LOCK" start ;;
  stop) with_lock "$LOCK" stop_pid versitygw "$PIDF" "$MARKER" 20 ;;
  status) status ;;
  reset) with_lock "$LOCK" reset ;;
  dir) echo "$ROOT" ;;
  port) echo "$S3_PORT" ;;
  *) echo "usage: $0 install|start|stop|status|reset|dir|port" >&2; exit 2 ;;
esac
