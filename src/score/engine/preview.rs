//! A reload's dry run: what a grid alone justifies for each open incident now, with the
//! levels it holds set aside (`regwatch rules diff` compares it with what a reload keeps).

use super::*;

/// One open incident's grade as a grid alone justifies it at the engine's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Justified {
    pub participant_id: String,
    pub incident_id: String,
    pub grade: Grade,
}

impl Engine {
    /// Each open incident's grade under `rules` at the engine's time, as a fresh incident
    /// with the same figures and attributes would get it (nothing held); the engine is not
    /// changed. Allocates: off the hot path.
    pub fn justified_under(&self, rules: &Rules) -> Vec<Justified> {
        let now = self.clock.unwrap_or_default();
        self.slab
            .iter()
            .filter(|inc| inc.live && inc.is_open())
            .map(|inc| {
                let participant = self.registry.get(inc.participant);
                let subject = inc.subject(participant, rules, now);
                let applicable = rules.applicable(&subject);
                Justified {
                    participant_id: participant.id.to_string(),
                    incident_id: inc.incident_id.to_string(),
                    grade: rules.assess(&subject, applicable, Grade::default()).grade,
                }
            })
            .collect()
    }
}
