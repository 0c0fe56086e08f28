//! Owns nginx/Apache access logs: Common Log Format, Combined (referer and
//! user agent), an optional leading `vhost:port` (Apache `vhost_combined`,
//! which names the service) and an optional trailing request time (seconds
//! with a fraction, as nginx `$request_time`; a bare integer is Apache `%D`
//! microseconds).

use super::fields::{level_from_status, parse_number, split_request_line};
use super::time;
use crate::record::Fields;

fn quoted<'a>(b: &'a str, i: &mut usize) -> Result<&'a str, String> {
    let bytes = b.as_bytes();
    if bytes.get(*i) != Some(&b'"') {
        return Err(format!("access log: expected '\"' at byte {i}"));
    }
    let start = *i + 1;
    let mut j = start;
    while j < bytes.len() && bytes[j] != b'"' {
        if bytes[j] == b'\\' {
            j += 1;
        }
        j += 1;
    }
    if j >= bytes.len() {
        return Err("access log: unterminated quoted field".into());
    }
    *i = j + 1;
    Ok(&b[start..j])
}

fn token<'a>(s: &'a str, i: &mut usize) -> &'a str {
    let b = s.as_bytes();
    while *i < b.len() && b[*i] == b' ' {
        *i += 1;
    }
    let start = *i;
    while *i < b.len() && b[*i] != b' ' {
        *i += 1;
    }
    &s[start..*i]
}

fn skip_spaces(s: &str, i: &mut usize) {
    let b = s.as_bytes();
    while *i < b.len() && b[*i] == b' ' {
        *i += 1;
    }
}

/// Parses one access-log line into `f`.
pub fn parse_line(line: &str, f: &mut Fields) -> Result<(), String> {
    let bracket = line
        .find(" [")
        .ok_or_else(|| "access log: no [time] field".to_string())?;
    let head: Vec<&str> = line[..bracket]
        .split(' ')
        .filter(|t| !t.is_empty())
        .collect();
    let (vhost, client, user) = match head.as_slice() {
        [h, _l, u] => (None, *h, *u),
        [v, h, _l, u] => (Some(*v), *h, *u),
        _ => return Err("access log: expected 'host ident user' before [time]".into()),
    };
    let mut i = bracket + 2;
    let close = line[i..]
        .find(']')
        .ok_or_else(|| "access log: unterminated [time]".to_string())?;
    let ts_text = &line[i..i + close];
    f.ts =
        Some(time::parse_clf(ts_text).ok_or_else(|| format!("access log: bad time {ts_text:?}"))?);
    i += close + 1;
    skip_spaces(line, &mut i);
    let request = quoted(line, &mut i)?;
    let status_tok = token(line, &mut i);
    let status: i32 = status_tok
        .parse()
        .map_err(|_| format!("access log: bad status {status_tok:?}"))?;
    if !(100..1000).contains(&status) {
        return Err(format!("access log: bad status {status}"));
    }
    let bytes_tok = token(line, &mut i);
    let bytes = match bytes_tok {
        "-" => Some(0),
        t => Some(
            t.parse::<i64>()
                .map_err(|_| format!("access log: bad byte count {t:?}"))?,
        ),
    };
    skip_spaces(line, &mut i);
    if line.as_bytes().get(i) == Some(&b'"') {
        let referer = quoted(line, &mut i)?;
        skip_spaces(line, &mut i);
        let ua = quoted(line, &mut i)?;
        if referer != "-" {
            f.push_extra_str("referer", referer);
        }
        if ua != "-" {
            f.push_extra_str("user_agent", ua);
        }
    }
    let rest = line[i..].trim();
    if !rest.is_empty() {
        let t = rest.split(' ').next().unwrap_or("");
        if t.contains('.') {
            if let Ok(s) = parse_number(t) {
                f.latency_ms = Some(s * 1000.0);
            }
        } else if let Ok(us) = t.parse::<i64>() {
            f.latency_ms = Some(us as f64 / 1000.0);
        }
        if f.latency_ms.is_none() {
            f.push_extra_str("trailer", rest);
        }
    }
    if let Some(v) = vhost {
        let name = v.rsplit_once(':').map(|(n, _)| n).unwrap_or(v);
        f.service.set(name);
    }
    f.client_ip.set(client);
    if user != "-" {
        f.push_extra_str("user", user);
    }
    if let Some((m, p)) = split_request_line(request) {
        f.method.set(m);
        f.path.set(p);
    }
    f.message.set(request);
    f.status = Some(status);
    f.bytes = bytes;
    f.level = Some(level_from_status(status));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Level;

    fn parse(line: &str) -> Result<Fields, String> {
        let mut f = Fields::default();
        parse_line(line, &mut f).map(|_| f)
    }

    #[test]
    fn combined_with_request_time() {
        let f = parse(r#"203.0.113.9 - alice [10/Oct/2023:13:55:36 -0700] "POST /api/orders/991 HTTP/1.1" 503 1234 "https://shop/" "curl/8.0" 0.250"#).unwrap();
        assert_eq!(f.client_ip.get(), Some("203.0.113.9"));
        assert_eq!(f.method.get(), Some("POST"));
        assert_eq!(f.path.get(), Some("/api/orders/991"));
        assert_eq!(f.status, Some(503));
        assert_eq!(f.bytes, Some(1234));
        assert_eq!(f.latency_ms, Some(250.0));
        assert_eq!(f.level, Some(Level::Error));
        assert_eq!(f.ts, Some(1_696_971_336_000_000));
        assert!(f.extra.contains(r#""user_agent":"curl/8.0""#));
    }

    #[test]
    fn common_and_vhost() {
        let f =
            parse(r#"10.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.0" 200 -"#).unwrap();
        assert_eq!(f.bytes, Some(0));
        assert_eq!(f.level, Some(Level::Info));
        assert_eq!(f.service.get(), None);
        let f = parse(r#"orders:443 10.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /x HTTP/1.1" 404 12 "-" "-" 1200"#).unwrap();
        assert_eq!(f.service.get(), Some("orders"));
        assert_eq!(f.latency_ms, Some(1.2));
        assert_eq!(f.level, Some(Level::Warn));
    }

    #[test]
    fn malformed() {
        assert!(parse("just some words").is_err());
        assert!(
            parse(r#"1.2.3.4 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.0" abc 1"#).is_err()
        );
        assert!(parse(r#"1.2.3.4 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.0"#).is_err());
        assert!(parse(r#"1.2.3.4 - - [yesterday] "GET / HTTP/1.0" 200 1"#).is_err());
    }
}
