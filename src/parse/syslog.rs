//! Owns syslog: RFC 5424 (`<PRI>1 TS HOST APP PROCID MSGID [SD] MSG`) and
//! RFC 3164 / BSD (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, PRI optional as in
//! /var/log/syslog files, or an ISO timestamp as rsyslog writes it).

use super::{plain, time};
use crate::record::{Fields, Level};

fn parse_pri(line: &str) -> Result<(Option<u8>, &str), String> {
    if !line.starts_with('<') {
        return Ok((None, line));
    }
    let end = line[..line.len().min(6)]
        .find('>')
        .ok_or_else(|| "syslog: unterminated <PRI>".to_string())?;
    let pri: u16 = line[1..end]
        .parse()
        .map_err(|_| format!("syslog: bad PRI {:?}", &line[1..end]))?;
    if pri > 191 {
        return Err(format!("syslog: PRI {pri} out of range"));
    }
    Ok((Some((pri % 8) as u8), &line[end + 1..]))
}

fn next_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    match s.find(' ') {
        Some(p) => Some((&s[..p], &s[p + 1..])),
        None => Some((s, "")),
    }
}

/// Parses one syslog line into `f`.
pub fn parse_line(line: &str, f: &mut Fields, year: i64) -> Result<(), String> {
    let (sev, rest) = parse_pri(line)?;
    if let Some(sev) = sev {
        f.level = Some(Level::from_syslog_severity(sev));
    }
    if let Some(r) = rest.strip_prefix("1 ") {
        parse_5424(r, f)?;
    } else {
        parse_3164(rest, f, year)?;
    }
    if f.level.is_none() {
        f.level = f.message.get().and_then(plain::level_in_message);
    }
    Ok(())
}

fn nil(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

fn parse_5424(r: &str, f: &mut Fields) -> Result<(), String> {
    let (ts, r) = next_token(r).ok_or("syslog 5424: missing timestamp")?;
    if ts != "-" {
        let (us, used) = time::parse_iso_prefix(ts)
            .ok_or_else(|| format!("syslog 5424: bad timestamp {ts:?}"))?;
        if used != ts.len() {
            return Err(format!("syslog 5424: bad timestamp {ts:?}"));
        }
        f.ts = Some(us);
    }
    let (host, r) = next_token(r).ok_or("syslog 5424: missing hostname")?;
    let (app, r) = next_token(r).ok_or("syslog 5424: missing app-name")?;
    let (procid, r) = next_token(r).ok_or("syslog 5424: missing procid")?;
    let (msgid, r) = next_token(r).ok_or("syslog 5424: missing msgid")?;
    if let Some(h) = nil(host) {
        f.host.set(h);
    }
    if let Some(a) = nil(app) {
        f.service.set(a);
    }
    if let Some(p) = nil(procid) {
        f.push_extra_str("pid", p);
    }
    if let Some(m) = nil(msgid) {
        f.push_extra_str("msgid", m);
    }
    // structured data: "-" or one or more [..] elements
    let r = r.trim_start_matches(' ');
    let msg = if let Some(after) = r.strip_prefix('-') {
        after
    } else if r.starts_with('[') {
        let b = r.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i] == b'[' {
            let mut in_q = false;
            i += 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 1,
                    b'"' => in_q = !in_q,
                    b']' if !in_q => break,
                    _ => {}
                }
                i += 1;
            }
            if i >= b.len() {
                return Err("syslog 5424: unterminated structured data".into());
            }
            i += 1;
        }
        f.push_extra_str("sd", &r[..i]);
        &r[i..]
    } else if r.is_empty() {
        ""
    } else {
        return Err("syslog 5424: bad structured data".into());
    };
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    f.message.set(msg);
    Ok(())
}

fn parse_3164(r: &str, f: &mut Fields, year: i64) -> Result<(), String> {
    let rest = if let Some((us, used)) = time::parse_syslog_prefix(r, year) {
        f.ts = Some(us);
        &r[used..]
    } else if let Some((us, used)) = time::parse_iso_prefix(r) {
        f.ts = Some(us);
        &r[used..]
    } else {
        return Err("syslog: no timestamp after PRI".into());
    };
    let (host, rest) = next_token(rest).ok_or("syslog: missing hostname")?;
    f.host.set(host);
    // TAG[PID]: message   (the tag is optional)
    let rest = rest.trim_start_matches(' ');
    let tag_end = rest
        .find(": ")
        .filter(|&p| p <= 48 && !rest[..p].contains(' '));
    match tag_end {
        Some(p) => {
            let tag = &rest[..p];
            let (name, pid) = match tag.find('[') {
                Some(b) if tag.ends_with(']') => (&tag[..b], Some(&tag[b + 1..tag.len() - 1])),
                _ => (tag, None),
            };
            f.service.set(name);
            if let Some(pid) = pid {
                f.push_extra_str("pid", pid);
            }
            f.message.set(&rest[p + 2..]);
        }
        None => f.message.set(rest),
    }
    Ok(())
}

/// True when the line starts like syslog (format detection).
pub fn looks_like(line: &str, year: i64) -> bool {
    let (_, rest) = match parse_pri(line) {
        Ok(x) => x,
        Err(_) => return false,
    };
    if line.starts_with('<') {
        return true;
    }
    time::parse_syslog_prefix(rest, year).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Fields, String> {
        let mut f = Fields::default();
        parse_line(line, &mut f, 2023).map(|_| f)
    }

    #[test]
    fn rfc5424() {
        let f = parse(r#"<165>1 2023-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App"] An application event"#).unwrap();
        assert_eq!(f.level, Some(Level::Info));
        assert_eq!(f.host.get(), Some("mymachine.example.com"));
        assert_eq!(f.service.get(), Some("evntslog"));
        assert_eq!(f.message.get(), Some("An application event"));
        assert_eq!(f.ts, Some(1_697_062_455_003_000));
        assert!(f.extra.contains("msgid"));
    }

    #[test]
    fn rfc3164_with_and_without_pri() {
        let f =
            parse("<34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed for lonvick").unwrap();
        assert_eq!(f.level, Some(Level::Fatal));
        assert_eq!(f.service.get(), Some("su"));
        assert_eq!(f.host.get(), Some("mymachine"));
        assert_eq!(f.message.get(), Some("'su root' failed for lonvick"));
        assert!(f.extra.contains(r#""pid":"231""#));
        let f = parse("Oct  1 02:00:01 web1 CRON[99]: (root) CMD (run-parts)").unwrap();
        assert_eq!(f.service.get(), Some("CRON"));
        assert_eq!(f.level, None);
        let f = parse("2023-10-11T22:14:15.5+00:00 web1 sshd[1]: error: maximum auth attempts")
            .unwrap();
        assert_eq!(f.level, Some(Level::Error));
    }

    #[test]
    fn malformed() {
        assert!(parse("<999>Oct 11 22:14:15 h x: y").is_err());
        assert!(parse("<13>no timestamp here").is_err());
        assert!(parse("<13>1 notatime host app - - - msg").is_err());
    }
}
