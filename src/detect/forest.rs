//! Owns our Isolation Forest (Liu, Ting & Zhou 2008) with scikit-learn's
//! semantics: `n_trees` random trees (100), each grown on a sub-sample of
//! `min(max_samples, n)` rows drawn without replacement, to depth
//! `ceil(log2(sub-sample))`; score `2^(-E(h(x)) / c(sub-sample))` in (0, 1),
//! higher = more anomalous; threshold from `contamination` (the training-score
//! quantile) or fixed. Seeded, so a fit is reproducible; scoring is parallel.
//! Implements linfa's `ParamGuard`, `Fit` and `PredictInplace`.

use crate::generate::Rng;
use linfa::dataset::DatasetBase;
use linfa::prelude::Records;
use linfa::traits::{Fit, PredictInplace};
use linfa::ParamGuard;
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use rayon::prelude::*;

/// Errors of fitting and checking parameters.
#[derive(Debug, thiserror::Error)]
pub enum ForestError {
    #[error("isolation forest: {0}")]
    Invalid(String),
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// How the anomaly threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Share of training rows expected to be anomalous.
    Contamination(f64),
    /// A fixed score.
    Score(f64),
}

/// Unchecked hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestParams(IsolationForestValidParams);

/// Checked hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestValidParams {
    pub n_trees: usize,
    pub max_samples: usize,
    pub threshold: Threshold,
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams(IsolationForestValidParams {
            n_trees: 100,
            max_samples: 256,
            threshold: Threshold::Contamination(0.1),
            seed: 42,
        })
    }
}

impl IsolationForestParams {
    pub fn n_trees(mut self, n: usize) -> Self {
        self.0.n_trees = n;
        self
    }
    pub fn max_samples(mut self, n: usize) -> Self {
        self.0.max_samples = n;
        self
    }
    pub fn threshold(mut self, t: Threshold) -> Self {
        self.0.threshold = t;
        self
    }
    pub fn seed(mut self, s: u64) -> Self {
        self.0.seed = s;
        self
    }
}

impl ParamGuard for IsolationForestParams {
    type Checked = IsolationForestValidParams;
    type Error = ForestError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if p.n_trees == 0 {
            return Err(ForestError::Invalid("n_trees must be > 0".into()));
        }
        if p.max_samples < 2 {
            return Err(ForestError::Invalid("max_samples must be >= 2".into()));
        }
        match p.threshold {
            Threshold::Contamination(c) if !(c > 0.0 && c < 0.5) => Err(ForestError::Invalid(
                format!("contamination must be in (0, 0.5), got {c}"),
            )),
            Threshold::Score(s) if !(s > 0.0 && s < 1.0) => Err(ForestError::Invalid(format!(
                "threshold must be in (0, 1), got {s}"
            ))),
            _ => Ok(p),
        }
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// One node, 16 bytes. Pre-order layout: the left child of node `i` is
/// `i + 1`; `right` is stored. A leaf has `feature == LEAF` and `value` holds
/// `c(size)`, the expected remaining path length, computed once at fit time.
#[derive(Debug, Clone, Copy)]
struct Node {
    value: f64,
    feature: u32,
    right: u32,
}

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

/// A fitted forest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    trees: Vec<Tree>,
    sample_size: usize,
    n_features: usize,
    /// Scores above this are anomalies.
    pub threshold: f64,
}

/// Average path length of an unsuccessful BST search among n points.
pub fn c_factor(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

fn build_tree<S: Data<Elem = f64> + Sync>(
    x: &ArrayBase<S, Ix2>,
    rows: &mut [usize],
    rng: &mut Rng,
    max_depth: usize,
) -> Tree {
    let mut nodes = Vec::with_capacity(2 * rows.len());
    grow(x, rows, rng, 0, max_depth, &mut nodes);
    nodes.shrink_to_fit();
    Tree { nodes }
}

fn grow<S: Data<Elem = f64>>(
    x: &ArrayBase<S, Ix2>,
    rows: &mut [usize],
    rng: &mut Rng,
    depth: usize,
    max_depth: usize,
    nodes: &mut Vec<Node>,
) {
    let leaf = |nodes: &mut Vec<Node>, size: usize| {
        nodes.push(Node {
            value: c_factor(size),
            feature: LEAF,
            right: 0,
        })
    };
    if depth >= max_depth || rows.len() <= 1 {
        leaf(nodes, rows.len());
        return;
    }
    let nf = x.ncols();
    // try features in random order until one is not constant here
    let start = rng.below(nf as u64) as usize;
    for k in 0..nf {
        let f = (start + k) % nf;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &r in rows.iter() {
            let v = x[[r, f]];
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi <= lo {
            continue;
        }
        let value = lo + rng.f64() * (hi - lo);
        // partition rows: < value to the left
        let mut i = 0;
        for j in 0..rows.len() {
            if x[[rows[j], f]] < value {
                rows.swap(i, j);
                i += 1;
            }
        }
        let id = nodes.len();
        nodes.push(Node {
            value,
            feature: f as u32,
            right: 0,
        });
        let (l, r) = rows.split_at_mut(i);
        grow(x, l, rng, depth + 1, max_depth, nodes);
        nodes[id].right = nodes.len() as u32;
        grow(x, r, rng, depth + 1, max_depth, nodes);
        return;
    }
    leaf(nodes, rows.len());
}

impl Tree {
    #[inline]
    fn path_length(&self, row: &[f64]) -> f64 {
        let mut i = 0usize;
        let mut depth = 0.0;
        loop {
            let n = self.nodes[i];
            if n.feature == LEAF {
                return depth + n.value;
            }
            i = if row[n.feature as usize] < n.value {
                i + 1
            } else {
                n.right as usize
            };
            depth += 1.0;
        }
    }
}

impl<S: Data<Elem = f64> + Sync, T> Fit<ArrayBase<S, Ix2>, T, ForestError>
    for IsolationForestValidParams
{
    type Object = IsolationForest;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<S, Ix2>, T>,
    ) -> Result<IsolationForest, ForestError> {
        let x = dataset.records();
        let n = x.nsamples();
        if n < 2 {
            return Err(ForestError::Invalid(format!(
                "need at least 2 rows to fit, got {n}"
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(ForestError::Invalid(
                "features must be finite numbers".into(),
            ));
        }
        let sample_size = self.max_samples.min(n);
        let max_depth = (sample_size as f64).log2().ceil() as usize;
        let mut seeder = Rng::new(self.seed);
        let seeds: Vec<u64> = (0..self.n_trees).map(|_| seeder.next_u64()).collect();
        let trees: Vec<Tree> = seeds
            .par_iter()
            .map(|&seed| {
                let mut rng = Rng::new(seed);
                // sample without replacement: partial Fisher–Yates over indices
                let mut idx: Vec<usize> = (0..n).collect();
                for i in 0..sample_size {
                    let j = i + rng.below((n - i) as u64) as usize;
                    idx.swap(i, j);
                }
                let rows = &mut idx[..sample_size];
                build_tree(x, rows, &mut rng, max_depth)
            })
            .collect();
        let mut forest = IsolationForest {
            trees,
            sample_size,
            n_features: x.ncols(),
            threshold: 0.5,
        };
        forest.threshold = match self.threshold {
            Threshold::Score(s) => s,
            Threshold::Contamination(c) => {
                let mut scores = forest.scores(x).to_vec();
                scores.sort_by(|a, b| a.total_cmp(b));
                // sklearn: offset = percentile(scores, 100 * (1 - contamination))
                crate::features::quantile_sorted(&scores, 1.0 - c)
            }
        };
        Ok(forest)
    }
}

impl IsolationForest {
    /// Anomaly score of each row, in (0, 1).
    pub fn scores<S: Data<Elem = f64> + Sync>(&self, x: &ArrayBase<S, Ix2>) -> Array1<f64> {
        let cn = c_factor(self.sample_size);
        let ntrees = self.trees.len() as f64;
        let nf = x.ncols();
        let v: Vec<f64> = (0..x.nrows())
            .into_par_iter()
            .with_min_len(1024)
            .map_init(
                || vec![0.0; nf],
                |buf, r| {
                    // a contiguous copy of the row: no strided indexing in the hot loop
                    for (b, v) in buf.iter_mut().zip(x.row(r)) {
                        *b = *v;
                    }
                    let total: f64 = self.trees.iter().map(|t| t.path_length(buf)).sum();
                    2f64.powf(-(total / ntrees) / cn)
                },
            )
            .collect();
        Array1::from(v)
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }
}

/// Predicts anomaly scores (use `threshold` to turn them into flags).
impl<S: Data<Elem = f64> + Sync> PredictInplace<ArrayBase<S, Ix2>, Array1<f64>>
    for IsolationForest
{
    fn predict_inplace(&self, x: &ArrayBase<S, Ix2>, y: &mut Array1<f64>) {
        let s = self.scores(x);
        y.assign(&s);
    }

    fn default_target(&self, x: &ArrayBase<S, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

/// Convenience: fit on a plain matrix.
pub fn fit_matrix(
    params: &IsolationForestParams,
    x: &Array2<f64>,
) -> Result<IsolationForest, ForestError> {
    let ds = DatasetBase::from(x.view());
    params.fit(&ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;

    fn cloud(n: usize, seed: u64) -> Array2<f64> {
        let mut rng = Rng::new(seed);
        Array2::from_shape_fn((n, 3), |_| rng.normal())
    }

    #[test]
    fn obvious_outlier_scores_highest_and_scores_in_unit_interval() {
        let mut x = cloud(500, 1);
        x.row_mut(123).assign(&ndarray::arr1(&[9.0, -9.0, 9.0]));
        let f = fit_matrix(&IsolationForestParams::default(), &x).unwrap();
        let s: Array1<f64> = f.predict(&x);
        let best = s
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 123);
        assert!(s.iter().all(|&v| v > 0.0 && v < 1.0));
        assert!(s[123] > 0.7, "{}", s[123]);
    }

    #[test]
    fn contamination_flags_about_that_share() {
        let x = cloud(2000, 2);
        let p = IsolationForestParams::default().threshold(Threshold::Contamination(0.1));
        let f = fit_matrix(&p, &x).unwrap();
        let flagged = f.scores(&x).iter().filter(|&&s| s > f.threshold).count();
        assert!((180..=220).contains(&flagged), "{flagged}");
    }

    #[test]
    fn seeded_fits_are_reproducible_and_params_checked() {
        let x = cloud(300, 3);
        let a = fit_matrix(&IsolationForestParams::default().seed(9), &x)
            .unwrap()
            .scores(&x);
        let b = fit_matrix(&IsolationForestParams::default().seed(9), &x)
            .unwrap()
            .scores(&x);
        assert_eq!(a, b);
        let c = fit_matrix(&IsolationForestParams::default().seed(10), &x)
            .unwrap()
            .scores(&x);
        assert_ne!(a, c);
        assert!(fit_matrix(&IsolationForestParams::default().n_trees(0), &x).is_err());
        assert!(fit_matrix(
            &IsolationForestParams::default().threshold(Threshold::Contamination(0.7)),
            &x
        )
        .is_err());
        assert!(fit_matrix(&IsolationForestParams::default(), &Array2::zeros((1, 3))).is_err());
    }

    #[test]
    fn c_factor_matches_reference_values() {
        assert_eq!(c_factor(1), 0.0);
        assert_eq!(c_factor(2), 1.0);
        assert!((c_factor(256) - 10.2448).abs() < 1e-3, "{}", c_factor(256));
    }
}
