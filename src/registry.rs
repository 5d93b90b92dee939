//! The participant registry: who may report, what kind of institution each one is.
//!
//! Built once from the configuration and never changed while the engine runs, so lookups are
//! plain reads and a participant is addressed everywhere else by its dense [`ParticipantIdx`].
//! Invariant: ids are unique, 1..=64 characters.

use std::collections::HashMap;

use serde::Deserialize;

/// The institution types of the sandbox (CONTRACT.md section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantKind {
    Exchange,
    FuturesExchange,
    Clearing,
    Broker,
    FuturesBroker,
    FundManager,
    ServiceProvider,
}

impl ParticipantKind {
    pub const ALL: [ParticipantKind; 7] = [
        ParticipantKind::Exchange,
        ParticipantKind::FuturesExchange,
        ParticipantKind::Clearing,
        ParticipantKind::Broker,
        ParticipantKind::FuturesBroker,
        ParticipantKind::FundManager,
        ParticipantKind::ServiceProvider,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Exchange => "exchange",
            ParticipantKind::FuturesExchange => "futures_exchange",
            ParticipantKind::Clearing => "clearing",
            ParticipantKind::Broker => "broker",
            ParticipantKind::FuturesBroker => "futures_broker",
            ParticipantKind::FundManager => "fund_manager",
            ParticipantKind::ServiceProvider => "service_provider",
        }
    }

    pub fn parse(s: &str) -> Option<ParticipantKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The market calendar of a participant of this kind unless the registry names one
    /// (CONTRACT.md section 2): futures exchanges and futures brokers trade on `cn-futures`,
    /// everyone else on `cn-stock`.
    pub fn default_calendar(self) -> &'static str {
        match self {
            ParticipantKind::FuturesExchange | ParticipantKind::FuturesBroker => "cn-futures",
            _ => "cn-stock",
        }
    }
}

impl crate::decode::Word for ParticipantKind {
    fn all() -> &'static [ParticipantKind] {
        &Self::ALL
    }
    fn as_str(self) -> &'static str {
        ParticipantKind::as_str(self)
    }
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Dense index of a participant in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantIdx(pub u32);

impl ParticipantIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    pub id: Box<str>,
    pub name: Box<str>,
    pub kind: ParticipantKind,
    pub effective_customers: u64,
    /// The name of the participant's market calendar (`trading_minutes`).
    pub calendar: Box<str>,
    /// The topics this participant alone may write (CONTRACT.md section 1, v1.1): when set,
    /// its events are accepted only from them, and they carry only its events. Empty: not
    /// bound (it may write the shared topics).
    pub topics: Vec<Box<str>>,
}

#[derive(Clone, Debug, Default)]
pub struct Registry {
    participants: Vec<Participant>,
    by_id: HashMap<Box<[u8]>, ParticipantIdx, foldhash::fast::RandomState>,
    /// Bound topics and their owners.
    owners: HashMap<Box<str>, ParticipantIdx, foldhash::fast::RandomState>,
}

impl Registry {
    /// Builds the registry; the error names the offending entry.
    pub fn new(participants: Vec<Participant>) -> Result<Registry, String> {
        let mut by_id = HashMap::with_capacity_and_hasher(participants.len(), Default::default());
        for (i, p) in participants.iter().enumerate() {
            let n = p.id.chars().count();
            if n == 0 || n > 64 {
                return Err(format!(
                    "participants[{i}].id: must be 1..=64 characters, got {n}"
                ));
            }
            let idx = ParticipantIdx(u32::try_from(i).map_err(|_| "too many participants")?);
            if by_id.insert(p.id.as_bytes().into(), idx).is_some() {
                return Err(format!("participants[{i}].id: duplicate id {:?}", p.id));
            }
        }
        let mut owners: HashMap<Box<str>, ParticipantIdx, foldhash::fast::RandomState> =
            HashMap::default();
        for (i, p) in participants.iter().enumerate() {
            for t in &p.topics {
                if let Some(other) = owners.insert(t.clone(), ParticipantIdx(i as u32)) {
                    if other.get() != i {
                        return Err(format!(
                            "participants[{i}].topics: topic {t:?} is already bound to participant {:?}",
                            participants[other.get()].id
                        ));
                    }
                }
            }
        }
        Ok(Registry {
            participants,
            by_id,
            owners,
        })
    }

    /// The participant a topic is bound to, if any.
    pub fn owner_of(&self, topic: &str) -> Option<ParticipantIdx> {
        self.owners.get(topic).copied()
    }

    /// Whether an event of `p` may come from a topic whose owner is `owner` (see
    /// [`Registry::owner_of`]): a bound participant speaks only on its own topics, and a
    /// bound topic only for its owner.
    pub fn may_speak(&self, owner: Option<ParticipantIdx>, p: ParticipantIdx) -> bool {
        let bound = !self.participants[p.get()].topics.is_empty();
        owner == bound.then_some(p)
    }

    /// Every bound topic, in registry order.
    pub fn bound_topics(&self) -> impl Iterator<Item = &str> {
        self.participants
            .iter()
            .flat_map(|p| p.topics.iter().map(|t| &**t))
    }

    pub fn lookup(&self, id: &str) -> Option<ParticipantIdx> {
        self.lookup_bytes(id.as_bytes())
    }

    /// Looks an id up by its raw bytes (a registered id is valid UTF-8 by construction).
    pub fn lookup_bytes(&self, id: &[u8]) -> Option<ParticipantIdx> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, idx: ParticipantIdx) -> &Participant {
        &self.participants[idx.get()]
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ParticipantIdx, &Participant)> {
        self.participants
            .iter()
            .enumerate()
            .map(|(i, p)| (ParticipantIdx(i as u32), p))
    }
}
