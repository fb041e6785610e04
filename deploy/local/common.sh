# Shared helpers of the test-bed scripts (sourced, not run).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BED="$REPO/.bed"
CACHE="$BED/cache"
RUN="$BED/run"
BIN="$BED/bin"
mkdir -p "$CACHE" "$RUN" "$BIN"

log() { printf '[bed] %s\n' "$*" >&2; }
die() { printf '[bed] error: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid_alive PIDFILE
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS LOGFILE CHECK...: poll CHECK until it succeeds, or show the log and fail.
wait_for() {
  local secs=$1 logf=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${secs}s waiting for: $*"
      [[ -f "$logf" ]] && tail -n 40 "$logf" >&2
      return 1
    fi
    sleep 0.2
  done
}

# stop_pid NAME PIDFILE: TERM, wait up to 20s, then KILL.
stop_pid() {
  local name=$1 pidf=$2
  if pid_alive "$pidf"; then
    local pid; pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -f "$pidf"
}
