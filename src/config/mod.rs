//! The one configuration file: raw TOML (plus `REGWATCH__SECTION__KEY` environment
//! overrides) -> validated [`Config`] whose fields cannot hold an invalid value.
//!
//! Every key is optional except the participant registry's entries, so a file holding only
//! `[[participants]]` tables is valid. Unknown keys are refused, and every error names the key
//! (`engine.dedup_window: invalid type: ...`).
//!
//! ```toml
//! [engine]
//! max_incidents = 100000            # open + retained resolved incidents, in total
//! max_open_per_participant = 1000   # open incidents per participant
//! dedup_window = 16384             # recent events remembered to drop duplicates
//! resolved_retention = "24h"        # how long a resolved incident is kept
//! telemetry_gap = "5m"              # silence that raises a telemetry_gap alert ("off" = never)
//! liveness_retention = "7d"         # a partition forgets a participant silent this long ("off")
//! max_event_bytes = 65536           # largest accepted message (the contract's limit)
//!
//! [rules]
//! path = "rules.toml"               # relative to this file; default: the built-in grid
//! calendars = "calendars.toml"      # market calendars (trading_minutes); default: built in
//! watch = "10s"                     # reload when the file's content changes; default "off"
//!                                   # (SIGHUP reloads either way)
//!
//! [alerts]
//! min_level = "general"             # incident alerts start at this level
//! reminder_interval = "1h"          # remind while an incident stays unresolved ("off"; min 1m)
//! reminder_min_level = "major"      # ... at or above this level (see kafka.reminders_topic)
//!
//! [[participants]]
//! id = "GZ-BRK-0001"
//! name = "Example Securities"       # default: the id
//! kind = "broker"
//! effective_customers = 2500000     # default: 0
//! ```

mod delivery;
mod history;
mod service;
mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use delivery::{DeliverySettings, PayloadFormat, Receiver, Route, SigningKey};
pub use history::HistorySettings;
pub use service::{
    DaemonSettings, KafkaSettings, LogSettings, Protocol, Secret, Security, TopicMatcher,
    TopicSelection,
};
pub use web::{read_tokens, HttpSettings, Role, TlsSettings, TokenFile};

use crate::calendar::Calendars;
use crate::decode::MAX_EVENT_BYTES;
use crate::registry::{Participant, ParticipantKind, Registry};
use crate::score::{ClockMode, EngineSettings, Level, Rules, RulesError};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("config: {key}: {problem}")]
    Invalid { key: String, problem: String },
    /// The rules error is shown in the message, not chained as a source too (an `{:#}`
    /// display would print it twice).
    #[error("config: rules: {0}")]
    Rules(RulesError),
}

impl From<RulesError> for ConfigError {
    fn from(e: RulesError) -> ConfigError {
        ConfigError::Rules(e)
    }
}

pub(crate) fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub engine: EngineSettings,
    pub rules: Rules,
    /// Where the rules came from (`None`: the built-in grid).
    pub rules_path: Option<PathBuf>,
    /// How often the rules file is checked for a change of content (0: never; SIGHUP only).
    pub rules_watch_ms: i64,
    /// Where the market calendars came from (`None`: the built-in ones); reloaded with the
    /// rules.
    pub calendars_path: Option<PathBuf>,
    pub registry: Registry,
    pub kafka: KafkaSettings,
    pub daemon: DaemonSettings,
    pub http: HttpSettings,
    pub delivery: DeliverySettings,
    pub log: LogSettings,
    pub history: HistorySettings,
    /// SHA-256 of the configuration text, for operators to tell which config runs.
    pub digest: String,
}

impl Config {
    /// Reads and validates a configuration file, with environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text, path.parent(), true)
    }

    /// Validates configuration text. Relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: Option<&Path>, env: bool) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        if env {
            builder = builder.add_source(
                config::Environment::with_prefix("REGWATCH")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        let cfg = builder
            .build()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(cfg).map_err(|e| {
            let key = e.path().to_string();
            invalid(&key, e.into_inner().to_string())
        })?;
        // The digest covers the file and the REGWATCH__ overrides that applied to it.
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        if env {
            let mut vars: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| k.starts_with("REGWATCH__"))
                .collect();
            vars.sort();
            for (k, v) in vars {
                hasher.update(format!("\n{k}={v}").as_bytes());
            }
        }
        let digest = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        raw.validate(base, digest)
    }

    /// A configuration with the built-in grid and defaults (for tests and the demo).
    pub fn with_participants(participants: Vec<Participant>) -> Result<Config, ConfigError> {
        let mut cfg = RawConfig::default().validate(None, String::new())?;
        cfg.registry = Registry::new(participants).map_err(|e| invalid("participants", e))?;
        Ok(cfg)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    rules: RawRulesRef,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    kafka: service::RawKafka,
    #[serde(default)]
    daemon: service::RawDaemon,
    #[serde(default)]
    http: web::RawHttp,
    #[serde(default)]
    delivery: delivery::RawDelivery,
    #[serde(default)]
    log: service::RawLog,
    #[serde(default)]
    history: history::RawHistory,
    #[serde(default)]
    participants: Vec<RawParticipant>,
    #[serde(default)]
    binding: RawBinding,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    max_incidents: Option<usize>,
    max_open_per_participant: Option<usize>,
    dedup_window: Option<usize>,
    resolved_retention: Option<String>,
    telemetry_gap: Option<String>,
    liveness_retention: Option<String>,
    max_event_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRulesRef {
    path: Option<PathBuf>,
    watch: Option<String>,
    calendars: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    min_level: Option<String>,
    reminder_interval: Option<String>,
    reminder_min_level: Option<String>,
}

/// How long a partition keeps watching a silent participant when the configuration does not
/// say: a week, past any weekend or holiday (the daemon's default; replay watches everyone).
pub const DEFAULT_LIVENESS_RETENTION_MS: i64 = 7 * 24 * 60 * 60_000;

/// The configuration's reminder interval when none is given (`EngineSettings::default()`,
/// which replay and the tests build on, has reminders off).
pub const DEFAULT_REMINDER_INTERVAL_MS: i64 = 60 * 60_000;

/// A level a setting names: one of general, larger, major, extraordinary.
fn level_setting(key: &str, v: Option<String>, default: Level) -> Result<Level, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => match Level::parse(&s) {
            Some(l) if l != Level::None => Ok(l),
            _ => Err(invalid(
                key,
                format!("unknown level {s:?} (known: general, larger, major, extraordinary)"),
            )),
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParticipant {
    id: String,
    name: Option<String>,
    kind: ParticipantKind,
    #[serde(default)]
    effective_customers: u64,
    calendar: Option<String>,
    topics: Option<Vec<String>>,
}

/// Topic binding for everyone (CONTRACT.md section 1, v1.1).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    /// Binds every participant without `topics` of its own to the topic this template
    /// names, `{id}` standing for the participant id (e.g. `"sandbox.events.{id}"`).
    topic_template: Option<String>,
}

impl RawConfig {
    fn validate(self, base: Option<&Path>, digest: String) -> Result<Config, ConfigError> {
        let d = EngineSettings::default();
        let e = self.engine;
        let engine = EngineSettings {
            clock: ClockMode::EventTime,
            watch_all_from_start: d.watch_all_from_start,
            track_changes: d.track_changes,
            record_history: d.record_history,
            max_event_bytes: within(
                "engine.max_event_bytes",
                e.max_event_bytes,
                d.max_event_bytes,
                1,
                MAX_EVENT_BYTES,
            )?,
            max_incidents: within(
                "engine.max_incidents",
                e.max_incidents,
                d.max_incidents,
                1,
                100_000_000,
            )?,
            max_open_per_participant: within(
                "engine.max_open_per_participant",
                e.max_open_per_participant,
                d.max_open_per_participant,
                1,
                100_000_000,
            )?,
            dedup_window: within(
                "engine.dedup_window",
                e.dedup_window,
                d.dedup_window,
                0,
                1_000_000,
            )?,
            retention_ms: duration_or(
                "engine.resolved_retention",
                e.resolved_retention,
                d.retention_ms,
            )?,
            telemetry_gap_ms: duration_or(
                "engine.telemetry_gap",
                e.telemetry_gap,
                d.telemetry_gap_ms,
            )?,
            liveness_retention_ms: duration_or(
                "engine.liveness_retention",
                e.liveness_retention,
                DEFAULT_LIVENESS_RETENTION_MS,
            )?,
            min_alert_level: level_setting(
                "alerts.min_level",
                self.alerts.min_level,
                d.min_alert_level,
            )?,
            reminder_interval_ms: duration_or(
                "alerts.reminder_interval",
                self.alerts.reminder_interval,
                DEFAULT_REMINDER_INTERVAL_MS,
            )?,
            reminder_min_level: level_setting(
                "alerts.reminder_min_level",
                self.alerts.reminder_min_level,
                d.reminder_min_level,
            )?,
        };
        if (1..60_000).contains(&engine.reminder_interval_ms) {
            return Err(invalid(
                "alerts.reminder_interval",
                "must be at least 1m (or \"off\")",
            ));
        }
        let rules_path = self.rules.path.map(|p| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        });
        let rules_watch_ms = duration_or("rules.watch", self.rules.watch, 0)?;
        let calendars_path = self.rules.calendars.map(|p| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        });
        if rules_watch_ms > 0 && rules_path.is_none() && calendars_path.is_none() {
            return Err(invalid(
                "rules.watch",
                "needs rules.path or rules.calendars (the built-in grid and calendars never change)",
            ));
        }
        if (1..1_000).contains(&rules_watch_ms) {
            return Err(invalid("rules.watch", "must be at least 1s (or \"off\")"));
        }
        let rules = match &rules_path {
            Some(p) => Rules::load(p)?,
            None => Rules::default_grid(),
        };
        let rules = match &calendars_path {
            Some(p) => rules.with_calendars(Arc::new(
                Calendars::load(p).map_err(|e| invalid("rules.calendars", e.to_string()))?,
            )),
            None => rules,
        };
        let template = self.binding.topic_template;
        if let Some(t) = &template {
            if !t.contains("{id}") {
                return Err(invalid(
                    "binding.topic_template",
                    format!("{t:?} does not contain {{id}} (the participant id)"),
                ));
            }
        }
        let participants = self
            .participants
            .into_iter()
            .map(|p| Participant {
                topics: match (p.topics, &template) {
                    (Some(list), _) => list.into_iter().map(Into::into).collect(),
                    (None, Some(t)) => vec![t.replace("{id}", &p.id).into()],
                    (None, None) => Vec::new(),
                },
                name: p.name.unwrap_or_else(|| p.id.clone()).into(),
                calendar: p
                    .calendar
                    .unwrap_or_else(|| p.kind.default_calendar().to_string())
                    .into(),
                id: p.id.into(),
                kind: p.kind,
                effective_customers: p.effective_customers,
            })
            .collect();
        let registry = Registry::new(participants).map_err(|e| {
            let (key, problem) = e.split_once(": ").unwrap_or(("participants", e.as_str()));
            invalid(key, problem)
        })?;
        check_calendars(&registry, rules.calendars()).map_err(|e| {
            let (key, problem) = e.split_once(": ").unwrap_or(("participants", e.as_str()));
            invalid(key, problem)
        })?;
        let kafka = self.kafka.validate()?;
        let history = self.history.validate()?;
        if [
            &kafka.alerts_topic,
            &kafka.dead_letter_topic,
            &kafka.state_topic,
            &kafka.reminders_topic,
            &kafka.audit_topic,
        ]
        .contains(&&history.topic)
        {
            return Err(invalid(
                "history.topic",
                format!(
                    "{:?} is already the alerts, dead-letter, state, reminders or audit topic",
                    history.topic
                ),
            ));
        }
        check_bindings(&registry, &kafka.topics).map_err(|e| {
            let (key, problem) = e.split_once(": ").unwrap_or(("participants", e.as_str()));
            invalid(key, problem)
        })?;
        let delivery = self.delivery.validate(base)?;
        delivery::check_against(&delivery, &kafka, &registry)?;
        Ok(Config {
            engine,
            rules,
            rules_path,
            rules_watch_ms,
            calendars_path,
            registry,
            kafka,
            daemon: self.daemon.validate()?,
            http: self.http.validate(base)?,
            delivery,
            log: self.log.validate()?,
            history,
            digest,
        })
    }
}

fn within(
    key: &str,
    v: Option<usize>,
    default: usize,
    lo: usize,
    hi: usize,
) -> Result<usize, ConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v} is outside {lo}..={hi}")))
    }
}

/// The longest duration any setting takes: a year (longer ones are typos, and would
/// overflow clock arithmetic).
const MAX_DURATION_MS: i64 = 366 * 86_400_000;

/// Every bound topic is a valid Kafka topic name that the daemon consumes (listed in
/// `kafka.topics`, or matched by `kafka.topic_pattern`).
fn check_bindings(registry: &Registry, topics: &TopicSelection) -> Result<(), String> {
    let matcher = topics
        .matcher()
        .map_err(|e| format!("kafka.topic_pattern: {e}"))?;
    for (i, p) in registry.iter() {
        for t in &p.topics {
            let i = i.get();
            let valid = (1..=249).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err(format!(
                    "participants[{i}].topics: {t:?} is not a Kafka topic name (1..=249 of a-z A-Z 0-9 . _ -)"
                ));
            }
            if !matcher.consumes(t) {
                return Err(format!(
                    "participants[{i}].topics: {t:?} of participant {:?} is not consumed (add it to kafka.topics, or use a kafka.topic_pattern that matches it)",
                    p.id
                ));
            }
        }
    }
    Ok(())
}

/// Every participant's calendar exists in `calendars`; the error names the participant
/// (`participants[3].calendar: unknown calendar ...`).
pub fn check_calendars(registry: &Registry, calendars: &Calendars) -> Result<(), String> {
    for (i, p) in registry.iter() {
        if calendars.id(&p.calendar).is_none() {
            let known: Vec<&str> = calendars.names().collect();
            return Err(format!(
                "participants[{}].calendar: unknown calendar {:?} of participant {:?} (known: {})",
                i.get(),
                p.calendar,
                p.id,
                known.join(", ")
            ));
        }
    }
    Ok(())
}

pub(crate) fn duration_or(key: &str, v: Option<String>, default: i64) -> Result<i64, ConfigError> {
    let Some(s) = v else {
        return Ok(default);
    };
    let ms = parse_duration_ms(&s).ok_or_else(|| {
        invalid(
            key,
            format!("{s:?} is not a duration (e.g. \"90s\", \"5m\", \"1h30m\", \"off\")"),
        )
    })?;
    if ms > MAX_DURATION_MS {
        return Err(invalid(key, format!("{s:?} is longer than a year (366d)")));
    }
    Ok(ms)
}

/// Parses `"250ms"`, `"90s"`, `"5m"`, `"24h"`, `"7d"` and sums like `"1h30m"`; `"off"` and
/// `"0"` are zero.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "off" || s == "0" {
        return Some(0);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participants_trade_on_the_calendar_of_their_kind_or_the_one_named() {
        let p = "[[participants]]\nid = \"F\"\nkind = \"futures_broker\"\n[[participants]]\nid = \"B\"\nkind = \"broker\"\n";
        let cfg = Config::from_toml(p, None, false).unwrap();
        let calendars: Vec<&str> = cfg.registry.iter().map(|(_, p)| &*p.calendar).collect();
        assert_eq!(calendars, ["cn-futures", "cn-stock"]);
        let named = p.replace(
            "kind = \"broker\"\n",
            "kind = \"broker\"\ncalendar = \"cn-futures\"\n",
        );
        let cfg = Config::from_toml(&named, None, false).unwrap();
        assert_eq!(
            &*cfg.registry.iter().nth(1).unwrap().1.calendar,
            "cn-futures"
        );
        // An unknown calendar names the participant, the calendar and the known ones.
        let unknown = p.replace(
            "kind = \"broker\"\n",
            "kind = \"broker\"\ncalendar = \"nyse\"\n",
        );
        let err = Config::from_toml(&unknown, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("participants[1].calendar")
                && err.contains("\"nyse\"")
                && err.contains("cn-stock, cn-futures"),
            "{err}"
        );
        // A calendars file of the operator's: its calendars, or a clear error naming it.
        let dir = std::env::temp_dir().join(format!("regwatch-cal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("calendars.toml");
        std::fs::write(&file, "[[calendar]]\nname = \"x\"\nutc_offset = \"+08:00\"\nsessions = [\"09:00-11:70\"]\nclosures = \"none\"\n").unwrap();
        let with = |extra: &str| {
            format!(
                "[rules]\ncalendars = {:?}\n{extra}",
                file.display().to_string()
            )
        };
        let err = Config::from_toml(&with(p), None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rules.calendars")
                && err.contains("calendars.toml")
                && err.contains("11:70"),
            "{err}"
        );
        let always = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/always.toml");
        std::fs::copy(always, &file).unwrap();
        let err = Config::from_toml(&with(p), None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown calendar \"cn-futures\""),
            "the defaults are not there: {err}"
        );
        let own = p
            .replace(
                "kind = \"futures_broker\"\n",
                "kind = \"futures_broker\"\ncalendar = \"always\"\n",
            )
            .replace(
                "kind = \"broker\"\n",
                "kind = \"broker\"\ncalendar = \"always\"\n",
            );
        let cfg = Config::from_toml(&with(&own), None, false).unwrap();
        assert_eq!(
            cfg.rules.calendars().names().collect::<Vec<_>>(),
            ["always"]
        );
        assert_eq!(cfg.calendars_path.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn participants_are_bound_to_their_topics_or_by_the_template() {
        let two = "[[participants]]\nid = \"A\"\nkind = \"broker\"\n[[participants]]\nid = \"B\"\nkind = \"broker\"\ntopics = [\"sandbox.events.B\", \"b.extra\"]\n";
        let pattern = "[kafka]\ntopic_pattern = \"^(sandbox\\\\.events\\\\..+|b\\\\.extra)$\"\n";
        let cfg = Config::from_toml(
            &format!("{pattern}[binding]\ntopic_template = \"sandbox.events.{{id}}\"\n{two}"),
            None,
            false,
        )
        .unwrap();
        let r = &cfg.registry;
        let (a, b) = (r.lookup("A").unwrap(), r.lookup("B").unwrap());
        assert_eq!(&*r.get(a).topics, ["sandbox.events.A".into()]);
        assert_eq!(
            r.bound_topics().collect::<Vec<_>>(),
            ["sandbox.events.A", "sandbox.events.B", "b.extra"]
        );
        assert!(r.may_speak(r.owner_of("sandbox.events.A"), a));
        assert!(
            !r.may_speak(r.owner_of("sandbox.events.A"), b),
            "a bound topic carries its owner only"
        );
        assert!(
            !r.may_speak(r.owner_of("sandbox.events"), a),
            "a bound participant speaks on its topics only"
        );
        assert!(r.may_speak(r.owner_of("b.extra"), b));
        // Without binding, everyone may speak on any unbound topic.
        let cfg = Config::from_toml(
            "[[participants]]\nid = \"A\"\nkind = \"broker\"\n",
            None,
            false,
        )
        .unwrap();
        let a = cfg.registry.lookup("A").unwrap();
        assert!(cfg
            .registry
            .may_speak(cfg.registry.owner_of("sandbox.events"), a));
        // A bound topic the daemon does not consume, a bad name, a template without {id},
        // a topic bound twice: refused, naming the participant and the fix.
        let err = Config::from_toml(two, None, false).unwrap_err().to_string();
        assert!(
            err.contains("participants[1].topics") && err.contains("not consumed"),
            "{err}"
        );
        let err = Config::from_toml(&format!("{pattern}[[participants]]\nid = \"A\"\nkind = \"broker\"\ntopics = [\"bad topic\"]\n"), None, false).unwrap_err().to_string();
        assert!(err.contains("not a Kafka topic name"), "{err}");
        let err = Config::from_toml(
            &format!("[binding]\ntopic_template = \"events\"\n{two}"),
            None,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("binding.topic_template"), "{err}");
        let twice = two
            .replace("[\"sandbox.events.B\", \"b.extra\"]", "[\"shared\"]")
            .replace(
                "kind = \"broker\"\n[[",
                "kind = \"broker\"\ntopics = [\"shared\"]\n[[",
            );
        let err = Config::from_toml(&twice, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already bound to participant \"A\""), "{err}");
    }

    #[test]
    fn rules_watch_needs_a_file_and_a_sane_period() {
        let p = "[[participants]]\nid = \"A\"\nkind = \"broker\"\n";
        let load = |rules: &str| Config::from_toml(&format!("{rules}\n{p}"), None, false);
        let err = load("[rules]\nwatch = \"10s\"").unwrap_err().to_string();
        assert!(
            err.contains("rules.watch") && err.contains("rules.path"),
            "{err}"
        );
        let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules.toml");
        let err = load(&format!("[rules]\npath = {rules:?}\nwatch = \"500ms\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules.watch"), "{err}");
        let ok = load(&format!("[rules]\npath = {rules:?}\nwatch = \"10s\"")).unwrap();
        assert_eq!(ok.rules_watch_ms, 10_000);
        assert_eq!(load("").unwrap().rules_watch_ms, 0, "off by default");
    }

    #[test]
    fn replication_and_state_topic_settings() {
        let p = "[[participants]]\nid = \"A\"\nkind = \"broker\"\n";
        let load = |kafka: &str| Config::from_toml(&format!("[kafka]\n{kafka}\n{p}"), None, false);
        let k = Config::from_toml(p, None, false).unwrap().kafka;
        assert_eq!(
            (k.replication_factor, k.min_insync_replicas),
            (None, None),
            "participants alone: the cluster's defaults"
        );
        assert_eq!(
            k.state_topic_config
                .iter()
                .find(|(key, _)| key == "cleanup.policy")
                .map(|(_, v)| v.as_str()),
            Some("compact")
        );
        let k = load("replication_factor = 3").unwrap().kafka;
        assert_eq!(
            (k.replication_factor, k.min_insync_replicas),
            (Some(3), Some(2))
        );
        let k = load("replication_factor = 1").unwrap().kafka;
        assert_eq!(k.min_insync_replicas, Some(1));
        for (bad, key) in [
            ("replication_factor = 0", "kafka.replication_factor"),
            (
                "replication_factor = 3\nmin_insync_replicas = 4",
                "kafka.min_insync_replicas",
            ),
            ("min_insync_replicas = 0", "kafka.min_insync_replicas"),
            (
                "state_topic_config = [\"cleanup.policy=delete\"]",
                "kafka.state_topic_config",
            ),
            (
                "state_topic_config = [\"segment.ms\"]",
                "kafka.state_topic_config",
            ),
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        let k = load("state_topic_config = [\"segment.ms=1000\"]")
            .unwrap()
            .kafka;
        let segment: Vec<_> = k
            .state_topic_config
            .iter()
            .filter(|(key, _)| key == "segment.ms")
            .collect();
        assert_eq!(
            segment,
            [&("segment.ms".to_string(), "1000".to_string())],
            "overrides the default once"
        );
    }

    #[test]
    fn durations() {
        for (text, ms) in [
            ("250ms", Some(250)),
            ("90s", Some(90_000)),
            ("5m", Some(300_000)),
            ("1h30m", Some(5_400_000)),
            ("7d", Some(604_800_000)),
            ("off", Some(0)),
            ("0", Some(0)),
            ("", None),
            ("5", None),
            ("m5", None),
            ("5 m", None),
            ("5w", None),
            ("-5m", None),
        ] {
            assert_eq!(parse_duration_ms(text), ms, "{text:?}");
        }
    }

    const P: &str = "[[participants]]\nid = \"A\"\nkind = \"broker\"\n";

    fn load(alerts: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{alerts}\n{P}"), None, false)
    }

    #[test]
    fn reminders_default_to_hourly_from_major_and_can_be_set_or_turned_off() {
        let c = load("").unwrap();
        assert_eq!(c.engine.reminder_interval_ms, 3_600_000);
        assert_eq!(c.engine.reminder_min_level, Level::Major);
        assert_eq!(c.kafka.reminders_topic, "regwatch.reminders");
        assert_eq!(
            EngineSettings::default().reminder_interval_ms,
            0,
            "off outside the configuration file path"
        );
        let c = load("[alerts]\nreminder_interval = \"90m\"\nreminder_min_level = \"larger\"\n")
            .unwrap();
        assert_eq!(
            (c.engine.reminder_interval_ms, c.engine.reminder_min_level),
            (5_400_000, Level::Larger)
        );
        for off in ["off", "0"] {
            let c = load(&format!("[alerts]\nreminder_interval = \"{off}\"\n")).unwrap();
            assert_eq!(c.engine.reminder_interval_ms, 0);
        }
        assert_eq!(
            load("[alerts]\nreminder_interval = \"1m\"\n")
                .unwrap()
                .engine
                .reminder_interval_ms,
            60_000
        );
        let c = load("[kafka]\nreminders_topic = \"x.reminders\"\n").unwrap();
        assert_eq!(c.kafka.reminders_topic, "x.reminders");
    }

    #[test]
    fn bad_reminder_settings_name_the_key() {
        for (text, key) in [
            (
                "[alerts]\nreminder_interval = \"30s\"\n",
                "alerts.reminder_interval",
            ),
            (
                "[alerts]\nreminder_interval = \"59999ms\"\n",
                "alerts.reminder_interval",
            ),
            (
                "[alerts]\nreminder_interval = \"hourly\"\n",
                "alerts.reminder_interval",
            ),
            (
                "[alerts]\nreminder_min_level = \"huge\"\n",
                "alerts.reminder_min_level",
            ),
            (
                "[alerts]\nreminder_min_level = \"none\"\n",
                "alerts.reminder_min_level",
            ),
            (
                "[kafka]\nreminders_topic = \"a b\"\n",
                "kafka.reminders_topic",
            ),
            (
                "[kafka]\nreminders_topic = \"regwatch.alerts\"\n",
                "kafka.reminders_topic",
            ),
        ] {
            let err = load(text).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err:?} names {key}");
        }
    }
}
