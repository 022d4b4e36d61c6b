//! The VibeSync wire protocol, version 1: the single Rust implementation of docs/PROTOCOL.md.
//!
//! Layout:
//! - [`addon`]: agent tool calls and addon capability registries.
//! - [`frame`]: the length-prefixed frame codec (tokio-util `Decoder`/`Encoder`).
//! - [`error`]: wire error codes, spelled as in the protocol document.
//! - [`names`]: the wire vocabulary as enums (message types and directions, statuses,
//!   outcomes, paths, kinds); `tests/vectors/names.json` is generated from it.
//! - [`message`]: typed inbound/outbound messages and their parser (errors name the field).
//! - [`validate`]: zero-trust checks for uuids, project ids, kinds and strings.
//! - [`state`]: float quantization, canonical JSON, the SHA-256 state hash and the
//!   daemon's stable (float32-safe) authoritative values.
//! - [`coords`]: Blender / Unity ↔ canonical (glTF) coordinate conversion.
//! - [`mesh`]: the `VSM1` binary mesh attachment.
//!
//! Invariant: this crate does no I/O and knows nothing about the WAL, registry or sessions.

pub mod addon;
pub mod coords;
pub mod error;
pub mod frame;
pub mod mesh;
pub mod message;
pub mod names;
pub mod state;
pub mod validate;

pub use error::{ErrorCode, ItemErrorCode};
pub use frame::{Frame, FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES, PRE_AUTH_MAX_FRAME_BYTES};
pub use message::{parse_inbound, Inbound, ItemResult, MessageError, Outbound};
pub use names::{AdminAction, BatchOutcome, ClientKind, EntityKind, ItemStatus, MessageType, PathKind, RollbackCode};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
