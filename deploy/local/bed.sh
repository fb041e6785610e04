#!/usr/bin/env bash
# The whole local test bed: Kafka, S3 (versitygw) and the Python readers.
#   bed.sh up|down|status|env|reset
set -euo pipefail
source "$(dirname "$0")/common.sh"
HERE="$REPO/deploy/local"

timed() { local t=$SECONDS; "$@"; log "$(basename "$1") ${2:-}: $((SECONDS - t))s"; }

case "${1:-}" in
  up)
    # Slow installs in parallel, then start the servers.
    timed "$HERE/kafka.sh" install & k=$!
    timed "$HERE/s3.sh" install & s=$!
    timed "$HERE/venv.sh" & v=$!
    wait $k && wait $s && wait $v || die "install failed"
    timed "$HERE/kafka.sh" start
    timed "$HERE/s3.sh" start
    ;;
  down)
    "$HERE/kafka.sh" stop
    "$HERE/s3.sh" stop
    ;;
  status)
    rc=0
    "$HERE/kafka.sh" status || rc=1
    "$HERE/s3.sh" status || rc=1
    exit $rc
    ;;
  reset)
    "$HERE/kafka.sh" reset
    "$HERE/s3.sh" reset
    ;;
  env)
    echo "export LAKESINK_TEST_KAFKA_BROKERS=127.0.0.1:${LAKESINK_BED_KAFKA_PORT:-19092}"
    echo "export LAKESINK_TEST_KAFKA_SCRAM_BROKERS=127.0.0.1:$((${LAKESINK_BED_KAFKA_PORT:-19092} + 2))"
    "$HERE/s3.sh" env
    echo "export LAKESINK_TEST_PYTHON=$BED/venv/bin/python"
    echo "export LAKESINK_TEST_DUCKQ=$HERE/duckq.py"
    ;;
  *) echo "usage: $0 up|down|status|env|reset" >&2; exit 2 ;;
esac
