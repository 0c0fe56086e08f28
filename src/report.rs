//! Owns reports of a detection pass: the ranked text table printed by
//! `analyze`/`detect`, and the self-contained HTML report (minijinja template
//! `templates/report.html`, inline SVG charts, no network needed).

use crate::detect::{Detection, MIN_SCORED_WINDOWS};
use crate::features::{F_COUNT, F_LAT_MEAN};
use anyhow::Result;
use serde::Serialize;

fn clip(s: &str, n: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() <= n {
        one
    } else {
        let mut t: String = one.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `n` and the noun, plural unless `n` is 1.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The ranked anomaly table and the rarest lines, as text.
pub fn text(d: &Detection, top: usize) -> String {
    let mut s = String::new();
    if d.windows == 0 {
        s.push_str("detection: no timestamped lines to analyse\n");
        return s;
    }
    if d.threshold.is_finite() {
        s.push_str(&format!(
            "\nanomalies: {} of {} windows ({} windows, {}, score threshold {:.3})\n",
            d.anomalies.len(),
            d.windows,
            d.window,
            plural(d.service_count, "service"),
            d.threshold
        ));
    } else {
        s.push_str(&format!(
            "\nanomalies: not scored: {} ({} windows, {}); scoring needs at least {MIN_SCORED_WINDOWS} windows\n",
            plural(d.windows, "window"),
            d.window,
            plural(d.service_count, "service"),
        ));
    }
    if !d.anomalies.is_empty() {
        s.push_str(&format!(
            "{:<20}  {:<14}  {:>5}  {}\n",
            "window start (UTC)", "service", "score", "why"
        ));
        for a in d.anomalies.iter().take(top) {
            s.push_str(&format!(
                "{:<20}  {:<14}  {:>5.3}  {}\n",
                &a.window_start[..19.min(a.window_start.len())],
                clip(&a.service, 14),
                a.score,
                clip(&a.summary, 100)
            ));
            if let Some(t) = a.templates.first() {
                s.push_str(&format!(
                    "{:>45}{} {}x (typical {}): {}\n",
                    "",
                    if t.new { "new template" } else { "template" },
                    t.count,
                    t.typical_per_window,
                    clip(&t.template, 70)
                ));
            }
            if let Some(l) = a.example_lines.first() {
                s.push_str(&format!("{:>45}e.g. {}\n", "", clip(&l.location, 80)));
            }
        }
        if d.anomalies.len() > top {
            s.push_str(&format!(
                "... {} more (see the anomalies table)\n",
                d.anomalies.len() - top
            ));
        }
    }
    if !d.rare_lines.is_empty() {
        s.push_str("\nrarest lines (one per template):\n");
        for r in d.rare_lines.iter().take(top) {
            s.push_str(&format!(
                "{:.3}  {:>6}x  {:<5}  {:<14}  {}  {}\n",
                r.rarity,
                r.template_count,
                r.first.level.as_deref().unwrap_or("-"),
                clip(&r.first.service, 14),
                clip(r.first.message.as_deref().unwrap_or(""), 70),
                r.first.location
            ));
        }
    }
    s
}

#[derive(Serialize)]
struct Chart {
    service: String,
    rate: String,
    errors: String,
    latency: String,
    marks: Vec<f64>,
    max_rate: f64,
    max_latency: f64,
}

const W: f64 = 900.0;
const H: f64 = 80.0;

fn polyline(xs: &[f64], ys: &[f64], ymax: f64) -> String {
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    xs.iter()
        .zip(ys)
        .map(|(x, y)| {
            let y = if y.is_finite() { *y } else { 0.0 };
            format!("{:.1},{:.1}", x, H - (y / ymax) * (H - 4.0))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn charts(d: &Detection) -> Vec<Chart> {
    let w = &d.features;
    let mut out = Vec::new();
    let (t0, t1) = match (w.start.iter().min(), w.start.iter().max()) {
        (Some(a), Some(b)) => (*a, (*b).max(*a + 1)),
        _ => return out,
    };
    let xpos = |t: i64| (t - t0) as f64 / (t1 - t0) as f64 * W;
    let mut i = 0;
    while i < w.len() {
        let mut j = i;
        while j < w.len() && w.service[j] == w.service[i] {
            j += 1;
        }
        // thin to at most ~900 points by taking maxima per pixel column
        let step = ((j - i) / 900).max(1);
        let mut xs = Vec::new();
        let (mut rate, mut err, mut lat) = (Vec::new(), Vec::new(), Vec::new());
        let mut k = i;
        while k < j {
            let e = (k + step).min(j);
            xs.push(xpos(w.start[k]));
            rate.push((k..e).map(|r| w.x[[r, F_COUNT]]).fold(0.0, f64::max));
            err.push((k..e).map(|r| w.errors[r] as f64).fold(0.0, f64::max));
            lat.push(
                (k..e)
                    .map(|r| w.x[[r, F_LAT_MEAN]])
                    .filter(|v| v.is_finite())
                    .fold(0.0, f64::max),
            );
            k = e;
        }
        let max_rate = rate.iter().cloned().fold(0.0, f64::max);
        let max_lat = lat.iter().cloned().fold(0.0, f64::max);
        let marks = d
            .anomalies
            .iter()
            .filter(|a| a.service == w.service[i])
            .map(|a| (xpos(a.start_us) * 10.0).round() / 10.0)
            .collect();
        out.push(Chart {
            service: w.service[i].clone(),
            rate: polyline(&xs, &rate, max_rate),
            errors: polyline(&xs, &err, max_rate),
            latency: polyline(&xs, &lat, max_lat),
            marks,
            max_rate,
            max_latency: (max_lat * 10.0).round() / 10.0,
        });
        i = j;
    }
    out
}

/// Renders the self-contained HTML report.
pub fn html(d: &Detection, title: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("report.html", include_str!("../templates/report.html"))?;
    let tpl = env.get_template("report.html")?;
    let first = d.features.start.iter().min().copied();
    let last = d.features.start.iter().max().copied();
    Ok(tpl.render(minijinja::context! {
        title => title,
        detection => minijinja::value::Serde(d),
        charts => minijinja::value::Serde(charts(d)),
        width => W,
        height => H,
        first => first.map(crate::parse::time::format_micros),
        last => last.map(crate::parse::time::format_micros),
        scored => d.threshold.is_finite(),
        min_windows => MIN_SCORED_WINDOWS,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(windows: usize, threshold: f64) -> Detection {
        Detection {
            window: "1m".into(),
            windows,
            service_count: 2,
            threshold,
            anomalies: Vec::new(),
            rare_lines: Vec::new(),
            features: Default::default(),
            scores: Vec::new(),
        }
    }

    #[test]
    fn too_few_windows_are_reported_as_not_scored_not_as_a_nan_threshold() {
        let few = detection(3, f64::NAN);
        let t = text(&few, 10);
        assert!(
            t.contains(
                "not scored: 3 windows (1m windows, 2 services); scoring needs at least 8 windows"
            ),
            "{t}"
        );
        assert!(!t.to_lowercase().contains("nan"), "{t}");
        let mut one = detection(1, f64::NAN);
        one.service_count = 1;
        assert!(text(&one, 10).contains("not scored: 1 window (1m windows, 1 service);"));
        let h = html(&one, "one").unwrap();
        assert!(h.contains("1 window of 1m across 1 service,"), "{h}");
        let h = html(&few, "few").unwrap();
        assert!(h.contains("3 windows of 1m across 2 services,"), "{h}");
        assert!(
            h.contains("Not scored: scoring needs at least 8 windows."),
            "{h}"
        );
        assert!(!h.contains("NaN") && !h.contains("threshold"), "{h}");

        let scored = detection(40, 0.6123);
        let t = text(&scored, 10);
        assert!(
            t.contains(
                "anomalies: 0 of 40 windows (1m windows, 2 services, score threshold 0.612)"
            ),
            "{t}"
        );
        let h = html(&scored, "scored").unwrap();
        assert!(
            h.contains("0 anomalous windows\n(score threshold 0.612)."),
            "{h}"
        );
    }
}
