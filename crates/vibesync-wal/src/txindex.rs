//! The transaction index, as pure logic over records: which operations are still open.
//!
//! Lifecycle: `BEGIN → STEP… → PROVISIONAL? → COMMIT | ROLLBACK`, and `FINAL` after
//! `COMMIT`. `ROLLBACK` closes an operation (a later `FINAL` is accepted and ignored).
//! A `STEP` outside any open operation is a standalone event and not tracked.

use std::collections::{HashMap, HashSet};

use crate::record::{Phase, Record, RecordHead};

/// An operation with `BEGIN` and neither `COMMIT` nor `ROLLBACK`. The daemon rolls it back
/// (`ROLLBACK` with error_code `RECOVERED_INCOMPLETE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteTx {
    pub operation_id: String,
    pub session_id: String,
    pub project_id: String,
    /// Every uuid named by the operation's records (BEGIN and STEPs), first appearance first.
    pub uuids: Vec<String>,
    pub begin_seq: u64,
    /// Seq of the operation's last record.
    pub last_seq: u64,
    /// A `PROVISIONAL` record was written (the fast path may already have shown the change).
    pub provisional: bool,
}

/// An operation with `COMMIT` and no `FINAL`. The daemon re-verifies or finalizes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinalizedTx {
    pub operation_id: String,
    pub session_id: String,
    pub project_id: String,
    pub uuids: Vec<String>,
    pub begin_seq: u64,
    pub commit_seq: u64,
}

/// A record that does not fit the lifecycle (e.g. `COMMIT` without `BEGIN`). Reported, never
/// fatal: the log is still the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxAnomaly {
    pub seq: u64,
    pub operation_id: String,
    pub description: String,
}

/// Open operations at the end of the log. Both lists are ordered by `begin_seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxIndex {
    pub incomplete: Vec<IncompleteTx>,
    pub unfinalized: Vec<UnfinalizedTx>,
    /// At most [`MAX_ANOMALIES`] entries; `anomaly_count` has the total.
    pub anomalies: Vec<TxAnomaly>,
    pub anomaly_count: u64,
}

/// Cap on stored anomalies, so a strange log cannot exhaust memory at boot.
pub const MAX_ANOMALIES: usize = 1000;

#[derive(Debug, Clone)]
struct OpenTx {
    session_id: String,
    project_id: String,
    uuids: Vec<String>,
    begin_seq: u64,
    last_seq: u64,
    provisional: bool,
    commit_seq: Option<u64>,
}

/// Feed records in seq order, then [`finish`](TxIndexBuilder::finish).
#[derive(Debug, Default)]
pub struct TxIndexBuilder {
    open: HashMap<String, OpenTx>,
    anomalies: Vec<TxAnomaly>,
    anomaly_count: u64,
    /// Fed from a checkpoint on: records of operations that began before it (and were
    /// settled, docs/WAL.md §9) are expected, not anomalies.
    resuming: bool,
}

impl TxIndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder fed from a checkpoint on, not from the first record.
    pub fn resuming() -> Self {
        TxIndexBuilder { resuming: true, ..Self::default() }
    }

    pub fn observe(&mut self, r: &RecordHead<'_>) {
        let op = r.operation_id.as_ref();
        match r.phase {
            Phase::Begin => {
                if let Some(tx) = self.open.get_mut(op) {
                    let first = tx.begin_seq;
                    tx.uuids.extend(r.uuids.iter().map(|u| u.to_string()));
                    tx.last_seq = r.seq;
                    self.anomaly(r, format!("BEGIN again while the operation is open since seq {first}"));
                } else {
                    self.open.insert(
                        op.to_string(),
                        OpenTx {
                            session_id: r.session_id.to_string(),
                            project_id: r.project_id.to_string(),
                            uuids: r.uuids.iter().map(|u| u.to_string()).collect(),
                            begin_seq: r.seq,
                            last_seq: r.seq,
                            provisional: false,
                            commit_seq: None,
                        },
                    );
                }
            }
            Phase::Step => {
                if let Some(tx) = self.open.get_mut(op) {
                    tx.uuids.extend(r.uuids.iter().map(|u| u.to_string()));
                    tx.last_seq = r.seq;
                }
            }
            Phase::Provisional => match self.open.get_mut(op) {
                Some(tx) if tx.commit_seq.is_none() => {
                    tx.provisional = true;
                    tx.last_seq = r.seq;
                }
                Some(_) => self.anomaly(r, "PROVISIONAL after COMMIT".into()),
                None => self.orphan(r, "PROVISIONAL"),
            },
            Phase::Commit => match self.open.get_mut(op) {
                Some(tx) if tx.commit_seq.is_none() => {
                    tx.commit_seq = Some(r.seq);
                    tx.last_seq = r.seq;
                }
                Some(_) => self.anomaly(r, "second COMMIT".into()),
                None => self.orphan(r, "COMMIT"),
            },
            Phase::Rollback => {
                if self.open.remove(op).is_none() {
                    self.orphan(r, "ROLLBACK");
                }
            }
            Phase::Final => match self.open.get(op) {
                Some(tx) if tx.commit_seq.is_some() => {
                    self.open.remove(op);
                }
                Some(_) => self.anomaly(r, "FINAL before COMMIT".into()),
                // After ROLLBACK, or for an operation closed earlier: nothing to track.
                None => {}
            },
        }
    }

    pub fn observe_record(&mut self, r: &Record) {
        self.observe(&r.head());
    }

    /// The BEGIN seq of the oldest operation still open (no ROLLBACK, or COMMIT and no FINAL).
    pub fn oldest_open(&self) -> Option<u64> {
        self.open.values().map(|tx| tx.begin_seq).min()
    }

    /// The open operations of session `session_id` in project `project_id` so far, as
    /// [`TxIndexBuilder::finish`] would list them (without anomalies); the builder goes on.
    pub fn open_of(&self, project_id: &str, session_id: &str) -> TxIndex {
        let of = self.open.iter().filter(|(_, tx)| tx.project_id == project_id && tx.session_id == session_id);
        let (incomplete, unfinalized) = listed(of.map(|(id, tx)| (id.clone(), tx.clone())));
        TxIndex { incomplete, unfinalized, ..TxIndex::default() }
    }

    /// A record of an operation whose BEGIN was not seen.
    fn orphan(&mut self, r: &RecordHead<'_>, phase: &str) {
        if !self.resuming {
            self.anomaly(r, format!("{phase} without an open BEGIN"));
        }
    }

    fn anomaly(&mut self, r: &RecordHead<'_>, description: String) {
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_ANOMALIES {
            tracing::warn!(seq = r.seq, operation_id = %r.operation_id, "{description}");
            self.anomalies.push(TxAnomaly { seq: r.seq, operation_id: r.operation_id.to_string(), description });
        }
    }

    pub fn finish(self) -> TxIndex {
        let (incomplete, unfinalized) = listed(self.open.into_iter());
        TxIndex { incomplete, unfinalized, anomalies: self.anomalies, anomaly_count: self.anomaly_count }
    }
}

/// Open operations split into those without COMMIT and those committed without FINAL, each
/// ordered by `begin_seq`.
fn listed(open: impl Iterator<Item = (String, OpenTx)>) -> (Vec<IncompleteTx>, Vec<UnfinalizedTx>) {
    let mut incomplete = Vec::new();
    let mut unfinalized = Vec::new();
    for (operation_id, tx) in open {
        let uuids = dedup_in_order(tx.uuids);
        match tx.commit_seq {
            None => incomplete.push(IncompleteTx {
                operation_id,
                session_id: tx.session_id,
                project_id: tx.project_id,
                uuids,
                begin_seq: tx.begin_seq,
                last_seq: tx.last_seq,
                provisional: tx.provisional,
            }),
            Some(commit_seq) => unfinalized.push(UnfinalizedTx {
                operation_id,
                session_id: tx.session_id,
                project_id: tx.project_id,
                uuids,
                begin_seq: tx.begin_seq,
                commit_seq,
            }),
        }
    }
    incomplete.sort_by_key(|t| t.begin_seq);
    unfinalized.sort_by_key(|t| t.begin_seq);
    (incomplete, unfinalized)
}

fn dedup_in_order(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(v.len());
    v.into_iter().filter(|u| seen.insert(u.clone())).collect()
}

/// The transaction index of records given in seq order.
pub fn transaction_index<'a>(records: impl IntoIterator<Item = &'a Record>) -> TxIndex {
    let mut b = TxIndexBuilder::new();
    for r in records {
        b.observe_record(r);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SCHEMA_VERSION;

    fn rec(seq: u64, op: &str, phase: Phase, uuids: &[&str]) -> Record {
        Record {
            seq,
            ts: "2026-11-21T00:00:00.000000Z".into(),
            process_id: 1,
            session_id: "sess".into(),
            operation_id: op.into(),
            uuids: uuids.iter().map(|s| s.to_string()).collect(),
            project_id: "demo".into(),
            phase,
            outcome: crate::Outcome::Ok,
            error_code: None,
            schema_version: SCHEMA_VERSION,
            payload: serde_json::Value::Null,
            prev: String::new(),
            h: String::new(),
        }
    }

    #[test]
    fn complete_operations_leave_nothing() {
        use Phase::*;
        let rs = vec![
            rec(1, "a", Begin, &["u1"]),
            rec(2, "a", Step, &["u1"]),
            rec(3, "a", Commit, &[]),
            rec(4, "a", Final, &[]),
            rec(5, "b", Begin, &[]),
            rec(6, "b", Rollback, &[]),
            rec(7, "b", Final, &[]),
            rec(8, "x", Step, &["u9"]),
        ];
        let ix = transaction_index(&rs);
        assert_eq!(ix, TxIndex::default());
    }

    /// What a running reader asks without finishing the index: the oldest open BEGIN, and a
    /// session's open operations in one project, as `finish` lists them.
    #[test]
    fn open_operations_are_read_while_the_index_goes_on() {
        use Phase::*;
        let mut b = TxIndexBuilder::resuming();
        let mut other = rec(3, "c", Begin, &["u5"]);
        other.project_id = "elsewhere".into();
        for r in [
            rec(1, "a", Begin, &["u1"]),
            rec(2, "b", Begin, &["u3"]),
            other,
            rec(4, "a", Step, &["u1", "u2"]),
            rec(5, "b", Commit, &[]),
            rec(6, "z", Final, &[]), // settled before the reader began: not an anomaly
        ] {
            b.observe_record(&r);
        }
        assert_eq!(b.oldest_open(), Some(1));
        let open = b.open_of("demo", "sess");
        assert_eq!(
            open.incomplete.iter().map(|t| (t.operation_id.as_str(), t.uuids.clone())).collect::<Vec<_>>(),
            [("a", vec!["u1".to_string(), "u2".to_string()])]
        );
        assert_eq!(
            open.unfinalized.iter().map(|t| (t.operation_id.as_str(), t.commit_seq)).collect::<Vec<_>>(),
            [("b", 5)]
        );
        assert_eq!(b.open_of("demo", "another session"), TxIndex::default());
        b.observe_record(&rec(7, "a", Rollback, &[]));
        assert!(b.open_of("demo", "sess").incomplete.is_empty());
        assert_eq!(b.oldest_open(), Some(2), "b committed, no FINAL yet");
        b.observe_record(&rec(8, "b", Final, &[]));
        assert_eq!(b.oldest_open(), Some(3));
        assert!(b.open_of("demo", "sess").unfinalized.is_empty());
        assert_eq!(b.finish().anomaly_count, 0);
    }

    #[test]
    fn begin_without_commit_is_incomplete() {
        use Phase::*;
        let rs = vec![
            rec(1, "a", Begin, &["u1"]),
            rec(2, "b", Begin, &["u3"]),
            rec(3, "a", Step, &["u1", "u2"]),
            rec(4, "a", Provisional, &[]),
            rec(5, "b", Commit, &[]),
        ];
        let ix = transaction_index(&rs);
        assert_eq!(
            ix.incomplete,
            vec![IncompleteTx {
                operation_id: "a".into(),
                session_id: "sess".into(),
                project_id: "demo".into(),
                uuids: vec!["u1".into(), "u2".into()],
                begin_seq: 1,
                last_seq: 4,
                provisional: true,
            }]
        );
        assert_eq!(ix.unfinalized.len(), 1);
        assert_eq!(ix.unfinalized[0].operation_id, "b");
        assert_eq!(ix.unfinalized[0].commit_seq, 5);
        assert_eq!(ix.unfinalized[0].uuids, vec!["u3".to_string()]);
        assert!(ix.anomalies.is_empty());
    }

    #[test]
    fn lifecycle_violations_are_anomalies() {
        use Phase::*;
        let rs = vec![
            rec(1, "c", Commit, &[]),
            rec(2, "d", Begin, &[]),
            rec(3, "d", Final, &[]),
            rec(4, "d", Begin, &[]),
            rec(5, "e", Rollback, &[]),
        ];
        let ix = transaction_index(&rs);
        let seqs: Vec<u64> = ix.anomalies.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, vec![1, 3, 4, 5]);
        assert_eq!(ix.anomaly_count, 4);
        assert_eq!(ix.incomplete.len(), 1);
        assert_eq!(ix.incomplete[0].begin_seq, 2);
    }
}
