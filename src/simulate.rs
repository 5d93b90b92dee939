//! Synthetic sandbox traffic: a population of participants that send heartbeats, incidents
//! and trading anomalies, scripted episodes modelled on real incidents, and a share of
//! malformed messages. Used by `regwatch simulate` (load tests against a real cluster),
//! `regwatch demo` and the end-to-end benchmark.
//!
//! The generator is pure and deterministic for a seed: it writes one event at a time into a
//! caller's buffer, with the engine time the caller gives it.

use std::fmt::Write as _;

use crate::registry::{ParticipantKind, Registry};
use crate::time::Timestamp;

/// How the generated stream is made up (fractions of all messages; the rest is heartbeats).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    pub infosec: f64,
    pub trading: f64,
    /// Malformed or misaddressed messages (dead-letter traffic).
    pub bad: f64,
    /// Share of incident reports that open a new incident (the rest update open ones).
    pub new_incident: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            infosec: 0.55,
            trading: 0.25,
            bad: 0.001,
            new_incident: 0.02,
        }
    }
}

/// One generated message: Kafka key and JSON value.
pub struct Message<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
}

struct Open {
    participant: usize,
    id: String,
    trading: bool,
    reports: u32,
    started_at: Timestamp,
}

/// A deterministic event source over a registry.
pub struct Generator {
    participants: Vec<(String, ParticipantKind)>,
    mix: Mix,
    rng: u64,
    seq: u64,
    open: Vec<Open>,
    max_open: usize,
    key: String,
    buf: Vec<u8>,
}

const INFOSEC: [&str; 6] = [
    "degradation",
    "outage",
    "data_leak",
    "ddos",
    "malware",
    "intrusion",
];
const TRADING: [&str; 5] = [
    "order_rate",
    "erroneous_order",
    "spoofing",
    "wash_trade",
    "price_push",
];
const SYSTEMS: [&str; 4] = ["trading", "market_data", "custody", "other"];

impl Generator {
    pub fn new(registry: &Registry, seed: u64, mix: Mix) -> Generator {
        let participants: Vec<(String, ParticipantKind)> = registry
            .iter()
            .map(|(_, p)| (p.id.to_string(), p.kind))
            .collect();
        let max_open = (participants.len() * 4).max(1);
        Generator {
            participants,
            mix,
            rng: seed | 1,
            seq: 0,
            open: Vec::new(),
            max_open,
            key: String::new(),
            buf: Vec::with_capacity(512),
        }
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// The next message at engine time `now`.
    pub fn next(&mut self, now: Timestamp) -> Message<'_> {
        self.seq += 1;
        self.buf.clear();
        let r = self.unit();
        if self.participants.is_empty() {
            self.key.clear();
            self.buf.extend_from_slice(b"{}");
        } else if r < self.mix.bad {
            self.bad(now);
        } else if r < self.mix.bad + self.mix.infosec + self.mix.trading {
            let trading = r >= self.mix.bad + self.mix.infosec;
            self.report(now, trading);
        } else {
            let p = self.pick(self.participants.len());
            self.heartbeat(p, now);
        }
        Message {
            key: &self.key,
            value: &self.buf,
        }
    }

    fn header(&mut self, p: usize, kind: &str, now: Timestamp) {
        let id = &self.participants[p].0;
        self.key.clear();
        self.key.push_str(id);
        let _ = write!(
            Sink(&mut self.buf),
            r#"{{"schema":"regwatch.event.v1","event_id":"sim-{}-{}","participant_id":"{id}","kind":"{kind}","occurred_at":"{now}""#,
            id,
            self.seq
        );
    }

    fn heartbeat(&mut self, p: usize, now: Timestamp) {
        self.header(p, "heartbeat", now);
        self.buf.push(b'}');
    }

    /// A new incident or an update of an open one (growing figures), sometimes resolved.
    fn report(&mut self, now: Timestamp, trading: bool) {
        let reuse = !self.open.is_empty()
            && (self.open.len() >= self.max_open || self.unit() >= self.mix.new_incident);
        let i = if reuse {
            self.pick(self.open.len())
        } else {
            let participant = self.pick(self.participants.len());
            let id = format!("SIM-{}", self.seq);
            let back = (self.unit() * 120_000.0) as i64;
            self.open.push(Open {
                participant,
                id,
                trading,
                reports: 0,
                started_at: now.plus_millis(-back),
            });
            self.open.len() - 1
        };
        // Incidents resolve as often as new ones open, so the open set stays steady.
        let resolve = self.open[i].reports > 3 && self.unit() < self.mix.new_incident;
        let (p, trading, n) = (
            self.open[i].participant,
            self.open[i].trading,
            self.open[i].reports,
        );
        self.open[i].reports += 1;
        let status = match (n, resolve) {
            (_, true) => "resolved",
            (0, _) => "open",
            _ => "update",
        };
        let kind = if trading { "trading" } else { "infosec" };
        self.header(p, kind, now);
        let id = self.open[i].id.clone();
        let started = self.open[i].started_at;
        let grow = f64::from(n + 1);
        let seed = self.pick(1000) as f64;
        let mut out = Sink(&mut self.buf);
        let _ = write!(out, r#","incident_id":"{id}","status":"{status}""#);
        if trading {
            let category = TRADING[(self.seq % TRADING.len() as u64) as usize];
            let _ = write!(
                out,
                r#","category":"{category}","instrument":"600{:03}.SH","venue":"SSE","orders":{},"peak_orders_per_sec":{:.1},"cancel_ratio":{:.3},"order_notional_cny":{:.2},"price_move_pct":{:.2},"volume_share":{:.3}"#,
                seed as u32 % 1000,
                40.0 * grow,
                20.0 + grow * 3.0,
                (0.05 + grow * 0.01).min(0.45),
                2.0e5 * grow,
                (grow * 0.3).min(4.5),
                (0.01 * grow).min(0.15),
            );
        } else {
            let category = INFOSEC[(self.seq % INFOSEC.len() as u64) as usize];
            let system = SYSTEMS[(self.seq % SYSTEMS.len() as u64) as usize];
            let _ = write!(
                out,
                r#","category":"{category}","system":"{system}","scope":"partial","started_at":"{started}","affected_units_pct":{:.2},"affected_investors":{},"orders_delayed":{},"loss_cny":{:.2},"description":"simulated incident report number {n} from the synthetic population""#,
                (0.5 + grow * 0.2).min(4.5),
                (seed as u64 / 10 + 5) * u64::from(n + 1),
                n * 3,
                100.0 * grow,
            );
        }
        self.buf.push(b'}');
        if resolve {
            self.open.swap_remove(i);
        }
    }

    /// A message that must be dead-lettered, with a reason from a rotating set.
    fn bad(&mut self, now: Timestamp) {
        let p = self.pick(self.participants.len());
        let id = self.participants[p].0.clone();
        self.key.clear();
        self.key.push_str(&id);
        let text = match self.seq % 4 {
            0 => format!(
                r#"{{"schema":"regwatch.event.v1","event_id":"bad-{}","#,
                self.seq
            ),
            1 => format!(
                r#"{{"schema":"regwatch.event.v1","event_id":"bad-{}","participant_id":"XX-UNREGISTERED","kind":"heartbeat","occurred_at":"{now}"}}"#,
                self.seq
            ),
            2 => format!(
                r#"{{"schema":"regwatch.event.v1","event_id":"bad-{}","participant_id":"{id}","kind":"infosec","occurred_at":"{now}","category":"outage"}}"#,
                self.seq
            ),
            _ => format!(
                r#"{{"schema":"regwatch.event.v1","event_id":"bad-{}","participant_id":"{id}","kind":"infosec","occurred_at":"{now}","incident_id":"X","category":"outage","loss_cny":"a lot"}}"#,
                self.seq
            ),
        };
        self.buf.extend_from_slice(text.as_bytes());
    }
}

/// `fmt::Write` into a byte buffer.
struct Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Reject, MAX_EVENT_BYTES};
    use crate::registry::Participant;

    fn registry() -> Registry {
        Registry::new(
            (0..20)
                .map(|i| Participant {
                    id: format!("P-{i}").into(),
                    name: format!("P {i}").into(),
                    kind: ParticipantKind::ALL[i % 7],
                    effective_customers: 1000 * i as u64,
                    calendar: ParticipantKind::ALL[i % 7].default_calendar().into(),
                    topics: Vec::new(),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn generated_events_decode_except_the_bad_share() {
        let reg = registry();
        let mut g = Generator::new(
            &reg,
            7,
            Mix {
                bad: 0.01,
                ..Mix::default()
            },
        );
        let (mut ok, mut bad) = (0, 0);
        for i in 0..20_000 {
            let m = g.next(Timestamp(1_772_415_000_000 + i * 5));
            match decode(m.value, &reg, MAX_EVENT_BYTES) {
                Ok(e) => {
                    assert_eq!(m.key.as_bytes(), reg.get(e.participant).id.as_bytes());
                    ok += 1;
                }
                Err(
                    Reject::NotJson
                    | Reject::UnregisteredParticipant
                    | Reject::MissingField(_)
                    | Reject::WrongType(_),
                ) => bad += 1,
                Err(other) => panic!(
                    "unexpected rejection {other:?}: {}",
                    String::from_utf8_lossy(m.value)
                ),
            }
        }
        assert!(bad > 100 && bad < 400, "about 1% bad, got {bad}");
        assert_eq!(ok + bad, 20_000);
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let reg = registry();
        let run = || {
            let mut g = Generator::new(&reg, 42, Mix::default());
            (0..500)
                .map(|i| String::from_utf8(g.next(Timestamp(i)).value.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
