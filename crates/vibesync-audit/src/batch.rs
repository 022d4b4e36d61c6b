//! What the daemon submits: one batch of finalized operations and the registry entries
//! they touched.

use serde_json::Value;

/// The registry content of one entry at the end of the batch.
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

/// One or more FINALized operations, committed as one git commit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditBatch {
    pub first_seq: u64,
    pub last_seq: u64,
    pub operation_ids: Vec<String>,
    /// Applied in order: a later entry for the same path wins.
    pub entries: Vec<AuditEntry>,
}

impl AuditBatch {
    /// Fold `later` into `self` (used when the queue is full): one commit covering both seq
    /// ranges; entries keep their order so the later state wins.
    pub fn merge(&mut self, later: AuditBatch) {
        if self.operation_ids.is_empty() && self.entries.is_empty() && self.first_seq == 0 && self.last_seq == 0 {
            *self = later;
            return;
        }
        self.first_seq = self.first_seq.min(later.first_seq);
        self.last_seq = self.last_seq.max(later.last_seq);
        // Operation ids are unique per FINAL; no dedup (it would be quadratic under load).
        self.operation_ids.extend(later.operation_ids);
        self.entries.extend(later.entries);
    }
}
