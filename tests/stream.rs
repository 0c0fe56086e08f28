//! Whole-path streaming tests against the real RabbitMQ broker on
//! 127.0.0.1:5672 (scripts/setup.sh starts one): `produce` publishes generated
//! logs, `consume` stores them in a real DuckDB file; a consumer killed with
//! SIGKILL mid-stream and restarted ends with every published line stored
//! exactly once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logsentry"));
    c.env_remove("LOGSENTRY_CONFIG");
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A queue name no other test (or earlier run) uses.
fn queue(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("logsentry-test-{name}-{}-{nanos}", std::process::id())
}

fn produce(q: &str, lines: u64, batch: u64) {
    ok(
        bin()
            .args(["produce", "--queue", q, "--rate", "0", "--lines"])
            .arg(lines.to_string())
            .args(["--batch", &batch.to_string()])
            .output()
            .unwrap(),
        "produce",
    );
}

fn consume_until_idle(db: &Path, q: &str) -> String {
    ok(
        bin()
            .args([
                "consume",
                "--db",
                db.to_str().unwrap(),
                "--queue",
                q,
                "--idle-exit",
                "2",
            ])
            .output()
            .unwrap(),
        "consume",
    )
}

fn sql(db: &Path, q: &str) -> String {
    let out = ok(
        bin()
            .args(["sql", "--db", db.to_str().unwrap(), "--format", "csv", q])
            .output()
            .unwrap(),
        "sql",
    );
    out.lines().nth(1).unwrap_or("").to_string()
}

#[test]
fn multi_line_messages_are_stored_once_with_delivery_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.duckdb");
    let q = queue("multi");
    produce(&q, 20_000, 10);
    let out = consume_until_idle(&db, &q);
    assert!(out.contains("20000 lines stored"), "{out}");
    assert_eq!(
        sql(
            &db,
            "SELECT count(*), count(DISTINCT (source, line_no)), count(DISTINCT source) FROM logs"
        ),
        "20000,20000,2000"
    );
    assert_eq!(sql(&db, "SELECT count(*) FROM ingested_messages"), "2000");
    assert_eq!(
        sql(&db, "SELECT min(line_no), max(line_no) FROM logs"),
        "1,10"
    );
    // stored lines are parsed, not just kept
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM logs WHERE ts IS NULL OR level IS NULL OR service IS NULL"
        ),
        "0"
    );
    // a second consumer on the drained queue stores nothing more
    let again = consume_until_idle(&db, &q);
    assert!(again.contains("0 lines stored"), "{again}");
    assert_eq!(sql(&db, "SELECT count(*) FROM logs"), "20000");
}

#[test]
fn sigkill_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.duckdb");
    let q = queue("kill");
    let total: u64 = 100_000;
    produce(&q, total, 1);
    // small batches so the first consumer commits several before it dies
    let mut child = bin()
        .args(["consume", "--db", db.to_str().unwrap(), "--queue", &q])
        .env("LOGSENTRY_STREAM_BATCH_LINES", "1000")
        .env("LOGSENTRY_RABBITMQ_PREFETCH", "1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // kill once it has stored something: the database file grows past its empty size
    let t0 = Instant::now();
    let empty_size = 300_000;
    loop {
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(dir.path().join("k.duckdb.wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        if size > empty_size || t0.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial: u64 = sql(&db, "SELECT count(*) FROM logs").parse().unwrap();
    assert!(
        partial < total,
        "the consumer finished before it was killed ({partial})"
    );
    let out = consume_until_idle(&db, &q);
    assert_eq!(
        sql(&db, "SELECT count(*), count(DISTINCT source) FROM logs"),
        format!("{total},{total}"),
        "after restart: {out}"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) - count(DISTINCT message_id) FROM ingested_messages"
        ),
        "0"
    );
}

#[test]
fn bad_messages_are_rejected_with_their_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.duckdb");
    let q = queue("bad");
    // json lines forced; a line of the generator in another format is a reject
    produce(&q, 50, 5);
    let out = ok(
        bin()
            .args([
                "consume",
                "--db",
                db.to_str().unwrap(),
                "--queue",
                &q,
                "--idle-exit",
                "2",
                "--format",
                "logfmt",
            ])
            .output()
            .unwrap(),
        "consume",
    );
    assert!(out.contains("0 lines stored, 50 rejected"), "{out}");
    assert_eq!(
        sql(
            &db,
            "SELECT count(*), count(DISTINCT message_id), min(reason) LIKE 'logfmt%' FROM rejects"
        ),
        "50,10,true"
    );
}
