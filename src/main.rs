//! The `regwatch` binary: parse the command line, load the configuration, run, exit code.

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use regwatch::config::Config;
use regwatch::replay::replay;
use regwatch::score::{ClockMode, Engine};
use regwatch::time::Timestamp;

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
    /// Validate a configuration file (and the rules file it names); exit 0 when it is good.
    CheckConfig { file: PathBuf },
}

fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            config,
            until,
            events,
        } => run_replay(config.as_deref(), until, &events),
        Command::CheckConfig { file } => check_config(&file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regwatch: {e:#}");
            ExitCode::FAILURE
        }
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
    Ok(ExitCode::SUCCESS)
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
