//! Pure decision logic of the daemon: no sockets, no files, no clocks of its own.
//!
//! Layout:
//! - [`register`]: what a `register` / `tombstone` request does to the registry — per-item
//!   statuses and the STEP payloads to write — given a read-only view of current records.
//! - [`governance`]: the failure index built from WAL records (log-as-state), the gate
//!   (proceed / degrade / block), escalation smallest-first, user-edit idle tracking, token
//!   buckets for rate limits.
//! - [`queue`]: pipeline step `queue` — the main and the pipelined window of a project:
//!   which waiting changes may start a fast batch beside a slow batch in flight, keeping
//!   per-uuid order.
//! - [`sync`]: live sync — object state, change validation with unit normalization,
//!   applying changes, coalescing (pipeline steps `queue` and `batch`), fast/slow path
//!   selection, the batch window.
//! - [`forward`]: pipeline step `forward` — who is sent which ops of a batch, what each
//!   participant must answer (`verify`), conflicts between editors and their corrections.
//! - [`live`]: pipeline step `forward`, live half — the per-receiver, per-object throttle of
//!   live previews of fast-path changes (latest value wins, the trailing one is delivered).
//! - [`verify`]: pipeline step `verify` — collect `applied` answers, departures and the
//!   clock for one batch in flight; decide commit, rollback (with its WAL code) or wait.
//! - [`project`]: a project's sync as one state machine over all six steps (queue, batch,
//!   forward, verify, finalize, replay): inputs and the clock in, effects (WAL drafts,
//!   frames, registry ops at COMMIT) out, committed state read through a narrow `View`.
//! - [`notsynced`]: the uuids editors keep as a person's edit, and what the sync remembers of
//!   them, as a fold over WAL records: rebuilt by the daemon at boot to seed each project's
//!   machine (and by the model test at its restarts).
//! - [`finalize`]: pipeline step `finalize` on rollback — who is corrected, who keeps its
//!   local state (a person's edit is never undone where it was made).
//!
//! Invariant: every function here is deterministic in its inputs, so the daemon's behaviour
//! can be tested without I/O and replayed from the WAL.

pub mod fast;
pub mod finalize;
pub mod forward;
pub mod governance;
pub mod live;
pub mod notsynced;
pub mod project;
pub mod queue;
pub mod register;
pub mod stale;
pub mod sync;
pub mod verify;
