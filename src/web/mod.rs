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
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared state of the web server.
#[derive(Clone)]
pub struct AppState {
    db: Arc<Mutex<Connection>>,
    env: Arc<minijinja::Environment<'static>>,
    cfg: Arc<crate::config::WebConfig>,
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
    Ok(env)
}

impl AppState {
    /// State over a connection to the database (cloned per request).
    pub fn new(conn: Connection, cfg: crate::config::WebConfig) -> Result<AppState> {
        Ok(AppState {
            db: Arc::new(Mutex::new(conn)),
            env: Arc::new(templates()?),
            cfg: Arc::new(cfg),
        })
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
    // "now" is the newest stored line, so a database filled by `analyze` reads the same way
    let head = rows(
        conn,
        "SELECT strftime(max(ts), '%Y-%m-%dT%H:%M:%SZ') AS latest, count(*) AS total,
                count(*) FILTER (WHERE ts > (SELECT max(ts) FROM logs) - INTERVAL 1 MINUTE) AS last_minute
         FROM logs",
        1,
    )?;
    let per_minute = rows(
        conn,
        "SELECT strftime(time_bucket(INTERVAL 1 MINUTE, ts), '%H:%M') AS minute, count(*) AS lines
         FROM logs WHERE ts > (SELECT max(ts) FROM logs) - INTERVAL 1 HOUR GROUP BY 1 ORDER BY 1",
        61,
    )?;
    let levels = rows(
        conn,
        "SELECT coalesce(level, '-') AS level, count(*) AS lines FROM logs
         WHERE ts > (SELECT max(ts) FROM logs) - INTERVAL 1 HOUR GROUP BY 1 ORDER BY 2 DESC",
        10,
    )?;
    let services = rows(
        conn,
        "SELECT coalesce(service, host, '-') AS service, count(*) AS last_minute FROM logs
         WHERE ts > (SELECT max(ts) FROM logs) - INTERVAL 1 MINUTE GROUP BY 1 ORDER BY 2 DESC",
        50,
    )?;
    let anomalies = rows(
        conn,
        "SELECT anomaly_id, service, strftime(window_start, '%Y-%m-%dT%H:%M:%SZ') AS window_start,
                round(score, 3) AS score, summary
         FROM anomalies ORDER BY window_start DESC, score DESC LIMIT 20",
        20,
    )?;
    let tail = rows(
        conn,
        &format!(
            "SELECT strftime(ts, '%Y-%m-%dT%H:%M:%S.%gZ') AS ts, level, coalesce(service, host, '-') AS service,
                    message, source || ':' || line_no AS location
             FROM logs WHERE {filter} ORDER BY ts DESC NULLS LAST LIMIT 50"
        ),
        50,
    )?;
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

fn template_list(conn: &Connection) -> Result<Value> {
    rows(
        conn,
        "SELECT template_id, template, count,
                strftime(first_seen, '%Y-%m-%dT%H:%M:%SZ') AS first_seen,
                strftime(last_seen, '%Y-%m-%dT%H:%M:%SZ') AS last_seen,
                first_seen > (SELECT max(last_seen) FROM templates) - INTERVAL 1 HOUR AS new
         FROM templates ORDER BY count DESC LIMIT 2000",
        2000,
    )
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
    let body = st
        .with_db(|c| {
            let n = |sql: &str| -> Result<i64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
            Ok(format!(
                "# HELP logsentry_lines_ingested_total Lines stored in logs.\n# TYPE logsentry_lines_ingested_total counter\nlogsentry_lines_ingested_total {}\n\
                 # HELP logsentry_lines_rejected_total Lines stored in rejects.\n# TYPE logsentry_lines_rejected_total counter\nlogsentry_lines_rejected_total {}\n\
                 # HELP logsentry_messages_consumed_total AMQP messages stored.\n# TYPE logsentry_messages_consumed_total counter\nlogsentry_messages_consumed_total {}\n\
                 # HELP logsentry_runs_total Analyze and consume runs.\n# TYPE logsentry_runs_total counter\nlogsentry_runs_total {}\n\
                 # HELP logsentry_anomalies Anomalous windows stored.\n# TYPE logsentry_anomalies gauge\nlogsentry_anomalies {}\n",
                n("SELECT count(*) FROM logs")?,
                n("SELECT count(*) FROM rejects")?,
                n("SELECT count(*) FROM ingested_messages")?,
                n("SELECT count(*) FROM runs")?,
                n("SELECT count(*) FROM anomalies")?,
            ))
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
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
