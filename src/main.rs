//! The `regwatch` binary: parse the command line, load the configuration, run, exit code.

use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use regwatch::config::Config;
use regwatch::replay::replay;
use regwatch::score::{ClockMode, Engine};
use regwatch::time::Timestamp;

mod cmd;
use cmd::api::{act, incidents, local_endpoint, silences, ActAction, ApiArgs};

/// The example configuration a checkout ships; `replay` uses it when no --config is given.
const DEFAULT_CONFIG: &str = "config/regwatch.toml";

#[derive(Parser)]
#[command(
    name = "regwatch",
    version,
    about = "Grades fintech-sandbox incidents on the CSRC scale"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: consume events from Kafka, grade them, produce alerts.
    Run {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the engine over a JSON-lines event file (or - for stdin); alerts go to stdout.
    Replay {
        /// Configuration file (default: config/regwatch.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// After the last event, advance the clock to this RFC 3339 instant.
        #[arg(long, value_parser = parse_timestamp)]
        until: Option<Timestamp>,
        /// Events, one JSON object per line; - reads stdin.
        events: PathBuf,
    },
    /// The daemon on an embedded Kafka with a synthetic sandbox: nothing to install.
    Demo {
        /// Stop after this long (e.g. "90s"); "0" runs until Ctrl-C.
        #[arg(long, default_value = "90s", value_parser = parse_duration)]
        duration: u64,
        /// Port of the metrics endpoint.
        #[arg(long, default_value_t = 9464)]
        http_port: u16,
        /// Background events per second besides the scripted episodes.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
    /// Produce synthetic sandbox traffic to the configured cluster and topic.
    Simulate {
        /// Configuration file (brokers, topic, participant registry).
        #[arg(long)]
        config: PathBuf,
        /// Events per second; 0 sends as fast as the cluster takes them.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (e.g. "60s").
        #[arg(long, value_parser = parse_duration)]
        duration: Option<u64>,
        /// Share of malformed or misaddressed messages (dead-letter traffic).
        #[arg(long, default_value_t = 0.001)]
        bad: f64,
        /// Share of infosec reports (the rest, after trading and bad, is heartbeats).
        #[arg(long, default_value_t = 0.55)]
        infosec: f64,
        /// Share of trading-anomaly reports.
        #[arg(long, default_value_t = 0.25)]
        trading: f64,
        /// Share of incident reports that open a new incident (the rest update open ones).
        #[arg(long, default_value_t = 0.02)]
        new_incident: f64,
        /// Seed of the generator (same seed, same stream).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Topic (default: the first of kafka.topics).
        #[arg(long)]
        topic: Option<String>,
        /// Write `--count` events as JSON lines to this file (for `regwatch replay`) instead
        /// of producing them; event times start now and step 1/rate seconds (1 ms at rate 0).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Validate a configuration file (and the rules file it names); exit 0 when it is good.
    CheckConfig { file: PathBuf },
    /// Ask the local daemon's /healthz (or /readyz) over the configured scheme; exit 0 on
    /// 200. For container health checks: no credentials are sent, and the certificate of
    /// this host's own endpoint is not verified.
    Probe {
        /// Configuration file (http.listen and http.tls).
        #[arg(long)]
        config: PathBuf,
        /// Ask /readyz instead of /healthz.
        #[arg(long)]
        ready: bool,
    },
    /// A participant's incidents over a period (verdicts, reasons with citations, alert ids)
    /// from the history topic, as JSON or CSV: the export for an exemption decision.
    Report {
        /// Configuration file (brokers, history topic, record key).
        #[arg(long)]
        config: PathBuf,
        /// Participant id.
        #[arg(long)]
        participant: String,
        /// Incidents still open at or resolved after this RFC 3339 instant.
        #[arg(long, value_parser = parse_timestamp)]
        from: Option<Timestamp>,
        /// Incidents started at or before this RFC 3339 instant.
        #[arg(long, value_parser = parse_timestamp)]
        to: Option<Timestamp>,
        /// json or csv.
        #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
        format: String,
    },
    /// One events partition's state in the state topic, as a restore reads it (read only).
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Rules files: `check FILE` validates one as a reload would; `diff OLD NEW` is a
    /// reload's dry run.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// The fleet's incidents as a table, from the incident API of any instance (`/incidents`).
    Incidents {
        #[command(flatten)]
        api: ApiArgs,
        /// Query parameters, as /incidents takes them (e.g. status=all, min_level=major,
        /// participant=ID, exemption=ineligible).
        #[arg(value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Print the API's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter topics: `list` shows their records (the events' or, with --alerts,
    /// the alerts'), `redrive` puts chosen ones back where they came from, audited.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLettersAction,
    },
    /// Act through the API of any instance (operator role): `ack` stops an incident's
    /// reminders (the grade stays), `annotate` adds a note to its timeline, `close` resolves
    /// it (a `resolved` alert with trigger `closed`); `silence` holds a participant's
    /// telemetry gaps and reminders for a window, `unsilence` ends one early; `skip` gives
    /// up an alert a receiver keeps refusing. Each is audited.
    Act {
        #[command(subcommand)]
        action: ActAction,
    },
    /// The operators' silences (pending, active, expired), from the API of any instance.
    Silences {
        #[command(flatten)]
        api: ApiArgs,
        /// One participant's only.
        #[arg(long)]
        participant: Option<String>,
        /// Print the API's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the Kafka ACLs the configuration needs, as kafka-acls.sh command lines.
    Acls {
        /// Configuration file (registry, kafka and delivery settings).
        #[arg(long)]
        config: PathBuf,
        /// regwatch's principal (default: User:<kafka.security.username> with SASL, else
        /// User:regwatch).
        #[arg(long)]
        principal: Option<String>,
        /// A participant's principal, {id} standing for its registry id (e.g.
        /// "User:CN={id}" for certificate names).
        #[arg(long, default_value = regwatch::acls::DEFAULT_PARTICIPANT_PRINCIPAL)]
        participant_principal: String,
    },
}

#[derive(Subcommand)]
enum DeadLettersAction {
    /// List the dead letters (reason, participant, where from, whether redriven already).
    List {
        #[command(flatten)]
        which: DeadLetterSelection,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put the chosen dead letters back on the topic and partition they came from (an alert
    /// for the receiver that could not take it only), each with its provenance headers and a
    /// record on the audit topic. Skips those redriven already (unless --again) and those
    /// that cannot go back (truncated, untrusted, malformed).
    Redrive {
        #[command(flatten)]
        which: DeadLetterSelection,
        /// Why (kept in the audit record), e.g. "P9 registered on 2026-12-01".
        #[arg(long)]
        why: String,
        /// Who (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        /// Take every dead letter (no selector needed).
        #[arg(long)]
        all: bool,
        /// Put back those redriven before too.
        #[arg(long)]
        again: bool,
        /// Show what would be put back; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters `regwatch dead-letters` takes.
#[derive(clap::Args)]
struct DeadLetterSelection {
    #[arg(long)]
    config: PathBuf,
    /// The alert dead-letter topic (delivery.dead_letter_topic) instead of the events' one.
    #[arg(long)]
    alerts: bool,
    /// Only this dead-letter reason (e.g. unregistered_participant, http_status, retry_age).
    #[arg(long)]
    reason: Option<String>,
    /// Only those of this receiver (alert dead letters).
    #[arg(long)]
    receiver: Option<String>,
    /// Only this participant's (the record key).
    #[arg(long)]
    participant: Option<String>,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<i32>,
    /// Only these offsets of that partition: N or A..B.
    #[arg(long, requires = "partition", value_parser = parse_offsets)]
    offsets: Option<(i64, i64)>,
}

fn parse_offsets(s: &str) -> Result<(i64, i64), String> {
    let bad = || format!("{s:?} is not an offset or a range A..B");
    match s.split_once("..") {
        Some((a, b)) => Ok((
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        )),
        None => s.trim().parse().map(|n| (n, n)).map_err(|_| bad()),
    }
}

#[derive(Subcommand)]
enum StateAction {
    /// Print the partition's latest authentic state records, one JSON object a line.
    Dump(StatePartition),
    /// Check the partition's state: exit 0 when every latest record is authentic and
    /// readable; otherwise how many are not.
    Verify(StatePartition),
}

/// Which events partition's state `regwatch state` reads.
#[derive(clap::Args)]
struct StatePartition {
    #[arg(long)]
    config: PathBuf,
    /// The events topic (default: the first of kafka.topics).
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    partition: i32,
}

#[derive(Subcommand)]
enum RulesAction {
    /// Validate a rules file (exit 0 when a reload would take it; otherwise the rule and
    /// why) and summarise it: rules per axis and level, where the exemption is lost.
    Check { file: PathBuf },
    /// A reload's dry run: the rules that differ between OLD and NEW and, with --config, the
    /// open incidents of every events partition (their state read as a restore reads it)
    /// regraded under NEW as a reload would, with the alerts it would send. Read only.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Configuration file (brokers, state topic, registry, calendars): regrade the open
        /// incidents; without it only the grids are compared.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only these events topics (default: those the configuration consumes).
        #[arg(long, requires = "config")]
        topic: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Exit 1 when anything would change (as `git diff --exit-code`).
        #[arg(long)]
        exit_code: bool,
    },
}

fn parse_duration(s: &str) -> Result<u64, String> {
    regwatch::config::parse_duration_ms(s)
        .map(|ms| ms as u64)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. \"90s\", \"5m\")"))
}

fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run_daemon(&config),
        Command::Demo {
            duration,
            http_port,
            rate,
        } => run_demo(duration, http_port, rate),
        Command::Simulate {
            config,
            rate,
            count,
            duration,
            bad,
            infosec,
            trading,
            new_incident,
            seed,
            topic,
            out,
        } => run_simulate(
            out.as_deref(),
            &config,
            regwatch::ingest::load::Plan {
                topic: topic.unwrap_or_default(),
                rate,
                count,
                duration: duration.map(std::time::Duration::from_millis),
            },
            regwatch::simulate::Mix {
                infosec,
                trading,
                bad,
                new_incident,
            },
            seed,
        ),
        Command::Replay {
            config,
            until,
            events,
        } => run_replay(config.as_deref(), until, &events),
        Command::CheckConfig { file } => check_config(&file),
        Command::Probe { config, ready } => probe(&config, ready),
        Command::Acls {
            config,
            principal,
            participant_principal,
        } => print_acls(&config, principal, participant_principal),
        Command::Rules {
            action: RulesAction::Check { file },
        } => rules_check(&file),
        Command::Act { action } => act(action),
        Command::Silences {
            api,
            participant,
            json,
        } => silences(api, participant, json),
        Command::DeadLetters {
            action: DeadLettersAction::List { which, json },
        } => dead_letters(which, Err(json)),
        Command::DeadLetters {
            action:
                DeadLettersAction::Redrive {
                    which,
                    why,
                    actor,
                    all,
                    again,
                    dry_run,
                },
        } => dead_letters(
            which,
            Ok(Redrive {
                why,
                actor,
                all,
                again,
                dry_run,
            }),
        ),
        Command::Rules {
            action:
                RulesAction::Diff {
                    old,
                    new,
                    config,
                    topic,
                    json,
                    exit_code,
                },
        } => rules_diff(&old, &new, config.as_deref(), &topic, json, exit_code),
        Command::State { action } => match action {
            StateAction::Dump(p) => state(p, false),
            StateAction::Verify(p) => state(p, true),
        },
        Command::Incidents { api, filters, json } => incidents(api, &filters, json),
        Command::Report {
            config,
            participant,
            from,
            to,
            format,
        } => report(&config, participant, from, to, format == "csv"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `REGWATCH_LOG` (e.g. `info,librdkafka=warn`) overrides `default`. JSON
/// lines (one object per event: `timestamp`, `level`, `target`, `message`, then the event's
/// own fields such as `topic`, `partition`, `receiver`, `alert_id`, `error`) when `json`.
fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

fn state(which: StatePartition, verify: bool) -> anyhow::Result<ExitCode> {
    let StatePartition {
        config,
        topic,
        partition,
    } = which;
    init_logging("warn", false);
    let cfg = Config::load(&config)?;
    let topic = match topic {
        Some(t) => t,
        None => match &cfg.kafka.topics {
            regwatch::config::TopicSelection::List(l) => l.first().cloned().unwrap_or_default(),
            regwatch::config::TopicSelection::Pattern(_) => {
                anyhow::bail!("kafka.topic_pattern: give --topic")
            }
        },
    };
    let loaded = regwatch::ingest::inspect::read(&cfg.kafka, &topic, partition)?;
    if !verify {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for r in &loaded.records {
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    let incidents = loaded
        .records
        .iter()
        .filter(|r| matches!(r, regwatch::score::StateRecord::Incident(_)))
        .count();
    eprintln!(
        "{topic}[{partition}]: {} records ({incidents} incidents), {} refused (no valid regwatch.mac), {} unreadable, {} unsigned legacy or shadowed (re-signed at the next restore)",
        loaded.records.len(),
        loaded.unauthenticated,
        loaded.unreadable.len(),
        loaded.resign.len()
    );
    Ok(
        if verify && (loaded.unauthenticated > 0 || !loaded.unreadable.is_empty()) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn rules_check(file: &Path) -> anyhow::Result<ExitCode> {
    use regwatch::score::{Axis, Level, Rules};
    let rules = Rules::load(file).with_context(|| format!("{}", file.display()))?;
    let mut total = 0;
    let axes: Vec<String> = Axis::ALL
        .iter()
        .map(|&axis| {
            let of = rules.of(axis);
            total += of.len();
            let levels: Vec<String> = Level::ALL
                .iter()
                .rev()
                .filter_map(|&l| {
                    let n = of.iter().filter(|r| r.level == l).count();
                    (n > 0).then(|| format!("{n} {l}"))
                })
                .collect();
            format!(
                "{}: {} rules ({}), exemption lost at {}",
                axis.as_str(),
                of.len(),
                levels.join(", "),
                rules.exemption_line(axis)
            )
        })
        .collect();
    println!(
        "{}: ok ({total} rules, sha256 {})",
        file.display(),
        &rules.digest()[..12]
    );
    for line in axes {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Who does what the command does: `--actor`, else `$USER`; kept in the audit record.
fn actor(given: Option<String>, does: &str) -> anyhow::Result<String> {
    match given.or_else(|| std::env::var("USER").ok()) {
        Some(a) if !a.trim().is_empty() => Ok(a),
        _ => anyhow::bail!("give --actor (who {does}: kept in the audit record)"),
    }
}

/// What `dead-letters redrive` was asked.
struct Redrive {
    why: String,
    actor: Option<String>,
    all: bool,
    again: bool,
    dry_run: bool,
}

/// `dead-letters list` (`Err(json)`) or `redrive`.
fn dead_letters(
    which: DeadLetterSelection,
    redrive: Result<Redrive, bool>,
) -> anyhow::Result<ExitCode> {
    use regwatch::redrive;
    init_logging("warn", false);
    let cfg = Config::load(&which.config)?;
    let k = &cfg.kafka;
    let topic = if which.alerts {
        cfg.delivery.dead_letter_topic.clone()
    } else {
        k.dead_letter_topic.clone()
    };
    let filter = redrive::Filter {
        reason: which.reason,
        receiver: which.receiver,
        participant: which.participant,
        partition: which.partition,
        offsets: which.offsets,
    };
    let done = redrive::redriven(k)?;
    let chosen: Vec<redrive::DeadLetter> = redrive::read(k, &topic, which.alerts, &done)?
        .into_iter()
        .filter(|d| filter.admits(d))
        .collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let how = match redrive {
        Err(json) => {
            for d in &chosen {
                if json {
                    serde_json::to_writer(&mut out, d)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{}/{}/{}\t{}\t{}\t{}\t{} -> {}[{}]\t{}{}",
                        d.topic,
                        d.partition,
                        d.offset,
                        d.at,
                        d.participant,
                        d.reason,
                        d.receiver.as_deref().unwrap_or("-"),
                        d.source_topic,
                        d.source_partition
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        if d.redriven { "redriven " } else { "" },
                        d.unfit
                            .as_deref()
                            .map(|u| format!("(cannot go back: {u})"))
                            .unwrap_or_default()
                    )?;
                }
            }
            eprintln!("{topic}: {} dead letters chosen", chosen.len());
            return Ok(ExitCode::SUCCESS);
        }
        Ok(how) => how,
    };
    anyhow::ensure!(
        how.all || !filter.is_empty(),
        "choose what to redrive (--reason, --receiver, --participant, --partition [--offsets]) or say --all"
    );
    let actor = actor(how.actor, "redrives")?;
    anyhow::ensure!(!how.why.trim().is_empty(), "--why must say why");
    let act = redrive::Act {
        actor,
        why: how.why,
    };
    let record_key = regwatch::ingest::trust::record_key(k, std::time::Duration::from_secs(30))?;
    let rt = runtime()?;
    let (mut put, mut skipped, mut failed) = (0, 0, 0);
    rt.block_on(async {
        if k.create_topics && !how.dry_run {
            let brokers =
                regwatch::ingest::client::preflight(k, std::time::Duration::from_secs(30))?;
            regwatch::ingest::client::ensure_audit_topic(k, brokers).await?;
        }
        let producer: rdkafka::producer::FutureProducer =
            regwatch::ingest::client::producer(k).create()?;
        for d in &chosen {
            let at = format!("{}/{}/{}", d.topic, d.partition, d.offset);
            if let Some(u) = &d.unfit {
                writeln!(out, "skipped {at}: {u}")?;
                skipped += 1;
            } else if d.redriven && !how.again {
                writeln!(
                    out,
                    "skipped {at}: redriven already (--again to put it back once more)"
                )?;
                skipped += 1;
            } else if how.dry_run {
                writeln!(
                    out,
                    "would put {at} back on {}[{}] ({}, {})",
                    d.source_topic,
                    d.source_partition.unwrap_or(-1),
                    d.reason,
                    d.participant
                )?;
            } else {
                match redrive::redrive_one(k, &producer, record_key.as_ref(), d, &act).await {
                    Ok(a) => {
                        writeln!(
                            out,
                            "redriven {at} -> {} ({}, {})",
                            a.to, d.reason, d.participant
                        )?;
                        put += 1;
                    }
                    Err(e) => {
                        writeln!(out, "failed {at}: {e:#}")?;
                        failed += 1;
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    out.flush()?;
    eprintln!(
        "{topic}: {} chosen, {put} redriven, {skipped} skipped, {failed} failed{}",
        chosen.len(),
        if how.dry_run { " (dry run)" } else { "" }
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn rules_diff(
    old: &Path,
    new: &Path,
    config: Option<&Path>,
    topics: &[String],
    json: bool,
    exit_code: bool,
) -> anyhow::Result<ExitCode> {
    use regwatch::score::Rules;
    init_logging("warn", false);
    let cfg = config.map(Config::load).transpose()?;
    let load = |p: &Path| -> anyhow::Result<Arc<Rules>> {
        let rules = Rules::load(p).with_context(|| format!("{}", p.display()))?;
        Ok(Arc::new(match &cfg {
            Some(c) => rules.with_calendars(c.rules.calendars().clone()),
            None => rules,
        }))
    };
    let diff = regwatch::rulediff::run(cfg.as_ref(), load(old)?, load(new)?, topics)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &diff)?;
        out.write_all(b"\n")?;
    } else {
        regwatch::rulediff::render(&diff, &mut out)?;
    }
    out.flush()?;
    Ok(if exit_code && !diff.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn report(
    config: &Path,
    participant: String,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    csv: bool,
) -> anyhow::Result<ExitCode> {
    init_logging("warn", false);
    let cfg = Config::load(config)?;
    let req = regwatch::report::Request {
        participant,
        from,
        to,
        csv,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    regwatch::report::run(&cfg, &req, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    init_logging("info", cfg.log.json);
    let rt = runtime()?;
    let result = rt.block_on(regwatch::app::run(cfg, shutdown_signal(), None));
    // `run` has drained within the shutdown grace (or said it could not): whatever is still
    // running (a blocking Kafka call against an unreachable cluster) must not keep the
    // process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("regwatch")
        .build()?)
}

fn run_demo(duration_ms: u64, http_port: u16, rate: f64) -> anyhow::Result<ExitCode> {
    init_logging("warn", false);
    let opts = regwatch::demo::Options {
        duration: (duration_ms > 0).then(|| std::time::Duration::from_millis(duration_ms)),
        http_port,
        rate,
    };
    let rt = runtime()?;
    let result = rt.block_on(regwatch::demo::run(opts));
    // The prompt comes back when the demo says it is done: nothing left running may hold it.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result?;
    Ok(ExitCode::SUCCESS)
}

fn run_simulate(
    out: Option<&Path>,
    config: &Path,
    mut plan: regwatch::ingest::load::Plan,
    mix: regwatch::simulate::Mix,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    init_logging("info", false);
    let cfg = Config::load(config)?;
    if let Some(out) = out {
        let count = plan.count.context("--out needs --count")?;
        let mut generator = regwatch::simulate::Generator::new(&cfg.registry, seed, mix);
        let step = if plan.rate > 0.0 {
            1000.0 / plan.rate
        } else {
            1.0
        };
        let start = regwatch::time::wall_now().millis();
        let file = std::fs::File::create(out).with_context(|| format!("{}", out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        for i in 0..count {
            let at = Timestamp(start + (i as f64 * step) as i64);
            w.write_all(generator.next(at).value)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        eprintln!("simulate: {count} events to {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if plan.topic.is_empty() {
        plan.topic = match &cfg.kafka.topics {
            regwatch::config::TopicSelection::List(l) => l[0].clone(),
            regwatch::config::TopicSelection::Pattern(p) => {
                anyhow::bail!("kafka.topic_pattern {p:?} names no topic: pass --topic")
            }
        };
    }
    if plan.count.is_none() && plan.duration.is_none() {
        anyhow::bail!("give --count or --duration");
    }
    let mut generator = regwatch::simulate::Generator::new(&cfg.registry, seed, mix);
    let sent = runtime()?.block_on(regwatch::ingest::load::produce(
        &cfg.kafka,
        &mut generator,
        &plan,
    ))?;
    eprintln!(
        "simulate: {} events to {} in {:.1}s ({:.0}/s), {} failed",
        sent.events,
        plan.topic,
        sent.elapsed.as_secs_f64(),
        sent.events as f64 / sent.elapsed.as_secs_f64().max(1e-9),
        sent.failed
    );
    Ok(if sent.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(file)?;
    println!(
        "{}: ok ({} participants, {} rules from {}, config sha256 {}, rules sha256 {})",
        file.display(),
        cfg.registry.len(),
        cfg.rules.len(),
        cfg.rules_path
            .as_deref()
            .map_or("the built-in grid".to_string(), |p| p.display().to_string()),
        &cfg.digest[..12],
        &cfg.rules.digest()[..12],
    );
    for r in &cfg.delivery.receivers {
        println!(
            "  webhook receiver {}: {} payload, {} signing key(s), timeout {} ms",
            r.name,
            r.format.as_str(),
            r.signing_keys.len(),
            r.timeout_ms
        );
    }
    let bound = cfg
        .registry
        .iter()
        .filter(|(_, p)| !p.topics.is_empty())
        .count();
    println!(
        "  trust: {bound} of {} participants bound to their topics; kafka.record_key {}",
        cfg.registry.len(),
        match (&cfg.kafka.record_key, cfg.kafka.trust_internal_topics) {
            (Some(_), _) => "set (alerts, reminders and state are authenticated)",
            (None, false) => {
                "not set (alerts, reminders and state are authenticated with the deployment's key, kept in the state topic)"
            }
            (None, true) => {
                "off (insecure_trust_internal_topics: alerts, reminders and state topics are trusted)"
            }
        }
    );
    let http = &cfg.http;
    if let Some(addr) = http.listen {
        if let Some(tls) = &http.tls {
            // The certificate, key and client CA load together, as the daemon loads them.
            regwatch::telemetry::web::acceptor(tls).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut roles: Vec<&str> = http.tokens.iter().map(|t| t.role.as_str()).collect();
        roles.dedup();
        println!(
            "  http endpoint {}://{addr}: {}, {}",
            if http.tls.is_some() { "https" } else { "http" },
            match &http.tls {
                Some(t) if t.client_ca_file.is_some() => "client certificates required",
                _ => "no client certificates",
            },
            if roles.is_empty() {
                "no bearer tokens".to_string()
            } else {
                format!("bearer tokens for {}", roles.join(", "))
            }
        );
    }
    let h = &cfg.history;
    if h.enabled {
        println!(
            "  history: topic {}, kept {} days; the desk holds up to {} incidents",
            h.topic,
            h.retention_ms / 86_400_000,
            h.max_incidents
        );
    } else {
        println!("  history: off (/incidents answers for each instance's own partitions)");
    }
    Ok(ExitCode::SUCCESS)
}

fn probe(config: &Path, ready: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let url = format!(
        "{}/{}",
        local_endpoint(&cfg).context("nothing to probe")?,
        if ready { "readyz" } else { "healthz" }
    );
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = rt.block_on(async {
        let r = client.get(&url).send().await?;
        let status = r.status();
        Ok::<_, reqwest::Error>((status, r.text().await.unwrap_or_default()))
    })?;
    print!("{url}: {} {body}", status.as_u16());
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_acls(
    config: &Path,
    principal: Option<String>,
    participant_principal: String,
) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let mut opts = regwatch::acls::Options::for_config(&cfg);
    if let Some(p) = principal {
        opts.principal = p;
    }
    opts.participant_principal = participant_principal;
    if !opts.principal.contains(':') {
        anyhow::bail!(
            "--principal {:?}: give Type:name (e.g. User:regwatch)",
            opts.principal
        );
    }
    if !opts.participant_principal.contains(':') || !opts.participant_principal.contains("{id}") {
        anyhow::bail!(
            "--participant-principal {:?}: give Type:name with {{id}} (e.g. User:{{id}})",
            opts.participant_principal
        );
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = regwatch::acls::commands(&cfg, &opts)
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match written {
        // A closed stdout (`| head`) ends the listing quietly.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn run_replay(
    config: Option<&Path>,
    until: Option<Timestamp>,
    events: &Path,
) -> anyhow::Result<ExitCode> {
    let cfg = match config {
        Some(path) => Config::load(path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => Config::load(Path::new(DEFAULT_CONFIG))?,
        None => {
            eprintln!(
                "regwatch: no --config and no {DEFAULT_CONFIG}: no participant is registered"
            );
            Config::with_participants(Vec::new())?
        }
    };
    let mut settings = cfg.engine;
    settings.clock = ClockMode::EventTime;
    let mut engine = Engine::new(Arc::new(cfg.registry), Arc::new(cfg.rules), settings);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr().lock();
    let summary = if events == Path::new("-") {
        replay(&mut engine, io::stdin().lock(), &mut out, &mut err, until)
    } else {
        let file = std::fs::File::open(events)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", events.display()))?;
        replay(&mut engine, BufReader::new(file), &mut out, &mut err, until)
    };
    match summary {
        Ok(s) => {
            eprintln!(
                "replay: {} lines, {} accepted, {} duplicates, {} rejected, {} alerts",
                s.lines, s.accepted, s.duplicates, s.rejected, s.alerts
            );
            Ok(ExitCode::SUCCESS)
        }
        // A closed stdout (`| head`) ends the replay quietly.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}
