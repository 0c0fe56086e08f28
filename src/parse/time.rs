//! Owns timestamp parsing: RFC 3339 / ISO 8601 (with `T` or space, optional
//! fraction and zone), epoch seconds/ms/µs/ns, Apache CLF
//! (`10/Oct/2000:13:55:36 -0700`) and syslog (`Oct 11 22:14:15`, no year).
//! Everything becomes microseconds since the Unix epoch, UTC. No allocation.

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) for days since the epoch.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats epoch microseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_micros(us: i64) -> String {
    let frac_ms = us.rem_euclid(1_000_000) / 1000;
    format!("{}.{frac_ms:03}Z", format_seconds_bare(us))
}

/// Formats epoch microseconds as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds).
pub fn format_seconds(us: i64) -> String {
    format!("{}Z", format_seconds_bare(us))
}

/// `YYYY-MM-DDTHH:MM:SS` of epoch microseconds.
fn format_seconds_bare(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn digits(b: &[u8], start: usize, n: usize) -> Option<u32> {
    let s = b.get(start..start + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

thread_local! {
    /// The date part (`YYYY-MM-DD`) of the ISO timestamp this thread read
    /// last, with its day number: the lines of a log mostly share their
    /// date, so its digits and calendar arithmetic are done once per date.
    static LAST_ISO_DATE: std::cell::Cell<([u8; 10], i64)> =
        const { std::cell::Cell::new(([0; 10], 0)) };
}

/// Days since the epoch of the `YYYY-MM-DD` that `b` starts with (its
/// dashes already checked), or `None` if it is not a valid date.
fn iso_days(b: &[u8]) -> Option<i64> {
    let date: [u8; 10] = b.get(..10)?.try_into().ok()?;
    // never a date's bytes before the first one: it holds no dashes
    let (last, days) = LAST_ISO_DATE.get();
    if last == date {
        return Some(days);
    }
    let y = digits(b, 0, 4)? as i64;
    let mo = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if !valid_date(mo, d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    LAST_ISO_DATE.set((date, days));
    Some(days)
}

fn valid_date(mo: u32, d: u32) -> bool {
    (1..=12).contains(&mo) && (1..=31).contains(&d)
}

/// A time of day; second 60 is a leap second.
fn valid_time(h: u32, mi: u32, s: u32) -> bool {
    h < 24 && mi < 60 && s <= 60
}

fn valid_ymdhms(mo: u32, d: u32, h: u32, mi: u32, s: u32) -> bool {
    valid_date(mo, d) && valid_time(h, mi, s)
}

/// Parses an ISO 8601 / RFC 3339 date-time at the start of `s`.
/// Returns (micros, bytes consumed). A missing zone means UTC.
pub fn parse_iso_prefix(s: &str) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[10] != b'T' && b[10] != b' ' && b[10] != b't' {
        return None;
    }
    let days = iso_days(b)?;
    let h = digits(b, 11, 2)?;
    let mi = digits(b, 14, 2)?;
    let sec = digits(b, 17, 2)?;
    if !valid_time(h, mi, sec) {
        return None;
    }
    let mut i = 19;
    let mut frac_us: i64 = 0;
    if i < b.len() && (b[i] == b'.' || b[i] == b',') {
        i += 1;
        let start = i;
        let mut scale = 100_000i64;
        while i < b.len() && b[i].is_ascii_digit() {
            if scale > 0 {
                frac_us += (b[i] - b'0') as i64 * scale;
                scale /= 10;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let mut offset_s: i64 = 0;
    if i < b.len() {
        match b[i] {
            b'Z' | b'z' => i += 1,
            b'+' | b'-' => {
                let sign = if b[i] == b'-' { -1 } else { 1 };
                let oh = digits(b, i + 1, 2);
                if let Some(oh) = oh {
                    let (om, used) = if b.get(i + 3) == Some(&b':') {
                        (digits(b, i + 4, 2).unwrap_or(0), 6)
                    } else if let Some(om) = digits(b, i + 3, 2) {
                        (om, 5)
                    } else {
                        (0, 3)
                    };
                    offset_s = sign * (oh as i64 * 3600 + om as i64 * 60);
                    i += used;
                }
            }
            _ => {}
        }
    }
    let secs = days * 86400 + h as i64 * 3600 + mi as i64 * 60 + sec as i64 - offset_s;
    Some((secs * 1_000_000 + frac_us, i))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

fn month_from(b: &[u8]) -> Option<u32> {
    if b.len() < 3 {
        return None;
    }
    let l = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    MONTHS.iter().position(|m| **m == l).map(|p| p as u32 + 1)
}

/// Parses Apache CLF time `10/Oct/2000:13:55:36 -0700` (without brackets).
pub fn parse_clf(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let d = digits(b, 0, 2)?;
    let mo = month_from(&b[3..6])?;
    let y = digits(b, 7, 4)? as i64;
    let h = digits(b, 12, 2)?;
    let mi = digits(b, 15, 2)?;
    let sec = digits(b, 18, 2)?;
    if !valid_ymdhms(mo, d, h, mi, sec) {
        return None;
    }
    let mut offset_s = 0i64;
    if b.len() >= 26 && b[20] == b' ' && (b[21] == b'+' || b[21] == b'-') {
        let oh = digits(b, 22, 2)? as i64;
        let om = digits(b, 24, 2)? as i64;
        offset_s = (oh * 3600 + om * 60) * if b[21] == b'-' { -1 } else { 1 };
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h as i64 * 3600 + mi as i64 * 60 + sec as i64
        - offset_s;
    Some(secs * 1_000_000)
}

/// Parses the RFC 3164 timestamp `Oct 11 22:14:15` (or `Oct  1 ...`) at the start
/// of `s`; the year is `year_hint`. Returns (micros, bytes consumed).
pub fn parse_syslog_prefix(s: &str, year_hint: i64) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    if b.len() < 15 || b[3] != b' ' {
        return None;
    }
    let mo = month_from(&b[0..3])?;
    let d = if b[4] == b' ' {
        digits(b, 5, 1)?
    } else {
        digits(b, 4, 2)?
    };
    if b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let h = digits(b, 7, 2)?;
    let mi = digits(b, 10, 2)?;
    let sec = digits(b, 13, 2)?;
    if !valid_ymdhms(mo, d, h, mi, sec) {
        return None;
    }
    let mut i = 15;
    let mut frac_us = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let mut scale = 100_000i64;
        while i < b.len() && b[i].is_ascii_digit() {
            frac_us += (b[i] - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
    }
    let secs =
        days_from_civil(year_hint, mo, d) * 86400 + h as i64 * 3600 + mi as i64 * 60 + sec as i64;
    Some((secs * 1_000_000 + frac_us, i))
}

/// Interprets an epoch number by magnitude: seconds, ms, µs or ns.
pub fn from_epoch_number(v: f64) -> Option<i64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let us = if v < 1e11 {
        v * 1e6
    } else if v < 1e14 {
        v * 1e3
    } else if v < 1e17 {
        v
    } else {
        v / 1e3
    };
    Some(us as i64)
}

/// Parses any supported timestamp text in full: ISO, CLF, syslog, or an epoch number.
pub fn parse_any(s: &str, year_hint: i64) -> Option<i64> {
    let s = crate::record::trim_quick(s);
    if let Some((us, _)) = parse_iso_prefix(s) {
        return Some(us);
    }
    if let Some(us) = parse_clf(s.trim_start_matches('[').trim_end_matches(']')) {
        return Some(us);
    }
    if let Some((us, _)) = parse_syslog_prefix(s, year_hint) {
        return Some(us);
    }
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return super::fields::parse_number(s)
            .ok()
            .and_then(from_epoch_number);
    }
    None
}

/// The current UTC year, used for syslog timestamps that carry none.
pub fn current_year() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    civil_from_days(secs / 86400).0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn iso_variants() {
        assert_eq!(
            parse_iso_prefix("2023-11-14T22:13:20Z").unwrap().0,
            T0 * 1_000_000
        );
        assert_eq!(
            parse_iso_prefix("2023-11-14 22:13:20.250").unwrap().0,
            T0 * 1_000_000 + 250_000
        );
        assert_eq!(
            parse_iso_prefix("2023-11-15T00:13:20.5+02:00").unwrap().0,
            T0 * 1_000_000 + 500_000
        );
        assert_eq!(
            parse_iso_prefix("2023-11-14T17:13:20-0500 rest").unwrap(),
            (T0 * 1_000_000, 24)
        );
        assert!(parse_iso_prefix("2023-13-14T22:13:20Z").is_none());
        assert!(parse_iso_prefix("not a date at all, no").is_none());
    }

    #[test]
    fn the_remembered_date_gives_what_the_date_itself_gives() {
        // dates changing, repeating, invalid between valid ones and across
        // months, each checked against the calendar arithmetic directly
        let mut stamps = Vec::new();
        for (y, m, d) in [
            (2024, 2, 28),
            (2024, 2, 29),
            (2024, 3, 1),
            (1969, 12, 31),
            (2024, 2, 29),
        ] {
            for t in ["00:00:00Z", "23:59:60Z", "12:30:00.5+01:00"] {
                stamps.push(format!("{y:04}-{m:02}-{d:02}T{t}"));
            }
        }
        for bad in [
            "2024-00-10T00:00:00Z",
            "2024-02-32T00:00:00Z",
            "2024-0a-10T00:00:00Z",
            "2024-02-29T24:00:00Z",
        ] {
            stamps.insert(4, bad.to_string());
        }
        for s in &stamps {
            let b = s.as_bytes();
            let (y, m, d) = (
                digits(b, 0, 4).unwrap() as i64,
                digits(b, 5, 2),
                digits(b, 8, 2),
            );
            let (h, mi, sec) = (
                digits(b, 11, 2).unwrap(),
                digits(b, 14, 2).unwrap(),
                digits(b, 17, 2).unwrap(),
            );
            let want = match (m, d) {
                (Some(m), Some(d)) if valid_ymdhms(m, d, h, mi, sec) => {
                    let secs =
                        days_from_civil(y, m, d) * 86400 + i64::from(h * 3600 + mi * 60 + sec);
                    let (frac, off) = if s.ends_with("+01:00") {
                        (500_000, 3600)
                    } else {
                        (0, 0)
                    };
                    Some((secs - off) * 1_000_000 + frac)
                }
                _ => None,
            };
            assert_eq!(parse_iso_prefix(s).map(|(us, _)| us), want, "{s}");
        }
    }

    #[test]
    fn clf_and_syslog() {
        assert_eq!(
            parse_clf("14/Nov/2023:23:13:20 +0100"),
            Some(T0 * 1_000_000)
        );
        assert_eq!(
            parse_syslog_prefix("Nov 14 22:13:20 host", 2023),
            Some((T0 * 1_000_000, 15))
        );
        assert_eq!(
            parse_syslog_prefix("Nov  4 22:13:20 host", 2023).unwrap().0,
            (T0 - 10 * 86400) * 1_000_000
        );
    }

    #[test]
    fn epochs_by_magnitude() {
        let us = T0 * 1_000_000;
        assert_eq!(from_epoch_number(T0 as f64), Some(us));
        assert_eq!(from_epoch_number(T0 as f64 * 1e3), Some(us));
        assert_eq!(from_epoch_number(T0 as f64 * 1e6), Some(us));
        assert_eq!(from_epoch_number(T0 as f64 * 1e9), Some(us));
        assert_eq!(parse_any("1700000000", 2023), Some(us));
    }

    #[test]
    fn civil_round_trip_and_format() {
        for d in [-1000, 0, 19675, 60000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(format_micros(T0 * 1_000_000), "2023-11-14T22:13:20.000Z");
    }
}
