# Shared by benches/e2e.sh and benches/soak.sh (sourced, not run): tool checks, the cleanup
# trap, process measurements (CPU seconds, RSS), the release build, one Apache Kafka node
# (scripts/kafka.sh), the daemon's generated configuration and its start and stop.
#
# The sourcing script sets ROOT, TARGET, OUT, BUILD, PARTITIONS, PARTICIPANTS,
# COMMIT_INTERVAL, DAEMON_PROPS, KAFKA_TOML, BROKER_PROPS, and LOG_TAG (the log prefix);
# NEED_BARE=0 skips the bare consumer's build.
# shellcheck shell=bash

KAFKA_SH=$ROOT/scripts/kafka.sh

log() { printf '[%s %4ss] %s\n' "${LOG_TAG:-bench}" "$SECONDS" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

REAL_JAVA=${JAVA:-java}
for tool in "$REAL_JAVA" curl jq python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
REAL_JAVA=$(command -v "$REAL_JAVA")

PIDS=()
KDIR=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $KDIR && -f $KDIR/.regwatch-kafka ]]; then
        # Keep the broker's and the tools' logs; the stop removes KDIR with the broker's data.
        cp "$KDIR/node-1/server.log" "$OUT/kafka-server.log" 2>/dev/null || true
        cp "$KDIR/node-1/stdout.log" "$OUT/kafka-stdout.log" 2>/dev/null || true
        cp "$KDIR/server.log" "$OUT/kafka-tools.log" 2>/dev/null || true
        bash "$KAFKA_SH" stop "$KDIR" >&2 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers --------------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# user+sys CPU seconds of a process (0 when it is gone).
cpu_s() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    # Fields after the ')' of the command name: state is $1, utime $12, stime $13.
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($12 + $13) / hz }' <<<"${stat##*) }"
}

# Peak RSS (VmHWM) of a process in kB.
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Resets a process's VmHWM to its current RSS (Linux >= 4.0, own or root's processes), so that
# the next hwm_kb is the peak of one phase; without it the peak is the running one.
reset_hwm() { { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null || true; }

calc() { awk "BEGIN { printf \"%.4f\", ($*) }"; }

# /metrics of a daemon. The long timeout is deliberate: under a backlog the daemon may answer
# only seconds later (see slowest_metrics_scrape_s), and the answer then still counts.
metrics() { curl -sf --max-time 30 "http://127.0.0.1:$1/metrics" || true; }

# WARN and ERROR lines of a daemon log (colour codes stripped).
log_problems() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -cE '^[^ ]+ +(WARN|ERROR) ' || true; }

# Sum of the samples of one metric family in a /metrics text.
metric_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'; }

# ---- build ----------------------------------------------------------------------------------

# The executables' paths from cargo's own messages (they honour CARGO_TARGET_DIR).
artifact() {
    jq -r --arg t "$1" 'select(.reason == "compiler-artifact" and .target.name == $t and .executable != null) | .executable' |
        tail -n1
}
if [[ $BUILD != 0 ]]; then
    log "building release binaries in $TARGET"
    BIN=$(cargo build --release --locked --bin regwatch --message-format=json-render-diagnostics |
        artifact regwatch) || die "cargo build failed"
    if [[ ${NEED_BARE:-1} == 1 ]]; then
        BARE=$(cargo bench --locked --bench bare_consumer --no-run --message-format=json-render-diagnostics |
            artifact bare_consumer) || die "cargo bench --no-run failed"
    fi
else
    BIN=$TARGET/release/regwatch
    # The newest bare_consumer bench executable.
    if [[ ${NEED_BARE:-1} == 1 ]]; then
        BARE=$(find "$TARGET/release/deps" -maxdepth 1 -type f -name 'bare_consumer-*' -perm -u+x \
            -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n1 | cut -d' ' -f2-) || true
    fi
fi
[[ -x $BIN ]] || die "cannot find the regwatch binary ($BIN)"
if [[ ${NEED_BARE:-1} == 1 ]]; then
    [[ -x $BARE ]] || die "cannot find the bare_consumer bench binary"
fi
log "daemon: $BIN${BARE:+; bare consumer: $BARE}"

# ---- broker ---------------------------------------------------------------------------------

# One KRaft node (broker + controller) on loopback, its storage in a temporary directory; it
# stops with this script (the trap, and kafka.sh's --watch should the script be killed).
broker_props=()
IFS=, read -ra kvs <<<"$BROKER_PROPS"
for kv in "${kvs[@]}"; do
    [[ -n $kv ]] && broker_props+=(--prop "$kv")
done
# Up to three tries, each in a new directory: kafka.sh's random cluster id sometimes begins
# with "-", which the storage format takes for an option.
for attempt in 1 2 3; do
    KDIR=$(mktemp -d "${TMPDIR:-/tmp}/regwatch-e2e-kafka.XXXXXX")
    log "starting Apache Kafka (one KRaft node, storage in $KDIR)"
    if bash "$KAFKA_SH" start --dir "$KDIR" --watch $$ "${broker_props[@]}" \
        >"$OUT/kafka-start.out" 2>"$OUT/kafka-start.log"; then
        break
    fi
    tail -n 3 "$OUT/kafka-start.log" >&2
    bash "$KAFKA_SH" stop "$KDIR" >&2 || true
    KDIR=
    ((attempt < 3)) || die "the broker did not start (see $OUT/kafka-start.log)"
    log "the broker did not start; trying again"
done
BROKERS=$(tail -n1 "$OUT/kafka-start.out")
BROKER_PID=$(cat "$KDIR/node-1/pid")
if [[ $BROKERS != *:* ]] || ! kill -0 "$BROKER_PID" 2>/dev/null; then
    die "the broker is not running (see $OUT/kafka-start.out and .log)"
fi
log "broker on $BROKERS, JVM pid $BROKER_PID"

# A Kafka tool on the broker's classpath (its log4j warnings go to KDIR/server.log).
kafka_tool() { bash "$KAFKA_SH" run "$KDIR" "$@"; }

create_topic() {
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" --create \
        --topic "$1" --partitions "$PARTITIONS" --replication-factor 1 >>"$OUT/kafka-topics.log" 2>&1 ||
        die "cannot create topic $1 (see $OUT/kafka-topics.log)"
}

# broker_phase_start, then broker_phase_end: the broker JVM's CPU seconds over the phase into
# phase_cpu, and its peak RSS during it (kB) into phase_hwm.
broker_phase_start() {
    broker_cpu0=$(cpu_s "$BROKER_PID")
    reset_hwm "$BROKER_PID"
}
broker_phase_end() {
    phase_cpu=$(calc "$(cpu_s "$BROKER_PID") - $broker_cpu0")
    phase_hwm=$(hwm_kb "$BROKER_PID")
}

# ---- configuration --------------------------------------------------------------------------

# "a=b,c=d" -> "a=b", "c=d" (a TOML array's items)
props_toml() {
    local IFS=, kv out=()
    for kv in $1; do
        [[ -n $kv ]] && out+=("\"$kv\"")
    done
    (IFS=,; echo "${out[*]}")
}

# write_config FILE GROUP TOPIC SUFFIX HTTP_PORT
write_config() {
    {
        cat <<EOF
[kafka]
brokers = "$BROKERS"
group_id = "$2"
topics = ["$3"]
alerts_topic = "regwatch.alerts.$4"
dead_letter_topic = "regwatch.dead-letters.$4"
state_topic = "regwatch.state.$4"
topic_partitions = $PARTITIONS
replication_factor = 1
create_topics = true
commit_interval = "$COMMIT_INTERVAL"
librdkafka = [$(props_toml "$DAEMON_PROPS")]
$KAFKA_TOML

[daemon]
shutdown_grace = "30s"

[http]
listen = "127.0.0.1:$5"

EOF
        cat "$ROOT/config/regwatch.toml"
        local kinds=(exchange futures_exchange clearing broker futures_broker fund_manager service_provider)
        local codes=(EXC FEX CLR BRK FUT FND SVC)
        local i k
        for ((i = 9; i <= PARTICIPANTS; i++)); do
            k=$((i % 7))
            printf '\n[[participants]]\nid = "E2E-%s-%04d"\nname = "Generated participant %d"\nkind = "%s"\neffective_customers = %d\n' \
                "${codes[k]}" "$i" "$i" "${kinds[k]}" $(((i * 7919) % 3000000))
        done
    } >"$1"
    "$BIN" check-config "$1" >&2 || die "generated configuration $1 is invalid"
}

# start_daemon CONFIG LOG -> sets DAEMON_PID
start_daemon() {
    NO_COLOR=1 REGWATCH_LOG=${REGWATCH_LOG:-info} "$BIN" run --config "$1" 2>"$2" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
}

# stop_daemon PID: SIGTERM, wait for the drain; sets STOP_RC to the exit code.
stop_daemon() {
    local t0
    t0=$(now)
    STOP_RC=0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" || STOP_RC=$?
    log "daemon exited with $STOP_RC after $(calc "$(now) - $t0")s of drain"
}

