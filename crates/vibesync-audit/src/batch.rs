//! What the audit is fed (one [`FinalMark`] per durable FINAL record) and what one commit
//! covers ([`AuditBatch`]).

use serde_json::Value;

/// The registry content of one entry when its commit is built.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditContent {
    /// Live (or quarantined) record → `registry/<project>/<uuid>.json`.
    Live(Value),
    /// Tombstoned record → `archive/<project>/<uuid>/<tombstone_seq>.json`, and
    /// `registry/<project>/<uuid>.json` is removed.
    Archived { tombstone_seq: u64, value: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub project_id: String,
    pub uuid: String,
    pub content: AuditContent,
}

/// One durable FINAL record of the WAL: what the audit must cover, fed in seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalMark {
    pub seq: u64,
    /// The record's `h` (docs/WAL.md §5): the commit that covers it anchors the hash chain.
    pub h: String,
    pub operation_id: String,
    pub project_id: String,
    pub uuids: Vec<String>,
}

/// One git commit: every FINAL with seq in `first_seq..=last_seq`, in seq order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditBatch {
    /// The previous commit's `last_seq` + 1 (1 for the first commit): ranges tile the log.
    pub first_seq: u64,
    /// Seq of the last FINAL covered.
    pub last_seq: u64,
    /// `h` of the record at `last_seq`.
    pub wal_h: String,
    /// One per FINAL covered, in seq order.
    pub operation_ids: Vec<String>,
    /// Applied in order: a later entry for the same path wins.
    pub entries: Vec<AuditEntry>,
}
