//! Hot-path throughput: bytes -> `Event` -> graded incident, for events of known incidents.
//!
//! A deterministic generator (xorshift, no `rand`) produces a realistic mix of
//! `regwatch.event.v1` messages (CONTRACT.md section 1): ~60% infosec updates, ~25% trading
//! updates, ~15% heartbeats, from 500 registered participants of every kind, about 5,000 open
//! incidents reported over and over with slowly growing cumulative figures, optional fields and
//! unknown extras (free-text `description`, `ticket`, ...) the decoder must skip, timestamps a
//! few milliseconds apart. Mean size is about 420 bytes.
//!
//! Benchmarks (group `hot_path`, throughput in messages):
//! - `baseline_ignored_any`: `serde_json::from_slice::<IgnoredAny>`, a lower bound for any
//!   JSON reader over the same bytes;
//! - `decode`: `regwatch::decode::decode` (parse + validate + registry lookup);
//! - `decode_score`: `Engine::process` (decode + dedup + liveness + grading) on a warmed
//!   engine where every incident is already known. Event ids are never repeated (fresh
//!   batches are generated, outside the timed region, whenever one is used up), so the
//!   duplicate short-cut is not what is measured; the outcomes are counted and checked.
//!
//! After criterion, a plain timed loop prints one summary line (events/s, ratio to baseline,
//! mean event size).
//!
//! `--count-instructions N` runs no benchmark: it builds the data set, then runs the baseline
//! and decode + score over `N` events each, in two functions that `benches/instructions.sh`
//! measures with callgrind (instructions do not depend on the machine's load, so CI can
//! guard them). Without `--bench` (e.g. `cargo test --all-targets`) the data set is
//! small and every benchmark runs once, so the test path stays quick.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use serde::de::IgnoredAny;

use regwatch::alert::Alert;
use regwatch::config::Config;
use regwatch::decode::{decode, MAX_EVENT_BYTES};
use regwatch::registry::{Participant, ParticipantKind, Registry};
use regwatch::score::{Engine, Outcome};
use regwatch::time::Timestamp;

// ---------------------------------------------------------------------------------------------
// Sizes.

struct Scale {
    participants: usize,
    incidents: usize,
    messages: usize,
    /// Passes of the plain timed loop (best one is reported).
    passes: usize,
}

const FULL: Scale = Scale {
    participants: 500,
    incidents: 5_000,
    messages: 100_000,
    passes: 5,
};

const QUICK: Scale = Scale {
    participants: 500,
    incidents: 500,
    messages: 2_000,
    passes: 1,
};

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in 0..n (n < 2^32).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// Picks by weight from `(value, weight)` pairs.
    fn weighted<T: Copy>(&mut self, xs: &[(T, u32)]) -> T {
        let total: u32 = xs.iter().map(|x| x.1).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for &(v, w) in xs {
            if r < w {
                return v;
            }
            r -= w;
        }
        xs[xs.len() - 1].0
    }
}

// ---------------------------------------------------------------------------------------------
// The population: participants and their incidents.

const CITIES: [&str; 8] = ["SH", "SZ", "BJ", "GZ", "HZ", "CD", "WH", "NJ"];

/// (kind, id code, share of participants in 500)
const KINDS: [(ParticipantKind, &str, u32); 7] = [
    (ParticipantKind::Exchange, "EXC", 4),
    (ParticipantKind::FuturesExchange, "FEX", 4),
    (ParticipantKind::Clearing, "CLR", 2),
    (ParticipantKind::Broker, "BRK", 300),
    (ParticipantKind::FuturesBroker, "FBK", 110),
    (ParticipantKind::FundManager, "FND", 50),
    (ParticipantKind::ServiceProvider, "SVC", 30),
];

fn participants(n: usize, rng: &mut Rng) -> Vec<Participant> {
    let weights: Vec<((ParticipantKind, &str), u32)> =
        KINDS.iter().map(|&(k, c, w)| ((k, c), w)).collect();
    (0..n)
        .map(|i| {
            // The first few are one of each kind, so every kind is present.
            let (kind, code) = if i < KINDS.len() {
                (KINDS[i].0, KINDS[i].1)
            } else {
                rng.weighted(&weights)
            };
            let city = CITIES[i % CITIES.len()];
            let customers = match kind {
                ParticipantKind::Broker => rng.range(20_000.0, 8_000_000.0) as u64,
                ParticipantKind::FuturesBroker => rng.range(5_000.0, 600_000.0) as u64,
                ParticipantKind::FundManager => rng.range(0.0, 2_000_000.0) as u64,
                _ => 0,
            };
            Participant {
                id: format!("{city}-{code}-{i:04}").into(),
                name: format!("{city} {} No. {i}", kind.as_str()).into(),
                kind,
                effective_customers: customers,
                calendar: kind.default_calendar().into(),
                topics: Vec::new(),
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    /// outage / degradation: duration-graded.
    Service,
    /// data_leak / data_corruption / account_takeover: records.
    Records,
    /// intrusion, ddos, malware, settlement_error, other.
    OtherInfosec,
    Trading,
}

struct Incident {
    participant: usize,
    id: String,
    class: Class,
    category: &'static str,
    system: &'static str,
    scope: &'static str,
    record_type: &'static str,
    started_at: i64,
    instrument: String,
    venue: &'static str,
    /// Base values of the figures, and how much each report adds (cumulative, slow growth).
    base: [f64; 8],
    reports: u32,
}

const INFOSEC_CATEGORIES: [(&str, u32); 10] = [
    ("outage", 15),
    ("degradation", 25),
    ("data_leak", 10),
    ("data_corruption", 5),
    ("intrusion", 10),
    ("ddos", 15),
    ("malware", 5),
    ("account_takeover", 5),
    ("settlement_error", 5),
    ("other", 5),
];

const TRADING_CATEGORIES: [(&str, u32); 9] = [
    ("erroneous_order", 15),
    ("runaway_algo", 10),
    ("spoofing", 15),
    ("layering", 10),
    ("wash_trade", 10),
    ("marking_close", 10),
    ("price_push", 10),
    ("order_rate", 15),
    ("other", 5),
];

const DESCRIPTIONS: [&str; 8] = [
    "Matching gateway GW-3 dropped FIX sessions after a config push; failover to standby",
    "交易前置机3号节点内存泄漏导致委托延迟, 已切换备用节点",
    "Login burst from one ASN against the mobile app; MFA step-up enabled",
    "Reconciliation found mismatched settlement amounts for margin accounts",
    "Volumetric DDoS on the public quote API, upstream scrubbing engaged",
    "Algo engine order-rate limiter misfired after a parameter change",
    "客户信息疑似经外包系统泄露, 已启动应急预案",
    "Cancel-heavy order flow flagged by in-house surveillance; account restricted",
];

fn incident(
    i: usize,
    participants: &[Participant],
    trading: bool,
    start: i64,
    rng: &mut Rng,
) -> Incident {
    let p = rng.below(participants.len() as u64) as usize;
    let kind = participants[p].kind;
    let category = if trading {
        rng.weighted(&TRADING_CATEGORIES)
    } else {
        rng.weighted(&INFOSEC_CATEGORIES)
    };
    let class = match category {
        _ if trading => Class::Trading,
        "outage" | "degradation" => Class::Service,
        "data_leak" | "data_corruption" | "account_takeover" => Class::Records,
        _ => Class::OtherInfosec,
    };
    let system = match kind {
        ParticipantKind::Exchange => rng.pick(&["trading", "market_data"]),
        ParticipantKind::FuturesExchange => rng.pick(&["trading", "market_data", "other"]),
        ParticipantKind::Clearing => rng.pick(&["clearing", "custody"]),
        _ => rng.pick(&[
            "trading",
            "trading",
            "custody",
            "margin",
            "market_data",
            "other",
        ]),
    };
    let (instrument, venue) = if rng.chance(0.5) {
        (format!("{:06}.SH", 600_000 + rng.below(5_000)), "SSE")
    } else {
        (format!("{:06}.SZ", rng.below(3_000) + 1), "SZSE")
    };
    let base = match class {
        // units_pct, investors, orders_delayed, -, loss
        Class::Service => [
            rng.range(0.2, 4.0),
            rng.range(0.0, 3_000.0).floor(),
            rng.range(0.0, 5_000.0).floor(),
            0.0,
            rng.range(0.0, 50_000.0),
            0.0,
            0.0,
            0.0,
        ],
        // records, investors, loss
        Class::Records | Class::OtherInfosec => [
            rng.range(1.0, 3_000.0).floor(),
            rng.range(0.0, 4_000.0).floor(),
            rng.range(0.0, 200_000.0),
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ],
        // orders, peak rate, cancel ratio, order notional, price move, index move, volume
        // share, loss
        Class::Trading => [
            rng.range(50.0, 20_000.0).floor(),
            rng.range(5.0, 200.0),
            rng.range(0.02, 0.4),
            rng.range(1e5, 2e8),
            rng.range(-3.0, 3.0),
            rng.range(-0.2, 0.2),
            rng.range(0.0005, 0.05),
            rng.range(0.0, 50_000.0),
        ],
    };
    Incident {
        participant: p,
        id: format!("{}-INC-{i:05}", participants[p].id),
        class,
        category,
        system,
        scope: if rng.chance(0.1) { "full" } else { "partial" },
        record_type: rng.pick(&[
            "personal",
            "personal",
            "transactions",
            "credentials",
            "other",
        ]),
        started_at: start - rng.below(20 * 60_000) as i64,
        instrument,
        venue,
        base,
        reports: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// The generator.

const EIGHT_HOURS_MS: i64 = 8 * 3_600_000;

/// 2026-03-02T09:30:00+08:00, the SSE open.
const START_MS: i64 = 1_772_415_000_000;

struct Gen {
    rng: Rng,
    participants: Vec<Participant>,
    incidents: Vec<Incident>,
    infosec: Vec<usize>,
    trading: Vec<usize>,
    clock: i64,
    seq: u64,
    stamp: String,
}

impl Gen {
    fn new(scale: &Scale) -> Gen {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let participants = participants(scale.participants, &mut rng);
        let incidents: Vec<Incident> = (0..scale.incidents)
            .map(|i| {
                // 60 : 25 infosec to trading, as in the event mix.
                let trading = rng.below(85) < 25;
                incident(i, &participants, trading, START_MS, &mut rng)
            })
            .collect();
        let infosec = (0..incidents.len())
            .filter(|&i| incidents[i].class != Class::Trading)
            .collect();
        let trading = (0..incidents.len())
            .filter(|&i| incidents[i].class == Class::Trading)
            .collect();
        Gen {
            rng,
            participants,
            incidents,
            infosec,
            trading,
            clock: START_MS,
            seq: 0,
            stamp: String::with_capacity(32),
        }
    }

    /// One report per incident (the first time the engine hears of it).
    fn opening(&mut self) -> Vec<Vec<u8>> {
        (0..self.incidents.len())
            .map(|i| {
                let mut w = Vec::with_capacity(512);
                self.tick();
                self.report(&mut w, i, "open");
                w
            })
            .collect()
    }

    /// Refills `buf` with `n` new messages of the regular mix (ids never seen before).
    fn fill(&mut self, buf: &mut Vec<Vec<u8>>, n: usize) {
        buf.resize_with(n, || Vec::with_capacity(512));
        for w in buf.iter_mut() {
            w.clear();
            self.tick();
            let roll = self.rng.below(100);
            if roll < 15 || self.incidents.is_empty() {
                let p = self.rng.below(self.participants.len() as u64) as usize;
                self.heartbeat(w, p);
            } else {
                let pool = if roll < 75 || self.trading.is_empty() {
                    &self.infosec
                } else {
                    &self.trading
                };
                let i = pool[self.rng.below(pool.len() as u64) as usize];
                self.report(w, i, "update");
            }
        }
    }

    fn tick(&mut self) {
        self.clock += 1 + self.rng.below(5) as i64;
        self.seq += 1;
    }

    /// RFC 3339 in Beijing time, as participants send it.
    fn stamp(&mut self, ms: i64) -> &str {
        self.stamp.clear();
        let _ = write!(self.stamp, "{}", Timestamp(ms + EIGHT_HOURS_MS));
        self.stamp.pop(); // 'Z'
        self.stamp.push_str("+08:00");
        &self.stamp
    }

    fn header(&mut self, w: &mut Vec<u8>, p: usize, kind: &str) {
        let clock = self.clock;
        let seq = self.seq;
        let pid = &self.participants[p].id;
        let _ = write!(
            w,
            r#"{{"schema":"regwatch.event.v1","event_id":"{pid}-{seq:012}","participant_id":"{pid}","kind":"{kind}","occurred_at":""#
        );
        let at = self.stamp(clock);
        w.extend_from_slice(at.as_bytes());
        w.push(b'"');
    }

    fn heartbeat(&mut self, w: &mut Vec<u8>, p: usize) {
        self.header(w, p, "heartbeat");
        let uptime = (self.clock - START_MS) / 1000 + 86_400;
        let depth = self.rng.below(40);
        let _ = write!(
            w,
            r#","source":"risk-gw-{:02}","agent_version":"2.4.1","uptime_s":{uptime},"queue_depth":{depth}}}"#,
            p % 7,
        );
    }

    fn report(&mut self, w: &mut Vec<u8>, i: usize, status: &str) {
        let (p, class) = (self.incidents[i].participant, self.incidents[i].class);
        let kind = if class == Class::Trading {
            "trading"
        } else {
            "infosec"
        };
        self.header(w, p, kind);
        self.incidents[i].reports += 1;
        let inc = &self.incidents[i];
        let r = f64::from(inc.reports);
        let b = &inc.base;
        let rng = &mut self.rng;
        let _ = write!(
            w,
            r#","incident_id":"{}","status":"{status}","category":"{}""#,
            inc.id, inc.category
        );
        match class {
            Class::Service => {
                let started = {
                    self.stamp.clear();
                    let _ = write!(self.stamp, "{}", Timestamp(inc.started_at + EIGHT_HOURS_MS));
                    self.stamp.pop();
                    self.stamp.push_str("+08:00");
                    &self.stamp
                };
                let _ = write!(
                    w,
                    r#","system":"{}","scope":"{}","started_at":"{started}","affected_units_pct":{:.2},"affected_investors":{},"orders_delayed":{}"#,
                    inc.system,
                    inc.scope,
                    (b[0] + r * 0.0005).min(100.0),
                    b[1] + (r / 4.0).floor(),
                    b[2] + r,
                );
            }
            Class::Records | Class::OtherInfosec => {
                let _ = write!(w, r#","system":"{}""#, inc.system);
                if class == Class::Records {
                    let _ = write!(
                        w,
                        r#","record_type":"{}","records_exposed":{}"#,
                        inc.record_type,
                        b[0] + (r / 8.0).floor()
                    );
                }
                let _ = write!(
                    w,
                    r#","affected_investors":{},"loss_cny":{:.2}"#,
                    b[1] + (r / 8.0).floor(),
                    b[2] + r * 10.0
                );
            }
            Class::Trading => {
                let orders = b[0] + r * 3.0;
                let cancel = (b[2] + r * 1e-5).min(0.45);
                let notional = b[3] + r * 5_000.0;
                let _ = write!(
                    w,
                    r#","instrument":"{}","venue":"{}","orders":{orders},"peak_orders_per_sec":{:.1},"cancel_ratio":{cancel:.4},"order_notional_cny":{notional:.2}"#,
                    inc.instrument,
                    inc.venue,
                    b[1] + r * 0.001,
                );
                // Not every report carries every figure.
                if rng.chance(0.6) {
                    let _ = write!(
                        w,
                        r#","executed_notional_cny":{:.2},"cancelled_notional_cny":{:.2}"#,
                        notional * 0.3,
                        notional * cancel,
                    );
                }
                if rng.chance(0.5) {
                    let _ = write!(
                        w,
                        r#","price_move_pct":{:.3},"index_move_pct":{:.4},"volume_share":{:.4}"#,
                        b[4], b[5], b[6]
                    );
                }
                if rng.chance(0.3) {
                    let _ = write!(w, r#","loss_cny":{:.2}"#, b[7] + r);
                }
            }
        }
        // Unknown extras the decoder must skip.
        if rng.chance(0.5) {
            let _ = write!(
                w,
                r#","description":"{}""#,
                DESCRIPTIONS[rng.below(DESCRIPTIONS.len() as u64) as usize]
            );
        }
        let _ = write!(w, r#","ticket":"OPS-2026-{:06}"}}"#, i * 7 + 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture: a warmed engine, a reference pool, fresh batches for scoring.

#[derive(Default)]
struct Tally {
    graded: u64,
    heartbeat: u64,
    duplicate: u64,
    after_resolution: u64,
    rejected: u64,
    alerts: u64,
}

impl Tally {
    fn total(&self) -> u64 {
        self.graded + self.heartbeat + self.duplicate + self.after_resolution + self.rejected
    }
}

struct Fixture {
    registry: Arc<Registry>,
    engine: Engine,
    gen: Gen,
    /// Reference messages for `baseline` and `decode` (also used to warm the engine up).
    pool: Vec<Vec<u8>>,
    pool_cursor: usize,
    /// Never-processed messages for `decode_score`; refilled when used up.
    fresh: Vec<Vec<u8>>,
    fresh_cursor: usize,
    out: Vec<Alert>,
    tally: Tally,
    incidents: usize,
}

impl Fixture {
    fn new(scale: &Scale) -> Fixture {
        let mut gen = Gen::new(scale);
        let cfg = Config::with_participants(gen.participants.clone()).expect("valid registry");
        let registry = Arc::new(cfg.registry);
        let mut engine = Engine::new(registry.clone(), Arc::new(cfg.rules), cfg.engine);
        let opening = gen.opening();
        let mut pool = Vec::new();
        gen.fill(&mut pool, scale.messages);
        let mut out = Vec::with_capacity(64);
        // Warm-up: every incident is opened, then every message of the pool is processed once.
        for bytes in opening.iter().chain(&pool) {
            let outcome = engine.process(bytes, &mut out);
            assert!(
                matches!(outcome, Ok(Outcome::Graded | Outcome::Heartbeat)),
                "warm-up: {outcome:?} for {}",
                String::from_utf8_lossy(bytes)
            );
            out.clear();
        }
        assert_eq!(engine.stats().incidents_opened, scale.incidents as u64);
        let mut fresh = Vec::new();
        gen.fill(&mut fresh, scale.messages);
        Fixture {
            registry,
            engine,
            gen,
            pool,
            pool_cursor: 0,
            fresh,
            fresh_cursor: 0,
            out,
            tally: Tally::default(),
            incidents: scale.incidents,
        }
    }

    fn mean_bytes(&self) -> f64 {
        self.pool.iter().map(Vec::len).sum::<usize>() as f64 / self.pool.len() as f64
    }

    /// Runs `f` over the next `n` messages of the reference pool, cycling; returns the time.
    fn over_pool(&mut self, n: u64, mut f: impl FnMut(&[u8])) -> Duration {
        let pool = &self.pool;
        let mut i = self.pool_cursor;
        let start = Instant::now();
        for _ in 0..n {
            f(&pool[i]);
            i += 1;
            if i == pool.len() {
                i = 0;
            }
        }
        let spent = start.elapsed();
        self.pool_cursor = i;
        spent
    }

    fn baseline(&mut self, n: u64) -> Duration {
        self.over_pool(n, |bytes| {
            let v = serde_json::from_slice::<IgnoredAny>(black_box(bytes));
            assert!(v.is_ok());
            black_box(v.ok());
        })
    }

    fn decode(&mut self, n: u64) -> Duration {
        let registry = self.registry.clone();
        self.over_pool(n, |bytes| {
            let event = decode(black_box(bytes), &registry, MAX_EVENT_BYTES);
            assert!(event.is_ok());
            black_box(&event);
        })
    }

    /// `Engine::process` over `n` never-seen messages; only processing is timed.
    fn decode_score(&mut self, mut n: u64) -> Duration {
        let mut spent = Duration::ZERO;
        while n > 0 {
            if self.fresh_cursor == self.fresh.len() {
                let len = self.fresh.len();
                self.gen.fill(&mut self.fresh, len);
                self.fresh_cursor = 0;
            }
            let k = n.min((self.fresh.len() - self.fresh_cursor) as u64) as usize;
            let chunk = &self.fresh[self.fresh_cursor..self.fresh_cursor + k];
            let t = &mut self.tally;
            let start = Instant::now();
            for bytes in chunk {
                match self.engine.process(black_box(bytes), &mut self.out) {
                    Ok(Outcome::Graded) => t.graded += 1,
                    Ok(Outcome::Heartbeat) => t.heartbeat += 1,
                    Ok(Outcome::Duplicate) => t.duplicate += 1,
                    Ok(Outcome::AfterResolution) => t.after_resolution += 1,
                    Err(_) => t.rejected += 1,
                }
                t.alerts += self.out.len() as u64;
                self.out.clear();
            }
            spent += start.elapsed();
            self.fresh_cursor += k;
            n -= k as u64;
        }
        spent
    }

    /// The measured path must be the one of known incidents, not a short-cut.
    fn check(&self) {
        let t = &self.tally;
        assert!(t.total() > 0, "decode_score processed nothing");
        assert_eq!(
            (t.duplicate, t.after_resolution, t.rejected),
            (0, 0, 0),
            "decode_score must measure graded events and heartbeats only"
        );
        let stats = self.engine.stats();
        assert_eq!(stats.duplicates, 0);
        assert_eq!(
            stats.incidents_opened, self.incidents as u64,
            "every scored event must be about an already-known incident"
        );
        assert_eq!(stats.telemetry_gaps, 0, "no participant may fall silent");
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion.

fn bench_hot_path(c: &mut Criterion, fx: &mut Fixture) {
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_ignored_any", |b| {
        b.iter_custom(|iters| fx.baseline(iters))
    });
    group.bench_function("decode", |b| b.iter_custom(|iters| fx.decode(iters)));
    group.bench_function("decode_score", |b| {
        b.iter_custom(|iters| fx.decode_score(iters))
    });
    group.finish();
}

/// Best-of-`passes` events per second of `run` over `n` messages.
fn rate(passes: usize, n: u64, mut run: impl FnMut(u64) -> Duration) -> f64 {
    let best = (0..passes.max(1))
        .map(|_| run(n))
        .min()
        .unwrap_or_default()
        .max(Duration::from_nanos(1));
    n as f64 / best.as_secs_f64()
}

fn summary(fx: &mut Fixture, scale: &Scale, full: bool) {
    let n = fx.pool.len() as u64;
    let passes = scale.passes;
    let base = rate(passes, n, |k| fx.baseline(k));
    let dec = rate(passes, n, |k| fx.decode(k));
    let tally_before = fx.tally.total();
    let alerts_before = fx.tally.alerts;
    let score = rate(passes, n, |k| fx.decode_score(k));
    let scored = fx.tally.total() - tally_before;
    let alerts = fx.tally.alerts - alerts_before;
    fx.check();
    let m = 1e6;
    println!(
        "hot_path: baseline {:.2} M ev/s, decode {:.2} M ev/s, decode+score {:.2} M ev/s, \
         ratio decode+score/baseline {:.2}x, mean event {:.0} bytes{}",
        base / m,
        dec / m,
        score / m,
        base / score,
        fx.mean_bytes(),
        if full {
            ""
        } else {
            " (test mode: tiny set, figures meaningless)"
        }
    );
    let t = &fx.tally;
    println!(
        "hot_path: per event baseline {:.0} ns, decode {:.0} ns (+{:.0} over baseline), \
         decode+score {:.0} ns (score {:.0} ns); decode_score outcomes: {} graded, {} heartbeats, \
         {} duplicates, {} rejected; {alerts} alerts in {scored} timed-loop events; \
         {} open incidents",
        1e9 / base,
        1e9 / dec,
        1e9 / dec - 1e9 / base,
        1e9 / score,
        1e9 / score - 1e9 / dec,
        t.graded,
        t.heartbeat,
        t.duplicate,
        t.rejected,
        fx.engine.open_incidents(),
    );
}

/// The baseline over `n` events of the pool: callgrind counts the instructions in here.
#[inline(never)]
fn counted_baseline(fx: &mut Fixture, n: u64) {
    black_box(fx.baseline(n));
}

/// Decode + score over `n` fresh events: callgrind counts the instructions in here.
#[inline(never)]
fn counted_decode_score(fx: &mut Fixture, n: u64) {
    black_box(fx.decode_score(n));
}

/// The data set of the instruction count: the full mix, fewer messages (callgrind runs the
/// program about fifty times slower).
const COUNTED: Scale = Scale {
    participants: 500,
    incidents: 5_000,
    messages: 20_000,
    passes: 1,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if let Some(i) = args.iter().position(|a| a == "--count-instructions") {
        let n: u64 = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--count-instructions N");
        let mut fx = Fixture::new(&COUNTED);
        counted_baseline(&mut fx, n);
        counted_decode_score(&mut fx, n);
        fx.check();
        println!("counted: {n} events each (baseline, decode_score)");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` passes nothing (criterion's
    // test mode: each benchmark runs once).
    let full = has("--bench") && !has("--test") && !has("--list");
    let scale = if full { &FULL } else { &QUICK };
    let mut fx = Fixture::new(scale);
    let mut c = Criterion::default().configure_from_args();
    bench_hot_path(&mut c, &mut fx);
    // `--list` runs nothing; `--profile-time` is for profilers, which want the benchmark alone.
    if !has("--list") && !has("--profile-time") {
        // Checks the outcomes of everything decode_score processed, criterion's runs included.
        summary(&mut fx, scale, full);
    }
    c.final_summary();
}
