//! Owns the mapping from field names seen in the wild (JSON, ECS dotted or
//! nested keys, logfmt, regex group names) onto LogSentry's columns, with
//! unit handling for durations and normalisation of levels and timestamps.
//! Shared by every key/value format so aliases behave the same everywhere.

use super::time;
use crate::record::{Fields, Level};

/// A scalar value as a key/value parser found it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    /// A number with its source text (kept for `extra`).
    Num(f64, &'a str),
    Bool(bool),
    Null,
}

/// Which column a key maps to, with the unit of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Ts,
    Level,
    Message,
    Service,
    Host,
    Status,
    /// Multiplier that turns the number into milliseconds.
    Latency(f64),
    Bytes,
    ClientIp,
    Method,
    Path,
    /// A request line `GET /x HTTP/1.1`: split into method and path.
    Request,
}

/// Every known key (lowercase) by the column it maps to.
const ALIASES: &[(Target, &[&str])] = &[
    (
        Target::Ts,
        &[
            "ts",
            "time",
            "timestamp",
            "@timestamp",
            "datetime",
            "date",
            "asctime",
            "event_time",
            "eventtime",
            "log.timestamp",
            "time_local",
            "time_iso8601",
        ],
    ),
    (
        Target::Level,
        &[
            "level",
            "lvl",
            "severity",
            "loglevel",
            "log_level",
            "log.level",
            "levelname",
            "level_name",
            "severity_text",
            "log.severity",
        ],
    ),
    (
        Target::Message,
        &[
            "msg",
            "message",
            "short_message",
            "log",
            "text",
            "event.original_message",
        ],
    ),
    (
        Target::Service,
        &[
            "service",
            "app",
            "application",
            "service.name",
            "svc",
            "component",
            "service_name",
            "app_name",
            "appname",
            "program",
            "application_name",
        ],
    ),
    (
        Target::Host,
        &[
            "host",
            "hostname",
            "host.name",
            "host.hostname",
            "node",
            "server",
            "server_name",
        ],
    ),
    (
        Target::Status,
        &[
            "status",
            "status_code",
            "statuscode",
            "http.response.status_code",
            "http_status",
            "response_code",
            "http.status_code",
            "response.status",
            "http_status_code",
        ],
    ),
    (
        Target::Latency(1.0),
        &[
            "latency",
            "latency_ms",
            "duration",
            "duration_ms",
            "response_time",
            "response_time_ms",
            "elapsed",
            "elapsed_ms",
            "took",
            "took_ms",
            "rt",
            "responsetime",
            "time_ms",
            "request_duration_ms",
        ],
    ),
    (
        Target::Latency(1000.0),
        &[
            "request_time",
            "upstream_response_time",
            "duration_s",
            "duration_sec",
            "duration_seconds",
            "latency_s",
            "latency_seconds",
            "elapsed_s",
            "response_time_s",
        ],
    ),
    (
        Target::Latency(0.001),
        &["duration_us", "latency_us", "elapsed_us", "duration_micros"],
    ),
    (
        Target::Latency(1e-6),
        &["event.duration", "duration_ns", "latency_ns", "elapsed_ns"],
    ),
    (
        Target::Bytes,
        &[
            "bytes",
            "size",
            "body_bytes_sent",
            "bytes_sent",
            "response_size",
            "http.response.body.bytes",
            "http.response.bytes",
            "content_length",
            "resp_bytes",
            "response_bytes",
        ],
    ),
    (
        Target::ClientIp,
        &[
            "client_ip",
            "clientip",
            "client",
            "ip",
            "remote_addr",
            "remote_ip",
            "client.ip",
            "source.ip",
            "client.address",
            "src_ip",
            "user_ip",
            "remote_host",
        ],
    ),
    (
        Target::Method,
        &[
            "method",
            "http.method",
            "http.request.method",
            "verb",
            "request_method",
            "http_method",
        ],
    ),
    (
        Target::Path,
        &[
            "path",
            "url",
            "uri",
            "url.path",
            "url.original",
            "request_uri",
            "request_path",
            "endpoint",
            "route",
            "http.url",
        ],
    ),
    (Target::Request, &["request"]),
];

/// Longest key that can be known (longer keys go to `extra` unlooked).
const MAX_KEY: usize = 48;

/// Slots of the per-thread cache of recent keys: pairs of two, a power of
/// two in all.
const RECENT_SLOTS: usize = 256;

/// One remembered key (as written, up to `MAX_KEY` bytes) and its column.
#[derive(Clone, Copy)]
struct RecentKey {
    len: u8,
    key: [u8; MAX_KEY],
    target: Option<Target>,
}

impl RecentKey {
    const EMPTY: RecentKey = RecentKey {
        len: u8::MAX,
        key: [0; MAX_KEY],
        target: None,
    };

    /// `kb` (at most `MAX_KEY` bytes) remembered with its column.
    fn new(kb: &[u8], target: Option<Target>) -> RecentKey {
        let mut key = [0; MAX_KEY];
        key[..kb.len()].copy_from_slice(kb);
        RecentKey {
            len: kb.len() as u8,
            key,
            target,
        }
    }

    /// Whether this is `kb` (never for `EMPTY`, whatever `kb`'s length).
    fn holds(&self, kb: &[u8]) -> bool {
        self.len as usize == kb.len() && self.key.get(..kb.len()) == Some(kb)
    }
}

thread_local! {
    static RECENT: std::cell::RefCell<[RecentKey; RECENT_SLOTS]> =
        const { std::cell::RefCell::new([RecentKey::EMPTY; RECENT_SLOTS]) };
}

/// The even slot of the pair a key (1..=`MAX_KEY` bytes) is cached in: its
/// length and its first two and last two bytes, multiplied into the top
/// bits. (Length, first and last byte alone put `ts` and `latency_ms` in one
/// slot.)
fn recent_pair(kb: &[u8]) -> usize {
    let n = kb.len();
    let bytes = u64::from(kb[0])
        | u64::from(kb[1.min(n - 1)]) << 8
        | u64::from(kb[n.saturating_sub(2)]) << 16
        | u64::from(kb[n - 1]) << 24
        | (n as u64) << 32;
    let h = bytes.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 56) as usize & (RECENT_SLOTS - 1)) & !1
}

/// `target_for` through a two-way cache of the keys seen last: lines of one
/// file repeat the same few keys, and comparing a key as written is cheaper
/// than lowercasing and looking it up. A key missed goes first in its pair,
/// the pair's other key second.
fn target_cached(key: &str) -> Option<Target> {
    let kb = key.as_bytes();
    if kb.is_empty() || kb.len() > MAX_KEY {
        return None;
    }
    let pair = recent_pair(kb);
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        if r[pair].holds(kb) {
            return r[pair].target;
        }
        if r[pair + 1].holds(kb) {
            return r[pair + 1].target;
        }
        let target = target_for(key);
        r[pair + 1] = r[pair];
        r[pair] = RecentKey::new(kb, target);
        target
    })
}

/// The column a key maps to, case-insensitively: one hash lookup of the
/// lowercased key.
fn target_for(key: &str) -> Option<Target> {
    static BY_NAME: std::sync::LazyLock<ahash::AHashMap<&'static str, Target>> =
        std::sync::LazyLock::new(|| {
            ALIASES
                .iter()
                .flat_map(|(t, names)| names.iter().map(move |n| (*n, *t)))
                .collect()
        });
    let mut buf = [0u8; MAX_KEY];
    let kb = key.as_bytes();
    if kb.len() > buf.len() {
        return None;
    }
    for (i, b) in kb.iter().enumerate() {
        buf[i] = b.to_ascii_lowercase();
    }
    // SAFETY: `key` is UTF-8 and ASCII lowercasing leaves every other byte
    // as it was, so `buf[..len]` is UTF-8 too.
    let k = unsafe { std::str::from_utf8_unchecked(&buf[..kb.len()]) };
    BY_NAME.get(k).copied()
}

/// Powers of ten that an `f64` holds exactly.
const EXACT_POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The value of a plain decimal (`-?digits(.digits)?`, at most 15 digits
/// in all), the shape of nearly every number in logs, without the general
/// parser: its digits as an integer and a power of ten are both exact in an
/// `f64`, so their quotient is the correctly rounded value, as `str::parse`
/// gives. `None` for anything else (exponents, more digits), which `parse`
/// reads.
fn simple_number(tok: &str) -> Option<f64> {
    let b = tok.as_bytes();
    let neg = b.first() == Some(&b'-');
    let mut i = usize::from(neg);
    let mut mantissa: u64 = 0;
    let digits_from = |i: &mut usize, mantissa: &mut u64| {
        let from = *i;
        while let Some(d) = b.get(*i).filter(|c| c.is_ascii_digit()) {
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            *i += 1;
        }
        *i - from
    };
    let int_digits = digits_from(&mut i, &mut mantissa);
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac = digits_from(&mut i, &mut mantissa);
        if frac == 0 {
            return None;
        }
    }
    // wrapping arithmetic is fine: more than 15 digits are refused here
    if int_digits == 0 || i != b.len() || int_digits + frac > 15 {
        return None;
    }
    let v = mantissa as f64 / EXACT_POW10[frac];
    Some(if neg { -v } else { v })
}

/// A number as Rust reads one (`str::parse::<f64>`), plain decimals by
/// the quicker `simple_number`.
pub fn parse_number(tok: &str) -> Result<f64, std::num::ParseFloatError> {
    simple_number(tok).map_or_else(|| tok.parse::<f64>(), Ok)
}

/// Parses a duration text such as `12ms`, `1.5s`, `350us`, `2m`, or a bare
/// number in `default_ms_per_unit`. Returns milliseconds.
pub fn parse_duration_ms(s: &str, default_ms_per_unit: f64) -> Option<f64> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let v = parse_number(num).ok()?;
    let mul = match unit.trim() {
        "" => default_ms_per_unit,
        "ms" => 1.0,
        "s" | "sec" | "secs" => 1000.0,
        "us" | "µs" | "μs" => 0.001,
        "ns" => 1e-6,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = v * mul;
    ms.is_finite().then_some(ms)
}

/// Splits an HTTP request line into (method, path).
pub fn split_request_line(s: &str) -> Option<(&str, &str)> {
    let mut it = s.split(' ');
    let method = it.next()?;
    let path = it.next()?;
    if method.is_empty()
        || method.len() > 10
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || path.is_empty()
    {
        return None;
    }
    Some((method, path))
}

/// Assigns one key/value to `f`. Unknown keys and values that do not fit
/// their column (a non-numeric status, say) are kept in `extra`.
pub fn assign(f: &mut Fields, key: &str, v: Value<'_>, year_hint: i64) {
    assign_to(f, target_cached(key), key, v, year_hint);
}

/// The columns of the keys of the line parsed last, by their place in it:
/// lines of one source repeat their keys in one order, so a key compared
/// with the key at its place in the line before needs no cache lookup.
#[derive(Default)]
pub struct KeyMemo {
    keys: Vec<RecentKey>,
}

impl KeyMemo {
    /// Places remembered; keys further on are looked up in the cache.
    const PLACES: usize = 64;

    /// The key remembered at place `at`, as written, if one is.
    pub fn key_at(&self, at: usize) -> Option<&[u8]> {
        self.keys
            .get(at)
            .and_then(|k| k.key.get(..usize::from(k.len)))
    }

    /// `assign` for a key that is the one `key_at(at)` gave (the caller
    /// compared them): its column is taken as remembered.
    pub fn assign_remembered(
        &self,
        at: usize,
        f: &mut Fields,
        key: &str,
        v: Value<'_>,
        year_hint: i64,
    ) {
        let target = self.keys.get(at).and_then(|k| k.target);
        assign_to(f, target, key, v, year_hint);
    }

    /// `assign` for the key at place `at` (0-based) of its line.
    pub fn assign(&mut self, at: usize, f: &mut Fields, key: &str, v: Value<'_>, year_hint: i64) {
        let kb = key.as_bytes();
        let target = match self.keys.get(at) {
            Some(k) if k.holds(kb) => k.target,
            _ => {
                let target = target_cached(key);
                if at < Self::PLACES {
                    // a key too long to remember still holds its place, so
                    // the keys after it are remembered at theirs
                    let k = if kb.len() <= MAX_KEY {
                        RecentKey::new(kb, target)
                    } else {
                        RecentKey::EMPTY
                    };
                    let n = self.keys.len();
                    match self.keys.get_mut(at) {
                        Some(slot) => *slot = k,
                        None if at == n => self.keys.push(k),
                        None => {}
                    }
                }
                target
            }
        };
        assign_to(f, target, key, v, year_hint);
    }
}

/// `assign` with the key's column already found.
fn assign_to(f: &mut Fields, target: Option<Target>, key: &str, v: Value<'_>, year_hint: i64) {
    let known = match target {
        Some(t) => assign_known(f, t, v, year_hint),
        None => false,
    };
    if !known {
        match v {
            Value::Str(s) => f.push_extra_str(key, s),
            Value::Num(_, raw) if crate::record::is_json_number(raw) => f.push_extra_raw(key, raw),
            // `007`, `-inf`: numbers to Rust, not to JSON; kept as written
            Value::Num(_, raw) => f.push_extra_str(key, raw),
            Value::Bool(b) => f.push_extra_raw(key, if b { "true" } else { "false" }),
            Value::Null => f.push_extra_raw(key, "null"),
        }
    }
}

fn assign_known(f: &mut Fields, t: Target, v: Value<'_>, year_hint: i64) -> bool {
    use Target::*;
    match (t, v) {
        (_, Value::Null) => true,
        (Ts, Value::Str(s)) if f.ts.is_none() => match time::parse_any(s, year_hint) {
            Some(us) => {
                f.ts = Some(us);
                true
            }
            None => false,
        },
        (Ts, Value::Num(n, _)) if f.ts.is_none() => match time::from_epoch_number(n) {
            Some(us) => {
                f.ts = Some(us);
                true
            }
            None => false,
        },
        (Level, Value::Str(s)) if f.level.is_none() => match crate::record::Level::parse(s) {
            Some(l) => {
                f.level = Some(l);
                true
            }
            None => false,
        },
        (Level, Value::Num(_, raw)) if f.level.is_none() => {
            match crate::record::Level::parse(raw) {
                Some(l) => {
                    f.level = Some(l);
                    true
                }
                None => false,
            }
        }
        (Message, Value::Str(s)) if !f.message.is_set() => {
            f.message.set(s);
            true
        }
        (Service, Value::Str(s)) if !f.service.is_set() => {
            f.service.set(s);
            true
        }
        (Host, Value::Str(s)) if !f.host.is_set() => {
            f.host.set(s);
            true
        }
        (Status, Value::Num(n, _)) if f.status.is_none() && (0.0..1000.0).contains(&n) => {
            f.status = Some(n as i32);
            true
        }
        (Status, Value::Str(s)) if f.status.is_none() => match s.trim().parse::<i32>() {
            Ok(n) if (0..1000).contains(&n) => {
                f.status = Some(n);
                true
            }
            _ => false,
        },
        (Latency(mul), Value::Num(n, _)) if f.latency_ms.is_none() => {
            f.latency_ms = Some(n * mul);
            true
        }
        (Latency(mul), Value::Str(s)) if f.latency_ms.is_none() => {
            match parse_duration_ms(s, mul) {
                Some(ms) => {
                    f.latency_ms = Some(ms);
                    true
                }
                None => false,
            }
        }
        (Bytes, Value::Num(n, _)) if f.bytes.is_none() && n >= 0.0 => {
            f.bytes = Some(n as i64);
            true
        }
        (Bytes, Value::Str(s)) if f.bytes.is_none() => match s.trim().parse::<i64>() {
            Ok(n) => {
                f.bytes = Some(n);
                true
            }
            Err(_) => false,
        },
        (ClientIp, Value::Str(s)) if !f.client_ip.is_set() => {
            f.client_ip.set(s);
            true
        }
        (Method, Value::Str(s)) if !f.method.is_set() => {
            f.method.set(s);
            true
        }
        (Path, Value::Str(s)) if !f.path.is_set() => {
            f.path.set(s);
            true
        }
        (Request, Value::Str(s)) => match split_request_line(s) {
            Some((m, p)) => {
                f.method.set_if_empty(m);
                f.path.set_if_empty(p);
                false // keep the full request line in extra too
            }
            None => false,
        },
        _ => false,
    }
}

/// Fills what a key/value line left empty: an access-log style message from
/// method and path, and ERROR/WARN from a 5xx/4xx status when no level was given.
pub fn finish(f: &mut Fields) {
    if !f.message.is_set() {
        if let (Some(m), Some(p)) = (f.method.get(), f.path.get()) {
            let msg = format!("{m} {p}");
            f.message.set(&msg);
        }
    }
    if f.level.is_none() {
        if let Some(st) = f.status {
            f.level = Some(level_from_status(st));
        }
    }
}

/// The level an access log line implies from its HTTP status.
pub fn level_from_status(status: i32) -> Level {
    match status {
        500..=599 => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_numbers_read_exactly_as_the_general_parser_reads_them() {
        let mut toks: Vec<String> = [
            "0",
            "-0",
            "7",
            "007",
            "57.2",
            "0.1",
            "0.3",
            "-12.5",
            "4891",
            "200",
            "1.5",
            "999999999999999",
            "0.00000000000001",
            "123456789.012345",
            "3.14159",
            "0000012.5",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        // a spread of decimals with up to 15 digits
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 15 + 1) as usize;
            let m = x % 10u64.pow(digits as u32);
            let frac = (x >> 40) as usize % (digits + 1);
            let text = format!("{m:0digits$}");
            let (int, dec) = text.split_at(digits - frac);
            let int = if int.is_empty() { "0" } else { int };
            let sign = if x & 1 == 1 { "-" } else { "" };
            toks.push(if frac == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{dec}")
            });
        }
        for t in &toks {
            let want: f64 = t.parse().unwrap();
            let digits = t.bytes().filter(u8::is_ascii_digit).count();
            match simple_number(t) {
                Some(got) => assert_eq!(got.to_bits(), want.to_bits(), "{t}"),
                None => assert!(digits > 15, "{t} is simple"),
            }
        }
        // everything else is left to the general parser
        for t in [
            "1e3",
            "1.",
            ".5",
            "-",
            "",
            "1.2.3",
            "1234567890123456",
            "+5",
            "-inf",
            "0x10",
            "0.000000000000001",
            "-12.",
            "12.5x",
        ] {
            assert_eq!(simple_number(t), None, "{t}");
        }
    }

    #[test]
    fn the_key_memo_assigns_as_the_cache_does_whatever_the_key_order() {
        // lines whose keys change order, case, number and kind: every line
        // must come out as `assign` alone makes it
        let lines: [&[(&str, Value<'_>)]; 5] = [
            &[
                ("ts", Value::Str("2024-01-01T00:00:00Z")),
                ("level", Value::Str("warn")),
                ("msg", Value::Str("a")),
            ],
            &[
                ("level", Value::Str("error")),
                ("ts", Value::Num(1.7e9, "1700000000")),
                ("msg", Value::Str("b")),
            ],
            &[
                ("LEVEL", Value::Str("info")),
                ("user", Value::Str("bob")),
                ("status", Value::Num(503.0, "503")),
                ("latency_ms", Value::Num(1.5, "1.5")),
            ],
            &[("user", Value::Str("amy")), ("LEVEL", Value::Str("debug"))],
            &[
                ("ts", Value::Str("2024-01-01T00:00:01Z")),
                ("level", Value::Str("warn")),
                ("msg", Value::Str("c")),
                ("x", Value::Null),
            ],
        ];
        let mut memo = KeyMemo::default();
        for round in 0..3 {
            for (n, line) in lines.iter().enumerate() {
                let (mut by_memo, mut alone) = (Fields::default(), Fields::default());
                for (at, (k, v)) in line.iter().enumerate() {
                    memo.assign(at, &mut by_memo, k, *v, 2024);
                    assign(&mut alone, k, *v, 2024);
                }
                assert_eq!(by_memo, alone, "round {round}, line {n}");
                // the keys do reach their columns (not only `extra`)
                assert!(by_memo.level.is_some(), "round {round}, line {n}");
                if n == 2 {
                    assert_eq!((by_memo.status, by_memo.latency_ms), (Some(503), Some(1.5)));
                }
            }
        }
        // places past those remembered, and keys too long to remember
        let long = "k".repeat(MAX_KEY + 1);
        let mut f = Fields::default();
        memo.assign(
            KeyMemo::PLACES + 3,
            &mut f,
            "level",
            Value::Str("warn"),
            2024,
        );
        memo.assign(2, &mut f, &long, Value::Str("v"), 2024);
        memo.assign(2, &mut f, &long, Value::Str("w"), 2024);
        // the place after a long key is still remembered
        let (mut fresh, mut g) = (KeyMemo::default(), Fields::default());
        fresh.assign(0, &mut g, "ts", Value::Str("2024-01-01T00:00:00Z"), 2024);
        fresh.assign(1, &mut g, &long, Value::Str("v"), 2024);
        fresh.assign(2, &mut g, "status", Value::Num(404.0, "404"), 2024);
        assert_eq!(fresh.keys.len(), 3);
        assert!(fresh.keys[2].holds(b"status"));
        assert_eq!(g.status, Some(404));
        // a key as long as the empty slot's mark (255 bytes) is no match for it
        let longest = "q".repeat(usize::from(u8::MAX));
        memo.assign(2, &mut f, &longest, Value::Str("x"), 2024);
        assert!(f.extra.contains(longest.as_str()));
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.extra.matches(long.as_str()).count(), 2);
    }

    #[test]
    fn aliases_and_units() {
        let mut f = Fields::default();
        assign(&mut f, "log.level", Value::Str("warning"), 2024);
        assign(&mut f, "service.name", Value::Str("api"), 2024);
        assign(
            &mut f,
            "event.duration",
            Value::Num(2_500_000.0, "2500000"),
            2024,
        );
        assign(&mut f, "Status", Value::Str("503"), 2024);
        assign(&mut f, "user", Value::Str("bob"), 2024);
        assign(&mut f, "retries", Value::Num(3.0, "3"), 2024);
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.service.get(), Some("api"));
        assert_eq!(f.latency_ms, Some(2.5));
        assert_eq!(f.status, Some(503));
        assert_eq!(f.extra, r#""user":"bob","retries":3"#);
    }

    #[test]
    fn every_alias_is_lowercase_short_and_maps_to_one_column() {
        let mut seen = std::collections::HashSet::new();
        for (t, names) in ALIASES {
            for n in *names {
                assert!(seen.insert(*n), "{n} is listed twice");
                assert_eq!(*n, n.to_ascii_lowercase(), "{n} must be lowercase");
                assert!(n.len() <= MAX_KEY, "{n} is longer than MAX_KEY");
                assert_eq!(target_for(&n.to_ascii_uppercase()), Some(*t), "{n}");
            }
        }
        assert_eq!(target_for("request_id"), None);
        assert_eq!(target_for(&"x".repeat(MAX_KEY + 1)), None);
    }

    #[test]
    fn cached_lookups_agree_with_the_table_under_churn() {
        // every alias in three spellings, then unknown keys, three times over:
        // far more keys than the cache holds, so pairs are refilled again and again
        let mut keys: Vec<String> = Vec::new();
        for (_, names) in ALIASES {
            for n in *names {
                keys.push(n.to_string());
                keys.push(n.to_ascii_uppercase());
                keys.push(format!("{}{}", &n[..1].to_ascii_uppercase(), &n[1..]));
            }
        }
        keys.extend((0..400).map(|i| format!("field_{i}")));
        keys.push("x".repeat(MAX_KEY + 1));
        for _ in 0..3 {
            for k in &keys {
                assert_eq!(target_cached(k), target_for(k), "{k}");
            }
        }
        assert_eq!(target_cached(""), None);
    }

    #[test]
    fn a_remembered_key_holds_itself_and_no_other() {
        for n in 1..=MAX_KEY {
            let base = vec![b'a'; n];
            let e = RecentKey::new(&base, None);
            assert!(e.holds(&base), "{n}");
            assert!(!e.holds(&base[..n - 1]), "{n}");
            for at in 0..n {
                let mut other = base.clone();
                other[at] = b'b';
                assert!(!e.holds(&other), "length {n}, byte {at}");
            }
        }
        assert!(!RecentKey::EMPTY.holds(b""));
    }

    #[test]
    fn the_generators_keys_fit_the_key_cache() {
        // two keys fit a pair; a third would miss on every line
        let keys = [
            "ts",
            "level",
            "service",
            "host",
            "msg",
            "method",
            "path",
            "status",
            "latency_ms",
            "bytes",
            "client_ip",
            "request_id",
        ];
        let mut per_pair = std::collections::HashMap::new();
        for k in keys {
            *per_pair.entry(recent_pair(k.as_bytes())).or_insert(0) += 1;
        }
        assert!(per_pair.values().all(|&n| n <= 2), "{per_pair:?}");
    }

    #[test]
    fn duration_texts() {
        assert_eq!(parse_duration_ms("12ms", 1.0), Some(12.0));
        assert_eq!(parse_duration_ms("1.5s", 1.0), Some(1500.0));
        assert_eq!(parse_duration_ms("250us", 1.0), Some(0.25));
        assert_eq!(parse_duration_ms("0.120", 1000.0), Some(120.0));
        assert_eq!(parse_duration_ms("fast", 1.0), None);
    }

    #[test]
    fn request_line_fills_method_path_and_message() {
        let mut f = Fields::default();
        assign(&mut f, "request", Value::Str("GET /a/b?x=1 HTTP/1.1"), 2024);
        assign(&mut f, "status", Value::Num(404.0, "404"), 2024);
        finish(&mut f);
        assert_eq!(f.method.get(), Some("GET"));
        assert_eq!(f.path.get(), Some("/a/b?x=1"));
        assert_eq!(f.message.get(), Some("GET /a/b?x=1"));
        assert_eq!(f.level, Some(Level::Warn));
    }

    #[test]
    fn bad_values_go_to_extra_not_columns() {
        let mut f = Fields::default();
        assign(&mut f, "status", Value::Str("teapot"), 2024);
        assign(&mut f, "time", Value::Str("yesterday"), 2024);
        assert_eq!(f.status, None);
        assert_eq!(f.ts, None);
        assert_eq!(f.extra, r#""status":"teapot","time":"yesterday""#);
    }
}
