# shellcheck shell=bash
# Shared helpers of the test-bed scripts (sourced by kafka.sh, s3.sh, venv.sh, bed.sh; not run).
#
# Layout (all under the git-ignored $REPO/.bed):
#   .bed/cache/   downloads (Maven repo, Kafka jars, pip cache)
#   .bed/bin/     binaries (versitygw)
#   .bed/run/<name>/  runtime data, pid file and log of each server
#   .bed/venv/    the Python venv
#
# Ports: LAKESINK_BED_KAFKA_PORT (default 19092; controller on +1, SASL/SCRAM on +2),
# LAKESINK_BED_S3_PORT (19000), LAKESINK_BED_POSTGRES_PORT (15432), LAKESINK_BED_MOTO_PORT
# (15000), LAKESINK_BED_REST_PORT (18181) and LAKESINK_BED_TRINO_PORT (18080). When a default port is held by a process that is not this bed's (say a bed
# of another checkout on the same machine), start picks a free one and records it in
# .bed/run/<name>.port, which `bed.sh env` prints; a port set explicitly is never changed. Each
# start of a stopped server tries the explicit/default port first again.

# shellcheck disable=SC2034 # used by the scripts that source this file
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/deploy/local"
# .bed may be a symlink (git worktrees sharing one bed): resolve it, so that the paths in pid
# markers and configurations are the same whichever checkout runs a script.
mkdir -p "$REPO/.bed"
BED="$(cd "$REPO/.bed" && pwd -P)"
CACHE="$BED/cache"
RUN="$BED/run"
BIN="$BED/bin"
mkdir -p "$CACHE" "$RUN" "$BIN"

# shellcheck disable=SC2034
# The system Python used for small helpers and to create the venv.
PY=${LAKESINK_BED_PYTHON:-python3}

_bed_tag=${BED_TAG:-bed}
log() { printf '[%s] %s\n' "$_bed_tag" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$_bed_tag" "$*" >&2; exit 1; }

need_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required: $2"; }

# Ports: explicit env > recorded in .bed/run/<name>.port > default.
port_file() { echo "$RUN/${1,,}.port"; }
_bed_port() { # NAME DEFAULT
  local explicit="LAKESINK_BED_${1}_PORT" recorded=""
  if [[ -n "${!explicit:-}" ]]; then echo "${!explicit}"; return; fi
  recorded=$(cat "$(port_file "$1")" 2>/dev/null) || true
  [[ "$recorded" =~ ^[0-9]+$ ]] || recorded=""
  echo "${recorded:-$2}"
}
# KAFKA_PORT/S3_PORT: where the server is (or was last); *_WANT_PORT: where start puts a
# server that is not running (the explicit or default port, moved only if that one is taken).
# shellcheck disable=SC2034
KAFKA_PORT=$(_bed_port KAFKA 19092) KAFKA_WANT_PORT=${LAKESINK_BED_KAFKA_PORT:-19092}
# shellcheck disable=SC2034
S3_PORT=$(_bed_port S3 19000) S3_WANT_PORT=${LAKESINK_BED_S3_PORT:-19000}
# shellcheck disable=SC2034
POSTGRES_PORT=$(_bed_port POSTGRES 15432) POSTGRES_WANT_PORT=${LAKESINK_BED_POSTGRES_PORT:-15432}
# shellcheck disable=SC2034
MOTO_PORT=$(_bed_port MOTO 15000) MOTO_WANT_PORT=${LAKESINK_BED_MOTO_PORT:-15000}
# shellcheck disable=SC2034
REST_PORT=$(_bed_port REST 18181) REST_WANT_PORT=${LAKESINK_BED_REST_PORT:-18181}
# shellcheck disable=SC2034
TRINO_PORT=$(_bed_port TRINO 18080) TRINO_WANT_PORT=${LAKESINK_BED_TRINO_PORT:-18080}

# port_explicit NAME: true if the user chose the port (then it is never moved).
port_explicit() { local v="LAKESINK_BED_${1}_PORT"; [[ -n "${!v:-}" ]]; }

# record_port NAME PORT: remember a port chosen by start.
record_port() {
  local f; f=$(port_file "$1")
  echo "$2" > "$f.$$" && mv -f "$f.$$" "$f"
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port_from START STEP [WIDTH]: first port START, START+STEP, ... with WIDTH consecutive free ports.
free_port_from() {
  local p=$1 step=$2 width=${3:-1} i ok
  for _ in $(seq 40); do
    ok=1
    for ((i = 0; i < width; i++)); do port_open $((p + i)) && { ok=0; break; }; done
    ((ok)) && { echo "$p"; return 0; }
    p=$((p + step))
  done
  return 1
}

# pid_of PIDFILE MARKER: print the pid if it is alive and its command line contains MARKER
# (guards against a recycled pid).
pid_of() {
  local pidf=$1 marker=$2 pid
  [[ -f "$pidf" ]] || return 1
  pid=$(cat "$pidf" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# show_log LOGFILE [N]: the last N lines of a log on stderr.
show_log() {
  local f=$1 n=${2:-40}
  if [[ -s "$f" ]]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf -- '-----\n' >&2
  else
    printf -- '(log %s is empty or missing)\n' "$f" >&2
  fi
}

# wait_ready SECONDS PID LOGFILE WHAT CHECK...: poll CHECK every 0.3s until it succeeds; fail
# at once if PID dies, or after SECONDS, showing the log tail.
wait_ready() {
  local secs=$1 pid=$2 logf=$3 what=$4; shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log "$logf"
      die "$what exited during startup (log: $logf)"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$logf"
      die "$what not ready after ${secs}s (log: $logf)"
    fi
    sleep 0.3
  done
}

# stop_pid NAME PIDFILE MARKER [SECONDS [SIGNAL]]: send SIGNAL (default TERM) to the process of
# PIDFILE, wait up to SECONDS (default 30) for it to exit, then SIGKILL; removes the pid file.
stop_pid() {
  local name=$1 pidf=$2 marker=$3 secs=${4:-30} sig=${5:-TERM} pid
  if pid=$(pid_of "$pidf" "$marker"); then
    kill -"$sig" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + secs)) killed=0
    while kill -0 "$pid" 2>/dev/null; do
      if ((!killed && SECONDS >= deadline)); then
        log "$name (pid $pid) still running after ${secs}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        killed=1 deadline=$((SECONDS + 10))
      elif ((killed && SECONDS >= deadline)); then
        die "$name (pid $pid) survived SIGKILL"
      fi
      sleep 0.2
    done
    log "$name stopped (pid $pid)"
  else
    log "$name not running"
  fi
  rm -f "$pidf"
}

# mvn_locked ARGS...: mvn holding a lock on the shared Maven repository (.bed/cache/m2): Maven 3.8
# does not lock it itself, and bed.sh up resolves Kafka's and the REST catalog's jars at once.
mvn_locked() { with_lock "$CACHE/m2.lock" mvn "$@"; }

# with_lock LOCKFILE CMD...: run CMD holding an exclusive lock (serializes concurrent
# installs/starts/stops of one service, e.g. two `make test` at once).
with_lock() {
  local lockf=$1; shift
  mkdir -p "$(dirname "$lockf")"
  (
    flock -w 900 9 || die "could not lock $lockf within 900s"
    "$@"
  ) 9>"$lockf"
}
