//! Owns the raw DuckDB handles behind a `Store`: opening the database through
//! the C API (so extensions are never downloaded), and bulk inserts that hand
//! Arrow record batches to DuckDB's own parallel `arrow_scan` (an
//! `INSERT INTO t SELECT * FROM <scan>` in one transaction), which is several
//! times faster than the row-group-at-a-time appender.

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
        // SAFETY: `stream` is a valid Arrow C stream; callers keep it alive
        // until the view is dropped.
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

    /// `INSERT INTO <file catalog>.main.<table> SELECT * FROM <scratch view>`.
    fn insert_sql(&self, table: &str, view: &str) -> String {
        format!(
            "INSERT INTO \"{}\".main.{table} SELECT * FROM logsentry_scratch.main.{view}",
            self.target.replace('"', "\"\"")
        )
    }

    /// Runs `statements` in one transaction (rolled back on the first
    /// error); `what` names the debug line with their insert and commit time.
    fn in_transaction(&self, statements: &[String], what: &str) -> Result<()> {
        self.exec("BEGIN TRANSACTION")?;
        let t0 = std::time::Instant::now();
        for q in statements {
            if let Err(e) = self.exec(q) {
                let _ = self.exec("ROLLBACK");
                return Err(e);
            }
        }
        let t1 = std::time::Instant::now();
        let c = self.exec("COMMIT");
        tracing::debug!(
            insert_ms = (t1 - t0).as_millis() as u64,
            commit_ms = t1.elapsed().as_millis() as u64,
            "{what}"
        );
        c
    }

    /// Inserts record batches into tables — `(table, batches)`, columns in
    /// the table's order, one schema per table — in one transaction, through
    /// DuckDB's parallel Arrow scan.
    pub fn insert(&self, inserts: Vec<(&str, Vec<RecordBatch>)>) -> Result<()> {
        let inserts: Vec<(&str, Vec<RecordBatch>)> =
            inserts.into_iter().filter(|(_, b)| !b.is_empty()).collect();
        if inserts.is_empty() {
            return Ok(());
        }
        // The streams stay ours (DuckDB's C scan never releases them) and
        // alive until the views over them are dropped below.
        let mut streams: Vec<FFI_ArrowArrayStream> = Vec::with_capacity(inserts.len());
        let mut views = Vec::new();
        let mut sql = Vec::new();
        for (i, (table, batches)) in inserts.into_iter().enumerate() {
            let schema: SchemaRef = batches[0].schema();
            let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
            streams.push(FFI_ArrowArrayStream::new(Box::new(reader)));
            views.push(format!("logsentry_bulk_{i}"));
            sql.push(self.insert_sql(table, &views[i]));
        }
        let mut made = 0;
        let mut r: Result<()> = Ok(());
        for (stream, view) in streams.iter_mut().zip(&views) {
            if let Err(e) = self.scan_view(stream, view) {
                r = Err(e);
                break;
            }
            made += 1;
        }
        if r.is_ok() {
            r = self.in_transaction(&sql, "bulk insert");
        }
        for view in &views[..made] {
            let d = self.exec(&format!("DROP VIEW logsentry_scratch.main.{view}"));
            if r.is_ok() {
                r = d;
            }
        }
        drop(streams);
        r
    }

    /// Inserts everything `batches` yields into `table` with one INSERT
    /// statement (one transaction). DuckDB's threads pull batches as they
    /// need them, so whoever feeds `batches` keeps producing while DuckDB
    /// stores, and a whole file leaves at most one partly filled row group
    /// per thread (a block-per-transaction load leaves two per block, which
    /// the checkpoint may later have to merge). An `Err` batch aborts the
    /// insert; nothing of it is stored.
    pub fn insert_stream(
        &self,
        table: &str,
        batches: Box<dyn RecordBatchReader + Send>,
    ) -> Result<()> {
        let mut stream = FFI_ArrowArrayStream::new(batches);
        let view = "logsentry_stream";
        self.scan_view(&mut stream, view)?;
        let r = self.in_transaction(&[self.insert_sql(table, view)], "streamed insert");
        let d = self.exec(&format!("DROP VIEW logsentry_scratch.main.{view}"));
        // releases the reader, so a producer still sending learns it is gone
        drop(stream);
        r.and(d)
    }
}

impl Drop for BulkConn {
    fn drop(&mut self) {
        // SAFETY: connected by duckdb_connect; disconnected once.
        unsafe { ffi::duckdb_disconnect(&mut self.conn) };
    }
}
