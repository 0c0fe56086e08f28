//! Owns logfmt parsing (`ts=... level=info msg="hello world" dur=12ms`):
//! bare and double-quoted values with backslash escapes, bare keys as `true`.

use super::fields::{self, Value};
use crate::record::Fields;

/// Parses one logfmt line into `f`. Needs at least one `key=value` pair.
pub fn parse_line(
    line: &str,
    f: &mut Fields,
    scratch: &mut String,
    year: i64,
) -> Result<(), String> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' || i < b.len() && b[i] == b'\t' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' && b[i] != b'\t' && b[i] != b'"' {
            i += 1;
        }
        let key = &line[ks..i];
        if key.is_empty() {
            return Err(format!("logfmt: expected a key at byte {i}"));
        }
        if i >= b.len() || b[i] != b'=' {
            if i < b.len() && b[i] == b'"' {
                return Err(format!("logfmt: unexpected quote at byte {i}"));
            }
            fields::assign(f, key, Value::Bool(true), year);
            continue;
        }
        i += 1; // '='
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let vs = i;
            let mut escaped = false;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            if i >= b.len() {
                return Err(format!("logfmt: unterminated quoted value for key {key:?}"));
            }
            let raw = &line[vs..i];
            i += 1;
            if escaped {
                scratch.clear();
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        match chars.next() {
                            Some('n') => scratch.push('\n'),
                            Some('t') => scratch.push('\t'),
                            Some(o) => scratch.push(o),
                            None => {}
                        }
                    } else {
                        scratch.push(c);
                    }
                }
                fields::assign(f, key, Value::Str(scratch), year);
            } else {
                fields::assign(f, key, Value::Str(raw), year);
            }
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
            let raw = &line[vs..i];
            let v = classify_bare(raw);
            fields::assign(f, key, v, year);
        }
        pairs += 1;
    }
    if pairs == 0 {
        return Err("logfmt: no key=value pairs".into());
    }
    fields::finish(f);
    Ok(())
}

/// A bare logfmt value: number when it parses as one, else text.
fn classify_bare(raw: &str) -> Value<'_> {
    let first = raw.as_bytes().first().copied().unwrap_or(b'x');
    if first.is_ascii_digit() || first == b'-' {
        if let Ok(n) = fields::parse_number(raw) {
            return Value::Num(n, raw);
        }
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "" => Value::Str(""),
        _ => Value::Str(raw),
    }
}

/// How many `key=value` pairs a line seems to have (format detection).
pub fn pair_count(line: &str) -> usize {
    line.split_whitespace()
        .filter(|t| {
            t.find('=').is_some_and(|p| {
                p > 0
                    && t[..p].bytes().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@')
                    })
            })
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Level;

    fn parse(line: &str) -> Result<Fields, String> {
        let mut f = Fields::default();
        parse_line(line, &mut f, &mut String::new(), 2024).map(|_| f)
    }

    #[test]
    fn typical_line() {
        let f = parse(r#"time=2024-03-01T10:00:00Z level=error service=auth msg="token \"expired\" for user" duration=1.5s status=401 retry"#).unwrap();
        assert_eq!(f.ts, Some(1_709_287_200_000_000));
        assert_eq!(f.level, Some(Level::Error));
        assert_eq!(f.service.get(), Some("auth"));
        assert_eq!(f.message.get(), Some("token \"expired\" for user"));
        assert_eq!(f.latency_ms, Some(1500.0));
        assert_eq!(f.status, Some(401));
        assert_eq!(f.extra, r#""retry":true"#);
    }

    #[test]
    fn malformed() {
        assert!(parse(r#"msg="never closed"#).is_err());
        assert!(parse("").is_err());
        assert!(parse("=x").is_err());
    }

    #[test]
    fn pair_counting() {
        assert_eq!(pair_count("a=1 b=two c"), 2);
        assert_eq!(pair_count("hello world 1+1=2"), 0);
    }
}
