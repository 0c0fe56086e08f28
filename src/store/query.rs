//! Owns ad-hoc query results: running SQL through Arrow and rendering the
//! result as an aligned table, CSV or JSON (used by `logsentry sql` and the
//! dashboard's console), with a row cap so a huge result cannot exhaust memory.

use anyhow::Result;
use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::Connection;
use serde_json::Value as Json;

/// A rendered cell: text plus whether it is a JSON number/bool (unquoted).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Raw(String),
    Text(String),
}

impl Cell {
    pub fn as_text(&self) -> &str {
        match self {
            Cell::Null => "NULL",
            Cell::Raw(s) | Cell::Text(s) => s,
        }
    }

    fn to_json(&self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Raw(s) => serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.clone())),
            Cell::Text(s) => Json::String(s.clone()),
        }
    }
}

/// A query result, possibly cut at the row cap.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    pub truncated: bool,
}

fn is_raw(dt: &DataType) -> bool {
    dt.is_numeric() || matches!(dt, DataType::Boolean)
}

/// Runs `sql` and collects at most `max_rows` rows.
pub fn run(conn: &Connection, sql: &str, max_rows: usize) -> Result<QueryResult> {
    let mut stmt = conn.prepare(sql)?;
    let arrow = stmt.query_arrow([])?;
    let schema = arrow.get_schema();
    let mut out = QueryResult {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        ..Default::default()
    };
    let opts = FormatOptions::default().with_null("NULL");
    for batch in arrow {
        let fmts = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            if out.rows.len() >= max_rows {
                out.truncated = true;
                return Ok(out);
            }
            let mut cells = Vec::with_capacity(fmts.len());
            for (ci, f) in fmts.iter().enumerate() {
                let col = batch.column(ci);
                if col.is_null(row) {
                    cells.push(Cell::Null);
                } else {
                    let s = f.value(row).to_string();
                    if is_raw(col.data_type()) {
                        cells.push(Cell::Raw(s));
                    } else {
                        cells.push(Cell::Text(s));
                    }
                }
            }
            out.rows.push(cells);
        }
    }
    Ok(out)
}

impl QueryResult {
    /// An aligned text table; numbers right-aligned.
    pub fn to_table(&self) -> String {
        let ncol = self.columns.len();
        let mut width: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        let shown: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| one_line(c.as_text())).collect())
            .collect();
        for r in &shown {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        let pad = |s: &mut String, text: &str, w: usize, right: bool| {
            let n = text.chars().count();
            if right {
                s.push_str(&" ".repeat(w - n));
                s.push_str(text);
            } else {
                s.push_str(text);
                s.push_str(&" ".repeat(w - n));
            }
        };
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            pad(&mut s, c, width[i], false);
        }
        s = s.trim_end().to_string();
        s.push('\n');
        for (i, w) in width.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&"-".repeat(*w));
        }
        s.push('\n');
        for (ri, r) in shown.iter().enumerate() {
            let mut line = String::new();
            for i in 0..ncol {
                if i > 0 {
                    line.push_str("  ");
                }
                let right = matches!(self.rows[ri][i], Cell::Raw(_));
                pad(&mut line, &r[i], width[i], right);
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s.push_str(&format!(
            "({} row{}{})\n",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" },
            if self.truncated {
                ", cut at the row cap"
            } else {
                ""
            }
        ));
        s
    }

    /// RFC 4180 CSV with a header row; NULL as an empty field.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        let field = |s: &mut String, v: &str| {
            if v.contains([',', '"', '\n', '\r']) {
                s.push('"');
                s.push_str(&v.replace('"', "\"\""));
                s.push('"');
            } else {
                s.push_str(v);
            }
        };
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            field(&mut s, c);
        }
        s.push('\n');
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                if !matches!(c, Cell::Null) {
                    field(&mut s, c.as_text());
                }
            }
            s.push('\n');
        }
        s
    }

    /// An array of objects, one per row.
    pub fn to_json_rows(&self) -> Json {
        Json::Array(
            self.rows
                .iter()
                .map(|r| {
                    let mut m = serde_json::Map::new();
                    for (c, v) in self.columns.iter().zip(r) {
                        m.insert(c.clone(), v.to_json());
                    }
                    Json::Object(m)
                })
                .collect(),
        )
    }
}

fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r', '\t']) {
        s.replace(['\n', '\r', '\t'], " ")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_table_csv_json_and_caps_rows() {
        let conn = Connection::open_in_memory().unwrap();
        let r = run(
            &conn,
            "SELECT * FROM (VALUES (1, 'a,b', NULL), (22, 'x\"y', 2.5)) t(n, s, f)",
            10,
        )
        .unwrap();
        assert_eq!(r.columns, ["n", "s", "f"]);
        let t = r.to_table();
        assert!(t.contains(" 1  a,b  NULL"), "{t}");
        assert!(t.ends_with("(2 rows)\n"));
        assert_eq!(r.to_csv(), "n,s,f\n1,\"a,b\",\n22,\"x\"\"y\",2.5\n");
        assert_eq!(
            r.to_json_rows(),
            serde_json::json!([{"n":1,"s":"a,b","f":null},{"n":22,"s":"x\"y","f":2.5}])
        );
        let capped = run(&conn, "SELECT * FROM range(100)", 5).unwrap();
        assert_eq!(capped.rows.len(), 5);
        assert!(capped.truncated);
        assert!(run(&conn, "SELEC 1", 5).is_err());
    }
}
