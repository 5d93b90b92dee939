#!/usr/bin/env bash
# A real Apache Kafka (4.x, KRaft mode) on loopback, for regwatch's tests and benchmarks and for
# a person trying regwatch out. No Docker: the broker runs from the Maven Central artifacts
# (org.apache.kafka:kafka_2.13 and kafka-tools, see scripts/kafka/pom.xml) on this machine's
# Java (17 or newer).
#
#   scripts/kafka.sh fetch                 fill the artifact cache when empty; print its path
#   scripts/kafka.sh start [options]       format storage, start, print host:port on the last line
#   scripts/kafka.sh stop DIR              stop every node started in DIR (SIGTERM, then SIGKILL)
#   scripts/kafka.sh kill DIR NODE         SIGKILL one node (fault injection)
#   scripts/kafka.sh restart DIR NODE      start a killed node again on its storage and ports
#   scripts/kafka.sh run DIR CLASS ARGS..  run a Kafka tool (e.g. org.apache.kafka.tools.ProducerPerformance)
#
# start options:
#   --dir DIR            where storage, configs, logs and pids go (default: a new temporary dir)
#   --nodes N            N combined controller+broker nodes (default 1; 3 for the fault tests)
#   --sasl-ssl TLSDIR    also open a SASL_SSL listener (SCRAM-SHA-512) per node, with the PEM key
#                        and certificate TLSDIR/broker.key and TLSDIR/broker.crt; the last line
#                        then names that listener
#   --scram USER=PASS    a SCRAM-SHA-512 credential written at format time (repeatable)
#   --prop KEY=VALUE     an extra broker property (repeatable)
#   --watch PID          stop the nodes when process PID ends (tests: no broker outlives them)
#
# Environment: REGWATCH_KAFKA_CACHE (artifact cache, default ~/.cache/regwatch/kafka-VERSION),
# REGWATCH_KAFKA_HEAP (default -Xmx512m -Xms128m), REGWATCH_KAFKA_JVM (extra JVM options),
# JAVA (the java binary; default java on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
cache="${REGWATCH_KAFKA_CACHE:-$HOME/.cache/regwatch/kafka-$version}"
java="${JAVA:-java}"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

need_java() {
  command -v "$java" >/dev/null 2>&1 ||
    die "no Java: Apache Kafka $version needs Java 17 or newer on PATH (Debian: apt-get install openjdk-17-jre-headless)"
  local v
  v="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$v" && "$v" -ge 17 ]] || die "Java $v found; Apache Kafka $version needs Java 17 or newer"
}

fetch() {
  if [[ -f "$cache/libs/.complete" ]]; then
    echo "$cache"
    return
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "the Kafka artifacts are not in $cache and Maven is missing to fetch them (apt-get install maven)"
  echo "kafka.sh: fetching Apache Kafka $version from Maven Central into $cache" >&2
  rm -rf "$cache/libs"
  mkdir -p "$cache"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$cache/libs" >&2 ||
    die "Maven could not fetch org.apache.kafka:kafka_2.13:$version and kafka-tools"
  [[ -f "$cache/libs/kafka_2.13-$version.jar" ]] || die "kafka_2.13-$version.jar missing after the fetch"
  touch "$cache/libs/.complete"
  echo "$cache"
}

libs() {
  [[ -f "$cache/libs/.complete" ]] ||
    die "the Kafka $version artifacts are not in $cache: run 'scripts/kafka.sh fetch' (CI's .ci/run does)"
  echo "$cache/libs/*"
}

# A TCP port nobody listens on now (the broker refusing it is retried by start). Taken below
# the kernel's ephemeral range: a client reconnecting to a killed node from an ephemeral port
# could otherwise connect to itself on the node's port and keep the node from coming back.
free_port() {
  local p low
  low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  while :; do
    p=$((10000 + RANDOM % (low - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

# The JVM command line for a Kafka class; run as: "${cmd[@]}" after jvm_cmd sets cmd.
jvm_cmd() {
  local logs="$1"
  shift
  # shellcheck disable=SC2206
  cmd=("$java" ${REGWATCH_KAFKA_HEAP:--Xmx512m -Xms128m} -XX:+UseSerialGC -Xss512k
    -Djava.awt.headless=true -Dkafka.logs.dir="$logs"
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties"
    ${REGWATCH_KAFKA_JVM:-} -cp "$(libs)" "$@")
}

jvm() {
  local cmd
  jvm_cmd "$@"
  "${cmd[@]}"
}

write_config() {
  local dir="$1" i="$2" nodes="$3" voters="$4" tls="$5"
  shift 5
  local n="$dir/node-$i"
  local port controller sasl
  port="$(cat "$n/port")"
  controller="$(cat "$n/controller-port")"
  local rf=$((nodes < 3 ? nodes : 3))
  local isr=$((nodes < 2 ? 1 : 2))
  {
    echo "process.roles=broker,controller"
    echo "node.id=$i"
    echo "controller.quorum.voters=$voters"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    if [[ -n "$tls" ]]; then
      sasl="$(cat "$n/sasl-port")"
      echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller,SASL_SSL://127.0.0.1:$sasl"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
      echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
      echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
      echo "listener.name.sasl_ssl.ssl.keystore.type=PEM"
      echo "listener.name.sasl_ssl.ssl.keystore.location=$n/broker.pem"
    else
      echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    fi
    echo "log.dirs=$n/data"
    echo "num.partitions=1"
    echo "auto.create.topics.enable=false"
    echo "offsets.topic.replication.factor=$rf"
    echo "offsets.topic.num.partitions=6"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$isr"
    echo "transaction.state.log.num.partitions=6"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$isr"
    echo "group.initial.rebalance.delay.ms=0"
    # Tests run regwatch with short sessions.
    echo "group.min.session.timeout.ms=1000"
    # The compaction test needs a cleaner that looks often.
    echo "log.cleaner.backoff.ms=1000"
    for p in "$@"; do echo "$p"; done
  } >"$n/server.properties"
}

# Starts node I of DIR in the background, with its watcher; waits until it has started.
start_node() {
  local dir="$1" i="$2"
  local n="$dir/node-$i"
  : >"$n/server.log"
  local cmd
  jvm_cmd "$n" kafka.Kafka "$n/server.properties"
  # exec: the pid recorded is the JVM's own, so kill and stop reach the broker itself.
  (exec "${cmd[@]}" >>"$n/stdout.log" 2>&1 </dev/null) &
  echo $! >"$n/pid"
  local watch
  watch="$(cat "$dir/watch" 2>/dev/null || true)"
  if [[ -n "$watch" ]]; then
    local pid
    pid="$(cat "$n/pid")"
    (
      while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
    ) </dev/null >/dev/null 2>&1 &
  fi
}

wait_started() {
  local dir="$1" i="$2" deadline=$((SECONDS + ${3:-90}))
  local n="$dir/node-$i"
  local pid
  pid="$(cat "$n/pid")"
  until grep -q "Kafka Server started" "$n/server.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: node $i exited during start-up; its log:" >&2
      tail -n 30 "$n/server.log" "$n/stdout.log" >&2 || true
      return 1
    fi
    ((SECONDS < deadline)) || {
      echo "kafka.sh: node $i did not start within ${3:-90}s; its log: $n/server.log" >&2
      return 1
    }
    sleep 0.2
  done
}

bootstrap() {
  local dir="$1" file="$2" out=() n
  for n in "$dir"/node-*; do
    out+=("127.0.0.1:$(cat "$n/$file")")
  done
  (
    IFS=,
    echo "${out[*]}"
  )
}

start() {
  local dir="" nodes=1 tls="" watch="" scram=() props=()
  while (($#)); do
    case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --sasl-ssl) tls="$2"; shift 2 ;;
    --scram) scram+=("$2"); shift 2 ;;
    --prop) props+=("$2"); shift 2 ;;
    --watch) watch="$2"; shift 2 ;;
    *) die "start: unknown option $1" ;;
    esac
  done
  need_java
  libs >/dev/null
  [[ -n "$dir" ]] || dir="$(mktemp -d "${TMPDIR:-/tmp}/regwatch-kafka.XXXXXX")"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [[ -z "$(ls -A "$dir")" ]] || die "start: $dir is not empty"
  touch "$dir/.regwatch-kafka"
  [[ -n "$watch" ]] && echo "$watch" >"$dir/watch"
  local attempt
  for attempt in 1 2 3; do
    local voters=() i
    for ((i = 1; i <= nodes; i++)); do
      mkdir -p "$dir/node-$i"
      free_port >"$dir/node-$i/port"
      free_port >"$dir/node-$i/controller-port"
      [[ -z "$tls" ]] || free_port >"$dir/node-$i/sasl-port"
      voters+=("$i@127.0.0.1:$(cat "$dir/node-$i/controller-port")")
    done
    local voters_csv
    voters_csv="$(
      IFS=,
      echo "${voters[*]}"
    )"
    local cluster_id
    # base64url of 16 random bytes; one starting with '-' would read as an option.
    cluster_id=-
    while [[ "$cluster_id" == -* ]]; do
      cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    echo "$cluster_id" >"$dir/cluster-id"
    for ((i = 1; i <= nodes; i++)); do
      local n="$dir/node-$i"
      rm -rf "$n/data"
      if [[ -n "$tls" ]]; then
        cat "$tls/broker.key" "$tls/broker.crt" >"$n/broker.pem"
      fi
      write_config "$dir" "$i" "$nodes" "$voters_csv" "$tls" "${props[@]+"${props[@]}"}"
      local fmt=(kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$n/server.properties" --ignore-formatted)
      local s
      for s in "${scram[@]+"${scram[@]}"}"; do
        fmt+=(--add-scram "SCRAM-SHA-512=[name=${s%%=*},password=${s#*=}]")
      done
      # Formatted in parallel: each is a JVM start.
      (jvm "$n" "${fmt[@]}" >"$n/format.log" 2>&1 || echo failed >"$n/format.failed") &
    done
    wait
    for ((i = 1; i <= nodes; i++)); do
      if [[ -f "$dir/node-$i/format.failed" ]]; then
        cat "$dir/node-$i/format.log" >&2
        die "formatting node $i's storage failed"
      fi
    done
    for ((i = 1; i <= nodes; i++)); do start_node "$dir" "$i"; done
    local ok=1
    for ((i = 1; i <= nodes; i++)); do wait_started "$dir" "$i" || ok=0; done
    if ((ok)); then
      bootstrap "$dir" port >"$dir/bootstrap"
      [[ -z "$tls" ]] || bootstrap "$dir" sasl-port >"$dir/bootstrap-sasl"
      for ((i = 1; i <= nodes; i++)); do
        echo "kafka.sh: node $i pid $(cat "$dir/node-$i/pid") port $(cat "$dir/node-$i/port") log $dir/node-$i/server.log"
      done
      echo "kafka.sh: dir $dir (scripts/kafka.sh stop $dir)"
      if [[ -n "$tls" ]]; then cat "$dir/bootstrap-sasl"; else cat "$dir/bootstrap"; fi
      return
    fi
    # A port taken between the check and the bind, most likely: try again on new ports.
    stop_nodes "$dir"
    echo "kafka.sh: start attempt $attempt failed; retrying on new ports" >&2
  done
  die "the broker did not start (logs in $dir)"
}

stop_nodes() {
  local dir="$1" n pid
  for n in "$dir"/node-*; do
    pid="$(cat "$n/pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 15))
  for n in "$dir"/node-*; do
    pid="$(cat "$n/pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] || continue
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$n/pid"
  done
}

stop() {
  local dir="${1:?stop DIR}"
  [[ -f "$dir/.regwatch-kafka" ]] || die "stop: $dir was not made by kafka.sh start"
  stop_nodes "$dir"
  rm -rf "$dir"
}

node_dir() {
  local dir="${1:?DIR}" i="${2:?NODE}"
  [[ -f "$dir/node-$i/server.properties" ]] || die "no node $i in $dir"
  echo "$dir/node-$i"
}

case "${1:-}" in
fetch)
  need_java
  fetch
  ;;
start)
  shift
  start "$@"
  ;;
stop)
  stop "${2:-}"
  ;;
kill)
  n="$(node_dir "${2:-}" "${3:-}")"
  pid="$(cat "$n/pid")"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  ;;
restart)
  n="$(node_dir "${2:-}" "${3:-}")"
  if kill -0 "$(cat "$n/pid" 2>/dev/null)" 2>/dev/null; then die "node $3 is running"; fi
  start_node "$2" "$3"
  wait_started "$2" "$3"
  echo "kafka.sh: node $3 pid $(cat "$n/pid") port $(cat "$n/port")"
  ;;
run)
  dir="${2:?run DIR CLASS ARGS}"
  shift 2
  need_java
  jvm "$dir" "$@"
  ;;
*)
  sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
