//! Owns `logsentry sql`: ad-hoc SQL over the stored logs, printed as an
//! aligned table, CSV or JSON. Read-only unless `--write` is given.

use crate::config::Config;
use crate::store::{query, Store};
use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    Table,
    Csv,
    Json,
}

/// Run SQL over the stored logs.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry sql \"SELECT level, count(*) FROM logs GROUP BY 1 ORDER BY 2 DESC\"\n  logsentry sql --format csv \"SELECT * FROM rejects\" > rejects.csv"
)]
pub struct SqlArgs {
    /// The SQL statement.
    pub query: String,
    /// Database file (default: config `db`, logsentry.duckdb).
    #[arg(long)]
    pub db: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutFormat::Table)]
    pub format: OutFormat,
    /// Stop after this many rows.
    #[arg(long, default_value_t = 10_000)]
    pub max_rows: usize,
    /// Open the database for writing (DELETE, UPDATE, CREATE ...).
    #[arg(long)]
    pub write: bool,
}

pub fn run(args: SqlArgs, cfg: Config) -> Result<i32> {
    let db = args.db.unwrap_or(cfg.db);
    let store = if args.write {
        Store::open(&db)?
    } else {
        Store::open_read_only(&db)?
    };
    let result = match query::run(&store.conn, &args.query, args.max_rows) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("SQL error: {e}");
            return Ok(1);
        }
    };
    match args.format {
        OutFormat::Table => print!("{}", result.to_table()),
        OutFormat::Csv => print!("{}", result.to_csv()),
        OutFormat::Json => println!("{}", serde_json::to_string_pretty(&result.to_json_rows())?),
    }
    if result.truncated && args.format != OutFormat::Table {
        eprintln!("note: output cut at {} rows (--max-rows)", args.max_rows);
    }
    Ok(0)
}
