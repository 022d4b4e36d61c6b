//! The `Wal` handle: open (with recovery), append (async and blocking), stats, close.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::error::WalError;
use crate::record::{Record, RecordDraft};
use crate::recovery::{recover, Recovery};
use crate::segment::{ensure_dir, fsync_dir, lock_dir, segment_file_name, DEFAULT_SEGMENT_BYTES};
use crate::writer::{create_segment, open_segment, Msg, Reply, Writer};

/// Where the WAL lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// The WAL directory (`<data_dir>/wal`).
    pub dir: PathBuf,
    /// Where cut-off bytes go (`<data_dir>/quarantine`).
    pub quarantine_dir: PathBuf,
    /// Rotate to a new segment once a segment would grow past this many bytes.
    pub segment_bytes: u64,
    /// On corruption, move everything from the first bad byte on to quarantine instead of
    /// refusing to open (`vibesync serve --repair`).
    pub repair: bool,
    /// Start recovery after this record instead of at the first one (a checkpoint,
    /// docs/WAL.md §9). Used only if the record is really there: otherwise recovery reads the
    /// whole log and says why in [`Recovery::resume_rejected`].
    pub resume: Option<ResumeAt>,
    /// Where segments removed by compaction go (docs/WAL.md §11): `None` deletes them. Used
    /// by [`crate::compact`] callers and by recovery when it finishes a compaction a crash
    /// cut short.
    pub archive_dir: Option<PathBuf>,
}

/// The end of one record: recovery continues the chain from here without reading what is
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeAt {
    /// Seq of the record.
    pub seq: u64,
    /// Its `h` (the next record's `prev`).
    pub h: String,
    /// First seq of the segment holding it (the segment's name).
    pub segment: u64,
    /// Byte offset just past its line (`\n` included) in that segment.
    pub offset: u64,
    /// Size and modification time of every segment before that one, as they were: a
    /// segment that changed since (or is missing) makes recovery read the whole log.
    pub sealed: Vec<SegmentStamp>,
}

/// What a sealed segment looked like (see [`ResumeAt::sealed`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentStamp {
    pub first_seq: u64,
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u128,
}

/// Stamps of the segments of `dir` that start before seq `segment`.
pub fn segment_stamps(dir: &Path, segment: u64) -> std::io::Result<Vec<SegmentStamp>> {
    let mut out = Vec::new();
    for s in crate::segment::list_segments(dir)?.into_iter().filter(|s| s.first_seq < segment) {
        out.push(stamp(&s.path, s.first_seq)?);
    }
    Ok(out)
}

pub(crate) fn stamp(path: &Path, first_seq: u64) -> std::io::Result<SegmentStamp> {
    let m = std::fs::metadata(path)?;
    let modified_ns = m.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    Ok(SegmentStamp { first_seq, len: m.len(), modified_ns })
}

impl WalConfig {
    /// The standard layout under a data directory: `<data_dir>/wal`, `<data_dir>/quarantine`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        let data_dir = data_dir.as_ref();
        WalConfig {
            dir: data_dir.join("wal"),
            quarantine_dir: data_dir.join("quarantine"),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            repair: false,
            resume: None,
            archive_dir: None,
        }
    }
}

/// Counters for `vibesync status` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Segment files in the WAL directory.
    pub segments: u64,
    /// Total bytes in all segments.
    pub bytes: u64,
    /// Seq of the last durable record (0 for an empty log).
    pub last_seq: u64,
    /// Successful `append` calls since open.
    pub appends: u64,
    /// Records appended since open.
    pub records: u64,
    /// Group commits (one write each) since open.
    pub batches: u64,
    /// fdatasync calls on segments since open (fewer than `appends` under concurrency).
    pub syncs: u64,
}

/// A storage fault to inject into the writer (tests only: needs the `fault-injection`
/// feature to be reachable through [`Wal::inject_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// The next write fails before any byte is written.
    FailNextWrite = 1,
    /// The next fdatasync fails (after the write).
    FailNextSync = 2,
    /// The next read-back after fdatasync returns different bytes.
    CorruptNextReadBack = 3,
}

#[derive(Debug, Clone)]
pub(crate) struct PoisonInfo {
    pub file: PathBuf,
    pub offset: u64,
    pub seq: u64,
    pub cause: String,
}

impl PoisonInfo {
    pub(crate) fn to_error(&self) -> WalError {
        WalError::Poisoned { file: self.file.clone(), offset: self.offset, seq: self.seq, cause: self.cause.clone() }
    }
}

/// Called on the writer thread with the records of each append, in seq order, once they are
/// durable and before the appender is answered (see [`Wal::set_durable_hook`]).
pub type DurableHook = Box<dyn Fn(&[Record]) + Send + Sync>;

/// State shared by the handles and the writer thread.
#[derive(Default)]
pub(crate) struct Shared {
    pub poisoned: Mutex<Option<PoisonInfo>>,
    /// Held while `last_seq` advances and the hook runs, so installing a hook cuts the log
    /// at one exact seq.
    pub hook: Mutex<Option<DurableHook>>,
    pub closed: AtomicBool,
    pub last_seq: AtomicU64,
    pub segments: AtomicU64,
    pub bytes: AtomicU64,
    pub appends: AtomicU64,
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
    fault: AtomicU8,
}

impl Shared {
    pub(crate) fn set_poisoned(&self, info: PoisonInfo) {
        let mut p = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(info);
        }
    }

    /// The error for a caller who cannot reach the writer.
    fn dead_error(&self) -> WalError {
        match &*self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(info) => info.to_error(),
            None => WalError::Closed,
        }
    }

    pub(crate) fn take_fault(&self) -> Option<Fault> {
        match self.fault.swap(0, Ordering::SeqCst) {
            1 => Some(Fault::FailNextWrite),
            2 => Some(Fault::FailNextSync),
            3 => Some(Fault::CorruptNextReadBack),
            _ => None,
        }
    }
}

/// A cheap, cloneable handle to the WAL. The last handle dropped stops the writer thread
/// (after it finished what was queued).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.inner.dir).field("stats", &self.stats()).finish()
    }
}

impl Wal {
    /// Open the WAL, running boot recovery (see docs/WAL.md, "Recovery"). Creates the
    /// directory on first use. Fails with [`WalError::Corrupt`] on corruption unless
    /// `cfg.repair`, and with [`WalError::Locked`] if another process has it open.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Recovery), WalError> {
        if cfg.segment_bytes == 0 {
            return Err(WalError::InvalidConfig("segment_bytes must be > 0".into()));
        }
        ensure_dir(&cfg.dir).map_err(|e| WalError::io("create WAL directory", &cfg.dir, e))?;
        let lock = match lock_dir(&cfg.dir).map_err(|e| WalError::io("lock", &cfg.dir, e))? {
            Some(l) => l,
            None => return Err(WalError::Locked { dir: cfg.dir.clone() }),
        };
        let recovered = recover(&cfg)?;
        let shared = Arc::new(Shared::default());
        let chain = recovered.chain;
        let (path, file, size, segments) = match recovered.tail {
            Some((seg, size)) => {
                let file = open_segment(&seg.path).map_err(|e| WalError::io("open segment", &seg.path, e))?;
                (seg.path, file, size, recovered.report.segments as u64)
            }
            None => {
                let path = cfg.dir.join(segment_file_name(chain.next_seq));
                let file = create_segment(&path).map_err(|e| WalError::io("create segment", &path, e))?;
                fsync_dir(&cfg.dir).map_err(|e| WalError::io("fsync directory", &cfg.dir, e))?;
                (path, file, 0, 1)
            }
        };
        let total_bytes = crate::segment::list_segments(&cfg.dir)
            .map_err(|e| WalError::io("list", &cfg.dir, e))?
            .iter()
            .map(|s| std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0))
            .sum();
        shared.last_seq.store(chain.last_seq(), Ordering::SeqCst);
        shared.segments.store(segments, Ordering::SeqCst);
        shared.bytes.store(total_bytes, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: cfg.dir.clone(),
            segment_bytes: cfg.segment_bytes,
            file,
            path,
            size,
            chain,
            shared: shared.clone(),
            rx,
            _lock: lock,
            process_id: std::process::id(),
        };
        let handle = std::thread::Builder::new()
            .name("vibesync-wal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("spawn writer thread for", &cfg.dir, e))?;
        let wal =
            Wal { inner: Arc::new(Inner { tx: Some(tx), shared, dir: cfg.dir, writer: Mutex::new(Some(handle)) }) };
        Ok((wal, recovered.report))
    }

    fn submit(&self, drafts: Vec<RecordDraft>) -> Result<oneshot::Receiver<Result<Vec<Record>, WalError>>, WalError> {
        let (reply, rx) = oneshot::channel();
        self.send_append(drafts, Reply::Channel(reply))?;
        Ok(rx)
    }

    fn send_append(&self, drafts: Vec<RecordDraft>, reply: Reply) -> Result<(), WalError> {
        let shared = &self.inner.shared;
        if let Some(info) = &*shared.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(info.to_error());
        }
        let tx = self.inner.tx.as_ref().ok_or(WalError::Closed)?;
        tx.send(Msg::Append { drafts, reply }).map_err(|_| shared.dead_error())
    }

    /// Start an append without waiting for it: `then` is called with what
    /// [`append`](Wal::append) would return, on the writer thread, once the records are
    /// durable and verified (or the append failed). It must be quick (it delays the writer).
    /// An error here means the append was not started and `then` is never called. Lets one
    /// thread keep several appends in flight (the registrar's pipeline).
    pub fn append_then(
        &self,
        drafts: Vec<RecordDraft>,
        then: impl FnOnce(Result<Vec<Record>, WalError>) + Send + 'static,
    ) -> Result<(), WalError> {
        if drafts.is_empty() {
            then(Ok(Vec::new()));
            return Ok(());
        }
        self.send_append(drafts, Reply::Call(Box::new(then)))
    }

    /// Append the drafts as contiguous records and return them (with seq, ts, prev, h) once
    /// they are written, fdatasync'd and verified. Concurrent calls share one fdatasync.
    /// If the future is dropped after the call started, the records may still be written.
    pub async fn append(&self, drafts: Vec<RecordDraft>) -> Result<Vec<Record>, WalError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let rx = self.submit(drafts)?;
        rx.await.unwrap_or_else(|_| Err(self.inner.shared.dead_error()))
    }

    /// Blocking [`append`](Wal::append). Do not call it from async code (it panics inside a
    /// tokio runtime); use it from plain threads or `spawn_blocking`.
    pub fn append_blocking(&self, drafts: Vec<RecordDraft>) -> Result<Vec<Record>, WalError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let rx = self.submit(drafts)?;
        rx.blocking_recv().unwrap_or_else(|_| Err(self.inner.shared.dead_error()))
    }

    /// From now on, call `hook` with every durable record, in seq order, on the writer
    /// thread, before the appender is answered. Returns the seq of the last record made
    /// durable before the hook was installed: every later record goes to the hook, none
    /// earlier does. The hook must be quick (it delays every append). Replaces any
    /// previous hook.
    pub fn set_durable_hook(&self, hook: DurableHook) -> u64 {
        let mut h = self.inner.shared.hook.lock().unwrap_or_else(|e| e.into_inner());
        *h = Some(hook);
        self.inner.shared.last_seq.load(Ordering::SeqCst)
    }

    /// Account for segments a [`crate::compact`] removed (for [`Wal::stats`]).
    pub fn note_compacted(&self, segments: u64, bytes: u64) {
        let s = &self.inner.shared;
        let _ = s.segments.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(segments)));
        let _ = s.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
    }

    /// Seq of the last durable record.
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.last_seq.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> WalStats {
        let s = &self.inner.shared;
        WalStats {
            segments: s.segments.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            last_seq: s.last_seq.load(Ordering::SeqCst),
            appends: s.appends.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
        }
    }

    /// The poison error if a storage failure stopped the WAL.
    pub fn poisoned(&self) -> Option<WalError> {
        self.inner.shared.poisoned.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(PoisonInfo::to_error)
    }

    /// Graceful shutdown: everything queued before this call is written and synced, then
    /// the writer stops and releases the directory lock. Later appends fail with
    /// [`WalError::Closed`]. Returns the poison error if the WAL was poisoned.
    pub async fn close(&self) -> Result<(), WalError> {
        let rx = self.send_close();
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        self.finish_close()
    }

    /// Blocking [`close`](Wal::close) (not from async code).
    pub fn close_blocking(&self) -> Result<(), WalError> {
        if let Some(rx) = self.send_close() {
            let _ = rx.blocking_recv();
        }
        self.finish_close()
    }

    fn send_close(&self) -> Option<oneshot::Receiver<()>> {
        let (reply, rx) = oneshot::channel();
        let tx = self.inner.tx.as_ref()?;
        tx.send(Msg::Close { reply }).ok().map(|_| rx)
    }

    fn finish_close(&self) -> Result<(), WalError> {
        // The writer has exited (or is about to): join it so the lock is released on return.
        let handle = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.inner.shared.closed.store(true, Ordering::SeqCst);
        match self.poisoned() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Make the writer fail in the given way on its next write (tests only).
    #[cfg(feature = "fault-injection")]
    pub fn inject_fault(&self, fault: Fault) {
        self.inner.shared.fault.store(fault as u8, Ordering::SeqCst);
    }
}
