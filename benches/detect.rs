//! Criterion benchmarks of detection: Isolation Forest fit on 50k windows,
//! scoring 1M rows, and Polars window features over 1M lines.

use criterion::{criterion_group, criterion_main, Criterion};
use logsentry::detect::forest::{fit_matrix, IsolationForestParams};
use logsentry::features::{compute, FeatureInput, FEATURES};
use logsentry::generate::Rng;
use ndarray::Array2;
use polars::prelude::*;

fn matrix(rows: usize, seed: u64) -> Array2<f64> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, FEATURES.len()), |_| rng.normal())
}

fn bench_forest(c: &mut Criterion) {
    let train = matrix(50_000, 1);
    let params = IsolationForestParams::default();
    c.bench_function("forest_fit_50k_windows", |b| {
        b.iter(|| fit_matrix(&params, &train).expect("fit"))
    });
    let forest = fit_matrix(&params, &train).expect("fit");
    let big = matrix(1_000_000, 2);
    let mut g = c.benchmark_group("forest_score");
    g.sample_size(10);
    g.bench_function("score_1m_rows", |b| b.iter(|| forest.scores(&big)));
    g.finish();
}

fn lines_frame(n: usize) -> FeatureInput {
    let mut rng = Rng::new(3);
    let services = ["api", "auth", "orders", "payments", "inventory"];
    let levels = ["INFO", "INFO", "INFO", "WARN", "ERROR"];
    let ts: Vec<i64> = (0..n as i64)
        .map(|i| 1_793_577_600_000_000 + i * 600_000)
        .collect();
    let named = df!(
        "ts_us" => ts.clone(),
        "svc" => (0..n).map(|_| *rng.pick(&services)).collect::<Vec<_>>(),
        "level" => (0..n).map(|_| *rng.pick(&levels)).collect::<Vec<_>>(),
        "status" => (0..n).map(|_| Some(200 + 100 * rng.below(4) as i32)).collect::<Vec<_>>(),
        "latency_ms" => (0..n).map(|_| Some(20.0 * (0.5 * rng.normal()).exp())).collect::<Vec<_>>(),
        "bytes" => (0..n).map(|_| Some(rng.below(5000) as i64)).collect::<Vec<_>>(),
        "template_id" => (0..n).map(|_| rng.below(60) as u32).collect::<Vec<_>>(),
        "client_ip" => (0..n).map(|_| format!("10.0.0.{}", rng.below(200))).collect::<Vec<_>>(),
        "tpl_first_us" => vec![1_793_577_600_000_000i64; n],
    )
    .expect("frame");
    FeatureInput::from_named(named).expect("keyed frame")
}

fn bench_features(c: &mut Criterion) {
    let df = lines_frame(1_000_000);
    let mut g = c.benchmark_group("window_features");
    g.sample_size(10);
    g.bench_function("features_1m_lines", |b| {
        b.iter(|| compute(df.clone(), 60_000_000, 30).expect("features"))
    });
    g.finish();
}

criterion_group!(benches, bench_forest, bench_features);
criterion_main!(benches);
