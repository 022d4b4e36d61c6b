//! Agent tool calls and addon capability registries (docs/PROTOCOL.md §9).
//!
//! An `agent` session (the MCP server, `vibesync mcp`) asks the daemon to run an addon tool
//! with `addon_command`; the daemon gates it, writes a WAL transaction for the call and
//! forwards it to one Blender session, whose `command_response` it relays back. Blender
//! reports the addons whose tools agents may use with `registry_updated` (full list) and
//! `addon_registered` / `addon_unregistered` (deltas); the daemon merges them per project and
//! pushes `registry_updated` to the project's agent sessions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `result.status` of a `command_response` (the handler standard's three statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// The tool ran and its changes were sent.
    Success,
    /// The tool ran and its changes were sent, with a caveat in `message`.
    Warning,
    /// Nothing changed: refused before running, or run and undone.
    Error,
}

/// Where a waiting call is (`command_progress.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// People are editing (or were, less than `governance.user_idle_ms` ago).
    Held,
    /// Blender reported itself busy (edit mode, a modal operator); retried shortly.
    Busy,
    /// Sent to Blender; the handler is running.
    Dispatched,
}

/// Why a tool call did not run or was undone (`result.error_code`). Handlers may return
/// their own codes (e.g. `OPERATION_FAILED`); the router and the daemon use only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallErrorCode {
    /// No Blender session of the project holds the addon (or none is connected).
    EditorOffline,
    /// The daemon is in safe mode: automation is off until a person clears it.
    SafeMode,
    /// This tool failed `governance.tool_failures` times: it is refused until a person
    /// clears safe mode / the failure counters.
    Blocked,
    /// People kept editing (or Blender stayed busy) for the call's whole timeout.
    HeldTimeout,
    /// The agent cancelled the call before it was dispatched.
    Cancelled,
    /// No registered (and consented) addon declares this tool.
    UnknownTool,
    /// An argument has the wrong JSON type.
    InvalidType,
    /// A number is outside `min`/`max`, or a vector has the wrong length.
    OutOfRange,
    /// An `enum` argument is not one of `options`.
    InvalidOption,
    /// An argument the tool does not declare.
    UnknownField,
    /// A required argument is missing.
    MissingField,
    /// An argument the tool refused for another reason (the message says why).
    InvalidArgument,
    /// A named object, material or collection does not exist in Blender.
    NotFound,
    /// A `file_path` resolves outside the project's folder.
    PathOutsideProject,
    /// The handler raised or returned `status: error`; its changes were undone.
    HandlerFailed,
    /// The handler ran longer than its time budget; its changes were undone.
    HandlerTimeout,
    /// Blender did not answer within the call's timeout.
    ResponseTimeout,
    /// Blender is busy (edit mode, a modal operator): the call waits.
    EditorBusy,
    /// The WAL could not record the call.
    StorageFailed,
}

impl CallErrorCode {
    pub const ALL: [CallErrorCode; 19] = [
        CallErrorCode::EditorOffline,
        CallErrorCode::SafeMode,
        CallErrorCode::Blocked,
        CallErrorCode::HeldTimeout,
        CallErrorCode::Cancelled,
        CallErrorCode::UnknownTool,
        CallErrorCode::InvalidType,
        CallErrorCode::OutOfRange,
        CallErrorCode::InvalidOption,
        CallErrorCode::UnknownField,
        CallErrorCode::MissingField,
        CallErrorCode::InvalidArgument,
        CallErrorCode::NotFound,
        CallErrorCode::PathOutsideProject,
        CallErrorCode::HandlerFailed,
        CallErrorCode::HandlerTimeout,
        CallErrorCode::ResponseTimeout,
        CallErrorCode::EditorBusy,
        CallErrorCode::StorageFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallErrorCode::EditorOffline => "EDITOR_OFFLINE",
            CallErrorCode::SafeMode => "SAFE_MODE",
            CallErrorCode::Blocked => "BLOCKED",
            CallErrorCode::HeldTimeout => "HELD_TIMEOUT",
            CallErrorCode::Cancelled => "CANCELLED",
            CallErrorCode::UnknownTool => "UNKNOWN_TOOL",
            CallErrorCode::InvalidType => "INVALID_TYPE",
            CallErrorCode::OutOfRange => "OUT_OF_RANGE",
            CallErrorCode::InvalidOption => "INVALID_OPTION",
            CallErrorCode::UnknownField => "UNKNOWN_FIELD",
            CallErrorCode::MissingField => "MISSING_FIELD",
            CallErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            CallErrorCode::NotFound => "NOT_FOUND",
            CallErrorCode::PathOutsideProject => "PATH_OUTSIDE_PROJECT",
            CallErrorCode::HandlerFailed => "HANDLER_FAILED",
            CallErrorCode::HandlerTimeout => "HANDLER_TIMEOUT",
            CallErrorCode::ResponseTimeout => "RESPONSE_TIMEOUT",
            CallErrorCode::EditorBusy => "EDITOR_BUSY",
            CallErrorCode::StorageFailed => "STORAGE_FAILED",
        }
    }

    /// Whether the call was refused before anything ran (nothing to undo, nothing logged
    /// in the WAL).
    pub fn is_refusal(self) -> bool {
        !matches!(
            self,
            CallErrorCode::HandlerFailed
                | CallErrorCode::HandlerTimeout
                | CallErrorCode::ResponseTimeout
                | CallErrorCode::StorageFailed
        )
    }

    /// Whether a call that ended with this code counts as a failure of the tool (the
    /// governance counter per `addon_id.tool`). Refusals before running do not.
    pub fn counts_as_tool_failure(self) -> bool {
        matches!(self, CallErrorCode::HandlerFailed | CallErrorCode::HandlerTimeout | CallErrorCode::ResponseTimeout)
    }
}

impl std::fmt::Display for CallErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one tool call, as the handler standard shapes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub status: CommandStatus,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// A [`CallErrorCode`], or a handler's own code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The argument at fault, as a JSON pointer into the call's `params` (`/size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl CommandResult {
    pub fn refused(code: CallErrorCode, message: impl Into<String>) -> CommandResult {
        CommandResult {
            status: CommandStatus::Error,
            message: message.into(),
            data: Value::Null,
            error_code: Some(code.as_str().to_string()),
            field: None,
        }
    }

    pub fn error_code(&self) -> Option<CallErrorCode> {
        let code = self.error_code.as_deref()?;
        CallErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

/// `addon_command` from an agent: run `addon_id`'s tool `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonCommand {
    pub request_id: String,
    pub addon_id: String,
    pub command: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// How long the call may take in all (held + running), in ms; default
    /// `agents.call_timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `addon_cancel` from an agent: drop a call that has not been dispatched yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonCancel {
    pub request_id: String,
}

/// `command_response` from Blender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub request_id: String,
    #[serde(default)]
    pub addon_id: String,
    #[serde(default)]
    pub command: String,
    pub result: CommandResult,
    /// uuids whose changes the call sent (as `change`s carrying `automation`).
    #[serde(default)]
    pub uuids: Vec<String>,
    #[serde(default)]
    pub duration_ms: u64,
}

/// `registry_updated` from Blender: every addon whose tools agents may use now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryUpdated {
    /// Echoed on an error about this frame (docs/PROTOCOL.md §4); these messages need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub available_addons: Vec<Value>,
    /// Manifests refused, each `{addon_id, file, path, reason}`.
    #[serde(default)]
    pub rejected: Vec<Value>,
    /// Valid addons a person has not allowed for agents, each `{addon_id, reason}`.
    #[serde(default)]
    pub withheld: Vec<Value>,
}

/// `addon_registered` from Blender: one addon became available (its full entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonRegistered {
    pub addon_id: String,
    pub manifest: Value,
    /// Echoed on an error about this frame (docs/PROTOCOL.md §4); these messages need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `addon_unregistered` from Blender: one addon is no longer available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonUnregistered {
    pub addon_id: String,
    /// Echoed on an error about this frame (docs/PROTOCOL.md §4); these messages need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `scene_query` from an agent: the synced state of the project's objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneQuery {
    pub request_id: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_serde() {
        for c in CallErrorCode::ALL {
            let s = serde_json::to_value(c).unwrap();
            assert_eq!(s, Value::String(c.as_str().into()));
            let r = CommandResult::refused(c, "x");
            assert_eq!(r.error_code(), Some(c));
        }
    }

    #[test]
    fn result_shape() {
        let r: CommandResult = serde_json::from_str(r#"{"status":"warning","message":"m","data":{"a":1}}"#).unwrap();
        assert_eq!(r.status, CommandStatus::Warning);
        assert_eq!(r.error_code(), None);
    }
}
