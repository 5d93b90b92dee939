//! Bytes -> [`Event`]: one pass of the JSON reader (`json.rs`) over the message, borrowing
//! strings from it.
//!
//! Every value is first read as a permissive [`Value`] (so a value of the wrong type is a
//! clean `WrongType(field)`), then checked against the field's rules. Unknown keys are skipped
//! without being materialised. The only allocation on this path is a string that the JSON
//! escaped (`Cow::Owned`), which participants rarely send.
//!
//! Precedence of reasons: malformed JSON, then a missing or unknown `schema` (nothing else in a
//! foreign schema is meaningful), then the first field that failed, in message order, then
//! missing required fields, then the registry, then the kind-specific checks.

use std::borrow::Cow;

use super::event::{
    Category, Event, EventKind, Figure, Figures, IncidentReport, RecordType, Scope, Status, System,
};
use super::json::{Malformed, Reader, Text, Value};
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
    let raw = read_object(bytes).map_err(|(_, not_object)| {
        if not_object {
            Reject::NotObject
        } else {
            Reject::NotJson
        }
    })?;
    raw.finish(registry)
}

/// Reads the top-level object. The error tells whether the input was valid JSON that is not
/// an object (`true`) or not JSON at all.
fn read_object(bytes: &[u8]) -> Result<Raw<'_>, (Malformed, bool)> {
    let mut r = Reader::new(bytes).map_err(|m| (m, false))?;
    if !r.eat(b'{') {
        let valid = r.skip_value(0).is_ok() && r.at_end();
        return Err((Malformed, valid));
    }
    let mut raw = Raw::default();
    if r.eat(b'}') {
        return if r.at_end() {
            Ok(raw)
        } else {
            Err((Malformed, false))
        };
    }
    let syntax = |m| (m, false);
    loop {
        r.skip_ws();
        let key = r.string().map_err(syntax)?;
        r.expect(b':').map_err(syntax)?;
        match field_of(key.as_bytes()) {
            Some(field) if raw.first_reject.is_none() || field == Field::Schema => {
                let value = r.value(1).map_err(syntax)?;
                match raw.accept(field, value) {
                    Ok(()) => {}
                    // A kept string that is not UTF-8: the message is not JSON.
                    Err(Reject::NotJson) => return Err((Malformed, false)),
                    Err(reject) if field == Field::Schema => raw.schema_reject = Some(reject),
                    Err(reject) => {
                        raw.first_reject.get_or_insert(reject);
                    }
                }
            }
            _ => r.skip_value(1).map_err(syntax)?,
        }
        if r.eat(b',') {
            continue;
        }
        r.expect(b'}').map_err(syntax)?;
        break;
    }
    if r.at_end() {
        Ok(raw)
    } else {
        Err((Malformed, false))
    }
}

fn field_of(key: &[u8]) -> Option<Field> {
    Some(match key {
        b"schema" => Field::Schema,
        b"event_id" => Field::EventId,
        b"participant_id" => Field::ParticipantId,
        b"kind" => Field::Kind,
        b"occurred_at" => Field::OccurredAt,
        b"incident_id" => Field::IncidentId,
        b"status" => Field::Status,
        b"category" => Field::Category,
        b"system" => Field::System,
        b"scope" => Field::Scope,
        b"started_at" => Field::StartedAt,
        b"record_type" => Field::RecordType,
        b"instrument" => Field::Instrument,
        b"venue" => Field::Venue,
        other => Field::Figure(Figure::parse_bytes(other)?),
    })
}

/// Checks the Kafka message key against the payload: one participant must not be able to
/// report as another. A message without a key is refused too (the contract requires it).
pub fn check_key(key: Option<&[u8]>, participant_id: &str) -> Result<(), Reject> {
    match key {
        Some(k) if k == participant_id.as_bytes() => Ok(()),
        _ => Err(Reject::KeyMismatch),
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
    /// A `schema` member that was there but unusable (it outranks every other problem).
    schema_reject: Option<Reject>,
    schema: SchemaSeen,
    event_id: Option<Cow<'a, str>>,
    participant_id: Option<Text<'a>>,
    kind: Option<EventKind>,
    occurred_at: Option<Timestamp>,
    incident_id: Option<Cow<'a, str>>,
    status: Option<Status>,
    category: Option<Text<'a>>,
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
    fn accept(&mut self, field: Field, value: Value<'a>) -> Result<(), Reject> {
        let bit = field_bit(field);
        if self.seen & bit != 0 {
            return Err(Reject::DuplicateField(field));
        }
        self.seen |= bit;
        if matches!(value, Value::Null) {
            // `null` reads as absent: optional fields take their default, required ones are
            // reported missing.
            return Ok(());
        }
        match field {
            Field::Schema => {
                let t = text(field, value)?;
                self.schema = if t.as_bytes() == SCHEMA_V1.as_bytes() {
                    SchemaSeen::V1
                } else {
                    SchemaSeen::Other
                };
            }
            Field::EventId => self.event_id = Some(bounded(field, value, 128)?),
            Field::ParticipantId => self.participant_id = Some(participant(value)?),
            Field::IncidentId => self.incident_id = Some(bounded(field, value, 128)?),
            Field::Kind => self.kind = Some(word(field, value, EventKind::parse_bytes)?),
            Field::Status => self.status = Some(word(field, value, Status::parse_bytes)?),
            Field::System => self.system = Some(word(field, value, System::parse_bytes)?),
            Field::Scope => self.scope = Some(word(field, value, Scope::parse_bytes)?),
            Field::RecordType => {
                self.record_type = Some(word(field, value, RecordType::parse_bytes)?)
            }
            Field::Category => self.category = Some(text(field, value)?),
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
                return Err(self
                    .schema_reject
                    .unwrap_or(Reject::MissingField(Field::Schema)));
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
            .lookup_bytes(participant_id.as_bytes())
            .ok_or(Reject::UnregisteredParticipant)?;
        let incident = if kind == EventKind::Heartbeat {
            None
        } else {
            let incident_id = self
                .incident_id
                .ok_or(Reject::MissingField(Field::IncidentId))?;
            let category = self.category.ok_or(Reject::MissingField(Field::Category))?;
            let category = Category::parse_bytes(category.as_bytes())
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

/// A string value as raw text (not yet checked to be UTF-8).
fn text(field: Field, value: Value<'_>) -> Result<Text<'_>, Reject> {
    match value {
        Value::Str(t) => Ok(t),
        _ => Err(Reject::WrongType(field)),
    }
}

/// A kept string, checked to be UTF-8 (invalid UTF-8 is not JSON).
fn string(field: Field, value: Value<'_>) -> Result<Cow<'_, str>, Reject> {
    text(field, value)?.into_str().map_err(|_| Reject::NotJson)
}

/// A string of 1..=`max` characters.
fn bounded(field: Field, value: Value<'_>, max: usize) -> Result<Cow<'_, str>, Reject> {
    let s = string(field, value)?;
    // Byte length bounds the character count from above, so most ids skip the count.
    let ok = !s.is_empty() && (s.len() <= max || s.chars().count() <= max);
    if ok {
        Ok(s)
    } else {
        Err(Reject::BadValue(field))
    }
}

/// `participant_id`: 1..=64 characters, kept as bytes for the registry lookup (an id that
/// matches a registered one is valid UTF-8 by construction).
fn participant(value: Value<'_>) -> Result<Text<'_>, Reject> {
    let field = Field::ParticipantId;
    let t = text(field, value)?;
    let len = t.as_bytes().len();
    if len == 0 {
        return Err(Reject::BadValue(field));
    }
    if len > 64 {
        let chars = std::str::from_utf8(t.as_bytes())
            .map_err(|_| Reject::NotJson)?
            .chars()
            .count();
        if chars > 64 {
            return Err(Reject::BadValue(field));
        }
    }
    Ok(t)
}

fn word<T>(field: Field, value: Value<'_>, parse: fn(&[u8]) -> Option<T>) -> Result<T, Reject> {
    parse(text(field, value)?.as_bytes()).ok_or(Reject::BadValue(field))
}

/// Event times regwatch accepts: 2000-01-01 up to (not including) 2100-01-01 UTC. A date
/// outside is a broken clock or a typo, and in replay it would drag the engine clock.
pub const EARLIEST_EVENT: Timestamp = Timestamp(946_684_800_000);
pub const LATEST_EVENT: Timestamp = Timestamp(4_102_444_800_000);

fn timestamp(field: Field, value: Value<'_>) -> Result<Timestamp, Reject> {
    Timestamp::parse_rfc3339_bytes(text(field, value)?.as_bytes())
        .filter(|t| (EARLIEST_EVENT..LATEST_EVENT).contains(t))
        .ok_or(Reject::BadTimestamp(field))
}

/// Checks a reported quantity against its contract range.
fn figure(f: Figure, value: Value<'_>) -> Result<f64, Reject> {
    let field = Field::Figure(f);
    let integer = matches!(
        f,
        Figure::AffectedInvestors | Figure::RecordsExposed | Figure::OrdersDelayed | Figure::Orders
    );
    let v = match value {
        Value::Unsigned(u) => u as f64,
        Value::Negative(i) => i as f64,
        // An integral float (`1e6`) is accepted where an integer is asked for.
        Value::Float(x) if integer && x.fract() != 0.0 => return Err(Reject::WrongType(field)),
        Value::Float(x) => x,
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
