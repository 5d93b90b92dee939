//! The census: what an engine holds now (open incidents by axis and level, silent
//! participants, per participant the incidents that lost exemption), kept up to date on every
//! transition and rebuilt by one scan after a restore, for the daemon's gauges.

use super::*;

/// What an engine holds now, kept up to date on every transition (never by scanning), for
/// the daemon's gauges: open incidents by axis and level, and per participant the open
/// incidents that lost exemption eligibility, how many ever did, and telemetry gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// `[axis][level rank]`, axis 0 investor loss, 1 market order, 2 overall.
    pub open_by_level: [[u32; 5]; 3],
    /// Participants currently silent (a telemetry gap is firing).
    pub silent: u32,
}

/// One participant's share of the census.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParticipantCensus {
    pub ineligible_open: u32,
    /// Incidents that became ineligible, ever (on this engine).
    pub lost_exemption: u64,
    pub gaps: u64,
}

impl Engine {
    /// Open incidents by axis and level, silent participants.
    pub fn census(&self) -> &Census {
        &self.census
    }

    /// One participant's share of the census.
    pub fn participant_census(&self, p: ParticipantIdx) -> ParticipantCensus {
        self.participants[p.get()].census
    }

    /// Moves an open incident from `old` to `new` in the census.
    pub(super) fn count_grade(&mut self, old: Option<Grade>, new: Option<Grade>) {
        let cells = |g: Grade| {
            [
                g.investor_loss.rank() as usize,
                g.market_order.rank() as usize,
                g.overall().rank() as usize,
            ]
        };
        if let Some(g) = old {
            for (axis, level) in cells(g).into_iter().enumerate() {
                let c = &mut self.census.open_by_level[axis][level];
                *c = c.saturating_sub(1);
            }
        }
        if let Some(g) = new {
            for (axis, level) in cells(g).into_iter().enumerate() {
                self.census.open_by_level[axis][level] += 1;
            }
        }
    }

    /// Records whether an open incident is ineligible now (`lost` counts a new loss).
    pub(super) fn count_exemption(&mut self, slot: Slot, ineligible: bool, lost: bool) {
        let inc = &mut self.slab[slot as usize];
        if inc.ineligible == ineligible {
            return;
        }
        inc.ineligible = ineligible;
        let c = &mut self.participants[inc.participant.get()].census;
        if ineligible {
            c.ineligible_open += 1;
            if lost && !inc.lost_counted {
                c.lost_exemption += 1;
            }
            inc.lost_counted = true;
        } else {
            c.ineligible_open = c.ineligible_open.saturating_sub(1);
        }
    }

    /// Rebuilds the census from the state (after a restore; the one place it scans).
    pub(super) fn recount(&mut self) {
        let lost: Vec<u64> = self
            .participants
            .iter()
            .map(|p| p.census.lost_exemption)
            .collect();
        let gaps: Vec<u64> = self.participants.iter().map(|p| p.census.gaps).collect();
        self.census = Census::default();
        for (i, ps) in self.participants.iter_mut().enumerate() {
            ps.census = ParticipantCensus {
                ineligible_open: 0,
                lost_exemption: lost[i],
                gaps: gaps[i],
            };
        }
        for slot in 0..self.slab.len() {
            let inc = &self.slab[slot];
            if !inc.live || !inc.is_open() {
                continue;
            }
            let (grade, ineligible, p) = (inc.grade, inc.ineligible, inc.participant);
            self.count_grade(None, Some(grade));
            if ineligible {
                self.participants[p.get()].census.ineligible_open += 1;
            }
        }
        if let Some(l) = &self.liveness {
            self.census.silent = self
                .registry
                .iter()
                .filter(|(p, _)| l.is_silent(*p))
                .count() as u32;
        }
    }
}
