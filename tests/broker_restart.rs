//! The broker goes away mid-stream: `rabbitmqctl stop_app` while a consumer
//! is storing, `start_app` a moment later. The consumer reconnects with
//! backoff and ends with every published line stored exactly once. Its own
//! test binary, so no other broker test runs while the broker is down.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logsentry"));
    c.env_remove("LOGSENTRY_CONFIG");
    c
}

fn rabbitmqctl(args: &[&str]) {
    let st = Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("rabbitmqctl (scripts/setup.sh installs RabbitMQ)");
    assert!(st.success(), "rabbitmqctl {args:?} failed");
}

fn sql(db: &Path, q: &str) -> String {
    let out = bin()
        .args(["sql", "--db", db.to_str().unwrap(), "--format", "csv", q])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.duckdb");
    let q = format!("logsentry-test-restart-{}", std::process::id());
    let total: u64 = 60_000;
    let out = bin()
        .args([
            "produce", "--queue", &q, "--rate", "0", "--batch", "1", "--lines",
        ])
        .arg(total.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = bin()
        .args([
            "consume",
            "--db",
            db.to_str().unwrap(),
            "--queue",
            &q,
            "--idle-exit",
            "4",
        ])
        .env("LOGSENTRY_STREAM_BATCH_LINES", "500")
        .env("LOGSENTRY_RABBITMQ_PREFETCH", "500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // let it store some batches, then take the broker away and bring it back
    let t0 = Instant::now();
    while std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.path().join("r.duckdb.wal"))
            .map(|m| m.len())
            .unwrap_or(0)
        < 300_000
        && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    rabbitmqctl(&["stop_app"]);
    std::thread::sleep(Duration::from_secs(2));
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "consumer failed: {stdout}\n{stderr}");
    assert!(
        stderr.contains("reconnecting"),
        "the consumer should have reconnected: {stderr}"
    );
    assert_eq!(
        sql(&db, "SELECT count(*), count(DISTINCT source) FROM logs"),
        format!("{total},{total}"),
        "{stdout}"
    );
}
