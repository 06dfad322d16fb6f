//! The durable, append-only event log, behind the [`EventBus`] trait.
//!
//! The embedded implementation, [`FileLog`], keeps records in segment files named by the offset
//! of their first record (`00000000000000000000.log`, …). Each record is framed as
//!
//! ```text
//! [len: u32 LE][crc32(len bytes ++ payload): u32 LE][payload: len bytes]
//! ```
//!
//! One writer thread owns the active segment. Appenders hand it their batch and wait; the thread
//! takes every batch that is waiting, writes them with one `write` and makes them durable with
//! one `fdatasync` (group commit), then answers each appender with its offsets. Under load many
//! batches share a sync, which is what lets a single disk acknowledge hundreds of thousands of
//! events per second durably while keeping each batch's latency at about one sync.
//!
//! On open, the last segment is scanned and cut back at the first record that is incomplete or
//! fails its checksum: a torn tail can only hold records that were never acknowledged, because
//! an acknowledgement is sent only after the sync that covered them.

use crate::durable::sync_dir;
use async_trait::async_trait;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// Largest record the log accepts; a longer length field can only be a torn or corrupt header.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
const HEADER: usize = 8;
/// Held locked (advisory, released when the process ends) while a [`FileLog`] is open.
const LOCK_FILE: &str = "lock";

/// A failure of the log or of the broker behind it.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("record of {0} bytes is larger than the log accepts")]
    TooLarge(usize),
    #[error("the event log is closed")]
    Closed,
    #[error("corrupt record at offset {0}")]
    Corrupt(u64),
    #[error("the event log in {0} is in use by another process")]
    InUse(PathBuf),
    #[error("the event log has no partition {0}")]
    NoPartition(u32),
}

/// One record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// A record to append, with the key that chooses its partition.
///
/// Records with the same key go to the same partition, in the order they were appended: the
/// pipeline keys events by `user_id`, so each user's events stay ordered and one processor sees
/// all of them. A record without a key may go to any partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusRecord {
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

impl BusRecord {
    pub fn keyed(key: impl Into<String>, payload: Vec<u8>) -> BusRecord {
        BusRecord { key: Some(key.into()), payload }
    }

    pub fn unkeyed(payload: Vec<u8>) -> BusRecord {
        BusRecord { key: None, payload }
    }
}

/// A durable stream of records in one or more partitions, each an ordered sequence with its
/// own offsets.
///
/// The embedded [`FileLog`] has one partition; a Kafka-protocol broker (in `vexil-distributed`)
/// has the topic's partitions. Appending is async because it waits for durability (the server
/// calls it from request handlers); reading is blocking because consumers run on their own
/// threads.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// How many partitions there are (numbered from 0); fixed for the life of the bus.
    fn partitions(&self) -> u32;
    /// Appends `records`, each to the partition its key chooses, and returns once every one of
    /// them is durable.
    async fn append(&self, records: Vec<BusRecord>) -> Result<(), LogError>;
    /// A reader that yields durable records of `partition` from `offset` on.
    fn reader(&self, partition: u32, offset: u64) -> Result<Box<dyn BusReader>, LogError>;
    /// Records that the pipeline has processed everything of `partition` before `offset`; the
    /// bus may then discard what it no longer needs.
    fn commit(&self, partition: u32, offset: u64) -> Result<(), LogError>;
    /// The offset the next record appended to `partition` will get (everything below it is
    /// durable), as far as this node knows.
    fn end_offset(&self, partition: u32) -> u64;
}

/// Reads records in offset order.
pub trait BusReader: Send {
    /// Up to `max` records, waiting at most `wait` for the first one; empty when none came.
    fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError>;
}

/// Tuning of the file log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// At most this many bytes are gathered into one group commit.
    pub max_group_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: 128 * 1024 * 1024, max_group_bytes: 16 * 1024 * 1024 }
    }
}

/// What opening the log found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the last segment (a torn or corrupt tail).
    pub truncated_bytes: u64,
    /// The offset the next record will get.
    pub end_offset: u64,
}

struct Shared {
    dir: PathBuf,
    /// Base offsets of the segments, ascending.
    segments: RwLock<Vec<u64>>,
    /// Everything below this offset is durable.
    durable: Mutex<u64>,
    grew: Condvar,
    durable_hint: AtomicU64,
}

impl Shared {
    fn segment_path(&self, base: u64) -> PathBuf {
        segment_path(&self.dir, base)
    }

    fn segment_of(&self, offset: u64) -> Option<u64> {
        let segments = self.segments.read().expect("segment list poisoned");
        let i = segments.partition_point(|&base| base <= offset);
        (i > 0).then(|| segments[i - 1])
    }

    fn starts_segment(&self, offset: u64) -> bool {
        self.segments.read().expect("segment list poisoned").binary_search(&offset).is_ok()
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

struct Request {
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Range<u64>, LogError>>,
}

/// The embedded event log: segment files in one directory.
pub struct FileLog {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    recovery: Recovery,
    _lock: File,
}

impl FileLog {
    /// Opens (or creates) the log in `dir`, cutting a torn tail off the last segment.
    pub fn open(dir: impl Into<PathBuf>, options: LogOptions) -> Result<FileLog, LogError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        // One writer per log: a second process appending would interleave records.
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LogError::InUse(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let mut segments = list_segments(&dir)?;
        if segments.is_empty() {
            File::create(segment_path(&dir, 0))?.sync_all()?;
            sync_dir(&dir)?;
            segments.push(0);
        }
        let last = *segments.last().expect("at least one segment");
        let (mut file, valid_len, count, truncated) = recover_segment(&segment_path(&dir, last))?;
        file.seek(SeekFrom::Start(valid_len))?;
        let end = last + count;
        let recovery = Recovery { truncated_bytes: truncated, end_offset: end };
        let shared = Arc::new(Shared {
            dir,
            segments: RwLock::new(segments),
            durable: Mutex::new(end),
            grew: Condvar::new(),
            durable_hint: AtomicU64::new(end),
        });
        let (sender, receiver) = mpsc::channel();
        let writer = Writer { shared: shared.clone(), options, file, size: valid_len, next: end, buf: Vec::new() };
        let handle = std::thread::Builder::new().name("vexil-log-writer".into()).spawn(move || writer.run(receiver))?;
        Ok(FileLog {
            shared,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            recovery,
            _lock: lock,
        })
    }

    /// What opening the log found.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Stops the writer after it has answered every append already handed to it.
    pub fn close(&self) {
        self.sender.lock().expect("sender poisoned").take();
        if let Some(handle) = self.writer.lock().expect("writer poisoned").take() {
            // A panicking writer has already failed its appenders; nothing is left to do here.
            let _ = handle.join();
        }
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl FileLog {
    /// Appends `records` in order and returns their offsets once all of them are durable.
    pub async fn append_payloads(&self, records: Vec<Vec<u8>>) -> Result<Range<u64>, LogError> {
        if let Some(big) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(LogError::TooLarge(big.len()));
        }
        let (reply, answer) = oneshot::channel();
        {
            let sender = self.sender.lock().expect("sender poisoned");
            let sender = sender.as_ref().ok_or(LogError::Closed)?;
            sender.send(Request { records, reply }).map_err(|_| LogError::Closed)?;
        }
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// The offset the next appended record will get (everything below it is durable).
    pub fn end(&self) -> u64 {
        self.shared.durable_hint.load(Ordering::Acquire)
    }
}

/// The file log is one partition, 0: keys change nothing, every record keeps its place in
/// one order.
#[async_trait]
impl EventBus for FileLog {
    fn partitions(&self) -> u32 {
        1
    }

    async fn append(&self, records: Vec<BusRecord>) -> Result<(), LogError> {
        self.append_payloads(records.into_iter().map(|r| r.payload).collect()).await.map(drop)
    }

    fn reader(&self, partition: u32, offset: u64) -> Result<Box<dyn BusReader>, LogError> {
        only_partition(partition)?;
        Ok(Box::new(FileReader { shared: self.shared.clone(), next: offset, current: None }))
    }

    /// Retention only: the pipeline's state store holds its checkpoint (the pipeline's commit
    /// writes it with the batch's effects), so nothing is written here. A durable copy of the
    /// offset in a file of the log's cost two fsyncs per batch and was never read.
    fn commit(&self, partition: u32, offset: u64) -> Result<(), LogError> {
        only_partition(partition)?;
        // Segments whose every record lies below the checkpoint are no longer needed.
        let obsolete: Vec<u64> = {
            let mut segments = self.shared.segments.write().expect("segment list poisoned");
            let keep_from = segments.partition_point(|&base| base <= offset).saturating_sub(1);
            segments.drain(..keep_from).collect()
        };
        for base in obsolete {
            fs::remove_file(self.shared.segment_path(base))?;
        }
        Ok(())
    }

    fn end_offset(&self, partition: u32) -> u64 {
        if partition == 0 {
            self.end()
        } else {
            0
        }
    }
}

fn only_partition(partition: u32) -> Result<(), LogError> {
    if partition == 0 {
        Ok(())
    } else {
        Err(LogError::NoPartition(partition))
    }
}

struct Writer {
    shared: Arc<Shared>,
    options: LogOptions,
    file: File,
    size: u64,
    next: u64,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut group_bytes: usize = first.records.iter().map(Vec::len).sum();
            let mut group = vec![first];
            // Everything that queued up while the previous sync ran joins this one.
            while group_bytes < self.options.max_group_bytes {
                let Ok(more) = requests.try_recv() else { break };
                group_bytes += more.records.iter().map(Vec::len).sum::<usize>();
                group.push(more);
            }
            match self.write_group(&group) {
                Ok(ranges) => {
                    for (request, range) in group.into_iter().zip(ranges) {
                        // An appender that stopped waiting does not matter: its records are durable.
                        let _ = request.reply.send(Ok(range));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for request in group {
                        let _ = request.reply.send(Err(LogError::Io(io::Error::other(message.clone()))));
                    }
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Request]) -> io::Result<Vec<Range<u64>>> {
        if self.size >= self.options.segment_bytes {
            self.roll()?;
        }
        self.buf.clear();
        let mut ranges = Vec::with_capacity(group.len());
        let mut next = self.next;
        for request in group {
            let start = next;
            for payload in &request.records {
                frame(&mut self.buf, payload);
                next += 1;
            }
            ranges.push(start..next);
        }
        let written = self.file.write_all(&self.buf).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut whatever part of the group reached the file so the next group starts clean.
            self.file.set_len(self.size)?;
            self.file.seek(SeekFrom::Start(self.size))?;
            return Err(e);
        }
        self.size += self.buf.len() as u64;
        self.next = next;
        *self.shared.durable.lock().expect("durable offset poisoned") = next;
        self.shared.durable_hint.store(next, Ordering::Release);
        self.shared.grew.notify_all();
        Ok(ranges)
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = self.shared.segment_path(self.next);
        let file = OpenOptions::new().create_new(true).read(true).write(true).open(&path)?;
        file.sync_all()?;
        sync_dir(&self.shared.dir)?;
        self.shared.segments.write().expect("segment list poisoned").push(self.next);
        self.file = file;
        self.size = 0;
        Ok(())
    }
}

fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Reads one framed record; `None` at a clean end, an error for a torn or corrupt record.
fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Option<()>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match reader.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len_bytes: [u8; 4] = header[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "record length out of range"));
    }
    payload.resize(len, 0);
    reader.read_exact(payload)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(payload);
    if crc.finalize() != u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "checksum mismatch"));
    }
    Ok(Some(()))
}

/// Scans a segment; returns it open for writing, its valid length, its record count and the
/// number of bytes cut off its end.
fn recover_segment(path: &Path) -> io::Result<(File, u64, u64, u64)> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let total = file.metadata()?.len();
    let mut reader = BufReader::new(&mut file);
    let (mut valid, mut count) = (0u64, 0u64);
    let mut payload = Vec::new();
    while let Ok(Some(())) = read_frame(&mut reader, &mut payload) {
        valid += (HEADER + payload.len()) as u64;
        count += 1;
    }
    drop(reader);
    if valid < total {
        file.set_len(valid)?;
        file.sync_all()?;
    }
    Ok((file, valid, count, total - valid))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else { continue };
        if let Ok(base) = stem.parse() {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

struct FileReader {
    shared: Arc<Shared>,
    next: u64,
    current: Option<BufReader<File>>,
}

impl FileReader {
    /// Positions the reader at `self.next`, opening the segment that holds it.
    fn seek(&mut self) -> Result<(), LogError> {
        let base = self.shared.segment_of(self.next).ok_or(LogError::Corrupt(self.next))?;
        let mut reader = BufReader::with_capacity(256 * 1024, File::open(self.shared.segment_path(base))?);
        let mut payload = Vec::new();
        for offset in base..self.next {
            read_frame(&mut reader, &mut payload)?.ok_or(LogError::Corrupt(offset))?;
        }
        self.current = Some(reader);
        Ok(())
    }
}

impl BusReader for FileReader {
    fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        let durable = {
            let guard = self.shared.durable.lock().expect("durable offset poisoned");
            let (guard, _) = self
                .shared
                .grew
                .wait_timeout_while(guard, wait, |durable| *durable <= self.next)
                .expect("durable offset poisoned");
            *guard
        };
        let mut out = Vec::new();
        while out.len() < max && self.next < durable {
            if self.current.is_none() || self.shared.starts_segment(self.next) {
                self.seek()?;
            }
            let reader = self.current.as_mut().expect("positioned above");
            let mut payload = Vec::new();
            read_frame(reader, &mut payload)?.ok_or(LogError::Corrupt(self.next))?;
            out.push(Record { offset: self.next, payload });
            self.next += 1;
        }
        Ok(out)
    }
}
