//! Owns the conversion of a `LogBatch` into an Arrow `RecordBatch` whose
//! columns match the `logs` table in order, moving buffers without copying
//! strings a second time.

use crate::record::{Level, LogBatch, StrColumn};
use anyhow::Result;
use arrow::array::{
    make_view, ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, StringViewArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// The null buffer of `n` rows, row `i` valid when `valid(i)`; `None` when
/// every row is. Packs 64 rows per word (`from_iter` appended bit by bit).
fn nulls(n: usize, valid: impl FnMut(usize) -> bool) -> Option<NullBuffer> {
    let bits = BooleanBuffer::collect_bool(n, valid);
    (bits.count_set_bits() < n).then(|| NullBuffer::new(bits))
}

/// Moves a column's buffers into an Arrow array: no copy, no second UTF-8
/// check (`try_new` validated every byte again).
fn str_array(c: StrColumn) -> Result<ArrayRef> {
    let last = c.offsets.last().copied().unwrap_or(0);
    anyhow::ensure!(
        c.offsets.first() == Some(&0) && last as usize == c.data.len(),
        "string column offsets do not span its data"
    );
    let nulls = nulls(c.valid.len(), |i| c.valid[i]);
    // checks that offsets only grow
    let offsets = OffsetBuffer::new(ScalarBuffer::from(c.offsets));
    let values = Buffer::from_vec(c.data.into_bytes());
    // SAFETY: `values` was a `String`, so valid UTF-8, and every offset of a
    // `StrColumn` is the data's length after a whole `&str` was appended,
    // so a character boundary; the offsets span the data (checked above).
    let arr = unsafe { StringArray::new_unchecked(offsets, values, nulls) };
    Ok(Arc::new(arr))
}

fn opt_prim<T: Copy + Default>(v: &[Option<T>]) -> (Vec<T>, Option<NullBuffer>) {
    let vals = v.iter().map(|x| x.unwrap_or_default()).collect();
    (vals, nulls(v.len(), |i| v[i].is_some()))
}

/// One repeated string as a view column: one view, made once, copied into
/// every row (a builder checked and appended each row).
fn repeated(value: &str, n: usize) -> ArrayRef {
    let view = make_view(value.as_bytes(), 0, 0);
    // a view of more than 12 bytes points into buffer 0 at offset 0
    let buffers: Vec<Buffer> = if value.len() > 12 {
        vec![Buffer::from(value.as_bytes())]
    } else {
        Vec::new()
    };
    // SAFETY: `view` describes `value`, valid UTF-8, inline or at offset 0
    // of buffer 0, which holds it.
    let arr = unsafe {
        StringViewArray::new_unchecked(ScalarBuffer::from(vec![view; n]), buffers.into(), None)
    };
    Arc::new(arr)
}

/// The level column as views: each level's name is at most 12 bytes, so its
/// view holds it inline and is made once per level, not per row.
fn level_views(levels: &[Option<Level>]) -> ArrayRef {
    let names = Level::ALL.map(|l| make_view(l.as_str().as_bytes(), 0, 0));
    // `ALL` lists the levels in the order of their discriminants
    let view = |l: Level| names[l as usize];
    let views: Vec<u128> = levels.iter().map(|l| l.map_or(0, view)).collect();
    // SAFETY: every view is an inline view of a level's name (ASCII, at most
    // 12 bytes) or, under a null, the empty view; no view points into a buffer.
    let arr = unsafe {
        StringViewArray::new_unchecked(
            ScalarBuffer::from(views),
            Vec::<Buffer>::new().into(),
            nulls(levels.len(), |i| levels[i].is_some()),
        )
    };
    Arc::new(arr)
}

/// The Arrow schema matching `logs` column for column.
pub fn logs_schema() -> Schema {
    Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("level", DataType::Utf8View, true),
        Field::new("service", DataType::Utf8, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, true),
        Field::new("template_id", DataType::UInt32, true),
        Field::new("status", DataType::Int32, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
        Field::new("client_ip", DataType::Utf8, true),
        Field::new("method", DataType::Utf8, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("source", DataType::Utf8View, true),
        Field::new("line_no", DataType::Int64, true),
        Field::new("ingest_id", DataType::Int64, true),
        // Tagged as Arrow's canonical JSON extension type, DuckDB takes the
        // column as JSON as it stands; untagged, it would cast VARCHAR to
        // JSON, parsing every value again (0.18 CPU-s of 2.64 per 1M lines).
        // Every writer of `extra` produces valid JSON (`Fields::push_extra_*`).
        Field::new("extra", DataType::Utf8, true)
            .with_metadata([("ARROW:extension:name", "arrow.json")]),
    ])
}

/// Converts a batch (all of whose rows come from `source`) into a record batch.
pub fn to_record_batch(b: LogBatch, source: &str, ingest_id: i64) -> Result<RecordBatch> {
    let n = b.len();
    let (ts, ts_n) = opt_prim(&b.ts);
    let ts = TimestampMicrosecondArray::new(ScalarBuffer::from(ts), ts_n);
    let (st, st_n) = opt_prim(&b.status);
    let (lat, lat_n) = opt_prim(&b.latency_ms);
    let (by, by_n) = opt_prim(&b.bytes);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts),
        level_views(&b.level),
        str_array(b.service)?,
        str_array(b.host)?,
        str_array(b.message)?,
        Arc::new(UInt32Array::from(b.template_id)),
        Arc::new(Int32Array::new(ScalarBuffer::from(st), st_n)),
        Arc::new(Float64Array::new(ScalarBuffer::from(lat), lat_n)),
        Arc::new(Int64Array::new(ScalarBuffer::from(by), by_n)),
        str_array(b.client_ip)?,
        str_array(b.method)?,
        str_array(b.path)?,
        match b.sources {
            Some(per_line) => str_array(per_line)?,
            None => repeated(source, n),
        },
        Arc::new(Int64Array::from(b.line_no)),
        Arc::new(Int64Array::from(vec![ingest_id; n])),
        str_array(b.extra)?,
    ];
    let fields: Vec<Field> = logs_schema()
        .fields()
        .iter()
        .zip(&cols)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// The `windows` rows of one detection pass as a record batch.
pub fn windows_batch(
    w: &crate::features::Windows,
    scores: &[f64],
    threshold: f64,
    anoms: &[crate::detect::Anomaly],
    window_us: i64,
) -> Result<RecordBatch> {
    use arrow::array::{BooleanArray, StringBuilder};
    let n = w.len();
    let ts_type = DataType::Timestamp(TimeUnit::Microsecond, None);
    let ts = |v: Vec<i64>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(v)) };
    let reasons: std::collections::HashMap<(&str, i64), &str> = anoms
        .iter()
        .map(|a| ((a.service.as_str(), a.start_us), a.summary.as_str()))
        .collect();
    let mut reason_col = StringBuilder::new();
    for i in 0..n {
        match reasons.get(&(w.service[i].as_str(), w.start[i])) {
            Some(r) => reason_col.append_value(r),
            None => reason_col.append_null(),
        }
    }
    let mut svc = StringBuilder::new();
    for s in &w.service {
        svc.append_value(s);
    }
    let feat = |f: usize| -> ArrayRef {
        Arc::new(Float64Array::from_iter(
            (0..n).map(|i| Some(w.x[[i, f]]).filter(|v| v.is_finite())),
        ))
    };
    let feat_i = |f: usize| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            (0..n).map(|i| w.x[[i, f]] as i64),
        ))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(svc.finish()),
        ts(w.start.clone()),
        ts(w.start.iter().map(|s| s + window_us).collect()),
        Arc::new(Int32Array::from(vec![(window_us / 1_000_000) as i32; n])),
        feat_i(0),
        Arc::new(Int64Array::from(w.errors.clone())),
        Arc::new(Int64Array::from(w.warns.clone())),
        feat(1),
        feat(2),
        feat(3),
        feat(4),
        feat(5),
        feat(6),
        feat(7),
        feat(8),
        feat_i(9),
        feat_i(10),
        feat_i(11),
        feat(12),
        Arc::new(Float64Array::from(scores.to_vec())),
        Arc::new(BooleanArray::from_iter(
            scores.iter().map(|s| Some(*s > threshold)),
        )),
        Arc::new(reason_col.finish()),
    ];
    let names = [
        "service",
        "window_start",
        "window_end",
        "window_secs",
        "count",
        "errors",
        "warns",
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
        "score",
        "is_anomaly",
        "reasons",
    ];
    let fields: Vec<Field> = names
        .iter()
        .zip(&cols)
        .map(|(name, c)| {
            let dt = if *name == "window_start" || *name == "window_end" {
                ts_type.clone()
            } else {
                c.data_type().clone()
            };
            Field::new(*name, dt, true)
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// The Arrow schema of `rejects` rows (`rejects_batch`).
pub fn rejects_schema() -> Schema {
    Schema::new(vec![
        Field::new("source", DataType::Utf8, true),
        Field::new("line_no", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, true),
        Field::new("ingest_id", DataType::Int64, true),
        Field::new("message_id", DataType::Utf8, true),
    ])
}

/// `rejects` rows as a record batch (empty vector when there are none).
pub fn rejects_batch(
    rows: &[crate::store::RejectRow<'_>],
    ingest_id: i64,
) -> Result<Vec<RecordBatch>> {
    use arrow::array::StringBuilder;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut source = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut raw = StringBuilder::new();
    let mut msg = StringBuilder::new();
    for r in rows {
        source.append_value(r.source);
        reason.append_value(r.reason);
        raw.append_value(r.raw);
        msg.append_option(r.message_id);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(source.finish()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.line_no))),
        Arc::new(reason.finish()),
        Arc::new(raw.finish()),
        Arc::new(Int64Array::from(vec![ingest_id; rows.len()])),
        Arc::new(msg.finish()),
    ];
    Ok(vec![RecordBatch::try_new(
        Arc::new(rejects_schema()),
        cols,
    )?])
}

/// The Arrow schema of `templates` rows (`templates_batch`).
pub fn templates_schema() -> Schema {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    Schema::new(vec![
        Field::new("template_id", DataType::UInt32, false),
        Field::new("template", DataType::Utf8, false),
        Field::new("first_seen", ts.clone(), true),
        Field::new("last_seen", ts, true),
        Field::new("count", DataType::Int64, false),
    ])
}

/// `templates` rows of `templates` as a record batch (empty vector when
/// there are none).
pub fn templates_batch(templates: &[&crate::template::Template]) -> Result<Vec<RecordBatch>> {
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            templates.iter().map(|t| t.id),
        )),
        Arc::new(StringArray::from_iter_values(
            templates.iter().map(|t| t.text()),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter(
            templates.iter().map(|t| t.first_seen),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter(
            templates.iter().map(|t| t.last_seen),
        )),
        Arc::new(Int64Array::from_iter_values(
            templates.iter().map(|t| t.count as i64),
        )),
    ];
    Ok(vec![RecordBatch::try_new(
        Arc::new(templates_schema()),
        cols,
    )?])
}

/// `ingested_messages` rows: (message key, lines stored).
pub fn messages_batch(rows: &[(String, i64)], ingest_id: i64) -> Result<Vec<RecordBatch>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
        Arc::new(Int64Array::from(vec![ingest_id; rows.len()])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
    ];
    let fields: Vec<Field> = ["message_id", "ingest_id", "lines"]
        .iter()
        .zip(&cols)
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
        .collect();
    Ok(vec![RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols,
    )?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Fields;
    use arrow::array::Array;

    fn batch(levels: &[Option<Level>]) -> LogBatch {
        let mut b = LogBatch::with_capacity(levels.len(), 64);
        for (i, l) in levels.iter().enumerate() {
            let mut f = Fields {
                level: *l,
                ..Default::default()
            };
            f.message.set("hello");
            b.push(i as i64 + 1, &f);
            b.template_id.push(0);
        }
        b
    }

    fn views(rb: &RecordBatch, column: &str) -> Vec<Option<String>> {
        let a = rb
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<StringViewArray>())
            .expect("a view column");
        a.to_data().validate_full().expect("valid views");
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect()
    }

    #[test]
    fn level_and_source_views_hold_their_values() {
        let mut levels: Vec<Option<Level>> = Level::ALL.iter().copied().map(Some).collect();
        levels.push(None);
        for source in ["a.log", "/var/log/a-rather-long-name.log"] {
            let rb = to_record_batch(batch(&levels), source, 7).expect("record batch");
            let want: Vec<Option<String>> = levels
                .iter()
                .map(|l| l.map(|l| l.as_str().to_string()))
                .collect();
            assert_eq!(views(&rb, "level"), want);
            assert_eq!(
                views(&rb, "source"),
                vec![Some(source.to_string()); levels.len()]
            );
        }
        for (i, l) in Level::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "ALL must follow the discriminants");
        }
    }

    #[test]
    fn nulls_mark_exactly_the_missing_values_across_words() {
        let mut b = LogBatch::with_capacity(130, 64);
        for i in 0..130i64 {
            let mut f = Fields::default();
            f.message.set("hello");
            if i % 7 != 0 {
                f.host.set("web-1");
            }
            f.status = (i % 3 != 0).then_some(200);
            b.push(i + 1, &f);
            b.template_id.push(0);
        }
        let rb = to_record_batch(b, "a.log", 1).expect("record batch");
        let host = rb.column_by_name("host").expect("host");
        let status = rb.column_by_name("status").expect("status");
        for i in 0..130 {
            assert_eq!(host.is_valid(i), i % 7 != 0, "host row {i}");
            assert_eq!(status.is_valid(i), i % 3 != 0, "status row {i}");
        }
        assert_eq!(host.null_count(), 19);
        // a column without a missing value carries no null buffer at all
        assert!(rb
            .column_by_name("message")
            .expect("message")
            .nulls()
            .is_none());
        assert_eq!(rb.column_by_name("ts").expect("ts").null_count(), 130);
    }
}
