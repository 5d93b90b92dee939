//! The Grafana dashboards (`dashboards/*.json`) against a real Prometheus scraping a real
//! daemon on a real broker: every expression of every panel (rows' nested panels included)
//! is valid PromQL and returns data once the daemon has seen the traffic the dashboards are
//! about, and every panel and query uses the templated Prometheus data source.
//!
//! Prometheus scrapes as the deploy files do: over TLS with a client certificate and a
//! scrape-role bearer token (`web.rs` makes the test CA), so the daemon's gate is exercised
//! by the real scraper.
//!
//! Needs `/usr/bin/prometheus` (Debian package `prometheus`, which `.ci/run` installs) and the
//! Apache Kafka test broker (see `broker.rs`).

use std::collections::{BTreeSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use regwatch::config::Config;
use regwatch::time::wall_now;
use serde_json::{json, Value};

use crate::broker::{produce, Broker};
use crate::kafka::{config_text, event, workload};
use crate::web::{WebTls, SCRAPE_TOKEN};

/// What every panel, target and query variable names as its data source.
fn templated_datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

/// Every dashboard as (file name, JSON).
fn dashboards() -> Vec<(String, Value)> {
    dashboard_files()
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, v)
        })
        .collect()
}

/// Every panel of a dashboard, depth first: rows, then the panels nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn variable(dashboard: &Value, name: &str) -> Option<Value> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
}

/// One PromQL expression of a dashboard, and where it comes from.
struct Expr {
    place: String,
    expr: String,
    /// Panels and variables must return data; annotations (events) may be empty.
    needs_data: bool,
}

/// Every expression of every dashboard: panel targets, query variables
/// (`label_values(metric, label)` is checked as `count by (label) (metric)`) and annotations.
fn expressions(dashboards: &[(String, Value)]) -> Vec<Expr> {
    let mut out = Vec::new();
    for (file, d) in dashboards {
        for p in panels(d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Expr {
                        place: format!(
                            "{file} / {} / {}",
                            p["title"].as_str().unwrap_or("?"),
                            t["refId"].as_str().unwrap_or("?")
                        ),
                        expr: expr.to_string(),
                        needs_data: true,
                    });
                }
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_default();
            let inner = q
                .trim()
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{file}: variable {}: unexpected query {q}", v["name"]));
            let (metric, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("{file}: variable {}: {q}", v["name"]));
            out.push(Expr {
                place: format!("{file} / variable {}", v["name"]),
                expr: format!("count by ({}) ({})", label.trim(), metric.trim()),
                needs_data: true,
            });
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(expr) = a["expr"].as_str() {
                out.push(Expr {
                    place: format!("{file} / annotation {}", a["name"]),
                    expr: expr.to_string(),
                    needs_data: false,
                });
            }
        }
    }
    out
}

/// Grafana's substitutions, as a dashboard with `instance` = All would get them from a
/// Prometheus scraping every second.
fn substitute(expr: &str) -> Result<String, String> {
    let mut s = expr.to_string();
    for (var, value) in [
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "15s"),
        ("$__interval", "15s"),
        ("${__range}", "1h"),
        ("$__range", "1h"),
    ] {
        s = s.replace(var, value);
    }
    for var in ["${instance}", "$instance"] {
        // A multi-value variable expands to an alternation: only a regex matcher takes it.
        let mut from = 0;
        while let Some(i) = s[from..].find(var) {
            let at = from + i;
            if !s[..at].ends_with("=~\"") {
                return Err(format!("{var} is used outside a =~\"...\" matcher"));
            }
            from = at + var.len();
        }
        s = s.replace(var, ".*");
    }
    if let Some(i) = s.find('$') {
        let next = s[i + 1..].chars().next().unwrap_or(' ');
        if next.is_ascii_alphabetic() || next == '_' || next == '{' {
            return Err(format!("unknown variable at {:?}", &s[i..]));
        }
    }
    Ok(s)
}

/// The `regwatch_*` metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("regwatch_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

#[test]
fn dashboards_are_well_formed_and_use_the_templated_datasource() {
    let all = dashboards();
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, d) in &all {
        let mut bad = |what: String| problems.push(format!("{file}: {what}"));
        if d["schemaVersion"] != 39 {
            bad(format!(
                "schemaVersion {} (39 expected)",
                d["schemaVersion"]
            ));
        }
        let uid = d["uid"].as_str().unwrap_or_default();
        if uid.is_empty() || uid.len() > 40 || !uids.insert(uid.to_string()) {
            bad(format!("uid {uid:?} missing, too long or not unique"));
        }
        if d["title"].as_str().unwrap_or_default().is_empty() {
            bad("no title".into());
        }
        if d["tags"].as_array().is_none_or(|t| t.is_empty()) {
            bad("no tags".into());
        }
        if d["refresh"] != "10s" {
            bad(format!("refresh {} (10s expected)", d["refresh"]));
        }
        if d["time"] != json!({"from": "now-1h", "to": "now"}) {
            bad(format!("time {} (the last hour expected)", d["time"]));
        }
        match variable(d, "datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            other => bad(format!("datasource variable: {other:?}")),
        }
        match variable(d, "instance") {
            Some(v)
                if v["type"] == "query"
                    && v["multi"] == true
                    && v["includeAll"] == true
                    && v["datasource"] == templated_datasource()
                    && v["definition"] == "label_values(regwatch_build_info, instance)" => {}
            other => bad(format!("instance variable: {other:?}")),
        }
        let mut ids = BTreeSet::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or_default();
            let mut bad_panel = |what: &str| problems.push(format!("{file}: {title:?}: {what}"));
            if title.is_empty() {
                bad_panel("no title");
            }
            if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
                bad_panel("id missing or not unique");
            }
            if p["gridPos"]["w"].as_u64().is_none() || p["gridPos"]["h"].as_u64().is_none() {
                bad_panel("no gridPos");
            }
            if p["datasource"] != templated_datasource() {
                bad_panel("panel datasource is not the templated ${datasource}");
            }
            if p["type"] == "row" {
                continue;
            }
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str();
            if unit.is_none_or(str::is_empty) {
                bad_panel("no unit");
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                bad_panel("no targets");
            }
            for t in &targets {
                if t["datasource"] != templated_datasource() {
                    bad_panel("target datasource is not the templated ${datasource}");
                }
                match t["expr"].as_str() {
                    Some(e) => {
                        if let Err(why) = substitute(e) {
                            bad_panel(&why);
                        }
                    }
                    None => bad_panel("a target without expr"),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// --- Prometheus ----------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn prometheus_bin() -> PathBuf {
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("prometheus"))
        .collect::<Vec<_>>();
    std::iter::once(PathBuf::from("/usr/bin/prometheus"))
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the dashboard test needs Prometheus (/usr/bin/prometheus): run .ci/run, which \
                 installs it (Debian package `prometheus`), or apt-get install prometheus"
            )
        })
}

/// A Prometheus scraping one target every second, with its data in a temporary directory;
/// killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(bin: &Path, target: SocketAddr, tls: &WebTls) -> Prometheus {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("regwatch-prometheus-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: regwatch\n    scheme: https\n\
                 \x20   tls_config:\n      ca_file: {ca}\n      cert_file: {cert}\n      key_file: {key}\n\
                 \x20   authorization:\n      type: Bearer\n      credentials_file: {token}\n\
                 \x20   static_configs:\n      - targets: [\"{target}\"]\n",
                ca = tls.path("ca.crt").display(),
                cert = tls.path("client.crt").display(),
                key = tls.path("client.key").display(),
                token = tls.path("scrape.tokens").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("http://127.0.0.1:{}/-/ready", self.port);
            if let Ok(r) = client.get(url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query: the `data` object, or Prometheus' error.
    async fn query(&self, client: &reqwest::Client, q: &str) -> Result<Value, String> {
        let r = client
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        let text = r.text().await.map_err(|e| format!("response: {e}"))?;
        let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or(&text)
            ))
        }
    }

    /// The metric names Prometheus holds.
    async fn names(&self, client: &reqwest::Client) -> BTreeSet<String> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/label/__name__/values",
            self.port
        );
        let text = client.get(url).send().await.unwrap().text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    }

    /// The single value of a scalar-valued instant query, if any.
    async fn value(&self, client: &reqwest::Client, q: &str) -> Option<f64> {
        let data = self.query(client, q).await.ok()?;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a query returned: how many series, and whether every value is NaN or every value 0.
struct Returned {
    series: usize,
    all_nan: bool,
    all_zero: bool,
    /// The first few series as `labels=value`, for the log.
    sample: String,
}

fn returned(data: &Value) -> Returned {
    let result = &data["result"];
    let values: Vec<&str> = match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["value"][1].as_str())
            .collect(),
        Some("matrix") => result
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().into_iter().flatten())
            .filter_map(|v| v[1].as_str())
            .collect(),
        _ => result[1].as_str().into_iter().collect(),
    };
    let series = match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => result.as_array().map_or(0, Vec::len),
        _ => 1,
    };
    let sample = result
        .as_array()
        .into_iter()
        .flatten()
        .take(8)
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k != "instance" && *k != "job")
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!("{{{labels}}}={}", s["value"][1].as_str().unwrap_or("?"))
        })
        .collect::<Vec<_>>()
        .join(" ");
    Returned {
        series,
        sample,
        all_nan: !values.is_empty() && values.iter().all(|v| *v == "NaN"),
        all_zero: !values.is_empty() && values.iter().all(|v| v.parse::<f64>() == Ok(0.0)),
    }
}

// --- A webhook receiver ----------------------------------------------------------------------

#[derive(Default)]
struct Script {
    /// Statuses for the next requests, in order; then 200.
    next: VecDeque<u16>,
    /// This status for any request whose body contains the text.
    refuse: Option<(String, u16)>,
    got: Vec<(u16, Value)>,
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, body: Bytes) -> StatusCode {
    let mut s = script.lock().unwrap();
    let text = String::from_utf8_lossy(&body);
    let status = match &s.refuse {
        Some((needle, status)) if text.contains(needle.as_str()) => *status,
        _ => s.next.pop_front().unwrap_or(200),
    };
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.got.push((status, json));
    StatusCode::from_u16(status).unwrap()
}

/// An HTTP receiver on a free port answering from a script.
struct Receiver {
    url: String,
    script: Arc<Mutex<Script>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    async fn start(next: &[u16], refuse: Option<(&str, u16)>) -> Receiver {
        let script = Arc::new(Mutex::new(Script {
            next: next.iter().copied().collect(),
            refuse: refuse.map(|(n, s)| (n.to_string(), s)),
            got: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(answer))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Receiver {
            url,
            script,
            _stop: stop,
        }
    }

    /// The bodies answered 2xx.
    fn delivered(&self) -> Vec<Value> {
        let s = self.script.lock().unwrap();
        s.got
            .iter()
            .filter(|(status, _)| (200..300).contains(status))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The daemon's own `/metrics` text.
async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> String {
    match client
        .get(format!("https://{addr}/metrics"))
        .bearer_auth(SCRAPE_TOKEN)
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in a `/metrics` text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

const KEY: &str = "dashboard-signing-key-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_expression_returns_data_from_a_live_daemon() {
    let t0 = Instant::now();
    let bin = prometheus_bin();
    let exprs = expressions(&dashboards());

    let broker = Broker::start();
    let name = "dash";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 3);
    let oncall = Receiver::start(&[], None).await;
    // Transient failures first (retried, and opening its circuit for a moment), and a
    // permanent refusal of one incident's alerts (dead-lettered); it is not sent telemetry
    // gaps (not routed).
    let flaky = Receiver::start(&[503, 503, 429], Some(("P3-leak-2", 400))).await;
    // A rules file of its own, so that it can be reloaded (and broken).
    let dir = std::env::temp_dir().join(format!("regwatch-dash-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.toml");
    let grid =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml"))
            .unwrap();
    std::fs::write(&rules, &grid).unwrap();
    let tls = WebTls::new();
    let text = format!(
        r#"{}
{}
[[delivery.receivers]]
name = "oncall"
url = "{}"
signing_keys = [{{ id = "k1", secret = "{KEY}" }}]
[[delivery.receivers]]
name = "flaky"
url = "{}"
retry_initial = "100ms"
retry_max = "500ms"
breaker_failures = 2
breaker_cooldown = "500ms"
signing_keys = [{{ id = "k1", secret = "{KEY}" }}]
[[delivery.routes]]
receivers = ["oncall"]
[[delivery.routes]]
receivers = ["flaky"]
types = ["incident"]
"#,
        config_text(&broker, name, 3).replacen(
            "[rules]\n",
            &format!("[rules]\npath = {:?}\n", rules.display().to_string()),
            1
        ),
        tls.toml(),
        oncall.url,
        flaky.url
    );
    let mut cfg = Config::from_toml(&text, None, false).expect("test config");
    // Below the configuration's minimums, so that the test is short.
    cfg.engine.telemetry_gap_ms = 4_000;
    cfg.engine.reminder_interval_ms = 2_000;
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");
    let http = daemon.running.http.expect("the daemon serves /metrics");
    let client = reqwest::Client::new();
    let mut prometheus = Prometheus::start(&bin, http, &tls);
    prometheus.wait_ready(&client).await;
    let daemon_client = tls.client(true);
    // A first scrape before any traffic, so that every increase shows in rates.
    let deadline = Instant::now() + Duration::from_secs(15);
    while prometheus
        .value(&client, "sum(regwatch_events_total)")
        .await
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape the daemon:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("broker, daemon and prometheus up after {:?}", t0.elapsed());

    // Traffic: every participant reports, incidents at every level, some losing their
    // exemption, a major outage (reminders), an outage reaching major by the clock alone,
    // rejected messages, a duplicate and a report after resolution.
    let producer = broker.producer();
    let mut seq = 0;
    let mut sent = 0usize;
    let mut first = workload(&mut seq, 1);
    // A broker's full trading outage 31 minutes old: major at once, no exemption, reminders.
    first.push(event(
        json!({"participant_id": "P2", "kind": "infosec", "incident_id": "P2-outage",
            "category": "outage", "system": "trading", "scope": "full",
            "started_at": wall_now().plus_millis(-31 * 60_000).to_string()}),
        &mut seq,
    ));
    // A futures broker's full trading outage reaching 30 minutes (major) 15 s from now
    // (the records before it are produced one by one).
    first.push(event(
        json!({"participant_id": "P6", "kind": "infosec", "incident_id": "P6-clock",
            "category": "outage", "system": "trading", "scope": "full",
            "started_at": wall_now().plus_millis(-(30 * 60_000 - 15_000)).to_string()}),
        &mut seq,
    ));
    // A fund manager's credential leak of 1.2 million records: extraordinary.
    first.push(event(
        json!({"participant_id": "P1", "kind": "infosec", "incident_id": "P1-credentials",
            "category": "data_leak", "record_type": "credentials", "records_exposed": 1_200_000}),
        &mut seq,
    ));
    // A minor degradation: general.
    first.push(event(
        json!({"participant_id": "P4", "kind": "infosec", "incident_id": "P4-minor",
            "category": "degradation", "system": "other", "affected_investors": 10}),
        &mut seq,
    ));
    first.push((
        "P1".to_string(),
        b"{\"schema\":\"regwatch.event.v1\",".to_vec(),
    ));
    first.push(event(
        json!({"participant_id": "XX-UNKNOWN", "kind": "heartbeat"}),
        &mut seq,
    ));
    produce(&producer, &topic, &first).await;
    sent += first.len();

    let mut second = workload(&mut seq, 2);
    // The same message again: a duplicate.
    second.push(first[1].clone());
    // P1 resolves its first leak, then reports on it again.
    second.push(event(
        json!({"participant_id": "P1", "kind": "infosec", "incident_id": "P1-leak-1",
            "category": "data_leak", "status": "resolved"}),
        &mut seq,
    ));
    second.push(event(
        json!({"participant_id": "P1", "kind": "infosec", "incident_id": "P1-leak-1",
            "category": "data_leak", "status": "update", "records_exposed": 90000}),
        &mut seq,
    ));
    produce(&producer, &topic, &second).await;
    sent += second.len();

    // A rules reload that works (the file changed), then one that fails (a broken file).
    std::fs::write(
        &rules,
        format!("{grid}\n# reloaded by the dashboard test\n"),
    )
    .unwrap();
    daemon.running.reload.send(()).expect("reload requested");
    let mut reload_stage = 0;

    // P4 and P5 fall silent now; the others keep sending heartbeats. P5 speaks again once
    // both gaps fired, P4 stays silent.
    let talkers = ["P1", "P2", "P3", "P6"];
    let mut p5_heard = false;
    let m = &daemon.running.metrics;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut beats: Vec<_> = talkers
            .iter()
            .map(|p| event(json!({"participant_id": p, "kind": "heartbeat"}), &mut seq))
            .collect();
        let gaps_firing = m
            .alerts
            .with_label_values(&["telemetry_gap", "firing"])
            .get();
        let gaps_resolved = m
            .alerts
            .with_label_values(&["telemetry_gap", "resolved"])
            .get();
        if gaps_firing >= 2 && !p5_heard {
            beats.push(event(
                json!({"participant_id": "P5", "kind": "heartbeat"}),
                &mut seq,
            ));
            p5_heard = true;
        }
        // What was produced before these heartbeats must have been consumed by now.
        let before = sent;
        produce(&producer, &topic, &beats).await;
        sent += beats.len();

        let metrics = scrape(&daemon_client, http).await;
        let reloads_ok = sample(&metrics, r#"regwatch_rules_reloads_total{result="ok"}"#);
        let reloads_error = sample(&metrics, r#"regwatch_rules_reloads_total{result="error"}"#);
        if reload_stage == 0 && reloads_ok >= 1.0 {
            std::fs::write(&rules, "[[rule]]\nid = \"broken\"\naxis = \"sideways\"\n").unwrap();
            daemon.running.reload.send(()).expect("reload requested");
            reload_stage = 1;
        }
        let clock_major = oncall.delivered().iter().any(|a| {
            a["incident_id"] == "P6-clock" && a["trigger"] == "clock" && a["level"] == "major"
        });
        let consumed: u64 = regwatch::telemetry::OUTCOMES
            .iter()
            .map(|o| m.events.with_label_values(&[o]).get())
            .sum();
        let waiting_for = [
            (gaps_firing < 2, "two telemetry gaps"),
            (gaps_resolved < 1, "a participant heard again"),
            (
                m.webhook.reminders.with_label_values(&["oncall"]).get() < 2,
                "two reminders delivered",
            ),
            (!clock_major, "the clock escalation to major delivered"),
            (
                m.webhook
                    .dead_letters
                    .with_label_values(&["flaky", "http_status"])
                    .get()
                    < 1,
                "a webhook dead letter",
            ),
            (reloads_ok < 1.0, "a rules reload"),
            (reloads_error < 1.0, "a refused rules reload"),
            (consumed < before as u64, "every event consumed"),
        ]
        .into_iter()
        .filter(|(pending, _)| *pending)
        .map(|(_, what)| what)
        .collect::<Vec<_>>();
        if waiting_for.is_empty() {
            break;
        }
        eprintln!("{:?}: waiting for {waiting_for:?}", t0.elapsed());
        assert!(
            Instant::now() < deadline,
            "traffic did not reach every metric: still waiting for {waiting_for:?}"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("traffic reached every metric after {:?}", t0.elapsed());

    // Prometheus has scraped the final counts (and a few samples since).
    let deadline = Instant::now() + Duration::from_secs(15);
    while prometheus
        .value(&client, "sum(regwatch_events_total)")
        .await
        .is_none_or(|v| v < sent as f64)
    {
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape the daemon:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let known = prometheus.names(&client).await;
    let mut failures = Vec::new();
    let mut nan = Vec::new();
    for e in &exprs {
        let q = match substitute(&e.expr) {
            Ok(q) => q,
            Err(why) => {
                failures.push(format!("{}: {why}\n    {}", e.place, e.expr));
                continue;
            }
        };
        match prometheus.query(&client, &q).await {
            Err(why) => failures.push(format!("{}: invalid: {why}\n    {q}", e.place)),
            Ok(data) => {
                let r = returned(&data);
                if r.series == 0 {
                    if e.needs_data {
                        let missing: Vec<String> = metric_names(&q)
                            .into_iter()
                            .filter(|n| !known.contains(n))
                            .collect();
                        let why = if missing.is_empty() {
                            "no data (the metrics exist: traffic or query)".to_string()
                        } else {
                            format!("no data: not exported: {}", missing.join(", "))
                        };
                        failures.push(format!("{}: {why}\n    {q}", e.place));
                    }
                    continue;
                }
                let note = if r.all_nan {
                    nan.push(format!("{}: NaN only\n    {q}", e.place));
                    "  (NaN only)"
                } else if r.all_zero {
                    "  (all 0)"
                } else {
                    ""
                };
                eprintln!("{:>3} series  {}{note}: {}", r.series, e.place, r.sample);
            }
        }
    }
    if !nan.is_empty() {
        eprintln!(
            "dashboard expressions with only NaN values (no rate in the window):\n{}",
            nan.join("\n")
        );
    }
    daemon.stop().await.expect("the daemon stops cleanly");
    eprintln!(
        "{} dashboard expressions checked in {:?}",
        exprs.len(),
        t0.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} dashboard expressions failed:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );
}
