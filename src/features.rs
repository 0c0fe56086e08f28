//! Owns window features: lines ordered by (service, window, client), then a
//! Polars lazy aggregation of those slices into (service, window) rows —
//! counts, level and status ratios, latency mean/p95/max, bytes, distinct and
//! never-seen templates, distinct clients and the top client's share — with
//! every window of a service's active span present (a silent one has count
//! 0), and robust per-service scaling.
//! Pure: takes a DataFrame, returns plain arrays.

use crate::record::{Level, LogBatch};
use anyhow::{Context, Result};
use ndarray::Array2;
use polars::prelude::*;
use polars::series::IsSorted;

/// Feature names, in column order of `Windows::x`.
pub const FEATURES: [&str; 13] = [
    "count",
    "error_ratio",
    "warn_ratio",
    "ratio_4xx",
    "ratio_5xx",
    "latency_mean",
    "latency_p95",
    "latency_max",
    "bytes",
    "distinct_templates",
    "new_templates",
    "distinct_clients",
    "top_client_share",
];
pub const F_COUNT: usize = 0;
pub const F_LAT_MEAN: usize = 5;
pub const F_LAT_MAX: usize = 7;
const F_BYTES: usize = 8;
pub const F_NEW_TEMPLATES: usize = 10;
const F_CLIENTS: usize = 11;
const F_TOP_CLIENT: usize = 12;

/// Window rows sorted by (service, window_start).
#[derive(Debug, Clone, Default)]
pub struct Windows {
    pub service: Vec<String>,
    /// Window start, epoch microseconds.
    pub start: Vec<i64>,
    pub window_us: i64,
    /// Raw feature values (NaN where undefined, e.g. latency of an empty window).
    pub x: Array2<f64>,
    /// Errors and warnings as counts (for the windows table).
    pub errors: Vec<i64>,
    pub warns: Vec<i64>,
    /// Oldest and newest line time of the input (µs), to tell partial edge windows.
    pub span: Option<(i64, i64)>,
    /// Per window, the line count expected from just before it (see
    /// `fill_expected_counts`); empty or NaN where unknown.
    pub expected_count: Vec<f64>,
    /// Per window, the lines with a status and the lines with a client: the
    /// denominators of the 4xx/5xx ratios and of the top client's share
    /// (empty where unknown, e.g. windows read back from the table; the
    /// line count stands in).
    pub status_lines: Vec<f64>,
    pub client_lines: Vec<f64>,
    /// Per service name: its lines of each template over its span (see
    /// `ServiceTemplates`); empty where unknown.
    pub templates: std::collections::HashMap<String, ServiceTemplates>,
}

/// One service's lines of each template in the input and the windows its
/// lines span (first to last): the typical lines of a template per window,
/// which an anomalous window's are compared with (`detect::attach_lines`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceTemplates {
    pub windows: usize,
    pub lines: ahash::AHashMap<u32, u64>,
}

impl ServiceTemplates {
    /// Typical lines of `template` per window of this service.
    pub fn per_window(&self, template: u32) -> f64 {
        let n = self.lines.get(&template).copied().unwrap_or(0);
        n as f64 / self.windows.max(1) as f64
    }
}

/// Whether a table of `slots` entries indexed by template id is small next
/// to the `lines` it counts (the miner's ids are dense); else a map serves.
fn dense_table_fits(slots: usize, lines: usize) -> bool {
    slots <= 4 * lines + 1025
}

/// Each service rank's lines of each template (`template` is the id + 1,
/// 0 for none, which is not counted).
fn template_lines(
    services: usize,
    svc_rank: &[u32],
    template: &[u32],
) -> Vec<ahash::AHashMap<u32, u64>> {
    let max_template = template.iter().copied().max().unwrap_or(0) as usize;
    let mut out = vec![ahash::AHashMap::new(); services];
    if dense_table_fits(services * (max_template + 1), template.len()) {
        // dense ids (the miner's): a table per service
        let mut table = vec![0u64; services * (max_template + 1)];
        for (&r, &t) in svc_rank.iter().zip(template) {
            table[r as usize * (max_template + 1) + t as usize] += 1;
        }
        for (r, counts) in out.iter_mut().enumerate() {
            let row = &table[r * (max_template + 1)..(r + 1) * (max_template + 1)];
            for (t, &n) in row.iter().enumerate().skip(1).filter(|(_, n)| **n > 0) {
                counts.insert(t as u32 - 1, n);
            }
        }
    } else {
        for (&r, &t) in svc_rank.iter().zip(template) {
            if t > 0 {
                *out[r as usize].entry(t - 1).or_insert(0) += 1;
            }
        }
    }
    out
}

/// The numbers of lines a window's features are measured over.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    pub all: f64,
    pub with_status: f64,
    pub with_client: f64,
    /// The line count expected from just before the window (NaN if unknown).
    pub expected: f64,
}

impl Lines {
    /// `n` lines, all with a status and a client, no expectation.
    pub fn just(n: f64) -> Lines {
        Lines {
            all: n,
            with_status: n,
            with_client: n,
            expected: f64::NAN,
        }
    }

    /// How many lines the share `f` is a share of.
    fn of_share(&self, f: usize) -> f64 {
        match f {
            3 | 4 => self.with_status,
            F_TOP_CLIENT => self.with_client,
            _ => self.all,
        }
    }

    /// The lines a size-dependent feature grows with: bytes with the
    /// requests (lines with a status), clients with the lines that have a
    /// client, distinct templates with all lines.
    pub fn size_for(&self, f: usize) -> f64 {
        match f {
            F_BYTES => self.with_status,
            F_CLIENTS | F_TOP_CLIENT => self.with_client,
            _ => self.all,
        }
    }
}

/// A window's expected count is the median count of this many windows of its
/// service before it...
const EXPECTED_TRAILING: usize = 30;
/// ...once at least this many precede it.
const EXPECTED_MIN: usize = 5;

impl Windows {
    /// Whether window `i` only partly lies inside the input's time span
    /// (data starting or ending mid-window): its counts are not comparable.
    pub fn is_partial(&self, i: usize) -> bool {
        match self.span {
            Some((first, last)) => {
                self.start[i] < first || self.start[i] + self.window_us > last + 1
            }
            None => false,
        }
    }
}

impl Windows {
    /// The numbers of lines window `i`'s features are measured over.
    pub fn lines(&self, i: usize) -> Lines {
        let all = self.x[[i, F_COUNT]];
        Lines {
            all,
            with_status: self.status_lines.get(i).copied().unwrap_or(all),
            with_client: self.client_lines.get(i).copied().unwrap_or(all),
            expected: self.expected(i),
        }
    }

    /// The expected count of window `i` (NaN when unknown).
    pub fn expected(&self, i: usize) -> f64 {
        self.expected_count.get(i).copied().unwrap_or(f64::NAN)
    }

    /// Sets each window's expected count to the median count of the
    /// `EXPECTED_TRAILING` windows of its service before it: the level of
    /// traffic at that time of day, so a silent minute at noon stands out
    /// while a quiet minute at night does not.
    pub fn fill_expected_counts(&mut self) {
        use rayon::prelude::*;
        let mut first_of_service = vec![0; self.len()];
        for r in service_ranges(self) {
            first_of_service[r.clone()].fill(r.start);
        }
        let counts = self.x.column(F_COUNT);
        self.expected_count = (0..self.len())
            .into_par_iter()
            .map(|i| {
                let from = i.saturating_sub(EXPECTED_TRAILING).max(first_of_service[i]);
                if i - from < EXPECTED_MIN {
                    return f64::NAN;
                }
                let mut v: Vec<f64> = (from..i).map(|r| counts[r]).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                quantile_sorted(&v, 0.5)
            })
            .collect();
    }

    pub fn len(&self) -> usize {
        self.start.len()
    }
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }
}

/// The columns of `FeatureInput::lines`, as SQL over `logs l` joined with
/// `templates t`. Strings cost the most to move from DuckDB into Polars and to
/// group on, so none is moved: the service arrives as DuckDB's 64-bit `hash()`
/// of its name (`SERVICE_SQL_COLUMNS` maps keys back to names), the level as a
/// severity (2 error or fatal, 1 warning, 0 other), and `client_ip` as the
/// hash of the address (NULL stays NULL).
pub const INPUT_SQL_COLUMNS: &str = "epoch_us(l.ts) AS ts_us, \
hash(coalesce(l.service, l.host, '-')) AS svc_key, \
(CASE WHEN l.level IN ('ERROR', 'FATAL') THEN 2 WHEN l.level = 'WARN' THEN 1 ELSE 0 END)::UTINYINT AS severity, \
l.status AS status, l.latency_ms AS latency_ms, l.bytes AS bytes, l.template_id AS template_id, \
CASE WHEN l.client_ip IS NOT NULL THEN hash(l.client_ip) END AS client_ip, \
epoch_us(t.first_seen) AS tpl_first_us";

/// The columns of `FeatureInput::services`, as SQL over `logs l`: each
/// service's key (see `INPUT_SQL_COLUMNS`) and name.
pub const SERVICE_SQL_COLUMNS: &str =
    "DISTINCT hash(coalesce(l.service, l.host, '-')) AS svc_key, coalesce(l.service, l.host, '-') AS svc";

/// Severity codes of `INPUT_SQL_COLUMNS`.
pub const SEVERITY_ERROR: u8 = 2;
pub const SEVERITY_WARN: u8 = 1;

/// What `compute` aggregates: one row per line (`INPUT_SQL_COLUMNS`) and the
/// name of each service key (`SERVICE_SQL_COLUMNS`).
#[derive(Debug, Clone, Default)]
pub struct FeatureInput {
    pub lines: DataFrame,
    pub services: DataFrame,
}

impl FeatureInput {
    /// Builds the input from lines that carry the service name (`svc`) and
    /// the level (`level`) as strings, in place of `svc_key` and `severity`
    /// (tests and benchmarks build such frames by hand).
    pub fn from_named(lines: DataFrame) -> Result<FeatureInput> {
        let level_is = |l: &str| col("level").eq(lit(l.to_string()));
        let keyed = lines
            .lazy()
            .with_columns([
                dictionary_code("svc").alias("svc_key"),
                when(level_is("ERROR").or(level_is("FATAL")))
                    .then(lit(SEVERITY_ERROR))
                    .when(level_is("WARN"))
                    .then(lit(SEVERITY_WARN))
                    .otherwise(lit(0u8))
                    .alias("severity"),
            ])
            .collect()?;
        let services = keyed
            .clone()
            .lazy()
            .select([col("svc_key"), col("svc")])
            .unique_stable(None, UniqueKeepStrategy::First)
            .collect()?;
        Ok(FeatureInput {
            lines: keyed.drop_many(["svc", "level"]),
            services,
        })
    }
}

/// Key of a service name or client address in lines taken from parsed
/// batches (`BatchLines`): a fixed-seed hash, so every batch keys a name
/// alike. Any 64-bit key serves `compute`; only the service names map back.
fn line_key(s: &str) -> u64 {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
    .hash_one(s)
}

/// One parsed batch's lines in the shape of `INPUT_SQL_COLUMNS` (without
/// `tpl_first_us`, which is known once all batches are mined) and its
/// service names: what `analyze` keeps of each batch it loads, so that
/// detection need not read the lines back from DuckDB.
#[derive(Debug)]
pub struct BatchLines {
    lines: DataFrame,
    names: Vec<(u64, String)>,
}

impl BatchLines {
    /// Takes the feature columns of `b` (the service is its service, else
    /// its host, else "-", as in `SERVICE_SQL_COLUMNS`).
    pub fn of(b: &LogBatch) -> Result<BatchLines> {
        let n = b.len();
        let mut names: Vec<(u64, String)> = Vec::new();
        let mut seen = ahash::AHashSet::new();
        let mut svc_key = Vec::with_capacity(n);
        let mut client = Vec::with_capacity(n);
        for i in 0..n {
            let name = b.service.get(i).or_else(|| b.host.get(i)).unwrap_or("-");
            let k = line_key(name);
            if seen.insert(k) {
                names.push((k, name.to_string()));
            }
            svc_key.push(k);
            client.push(b.client_ip.get(i).map(line_key));
        }
        let severity: Vec<u8> = b
            .level
            .iter()
            .map(|l| match l {
                Some(Level::Error | Level::Fatal) => SEVERITY_ERROR,
                Some(Level::Warn) => SEVERITY_WARN,
                _ => 0,
            })
            .collect();
        let lines = DataFrame::new(vec![
            opt_column::<Int64Type>("ts_us", &b.ts),
            Column::new("svc_key".into(), svc_key),
            Column::new("severity".into(), severity),
            opt_column::<Int32Type>("status", &b.status),
            opt_column::<Float64Type>("latency_ms", &b.latency_ms),
            opt_column::<Int64Type>("bytes", &b.bytes),
            Column::new("template_id".into(), &b.template_id),
            opt_column::<UInt64Type>("client_ip", &client),
        ])?;
        Ok(BatchLines { lines, names })
    }
}

/// A numeric column of optional values in one pass over them (`Column::new`
/// of an `Option` slice appends each to a builder: ~1% of a full analyze).
fn opt_column<T: PolarsNumericType>(name: &str, v: &[Option<T::Native>]) -> Column {
    let ca: ChunkedArray<T> = v.iter().copied().collect_ca_trusted(name.into());
    ca.into_series().into()
}

/// Gathers `BatchLines` into a `FeatureInput` (see `BatchLines`).
#[derive(Debug, Default)]
pub struct LinesCollector {
    frames: Vec<DataFrame>,
    names: ahash::AHashMap<u64, String>,
}

impl LinesCollector {
    pub fn push(&mut self, part: BatchLines) {
        self.add_names(part.names);
        self.frames.push(part.lines);
    }

    /// Appends every part of `other`.
    pub fn append(&mut self, other: LinesCollector) {
        self.add_names(other.names);
        self.frames.extend(other.frames);
    }

    fn add_names(&mut self, names: impl IntoIterator<Item = (u64, String)>) {
        for (k, name) in names {
            self.names.entry(k).or_insert(name);
        }
    }

    /// The input for `compute`; `first_seen(template_id)` is the first
    /// sighting of a template in the whole database (epoch µs), as the
    /// `templates` table holds it.
    pub fn finish(self, first_seen: impl Fn(u32) -> Option<i64>) -> Result<FeatureInput> {
        let mut frames = self.frames.into_iter();
        let Some(mut lines) = frames.next() else {
            return Ok(FeatureInput::default());
        };
        for f in frames {
            lines.vstack_mut_owned(f)?;
        }
        let tpl_first: Vec<Option<i64>> = lines
            .column("template_id")?
            .u32()?
            .into_iter()
            .map(|t| t.and_then(&first_seen))
            .collect();
        lines.with_column(opt_column::<Int64Type>("tpl_first_us", &tpl_first))?;
        let (keys, names): (Vec<u64>, Vec<String>) = self.names.into_iter().unzip();
        let services = DataFrame::new(vec![
            Column::new("svc_key".into(), keys),
            Column::new("svc".into(), names),
        ])?;
        Ok(FeatureInput { lines, services })
    }
}

/// A string column as 64-bit keys: each distinct value's dictionary code.
fn dictionary_code(name: &str) -> Expr {
    col(name)
        .cast(DataType::Categorical(None, CategoricalOrdering::Physical))
        .to_physical()
        .cast(DataType::UInt64)
}

fn f64_col(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

fn i64_col(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let c = df.column(name)?.cast(&DataType::Int64)?;
    Ok(c.i64()?.into_iter().map(|v| v.unwrap_or(0)).collect())
}

/// Every window of every service's active span, and the order `compute`
/// aggregates lines in: sorted by (service, window, client), so that each
/// window's lines, and each client's lines within it, are contiguous and
/// Polars groups them as slices of the sorted rows instead of hashing 1M keys
/// (hashing the keys and gathering each group took most of the time).
#[derive(Debug, Default, PartialEq)]
struct WindowOrder {
    /// Per service rank: its first window index and its number of windows;
    /// the windows of all services, in this order, are the output rows.
    spans: Vec<(i64, usize)>,
    /// Input row at each sorted position.
    rows: Vec<IdxSize>,
    /// Per sorted row: its window's output row (ascending).
    window: Vec<IdxSize>,
    /// Per sorted row: whether it is the first line of its client in its
    /// window (false without a client).
    client_first: Vec<bool>,
    /// Per sorted row: the lines of its client in its window (0 without a
    /// client); a window's largest is its top client's lines.
    client_lines: Vec<IdxSize>,
    /// Per sorted row: whether it is the first line of its template in its
    /// window.
    template_first: Vec<bool>,
}

/// One line while ordering: its client (`none` last), input row and
/// template (+1; 0 for none).
#[derive(Clone, Copy)]
struct OrderEntry {
    client: u64,
    row: IdxSize,
    template: u32,
    none: bool,
}

/// Orders rows by (service rank, window index, client: lines without one
/// last, input row). Every rank in `0..services` must have a line;
/// `template` is the template id + 1 (0 for none).
fn window_order(
    services: usize,
    svc_rank: &[u32],
    wi: &[i64],
    client: &[u64],
    no_client: &[bool],
    template: &[u32],
) -> WindowOrder {
    use rayon::prelude::*;
    let n = svc_rank.len();
    let mut bounds = vec![(i64::MAX, i64::MIN); services];
    for (&r, &w) in svc_rank.iter().zip(wi) {
        let b = &mut bounds[r as usize];
        *b = (b.0.min(w), b.1.max(w));
    }
    let spans: Vec<(i64, usize)> = bounds
        .iter()
        .map(|&(lo, hi)| (lo, (hi - lo + 1) as usize))
        .collect();
    let mut offset = Vec::with_capacity(services);
    let mut total = 0usize;
    for &(_, len) in &spans {
        offset.push(total);
        total += len;
    }
    let window_of: Vec<usize> = svc_rank
        .iter()
        .zip(wi)
        .map(|(&r, &w)| offset[r as usize] + (w - spans[r as usize].0) as usize)
        .collect();
    // counting sort by output row (input order within a window)...
    let mut start = vec![0usize; total + 1];
    for &w in &window_of {
        start[w + 1] += 1;
    }
    for k in 0..total {
        start[k + 1] += start[k];
    }
    let blank = OrderEntry {
        client: 0,
        row: 0,
        template: 0,
        none: true,
    };
    let mut entries = vec![blank; n];
    let mut next = start.clone();
    for (i, &w) in window_of.iter().enumerate() {
        entries[next[w]] = OrderEntry {
            client: if no_client[i] { 0 } else { client[i] },
            row: i as IdxSize,
            template: template[i],
            none: no_client[i],
        };
        next[w] += 1;
    }
    // ...then by client within each window, windows in parallel
    let mut per_window: Vec<&mut [OrderEntry]> = Vec::with_capacity(total);
    let mut rest = entries.as_mut_slice();
    for k in 0..total {
        let (this, tail) = rest.split_at_mut(start[k + 1] - start[k]);
        per_window.push(this);
        rest = tail;
    }
    per_window
        .into_par_iter()
        .for_each(|lines| lines.sort_unstable_by_key(|e| (e.none, e.client, e.row)));

    let mut window = vec![0 as IdxSize; n];
    for k in 0..total {
        window[start[k]..start[k + 1]].fill(k as IdxSize);
    }
    let mut client_first = Vec::with_capacity(n);
    let mut client_lines = vec![0 as IdxSize; n];
    let mut template_first = Vec::with_capacity(n);
    // the last window each template was seen in, by template (+1), in a
    // table where ids are dense (the miner's are), else in a map
    let max_template = entries
        .iter()
        .map(|e| e.template as usize)
        .max()
        .unwrap_or(0);
    let mut dense =
        dense_table_fits(max_template + 1, n).then(|| vec![IdxSize::MAX; max_template + 1]);
    let mut sparse = ahash::AHashMap::new();
    // the (window, client) run the rows since `run_start` belong to
    let mut run_start = 0;
    for k in 0..n {
        let e = &entries[k];
        let new_run = k == 0 || {
            let p = &entries[k - 1];
            window[k] != window[k - 1] || (e.none, e.client) != (p.none, p.client)
        };
        if new_run {
            close_client_run(&entries, &mut client_lines, run_start..k);
            run_start = k;
        }
        client_first.push(new_run && !e.none);
        let t = e.template as usize;
        let last = match dense.as_mut() {
            Some(d) => std::mem::replace(&mut d[t], window[k]),
            None => sparse.insert(t, window[k]).unwrap_or(IdxSize::MAX),
        };
        template_first.push(last != window[k]);
    }
    close_client_run(&entries, &mut client_lines, run_start..n);
    WindowOrder {
        spans,
        rows: entries.iter().map(|e| e.row).collect(),
        window,
        client_first,
        client_lines,
        template_first,
    }
}

/// Gives each line of one client's run of sorted `entries` the run's length
/// (the lines without a client keep 0).
fn close_client_run(
    entries: &[OrderEntry],
    client_lines: &mut [IdxSize],
    run: std::ops::Range<usize>,
) {
    if run.is_empty() || entries[run.start].none {
        return;
    }
    let len = run.len() as IdxSize;
    client_lines[run].fill(len);
}

/// A numeric column's values and, when it has nulls, which are null (the
/// values there are arbitrary).
fn values_of<T: PolarsNumericType>(ca: &ChunkedArray<T>) -> (Vec<T::Native>, Option<Vec<bool>>) {
    let mut values = Vec::with_capacity(ca.len());
    let mut nulls = (ca.null_count() > 0).then(|| Vec::with_capacity(ca.len()));
    for arr in ca.downcast_iter() {
        values.extend_from_slice(arr.values());
        if let Some(n) = nulls.as_mut() {
            match arr.validity() {
                Some(v) => n.extend(v.iter().map(|valid| !valid)),
                None => n.extend(std::iter::repeat_n(false, arr.len())),
            }
        }
    }
    (values, nulls)
}

/// A sorted column of `IdxSize`, flagged as sorted so that Polars groups on
/// it by slices.
fn sorted_idx_column(name: &str, v: Vec<IdxSize>) -> Column {
    let mut ca = IdxCa::from_vec(name.into(), v);
    ca.set_sorted_flag(IsSorted::Ascending);
    ca.into_series().into()
}

/// Aggregates lines into windows of `window_us`. `warmup` windows at the
/// start of each service never count templates as new. `client_ip` may be
/// the address or any 64-bit key of it.
pub fn compute(input: FeatureInput, window_us: i64, warmup: usize) -> Result<Windows> {
    let FeatureInput { lines, services } = input;
    let empty = || Windows {
        window_us,
        x: Array2::zeros((0, FEATURES.len())),
        ..Default::default()
    };
    if lines.height() == 0 {
        return Ok(empty());
    }
    let w = lit(window_us);
    // clients as 64-bit keys: DuckDB's hash arrives as is, an address string
    // becomes its dictionary code
    let client_key = match lines.column("client_ip")?.dtype() {
        DataType::String => dictionary_code("client_ip"),
        _ => col("client_ip").cast(DataType::UInt64),
    };
    // per line: its window, client key, status class (0 none, 1 below 400,
    // 4 for 4xx, 5 for 5xx: a byte is cheaper to reorder than the status)
    // and whether its template was first seen in this window
    let keyed = lines
        .lazy()
        .filter(col("ts_us").is_not_null())
        .select([
            col("ts_us").cast(DataType::Int64),
            col("svc_key").cast(DataType::UInt64),
            col("ts_us").floor_div(w.clone()).alias("wi"),
            client_key.alias("client"),
            col("severity"),
            when(col("status").is_null())
                .then(lit(0u8))
                .when(col("status").gt_eq(lit(500)))
                .then(lit(5u8))
                .when(col("status").gt_eq(lit(400)))
                .then(lit(4u8))
                .otherwise(lit(1u8))
                .alias("status_class"),
            col("client_ip").is_not_null().alias("has_client"),
            col("latency_ms"),
            col("bytes"),
            col("template_id").cast(DataType::UInt32),
            col("tpl_first_us")
                .floor_div(w.clone())
                .eq(col("ts_us").floor_div(w))
                .fill_null(lit(false))
                .alias("template_new"),
        ])
        .collect()
        .context("keying lines for window features")?;
    if keyed.height() == 0 {
        return Ok(empty());
    }
    if keyed.height() >= IdxSize::MAX as usize {
        anyhow::bail!(
            "too many lines for one window computation: {}",
            keyed.height()
        );
    }
    let ts = keyed.column("ts_us")?.i64()?;
    let span = match (ts.min(), ts.max()) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };

    // services ranked by name (windows come out sorted by service, then
    // time); a key without a name row is named "-"
    let mut names: Vec<(String, u64)> = Vec::with_capacity(services.height());
    if services.height() > 0 {
        let keys = services.column("svc_key")?.cast(&DataType::UInt64)?;
        let svc = services.column("svc")?.cast(&DataType::String)?;
        for (k, s) in keys.u64()?.into_iter().zip(svc.str()?) {
            if let Some(k) = k {
                names.push((s.unwrap_or("-").to_string(), k));
            }
        }
    }
    let (line_keys, _) = values_of(keyed.column("svc_key")?.u64()?);
    let mut rank: ahash::AHashMap<u64, u32> = ahash::AHashMap::new();
    let mut last = None;
    for &k in &line_keys {
        if last != Some(k) {
            rank.entry(k).or_insert(0);
            last = Some(k);
        }
    }
    // only the services that have lines here
    names.retain(|(_, k)| rank.contains_key(k));
    for (k, _) in rank.iter() {
        if !names.iter().any(|(_, n)| n == k) {
            names.push(("-".to_string(), *k));
        }
    }
    names.sort();
    for (r, (_, k)) in names.iter().enumerate() {
        rank.insert(*k, r as u32);
    }
    let svc_rank: Vec<u32> = line_keys.iter().map(|k| rank[k]).collect();
    let (wi, _) = values_of(keyed.column("wi")?.i64()?);
    let (client, no_client) = values_of(keyed.column("client")?.u64()?);
    let no_client = no_client.unwrap_or_else(|| vec![false; client.len()]);
    let (mut template, no_template) = values_of(keyed.column("template_id")?.u32()?);
    // templates as id + 1, 0 for none
    for (k, t) in template.iter_mut().enumerate() {
        let null = no_template.as_ref().is_some_and(|n| n[k]);
        *t = if null { 0 } else { t.saturating_add(1) };
    }
    let order = window_order(names.len(), &svc_rank, &wi, &client, &no_client, &template);
    let per_service = template_lines(names.len(), &svc_rank, &template);
    let idx = IdxCa::from_vec("idx".into(), order.rows);
    // gathering from one chunk, not from the hundreds DuckDB delivers (a
    // chunk lookup per row took 120 ms of the 1M-line gather)
    let mut sorted = keyed
        .select([
            "severity",
            "status_class",
            "latency_ms",
            "bytes",
            "template_new",
            "has_client",
        ])?
        .as_single_chunk_par()
        .take(&idx)?;
    sorted.with_column(sorted_idx_column("window", order.window))?;
    sorted.with_column(Column::new("client_first".into(), order.client_first))?;
    sorted.with_column(Column::new("client_lines".into(), order.client_lines))?;
    sorted.with_column(Column::new("template_first".into(), order.template_first))?;

    // a boolean column's sum counts its true lines, without casting each
    // condition to a 1M-row Int64 column first
    let lines_where = |e: Expr| e.sum();
    let severity_is = |code: u8| lines_where(col("severity").eq(lit(code)));
    let status_is = |code: u8| lines_where(col("status_class").eq(lit(code)));
    let df = sorted
        .lazy()
        .group_by([col("window")])
        .agg([
            len().cast(DataType::Int64).alias("count"),
            severity_is(SEVERITY_ERROR).alias("errors"),
            severity_is(SEVERITY_WARN).alias("warns"),
            status_is(4).alias("s4xx"),
            status_is(5).alias("s5xx"),
            lines_where(col("status_class").gt(lit(0u8))).alias("n_status"),
            col("latency_ms").mean().alias("latency_mean"),
            col("latency_ms")
                .quantile(lit(0.95), QuantileMethod::Linear)
                .alias("latency_p95"),
            col("latency_ms").max().alias("latency_max"),
            col("bytes").sum().cast(DataType::Float64).alias("bytes"),
            lines_where(col("template_first")).alias("distinct_templates"),
            lines_where(col("template_first").and(col("template_new"))).alias("new_templates"),
            lines_where(col("client_first")).alias("distinct_clients"),
            lines_where(col("has_client")).alias("n_client"),
            col("client_lines")
                .max()
                .cast(DataType::Int64)
                .alias("top_n"),
        ])
        .collect()
        .context("computing window features with Polars")?;

    let row = df.column("window")?.idx()?;
    let count = i64_col(&df, "count")?;
    let errors = i64_col(&df, "errors")?;
    let warns = i64_col(&df, "warns")?;
    let s4 = i64_col(&df, "s4xx")?;
    let s5 = i64_col(&df, "s5xx")?;
    let n_status = i64_col(&df, "n_status")?;
    let lat_mean = f64_col(&df, "latency_mean")?;
    let lat_p95 = f64_col(&df, "latency_p95")?;
    let lat_max = f64_col(&df, "latency_max")?;
    let bytes = f64_col(&df, "bytes")?;
    let dt = i64_col(&df, "distinct_templates")?;
    let nt = i64_col(&df, "new_templates")?;
    let dc = i64_col(&df, "distinct_clients")?;
    let n_client = i64_col(&df, "n_client")?;
    let top_n = i64_col(&df, "top_n")?;

    // every window of each service's span is a row: silent ones keep count
    // 0 and no latency
    let total: usize = order.spans.iter().map(|s| s.1).sum();
    let mut out = Windows {
        window_us,
        span,
        errors: vec![0; total],
        warns: vec![0; total],
        status_lines: vec![0.0; total],
        client_lines: vec![0.0; total],
        ..Default::default()
    };
    out.templates = per_service
        .into_iter()
        .enumerate()
        .map(|(r, lines)| {
            let windows = order.spans[r].1;
            (names[r].0.clone(), ServiceTemplates { windows, lines })
        })
        .collect();
    let mut first_of_service = Vec::with_capacity(total);
    for (r, &(lo, len)) in order.spans.iter().enumerate() {
        for k in 0..len {
            out.service.push(names[r].0.clone());
            out.start.push((lo + k as i64) * window_us);
            first_of_service.push(k);
        }
    }
    let mut x = Array2::zeros((total, FEATURES.len()));
    for o in 0..total {
        for f in LATENCIES {
            x[[o, f]] = f64::NAN;
        }
    }
    let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    for (k, o) in row.into_no_null_iter().enumerate() {
        let o = o as usize;
        let c = count[k] as f64;
        let new_t = if first_of_service[o] < warmup {
            0.0
        } else {
            nt[k] as f64
        };
        let values = [
            c,
            errors[k] as f64 / c,
            warns[k] as f64 / c,
            ratio(s4[k], n_status[k]),
            ratio(s5[k], n_status[k]),
            lat_mean[k],
            lat_p95[k],
            lat_max[k],
            if bytes[k].is_nan() { 0.0 } else { bytes[k] },
            dt[k] as f64,
            new_t,
            dc[k] as f64,
            ratio(top_n[k], n_client[k]),
        ];
        for (f, v) in values.into_iter().enumerate() {
            x[[o, f]] = v;
        }
        out.errors[o] = errors[k];
        out.warns[o] = warns[k];
        out.status_lines[o] = n_status[k] as f64;
        out.client_lines[o] = n_client[k] as f64;
    }
    out.x = x;
    Ok(out)
}

/// Features compared on a log scale (counts, sizes, latencies): a doubling
/// weighs the same at night as at noon.
const LOG_SCALED: [usize; 7] = [0, 5, 6, 7, 8, 9, 11];
/// Shares of a window's lines (error, warn, 4xx, 5xx, top client): compared
/// by their signed deviance against the service's pooled share, which grows
/// with the window's line count, so 2 errors in 7 lines weigh less than 200
/// in 700 (see `share_z`).
const RATIOS: [usize; 5] = [1, 2, 3, 4, 12];

fn transform(f: usize, v: f64) -> f64 {
    if LOG_SCALED.contains(&f) {
        v.max(0.0).ln_1p()
    } else {
        v
    }
}

/// Per-service robust baseline of each feature: the median, the typical raw
/// value, and a scale (IQR/1.349 or (p99 − median)/2.326 on the transformed
/// values, whichever is larger, floored so that
/// noise in tiny windows — one error among five lines — is not news).
#[derive(Debug, Clone)]
pub struct Baseline {
    /// Median of the transformed values.
    pub median: Vec<f64>,
    pub scale: Vec<f64>,
    /// Median of the raw values (for explanations).
    pub typical: Vec<f64>,
    /// How much more counts vary than Poisson noise around their expected
    /// count (median squared deviance / 0.455, at least 1).
    pub count_dispersion: f64,
    /// Bands of the features that grow with a window's line count
    /// (`SIZE_DEPENDENT`), per size class of window (`size_class`), where
    /// the service has enough windows of that size: a five-line night
    /// minute has fewer bytes, templates and clients and a larger top-client
    /// share than the service's typical window, and is compared with
    /// windows of its own size. Empty and rarer sizes use the service's band.
    pub sized: std::collections::HashMap<(usize, u32), Band>,
}

/// Where a feature normally lies: the median and scale of its transformed
/// values and its typical raw value (see `Baseline`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub median: f64,
    pub scale: f64,
    pub typical: f64,
}

/// Features that grow or shrink with a window's line count whatever
/// happens: bytes, distinct templates, distinct clients and the top
/// client's share (the largest of a few draws is a large share).
const SIZE_DEPENDENT: [usize; 4] = [8, 9, 11, 12];

/// Windows of one size class a service needs for its own band.
const SIZED_MIN_WINDOWS: usize = 100;

/// Size class of a window of `count` lines: `floor(log2(count))` (1, 2–3,
/// 4–7, …); none for an empty window.
fn size_class(count: f64) -> Option<u32> {
    (count >= 1.0).then(|| (count as u64).ilog2())
}

/// Linear-interpolated quantile of sorted values (NaN when empty).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Latency features: a mean, p95 or max of a few lines is noisy, so their
/// deviation is shrunk by `sqrt(count / typical count)` below a typical count.
const LATENCIES: [usize; 3] = [5, 6, 7];

/// Signed deviance (likelihood-ratio) z of a share `p` seen in `n` lines
/// against the expected share `p0`: `sign(p - p0) * sqrt(2n * KL(p || p0))`.
/// Unlike a normal approximation it stays right for rare events: 6 errors in
/// 13 lines where 0.4 % are usual is z 7.3, not 5.
pub fn share_z(p: f64, p0: f64, n: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    // a share never seen in the service still has some small chance
    let p0 = p0.clamp(1e-4, 1.0 - 1e-4);
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    let kl = (term(p, p0) + term(1.0 - p, 1.0 - p0)).max(0.0);
    (p - p0).signum() * (2.0 * n.max(0.0) * kl).sqrt()
}

/// Signed Poisson deviance of `x` lines where `expected` were expected:
/// `sign(x - λ) * sqrt(2 (x ln(x/λ) - (x - λ)))`; 0 lines where 23 are
/// expected is -6.8, 1 where 3 are is -1.3.
pub fn count_deviance(x: f64, expected: f64) -> f64 {
    let l = expected.max(0.5);
    let x = x.max(0.0);
    let t = if x > 0.0 { x * (x / l).ln() } else { 0.0 };
    (x - l).signum() * (2.0 * (t - (x - l))).max(0.0).sqrt()
}

impl Baseline {
    /// The band feature `f` is compared with in a window whose size for it
    /// (`Lines::size_for`) is `size`.
    pub fn band(&self, f: usize, size: f64) -> Band {
        let sized = match size_class(size) {
            Some(c) if SIZE_DEPENDENT.contains(&f) => self.sized.get(&(f, c)),
            _ => None,
        };
        sized.copied().unwrap_or(Band {
            median: self.median[f],
            scale: self.scale[f],
            typical: self.typical[f],
        })
    }

    /// Robust z-score of a raw value of feature `f` in a window of `lines`:
    /// a count is compared with the count expected just before the window
    /// (when known), by its Poisson deviance over the service's dispersion,
    /// else on the log scale; a share by its deviance over the lines it is a
    /// share of; the rest against the band of the window's size for `f`.
    pub fn z_at(&self, f: usize, raw: f64, lines: &Lines) -> f64 {
        if !raw.is_finite() {
            return 0.0;
        }
        if f == F_COUNT && lines.expected.is_finite() {
            return count_deviance(raw, lines.expected) / self.count_dispersion.sqrt();
        }
        let count = lines.all;
        let size = lines.size_for(f);
        if SIZE_DEPENDENT.contains(&f) && count >= 1.0 && size < 1.0 {
            // lines, but none of those the feature comes from (a minute of
            // app lines without a request has no bytes): nothing to compare
            return 0.0;
        }
        let band = self.band(f, size);
        if RATIOS.contains(&f) {
            return share_z(raw, band.typical, lines.of_share(f));
        }
        let z = (transform(f, raw) - band.median) / band.scale;
        let shrunk = LATENCIES.contains(&f) || (SIZE_DEPENDENT.contains(&f) && count >= 1.0);
        if shrunk && self.typical[F_COUNT] > 0.0 {
            z * (count / self.typical[F_COUNT]).clamp(0.0, 1.0).sqrt()
        } else {
            z
        }
    }
}

fn baseline_of(w: &Windows, rows: std::ops::Range<usize>) -> Baseline {
    let n = FEATURES.len();
    let mut b = Baseline {
        median: vec![0.0; n],
        scale: vec![1.0; n],
        typical: vec![0.0; n],
        count_dispersion: 1.0,
        sized: Default::default(),
    };
    let mut dev: Vec<f64> = rows
        .clone()
        .filter(|&r| w.expected(r).is_finite())
        .map(|r| count_deviance(w.x[[r, F_COUNT]], w.expected(r)).powi(2))
        .collect();
    if !dev.is_empty() {
        dev.sort_by(|a, b| a.total_cmp(b));
        // 0.455 is the median of a chi-square with one degree of freedom
        b.count_dispersion = (quantile_sorted(&dev, 0.5) / 0.455).max(1.0);
    }
    let all: Vec<usize> = rows.collect();
    for f in 0..n {
        let band = band_of(w, &all, f);
        b.median[f] = band.median;
        b.scale[f] = band.scale;
        b.typical[f] = band.typical;
    }
    for f in SIZE_DEPENDENT {
        let mut by_class: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for &r in &all {
            if let Some(c) = size_class(w.lines(r).size_for(f)) {
                by_class.entry(c).or_default().push(r);
            }
        }
        for (c, rows) in by_class {
            if rows.len() >= SIZED_MIN_WINDOWS {
                b.sized.insert((f, c), band_of(w, &rows, f));
            }
        }
    }
    b
}

/// The band of feature `f` over the windows `rows`.
fn band_of(w: &Windows, rows: &[usize], f: usize) -> Band {
    let mut raw: Vec<f64> = rows
        .iter()
        .map(|&r| w.x[[r, f]])
        .filter(|v| v.is_finite())
        .collect();
    raw.sort_by(|a, b| a.total_cmp(b));
    let mut t: Vec<f64> = raw.iter().map(|v| transform(f, *v)).collect();
    t.sort_by(|a, b| a.total_cmp(b));
    let med = quantile_sorted(&t, 0.5);
    // IQR for the body; the 99th percentile for heavy upper tails (the
    // slowest request of a quiet minute), so ordinary tail noise stays
    // inside the normal band
    let iqr = ((quantile_sorted(&t, 0.75) - quantile_sorted(&t, 0.25)) / 1.349)
        .max((quantile_sorted(&t, 0.99) - med) / 2.326);
    let typical = if RATIOS.contains(&f) {
        // the pooled share (a per-window median of a rare event is 0 even
        // when it happens every hour)
        let (mut hits, mut total) = (0.0, 0.0);
        for &r in rows {
            let (c, v) = (w.lines(r).of_share(f), w.x[[r, f]]);
            if v.is_finite() {
                hits += v * c;
                total += c;
            }
        }
        if total > 0.0 {
            hits / total
        } else {
            0.0
        }
    } else {
        quantile_sorted(&raw, 0.5)
    };
    // ratios do not use the scale (see `z`)
    // one never-seen template alone stays inside the normal band (the
    // rare-lines report lists it); several at once do not
    let floor = if f == F_NEW_TEMPLATES {
        0.5
    } else if LOG_SCALED.contains(&f) {
        0.25
    } else {
        0.05
    };
    Band {
        median: if med.is_finite() { med } else { 0.0 },
        scale: if iqr.is_finite() {
            iqr.max(floor)
        } else {
            floor
        },
        typical: if typical.is_finite() { typical } else { 0.0 },
    }
}

/// The rows of each service in `w` (its windows are contiguous), in order.
fn service_ranges(w: &Windows) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        let mut j = i;
        while j < w.len() && w.service[j] == w.service[i] {
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// Baselines per service, in the order services appear in `w` (services
/// in parallel).
pub fn baselines(w: &Windows) -> Vec<(String, Baseline)> {
    use rayon::prelude::*;
    service_ranges(w)
        .into_par_iter()
        .map(|r| (w.service[r.start].clone(), baseline_of(w, r)))
        .collect()
}

/// Features where only a rise is news: fewer errors, lower latency or a
/// smaller top-client share than usual is not an incident. Counts, bytes and
/// distinct templates/clients matter both ways (silence, drops, spikes).
const RISE_ONLY: [usize; 9] = [1, 2, 3, 4, 5, 6, 7, 10, 12];

/// Whether only rises of this feature count (see `RISE_ONLY`).
pub fn is_rise_only(feature: &str) -> bool {
    FEATURES
        .iter()
        .position(|f| *f == feature)
        .is_some_and(|i| RISE_ONLY.contains(&i))
}

/// Deviations within this many robust units of the baseline count as normal
/// (see `scaled`).
pub const NORMAL_BAND: f64 = 3.0;

/// Robustly scaled features per service (NaN → 0, i.e. typical), as the
/// distance beyond the normal band: `max(|z| − NORMAL_BAND, 0)`. The forest
/// then cannot spend splits on ordinary jitter, and a window beyond its
/// service's normal band in several features is isolated in few splits.
/// Drops and rises of two-way features (count, bytes, distinct templates and
/// clients) share one side: an Isolation Forest only isolates a point on the
/// side of a feature where its training sample has points, and a drop to
/// silence is rare enough that few samples hold one. Explanations keep the
/// sign (`Baseline::z_at`).
///
/// One more column follows the features: the total distance beyond the band
/// over all of them. Only a few hundred of 50,000 windows leave the band at
/// all, so a tree's 256-row sample seldom holds a window that leaves it in a
/// given feature, and the trees cannot isolate along features they never
/// split; the total is non-zero for every window that deviates anywhere, so
/// the trees split on it, and the further out a window is, the sooner.
pub fn scaled(w: &Windows, base: &[(String, Baseline)]) -> Array2<f64> {
    use rayon::prelude::*;
    let cols = FEATURES.len() + 1;
    // each row's baseline (rows of a service are contiguous, in `base`'s order)
    let mut row_base = Vec::with_capacity(w.len());
    let mut bi = 0;
    for r in 0..w.len() {
        while base[bi].0 != w.service[r] {
            bi += 1;
        }
        row_base.push(&base[bi].1);
    }
    let mut z = vec![0.0; w.len() * cols];
    z.par_chunks_mut(cols).enumerate().for_each(|(r, out)| {
        let b = row_base[r];
        let lines = w.lines(r);
        for (f, o) in out[..FEATURES.len()].iter_mut().enumerate() {
            let mut v = b.z_at(f, w.x[[r, f]], &lines);
            if RISE_ONLY.contains(&f) {
                v = v.max(0.0);
            }
            *o = (v.abs() - NORMAL_BAND).max(0.0);
        }
        out[F_TOTAL_DEVIATION] = out[..FEATURES.len()].iter().sum();
    });
    Array2::from_shape_vec((w.len(), cols), z).expect("rows of `cols` values")
}

/// The column of `scaled` after the features: total distance beyond the band.
pub const F_TOTAL_DEVIATION: usize = FEATURES.len();

#[cfg(test)]
mod tests {
    use super::*;

    /// (ts_us, svc, level, status, latency_ms, template_id, client_ip, tpl_first_us)
    type Row<'a> = (
        i64,
        &'a str,
        &'a str,
        Option<i32>,
        Option<f64>,
        u32,
        &'a str,
        i64,
    );

    fn frame(rows: &[Row<'_>]) -> FeatureInput {
        let named = df!(
            "ts_us" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "svc" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "level" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "status" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            "latency_ms" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            "bytes" => rows.iter().map(|_| Some(10i64)).collect::<Vec<_>>(),
            "template_id" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            "client_ip" => rows.iter().map(|r| r.6).collect::<Vec<_>>(),
            "tpl_first_us" => rows.iter().map(|r| r.7).collect::<Vec<_>>(),
        )
        .unwrap();
        FeatureInput::from_named(named).unwrap()
    }

    const M: i64 = 60_000_000;

    /// Service "a": three lines in window 0 (an error, a 4xx, a 5xx, two
    /// clients), silence, one line in window 3; "b": one line in window 1.
    fn gap_lines() -> Vec<Row<'static>> {
        vec![
            (0, "a", "INFO", Some(200), Some(10.0), 1, "c1", 0),
            (1, "a", "ERROR", Some(503), Some(30.0), 2, "c1", 1),
            (2, "a", "WARN", Some(404), None, 1, "c2", 0),
            (
                3 * M + 5,
                "a",
                "INFO",
                Some(200),
                Some(20.0),
                3,
                "c3",
                3 * M + 5,
            ),
            (M, "b", "INFO", None, None, 1, "c1", 0),
        ]
    }

    #[test]
    fn aggregates_and_fills_gaps() {
        let df = frame(&gap_lines());
        let w = compute(df, M, 0).unwrap();
        assert_eq!(w.service, ["a", "a", "a", "a", "b"]);
        assert_eq!(w.start, [0, M, 2 * M, 3 * M, M]);
        let r0 = w.x.row(0);
        assert_eq!(r0[F_COUNT], 3.0);
        assert!((r0[1] - 1.0 / 3.0).abs() < 1e-9); // error_ratio
        assert!((r0[3] - 1.0 / 3.0).abs() < 1e-9); // 4xx
        assert!((r0[4] - 1.0 / 3.0).abs() < 1e-9); // 5xx
        assert_eq!(r0[F_LAT_MEAN], 20.0);
        assert_eq!(r0[F_LAT_MAX], 30.0);
        assert_eq!(r0[9], 2.0); // distinct templates
        assert_eq!(r0[F_NEW_TEMPLATES], 2.0);
        assert_eq!(r0[11], 2.0); // clients
        assert!((r0[12] - 2.0 / 3.0).abs() < 1e-9); // top client share
                                                    // the silent windows exist with count 0
        assert_eq!(w.x[[1, F_COUNT]], 0.0);
        assert_eq!(w.x[[2, F_COUNT]], 0.0);
        assert!(w.x[[1, F_LAT_MEAN]].is_nan());
        assert_eq!(w.x[[3, F_NEW_TEMPLATES]], 1.0);
        // warm-up hides new templates at the start of each service
        let df = frame(&[(0, "a", "INFO", None, None, 1, "c", 0)]);
        assert_eq!(compute(df, M, 5).unwrap().x[[0, F_NEW_TEMPLATES]], 0.0);
    }

    #[test]
    fn lines_kept_from_parsed_batches_give_the_same_windows() {
        // (ts, service, host, level, status, latency, template, client)
        type Line<'a> = (
            Option<i64>,
            Option<&'a str>,
            Option<&'a str>,
            Level,
            Option<i32>,
            Option<f64>,
            u32,
            Option<&'a str>,
        );
        let first_seen = |t: u32| Some([0, 1, 3 * M + 5][t as usize - 1]);
        let batch = |lines: &[Line<'_>]| {
            let mut b = LogBatch::default();
            for (i, l) in lines.iter().enumerate() {
                b.ts.push(l.0);
                b.service.push(l.1);
                b.host.push(l.2);
                b.level.push(Some(l.3));
                b.status.push(l.4);
                b.latency_ms.push(l.5);
                b.bytes.push(Some(10));
                b.template_id.push(l.6);
                b.client_ip.push(l.7);
                b.line_no.push(i as i64 + 1);
            }
            BatchLines::of(&b).unwrap()
        };
        let mut kept = LinesCollector::default();
        kept.push(batch(&[
            (
                Some(0),
                Some("a"),
                None,
                Level::Info,
                Some(200),
                Some(10.0),
                1,
                Some("c1"),
            ),
            (
                Some(1),
                Some("a"),
                Some("h"),
                Level::Error,
                Some(503),
                Some(30.0),
                2,
                Some("c1"),
            ),
            // a line without a time is stored but in no window
            (None, Some("a"), None, Level::Fatal, None, None, 2, None),
        ]));
        let mut second = LinesCollector::default();
        second.push(batch(&[
            (
                Some(2),
                Some("a"),
                None,
                Level::Warn,
                Some(404),
                None,
                1,
                Some("c2"),
            ),
            (
                Some(3 * M + 5),
                Some("a"),
                None,
                Level::Info,
                Some(200),
                Some(20.0),
                3,
                Some("c3"),
            ),
            // no service: the host names it
            (Some(M), None, Some("b"), Level::Info, None, None, 1, None),
        ]));
        kept.append(second);
        let from_batches = compute(kept.finish(first_seen).unwrap(), M, 0).unwrap();
        let named = compute(frame(&gap_lines()), M, 0).unwrap();
        assert_eq!(from_batches.service, named.service);
        assert_eq!(from_batches.start, named.start);
        assert_eq!(from_batches.errors, named.errors);
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        for (f, name) in FEATURES.iter().enumerate() {
            // the host-named line has no client in the batch, "c1" in the frame
            let rows = if f == F_CLIENTS || f == F_TOP_CLIENT {
                0..4
            } else {
                0..5
            };
            for r in rows {
                let (a, b) = (from_batches.x[[r, f]], named.x[[r, f]]);
                assert!(same(a, b), "{name} of window {r}: {a} vs {b}");
            }
        }
        assert_eq!(from_batches.x[[4, F_CLIENTS]], 0.0);
    }

    #[test]
    fn each_service_counts_its_lines_of_each_template_over_its_span() {
        let w = compute(
            frame(&[
                (0, "a", "INFO", None, None, 1, "c", 0),
                (1, "a", "INFO", None, None, 1, "c", 0),
                (3 * M, "a", "ERROR", None, None, 2, "c", 3 * M),
                (M, "b", "INFO", None, None, 1, "c", 0),
            ]),
            M,
            0,
        )
        .unwrap();
        // "a" spans windows 0..=3 (four), "b" one window
        let a = &w.templates["a"];
        assert_eq!(a.windows, 4);
        assert_eq!((a.lines[&1], a.lines[&2]), (2, 1));
        assert_eq!(a.per_window(1), 0.5);
        assert_eq!(a.per_window(7), 0.0);
        assert_eq!(w.templates["b"].lines.len(), 1);
        // ids too sparse for a table are counted in a map, alike
        let rank = [0, 0, 1, 0];
        let dense = [2, 2, 2, 3];
        let sparse: Vec<u32> = dense.iter().map(|t| t * 1_000_000_000).collect();
        let by_table = template_lines(2, &rank, &dense);
        assert_eq!(by_table[0][&1], 2);
        assert_eq!(by_table[1][&1], 1);
        let by_map = template_lines(2, &rank, &sparse);
        assert_eq!(by_map[0][&1_999_999_999], 2);
        assert_eq!(by_map[0].len(), by_table[0].len());
    }

    #[test]
    fn lines_without_a_client_count_as_none() {
        // as DuckDB delivers them: clients as 64-bit hashes, NULL where the
        // line has no address; two services share the window and a hash
        let named = df!(
            "ts_us" => [0i64, 1, 2, 3, 4, 5, 6],
            "svc" => ["a", "a", "a", "a", "b", "b", "a"],
            "level" => ["INFO"; 7],
            "status" => [Some(200i32), None, None, Some(200), None, None, None],
            "latency_ms" => [None::<f64>; 7],
            "bytes" => [None::<i64>; 7],
            "template_id" => [1u32; 7],
            "client_ip" => [Some(7u64), None, None, Some(7), Some(7), None, None],
            "tpl_first_us" => [0i64; 7],
        )
        .unwrap();
        let w = compute(FeatureInput::from_named(named).unwrap(), M, 0).unwrap();
        assert_eq!(w.service, ["a", "b"]);
        // service a: 5 lines, 2 with the one client, 3 without (more than
        // any client has: they must not count as one)
        assert_eq!(w.x[[0, F_COUNT]], 5.0);
        assert_eq!(w.x[[0, 11]], 1.0, "null is not a client");
        assert_eq!(
            w.x[[0, 12]],
            1.0,
            "the top client has every line that has a client"
        );
        // service b: the same client hash counts apart from service a
        assert_eq!(w.x[[1, 11]], 1.0);
        assert_eq!(w.x[[1, 12]], 1.0);
        // a window without any client has neither clients nor a top share
        let named = df!(
            "ts_us" => [0i64], "svc" => ["a"], "level" => ["INFO"], "status" => [None::<i32>],
            "latency_ms" => [None::<f64>], "bytes" => [None::<i64>], "template_id" => [1u32],
            "client_ip" => [None::<u64>], "tpl_first_us" => [0i64],
        )
        .unwrap();
        let w = compute(FeatureInput::from_named(named).unwrap(), M, 0).unwrap();
        assert_eq!((w.x[[0, 11]], w.x[[0, 12]]), (0.0, 0.0));
    }

    #[test]
    fn window_order_sorts_by_window_then_client() {
        // rows: (service rank, window, client, template)
        let rank = [1, 0, 0, 1, 0, 0, 0];
        let wi = [5, 7, 5, 5, 5, 7, 5];
        let client = [9, 1, 0, 9, 2, 1, 2];
        let no_client = [false, false, true, false, false, false, false];
        let template = [3, 3, 3, 3, 4, 4, 3];
        let o = window_order(2, &rank, &wi, &client, &no_client, &template);
        // service 0 spans windows 5..=7 (6 is silent), service 1 window 5
        assert_eq!(o.spans, [(5, 3), (5, 1)]);
        // service 0 window 5: client 2 twice, then the line without one;
        // window 7: client 1 twice; service 1 window 5: client 9 twice
        assert_eq!(o.rows, [4, 6, 2, 1, 5, 0, 3]);
        assert_eq!(o.window, [0, 0, 0, 2, 2, 3, 3]);
        assert_eq!(
            o.client_first,
            [true, false, false, true, false, true, false]
        );
        assert_eq!(o.client_lines, [2, 2, 0, 2, 2, 2, 2]);
        assert_eq!(
            o.template_first,
            [true, true, false, true, true, true, false]
        );
        // ids too sparse for a table go through a map, with the same result
        let sparse: Vec<u32> = template.iter().map(|t| t * 1_000_000_000).collect();
        let s = window_order(2, &rank, &wi, &client, &no_client, &sparse);
        assert_eq!(s.template_first, o.template_first);
    }

    /// `n` consecutive windows of service `s`, every feature 0.
    fn one_service(n: usize) -> Windows {
        Windows {
            service: vec!["s".into(); n],
            start: (0..n as i64).collect(),
            window_us: 1,
            x: Array2::zeros((n, FEATURES.len())),
            ..Default::default()
        }
    }

    #[test]
    fn robust_scaling_per_service() {
        let n = 200;
        let mut w = one_service(n);
        for i in 0..n {
            w.x[[i, F_COUNT]] = 10.0 + (i % 5) as f64;
        }
        w.x[[7, F_COUNT]] = 100.0;
        let b = baselines(&w);
        assert_eq!(b[0].1.typical[F_COUNT], 12.0);
        // 100 lines where 12 are typical: ln(101/13) / 0.25 ≈ 8
        assert!(b[0].1.z_at(F_COUNT, 100.0, &Lines::just(100.0)) > 7.0);
        let z = scaled(&w, &b);
        assert!(z[[7, F_COUNT]] > 4.0, "{}", z[[7, F_COUNT]]);
        // ordinary jitter is inside the normal band
        assert_eq!(z[[2, F_COUNT]], 0.0);
        assert_eq!(z[[4, F_COUNT]], 0.0);
        // a silent window is far below
        assert!(b[0].1.z_at(F_COUNT, 0.0, &Lines::just(0.0)) < -9.0);
        // 2 errors in 8 lines weigh less than 200 in 800
        let small = b[0].1.z_at(1, 0.25, &Lines::just(8.0));
        let big = b[0].1.z_at(1, 0.25, &Lines::just(800.0));
        assert!(small > 0.0 && big > 5.0 * small, "{small} {big}");
    }

    #[test]
    fn small_windows_are_compared_with_windows_of_their_size() {
        // 300 night minutes of 5 lines (2 clients, top share 0.6) and 300 day
        // minutes of 40 lines (10-16 clients, top share 0.15)
        let n = 600;
        let mut w = one_service(n);
        let (dc, top) = (11, F_TOP_CLIENT);
        for i in 0..n {
            let night = i % 2 == 0;
            let jitter = (i % 7) as f64;
            w.x[[i, F_COUNT]] = if night { 5.0 } else { 40.0 };
            w.x[[i, dc]] = if night { 2.0 } else { 10.0 + jitter };
            w.x[[i, top]] = if night { 0.6 } else { 0.15 };
        }
        let b = &baselines(&w)[0].1;
        assert_eq!(b.band(top, 5.0).typical, 0.6);
        assert_eq!(b.band(top, 40.0).typical, 0.15);
        assert_eq!(b.band(dc, 6.0).typical, 2.0, "4-7 lines share a class");
        // a night minute as usual is normal; the same share by day is not
        assert!(b.z_at(top, 0.6, &Lines::just(5.0)).abs() < 0.01);
        assert!(b.z_at(top, 0.6, &Lines::just(40.0)) > NORMAL_BAND);
        assert!(b.z_at(dc, 2.0, &Lines::just(5.0)).abs() < 0.01);
        // a silent window has no class: the service-wide band, unshrunk
        assert_eq!(b.band(dc, 0.0).median, b.median[dc]);
        assert_eq!(
            b.z_at(dc, 0.0, &Lines::just(0.0)),
            -b.median[dc] / b.scale[dc]
        );
        // sizes with too few windows fall back to the service's band
        assert_eq!(b.band(dc, 300.0).median, b.median[dc]);
    }

    #[test]
    fn shares_are_taken_over_the_lines_they_are_shares_of() {
        // one request (one client, a 404) among five lines of a quiet minute
        let n = 200;
        let mut w = one_service(n);
        for i in 0..n {
            w.x[[i, F_COUNT]] = 20.0;
            w.x[[i, 3]] = 0.05;
            w.x[[i, F_TOP_CLIENT]] = 0.2;
            w.status_lines.push(20.0);
            w.client_lines.push(20.0);
        }
        let b = &baselines(&w)[0].1;
        let one_request = Lines {
            all: 5.0,
            with_status: 1.0,
            with_client: 1.0,
            expected: f64::NAN,
        };
        assert!(b.z_at(F_TOP_CLIENT, 1.0, &one_request) < NORMAL_BAND);
        assert!(b.z_at(3, 1.0, &one_request) < NORMAL_BAND);
        // the same shares over five requests are news
        assert!(b.z_at(F_TOP_CLIENT, 1.0, &Lines::just(5.0)) > NORMAL_BAND);
        assert!(b.z_at(3, 1.0, &Lines::just(5.0)) > NORMAL_BAND);
        // the pooled share weighs each window by its status lines
        w.status_lines[0] = 0.0;
        w.x[[0, 3]] = 0.0;
        assert_eq!(baselines(&w)[0].1.typical[3], 0.05);
    }

    #[test]
    fn bytes_and_clients_follow_the_requests_not_all_lines() {
        // 20 lines a minute: 10 requests of 100 bytes from 5 clients, or, in
        // a third of the minutes, 2 requests (200 bytes, 2 clients)
        let n = 600;
        let mut w = one_service(n);
        for i in 0..n {
            let requests = if i % 3 == 0 { 2.0 } else { 10.0 };
            w.x[[i, F_COUNT]] = 20.0;
            w.x[[i, F_BYTES]] = 100.0 * requests;
            w.x[[i, F_CLIENTS]] = requests.min(5.0);
            w.status_lines.push(requests);
            w.client_lines.push(requests);
        }
        let b = &baselines(&w)[0].1;
        let lines = |requests: f64| Lines {
            all: 20.0,
            with_status: requests,
            with_client: requests,
            expected: f64::NAN,
        };
        // two requests are compared with the minutes of two requests...
        assert_eq!(b.band(F_BYTES, 2.0).typical, 200.0);
        assert!(b.z_at(F_BYTES, 200.0, &lines(2.0)).abs() < 0.01);
        assert!(b.z_at(F_CLIENTS, 2.0, &lines(2.0)).abs() < 0.01);
        // ...not with the service's typical minute (all have 20 lines)
        assert_eq!(b.band(F_BYTES, 20.0).typical, 1000.0);
        assert!(b.z_at(F_BYTES, 200.0, &Lines::just(20.0)) < -1.0);
        // a minute of app lines without a request has no bytes or clients
        // to compare
        assert_eq!(b.z_at(F_BYTES, 0.0, &lines(0.0)), 0.0);
        assert_eq!(b.z_at(F_CLIENTS, 0.0, &lines(0.0)), 0.0);
        // a silent minute keeps its weight
        assert!(b.z_at(F_BYTES, 0.0, &Lines::just(0.0)) < -NORMAL_BAND);
    }

    #[test]
    fn counts_compare_with_the_traffic_just_before() {
        assert!((count_deviance(0.0, 23.0) + 6.78).abs() < 0.01);
        assert!(count_deviance(1.0, 3.0) > -NORMAL_BAND);
        assert_eq!(count_deviance(5.0, 5.0), 0.0);
        // a service busy by day and quiet by night, silent for 3 minutes at noon
        let mut counts: Vec<f64> = (0..90)
            .map(|i| {
                if i < 30 {
                    2.0
                } else {
                    (2.0 + (i - 30) as f64 * 0.8).min(25.0)
                }
            })
            .collect();
        counts.extend([0.0, 0.0, 0.0]);
        let n = counts.len();
        let mut w = one_service(n);
        for (i, c) in counts.iter().enumerate() {
            w.x[[i, F_COUNT]] = *c;
        }
        w.fill_expected_counts();
        assert!(w.expected(3).is_nan(), "too little before it");
        assert_eq!(w.expected(10), 2.0);
        assert_eq!(w.expected(91), 25.0);
        let b = baselines(&w);
        let z = scaled(&w, &b);
        // night and day minutes are normal (a ramp this steep is a rise); the silence is not
        let normal = (0..30).chain(60..90);
        assert!(
            normal.into_iter().all(|i| z[[i, F_COUNT]] == 0.0),
            "{:?}",
            z.column(F_COUNT)
        );
        assert!(z[[91, F_COUNT]] > 2.0, "{}", z[[91, F_COUNT]]);
        // the forest's extra column totals the distances beyond the band
        assert_eq!(z.ncols(), FEATURES.len() + 1);
        let total: f64 = (0..FEATURES.len()).map(|f| z[[91, f]]).sum();
        assert_eq!(z[[91, F_TOTAL_DEVIATION]], total);
        assert_eq!(z[[10, F_TOTAL_DEVIATION]], 0.0);
    }

    #[test]
    fn share_z_is_a_signed_deviance() {
        // 6 errors in 13 lines where 0.4 % is usual: far outside the band
        let z = share_z(6.0 / 13.0, 0.004, 13.0);
        assert!((z - 7.0).abs() < 0.5, "{z}");
        // one line of one client where a fifth is usual: noise
        assert!(share_z(1.0, 0.19, 1.0) < NORMAL_BAND);
        // the usual share is 0, below it is negative, a never-seen share is finite
        assert_eq!(share_z(0.2, 0.2, 100.0), 0.0);
        assert!(share_z(0.0, 0.2, 100.0) < -3.0);
        assert!(share_z(0.5, 0.0, 10.0).is_finite());
    }
}
