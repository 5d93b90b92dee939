//! Request signing: HMAC-SHA256, once per active key, in two versions.
//!
//! Every webhook request carries
//!
//! ```text
//! X-Regwatch-Timestamp: 1795766400                     (Unix seconds when the attempt was made)
//! Idempotency-Key: 8c7a1f2a238287480b416c18c50ba243    (the alert id)
//! X-Regwatch-Signature-V2: 2026-11=9f2c…,2026-05=41ab…  (<key id>=<hex HMAC>, one per key)
//! X-Regwatch-Signature: 2026-11=…                       (v1, deprecated)
//! ```
//!
//! - v2 signs `v2.<timestamp>.<idempotency key>.<body>`: a receiver that deduplicates on the
//!   idempotency key can trust it (with v1, a man in the middle could replay a body under a
//!   fresh key and have it processed twice, or reuse a key to have a new alert dropped).
//! - v1 signs `<timestamp>.<body>`. It is still sent so that receivers verifying it keep
//!   working; they move by verifying `X-Regwatch-Signature-V2` instead (same keys, the string
//!   above), after which v1 will be dropped.
//!
//! A receiver knows one or more `(key id, secret)` pairs. It accepts a request when some
//! entry names a key it knows and that entry's HMAC matches (compared in constant time), and
//! when the timestamp is within its tolerance of its own clock (replay protection). Rotation:
//! add the new key to regwatch's `signing_keys` (it then signs with both), move receivers to
//! it, then drop the old key. [`verify`] is the reference verifier the tests use.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SigningKey;

pub const TIMESTAMP_HEADER: &str = "x-regwatch-timestamp";
pub const SIGNATURE_HEADER: &str = "x-regwatch-signature";
pub const SIGNATURE_V2_HEADER: &str = "x-regwatch-signature-v2";
/// The Kafka header carrying a record's authentication (`kafka.record_key`).
pub const RECORD_MAC_HEADER: &str = "regwatch.mac";

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 under `secret` (HMAC takes keys of any length: this cannot fail).
fn keyed(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length")
}

/// A finished tag as the hex text of a header.
fn tag_hex(m: HmacSha256) -> String {
    hex(&m.finalize().into_bytes())
}

/// Whether the hex text `mac` is the tag of `m` (constant-time).
fn tag_matches(m: HmacSha256, mac: &str) -> bool {
    unhex(mac).is_some_and(|tag| m.verify_slice(&tag).is_ok())
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut m = keyed(secret);
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn mac_v2(secret: &[u8], timestamp: i64, idempotency_key: &str, body: &[u8]) -> HmacSha256 {
    let mut m = keyed(secret);
    m.update(b"v2.");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(idempotency_key.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn record_tag(secret: &[u8], topic: &str, payload: &[u8]) -> HmacSha256 {
    let mut m = keyed(secret);
    m.update(b"regwatch.record.v1\0");
    m.update(topic.as_bytes());
    m.update(b"\0");
    m.update(payload);
    m
}

/// The `regwatch.mac` header value of a record regwatch produces to `topic`.
pub fn record_mac(secret: &[u8], topic: &str, payload: &[u8]) -> String {
    tag_hex(record_tag(secret, topic, payload))
}

/// Whether `mac` (a `regwatch.mac` header) authenticates `payload` on `topic`
/// (constant-time).
pub fn record_authentic(secret: &[u8], topic: &str, payload: &[u8], mac: &str) -> bool {
    tag_matches(record_tag(secret, topic, payload), mac)
}

/// The `regwatch.mac` header value of a state record: it binds the record's key (which
/// incident or participant of which partition it is) and its value, or its being a
/// tombstone, so neither can be moved or forged without the key.
pub fn state_mac(secret: &[u8], topic: &str, key: &str, value: Option<&[u8]>) -> String {
    tag_hex(state_tag(secret, topic, key, value))
}

/// Whether `mac` authenticates the state record (`key`, `value`) on `topic` (constant-time).
pub fn state_authentic(
    secret: &[u8],
    topic: &str,
    key: &str,
    value: Option<&[u8]>,
    mac: &str,
) -> bool {
    tag_matches(state_tag(secret, topic, key, value), mac)
}

fn state_tag(secret: &[u8], topic: &str, key: &str, value: Option<&[u8]>) -> HmacSha256 {
    let mut m = keyed(secret);
    m.update(b"regwatch.state.v1\0");
    m.update(topic.as_bytes());
    m.update(b"\0");
    m.update(&(key.len() as u64).to_be_bytes());
    m.update(key.as_bytes());
    match value {
        Some(v) => {
            m.update(b"\x01");
            m.update(v);
        }
        None => m.update(b"\x00"),
    }
    m
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `X-Regwatch-Signature` value for `body` sent at `timestamp` (Unix seconds); `None`
/// when the receiver has no signing key.
pub fn sign(keys: &[SigningKey], timestamp: i64, body: &[u8]) -> Option<String> {
    sign_entries(keys, |secret| mac(secret, timestamp, body))
}

/// `<key id>=<hex HMAC>` for each key, comma-separated; `None` without keys.
fn sign_entries(keys: &[SigningKey], mac_of: impl Fn(&[u8]) -> HmacSha256) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let entries: Vec<String> = keys
        .iter()
        .map(|k| {
            let tag = mac_of(k.secret.expose().as_bytes()).finalize();
            format!("{}={}", k.id, hex(&tag.into_bytes()))
        })
        .collect();
    Some(entries.join(","))
}

/// The `X-Regwatch-Signature-V2` value for `body` sent at `timestamp` (Unix seconds) under
/// `idempotency_key`; `None` when the receiver has no signing key.
pub fn sign_v2(
    keys: &[SigningKey],
    timestamp: i64,
    idempotency_key: &str,
    body: &[u8],
) -> Option<String> {
    sign_entries(keys, |secret| {
        mac_v2(secret, timestamp, idempotency_key, body)
    })
}

/// Verifies a v2 signature as a receiver would (see [`verify`] for the arguments); the
/// idempotency key is the request's `Idempotency-Key` header.
pub fn verify_v2(
    known: &[(&str, &[u8])],
    timestamp: i64,
    idempotency_key: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    check_entries(known, timestamp, signature, now, tolerance_s, |secret| {
        mac_v2(secret, timestamp, idempotency_key, body)
    })
}

fn check_entries(
    known: &[(&str, &[u8])],
    timestamp: i64,
    signature: &str,
    now: i64,
    tolerance_s: i64,
    mac_of: impl Fn(&[u8]) -> HmacSha256,
) -> Result<(), VerifyError> {
    let skew = (now - timestamp).abs();
    if skew > tolerance_s {
        return Err(VerifyError::Stale(skew));
    }
    let mut matched_key = false;
    for entry in signature.split(',') {
        let (id, tag) = entry.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        let Some((_, secret)) = known.iter().find(|(k, _)| *k == id) else {
            continue;
        };
        matched_key = true;
        let tag = unhex(tag).ok_or(VerifyError::Malformed)?;
        if mac_of(secret).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if matched_key {
        VerifyError::Mismatch
    } else {
        VerifyError::UnknownKey
    })
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no signature entry names a key this receiver knows")]
    UnknownKey,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    #[error("malformed signature header")]
    Malformed,
}

/// Verifies a request as a receiver would: `known` are the receiver's `(key id, secret)`
/// pairs, `now` and `tolerance_s` in seconds.
pub fn verify(
    known: &[(&str, &[u8])],
    timestamp: i64,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    check_entries(known, timestamp, signature, now, tolerance_s, |secret| {
        mac(secret, timestamp, body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn key(id: &str, secret: &str) -> SigningKey {
        SigningKey {
            id: id.into(),
            secret: Secret::new(secret),
        }
    }

    #[test]
    fn known_vector() {
        // The framing, "<timestamp>.<body>", against the README's Python recipe:
        // hmac.new(b"Jefe", b"1700000000" + b"." + b"{}", hashlib.sha256).hexdigest()
        let keys = [key("k1", "Jefe")];
        let sig = sign(&keys, 1_700_000_000, b"{}").unwrap();
        assert_eq!(
            sig,
            "k1=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
        // And the primitive itself against RFC 4231 case 2.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rotation_and_tampering() {
        let old = "old-secret-0123456789";
        let new = "new-secret-9876543210";
        let sig = sign(&[key("2026-11", new), key("2026-05", old)], 100, b"body").unwrap();
        // A receiver that knows only the new key, only the old one, or both, accepts.
        for known in [
            vec![("2026-11", new.as_bytes())],
            vec![("2026-05", old.as_bytes())],
            vec![("2026-05", old.as_bytes()), ("2026-11", new.as_bytes())],
        ] {
            assert_eq!(verify(&known, 100, &sig, b"body", 130, 300), Ok(()));
        }
        let known = [("2026-11", new.as_bytes())];
        assert_eq!(
            verify(&known, 100, &sig, b"bodY", 100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&known, 101, &sig, b"body", 100, 300),
            Err(VerifyError::Mismatch),
            "the timestamp is signed"
        );
        assert_eq!(
            verify(&[("2025-01", b"x")], 100, &sig, b"body", 100, 300),
            Err(VerifyError::UnknownKey)
        );
        assert_eq!(
            verify(&known, 100, &sig, b"body", 1000, 300),
            Err(VerifyError::Stale(900))
        );
        assert_eq!(sign(&[], 1, b"x"), None);
    }

    #[test]
    fn v2_signs_the_idempotency_key_too() {
        // hmac.new(b"Jefe", b"v2.1700000000.abc.{}", hashlib.sha256).hexdigest()
        let keys = [key("k1", "Jefe")];
        let sig = sign_v2(&keys, 1_700_000_000, "abc", b"{}").unwrap();
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"v2.1700000000.abc.{}");
        assert_eq!(sig, format!("k1={}", hex(&m.finalize().into_bytes())));
        let known = [("k1", b"Jefe".as_slice())];
        assert_eq!(
            verify_v2(
                &known,
                1_700_000_000,
                "abc",
                &sig,
                b"{}",
                1_700_000_010,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify_v2(
                &known,
                1_700_000_000,
                "abd",
                &sig,
                b"{}",
                1_700_000_010,
                300
            ),
            Err(VerifyError::Mismatch),
            "another idempotency key"
        );
        assert_eq!(
            verify_v2(
                &known,
                1_700_000_000,
                "abc",
                &sig,
                b"{ }",
                1_700_000_010,
                300
            ),
            Err(VerifyError::Mismatch)
        );
        // A v1 signature is no v2 signature (the versions are domain-separated).
        let v1 = sign(&keys, 1_700_000_000, b"{}").unwrap();
        assert_eq!(
            verify_v2(&known, 1_700_000_000, "", &v1, b"{}", 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(sign_v2(&[], 1, "a", b"x"), None);
    }

    #[test]
    fn a_state_mac_binds_topic_key_value_and_tombstones() {
        let k = b"an-internal-key-0123456789";
        let mac = state_mac(k, "st", "events|0|i|P1|A", Some(b"{}"));
        assert!(state_authentic(
            k,
            "st",
            "events|0|i|P1|A",
            Some(b"{}"),
            &mac
        ));
        // Moved to another key, another topic, another value, made a tombstone, or checked
        // with another secret: refused.
        assert!(!state_authentic(
            k,
            "st",
            "events|1|i|P1|A",
            Some(b"{}"),
            &mac
        ));
        assert!(!state_authentic(
            k,
            "st2",
            "events|0|i|P1|A",
            Some(b"{}"),
            &mac
        ));
        assert!(!state_authentic(
            k,
            "st",
            "events|0|i|P1|A",
            Some(b"{ }"),
            &mac
        ));
        assert!(!state_authentic(k, "st", "events|0|i|P1|A", None, &mac));
        assert!(!state_authentic(
            b"other-key-0123456789",
            "st",
            "events|0|i|P1|A",
            Some(b"{}"),
            &mac
        ));
        assert!(!state_authentic(
            k,
            "st",
            "events|0|i|P1|A",
            Some(b"{}"),
            "zz"
        ));
        let tomb = state_mac(k, "st", "events|0|i|P1|A", None);
        assert!(state_authentic(k, "st", "events|0|i|P1|A", None, &tomb));
        assert!(!state_authentic(
            k,
            "st",
            "events|0|i|P1|A",
            Some(b""),
            &tomb
        ));
        // The key's length is framed: a key/value boundary cannot be shifted.
        assert_ne!(
            state_mac(k, "st", "ab", Some(b"c")),
            state_mac(k, "st", "a", Some(b"bc"))
        );
    }
}
