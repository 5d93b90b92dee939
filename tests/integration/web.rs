//! The HTTP endpoint behind TLS, client certificates and bearer tokens by role, served by
//! the daemon's own `serve` with a test CA made here by openssl: every route but the probes
//! refuses what it should with the right status, each refusal is counted, and a rotated
//! certificate or a broken one does what an operator expects. The dashboards test scrapes a
//! live daemon through the same gate with a real Prometheus.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use regwatch::config::{HttpSettings, Role, TlsSettings, TokenFile};
use regwatch::telemetry::{Health, Metrics};

use crate::broker::tempdir;
use crate::security::{openssl, test_ca};
use crate::webhook::free_port;

pub(crate) const SCRAPE_TOKEN: &str = "scrape-token-for-the-tests-0001";
pub(crate) const SUPERVISOR_TOKEN: &str = "supervisor-token-for-the-tests-0001";

/// Issues `<name>.key` and `<name>.crt`, signed by the test CA in `dir`.
fn issue(dir: &Path, name: &str, subject: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAserial",
            "ca.srl",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// A test CA, a server certificate for 127.0.0.1 (`broker.crt`), a client certificate
/// (`client.crt`) and one token file per role.
pub(crate) struct WebTls {
    pub dir: PathBuf,
}

impl WebTls {
    pub fn new() -> WebTls {
        let dir = tempdir("web-tls");
        std::fs::create_dir_all(&dir).unwrap();
        test_ca(&dir);
        issue(
            &dir,
            "client",
            "/CN=prometheus",
            "extendedKeyUsage=clientAuth\n",
        );
        std::fs::write(dir.join("scrape.tokens"), format!("{SCRAPE_TOKEN}\n")).unwrap();
        std::fs::write(
            dir.join("supervisor.tokens"),
            format!("# the supervisors' desk\n{SUPERVISOR_TOKEN}\n"),
        )
        .unwrap();
        WebTls { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn settings(&self, client_certificates: bool) -> HttpSettings {
        HttpSettings {
            listen: Some(([127, 0, 0, 1], 0).into()),
            tls: Some(TlsSettings {
                cert_file: self.path("broker.crt"),
                key_file: self.path("broker.key"),
                client_ca_file: client_certificates.then(|| self.path("ca.crt")),
            }),
            tokens: vec![
                TokenFile {
                    role: Role::Scrape,
                    file: self.path("scrape.tokens"),
                },
                TokenFile {
                    role: Role::Supervisor,
                    file: self.path("supervisor.tokens"),
                },
            ],
            insecure_allow_unauthenticated: false,
        }
    }

    /// The `[http.tls]` and `[[http.tokens]]` tables of a configuration file.
    pub fn toml(&self) -> String {
        format!(
            "[http.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n\
             [[http.tokens]]\nrole = \"scrape\"\nfile = {:?}\n\
             [[http.tokens]]\nrole = \"supervisor\"\nfile = {:?}\n",
            self.path("broker.crt"),
            self.path("broker.key"),
            self.path("ca.crt"),
            self.path("scrape.tokens"),
            self.path("supervisor.tokens"),
        )
    }

    /// A client showing a self-signed certificate of its own (`name.crt`, no CA knows it).
    pub fn client_with(&self, name: &str) -> reqwest::Client {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "2",
                "-subj",
                "/CN=stranger",
            ],
        );
        let ca = std::fs::read(self.path("ca.crt")).unwrap();
        let identity = reqwest::Identity::from_pkcs8_pem(
            &std::fs::read(self.path(&crt)).unwrap(),
            &std::fs::read(self.path(&key)).unwrap(),
        )
        .unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .identity(identity)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// A client that trusts the test CA only, with the client certificate or without.
    pub fn client(&self, certificate: bool) -> reqwest::Client {
        self.builder(certificate).build().unwrap()
    }

    /// A client builder trusting the test CA, showing the client certificate if asked.
    pub fn builder(&self, certificate: bool) -> reqwest::ClientBuilder {
        let ca = std::fs::read(self.path("ca.crt")).unwrap();
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(10));
        if certificate {
            let crt = std::fs::read(self.path("client.crt")).unwrap();
            let key = std::fs::read(self.path("client.key")).unwrap();
            b = b.identity(reqwest::Identity::from_pkcs8_pem(&crt, &key).unwrap());
        }
        b
    }
}

struct Served {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(settings: HttpSettings) -> Served {
    let metrics = Arc::new(Metrics::new());
    let (queries, _) = tokio::sync::broadcast::channel(4);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let m = metrics.clone();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        regwatch::telemetry::serve(
            &settings,
            m,
            Arc::new(Health::default()),
            queries,
            regwatch::telemetry::DeskApi {
                desk: None,
                registry: Arc::default(),
                rules: tokio::sync::watch::channel(
                    Arc::new(regwatch::score::Rules::default_grid()),
                )
                .1,
                actions: None,
            },
            bound_tx,
            shutdown,
        )
        .await
        .expect("the endpoint serves");
    });
    Served {
        addr: bound_rx.await.expect("bound"),
        metrics,
        _stop: stop,
    }
}

async fn status(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String) {
    let mut r = client.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap_or_else(|e| panic!("{url}: {e:?}"));
    let code = r.status().as_u16();
    let auth = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let _ = r.text().await;
    (code, auth)
}

fn failures(m: &Metrics, reason: &str) -> u64 {
    m.ops.http_auth_failures.with_label_values(&[reason]).get()
}

/// Waits for a counter bumped by a handshake task.
async fn wait_failures(m: &Metrics, reason: &str, at_least: u64) {
    for _ in 0..400 {
        if failures(m, reason) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{reason}: {} refusals counted, expected at least {at_least}",
        failures(m, reason)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_and_tokens_guard_every_route_but_the_probes() {
    let tls = WebTls::new();
    let served = serve(tls.settings(true)).await;
    let base = format!("https://{}", served.addr);
    let m = &served.metrics;

    // Probes need no client certificate; every other route does. A certificate from
    // another CA, or plain HTTP, fails the handshake.
    let anonymous = tls.client(false);
    assert_eq!(
        status(&anonymous, &format!("{base}/healthz"), None).await.0,
        200
    );
    let (code, _) = status(&anonymous, &format!("{base}/metrics"), Some(SCRAPE_TOKEN)).await;
    assert_eq!(code, 401);
    assert_eq!(failures(m, "missing_client_certificate"), 1);
    let stranger = tls.client_with("stranger");
    let refused = stranger.get(format!("{base}/healthz")).send().await;
    assert!(
        refused.is_err(),
        "served a client certificate of another CA"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", served.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "served plain HTTP on the TLS port");
    wait_failures(m, "tls_handshake", 2).await;

    let client = tls.client(true);
    // Probes stay open (readiness answers 503 here: nothing consumes).
    assert_eq!(
        status(&client, &format!("{base}/healthz"), None).await.0,
        200
    );
    assert_eq!(
        status(&client, &format!("{base}/readyz"), None).await.0,
        503
    );

    let metrics = format!("{base}/metrics");
    let incidents = format!("{base}/incidents");
    let (code, challenge) = status(&client, &metrics, None).await;
    assert_eq!(code, 401);
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    assert_eq!(
        status(&client, &metrics, Some("not-a-token-of-ours-0000"))
            .await
            .0,
        401
    );
    assert_eq!(
        status(&client, &metrics, Some(SUPERVISOR_TOKEN)).await.0,
        403
    );
    assert_eq!(status(&client, &incidents, Some(SCRAPE_TOKEN)).await.0, 403);
    assert_eq!(status(&client, &metrics, Some(SCRAPE_TOKEN)).await.0, 200);
    assert_eq!(
        status(&client, &incidents, Some(SUPERVISOR_TOKEN)).await.0,
        200
    );
    assert_eq!(failures(m, "missing_token"), 1);
    assert_eq!(failures(m, "bad_token"), 1);
    assert_eq!(failures(m, "wrong_role"), 2);

    // The counters are in the scrape itself.
    let text = client
        .get(&metrics)
        .bearer_auth(SCRAPE_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("regwatch_http_auth_failures_total{reason=\"wrong_role\"} 2"),
        "{text}"
    );

    // The board: a browser without a token is shown the sign-in form; a supervisor token
    // signed in becomes a cookie that lets the pages in (past the gate, this endpoint has
    // no history and says so: 404); a scrape token is not let in.
    let browser = tls
        .builder(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let board = format!("{base}/board");
    let r = browser.get(&board).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("action=\"/board/login\""));
    let login = |token: &str| {
        browser
            .post(format!("{base}/board/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    assert_eq!(login(SCRAPE_TOKEN).await.unwrap().status(), 401);
    let signed = login(SUPERVISOR_TOKEN).await.unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let inside = browser
        .get(&board)
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(inside.status(), 404, "let in; no history here");
    let scrape_cookie = format!("regwatch_token={SCRAPE_TOKEN}");
    let r = browser
        .get(&board)
        .header("cookie", scrape_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for route in [
        "/participants",
        "/incidents/P1/I1",
        "/report?participant=P1",
    ] {
        let r = status(&client, &format!("{base}{route}"), None).await.0;
        assert_eq!(r, 401, "{route}");
        let r = status(&client, &format!("{base}{route}"), Some(SCRAPE_TOKEN))
            .await
            .0;
        assert_eq!(r, 403, "{route}");
    }
}

/// The serial number of the certificate the endpoint shows a new connection.
fn served_serial(addr: SocketAddr, ca: &Path) -> String {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    let connector = b.build();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let tls = connector
        .connect("localhost", tcp)
        .expect("TLS handshake with the test CA");
    let cert = tls.ssl().peer_certificate().expect("a server certificate");
    let serial = cert.serial_number().to_bn().unwrap().to_hex_str().unwrap();
    serial.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_connections_and_a_broken_one_is_not_served() {
    let tls = WebTls::new();
    let mut settings = tls.settings(false);
    settings.tokens.clear();
    let served = serve(settings).await;
    let (addr, ca) = (served.addr, tls.path("ca.crt"));
    let first = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || served_serial(addr, &ca)
    })
    .await
    .unwrap();

    // cert-manager's way: a new key and certificate, renamed into place.
    issue(
        &tls.dir,
        "rotated",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    std::fs::rename(tls.path("rotated.key"), tls.path("broker.key")).unwrap();
    std::fs::rename(tls.path("rotated.crt"), tls.path("broker.crt")).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let serial = |ca: PathBuf| tokio::task::spawn_blocking(move || served_serial(addr, &ca));
    // The connection that notices the change is already served with the new certificate.
    let second = serial(ca.clone()).await.unwrap();
    assert_ne!(first, second, "the rotated certificate is not served");
    let reloads = |r: &str| {
        served
            .metrics
            .ops
            .http_reloads
            .with_label_values(&[r])
            .get()
    };
    assert_eq!(reloads("ok"), 1);

    // A key that does not match the certificate: the previous pair stays in force.
    issue(&tls.dir, "other", "/CN=other", "subjectAltName=DNS:other\n");
    std::fs::copy(tls.path("other.key"), tls.path("broker.key")).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let third = serial(ca.clone()).await.unwrap();
    assert_eq!(second, third);
    assert_eq!(reloads("error"), 1);
}

/// The deploy bundle's way: `deploy/tls/make-certs.sh` makes the files, the compose
/// configuration's `[http]` tables name them relative to the file, `regwatch check-config`
/// accepts them, `regwatch probe` (the container health check) reaches `/healthz` without
/// credentials, and Prometheus' files (client certificate, scrape token) scrape `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_bundles_certificates_serve_the_probe_and_the_scraper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempdir("make-certs");
    let out = dir.join("out");
    let made = Command::new("sh")
        .arg(root.join("deploy/tls/make-certs.sh"))
        .arg(&out)
        .output()
        .expect("sh runs");
    assert!(made.status.success(), "{made:?}");
    // The compose configuration's [http] tables, with its tls/ folder beside the file.
    let compose = std::fs::read_to_string(root.join("deploy/regwatch/regwatch.toml")).unwrap();
    let port = free_port();
    let text = compose.replace(
        "listen = \"0.0.0.0:9464\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    assert_ne!(
        text, compose,
        "the compose configuration's listen line moved"
    );
    // Its record key comes from the environment in compose; from a file here.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.key"), "compose-record-key-0123456789\n").unwrap();
    let text = text.replace(
        "record_key = { env = \"REGWATCH_RECORD_KEY\" }",
        &format!(
            "record_key = {{ file = {:?} }}",
            dir.join("record.key").display().to_string()
        ),
    );
    assert!(
        text.contains("record_key = { file"),
        "the compose record_key line moved"
    );
    std::os::unix::fs::symlink(out.join("regwatch"), dir.join("tls")).unwrap();
    let file = dir.join("regwatch.toml");
    std::fs::write(&file, &text).unwrap();

    let bin = env!("CARGO_BIN_EXE_regwatch");
    let checked = Command::new(bin)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        said.contains("https://127.0.0.1") && said.contains("client certificates required"),
        "{said}"
    );

    let cfg = regwatch::config::Config::load(&file).expect("the compose configuration loads");
    let served = serve(cfg.http).await;
    let probe = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            Command::new(bin)
                .arg("probe")
                .arg("--config")
                .arg(&file)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    assert!(String::from_utf8_lossy(&probe.stdout).contains(" 200 ok"));
    // Readiness answers 503 here (nothing consumes): the probe says so with its exit code.
    let ready = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            Command::new(bin)
                .args(["probe", "--ready", "--config"])
                .arg(&file)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!ready.status.success());
    assert!(String::from_utf8_lossy(&ready.stdout).contains(" 503 "));

    // Prometheus' side of the files.
    let prom = out.join("prometheus");
    let read = |p: &str| std::fs::read(prom.join(p)).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.crt")).unwrap())
        .identity(
            reqwest::Identity::from_pkcs8_pem(&read("client.crt"), &read("client.key")).unwrap(),
        )
        .build()
        .unwrap();
    let token = String::from_utf8(read("scrape.token")).unwrap();
    // The server certificate names localhost and 127.0.0.1, as make-certs.sh's defaults.
    let url = format!("https://localhost:{}/metrics", served.addr.port());
    let (code, _) = status(&client, &url, Some(token.trim())).await;
    assert_eq!(code, 200);
    let supervisor = std::fs::read_to_string(out.join("supervisor.token")).unwrap();
    let url = format!("https://127.0.0.1:{}/incidents", served.addr.port());
    assert_eq!(status(&client, &url, Some(supervisor.trim())).await.0, 200);
    assert_eq!(status(&client, &url, Some(token.trim())).await.0, 403);
}
