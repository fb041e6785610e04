#!/usr/bin/env bash
# Schema registry for the test bed: Apicurio Registry (Apache-2.0) serving the Confluent Schema
# Registry API at /apis/ccompat/v7, run from its Maven Central distribution on 127.0.0.1.
#
#   registry.sh install   download io.apicurio:apicurio-registry-app:<ver>:tar.gz:all from Maven
#                         Central (~158 MB, SHA-512 checked) and unpack it into
#                         .bed/cache/apicurio-registry-<ver>/app
#   registry.sh start     install, start, wait until the Confluent API answers
#   registry.sh stop      stop by pid file and wait
#   registry.sh status    exit 0 if running
#   registry.sh reset     stop (its storage is in memory: nothing else to delete)
#   registry.sh url       print the Confluent-compatible URL (what schema_registry.url takes)
#   registry.sh port      print the HTTP port
#
# Storage: H2 in memory (Apicurio's default): every schema is gone after stop. Tests share the
# server, so each test registers its schemas under its own subjects (testbed.UniqueName).
# Quarkus opens a second (management) port unless told otherwise: it is bound to 127.0.0.1 on
# port+1. OpenTelemetry is off. Newest runnable release on Maven Central: 3.3.2 (3.3.3 has no
# tar.gz/zip there).
#
# Java: Apicurio 3 needs Java 21+. Taken from LAKESINK_BED_REGISTRY_JAVA (a java binary), else
# JAVA_HOME if it is 21+, else the newest 21+ JDK/JRE under /usr/lib/jvm, else `java` on PATH if
# it is 21+; the script fails with a clear message when none is found.
#
# Env: LAKESINK_BED_REGISTRY_PORT (18081; management on +1), LAKESINK_BED_REGISTRY_TIMEOUT (start
#      timeout, 180s), LAKESINK_BED_REGISTRY_JAVA, LAKESINK_BED_MAVEN_CENTRAL (a Maven Central
#      mirror's base URL; default https://repo.maven.apache.org/maven2).
set -euo pipefail
BED_TAG=registry
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=3.3.2
ARTIFACT=io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all
CENTRAL=${LAKESINK_BED_MAVEN_CENTRAL:-https://repo.maven.apache.org/maven2}
FILE=apicurio-registry-app-$VERSION-all.tar.gz
URL="$CENTRAL/io/apicurio/apicurio-registry-app/$VERSION/$FILE"
HOME_DIR="$CACHE/apicurio-registry-$VERSION"
APP="$HOME_DIR/app"
DIR="$RUN/registry"
PIDF="$DIR/registry.pid"
LOGF="$DIR/registry.log"
MARKER="-Dlakesink.bed=registry"
TIMEOUT=${LAKESINK_BED_REGISTRY_TIMEOUT:-180}
REGISTRY_PORT=$(_bed_port REGISTRY 18081)
REGISTRY_WANT_PORT=${LAKESINK_BED_REGISTRY_PORT:-18081}

# java_major JAVA: the feature version (17, 21, 25) of a java binary, or nothing.
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n1
}

# find_java: a Java 21+ binary (see the header), or die.
find_java() {
  local c v best="" bestv=0
  if [[ -n "${LAKESINK_BED_REGISTRY_JAVA:-}" ]]; then
    v=$(java_major "$LAKESINK_BED_REGISTRY_JAVA" 2>/dev/null || true)
    ((${v:-0} >= 21)) || die "LAKESINK_BED_REGISTRY_JAVA=$LAKESINK_BED_REGISTRY_JAVA is not Java 21+ (got '${v:-not runnable}')"
    echo "$LAKESINK_BED_REGISTRY_JAVA"; return
  fi
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    v=$(java_major "$JAVA_HOME/bin/java" || true)
    ((${v:-0} >= 21)) && { echo "$JAVA_HOME/bin/java"; return; }
  fi
  for c in /usr/lib/jvm/*/bin/java $(command -v java 2>/dev/null || true); do
    [[ -x "$c" ]] || continue
    v=$(java_major "$c" || true)
    if ((${v:-0} >= 21 && ${v:-0} > bestv)); then best=$c bestv=$v; fi
  done
  [[ -n "$best" ]] || die "Apicurio Registry $VERSION needs Java 21+; none found (JAVA_HOME, /usr/lib/jvm/*, PATH): install one (e.g. temurin-25-jdk) or set LAKESINK_BED_REGISTRY_JAVA"
  echo "$best"
}

# fetch URL FILE: download URL into FILE (atomically), retrying transient failures.
fetch() {
  curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 20 -o "$2.part" "$1" </dev/null && mv -f "$2.part" "$2"
}

install() {
  [[ -f "$APP/.complete" ]] && return 0
  need_cmd curl "to download Apicurio Registry from Maven Central"
  need_cmd tar "to unpack Apicurio Registry"
  need_cmd sha512sum "to check the download"
  mkdir -p "$HOME_DIR"
  local tgz="$HOME_DIR/$FILE" t=$SECONDS want got
  # Not through mvn as kafka.sh does: the artifact's parent pom (io.apicurio:apicurio-registry:
  # $VERSION) is not on Maven Central, so Maven refuses to resolve it ("Failed to read artifact
  # descriptor"). The file itself is there, with its checksums.
  log "downloading $ARTIFACT from $CENTRAL (~158 MB)"
  fetch "$URL.sha512" "$tgz.sha512" || die "could not download $URL.sha512"
  want=$(cut -c1-128 < "$tgz.sha512")
  if [[ ! -f "$tgz" || "$(sha512sum < "$tgz" | cut -c1-128)" != "$want" ]]; then
    fetch "$URL" "$tgz" || die "could not download $URL"
  fi
  got=$(sha512sum < "$tgz" | cut -c1-128)
  [[ "$got" == "$want" ]] || { rm -f "$tgz"; die "SHA-512 of $URL is $got, Maven Central says $want"; }
  rm -rf "$APP.tmp" "$HOME_DIR/app.flat"
  mkdir -p "$APP.tmp"
  tar --no-same-owner -xzf "$tgz" -C "$APP.tmp" || die "could not unpack $tgz"
  # The archive holds one top directory with quarkus-run.jar (and lib/, app/, quarkus/): flatten it.
  local run; run=$(find "$APP.tmp" -maxdepth 3 -name quarkus-run.jar | head -n1)
  [[ -n "$run" ]] || die "no quarkus-run.jar in $tgz"
  if [[ "$(dirname "$run")" != "$APP.tmp" ]]; then
    mv "$(dirname "$run")" "$HOME_DIR/app.flat" && rm -rf "$APP.tmp" && mv "$HOME_DIR/app.flat" "$APP.tmp"
  fi
  rm -f "$tgz" "$tgz.sha512" # unpacked is what is kept
  touch "$APP.tmp/.complete"
  rm -rf "$APP"
  mv "$APP.tmp" "$APP"
  log "Apicurio Registry $VERSION installed in $APP ($((SECONDS - t))s)"
}

url() { echo "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"; }
# ready: the Confluent API answers GET /subjects.
ready() { curl -sf -m 2 -o /dev/null "$(url)/subjects"; }

jvm_opts() {
  JOPTS=(-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Djava.net.preferIPv4Stack=true "-Djava.io.tmpdir=$DIR/tmp" "$MARKER"
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT"
    -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=$((REGISTRY_PORT + 1))"
    -Dquarkus.otel.sdk.disabled=true -Dquarkus.log.console.json=false
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2)
}

# running_port: the HTTP port of the running server (from its command line).
running_port() {
  local pid=$1
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^-Dquarkus\.http\.port=//p' | head -n1
}

# launch_sig JAVA: what the server is started with (version, Java, JVM flags), to restart a
# running one started otherwise (an older script, another Java).
launch_sig() {
  jvm_opts
  { echo "$VERSION $1"; printf '%s\n' "${JOPTS[@]}"; } | sha256sum | cut -c1-16
}

start() {
  local pid java
  install
  java=$(find_java)
  if pid=$(pid_of "$PIDF" "$MARKER"); then
    local running; running=$(running_port "$pid")
    if [[ -n "$running" && "$running" != "$REGISTRY_PORT" ]]; then
      die "the registry is already running on port $running, not $REGISTRY_PORT: stop it first to change the port"
    fi
    if [[ "$(launch_sig "$java")" == "$(cat "$DIR/launch.sig" 2>/dev/null)" ]]; then
      wait_ready "$TIMEOUT" "$pid" "$LOGF" "apicurio registry" ready
      log "already running on $(url) (pid $pid)"
      return 0
    fi
    log "the running registry was started with another version, Java or configuration: restarting it"
    stop_pid "apicurio registry" "$PIDF" "$MARKER" 20
  fi
  REGISTRY_PORT=$REGISTRY_WANT_PORT
  if port_open "$REGISTRY_PORT" || port_open $((REGISTRY_PORT + 1)); then
    port_explicit REGISTRY && die "port $REGISTRY_PORT or $((REGISTRY_PORT + 1)) is in use by another process (LAKESINK_BED_REGISTRY_PORT)"
    local p; p=$(free_port_from $((REGISTRY_PORT + 100)) 100 2) || die "no free ports for the registry near $REGISTRY_PORT"
    log "ports $REGISTRY_PORT-$((REGISTRY_PORT + 1)) are (partly) in use by a process that is not this bed's: using $p-$((p + 1))"
    REGISTRY_PORT=$p
  fi
  record_port REGISTRY "$REGISTRY_PORT"
  mkdir -p "$DIR/tmp"
  launch_sig "$java" > "$DIR/launch.sig"
  jvm_opts
  rm -f "$PIDF" # a stale one (from a machine restart) would be read as the new pid
  [[ -f "$LOGF" ]] && mv -f "$LOGF" "$LOGF.1"
  # setsid: own session; fd 9 (the lock) closed; run from $DIR so nothing lands in the caller's cwd.
  nohup setsid bash -c 'echo $$ > "$1"; cd "$2" || exit 1; shift 2; exec "$@"' _ "$PIDF" "$DIR" \
    "$java" "${JOPTS[@]}" -jar "$APP/quarkus-run.jar" </dev/null >>"$LOGF" 2>&1 9>&- &
  local t=$SECONDS
  for _ in $(seq 50); do [[ -s "$PIDF" ]] && break; sleep 0.1; done
  pid=$(cat "$PIDF" 2>/dev/null) || die "the registry did not write its pid file"
  wait_ready "$TIMEOUT" "$pid" "$LOGF" "apicurio registry" ready
  log "Apicurio Registry $VERSION ready on $(url) (pid $pid, $((SECONDS - t))s, Java $(java_major "$java"); log $LOGF)"
}

status() {
  local pid
  if pid=$(pid_of "$PIDF" "$MARKER") && ready; then
    echo "registry: running, pid $pid, $(url) (Apicurio Registry $VERSION, in-memory H2)"
  else
    echo "registry: not running"
    return 1
  fi
}

LOCK="$DIR.lock"
case "${1:-}" in
  install) with_lock "$LOCK" install ;;
  start) with_lock "$LOCK" start ;;
  stop) with_lock "$LOCK" stop_pid "apicurio registry" "$PIDF" "$MARKER" 20 ;;
  status) status ;;
  reset) with_lock "$LOCK" stop_pid "apicurio registry" "$PIDF" "$MARKER" 20 ;;
  url) url ;;
  port) echo "$REGISTRY_PORT" ;;
  *) echo "usage: $0 install|start|stop|status|reset|url|port" >&2; exit 2 ;;
esac
