//! Bytes -> [`Event`]: one pass of serde_json over the message, borrowing strings from it.
//!
//! Every value is first read as a permissive [`Scalar`] (so a value of the wrong type is a
//! clean `WrongType(field)`, not a serde error string), then checked against the field's
//! rules. Unknown keys are skipped without being materialised. The only allocation on this
//! path is a string that the JSON escaped (`Cow::Owned`), which participants rarely send.
//!
//! Precedence of reasons: malformed JSON, then a missing or unknown `schema` (nothing else in a
//! foreign schema is meaningful), then the first field that failed, in message order, then
//! missing required fields, then the registry, then the kind-specific checks.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::event::{
    Category, Event, EventKind, Figure, Figures, IncidentReport, RecordType, Scope, Status, System,
};
use super::reject::{Field, Reject};
use crate::registry::Registry;
use crate::time::Timestamp;

pub const SCHEMA_V1: &str = "regwatch.event.v1";

/// The contract's size limit for one message.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Decodes and validates one message value against the registry.
pub fn decode<'a>(
    bytes: &'a [u8],
    registry: &Registry,
    max_bytes: usize,
) -> Result<Event<'a>, Reject> {
    if bytes.len() > max_bytes {
        return Err(Reject::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = match de.deserialize_map(RawVisitor) {
        Ok(raw) => raw,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(Reject::NotObject)
        }
        Err(_) => return Err(Reject::NotJson),
    };
    de.end().map_err(|_| Reject::NotJson)?;
    raw.finish(registry)
}

/// Checks the Kafka message key against the payload: one participant must not be able to
/// report as another. A message without a key is refused too (the contract requires it).
pub fn check_key(key: Option<&[u8]>, participant_id: &str) -> Result<(), Reject> {
    match key {
        Some(k) if k == participant_id.as_bytes() => Ok(()),
        _ => Err(Reject::KeyMismatch),
    }
}

/// Any JSON value, read without judging its type.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Unsigned(u64),
    Negative(i64),
    Float(f64),
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Unsigned(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            Scalar::Unsigned(v as u64)
        } else {
            Scalar::Negative(v)
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// An object key: one of ours, or one to skip.
enum Key {
    Known(Field),
    Unknown,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "schema" => Key::Known(Field::Schema),
            "event_id" => Key::Known(Field::EventId),
            "participant_id" => Key::Known(Field::ParticipantId),
            "kind" => Key::Known(Field::Kind),
            "occurred_at" => Key::Known(Field::OccurredAt),
            "incident_id" => Key::Known(Field::IncidentId),
            "status" => Key::Known(Field::Status),
            "category" => Key::Known(Field::Category),
            "system" => Key::Known(Field::System),
            "scope" => Key::Known(Field::Scope),
            "started_at" => Key::Known(Field::StartedAt),
            "record_type" => Key::Known(Field::RecordType),
            "instrument" => Key::Known(Field::Instrument),
            "venue" => Key::Known(Field::Venue),
            other => match Figure::parse(other) {
                Some(f) => Key::Known(Field::Figure(f)),
                None => Key::Unknown,
            },
        })
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut raw = Raw::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Known(field) if raw.first_reject.is_none() || field == Field::Schema => {
                    let value = map.next_value::<Scalar<'de>>()?;
                    if let Err(r) = raw.accept(field, value) {
                        raw.first_reject.get_or_insert(r);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

#[derive(Clone, Copy, Default, PartialEq)]
enum SchemaSeen {
    #[default]
    Missing,
    V1,
    Other,
}

/// Fields as they arrive, before the cross-field checks.
#[derive(Default)]
struct Raw<'a> {
    seen: u64,
    first_reject: Option<Reject>,
    schema: SchemaSeen,
    event_id: Option<Cow<'a, str>>,
    participant_id: Option<Cow<'a, str>>,
    kind: Option<EventKind>,
    occurred_at: Option<Timestamp>,
    incident_id: Option<Cow<'a, str>>,
    status: Option<Status>,
    category: Option<Cow<'a, str>>,
    system: Option<System>,
    scope: Option<Scope>,
    started_at: Option<Timestamp>,
    record_type: Option<RecordType>,
    instrument: Option<Cow<'a, str>>,
    venue: Option<Cow<'a, str>>,
    figures: Figures,
}

/// One bit per field, for duplicate detection.
fn field_bit(field: Field) -> u64 {
    let i = match field {
        Field::Schema => 0,
        Field::EventId => 1,
        Field::ParticipantId => 2,
        Field::Kind => 3,
        Field::OccurredAt => 4,
        Field::IncidentId => 5,
        Field::Status => 6,
        Field::Category => 7,
        Field::System => 8,
        Field::Scope => 9,
        Field::StartedAt => 10,
        Field::RecordType => 11,
        Field::Instrument => 12,
        Field::Venue => 13,
        Field::Figure(f) => 32 + f.index(),
    };
    1u64 << i
}

impl<'a> Raw<'a> {
    fn accept(&mut self, field: Field, value: Scalar<'a>) -> Result<(), Reject> {
        let bit = field_bit(field);
        if self.seen & bit != 0 {
            return Err(Reject::DuplicateField(field));
        }
        self.seen |= bit;
        if matches!(value, Scalar::Null) {
            // `null` reads as absent: optional fields take their default, required ones are
            // reported missing.
            return Ok(());
        }
        match field {
            Field::Schema => {
                let s = string(field, value)?;
                self.schema = if s == SCHEMA_V1 {
                    SchemaSeen::V1
                } else {
                    SchemaSeen::Other
                };
            }
            Field::EventId => self.event_id = Some(bounded(field, value, 128)?),
            Field::ParticipantId => self.participant_id = Some(bounded(field, value, 64)?),
            Field::IncidentId => self.incident_id = Some(bounded(field, value, 128)?),
            Field::Kind => self.kind = Some(word(field, value, EventKind::parse)?),
            Field::Status => self.status = Some(word(field, value, Status::parse)?),
            Field::System => self.system = Some(word(field, value, System::parse)?),
            Field::Scope => self.scope = Some(word(field, value, Scope::parse)?),
            Field::RecordType => self.record_type = Some(word(field, value, RecordType::parse)?),
            Field::Category => self.category = Some(string(field, value)?),
            Field::OccurredAt => self.occurred_at = Some(timestamp(field, value)?),
            Field::StartedAt => self.started_at = Some(timestamp(field, value)?),
            Field::Instrument => self.instrument = Some(string(field, value)?),
            Field::Venue => self.venue = Some(string(field, value)?),
            Field::Figure(f) => self.figures.set(f, figure(f, value)?),
        }
        Ok(())
    }

    fn finish(self, registry: &Registry) -> Result<Event<'a>, Reject> {
        match self.schema {
            SchemaSeen::Missing => {
                let schema_reject = self
                    .first_reject
                    .filter(|r| r.field() == Some(Field::Schema));
                return Err(schema_reject.unwrap_or(Reject::MissingField(Field::Schema)));
            }
            SchemaSeen::Other => return Err(Reject::UnknownSchema),
            SchemaSeen::V1 => {}
        }
        if let Some(r) = self.first_reject {
            return Err(r);
        }
        let event_id = self.event_id.ok_or(Reject::MissingField(Field::EventId))?;
        let participant_id = self
            .participant_id
            .ok_or(Reject::MissingField(Field::ParticipantId))?;
        let kind = self.kind.ok_or(Reject::MissingField(Field::Kind))?;
        let occurred_at = self
            .occurred_at
            .ok_or(Reject::MissingField(Field::OccurredAt))?;
        let participant = registry
            .lookup(&participant_id)
            .ok_or(Reject::UnregisteredParticipant)?;
        let incident = if kind == EventKind::Heartbeat {
            None
        } else {
            let incident_id = self
                .incident_id
                .ok_or(Reject::MissingField(Field::IncidentId))?;
            let category = self.category.ok_or(Reject::MissingField(Field::Category))?;
            let category = Category::parse(&category)
                .filter(|c| c.belongs_to(kind))
                .ok_or(Reject::BadValue(Field::Category))?;
            Some(IncidentReport {
                incident_id,
                status: self.status.unwrap_or(Status::Open),
                category,
                system: self.system,
                scope: self.scope,
                record_type: self.record_type,
                started_at: self.started_at,
                instrument: self.instrument,
                venue: self.venue,
                figures: self.figures,
            })
        };
        Ok(Event {
            event_id,
            participant,
            kind,
            occurred_at,
            incident,
        })
    }
}

fn string(field: Field, value: Scalar<'_>) -> Result<Cow<'_, str>, Reject> {
    match value {
        Scalar::Str(s) => Ok(s),
        _ => Err(Reject::WrongType(field)),
    }
}

/// A string of 1..=`max` characters.
fn bounded(field: Field, value: Scalar<'_>, max: usize) -> Result<Cow<'_, str>, Reject> {
    let s = string(field, value)?;
    // Byte length bounds the character count from above, so most ids skip the count.
    let ok = !s.is_empty() && (s.len() <= max || s.chars().count() <= max);
    if ok {
        Ok(s)
    } else {
        Err(Reject::BadValue(field))
    }
}

fn word<T>(field: Field, value: Scalar<'_>, parse: fn(&str) -> Option<T>) -> Result<T, Reject> {
    parse(&string(field, value)?).ok_or(Reject::BadValue(field))
}

fn timestamp(field: Field, value: Scalar<'_>) -> Result<Timestamp, Reject> {
    Timestamp::parse_rfc3339(&string(field, value)?).ok_or(Reject::BadTimestamp(field))
}

/// Checks a reported quantity against its contract range.
fn figure(f: Figure, value: Scalar<'_>) -> Result<f64, Reject> {
    let field = Field::Figure(f);
    let integer = matches!(
        f,
        Figure::AffectedInvestors | Figure::RecordsExposed | Figure::OrdersDelayed | Figure::Orders
    );
    let v = match value {
        Scalar::Unsigned(u) => u as f64,
        Scalar::Negative(i) => i as f64,
        // An integral float (`1e6`) is accepted where an integer is asked for.
        Scalar::Float(x) if integer && x.fract() != 0.0 => return Err(Reject::WrongType(field)),
        Scalar::Float(x) => x,
        _ => return Err(Reject::WrongType(field)),
    };
    let in_range = match f {
        Figure::PriceMovePct | Figure::IndexMovePct => v.is_finite(),
        Figure::AffectedUnitsPct => (0.0..=100.0).contains(&v),
        Figure::CancelRatio | Figure::VolumeShare => (0.0..=1.0).contains(&v),
        _ => v >= 0.0 && v.is_finite(),
    };
    if in_range {
        Ok(v)
    } else {
        Err(Reject::BadValue(field))
    }
}
