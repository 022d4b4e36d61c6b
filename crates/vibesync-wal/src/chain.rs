//! The hash chain, as pure logic: each record's `prev` is the previous record's `h`
//! (`GENESIS_PREV` for seq 1) and seqs go up by one. A deleted, inserted or reordered line
//! breaks it.

use crate::record::{Record, GENESIS_PREV};

/// Where the chain stands: the seq and `prev` the next record must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    pub next_seq: u64,
    pub last_h: String,
}

/// How a record fails to continue the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("seq gap: expected seq {expected}, found {found} (a line was deleted, inserted or reordered)")]
    SeqGap { expected: u64, found: u64 },
    #[error("chain break at seq {seq}: prev is {found} but the previous record's h is {expected} (a line was deleted, inserted or reordered)")]
    PrevMismatch { seq: u64, expected: String, found: String },
}

impl Default for ChainState {
    fn default() -> Self {
        Self::genesis()
    }
}

impl ChainState {
    /// The state before the first record.
    pub fn genesis() -> Self {
        ChainState { next_seq: 1, last_h: GENESIS_PREV.to_string() }
    }

    /// Does a record with `seq` and `prev` continue the chain?
    pub fn check(&self, seq: u64, prev: &str) -> Result<(), ChainBreak> {
        if seq != self.next_seq {
            return Err(ChainBreak::SeqGap { expected: self.next_seq, found: seq });
        }
        if prev != self.last_h {
            return Err(ChainBreak::PrevMismatch { seq, expected: self.last_h.clone(), found: prev.to_string() });
        }
        Ok(())
    }

    /// Move past a record (reuses the `last_h` allocation).
    pub fn advance(&mut self, seq: u64, h: &str) {
        self.next_seq = seq + 1;
        self.last_h.clear();
        self.last_h.push_str(h);
    }

    /// Seq of the last record passed (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
}

/// Verify a sequence of records from genesis. On failure returns the index of the first
/// record that breaks the chain.
pub fn verify_chain<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<ChainState, (usize, ChainBreak)> {
    let mut state = ChainState::genesis();
    for (i, r) in records.into_iter().enumerate() {
        state.check(r.seq, &r.prev).map_err(|e| (i, e))?;
        state.advance(r.seq, &r.h);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Phase, SCHEMA_VERSION};

    fn chain(n: u64) -> Vec<Record> {
        let mut prev = GENESIS_PREV.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = Record {
                    seq,
                    ts: "2026-11-21T00:00:00.000000Z".into(),
                    process_id: 1,
                    session_id: "s".into(),
                    operation_id: format!("op{seq}"),
                    uuids: vec![],
                    project_id: "p".into(),
                    phase: Phase::Step,
                    outcome: crate::Outcome::Ok,
                    error_code: None,
                    schema_version: SCHEMA_VERSION,
                    payload: serde_json::json!({}),
                    prev: prev.clone(),
                    h: String::new(),
                };
                r.seal();
                prev = r.h.clone();
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let rs = chain(5);
        let st = verify_chain(&rs).unwrap();
        assert_eq!(st.last_seq(), 5);
        assert_eq!(st.last_h, rs[4].h);
    }

    #[test]
    fn deleted_record_is_a_gap() {
        let mut rs = chain(5);
        rs.remove(2);
        let (i, e) = verify_chain(&rs).unwrap_err();
        assert_eq!(i, 2);
        assert_eq!(e, ChainBreak::SeqGap { expected: 3, found: 4 });
    }

    #[test]
    fn renumbered_record_breaks_prev() {
        // Someone deletes seq 3 and renumbers the rest: seqs look fine, prev does not.
        let mut rs = chain(5);
        rs.remove(2);
        for r in rs.iter_mut().skip(2) {
            r.seq -= 1;
        }
        let (i, e) = verify_chain(&rs).unwrap_err();
        assert_eq!(i, 2);
        assert!(matches!(e, ChainBreak::PrevMismatch { seq: 3, .. }));
    }

    #[test]
    fn swapped_records_break() {
        let mut rs = chain(5);
        rs.swap(1, 2);
        let (i, _) = verify_chain(&rs).unwrap_err();
        assert_eq!(i, 1);
    }
}
