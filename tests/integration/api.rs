//! The supervisors' incident API and the rules reload, against a real broker: the API
//! answers what an engine replaying the same events holds, filters by participant and
//! level, refuses bad queries; a reload regrades open incidents (reload alerts, a new rules
//! hash), a bad rules file is refused and counted while the old rules stay; SIGHUP reloads
//! the binary, whose JSON logs carry the documented field names.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regwatch::config::Config;
use regwatch::score::{ClockMode, Engine, EngineSettings, Level};
use serde_json::Value;

use crate::broker::{produce, Broker};
use crate::kafka::{collect, config_text, payload, run_binary, workload};

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("the HTTP endpoint answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn incidents(base: &str, query: &str) -> Value {
    let (status, body) = get(&format!("{base}/incidents{query}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn keys(v: &Value) -> BTreeSet<(String, String, String, String)> {
    v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["participant_id"].as_str().unwrap().to_string(),
                i["incident_id"].as_str().unwrap().to_string(),
                i["level"].as_str().unwrap().to_string(),
                i["exemption"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Polls `/metrics` until a line starts with `prefix` and ends with `value`.
async fn wait_metric(base: &str, prefix: &str, value: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if text
            .lines()
            .any(|l| l.starts_with(prefix) && l.ends_with(&format!(" {value}")))
        {
            return text;
        }
        assert!(Instant::now() < deadline, "{prefix} never reached {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The open incidents one engine holds after replaying `events` (what the API must show).
fn replayed(cfg: &Config, events: &[(String, Vec<u8>)]) -> Vec<regwatch::score::IncidentView> {
    let mut engine = Engine::new(
        Arc::new(cfg.registry.clone()),
        Arc::new(cfg.rules.clone()),
        EngineSettings {
            clock: ClockMode::EventTime,
            ..cfg.engine.clone()
        },
    );
    let mut out = Vec::new();
    for (_, e) in events {
        let _ = engine.process(e, &mut out);
    }
    engine.incident_views(None, Level::None)
}

/// A test's own copy of the built-in grid, and a daemon configuration that reads it, with
/// `extra` lines after `[rules] path`: (the grid's text, the copy's path, the configuration).
fn own_rules(
    broker: &Broker,
    name: &str,
    partitions: u32,
    extra: &str,
) -> (String, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("regwatch-{name}-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let grid = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml"),
    )
    .unwrap();
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, &grid).unwrap();
    // `[rules]` holds the test calendar and ends where `[kafka]` begins.
    let text = config_text(broker, name, partitions).replacen(
        "[kafka]\n",
        &format!("path = {:?}\n{extra}[kafka]\n", rules.display().to_string()),
        1,
    );
    (grid, rules, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_api_shows_what_the_engine_holds_and_a_reload_regrades_it() {
    let broker = Broker::start();
    let name = "api";
    broker.create_topic(&format!("{name}.events"), 3);
    let (grid, rules, text) = own_rules(&broker, name, 3, "");
    let cfg = Config::from_toml(&text, None, false).unwrap();
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon starts");
    let base = format!("http://{}", daemon.running.http.unwrap());

    let mut seq = 0;
    let events = workload(&mut seq, 1);
    produce(&broker.producer(), &format!("{name}.events"), &events).await;

    let expected: BTreeSet<_> = replayed(&cfg, &events)
        .iter()
        .map(|i| {
            (
                i.participant_id.clone(),
                i.incident_id.clone(),
                i.level.as_str().to_string(),
                serde_json::to_value(i.exemption)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert!(expected.len() >= 10, "{expected:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = incidents(&base, "").await;
        // The answer calls itself complete once every partition's watermark vouches for
        // what it wrote, which may trail the incidents by a tick: wait for both.
        if keys(&all) == expected && all["complete"] == true {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "API {:?} != engine {expected:?}, or not complete: {all}",
            keys(&all)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(all["count"], expected.len());
    assert_eq!(
        all["complete"], true,
        "every owned partition answered: {all}"
    );
    assert_eq!(all["partitions_answered"], all["partitions_owned"]);
    assert_eq!(all["partitions_total"], 3, "{all}");
    assert!(all["as_of"].is_string(), "{all}");
    for i in all["incidents"].as_array().unwrap() {
        for axis in ["investor_loss", "market_order"] {
            assert!(i[axis]["level"].is_string() && i[axis]["reasons"].is_array());
        }
        assert!(i["summary"]
            .as_str()
            .unwrap()
            .contains(i["incident_id"].as_str().unwrap()));
    }
    let levels: Vec<Level> = all["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| Level::parse(i["level"].as_str().unwrap()).unwrap())
        .collect();
    assert!(levels.windows(2).all(|w| w[0] >= w[1]), "most severe first");

    let p1 = incidents(&base, "?participant=P1").await;
    assert!(p1["count"].as_u64().unwrap() >= 1);
    assert!(p1["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["participant_id"] == "P1"));
    let major = incidents(&base, "?min_level=major").await;
    let want_major: BTreeSet<_> = expected
        .iter()
        .filter(|k| matches!(k.2.as_str(), "major" | "extraordinary"))
        .cloned()
        .collect();
    assert_eq!(keys(&major), want_major);
    assert_eq!(
        get(&format!("{base}/incidents?min_level=huge")).await.0,
        400
    );
    assert_eq!(get(&format!("{base}/incidents?colour=red")).await.0, 400);

    // A stricter grid: 50,000 leaked records are now major, not larger.
    let before = wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "0").await;
    assert!(before.contains("regwatch_config_info{"));
    std::fs::write(
        &rules,
        grid.replace("records_exposed >= 100000", "records_exposed >= 50000"),
    )
    .unwrap();
    daemon.running.reload.send(()).unwrap();
    let after = wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "1").await;
    let info = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("regwatch_config_info{"))
            .unwrap()
            .to_string()
    };
    assert_ne!(info(&before), info(&after), "the rules hash changed");
    let reloaded = collect(
        &kafka,
        &kafka.alerts_topic,
        "api-alerts",
        Duration::from_secs(20),
        |a| a.iter().any(|m| payload(m)["trigger"] == "reload"),
    )
    .await;
    let regraded: Vec<Value> = reloaded
        .iter()
        .map(payload)
        .filter(|a| a["trigger"] == "reload")
        .collect();
    assert!(regraded
        .iter()
        .all(|a| a["investor_loss"]["level"] == "major" || a["level"] == "extraordinary"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while incidents(&base, "?min_level=major").await["count"].as_u64()
        <= Some(want_major.len() as u64)
    {
        assert!(
            Instant::now() < deadline,
            "the API shows the regraded incidents"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A bad file: refused and counted, the rules in force stay.
    std::fs::write(&rules, "[[rule]]\nid = \"broken\"\naxis = \"sideways\"\n").unwrap();
    daemon.running.reload.send(()).unwrap();
    let bad = wait_metric(&base, "regwatch_rules_reloads_total{result=\"error\"}", "1").await;
    assert_eq!(info(&bad), info(&after), "the hash of the rules in force");
    assert!(bad.contains("regwatch_rules_reloads_total{result=\"ok\"} 1"));
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary_and_json_logs_have_fixed_fields() {
    let broker = Broker::start();
    let name = "hup";
    broker.create_topic(&format!("{name}.events"), 2);
    let (_, rules, text) = own_rules(&broker, name, 2, "[log]\nformat = \"json\"\n");
    let dir = rules.parent().unwrap().to_path_buf();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let log = dir.join("daemon.log");
    let daemon = run_binary(&cfg_path, &log);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/readyz"))
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "the daemon never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.signal("HUP");
    wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "1").await;
    daemon.terminate();
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| ["timestamp", "level", "target", "message"]
            .iter()
            .all(|f| l.get(f).is_some())));
    let reload = lines
        .iter()
        .find(|l| l["message"] == "rules reloaded")
        .expect("the reload is logged");
    assert!(reload["rules_sha256"].is_string() && reload["path"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_rules_file_reloads_when_its_content_changes() {
    let broker = Broker::start();
    let name = "watch";
    broker.create_topic(&format!("{name}.events"), 2);
    let (grid, rules, text) = own_rules(&broker, name, 2, "watch = \"1s\"\n");
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon starts");
    let base = format!("http://{}", daemon.running.http.unwrap());
    // Unchanged content: nothing happens.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "0").await;

    std::fs::write(
        &rules,
        grid.replace("records_exposed >= 100000", "records_exposed >= 50000"),
    )
    .unwrap();
    wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "1").await;
    // A bad file is refused and counted once, however long it stays.
    std::fs::write(&rules, "[[rule]]\nid = \"broken\"\n").unwrap();
    wait_metric(&base, "regwatch_rules_reloads_total{result=\"error\"}", "1").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let text = wait_metric(&base, "regwatch_rules_reloads_total{result=\"error\"}", "1").await;
    assert!(text.contains("regwatch_rules_reloads_total{result=\"ok\"} 1"));
    // Fixed: taken.
    std::fs::write(&rules, &grid).unwrap();
    wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "2").await;
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_calendars_file_reloads_and_regrades_in_its_sessions() {
    let broker = Broker::start();
    let name = "calwatch";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 1);
    let dir = std::env::temp_dir().join(format!("regwatch-{name}-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let calendars = dir.join("calendars.toml");
    let always = std::fs::read_to_string(crate::kafka::ALWAYS_CALENDAR).unwrap();
    std::fs::write(&calendars, &always).unwrap();
    let text = config_text(&broker, name, 1)
        .replace(
            crate::kafka::ALWAYS_CALENDAR,
            &calendars.display().to_string(),
        )
        .replacen("[kafka]\n", "watch = \"1s\"\n[kafka]\n", 1);
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon starts");
    let base = format!("http://{}", daemon.running.http.unwrap());
    // An exchange's market-data degradation of 1% of units, 10 minutes old: general, and
    // 10 trading minutes on a calendar that always trades.
    let mut seq = 0;
    let started = regwatch::time::wall_now().plus_millis(-10 * 60_000);
    let report = crate::kafka::event(
        serde_json::json!({"participant_id": "P3", "kind": "infosec", "incident_id": "MD-1",
            "category": "degradation", "system": "market_data", "affected_units_pct": 1,
            "started_at": started.to_string()}),
        &mut seq,
    );
    produce(&broker.producer(), &topic, &[report]).await;
    let trading = |v: &Value| v["incidents"][0]["trading_minutes"].as_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = incidents(&base, "").await;
        if trading(&v).is_some_and(|m| m >= 10.0) {
            assert_eq!(v["incidents"][0]["calendar"], "always");
            break;
        }
        assert!(Instant::now() < deadline, "the incident never showed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A calendar without the participants' calendar is refused: the one in force stays.
    std::fs::write(
        &calendars,
        always.replace("name = \"always\"", "name = \"other\""),
    )
    .unwrap();
    let refused = wait_metric(&base, "regwatch_rules_reloads_total{result=\"error\"}", "1").await;
    assert!(refused.contains("regwatch_rules_reloads_total{result=\"ok\"} 0"));
    // Sessions only on a weekday three days away: no trading minutes since the start.
    let weekdays = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"];
    let day = started.millis().div_euclid(86_400_000) + 3;
    let other_day = weekdays[day.rem_euclid(7) as usize];
    std::fs::write(
        &calendars,
        always.replace(
            "weekdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]",
            &format!("weekdays = [\"{other_day}\"]"),
        ),
    )
    .unwrap();
    wait_metric(&base, "regwatch_rules_reloads_total{result=\"ok\"}", "1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = incidents(&base, "").await;
        if trading(&v) == Some(0.0) {
            assert!(v["incidents"][0]["duration_minutes"].as_f64().unwrap() >= 10.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reloaded calendar is not used: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await.expect("clean stop");
}

/// Asked for its own partitions (`scope=local`), each instance answers for the partitions it
/// owns: with two in the group, neither calls its list complete, each says how much of the
/// deployment it covers, and together they hold what one engine replaying the events holds.
/// (The fleet-wide answer any instance gives is `desk.rs`'s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_each_say_their_incident_list_covers_part_of_the_deployment() {
    let broker = Broker::start();
    let name = "api-two";
    broker.create_topic(&format!("{name}.events"), 4);
    let (_, _, text) = own_rules(&broker, name, 4, "");
    let cfg = Config::from_toml(&text, None, false).unwrap();
    let mut seq = 0;
    let events = workload(&mut seq, 1);
    produce(&broker.producer(), &format!("{name}.events"), &events).await;
    let expected: BTreeSet<_> = replayed(&cfg, &events)
        .iter()
        .map(|i| (i.participant_id.clone(), i.incident_id.clone()))
        .collect();
    assert!(expected.len() >= 10, "{expected:?}");
    let one = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("first instance starts");
    let two = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("second instance starts");
    let bases = [
        format!("http://{}", one.running.http.unwrap()),
        format!("http://{}", two.running.http.unwrap()),
    ];
    let ids = |v: &Value| -> BTreeSet<(String, String)> {
        keys(v).into_iter().map(|(p, i, _, _)| (p, i)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let answers = loop {
        let a = incidents(&bases[0], "?scope=local").await;
        let b = incidents(&bases[1], "?scope=local").await;
        let owned = |v: &Value| v["partitions_owned"].as_i64().unwrap_or(0);
        let settled = owned(&a) > 0
            && owned(&b) > 0
            && owned(&a) + owned(&b) == 4
            && a["partitions_restoring"] == 0
            && b["partitions_restoring"] == 0;
        let union: BTreeSet<_> = ids(&a).union(&ids(&b)).cloned().collect();
        if settled && union == expected {
            break [a, b];
        }
        assert!(
            Instant::now() < deadline,
            "two instances never split the partitions and covered the engine: {a} {b}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for a in &answers {
        assert_eq!(a["complete"], false, "one instance of two: {a}");
        assert_eq!(a["partitions_total"], 4, "{a}");
        assert_eq!(a["partitions_answered"], a["partitions_owned"], "{a}");
        assert!(a["as_of"].is_string(), "{a}");
    }
    assert!(
        ids(&answers[0]).is_disjoint(&ids(&answers[1])),
        "a participant's incidents live on one instance"
    );
    two.stop().await.expect("clean stop");
    // Alone again, the first instance takes every partition back and its list is complete.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = incidents(&bases[0], "?scope=local").await;
        if a["complete"] == true {
            assert_eq!(ids(&a), expected, "{a}");
            assert_eq!(a["partitions_owned"], 4);
            break;
        }
        assert!(Instant::now() < deadline, "never complete again: {a}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    one.stop().await.expect("clean stop");
}
