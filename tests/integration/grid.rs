//! Every row of the default grid (CONTRACT.md section 2), probed through the whole engine at,
//! just below and just above each threshold, for every participant kind and system.
//!
//! The expected level comes from an oracle written straight from the contract's tables, with
//! no code shared with the engine; each row also states the level the contract gives at the
//! threshold, so a wrong oracle cannot hide a wrong grid.

use regwatch::registry::ParticipantKind;
use regwatch::score::Level::{self, *};
use serde_json::{json, Value};

use crate::support::*;

const KINDS: [ParticipantKind; 7] = ParticipantKind::ALL;
const SYSTEMS: [&str; 6] = [
    "trading",
    "market_data",
    "clearing",
    "custody",
    "margin",
    "other",
];

/// Market-order level of a service-capability incident, from the contract's table.
fn oracle_service(
    kind: ParticipantKind,
    category: &str,
    system: &str,
    scope_full: bool,
    units: Option<f64>,
    minutes: f64,
    customers: f64,
) -> Level {
    use ParticipantKind as K;
    if category != "outage" && category != "degradation" {
        return None;
    }
    let units = units.unwrap_or(if scope_full { 100.0 } else { 0.0 });
    match (kind, system) {
        (K::Exchange, "trading" | "market_data") => {
            if minutes >= 20.0 && units >= 20.0 {
                Extraordinary
            } else if minutes >= 10.0 && units >= 10.0 {
                Major
            } else if units >= 5.0 {
                Larger
            } else {
                General
            }
        }
        (K::FuturesExchange, "trading") => {
            if minutes >= 120.0 {
                Extraordinary
            } else if minutes >= 30.0 {
                Major
            } else if minutes >= 3.0 {
                Larger
            } else {
                General
            }
        }
        (K::Clearing, "clearing") if minutes > 240.0 => Larger,
        (K::Broker | K::FuturesBroker, "trading") => {
            if scope_full && minutes >= 30.0 && customers >= 100_000.0 {
                Major
            } else if minutes >= 5.0 {
                Larger
            } else {
                General
            }
        }
        (K::Broker | K::FuturesBroker, "custody" | "margin") if minutes >= 30.0 => Larger,
        _ => General,
    }
}

#[derive(Clone, Copy, Default)]
struct Trade {
    index_move: f64,
    executed: f64,
    volume_share: f64,
    cancel_ratio: f64,
    cancelled: f64,
    price_move: f64,
    peak_ops: f64,
}

fn oracle_trading(t: Trade) -> Level {
    if t.index_move.abs() >= 3.0 || t.executed >= 5e9 {
        Extraordinary
    } else if t.index_move.abs() >= 1.0
        || t.executed >= 1e9
        || t.volume_share >= 0.2
        || (t.cancel_ratio >= 0.5 && t.cancelled >= 1e7)
    {
        Major
    } else if t.price_move.abs() >= 5.0 || t.peak_ops >= 300.0 || t.cancel_ratio >= 0.5 {
        Larger
    } else {
        General
    }
}

#[derive(Clone, Copy, Default)]
struct Loss {
    records: f64,
    record_type: &'static str,
    investors: f64,
    loss: f64,
    orders_delayed: f64,
}

fn oracle_investor(l: Loss) -> Level {
    let records_larger = match l.record_type {
        "credentials" => 50.0,
        "transactions" => 500.0,
        _ => 5000.0,
    };
    if l.records >= 1e6 || l.investors >= 1e6 || l.loss >= 1e8 {
        Extraordinary
    } else if l.records >= 1e5 || l.investors >= 1e5 || l.loss >= 1e7 {
        Major
    } else if l.investors >= 1e4 || l.loss >= 1e6 || l.records >= records_larger {
        Larger
    } else if l.records > 0.0 || l.investors > 0.0 || l.loss > 0.0 || l.orders_delayed > 0.0 {
        General
    } else {
        None
    }
}

/// Grades one report through a fresh engine and returns the opening alert's levels.
/// The instant a service incident started at `at(0)` has lasted `minutes` of the duration the
/// grid counts for `system`: trading minutes of the participant's default calendar on
/// trading and market-data systems (from Monday 09:30 Beijing, so they run over breaks and
/// nights), wall-clock minutes elsewhere.
fn graded_after(kind: ParticipantKind, system: &str, minutes: f64) -> regwatch::time::Timestamp {
    let ms = (minutes * 60_000.0).round() as i64;
    match system {
        "trading" | "market_data" => {
            let calendars = regwatch::calendar::Calendars::shared_builtin();
            let c = calendars.get(calendars.id(kind.default_calendar()).unwrap());
            c.after_trading_ms(at(0.0), ms).unwrap()
        }
        _ => at(0.0).plus_millis(ms),
    }
}

fn grade(kind: ParticipantKind, customers: u64, event: Value) -> (Level, Level) {
    let mut s = Sandbox::with(
        vec![participant("P", kind, customers)],
        quiet(),
        default_rules(),
    );
    s.send(event).expect("accepted");
    let alerts = s.take();
    assert_eq!(alerts.len(), 1, "exactly one opening alert: {alerts:?}");
    levels(&alerts[0])
}

/// One threshold of the service grid: the probe point at the threshold and what varies.
struct ServiceRow {
    name: &'static str,
    scope_full: bool,
    units: Option<f64>,
    minutes: f64,
    customers: u64,
    /// Which input is stepped below/above its threshold.
    vary: Vary,
    /// The contract's level at the threshold for these (kind, system) pairs.
    expect_at: (&'static [ParticipantKind], &'static [&'static str], Level),
}

#[derive(Clone, Copy)]
enum Vary {
    Minutes,
    Units,
    Customers,
}

fn service_rows() -> Vec<ServiceRow> {
    use ParticipantKind as K;
    const EXCHANGE_SYSTEMS: &[&str] = &["trading", "market_data"];
    const BROKERS: &[K] = &[K::Broker, K::FuturesBroker];
    let row = |name, scope_full, units, minutes, customers, vary, expect_at| ServiceRow {
        name,
        scope_full,
        units,
        minutes,
        customers,
        vary,
        expect_at,
    };
    vec![
        row(
            "exchange extraordinary: minutes",
            false,
            Some(20.0),
            20.0,
            0,
            Vary::Minutes,
            (&[K::Exchange], EXCHANGE_SYSTEMS, Extraordinary),
        ),
        row(
            "exchange extraordinary: units",
            false,
            Some(20.0),
            20.0,
            0,
            Vary::Units,
            (&[K::Exchange], EXCHANGE_SYSTEMS, Extraordinary),
        ),
        row(
            "exchange extraordinary: full scope, no share",
            true,
            Option::None,
            20.0,
            0,
            Vary::Minutes,
            (&[K::Exchange], EXCHANGE_SYSTEMS, Extraordinary),
        ),
        row(
            "exchange major: minutes",
            false,
            Some(10.0),
            10.0,
            0,
            Vary::Minutes,
            (&[K::Exchange], EXCHANGE_SYSTEMS, Major),
        ),
        row(
            "exchange major: units",
            false,
            Some(10.0),
            10.0,
            0,
            Vary::Units,
            (&[K::Exchange], EXCHANGE_SYSTEMS, Major),
        ),
        row(
            "exchange larger: units",
            false,
            Some(5.0),
            0.0,
            0,
            Vary::Units,
            (&[K::Exchange], EXCHANGE_SYSTEMS, Larger),
        ),
        row(
            "futures exchange extraordinary",
            false,
            Option::None,
            120.0,
            0,
            Vary::Minutes,
            (&[K::FuturesExchange], &["trading"], Extraordinary),
        ),
        row(
            "futures exchange major",
            false,
            Option::None,
            30.0,
            0,
            Vary::Minutes,
            (&[K::FuturesExchange], &["trading"], Major),
        ),
        row(
            "futures exchange larger",
            false,
            Option::None,
            3.0,
            0,
            Vary::Minutes,
            (&[K::FuturesExchange], &["trading"], Larger),
        ),
        // "> 240": at the threshold the rule does not hold yet.
        row(
            "clearing larger",
            false,
            Option::None,
            240.0,
            0,
            Vary::Minutes,
            (&[K::Clearing], &["clearing"], General),
        ),
        row(
            "broker major: minutes",
            true,
            Option::None,
            30.0,
            100_000,
            Vary::Minutes,
            (BROKERS, &["trading"], Major),
        ),
        row(
            "broker major: customers",
            true,
            Option::None,
            30.0,
            100_000,
            Vary::Customers,
            (BROKERS, &["trading"], Major),
        ),
        row(
            "broker major needs full scope",
            false,
            Option::None,
            30.0,
            100_000,
            Vary::Minutes,
            (BROKERS, &["trading"], Larger),
        ),
        row(
            "broker larger",
            false,
            Option::None,
            5.0,
            0,
            Vary::Minutes,
            (BROKERS, &["trading"], Larger),
        ),
        row(
            "broker custody/margin larger",
            false,
            Option::None,
            30.0,
            0,
            Vary::Minutes,
            (BROKERS, &["custody", "margin"], Larger),
        ),
    ]
}

#[test]
fn service_capability_rows_at_below_and_above_each_threshold() {
    let mut probes = 0;
    for row in service_rows() {
        for kind in KINDS {
            for system in SYSTEMS {
                for category in ["outage", "degradation", "intrusion"] {
                    for step in [-1.0, 0.0, 1.0] {
                        let (mut units, mut minutes, mut customers) =
                            (row.units, row.minutes, row.customers as f64);
                        match row.vary {
                            // One second, one hundredth of a percent, one customer.
                            Vary::Minutes => minutes += step / 60.0,
                            Vary::Units => units = units.map(|u| u + step * 0.01),
                            Vary::Customers => customers += step,
                        }
                        let minutes = minutes.max(0.0);
                        // Graded `minutes` after its start, in trading minutes of the
                        // participant's calendar on trading and market-data systems
                        // (CONTRACT.md s.2), in wall-clock minutes elsewhere.
                        let mut event = infosec(
                            0.0,
                            category,
                            json!({"system": system, "started_at": ts(0.0),
                                   "occurred_at": graded_after(kind, system, minutes).to_string(),
                                   "scope": if row.scope_full { "full" } else { "partial" }}),
                        );
                        if let Some(u) = units {
                            event["affected_units_pct"] = json!(u);
                        }
                        let want = oracle_service(
                            kind,
                            category,
                            system,
                            row.scope_full,
                            units,
                            minutes,
                            customers,
                        );
                        let (investor, market) = grade(kind, customers as u64, event);
                        assert_eq!(
                            market, want,
                            "{}: {kind:?} {system} {category} minutes={minutes} units={units:?} customers={customers}",
                            row.name
                        );
                        assert_eq!(investor, None, "{}: no investor figures", row.name);
                        let (kinds, systems, level) = row.expect_at;
                        if step == 0.0
                            && category != "intrusion"
                            && kinds.contains(&kind)
                            && systems.contains(&system)
                        {
                            assert_eq!(
                                want, level,
                                "{}: the contract's level at the threshold",
                                row.name
                            );
                        }
                        probes += 1;
                    }
                }
            }
        }
    }
    assert_eq!(probes, 15 * 7 * 6 * 3 * 3);
}

#[test]
fn clearing_rule_holds_just_above_four_hours() {
    let event = infosec(
        0.0,
        "outage",
        json!({"system": "clearing", "started_at": ts(-(240.0 + 1.0 / 60.0))}),
    );
    assert_eq!(grade(ParticipantKind::Clearing, 0, event).1, Larger);
}

/// One trading threshold: a base anomaly and the figure set at the threshold.
fn trading_rows() -> Vec<(&'static str, Trade, Level)> {
    let t = Trade::default();
    vec![
        (
            "index up 3%",
            Trade {
                index_move: 3.0,
                ..t
            },
            Extraordinary,
        ),
        (
            "index down 3%",
            Trade {
                index_move: -3.0,
                ..t
            },
            Extraordinary,
        ),
        ("executed 5 bn", Trade { executed: 5e9, ..t }, Extraordinary),
        (
            "index up 1%",
            Trade {
                index_move: 1.0,
                ..t
            },
            Major,
        ),
        (
            "index down 1%",
            Trade {
                index_move: -1.0,
                ..t
            },
            Major,
        ),
        ("executed 1 bn", Trade { executed: 1e9, ..t }, Major),
        (
            "volume share 20%",
            Trade {
                volume_share: 0.2,
                ..t
            },
            Major,
        ),
        (
            "spoofing: cancel ratio",
            Trade {
                cancel_ratio: 0.5,
                cancelled: 2e7,
                ..t
            },
            Major,
        ),
        (
            "spoofing: cancelled notional",
            Trade {
                cancel_ratio: 0.6,
                cancelled: 1e7,
                ..t
            },
            Major,
        ),
        (
            "price up 5%",
            Trade {
                price_move: 5.0,
                ..t
            },
            Larger,
        ),
        (
            "price down 5%",
            Trade {
                price_move: -5.0,
                ..t
            },
            Larger,
        ),
        (
            "300 orders/s",
            Trade {
                peak_ops: 300.0,
                ..t
            },
            Larger,
        ),
        (
            "cancel ratio 50%",
            Trade {
                cancel_ratio: 0.5,
                ..t
            },
            Larger,
        ),
    ]
}

/// Steps the figure that sits exactly at a threshold of `row` by `step` units of `eps`.
fn step_trade(name: &str, mut t: Trade, step: f64) -> Trade {
    let away = |v: f64, eps: f64| v + step * eps * v.signum();
    if name.starts_with("index") {
        t.index_move = away(t.index_move, 0.01);
    } else if name.starts_with("executed") {
        t.executed = away(t.executed, 1.0);
    } else if name.starts_with("volume") {
        t.volume_share = away(t.volume_share, 0.001);
    } else if name == "spoofing: cancelled notional" {
        t.cancelled = away(t.cancelled, 1.0);
    } else if name.starts_with("spoofing") || name.starts_with("cancel") {
        t.cancel_ratio = away(t.cancel_ratio, 0.001);
    } else if name.starts_with("price") {
        t.price_move = away(t.price_move, 0.01);
    } else {
        t.peak_ops = away(t.peak_ops, 0.5);
    }
    t
}

#[test]
fn trading_anomaly_rows_at_below_and_above_each_threshold() {
    for (name, at_threshold, level) in trading_rows() {
        assert_eq!(
            oracle_trading(at_threshold),
            level,
            "{name}: the contract's level"
        );
        for kind in KINDS {
            for step in [-1.0, 0.0, 1.0] {
                let t = step_trade(name, at_threshold, step);
                let event = trading(
                    0.0,
                    "runaway_algo",
                    json!({"index_move_pct": t.index_move, "executed_notional_cny": t.executed,
                           "volume_share": t.volume_share, "cancel_ratio": t.cancel_ratio,
                           "cancelled_notional_cny": t.cancelled, "price_move_pct": t.price_move,
                           "peak_orders_per_sec": t.peak_ops}),
                );
                let (investor, market) = grade(kind, 1_000_000, event);
                assert_eq!(market, oracle_trading(t), "{name}: {kind:?} step {step}");
                assert_eq!(investor, None, "{name}: no investor figures");
                if step < 0.0 {
                    assert!(market < level, "{name}: just below the threshold is lower");
                }
            }
        }
    }
}

fn investor_rows() -> Vec<(&'static str, Loss, Level)> {
    let l = Loss {
        record_type: "personal",
        ..Loss::default()
    };
    vec![
        ("records 1m", Loss { records: 1e6, ..l }, Extraordinary),
        (
            "investors 1m",
            Loss {
                investors: 1e6,
                ..l
            },
            Extraordinary,
        ),
        ("loss 100m", Loss { loss: 1e8, ..l }, Extraordinary),
        ("records 100k", Loss { records: 1e5, ..l }, Major),
        (
            "investors 100k",
            Loss {
                investors: 1e5,
                ..l
            },
            Major,
        ),
        ("loss 10m", Loss { loss: 1e7, ..l }, Major),
        (
            "investors 10k",
            Loss {
                investors: 1e4,
                ..l
            },
            Larger,
        ),
        ("loss 1m", Loss { loss: 1e6, ..l }, Larger),
        (
            "records 50 credentials",
            Loss {
                records: 50.0,
                record_type: "credentials",
                ..l
            },
            Larger,
        ),
        (
            "records 500 transactions",
            Loss {
                records: 500.0,
                record_type: "transactions",
                ..l
            },
            Larger,
        ),
        (
            "records 5000 personal",
            Loss {
                records: 5000.0,
                ..l
            },
            Larger,
        ),
        (
            "records 5000 other",
            Loss {
                records: 5000.0,
                record_type: "other",
                ..l
            },
            Larger,
        ),
        (
            "orders delayed",
            Loss {
                orders_delayed: 17.0,
                ..l
            },
            General,
        ),
    ]
}

#[test]
fn investor_loss_rows_at_below_and_above_each_threshold() {
    for (name, at_threshold, level) in investor_rows() {
        assert_eq!(
            oracle_investor(at_threshold),
            level,
            "{name}: the contract's level"
        );
        for kind in KINDS {
            for step in [-1.0, 0.0, 1.0] {
                let mut l = at_threshold;
                // One record, one investor, one yuan, one order.
                let bump = |v: f64| if v > 0.0 { v + step } else { v };
                l.records = bump(l.records);
                l.investors = bump(l.investors);
                l.loss = bump(l.loss);
                l.orders_delayed = bump(l.orders_delayed);
                let figures = json!({"records_exposed": l.records, "record_type": l.record_type,
                                     "affected_investors": l.investors, "loss_cny": l.loss,
                                     "orders_delayed": l.orders_delayed});
                for event in [
                    infosec(0.0, "data_leak", figures.clone()),
                    trading(0.0, "erroneous_order", figures.clone()),
                ] {
                    let is_trading = event["kind"] == "trading";
                    let (investor, market) = grade(kind, 1_000_000, event);
                    assert_eq!(investor, oracle_investor(l), "{name}: {kind:?} step {step}");
                    // A data leak carries no market-order figures; any trading anomaly does.
                    assert_eq!(market, if is_trading { General } else { None });
                    if step < 0.0 && level > General {
                        assert!(
                            investor < level,
                            "{name}: just below the threshold is lower"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_reported_incident_is_at_least_general_overall() {
    let mut s = Sandbox::broker();
    s.send(infosec(0.0, "malware", json!({}))).unwrap();
    let alerts = s.take();
    assert_eq!(levels(&alerts[0]), (None, None));
    assert_eq!(alerts[0].level, General);
}

#[test]
fn each_default_rule_has_an_id_and_a_citation() {
    let rules = default_rules();
    assert_eq!(rules.len(), 30);
    for axis in regwatch::score::Axis::ALL {
        for r in rules.of(axis) {
            assert!(
                !r.id.is_empty() && r.cite.len() > 10,
                "rule {} cites its source",
                r.id
            );
        }
    }
}
