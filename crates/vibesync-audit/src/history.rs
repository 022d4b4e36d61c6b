//! Reading the audit history back and checking it against the WAL (`vibesync verify`):
//! the commits' seq ranges are ordered and never overlap, every FINAL of the WAL is in
//! exactly one commit (the one whose range holds its seq), no commit names an operation the
//! WAL did not finalize there, and each commit's `VibeSync-Wal-H` is the `h` of the record
//! it names. Pure apart from [`read_history`].

use std::collections::HashMap;
use std::path::Path;

use crate::error::AuditError;
use crate::repo::{self, operations, parse_range, trailer, BRANCH, TRAILER_WAL_H, TRAILER_WAL_SEQ};

/// One commit on `main`, as its trailers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub commit: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// `VibeSync-Operation` trailers, in order.
    pub operations: Vec<String>,
    /// `VibeSync-Wal-Seq` and `VibeSync-Wal-H` (absent in commits of older versions).
    pub wal: Option<(u64, String)>,
}

/// One FINAL record of the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalRef {
    pub seq: u64,
    pub operation_id: String,
    pub h: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Each a sentence naming the commit and seq.
    pub problems: Vec<String>,
    /// FINALs after the newest commit (normal lag after a crash: committed at next boot).
    pub unaudited: u64,
    /// Seq of the first unaudited FINAL.
    pub first_unaudited: Option<u64>,
}

/// Every commit on `main`, oldest first. An empty repository (no `main` yet: a daemon that
/// never finalized anything) has no history and is fine. A missing repository is an error.
pub fn read_history(git_dir: impl AsRef<Path>) -> Result<Vec<CommitInfo>, AuditError> {
    let git_dir = git_dir.as_ref();
    let repo = git2::Repository::open_bare(git_dir)
        .map_err(|source| AuditError::Open { path: git_dir.to_path_buf(), source })?;
    let git = |op: &'static str| {
        let path = git_dir.to_path_buf();
        move |source| AuditError::Git { op, path, source }
    };
    // A fresh repository has HEAD → main and no main yet (revwalk's push_ref reports that as
    // a generic error, so look the branch up first).
    let tip = match repo.find_reference(BRANCH) {
        Ok(r) => r.target().ok_or_else(|| AuditError::Inconsistent {
            path: git_dir.to_path_buf(),
            reason: format!("{BRANCH} is not a direct reference"),
        })?,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(git("read the main branch")(e)),
    };
    let mut walk = repo.revwalk().map_err(git("walk history"))?;
    walk.push(tip).map_err(git("read the main branch"))?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE).map_err(git("sort history"))?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid.map_err(git("walk history"))?;
        let commit = repo.find_commit(oid).map_err(git("read a commit"))?;
        commit.tree().map_err(git("read a commit's tree"))?;
        let message = commit.message().unwrap_or("");
        let (first_seq, last_seq) = parse_range(message).ok_or_else(|| AuditError::Inconsistent {
            path: git_dir.to_path_buf(),
            reason: format!("commit {oid} has no {} trailer", repo::TRAILER_RANGE),
        })?;
        let wal =
            match (trailer(message, TRAILER_WAL_SEQ).and_then(|s| s.parse().ok()), trailer(message, TRAILER_WAL_H)) {
                (Some(seq), Some(h)) => Some((seq, h.to_owned())),
                _ => None,
            };
        out.push(CommitInfo { commit: oid.to_string(), first_seq, last_seq, operations: operations(message), wal });
    }
    Ok(out)
}

/// At most this many problem lines; the rest are counted in one last line.
const MAX_PROBLEMS: usize = 50;

/// Check `history` (oldest first) against the WAL's FINALs (seq order) and its last seq.
pub fn check(history: &[CommitInfo], finals: &[FinalRef], wal_last_seq: u64) -> CheckReport {
    check_compacted(history, finals, wal_last_seq, 0)
}

/// [`check`] against a WAL compacted up to `compacted_upto` (docs/WAL.md §11): the records
/// at or before it are gone, so commits there are checked for order only, and a commit
/// whose range straddles it only for the FINALs that are still in the log.
pub fn check_compacted(
    history: &[CommitInfo],
    finals: &[FinalRef],
    wal_last_seq: u64,
    compacted_upto: u64,
) -> CheckReport {
    let mut problems = Vec::new();
    let mut prev: Option<&CommitInfo> = None;
    let mut f = 0usize; // next FINAL not yet placed
    for c in history {
        if c.first_seq > c.last_seq {
            problems.push(format!("commit {}: range {}-{} runs backwards", c.commit, c.first_seq, c.last_seq));
        }
        if let Some(p) = prev {
            if c.first_seq <= p.last_seq {
                problems.push(format!(
                    "commit {}: range {}-{} overlaps the previous commit {} ({}-{})",
                    c.commit, c.first_seq, c.last_seq, p.commit, p.first_seq, p.last_seq
                ));
            }
        }
        // FINALs before this commit's range that no earlier commit covered.
        while f < finals.len() && finals[f].seq < c.first_seq {
            if prev.is_none_or(|p| finals[f].seq > p.last_seq) {
                problems.push(format!(
                    "FINAL seq {} (operation {}) is in no audit commit (gap before commit {})",
                    finals[f].seq, finals[f].operation_id, c.commit
                ));
            }
            f += 1;
        }
        // FINALs inside the range must be exactly the commit's operations.
        let mut expected: HashMap<&str, i64> = HashMap::new();
        let start = f;
        while f < finals.len() && finals[f].seq <= c.last_seq {
            *expected.entry(finals[f].operation_id.as_str()).or_default() += 1;
            f += 1;
        }
        for op in &c.operations {
            *expected.entry(op.as_str()).or_default() -= 1;
        }
        for fin in &finals[start..f] {
            if expected.get(fin.operation_id.as_str()).copied().unwrap_or(0) > 0 {
                problems.push(format!(
                    "FINAL seq {} (operation {}) is missing from commit {} ({}-{})",
                    fin.seq, fin.operation_id, c.commit, c.first_seq, c.last_seq
                ));
                *expected.get_mut(fin.operation_id.as_str()).unwrap() -= 1;
            }
        }
        let straddles = c.first_seq <= compacted_upto;
        for (op, n) in &expected {
            if *n < 0 && !straddles {
                problems.push(format!(
                    "commit {} ({}-{}) names operation {op} {} time(s) more than the WAL finalized in that range",
                    c.commit, c.first_seq, c.last_seq, -n
                ));
            }
        }
        if let Some((seq, h)) = &c.wal {
            match finals[start..f].iter().find(|x| x.seq == *seq) {
                Some(x) if &x.h == h => {}
                Some(x) => problems.push(format!(
                    "commit {}: {TRAILER_WAL_H} {h} but the WAL record at seq {seq} has h {}: the WAL is not the log this history was written from",
                    c.commit, x.h
                )),
                None if *seq > wal_last_seq || *seq <= compacted_upto => {}
                None => problems.push(format!(
                    "commit {}: {TRAILER_WAL_SEQ} {seq} is not a FINAL record of the WAL",
                    c.commit
                )),
            }
        }
        prev = Some(c);
    }
    if let Some(last) = history.last() {
        if last.last_seq > wal_last_seq {
            problems.push(format!(
                "the audit history has seen seq {} (commit {}) but the WAL ends at seq {wal_last_seq}: the WAL lost its tail (docs/WAL.md §5); restore the WAL, or run `vibesync serve --repair` to rewind this history to the shorter log (its old head is kept under refs/vibesync/rewound) and continue from there",
                last.last_seq, last.commit
            ));
        }
    }
    let rest = &finals[f..];
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(format!("… and {more} more audit problems"));
    }
    CheckReport { problems, unaudited: rest.len() as u64, first_unaudited: rest.first().map(|x| x.seq) }
}
