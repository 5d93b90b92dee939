//! Applying an incident report: finding or opening the incident, merging the report,
//! regrading it and emitting the alerts its transitions call for, resolving it.

use super::*;
use crate::decode::Figures;

impl Engine {
    pub(super) fn report(
        &mut self,
        event: &Event<'_>,
        report: &IncidentReport<'_>,
        now: Timestamp,
        out: &mut Vec<Alert>,
    ) -> Result<Outcome, Reject> {
        let p = event.participant;
        let existing = self.participants[p.get()]
            .incidents
            .get(report.incident_id.as_ref())
            .copied();
        let (slot, created) = match existing {
            Some(slot) => {
                let inc = &self.slab[slot as usize];
                if !inc.is_open() {
                    self.stats.after_resolution += 1;
                    return Ok(Outcome::AfterResolution);
                }
                if inc.kind != event.kind {
                    return Err(Reject::KindChanged);
                }
                (slot, false)
            }
            None => (self.create(event, report)?, true),
        };
        let inc = &mut self.slab[slot as usize];
        let before = inc.figures;
        let change = inc.merge(report, event.occurred_at);
        if change.attributes || created {
            let participant = self.registry.get(inc.participant);
            inc.applicable = self
                .rules
                .applicable(&inc.subject(participant, &self.rules, now));
        }
        if change.any || created {
            self.incident_changed(slot);
            self.evaluate(slot, now, Cause::Report(&event.event_id), out);
            if self.settings.record_history {
                let before = if created { Figures::default() } else { before };
                self.note_report(
                    slot,
                    before,
                    &event.event_id,
                    now,
                    event.occurred_at,
                    created,
                );
            }
        }
        Ok(Outcome::Graded)
    }

    pub(super) fn create(
        &mut self,
        event: &Event<'_>,
        report: &IncidentReport<'_>,
    ) -> Result<Slot, Reject> {
        let p = event.participant;
        // A report older than the retention of resolved incidents cannot be told apart from a
        // redelivery of an incident already resolved and forgotten: it must not open one.
        if let Some(clock) = self.clock {
            if event.occurred_at < clock.plus_millis(-self.settings.retention_ms) {
                return Err(Reject::Stale);
            }
        }
        let cap = self.settings.max_open_per_participant;
        if self.participants[p.get()].open >= cap {
            return Err(Reject::ParticipantCapacity(cap));
        }
        if self.in_use >= self.settings.max_incidents && !self.make_room(p) {
            return Err(Reject::EngineCapacity(self.settings.max_incidents));
        }
        let (slot, generation) = self.alloc_slot();
        self.slab[slot as usize] =
            Incident::new(p, report, event.kind, event.occurred_at, generation);
        let ps = &mut self.participants[p.get()];
        ps.incidents
            .insert(report.incident_id.as_ref().into(), slot);
        ps.open += 1;
        self.in_use += 1;
        self.open += 1;
        self.stats.incidents_opened += 1;
        self.count_grade(None, Some(Grade::default()));
        Ok(slot)
    }

    /// Regrades an incident at `at` and emits the alerts its transitions call for.
    pub(super) fn evaluate(
        &mut self,
        slot: Slot,
        at: Timestamp,
        cause: Cause<'_>,
        out: &mut Vec<Alert>,
    ) {
        let rules = &self.rules;
        let inc = &mut self.slab[slot as usize];
        let participant = self.registry.get(inc.participant);
        let subject = inc.subject(participant, rules, at);
        let minutes = subject.minutes;
        let assessment = rules.assess(&subject, inc.applicable, inc.grade);
        let held = inc.grade;
        let grade = held.raised_by(assessment.grade);
        inc.peak_minutes = minutes;
        inc.grade = grade;
        let exemption = rules.exemption(grade);
        if grade != held {
            self.count_grade(Some(held), Some(grade));
        }
        self.count_exemption(slot, exemption == Exemption::Ineligible, true);
        let rules = &self.rules;
        let inc = &mut self.slab[slot as usize];
        let participant = self.registry.get(inc.participant);
        let event_id = match cause {
            Cause::Report(id) => Some(id),
            Cause::Clock | Cause::Reload | Cause::Closed => None,
        };
        let trigger = match inc.emitted {
            None if grade.overall() >= self.settings.min_alert_level => Some(Trigger::Opened),
            Some(e) if e.grade != grade || e.exemption != exemption => Some(match cause {
                Cause::Report(_) => Trigger::Escalated,
                Cause::Clock | Cause::Closed => Trigger::Clock,
                Cause::Reload => Trigger::Reload,
            }),
            _ => None,
        };
        if let Some(trigger) = trigger {
            out.push(incident_alert(
                rules,
                participant,
                inc,
                AlertStatus::Firing,
                trigger,
                at,
                event_id,
            ));
            inc.emitted = Some(Emitted { grade, exemption });
        }
        if !inc.is_open() {
            if inc.emitted.is_some() {
                out.push(incident_alert(
                    rules,
                    participant,
                    inc,
                    AlertStatus::Resolved,
                    if matches!(cause, Cause::Closed) {
                        Trigger::Closed
                    } else {
                        Trigger::Resolved
                    },
                    at,
                    event_id,
                ));
            }
            self.resolve(slot, at);
            return;
        }
        let next = assessment.due.filter(|d| *d > at);
        self.schedule_deadline(slot, next);
        self.anchor_reminders(slot, at);
    }

    pub(super) fn resolve(&mut self, slot: Slot, at: Timestamp) {
        let grade = self.slab[slot as usize].grade;
        self.count_grade(Some(grade), None);
        self.count_exemption(slot, false, false);
        let inc = &mut self.slab[slot as usize];
        inc.generation = inc.generation.wrapping_add(1);
        inc.deadline = None;
        inc.next_reminder = None;
        // Retained only to recognise late reports: the reasons went out with its alerts and
        // are most of what an incident holds, so a retained one keeps none (nor does its
        // state record).
        inc.reasons = None;
        let generation = inc.generation;
        let ps = &mut self.participants[inc.participant.get()];
        ps.open = ps.open.saturating_sub(1);
        self.open = self.open.saturating_sub(1);
        self.stats.incidents_resolved += 1;
        let evict_at = at.plus_millis(self.settings.retention_ms);
        self.slab[slot as usize].evict_at = Some(evict_at);
        self.schedule_eviction(Due {
            at: evict_at,
            slot,
            generation,
        });
    }
}
