//! Owns `logsentry serve`: the dashboard (axum) and, unless `--no-consume`,
//! the RabbitMQ consumer, together on one tokio runtime and one database.

use super::stream::BrokerOpts;
use crate::config::Config;
use crate::parse::FormatChoice;
use crate::store::Store;
use crate::stream::{consume, shutdown_signal, ConsumeOptions, SharedStats};
use crate::web::{self, AppState};
use anyhow::{Context, Result};
use clap::Args;

/// Serve the dashboard (and consume from RabbitMQ) over one database.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry serve                                  # consume `logs`, dashboard on 127.0.0.1:8080\n  logsentry serve --no-consume --db sample.duckdb  # browse what `analyze` stored\n  logsentry serve --listen 0.0.0.0:8080            # set web.token first (LOGSENTRY_WEB_TOKEN)"
)]
pub struct ServeArgs {
    /// Database file (default: config `db`).
    #[arg(long)]
    pub db: Option<String>,
    /// Address to listen on (web.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Only serve the dashboard; do not consume from RabbitMQ.
    #[arg(long)]
    pub no_consume: bool,
    #[command(flatten)]
    pub broker: BrokerOpts,
    /// Format of consumed lines.
    #[arg(long, default_value = "auto")]
    pub format: FormatChoice,
}

pub fn run(a: ServeArgs, mut cfg: Config) -> Result<i32> {
    a.broker.apply(&mut cfg);
    if let Some(l) = &a.listen {
        cfg.web.listen = l.clone();
    }
    let db = a.db.clone().unwrap_or_else(|| cfg.db.clone());
    let store = Store::open(&db)?;
    // the console must not read files on this machine
    store
        .conn
        .execute_batch("SET enable_external_access = false")?;
    let shared = (!a.no_consume).then(SharedStats::default);
    let state =
        AppState::new(store.conn.try_clone()?, cfg.web.clone())?.with_consumer(shared.clone());
    let rt = super::stream::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&cfg.web.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.web.listen))?;
        println!("dashboard on http://{}/", listener.local_addr()?);
        let web = web::serve(listener, state, shutdown_signal());
        if a.no_consume {
            web.await
        } else {
            let opts = ConsumeOptions {
                format: a.format.clone(),
                idle_exit: None,
                detect: true,
                shared,
            };
            tokio::select! {
                r = web => r,
                r = consume(&cfg, &opts, &store) => r.map(|stats| {
                    println!("consumer stopped: {} lines stored", stats.lines_stored);
                }),
            }
        }
    })?;
    Ok(0)
}
