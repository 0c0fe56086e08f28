//! End-to-end, from an empty database: `serve` consumes from the real broker
//! while Debian's headless chromium (driven by tests/browser/live.mjs with
//! playwright-core) keeps the live page open; `produce --incident
//! error_burst` backfills ten minutes of normal history, then publishes the
//! burst live.
//! The page must show lines flowing and the payments anomaly without a
//! reload, and the same anomaly must be POSTed to the alert webhook (a
//! loopback HTTP receiver here). Screenshots of each page land in
//! target/tmp/screenshots/.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logsentry"));
    c.env_remove("LOGSENTRY_CONFIG");
    c
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback HTTP receiver that answers 200 to every request and keeps the
/// bodies; returns its URL and the bodies received so far.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                if req.len() >= end + 4 + len {
                    keep.lock().unwrap().push(text[end + 4..].to_string());
                    break;
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// Now, in microseconds since the epoch.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// GET an `http://127.0.0.1:PORT/path` URL; returns the body.
fn http_get(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

#[test]
fn live_page_shows_flow_and_an_injected_anomaly_without_reload() {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is missing: run scripts/setup.sh"
    );
    if !std::path::Path::new(&format!("{browser_dir}/node_modules/playwright-core")).exists() {
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(browser_dir),
            "npm install (scripts/setup.sh does this)",
        );
    }
    // a fresh database: `produce` backfills the history detection learns from
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.duckdb");
    // anomalies must come from the live traffic, not the seeded history
    let since = logsentry::parse::time::format_micros(now_micros());
    let queue = format!("logsentry-test-browser-{}", std::process::id());
    let (hook_url, alerts) = webhook_receiver();
    let mut serve = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--queue",
            &queue,
            "--db",
        ])
        .arg(&db)
        .env("LOGSENTRY_DETECT_WINDOW", "5s")
        .env("LOGSENTRY_STREAM_WEBHOOK_URL", &hook_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().trim_start_matches("dashboard on ").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let shots = format!("{}/screenshots", env!("CARGO_TARGET_TMPDIR"));
    let producer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        // ten minutes of normal history (the default backfill with an
        // incident), then 30 s of live traffic with the error burst
        run(
            bin().args([
                "produce",
                "--queue",
                &queue,
                "--rate",
                "60",
                "--lines",
                "1800",
                "--incident",
                "error_burst",
            ]),
            "produce",
        );
    });
    let browser = Command::new("node")
        .args(["live.mjs", &url, "payments", &shots, "120000", &since])
        .current_dir(browser_dir)
        .output();
    // the browser waited for the page while the producer published
    let out = browser.unwrap();
    // the webhook POST runs in the background: give it a moment before stopping serve
    for _ in 0..50 {
        if alerts
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.contains("\"payments\""))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // the in-process consumer reports its batches and lag
    let metrics = http_get(&format!("{url}metrics"));
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = producer.join();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::path::Path::new(&format!("{shots}/live.png")).exists());
    let batches: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logsentry_batches_total "))
        .unwrap_or_else(|| panic!("no batches metric:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(batches > 0.0, "{metrics}");
    assert!(
        metrics.contains("\nlogsentry_consumer_lag_seconds "),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nlogsentry_consumer_lag_messages "),
        "{metrics}"
    );
    // the webhook got the payments anomaly as Slack-compatible JSON
    let alerts = alerts.lock().unwrap();
    let payments = alerts
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .find(|v| v["anomaly"]["service"] == "payments")
        .unwrap_or_else(|| {
            panic!(
                "no payments alert among {} webhook posts: {alerts:?}",
                alerts.len()
            )
        });
    assert!(
        payments["text"]
            .as_str()
            .unwrap()
            .starts_with("LogSentry: payments "),
        "{payments}"
    );
}
