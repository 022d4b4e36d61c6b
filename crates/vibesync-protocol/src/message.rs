//! Typed messages (docs/PROTOCOL.md §3–§6) and the parser for inbound frames.
//!
//! Parsing is two-step so every error can name its field: the frame's bytes become a JSON
//! object with a string `type`, then the object is read into the message struct with
//! `serde_path_to_error` (errors read like ``field `items[3].uuid`: invalid type …``).
//! Unknown fields are ignored (forward compatibility); unknown types are `UNKNOWN_TYPE`.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, ItemErrorCode};
use crate::frame::Frame;
pub use crate::names::EditorRunState;
use crate::names::{BatchOutcome, ItemStatus, PathKind, RollbackCode};

/// `hello`: the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// Omitted (or null) by editors whose user set no project id: the daemon assigns one
    /// (docs/PROTOCOL.md §3, zero-config pairing) and names it in `welcome.project_id`.
    #[serde(default)]
    pub project_id: Option<String>,
    pub editor: String,
    #[serde(default)]
    pub editor_version: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub unit_scale: Option<f64>,
    #[serde(default)]
    pub last_seq: Option<u64>,
    /// Echoed on an error about this frame (a second `hello`, docs/PROTOCOL.md §4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterItem {
    pub uuid: String,
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub editor_ref: String,
    /// Set when the editor found this datablock carrying another datablock's uuid (a
    /// duplicate, paste or append) and gave it this fresh uuid: the original's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub request_id: String,
    pub items: Vec<RegisterItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    pub request_id: String,
    pub uuids: Vec<String>,
}

/// `change`: editor-observed changes; each entry is validated by the engine on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub request_id: String,
    /// Absent or `null`: 0 (docs/PROTOCOL.md §6.1).
    #[serde(default, deserialize_with = "null_is_default")]
    pub base_seq: u64,
    pub changes: Vec<Value>,
    /// Set when automation (an agent's tool call inside the editor) made these changes;
    /// absent for a person's edit (docs/PROTOCOL.md §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automation: Option<Automation>,
    /// uuid → the `mark` of the last `live` frame of that uuid the editor had applied on this
    /// connection when it observed these changes (docs/PROTOCOL.md §6.1, §6.3): a person who
    /// saw another editor's change as a live preview and changed the object after it made no
    /// conflict with it (§6.2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_is_default")]
    pub seen: BTreeMap<String, u64>,
}

/// An optional field sent as `null` reads as absent: its default (docs/PROTOCOL.md §6.1).
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Who, in automation, made a `change` (docs/PROTOCOL.md §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Automation {
    #[serde(default)]
    pub operation_id: String,
    #[serde(default)]
    pub tool: String,
    #[serde(default)]
    pub agent_session: String,
}

/// `editor_state`: an editor paused itself after repeated identical failures, or runs again;
/// and, while the daemon is in safe mode, which of its person's edits it holds unsent
/// (docs/PROTOCOL.md §6.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditorState {
    pub state: EditorRunState,
    #[serde(default)]
    pub reason: String,
    /// The uuids of the edits it holds marked not synced while the daemon is in safe mode (at
    /// most [`EditorState::MAX_HELD`]); absent: unchanged since its last `editor_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Vec<String>>,
    /// How many it holds in all (`held` may list the first [`EditorState::MAX_HELD`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_count: Option<u64>,
}

impl EditorState {
    /// At most this many uuids in one `held` list.
    pub const MAX_HELD: usize = 1000;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub batch_id: String,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
    /// The editor received the batch but holds it (e.g. Unity Play Mode); it will ask for a
    /// resync when it can apply again. Not a verification failure.
    #[serde(default)]
    pub held: bool,
    /// uuid → why the editor could not apply that uuid's changes as sent (e.g. "a Blender
    /// collection has no transform"): shown to the origin's person with the rollback
    /// (docs/PROTOCOL.md §6.4). Optional.
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
    /// The uuids of the batch whose changes the editor left unapplied, in whole or in part,
    /// to keep a person's edit there the daemon has not taken yet (docs/PROTOCOL.md §6.4);
    /// absent: the editor does not say (it may have spared some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spared: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserActivity {
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resync {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub since_seq: u64,
}

/// `admin`: operator actions, accepted only from `cli` sessions (`vibesync safe-mode`,
/// `vibesync quarantine`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admin {
    pub request_id: String,
    /// One of [`crate::AdminAction`] (checked by the daemon, which names the known ones).
    pub action: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
}

/// Every message a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Hello(Hello),
    Ping(Ping),
    Status(StatusRequest),
    Register(Register),
    Tombstone(Tombstone),
    Change(Change),
    Applied(Applied),
    UserActivity(UserActivity),
    Resync(Resync),
    Admin(Admin),
    EditorState(EditorState),
    AddonCommand(crate::addon::AddonCommand),
    AddonCancel(crate::addon::AddonCancel),
    CommandResponse(crate::addon::CommandResponse),
    RegistryUpdated(crate::addon::RegistryUpdated),
    AddonRegistered(crate::addon::AddonRegistered),
    AddonUnregistered(crate::addon::AddonUnregistered),
    SceneQuery(crate::addon::SceneQuery),
}

impl Inbound {
    pub fn type_name(&self) -> &'static str {
        match self {
            Inbound::Hello(_) => "hello",
            Inbound::Ping(_) => "ping",
            Inbound::Status(_) => "status",
            Inbound::Register(_) => "register",
            Inbound::Tombstone(_) => "tombstone",
            Inbound::Change(_) => "change",
            Inbound::Applied(_) => "applied",
            Inbound::UserActivity(_) => "user_activity",
            Inbound::Resync(_) => "resync",
            Inbound::Admin(_) => "admin",
            Inbound::EditorState(_) => "editor_state",
            Inbound::AddonCommand(_) => "addon_command",
            Inbound::AddonCancel(_) => "addon_cancel",
            Inbound::CommandResponse(_) => "command_response",
            Inbound::RegistryUpdated(_) => "registry_updated",
            Inbound::AddonRegistered(_) => "addon_registered",
            Inbound::AddonUnregistered(_) => "addon_unregistered",
            Inbound::SceneQuery(_) => "scene_query",
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Inbound::Ping(p) => p.request_id.as_deref(),
            Inbound::Status(s) => s.request_id.as_deref(),
            Inbound::Register(r) => Some(&r.request_id),
            Inbound::Tombstone(t) => Some(&t.request_id),
            Inbound::Change(c) => Some(&c.request_id),
            Inbound::Resync(r) => r.request_id.as_deref(),
            Inbound::Admin(a) => Some(&a.request_id),
            Inbound::AddonCommand(a) => Some(&a.request_id),
            Inbound::AddonCancel(a) => Some(&a.request_id),
            Inbound::CommandResponse(a) => Some(&a.request_id),
            Inbound::SceneQuery(a) => Some(&a.request_id),
            _ => None,
        }
    }
}

/// Why a well-framed message was refused. The connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MessageError {
    pub code: ErrorCode,
    pub message: String,
    /// The `request_id` of the offending message, when one could be read.
    pub request_id: Option<String>,
}

impl MessageError {
    fn bad(message: impl Into<String>, request_id: Option<String>) -> MessageError {
        MessageError { code: ErrorCode::BadMessage, message: message.into(), request_id }
    }
}

/// The first key that appears twice at the top level of a JSON object (None if there is
/// none or the text is not an object).
pub fn duplicate_top_level_key(json: &[u8]) -> Option<String> {
    struct Dup(Option<String>);
    impl<'de> serde::Deserialize<'de> for Dup {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dup, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Dup;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Dup, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    let mut dup = None;
                    while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        if dup.is_none() && !seen.insert(k.to_string()) {
                            dup = Some(k.into_owned());
                        }
                    }
                    Ok(Dup(dup))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Dup>(json).ok().and_then(|d| d.0)
}

/// Parse the JSON part of a frame into a typed message.
pub fn parse_inbound(json: &[u8]) -> Result<Inbound, MessageError> {
    if json.is_empty() {
        return Err(MessageError::bad(
            "empty message: the JSON part of the frame must be an object with a `type`",
            None,
        ));
    }
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| MessageError::bad(format!("invalid JSON ({e}); send one UTF-8 JSON object per frame"), None))?;
    let Value::Object(map) = &value else {
        return Err(MessageError::bad("message must be a JSON object with a string field `type`", None));
    };
    // A request_id is echoed whole or not at all (a truncated one matches no request).
    let request_id = map
        .get("request_id")
        .and_then(Value::as_str)
        .filter(|s| s.len() <= crate::validate::MAX_ID_BYTES)
        .map(str::to_owned);
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(MessageError::bad("field `type`: must be a string", request_id)),
        None => return Err(MessageError::bad("field `type`: missing", request_id)),
    };
    if let Some(rid) = map.get("request_id") {
        match rid.as_str() {
            Some(s) if s.len() <= crate::validate::MAX_ID_BYTES => {}
            Some(_) => {
                return Err(MessageError::bad(
                    format!("field `request_id`: longer than {} bytes", crate::validate::MAX_ID_BYTES),
                    None,
                ))
            }
            // `null` too: an optional `request_id` is left out, never null (docs/PROTOCOL.md §2).
            None => {
                return Err(MessageError::bad(
                    format!("field `request_id`: must be a string, got {}; leave it out to send none", json_kind(rid)),
                    None,
                ))
            }
        }
    }
    if ty == "hello" {
        // JSON objects keep the last of duplicate keys; for the handshake (token!) that
        // ambiguity is refused.
        if let Some(key) = duplicate_top_level_key(json) {
            return Err(MessageError::bad(
                format!(
                    "field `{}`: appears more than once; send each field once",
                    crate::validate::truncate_for_message(&key)
                ),
                request_id,
            ));
        }
    }
    fn typed<T: DeserializeOwned>(v: Value, rid: &Option<String>) -> Result<T, MessageError> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // A missing field is named itself, not by the object that lacks it (`.`).
            let message = match inner.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
                Some(field) if path == "." => format!("field `{field}`: missing"),
                Some(field) => format!("field `{path}.{field}`: missing"),
                None => format!("field `{path}`: {inner}"),
            };
            MessageError::bad(message, rid.clone())
        })
    }
    /// A `change` is typed with its `changes` array set aside and put back after: each
    /// change stays the JSON value the engine validates on its own (docs/PROTOCOL.md §6.1),
    /// and building every change's value a second time was a fifth of a session's CPU in a
    /// burst (docs/BENCHMARKS.md). The other fields, and a `changes` that is not an array,
    /// go through `typed` as any message does, so the errors are the same.
    fn change(mut value: Value, rid: &Option<String>) -> Result<Change, MessageError> {
        let set_aside = match value.get_mut("changes") {
            Some(v @ Value::Array(_)) => Some(std::mem::replace(v, Value::Array(Vec::new()))),
            _ => None,
        };
        let mut c: Change = typed(value, rid)?;
        if let Some(Value::Array(changes)) = set_aside {
            c.changes = changes;
        }
        Ok(c)
    }
    Ok(match ty.as_str() {
        "hello" => Inbound::Hello(typed(value, &request_id)?),
        "ping" => Inbound::Ping(typed(value, &request_id)?),
        "status" => Inbound::Status(typed(value, &request_id)?),
        "register" => Inbound::Register(typed(value, &request_id)?),
        "tombstone" => Inbound::Tombstone(typed(value, &request_id)?),
        "change" => Inbound::Change(change(value, &request_id)?),
        "applied" => Inbound::Applied(typed(value, &request_id)?),
        "user_activity" => Inbound::UserActivity(typed(value, &request_id)?),
        "resync" => Inbound::Resync(typed(value, &request_id)?),
        "admin" => Inbound::Admin(typed(value, &request_id)?),
        "editor_state" => Inbound::EditorState(typed(value, &request_id)?),
        "addon_command" => Inbound::AddonCommand(typed(value, &request_id)?),
        "addon_cancel" => Inbound::AddonCancel(typed(value, &request_id)?),
        "command_response" => Inbound::CommandResponse(typed(value, &request_id)?),
        "registry_updated" => Inbound::RegistryUpdated(typed(value, &request_id)?),
        "addon_registered" => Inbound::AddonRegistered(typed(value, &request_id)?),
        "addon_unregistered" => Inbound::AddonUnregistered(typed(value, &request_id)?),
        "scene_query" => Inbound::SceneQuery(typed(value, &request_id)?),
        other => {
            return Err(MessageError {
                code: ErrorCode::UnknownType,
                message: format!(
                    "unknown message type `{}`; see docs/PROTOCOL.md for the list",
                    crate::validate::truncate_for_message(other)
                ),
                request_id,
            })
        }
    })
}

/// One entry of `ack.results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub uuid: String,
    pub status: ItemStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ItemErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ItemResult {
    pub fn ok(uuid: impl Into<String>, status: ItemStatus) -> ItemResult {
        ItemResult { uuid: uuid.into(), status, error_code: None, message: None }
    }

    pub fn error(uuid: impl Into<String>, code: ItemErrorCode, message: impl Into<String>) -> ItemResult {
        ItemResult {
            uuid: uuid.into(),
            status: ItemStatus::Error,
            error_code: Some(code),
            message: Some(message.into()),
        }
    }
}

/// Every message the daemon sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outbound {
    Welcome {
        session_id: String,
        daemon_version: String,
        protocol: u32,
        seq: u64,
        safe_mode: bool,
        /// Why the daemon is in safe mode, as its `safe_mode` event says; only while it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        safe_mode_reason: Option<String>,
        /// The effective project (the one the hello named, or the one assigned to it).
        project_id: String,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        seq: u64,
    },
    Ack {
        request_id: String,
        seq: u64,
        results: Vec<ItemResult>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    BatchBegin {
        batch_id: String,
        seq: u64,
        path: PathKind,
        count: u32,
        /// The `resync` request this batch answers (§6.6).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    Apply {
        batch_id: String,
        change: Value,
        /// Automation made this change (an `agent` session's, or one an editor sent with
        /// `automation`, docs/PROTOCOL.md §6.3, §6.7): an editor does not apply its `delete`
        /// over a person's edit of the object that the daemon has not taken yet (§6.4).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        automation: bool,
    },
    BatchEnd {
        batch_id: String,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    BatchResult {
        batch_id: String,
        seq: u64,
        outcome: BatchOutcome,
        uuids: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<RollbackCode>,
        /// On `rolled_back` to the origin of a person's edit: the editor keeps its state and
        /// marks these uuids not synced (docs/PROTOCOL.md §6.4).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        kept_local: bool,
        /// Why propagation failed: with `kept_local`, and on a rollback to an origin that keeps
        /// nothing (an agent, a `cli` or `test` session; docs/PROTOCOL.md §6.4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// uuid → the `request_id` of the receiver's last change of that uuid this result
        /// ends (its earlier ones too; later ones are not ended); a uuid it does not name is
        /// not one of the receiver's changes here: an editor with several changes of one uuid
        /// in flight, or whose change of it waits for a later batch, knows which. `None` (not
        /// sent): every change of the uuids ends (docs/PROTOCOL.md §6.4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        through: Option<BTreeMap<String, String>>,
        /// On `rolled_back` with `VERIFY_MISMATCH`: the uuids whose answered hash differed, the
        /// rollback's cause (sorted). An editor that keeps its edit of another uuid of the
        /// batch lost it only because the batch is one transaction, and sends it again by
        /// itself (docs/PROTOCOL.md §6.4). Absent otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mismatched: Vec<String>,
    },
    /// The scene-holding sessions of the receiver's project changed (docs/PROTOCOL.md §6.8).
    Peers {
        project_id: String,
        peers: Vec<Peer>,
        other_projects: Vec<OtherProject>,
    },
    /// Two editors changed one object concurrently; `loser` was corrected (§6.2).
    Conflict {
        uuid: String,
        winner: String,
        loser: String,
        op: String,
        seq: u64,
    },
    /// A person released these quarantined uuids (`admin` `quarantine_release`): an editor
    /// that kept a person's edit of one of them, not synced, re-sends it (docs/PROTOCOL.md §6.8).
    QuarantineReleased {
        uuids: Vec<String>,
    },
    /// A fast-path change of another editor, forwarded at once as a live preview, before
    /// the window's batch carries and verifies it (docs/PROTOCOL.md §6.3). Not answered.
    Live {
        /// One change as in `apply.change`, lengths in the receiver's units.
        change: Value,
        /// The editor kind that made it.
        origin: crate::ClientKind,
        /// The change's admission mark in its project (increasing within one daemon run);
        /// an editor's later `change` names the last one it applied in `seen`.
        mark: u64,
    },
    SafeMode {
        active: bool,
        reason: String,
    },
    AdminResult {
        request_id: String,
        action: String,
        result: Value,
    },
    /// Daemon → Blender: run one addon tool (§9.2).
    AddonCommand {
        request_id: String,
        operation_id: String,
        addon_id: String,
        command: String,
        params: serde_json::Map<String, Value>,
        username: String,
        agent_session: String,
        timeout_ms: u64,
    },
    /// Daemon → agent: how a tool call ended (§9.2).
    CommandResponse {
        request_id: String,
        operation_id: String,
        addon_id: String,
        command: String,
        result: crate::addon::CommandResult,
        uuids: Vec<String>,
        seq: u64,
    },
    /// Daemon → agent: a call is waiting (people editing, Blender busy) (§9.2).
    CommandProgress {
        request_id: String,
        state: crate::addon::CallState,
        reason: String,
        elapsed_ms: u64,
    },
    /// Daemon → agent: the tools agents may use in this project changed (§9.1).
    RegistryUpdated {
        project_id: String,
        available_addons: Vec<Value>,
        rejected: Vec<Value>,
        withheld: Vec<Value>,
    },
    /// Daemon → agent: answer to `scene_query` (§9.3).
    Scene {
        request_id: String,
        seq: u64,
        objects: Vec<Value>,
    },
}

/// One entry of `peers.peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub session_id: String,
    pub client: crate::ClientKind,
    pub client_id: String,
}

/// One entry of `peers.other_projects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherProject {
    pub project_id: String,
    pub clients: Vec<crate::ClientKind>,
}

impl Outbound {
    pub fn error(code: ErrorCode, message: impl Into<String>, request_id: Option<String>) -> Outbound {
        Outbound::Error { code, message: message.into(), request_id }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("outbound messages serialize")
    }

    pub fn to_frame(&self) -> Frame {
        Frame::new(self.to_json(), bytes::Bytes::new())
    }
}

/// A `status` reply: the status object with `type` and `request_id` added.
pub fn status_reply(mut status: Value, request_id: Option<String>) -> Frame {
    if let Value::Object(map) = &mut status {
        let mut out = serde_json::Map::new();
        out.insert("type".into(), Value::String("status".into()));
        if let Some(r) = request_id {
            out.insert("request_id".into(), Value::String(r));
        }
        out.extend(std::mem::take(map));
        status = Value::Object(out);
    }
    Frame::new(serde_json::to_vec(&status).expect("status serializes"), bytes::Bytes::new())
}

/// What kind of JSON value `v` is, for error messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e =
            parse_inbound(br#"{"type":"register","request_id":"r","items":[{"uuid":1,"kind":"object"}]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert!(e.message.contains("items[0].uuid"), "{}", e.message);
        assert_eq!(e.request_id.as_deref(), Some("r"));
    }

    #[test]
    fn a_change_keeps_its_changes_and_its_errors_name_the_field() {
        let Inbound::Change(c) = parse_inbound(
            br#"{"type":"change","request_id":"c","base_seq":5,"changes":[{"op":"transform","uuid":"u","t":[1,2,3]},{"op":"rename"}]}"#,
        )
        .unwrap() else {
            panic!("not a change")
        };
        assert_eq!((c.request_id.as_str(), c.base_seq, c.automation), ("c", 5, None));
        // `null` is absent for each optional field.
        let Inbound::Change(n) = parse_inbound(
            br#"{"type":"change","request_id":"c","base_seq":null,"automation":null,"seen":null,"changes":[]}"#,
        )
        .unwrap() else {
            panic!("not a change")
        };
        assert_eq!((n.base_seq, n.automation, n.seen.len()), (0, None, 0));
        assert_eq!(
            c.changes,
            vec![serde_json::json!({"op":"transform","uuid":"u","t":[1,2,3]}), serde_json::json!({"op":"rename"})]
        );
        for (frame, field) in [
            (&br#"{"type":"change","request_id":"c","changes":{"op":"delete"}}"#[..], "changes"),
            (br#"{"type":"change","request_id":"c","changes":[],"base_seq":"5"}"#, "base_seq"),
            (br#"{"type":"change","changes":[{"op":"delete","uuid":"u"}]}"#, "request_id"),
            (br#"{"type":"change","request_id":"c","changes":[],"automation":{"tool":3}}"#, "automation.tool"),
        ] {
            let e = parse_inbound(frame).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadMessage);
            assert!(e.message.contains(field), "{field}: {}", e.message);
        }
    }

    #[test]
    fn applied_may_say_why_a_uuid_was_not_applied() {
        let Inbound::Applied(a) = parse_inbound(br#"{"type":"applied","batch_id":"b","seq":3,"hashes":{}}"#).unwrap()
        else {
            panic!("not applied")
        };
        assert!(a.failed.is_empty() && !a.held);
        let Inbound::Applied(a) =
            parse_inbound(br#"{"type":"applied","batch_id":"b","seq":3,"hashes":{},"failed":{"u":"no transform"}}"#)
                .unwrap()
        else {
            panic!("not applied")
        };
        assert_eq!(a.failed.get("u").map(String::as_str), Some("no transform"));
        let e = parse_inbound(br#"{"type":"applied","batch_id":"b","hashes":{},"failed":{"u":3}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert!(e.message.contains("failed.u"), "{}", e.message);
        // `spared` (§6.4): absent says nothing; an array of strings; anything else names it.
        assert_eq!(a.spared, None);
        let Inbound::Applied(a) =
            parse_inbound(br#"{"type":"applied","batch_id":"b","hashes":{},"spared":["u"]}"#).unwrap()
        else {
            panic!("not applied")
        };
        assert_eq!(a.spared, Some(vec!["u".to_string()]));
        for bad in [
            &br#"{"type":"applied","batch_id":"b","hashes":{},"spared":"u"}"#[..],
            br#"{"type":"applied","batch_id":"b","hashes":{},"spared":[3]}"#,
        ] {
            let e = parse_inbound(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadMessage);
            assert!(e.message.starts_with("field `spared"), "{}", e.message);
        }
    }

    #[test]
    fn unknown_type() {
        let e = parse_inbound(br#"{"type":"exec","code":"rm -rf /"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
    }

    #[test]
    fn outbound_has_type_first() {
        let j = Outbound::Pong { request_id: Some("p".into()), seq: 3 }.to_json();
        assert_eq!(j, br#"{"type":"pong","request_id":"p","seq":3}"#);
    }
}
