//! Fencing of state writes with Kafka transactions, on the real broker: the owner that takes
//! a partition over fences the previous one (its later snapshots are refused by the broker,
//! not just skipped by its own process), and a snapshot a crashed owner left open is aborted
//! at the takeover and never restored.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use regwatch::config::{Config, KafkaSettings};
use regwatch::ingest::{state, txn};

use crate::broker::Broker;

const SOURCE: (&str, i32) = ("fence.events", 0);

fn settings(broker: &Broker) -> KafkaSettings {
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"fence\"\ntopics = [\"fence.events\"]\nstate_topic = \"fence.state\"\n[[participants]]\nid = \"P1\"\nkind = \"broker\"\n",
        broker.bootstrap()
    );
    Config::from_toml(&text, None, false).unwrap().kafka
}

/// A state write: a key of the source partition and a value (not a state record, so a
/// restore lists it as unreadable, which is all this test needs to see it).
fn write(key: &str) -> (String, Option<Vec<u8>>) {
    (
        format!("{}{key}", state::key_prefix(SOURCE.0, SOURCE.1)),
        Some(b"not a state record".to_vec()),
    )
}

#[test]
fn a_new_owner_fences_the_old_one_and_aborts_what_it_left_open() {
    let broker = Broker::start();
    broker.create_topic("fence.state", 1);
    let k = settings(&broker);
    let sp = state::state_partition(SOURCE.0, SOURCE.1, 1);

    // The first owner writes a snapshot.
    let old = txn::StateTxn::init(&k, SOURCE.0, SOURCE.1).expect("old owner's transactions");
    old.write(&k.state_topic, sp, &[write("a")], SOURCE, None, None)
        .expect("old owner's first snapshot");

    // A crashed owner's snapshot, left open: same transactional id, never committed.
    let crashed: ThreadedProducer<_> = broker
        .config()
        .set(
            "transactional.id",
            txn::transactional_id(&k, SOURCE.0, SOURCE.1),
        )
        .create()
        .unwrap();
    crashed.init_transactions(Duration::from_secs(30)).unwrap();
    crashed.begin_transaction().unwrap();
    let (key, value) = write("left-open");
    crashed
        .send(
            BaseRecord::to(&k.state_topic)
                .partition(sp)
                .key(&key)
                .payload(value.as_deref().unwrap()),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    crashed.flush(Duration::from_secs(10)).unwrap();

    // The new owner takes over: initialising the same id fences both earlier producers and
    // aborts the open snapshot, so its restore ends at once without it.
    let new = txn::StateTxn::init(&k, SOURCE.0, SOURCE.1).expect("new owner's transactions");
    let t0 = Instant::now();
    let loaded = state::read(&k, 1, SOURCE.0, SOURCE.1, Duration::from_secs(30)).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the restore did not wait for the transaction timeout: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        loaded.unreadable,
        ["a"],
        "only the committed snapshot is read"
    );

    // The old owner, not knowing it lost the partition, is refused by the broker.
    match old.write(&k.state_topic, sp, &[write("late")], SOURCE, None, None) {
        Err(txn::TxnError::Fenced(_)) => {}
        other => panic!("the old owner must be fenced, got {other:?}"),
    }
    new.write(&k.state_topic, sp, &[write("b")], SOURCE, None, None)
        .expect("the new owner writes");
    let loaded = state::read(&k, 1, SOURCE.0, SOURCE.1, Duration::from_secs(30)).unwrap();
    assert_eq!(
        loaded.unreadable,
        ["a", "b"],
        "nothing of the fenced owner or the crashed one is ever restored"
    );
}
