//! Owns `logsentry generate`: writes synthetic logs with labelled incidents
//! (and the labels beside them as `<out>.labels.json`).

use crate::generate::{generate, GenFormat, GenOptions, IncidentKind};
use crate::parse::time::parse_iso_prefix;
use anyhow::{anyhow, Context, Result};
use clap::Args;
use std::io::{BufWriter, Write};

/// Generate synthetic web-service logs with labelled incidents.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry generate --lines 1000000 --out big.log\n  logsentry generate --lines 50000 --format combined --out access.log.gz --seed 7"
)]
pub struct GenerateArgs {
    /// Number of lines (at least 1).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub lines: u64,
    /// Output file (`-` for stdout; `.gz` compresses).
    #[arg(long)]
    pub out: String,
    /// Line format.
    #[arg(long, value_enum, default_value_t = GenFormat::Json)]
    pub format: GenFormat,
    /// Random seed: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Time span in minutes (default: lines / 100).
    #[arg(long)]
    pub minutes: Option<u64>,
    /// First timestamp, RFC 3339 (default 2026-11-01T00:00:00Z).
    #[arg(long)]
    pub start: Option<String>,
    /// Inject only these incidents (repeatable; default: all five).
    #[arg(long = "incident", value_enum)]
    pub incidents: Vec<IncidentKind>,
    /// Inject no incidents at all.
    #[arg(long, conflicts_with = "incidents")]
    pub no_incidents: bool,
}

pub fn run(a: GenerateArgs) -> Result<i32> {
    let mut opts = GenOptions {
        lines: a.lines,
        format: a.format,
        seed: a.seed,
        minutes: a.minutes,
        ..Default::default()
    };
    if let Some(s) = &a.start {
        opts.start_us = parse_iso_prefix(s)
            .filter(|(_, used)| *used == s.len())
            .map(|(us, _)| us)
            .ok_or_else(|| anyhow!("--start {s:?} is not an RFC 3339 time"))?;
    }
    if a.no_incidents {
        opts.incidents.clear();
    } else if !a.incidents.is_empty() {
        opts.incidents = a.incidents.clone();
    }
    let t0 = std::time::Instant::now();
    let labels = if a.out == "-" {
        let stdout = std::io::stdout();
        let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
        generate(&opts, &mut w)?
    } else {
        let f =
            std::fs::File::create(&a.out).with_context(|| format!("cannot create {}", a.out))?;
        if a.out.ends_with(".gz") {
            let mut w = BufWriter::with_capacity(
                1 << 20,
                flate2::write::GzEncoder::new(f, flate2::Compression::fast()),
            );
            let l = generate(&opts, &mut w)?;
            w.into_inner()
                .map_err(|e| anyhow!("writing {}: {e}", a.out))?
                .finish()?;
            l
        } else {
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let l = generate(&opts, &mut w)?;
            w.flush()?;
            l
        }
    };
    if a.out != "-" {
        let labels_path = format!("{}.labels.json", a.out);
        std::fs::write(&labels_path, serde_json::to_string_pretty(&labels)?)
            .with_context(|| format!("cannot write {labels_path}"))?;
        eprintln!(
            "wrote {} {:?} lines ({} to {}) to {} in {:.2}s; labels in {}",
            labels.lines,
            a.format,
            labels.start,
            labels.end,
            a.out,
            t0.elapsed().as_secs_f64(),
            labels_path
        );
    }
    Ok(0)
}
