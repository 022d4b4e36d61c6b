//! What the sync remembers of the uuids editors keep as a person's edit, and its record in the
//! WAL (docs/WAL.md §9, "Kept uuids"): which editors keep each uuid (`KeptHere`) and which
//! values another editor sent them that they hold still (`ForeignKept`, docs/PROTOCOL.md §6.2
//! "A full state of an object the daemon holds").
//!
//! Invariant: after every step of the machine, the last `kept` STEP of each uuid in the log
//! says what the machine holds of it (`Project::persist_kept`), so a restart folds the log
//! (with the checkpoint's kept records) to what the machine held when it stopped
//! ([`Project::restore_kept`]). Before, a restart forgot it, and a kept full state sent after
//! the restart wrote a value its editor had lost over the winner's, in every editor.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use tracing::debug;
use vibesync_wal::{Record, RecordDraft};

use super::{Project, SYNC_SESSION};
use crate::fast::HashMap;
use crate::stale::HeldForeign;

/// The `op` of the STEP that records kept uuids.
pub const KEPT_OP: &str = "kept";

/// uuid → `client_id` → the values that editor holds of the uuid that a full state of its must
/// not write as its person's (`Project::foreign_kept`, [`HeldForeign`]). By uuid first: what
/// an admitted change or a batch touches is found without a scan. Every uuid a method may
/// change is marked for the next `kept` STEP.
#[derive(Debug, Default)]
pub(super) struct ForeignKept {
    by_uuid: HashMap<String, HashMap<String, Vec<HeldForeign>>>,
    dirty: BTreeSet<String>,
}

impl ForeignKept {
    pub(super) fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// The values `client_id` holds of `uuid`.
    pub(super) fn get(&self, uuid: &str, client_id: &str) -> Option<&Vec<HeldForeign>> {
        self.by_uuid.get(uuid)?.get(client_id)
    }

    /// Add `values`, each replacing the one of its op's kind held before.
    pub(super) fn hold(&mut self, uuid: &str, client_id: &str, values: Vec<HeldForeign>) {
        if values.is_empty() {
            return;
        }
        self.dirty.insert(uuid.to_string());
        let held = self.by_uuid.entry(uuid.to_string()).or_default().entry(client_id.to_string()).or_default();
        for value in values {
            held.retain(|o| o.op.kind() != value.op.kind());
            held.push(value);
        }
    }

    /// Forget what `client_id` holds of `uuid`.
    pub(super) fn forget(&mut self, uuid: &str, client_id: &str) {
        remove_client(&mut self.by_uuid, &mut self.dirty, uuid, |by| by.remove(client_id).is_some(), HashMap::is_empty);
    }

    /// Forget what every editor holds of `uuid` (it is deleted).
    pub(super) fn forget_uuid(&mut self, uuid: &str) {
        forget_uuid(&mut self.by_uuid, &mut self.dirty, uuid);
    }

    /// What each editor holds of `uuid`, to change in place (`tidy` after).
    pub(super) fn of_mut(&mut self, uuid: &str) -> Option<&mut HashMap<String, Vec<HeldForeign>>> {
        let by = self.by_uuid.get_mut(uuid)?;
        self.dirty.insert(uuid.to_string());
        Some(by)
    }

    /// Drop the editors of `uuid` left holding nothing, and the uuid if none is left.
    pub(super) fn tidy(&mut self, uuid: &str) {
        if let Some(by) = self.by_uuid.get_mut(uuid) {
            by.retain(|_, held| !held.is_empty());
            if by.is_empty() {
                self.by_uuid.remove(uuid);
            }
        }
    }
}

/// uuid → the `client_id`s of the editors that keep it as their person's edit, as each editor
/// counts it (`Project::kept_here`). Every uuid a method changes is marked for the next
/// `kept` STEP.
#[derive(Debug, Default)]
pub(super) struct KeptHere {
    by_uuid: HashMap<String, BTreeSet<String>>,
    dirty: BTreeSet<String>,
}

impl KeptHere {
    /// As boot finds it in the not-synced list (the log says it already: nothing to record).
    pub(super) fn seeded<'a>(kept: impl IntoIterator<Item = &'a (String, String)>) -> KeptHere {
        let mut here = KeptHere::default();
        for (u, client_id) in kept {
            here.by_uuid.entry(u.clone()).or_default().insert(client_id.clone());
        }
        here
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    pub(super) fn contains(&self, uuid: &str, client_id: &str) -> bool {
        self.by_uuid.get(uuid).is_some_and(|c| c.contains(client_id))
    }

    pub(super) fn insert(&mut self, uuid: &str, client_id: &str) {
        if self.by_uuid.entry(uuid.to_string()).or_default().insert(client_id.to_string()) {
            self.dirty.insert(uuid.to_string());
        }
    }

    pub(super) fn remove(&mut self, uuid: &str, client_id: &str) {
        remove_client(&mut self.by_uuid, &mut self.dirty, uuid, |by| by.remove(client_id), BTreeSet::is_empty);
    }

    /// `uuid`'s not-synced entries changed (`Project::not_synced`): in the next `kept` STEP.
    pub(super) fn touch(&mut self, uuid: &str) {
        self.dirty.insert(uuid.to_string());
    }

    /// No editor keeps `uuid` any more (it is deleted).
    pub(super) fn forget_uuid(&mut self, uuid: &str) {
        forget_uuid(&mut self.by_uuid, &mut self.dirty, uuid);
    }
}

/// Remove one editor's entry of `uuid` (`remove` says whether it had one), marking the uuid
/// for the next `kept` STEP when it had, and drop the uuid once no editor's entry is left
/// (`ForeignKept::forget`, `KeptHere::remove`).
fn remove_client<V>(
    by_uuid: &mut HashMap<String, V>,
    dirty: &mut BTreeSet<String>,
    uuid: &str,
    remove: impl FnOnce(&mut V) -> bool,
    empty: impl FnOnce(&V) -> bool,
) {
    let Some(by) = by_uuid.get_mut(uuid) else { return };
    if remove(by) {
        dirty.insert(uuid.to_string());
    }
    if empty(by) {
        by_uuid.remove(uuid);
    }
}

/// Drop everything of `uuid` (it is deleted), marking it when there was something.
fn forget_uuid<V>(by_uuid: &mut HashMap<String, V>, dirty: &mut BTreeSet<String>, uuid: &str) {
    if by_uuid.remove(uuid).is_some() {
        dirty.insert(uuid.to_string());
    }
}

/// What the machine holds of one uuid's kept work, as a `kept` STEP records it: the editors
/// that keep it (`here`, by `client_id`), per editor the other editors' values it holds
/// (`held`), and the editors whose not-synced entry of it stands (`not_synced`: the boot fold
/// ends any other, as an editor's change of the uuid sent again ended it, docs/PROTOCOL.md
/// §6.4). All empty: nothing (the uuid's earlier records are void).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptOf {
    pub here: BTreeSet<String>,
    pub held: BTreeMap<String, Vec<HeldForeign>>,
    pub not_synced: BTreeSet<String>,
}

impl KeptOf {
    pub fn is_empty(&self) -> bool {
        self.here.is_empty() && self.held.is_empty() && self.not_synced.is_empty()
    }

    fn to_json(&self, uuid: &str) -> Value {
        let held: Map<String, Value> = self
            .held
            .iter()
            .map(|(client, values)| {
                let values: Vec<Value> = values
                    .iter()
                    .map(|h| {
                        json!({
                            "change": crate::sync::change_to_wire(uuid, &h.op, 1.0),
                            "from": h.from,
                            "superseded": h.superseded,
                        })
                    })
                    .collect();
                (client.clone(), Value::Array(values))
            })
            .collect();
        json!({"here": self.here, "held": held, "not_synced": self.not_synced})
    }

    fn from_json(uuid: &str, v: &Value) -> Result<KeptOf, String> {
        let at = |what: &str| format!("`kept.{uuid}.{what}`");
        let clients = |field: &str| match v.get(field) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|c| {
                    c.as_str().map(str::to_string).ok_or_else(|| format!("{}: a client_id is not a string", at(field)))
                })
                .collect::<Result<BTreeSet<String>, String>>(),
            _ => Err(format!("{} is not an array", at(field))),
        };
        let here = clients("here")?;
        let not_synced = clients("not_synced")?;
        let Some(Value::Object(by)) = v.get("held") else { return Err(format!("{} is not an object", at("held"))) };
        let mut held = BTreeMap::new();
        for (client, values) in by {
            let Value::Array(values) = values else {
                return Err(format!("{} is not an array", at(&format!("held.{client}"))));
            };
            let mut out = Vec::with_capacity(values.len());
            for (i, h) in values.iter().enumerate() {
                let here = at(&format!("held.{client}[{i}]"));
                let change = h.get("change").ok_or_else(|| format!("{here}: no `change`"))?;
                let op = crate::sync::parse_change(change, 1.0, &here).map_err(|e| e.message)?.op;
                let from = h.get("from").and_then(Value::as_str).ok_or_else(|| format!("{here}: no `from`"))?;
                let superseded =
                    h.get("superseded").and_then(Value::as_bool).ok_or_else(|| format!("{here}: no `superseded`"))?;
                out.push(HeldForeign { op, from: from.to_string(), superseded });
            }
            held.insert(client.clone(), out);
        }
        Ok(KeptOf { here, held, not_synced })
    }
}

/// The standalone `kept` STEP (docs/WAL.md §9, "Kept uuids"): what the machine holds now of
/// each uuid of `kept` (its last such record wins at boot).
pub fn kept_draft(project_id: &str, operation_id: &str, kept: &[(String, KeptOf)]) -> RecordDraft {
    let payload: Map<String, Value> = kept.iter().map(|(u, k)| (u.clone(), k.to_json(u))).collect();
    RecordDraft {
        session_id: SYNC_SESSION.to_string(),
        operation_id: operation_id.to_string(),
        uuids: kept.iter().map(|(u, _)| u.clone()).collect(),
        project_id: project_id.to_string(),
        phase: vibesync_wal::Phase::Step,
        outcome: vibesync_wal::Outcome::Ok,
        error_code: None,
        payload: json!({"op": KEPT_OP, "kept": payload}),
    }
}

/// Is `r` a `kept` STEP (without reading its entries)?
pub fn is_kept_step(r: &Record) -> bool {
    r.phase == vibesync_wal::Phase::Step
        && r.session_id == SYNC_SESSION
        && r.payload.get("op").and_then(Value::as_str) == Some(KEPT_OP)
}

/// A `kept` STEP's entries (`None`: `r` is no such record). A record that does not parse is an
/// error naming its seq and the field, never "nothing kept".
pub fn kept_of(r: &Record) -> Option<Result<Vec<(String, KeptOf)>, String>> {
    if !is_kept_step(r) {
        return None;
    }
    let Some(Value::Object(kept)) = r.payload.get("kept") else {
        return Some(Err(format!("the `kept` STEP at seq {}: `kept` is not an object", r.seq)));
    };
    Some(
        kept.iter()
            .map(|(u, v)| KeptOf::from_json(u, v).map(|k| (u.clone(), k)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| format!("the `kept` STEP at seq {}: {e}", r.seq)),
    )
}

impl Project {
    /// What the machine holds of `uuid`'s kept work now.
    fn kept_of(&self, uuid: &str) -> KeptOf {
        let from = (uuid.to_string(), String::new());
        KeptOf {
            not_synced: self
                .not_synced
                .range(from..)
                .take_while(|((u, _), _)| u == uuid)
                .map(|((_, c), _)| c.clone())
                .collect(),
            here: self.kept_here.by_uuid.get(uuid).cloned().unwrap_or_default(),
            held: self
                .foreign_kept
                .by_uuid
                .get(uuid)
                .map(|by| by.iter().map(|(c, v)| (c.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    }

    /// At the end of every step: one `kept` STEP with each uuid whose kept work changed since
    /// the last one (none when nothing did).
    pub(super) async fn persist_kept(&mut self, cx: &super::Cx<'_>) {
        if self.kept_here.dirty.is_empty() && self.foreign_kept.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.kept_here.dirty);
        dirty.append(&mut std::mem::take(&mut self.foreign_kept.dirty));
        let mut changed = Vec::new();
        for u in dirty {
            let now = self.kept_of(&u);
            let same = self.kept_logged.get(&u).map_or(now.is_empty(), |was| *was == now);
            if !same {
                changed.push((u, now));
            }
        }
        if changed.is_empty() {
            return;
        }
        let op_id = uuid::Uuid::new_v4().to_string();
        if let Err(e) = cx.append(vec![kept_draft(&self.project, &op_id, &changed)]).await {
            return cx.storage_failed(&op_id, &e).await;
        }
        let uuids: Vec<&String> = changed.iter().map(|(u, _)| u).collect();
        debug!(project_id = %self.project, operation_id = %op_id, uuids = ?uuids, "what editors keep of these uuids: recorded for a restart");
        for (u, now) in changed {
            if now.is_empty() {
                self.kept_logged.remove(&u);
            } else {
                self.kept_logged.insert(u, now);
            }
        }
    }

    /// Boot: what the `kept` STEPs of the log say the machine held (the last record of each
    /// uuid). A uuid it names replaces what the not-synced list seeded for it.
    pub fn restore_kept(&mut self, kept: impl IntoIterator<Item = (String, KeptOf)>) {
        for (u, k) in kept {
            self.kept_here.by_uuid.remove(&u);
            self.foreign_kept.by_uuid.remove(&u);
            if k.is_empty() {
                continue;
            }
            if !k.here.is_empty() {
                self.kept_here.by_uuid.insert(u.clone(), k.here.clone());
            }
            if !k.held.is_empty() {
                self.foreign_kept
                    .by_uuid
                    .insert(u.clone(), k.held.iter().map(|(c, v)| (c.clone(), v.clone())).collect());
            }
            self.kept_logged.insert(u, k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{ChangeOp, Material, ObjectState};

    fn record(draft: RecordDraft, seq: u64) -> Record {
        Record {
            seq,
            ts: "2026-12-01T00:00:00.000000Z".into(),
            process_id: 1,
            session_id: draft.session_id,
            operation_id: draft.operation_id,
            uuids: draft.uuids,
            project_id: draft.project_id,
            phase: draft.phase,
            outcome: draft.outcome,
            error_code: draft.error_code,
            schema_version: 1,
            payload: draft.payload,
            prev: String::new(),
            h: String::new(),
        }
    }

    /// Every op kind a held value can be survives the record's round trip exactly (values as
    /// a parsed change holds them: float32, docs/PROTOCOL.md §6.1).
    #[test]
    fn a_kept_step_reads_back_what_was_written() {
        let u = "0b9d6c1e-4f7a-4b8e-9c1d-2e3f4a5b6c7d";
        let f = |x: f64| x as f32 as f64;
        let red = Material { base_color: [1.0, 0.0, 0.0, 1.0], metallic: 0.0, roughness: 0.5, emission: [0.0; 3] };
        let state = ObjectState {
            kind: "object".into(),
            name: "Cube".into(),
            parent: None,
            t: [1.5, -2.25, 1e7],
            r: [0.0, 0.0, f(0.38268343236508984), f(0.9238795325112867)],
            s: [1.0, 2.0, f(0.001)],
            mesh_hash: None,
            visible: true,
            material: Some(red.clone()),
        };
        let ops = [
            ChangeOp::Transform { t: [f(0.1), f(0.2), f(0.3)], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] },
            ChangeOp::Rename("Mine".into()),
            ChangeOp::Visibility(false),
            ChangeOp::Material(Some(red)),
            ChangeOp::Material(None),
            ChangeOp::Mesh("ab".repeat(32)),
            ChangeOp::Create(state),
        ];
        // As the machine holds them: parsed from a change (float32, a unit rotation).
        let parsed =
            |op: &ChangeOp| crate::sync::parse_change(&crate::sync::change_to_wire(u, op, 1.0), 1.0, "t").unwrap().op;
        let held: Vec<HeldForeign> = ops
            .iter()
            .map(parsed)
            .enumerate()
            .map(|(i, op)| HeldForeign { op, from: format!("c{i}"), superseded: i % 2 == 0 })
            .collect();
        let kept = vec![
            (
                u.to_string(),
                KeptOf {
                    here: ["unity-1".to_string()].into(),
                    held: [("unity-1".to_string(), held)].into(),
                    not_synced: ["unity-1".to_string()].into(),
                },
            ),
            ("gone".to_string(), KeptOf::default()),
        ];
        let r = record(kept_draft("p", "op", &kept), 7);
        let back = kept_of(&r).expect("a kept STEP").expect("it parses");
        let mut want = kept.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(back, want);
    }

    #[test]
    fn a_damaged_kept_step_is_an_error_naming_its_seq_and_field() {
        let mut r = record(kept_draft("p", "op", &[]), 9);
        r.payload =
            json!({"op": "kept", "kept": {"u1": {"here": ["a"], "held": {"a": [{"from": "b"}]}, "not_synced": []}}});
        let e = kept_of(&r).expect("a kept STEP").unwrap_err();
        assert!(e.contains("seq 9") && e.contains("kept.u1.held.a[0]") && e.contains("change"), "{e}");
        r.payload = json!({"op": "late_delete"});
        assert!(kept_of(&r).is_none());
    }
}
