//! Owns the RabbitMQ side: the consumer (`logsentry consume`) that gathers
//! deliveries into micro-batches closed on size or age, stores each batch in
//! one DuckDB transaction and only then acks it (multiple) — at-least-once,
//! made idempotent by skipping redelivered messages whose key is already
//! stored — and reconnects with backoff when the broker goes away; and the
//! producer (`logsentry produce`) that publishes generated logs with
//! publisher confirms.

pub mod alert;
pub mod batcher;

use crate::config::{redact_url, Config};
use crate::generate::{live_lines, GenFormat, IncidentKind, Rng};
use crate::parse::FormatChoice;
use crate::store::{NewRun, RunTotals, Store};
use crate::template::{Miner, DEFAULT_SIMILARITY};
use anyhow::{bail, Context, Result};
use batcher::Message;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What the consumer did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ConsumeStats {
    pub messages: u64,
    pub duplicates_skipped: u64,
    pub lines_stored: u64,
    pub lines_rejected: u64,
    pub batches: u64,
    pub reconnects: u64,
    /// Seconds from the first delivery to the last commit.
    pub busy_seconds: f64,
    /// Anomalous windows found online.
    pub anomalies: u64,
    /// Messages waiting in the queue at the last check (consumer lag), when
    /// the stats are shared with the dashboard.
    pub queue_ready: Option<u64>,
    /// Time of the newest stored line (µs since the epoch).
    pub newest_line_us: Option<i64>,
}

/// The consumer's stats as it goes, for the dashboard's `/metrics`.
pub type SharedStats = std::sync::Arc<std::sync::Mutex<ConsumeStats>>;

/// Consumer settings beyond the config.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub format: FormatChoice,
    /// Exit (after committing) once no message arrived for this long.
    pub idle_exit: Option<Duration>,
    /// Score windows as they close (`detect.*` settings).
    pub detect: bool,
    /// Publish stats here after every batch, and check the queue depth.
    pub shared: Option<SharedStats>,
}

async fn open_channel(cfg: &Config) -> Result<(Connection, Channel)> {
    let r = &cfg.rabbitmq;
    let url = r.amqp_url();
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot connect to RabbitMQ at {}", redact_url(&url)))?;
    let ch = conn.create_channel().await?;
    if r.declare {
        ch.queue_declare(
            r.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring queue {}", r.queue))?;
        if !r.exchange.is_empty() {
            ch.queue_bind(
                r.queue.as_str().into(),
                r.exchange.as_str().into(),
                r.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding queue {} to {}", r.queue, r.exchange))?;
        }
    }
    if !r.alert_exchange.is_empty() {
        ch.exchange_declare(
            r.alert_exchange.as_str().into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring the alert exchange {}", r.alert_exchange))?;
    }
    Ok((conn, ch))
}

enum Stop {
    Signal,
    Idle,
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Messages ready in `queue`, from a passive declare; None if the broker
/// would not say.
async fn queue_depth(ch: &Channel, queue: &str) -> Option<u64> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .ok()?;
    Some(u64::from(q.message_count()))
}

struct Consumer<'a> {
    first_delivery: Option<Instant>,
    /// When the queue depth was last asked for (shared stats only).
    depth_checked: Option<Instant>,
    detector: Option<crate::detect::online::OnlineDetector>,
    /// Newest line time stored so far (µs).
    newest_us: Option<i64>,
    webhook: Option<alert::Webhook>,
    cfg: &'a Config,
    opts: &'a ConsumeOptions,
    store: &'a Store,
    miner: Miner,
    run_id: i64,
    year: i64,
    stats: ConsumeStats,
}

impl Consumer<'_> {
    /// Stores the pending messages (skipping redelivered ones already stored)
    /// and acks them all. Storing happens before the ack: a crash in between
    /// redelivers, and the redelivery is skipped.
    async fn flush(
        &mut self,
        ch: &Channel,
        pending: &mut Vec<(Message, bool)>,
        last_tag: u64,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let redelivered: Vec<&str> = pending
            .iter()
            .filter(|(_, re)| *re)
            .map(|(m, _)| m.key.as_str())
            .collect();
        let seen = if redelivered.is_empty() {
            Default::default()
        } else {
            self.store.stored_message_keys(&redelivered)?
        };
        let fresh: Vec<Message> = pending
            .drain(..)
            .filter(|(m, _)| !seen.contains(&m.key))
            .map(|(m, _)| m)
            .collect();
        self.stats.duplicates_skipped += seen.len() as u64;
        let s = &self.cfg.stream;
        let batch = batcher::build(
            &fresh,
            &self.cfg.rabbitmq.queue,
            &self.opts.format,
            self.year,
            self.cfg.ingest.max_line_bytes,
            s.max_message_bytes,
            &mut self.miner,
        );
        let store = self.store;
        let run_id = self.run_id;
        tokio::task::block_in_place(|| -> Result<()> {
            store.append_stream_batch(run_id, &batch, self.miner.templates())
        })?;
        self.miner.mark_saved();
        if let Some(newest) = batch.lines.ts.iter().flatten().max() {
            self.newest_us = Some(self.newest_us.map_or(*newest, |n| n.max(*newest)));
        }
        if let (Some(det), Some(newest)) = (self.detector.as_mut(), self.newest_us) {
            let found = tokio::task::block_in_place(|| det.on_commit(store, newest))?;
            for a in &found {
                info!(service = %a.service, window = %a.window_start, score = a.score, "anomaly");
                self.stats.anomalies += 1;
                let body = alert::body(a);
                if let Some(hook) = &self.webhook {
                    hook.send(&body);
                }
                if !self.cfg.rabbitmq.alert_exchange.is_empty() {
                    let body = serde_json::to_vec(&body)?;
                    ch.basic_publish(
                        self.cfg.rabbitmq.alert_exchange.as_str().into(),
                        a.service.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .context("publishing an alert")?;
                }
            }
        }
        ch.basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .context("acking a stored batch")?;
        self.stats.messages += fresh.len() as u64;
        self.stats.lines_stored += batch.lines.len() as u64;
        self.stats.lines_rejected += batch.rejects.len() as u64;
        self.stats.batches += 1;
        if let Some(t) = self.first_delivery {
            self.stats.busy_seconds = t.elapsed().as_secs_f64();
        }
        self.stats.newest_line_us = self.newest_us;
        if let Some(shared) = &self.opts.shared {
            if self
                .depth_checked
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                self.depth_checked = Some(Instant::now());
                self.stats.queue_ready = queue_depth(ch, &self.cfg.rabbitmq.queue).await;
            }
            if let Ok(mut s) = shared.lock() {
                *s = self.stats.clone();
            }
        }
        Ok(())
    }

    /// Consumes until a signal, idleness, or a broker error.
    async fn run_once(&mut self) -> Result<Stop> {
        let (conn, ch) = open_channel(self.cfg).await?;
        ch.basic_qos(self.cfg.rabbitmq.prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = ch
            .basic_consume(
                self.cfg.rabbitmq.queue.as_str().into(),
                "logsentry".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming from queue {}", self.cfg.rabbitmq.queue))?;
        info!(queue = %self.cfg.rabbitmq.queue, "consuming");
        let s = &self.cfg.stream;
        let half_prefetch = (self.cfg.rabbitmq.prefetch as usize / 2).max(1);
        let batch_age = Duration::from_millis(s.batch_ms.max(1));
        let mut pending: Vec<(Message, bool)> = Vec::new();
        let mut pending_lines = 0usize;
        let mut first_at = Instant::now();
        let mut last_tag = 0u64;
        let mut last_message = Instant::now();
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let wait = if pending.is_empty() {
                Duration::from_millis(200)
            } else {
                batch_age.saturating_sub(first_at.elapsed())
            };
            tokio::select! {
                _ = &mut shutdown => {
                    self.flush(&ch, &mut pending, last_tag).await?;
                    let _ = conn.close(200, "shutdown".into()).await;
                    return Ok(Stop::Signal);
                }
                next = tokio::time::timeout(wait, deliveries.next()) => match next {
                    Ok(Some(Ok(d))) => {
                        if pending.is_empty() {
                            first_at = Instant::now();
                        }
                        self.first_delivery.get_or_insert_with(Instant::now);
                        last_message = Instant::now();
                        last_tag = d.delivery_tag;
                        let key = Message::key_for(
                            d.properties.message_id().as_ref().map(|s| s.as_str()),
                            &d.data,
                        );
                        pending_lines += 1 + memchr::memchr_iter(b'\n', &d.data).count();
                        pending.push((Message { key, body: d.data }, d.redelivered));
                        // the broker sends no more than `prefetch` unacked
                        // messages: closing at half of them lets it deliver
                        // the other half while this batch is being stored
                        if pending_lines >= s.batch_lines
                            || pending.len() >= half_prefetch
                            || first_at.elapsed() >= batch_age
                        {
                            self.flush(&ch, &mut pending, last_tag).await?;
                            pending_lines = 0;
                        }
                    }
                    Ok(Some(Err(e))) => return Err(e).context("receiving from RabbitMQ"),
                    Ok(None) => bail!("the broker cancelled the consumer"),
                    Err(_) => {
                        self.flush(&ch, &mut pending, last_tag).await?;
                        pending_lines = 0;
                        if let Some(idle) = self.opts.idle_exit {
                            if last_message.elapsed() >= idle {
                                let _ = conn.close(200, "idle".into()).await;
                                return Ok(Stop::Idle);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs the consumer until a signal (or idleness, with `idle_exit`),
/// reconnecting with backoff when the broker goes away.
pub async fn consume(cfg: &Config, opts: &ConsumeOptions, store: &Store) -> Result<ConsumeStats> {
    let source = format!("amqp:{}", cfg.rabbitmq.queue);
    let run_id = store.begin_run(&NewRun {
        kind: "consume",
        source: &source,
        fingerprint: None,
        format: &opts_format_name(&opts.format),
    })?;
    let detector = if opts.detect {
        Some(crate::detect::online::OnlineDetector::new(
            crate::detect::DetectSettings::from_config(&cfg.detect)?,
            Duration::from_secs(cfg.stream.retrain_secs.max(1)),
        ))
    } else {
        None
    };
    let mut c = Consumer {
        first_delivery: None,
        depth_checked: None,
        detector,
        newest_us: None,
        webhook: alert::Webhook::from_config(&cfg.stream.webhook_url)?,
        cfg,
        opts,
        store,
        miner: Miner::with_stored(DEFAULT_SIMILARITY, store.load_templates()?),
        run_id,
        year: crate::parse::time::current_year(),
        stats: ConsumeStats::default(),
    };
    let mut backoff = Duration::from_millis(250);
    let started_idle = Instant::now();
    loop {
        match c.run_once().await {
            Ok(_) => break,
            Err(e) => {
                if let Some(idle) = opts.idle_exit {
                    if started_idle.elapsed() > idle * 20 && c.stats.messages == 0 {
                        return Err(e);
                    }
                }
                warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64,
                      "RabbitMQ connection lost; reconnecting");
                eprintln!("consume: {e:#}; reconnecting in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                c.stats.reconnects += 1;
            }
        }
    }
    store.finish_run(
        run_id,
        "done",
        &RunTotals {
            lines_read: c.stats.lines_stored + c.stats.lines_rejected,
            lines_stored: c.stats.lines_stored,
            lines_rejected: c.stats.lines_rejected,
            bytes_read: 0,
        },
    )?;
    Ok(c.stats)
}

fn opts_format_name(f: &FormatChoice) -> String {
    match f {
        FormatChoice::Auto => "auto".into(),
        FormatChoice::Fixed(f) => f.name(),
    }
}

/// A bare consumer for benchmarks: receives and acks (multiple, every 500)
/// without parsing or storing. Returns (messages, lines, seconds from the
/// first to the last delivery).
pub async fn drain(cfg: &Config, idle_exit: Duration) -> Result<(u64, u64, f64)> {
    let (conn, ch) = open_channel(cfg).await?;
    ch.basic_qos(cfg.rabbitmq.prefetch, BasicQosOptions::default())
        .await?;
    let mut deliveries = ch
        .basic_consume(
            cfg.rabbitmq.queue.as_str().into(),
            "logsentry-drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (mut messages, mut lines) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let (mut last_tag, mut acked) = (0, 0);
    loop {
        match tokio::time::timeout(idle_exit, deliveries.next()).await {
            Ok(Some(Ok(d))) => {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
                messages += 1;
                lines += 1 + memchr::memchr_iter(b'\n', &d.data).count() as u64;
                last_tag = d.delivery_tag;
                if messages % 500 == 0 {
                    ch.basic_ack(last_tag, BasicAckOptions { multiple: true })
                        .await?;
                    acked = last_tag;
                }
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => break,
        }
    }
    if last_tag > acked {
        ch.basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await?;
    }
    let _ = conn.close(200, "done".into()).await;
    let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    Ok((messages, lines, secs))
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Lines per second (0 = as fast as the broker confirms).
    pub rate: u64,
    /// Lines to publish (0 = until stopped).
    pub lines: u64,
    /// Lines per message.
    pub batch: usize,
    pub format: GenFormat,
    pub incident: Option<IncidentKind>,
    pub seed: u64,
    /// Publish this many minutes of normal past traffic first (timestamps
    /// from now back), so online detection has history to learn from.
    pub backfill_minutes: u64,
}

/// Lines per second of backfilled history when the live rate is unlimited.
const BACKFILL_RATE: u64 = 1000;

/// Publishes generated logs with publisher confirms; returns (messages, lines).
pub async fn produce(cfg: &Config, o: &ProduceOptions) -> Result<(u64, u64)> {
    let r = &cfg.rabbitmq;
    let (conn, ch) = open_channel(cfg).await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let (exchange, key) = if r.exchange.is_empty() {
        (String::new(), r.queue.clone())
    } else {
        (r.exchange.clone(), r.routing_key.clone())
    };
    let mut rng = Rng::new(o.seed);
    let prefix = format!(
        "{:x}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    };
    let (mut messages, mut lines) = (0u64, 0u64);
    let publish = async |body: String, messages: &mut u64| -> Result<()> {
        ch.basic_publish(
            exchange.as_str().into(),
            key.as_str().into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default()
                .with_message_id(format!("{prefix}-{messages}").into())
                .with_delivery_mode(2),
        )
        .await?;
        *messages += 1;
        if messages.is_multiple_of(1000) {
            let returned = ch.wait_for_confirms().await?;
            if !returned.is_empty() {
                bail!("the broker returned {} messages", returned.len());
            }
        }
        Ok(())
    };
    // normal history first, a second of traffic at a time, as fast as
    // confirmed, until it has caught up with the clock (no gap before live)
    let history_rate = if o.rate > 0 { o.rate } else { BACKFILL_RATE } as usize;
    let span_us = o.backfill_minutes as i64 * 60_000_000;
    let mut ts = now() - span_us;
    // (a rate the broker cannot keep up with stops catching up after twice the span)
    let give_up = ts + 2 * span_us;
    while ts < (now() - 1_000_000).min(give_up) {
        let second = live_lines(&mut rng, o.format, ts, history_rate, None);
        ts += 1_000_000;
        for chunk in second.chunks(o.batch) {
            publish(chunk.join("\n"), &mut messages).await?;
            lines += chunk.len() as u64;
        }
    }
    let backfilled = lines;
    let start = Instant::now();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let live = lines - backfilled;
        if o.lines > 0 && live >= o.lines {
            break;
        }
        let n = if o.lines > 0 {
            o.batch.min((o.lines - live) as usize)
        } else {
            o.batch
        };
        let body = live_lines(&mut rng, o.format, now(), n, o.incident).join("\n");
        publish(body, &mut messages).await?;
        lines += n as u64;
        if o.rate > 0 {
            let due = Duration::from_secs_f64((lines - backfilled) as f64 / o.rate as f64);
            if let Some(sleep) = due.checked_sub(start.elapsed()) {
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {},
                    _ = &mut shutdown => break,
                }
            }
        }
    }
    ch.wait_for_confirms().await?;
    let _ = conn.close(200, "done".into()).await;
    Ok((messages, lines))
}
