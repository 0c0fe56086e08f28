//! Owns the command line: the clap definitions of every command and the
//! dispatch to one file per command.

pub mod analyze;
pub mod detect;
pub mod generate;
pub mod serve;
pub mod sql;
pub mod stream;

use crate::config::Config;
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "logsentry",
    version,
    about = "Log analytics: load logs into DuckDB, find anomalous windows, explain them",
    long_about = "LogSentry reads log files (JSON/ECS, logfmt, nginx/apache, syslog, plain, custom) \
into an embedded DuckDB database, mines message templates, and answers SQL over what it stored.",
    after_help = "Examples:\n  logsentry generate --lines 100000 --out app.log\n  logsentry analyze app.log\n  logsentry sql \"SELECT level, count(*) FROM logs GROUP BY 1\""
)]
pub struct Cli {
    /// YAML configuration file (default: built-in defaults; env LOGSENTRY_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Analyze(analyze::AnalyzeArgs),
    Detect(detect::DetectArgs),
    Sql(sql::SqlArgs),
    Generate(generate::GenerateArgs),
    Consume(stream::ConsumeArgs),
    Produce(stream::ProduceArgs),
    Serve(serve::ServeArgs),
    /// Benchmark helper: drain a queue with a bare consumer (no parsing, no storage).
    #[command(hide = true)]
    BenchDrain(stream::DrainArgs),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    init_tracing();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cfg = Config::load(cli.config.as_deref(), &env)?;
    match cli.command {
        Command::Analyze(a) => analyze::run(a, cfg),
        Command::Detect(a) => detect::run(a, cfg),
        Command::Sql(a) => sql::run(a, cfg),
        Command::Generate(a) => generate::run(a),
        Command::Consume(a) => stream::run_consume(a, cfg),
        Command::Produce(a) => stream::run_produce(a, cfg),
        Command::Serve(a) => serve::run(a, cfg),
        Command::BenchDrain(a) => stream::run_drain(a, cfg),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
