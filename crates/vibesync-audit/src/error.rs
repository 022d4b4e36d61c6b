//! The one error type of this crate.

use std::path::PathBuf;

/// Audit failures. The audit repository is derived data (rebuildable from the WAL): an
/// error here never stops sync; it is logged, counted in [`crate::AuditStats::failures`]
/// and the audit thread goes on.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("could not open or create the audit repository {path}: {source}; move the directory away and restart to recreate it from the WAL")]
    Open {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },

    #[error("audit repository {path}: {op} failed: {source}; check permissions and free disk space (`git --git-dir {path} fsck` to inspect)")]
    Git {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: git2::Error,
    },

    #[error("audit repository {}: {op} failed: {source}; check permissions and free disk space", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("audit entry {project_id}/{uuid} rejected: {reason}; the daemon must pass validated project ids and lowercase uuids")]
    BadEntry { project_id: String, uuid: String, reason: String },

    #[error("audit commit of seq {first_seq}-{last_seq} not made: the registry could not be read for {project_id}/{uuid} ({reason}); the group is retried, nothing is left out")]
    SnapshotRead { project_id: String, uuid: String, first_seq: u64, last_seq: u64, reason: String },

    #[error("audit batch seq {first_seq}-{last_seq} rejected: {reason}")]
    BadBatch { first_seq: u64, last_seq: u64, reason: String },

    #[error("audit repository {} is inconsistent: {reason}. It is derived data: move it aside and the daemon rebuilds the history of the WAL it still has at its next boot", path.display())]
    Inconsistent { path: PathBuf, reason: String },

    #[error("could not start the audit thread: {source}")]
    Spawn {
        #[source]
        source: std::io::Error,
    },

    #[error("audit queue not drained after {waited_ms} ms ({pending} batches pending); the audit thread is slow or stuck, see its log")]
    FlushTimeout { pending: usize, waited_ms: u128 },

    #[error("the audit thread is closed; no more batches are accepted")]
    Closed,

    #[error("the audit thread panicked while committing seq {first_seq}-{last_seq}: {message}")]
    Panicked { first_seq: u64, last_seq: u64, message: String },
}
