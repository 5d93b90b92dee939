//! Records on the history topic, as every instance's desk folds them (`desk::Store::fold`):
//! the first byte picks the record's kind, the rest is its value. Whatever folds, the
//! store's answers hold: every query, participant summary, export (JSON and CSV) and board
//! page renders; a story's timeline stays in time order and within its bound; the incident
//! count stays within the desk's bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regwatch::desk::{export, keys, page, participants, Coverage, Filter, Store};
use regwatch::registry::Registry;
use regwatch::score::Rules;

const KINDS: [&str; 6] = [
    keys::REPORT,
    keys::VIEW,
    keys::ALERT,
    keys::WATERMARK,
    keys::ACTION,
    "other",
];

fuzz_target!(|data: &[u8]| {
    let mut store = Store::new(4, 3, 8);
    // Several records: split on 0xFF, each led by its kind byte.
    for record in data.split(|b| *b == 0xFF) {
        let Some((&kind, value)) = record.split_first() else {
            continue;
        };
        store.fold(KINDS[kind as usize % KINDS.len()], value);
    }
    assert!(store.stories.len() <= 4);
    assert!(store.entries() <= 8);
    for silence in store.silences.values() {
        assert!(silence.starts_at <= silence.ends_at || silence.expired_by.is_none());
    }
    for story in store.stories.values() {
        assert!(story.entries.len() <= 3);
        assert!(story.entries.windows(2).all(|w| w[0].at <= w[1].at));
    }
    let rules = Rules::default_grid();
    let coverage = Coverage {
        complete: false,
        as_of: regwatch::time::Timestamp(0),
        partitions_total: 1,
        partitions_covered: 0,
        history_read: true,
        partitions: Vec::new(),
    };
    let all = store.select(&Filter::default());
    let _ = page::board(&all, &Filter::default(), &coverage);
    let registry = Registry::default();
    for (id, summary) in participants::summaries(&store, &registry) {
        let views = store.select(&Filter {
            participant: Some(id.clone()),
            ..Filter::default()
        });
        let silences: Vec<_> = store
            .silences
            .values()
            .filter(|x| x.participant_id == id)
            .collect();
        let _ = page::participant(&summary, &views, &silences, &coverage);
        let rows = export::rows(&store, &id, None, None, &rules);
        let csv = export::csv(&rows);
        assert!(csv.matches("\r\n").count() > rows.len());
    }
    for story in store.stories.values() {
        let mut story = story.clone();
        if let Some(v) = story.view.as_mut() {
            regwatch::desk::project(v, &store, &rules);
            let _ = page::incident(&story, rules.calendars(), &coverage);
        }
    }
});
