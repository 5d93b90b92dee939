//! `regwatch rules diff OLD NEW --config F` on a real broker: the dry run reads the running
//! deployment's state, shows the incidents a reload would change (and those that keep a
//! level the new grid alone no longer justifies), writes nothing, and predicts what the
//! daemon then does when the file is reloaded for real.

use std::path::Path;
use std::time::{Duration, Instant};

use regwatch::config::Config;
use serde_json::{json, Value};

use crate::broker::{produce, tempdir, Broker};
use crate::kafka::{collect, config_text, event, payload, regwatch_bin};

/// The built-in grid with `il.records.major` lowered to 15,000 records and the
/// credentials rule removed.
fn new_grid(old: &str) -> String {
    let lowered = old.replacen(
        "all = [\"records_exposed >= 100000\"]",
        "all = [\"records_exposed >= 15000\"]",
        1,
    );
    assert_ne!(lowered, old, "the grid has il.records.major");
    let start = lowered
        .find("[[rule]]\nid = \"il.records.credentials.larger\"")
        .expect("the grid has the credentials rule");
    let end = start + lowered[start..].find("\n\n").expect("a blank line ends it") + 2;
    format!("{}{}", &lowered[..start], &lowered[end..])
}

fn diff(old: &Path, new: &Path, cfg: &Path, json: bool) -> std::process::Output {
    let mut c = std::process::Command::new(regwatch_bin());
    c.args(["rules", "diff"])
        .arg(old)
        .arg(new)
        .arg("--config")
        .arg(cfg);
    if json {
        c.args(["--json", "--exit-code"]);
    }
    c.output().expect("regwatch rules diff runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_predicts_what_a_reload_does_and_writes_nothing() {
    let broker = Broker::start();
    let name = "rdiff";
    broker.create_topic(&format!("{name}.events"), 2);
    let dir = tempdir("rules-diff");
    std::fs::create_dir_all(&dir).unwrap();
    let old_text = std::fs::read_to_string("config/rules.toml").unwrap();
    let (old, new, live) = (
        dir.join("old.toml"),
        dir.join("new.toml"),
        dir.join("rules.toml"),
    );
    std::fs::write(&old, &old_text).unwrap();
    std::fs::write(&new, new_grid(&old_text)).unwrap();
    std::fs::write(&live, &old_text).unwrap();
    let text = config_text(&broker, name, 2).replacen(
        "[rules]\n",
        &format!(
            "[rules]\npath = {:?}\nwatch = \"1s\"\n",
            live.display().to_string()
        ),
        1,
    );
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg = Config::from_toml(&text, None, false).expect("test config");
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");

    let mut seq = 0;
    let leak = |p: &str, id: &str, records: u64, seq: &mut u32| {
        event(
            json!({"participant_id": p, "kind": "infosec", "incident_id": id,
                   "category": "data_leak", "records_exposed": records}),
            seq,
        )
    };
    let mut cred = leak("P2", "CRED", 60, &mut seq);
    let mut v: Value = serde_json::from_slice(&cred.1).unwrap();
    v["record_type"] = json!("credentials");
    cred.1 = serde_json::to_vec(&v).unwrap();
    let events = [
        leak("P1", "SMALL", 20_000, &mut seq),
        leak("P1", "BIG", 200_000, &mut seq),
        cred,
    ];
    produce(&broker.producer(), &format!("{name}.events"), &events).await;

    // The dry run against the running deployment, once its state holds the three incidents.
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer: Value = loop {
        let out = diff(&old, &new, &cfg_path, true);
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            if v["open_incidents"] == 3 {
                assert_eq!(out.status.code(), Some(1), "--exit-code: changes; {said}");
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "three incidents in state: {said}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        answer["partitions"],
        json!(["rdiff.events[0]", "rdiff.events[1]"])
    );
    let rules: Vec<(&str, &str)> = answer["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        [
            ("il.records.major", "changed"),
            ("il.records.credentials.larger", "removed")
        ]
    );
    let incidents = answer["incidents"].as_array().unwrap();
    let find = |id: &str| incidents.iter().find(|c| c["incident_id"] == id);
    assert!(find("BIG").is_none(), "BIG is major either way: {answer:#}");
    let small = find("SMALL").expect("SMALL changes");
    let was = small["before"]["investor_loss"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(was == "general" || was == "larger", "{small}");
    assert_eq!(small["after"]["investor_loss"], "major");
    assert_eq!(small["before"]["exemption"], "eligible");
    assert_eq!(small["after"]["exemption"], "ineligible");
    let predicted = &small["alert"];
    assert_eq!(
        predicted["investor_loss"]["reasons"][0]["rule"],
        "il.records.major"
    );
    let cred = find("CRED").expect("CRED holds a level the new grid does not justify");
    assert_eq!(
        cred["before"], cred["after"],
        "levels never fall while open"
    );
    assert_eq!(cred["after"]["investor_loss"], "larger");
    assert_eq!(cred["justified"]["investor_loss"], "general");
    assert!(cred.get("alert").is_none());

    // The text says the same, a line per incident.
    let out = diff(&old, &new, &cfg_path, false);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("open incidents: 3 in 2 partitions; 1 would change"),
        "{stdout}"
    );
    assert!(
        stdout.contains("P1/SMALL") && stdout.contains(&format!("investor_loss {was} -> major")),
        "{stdout}"
    );
    assert!(
        stdout.contains("exemption eligible -> ineligible"),
        "{stdout}"
    );
    assert!(
        stdout.contains("P2/CRED") && stdout.contains("stays larger"),
        "{stdout}"
    );

    // Nothing was written: the daemon still holds the old grades.
    let held = crate::compaction::incidents(daemon.running.http.unwrap()).await;
    let small_now = held.iter().find(|i| i["incident_id"] == "SMALL").unwrap();
    assert_eq!(
        small_now["investor_loss"]["level"],
        was.as_str(),
        "{small_now}"
    );

    // The reload for real does what the dry run said: SMALL rises with trigger `reload`
    // (its alert carries the same levels and reasons), CRED stays, BIG is left alone.
    std::fs::write(&live, std::fs::read_to_string(&new).unwrap()).unwrap();
    let alerts = collect(
        &kafka,
        &format!("{name}.alerts"),
        "rdiff-check",
        Duration::from_secs(60),
        |seen| {
            seen.iter().any(|m| {
                let a = payload(m);
                a["incident_id"] == "SMALL" && a["level"] == "major"
            })
        },
    )
    .await;
    let real = alerts
        .iter()
        .map(payload)
        .find(|a| a["incident_id"] == "SMALL" && a["level"] == "major")
        .unwrap();
    for field in [
        "trigger",
        "level",
        "exemption",
        "investor_loss",
        "market_order",
    ] {
        assert_eq!(real[field], predicted[field], "{field}");
    }
    assert!(!alerts
        .iter()
        .map(payload)
        .any(|a| a["incident_id"] == "CRED" && a["trigger"] == "reload"));
    daemon.stop().await.expect("clean stop");
}
