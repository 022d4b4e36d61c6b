//! The boot checkpoint (docs/WAL.md §9): the WAL position up to which the registry and the
//! audit are known good, so a restart reads only the records after it.
//!
//! One background thread (the checkpointer) follows the log: every [`FLUSH_EVERY`] it
//! flushes the registry if anything was applied (a sled flush is an fsync: never on an
//! acknowledgement path or an async worker), and every [`CHECKPOINT_EVERY`] — and at a clean
//! shutdown — it writes `<data_dir>/checkpoint.json`. A checkpoint at seq S promises:
//!
//! * every transaction with a record at or before S is settled (FINAL or ROLLBACK) — so a
//!   boot that starts after S misses no open transaction, and the records after S that belong
//!   to such transactions are expected leftovers;
//! * the registry was flushed with a watermark (`registry_seq`) at or above the COMMIT of
//!   every transaction that began at or before S;
//! * every FINAL at or before S is in the audit (`audit_seq`, when the audit is on);
//! * `kept` holds every record at or before S that boot-derived state needs besides the
//!   registry (ROLLBACKs and late or correcting sync COMMITs for replays, governance and
//!   quarantine steps, the COMMITs that covered a not-synced uuid: `vibesync_engine::notsynced`), in
//!   seq order.
//!
//! The file is checksummed and replaced atomically. Boot uses it only if the WAL record it
//! names is really there with the same `h`, the registry is at least at `registry_seq` and
//! the audit at least at `audit_seq`; otherwise boot reads the whole log, as without one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};
use vibesync_audit::Audit;
use vibesync_registry::Registry;
use vibesync_wal::{
    parse_segment_name, segment_stamps, Phase, Position, Reader, Record, ResumeAt, SegmentStamp, TxIndex,
    TxIndexBuilder, Wal,
};

use vibesync_engine::notsynced::NotSyncedIndex;

/// File name under the data dir.
pub const FILE: &str = "checkpoint.json";
/// Format version of the file. 2: `kept` also holds the COMMITs that covered a not-synced
/// uuid; a version 1 file is set aside like a damaged one (boot reads the whole log once).
pub const VERSION: u32 = 2;
/// How often a dirty registry is flushed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often a checkpoint is written while the log grows.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// What `<data_dir>/checkpoint.json` holds (see the module docs for what it promises).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Records 1..=seq are covered.
    pub seq: u64,
    /// `h` of record `seq`.
    pub h: String,
    /// First seq of the segment holding record `seq`.
    pub segment: u64,
    /// Byte offset just past record `seq`'s line in that segment.
    pub offset: u64,
    /// Size and modification time of the segments before `segment` (sealed).
    pub sealed: Vec<SegmentStamp>,
    /// The registry's `last_applied_seq` when it was flushed for this checkpoint.
    pub registry_seq: u64,
    /// The audit's last audited seq (None: audit off).
    pub audit_seq: Option<u64>,
    /// Records at or before `seq` that boot needs besides the registry, in seq order.
    pub kept: Vec<Record>,
    pub written_at: String,
}

impl Checkpoint {
    pub fn resume_at(&self) -> ResumeAt {
        ResumeAt {
            seq: self.seq,
            h: self.h.clone(),
            segment: self.segment,
            offset: self.offset,
            sealed: self.sealed.clone(),
        }
    }

    pub fn position(&self) -> Position {
        Position { segment: self.segment, offset: self.offset }
    }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Read the checkpoint. `Ok(None)`: there is none. `Err`: it is damaged (torn, checksum,
/// version), with the reason; boot then reads the whole log.
pub fn load(data_dir: &Path) -> Result<Option<Checkpoint>, String> {
    let p = path(data_dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| format!("{}: not UTF-8: {e}", p.display()))?;
    let (body, sum) = text
        .strip_suffix('\n')
        .and_then(|t| t.rsplit_once('\n'))
        .ok_or_else(|| format!("{}: torn (no checksum line)", p.display()))?;
    if blake3::hash(body.as_bytes()).to_hex().as_str() != sum {
        return Err(format!("{}: checksum mismatch (torn or edited)", p.display()));
    }
    let c: Checkpoint = serde_json::from_str(body).map_err(|e| format!("{}: {e}", p.display()))?;
    if c.version != VERSION {
        return Err(format!("{}: version {} (this build reads {VERSION})", p.display(), c.version));
    }
    Ok(Some(c))
}

/// Write the checkpoint durably (temp file, fsync, rename, fsync of the directory).
pub fn write(data_dir: &Path, c: &Checkpoint) -> std::io::Result<()> {
    let body = serde_json::to_string(c).map_err(std::io::Error::other)?;
    let sum = blake3::hash(body.as_bytes()).to_hex();
    crate::fsutil::write_atomic(&path(data_dir), format!("{body}\n{sum}\n").as_bytes(), None)
}

/// Move a damaged checkpoint aside (never deleted) so the next one can be written.
pub fn set_aside(data_dir: &Path, quarantine: &Path) {
    let from = path(data_dir);
    if let Err(e) = vibesync_wal::fsutil::set_aside(&from, quarantine, "checkpoint", ".json") {
        warn!("could not move {} to {}: {e}", from.display(), quarantine.display());
    }
}

/// Does boot need this record besides the registry? ROLLBACKs (replays, governance), any
/// record with an error code, a sync batch's COMMIT that names late or corrected uuids
/// (replays, `late_commit_of`), and every STEP that is not a plain registry data op
/// (governance resets, disabled op kinds, quarantines and releases, conflicts, migrations).
pub fn keep(r: &Record) -> bool {
    if r.phase == Phase::Rollback || r.error_code.is_some() || vibesync_engine::project::late_commit_of(r).is_some() {
        return true;
    }
    r.phase == Phase::Step
        && !matches!(
            r.payload.get("op").and_then(serde_json::Value::as_str),
            Some("register" | "update" | "state" | "tombstone" | "duplicate" | "unchanged")
        )
}

/// Drop each `kept` STEP whose every uuid a later `kept` STEP of its project names: boot's fold
/// takes the last record of each uuid (docs/WAL.md §9 "Kept uuids"), so the result is the
/// same, and the checkpoint (and a compaction's `carry`) does not grow with every change of
/// what editors keep.
fn drop_superseded_kept_steps(kept: &mut Vec<Record>) {
    let is_kept = vibesync_engine::project::is_kept_step;
    if !kept.iter().any(is_kept) {
        return;
    }
    let mut named: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut drop = vec![false; kept.len()];
    for (i, r) in kept.iter().enumerate().rev() {
        if !is_kept(r) {
            continue;
        }
        let key = |u: &String| (r.project_id.clone(), u.clone());
        drop[i] = r.uuids.iter().all(|u| named.contains(&key(u)));
        named.extend(r.uuids.iter().map(key));
    }
    let mut i = 0;
    kept.retain(|_| {
        i += 1;
        !drop[i - 1]
    });
}

/// The checkpointer's incremental view of the log.
pub struct Tracker {
    wal_dir: PathBuf,
    data_dir: PathBuf,
    /// Where the next unread record starts (None: the start of the log).
    pos: Option<Position>,
    /// Operations with a BEGIN read and no FINAL/ROLLBACK yet. Fed from a checkpoint (or the
    /// start of a compacted log) on: records of operations settled before it are expected.
    open: TxIndexBuilder,
    /// End positions of the records read since the last checkpoint: (seq, segment, end, h).
    ends: VecDeque<(u64, u64, u64, String)>,
    /// Records `keep` wants that are after the last checkpoint.
    pending: Vec<Record>,
    /// The not-synced uuids as of `last_read`: a record that changes them is kept too.
    not_synced: NotSyncedIndex,
    last: Option<Checkpoint>,
    last_read: u64,
}

impl Tracker {
    /// Continue from `from` (the checkpoint boot used), or from the start of the log, which
    /// after a compaction starts with what the anchor carries (`carry`, docs/WAL.md §11).
    pub fn new(wal_dir: PathBuf, data_dir: PathBuf, from: Option<Checkpoint>, carry: Vec<Record>) -> Tracker {
        let mut not_synced = NotSyncedIndex::default();
        for r in from.as_ref().map_or(&carry, |c| &c.kept) {
            not_synced.observe(r);
        }
        Tracker {
            not_synced,
            wal_dir,
            data_dir,
            pos: from.as_ref().map(Checkpoint::position),
            open: TxIndexBuilder::resuming(),
            ends: VecDeque::new(),
            pending: if from.is_some() { Vec::new() } else { carry },
            last_read: from.as_ref().map_or(0, |c| c.seq),
            last: from,
        }
    }

    /// The last checkpoint written or loaded.
    pub fn last(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    /// Read the records up to `upto` (durable ones only).
    fn read_to(&mut self, upto: u64) -> Result<(), String> {
        if self.last_read >= upto {
            return Ok(());
        }
        let reader = match self.pos {
            Some(p) => Reader::open_at(&self.wal_dir, p),
            None => Reader::open(&self.wal_dir),
        }
        .map_err(|e| e.to_string())?;
        for entry in reader {
            let e = entry.map_err(|p| p.to_string())?;
            let r = e.record;
            if r.seq > upto {
                break;
            }
            let segment = e
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_segment_name)
                .ok_or_else(|| format!("{}: not a segment name", e.file.display()))?;
            let end = e.offset + e.len;
            self.pos = Some(Position { segment, offset: end });
            self.open.observe_record(&r);
            if self.not_synced.observe(&r) | keep(&r) {
                self.pending.push(r.clone());
            }
            self.ends.push_back((r.seq, segment, end, r.h));
            self.last_read = r.seq;
            if r.seq == upto {
                break;
            }
        }
        Ok(())
    }

    /// Follow the log to its durable end, flush the registry and write a checkpoint if it
    /// moved. Blocking (runs on the checkpointer thread, or at shutdown).
    pub fn checkpoint(&mut self, wal: &Wal, registry: &Registry, audit: Option<&Audit>) -> Result<(), String> {
        let durable = wal.last_seq();
        self.read_to(durable)?;
        let mut seq = self.last_read;
        if let Some(oldest) = self.open.oldest_open() {
            seq = seq.min(oldest - 1);
        }
        let audit_seq = audit.map(|a| a.last_audited_seq());
        if let Some(a) = audit_seq {
            seq = seq.min(a);
        }
        if seq <= self.last.as_ref().map_or(0, |c| c.seq) {
            return Ok(());
        }
        // Every transaction that began at or before `seq` was settled by `durable`, hence
        // applied to the registry before this read of its watermark.
        let registry_seq = registry.last_applied_seq();
        registry.flush().map_err(|e| format!("registry flush: {e}"))?;
        while self.ends.front().is_some_and(|(s, ..)| *s < seq) {
            self.ends.pop_front();
        }
        let Some((_, segment, offset, h)) = self.ends.front().filter(|(s, ..)| *s == seq).cloned() else {
            return Ok(()); // not read in this run (only possible before the first read)
        };
        let mut kept = self.last.as_ref().map(|c| c.kept.clone()).unwrap_or_default();
        // Taken from `pending` only once the checkpoint holding them is written: a write that
        // fails leaves them for the next one.
        let split = self.pending.partition_point(|r| r.seq <= seq);
        kept.extend(self.pending[..split].iter().cloned());
        drop_superseded_kept_steps(&mut kept);
        let sealed = segment_stamps(&self.wal_dir, segment).map_err(|e| format!("segment stamps: {e}"))?;
        let c = Checkpoint {
            version: VERSION,
            seq,
            h,
            segment,
            offset,
            sealed,
            registry_seq,
            audit_seq,
            kept,
            written_at: crate::now_rfc3339(),
        };
        write(&self.data_dir, &c).map_err(|e| format!("write {}: {e}", path(&self.data_dir).display()))?;
        debug!(seq, registry_seq, ?audit_seq, "checkpoint written");
        self.pending.drain(..split);
        self.last = Some(c);
        Ok(())
    }

    /// Follow the log to its durable end; then what a boot there would seed `project`'s sync
    /// with: the records boot-derived state needs ([`keep`]) of `project`, in seq order, and
    /// the not-synced fold; and the project's sync batches left open (`session` is the sync's
    /// session id), which a boot would roll back or finalize. A project's sync restarting after a step
    /// panicked starts from it (docs/WAL.md §9). Blocking.
    pub fn seed_now(&mut self, wal: &Wal, project: &str, session: &str) -> Result<SeedNow, String> {
        self.read_to(wal.last_seq())?;
        let checkpointed = self.last.iter().flat_map(|c| c.kept.iter());
        let records = checkpointed.chain(&self.pending).filter(|r| r.project_id == project).cloned().collect();
        Ok(SeedNow {
            records,
            not_synced: self.not_synced.project(project).into_values().collect(),
            kept: self.not_synced.kept(project),
            open: self.open.open_of(project, session),
        })
    }
}

/// What [`Tracker::seed_now`] reads for one project.
pub struct SeedNow {
    /// The project's records that boot-derived state needs, in seq order.
    pub records: Vec<Record>,
    pub not_synced: Vec<vibesync_engine::notsynced::NotSynced>,
    pub kept: Vec<(String, vibesync_engine::notsynced::KeptOf)>,
    /// The project's sync batches still open: with a BEGIN and neither COMMIT nor ROLLBACK
    /// (`incomplete`), or committed without a FINAL (`unfinalized`).
    pub open: TxIndex,
}

/// The checkpointer thread's handles; it stops when `stop` is set or the registry is gone.
pub struct Checkpointer {
    pub tracker: Arc<Mutex<Tracker>>,
    pub stop: Arc<AtomicBool>,
}

pub fn spawn(
    tracker: Arc<Mutex<Tracker>>,
    wal: Wal,
    registry: Weak<Registry>,
    audit: Option<Weak<Audit>>,
    dirty: Arc<AtomicBool>,
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("vibesync-checkpointer".into())
        .spawn(move || {
            // The registry's write-behind is background work: ingest runs first.
            vibesync_wal::background::lower_thread_priority("checkpointer");
            let mut last = Instant::now();
            loop {
                std::thread::sleep(FLUSH_EVERY);
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Some(reg) = registry.upgrade() else { return };
                if dirty.swap(false, Ordering::SeqCst) {
                    if let Err(e) = reg.flush() {
                        dirty.store(true, Ordering::SeqCst);
                        error!("registry flush failed (the WAL has every change; boot catches up): {e}");
                    }
                }
                if last.elapsed() < CHECKPOINT_EVERY || wal.poisoned().is_some() {
                    continue;
                }
                last = Instant::now();
                let audit = audit.as_ref().and_then(Weak::upgrade);
                let t = Instant::now();
                if let Err(e) = tracker.lock().unwrap().checkpoint(&wal, &reg, audit.as_deref()) {
                    warn!("checkpoint not written (boot will read more of the log): {e}");
                } else if t.elapsed() > Duration::from_secs(1) {
                    info!(elapsed_ms = t.elapsed().as_millis() as u64, "checkpoint pass");
                }
            }
        })
        .expect("spawn the checkpointer");
    stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kept_step(seq: u64, project: &str, uuids: &[&str]) -> Record {
        let kept: serde_json::Map<String, serde_json::Value> =
            uuids.iter().map(|u| (u.to_string(), json!({"here":["c"],"held":{}}))).collect();
        Record {
            seq,
            ts: "2026-12-01T00:00:00.000000Z".into(),
            process_id: 1,
            session_id: crate::txn::SYNC_SESSION.into(),
            operation_id: format!("op{seq}"),
            uuids: uuids.iter().map(|u| u.to_string()).collect(),
            project_id: project.into(),
            phase: Phase::Step,
            outcome: vibesync_wal::Outcome::Ok,
            error_code: None,
            schema_version: 1,
            payload: json!({"op":"kept","kept":kept}),
            prev: String::new(),
            h: String::new(),
        }
    }

    /// A `kept` STEP stays while a uuid it names is named by no later one of its project;
    /// other kept records are never dropped.
    #[test]
    fn a_kept_step_leaves_the_checkpoint_once_later_ones_name_all_its_uuids() {
        let mut other = kept_step(2, "p", &["x"]);
        other.payload = json!({"op":"late_delete","tombstone_seq":1,"after_seq":1});
        let mut kept = vec![
            kept_step(1, "p", &["a", "b"]),
            other,
            kept_step(3, "p", &["a"]),
            kept_step(4, "q", &["b"]),
            kept_step(5, "p", &["c"]),
            kept_step(6, "p", &["b", "c"]),
        ];
        drop_superseded_kept_steps(&mut kept);
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4, 6]);
    }
}
