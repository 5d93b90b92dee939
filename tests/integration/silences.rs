//! Silences (issue 14, item 1) in the engine: a participant's telemetry gap that falls due
//! inside an operator's window is held (nothing alerted, nor its end), and alerted when the
//! window ends with the participant still silent, or when the window is ended early; a gap
//! alerted before the window keeps its end; reminders inside a window are not sent but
//! counted; the windows and a held gap survive a restore; replay applies silence lines.
//! End to end on the broker (the API, broadcast to every partition, `/silences`, a restart
//! and a rebalance, the CLI, the audit topic, refusals) is `silences_through_the_api_hold_gaps_and_are_listed`
//! below.

use regwatch::actions::{Action, Kind, SCHEMA};
use regwatch::alert::{Alert, AlertStatus, AlertType, Trigger};
use regwatch::registry::ParticipantKind;
use regwatch::score::{EngineSettings, StateChange};

use crate::support::{at, heartbeat, infosec, Sandbox};

fn act(kind: Kind, id: &str, minutes: f64) -> Action {
    Action {
        schema: SCHEMA.into(),
        action_id: id.into(),
        action: kind,
        participant_id: "P".into(),
        incident_id: String::new(),
        actor: "alice".into(),
        reason: "announced maintenance".into(),
        at: at(minutes),
        starts_at: None,
        ends_at: None,
        silence_id: None,
        receiver: None,
        alert_id: None,
    }
}

fn silence(id: &str, from: f64, until: f64) -> Action {
    Action {
        starts_at: Some(at(from)),
        ends_at: Some(at(until)),
        ..act(Kind::Silence, id, from)
    }
}

fn unsilence(id: &str, of: &str, minutes: f64) -> Action {
    Action {
        silence_id: Some(of.into()),
        ..act(Kind::Unsilence, id, minutes)
    }
}

/// One broker `P` watched for 5-minute gaps, reminders every 10 minutes.
fn watched() -> Sandbox {
    Sandbox::one(
        ParticipantKind::Broker,
        2_500_000,
        EngineSettings {
            reminder_interval_ms: 600_000,
            ..EngineSettings::default()
        },
    )
}

fn gaps(alerts: &[Alert]) -> Vec<(AlertStatus, f64)> {
    alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::TelemetryGap)
        .map(|a| {
            (
                a.status,
                (a.at.millis() - at(0.0).millis()) as f64 / 60_000.0,
            )
        })
        .collect()
}

#[test]
fn a_gap_inside_a_window_is_held_and_nothing_is_alerted_if_heard_before_it_ends() {
    let mut s = watched();
    s.send(heartbeat("P", 0.0)).unwrap();
    s.engine
        .act(&silence("s1", 1.0, 60.0), &mut s.alerts)
        .unwrap();
    s.advance(30.0);
    assert!(
        gaps(&s.take()).is_empty(),
        "held: the window covers the gap"
    );
    s.send(heartbeat("P", 40.0)).unwrap();
    s.advance(59.0);
    assert!(
        gaps(&s.take()).is_empty(),
        "heard again inside the window: neither the gap nor its end"
    );
    // Silent again from 40: that gap (due at 45) is held too, until the window ends.
    assert_eq!(s.engine.stats().gaps_silenced, 2);
    s.advance(70.0);
    assert_eq!(gaps(&s.take()), vec![(AlertStatus::Firing, 60.0)]);
}

#[test]
fn a_held_gap_fires_when_its_window_ends_with_the_participant_still_silent() {
    let mut s = watched();
    s.send(heartbeat("P", 0.0)).unwrap();
    s.engine
        .act(&silence("s1", 0.0, 30.0), &mut s.alerts)
        .unwrap();
    // A second window that touches the first holds on through it.
    s.engine
        .act(&silence("s2", 30.0, 45.0), &mut s.alerts)
        .unwrap();
    s.advance(44.0);
    assert!(gaps(&s.take()).is_empty());
    s.advance(50.0);
    let out = s.take();
    assert_eq!(gaps(&out), vec![(AlertStatus::Firing, 45.0)]);
    assert_eq!(
        out[0].last_heard_at,
        Some(at(0.0)),
        "silent since 0, as it was"
    );
    s.send(heartbeat("P", 55.0)).unwrap();
    let back = s.take();
    assert_eq!(gaps(&back), vec![(AlertStatus::Resolved, 55.0)]);
    assert_eq!(back[0].trigger, Trigger::Heard);
}

#[test]
fn ending_a_window_early_releases_its_held_gap_at_once_and_is_kept_expired() {
    let mut s = watched();
    s.send(heartbeat("P", 0.0)).unwrap();
    s.engine
        .act(&silence("s1", 0.0, 120.0), &mut s.alerts)
        .unwrap();
    s.advance(20.0);
    assert!(gaps(&s.take()).is_empty());
    s.engine
        .act(&unsilence("u1", "s1", 20.0), &mut s.alerts)
        .unwrap();
    assert_eq!(gaps(&s.take()), vec![(AlertStatus::Firing, 20.0)]);
    let kept = s.engine.silences("P");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].ends_at, at(20.0));
    assert_eq!(kept[0].expired_by.as_deref(), Some("alice"));
    // Refusals say why, and change nothing.
    let again = s.engine.act(&unsilence("u2", "s1", 21.0), &mut s.alerts);
    assert!(again.unwrap_err().contains("expired already"));
    let unknown = s.engine.act(&unsilence("u3", "nope", 21.0), &mut s.alerts);
    assert!(unknown.unwrap_err().contains("no silence"));
    let twice = s.engine.act(&silence("s1", 21.0, 30.0), &mut s.alerts);
    assert!(twice.unwrap_err().contains("applied already"));
    let mut stranger = silence("s9", 21.0, 30.0);
    stranger.participant_id = "Q".into();
    assert!(s
        .engine
        .act(&stranger, &mut s.alerts)
        .unwrap_err()
        .contains("unknown participant"));
}

#[test]
fn a_gap_alerted_before_the_window_still_has_its_end_alerted() {
    let mut s = watched();
    s.send(heartbeat("P", 0.0)).unwrap();
    s.advance(10.0);
    assert_eq!(
        gaps(&s.take()),
        vec![(AlertStatus::Firing, 5.0 + 1.0 / 60_000.0)]
    );
    s.engine
        .act(&silence("s1", 10.0, 60.0), &mut s.alerts)
        .unwrap();
    s.send(heartbeat("P", 20.0)).unwrap();
    assert_eq!(gaps(&s.take()), vec![(AlertStatus::Resolved, 20.0)]);
}

#[test]
fn reminders_inside_a_window_are_not_sent_but_counted() {
    let leak = |m: f64| {
        infosec(
            m,
            "data_leak",
            serde_json::json!({"records_exposed": 200_000}),
        )
    };
    let mut s2 = watched();
    s2.send(leak(0.0)).unwrap();
    s2.engine
        .act(&silence("s1", 15.0, 45.0), &mut s2.alerts)
        .unwrap();
    // Heartbeats keep gaps out of the way.
    for m in (1..=91).step_by(2) {
        s2.send(heartbeat("P", m as f64)).unwrap();
    }
    let reminders: Vec<u32> = s2
        .take()
        .iter()
        .filter(|a| a.trigger == Trigger::Reminder)
        .map(|a| a.reminder.unwrap())
        .collect();
    // Due at 10, 20, 30, 40, 50, 60, 70, 80, 90: 20, 30 and 40 fall inside [15, 45).
    assert_eq!(reminders, vec![1, 5, 6, 7, 8, 9]);
    assert_eq!(s2.engine.stats().reminders_silenced, 3);
}

#[test]
fn windows_and_a_held_gap_survive_a_restore() {
    let settings = EngineSettings {
        track_changes: true,
        ..EngineSettings::default()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, settings.clone());
    s.send(heartbeat("P", 0.0)).unwrap();
    s.engine
        .act(&silence("s1", 0.0, 30.0), &mut s.alerts)
        .unwrap();
    s.advance(20.0);
    assert!(gaps(&s.take()).is_empty());
    let records: Vec<_> = s
        .engine
        .take_changes()
        .into_iter()
        .filter_map(|c| match c {
            StateChange::Put(r) => Some(r),
            StateChange::Deleted(_) => None,
        })
        .collect();
    assert!(records
        .iter()
        .any(|r| matches!(r, regwatch::score::StateRecord::Silences(x) if x.silences.len() == 1)));
    let mut restored = Sandbox::one(ParticipantKind::Broker, 2_500_000, settings);
    let summary = restored.engine.restore(records);
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert_eq!(restored.engine.silences("P").len(), 1);
    restored.advance(29.0);
    assert!(
        gaps(&restored.take()).is_empty(),
        "still held after the restore"
    );
    restored.advance(35.0);
    assert_eq!(
        gaps(&restored.take()),
        vec![(AlertStatus::Firing, 30.0)],
        "fired at the window's end, as the uninterrupted engine would"
    );
}

#[test]
fn replay_applies_silence_lines() {
    let lines = [
        serde_json::to_string(&{
            let mut e = heartbeat("P", 0.0);
            e["schema"] = serde_json::json!("regwatch.event.v1");
            e["event_id"] = serde_json::json!("h0");
            e
        })
        .unwrap(),
        serde_json::to_string(&silence("s1", 0.0, 30.0)).unwrap(),
        serde_json::to_string(&{
            let mut e = heartbeat("P", 40.0);
            e["schema"] = serde_json::json!("regwatch.event.v1");
            e["event_id"] = serde_json::json!("h1");
            e
        })
        .unwrap(),
    ]
    .join("\n");
    let mut s = watched();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    regwatch::replay::replay(&mut s.engine, lines.as_bytes(), &mut out, &mut err, None).unwrap();
    let alerts: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a["status"].as_str().unwrap(), a["at"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("firing", at(30.0).to_string().as_str()),
            ("resolved", at(40.0).to_string().as_str())
        ],
        "{}",
        String::from_utf8_lossy(&err)
    );
}

/// `GET /silences` as a supervisor sees it.
async fn listed(addr: std::net::SocketAddr) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/silences"))
        .bearer_auth("supervisor-token-0123456789")
        .send()
        .await
        .expect("the API answers")
        .text()
        .await
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_through_the_api_hold_gaps_and_are_listed() {
    use std::time::{Duration, Instant};

    use regwatch::config::Config;
    use regwatch::time::wall_now;
    use serde_json::{json, Value};

    use crate::actions::{acting_config, post};
    use crate::broker::{produce, tempdir, Broker};
    use crate::kafka::{collect, event, payload, regwatch_bin};

    let broker = Broker::start();
    let name = "hush";
    broker.create_topic(&format!("{name}.events"), 2);
    let dir = tempdir("silences");
    std::fs::create_dir_all(&dir).unwrap();
    let text = acting_config(&broker, name, 2, &dir)
        .replace("telemetry_gap = \"off\"", "telemetry_gap = \"2s\"");
    let cfg = Config::from_toml(&text, None, false).expect("test config");
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");
    let addr = daemon.running.http.unwrap();
    let m = daemon.running.metrics.clone();
    let counted = |a: &str, o: &str| m.actions.with_label_values(&[a, o]).get();
    let op = Some("operator-token-0123456789");
    let window = |ends: i64| {
        json!({"action": "silence", "participant_id": "P1", "actor": "alice",
               "reason": "announced maintenance, ticket CHG-1234",
               "ends_at": wall_now().plus_millis(ends).to_string()})
    };

    // Refused: a reader, a window already over, a participant not registered.
    let (status, said) = post(addr, Some("supervisor-token-0123456789"), window(60_000)).await;
    assert_eq!(status, 403, "{said}");
    let (status, said) = post(addr, op, window(-1_000)).await;
    assert_eq!(status, 400, "{said}");
    assert!(said.contains("ended already"), "{said}");
    let mut stranger = window(60_000);
    stranger["participant_id"] = json!("NOBODY");
    assert_eq!(post(addr, op, stranger).await.0, 404);
    assert_eq!(counted("silence", "forbidden"), 1);
    assert_eq!(counted("silence", "expired"), 1);
    assert_eq!(counted("silence", "unknown_participant"), 1);

    // Accepted: written to every partition the participant's records may be on.
    // Ten minutes: longer than anything below takes, however slow the machine (the test
    // ends it early).
    let (status, said) = post(addr, op, window(600_000)).await;
    assert_eq!(status, 202, "{said}");
    let accepted: Value = serde_json::from_str(&said).unwrap();
    let id = accepted["action_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["to"].as_array().unwrap().len(), 2, "{said}");

    // P1 and P2 are heard once, then fall silent: P2's gap is alerted, P1's is held.
    let mut seq = 0;
    let beats: Vec<_> = ["P1", "P2"]
        .iter()
        .map(|p| event(json!({"participant_id": p, "kind": "heartbeat"}), &mut seq))
        .collect();
    produce(&broker.producer(), &format!("{name}.events"), &beats).await;
    let held = || {
        m.supervision
            .silenced
            .with_label_values(&["telemetry_gap"])
            .get()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while held() < 1 {
        assert!(
            Instant::now() < deadline,
            "P1's gap held: silence applied {} refused {}, gaps alerted P1 {} P2 {}, untrusted {}, partitions {}, lag {:?}, clock lag {:?}, heartbeats {}",
            counted("silence", "applied"),
            counted("silence", "refused"),
            m.supervision.gaps.with_label_values(&["P1"]).get(),
            m.supervision.gaps.with_label_values(&["P2"]).get(),
            m.rejected.with_label_values(&["untrusted_action"]).get(),
            m.partitions.get(),
            (0..2)
                .map(|p| m.ops.lag_messages.with_label_values(&[&format!("{name}.events"), &p.to_string()]).get())
                .collect::<Vec<_>>(),
            (0..2)
                .map(|p| m.ops.clock_lag_seconds.with_label_values(&[&format!("{name}.events"), &p.to_string()]).get())
                .collect::<Vec<_>>(),
            m.render().lines().filter(|l| l.contains("heartbeat") && !l.starts_with("#")).collect::<Vec<_>>().join(" | ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gap_of = |seen: &[rdkafka::message::OwnedMessage], p: &str| {
        seen.iter()
            .map(payload)
            .filter(|a| a["type"] == "telemetry_gap" && a["participant_id"] == p)
            .collect::<Vec<_>>()
    };
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "hush-alerts-1",
        Duration::from_secs(30),
        |seen| !gap_of(seen, "P2").is_empty(),
    )
    .await;
    assert!(gap_of(&alerts, "P1").is_empty(), "P1 is silenced");

    // Listed, active, with its author and reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    let active = loop {
        let l = listed(addr).await;
        if l["count"] == 1 {
            break l["silences"][0].clone();
        }
        assert!(Instant::now() < deadline, "listed: {l:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(active["silence_id"], id.as_str());
    assert_eq!(active["state"], "active");
    assert_eq!(active["participant_id"], "P1");
    assert!(active["author"].as_str().unwrap().starts_with("alice"));
    assert_eq!(active["reason"], "announced maintenance, ticket CHG-1234");

    // Kept across a restart: the window and the held gap are in the partition's state.
    daemon.stop().await.expect("clean stop");
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("the daemon starts again");
    let addr = daemon.running.http.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.running.metrics.partitions.get() != 2
        || listed(addr).await["silences"][0]["state"] != "active"
    {
        assert!(Instant::now() < deadline, "the partitions are taken again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And across a rebalance: a second instance takes one of the two partitions (with its
    // windows and held gaps), and the end of the silence reaches whichever owns P1's.
    let second = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("a second instance starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.running.metrics.partitions.get() != 1
        || second.running.metrics.partitions.get() != 1
    {
        assert!(Instant::now() < deadline, "the partitions are shared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let addr = second.running.http.unwrap();

    // Ended early through the CLI: P1's held gap fires now; the silence is kept, expired.
    let out = std::process::Command::new(regwatch_bin())
        .args([
            "act",
            "unsilence",
            "P1",
            &id,
            "--reason",
            "maintenance done",
        ])
        .args(["--actor", "bob", "--url", &format!("http://{addr}")])
        .arg("--token-file")
        .arg(dir.join("operator.token"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "hush-alerts-2",
        Duration::from_secs(30),
        |seen| !gap_of(seen, "P1").is_empty(),
    )
    .await;
    let p1 = gap_of(&alerts, "P1");
    assert_eq!(
        p1.len(),
        1,
        "held through the restart and the rebalance, alerted once: {p1:?}"
    );
    assert_eq!(p1[0]["status"], "firing");
    let deadline = Instant::now() + Duration::from_secs(30);
    let expired = loop {
        let l = listed(addr).await;
        if l["silences"][0]["state"] == "expired" {
            break l["silences"][0].clone();
        }
        assert!(Instant::now() < deadline, "expired: {l:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(expired["expired_by"].as_str().unwrap().starts_with("bob"));
    // The participant's page on the board shows it, for a supervisor to cite.
    let page = reqwest::Client::new()
        .get(format!("http://{addr}/board/participants/P1"))
        .bearer_auth("supervisor-token-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<h2>Silences</h2>")
            && page.contains(&id)
            && page.contains("announced maintenance, ticket CHG-1234")
            && page.contains("<td>expired</td>"),
        "{page}"
    );
    let (status, said) = post(
        addr,
        op,
        json!({"action": "unsilence", "participant_id": "P1", "silence_id": id,
               "actor": "bob", "reason": "again"}),
    )
    .await;
    assert_eq!(status, 409, "{said}");
    let (status, _) = post(
        addr,
        op,
        json!({"action": "unsilence", "participant_id": "P1", "silence_id": "nope",
               "actor": "bob", "reason": "again"}),
    )
    .await;
    assert_eq!(status, 404);

    // The CLI lists it too.
    let out = std::process::Command::new(regwatch_bin())
        .args(["silences", "--url", &format!("http://{addr}")])
        .arg("--token-file")
        .arg(dir.join("supervisor.token"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains(&id) && table.contains("expired"),
        "{table}"
    );

    // The audit topic holds both acts, who, why and where they went.
    let audit = collect(
        &kafka,
        &format!("{name}.audit"),
        "hush-audit",
        Duration::from_secs(30),
        |a| a.len() >= 2,
    )
    .await;
    let records: Vec<Value> = audit.iter().map(payload).collect();
    assert!(records.iter().any(|r| r["action"] == "silence"
        && r["participant"] == "P1"
        && r["ends_at"].is_string()
        && r["to"].as_array().unwrap().len() == 2));
    assert!(records
        .iter()
        .any(|r| r["action"] == "unsilence" && r["silence_id"] == id.as_str()));
    second.stop().await.expect("clean stop");
    daemon.stop().await.expect("clean stop");
}
