//! Owns the shape of a parsed log line: the normalised `Level`, the per-line
//! `Fields` a parser fills, and `LogBatch`, the columnar builder every parser
//! writes into and every sink (DuckDB, Polars) reads from.

use std::fmt;

/// `s.trim()`, skipping its search for Unicode white space when `s` starts
/// and ends with a visible ASCII byte, as nearly every value does (white
/// space is either ASCII at most a space, or not ASCII).
#[inline]
pub fn trim_quick(s: &str) -> &str {
    let visible = |c: &u8| (b'!'..=b'~').contains(c);
    let b = s.as_bytes();
    if b.first().is_some_and(visible) && b.last().is_some_and(visible) {
        s
    } else {
        s.trim()
    }
}

/// Normalised severity. Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Fatal = 5,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// Maps the many spellings seen in the wild (`warn`, `warning`, `W`, `err`,
    /// `E`, `critical`, `crit`, `emerg`, `alert`, `notice`, numeric bunyan/pino
    /// levels 10..60, syslog severities as words) onto a `Level`.
    pub fn parse(s: &str) -> Option<Level> {
        // the usual spellings as written, before trimming and lowercasing
        match s {
            "info" | "INFO" => return Some(Level::Info),
            "warn" | "WARN" => return Some(Level::Warn),
            "error" | "ERROR" => return Some(Level::Error),
            "debug" | "DEBUG" => return Some(Level::Debug),
            _ => {}
        }
        let s = trim_quick(s);
        if s.is_empty() || s.len() > 16 {
            return None;
        }
        let mut buf = [0u8; 16];
        let bytes = s.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            buf[i] = b.to_ascii_lowercase();
        }
        let lower = &buf[..bytes.len()];
        Some(match lower {
            b"trace" | b"t" | b"trc" | b"finest" | b"finer" | b"verbose" | b"v" => Level::Trace,
            b"debug" | b"d" | b"dbg" | b"fine" | b"config" => Level::Debug,
            b"info" | b"i" | b"inf" | b"information" | b"informational" | b"notice" | b"n" => {
                Level::Info
            }
            b"warn" | b"warning" | b"w" | b"wrn" => Level::Warn,
            b"error" | b"err" | b"e" | b"severe" | b"eror" => Level::Error,
            b"fatal" | b"f" | b"critical" | b"crit" | b"c" | b"alert" | b"emerg" | b"emergency"
            | b"panic" | b"ftl" => Level::Fatal,
            // pino / bunyan numeric levels
            b"10" => Level::Trace,
            b"20" => Level::Debug,
            b"30" => Level::Info,
            b"40" => Level::Warn,
            b"50" => Level::Error,
            b"60" => Level::Fatal,
            _ => return None,
        })
    }

    /// Syslog severity 0..=7 (RFC 5424 table 2).
    pub fn from_syslog_severity(sev: u8) -> Level {
        match sev {
            0..=2 => Level::Fatal,
            3 => Level::Error,
            4 => Level::Warn,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        }
    }

    pub fn is_error(self) -> bool {
        self >= Level::Error
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reusable optional string: keeps its allocation across lines so the
/// parse loop does not allocate per field.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Slot {
    buf: String,
    set: bool,
}

impl Slot {
    pub fn set(&mut self, s: &str) {
        self.buf.clear();
        self.buf.push_str(s);
        self.set = true;
    }

    /// Sets the value only when none was set yet (first alias wins).
    pub fn set_if_empty(&mut self, s: &str) {
        if !self.set {
            self.set(s);
        }
    }

    pub fn get(&self) -> Option<&str> {
        if self.set {
            Some(&self.buf)
        } else {
            None
        }
    }

    pub fn is_set(&self) -> bool {
        self.set
    }

    pub fn clear(&mut self) {
        self.set = false;
    }
}

/// The values one parser extracted from one line. Reused line after line
/// (`clear`) so parsing allocates only when a value outgrows its buffer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    /// Microseconds since the Unix epoch, UTC.
    pub ts: Option<i64>,
    pub level: Option<Level>,
    pub service: Slot,
    pub host: Slot,
    pub message: Slot,
    pub status: Option<i32>,
    pub latency_ms: Option<f64>,
    pub bytes: Option<i64>,
    pub client_ip: Slot,
    pub method: Slot,
    pub path: Slot,
    /// Unknown fields as the inside of a JSON object (`"k":v,"k2":v2`), or empty.
    pub extra: String,
}

impl Fields {
    pub fn clear(&mut self) {
        self.ts = None;
        self.level = None;
        self.service.clear();
        self.host.clear();
        self.message.clear();
        self.status = None;
        self.latency_ms = None;
        self.bytes = None;
        self.client_ip.clear();
        self.method.clear();
        self.path.clear();
        self.extra.clear();
    }

    /// Adds one unknown field to `extra`, `value_json` being valid JSON text.
    pub fn push_extra_raw(&mut self, key: &str, value_json: &str) {
        if !self.extra.is_empty() {
            self.extra.push(',');
        }
        push_json_string(&mut self.extra, key);
        self.extra.push(':');
        self.extra.push_str(value_json);
    }

    /// Adds one unknown string field to `extra`.
    pub fn push_extra_str(&mut self, key: &str, value: &str) {
        if !self.extra.is_empty() {
            self.extra.push(',');
        }
        push_json_string(&mut self.extra, key);
        self.extra.push(':');
        push_json_string(&mut self.extra, value);
    }
}

/// Appends `s` as a JSON string literal. Runs without anything to escape
/// are copied whole; every character that needs escaping is ASCII, so the
/// scan is over bytes and cuts only at character boundaries.
pub fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // most strings need no escape: one branch-free pass (vectorised) tells
    let needs_escape = s.bytes().fold(false, |any, c| {
        any | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if !needs_escape {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut run = 0;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        let short = match c {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            c if c < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[run..i]);
        match short {
            Some(e) => out.push_str(e),
            None => out.push_str(&format!("\\u{c:04x}")),
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Whether `s` is a number exactly as JSON writes one
/// (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`), so that it can go into
/// `extra` as it stands. Rust's `f64` parser also takes `007`, `1.`, `+5`
/// and `-inf`, which are not JSON.
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// A growable string column: one contiguous buffer plus offsets, with nulls.
/// Mirrors Arrow's Utf8 layout so it converts without copying strings twice.
#[derive(Debug, Clone)]
pub struct StrColumn {
    pub data: String,
    pub offsets: Vec<i32>,
    pub valid: Vec<bool>,
}

impl Default for StrColumn {
    fn default() -> Self {
        StrColumn {
            data: String::new(),
            offsets: vec![0],
            valid: Vec::new(),
        }
    }
}

impl StrColumn {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        StrColumn {
            data: String::with_capacity(bytes),
            offsets,
            valid: Vec::with_capacity(rows),
        }
    }

    pub fn push(&mut self, v: Option<&str>) {
        match v {
            Some(s) => {
                self.data.push_str(s);
                self.valid.push(true);
            }
            None => self.valid.push(false),
        }
        self.offsets.push(self.data.len() as i32);
    }

    pub fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        if self.valid[i] {
            Some(&self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize])
        } else {
            None
        }
    }

    /// Appends all rows of `other`.
    pub fn extend(&mut self, other: &StrColumn) {
        let base = self.data.len() as i32;
        self.data.push_str(&other.data);
        self.offsets
            .extend(other.offsets[1..].iter().map(|o| o + base));
        self.valid.extend_from_slice(&other.valid);
    }
}

/// Columnar batch of parsed lines, in input order. Parsers append; the store
/// turns it into an Arrow record batch; features read the numeric columns.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub ts: Vec<Option<i64>>,
    pub level: Vec<Option<Level>>,
    pub service: StrColumn,
    pub host: StrColumn,
    pub message: StrColumn,
    pub template_id: Vec<u32>,
    pub status: Vec<Option<i32>>,
    pub latency_ms: Vec<Option<f64>>,
    pub bytes: Vec<Option<i64>>,
    pub client_ip: StrColumn,
    pub method: StrColumn,
    pub path: StrColumn,
    pub line_no: Vec<i64>,
    pub extra: StrColumn,
    /// Per-line source, when lines of one batch come from several sources
    /// (AMQP messages); `None` means the batch's single source.
    pub sources: Option<StrColumn>,
}

impl LogBatch {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        LogBatch {
            ts: Vec::with_capacity(rows),
            level: Vec::with_capacity(rows),
            service: StrColumn::with_capacity(rows, rows * 8),
            host: StrColumn::with_capacity(rows, rows * 8),
            message: StrColumn::with_capacity(rows, bytes / 2),
            template_id: Vec::with_capacity(rows),
            status: Vec::with_capacity(rows),
            latency_ms: Vec::with_capacity(rows),
            bytes: Vec::with_capacity(rows),
            client_ip: StrColumn::with_capacity(rows, rows * 12),
            method: StrColumn::with_capacity(rows, rows * 4),
            path: StrColumn::with_capacity(rows, rows * 16),
            line_no: Vec::with_capacity(rows),
            extra: StrColumn::with_capacity(rows, 0),
            sources: None,
        }
    }

    pub fn len(&self) -> usize {
        self.line_no.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line_no.is_empty()
    }

    /// Appends one parsed line. `template_id` is filled later by the miner.
    pub fn push(&mut self, line_no: i64, f: &Fields) {
        self.ts.push(f.ts);
        self.level.push(f.level);
        self.service.push(f.service.get());
        self.host.push(f.host.get());
        self.message.push(f.message.get());
        self.status.push(f.status);
        self.latency_ms.push(f.latency_ms);
        self.bytes.push(f.bytes);
        self.client_ip.push(f.client_ip.get());
        self.method.push(f.method.get());
        self.path.push(f.path.get());
        self.line_no.push(line_no);
        if f.extra.is_empty() {
            self.extra.push(None);
        } else {
            self.extra.data.push('{');
            self.extra.data.push_str(&f.extra);
            self.extra.data.push('}');
            self.extra.valid.push(true);
            self.extra.offsets.push(self.extra.data.len() as i32);
        }
    }

    /// Appends all rows of `other` (used to join per-chunk batches in order).
    pub fn extend(&mut self, other: &LogBatch) {
        self.ts.extend_from_slice(&other.ts);
        self.level.extend_from_slice(&other.level);
        self.service.extend(&other.service);
        self.host.extend(&other.host);
        self.message.extend(&other.message);
        self.template_id.extend_from_slice(&other.template_id);
        self.status.extend_from_slice(&other.status);
        self.latency_ms.extend_from_slice(&other.latency_ms);
        self.bytes.extend_from_slice(&other.bytes);
        self.client_ip.extend(&other.client_ip);
        self.method.extend(&other.method);
        self.path.extend(&other.path);
        self.line_no.extend_from_slice(&other.line_no);
        self.extra.extend(&other.extra);
    }

    /// The grouping key of line `i` for windows: service, else host, else "-".
    pub fn group_key(&self, i: usize) -> &str {
        self.service
            .get(i)
            .or_else(|| self.host.get(i))
            .unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_told_from_what_only_rust_parses() {
        for ok in ["0", "-0", "42", "-3.25", "1e5", "1E+5", "2.5e-3", "0.5"] {
            assert!(is_json_number(ok), "{ok}");
            assert!(serde_json::from_str::<f64>(ok).is_ok(), "{ok}");
        }
        for bad in [
            "007", "1.", ".5", "+5", "-", "", "-inf", "NaN", "1e", "1.e3", "0x10", "1_000",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn trim_quick_trims_as_trim_does() {
        for s in [
            "",
            " ",
            "info",
            " info",
            "info ",
            "\tinfo\n",
            "\u{a0}info",
            "info\u{3000}",
            "é",
            "éa",
            "aé",
            "\u{85}x",
            "x\u{2028}",
            "\u{1f}x",
            "x\u{7f}",
            "a b",
        ] {
            assert_eq!(trim_quick(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn level_aliases_normalise() {
        for (s, l) in [
            ("warn", Level::Warn),
            ("WARNING", Level::Warn),
            ("W", Level::Warn),
            ("err", Level::Error),
            ("E", Level::Error),
            ("fatal", Level::Fatal),
            ("CRITICAL", Level::Fatal),
            ("notice", Level::Info),
            ("50", Level::Error),
            ("dbg", Level::Debug),
            // the spellings taken before lowercasing, and their neighbours
            ("info", Level::Info),
            ("INFO", Level::Info),
            ("Info", Level::Info),
            (" info ", Level::Info),
            ("WARN", Level::Warn),
            ("Warn", Level::Warn),
            ("error", Level::Error),
            ("ERROR", Level::Error),
            ("Error\n", Level::Error),
            ("debug", Level::Debug),
            ("DEBUG", Level::Debug),
            ("dEbUg", Level::Debug),
        ] {
            assert_eq!(Level::parse(s), Some(l), "{s}");
        }
        assert_eq!(Level::parse("hello"), None);
        assert_eq!(Level::parse(""), None);
    }

    #[test]
    fn str_column_round_trips_nulls_and_extend() {
        let mut a = StrColumn::default();
        a.push(Some("ab"));
        a.push(None);
        let mut b = StrColumn::default();
        b.push(Some("c"));
        a.extend(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(0), Some("ab"));
        assert_eq!(a.get(1), None);
        assert_eq!(a.get(2), Some("c"));
    }

    #[test]
    fn json_string_escapes_controls() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\\n\u{1}");
        assert_eq!(s, r#""a\"b\\\n\u0001""#);
        s.clear();
        push_json_string(&mut s, "café \"é\"\t\u{1f}ü");
        assert_eq!(s, r#""café \"é\"\t\u001fü""#);
        s.clear();
        push_json_string(&mut s, "");
        assert_eq!(s, r#""""#);
        // plain text of any length is copied as it is
        let plain = "req-47ae79ad3f12bea3 naïve ✓ ".repeat(3);
        s.clear();
        push_json_string(&mut s, &plain);
        assert_eq!(s, format!("\"{plain}\""));
        // a character to escape anywhere in a long string is escaped there
        for at in 0..40 {
            for c in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
                let mut text: String = "x".repeat(40);
                text.insert(at, c);
                s.clear();
                push_json_string(&mut s, &text);
                let back: String = serde_json::from_str(&s).unwrap();
                assert_eq!(back, text, "{s}");
            }
        }
    }
}
