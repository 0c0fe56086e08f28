//! Owns JSON-lines parsing: a small, allocation-free scanner over one object
//! per line. Nested objects are flattened to dotted keys (so ECS written as
//! `{"log":{"level":"info"}}` and as `{"log.level":"info"}` map the same),
//! known keys go to columns through `fields::assign`, the rest to `extra`.

use super::fields::{self, Value};
use crate::record::Fields;

const MAX_DEPTH: usize = 6;

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

type PResult<T> = Result<T, String>;

/// High bit set in each byte of `word` (little-endian) that may be `"` or
/// `\\`; the lowest set bit always marks the first such byte exactly (the
/// zero-byte test's borrows only reach bytes after a true match).
fn quote_or_backslash(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    zero_byte(word ^ (ONES * u64::from(b'"'))) | zero_byte(word ^ (ONES * u64::from(b'\\')))
}

/// Bit `k` set when byte `k` of the 16 bytes at `b[at..at + 16]` is `"` or
/// `\\`: two SSE2 compares (SSE2 is part of every x86_64 CPU).
#[cfg(target_arch = "x86_64")]
fn quote_or_backslash_16(b: &[u8], at: usize) -> u32 {
    use std::arch::x86_64::*;
    let bytes: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: SSE2 is always available on x86_64; the unaligned load reads
    // exactly the 16 bytes borrowed above.
    unsafe {
        let v = _mm_loadu_si128(bytes.as_ptr() as *const __m128i);
        let hits = _mm_or_si128(
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
        );
        _mm_movemask_epi8(hits) as u32
    }
}

/// Where the first `"` or `\\` at or after `start` is, looking at most ~64
/// bytes ahead: `Ok(position)`, or `Err(next)` when none is before `next`
/// (the caller goes on from there). 16 bytes at a time (x86_64), then 8.
fn first_quote_or_backslash(b: &[u8], start: usize) -> Result<usize, usize> {
    let mut i = start;
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= b.len() {
        let m = quote_or_backslash_16(b, i);
        if m != 0 {
            return Ok(i + m.trailing_zeros() as usize);
        }
        i += 16;
        if i - start >= 64 {
            return Err(i);
        }
    }
    while let Some(word) = b.get(i..i + 8) {
        let found = quote_or_backslash(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
        if found != 0 {
            return Ok(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
        if i - start >= 64 {
            break;
        }
    }
    Err(i)
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> PResult<T> {
        if self.i >= self.b.len() {
            Err(format!("truncated JSON: {what} expected at end of line"))
        } else {
            Err(format!("invalid JSON: {what} expected at byte {}", self.i))
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> PResult<()> {
        self.ws();
        if self.i < self.b.len() && self.b[self.i] == c {
            self.i += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// Reads a string starting at the opening quote. Returns the raw slice
    /// between the quotes and whether it contains escapes.
    fn string_raw(&mut self) -> PResult<(&'a str, bool)> {
        debug_assert_eq!(self.b[self.i], b'"');
        self.i += 1;
        let start = self.i;
        // the first 64 bytes by SIMD words: keys and most values end there,
        // before memchr's set-up would pay off
        match first_quote_or_backslash(self.b, start) {
            Ok(at) if self.b[at] == b'"' => {
                self.i = at + 1;
                return Ok((&self.s[start..at], false));
            }
            // a backslash: the escape-aware loop below goes on from it
            Ok(at) | Err(at) => self.i = at,
        }
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
                None => {
                    self.i = self.b.len();
                    return self.err("closing quote");
                }
                Some(off) => {
                    self.i += off;
                    if self.b[self.i] == b'\\' {
                        escaped = true;
                        self.i += 2;
                        if self.i > self.b.len() {
                            self.i = self.b.len();
                            return self.err("escape");
                        }
                    } else {
                        let raw = &self.s[start..self.i];
                        self.i += 1;
                        return Ok((raw, escaped));
                    }
                }
            }
        }
    }

    fn skip_value(&mut self, depth: usize) -> PResult<()> {
        self.ws();
        if depth > 64 {
            return Err("invalid JSON: nesting too deep".into());
        }
        match self.b.get(self.i) {
            None => self.err("value"),
            Some(b'"') => self.string_raw().map(|_| ()),
            Some(b'{') | Some(b'[') => {
                let close = if self.b[self.i] == b'{' { b'}' } else { b']' };
                let is_obj = close == b'}';
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&close) {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    if is_obj {
                        self.ws();
                        if self.b.get(self.i) != Some(&b'"') {
                            return self.err("object key");
                        }
                        self.string_raw()?;
                        self.expect(b':', "':'")?;
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(c) if *c == close => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("',' or closing bracket"),
                    }
                }
            }
            Some(_) => self.scalar_literal().map(|_| ()),
        }
    }

    /// A number, `true`, `false` or `null`.
    fn scalar_literal(&mut self) -> PResult<Value<'a>> {
        let start = self.i;
        while self.i < self.b.len()
            && !matches!(
                self.b[self.i],
                b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
            )
        {
            self.i += 1;
        }
        let tok = &self.s[start..self.i];
        match tok {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            _ => {
                let first = tok.as_bytes().first().copied().unwrap_or(b' ');
                if !(first == b'-' || first.is_ascii_digit()) {
                    self.i = start;
                    return self.err("value");
                }
                match fields::parse_number(tok) {
                    Ok(v) => Ok(Value::Num(v, tok)),
                    Err(_) => {
                        self.i = start;
                        self.err("number")
                    }
                }
            }
        }
    }

    fn object(
        &mut self,
        prefix: &mut String,
        f: &mut Fields,
        scratch: &mut String,
        memo: &mut fields::KeyMemo,
        year: i64,
        depth: usize,
    ) -> PResult<()> {
        // at '{'
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        // the place of each key in this object, for the memo of the last line's keys
        let mut at = 0;
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return self.err("object key");
            }
            let plen = prefix.len();
            // a top-level key written as the line before wrote the key at
            // its place is that key (a remembered key holds no quote or
            // backslash): compared where it stands, not scanned
            let remembered = match memo.key_at(at).filter(|_| plen == 0) {
                Some(k) => {
                    let (from, to) = (self.i + 1, self.i + 1 + k.len());
                    (self.b.get(to) == Some(&b'"') && self.b.get(from..to) == Some(k))
                        .then_some((from, to))
                }
                None => None,
            };
            let (kraw, kesc) = match remembered {
                Some((from, to)) => {
                    self.i = to + 1;
                    (&self.s[from..to], false)
                }
                None => self.string_raw()?,
            };
            // a plain top-level key is used as it stands; a nested or
            // escaped one is built in `prefix`
            let plain = plen == 0 && !kesc;
            if kesc {
                unescape(kraw, prefix);
            } else if !plain {
                prefix.push_str(kraw);
            }
            self.expect(b':', "':'")?;
            self.ws();
            // a string or scalar value, assigned below; an object or array
            // is taken here
            let value = match self.b.get(self.i) {
                None => return self.err("value"),
                Some(b'"') => {
                    let (vraw, vesc) = self.string_raw()?;
                    Some(if vesc {
                        scratch.clear();
                        unescape(vraw, scratch);
                        Value::Str(scratch)
                    } else {
                        Value::Str(vraw)
                    })
                }
                Some(b'{') if depth < MAX_DEPTH => {
                    if plain {
                        prefix.push_str(kraw);
                    }
                    prefix.push('.');
                    self.object(prefix, f, scratch, memo, year, depth + 1)?;
                    None
                }
                Some(b'{') | Some(b'[') => {
                    let start = self.i;
                    self.skip_value(depth)?;
                    let raw = &self.s[start..self.i];
                    let key = if plain { kraw } else { prefix.as_str() };
                    // skipping checks the structure only: a raw tab, a bad
                    // escape or `007` inside would make `extra` invalid JSON,
                    // so such a value is kept as a string instead
                    if serde_json::from_str::<serde_json::Value>(raw).is_ok() {
                        f.push_extra_raw(key, raw);
                    } else {
                        f.push_extra_str(key, raw);
                    }
                    None
                }
                Some(_) => Some(self.scalar_literal()?),
            };
            if let Some(v) = value {
                if remembered.is_some() {
                    memo.assign_remembered(at, f, kraw, v, year);
                } else if plain {
                    memo.assign(at, f, kraw, v, year);
                } else {
                    fields::assign(f, prefix, v, year);
                }
            }
            at += 1;
            prefix.truncate(plen);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("',' or '}'"),
            }
        }
    }
}

/// Appends the unescaped form of a JSON string body to `out`.
fn unescape(raw: &str, out: &mut String) {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let mut code = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&code) {
                    // surrogate pair
                    let rest = chars.as_str();
                    if rest.starts_with("\\u") && rest.len() >= 6 {
                        if let Ok(lo) = u32::from_str_radix(&rest[2..6], 16) {
                            if (0xDC00..0xE000).contains(&lo) {
                                code = 0x10000 + ((code - 0xD800) << 10) + (lo - 0xDC00);
                                for _ in 0..6 {
                                    chars.next();
                                }
                            }
                        }
                    }
                }
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
}

/// Reusable buffers for JSON parsing.
#[derive(Default)]
pub struct JsonScratch {
    prefix: String,
    value: String,
    keys: fields::KeyMemo,
}

/// Parses one JSON object line into `f` (which the caller has cleared).
pub fn parse_line(
    line: &str,
    f: &mut Fields,
    scratch: &mut JsonScratch,
    year: i64,
) -> Result<(), String> {
    let mut sc = Scanner {
        s: line,
        b: line.as_bytes(),
        i: 0,
    };
    sc.ws();
    if sc.b.get(sc.i) != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    scratch.prefix.clear();
    sc.object(
        &mut scratch.prefix,
        f,
        &mut scratch.value,
        &mut scratch.keys,
        year,
        0,
    )?;
    sc.ws();
    if sc.i != sc.b.len() {
        return Err(format!(
            "invalid JSON: trailing characters at byte {}",
            sc.i
        ));
    }
    fields::finish(f);
    Ok(())
}

/// True when the line looks like a JSON object (used by format detection).
pub fn looks_like(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('{') && t.trim_end().ends_with('}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Level;

    #[test]
    fn the_word_scan_finds_the_first_quote_or_backslash() {
        let first = |bytes: &[u8; 8]| {
            let m = quote_or_backslash(u64::from_le_bytes(*bytes));
            (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
        };
        assert_eq!(first(b"abcdefgh"), None);
        assert_eq!(first("é€a\u{7f}\u{1}".as_bytes().try_into().unwrap()), None);
        for at in 0..8 {
            for c in [b'"', b'\\'] {
                // the bytes after a match (here the other one) must not move it
                let mut w = [b'x'; 8];
                w[at] = c;
                for b in w.iter_mut().skip(at + 1) {
                    *b = if c == b'"' { b'\\' } else { b'"' };
                }
                assert_eq!(first(&w), Some(at), "{c} at {at}");
            }
        }
    }

    #[test]
    fn the_first_quote_or_backslash_is_found_wherever_it_is() {
        for len in 0..100 {
            for at in 0..len {
                for c in [b'"', b'\\'] {
                    let mut b = vec![b'x'; len];
                    b[at] = c;
                    // a later quote or backslash must not move the answer
                    if at + 1 < len {
                        b[len - 1] = b'"';
                    }
                    for start in [0, 1, 3].into_iter().filter(|&s| s <= at) {
                        match first_quote_or_backslash(&b, start) {
                            Ok(p) => assert_eq!(p, at, "len {len} at {at} start {start}"),
                            // none before `next`: 64 bytes were looked at, or
                            // too few were left for a word
                            Err(next) => assert!(
                                at >= next && (next - start >= 64 || len - next < 8),
                                "len {len} at {at} start {start} next {next}"
                            ),
                        }
                    }
                }
            }
            let plain = vec![b'y'; len];
            match first_quote_or_backslash(&plain, 0) {
                Ok(p) => panic!("found {p} in {len} plain bytes"),
                Err(next) => assert!(next <= len),
            }
        }
    }

    #[test]
    fn strings_end_at_the_right_quote_before_and_after_eight_bytes() {
        let mut f = Fields::default();
        let mut scratch = JsonScratch::default();
        for (line, msg) in [
            (r#"{"msg":"a\"b"}"#, "a\"b"),
            (r#"{"msg":"abcdefg\"hij"}"#, "abcdefg\"hij"),
            (r#"{"msg":"abcdefgh"}"#, "abcdefgh"),
            (r#"{"msg":"abcdefghijklmnop\\"}"#, "abcdefghijklmnop\\"),
            (r#"{"msg":"é"}"#, "é"),
            (r#"{"msg":""}"#, ""),
        ] {
            f.clear();
            parse_line(line, &mut f, &mut scratch, 2024).unwrap();
            assert_eq!(f.message.get(), Some(msg), "{line}");
        }
        assert!(
            parse_line(r#"{"msg":"abcdefghij"#, &mut f, &mut scratch, 2024)
                .unwrap_err()
                .contains("closing quote")
        );
        // every length through and past the 64 bytes scanned a word at a
        // time, plain and with an escaped quote at every place
        for n in 0..90 {
            let plain = "é".repeat(n / 2) + &"x".repeat(n % 2);
            f.clear();
            parse_line(
                &format!(r#"{{"msg":"{plain}","n":1}}"#),
                &mut f,
                &mut scratch,
                2024,
            )
            .unwrap();
            assert_eq!(f.message.get(), Some(plain.as_str()), "{n}");
            for at in 0..=n {
                let raw = format!("{}\\\"{}", "y".repeat(at), "z".repeat(n - at));
                f.clear();
                parse_line(&format!(r#"{{"msg":"{raw}"}}"#), &mut f, &mut scratch, 2024).unwrap();
                let want = format!("{}\"{}", "y".repeat(at), "z".repeat(n - at));
                assert_eq!(f.message.get(), Some(want.as_str()), "{n} {at}");
            }
        }
    }

    #[test]
    fn remembered_keys_parse_as_fresh_ones_whatever_the_next_line_writes() {
        let long = "k".repeat(60);
        let lines = [
            r#"{"ts":"2024-03-01T10:00:00Z","level":"info","msg":"a","status":200,"":1}"#
                .to_string(),
            // same places: a key extended, cut, escaped, emptied, nested
            r#"{"tsx":"2024-03-01T10:00:00Z","leve":"warn","msg":"b","status":{"code":1},"":2}"#
                .to_string(),
            r#"{"t\u0073":"2024-03-01T10:00:01Z","level":"error","m\"sg":"c","status":500,"x":3}"#
                .to_string(),
            r#"{"ts":"2024-03-01T10:00:02Z","level":"info","msg":"d","status":201,"":4}"#
                .to_string(),
            format!(r#"{{"{long}":1,"ts":"2024-03-01T10:00:03Z","msg":"e"}}"#),
            format!(r#"{{"{long}":2,"ts":"2024-03-01T10:00:04Z","msg":"f"}}"#),
            r#"{"ts":"2024-03-01T10:00:05Z"}"#.to_string(),
            r#"{"ts":"2024-03-01T10:00:06Z","level":"debug","msg":"g","status":404,"":5}"#
                .to_string(),
            r#"{"ts":"2024-03-01T10:00:07Z","level":"info","msg":"h","status":200,"":6,"extra":7}"#
                .to_string(),
        ];
        let mut shared = JsonScratch::default();
        for round in 0..2 {
            for line in &lines {
                let mut f = Fields::default();
                let kept = parse_line(line, &mut f, &mut shared, 2024);
                let fresh = parse(line);
                assert_eq!(kept.map(|_| f), fresh, "round {round}: {line}");
            }
        }
        // and a key cut at the end of the line is an error, not a match
        let mut f = Fields::default();
        assert!(parse_line(r#"{"ts"#, &mut f, &mut shared, 2024).is_err());
        assert!(parse_line(
            r#"{"ts":"2024-03-01T10:00:00Z","level"#,
            &mut f,
            &mut shared,
            2024
        )
        .is_err());
    }

    fn parse(line: &str) -> Result<Fields, String> {
        let mut f = Fields::default();
        parse_line(line, &mut f, &mut JsonScratch::default(), 2024).map(|_| f)
    }

    #[test]
    fn extra_stays_valid_json_whatever_the_line_held() {
        // `007` and `-inf` parse as f64 but are not JSON; a raw tab and a bad
        // escape inside a nested value pass the structural skip
        let f = parse("{\"msg\":\"m\",\"n\":007,\"x\":-inf,\"tags\":[\"a\tb\"],\"e\":[\"\\q\"],\"ok\":[1,{\"y\":null}]}").unwrap();
        let extra: serde_json::Value = serde_json::from_str(&format!("{{{}}}", f.extra)).unwrap();
        assert_eq!(extra["n"], "007");
        assert_eq!(extra["x"], "-inf");
        assert_eq!(extra["tags"], "[\"a\tb\"]");
        assert_eq!(extra["e"], r#"["\q"]"#);
        assert_eq!(extra["ok"], serde_json::json!([1, {"y": null}]));
    }

    #[test]
    fn plain_json_with_aliases() {
        let f = parse(r#"{"ts":"2024-03-01T10:00:00.5Z","lvl":"warn","app":"checkout","msg":"slow \"db\" call","latency":"35ms","status":200,"user_id":42,"tags":["a","b"]}"#).unwrap();
        assert_eq!(f.ts, Some(1_709_287_200_500_000));
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.service.get(), Some("checkout"));
        assert_eq!(f.message.get(), Some("slow \"db\" call"));
        assert_eq!(f.latency_ms, Some(35.0));
        assert_eq!(f.status, Some(200));
        assert_eq!(f.extra, r#""user_id":42,"tags":["a","b"]"#);
    }

    #[test]
    fn ecs_dotted_and_nested_agree() {
        let dotted = parse(r#"{"@timestamp":"2024-03-01T10:00:00Z","log.level":"error","service.name":"pay","message":"boom","event.duration":1500000,"http.response.status_code":502,"client.ip":"10.0.0.1","url.path":"/pay"}"#).unwrap();
        let nested = parse(r#"{"@timestamp":"2024-03-01T10:00:00Z","log":{"level":"error"},"service":{"name":"pay"},"message":"boom","event":{"duration":1500000},"http":{"response":{"status_code":502}},"client":{"ip":"10.0.0.1"},"url":{"path":"/pay"}}"#).unwrap();
        assert_eq!(dotted, nested);
        assert_eq!(dotted.level, Some(Level::Error));
        assert_eq!(dotted.service.get(), Some("pay"));
        assert_eq!(dotted.latency_ms, Some(1.5));
        assert_eq!(dotted.status, Some(502));
        assert_eq!(dotted.client_ip.get(), Some("10.0.0.1"));
        assert_eq!(dotted.path.get(), Some("/pay"));
    }

    #[test]
    fn unicode_escapes() {
        let f = parse(r#"{"msg":"caf\u00e9 \ud83d\ude00 tab\t"}"#).unwrap();
        assert_eq!(f.message.get(), Some("café 😀 tab\t"));
    }

    #[test]
    fn malformed_lines_are_errors_with_reasons() {
        let e = parse(r#"{"msg":"cut here"#).unwrap_err();
        assert!(e.starts_with("truncated JSON"), "{e}");
        let e = parse(r#"{"msg":"x"} tail"#).unwrap_err();
        assert!(e.contains("trailing"), "{e}");
        let e = parse(r#"{"msg": bogus}"#).unwrap_err();
        assert!(e.contains("invalid JSON"), "{e}");
        assert!(parse("[1,2]").is_err());
        assert!(parse(r#"{"a":1,}"#).is_err());
    }

    #[test]
    fn epoch_number_timestamp() {
        let f = parse(r#"{"time":1709287200123,"level":30,"msg":"pino"}"#).unwrap();
        assert_eq!(f.ts, Some(1_709_287_200_123_000));
        assert_eq!(f.level, Some(Level::Info));
    }
}
