//! Owns `logsentry detect` (re-run features and detection over what is
//! stored, e.g. with another window or contamination, without re-parsing) and
//! the detection flags `analyze` shares with it.

use crate::config::Config;
use crate::detect::{self, DetectSettings, Detection, Scope};
use crate::features::FeatureInput;
use crate::store::Store;
use anyhow::{Context, Result};
use clap::Args;

/// Detection flags shared by `analyze` and `detect`; each overrides its config key.
#[derive(Args, Debug, Clone, Default)]
pub struct DetectOpts {
    /// Window length per service (detect.window), e.g. 30s, 1m, 5m.
    #[arg(long)]
    pub window: Option<String>,
    /// Expected share of anomalous windows (detect.contamination).
    #[arg(long)]
    pub contamination: Option<f64>,
    /// Fixed score threshold in (0,1) instead of contamination (detect.threshold).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Forest seed (detect.seed): the same seed gives the same result.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write a self-contained HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<String>,
}

impl DetectOpts {
    /// The settings after applying these flags over the config.
    pub fn settings(&self, cfg: &Config) -> Result<DetectSettings> {
        let mut c = cfg.detect.clone();
        if let Some(w) = &self.window {
            c.window = w.clone();
        }
        if let Some(x) = self.contamination {
            c.contamination = x;
            c.threshold = None;
        }
        if let Some(t) = self.threshold {
            c.threshold = Some(t);
        }
        if let Some(s) = self.seed {
            c.seed = s;
        }
        let mut check = cfg.clone();
        check.detect = c.clone();
        check.validate()?;
        DetectSettings::from_config(&c)
    }

    /// Runs detection over `scope` (whose lines the caller may already
    /// hold, see `detect::run`), writing the HTML report when asked.
    pub fn run(
        &self,
        store: &Store,
        scope: &Scope,
        lines: Option<FeatureInput>,
        cfg: &Config,
        title: &str,
    ) -> Result<Detection> {
        let settings = self.settings(cfg)?;
        keep_freed_memory();
        let det = detect::run(store, scope, &settings, lines)?;
        if let Some(path) = &self.report {
            let html = crate::report::html(&det, title)?;
            std::fs::write(path, html).with_context(|| format!("cannot write report {path}"))?;
        }
        Ok(det)
    }
}

/// Lets the allocator keep freed memory for reuse instead of handing every
/// large block back to the kernel and faulting fresh zeroed pages in for the
/// next: detection allocates and drops many 1M-row columns. For the one-shot
/// commands only (a server would keep its peak); glibc only. On the 1M-line
/// analyze (seven A/B rounds, see README) detection was faster in six, peak
/// memory +50-60 MB.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is
    // called before detection starts its threads' allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Re-run window features and anomaly detection over the stored logs.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry detect --window 5m\n  logsentry detect --contamination 0.01 --json\n  logsentry detect --report anomalies.html"
)]
pub struct DetectArgs {
    /// Database file (default: config `db`).
    #[arg(long)]
    pub db: Option<String>,
    #[command(flatten)]
    pub opts: DetectOpts,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DetectArgs, cfg: Config) -> Result<i32> {
    let db = args.db.clone().unwrap_or_else(|| cfg.db.clone());
    if !std::path::Path::new(&db).exists() {
        anyhow::bail!("no database at {db}: run `logsentry analyze FILE --db {db}` first");
    }
    let store = Store::open(&db)?;
    let det = args.opts.run(&store, &Scope::All, None, &cfg, &db)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&det)?);
    } else {
        print!("{}", crate::report::text(&det, cfg.detect.report_top));
    }
    Ok(0)
}
