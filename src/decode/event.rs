//! The decoded event (`regwatch.event.v1`, CONTRACT.md section 1) and its closed vocabularies.
//!
//! An [`Event`] borrows its strings from the message bytes; the enums below are the only
//! values the wire format admits, each with the exact spelling participants send.

use std::borrow::Cow;

use crate::registry::ParticipantIdx;
use crate::time::Timestamp;

/// A value of a closed vocabulary with one exact spelling each (rules files use these too).
pub trait Word: Copy + 'static {
    fn all() -> &'static [Self];
    fn as_str(self) -> &'static str;
    /// Bit for this value in a filter mask.
    fn bit(self) -> u32;
    fn parse(s: &str) -> Option<Self> {
        Self::all().iter().copied().find(|w| w.as_str() == s)
    }
}

/// Declares a closed wire vocabulary: an enum, its `ALL` list and its exact spellings.
macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::parse_bytes(s.as_bytes())
            }

            /// Parses the exact spelling from raw bytes (no UTF-8 check needed: the
            /// spellings are ASCII).
            pub fn parse_bytes(b: &[u8]) -> Option<$name> {
                $(if b == $text.as_bytes() { return Some($name::$variant); })+
                None
            }

            /// Bit for this value in a filter mask.
            pub fn bit(self) -> u32 {
                1 << (self as u32)
            }
        }

        impl Word for $name {
            fn all() -> &'static [$name] {
                Self::ALL
            }
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
            fn bit(self) -> u32 {
                $name::bit(self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// Event family.
    EventKind { Infosec = "infosec", Trading = "trading", Heartbeat = "heartbeat" }
);

vocabulary!(
    /// Incident lifecycle as reported.
    Status { Open = "open", Update = "update", Resolved = "resolved" }
);

vocabulary!(
    /// Incident category; which values are allowed depends on the [`EventKind`].
    Category {
        Outage = "outage",
        Degradation = "degradation",
        DataLeak = "data_leak",
        DataCorruption = "data_corruption",
        Intrusion = "intrusion",
        Ddos = "ddos",
        Malware = "malware",
        AccountTakeover = "account_takeover",
        SettlementError = "settlement_error",
        ErroneousOrder = "erroneous_order",
        RunawayAlgo = "runaway_algo",
        Spoofing = "spoofing",
        Layering = "layering",
        WashTrade = "wash_trade",
        MarkingClose = "marking_close",
        PricePush = "price_push",
        OrderRate = "order_rate",
        Other = "other",
    }
);

impl Category {
    /// Whether `self` is a category of events of `kind`.
    pub fn belongs_to(self, kind: EventKind) -> bool {
        use Category::*;
        match kind {
            EventKind::Infosec => matches!(
                self,
                Outage
                    | Degradation
                    | DataLeak
                    | DataCorruption
                    | Intrusion
                    | Ddos
                    | Malware
                    | AccountTakeover
                    | SettlementError
                    | Other
            ),
            EventKind::Trading => matches!(
                self,
                ErroneousOrder
                    | RunawayAlgo
                    | Spoofing
                    | Layering
                    | WashTrade
                    | MarkingClose
                    | PricePush
                    | OrderRate
                    | Other
            ),
            EventKind::Heartbeat => false,
        }
    }

    /// A service-capability incident: its duration is graded.
    pub fn is_service(self) -> bool {
        matches!(self, Category::Outage | Category::Degradation)
    }
}

vocabulary!(
    /// Affected system of an infosec incident.
    System {
        Trading = "trading",
        MarketData = "market_data",
        Clearing = "clearing",
        Custody = "custody",
        Margin = "margin",
        Other = "other",
    }
);

vocabulary!(
    /// How much of a service is affected.
    Scope { Full = "full", Partial = "partial" }
);

vocabulary!(
    /// What kind of investor records were exposed.
    RecordType {
        Credentials = "credentials",
        Transactions = "transactions",
        Personal = "personal",
        Other = "other",
    }
);

vocabulary!(
    /// The quantities an event can report. All are cumulative for the incident so far; the
    /// engine keeps the largest value (for the signed moves: the largest magnitude).
    Figure {
        AffectedUnitsPct = "affected_units_pct",
        AffectedInvestors = "affected_investors",
        RecordsExposed = "records_exposed",
        LossCny = "loss_cny",
        OrdersDelayed = "orders_delayed",
        Orders = "orders",
        PeakOrdersPerSec = "peak_orders_per_sec",
        CancelRatio = "cancel_ratio",
        OrderNotionalCny = "order_notional_cny",
        ExecutedNotionalCny = "executed_notional_cny",
        CancelledNotionalCny = "cancelled_notional_cny",
        PriceMovePct = "price_move_pct",
        IndexMovePct = "index_move_pct",
        VolumeShare = "volume_share",
    }
);

pub const FIGURE_COUNT: usize = 14;

impl Figure {
    pub fn index(self) -> usize {
        self as usize
    }

    /// Signed figures merge by largest magnitude; the others by largest value.
    pub fn is_signed(self) -> bool {
        matches!(self, Figure::PriceMovePct | Figure::IndexMovePct)
    }
}

/// A fixed set of reported quantities: no allocation, `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    values: [f64; FIGURE_COUNT],
    present: u32,
}

impl Figures {
    pub fn get(&self, f: Figure) -> Option<f64> {
        self.has(f).then(|| self.values[f.index()])
    }

    /// The value, or 0 when never reported.
    pub fn value(&self, f: Figure) -> f64 {
        self.values[f.index()]
    }

    pub fn has(&self, f: Figure) -> bool {
        self.present & f.bit() != 0
    }

    pub fn set(&mut self, f: Figure, v: f64) {
        self.values[f.index()] = v;
        self.present |= f.bit();
    }

    /// Cumulative merge; returns whether any figure grew.
    pub fn merge_max(&mut self, other: &Figures) -> bool {
        let mut grew = false;
        for &f in Figure::ALL {
            if !other.has(f) {
                continue;
            }
            let new = other.values[f.index()];
            let old = self.values[f.index()];
            let bigger = if f.is_signed() {
                new.abs() > old.abs()
            } else {
                new > old
            };
            if !self.has(f) || bigger {
                grew |= !self.has(f) || new != old;
                self.set(f, new);
            }
        }
        grew
    }

    pub fn iter(&self) -> impl Iterator<Item = (Figure, f64)> + '_ {
        Figure::ALL
            .iter()
            .filter(|f| self.has(**f))
            .map(|f| (*f, self.values[f.index()]))
    }
}

/// One decoded, validated event. Strings borrow from the message bytes unless the JSON
/// escaped them.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub participant: ParticipantIdx,
    pub kind: EventKind,
    pub occurred_at: Timestamp,
    /// Present for `infosec` and `trading`, absent for `heartbeat`.
    pub incident: Option<IncidentReport<'a>>,
}

/// The incident part of an `infosec` or `trading` event.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentReport<'a> {
    pub incident_id: Cow<'a, str>,
    pub status: Status,
    pub category: Category,
    pub system: Option<System>,
    pub scope: Option<Scope>,
    pub record_type: Option<RecordType>,
    pub started_at: Option<Timestamp>,
    pub instrument: Option<Cow<'a, str>>,
    pub venue: Option<Cow<'a, str>>,
    pub figures: Figures,
}
