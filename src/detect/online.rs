//! Owns online detection for the consumer: when the newest stored line
//! closes one or more windows, their features are computed from the stored
//! lines, scored with a model — per-service baselines and an Isolation Forest
//! fitted on the `windows` history of the same window size, retrained on a
//! schedule (the history lives in the database, so a restart retrains from
//! it) — explained, and stored in `windows`/`anomalies`. New anomalies are
//! returned for alerting.

use super::{attach_lines, explain, save, Anomaly, DetectSettings, Scope};
use crate::features::{self, Baseline, Windows, FEATURES};
use crate::parse::time::format_micros;
use crate::store::Store;
use anyhow::Result;
use ndarray::Array2;
use std::time::{Duration, Instant};

/// Windows of history needed before scoring starts.
pub const MIN_HISTORY_WINDOWS: usize = 12;
/// A window is closed once the newest line is this far past its end.
const GRACE_US: i64 = 2_000_000;

struct Model {
    base: Vec<(String, Baseline)>,
    forest: super::forest::IsolationForest,
    /// Per feature: did any training window leave the normal band?
    varied: Vec<bool>,
    /// The score of a point isolated by the first split.
    first_split_score: f64,
    trained: Instant,
    /// History windows the model was fitted on.
    trained_windows: usize,
}

/// Scores windows as they close.
pub struct OnlineDetector {
    settings: DetectSettings,
    retrain: Duration,
    model: Option<Model>,
    /// Windows before this start (µs) are already scored.
    scored_until: Option<i64>,
    /// Windows stored since the last fit: the model is refitted early once
    /// the history has doubled (a young model learns fast).
    stored_since_fit: usize,
}

/// Stored windows of one size that were not anomalous (the model learns what
/// normal looks like), newest `limit`, sorted by (service, start).
fn stored_windows(store: &Store, window_us: i64, limit: usize) -> Result<Windows> {
    let cols = FEATURES.join(", ");
    let sql = format!(
        "SELECT service, epoch_us(window_start), errors, warns, {cols} FROM (
           SELECT * FROM windows WHERE window_secs = {} AND NOT coalesce(is_anomaly, false)
           ORDER BY window_start DESC LIMIT {limit})
         ORDER BY service, window_start",
        window_us / 1_000_000
    );
    let mut st = store.conn.prepare(&sql)?;
    let mut w = Windows {
        window_us,
        ..Default::default()
    };
    let mut flat = Vec::new();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        w.service.push(r.get(0)?);
        w.start.push(r.get(1)?);
        w.errors.push(r.get::<_, Option<i64>>(2)?.unwrap_or(0));
        w.warns.push(r.get::<_, Option<i64>>(3)?.unwrap_or(0));
        for f in 0..FEATURES.len() {
            flat.push(r.get::<_, Option<f64>>(4 + f)?.unwrap_or(f64::NAN));
        }
    }
    w.x = Array2::from_shape_vec((w.service.len(), FEATURES.len()), flat)?;
    Ok(w)
}

/// Adds count-0 windows for `services` wherever `w` has none in [start, end).
/// The result has no lines with a status or a client per window: the model
/// was fitted on windows read back from the table, which do not keep them,
/// so shares are taken over all lines here too, as when it was fitted.
fn fill_range(w: Windows, services: &[String], start: i64, end: i64) -> Windows {
    let mut names: Vec<String> = services.to_vec();
    for s in &w.service {
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    names.sort();
    let step = w.window_us;
    let mut out = Windows {
        window_us: step,
        ..Default::default()
    };
    let mut flat = Vec::new();
    for name in &names {
        let mut t = start;
        while t < end {
            match (0..w.len()).find(|&i| w.service[i] == *name && w.start[i] == t) {
                Some(i) => {
                    flat.extend(w.x.row(i).iter().copied());
                    out.errors.push(w.errors[i]);
                    out.warns.push(w.warns[i]);
                }
                None => {
                    let mut r = vec![0.0; FEATURES.len()];
                    r[features::F_LAT_MEAN] = f64::NAN;
                    r[features::F_LAT_MEAN + 1] = f64::NAN;
                    r[features::F_LAT_MAX] = f64::NAN;
                    flat.extend(r);
                    out.errors.push(0);
                    out.warns.push(0);
                }
            }
            out.service.push(name.clone());
            out.start.push(t);
            t += step;
        }
    }
    out.x = Array2::from_shape_vec((out.service.len(), FEATURES.len()), flat)
        .unwrap_or_else(|_| Array2::zeros((0, FEATURES.len())));
    out.templates = w.templates;
    out
}

impl OnlineDetector {
    pub fn new(settings: DetectSettings, retrain: Duration) -> OnlineDetector {
        OnlineDetector {
            settings,
            retrain,
            model: None,
            scored_until: None,
            stored_since_fit: 0,
        }
    }

    fn train(&mut self, store: &Store) -> Result<()> {
        self.stored_since_fit = 0;
        let w = stored_windows(store, self.settings.window_us, 50_000)?;
        if w.len() < MIN_HISTORY_WINDOWS {
            self.model = None;
            return Ok(());
        }
        let base = features::baselines(&w);
        let z = features::scaled(&w, &base);
        let params = super::forest::IsolationForestParams::default()
            .n_trees(self.settings.n_trees)
            .max_samples(self.settings.max_samples)
            .threshold(self.settings.threshold)
            .seed(self.settings.seed);
        let forest = super::forest::fit_matrix(&params, &z)?;
        tracing::info!(
            windows = w.len(),
            threshold = forest.threshold,
            "online model trained"
        );
        let varied = (0..FEATURES.len())
            .map(|f| z.column(f).iter().any(|v| *v != 0.0))
            .collect();
        let sample = self.settings.max_samples.min(w.len());
        self.model = Some(Model {
            base,
            forest,
            varied,
            first_split_score: 2f64.powf(-1.0 / super::forest::c_factor(sample)),
            trained: Instant::now(),
            trained_windows: w.len(),
        });
        Ok(())
    }

    /// Scores every window closed by `newest_us` (the newest stored line)
    /// that was not scored yet; returns the anomalies found.
    pub fn on_commit(&mut self, store: &Store, newest_us: i64) -> Result<Vec<Anomaly>> {
        let wus = self.settings.window_us;
        let closed_end = (newest_us - GRACE_US).div_euclid(wus) * wus;
        let start = match self.scored_until {
            Some(s) => s,
            None => {
                // resume after what is stored, or start with the newest closed window
                let last: Option<i64> = store.conn.query_row(
                    "SELECT epoch_us(max(window_end)) FROM windows WHERE window_secs = ?",
                    [wus / 1_000_000],
                    |r| r.get(0),
                )?;
                last.unwrap_or(closed_end - wus).max(closed_end - 60 * wus)
            }
        };
        if start >= closed_end {
            return Ok(Vec::new());
        }
        let grown = self.stored_since_fit;
        if self
            .model
            .as_ref()
            .is_none_or(|m| m.trained.elapsed() >= self.retrain || grown >= m.trained_windows)
        {
            self.train(store)?;
        }
        let scope = Scope::Range(start, closed_end);
        let lines = super::load_lines(store, &scope)?;
        let computed = features::compute(lines, wus, 0)?;
        let known: Vec<String> = match &self.model {
            Some(m) => m.base.iter().map(|(s, _)| s.clone()).collect(),
            None => Vec::new(),
        };
        let w = fill_range(computed, &known, start, closed_end);
        self.scored_until = Some(closed_end);
        self.stored_since_fit += w.len();
        let Some(model) = &self.model else {
            // no history yet: store the windows unscored; they become history
            let zeros = vec![0.0; w.len()];
            save(store, &w, &zeros, 1.0, &[], wus)?;
            return Ok(Vec::new());
        };
        // services new since training are scored against their own windows
        let mut base = model.base.clone();
        for (name, b) in features::baselines(&w) {
            if !base.iter().any(|(n, _)| *n == name) {
                base.push((name, b));
            }
        }
        let mut ordered = base.clone();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        let z = features::scaled(&w, &ordered);
        let mut scores = model.forest.scores(&z).to_vec();
        // The trees never split on a feature whose whole history stayed in the
        // normal band, so they cannot isolate a window that leaves it there
        // (an error burst after weeks without one): score such a window as a
        // point isolated by the first split.
        for (r, score) in scores.iter_mut().enumerate() {
            if (0..FEATURES.len()).any(|f| !model.varied[f] && z[[r, f]] != 0.0) {
                *score = score.max(model.first_split_score);
            }
        }
        let mut anomalies = Vec::new();
        for (i, score) in scores.iter().enumerate() {
            if *score <= model.forest.threshold {
                continue;
            }
            let Some((_, b)) = ordered.iter().find(|(n, _)| *n == w.service[i]) else {
                continue;
            };
            let row: Vec<f64> = w.x.row(i).to_vec();
            // as when it was fitted: counts on the log scale, not against
            // an expected count
            let lines = features::Lines {
                expected: f64::NAN,
                ..w.lines(i)
            };
            let reasons = explain::top_reasons(&row, b, &lines, 3);
            anomalies.push(Anomaly {
                service: w.service[i].clone(),
                window_start: format_micros(w.start[i]),
                window_end: format_micros(w.start[i] + wus),
                start_us: w.start[i],
                score: (score * 1e4).round() / 1e4,
                summary: reasons
                    .iter()
                    .map(|r| r.text.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
                reasons,
                templates: Vec::new(),
                example_lines: Vec::new(),
            });
        }
        attach_lines(store, &scope, wus, &w.templates, &mut anomalies)?;
        save(store, &w, &scores, model.forest.threshold, &anomalies, wus)?;
        Ok(anomalies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_range_adds_silent_windows_for_known_services() {
        let w = Windows {
            service: vec!["a".into()],
            start: vec![10],
            window_us: 10,
            x: Array2::from_elem((1, FEATURES.len()), 1.0),
            errors: vec![1],
            warns: vec![0],
            span: None,
            expected_count: Vec::new(),
            status_lines: Vec::new(),
            client_lines: Vec::new(),
            templates: Default::default(),
        };
        let f = fill_range(w, &["b".to_string()], 0, 30);
        assert_eq!(f.service, ["a", "a", "a", "b", "b", "b"]);
        assert_eq!(f.start, [0, 10, 20, 0, 10, 20]);
        assert_eq!(f.x[[1, 0]], 1.0);
        assert_eq!(f.x[[0, 0]], 0.0);
        assert!(f.x[[3, features::F_LAT_MEAN]].is_nan());
        assert_eq!(f.errors, [0, 1, 0, 0, 0, 0]);
    }
}
