//! The end-to-end benchmark's reference client (driven by `benches/e2e.sh`): a bare librdkafka
//! consumer, built with the project's own rdkafka crate and features, and a latency reader.
//!
//! ```text
//! cargo bench --bench bare_consumer -- count   --brokers HOST:PORT --topic T --count N
//!                                              [--group G] [--timeout-s S] [--props K=V,..]
//! cargo bench --bench bare_consumer -- lines   --file EVENTS.jsonl
//! cargo bench --bench bare_consumer -- latency --brokers HOST:PORT --topic ALERTS
//!                                              [--group G] [--idle-s S] [--max-s S] [--raw 1]
//!                                              [--props K=V,..]
//! ```
//!
//! - `count`: joins its own group on `--topic` from the earliest offset (librdkafka defaults
//!   otherwise, which are also the daemon's fetch settings), touches only each payload's
//!   length, and stops once it has seen `--count` messages. One JSON line on stdout:
//!   `count`, `bytes`, `elapsed_s` (first message to last), `total_s` (start to last),
//!   `startup_s` (start to first message), `events_per_s` (count / elapsed_s), and this
//!   process's own `cpu_user_s`, `cpu_sys_s` and `vmhwm_kb` (peak RSS) from `/proc/self`.
//! - `latency`: reads the alerts topic from the earliest offset; for every message carrying
//!   the header `regwatch.source_timestamp` (the source event's Kafka timestamp, ms) it takes
//!   `alert_ms` = the alert's own Kafka timestamp - source (produce to alert produced) and
//!   `receive_ms` = the time this reader got it - source (produce to alert readable). It
//!   stops after `--idle-s` without a message (once it has seen one) or after `--max-s`, and
//!   prints one JSON line with count, p50/p90/p99/max of both. "assigned" goes to stderr once
//!   the group has given it partitions, so a driver knows when to start producing. With
//!   `--raw 1` every message's own Kafka timestamp is the source (read the events topic this
//!   way for the broker's bare produce-to-consume latency, the floor under the daemon's).
//! - `--props` passes librdkafka properties through (e.g. `fetch.wait.max.ms=10`), to try a
//!   setting on the bare consumer before proposing it for the daemon.
//!
//! - `lines --file F`: the baseline of `regwatch replay` (no broker): reads the JSON-lines
//!   file through a buffered reader line by line and skips each line with
//!   `serde_json::from_slice::<IgnoredAny>`; one JSON line with `count`, `invalid`,
//!   `elapsed_s`, CPU and peak RSS as for `count`.
//!
//! Unless its first argument is a mode (as when `cargo test --all-targets` or a bare
//! `cargo bench` runs every bench target, whatever flags they pass) it prints a note and exits
//! 0: it needs a broker, which only `e2e.sh` provides.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::Message;

const SOURCE_HEADER: &str = "regwatch.source_timestamp";

struct Args {
    mode: String,
    opts: HashMap<String, String>,
}

impl Args {
    /// `None` when the arguments name no mode (how `cargo test` and a bare `cargo bench`
    /// start every bench target, with their own flags). Otherwise the mode is the first
    /// argument (after cargo's `--bench`), and `--name value` pairs follow; cargo's `--bench`
    /// is ignored wherever it stands.
    fn parse() -> Result<Option<Args>, String> {
        let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
        let mode = match it.next() {
            Some(m) if m == "count" || m == "latency" || m == "lines" => m,
            _ => return Ok(None),
        };
        let mut opts = HashMap::new();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            opts.insert(name.to_string(), value);
        }
        Ok(Some(Args { mode, opts }))
    }

    fn get(&self, name: &str) -> Result<&str, String> {
        self.opts
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.opts.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?} is not a number")),
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(Some(a)) => a,
        Ok(None) => {
            eprintln!(
                "bare_consumer: no mode given (count | latency); it needs a broker, see benches/e2e.sh"
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bare_consumer: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.mode.as_str() {
        "count" => count(&args),
        "lines" => lines(&args),
        _ => latency(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bare_consumer: {e}");
            ExitCode::from(2)
        }
    }
}

fn consumer(args: &Args, group: &str) -> Result<BaseConsumer, String> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", args.get("brokers")?)
        .set("client.id", "bare-consumer")
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    if let Some(props) = args.opts.get("props") {
        for kv in props.split(',').filter(|kv| !kv.trim().is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--props: {kv:?} is not key=value"))?;
            cfg.set(k.trim(), v.trim());
        }
    }
    let c: BaseConsumer = cfg
        .create()
        .map_err(|e| format!("cannot create the consumer: {e}"))?;
    c.subscribe(&[args.get("topic")?])
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    Ok(c)
}

fn unique_group(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Counts messages until `--count`; Ok(false) when `--timeout-s` passed first.
fn count(args: &Args) -> Result<bool, String> {
    let start = Instant::now();
    let target: u64 = args.num("count", 1_000_000)?;
    let timeout = Duration::from_secs_f64(args.num("timeout-s", 300.0)?);
    let group = match args.opts.get("group") {
        Some(g) => g.clone(),
        None => unique_group("bare-count"),
    };
    let c = consumer(args, &group)?;
    let (mut n, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    while n < target && start.elapsed() < timeout {
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                if first.is_none() {
                    first = Some(Instant::now());
                }
                n += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("bare_consumer: consume error: {e}");
                }
            }
        }
    }
    let end = Instant::now();
    let (user, sys) = cpu_seconds();
    let first = first.unwrap_or(end);
    let elapsed = end.duration_since(first).as_secs_f64();
    let line = serde_json::json!({
        "mode": "count",
        "topic": args.get("topic")?,
        "target": target,
        "count": n,
        "complete": n >= target,
        "bytes": bytes,
        "errors": errors,
        "startup_s": first.duration_since(start).as_secs_f64(),
        "elapsed_s": elapsed,
        "total_s": end.duration_since(start).as_secs_f64(),
        "events_per_s": n as f64 / elapsed.max(1e-9),
        "cpu_user_s": user,
        "cpu_sys_s": sys,
        "cpu_s": user + sys,
        "vmhwm_kb": vm_hwm_kb(),
    });
    println!("{line}");
    drop(c);
    Ok(n >= target)
}

/// Produce-to-alert latencies of the alerts topic.
/// `lines`: a buffered line read and a `serde_json` skip of each line, the floor under
/// `regwatch replay` of the same file.
fn lines(args: &Args) -> Result<bool, String> {
    use std::io::BufRead;
    let path = args.get("file")?;
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut input = std::io::BufReader::new(file);
    let mut line = Vec::with_capacity(4096);
    let (mut count, mut invalid) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("{path}: {e}")),
        }
        count += 1;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_err() {
            invalid += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (user, sys) = cpu_seconds();
    let line = serde_json::json!({
        "count": count,
        "invalid": invalid,
        "elapsed_s": elapsed,
        "events_per_s": count as f64 / elapsed.max(1e-9),
        "cpu_user_s": user,
        "cpu_sys_s": sys,
        "cpu_s": user + sys,
        "vmhwm_kb": vm_hwm_kb(),
    });
    println!("{line}");
    Ok(count > 0)
}

fn latency(args: &Args) -> Result<bool, String> {
    let start = Instant::now();
    let idle = Duration::from_secs_f64(args.num("idle-s", 5.0)?);
    let max = Duration::from_secs_f64(args.num("max-s", 600.0)?);
    let raw = args.num("raw", 0u8)? != 0;
    let group = match args.opts.get("group") {
        Some(g) => g.clone(),
        None => unique_group("bare-latency"),
    };
    let c = consumer(args, &group)?;
    let mut assigned = false;
    let (mut seen, mut without_source, mut unparsable) = (0u64, 0u64, 0u64);
    let mut alert_ms: Vec<i64> = Vec::new();
    let mut receive_ms: Vec<i64> = Vec::new();
    // Time of the last message with a source timestamp: the daemon's clock-driven alerts
    // (escalations with no new report) carry none and go on after the load stops.
    let mut last = Instant::now();
    while start.elapsed() < max && (receive_ms.is_empty() || last.elapsed() < idle) {
        if !assigned && c.assignment().is_ok_and(|a| a.count() > 0) {
            assigned = true;
            eprintln!("assigned");
        }
        let Some(r) = c.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = match r {
            Ok(m) => m,
            Err(e) => {
                eprintln!("bare_consumer: consume error: {e}");
                continue;
            }
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        seen += 1;
        if raw {
            if let Some(ts) = m.timestamp().to_millis() {
                last = Instant::now();
                receive_ms.push(now_ms - ts);
            }
            continue;
        }
        let source = m.headers().and_then(|h| {
            (0..h.count())
                .map(|i| h.get(i))
                .find(|h| h.key == SOURCE_HEADER)
                .and_then(|h| h.value)
        });
        let Some(source) = source else {
            without_source += 1;
            continue;
        };
        let Some(source) = std::str::from_utf8(source)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
        else {
            unparsable += 1;
            continue;
        };
        last = Instant::now();
        if let Some(ts) = m.timestamp().to_millis() {
            alert_ms.push(ts - source);
        }
        receive_ms.push(now_ms - source);
    }
    let line = serde_json::json!({
        "mode": if raw { "latency-raw" } else { "latency" },
        "topic": args.get("topic")?,
        "messages": seen,
        "count": receive_ms.len(),
        "without_source_header": without_source,
        "unparsable_source_header": unparsable,
        "alert_ms": summary(&mut alert_ms),
        "receive_ms": summary(&mut receive_ms),
        "duration_s": start.elapsed().as_secs_f64(),
    });
    println!("{line}");
    Ok(!receive_ms.is_empty())
}

/// Nearest-rank percentiles of `v` (sorted in place).
fn summary(v: &mut [i64]) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::json!({ "count": 0 });
    }
    v.sort_unstable();
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    serde_json::json!({
        "count": v.len(),
        "min": v[0],
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": v[v.len() - 1],
        "mean": mean,
    })
}

/// This process's user and system CPU seconds (fields 14 and 15 of /proc/self/stat, in
/// USER_HZ = 100 ticks a second on Linux).
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    (tick(11), tick(12))
}

/// Peak resident set size (VmHWM) in kB.
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
