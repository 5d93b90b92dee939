#!/usr/bin/env bash
# End-to-end benchmark of the daemon against a real Apache Kafka 4.1 broker (one KRaft node on
# loopback, started by scripts/kafka.sh), next to two reference readers of the same topic: a bare
# rdkafka consumer (benches/bare_consumer.rs) and Kafka's own kafka-consumer-perf-test
# (org.apache.kafka.tools.ConsumerPerformance, the Java client).
#
#   bash benches/e2e.sh                      # the whole run (a few minutes on 2 cores, after the build)
#   EVENTS=200000 LAT_SECONDS=20 bash benches/e2e.sh    # a quicker one
#   SIM_ARGS="--infosec 0 --trading 0" bash benches/e2e.sh   # heartbeats only: no alerts
#   PERF=1 bash benches/e2e.sh               # also perf-record the daemon's throughput phase
#                                            # (PERF=dwarf: with call graphs; perf adds CPU;
#                                            # $TARGET/e2e/perf-daemon.{data,txt})
#   CLIENT_PROPS="fetch.wait.max.ms=100" bash benches/e2e.sh
#                                            # librdkafka properties for both rdkafka clients
#                                            # (default: none, librdkafka's defaults)
#   DAEMON_PROPS="queued.max.messages.kbytes=16384" bash benches/e2e.sh
#                                            # more librdkafka properties for the daemon
#                                            # (BARE_PROPS: for the bare client)
#   PERFTEST_ARGS="--fetch-size 4194304" bash benches/e2e.sh  # more ConsumerPerformance options
#   KAFKA_TOML='fetch_queue_kbytes = 4096' bash benches/e2e.sh   # more daemon [kafka] keys
#   COMMIT_INTERVAL=5s bash benches/e2e.sh  # the daemon's kafka.commit_interval (default 1s)
#   BROKER_PROPS="num.io.threads=4" bash benches/e2e.sh   # more broker properties (comma-separated)
#   BUILD=0 bash benches/e2e.sh              # use the binaries already built, do not run cargo
#
# Binaries are built and looked up in $CARGO_TARGET_DIR (default target/), called $TARGET below.
# The Kafka artifacts must be in scripts/kafka.sh's cache (`bash scripts/kafka.sh fetch`).

# Phases:
#   1. preload: EVENTS synthetic events (regwatch simulate --rate 0) into a topic of
#      PARTITIONS partitions (created with kafka-topics, replication factor 1);
#   2. bare: the bare consumer reads them all (own group, earliest);
#   3. perf-test: kafka-consumer-perf-test reads them all (own group, earliest); its JVM is run
#      under a small wrapper that records its wall time, CPU seconds and peak RSS (wait4's
#      rusage); its clock (fetch.time.ms) starts when the group has assigned its partitions;
#   4. daemon: `regwatch run` reads the same topic (own group); done when the sum of
#      regwatch_events_total on /metrics reaches EVENTS. Its clock starts at the first
#      "partition state restored" in its log (the bare consumer's at its first message); the
#      slowest /metrics answer and the offset commits made until done are recorded, and the
#      alerts and dead letters it counted are read back from their topics;
#   5. latency: a fresh topic and group, the daemon running, simulate at RATE events/s for
#      LAT_SECONDS, and the bare consumer's latency mode on the alerts topic: produce (source
#      event's Kafka timestamp) to alert (the alert's Kafka timestamp, and its receive time);
#      beside it, the same reader on the events topic (--raw) gives the broker's own
#      produce-to-consume latency for a bare consumer, the floor under the daemon's.
# For each reader: wall time, CPU seconds (utime+stime of /proc/PID/stat, or the rusage of the
# perf-test JVM) and peak RSS (VmHWM); the broker JVM's CPU seconds and peak RSS per phase too
# (its VmHWM is reset at the start of each phase through /proc/PID/clear_refs), as the broker
# shares the cores.
#
# Output: a table on stdout, $TARGET/e2e-results.json, and logs/configs under $TARGET/e2e/
# (daemon stderr with REGWATCH_LOG=info, the broker's and the Kafka tools' logs, simulate's,
# the perf test's output, the metrics at the end of each daemon phase). Needs: Java 17+ and the
# Kafka artifacts (scripts/kafka.sh), curl, jq, python3.
#
#   6. storm: phases 2 and 4 again on STORM_EVENTS events where about 30 % raise an alert
#      (STORM_ARGS); the extra CPU per extra alert against phase 4 is the CPU an alert costs;
#   7. replay: `regwatch replay` of EVENTS events from a file (simulate --out) against a
#      buffered line read + serde_json IgnoredAny of the same file (`bare_consumer lines`).
# The end is the table of issue 12's targets, each a ratio against its baseline of the same
# run (decode + score from benches/instructions.txt, CI's callgrind figures).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

EVENTS=${EVENTS:-1000000}
PARTITIONS=${PARTITIONS:-6}
PARTICIPANTS=${PARTICIPANTS:-200}       # registry size (the 8 example ones + generated)
RATE=${RATE:-10000}
LAT_SECONDS=${LAT_SECONDS:-30}
CONSUME_TIMEOUT=${CONSUME_TIMEOUT:-300} # seconds a consuming phase may take
SEED=${SEED:-1}
PERF=${PERF:-0}
PERF_PHASE=${PERF_PHASE:-throughput}     # the daemon phase perf records: throughput or storm
BUILD=${BUILD:-1}                       # 0: do not run cargo, take the binaries already built
CLIENT_PROPS=${CLIENT_PROPS:-}          # comma-separated librdkafka key=value for both rdkafka clients
DAEMON_PROPS=${DAEMON_PROPS:-}          # and for the daemon only
BARE_PROPS=${BARE_PROPS:-}              # and for the bare consumer only (both modes)
PERFTEST_ARGS=${PERFTEST_ARGS:-}        # more kafka-consumer-perf-test options
PERFTEST_TIMEOUT_MS=${PERFTEST_TIMEOUT_MS:-60000}  # its --timeout (the longest wait between records)
BROKER_PROPS=${BROKER_PROPS:-}          # comma-separated extra broker properties
SIM_ARGS=${SIM_ARGS:-}                  # more `regwatch simulate` options (the event mix)
KAFKA_TOML=${KAFKA_TOML:-}              # more lines for the daemon's [kafka] table
COMMIT_INTERVAL=${COMMIT_INTERVAL:-1s}  # the daemon's kafka.commit_interval
STORM_EVENTS=${STORM_EVENTS:-$EVENTS}   # events of the alert-storm phase
STORM_ARGS=${STORM_ARGS:---new-incident 0.5}  # its mix: about 30 % of events raise an alert
if [[ -n $CLIENT_PROPS ]]; then
    DAEMON_PROPS="$CLIENT_PROPS${DAEMON_PROPS:+,$DAEMON_PROPS}"
    BARE_PROPS="$CLIENT_PROPS${BARE_PROPS:+,$BARE_PROPS}"
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
OUT=$TARGET/e2e
RESULTS=$TARGET/e2e-results.json
mkdir -p "$OUT"
LOG_TAG=e2e
NEED_BARE=1
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

TOPIC=e2e.events
HTTP1=$(free_port)
CFG1=$OUT/throughput.toml
write_config "$CFG1" "regwatch-e2e-throughput-$$" "$TOPIC" throughput "$HTTP1"

# ---- 1. preload -----------------------------------------------------------------------------

create_topic "$TOPIC"
log "preloading $EVENTS events into $TOPIC ($PARTITIONS partitions, $PARTICIPANTS participants)"
broker_phase_start
t0=$(now)
# shellcheck disable=SC2086 # SIM_ARGS: options split on spaces
REGWATCH_LOG=warn "$BIN" simulate --config "$CFG1" --rate 0 --count "$EVENTS" --seed "$SEED" $SIM_ARGS \
    2>"$OUT/simulate-preload.log" || die "simulate failed (see $OUT/simulate-preload.log)"
preload_s=$(calc "$(now) - $t0")
broker_phase_end
preload_broker_cpu=$phase_cpu preload_broker_hwm=$phase_hwm
log "$(tail -n1 "$OUT/simulate-preload.log"); the broker used ${preload_broker_cpu}s CPU"

# ---- 2. bare consumer -----------------------------------------------------------------------

log "bare consumer: reading $EVENTS events"
broker_phase_start
bare_json=$("$BARE" count --brokers "$BROKERS" --topic "$TOPIC" --count "$EVENTS" \
    --timeout-s "$CONSUME_TIMEOUT" --props "$BARE_PROPS" 2>"$OUT/bare.log") || log "bare consumer did not finish (see $OUT/bare.log)"
broker_phase_end
bare_broker_cpu=$phase_cpu bare_broker_hwm=$phase_hwm
[[ -n $bare_json ]] || die "bare consumer printed nothing"
echo "$bare_json" >"$OUT/bare.json"
log "bare: $bare_json"

# ---- 3. kafka-consumer-perf-test ------------------------------------------------------------

# kafka.sh runs the tool's JVM as $JAVA: this wrapper runs the real java as its child and,
# once it has exited, writes its wall time, CPU seconds and peak RSS (wait4's rusage: the
# JVM's own, as /proc/self gives the bare consumer's) to E2E_JVM_STATS. `java -version`
# (kafka.sh's version check) passes straight through.
JVM_WRAPPER=$OUT/java-rusage
cat >"$JVM_WRAPPER" <<EOF
#!$(python3 -c 'import sys; print(sys.executable)')
import json, os, sys, time
real = os.environ["E2E_REAL_JAVA"]
argv = [real] + sys.argv[1:]
stats = os.environ.get("E2E_JVM_STATS")
if not stats or sys.argv[1:2] == ["-version"]:
    os.execv(real, argv)
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(real, argv)
_, status, ru = os.wait4(pid, 0)
with open(stats, "w") as f:
    json.dump({"wall_s": time.monotonic() - t0, "cpu_user_s": ru.ru_utime,
               "cpu_sys_s": ru.ru_stime, "cpu_s": ru.ru_utime + ru.ru_stime,
               "vmhwm_kb": ru.ru_maxrss, "exit_code": os.waitstatus_to_exitcode(status)}, f)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
EOF
chmod +x "$JVM_WRAPPER"

log "kafka-consumer-perf-test: reading $EVENTS events"
rm -f "$OUT/perftest-jvm.json"
broker_phase_start
# shellcheck disable=SC2086 # PERFTEST_ARGS: options split on spaces
JAVA=$JVM_WRAPPER E2E_REAL_JAVA=$REAL_JAVA E2E_JVM_STATS=$OUT/perftest-jvm.json \
    kafka_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BROKERS" \
    --topic "$TOPIC" --messages "$EVENTS" --group "perf-test-e2e-$$" \
    --timeout "$PERFTEST_TIMEOUT_MS" $PERFTEST_ARGS >"$OUT/perftest.out" 2>"$OUT/perftest.log" ||
    log "kafka-consumer-perf-test failed (see $OUT/perftest.log)"
broker_phase_end
perftest_broker_cpu=$phase_cpu perftest_broker_hwm=$phase_hwm
[[ -s $OUT/perftest-jvm.json ]] || die "no rusage of the perf test's JVM (see $OUT/perftest.log)"
# Its one line of stats (under a header naming the columns) and the JVM's rusage, as JSON.
perftest_json=$(python3 - "$OUT/perftest.out" "$OUT/perftest-jvm.json" "$EVENTS" <<'EOF'
import json, sys
lines = [l.strip() for l in open(sys.argv[1]) if l.strip()]
stats = {}
for i, l in enumerate(lines[:-1]):
    if l.startswith("start.time"):
        stats = dict(zip([h.strip() for h in l.split(",")], [v.strip() for v in lines[i + 1].split(",")]))
def num(k):
    try:
        return float(stats[k])
    except (KeyError, ValueError):
        return None
jvm = json.load(open(sys.argv[2]))
count = int(num("data.consumed.in.nMsg") or 0)
fetch_s = (num("fetch.time.ms") or 0) / 1000
print(json.dumps({
    "count": count, "complete": count >= int(sys.argv[3]),
    "elapsed_s": fetch_s,
    "startup_s": jvm["wall_s"] - fetch_s,
    "total_s": jvm["wall_s"],
    "events_per_s": count / fetch_s if fetch_s > 0 else None,
    "events_per_s_with_join": num("nMsg.sec"),
    "rebalance_ms": num("rebalance.time.ms"),
    "mb": num("data.consumed.in.MB"),
    "cpu_user_s": jvm["cpu_user_s"], "cpu_sys_s": jvm["cpu_sys_s"], "cpu_s": jvm["cpu_s"],
    "vmhwm_kb": jvm["vmhwm_kb"], "exit_code": jvm["exit_code"], "stats": stats,
}))
EOF
) || die "cannot read the perf test's results (see $OUT/perftest.out)"
echo "$perftest_json" >"$OUT/perftest.json"
log "perf-test: $(jq -c 'del(.stats)' <<<"$perftest_json")"

# ---- 4. daemon throughput -------------------------------------------------------------------

# daemon_consume TAG CFG HTTP N: runs the daemon on CFG until its /metrics count N events (or
# CONSUME_TIMEOUT), then stops it. Log and final metrics: $OUT/daemon-TAG.{log,metrics}. Sets
# D_CONSUMED D_STARTUP D_ELAPSED D_TOTAL D_EPS D_CPU D_HWM D_BROKER_CPU D_BROKER_HWM D_SCRAPE_MAX
# D_COMMITS D_RC D_ERRORS D_ALERTS D_DEAD. With PERF, perf records the phase PERF_PHASE.
daemon_consume() {
    local tag=$1 cfg=$2 http=$3 n=$4 t_start t_first='' t_done='' t0 t deadline perf_pid='' graph t_ready
    local logf=$OUT/daemon-$tag.log
    broker_phase_start
    t_start=$(now)
    start_daemon "$cfg" "$logf"
    if [[ $PERF != 0 && $tag == "$PERF_PHASE" ]]; then
        graph=()
        # shellcheck disable=SC2054 # one argument, "dwarf,16384"
        [[ $PERF == dwarf ]] && graph=(--call-graph dwarf,16384)
        # Attached once the process has exec'd and started its threads (it then spends a
        # second or two joining the group).
        sleep 0.3
        perf record -e cpu-clock -F 999 "${graph[@]}" -p "$DAEMON_PID" \
            -o "$OUT/perf-daemon.data" >"$OUT/perf-record.log" 2>&1 &
        perf_pid=$!
        PIDS+=("$perf_pid")
    fi
    D_CONSUMED=0 D_SCRAPE_MAX=0
    deadline=$(calc "$t_start + $CONSUME_TIMEOUT")
    while :; do
        kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited (see $logf)"
        t0=$(now)
        D_CONSUMED=$(metrics "$http" | metric_sum regwatch_events_total)
        t=$(now)
        D_SCRAPE_MAX=$(calc "($t - $t0) > $D_SCRAPE_MAX ? ($t - $t0) : $D_SCRAPE_MAX")
        if [[ -z $t_first && $D_CONSUMED -gt 0 ]]; then
            t_first=$t
        fi
        if ((D_CONSUMED >= n)); then
            t_done=$t
            break
        fi
        if awk "BEGIN { exit !($t > $deadline) }"; then
            log "daemon reached only $D_CONSUMED of $n events in ${CONSUME_TIMEOUT}s"
            break
        fi
        sleep 0.1
    done
    D_CPU=$(cpu_s "$DAEMON_PID")
    D_HWM=$(hwm_kb "$DAEMON_PID")
    broker_phase_end
    D_BROKER_CPU=$phase_cpu D_BROKER_HWM=$phase_hwm
    metrics "$http" >"$OUT/daemon-$tag.metrics"
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        {
            perf report -i "$OUT/perf-daemon.data" --no-children --sort comm,dso --stdio -g none
            perf report -i "$OUT/perf-daemon.data" --no-children --sort dso,symbol --stdio -g none
        } 2>/dev/null | grep -v '^$' | head -n 150 >"$OUT/perf-daemon.txt" || true
        log "perf profile: $OUT/perf-daemon.txt"
    fi
    local t_end=${t_done:-$(now)}
    # Consumption starts when the first partition worker has restored its (empty) state: take
    # that instant from the log rather than from the first scrape, which a busy daemon may
    # answer late. The bare consumer's clock likewise starts at its first message.
    t_ready=$(sed 's/\x1b\[[0-9;]*m//g' "$logf" | awk '/partition state restored/ { print $1; exit }')
    if [[ -n $t_ready ]]; then
        t_first=$(date -d "$t_ready" +%s.%N)
    fi
    t_first=${t_first:-$t_end}
    D_COMMITS=$(grep '^regwatch_offset_commits_total{result="ok"}' "$OUT/daemon-$tag.metrics" |
        awk '{ print $2 + 0 }')
    D_STARTUP=$(calc "$t_first - $t_start")
    D_ELAPSED=$(calc "$t_end - $t_first")
    D_TOTAL=$(calc "$t_end - $t_start")
    D_EPS=$(calc "$D_CONSUMED / ($D_ELAPSED > 0 ? $D_ELAPSED : 1e-9)")
    stop_daemon "$DAEMON_PID"
    D_RC=$STOP_RC
    D_ERRORS=$(log_problems "$logf")
    D_ALERTS=$(metric_sum regwatch_alerts_total <"$OUT/daemon-$tag.metrics")
    D_DEAD=$(metric_sum regwatch_dead_letters_total <"$OUT/daemon-$tag.metrics")
    log "daemon ($tag): $D_CONSUMED events in ${D_ELAPSED}s after ${D_STARTUP}s of start-up, ${D_CPU}s CPU, VmHWM ${D_HWM} kB, $D_ALERTS alerts, $D_ERRORS warnings/errors in its log"
}

log "daemon: reading the same $EVENTS events"
daemon_consume throughput "$CFG1" "$HTTP1" "$EVENTS"
consumed=$D_CONSUMED daemon_startup_s=$D_STARTUP daemon_elapsed_s=$D_ELAPSED daemon_total_s=$D_TOTAL
daemon_eps=$D_EPS daemon_cpu=$D_CPU daemon_hwm=$D_HWM scrape_max=$D_SCRAPE_MAX
daemon_broker_cpu=$D_BROKER_CPU daemon_broker_hwm=$D_BROKER_HWM daemon_commits=$D_COMMITS
daemon_rc=$D_RC daemon_errors=$D_ERRORS alerts_emitted=$D_ALERTS dead_emitted=$D_DEAD
# What the daemon says it wrote must be on the topics once it has drained.
on_topic() {
    local n=$1 json
    ((n > 0)) || { echo 0; return; }
    json=$("$BARE" count --brokers "$BROKERS" --topic "$2" --count "$n" --timeout-s 30 --props "$BARE_PROPS" \
        2>>"$OUT/bare.log") || true
    [[ -n $json ]] || json='{}'
    jq -r '.count // 0' <<<"$json"
}
alerts_on_topic=$(on_topic "$alerts_emitted" regwatch.alerts.throughput)
dead_on_topic=$(on_topic "$dead_emitted" regwatch.dead-letters.throughput)
((alerts_on_topic >= alerts_emitted && dead_on_topic >= dead_emitted)) ||
    log "MISSING OUTPUT: $alerts_on_topic of $alerts_emitted alerts, $dead_on_topic of $dead_emitted dead letters on the topics"

# ---- 5. latency at a steady rate ------------------------------------------------------------

# phase_setup TOPIC TAG: a fresh topic and a daemon configuration of its own (group, output
# topics, HTTP port) for a phase; sets PHASE_HTTP and PHASE_CFG.
phase_setup() {
    PHASE_HTTP=$(free_port)
    PHASE_CFG=$OUT/$2.toml
    write_config "$PHASE_CFG" "regwatch-e2e-$2-$$" "$1" "$2" "$PHASE_HTTP"
    create_topic "$1"
}

LTOPIC=e2e.latency.events
phase_setup "$LTOPIC" latency
HTTP2=$PHASE_HTTP CFG2=$PHASE_CFG
log "latency: daemon on $LTOPIC, $RATE events/s for ${LAT_SECONDS}s"
start_daemon "$CFG2" "$OUT/daemon-latency.log"
for _ in $(seq 1 300); do
    kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited (see $OUT/daemon-latency.log)"
    assigned=$(metrics "$HTTP2" | metric_sum regwatch_assigned_partitions)
    ((assigned >= PARTITIONS)) && break
    sleep 0.1
done
((assigned >= PARTITIONS)) || die "the daemon owns $assigned of $PARTITIONS partitions after 30s"
"$BARE" latency --brokers "$BROKERS" --topic regwatch.alerts.latency --idle-s 5 \
    --max-s $((LAT_SECONDS + 60)) --props "$BARE_PROPS" >"$OUT/latency.json" 2>"$OUT/latency.log" &
LAT_PID=$!
PIDS+=("$LAT_PID")
"$BARE" latency --raw 1 --brokers "$BROKERS" --topic "$LTOPIC" --idle-s 5 \
    --max-s $((LAT_SECONDS + 60)) --props "$BARE_PROPS" >"$OUT/latency-raw.json" 2>"$OUT/latency-raw.log" &
RAW_PID=$!
PIDS+=("$RAW_PID")
for f in latency latency-raw; do
    for _ in $(seq 1 300); do
        grep -q '^assigned' "$OUT/$f.log" && break
        sleep 0.1
    done
    grep -q '^assigned' "$OUT/$f.log" || die "the $f reader got no partitions (see $OUT/$f.log)"
done
daemon_cpu0=$(cpu_s "$DAEMON_PID")
broker_phase_start
t0=$(now)
# shellcheck disable=SC2086 # SIM_ARGS: options split on spaces
REGWATCH_LOG=warn "$BIN" simulate --config "$CFG2" --topic "$LTOPIC" --rate "$RATE" \
    --duration "${LAT_SECONDS}s" --seed "$((SEED + 1))" $SIM_ARGS 2>"$OUT/simulate-latency.log" ||
    log "simulate at $RATE/s reported failures (see $OUT/simulate-latency.log)"
lat_wall=$(calc "$(now) - $t0")
log "$(tail -n1 "$OUT/simulate-latency.log")"
wait "$LAT_PID" || log "latency reader saw no alert with a source timestamp (see $OUT/latency.log)"
wait "$RAW_PID" || log "raw latency reader saw no event (see $OUT/latency-raw.log)"
# Let the daemon finish what is queued before its CPU is read.
sleep 1
lat_events=$(metrics "$HTTP2" | metric_sum regwatch_events_total)
lat_daemon_cpu=$(calc "$(cpu_s "$DAEMON_PID") - $daemon_cpu0")
broker_phase_end
lat_broker_cpu=$phase_cpu lat_broker_hwm=$phase_hwm
lat_hwm=$(hwm_kb "$DAEMON_PID")
metrics "$HTTP2" >"$OUT/daemon-latency.metrics"
stop_daemon "$DAEMON_PID"
lat_rc=$STOP_RC
lat_errors=$(log_problems "$OUT/daemon-latency.log")
lat_json=$(cat "$OUT/latency.json")
[[ -n $lat_json ]] || lat_json='{}'
raw_json=$(cat "$OUT/latency-raw.json")
[[ -n $raw_json ]] || raw_json='{}'

# ---- 6. an alert storm ----------------------------------------------------------------------

# The same reading as phases 2 and 4 on a stream where about 30 % of events raise an alert
# (STORM_ARGS: half the incident reports open a new incident). Beside the throughput against
# the bare consumer, the daemon's extra CPU per extra alert against phase 4 is the CPU an
# alert costs (JSON, headers, MAC, produce, and the state of the incident it opened).
STOPIC=e2e.storm.events
phase_setup "$STOPIC" storm
HTTP3=$PHASE_HTTP CFG3=$PHASE_CFG
log "alert storm: preloading $STORM_EVENTS events into $STOPIC ($STORM_ARGS)"
# shellcheck disable=SC2086 # SIM_ARGS, STORM_ARGS: options split on spaces
REGWATCH_LOG=warn "$BIN" simulate --config "$CFG3" --topic "$STOPIC" --rate 0 --count "$STORM_EVENTS" \
    --seed "$((SEED + 2))" $SIM_ARGS $STORM_ARGS 2>"$OUT/simulate-storm.log" ||
    die "simulate failed (see $OUT/simulate-storm.log)"
storm_bare_json=$("$BARE" count --brokers "$BROKERS" --topic "$STOPIC" --count "$STORM_EVENTS" \
    --timeout-s "$CONSUME_TIMEOUT" --props "$BARE_PROPS" 2>>"$OUT/bare.log") || true
[[ -n $storm_bare_json ]] || die "bare consumer printed nothing on the storm topic"
log "storm bare: $storm_bare_json"
daemon_consume storm "$CFG3" "$HTTP3" "$STORM_EVENTS"
storm_json=$(jq -n --argjson events "$D_CONSUMED" --argjson elapsed "$D_ELAPSED" \
    --argjson startup "$D_STARTUP" --argjson total "$D_TOTAL" --argjson eps "$D_EPS" \
    --argjson cpu "$D_CPU" --argjson hwm "$D_HWM" --argjson alerts "$D_ALERTS" \
    --argjson dead "$D_DEAD" --argjson rc "$D_RC" --argjson errors "$D_ERRORS" \
    --argjson broker_cpu "$D_BROKER_CPU" --argjson broker_hwm "$D_BROKER_HWM" \
    '{events: $events, elapsed_s: $elapsed, startup_s: $startup, total_s: $total,
      events_per_s: $eps, cpu_s: $cpu, cpu_s_per_million: ($cpu * 1000000 / ([$events, 1] | max)),
      cores_busy: ($cpu / $total), peak_rss_kb: $hwm,
      alerts_emitted: $alerts, dead_letters_emitted: $dead, exit_code: $rc,
      log_warnings_errors: $errors, broker_cpu_s: $broker_cpu, broker_peak_rss_kb: $broker_hwm}')

# ---- 7. replay ------------------------------------------------------------------------------

# `regwatch replay` of EVENTS events from a file (the same generator and seed as the preload)
# against the floor under it: a buffered line read and a serde_json skip of every line
# (`bare_consumer lines`). Both whole processes, wall time and CPU (wait4's rusage), the file
# in the page cache.
REPLAY_FILE=$OUT/replay.jsonl
# shellcheck disable=SC2086 # SIM_ARGS: options split on spaces
"$BIN" simulate --config "$CFG1" --rate 0 --count "$EVENTS" --seed "$SEED" $SIM_ARGS \
    --out "$REPLAY_FILE" 2>"$OUT/simulate-replay.log" || die "simulate --out failed (see $OUT/simulate-replay.log)"
cat "$REPLAY_FILE" >/dev/null
# rusage STDOUT CMD...: runs CMD with its stdout to STDOUT; prints wall_s, cpu_s, vmhwm_kb,
# exit_code as JSON.
rusage() {
    python3 - "$@" <<'PY'
import json, os, sys, time
out = open(sys.argv[1], "wb")
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.dup2(out.fileno(), 1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"wall_s": time.monotonic() - t0, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "vmhwm_kb": ru.ru_maxrss, "exit_code": os.waitstatus_to_exitcode(status)}))
PY
}
log "replay: $EVENTS events from $REPLAY_FILE, and the line-read floor"
replay_floor_json=$(rusage "$OUT/replay-floor.out" "$BARE" lines --file "$REPLAY_FILE")
replay_json=$(rusage "$OUT/replay-alerts.jsonl" "$BIN" replay --config "$CFG1" "$REPLAY_FILE")
replay_alerts=$(wc -l <"$OUT/replay-alerts.jsonl")
replay_json=$(jq -c --argjson alerts "$replay_alerts" '.alerts = $alerts' <<<"$replay_json")
log "replay: $replay_json; floor: $replay_floor_json"
rm -f "$REPLAY_FILE"

# The committed callgrind figures (benches/instructions.txt: `name instructions` lines).
instructions_json() {
    awk 'BEGIN { printf "{" } NF == 2 && $2 ~ /^[0-9]+$/ { printf "%s\"%s\": %s", sep, $1, $2; sep = ", " } END { print "}" }' \
        "$ROOT/benches/instructions.txt"
}

# ---- summary --------------------------------------------------------------------------------

jq -n \
    --argjson events "$EVENTS" --argjson partitions "$PARTITIONS" \
    --argjson participants "$PARTICIPANTS" --argjson rate "$RATE" \
    --argjson preload_s "$preload_s" \
    --argjson preload_broker_cpu "$preload_broker_cpu" --argjson preload_broker_hwm "$preload_broker_hwm" \
    --argjson bare "$bare_json" \
    --argjson bare_broker_cpu "$bare_broker_cpu" --argjson bare_broker_hwm "$bare_broker_hwm" \
    --argjson pt "$perftest_json" \
    --argjson pt_broker_cpu "$perftest_broker_cpu" --argjson pt_broker_hwm "$perftest_broker_hwm" \
    --argjson consumed "$consumed" --argjson d_startup "$daemon_startup_s" \
    --argjson d_elapsed "$daemon_elapsed_s" --argjson d_total "$daemon_total_s" \
    --argjson d_eps "$daemon_eps" --argjson d_cpu "$daemon_cpu" --argjson d_hwm "$daemon_hwm" \
    --argjson d_broker_cpu "$daemon_broker_cpu" --argjson d_broker_hwm "$daemon_broker_hwm" \
    --argjson d_rc "$daemon_rc" \
    --argjson d_errors "$daemon_errors" --argjson scrape_max "$scrape_max" \
    --argjson d_commits "${daemon_commits:-0}" \
    --argjson alerts_emitted "$alerts_emitted" --argjson alerts_on_topic "$alerts_on_topic" \
    --argjson dead_emitted "$dead_emitted" --argjson dead_on_topic "$dead_on_topic" \
    --argjson lat "$lat_json" --argjson raw "$raw_json" --argjson lat_events "$lat_events" --argjson lat_wall "$lat_wall" \
    --argjson lat_cpu "$lat_daemon_cpu" \
    --argjson lat_broker_cpu "$lat_broker_cpu" --argjson lat_broker_hwm "$lat_broker_hwm" \
    --argjson lat_hwm "$lat_hwm" --argjson lat_rc "$lat_rc" --argjson lat_errors "$lat_errors" \
    --argjson storm_bare "$storm_bare_json" --argjson storm "$storm_json" \
    --argjson replay "$replay_json" --argjson replay_floor "$replay_floor_json" \
    --argjson instr "$(instructions_json)" --arg storm_args "$STORM_ARGS" \
    --arg daemon_props "$DAEMON_PROPS" --arg bare_props "$BARE_PROPS" --arg sim_args "$SIM_ARGS" \
    --arg perftest_args "$PERFTEST_ARGS" --arg broker_props "$BROKER_PROPS" \
    'def per_m(cpu; n): if n > 0 then cpu * 1000000 / n else null end;
     def ratio(a; b): if a == null or b == null or b == 0 then null else a / b end;
     ($bare.cpu_s) as $bare_cpu
     | {
        setup: { events: $events, partitions: $partitions, participants: $participants,
                 broker: "Apache Kafka 4.1 (one KRaft node, scripts/kafka.sh)",
                 broker_props: $broker_props,
                 daemon_librdkafka: $daemon_props, bare_librdkafka: $bare_props,
                 perftest_args: $perftest_args, simulate_args: $sim_args,
                 preload: { seconds: $preload_s, events_per_s: ($events / $preload_s),
                            broker_cpu_s: $preload_broker_cpu,
                            broker_peak_rss_kb: $preload_broker_hwm } },
        bare: { events: $bare.count, complete: $bare.complete, elapsed_s: $bare.elapsed_s,
                startup_s: $bare.startup_s, total_s: $bare.total_s,
                events_per_s: $bare.events_per_s,
                cpu_s: $bare_cpu, cpu_s_per_million: per_m($bare_cpu; $bare.count),
                cores_busy: ($bare_cpu / $bare.total_s),
                peak_rss_kb: $bare.vmhwm_kb,
                broker_cpu_s: $bare_broker_cpu, broker_peak_rss_kb: $bare_broker_hwm },
        perftest: { events: $pt.count, complete: $pt.complete, elapsed_s: $pt.elapsed_s,
                    startup_s: $pt.startup_s, total_s: $pt.total_s,
                    events_per_s: $pt.events_per_s,
                    events_per_s_with_join: $pt.events_per_s_with_join,
                    rebalance_ms: $pt.rebalance_ms,
                    cpu_s: $pt.cpu_s, cpu_s_per_million: per_m($pt.cpu_s; $pt.count),
                    cores_busy: ($pt.cpu_s / $pt.total_s),
                    peak_rss_kb: $pt.vmhwm_kb, exit_code: $pt.exit_code,
                    broker_cpu_s: $pt_broker_cpu, broker_peak_rss_kb: $pt_broker_hwm,
                    tool_stats: $pt.stats },
        daemon: { events: $consumed, complete: ($consumed >= $events), elapsed_s: $d_elapsed,
                  startup_s: $d_startup, total_s: $d_total, events_per_s: $d_eps,
                  cpu_s: $d_cpu, cpu_s_per_million: per_m($d_cpu; $consumed),
                  cores_busy: ($d_cpu / $d_total),
                  peak_rss_kb: $d_hwm, exit_code: $d_rc,
                  broker_cpu_s: $d_broker_cpu, broker_peak_rss_kb: $d_broker_hwm,
                  alerts_emitted: $alerts_emitted, alerts_on_topic: $alerts_on_topic,
                  dead_letters_emitted: $dead_emitted, dead_letters_on_topic: $dead_on_topic,
                  log_warnings_errors: $d_errors, slowest_metrics_scrape_s: $scrape_max,
                  offset_commits_until_done: $d_commits },
        latency: { rate: $rate, events: $lat_events, wall_s: $lat_wall,
                   alerts_with_source: ($lat.count // 0),
                   produce_to_alert_ms: $lat.alert_ms, produce_to_receive_ms: $lat.receive_ms,
                   bare_produce_to_receive_ms: $raw.receive_ms,
                   daemon_cpu_s: $lat_cpu, daemon_cpu_s_per_million: per_m($lat_cpu; $lat_events),
                   daemon_peak_rss_kb: $lat_hwm,
                   broker_cpu_s: $lat_broker_cpu, broker_peak_rss_kb: $lat_broker_hwm,
                   exit_code: $lat_rc, log_warnings_errors: $lat_errors },
        storm: ($storm + { simulate_args: $storm_args,
                 bare: { events: $storm_bare.count, events_per_s: $storm_bare.events_per_s,
                         cpu_s: $storm_bare.cpu_s,
                         cpu_s_per_million: per_m($storm_bare.cpu_s; $storm_bare.count),
                         peak_rss_kb: $storm_bare.vmhwm_kb } }),
        replay: { events: $events, daemon: $replay, floor: $replay_floor },
        instructions: $instr
      }
     | .ratios = {
         throughput: ratio(.daemon.events_per_s; .bare.events_per_s),
         cpu_per_event: ratio(.daemon.cpu_s_per_million; .bare.cpu_s_per_million),
         throughput_target_min: 0.6, cpu_per_event_target_max: 2.0,
         daemon_vs_perftest_throughput: ratio(.daemon.events_per_s; .perftest.events_per_s),
         daemon_vs_perftest_cpu_per_event: ratio(.daemon.cpu_s_per_million; .perftest.cpu_s_per_million),
         perftest_vs_bare_throughput: ratio(.perftest.events_per_s; .bare.events_per_s),
         perftest_vs_bare_cpu_per_event: ratio(.perftest.cpu_s_per_million; .bare.cpu_s_per_million) }
     | .ratios.throughput_ok = (.ratios.throughput != null and .ratios.throughput >= 0.6)
     | .ratios.cpu_per_event_ok = (.ratios.cpu_per_event != null and .ratios.cpu_per_event <= 2.0)
     # The targets of issue 12, each a ratio against a baseline of the same run.
     | (.daemon.alerts_emitted / ([.daemon.events, 1] | max)) as $a1
     | (.storm.alerts_emitted / ([.storm.events, 1] | max)) as $a2
     | .targets = [
         { measure: "decode + score (callgrind instructions per event; time: cargo bench --bench hot_path)",
           baseline: "serde_json IgnoredAny over the same bytes",
           value: ratio(.instructions.decode_score; .instructions.baseline), unit: "x", max: 2.0 },
         { measure: "regwatch replay of \(.replay.events) events (wall)",
           baseline: "buffered line read + IgnoredAny per line",
           value: ratio(.replay.daemon.wall_s; .replay.floor.wall_s), unit: "x", max: 1.5 },
         { measure: "daemon CPU per event, backlog", baseline: "bare rdkafka consumer",
           value: .ratios.cpu_per_event, unit: "x", max: 2.0 },
         { measure: "daemon throughput, backlog", baseline: "bare rdkafka consumer",
           value: .ratios.throughput, unit: "x", min: 0.6 },
         { measure: "CPU per alert (storm vs backlog: extra CPU / extra alerts)", baseline: "-",
           value: (if ($a2 - $a1) > 0 then (.storm.cpu_s_per_million - .daemon.cpu_s_per_million) / ($a2 - $a1) else null end),
           unit: "us", max: 3.0 },
         { measure: "produce -> alert p99 at \(.latency.rate) events/s", baseline: "bare produce -> receive p99",
           value: ratio(.latency.produce_to_alert_ms.p99; .latency.bare_produce_to_receive_ms.p99), unit: "x", max: 2.0 },
         { measure: "produce -> alert p99 at \(.latency.rate) events/s (absolute)", baseline: "-",
           value: .latency.produce_to_alert_ms.p99, unit: "ms", max: 10 },
         { measure: "daemon peak RSS, backlog", baseline: "bare: \(.bare.peak_rss_kb / 1024 | round) MB",
           value: (.daemon.peak_rss_kb / 1024), unit: "MB", max: 150 },
         { measure: "alert storm throughput (\($a2 * 100 | round) % of events alert)", baseline: "bare rdkafka consumer",
           value: ratio(.storm.events_per_s; .storm.bare.events_per_s), unit: "x", min: 0.4 }
       ]
     | .targets |= map(.met = (.value != null and (if .max then .value <= .max else .value >= .min end)))' >"$RESULTS"

jq -r '
  def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
  def mb(x): if x == null then "-" else (x / 1024 * 10 | round / 10 | tostring) end;
  def p(n): " " * ([n - length, 1] | max) + .;
  def row(name; r): "  \(name)\(f(r.events_per_s) | p(12))\(f(r.cpu_s_per_million) | p(13))\(mb(r.peak_rss_kb) | p(13))\(f(r.total_s) | p(9))\(f(r.startup_s) | p(12))\(f(r.cores_busy) | p(12))\(f(r.broker_cpu_s) | p(14))\(mb(r.broker_peak_rss_kb) | p(15))";
  def ms(x): if x == null then "-" else (x | tostring) end;
  def lrow(name; l): "  \(name)\(ms(l.p50) | p(8))\(ms(l.p90) | p(8))\(ms(l.p99) | p(8))\(ms(l.p999) | p(9))\(ms(l.max) | p(8))\(ms(l.count) | p(10))";
  def target(ok): if ok then "met" else "MISSED" end;
  "",
  "regwatch end-to-end (\(.setup.events) events, \(.setup.partitions) partitions, \(.setup.participants) participants, \(.setup.broker))",
  "librdkafka: daemon [\(.setup.daemon_librdkafka)], bare [\(.setup.bare_librdkafka)]; perf-test options [\(.setup.perftest_args)]; broker properties [\(.setup.broker_props)]",
  "preload: \(f(.setup.preload.seconds)) s, \(f(.setup.preload.events_per_s)) events/s, broker CPU \(f(.setup.preload.broker_cpu_s)) s, broker peak RSS \(mb(.setup.preload.broker_peak_rss_kb)) MB",
  "",
  "                       events/s  CPU s/1M ev  peak RSS MB   wall s  start-up s  cores busy  broker CPU s  broker RSS MB",
  row("bare consumer   "; .bare),
  row("consumer-perf   "; .perftest),
  row("daemon          "; .daemon),
  "  (events/s: from the first message (bare), the group assignment (perf-test: fetch.time.ms) or the first restored partition (daemon) to the last; CPU and RSS: the whole process, perf-test JVM start-up included; perf-test events/s with its group join: \(f(.perftest.events_per_s_with_join)))",
  "",
  "  daemon/bare throughput          \(f(.ratios.throughput))  (target >= 0.6: \(target(.ratios.throughput_ok)))",
  "  daemon/bare CPU per event       \(f(.ratios.cpu_per_event))  (target <= 2.0: \(target(.ratios.cpu_per_event_ok)))",
  "  daemon/perf-test throughput     \(f(.ratios.daemon_vs_perftest_throughput))",
  "  daemon/perf-test CPU per event  \(f(.ratios.daemon_vs_perftest_cpu_per_event))",
  "  perf-test/bare throughput       \(f(.ratios.perftest_vs_bare_throughput)), CPU per event \(f(.ratios.perftest_vs_bare_cpu_per_event))",
  "  bare read \(.bare.events) (complete: \(.bare.complete)); perf-test read \(.perftest.events) (complete: \(.perftest.complete), exit code \(.perftest.exit_code))",
  "  daemon consumed \(.daemon.events) of \(.setup.events), exit code \(.daemon.exit_code), \(.daemon.log_warnings_errors) WARN/ERROR log lines, slowest /metrics scrape \(f(.daemon.slowest_metrics_scrape_s)) s, \(.daemon.offset_commits_until_done) offset commits until done",
  "  alerts emitted \(.daemon.alerts_emitted), on the topic \(.daemon.alerts_on_topic); dead letters \(.daemon.dead_letters_emitted), on the topic \(.daemon.dead_letters_on_topic)",
  "",
  "latency at \(.latency.rate) events/s (\(.latency.events) events in \(f(.latency.wall_s)) s, \(.latency.alerts_with_source) alerts with a source timestamp), ms:",
  "                                         p50     p90     p99    p99.9     max     count",
  lrow("daemon: produce -> alert produced  "; .latency.produce_to_alert_ms),
  lrow("daemon: produce -> alert received  "; .latency.produce_to_receive_ms),
  lrow("bare:   produce -> event received  "; .latency.bare_produce_to_receive_ms),
  "  daemon CPU \(f(.latency.daemon_cpu_s_per_million)) s/1M events, peak RSS \(mb(.latency.daemon_peak_rss_kb)) MB; broker CPU \(f(.latency.broker_cpu_s)) s, peak RSS \(mb(.latency.broker_peak_rss_kb)) MB; exit code \(.latency.exit_code), \(.latency.log_warnings_errors) WARN/ERROR log lines",
  "",
  "alert storm (\(.storm.simulate_args)): daemon \(f(.storm.events_per_s)) events/s, \(f(.storm.cpu_s_per_million)) CPU s/1M, \(.storm.alerts_emitted) alerts, peak RSS \(mb(.storm.peak_rss_kb)) MB; bare \(f(.storm.bare.events_per_s)) events/s, \(f(.storm.bare.cpu_s_per_million)) CPU s/1M",
  "replay of \(.replay.events) events: regwatch \(f(.replay.daemon.wall_s)) s wall, \(f(.replay.daemon.cpu_s)) s CPU, \(.replay.daemon.alerts) alerts; floor \(f(.replay.floor.wall_s)) s wall, \(f(.replay.floor.cpu_s)) s CPU",
  "",
  "issue 12 targets (ratios against a baseline of this run):",
  (.targets[] | "  \(.measure)" + " " * ([90 - (.measure | length), 1] | max) + "\(f(.value) | p(8)) \(.unit)  target \(if .max then "<= \(.max)" else ">= \(.min)" end): \(target(.met))"),
  "",
  "results: \($results), logs: \($out)"
' --arg results "$RESULTS" --arg out "$OUT/" "$RESULTS"
