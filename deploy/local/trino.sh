#!/usr/bin/env bash
# Trino for the test bed: the engine of Amazon Athena (engine version 3), with the Iceberg and
# Hive connectors over the bed's Glue (moto), REST and SQL (Postgres) catalogs and its S3
# server, on 127.0.0.1. The tests read what lakesink writes through it as Athena would.
#
#   trino.sh install   fetch trino-server 476 (tar.gz, ~820 MB) and trino-cli 476 from Maven
#                      Central (through .bed/cache/m2-trino) and unpack the server's lib/ and
#                      only its iceberg and hive plugins into .bed/cache/trino-476/server (464 MB;
#                      the tarball is deleted then)
#   trino.sh start     install, write the configuration from the bed's ports, start a single
#                      node (coordinator and worker), wait until it is started and its catalogs
#                      answer a query
#   trino.sh stop      stop by pid file (SIGTERM, then SIGKILL after 30s) and wait
#   trino.sh status    exit 0 if running
#   trino.sh query SQL [CLI ARGS...]   run SQL with the Trino CLI (Java 17), e.g.
#                      trino.sh query 'SHOW SCHEMAS FROM glue' --output-format TSV
#   trino.sh url       print the server's URL
#
# Catalogs (etc/catalog/*.properties, generated at start):
#   glue      Iceberg connector, iceberg.catalog.type=glue on moto (hive.metastore.glue.endpoint-url)
#   gluehive  Hive connector on the same Glue, partition projection on: Athena's raw tables
#   rest      Iceberg connector on the bed's Iceberg REST catalog
#   sql       Iceberg connector, iceberg.catalog.type=jdbc on the bed's Postgres database
#             `lakesink`, catalog name `lakesink` (lakesink's default catalog.name)
# glue and gluehive redirect to each other (iceberg.hive-catalog-name / hive.iceberg-catalog-name),
# as Athena's single AwsDataCatalog serves both kinds of table. Every catalog reads and writes
# the bed's S3 server with Trino's native S3 file system (path style, the bed's keys).
# register_table is enabled in the Iceberg catalogs, so a test can put a table any catalog
# wrote (e.g. a SQLite one) in front of Trino: CALL rest.system.register_table(...).
#
# The server needs Java 24+ (Trino 476 is built for Java 24; on these machines Temurin 25 sits
# beside the default Java 17): LAKESINK_BED_TRINO_JAVA_HOME, else the newest JDK under
# /usr/lib/jvm that is 24 or newer. The CLI runs on Java 17+ (JAVA_HOME or java on PATH).
# One node, heap LAKESINK_BED_TRINO_HEAP (3G), only two plugins: it starts in 20-55 s on 2
# cores (depending on what else runs).
#
# Env: LAKESINK_BED_TRINO_PORT (18080), LAKESINK_BED_TRINO_TIMEOUT (start timeout, 600s: a
#      loaded machine has taken 146 s),
#      LAKESINK_BED_TRINO_JAVA_HOME, LAKESINK_BED_TRINO_HEAP.
set -euo pipefail
BED_TAG=trino
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=476
DEP_PLUGIN_VERSION=3.8.1
PLUGINS=(iceberg hive)
HOME_DIR="$CACHE/trino-$VERSION"
SERVER="$HOME_DIR/server"
CLI="$HOME_DIR/trino-cli-$VERSION-executable.jar"
M2="$CACHE/m2-trino" # its own Maven repository: an 820 MB download must not hold the shared m2 lock
DIR="$RUN/trino"
ETC="$DIR/etc"
PIDF="$DIR/trino.pid"
LOGF="$DIR/trino.log"
MAIN=io.trino.server.TrinoServer
MARKER="-Dconfig=$ETC/config.properties"
TIMEOUT=${LAKESINK_BED_TRINO_TIMEOUT:-600}
HEAP=${LAKESINK_BED_TRINO_HEAP:-3G}
CLI_JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
S3_KEY=lakesink S3_SECRET=lakesinksecret S3_BUCKET=lakesink-test REGION=us-east-1
SQL_CATALOG_NAME=lakesink

# java_major JAVA: the feature release of a java binary (17, 25, ...).
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n1
}

# server_java: a Java 24+ binary for the server, or die naming what is missing.
server_java() {
  local j m best="" bestm=0
  if [[ -n "${LAKESINK_BED_TRINO_JAVA_HOME:-}" ]]; then
    j="$LAKESINK_BED_TRINO_JAVA_HOME/bin/java"
    [[ -x "$j" ]] || die "LAKESINK_BED_TRINO_JAVA_HOME=$LAKESINK_BED_TRINO_JAVA_HOME has no bin/java"
    m=$(java_major "$j")
    ((m >= 24)) || die "LAKESINK_BED_TRINO_JAVA_HOME is Java ${m:-?}: Trino $VERSION needs Java 24+ (Java 25 recommended)"
    echo "$j"; return
  fi
  for j in "${JAVA_HOME:+$JAVA_HOME/bin/java}" /usr/lib/jvm/*/bin/java "$(command -v java 2>/dev/null || true)"; do
    [[ -n "$j" && -x "$j" ]] || continue
    m=$(java_major "$j"); [[ "$m" =~ ^[0-9]+$ ]] || continue
    if ((m >= 24 && m > bestm)); then best=$j bestm=$m; fi
  done
  [[ -n "$best" ]] || die "Trino $VERSION needs Java 24+ (Java 25 recommended) and none was found (looked at JAVA_HOME, /usr/lib/jvm/*, PATH): install e.g. temurin-25-jdk, or set LAKESINK_BED_TRINO_JAVA_HOME"
  echo "$best"
}

# mvn_get GROUP:ARTIFACT:VERSION:TYPE[:CLASSIFIER]: into the Trino Maven repository.
mvn_get() {
  mvn -q -B -Dmaven.repo.local="$M2" "org.apache.maven.plugins:maven-dependency-plugin:$DEP_PLUGIN_VERSION:get" \
    -Dartifact="$1" -Dtransitive=false </dev/null
}

install() {
  local stamp="$SERVER/.complete-$VERSION-${PLUGINS[*]// /-}"
  stamp=${stamp// /-}
  if [[ -f "$stamp" && -f "$CLI" ]]; then return 0; fi
  need_cmd mvn "Maven fetches Trino from Maven Central (apt-get install maven)"
  need_cmd tar "tar unpacks the Trino server"
  server_java >/dev/null
  mkdir -p "$HOME_DIR"
  local tgz="$M2/io/trino/trino-server/$VERSION/trino-server-$VERSION.tar.gz"
  local jar="$M2/io/trino/trino-cli/$VERSION/trino-cli-$VERSION-executable.jar"
  if [[ ! -f "$stamp" && ! -f "$tgz" ]]; then
    log "fetching trino-server $VERSION (~820 MB) from Maven Central (cached in $M2)"
    mvn_get "io.trino:trino-server:$VERSION:tar.gz" >"$HOME_DIR/mvn.log" 2>&1 \
      || { show_log "$HOME_DIR/mvn.log" 60; die "mvn could not fetch io.trino:trino-server:$VERSION:tar.gz (log: $HOME_DIR/mvn.log)"; }
  fi
  if [[ ! -f "$jar" ]]; then
    mvn_get "io.trino:trino-cli:$VERSION:jar:executable" >"$HOME_DIR/mvn-cli.log" 2>&1 \
      || { show_log "$HOME_DIR/mvn-cli.log" 60; die "mvn could not fetch io.trino:trino-cli:$VERSION:jar:executable (log: $HOME_DIR/mvn-cli.log)"; }
  fi
  cp -f "$jar" "$CLI.tmp" && mv -f "$CLI.tmp" "$CLI"
  if [[ ! -f "$stamp" ]]; then
    log "unpacking lib/ and the ${PLUGINS[*]} plugins of trino-server $VERSION"
    rm -rf "$SERVER.tmp"; mkdir -p "$SERVER.tmp"
    # The plugins share jars as hard links into other plugins' directories, so the whole
    # plugin/ tree is unpacked and the plugins not wanted are deleted afterwards.
    local top="trino-server-$VERSION" d keep p
    tar -xzf "$tgz" -C "$SERVER.tmp" --strip-components=1 "$top/lib" "$top/plugin" \
      || die "could not unpack $tgz (delete it to fetch it again)"
    for d in "$SERVER.tmp"/plugin/*; do
      keep=0
      for p in "${PLUGINS[@]}"; do [[ "${d##*/}" == "$p" ]] && keep=1; done
      ((keep)) || rm -rf "$d"
    done
    [[ -d "$SERVER.tmp/lib" && -d "$SERVER.tmp/plugin/iceberg" ]] || die "$tgz has no lib/ or plugin/iceberg/"
    touch "$SERVER.tmp/${stamp##*/}"
    rm -rf "$SERVER"; mv "$SERVER.tmp" "$SERVER"
    # The unpacked server is the cache: the tarball would add 820 MB to .bed/cache (and to CI's
    # cache of it); a change of version or plugins downloads it again (~30 s).
    rm -f "$tgz"
  fi
  log "Trino $VERSION: server $(du -sh "$SERVER" | cut -f1) in $SERVER (plugins: ${PLUGINS[*]}), CLI $CLI"
}

url() { echo "http://127.0.0.1:$TRINO_PORT"; }

# started: /v1/info says the server has finished starting.
started() { curl -sf -m 2 "$(url)/v1/info" | grep -q '"starting":false'; }

# catalogs_ok: the four catalogs are loaded (a query through the engine, over HTTP).
catalogs_ok() {
  local out
  out=$(run_cli --output-format TSV --execute "SELECT catalog_name FROM system.metadata.catalogs ORDER BY 1" 2>/dev/null) || return 1
  [[ "$(echo "$out" | tr '\n' ' ')" == "glue gluehive rest sql system " ]]
}

ready() { started && catalogs_ok; }

run_cli() {
  "$CLI_JAVA" -Dorg.jline.terminal.dumb=true -jar "$CLI" --server "$(url)" --user lakesink-bed "$@" </dev/null
}

# s3_props: native S3 on the bed's S3 server, for every catalog.
s3_props() {
  cat <<PROPS
fs.native-s3.enabled=true
s3.endpoint=http://127.0.0.1:$("$HERE/s3.sh" port)
s3.path-style-access=true
s3.region=$REGION
s3.aws-access-key=$S3_KEY
s3.aws-secret-key=$S3_SECRET
PROPS
}

glue_props() {
  cat <<PROPS
hive.metastore.glue.region=$REGION
hive.metastore.glue.endpoint-url=$("$HERE/moto.sh" url)
hive.metastore.glue.aws-access-key=$S3_KEY
hive.metastore.glue.aws-secret-key=$S3_SECRET
PROPS
}

# write_etc DIR: the server's configuration and catalogs, from the bed's ports.
write_etc() {
  local d=$1 pgport
  pgport=$("$HERE/postgres.sh" port)
  rm -rf "$d"; mkdir -p "$d/catalog"
  cat > "$d/config.properties" <<PROPS
# Generated by deploy/local/trino.sh: a single node on 127.0.0.1.
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port=$TRINO_PORT
discovery.uri=http://127.0.0.1:$TRINO_PORT
node.environment=lakesink_bed
node.id=lakesink-bed
node.bind-ip=127.0.0.1
node.internal-address=127.0.0.1
catalog.config-dir=$ETC/catalog
plugin.dir=$SERVER/plugin
catalog.management=static
query.max-memory=1GB
query.max-memory-per-node=1GB
PROPS
  cat > "$d/log.properties" <<PROPS
io.trino=INFO
io.airlift=WARN
PROPS
  { cat <<PROPS
# Generated by deploy/local/trino.sh: lakesink's Glue catalog (moto), as Athena reads it.
connector.name=iceberg
iceberg.catalog.type=glue
iceberg.hive-catalog-name=gluehive
iceberg.register-table-procedure.enabled=true
PROPS
    glue_props; s3_props; } > "$d/catalog/glue.properties"
  { cat <<PROPS
# Generated by deploy/local/trino.sh: Hive tables in the same Glue (Athena's raw-zone tables).
connector.name=hive
hive.metastore=glue
hive.iceberg-catalog-name=glue
hive.partition-projection-enabled=true
PROPS
    glue_props; s3_props; } > "$d/catalog/gluehive.properties"
  { cat <<PROPS
# Generated by deploy/local/trino.sh: the bed's Iceberg REST catalog.
connector.name=iceberg
iceberg.catalog.type=rest
iceberg.rest-catalog.uri=$("$HERE/rest.sh" url)
iceberg.register-table-procedure.enabled=true
PROPS
    s3_props; } > "$d/catalog/rest.properties"
  { cat <<PROPS
# Generated by deploy/local/trino.sh: lakesink's SQL catalog (catalog.type sql) on the bed's
# Postgres, database lakesink, catalog.name $SQL_CATALOG_NAME.
connector.name=iceberg
iceberg.catalog.type=jdbc
iceberg.jdbc-catalog.driver-class=org.postgresql.Driver
iceberg.jdbc-catalog.connection-url=jdbc:postgresql://127.0.0.1:$pgport/lakesink
iceberg.jdbc-catalog.connection-user=lakesink
iceberg.jdbc-catalog.connection-password=lakesink
iceberg.jdbc-catalog.catalog-name=$SQL_CATALOG_NAME
iceberg.jdbc-catalog.default-warehouse-dir=s3://$S3_BUCKET/trino-sql-warehouse
iceberg.register-table-procedure.enabled=true
PROPS
    s3_props; } > "$d/catalog/sql.properties"
}

jvm_opts() {
  # Trino's recommended flags (docs: deployment, JVM config), with a small heap, and C1 only
  # (TieredStopAtLevel=1): the C2 compiler's work at startup costs more on 2 shared cores than
  # it gains on the tests' small queries (start measured at load average 10: 24 s and 36 s with
  # C1 only, 48 s without).
  JOPTS=(-server "-Xmx$HEAP" -XX:TieredStopAtLevel=1 -XX:InitialRAMPercentage=10 -XX:G1HeapRegionSize=32M -XX:+ExplicitGCInvokesConcurrent
    -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -XX:ReservedCodeCacheSize=256M
    -XX:PerMethodRecompilationCutoff=10000 -XX:PerBytecodeRecompilationCutoff=10000
    -Djdk.attach.allowAttachSelf=true -Djdk.nio.maxCachedBufferSize=2000000 -Dfile.encoding=UTF-8
    -XX:+EnableDynamicAgentLoading -Djava.net.preferIPv4Stack=true "-Djava.io.tmpdir=$DIR/tmp"
    "-Dlog.levels-file=$ETC/log.properties" "-Dconfig=$ETC/config.properties")
}

# launch_sig: what the server is started with (version, Java, configuration, JVM flags).
launch_sig() {
  write_etc "$ETC.next"
  jvm_opts
  { echo "$VERSION $1"; ls "$SERVER/plugin"; cat "$ETC.next"/*.properties "$ETC.next"/catalog/*.properties; printf '%s\n' "${JOPTS[@]}"; } | sha256sum | cut -c1-16
}

start() {
  local pid java
  install
  java=$(server_java)
  if pid=$(pid_of "$PIDF" "$MARKER"); then
    if [[ "$(launch_sig "$java")" == "$(cat "$DIR/launch.sig" 2>/dev/null)" ]]; then
      wait_ready "$TIMEOUT" "$pid" "$LOGF" trino ready
      log "already running on $(url) (pid $pid)"
      return 0
    fi
    log "the running server was started with another version or configuration: restarting it"
    stop_pid trino "$PIDF" "$MARKER" 30
  fi
  TRINO_PORT=$TRINO_WANT_PORT
  if port_open "$TRINO_PORT"; then
    port_explicit TRINO && die "port $TRINO_PORT is in use by another process (LAKESINK_BED_TRINO_PORT)"
    local p; p=$(free_port_from $((TRINO_PORT + 100)) 100 1) || die "no free port for Trino near $TRINO_PORT"
    log "port $TRINO_PORT is in use by a process that is not this bed's: using $p"
    TRINO_PORT=$p
  fi
  record_port TRINO "$TRINO_PORT"
  mkdir -p "$DIR/tmp" "$DIR/data"
  local sig; sig=$(launch_sig "$java")
  rm -rf "$ETC"; mv "$ETC.next" "$ETC"
  echo "$sig" > "$DIR/launch.sig"
  jvm_opts
  rm -f "$PIDF" # a stale one (from a machine restart) would be read as the new pid
  [[ -f "$LOGF" ]] && mv -f "$LOGF" "$LOGF.1"
  # setsid: own session (Ctrl-C in the caller's terminal does not reach it); fd 9 (the lock) closed.
  nohup setsid bash -c 'echo $$ > "$1"; shift; cd "$1"; shift; exec "$@"' _ "$PIDF" "$DIR" \
    "$java" "${JOPTS[@]}" -cp "$SERVER/lib/*" "$MAIN" </dev/null >>"$LOGF" 2>&1 9>&- &
  local t=$SECONDS
  for _ in $(seq 50); do [[ -s "$PIDF" ]] && break; sleep 0.1; done
  pid=$(cat "$PIDF" 2>/dev/null) || die "trino did not write its pid file"
  wait_ready "$TIMEOUT" "$pid" "$LOGF" trino ready
  log "Trino $VERSION ready on $(url) (pid $pid, $((SECONDS - t))s; catalogs glue gluehive rest sql; log $LOGF)"
}

status() {
  local pid
  if pid=$(pid_of "$PIDF" "$MARKER") && started; then
    echo "trino: running, pid $pid, $(url) (Trino $VERSION; catalogs glue, gluehive, rest, sql)"
  else
    echo "trino: not running"
    return 1
  fi
}

query() {
  [[ $# -ge 1 ]] || die "usage: trino.sh query SQL [CLI ARGS...]"
  [[ -f "$CLI" ]] || die "no Trino CLI: run trino.sh install"
  local sql=$1; shift
  run_cli --execute "$sql" "$@"
}

LOCK="$DIR.lock"
case "${1:-}" in
  install) with_lock "$LOCK" install ;;
  start) with_lock "$LOCK" start ;;
  stop) with_lock "$LOCK" stop_pid trino "$PIDF" "$MARKER" 30 ;;
  status) status ;;
  query) shift; query "$@" ;;
  reset) with_lock "$LOCK" stop_pid trino "$PIDF" "$MARKER" 30; rm -rf "$DIR"; log "deleted $DIR" ;;
  url) url ;;
  port) echo "$TRINO_PORT" ;;
  *) echo "usage: $0 install|start|stop|status|query SQL [ARGS...]|reset|url|port" >&2; exit 2 ;;
esac
