//! Configuration text: `Config::from_toml` on arbitrary UTF-8, without environment
//! overrides. A configuration that loads loads again the same way, its registry and
//! calendars check out again, and `regwatch acls` can print its matrix.
//!
//! `from_toml` reads the files a configuration names (`rules.path`, `rules.calendars`,
//! secrets' `file`, certificates and token files). Inputs that name any file but the shipped
//! `config/rules.toml` and `config/calendars.toml` are skipped: a fuzzer that finds
//! `/dev/zero` or a FIFO would report the operator's own choice of file as a hang, which is no
//! bug of the parser. Relative names resolve against the repository's `config/`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regwatch::acls;
use regwatch::config::{check_calendars, Config};
use regwatch::registry::Registry;
use toml::de::{DeTable, DeValue};

/// The directory relative paths resolve against: the repository's `config/`.
fn base() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
}

/// File names a fuzzed configuration may name (relative to [`base`]).
const FILES: [&str; 2] = ["rules.toml", "calendars.toml"];

/// Whether the document names only files of [`FILES`]. A file key is `path`, `calendars` or
/// any key ending in `file` (`file`, `cert_file`, `ca_file`, ...: every key a configuration
/// names a file with), compared ignoring case and dotted prefixes.
fn names_only_known_files(value: &DeValue<'_>) -> bool {
    match value {
        DeValue::Table(t) => t.iter().all(|(k, v)| {
            let k = k.get_ref();
            let last = k.rsplit('.').next().unwrap_or(k).to_ascii_lowercase();
            let file_key = last == "path" || last == "calendars" || last.ends_with("file");
            let v = v.get_ref();
            let known = match v {
                DeValue::String(s) => FILES.contains(&s.as_ref()),
                // Numbers, booleans and dates become names like "1" or "true": absent files.
                DeValue::Integer(_)
                | DeValue::Float(_)
                | DeValue::Boolean(_)
                | DeValue::Datetime(_) => true,
                DeValue::Array(_) | DeValue::Table(_) => false,
            };
            (!file_key || known) && names_only_known_files(v)
        }),
        DeValue::Array(a) => a.iter().all(|v| names_only_known_files(v.get_ref())),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `config` parses with this same call of the same toml crate: text it cannot parse
    // names no file.
    if let Ok(doc) = DeTable::parse(text) {
        if !names_only_known_files(&DeValue::Table(doc.into_inner())) {
            return;
        }
    }
    let Ok(cfg) = Config::from_toml(text, Some(base()), false) else {
        return;
    };
    // Validation is a function of the text.
    let again = Config::from_toml(text, Some(base()), false).expect("a valid config loads twice");
    assert_eq!(again.digest, cfg.digest);
    assert_eq!(again.engine, cfg.engine);
    assert_eq!(again.registry.len(), cfg.registry.len());
    // The registry and calendars it holds pass their own checks again.
    let participants: Vec<_> = cfg.registry.iter().map(|(_, p)| p.clone()).collect();
    Registry::new(participants).expect("a validated registry rebuilds");
    check_calendars(&cfg.registry, cfg.rules.calendars()).expect("calendars check again");
    for (i, p) in cfg.registry.iter() {
        assert_eq!(cfg.registry.lookup(&p.id), Some(i));
    }
    // `regwatch acls` on it.
    let lines = acls::commands(&cfg, &acls::Options::for_config(&cfg));
    assert!(!lines.is_empty());
});
