//! The daemon against a real broker over SASL/SCRAM-SHA-512 and TLS: a test CA made here
//! with openssl signs the broker's certificate, the SCRAM credential is created when the
//! broker's storage is formatted, and regwatch reads its password from a file. A wrong
//! password is a clear error at start-up, not a hang.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use regwatch::config::Config;
use serde_json::json;

use crate::broker::{produce, tempdir, Broker, Options};
use crate::kafka::{collect, event};

/// Runs the openssl command line in `dir`; panics with its error output when it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian package openssl; .ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a broker certificate for 127.0.0.1 (PEM: ca.crt, broker.key, broker.crt).
pub(crate) fn test_ca(dir: &Path) {
    let run = |args: &[&str]| openssl(dir, args);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=regwatch test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "broker.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

fn config(broker: &Broker, dir: &Path, password_file: &Path) -> Config {
    let text = format!(
        r#"
[engine]
telemetry_gap = "off"
[kafka]
brokers = "{}"
group_id = "secure"
topics = ["secure.events"]
alerts_topic = "secure.alerts"
dead_letter_topic = "secure.dlq"
state_topic = "secure.state"
reminders_topic = "secure.reminders"
topic_partitions = 1
replication_factor = 1
commit_interval = "200ms"
session_timeout = "6s"
[kafka.security]
protocol = "sasl_ssl"
ca_file = "{}"
sasl_mechanism = "SCRAM-SHA-512"
username = "regwatch"
password = {{ file = "{}" }}
[daemon]
tick = "100ms"
[http]
listen = "off"
[[participants]]
id = "P1"
kind = "fund_manager"
effective_customers = 800000
"#,
        broker
            .sasl_bootstrap
            .as_deref()
            .expect("a SASL_SSL listener"),
        dir.join("ca.crt").display(),
        password_file.display(),
    );
    Config::from_toml(&text, None, false).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_over_tls_works_and_a_wrong_password_fails_fast() {
    let dir = tempdir("tls");
    std::fs::create_dir_all(&dir).unwrap();
    test_ca(&dir);
    let broker = Broker::start_with(Options {
        nodes: 1,
        sasl_ssl: Some(dir.clone()),
        scram: vec![("regwatch".into(), "s3cret-scram-password".into())],
        props: Vec::new(),
    });
    broker.create_topic("secure.events", 1);

    // A wrong password: refused at start-up, naming the cause, within seconds.
    let wrong = dir.join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let t0 = Instant::now();
    let err = match regwatch::app::spawn(config(&broker, &dir, &wrong)).await {
        Ok(_) => panic!("a daemon with a wrong password must not start"),
        Err(e) => format!("{e:#}"),
    };
    let took = t0.elapsed();
    assert!(
        err.contains("Authentication") || err.contains("authentication"),
        "the error names the failed authentication: {err}"
    );
    assert!(
        !err.contains("not-the-password"),
        "the password is never shown: {err}"
    );
    assert!(took < Duration::from_secs(20), "it failed fast: {took:?}");

    // The right one, from a file: events in over the secured listener, alerts out.
    let right = dir.join("password");
    std::fs::write(&right, "s3cret-scram-password\n").unwrap();
    let cfg = config(&broker, &dir, &right);
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");
    let mut seq = 0;
    let leak = event(
        json!({"participant_id": "P1", "kind": "infosec", "incident_id": "LEAK",
               "category": "data_leak", "records_exposed": 150000}),
        &mut seq,
    );
    produce(&broker.producer(), "secure.events", &[leak]).await;
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "secure-reader",
        Duration::from_secs(60),
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(crate::kafka::payload(&alerts[0])["incident_id"], "LEAK");
    daemon.stop().await.expect("clean stop");
    eprintln!("sasl/tls: wrong password refused in {took:?}: {err}");
}
