#!/usr/bin/env bash
# Soak test (not in CI): the daemon on a real Apache Kafka node for an hour at a steady rate,
# with incidents opening, growing and resolving all along (`regwatch simulate`), sampled every
# minute: the daemon's RSS, its open incidents, the state topic's size on the
# broker's disk, the consumer lag, events and alerts. A daemon that leaks memory or state
# shows a rising curve; a healthy one is flat after its warm-up.
#
#   bash benches/soak.sh                                  # 1 hour at 5,000 events/s
#   DURATION=300 SAMPLE=15 RATE=2000 bash benches/soak.sh # a short one
#   BUILD=0 bash benches/soak.sh                          # the release binary already built
#   RETENTION=24h bash benches/soak.sh                    # the default retention (grows all hour)
#
# State is bounded by churn x retention: a resolved incident is kept `engine.resolved_retention`
# (24 h by default) so late reports are recognised, and its tombstone stays in the compacted
# state topic for `delete.retention.ms`. At the synthetic churn (about 150 incidents resolved a
# second; a real sandbox sees a few a day) a 24 h retention cannot reach its steady state within
# an hour, so the soak keeps resolved incidents RETENTION (default 10m) and has the state topic
# roll segments every 5 minutes and drop tombstones after 10 (STATE_TOPIC_CONFIG): from the
# first retention's end on, every curve must be flat.
#
# Output: one CSV line per sample on stdout and in $TARGET/soak/soak.csv, then the first
# sample after the warm-up (WARMUP seconds, default half the run) against the last,
# with each column's change. Logs under $TARGET/soak/. Needs Java 17+ and the Kafka artifacts
# (`bash scripts/kafka.sh fetch`), curl, jq, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-3600}
RATE=${RATE:-5000}
SAMPLE=${SAMPLE:-60}
WARMUP=${WARMUP:-$((DURATION / 2))}  # the retention, a segment roll and the tombstones' retention first
PARTITIONS=${PARTITIONS:-6}
PARTICIPANTS=${PARTICIPANTS:-200}
SEED=${SEED:-7}
BUILD=${BUILD:-1}
SIM_ARGS=${SIM_ARGS:---new-incident 0.05}   # incidents open and resolve all along
COMMIT_INTERVAL=${COMMIT_INTERVAL:-1s}
DAEMON_PROPS=${DAEMON_PROPS:-}
RETENTION=${RETENTION:-10m}
STATE_TOPIC_CONFIG=${STATE_TOPIC_CONFIG:-'"segment.ms=300000", "delete.retention.ms=600000", "min.cleanable.dirty.ratio=0.1"'}
KAFKA_TOML=${KAFKA_TOML:-}
KAFKA_TOML="state_topic_config = [$STATE_TOPIC_CONFIG]
$KAFKA_TOML"
export REGWATCH__ENGINE__RESOLVED_RETENTION=$RETENTION
BROKER_PROPS=${BROKER_PROPS:-}
TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
OUT=$TARGET/soak
mkdir -p "$OUT"

LOG_TAG=soak
NEED_BARE=0
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

TOPIC=soak.events
HTTP=$(free_port)
CFG=$OUT/soak.toml
write_config "$CFG" "regwatch-soak-$$" "$TOPIC" soak "$HTTP"
create_topic "$TOPIC"
start_daemon "$CFG" "$OUT/daemon.log"
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited (see $OUT/daemon.log)"
    sleep 0.3
done
log "daemon ready (pid $DAEMON_PID); $RATE events/s for ${DURATION}s, a sample every ${SAMPLE}s"

# shellcheck disable=SC2086 # SIM_ARGS: options split on spaces
REGWATCH_LOG=warn "$BIN" simulate --config "$CFG" --topic "$TOPIC" --rate "$RATE" \
    --duration "${DURATION}s" --seed "$SEED" $SIM_ARGS 2>"$OUT/simulate.log" &
SIM_PID=$!
PIDS+=("$SIM_PID")

# Bytes of the state topic's log segments on the broker's disk (compaction keeps them
# bounded; the index files, preallocated, are left out).
state_bytes() {
    find "$KDIR"/node-1/ -path '*regwatch.state.soak-*' -name '*.log' -printf '%s\n' 2>/dev/null |
        awk '{ s += $1 } END { printf "%d\n", s }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

CSV=$OUT/soak.csv
echo "elapsed_s,rss_mb,open_incidents,state_topic_mb,lag_messages,events,alerts,cpu_s" | tee "$CSV"
t0=$SECONDS
while kill -0 "$SIM_PID" 2>/dev/null; do
    sleep "$SAMPLE"
    kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited (see $OUT/daemon.log)"
    m=$(metrics "$HTTP")
    printf '%d,%.1f,%d,%.2f,%d,%d,%d,%s\n' \
        "$((SECONDS - t0))" \
        "$(calc "$(rss_kb "$DAEMON_PID") / 1024")" \
        "$(metric_sum regwatch_open_incidents <<<"$m")" \
        "$(calc "$(state_bytes) / 1048576")" \
        "$(metric_sum regwatch_consumer_lag_messages <<<"$m")" \
        "$(metric_sum regwatch_events_total <<<"$m")" \
        "$(metric_sum regwatch_alerts_total <<<"$m")" \
        "$(cpu_s "$DAEMON_PID")" | tee -a "$CSV"
done
wait "$SIM_PID" || log "simulate reported failures (see $OUT/simulate.log)"
log "$(tail -n1 "$OUT/simulate.log")"
stop_daemon "$DAEMON_PID"

# The first sample after the warm-up against the last: flat means each change is small.
python3 - "$CSV" "$WARMUP" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
warm = [r for r in rows if float(r["elapsed_s"]) >= float(sys.argv[2])] or rows
if not warm:
    sys.exit("no sample")
a, b = warm[0], rows[-1]
print(f"from {a['elapsed_s']} s to {b['elapsed_s']} s:")
print(f"  {'':16} {'first':>10}    {'last':>10}  {'change':>8}  {'min':>10} {'max':>10}")
for col in ("rss_mb", "open_incidents", "state_topic_mb", "lag_messages"):
    x, y = float(a[col]), float(b[col])
    values = [float(r[col]) for r in warm]
    change = f"{(y - x) * 100 / x:+.0f} %" if x else "n/a"
    print(f"  {col:16} {x:>10.1f} -> {y:>10.1f}  {change:>8}  {min(values):>10.1f} {max(values):>10.1f}")
# The curves, one mean per tenth of the run (the state topic's log is a saw: segments roll,
# then the cleaner compacts them).
n = max(1, len(rows) // 10)
print(f"  means per {n} samples: elapsed_s rss_mb open_incidents state_topic_mb lag_messages")
for i in range(0, len(rows), n):
    part = rows[i:i + n]
    mean = lambda c: sum(float(r[c]) for r in part) / len(part)
    print(f"    {part[-1]['elapsed_s']:>6} {mean('rss_mb'):>8.1f} {mean('open_incidents'):>8.0f} {mean('state_topic_mb'):>8.1f} {mean('lag_messages'):>8.1f}")
events = float(b["events"]) - float(a["events"])
secs = float(b["elapsed_s"]) - float(a["elapsed_s"])
cpu = float(b["cpu_s"]) - float(a["cpu_s"])
if secs > 0 and events > 0:
    print(f"  steady: {events / secs:.0f} events/s, {cpu * 1e6 / events:.1f} CPU s per million events")
PY
[[ $STOP_RC == 0 ]] || die "the daemon exited with $STOP_RC at SIGTERM"
