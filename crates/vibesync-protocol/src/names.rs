//! The wire vocabulary (docs/PROTOCOL.md): every message type with its direction, statuses,
//! outcomes, paths and kinds, as enums. Each enum has its wire spelling (`as_str`, serde),
//! `ALL` (every value, in documentation order) and `parse`. `tests/vectors/names.json` is
//! generated from these enums (crates/vibesync-protocol/tests/vectors.rs) and read by the
//! Python and C# suites, so the three implementations spell every name alike.

/// Declares a wire enum: variants with their wire spelling, `ALL`, `as_str`, `parse`,
/// `Display` and serde as the string.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The value with this wire spelling, if any.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// Every wire spelling, comma-separated (for error messages).
            pub fn list() -> String {
                $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("`{}` is not one of {}", crate::validate::truncate_for_message(&s), $name::list()))
                })
            }
        }
    };
}

wire_enum! {
    /// Who sends a message type.
    Direction {
        /// Editor (or any client) → daemon.
        ToDaemon = "to_daemon",
        /// Daemon → client.
        ToClient = "to_client",
        /// Both: `status` is a request and its reply; `resync` is asked by editors (the daemon
        /// answers with a `resync` batch, §6.6).
        Both = "both",
    }
}

wire_enum! {
    /// Every `type` of docs/PROTOCOL.md.
    MessageType {
        Hello = "hello",
        Welcome = "welcome",
        Error = "error",
        Ping = "ping",
        Pong = "pong",
        Status = "status",
        Register = "register",
        Tombstone = "tombstone",
        Ack = "ack",
        Change = "change",
        BatchBegin = "batch_begin",
        Apply = "apply",
        BatchEnd = "batch_end",
        Applied = "applied",
        BatchResult = "batch_result",
        Resync = "resync",
        UserActivity = "user_activity",
        SafeMode = "safe_mode",
        Admin = "admin",
        AdminResult = "admin_result",
        /// The scene-holding sessions of the project changed (§6.8).
        Peers = "peers",
        /// Two people changed the same object; the loser was corrected (§6.8).
        Conflict = "conflict",
        /// A person released quarantined uuids: editors re-send what they kept of them (§6.8).
        QuarantineReleased = "quarantine_released",
        /// An editor paused or resumed itself (§6.8).
        EditorState = "editor_state",
        /// A fast-path change forwarded at once as a live preview, before its batch (§6.3).
        Live = "live",
        /// Agent tool calls and addon registries (§9).
        AddonCommand = "addon_command",
        AddonCancel = "addon_cancel",
        CommandResponse = "command_response",
        CommandProgress = "command_progress",
        RegistryUpdated = "registry_updated",
        AddonRegistered = "addon_registered",
        AddonUnregistered = "addon_unregistered",
        SceneQuery = "scene_query",
        Scene = "scene",
    }
}

impl MessageType {
    pub fn direction(self) -> Direction {
        use MessageType::*;
        match self {
            Hello | Ping | Register | Tombstone | Change | Applied | UserActivity | Admin | EditorState
            | AddonCancel | AddonRegistered | AddonUnregistered | SceneQuery => Direction::ToDaemon,
            Welcome | Error | Pong | Ack | BatchBegin | Apply | BatchEnd | BatchResult | SafeMode | AdminResult
            | Peers | Conflict | QuarantineReleased | Live | CommandProgress | Scene => Direction::ToClient,
            // addon_command: agent → daemon → Blender; command_response: Blender → daemon →
            // agent; registry_updated: Blender → daemon → agents (§9).
            Status | Resync | AddonCommand | CommandResponse | RegistryUpdated => Direction::Both,
        }
    }
}

wire_enum! {
    /// `ack.results[].status` (§5, §6.1).
    ItemStatus {
        Registered = "registered",
        Updated = "updated",
        Unchanged = "unchanged",
        Collision = "collision",
        Tombstoned = "tombstoned",
        Queued = "queued",
        Held = "held",
        /// Merged into a later `change` of the same session by the rate limiter (§2).
        Coalesced = "coalesced",
        Error = "error",
    }
}

wire_enum! {
    /// `batch_result.outcome` (§6.4).
    BatchOutcome {
        Committed = "committed",
        RolledBack = "rolled_back",
        Dropped = "dropped",
    }
}

wire_enum! {
    /// `batch_result.error_code` on a rollback, and the WAL's ROLLBACK `error_code` (docs/WAL.md).
    RollbackCode {
        VerifyMismatch = "VERIFY_MISMATCH",
        VerifyTimeout = "VERIFY_TIMEOUT",
        RecoveredIncomplete = "RECOVERED_INCOMPLETE",
        /// A participant disconnected after receiving the batch, before `applied` (§6.4).
        ParticipantLost = "PARTICIPANT_LOST",
        /// The same, after it said it was closing the connection on purpose (`editor_state`
        /// `closing`: a file opened or closed, the editor quitting): not evidence (§6.7).
        ParticipantLeft = "PARTICIPANT_LEFT",
    }
}

wire_enum! {
    /// `batch_begin.path` (§6.3).
    PathKind {
        Fast = "fast",
        Slow = "slow",
        Resync = "resync",
    }
}

wire_enum! {
    /// `hello.editor`: the kind of client (§3). `blender` and `unity` hold scenes.
    ClientKind {
        Blender = "blender",
        Unity = "unity",
        Cli = "cli",
        Agent = "agent",
        Test = "test",
    }
}

impl ClientKind {
    /// Editors that hold a scene: they receive batches and replays (§6.2).
    pub fn holds_scene(self) -> bool {
        matches!(self, ClientKind::Blender | ClientKind::Unity)
    }
}

wire_enum! {
    /// Datablock kinds the registry knows (`register.items[].kind`, §5).
    EntityKind {
        Object = "object",
        Mesh = "mesh",
        Material = "material",
        Armature = "armature",
        Action = "action",
        Image = "image",
        Collection = "collection",
        Light = "light",
        Camera = "camera",
        NodeGroup = "node_group",
    }
}

impl EntityKind {
    /// Kinds with synced state (`create.kind`, §6.1).
    pub fn has_synced_state(self) -> bool {
        matches!(self, EntityKind::Object | EntityKind::Collection)
    }
}

wire_enum! {
    /// `change.changes[].op` (§6.1).
    ChangeOpKind {
        Create = "create",
        Delete = "delete",
        Reparent = "reparent",
        Mesh = "mesh",
        Material = "material",
        Transform = "transform",
        Rename = "rename",
        Visibility = "visibility",
    }
}

impl ChangeOpKind {
    /// The path an op takes when nothing degrades it (§6.1).
    pub fn path(self) -> PathKind {
        match self {
            ChangeOpKind::Transform | ChangeOpKind::Rename | ChangeOpKind::Visibility => PathKind::Fast,
            _ => PathKind::Slow,
        }
    }
}

wire_enum! {
    /// `admin.action` (§6.7).
    AdminAction {
        SafeModeClear = "safe_mode_clear",
        QuarantineList = "quarantine_list",
        QuarantineRelease = "quarantine_release",
        Verify = "verify",
        Entries = "entries",
        Maintain = "maintain",
        Stop = "stop",
    }
}

wire_enum! {
    /// `editor_state.state` (§6.8): whether an editor's sync runs; `Closing`: it is about to
    /// close this connection on purpose.
    EditorRunState {
        Running = "running",
        Paused = "paused",
        Closing = "closing",
    }
}

/// Optional fields that protocol 1 readers must understand, per message type (§6.8).
pub const OPTIONAL_FIELDS: &[(MessageType, &[&str])] = &[
    (MessageType::Change, &["automation", "seen"]),
    (MessageType::Apply, &["automation"]),
    (MessageType::Applied, &["failed", "held", "spared"]),
    (MessageType::EditorState, &["held", "held_count"]),
    (MessageType::BatchResult, &["kept_local", "reason", "through", "mismatched"]),
    (MessageType::Hello, &["project_id"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_are_unique() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::parse(t.as_str()), Some(*t));
            assert_eq!(serde_json::to_string(t).unwrap(), format!("\"{t}\""));
        }
        let mut seen: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), MessageType::ALL.len());
        let e = serde_json::from_str::<BatchOutcome>("\"maybe\"").unwrap_err().to_string();
        assert!(e.contains("committed, rolled_back, dropped"), "{e}");
    }
}
