//! Why an event was rejected: a closed set of reasons, each with a stable code.
//!
//! A rejection is a value returned to the caller, never a panic. `code()` is the label used in
//! metrics and dead-letter headers (bounded cardinality); `Display` is the sentence a
//! participant reads.

use std::fmt;

use thiserror::Error;

/// The fields of the wire format, for naming the one a rejection is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Schema,
    EventId,
    ParticipantId,
    Kind,
    OccurredAt,
    IncidentId,
    Status,
    Category,
    System,
    Scope,
    StartedAt,
    RecordType,
    Instrument,
    Venue,
    Figure(crate::decode::Figure),
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Schema => "schema",
            Field::EventId => "event_id",
            Field::ParticipantId => "participant_id",
            Field::Kind => "kind",
            Field::OccurredAt => "occurred_at",
            Field::IncidentId => "incident_id",
            Field::Status => "status",
            Field::Category => "category",
            Field::System => "system",
            Field::Scope => "scope",
            Field::StartedAt => "started_at",
            Field::RecordType => "record_type",
            Field::Instrument => "instrument",
            Field::Venue => "venue",
            Field::Figure(f) => f.as_str(),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way an event can be refused. Each variant is one dead-letter reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum Reject {
    #[error("message is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not valid JSON (UTF-8 JSON object expected)")]
    NotJson,
    #[error("the JSON value is not an object")]
    NotObject,
    #[error("unknown schema (expected \"regwatch.event.v1\")")]
    UnknownSchema,
    #[error("missing field `{0}`")]
    MissingField(Field),
    #[error("field `{0}` appears more than once")]
    DuplicateField(Field),
    #[error("wrong type for `{0}`")]
    WrongType(Field),
    #[error("bad value for `{0}`")]
    BadValue(Field),
    #[error("bad timestamp in `{0}` (RFC 3339 with offset expected)")]
    BadTimestamp(Field),
    #[error("participant is not registered")]
    UnregisteredParticipant,
    #[error("message key does not match `participant_id`")]
    KeyMismatch,
    #[error("incident was first reported with another `kind`")]
    KindChanged,
    #[error("open-incident capacity reached for this participant ({0} incidents)")]
    ParticipantCapacity(usize),
    #[error("open-incident capacity of the engine reached ({0} incidents)")]
    EngineCapacity(usize),
    #[error("report of an unknown incident older than the retention of resolved incidents")]
    Stale,
    #[error("the topic may not speak for this participant (bound participants write only their own topics, and a bound topic only carries its owner's events)")]
    TopicMismatch,
    #[error("the participant is already heard on partition {home} (of this events topic or another): its producers use more than one partitioner or key; every event must carry key = participant_id through one partitioner")]
    PartitionConflict { home: i32 },
    #[error("an action record (header regwatch.action) without a valid regwatch.mac: only regwatch's API writes actions")]
    UntrustedAction,
    #[error("an action record (header regwatch.action) that is not a regwatch.action.v1 object")]
    BadAction,
}

impl Reject {
    /// Stable machine-readable reason, used as a metric label and dead-letter header.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::TooLarge { .. } => "too_large",
            Reject::NotJson => "not_json",
            Reject::NotObject => "not_object",
            Reject::UnknownSchema => "unknown_schema",
            Reject::MissingField(_) => "missing_field",
            Reject::DuplicateField(_) => "duplicate_field",
            Reject::WrongType(_) => "wrong_type",
            Reject::BadValue(_) => "bad_value",
            Reject::BadTimestamp(_) => "bad_timestamp",
            Reject::UnregisteredParticipant => "unregistered_participant",
            Reject::KeyMismatch => "key_mismatch",
            Reject::KindChanged => "kind_changed",
            Reject::ParticipantCapacity(_) => "participant_capacity",
            Reject::EngineCapacity(_) => "engine_capacity",
            Reject::Stale => "stale",
            Reject::TopicMismatch => "topic_mismatch",
            Reject::PartitionConflict { .. } => "partition_conflict",
            Reject::UntrustedAction => "untrusted_action",
            Reject::BadAction => "bad_action",
        }
    }

    /// Every code, for pre-registering metric label values.
    pub const CODES: [&'static str; 19] = [
        "too_large",
        "not_json",
        "not_object",
        "unknown_schema",
        "missing_field",
        "duplicate_field",
        "wrong_type",
        "bad_value",
        "bad_timestamp",
        "unregistered_participant",
        "key_mismatch",
        "kind_changed",
        "participant_capacity",
        "engine_capacity",
        "stale",
        "topic_mismatch",
        "partition_conflict",
        "untrusted_action",
        "bad_action",
    ];

    /// The field the rejection is about, if any.
    pub fn field(&self) -> Option<Field> {
        match self {
            Reject::MissingField(f)
            | Reject::DuplicateField(f)
            | Reject::WrongType(f)
            | Reject::BadValue(f)
            | Reject::BadTimestamp(f) => Some(*f),
            Reject::UnregisteredParticipant
            | Reject::KeyMismatch
            | Reject::PartitionConflict { .. } => Some(Field::ParticipantId),
            Reject::KindChanged => Some(Field::Kind),
            Reject::Stale => Some(Field::OccurredAt),
            _ => None,
        }
    }
}
