//! Owns the dashboard: an axum router over the DuckDB database — live view
//! (short polling of `/api/live`), anomaly list and detail, templates, a
//! read-only SQL console with a timeout and a row cap, `/metrics` in
//! Prometheus text format and `/healthz`. Pages are minijinja templates from
//! `templates/web/`, auto-escaped, with no external resources.

use crate::store::query;
use anyhow::Result;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared state of the web server.
#[derive(Clone)]
pub struct AppState {
    db: Arc<Mutex<Connection>>,
    env: Arc<minijinja::Environment<'static>>,
    cfg: Arc<crate::config::WebConfig>,
    /// The consumer running in this process (`serve` without `--no-consume`).
    consumer: Option<crate::stream::SharedStats>,
}

/// An error page or JSON error with a status.
pub struct WebError(StatusCode, String);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> Self {
        WebError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

type WebResult<T> = std::result::Result<T, WebError>;

fn templates() -> Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("base.html", include_str!("../../templates/web/base.html"))?;
    env.add_template("live.html", include_str!("../../templates/web/live.html"))?;
    env.add_template(
        "anomaly.html",
        include_str!("../../templates/web/anomaly.html"),
    )?;
    env.add_template(
        "templates.html",
        include_str!("../../templates/web/templates.html"),
    )?;
    env.add_template("sql.html", include_str!("../../templates/web/sql.html"))?;
    env.add_template(
        "history.html",
        include_str!("../../templates/web/history.html"),
    )?;
    Ok(env)
}

impl AppState {
    /// State over a connection to the database (cloned per request).
    pub fn new(conn: Connection, cfg: crate::config::WebConfig) -> Result<AppState> {
        Ok(AppState {
            db: Arc::new(Mutex::new(conn)),
            env: Arc::new(templates()?),
            cfg: Arc::new(cfg),
            consumer: None,
        })
    }

    /// Reports this consumer's batches and lag in `/metrics`.
    pub fn with_consumer(mut self, consumer: Option<crate::stream::SharedStats>) -> AppState {
        self.consumer = consumer;
        self
    }

    fn conn(&self) -> Result<Connection> {
        let guard = self
            .db
            .lock()
            .map_err(|_| anyhow::anyhow!("database handle poisoned"))?;
        Ok(guard.try_clone()?)
    }

    /// Runs `f` with its own connection on the blocking pool.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> WebResult<T> {
        let conn = self.conn()?;
        tokio::task::spawn_blocking(move || f(&conn))
            .await
            .map_err(|e| WebError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(WebError::from)
    }

    fn render(&self, name: &str, ctx: Value) -> WebResult<Html<String>> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Html(
            t.render(minijinja::value::Serde(ctx))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ))
    }
}

/// The router with every page and API route.
pub fn router(state: AppState) -> Router {
    let token = state.cfg.token.clone();
    Router::new()
        .route("/", get(live_page))
        .route("/anomalies/{id}", get(anomaly_page))
        .route("/templates", get(templates_page))
        .route("/history", get(history_page))
        .route("/api/history", get(api_history))
        .route("/sql", get(sql_page))
        .route("/api/live", get(api_live))
        .route("/api/anomalies", get(api_anomalies))
        .route("/api/anomalies/{id}", get(api_anomaly))
        .route("/api/templates", get(api_templates))
        .route("/api/sql", get(api_sql))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { auth(token, req, next).await }
        }))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Bearer-token check (`Authorization: Bearer T` or `?token=T`) when `web.token` is set.
async fn auth(token: String, req: Request, next: Next) -> Response {
    if token.is_empty() {
        return next.run(req).await;
    }
    let header_ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ") == Some(token.as_str()));
    let query_ok = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == format!("token={token}")));
    if header_ok || query_ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (web.token)",
        )
            .into_response()
    }
}

/// Rows of a query as JSON objects.
fn rows(conn: &Connection, sql: &str, max: usize) -> Result<Value> {
    Ok(query::run(conn, sql, max)?.to_json_rows())
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Deserialize, Default)]
struct TailFilter {
    service: Option<String>,
    level: Option<String>,
}

fn live_data(conn: &Connection, f: &TailFilter) -> Result<Value> {
    let mut filter = String::from("TRUE");
    if let Some(s) = f.service.as_deref().filter(|s| !s.is_empty()) {
        filter.push_str(&format!(
            " AND coalesce(service, host, '-') = {}",
            sql_str(s)
        ));
    }
    if let Some(l) = f.level.as_deref().filter(|s| !s.is_empty()) {
        filter.push_str(&format!(
            " AND level = {}",
            sql_str(&l.to_ascii_uppercase())
        ));
    }
    // "now" is the newest stored line, so a database filled by `analyze` reads
    // the same way; every query below is bounded by it so DuckDB's zone maps
    // skip old row groups
    let latest_us: Option<i64> =
        conn.query_row("SELECT epoch_us(max(ts)) FROM logs", [], |r| r.get(0))?;
    let now = format!("make_timestamp({}::BIGINT)", latest_us.unwrap_or(0));
    let head = rows(
        conn,
        &format!(
            "SELECT strftime({now}, '%Y-%m-%dT%H:%M:%SZ') AS latest, (SELECT count(*) FROM logs) AS total,
                    count(*) AS last_minute
             FROM logs WHERE ts > {now} - INTERVAL 1 MINUTE"
        ),
        1,
    )?;
    let per_minute = rows(
        conn,
        &format!(
            "SELECT strftime(time_bucket(INTERVAL 1 MINUTE, ts), '%H:%M') AS minute, count(*) AS lines
             FROM logs WHERE ts > {now} - INTERVAL 1 HOUR GROUP BY 1 ORDER BY 1"
        ),
        61,
    )?;
    let levels = rows(
        conn,
        &format!(
            "SELECT coalesce(level, '-') AS level, count(*) AS lines FROM logs
             WHERE ts > {now} - INTERVAL 1 HOUR GROUP BY 1 ORDER BY 2 DESC"
        ),
        10,
    )?;
    let services = rows(
        conn,
        &format!(
            "SELECT coalesce(service, host, '-') AS service, count(*) AS last_minute FROM logs
             WHERE ts > {now} - INTERVAL 1 MINUTE GROUP BY 1 ORDER BY 2 DESC"
        ),
        50,
    )?;
    let anomalies = rows(
        conn,
        "SELECT anomaly_id, service, strftime(window_start, '%Y-%m-%dT%H:%M:%SZ') AS window_start,
                round(score, 3) AS score, summary
         FROM anomalies ORDER BY window_start DESC, score DESC LIMIT 20",
        20,
    )?;
    // the newest 50 lines: look in the last hour first, everything if that is too few
    let tail_sql = |bound: &str| {
        format!(
            "SELECT strftime(ts, '%Y-%m-%dT%H:%M:%S.%gZ') AS ts, level, coalesce(service, host, '-') AS service,
                    message, source || ':' || line_no AS location
             FROM logs WHERE {filter} AND {bound} ORDER BY ts DESC NULLS LAST LIMIT 50"
        )
    };
    let mut tail = rows(
        conn,
        &tail_sql(&format!("ts > {now} - INTERVAL 1 HOUR")),
        50,
    )?;
    if tail.as_array().map_or(0, |a| a.len()) < 50 {
        tail = rows(conn, &tail_sql("TRUE"), 50)?;
    }
    Ok(json!({
        "latest": head[0]["latest"], "total": head[0]["total"], "last_minute": head[0]["last_minute"],
        "per_minute": per_minute, "levels": levels, "services": services,
        "anomalies": anomalies, "tail": tail,
    }))
}

async fn api_live(
    State(st): State<AppState>,
    Query(f): Query<TailFilter>,
) -> WebResult<Json<Value>> {
    Ok(Json(st.with_db(move |c| live_data(c, &f)).await?))
}

async fn live_page(
    State(st): State<AppState>,
    Query(f): Query<TailFilter>,
) -> WebResult<Html<String>> {
    let filter = json!({"service": f.service.clone().unwrap_or_default(), "level": f.level.clone().unwrap_or_default()});
    let data = st.with_db(move |c| live_data(c, &f)).await?;
    st.render("live.html", json!({ "live": data, "filter": filter }))
}

fn anomaly_list(conn: &Connection) -> Result<Value> {
    rows(
        conn,
        "SELECT anomaly_id, service, strftime(window_start, '%Y-%m-%dT%H:%M:%SZ') AS window_start,
                window_secs, round(score, 3) AS score, summary
         FROM anomalies ORDER BY score DESC LIMIT 500",
        500,
    )
}

async fn api_anomalies(State(st): State<AppState>) -> WebResult<Json<Value>> {
    Ok(Json(st.with_db(anomaly_list).await?))
}

fn anomaly_detail(conn: &Connection, id: i64) -> Result<Option<Value>> {
    let r = rows(
        conn,
        &format!(
            "SELECT anomaly_id, service, strftime(window_start, '%Y-%m-%dT%H:%M:%SZ') AS window_start,
                    strftime(window_end, '%Y-%m-%dT%H:%M:%SZ') AS window_end, window_secs,
                    round(score, 3) AS score, summary, reasons::VARCHAR AS reasons,
                    templates::VARCHAR AS templates, example_lines::VARCHAR AS example_lines
             FROM anomalies WHERE anomaly_id = {id}"
        ),
        1,
    )?;
    let Some(mut a) = r.as_array().and_then(|v| v.first()).cloned() else {
        return Ok(None);
    };
    for k in ["reasons", "templates", "example_lines"] {
        let parsed = a[k]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .unwrap_or(Value::Null);
        a[k] = parsed;
    }
    Ok(Some(a))
}

async fn api_anomaly(State(st): State<AppState>, Path(id): Path<i64>) -> WebResult<Json<Value>> {
    match st.with_db(move |c| anomaly_detail(c, id)).await? {
        Some(a) => Ok(Json(a)),
        None => Err(WebError(StatusCode::NOT_FOUND, format!("no anomaly {id}"))),
    }
}

async fn anomaly_page(State(st): State<AppState>, Path(id): Path<i64>) -> WebResult<Html<String>> {
    match st.with_db(move |c| anomaly_detail(c, id)).await? {
        Some(a) => st.render("anomaly.html", json!({ "a": a })),
        None => Err(WebError(StatusCode::NOT_FOUND, format!("no anomaly {id}"))),
    }
}

#[derive(Deserialize, Default)]
struct Range {
    /// RFC 3339 or `YYYY-MM-DD HH:MM`; default: the last day of data.
    from: Option<String>,
    to: Option<String>,
}

/// One service's chart data: x positions and the three series.
#[derive(Default)]
struct Series {
    service: String,
    x: Vec<f64>,
    rate: Vec<f64>,
    errors: Vec<f64>,
    p95: Vec<f64>,
    marks: Vec<f64>,
}

const CHART_W: f64 = 900.0;
const CHART_H: f64 = 60.0;

/// SVG polyline points for `ys` at `xs`, scaled to a chart `height` high.
fn points(xs: &[f64], ys: &[f64], height: f64) -> String {
    let top = ys
        .iter()
        .cloned()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top } else { 1.0 };
    xs.iter()
        .zip(ys)
        .map(|(x, y)| {
            let y = if y.is_finite() { *y } else { 0.0 };
            format!("{x:.1},{:.1}", height - y / top * (height - 4.0))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per-service rate, error ratio and p95 latency over a time range, from the
/// `windows` table (the window size most rows have), with anomalies marked.
fn history_data(conn: &Connection, r: &TimeRange) -> Result<Value> {
    let secs: Option<i64> = conn
        .query_row(
            "SELECT window_secs FROM windows GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let Some(secs) = secs else {
        return Ok(json!({ "charts": [], "anomalies": [], "from": null, "to": null }));
    };
    let to = match r.to_us {
        Some(us) => format!("make_timestamp({us}::BIGINT)"),
        None => format!("(SELECT max(window_end) FROM windows WHERE window_secs = {secs})"),
    };
    let from = match r.from_us {
        Some(us) => format!("make_timestamp({us}::BIGINT)"),
        // the last day, or all of it when less is stored
        None => format!(
            "greatest({to} - INTERVAL 1 DAY,
                      (SELECT min(window_start) FROM windows WHERE window_secs = {secs}))"
        ),
    };
    let (a, b): (i64, i64) = conn.query_row(
        &format!("SELECT epoch_us({from}), epoch_us({to})"),
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let span = (b - a).max(1) as f64;
    let mut st = conn.prepare(&format!(
        "SELECT service, epoch_us(window_start), count, error_ratio, latency_p95, is_anomaly FROM windows
         WHERE window_secs = {secs} AND window_start >= make_timestamp({a}::BIGINT)
           AND window_start < make_timestamp({b}::BIGINT)
         ORDER BY service, window_start"
    ))?;
    let mut series: Vec<Series> = Vec::new();
    let mut q = st.query([])?;
    while let Some(row) = q.next()? {
        let svc: String = row.get(0)?;
        if series.last().is_none_or(|s| s.service != svc) {
            series.push(Series {
                service: svc,
                ..Default::default()
            });
        }
        let s = series.last_mut().expect("pushed above");
        let x = (row.get::<_, i64>(1)? - a) as f64 / span * CHART_W;
        s.x.push(x);
        s.rate
            .push(row.get::<_, Option<i64>>(2)?.unwrap_or(0) as f64);
        s.errors
            .push(row.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN));
        s.p95
            .push(row.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN));
        if row.get::<_, Option<bool>>(5)?.unwrap_or(false) {
            s.marks.push((x * 10.0).round() / 10.0);
        }
    }
    let charts: Vec<Value> = series
        .iter()
        .map(|s| {
            json!({
                "service": s.service,
                "rate": points(&s.x, &s.rate, CHART_H),
                "errors": points(&s.x, &s.errors, CHART_H),
                "p95": points(&s.x, &s.p95, CHART_H),
                "marks": s.marks,
                "max_rate": s.rate.iter().cloned().fold(0.0, f64::max),
                "max_p95": (s.p95.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::max) * 10.0).round() / 10.0,
            })
        })
        .collect();
    let anomalies = rows(
        conn,
        &format!(
            "SELECT anomaly_id, service, strftime(window_start, '%Y-%m-%dT%H:%M:%SZ') AS window_start,
                    round(score, 3) AS score, summary
             FROM anomalies WHERE window_secs = {secs} AND window_start >= make_timestamp({a}::BIGINT)
               AND window_start < make_timestamp({b}::BIGINT)
             ORDER BY window_start LIMIT 1000"
        ),
        1000,
    )?;
    Ok(json!({
        "charts": charts, "anomalies": anomalies, "window_secs": secs,
        "from": crate::parse::time::format_micros(a), "to": crate::parse::time::format_micros(b),
        "width": CHART_W, "height": CHART_H,
    }))
}

/// A parsed `from`/`to` pair (epoch µs).
struct TimeRange {
    from_us: Option<i64>,
    to_us: Option<i64>,
}

impl Range {
    fn parse(&self) -> WebResult<TimeRange> {
        let one = |name: &str, v: &Option<String>| -> WebResult<Option<i64>> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(text) => {
                    crate::parse::time::parse_any(text, crate::parse::time::current_year())
                        .map(Some)
                        .ok_or_else(|| {
                            WebError(
                                StatusCode::BAD_REQUEST,
                                format!(
                                    "{name}: {text:?} is not a time (use e.g. 2026-11-01T10:00:00Z)"
                                ),
                            )
                        })
                }
            }
        };
        Ok(TimeRange {
            from_us: one("from", &self.from)?,
            to_us: one("to", &self.to)?,
        })
    }
}

async fn api_history(State(st): State<AppState>, Query(r): Query<Range>) -> WebResult<Json<Value>> {
    let r = r.parse()?;
    Ok(Json(st.with_db(move |c| history_data(c, &r)).await?))
}

async fn history_page(
    State(st): State<AppState>,
    Query(r): Query<Range>,
) -> WebResult<Html<String>> {
    let r = r.parse()?;
    let h = st.with_db(move |c| history_data(c, &r)).await?;
    st.render("history.html", json!({ "h": h }))
}

/// Buckets of the templates page's counts-over-time sparklines.
const SPARK_BUCKETS: usize = 24;
const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 18.0;

fn template_list(conn: &Connection) -> Result<Value> {
    let mut list = rows(
        conn,
        "SELECT template_id, template, count,
                strftime(first_seen, '%Y-%m-%dT%H:%M:%SZ') AS first_seen,
                strftime(last_seen, '%Y-%m-%dT%H:%M:%SZ') AS last_seen,
                first_seen > (SELECT max(last_seen) FROM templates) - INTERVAL 1 HOUR AS new
         FROM templates ORDER BY count DESC LIMIT 2000",
        2000,
    )?;
    // lines of each template in SPARK_BUCKETS equal slices of the stored span
    let mut per_template: HashMap<i64, Vec<f64>> = HashMap::new();
    let mut st = conn.prepare(&format!(
        "WITH span AS (SELECT epoch_us(min(ts)) AS lo,
                              greatest(epoch_us(max(ts)) - epoch_us(min(ts)), 1) AS w FROM logs)
         SELECT template_id,
                least({last}, (epoch_us(ts) - lo) * {n} // w)::INTEGER AS bucket, count(*)
         FROM logs, span WHERE ts IS NOT NULL GROUP BY ALL",
        last = SPARK_BUCKETS - 1,
        n = SPARK_BUCKETS
    ))?;
    let mut r = st.query([])?;
    while let Some(row) = r.next()? {
        let (id, bucket, n): (Option<i64>, i32, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if let Some(id) = id {
            per_template
                .entry(id)
                .or_insert_with(|| vec![0.0; SPARK_BUCKETS])[bucket as usize] = n as f64;
        }
    }
    let xs: Vec<f64> = (0..SPARK_BUCKETS)
        .map(|i| i as f64 * SPARK_W / (SPARK_BUCKETS - 1) as f64)
        .collect();
    if let Some(list) = list.as_array_mut() {
        for t in list {
            let counts = t["template_id"]
                .as_i64()
                .and_then(|id| per_template.get(&id));
            if let (Some(counts), Some(obj)) = (counts, t.as_object_mut()) {
                obj.insert("over_time".into(), json!(counts));
                obj.insert("spark".into(), json!(points(&xs, counts, SPARK_H)));
            }
        }
    }
    Ok(list)
}

async fn api_templates(State(st): State<AppState>) -> WebResult<Json<Value>> {
    Ok(Json(st.with_db(template_list).await?))
}

async fn templates_page(State(st): State<AppState>) -> WebResult<Html<String>> {
    let t = st.with_db(template_list).await?;
    st.render("templates.html", json!({ "templates": t }))
}

/// Why a console statement is refused, or None when it is a plain query.
/// DuckDB itself decides: `json_serialize_sql` only accepts SELECT
/// statements, so writes, ATTACH, COPY, INSTALL/LOAD, SET and PRAGMA are all
/// refused; file-reading table functions are refused by name.
pub fn refusal(conn: &Connection, sql: &str) -> Result<Option<String>> {
    let verdict: String = conn.query_row(
        "SELECT json_serialize_sql(?::VARCHAR)::VARCHAR",
        [sql],
        |r| r.get(0),
    )?;
    let v: Value = serde_json::from_str(&verdict).unwrap_or(Value::Null);
    if v["error"].as_bool() != Some(false) {
        let why = v["error_message"].as_str().unwrap_or("not a query");
        return Ok(Some(format!(
            "only read-only SELECT queries are allowed here ({why})"
        )));
    }
    let lower = sql.to_ascii_lowercase();
    for f in [
        "read_csv",
        "read_json",
        "read_parquet",
        "read_text",
        "read_blob",
        "parquet_scan",
        "csv_scan",
        "glob(",
        "sniff_csv",
        "read_ndjson",
        "json_scan",
        "iceberg",
        "delta_scan",
    ] {
        if lower.contains(f) {
            return Ok(Some(format!("reading files ({f}) is not allowed here")));
        }
    }
    if lower.contains("from '") || lower.contains("from \"/") {
        return Ok(Some("reading files is not allowed here".into()));
    }
    Ok(None)
}

#[derive(Deserialize)]
struct SqlQuery {
    q: Option<String>,
}

#[derive(Serialize)]
struct SqlOutcome {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    truncated: bool,
    error: Option<String>,
    millis: u128,
}

async fn run_console(st: &AppState, sql: String) -> WebResult<SqlOutcome> {
    let conn = st.conn()?;
    let max_rows = st.cfg.sql_max_rows;
    let timeout = Duration::from_millis(st.cfg.sql_timeout_ms);
    let interrupt = conn.interrupt_handle();
    let t0 = std::time::Instant::now();
    let job = tokio::task::spawn_blocking(move || -> Result<SqlOutcome> {
        if let Some(why) = refusal(&conn, &sql)? {
            return Ok(SqlOutcome {
                columns: vec![],
                rows: vec![],
                truncated: false,
                error: Some(why),
                millis: 0,
            });
        }
        Ok(match query::run(&conn, &sql, max_rows) {
            Ok(r) => SqlOutcome {
                rows: r
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|c| Value::String(c.as_text().to_string()))
                            .collect()
                    })
                    .collect(),
                columns: r.columns,
                truncated: r.truncated,
                error: None,
                millis: 0,
            },
            Err(e) => SqlOutcome {
                columns: vec![],
                rows: vec![],
                truncated: false,
                error: Some(format!("{e}")),
                millis: 0,
            },
        })
    });
    let mut out = match tokio::time::timeout(timeout, job).await {
        Ok(joined) => {
            joined.map_err(|e| WebError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
        }
        Err(_) => {
            interrupt.interrupt();
            SqlOutcome {
                columns: vec![],
                rows: vec![],
                truncated: false,
                error: Some(format!(
                    "query interrupted after {} ms (web.sql_timeout_ms)",
                    timeout.as_millis()
                )),
                millis: 0,
            }
        }
    };
    out.millis = t0.elapsed().as_millis();
    Ok(out)
}

async fn api_sql(State(st): State<AppState>, Query(q): Query<SqlQuery>) -> WebResult<Response> {
    let sql = q.q.unwrap_or_default();
    let out = run_console(&st, sql).await?;
    let status = if out.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

async fn sql_page(
    State(st): State<AppState>,
    Query(q): Query<SqlQuery>,
) -> WebResult<Html<String>> {
    let sql = q.q.unwrap_or_default();
    let out = if sql.trim().is_empty() {
        None
    } else {
        Some(run_console(&st, sql.clone()).await?)
    };
    st.render(
        "sql.html",
        json!({ "q": sql, "out": out, "max_rows": st.cfg.sql_max_rows }),
    )
}

async fn metrics(State(st): State<AppState>) -> WebResult<Response> {
    let mut body = st
        .with_db(|c| {
            let n = |sql: &str| -> Result<i64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
            let mut out = String::new();
            for (name, kind, help, value) in [
                (
                    "logsentry_lines_ingested_total",
                    "counter",
                    "Lines stored in logs.",
                    n("SELECT count(*) FROM logs")?,
                ),
                (
                    "logsentry_lines_rejected_total",
                    "counter",
                    "Lines stored in rejects.",
                    n("SELECT count(*) FROM rejects")?,
                ),
                (
                    "logsentry_messages_consumed_total",
                    "counter",
                    "AMQP messages stored.",
                    n("SELECT count(*) FROM ingested_messages")?,
                ),
                (
                    "logsentry_runs_total",
                    "counter",
                    "Analyze and consume runs.",
                    n("SELECT count(*) FROM runs")?,
                ),
                (
                    "logsentry_anomalies",
                    "gauge",
                    "Anomalous windows stored.",
                    n("SELECT count(*) FROM anomalies")?,
                ),
            ] {
                metric(&mut out, name, kind, help, value as f64);
            }
            Ok(out)
        })
        .await?;
    let consumer = st
        .consumer
        .as_ref()
        .and_then(|s| s.lock().ok().map(|s| s.clone()));
    if let Some(c) = consumer {
        metric(
            &mut body,
            "logsentry_batches_total",
            "counter",
            "Micro-batches committed by this process's consumer.",
            c.batches as f64,
        );
        metric(
            &mut body,
            "logsentry_duplicates_skipped_total",
            "counter",
            "Redelivered messages skipped as already stored.",
            c.duplicates_skipped as f64,
        );
        metric(
            &mut body,
            "logsentry_reconnects_total",
            "counter",
            "Consumer reconnects to the broker.",
            c.reconnects as f64,
        );
        if let Some(q) = c.queue_ready {
            metric(
                &mut body,
                "logsentry_consumer_lag_messages",
                "gauge",
                "Messages waiting in the queue at the last check.",
                q as f64,
            );
        }
        if let Some(us) = c.newest_line_us {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(us);
            metric(
                &mut body,
                "logsentry_consumer_lag_seconds",
                "gauge",
                "Now minus the time of the newest consumed line.",
                (now_us - us) as f64 / 1e6,
            );
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Appends one metric in Prometheus text format.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
