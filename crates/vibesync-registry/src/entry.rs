//! The registry record (`Entry`) and its parts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Lifecycle status of a registry record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered and synced.
    Live,
    /// Deleted; the record lives on in the archive under its tombstone seq.
    Tombstoned,
    /// Held back from sync (identity ambiguity, repeated failures); still in the live tree.
    Quarantined,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Tombstoned => "tombstoned",
            Status::Quarantined => "quarantined",
        }
    }
}

/// How one editor kind (`blender`, `unity`, ...) currently refers to a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The editor's own handle (`OB:Cube`, a hierarchy path). Cosmetic; identity is the uuid.
    pub editor_ref: String,
    pub session_id: String,
    pub client_id: String,
    /// Seq of the STEP that last wrote this binding.
    pub bound_seq: u64,
}

/// Who deleted a record: the client (its `client_id`) and editor kind whose `tombstone` STEP
/// archived it, and whether automation did (`automation`: a `delete` change an editor sent
/// with `automation`). Kept so that a change made before that delete by another editor is
/// refused `STALE` also after a daemon restart — but a person's, over automation's delete
/// (docs/PROTOCOL.md §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedBy {
    pub client_id: String,
    pub editor: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automation: bool,
}

/// A part of an object's synced state, as changes write them (docs/PROTOCOL.md §6.1
/// "Parts"): `pose` (`t`, `r`, `s`), `name`, `visibility`, `parent`, `mesh`, `material`, and
/// `existence` (the object made whole by a `create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Pose,
    Name,
    Visibility,
    Parent,
    Mesh,
    Material,
    Existence,
}

/// Who last wrote some parts of a record's state: the client (`client_id`) and editor kind
/// whose committed change wrote them, in the `state` STEP at `seq`, and whether automation
/// made it (`automation`: every change of that writer's write was automation's — an editor's
/// sent with `automation`; an `agent` session's writes are automation's by their editor
/// kind). Kept so that a change another editor made before that write is refused `STALE`
/// also after a daemon restart, and a person's change is not, over automation's write
/// (docs/PROTOCOL.md §6.1). Each part has at most one writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartWriter {
    pub parts: Vec<Part>,
    pub seq: u64,
    pub client_id: String,
    pub editor: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automation: bool,
    /// For automation's write of the `parent`: the parent the object had before it (absent:
    /// none, the root; `StateWrite::parent_before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_before: Option<String>,
}

/// One registry record, keyed by `project_id` + `uuid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub project_id: String,
    pub uuid: String,
    pub kind: String,
    /// Cosmetic display name.
    pub name: String,
    pub status: Status,
    /// Per editor kind.
    #[serde(default)]
    pub bindings: BTreeMap<String, Binding>,
    /// Authoritative synced state (owned by the sync engine).
    #[serde(default)]
    pub state: Option<serde_json::Value>,
    #[serde(default)]
    pub state_hash: Option<String>,
    /// Why the record is quarantined (set while `status == quarantined`).
    #[serde(default)]
    pub quarantine_reason: Option<String>,
    /// Seq of the STEP that created this incarnation of the record.
    pub created_seq: u64,
    /// Seq of the last STEP that changed it.
    pub updated_seq: u64,
    /// Seq of the tombstone STEP (archived records only).
    #[serde(default)]
    pub tombstone_seq: Option<u64>,
    /// Who deleted it (archived records whose `tombstone` STEP named its client; absent in
    /// records tombstoned by older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<DeletedBy>,
    /// Who last wrote each part of `state` (absent in records written by older builds, and
    /// for parts no `state` STEP named a writer of).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<PartWriter>,
}

impl Entry {
    /// The seq an archived version is kept under (its archive key's last part): its
    /// tombstone's seq, or its last change's for a version written without one.
    pub fn archive_seq(&self) -> u64 {
        self.tombstone_seq.unwrap_or(self.updated_seq)
    }
}

/// Record counts. `tombstoned` counts archived versions (one per tombstone), so a uuid that
/// was created and deleted twice counts twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub live: u64,
    pub tombstoned: u64,
    pub quarantined: u64,
}

/// The shape of an [`Entry`], checked without building one: the same fields, types and
/// defaults, strings borrowed (no copy unless escaped), `state` syntax-checked only (any JSON
/// value is a valid state). A record parses as an `EntryCheck` exactly when it parses as an
/// `Entry` (a test pins it); the consistency pass at open uses it on every record, so a
/// restart does not build (and free) every record's state.
#[derive(Deserialize)]
pub(crate) struct EntryCheck<'a> {
    #[serde(borrow)]
    pub project_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub uuid: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "kind")]
    _kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "name")]
    _name: std::borrow::Cow<'a, str>,
    pub status: Status,
    #[serde(default, borrow, rename = "bindings")]
    _bindings: BTreeMap<std::borrow::Cow<'a, str>, BindingCheck<'a>>,
    #[serde(default, rename = "state")]
    _state: Option<serde::de::IgnoredAny>,
    #[serde(default, borrow, rename = "state_hash")]
    _state_hash: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, rename = "quarantine_reason")]
    _quarantine_reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "created_seq")]
    _created_seq: u64,
    #[serde(rename = "updated_seq")]
    _updated_seq: u64,
    #[serde(default)]
    pub tombstone_seq: Option<u64>,
    #[serde(default, borrow, rename = "deleted_by")]
    _deleted_by: Option<DeletedByCheck<'a>>,
    #[serde(default, borrow, rename = "writers")]
    _writers: Vec<PartWriterCheck<'a>>,
}

/// The shape of a [`PartWriter`] (see [`EntryCheck`]).
#[derive(Deserialize)]
struct PartWriterCheck<'a> {
    #[serde(rename = "parts")]
    _parts: Vec<Part>,
    #[serde(rename = "seq")]
    _seq: u64,
    #[serde(borrow, rename = "client_id")]
    _client_id: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "editor")]
    _editor: std::borrow::Cow<'a, str>,
    #[serde(default, rename = "automation")]
    _automation: bool,
}

/// The shape of a [`DeletedBy`] (see [`EntryCheck`]).
#[derive(Deserialize)]
struct DeletedByCheck<'a> {
    #[serde(borrow, rename = "client_id")]
    _client_id: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "editor")]
    _editor: std::borrow::Cow<'a, str>,
    #[serde(default, rename = "automation")]
    _automation: bool,
}

/// The shape of a [`Binding`] (see [`EntryCheck`]).
#[derive(Deserialize)]
struct BindingCheck<'a> {
    #[serde(borrow, rename = "editor_ref")]
    _editor_ref: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "session_id")]
    _session_id: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "client_id")]
    _client_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "bound_seq")]
    _bound_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `EntryCheck` accepts exactly what `Entry` accepts.
    #[test]
    fn entry_check_accepts_exactly_what_entry_accepts() {
        let good = json!({"project_id":"p","uuid":"u","kind":"object","name":"Cube \"1\"","status":"live",
            "bindings":{"blender":{"editor_ref":"OB:Cube","session_id":"s","client_id":"c","bound_seq":3}},
            "state":{"t":[1,2,3],"n":null},"state_hash":"h","quarantine_reason":null,
            "created_seq":1,"updated_seq":3,"tombstone_seq":null,
            "deleted_by":{"client_id":"c","editor":"unity","automation":true},
            "writers":[{"parts":["pose","parent"],"seq":3,"client_id":"c","editor":"unity"},
                       {"parts":["name"],"seq":4,"client_id":"c","editor":"blender","automation":true}]});
        let mut cases = vec![good.clone()];
        for key in ["project_id", "uuid", "kind", "name", "status", "created_seq", "updated_seq"] {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(key);
            cases.push(v); // a required field missing
        }
        for key in ["bindings", "state", "state_hash", "quarantine_reason", "tombstone_seq", "deleted_by", "writers"] {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(key);
            cases.push(v); // an optional field missing
        }
        for (key, bad) in [
            ("kind", json!(1)),
            ("name", json!(null)),
            ("status", json!("gone")),
            ("created_seq", json!(-1)),
            ("updated_seq", json!("3")),
            ("tombstone_seq", json!("x")),
            ("deleted_by", json!("unity")),
            ("deleted_by", json!({"client_id": "c"})),
            ("deleted_by", json!({"client_id": "c", "editor": "unity", "automation": 1})),
            ("writers", json!({})),
            ("writers", json!([{"parts":["wings"],"seq":3,"client_id":"c","editor":"unity"}])),
            ("writers", json!([{"parts":["pose"],"client_id":"c","editor":"unity"}])),
            ("writers", json!([{"parts":["pose"],"seq":3,"client_id":"c"}])),
            ("writers", json!([{"parts":["pose"],"seq":3,"client_id":"c","editor":"unity","automation":"yes"}])),
            ("state_hash", json!(5)),
            ("quarantine_reason", json!([])),
            ("bindings", json!([])),
            ("bindings", json!({"blender":{"editor_ref":"x","session_id":"s","client_id":"c"}})),
            ("bindings", json!({"blender":{"editor_ref":1,"session_id":"s","client_id":"c","bound_seq":1}})),
            ("state", json!(null)),
            ("state", json!("any value")),
            ("extra", json!({"ignored": true})),
        ] {
            let mut v = good.clone();
            v[key] = bad;
            cases.push(v);
        }
        let mut texts: Vec<String> = cases.iter().map(|c| c.to_string()).collect();
        texts.push(good.to_string().replace("\"live\"", "\"live\",\"status\":\"live\"")); // duplicate field
        texts.push(good.to_string()[..40].to_string()); // torn
        texts.push("not json".into());
        let mut accepted = 0;
        for t in &texts {
            let full = serde_json::from_str::<Entry>(t).is_ok();
            let check = serde_json::from_str::<EntryCheck>(t).is_ok();
            assert_eq!(full, check, "Entry {full}, EntryCheck {check}: {t}");
            accepted += usize::from(full);
        }
        assert!(accepted > 5 && accepted < texts.len() - 5, "both kinds of case are covered");
    }
}
