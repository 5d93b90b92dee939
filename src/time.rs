//! Engine time: a UTC instant in milliseconds, parsed from and written as RFC 3339.
//!
//! The scoring engine never reads a system clock. Its clock is a [`Timestamp`] that callers
//! advance: by event time in `replay`, by wall time in the daemon. Parsing is allocation-free
//! and strict (a calendar date that does not exist is rejected); formatting always writes UTC
//! with millisecond precision, so the same instant always gives the same text.

use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

pub const MS_PER_MINUTE: i64 = 60_000;

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Minutes from `earlier` to `self` (negative when `earlier` is later).
    pub fn minutes_since(self, earlier: Timestamp) -> f64 {
        (self.0.saturating_sub(earlier.0)) as f64 / MS_PER_MINUTE as f64
    }

    /// Parses an RFC 3339 `date-time` (`2026-03-02T09:30:00.250+08:00`). The offset is
    /// required; fractions beyond milliseconds are truncated.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        Timestamp::parse_rfc3339_bytes(s.as_bytes())
    }

    /// [`Timestamp::parse_rfc3339`] over raw bytes (anything not ASCII is refused).
    pub fn parse_rfc3339_bytes(b: &[u8]) -> Option<Timestamp> {
        if b.len() < 20 {
            return None;
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        let second = digits(b, 17, 2)?;
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // A leap second (:60) is read as the last millisecond before the next minute.
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    millis = millis * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            for _ in n..3 {
                millis *= 10;
            }
        }
        let offset_minutes = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = digits(b, i + 1, 2)?;
                let om = digits(b, i + 4, 2)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let m = oh * 60 + om;
                if *sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return None,
        };
        let (second, millis) = if second == 60 {
            (59, 999)
        } else {
            (second, millis)
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Some(Timestamp(secs * 1000 + millis))
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` into `out` without allocating beyond `out`'s growth.
    pub fn write_rfc3339(self, out: &mut impl fmt::Write) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            // The common case without the formatting machinery (it was a tenth of an
            // alert's CPU): fixed-width digits into a stack buffer.
            let mut b = *b"0000-00-00T00:00:00.000Z";
            let mut put = |at: usize, width: usize, mut v: i64| {
                for i in (at..at + width).rev() {
                    b[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, 4, y);
            put(5, 2, m);
            put(8, 2, d);
            put(11, 2, sod / 3600);
            put(14, 2, (sod / 60) % 60);
            put(17, 2, sod % 60);
            put(20, 3, ms);
            return out.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?);
        }
        write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// The wall clock, for the daemon (the only place regwatch reads the system time; the
/// engine is always handed its time).
pub fn wall_now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp(ms)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_rfc3339(f)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From RFC 3339 text, as written (regwatch's own records, read back).
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
pub(crate) const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<&str>) {
        let got = Timestamp::parse_rfc3339(input).map(|t| t.to_string());
        assert_eq!(got.as_deref(), expect, "input {input:?}");
    }

    #[test]
    fn parses_and_normalises_to_utc() {
        check("2026-03-02T09:30:00Z", Some("2026-03-02T09:30:00.000Z"));
        check(
            "2026-03-02T09:30:00+08:00",
            Some("2026-03-02T01:30:00.000Z"),
        );
        check(
            "2026-03-02t09:30:00.5-01:30",
            Some("2026-03-02T11:00:00.500Z"),
        );
        check(
            "2026-03-02 09:30:00.123456z",
            Some("2026-03-02T09:30:00.123Z"),
        );
        check("2024-02-29T00:00:00Z", Some("2024-02-29T00:00:00.000Z"));
        check("1969-12-31T23:59:59.999Z", Some("1969-12-31T23:59:59.999Z"));
        check("2016-12-31T23:59:60Z", Some("2016-12-31T23:59:59.999Z"));
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-03-02",
            "2026-03-02T09:30:00",
            "2026-03-02T09:30:00+0800",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-03-02T24:00:00Z",
            "2026-03-02T09:60:00Z",
            "2026-03-02T09:30:00.Z",
            "2026-03-02T09:30:00ZZ",
            "2026-03-02T09:30:00+24:00",
            "２026-03-02T09:30:00Z",
            "1772443800",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn formatting_round_trips_and_matches_the_general_path() {
        // Years 0..=9999 take the fixed-width path; every instant printed parses back to
        // itself and reads as the formatting machinery would print it.
        let mut ms = -62_167_219_200_000i64; // 0000-01-01T00:00:00.000Z
        while ms < 253_402_300_800_000 {
            let t = Timestamp(ms);
            let text = t.to_string();
            assert_eq!(Timestamp::parse_rfc3339(&text), Some(t), "{text}");
            let secs = ms.div_euclid(1000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            let general = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60,
                ms.rem_euclid(1000)
            );
            assert_eq!(text, general);
            ms += 7_919_999_937; // about three months, every field moving
        }
        // Beyond the four digits the general path still prints something.
        assert!(!Timestamp(i64::MAX / 2).to_string().is_empty());
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for days in (-150_000..150_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
