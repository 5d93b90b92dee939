//! The supervisors' desk on a real broker: any instance of a group answers for the whole
//! fleet (the union of every engine's incidents), `complete` is never true while part of
//! the fleet is missing (through a rebalance to three instances and a stop), every
//! incident's timeline holds the reports and exactly the alerts an engine replaying the same
//! events emits, the exports match the incidents field by field, and the board renders in a
//! real headless browser (Debian's chromium), its screenshots kept under
//! `target/artefacts/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regwatch::config::Config;
use regwatch::score::{ClockMode, Engine, EngineSettings, Level};
use serde_json::{json, Value};

use crate::broker::{produce, Broker};
use crate::kafka::{config_text, event, workload};

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.expect("the HTTP endpoint answers");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"))
}

/// (participant, incident, level, exemption, status) of each incident of an answer.
type Key = (String, String, String, String, String);

fn keys(v: &Value) -> BTreeSet<Key> {
    v["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| {
            let s = |f: &str| i[f].as_str().unwrap_or_default().to_string();
            (
                s("participant_id"),
                s("incident_id"),
                s("level"),
                s("exemption"),
                s("status"),
            )
        })
        .collect()
}

/// What one engine holds after replaying `events` in event time: every incident's key,
/// and the alerts it emitted by incident.
fn oracle(
    cfg: &Config,
    events: &[(String, Vec<u8>)],
) -> (BTreeSet<Key>, BTreeMap<String, Vec<String>>) {
    let mut engine = Engine::new(
        Arc::new(cfg.registry.clone()),
        Arc::new(cfg.rules.clone()),
        EngineSettings {
            clock: ClockMode::EventTime,
            watch_all_from_start: false,
            track_changes: true,
            record_history: true,
            ..cfg.engine.clone()
        },
    );
    let mut out = Vec::new();
    for (_, e) in events {
        let _ = engine.process(e, &mut out);
    }
    let _ = engine.take_changes();
    let keys = engine
        .take_views()
        .into_iter()
        .map(|v| {
            (
                v.participant_id,
                v.incident_id,
                v.level.as_str().to_string(),
                serde_json::to_value(v.exemption)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                v.status.to_string(),
            )
        })
        .collect();
    let mut alerts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in out {
        if let Some(i) = a.incident_id {
            alerts
                .entry(format!("{}/{i}", a.participant_id))
                .or_default()
                .push(a.alert_id);
        }
    }
    (keys, alerts)
}

/// Polls `/incidents?status=all&limit=1000` until it says complete; returns the answer.
async fn complete(base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(&format!("{base}/incidents?status=all&limit=1000")).await;
        if v["complete"] == true {
            return v;
        }
        assert!(Instant::now() < deadline, "never complete: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until an instance's complete answer holds `want`.
async fn shows(base: &str, want: &BTreeSet<Key>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = complete(base).await;
        if &keys(&v) == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "complete, but not the fleet's incidents: missing {:?}, extra {:?}",
            want.difference(&keys(&v)).collect::<Vec<_>>(),
            keys(&v).difference(want).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The test's events: two phases of the shared workload, then every phase-1 leak resolved.
fn events(seq: &mut u32) -> Vec<(String, Vec<u8>)> {
    let mut events = workload(seq, 1);
    events.extend(workload(seq, 2));
    for p in ["P1", "P2", "P3", "P4", "P5", "P6"] {
        events.push(event(
            json!({"participant_id": p, "kind": "infosec", "incident_id": format!("{p}-leak-1"),
                "category": "data_leak", "status": "resolved", "records_exposed": 60000}),
            seq,
        ));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_instance_answers_for_the_fleet_with_every_incidents_story() {
    let broker = Broker::start();
    let name = "desk";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 3);
    let text = config_text(&broker, name, 3);
    let cfg = Config::from_toml(&text, None, false).unwrap();
    let spawn = || async {
        regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
            .await
            .expect("daemon starts")
    };
    let a = spawn().await;
    let b = spawn().await;
    let base_a = format!("http://{}", a.running.http.unwrap());
    let base_b = format!("http://{}", b.running.http.unwrap());

    let mut seq = 0;
    let events = events(&mut seq);
    produce(&broker.producer(), &topic, &events).await;
    let (want, alerts) = oracle(&cfg, &events);
    assert!(want.len() >= 12, "{want:?}");
    assert!(want.iter().any(|k| k.4 == "resolved") && want.iter().any(|k| k.4 == "open"));

    // Each instance owns part of the partitions, and each answers for all of them.
    let va = shows(&base_a, &want).await;
    let vb = shows(&base_b, &want).await;
    assert_eq!(va["partitions_total"], 3);
    assert!(
        va["partitions_owned"].as_i64().unwrap() < 3
            || vb["partitions_owned"].as_i64().unwrap() < 3
    );
    assert_eq!(va["scope"], "fleet");

    // Filters and pages.
    let open = get_json(&format!("{base_a}/incidents")).await;
    let want_open: BTreeSet<Key> = want.iter().filter(|k| k.4 == "open").cloned().collect();
    assert_eq!(keys(&open), want_open, "status defaults to open");
    let p1 = get_json(&format!("{base_b}/incidents?participant=P1&status=all")).await;
    assert_eq!(
        keys(&p1),
        want.iter()
            .filter(|k| k.0 == "P1")
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    let major = get_json(&format!("{base_a}/incidents?status=all&min_level=major")).await;
    assert_eq!(
        keys(&major),
        want.iter()
            .filter(|k| Level::parse(&k.2).unwrap() >= Level::Major)
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    let ineligible = get_json(&format!(
        "{base_a}/incidents?status=all&exemption=ineligible"
    ))
    .await;
    assert!(keys(&ineligible).iter().all(|k| k.3 == "ineligible"));
    assert_eq!(
        keys(&ineligible).len(),
        want.iter().filter(|k| k.3 == "ineligible").count()
    );
    let mut paged = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = get_json(&format!(
            "{base_a}/incidents?status=all&limit=5&offset={offset}"
        ))
        .await;
        assert!(page["count"].as_u64().unwrap() <= 5);
        assert_eq!(page["total"].as_u64().unwrap() as usize, want.len());
        paged.extend(keys(&page));
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(paged, want, "the pages together are the whole answer");
    for bad in [
        "?axis=sideways",
        "?status=closed",
        "?from=yesterday",
        "?exemption=maybe",
        "?colour=red",
    ] {
        let r = reqwest::get(format!("{base_a}/incidents{bad}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // Every incident's story: its reports, and exactly the alerts a replay emits.
    for (p, i, ..) in &want {
        let story = get_json(&format!("{base_b}/incidents/{p}/{i}")).await;
        assert_eq!(story["incident"]["incident_id"], i.as_str());
        let timeline = story["timeline"].as_array().unwrap();
        let alert_ids: Vec<&str> = timeline
            .iter()
            .filter(|e| e["kind"] == "alert")
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let replayed: Vec<&str> = alerts
            .get(&format!("{p}/{i}"))
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            alert_ids, replayed,
            "{p}/{i}: the timeline's alerts are the replay's"
        );
        let reports: Vec<&Value> = timeline.iter().filter(|e| e["kind"] == "report").collect();
        assert!(!reports.is_empty(), "{p}/{i}");
        assert_eq!(
            reports[0]["record"]["opened"], true,
            "{p}/{i}: the first report opens it"
        );
        let sent: BTreeSet<String> = events
            .iter()
            .map(|(_, e)| serde_json::from_slice::<Value>(e).unwrap())
            .filter(|e| e["participant_id"] == p.as_str() && e["incident_id"] == i.as_str())
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        for r in &reports {
            assert!(sent.contains(r["id"].as_str().unwrap()), "{r}");
            assert!(r["record"]["changed"].is_object());
        }
        let times: Vec<&str> = timeline.iter().map(|e| e["at"].as_str().unwrap()).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "in time order: {times:?}"
        );
        for e in timeline
            .iter()
            .filter(|e| e["kind"] == "alert" && e["record"]["trigger"] != "resolved")
        {
            let reasons = e["record"]["investor_loss"]["reasons"]
                .as_array()
                .into_iter()
                .chain(e["record"]["market_order"]["reasons"].as_array())
                .flatten()
                .collect::<Vec<_>>();
            assert!(
                reasons.iter().all(|r| r["rule"].is_string()
                    && r["threshold"].is_number()
                    && r["observed"].is_number()),
                "{e}"
            );
        }
        // Each level reached on each axis, announced by one of its alerts.
        for axis in ["investor_loss", "market_order"] {
            let reached = story["crossings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["axis"] == axis)
                .inspect(|c| assert!(alert_ids.contains(&c["alert_id"].as_str().unwrap()), "{c}"))
                .map(|c| Level::parse(c["to"].as_str().unwrap()).unwrap())
                .max()
                .unwrap_or(Level::None);
            let level = Level::parse(story["incident"][axis]["level"].as_str().unwrap()).unwrap();
            assert_eq!(reached, level, "{p}/{i} {axis}: {story}");
        }
        if story["incident"]["status"] == "resolved" {
            assert!(
                timeline.iter().any(|e| e["record"]["resolved"] == true),
                "{p}/{i}"
            );
        }
    }
    let unknown = reqwest::get(format!("{base_a}/incidents/P1/nope"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Participants.
    let list = get_json(&format!("{base_a}/participants")).await;
    let by_id: BTreeMap<&str, &Value> = list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["participant_id"].as_str().unwrap(), p))
        .collect();
    for p in ["P1", "P2", "P3", "P4", "P5", "P6"] {
        let line = by_id.get(p).unwrap_or_else(|| panic!("{p} listed"));
        let mine = |status: &str| want.iter().filter(|k| k.0 == p && k.4 == status).count();
        assert_eq!(
            line["open_incidents"].as_u64().unwrap() as usize,
            mine("open"),
            "{p}"
        );
        assert_eq!(
            line["resolved_incidents"].as_u64().unwrap() as usize,
            mine("resolved"),
            "{p}"
        );
        assert_eq!(
            line["ineligible_incidents"].as_u64().unwrap() as usize,
            want.iter()
                .filter(|k| k.0 == p && k.3 == "ineligible")
                .count()
        );
        assert!(line["registered"] == true && line["last_incident"].is_object());
    }
    let one = get_json(&format!("{base_b}/participants/P2")).await;
    assert_eq!(
        one["open_incidents"].as_array().unwrap().len(),
        want.iter().filter(|k| k.0 == "P2" && k.4 == "open").count()
    );

    // Exports, field by field against the incidents.
    let report = get_json(&format!("{base_a}/report?participant=P1")).await;
    assert_eq!(report["participant_id"], "P1");
    let rows = report["incidents"].as_array().unwrap();
    let views: BTreeMap<String, Value> = p1["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["incident_id"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    assert_eq!(rows.len(), views.len());
    for row in rows {
        let v = &views[row["incident_id"].as_str().unwrap()];
        for f in [
            "status",
            "level",
            "exemption",
            "started_at",
            "category",
            "kind",
        ] {
            assert_eq!(row[f], v[f], "{f}");
        }
        assert_eq!(row["investor_loss"], v["investor_loss"]["level"]);
        assert_eq!(row["market_order"], v["market_order"]["level"]);
        let story = get_json(&format!(
            "{base_a}/incidents/P1/{}",
            row["incident_id"].as_str().unwrap()
        ))
        .await;
        let ids: Vec<&Value> = story["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "alert")
            .map(|e| &e["id"])
            .collect();
        let exported: Vec<&Value> = row["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["alert_id"])
            .collect();
        assert_eq!(exported, ids);
        let reasons = row["reasons"].as_array().unwrap();
        let shown = v["investor_loss"]["reasons"].as_array().unwrap().len()
            + v["market_order"]["reasons"].as_array().unwrap().len();
        assert_eq!(reasons.len(), shown);
        assert!(reasons
            .iter()
            .all(|r| r["cite"].is_string() && r["axis"].is_string()));
    }
    let csv = reqwest::get(format!("{base_a}/report?participant=P1&format=csv"))
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv: String = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), rows.len() + 1);
    assert!(lines[0].starts_with("participant_id,participant_name,incident_id,"));
    for row in rows {
        let line = lines
            .iter()
            .find(|l| l.split(',').nth(2) == row["incident_id"].as_str())
            .expect("a line per incident");
        for a in row["alerts"].as_array().unwrap() {
            assert!(line.contains(a["alert_id"].as_str().unwrap()));
        }
    }
    let future = get_json(&format!(
        "{base_a}/report?participant=P1&from=2099-01-01T00:00:00Z"
    ))
    .await;
    assert_eq!(future["count"], 0, "nothing after the period");

    // The same export from the command line, with no daemon asked.
    let dir = std::env::temp_dir().join(format!("regwatch-desk-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    for format in ["json", "csv"] {
        let out = std::process::Command::new(crate::kafka::regwatch_bin())
            .args(["report", "--config"])
            .arg(&cfg_path)
            .args(["--participant", "P1", "--format", format])
            .output()
            .expect("regwatch report runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // Open incidents' durations count on between the two: everything else is equal.
        if format == "csv" {
            let fixed = |t: &str| -> Vec<Vec<String>> {
                t.split("\r\n")
                    .map(|l| {
                        l.split(',')
                            .enumerate()
                            .filter(|(i, _)| !(12..14).contains(i))
                            .map(|(_, f)| f.to_string())
                            .collect()
                    })
                    .collect()
            };
            assert_eq!(fixed(&text), fixed(&csv), "the CLI's CSV is the API's");
        } else {
            let fixed = |v: &Value| -> Vec<Value> {
                v["incidents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        for f in ["duration_minutes", "trading_minutes", "summary"] {
                            r[f] = Value::Null;
                        }
                        r
                    })
                    .collect()
            };
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(fixed(&doc), fixed(&report), "the CLI's JSON is the API's");
            assert_eq!(doc["complete"], true);
        }
    }

    // A third instance joins: while the group rebalances an answer may be partial, but it
    // is never complete without the whole fleet.
    let c = spawn().await;
    let base_c = format!("http://{}", c.running.http.unwrap());
    let honest = |v: &Value| v["complete"] != true || keys(v) == want;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for base in [&base_a, &base_c] {
            let v = get_json(&format!("{base}/incidents?status=all&limit=1000")).await;
            assert!(honest(&v), "complete but partial during the rebalance: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shows(&base_c, &want).await;
    // One instance stops: its partitions are released, restored by the others.
    let stopping = tokio::spawn(async move { b.stop().await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let v = get_json(&format!("{base_a}/incidents?status=all&limit=1000")).await;
        assert!(honest(&v), "complete but partial after a stop: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stopping.await.unwrap().expect("clean stop");
    shows(&base_a, &want).await;
    shows(&base_c, &want).await;
    c.stop().await.expect("clean stop");
    a.stop().await.expect("clean stop");
}

/// Runs Debian's chromium headless on `url`: the DOM it rendered, and a screenshot at
/// `shot`.
fn chromium(url: &str, shot: &std::path::Path, width: u32) -> String {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new("which")
                .arg(b)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Debian's chromium is installed (.ci/run installs it)");
    let profile = std::env::temp_dir().join(format!("regwatch-chromium-{}", std::process::id()));
    let common = |cmd: &mut std::process::Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},1400"));
    };
    let mut dump = std::process::Command::new(bin);
    common(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut snap = std::process::Command::new(bin);
    common(&mut snap);
    let status = snap
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let png = std::fs::read(shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real picture: {} bytes",
        png.len()
    );
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_board_renders_in_a_real_browser() {
    let broker = Broker::start();
    let name = "board";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 2);
    let text = config_text(&broker, name, 2);
    let cfg = Config::from_toml(&text, None, false).unwrap();
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon starts");
    let base = format!("http://{}", daemon.running.http.unwrap());
    let mut seq = 0;
    let events = events(&mut seq);
    produce(&broker.producer(), &topic, &events).await;
    let (want, _) = oracle(&cfg, &events);
    shows(&base, &want).await;

    // The same list as a table from the command line (`regwatch incidents`).
    let out = std::process::Command::new(crate::kafka::regwatch_bin())
        .args(["incidents", "--url", &base, "status=all"])
        .output()
        .expect("regwatch incidents runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), want.len() + 2, "{table}");
    assert!(lines[0].starts_with("LEVEL"), "{table}");
    for (p, i, level, ..) in &want {
        assert!(
            lines.iter().any(|l| l.starts_with(level.as_str())
                && l.contains(p.as_str())
                && l.contains(i.as_str())),
            "{p}/{i} in {table}"
        );
    }
    assert!(
        lines.last().unwrap().contains("complete: every partition"),
        "{table}"
    );
    let refused = std::process::Command::new(crate::kafka::regwatch_bin())
        .args(["incidents", "--url", &base, "status=closed"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("400"));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    let dom = chromium(&format!("{base}/board"), &dir.join("board.png"), 1280);
    assert!(
        dom.contains("id=\"coverage\"") && dom.contains("Complete"),
        "{dom}"
    );
    let open: Vec<&Key> = want.iter().filter(|k| k.4 == "open").collect();
    for (p, i, ..) in &open {
        assert!(
            dom.contains(i.as_str()) && dom.contains(p.as_str()),
            "{i} on the board"
        );
    }
    assert_eq!(dom.matches("<tr class=\"incident\"").count(), open.len());
    // Most severe first: the rows' levels never rise down the table.
    let levels: Vec<Level> = dom
        .split("<tr class=\"incident\"><td><span class=\"lv ")
        .skip(1)
        .map(|rest| Level::parse(rest.split('"').next().unwrap()).unwrap())
        .collect();
    assert!(levels.windows(2).all(|w| w[0] >= w[1]), "{levels:?}");

    // An incident with alerts: its page, on a phone-sized window, with the chart.
    let (p, i, ..) = want
        .iter()
        .find(|k| k.1.contains("leak-1"))
        .expect("a resolved leak");
    let dom = chromium(
        &format!("{base}/board/incidents/{p}/{i}"),
        &dir.join("incident.png"),
        420,
    );
    assert!(
        dom.contains("id=\"chart\"") && dom.contains("class=\"crossing\""),
        "{dom}"
    );
    assert!(dom.contains("class=\"session\""), "trading sessions shaded");
    assert!(dom.matches("<tr class=\"entry ").count() >= 3, "{dom}");
    let dom = chromium(
        &format!("{base}/board/participants/{p}"),
        &dir.join("participant.png"),
        1280,
    );
    assert!(dom.contains("Export CSV") && dom.contains(i.as_str()));

    // Every link of the Grafana dashboards opens a page of this board.
    let mut urls = Vec::new();
    let dashboards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    for entry in std::fs::read_dir(dashboards).unwrap() {
        let d: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        collect_links(&d, &mut urls);
    }
    assert!(urls.len() >= 10, "{urls:?}");
    for url in urls.iter().filter(|u| u.starts_with("${regwatch_url}")) {
        let filled = url
            .replace("${regwatch_url}", &base)
            .replace("${__field.labels.participant}", p)
            .replace("${__value.raw}", p)
            .replace("${__field.labels.level}", "major")
            .replace("${__from:date:iso}", "2026-01-01T00:00:00.000Z")
            .replace("${__to:date:iso}", "2099-01-01T00:00:00.000Z");
        assert!(
            !filled.contains("${"),
            "a variable the test does not know: {url}"
        );
        let r = reqwest::get(&filled).await.unwrap();
        assert_eq!(r.status(), 200, "{url} -> {filled}");
        assert!(r.text().await.unwrap().contains("<h1>"), "{filled}");
    }
    daemon.stop().await.expect("clean stop");
}

/// Every `url` under a `links` key of a dashboard (dashboard links, panel and field links).
fn collect_links(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "links" || k == "value" {
                    for l in v.as_array().into_iter().flatten() {
                        if let Some(u) = l["url"].as_str().filter(|u| !u.is_empty()) {
                            out.push(u.to_string());
                        }
                    }
                }
                collect_links(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_links(v, out)),
        _ => {}
    }
}

/// A deployment whose history topic cannot be had (topics made by hand before it existed,
/// `kafka.create_topics = false`) keeps running: its `/incidents` answers for its own
/// partitions and says so, the desk's routes say the history is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_history_topic_the_daemon_runs_and_answers_for_its_own_partitions() {
    let broker = Broker::start();
    let name = "nohist";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 1);
    let text = config_text(&broker, name, 1);
    // A first run without the history creates regwatch's other topics.
    let first = regwatch::app::spawn(
        Config::from_toml(
            &format!("{text}\n[history]\nenabled = false\n"),
            None,
            false,
        )
        .unwrap(),
    )
    .await
    .expect("daemon starts");
    first.stop().await.expect("clean stop");
    let text = text.replacen("[kafka]\n", "[kafka]\ncreate_topics = false\n", 1);
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("the daemon starts without its history topic");
    let base = format!("http://{}", daemon.running.http.unwrap());
    let mut seq = 0;
    let events = workload(&mut seq, 1);
    produce(&broker.producer(), &topic, &events).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_json(&format!("{base}/incidents")).await;
        assert_eq!(v["scope"], "local", "{v}");
        if v["count"].as_u64().unwrap() >= 12 {
            break;
        }
        assert!(Instant::now() < deadline, "never graded: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for route in ["/board", "/participants", "/report?participant=P1"] {
        let r = reqwest::get(format!("{base}{route}")).await.unwrap();
        assert_eq!(r.status(), 404, "{route}");
        assert!(r.text().await.unwrap().contains("history is off"));
    }
    daemon.stop().await.expect("clean stop");
}
