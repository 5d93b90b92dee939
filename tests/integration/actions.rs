//! People's actions on incidents (issue 14, item 1): in the engine (acknowledge stops the
//! reminders and keeps the grade, close resolves with trigger `closed` naming who and why,
//! refusals say why, replay applies action lines), and end to end on the real broker
//! through `POST /actions` and `regwatch act`: authorized, refused and counted, recorded on
//! the audit topic and in the incident's timeline, and kept across a restart.

use std::time::{Duration, Instant};

use regwatch::actions::{Action, Kind, SCHEMA};
use regwatch::alert::Trigger;
use regwatch::config::Config;
use regwatch::score::EngineSettings;
use serde_json::{json, Value};

use crate::broker::{produce, tempdir, Broker};
use crate::kafka::{collect, config_text, event, payload, regwatch_bin};
use crate::support::{at, infosec, quiet, Sandbox};

fn action(kind: Kind, incident: &str, minutes: f64) -> Action {
    Action {
        schema: SCHEMA.into(),
        action_id: format!("a-{}-{incident}", kind.as_str()),
        action: kind,
        participant_id: "P".into(),
        incident_id: incident.into(),
        actor: "alice".into(),
        reason: "the participant confirmed by phone".into(),
        at: at(minutes),
        starts_at: None,
        ends_at: None,
        silence_id: None,
        receiver: None,
        alert_id: None,
    }
}

fn reminding() -> Sandbox {
    Sandbox::one(
        regwatch::registry::ParticipantKind::Broker,
        2_500_000,
        EngineSettings {
            reminder_interval_ms: 600_000,
            ..quiet()
        },
    )
}

fn leak(minutes: f64, incident: &str) -> Value {
    let mut e = infosec(minutes, "data_leak", json!({"records_exposed": 200_000}));
    e["incident_id"] = json!(incident);
    e
}

#[test]
fn an_acknowledged_incident_reminds_no_more_and_keeps_its_grade() {
    let mut s = reminding();
    s.send(leak(0.0, "I")).unwrap();
    s.send(leak(0.0, "J")).unwrap();
    s.advance(11.0);
    let reminders = |a: &[regwatch::alert::Alert], i: &str| {
        a.iter()
            .filter(|a| a.trigger == Trigger::Reminder && a.incident_id.as_deref() == Some(i))
            .count()
    };
    let first = s.take();
    assert_eq!(reminders(&first, "I"), 1, "reminders run before the ack");
    s.engine.advance_to(at(12.0), &mut s.alerts);
    s.engine
        .act(&action(Kind::Ack, "I", 12.0), &mut s.alerts)
        .expect("acknowledged");
    s.advance(60.0);
    let later = s.take();
    assert_eq!(reminders(&later, "I"), 0, "no reminder after the ack");
    assert!(
        reminders(&later, "J") >= 4,
        "the other incident still reminds"
    );
    let view = s
        .engine
        .incident_views(Some("P"), regwatch::score::Level::None)
        .into_iter()
        .find(|v| v.incident_id == "I")
        .unwrap();
    assert_eq!(view.acked_at, Some(at(12.0)));
    assert_eq!(view.level, regwatch::score::Level::Major, "the grade stays");
    assert_eq!(view.status, "open");
    let again = s.engine.act(&action(Kind::Ack, "I", 61.0), &mut s.alerts);
    assert!(again.unwrap_err().contains("acknowledged already"));
}

#[test]
fn closing_resolves_with_trigger_closed_and_says_who_and_why() {
    let mut s = reminding();
    s.send(leak(0.0, "I")).unwrap();
    s.take();
    s.engine.advance_to(at(5.0), &mut s.alerts);
    s.engine
        .act(&action(Kind::Close, "I", 5.0), &mut s.alerts)
        .expect("closed");
    let out = s.take();
    assert_eq!(out.len(), 1, "{out:?}");
    let a = &out[0];
    assert_eq!(a.status, regwatch::alert::AlertStatus::Resolved);
    assert_eq!(a.trigger, Trigger::Closed);
    assert_eq!(a.closed_by.as_deref(), Some("alice"));
    assert_eq!(
        a.close_reason.as_deref(),
        Some("the participant confirmed by phone")
    );
    assert_eq!(a.resolved_at, Some(at(5.0)));
    assert!(a.summary.contains("closed by alice"), "{}", a.summary);
    // A resolved incident takes a note, nothing else; an unknown one nothing at all.
    let refused = s.engine.act(&action(Kind::Ack, "I", 6.0), &mut s.alerts);
    assert!(refused.unwrap_err().contains("resolved already"));
    assert!(s
        .engine
        .act(&action(Kind::Annotate, "I", 6.0), &mut s.alerts)
        .is_ok());
    let unknown = s
        .engine
        .act(&action(Kind::Close, "NOPE", 6.0), &mut s.alerts);
    assert!(unknown.unwrap_err().contains("unknown incident"));
    // Later reports of it are after its resolution.
    assert_eq!(
        s.send(leak(7.0, "I")).unwrap(),
        regwatch::score::Outcome::AfterResolution
    );
    assert!(s.take().is_empty());
}

#[test]
fn replay_applies_action_lines_at_their_time() {
    let lines = [
        serde_json::to_string(&{
            let mut e = leak(0.0, "I");
            e["schema"] = json!("regwatch.event.v1");
            e["event_id"] = json!("e1");
            e
        })
        .unwrap(),
        serde_json::to_string(&action(Kind::Close, "I", 30.0)).unwrap(),
        serde_json::to_string(&action(Kind::Ack, "I", 31.0)).unwrap(),
    ]
    .join("\n");
    let mut s = reminding();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary =
        regwatch::replay::replay(&mut s.engine, lines.as_bytes(), &mut out, &mut err, None)
            .unwrap();
    let alerts: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let closed = alerts.last().unwrap();
    assert_eq!(closed["trigger"], "closed");
    assert_eq!(closed["status"], "resolved");
    assert_eq!(closed["at"], json!(at(30.0)));
    assert_eq!(summary.rejected, 1, "the ack after the close is refused");
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("line 3: action refused"), "{err}");
}

/// A participant's forgery: a `close` of its own incident written straight to its events
/// topic, marked as an action, with a made-up `regwatch.mac`.
pub(crate) async fn forge_close(broker: &Broker, topic: &str, participant: &str, incident: &str) {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut forged = action(Kind::Close, incident, 0.0);
    forged.participant_id = participant.into();
    forged.at = regwatch::time::wall_now();
    let value = serde_json::to_vec(&forged).unwrap();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "regwatch.action",
            value: Some("close"),
        })
        .insert(Header {
            key: "regwatch.mac",
            value: Some("00112233445566778899aabbccddeeff"),
        });
    broker
        .producer()
        .send(
            rdkafka::producer::FutureRecord::to(topic)
                .key(participant)
                .payload(value.as_slice())
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("the forgery is written");
}

/// A daemon's configuration for acting: `config_text` with an audit topic, the desk's
/// history and the two token files (written under `dir`).
pub(crate) fn acting_config(
    broker: &Broker,
    name: &str,
    partitions: u32,
    dir: &std::path::Path,
) -> String {
    format!(
        "{}\n{}",
        config_text(broker, name, partitions)
            .replacen(
                "[kafka]\n",
                &format!("[kafka]\naudit_topic = \"{name}.audit\"\n"),
                1
            )
            .replacen(
                "[http]\n",
                &format!("[history]\ntopic = \"{name}.history\"\nstale_after = \"5s\"\n[http]\n"),
                1
            ),
        tokens(dir)
    )
}

/// The token files of a daemon: a supervisor's and an operator's.
pub(crate) fn tokens(dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("supervisor.token"),
        "supervisor-token-0123456789\n",
    )
    .unwrap();
    std::fs::write(dir.join("operator.token"), "operator-token-0123456789\n").unwrap();
    format!(
        "[[http.tokens]]\nrole = \"supervisor\"\nfile = {:?}\n[[http.tokens]]\nrole = \"operator\"\nfile = {:?}\n",
        dir.join("supervisor.token").display().to_string(),
        dir.join("operator.token").display().to_string()
    )
}

pub(crate) async fn post(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    body: Value,
) -> (u16, String) {
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/actions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("the API answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn story(addr: std::net::SocketAddr, incident: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/incidents/P1/{incident}"))
        .bearer_auth("supervisor-token-0123456789")
        .send()
        .await
        .expect("the API answers")
        .text()
        .await
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Waits until `incident`'s story satisfies `done`.
async fn wait_story(
    addr: std::net::SocketAddr,
    incident: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = story(addr, incident).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn timeline_actions(s: &Value) -> Vec<(String, String)> {
    s["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "action")
        .map(|e| {
            (
                e["record"]["action"].as_str().unwrap_or("").to_string(),
                e["record"]["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_through_the_api_are_authorized_applied_audited_and_kept() {
    let broker = Broker::start();
    let name = "acts";
    broker.create_topic(&format!("{name}.events"), 2);
    let dir = tempdir("actions");
    std::fs::create_dir_all(&dir).unwrap();
    let text = acting_config(&broker, name, 2, &dir);
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg = Config::from_toml(&text, None, false).expect("test config");
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");
    let addr = daemon.running.http.unwrap();
    let mut seq = 0;
    let events: Vec<_> = ["ACKED", "CLOSED"]
        .iter()
        .map(|i| {
            event(
                json!({"participant_id": "P1", "kind": "infosec", "incident_id": i,
                       "category": "data_leak", "records_exposed": 200_000}),
                &mut seq,
            )
        })
        .collect();
    produce(&broker.producer(), &format!("{name}.events"), &events).await;
    for i in ["ACKED", "CLOSED"] {
        wait_story(addr, i, "the incident in the desk", |s| {
            s["incident"]["level"] == "major"
        })
        .await;
    }
    let body = |action: &str, incident: &str| {
        json!({"action": action, "participant_id": "P1", "incident_id": incident,
               "reason": "confirmed with the participant", "actor": "alice"})
    };
    let m = daemon.running.metrics.clone();
    let counted = |a: &str, o: &str| m.actions.with_label_values(&[a, o]).get();

    // A participant cannot forge one: dead-lettered, counted, nothing applied.
    forge_close(&broker, &format!("{name}.events"), "P1", "CLOSED").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.rejected.with_label_values(&["untrusted_action"]).get() < 1 {
        assert!(Instant::now() < deadline, "the forgery is refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Refused: no token, a reader's token, an unknown incident, a bad body.
    assert_eq!(post(addr, None, body("ack", "ACKED")).await.0, 401);
    let (status, said) = post(
        addr,
        Some("supervisor-token-0123456789"),
        body("ack", "ACKED"),
    )
    .await;
    assert_eq!(status, 403, "{said}");
    assert!(said.contains("operator role"), "{said}");
    let op = Some("operator-token-0123456789");
    let (status, said) = post(addr, op, body("ack", "NOPE")).await;
    assert_eq!(status, 404, "{said}");
    let (status, said) = post(addr, op, body("erase", "ACKED")).await;
    assert_eq!(status, 400, "{said}");
    assert_eq!(counted("ack", "forbidden"), 2);
    assert_eq!(counted("ack", "unknown_incident"), 1);
    assert_eq!(counted("unknown", "invalid"), 1);

    // Acknowledge through the API, close through the CLI.
    let (status, said) = post(addr, op, body("ack", "ACKED")).await;
    assert_eq!(status, 202, "{said}");
    let accepted: Value = serde_json::from_str(&said).unwrap();
    assert!(accepted["actor"]
        .as_str()
        .unwrap()
        .starts_with("alice (operator token "));
    let token_file = dir.join("operator.token");
    let out = std::process::Command::new(regwatch_bin())
        .args([
            "act",
            "close",
            "P1/CLOSED",
            "--reason",
            "abandoned; confirmed by phone",
        ])
        .args(["--actor", "bob", "--url", &format!("http://{addr}")])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Applied by the owning partition: the timeline says so; the close is a resolved alert
    // with trigger closed that names who and why.
    let acked = wait_story(addr, "ACKED", "the ack in the timeline", |s| {
        timeline_actions(s) == [("ack".to_string(), "applied".to_string())]
            && !s["incident"]["acked_at"].is_null()
    })
    .await;
    assert_eq!(acked["incident"]["status"], "open");
    assert_eq!(acked["incident"]["level"], "major", "the grade stays");
    wait_story(addr, "CLOSED", "the close in the timeline", |s| {
        timeline_actions(s) == [("close".to_string(), "applied".to_string())]
            && s["incident"]["status"] == "resolved"
    })
    .await;
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "acts-alerts",
        Duration::from_secs(30),
        |seen| seen.iter().any(|m| payload(m)["trigger"] == "closed"),
    )
    .await;
    let closed = alerts
        .iter()
        .map(payload)
        .find(|a| a["trigger"] == "closed")
        .unwrap();
    assert_eq!(closed["incident_id"], "CLOSED");
    assert_eq!(closed["status"], "resolved");
    assert!(closed["closed_by"].as_str().unwrap().starts_with("bob"));
    assert_eq!(closed["close_reason"], "abandoned; confirmed by phone");
    // Closing what is resolved is refused.
    let (status, said) = post(addr, op, body("close", "CLOSED")).await;
    assert_eq!(status, 409, "{said}");

    // The audit topic: who, when, what, why, where it went; signed.
    let audit = collect(
        &kafka,
        &format!("{name}.audit"),
        "acts-audit",
        Duration::from_secs(30),
        |a| a.len() >= 2,
    )
    .await;
    let records: Vec<Value> = audit.iter().map(payload).collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().any(|r| r["action"] == "ack"
        && r["why"] == "confirmed with the participant"
        && r["incident"] == "ACKED"));
    assert!(records
        .iter()
        .any(|r| r["action"] == "close" && r["actor"].as_str().unwrap().starts_with("bob")));
    assert!(records.iter().all(|r| r["to"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{name}.events/"))));
    assert!(audit
        .iter()
        .all(|m| regwatch::ingest::tail::header(m, "regwatch.mac").is_some()));

    // Kept across a restart: the acknowledgement is in the partition's state.
    daemon.stop().await.expect("clean stop");
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("the daemon starts again");
    let addr = daemon.running.http.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (local, restored) = loop {
        let local: Value = reqwest::Client::new()
            .get(format!("http://{addr}/incidents?scope=local"))
            .bearer_auth("supervisor-token-0123456789")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let restored = local["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["incident_id"] == "ACKED")
            .cloned();
        if let (Some(r), true) = (restored, local["complete"] == true) {
            break (local, r);
        }
        assert!(Instant::now() < deadline, "restored: {local:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        restored["acked_at"], acked["incident"]["acked_at"],
        "{local:#}"
    );
    assert!(local["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["incident_id"] != "CLOSED"));

    // And across a rebalance: a second instance takes a partition; the acknowledgement is
    // wherever the incident now lives, and an action reaches that owner.
    let second = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("a second instance starts");
    let (a_m, b_m) = (
        daemon.running.metrics.clone(),
        second.running.metrics.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while a_m.partitions.get() != 1 || b_m.partitions.get() != 1 {
        assert!(Instant::now() < deadline, "the partitions are shared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b_addr = second.running.http.unwrap();
    let (status, said) = post(b_addr, op, body("annotate", "ACKED")).await;
    assert_eq!(status, 202, "{said}");
    let annotated = wait_story(b_addr, "ACKED", "the note from the owner", |s| {
        timeline_actions(s).contains(&("annotate".to_string(), "applied".to_string()))
    })
    .await;
    assert_eq!(
        annotated["incident"]["acked_at"],
        acked["incident"]["acked_at"]
    );
    second.stop().await.expect("clean stop");
    daemon.stop().await.expect("clean stop");
}
