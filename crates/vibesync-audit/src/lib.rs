//! The ghost audit: a bare git repository at `<data_dir>/.git_safety/` whose history is a
//! trail of registry snapshots, one commit per FINALized batch of operations.
//!
//! # Layout
//! * [`batch`] — what the daemon submits ([`AuditBatch`], [`AuditEntry`], [`AuditContent`]).
//! * `repo` — git: init/open the bare repo, snapshot trees, commits with trailers.
//! * this file — [`Audit`], the handle to the audit thread and its queue.
//!
//! # Architecture invariant
//! Exactly one thread (the audit thread) owns the `git2::Repository` (it is `Send`, not
//! `Sync`). The daemon only talks to it through [`Audit::submit`], which never blocks on
//! git: the queue holds at most `queue_capacity` batches; when it is full, the new batch is
//! **coalesced** into the newest queued batch (one commit covering both seq ranges, later
//! entries win) instead of blocking or dropping. An audit failure is logged and counted
//! ([`AuditStats::failures`]); the thread keeps going and sync is never affected. The
//! repository is derived data: libgit2 does not fsync, so after a crash the daemon
//! re-submits FINALs newer than [`Audit::last_audited_seq`] from the WAL. Batches whose
//! `last_seq` ≤ `last_audited_seq` are skipped (idempotent re-submission).
//!
//! # Tree and commit format
//! * `registry/<project_id>/<uuid>.json` — pretty JSON of each live (or quarantined) entry.
//! * `archive/<project_id>/<uuid>/<tombstone_seq>.json` — each archived version; archiving
//!   removes the `registry/` file.
//! * Commits on `refs/heads/main` (HEAD → main), author and committer
//!   `vibesync <vibesync@localhost>`, message:
//!   ```text
//!   vibesync: seq 41-57 (3 operations, 5 entries)
//!
//!   VibeSync-Seq-Range: 41-57
//!   VibeSync-Operation: <operation id>      (one line per operation)
//!   VibeSync-Entries: 5
//!   ```
//!
//! # Maintenance
//! libgit2 has no `gc`: every commit writes its blobs and trees as loose objects (about
//! 2 + entries + depth objects per commit), and nothing packs them. Run
//! `git --git-dir <data_dir>/.git_safety gc` from time to time (safe while the daemon runs;
//! `vibesync` may schedule it later). `fsck --strict` is clean.

pub mod batch;
mod error;
mod repo;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use batch::{AuditBatch, AuditContent, AuditEntry};
pub use error::AuditError;
pub use repo::{commit_message, parse_range, BRANCH, TRAILER_ENTRIES, TRAILER_OPERATION, TRAILER_RANGE};

/// Tuning for [`Audit::open_with`].
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Batches queued before new ones are coalesced into the newest. Default 64.
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { queue_capacity: 64 }
    }
}

/// Counters for `vibesync status` (`audit:{last_audited_seq, lag, failures}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditStats {
    /// `last_seq` of the newest commit on main.
    pub last_audited_seq: u64,
    /// Commits on main (counted at open, then incremented).
    pub commits: u64,
    /// Batches that failed (bad data, git errors, panics); their seqs stay unaudited.
    pub failures: u64,
    /// Batches queued or being committed.
    pub pending: usize,
    /// Submissions folded into an already queued batch because the queue was full.
    pub coalesced: u64,
    /// Batches skipped because they were already audited.
    pub skipped: u64,
    pub last_error: Option<String>,
}

/// What [`Audit::submit`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// The queue was full: merged into the newest queued batch.
    Coalesced,
}

struct Queue {
    batches: VecDeque<AuditBatch>,
    busy: bool,
    closing: bool,
    stats: AuditStats,
}

struct Shared {
    q: Mutex<Queue>,
    work: Condvar,
    idle: Condvar,
}

/// Handle to the audit thread. `Send + Sync`; share it behind an `Arc`.
pub struct Audit {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    capacity: usize,
    path: PathBuf,
}

impl Audit {
    /// Open (or create) the bare repository at `git_dir` and start the audit thread.
    pub fn open(git_dir: impl AsRef<Path>) -> Result<Audit, AuditError> {
        Self::open_with(git_dir, AuditConfig::default())
    }

    pub fn open_with(git_dir: impl AsRef<Path>, cfg: AuditConfig) -> Result<Audit, AuditError> {
        let git_dir = git_dir.as_ref().to_path_buf();
        let repo = repo::AuditRepo::open(&git_dir)?;
        let last = repo.last_audited_seq()?;
        let commits = repo.commit_count();
        tracing::info!(path = %git_dir.display(), last_audited_seq = last, commits, "audit: opened");
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                batches: VecDeque::new(),
                busy: false,
                closing: false,
                stats: AuditStats { last_audited_seq: last, commits, ..Default::default() },
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vibesync-audit".into())
            .spawn(move || run(repo, worker))
            .map_err(|source| AuditError::Spawn { source })?;
        Ok(Audit { shared, thread: Mutex::new(Some(thread)), capacity: cfg.queue_capacity.max(1), path: git_dir })
    }

    /// Queue a batch. Never blocks on git; fails only after [`Audit::close`].
    pub fn submit(&self, batch: AuditBatch) -> Result<Submitted, AuditError> {
        let mut q = self.shared.q.lock().unwrap();
        if q.closing {
            return Err(AuditError::Closed);
        }
        let how = if q.batches.len() >= self.capacity {
            q.batches.back_mut().expect("capacity >= 1").merge(batch);
            q.stats.coalesced += 1;
            Submitted::Coalesced
        } else {
            q.batches.push_back(batch);
            Submitted::Queued
        };
        drop(q);
        self.shared.work.notify_one();
        Ok(how)
    }

    /// `last_seq` of the newest audit commit (0 = none).
    pub fn last_audited_seq(&self) -> u64 {
        self.shared.q.lock().unwrap().stats.last_audited_seq
    }

    pub fn stats(&self) -> AuditStats {
        let q = self.shared.q.lock().unwrap();
        let mut s = q.stats.clone();
        s.pending = q.batches.len() + usize::from(q.busy);
        s
    }

    /// Block until every submitted batch is committed (or failed), at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), AuditError> {
        let start = Instant::now();
        let mut q = self.shared.q.lock().unwrap();
        while !q.batches.is_empty() || q.busy {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(AuditError::FlushTimeout {
                    pending: q.batches.len() + usize::from(q.busy),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            q = self.shared.idle.wait_timeout(q, left).unwrap().0;
        }
        Ok(())
    }

    /// Stop accepting batches, commit what is queued, join the thread. Idempotent.
    pub fn close(&self) {
        self.shared.q.lock().unwrap().closing = true;
        self.shared.work.notify_all();
        if let Some(t) = self.thread.lock().unwrap().take() {
            if t.join().is_err() {
                tracing::error!("audit: thread ended by panic");
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        self.close();
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn run(repo: repo::AuditRepo, shared: Arc<Shared>) {
    loop {
        let (batch, last_audited) = {
            let mut q = shared.q.lock().unwrap();
            loop {
                if let Some(b) = q.batches.pop_front() {
                    q.busy = true;
                    break (b, q.stats.last_audited_seq);
                }
                if q.closing {
                    return;
                }
                q = shared.work.wait(q).unwrap();
            }
        };
        let outcome = if batch.last_seq <= last_audited && last_audited > 0 {
            None
        } else {
            let r = catch_unwind(AssertUnwindSafe(|| repo.commit_batch(&batch))).unwrap_or_else(|p| {
                Err(AuditError::Panicked {
                    first_seq: batch.first_seq,
                    last_seq: batch.last_seq,
                    message: panic_message(p),
                })
            });
            Some(r)
        };
        let mut q = shared.q.lock().unwrap();
        match outcome {
            None => {
                q.stats.skipped += 1;
                tracing::debug!(
                    first_seq = batch.first_seq,
                    last_seq = batch.last_seq,
                    "audit: batch already audited, skipped"
                );
            }
            Some(Ok(oid)) => {
                q.stats.commits += 1;
                q.stats.last_audited_seq = q.stats.last_audited_seq.max(batch.last_seq);
                tracing::debug!(first_seq = batch.first_seq, last_seq = batch.last_seq, commit = %oid, entries = batch.entries.len(), "audit: committed");
            }
            Some(Err(e)) => {
                q.stats.failures += 1;
                q.stats.last_error = Some(e.to_string());
                tracing::error!(first_seq = batch.first_seq, last_seq = batch.last_seq, error = %e, "audit: batch not committed");
            }
        }
        q.busy = false;
        if q.batches.is_empty() {
            shared.idle.notify_all();
        }
    }
}

/// Offline check of an audit repository (used by `vibesync verify`): the repository opens,
/// every commit on `main` is readable with its tree, carries a `VibeSync-Seq-Range` trailer,
/// and the ranges grow from the oldest commit to the newest. Returns the last audited seq.
/// Does not create anything: a missing repository is an error.
pub fn verify(git_dir: impl AsRef<Path>) -> Result<u64, AuditError> {
    let git_dir = git_dir.as_ref();
    let repo = git2::Repository::open_bare(git_dir)
        .map_err(|source| AuditError::Open { path: git_dir.to_path_buf(), source })?;
    let bad = |reason: String| AuditError::Inconsistent { path: git_dir.to_path_buf(), reason };
    let git = |op: &'static str| {
        let path = git_dir.to_path_buf();
        move |source| AuditError::Git { op, path, source }
    };
    let mut walk = repo.revwalk().map_err(git("walk history"))?;
    match walk.push_ref(repo::BRANCH) {
        Ok(()) => {}
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(0),
        Err(e) => return Err(git("read the main branch")(e)),
    }
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE).map_err(git("sort history"))?;
    let mut last = 0u64;
    for oid in walk {
        let oid = oid.map_err(git("walk history"))?;
        let commit = repo.find_commit(oid).map_err(git("read a commit"))?;
        commit.tree().map_err(git("read a commit's tree"))?;
        let (first, end) = commit
            .message()
            .and_then(parse_range)
            .ok_or_else(|| bad(format!("commit {oid} has no VibeSync-Seq-Range trailer")))?;
        if first <= last && last != 0 {
            return Err(bad(format!(
                "commit {oid} range {first}-{end} overlaps the previous commit (ended at {last})"
            )));
        }
        last = end;
    }
    Ok(last)
}
