//! Settings of the HTTP endpoint: where it listens, TLS (optionally with client
//! certificates) and bearer tokens by role, in the spirit of Prometheus' web configuration.
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:9464"        # "off" disables; beyond loopback needs tokens or client certificates
//! insecure_allow_unauthenticated = false   # true: serve a non-loopback address to anyone (not advised)
//!
//! [http.tls]                        # re-read when the files change (certificate rotation)
//! cert_file = "/etc/regwatch/tls/server.crt"       # PEM chain, leaf first
//! key_file = "/etc/regwatch/tls/server.key"
//! client_ca_file = "/etc/regwatch/tls/clients.crt" # optional: clients must show a certificate it signed
//!
//! [[http.tokens]]                   # Authorization: Bearer <token>; files re-read when they change
//! role = "scrape"                   # scrape: /metrics; supervisor: /incidents; operator: POST /actions
//! file = "/run/secrets/regwatch/scrape-tokens"    # one token per line (two during a rotation)
//! ```
//!
//! `/healthz` and `/readyz` stay open: probes carry no credentials. Relative paths resolve
//! against the configuration file's directory. The files are read (and checked) at start-up,
//! so a typo is a start-up error, not a 401 at three in the morning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{invalid, ConfigError};

/// What a bearer token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `GET /metrics`.
    Scrape,
    /// The incident API (`/incidents`).
    Supervisor,
    /// `POST /actions`: acknowledge, annotate, close incidents (acting, not reading).
    Operator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Scrape, Role::Supervisor, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scrape => "scrape",
            Role::Supervisor => "supervisor",
            Role::Operator => "operator",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    pub listen: Option<SocketAddr>,
    pub tls: Option<TlsSettings>,
    /// Token files by role; empty: no bearer authentication.
    pub tokens: Vec<TokenFile>,
    pub insecure_allow_unauthenticated: bool,
}

impl HttpSettings {
    /// Loopback only, no TLS, no tokens: the default.
    pub fn loopback(listen: Option<SocketAddr>) -> HttpSettings {
        HttpSettings {
            listen,
            tls: None,
            tokens: Vec::new(),
            insecure_allow_unauthenticated: false,
        }
    }

    /// Whether a request must prove who it is (tokens or client certificates).
    pub fn authenticates(&self) -> bool {
        !self.tokens.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Client certificates required, verified against this CA bundle (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenFile {
    pub role: Role,
    pub file: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<String>,
    tls: Option<RawTls>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    insecure_allow_unauthenticated: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    role: String,
    file: PathBuf,
}

fn resolve(base: Option<&Path>, p: PathBuf) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    }
}

/// The tokens in a token file: one per line, blank lines and `#` comments skipped. A token
/// must be at least 16 characters of visible ASCII (a guessable token is no secret).
pub fn read_tokens(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{} line {}: a token is at least 16 visible ASCII characters",
                path.display(),
                n + 1
            ));
        }
        tokens.push(t.to_string());
    }
    if tokens.is_empty() {
        return Err(format!("{}: no token in the file", path.display()));
    }
    Ok(tokens)
}

impl RawHttp {
    pub(super) fn validate(self, base: Option<&Path>) -> Result<HttpSettings, ConfigError> {
        let listen = match self.listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            Some("off") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                invalid(
                    "http.listen",
                    format!("{text:?} is not an address:port (or \"off\")"),
                )
            })?),
        };
        let tls = self.tls.map(|t| TlsSettings {
            cert_file: resolve(base, t.cert_file),
            key_file: resolve(base, t.key_file),
            client_ca_file: t.client_ca_file.map(|p| resolve(base, p)),
        });
        if let Some(t) = &tls {
            for (key, p) in [
                ("http.tls.cert_file", &t.cert_file),
                ("http.tls.key_file", &t.key_file),
            ]
            .into_iter()
            .chain(
                t.client_ca_file
                    .iter()
                    .map(|p| ("http.tls.client_ca_file", p)),
            ) {
                std::fs::metadata(p).map_err(|e| invalid(key, format!("{}: {e}", p.display())))?;
            }
        }
        let mut tokens = Vec::new();
        for t in self.tokens {
            let role = Role::parse(&t.role).ok_or_else(|| {
                invalid(
                    "http.tokens.role",
                    format!("{:?}: one of scrape, supervisor, operator", t.role),
                )
            })?;
            let file = resolve(base, t.file);
            read_tokens(&file).map_err(|e| invalid("http.tokens.file", e))?;
            tokens.push(TokenFile { role, file });
        }
        let settings = HttpSettings {
            listen,
            tls,
            tokens,
            insecure_allow_unauthenticated: self.insecure_allow_unauthenticated,
        };
        if let Some(addr) = settings.listen {
            if !addr.ip().is_loopback()
                && !settings.authenticates()
                && !settings.insecure_allow_unauthenticated
            {
                return Err(invalid(
                    "http.listen",
                    format!(
                        "{addr} is reachable beyond this host, and nothing authenticates its clients: \
                         configure [[http.tokens]] or http.tls.client_ca_file, listen on 127.0.0.1, \
                         or set http.insecure_allow_unauthenticated = true to serve per-participant \
                         verdicts to anyone who can connect"
                    ),
                ));
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const P: &str = "[[participants]]\nid = \"B\"\nkind = \"broker\"\n";

    fn load(http: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{http}\n{P}"), None, false).map_err(|e| e.to_string())
    }

    #[test]
    fn beyond_loopback_something_must_authenticate_clients() {
        let dir = std::env::temp_dir().join(format!("regwatch-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t"), "a-token-of-sixteen-chars\n").unwrap();
        std::fs::write(dir.join("short"), "short\n").unwrap();
        // Loopback needs nothing (the default).
        assert!(load("[http]\nlisten = \"127.0.0.1:9464\"").is_ok());
        assert!(load("[http]\nlisten = \"[::1]:9464\"").is_ok());
        let err = load("[http]\nlisten = \"0.0.0.0:9464\"").unwrap_err();
        assert!(
            err.contains("http.listen")
                && err.contains("0.0.0.0:9464")
                && err.contains("insecure_allow_unauthenticated"),
            "{err}"
        );
        assert!(
            load("[http]\nlisten = \"0.0.0.0:9464\"\ninsecure_allow_unauthenticated = true")
                .is_ok()
        );
        let tokens = |file: &str, role: &str| {
            format!(
                "[http]\nlisten = \"0.0.0.0:9464\"\n[[http.tokens]]\nrole = \"{role}\"\nfile = {:?}\n",
                dir.join(file).display().to_string()
            )
        };
        let cfg = load(&tokens("t", "scrape")).unwrap();
        assert_eq!(cfg.http.tokens[0].role, super::Role::Scrape);
        // Token files are read at start-up: a bad one is an error naming the key and line.
        let err = load(&tokens("short", "scrape")).unwrap_err();
        assert!(
            err.contains("http.tokens.file") && err.contains("line 1"),
            "{err}"
        );
        let err = load(&tokens("missing", "scrape")).unwrap_err();
        assert!(
            err.contains("http.tokens.file") && err.contains("missing"),
            "{err}"
        );
        let err = load(&tokens("t", "admin")).unwrap_err();
        assert!(
            err.contains("http.tokens.role") && err.contains("admin"),
            "{err}"
        );
        // Client certificates authenticate too; the files must exist.
        let tls = format!(
            "[http]\nlisten = \"0.0.0.0:9464\"\n[http.tls]\ncert_file = {0:?}\nkey_file = {0:?}\nclient_ca_file = {0:?}\n",
            dir.join("t").display().to_string()
        );
        assert!(load(&tls).unwrap().http.authenticates());
        let err = load(&tls.replace("\"t\"", "\"nope\"").replace("/t\"", "/nope\"")).unwrap_err();
        assert!(err.contains("http.tls.cert_file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
