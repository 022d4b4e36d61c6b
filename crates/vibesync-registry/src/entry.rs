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
}

/// Record counts. `tombstoned` counts archived versions (one per tombstone), so a uuid that
/// was created and deleted twice counts twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub live: u64,
    pub tombstoned: u64,
    pub quarantined: u64,
}
