//! Owns the DuckDB database: the schema (the public contract users query),
//! columnar appends (Arrow record batches through DuckDB's Arrow scan: a
//! file's lines in one streamed INSERT, a broker micro-batch in one
//! transaction), runs bookkeeping, templates, and the queries the CLI and
//! the web layer share.

pub mod arrow_batch;
pub mod bulk;
pub mod query;

use crate::ingest::Reject;
use crate::template::Template;
use anyhow::{Context, Result};
use duckdb::{params, Connection};

/// The schema. `CREATE ... IF NOT EXISTS` so opening an existing file is a no-op.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    run_id         BIGINT PRIMARY KEY,
    kind           VARCHAR NOT NULL,      -- analyze | consume
    source         VARCHAR NOT NULL,
    fingerprint    VARCHAR,
    format         VARCHAR,
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    status         VARCHAR NOT NULL,      -- running | done | failed
    lines_read     BIGINT DEFAULT 0,
    lines_stored   BIGINT DEFAULT 0,
    lines_rejected BIGINT DEFAULT 0,
    bytes_read     BIGINT DEFAULT 0
);
CREATE TABLE IF NOT EXISTS logs (
    ts          TIMESTAMP,
    level       VARCHAR,
    service     VARCHAR,
    host        VARCHAR,
    message     VARCHAR,
    template_id UINTEGER,
    status      INTEGER,
    latency_ms  DOUBLE,
    bytes       BIGINT,
    client_ip   VARCHAR,
    method      VARCHAR,
    path        VARCHAR,
    source      VARCHAR,
    line_no     BIGINT,
    ingest_id   BIGINT,
    extra       JSON USING COMPRESSION zstd  -- random ids compress as well as with dict_fsst, for less CPU
);
CREATE TABLE IF NOT EXISTS templates (
    template_id UINTEGER PRIMARY KEY,
    template    VARCHAR NOT NULL,
    first_seen  TIMESTAMP,
    last_seen   TIMESTAMP,
    count       BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    service            VARCHAR,
    window_start       TIMESTAMP,
    window_end         TIMESTAMP,
    window_secs        INTEGER,
    count              BIGINT,
    errors             BIGINT,
    warns              BIGINT,
    error_ratio        DOUBLE,
    warn_ratio         DOUBLE,
    ratio_4xx          DOUBLE,
    ratio_5xx          DOUBLE,
    latency_mean       DOUBLE,
    latency_p95        DOUBLE,
    latency_max        DOUBLE,
    bytes              DOUBLE,
    distinct_templates BIGINT,
    new_templates      BIGINT,
    distinct_clients   BIGINT,
    top_client_share   DOUBLE,
    score              DOUBLE,
    is_anomaly         BOOLEAN,
    reasons            VARCHAR
);
CREATE TABLE IF NOT EXISTS anomalies (
    anomaly_id    BIGINT,
    service       VARCHAR,
    window_start  TIMESTAMP,
    window_end    TIMESTAMP,
    window_secs   INTEGER,
    score         DOUBLE,
    summary       VARCHAR,
    reasons       JSON,
    templates     JSON,
    example_lines JSON
);
CREATE TABLE IF NOT EXISTS rejects (
    source      VARCHAR,
    line_no     BIGINT,
    reason      VARCHAR,
    raw         VARCHAR,
    ingest_id   BIGINT,
    message_id  VARCHAR
);
CREATE TABLE IF NOT EXISTS ingested_messages (
    message_id  VARCHAR,
    ingest_id   BIGINT,
    lines       BIGINT
);
CREATE OR REPLACE VIEW line_rarity AS
WITH total AS (SELECT greatest(sum(count), 2)::DOUBLE AS n FROM templates)
SELECT l.*, t.template, t.count AS template_count,
       round(0.7 * ln(total.n / t.count) / ln(total.n)
             + 0.3 * CASE l.level WHEN 'FATAL' THEN 1.0 WHEN 'ERROR' THEN 0.8 WHEN 'WARN' THEN 0.4 ELSE 0.0 END, 4) AS rarity
FROM logs l JOIN templates t USING (template_id), total;
"#;

/// An open LogSentry database. Fields drop in order: connections first,
/// then the database.
pub struct Store {
    pub conn: Connection,
    /// Arrow bulk-insert connection (None when read-only).
    bulk: Option<bulk::BulkConn>,
    _db: bulk::RawDb,
    pub path: String,
}

/// What `runs` says about an earlier load of the same content.
#[derive(Debug, Clone)]
pub struct PriorRun {
    pub run_id: i64,
    pub source: String,
    pub finished_at: String,
    pub lines_stored: i64,
}

/// The runs of one content fingerprint (`Store::runs_of_content`).
#[derive(Debug, Clone, Default)]
pub struct ContentRuns {
    /// The last run that finished loading it.
    pub loaded: Option<PriorRun>,
    /// Every run with it, finished or not, oldest first.
    pub run_ids: Vec<i64>,
}

/// Totals of one run, written to `runs` when it ends.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    pub lines_read: u64,
    pub lines_stored: u64,
    pub lines_rejected: u64,
    pub bytes_read: u64,
}

impl Store {
    /// Opens (creating if needed) a database for writing.
    pub fn open(path: &str) -> Result<Store> {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create directory {}", parent.display()))?;
            }
        }
        let db = bulk::RawDb::open(path, false)
            .with_context(|| format!("cannot open database {path}"))?;
        let conn = db.connection()?;
        // one transaction: one WAL sync instead of one per statement
        conn.execute_batch(&format!("BEGIN TRANSACTION;\n{SCHEMA}\nCOMMIT;"))
            .with_context(|| format!("cannot create the schema in {path}"))?;
        Ok(Store {
            conn,
            bulk: Some(db.bulk()?),
            _db: db,
            path: path.to_string(),
        })
    }

    /// Opens an existing database read-only (the `sql` command, the console).
    pub fn open_read_only(path: &str) -> Result<Store> {
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("no database at {path}: run `logsentry analyze FILE --db {path}` first");
        }
        let db = bulk::RawDb::open(path, true)
            .with_context(|| format!("cannot open database {path} read-only"))?;
        Ok(Store {
            conn: db.connection()?,
            bulk: None,
            _db: db,
            path: path.to_string(),
        })
    }

    /// The runs that loaded content with this fingerprint, any status, in
    /// one query: the last finished one (content already loaded) and all of
    /// their ids (for `--replace`, and cleanup after a crash).
    pub fn runs_of_content(&self, fingerprint: &str) -> Result<ContentRuns> {
        let mut st = self.conn.prepare(
            "SELECT run_id, status = 'done', source, CAST(finished_at AS VARCHAR), lines_stored
             FROM runs WHERE fingerprint = ? ORDER BY run_id",
        )?;
        let rows = st
            .query_map(params![fingerprint], |r| {
                Ok((
                    r.get::<_, bool>(1)?,
                    PriorRun {
                        run_id: r.get(0)?,
                        source: r.get(2)?,
                        finished_at: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        lines_stored: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                    },
                ))
            })?
            .collect::<duckdb::Result<Vec<_>>>()?;
        Ok(ContentRuns {
            run_ids: rows.iter().map(|(_, r)| r.run_id).collect(),
            loaded: rows
                .into_iter()
                .rev()
                .find(|(done, _)| *done)
                .map(|(_, r)| r),
        })
    }

    /// Deletes everything a run stored (its logs, rejects and runs row) and
    /// takes its lines out of the template counts. Returns the lines removed
    /// per template, so an in-memory miner can do the same.
    pub fn delete_run(&self, run_id: i64) -> Result<Vec<(u32, i64)>> {
        in_transaction(&self.conn, || {
            let mut st = self
                .conn
                .prepare("SELECT template_id, count(*) FROM logs WHERE ingest_id = ? GROUP BY 1")?;
            let removed = st
                .query_map(params![run_id], |r| {
                    Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<duckdb::Result<Vec<_>>>()?;
            self.conn.execute(
                "UPDATE templates SET count = templates.count - d.n
                 FROM (SELECT template_id, count(*) AS n FROM logs WHERE ingest_id = ? GROUP BY 1) d
                 WHERE templates.template_id = d.template_id",
                params![run_id],
            )?;
            self.conn
                .execute("DELETE FROM logs WHERE ingest_id = ?", params![run_id])?;
            self.conn
                .execute("DELETE FROM rejects WHERE ingest_id = ?", params![run_id])?;
            self.conn
                .execute("DELETE FROM runs WHERE run_id = ?", params![run_id])?;
            Ok(removed)
        })
    }

    /// Records the start of a run and returns its id (also the `ingest_id`).
    pub fn begin_run(
        &self,
        kind: &str,
        source: &str,
        fingerprint: Option<&str>,
        format: &str,
    ) -> Result<i64> {
        // one statement (one commit): the next id and the row together
        let id: i64 = self.conn.query_row(
            "INSERT INTO runs (run_id, kind, source, fingerprint, format, started_at, status)
             SELECT coalesce(max(run_id), 0) + 1, ?, ?, ?, ?, current_timestamp::TIMESTAMP, 'running'
             FROM runs
             RETURNING run_id",
            params![kind, source, fingerprint, format],
            |r| r.get(0),
        )?;
        Ok(id)
    }

    /// Marks a run finished with its totals.
    pub fn finish_run(&self, run_id: i64, status: &str, t: &RunTotals) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished_at = current_timestamp::TIMESTAMP, status = ?, lines_read = ?, lines_stored = ?,
             lines_rejected = ?, bytes_read = ? WHERE run_id = ?",
            params![
                status,
                t.lines_read as i64,
                t.lines_stored as i64,
                t.lines_rejected as i64,
                t.bytes_read as i64,
                run_id
            ],
        )?;
        Ok(())
    }

    /// Stores every batch of `logs` rows that `batches` yields with one
    /// streamed INSERT (see `bulk::BulkConn::insert_stream`).
    pub fn append_lines_stream(
        &self,
        batches: Box<dyn arrow::record_batch::RecordBatchReader + Send>,
    ) -> Result<()> {
        self.bulk
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("database {} is open read-only", self.path))?
            .insert_stream("logs", batches)
    }

    /// Stores the rejected lines of a file load in one transaction.
    pub fn append_rejects(&self, run_id: i64, source: &str, rejects: &[Reject]) -> Result<()> {
        let rows: Vec<RejectRow<'_>> = rejects
            .iter()
            .map(|r| RejectRow {
                source,
                line_no: r.line_no,
                reason: &r.reason,
                raw: &r.raw,
                message_id: None,
            })
            .collect();
        self.bulk_insert(vec![(
            "rejects",
            arrow_batch::rejects_batch(&rows, run_id)?,
        )])
        .with_context(|| format!("storing rejected lines of {source}"))
    }

    /// Stores a micro-batch from the broker — lines, rejects and the keys
    /// of the messages it came from — in one transaction.
    pub fn append_stream_batch(
        &self,
        run_id: i64,
        batch: &crate::stream::batcher::StreamBatch,
    ) -> Result<()> {
        let lines = if batch.lines.is_empty() {
            Vec::new()
        } else {
            vec![arrow_batch::to_record_batch(
                batch.lines.clone(),
                "",
                run_id,
            )?]
        };
        let rejects: Vec<RejectRow<'_>> = batch
            .rejects
            .iter()
            .map(|r| RejectRow {
                source: &r.source,
                line_no: r.line_no,
                reason: &r.reason,
                raw: &r.raw,
                message_id: Some(&r.message_key),
            })
            .collect();
        self.bulk_insert(vec![
            ("logs", lines),
            ("rejects", arrow_batch::rejects_batch(&rejects, run_id)?),
            (
                "ingested_messages",
                arrow_batch::messages_batch(&batch.messages, run_id)?,
            ),
        ])
    }

    /// Which of these message keys were stored before (redelivery check).
    pub fn stored_message_keys(&self, keys: &[&str]) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for chunk in keys.chunks(1000) {
            let list = chunk
                .iter()
                .map(|k| format!("'{}'", k.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",");
            let mut st = self.conn.prepare(&format!(
                "SELECT DISTINCT message_id FROM ingested_messages WHERE message_id IN ({list})"
            ))?;
            for k in st.query_map([], |r| r.get::<_, String>(0))? {
                out.insert(k?);
            }
        }
        Ok(out)
    }

    /// One transaction of Arrow inserts (see `bulk::BulkConn::insert`).
    pub fn bulk_insert(
        &self,
        inserts: Vec<(&str, Vec<arrow::record_batch::RecordBatch>)>,
    ) -> Result<()> {
        self.bulk
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("database {} is open read-only", self.path))?
            .insert(inserts)
    }

    /// All stored templates, to seed the miner so ids stay stable across runs.
    pub fn load_templates(&self) -> Result<Vec<Template>> {
        let mut st = self.conn.prepare(
            "SELECT template_id, template, epoch_us(first_seen), epoch_us(last_seen), count
             FROM templates ORDER BY template_id",
        )?;
        let rows = st
            .query_map([], |r| {
                let text: String = r.get(1)?;
                Ok(Template {
                    id: r.get::<_, u32>(0)?,
                    tokens: text.split(' ').map(str::to_string).collect(),
                    first_seen: r.get(2)?,
                    last_seen: r.get(3)?,
                    count: r.get::<_, i64>(4)? as u64,
                    stored: true,
                    dirty: false,
                })
            })?
            .collect::<duckdb::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Writes new and changed templates.
    pub fn save_templates(&self, templates: &[Template]) -> Result<()> {
        in_transaction(&self.conn, || {
            let dirty: Vec<&Template> = templates.iter().filter(|t| t.dirty).collect();
            let mut del = self
                .conn
                .prepare("DELETE FROM templates WHERE template_id = ?")?;
            for t in dirty.iter().filter(|t| t.stored) {
                del.execute(params![t.id])?;
            }
            let mut app = self.conn.appender("templates")?;
            for t in &dirty {
                app.append_row(params![
                    t.id,
                    t.text(),
                    t.first_seen.map(duckdb_ts),
                    t.last_seen.map(duckdb_ts),
                    t.count as i64
                ])?;
            }
            app.flush()?;
            Ok(())
        })
    }
}

/// One row of `rejects`.
pub struct RejectRow<'a> {
    pub source: &'a str,
    pub line_no: i64,
    pub reason: &'a str,
    pub raw: &'a str,
    pub message_id: Option<&'a str>,
}

/// Runs `f` inside one transaction on `conn`: COMMIT when it succeeds,
/// ROLLBACK when it fails.
pub fn in_transaction<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Epoch microseconds as a value the appender writes into TIMESTAMP.
fn duckdb_ts(us: i64) -> duckdb::types::Value {
    duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{parse_block, ParseSettings};
    use crate::parse::Format;
    use crate::template::Miner;

    #[test]
    fn append_and_query_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.duckdb");
        let store = Store::open(db.to_str().unwrap()).unwrap();
        let text = concat!(
            r#"{"ts":"2024-01-01T00:00:00Z","level":"error","service":"api","msg":"boom 1","status":503,"latency_ms":12.5,"bytes":10,"client_ip":"1.2.3.4","method":"GET","path":"/x","k":"v"}"#,
            "\n",
            "not json\n",
            r#"{"ts":"2024-01-01T00:00:01Z","level":"info","msg":"ok"}"#,
            "\n"
        );
        let mut miner = Miner::default();
        let settings = ParseSettings {
            format: Format::Json,
            year: 2024,
            max_line_bytes: 1 << 20,
        };
        let block = parse_block(text.as_bytes(), 1, &settings, &mut miner);
        let run = store
            .begin_run("analyze", "mem", Some("fp"), "json")
            .unwrap();
        let lines: Vec<_> = block
            .batches
            .into_iter()
            .map(|b| {
                arrow_batch::to_record_batch(b, "mem", run)
                    .map_err(|e| arrow::error::ArrowError::ExternalError(e.into()))
            })
            .collect();
        let schema = std::sync::Arc::new(arrow_batch::logs_schema());
        store
            .append_lines_stream(Box::new(arrow::record_batch::RecordBatchIterator::new(
                lines, schema,
            )))
            .unwrap();
        store.append_rejects(run, "mem", &block.rejects).unwrap();
        store.save_templates(miner.templates()).unwrap();
        store
            .finish_run(
                run,
                "done",
                &RunTotals {
                    lines_read: 3,
                    lines_stored: 2,
                    lines_rejected: 1,
                    bytes_read: 1,
                },
            )
            .unwrap();
        let (n, svc, st, lat, extra, ts): (i64, String, i32, f64, String, String) = store
            .conn
            .query_row(
                "SELECT count(*) OVER (), service, status, latency_ms, extra->>'k', strftime(ts, '%Y-%m-%d %H:%M:%S') FROM logs ORDER BY line_no LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap();
        assert_eq!(
            (n, svc.as_str(), st, lat, extra.as_str()),
            (2, "api", 503, 12.5, "v")
        );
        assert_eq!(ts, "2024-01-01 00:00:00");
        let (line, reason): (i64, String) = store
            .conn
            .query_row("SELECT line_no, reason FROM rejects", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(line, 2);
        assert!(reason.contains("JSON"));
        let other = store
            .begin_run("analyze", "t2", Some("fp"), "json")
            .unwrap();
        let content = store.runs_of_content("fp").unwrap();
        assert_eq!(content.run_ids, [run, other]);
        // the unfinished run counts for cleanup, not as loaded
        let loaded = content.loaded.unwrap();
        assert_eq!((loaded.run_id, loaded.lines_stored), (run, 2));
        assert!(!loaded.finished_at.is_empty());
        assert!(store.runs_of_content("other").unwrap().run_ids.is_empty());
        let loaded = store.load_templates().unwrap();
        assert_eq!(loaded.len(), miner.len());
        store.delete_run(run).unwrap();
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM logs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
