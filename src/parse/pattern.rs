//! Owns custom formats: a regex with named groups (`regex:RE`) and the
//! shorthand `pattern:<ts> <level> <component>: <message>`, where each `<name>`
//! captures a field (mapped through the same aliases as JSON keys) and the
//! text between them is literal (a space matches one or more spaces).

use super::fields::{self, Value};
use crate::record::Fields;
use regex::Regex;

/// Compiles the `pattern:` shorthand into an anchored regex.
pub fn pattern_to_regex(p: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut rest = p;
    let mut names = 0;
    while !rest.is_empty() {
        if let Some(start) = rest.strip_prefix('<') {
            let end = start
                .find('>')
                .ok_or_else(|| format!("pattern: unclosed '<' in {p:?}"))?;
            let name = &start[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "pattern: field name {name:?} must be letters, digits or '_'"
                ));
            }
            rest = &start[end + 1..];
            // the last field takes the rest of the line; others are lazy
            let body = if rest.is_empty() { ".*" } else { ".*?" };
            re.push_str(&format!("(?P<{name}>{body})"));
            names += 1;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            if c == ' ' {
                re.push_str(r"\s+");
                rest = rest.trim_start_matches(' ');
            } else {
                re.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    re.push('$');
    if names == 0 {
        return Err(format!("pattern: {p:?} names no <field>"));
    }
    Regex::new(&re).map_err(|e| format!("pattern: {e}"))
}

/// Compiles a user regex and checks that it has named groups.
pub fn user_regex(re: &str) -> Result<Regex, String> {
    let r = Regex::new(re).map_err(|e| format!("regex: {e}"))?;
    if r.capture_names().flatten().next().is_none() {
        return Err("regex: needs at least one named group like (?P<message>.*)".into());
    }
    Ok(r)
}

/// Parses one line with a compiled custom regex.
pub fn parse_line(re: &Regex, line: &str, f: &mut Fields, year: i64) -> Result<(), String> {
    let caps = re
        .captures(line)
        .ok_or_else(|| "line does not match the custom pattern".to_string())?;
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            fields::assign(f, name, Value::Str(m.as_str().trim()), year);
        }
    }
    if !f.message.is_set() {
        f.message.set(line);
    }
    fields::finish(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Level;

    #[test]
    fn shorthand_pattern() {
        let re = pattern_to_regex("<ts> <level> <component>: <message>").unwrap();
        let mut f = Fields::default();
        parse_line(
            &re,
            "2024-03-01T10:00:00Z  WARN  billing: card declined 4411",
            &mut f,
            2024,
        )
        .unwrap();
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.service.get(), Some("billing"));
        assert_eq!(f.message.get(), Some("card declined 4411"));
        assert_eq!(f.ts, Some(1_709_287_200_000_000));
        let mut g = Fields::default();
        assert!(parse_line(&re, "no colon here", &mut g, 2024).is_err());
    }

    #[test]
    fn regex_with_named_groups() {
        let re =
            user_regex(r"^(?P<time>\S+) (?P<status>\d+) (?P<duration>\S+) (?P<msg>.*)$").unwrap();
        let mut f = Fields::default();
        parse_line(
            &re,
            "2024-03-01T10:00:00Z 500 1.5s upstream died",
            &mut f,
            2024,
        )
        .unwrap();
        assert_eq!(f.status, Some(500));
        assert_eq!(f.latency_ms, Some(1500.0));
        assert_eq!(f.level, Some(Level::Error));
        assert!(user_regex("(a)").is_err());
        assert!(pattern_to_regex("no fields").is_err());
    }
}
