//! Settings of webhook delivery: receivers (where and how to send), routes (which alerts go
//! where) and the outbox's own Kafka names. Receivers' URLs, extra header values and
//! signing keys may be secrets: each takes a plain string or `{ file = ".." }` /
//! `{ env = ".." }`, and is kept as a [`Secret`] that is never logged.
//!
//! With no receiver the outbox does not run. With receivers and no route, every receiver
//! gets every alert; with routes, an alert goes to the union of the receivers of every
//! route it matches (a route's filters all have to hold; an absent filter holds always).
//!
//! ```toml
//! [delivery]
//! group_id = "regwatch.outbox"          # default: "<kafka.group_id>.outbox"; each receiver
//!                                       # consumes as its own group "<group_id>.<name>"
//! dead_letter_topic = "regwatch.alert-dead-letters"
//! external_url = "https://regwatch.example"   # where supervisors reach /incidents (Alertmanager
//!                                       # format: externalURL, and generatorURL per participant)
//!
//! [[delivery.receivers]]
//! name = "oncall"                       # [a-z0-9_-], unique; a metric label
//! url = { env = "ONCALL_WEBHOOK_URL" }  # or a plain "https://..."
//! format = "native"                     # native | alertmanager
//! timeout = "10s"
//! headers = { "X-Team" = "supervision", "Authorization" = { file = "/run/secrets/token" } }
//! signing_keys = [{ id = "2026-11", secret = { env = "ONCALL_KEY_2026_11" } }]   # at least one
//! send_resolved = true
//! retry_initial = "500ms"               # first back-off; doubles, with full jitter
//! retry_max = "5m"                      # longest back-off (and longest Retry-After honoured)
//! breaker_failures = 5                  # consecutive failures that open the circuit
//! breaker_cooldown = "30s"              # how long it stays open before one probe
//! max_retry_age = "1h"                  # an alert refused with 5xx (or 408) this long goes
//!                                       # to the dead-letter topic ("off": retried forever)
//! catch_up = false                      # a new receiver (its group never committed) starts
//!                                       # with the alerts raised since it was added; true:
//!                                       # with the oldest alert the alerts topic retains
//! ca_file = "/etc/regwatch/oncall-ca.crt"      # trust only this CA for the receiver (PEM)
//! client_cert_file = "/etc/regwatch/oncall-client.crt"   # mutual TLS: the certificate shown
//! client_key_file = "/etc/regwatch/oncall-client.key"    # and its PKCS#8 PEM key
//! insecure_allow_http = false           # http:// beyond loopback is refused unless true
//!
//! [[delivery.routes]]
//! receivers = ["oncall"]
//! min_level = "major"                   # general | larger | major | extraordinary
//! types = ["incident"]                  # incident | telemetry_gap
//! participants = ["GZ-BRK-0001"]        # default: all
//! exemption = "ineligible"              # eligible | ineligible; default: both
//! reminders = true                      # pass reminders of matching incidents
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::service::{secret, RawSecret};
use super::{duration_or, invalid, ConfigError, KafkaSettings, Secret, TopicSelection};
use crate::alert::AlertType;
use crate::registry::Registry;
use crate::score::{Exemption, Level};

/// What a receiver is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// The alert object of CONTRACT.md section 3, as is.
    Native,
    /// Prometheus Alertmanager's webhook payload, version 4.
    Alertmanager,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Native => "native",
            PayloadFormat::Alertmanager => "alertmanager",
        }
    }
}

/// One key that signs requests; several may be active at once (rotation).
#[derive(Clone, Debug, PartialEq)]
pub struct SigningKey {
    pub id: String,
    pub secret: Secret,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub url: Secret,
    pub format: PayloadFormat,
    pub timeout_ms: i64,
    pub headers: Vec<(String, Secret)>,
    pub signing_keys: Vec<SigningKey>,
    pub send_resolved: bool,
    pub retry_initial_ms: i64,
    pub retry_max_ms: i64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: i64,
    /// How long an alert may keep being refused with a retryable status (5xx, 408) before it
    /// is dead-lettered (0: never).
    pub max_retry_age_ms: i64,
    /// Whether a partition the receiver's group never committed starts at the oldest alert
    /// retained (true) or at the alerts raised since the outbox started (false).
    pub catch_up: bool,
    /// PEM of the only CA trusted for this receiver (`None`: the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Mutual TLS: the client certificate chain and its PKCS#8 key, PEM.
    pub client_identity: Option<(Vec<u8>, Secret)>,
}

/// Which alerts go to which receivers (indices into [`DeliverySettings::receivers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub receivers: Vec<usize>,
    pub min_level: Level,
    /// `None`: every type.
    pub types: Option<Vec<AlertType>>,
    /// `None`: every participant.
    pub participants: Option<HashSet<String>>,
    /// `None`: either status.
    pub exemption: Option<Exemption>,
    pub reminders: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeliverySettings {
    pub receivers: Vec<Receiver>,
    pub routes: Vec<Route>,
    /// Prefix of the receivers' consumer groups (`None`: `<kafka.group_id>.outbox`).
    pub group_id: Option<String>,
    pub dead_letter_topic: String,
    /// Where supervisors reach this daemon's HTTP endpoint (empty: not given).
    pub external_url: String,
}

impl DeliverySettings {
    pub fn enabled(&self) -> bool {
        !self.receivers.is_empty()
    }

    /// The consumer group of one receiver.
    pub fn group_of(&self, kafka_group: &str, receiver: &Receiver) -> String {
        match &self.group_id {
            Some(g) => format!("{g}.{}", receiver.name),
            None => format!("{kafka_group}.outbox.{}", receiver.name),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    group_id: Option<String>,
    dead_letter_topic: Option<String>,
    external_url: Option<String>,
    #[serde(default)]
    receivers: Vec<RawReceiver>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

/// A plain string, or a secret read from a file or the environment.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawValue {
    Plain(String),
    Secret(RawSecret),
}

impl RawValue {
    fn resolve(self, key: &str) -> Result<Secret, ConfigError> {
        match self {
            RawValue::Plain(s) => Ok(Secret::new(s)),
            RawValue::Secret(raw) => secret(key, raw),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    url: RawValue,
    format: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, RawValue>,
    #[serde(default)]
    signing_keys: Vec<RawSigningKey>,
    send_resolved: Option<bool>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    breaker_failures: Option<u32>,
    breaker_cooldown: Option<String>,
    max_retry_age: Option<String>,
    #[serde(default)]
    catch_up: bool,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    insecure_allow_http: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigningKey {
    id: String,
    secret: RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    receivers: Vec<String>,
    min_level: Option<String>,
    types: Option<Vec<String>>,
    participants: Option<Vec<String>>,
    exemption: Option<String>,
    reminders: Option<bool>,
}

/// Headers regwatch sets itself on every request (or that HTTP framing owns).
const MANAGED_HEADERS: [&str; 10] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "x-regwatch-timestamp",
    "x-regwatch-signature",
    "x-regwatch-attempt",
    "user-agent",
    "transfer-encoding",
    "connection",
];

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl RawDelivery {
    pub(super) fn validate(self, base: Option<&Path>) -> Result<DeliverySettings, ConfigError> {
        let mut receivers = Vec::with_capacity(self.receivers.len());
        for (i, r) in self.receivers.into_iter().enumerate() {
            let key = format!("delivery.receivers[{i}]");
            let receiver = r.validate(&key, base)?;
            if receivers.iter().any(|o: &Receiver| o.name == receiver.name) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("{:?} names two receivers", receiver.name),
                ));
            }
            receivers.push(receiver);
        }
        let routes: Vec<Route> = self
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.validate(&format!("delivery.routes[{i}]"), &receivers))
            .collect::<Result<_, _>>()?;
        if !routes.is_empty() {
            for (i, r) in receivers.iter().enumerate() {
                if !routes
                    .iter()
                    .any(|route: &Route| route.receivers.contains(&i))
                {
                    return Err(invalid(
                        "delivery.routes",
                        format!("receiver {:?} is in no route: it would get nothing", r.name),
                    ));
                }
            }
        }
        if let Some(g) = &self.group_id {
            if g.is_empty() {
                return Err(invalid("delivery.group_id", "must not be empty"));
            }
        }
        let external_url = self.external_url.unwrap_or_default();
        if !external_url.is_empty()
            && (!(external_url.starts_with("http://") || external_url.starts_with("https://"))
                || reqwest::Url::parse(&external_url).is_err())
        {
            return Err(invalid(
                "delivery.external_url",
                format!("{external_url:?} is not an http:// or https:// URL"),
            ));
        }
        Ok(DeliverySettings {
            receivers,
            routes,
            external_url,
            group_id: self.group_id,
            dead_letter_topic: super::service::topic_name(
                "delivery.dead_letter_topic",
                self.dead_letter_topic
                    .unwrap_or_else(|| "regwatch.alert-dead-letters".into()),
            )?,
        })
    }
}

/// Checks what delivery settings name elsewhere: the alert dead-letter topic must be none
/// of the topics regwatch reads or writes (a refused alert written back to the alerts topic
/// would come round forever), and routes name registered participants.
pub(super) fn check_against(
    d: &DeliverySettings,
    kafka: &KafkaSettings,
    registry: &Registry,
) -> Result<(), ConfigError> {
    let mut taken = vec![
        kafka.alerts_topic.as_str(),
        kafka.reminders_topic.as_str(),
        kafka.state_topic.as_str(),
        kafka.dead_letter_topic.as_str(),
    ];
    if let TopicSelection::List(inputs) = &kafka.topics {
        taken.extend(inputs.iter().map(String::as_str));
    }
    if taken.contains(&d.dead_letter_topic.as_str()) {
        return Err(invalid(
            "delivery.dead_letter_topic",
            format!(
                "{:?} is already one of regwatch's other topics",
                d.dead_letter_topic
            ),
        ));
    }
    for (i, route) in d.routes.iter().enumerate() {
        let mut unknown: Vec<&String> = route
            .participants
            .iter()
            .flatten()
            .filter(|p| registry.lookup(p).is_none())
            .collect();
        unknown.sort();
        if let Some(p) = unknown.first() {
            return Err(invalid(
                &format!("delivery.routes[{i}].participants"),
                format!("{p:?} is not a registered participant"),
            ));
        }
    }
    Ok(())
}

impl RawReceiver {
    fn validate(self, key: &str, base: Option<&Path>) -> Result<Receiver, ConfigError> {
        if !is_name(&self.name) {
            return Err(invalid(
                &format!("{key}.name"),
                format!(
                    "{:?} is not a receiver name (1..64 of [a-z0-9_-])",
                    self.name
                ),
            ));
        }
        let (ca_pem, client_identity) = self.tls(key, base)?;
        let url = self.url.resolve(&format!("{key}.url"))?;
        // The URL may carry a token: the error shows its scheme, never the text.
        let u = url.expose();
        if !(u.starts_with("http://") || u.starts_with("https://"))
            || reqwest::Url::parse(u).is_err()
        {
            return Err(invalid(
                &format!("{key}.url"),
                "not an http:// or https:// URL (value not shown: it may hold a token)",
            ));
        }
        if u.starts_with("http://") && !self.insecure_allow_http && !is_loopback(u) {
            return Err(invalid(
                &format!("{key}.url"),
                "an http:// URL beyond loopback sends alerts and signatures in the clear: use https://, \
                 or set insecure_allow_http = true for this receiver",
            ));
        }
        let format = match self.format.as_deref().unwrap_or("native") {
            "native" => PayloadFormat::Native,
            "alertmanager" => PayloadFormat::Alertmanager,
            other => {
                return Err(invalid(
                    &format!("{key}.format"),
                    format!("{other:?} (known: native, alertmanager)"),
                ))
            }
        };
        let ms = |name: &str, v: Option<String>, default: i64, min: i64| {
            let k = format!("{key}.{name}");
            let ms = duration_or(&k, v, default)?;
            if ms < min {
                return Err(invalid(&k, format!("must be at least {min}ms")));
            }
            Ok(ms)
        };
        let timeout_ms = ms("timeout", self.timeout, 10_000, 10)?;
        let retry_initial_ms = ms("retry_initial", self.retry_initial, 500, 1)?;
        let retry_max_ms = ms("retry_max", self.retry_max, 300_000, 1)?;
        if retry_max_ms < retry_initial_ms {
            return Err(invalid(
                &format!("{key}.retry_max"),
                "must be at least retry_initial",
            ));
        }
        let breaker_cooldown_ms = ms("breaker_cooldown", self.breaker_cooldown, 30_000, 1)?;
        let breaker_failures = self.breaker_failures.unwrap_or(5);
        let max_retry_age_ms = ms("max_retry_age", self.max_retry_age, 3_600_000, 0)?;
        if (1..1_000).contains(&max_retry_age_ms) {
            return Err(invalid(
                &format!("{key}.max_retry_age"),
                "must be at least 1s (or \"off\")",
            ));
        }
        if breaker_failures == 0 {
            return Err(invalid(
                &format!("{key}.breaker_failures"),
                "must be at least 1",
            ));
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            let k = format!("{key}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if MANAGED_HEADERS.contains(&lower.as_str()) {
                return Err(invalid(&k, "is set by regwatch"));
            }
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(&k, "is not an HTTP header name"));
            }
            let value = value.resolve(&k)?;
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err(invalid(&k, "the value is not a valid header value"));
            }
            headers.push((name, value));
        }
        let mut signing_keys: Vec<SigningKey> = Vec::with_capacity(self.signing_keys.len());
        for (j, k) in self.signing_keys.into_iter().enumerate() {
            let kk = format!("{key}.signing_keys[{j}]");
            if k.id.is_empty()
                || !k
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(invalid(
                    &format!("{kk}.id"),
                    format!("{:?} is not a key id ([A-Za-z0-9._-]+)", k.id),
                ));
            }
            if signing_keys.iter().any(|o| o.id == k.id) {
                return Err(invalid(&format!("{kk}.id"), format!("{:?} twice", k.id)));
            }
            let secret = k.secret.resolve(&format!("{kk}.secret"))?;
            if secret.expose().len() < 16 {
                return Err(invalid(
                    &format!("{kk}.secret"),
                    "shorter than 16 bytes (too weak for HMAC-SHA256)",
                ));
            }
            signing_keys.push(SigningKey { id: k.id, secret });
        }
        if signing_keys.is_empty() {
            return Err(invalid(
                &format!("{key}.signing_keys"),
                "give at least one key: every request is signed",
            ));
        }
        Ok(Receiver {
            name: self.name,
            url,
            format,
            timeout_ms,
            headers,
            signing_keys,
            send_resolved: self.send_resolved.unwrap_or(true),
            retry_initial_ms,
            retry_max_ms,
            breaker_failures,
            breaker_cooldown_ms,
            max_retry_age_ms,
            catch_up: self.catch_up,
            ca_pem,
            client_identity,
        })
    }

    /// Reads and checks the receiver's CA and client certificate files now, so that a bad
    /// file is a start-up error naming its key, not a failed delivery at night.
    #[allow(clippy::type_complexity)]
    fn tls(
        &self,
        key: &str,
        base: Option<&Path>,
    ) -> Result<(Option<Vec<u8>>, Option<(Vec<u8>, Secret)>), ConfigError> {
        let read = |name: &str, p: &PathBuf| {
            let p = match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.clone(),
            };
            std::fs::read(&p)
                .map_err(|e| invalid(&format!("{key}.{name}"), format!("{}: {e}", p.display())))
        };
        let ca = match &self.ca_file {
            Some(p) => {
                let pem = read("ca_file", p)?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    invalid(
                        &format!("{key}.ca_file"),
                        format!("{}: not PEM certificates: {e}", p.display()),
                    )
                })?;
                if certs.is_empty() {
                    return Err(invalid(
                        &format!("{key}.ca_file"),
                        format!("{}: no PEM certificate in the file", p.display()),
                    ));
                }
                Some(pem)
            }
            None => None,
        };
        let identity = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let cert = read("client_cert_file", c)?;
                let pem = read("client_key_file", k)?;
                reqwest::Identity::from_pkcs8_pem(&cert, &pem).map_err(|e| {
                    invalid(
                        &format!("{key}.client_key_file"),
                        format!(
                            "{} with {}: not a PEM certificate and PKCS#8 key pair ({e}; \
                             convert an RSA key with openssl pkcs8 -topk8 -nocrypt)",
                            c.display(),
                            k.display()
                        ),
                    )
                })?;
                let key_text = String::from_utf8(pem)
                    .map_err(|_| invalid(&format!("{key}.client_key_file"), "not PEM text"))?;
                Some((cert, Secret::new(key_text)))
            }
            _ => {
                return Err(invalid(
                    &format!("{key}.client_cert_file"),
                    "give client_cert_file and client_key_file together",
                ))
            }
        };
        Ok((ca, identity))
    }
}

/// Whether an http:// URL names this host (127.0.0.0/8, ::1 or localhost): traffic that
/// never leaves it.
fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl RawRoute {
    fn validate(self, key: &str, receivers: &[Receiver]) -> Result<Route, ConfigError> {
        if self.receivers.is_empty() {
            return Err(invalid(
                &format!("{key}.receivers"),
                "name at least one receiver",
            ));
        }
        let indices = self
            .receivers
            .iter()
            .map(|name| {
                receivers
                    .iter()
                    .position(|r| &r.name == name)
                    .ok_or_else(|| {
                        invalid(
                            &format!("{key}.receivers"),
                            format!("no receiver is named {name:?}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let min_level = match self.min_level {
            None => Level::General,
            Some(s) => match Level::parse(&s) {
                Some(l) if l != Level::None => l,
                _ => {
                    return Err(invalid(
                        &format!("{key}.min_level"),
                        format!("{s:?} (known: general, larger, major, extraordinary)"),
                    ))
                }
            },
        };
        let types = self
            .types
            .map(|ts| {
                ts.iter()
                    .map(|t| match t.as_str() {
                        "incident" => Ok(AlertType::Incident),
                        "telemetry_gap" => Ok(AlertType::TelemetryGap),
                        other => Err(invalid(
                            &format!("{key}.types"),
                            format!("{other:?} (known: incident, telemetry_gap)"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let exemption = match self.exemption.as_deref() {
            None => None,
            Some("eligible") => Some(Exemption::Eligible),
            Some("ineligible") => Some(Exemption::Ineligible),
            Some(other) => {
                return Err(invalid(
                    &format!("{key}.exemption"),
                    format!("{other:?} (known: eligible, ineligible)"),
                ))
            }
        };
        Ok(Route {
            receivers: indices,
            min_level,
            types,
            participants: self.participants.map(|p| p.into_iter().collect()),
            exemption,
            reminders: self.reminders.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(delivery: &str) -> Result<super::DeliverySettings, String> {
        Config::from_toml(
            &format!("{delivery}\n[[participants]]\nid = \"A\"\nkind = \"broker\"\n"),
            None,
            false,
        )
        .map(|c| c.delivery)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn receivers_and_routes_with_secrets() {
        std::env::set_var("REGWATCH_TEST_HOOK_URL", "https://hooks.example/T0K3N");
        std::env::set_var("REGWATCH_TEST_HOOK_KEY", "0123456789abcdef-key");
        let d = load(
            r#"
[[delivery.receivers]]
name = "oncall"
url = { env = "REGWATCH_TEST_HOOK_URL" }
headers = { "X-Team" = "supervision" }
signing_keys = [{ id = "k2", secret = { env = "REGWATCH_TEST_HOOK_KEY" } }, { id = "k1", secret = "another-long-secret" }]
[[delivery.receivers]]
name = "chat"
url = "http://127.0.0.1:9/hook"
format = "alertmanager"
send_resolved = false
signing_keys = [{ id = "c1", secret = "chat-signing-key-0001" }]
[[delivery.routes]]
receivers = ["oncall", "chat"]
min_level = "major"
types = ["incident"]
exemption = "ineligible"
"#,
        )
        .unwrap();
        assert!(d.enabled());
        assert_eq!(d.receivers[0].url.expose(), "https://hooks.example/T0K3N");
        assert_eq!(d.receivers[0].signing_keys.len(), 2);
        assert_eq!(d.receivers[1].format, super::PayloadFormat::Alertmanager);
        assert!(!d.receivers[1].send_resolved);
        assert_eq!(d.routes[0].receivers, vec![0, 1]);
        assert_eq!(
            d.group_of("regwatch", &d.receivers[1]),
            "regwatch.outbox.chat"
        );
        let shown = format!("{d:?}");
        assert!(!shown.contains("T0K3N") && !shown.contains("0123456789abcdef"));
    }

    const KEY: &str = "signing_keys = [{ id = \"k\", secret = \"0123456789abcdef\" }]\n";

    /// Receiver `name` at `url` with a signing key, then `extra` lines.
    fn receiver(name: &str, url: &str, extra: &str) -> String {
        format!("[[delivery.receivers]]\nname = \"{name}\"\nurl = {url}\n{KEY}{extra}")
    }

    #[test]
    fn max_retry_age_and_catch_up_default_to_an_hour_and_starting_now() {
        let d = load(&receiver("a", "\"https://x\"", "")).unwrap();
        assert_eq!(d.receivers[0].max_retry_age_ms, 3_600_000);
        assert!(!d.receivers[0].catch_up);
        let d = load(&receiver(
            "a",
            "\"https://x\"",
            "max_retry_age = \"off\"\ncatch_up = true\n",
        ))
        .unwrap();
        assert_eq!(d.receivers[0].max_retry_age_ms, 0, "off: retried forever");
        assert!(d.receivers[0].catch_up);
    }

    #[test]
    fn bad_delivery_settings_name_the_key_and_hide_secrets() {
        let a = |extra: &str| receiver("a", "\"https://x\"", extra);
        let cases = [
            (receiver("On Call", "\"https://x\"", ""), "delivery.receivers[0].name"),
            (receiver("a", "\"ftp://secret-token@x\"", ""), "delivery.receivers[0].url"),
            (a("format = \"slack\"\n"), "delivery.receivers[0].format"),
            (
                a("headers = { \"Idempotency-Key\" = \"x\" }\n"),
                "delivery.receivers[0].headers.Idempotency-Key",
            ),
            (
                a("headers = { \"User-Agent\" = \"x\" }\n"),
                "delivery.receivers[0].headers.User-Agent",
            ),
            (
                "[[delivery.receivers]]\nname = \"a\"\nurl = \"https://x\"\nsigning_keys = [{ id = \"k\", secret = \"short\" }]\n".to_string(),
                "delivery.receivers[0].signing_keys[0].secret",
            ),
            (
                "[[delivery.receivers]]\nname = \"a\"\nurl = \"https://x\"\n".to_string(),
                "delivery.receivers[0].signing_keys",
            ),
            (
                a("retry_initial = \"10s\"\nretry_max = \"1s\"\n"),
                "delivery.receivers[0].retry_max",
            ),
            (
                a("max_retry_age = \"500ms\"\n"),
                "delivery.receivers[0].max_retry_age",
            ),
            (
                a("") + &receiver("a", "\"https://y\"", ""),
                "delivery.receivers[1].name",
            ),
            (
                a("[[delivery.routes]]\nreceivers = [\"b\"]\n"),
                "delivery.routes[0].receivers",
            ),
            (
                a("[[delivery.routes]]\nreceivers = [\"a\"]\nmin_level = \"severe\"\n"),
                "delivery.routes[0].min_level",
            ),
            (
                a("[[delivery.routes]]\nreceivers = [\"a\"]\nparticipants = [\"A\", \"TYPO\"]\n"),
                "delivery.routes[0].participants",
            ),
            (
                a("") + &receiver("b", "\"https://y\"", "[[delivery.routes]]\nreceivers = [\"a\"]\n"),
                "delivery.routes",
            ),
            (
                receiver("a", "{ env = \"REGWATCH_TEST_UNSET_URL\" }", ""),
                "delivery.receivers[0].url",
            ),
            (
                "[delivery]\ndead_letter_topic = \"no spaces\"\n".to_string(),
                "delivery.dead_letter_topic",
            ),
            (
                "[delivery]\ndead_letter_topic = \"regwatch.alerts\"\n".to_string(),
                "delivery.dead_letter_topic",
            ),
            (
                "[delivery]\nexternal_url = \"regwatch.example\"\n".to_string(),
                "delivery.external_url",
            ),
        ];
        for (text, key) in cases {
            let err = load(&text).unwrap_err();
            assert!(err.contains(key), "{err:?} names {key}");
            assert!(!err.contains("secret-token"), "{err}");
        }
        let none = load("").unwrap();
        assert!(!none.enabled());
        assert_eq!(none.dead_letter_topic, "regwatch.alert-dead-letters");
    }

    #[test]
    fn plain_http_beyond_loopback_is_refused_and_receiver_tls_files_are_checked() {
        let err = load(&receiver("a", "\"http://hooks.example/x\"", "")).unwrap_err();
        assert!(
            err.contains("delivery.receivers[0].url") && err.contains("insecure_allow_http"),
            "{err}"
        );
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://[::1]:9/hook",
        ] {
            assert!(
                load(&receiver("a", &format!("{url:?}"), "")).is_ok(),
                "{url}"
            );
        }
        assert!(load(&receiver(
            "a",
            "\"http://hooks.example/x\"",
            "insecure_allow_http = true\n"
        ))
        .is_ok());
        let dir = std::env::temp_dir().join(format!("regwatch-rtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
        let file = |name: &str| format!("{:?}", dir.join(name).display().to_string());
        let https = |extra: String| load(&receiver("a", "\"https://x\"", &extra));
        let err = https(format!("ca_file = {}\n", file("missing.pem"))).unwrap_err();
        assert!(err.contains("delivery.receivers[0].ca_file") && err.contains("missing.pem"));
        let err = https(format!("ca_file = {}\n", file("junk.pem"))).unwrap_err();
        assert!(err.contains("delivery.receivers[0].ca_file"), "{err}");
        let err = https(format!("client_cert_file = {}\n", file("junk.pem"))).unwrap_err();
        assert!(err.contains("together"), "{err}");
        let err = https(format!(
            "client_cert_file = {0}\nclient_key_file = {0}\n",
            file("junk.pem")
        ))
        .unwrap_err();
        assert!(
            err.contains("delivery.receivers[0].client_key_file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
