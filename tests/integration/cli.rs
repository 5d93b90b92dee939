//! The binary as operators and supervisors use it: `check-config` and `replay`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn regwatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regwatch"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    // Keep the caller's REGWATCH__ overrides out of the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("REGWATCH__") {
            c.env_remove(k);
        }
    }
    c
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("regwatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn check_config(path: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = regwatch();
    c.arg("check-config").arg(path);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn check_config_accepts_the_shipped_example_and_a_registry_only_file() {
    let out = check_config(&repo("config/regwatch.toml"), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok (8 participants, 30 rules"),
        "{}",
        text(&out.stdout)
    );
    // What the configuration trusts is said, not left to be read off the file.
    assert!(
        text(&out.stdout).contains("trust: 0 of 8 participants bound")
            && text(&out.stdout).contains("kafka.record_key not set")
            && text(&out.stdout).contains("http endpoint http://127.0.0.1:9464"),
        "{}",
        text(&out.stdout)
    );

    let only = temp_file(
        "only-participants.toml",
        "[[participants]]\nid = \"GZ-BRK-0001\"\nname = \"Example Securities\"\nkind = \"broker\"\neffective_customers = 2500000\n",
    );
    let out = check_config(&only, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_config_names_the_bad_key_and_why() {
    let participant = "[[participants]]\nid = \"A\"\nkind = \"broker\"\n";
    for (name, body, expect) in [
        (
            "unknown-key.toml",
            format!("[engine]\ndedup_windw = 5\n{participant}"),
            "dedup_windw",
        ),
        (
            "bad-type.toml",
            format!("[engine]\ndedup_window = \"many\"\n{participant}"),
            "engine.dedup_window",
        ),
        (
            "bad-range.toml",
            format!("[engine]\nmax_incidents = 0\n{participant}"),
            "engine.max_incidents",
        ),
        (
            "bad-duration.toml",
            format!("[engine]\ntelemetry_gap = \"soon\"\n{participant}"),
            "engine.telemetry_gap",
        ),
        (
            "bad-level.toml",
            format!("[alerts]\nmin_level = \"severe\"\n{participant}"),
            "alerts.min_level",
        ),
        (
            "short-reminder.toml",
            format!("[alerts]\nreminder_interval = \"30s\"\n{participant}"),
            "alerts.reminder_interval",
        ),
        (
            "bad-reminder-level.toml",
            format!("[alerts]\nreminder_min_level = \"huge\"\n{participant}"),
            "alerts.reminder_min_level",
        ),
        (
            "bad-kind.toml",
            "[[participants]]\nid = \"A\"\nkind = \"bank\"\n".to_string(),
            "participants[0].kind",
        ),
        (
            "dup-id.toml",
            format!("{participant}{participant}"),
            "participants[1].id",
        ),
        (
            "no-kind.toml",
            "[[participants]]\nid = \"A\"\n".to_string(),
            "kind",
        ),
        (
            "missing-rules.toml",
            format!("[rules]\npath = \"nowhere.toml\"\n{participant}"),
            "nowhere.toml",
        ),
        ("not-toml.toml", "[[participants]\n".to_string(), "config"),
    ] {
        let out = check_config(&temp_file(name, &body), &[]);
        assert!(!out.status.success(), "{name} must be refused");
        let err = text(&out.stderr);
        assert!(
            err.contains(expect),
            "{name}: {err:?} should name {expect:?}"
        );
    }
}

#[test]
fn check_config_refuses_bad_rules_with_the_rule_and_value() {
    let rules = |body: &str| {
        let path = temp_file("rules-under-test.toml", body);
        let cfg = format!(
            "[rules]\npath = {:?}\n[[participants]]\nid = \"A\"\nkind = \"broker\"\n",
            path.display().to_string()
        );
        check_config(&temp_file("with-rules.toml", &cfg), &[])
    };
    let rule = |level: &str, when: &str, all: &str| {
        format!("[[rule]]\nid = \"r1\"\naxis = \"market_order\"\nlevel = \"{level}\"\nwhen = {{ {when} }}\nall = [{all}]\n")
    };
    for (body, expect) in [
        (
            rule("major", "", "\"minuts >= 3\""),
            "unknown metric \"minuts\"",
        ),
        (
            rule("severe", "", "\"minutes >= 3\""),
            "unknown level \"severe\"",
        ),
        (
            rule("major", "participant_kind = [\"bank\"]", "\"minutes >= 3\""),
            "unknown value \"bank\"",
        ),
        (
            rule("major", "category = [\"meteor\"]", "\"minutes >= 3\""),
            "when.category",
        ),
        (
            rule("major", "", "\"minutes >= soon\""),
            "not a finite number",
        ),
        (rule("major", "", "\"minutes ~ 3\""), "unknown operator"),
        (
            format!("{}{}", rule("major", "", ""), rule("larger", "", "")),
            "duplicate rule id",
        ),
        (
            "[exemption]\nmarket_order = \"none\"\n".to_string(),
            "exemption.market_order",
        ),
        (
            "[[rule]]\nid = \"r\"\naxis = \"market_order\"\nlevel = \"major\"\nthreshold = 3\n"
                .to_string(),
            "threshold",
        ),
    ] {
        let out = rules(&body);
        assert!(!out.status.success(), "rules must be refused: {body}");
        let err = text(&out.stderr);
        assert!(err.contains(expect), "{err:?} should contain {expect:?}");
        assert_eq!(err.matches("rules file").count(), 1, "said once: {err:?}");
    }
    // A valid custom grid is accepted and counted.
    let out = rules(&rule(
        "major",
        "participant_kind = [\"broker\"]",
        "\"minutes >= 3\"",
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 rules"));
}

#[test]
fn environment_variables_override_the_file() {
    let path = repo("config/regwatch.toml");
    let out = check_config(&path, &[("REGWATCH__ENGINE__DEDUP_WINDOW", "lots")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("engine.dedup_window"),
        "{}",
        text(&out.stderr)
    );
    let out = check_config(&path, &[("REGWATCH__ENGINE__DEDUP_WINDOW", "64")]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // An override changes behaviour: with min_level = extraordinary only the biggest fire.
    let out = regwatch()
        .args([
            "replay",
            "--config",
            "config/regwatch.toml",
            "config/example-events.jsonl",
        ])
        .env("REGWATCH__ALERTS__MIN_LEVEL", "extraordinary")
        .env("REGWATCH__ENGINE__TELEMETRY_GAP", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    let alerts = parse_alerts(&out.stdout);
    assert!(!alerts.is_empty());
    assert!(alerts
        .iter()
        .all(|a| a["type"] == "incident" && a["level"] == "extraordinary"));
}

fn parse_alerts(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line {l:?}: {e}")))
        .collect()
}

fn replay_example() -> Output {
    regwatch()
        .args([
            "replay",
            "--config",
            "config/regwatch.toml",
            "config/example-events.jsonl",
        ])
        .output()
        .unwrap()
}

#[test]
fn replay_of_the_example_shows_every_alert_kind() {
    let out = replay_example();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alerts = parse_alerts(&out.stdout);
    let has = |pred: &dyn Fn(&Value) -> bool| alerts.iter().any(pred);
    for trigger in [
        "opened",
        "escalated",
        "clock",
        "resolved",
        "silent",
        "heard",
    ] {
        assert!(has(&|a| a["trigger"] == trigger), "a {trigger} alert");
    }
    assert!(has(
        &|a| a["type"] == "telemetry_gap" && a["status"] == "firing"
    ));
    assert!(has(
        &|a| a["type"] == "incident" && a["status"] == "resolved"
    ));
    assert!(has(&|a| a["exemption"] == "ineligible"));
    for level in ["general", "larger", "major", "extraordinary"] {
        assert!(has(&|a| a["level"] == level), "a {level} alert");
    }
    // The exchange delay of 10:10 escalates to major at 10:20 with no new report.
    assert!(has(&|a| a["incident_id"] == "CONFIRM-DELAY"
        && a["trigger"] == "clock"
        && a["market_order"]["level"] == "major"
        && a["at"] == "2026-03-02T02:20:00.000Z"));
    let err = text(&out.stderr);
    for (line, code) in [
        (195, "not_json"),
        (196, "unregistered_participant"),
        (197, "missing_field"),
        (198, "wrong_type"),
    ] {
        assert!(
            err.contains(&format!("line {line}: rejected ({code})")),
            "{err}"
        );
    }
    assert!(err.contains("1 duplicates, 4 rejected, 23 alerts"), "{err}");
    // The lunch-break outage: 115 wall-clock minutes, 25 of trading (11:20-11:30 and
    // 13:00-13:15 of cn-stock), so `larger` and eligible, not the `major` (ineligible) that
    // 30 wall-clock minutes of a big broker's full outage would be.
    let lunch: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["incident_id"] == "LUNCH-20260302")
        .collect();
    let last = lunch.last().expect("the lunch-break outage is alerted");
    assert_eq!(
        (
            &last["status"],
            &last["level"],
            &last["exemption"],
            &last["duration_minutes"],
            &last["trading_minutes"],
            &last["calendar"]
        ),
        (
            &json!("resolved"),
            &json!("larger"),
            &json!("eligible"),
            &json!(115.0),
            &json!(25.0),
            &json!("cn-stock")
        )
    );
    assert!(lunch.iter().all(|a| a["market_order"]["level"] != "major"));
}

#[test]
fn replay_is_deterministic_and_reads_stdin() {
    let first = replay_example();
    let mut child = regwatch()
        .args(["replay", "--config", "config/regwatch.toml", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = std::fs::read(repo("config/example-events.jsonl")).unwrap();
    child.stdin.take().unwrap().write_all(&events).unwrap();
    let second = child.wait_with_output().unwrap();
    assert!(second.status.success());
    assert_eq!(text(&first.stdout), text(&second.stdout));
}

#[test]
fn replay_until_fires_deadlines_after_the_last_event() {
    let events = temp_file(
        "open-outage.jsonl",
        r#"{"schema":"regwatch.event.v1","event_id":"1","participant_id":"GZ-BRK-0001","kind":"infosec","occurred_at":"2026-03-02T10:00:00+08:00","incident_id":"I","category":"outage","system":"trading","scope":"full"}
"#,
    );
    let out = regwatch()
        .args([
            "replay",
            "--config",
            "config/regwatch.toml",
            "--until",
            "2026-03-02T10:31:00+08:00",
        ])
        .arg(&events)
        .env("REGWATCH__ENGINE__TELEMETRY_GAP", "off")
        .output()
        .unwrap();
    let levels: Vec<_> = parse_alerts(&out.stdout)
        .iter()
        .map(|a| a["level"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(levels, ["general", "larger", "major"]);
}

#[test]
fn replay_writes_no_reminders_though_the_configuration_enables_them() {
    // config/regwatch.toml has hourly reminders from major; an outage open for hours would
    // get some in the daemon, and none in replay.
    let events = temp_file(
        "long-outage.jsonl",
        r#"{"schema":"regwatch.event.v1","event_id":"1","participant_id":"GZ-BRK-0001","kind":"infosec","occurred_at":"2026-03-02T10:00:00+08:00","incident_id":"I","category":"outage","system":"trading","scope":"full"}
"#,
    );
    let out = regwatch()
        .args([
            "replay",
            "--config",
            "config/regwatch.toml",
            "--until",
            "2026-03-02T15:00:00+08:00",
        ])
        .arg(&events)
        .env("REGWATCH__ENGINE__TELEMETRY_GAP", "off")
        .env("REGWATCH__ALERTS__REMINDER_INTERVAL", "1m")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let triggers: Vec<_> = parse_alerts(&out.stdout)
        .iter()
        .map(|a| a["trigger"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(triggers, ["opened", "clock", "clock"]);
}

#[test]
fn replay_reports_a_missing_file_clearly() {
    let out = regwatch()
        .args(["replay", "no-such-file.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-file.jsonl"));
}

#[test]
fn the_demo_runs_and_grades_the_lunch_break_backlog_as_it_happened() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = regwatch()
        .args(["demo", "--duration", "8s", "--http-port", &port.to_string()])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let lunch = stdout
        .lines()
        .find(|l| l.contains("LUNCH-OUTAGE") && l.contains("resolved"))
        .unwrap_or_else(|| panic!("the lunch-break outage is graded: {stdout}"));
    assert!(
        lunch.contains("115 min (25 of trading)") && lunch.contains("larger"),
        "{lunch}"
    );
    assert!(stdout.contains("demo done:"), "{stdout}");
}

/// `regwatch rules check` takes what a reload takes and refuses what it refuses, naming the
/// rule.
#[test]
fn rules_check_summarises_a_good_file_and_names_the_bad_rule() {
    let out = regwatch()
        .args(["rules", "check", "config/rules.toml"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("config/rules.toml: ok ("), "{stdout}");
    assert!(
        stdout.contains("investor_loss:") && stdout.contains("market_order:"),
        "{stdout}"
    );
    assert!(stdout.contains("exemption lost at major"), "{stdout}");
    let dir = std::env::temp_dir().join(format!("regwatch-rules-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"il.loss.bad\"\naxis = \"investor_loss\"\nlevel = \"major\"\nall = [\"loss_cny >= lots\"]\ncite = \"x\"\n",
    )
    .unwrap();
    let out = regwatch()
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("il.loss.bad") && stderr.contains("lots"),
        "{stderr}"
    );
}

/// `regwatch rules diff` without a configuration compares the grids alone: identical files
/// grade alike (exit 0 with --exit-code), a changed threshold and exemption line are named.
#[test]
fn rules_diff_names_what_differs_between_two_grids() {
    let out = regwatch()
        .args([
            "rules",
            "diff",
            "config/rules.toml",
            "config/rules.toml",
            "--exit-code",
        ])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("the grids grade alike"), "{stdout}");
    let dir = std::env::temp_dir().join(format!("regwatch-rules-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let changed = dir.join("new.toml");
    let grid = std::fs::read_to_string("config/rules.toml").unwrap();
    std::fs::write(
        &changed,
        grid.replacen(
            "\"records_exposed >= 100000\"",
            "\"records_exposed >= 15000\"",
            1,
        )
        .replacen("investor_loss = \"major\"", "investor_loss = \"larger\"", 1),
    )
    .unwrap();
    let out = regwatch()
        .args(["rules", "diff", "config/rules.toml", "--exit-code"])
        .arg(&changed)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .contains("investor_loss il.records.major changed: major if records_exposed >= 100000")
            && stdout.contains("now: major if records_exposed >= 15000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("investor_loss: exemption lost at larger (was major)"),
        "{stdout}"
    );
}

/// The demo ends when it says it ends: at the end of `--duration`, and on Ctrl-C, the
/// process exits within moments of stopping (it used to take ~45 s more, closing a consumer
/// after the embedded cluster was gone). The bound is generous for a loaded machine; the
/// hang it guards against is twenty times longer.
#[test]
fn the_demo_exits_promptly_at_its_end_and_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    // Reads stdout until a line containing `what`; returns when it was seen.
    let wait_for = |lines: &mut dyn Iterator<Item = std::io::Result<String>>, what: &str| {
        for line in lines {
            if line.unwrap().contains(what) {
                return std::time::Instant::now();
            }
        }
        panic!("the demo never printed {what:?}");
    };
    for ctrl_c in [false, true] {
        let duration = if ctrl_c { "0" } else { "4s" };
        let mut child = regwatch()
            .args(["demo", "--duration", duration, "--http-port", &port()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stopping = if ctrl_c {
            wait_for(&mut lines, "on-call webhook");
            std::thread::sleep(std::time::Duration::from_secs(3));
            let pid = child.id().to_string();
            assert!(std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success());
            std::time::Instant::now()
        } else {
            wait_for(&mut lines, "stopping:")
        };
        wait_for(&mut lines, "demo done:");
        let status = child.wait().unwrap();
        let took = stopping.elapsed();
        assert!(status.success(), "ctrl_c {ctrl_c}: {status}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "ctrl_c {ctrl_c}: the prompt came back {took:?} after the demo stopped"
        );
    }
}

/// `simulate --out` writes a replayable file, the same for the same seed, without a broker:
/// what the replay benchmark reads (`benches/e2e.sh`).
#[test]
fn simulate_writes_a_seeded_event_file_that_replay_grades() {
    let dir = std::env::temp_dir().join(format!("regwatch-cli-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, seed: &str| {
        let path = dir.join(name);
        let out = regwatch()
            .args([
                "simulate",
                "--config",
                "config/regwatch.toml",
                "--count",
                "2000",
            ])
            .args([
                "--bad",
                "0",
                "--new-incident",
                "0.2",
                "--seed",
                seed,
                "--out",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read_to_string(&path).unwrap()
    };
    let a = write("a.jsonl", "5");
    assert_eq!(a.lines().count(), 2000);
    // The same seed, the same events (their times start at the run's wall clock).
    let b = write("b.jsonl", "5");
    let strip = |s: &str| -> Vec<Value> {
        s.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                for f in ["occurred_at", "started_at"] {
                    v.as_object_mut().unwrap().remove(f);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    let out = regwatch()
        .args(["replay", "--config", "config/regwatch.toml"])
        .arg(dir.join("a.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("2000 lines, 2000 accepted, 0 duplicates, 0 rejected"),
        "every generated event is accepted: {}",
        text(&out.stderr)
    );
    assert!(
        !parse_alerts(&out.stdout).is_empty(),
        "incidents were opened and alerted"
    );
    let refused = regwatch()
        .args(["simulate", "--config", "config/regwatch.toml", "--out"])
        .arg(dir.join("c.jsonl"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--out needs --count"));
    let _ = std::fs::remove_dir_all(&dir);
}
