//! HTTP tests of the dashboard: `logsentry serve --no-consume` over a database
//! filled by `analyze`, every route over real HTTP, HTML escaping of log
//! strings, the SQL console's refusals, timeout and row cap, and the token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logsentry"));
    c.env_remove("LOGSENTRY_CONFIG");
    c
}

fn serve(db: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--no-consume",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Server { child, port }
}

/// GET `path`; returns (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    // bodies may be chunked: good enough for `contains` checks
    (status, body)
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn analyzed_db(dir: &Path) -> std::path::PathBuf {
    let log = dir.join("app.log");
    let out = bin()
        .args([
            "generate",
            "--lines",
            "20000",
            "--seed",
            "9",
            "--out",
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(r#"{"ts":"2026-11-09T00:00:00Z","level":"error","service":"auth","msg":"<script>alert('x')</script> & <b>bold</b>"}"#);
    text.push('\n');
    std::fs::write(&log, text).unwrap();
    let db = dir.join("w.duckdb");
    let out = bin()
        .args([
            "analyze",
            log.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--contamination",
            "0.01",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

#[test]
fn every_route_answers_and_log_strings_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = analyzed_db(dir.path());
    let srv = serve(&db, &[]);
    let p = srv.port;

    let (st, live) = get(p, "/");
    assert_eq!(st, 200);
    assert!(live.contains("Lines per minute") && live.contains("<svg"));
    assert!(
        live.contains("&lt;script&gt;alert("),
        "tail must show the line escaped"
    );
    assert!(
        !live.contains("<script>alert("),
        "a log line must never become markup"
    );
    assert!(
        !live.contains("http://") || !live.contains("src=\"http"),
        "no external resources"
    );
    let (st, api) = get(p, "/api/live?service=auth");
    assert_eq!(st, 200);
    assert!(api.contains("\"tail\"") && api.contains("\"per_minute\""));

    let (st, list) = get(p, "/api/anomalies");
    assert_eq!(st, 200);
    let id = list
        .split("\"anomaly_id\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .expect("at least one anomaly")
        .to_string();
    let (st, detail) = get(p, &format!("/anomalies/{id}"));
    assert_eq!(st, 200);
    assert!(detail.contains("Features against the baseline") && detail.contains("typical"));
    let (st, detail) = get(p, &format!("/api/anomalies/{id}"));
    assert_eq!(st, 200);
    assert!(detail.contains("\"reasons\":[{"), "{detail}");
    assert_eq!(get(p, "/anomalies/987654321").0, 404);

    let (st, h) = get(p, "/history");
    assert_eq!(st, 200);
    assert!(h.contains("<svg") && h.contains("<polyline") && h.contains("Anomalies in range"));
    let (st, h) = get(
        p,
        "/api/history?from=2026-11-01T00:00:00Z&to=2026-11-01T02:00:00Z",
    );
    assert_eq!(st, 200);
    assert!(
        h.contains("\"charts\":[{") && h.contains("\"window_secs\":60"),
        "{h}"
    );

    let (st, bad) = get(p, "/history?from=yesterday");
    assert_eq!(st, 400);
    assert!(bad.contains("from") && bad.contains("yesterday"), "{bad}");

    let (st, t) = get(p, "/templates");
    assert_eq!(st, 200);
    assert!(t.contains("&lt;script&gt;") && !t.contains("<script>alert"));
    // counts over time: a sparkline per template, its numbers in the API
    assert!(t.contains("<polyline"), "no sparkline on /templates");
    let (st, api) = get(p, "/api/templates");
    assert_eq!(st, 200);
    let first = &serde_json::from_str::<serde_json::Value>(&api).unwrap()[0];
    let over_time: f64 = first["over_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(over_time, first["count"].as_f64().unwrap(), "{first}");

    let (st, m) = get(p, "/metrics");
    assert_eq!(st, 200);
    assert!(m.contains("logsentry_lines_ingested_total 20001"), "{m}");
    assert_eq!(get(p, "/healthz"), (200, "ok".to_string()));

    let (st, page) = get(p, &format!("/sql?q={}", enc("SELECT message FROM logs WHERE level = 'ERROR' AND service = 'auth' ORDER BY ts DESC LIMIT 1")));
    assert_eq!(st, 200);
    assert!(
        page.contains("&lt;script&gt;") && !page.contains("<script>alert"),
        "{page}"
    );
}

#[test]
fn sql_console_is_read_only_capped_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = analyzed_db(dir.path());
    let srv = serve(
        &db,
        &[
            ("LOGSENTRY_WEB_SQL_TIMEOUT_MS", "500"),
            ("LOGSENTRY_WEB_SQL_MAX_ROWS", "100"),
        ],
    );
    let p = srv.port;
    for bad in [
        "DELETE FROM logs",
        "UPDATE logs SET level = 'X'",
        "INSERT INTO logs (message) VALUES ('x')",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE logs",
        "ATTACH '/tmp/other.duckdb' AS o",
        "COPY logs TO '/tmp/x.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "PRAGMA version",
        "SELECT 1; DELETE FROM logs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
    ] {
        let (st, body) = get(p, &format!("/api/sql?q={}", enc(bad)));
        assert_eq!(st, 400, "{bad} was not refused: {body}");
        assert!(body.contains("\"error\":\""), "{bad}: {body}");
    }
    let (_, count) = get(
        p,
        &format!("/api/sql?q={}", enc("SELECT count(*) AS n FROM logs")),
    );
    assert!(count.contains("\"20001\""), "nothing changed: {count}");
    let (st, capped) = get(
        p,
        &format!("/api/sql?q={}", enc("SELECT * FROM range(100000)")),
    );
    assert_eq!(st, 200);
    assert!(capped.contains("\"truncated\":true"), "{capped}");
    assert_eq!(capped.matches("],[").count() + 1, 100);
    let t0 = std::time::Instant::now();
    let (st, slow) = get(
        p,
        &format!(
            "/api/sql?q={}",
            enc("SELECT count(*) FROM range(1000000000000) a")
        ),
    );
    assert_eq!(st, 400, "{slow}");
    assert!(slow.contains("interrupted"), "{slow}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));
    let (st, err) = get(p, &format!("/api/sql?q={}", enc("SELECT nope FROM logs")));
    assert_eq!(st, 400);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let db = analyzed_db(dir.path());
    let srv = serve(&db, &[("LOGSENTRY_WEB_TOKEN", "s3cret")]);
    let p = srv.port;
    assert_eq!(get(p, "/").0, 401);
    assert_eq!(get(p, "/api/live").0, 401);
    assert_eq!(get(p, "/?token=wrong").0, 401);
    assert_eq!(get(p, "/?token=s3cret").0, 200);
    assert_eq!(get(p, "/healthz").0, 200);
}
