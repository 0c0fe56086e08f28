//! Owns the parse stage of the pipeline: a block of raw bytes is split into
//! line-aligned chunks, each chunk is parsed and template-mined on the rayon
//! pool into its own `LogBatch`, then chunk miners are merged in order into
//! the global miner and template ids rewritten. Pure: no I/O.

use crate::parse::{Format, LineParser};
use crate::record::{Fields, LogBatch};
use crate::template::Miner;
use rayon::prelude::*;

/// Bytes of input per parallel chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// How much of a rejected line is kept in `rejects.raw`.
pub const REJECT_RAW_CAP: usize = 2048;

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub line_no: i64,
    pub reason: String,
    /// The raw line, lossily decoded and capped at `REJECT_RAW_CAP` bytes.
    pub raw: String,
}

/// The parsed form of one block.
#[derive(Debug, Default)]
pub struct ParsedBlock {
    pub batches: Vec<LogBatch>,
    pub rejects: Vec<Reject>,
    /// Lines in the block, blank ones included.
    pub lines_read: u64,
}

impl ParsedBlock {
    pub fn stored(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// Settings the parse stage needs.
#[derive(Debug, Clone)]
pub struct ParseSettings {
    pub format: Format,
    pub year: i64,
    pub max_line_bytes: usize,
}

struct ChunkResult {
    batch: LogBatch,
    rejects: Vec<Reject>,
    miner: Miner,
    lines: u64,
}

fn capped_lossy(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(REJECT_RAW_CAP)];
    String::from_utf8_lossy(cut).into_owned()
}

fn parse_chunk(chunk: &[u8], settings: &ParseSettings, similarity: f64) -> ChunkResult {
    let mut parser = LineParser::new(
        settings.format.clone(),
        settings.year,
        settings.max_line_bytes,
    );
    let est_lines = chunk.len() / 120 + 16;
    let mut batch = LogBatch::with_capacity(est_lines, chunk.len());
    let mut miner = Miner::new(similarity);
    let mut rejects = Vec::new();
    let mut f = Fields::default();
    let mut line_no: i64 = 0;
    let mut start = 0;
    // one check of the whole chunk spares each line its own (a chunk with a
    // bad line checks each line, to reject only that one)
    let clean = simdutf8::basic::from_utf8(chunk).is_ok() && memchr::memchr(0, chunk).is_none();
    while start < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[start..])
            .map(|p| start + p)
            .unwrap_or(chunk.len());
        let raw = &chunk[start..end];
        line_no += 1;
        match parser.parse_checked(raw, &mut f, clean) {
            Ok(true) => {
                let tid = miner.add(f.message.get().unwrap_or(""), f.ts);
                batch.push(line_no, &f);
                batch.template_id.push(tid);
            }
            Ok(false) => {}
            Err(reason) => rejects.push(Reject {
                line_no,
                reason,
                raw: capped_lossy(raw),
            }),
        }
        start = end + 1;
    }
    ChunkResult {
        batch,
        rejects,
        miner,
        lines: line_no as u64,
    }
}

/// Splits `block` into chunks of about `CHUNK_BYTES` that end after a newline.
fn split_chunks(block: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < block.len() {
        let target = (start + CHUNK_BYTES).min(block.len());
        let end = if target == block.len() {
            block.len()
        } else {
            match memchr::memchr(b'\n', &block[target..]) {
                Some(p) => target + p + 1,
                None => block.len(),
            }
        };
        out.push(&block[start..end]);
        start = end;
    }
    out
}

/// Parses a block whose first line is line `first_line_no` (1-based) of its
/// source. Templates are merged into `miner`.
pub fn parse_block(
    block: &[u8],
    first_line_no: i64,
    settings: &ParseSettings,
    miner: &mut Miner,
) -> ParsedBlock {
    let similarity = crate::template::DEFAULT_SIMILARITY;
    let chunks = split_chunks(block);
    let results: Vec<ChunkResult> = chunks
        .par_iter()
        .map(|c| parse_chunk(c, settings, similarity))
        .collect();
    let mut out = ParsedBlock::default();
    let mut offset = first_line_no - 1;
    for mut r in results {
        let map = miner.merge(&r.miner);
        for t in r.batch.template_id.iter_mut() {
            *t = map[*t as usize];
        }
        for l in r.batch.line_no.iter_mut() {
            *l += offset;
        }
        for rej in r.rejects.iter_mut() {
            rej.line_no += offset;
        }
        offset += r.lines as i64;
        out.lines_read += r.lines;
        out.rejects.append(&mut r.rejects);
        out.batches.push(r.batch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(format: Format) -> ParseSettings {
        ParseSettings {
            format,
            year: 2024,
            max_line_bytes: 1 << 20,
        }
    }

    #[test]
    fn line_numbers_rejects_and_templates_across_chunks() {
        let mut text = String::new();
        for i in 0..30_000 {
            if i % 10_000 == 5 {
                text.push_str("{\"msg\": broken\n");
            } else if i % 7 == 0 {
                text.push('\n');
            } else {
                text.push_str(&format!(
                    "{{\"ts\":\"2024-01-01T00:00:00Z\",\"level\":\"info\",\"msg\":\"user {i} logged in\"}}\n"
                ));
            }
        }
        let mut miner = Miner::default();
        let out = parse_block(text.as_bytes(), 101, &settings(Format::Json), &mut miner);
        assert!(out.batches.len() > 1, "should use several chunks");
        assert_eq!(out.lines_read, 30_000);
        let blank = (0..30_000)
            .filter(|i| i % 7 == 0 && i % 10_000 != 5)
            .count();
        assert_eq!(out.rejects.len(), 3);
        assert_eq!(out.rejects[0].line_no, 101 + 5);
        assert_eq!(out.rejects[2].line_no, 101 + 20_005);
        assert!(out.rejects[0].reason.contains("invalid JSON"));
        assert_eq!(out.stored(), 30_000 - 3 - blank);
        // line numbers strictly increase and all lines share one template
        let all: Vec<i64> = out.batches.iter().flat_map(|b| b.line_no.clone()).collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(all[0], 102);
        assert_eq!(miner.len(), 1);
        let ids: Vec<u32> = out
            .batches
            .iter()
            .flat_map(|b| b.template_id.clone())
            .collect();
        assert!(ids.iter().all(|&t| t == ids[0]));
    }

    #[test]
    fn bad_bytes_reject_only_their_line_in_chunks_checked_whole() {
        // ~3.5 MB of plain lines with multi-byte characters: several chunks,
        // one with invalid UTF-8 and one with a NUL byte, the rest clean
        let mut data = Vec::new();
        for i in 0..120_000 {
            match i {
                5_000 => data.extend_from_slice(b"caf\xc3 truncated character\n"),
                80_000 => data.extend_from_slice(b"nul \0 inside\n"),
                _ => data.extend_from_slice(format!("naïve café {i} ✓ done\n").as_bytes()),
            }
        }
        let out = parse_block(&data, 1, &settings(Format::Plain), &mut Miner::default());
        assert!(out.batches.len() > 2, "should use several chunks");
        assert_eq!(out.lines_read, 120_000);
        assert_eq!(out.stored(), 119_998);
        let rejected: Vec<(i64, &str)> = out
            .rejects
            .iter()
            .map(|r| (r.line_no, r.reason.as_str()))
            .collect();
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].0, 5_001);
        assert!(
            rejected[0].1.starts_with("invalid UTF-8 at byte 3"),
            "{rejected:?}"
        );
        assert_eq!(rejected[1], (80_001, "binary data: NUL byte in line"));
        let last = out.batches.last().unwrap();
        assert_eq!(
            last.message.get(last.len() - 1),
            Some("naïve café 119999 ✓ done")
        );
    }

    #[test]
    fn huge_and_binary_lines_are_rejected_not_fatal() {
        let mut data = b"ok line one\n".to_vec();
        data.extend(vec![b'x'; 5 << 20]);
        data.extend(b"\n\xff\xfe\x00garbage\nok line two\n");
        let mut s = settings(Format::Plain);
        s.max_line_bytes = 1 << 20;
        let out = parse_block(&data, 1, &s, &mut Miner::default());
        assert_eq!(out.stored(), 2);
        assert_eq!(out.rejects.len(), 2);
        assert_eq!(out.rejects[0].line_no, 2);
        assert!(out.rejects[0].reason.starts_with("line too long"));
        assert_eq!(out.rejects[0].raw.len(), REJECT_RAW_CAP);
        assert_eq!(out.rejects[1].line_no, 3);
    }
}
