//! Whole-path detection tests: generated logs with labelled incidents go
//! through `analyze` (real binary, real DuckDB file); every incident kind must
//! be reported with the right service and time, and false alarms stay few.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_logsentry"))
        .args(args)
        .env_remove("LOGSENTRY_CONFIG")
        .output()
        .expect("run logsentry");
    assert!(
        out.status.success(),
        "logsentry {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn micros(rfc3339: &str) -> i64 {
    logsentry::parse::time::parse_iso_prefix(rfc3339).unwrap().0
}

/// Checks every labelled incident is found; returns (found kinds, false anomalies).
fn check(out: &Value, labels: &Value) -> (Vec<String>, usize) {
    let anomalies = out["anomalies"].as_array().unwrap();
    let rare = out["rare_lines"].as_array().unwrap();
    let mut found = Vec::new();
    let mut matched = vec![false; anomalies.len()];
    for inc in labels["incidents"].as_array().unwrap() {
        let kind = inc["kind"].as_str().unwrap();
        let svc = inc["service"].as_str().unwrap();
        let (a, b) = (
            inc["start_us"].as_i64().unwrap(),
            inc["end_us"].as_i64().unwrap(),
        );
        let mut hit = false;
        for (i, an) in anomalies.iter().enumerate() {
            let t = micros(an["window_start"].as_str().unwrap());
            if an["service"] == svc && t >= a - 60_000_000 && t < b + 60_000_000 {
                matched[i] = true;
                hit = true;
            }
        }
        if kind == "new_error" {
            // the never-seen message must also surface among the rarest lines
            let in_rare = rare.iter().take(10).any(|r| {
                let t = micros(r["first"]["ts"].as_str().unwrap());
                r["first"]["service"] == svc
                    && t >= a
                    && t < b
                    && (r["first"]["message"].as_str().unwrap().contains("OutOfMemoryError")
                        // access logs carry the failing request instead
                        || r["first"]["message"].as_str().unwrap().contains("/api/internal/heapdump"))
            });
            assert!(in_rare, "new_error not among the rarest lines: {rare:#?}");
            hit = true;
        }
        if hit {
            found.push(kind.to_string());
        }
    }
    let false_alarms = matched.iter().filter(|m| !**m).count();
    (found, false_alarms)
}

#[test]
fn every_incident_kind_is_reported_with_service_and_time() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["json", "combined"] {
        let log = dir.path().join(format!("app-{format}.log"));
        ok(&[
            "generate",
            "--lines",
            "80000",
            "--format",
            format,
            "--out",
            s(&log),
            "--seed",
            "11",
        ]);
        let labels: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.labels.json", s(&log))).unwrap(),
        )
        .unwrap();
        let db = dir.path().join(format!("{format}.duckdb"));
        let report = dir.path().join(format!("{format}.html"));
        let out: Value = serde_json::from_str(&ok(&[
            "analyze",
            s(&log),
            "--db",
            s(&db),
            "--json",
            "--report",
            s(&report),
            // incidents cover ~29 of 4000 windows (0.7%) in this small file
            "--contamination",
            "0.008",
        ]))
        .unwrap();
        let (found, false_alarms) = check(&out, &labels);
        let n = out["anomalies"].as_array().unwrap().len();
        eprintln!("{format}: found {found:?}, {n} anomalies, {false_alarms} false");
        for kind in [
            "error_burst",
            "latency_surge",
            "silent_service",
            "traffic_spike",
            "new_error",
        ] {
            assert!(
                found.iter().any(|f| f == kind),
                "{format}: {kind} not reported: {:#}",
                out["anomalies"]
            );
        }
        assert!(
            false_alarms <= 15,
            "{format}: {false_alarms} false anomalies"
        );
        // explanations carry words, numbers and lines
        let a = &out["anomalies"][0];
        assert!(!a["reasons"].as_array().unwrap().is_empty());
        assert!(
            a["reasons"][0]["text"]
                .as_str()
                .unwrap()
                .contains("typical")
                || a["reasons"][0]["text"]
                    .as_str()
                    .unwrap()
                    .contains("never-seen")
        );
        // stored: windows with scores, anomalies with explanations
        let stored = ok(&[
            "sql", "--db", s(&db), "--format", "csv",
            "SELECT (SELECT count(*) FROM anomalies), (SELECT count(*) FROM windows WHERE is_anomaly), (SELECT count(*) FROM windows WHERE count = 0)",
        ]);
        let v: Vec<i64> = stored
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(v[0] as usize, n);
        assert_eq!(v[1] as usize, n);
        assert!(v[2] >= 5, "silent windows exist with count 0: {stored}");
        let html = std::fs::read_to_string(&report).unwrap();
        assert!(html.contains("<svg") && html.contains("Anomalies"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "report must work offline"
        );
    }
}

#[test]
fn detect_reruns_without_reparsing_and_report_escapes_html() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.log");
    ok(&[
        "generate",
        "--lines",
        "20000",
        "--out",
        s(&log),
        "--seed",
        "3",
    ]);
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(r#"{"ts":"2026-11-01T02:00:00Z","level":"fatal","service":"auth","msg":"<script>alert(1)</script> injected"}"#);
    text.push('\n');
    std::fs::write(&log, text).unwrap();
    let db = dir.path().join("x.duckdb");
    ok(&["analyze", s(&log), "--db", s(&db), "--no-detect"]);
    let report = dir.path().join("r.html");
    let out: Value = serde_json::from_str(&ok(&[
        "detect",
        "--db",
        s(&db),
        "--window",
        "5m",
        "--json",
        "--report",
        s(&report),
    ]))
    .unwrap();
    assert_eq!(out["window"], "5m");
    let w = ok(&[
        "sql",
        "--db",
        s(&db),
        "--format",
        "csv",
        "SELECT DISTINCT window_secs FROM windows",
    ]);
    assert_eq!(w.lines().nth(1), Some("300"));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;"),
        "escaped in the report"
    );
    assert!(!html.contains("<script>alert"));
    // same seed, same result
    let again: Value =
        serde_json::from_str(&ok(&["detect", "--db", s(&db), "--window", "5m", "--json"])).unwrap();
    assert_eq!(out["anomalies"], again["anomalies"]);
}

#[test]
fn rare_lines_give_one_whole_line_per_template_when_sources_share_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let common = |i: usize| {
        format!(
            r#"{{"ts":"2026-11-01T00:0{}:00Z","level":"info","service":"api","msg":"request served in {i} ms"}}"#,
            i % 10
        )
    };
    for (name, node, svc, ts) in [
        ("a.log", 17, "billing", "2026-11-01T00:00:01Z"),
        ("b.log", 42, "search", "2026-11-01T00:00:02Z"),
    ] {
        let mut text = format!(
            r#"{{"ts":"{ts}","level":"fatal","service":"{svc}","msg":"disk failure on node {node}"}}"#
        );
        text.push('\n');
        for i in 0..200 {
            text.push_str(&common(i));
            text.push('\n');
        }
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let db = dir.path().join("x.duckdb");
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    ok(&["analyze", s(&a), s(&b), "--db", s(&db), "--no-detect"]);
    let out: Value = serde_json::from_str(&ok(&["detect", "--db", s(&db), "--json"])).unwrap();
    let rare = out["rare_lines"].as_array().unwrap();
    let disk: Vec<&Value> = rare
        .iter()
        .filter(|r| r["template"].as_str().unwrap().starts_with("disk failure"))
        .collect();
    assert_eq!(disk.len(), 1, "one entry per template: {rare:#?}");
    let disk = disk[0];
    let first = &disk["first"];
    assert_eq!(first["line_no"], 1);
    assert_eq!(disk["count_in_scope"], 2);
    // source, service, time and message all belong to the same line
    let (node, svc, ts) = if first["source"].as_str().unwrap().ends_with("a.log") {
        ("node 17", "billing", "2026-11-01T00:00:01")
    } else {
        ("node 42", "search", "2026-11-01T00:00:02")
    };
    assert!(
        first["message"].as_str().unwrap().ends_with(node),
        "{first}"
    );
    assert_eq!(first["service"], svc, "{first}");
    assert!(first["ts"].as_str().unwrap().starts_with(ts), "{first}");
}

#[test]
fn analyze_finds_from_the_lines_it_kept_what_detect_finds_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.log");
    ok(&[
        "generate",
        "--lines",
        "30000",
        "--out",
        s(&log),
        "--seed",
        "5",
    ]);
    let db = dir.path().join("x.duckdb");
    // analyze scores the lines it kept while loading them...
    let loaded: Value =
        serde_json::from_str(&ok(&["analyze", s(&log), "--db", s(&db), "--json"])).unwrap();
    // ...detect reads the same lines back from DuckDB
    let stored: Value = serde_json::from_str(&ok(&["detect", "--db", s(&db), "--json"])).unwrap();
    let key = |v: &Value| -> Vec<(String, String, String)> {
        v["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["service"].as_str().unwrap().to_string(),
                    a["window_start"].as_str().unwrap().to_string(),
                    a["summary"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert!(!key(&loaded).is_empty());
    assert_eq!(key(&loaded), key(&stored));
    for field in ["windows", "service_count", "threshold", "rare_lines"] {
        assert_eq!(loaded[field], stored[field], "{field}");
    }
}
