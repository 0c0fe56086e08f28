//! Owns `logsentry consume` and `logsentry produce`: the command-line faces
//! of the RabbitMQ consumer and the sample producer in `crate::stream`.

use crate::config::Config;
use crate::generate::{GenFormat, IncidentKind};
use crate::parse::FormatChoice;
use crate::store::Store;
use crate::stream::{consume, produce, ConsumeOptions, ProduceOptions};
use anyhow::Result;
use clap::Args;
use std::time::Duration;

/// Broker flags shared by `consume` and `produce`; each overrides its config key.
#[derive(Args, Debug, Clone, Default)]
pub struct BrokerOpts {
    /// AMQP URL (rabbitmq.url), e.g. amqp://user:pass@host:5672/%2f
    #[arg(long)]
    pub url: Option<String>,
    /// Queue (rabbitmq.queue).
    #[arg(long)]
    pub queue: Option<String>,
}

impl BrokerOpts {
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(u) = &self.url {
            cfg.rabbitmq.url = u.clone();
        }
        if let Some(q) = &self.queue {
            cfg.rabbitmq.queue = q.clone();
        }
    }
}

/// The tokio runtime of the broker and web commands.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Consume log lines from RabbitMQ into DuckDB (micro-batches, at-least-once, no duplicates).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry consume --queue logs\n  LOGSENTRY_RABBITMQ_URL=amqp://u:p@rabbit:5672/%2f logsentry consume --db /data/logs.duckdb\n  logsentry consume --queue logs --idle-exit 5   # drain the queue, then exit"
)]
pub struct ConsumeArgs {
    /// Database file (default: config `db`).
    #[arg(long)]
    pub db: Option<String>,
    #[command(flatten)]
    pub broker: BrokerOpts,
    /// auto | json | logfmt | combined | syslog | plain | regex:RE | pattern:P
    #[arg(long, default_value = "auto")]
    pub format: FormatChoice,
    /// Exit once the queue has been idle this many seconds.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<f64>,
    /// Only store; do not score windows as they close.
    #[arg(long)]
    pub no_detect: bool,
}

pub fn run_consume(a: ConsumeArgs, mut cfg: Config) -> Result<i32> {
    a.broker.apply(&mut cfg);
    let db = a.db.clone().unwrap_or_else(|| cfg.db.clone());
    let store = Store::open(&db)?;
    let opts = ConsumeOptions {
        format: a.format.clone(),
        idle_exit: a.idle_exit.map(Duration::from_secs_f64),
        detect: !a.no_detect,
        shared: None,
    };
    let stats = runtime()?.block_on(consume(&cfg, &opts, &store))?;
    println!(
        "consumed {} messages ({} redelivered duplicates skipped): {} lines stored, {} rejected, {} batches, {} reconnects, {} anomalies; {:.2}s busy ({:.0} msgs/s, {:.0} lines/s)",
        stats.messages,
        stats.duplicates_skipped,
        stats.lines_stored,
        stats.lines_rejected,
        stats.batches,
        stats.reconnects,
        stats.anomalies,
        stats.busy_seconds,
        stats.messages as f64 / stats.busy_seconds.max(1e-9),
        (stats.lines_stored + stats.lines_rejected) as f64 / stats.busy_seconds.max(1e-9)
    );
    Ok(0)
}

/// Publish generated web-service logs to RabbitMQ (publisher confirms).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry produce --rate 10000 --lines 1000000\n  logsentry produce --incident error_burst        # 10 min of normal history, then a live incident, forever\n  logsentry produce --batch 100 --lines 500000     # 100 lines per message"
)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub broker: BrokerOpts,
    /// Lines per second (0 = as fast as possible).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Lines to publish (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub lines: u64,
    /// Lines per message.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Line format.
    #[arg(long, value_enum, default_value_t = GenFormat::Json)]
    pub format: GenFormat,
    /// Inject this incident into the live traffic.
    #[arg(long, value_enum)]
    pub incident: Option<IncidentKind>,
    /// First publish this many minutes of normal past traffic (at --rate,
    /// timestamps up to now) for online detection to learn from.
    /// Default: 10 with --incident, else 0.
    #[arg(long)]
    pub backfill: Option<u64>,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run_produce(a: ProduceArgs, mut cfg: Config) -> Result<i32> {
    a.broker.apply(&mut cfg);
    if a.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let opts = ProduceOptions {
        rate: a.rate,
        lines: a.lines,
        batch: a.batch,
        format: a.format,
        incident: a.incident,
        seed: a.seed,
        backfill_minutes: a
            .backfill
            .unwrap_or(if a.incident.is_some() { 10 } else { 0 }),
    };
    let t = std::time::Instant::now();
    let (messages, lines) = runtime()?.block_on(produce(&cfg, &opts))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "published {lines} lines in {messages} messages to queue {} in {secs:.2}s ({:.0} lines/s), all confirmed",
        cfg.rabbitmq.queue,
        lines as f64 / secs.max(1e-9)
    );
    Ok(0)
}

/// Benchmark helper: drain a queue without parsing or storing (a bare lapin consumer).
#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    pub broker: BrokerOpts,
    /// Stop after the queue has been idle this many seconds.
    #[arg(long, default_value_t = 1.0)]
    pub idle_exit: f64,
}

pub fn run_drain(a: DrainArgs, mut cfg: Config) -> Result<i32> {
    a.broker.apply(&mut cfg);
    let (messages, lines, secs) = runtime()?.block_on(crate::stream::drain(
        &cfg,
        Duration::from_secs_f64(a.idle_exit),
    ))?;
    println!(
        "drained {messages} messages ({lines} lines) in {secs:.2}s ({:.0} msgs/s, {:.0} lines/s)",
        messages as f64 / secs.max(1e-9),
        lines as f64 / secs.max(1e-9)
    );
    Ok(0)
}
