//! A project's sync as one state machine (docs/PROTOCOL.md §6): everything between "a change
//! arrives" and "FINAL" for one project — the queue, the batches in flight, the answers
//! awaited, retries, the not-synced uuids, conflicts, the live-preview throttle — and every
//! decision made over it. The daemon's actor (`vibesync-daemon`, `sync.rs`) only feeds it
//! inputs and carries out its effects.
//!
//! **Inputs:** an [`Input`] (admitted changes, peer answers, joins, leaves, resync requests,
//! user activity, releases, tombstones) or a tick of the clock ([`Project::tick`]); the
//! clock is `now_ms`, given with every input and every outcome.
//!
//! **Outputs:** [`Effect`]s, one at a time, each answered by its [`Done`] before the machine
//! goes on: WAL drafts to append (the written records, with their seqs, are the answer —
//! the WAL assigns seqs, the machine never guesses them), a COMMIT to write and apply to the
//! registry under the daemon-wide turn, frames to send to a session (answered: delivered or
//! not), previews to offer, a mesh blob to store, a FINAL to schedule, a ROLLBACK for the
//! governance index to observe and the escalation it calls for, a storage failure, the
//! status to publish. A step is a [`Step`]: the driver calls [`Step::next`] with the outcome
//! of the previous effect until it returns `None`. Dropping a step before its end is a crash
//! at that point: nothing after it happened.
//!
//! **Reads** of committed state — the registry, the blob store, the WAL's last seq and
//! compaction anchor, the connected sessions, the governance gate — go through the narrow
//! [`View`] the daemon implements (an in-memory map in tests). A read error is an error,
//! never "absent".
//!
//! The sub-steps carry the pipeline's step names (docs/ARCHITECTURE.md): [`queue`] (admission,
//! the gate, the two windows, held automation), `batch` (a window becomes a WAL transaction),
//! `forward` (fenced batches and live previews), `verify` (answers, departures, the
//! deadline), `finalize` (COMMIT or ROLLBACK and what follows each), `replay` (joins,
//! reconnects, resync requests, corrections).
//!
//! Invariant (docs/PROTOCOL.md §6.4): a person's edit is never undone, deleted or overwritten
//! in the editor where it was made. A rollback re-sends the authoritative state to the
//! editors that were sent the batch, never to the origin of a person's edit for its uuids
//! (`kept_local`); only automation is reverted at its origin.
//!
//! How a step suspends: the machine's code is ordinary `async` Rust over a [`Link`] that
//! never touches I/O — awaiting an effect parks it in the link and yields; the driver polls
//! with a no-op waker, so the compiler-built future *is* the state machine between effects.

mod batch;
mod children;
mod finalize;
mod forward;
mod held;
mod kept;
mod queue;
mod replay;
mod verify;

use crate::fast::{HashMap, HashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tracing::{debug, info};
use vibesync_protocol::message::ItemResult;
use vibesync_protocol::{ClientKind, Frame, ItemErrorCode};
use vibesync_registry::Entry;
use vibesync_wal::{Record, RecordDraft};

use crate::forward::{Conflict, Ops};
use crate::governance::{Decision, Escalation, IdleTracker};
use crate::live::{Delivered, Throttle};
use crate::queue::{Flight, Queue};
use crate::stale::LastWrites;
use crate::sync::{Author, Change, Path, Pose, Queued};
use crate::verify::Verification;

pub use kept::{is_kept_step, kept_draft, kept_of, KeptOf, KEPT_OP};
pub use replay::{order_parents_first, replay_ops};

/// `session_id` of the WAL records of sync batches (boot recovery tells them apart by it).
pub const SYNC_SESSION: &str = "sync";

/// At most this many refused changes are listed by `status` per project (`Project::refused`):
/// an editor sending many bad changes never grows the daemon's memory without bound.
const MAX_REFUSED_SHOWN: usize = 10_000;
/// At most this many characters of a refusal's message are kept for `status`.
const MAX_REFUSAL_CHARS: usize = 300;

type SessionId = String;

/// A connected session as sync knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Editor {
    pub session_id: String,
    pub editor: ClientKind,
    pub client_id: String,
    /// Metres per editor unit (`hello.unit_scale`): lengths on the wire are converted.
    pub unit_scale: f64,
}

/// The settings a project's sync runs with (`[sync]`, `[governance]` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub batch_window_ms: u64,
    pub live_interval_ms: u64,
    pub verify_timeout_ms: u64,
    pub user_idle_ms: u64,
    pub pipelining: bool,
    /// The most one batch carries (docs/PROTOCOL.md §6.2 "Batch size").
    pub batch_limit: crate::sync::BatchLimit,
}

/// The inputs of a project's sync.
#[derive(Debug, Clone)]
pub enum Input {
    Change {
        session: Box<Editor>,
        base_seq: u64,
        /// The request's changes as its session parsed them (`sync::parse_changes`): each a
        /// valid change or the error result its `ack` carries.
        changes: Vec<Result<Change, ItemResult>>,
        attachment: Bytes,
        request_id: String,
        /// A person's edit, or automation's (an `agent` session, or `change.automation`).
        author: Author,
        /// uuid → the `mark` of the last `live` frame of it the editor had applied (§6.1 `seen`).
        seen: BTreeMap<String, u64>,
    },
    Applied {
        session_id: SessionId,
        batch_id: String,
        /// The `seq` the editor says it applied through (sequence coherence, §6.7).
        seq: u64,
        hashes: BTreeMap<String, String>,
        held: bool,
        /// uuid → why the editor could not apply it as sent (`applied.failed`).
        failed: BTreeMap<String, String>,
        /// The uuids it left unapplied, in whole or in part, to keep a person's edit not taken
        /// yet (`applied.spared`); `None`: it does not say.
        spared: Option<Vec<String>>,
    },
    Joined {
        session_id: SessionId,
        last_seq: u64,
    },
    Resync {
        session_id: SessionId,
        since_seq: u64,
        /// Echoed on the answering batch's fences (docs/PROTOCOL.md §6.6).
        request_id: Option<String>,
    },
    Left {
        session_id: SessionId,
        /// It said it was closing the connection on purpose (`editor_state` `closing`).
        closing: bool,
    },
    /// A person started or stopped editing in this session's editor.
    UserActivity {
        session_id: SessionId,
        active: bool,
    },
    /// A person released these uuids from quarantine: editors that were not replayed them
    /// get their authoritative state.
    Released {
        uuids: Vec<String>,
    },
    /// uuids tombstoned through a `tombstone` request (its transaction `operation_id`,
    /// COMMIT `seq`): tell the other editors, then finalize that transaction
    /// ([`Effect::Finalize`]; docs/WAL.md §9, "Late deletes").
    Tombstoned {
        origin: SessionId,
        operation_id: String,
        uuids: Vec<String>,
        seq: u64,
    },
}

/// What the machine asks of the daemon. Each is answered by a [`Done`] (named on each
/// variant) before the machine goes on.
#[derive(Debug)]
pub enum Effect {
    /// Queue frames on a session's writer as one unit. → [`Done::Sent`] (false: not delivered —
    /// the session is gone or too slow and was disconnected).
    Send { session_id: SessionId, frames: Vec<Frame> },
    /// Best-effort frames (live previews), never waiting for the consumer. → [`Done::Offered`].
    Offer { session_id: SessionId, frames: Vec<Frame> },
    /// Append records to the WAL (durable when answered). → [`Done::Appended`].
    Append(Vec<RecordDraft>),
    /// Under the daemon-wide mutation turn: append the COMMIT draft, then apply `records` plus
    /// the written COMMIT to the registry (COMMIT order). → [`Done::Appended`] with the COMMIT
    /// record (an error for a failed append or apply).
    Commit { commit: RecordDraft, records: Vec<Record> },
    /// Store a mesh attachment by hash, durable before the STEP that names it. →
    /// [`Done::Stored`].
    StoreBlob { hash: String, bytes: Bytes },
    /// A committed transaction: write its FINAL (`session_id`: the transaction's, `"sync"`
    /// for a batch) and note it for the audit, off the acknowledgement path. → [`Done::Ok`].
    Finalize { session_id: SessionId, operation_id: String, uuids: Vec<String> },
    /// Feed a ROLLBACK record to the daemon-wide governance index. → [`Done::Escalation`].
    Observe(Record),
    /// Carry out an escalation (quarantine, disable an op kind, safe mode) as governance
    /// transactions. → [`Done::Ok`].
    Escalate(Escalation),
    /// Storage failed: stop the daemon. With `answer`, also answer that request
    /// (`STORAGE_FAILED`) on that session. → [`Done::Ok`].
    StorageFailed { operation_id: String, message: String, answer: Option<(SessionId, String)> },
    /// The project's sync status changed (`vibesync status`). → [`Done::Ok`].
    Status(ProjectSync),
}

/// The outcome of an [`Effect`].
#[derive(Debug)]
pub enum Done {
    Ok,
    Sent(bool),
    Offered(usize),
    /// The written records (their seqs assigned by the WAL), or why the write failed.
    Appended(Result<Vec<Record>, String>),
    Stored(Result<(), String>),
    Escalation(Escalation),
}

/// Reads of committed state and of who is connected (the daemon's stores and session table;
/// a map in tests). A read that fails is an error, never "absent".
pub trait View: Sync {
    /// The project's registry entry of `uuid` (any status), shared: read on every change,
    /// it is not copied.
    fn lookup(&self, uuid: &str) -> Result<Option<Arc<Entry>>, String>;
    /// The project's live and quarantined entries.
    fn live_entries(&self) -> Result<Vec<Entry>, String>;
    /// The project's archived (tombstoned) versions.
    fn archived_entries(&self) -> Result<Vec<Entry>, String>;
    /// The archived (tombstoned) versions of one uuid, oldest first.
    fn archived(&self, uuid: &str) -> Result<Vec<Entry>, String>;
    /// Whether the registry holds any archived (tombstoned) version, of any project; O(1),
    /// no read of a record. None: no deleted object can have anything left under it.
    fn any_archived(&self) -> bool;
    /// The size in bytes of a stored mesh blob (None: not stored).
    fn blob_len(&self, hash: &str) -> Result<Option<u64>, String>;
    /// A stored mesh blob (None: not stored; a damaged one is an error).
    fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>, String>;
    /// The WAL's last written seq.
    fn last_seq(&self) -> u64;
    /// The WAL's compaction anchor (docs/WAL.md §11): replays from before it are full.
    fn anchor_seq(&self) -> u64;
    /// The project's connected sessions (any client kind).
    fn sessions(&self) -> Vec<Editor>;
    /// A connected session.
    fn session(&self, session_id: &str) -> Option<Editor>;
    /// The uuids whose `tombstone` is being committed: planned, its records not yet applied
    /// to the registry, which still reads them live (usually none).
    fn deleting(&self) -> Vec<String>;
    /// Whether the daemon is in safe mode (docs/PROTOCOL.md §6.7): automation's held changes
    /// do not run then.
    fn safe_mode(&self) -> bool;
    /// The governance gate for a proposed change (`next_hash`: the state hash it would make).
    fn gate(&self, uuid: &str, op: &str, next_hash: &dyn Fn() -> Option<String>) -> Decision;
}

/// A uuid kept locally by the editor where a person made it after its propagation failed
/// (docs/PROTOCOL.md §6.4), until a later commit covers it or that editor sends a change of
/// it again (queued, held, or refused other than `BLOCKED` / `QUARANTINED`: that change's
/// outcome decides from then on).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NotSynced {
    pub uuid: String,
    /// The session that kept it (it may have ended since; after a restart it always has).
    pub session_id: String,
    /// Its editor kind (`blender`, `unity`).
    pub client: String,
    pub client_id: String,
    pub reason: String,
    /// The ROLLBACK record; for a refused change the editor keeps, the daemon's last seq
    /// when it refused it.
    pub seq: u64,
}

/// What `status` shows of each project's sync.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProjectSync {
    pub not_synced: Vec<NotSynced>,
    pub conflicts: u64,
}

/// A rolled-back sync batch, for replay to editors that reconnect (docs/PROTOCOL.md §6.6).
#[derive(Debug, Clone, PartialEq)]
pub struct RolledBack {
    /// The ROLLBACK record.
    pub seq: u64,
    pub uuids: Vec<String>,
    /// uuid → client_ids that keep it locally as a person's edit (never replayed over).
    pub kept_local: BTreeMap<String, Vec<String>>,
    /// A sync batch's ROLLBACK (its ops may have reached editors), not another transaction's.
    pub sync: bool,
}

impl RolledBack {
    /// From a ROLLBACK record (its payload's `kept_local`).
    pub fn from_record(r: &Record) -> RolledBack {
        let kept_local = r
            .payload
            .get("kept_local")
            .and_then(|v| serde_json::from_value::<BTreeMap<String, Vec<String>>>(v.clone()).ok())
            .unwrap_or_default();
        RolledBack { seq: r.seq, uuids: r.uuids.clone(), kept_local, sync: r.session_id == SYNC_SESSION }
    }
}

/// (COMMIT seq, uuids): see [`late_commit_of`].
pub type LateCommit = (u64, Vec<String>);

/// What an editor may have missed although its `last_seq` passed it (docs/PROTOCOL.md §6.6,
/// docs/WAL.md §9): (a seq, the uuids a replay after any `last_seq` below it carries). A sync
/// batch's COMMIT with `late` (every uuid of a batch that committed after a later seq had
/// been sent to an editor) or `corrected` (the uuids it corrected right after its result), at
/// its seq; a `late_delete` STEP (deletes relayed after seq `after_seq` had been sent), at
/// `after_seq + 1`. `None` for any other record.
pub fn late_commit_of(r: &Record) -> Option<LateCommit> {
    if r.session_id != SYNC_SESSION {
        return None;
    }
    if r.phase == vibesync_wal::Phase::Step
        && r.payload.get("op").and_then(serde_json::Value::as_str) == Some("late_delete")
    {
        let after = r.payload.get("after_seq").and_then(serde_json::Value::as_u64)?;
        return Some((after + 1, r.uuids.clone()));
    }
    if r.phase != vibesync_wal::Phase::Commit {
        return None;
    }
    let mut uuids: Vec<String> = Vec::new();
    if r.payload.get("late").and_then(serde_json::Value::as_bool) == Some(true) {
        uuids.extend(r.uuids.iter().cloned());
    }
    if let Some(c) = r.payload.get("corrected").and_then(serde_json::Value::as_array) {
        uuids.extend(c.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    (!uuids.is_empty()).then(|| (r.seq, dedup(uuids)))
}

/// The standalone `late_delete` STEP (docs/WAL.md §9, "Late deletes"): the deletes of the
/// `tombstone` transaction committed at `tombstone_seq` reached the editors — or may have —
/// only after seq `after_seq` had been sent, so a replay after any `last_seq` at or below it
/// carries them ([`late_commit_of`]). Written by the sync when it relays them late, and by
/// boot for a `tombstone` whose relay a stop cut (its transaction has no FINAL).
pub fn late_delete_draft(
    project_id: &str,
    operation_id: &str,
    uuids: Vec<String>,
    tombstone_seq: u64,
    after_seq: u64,
) -> vibesync_wal::RecordDraft {
    vibesync_wal::RecordDraft {
        session_id: SYNC_SESSION.to_string(),
        operation_id: operation_id.to_string(),
        uuids,
        project_id: project_id.to_string(),
        phase: vibesync_wal::Phase::Step,
        outcome: vibesync_wal::Outcome::Ok,
        error_code: None,
        payload: serde_json::json!({"op": "late_delete", "tombstone_seq": tombstone_seq, "after_seq": after_seq}),
    }
}

/// One batch in flight.
struct Inflight {
    batch_id: String,
    path: Path,
    seq: u64,
    uuids: Vec<String>,
    /// `uuids` as a set: admission asks "is it in flight?" once per change.
    members: HashSet<String>,
    records: Vec<Record>,
    /// Every admitted change of the batch's window (origin = session id), arrival order.
    changes: Vec<Queued<SessionId>>,
    /// participant → the ops it was sent.
    sends: BTreeMap<SessionId, Ops>,
    /// Pipeline step `verify`: what each participant must answer, who answered.
    verification: Verification,
    /// participant → uuids to re-send after COMMIT (a conflict's loser).
    corrections: BTreeMap<SessionId, Vec<String>>,
    conflicts: Vec<Conflict>,
    /// Fast-path changes rebased over another editor's committed change of the same part
    /// made after their `base_seq`: conflicts across windows (docs/PROTOCOL.md §6.2).
    rebased: Vec<Rebased>,
    origins: HashSet<SessionId>,
    /// uuid → who writes which of its parts in this batch (staleness, docs/PROTOCOL.md §6.1).
    writes: HashMap<String, LastWrites>,
    /// session → editor kind, for conflict events and logs.
    kinds: HashMap<SessionId, String>,
    /// session → `client_id`, as the batch formed (a rollback names who keeps a person's edit
    /// after that session ended).
    client_ids: HashMap<SessionId, String>,
    ops: Vec<String>,
    new_hashes: HashMap<String, String>,
    /// uuid → why a participant could not apply it as sent (`applied.failed`): the reason a
    /// rollback gives the origin's person.
    why_failed: BTreeMap<String, String>,
    /// The uuids of a slow batch: no live preview of them until it ends (per-uuid order).
    holds_live: HashSet<String>,
    /// (origin, uuid) of changes made before their origin applied a batch carrying the uuid
    /// (see `Project::overtaken`): corrected after the COMMIT.
    overtaken: Vec<(SessionId, String)>,
    /// uuids of the batch deleted through a `tombstone` request while it was in flight: an
    /// answer without them is what the participant holds after that later delete.
    tombstoned: HashSet<String>,
}

/// A fast-path change of a batch that overrides another editor's committed change of the
/// same part its editor had not heard of (docs/PROTOCOL.md §6.1 "rebased"): a conflict.
struct Rebased {
    uuid: String,
    /// The session whose change wins (the later writer).
    winner: SessionId,
    /// The overridden write: its part, seq, `client_id` and editor kind.
    loser: crate::stale::Write,
    /// The winner's op (the loser's write was of the same part).
    op: &'static str,
}

/// Parts of an object's pose that a window took from other editors' concurrent moves over
/// one editor's (docs/PROTOCOL.md §6.2), while that editor's moves of it keep coming: it
/// keeps its own pose while it has moves in flight or not sent yet (§6.4), so its later
/// moves, made before it could apply the merged pose, carry those parts as it `held` them.
/// Each of its later moves keeps the others' value (`theirs`) of every such part it left as
/// it held it — a drag in Blender does not undo a scale made in Unity meanwhile, in any
/// window of the drag — and wins a part it changed to another value (a conflict across
/// windows, the other editor the loser). Forgotten once the editor's moves carry none of
/// those parts as it held them (it applied them, or changed them), and once its moves of the
/// object stop for [`CO_POSE_HOLD_MS`] (the drag ended: it applied the merged pose, its
/// correction, meanwhile).
#[derive(Debug, Clone)]
struct CoPose {
    /// The editor's pose as it last sent it.
    held: Pose,
    /// The parts ([`crate::sync::pose_part`] bits) the others' moves set and it has not changed.
    from: u8,
    /// The pose the object holds (their values of `from`), for its live previews meanwhile.
    theirs: Pose,
    /// Who set them (the loser, should the editor change one).
    other: crate::stale::Write,
    /// When the editor's last move of the object formed a batch (the machine's clock, ms).
    last_ms: u64,
}

/// How long a [`CoPose`] outlives the editor's last move of the object.
const CO_POSE_HOLD_MS: u64 = 1000;

/// Live previews remembered per uuid (`Project::previews`), and uuids at most (beyond, the
/// memory starts again: a part is then taken as made, as before).
const PREVIEWS_KEPT: usize = 4;
const PREVIEW_UUIDS_KEPT: usize = 20_000;

impl CoPose {
    /// The editor held `held` when the others' moves (the last by `by`, of that `author`)
    /// set the parts `from` of the object's pose `theirs`.
    fn new(held: Pose, from: u8, theirs: Pose, (by, author): (&Editor, Author), now_ms: u64) -> CoPose {
        let other = crate::stale::Write {
            parts: crate::stale::Parts::POSE,
            seq: 0,
            client: by.client_id.clone(),
            editor: by.editor.to_string(),
            marks: [0; 3],
            author,
        };
        CoPose { held, from, theirs, other, last_ms: now_ms }
    }

    /// `sent`, a move of the editor at `now_ms`, with the parts it left as it held them taken
    /// from `theirs`; and whether it changed one of them to a value of its own (a part it
    /// wins, a conflict). Updates what it held and which parts are still the others'.
    fn apply(&mut self, sent: &Pose, now_ms: u64) -> (Pose, bool) {
        let changed = sent.changed_from(&self.held);
        let applied = crate::sync::pose_part::ALL & !sent.changed_from(&self.theirs);
        let keep = self.from & !changed;
        let lost = self.from & changed & !applied != 0;
        self.held = *sent;
        self.from = keep;
        self.last_ms = now_ms;
        (sent.with_parts(&self.theirs, keep), lost)
    }

    /// `sent` as its live preview goes (nothing remembered).
    fn preview(&self, sent: &Pose) -> Pose {
        sent.with_parts(&self.theirs, self.from & !sent.changed_from(&self.held))
    }
}

/// The pose an op sets (a `transform`'s, a `create`'s), `None` for another op.
fn pose_set(op: &crate::sync::ChangeOp) -> Option<Pose> {
    match op {
        crate::sync::ChangeOp::Transform { t, r, s } => Some(Pose { t: *t, r: *r, s: *s }),
        crate::sync::ChangeOp::Create(st) => Some(Pose::of(st)),
        _ => None,
    }
}

/// A resync batch sent, and what its receiver must answer.
struct ResyncCheck {
    session_id: SessionId,
    expected: BTreeMap<String, Option<String>>,
    attempts: u32,
    /// The pose it sent each uuid, while some editor's moves keep parts another editor set
    /// (`Project::co_poses` not empty; else none): see `Project::co_poses_applied`.
    poses: Vec<(String, Pose)>,
}

/// What waits until no batch is in flight.
enum Deferred {
    Input(Input),
    /// Re-send these uuids' authoritative state to one session (`attempts`: see
    /// `Project::send_resync_attempt`) once no batch in flight holds them: right after the
    /// result of the batch that held them (`Project::send_waiting_corrections`), not after
    /// every batch in flight — a later frame to that editor would move its `last_seq` past
    /// the batch before the correction (docs/PROTOCOL.md §6.4).
    Resync {
        session_id: SessionId,
        uuids: Vec<String>,
        attempts: u32,
    },
}

/// The sync state of one project (see the module documentation).
pub struct Project {
    project: String,
    settings: Settings,
    /// Pipeline step `queue`: the main and the pipelined window.
    queue: Queue<Editor>,
    /// The batches in flight, oldest first: at most one slow and one fast, uuids disjoint.
    inflight: Vec<Inflight>,
    /// Batches that committed after a later seq had been sent to editors (a pipelined batch's
    /// fences or result): (COMMIT seq, uuids). An editor whose `last_seq` is below the COMMIT
    /// may have skipped their STEPs' seqs, so a replay after such a `last_seq` includes them;
    /// also the uuids a COMMIT corrected right after its result. Likewise `tombstone`s
    /// relayed after a later seq went out: (that seq + 1, uuids). All read from the WAL at
    /// boot ([`late_commit_of`]).
    late_commits: Vec<(u64, Vec<String>)>,
    /// The highest seq sent to an editor of the project on a batch's fences or a `batch_result`.
    exposed_seq: AtomicU64,
    /// uuid → who last wrote each of its parts in a committed batch, and at which seq
    /// (staleness, docs/PROTOCOL.md §6.1).
    synced: HashMap<String, LastWrites>,
    /// The daemon's last seq when this machine first ran: the writers of parts the registry
    /// keeps at or before it are those of batches `synced` never saw (written before a
    /// restart), read from the registry instead (`committed_writes`).
    boot_seq: Option<u64>,
    /// ROLLBACKs, for replay to editors that reconnect.
    rolled_back: Vec<RolledBack>,
    /// uuids kept locally after a failed propagation (shown by `status`).
    /// (uuid, client_id) → kept by that editor (by `client_id`, which outlives sessions and
    /// daemon restarts); two people may each keep one uuid.
    not_synced: BTreeMap<(String, String), NotSynced>,
    /// Changes refused with a code their editor keeps them under (`ItemErrorCode::
    /// kept_by_editor`: the person's edit stays there, marked not synced, docs/PROTOCOL.md
    /// §6.1), by (uuid, client_id): shown by `status` beside `not_synced`, since the daemon
    /// started (a refusal writes nothing to the WAL; the editor sends it again when it
    /// reconnects). Display only: unlike `not_synced`, it never keeps a replay or a
    /// correction from that editor. At most `MAX_REFUSED_SHOWN`.
    refused: BTreeMap<(String, String), NotSynced>,
    conflicts: u64,
    resyncs: HashMap<String, ResyncCheck>,
    /// Joins, resync requests and releases wait while a batch is in flight.
    deferred: Vec<Deferred>,
    /// Sessions whose join this actor has taken (their replay sent): the only ones it sends
    /// batches, relays and previews to. A session the daemon has admitted but whose join
    /// is still queued here gets everything committed before it in that replay — sent a
    /// relay first, it took a delete as live (the delete wins) before the replay that keeps
    /// a person's edit made while away (docs/PROTOCOL.md §6.6).
    joined: HashSet<String>,
    /// People's activity per session (user-edit protection).
    idle: IdleTracker,
    /// Changes from automation waiting for people to be idle.
    held: held::Held,
    /// uuids the gate degraded to the slow path, with its reasons.
    degraded: HashMap<String, Vec<String>>,
    /// Sessions whose sequence diverged: blocked until they acknowledge a full replay.
    diverged: HashMap<SessionId, Option<String>>,
    /// Live previews (docs/PROTOCOL.md §6.3): receiver, uuid, op → last send and the value
    /// waiting for its interval.
    live: Throttle<SessionId, forward::Preview>,
    /// The live frames each receiver was sent: what its changes' `seen` marks cover (§6.1).
    delivered: Delivered<SessionId>,
    /// The last admission mark given (§6.3 `mark`; increasing within this daemon run).
    next_mark: u64,
    /// uuids with a slow-path change in the window: no live preview of them until its batch
    /// has ended (per-uuid order).
    slow_queued: HashSet<String>,
    /// (session, uuid) → the seq of the last batch carrying the uuid that was delivered to
    /// the session (forwarded, a tombstone's, or a resync).
    forwarded: HashMap<(SessionId, String), u64>,
    /// (origin, uuid) → the `base_seq` of its latest queued change. When the change's batch
    /// starts and such a batch reached the origin after that `base_seq`, the origin made its
    /// change before it read that batch, so it holds either the batch's state (a forwarded
    /// batch is always applied) or a state the resync did not correct (a resync skips
    /// unresolved local work, docs/PROTOCOL.md §6.6) — not the authoritative state with its
    /// change applied: when its change commits or is dropped, it is sent the authoritative
    /// state (docs/PROTOCOL.md §6.6, "overtaken").
    bases: HashMap<(SessionId, String), u64>,
    /// (uuid, `client_id`) → the parts of the uuid's pose that a window merged into it from
    /// other editors (docs/PROTOCOL.md §6.2) and that this editor still holds as it had them:
    /// it keeps its own pose while its moves of the uuid are in flight (§6.4), so its later
    /// moves carry them unchanged (`CoPose`).
    co_poses: HashMap<(String, String), CoPose>,
    /// (uuid, `client_id`) → other editors' ops of the uuid that a rolled-back batch sent this
    /// editor while it keeps the uuid locally (`kept_local`, by that rollback or an earlier
    /// one: it is not corrected, so it holds them), the last of each kind, with whose they
    /// are: a full state it sends of the uuid again holds those values as no edit of its
    /// person, and does not write them once their editor has changed that part since
    /// (`HeldForeign::superseded`; docs/PROTOCOL.md §6.2 "A full state of an object the
    /// daemon holds").
    /// Until a batch carrying its `create` of the uuid commits, or one deletes the uuid; a
    /// part the editor writes itself in a batch, committed or rolled back, ends its op there
    /// (`own_writes_end_foreign`). Recorded in the WAL (module `kept`).
    foreign_kept: kept::ForeignKept,
    /// (uuid, `client_id`) → that editor keeps the uuid as its person's edit, as the editor
    /// itself counts it (docs/PROTOCOL.md §6.4): from a rollback's `kept_local` until a full
    /// state of it from that editor commits or loses (dropped, refused), or the uuid is
    /// deleted. Unlike `not_synced` — which any later commit of the uuid ends, as `status`
    /// and the WAL fold count it — another editor's commit of the uuid leaves it: the editor
    /// corrects nothing of its kept work (§6.6). Read only to know which lost values an
    /// editor still holds (`lost_while_kept`). Recorded in the WAL (module `kept`); at boot,
    /// the `kept` STEPs, and `not_synced` for a uuid they do not name.
    kept_here: kept::KeptHere,
    /// uuid → what the last `kept` STEP of the uuid says (absent: nothing kept).
    kept_logged: HashMap<String, KeptOf>,
    /// (origin, uuid, admission mark) → the `base_seq` of a queued change that was stale only
    /// against a batch in flight when it arrived, and that batch's id (docs/PROTOCOL.md
    /// §6.1): decided when that batch ends — dropped as stale if it commits
    /// (`stale_after_commit`), left to go on if it rolls back. Every entry ends with its batch.
    stale_after_flight: HashMap<(SessionId, String, u64), (u64, String)>,
    /// uuid → its latest admitted `transform`s as their live previews carried them: (mark,
    /// origin — a hash of its session id —, pose), the newest last, at most
    /// [`PREVIEWS_KEPT`]: what an editor that names a mark in `seen` showed (§6.1, §6.3).
    previews: HashMap<String, std::collections::VecDeque<(u64, u64, Pose)>>,
    /// (origin, uuid) → the pose of the other editor's live preview its latest admitted
    /// `transform` was made over (its `seen` mark): components it holds as that pose it took
    /// from there, and made none of them (`Pose::made_from`).
    seen_poses: HashMap<(SessionId, String), Pose>,
    /// Hashes a session id for `previews` (no string per remembered move).
    origin_hash: foldhash::fast::FixedState,
    /// Deleted uuid → the `client_id`s of the editors whose changes of it lost to the delete
    /// and were recorded as a conflict: one conflict per losing editor and uuid
    /// (docs/PROTOCOL.md §6.2), also when its changes lose over several batches, sessions or
    /// refusals (a change re-sent after a reconnect and refused `STALE`, a window cut by the
    /// batch bounds). Removed when a `create` of the uuid commits (it lives again).
    delete_losers: HashMap<String, BTreeSet<String>>,
    /// A due window waits until then: it holds a change of a uuid whose `tombstone` is being
    /// committed ([`View::deleting`]).
    postponed: Option<u64>,
    /// Parents deleted by `tombstone` requests (or found deleted under a committed state)
    /// that the registry still holds live objects under, each with the deleting editor and
    /// its author: the next batch puts those objects at the root where they stand
    /// (docs/PROTOCOL.md §6.1 "delete"), once `orphaned_at` has passed — time for the deleting
    /// editor's own changes of them to arrive first (Blender sends their reparents).
    orphaned: Vec<(String, Editor, Author)>,
    orphaned_at: Option<u64>,
    /// Which objects the registry holds under each parent (`None` until a delete first asks):
    /// a hint, read back before use (module `children`).
    children: Option<children::Children>,
}

/// How long a due window waits before it looks again at a `tombstone` being committed.
const POSTPONE_MS: u64 = 2;

/// The link between a running step and its driver: the effect the step waits on, its
/// outcome, and the clock.
struct Link {
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    effect: Option<Effect>,
    done: Option<Done>,
    now_ms: u64,
}

/// Waits once: the driver takes the effect, carries it out and polls again with its outcome.
struct Yield<'l> {
    link: &'l Link,
    yielded: bool,
}

impl Future for Yield<'_> {
    type Output = Done;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Done> {
        if !self.yielded {
            self.yielded = true;
            return Poll::Pending;
        }
        // The driver polls again only with the outcome (`Step::next`); an outcome missing
        // is the driver's bug, answered as "not done" rather than a panic in the daemon.
        Poll::Ready(self.link.state.lock().unwrap().done.take().unwrap_or(Done::Ok))
    }
}

/// What a running step reads and awaits.
struct Cx<'a> {
    link: &'a Link,
    view: &'a dyn View,
}

impl Cx<'_> {
    fn now(&self) -> u64 {
        self.link.state.lock().unwrap().now_ms
    }

    async fn io(&self, effect: Effect) -> Done {
        self.link.state.lock().unwrap().effect = Some(effect);
        Yield { link: self.link, yielded: false }.await
    }

    /// Queue frames on a session's writer; false when they were not delivered.
    async fn send(&self, session_id: &str, frames: Vec<Frame>) -> bool {
        matches!(self.io(Effect::Send { session_id: session_id.to_string(), frames }).await, Done::Sent(true))
    }

    async fn offer(&self, session_id: &str, frames: Vec<Frame>) -> usize {
        match self.io(Effect::Offer { session_id: session_id.to_string(), frames }).await {
            Done::Offered(n) => n,
            _ => 0,
        }
    }

    async fn append(&self, drafts: Vec<RecordDraft>) -> Result<Vec<Record>, String> {
        match self.io(Effect::Append(drafts)).await {
            Done::Appended(r) => r,
            other => Err(format!("the WAL append was answered {other:?}")),
        }
    }

    /// A storage failure outside a request: the daemon stops.
    async fn storage_failed(&self, operation_id: &str, message: &str) {
        self.io(Effect::StorageFailed {
            operation_id: operation_id.to_string(),
            message: message.to_string(),
            answer: None,
        })
        .await;
    }
}

/// One step of the machine: an input (or a tick) being handled. Drive it with
/// [`Step::next`].
pub struct Step<'a> {
    fut: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    link: Arc<Link>,
    over: bool,
}

impl Step<'_> {
    /// The next effect to carry out, given the outcome of the previous one (`None` on the
    /// first call) and the clock; `None` when the step is over.
    pub fn next(&mut self, done: Option<Done>, now_ms: u64) -> Option<Effect> {
        if self.over {
            return None;
        }
        {
            let mut s = self.link.state.lock().unwrap();
            s.done = done;
            s.now_ms = now_ms;
        }
        match self.fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(()) => {
                self.over = true;
                None
            }
            Poll::Pending => {
                let effect = self.link.state.lock().unwrap().effect.take();
                if effect.is_none() {
                    // Only an effect suspends the machine's code.
                    self.over = true;
                }
                effect
            }
        }
    }
}

impl Project {
    /// The sync state of `project`, as at boot: `rolled_back` are its ROLLBACKs found in the
    /// WAL and `late_commits` its late COMMITs ([`late_commit_of`]) — both replayed to
    /// editors that reconnect —, `not_synced` the uuids editors keep as a person's edit,
    /// rebuilt from the WAL (a restart neither forgets nor replays over them).
    pub fn new(
        project: String,
        settings: Settings,
        rolled_back: Vec<RolledBack>,
        late_commits: Vec<(u64, Vec<String>)>,
        not_synced: impl IntoIterator<Item = NotSynced>,
    ) -> Project {
        let mut p = Project::with_late_commits(project, settings, rolled_back, late_commits);
        p.not_synced = not_synced.into_iter().map(|n| ((n.uuid.clone(), n.client_id.clone()), n)).collect();
        p.kept_here = kept::KeptHere::seeded(p.not_synced.keys());
        p
    }

    /// [`Project::new`] without not-synced uuids: given what editors may have missed, as
    /// [`late_commit_of`] reads it from the WAL.
    fn with_late_commits(
        project: String,
        settings: Settings,
        rolled_back: Vec<RolledBack>,
        late_commits: Vec<(u64, Vec<String>)>,
    ) -> Project {
        Project {
            project,
            settings,
            queue: Queue::new(settings.batch_window_ms, settings.batch_limit),
            inflight: Vec::new(),
            late_commits,
            exposed_seq: AtomicU64::new(0),
            synced: HashMap::default(),
            boot_seq: None,
            rolled_back,
            not_synced: BTreeMap::new(),
            refused: BTreeMap::new(),
            conflicts: 0,
            resyncs: HashMap::default(),
            deferred: Vec::new(),
            joined: HashSet::default(),
            idle: IdleTracker::default(),
            held: held::Held::default(),
            degraded: HashMap::default(),
            diverged: HashMap::default(),
            live: Throttle::new(settings.live_interval_ms),
            delivered: Delivered::default(),
            next_mark: 0,
            slow_queued: HashSet::default(),
            forwarded: HashMap::default(),
            bases: HashMap::default(),
            co_poses: HashMap::default(),
            foreign_kept: kept::ForeignKept::default(),
            kept_here: kept::KeptHere::default(),
            kept_logged: HashMap::default(),
            stale_after_flight: HashMap::default(),
            previews: HashMap::default(),
            seen_poses: HashMap::default(),
            origin_hash: foldhash::fast::FixedState::default(),
            delete_losers: HashMap::default(),
            postponed: None,
            orphaned: Vec::new(),
            orphaned_at: None,
            children: None,
        }
    }

    pub fn project_id(&self) -> &str {
        &self.project
    }

    /// A fast-path change as its live preview goes: a move of an editor with a `CoPose` of
    /// the uuid carries the other editors' parts it left as it held them, as its batch will.
    fn co_preview(&self, uuid: &str, client_id: &str, op: &crate::sync::ChangeOp) -> crate::sync::ChangeOp {
        if let (false, crate::sync::ChangeOp::Transform { t, r, s }) = (self.co_poses.is_empty(), op) {
            if let Some(co) = self.co_poses.get(&(uuid.to_string(), client_id.to_string())).filter(|co| co.from != 0) {
                let p = co.preview(&Pose { t: *t, r: *r, s: *s });
                return crate::sync::ChangeOp::Transform { t: p.t, r: p.r, s: p.s };
            }
        }
        op.clone()
    }

    /// An admitted `transform` of `uuid` from `origin` (`mark`, its `seen` marks `saw`, the
    /// pose its preview carries): remember the pose it was made over, and its own.
    fn note_move(&mut self, origin: &str, uuid: &str, (mark, saw): (u64, u64), previewed: Pose) {
        use std::hash::BuildHasher;
        let who = self.origin_hash.hash_one(origin);
        let seen = (saw != 0)
            .then(|| self.previews.get(uuid))
            .flatten()
            .and_then(|ring| ring.iter().rev().find(|(m, o, _)| *m <= saw && *o != who))
            .map(|(_, _, p)| *p);
        match seen {
            Some(p) => {
                if self.seen_poses.len() >= PREVIEW_UUIDS_KEPT {
                    self.seen_poses.clear();
                }
                self.seen_poses.insert((origin.to_string(), uuid.to_string()), p);
            }
            None if !self.seen_poses.is_empty() => {
                self.seen_poses.remove(&(origin.to_string(), uuid.to_string()));
            }
            None => {}
        }
        let ring = match self.previews.get_mut(uuid) {
            Some(ring) => ring,
            None => {
                if self.previews.len() >= PREVIEW_UUIDS_KEPT {
                    self.previews.clear();
                }
                self.previews.entry(uuid.to_string()).or_default()
            }
        };
        if ring.len() == PREVIEWS_KEPT {
            ring.pop_front();
        }
        ring.push_back((mark, who, previewed));
    }

    /// A batch of `uuids` ended at `now_ms`: after a rollback, their `CoPose`s are over (the
    /// merged pose never stood); so is every one whose editor's moves stopped.
    fn co_poses_ended(&mut self, uuids: &[String], committed: bool, now_ms: u64) {
        if self.co_poses.is_empty() {
            return;
        }
        let ended: HashSet<&str> = uuids.iter().map(String::as_str).collect();
        self.co_poses.retain(|(u, _), co| {
            (committed || !ended.contains(u.as_str())) && now_ms.saturating_sub(co.last_ms) <= CO_POSE_HOLD_MS
        });
    }

    /// An editor answered the batch or resync `batch_id` (not held), sparing `spared`
    /// (`applied.spared`): for every other uuid whose pose it was sent, it now holds that
    /// pose. Where that pose has the values of the parts its `CoPose` keeps from the others,
    /// the editor applied them: its moves made from now on carry them as applied, and a part
    /// it then sets back to the value it held before (a person undoing the other editor's
    /// scale) is a change of its own — so the `CoPose` ends here, unless a move of it made
    /// before it applied that pose still waits (that one needs it). Without this, such a
    /// revert within `CO_POSE_HOLD_MS` of its drag read as "left as it held it", and the
    /// other editor's value was put back over the person's (docs/PROTOCOL.md §6.2).
    fn co_poses_applied(&mut self, cx: &Cx<'_>, session_id: &str, batch_id: &str, spared: &[String]) {
        let Some(s) = cx.view.session(session_id) else { return };
        let mine = |u: &str| self.co_poses.contains_key(&(u.to_string(), s.client_id.clone()));
        // The last pose sent of each uuid with a `CoPose` of this editor is what it holds.
        let mut last: HashMap<String, Pose> = HashMap::default();
        match self.resyncs.get(batch_id) {
            Some(check) => {
                for (u, p) in check.poses.iter().filter(|(u, _)| mine(u)) {
                    last.insert(u.clone(), *p);
                }
            }
            None => {
                let Some(f) = self.inflight.iter().find(|f| f.batch_id == batch_id) else { return };
                for (u, op) in f.sends.get(session_id).into_iter().flatten().filter(|(u, _)| mine(u)) {
                    if let Some(p) = pose_set(op) {
                        last.insert(u.clone(), p);
                    }
                }
            }
        }
        if last.is_empty() {
            return;
        }
        let spared: HashSet<&str> = spared.iter().map(String::as_str).collect();
        for (u, pose) in last {
            if spared.contains(u.as_str()) {
                continue;
            }
            let key = (u, s.client_id.clone());
            let Some(co) = self.co_poses.get(&key) else { continue };
            if pose.changed_from(&co.theirs) & co.from != 0 {
                continue; // it holds other values of those parts (an older pose)
            }
            let waits = |q: &Queued<Editor>| {
                q.change.uuid == key.0
                    && q.origin.client_id == key.1
                    && matches!(q.change.op, crate::sync::ChangeOp::Transform { .. })
            };
            if self.queue.pending_of(&key.0).any(waits) || self.held.of(&key.0).any(waits) {
                continue;
            }
            info!(project_id = %self.project, uuids = ?[&key.0], session_id, "the editor applied the pose another editor's concurrent move made: its later moves carry it");
            self.co_poses.remove(&key);
        }
    }

    /// What `status` shows now.
    pub fn status(&self) -> ProjectSync {
        let refused = self.refused.iter().filter(|(k, _)| !self.not_synced.contains_key(*k)).map(|(_, n)| n);
        ProjectSync {
            not_synced: self.not_synced.values().chain(refused).cloned().collect(),
            conflicts: self.conflicts,
        }
    }

    /// A change of `uuid` from `session` refused with `code`, which its editor keeps marked
    /// not synced (`ItemErrorCode::kept_by_editor`): listed by `status` until a commit or a
    /// delete of the uuid, or that editor's next change of it that is queued or refused
    /// otherwise. Returns whether the list changed.
    fn note_refused(&mut self, session: &Editor, uuid: &str, code: ItemErrorCode, message: &str, seq: u64) -> bool {
        if !session.editor.holds_scene() {
            return false; // an agent, cli or test session keeps nothing
        }
        let key = (uuid.to_string(), session.client_id.clone());
        if !self.refused.contains_key(&key) && self.refused.len() >= MAX_REFUSED_SHOWN {
            return false;
        }
        let reason = format!("{}: {}", code.as_str(), message.chars().take(MAX_REFUSAL_CHARS).collect::<String>());
        let entry = NotSynced {
            uuid: uuid.to_string(),
            session_id: session.session_id.clone(),
            client: session.editor.as_str().to_string(),
            client_id: session.client_id.clone(),
            reason,
            seq,
        };
        self.refused.insert(key, entry.clone()).as_ref() != Some(&entry)
    }

    /// Handle one input. Follow it with a [`Project::tick`] (a zero-length window closes at
    /// once).
    pub fn input<'a>(&'a mut self, view: &'a dyn View, input: Input, now_ms: u64) -> Step<'a> {
        self.run(view, now_ms, Some(input))
    }

    /// The clock reached [`Project::next_wake`] (or any time): deadlines, trailing live
    /// previews, held automation, deferred replays, due windows.
    pub fn tick<'a>(&'a mut self, view: &'a dyn View, now_ms: u64) -> Step<'a> {
        self.run(view, now_ms, None)
    }

    fn run<'a>(&'a mut self, view: &'a dyn View, now_ms: u64, input: Option<Input>) -> Step<'a> {
        if self.boot_seq.is_none() {
            self.boot_seq = Some(view.last_seq());
        }
        let link = Arc::new(Link { state: Mutex::new(LinkState { now_ms, ..LinkState::default() }) });
        let inner = link.clone();
        let fut = Box::pin(async move {
            let cx = Cx { link: &inner, view };
            match input {
                Some(input) => self.on_input(&cx, input).await,
                None => self.on_tick(&cx).await,
            }
            self.persist_kept(&cx).await;
        });
        Step { fut, link, over: false }
    }

    /// When the machine next needs a tick (ms on the caller's clock), if ever.
    pub fn next_wake(&mut self, now_ms: u64) -> Option<u64> {
        let mut at: Option<u64> = self.inflight.iter().map(|f| f.verification.deadline_ms()).min();
        let mut consider = |w: u64| at = Some(at.map_or(w, |a| a.min(w)));
        if let Some(d) = self.live.next_due() {
            consider(d);
        }
        if !self.held.is_empty() {
            consider(self.idle.automation_allowed_at(now_ms, self.settings.user_idle_ms).unwrap_or(now_ms));
        }
        if let Some(d) = self.queue.deadline(self.flight()) {
            consider(self.postponed.map_or(d, |p| d.max(p)));
        }
        if let Some(d) = self.orphaned_at.filter(|_| self.orphans_alone()) {
            consider(d);
        }
        at
    }

    /// Whether the moves of objects left under a deleted parent (`orphaned`) go in a batch
    /// of their own once due: nothing in flight, and no window open. An open window takes
    /// them when it closes — it may hold an editor's own changes of those objects, made after
    /// the delete (a move at the root, Blender's reparents of a deleted object's children),
    /// which its batch reads first; a batch of the moves before it would carry the daemon's
    /// move over them to their own editor (docs/PROTOCOL.md §6.1).
    fn orphans_alone(&self) -> bool {
        self.flight().idle() && self.queue.deadline(self.flight()).is_none()
    }

    /// Whether a [`Project::tick`] has work now: a wake that is due, or replays deferred
    /// behind batches that have all ended. A driver that runs an input and leaves the tick
    /// to another task asks this.
    pub fn tick_due(&mut self, now_ms: u64) -> bool {
        self.next_wake(now_ms).is_some_and(|w| w <= now_ms) || (self.inflight.is_empty() && !self.deferred.is_empty())
    }

    /// Build the children index (module `children`) if it is not built: one pass over the
    /// project's registry. Returns whether it was built now.
    fn build_children(&mut self, cx: &Cx<'_>) -> Result<bool, String> {
        if self.children.is_some() {
            return Ok(false);
        }
        let entries = cx.view.live_entries().map_err(|e| format!("registry read failed: {e}"))?;
        let pairs = entries.iter().map(|e| {
            (e.uuid.as_str(), e.state.as_ref().and_then(|s| s.get("parent")).and_then(serde_json::Value::as_str))
        });
        self.children = Some(children::Children::from_parents(pairs));
        Ok(true)
    }

    /// The first time an editor holding a scene (Blender, Unity — never an agent or the CLI,
    /// which receive no batches) joins this project in this daemon run: objects the registry
    /// holds under a parent that is deleted — their moves to the root were due when the daemon
    /// stopped (or was killed) — are moved in the next main batch, as after the `tombstone`
    /// (docs/PROTOCOL.md §6.1, "Objects left under a deleted parent").
    async fn recover_orphans(&mut self, cx: &Cx<'_>) {
        if !cx.view.any_archived() {
            // Nothing was ever deleted: no pass over the registry (a later delete builds the
            // children index when it asks).
            return;
        }
        match self.build_children(cx) {
            Ok(true) => {}
            Ok(false) => return,
            Err(why) => return cx.storage_failed("sync", &why).await,
        }
        let parents: Vec<String> =
            self.children.as_ref().map(|c| c.parents().into_iter().map(str::to_string).collect()).unwrap_or_default();
        if let Err(why) = self.owe_moves_under_deleted(cx, parents, cx.now() + self.settings.batch_window_ms) {
            cx.storage_failed("sync", &why).await;
        }
    }

    /// Of `parents`, those the registry holds deleted (archived, with who deleted them): the
    /// objects left under them are moved in the next main batch, from `at` on (`orphaned`).
    /// One already listed is skipped. A read error is an error.
    fn owe_moves_under_deleted(&mut self, cx: &Cx<'_>, parents: Vec<String>, at: u64) -> Result<(), String> {
        for p in parents {
            let entry = cx.view.lookup(&p).map_err(|e| format!("registry read failed: {e}"))?;
            let live = entry.is_some_and(|e| e.status != vibesync_registry::Status::Tombstoned);
            if live || self.orphaned.iter().any(|(x, _, _)| *x == p) {
                continue;
            }
            if let Some((by, author)) = deleted_by(cx, &p)? {
                info!(project_id = %self.project, parent = %p, "objects are left under a deleted parent: they go to the root where they stand");
                self.orphaned.push((p, by, author));
                self.orphaned_at.get_or_insert(at);
            }
        }
        Ok(())
    }

    /// Whether the editor `client_id`, whose `base_seq` is `base`, had applied the delete of
    /// `parent`: it made that delete (its `base_seq` may predate the delete's own seq), or
    /// the newest `tombstone` (the archive's) is at or before `base`, and was not relayed after
    /// a later seq went out (`late_commits`: an editor past that seq may not have read it) —
    /// relayed, or carried by a replay after a `last_seq` before it (§6.6). A read error is
    /// an error.
    fn applied_delete_of(&self, cx: &Cx<'_>, parent: &str, client_id: &str, base: u64) -> Result<bool, String> {
        let archived = cx.view.archived(parent).map_err(|e| format!("registry read failed: {e}"))?;
        let Some(newest) = archived.iter().max_by_key(|e| e.archive_seq()) else {
            return Ok(false);
        };
        if newest.deleted_by.as_ref().is_some_and(|by| by.client_id == client_id) {
            return Ok(true);
        }
        let Some(t) = newest.tombstone_seq else {
            return Ok(false);
        };
        let late = self.late_commits.iter().any(|(l, uuids)| *l > base && uuids.iter().any(|u| u == parent));
        Ok(base >= t && !late)
    }

    /// The live objects the registry holds under any of `parents`, each with its parent
    /// (sorted by uuid): from the children index (built with one pass over the project's
    /// registry the first time), each read back from the registry — one that is no longer
    /// there, or no longer under that parent, is dropped (and the index told).
    fn left_under(&mut self, cx: &Cx<'_>, parents: &[&str]) -> Result<BTreeMap<String, String>, String> {
        let read = |e: String| format!("registry read failed: {e}");
        self.build_children(cx)?;
        let index = self.children.as_mut().expect("built above");
        let mut out = index.under_any(parents.iter().copied());
        // child → where the registry has it now: `None` gone, `Some(parent)` elsewhere (or
        // quarantined there).
        let mut stale: Vec<(String, Option<Option<String>>)> = Vec::new();
        for (c, p) in &out {
            let entry = cx.view.lookup(c).map_err(read)?;
            let now = entry.as_deref().filter(|e| e.status != vibesync_registry::Status::Tombstoned).map(|e| {
                let parent = e.state.as_ref().and_then(|s| s.get("parent")).and_then(serde_json::Value::as_str);
                (e.status, parent.map(str::to_string))
            });
            match now {
                Some((vibesync_registry::Status::Live, Some(q))) if &q == p => {}
                Some((_, q)) => stale.push((c.clone(), Some(q))),
                None => stale.push((c.clone(), None)),
            }
        }
        for (c, now) in stale {
            out.remove(&c);
            match now {
                None => index.remove(&c),
                Some(q) => index.set(&c, q.as_deref()),
            }
        }
        Ok(out)
    }

    /// A slow batch committed (`records`, its STEPs): the children index follows the parents
    /// of the states it wrote (module `children`). Returns the parents it wrote, sorted.
    fn note_committed(&mut self, records: &[Record]) -> Vec<String> {
        let mut parents: BTreeSet<String> = BTreeSet::new();
        for (u, p) in committed_parents(records) {
            if let Some(index) = self.children.as_mut() {
                match &p {
                    Some(p) => index.set(&u, p.as_deref()),
                    None => index.remove(&u),
                }
            }
            parents.extend(p.flatten());
        }
        parents.into_iter().collect()
    }

    /// What is in flight, for the `queue` step.
    fn flight(&self) -> Flight {
        Flight {
            slow: self.inflight.iter().any(|f| f.path == Path::Slow),
            fast: self.inflight.iter().any(|f| f.path == Path::Fast),
            // A replay waiting for the batches in flight: its session is made a participant
            // of no new batch before it has its state.
            drain: self
                .deferred
                .iter()
                .any(|e| matches!(e, Deferred::Input(Input::Joined { .. } | Input::Resync { .. }))),
        }
    }

    /// Whether the editor of `session_id` keeps `uuid` locally as a person's edit after a
    /// failed propagation: nothing the daemon sends may correct it there (docs/PROTOCOL.md
    /// §6.4). By `client_id`, which outlives sessions and daemon restarts.
    fn keeps(&self, cx: &Cx<'_>, session_id: &str, uuid: &str) -> bool {
        cx.view.session(session_id).is_some_and(|s| self.not_synced.contains_key(&(uuid.to_string(), s.client_id)))
    }

    /// The batch in flight that holds `uuid`.
    fn inflight_with(&self, uuid: &str) -> Option<&Inflight> {
        self.inflight.iter().find(|f| f.members.contains(uuid))
    }

    async fn on_tick(&mut self, cx: &Cx<'_>) {
        self.flush_live(cx).await;
        let now = cx.now();
        let verdicts: Vec<(String, crate::verify::Verdict)> =
            self.inflight.iter().map(|f| (f.batch_id.clone(), f.verification.tick(now))).collect();
        for (batch_id, verdict) in verdicts {
            self.carry_out(cx, &batch_id, verdict).await;
        }
        if !self.held.is_empty() && self.idle.automation_allowed_at(cx.now(), self.settings.user_idle_ms).is_none() {
            let now = cx.now();
            if cx.view.safe_mode() {
                // Automation is disabled in safe mode (§6.7): what waited for people to be
                // idle does not run; each origin hears it as `dropped`, with the reason.
                self.drop_held_in_safe_mode(cx).await;
            } else {
                info!(changes = self.held.len(), "people idle: running held automation changes");
                for q in self.held.take() {
                    self.push(cx, now, q);
                }
            }
        }
        // Deferred replays first: a session that joined while a batch was in flight gets the
        // state that batch committed before it is made a participant of the next one.
        if self.inflight.is_empty() && !self.deferred.is_empty() {
            for d in std::mem::take(&mut self.deferred) {
                match d {
                    Deferred::Input(ev) => Box::pin(self.on_input(cx, ev)).await,
                    Deferred::Resync { session_id, uuids, attempts } => {
                        Box::pin(self.send_deferred_resync(cx, &session_id, uuids, attempts)).await
                    }
                }
            }
        }
        // A window that holds a change of a uuid whose `tombstone` is being committed waits for
        // it: the registry would read the uuid live, while its editor deleted it — the batch
        // would carry the change over the delete, or bring the object back there. Once the
        // registry shows the delete, the batch reads it (and `on_tombstoned` has dropped the
        // waiting changes it supersedes, docs/PROTOCOL.md §6.2).
        let now = cx.now();
        if self.queue.deadline(self.flight()).is_some_and(|d| d <= now) {
            let deleting = cx.view.deleting();
            if !deleting.is_empty() && self.queue.pending().any(|q| deleting.contains(&q.change.uuid)) {
                if self.postponed.is_none() {
                    debug!(project_id = %self.project, uuids = ?deleting, "a due window waits for a delete being committed");
                }
                self.postponed = Some(now + POSTPONE_MS);
                return;
            }
        }
        self.postponed = None;
        // Pipeline step `queue`: the main window when nothing is in flight, the pipelined one
        // beside a slow batch (at most one slow and one fast batch in flight).
        while let Some((queued, lane)) = self.queue.take_due(cx.now(), self.flight()) {
            self.start_batch(cx, queued, lane).await;
        }
        // Objects left under a deleted parent and no window open: a batch of their moves alone.
        if self.orphaned_at.is_some_and(|d| d <= cx.now()) && self.orphans_alone() {
            self.start_batch(cx, Vec::new(), crate::queue::Lane::Main).await;
        }
    }

    async fn on_input(&mut self, cx: &Cx<'_>, ev: Input) {
        match ev {
            Input::Change { session, base_seq, changes, attachment, request_id, author, seen } => {
                self.on_change(cx, &session, (base_seq, &seen), changes, attachment, request_id, author).await
            }
            Input::Applied { session_id, batch_id, seq, hashes, held, failed, spared } => {
                let diverged_now = self.diverges(cx, &session_id, ("applied", "seq", seq));
                if let (Some(spared), false, false) = (&spared, held, self.co_poses.is_empty()) {
                    self.co_poses_applied(cx, &session_id, &batch_id, spared);
                }
                let answer = verify::Answer { hashes, held, failed, spared };
                self.on_applied(cx, session_id.clone(), batch_id, answer).await;
                if diverged_now {
                    // The full replay that realigns it (§6.7), after its answer is handled.
                    self.replay(cx, &session_id, 0, Some(None)).await;
                }
            }
            ev @ (Input::Joined { .. } | Input::Resync { .. } | Input::Released { .. })
                if !self.inflight.is_empty() =>
            {
                self.deferred.push(Deferred::Input(ev))
            }
            Input::UserActivity { session_id, active } => {
                let now = cx.now();
                self.idle.activity(&session_id, active, now);
            }
            Input::Joined { session_id, last_seq } => {
                self.joined.insert(session_id.clone());
                self.replay(cx, &session_id, last_seq, None).await;
                if cx.view.session(&session_id).is_some_and(|s| s.editor.holds_scene()) {
                    self.recover_orphans(cx).await;
                }
            }
            Input::Resync { session_id, since_seq, request_id } => {
                self.replay(cx, &session_id, since_seq, Some(request_id)).await
            }
            Input::Left { session_id, closing } => self.on_left(cx, &session_id, closing).await,
            Input::Released { uuids } => self.on_released(cx, &uuids).await,
            Input::Tombstoned { origin, operation_id, uuids, seq } => {
                self.on_tombstoned(cx, &origin, &operation_id, uuids, seq).await
            }
        }
    }

    async fn publish_status(&self, cx: &Cx<'_>) {
        cx.io(Effect::Status(self.status())).await;
    }

    /// Sessions that hold a scene (Blender, Unity) and whose join this actor has taken
    /// (`joined`): they receive batches and replays. `agent`, `cli` and `test` sessions only
    /// send.
    fn project_sessions(&self, cx: &Cx<'_>) -> Vec<Editor> {
        cx.view
            .sessions()
            .into_iter()
            .filter(|s| s.editor.holds_scene() && self.joined.contains(&s.session_id))
            .collect()
    }

    /// The chain that `change` (a `reparent`, or a `create` with a parent) would close into
    /// a cycle, if any (docs/PROTOCOL.md §6.1). Parents come from `overlay` where it knows the
    /// uuid (`Some(parent)`: a batch's states), else from the committed states. A registry
    /// read that fails is an error, never "no parent".
    fn parent_cycle_of(
        &self,
        cx: &Cx<'_>,
        change: &crate::sync::Change,
        overlay: impl Fn(&str) -> Option<Option<String>>,
    ) -> Result<Option<Vec<String>>, String> {
        let Some(Some(p)) = change.op.parent_after() else {
            return Ok(None);
        };
        let failed = std::cell::RefCell::new(None);
        let parent_of = |u: &str| {
            overlay(u).unwrap_or_else(|| match self.current_state(cx, u) {
                Ok(st) => st.and_then(|st| st.parent),
                Err(why) => {
                    failed.borrow_mut().get_or_insert(why);
                    None
                }
            })
        };
        let cycle = crate::sync::parent_cycle(&change.uuid, p, parent_of);
        match failed.into_inner() {
            Some(why) => Err(why),
            None => Ok(cycle),
        }
    }

    /// The committed state of `uuid` (`None`: no state). A registry read failure or a stored
    /// state that does not parse is an error, never "absent" (an absent state is sent as
    /// `delete` by a resync).
    fn current_state(&self, cx: &Cx<'_>, uuid: &str) -> Result<Option<crate::sync::ObjectState>, String> {
        let entry = cx.view.lookup(uuid).map_err(|e| format!("registry read failed: {e}"))?;
        state_of(uuid, entry.as_deref())
    }
}

/// The parents a transaction's STEPs write, in order: (uuid, `Some(parent)` of a `state`,
/// `None` for a `tombstone`), as the registry reads those STEPs.
fn committed_parents(records: &[Record]) -> impl Iterator<Item = (String, Option<Option<String>>)> + '_ {
    use vibesync_registry::{parse_payload, Op, ParsedStep};
    records.iter().filter_map(|r| match parse_payload(&r.payload) {
        ParsedStep::Op(Op::State { uuid, state, .. }) => {
            Some((uuid, Some(state.get("parent").and_then(serde_json::Value::as_str).map(str::to_string))))
        }
        ParsedStep::Op(Op::Tombstone { uuid, .. }) => Some((uuid, None)),
        _ => None,
    })
}

/// The editor that deleted `uuid`, as its newest archived version names it (a session that
/// is gone: its kind and client, no session), and whether that delete was automation's;
/// `None` when the archive names none. A read error is an error.
fn deleted_by(cx: &Cx<'_>, uuid: &str) -> Result<Option<(Editor, Author)>, String> {
    let archived = cx.view.archived(uuid).map_err(|e| format!("registry read failed: {e}"))?;
    let Some(by) = archived.into_iter().max_by_key(Entry::archive_seq).and_then(|e| e.deleted_by) else {
        return Ok(None);
    };
    let author = if by.automation { Author::Automation } else { Author::Person };
    Ok(ClientKind::parse(&by.editor)
        .map(|editor| (Editor { session_id: String::new(), editor, client_id: by.client_id, unit_scale: 1.0 }, author)))
}

/// The committed state held by a registry entry (`None`: no state, or tombstoned). A stored
/// state that does not parse is an error, never "absent".
pub fn state_of(uuid: &str, entry: Option<&Entry>) -> Result<Option<crate::sync::ObjectState>, String> {
    use serde::Deserialize;
    let Some(e) = entry else { return Ok(None) };
    match &e.state {
        Some(v) if e.status != vibesync_registry::Status::Tombstoned => crate::sync::ObjectState::deserialize(v)
            .map(Some)
            .map_err(|err| format!("the registry's state of {uuid} is unreadable: {err}")),
        _ => Ok(None),
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::default();
    v.retain(|x| seen.insert(x.clone()));
    v
}

#[cfg(test)]
mod co_pose_tests {
    use super::*;
    use crate::sync::pose_part::S;

    fn pose(x: f64, s: f64) -> Pose {
        Pose { t: [x, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [s; 3] }
    }

    fn co() -> CoPose {
        let other = crate::stale::Write {
            parts: crate::stale::Parts::POSE,
            seq: 0,
            client: "unity-1".into(),
            editor: "unity".into(),
            marks: [0; 3],
            author: Author::Person,
        };
        // Blender's drag was at x = 5 with its scale 1 when a window merged Unity's scale 3.
        CoPose { held: pose(5.0, 1.0), from: S, theirs: pose(5.0, 3.0), other, last_ms: 0 }
    }

    /// A drag's later moves keep the other editor's scale while they carry the scale the
    /// dragging editor held; once it applied the merged pose, its moves carry it themselves.
    #[test]
    fn later_moves_keep_the_parts_the_editor_left_as_it_held_them() {
        let mut c = co();
        assert_eq!(c.preview(&pose(5.5, 1.0)), pose(5.5, 3.0), "its live preview too");
        assert_eq!(c.apply(&pose(6.0, 1.0), 10), (pose(6.0, 3.0), false));
        assert_eq!((c.held, c.from, c.last_ms), (pose(6.0, 1.0), S, 10));
        assert_eq!(c.apply(&pose(7.0, 3.0), 20), (pose(7.0, 3.0), false), "applied: no conflict");
        assert_eq!(c.from, 0, "nothing left to keep");
    }

    /// A part the editor changed to a value of its own is its: it wins, a conflict.
    #[test]
    fn a_part_the_editor_changed_is_its_own_and_a_conflict() {
        let mut c = co();
        assert_eq!(c.apply(&pose(6.0, 5.0), 10), (pose(6.0, 5.0), true));
        assert_eq!(c.from, 0);
    }
}
