//! A strict, allocation-free JSON reader specialised for one flat object of scalars.
//!
//! Why not serde_json: the event format is one object whose known fields are scalars, and the
//! hot path must cost little more than merely skipping the bytes. This reader walks the
//! message once: strings are scanned eight bytes at a time and borrowed unless escaped, common
//! numbers are converted exactly without `str::parse`, unknown values are skipped without
//! being built.
//!
//! Strictness follows RFC 8259 and serde_json: UTF-8 only (the whole message is checked once,
//! with SIMD), no trailing commas, no leading zeros, no control characters in strings, valid
//! escapes only, nesting at most 127 deep.
//! Values being skipped get serde_json's skipping rules for the rest (number grammar only,
//! `\u` hex digits only); values being kept must also decode (no lone surrogate, finite
//! numbers).

use std::borrow::Cow;

/// Any syntax error. The caller turns it into `Reject::NotJson`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

type Result<T> = std::result::Result<T, Malformed>;

/// A string value: the text between the quotes, borrowed from the message, or the decoded
/// text when it had escapes.
#[derive(Clone, Debug, PartialEq)]
pub enum Text<'a> {
    Raw(&'a str),
    Owned(String),
}

impl<'a> Text<'a> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Raw(t) => t.as_bytes(),
            Text::Owned(s) => s.as_bytes(),
        }
    }

    /// The text (the message was checked to be UTF-8 once, in [`Reader::new`]).
    pub fn into_str(self) -> Result<Cow<'a, str>> {
        Ok(match self {
            Text::Raw(t) => Cow::Borrowed(t),
            Text::Owned(s) => Cow::Owned(s),
        })
    }
}

/// One value as read, without judging its type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(Text<'a>),
    Unsigned(u64),
    Negative(i64),
    Float(f64),
    Null,
    Bool,
    /// An array or object, skipped.
    Compound,
}

/// Deepest nesting accepted, as serde_json's (a recursive reader needs a bound).
const MAX_DEPTH: usize = 127;

pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the whole message is UTF-8 once (SIMD; pure ASCII, the common case, is the
    /// fast path), so every string slice later is valid text.
    pub fn new(bytes: &'a [u8]) -> Result<Reader<'a>> {
        simdutf8::basic::from_utf8(bytes).map_err(|_| Malformed)?;
        Ok(Reader { b: bytes, pos: 0 })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `c` after optional white space.
    pub fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// True when only white space is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.b.len()
    }

    /// Reads a string (after optional white space, at its opening quote).
    pub fn string(&mut self) -> Result<Text<'a>> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = self.find_special(start);
        match self.b.get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                let raw = &self.b[start..end];
                // SAFETY: `Reader::new` checked that the whole message is UTF-8, and `raw`
                // starts right after an ASCII `"` and ends right before one: both ends are
                // character boundaries, so `raw` is UTF-8 too (the decoder's fuzz target and
                // `raw_text_is_the_checked_message_text` cover it).
                Ok(Text::Raw(unsafe { std::str::from_utf8_unchecked(raw) }))
            }
            Some(b'\\') => self.escaped_string(start, end).map(Text::Owned),
            _ => Err(Malformed),
        }
    }

    /// Slow path of [`Reader::string`]: decodes escapes into an owned, UTF-8-checked string.
    fn escaped_string(&mut self, start: usize, mut at: usize) -> Result<String> {
        let mut out = Vec::with_capacity(at - start + 16);
        out.extend_from_slice(&self.b[start..at]);
        loop {
            match self.b.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return String::from_utf8(out).map_err(|_| Malformed);
                }
                Some(b'\\') => {
                    at = self.escape(at + 1, Some(&mut out))?;
                    let next = self.find_special(at);
                    out.extend_from_slice(&self.b[at..next]);
                    at = next;
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// Reads the escape after a backslash at `at`; pushes its character to `out` when given.
    /// Returns the position after the escape.
    fn escape(&self, at: usize, out: Option<&mut Vec<u8>>) -> Result<usize> {
        let c = *self.b.get(at).ok_or(Malformed)?;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(at + 1)?;
                let Some(out) = out else {
                    return Ok(at + 5);
                };
                return self.unicode(unit, at + 5, out);
            }
            _ => return Err(Malformed),
        };
        if let Some(out) = out {
            push_char(out, simple);
        }
        Ok(at + 1)
    }

    /// Completes a `\uXXXX` escape (and its low surrogate, if it is a high one).
    fn unicode(&self, unit: u32, after: usize, out: &mut Vec<u8>) -> Result<usize> {
        match unit {
            0xD800..=0xDBFF => {
                if self.b.get(after) != Some(&b'\\') || self.b.get(after + 1) != Some(&b'u') {
                    return Err(Malformed);
                }
                let low = self.hex4(after + 2)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(Malformed);
                }
                let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                push_char(out, char::from_u32(c).ok_or(Malformed)?);
                Ok(after + 6)
            }
            0xDC00..=0xDFFF => Err(Malformed),
            _ => {
                push_char(out, char::from_u32(unit).ok_or(Malformed)?);
                Ok(after)
            }
        }
    }

    fn hex4(&self, at: usize) -> Result<u32> {
        let digits = self.b.get(at..at + 4).ok_or(Malformed)?;
        digits.iter().try_fold(0u32, |acc, d| {
            let v = (*d as char).to_digit(16).ok_or(Malformed)?;
            Ok(acc * 16 + v)
        })
    }

    /// Position of the first `"`, `\\` or control character at or after `i` (or the end):
    /// sixteen bytes at a time with SSE2 on x86_64, then eight at a time.
    fn find_special(&self, mut i: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{
                _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
                _mm_set1_epi8,
            };
            let b = self.b;
            // SAFETY: SSE2 is part of every x86_64 CPU (the target's baseline), so these
            // intrinsics are always available; each load reads the 16 bytes `b[i..i + 16]`,
            // inside `b` by the loop condition, unaligned loads being allowed by `loadu`.
            // Covered by the unit tests below and the decoder's fuzz target.
            unsafe {
                let quote = _mm_set1_epi8(b'"' as i8);
                let backslash = _mm_set1_epi8(b'\\' as i8);
                let control = _mm_set1_epi8(0x1f);
                while i + 16 <= b.len() {
                    let v = _mm_loadu_si128(b.as_ptr().add(i).cast());
                    // A byte <= 0x1f (unsigned) is its own minimum with 0x1f.
                    let low = _mm_cmpeq_epi8(_mm_min_epu8(v, control), v);
                    let hits = _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                        low,
                    );
                    let mask = _mm_movemask_epi8(hits) as u32;
                    if mask != 0 {
                        return i + mask.trailing_zeros() as usize;
                    }
                    i += 16;
                }
            }
        }
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let b = self.b;
        while i + 8 <= b.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[i..i + 8]);
            let v = u64::from_le_bytes(word);
            let quote = v ^ (LO * u64::from(b'"'));
            let backslash = v ^ (LO * u64::from(b'\\'));
            let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
            // Bytes below 0x20 (bytes >= 0x80 are excluded by `!v`).
            let control = v.wrapping_sub(LO * 0x20) & !v & HI;
            let hits = zero(quote) | zero(backslash) | control;
            if hits != 0 {
                return i + (hits.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
            i += 1;
        }
        i
    }

    /// Skips a string without decoding it (escapes are checked, not applied).
    fn skip_string(&mut self) -> Result<()> {
        self.expect(b'"')?;
        let mut at = self.find_special(self.pos);
        loop {
            match self.b.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let next = self.escape(at + 1, None)?;
                    at = self.find_special(next);
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// Reads a value to keep: scalars are converted, arrays and objects skipped. `depth` is
    /// the number of arrays and objects around the value.
    pub fn value(&mut self, depth: usize) -> Result<Value<'a>> {
        self.skip_ws();
        match self.peek().ok_or(Malformed)? {
            b'"' => self.string().map(Value::Str),
            b'{' | b'[' => self.skip_value(depth).map(|()| Value::Compound),
            b't' => self.literal(b"true").map(|()| Value::Bool),
            b'f' => self.literal(b"false").map(|()| Value::Bool),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    /// Skips any value; `depth` is the number of arrays and objects around it.
    pub fn skip_value(&mut self, depth: usize) -> Result<()> {
        self.skip_ws();
        match self.peek().ok_or(Malformed)? {
            b'"' => self.skip_string(),
            open @ (b'{' | b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Malformed);
                }
                self.pos += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.skip_ws();
                        self.skip_string()?;
                        self.expect(b':')?;
                    }
                    self.skip_value(depth + 1)?;
                    if self.eat(b',') {
                        continue;
                    }
                    return self.expect(close);
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.scan_number().map(|_| ()),
            _ => Err(Malformed),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Checks the number grammar; returns its shape for conversion.
    fn scan_number(&mut self) -> Result<NumberShape> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let mut mantissa: u64 = 0;
        let mut overflow = false;
        let mut push = |d: u8| {
            // Past u64 the mantissa is no longer exact: the slow path takes over.
            match mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
            {
                Some(m) => mantissa = m,
                None => overflow = true,
            }
        };
        match b.get(i) {
            Some(b'0') => {
                push(b'0');
                i += 1;
                if matches!(b.get(i), Some(b'0'..=b'9')) {
                    return Err(Malformed);
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(d @ b'0'..=b'9') = b.get(i) {
                    push(*d);
                    i += 1;
                }
            }
            _ => return Err(Malformed),
        }
        let mut fraction_digits = 0usize;
        let mut is_float = false;
        if b.get(i) == Some(&b'.') {
            is_float = true;
            i += 1;
            let before = i;
            while let Some(d @ b'0'..=b'9') = b.get(i) {
                push(*d);
                i += 1;
            }
            fraction_digits = i - before;
            if fraction_digits == 0 {
                return Err(Malformed);
            }
        }
        let mut exponent: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            is_float = true;
            i += 1;
            let sign = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    -1
                }
                Some(b'+') => {
                    i += 1;
                    1
                }
                _ => 1,
            };
            let before = i;
            while let Some(d @ b'0'..=b'9') = b.get(i) {
                exponent = (exponent * 10 + i64::from(d - b'0')).min(1_000_000);
                i += 1;
            }
            if i == before {
                return Err(Malformed);
            }
            exponent *= sign;
        }
        self.pos = i;
        Ok(NumberShape {
            start,
            negative,
            mantissa,
            exact: !overflow,
            is_float,
            exponent10: exponent - fraction_digits as i64,
        })
    }

    fn number(&mut self) -> Result<Value<'a>> {
        let n = self.scan_number()?;
        if !n.is_float && n.exact {
            return Ok(match (n.negative, n.mantissa) {
                (false, m) | (true, m @ 0) => Value::Unsigned(m),
                (true, m) if m <= i64::MAX as u64 => Value::Negative(-(m as i64)),
                _ => Value::Float(-(n.mantissa as f64)),
            });
        }
        let fast = n.exact && n.mantissa < (1 << 53) && n.exponent10.abs() <= 22;
        let v = if fast {
            // Clinger's fast path: both operands exact, one correctly rounded operation.
            let m = n.mantissa as f64;
            let p = POW10[n.exponent10.unsigned_abs() as usize];
            let v = if n.exponent10 < 0 { m / p } else { m * p };
            if n.negative {
                -v
            } else {
                v
            }
        } else {
            // The grammar was checked: the bytes are ASCII.
            std::str::from_utf8(&self.b[n.start..self.pos])
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .ok_or(Malformed)?
        };
        if v.is_finite() {
            Ok(Value::Float(v))
        } else {
            Err(Malformed)
        }
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

struct NumberShape {
    start: usize,
    negative: bool,
    mantissa: u64,
    /// The mantissa holds every digit (at most 19).
    exact: bool,
    is_float: bool,
    exponent10: i64,
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Result<Value<'_>> {
        let mut r = Reader::new(text.as_bytes())?;
        let v = match r.value(0)? {
            Value::Str(t) => Value::Str(Text::Owned(t.into_str()?.into_owned())),
            other => other,
        };
        if r.at_end() {
            Ok(v)
        } else {
            Err(Malformed)
        }
    }

    #[test]
    fn strings_end_at_the_first_quote_backslash_or_control_at_any_offset() {
        // Every position of the special byte within and across the 16- and 8-byte blocks.
        for len in 0..40 {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut msg = vec![b'"'];
                msg.extend(std::iter::repeat_n(b'a', len));
                msg.push(special);
                msg.extend_from_slice(b"xyz\"");
                let r = Reader { b: &msg, pos: 0 };
                assert_eq!(r.find_special(1), 1 + len, "len {len}, byte {special:#x}");
            }
            // Bytes that are not special: 0x20, DEL, UTF-8 continuation and lead bytes.
            let mut msg = vec![b'"'];
            msg.extend((0..len).map(|i| [0x20u8, 0x7f, 0x80, 0xe8, 0xff][i % 5]));
            let r = Reader { b: &msg, pos: 0 };
            assert_eq!(r.find_special(1), msg.len(), "len {len}: no special byte");
        }
    }

    #[test]
    fn raw_text_is_the_checked_message_text() {
        // Multi-byte characters at both ends of a string, next to the quotes.
        let msg = "{\"名\":\"证券公司\",\"x\":\"é\",\"e\":\"\"}";
        let mut r = Reader::new(msg.as_bytes()).unwrap();
        assert_eq!(r.peek(), Some(b'{'));
        r.pos = 1;
        let key = r.string().unwrap();
        assert_eq!(key.into_str().unwrap(), "名");
        r.pos += 1;
        assert_eq!(r.string().unwrap().into_str().unwrap(), "证券公司");
        // A message that is not UTF-8 is refused before any string is read.
        let mut bad = msg.as_bytes().to_vec();
        bad[8] = 0xff;
        assert!(Reader::new(&bad).is_err());
    }

    #[test]
    fn scalars() {
        for (text, expect) in [
            ("0", Value::Unsigned(0)),
            ("-0", Value::Unsigned(0)),
            ("42", Value::Unsigned(42)),
            ("-42", Value::Negative(-42)),
            ("18446744073709551615", Value::Unsigned(u64::MAX)),
            ("1.5", Value::Float(1.5)),
            ("-0.25", Value::Float(-0.25)),
            ("1e6", Value::Float(1e6)),
            ("2.34E10", Value::Float(2.34e10)),
            ("5.96", Value::Float(5.96)),
            ("0.1", Value::Float(0.1)),
            (
                "123456789012345678901234567890",
                Value::Float(1.2345678901234568e29),
            ),
            ("1e-400", Value::Float(0.0)),
            ("true", Value::Bool),
            ("null", Value::Null),
            (" [1, {\"a\": [true]}] ", Value::Compound),
            ("\"plain\"", Value::Str(Text::Owned("plain".into()))),
            (
                "\"a\\nb\\u00e9\\ud83d\\ude00\"",
                Value::Str(Text::Owned("a\nbé😀".into())),
            ),
        ] {
            assert_eq!(value(text), Ok(expect), "{text}");
        }
    }

    #[test]
    fn fast_path_matches_std_parsing() {
        for text in [
            "0.3",
            "7.27e9",
            "123.456",
            "9007199254740991.5",
            "1e22",
            "1e-22",
            "3.14159",
        ] {
            let Ok(Value::Float(v)) = value(text) else {
                panic!("{text} is a float");
            };
            assert_eq!(v, text.parse::<f64>().unwrap(), "{text}");
        }
    }

    #[test]
    fn malformed() {
        for text in [
            "",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "\"open",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "\"tab\there\"",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1 2]",
            "1e999",
        ] {
            assert_eq!(value(text), Err(Malformed), "{text:?}");
        }
    }

    #[test]
    fn utf8_is_checked_across_the_whole_message() {
        let skip = |bytes: &[u8]| {
            let mut r = Reader::new(bytes)?;
            r.skip_value(0)
                .and_then(|()| if r.at_end() { Ok(()) } else { Err(Malformed) })
        };
        assert_eq!(
            skip("{\"描述\": \"订单确认延迟 \\u00e9\"}".as_bytes()),
            Ok(())
        );
        assert_eq!(skip(b"{\"a\": \"bad \xff byte\"}"), Err(Malformed));
        assert_eq!(skip(b"{\"k\xc3\": 1}"), Err(Malformed));
        assert_eq!(skip(b"[\"\xe4\xba\x8b\"]"), Ok(()));
        // A multi-byte character split across the 8-byte scan boundary.
        assert_eq!(skip("[\"1234567\u{4e8b}89\"]".as_bytes()), Ok(()));
        assert_eq!(skip(b"[\"1234567\xe4\xba\"]"), Err(Malformed));
        assert!(Reader::new(b"\"ok\xff\"").is_err());
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for n in [1, 126, 127, 128, 129, 300] {
            let ours = value(&deep(n)).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&deep(n)).is_ok();
            assert_eq!(ours, theirs, "nesting {n}");
        }
    }
}
