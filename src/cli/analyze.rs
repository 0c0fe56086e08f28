//! Owns `logsentry analyze`: reads each file block by block, parses and mines
//! templates in parallel on a parser thread, streams the lines of each file
//! into DuckDB with one INSERT while it parses (the file's run row, lines,
//! rejects, totals and templates in one transaction), starts parsing the
//! first file while DuckDB creates a new database, refuses to load the same
//! content twice (unless `--replace`), and prints a summary (text, or JSON
//! with `--json`).

use crate::config::Config;
use crate::detect::Scope;
use crate::features::{BatchLines, FeatureInput, LinesCollector};
use crate::ingest::{parse_block, ParseSettings, Reject};
use crate::parse::time::format_seconds;
use crate::parse::{detect, Format, FormatChoice};
use crate::record::LogBatch;
use crate::source::{fingerprint, next_block_target, Source, FIRST_BLOCK_BYTES};
use crate::store::{arrow_batch, FileLoad, NewRun, RunTotals, Store};
use crate::template::{Miner, DEFAULT_SIMILARITY};
use anyhow::Result;
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchIterator};
use clap::Args;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

/// Load log files into DuckDB and summarise them.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  logsentry analyze app.log\n  logsentry analyze access.log.gz --format combined --db web.duckdb\n  zcat old.log.gz | logsentry analyze - --json\n  logsentry analyze svc.log --format 'pattern:<ts> <level> <component>: <message>'"
)]
pub struct AnalyzeArgs {
    /// Log files; `-` reads stdin; `.gz` is decompressed.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Database file (default: config `db`, logsentry.duckdb).
    #[arg(long)]
    pub db: Option<String>,
    /// auto | json | logfmt | combined | syslog | plain | regex:RE | pattern:P
    #[arg(long, default_value = "auto")]
    pub format: FormatChoice,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Load a file again even if the same content was loaded before (the
    /// earlier copy is deleted first).
    #[arg(long)]
    pub replace: bool,
    /// Only load; skip features and anomaly detection.
    #[arg(long)]
    pub no_detect: bool,
    #[command(flatten)]
    pub detect: super::detect::DetectOpts,
}

/// What happened to one input.
#[derive(Debug, Serialize, Default)]
pub struct FileSummary {
    pub source: String,
    pub format: Option<String>,
    pub run_id: Option<i64>,
    pub lines_read: u64,
    pub lines_stored: u64,
    pub lines_rejected: u64,
    pub bytes_read: u64,
    /// Set when this content was loaded before and skipped.
    pub already_loaded: Option<String>,
    /// The earlier run holding this content, when skipped.
    pub prior_run_id: Option<i64>,
    pub error: Option<String>,
    /// The time span and services of the lines stored.
    #[serde(skip)]
    seen: Seen,
}

/// The time span and services of lines, for the summary: gathered from
/// each batch while parsing instead of read back from DuckDB.
#[derive(Debug, Default)]
struct Seen {
    first_us: Option<i64>,
    last_us: Option<i64>,
    /// Each line's service, else its host, else `-`.
    services: BTreeSet<String>,
}

impl Seen {
    fn of(b: &LogBatch) -> Seen {
        let mut names: ahash::AHashSet<&str> = ahash::AHashSet::new();
        // lines of one service often come together: skip the set for them
        let mut last = None;
        for i in 0..b.len() {
            let name = b.service.get(i).or_else(|| b.host.get(i)).unwrap_or("-");
            if last != Some(name) {
                names.insert(name);
                last = Some(name);
            }
        }
        Seen {
            first_us: b.ts.iter().flatten().min().copied(),
            last_us: b.ts.iter().flatten().max().copied(),
            services: names.into_iter().map(str::to_string).collect(),
        }
    }

    fn add(&mut self, other: Seen) {
        self.first_us = self.first_us.into_iter().chain(other.first_us).min();
        self.last_us = self.last_us.into_iter().chain(other.last_us).max();
        self.services.extend(other.services);
    }
}

/// The `analyze` summary (also its `--json` output).
#[derive(Debug, Serialize, Default)]
pub struct Summary {
    pub db: String,
    pub files: Vec<FileSummary>,
    pub lines_read: u64,
    pub lines_stored: u64,
    pub lines_rejected: u64,
    pub bytes_read: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub services: Vec<String>,
    pub formats: Vec<String>,
    pub templates_total: usize,
    pub templates_new: usize,
    pub seconds: f64,
    pub lines_per_sec: f64,
    pub mb_per_sec: f64,
    /// Anomalies and rare lines of the loaded content (absent with --no-detect).
    #[serde(flatten)]
    pub detection: Option<crate::detect::Detection>,
    /// The window-feature input of every line stored by this run, kept
    /// while loading (see `features::BatchLines`); `None` with --no-detect,
    /// or when a batch's columns could not be kept.
    #[serde(skip)]
    pub loaded_lines: Option<FeatureInput>,
}

fn progress_bar(total: Option<u64>, name: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(name.to_string());
    Some(pb)
}

/// A `logs` record batch for the streamed INSERT, or why it could not be made.
type ArrowBatch = Result<RecordBatch, ArrowError>;

/// Record batches (of ~1 MiB of input each) queued between the parser and
/// DuckDB: enough to keep both busy, few enough to bound memory (~40 MB).
const IN_FLIGHT_BATCHES: usize = 32;

/// Reads `src` block by block from `first` (read with `first_target`
/// bytes) on, each block twice the last up to `block_bytes`, parses and
/// mines each block on the rayon pool (with `out.miner`), and sends its
/// lines as `logs` record batches to `tx` until the input ends or the
/// receiver is gone. Counts, time span and services go to `out.sum`,
/// rejected lines to `out.rejects`, and, when kept, each batch's feature
/// columns to `out.kept` (`None` after a batch whose columns could not be
/// kept). A read error ends the stream (the lines sent so far are still
/// stored) and is returned.
#[allow(clippy::too_many_arguments)]
fn produce_batches(
    src: &mut Source,
    first: Vec<u8>,
    first_target: usize,
    settings: &ParseSettings,
    block_bytes: usize,
    run_id: i64,
    tx: SyncSender<ArrowBatch>,
    out: &mut Parsed,
    pb: Option<&indicatif::ProgressBar>,
) -> Result<()> {
    let mut next_line = 1i64;
    let mut target = first_target;
    let mut block = Some(first);
    while let Some(b) = block.take() {
        let t_parse = Instant::now();
        let mut parsed = parse_block(&b, next_line, settings, &mut out.miner);
        let t_arrow = Instant::now();
        let stored = parsed.stored() as u64;
        let keeping = out.kept.is_some();
        let batches: Vec<(ArrowBatch, Seen, Option<Result<BatchLines>>)> =
            std::mem::take(&mut parsed.batches)
                .into_par_iter()
                .filter(|lb| !lb.is_empty())
                .map(|lb| {
                    let lines = keeping.then(|| BatchLines::of(&lb));
                    let seen = Seen::of(&lb);
                    let rb = arrow_batch::to_record_batch(lb, &src.name, run_id)
                        .map_err(|e| ArrowError::ExternalError(e.into()));
                    (rb, seen, lines)
                })
                .collect();
        tracing::debug!(
            bytes = b.len(),
            parse_ms = (t_arrow - t_parse).as_millis() as u64,
            arrow_ms = t_arrow.elapsed().as_millis() as u64,
            "block"
        );
        next_line += parsed.lines_read as i64;
        let sum = &mut out.sum;
        sum.lines_read += parsed.lines_read;
        sum.lines_stored += stored;
        sum.lines_rejected += parsed.rejects.len() as u64;
        sum.bytes_read += b.len() as u64;
        out.rejects.append(&mut parsed.rejects);
        drop(parsed);
        for (batch, seen, lines) in batches {
            match (out.kept.as_mut(), lines) {
                (Some(k), Some(Ok(l))) => k.push(l),
                (Some(_), Some(Err(e))) => {
                    tracing::debug!("detection will read the lines back from DuckDB: {e:#}");
                    out.kept = None;
                }
                _ => {}
            }
            out.sum.seen.add(seen);
            if tx.send(batch).is_err() {
                // DuckDB stopped reading: its error is reported by the caller
                return Ok(());
            }
        }
        if let Some(pb) = pb {
            pb.inc(b.len() as u64);
        }
        src.recycle(b);
        target = next_block_target(target, block_bytes);
        block = src.next_block(target, block_bytes)?;
    }
    Ok(())
}

/// A file opened and its first block read, before anything is stored.
struct Input {
    src: Source,
    first: Vec<u8>,
    /// The size the first block was read with.
    first_target: usize,
    fp: String,
    format: Format,
}

/// A source opened: its first block and the rest, or that it is empty.
enum Opened {
    Input(Input),
    /// The name of an empty source.
    Empty(String),
}

impl Input {
    /// What the `runs` row of its load says about it.
    fn file_run(&self) -> FileRun {
        FileRun {
            source: self.src.name.clone(),
            fp: self.fp.clone(),
            format: self.format.name(),
        }
    }

    /// Opens `path`, reads its first block and settles its format
    /// (`--format`, or detected from its first lines).
    fn open(path: &str, args: &AnalyzeArgs, cfg: &Config, year: i64) -> Result<Opened> {
        let mut src = Source::open(path)?;
        // a small first block: DuckDB starts storing while later blocks are read
        let first_target = FIRST_BLOCK_BYTES.min(cfg.ingest.block_bytes);
        let Some(first) = src.next_block(first_target, cfg.ingest.block_bytes)? else {
            return Ok(Opened::Empty(src.name));
        };
        let fp = fingerprint(&first, src.size_on_disk);
        let format = match &args.format {
            FormatChoice::Fixed(f) => f.clone(),
            FormatChoice::Auto => {
                let head = &first[..first.len().min(64 << 10)];
                let text = String::from_utf8_lossy(head);
                let sample: Vec<&str> = text.lines().take(64).collect();
                detect(&sample, year)
            }
        };
        Ok(Opened::Input(Input {
            src,
            first,
            first_target,
            fp,
            format,
        }))
    }
}

/// What a parser thread hands back when its input ends.
struct Parsed {
    /// A read error, which ended the input early.
    read: Result<()>,
    /// The counts of what was read, stored and rejected.
    sum: FileSummary,
    rejects: Vec<Reject>,
    /// The feature columns of the lines sent, when kept (see `produce_batches`).
    kept: Option<LinesCollector>,
    miner: Miner,
}

/// A file being parsed on its own thread, which sends its lines as `logs`
/// record batches for run `run_id` down a channel (see `produce_batches`).
struct Parser {
    thread: std::thread::JoinHandle<Parsed>,
    run_id: i64,
    file: FileRun,
    pb: Option<indicatif::ProgressBar>,
    /// The templates as they were before this file, for a rollback.
    miner_before: Miner,
}

impl Parser {
    /// Starts parsing `input` (whose run is `file`) with `miner` on a new
    /// thread; batches go to `tx`.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        input: Input,
        file: FileRun,
        path: &str,
        miner: Miner,
        run_id: i64,
        keep: bool,
        cfg: &Config,
        year: i64,
        tx: SyncSender<ArrowBatch>,
    ) -> Parser {
        let Input {
            mut src,
            first,
            first_target,
            format,
            ..
        } = input;
        let pb = progress_bar(
            if path.ends_with(".gz") {
                None
            } else {
                src.size_on_disk
            },
            &src.name,
        );
        let settings = ParseSettings {
            format,
            year,
            max_line_bytes: cfg.ingest.max_line_bytes,
        };
        let block_bytes = cfg.ingest.block_bytes;
        let miner_before = miner.clone();
        let thread_pb = pb.clone();
        // the summary names the file as its run row does
        let sum = FileSummary {
            source: file.source.clone(),
            format: Some(file.format.clone()),
            run_id: Some(run_id),
            ..Default::default()
        };
        let thread = std::thread::spawn(move || {
            let mut parsed = Parsed {
                read: Ok(()),
                sum,
                rejects: Vec::new(),
                kept: keep.then(LinesCollector::default),
                miner,
            };
            parsed.read = produce_batches(
                &mut src,
                first,
                first_target,
                &settings,
                block_bytes,
                run_id,
                tx,
                &mut parsed,
                thread_pb.as_ref(),
            );
            parsed
        });
        Parser {
            thread,
            run_id,
            file,
            pb,
            miner_before,
        }
    }

    /// Waits for the thread to end, once its channel is gone (it learns
    /// so at its next batch).
    fn stop(self) {
        let _ = self.thread.join();
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
    }
}

/// What the `runs` row of a file's load says about the file.
struct FileRun {
    source: String,
    fp: String,
    format: String,
}

impl FileRun {
    fn new_run(&self) -> NewRun<'_> {
        NewRun {
            kind: "analyze",
            source: &self.source,
            fingerprint: Some(&self.fp),
            format: &self.format,
        }
    }
}

/// The channel between a parser thread and DuckDB: at most
/// `IN_FLIGHT_BATCHES` batches wait in it.
fn lines_channel() -> (
    SyncSender<ArrowBatch>,
    std::sync::mpsc::Receiver<ArrowBatch>,
) {
    std::sync::mpsc::sync_channel(IN_FLIGHT_BATCHES)
}

/// The `logs` record batches from a parser thread as DuckDB reads them.
fn lines_reader(
    rx: std::sync::mpsc::Receiver<ArrowBatch>,
) -> Box<dyn arrow::record_batch::RecordBatchReader + Send> {
    Box::new(RecordBatchIterator::new(
        rx,
        std::sync::Arc::new(arrow_batch::logs_schema()),
    ))
}

/// Loads one source into the store. Errors before loading starts are returned;
/// an error while loading is set in the summary, beside the counts so far.
/// With `keep`, the feature columns of the lines stored are added to it
/// (see `produce_batches`).
fn load_one(
    store: &Store,
    miner: &mut Miner,
    path: &str,
    args: &AnalyzeArgs,
    cfg: &Config,
    year: i64,
    keep: &mut Option<LinesCollector>,
) -> Result<FileSummary> {
    let input = match Input::open(path, args, cfg, year)? {
        Opened::Input(input) => input,
        Opened::Empty(source) => {
            return Ok(FileSummary {
                source,
                ..Default::default()
            })
        }
    };
    let content = store.runs_of_content(&input.fp)?;
    if let Some(prior) = content.loaded {
        if !args.replace {
            return Ok(FileSummary {
                source: input.src.name,
                already_loaded: Some(format!(
                    "already loaded as run {} from {} at {} ({} lines); use --replace to load it again",
                    prior.run_id, prior.source, prior.finished_at, prior.lines_stored
                )),
                prior_run_id: Some(prior.run_id),
                ..Default::default()
            });
        }
    }
    // drop earlier copies: replaced ones, and unfinished runs of a crash
    for old in content.run_ids {
        for (template_id, n) in store.delete_run(old)? {
            miner.forget(template_id, n as u64);
        }
    }
    let (tx, rx) = lines_channel();
    let file = input.file_run();
    let load = store.begin_file_load(&file.new_run(), lines_reader(rx))?;
    let taken = std::mem::take(miner);
    let parser = Parser::spawn(
        input,
        file,
        path,
        taken,
        load.run_id,
        keep.is_some(),
        cfg,
        year,
        tx,
    );
    store_parsed(store, load, parser, miner, keep)
}

/// Stores what `parser` sends through `load` (whose lines reader is the
/// parser's channel), then its rejects, totals and templates, and gives the
/// templates back to `miner`. A read error marks the run failed (the lines
/// before it are stored); a failed INSERT stores nothing of the file and
/// records a failed run.
fn store_parsed(
    store: &Store,
    load: FileLoad<'_>,
    parser: Parser,
    miner: &mut Miner,
    keep: &mut Option<LinesCollector>,
) -> Result<FileSummary> {
    // a failed INSERT drops the load (rolls it back), which releases the
    // reader, so the parser stops sending before it is joined
    let load = match load.insert_lines() {
        Ok(()) => Ok(load),
        Err(e) => {
            drop(load);
            Err(e.context(format!("storing lines of {}", parser.file.source)))
        }
    };
    let parsed = parser.thread.join();
    if let Some(pb) = &parser.pb {
        pb.finish_and_clear();
    }
    let Ok(parsed) = parsed else {
        *miner = parser.miner_before;
        anyhow::bail!(
            "the parser thread panicked while reading {}",
            parser.file.source
        );
    };
    let Parsed {
        read,
        mut sum,
        rejects,
        kept,
        miner: after,
    } = parsed;
    *miner = after;
    let mut totals = RunTotals {
        lines_read: sum.lines_read,
        lines_stored: sum.lines_stored,
        lines_rejected: sum.lines_rejected,
        bytes_read: sum.bytes_read,
    };
    // After a read error the lines sent before it are stored with the
    // rejects so far, and the run is marked failed.
    let stored = load.and_then(|load| {
        let status = if read.is_ok() { "done" } else { "failed" };
        load.finish(
            &parser.file.source,
            &rejects,
            status,
            &totals,
            miner.templates(),
        )
    });
    match stored {
        Ok(()) => {
            miner.mark_saved();
            match (keep.as_mut(), kept) {
                (Some(k), Some(this)) => k.append(this),
                _ => *keep = None,
            }
            if let Err(e) = read {
                sum.error = Some(format!("{e:#}"));
            }
        }
        Err(e) => {
            // Nothing of the file is stored, and the templates do not count
            // its lines either; a run row says what was read before it failed.
            sum.lines_stored = 0;
            sum.seen = Seen::default();
            totals.lines_stored = 0;
            let failed_run = store
                .begin_run(&parser.file.new_run())
                .and_then(|id| store.finish_run(id, "failed", &totals).map(|()| id));
            *miner = parser.miner_before;
            sum.run_id = Some(failed_run?);
            sum.error = Some(format!("{e:#}"));
        }
    }
    Ok(sum)
}

/// The first file's parsing, started before the database is open when the
/// database does not exist yet. A new database holds no templates and no
/// runs, so the first file's run id (1) and template ids are known before
/// DuckDB is up, and one core parses while the other opens the database
/// (≈ 40 ms on one core). `load_files` checks that the database really was
/// new before it stores anything of it.
pub struct HeadStart {
    parser: Parser,
    lines: std::sync::mpsc::Receiver<ArrowBatch>,
}

impl HeadStart {
    /// Starts parsing the first file when `db` does not exist and the file
    /// can be read again should the head start be dropped (not stdin).
    pub fn begin(db: &str, args: &AnalyzeArgs, cfg: &Config, year: i64) -> Option<HeadStart> {
        let path = args.files.first()?;
        if path == "-" || std::path::Path::new(db).exists() {
            return None;
        }
        // an unreadable or empty file is reported by the usual path
        let Ok(Opened::Input(input)) = Input::open(path, args, cfg, year) else {
            return None;
        };
        let (tx, lines) = lines_channel();
        let file = input.file_run();
        let parser = Parser::spawn(
            input,
            file,
            path,
            Miner::default(),
            1,
            !args.no_detect,
            cfg,
            year,
            tx,
        );
        Some(HeadStart { parser, lines })
    }

    /// Stores the first file if the database was new after all (no
    /// templates, and the run made is run 1). Otherwise stops the parser
    /// and returns `None`: the file is then loaded the usual way.
    fn load(
        self,
        store: &Store,
        miner: &mut Miner,
        keep: &mut Option<LinesCollector>,
    ) -> Option<Result<FileSummary>> {
        let HeadStart { parser, lines } = self;
        if miner.is_empty() {
            // the reader (and the channel) goes with a load dropped here
            match store.begin_file_load(&parser.file.new_run(), lines_reader(lines)) {
                Ok(load) if load.run_id == parser.run_id => {
                    return Some(store_parsed(store, load, parser, miner, keep))
                }
                Ok(load) => drop(load),
                Err(e) => tracing::debug!("the head start is dropped: {e:#}"),
            }
        } else {
            drop(lines);
        }
        parser.stop();
        None
    }
}

/// Loads `args.files`; returns the summary and the ids of runs made.
/// `head` is the first file's head start, if it got one.
pub fn load_files(
    args: &AnalyzeArgs,
    cfg: &Config,
    store: &Store,
    year: i64,
    mut head: Option<HeadStart>,
) -> Result<Summary> {
    let t0 = Instant::now();
    let mut miner = Miner::with_stored(DEFAULT_SIMILARITY, store.load_templates()?);
    let templates_before = miner.len();
    let mut summary = Summary {
        db: store.path.clone(),
        ..Default::default()
    };
    let mut kept = (!args.no_detect).then(LinesCollector::default);
    for path in &args.files {
        let loaded = match head
            .take()
            .and_then(|h| h.load(store, &mut miner, &mut kept))
        {
            Some(loaded) => loaded,
            None => load_one(store, &mut miner, path, args, cfg, year, &mut kept),
        };
        let fs = match loaded {
            Ok(s) => s,
            Err(e) => FileSummary {
                source: path.clone(),
                error: Some(format!("{e:#}")),
                ..Default::default()
            },
        };
        summary.lines_read += fs.lines_read;
        summary.lines_stored += fs.lines_stored;
        summary.lines_rejected += fs.lines_rejected;
        summary.bytes_read += fs.bytes_read;
        if let Some(f) = &fs.format {
            if !summary.formats.contains(f) {
                summary.formats.push(f.clone());
            }
        }
        summary.files.push(fs);
    }
    // each load saved its templates; what is left changed outside one (the
    // lines `--replace` took out, when loading the file again then failed)
    store.save_templates(miner.templates())?;
    // a template is new in the window of its first line in the whole
    // database, which the miner (seeded from the stored templates) knows
    if let Some(k) = kept {
        match k.finish(|id| miner.get(id).and_then(|t| t.first_seen)) {
            Ok(input) => summary.loaded_lines = Some(input),
            Err(e) => tracing::debug!("detection will read the lines back from DuckDB: {e:#}"),
        }
    }
    summary.templates_total = miner.len();
    summary.templates_new = miner.len() - templates_before;
    let mut seen = Seen::default();
    for f in &mut summary.files {
        seen.add(std::mem::take(&mut f.seen));
    }
    summary.first_ts = seen.first_us.map(format_seconds);
    summary.last_ts = seen.last_us.map(format_seconds);
    summary.services = seen.services.into_iter().collect();
    summary.seconds = t0.elapsed().as_secs_f64();
    let secs = summary.seconds.max(1e-9);
    summary.lines_per_sec = (summary.lines_read as f64 / secs).round();
    summary.mb_per_sec = ((summary.bytes_read as f64 / 1e6 / secs) * 10.0).round() / 10.0;
    Ok(summary)
}

fn print_text(s: &Summary) {
    for f in &s.files {
        if let Some(e) = &f.error {
            println!("{}: error: {e}", f.source);
        } else if let Some(a) = &f.already_loaded {
            println!("{}: {a}", f.source);
        } else if f.format.is_none() {
            println!("{}: empty, nothing to load", f.source);
        } else {
            println!(
                "{}: {} lines read, {} stored, {} rejected (format {}, run {})",
                f.source,
                f.lines_read,
                f.lines_stored,
                f.lines_rejected,
                f.format.as_deref().unwrap_or("-"),
                f.run_id.unwrap_or(0)
            );
        }
    }
    println!(
        "total: {} lines read, {} stored, {} rejected in {:.2}s ({:.0} lines/s, {:.1} MB/s)",
        s.lines_read, s.lines_stored, s.lines_rejected, s.seconds, s.lines_per_sec, s.mb_per_sec
    );
    if let (Some(a), Some(b)) = (&s.first_ts, &s.last_ts) {
        println!("time span: {a} .. {b}");
    }
    if !s.services.is_empty() {
        println!("services: {}", s.services.join(", "));
    }
    if !s.formats.is_empty() {
        println!("formats: {}", s.formats.join(", "));
    }
    println!(
        "templates: {} ({} new)   database: {}",
        s.templates_total, s.templates_new, s.db
    );
    if s.lines_rejected > 0 {
        println!(
            "rejected lines: logsentry sql \"SELECT line_no, reason FROM rejects\" --db {}",
            s.db
        );
    }
}

pub fn run(args: AnalyzeArgs, cfg: Config) -> Result<i32> {
    if cfg.ingest.threads > 0 {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.ingest.threads)
            .build_global();
    }
    let t0 = Instant::now();
    let db = args.db.clone().unwrap_or_else(|| cfg.db.clone());
    let year = crate::parse::time::current_year();
    let head = HeadStart::begin(&db, &args, &cfg, year);
    let store = Store::open(&db)?;
    let mut summary = load_files(&args, &cfg, &store, year, head)?;
    if !args.no_detect {
        let runs: Vec<i64> = summary
            .files
            .iter()
            .filter_map(|f| f.run_id.or(f.prior_run_id))
            .collect();
        // the lines kept while loading are the scope's lines unless the
        // scope also holds files loaded before
        let kept = summary.loaded_lines.take();
        let lines = kept.filter(|_| summary.files.iter().all(|f| f.prior_run_id.is_none()));
        if !runs.is_empty() {
            let title = args.files.join(", ");
            let scope = Scope::Runs(runs);
            summary.detection = Some(args.detect.run(&store, &scope, lines, &cfg, &title)?);
            summary.seconds = t0.elapsed().as_secs_f64();
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary);
        if let Some(d) = &summary.detection {
            print!("{}", crate::report::text(d, cfg.detect.report_top));
        }
        if let Some(r) = &args.detect.report {
            println!("report: {r}");
        }
    }
    let failed = summary.files.iter().any(|f| f.error.is_some());
    if failed && !args.json {
        eprintln!("error: some inputs could not be read (see above)");
    }
    // the command ends here, and the process with it (main)
    store.close_at_exit()?;
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: &str, db: &str) -> AnalyzeArgs {
        AnalyzeArgs {
            files: vec![file.to_string()],
            db: Some(db.to_string()),
            format: FormatChoice::Auto,
            json: true,
            replace: false,
            no_detect: true,
            detect: Default::default(),
        }
    }

    fn write_lines(path: &std::path::Path, msg: &str, n: usize) {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "{{\"ts\":\"2024-01-01T00:00:{:02}Z\",\"level\":\"info\",\"service\":\"api\",\"msg\":\"{msg} {i}\"}}\n",
                    i % 60
                )
            })
            .collect();
        std::fs::write(path, text).unwrap();
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn seen_spans_times_and_names_each_line_by_service_then_host() {
        let text = concat!(
            r#"{"ts":"2024-05-01T10:00:00Z","host":"h1","msg":"a"}"#,
            "\n",
            r#"{"ts":"2024-05-01T09:00:00.7Z","service":"","msg":"b"}"#,
            "\n",
            r#"{"msg":"c","level":"info"}"#,
            "\n",
            r#"{"ts":"2024-05-02T10:00:00Z","service":"zeta","host":"h2","msg":"d"}"#,
            "\n"
        );
        let settings = ParseSettings {
            format: Format::Json,
            year: 2024,
            max_line_bytes: 1 << 20,
        };
        let parsed = parse_block(text.as_bytes(), 1, &settings, &mut Miner::default());
        let mut seen = Seen::default();
        for b in &parsed.batches {
            seen.add(Seen::of(b));
        }
        assert_eq!(
            seen.first_us.map(format_seconds).as_deref(),
            Some("2024-05-01T09:00:00Z")
        );
        assert_eq!(
            seen.last_us.map(format_seconds).as_deref(),
            Some("2024-05-02T10:00:00Z")
        );
        // an empty service is a name; a line with neither is `-`
        assert_eq!(
            seen.services.into_iter().collect::<Vec<_>>(),
            ["", "-", "h1", "zeta"]
        );
        assert!(Seen::default().first_us.is_none());
    }

    #[test]
    fn a_failed_insert_stores_nothing_of_the_file_and_records_a_failed_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        write_lines(&log, "user logged in", 300);
        let db = dir.path().join("t.duckdb");
        let (db, path) = (db.to_str().unwrap(), log.to_str().unwrap());
        let cfg = Config::default();
        let store = Store::open(db).unwrap();
        let Opened::Input(input) = Input::open(path, &args(path, db), &cfg, 2024).unwrap() else {
            panic!("the file is not empty");
        };
        let file = input.file_run();
        // DuckDB reads a batch that could not be made: the INSERT fails
        let poisoned = RecordBatchIterator::new(
            [Err(ArrowError::ComputeError("poisoned".into()))],
            std::sync::Arc::new(arrow_batch::logs_schema()),
        );
        let load = store
            .begin_file_load(&file.new_run(), Box::new(poisoned))
            .unwrap();
        let (tx, rx) = lines_channel();
        drop(rx);
        let miner = Miner::default();
        let parser = Parser::spawn(input, file, path, miner, load.run_id, false, &cfg, 2024, tx);
        let mut miner = Miner::default();
        let sum = store_parsed(&store, load, parser, &mut miner, &mut None).unwrap();
        assert!(sum.error.unwrap().contains("poisoned"));
        assert_eq!(sum.lines_stored, 0);
        assert!(
            miner.is_empty(),
            "the templates do not count the file's lines"
        );
        assert_eq!(count(&store, "SELECT count(*) FROM logs"), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM templates"), 0);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM runs WHERE status = 'failed' AND lines_stored = 0"
            ),
            1
        );
        assert_eq!(count(&store, "SELECT count(*) FROM runs"), 1);
    }

    #[test]
    fn a_head_start_loads_a_new_database_and_gives_way_when_it_was_not_new() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        write_lines(&a, "user logged in", 300);
        write_lines(&b, "cache miss for key", 200);
        let cfg = Config::default();
        let year = 2024;

        // a new database: the first file is parsed before it is opened
        let db = dir.path().join("new.duckdb");
        let db = db.to_str().unwrap();
        let args_a = args(a.to_str().unwrap(), db);
        let head = HeadStart::begin(db, &args_a, &cfg, year);
        assert!(head.is_some());
        let store = Store::open(db).unwrap();
        let sum = load_files(&args_a, &cfg, &store, year, head).unwrap();
        assert_eq!((sum.lines_stored, sum.files[0].run_id), (300, Some(1)));
        assert_eq!(
            count(&store, "SELECT count(*) FROM logs WHERE ingest_id = 1"),
            300
        );
        assert_eq!(count(&store, "SELECT sum(count) FROM templates"), 300);
        drop(store);
        // the database exists now: no head start
        assert!(HeadStart::begin(db, &args(b.to_str().unwrap(), db), &cfg, year).is_none());

        // the database appears after the head start began (another process):
        // the head start is dropped and the file loaded the usual way
        let db = dir.path().join("raced.duckdb");
        let db = db.to_str().unwrap();
        let args_b = args(b.to_str().unwrap(), db);
        let head = HeadStart::begin(db, &args_b, &cfg, year);
        assert!(head.is_some());
        let other = Store::open(db).unwrap();
        load_files(&args(a.to_str().unwrap(), db), &cfg, &other, year, None).unwrap();
        drop(other);
        let store = Store::open(db).unwrap();
        let sum = load_files(&args_b, &cfg, &store, year, head).unwrap();
        assert_eq!((sum.lines_stored, sum.files[0].run_id), (200, Some(2)));
        assert_eq!(count(&store, "SELECT count(*) FROM logs"), 500);
        assert_eq!(
            count(&store, "SELECT count(*) FROM runs WHERE status = 'done'"),
            2
        );
        // template ids stay unique, and each file's lines count once
        assert_eq!(
            count(
                &store,
                "SELECT count(*) - count(DISTINCT template_id) FROM templates"
            ),
            0
        );
        assert_eq!(count(&store, "SELECT sum(count) FROM templates"), 500);
        assert_eq!(
            count(
                &store,
                "SELECT count(DISTINCT l.template_id) FROM logs l JOIN templates t USING (template_id) WHERE l.ingest_id = 2"
            ),
            count(&store, "SELECT count(DISTINCT template_id) FROM logs WHERE ingest_id = 2")
        );
    }
}
