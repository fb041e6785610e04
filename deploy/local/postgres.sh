#!/usr/bin/env bash
# PostgreSQL for the test bed (the Iceberg SQL catalog's database): a private cluster made with
# initdb from the Debian package (postgresql, 15), listening on 127.0.0.1 only, no Unix socket.
#
#   postgres.sh install   make sure initdb/postgres exist (apt-get install -y postgresql as root
#                         when they do not; sudo -n otherwise)
#   postgres.sh start     install, initdb if needed, start, wait until it accepts connections,
#                         create the role and database lakesink (idempotent)
#   postgres.sh stop      fast shutdown (SIGINT; SIGKILL after 30s) and wait
#   postgres.sh status    exit 0 and print the server version if running
#   postgres.sh reset     stop and delete the cluster
#   postgres.sh dsn       print the DSN of the lakesink database
#   postgres.sh psql ...  run psql as the superuser (postgres) against the bed's server
#
# Role lakesink (password lakesink, LOGIN CREATEDB) owns the database lakesink; tests create
# a fresh database each (internal/testbed.Postgres). Authentication: scram-sha-256 on
# 127.0.0.1; the superuser postgres has a random password kept in .bed/run/postgres/superuser.pw.
#
# Root: postgres refuses to run as root, so the cluster is made and run as the system user
# `postgres` (the package's; LAKESINK_BED_POSTGRES_USER picks another, created as a system user
# when missing) through setpriv. That user owns the cluster directory .bed/run/postgres/pg; when
# it cannot reach .bed (a checkout under /root, mode 0700, say), the cluster lives in
# /var/tmp/lakesink-bed-<hash of the checkout path>/postgres instead (recorded in
# .bed/run/postgres/base). Not root: everything runs as the current user.
#
# Durability is off (fsync, synchronous_commit, full_page_writes): this is test data.
# Env: LAKESINK_BED_POSTGRES_PORT (15432), LAKESINK_BED_POSTGRES_BINDIR (dir with initdb and
#      postgres; default: the newest /usr/lib/postgresql/*/bin), LAKESINK_BED_POSTGRES_USER.
set -euo pipefail
BED_TAG=postgres
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DIR="$RUN/postgres"
PIDF="$DIR/postgres.pid"
LOGF="$DIR/postgres.log"
SUPW="$DIR/superuser.pw"
BASEF="$DIR/base"
ROLE=lakesink
ROLE_PW=lakesink
DB=lakesink
TIMEOUT=60

# bindir: the directory with initdb and postgres ("" if none).
bindir() {
  if [[ -n "${LAKESINK_BED_POSTGRES_BINDIR:-}" ]]; then echo "$LAKESINK_BED_POSTGRES_BINDIR"; return; fi
  local d best="" bestv=0 v
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" && -x "$d/postgres" ]] || continue
    v=${d#/usr/lib/postgresql/}; v=${v%%/*}
    [[ "$v" =~ ^[0-9]+$ ]] && ((v > bestv)) && { best=$d; bestv=$v; }
  done
  if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null) && [[ -x "$d/initdb" && -x "$d/postgres" ]] && best=$d
  fi
  echo "$best"
}

install() {
  [[ -n "$(bindir)" ]] && return 0
  [[ -n "${LAKESINK_BED_POSTGRES_BINDIR:-}" ]] && die "no initdb/postgres in LAKESINK_BED_POSTGRES_BINDIR=$LAKESINK_BED_POSTGRES_BINDIR"
  local sudo=() alog="$CACHE/postgres-apt.log"
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
      || die "PostgreSQL is not installed and this user cannot install it: apt-get install postgresql (as root)"
    sudo=(sudo -n)
  fi
  need_cmd apt-get "PostgreSQL comes from the Debian package postgresql"
  log "installing the Debian package postgresql (apt-get; log $alog)"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if ! "${apt[@]}" install --no-install-recommends postgresql >"$alog" 2>&1 </dev/null; then
    log "apt-get install failed: apt-get update, then again"
    { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends postgresql; } >>"$alog" 2>&1 </dev/null \
      || { show_log "$alog"; die "apt-get install postgresql failed (log: $alog)"; }
  fi
  [[ -n "$(bindir)" ]] || die "postgresql installed, but no /usr/lib/postgresql/*/bin/initdb"
  log "installed PostgreSQL $("$(bindir)/postgres" --version | awk '{print $NF}')"
}

# The OS user that runs the server: the current one, or (as root) an unprivileged one.
pg_user() {
  if ((EUID != 0)); then id -un; return; fi
  local u=${LAKESINK_BED_POSTGRES_USER:-postgres}
  if ! id -u "$u" >/dev/null 2>&1; then
    need_cmd useradd "it creates the system user $u to run postgres (root may not)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u" \
      || id -u "$u" >/dev/null 2>&1 || die "could not create the system user $u"
    log "created the system user $u (postgres does not run as root)"
  fi
  echo "$u"
}

# as_pg CMD...: run CMD as the server's user (setpriv drops root; no PAM, no shell).
as_pg() {
  if ((EUID != 0)); then "$@"; return; fi
  local u; u=$(pg_user)
  setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups \
    env -u PGPASSWORD HOME=/ LC_ALL=C.UTF-8 "$@"
}

# base: the directory owned by the server's user that holds the cluster (data/), chosen once.
base() {
  local b
  b=$(cat "$BASEF" 2>/dev/null) || b=""
  if [[ -n "$b" && -d "$b" ]] && as_pg test -w "$b" -a -x "$b"; then echo "$b"; return; fi
  mkdir -p "$DIR"
  local u; u=$(pg_user)
  for b in "$DIR/pg" "/var/tmp/lakesink-bed-$(printf %s "$REPO" | sha256sum | cut -c1-12)/postgres"; do
    mkdir -p "$b"
    if ((EUID == 0)); then chown "$u:$(id -g "$u")" "$b"; fi
    chmod 0700 "$b"
    if as_pg test -w "$b" -a -x "$b"; then
      [[ "$b" == "$DIR/pg" ]] || log "user $u cannot reach $DIR (a parent directory is not searchable by it): the cluster lives in $b"
      echo "$b" > "$BASEF"
      echo "$b"
      return 0
    fi
    rmdir "$b" 2>/dev/null || true
  done
  die "no directory for the cluster that user $u can write (tried $DIR/pg and /var/tmp)"
}

# settings: the server's configuration (command line; postgresql.conf stays as initdb wrote it).
settings() {
  PGOPTS=(-c "listen_addresses=127.0.0.1" -c "port=$POSTGRES_PORT" -c "unix_socket_directories="
    -c max_connections=200 -c shared_buffers=64MB -c dynamic_shared_memory_type=mmap
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=256MB
    -c TimeZone=UTC -c log_timezone=UTC -c log_min_messages=warning -c logging_collector=off
    -c log_line_prefix='%m [%p] %q%u@%d ')
}

dsn() { echo "postgres://$ROLE:$ROLE_PW@127.0.0.1:$POSTGRES_PORT/$DB?sslmode=disable"; }

# psql_su ARGS...: psql as the superuser over TCP.
psql_su() {
  local bin; bin=$(bindir)
  PGPASSWORD=$(cat "$SUPW") PGCONNECT_TIMEOUT=5 "$bin/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres "$@"
}

ready() { "$(bindir)/pg_isready" -q -t 2 -h 127.0.0.1 -p "$POSTGRES_PORT" -d postgres; }

# running_port PID: the port on the command line of the running server.
running_port() { tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null | sed -n 's/^port=\([0-9]*\)$/\1/p' | head -n1; }

ensure_db() {
  psql_su <<SQL >/dev/null
DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE_PW';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE_PW';
  END IF;
END\$\$;
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')\\gexec
SQL
  PGCONNECT_TIMEOUT=5 "$(bindir)/psql" -X -q -At -v ON_ERROR_STOP=1 "$(dsn)" -c 'SELECT 1' >/dev/null \
    || die "cannot connect as $ROLE to $(dsn)"
}

# init_cluster DATA: initdb with a fresh random superuser password.
init_cluster() {
  local data=$1 b bin; b=$(dirname "$data"); bin=$(bindir)
  rm -rf "$data"
  local pw; pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  ( umask 077; echo "$pw" > "$SUPW" )
  local pwf="$b/.initdb-pw"
  ( umask 077; echo "$pw" > "$pwf" )
  if ((EUID == 0)); then chown "$(pg_user)" "$pwf"; fi
  if ! as_pg "$bin/initdb" -D "$data" -U postgres --pwfile="$pwf" --auth=scram-sha-256 \
      --encoding=UTF8 --locale=C --no-sync >"$DIR/initdb.log" 2>&1 </dev/null; then
    rm -f "$pwf"
    show_log "$DIR/initdb.log"
    die "initdb failed (log: $DIR/initdb.log)"
  fi
  rm -f "$pwf"
  # Only TCP on the loopback address, with passwords.
  printf '%s\n' '# Generated by deploy/local/postgres.sh: TCP on 127.0.0.1 only, passwords (SCRAM).' \
    'host all all 127.0.0.1/32 scram-sha-256' > "$data/pg_hba.conf"
  if ((EUID == 0)); then chown "$(pg_user)" "$data/pg_hba.conf"; fi
  log "initdb: new cluster in $data"
}

# launch_sig: what the server is started with (binaries, settings).
launch_sig() {
  settings
  { bindir; "$(bindir)/postgres" --version; printf '%s\n' "${PGOPTS[@]}"; } | sha256sum | cut -c1-16
}

start() {
  local pid b data marker
  install
  b=$(base); data="$b/data"; marker="-D $data"
  if pid=$(pid_of "$PIDF" "$marker"); then
    local running; running=$(running_port "$pid")
    if [[ -n "$running" && "$running" != "$POSTGRES_PORT" ]]; then
      die "postgres is already running on port $running, not $POSTGRES_PORT: stop it first to change the port"
    fi
    if [[ "$(launch_sig)" == "$(cat "$DIR/launch.sig" 2>/dev/null)" ]]; then
      wait_ready "$TIMEOUT" "$pid" "$LOGF" postgres ready
      ensure_db
      log "already running on 127.0.0.1:$POSTGRES_PORT (pid $pid)"
      return 0
    fi
    log "the running server was started with other binaries or settings: restarting it"
    stop_pid postgres "$PIDF" "$marker" 30 INT
  fi
  POSTGRES_PORT=$POSTGRES_WANT_PORT
  if port_open "$POSTGRES_PORT"; then
    port_explicit POSTGRES && die "port $POSTGRES_PORT is in use by another process (LAKESINK_BED_POSTGRES_PORT)"
    local p; p=$(free_port_from $((POSTGRES_PORT + 100)) 100 1) || die "no free port for postgres near $POSTGRES_PORT"
    log "port $POSTGRES_PORT is in use by a process that is not this bed's: using $p"
    POSTGRES_PORT=$p
  fi
  record_port POSTGRES "$POSTGRES_PORT"
  local bin major; bin=$(bindir)
  major=$("$bin/postgres" --version | sed -n 's/.* \([0-9][0-9]*\)\..*/\1/p')
  # A cluster of another major version, a half-made one, or one whose superuser password is lost: start afresh.
  if [[ ! -f "$data/PG_VERSION" || "$(cat "$data/PG_VERSION" 2>/dev/null)" != "$major" || ! -s "$SUPW" ]]; then
    [[ -d "$data" ]] && log "wiping $data (other major version, incomplete, or superuser password lost)"
    init_cluster "$data"
  fi
  # A server killed with SIGKILL leaves postmaster.pid; postgres checks it itself (a stale one is ignored).
  local sig; sig=$(launch_sig)
  echo "$sig" > "$DIR/launch.sig"
  settings
  rm -f "$PIDF" # a stale one (from a machine restart) would be read as the new pid
  [[ -f "$LOGF" ]] && mv -f "$LOGF" "$LOGF.1"
  # setsid: own session (Ctrl-C in the caller's terminal does not reach it); fd 9 (the lock) closed.
  if ((EUID == 0)); then
    local u; u=$(pg_user)
    nohup setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PIDF" \
      setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups env -u PGPASSWORD HOME=/ LC_ALL=C.UTF-8 \
      "$bin/postgres" -D "$data" "${PGOPTS[@]}" </dev/null >>"$LOGF" 2>&1 9>&- &
  else
    nohup setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PIDF" \
      env LC_ALL=C.UTF-8 "$bin/postgres" -D "$data" "${PGOPTS[@]}" </dev/null >>"$LOGF" 2>&1 9>&- &
  fi
  local t=$SECONDS
  for _ in $(seq 50); do [[ -s "$PIDF" ]] && break; sleep 0.1; done
  pid=$(cat "$PIDF" 2>/dev/null) || die "postgres did not write its pid file"
  wait_ready "$TIMEOUT" "$pid" "$LOGF" postgres ready
  ensure_db
  log "PostgreSQL $major ready on 127.0.0.1:$POSTGRES_PORT (pid $pid, $((SECONDS - t))s; cluster $data; log $LOGF)"
}

stop() {
  local b; b=$(cat "$BASEF" 2>/dev/null) || b="$DIR/pg"
  stop_pid postgres "$PIDF" "-D $b/data" 30 INT
}

status() {
  local pid b v
  b=$(cat "$BASEF" 2>/dev/null) || b="$DIR/pg"
  if pid=$(pid_of "$PIDF" "-D $b/data") && [[ -n "$(bindir)" ]] && ready \
      && v=$(PGCONNECT_TIMEOUT=5 "$(bindir)/psql" -X -At "$(dsn)" -c 'SHOW server_version' 2>&1); then
    echo "postgres: running, pid $pid, $(dsn) (PostgreSQL $v, cluster $b/data)"
  else
    echo "postgres: not running"
    return 1
  fi
}

reset() {
  stop
  local b; b=$(cat "$BASEF" 2>/dev/null) || b=""
  if [[ -n "$b" && "$b" != "$DIR/pg" ]]; then
    rm -rf "$b"; rmdir "$(dirname "$b")" 2>/dev/null || true
    log "deleted $b"
  fi
  rm -rf "$DIR"
  log "deleted $DIR"
}

LOCK="$DIR.lock"
case "${1:-}" in
  install) with_lock "$LOCK" install ;;
  start) with_lock "$LOCK" start ;;
  stop) with_lock "$LOCK" stop ;;
  status) status ;;
  reset) with_lock "$LOCK" reset ;;
  dsn) dsn ;;
  port) echo "$POSTGRES_PORT" ;;
  psql) shift; psql_su "$@" ;;
  *) echo "usage: $0 install|start|stop|status|reset|dsn|port|psql [ARGS...]" >&2; exit 2 ;;
esac
