//! Webhook delivery against real HTTP receivers (started here on free ports) and the real
//! broker: signatures with a rotated key, routes, the Alertmanager format, retries after
//! 503, 429 and refused connections, dead letters on 400, a dead receiver beside a live
//! one, a daemon killed during a receiver outage, and a receiver behind mutual TLS.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use regwatch::config::Config;
use regwatch::ingest::tail;
use regwatch::telemetry::web::Peer;
use regwatch::time::wall_now;
use serde_json::Value;
use sha2::Sha256;

use crate::broker::{produce, Broker};
use crate::kafka::{
    all_committed, assert_all_committed, collect, config_text, ids, oracle, payload, run_binary,
    unsafe_kill, workload,
};
use crate::support::eventually;

/// One request a receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    pub(crate) at: Instant,
    headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    /// What the receiver answered.
    pub(crate) status: u16,
    /// The subject of the client certificate the sender showed (TLS hooks only).
    certificate: Option<String>,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted answer: status and extra headers.
pub(crate) type Reply = (u16, Vec<(&'static str, String)>);

#[derive(Default)]
struct Script {
    /// Answers for the next requests, in order; then 200.
    next: VecDeque<Reply>,
    /// Answer this status to any request whose body contains the text.
    refuse: Option<(String, u16)>,
    /// Answer 401 to senders without a client certificate.
    require_certificate: bool,
    got: Vec<Got>,
}

/// A webhook receiver on a fixed port that can go down and come back.
pub(crate) struct Hook {
    port: u16,
    script: Arc<Mutex<Script>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Serves HTTPS with this certificate, asking for client certificates of the test CA.
    tls: Option<regwatch::config::TlsSettings>,
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = script.lock().unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    let (status, extra) = match &s.refuse {
        _ if s.require_certificate && peer.certificate.is_none() => (401, Vec::new()),
        Some((needle, status)) if text.contains(needle.as_str()) => (*status, Vec::new()),
        _ => s.next.pop_front().unwrap_or((200, Vec::new())),
    };
    s.got.push(Got {
        at: Instant::now(),
        headers,
        body: body.to_vec(),
        status,
        certificate: peer.certificate,
    });
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        format!("answer {status}: bad payload"),
    )
        .into_response();
    for (k, v) in extra {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Hook {
    /// A receiver on a free port, not listening yet (connections are refused).
    pub(crate) fn down() -> Hook {
        Hook {
            port: free_port(),
            script: Arc::default(),
            stop: None,
            tls: None,
        }
    }

    /// An HTTPS receiver with the test CA's server certificate that answers 401 to senders
    /// without a client certificate of that CA (another CA's fails the handshake).
    async fn up_tls(ca: &crate::web::WebTls) -> Hook {
        let mut h = Hook::down();
        h.tls = Some(regwatch::config::TlsSettings {
            cert_file: ca.path("broker.crt"),
            key_file: ca.path("broker.key"),
            client_ca_file: Some(ca.path("ca.crt")),
        });
        h.script.lock().unwrap().require_certificate = true;
        h.start().await;
        h
    }

    pub(crate) async fn up() -> Hook {
        let mut h = Hook::down();
        h.start().await;
        h
    }

    pub(crate) async fn start(&mut self) {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(answer))
            .with_state(self.script.clone());
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("hook binds");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = app.into_make_service_with_connect_info::<Peer>();
        let stopped = async {
            let _ = rx.await;
        };
        match self.tls.clone() {
            None => {
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await;
                });
            }
            Some(tls) => {
                use regwatch::telemetry::web::{acceptor, Reloading, TlsListener};
                let m = regwatch::telemetry::Metrics::new();
                let acceptor = Reloading::new(
                    "test receiver TLS",
                    Vec::new(),
                    Box::new(move || acceptor(&tls)),
                    m.ops.http_reloads.clone(),
                )
                .expect("the test certificate loads");
                let failures = m
                    .ops
                    .http_auth_failures
                    .with_label_values(&["tls_handshake"]);
                let listener = TlsListener::new(listener, Arc::new(acceptor), failures).unwrap();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await;
                });
            }
        }
        self.stop = Some(tx);
    }

    pub(crate) fn url(&self) -> String {
        match self.tls {
            None => format!("http://127.0.0.1:{}/hook", self.port),
            Some(_) => format!("https://localhost:{}/hook", self.port),
        }
    }

    pub(crate) fn got(&self) -> Vec<Got> {
        self.script.lock().unwrap().got.clone()
    }

    pub(crate) fn script(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().next.extend(replies);
    }

    pub(crate) fn refuse(&self, needle: &str, status: u16) {
        self.script.lock().unwrap().refuse = Some((needle.to_string(), status));
    }

    /// Stops refusing (every request is answered 200 again).
    pub(crate) fn accept(&self) {
        self.script.lock().unwrap().refuse = None;
    }

    /// The alert ids delivered with a 2xx (from the Idempotency-Key header).
    pub(crate) fn delivered(&self) -> BTreeSet<String> {
        self.got()
            .iter()
            .filter(|g| (200..300).contains(&g.status))
            .map(|g| g.header("idempotency-key").to_string())
            .collect()
    }

    pub(crate) async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Got]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.got();
            if done(&got) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {} requests, {} delivered",
                got.len(),
                self.delivered().len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The alerts `regwatch replay` gives for the shipped example events (every alert kind),
/// as (key, bytes) records, and their ids.
fn sample_alerts() -> (Vec<(String, Vec<u8>)>, Vec<Value>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::from_toml(
        &std::fs::read_to_string(root.join("config/regwatch.toml")).unwrap(),
        Some(&root.join("config")),
        false,
    )
    .unwrap();
    let mut engine = regwatch::score::Engine::new(
        Arc::new(cfg.registry),
        Arc::new(cfg.rules),
        regwatch::score::EngineSettings {
            reminder_interval_ms: 0,
            ..cfg.engine.clone()
        },
    );
    let mut out = Vec::new();
    for line in std::fs::read_to_string(root.join("config/example-events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let _ = engine.process(line.as_bytes(), &mut out);
    }
    let values: Vec<Value> = out
        .iter()
        .map(|a| serde_json::from_str(&a.to_json()).unwrap())
        .collect();
    let records = out
        .iter()
        .map(|a| (a.participant_id.clone(), a.to_json().into_bytes()))
        .collect();
    (records, values)
}

/// Writes alerts as regwatch does: each carries its `regwatch.mac` under the deployment's
/// record key, read from the state topic as the daemon reads it (the daemon is running, so
/// the key exists).
async fn produce_as_regwatch(
    broker: &Broker,
    kafka: &regwatch::config::KafkaSettings,
    records: &[(String, Vec<u8>)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    let k = kafka.clone();
    let key = tokio::task::spawn_blocking(move || {
        regwatch::ingest::trust::deployment_key(&k, Duration::from_secs(30))
    })
    .await
    .unwrap()
    .expect("the deployment's record key");
    let producer = broker.producer();
    for (pid, value) in records {
        let mac = regwatch::delivery::sign::record_mac(
            key.expose().as_bytes(),
            &kafka.alerts_topic,
            value,
        );
        let record = rdkafka::producer::FutureRecord::to(&kafka.alerts_topic)
            .key(pid.as_bytes())
            .payload(value.as_slice())
            .headers(OwnedHeaders::new().insert(Header {
                key: "regwatch.mac",
                value: Some(mac.as_bytes()),
            }));
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("alert written");
    }
}

fn daemon_config(broker: &Broker, name: &str, delivery: &str) -> Config {
    let text = format!("{}\n{delivery}", config_text(broker, name, 3));
    Config::from_toml(&text, None, false).expect("test config")
}

fn verify_with(key_id: &str, secret: &str, g: &Got) -> bool {
    let ts = g.header("x-regwatch-timestamp");
    let Some(entry) = g
        .header("x-regwatch-signature")
        .split(',')
        .find_map(|e| e.strip_prefix(&format!("{key_id}=")))
    else {
        return false;
    };
    // An independent check, written from the README's recipe.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&g.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == entry
}

const OLD_KEY: &str = "old-signing-key-2026-05-xxxx";
pub(crate) const NEW_KEY: &str = "new-signing-key-2026-11-yyyy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_native_and_alertmanager_webhooks_follow_their_routes() {
    let broker = Broker::start();
    let name = "hooks";
    broker.create_topic(&format!("{name}.events"), 3);
    let native = Hook::up().await;
    let am = Hook::up().await;
    let cfg = daemon_config(
        &broker,
        name,
        &format!(
            r#"
[delivery]
external_url = "https://regwatch.example/"
[[delivery.receivers]]
name = "oncall"
url = "{}"
headers = {{ "X-Team" = "supervision" }}
signing_keys = [{{ id = "2026-11", secret = "{NEW_KEY}" }}, {{ id = "2026-05", secret = "{OLD_KEY}" }}]
[[delivery.receivers]]
name = "paging"
url = "{}"
signing_keys = [{{ id = "t1", secret = "{NEW_KEY}" }}]
format = "alertmanager"
send_resolved = false
[[delivery.routes]]
receivers = ["oncall"]
[[delivery.routes]]
receivers = ["paging"]
min_level = "major"
types = ["incident"]
exemption = "ineligible"
"#,
            native.url(),
            am.url()
        ),
    );
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let (records, alerts) = sample_alerts();
    produce_as_regwatch(&broker, &kafka, &records).await;

    let all: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    let paged: BTreeSet<String> = alerts
        .iter()
        .filter(|a| {
            a["type"] == "incident"
                && a["status"] == "firing"
                && a["exemption"] == "ineligible"
                && matches!(a["level"].as_str(), Some("major" | "extraordinary"))
        })
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert!(paged.len() >= 3 && paged.len() < all.len());
    native
        .wait_for("every alert", Duration::from_secs(30), |_| {
            native.delivered() == all
        })
        .await;
    am.wait_for("the paged alerts", Duration::from_secs(30), |_| {
        am.delivered() == paged
    })
    .await;
    // Nothing more arrives for the routes to have let through by mistake.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        am.delivered(),
        paged,
        "only major+, ineligible, firing incidents"
    );

    let now = wall_now().millis() / 1000;
    for g in native.got() {
        let body = g.json();
        assert_eq!(
            g.header("idempotency-key"),
            body["alert_id"].as_str().unwrap()
        );
        assert_eq!(g.header("content-type"), "application/json");
        assert_eq!(g.header("x-team"), "supervision");
        let ts: i64 = g.header("x-regwatch-timestamp").parse().unwrap();
        assert!((now - ts).abs() < 120, "a fresh timestamp");
        // A receiver that moved to the new key, and one still on the old key, both accept.
        assert!(verify_with("2026-11", NEW_KEY, &g), "new key verifies");
        assert!(verify_with("2026-05", OLD_KEY, &g), "old key verifies");
        assert!(!verify_with("2026-11", OLD_KEY, &g), "a wrong secret fails");
        assert!(regwatch::delivery::sign::verify(
            &[("2026-11", NEW_KEY.as_bytes())],
            ts,
            g.header("x-regwatch-signature"),
            &g.body,
            now,
            300
        )
        .is_ok());
        // The v2 signature covers the idempotency key as well.
        let v2 = |key: &str| {
            regwatch::delivery::sign::verify_v2(
                &[("2026-11", NEW_KEY.as_bytes())],
                ts,
                key,
                g.header("x-regwatch-signature-v2"),
                &g.body,
                now,
                300,
            )
        };
        assert!(v2(g.header("idempotency-key")).is_ok());
        assert!(
            v2("another-key").is_err(),
            "a swapped idempotency key fails"
        );
        let mut tampered = g.clone();
        tampered.body.push(b' ');
        assert!(!verify_with("2026-11", NEW_KEY, &tampered));
        // The native body is the alert as the engine wrote it.
        assert!(alerts.contains(&body), "{body}");
    }
    assert!(
        am.got().iter().all(|g| verify_with("t1", NEW_KEY, g)),
        "every request is signed, whatever its format"
    );

    // Alertmanager webhook v4: every documented field, with its documented type.
    for g in am.got() {
        let p = g.json();
        assert_eq!(p["version"], "4");
        assert!(p["groupKey"].is_string());
        assert_eq!(p["truncatedAlerts"], 0);
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "paging");
        for obj in ["groupLabels", "commonLabels", "commonAnnotations"] {
            assert!(p[obj].is_object(), "{obj}");
        }
        assert_eq!(p["externalURL"], "https://regwatch.example/");
        let list = p["alerts"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        let a = &list[0];
        assert_eq!(a["status"], "firing");
        for f in ["startsAt", "endsAt"] {
            let t = a[f].as_str().unwrap();
            assert!(
                regwatch::time::Timestamp::parse_rfc3339(t).is_some()
                    || t == "0001-01-01T00:00:00Z",
                "{f} = {t}"
            );
        }
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(
            a["generatorURL"].as_str().unwrap(),
            format!(
                "https://regwatch.example/incidents?participant={}",
                a["labels"]["participant_id"].as_str().unwrap()
            ),
            "links to the participant's open incidents"
        );
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let labels = a["labels"].as_object().unwrap();
        assert!(
            labels.values().all(Value::is_string),
            "label values are strings"
        );
        assert!(a["annotations"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        assert_eq!(labels["alertname"], "RegwatchIncident");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["exemption"], "ineligible");
        let id = g.header("idempotency-key");
        let original = alerts.iter().find(|x| x["alert_id"] == id).unwrap();
        assert_eq!(labels["participant_id"], original["participant_id"]);
        assert_eq!(labels["incident_id"], original["incident_id"]);
        assert_eq!(a["annotations"]["summary"], original["summary"]);
        assert_eq!(a["annotations"]["alert_id"], id);
        let description = a["annotations"]["description"].as_str().unwrap();
        for axis in ["investor_loss", "market_order"] {
            for r in original[axis]["reasons"].as_array().unwrap() {
                let cite = r["cite"].as_str().unwrap();
                assert!(description.contains(cite), "{description:?} cites {cite:?}");
            }
        }
    }
    // One incident, one fingerprint: a bridge threads its notifications together.
    let prints: BTreeMap<String, BTreeSet<String>> =
        am.got().iter().fold(BTreeMap::new(), |mut m, g| {
            let a = &g.json()["alerts"][0];
            m.entry(a["labels"]["incident_id"].as_str().unwrap().to_string())
                .or_default()
                .insert(a["fingerprint"].as_str().unwrap().to_string());
            m
        });
    assert!(prints.values().all(|p| p.len() == 1), "{prints:?}");

    // Counted once the daemon has read each answer, a moment after the receiver saw the
    // request; the paging receiver skips in its own group, at its own pace.
    let m = &daemon.running.metrics.webhook;
    let within = Duration::from_secs(30);
    let want = all.len() as u64;
    eventually("oncall's deliveries counted", within, || {
        m.delivered.with_label_values(&["oncall"]).get() >= want
    })
    .await;
    eventually("paging's skips counted", within, || {
        m.skipped.with_label_values(&["paging"]).get() >= want - paged.len() as u64
    })
    .await;
    assert_eq!(m.delivered.with_label_values(&["oncall"]).get(), want);
    assert_eq!(
        m.skipped.with_label_values(&["paging"]).get(),
        want - paged.len() as u64
    );
    assert!(m.latency.with_label_values(&["oncall"]).get_sample_count() >= want);
    daemon.stop().await.expect("clean stop");
    assert_all_committed(
        &broker.bootstrap(),
        &format!("{name}.outbox.oncall"),
        &kafka.alerts_topic,
        3,
    );
    assert_all_committed(
        &broker.bootstrap(),
        &format!("{name}.outbox.paging"),
        &kafka.alerts_topic,
        3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_refusals_are_dead_lettered() {
    let broker = Broker::start();
    let name = "retry";
    broker.create_topic(&format!("{name}.events"), 3);
    // Down at first: connections are refused.
    let mut hook = Hook::down();
    let cfg = daemon_config(
        &broker,
        name,
        &format!(
            "[[delivery.receivers]]\nname = \"r\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\nretry_initial = \"200ms\"\nretry_max = \"3s\"\nbreaker_failures = 100\n",
            hook.url()
        ),
    );
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let (records, alerts) = sample_alerts();
    // One alert the receiver will refuse with 400, one malformed record on the topic.
    let refused = alerts
        .iter()
        .find(|a| a["incident_id"] == "LEAK-7")
        .unwrap()["alert_id"]
        .as_str()
        .unwrap()
        .to_string();
    hook.refuse(&refused, 400);
    let first = records[..1].to_vec();
    produce_as_regwatch(&broker, &kafka, &first).await;
    let m = &daemon.running.metrics.webhook;
    eventually(
        "connection failures are counted",
        Duration::from_secs(60),
        || m.failures.with_label_values(&["r", "connect"]).get() >= 2,
    )
    .await;
    // Up, answering 503, then 429 with Retry-After: 2, then 429 with Retry-After: 0 (no
    // hot loop: at least retry_initial), then 200.
    hook.script(vec![
        (503, vec![]),
        (429, vec![("retry-after", "2".to_string())]),
        (429, vec![("retry-after", "0".to_string())]),
    ]);
    hook.start().await;
    let first_id = alerts[0]["alert_id"].as_str().unwrap().to_string();
    hook.wait_for("the first alert", Duration::from_secs(20), |_| {
        hook.delivered().contains(&first_id)
    })
    .await;
    let got = hook.got();
    let statuses: Vec<u16> = got.iter().map(|g| g.status).collect();
    assert_eq!(statuses, [503, 429, 429, 200]);
    assert!(got.iter().all(|g| g.header("idempotency-key") == first_id));
    assert!(
        got.windows(2).all(|w| w[0].body == w[1].body),
        "the same body every attempt"
    );
    let attempts: Vec<&str> = got.iter().map(|g| g.header("x-regwatch-attempt")).collect();
    assert!(attempts.windows(2).all(|w| w[0] < w[1]), "{attempts:?}");
    let after_429 = got[2].at - got[1].at;
    assert!(
        after_429 >= Duration::from_millis(1900),
        "Retry-After: 2 honoured, waited {after_429:?}"
    );
    let after_zero = got[3].at - got[2].at;
    assert!(
        after_zero >= Duration::from_millis(150),
        "Retry-After: 0 still waits retry_initial, waited {after_zero:?}"
    );
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(90),
        "backed off after 503"
    );
    assert_eq!(m.failures.with_label_values(&["r", "http_5xx"]).get(), 1);
    assert_eq!(m.failures.with_label_values(&["r", "http_429"]).get(), 2);
    assert!(m.retries.with_label_values(&["r"]).get() >= 4);

    // The rest, with a malformed record in the middle: the refusal and the garbage are
    // dead-lettered, everything else delivered, processing goes on.
    let mut rest = records[1..].to_vec();
    rest.insert(3, ("GZ-BRK-0001".into(), b"{\"alert_id\": 7".to_vec()));
    produce_as_regwatch(&broker, &kafka, &rest).await;
    let expected: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .filter(|id| *id != refused)
        .collect();
    hook.wait_for("all but the refused alert", Duration::from_secs(30), |_| {
        hook.delivered() == expected
    })
    .await;
    let dead = collect(
        &kafka,
        "regwatch.alert-dead-letters",
        "dlq-reader",
        Duration::from_secs(20),
        |d| d.len() >= 2,
    )
    .await;
    let header = |m: &OwnedMessage, h: &str| tail::header(m, h).unwrap_or_default();
    let refusal = dead
        .iter()
        .find(|d| header(d, "regwatch.reason") == "http_status")
        .expect("the refusal is dead-lettered");
    assert_eq!(header(refusal, "regwatch.receiver"), "r");
    assert_eq!(header(refusal, "regwatch.http_status"), "400");
    assert!(header(refusal, "regwatch.reason_text").contains("bad payload"));
    assert_eq!(payload(refusal)["alert_id"], refused.as_str());
    assert_eq!(header(refusal, "regwatch.source_topic"), kafka.alerts_topic);
    let garbage = dead
        .iter()
        .find(|d| header(d, "regwatch.reason") == "malformed_alert")
        .expect("the malformed record is dead-lettered");
    assert_eq!(garbage.payload(), Some(&b"{\"alert_id\": 7"[..]));
    assert!(!header(garbage, "regwatch.reason_text").is_empty());
    // Counted once the dead letter's write is acknowledged, which may come after the
    // record is readable.
    eventually("both dead letters counted", Duration::from_secs(20), || {
        ["http_status", "malformed_alert"]
            .iter()
            .all(|why| m.dead_letters.with_label_values(&["r", why]).get() >= 1)
    })
    .await;
    assert_eq!(
        m.dead_letters
            .with_label_values(&["r", "http_status"])
            .get(),
        1
    );
    assert_eq!(
        m.dead_letters
            .with_label_values(&["r", "malformed_alert"])
            .get(),
        1
    );
    // A refusal is not retried.
    let refusals = hook
        .got()
        .iter()
        .filter(|g| g.header("idempotency-key") == refused)
        .count();
    assert_eq!(refusals, 1);
    daemon.stop().await.expect("clean stop");
    assert_all_committed(
        &broker.bootstrap(),
        &format!("{name}.outbox.r"),
        &kafka.alerts_topic,
        3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_trips_its_breaker_and_holds_back_no_one() {
    let broker = Broker::start();
    let name = "breaker";
    broker.create_topic(&format!("{name}.events"), 3);
    let mut dead = Hook::down();
    let live = Hook::up().await;
    let text = format!(
        r#"
[[delivery.receivers]]
name = "dead"
url = "{}"
signing_keys = [{{ id = "t1", secret = "{NEW_KEY}" }}]
retry_initial = "20ms"
retry_max = "50ms"
breaker_failures = 3
breaker_cooldown = "1s"
[[delivery.receivers]]
name = "live"
url = "{}"
signing_keys = [{{ id = "t1", secret = "{NEW_KEY}" }}]
"#,
        dead.url(),
        live.url()
    );
    let cfg = daemon_config(&broker, name, &text);
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let (mut records, mut alerts) = sample_alerts();
    // A backlog beyond a lane's depth on one partition (one key): the lane's partition is
    // paused and resumed, nothing is dropped.
    for i in 0..600 {
        let mut a = alerts[0].clone();
        a["alert_id"] = Value::from(format!("backlog-{i:04}"));
        records.push(("BJ-CLR-01".into(), serde_json::to_vec(&a).unwrap()));
        alerts.push(a);
    }
    let all: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    let t = Instant::now();
    produce_as_regwatch(&broker, &kafka, &records).await;
    // A live lane held back by the dead receiver would never get them all (the dead one
    // stays dead here): the bound is only there to fail rather than hang.
    live.wait_for(
        "every alert at the live receiver",
        Duration::from_secs(90),
        |_| live.delivered() == all,
    )
    .await;
    // Let the dead one fail for a while: its breaker keeps the attempts few.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = &daemon.running.metrics.webhook;
    let attempts = m.attempts.with_label_values(&["dead"]).get();
    let window = t.elapsed().as_secs_f64();
    // Without a breaker, 3 lanes retrying every <= 50 ms would make over 150 attempts here;
    // with it: 3 to open, then about one probe per second of cooldown.
    assert!(
        attempts >= 3 && (attempts as f64) <= 3.0 + 2.0 * window,
        "{attempts} attempts in {window:.1}s"
    );
    assert_eq!(m.delivered.with_label_values(&["dead"]).get(), 0);
    assert_ne!(
        m.circuit.with_label_values(&["dead"]).get(),
        0,
        "the circuit is open"
    );

    // SIGTERM in the middle of the outage: the daemon stops without waiting out its 15 s
    // grace (the retrying lanes are abandoned, uncommitted), and a new one delivers
    // everything once the receiver is back.
    let t = Instant::now();
    daemon.stop().await.expect("clean stop during the outage");
    assert!(
        t.elapsed() < Duration::from_secs(14),
        "stopped in {:?}",
        t.elapsed()
    );
    let daemon = regwatch::app::spawn(daemon_config(&broker, name, &text))
        .await
        .expect("daemon restarts");
    let m = &daemon.running.metrics.webhook;
    dead.start().await;
    dead.wait_for(
        "every alert once the receiver is back",
        Duration::from_secs(30),
        |_| dead.delivered() == all,
    )
    .await;
    assert_eq!(
        m.circuit.with_label_values(&["dead"]).get(),
        0,
        "closed again"
    );
    assert_eq!(
        live.got().len(),
        all.len(),
        "the live receiver's offsets were committed at the stop: no repeats after the restart"
    );
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_a_receiver_outage_delivers_everything_after_restart() {
    let broker = Broker::start();
    let name = "outage";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 3);
    let mut hook = Hook::down();
    let dir = std::env::temp_dir().join(format!("regwatch-outage-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "{}\n[[delivery.receivers]]\nname = \"oncall\"\nurl = \"{}\"\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\nbreaker_cooldown = \"500ms\"\nsigning_keys = [{{ id = \"k1\", secret = \"{NEW_KEY}\" }}]\n",
            config_text(&broker, name, 3),
            hook.url()
        ),
    )
    .unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let kafka = cfg.kafka.clone();
    let spawn = |log: &str| run_binary(&cfg_path, &dir.join(log));
    let mut seq = 0;
    let mut events = workload(&mut seq, 1);
    let mut first = spawn("first.log");
    let producer = broker.producer();
    produce(&producer, &topic, &events).await;
    // Alerts exist, the receiver is down; kill the daemon with no chance to commit.
    collect(
        &kafka,
        &kafka.alerts_topic,
        "o-1",
        Duration::from_secs(30),
        |a| a.len() >= 6,
    )
    .await;
    // The first daemon's outbox is trying (and failing) to deliver: kill it mid-outage.
    let log = dir.join("first.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("delivery failed; retrying")
    {
        assert!(
            Instant::now() < deadline,
            "the outbox never tried to deliver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains(&hook.url()),
        "the receiver URL is never logged"
    );
    // Killed once its events are graded and committed with their state: what the outbox
    // delivers after the restart are the same alert records, read again from the topic.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(why) = all_committed(&broker.bootstrap(), name, &topic, 3) {
        assert!(Instant::now() < deadline, "events never committed: {why}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unsafe_kill(&mut first.0);
    assert!(hook.got().is_empty());

    let phase2 = workload(&mut seq, 2);
    produce(&producer, &topic, &phase2).await;
    events.extend(phase2);
    let second = spawn("second.log");
    tokio::time::sleep(Duration::from_secs(2)).await;
    hook.start().await;
    let expected = oracle(&cfg, &events, wall_now());
    assert!(expected.len() >= 12, "{} alerts", expected.len());
    hook.wait_for(
        "every alert after the outage",
        Duration::from_secs(60),
        |_| hook.delivered().is_superset(&expected),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.delivered(), expected, "no alert lost, none invented");
    // A repeat is the same alert: same Idempotency-Key, same body.
    let mut bodies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for g in hook.got().iter().filter(|g| g.status == 200) {
        let key = g.header("idempotency-key").to_string();
        assert_eq!(g.json()["alert_id"], key.as_str());
        assert!(verify_with("k1", NEW_KEY, g));
        if let Some(b) = bodies.insert(key.clone(), g.body.clone()) {
            assert_eq!(b, g.body, "a duplicate of {key} differs");
        }
    }
    let alert_ids = ids(&collect(
        &kafka,
        &kafka.alerts_topic,
        "o-2",
        Duration::from_secs(20),
        |a| ids(a).is_superset(&expected),
    )
    .await);
    assert_eq!(alert_ids, expected);

    second.terminate();
    assert_all_committed(
        &broker.bootstrap(),
        &format!("{name}.outbox.oncall"),
        &kafka.alerts_topic,
        3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_reach_receivers_marked_as_reminders() {
    let broker = Broker::start();
    let name = "hookrem";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 3);
    let native = Hook::up().await;
    let am = Hook::up().await;
    let quiet = Hook::up().await;
    let mut cfg = daemon_config(
        &broker,
        name,
        &format!(
            r#"
[[delivery.receivers]]
name = "native"
url = "{}"
signing_keys = [{{ id = "t1", secret = "{NEW_KEY}" }}]
[[delivery.receivers]]
name = "am"
url = "{}"
signing_keys = [{{ id = "t1", secret = "{NEW_KEY}" }}]
format = "alertmanager"
[[delivery.receivers]]
name = "quiet"
url = "{}"
signing_keys = [{{ id = "t1", secret = "{NEW_KEY}" }}]
[[delivery.routes]]
receivers = ["native", "am"]
[[delivery.routes]]
receivers = ["quiet"]
reminders = false
"#,
            native.url(),
            am.url(),
            quiet.url()
        ),
    );
    // Below the configuration's 1m minimum, so that the test is short.
    cfg.engine.reminder_interval_ms = 2_000;
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let mut seq = 0;
    // A full trading outage 31 minutes old at a broker: major at once.
    let outage = crate::kafka::event(
        serde_json::json!({"participant_id": "P2", "kind": "infosec", "incident_id": "O1",
            "category": "outage", "system": "trading", "scope": "full",
            "started_at": wall_now().plus_millis(-31 * 60_000).to_string()}),
        &mut seq,
    );
    produce(&broker.producer(), &topic, &[outage]).await;
    let reminders = |h: &Hook| -> Vec<Got> {
        h.got()
            .into_iter()
            .filter(|g| g.status == 200 && g.body.windows(8).any(|w| w == b"reminder"))
            .collect()
    };
    // Generous bounds: each wait ends as soon as its condition holds (about 4 s here).
    native
        .wait_for("two reminders", Duration::from_secs(90), |_| {
            reminders(&native).len() >= 2
        })
        .await;
    am.wait_for("two reminders", Duration::from_secs(60), |_| {
        reminders(&am).len() >= 2
    })
    .await;
    // The quiet receiver's own consumer group may be assigned later than the others'.
    quiet
        .wait_for("the alert", Duration::from_secs(60), |_| {
            !quiet.delivered().is_empty()
        })
        .await;
    let first = native.got()[0].json();
    assert_eq!(first["trigger"], "opened");
    let mut keys = BTreeSet::new();
    for (i, g) in reminders(&native).iter().take(2).enumerate() {
        let r = g.json();
        assert_eq!(r["trigger"], "reminder");
        assert_eq!(r["reminder"], i as u64 + 1);
        assert_eq!(r["reminder_of"], first["alert_id"]);
        assert_eq!(r["incident_id"], "O1");
        assert_eq!(g.header("idempotency-key"), r["alert_id"].as_str().unwrap());
        assert_ne!(
            r["alert_id"], first["alert_id"],
            "a reminder is not the alert again"
        );
        keys.insert(g.header("idempotency-key").to_string());
    }
    assert_eq!(keys.len(), 2, "each reminder has its own key");
    let opened_print = am.got()[0].json()["alerts"][0]["fingerprint"].clone();
    for (i, g) in reminders(&am).iter().take(2).enumerate() {
        let a = &g.json()["alerts"][0];
        assert_eq!(a["annotations"]["trigger"], "reminder");
        assert_eq!(a["annotations"]["reminder"], (i + 1).to_string());
        assert_eq!(a["annotations"]["reminder_of"], first["alert_id"]);
        assert_eq!(
            a["fingerprint"], opened_print,
            "threaded under the incident"
        );
    }
    assert!(
        quiet.delivered().len() == 1 && reminders(&quiet).is_empty(),
        "a route without reminders passes the alert only"
    );
    let m = &daemon.running.metrics.webhook;
    // Counted when the daemon reads the receiver's answer, a moment after the receiver saw
    // the request; the quiet receiver reads the same reminders in its own group, and skips
    // them.
    eventually(
        "reminders counted as delivered (native) and as not routed (quiet)",
        Duration::from_secs(60),
        || {
            m.reminders.with_label_values(&["native"]).get() >= 2
                && m.skipped.with_label_values(&["quiet"]).get() >= 2
        },
    )
    .await;
    assert!(reminders(&quiet).is_empty());
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_alert_on_the_alerts_topic_is_never_signed_and_sent() {
    // The default configuration: no kafka.record_key, so the deployment's own key (kept in
    // the state topic) authenticates regwatch's records.
    let broker = Broker::start();
    let name = "forged";
    broker.create_topic(&format!("{name}.events"), 3);
    let hook = Hook::up().await;
    let text = format!(
        "{}\n[[delivery.receivers]]\nname = \"r\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n",
        config_text(&broker, name, 3),
        hook.url()
    );
    let cfg = Config::from_toml(&text, None, false).expect("config");
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    // A genuine alert: delivered.
    let mut seq = 0;
    let leak = crate::kafka::event(
        serde_json::json!({"participant_id": "P1", "kind": "infosec", "incident_id": "REAL",
               "category": "data_leak", "records_exposed": 200_000}),
        &mut seq,
    );
    produce(&broker.producer(), &format!("{name}.events"), &[leak]).await;
    hook.wait_for("the genuine alert", Duration::from_secs(30), |got| {
        got.iter().any(|g| g.json()["incident_id"] == "REAL")
    })
    .await;
    // Alerts written to the alerts topic by someone else: well-formed, but not regwatch's.
    let (records, alerts) = sample_alerts();
    produce(&broker.producer(), &kafka.alerts_topic, &records[..2]).await;
    let m = &daemon.running.metrics.webhook;
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.dead_letters.with_label_values(&["r", "untrusted"]).get() < 2 {
        assert!(
            Instant::now() < deadline,
            "the forged alerts are dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = hook.delivered();
    for a in &alerts[..2] {
        assert!(
            !delivered.contains(a["alert_id"].as_str().unwrap()),
            "a forged alert was sent"
        );
    }
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    daemon.stop().await.expect("clean stop");
}

/// A receiver behind mutual TLS: it trusts only its own CA (`ca_file`), and takes alerts only
/// from senders showing a client certificate of that CA. The receiver given the client
/// certificate gets the alert, signed; the one without it is refused (401, dead-lettered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_behind_mutual_tls_takes_alerts_from_the_client_certificate_only() {
    let broker = Broker::start();
    let name = "mtls";
    broker.create_topic(&format!("{name}.events"), 3);
    let ca = crate::web::WebTls::new();
    let hook = Hook::up_tls(&ca).await;
    let file = |f: &str| format!("{:?}", ca.path(f).display().to_string());
    let delivery = format!(
        "[[delivery.receivers]]\nname = \"mtls\"\nurl = \"{url}\"\nca_file = {ca}\n\
         client_cert_file = {cert}\nclient_key_file = {key}\n\
         signing_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n\
         [[delivery.receivers]]\nname = \"nocert\"\nurl = \"{url}\"\nca_file = {ca}\n\
         signing_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n",
        url = hook.url(),
        ca = file("ca.crt"),
        cert = file("client.crt"),
        key = file("client.key"),
    );
    let daemon = regwatch::app::spawn(daemon_config(&broker, name, &delivery))
        .await
        .expect("daemon starts");
    let mut seq = 0;
    let leak = crate::kafka::event(
        serde_json::json!({"participant_id": "P1", "kind": "infosec", "incident_id": "TLS-1",
               "category": "data_leak", "records_exposed": 200_000}),
        &mut seq,
    );
    produce(&broker.producer(), &format!("{name}.events"), &[leak]).await;
    hook.wait_for(
        "the alert over mutual TLS",
        Duration::from_secs(30),
        |got| {
            got.iter()
                .any(|g| g.status == 200 && g.json()["incident_id"] == "TLS-1")
        },
    )
    .await;
    let got = hook.got();
    let ok = got.iter().find(|g| g.status == 200).unwrap();
    assert!(
        ok.certificate
            .as_deref()
            .is_some_and(|c| c.contains("prometheus")),
        "{:?}",
        ok.certificate
    );
    assert!(verify_with("t1", NEW_KEY, ok));
    let m = &daemon.running.metrics.webhook;
    let deadline = Instant::now() + Duration::from_secs(20);
    while m
        .dead_letters
        .with_label_values(&["nocert", "http_status"])
        .get()
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "the receiver without a client certificate was not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got
        .iter()
        .filter(|g| g.status == 401)
        .all(|g| g.certificate.is_none()));
    daemon.stop().await.expect("clean stop");
}
