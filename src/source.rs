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
    /// (or at end of input). `None` at end of input.
    pub fn next_block(&mut self, target: usize) -> Result<Option<Vec<u8>>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        buf.reserve(target + (target >> 3));
        if buf.len() < target && !self.eof {
            // `read_to_end` reads into the spare capacity as it is, where
            // resizing first would zero the whole block before every read
            // (a 16 MiB memset per block, and 9 ms before the first line of
            // even a small file could be parsed)
            let want = (target - buf.len()) as u64;
            let n = Read::by_ref(&mut self.reader)
                .take(want)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", self.name))?;
            if (n as u64) < want {
                self.eof = true;
            }
        }
        if !self.eof {
            // keep the partial last line for the next block; a block without
            // any newline (one huge line) is returned whole
            if let Some(p) = memchr::memrchr(b'\n', &buf) {
                self.carry.extend_from_slice(&buf[p + 1..]);
                buf.truncate(p + 1);
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(buf))
    }
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
    fn blocks_end_on_newlines_and_cover_everything() {
        let data: Vec<u8> = (0..1000)
            .flat_map(|i| format!("line number {i}\n").into_bytes())
            .chain(b"no newline at end".iter().copied())
            .collect();
        let mut s = Source::from_bytes("t", data.clone());
        let mut all = Vec::new();
        while let Some(b) = s.next_block(100).unwrap() {
            assert!(b.ends_with(b"\n") || b.ends_with(b"end"));
            all.extend(b);
        }
        assert_eq!(all, data);
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
        while let Some(b) = s.next_block(256).unwrap() {
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
