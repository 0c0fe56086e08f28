//! Criterion benchmarks of the parse stage: JSON and combined parsing with
//! template mining over generated lines, and the miner alone.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logsentry::generate::{generate, GenFormat, GenOptions};
use logsentry::ingest::{parse_block, ParseSettings};
use logsentry::parse::Format;
use logsentry::template::Miner;

fn sample(format: GenFormat, lines: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let opts = GenOptions {
        lines,
        format,
        ..Default::default()
    };
    generate(&opts, &mut buf).expect("generate");
    buf
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_block");
    for (name, gf, f) in [
        ("json", GenFormat::Json, Format::Json),
        ("combined", GenFormat::Combined, Format::Combined),
    ] {
        let data = sample(gf, 100_000);
        g.throughput(Throughput::Bytes(data.len() as u64));
        let settings = ParseSettings {
            format: f,
            year: 2026,
            max_line_bytes: 1 << 20,
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut miner = Miner::default();
                parse_block(&data, 1, &settings, &mut miner)
            })
        });
    }
    g.finish();
}

fn bench_miner(c: &mut Criterion) {
    let data = String::from_utf8(sample(GenFormat::Syslog, 100_000)).expect("utf8");
    let msgs: Vec<&str> = data
        .lines()
        .map(|l| l.splitn(8, ' ').last().unwrap_or(""))
        .collect();
    let mut g = c.benchmark_group("template_miner");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("add_100k_messages", |b| {
        b.iter(|| {
            let mut m = Miner::default();
            for msg in &msgs {
                m.add(msg, None);
            }
            m.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_miner);
criterion_main!(benches);
