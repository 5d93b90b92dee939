//! The CLI verbs that talk to an instance's HTTP API: `incidents`, `silences` and `act`
//! (ack, annotate, close, silence, unsilence, skip).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use regwatch::config::Config;
use regwatch::time::Timestamp;

#[derive(Subcommand)]
pub enum ActAction {
    /// Acknowledge: its reminders stop; grade and verdict stay.
    Ack(ActArgs),
    /// Add a note (the reason) to its timeline.
    Annotate(ActArgs),
    /// Close it now, as a `resolved` report would, naming who and why.
    Close(ActArgs),
    /// Silence a participant's telemetry gaps and its incidents' reminders for a window
    /// (like an Alertmanager silence); prints the silence's id.
    Silence(SilenceArgs),
    /// End a silence before its time (it is kept, expired).
    Unsilence(UnsilenceArgs),
    /// Give up one alert a receiver keeps refusing: it is dead-lettered (reason `skipped`)
    /// and the receiver's other alerts go on.
    Skip(SkipArgs),
}

/// One action's target, reason and the API to send it to.
#[derive(clap::Args)]
pub struct ActArgs {
    /// PARTICIPANT/INCIDENT.
    incident: String,
    #[command(flatten)]
    who: Who,
}

/// Why, who, and the API to send it to.
#[derive(clap::Args)]
pub struct Who {
    /// Why (for annotate: the note).
    #[arg(long)]
    reason: String,
    /// Who (default: $USER; with a client certificate, its subject is who).
    #[arg(long)]
    actor: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
pub struct SilenceArgs {
    /// The participant's registry id.
    participant: String,
    /// When it starts (RFC 3339; default now).
    #[arg(long, value_parser = crate::parse_timestamp)]
    from: Option<Timestamp>,
    /// When it ends (RFC 3339).
    #[arg(long, value_parser = crate::parse_timestamp, required_unless_present = "duration", conflicts_with = "duration")]
    until: Option<Timestamp>,
    /// How long it lasts from its start instead (e.g. 90m, 2h, 1d).
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    #[command(flatten)]
    who: Who,
}

#[derive(clap::Args)]
pub struct UnsilenceArgs {
    /// The participant's registry id.
    participant: String,
    /// The silence's id (as `silence` printed it, or `regwatch silences` lists it).
    silence_id: String,
    #[command(flatten)]
    who: Who,
}

#[derive(clap::Args)]
pub struct SkipArgs {
    /// The alert's `alert_id`.
    alert_id: String,
    /// The receiver that keeps refusing it.
    #[arg(long)]
    receiver: String,
    /// The alert's participant (kept in the audit record).
    #[arg(long)]
    participant: Option<String>,
    #[command(flatten)]
    who: Who,
}

/// The HTTP API of an instance, as `incidents` and `act` reach it.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// Configuration file: the endpoint (http.listen, TLS) of the instance to ask.
    #[arg(long, required_unless_present = "url")]
    config: Option<PathBuf>,
    /// The instance's base URL instead (e.g. https://regwatch-0:9464).
    #[arg(long)]
    url: Option<String>,
    /// A file holding a bearer token of the role the route needs (supervisor to read,
    /// operator to act), when the endpoint has tokens.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The CA of the endpoint's certificate (https).
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// An instance's HTTP API as the CLI reaches it.
pub struct Endpoint {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

/// The API of the configured instance (or `url`), with its CA and a bearer token from
/// `token_file` (its first line that is not a comment).
pub fn endpoint(api: ApiArgs) -> anyhow::Result<Endpoint> {
    let ApiArgs {
        config,
        url,
        token_file,
        ca_file,
    } = api;
    let (config, token_file, ca_file) =
        (config.as_deref(), token_file.as_deref(), ca_file.as_deref());
    let base = match (url, config) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(config)) => local_endpoint(&Config::load(config)?)
            .with_context(|| format!("{}: give --url", config.display()))?,
        (None, None) => anyhow::bail!("give --config or --url"),
    };
    let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("--ca-file {}", ca.display()))?;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let token = match token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("--token-file {}", f.display()))?
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .to_string(),
        ),
        None => None,
    };
    Ok(Endpoint {
        base,
        client: client.build()?,
        token,
    })
}

/// Sends one request (with the bearer token, if any) and returns the status and body.
pub fn send(
    mut r: reqwest::RequestBuilder,
    token: Option<&str>,
    url: &str,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = r.send().await?;
        Ok::<_, reqwest::Error>((r.status(), r.text().await.unwrap_or_default()))
    })
    .with_context(|| format!("asking {url}"))
}

pub fn incidents(api: ApiArgs, filters: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let mut query = Vec::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("{f:?}: filters are KEY=VALUE"))?;
        query.push((k.to_string(), v.to_string()));
    }
    let answer = get_json(api, "/incidents", &query)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", regwatch::desk::table::render(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

/// GETs `path` with `query` from the instance's API; its JSON answer, or why not.
fn get_json(
    api: ApiArgs,
    path: &str,
    query: &[(String, String)],
) -> anyhow::Result<serde_json::Value> {
    let Endpoint {
        base,
        client,
        token,
    } = endpoint(api)?;
    let url = format!("{base}{path}");
    let (status, body) = send(client.get(&url).query(query), token.as_deref(), &url)?;
    if !status.is_success() {
        anyhow::bail!("{url}: {} {}", status.as_u16(), body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("{url}: not JSON"))
}

/// `regwatch act`: one action through the API of any instance.
pub fn act(action: ActAction) -> anyhow::Result<ExitCode> {
    use serde_json::json;
    let (kind, body, who) = match action {
        ActAction::Ack(a) | ActAction::Annotate(a) | ActAction::Close(a)
            if !a.incident.contains('/') =>
        {
            anyhow::bail!("{:?}: the incident is PARTICIPANT/INCIDENT", a.incident)
        }
        ActAction::Ack(a) => ("ack", incident_body(&a.incident), a.who),
        ActAction::Annotate(a) => ("annotate", incident_body(&a.incident), a.who),
        ActAction::Close(a) => ("close", incident_body(&a.incident), a.who),
        ActAction::Silence(a) => {
            let starts = a.from.unwrap_or_else(regwatch::time::wall_now);
            let ends = match (a.until, a.duration) {
                (Some(t), _) => t,
                (None, Some(d)) => starts.plus_millis(
                    regwatch::config::parse_duration_ms(&d)
                        .with_context(|| format!("--for {d:?}: a duration such as 90m, 2h, 1d"))?,
                ),
                (None, None) => anyhow::bail!("give --until or --for"),
            };
            let mut body = json!({"participant_id": a.participant, "ends_at": ends});
            if let Some(from) = a.from {
                body["starts_at"] = json!(from);
            }
            ("silence", body, a.who)
        }
        ActAction::Unsilence(a) => (
            "unsilence",
            json!({"participant_id": a.participant, "silence_id": a.silence_id}),
            a.who,
        ),
        ActAction::Skip(a) => {
            let mut body = json!({"receiver": a.receiver, "alert_id": a.alert_id});
            if let Some(p) = a.participant {
                body["participant_id"] = json!(p);
            }
            ("skip", body, a.who)
        }
    };
    let mut body = body;
    body["action"] = json!(kind);
    body["reason"] = json!(who.reason);
    body["actor"] = json!(crate::actor(who.actor, "acts")?);
    let Endpoint {
        base,
        client,
        token,
    } = endpoint(who.api)?;
    let url = format!("{base}/actions");
    let (status, text) = send(
        client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()),
        token.as_deref(),
        &url,
    )?;
    if !status.is_success() {
        eprintln!("{url}: {} {}", status.as_u16(), text.trim());
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", text.trim());
    Ok(ExitCode::SUCCESS)
}

fn incident_body(incident: &str) -> serde_json::Value {
    let (participant, incident) = incident.split_once('/').unwrap_or_default();
    serde_json::json!({"participant_id": participant, "incident_id": incident})
}

/// `regwatch silences`: the silences the desk knows of, as a table or JSON.
pub fn silences(api: ApiArgs, participant: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let query: Vec<(String, String)> = participant
        .into_iter()
        .map(|p| ("participant".to_string(), p))
        .collect();
    let answer = get_json(api, "/silences", &query)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24}  {:<16}  {:<8}  {:<24}  {:<24}  {:<16}  REASON",
        "ID", "PARTICIPANT", "STATE", "STARTS", "ENDS", "AUTHOR"
    );
    for s in answer["silences"].as_array().into_iter().flatten() {
        let f = |k: &str| s[k].as_str().unwrap_or("").to_string();
        println!(
            "{:<24}  {:<16}  {:<8}  {:<24}  {:<24}  {:<16}  {}",
            f("silence_id"),
            f("participant_id"),
            f("state"),
            f("starts_at"),
            f("ends_at"),
            f("author"),
            f("reason")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// This host's own HTTP endpoint as the configuration serves it: `scheme://addr`, a
/// wildcard address asked on loopback (it listens there too).
pub fn local_endpoint(cfg: &Config) -> anyhow::Result<String> {
    let Some(mut addr) = cfg.http.listen else {
        anyhow::bail!("http.listen is \"off\"");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if cfg.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{addr}"))
}
