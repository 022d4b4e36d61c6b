//! STEP payloads (the registry's input language) and the pure logic that applies them.
//!
//! Nothing here touches sled: the same code drives the on-disk registry, the in-memory
//! rebuild used by [`crate::Registry::parity`], and catch-up after a crash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vibesync_wal::{Phase, Record};

use crate::entry::{Binding, DeletedBy, Entry, Status};
use crate::error::{RegistryError, Result};

/// Operation names the registry understands.
pub const REGISTRY_OPS: [&str; 7] = ["register", "tombstone", "quarantine", "release", "state", "migrate", "conflict"];

/// STEP ops the daemon writes for other consumers (docs/WAL.md "Registry STEP payloads"):
/// a duplicated uuid an editor resolved, an agent tool call's effect, an op kind disabled
/// by governance, a person's governance reset, deletes relayed to the editors after a later
/// seq had gone out (replays), what editors keep of the uuids they keep (the sync). The
/// registry passes over them; a STEP with any other `op`, or none, is not understood and is
/// an error ([`crate::RegistryError::UnknownStep`]), never skipped.
pub const FOREIGN_OPS: [&str; 6] =
    ["duplicate", "tool_effect", "disable_op", "governance_reset", "late_delete", "kept"];

/// A parsed registry STEP payload. See the crate docs for the JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Op {
    Register {
        uuid: String,
        kind: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        editor: Option<String>,
        #[serde(default)]
        editor_ref: Option<String>,
        #[serde(default)]
        session_id: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
    },
    Tombstone {
        uuid: String,
        /// The client that deleted it (`client_id`) and its editor kind.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        editor: Option<String>,
        /// Automation deleted it (a `delete` change sent with `automation`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        automation: bool,
    },
    Quarantine {
        uuid: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Release {
        uuid: String,
    },
    State {
        uuid: String,
        state: Value,
        #[serde(default)]
        state_hash: Option<String>,
        /// Who wrote which parts of `state` in this transaction: one entry per writer, no
        /// part in two (each becomes the writer of its parts, at this STEP's seq).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        writes: Vec<StateWrite>,
    },
    Migrate {
        from: u32,
        to: u32,
    },
    /// Two editors changed one uuid concurrently; `loser`'s change gave way to `winner`'s
    /// (docs/PROTOCOL.md §6.2). A record for people and audits: it changes no record.
    Conflict {
        uuid: String,
        winner: String,
        loser: String,
        change_op: String,
    },
}

impl Op {
    /// Build the STEP payload for this op (what the daemon writes into the WAL).
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).expect("op serializes")
    }

    pub fn uuid(&self) -> Option<&str> {
        match self {
            Op::Register { uuid, .. }
            | Op::Tombstone { uuid, .. }
            | Op::Quarantine { uuid, .. }
            | Op::Release { uuid }
            | Op::State { uuid, .. }
            | Op::Conflict { uuid, .. } => Some(uuid),
            Op::Migrate { .. } => None,
        }
    }
}

/// One writer of a `state` STEP: `client_id` (of editor kind `editor`) wrote `parts`;
/// `automation` when every change of it that wrote them was automation's (sent with
/// `automation`, docs/PROTOCOL.md §6.1 "Who made it").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateWrite {
    pub parts: Vec<crate::entry::Part>,
    pub client_id: String,
    pub editor: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automation: bool,
    /// For automation's write of the `parent`: the parent the object had before it (absent:
    /// none, the root) — where a person's reparent closing a parent cycle through that link
    /// puts the object back (docs/PROTOCOL.md §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_before: Option<String>,
}

/// Record that `w` wrote its parts at `seq`: each part's earlier writer loses it (a writer
/// with no part left is dropped); the parts join an entry of the same seq, client and
/// editor, or make a new one. Parts are kept sorted.
pub fn record_write(writers: &mut Vec<crate::entry::PartWriter>, w: &StateWrite, seq: u64) {
    if w.parts.is_empty() {
        return;
    }
    let parent = crate::entry::Part::Parent;
    for x in writers.iter_mut() {
        x.parts.retain(|p| !w.parts.contains(p));
        if !x.parts.contains(&parent) {
            x.parent_before = None; // it wrote the parent no more
        }
    }
    writers.retain(|x| !x.parts.is_empty());
    let before = if w.automation && w.parts.contains(&parent) { w.parent_before.clone() } else { None };
    match writers.iter_mut().find(|x| x.seq == seq && x.client_id == w.client_id && x.editor == w.editor) {
        Some(x) => {
            x.parts.extend(w.parts.iter().copied());
            x.automation &= w.automation; // a person's write with automation's is a person's
            if w.parts.contains(&parent) {
                x.parent_before = before;
            }
            if !x.automation {
                x.parent_before = None;
            }
        }
        None => writers.push(crate::entry::PartWriter {
            parts: w.parts.clone(),
            seq,
            client_id: w.client_id.clone(),
            editor: w.editor.clone(),
            automation: w.automation,
            parent_before: before,
        }),
    }
    for x in writers.iter_mut() {
        x.parts.sort();
        x.parts.dedup();
    }
}

/// How a STEP payload reads to the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedStep {
    Op(Op),
    /// Another consumer's STEP (one of [`FOREIGN_OPS`]).
    Foreign,
    /// Not understood: no `op`, an `op` nobody writes, or a malformed registry op.
    Malformed(String),
}

/// Parse a STEP payload. The WAL is trusted for order, not for content: a payload that is
/// not understood is reported as [`ParsedStep::Malformed`], and applying it is an error.
pub fn parse_payload(payload: &Value) -> ParsedStep {
    let Some(name) = payload.get("op").and_then(Value::as_str) else {
        return ParsedStep::Malformed("STEP payload has no `op`".into());
    };
    if FOREIGN_OPS.contains(&name) {
        return ParsedStep::Foreign;
    }
    if !REGISTRY_OPS.contains(&name) {
        return ParsedStep::Malformed(format!(
            "STEP op `{}` is neither a registry op nor one the daemon writes for others",
            name.chars().take(64).collect::<String>()
        ));
    }
    // Deserialized from the borrowed value (no copy of the payload first).
    match <Op as serde::Deserialize>::deserialize(payload) {
        Ok(op) => match validate(&op) {
            Ok(()) => ParsedStep::Op(op),
            Err(e) => ParsedStep::Malformed(e),
        },
        Err(e) => ParsedStep::Malformed(format!("`{name}` payload: {e}")),
    }
}

fn validate(op: &Op) -> std::result::Result<(), String> {
    if let Some(u) = op.uuid() {
        if !is_valid_uuid(u) {
            return Err(format!("uuid {u:?} is not a lowercase RFC 4122 uuid"));
        }
    }
    if let Op::Register { kind, editor, .. } = op {
        if kind.is_empty() || kind.len() > 256 {
            return Err("`kind` must be 1-256 bytes".into());
        }
        if let Some(e) = editor {
            if e.is_empty() || e.len() > 256 {
                return Err("`editor` must be 1-256 bytes".into());
            }
        }
    }
    Ok(())
}

/// Lowercase hyphenated RFC 4122 text, not nil (docs/PROTOCOL.md §2; the rule itself is
/// `vibesync_protocol::validate::uuid`).
pub fn is_valid_uuid(s: &str) -> bool {
    vibesync_protocol::validate::uuid(s).is_ok()
}

/// `[A-Za-z0-9._-]{1,128}`, not starting with `.` (docs/PROTOCOL.md §2; the rule itself is
/// `vibesync_protocol::validate::project_id`).
pub fn is_valid_project_id(s: &str) -> bool {
    vibesync_protocol::validate::project_id(s).is_ok()
}

/// A step that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedStep {
    pub seq: u64,
    pub uuid: Option<String>,
    pub reason: String,
}

/// What `apply_committed` did with one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub operation_id: String,
    pub commit_seq: u64,
    /// False when the whole transaction was already applied (commit seq ≤ last_applied_seq).
    pub applied: bool,
    pub steps_applied: usize,
    /// Registry steps that changed nothing (the record is not live, ...): the same on every
    /// rebuild. A step that is not understood is an error instead.
    pub skipped: Vec<SkippedStep>,
    /// STEPs of other consumers ([`FOREIGN_OPS`]).
    pub foreign: usize,
    /// `Some((from, to))` when this transaction migrated the schema.
    pub migrated: Option<(u32, u32)>,
}

/// Read access to the live records a transaction starts from.
pub(crate) trait Base {
    fn live(&self, project: &str, uuid: &str) -> Result<Option<Entry>>;
}

/// Pending changes of one transaction, applied over a [`Base`].
#[derive(Default)]
pub(crate) struct Staging {
    /// key -> (status before the transaction, value now; None = removed from live)
    pub live: BTreeMap<(String, String), (Option<Status>, Option<Entry>)>,
    pub archive: Vec<Entry>,
    pub migrate: Option<(u32, u32)>,
}

impl Staging {
    fn get(&mut self, base: &dyn Base, project: &str, uuid: &str) -> Result<Option<Entry>> {
        let key = (project.to_owned(), uuid.to_owned());
        if let Some((_, cur)) = self.live.get(&key) {
            return Ok(cur.clone());
        }
        let cur = base.live(project, uuid)?;
        self.live.insert(key, (cur.as_ref().map(|e| e.status), cur.clone()));
        Ok(cur)
    }

    fn set(&mut self, project: &str, uuid: &str, value: Option<Entry>) {
        let key = (project.to_owned(), uuid.to_owned());
        self.live.get_mut(&key).expect("get before set").1 = value;
    }

    /// Counter changes implied by the staged transitions.
    pub fn count_delta(&self) -> [i64; 3] {
        // [live, tombstoned, quarantined]
        let mut d = [0i64; 3];
        let idx = |s: Status| match s {
            Status::Live => 0,
            Status::Tombstoned => 1,
            Status::Quarantined => 2,
        };
        for (before, after) in self.live.values() {
            if let Some(s) = before {
                d[idx(*s)] -= 1;
            }
            if let Some(e) = after {
                d[idx(e.status)] += 1;
            }
        }
        d[1] += self.archive.len() as i64;
        d
    }
}

/// Validate one transaction's records: one operation id, exactly one COMMIT, no ROLLBACK.
/// Returns (operation_id, commit_seq, STEP records sorted by seq).
pub(crate) fn split_transaction(records: &[Record]) -> Result<(String, u64, Vec<&Record>)> {
    let Some(first) = records.first() else {
        return Err(RegistryError::NotCommitted { operation_id: String::new() });
    };
    let op_id = first.operation_id.clone();
    let mut commit = None;
    let mut steps = Vec::new();
    for r in records {
        if r.operation_id != op_id {
            return Err(RegistryError::MixedTransaction { expected: op_id, found: r.operation_id.clone(), seq: r.seq });
        }
        match r.phase {
            Phase::Step => steps.push(r),
            Phase::Commit => commit = Some(r.seq),
            Phase::Rollback => return Err(RegistryError::RolledBack { operation_id: op_id, seq: r.seq }),
            Phase::Begin | Phase::Provisional | Phase::Final => {}
        }
    }
    let Some(commit_seq) = commit else {
        return Err(RegistryError::NotCommitted { operation_id: op_id });
    };
    steps.sort_by_key(|r| r.seq);
    Ok((op_id, commit_seq, steps))
}

/// The seq a transaction's `state` STEPs record their writers at: its last STEP's — the seq
/// of the batch as its editors are sent it (`batch_begin.seq`), so that a change made before
/// an editor applied the batch (its `base_seq` below that) is stale against every write of
/// it, also after a restart (docs/WAL.md, registry ops). At a STEP's own seq, the first
/// objects of a batch looked written before a `base_seq` the batch's editors never had.
pub(crate) fn writes_seq(steps: &[&Record], commit_seq: u64) -> u64 {
    steps.last().map_or(commit_seq, |r| r.seq)
}

/// Apply one STEP to the staging area, recording writers at `writes_seq` ([`writes_seq`]).
/// `current_schema` is the schema of `base`.
pub(crate) fn apply_step(
    base: &dyn Base,
    st: &mut Staging,
    report: &mut ApplyReport,
    rec: &Record,
    writes_seq: u64,
) -> Result<()> {
    let op = match parse_payload(&rec.payload) {
        ParsedStep::Foreign => {
            report.foreign += 1;
            return Ok(());
        }
        ParsedStep::Malformed(reason) => {
            return Err(RegistryError::UnknownStep { seq: rec.seq, operation_id: rec.operation_id.clone(), reason });
        }
        ParsedStep::Op(op) => op,
    };
    let seq = rec.seq;
    let project = rec.project_id.as_str();
    if op.uuid().is_some() && !is_valid_project_id(project) {
        return Err(RegistryError::UnknownStep {
            seq,
            operation_id: rec.operation_id.clone(),
            reason: format!("project_id {project:?} is invalid"),
        });
    }
    match op {
        Op::Migrate { from, to } => {
            st.migrate = Some((from, to));
            report.steps_applied += 1;
            return Ok(());
        }
        Op::Conflict { .. } => {
            report.steps_applied += 1;
            return Ok(());
        }
        Op::Register { uuid, kind, name, editor, editor_ref, session_id, client_id } => {
            let cur = st.get(base, project, &uuid)?;
            let mut e = cur.unwrap_or_else(|| Entry {
                project_id: project.to_owned(),
                uuid: uuid.clone(),
                kind: kind.clone(),
                name: String::new(),
                status: Status::Live,
                bindings: BTreeMap::new(),
                state: None,
                state_hash: None,
                quarantine_reason: None,
                created_seq: seq,
                updated_seq: seq,
                tombstone_seq: None,
                deleted_by: None,
                writers: Vec::new(),
            });
            e.kind = kind;
            if let Some(n) = name {
                e.name = n;
            }
            if let Some(ed) = editor {
                e.bindings.insert(
                    ed,
                    Binding {
                        editor_ref: editor_ref.unwrap_or_default(),
                        session_id: session_id.unwrap_or_default(),
                        client_id: client_id.unwrap_or_default(),
                        bound_seq: seq,
                    },
                );
            }
            e.updated_seq = e.updated_seq.max(seq);
            tracing::debug!(seq, uuid = %e.uuid, project, "registry: register");
            st.set(project, &uuid, Some(e));
        }
        Op::Tombstone { uuid, client_id, editor, automation } => {
            let Some(mut e) =
                updatable(st, base, project, &uuid, seq, report, "not live (unknown or already tombstoned)")?
            else {
                return Ok(());
            };
            e.status = Status::Tombstoned;
            e.tombstone_seq = Some(seq);
            e.deleted_by = client_id.zip(editor).map(|(client_id, editor)| DeletedBy { client_id, editor, automation });
            e.updated_seq = e.updated_seq.max(seq);
            tracing::debug!(seq, uuid = %uuid, project, "registry: tombstone");
            st.archive.push(e);
            st.set(project, &uuid, None);
        }
        Op::Quarantine { uuid, reason } => {
            let Some(mut e) = updatable(st, base, project, &uuid, seq, report, "not live")? else {
                return Ok(());
            };
            e.status = Status::Quarantined;
            e.quarantine_reason = Some(reason.unwrap_or_default());
            e.updated_seq = e.updated_seq.max(seq);
            st.set(project, &uuid, Some(e));
        }
        Op::Release { uuid } => {
            let Some(mut e) = updatable(st, base, project, &uuid, seq, report, "not live")? else {
                return Ok(());
            };
            e.status = Status::Live;
            e.quarantine_reason = None;
            e.updated_seq = e.updated_seq.max(seq);
            st.set(project, &uuid, Some(e));
        }
        Op::State { uuid, state, state_hash, writes } => {
            let Some(mut e) = updatable(st, base, project, &uuid, seq, report, "not live")? else {
                return Ok(());
            };
            e.state = Some(state);
            e.state_hash = state_hash;
            for w in &writes {
                record_write(&mut e.writers, w, writes_seq);
            }
            e.updated_seq = e.updated_seq.max(seq);
            st.set(project, &uuid, Some(e));
        }
    }
    report.steps_applied += 1;
    Ok(())
}

/// The live (or quarantined) record a step may update: `None` (and the step reported as
/// skipped) when there is none.
///
/// Transactions reach the registry in COMMIT order (the watermark makes a whole transaction
/// idempotent), so a step of a later-committed transaction applies even when another
/// transaction that committed in between wrote the record at a higher seq: a sync batch's
/// state STEP (written at BEGIN) is never dropped because an editor registered the uuid
/// before the batch committed. `updated_seq` never goes backwards.
fn updatable(
    st: &mut Staging,
    base: &dyn Base,
    project: &str,
    uuid: &str,
    seq: u64,
    report: &mut ApplyReport,
    missing: &str,
) -> Result<Option<Entry>> {
    let Some(e) = st.get(base, project, uuid)? else {
        skip(report, seq, uuid, missing.into());
        return Ok(None);
    };
    Ok(Some(e))
}

/// Report a registry step that changed nothing (never an error: rebuilds reach the same).
fn skip(report: &mut ApplyReport, seq: u64, uuid: &str, reason: String) {
    tracing::debug!(seq, uuid, %reason, "registry: step skipped");
    report.skipped.push(SkippedStep { seq, uuid: Some(uuid.to_owned()), reason });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Part, PartWriter};

    const U: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn w(parts: &[Part], client: &str) -> StateWrite {
        StateWrite {
            parts: parts.to_vec(),
            client_id: client.into(),
            editor: "unity".into(),
            automation: false,
            parent_before: None,
        }
    }

    /// Each part keeps one writer, the latest; a writer with no part left is dropped; the
    /// payload round-trips, and one without `writes` (an earlier build's) parses.
    /// Automation's write of the parent keeps the parent before it while it is the parent's
    /// last writer; a person's later write of the parent, or of it with automation's, drops it.
    #[test]
    fn automations_write_of_the_parent_keeps_the_parent_before_it() {
        let mut ws: Vec<PartWriter> = Vec::new();
        let auto = StateWrite { automation: true, parent_before: Some("g".into()), ..w(&[Part::Parent], "a") };
        record_write(&mut ws, &auto, 5);
        assert_eq!(ws[0].parent_before.as_deref(), Some("g"));
        record_write(&mut ws, &w(&[Part::Pose], "b"), 7); // another part: kept
        assert_eq!(ws.iter().find(|x| x.client_id == "a").and_then(|x| x.parent_before.as_deref()), Some("g"));
        record_write(&mut ws, &w(&[Part::Parent], "b"), 9); // a person's parent: gone
        assert!(ws.iter().all(|x| x.parent_before.is_none()), "{ws:?}");
        // Never on a person's write, even when one names it.
        record_write(&mut ws, &StateWrite { parent_before: Some("g".into()), ..w(&[Part::Parent], "c") }, 11);
        assert!(ws.iter().all(|x| x.parent_before.is_none()), "{ws:?}");
        // A person's write joining automation's of the same batch makes it a person's.
        record_write(&mut ws, &auto, 13);
        record_write(&mut ws, &w(&[Part::Pose], "a"), 13);
        assert!(ws.iter().all(|x| x.parent_before.is_none()), "{ws:?}");
        // Written to the WAL only when present.
        let json = serde_json::to_value(w(&[Part::Parent], "a")).unwrap();
        assert!(json.get("parent_before").is_none(), "{json}");
    }

    #[test]
    fn a_part_has_one_writer_the_latest() {
        let mut ws: Vec<PartWriter> = Vec::new();
        record_write(&mut ws, &w(&[Part::Existence, Part::Pose, Part::Parent], "a"), 5);
        record_write(&mut ws, &w(&[Part::Parent], "b"), 9);
        record_write(&mut ws, &w(&[Part::Pose], "b"), 9);
        assert_eq!(
            ws,
            vec![
                PartWriter {
                    parts: vec![Part::Existence],
                    seq: 5,
                    client_id: "a".into(),
                    editor: "unity".into(),
                    automation: false,
                    parent_before: None
                },
                PartWriter {
                    parts: vec![Part::Pose, Part::Parent],
                    seq: 9,
                    client_id: "b".into(),
                    editor: "unity".into(),
                    automation: false,
                    parent_before: None
                },
            ]
        );
        record_write(&mut ws, &w(&[Part::Existence], "c"), 12);
        assert!(ws.iter().all(|x| x.client_id != "a"), "{ws:?}");
        let op = Op::State {
            uuid: U.into(),
            state: serde_json::json!({}),
            state_hash: None,
            writes: vec![w(&[Part::Mesh], "c")],
        };
        let payload = op.to_payload();
        assert_eq!(payload["writes"][0]["parts"], serde_json::json!(["mesh"]));
        assert_eq!(parse_payload(&payload), ParsedStep::Op(op));
        let old = serde_json::json!({"op":"state","uuid":U,"state":{}});
        assert!(matches!(parse_payload(&old), ParsedStep::Op(Op::State { writes, .. }) if writes.is_empty()));
        let bad = serde_json::json!({"op":"state","uuid":U,"state":{},"writes":[{"parts":["pose"],"client_id":"c","editor":"unity","x":1}]});
        assert!(matches!(parse_payload(&bad), ParsedStep::Malformed(_)));
    }

    /// Automation's write stays automation's in the record (a restart reads it back), but
    /// for a writer whose write of one batch a person's change joined: then it is a person's.
    /// `automation` is written only when true.
    #[test]
    fn a_writer_is_automation_only_when_all_its_writes_were() {
        let auto = |parts: &[Part], client: &str| StateWrite { automation: true, ..w(parts, client) };
        let mut ws: Vec<PartWriter> = Vec::new();
        record_write(&mut ws, &auto(&[Part::Pose], "a"), 5);
        record_write(&mut ws, &auto(&[Part::Name], "b"), 7);
        record_write(&mut ws, &w(&[Part::Parent], "b"), 7);
        assert_eq!(
            ws.iter().map(|x| (x.client_id.as_str(), x.automation)).collect::<Vec<_>>(),
            [("a", true), ("b", false)]
        );
        let payload = Op::State {
            uuid: U.into(),
            state: serde_json::json!({}),
            state_hash: None,
            writes: vec![auto(&[Part::Pose], "a")],
        }
        .to_payload();
        assert_eq!(payload["writes"][0]["automation"], true);
        assert!(Op::State {
            uuid: U.into(),
            state: serde_json::json!({}),
            state_hash: None,
            writes: vec![w(&[Part::Pose], "a")]
        }
        .to_payload()["writes"][0]
            .get("automation")
            .is_none());
        assert_eq!(serde_json::to_value(&ws[0]).unwrap()["automation"], true);
        assert!(serde_json::to_value(&ws[1]).unwrap().get("automation").is_none());
    }
}
