//! Governance, the pure part (docs/PROTOCOL.md §6.7): the failure index built from WAL
//! records (log-as-state), the gate consulted before every sync mutation, the user-edit
//! idle tracker and the per-session token bucket. Time is always passed in.
//!
//! Escalation is smallest-first: a uuid that keeps failing is quarantined; an op kind that
//! keeps failing is disabled; only many failures overall put the daemon in safe mode.
//!
//! Only **evidence** against the objects climbs that ladder: a participant that
//! disconnected after receiving a batch and before answering (`PARTICIPANT_LOST`: the data
//! may crash the editor). Failures the bridge itself causes (`VERIFY_MISMATCH`,
//! `VERIFY_TIMEOUT`) only degrade the uuid to the slow path. Batches cut by a daemon crash
//! (`RECOVERED_INCOMPLETE`) are not failures at all (crashes count through the unclean-boot
//! rule), nor is a participant that said it was closing its connection on purpose before
//! it left (`PARTICIPANT_LEFT`: a file opened in Blender, an editor quitting). Failures age out after `failure_window_ms`. "No silent retry": an input (uuid +
//! resulting state hash) that was evidence of a failure is refused if sent again unchanged
//! while its failure is in the window; a changed input or a person (`vibesync safe-mode
//! clear`, `vibesync quarantine release`) is needed.

use crate::fast::{HashMap, HashSet};
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use vibesync_protocol::RollbackCode;

/// Thresholds (config `[governance]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Evidence failures of one uuid before it is quarantined.
    pub uuid_failures: u32,
    /// Evidence failures of one op kind (e.g. `mesh`) before that kind is disabled.
    pub op_failures: u32,
    /// Evidence failures overall before safe mode.
    pub global_failures: u32,
    /// How many most recent failures the index keeps.
    pub window_records: usize,
    /// Failures older than this (by their WAL record's time) no longer count.
    pub failure_window_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            uuid_failures: 3,
            op_failures: 5,
            global_failures: 10,
            window_records: 10_000,
            failure_window_ms: 600_000,
        }
    }
}

/// What the index tells apart of a WAL record's phase (docs/WAL.md §3): registry STEPs
/// (resets, disabled ops) and ROLLBACKs (failures); every other phase is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenPhase {
    Step,
    Rollback,
    Other,
}

/// The part of a WAL record the index needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed<'a> {
    pub seq: u64,
    /// The record's project (`""` for the daemon's own transactions).
    pub project_id: &'a str,
    /// The record's time (`ts`) in ms since the Unix epoch.
    pub at_ms: u64,
    pub phase: SeenPhase,
    pub uuids: &'a [String],
    pub error_code: Option<&'a str>,
    pub payload: &'a Value,
}

/// A failure as remembered by the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub seq: u64,
    pub at_ms: u64,
    pub error_code: String,
    pub uuids: Vec<String>,
    pub ops: Vec<String>,
    /// Evidence against the objects (climbs the ladder), or a bridge failure (degrades only).
    pub evidence: bool,
}

/// What escalation a newly observed failure calls for (the daemon carries it out and logs
/// it as a WAL transaction, so the index rebuilt from the WAL reaches the same state).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Escalation {
    pub quarantine: Vec<String>,
    pub disable_ops: Vec<String>,
    pub safe_mode: Option<String>,
}

/// The gate's decision for one proposed mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    /// Go ahead, but on the slow (blocking, verified) path.
    Degrade(Vec<String>),
    Block(String),
}

impl Decision {
    pub fn to_json(&self) -> Value {
        match self {
            Decision::Proceed => json!({"decision": "proceed"}),
            Decision::Degrade(r) => json!({"decision": "degrade", "reasons": r}),
            Decision::Block(r) => json!({"decision": "block", "reasons": [r]}),
        }
    }
}

/// Failure counters and last errors, derived from the WAL.
#[derive(Debug, Default, Clone)]
pub struct FailureIndex {
    pub thresholds: Thresholds,
    window: VecDeque<Failure>,
    /// Failures counted before this seq were cleared by a person.
    reset_after: u64,
    disabled_ops: HashSet<String>,
    /// (uuid, state hash) inputs that were evidence of a failure → when: refused until
    /// changed or aged out.
    failed_inputs: HashMap<(String, String), u64>,
    last_error: HashMap<String, Failure>,
    /// (project, `addon_id.tool`) → agent tool calls rolled back since the last reset
    /// (docs/PROTOCOL.md §9.2: after `agents.tool_failures` of them that tool is `BLOCKED`).
    /// Rebuilt from the WAL like everything here, so a restart does not unblock a tool.
    tool_failures: HashMap<(String, String), u32>,
    seen: u64,
}

impl FailureIndex {
    pub fn new(thresholds: Thresholds) -> FailureIndex {
        FailureIndex { thresholds, ..Default::default() }
    }

    /// Failures are only counted after `seq` (a person cleared them at that point).
    pub fn reset(&mut self, seq: u64) {
        self.reset_after = seq;
        self.window.clear();
        self.disabled_ops.clear();
        self.failed_inputs.clear();
        self.tool_failures.clear();
    }

    /// Rolled-back calls of one agent tool in a project since a person last cleared them.
    pub fn tool_failures(&self, project_id: &str, tool: &str) -> u32 {
        self.tool_failures.get(&(project_id.to_string(), tool.to_string())).copied().unwrap_or(0)
    }

    fn fresh(&self, at_ms: u64, now_ms: u64) -> bool {
        at_ms.saturating_add(self.thresholds.failure_window_ms) > now_ms
    }

    /// Failures within the window at `now_ms`, after the last reset.
    fn counted(&self, now_ms: u64) -> impl Iterator<Item = &Failure> {
        self.window.iter().filter(move |f| f.seq > self.reset_after && self.fresh(f.at_ms, now_ms))
    }

    /// Every counted failure of this uuid (bridge failures included: they degrade).
    pub fn uuid_failures(&self, uuid: &str, now_ms: u64) -> u32 {
        self.counted(now_ms).filter(|f| f.uuids.iter().any(|u| u == uuid)).count() as u32
    }

    /// Evidence failures of this uuid (they quarantine it).
    pub fn uuid_evidence(&self, uuid: &str, now_ms: u64) -> u32 {
        self.counted(now_ms).filter(|f| f.evidence && f.uuids.iter().any(|u| u == uuid)).count() as u32
    }

    pub fn op_failures(&self, op: &str, now_ms: u64) -> u32 {
        self.counted(now_ms).filter(|f| f.evidence && f.ops.iter().any(|o| o == op)).count() as u32
    }

    pub fn global_failures(&self, now_ms: u64) -> u32 {
        self.counted(now_ms).filter(|f| f.evidence).count() as u32
    }

    pub fn disabled_ops(&self) -> Vec<String> {
        let mut v: Vec<String> = self.disabled_ops.iter().cloned().collect();
        v.sort();
        v
    }

    pub fn last_error(&self, uuid: &str) -> Option<&Failure> {
        self.last_error.get(uuid)
    }

    /// Feed one WAL record (in seq order). Returns the escalation a new failure calls for.
    pub fn observe(&mut self, r: &Observed<'_>) -> Escalation {
        self.seen = self.seen.max(r.seq);
        // A person's reset, logged as a governance transaction, replays as a reset.
        if r.phase == SeenPhase::Step && r.payload.get("op").and_then(Value::as_str) == Some("governance_reset") {
            self.reset(r.seq);
            return Escalation::default();
        }
        if r.phase == SeenPhase::Step && r.payload.get("op").and_then(Value::as_str) == Some("disable_op") {
            if let Some(op) = r.payload.get("kind").and_then(Value::as_str) {
                self.disabled_ops.insert(op.to_string());
            }
            return Escalation::default();
        }
        if r.phase != SeenPhase::Rollback || r.seq <= self.reset_after {
            return Escalation::default();
        }
        let code = r.error_code.unwrap_or("UNKNOWN");
        let typed = RollbackCode::parse(code);
        if typed == Some(RollbackCode::RecoveredIncomplete) {
            return Escalation::default(); // the daemon died, not the objects' fault
        }
        if typed == Some(RollbackCode::ParticipantLeft) {
            return Escalation::default(); // a person closed the file: not the objects' fault
        }
        if r.payload.get("op").and_then(Value::as_str) == Some("tool_call") {
            if let Some(tool) = r.payload.get("tool").and_then(Value::as_str) {
                *self.tool_failures.entry((r.project_id.to_string(), tool.to_string())).or_default() += 1;
            }
        }
        // A participant lost after receiving the batch, before answering: evidence that the
        // data may crash that editor.
        let evidence = typed == Some(RollbackCode::ParticipantLost);
        let ops: Vec<String> = r
            .payload
            .get("ops")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|o| o.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let failure = Failure {
            seq: r.seq,
            at_ms: r.at_ms,
            error_code: code.to_string(),
            uuids: r.uuids.to_vec(),
            ops: ops.clone(),
            evidence,
        };
        if evidence {
            if let Some(hashes) = r.payload.get("state_hashes").and_then(Value::as_object) {
                for (u, h) in hashes {
                    if let Some(h) = h.as_str() {
                        self.failed_inputs.insert((u.clone(), h.to_string()), r.at_ms);
                    }
                }
            }
        }
        for u in r.uuids {
            self.last_error.insert(u.clone(), failure.clone());
        }
        self.window.push_back(failure);
        while self.window.len() > self.thresholds.window_records.max(1) {
            self.window.pop_front();
        }
        let mut esc = Escalation::default();
        if !evidence {
            return esc; // bridge failures degrade; they never climb the ladder
        }
        let now = r.at_ms;
        for u in r.uuids {
            if self.uuid_evidence(u, now) >= self.thresholds.uuid_failures {
                esc.quarantine.push(u.clone());
            }
        }
        for op in ops {
            if !self.disabled_ops.contains(&op) && self.op_failures(&op, now) >= self.thresholds.op_failures {
                esc.disable_ops.push(op);
            }
        }
        if self.global_failures(now) >= self.thresholds.global_failures {
            esc.safe_mode = Some(format!(
                "{} sync failures in {} s (threshold {})",
                self.global_failures(now),
                self.thresholds.failure_window_ms / 1000,
                self.thresholds.global_failures
            ));
        }
        esc
    }

    /// The log consultation gate: may this op on this uuid, producing this state, run now?
    pub fn gate(&self, uuid: &str, op: &str, state_hash: Option<&str>, now_ms: u64) -> Decision {
        self.gate_with(uuid, op, || state_hash.map(str::to_string), now_ms)
    }

    /// [`FailureIndex::gate`] computing the resulting state hash only when it matters (a
    /// failed input of this uuid is remembered).
    pub fn gate_with(
        &self,
        uuid: &str,
        op: &str,
        state_hash: impl FnOnce() -> Option<String>,
        now_ms: u64,
    ) -> Decision {
        if self.disabled_ops.contains(op) {
            return Decision::Block(format!(
                "`{op}` changes are disabled after repeated failures; a person re-enables them with `vibesync safe-mode clear`"
            ));
        }
        if self.failed_inputs.keys().any(|(u, _)| u == uuid) {
            if let Some(h) = state_hash() {
                if self.failed_inputs.get(&(uuid.to_string(), h)).is_some_and(|&at| self.fresh(at, now_ms)) {
                    return Decision::Block("this exact change made an editor fail before; change the input (or a person clears it with `vibesync safe-mode clear`)".into());
                }
            }
        }
        let n = self.uuid_failures(uuid, now_ms);
        if n > 0 {
            let last = self
                .last_error
                .get(uuid)
                .map(|f| format!(" (last: {} at seq {})", f.error_code, f.seq))
                .unwrap_or_default();
            return Decision::Degrade(vec![format!("{n} prior failure(s) on this uuid{last}: slow path")]);
        }
        Decision::Proceed
    }

    pub fn summary(&self, now_ms: u64) -> Value {
        json!({
            "failures": self.global_failures(now_ms),
            "disabled_ops": self.disabled_ops(),
            "reset_after_seq": self.reset_after,
            "thresholds": self.thresholds,
        })
    }
}

/// User-edit protection (docs/PROTOCOL.md §6.7): automation waits until people have been idle.
#[derive(Debug, Clone, Default)]
pub struct IdleTracker {
    /// session → (active flag, last activity ms)
    people: HashMap<String, (bool, u64)>,
}

impl IdleTracker {
    pub fn activity(&mut self, session: &str, active: bool, now_ms: u64) {
        self.people.insert(session.to_string(), (active, now_ms));
    }

    pub fn left(&mut self, session: &str) {
        self.people.remove(session);
    }

    /// When automation may run again (`None`: now).
    pub fn automation_allowed_at(&self, now_ms: u64, idle_ms: u64) -> Option<u64> {
        let mut at: Option<u64> = None;
        for (active, last) in self.people.values() {
            let until = if *active { now_ms.max(*last) + idle_ms } else { last + idle_ms };
            if until > now_ms {
                at = Some(at.map_or(until, |a: u64| a.max(until)));
            }
        }
        at
    }
}

/// A token bucket: `rate` tokens per second, up to `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now_ms: u64) -> Bucket {
        Bucket { rate, burst, tokens: burst, at_ms: now_ms }
    }

    /// Take `n` tokens if available.
    pub fn take(&mut self, n: f64, now_ms: u64) -> bool {
        let dt = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at_ms = now_ms;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    const V: &str = "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn failure(idx: &mut FailureIndex, seq: u64, uuid: &str, op: &str, hash: &str, code: &str) -> Escalation {
        let uuids = vec![uuid.to_string()];
        let payload = json!({"ops": [op], "state_hashes": {uuid: hash}});
        idx.observe(&Observed {
            seq,
            project_id: "p",
            at_ms: 1_000_000 + seq,
            phase: SeenPhase::Rollback,
            uuids: &uuids,
            error_code: Some(code),
            payload: &payload,
        })
    }

    fn lost(idx: &mut FailureIndex, seq: u64, uuid: &str, op: &str, hash: &str) -> Escalation {
        failure(idx, seq, uuid, op, hash, RollbackCode::ParticipantLost.as_str())
    }

    const NOW: u64 = 1_000_100;

    #[test]
    fn evidence_escalates_smallest_thing_first_then_kind_then_everything() {
        let mut idx = FailureIndex::new(Thresholds {
            uuid_failures: 2,
            op_failures: 3,
            global_failures: 4,
            window_records: 100,
            failure_window_ms: 60_000,
        });
        assert_eq!(idx.gate(U, "transform", Some("h0"), NOW), Decision::Proceed);
        let e = lost(&mut idx, 10, U, "transform", "h1");
        assert_eq!(e, Escalation::default());
        assert!(matches!(idx.gate(U, "transform", Some("h2"), NOW), Decision::Degrade(_)));
        assert!(
            matches!(idx.gate(U, "transform", Some("h1"), NOW), Decision::Block(_)),
            "no silent retry of the same input"
        );
        assert_eq!(idx.gate(V, "transform", Some("h1"), NOW), Decision::Proceed, "other uuids unaffected");
        let e = lost(&mut idx, 11, U, "transform", "h2");
        assert_eq!(e.quarantine, vec![U.to_string()]);
        assert!(e.disable_ops.is_empty() && e.safe_mode.is_none());
        let e = lost(&mut idx, 12, V, "transform", "h3");
        assert_eq!(e.disable_ops, vec!["transform".to_string()]);
        assert!(e.safe_mode.is_none());
        idx.observe(&Observed {
            seq: 13,
            project_id: "",
            at_ms: NOW,
            phase: SeenPhase::Step,
            uuids: &[],
            error_code: None,
            payload: &json!({"op":"disable_op","kind":"transform"}),
        });
        assert!(matches!(idx.gate(V, "transform", Some("h9"), NOW), Decision::Block(_)));
        assert_eq!(
            idx.gate(V, "rename", None, NOW),
            Decision::Degrade(vec![
                "1 prior failure(s) on this uuid (last: PARTICIPANT_LOST at seq 12): slow path".into()
            ])
        );
        let e = lost(&mut idx, 14, V, "mesh", "h4");
        assert!(e.safe_mode.is_some());
    }

    #[test]
    fn bridge_failures_only_degrade_and_crash_cut_batches_do_not_count() {
        let mut idx = FailureIndex::new(Thresholds {
            uuid_failures: 2,
            op_failures: 2,
            global_failures: 2,
            window_records: 100,
            failure_window_ms: 60_000,
        });
        for seq in 1..=20 {
            let code = if seq % 2 == 0 { RollbackCode::VerifyMismatch } else { RollbackCode::VerifyTimeout }.as_str();
            assert_eq!(failure(&mut idx, seq, U, "create", &format!("h{seq}"), code), Escalation::default());
        }
        assert!(matches!(idx.gate(U, "create", Some("h4"), NOW), Decision::Degrade(_)), "degraded, not blocked");
        assert_eq!(idx.global_failures(NOW), 0);
        for seq in 21..=40 {
            assert_eq!(
                failure(&mut idx, seq, V, "create", "h", RollbackCode::RecoveredIncomplete.as_str()),
                Escalation::default()
            );
        }
        assert_eq!(idx.gate(V, "create", Some("h"), NOW), Decision::Proceed, "a crash is not the object's fault");
        const W: &str = "00000000-0000-4000-8000-0000000000ee";
        for seq in 41..=60 {
            assert_eq!(
                failure(&mut idx, seq, W, "create", "h", RollbackCode::ParticipantLeft.as_str()),
                Escalation::default()
            );
        }
        assert_eq!(
            idx.gate(W, "create", Some("h"), NOW),
            Decision::Proceed,
            "an editor that closed its file on purpose is no evidence: the same change goes again"
        );
    }

    #[test]
    fn failures_age_out() {
        let mut idx = FailureIndex::new(Thresholds { failure_window_ms: 1_000, ..Thresholds::default() });
        lost(&mut idx, 5, U, "mesh", "h");
        let at = 1_000_005;
        assert!(matches!(idx.gate(U, "mesh", Some("h"), at + 999), Decision::Block(_)));
        assert_eq!(idx.gate(U, "mesh", Some("h"), at + 1_000), Decision::Proceed, "aged out");
        assert_eq!(idx.global_failures(at + 1_000), 0);
    }

    #[test]
    fn a_person_resets_and_replay_reaches_the_same_state() {
        let mut idx = FailureIndex::new(Thresholds::default());
        lost(&mut idx, 5, U, "mesh", "h");
        let reset = json!({"op":"governance_reset"});
        idx.observe(&Observed {
            seq: 6,
            project_id: "",
            at_ms: NOW,
            phase: SeenPhase::Step,
            uuids: &[],
            error_code: None,
            payload: &reset,
        });
        assert_eq!(idx.global_failures(NOW), 0);
        assert_eq!(idx.gate(U, "mesh", Some("h"), NOW), Decision::Proceed);
    }

    #[test]
    fn tool_failures_count_per_project_and_tool_until_a_person_resets() {
        let mut idx = FailureIndex::new(Thresholds::default());
        let call = |tool: &str| json!({"op": "tool_call", "tool": tool, "status": "error"});
        let rollback = |idx: &mut FailureIndex, seq: u64, project: &str, payload: &Value| {
            idx.observe(&Observed {
                seq,
                project_id: project,
                at_ms: NOW,
                phase: SeenPhase::Rollback,
                uuids: &[],
                error_code: Some("HANDLER_FAILED"),
                payload,
            })
        };
        let (a, b) = (call("rmg.add_random_cube"), call("rmg.add_surprise_mesh"));
        for seq in 1..=3 {
            rollback(&mut idx, seq, "p", &a);
        }
        rollback(&mut idx, 4, "q", &a);
        rollback(&mut idx, 5, "p", &b);
        assert_eq!(idx.tool_failures("p", "rmg.add_random_cube"), 3);
        assert_eq!(idx.tool_failures("q", "rmg.add_random_cube"), 1, "per project");
        assert_eq!(idx.tool_failures("p", "rmg.add_surprise_mesh"), 1, "per tool");
        // A sync batch's ROLLBACK is not a tool failure.
        rollback(&mut idx, 6, "p", &json!({"ops": ["transform"]}));
        assert_eq!(idx.tool_failures("p", "transform"), 0);
        let reset = json!({"op": "governance_reset"});
        idx.observe(&Observed {
            seq: 7,
            project_id: "",
            at_ms: NOW,
            phase: SeenPhase::Step,
            uuids: &[],
            error_code: None,
            payload: &reset,
        });
        assert_eq!(idx.tool_failures("p", "rmg.add_random_cube"), 0);
        // Replaying the same records (a restart) reaches the same state.
        let mut again = FailureIndex::new(Thresholds::default());
        for seq in 1..=3 {
            rollback(&mut again, seq, "p", &a);
        }
        assert_eq!(again.tool_failures("p", "rmg.add_random_cube"), 3);
    }

    #[test]
    fn window_keeps_only_recent_failures() {
        let mut idx = FailureIndex::new(Thresholds { window_records: 2, ..Thresholds::default() });
        for s in 0..5 {
            lost(&mut idx, s + 1, V, "transform", &format!("h{s}"));
        }
        assert_eq!(idx.global_failures(NOW), 2);
    }

    #[test]
    fn automation_waits_for_people_to_be_idle() {
        let mut t = IdleTracker::default();
        assert_eq!(t.automation_allowed_at(0, 2000), None);
        t.activity("blender", true, 1000);
        assert_eq!(t.automation_allowed_at(1500, 2000), Some(3500), "active: wait");
        t.activity("blender", false, 4000);
        assert_eq!(t.automation_allowed_at(5000, 2000), Some(6000));
        assert_eq!(t.automation_allowed_at(6000, 2000), None);
        t.left("blender");
        assert_eq!(t.automation_allowed_at(4100, 2000), None);
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let mut b = Bucket::new(10.0, 5.0, 0);
        for _ in 0..5 {
            assert!(b.take(1.0, 0));
        }
        assert!(!b.take(1.0, 0));
        assert!(b.take(1.0, 100));
        assert!(!b.take(1.0, 100));
    }
}
