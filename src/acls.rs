//! The Kafka ACL matrix a configuration needs (`regwatch acls`), as `kafka-acls.sh` command
//! lines an operator runs. Pure: configuration in, lines out; nothing here talks to Kafka.
//!
//! Topic binding (CONTRACT.md section 1, v1.1) is only as strong as the broker's ACLs: a
//! participant bound to its topics must be the only principal that may write them. The
//! matrix, with the authorizer denying whatever is not granted
//! (`allow.everyone.if.no.acl.found=false`, Kafka's default):
//!
//! - each bound participant, as `User:<participant id>` (its SCRAM user name or its TLS
//!   certificate's mapped name must equal the registry id; `participant_principal` changes
//!   the form): WRITE and DESCRIBE on its own topics, by literal name, and nothing else;
//! - each unbound participant: WRITE and DESCRIBE on the shared events topics (those of
//!   `kafka.topics` no one is bound to), under a warning: it can speak for every unbound
//!   participant there;
//! - regwatch's principal: READ and DESCRIBE on the events topics (the literal names of
//!   `kafka.topics`, or a PREFIXED resource on the literal prefix of `kafka.topic_pattern`);
//!   READ, WRITE, DESCRIBE and DESCRIBE_CONFIGS on its own topics (alerts, reminders, dead
//!   letters, state, the alert dead letters when webhook receivers exist, and the history when
//!   `[history]` is on), with CREATE on them and on the bound topics when `kafka.create_topics`
//!   is on (literal topics, narrower than CREATE on the cluster); READ on its consumer group,
//!   its state reader's group, its history reader's group (`<group_id>.desk`), the audit
//!   reader's (`<group_id>.skips`, with receivers) and the outbox's
//!   groups (PREFIXED `<outbox group>.`); WRITE and DESCRIBE on the transactional ids
//!   PREFIXED `<group_id>.state.` when `kafka.transactional_state` is on.
//!
//! No IdempotentWrite on the cluster: since Kafka 3.0 (KIP-679) WRITE on any topic lets an
//! idempotent producer get its producer id.

use crate::config::{Config, TopicSelection};

/// regwatch's principal when neither `--principal` nor a SASL user name says otherwise.
pub const DEFAULT_PRINCIPAL: &str = "User:regwatch";

/// A participant's principal: `{id}` stands for its registry id.
pub const DEFAULT_PARTICIPANT_PRINCIPAL: &str = "User:{id}";

/// Whose ACLs to print.
#[derive(Clone, Debug)]
pub struct Options {
    /// regwatch's own principal, `Type:name` (e.g. `User:regwatch`).
    pub principal: String,
    /// A participant's principal, `{id}` standing for its registry id (e.g. `User:{id}`).
    pub participant_principal: String,
}

impl Options {
    /// regwatch as `User:<kafka.security.username>` when it authenticates with SASL, else
    /// [`DEFAULT_PRINCIPAL`]; participants as [`DEFAULT_PARTICIPANT_PRINCIPAL`].
    pub fn for_config(cfg: &Config) -> Options {
        Options {
            principal: cfg
                .kafka
                .security
                .sasl
                .as_ref()
                .map_or(DEFAULT_PRINCIPAL.to_string(), |(_, user, _)| {
                    format!("User:{user}")
                }),
            participant_principal: DEFAULT_PARTICIPANT_PRINCIPAL.to_string(),
        }
    }
}

/// The command every line runs; the operator sets the two variables.
const COMMAND: &str =
    "kafka-acls.sh --bootstrap-server \"$BOOTSTRAP\" --command-config \"$ADMIN_CONFIG\" --add";

/// What an ACL line is about.
enum Resource<'a> {
    Topics(&'a [&'a str]),
    TopicPrefix(&'a str),
    Groups(&'a [&'a str]),
    GroupPrefix(&'a str),
    TransactionalIdPrefix(&'a str),
}

/// One `kafka-acls.sh --add` line allowing `ops` to `principal` on `resource`.
fn line(principal: &str, ops: &[&str], resource: Resource<'_>) -> String {
    let mut s = format!("{COMMAND} --allow-principal {}", quote(principal));
    for op in ops {
        s.push_str(" --operation ");
        s.push_str(op);
    }
    let (pattern, kind, names): (&str, &str, Vec<&str>) = match resource {
        Resource::Topics(t) => ("literal", "--topic", t.to_vec()),
        Resource::TopicPrefix(p) => ("prefixed", "--topic", vec![p]),
        Resource::Groups(g) => ("literal", "--group", g.to_vec()),
        Resource::GroupPrefix(p) => ("prefixed", "--group", vec![p]),
        Resource::TransactionalIdPrefix(p) => ("prefixed", "--transactional-id", vec![p]),
    };
    s.push_str(" --resource-pattern-type ");
    s.push_str(pattern);
    for n in names {
        s.push(' ');
        s.push_str(kind);
        s.push(' ');
        s.push_str(&quote(n));
    }
    s
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'_' | b'-' | b':' | b'=' | b',' | b'/' | b'@' | b'+'
                )
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The literal prefix every topic a `kafka.topic_pattern` matches starts with, if the
/// pattern has one: `^sandbox\.events(\..+)?$` -> `sandbox.events`. `None` for a pattern
/// with a top-level alternation, or one that starts with a group, class or wildcard.
pub fn topic_prefix(pattern: &str) -> Option<String> {
    let body = pattern.strip_prefix('^')?;
    if has_top_level_alternation(body) {
        return None;
    }
    let mut prefix = String::new();
    // The prefix's length before its last character (a quantifier allowing zero of that
    // character takes it back).
    let mut before_last = 0;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        let literal = match c {
            '\\' => match chars.next() {
                Some(e @ ('.' | '-' | '_')) => e,
                _ => break,
            },
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => c,
            '?' | '*' | '{' => {
                prefix.truncate(before_last);
                break;
            }
            _ => break,
        };
        before_last = prefix.len();
        prefix.push(literal);
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// Whether `re` has a `|` outside every group and character class.
fn has_top_level_alternation(re: &str) -> bool {
    let (mut depth, mut class, mut escaped) = (0usize, false, false);
    for c in re.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ']' if class => class = false,
            _ if class => {}
            '[' => class = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => return true,
            _ => {}
        }
    }
    false
}

/// The ACL lines, with their comments, for `cfg` (see the module documentation).
pub fn commands(cfg: &Config, opts: &Options) -> Vec<String> {
    let k = &cfg.kafka;
    let me = opts.principal.as_str();
    let mut out: Vec<String> = [
        "# Kafka ACLs for regwatch and its participants, generated by `regwatch acls`".to_string(),
        format!("# from the configuration with sha256 {}.", &cfg.digest[..cfg.digest.len().min(12)]),
        "# Run each line with kafka-acls.sh (Kafka's bin/) on PATH, BOOTSTRAP set to the brokers and".into(),
        "# ADMIN_CONFIG to an admin client properties file of a principal that may alter ACLs.".into(),
        "# The brokers need an authorizer (KRaft: authorizer.class.name=".into(),
        "# org.apache.kafka.metadata.authorizer.StandardAuthorizer) that denies what is not granted".into(),
        "# (allow.everyone.if.no.acl.found=false, the default): so nobody but regwatch may write the".into(),
        "# alerts, reminders, state or dead-letter topics, and no participant another's topic.".into(),
        format!(
            "# A participant's principal is {}: it authenticates as its registry id",
            opts.participant_principal.replace("{id}", "<participant id>")
        ),
        "# (its SCRAM user name, or the name ssl.principal.mapping.rules gives its certificate).".into(),
        "# No IdempotentWrite on the cluster: since Kafka 3.0 (KIP-679) WRITE on a topic suffices".into(),
        "# for an idempotent producer.".into(),
    ]
    .into();

    // Participants.
    let bound: Vec<&str> = cfg.registry.bound_topics().collect();
    let shared: Vec<&str> = match &k.topics {
        TopicSelection::List(list) => list
            .iter()
            .map(String::as_str)
            .filter(|t| !bound.contains(t))
            .collect(),
        TopicSelection::Pattern(_) => Vec::new(),
    };
    let principal_of = |id: &str| opts.participant_principal.replace("{id}", id);
    let (bound_ps, unbound_ps): (Vec<_>, Vec<_>) = cfg
        .registry
        .iter()
        .map(|(_, p)| p)
        .partition(|p| !p.topics.is_empty());
    if !bound_ps.is_empty() {
        out.push(String::new());
        out.push("# Bound participants: each may write its own topics, and only those.".into());
        for p in &bound_ps {
            let topics: Vec<&str> = p.topics.iter().map(|t| &**t).collect();
            out.push(line(
                &principal_of(&p.id),
                &["Write", "Describe"],
                Resource::Topics(&topics),
            ));
        }
    }
    if !unbound_ps.is_empty() {
        let ids: Vec<&str> = unbound_ps.iter().map(|p| &*p.id).collect();
        out.push(String::new());
        out.push(format!(
            "# WARNING: participants not bound to topics of their own: {}.",
            ids.join(", ")
        ));
        out.push(
            "# WARNING: each may write the shared events topics and there speak for any unbound"
                .into(),
        );
        out.push(
            "# WARNING: participant (the message key and participant_id prove nothing). Bind them:"
                .into(),
        );
        out.push(
            "# WARNING: registry `topics`, or [binding] topic_template = \"<prefix>.{id}\".".into(),
        );
        match &k.topics {
            TopicSelection::List(_) if shared.is_empty() => {
                out.push(
                    "# WARNING: kafka.topics holds no shared topic: they have nowhere to write."
                        .into(),
                );
            }
            TopicSelection::List(_) => {
                for p in &unbound_ps {
                    out.push(line(
                        &principal_of(&p.id),
                        &["Write", "Describe"],
                        Resource::Topics(&shared),
                    ));
                }
            }
            TopicSelection::Pattern(pattern) => {
                out.push(format!(
                    "# kafka.topic_pattern {pattern:?} names no shared topic: grant each of them WRITE on"
                ));
                out.push(
                    "# the shared topics by name (never a prefix that covers a bound topic), e.g."
                        .into(),
                );
                out.push(format!(
                    "# {}",
                    line(
                        &principal_of("<participant id>"),
                        &["Write", "Describe"],
                        Resource::Topics(&["<shared topic>"]),
                    )
                ));
            }
        }
    }

    // regwatch itself.
    out.push(String::new());
    out.push(format!("# regwatch ({me}): reads every events topic, and writes people's actions (POST /actions) to them."));
    match &k.topics {
        TopicSelection::List(list) => {
            let topics: Vec<&str> = list.iter().map(String::as_str).collect();
            out.push(line(
                me,
                &["Read", "Write", "Describe"],
                Resource::Topics(&topics),
            ));
        }
        TopicSelection::Pattern(pattern) => {
            let prefix = topic_prefix(pattern);
            match &prefix {
                Some(prefix) => {
                    out.push(format!(
                        "# kafka.topic_pattern {pattern:?}: every topic it matches starts with {prefix:?}."
                    ));
                    out.push(line(
                        me,
                        &["Read", "Write", "Describe"],
                        Resource::TopicPrefix(prefix),
                    ));
                }
                None => {
                    out.push(format!(
                        "# kafka.topic_pattern {pattern:?} has no literal prefix: grant READ, WRITE and DESCRIBE on"
                    ));
                    out.push("# each topic it matches by name; the bound topics are below.".into());
                }
            }
            let uncovered: Vec<&str> = bound
                .iter()
                .copied()
                .filter(|t| prefix.as_deref().is_none_or(|p| !t.starts_with(p)))
                .collect();
            if !uncovered.is_empty() {
                out.push(line(
                    me,
                    &["Read", "Write", "Describe"],
                    Resource::Topics(&uncovered),
                ));
            }
        }
    }
    let mut own = vec![
        k.alerts_topic.as_str(),
        k.reminders_topic.as_str(),
        k.dead_letter_topic.as_str(),
        k.state_topic.as_str(),
        k.audit_topic.as_str(),
    ];
    if cfg.delivery.enabled() {
        own.push(cfg.delivery.dead_letter_topic.as_str());
    }
    if cfg.history.enabled {
        own.push(cfg.history.topic.as_str());
    }
    out.push(
        "# regwatch's own topics: alerts, reminders, dead letters, state, audit (and alert dead letters, history)."
            .into(),
    );
    let mut ops = vec!["Read", "Write", "Describe", "DescribeConfigs"];
    if k.create_topics {
        ops.push("Create");
    }
    out.push(line(me, &ops, Resource::Topics(&own)));
    if k.create_topics && !bound.is_empty() {
        out.push(
            "# kafka.create_topics: regwatch creates the bound topics that are missing.".into(),
        );
        out.push(line(me, &["Create"], Resource::Topics(&bound)));
    }
    let reader = format!("{}.state-reader", k.group_id);
    let desk = format!("{}.desk", k.group_id);
    let skips = format!("{}.skips", k.group_id);
    let mut groups = vec![k.group_id.as_str(), reader.as_str()];
    if cfg.history.enabled {
        groups.push(desk.as_str());
    }
    if cfg.delivery.enabled() {
        groups.push(skips.as_str());
    }
    out.push(
        "# Its consumer group, and the groups of its state reader (restores), history reader (the desk) and audit reader (operators' skips, with receivers)."
            .into(),
    );
    out.push(line(me, &["Read"], Resource::Groups(&groups)));
    if cfg.delivery.enabled() {
        let prefix = match &cfg.delivery.group_id {
            Some(g) => format!("{g}."),
            None => format!("{}.outbox.", k.group_id),
        };
        out.push(format!(
            "# The webhook outbox: one consumer group per receiver, {prefix}<receiver>."
        ));
        out.push(line(me, &["Read"], Resource::GroupPrefix(&prefix)));
    }
    if k.transactional_state {
        let prefix = format!("{}.state.", k.group_id);
        out.push(format!(
            "# kafka.transactional_state: one transactional id per source partition, {prefix}<topic>.<partition>."
        ));
        out.push(line(
            me,
            &["Write", "Describe"],
            Resource::TransactionalIdPrefix(&prefix),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        Config::from_toml(text, None, false).expect("config")
    }

    fn acl_lines(cfg: &Config) -> Vec<String> {
        commands(cfg, &Options::for_config(cfg))
            .into_iter()
            .filter(|l| l.starts_with("kafka-acls.sh"))
            .map(|l| l.replace(COMMAND, "+"))
            .collect()
    }

    #[test]
    fn literal_prefixes_of_topic_patterns() {
        for (pattern, prefix) in [
            (r"^sandbox\.events", Some("sandbox.events")),
            (r"^sandbox\.events(\..+)?$", Some("sandbox.events")),
            (r"^acl\.events\..*", Some("acl.events.")),
            (r"^sandbox\..*", Some("sandbox.")),
            (r"^sandbox-events_x\-y", Some("sandbox-events_x-y")),
            (r"^sandbox\.events?", Some("sandbox.event")),
            (r"^abc*", Some("ab")),
            (r"^abc{0,2}", Some("ab")),
            (r"^abc+", Some("abc")),
            (r"^ab[cd]", Some("ab")),
            (r"^ab\d", Some("ab")),
            (r"^ab(c|d)", Some("ab")),
            (r"^ab[|]x", Some("ab")),
            (r"^ab\|x", Some("ab")),
            (r"^(sandbox\.events\..+|b\.extra)$", None),
            (r"^sandbox\.a|sandbox\.b", None),
            (r"^.*events", None),
            (r"^(?i)events", None),
            (r"^[a-z]+", None),
            ("^", None),
            ("sandbox", None),
        ] {
            assert_eq!(topic_prefix(pattern).as_deref(), prefix, "{pattern}");
        }
    }

    const BOUND: &str = r#"
[kafka]
group_id = "rw"
topic_pattern = "^acl\\.events(\\..+)?$"
alerts_topic = "rw.alerts"
dead_letter_topic = "rw.dlq"
state_topic = "rw.state"
reminders_topic = "rw.reminders"
[kafka.security]
protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
username = "regwatch"
password = { env = "REGWATCH_ACLS_TEST_PASSWORD" }
[binding]
topic_template = "acl.events.{id}"
[[participants]]
id = "P1"
kind = "broker"
[[participants]]
id = "P2"
kind = "broker"
topics = ["acl.events.P2", "acl.events.P2-extra"]
"#;

    #[test]
    fn bound_participants_write_their_topics_only_and_regwatch_reads_the_prefix() {
        std::env::set_var("REGWATCH_ACLS_TEST_PASSWORD", "x");
        let cfg = load(BOUND);
        let all = commands(&cfg, &Options::for_config(&cfg));
        assert!(all[0].starts_with("# Kafka ACLs"), "{all:?}");
        let text = all.join("\n");
        assert!(text.contains("allow.everyone.if.no.acl.found=false"));
        assert!(text.contains("IdempotentWrite"));
        assert!(!text.contains("WARNING"), "everyone is bound");
        assert_eq!(
            acl_lines(&cfg),
            [
                "+ --allow-principal User:P1 --operation Write --operation Describe --resource-pattern-type literal --topic acl.events.P1",
                "+ --allow-principal User:P2 --operation Write --operation Describe --resource-pattern-type literal --topic acl.events.P2 --topic acl.events.P2-extra",
                "+ --allow-principal User:regwatch --operation Read --operation Write --operation Describe --resource-pattern-type prefixed --topic acl.events",
                "+ --allow-principal User:regwatch --operation Read --operation Write --operation Describe --operation DescribeConfigs --operation Create --resource-pattern-type literal --topic rw.alerts --topic rw.reminders --topic rw.dlq --topic rw.state --topic regwatch.audit --topic regwatch.history",
                "+ --allow-principal User:regwatch --operation Create --resource-pattern-type literal --topic acl.events.P1 --topic acl.events.P2 --topic acl.events.P2-extra",
                "+ --allow-principal User:regwatch --operation Read --resource-pattern-type literal --group rw --group rw.state-reader --group rw.desk",
                "+ --allow-principal User:regwatch --operation Write --operation Describe --resource-pattern-type prefixed --transactional-id rw.state.",
            ]
        );
        // Another principal, participants as certificate names (quoted for the shell).
        let opts = Options {
            principal: "User:CN=regwatch".into(),
            participant_principal: "User:CN={id} (sandbox)".into(),
        };
        let lines = commands(&cfg, &opts);
        assert!(lines
            .iter()
            .any(|l| l.contains("--allow-principal 'User:CN=P1 (sandbox)' --operation Write")));
        assert!(lines
            .iter()
            .any(|l| l.contains("--allow-principal User:CN=regwatch --operation Read")));
    }

    #[test]
    fn unbound_participants_write_the_shared_topics_under_a_warning() {
        let cfg = load(
            r#"
[kafka]
topics = ["sandbox.events", "sandbox.events.B"]
create_topics = false
transactional_state = false
[delivery]
group_id = "hooks"
[[delivery.receivers]]
name = "oncall"
url = "http://127.0.0.1:1/hook"
signing_keys = [{ id = "k", secret = "s3cret-s3cret-s3cret" }]
[[participants]]
id = "A"
kind = "broker"
[[participants]]
id = "B"
kind = "broker"
topics = ["sandbox.events.B"]
[[participants]]
id = "it's"
kind = "broker"
"#,
        );
        let text = commands(&cfg, &Options::for_config(&cfg)).join("\n");
        assert!(
            text.contains("# WARNING: participants not bound to topics of their own: A, it's."),
            "{text}"
        );
        assert_eq!(
            acl_lines(&cfg),
            [
                "+ --allow-principal User:B --operation Write --operation Describe --resource-pattern-type literal --topic sandbox.events.B",
                "+ --allow-principal User:A --operation Write --operation Describe --resource-pattern-type literal --topic sandbox.events",
                r"+ --allow-principal 'User:it'\''s' --operation Write --operation Describe --resource-pattern-type literal --topic sandbox.events",
                "+ --allow-principal User:regwatch --operation Read --operation Write --operation Describe --resource-pattern-type literal --topic sandbox.events --topic sandbox.events.B",
                "+ --allow-principal User:regwatch --operation Read --operation Write --operation Describe --operation DescribeConfigs --resource-pattern-type literal --topic regwatch.alerts --topic regwatch.reminders --topic regwatch.dead-letters --topic regwatch.state --topic regwatch.audit --topic regwatch.alert-dead-letters --topic regwatch.history",
                "+ --allow-principal User:regwatch --operation Read --resource-pattern-type literal --group regwatch --group regwatch.state-reader --group regwatch.desk --group regwatch.skips",
                "+ --allow-principal User:regwatch --operation Read --resource-pattern-type prefixed --group hooks.",
            ],
            "no Create without create_topics, no transactional ids without transactional_state"
        );
    }

    #[test]
    fn a_pattern_without_a_prefix_grants_the_bound_topics_by_name() {
        let cfg = load(
            r#"
[kafka]
topic_pattern = "^(x\\.events\\..+|y\\.events)$"
[[participants]]
id = "A"
kind = "broker"
topics = ["x.events.A"]
[[participants]]
id = "U"
kind = "broker"
"#,
        );
        let all = commands(&cfg, &Options::for_config(&cfg));
        let text = all.join("\n");
        assert!(text.contains("has no literal prefix"), "{text}");
        assert!(text.contains("# WARNING: participants not bound to topics of their own: U."));
        assert!(
            text.contains("# kafka-acls.sh --bootstrap-server \"$BOOTSTRAP\" --command-config \"$ADMIN_CONFIG\" --add --allow-principal 'User:<participant id>'"),
            "a template for the shared topics, commented out: {text}"
        );
        let lines = acl_lines(&cfg);
        assert!(lines.contains(&"+ --allow-principal User:regwatch --operation Read --operation Write --operation Describe --resource-pattern-type literal --topic x.events.A".to_string()), "{lines:?}");
        assert!(
            lines.iter().all(|l| !l.contains("User:U ")),
            "nothing for U without a shared topic name: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("outbox")),
            "no outbox groups without receivers: {lines:?}"
        );
    }
}
