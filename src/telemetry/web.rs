//! The HTTP endpoint's gate: TLS (with client certificates when a client CA is configured)
//! and bearer tokens by role. Both sets of files are re-read when they change on disk (a
//! certificate rotated by cert-manager, a token added during a rotation), at most once a
//! second and only when a new connection or request needs them; a file that no longer loads
//! leaves the previous ones in force, logged and counted in `regwatch_http_reloads_total`.
//!
//! With a client CA, a client certificate is verified whenever one is shown (an untrusted
//! one fails the handshake) and required on every route but the probes: kubelets and
//! container health checks carry none, Prometheus and supervisors' tools do.
//!
//! Handshakes run off the accept loop, bounded in number and time, so a client that opens
//! connections and never speaks cannot stop others from being served. Every refusal is
//! counted in `regwatch_http_auth_failures_total` by reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509Name;
use prometheus::IntCounterVec;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_openssl::SslStream;

use crate::config::{read_tokens, Role, TlsSettings, TokenFile};

/// How often, at most, the files behind a [`Reloading`] value are looked at.
const RECHECK: Duration = Duration::from_secs(1);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 64;

/// What identifies a file's content without reading it: a rename (Kubernetes' secret
/// volumes, `mv` of a new certificate) changes the inode, an edit the time or the length.
type Stamp = Option<(u64, i64, i64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// A value loaded from files and loaded again when they change.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    reloads: IntCounterVec,
    cached: Mutex<(Instant, Vec<Stamp>, Arc<T>)>,
}

impl<T> Reloading<T> {
    /// Loads the value now: a failure here is a start-up error.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: Loader<T>,
        reloads: IntCounterVec,
    ) -> Result<Reloading<T>, String> {
        let stamps = paths.iter().map(stamp).collect();
        let value = Arc::new(load()?);
        Ok(Reloading {
            what,
            paths,
            load,
            reloads,
            cached: Mutex::new((Instant::now(), stamps, value)),
        })
    }

    /// The value in force, re-read first if a file changed since the last look.
    pub fn current(&self) -> Arc<T> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let (checked, stamps, value) = &mut *cached;
        if checked.elapsed() >= RECHECK {
            *checked = Instant::now();
            let now: Vec<Stamp> = self.paths.iter().map(stamp).collect();
            if now != *stamps {
                *stamps = now;
                match (self.load)() {
                    Ok(v) => {
                        *value = Arc::new(v);
                        self.reloads.with_label_values(&["ok"]).inc();
                        tracing::info!(what = self.what, "HTTP {} reloaded", self.what);
                    }
                    Err(e) => {
                        self.reloads.with_label_values(&["error"]).inc();
                        tracing::error!(what = self.what, error = %e, "HTTP {} changed but does not load; the previous ones stay in force", self.what);
                    }
                }
            }
        }
        value.clone()
    }
}

/// Builds the TLS acceptor: TLS 1.2 and 1.3 with Mozilla's intermediate ciphers; with a
/// client CA, a client certificate is asked for and, when shown, must be one it signed
/// (whether one is required is the [`Gate`]'s decision, per route).
pub fn acceptor(tls: &TlsSettings) -> Result<SslAcceptor, String> {
    let err = |what: &str, p: &PathBuf, e: openssl::error::ErrorStack| {
        format!("{what} {}: {e}", p.display())
    };
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| e.to_string())?;
    b.set_certificate_chain_file(&tls.cert_file)
        .map_err(|e| err("http.tls.cert_file", &tls.cert_file, e))?;
    b.set_private_key_file(&tls.key_file, SslFiletype::PEM)
        .map_err(|e| err("http.tls.key_file", &tls.key_file, e))?;
    b.check_private_key().map_err(|e| {
        format!(
            "http.tls.key_file {} does not match the certificate {}: {e}",
            tls.key_file.display(),
            tls.cert_file.display()
        )
    })?;
    if let Some(ca) = &tls.client_ca_file {
        b.set_ca_file(ca)
            .map_err(|e| err("http.tls.client_ca_file", ca, e))?;
        let names =
            X509Name::load_client_ca_file(ca).map_err(|e| err("http.tls.client_ca_file", ca, e))?;
        b.set_client_ca_list(names);
        b.set_verify(SslVerifyMode::PEER);
    }
    Ok(b.build())
}

/// A TCP listener whose connections come out TLS-terminated (the accept loop runs in its
/// own task; dropping the listener stops it).
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        acceptor: Arc<Reloading<SslAcceptor>>,
        failures: prometheus::IntCounter,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.current();
                let (tx, failures) = (tx.clone(), failures.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            failures.inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            failures.inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, task })
    }
}

async fn handshake(acceptor: &SslAcceptor, tcp: TcpStream) -> Result<SslStream<TcpStream>, String> {
    let ssl = Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
    let mut tls = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    Pin::new(&mut tls)
        .accept()
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls)
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (the runtime is stopping): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Who is on the other end of a connection: its address and, over TLS, the subject of the
/// client certificate it showed (verified by the handshake).
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<String>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        let certificate = stream.io().ssl().peer_certificate().map(|c| {
            c.subject_name()
                .entries()
                .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        });
        Peer {
            addr: *stream.remote_addr(),
            certificate,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            certificate: None,
        }
    }
}

/// The tokens in force: SHA-256 of each token and the role it grants.
pub struct Tokens(Vec<([u8; 32], Role)>);

impl Tokens {
    pub fn load(files: &[TokenFile]) -> Result<Tokens, String> {
        let mut all = Vec::new();
        for f in files {
            for t in read_tokens(&f.file)? {
                all.push((digest(&t), f.role));
            }
        }
        Ok(Tokens(all))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cookie a browser carries the token in (set by the board's sign-in form, since a
/// browser cannot send a bearer header when following a link).
pub const TOKEN_COOKIE: &str = "regwatch_token";

/// The token of the `regwatch_token` cookie, if the request carries one.
fn token_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == TOKEN_COOKIE).then(|| value.trim())
        })
}

/// Decides whether a request may reach a route.
pub struct Gate {
    tokens: Option<Reloading<Tokens>>,
    /// A client CA is configured: guarded routes need a (verified) client certificate.
    certificates: bool,
    failures: IntCounterVec,
}

impl Gate {
    /// `files` empty: no bearer authentication; `certificates`: a client certificate is
    /// required.
    pub fn new(
        files: &[TokenFile],
        certificates: bool,
        failures: IntCounterVec,
        reloads: IntCounterVec,
    ) -> Result<Gate, String> {
        let tokens = if files.is_empty() {
            None
        } else {
            let owned = files.to_vec();
            Some(Reloading::new(
                "token files",
                files.iter().map(|f| f.file.clone()).collect(),
                Box::new(move || Tokens::load(&owned)),
                reloads,
            )?)
        };
        Ok(Gate {
            tokens,
            certificates,
            failures,
        })
    }

    /// `Ok` when the peer shows a client certificate (if required) and the request's bearer
    /// token grants `role` (if tokens are configured); otherwise the 401 or 403 to answer,
    /// counted.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, peer: &Peer, headers: &HeaderMap, role: Role) -> Result<(), Response> {
        if self.certificates && peer.certificate.is_none() {
            return Err(self.refuse(
                "missing_client_certificate",
                StatusCode::UNAUTHORIZED,
                "unauthorized: this route needs a client certificate",
            ));
        }
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .or_else(|| token_cookie(headers));
        let Some(presented) = presented else {
            return Err(self.refuse(
                "missing_token",
                StatusCode::UNAUTHORIZED,
                "unauthorized: send Authorization: Bearer <token>",
            ));
        };
        let d = digest(presented);
        let tokens = tokens.current();
        let mut known = false;
        let mut granted = false;
        for (t, r) in &tokens.0 {
            if same(t, &d) {
                known = true;
                granted |= *r == role;
            }
        }
        match (known, granted) {
            (_, true) => Ok(()),
            (true, false) => Err(self.refuse(
                "wrong_role",
                StatusCode::FORBIDDEN,
                match role {
                    Role::Scrape => "forbidden: this token lacks the scrape role",
                    Role::Supervisor => "forbidden: this token lacks the supervisor role",
                    Role::Operator => "forbidden: this token lacks the operator role",
                },
            )),
            (false, _) => Err(self.refuse(
                "bad_token",
                StatusCode::UNAUTHORIZED,
                "unauthorized: unknown token",
            )),
        }
    }

    /// For acting: the role, and some credential at all (an endpoint without tokens or
    /// client certificates lets nobody act); `Ok` is who acts: the client certificate's
    /// subject, else the claimed name with the token's fingerprint.
    #[allow(clippy::result_large_err)]
    pub fn actor(
        &self,
        peer: &Peer,
        headers: &HeaderMap,
        claimed: &str,
    ) -> Result<String, Response> {
        if self.tokens.is_none() && !self.certificates {
            return Err(self.refuse(
                "no_credentials",
                StatusCode::FORBIDDEN,
                "forbidden: actions need operator tokens ([[http.tokens]] role = \"operator\") or client certificates",
            ));
        }
        self.check(peer, headers, Role::Operator)?;
        if let Some(subject) = &peer.certificate {
            return Ok(subject.clone());
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim()))
            .unwrap_or_default();
        let d = digest(token);
        let fingerprint: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{claimed} (operator token {fingerprint})"))
    }

    fn refuse(&self, reason: &str, status: StatusCode, text: &'static str) -> Response {
        self.failures.with_label_values(&[reason]).inc();
        let mut r = (status, format!("{text}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"regwatch\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(dir: &std::path::Path) -> (Gate, IntCounterVec) {
        std::fs::write(
            dir.join("scrape"),
            "# prometheus\nscrape-token-0123456789\n",
        )
        .unwrap();
        std::fs::write(dir.join("sup"), "supervisor-token-0123456789\n").unwrap();
        let failures = IntCounterVec::new(prometheus::Opts::new("f", "f"), &["reason"]).unwrap();
        let reloads = IntCounterVec::new(prometheus::Opts::new("r", "r"), &["result"]).unwrap();
        let files = [
            TokenFile {
                role: Role::Scrape,
                file: dir.join("scrape"),
            },
            TokenFile {
                role: Role::Supervisor,
                file: dir.join("sup"),
            },
        ];
        (
            Gate::new(&files, false, failures.clone(), reloads).unwrap(),
            failures,
        )
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    const PEER: Peer = Peer {
        addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1),
        certificate: None,
    };

    #[test]
    fn a_token_grants_its_role_only_and_refusals_are_counted() {
        let dir = std::env::temp_dir().join(format!("regwatch-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (g, failures) = gate(&dir);
        assert!(g
            .check(&PEER, &bearer("scrape-token-0123456789"), Role::Scrape)
            .is_ok());
        assert!(g
            .check(
                &PEER,
                &bearer("supervisor-token-0123456789"),
                Role::Supervisor
            )
            .is_ok());
        let status = |r: Result<(), Response>| r.unwrap_err().status();
        assert_eq!(
            status(g.check(&PEER, &bearer("scrape-token-0123456789"), Role::Supervisor)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(g.check(&PEER, &bearer("scrape-token-012345678"), Role::Scrape)),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(g.check(&PEER, &HeaderMap::new(), Role::Scrape)),
            StatusCode::UNAUTHORIZED
        );
        for (reason, n) in [("wrong_role", 1), ("bad_token", 1), ("missing_token", 1)] {
            assert_eq!(failures.with_label_values(&[reason]).get(), n, "{reason}");
        }
        // A rotation: the new token works once the file changed, the old one no more.
        std::thread::sleep(RECHECK);
        std::fs::write(dir.join("scrape"), "scrape-token-rotated-000000\n").unwrap();
        assert!(g
            .check(&PEER, &bearer("scrape-token-rotated-000000"), Role::Scrape)
            .is_ok());
        assert!(g
            .check(&PEER, &bearer("scrape-token-0123456789"), Role::Scrape)
            .is_err());
        // A broken file keeps the tokens in force.
        std::thread::sleep(RECHECK);
        std::fs::write(dir.join("scrape"), "short\n").unwrap();
        assert!(g
            .check(&PEER, &bearer("scrape-token-rotated-000000"), Role::Scrape)
            .is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
