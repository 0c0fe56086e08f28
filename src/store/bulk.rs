//! Owns the raw DuckDB handles behind a `Store`: opening the database through
//! the C API (so extensions are never downloaded), and the bulk connection's
//! transactions, which hand Arrow record batches to DuckDB's own parallel
//! `arrow_scan` (`INSERT INTO t SELECT * FROM <scan>`), several times faster
//! than the row-group-at-a-time appender.

use anyhow::{anyhow, bail, Result};
use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use arrow::record_batch::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use duckdb::ffi;
use std::ffi::{CStr, CString};

/// An open database instance; closed on drop (after every connection).
pub struct RawDb(ffi::duckdb_database);

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{s:?} contains a NUL byte"))
}

impl RawDb {
    /// Opens `path` with extension autoloading and autoinstalling off.
    pub fn open(path: &str, read_only: bool) -> Result<RawDb> {
        let cpath = cstring(path)?;
        let mut settings = vec![
            ("autoload_known_extensions", "false"),
            ("autoinstall_known_extensions", "false"),
        ];
        if read_only {
            settings.push(("access_mode", "READ_ONLY"));
        }
        // SAFETY: plain C API calls; every out-pointer is a local we own, and
        // the config and error string are freed on every path.
        unsafe {
            let mut config: ffi::duckdb_config = std::ptr::null_mut();
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                bail!("cannot create a DuckDB configuration");
            }
            for (k, v) in settings {
                let (ck, cv) = (cstring(k)?, cstring(v)?);
                ffi::duckdb_set_config(config, ck.as_ptr(), cv.as_ptr());
            }
            let mut db: ffi::duckdb_database = std::ptr::null_mut();
            let mut err: *mut std::os::raw::c_char = std::ptr::null_mut();
            let rc = ffi::duckdb_open_ext(cpath.as_ptr(), &mut db, config, &mut err);
            ffi::duckdb_destroy_config(&mut config);
            if rc != ffi::DuckDBSuccess {
                let msg = if err.is_null() {
                    "unknown error".to_string()
                } else {
                    let m = CStr::from_ptr(err).to_string_lossy().into_owned();
                    ffi::duckdb_free(err as *mut std::ffi::c_void);
                    m
                };
                bail!("{msg}");
            }
            Ok(RawDb(db))
        }
    }

    /// A duckdb-rs connection to this database.
    pub fn connection(&self) -> Result<duckdb::Connection> {
        // SAFETY: self.0 is an open database that outlives the connection
        // (Store drops its connections before its RawDb).
        Ok(unsafe { duckdb::Connection::open_from_raw(self.0) }?)
    }

    /// A raw connection for bulk inserts. Its default catalog is an attached
    /// in-memory database, so the scan views it creates never reach the
    /// database file's catalog (DuckDB cannot persist a view over process
    /// memory); inserts name the file's catalog explicitly.
    pub fn bulk(&self) -> Result<BulkConn> {
        let mut conn: ffi::duckdb_connection = std::ptr::null_mut();
        // SAFETY: self.0 is open; conn is a local out-pointer.
        if unsafe { ffi::duckdb_connect(self.0, &mut conn) } != ffi::DuckDBSuccess {
            bail!("cannot connect to the database");
        }
        let mut b = BulkConn {
            conn,
            target: String::new(),
        };
        b.target = b.query_string("SELECT current_database()")?;
        b.exec("ATTACH IF NOT EXISTS ':memory:' AS logsentry_scratch")?;
        b.exec("USE logsentry_scratch")?;
        // Lets DuckDB insert an Arrow scan with all its threads (2x faster
        // per 64 MiB block, measured); rows keep their `source`/`line_no`, not their
        // physical order, which no query should rely on.
        b.exec("SET preserve_insertion_order = false")?;
        // Compress and write each row group as soon as it fills, while the
        // parser is still producing, instead of buffering five per thread
        // (DuckDB's default) and compressing them all when the INSERT ends:
        // a 1M-line streamed load ended with 0.7-1.1 s of compression alone
        // at the default, 0.3 s at 1; peak memory fell from 455 to 306 MB.
        b.exec("SET write_buffer_row_group_count = 1")?;
        Ok(b)
    }
}

impl Drop for RawDb {
    fn drop(&mut self) {
        // SAFETY: opened by duckdb_open_ext; closed once.
        unsafe { ffi::duckdb_close(&mut self.0) };
    }
}

/// A raw connection used for Arrow bulk inserts; disconnected on drop.
pub struct BulkConn {
    conn: ffi::duckdb_connection,
    /// The catalog (database file) inserts go to.
    target: String,
}

impl BulkConn {
    /// Runs SQL, returning DuckDB's error text on failure.
    pub fn exec(&self, sql: &str) -> Result<()> {
        let csql = cstring(sql)?;
        // SAFETY: result is zero-initialised as the C API expects and always destroyed.
        unsafe {
            let mut res: ffi::duckdb_result = std::mem::zeroed();
            let rc = ffi::duckdb_query(self.conn, csql.as_ptr(), &mut res);
            let out = if rc == ffi::DuckDBSuccess {
                Ok(())
            } else {
                let e = ffi::duckdb_result_error(&mut res);
                let msg = if e.is_null() {
                    "query failed".to_string()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                };
                Err(anyhow!("{msg}"))
            };
            ffi::duckdb_destroy_result(&mut res);
            out
        }
    }

    /// Runs a query returning one text value.
    fn query_string(&self, sql: &str) -> Result<String> {
        let csql = cstring(sql)?;
        // SAFETY: as in `exec`; the value string is freed with duckdb_free.
        unsafe {
            let mut res: ffi::duckdb_result = std::mem::zeroed();
            if ffi::duckdb_query(self.conn, csql.as_ptr(), &mut res) != ffi::DuckDBSuccess {
                ffi::duckdb_destroy_result(&mut res);
                bail!("query failed: {sql}");
            }
            let v = ffi::duckdb_value_varchar(&mut res, 0, 0);
            let out = if v.is_null() {
                String::new()
            } else {
                let s = CStr::from_ptr(v).to_string_lossy().into_owned();
                ffi::duckdb_free(v as *mut std::ffi::c_void);
                s
            };
            ffi::duckdb_destroy_result(&mut res);
            Ok(out)
        }
    }

    /// Makes `view` (in the scratch catalog) an Arrow scan over `stream`.
    fn scan_view(&self, stream: &mut FFI_ArrowArrayStream, view: &str) -> Result<()> {
        let cview = cstring(view)?;
        // SAFETY: `stream` is a valid Arrow C stream; callers keep it alive,
        // at the same address, until the view is dropped.
        let rc = unsafe {
            ffi::duckdb_arrow_scan(
                self.conn,
                cview.as_ptr(),
                stream as *mut FFI_ArrowArrayStream as ffi::duckdb_arrow_stream,
            )
        };
        if rc != ffi::DuckDBSuccess {
            bail!("DuckDB could not scan the Arrow batches");
        }
        Ok(())
    }

    /// No scans yet; see `Scans`.
    pub fn scans(&self) -> Scans<'_> {
        Scans {
            conn: self,
            streams: Vec::new(),
            views: Vec::new(),
        }
    }

    /// Starts a transaction; `what` names its debug line (insert and
    /// commit time). Declare its scans first (see `Scans`).
    pub fn begin(&self, what: &'static str) -> Result<Txn<'_>> {
        self.exec("BEGIN TRANSACTION")?;
        Ok(Txn {
            conn: self,
            open: true,
            what,
            t0: std::time::Instant::now(),
        })
    }

    /// Inserts record batches into tables — `(table, batches)`, columns in
    /// the table's order, one schema per table — in one transaction, through
    /// DuckDB's parallel Arrow scan, after running `first` in it. Does
    /// nothing when there are no rows.
    pub fn insert(
        &self,
        inserts: Vec<(&str, Vec<RecordBatch>)>,
        first: impl FnOnce(&Txn<'_>) -> Result<()>,
    ) -> Result<()> {
        let inserts: Vec<(&str, Vec<RecordBatch>)> =
            inserts.into_iter().filter(|(_, b)| !b.is_empty()).collect();
        if inserts.is_empty() {
            return Ok(());
        }
        let mut scans = self.scans();
        let mut views = Vec::with_capacity(inserts.len());
        for (table, batches) in inserts {
            let schema: SchemaRef = batches[0].schema();
            let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
            views.push((table, scans.add(Box::new(reader))?));
        }
        let txn = self.begin("bulk insert")?;
        first(&txn)?;
        for (table, view) in &views {
            txn.insert_from(table, view)?;
        }
        txn.commit()
    }
}

/// The Arrow streams a transaction on the bulk connection reads, each
/// behind a view in the scratch catalog. A transaction may write to one
/// database only, and a view is a write to the scratch one, so every view
/// is made before the transaction that reads it begins; batches known only
/// later go in through `LateBatches`. The views are dropped, then the
/// streams released, when this is dropped.
pub struct Scans<'c> {
    conn: &'c BulkConn,
    /// Boxed: DuckDB keeps a pointer to each stream while its view exists,
    /// so a stream must not move when the vector grows.
    #[allow(clippy::vec_box)]
    streams: Vec<Box<FFI_ArrowArrayStream>>,
    views: Vec<String>,
}

/// Numbers the scan views, so that views of two `Scans` never share a name.
static NEXT_SCAN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Scans<'_> {
    /// A view DuckDB scans `reader` through; returns its name.
    pub fn add(&mut self, reader: Box<dyn RecordBatchReader + Send>) -> Result<String> {
        let n = NEXT_SCAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let view = format!("logsentry_scan_{n}");
        let mut stream = Box::new(FFI_ArrowArrayStream::new(reader));
        self.conn.scan_view(&mut stream, &view)?;
        self.streams.push(stream);
        self.views.push(view.clone());
        Ok(view)
    }
}

impl Drop for Scans<'_> {
    fn drop(&mut self) {
        for view in &self.views {
            let drop_view = format!("DROP VIEW IF EXISTS logsentry_scratch.main.{view}");
            if let Err(e) = self.conn.exec(&drop_view) {
                tracing::debug!("{drop_view}: {e:#}");
            }
        }
        // then the streams: a producer still sending learns the reader is gone
    }
}

/// A transaction on the bulk connection, rolled back if dropped before
/// `commit` (also after a statement failed: DuckDB then refuses the rest).
pub struct Txn<'c> {
    conn: &'c BulkConn,
    open: bool,
    what: &'static str,
    t0: std::time::Instant,
}

impl Txn<'_> {
    /// `<table>` of the database file, for statements in this transaction.
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".main.{table}", self.conn.target.replace('"', "\"\""))
    }

    /// Runs a statement.
    pub fn exec(&self, sql: &str) -> Result<()> {
        self.conn.exec(sql)
    }

    /// Runs a query returning one integer (such as `INSERT ... RETURNING`).
    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        let v = self.conn.query_string(sql)?;
        v.parse()
            .map_err(|_| anyhow!("expected an integer from {sql}, got {v:?}"))
    }

    /// `INSERT INTO <table> SELECT * FROM <view>`, `view` from `Scans::add`.
    pub fn insert_from(&self, table: &str, view: &str) -> Result<()> {
        self.exec(&format!(
            "INSERT INTO {} SELECT * FROM logsentry_scratch.main.{view}",
            self.table(table)
        ))
    }

    /// Commits (a failed COMMIT is rolled back); logs the time spent.
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        let t1 = std::time::Instant::now();
        let c = self.conn.exec("COMMIT");
        tracing::debug!(
            insert_ms = (t1 - self.t0).as_millis() as u64,
            commit_ms = t1.elapsed().as_millis() as u64,
            "{}",
            self.what
        );
        if c.is_err() {
            let _ = self.conn.exec("ROLLBACK");
        }
        c
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.exec("ROLLBACK");
        }
    }
}

/// Record batches handed over after the scan over them was declared (see
/// `Scans`): the reader yields whatever `fill` put in by the time DuckDB
/// reads it, and ends there.
#[derive(Clone)]
pub struct LateBatches {
    schema: SchemaRef,
    batches: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<RecordBatch>>>,
}

impl LateBatches {
    pub fn new(schema: SchemaRef) -> Self {
        LateBatches {
            schema,
            batches: Default::default(),
        }
    }

    /// Queues batches of this reader's schema.
    pub fn fill(&self, batches: Vec<RecordBatch>) -> Result<()> {
        if let Some(b) = batches.iter().find(|b| b.schema() != self.schema) {
            bail!(
                "a batch's schema {:?} is not the declared {:?}",
                b.schema(),
                self.schema
            );
        }
        self.batches
            .lock()
            .map_err(|_| anyhow!("a thread panicked holding the batches"))?
            .extend(batches);
        Ok(())
    }
}

impl Iterator for LateBatches {
    type Item = Result<RecordBatch, arrow::error::ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches.lock().ok()?.pop_front().map(Ok)
    }
}

impl RecordBatchReader for LateBatches {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for BulkConn {
    fn drop(&mut self) {
        // SAFETY: connected by duckdb_connect; disconnected once.
        unsafe { ffi::duckdb_disconnect(&mut self.conn) };
    }
}
