//! The VibeSync daemon: boot sequence, stores, sessions and the TCP server.
//!
//! Layout:
//! - [`config`]: settings; defaults embedded from config/vibesync.toml.
//! - `paths`: the data directory layout (every file the daemon owns is named there).
//! - `start`: the boot sequence and its policy ([`open`]: safe mode after a crash loop or
//!   recent failures) and [`bind`]; [`clear_safe_mode_offline`] (the CLI's reset with no
//!   daemon running); `error`: [`DaemonError`].
//! - [`boot`]: boot.json (clean/unclean boots), `token`: the shared secret.
//! - `stores`: WAL + registry + audit opened together, with boot recovery.
//! - `core`: shared state and the request handlers (the mutation path); `core::registrar`
//!   group-commits register/tombstone requests.
//! - `host`: the seam below `core`, `sync` and `router` — `SessionInfo` and the `Host` trait
//!   (what sync and the router may ask of the daemon), so no module circle runs through core.
//! - [`checkpoint`]: the background registry flush and the boot checkpoint (docs/WAL.md §9).
//! - `sync`: live sync, one actor per project (window → WAL → forward → verify);
//!   its not-synced uuids come from `vibesync_engine::notsynced`, a fold over the WAL
//!   rebuilt at boot.
//! - `ratelimit`: over-budget coalescible changes are merged, never refused (pure).
//! - `router`: agent tool calls — addon registries, the call gate, the call's WAL transaction.
//! - `session`: one connection (handshake, framed read loop, writer task); `outbox`: what the
//!   rest of the daemon holds of a session (its writer queue, the kick handle).
//! - `txn`: the shape of the daemon's WAL transactions (BEGIN, STEP…, COMMIT, FINAL).
//! - [`server`]: the accept loop and graceful shutdown; `admission`: the quota of
//!   connections waiting for `hello`.
//! - [`client`]: a small blocking client used by the CLI and tests.
//! - [`verify`]: the consistency check; [`restore`]: audit history and restore plans;
//!   [`retention`]: disk use per store, audit packing, blob collection.
//!
//! Only the modules the binary and its tests use are public; the rest are `pub(crate)`.
//!
//! Invariant: no reply that depends on a mutation leaves before the WAL COMMIT is fdatasync'd
//! and applied to the registry (whose flush runs in the background: boot catches it up from
//! the WAL); a storage failure stops the daemon rather than pretending.

pub(crate) mod admission;
pub mod boot;
pub mod checkpoint;
pub mod client;
pub mod config;
pub(crate) mod core;
mod error;
pub mod fsutil;
pub(crate) mod host;
pub(crate) mod outbox;
pub(crate) mod paths;
pub(crate) mod ratelimit;
pub mod restore;
pub mod retention;
pub(crate) mod router;
pub mod server;
pub(crate) mod session;
mod start;
pub(crate) mod stores;
pub(crate) mod sync;
pub(crate) mod token;
pub mod txn;
pub mod verify;

pub use crate::config::Config;
pub use crate::core::Daemon;
pub use crate::error::DaemonError;
pub use crate::paths::DataDir;
pub use crate::start::{bind, clear_safe_mode_offline, open, ServeOptions};
#[cfg(feature = "fault-injection")]
pub use crate::stores::StepPanic;

pub const DAEMON_VERSION: &str = env!("CARGO_PKG_VERSION");

/// RFC 3339 UTC timestamp with microseconds, as in WAL records (`vibesync_wal::format_ts`).
pub fn now_rfc3339() -> String {
    vibesync_wal::format_ts(time::OffsetDateTime::now_utc())
}
