//! When to try again: the classification of an attempt's outcome, jittered exponential
//! back-off, `Retry-After`, and the per-receiver circuit breaker.
//!
//! - 2xx: delivered.
//! - Timeouts, connection errors, 5xx and 408: transient; retried forever with back-off
//!   (an alert is never dropped because a receiver is down), and counted by the breaker.
//! - 429: transient; the wait is the receiver's `Retry-After` (seconds or an HTTP date,
//!   within `retry_initial..=retry_max`, so `Retry-After: 0` cannot make a hot loop), else
//!   the back-off. A throttling receiver is alive: the breaker does not count it (a probe
//!   answered 429 closes it).
//! - Any other status (other 4xx, 3xx: redirects are not followed, a signed request must
//!   not wander): permanent; the alert is dead-lettered for that receiver with the status.
//!
//! Back-off: attempt `n` (from 0) waits a uniformly random time in `[d/2, d]` with
//! `d = min(retry_max, retry_initial * 2^n)`: exponential, and jittered so that many
//! partitions retrying at once do not hammer the receiver in step.
//!
//! Breaker: `breaker_failures` consecutive transient failures open it; while open no
//! request is made; after `breaker_cooldown` one probe goes out (half-open) while the other
//! lanes wait; its success closes the breaker, its failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::time::Timestamp;

/// Why an attempt failed (the `cause` label of the failure counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Timeout,
    Connect,
    Status5xx,
    Throttled,
    Rejected,
    Other,
}

impl Cause {
    pub const ALL: [Cause; 6] = [
        Cause::Timeout,
        Cause::Connect,
        Cause::Status5xx,
        Cause::Throttled,
        Cause::Rejected,
        Cause::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Timeout => "timeout",
            Cause::Connect => "connect",
            Cause::Status5xx => "http_5xx",
            Cause::Throttled => "http_429",
            Cause::Rejected => "http_4xx",
            Cause::Other => "other",
        }
    }

    /// Whether the failure says the receiver is unhealthy (the breaker counts these).
    pub fn is_unhealthy(self) -> bool {
        matches!(
            self,
            Cause::Timeout | Cause::Connect | Cause::Status5xx | Cause::Other
        )
    }
}

/// What an HTTP status means for delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry(Cause),
    Permanent,
}

pub fn judge(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 => Verdict::Retry(Cause::Throttled),
        408 | 500..=599 => Verdict::Retry(Cause::Status5xx),
        _ => Verdict::Permanent,
    }
}

/// The wait a `Retry-After` value asks for, from `now`: delta seconds or an HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`). `None` when absent or unreadable.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    let mut parts = value.split_ascii_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let at = Timestamp::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z"))?;
    Some(Duration::from_millis(
        (at.millis() - now.millis()).max(0) as u64
    ))
}

/// The jittered exponential back-off before attempt `n + 1`.
pub fn backoff(n: u32, initial: Duration, max: Duration, rng: &mut Rng) -> Duration {
    let d = initial
        .checked_mul(1u32 << n.min(30))
        .unwrap_or(max)
        .min(max);
    let half = d / 2;
    half + Duration::from_nanos(rng.below(half.as_nanos() as u64 + 1))
}

/// A small xorshift generator: jitter needs spread, not secrecy.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `regwatch_webhook_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One receiver's circuit breaker, shared by its lanes.
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    changed: Notify,
}

/// Leave to make one request. Settle it with [`Permit::success`], [`Permit::failure`] or
/// [`Permit::alive`]; a probe dropped unsettled (its task was cancelled) lets another lane
/// probe, so the breaker never stays half-open with nobody probing.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The receiver answered 2xx or a status that shows it is healthy: close the breaker.
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.close();
    }

    /// The receiver answered but asked to wait (429): a probe closes the breaker, anything
    /// else leaves it as it is.
    pub fn alive(self) {
        if self.probe {
            self.success();
        }
    }

    /// A transient failure; returns true when this opened the breaker.
    pub fn failure(mut self) -> bool {
        self.settled = true;
        self.breaker.fail(self.probe)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.release_probe();
        }
    }
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            changed: Notify::new(),
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock is never held across a panic point; recover the state if it was.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            settled: false,
        }
    }

    /// Waits until a request may be made.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.changed.notified();
            let wait = {
                let mut inner = self.lock();
                match *inner {
                    Inner::Closed { .. } => return self.permit(false),
                    Inner::Open { until } => {
                        let now = Instant::now();
                        if now >= until {
                            *inner = Inner::HalfOpen { probing: true };
                            return self.permit(true);
                        }
                        Some(until - now)
                    }
                    Inner::HalfOpen { probing: false } => {
                        *inner = Inner::HalfOpen { probing: true };
                        return self.permit(true);
                    }
                    Inner::HalfOpen { probing: true } => None,
                }
            };
            match wait {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn close(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
        self.changed.notify_waiters();
    }

    fn fail(&self, probe: bool) -> bool {
        let mut inner = self.lock();
        let open = match &*inner {
            _ if probe => true,
            Inner::HalfOpen { .. } => true,
            Inner::Closed { failures } => failures + 1 >= self.threshold,
            Inner::Open { .. } => false,
        };
        if open {
            *inner = Inner::Open {
                until: Instant::now() + self.cooldown,
            };
        } else if let Inner::Closed { failures } = &mut *inner {
            *failures += 1;
        }
        drop(inner);
        self.changed.notify_waiters();
        open
    }

    fn release_probe(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probing } = &mut *inner {
            *probing = false;
        }
        drop(inner);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(judge(200), Verdict::Delivered);
        assert_eq!(judge(204), Verdict::Delivered);
        assert_eq!(judge(503), Verdict::Retry(Cause::Status5xx));
        assert_eq!(judge(408), Verdict::Retry(Cause::Status5xx));
        assert_eq!(judge(429), Verdict::Retry(Cause::Throttled));
        assert_eq!(judge(400), Verdict::Permanent);
        assert_eq!(judge(404), Verdict::Permanent);
        assert_eq!(judge(301), Verdict::Permanent);
    }

    #[test]
    fn retry_after_forms() {
        let now = Timestamp::parse_rfc3339("1994-11-06T08:49:30Z").unwrap();
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut rng = Rng::seeded(42);
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..40 {
            let d = backoff(n, i, m, &mut rng);
            let full = (i * 2u32.pow(n.min(20))).min(m);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {n}: {d:?} within [{:?}, {full:?}]",
                full / 2
            );
            seen.insert(d);
        }
        assert!(seen.len() > 30, "jittered: {} distinct waits", seen.len());
    }

    #[tokio::test]
    async fn breaker_opens_probes_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(100));
        for i in 0..3 {
            let p = b.acquire().await;
            assert!(!p.is_probe());
            assert_eq!(p.failure(), i == 2, "opens at the third failure");
        }
        assert_eq!(b.state(), BreakerState::Open);
        let t = Instant::now();
        let p = b.acquire().await;
        assert!(p.is_probe());
        assert!(
            t.elapsed() >= Duration::from_millis(90),
            "waited out the cooldown"
        );
        // While the probe is out, nobody else gets a request in.
        let other = tokio::time::timeout(Duration::from_millis(50), b.acquire()).await;
        assert!(other.is_err(), "half-open admits one probe");
        // A failed probe opens again; the next probe comes after another cooldown.
        assert!(p.failure());
        assert_eq!(b.state(), BreakerState::Open);
        let p = b.acquire().await;
        assert!(p.is_probe());
        // A 429 to a probe says the receiver is alive: closed.
        p.alive();
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.acquire().await;
        assert!(!p.is_probe());
        p.alive();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a 429 changes nothing otherwise"
        );
    }

    #[tokio::test]
    async fn a_cancelled_probe_lets_another_lane_probe() {
        let b = Breaker::new(1, Duration::from_millis(10));
        assert!(b.acquire().await.failure());
        let probe = b.acquire().await;
        assert!(probe.is_probe());
        drop(probe); // the lane was cancelled mid-request
        let next = tokio::time::timeout(Duration::from_millis(500), b.acquire())
            .await
            .expect("not stuck half-open");
        assert!(next.is_probe());
        next.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
