//! The archive: every accepted event once, partitioned by event time (UTC), as gzip-compressed
//! JSON lines or (with [`ArchiveFormat::Parquet`]) Parquet files:
//!
//! ```text
//! <archive>/events/year=YYYY/month=MM/day=DD/hour=HH/<log partition, 5 digits>-<first offset, 20 digits>.jsonl.gz
//! <archive>/events/year=YYYY/month=MM/day=DD/hour=HH/<log partition, 5 digits>-<first offset, 20 digits>.parquet
//! ```
//!
//! Both formats take the same JSON line per event and share everything but the encoding (an
//! `Encoder` per open file), so what follows holds for both.
//!
//! Events are buffered per partition and a file is closed at 1,000 events, 5 MiB of JSON, or
//! 60 s after its first event entered the log. The 60 s rule is measured on the log's receive
//! times of the records being processed, not on the wall clock, so replaying the same records
//! after a crash closes files at the same places; only when the processor is idle does the wall
//! clock close a file, and the processor commits right after. A file is named by the log
//! partition and offset of its first event, so a file rewritten after a crash — or by the node
//! that took the partition over — replaces the earlier one with the same events instead of
//! duplicating them, and the processors of different partitions share one archive.
//!
//! Where files go is behind [`ArchiveStore`]: [`LocalArchive`] writes a temporary file, syncs it
//! and renames it into place, so no partial file is ever visible; the distributed mode's S3
//! store puts whole objects. Closed files are finished and stored on a thread of the archiver's
//! own ([`writer`]); the processor waits for them ([`Archiver::written`]) before its commit.

mod line;
mod parquet_file;
mod writer;

use crate::durable::write_atomically;
use crate::event::StoredEvent;
use chrono::{DateTime, Datelike, Timelike, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use parquet_file::ParquetRows;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use writer::{Closing, Writer};

pub(crate) use line::{Lines, PartitionNames};

/// Where archive files are stored (shared by the processors of every partition).
pub trait ArchiveStore: Send + Sync {
    /// Stores `bytes` as `<partition>/<name>` atomically, replacing an existing file.
    fn put(&self, partition: &str, name: &str, bytes: &[u8]) -> io::Result<()>;
}

/// The archive on the local file system.
pub struct LocalArchive {
    root: PathBuf,
}

impl LocalArchive {
    /// Opens the archive under `root`, removing temporary files a crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<LocalArchive> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        remove_temporaries(&root)?;
        Ok(LocalArchive { root })
    }

    /// Every archive file (of either format), in path order.
    pub fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        collect_files(&self.root.join("events"), &mut files)?;
        files.sort();
        Ok(files)
    }
}

impl ArchiveStore for LocalArchive {
    fn put(&self, partition: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = self.root.join(partition);
        fs::create_dir_all(&dir)?;
        write_atomically(&dir.join(name), bytes)
    }
}

fn remove_temporaries(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_temporaries(&path)?;
        } else if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&path, out)?;
        } else if ArchiveFormat::ALL.iter().any(|f| path.to_str().is_some_and(|p| p.ends_with(f.suffix()))) {
            out.push(path);
        }
    }
    Ok(())
}

/// The file format of the archive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Gzip-compressed JSON lines (`.jsonl.gz`).
    #[default]
    Jsonl,
    /// Parquet with a flat, typed schema (`.parquet`; see the `parquet_file` module).
    Parquet,
}

impl ArchiveFormat {
    pub const ALL: [ArchiveFormat; 2] = [ArchiveFormat::Jsonl, ArchiveFormat::Parquet];

    /// What the names of its files end with.
    pub fn suffix(self) -> &'static str {
        match self {
            ArchiveFormat::Jsonl => ".jsonl.gz",
            ArchiveFormat::Parquet => ".parquet",
        }
    }

    /// The name it has in settings.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::Jsonl => "jsonl",
            ArchiveFormat::Parquet => "parquet",
        }
    }
}

impl FromStr for ArchiveFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<ArchiveFormat, String> {
        ArchiveFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("{s:?} is neither jsonl nor parquet"))
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The partition of an event time.
pub fn partition_of(t: DateTime<Utc>) -> String {
    format!("events/year={:04}/month={:02}/day={:02}/hour={:02}", t.year(), t.month(), t.day(), t.hour())
}

/// The archive stage: adds `stored`, the record at `offset`, as its line (see [`Lines`]; its
/// event's JSON is `event_json`, see [`crate::event::ReadRecord`]) to the buffer of its
/// `partition` (see [`PartitionNames`]) with the experiments and variants it is attributed to.
/// The files this closes are stored by the time [`Archiver::written`] returns them.
pub(crate) fn archive(
    archiver: &mut Archiver,
    lines: &mut Lines,
    partition: &str,
    offset: u64,
    stored: &StoredEvent,
    event_json: &str,
    attribution: &[(String, String)],
) -> io::Result<()> {
    let received = stored.received_at;
    archiver.add(partition, offset, received, lines.of(event_json, received, attribution)?)
}

/// The name of an archive file: the log partition and offset of its first event, then the
/// format's suffix.
pub fn file_name(log_partition: u32, first_offset: u64, format: ArchiveFormat) -> String {
    format!("{log_partition:05}-{first_offset:020}{}", format.suffix())
}

/// The format of archive files and when they are closed.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    pub format: ArchiveFormat,
    pub max_events: usize,
    /// Bytes of the events' JSON lines (the measure for either format).
    pub max_bytes: usize,
    /// Milliseconds after the first event's receive time.
    pub max_age_millis: i64,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            format: ArchiveFormat::default(),
            max_events: 1000,
            max_bytes: 5 * 1024 * 1024,
            max_age_millis: 60_000,
        }
    }
}

/// A file that was closed and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedFile {
    pub partition: String,
    pub name: String,
    pub events: usize,
    pub bytes: usize,
}

/// A partition's buffer that is not yet a file: where it starts, to resume after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFile {
    pub partition: String,
    pub first_offset: u64,
    pub first_received: i64,
}

struct Buffer {
    first_offset: u64,
    first_received: i64,
    events: usize,
    raw_bytes: usize,
    encoder: Encoder,
}

/// An open file's contents in the archive's format.
enum Encoder {
    /// The lines so far; gzip compresses them all at once when the file is closed, on the
    /// archive's writer thread (see [`writer`]).
    Jsonl(Vec<u8>),
    /// Typed columns; Parquet writes a column at a time, so they are encoded at close.
    Parquet(Box<ParquetRows>),
}

impl Encoder {
    fn new(format: ArchiveFormat) -> Encoder {
        match format {
            ArchiveFormat::Jsonl => Encoder::Jsonl(Vec::new()),
            ArchiveFormat::Parquet => Encoder::Parquet(Box::default()),
        }
    }

    /// Adds one event line (without newline).
    fn add(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Jsonl(lines) => {
                lines.extend_from_slice(line);
                lines.push(b'\n');
                Ok(())
            }
            Encoder::Parquet(rows) => rows.add(line),
        }
    }

    /// The file's bytes.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Jsonl(lines) => {
                let mut gzip = GzEncoder::new(Vec::with_capacity(lines.len() / 4), Compression::fast());
                gzip.write_all(&lines)?;
                gzip.finish()
            }
            Encoder::Parquet(rows) => rows.finish(),
        }
    }
}

/// Buffers events per partition and closes files by the rules above; a thread of its own
/// stores them.
pub struct Archiver {
    writer: Writer,
    /// The log partition whose events this archiver writes.
    log_partition: u32,
    options: ArchiveOptions,
    buffers: hashbrown::HashMap<String, Buffer>,
    /// After a restart: the buffers that were open at the checkpoint. Replayed records of a
    /// partition before its buffer's start are already in closed files.
    resume: HashMap<String, OpenFile>,
    /// Partitions of `resume` whose buffer replay has begun to rebuild.
    rebuilt: HashSet<String>,
}

impl Archiver {
    /// Archives the events of `log_partition` into `store`.
    pub fn new(store: Arc<dyn ArchiveStore>, log_partition: u32, options: ArchiveOptions) -> Archiver {
        Archiver {
            writer: Writer::new(store, log_partition),
            log_partition,
            options,
            buffers: hashbrown::HashMap::new(),
            resume: HashMap::new(),
            rebuilt: HashSet::new(),
        }
    }

    /// Starts over from what the state database says was open at the last checkpoint. Files
    /// closed since are written again by replay, so how their writes went no longer matters.
    pub fn restore(&mut self, open: &[OpenFile]) {
        self.writer.discard();
        self.buffers.clear();
        self.rebuilt.clear();
        self.resume = open.iter().map(|o| (o.partition.clone(), o.clone())).collect();
    }

    /// The open buffers, to be saved with the checkpoint. While a replay is under way this
    /// includes the buffers it has not reached yet: forgetting them in a checkpoint taken
    /// mid-replay would make a second crash skip their events for good.
    pub fn open_files(&self) -> Vec<OpenFile> {
        let not_yet_rebuilt = self
            .resume
            .values()
            .filter(|o| !self.rebuilt.contains(&o.partition) && !self.buffers.contains_key(&o.partition));
        let mut open: Vec<OpenFile> = self
            .buffers
            .iter()
            .map(|(partition, b)| OpenFile {
                partition: partition.clone(),
                first_offset: b.first_offset,
                first_received: b.first_received,
            })
            .chain(not_yet_rebuilt.cloned())
            .collect();
        open.sort_by_key(|o| o.first_offset);
        open
    }

    /// Whether a record replayed from before the checkpoint still belongs in an open buffer.
    pub fn wants_replayed(&self, partition: &str, offset: u64) -> bool {
        self.resume.get(partition).is_some_and(|open| offset >= open.first_offset)
    }

    /// Adds one event line (without newline), closing the files that are due.
    pub fn add(&mut self, partition: &str, offset: u64, received: i64, line: &[u8]) -> io::Result<()> {
        let max_age = self.options.max_age_millis;
        self.close_where(|b| received >= b.first_received + max_age)?;
        if self.resume.contains_key(partition) && !self.rebuilt.contains(partition) {
            self.rebuilt.insert(partition.to_owned());
        }
        let buffer = self.buffers.entry_ref(partition).or_insert_with(|| Buffer {
            first_offset: offset,
            first_received: received,
            events: 0,
            raw_bytes: 0,
            encoder: Encoder::new(self.options.format),
        });
        buffer.encoder.add(line)?;
        buffer.events += 1;
        buffer.raw_bytes += line.len() + 1;
        if buffer.events >= self.options.max_events || buffer.raw_bytes >= self.options.max_bytes {
            let buffer = self.buffers.remove(partition).expect("present");
            self.close(partition.to_owned(), buffer)?;
        }
        Ok(())
    }

    /// Waits until every file closed since the last call is stored, and returns them in the
    /// order they were closed. A commit comes after it: the buffers it no longer records as open
    /// must be in files by then.
    pub fn written(&mut self) -> io::Result<Vec<ClosedFile>> {
        self.writer.written()
    }

    /// Closes buffers whose first event is older than the age limit at wall-clock `now_millis`
    /// (used only when idle; the caller commits right after). Returns the files closed since
    /// the last [`Archiver::written`], stored.
    pub fn close_idle(&mut self, now_millis: i64) -> io::Result<Vec<ClosedFile>> {
        let max_age = self.options.max_age_millis;
        self.close_where(|b| now_millis >= b.first_received + max_age)?;
        self.written()
    }

    /// Closes every buffer (at a flush and at shutdown). Returns the files closed since the last
    /// [`Archiver::written`], stored.
    pub fn close_all(&mut self) -> io::Result<Vec<ClosedFile>> {
        self.close_where(|_| true)?;
        self.written()
    }

    fn close_where(&mut self, due: impl Fn(&Buffer) -> bool) -> io::Result<()> {
        let mut partitions: Vec<String> = self.buffers.iter().filter(|(_, b)| due(b)).map(|(p, _)| p.clone()).collect();
        partitions.sort();
        for partition in partitions {
            let buffer = self.buffers.remove(&partition).expect("present");
            self.close(partition, buffer)?;
        }
        Ok(())
    }

    fn close(&mut self, partition: String, buffer: Buffer) -> io::Result<()> {
        let name = file_name(self.log_partition, buffer.first_offset, self.options.format);
        self.writer.write(Closing { partition, name, events: buffer.events, encoder: buffer.encoder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_taken_mid_replay_keeps_the_buffers_replay_has_not_reached() {
        let dir = tempfile::tempdir().unwrap();
        let mut archiver =
            Archiver::new(Arc::new(LocalArchive::open(dir.path()).unwrap()), 0, ArchiveOptions::default());
        let open =
            |partition: &str, first_offset| OpenFile { partition: partition.into(), first_offset, first_received: 0 };
        archiver.restore(&[open("p0", 10), open("p1", 20)]);
        // Replay has rebuilt p0's buffer but not yet reached p1's first record.
        assert!(archiver.wants_replayed("p0", 10));
        archiver.add("p0", 10, 0, b"{}").unwrap();
        assert_eq!(archiver.open_files(), vec![open("p0", 10), open("p1", 20)]);
        // Once p1's buffer is rebuilt it is reported from the buffer itself, once.
        archiver.add("p1", 20, 0, b"{}").unwrap();
        assert_eq!(archiver.open_files(), vec![open("p0", 10), open("p1", 20)]);
        archiver.close_all().unwrap();
        assert_eq!(archiver.open_files(), vec![]);
    }

    /// Stores files in memory, failing the first `failures` puts.
    #[derive(Default)]
    struct FlakyStore {
        failures: std::sync::Mutex<usize>,
        stored: std::sync::Mutex<Vec<String>>,
    }

    impl ArchiveStore for FlakyStore {
        fn put(&self, _partition: &str, name: &str, _bytes: &[u8]) -> io::Result<()> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(io::Error::other("disk full"));
            }
            self.stored.lock().unwrap().push(name.to_string());
            Ok(())
        }
    }

    #[test]
    fn a_file_that_could_not_be_stored_fails_the_wait_before_the_commit_and_only_that_one() {
        let store = Arc::new(FlakyStore { failures: std::sync::Mutex::new(1), ..FlakyStore::default() });
        let options = ArchiveOptions { max_events: 2, ..ArchiveOptions::default() };
        let mut archiver = Archiver::new(store.clone(), 0, options);
        for offset in 0..4 {
            archiver.add("p0", offset, 0, b"{}").unwrap();
        }
        let err = archiver.written().unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(*store.stored.lock().unwrap(), ["00000-00000000000000000002.jsonl.gz"], "the other file is stored");

        // The session starts again from its last commit, when nothing was closed yet.
        archiver.restore(&[OpenFile { partition: "p0".into(), first_offset: 0, first_received: 0 }]);
        assert!(archiver.written().unwrap().is_empty(), "the failure is not reported twice");
        for offset in 0..4 {
            archiver.add("p0", offset, 0, b"{}").unwrap();
        }
        let written = archiver.written().unwrap();
        let names: Vec<&str> = written.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["00000-00000000000000000000.jsonl.gz", "00000-00000000000000000002.jsonl.gz"]);
        assert_eq!(written.iter().map(|f| f.events).sum::<usize>(), 4);
    }

    /// Panics at its first put, as a bug in storing would.
    #[derive(Default)]
    struct PanicsOnce {
        panicked: std::sync::atomic::AtomicBool,
    }

    impl ArchiveStore for PanicsOnce {
        fn put(&self, _partition: &str, _name: &str, _bytes: &[u8]) -> io::Result<()> {
            if !self.panicked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("a bug in storing a file");
            }
            Ok(())
        }
    }

    #[test]
    fn a_writer_that_panicked_fails_its_wait_and_is_replaced() {
        let options = ArchiveOptions { max_events: 1, ..ArchiveOptions::default() };
        let mut archiver = Archiver::new(Arc::new(PanicsOnce::default()), 0, options);
        archiver.add("p0", 0, 0, b"{}").unwrap();
        let err = archiver.written().unwrap_err();
        assert_eq!(err.to_string(), "the archive's writer thread ended unexpectedly");

        archiver.restore(&[OpenFile { partition: "p0".into(), first_offset: 0, first_received: 0 }]);
        archiver.add("p0", 0, 0, b"{}").unwrap();
        assert_eq!(archiver.written().unwrap().len(), 1, "a new writer stores the file");
    }
}
