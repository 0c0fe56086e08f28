//! Owns explanations: for an anomalous window, the features that deviate most
//! from the service's baseline, in words and numbers
//! ("error_ratio 0.34, typical 0.01"). Pure.

use crate::features::{Baseline, Lines, FEATURES};
use serde::{Deserialize, Serialize};

/// One feature's deviation from its service's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    pub value: f64,
    pub typical: f64,
    /// Robust z-score: (value - median) / scale.
    pub z: f64,
    pub text: String,
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v == v.trunc() && v.abs() < 1e12 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The words for one deviation.
pub fn describe(feature: &str, value: f64, typical: f64) -> String {
    let what = match feature {
        "count" if value == 0.0 => {
            return format!("no lines at all (silent), typical {}", fmt_num(typical))
        }
        "new_templates" => return format!("{} never-seen message template(s)", fmt_num(value)),
        _ => feature,
    };
    format!("{what} {}, typical {}", fmt_num(value), fmt_num(typical))
}

/// Features sorted by deviation, the top `k` with |z| ≥ 2 (at least one).
/// `lines` are the window's line counts: its expected count (NaN when
/// unknown) is what a count is compared with and reported as typical.
pub fn top_reasons(row: &[f64], base: &Baseline, lines: &Lines, k: usize) -> Vec<Reason> {
    let mut rs: Vec<Reason> = FEATURES
        .iter()
        .enumerate()
        .filter(|(f, _)| row[*f].is_finite())
        .map(|(f, name)| {
            let f_count = crate::features::F_COUNT;
            let z = base.z_at(f, row[f], lines);
            let typical = if f == f_count && lines.expected.is_finite() {
                lines.expected
            } else {
                base.band(f, lines.size_for(f)).typical
            };
            Reason {
                feature: name.to_string(),
                value: row[f],
                typical,
                z: (z * 100.0).round() / 100.0,
                text: describe(name, row[f], typical),
            }
        })
        .collect();
    rs.retain(|r| r.z > 0.0 || !crate::features::is_rise_only(&r.feature));
    rs.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
    // silence explains everything else that is zero: say it first
    if let Some(p) = rs
        .iter()
        .position(|r| r.feature == "count" && r.value == 0.0)
    {
        let silent = rs.remove(p);
        rs.insert(0, silent);
    }
    let strong = rs
        .iter()
        .take(k)
        .filter(|r| r.z.abs() >= 2.0)
        .count()
        .max(1);
    rs.truncate(strong.min(k));
    rs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_deviation_first_in_words() {
        let n = FEATURES.len();
        let mut base = Baseline {
            median: vec![0.0; n],
            scale: vec![0.05; n],
            typical: vec![0.0; n],
            count_dispersion: 1.0,
            sized: Default::default(),
        };
        base.median[0] = (10.0f64).ln_1p();
        base.typical[0] = 10.0;
        base.scale[0] = 0.25;
        let mut row = vec![0.0; n];
        row[0] = 40.0; // count: ln(41/11)/0.25 ≈ 5.3
        row[1] = 0.34; // error_ratio: share_z(0.34, 0, 40) ≈ 14.1
        let r = top_reasons(&row, &base, &Lines::just(row[0]), 3);
        assert_eq!(r[0].feature, "error_ratio");
        assert_eq!(r[0].text, "error_ratio 0.34, typical 0");
        assert_eq!(r[1].feature, "count");
        assert_eq!(r[1].text, "count 40, typical 10");
        assert_eq!(r.len(), 2);
        assert_eq!(
            describe("count", 0.0, 25.0),
            "no lines at all (silent), typical 25"
        );
        assert_eq!(
            describe("ratio_5xx", 0.3412, 0.01),
            "ratio_5xx 0.34, typical 0.01"
        );
    }
}
