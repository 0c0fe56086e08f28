//! Owns detection over stored lines: loads the lines of a scope (some runs, or
//! everything) from DuckDB into Polars, computes window features, scales them
//! per service, fits and scores the Isolation Forest, explains each anomalous
//! window (features vs baseline, templates that rose or appeared, example
//! lines with `source:line_no`), finds the rarest lines, and stores `windows`
//! and `anomalies`.

pub mod explain;
pub mod forest;
pub mod online;

use crate::features::{self, FeatureInput, ServiceTemplates, Windows, FEATURES};
use crate::parse::time::format_micros;
use crate::store::Store;
use anyhow::{Context, Result};
use duckdb::params;
use explain::Reason;
use forest::{fit_and_score, IsolationForestParams, Threshold};
use polars::prelude::DataFrame;
use serde::Serialize;
use std::collections::HashMap;

/// What detection needs to know.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    pub window_us: i64,
    pub threshold: Threshold,
    pub n_trees: usize,
    pub max_samples: usize,
    pub seed: u64,
    pub warmup_windows: usize,
    /// How many rare lines to list.
    pub top: usize,
}

impl DetectSettings {
    pub fn from_config(c: &crate::config::DetectConfig) -> Result<DetectSettings> {
        Ok(DetectSettings {
            window_us: crate::config::parse_window(&c.window)?,
            threshold: match c.threshold {
                Some(t) => Threshold::Score(t),
                None => Threshold::Contamination(c.contamination),
            },
            n_trees: c.n_trees,
            max_samples: c.max_samples,
            seed: c.seed,
            warmup_windows: c.warmup_windows,
            top: c.report_top,
        })
    }
}

/// Which stored lines to analyse.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Runs(Vec<i64>),
    /// Lines with `start <= ts < end` (epoch microseconds).
    Range(i64, i64),
}

impl Scope {
    fn sql(&self, alias: &str) -> String {
        match self {
            Scope::All => "TRUE".into(),
            Scope::Runs(ids) if ids.is_empty() => "FALSE".into(),
            Scope::Range(a, b) => format!(
                "{alias}ts >= make_timestamp({a}::BIGINT) AND {alias}ts < make_timestamp({b}::BIGINT)"
            ),
            Scope::Runs(ids) => format!(
                "{alias}ingest_id IN ({})",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// A template that rose or appeared in an anomalous window.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateChange {
    pub template_id: u32,
    pub template: String,
    pub count: i64,
    pub typical_per_window: f64,
    pub new: bool,
}

/// A line behind an anomaly (or a rare line).
#[derive(Debug, Clone, Serialize)]
pub struct LineRef {
    /// `source:line_no`
    pub location: String,
    pub source: String,
    pub line_no: i64,
    pub ts: Option<String>,
    pub service: String,
    pub level: Option<String>,
    pub message: Option<String>,
}

/// One anomalous window, explained.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub service: String,
    pub window_start: String,
    pub window_end: String,
    #[serde(skip)]
    pub start_us: i64,
    pub score: f64,
    pub summary: String,
    pub reasons: Vec<Reason>,
    pub templates: Vec<TemplateChange>,
    pub example_lines: Vec<LineRef>,
}

/// A rare line: a template seen seldom (and its level).
#[derive(Debug, Clone, Serialize)]
pub struct RareLine {
    pub rarity: f64,
    pub template_id: u32,
    pub template: String,
    /// Lines of this template in the whole database.
    pub template_count: i64,
    /// Lines of this template in the analysed scope.
    pub count_in_scope: i64,
    pub first: LineRef,
}

/// Fewer windows than this are stored but not scored: the forest and the
/// per-service baselines need a few windows to tell usual from unusual.
pub const MIN_SCORED_WINDOWS: usize = 8;

/// Everything one detection pass found.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub window: String,
    pub windows: usize,
    pub service_count: usize,
    pub threshold: f64,
    pub anomalies: Vec<Anomaly>,
    pub rare_lines: Vec<RareLine>,
    #[serde(skip)]
    pub features: Windows,
    #[serde(skip)]
    pub scores: Vec<f64>,
}

/// Reads the scope's lines and service names as Polars frames (Arrow under
/// the hood) for `features::compute`.
pub fn load_lines(store: &Store, scope: &Scope) -> Result<FeatureInput> {
    let filter = format!("l.ts IS NOT NULL AND {}", scope.sql("l."));
    let frame = |sql: String| -> Result<DataFrame> {
        let mut stmt = store.conn.prepare(&sql)?;
        let mut frames = stmt.query_polars([])?;
        let mut acc = match frames.next() {
            Some(df) => df,
            None => return Ok(DataFrame::empty()),
        };
        for df in frames {
            acc.vstack_mut(&df)?;
        }
        acc.align_chunks_par();
        Ok(acc)
    };
    Ok(FeatureInput {
        lines: frame(format!(
            "SELECT {} FROM logs l LEFT JOIN templates t USING (template_id) WHERE {filter}",
            features::INPUT_SQL_COLUMNS
        ))?,
        services: frame(format!(
            "SELECT {} FROM logs l WHERE {filter}",
            features::SERVICE_SQL_COLUMNS
        ))?,
    })
}

fn window_label(us: i64) -> String {
    let secs = us / 1_000_000;
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Runs features + forest + explanations over `scope` and stores the results.
/// `lines` are the scope's lines when the caller has them already (`analyze`
/// keeps those it just loaded); else they are read from DuckDB.
pub fn run(
    store: &Store,
    scope: &Scope,
    s: &DetectSettings,
    lines: Option<FeatureInput>,
) -> Result<Detection> {
    let t = std::time::Instant::now();
    let lines = match lines {
        Some(l) => l,
        None => load_lines(store, scope).context("loading lines for detection")?,
    };
    let load_ms = t.elapsed().as_millis() as u64;
    // DuckDB finds the rare lines on a second connection while the windows
    // are computed (neither keeps both cores busy alone)
    let rare_conn = store.conn.try_clone()?;
    let (w, rare) = std::thread::scope(|scope_threads| {
        let rare = scope_threads.spawn(move || rare_lines(&rare_conn, scope, s.top));
        let w = features::compute(lines, s.window_us, s.warmup_windows).map(|mut w| {
            w.fill_expected_counts();
            w
        });
        let rare = rare
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the rare-lines query panicked")));
        (w, rare)
    });
    let w = w?;
    // the windows, and the rare lines found beside them
    let features_ms = t.elapsed().as_millis() as u64 - load_ms;
    let mut det = Detection {
        window: window_label(s.window_us),
        windows: w.len(),
        service_count: 0,
        threshold: f64::NAN,
        anomalies: Vec::new(),
        rare_lines: rare.context("finding the rarest lines")?,
        features: Windows::default(),
        scores: Vec::new(),
    };
    if w.len() < MIN_SCORED_WINDOWS {
        det.service_count = w
            .service
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        det.features = w;
        return Ok(det);
    }
    let base = features::baselines(&w);
    det.service_count = base.len();
    let z = features::scaled(&w, &base);
    let params = IsolationForestParams::default()
        .n_trees(s.n_trees)
        .max_samples(s.max_samples)
        .threshold(s.threshold)
        .seed(s.seed);
    let t_rare = t.elapsed().as_millis() as u64;
    let (forest, scores) = fit_and_score(&params, &z)?;
    let t_forest = t.elapsed().as_millis() as u64;
    det.threshold = forest.threshold;
    let base_of: HashMap<&str, &features::Baseline> =
        base.iter().map(|(k, b)| (k.as_str(), b)).collect();
    // a window the data only partly covers (it starts or ends mid-window)
    // has partial counts: stored and scored, never flagged
    let mut flagged: Vec<usize> = (0..w.len())
        .filter(|&i| scores[i] > forest.threshold && !w.is_partial(i))
        .collect();
    flagged.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    for &i in &flagged {
        let row: Vec<f64> = w.x.row(i).to_vec();
        let reasons = explain::top_reasons(&row, base_of[w.service[i].as_str()], &w.lines(i), 3);
        let summary = reasons
            .iter()
            .map(|r| r.text.clone())
            .collect::<Vec<_>>()
            .join("; ");
        det.anomalies.push(Anomaly {
            service: w.service[i].clone(),
            window_start: format_micros(w.start[i]),
            window_end: format_micros(w.start[i] + s.window_us),
            start_us: w.start[i],
            score: (scores[i] * 1e4).round() / 1e4,
            summary,
            reasons,
            templates: Vec::new(),
            example_lines: Vec::new(),
        });
    }
    // the windows are written on a second connection while DuckDB finds the
    // lines behind each anomaly on this one; the anomalies join them in the
    // same transaction once explained
    let save_conn = store.conn.try_clone()?;
    let summaries = det.anomalies.clone();
    let (explained_tx, explained_rx) = std::sync::mpsc::channel();
    let (attached, saved, t_explain) = std::thread::scope(|threads| {
        let (w, scores, summaries) = (&w, &scores, &summaries);
        let saver = threads.spawn(move || {
            let explained = move || {
                explained_rx
                    .recv()
                    .map_err(|_| anyhow::anyhow!("the anomalies were not explained"))
            };
            let windows = (w, scores.as_slice(), forest.threshold, s.window_us);
            save_on(&save_conn, windows, summaries, explained)
        });
        let attached = attach_lines(store, scope, s.window_us, &w.templates, &mut det.anomalies);
        if attached.is_ok() {
            // the receiver is only gone when saving failed, which join reports
            let _ = explained_tx.send(det.anomalies.clone());
        }
        drop(explained_tx);
        let t_explain = t.elapsed().as_millis() as u64;
        let saved = saver
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("saving the windows panicked")));
        (attached, saved, t_explain)
    });
    attached?;
    saved?;
    tracing::debug!(
        load_ms,
        features_ms,
        scale_ms = t_rare - load_ms - features_ms,
        forest_ms = t_forest - t_rare,
        explain_ms = t_explain - t_forest,
        save_ms = t.elapsed().as_millis() as u64 - t_explain,
        "detection"
    );
    det.features = w;
    det.scores = scores;
    Ok(det)
}

fn anomaly_values(anoms: &[Anomaly], window_us: i64) -> String {
    anoms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "({i}, '{}', {})",
                a.service.replace('\'', "''"),
                a.start_us.div_euclid(window_us)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Fills templates that rose or appeared, and example lines, for every anomaly
/// with one scan of the scope: the lines of the anomalous windows are kept in
/// a temporary table, and compared with `templates`, each service's lines of
/// each template over its span (`Windows::templates`).
pub(crate) fn attach_lines(
    store: &Store,
    scope: &Scope,
    window_us: i64,
    templates: &HashMap<String, ServiceTemplates>,
    anoms: &mut [Anomaly],
) -> Result<()> {
    if anoms.is_empty() {
        return Ok(());
    }
    let values = anomaly_values(anoms, window_us);
    let in_scope = scope.sql("");
    store.conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE logsentry_anomaly_lines AS
         WITH a(idx, svc, wi) AS (VALUES {values})
         SELECT a.idx, l.* FROM (
             SELECT coalesce(service, host, '-') AS svc, epoch_us(ts) // {window_us} AS wi,
                    source, line_no, ts, level, message, template_id
             FROM logs WHERE ts IS NOT NULL AND {in_scope}) l
         JOIN a USING (svc, wi)"
    ))?;
    let filled = fill_from_anomaly_lines(store, window_us, templates, anoms);
    let dropped = store
        .conn
        .execute_batch("DROP TABLE IF EXISTS logsentry_anomaly_lines");
    filled?;
    dropped?;
    Ok(())
}

/// `attach_lines`' two reads of the table of the anomalous windows' lines.
fn fill_from_anomaly_lines(
    store: &Store,
    window_us: i64,
    templates: &HashMap<String, ServiceTemplates>,
    anoms: &mut [Anomaly],
) -> Result<()> {
    // each window's lines of each template, against the service's typical
    // lines of it per window
    let mut st = store.conn.prepare(&format!(
        "SELECT w.idx, w.template_id, t.template, count(*) AS n,
                (epoch_us(t.first_seen) // {window_us}) = w.wi AS is_new
         FROM logsentry_anomaly_lines w JOIN templates t USING (template_id)
         GROUP BY w.idx, w.wi, w.template_id, t.template, t.first_seen"
    ))?;
    let mut rows: Vec<(usize, f64, TemplateChange)> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                TemplateChange {
                    template_id: r.get(1)?,
                    template: r.get(2)?,
                    count: r.get(3)?,
                    typical_per_window: 0.0,
                    new: r.get::<_, Option<bool>>(4)?.unwrap_or(false),
                },
            ))
        })?
        .map(|row| {
            let (idx, mut tc) = row?;
            let typical = templates
                .get(&anoms[idx].service)
                .map(|s| s.per_window(tc.template_id))
                .unwrap_or(0.0);
            tc.typical_per_window = (typical * 100.0).round() / 100.0;
            // the rise against the typical count (a template the service
            // never showed before rises the most)
            let rise = tc.count as f64 / typical.max(f64::MIN_POSITIVE);
            Ok((idx, rise, tc))
        })
        .collect::<Result<_>>()?;
    rows.sort_by(|a, b| {
        (a.0, !a.2.new)
            .cmp(&(b.0, !b.2.new))
            .then(b.1.total_cmp(&a.1))
            .then(a.2.template_id.cmp(&b.2.template_id))
    });
    for (idx, _, tc) in rows {
        let a = &mut anoms[idx];
        // keep templates that appeared or at least doubled, up to three
        if a.templates.len() < 3
            && (tc.new || tc.count as f64 >= 2.0 * tc.typical_per_window.max(0.5))
        {
            a.templates.push(tc);
        }
    }
    // example lines: never-seen templates first, then the most severe, then the rarest
    let mut st = store.conn.prepare(&format!(
        "SELECT idx, source, line_no, ts, svc, level, message FROM (
             SELECT w.idx, w.source, w.line_no, strftime(w.ts, '%Y-%m-%dT%H:%M:%S.%gZ') AS ts,
                    w.svc, w.level, w.message,
                    row_number() OVER (PARTITION BY w.idx ORDER BY
                      ((epoch_us(t.first_seen) // {window_us}) = w.wi) DESC,
                      CASE w.level WHEN 'FATAL' THEN 0 WHEN 'ERROR' THEN 1 WHEN 'WARN' THEN 2 ELSE 3 END,
                      t.count, w.line_no, w.source) AS rn
             FROM logsentry_anomaly_lines w LEFT JOIN templates t USING (template_id))
         WHERE rn <= 5 ORDER BY idx, rn"
    ))?;
    let rows = st.query_map([], |r| {
        let source: String = r.get(1)?;
        let line_no: i64 = r.get(2)?;
        Ok((
            r.get::<_, i64>(0)? as usize,
            LineRef {
                location: format!("{source}:{line_no}"),
                source,
                line_no,
                ts: r.get(3)?,
                service: r.get(4)?,
                level: r.get(5)?,
                message: r.get(6)?,
            },
        ))
    })?;
    for row in rows {
        let (idx, l) = row?;
        anoms[idx].example_lines.push(l);
    }
    Ok(())
}

/// The rarest lines of the scope: one example per template, ranked by how
/// seldom the template occurs in the whole database and by level.
pub fn rare_lines(conn: &duckdb::Connection, scope: &Scope, top: usize) -> Result<Vec<RareLine>> {
    // ranks templates on numbers alone, then reads only the first line of
    // each top template (one row; the first source by name where several
    // share the line number), not every column of every line
    let sql = format!(
        "WITH total AS (SELECT greatest(sum(count), 2)::DOUBLE AS n FROM templates),
              s AS (SELECT template_id, count(*) AS n,
                           max(CASE level WHEN 'FATAL' THEN 1.0 WHEN 'ERROR' THEN 0.8 WHEN 'WARN' THEN 0.4 ELSE 0.0 END) AS lw,
                           min(line_no) AS first_line
                    FROM logs l WHERE {in_scope} GROUP BY template_id),
              top AS (SELECT round(0.7 * ln(total.n / t.count) / ln(total.n) + 0.3 * s.lw, 4) AS rarity,
                             s.template_id, t.template, t.count, s.n, s.first_line
                      FROM s JOIN templates t USING (template_id), total
                      ORDER BY rarity DESC, s.template_id LIMIT ?)
         SELECT top.rarity, top.template_id, top.template, top.count, top.n, l.source, l.line_no,
                strftime(l.ts, '%Y-%m-%dT%H:%M:%S.%gZ'), coalesce(l.service, l.host, '-'), l.level, l.message
         FROM top JOIN logs l ON l.template_id = top.template_id AND l.line_no = top.first_line
         WHERE {in_scope}
         QUALIFY row_number() OVER (PARTITION BY top.template_id ORDER BY l.source) = 1
         ORDER BY top.rarity DESC, top.template_id",
        in_scope = scope.sql("l.")
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st
        .query_map(params![top as i64], |r| {
            let source: String = r.get(5)?;
            let line_no: i64 = r.get(6)?;
            Ok(RareLine {
                rarity: r.get(0)?,
                template_id: r.get(1)?,
                template: r.get(2)?,
                template_count: r.get(3)?,
                count_in_scope: r.get(4)?,
                first: LineRef {
                    location: format!("{source}:{line_no}"),
                    source,
                    line_no,
                    ts: r.get(7)?,
                    service: r.get(8)?,
                    level: r.get(9)?,
                    message: r.get(10)?,
                },
            })
        })?
        .collect::<duckdb::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Replaces the stored windows and anomalies of the services and time span
/// covered, in one transaction.
pub(crate) fn save(
    store: &Store,
    w: &Windows,
    scores: &[f64],
    threshold: f64,
    anoms: &[Anomaly],
    window_us: i64,
) -> Result<()> {
    save_on(
        &store.conn,
        (w, scores, threshold, window_us),
        anoms,
        || Ok(anoms.to_vec()),
    )
}

/// `save` on `conn`, with the windows (their scores, threshold and length)
/// written first, each flagged one with its summary from `summaries`, then
/// the anomalies `explained` gives, which may still be being explained on
/// another connection meanwhile. Nothing is stored when `explained` fails.
fn save_on(
    conn: &duckdb::Connection,
    (w, scores, threshold, window_us): (&Windows, &[f64], f64, i64),
    summaries: &[Anomaly],
    explained: impl FnOnce() -> Result<Vec<Anomaly>>,
) -> Result<()> {
    let secs = window_us / 1_000_000;
    let mut spans: Vec<(String, i64, i64)> = Vec::new();
    for i in 0..w.len() {
        match spans.last_mut() {
            Some(s) if s.0 == w.service[i] => s.2 = w.start[i],
            _ => spans.push((w.service[i].clone(), w.start[i], w.start[i])),
        }
    }
    crate::store::in_transaction(conn, || {
        for (svc, a, b) in &spans {
            for table in ["windows", "anomalies"] {
                conn.execute(
                    &format!(
                        "DELETE FROM {table} WHERE window_secs = ? AND service = ?
                         AND window_start BETWEEN make_timestamp(?::BIGINT) AND make_timestamp(?::BIGINT)"
                    ),
                    params![secs, svc, a, b],
                )?;
            }
        }
        let rb =
            crate::store::arrow_batch::windows_batch(w, scores, threshold, summaries, window_us)?;
        let mut app = conn.appender("windows")?;
        app.append_record_batch(rb)?;
        app.flush()?;
        drop(app);
        let anoms = explained()?;
        let next: i64 = conn.query_row(
            "SELECT coalesce(max(anomaly_id), 0) + 1 FROM anomalies",
            [],
            |r| r.get(0),
        )?;
        let mut app = conn.appender("anomalies")?;
        for (k, a) in anoms.iter().enumerate() {
            app.append_row(params![
                next + k as i64,
                a.service,
                duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, a.start_us),
                duckdb::types::Value::Timestamp(
                    duckdb::types::TimeUnit::Microsecond,
                    a.start_us + window_us
                ),
                secs,
                a.score,
                a.summary,
                serde_json::to_string(&a.reasons)?,
                serde_json::to_string(&a.templates)?,
                serde_json::to_string(&a.example_lines)?,
            ])?;
        }
        app.flush()?;
        Ok(())
    })
}

/// Feature names, for reports and the API.
pub fn feature_names() -> &'static [&'static str] {
    &FEATURES
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn windows(n: usize) -> Windows {
        Windows {
            service: vec!["api".into(); n],
            start: (0..n as i64).map(|i| i * 60_000_000).collect(),
            window_us: 60_000_000,
            x: Array2::zeros((n, FEATURES.len())),
            errors: vec![0; n],
            warns: vec![0; n],
            ..Default::default()
        }
    }

    fn anomaly(start_us: i64) -> Anomaly {
        Anomaly {
            service: "api".into(),
            window_start: format_micros(start_us),
            window_end: format_micros(start_us + 60_000_000),
            start_us,
            score: 0.8,
            summary: "error_ratio 0.50, typical 0.00".into(),
            reasons: Vec::new(),
            templates: Vec::new(),
            example_lines: Vec::new(),
        }
    }

    fn stored(store: &Store) -> (i64, i64, Option<String>) {
        store
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM windows), (SELECT count(*) FROM anomalies),
                        (SELECT reasons FROM windows WHERE is_anomaly)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    #[test]
    fn windows_and_their_explained_anomalies_are_saved_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("x.duckdb").to_str().unwrap()).unwrap();
        let w = windows(10);
        let mut scores = vec![0.4; 10];
        scores[3] = 0.8;
        let summaries = [anomaly(3 * 60_000_000)];
        let windows = (&w, scores.as_slice(), 0.6, w.window_us);
        // explaining failed (on the other connection): nothing is stored
        let failed = save_on(&store.conn, windows, &summaries, || {
            anyhow::bail!("explaining failed")
        });
        assert!(failed.is_err());
        assert_eq!(stored(&store), (0, 0, None));
        // explained: the windows with the flagged one's summary, the anomaly
        // with its lines
        let mut explained = summaries[0].clone();
        explained.example_lines.push(LineRef {
            location: "app.log:7".into(),
            source: "app.log".into(),
            line_no: 7,
            ts: None,
            service: "api".into(),
            level: Some("ERROR".into()),
            message: Some("payment failed".into()),
        });
        save_on(&store.conn, windows, &summaries, || Ok(vec![explained])).unwrap();
        assert_eq!(
            stored(&store),
            (10, 1, Some("error_ratio 0.50, typical 0.00".into()))
        );
        let lines: String = store
            .conn
            .query_row("SELECT example_lines::VARCHAR FROM anomalies", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(lines.contains("app.log:7"), "{lines}");
        // saving the same span again replaces, not duplicates
        save(&store, &w, &scores, 0.6, &summaries, w.window_us).unwrap();
        assert_eq!(stored(&store).0, 10);
        assert_eq!(stored(&store).1, 1);
    }
}
