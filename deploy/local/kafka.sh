#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft, one combined broker+controller) from Maven Central jars, on 127.0.0.1.
#   kafka.sh install|start|stop|status|reset
set -euo pipefail
source "$(dirname "$0")/common.sh"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO/deploy/local/kafka-pom.xml")
PORT=${LAKESINK_BED_KAFKA_PORT:-19092}
CPORT=$((PORT + 1))
SPORT=$((PORT + 2)) # SASL/SCRAM listener (users are created by the tests through the admin API)
HOME_DIR="$CACHE/kafka-$VERSION"
LIBS="$HOME_DIR/libs"
DIR="$RUN/kafka"
PIDF="$DIR/kafka.pid"
LOGF="$DIR/kafka.log"
JAVA=${JAVA:-java}

install() {
  local stamp; stamp=$(sha1sum "$REPO/deploy/local/kafka-pom.xml" | cut -c1-12)
  if [[ -f "$LIBS/.complete-$stamp" ]]; then return; fi
  rm -rf "$LIBS"
  command -v mvn >/dev/null || die "mvn (Maven) is required to fetch Kafka's jars"
  log "resolving Kafka $VERSION jars from Maven Central"
  mvn -q -B -f "$REPO/deploy/local/kafka-pom.xml" -Dmaven.repo.local="$CACHE/m2" \
    dependency:copy-dependencies -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete-$stamp"
}

ready() { port_open 127.0.0.1 "$PORT" && port_open 127.0.0.1 "$SPORT" && grep -q "Kafka Server started" "$LOGF" 2>/dev/null; }

start() {
  install
  if pid_alive "$PIDF" && ready; then log "kafka already running on 127.0.0.1:$PORT"; return; fi
  port_open 127.0.0.1 "$PORT" && die "port $PORT is taken by another process"
  mkdir -p "$DIR/data"
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT,SASL_PLAINTEXT://127.0.0.1:$SPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,SASL_PLAINTEXT://127.0.0.1:$SPORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$DIR/data
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.segment.bytes=268435456
message.max.bytes=10485760
PROPS
  local cp="$LIBS/*"
  local jopts=(-Xms256m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$REPO/deploy/local/kafka-log4j2.properties" -Dkafka.logs.dir="$DIR")
  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    local id; id=$("$JAVA" -cp "$cp" "${jopts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
    "$JAVA" -cp "$cp" "${jopts[@]}" kafka.tools.StorageTool format -t "$id" -c "$DIR/server.properties" --standalone >"$DIR/format.log" 2>&1 \
      || { cat "$DIR/format.log" >&2; die "kafka storage format failed"; }
  fi
  : > "$LOGF"
  nohup "$JAVA" -cp "$cp" "${jopts[@]}" kafka.Kafka "$DIR/server.properties" >>"$LOGF" 2>&1 &
  echo $! > "$PIDF"
  wait_for 120 "$LOGF" ready || die "kafka did not start"
  log "kafka $VERSION ready on 127.0.0.1:$PORT"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid kafka "$PIDF" ;;
  status) if pid_alive "$PIDF" && ready; then echo "kafka: running on 127.0.0.1:$PORT"; else echo "kafka: stopped"; exit 1; fi ;;
  reset) stop_pid kafka "$PIDF"; rm -rf "$DIR" ;;
  *) echo "usage: $0 install|start|stop|status|reset" >&2; exit 2 ;;
esac
