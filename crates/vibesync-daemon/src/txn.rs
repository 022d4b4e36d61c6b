//! The shape of the daemon's WAL transactions, in one place: BEGIN, one STEP per payload,
//! COMMIT (written together, one group commit), later FINAL.

use serde_json::Value;
use vibesync_wal::{Outcome, Phase, RecordDraft};

/// `session_id` of the WAL records of sync batches (boot recovery tells them apart by it).
pub use vibesync_engine::project::SYNC_SESSION;

/// Who writes a transaction and what it is about.
pub struct Txn<'a> {
    pub session_id: &'a str,
    pub operation_id: &'a str,
    pub project_id: &'a str,
}

impl Txn<'_> {
    pub fn draft(&self, phase: Phase, uuids: Vec<String>, outcome: Outcome, payload: Value) -> RecordDraft {
        RecordDraft {
            session_id: self.session_id.to_string(),
            operation_id: self.operation_id.to_string(),
            uuids,
            project_id: self.project_id.to_string(),
            phase,
            outcome,
            error_code: None,
            payload,
        }
    }

    /// BEGIN (`begin` payload), a STEP per payload (its `uuid` field names the uuid), COMMIT.
    pub fn drafts(&self, uuids: &[String], begin: Value, steps: Vec<Value>, commit: Value) -> Vec<RecordDraft> {
        let mut out = Vec::with_capacity(steps.len() + 2);
        out.push(self.draft(Phase::Begin, uuids.to_vec(), Outcome::Pending, begin));
        for s in steps {
            let u = s["uuid"].as_str().map(|s| vec![s.to_string()]).unwrap_or_default();
            out.push(self.draft(Phase::Step, u, Outcome::Ok, s));
        }
        out.push(self.draft(Phase::Commit, uuids.to_vec(), Outcome::Ok, commit));
        out
    }

    /// FINAL: the transaction's side effects (registry, sidecar) are done.
    pub fn final_draft(&self, uuids: Vec<String>, payload: Value) -> RecordDraft {
        self.draft(Phase::Final, uuids, Outcome::Ok, payload)
    }
}
