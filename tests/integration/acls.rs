//! `regwatch acls` on the real broker: a SASL_SSL (SCRAM) broker with the standard authorizer,
//! denying what is not granted, gets exactly the ACL lines the `acls` module prints (run
//! through `kafka-acls`'s class `org.apache.kafka.tools.AclCommand`). Then a participant may
//! write its own topic only, not another's nor the alerts topic, and the daemon, as principal
//! `regwatch`, starts (creates its topics, joins its group, writes state in transactions,
//! delivers to a webhook), grades the participant's event, dead-letters a forged one, and
//! restores its state after a restart. Nothing here runs as a super user except the setup
//! and the checks, over the PLAINTEXT listener.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use regwatch::acls::{commands, Options};
use regwatch::config::{Config, Protocol, Security};
use regwatch::ingest::tail;
use serde_json::json;

use crate::broker::{script, tempdir, Broker, Options as BrokerOptions};
use crate::kafka::{collect, event, payload};
use crate::security::test_ca;
use crate::webhook::Hook;

const USERS: [(&str, &str); 4] = [
    ("admin", "admin-secret-1"),
    ("regwatch", "regwatch-secret-1"),
    ("P1", "p1-secret-1"),
    ("P2", "p2-secret-1"),
];

fn config_text(broker: &Broker, dir: &Path, hook: &str) -> String {
    format!(
        r#"
[engine]
telemetry_gap = "off"
[rules]
calendars = "{calendars}"
[kafka]
brokers = "{brokers}"
group_id = "aclrw"
topic_pattern = "^acl\\.events(\\..+)?$"
alerts_topic = "acl.alerts"
dead_letter_topic = "acl.dlq"
state_topic = "acl.state"
reminders_topic = "acl.reminders"
topic_partitions = 1
replication_factor = 1
commit_interval = "200ms"
session_timeout = "6s"
[kafka.security]
protocol = "sasl_ssl"
ca_file = "{ca}"
sasl_mechanism = "SCRAM-SHA-512"
username = "regwatch"
password = {{ file = "{password}" }}
[daemon]
tick = "100ms"
shutdown_grace = "15s"
[http]
listen = "off"
[delivery]
dead_letter_topic = "acl.alert-dlq"
[[delivery.receivers]]
name = "oncall"
url = "{hook}"
signing_keys = [{{ id = "k1", secret = "acl-test-signing-key-0123456789" }}]
[binding]
topic_template = "acl.events.{{id}}"
[[participants]]
id = "P1"
kind = "fund_manager"
effective_customers = 800000
calendar = "always"
[[participants]]
id = "P2"
kind = "broker"
effective_customers = 2500000
calendar = "always"
"#,
        calendars = crate::kafka::ALWAYS_CALENDAR,
        brokers = broker
            .sasl_bootstrap
            .as_deref()
            .expect("a SASL_SSL listener"),
        ca = dir.join("ca.crt").display(),
        password = dir.join("regwatch.password").display(),
    )
}

/// A producer authenticated as `user` over SASL_SSL that gives up on a message quickly.
fn producer_as(broker: &Broker, dir: &Path, user: &str) -> FutureProducer {
    let password = USERS.iter().find(|(u, _)| *u == user).expect("a user").1;
    ClientConfig::new()
        .set(
            "bootstrap.servers",
            broker.sasl_bootstrap.as_deref().unwrap(),
        )
        .set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", dir.join("ca.crt").display().to_string())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "5000")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

async fn send(
    p: &FutureProducer,
    topic: &str,
    (key, value): &(String, Vec<u8>),
) -> Result<(), KafkaError> {
    let record = FutureRecord::to(topic).key(key.as_bytes()).payload(value);
    p.send(record, Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Runs the printed lines with bash, `kafka-acls.sh` being the AclCommand class run from the
/// cached jars, `$BOOTSTRAP` the PLAINTEXT listener (a super user) and `$ADMIN_CONFIG` a
/// properties file for it.
fn apply(broker: &Broker, dir: &Path, lines: &[String]) {
    let admin = dir.join("admin.properties");
    std::fs::write(&admin, "security.protocol=PLAINTEXT\n").unwrap();
    let logs = dir.join("acl-tool");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = format!(
        "set -eu\nkafka-acls.sh() {{ bash '{}' run '{}' org.apache.kafka.tools.AclCommand \"$@\"; }}\n",
        script().display(),
        logs.display()
    );
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let file = dir.join("acls.sh");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("bash")
        .arg(&file)
        .env("BOOTSTRAP", broker.bootstrap())
        .env("ADMIN_CONFIG", &admin)
        .output()
        .expect("bash runs the ACL lines");
    assert!(
        out.status.success(),
        "the ACL lines failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every message of `topic`: read until, after the first, it stays quiet for two seconds.
async fn drain(k: &regwatch::config::KafkaSettings, topic: &str) -> Vec<OwnedMessage> {
    let follower = tail::follower(k, topic, "acl-check-drain").expect("follower");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "{topic} never went quiet");
        match tail::next(&follower, Duration::from_secs(2)).await {
            Some(m) => seen.push(m),
            // Still joining the group: nothing read yet.
            None if seen.is_empty() => continue,
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_acls_let_participants_write_their_own_topics_only_and_regwatch_run() {
    let t0 = Instant::now();
    let dir = tempdir("acls");
    std::fs::create_dir_all(&dir).unwrap();
    test_ca(&dir);
    let broker = Broker::start_with(BrokerOptions {
        nodes: 1,
        sasl_ssl: Some(dir.clone()),
        scram: USERS
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
        props: vec![
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            // ANONYMOUS: the PLAINTEXT listener, which the harness and the brokers' own
            // (inter-broker and controller) traffic use.
            "super.users=User:ANONYMOUS;User:admin".into(),
            "allow.everyone.if.no.acl.found=false".into(),
        ],
    });
    broker.create_topic("acl.events.P1", 1);
    broker.create_topic("acl.events.P2", 1);
    std::fs::write(dir.join("regwatch.password"), "regwatch-secret-1\n").unwrap();
    let hook = Hook::up().await;
    let text = config_text(&broker, &dir, &hook.url());
    let cfg = Config::from_toml(&text, None, false).expect("config");

    let opts = Options::for_config(&cfg);
    assert_eq!(opts.principal, "User:regwatch", "from the SASL user name");
    let lines = commands(&cfg, &opts);
    let acls: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .cloned()
        .collect();
    assert!(
        acls.iter()
            .any(|l| l.contains("--resource-pattern-type prefixed --topic acl.events")),
        "{lines:#?}"
    );
    let applying = Instant::now();
    apply(&broker, &dir, &lines);
    let applied_in = applying.elapsed();

    // The daemon as regwatch: its topics, group, transactions and outbox under the ACLs.
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg)
        .await
        .expect("the daemon starts under the printed ACLs");
    let m = daemon.running.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.partitions.get() < 2 || m.restoring.get() != 0 {
        assert!(Instant::now() < deadline, "both bound topics consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let p1 = producer_as(&broker, &dir, "P1");
    let mut seq = 0;
    let leak = |pid: &str, incident: &str, seq: &mut u32| {
        event(
            json!({"participant_id": pid, "kind": "infosec", "incident_id": incident,
                   "category": "data_leak", "records_exposed": 200_000}),
            seq,
        )
    };
    // 1. P1 writes its own topic.
    send(&p1, "acl.events.P1", &leak("P1", "OWN", &mut seq))
        .await
        .expect("P1 may write acl.events.P1");
    // ... and may put P2's name in it: the broker lets it, regwatch dead-letters it.
    send(&p1, "acl.events.P1", &leak("P2", "FORGED", &mut seq))
        .await
        .expect("P1 may write anything to its own topic");
    // 2. P1 may not write P2's topic, nor the alerts topic: refused by the broker.
    for topic in ["acl.events.P2", kafka.alerts_topic.as_str()] {
        let asked = Instant::now();
        let err = send(&p1, topic, &leak("P2", "INTO", &mut seq))
            .await
            .expect_err("refused");
        assert_eq!(
            err.rdkafka_error_code(),
            Some(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{topic}: {err}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "{topic}: refused quickly ({:?})",
            asked.elapsed()
        );
    }

    // 3. Read back over the PLAINTEXT listener (super user).
    let mut admin = kafka.clone();
    admin.brokers = broker.bootstrap();
    admin.security = Security {
        protocol: Protocol::Plaintext,
        ca_file: None,
        cert_file: None,
        key_file: None,
        key_password: None,
        sasl: None,
    };
    let alerts = collect(
        &admin,
        &kafka.alerts_topic,
        "acl-check-alerts",
        Duration::from_secs(30),
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(payload(&alerts[0])["incident_id"], "OWN");
    assert_eq!(payload(&alerts[0])["participant_id"], "P1");
    let dead = collect(
        &admin,
        &kafka.dead_letter_topic,
        "acl-check-dlq",
        Duration::from_secs(30),
        |d| !d.is_empty(),
    )
    .await;
    assert_eq!(
        (
            tail::header(&dead[0], "regwatch.source_topic").as_deref(),
            tail::header(&dead[0], "regwatch.reason").as_deref()
        ),
        (Some("acl.events.P1"), Some("topic_mismatch"))
    );
    // The outbox (its own consumer group) delivered the alert.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.delivered().is_empty() {
        assert!(Instant::now() < deadline, "the webhook got the alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = drain(&admin, &kafka.alerts_topic).await;
    assert_eq!(
        all.iter()
            .map(|a| payload(a)["incident_id"].as_str().unwrap_or("").to_string())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["OWN".to_string()]),
        "only P1's own incident is alerted"
    );
    assert_eq!(m.rejected.with_label_values(&["topic_mismatch"]).get(), 1);
    daemon.stop().await.expect("clean stop");

    // Restarted, it restores its state (the state reader's group) under the same ACLs.
    let cfg = Config::from_toml(&text, None, false).expect("config");
    let daemon = regwatch::app::spawn(cfg)
        .await
        .expect("the daemon restarts");
    let m = daemon.running.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.partitions.get() < 2 || m.restoring.get() != 0 || m.state_restored.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "state restored: {} records, {} failures",
            m.state_restored.get(),
            m.restore_failures.get()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(m.restore_failures.get(), 0);
    daemon.stop().await.expect("clean stop");
    eprintln!(
        "acls: {} ACL lines applied in {applied_in:?}; test took {:?}",
        acls.len(),
        t0.elapsed()
    );
}
