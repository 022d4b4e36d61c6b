//! Pipeline step `verify` (docs/PROTOCOL.md §6.4): collect the participants' `applied`
//! answers for one batch in flight and decide — commit, roll back, or keep waiting.
//!
//! Pure: the daemon feeds it answers, departures and the clock (`now_ms`) and carries out
//! the verdict.

use std::collections::{BTreeMap, BTreeSet};

use vibesync_protocol::RollbackCode;

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The WAL code of the ROLLBACK: `VerifyMismatch` (a hash differs from what the
    /// participant must hold), `VerifyTimeout` (no answer in time) or `ParticipantLost`.
    pub code: RollbackCode,
    /// The sessions that failed it.
    pub sessions: Vec<String>,
    /// For a mismatch: the uuids whose hash differs.
    pub uuids: Vec<String>,
}

/// What the daemon does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some participant has not answered yet.
    Wait,
    /// Every participant answered with the expected hashes (or holds the batch).
    Commit,
    Rollback(Failure),
}

/// The verification state of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// participant → uuid → the hash it must answer (`None`: the uuid must be gone).
    expected: BTreeMap<String, BTreeMap<String, Option<String>>>,
    answered: BTreeSet<String>,
    deadline_ms: u64,
}

impl Verification {
    pub fn new(expected: BTreeMap<String, BTreeMap<String, Option<String>>>, deadline_ms: u64) -> Verification {
        Verification { expected, answered: BTreeSet::new(), deadline_ms }
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// What `session` must answer: uuid → hash (`None`: gone); None for a non-participant.
    pub fn expected_of(&self, session: &str) -> Option<&BTreeMap<String, Option<String>>> {
        self.expected.get(session)
    }

    /// Whether `session` is still waited for or was verified (a participant).
    pub fn is_participant(&self, session: &str) -> bool {
        self.expected.contains_key(session)
    }

    pub fn participants(&self) -> impl Iterator<Item = &String> {
        self.expected.keys()
    }

    /// Participants that have not answered yet.
    pub fn missing(&self) -> Vec<String> {
        self.expected.keys().filter(|s| !self.answered.contains(*s)).cloned().collect()
    }

    fn settled(&self) -> Verdict {
        if self.expected.keys().all(|s| self.answered.contains(s)) {
            Verdict::Commit
        } else {
            Verdict::Wait
        }
    }

    /// The verdict as it stands (e.g. right after forwarding: nobody to wait for → commit).
    pub fn verdict(&self) -> Verdict {
        self.settled()
    }

    /// An `applied` answer. `held`: the editor holds the batch (it stops being a participant).
    pub fn applied(&mut self, session: &str, hashes: &BTreeMap<String, String>, held: bool) -> Verdict {
        let Some(exp) = self.expected.get(session) else { return self.settled() };
        if held {
            self.expected.remove(session);
            return self.settled();
        }
        let bad = mismatches(exp, hashes);
        if !bad.is_empty() {
            return Verdict::Rollback(Failure {
                code: RollbackCode::VerifyMismatch,
                sessions: vec![session.to_string()],
                uuids: bad,
            });
        }
        self.answered.insert(session.to_string());
        self.settled()
    }

    /// A session disconnected. One that received the batch and had not answered fails it:
    /// `ParticipantLost` (evidence: the data may crash that editor, docs/PROTOCOL.md §6.7),
    /// or `ParticipantLeft` when it said it was `closing` on purpose (no evidence).
    pub fn left(&mut self, session: &str, closing: bool) -> Verdict {
        let lost = self.expected.contains_key(session) && !self.answered.contains(session);
        self.expected.remove(session);
        self.answered.remove(session);
        if lost {
            return Verdict::Rollback(Failure {
                code: if closing { RollbackCode::ParticipantLeft } else { RollbackCode::ParticipantLost },
                sessions: vec![session.to_string()],
                uuids: vec![],
            });
        }
        self.settled()
    }

    /// The forward to `session` failed: it never received the batch, so it is not waited for.
    pub fn unreachable(&mut self, session: &str) {
        self.expected.remove(session);
    }

    /// The clock: past the deadline, whoever has not answered fails the batch.
    pub fn tick(&self, now_ms: u64) -> Verdict {
        match self.settled() {
            Verdict::Wait if now_ms >= self.deadline_ms => Verdict::Rollback(Failure {
                code: RollbackCode::VerifyTimeout,
                sessions: self.missing(),
                uuids: vec![],
            }),
            v => v,
        }
    }
}

/// The uuids whose answered hash differs from the expected one (a deleted uuid must be gone).
pub fn mismatches(expected: &BTreeMap<String, Option<String>>, got: &BTreeMap<String, String>) -> Vec<String> {
    expected
        .iter()
        .filter(|(u, h)| match h {
            Some(h) => got.get(*u) != Some(h),
            None => got.contains_key(*u),
        })
        .map(|(u, _)| u.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    const V: &str = "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn two() -> Verification {
        let exp = BTreeMap::from([
            ("a".to_string(), BTreeMap::from([(U.to_string(), Some("h1".to_string()))])),
            ("b".to_string(), BTreeMap::from([(U.to_string(), Some("h1".to_string())), (V.to_string(), None)])),
        ]);
        Verification::new(exp, 1000)
    }

    fn hashes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(u, h)| (u.to_string(), h.to_string())).collect()
    }

    #[test]
    fn commits_when_everyone_matches() {
        let mut v = two();
        assert_eq!(v.applied("a", &hashes(&[(U, "h1")]), false), Verdict::Wait);
        assert_eq!(v.tick(999), Verdict::Wait);
        assert_eq!(v.applied("b", &hashes(&[(U, "h1")]), false), Verdict::Commit, "V deleted: absent");
        assert_eq!(v.applied("stranger", &hashes(&[]), false), Verdict::Commit, "non-participants are ignored");
    }

    #[test]
    fn a_mismatch_or_a_deleted_uuid_still_there_rolls_back() {
        let mut v = two();
        match v.applied("b", &hashes(&[(U, "h1"), (V, "x")]), false) {
            Verdict::Rollback(f) => {
                assert_eq!(f.code, RollbackCode::VerifyMismatch);
                assert_eq!(f.uuids, vec![V.to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeouts_name_who_did_not_answer_and_held_editors_are_not_waited_for() {
        let mut v = two();
        assert_eq!(v.applied("a", &hashes(&[]), true), Verdict::Wait, "a holds the batch");
        assert!(!v.is_participant("a"));
        match v.tick(1000) {
            Verdict::Rollback(f) => {
                assert_eq!((f.code, f.sessions), (RollbackCode::VerifyTimeout, vec!["b".to_string()]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leaving_before_answering_is_evidence_after_answering_is_not() {
        let mut v = two();
        assert_eq!(v.applied("a", &hashes(&[(U, "h1")]), false), Verdict::Wait);
        assert_eq!(v.left("a", false), Verdict::Wait, "a answered before it left");
        match v.left("b", false) {
            Verdict::Rollback(f) => assert_eq!(f.code, RollbackCode::ParticipantLost),
            other => panic!("{other:?}"),
        }
        let mut v = two();
        match v.left("b", true) {
            Verdict::Rollback(f) => assert_eq!(f.code, RollbackCode::ParticipantLeft, "it said it was closing"),
            other => panic!("{other:?}"),
        }
        let mut v = two();
        v.unreachable("a");
        v.unreachable("b");
        assert_eq!(v.verdict(), Verdict::Commit, "nobody received it: nothing to verify");
    }
}
