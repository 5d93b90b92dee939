//! Authenticated state on a real broker (`kafka.record_key`): records another client writes
//! to the state topic (a forged incident, a forged tombstone, a record with a wrong MAC) are
//! refused by the restore and counted, the authentic state stands and is written again
//! above the forgery; an existing unsigned state topic moves to signed records in its first
//! run with a key (by default the deployment's own, kept in the state topic).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use regwatch::config::Config;
use serde_json::json;

use crate::broker::{produce, tempdir, Broker};
use crate::kafka::{config_text, event};

/// One record of the state topic: key, value, and its `regwatch.mac` header.
pub(crate) struct Entry {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub mac: Option<String>,
}

/// Every record of the state topic's first `partitions` partitions, in offset
/// order per partition.
pub(crate) fn state_entries(broker: &Broker, topic: &str, partitions: i32) -> Vec<Entry> {
    let c: BaseConsumer = broker
        .config()
        .set("group.id", "state-log")
        .set("enable.partition.eof", "true")
        .create()
        .expect("state reader");
    let mut out = Vec::new();
    for p in 0..partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        loop {
            match c.poll(Duration::from_secs(10)) {
                Some(Ok(m)) => {
                    let mac = m.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "regwatch.mac")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    out.push(Entry {
                        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        value: m.payload().map(<[u8]>::to_vec),
                        mac,
                    });
                    if m.offset() >= high - 1 {
                        break;
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                other => panic!("reading {topic}/{p}: {other:?}"),
            }
        }
    }
    out
}

fn state_log(broker: &Broker, topic: &str) -> Vec<Entry> {
    state_entries(broker, topic, 1)
}

/// The open incidents the daemon's API shows, as participant/incident.
async fn open(addr: std::net::SocketAddr) -> Vec<String> {
    let mut ids: Vec<String> = crate::compaction::incidents(addr)
        .await
        .iter()
        .map(|i| format!("{}/{}", i["participant_id"], i["incident_id"]).replace('"', ""))
        .collect();
    ids.sort();
    ids
}

/// Starts the daemon on `text`, waits until its partition is restored, and returns it.
async fn start(text: &str) -> regwatch::app::Spawned {
    let cfg = Config::from_toml(text, None, false).expect("test config");
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");
    let m = daemon.running.metrics.clone();
    crate::support::eventually("the partition is restored", Duration::from_secs(60), || {
        m.partitions.get() >= 1 && m.restoring.get() == 0
    })
    .await;
    daemon
}

/// Waits until the daemon has written `n` state records.
async fn wait_state_records(daemon: &regwatch::app::Spawned, n: u64) {
    let m = daemon.running.metrics.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while m.state_records.get() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "state records written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn with_key(text: &str, key_file: &std::path::Path, extra: &str) -> String {
    text.replacen(
        "[kafka]\n",
        &format!(
            "[kafka]\nrecord_key = {{ file = {:?} }}\n{extra}",
            key_file.display().to_string()
        ),
        1,
    )
}

fn leak(incident: &str, seq: &mut u32) -> (String, Vec<u8>) {
    event(
        json!({"participant_id": "P1", "kind": "infosec", "incident_id": incident,
               "category": "data_leak", "records_exposed": 200_000}),
        seq,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_state_records_are_refused_and_the_authentic_state_stands() {
    let broker = Broker::start();
    let name = "stauth";
    broker.create_topic(&format!("{name}.events"), 1);
    let dir = tempdir("state-auth");
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("record-key");
    std::fs::write(&key_file, "an-internal-key-0123456789\n").unwrap();
    let text = with_key(&config_text(&broker, name, 1), &key_file, "");
    let state_topic = format!("{name}.state");

    let daemon = start(&text).await;
    let mut seq = 0;
    produce(
        &broker.producer(),
        &format!("{name}.events"),
        &[leak("REAL", &mut seq)],
    )
    .await;
    wait_state_records(&daemon, 1).await;
    let http = daemon.running.http.unwrap();
    assert_eq!(open(http).await, ["P1/REAL"]);
    daemon.stop().await.expect("clean stop");

    // Every record regwatch wrote carries a MAC.
    let log = state_log(&broker, &state_topic);
    assert!(!log.is_empty() && log.iter().all(|e| e.mac.is_some()));
    let real = log
        .iter()
        .rev()
        .find(|e| e.key.ends_with("|i|2|P1|REAL") && e.value.is_some())
        .expect("the incident's record");
    // A client with write access forges: another incident from the real one's bytes, the
    // real one's deletion, and a record with a MAC made with another key.
    let forged_key = real.key.replace("|REAL", "|FORGED");
    let forged_value = String::from_utf8(real.value.clone().unwrap())
        .unwrap()
        .replace("REAL", "FORGED");
    let producer = broker.producer();
    let send = |key: String, value: Option<String>, mac: Option<&str>| {
        let producer = producer.clone();
        let topic = state_topic.clone();
        let mac = mac.map(str::to_string);
        async move {
            let mut r = FutureRecord::<str, str>::to(&topic).key(&key).partition(0);
            if let Some(v) = &value {
                r = r.payload(v);
            }
            if let Some(m) = &mac {
                r = r.headers(OwnedHeaders::new().insert(Header {
                    key: "regwatch.mac",
                    value: Some(m.as_bytes()),
                }));
            }
            producer
                .send(r, Duration::from_secs(10))
                .await
                .expect("the forgery is written (no ACLs here)");
        }
    };
    send(forged_key.clone(), Some(forged_value.clone()), None).await;
    let wrong = regwatch::delivery::sign::state_mac(
        b"not-the-record-key-000000",
        &state_topic,
        &forged_key,
        Some(forged_value.as_bytes()),
    );
    send(
        forged_key.replace("FORGED", "FORGED2"),
        Some(forged_value.replace("FORGED", "FORGED2")),
        Some(&wrong),
    )
    .await;
    send(real.key.clone(), None, None).await;

    // `regwatch state verify` sees what a restore would refuse, and fails.
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let state_cli = |verb: &str| {
        std::process::Command::new(crate::kafka::regwatch_bin())
            .args(["state", verb, "--config"])
            .arg(&cfg_path)
            .args(["--partition", "0"])
            .output()
            .expect("regwatch state runs")
    };
    let verified = state_cli("verify");
    let said = String::from_utf8_lossy(&verified.stderr).to_string();
    assert!(!verified.status.success(), "{said}");
    assert!(said.contains("3 refused"), "{said}");

    let daemon = start(&text).await;
    let m = daemon.running.metrics.clone();
    assert_eq!(m.state_unauthenticated.get(), 3, "every forgery refused");
    assert_eq!(
        open(daemon.running.http.unwrap()).await,
        ["P1/REAL"],
        "the authentic state stands; nothing forged was restored"
    );
    // The authentic record is written again above the forged tombstone, signed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = state_log(&broker, &state_topic);
        let last = log.iter().rev().find(|e| e.key == real.key).unwrap();
        if last.value.is_some() && last.mac.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the real record is written again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(m.state_resigned.get() >= 1);
    // Re-signed above the forged tombstone: the real incident is authentic again; the two
    // forged keys, which never had an authentic value, are still refused.
    let verified = state_cli("verify");
    let said = String::from_utf8_lossy(&verified.stderr).to_string();
    assert!(!verified.status.success(), "{said}");
    assert!(said.contains("(1 incidents), 2 refused"), "{said}");
    let dump = state_cli("dump");
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records
        .iter()
        .any(|r| r["type"] == "incident" && r["incident_id"] == "REAL"));
    assert!(!records.iter().any(|r| r.to_string().contains("FORGED")));
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_state_topic_moves_to_signed_records_in_one_run() {
    let broker = Broker::start();
    let name = "stmove";
    broker.create_topic(&format!("{name}.events"), 1);
    // Before record keys: nothing signed.
    let default = config_text(&broker, name, 1);
    let plain = default.replacen(
        "[kafka]\n",
        "[kafka]\ninsecure_trust_internal_topics = true\n",
        1,
    );
    let state_topic = format!("{name}.state");
    let daemon = start(&plain).await;
    let mut seq = 0;
    produce(
        &broker.producer(),
        &format!("{name}.events"),
        &[leak("OLD", &mut seq)],
    )
    .await;
    wait_state_records(&daemon, 1).await;
    // No record key: nothing tells an action from a participant's forgery, so none applies
    // (the incident is still open after the restart below).
    crate::actions::forge_close(&broker, &format!("{name}.events"), "P1", "OLD").await;
    let m = daemon.running.metrics.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while m.rejected.with_label_values(&["untrusted_action"]).get() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the forgery is refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await.expect("clean stop");
    assert!(state_log(&broker, &state_topic)
        .iter()
        .all(|e| e.mac.is_none()));

    // The default configuration: the deployment's key is proposed in the state topic, the
    // legacy records (before any signed one) are restored and written again, signed.
    let daemon = start(&default).await;
    assert_eq!(open(daemon.running.http.unwrap()).await, ["P1/OLD"]);
    let m = daemon.running.metrics.clone();
    assert_eq!(m.state_unauthenticated.get(), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while m.state_resigned.get() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "legacy records written again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_state_records(&daemon, 2).await;
    daemon.stop().await.expect("clean stop");
    let log = state_log(&broker, &state_topic);
    assert_eq!(
        log.iter()
            .filter(|e| e.key.starts_with(regwatch::ingest::trust::KEY_PREFIX))
            .count(),
        1,
        "one deployment key"
    );

    // From then on an unsigned record is a forgery: refused, the signed state stands.
    let old = log
        .iter()
        .rev()
        .find(|e| e.key.ends_with("|i|2|P1|OLD") && e.mac.is_some())
        .expect("the incident, signed");
    let producer = broker.producer();
    producer
        .send(
            FutureRecord::<str, str>::to(&state_topic)
                .key(&old.key)
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .expect("an unsigned tombstone is written");
    let daemon = start(&default).await;
    assert_eq!(daemon.running.metrics.state_unauthenticated.get(), 1);
    assert_eq!(open(daemon.running.http.unwrap()).await, ["P1/OLD"]);
    daemon.stop().await.expect("clean stop");

    // Trusting the topics and giving a key contradict each other.
    let dir = tempdir("state-move");
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("record-key");
    std::fs::write(&key_file, "an-internal-key-0123456789\n").unwrap();
    let err = Config::from_toml(&with_key(&plain, &key_file, ""), None, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kafka.insecure_trust_internal_topics"),
        "{err}"
    );
}
