#!/usr/bin/env bash
# End-to-end benchmark of the daemon against a real Kafka-compatible broker (tansu, memory
# storage), next to a bare rdkafka consumer (benches/bare_consumer.rs) on the same topic.
#
#   bash benches/e2e.sh                      # the whole run (about a minute on 2 cores, after the build)
#   EVENTS=200000 LAT_SECONDS=20 bash benches/e2e.sh    # a quicker one
#   SIM_ARGS="--infosec 0 --trading 0" bash benches/e2e.sh   # heartbeats only: no alerts
#   PERF=1 bash benches/e2e.sh               # also perf-record the daemon's throughput phase
#                                            # (PERF=dwarf: with call graphs; perf adds CPU;
#                                            # target/e2e/perf-daemon.{data,txt})
#   CLIENT_PROPS= bash benches/e2e.sh        # librdkafka's defaults for both clients
#   DAEMON_PROPS="queued.max.messages.kbytes=16384" bash benches/e2e.sh
#                                            # more librdkafka properties for the daemon
#                                            # (BARE_PROPS: for the bare client)
#   KAFKA_TOML='fetch_queue_kbytes = 4096' bash benches/e2e.sh   # more daemon [kafka] keys
#
# CLIENT_PROPS (default "fetch.wait.max.ms=10,fetch.queue.backoff.ms=10") go to both clients,
# to measure them rather than two tansu/librdkafka interactions:
# - tansu holds every Fetch for the full fetch.wait.max.ms even when data is ready (a Kafka
#   broker answers as soon as fetch.min.bytes = 1 is there). With librdkafka's 500 ms both
#   clients read ~270k events/s on 6 partitions whatever their own cost, and every event
#   waits ~400 ms. At 10 ms tansu behaves much like a Kafka broker, at the price of its CPU
#   (it answers a fetch every 10 ms per client).
# - tansu's large fetch responses overfill the bare consumer's single queue (64 MB), and
#   librdkafka then postpones the next fetch by fetch.queue.backoff.ms (1 s): the bare
#   consumer's rate swung between ~0.22 and ~2 M events/s from run to run with the default.

# Phases:
#   1. preload: EVENTS synthetic events (regwatch simulate --rate 0) into a topic of
#      PARTITIONS partitions;
#   2. bare: the bare consumer reads them all (own group, earliest);
#   3. daemon: `regwatch run` reads the same topic (own group); done when the sum of
#      regwatch_events_total on /metrics reaches EVENTS. Its clock starts at the first
#      "partition state restored" in its log (the bare consumer's at its first message); the
#      slowest /metrics answer and the offset commits made until done are recorded, and the
#      alerts and dead letters it counted are read back from their topics;
#   4. latency: a fresh topic and group, the daemon running, simulate at RATE events/s for
#      LAT_SECONDS, and the bare consumer's latency mode on the alerts topic: produce (source
#      event's Kafka timestamp) to alert (the alert's Kafka timestamp, and its receive time);
#      beside it, the same reader on the events topic (--raw) gives the broker's own
#      produce-to-consume latency for a bare consumer, the floor under the daemon's.
# For each process: wall time, CPU seconds (utime+stime of /proc/PID/stat) and peak RSS
# (VmHWM); tansu's CPU per phase too, as the broker shares the two cores.
#
# Output: a table on stdout, target/e2e-results.json, and logs/configs under target/e2e/
# (daemon stderr with REGWATCH_LOG=info, tansu's log, simulate's, the metrics at the end of
# each daemon phase). Needs: tansu on PATH (cargo install tansu), curl, jq, python3.
#
# Targets (the issue): daemon throughput >= 0.9x the bare consumer's, daemon CPU per event
# <= 1.5x the bare consumer's.
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
TANSU=${TANSU:-tansu}
CLIENT_PROPS=${CLIENT_PROPS-fetch.wait.max.ms=10,fetch.queue.backoff.ms=10}  # both clients
DAEMON_PROPS=${DAEMON_PROPS:-}          # comma-separated librdkafka key=value for the daemon
BARE_PROPS=${BARE_PROPS:-}              # and for the bare consumer (both modes)
SIM_ARGS=${SIM_ARGS:-}                  # more `regwatch simulate` options (the event mix)
KAFKA_TOML=${KAFKA_TOML:-}              # more lines for the daemon's [kafka] table
if [[ -n $CLIENT_PROPS ]]; then
    DAEMON_PROPS="$CLIENT_PROPS${DAEMON_PROPS:+,$DAEMON_PROPS}"
    BARE_PROPS="$CLIENT_PROPS${BARE_PROPS:+,$BARE_PROPS}"
fi

OUT=$ROOT/target/e2e
RESULTS=$ROOT/target/e2e-results.json
mkdir -p "$OUT"

log() { printf '[e2e %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in "$TANSU" curl jq python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
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

calc() { awk "BEGIN { printf \"%.4f\", ($*) }"; }

# /metrics of a daemon. The long timeout is deliberate: under a backlog the daemon may answer
# only seconds later (see slowest_metrics_scrape_s), and the answer then still counts.
metrics() { curl -sf --max-time 30 "http://127.0.0.1:$1/metrics" || true; }

# WARN and ERROR lines of a daemon log (colour codes stripped).
log_problems() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -cE '^[^ ]+ +(WARN|ERROR) ' || true; }

# Sum of the samples of one metric family in a /metrics text.
metric_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'; }

# ---- build ----------------------------------------------------------------------------------

log "building release binaries"
cargo build --release --locked --bin regwatch >&2
BIN=$ROOT/target/release/regwatch
BARE=$(cargo bench --locked --bench bare_consumer --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "bare_consumer" and .executable != null) | .executable' |
    tail -n1)
[[ -x $BARE ]] || die "cannot find the bare_consumer bench binary"

# ---- broker ---------------------------------------------------------------------------------

KPORT=$(free_port)
BROKERS=127.0.0.1:$KPORT
log "starting tansu on $BROKERS (memory storage)"
"$TANSU" broker --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" \
    --storage-engine memory://tansu/ >"$OUT/tansu.log" 2>&1 &
TANSU_PID=$!
PIDS+=("$TANSU_PID")

create_topic() {
    local i
    for i in $(seq 1 50); do
        if "$TANSU" topic create --broker "tcp://$BROKERS" --partitions "$PARTITIONS" "$1" \
            >>"$OUT/tansu-topics.log" 2>&1; then
            return 0
        fi
        kill -0 "$TANSU_PID" 2>/dev/null || die "tansu exited (see $OUT/tansu.log)"
        sleep 0.2
    done
    die "cannot create topic $1 (see $OUT/tansu-topics.log)"
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
commit_interval = "1s"
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

TOPIC=e2e.events
HTTP1=$(free_port)
CFG1=$OUT/throughput.toml
write_config "$CFG1" "regwatch-e2e-throughput-$$" "$TOPIC" throughput "$HTTP1"

# ---- 1. preload -----------------------------------------------------------------------------

create_topic "$TOPIC"
log "preloading $EVENTS events into $TOPIC ($PARTITIONS partitions, $PARTICIPANTS participants)"
tansu_cpu0=$(cpu_s "$TANSU_PID")
t0=$(now)
REGWATCH_LOG=warn "$BIN" simulate --config "$CFG1" --rate 0 --count "$EVENTS" --seed "$SEED" $SIM_ARGS \
    2>"$OUT/simulate-preload.log" || die "simulate failed (see $OUT/simulate-preload.log)"
preload_s=$(calc "$(now) - $t0")
preload_tansu_cpu=$(calc "$(cpu_s "$TANSU_PID") - $tansu_cpu0")
log "$(tail -n1 "$OUT/simulate-preload.log"); tansu used ${preload_tansu_cpu}s CPU"

# ---- 2. bare consumer -----------------------------------------------------------------------

log "bare consumer: reading $EVENTS events"
tansu_cpu0=$(cpu_s "$TANSU_PID")
bare_json=$("$BARE" count --brokers "$BROKERS" --topic "$TOPIC" --count "$EVENTS" \
    --timeout-s "$CONSUME_TIMEOUT" --props "$BARE_PROPS" 2>"$OUT/bare.log") || log "bare consumer did not finish (see $OUT/bare.log)"
bare_tansu_cpu=$(calc "$(cpu_s "$TANSU_PID") - $tansu_cpu0")
[[ -n $bare_json ]] || die "bare consumer printed nothing"
echo "$bare_json" >"$OUT/bare.json"
log "bare: $bare_json"

# ---- 3. daemon throughput -------------------------------------------------------------------

log "daemon: reading the same $EVENTS events"
tansu_cpu0=$(cpu_s "$TANSU_PID")
t_start=$(now)
start_daemon "$CFG1" "$OUT/daemon-throughput.log"
PERF_PID=
if [[ $PERF != 0 ]]; then
    graph=()
    [[ $PERF == dwarf ]] && graph=(--call-graph dwarf,16384)
    perf record -e cpu-clock -F 999 "${graph[@]}" -p "$DAEMON_PID" \
        -o "$OUT/perf-daemon.data" >"$OUT/perf-record.log" 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
fi
t_first= t_done= consumed=0 scrape_max=0
deadline=$(calc "$t_start + $CONSUME_TIMEOUT")
while :; do
    kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited (see $OUT/daemon-throughput.log)"
    t0=$(now)
    consumed=$(metrics "$HTTP1" | metric_sum regwatch_events_total)
    t=$(now)
    scrape_max=$(calc "($t - $t0) > $scrape_max ? ($t - $t0) : $scrape_max")
    if [[ -z $t_first && $consumed -gt 0 ]]; then
        t_first=$t
    fi
    if ((consumed >= EVENTS)); then
        t_done=$t
        break
    fi
    if awk "BEGIN { exit !($t > $deadline) }"; then
        log "daemon reached only $consumed of $EVENTS events in ${CONSUME_TIMEOUT}s"
        break
    fi
    sleep 0.1
done
daemon_cpu=$(cpu_s "$DAEMON_PID")
daemon_hwm=$(hwm_kb "$DAEMON_PID")
daemon_tansu_cpu=$(calc "$(cpu_s "$TANSU_PID") - $tansu_cpu0")
metrics "$HTTP1" >"$OUT/daemon-throughput.metrics"
if [[ -n $PERF_PID ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    {
        perf report -i "$OUT/perf-daemon.data" --no-children --sort comm,dso --stdio -g none
        perf report -i "$OUT/perf-daemon.data" --no-children --sort dso,symbol --stdio -g none
    } 2>/dev/null | grep -v '^$' | head -n 150 >"$OUT/perf-daemon.txt" || true
    log "perf profile: $OUT/perf-daemon.txt"
fi
t_end=${t_done:-$(now)}
# Consumption starts when the first partition worker has restored its (empty) state: take
# that instant from the log rather than from the first scrape, which a busy daemon may answer
# late. The bare consumer's clock likewise starts at its first message.
t_ready=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/daemon-throughput.log" |
    awk '/partition state restored/ { print $1; exit }')
if [[ -n $t_ready ]]; then
    t_first=$(date -d "$t_ready" +%s.%N)
fi
t_first=${t_first:-$t_end}
daemon_commits=$(grep '^regwatch_offset_commits_total{result="ok"}' "$OUT/daemon-throughput.metrics" |
    awk '{ print $2 + 0 }')
daemon_startup_s=$(calc "$t_first - $t_start")
daemon_elapsed_s=$(calc "$t_end - $t_first")
daemon_total_s=$(calc "$t_end - $t_start")
daemon_eps=$(calc "$consumed / ($daemon_elapsed_s > 0 ? $daemon_elapsed_s : 1e-9)")
stop_daemon "$DAEMON_PID"
daemon_rc=$STOP_RC
daemon_errors=$(log_problems "$OUT/daemon-throughput.log")
# What the daemon says it wrote must be on the topics once it has drained.
on_topic() {
    local n=$1 json
    ((n > 0)) || { echo 0; return; }
    json=$("$BARE" count --brokers "$BROKERS" --topic "$2" --count "$n" --timeout-s 30 --props "$BARE_PROPS" \
        2>>"$OUT/bare.log") || true
    [[ -n $json ]] || json='{}'
    jq -r '.count // 0' <<<"$json"
}
alerts_emitted=$(metric_sum regwatch_alerts_total <"$OUT/daemon-throughput.metrics")
dead_emitted=$(metric_sum regwatch_dead_letters_total <"$OUT/daemon-throughput.metrics")
alerts_on_topic=$(on_topic "$alerts_emitted" regwatch.alerts.throughput)
dead_on_topic=$(on_topic "$dead_emitted" regwatch.dead-letters.throughput)
((alerts_on_topic >= alerts_emitted && dead_on_topic >= dead_emitted)) ||
    log "MISSING OUTPUT: $alerts_on_topic of $alerts_emitted alerts, $dead_on_topic of $dead_emitted dead letters on the topics"
log "daemon: $consumed events in ${daemon_elapsed_s}s after ${daemon_startup_s}s of start-up, ${daemon_cpu}s CPU, VmHWM ${daemon_hwm} kB, $daemon_errors warnings/errors in its log"

# ---- 4. latency at a steady rate ------------------------------------------------------------

LTOPIC=e2e.latency.events
HTTP2=$(free_port)
CFG2=$OUT/latency.toml
write_config "$CFG2" "regwatch-e2e-latency-$$" "$LTOPIC" latency "$HTTP2"
create_topic "$LTOPIC"
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
tansu_cpu0=$(cpu_s "$TANSU_PID")
t0=$(now)
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
lat_tansu_cpu=$(calc "$(cpu_s "$TANSU_PID") - $tansu_cpu0")
lat_hwm=$(hwm_kb "$DAEMON_PID")
metrics "$HTTP2" >"$OUT/daemon-latency.metrics"
stop_daemon "$DAEMON_PID"
lat_rc=$STOP_RC
lat_errors=$(log_problems "$OUT/daemon-latency.log")
lat_json=$(cat "$OUT/latency.json")
[[ -n $lat_json ]] || lat_json='{}'
raw_json=$(cat "$OUT/latency-raw.json")
[[ -n $raw_json ]] || raw_json='{}'
tansu_hwm=$(hwm_kb "$TANSU_PID")

# ---- summary --------------------------------------------------------------------------------

jq -n \
    --argjson events "$EVENTS" --argjson partitions "$PARTITIONS" \
    --argjson participants "$PARTICIPANTS" --argjson rate "$RATE" \
    --argjson preload_s "$preload_s" --argjson preload_tansu_cpu "$preload_tansu_cpu" \
    --argjson bare "$bare_json" --argjson bare_tansu_cpu "$bare_tansu_cpu" \
    --argjson consumed "$consumed" --argjson d_startup "$daemon_startup_s" \
    --argjson d_elapsed "$daemon_elapsed_s" --argjson d_total "$daemon_total_s" \
    --argjson d_eps "$daemon_eps" --argjson d_cpu "$daemon_cpu" --argjson d_hwm "$daemon_hwm" \
    --argjson d_tansu_cpu "$daemon_tansu_cpu" --argjson d_rc "$daemon_rc" \
    --argjson d_errors "$daemon_errors" --argjson scrape_max "$scrape_max" \
    --argjson d_commits "${daemon_commits:-0}" \
    --argjson alerts_emitted "$alerts_emitted" --argjson alerts_on_topic "$alerts_on_topic" \
    --argjson dead_emitted "$dead_emitted" --argjson dead_on_topic "$dead_on_topic" \
    --argjson lat "$lat_json" --argjson raw "$raw_json" --argjson lat_events "$lat_events" --argjson lat_wall "$lat_wall" \
    --argjson lat_cpu "$lat_daemon_cpu" --argjson lat_tansu_cpu "$lat_tansu_cpu" \
    --argjson lat_hwm "$lat_hwm" --argjson lat_rc "$lat_rc" --argjson lat_errors "$lat_errors" \
    --argjson tansu_hwm "$tansu_hwm" \
    --arg daemon_props "$DAEMON_PROPS" --arg bare_props "$BARE_PROPS" --arg sim_args "$SIM_ARGS" \
    'def per_m(cpu; n): if n > 0 then cpu * 1000000 / n else null end;
     ($bare.cpu_s) as $bare_cpu
     | {
        setup: { events: $events, partitions: $partitions, participants: $participants,
                 broker: "tansu (memory storage)",
                 daemon_librdkafka: $daemon_props, bare_librdkafka: $bare_props,
                 simulate_args: $sim_args,
                 preload: { seconds: $preload_s, events_per_s: ($events / $preload_s),
                            tansu_cpu_s: $preload_tansu_cpu } },
        bare: { events: $bare.count, complete: $bare.complete, elapsed_s: $bare.elapsed_s,
                startup_s: $bare.startup_s, events_per_s: $bare.events_per_s,
                cpu_s: $bare_cpu, cpu_s_per_million: per_m($bare_cpu; $bare.count),
                cores_busy: ($bare_cpu / $bare.total_s),
                peak_rss_kb: $bare.vmhwm_kb, tansu_cpu_s: $bare_tansu_cpu },
        daemon: { events: $consumed, complete: ($consumed >= $events), elapsed_s: $d_elapsed,
                  startup_s: $d_startup, total_s: $d_total, events_per_s: $d_eps,
                  cpu_s: $d_cpu, cpu_s_per_million: per_m($d_cpu; $consumed),
                  cores_busy: ($d_cpu / $d_total),
                  peak_rss_kb: $d_hwm, tansu_cpu_s: $d_tansu_cpu, exit_code: $d_rc,
                  alerts_emitted: $alerts_emitted, alerts_on_topic: $alerts_on_topic,
                  dead_letters_emitted: $dead_emitted, dead_letters_on_topic: $dead_on_topic,
                  log_warnings_errors: $d_errors, slowest_metrics_scrape_s: $scrape_max,
                  offset_commits_until_done: $d_commits },
        ratios: { throughput: ($d_eps / $bare.events_per_s),
                  cpu_per_event: (per_m($d_cpu; $consumed) / per_m($bare_cpu; $bare.count)),
                  throughput_target_min: 0.9, cpu_per_event_target_max: 1.5 },
        latency: { rate: $rate, events: $lat_events, wall_s: $lat_wall,
                   alerts_with_source: ($lat.count // 0),
                   produce_to_alert_ms: $lat.alert_ms, produce_to_receive_ms: $lat.receive_ms,
                   bare_produce_to_receive_ms: $raw.receive_ms,
                   daemon_cpu_s: $lat_cpu, daemon_cpu_s_per_million: per_m($lat_cpu; $lat_events),
                   daemon_peak_rss_kb: $lat_hwm, tansu_cpu_s: $lat_tansu_cpu,
                   exit_code: $lat_rc, log_warnings_errors: $lat_errors },
        tansu_peak_rss_kb: $tansu_hwm
      }
     | .ratios.throughput_ok = (.ratios.throughput >= 0.9)
     | .ratios.cpu_per_event_ok = (.ratios.cpu_per_event <= 1.5)' >"$RESULTS"

jq -r '
  def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
  def p(n): " " * ([n - length, 1] | max) + .;
  "",
  "regwatch end-to-end (\(.setup.events) events, \(.setup.partitions) partitions, \(.setup.participants) participants, \(.setup.broker))",
  "librdkafka: daemon [\(.setup.daemon_librdkafka)], bare [\(.setup.bare_librdkafka)]",
  "preload: \(f(.setup.preload.seconds)) s, \(f(.setup.preload.events_per_s)) events/s, tansu CPU \(f(.setup.preload.tansu_cpu_s)) s",
  "",
  "                     events/s   CPU s/1M ev   cores busy   peak RSS MB   tansu CPU s   start-up s",
  "  bare consumer  \(f(.bare.events_per_s) | p(12))   \(f(.bare.cpu_s_per_million) | p(11))   \(f(.bare.cores_busy) | p(10))   \(f(.bare.peak_rss_kb / 1024) | p(11))   \(f(.bare.tansu_cpu_s) | p(11))   \(f(.bare.startup_s) | p(10))",
  "  daemon         \(f(.daemon.events_per_s) | p(12))   \(f(.daemon.cpu_s_per_million) | p(11))   \(f(.daemon.cores_busy) | p(10))   \(f(.daemon.peak_rss_kb / 1024) | p(11))   \(f(.daemon.tansu_cpu_s) | p(11))   \(f(.daemon.startup_s) | p(10))",
  "",
  "  daemon/bare throughput     \(f(.ratios.throughput))  (target >= 0.9: \(if .ratios.throughput_ok then "met" else "MISSED" end))",
  "  daemon/bare CPU per event  \(f(.ratios.cpu_per_event))  (target <= 1.5: \(if .ratios.cpu_per_event_ok then "met" else "MISSED" end))",
  "  daemon consumed \(.daemon.events) of \(.setup.events), exit code \(.daemon.exit_code), \(.daemon.log_warnings_errors) WARN/ERROR log lines, slowest /metrics scrape \(f(.daemon.slowest_metrics_scrape_s)) s, \(.daemon.offset_commits_until_done) offset commits until done",
  "  alerts emitted \(.daemon.alerts_emitted), on the topic \(.daemon.alerts_on_topic); dead letters \(.daemon.dead_letters_emitted), on the topic \(.daemon.dead_letters_on_topic)",
  "",
  "latency at \(.latency.rate) events/s (\(.latency.events) events, \(.latency.alerts_with_source) alerts with a source timestamp):",
  "  produce -> alert produced   p50 \(.latency.produce_to_alert_ms.p50 // "-") ms   p99 \(.latency.produce_to_alert_ms.p99 // "-") ms   max \(.latency.produce_to_alert_ms.max // "-") ms",
  "  produce -> alert received   p50 \(.latency.produce_to_receive_ms.p50 // "-") ms   p99 \(.latency.produce_to_receive_ms.p99 // "-") ms   max \(.latency.produce_to_receive_ms.max // "-") ms",
  "  bare: produce -> event received   p50 \(.latency.bare_produce_to_receive_ms.p50 // "-") ms   p99 \(.latency.bare_produce_to_receive_ms.p99 // "-") ms   max \(.latency.bare_produce_to_receive_ms.max // "-") ms",
  "  daemon CPU \(f(.latency.daemon_cpu_s_per_million)) s/1M events, peak RSS \(f(.latency.daemon_peak_rss_kb / 1024)) MB; tansu CPU \(f(.latency.tansu_cpu_s)) s; exit code \(.latency.exit_code), \(.latency.log_warnings_errors) WARN/ERROR log lines",
  "tansu peak RSS \(f(.tansu_peak_rss_kb / 1024)) MB",
  "",
  "results: target/e2e-results.json, logs: target/e2e/"
' "$RESULTS"
