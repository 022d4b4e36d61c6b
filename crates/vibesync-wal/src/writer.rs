//! The single writer thread: owns the current segment, drains every pending append, writes
//! them with one write and one fdatasync (group commit), reads the bytes back, then replies.
//! Any write, sync or verification failure poisons the WAL: the thread replies with the
//! error to everyone waiting and stops.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::chain::ChainState;
use crate::error::WalError;
use crate::record::{Record, RecordDraft, SCHEMA_VERSION};
use crate::segment::{fsync_dir, now_ts, segment_file_name, DirLock};
use crate::wal::{PoisonInfo, Shared};

/// How an append is answered: a channel the appender waits on, or a call made on this
/// thread (`Wal::append_then`).
pub(crate) enum Reply {
    Channel(oneshot::Sender<Result<Vec<Record>, WalError>>),
    Call(Box<dyn FnOnce(Result<Vec<Record>, WalError>) + Send>),
}

impl Reply {
    pub(crate) fn send(self, outcome: Result<Vec<Record>, WalError>) {
        match self {
            Reply::Channel(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Call(then) => then(outcome),
        }
    }
}

pub(crate) enum Msg {
    Append { drafts: Vec<RecordDraft>, reply: Reply },
    Close { reply: oneshot::Sender<()> },
}

/// Stop draining once this many records are queued for one write (bounds memory/latency).
const MAX_BATCH_RECORDS: usize = 65_536;

pub(crate) struct Writer {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub file: File,
    pub path: PathBuf,
    /// Length of the current segment that is durable and verified.
    pub size: u64,
    pub chain: ChainState,
    pub shared: Arc<Shared>,
    pub rx: Receiver<Msg>,
    /// Held for the writer's lifetime; dropping it lets another process open the WAL.
    pub _lock: DirLock,
    pub process_id: u32,
}

struct Job {
    records: Vec<Record>,
    reply: Reply,
}

/// Bytes for the current segment not yet written, and the seq of their first record.
struct Pending {
    buf: Vec<u8>,
    first_seq: u64,
}

impl Writer {
    pub(crate) fn run(mut self) {
        loop {
            let first = match self.rx.recv() {
                Ok(m) => m,
                Err(_) => break, // every handle dropped
            };
            let mut msgs = vec![first];
            let mut queued = 0usize;
            let mut disconnected = false;
            while queued < MAX_BATCH_RECORDS {
                match self.rx.try_recv() {
                    Ok(m) => {
                        if let Msg::Append { drafts, .. } = &m {
                            queued += drafts.len();
                        }
                        msgs.push(m);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let mut jobs = Vec::new();
            let mut drafts_per_job = Vec::new();
            let mut close_replies = Vec::new();
            for m in msgs {
                match m {
                    Msg::Append { drafts, reply } => {
                        drafts_per_job.push(drafts);
                        jobs.push(reply);
                    }
                    Msg::Close { reply } => close_replies.push(reply),
                }
            }
            if !jobs.is_empty() {
                if let Err(info) = self.commit(drafts_per_job, jobs) {
                    self.poison(info);
                    return;
                }
            }
            if !close_replies.is_empty() {
                self.shared.closed.store(true, Ordering::SeqCst);
                tracing::info!(last_seq = self.chain.last_seq(), "WAL closed");
                for r in close_replies {
                    let _ = r.send(());
                }
                return;
            }
            if disconnected {
                break;
            }
        }
    }

    /// Seal, write, sync, verify, reply. On failure the jobs were already answered with
    /// the poison error.
    fn commit(&mut self, drafts_per_job: Vec<Vec<RecordDraft>>, replies: Vec<Reply>) -> Result<(), PoisonInfo> {
        let ts = now_ts();
        let mut jobs: Vec<Job> = Vec::with_capacity(replies.len());
        let mut pending = Pending { buf: Vec::new(), first_seq: self.chain.next_seq };
        let mut result = Ok(());
        let mut replies = replies.into_iter();
        for drafts in drafts_per_job {
            let reply = replies.next().expect("one reply per job");
            let first_seq = self.chain.next_seq;
            let mut job_buf = Vec::new();
            let mut records = Vec::with_capacity(drafts.len());
            for d in drafts {
                let mut r = Record {
                    seq: self.chain.next_seq,
                    ts: ts.clone(),
                    process_id: self.process_id,
                    session_id: d.session_id,
                    operation_id: d.operation_id,
                    uuids: d.uuids,
                    project_id: d.project_id,
                    phase: d.phase,
                    outcome: d.outcome,
                    error_code: d.error_code,
                    schema_version: SCHEMA_VERSION,
                    payload: d.payload,
                    prev: self.chain.last_h.clone(),
                    h: String::new(),
                };
                job_buf.extend_from_slice(&r.seal());
                self.chain.advance(r.seq, &r.h);
                records.push(r);
            }
            let in_segment = self.size + pending.buf.len() as u64;
            if in_segment > 0 && in_segment + job_buf.len() as u64 > self.segment_bytes {
                // One call's records stay in one segment; the batch so far goes first.
                if let Err(e) = self.flush(&mut pending).and_then(|_| self.rotate(first_seq)) {
                    result = Err(e);
                    jobs.push(Job { records, reply });
                    break;
                }
                pending.first_seq = first_seq;
            }
            pending.buf.extend_from_slice(&job_buf);
            jobs.push(Job { records, reply });
        }
        if result.is_ok() {
            result = self.flush(&mut pending);
        }
        match result {
            Ok(()) => {
                let n: u64 = jobs.iter().map(|j| j.records.len() as u64).sum();
                self.shared.records.fetch_add(n, Ordering::Relaxed);
                self.shared.appends.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                {
                    let hook = self.shared.hook.lock().unwrap_or_else(|e| e.into_inner());
                    self.shared.last_seq.store(self.chain.last_seq(), Ordering::SeqCst);
                    if let Some(hook) = &*hook {
                        for j in &jobs {
                            hook(&j.records);
                        }
                    }
                }
                tracing::trace!(
                    last_seq = self.chain.last_seq(),
                    appends = jobs.len(),
                    records = n,
                    "WAL group commit"
                );
                for j in jobs {
                    j.reply.send(Ok(j.records));
                }
                Ok(())
            }
            Err(info) => {
                // Poison first, so a caller that retries at once already sees it.
                self.shared.set_poisoned(info.clone());
                let err = info.to_error();
                for j in jobs {
                    if let Some(r) = j.records.first() {
                        tracing::error!(operation_id = %r.operation_id, seq = r.seq, "WAL append failed: {err}");
                    }
                    j.reply.send(Err(info.to_error()));
                }
                // Jobs not reached in this drain (after a failed rotation).
                for reply in replies {
                    reply.send(Err(info.to_error()));
                }
                Err(info)
            }
        }
    }

    /// Write `pending` at the end of the current segment, fdatasync, read back, compare.
    fn flush(&mut self, pending: &mut Pending) -> Result<(), PoisonInfo> {
        if pending.buf.is_empty() {
            return Ok(());
        }
        let offset = self.size;
        let fail = |cause: String| PoisonInfo { file: self.path.clone(), offset, seq: pending.first_seq, cause };
        let fault = self.shared.take_fault();
        if fault == Some(crate::Fault::FailNextWrite) {
            return Err(fail("write failed: injected fault".into()));
        }
        (|| {
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.write_all(&pending.buf)
        })()
        .map_err(|e| fail(format!("write of {} bytes failed: {e}", pending.buf.len())))?;
        if fault == Some(crate::Fault::FailNextSync) {
            return Err(fail("fdatasync failed: injected fault".into()));
        }
        self.file.sync_data().map_err(|e| fail(format!("fdatasync failed: {e}")))?;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        // Write verification (docs/WAL.md §6): the bytes the file returns are the bytes we wrote.
        let mut back = vec![0u8; pending.buf.len()];
        (|| {
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(&mut back)
        })()
        .map_err(|e| fail(format!("read-back after fdatasync failed: {e}")))?;
        if fault == Some(crate::Fault::CorruptNextReadBack) {
            back[0] ^= 0xff;
        }
        if back != pending.buf {
            let at = back.iter().zip(&pending.buf).position(|(a, b)| a != b).unwrap_or(0);
            return Err(fail(format!("write verification failed: read-back differs at byte {}", offset + at as u64)));
        }
        self.size += pending.buf.len() as u64;
        self.shared.bytes.fetch_add(pending.buf.len() as u64, Ordering::Relaxed);
        pending.buf.clear();
        Ok(())
    }

    /// Start a new segment named by `first_seq`; fsync the directory so the entry is durable.
    fn rotate(&mut self, first_seq: u64) -> Result<(), PoisonInfo> {
        let path = self.dir.join(segment_file_name(first_seq));
        let fail = |cause: String| PoisonInfo { file: path.clone(), offset: 0, seq: first_seq, cause };
        let file = create_segment(&path).map_err(|e| fail(format!("creating segment failed: {e}")))?;
        fsync_dir(&self.dir).map_err(|e| fail(format!("fsync of WAL directory failed: {e}")))?;
        tracing::info!(segment = %path.display(), first_seq, "WAL segment rotated");
        self.file = file;
        self.path = path;
        self.size = 0;
        self.shared.segments.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn poison(&mut self, info: PoisonInfo) {
        tracing::error!(
            file = %info.file.display(),
            offset = info.offset,
            seq = info.seq,
            "WAL poisoned: {}; every further append fails",
            info.cause
        );
        // Best effort: drop the unacknowledged bytes so a restart does not find records
        // nobody was told about. Not relied upon (the disk may be failing).
        if let Err(e) = self.file.set_len(self.size) {
            tracing::error!(file = %self.path.display(), "could not cut unacknowledged bytes: {e}");
        }
        self.shared.set_poisoned(info.clone());
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Append { reply, .. }) => {
                    reply.send(Err(info.to_error()));
                }
                Ok(Msg::Close { reply }) => {
                    let _ = reply.send(());
                }
                Err(_) => break,
            }
        }
    }
}

pub(crate) fn create_segment(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create_new(true).open(path)
}

pub(crate) fn open_segment(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}
