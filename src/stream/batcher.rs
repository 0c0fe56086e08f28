//! Owns turning a micro-batch of AMQP messages into storable columns: every
//! line of every message parsed and template-mined, keyed by
//! `amqp:<queue>/<message key>` and its position in the message (the delivery
//! key that makes redeliveries idempotent); too-large messages parked as
//! rejects. Pure: no broker, no database.

use crate::ingest::REJECT_RAW_CAP;
use crate::parse::{detect, Format, FormatChoice, LineParser};
use crate::record::{Fields, LogBatch, StrColumn};
use crate::template::Miner;
use rayon::prelude::*;

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Message {
    /// `message_id` property, or a content hash when the publisher set none.
    pub key: String,
    pub body: Vec<u8>,
}

impl Message {
    /// The delivery key of a message: its id, else `sha-<fnv64 of the body>`.
    pub fn key_for(message_id: Option<&str>, body: &[u8]) -> String {
        match message_id {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => format!("fnv-{:016x}", crate::source::fnv64(body)),
        }
    }
}

/// A rejected line of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReject {
    pub source: String,
    pub line_no: i64,
    pub reason: String,
    pub raw: String,
    pub message_key: String,
}

/// The storable form of a micro-batch.
#[derive(Debug, Default)]
pub struct StreamBatch {
    pub lines: LogBatch,
    pub rejects: Vec<StreamReject>,
    /// (message key, lines stored from it)
    pub messages: Vec<(String, i64)>,
    pub format: Option<String>,
}

/// Parses and mines a micro-batch.
pub fn build(
    messages: &[Message],
    queue: &str,
    choice: &FormatChoice,
    year: i64,
    max_line_bytes: usize,
    max_message_bytes: usize,
    miner: &mut Miner,
) -> StreamBatch {
    let format = match choice {
        FormatChoice::Fixed(f) => f.clone(),
        FormatChoice::Auto => {
            let sample: Vec<String> = messages
                .iter()
                .filter(|m| m.body.len() <= max_message_bytes)
                .flat_map(|m| {
                    String::from_utf8_lossy(&m.body[..m.body.len().min(64 << 10)])
                        .lines()
                        .take(64)
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .take(64)
                .collect();
            let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
            if refs.is_empty() {
                Format::Plain
            } else {
                detect(&refs, year)
            }
        }
    };
    // Parse groups of messages on the rayon pool, each with its own miner,
    // then merge the miners in order (as `ingest::parse_block` does for files).
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    let groups = if total < 256 << 10 {
        1
    } else {
        (rayon::current_num_threads() * 2)
            .min(messages.len())
            .max(1)
    };
    let per_group = total.div_ceil(groups).max(1);
    let mut ranges = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        acc += m.body.len();
        if acc >= per_group {
            ranges.push(start..i + 1);
            start = i + 1;
            acc = 0;
        }
    }
    if start < messages.len() {
        ranges.push(start..messages.len());
    }
    let parts: Vec<(StreamBatch, Miner)> = ranges
        .into_par_iter()
        .map(|r| {
            let mut local = Miner::new(crate::template::DEFAULT_SIMILARITY);
            let part = build_group(
                &messages[r],
                queue,
                &format,
                year,
                max_line_bytes,
                max_message_bytes,
                &mut local,
            );
            (part, local)
        })
        .collect();
    let mut out = StreamBatch {
        format: Some(format.name()),
        ..Default::default()
    };
    out.lines = LogBatch::with_capacity(messages.len(), total);
    let mut sources = StrColumn::default();
    for (mut part, local) in parts {
        let map = miner.merge(&local);
        for t in part.lines.template_id.iter_mut() {
            *t = map[*t as usize];
        }
        if let Some(src) = &part.lines.sources {
            sources.extend(src);
        }
        out.lines.extend(&part.lines);
        out.rejects.append(&mut part.rejects);
        out.messages.append(&mut part.messages);
    }
    out.lines.sources = Some(sources);
    out
}

/// Parses one group of messages with `miner` (template ids local to it).
fn build_group(
    messages: &[Message],
    queue: &str,
    format: &Format,
    year: i64,
    max_line_bytes: usize,
    max_message_bytes: usize,
    miner: &mut Miner,
) -> StreamBatch {
    let mut out = StreamBatch::default();
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    out.lines = LogBatch::with_capacity(messages.len(), total);
    let mut sources = StrColumn::with_capacity(messages.len(), messages.len() * 32);
    let mut parser = LineParser::new(format.clone(), year, max_line_bytes);
    let mut f = Fields::default();
    for m in messages {
        let source = format!("amqp:{queue}/{}", m.key);
        if m.body.len() > max_message_bytes {
            out.rejects.push(StreamReject {
                source,
                line_no: 0,
                reason: format!(
                    "message too large: {} bytes (limit {}, stream.max_message_bytes); parked, not parsed",
                    m.body.len(),
                    max_message_bytes
                ),
                raw: String::from_utf8_lossy(&m.body[..m.body.len().min(REJECT_RAW_CAP)])
                    .into_owned(),
                message_key: m.key.clone(),
            });
            out.messages.push((m.key.clone(), 0));
            continue;
        }
        let mut stored = 0;
        let body = m.body.strip_suffix(b"\n").unwrap_or(&m.body);
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line_no = i as i64 + 1;
            match parser.parse(raw, &mut f) {
                Ok(true) => {
                    let tid = miner.add(f.message.get().unwrap_or(""), f.ts);
                    out.lines.push(line_no, &f);
                    out.lines.template_id.push(tid);
                    sources.push(Some(&source));
                    stored += 1;
                }
                Ok(false) => {}
                Err(reason) => out.rejects.push(StreamReject {
                    source: source.clone(),
                    line_no,
                    reason,
                    raw: String::from_utf8_lossy(&raw[..raw.len().min(REJECT_RAW_CAP)])
                        .into_owned(),
                    message_key: m.key.clone(),
                }),
            }
        }
        out.messages.push((m.key.clone(), stored));
    }
    out.lines.sources = Some(sources);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(key: &str, body: &[u8]) -> Message {
        Message {
            key: key.into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn lines_keyed_by_message_and_position() {
        let msgs = [
            msg("m1", b"{\"ts\":\"2026-11-01T00:00:00Z\",\"level\":\"info\",\"msg\":\"a 1\"}\n{\"msg\":\"b\"}\n"),
            msg("m2", b"{\"msg\":\"a 2\"}\nnot json"),
            msg("big", &[b'x'; 120]),
        ];
        let mut miner = Miner::default();
        let b = build(
            &msgs,
            "q",
            &FormatChoice::Auto,
            2026,
            1 << 20,
            90,
            &mut miner,
        );
        assert_eq!(b.format.as_deref(), Some("json"));
        assert_eq!(b.lines.len(), 3);
        let src = b.lines.sources.as_ref().unwrap();
        assert_eq!(src.get(0), Some("amqp:q/m1"));
        assert_eq!(src.get(2), Some("amqp:q/m2"));
        assert_eq!(b.lines.line_no, [1, 2, 1]);
        assert_eq!(b.lines.template_id[0], b.lines.template_id[2]);
        assert_eq!(b.rejects.len(), 2);
        assert_eq!(
            (b.rejects[0].line_no, b.rejects[0].message_key.as_str()),
            (2, "m2")
        );
        assert!(b.rejects[1].reason.starts_with("message too large"));
        assert_eq!(
            b.messages,
            [("m1".into(), 2), ("m2".into(), 1), ("big".into(), 0)]
        );
    }

    #[test]
    fn parallel_groups_match_one_group() {
        let msgs: Vec<Message> = (0..2000)
            .map(|i| {
                msg(
                    &format!("k{i}"),
                    format!(
                        "{{\"level\":\"info\",\"msg\":\"user {i} logged in from {}\"}}\n{{\"msg\":\"cache miss {i}\"}}",
                        "x".repeat(200)
                    )
                    .as_bytes(),
                )
            })
            .collect();
        let mut m1 = Miner::default();
        let b = build(
            &msgs,
            "q",
            &FormatChoice::Auto,
            2026,
            1 << 20,
            1 << 20,
            &mut m1,
        );
        assert_eq!(b.lines.len(), 4000);
        assert_eq!(b.messages.len(), 2000);
        assert_eq!(
            b.lines.sources.as_ref().unwrap().get(3999),
            Some("amqp:q/k1999")
        );
        assert_eq!(m1.len(), 2);
        let ids: std::collections::HashSet<u32> = b.lines.template_id.iter().copied().collect();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn keys_fall_back_to_content_hash() {
        assert_eq!(Message::key_for(Some("id-7"), b"x"), "id-7");
        let a = Message::key_for(None, b"same");
        assert_eq!(a, Message::key_for(Some(""), b"same"));
        assert_ne!(a, Message::key_for(None, b"other"));
    }
}
