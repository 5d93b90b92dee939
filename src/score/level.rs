//! The CSRC incident scale and the two axes an incident is graded on.
//!
//! `Level` is totally ordered (`none < general < larger < major < extraordinary`), so "the
//! higher of two levels" is `max` and "levels only rise" is a `max` on update.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    None,
    General,
    Larger,
    Major,
    Extraordinary,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::None,
        Level::General,
        Level::Larger,
        Level::Major,
        Level::Extraordinary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::General => "general",
            Level::Larger => "larger",
            Level::Major => "major",
            Level::Extraordinary => "extraordinary",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn next(self) -> Option<Level> {
        Self::ALL.get(self as usize + 1).copied()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two questions the sandbox exemption asks of every incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    InvestorLoss,
    MarketOrder,
}

impl Axis {
    pub const ALL: [Axis; 2] = [Axis::InvestorLoss, Axis::MarketOrder];

    pub fn as_str(self) -> &'static str {
        match self {
            Axis::InvestorLoss => "investor_loss",
            Axis::MarketOrder => "market_order",
        }
    }

    pub fn parse(s: &str) -> Option<Axis> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A grade on both axes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Grade {
    pub investor_loss: Level,
    pub market_order: Level,
}

impl Grade {
    pub fn get(&self, axis: Axis) -> Level {
        match axis {
            Axis::InvestorLoss => self.investor_loss,
            Axis::MarketOrder => self.market_order,
        }
    }

    /// The higher of the two axes, at least `general` (every reported incident is).
    pub fn overall(&self) -> Level {
        self.investor_loss
            .max(self.market_order)
            .max(Level::General)
    }

    /// Per-axis maximum: grading never falls while an incident is open.
    pub fn raised_by(&self, other: Grade) -> Grade {
        Grade {
            investor_loss: self.investor_loss.max(other.investor_loss),
            market_order: self.market_order.max(other.market_order),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exemption {
    Eligible,
    Ineligible,
}
