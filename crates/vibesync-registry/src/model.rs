//! An in-memory registry: the reference the sled registry is compared against
//! (`parity`), and the working copy of a schema migration.

use std::collections::BTreeMap;

use vibesync_wal::{Phase, Record};

use crate::entry::{Counts, Entry, Status};
use crate::error::Result;
use crate::ops::{self, ApplyReport, Base, Staging};

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Model {
    pub live: BTreeMap<(String, String), Entry>,
    pub archive: BTreeMap<(String, String, u64), Entry>,
    pub last_applied_seq: u64,
}

impl Base for Model {
    fn live(&self, project: &str, uuid: &str) -> Result<Option<Entry>> {
        Ok(self.live.get(&(project.to_owned(), uuid.to_owned())).cloned())
    }
}

impl Model {
    /// Same semantics as `Registry::apply_committed`, schema always current.
    pub fn apply_transaction(&mut self, records: &[Record]) -> Result<ApplyReport> {
        let (operation_id, commit_seq, steps) = ops::split_transaction(records)?;
        let mut report = ApplyReport { operation_id, commit_seq, ..Default::default() };
        if commit_seq <= self.last_applied_seq {
            return Ok(report);
        }
        let mut st = Staging::default();
        let at = ops::writes_seq(&steps, commit_seq);
        for r in steps {
            ops::apply_step(self, &mut st, &mut report, r, at)?;
        }
        self.merge(st);
        self.last_applied_seq = commit_seq;
        report.applied = true;
        Ok(report)
    }

    pub fn merge(&mut self, st: Staging) {
        for (key, (_, value)) in st.live {
            match value {
                Some(e) => {
                    self.live.insert(key, e);
                }
                None => {
                    self.live.remove(&key);
                }
            }
        }
        for e in st.archive {
            let seq = e.archive_seq();
            self.archive.insert((e.project_id.clone(), e.uuid.clone(), seq), e);
        }
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts { tombstoned: self.archive.len() as u64, ..Counts::default() };
        for e in self.live.values() {
            match e.status {
                Status::Quarantined => c.quarantined += 1,
                _ => c.live += 1,
            }
        }
        c
    }

    /// Rebuild from a WAL scan: from nothing (a whole log), or from a compacted log's base
    /// snapshot and then its kept records.
    pub fn from_base_and_wal<I: IntoIterator<Item = Record>>(
        base: Option<&crate::registry::RegistryBase>,
        records: I,
    ) -> Result<(Model, u64)> {
        let mut m = Model::default();
        if let Some(b) = base {
            for e in &b.entries {
                match e.status {
                    Status::Tombstoned => {
                        let s = e.archive_seq();
                        m.archive.insert((e.project_id.clone(), e.uuid.clone(), s), e.clone());
                    }
                    _ => {
                        m.live.insert((e.project_id.clone(), e.uuid.clone()), e.clone());
                    }
                }
            }
            m.last_applied_seq = b.seq;
        }
        let mut g = Grouper::default();
        for r in records {
            if let Some(txn) = g.push(r) {
                m.apply_transaction(&txn)?;
            }
        }
        Ok((m, g.last_seq))
    }
}

/// Groups a WAL record stream into committed transactions (STEPs + COMMIT), in commit order.
/// BEGIN/PROVISIONAL/FINAL carry no registry mutation; ROLLBACK discards the transaction;
/// transactions without COMMIT at the end of the log are dropped.
#[derive(Default)]
pub(crate) struct Grouper {
    pub open: std::collections::HashMap<String, Vec<Record>>,
    pub last_seq: u64,
    pub commits: u64,
    /// Seq of a COMMIT to look for (the registry's `last_applied_seq`).
    pub watch_commit: Option<u64>,
    pub watch_found: bool,
}

impl Grouper {
    pub fn push(&mut self, r: Record) -> Option<Vec<Record>> {
        self.last_seq = self.last_seq.max(r.seq);
        match r.phase {
            Phase::Step => {
                // Only registry steps are kept: foreign steps can be large (sync payloads).
                if matches!(ops::parse_payload(&r.payload), ops::ParsedStep::Foreign) {
                    self.open.entry(r.operation_id.clone()).or_default();
                } else {
                    self.open.entry(r.operation_id.clone()).or_default().push(r);
                }
                None
            }
            Phase::Commit => {
                self.commits += 1;
                if self.watch_commit == Some(r.seq) {
                    self.watch_found = true;
                }
                let mut txn = self.open.remove(&r.operation_id).unwrap_or_default();
                txn.push(r);
                Some(txn)
            }
            Phase::Rollback => {
                self.open.remove(&r.operation_id);
                None
            }
            Phase::Begin | Phase::Provisional | Phase::Final => None,
        }
    }
}
