//! Owns the DuckDB database: the schema (the public contract users query),
//! columnar appends (Arrow record batches through DuckDB's Arrow scan: a
//! file's load — run row, lines in one streamed INSERT, rejects, totals,
//! templates — in one transaction, a broker micro-batch in another), runs
//! bookkeeping, templates, and the queries the CLI and the web layer share.

pub mod arrow_batch;
pub mod bulk;
pub mod query;

use crate::ingest::Reject;
use crate::template::Template;
use anyhow::{Context, Result};
use duckdb::{params, Connection};
use std::sync::Arc;

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

    /// Closes the database of a process about to exit: checkpoints it, as
    /// closing does, and leaves the rest of DuckDB's teardown to the exit,
    /// where the kernel drops the process's memory at once (freeing DuckDB's
    /// buffers one by one took 40–50 ms after a 1M-line load). Not for a
    /// process that goes on: the database stays open, and its memory held,
    /// until the process ends.
    pub fn close_at_exit(self) -> Result<()> {
        self.conn
            .execute_batch("CHECKPOINT")
            .with_context(|| format!("cannot checkpoint {}", self.path))?;
        std::mem::forget(self);
        Ok(())
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

    /// The bulk connection, which every write of rows goes through.
    fn bulk(&self) -> Result<&bulk::BulkConn> {
        self.bulk
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("database {} is open read-only", self.path))
    }

    /// Records the start of a run and returns its id (also the `ingest_id`).
    pub fn begin_run(&self, run: &NewRun<'_>) -> Result<i64> {
        let txn = self.bulk()?.begin("run start")?;
        let id = txn.query_i64(&run.insert_sql(&txn))?;
        txn.commit()?;
        Ok(id)
    }

    /// Marks a run finished with its totals.
    pub fn finish_run(&self, run_id: i64, status: &str, t: &RunTotals) -> Result<()> {
        let txn = self.bulk()?.begin("run end")?;
        txn.exec(&finish_run_sql(&txn, run_id, status, t))?;
        txn.commit()
    }

    /// Starts loading one file as one transaction (see `FileLoad`): makes
    /// its `runs` row, whose id the lines `lines` yields must carry as
    /// their `ingest_id`.
    pub fn begin_file_load(
        &self,
        run: &NewRun<'_>,
        lines: Box<dyn arrow::record_batch::RecordBatchReader + Send>,
    ) -> Result<FileLoad<'_>> {
        let bulk = self.bulk()?;
        let mut scans = bulk.scans();
        let lines_view = scans.add(lines)?;
        let rejects = bulk::LateBatches::new(Arc::new(arrow_batch::rejects_schema()));
        let rejects_view = scans.add(Box::new(rejects.clone()))?;
        let templates = bulk::LateBatches::new(Arc::new(arrow_batch::templates_schema()));
        let templates_view = scans.add(Box::new(templates.clone()))?;
        let txn = bulk.begin("file load")?;
        let run_id = txn.query_i64(&run.insert_sql(&txn))?;
        Ok(FileLoad {
            txn,
            _scans: scans,
            lines_view,
            rejects: (rejects, rejects_view),
            templates: (templates, templates_view),
            run_id,
        })
    }

    /// Stores a micro-batch from the broker — lines, rejects, the keys of
    /// the messages it came from, and the templates they changed — in one
    /// transaction.
    pub fn append_stream_batch(
        &self,
        run_id: i64,
        batch: &crate::stream::batcher::StreamBatch,
        templates: &[Template],
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
        let TemplateWrite { rows, replaced } = TemplateWrite::of(templates)?;
        self.bulk()?.insert(
            vec![
                ("logs", lines),
                ("rejects", arrow_batch::rejects_batch(&rejects, run_id)?),
                (
                    "ingested_messages",
                    arrow_batch::messages_batch(&batch.messages, run_id)?,
                ),
                ("templates", rows),
            ],
            |txn| delete_templates(txn, &replaced),
        )
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

    /// Writes new and changed templates in one transaction.
    pub fn save_templates(&self, templates: &[Template]) -> Result<()> {
        let TemplateWrite { rows, replaced } = TemplateWrite::of(templates)?;
        self.bulk()?.insert(vec![("templates", rows)], |txn| {
            delete_templates(txn, &replaced)
        })
    }
}

/// A new run's `runs` row.
pub struct NewRun<'a> {
    /// analyze | consume
    pub kind: &'a str,
    pub source: &'a str,
    pub fingerprint: Option<&'a str>,
    pub format: &'a str,
}

impl NewRun<'_> {
    /// Inserts the row, status `running`, with the next id, returning it.
    fn insert_sql(&self, txn: &bulk::Txn<'_>) -> String {
        format!(
            "INSERT INTO {runs} (run_id, kind, source, fingerprint, format, started_at, status)
             SELECT coalesce(max(run_id), 0) + 1, {}, {}, {}, {}, current_timestamp::TIMESTAMP, 'running'
             FROM {runs}
             RETURNING run_id",
            sql_text(self.kind),
            sql_text(self.source),
            self.fingerprint.map_or("NULL".to_string(), sql_text),
            sql_text(self.format),
            runs = txn.table("runs"),
        )
    }
}

/// Sets a run's end time, status and totals.
fn finish_run_sql(txn: &bulk::Txn<'_>, run_id: i64, status: &str, t: &RunTotals) -> String {
    format!(
        "UPDATE {} SET finished_at = current_timestamp::TIMESTAMP, status = {}, lines_read = {},
         lines_stored = {}, lines_rejected = {}, bytes_read = {} WHERE run_id = {run_id}",
        txn.table("runs"),
        sql_text(status),
        t.lines_read,
        t.lines_stored,
        t.lines_rejected,
        t.bytes_read
    )
}

/// `s` as an SQL string literal.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The templates a run created or changed: their rows, and which of them
/// were stored before (those rows are deleted first, then inserted anew).
struct TemplateWrite {
    rows: Vec<arrow::record_batch::RecordBatch>,
    replaced: Vec<u32>,
}

impl TemplateWrite {
    fn of(templates: &[Template]) -> Result<TemplateWrite> {
        let dirty: Vec<&Template> = templates.iter().filter(|t| t.dirty).collect();
        Ok(TemplateWrite {
            rows: arrow_batch::templates_batch(&dirty)?,
            replaced: dirty.iter().filter(|t| t.stored).map(|t| t.id).collect(),
        })
    }
}

/// Deletes the stored rows of templates `ids` (before their new rows go in).
fn delete_templates(txn: &bulk::Txn<'_>, ids: &[u32]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    txn.exec(&format!(
        "DELETE FROM {} WHERE template_id IN ({})",
        txn.table("templates"),
        ids.join(",")
    ))
}

/// One file's load as one transaction on the bulk connection: its `runs`
/// row, its lines (one streamed INSERT), its rejected lines, its totals and
/// the templates it changed commit together, so neither a crash nor a
/// failed INSERT leaves part of it stored. Dropped before `finish`, it is
/// rolled back.
pub struct FileLoad<'s> {
    /// Declared first, so dropped (rolled back) before its views go.
    txn: bulk::Txn<'s>,
    _scans: bulk::Scans<'s>,
    lines_view: String,
    rejects: (bulk::LateBatches, String),
    templates: (bulk::LateBatches, String),
    /// The run's id, the `ingest_id` of its lines.
    pub run_id: i64,
}

impl FileLoad<'_> {
    /// Stores every batch the lines reader yields with one INSERT. DuckDB's
    /// threads pull batches as they need them, so whoever feeds the reader
    /// keeps producing while DuckDB stores, and a whole file leaves at most
    /// one partly filled row group per thread. An `Err` batch fails it, and
    /// the load must then be dropped (rolled back): the reader is released
    /// with it, so its producer learns it is gone.
    pub fn insert_lines(&self) -> Result<()> {
        self.txn.insert_from("logs", &self.lines_view)
    }

    /// Stores the rejected lines of `source`, the run's status and totals
    /// and the changed templates, and commits the load.
    pub fn finish(
        self,
        source: &str,
        rejects: &[Reject],
        status: &str,
        totals: &RunTotals,
        templates: &[Template],
    ) -> Result<()> {
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
        if !rows.is_empty() {
            self.rejects
                .0
                .fill(arrow_batch::rejects_batch(&rows, self.run_id)?)?;
            self.txn
                .insert_from("rejects", &self.rejects.1)
                .with_context(|| format!("storing rejected lines of {source}"))?;
        }
        let TemplateWrite { rows, replaced } = TemplateWrite::of(templates)?;
        delete_templates(&self.txn, &replaced)?;
        if !rows.is_empty() {
            self.templates.0.fill(rows)?;
            self.txn.insert_from("templates", &self.templates.1)?;
        }
        self.txn
            .exec(&finish_run_sql(&self.txn, self.run_id, status, totals))?;
        self.txn.commit()
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
        let run = NewRun {
            kind: "analyze",
            source: "mem",
            fingerprint: Some("fp"),
            format: "json",
        };
        let schema = Arc::new(arrow_batch::logs_schema());
        let (tx, rx) = std::sync::mpsc::channel();
        let load = store
            .begin_file_load(
                &run,
                Box::new(arrow::record_batch::RecordBatchIterator::new(rx, schema)),
            )
            .unwrap();
        let run_id = load.run_id;
        for b in block.batches {
            tx.send(
                arrow_batch::to_record_batch(b, "mem", run_id)
                    .map_err(|e| arrow::error::ArrowError::ExternalError(e.into())),
            )
            .unwrap();
        }
        drop(tx);
        load.insert_lines().unwrap();
        let totals = RunTotals {
            lines_read: 3,
            lines_stored: 2,
            lines_rejected: 1,
            bytes_read: 1,
        };
        load.finish("mem", &block.rejects, "done", &totals, miner.templates())
            .unwrap();
        miner.mark_saved();
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
            .begin_run(&NewRun {
                source: "t2",
                ..run
            })
            .unwrap();
        let content = store.runs_of_content("fp").unwrap();
        assert_eq!(content.run_ids, [run_id, other]);
        // the unfinished run counts for cleanup, not as loaded
        let loaded = content.loaded.unwrap();
        assert_eq!((loaded.run_id, loaded.lines_stored), (run_id, 2));
        assert!(!loaded.finished_at.is_empty());
        assert!(store.runs_of_content("other").unwrap().run_ids.is_empty());
        let loaded = store.load_templates().unwrap();
        assert_eq!(loaded.len(), miner.len());
        store.delete_run(run_id).unwrap();
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM logs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Loads `text` as one file through a `FileLoad`; `poison` ends the
    /// lines with an `Err` batch, which must roll the whole load back.
    fn load_text(
        store: &Store,
        miner: &mut Miner,
        source: &str,
        text: &str,
        poison: bool,
    ) -> Result<i64> {
        let settings = ParseSettings {
            format: Format::Json,
            year: 2024,
            max_line_bytes: 1 << 20,
        };
        let block = parse_block(text.as_bytes(), 1, &settings, miner);
        let run = NewRun {
            kind: "analyze",
            source,
            fingerprint: Some(source),
            format: "json",
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let schema = Arc::new(arrow_batch::logs_schema());
        let load = store.begin_file_load(
            &run,
            Box::new(arrow::record_batch::RecordBatchIterator::new(rx, schema)),
        )?;
        for b in block.batches {
            let rb = arrow_batch::to_record_batch(b, source, load.run_id)
                .map_err(|e| arrow::error::ArrowError::ExternalError(e.into()));
            tx.send(rb).unwrap();
        }
        if poison {
            tx.send(Err(arrow::error::ArrowError::ComputeError(
                "poisoned".into(),
            )))
            .unwrap();
        }
        drop(tx);
        load.insert_lines()?;
        let run_id = load.run_id;
        let totals = RunTotals {
            lines_read: block.lines_read,
            lines_stored: block.lines_read - block.rejects.len() as u64,
            lines_rejected: block.rejects.len() as u64,
            bytes_read: text.len() as u64,
        };
        load.finish(source, &block.rejects, "done", &totals, miner.templates())?;
        miner.mark_saved();
        Ok(run_id)
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_file_load_commits_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("t.duckdb").to_str().unwrap()).unwrap();
        let mut miner = Miner::default();
        let line = |i: u32, msg: &str| {
            format!(r#"{{"ts":"2024-01-01T00:00:0{i}Z","level":"info","msg":"{msg}"}}"#)
        };
        let first = format!(
            "{}\n{}\nnot json\n",
            line(1, "user 1 logged in"),
            line(2, "user 2 logged in")
        );
        // a quote in the source: every value reaches the SQL as a literal
        let run = load_text(&store, &mut miner, "it's.log", &first, false).unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM logs"), 2);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM rejects WHERE source = 'it''s.log'"
            ),
            1
        );
        assert_eq!(
            count(
                &store,
                &format!("SELECT lines_stored FROM runs WHERE status = 'done' AND run_id = {run}")
            ),
            2
        );
        assert_eq!(count(&store, "SELECT sum(count) FROM templates"), 2);

        // a failed INSERT leaves nothing of the second file: no lines, no
        // rejects, no run row, no template counts
        let before = miner.clone();
        let second = format!("{}\nbroken\n", line(3, "user 3 logged in"));
        assert!(load_text(&store, &mut miner, "b.log", &second, true).is_err());
        miner = before;
        assert_eq!(count(&store, "SELECT count(*) FROM logs"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM rejects"), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM runs"), 1);
        assert_eq!(count(&store, "SELECT sum(count) FROM templates"), 2);

        // the store is usable after the rollback, and a stored template
        // the next file counts again is replaced, not duplicated
        let run = load_text(&store, &mut miner, "b.log", &second, false).unwrap();
        assert_eq!(run, 2);
        assert_eq!(count(&store, "SELECT count(*) FROM logs"), 3);
        assert_eq!(count(&store, "SELECT count(*) FROM rejects"), 2);
        assert_eq!(
            count(&store, "SELECT count(*) FROM templates"),
            miner.len() as i64
        );
        assert_eq!(count(&store, "SELECT sum(count) FROM templates"), 3);
        assert_eq!(store.load_templates().unwrap().len(), miner.len());
    }
}
