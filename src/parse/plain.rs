//! Owns plain-text lines: the whole line is the message; a leading timestamp
//! (ISO, `[ISO]`, syslog-style or CLF in brackets) and a level word right after
//! it (`ERROR`, `[warn]`, `E:`) are picked up when present.

use super::time;
use crate::record::{Fields, Level};

/// A level named by one of the first few tokens of a message (`error: ...`,
/// `[WARN] ...`, `... ERROR ...` in log4j layouts).
pub fn level_in_message(msg: &str) -> Option<Level> {
    for tok in msg.split_whitespace().take(4) {
        let t =
            tok.trim_matches(|c: char| matches!(c, '[' | ']' | ':' | '(' | ')' | '<' | '>' | '|'));
        if t.len() >= 4 || t.len() == 1 && tok.ends_with(':') {
            if let Some(l) = Level::parse(t) {
                return Some(l);
            }
        }
    }
    None
}

/// Parses a plain line; never fails (a plain line is always a message).
pub fn parse_line(line: &str, f: &mut Fields, year: i64) {
    let mut rest = line.trim_end();
    let t = rest.trim_start_matches('[');
    let skipped = rest.len() - t.len();
    if let Some((us, used)) = time::parse_iso_prefix(t) {
        f.ts = Some(us);
        rest = &t[used..];
        if skipped > 0 {
            rest = rest.strip_prefix(']').unwrap_or(rest);
        }
    } else if let Some((us, used)) = time::parse_syslog_prefix(t, year) {
        f.ts = Some(us);
        rest = &t[used..];
    } else if skipped > 0 {
        if let Some(close) = t.find(']') {
            if let Some(us) = time::parse_clf(&t[..close]) {
                f.ts = Some(us);
                rest = &t[close + 1..];
            }
        }
    }
    let rest = rest.trim_start();
    // A level right after the timestamp: consume it from the message.
    let first = rest.split_whitespace().next().unwrap_or("");
    let word = first.trim_matches(|c: char| matches!(c, '[' | ']' | ':' | '<' | '>'));
    let msg = match Level::parse(word) {
        Some(l) if f.ts.is_some() || first.len() > word.len() || word.len() >= 4 => {
            f.level = Some(l);
            if f.ts.is_some() {
                rest[first.len()..].trim_start_matches([' ', '-', ':'])
            } else {
                line.trim_end()
            }
        }
        _ => {
            f.level = level_in_message(rest);
            if f.ts.is_some() {
                rest
            } else {
                line.trim_end()
            }
        }
    };
    f.message.set(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Fields {
        let mut f = Fields::default();
        parse_line(line, &mut f, 2024);
        f
    }

    #[test]
    fn timestamp_and_level_picked_up() {
        let f = parse("2024-03-01 10:00:00,250 ERROR [main] c.f.Db - connection refused");
        assert_eq!(f.ts, Some(1_709_287_200_250_000));
        assert_eq!(f.level, Some(Level::Error));
        assert_eq!(f.message.get(), Some("[main] c.f.Db - connection refused"));
        let f = parse("[2024-03-01T10:00:00Z] [warn] disk 91% full");
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.message.get(), Some("disk 91% full"));
    }

    #[test]
    fn bare_text() {
        let f = parse("Starting server on port 8080");
        assert_eq!(f.ts, None);
        assert_eq!(f.level, None);
        assert_eq!(f.message.get(), Some("Starting server on port 8080"));
        let f = parse("panic: runtime error: index out of range");
        assert_eq!(f.level, Some(Level::Fatal));
    }
}
