//! Owns turning raw lines into `Fields`: the supported formats, their
//! automatic detection from the first lines, and the per-line entry point that
//! validates UTF-8 and length before handing a line to its format's parser.

pub mod combined;
pub mod fields;
pub mod json;
pub mod logfmt;
pub mod pattern;
pub mod plain;
pub mod syslog;
pub mod time;

use crate::record::Fields;
use regex::Regex;
use std::fmt;
use std::sync::Arc;

/// A log format. `Regex` covers both `regex:RE` and `pattern:P`.
#[derive(Clone)]
pub enum Format {
    Json,
    Logfmt,
    Combined,
    Syslog,
    Plain,
    Regex { spec: String, re: Arc<Regex> },
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Format {
    pub fn name(&self) -> String {
        match self {
            Format::Json => "json".into(),
            Format::Logfmt => "logfmt".into(),
            Format::Combined => "combined".into(),
            Format::Syslog => "syslog".into(),
            Format::Plain => "plain".into(),
            Format::Regex { spec, .. } => spec.clone(),
        }
    }
}

/// What the user asked for with `--format`.
#[derive(Clone, Debug, PartialEq)]
pub enum FormatChoice {
    Auto,
    Fixed(Format),
}

impl std::str::FromStr for FormatChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => FormatChoice::Auto,
            "json" | "jsonl" | "ecs" => FormatChoice::Fixed(Format::Json),
            "logfmt" => FormatChoice::Fixed(Format::Logfmt),
            "combined" | "common" | "clf" | "nginx" | "apache" => {
                FormatChoice::Fixed(Format::Combined)
            }
            "syslog" | "rfc3164" | "rfc5424" => FormatChoice::Fixed(Format::Syslog),
            "plain" | "text" => FormatChoice::Fixed(Format::Plain),
            s if s.starts_with("regex:") => FormatChoice::Fixed(Format::Regex {
                spec: s.to_string(),
                re: Arc::new(pattern::user_regex(&s[6..])?),
            }),
            s if s.starts_with("pattern:") => FormatChoice::Fixed(Format::Regex {
                spec: s.to_string(),
                re: Arc::new(pattern::pattern_to_regex(&s[8..])?),
            }),
            other => {
                return Err(format!(
                    "unknown format {other:?}: expected auto, json, logfmt, combined, syslog, plain, regex:RE or pattern:P"
                ))
            }
        })
    }
}

/// Picks the format that parses most of the sample lines, preferring the
/// more specific formats; plain text when nothing structured fits.
pub fn detect(sample: &[&str], year: i64) -> Format {
    let lines: Vec<&str> = sample
        .iter()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .take(64)
        .collect();
    if lines.is_empty() {
        return Format::Plain;
    }
    let mut f = Fields::default();
    let mut js = json::JsonScratch::default();
    let mut scratch = String::new();
    let mut score = |ok: &mut dyn FnMut(&str, &mut Fields) -> bool| -> usize {
        lines
            .iter()
            .filter(|l| {
                f.clear();
                ok(l, &mut f)
            })
            .count()
    };
    let json_ok =
        score(&mut |l, f| json::looks_like(l) && json::parse_line(l, f, &mut js, year).is_ok());
    let syslog_ok =
        score(&mut |l, f| syslog::looks_like(l, year) && syslog::parse_line(l, f, year).is_ok());
    let combined_ok = score(&mut |l, f| combined::parse_line(l, f).is_ok());
    let logfmt_ok = score(&mut |l, f| {
        logfmt::pair_count(l) >= 2 && logfmt::parse_line(l, f, &mut scratch, year).is_ok()
    });
    let need = lines.len().div_ceil(2);
    let candidates = [
        (json_ok, Format::Json),
        (syslog_ok, Format::Syslog),
        (combined_ok, Format::Combined),
        (logfmt_ok, Format::Logfmt),
    ];
    let best = candidates.iter().map(|(n, _)| *n).max().unwrap_or(0);
    if best >= need {
        for (n, fmt) in candidates {
            if n == best {
                return fmt;
            }
        }
    }
    Format::Plain
}

/// Why a line was not stored.
pub type Reject = String;

/// Parses one raw line (without its newline) in the given format.
pub struct LineParser {
    pub format: Format,
    pub year: i64,
    pub max_line_bytes: usize,
    json: json::JsonScratch,
    scratch: String,
}

impl LineParser {
    pub fn new(format: Format, year: i64, max_line_bytes: usize) -> Self {
        LineParser {
            format,
            year,
            max_line_bytes,
            json: json::JsonScratch::default(),
            scratch: String::new(),
        }
    }

    /// Parses `raw` into `f` (cleared first). Blank lines are `Ok(false)`:
    /// nothing to store and nothing to reject.
    pub fn parse(&mut self, raw: &[u8], f: &mut Fields) -> Result<bool, Reject> {
        self.parse_checked(raw, f, false)
    }

    /// `parse`, for a line of a block the caller found to be valid UTF-8
    /// without NUL bytes as a whole (`clean`): one pass over a 1 MiB chunk
    /// instead of two over each line.
    pub fn parse_checked(
        &mut self,
        raw: &[u8],
        f: &mut Fields,
        clean: bool,
    ) -> Result<bool, Reject> {
        f.clear();
        if raw.len() > self.max_line_bytes {
            return Err(format!(
                "line too long: {} bytes (limit {}, ingest.max_line_bytes)",
                raw.len(),
                self.max_line_bytes
            ));
        }
        let line = if clean {
            // SAFETY: the caller checked the whole block, and a line cut at
            // '\n' (ASCII, never inside a multi-byte character) of valid
            // UTF-8 is valid UTF-8.
            unsafe { std::str::from_utf8_unchecked(raw) }
        } else {
            // SIMD check first; std's (slower) error says where the bad byte is
            let line = match simdutf8::basic::from_utf8(raw) {
                Ok(line) => line,
                Err(_) => std::str::from_utf8(raw)
                    .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?,
            };
            if memchr::memchr(0, line.as_bytes()).is_some() {
                return Err("binary data: NUL byte in line".into());
            }
            line
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Ok(false);
        }
        match &self.format {
            Format::Json => json::parse_line(line, f, &mut self.json, self.year)?,
            Format::Logfmt => logfmt::parse_line(line, f, &mut self.scratch, self.year)?,
            Format::Combined => combined::parse_line(line, f)?,
            Format::Syslog => syslog::parse_line(line, f, self.year)?,
            Format::Plain => plain::parse_line(line, f, self.year),
            Format::Regex { re, .. } => pattern::parse_line(re, line, f, self.year)?,
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        let y = 2024;
        assert_eq!(
            detect(
                &[
                    r#"{"ts":"2024-01-01T00:00:00Z","msg":"a"}"#,
                    r#"{"msg":"b"}"#
                ],
                y
            ),
            Format::Json
        );
        assert_eq!(
            detect(
                &[
                    "ts=2024-01-01T00:00:00Z level=info msg=hi",
                    "level=warn msg=\"a b\""
                ],
                y
            ),
            Format::Logfmt
        );
        assert_eq!(
            detect(
                &[r#"1.2.3.4 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.0" 200 5"#],
                y
            ),
            Format::Combined
        );
        assert_eq!(
            detect(
                &[
                    "<13>Oct 11 22:14:15 host app: hello",
                    "Oct 11 22:14:16 host app[2]: x"
                ],
                y
            ),
            Format::Syslog
        );
        assert_eq!(
            detect(&["hello world", "x=1 but mostly prose"], y),
            Format::Plain
        );
        assert_eq!(detect(&[], y), Format::Plain);
    }

    #[test]
    fn line_level_rejects() {
        let mut p = LineParser::new(Format::Json, 2024, 100);
        let mut f = Fields::default();
        assert!(p
            .parse(&[b'{'; 200], &mut f)
            .unwrap_err()
            .starts_with("line too long"));
        assert!(p
            .parse(b"{\"msg\":\"\xff\"}", &mut f)
            .unwrap_err()
            .contains("UTF-8"));
        assert_eq!(p.parse(b"   ", &mut f), Ok(false));
        assert_eq!(p.parse(b"{\"msg\":\"ok\"}\r", &mut f), Ok(true));
        let mut plain = LineParser::new(Format::Plain, 2024, 100);
        assert!(plain.parse(b"a\0b", &mut f).unwrap_err().contains("NUL"));
    }

    #[test]
    fn format_choice_parses_and_names_bad_values() {
        assert_eq!("auto".parse::<FormatChoice>(), Ok(FormatChoice::Auto));
        assert!("pattern:<ts> <message>".parse::<FormatChoice>().is_ok());
        let e = "xml".parse::<FormatChoice>().unwrap_err();
        assert!(e.contains("xml"));
        assert!("regex:(".parse::<FormatChoice>().is_err());
    }
}
