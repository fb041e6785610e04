#!/usr/bin/env bash
# versitygw (Apache-2.0) S3 server with its POSIX backend, on 127.0.0.1.
#   s3.sh install|start|stop|status|reset
set -euo pipefail
source "$(dirname "$0")/common.sh"
VERSION=v1.8.0
PORT=${LAKESINK_BED_S3_PORT:-19000}
ACCESS=lakesink
SECRET=lakesinksecret
REGION=us-east-1
BUCKET=lakesink-test
DIR="$RUN/s3"
PIDF="$DIR/versitygw.pid"
LOGF="$DIR/versitygw.log"
GW="$BIN/versitygw-$VERSION"

install() {
  [[ -x "$GW" ]] && return
  log "building versitygw $VERSION (go install, a few minutes when cold)"
  local tmp; tmp=$(mktemp -d)
  GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
  mv "$tmp/versitygw" "$GW"
  rmdir "$tmp"
}

ready() { curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; }

s3curl() { curl -sS --fail-with-body --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }

start() {
  install
  if pid_alive "$PIDF" && ready; then log "s3 already running on 127.0.0.1:$PORT"; return; fi
  port_open 127.0.0.1 "$PORT" && die "port $PORT is taken by another process"
  mkdir -p "$DIR/data" "$DIR/meta"
  # POSIX metadata lives in extended attributes; keep it in a sidecar dir so any filesystem works.
  nohup "$GW" --access "$ACCESS" --secret "$SECRET" --region "$REGION" --port "127.0.0.1:$PORT" --quiet \
    posix --sidecar "$DIR/meta" "$DIR/data" >"$LOGF" 2>&1 &
  echo $! > "$PIDF"
  wait_for 30 "$LOGF" ready || die "versitygw did not start"
  if ! s3curl -o /dev/null "http://127.0.0.1:$PORT/$BUCKET" -I 2>/dev/null; then
    s3curl -X PUT -o /dev/null "http://127.0.0.1:$PORT/$BUCKET" || die "could not create bucket $BUCKET"
  fi
  log "s3 (versitygw $VERSION) ready on http://127.0.0.1:$PORT, bucket $BUCKET"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid versitygw "$PIDF" ;;
  status) if pid_alive "$PIDF" && ready; then echo "s3: running on 127.0.0.1:$PORT"; else echo "s3: stopped"; exit 1; fi ;;
  reset) stop_pid versitygw "$PIDF"; rm -rf "$DIR" ;;
  env)
    cat <<ENV
export LAKESINK_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT
export LAKESINK_TEST_S3_ACCESS_KEY=$ACCESS
export LAKESINK_TEST_S3_SECRET_KEY=$SECRET
export LAKESINK_TEST_S3_REGION=$REGION
export LAKESINK_TEST_S3_BUCKET=$BUCKET
ENV
    ;;
  *) echo "usage: $0 install|start|stop|status|reset|env" >&2; exit 2 ;;
esac
