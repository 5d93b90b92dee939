//! Persistence: handing out what changed as state records and tombstones, and restoring an
//! engine from them (this instance after a crash, or a partition's next owner).

use super::*;

impl Engine {
    pub(super) fn incident_changed(&mut self, slot: Slot) {
        let inc = &mut self.slab[slot as usize];
        if self.settings.track_changes && !inc.dirty {
            inc.dirty = true;
            self.changes.incidents.push(slot);
        }
    }

    /// Hands out, once, the latest state of everything that changed since the last call:
    /// tombstones of evicted incidents first (a key may be evicted and then reused), then
    /// incidents, then participants' liveness, then the clock if it moved. Empty unless `track_changes` is set.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        // The lists the hot path pushes to keep their capacity (copied out here, at the
        // flush), so marking a change allocates nothing once they have grown.
        let changes = Changes {
            incidents: self.changes.incidents.drain(..).collect(),
            participants: self.changes.participants.drain(..).collect(),
            evicted: std::mem::take(&mut self.changes.evicted),
            forgotten: std::mem::take(&mut self.changes.forgotten),
            silences: std::mem::take(&mut self.changes.silences),
        };
        let mut out = Vec::with_capacity(
            changes.evicted.len()
                + changes.forgotten.len()
                + changes.incidents.len()
                + changes.participants.len()
                + changes.silences.len(),
        );
        for (p, incident_id) in changes.evicted {
            out.push(StateChange::Deleted(incident_key(
                &self.registry.get(p).id,
                &incident_id,
            )));
        }
        for p in changes.forgotten {
            out.push(StateChange::Deleted(participant_key(
                &self.registry.get(p).id,
            )));
        }
        for slot in changes.incidents {
            let inc = &mut self.slab[slot as usize];
            // A slot can be listed twice (evicted, then reused); hand out each state once.
            if inc.dirty && inc.live {
                let pid = &self.registry.get(inc.participant).id;
                out.push(StateChange::Put(StateRecord::Incident(Box::new(
                    IncidentRecord::from_incident(pid, inc),
                ))));
                inc.dirty = false;
                if self.settings.record_history {
                    let view = self.view_of(slot);
                    self.history.views.push(view);
                }
            }
            self.slab[slot as usize].dirty = false;
        }
        for p in changes.participants {
            self.participants[p.get()].dirty = false;
            if let Some((heard_at, silent)) = self.liveness.as_ref().and_then(|l| l.state(p)) {
                out.push(StateChange::Put(StateRecord::Participant(
                    ParticipantRecord {
                        v: STATE_VERSION,
                        participant_id: self.registry.get(p).id.to_string(),
                        heard_at_ms: heard_at.millis(),
                        silent,
                        gap_held: self.participants[p.get()].held_until.is_some(),
                    },
                )));
            }
        }
        for p in changes.silences {
            out.push(StateChange::Put(self.silences_record(p)));
        }
        // The clock goes with other changes: a restore needs the instant its state was graded
        // to, and state that did not change since its last record needs no newer one (a
        // deadline that falls due changes its incident).
        if !out.is_empty() && self.clock != self.clock_persisted {
            if let Some(at) = self.clock {
                out.push(StateChange::Put(StateRecord::Clock(ClockRecord {
                    v: STATE_VERSION,
                    at_ms: at.millis(),
                })));
            }
            self.clock_persisted = self.clock;
        }
        out
    }

    /// Loads state handed out by [`Engine::take_changes`] (by this or another instance) into
    /// a fresh engine. Later records of a key replace earlier ones. An engine without a clock
    /// starts at the clock the state was saved with (or, in state without a clock record, at
    /// the latest instant it holds): the time regwatch itself was down is not time that
    /// passed for the incidents; the caller moves the clock on from there. Open incidents get
    /// their deadlines and reminder schedules back, resolved ones the rest of their
    /// retention: one that falls due before the clock moves on fires on the next
    /// [`Engine::advance_to`], with its own time as `at`.
    pub fn restore(&mut self, records: Vec<StateRecord>) -> RestoreSummary {
        let mut summary = RestoreSummary::default();
        if self.clock.is_none() {
            let saved = records
                .iter()
                .rev()
                .find_map(|r| match r {
                    StateRecord::Clock(c) => Some(c.at_ms),
                    _ => None,
                })
                .or_else(|| records.iter().map(StateRecord::latest_instant).max())
                .filter(|t| *t > i64::MIN);
            if let Some(at) = saved {
                self.advance_to(Timestamp(at), &mut Vec::new());
                self.clock_persisted = self.clock;
            }
        }
        let mut latest: HashMap<String, StateRecord> = HashMap::new();
        for r in records {
            latest.insert(r.key(), r);
        }
        let mut keys: Vec<String> = latest.keys().cloned().collect();
        keys.sort();
        let mut liveness = Vec::new();
        let mut held = Vec::new();
        let mut evictions = Vec::new();
        for key in keys {
            let Some(record) = latest.remove(&key) else {
                continue;
            };
            match record {
                StateRecord::Incident(r) => match self.restore_incident(&r) {
                    Ok(Some(due)) => {
                        evictions.push(due);
                        summary.incidents += 1;
                    }
                    Ok(None) => summary.incidents += 1,
                    Err(problem) => {
                        if problem.forget {
                            summary.forgotten.push(key.clone());
                        }
                        summary.skipped.push(format!("{key}: {}", problem.text));
                    }
                },
                StateRecord::Clock(_) | StateRecord::Topic(_) => {}
                StateRecord::Silences(r) => match self.registry.lookup(&r.participant_id) {
                    Some(p) => self.participants[p.get()].silences = r.silences,
                    None => {
                        summary.forgotten.push(key.clone());
                        summary
                            .skipped
                            .push(format!("{key}: participant no longer registered"));
                    }
                },
                StateRecord::Participant(r) => match self.registry.lookup(&r.participant_id) {
                    Some(p) => {
                        liveness.push((p, Timestamp(r.heard_at_ms), r.silent));
                        if r.silent && r.gap_held {
                            held.push(p);
                        }
                        summary.participants += 1;
                    }
                    None => {
                        summary.forgotten.push(key.clone());
                        summary
                            .skipped
                            .push(format!("{key}: participant no longer registered"));
                    }
                },
            }
        }
        if let Some(l) = self.liveness.as_mut() {
            l.restore(&mut liveness);
        }
        self.restore_held(held);
        self.recount();
        evictions.sort();
        for due in evictions {
            self.schedule_eviction(due);
        }
        summary
    }

    /// Rebuilds one incident; returns its eviction if it is resolved.
    pub(super) fn restore_incident(&mut self, r: &IncidentRecord) -> Result<Option<Due>, Skipped> {
        let p = self.registry.lookup(&r.participant_id).ok_or(Skipped {
            text: "participant no longer registered".into(),
            forget: true,
        })?;
        // A record of another state version (written by a newer regwatch) is kept.
        let parts = r.parts().map_err(|text| Skipped {
            text,
            forget: r.v == STATE_VERSION,
        })?;
        if self.in_use >= self.settings.max_incidents {
            // Kept on the topic: a larger `max_incidents` restores it.
            return Err(Skipped {
                text: format!(
                    "engine capacity of {} incidents reached",
                    self.settings.max_incidents
                ),
                forget: false,
            });
        }
        let (slot, generation) = self.alloc_slot();
        let mut inc = Incident::placeholder();
        inc.live = true;
        inc.generation = generation;
        inc.participant = p;
        inc.incident_id = r.incident_id.as_str().into();
        inc.kind = parts.kind;
        inc.category = parts.category;
        inc.system = parts.system;
        inc.scope = parts.scope;
        inc.record_type = parts.record_type;
        inc.started_at = Timestamp(r.started_at_ms);
        inc.first_reported_at = Timestamp(r.first_reported_at_ms);
        inc.last_report_at = Timestamp(r.last_report_at_ms);
        inc.resolved_at = r.resolved_at_ms.map(Timestamp);
        // A resolved incident keeps no reasons (`resolve`), whatever an older record holds.
        if inc.resolved_at.is_none() && r.reasons.iter().any(|v| !v.is_empty()) {
            inc.reasons = Some(Box::new(r.reasons.clone()));
        }
        inc.figures = parts.figures;
        inc.peak_minutes = r.peak_minutes;
        inc.grade = parts.grade;
        inc.ineligible = self.rules.exemption(parts.grade) == Exemption::Ineligible;
        inc.lost_counted = inc.ineligible;
        inc.scores = r.scores;
        inc.emitted = parts.emitted;
        inc.reminder_anchor = r.reminder_anchor_ms.map(Timestamp);
        inc.reminders_sent = r.reminders_sent;
        inc.acked_at = r.acked_at_ms.map(Timestamp);
        let participant = self.registry.get(p);
        let held_at = inc
            .started_at
            .plus_millis((r.peak_minutes * MS_PER_MINUTE as f64).round() as i64);
        inc.applicable = self
            .rules
            .applicable(&inc.subject(participant, &self.rules, held_at));
        let ps = &mut self.participants[p.get()];
        ps.incidents.insert(inc.incident_id.clone(), slot);
        self.in_use += 1;
        let eviction = if inc.resolved_at.is_some() {
            // The retention it had; a record without one is kept a full retention from the
            // restore.
            let at = r.evict_at_ms.map(Timestamp).unwrap_or_else(|| {
                self.clock
                    .unwrap_or_default()
                    .plus_millis(self.settings.retention_ms)
            });
            inc.evict_at = Some(at);
            Some(Due {
                at,
                slot,
                generation,
            })
        } else {
            ps.open += 1;
            self.open += 1;
            None
        };
        let open = inc.is_open();
        let anchored = inc.reminder_anchor.is_some();
        let deadline = open
            .then(|| {
                self.rules
                    .assess(
                        &inc.subject(participant, &self.rules, held_at),
                        inc.applicable,
                        inc.grade,
                    )
                    .due
            })
            .flatten();
        self.slab[slot as usize] = inc;
        self.schedule_deadline(slot, deadline);
        if open {
            if anchored {
                self.schedule_reminder(slot);
            } else if let Some(now) = self.clock {
                // A record without an anchor (reminders were off, or did not exist yet).
                self.anchor_reminders(slot, now);
                if self.slab[slot as usize].reminder_anchor.is_some() {
                    self.incident_changed(slot);
                }
            }
        }
        Ok(eviction)
    }
}

/// What `Engine::restore` loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub incidents: usize,
    pub participants: usize,
    /// Records that could not be loaded, with the reason (e.g. a participant removed from
    /// the registry since).
    pub skipped: Vec<String>,
    /// Keys of skipped records that can never be loaded (their participant left the
    /// registry, or the record is malformed): the caller deletes them (tombstones), so the
    /// compacted state topic forgets them too.
    pub forgotten: Vec<String>,
}

/// Why a state record was not restored, and whether it can ever be.
pub(super) struct Skipped {
    text: String,
    forget: bool,
}
