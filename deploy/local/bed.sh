#!/usr/bin/env bash
# The local test bed (no Docker): Kafka (KRaft), an S3 server (versitygw), Postgres (the Iceberg
# SQL catalog's database), moto (AWS Glue), Iceberg's REST catalog fixture, Trino (Athena's
# engine) over those catalogs, a schema registry (Apicurio, Confluent API), and a Python venv
# with DuckDB and PyIceberg as independent readers. Works from any directory.
#
#   bed.sh up [--hold]    install what is missing and start everything (idempotent); prints the
#                         time of each step on stderr. --hold: keep the bed up across other
#                         callers' `down` until `down --force`.
#   bed.sh down [--force] stop every server, unless another live caller's `up` still uses the
#                         bed (two `make test` at once); --force stops regardless
#   bed.sh env            print `export` lines for the tests: eval "$(deploy/local/bed.sh env)"
#   bed.sh status         state of each part; exit 1 if one is down
#   bed.sh check          Kafka answers a Metadata request; DuckDB reads Parquet from S3; an
#                         Iceberg table written by PyIceberg (SQLite catalog) reads back with
#                         icebergq.py; Postgres, moto (Glue), the REST catalog, Trino and
#                         the schema registry answer
#   bed.sh reset          stop everything and delete the servers' data (caches and venv stay)
#
# Each `up` records its caller (the parent process, e.g. make's recipe shell) as a lease in
# .bed/run/leases; `down` drops the caller's lease and stops the servers only when no other
# live lease is left.
set -euo pipefail
BED_TAG=bed
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LEASES="$RUN/leases"
HOLDER=${LAKESINK_BED_HOLDER:-$PPID}

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }
# timed LABEL CMD...: run CMD, then log how long it took (and whether it failed).
timed() {
  local label=$1 t0 rc=0; shift
  t0=$(now_us)
  "$@" || rc=$?
  local ms=$((($(now_us) - t0) / 1000))
  log "$(printf '%-14s %3d.%01ds%s' "$label" $((ms / 1000)) $((ms % 1000 / 100)) "$( ((rc)) && echo "  FAILED (exit $rc)")")"
  return "$rc"
}

# proc_start PID: the process's start time (field 22 of /proc/PID/stat), to tell a recycled pid.
proc_start() {
  local s f; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a f <<< "${s##*) }"
  echo "${f[19]}"
}
lease_take() {
  mkdir -p "$LEASES"
  local st; st=$(proc_start "$HOLDER") || st=0
  echo "$st" > "$LEASES/$HOLDER"
}
lease_drop() { rm -f "$LEASES/$HOLDER"; }
# live_leases: other callers still using the bed ("hold" for up --hold).
live_leases() {
  local f n out=()
  [[ -d "$LEASES" ]] || return 0
  for f in "$LEASES"/*; do
    [[ -e "$f" ]] || continue
    n=${f##*/}
    if [[ "$n" == hold ]]; then out+=(hold); continue; fi
    [[ "$n" == "$HOLDER" ]] && continue
    if [[ "$n" =~ ^[0-9]+$ && "$(proc_start "$n" 2>/dev/null)" == "$(cat "$f")" ]]; then out+=("$n"); else rm -f "$f"; fi
  done
  echo "${out[*]:-}"
}

smoke() {
  "$BED/venv/bin/python" "$HERE/duckq.py" --s3-endpoint "127.0.0.1:$("$HERE/s3.sh" port)" --s3-smoke lakesink-test >&2
}

up() {
  [[ "${1:-}" == --hold ]] && { mkdir -p "$LEASES"; touch "$LEASES/hold"; }
  lease_take
  local t0; t0=$(now_us)
  # Installs (mvn, go, pip, apt) run at once; each server starts as soon as what it needs is
  # there: moto after the venv, the REST catalog after S3 (it is configured with S3's port).
  # Trino, the slowest (an 820 MB download, then 20 s to minutes to start), starts at once with
  # the ports the other servers have (or will get) and connects to them only when queried; at
  # the end a second `trino.sh start` restarts it only if one of them had to move to another port.
  ( timed "trino install" "$HERE/trino.sh" install && timed "trino start" "$HERE/trino.sh" start ) & local ti=$!
  ( timed "kafka install" "$HERE/kafka.sh" install && timed "kafka start" "$HERE/kafka.sh" start ) & local k=$!
  ( timed "rest install" "$HERE/rest.sh" install ) & local ri=$!
  ( timed "s3 install" "$HERE/s3.sh" install && timed "s3 start" "$HERE/s3.sh" start ) & local s=$!
  ( timed "postgres" "$HERE/postgres.sh" start ) & local p=$!
  ( timed "venv" "$HERE/venv.sh" install && timed "moto start" "$HERE/moto.sh" start ) & local v=$!
  ( timed "registry install" "$HERE/registry.sh" install && timed "registry start" "$HERE/registry.sh" start ) & local sr=$!
  local failed=()
  wait "$s" || failed+=(s3)
  # rest.sh start waits for a running rest.sh install (lock) and installs if that one failed.
  ( timed "rest start" "$HERE/rest.sh" start ) & local r=$!
  wait "$v" || failed+=(venv/moto)
  if ((${#failed[@]} == 0)); then timed "s3+duckdb check" smoke || failed+=(s3-duckdb-check); fi
  wait "$p" || failed+=(postgres)
  wait "$ri" || true
  wait "$r" || failed+=(rest)
  wait "$k" || failed+=(kafka)
  if ! wait "$ti"; then
    failed+=(trino)
  elif ((${#failed[@]} == 0)); then
    timed "trino ports" "$HERE/trino.sh" start || failed+=(trino)
  fi
  wait "$sr" || failed+=(registry)
  local ms=$((($(now_us) - t0) / 1000))
  if ((${#failed[@]})); then
    log "up FAILED after $((ms / 1000)).$((ms % 1000 / 100))s: ${failed[*]} (see messages above; logs under $RUN)"
    return 1
  fi
  log "$(printf '%-14s %3d.%01ds' "up total" $((ms / 1000)) $((ms % 1000 / 100)))  kafka 127.0.0.1:$("$HERE/kafka.sh" port), s3 http://127.0.0.1:$("$HERE/s3.sh" port), postgres 127.0.0.1:$("$HERE/postgres.sh" port), glue $("$HERE/moto.sh" url), rest $("$HERE/rest.sh" url), trino $("$HERE/trino.sh" url), registry $("$HERE/registry.sh" url)"
}

down() {
  local force=0 others
  [[ "${1:-}" == --force ]] && force=1
  lease_drop
  others=$(live_leases)
  if ((!force)) && [[ -n "$others" ]]; then
    log "bed still in use (leases: $others): leaving it running; 'bed.sh down --force' stops it"
    return 0
  fi
  local rc=0 pids=() name p
  for name in kafka s3 postgres moto rest trino registry; do
    "$HERE/$name.sh" stop & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  rm -rf "$LEASES"
  return "$rc"
}

env_lines() {
  local kp sp
  kp=$("$HERE/kafka.sh" port); sp=$("$HERE/s3.sh" port)
  printf 'export %s=%q\n' \
    LAKESINK_TEST_KAFKA_BROKERS "127.0.0.1:$kp" \
    LAKESINK_TEST_KAFKA_SCRAM_BROKERS "127.0.0.1:$((kp + 2))" \
    LAKESINK_TEST_S3_ENDPOINT "http://127.0.0.1:$sp" \
    LAKESINK_TEST_S3_ACCESS_KEY lakesink \
    LAKESINK_TEST_S3_SECRET_KEY lakesinksecret \
    LAKESINK_TEST_S3_REGION us-east-1 \
    LAKESINK_TEST_S3_BUCKET lakesink-test \
    LAKESINK_TEST_S3_DIR "$("$HERE/s3.sh" dir)" \
    LAKESINK_TEST_PYTHON "$BED/venv/bin/python" \
    LAKESINK_TEST_DUCKQ "$HERE/duckq.py" \
    LAKESINK_TEST_ICEBERGQ "$HERE/icebergq.py" \
    LAKESINK_TEST_POSTGRES_DSN "$("$HERE/postgres.sh" dsn)" \
    LAKESINK_TEST_GLUE_ENDPOINT "$("$HERE/moto.sh" url)" \
    LAKESINK_TEST_REST_URI "$("$HERE/rest.sh" url)" \
    LAKESINK_TEST_TRINO_URI "$("$HERE/trino.sh" url)" \
    LAKESINK_TEST_SCHEMA_REGISTRY_URL "$("$HERE/registry.sh" url)"
}

status() {
  local rc=0
  "$HERE/kafka.sh" status || rc=1
  "$HERE/s3.sh" status || rc=1
  "$HERE/postgres.sh" status || rc=1
  "$HERE/moto.sh" status || rc=1
  "$HERE/rest.sh" status || rc=1
  "$HERE/trino.sh" status || rc=1
  "$HERE/registry.sh" status || rc=1
  if [[ -f "$BED/venv/.bed-stamp" ]]; then echo "venv: $BED/venv"; else echo "venv: not installed"; rc=1; fi
  local l; l=$(live_leases)
  echo "leases: ${l:-none}"
  return "$rc"
}

check() {
  "$PY" "$HERE/kafka_meta.py" "127.0.0.1:$("$HERE/kafka.sh" port)" >&2
  smoke
  iceberg_smoke
  "$HERE/postgres.sh" status >&2
  "$HERE/moto.sh" status >&2
  "$HERE/rest.sh" status >&2
  "$HERE/trino.sh" query 'SELECT count(*) FROM system.metadata.catalogs' >&2
  "$HERE/registry.sh" status >&2
}

# iceberg_smoke: PyIceberg writes a small table (SQLite catalog, local warehouse); icebergq.py
# reads it back with PyIceberg and with DuckDB, whole and for one hour.
iceberg_smoke() (
  local d; d=$(mktemp -d "${TMPDIR:-/tmp}/lakesink-iceberg-smoke.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$d'" EXIT
  cat > "$d/rows.json" <<'JSON'
[[{"id": 1, "ts": "2026-11-24T13:05:00Z", "_kafka_topic": "t", "_kafka_partition": 0, "_kafka_offset": 1},
  {"id": 2, "ts": "2026-11-24T13:59:59.999999Z", "_kafka_topic": "t", "_kafka_partition": 0, "_kafka_offset": 2}],
 [{"id": 3, "ts": "2026-11-24T14:00:00Z", "_kafka_topic": "t", "_kafka_partition": 1, "_kafka_offset": 1},
  {"id": 2, "ts": "2026-11-24T13:59:59.999999Z", "_kafka_topic": "t", "_kafka_partition": 0, "_kafka_offset": 2}]]
JSON
  local q=("$BED/venv/bin/python" "$HERE/icebergq.py" --catalog sql --uri "sqlite:///$d/catalog.db"
    --warehouse "file://$d/warehouse" --table smoke.t)
  "${q[@]}" --write-test-table "$d/rows.json" >/dev/null
  local want='"count":4,"per_hour":{"2026-11-24T13":3,"2026-11-24T14":1}' got e
  for e in pyiceberg duckdb; do
    got=$("${q[@]}" --engine "$e" --id-column id --time-column ts)
    [[ "$got" == *"$want"* && "$got" == *'"dup_keys":1'* ]] || { echo "$got" >&2; die "icebergq.py --engine $e read the smoke table wrong (want $want, dup_keys 1)"; }
  done
  got=$("${q[@]}" --id-column id --time-column ts --filter-hour 2026-11-24T14)
  [[ "$got" == *'"count":1,'* && "$got" == *'"files_planned":1,'* ]] || { echo "$got" >&2; die "icebergq.py --filter-hour read the smoke table wrong"; }
  log "iceberg smoke: PyIceberg wrote a table, icebergq.py read it back (pyiceberg, duckdb, one hour): ok"
)

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  env) env_lines ;;
  status) status ;;
  check) check ;;
  reset)
    down --force
    for n in kafka s3 postgres rest trino registry; do "$HERE/$n.sh" reset; done
    rm -f "$RUN"/*.port ;;
  *) echo "usage: $0 up [--hold]|down [--force]|env|status|check|reset" >&2; exit 2 ;;
esac
