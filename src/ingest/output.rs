//! Everything a partition worker writes: alerts, dead letters and state records, through one
//! idempotent producer, each record numbered so the worker knows when all that an event (or
//! a state flush) caused is durably acknowledged.
//!
//! A failed delivery (the producer gives the message back) is produced again, with the same
//! sequence number: nothing the engine emitted is dropped, and nothing later is treated as
//! acknowledged before it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::Message;

/// Which stream a record belongs to (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Alerts,
    DeadLetters,
    State,
    History,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Alerts => "alerts",
            Stream::DeadLetters => "dead_letters",
            Stream::State => "state",
            Stream::History => "history",
        }
    }
}

/// A record to produce.
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: &'a [u8],
    /// `None` writes a tombstone.
    pub payload: Option<&'a [u8]>,
    pub headers: OwnedHeaders,
}

/// A record kept to be produced again after a failure.
#[derive(Clone)]
pub struct OwnedRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
}

impl OwnedRecord {
    pub fn of(r: &Record<'_>) -> OwnedRecord {
        OwnedRecord {
            topic: r.topic.to_string(),
            partition: r.partition,
            key: r.key.to_vec(),
            payload: r.payload.map(<[u8]>::to_vec),
            headers: r.headers.clone(),
        }
    }

    /// The message a failed delivery handed back.
    pub fn from_message(m: &OwnedMessage) -> OwnedRecord {
        OwnedRecord {
            topic: m.topic().to_string(),
            partition: Some(m.partition()),
            key: m.key().unwrap_or_default().to_vec(),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: copy_headers(m),
        }
    }

    pub fn as_record(&self) -> Record<'_> {
        Record {
            topic: &self.topic,
            partition: self.partition,
            key: &self.key,
            payload: self.payload.as_deref(),
            headers: self.headers.clone(),
        }
    }
}

/// Enqueues `record`, waiting while librdkafka's queue is full (back-pressure).
pub async fn send<C: rdkafka::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    record: &Record<'_>,
) -> Result<DeliveryFuture, KafkaError> {
    let mut r = FutureRecord::<[u8], [u8]>::to(record.topic)
        .key(record.key)
        .headers(record.headers.clone());
    if let Some(p) = record.payload {
        r = r.payload(p);
    }
    if let Some(p) = record.partition {
        r = r.partition(p);
    }
    loop {
        match producer.send_result(r) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                r = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A copy of a message's headers, to pass them on.
pub fn copy_headers<M: Message>(m: &M) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    headers
}

/// A delivery in flight, tagged with its sequence number and stream.
pub struct Tagged {
    pub seq: u64,
    pub stream: Stream,
    pub future: DeliveryFuture,
    /// When the record was handed to the producer (the hand-off latency starts here).
    pub sent: std::time::Instant,
}

/// What became of a delivery: acknowledged, or the message to produce again.
pub enum Delivered {
    Acked,
    Failed(KafkaError, Box<OwnedMessage>),
    /// The producer is gone (shutdown); the record's fate is unknown.
    Lost,
}

impl Future for Tagged {
    type Output = (u64, Stream, Delivered, std::time::Instant);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (seq, stream, sent) = (self.seq, self.stream, self.sent);
        Pin::new(&mut self.future).poll(cx).map(|r| {
            let d = match r {
                Ok(Ok(_)) => Delivered::Acked,
                Ok(Err((e, m))) => Delivered::Failed(e, Box::new(m)),
                Err(_) => Delivered::Lost,
            };
            (seq, stream, d, sent)
        })
    }
}

/// A record to produce again, with its sequence number.
pub struct Retry {
    pub seq: u64,
    pub stream: Stream,
    pub record: OwnedRecord,
    pub not_before: std::time::Instant,
}

/// Records waiting to be produced again, in sequence order. While any waits, every later
/// record waits behind it ([`Resend::hold`]), and they go out strictly in order: a record
/// produced again after a failed delivery is handed to the producer before any record
/// numbered after it, so it never lands after a later record of the same key.
#[derive(Default)]
pub struct Resend(std::collections::BTreeMap<u64, Retry>);

impl Resend {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Queues `r` (a failed record, or a later one held behind a failed one).
    pub fn hold(&mut self, r: Retry) {
        self.0.insert(r.seq, r);
    }

    /// The first record in sequence order, if it is due at `now`; later ones wait for it.
    pub fn next_due(&mut self, now: std::time::Instant) -> Option<Retry> {
        let first = self.0.first_entry()?;
        (first.get().not_before <= now).then(|| first.remove())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn retry(seq: u64, not_before: Instant) -> Retry {
        Retry {
            seq,
            stream: Stream::Alerts,
            record: OwnedRecord {
                topic: "t".into(),
                partition: None,
                key: b"P".to_vec(),
                payload: Some(seq.to_string().into_bytes()),
                headers: OwnedHeaders::new(),
            },
            not_before,
        }
    }

    #[test]
    fn records_go_out_again_in_sequence_order_and_later_ones_wait() {
        let t0 = Instant::now();
        let mut q = Resend::default();
        assert!(q.next_due(t0).is_none());
        // 7 failed and backs off; 9 and 8 were produced after it and are held behind it.
        q.hold(retry(7, t0 + Duration::from_millis(250)));
        q.hold(retry(9, t0));
        q.hold(retry(8, t0));
        assert!(
            q.next_due(t0).is_none(),
            "nothing overtakes the failed record"
        );
        let later = t0 + Duration::from_millis(300);
        let order: Vec<u64> = std::iter::from_fn(|| q.next_due(later).map(|r| r.seq)).collect();
        assert_eq!(order, [7, 8, 9]);
        assert!(q.is_empty());
    }
}
