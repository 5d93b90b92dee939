//! `regwatch dead-letters list | redrive` on a real broker: an event rejected for an
//! unregistered participant is graded once it is registered and redriven; an alert a
//! receiver refused reaches that receiver again (and only it) when redriven; every redrive
//! leaves a signed record on the audit topic, and a dead letter is not redriven twice by
//! mistake.

use std::path::Path;
use std::time::Duration;

use regwatch::config::Config;
use serde_json::{json, Value};

use crate::broker::{produce, tempdir, Broker};
use crate::kafka::{collect, config_text, event, payload, regwatch_bin};
use crate::webhook::{Hook, NEW_KEY};

fn cli(cfg: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(regwatch_bin())
        .arg("dead-letters")
        .arg(args[0])
        .arg("--config")
        .arg(cfg)
        .args(&args[1..])
        .output()
        .expect("regwatch dead-letters runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn acked(hook: &Hook, incident: &str) -> usize {
    hook.got()
        .iter()
        .filter(|g| g.status == 200 && g.json()["incident_id"] == incident)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_redriven_where_they_came_from_audited_and_once() {
    let broker = Broker::start();
    let name = "redrive";
    broker.create_topic(&format!("{name}.events"), 2);
    let (r, other) = (Hook::up().await, Hook::up().await);
    r.refuse("LEAK-R", 400);
    let receivers = format!(
        "[delivery]\ndead_letter_topic = \"{name}.alert-dlq\"\n[[delivery.receivers]]\nname = \"r\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n[[delivery.receivers]]\nname = \"other\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n",
        r.url(),
        other.url()
    );
    let text = format!(
        "{}\n{receivers}",
        config_text(&broker, name, 2).replacen(
            "[kafka]\n",
            &format!("[kafka]\naudit_topic = \"{name}.audit\"\n"),
            1
        )
    );
    let dir = tempdir("redrive");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let kafka = Config::from_toml(&text, None, false).unwrap().kafka;
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("the daemon starts");

    let mut seq = 0;
    let leak = |p: &str, id: &str, seq: &mut u32| {
        event(
            json!({"participant_id": p, "kind": "infosec", "incident_id": id,
                   "category": "data_leak", "records_exposed": 200_000}),
            seq,
        )
    };
    let events = [
        leak("P7", "NEWCOMER", &mut seq),
        leak("P1", "LEAK-R", &mut seq),
    ];
    produce(&broker.producer(), &format!("{name}.events"), &events).await;
    other
        .wait_for(
            "LEAK-R at the other receiver",
            Duration::from_secs(60),
            |_| acked(&other, "LEAK-R") == 1,
        )
        .await;
    for dlq in ["alert-dlq", "dlq"] {
        let topic = format!("{name}.{dlq}");
        collect(&kafka, &topic, &topic, Duration::from_secs(30), |d| {
            !d.is_empty()
        })
        .await;
    }

    // What is there.
    let (ok, said) = cli(&cfg_path, &["list"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("unregistered_participant") && said.contains("P7"),
        "{said}"
    );
    let (ok, said) = cli(&cfg_path, &["list", "--alerts", "--json"]);
    assert!(ok, "{said}");
    let listed: Value = serde_json::from_str(said.lines().next().unwrap()).unwrap();
    assert_eq!(listed["reason"], "http_status");
    assert_eq!(listed["receiver"], "r");
    assert_eq!(listed["redriven"], false);
    // Nothing is taken without a choice.
    let (ok, said) = cli(
        &cfg_path,
        &["redrive", "--alerts", "--why", "x", "--actor", "alice"],
    );
    assert!(!ok && said.contains("choose what to redrive"), "{said}");

    // The receiver is fixed: the refused alert goes back to it, and only to it.
    r.accept();
    let (ok, said) = cli(
        &cfg_path,
        &[
            "redrive",
            "--alerts",
            "--receiver",
            "r",
            "--why",
            "receiver fixed",
            "--actor",
            "alice",
        ],
    );
    assert!(ok && said.contains("redriven "), "{said}");
    r.wait_for("LEAK-R redriven", Duration::from_secs(60), |_| {
        acked(&r, "LEAK-R") == 1
    })
    .await;
    let refused = r.got()[0].header("idempotency-key").to_string();
    let again = r
        .got()
        .last()
        .unwrap()
        .header("idempotency-key")
        .to_string();
    assert_eq!(refused, again, "the same Idempotency-Key");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        acked(&other, "LEAK-R"),
        1,
        "the other receiver had it already"
    );

    // The participant is registered: its rejected event goes back and is graded.
    daemon.stop().await.expect("clean stop");
    let registered = format!(
        "{text}\n[[participants]]\nid = \"P7\"\nkind = \"broker\"\neffective_customers = 10000\ncalendar = \"always\"\n"
    );
    std::fs::write(&cfg_path, &registered).unwrap();
    let daemon = regwatch::app::spawn(Config::from_toml(&registered, None, false).unwrap())
        .await
        .expect("the daemon starts");
    let newcomer = |why: &str| {
        let args = [
            "redrive",
            "--participant",
            "P7",
            "--why",
            why,
            "--actor",
            "bob",
        ];
        cli(&cfg_path, &args)
    };
    let (ok, said) = newcomer("P7 registered");
    assert!(ok && said.contains("redriven "), "{said}");
    other
        .wait_for("the newcomer graded", Duration::from_secs(60), |_| {
            acked(&other, "NEWCOMER") == 1
        })
        .await;
    // Not twice by mistake.
    let (ok, said) = newcomer("again");
    assert!(ok && said.contains("redriven already"), "{said}");

    // The audit topic says who, what, why and where, signed.
    let audit = collect(
        &kafka,
        &format!("{name}.audit"),
        "rd-audit",
        Duration::from_secs(30),
        |a| a.len() >= 2,
    )
    .await;
    assert_eq!(audit.len(), 2);
    let records: Vec<Value> = audit.iter().map(payload).collect();
    let by = |actor: &str| records.iter().find(|a| a["actor"] == actor).unwrap();
    assert_eq!(by("alice")["action"], "redrive");
    assert_eq!(by("alice")["why"], "receiver fixed");
    assert_eq!(by("alice")["receiver"], "r");
    assert!(by("alice")["dead_letter"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{name}.alert-dlq/")));
    assert_eq!(by("bob")["participant"], "P7");
    assert!(by("bob")["to"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{name}.events/")));
    assert!(audit
        .iter()
        .all(|m| regwatch::ingest::tail::header(m, "regwatch.mac").is_some()));
    daemon.stop().await.expect("clean stop");
}
