//! The VibeSync UUID registry: who is who, per project, derived from the WAL.
//!
//! # Layout
//! * `cache` — the decoded live records most recently read or written (each changed uuid is
//!   read once per change on the sync path; sled's JSON is decoded once, not per read).
//! * [`entry`] — the record ([`Entry`], [`Binding`], [`Status`], [`Counts`]).
//! * [`ops`] — the STEP payload schema below and the pure logic that applies it.
//! * `registry` — [`Registry`]: sled store, open/catch-up/rebuild, reads, [`Registry::parity`].
//! * [`migrate`] — schema versions and the explicit migrations
//!   (docs/ARCHITECTURE.md, `vibesync-registry`).
//! * [`sidecar`] — `<data_dir>/registry.sidecar.json`, an atomic self-checking dump.
//! * `key_filter` — a Bloom filter of the live keys, so a uuid never held is answered
//!   absent without a sled read (built once after open: [`Registry::index_keys`]).
//! * `write_behind` — applied transactions not in sled yet: read at once, written to sled
//!   many to a batch at the next flush, scan or close.
//! * `keys` — sled key layout (one tree `registry`; `live\0<project>\0<uuid>`,
//!   `arch\0<project>\0<uuid>\0<tombstone_seq:020>`, `meta\0<name>`).
//!
//! # Architecture invariant
//! The WAL is the source of truth. The registry only changes through
//! [`Registry::apply_committed`] with the records of a **committed** WAL transaction, and can
//! always be rebuilt from the WAL ([`Registry::open`] does so when sled is damaged or
//! disagrees with the WAL). Records are never erased: a tombstone moves the record to the
//! archive under its tombstone seq (docs/PROTOCOL.md §5 `tombstone`, docs/WAL.md §9); keys are
//! namespaced `project_id + uuid` (docs/PROTOCOL.md §2), so projects never share a record.
//! Durability: call [`Registry::flush`] before acknowledging anything that depends on the
//! registry (sled otherwise flushes every 500 ms).
//!
//! # STEP payload schema (registry ops)
//! The registry reads the `payload` of STEP records; `project_id` comes from the record
//! itself, the seq of the STEP becomes `created_seq` / `updated_seq` / `bound_seq` /
//! `tombstone_seq`. The STEP ops the daemon writes for other consumers
//! ([`ops::FOREIGN_OPS`]) are passed over. Unknown fields are rejected. `uuid` must be
//! lowercase RFC 4122 (not nil), `project_id` `[A-Za-z0-9._-]{1,128}` not starting with `.`.
//! A STEP that is not understood — no `op`, an unknown `op`, a malformed registry op — is an
//! error ([`RegistryError::UnknownStep`]): the transaction is not applied (never a crash,
//! never a silent skip). A step that changes nothing (e.g. `tombstone` of a uuid that is not
//! live) is reported in [`ApplyReport::skipped`], the same on every rebuild.
//!
//! | payload | effect |
//! |---|---|
//! | `{"op":"register","uuid":U,"kind":K,"name":N?,"editor":E?,"editor_ref":R?,"session_id":S?,"client_id":C?}` | create a live record (created_seq = step seq), or update kind/name of the existing live/quarantined one; when `editor` is given, set `bindings[E] = {editor_ref, session_id, client_id, bound_seq}` (missing strings = `""`). |
//! | `{"op":"tombstone","uuid":U,"client_id":C?,"editor":E?,"automation":true?}` | move the live/quarantined record to the archive with `status:"tombstoned"`, `tombstone_seq` = step seq and, when both `client_id` and `editor` are given (the client that deleted it), `deleted_by = {client_id, editor, automation?}` (`automation` when automation deleted it). Skipped if not live. |
//! | `{"op":"quarantine","uuid":U,"reason":R?}` | `status:"quarantined"`, `quarantine_reason` = R. Skipped if not live. |
//! | `{"op":"release","uuid":U}` | back to `status:"live"`, reason cleared. |
//! | `{"op":"state","uuid":U,"state":{…},"state_hash":H?,"writes":[{"parts":[P…],"client_id":C,"editor":E,"automation":true?}…]?}` | replace the authoritative synced state and its hash; each of `writes` (one per writer, no part in two) becomes the writer of its parts in `writers` at the seq of the transaction's last STEP (the batch's seq; [`ops::record_write`]; parts: `pose`, `name`, `visibility`, `parent`, `mesh`, `material`, `existence`), automation's when it says so (a writer is automation's only while every write joined into it is). |
//! | `{"op":"migrate","from":N,"to":M}` | schema migration (see [`migrate`]); a no-op when the registry is already at M. |
//! | `{"op":"conflict","uuid":U,"winner":E,"loser":E,"change_op":O}` | two editors changed U concurrently and E=`loser`'s change `O` gave way (docs/PROTOCOL.md §6.2); changes no record. |
//!
//! Transactions apply in COMMIT order, each exactly once (the `last_applied_seq` watermark);
//! within that order the last writer wins, whatever the seqs of the STEPs (a STEP written at
//! BEGIN of a transaction that commits later still applies). `updated_seq` never decreases.
//! Build payloads with [`Op::to_payload`] to stay in the schema.

mod cache;
pub mod entry;
mod error;
mod key_filter;
mod keys;
pub mod migrate;
mod model;
pub mod ops;
mod registry;
pub mod sidecar;
mod write_behind;

pub use entry::{Binding, Counts, DeletedBy, Entry, Part, PartWriter, Status};
pub use error::{RegistryError, Result};
pub use migrate::SCHEMA_VERSION;
pub use ops::{
    is_valid_project_id, is_valid_uuid, parse_payload, record_write, ApplyReport, Op, ParsedStep, SkippedStep,
    StateWrite,
};
pub use registry::{
    OpenOutcome, OpenReport, Problem, ReadFault, RebuildReason, Registry, RegistryBase, RegistryConfig, Resume, WalRead,
};
pub use sidecar::{SidecarStatus, SidecarWritten};
