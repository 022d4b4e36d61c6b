//! Error codes. The strings are the wire spelling (docs/PROTOCOL.md §4); Python and C# use
//! the same strings.

use serde::{Deserialize, Serialize};

/// Codes carried by an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FrameTooLarge,
    BadFrame,
    BadMessage,
    UnknownType,
    AuthFailed,
    ProtocolMismatch,
    BadProjectId,
    HandshakeTimeout,
    NotAuthenticated,
    RateLimited,
    SafeMode,
    StorageFailed,
    ShuttingDown,
    SlowConsumer,
    TooManyConnections,
    SyncRestarted,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::FrameTooLarge,
        ErrorCode::BadFrame,
        ErrorCode::BadMessage,
        ErrorCode::UnknownType,
        ErrorCode::AuthFailed,
        ErrorCode::ProtocolMismatch,
        ErrorCode::BadProjectId,
        ErrorCode::HandshakeTimeout,
        ErrorCode::NotAuthenticated,
        ErrorCode::RateLimited,
        ErrorCode::SafeMode,
        ErrorCode::StorageFailed,
        ErrorCode::ShuttingDown,
        ErrorCode::SlowConsumer,
        ErrorCode::TooManyConnections,
        ErrorCode::SyncRestarted,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::BadMessage => "BAD_MESSAGE",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::ProtocolMismatch => "PROTOCOL_MISMATCH",
            ErrorCode::BadProjectId => "BAD_PROJECT_ID",
            ErrorCode::HandshakeTimeout => "HANDSHAKE_TIMEOUT",
            ErrorCode::NotAuthenticated => "NOT_AUTHENTICATED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::SafeMode => "SAFE_MODE",
            ErrorCode::StorageFailed => "STORAGE_FAILED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::SyncRestarted => "SYNC_RESTARTED",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// Whether the daemon closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::FrameTooLarge
                | ErrorCode::BadFrame
                | ErrorCode::AuthFailed
                | ErrorCode::ProtocolMismatch
                | ErrorCode::BadProjectId
                | ErrorCode::HandshakeTimeout
                | ErrorCode::NotAuthenticated
                | ErrorCode::ShuttingDown
                | ErrorCode::SlowConsumer
                | ErrorCode::TooManyConnections
                | ErrorCode::SyncRestarted
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes carried by one item of an `ack` (docs/PROTOCOL.md §4, per-item codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemErrorCode {
    InvalidUuid,
    UnknownKind,
    InvalidName,
    InvalidField,
    NonFinite,
    TooLarge,
    Quarantined,
    NotFound,
    DuplicateInRequest,
    Stale,
    Blocked,
    /// The daemon could not read or write its stores for this item (it stops; reconnect).
    StorageFailed,
}

impl ItemErrorCode {
    pub const ALL: [ItemErrorCode; 12] = [
        ItemErrorCode::InvalidUuid,
        ItemErrorCode::UnknownKind,
        ItemErrorCode::InvalidName,
        ItemErrorCode::InvalidField,
        ItemErrorCode::NonFinite,
        ItemErrorCode::TooLarge,
        ItemErrorCode::Quarantined,
        ItemErrorCode::NotFound,
        ItemErrorCode::DuplicateInRequest,
        ItemErrorCode::Stale,
        ItemErrorCode::Blocked,
        ItemErrorCode::StorageFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemErrorCode::InvalidUuid => "INVALID_UUID",
            ItemErrorCode::UnknownKind => "UNKNOWN_KIND",
            ItemErrorCode::InvalidName => "INVALID_NAME",
            ItemErrorCode::InvalidField => "INVALID_FIELD",
            ItemErrorCode::NonFinite => "NON_FINITE",
            ItemErrorCode::TooLarge => "TOO_LARGE",
            ItemErrorCode::Quarantined => "QUARANTINED",
            ItemErrorCode::NotFound => "NOT_FOUND",
            ItemErrorCode::DuplicateInRequest => "DUPLICATE_IN_REQUEST",
            ItemErrorCode::Stale => "STALE",
            ItemErrorCode::Blocked => "BLOCKED",
            ItemErrorCode::StorageFailed => "STORAGE_FAILED",
        }
    }

    /// A refusal after which the editor keeps its change as it is, marked not synced, and
    /// re-sends it on the usual triggers (docs/PROTOCOL.md §6.1): governance's (`BLOCKED`,
    /// `QUARANTINED`) and what the daemon cannot take as it is (`INVALID_FIELD`,
    /// `NON_FINITE`, `TOO_LARGE`). The editors' `engine.refusal` (Blender) and
    /// `SyncEngine.KeptWhenRefused` (Unity) keep the same list.
    pub fn kept_by_editor(self) -> bool {
        matches!(
            self,
            ItemErrorCode::Blocked
                | ItemErrorCode::Quarantined
                | ItemErrorCode::InvalidField
                | ItemErrorCode::NonFinite
                | ItemErrorCode::TooLarge
        )
    }
}

impl std::fmt::Display for ItemErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
