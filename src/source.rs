//! Owns reading input: a path, a `.gz` file, or `-` for stdin, as a stream of
//! large blocks that end on a line boundary, so any input size runs in
//! bounded memory. Also the content fingerprint used to refuse double loads.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// An opened input.
pub struct Source {
    /// How the source is named in `logs.source` and `runs.source`.
    pub name: String,
    /// Size on disk (compressed size for `.gz`); `None` for stdin.
    pub size_on_disk: Option<u64>,
    reader: Box<dyn Read + Send>,
    carry: Vec<u8>,
    /// A finished block's buffer, reused for the next block so its pages
    /// stay mapped (a fresh 100 MB buffer costs ~25k page faults to touch).
    spare: Vec<u8>,
    eof: bool,
}

impl Source {
    /// Opens `path` (`-` = stdin). Errors name the path and what is wrong.
    pub fn open(path: &str) -> Result<Source> {
        if path == "-" {
            return Ok(Source {
                name: "stdin".into(),
                size_on_disk: None,
                reader: Box::new(std::io::stdin()),
                carry: Vec::new(),
                spare: Vec::new(),
                eof: false,
            });
        }
        let p = Path::new(path);
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {path}"))?;
        if meta.is_dir() {
            bail!("{path} is a directory, not a log file");
        }
        let file = File::open(p).with_context(|| format!("cannot open {path}"))?;
        let name = std::fs::canonicalize(p)
            .map(|c| c.display().to_string())
            .unwrap_or_else(|_| path.to_string());
        let reader: Box<dyn Read + Send> = if path.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                file,
            )))
        } else {
            Box::new(file)
        };
        Ok(Source {
            name,
            size_on_disk: Some(meta.len()),
            reader,
            carry: Vec::new(),
            spare: Vec::new(),
            eof: false,
        })
    }

    /// Builds a source over bytes in memory (tests, AMQP message bodies).
    pub fn from_bytes(name: &str, data: Vec<u8>) -> Source {
        Source {
            name: name.to_string(),
            size_on_disk: Some(data.len() as u64),
            reader: Box::new(std::io::Cursor::new(data)),
            carry: Vec::new(),
            spare: Vec::new(),
            eof: false,
        }
    }

    /// Hands a block returned by `next_block` back for reuse.
    pub fn recycle(&mut self, block: Vec<u8>) {
        self.spare = block;
    }

    /// Reads the next block of about `target` bytes ending after a newline
    /// (or at end of input). A line longer than `target` is read whole, up
    /// to `max` bytes (a block holding no newline is returned cut at `max`).
    /// `None` at end of input.
    pub fn next_block(&mut self, target: usize, max: usize) -> Result<Option<Vec<u8>>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut want = target.max(1);
        buf.reserve(want + (want >> 3));
        loop {
            if buf.len() < want && !self.eof {
                // `read_to_end` reads into the spare capacity as it is, where
                // resizing first would zero the whole block before every read
                // (a 16 MiB memset per block, and 9 ms before the first line of
                // even a small file could be parsed)
                let short = (want - buf.len()) as u64;
                let n = Read::by_ref(&mut self.reader)
                    .take(short)
                    .read_to_end(&mut buf)
                    .with_context(|| format!("reading {}", self.name))?;
                if (n as u64) < short {
                    self.eof = true;
                }
            }
            if self.eof {
                break;
            }
            // keep the partial last line for the next block
            if let Some(p) = memchr::memrchr(b'\n', &buf) {
                self.carry.extend_from_slice(&buf[p + 1..]);
                buf.truncate(p + 1);
                break;
            }
            if want >= max {
                // no newline in `max` bytes: one huge line, returned cut
                break;
            }
            want = next_block_target(want, max);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(buf))
    }
}

/// Bytes the first block of a source is read with: more than the MiB the
/// fingerprint hashes, and far less than a whole block, so the first lines
/// reach DuckDB soon after the start instead of after a 16 MiB block.
pub const FIRST_BLOCK_BYTES: usize = 2 << 20;

/// The size to read the block after one read with `prev` bytes: twice as
/// many, up to `max`. Starting from `FIRST_BLOCK_BYTES.min(max)`, a 16 MiB
/// `max` is reached after 2, 4 and 8 MiB.
pub fn next_block_target(prev: usize, max: usize) -> usize {
    prev.saturating_mul(2).min(max)
}

/// FNV-1a 64 of a byte slice: stable across builds, used for fingerprints.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Identifies content: hash of the first MiB of decoded text plus the size
/// on disk. The same file analysed twice has the same fingerprint.
pub fn fingerprint(first_block: &[u8], size_on_disk: Option<u64>) -> String {
    let head = &first_block[..first_block.len().min(1 << 20)];
    format!("{:016x}-{}", fnv64(head), size_on_disk.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_targets_double_up_to_the_configured_size() {
        let max = 16 << 20;
        let mut t = FIRST_BLOCK_BYTES.min(max);
        let mut seen = vec![t];
        while t < max {
            t = next_block_target(t, max);
            seen.push(t);
        }
        assert_eq!(seen, [2 << 20, 4 << 20, 8 << 20, 16 << 20]);
        assert_eq!(next_block_target(max, max), max);
        assert_eq!(next_block_target(1 << 16, 1 << 16), 1 << 16);
        assert_eq!(next_block_target(usize::MAX, usize::MAX), usize::MAX);
    }

    // the first block holds the whole MiB the fingerprint hashes
    const _: () = assert!(FIRST_BLOCK_BYTES > 1 << 20);

    #[test]
    fn blocks_end_on_newlines_and_cover_everything() {
        let data: Vec<u8> = (0..1000)
            .flat_map(|i| format!("line number {i}\n").into_bytes())
            .chain(b"no newline at end".iter().copied())
            .collect();
        let mut s = Source::from_bytes("t", data.clone());
        let mut all = Vec::new();
        while let Some(b) = s.next_block(100, 100).unwrap() {
            assert!(b.ends_with(b"\n") || b.ends_with(b"end"));
            all.extend(b);
        }
        assert_eq!(all, data);
    }

    #[test]
    fn lines_longer_than_the_target_are_read_whole_up_to_the_maximum() {
        let long = "y".repeat(700);
        let huge = "z".repeat(3000);
        let data = format!("a\n{long}\nb\n{huge}\nc\n").into_bytes();
        let mut s = Source::from_bytes("t", data.clone());
        let mut blocks = Vec::new();
        while let Some(b) = s.next_block(100, 1000).unwrap() {
            blocks.push(String::from_utf8(b).unwrap());
        }
        assert_eq!(blocks.concat().into_bytes(), data);
        // the 700-byte line comes whole, after the line before it
        assert_eq!(blocks[0], "a\n");
        assert_eq!(blocks[1], format!("{long}\nb\n"));
        // the 3000-byte line has no newline within 1000 bytes: cut there
        assert_eq!(blocks[2].len(), 1000);
        assert!(!blocks[2].contains('\n'));
        assert!(blocks[3..].iter().all(|b| b.len() <= 1000));
        assert!(blocks.last().unwrap().ends_with("\nc\n"));
    }

    /// Hands out at most 7 bytes per read, as a pipe may.
    struct Trickle(std::io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(7);
            self.0.read(&mut out[..n])
        }
    }

    #[test]
    fn short_reads_fill_whole_blocks_and_recycled_buffers_keep_nothing_old() {
        let data: Vec<u8> = (0..500)
            .flat_map(|i| format!("{}\n", "x".repeat(i % 37)).into_bytes())
            .collect();
        let mut s = Source::from_bytes("t", Vec::new());
        s.reader = Box::new(Trickle(std::io::Cursor::new(data.clone())));
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = s.next_block(256, 256).unwrap() {
            assert!(b.ends_with(b"\n"));
            sizes.push(b.len());
            all.extend_from_slice(&b);
            s.recycle(b);
        }
        assert_eq!(all, data);
        // every block but the last holds at least the target less one line
        let (_, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|&n| n > 256 - 37), "{sizes:?}");
    }

    #[test]
    fn directory_and_missing_file_errors_name_the_path() {
        let e = Source::open("/definitely/not/here.log").err().unwrap();
        assert!(format!("{e:#}").contains("/definitely/not/here.log"));
        let e = Source::open("/tmp").err().unwrap();
        assert!(format!("{e:#}").contains("directory"));
    }
}
