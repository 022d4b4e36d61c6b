//! The ghost audit: a bare git repository at `<data_dir>/.git_safety/` whose history is a
//! trail of registry snapshots covering every FINALized operation of the WAL, in seq order.
//!
//! # Layout
//! * [`batch`] — what the audit is fed ([`FinalMark`]) and what one commit covers.
//! * `repo` — git: init/open the bare repository, snapshot trees, commits with trailers.
//! * `pack` — the pack stream of one commit (its snapshots, trees and commit), for libgit2's
//!   indexer.
//! * [`history`] — read the history back and check it against the WAL (`vibesync verify`).
//! * this file — [`Audit`], the handle to the audit thread and its queue.
//!
//! # Architecture invariant: one total order over FINALs
//! The daemon feeds [`Audit::note`] from the WAL writer's durable hook, so marks arrive in
//! seq order, exactly once, and only for durable records; boot catch-up feeds the FINALs
//! the history lacks the same way, in one seq-ordered pass over all projects, before any
//! live mark. Exactly one thread (the audit thread) owns the `git2::Repository` (it is
//! `Send`, not `Sync`). It commits in groups: one commit covers every mark noted since the
//! previous commit (at most [`AuditConfig::max_group`]), waiting at most
//! [`AuditConfig::group_ms`] after the oldest pending mark — or, once commits have become
//! expensive, [`AuditConfig::rest_factor`] times the previous commit's CPU time after it —
//! so the lag is bounded, the audit's share of a core is bounded, and the git cost is shared
//! by every FINAL of the group. Commit ranges tile the log: a commit
//! covers `previous last_seq + 1 ..= its last FINAL`, so there are no gaps and no overlaps,
//! whatever the number of projects, crashes or rebuilds.
//!
//! `note` never blocks on git. An audit failure is logged and counted
//! ([`AuditStats::failures`]) and the group is retried (sync is never affected). If the
//! pending marks exceed [`AuditConfig::max_pending`] (git failing for a long time), they
//! are dropped and the audit stops for this run ([`AuditStats::suspended`]) rather than
//! commit a later FINAL past a gap: the next boot catches up from the WAL. The repository is
//! derived data: libgit2 does not fsync, so after a crash the daemon re-notes the FINALs
//! newer than [`Audit::last_audited_seq`] from the WAL.
//!
//! # Tree and commit format
//! * `registry/<project_id>/<uuid>.json` — pretty JSON of each live (or quarantined) entry,
//!   as the registry holds it when the commit is built; once a project's directory holds
//!   [`FAN_OUT_AT`] entries, `registry/<project_id>/<first two hex digits of the
//!   uuid>/<uuid>.json` ([`project_entries`] reads either).
//! * `archive/<project_id>/<uuid>/<tombstone_seq>.json` — each archived version; archiving
//!   removes the `registry/` file.
//! * Commits on `refs/heads/main` (HEAD → main), author and committer
//!   `vibesync <vibesync@localhost>`, message:
//!   ```text
//!   vibesync: seq 41-57 (3 operations, 5 entries)
//!
//!   VibeSync-Seq-Range: 41-57
//!   VibeSync-Operation: <operation id>      (one line per FINAL, in seq order)
//!   VibeSync-Entries: 5
//!   VibeSync-Wal-Seq: 57
//!   VibeSync-Wal-H: <h of the WAL record at seq 57>
//!   ```
//!
//! # Storage: one pack per commit
//! A commit's new objects (changed snapshots, the trees on their paths, the commit) are
//! written as **one packfile**, indexed, before `main` moves to the commit: no loose object
//! files (creating one file per object was the audit's largest cost). The trees and the
//! commit are built in memory (libgit2's mempack backend); the snapshots go straight into
//! the pack stream (module `pack`: libgit2 re-reads the pack directory for each object
//! it stores). Once [`MERGE_AT_PACKS`] packs of fewer than
//! [`SMALL_PACK_OBJECTS`] objects exist, the audit thread merges the smallest of them
//! (rolled up geometrically, `repo::packs_to_merge`) into one (module `merge`): each
//! object's entry copied as it is, and each whole tree or snapshot re-encoded once as a delta
//! against the next version of its path when the merge holds both (module `delta`) — and
//! removes them (after the merged pack and its index are synced and in place), so the pack
//! count stays bounded.
//! Nothing is rewritten: the same objects, repacked. `git --git-dir <data_dir>/.git_safety gc`
//! stays safe while the daemon runs.
//! `fsck --strict` is clean.

pub mod batch;
mod delta;
mod error;
pub mod history;
mod merge;
mod pack;
mod repo;

use std::collections::{HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use batch::{AuditBatch, AuditContent, AuditEntry, FinalMark};
pub use error::AuditError;
pub use history::{check, check_compacted, read_history, CheckReport, CommitInfo, FinalRef};
pub use repo::{
    commit_message, operations, parse_range, project_entries, trailer, Head, BRANCH, FAN_OUT_AT, MERGE_AT_PACKS,
    SMALL_PACK_OBJECTS, TRAILER_ENTRIES, TRAILER_OPERATION, TRAILER_RANGE, TRAILER_WAL_H, TRAILER_WAL_SEQ,
};

/// The registry content of `(project_id, uuid)` when a commit covering WAL seqs up to `upto`
/// is built: the versions archived at a seq after `since` and at most `upto` (oldest first),
/// then the live record if it was last changed at or before `upto`. A record changed after
/// `upto` (the registry applies a COMMIT before its FINAL reaches the audit) is left out:
/// the commit of that later FINAL carries it, so no commit holds a state newer than the seq
/// it records. Empty: nothing to write. `Err` (what failed): the registry could not be read
/// for that uuid — never taken as "nothing to write": the commit is not made and the group is
/// retried like a failed commit. Called on the audit thread.
pub type Snapshot = Box<dyn Fn(&str, &str, u64, u64) -> Result<Vec<AuditContent>, String> + Send>;

/// Tuning for [`Audit::open_with`].
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Wait at most this long after the oldest pending mark before committing the group
    /// (the lag bound). 0 = commit as soon as the thread is free. Default 200.
    pub group_ms: u64,
    /// At most this many FINALs per commit (bounds one commit's memory). Default 10,000.
    pub max_group: usize,
    /// Pending marks beyond this suspend the audit for the run (see the crate docs).
    /// Default 1,000,000.
    pub max_pending: usize,
    /// Wait this long before retrying a group whose commit failed. Default 1,000.
    pub retry_ms: u64,
    /// After a commit that took `t` of CPU, the next one waits until `rest_factor × t` after
    /// it ended (or [`AuditConfig::group_ms`] after its oldest mark, whichever is later; a
    /// full group or a flush does not wait). A commit rewrites the directories it touches, so
    /// its cost grows with the project: under load the audit then takes at most
    /// `1 / (rest_factor + 1)` of a core and makes fewer, larger commits, and the lag grows
    /// instead (reported by `lag_ms`). 0 = no rest. Default 4.
    pub rest_factor: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { group_ms: 200, max_group: 10_000, max_pending: 1_000_000, retry_ms: 1_000, rest_factor: 4 }
    }
}

/// Counters for `vibesync status` (`audit:{…}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditStats {
    /// `last_seq` of the newest commit on main.
    pub last_audited_seq: u64,
    /// Commits on main (counted at open, then incremented).
    pub commits: u64,
    /// FINALs committed since open.
    pub finals: u64,
    /// Commit attempts that failed (git errors, panics); their group is retried.
    pub failures: u64,
    /// Entries left out of a commit because they cannot be paths (their FINAL is covered).
    pub rejected_entries: u64,
    /// FINALs noted and not yet committed.
    pub pending: usize,
    /// Age of the oldest pending FINAL, ms (0 when none).
    pub lag_ms: u64,
    /// Marks ignored because their seq was already noted.
    pub duplicates: u64,
    /// CPU time the audit thread spent building commits since open, µs.
    pub cpu_us: u64,
    /// True once pending marks were dropped (see [`AuditConfig::max_pending`]).
    pub suspended: bool,
    pub last_error: Option<String>,
}

struct Pending {
    mark: FinalMark,
    at: Instant,
}

struct Queue {
    marks: VecDeque<Pending>,
    /// Seq of the newest mark noted (or audited): marks at or below it are duplicates.
    noted_seq: u64,
    busy: bool,
    closing: bool,
    /// A `flush` is waiting: commit without waiting for the group window.
    urgent: bool,
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
    cfg: AuditConfig,
    head: Option<Head>,
    path: PathBuf,
}

/// What the newest commit of the repository at `git_dir` covers, without starting anything
/// (None: no repository or no commit yet). Errors mean the repository is damaged.
pub fn head(git_dir: impl AsRef<Path>) -> Result<Option<Head>, AuditError> {
    let git_dir = git_dir.as_ref();
    if !git_dir.join("HEAD").exists() {
        return Ok(None);
    }
    let repo = git2::Repository::open_bare(git_dir)
        .map_err(|source| AuditError::Open { path: git_dir.to_path_buf(), source })?;
    repo::AuditRepo::with(repo, git_dir).head()
}

/// Move `main` back to the newest commit whose range ends at or before `to_seq` (no branch
/// if there is none), for a WAL whose tail was cut on purpose (`--repair`) or by recovery:
/// the commits after it covered FINALs the WAL no longer has. Nothing is deleted: the old
/// head stays reachable as `refs/vibesync/rewound/<old last seq>-<unix time>`. Returns the
/// new head and how many commits left `main`.
pub fn rewind(git_dir: impl AsRef<Path>, to_seq: u64) -> Result<(Option<Head>, u64), AuditError> {
    let git_dir = git_dir.as_ref();
    let r = repo::AuditRepo::open(git_dir)?;
    let Some(old) = r.head()? else { return Ok((None, 0)) };
    let git = |op: &'static str| {
        let path = git_dir.to_path_buf();
        move |source| AuditError::Git { op, path, source }
    };
    let old_oid = git2::Oid::from_str(&old.commit).map_err(git("parse the head id"))?;
    let mut c = r.repo.find_commit(old_oid).map_err(git("read a commit"))?;
    let mut dropped = 0u64;
    let keep = loop {
        let end = c.message().and_then(parse_range).map(|(_, e)| e).unwrap_or(u64::MAX);
        if end <= to_seq {
            break Some(c);
        }
        dropped += 1;
        match c.parent(0) {
            Ok(p) => c = p,
            Err(_) => break None,
        }
    };
    if dropped == 0 {
        return Ok((Some(old), 0));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let keep_ref = format!("refs/vibesync/rewound/{}-{now}", old.last_seq);
    r.repo
        .reference(&keep_ref, old_oid, true, "vibesync: history kept before a rewind")
        .map_err(git("keep the old head"))?;
    match &keep {
        Some(k) => {
            r.repo.reference(BRANCH, k.id(), true, "vibesync: rewind to the WAL").map_err(git("move main back"))?;
        }
        None => {
            r.repo.find_reference(BRANCH).and_then(|mut b| b.delete()).map_err(git("remove main"))?;
        }
    }
    tracing::warn!(path = %git_dir.display(), to_seq, dropped, kept_as = %keep_ref, "audit: history rewound to the WAL's end");
    drop(keep);
    Ok((r.head()?, dropped))
}

impl Audit {
    /// Open (or create) the bare repository at `git_dir` and start the audit thread.
    pub fn open(git_dir: impl AsRef<Path>, snapshot: Snapshot) -> Result<Audit, AuditError> {
        Self::open_with(git_dir, AuditConfig::default(), snapshot)
    }

    pub fn open_with(git_dir: impl AsRef<Path>, cfg: AuditConfig, snapshot: Snapshot) -> Result<Audit, AuditError> {
        let git_dir = git_dir.as_ref().to_path_buf();
        let repo = repo::AuditRepo::open(&git_dir)?;
        let head = repo.head()?;
        let last = head.as_ref().map(|h| h.last_seq).unwrap_or(0);
        let commits = repo.commit_count();
        tracing::info!(path = %git_dir.display(), last_audited_seq = last, commits, "audit: opened");
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                marks: VecDeque::new(),
                noted_seq: last,
                busy: false,
                closing: false,
                urgent: false,
                stats: AuditStats { last_audited_seq: last, commits, ..Default::default() },
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let wcfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("vibesync-audit".into())
            .spawn(move || run(repo, worker, wcfg, snapshot, last))
            .map_err(|source| AuditError::Spawn { source })?;
        Ok(Audit { shared, thread: Mutex::new(Some(thread)), cfg, head, path: git_dir })
    }

    /// The newest commit when the repository was opened.
    pub fn head_at_open(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// A durable FINAL, in seq order. Never blocks on git; a mark at or below the last
    /// noted seq is a duplicate and ignored. Fails only after [`Audit::close`].
    pub fn note(&self, mark: FinalMark) -> Result<(), AuditError> {
        let mut q = self.shared.q.lock().unwrap();
        if q.closing {
            return Err(AuditError::Closed);
        }
        if mark.seq <= q.noted_seq {
            q.stats.duplicates += 1;
            return Ok(());
        }
        q.noted_seq = mark.seq;
        if q.stats.suspended {
            return Ok(());
        }
        if q.marks.len() >= self.cfg.max_pending {
            let dropped = q.marks.len();
            q.marks.clear();
            q.stats.suspended = true;
            q.stats.last_error = Some(format!(
                "audit suspended: {dropped} FINALs pending (git failing or too slow); they are committed from the WAL at the next boot"
            ));
            tracing::error!(
                dropped,
                "audit suspended for this run: too many pending FINALs; the next boot catches up from the WAL"
            );
            drop(q);
            self.shared.idle.notify_all();
            return Ok(());
        }
        q.marks.push_back(Pending { mark, at: Instant::now() });
        let first = q.marks.len() == 1;
        drop(q);
        if first {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// `last_seq` of the newest audit commit (0 = none).
    pub fn last_audited_seq(&self) -> u64 {
        self.shared.q.lock().unwrap().stats.last_audited_seq
    }

    pub fn stats(&self) -> AuditStats {
        let q = self.shared.q.lock().unwrap();
        let mut s = q.stats.clone();
        s.pending = q.marks.len();
        s.lag_ms = q.marks.front().map(|p| p.at.elapsed().as_millis() as u64).unwrap_or(0);
        s
    }

    /// Block until every noted FINAL is committed (or the audit is suspended), at most
    /// `timeout`. Commits at once instead of waiting for the group window.
    pub fn flush(&self, timeout: Duration) -> Result<(), AuditError> {
        let start = Instant::now();
        let mut q = self.shared.q.lock().unwrap();
        q.urgent = true;
        self.shared.work.notify_all();
        while !q.marks.is_empty() || q.busy {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(AuditError::FlushTimeout {
                    pending: q.marks.len(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            q = self.shared.idle.wait_timeout(q, left).unwrap().0;
        }
        q.urgent = false;
        Ok(())
    }

    /// Stop accepting marks, commit what is pending, join the thread. Idempotent.
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

/// CPU time of the calling thread, µs (0 where unsupported).
fn thread_cpu_us() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
        }
    }
    0
}

/// The batch for `marks`: range from `prev_last + 1`, operations in seq order, the entries
/// of each distinct (project, uuid) in first-touched order, content read now.
fn build_batch(prev_last: u64, marks: &[FinalMark], snapshot: &Snapshot) -> Result<AuditBatch, AuditError> {
    let last = marks.last().expect("a group has at least one mark");
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for m in marks {
        for u in &m.uuids {
            if seen.insert((m.project_id.as_str(), u.as_str())) {
                let contents =
                    snapshot(&m.project_id, u, prev_last, last.seq).map_err(|reason| AuditError::SnapshotRead {
                        project_id: m.project_id.clone(),
                        uuid: u.clone(),
                        first_seq: prev_last + 1,
                        last_seq: last.seq,
                        reason,
                    })?;
                for content in contents {
                    entries.push(AuditEntry { project_id: m.project_id.clone(), uuid: u.clone(), content });
                }
            }
        }
    }
    Ok(AuditBatch {
        first_seq: prev_last + 1,
        last_seq: last.seq,
        wal_h: last.h.clone(),
        operation_ids: marks.iter().map(|m| m.operation_id.clone()).collect(),
        entries,
    })
}

fn run(repo: repo::AuditRepo, shared: Arc<Shared>, cfg: AuditConfig, snapshot: Snapshot, mut prev_last: u64) {
    // Derived, background work, never on the acknowledgement path: a starved audit makes
    // fewer, larger commits.
    vibesync_wal::background::lower_thread_priority("audit");
    let window = Duration::from_millis(cfg.group_ms);
    let mut failed_at: Option<Instant> = None;
    // When the previous commit ended, and the rest it earned (`AuditConfig::rest_factor`).
    let mut rested_until: Option<Instant> = None;
    loop {
        let group: Vec<FinalMark> = {
            let mut q = shared.q.lock().unwrap();
            loop {
                if q.closing && (q.marks.is_empty() || failed_at.is_some()) {
                    if !q.marks.is_empty() {
                        tracing::error!(pending = q.marks.len(), "audit: closing with uncommitted FINALs after a failure; the next boot commits them from the WAL");
                    }
                    q.busy = false;
                    shared.idle.notify_all();
                    return;
                }
                let Some(oldest) = q.marks.front().map(|p| p.at) else {
                    q = shared.work.wait(q).unwrap();
                    continue;
                };
                // Wait for the group window (or the retry delay) unless told to hurry.
                let due = match failed_at {
                    Some(t) => t + Duration::from_millis(cfg.retry_ms),
                    None => rested_until.map_or(oldest + window, |r| r.max(oldest + window)),
                };
                let now = Instant::now();
                if now < due && !q.closing && !q.urgent && q.marks.len() < cfg.max_group {
                    q = shared.work.wait_timeout(q, due - now).unwrap().0;
                    continue;
                }
                let n = q.marks.len().min(cfg.max_group);
                q.busy = true;
                break q.marks.iter().take(n).map(|p| p.mark.clone()).collect();
            }
        };
        let cpu0 = thread_cpu_us();
        let (first_seq, last_seq) = (prev_last + 1, group.last().map_or(prev_last, |m| m.seq));
        let r = catch_unwind(AssertUnwindSafe(|| {
            let batch = build_batch(prev_last, &group, &snapshot)?;
            repo.commit_batch(&batch).map(|done| (done, batch.entries.len()))
        }))
        .unwrap_or_else(|p| Err(AuditError::Panicked { first_seq, last_seq, message: panic_message(p) }));
        if r.is_ok() {
            // The commit is in and `main` moved: a failed merge is only logged (the small
            // packs stay and the next commit tries again).
            match catch_unwind(AssertUnwindSafe(|| repo.merge_small_packs())) {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(packs = n, "audit: merged small packs"),
                Ok(Err(e)) => tracing::warn!(error = %e, "audit: merging small packs failed; they are kept"),
                Err(p) => tracing::error!("audit: merging small packs panicked: {}", panic_message(p)),
            }
        }
        let cpu = thread_cpu_us().saturating_sub(cpu0);
        rested_until = Some(Instant::now() + Duration::from_micros(cpu.saturating_mul(cfg.rest_factor as u64)));
        let mut q = shared.q.lock().unwrap();
        q.stats.cpu_us += cpu;
        match r {
            Ok(((oid, rejected), entries)) => {
                failed_at = None;
                let n = group.len();
                // `note` may have cleared the queue (suspension) meanwhile: drain only ours.
                if !q.stats.suspended {
                    let k = n.min(q.marks.len());
                    q.marks.drain(..k);
                }
                prev_last = last_seq;
                q.stats.commits += 1;
                q.stats.finals += n as u64;
                q.stats.last_audited_seq = last_seq;
                for e in &rejected {
                    tracing::error!("audit: entry left out of commit {oid}: {e}");
                }
                q.stats.rejected_entries += rejected.len() as u64;
                tracing::debug!(first_seq, last_seq, commit = %oid, finals = n, entries, cpu_us = cpu, "audit: committed");
            }
            Err(e) => {
                failed_at = Some(Instant::now());
                q.stats.failures += 1;
                q.stats.last_error = Some(e.to_string());
                tracing::error!(first_seq, last_seq, error = %e, "audit: commit failed; retrying the group");
            }
        }
        q.busy = false;
        if q.marks.is_empty() {
            shared.idle.notify_all();
        }
    }
}

/// Offline structural check of an audit repository: it opens, every commit on `main` is
/// readable with its tree and carries a `VibeSync-Seq-Range` trailer, and the ranges grow
/// without overlapping. Returns the last audited seq (0 for a repository with no commit).
/// Completeness against the WAL is [`history::check`].
pub fn verify(git_dir: impl AsRef<Path>) -> Result<u64, AuditError> {
    let git_dir = git_dir.as_ref();
    let hist = read_history(git_dir)?;
    for w in hist.windows(2) {
        if w[1].first_seq <= w[0].last_seq {
            return Err(AuditError::Inconsistent {
                path: git_dir.to_path_buf(),
                reason: format!(
                    "commit {} range {}-{} overlaps the previous commit (ended at {})",
                    w[1].commit, w[1].first_seq, w[1].last_seq, w[0].last_seq
                ),
            });
        }
    }
    Ok(hist.last().map(|c| c.last_seq).unwrap_or(0))
}
