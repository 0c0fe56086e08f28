//! Whole-path tests of `generate`, `analyze` and `sql`: the real binary, real
//! DuckDB files in a temp dir, data from the project's own generator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logsentry"));
    c.env_remove("LOGSENTRY_CONFIG");
    c
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("run logsentry");
    out
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "logsentry {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn gen(dir: &Path, name: &str, lines: u64, format: &str) -> PathBuf {
    let p = dir.join(name);
    ok(&[
        "generate",
        "--lines",
        &lines.to_string(),
        "--format",
        format,
        "--out",
        s(&p),
        "--seed",
        "5",
    ]);
    p
}

/// Runs SQL and returns the CSV body without the header.
fn sql(db: &Path, q: &str) -> String {
    let out = ok(&["sql", "--db", s(db), "--format", "csv", q]);
    out.lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn every_generated_format_loads_with_zero_rejects_and_right_columns() {
    let dir = tempfile::tempdir().unwrap();
    for (format, has_latency, has_status) in [
        ("json", true, true),
        ("combined", true, true),
        ("logfmt", true, true),
        ("syslog", false, false),
    ] {
        let log = gen(dir.path(), &format!("{format}.log"), 3000, format);
        let db = dir.path().join(format!("{format}.duckdb"));
        let out = json(&ok(&["analyze", s(&log), "--db", s(&db), "--json"]));
        assert_eq!(out["lines_read"], 3000, "{format}: {out}");
        assert_eq!(out["lines_stored"], 3000, "{format}");
        assert_eq!(out["lines_rejected"], 0, "{format}");
        assert_eq!(out["formats"][0], format, "{format}");
        assert_eq!(
            out["services"].as_array().unwrap().len(),
            5,
            "{format}: {out}"
        );
        let nulls = sql(
            &db,
            "SELECT count(*) FILTER (WHERE ts IS NULL), count(*) FILTER (WHERE level IS NULL),
                    count(*) FILTER (WHERE service IS NULL), count(*) FILTER (WHERE template_id IS NULL),
                    count(*) FILTER (WHERE latency_ms IS NOT NULL), count(*) FILTER (WHERE status IS NOT NULL),
                    count(DISTINCT level) FROM logs",
        );
        let v: Vec<i64> = nulls.split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(&v[..4], &[0, 0, 0, 0], "{format}: {nulls}");
        assert_eq!(v[4] > 0, has_latency, "{format}: latency {nulls}");
        assert_eq!(v[5] > 0, has_status, "{format}: status {nulls}");
        assert!(v[6] >= 2, "{format}: levels {nulls}");
        // time span matches the labels
        let labels: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.labels.json", s(&log))).unwrap(),
        )
        .unwrap();
        let first = sql(&db, "SELECT strftime(min(ts), '%Y-%m-%dT%H:%M') FROM logs");
        assert_eq!(first, labels["start"].as_str().unwrap()[..16], "{format}");
    }
}

#[test]
fn sql_answers_and_rerun_is_refused_unless_replace() {
    let dir = tempfile::tempdir().unwrap();
    let log = gen(dir.path(), "app.log", 5000, "json");
    let db = dir.path().join("a.duckdb");
    let text = ok(&["analyze", s(&log), "--db", s(&db)]);
    assert!(
        text.contains("5000 lines read, 5000 stored, 0 rejected"),
        "{text}"
    );
    let table = ok(&[
        "sql",
        "--db",
        s(&db),
        "SELECT level, count(*) AS n FROM logs GROUP BY 1 ORDER BY 1",
    ]);
    assert!(table.starts_with("level"), "{table}");
    assert!(table.contains("INFO"), "{table}");
    let total: i64 = sql(
        &db,
        "SELECT sum(n) FROM (SELECT level, count(*) n FROM logs GROUP BY 1)",
    )
    .parse()
    .unwrap();
    assert_eq!(total, 5000);
    // again: refused, nothing stored twice
    let again = ok(&["analyze", s(&log), "--db", s(&db)]);
    assert!(again.contains("already loaded"), "{again}");
    assert_eq!(sql(&db, "SELECT count(*) FROM logs"), "5000");
    // --replace: loaded again, still once
    ok(&["analyze", s(&log), "--db", s(&db), "--replace"]);
    assert_eq!(sql(&db, "SELECT count(*) FROM logs"), "5000");
    assert_eq!(
        sql(&db, "SELECT count(*) FROM runs WHERE status = 'done'"),
        "1"
    );
    // line numbers lead back to the file
    let line5 = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .nth(4)
        .unwrap()
        .to_string();
    let msg = sql(&db, "SELECT message FROM logs WHERE line_no = 5");
    assert!(line5.contains(msg.trim_matches('"')), "{line5} vs {msg}");
    // templates table is filled and consistent with logs
    assert_eq!(
        sql(&db, "SELECT count(*) FROM logs l LEFT JOIN templates t USING (template_id) WHERE t.template IS NULL"),
        "0"
    );
    assert_eq!(sql(&db, "SELECT sum(count) FROM templates"), "5000");
    // SQL errors: DuckDB's words, exit 1
    let bad = run(&["sql", "--db", s(&db), "SELECT nope FROM logs"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
    // read-only by default
    let w = run(&["sql", "--db", s(&db), "DELETE FROM logs"]);
    assert_eq!(w.status.code(), Some(1));
    assert_eq!(sql(&db, "SELECT count(*) FROM logs"), "5000");
}

#[test]
fn bad_input_is_rejected_with_reasons_and_good_lines_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.log");
    let mut data = Vec::new();
    data.extend_from_slice(
        br#"{"ts":"2026-11-01T00:00:00Z","level":"info","service":"a","msg":"ok 1"}"#,
    );
    data.push(b'\n');
    data.extend_from_slice(
        br#"{"ts":"2026-11-01T00:00:01Z","level":"info","service":"a","msg":"trunc"#,
    );
    data.push(b'\n');
    data.extend_from_slice(b"{\"msg\":\"bad \xff\xfe utf8\"}\n");
    data.extend(vec![b'{'; 5 << 20]);
    data.push(b'\n');
    data.extend_from_slice(b"\x00\x01\x02\x03binary garbage\x7f\n");
    data.extend_from_slice(
        br#"{"ts":"2026-11-01T00:00:02Z","level":"error","service":"a","msg":"ok 2"}"#,
    );
    data.push(b'\n');
    std::fs::write(&p, &data).unwrap();
    let db = dir.path().join("m.duckdb");
    let out = json(&ok(&[
        "analyze",
        s(&p),
        "--db",
        s(&db),
        "--format",
        "json",
        "--json",
    ]));
    assert_eq!(out["lines_stored"], 2, "{out}");
    assert_eq!(out["lines_rejected"], 4, "{out}");
    let rej = sql(&db, "SELECT line_no, reason FROM rejects ORDER BY line_no");
    let lines: Vec<&str> = rej.lines().collect();
    assert_eq!(lines.len(), 4, "{rej}");
    assert!(
        lines[0].starts_with("2,") && lines[0].contains("truncated JSON"),
        "{rej}"
    );
    assert!(
        lines[1].starts_with("3,") && lines[1].contains("UTF-8"),
        "{rej}"
    );
    assert!(
        lines[2].starts_with("4,") && lines[2].contains("line too long"),
        "{rej}"
    );
    assert!(lines[3].starts_with("5,"), "{rej}");
    assert_eq!(
        sql(&db, "SELECT max(length(raw)) <= 2048 FROM rejects"),
        "true"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT string_agg(line_no::VARCHAR, ' ' ORDER BY line_no) FROM logs"
        ),
        "1 6"
    );

    // missing file, directory, empty file: clear messages, no panic
    let missing = run(&["analyze", "/no/such/file.log", "--db", s(&db)]);
    assert_eq!(missing.status.code(), Some(1));
    let text = String::from_utf8_lossy(&missing.stdout).to_string()
        + &String::from_utf8_lossy(&missing.stderr);
    assert!(
        text.contains("/no/such/file.log") && !text.contains("panicked"),
        "{text}"
    );
    let d = run(&["analyze", s(dir.path()), "--db", s(&db)]);
    assert_eq!(d.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&d.stdout).contains("directory"));
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    let e = ok(&["analyze", s(&empty), "--db", s(&db)]);
    assert!(e.contains("empty"), "{e}");
    // bad flag values name themselves
    let f = run(&["analyze", s(&p), "--format", "xml"]);
    assert_eq!(f.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&f.stderr).contains("xml"));
    let none = run(&[
        "generate",
        "--lines",
        "0",
        "--out",
        s(&dir.path().join("none.log")),
    ]);
    assert_eq!(none.status.code(), Some(2));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("--lines") && err.contains("'0'"), "{err}");
    assert!(!dir.path().join("none.log").exists());
}

#[test]
fn odd_values_of_unknown_fields_are_stored_and_extra_stays_json() {
    // `007` and `-inf` are numbers to Rust but not to JSON; a raw tab or a bad
    // escape inside a nested value passes a structural skip. Any of them used
    // to fail the whole file's INSERT (DuckDB rejects invalid JSON).
    let dir = tempfile::tempdir().unwrap();
    let logfmt = dir.path().join("odd.logfmt");
    std::fs::write(
        &logfmt,
        "ts=2026-11-01T00:00:00Z level=info msg=\"ok one\" code=007 n=5\n\
         ts=2026-11-01T00:00:01Z level=info msg=\"ok two\" x=-inf\n",
    )
    .unwrap();
    let jsonl = dir.path().join("odd.jsonl");
    std::fs::write(
        &jsonl,
        "{\"ts\":\"2026-11-01T00:00:02Z\",\"msg\":\"three\",\"tags\":[\"a\tb\"],\"e\":[\"\\q\"]}\n\
         {\"ts\":\"2026-11-01T00:00:03Z\",\"msg\":\"four\",\"n\":[1,{\"y\":null}]}\n",
    )
    .unwrap();
    let db = dir.path().join("o.duckdb");
    for f in [&logfmt, &jsonl] {
        let out = json(&ok(&[
            "analyze",
            s(f),
            "--db",
            s(&db),
            "--no-detect",
            "--json",
        ]));
        assert_eq!(out["lines_stored"], 2, "{out}");
    }
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FILTER (json_valid(extra)), count(*) FROM logs"
        ),
        "4,4"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT string_agg(concat_ws('|', extra->>'code', extra->>'n', extra->>'x'), ' / ' ORDER BY ts) FROM logs WHERE ts < '2026-11-01 00:00:02'"
        ),
        "007|5 / -inf"
    );
    // the nested values that are not JSON are kept as strings, as written
    assert_eq!(
        sql(
            &db,
            r#"SELECT extra->>'tags' = '["a' || chr(9) || 'b"]' AND extra->>'e' = '["\q"]' FROM logs WHERE message = 'three'"#
        ),
        "true"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT (extra->'n')::VARCHAR FROM logs WHERE message = 'four'"
        ),
        r#""[1,{""y"":null}]""#
    );
}

#[test]
fn gzip_and_stdin_sources() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gen(dir.path(), "app.log.gz", 2000, "logfmt");
    let db = dir.path().join("g.duckdb");
    let out = json(&ok(&["analyze", s(&gz), "--db", s(&db), "--json"]));
    assert_eq!(out["lines_stored"], 2000, "{out}");
    let plain = gen(dir.path(), "plain.log", 1000, "syslog");
    let mut child = bin()
        .args(["analyze", "-", "--db", s(&db), "--json"])
        .stdin(std::fs::File::open(&plain).unwrap())
        .output()
        .unwrap();
    assert!(child.status.success());
    let out = json(&String::from_utf8(std::mem::take(&mut child.stdout)).unwrap());
    assert_eq!(out["files"][0]["source"], "stdin");
    assert_eq!(out["lines_stored"], 1000);
    assert_eq!(
        sql(&db, "SELECT count(*) FROM logs WHERE source = 'stdin'"),
        "1000"
    );
}

#[test]
fn read_error_mid_file_keeps_the_lines_before_it_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gen(dir.path(), "app.log.gz", 20_000, "json");
    let bytes = std::fs::read(&gz).unwrap();
    let cut = dir.path().join("cut.log.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let db = dir.path().join("cut.duckdb");
    // small blocks: the file streams into DuckDB over many blocks
    let out = bin()
        .env("LOGSENTRY_INGEST_BLOCK_BYTES", "65536")
        .args(["analyze", s(&cut), "--db", s(&db), "--json", "--no-detect"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a read error must fail the command"
    );
    let out = json(&String::from_utf8(out.stdout).unwrap());
    let file = &out["files"][0];
    let err = file["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("reading"),
        "error should say what failed: {out}"
    );
    let stored = file["lines_stored"].as_u64().unwrap();
    assert!(stored > 5_000 && stored < 20_000, "{out}");
    assert_eq!(sql(&db, "SELECT count(*) FROM logs"), stored.to_string());
    assert_eq!(
        sql(&db, "SELECT status, lines_stored FROM runs"),
        format!("failed,{stored}")
    );
}

#[test]
fn custom_pattern_and_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("custom.log");
    std::fs::write(
        &p,
        "2026-11-01T10:00:00Z INFO billing: invoice 1 sent\n2026-11-01T10:00:05Z ERROR billing: invoice 2 sent\nnot matching\n",
    )
    .unwrap();
    let db = dir.path().join("c.duckdb");
    let out = json(&ok(&[
        "analyze",
        s(&p),
        "--db",
        s(&db),
        "--json",
        "--format",
        "pattern:<ts> <level> <component>: <message>",
    ]));
    assert_eq!(out["lines_stored"], 2, "{out}");
    assert_eq!(out["lines_rejected"], 1, "{out}");
    assert_eq!(
        sql(&db, "SELECT string_agg(level || ':' || service || ':' || message, '|' ORDER BY line_no) FROM logs"),
        "INFO:billing:invoice 1 sent|ERROR:billing:invoice 2 sent"
    );
    assert_eq!(
        sql(&db, "SELECT count(DISTINCT template_id) FROM logs"),
        "1"
    );
    let plain = dir.path().join("plain.txt");
    std::fs::write(
        &plain,
        "Starting server\n2026-11-01 10:00:00 WARN disk almost full\n",
    )
    .unwrap();
    let out = json(&ok(&["analyze", s(&plain), "--db", s(&db), "--json"]));
    assert_eq!(out["formats"][0], "plain");
    assert_eq!(out["lines_stored"], 2);
}
