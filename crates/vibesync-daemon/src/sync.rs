//! Live sync, the I/O part: one actor task per project turns windows of validated changes
//! into WAL transactions, forwards them to the other editors, verifies their state hashes and
//! commits or rolls back (docs/PROTOCOL.md §6). The decisions themselves (validation,
//! coalescing, state transitions, paths) are pure functions in `vibesync_engine::sync`.
//!
//! Batches of a project are pipelined (docs/PROTOCOL.md §6.2 "Pipelining"): while a slow batch
//! waits for its participants, fast batches of uuids it does not hold may start, be verified
//! and commit beside it (the pure rule is `vibesync_engine::queue`); everything else waits
//! until no batch is in flight. All state of a project lives in its actor, so no locks are held across awaits except the daemon-wide
//! mutation turn around COMMIT + registry apply (the registry applies in COMMIT order).
//!
//! Invariant (docs/PROTOCOL.md §6.4): a person's edit is never undone, deleted or overwritten
//! in the editor where it was made. A rollback re-sends the authoritative state to the
//! editors that were sent the batch, never to the origin of a person's edit for its uuids
//! (`kept_local`); only automation is reverted at its origin.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};
use vibesync_engine::finalize::plan_rollback;
use vibesync_engine::forward::{self, Conflict, Ops};
use vibesync_engine::governance::{Decision, Escalation, IdleTracker};
use vibesync_engine::live::Throttle;
use vibesync_engine::queue::{self, Flight, Lane, Queue};
use vibesync_engine::sync::{
    apply_change, batch_path, change_to_wire, coalesce_mask, parse_change, Author, Change, ChangeOp, ObjectState, Path,
    Queued,
};
use vibesync_engine::verify::{mismatches, Verdict, Verification};
use vibesync_protocol::mesh::Mesh;
use vibesync_protocol::message::ItemResult;
use vibesync_protocol::{BatchOutcome, ClientKind, Frame, ItemErrorCode, ItemStatus, Outbound, PathKind, RollbackCode};
use vibesync_registry::{Entry, Op as RegOp, Status};
use vibesync_wal::{Outcome, Phase, Record, RecordDraft};

use crate::core::{Daemon, SessionInfo};
use crate::txn::Txn;
pub use crate::txn::SYNC_SESSION;

type SessionId = String;

/// Messages to a project's actor.
pub enum SyncEvent {
    Change {
        session: Box<SessionInfo>,
        base_seq: u64,
        changes: Vec<Value>,
        attachment: Bytes,
        request_id: String,
        /// A person's edit, or automation's (an `agent` session, or `change.automation`).
        author: Author,
        /// Completed once the `ack` (and any corrective resync after it) is queued.
        reply: oneshot::Sender<()>,
    },
    Applied {
        session_id: SessionId,
        batch_id: String,
        hashes: BTreeMap<String, String>,
        held: bool,
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
    },
    /// A person started or stopped editing in this session's editor.
    UserActivity {
        session_id: SessionId,
        active: bool,
    },
    /// Internal: re-send these uuids' authoritative state to one session.
    ResyncUuids {
        session_id: SessionId,
        uuids: Vec<String>,
    },
    /// A person released these uuids from quarantine: editors that were not replayed them
    /// get their authoritative state.
    Released {
        uuids: Vec<String>,
    },
    /// uuids tombstoned through a `tombstone` request: tell the other editors.
    Tombstoned {
        origin: SessionId,
        uuids: Vec<String>,
        seq: u64,
    },
}

pub use crate::notsynced::NotSynced;

/// What `status` shows of each project's sync.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProjectSync {
    pub not_synced: Vec<NotSynced>,
    pub conflicts: u64,
}

/// Routes events to per-project actors, starting them on first use.
#[derive(Default)]
pub struct SyncHub {
    actors: Mutex<HashMap<String, mpsc::UnboundedSender<SyncEvent>>>,
    /// Per project, kept up to date by its actor (read by `status`).
    status: Arc<Mutex<BTreeMap<String, ProjectSync>>>,
    /// The actors' tasks, awaited by [`SyncHub::stop`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set by [`SyncHub::stop`]: no actor starts and no event is delivered after it.
    stopped: std::sync::atomic::AtomicBool,
}

impl SyncHub {
    /// Sync status of every project that has an actor.
    pub fn status(&self) -> BTreeMap<String, ProjectSync> {
        self.status.lock().unwrap().clone()
    }

    pub fn send(&self, daemon: &Arc<Daemon>, project_id: &str, ev: SyncEvent) {
        let mut actors = self.actors.lock().unwrap();
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return; // the daemon is stopping: nothing new starts
        }
        let spawn = || {
            let (tx, rx) = mpsc::unbounded_channel();
            let actor = Actor::new(daemon.clone(), project_id.to_string(), self.status.clone());
            // Every line the actor logs names its project (not the session that woke it).
            let span = tracing::info_span!(parent: None, "sync", project_id = %project_id);
            self.tasks.lock().unwrap().push(tokio::spawn(actor.run(rx).instrument(span)));
            tx
        };
        let tx = actors.entry(project_id.to_string()).or_insert_with(spawn);
        if let Err(e) = tx.send(ev) {
            // The actor ended (it only ends when its channel closes); start a fresh one.
            let tx2 = spawn();
            let _ = tx2.send(e.0);
            *tx = tx2;
        }
    }

    /// A graceful stop, before the stores close: every actor finishes the event it is
    /// handling and ends; nothing more is appended to the WAL by sync. A batch still waiting
    /// for answers is left open: the next boot ends it as `RECOVERED_INCOMPLETE` — a cut
    /// batch, never a failure counted against its objects (docs/PROTOCOL.md §6.7) — and its
    /// origin re-sends it (docs/WAL.md).
    pub async fn stop(&self, timeout: std::time::Duration) {
        let tasks = {
            let mut actors = self.actors.lock().unwrap();
            self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
            actors.clear(); // closes every channel: each actor's loop ends
            std::mem::take(&mut *self.tasks.lock().unwrap())
        };
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!("sync actors still busy after {timeout:?} at shutdown; stopping without them");
        }
    }
}

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
    origins: HashSet<SessionId>,
    /// uuid → (client_id, editor kind) of its last writer in the batch.
    origin_clients: HashMap<String, (String, String)>,
    /// session → editor kind, for conflict events and logs.
    kinds: HashMap<SessionId, String>,
    ops: Vec<String>,
    new_hashes: HashMap<String, String>,
    /// The uuids of a slow batch: no live preview of them until it ends (per-uuid order).
    holds_live: HashSet<String>,
}

struct ResyncCheck {
    session_id: SessionId,
    expected: BTreeMap<String, Option<String>>,
    attempts: u32,
}

struct Actor {
    daemon: Arc<Daemon>,
    project: String,
    /// Pipeline step `queue`: the main and the pipelined window.
    queue: Queue<SessionInfo>,
    /// The batches in flight, oldest first: at most one slow and one fast, uuids disjoint.
    inflight: Vec<Inflight>,
    /// Batches that committed after a later seq had been sent to editors (a pipelined batch's
    /// fences or result): (COMMIT seq, uuids). An editor whose `last_seq` is below the COMMIT
    /// may have skipped their STEPs' seqs, so a replay after such a `last_seq` includes them.
    late_commits: Vec<(u64, Vec<String>)>,
    /// The highest seq sent to an editor of the project on a batch's fences or a `batch_result`.
    exposed_seq: std::sync::atomic::AtomicU64,
    /// uuid → (seq of its last committed sync change, client_id and editor kind of the
    /// editor that made it).
    synced: HashMap<String, (u64, String, String)>,
    /// ROLLBACKs, for replay to editors that reconnect.
    rolled_back: Vec<crate::stores::RolledBack>,
    /// uuids kept locally after a failed propagation (shown by `status`).
    not_synced: BTreeMap<String, NotSynced>,
    conflicts: u64,
    status: Arc<Mutex<BTreeMap<String, ProjectSync>>>,
    resyncs: HashMap<String, ResyncCheck>,
    /// Joins and resync requests wait while a batch is in flight.
    deferred: Vec<SyncEvent>,
    epoch: Instant,
    /// People's activity per session (user-edit protection).
    idle: IdleTracker,
    /// Changes from automation waiting for people to be idle.
    held: Vec<Queued<SessionInfo>>,
    /// uuids the gate degraded to the slow path, with its reasons.
    degraded: HashMap<String, Vec<String>>,
    /// Sessions whose sequence diverged: blocked until they acknowledge a full replay.
    diverged: HashMap<SessionId, Option<String>>,
    /// Live previews (docs/PROTOCOL.md §6.3): receiver, uuid, op → last send and the value
    /// waiting for its interval.
    live: Throttle<SessionId, (ChangeOp, ClientKind)>,
    /// uuids with a slow-path change in the window: no live preview of them until its batch
    /// has ended (per-uuid order).
    slow_queued: HashSet<String>,
}

impl Actor {
    fn new(daemon: Arc<Daemon>, project: String, status: Arc<Mutex<BTreeMap<String, ProjectSync>>>) -> Actor {
        let window_ms = daemon.config().sync.batch_window_ms;
        let live_interval_ms = daemon.config().sync.live_interval_ms;
        Actor {
            rolled_back: daemon.stores().rolled_back_since_boot(&project),
            // Rebuilt from the WAL at boot (crate::notsynced): a restart forgets no kept edit.
            not_synced: daemon.stores().not_synced_at_boot(&project),
            conflicts: 0,
            status,
            daemon,
            project,
            queue: Queue::new(window_ms),
            inflight: Vec::new(),
            late_commits: Vec::new(),
            exposed_seq: std::sync::atomic::AtomicU64::new(0),
            synced: HashMap::new(),
            resyncs: HashMap::new(),
            deferred: Vec::new(),
            epoch: Instant::now(),
            idle: IdleTracker::default(),
            held: Vec::new(),
            degraded: HashMap::new(),
            diverged: HashMap::new(),
            live: Throttle::new(live_interval_ms),
            slow_queued: HashSet::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SyncEvent>) {
        loop {
            let wake = self.next_wake();
            let ev = match wake {
                Some(at) => tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tokio::time::sleep_until(at) => { self.on_tick().await; continue; }
                },
                None => rx.recv().await,
            };
            let Some(ev) = ev else { return };
            self.on_event(ev).await;
            // Zero-length windows close at once.
            self.on_tick().await;
        }
    }

    fn next_wake(&mut self) -> Option<Instant> {
        let mut at: Option<Instant> =
            self.inflight.iter().map(|f| self.epoch + Duration::from_millis(f.verification.deadline_ms())).min();
        if let Some(d) = self.live.next_due() {
            let w = self.epoch + Duration::from_millis(d);
            at = Some(at.map_or(w, |a| a.min(w)));
        }
        if !self.held.is_empty() {
            let idle_ms = self.daemon.config().governance.user_idle_ms;
            let release = self.idle.automation_allowed_at(self.now_ms(), idle_ms).unwrap_or(self.now_ms());
            let w = self.epoch + Duration::from_millis(release);
            at = Some(at.map_or(w, |a| a.min(w)));
        }
        if let Some(d) = self.queue.deadline(self.flight()) {
            let w = self.epoch + Duration::from_millis(d);
            at = Some(at.map_or(w, |a| a.min(w)));
        }
        at
    }

    /// What is in flight, for the `queue` step.
    fn flight(&self) -> Flight {
        Flight {
            slow: self.inflight.iter().any(|f| f.path == Path::Slow),
            fast: self.inflight.iter().any(|f| f.path == Path::Fast),
            // A replay waiting for the batches in flight: its session is made a participant
            // of no new batch before it has its state.
            drain: self.deferred.iter().any(|e| matches!(e, SyncEvent::Joined { .. } | SyncEvent::Resync { .. })),
        }
    }

    /// The batch in flight that holds `uuid`.
    fn inflight_with(&self, uuid: &str) -> Option<&Inflight> {
        self.inflight.iter().find(|f| f.members.contains(uuid))
    }

    async fn on_tick(&mut self) {
        self.flush_live().await;
        let now = self.now_ms();
        let verdicts: Vec<(String, Verdict)> =
            self.inflight.iter().map(|f| (f.batch_id.clone(), f.verification.tick(now))).collect();
        for (batch_id, verdict) in verdicts {
            self.carry_out(&batch_id, verdict).await;
        }
        if !self.held.is_empty() {
            let idle_ms = self.daemon.config().governance.user_idle_ms;
            if self.idle.automation_allowed_at(self.now_ms(), idle_ms).is_none() {
                let now = self.now_ms();
                info!(changes = self.held.len(), "people idle: running held automation changes");
                for q in std::mem::take(&mut self.held) {
                    self.push(now, q);
                }
            }
        }
        // Deferred replays first: a session that joined while a batch was in flight gets the
        // state that batch committed before it is made a participant of the next one.
        if self.inflight.is_empty() && !self.deferred.is_empty() {
            for ev in std::mem::take(&mut self.deferred) {
                Box::pin(self.on_event(ev)).await;
            }
        }
        // Pipeline step `queue`: the main window when nothing is in flight, the pipelined one
        // beside a slow batch (at most one slow and one fast batch in flight).
        while let Some((queued, lane)) = self.queue.take_due(self.now_ms(), self.flight()) {
            self.start_batch(queued, lane).await;
        }
    }

    /// Queue an admitted change in its window (pipeline step `queue`).
    fn push(&mut self, now: u64, q: Queued<SessionInfo>) -> Lane {
        let slow: Option<HashSet<String>> = self
            .inflight
            .iter()
            .find(|f| f.path == Path::Slow && self.daemon.config().sync.pipelining)
            .map(|f| f.uuids.iter().cloned().collect());
        let held_back = match &slow {
            None => false,
            Some(slow) => {
                self.degraded.contains_key(&q.change.uuid)
                    || queue::held_back(&q.change.uuid, slow, |u| match self.current_state(u) {
                        Ok(st) => st.and_then(|s| s.parent),
                        // Unreadable: never guessed free (the caller's reads report the failure).
                        Err(_) => Some(u.to_string()),
                    })
            }
        };
        self.queue.push(now, q, slow.is_some(), held_back)
    }

    async fn on_event(&mut self, ev: SyncEvent) {
        match ev {
            SyncEvent::Change { session, base_seq, changes, attachment, request_id, author, reply } => {
                let (results, stale) = self.enqueue(&session, base_seq, changes, attachment, author).await;
                // The ack first, then the corrective resync for STALE changes: an editor learns
                // its change was refused before the state that replaces it arrives (§6.1, §6.6).
                let ack = Outbound::Ack { request_id, seq: self.daemon.last_seq(), results }.to_frame();
                self.daemon.send_frames(&session.session_id, vec![ack]).await;
                if !stale.is_empty() {
                    let uuids: Vec<String> = stale.iter().map(|(u, _, _)| u.clone()).collect();
                    self.stale_conflicts(&session, stale).await;
                    self.send_resync(&session.session_id, &uuids, "stale change").await;
                }
                let _ = reply.send(());
            }
            SyncEvent::Applied { session_id, batch_id, hashes, held } => {
                self.on_applied(session_id, batch_id, hashes, held).await
            }
            ev @ (SyncEvent::Joined { .. } | SyncEvent::Resync { .. } | SyncEvent::Released { .. })
                if !self.inflight.is_empty() =>
            {
                self.deferred.push(ev)
            }
            SyncEvent::ResyncUuids { session_id, uuids } => self.send_resync(&session_id, &uuids, "deferred").await,
            SyncEvent::UserActivity { session_id, active } => {
                let now = self.now_ms();
                self.idle.activity(&session_id, active, now);
            }
            SyncEvent::Joined { session_id, last_seq } => self.replay(&session_id, last_seq, None).await,
            SyncEvent::Resync { session_id, since_seq, request_id } => {
                self.replay(&session_id, since_seq, Some(request_id)).await
            }
            SyncEvent::Left { session_id } => {
                self.resyncs.retain(|_, r| r.session_id != session_id);
                self.idle.left(&session_id);
                self.diverged.remove(&session_id);
                // A participant that received the batch and went away before answering is
                // evidence that the data may crash that editor (docs/PROTOCOL.md §6.7): the
                // batch is never committed, so never replayed to it.
                let verdicts: Vec<(String, Verdict)> =
                    self.inflight.iter_mut().map(|f| (f.batch_id.clone(), f.verification.left(&session_id))).collect();
                for (batch_id, verdict) in verdicts {
                    self.carry_out(&batch_id, verdict).await;
                }
            }
            SyncEvent::Released { uuids } => {
                for s in self.project_sessions() {
                    // Never over a person's edit kept where it was made: that editor re-sends it.
                    let theirs: Vec<String> = uuids
                        .iter()
                        .filter(|u| self.not_synced.get(*u).is_none_or(|n| n.client_id != s.client_id))
                        .cloned()
                        .collect();
                    if !theirs.is_empty() {
                        self.send_resync(&s.session_id, &theirs, "quarantine released").await;
                    }
                }
            }
            SyncEvent::Tombstoned { origin, uuids, seq } => {
                let ops: Vec<(String, ChangeOp)> = uuids.into_iter().map(|u| (u, ChangeOp::Delete)).collect();
                for s in self.project_sessions() {
                    if s.session_id != origin {
                        self.send_batch(&s, &uuid::Uuid::new_v4().to_string(), seq, PathKind::Slow, &ops, None).await;
                    }
                }
                for (u, _) in &ops {
                    self.not_synced.remove(u);
                }
                self.publish_status();
            }
        }
    }

    /// Validate (zero trust) and queue one `change` request; returns its `ack` results.
    async fn enqueue(
        &mut self,
        session: &SessionInfo,
        base_seq: u64,
        changes: Vec<Value>,
        attachment: Bytes,
        author: Author,
    ) -> (Vec<ItemResult>, Vec<(String, &'static str, (String, String))>) {
        let mut results = Vec::with_capacity(changes.len());
        // (uuid, op, (client_id, editor kind) of the change that won)
        let mut stale: Vec<(String, &'static str, (String, String))> = Vec::new();
        let last_seq = self.daemon.last_seq();
        if base_seq > last_seq && !self.diverged.contains_key(&session.session_id) {
            warn!(session_id = %session.session_id, base_seq, last_seq, "sequence divergence: the editor followed another history; blocking its changes and replaying everything");
            self.diverged.insert(session.session_id.clone(), None);
            // Always answered: the full replay, or an empty `resync` batch carrying the
            // daemon's seq when there is nothing to replay (the refusal promises one).
            self.replay(&session.session_id, 0, Some(None)).await;
        }
        let diverged = self.diverged.contains_key(&session.session_id).then(|| {
            format!("sequence divergence: your base_seq {base_seq} is beyond this daemon's last seq {last_seq}; apply the full replay you were sent, then change again")
        });
        let automation_waits = session.is(vibesync_protocol::ClientKind::Agent)
            && self.idle.automation_allowed_at(self.now_ms(), self.daemon.config().governance.user_idle_ms).is_some();
        // Admitted fast-path changes, forwarded at once as live previews (§6.3).
        let mut live: Vec<(String, ChangeOp)> = Vec::new();
        for (i, raw) in changes.iter().enumerate() {
            let at = format!("changes[{i}]");
            let shown = raw
                .get("uuid")
                .and_then(Value::as_str)
                .map(vibesync_protocol::validate::truncate_for_message)
                .unwrap_or_default();
            let change = match parse_change(raw, session.unit_scale, &at) {
                Ok(c) => c,
                Err(e) => {
                    results.push(ItemResult::error(shown, e.code, e.message));
                    continue;
                }
            };

            let Admitted { blob, entry } = match self.admit(session, base_seq, &change, &attachment, &at) {
                Ok(a) => a,
                Err((code, msg)) => {
                    if code == ItemErrorCode::StorageFailed {
                        self.daemon.storage_failure_notice("sync", &msg);
                    }
                    if code == ItemErrorCode::Stale {
                        let winner = self.stale_winner(&change.uuid);
                        stale.push((change.uuid.clone(), change.op.name(), winner));
                    }
                    results.push(ItemResult::error(&change.uuid, code, msg));
                    continue;
                }
            };
            if let Some(msg) = &diverged {
                results.push(ItemResult::error(&change.uuid, ItemErrorCode::Blocked, format!("{at}: {msg}")));
                continue;
            }
            let decision = match self.consult_gate(&change, entry) {
                Ok(d) => d,
                Err(why) => {
                    self.daemon.storage_failure_notice("sync", &why);
                    results.push(ItemResult::error(&change.uuid, ItemErrorCode::StorageFailed, format!("{at}: {why}")));
                    continue;
                }
            };
            match decision {
                Decision::Block(reason) => {
                    info!(uuid = %change.uuid, op = change.op.name(), reason = %reason, "gate: blocked");
                    results.push(ItemResult::error(&change.uuid, ItemErrorCode::Blocked, format!("{at}: {reason}")));
                    continue;
                }
                Decision::Degrade(reasons) => {
                    // Once per uuid and window, not per change: a degraded uuid that keeps moving
                    // made one line per transform (300 MB of logs over 1,000,000 transforms).
                    if !self.degraded.contains_key(&change.uuid) {
                        info!(uuid = %change.uuid, op = change.op.name(), ?reasons, "gate: degraded to the slow path");
                    }
                    self.degraded.insert(change.uuid.clone(), reasons);
                }
                Decision::Proceed => {}
            }
            // The mesh is stored only for a change that is accepted (never an orphan blob
            // for a refused one), durable before the STEP that names it.
            if let Some(hash) = blob {
                let (stores, bytes) = (self.daemon.stores().clone(), attachment.clone());
                let stored = tokio::task::spawn_blocking(move || stores.put_blob(&hash, &bytes)).await;
                if let Some(e) = match stored {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                } {
                    results.push(ItemResult::error(&change.uuid, ItemErrorCode::StorageFailed, format!("{at}: {e}")));
                    continue;
                }
            }
            if automation_waits {
                results.push(ItemResult::ok(&change.uuid, ItemStatus::Held));
                self.held.push(Queued { origin: session.clone(), author, change });
                continue;
            }
            results.push(ItemResult::ok(&change.uuid, ItemStatus::Queued));
            if change.op.path() == Path::Slow || self.degraded.contains_key(&change.uuid) {
                // Its batch carries everything of this uuid from now on, in order.
                self.slow_queued.insert(change.uuid.clone());
                self.live.cancel_uuid(&change.uuid);
                live.retain(|(u, _)| u != &change.uuid);
            } else if !self.holds_live(&change.uuid) {
                live.push((change.uuid.clone(), change.op.clone()));
            }
            let now = self.now_ms();
            self.push(now, Queued { origin: session.clone(), author, change });
        }
        self.forward_live(session, live).await;
        (results, stale)
    }

    /// No live preview for a uuid with a slow-path change queued or in flight: its changes
    /// reach the other editors only through batches, in order (§6.3).
    fn holds_live(&self, uuid: &str) -> bool {
        self.slow_queued.contains(uuid) || self.inflight.iter().any(|f| f.holds_live.contains(uuid))
    }

    /// Pipeline step `forward`, live half: send admitted fast-path changes to the project's
    /// other scene holders at once, at most one frame per receiver, uuid and op per
    /// `sync.live_interval_ms` (the rest wait in the throttle, the latest value winning).
    async fn forward_live(&mut self, origin: &SessionInfo, changes: Vec<(String, ChangeOp)>) {
        if changes.is_empty() {
            return;
        }
        let kind = origin.editor;
        let now = self.now_ms();
        for r in self.project_sessions() {
            if r.session_id == origin.session_id {
                continue;
            }
            let frames: Vec<Frame> = changes
                .iter()
                .filter_map(|(uuid, op)| {
                    let sent = self.live.offer(now, r.session_id.clone(), uuid, op.name(), (op.clone(), kind))?;
                    Some(live_frame(uuid, &sent.0, sent.1, r.unit_scale))
                })
                .collect();
            self.offer_live(&r.session_id, frames).await;
        }
    }

    /// Previews never wait for a receiver: one whose writer queue is half full gets none
    /// (the window's batch brings it the state).
    async fn offer_live(&self, session_id: &str, frames: Vec<Frame>) {
        let n = frames.len();
        if n == 0 {
            return;
        }
        let queued = self.daemon.offer_frames(session_id, frames).await;
        if queued < n {
            debug!(session_id, dropped = n - queued, "live previews dropped: the receiver's queue is busy");
        }
    }

    /// Deliver the live previews whose interval has passed (the trailing values).
    async fn flush_live(&mut self) {
        let due = self.live.take_due(self.now_ms());
        if due.is_empty() {
            return;
        }
        let mut per: BTreeMap<SessionId, Vec<(String, ChangeOp, ClientKind)>> = BTreeMap::new();
        for (r, uuid, (op, kind)) in due {
            if !self.holds_live(&uuid) {
                per.entry(r).or_default().push((uuid, op, kind));
            }
        }
        for (r, items) in per {
            let Some(s) = self.daemon.session_info(&r) else { continue };
            let frames = items.iter().map(|(u, op, k)| live_frame(u, op, *k, s.unit_scale)).collect();
            self.offer_live(&r, frames).await;
        }
    }

    /// Checks before the gate. `Ok(Some(hash))`: the attachment is a valid new mesh, to be
    /// stored once the change is accepted.
    fn admit(
        &self,
        session: &SessionInfo,
        base_seq: u64,
        change: &Change,
        attachment: &Bytes,
        at: &str,
    ) -> Result<Admitted, (ItemErrorCode, String)> {
        // A read failure answers STORAGE_FAILED for this item, never "unknown uuid".
        let entry = self.daemon.stores().registry.lookup(&self.project, &change.uuid).map_err(|e| {
            (ItemErrorCode::StorageFailed, format!("{at}: registry read failed: {e}; nothing was queued for it"))
        })?;
        if entry.as_ref().is_some_and(|e| e.status == Status::Quarantined) {
            return Err((
                ItemErrorCode::Quarantined,
                format!("{at}: uuid is quarantined; release it with `vibesync quarantine release {}`", change.uuid),
            ));
        }
        let known = entry.as_ref().is_some_and(|e| e.state.is_some() && e.status == Status::Live)
            || self.queue.has_pending(&change.uuid)
            || self.inflight_with(&change.uuid).is_some();
        if !known && !matches!(change.op, ChangeOp::Create(_)) {
            return Err((
                ItemErrorCode::NotFound,
                format!("{at}: no synced state for {}; send `create` first", change.uuid),
            ));
        }
        if change.op.path() == Path::Slow {
            if let Some(f) = self.inflight_with(&change.uuid) {
                if f.origin_clients.get(&change.uuid).is_some_and(|(c, _)| c != &session.client_id) {
                    return Err((
                        ItemErrorCode::Stale,
                        format!("{at}: {} is being changed by another editor (batch seq {}); you are sent its current state — apply it, then retry", change.uuid, f.seq),
                    ));
                }
            }
            if let Some((seq, client, _)) = self.synced.get(&change.uuid) {
                if *seq > base_seq && client != &session.client_id {
                    return Err((ItemErrorCode::Stale, format!("{at}: {} changed at seq {seq} after your base_seq {base_seq}; you are sent its current state — apply it, then retry", change.uuid)));
                }
            }
        }
        if let ChangeOp::Reparent(Some(p)) | ChangeOp::Create(ObjectState { parent: Some(p), .. }) = &change.op {
            // A cycle built across batches (A under B now, B under A later) is refused per
            // item: the registry holds the committed parents (docs/PROTOCOL.md §6.2).
            let failed = std::cell::RefCell::new(None);
            let parent_of = |u: &str| match self.current_state(u) {
                Ok(s) => s.and_then(|s| s.parent),
                Err(why) => {
                    failed.borrow_mut().get_or_insert(why);
                    None
                }
            };
            let cycle = vibesync_engine::sync::parent_cycle(&change.uuid, p, parent_of);
            if let Some(why) = failed.into_inner() {
                return Err((ItemErrorCode::StorageFailed, format!("{at}.parent: {why}; nothing was queued for it")));
            }
            if let Some(chain) = cycle {
                return Err((
                    ItemErrorCode::InvalidField,
                    format!(
                        "{at}.parent: {} would become its own ancestor ({} → {}); reparent one of them elsewhere first",
                        change.uuid,
                        change.uuid,
                        chain.join(" → ")
                    ),
                ));
            }
        }
        if let Some(hash) = change.op.mesh_hash() {
            if !attachment.is_empty() {
                let actual = Mesh::hash_bytes(attachment);
                if actual != hash {
                    return Err((
                        ItemErrorCode::InvalidField,
                        format!("{at}.mesh_hash: attachment hashes to {actual}"),
                    ));
                }
                if let Err(e) = Mesh::decode(attachment) {
                    return Err((ItemErrorCode::InvalidField, format!("{at}: mesh attachment: {e}")));
                }
                return Ok(Admitted { blob: Some(hash.to_string()), entry });
            } else if !self.daemon.stores().has_blob(hash) {
                return Err((
                    ItemErrorCode::InvalidField,
                    format!("{at}.mesh_hash: unknown mesh; send it as this frame's attachment"),
                ));
            }
        }
        Ok(Admitted { blob: None, entry })
    }

    /// L2: consult the failure index before queuing a mutation. `entry`: the uuid's registry
    /// entry as admission read it (one registry read per change, not two).
    fn consult_gate(&self, change: &Change, entry: Option<Entry>) -> Result<Decision, String> {
        let current = state_of(&change.uuid, entry)?;
        let next_hash = || apply_change(current.as_ref(), &change.op).ok().flatten().map(|s| s.hash());
        let now = crate::stores::unix_ms();
        Ok(self.daemon.stores().governance.lock().unwrap().gate_with(&change.uuid, change.op.name(), next_hash, now))
    }

    /// Carry out what a new failure calls for, smallest thing first (L6), as WAL transactions.
    async fn escalate(&mut self, esc: Escalation) {
        let daemon = self.daemon.clone();
        if !esc.quarantine.is_empty() {
            let _turn = daemon.mutation_turn().await;
            let steps = esc
                .quarantine
                .iter()
                .map(|u| json!({"op": "quarantine", "uuid": u, "reason": "repeated sync failures"}))
                .collect();
            match daemon
                .stores()
                .daemon_txn(&self.project, esc.quarantine.clone(), steps, json!({"op": "governance_quarantine"}))
                .await
            {
                Ok(seq) => {
                    warn!(uuids = ?esc.quarantine, seq, "quarantined after repeated failures; `vibesync quarantine release UUID` after fixing the cause")
                }
                Err(e) => daemon.storage_failure_notice("governance", &e.to_string()),
            }
        }
        for op in &esc.disable_ops {
            let _turn = daemon.mutation_turn().await;
            match daemon
                .stores()
                .daemon_txn(
                    "",
                    vec![],
                    vec![json!({"op": "disable_op", "kind": op})],
                    json!({"op": "governance_disable_op"}),
                )
                .await
            {
                Ok(seq) => {
                    warn!(op = %op, seq, "op kind disabled after repeated failures; `vibesync safe-mode clear` re-enables it")
                }
                Err(e) => daemon.storage_failure_notice("governance", &e.to_string()),
            }
        }
        if let Some(reason) = esc.safe_mode {
            daemon.set_safe_mode(true, &reason);
        }
    }

    /// Sessions that hold a scene (Blender, Unity): they receive batches and replays.
    /// `agent`, `cli` and `test` sessions only send.
    fn project_sessions(&self) -> Vec<SessionInfo> {
        self.daemon.sessions_of(&self.project).into_iter().filter(|s| s.editor.holds_scene()).collect()
    }

    /// The committed state of `uuid` (`None`: no state). A registry read failure or a stored
    /// state that does not parse is an error, never "absent" (an absent state is sent as
    /// `delete` by a resync).
    fn current_state(&self, uuid: &str) -> Result<Option<ObjectState>, String> {
        let entry = self.daemon.stores().registry.lookup(&self.project, uuid);
        state_of(uuid, entry.map_err(|e| format!("registry read failed: {e}"))?)
    }

    /// A window closed (`queued`, from `lane`): compute new states, write
    /// BEGIN/STEPs(/PROVISIONAL), forward.
    async fn start_batch(&mut self, queued: Vec<Queued<SessionInfo>>, lane: Lane) {
        if lane == Lane::Main {
            self.slow_queued.clear(); // the main window held every slow change
        }
        if queued.is_empty() {
            return;
        }

        let mask = coalesce_mask(&queued);
        // (origin, uuid) → the origin's own ops of this window, in order: what it holds.
        let mut own_ops: HashMap<(SessionId, String), Vec<ChangeOp>> = HashMap::new();
        for q in &queued {
            own_ops.entry((q.origin.session_id.clone(), q.change.uuid.clone())).or_default().push(q.change.op.clone());
        }
        let mut start: HashMap<String, Option<ObjectState>> = HashMap::new();
        // uuid → registered (live or quarantined) before the batch: read with `start`, one
        // registry read per uuid of the window.
        let mut registered: HashMap<String, bool> = HashMap::new();
        let mut states: HashMap<String, Option<ObjectState>> = HashMap::new();
        let mut kept: Vec<Queued<SessionInfo>> = Vec::new();
        let mut all: Vec<Queued<SessionId>> = Vec::new();
        let mut dropped: HashMap<SessionId, Vec<String>> = HashMap::new();
        let mut kinds: HashMap<SessionId, String> = HashMap::new();
        for (q, keep) in queued.into_iter().zip(mask) {
            kinds.insert(q.origin.session_id.clone(), q.origin.editor.to_string());
            if !start.contains_key(&q.change.uuid) {
                let entry = match self.daemon.stores().registry.lookup(&self.project, &q.change.uuid) {
                    Ok(e) => e,
                    Err(e) => return self.daemon.storage_failure_notice("sync", &format!("registry read failed: {e}")),
                };
                registered
                    .insert(q.change.uuid.clone(), entry.as_ref().is_some_and(|e| e.status != Status::Tombstoned));
                match state_of(&q.change.uuid, entry) {
                    Ok(st) => start.insert(q.change.uuid.clone(), st),
                    Err(why) => return self.daemon.storage_failure_notice("sync", &why),
                };
            }
            let as_id = Queued { origin: q.origin.session_id.clone(), author: q.author, change: q.change.clone() };
            if !keep {
                all.push(as_id); // superseded in this window: its origin still holds it
                continue;
            }
            let cur = match states.get(&q.change.uuid) {
                Some(s) => s.clone(),
                None => start[&q.change.uuid].clone(),
            };
            match apply_change(cur.as_ref(), &q.change.op) {
                Ok(next) => {
                    let same = cur.is_some()
                        && (next == cur || next.as_ref().map(|s| s.hash()) == cur.as_ref().map(|s| s.hash()));
                    if same {
                        debug!(uuid = %q.change.uuid, op = q.change.op.name(), "no-op change dropped (echo or repeat)");
                        dropped.entry(q.origin.session_id.clone()).or_default().push(q.change.uuid.clone());
                        continue;
                    }
                    states.insert(q.change.uuid.clone(), next);
                    all.push(as_id);
                    kept.push(q);
                }
                Err(e) => {
                    warn!(uuid = %q.change.uuid, "change dropped at batch time: {}", e.message);
                    dropped.entry(q.origin.session_id.clone()).or_default().push(q.change.uuid.clone());
                }
            }
        }
        if kept.is_empty() {
            // Superseded changes of uuids that left the batch are dropped as well.
            for q in &all {
                dropped.entry(q.origin.clone()).or_default().push(q.change.uuid.clone());
            }
            all.clear();
        }
        let batch_uuids: HashSet<&str> = kept.iter().map(|q| q.change.uuid.as_str()).collect();
        for q in all.iter().filter(|q| !batch_uuids.contains(q.change.uuid.as_str())) {
            dropped.entry(q.origin.clone()).or_default().push(q.change.uuid.clone());
        }
        all.retain(|q| batch_uuids.contains(q.change.uuid.as_str()));
        // Origins hear about every change: dropped ones (no-op or no longer applicable) too;
        // then the engine's corrections for origins a dropped change left off the
        // authoritative state (docs/PROTOCOL.md §6.2), after their `dropped` result.
        let dropped: Vec<(SessionId, Vec<String>)> = dropped.into_iter().map(|(s, u)| (s, dedup(u))).collect();
        let corrections = forward::dropped_corrections(
            dropped.iter().map(|(s, u)| (s, u.as_slice())),
            |u| batch_uuids.contains(u),
            &start,
            &own_ops,
            |s, u| self.kept_by(s, u),
        );
        for (session_id, uuids) in dropped {
            self.expose(self.daemon.last_seq());
            let msg = Outbound::BatchResult {
                batch_id: uuid::Uuid::new_v4().to_string(),
                seq: self.daemon.last_seq(),
                outcome: BatchOutcome::Dropped,
                uuids,
                error_code: None,
                kept_local: false,
                reason: None,
            };
            self.daemon.send_frames(&session_id, vec![msg.to_frame()]).await;
        }
        for (session_id, uuids) in corrections {
            info!(session_id = %session_id, uuids = ?uuids, "a superseded change left its editor off the authoritative state: corrected");
            self.send_resync(&session_id, &uuids, "conflict").await;
        }
        if kept.is_empty() {
            return;
        }
        let degraded: Vec<(String, Vec<String>)> = kept
            .iter()
            .filter_map(|q| self.degraded.remove(&q.change.uuid).map(|r| (q.change.uuid.clone(), r)))
            .collect();
        let path = if degraded.is_empty() { batch_path(&kept) } else { Path::Slow };
        let ops: Vec<String> = dedup(kept.iter().map(|q| q.change.op.name().to_string()).collect());
        let gate: serde_json::Map<String, Value> =
            degraded.iter().map(|(u, r)| (u.clone(), json!({"decision": "degrade", "reasons": r}))).collect();
        let batch_id = uuid::Uuid::new_v4().to_string();
        let uuids: Vec<String> = dedup(kept.iter().map(|q| q.change.uuid.clone()).collect());
        let origins: HashSet<SessionId> = all.iter().map(|q| q.origin.clone()).collect();
        let origin_clients: HashMap<String, (String, String)> = kept
            .iter()
            .map(|q| (q.change.uuid.clone(), (q.origin.client_id.clone(), q.origin.editor.to_string())))
            .collect();
        let participants: Vec<SessionInfo> = self.project_sessions();
        for p in &participants {
            kinds.insert(p.session_id.clone(), p.editor.to_string());
        }
        let kept_ids: Vec<Queued<SessionId>> = kept
            .iter()
            .map(|q| Queued { origin: q.origin.session_id.clone(), author: q.author, change: q.change.clone() })
            .collect();
        let participant_ids: Vec<SessionId> = participants.iter().map(|p| p.session_id.clone()).collect();
        // The batch carries the latest value of its uuids to every participant: live previews
        // still waiting for them are superseded (and could arrive after a rollback's resync).
        for u in &uuids {
            self.live.cancel_uuid(u);
        }
        let plan = forward::plan(&all, &kept_ids, &start, &states, &participant_ids);

        let mut drafts = vec![self.draft(
            &batch_id,
            Phase::Begin,
            uuids.clone(),
            Outcome::Pending,
            json!({
                "op": "sync", "path": path.as_str(), "changes": kept.len(), "ops": ops,
                "origins": origins.iter().collect::<Vec<_>>(),
                // Who made the batch, for `vibesync history` (restore.rs).
                "origin_editors": kept.iter().map(|q| (q.origin.session_id.to_string(), q.origin.editor)).collect::<std::collections::BTreeMap<_, _>>(),
                "gate": if gate.is_empty() { json!({"decision": "proceed"}) } else { Value::Object(gate) },
            }),
        )];
        for (uuid, state) in final_states(&kept, &states) {
            let registered = registered.get(&uuid).copied().unwrap_or(false);
            match state {
                Some(s) => {
                    if !registered {
                        drafts.push(self.step(
                            &batch_id,
                            &uuid,
                            RegOp::Register {
                                uuid: uuid.clone(),
                                kind: s.kind.clone(),
                                name: Some(s.name.clone()),
                                editor: None,
                                editor_ref: None,
                                session_id: None,
                                client_id: None,
                            },
                        ));
                    }
                    let hash = plan.final_hashes.get(&uuid).cloned().flatten().unwrap_or_else(|| s.hash());
                    drafts.push(self.step(
                        &batch_id,
                        &uuid,
                        RegOp::State { uuid: uuid.clone(), state: s.to_value(), state_hash: Some(hash) },
                    ));
                }
                None => {
                    if registered {
                        drafts.push(self.step(&batch_id, &uuid, RegOp::Tombstone { uuid: uuid.clone() }));
                    }
                }
            }
        }
        for c in &plan.conflicts {
            drafts.push(self.step(
                &batch_id,
                &c.uuid,
                RegOp::Conflict {
                    uuid: c.uuid.clone(),
                    winner: kinds.get(&c.winner).cloned().unwrap_or_default(),
                    loser: kinds.get(&c.loser).cloned().unwrap_or_default(),
                    change_op: c.op.to_string(),
                },
            ));
        }
        if path == Path::Fast {
            drafts.push(self.draft(
                &batch_id,
                Phase::Provisional,
                uuids.clone(),
                Outcome::Pending,
                json!({"op": "sync"}),
            ));
        }
        let records = match self.daemon.stores().wal.append(drafts).await {
            Ok(r) => r,
            Err(e) => {
                self.daemon.storage_failure_notice(&batch_id, &e.to_string());
                return;
            }
        };
        let seq = records
            .iter()
            .rev()
            .find(|r| r.phase == Phase::Step)
            .map(|r| r.seq)
            .unwrap_or_else(|| records.last().map(|r| r.seq).unwrap_or(0));
        info!(batch_id = %batch_id, project_id = %self.project, uuids = ?uuids, path = path.as_str(), seq, changes = kept.len(), pipelined = lane == Lane::Pipelined, "batch forwarded");
        for c in &plan.conflicts {
            warn!(batch_id = %batch_id, project_id = %self.project, uuid = %c.uuid, winner = %kinds.get(&c.winner).map(String::as_str).unwrap_or(""), loser = %kinds.get(&c.loser).map(String::as_str).unwrap_or(""), op = c.op, seq, "conflict: two editors changed one object in one window; the last writer wins");
        }

        let mut sends = plan.sends;
        let deadline = self.now_ms() + self.daemon.config().sync.verify_timeout_ms;
        let mut verification = Verification::new(plan.expected, deadline);
        for s in &participants {
            let Some(ops) = sends.get(&s.session_id) else { continue };
            if !self.send_batch(s, &batch_id, seq, path.kind(), ops, None).await {
                // Could not reach it: it will be resynced when it reconnects.
                sends.remove(&s.session_id);
                verification.unreachable(&s.session_id);
            }
        }
        let holds_live = if path == Path::Slow { uuids.iter().cloned().collect() } else { HashSet::new() };
        self.inflight.push(Inflight {
            batch_id,
            path,
            seq,
            members: uuids.iter().cloned().collect(),
            uuids,
            records,
            changes: all,
            sends,
            verification,
            corrections: plan.corrections,
            conflicts: plan.conflicts,
            origins,
            origin_clients,
            kinds,
            ops: ops.clone(),
            new_hashes: plan.final_hashes.into_iter().filter_map(|(u, h)| h.map(|h| (u, h))).collect(),
            holds_live,
        });
        // Nobody else is connected: nothing to verify.
        if let Some((id, v)) = self.inflight.last().map(|f| (f.batch_id.clone(), f.verification.verdict())) {
            self.carry_out(&id, v).await;
        }
    }

    fn draft(&self, batch_id: &str, phase: Phase, uuids: Vec<String>, outcome: Outcome, payload: Value) -> RecordDraft {
        Txn { session_id: SYNC_SESSION, operation_id: batch_id, project_id: &self.project }
            .draft(phase, uuids, outcome, payload)
    }

    /// A registry STEP of a batch, built only through the registry's typed `Op`.
    fn step(&self, batch_id: &str, uuid: &str, op: RegOp) -> RecordDraft {
        self.draft(batch_id, Phase::Step, vec![uuid.to_string()], Outcome::Ok, op.to_payload())
    }

    async fn on_applied(
        &mut self,
        session_id: SessionId,
        batch_id: String,
        hashes: BTreeMap<String, String>,
        held: bool,
    ) {
        if let Some(check) = self.resyncs.remove(&batch_id) {
            let bad = mismatches(&check.expected, &hashes);
            if bad.is_empty() && self.diverged.get(&session_id).is_some_and(|b| b.as_deref() == Some(batch_id.as_str()))
            {
                info!(session_id = %session_id, "diverged session acknowledged the full replay; its changes flow again");
                self.diverged.remove(&session_id);
            }
            if bad.is_empty() || held {
                return;
            }
            if check.attempts < 1 {
                // Re-sent once; the re-send carries its attempt count, so this never loops.
                warn!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?bad, "resync not matched; re-sending once");
                let Some(s) = self.daemon.session_info(&check.session_id) else { return };
                let Some(ops) = self.authoritative_ops(&bad) else { return };
                self.send_resync_ops(&s, ops, "resync mismatch", None, check.attempts + 1).await;
            } else {
                error!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?bad, "editor does not match the authoritative state after two resyncs; giving up on these uuids until they change");
            }
            return;
        }
        let Some(f) = self.inflight.iter_mut().find(|f| f.batch_id == batch_id) else { return };
        if held && f.verification.is_participant(&session_id) {
            // The editor holds the batch (e.g. Unity Play Mode): it is not a participant any
            // more and will ask for a resync when it can apply again.
            info!(batch_id = %batch_id, session_id = %session_id, "participant holds the batch; excluded from verification");
            f.sends.remove(&session_id);
        }
        let verdict = f.verification.applied(&session_id, &hashes, held);
        self.carry_out(&batch_id, verdict).await;
    }

    /// Carry out a verdict of the `verify` step for the batch in flight `batch_id`.
    async fn carry_out(&mut self, batch_id: &str, verdict: Verdict) {
        let failure = match verdict {
            Verdict::Wait => return,
            Verdict::Commit => return self.commit(batch_id).await,
            Verdict::Rollback(failure) => failure,
        };
        let Some(f) = self.inflight.iter().find(|f| f.batch_id == batch_id) else { return };
        let kinds: Vec<String> = failure.sessions.iter().filter_map(|s| f.kinds.get(s).cloned()).collect();
        let who = join_kinds(&kinds);
        let (detail, reason) = match failure.code {
            RollbackCode::VerifyMismatch => {
                warn!(batch_id = %f.batch_id, project_id = %self.project, sessions = ?failure.sessions, uuids = ?failure.uuids, "state hash mismatch");
                (
                    json!({"session_id": failure.sessions.first(), "uuids": failure.uuids}),
                    format!("{who} could not apply the change as sent (its state differs)"),
                )
            }
            RollbackCode::VerifyTimeout => (
                json!({"reason": "no `applied` within the verify timeout", "sessions": failure.sessions}),
                format!("{who} did not confirm the change in time"),
            ),
            _ => (
                json!({"reason": "a participant disconnected before answering `applied`", "session_id": failure.sessions.first()}),
                format!("{who} disconnected while applying the change"),
            ),
        };
        self.rollback(batch_id, failure.code, detail, reason).await;
    }

    /// Take the batch `batch_id` out of the batches in flight.
    fn take_inflight(&mut self, batch_id: &str) -> Option<Inflight> {
        let i = self.inflight.iter().position(|f| f.batch_id == batch_id)?;
        Some(self.inflight.remove(i))
    }

    async fn commit(&mut self, batch_id: &str) {
        let Some(f) = self.take_inflight(batch_id) else { return };
        let daemon = self.daemon.clone();
        let turn = daemon.mutation_turn().await;
        let commit = self.draft(
            &f.batch_id,
            Phase::Commit,
            f.uuids.clone(),
            Outcome::Ok,
            json!({"op": "sync", "path": f.path.as_str(), "participants": f.verification.participants().collect::<Vec<_>>()}),
        );
        let mut records = f.records.clone();
        match self.daemon.stores().wal.append(vec![commit]).await {
            Ok(mut r) => records.append(&mut r),
            Err(e) => {
                drop(turn);
                self.daemon.storage_failure_notice(&f.batch_id, &e.to_string());
                return;
            }
        }
        let commit_seq = records.last().map(|r| r.seq).unwrap_or(0);
        if let Err(e) = self.daemon.stores().apply_committed(&records) {
            drop(turn);
            self.daemon.storage_failure_notice(&f.batch_id, &e.to_string());
            return;
        }
        drop(turn);
        for u in &f.uuids {
            if let Some((c, k)) = f.origin_clients.get(u) {
                self.synced.insert(u.clone(), (f.seq, c.clone(), k.clone()));
            }
            self.not_synced.remove(u);
        }
        if self.exposed_seq.load(std::sync::atomic::Ordering::Relaxed) > f.seq {
            // A later seq reached an editor while this batch was in flight (docs/PROTOCOL.md §6.6).
            self.late_commits.push((commit_seq, f.uuids.clone()));
        }
        info!(batch_id = %f.batch_id, project_id = %self.project, uuids = ?f.uuids, seq = commit_seq, "batch committed");
        self.daemon.finalize_later(SYNC_SESSION.into(), self.project.clone(), f.batch_id.clone(), f.uuids.clone());
        self.result(&f, commit_seq, BatchOutcome::Committed, None, &BTreeMap::new(), "").await;
        // Conflicts: both editors hear of it; the loser is corrected when what it holds after
        // applying what it was sent differs from the winner's state.
        for c in &f.conflicts {
            let ev = Outbound::Conflict {
                uuid: c.uuid.clone(),
                winner: f.kinds.get(&c.winner).cloned().unwrap_or_default(),
                loser: f.kinds.get(&c.loser).cloned().unwrap_or_default(),
                op: c.op.to_string(),
                seq: f.seq,
            }
            .to_frame();
            for s in [&c.winner, &c.loser] {
                self.daemon.send_frames(s, vec![ev.clone()]).await;
            }
            self.conflicts += 1;
        }
        for (s, uuids) in &f.corrections {
            self.send_resync(s, uuids, "conflict: corrected to the winner's state").await;
        }
        self.publish_status();
    }

    /// Verification failed: ROLLBACK in the WAL, then `finalize` (docs/PROTOCOL.md §6.4): the
    /// origin of a person's edit keeps it (`kept_local`), everyone else who was sent the
    /// batch is re-sent the authoritative state, automation is reverted at its origin too.
    async fn rollback(&mut self, batch_id: &str, code: RollbackCode, detail: Value, reason: String) {
        let Some(f) = self.take_inflight(batch_id) else { return };
        let plan = plan_rollback(&f.changes, &f.sends, |s| {
            f.kinds.get(s).is_some_and(|k| ClientKind::parse(k).is_some_and(ClientKind::holds_scene))
                || self.daemon.session_info(s).is_some_and(|i| i.editor.holds_scene())
        });
        // `kept_by` names each keeping editor's session and kind, for the not-synced list
        // rebuilt at boot (crate::notsynced).
        let (kept_clients, kept_by) = {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut by = serde_json::Map::new();
            for (s, uuids) in &plan.kept_local {
                let client = self.daemon.session_info(s).map(|i| i.client_id).unwrap_or_default();
                by.insert(client.clone(), json!({"session_id": s, "client": f.kinds.get(s)}));
                for u in uuids {
                    m.entry(u.clone()).or_default().push(client.clone());
                }
            }
            (m, by)
        };
        let mut rb = self.draft(
            &f.batch_id,
            Phase::Rollback,
            f.uuids.clone(),
            Outcome::Error,
            json!({
                "op": "sync", "detail": detail, "ops": f.ops, "state_hashes": f.new_hashes,
                "kept_local": kept_clients, "kept_by": kept_by, "reason": reason,
            }),
        );
        rb.error_code = Some(code.as_str().to_string());
        let (seq, escalation) = match self.daemon.stores().wal.append(vec![rb]).await {
            Ok(r) => {
                let r = r.last().expect("one record");
                let esc = self.daemon.stores().governance.lock().unwrap().observe(&crate::stores::observed(r));
                (r.seq, esc)
            }
            Err(e) => {
                self.daemon.storage_failure_notice(&f.batch_id, &e.to_string());
                return;
            }
        };
        warn!(batch_id = %f.batch_id, project_id = %self.project, uuids = ?f.uuids, seq, error_code = code.as_str(), %reason, "batch rolled back; people's edits stay where they were made, the others are re-sent the authoritative state");
        self.rolled_back.push(crate::stores::RolledBack { seq, uuids: f.uuids.clone(), kept_local: kept_clients });
        for (s, uuids) in &plan.kept_local {
            let info = self.daemon.session_info(s);
            for u in uuids {
                self.not_synced.insert(
                    u.clone(),
                    NotSynced {
                        uuid: u.clone(),
                        session_id: s.clone(),
                        client: f.kinds.get(s).cloned().unwrap_or_default(),
                        client_id: info.as_ref().map(|i| i.client_id.clone()).unwrap_or_default(),
                        reason: reason.clone(),
                        seq,
                    },
                );
            }
        }
        self.publish_status();
        // The outcome first: an origin learns its change is resolved before any authoritative
        // state arrives.
        self.result(&f, seq, BatchOutcome::RolledBack, Some(code), &plan.kept_local, &reason).await;
        for (s, uuids) in &plan.resync {
            self.send_resync(s, uuids, code.as_str()).await;
        }
        self.escalate(escalation).await;
    }

    async fn result(
        &self,
        f: &Inflight,
        seq: u64,
        outcome: BatchOutcome,
        error_code: Option<RollbackCode>,
        kept_local: &BTreeMap<SessionId, Vec<String>>,
        reason: &str,
    ) {
        let mut targets: BTreeSet<&SessionId> = f.verification.participants().collect();
        targets.extend(f.sends.keys());
        targets.extend(f.origins.iter());
        self.expose(seq);
        for s in targets {
            let kept = kept_local.contains_key(s);
            let msg = Outbound::BatchResult {
                batch_id: f.batch_id.clone(),
                seq,
                outcome,
                uuids: f.uuids.clone(),
                error_code,
                kept_local: kept,
                reason: kept.then(|| reason.to_string()),
            }
            .to_frame();
            let ok = self.daemon.send_frames(s, vec![msg]).await;
            debug!(batch_id = %f.batch_id, session_id = %s, ok, outcome = outcome.as_str(), kept, "batch_result sent");
        }
    }

    /// STALE refusals of slow-path changes are conflicts the other editor won: a standalone
    /// WAL STEP (`conflict`), a log line and a `conflict` event to both editors.
    async fn stale_conflicts(&mut self, loser: &SessionInfo, stale: Vec<(String, &'static str, (String, String))>) {
        let seq = self.daemon.last_seq();
        let op_id = uuid::Uuid::new_v4().to_string();
        let drafts: Vec<RecordDraft> = stale
            .iter()
            .map(|(u, op, (_, winner))| {
                self.step(
                    &op_id,
                    u,
                    RegOp::Conflict {
                        uuid: u.clone(),
                        winner: winner.clone(),
                        loser: loser.editor.to_string(),
                        change_op: op.to_string(),
                    },
                )
            })
            .collect();
        if let Err(e) = self.daemon.stores().wal.append(drafts).await {
            self.daemon.storage_failure_notice(&op_id, &e.to_string());
            return;
        }
        for (u, op, (winner_client, winner)) in stale {
            warn!(project_id = %self.project, operation_id = %op_id, uuid = %u, winner = %winner, loser = %loser.editor, op, seq, "conflict: a stale structural change was refused; the other editor's change stands");
            let ev = Outbound::Conflict { uuid: u, winner, loser: loser.editor.to_string(), op: op.to_string(), seq }
                .to_frame();
            let mut targets = vec![loser.session_id.clone()];
            targets.extend(
                self.project_sessions()
                    .into_iter()
                    .filter(|s| s.client_id == winner_client && s.session_id != loser.session_id)
                    .map(|s| s.session_id),
            );
            for s in targets {
                self.daemon.send_frames(&s, vec![ev.clone()]).await;
            }
            self.conflicts += 1;
        }
        self.publish_status();
    }

    /// (client_id, editor kind) of the change a STALE change lost to.
    fn stale_winner(&self, uuid: &str) -> (String, String) {
        if let Some((c, k)) = self.inflight_with(uuid).and_then(|f| f.origin_clients.get(uuid)) {
            return (c.clone(), k.clone());
        }
        self.synced.get(uuid).map(|(_, c, k)| (c.clone(), k.clone())).unwrap_or_default()
    }

    /// A seq goes to an editor (fences, `batch_result`): see `late_commits`.
    fn expose(&self, seq: u64) {
        self.exposed_seq.fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
    }

    /// Does the editor of session `s` keep `u` as a person's edit (not synced)? By
    /// `client_id`, which outlives sessions and daemon restarts.
    fn kept_by(&self, s: &str, u: &str) -> bool {
        self.not_synced.get(u).is_some_and(|n| self.daemon.session_info(s).is_some_and(|i| i.client_id == n.client_id))
    }

    fn publish_status(&self) {
        let snapshot =
            ProjectSync { not_synced: self.not_synced.values().cloned().collect(), conflicts: self.conflicts };
        self.status.lock().unwrap().insert(self.project.clone(), snapshot);
    }

    /// The authoritative state of `uuids` as ops: `create` with the full state, or `delete`.
    /// `None` after a storage read failure (the daemon stops; nothing is sent — a read
    /// failure must never reach an editor as `delete`).
    fn authoritative_ops(&self, uuids: &[String]) -> Option<Vec<(String, ChangeOp)>> {
        let mut ops = Vec::with_capacity(uuids.len());
        for u in uuids {
            match self.current_state(u) {
                Ok(Some(st)) => ops.push((u.clone(), ChangeOp::Create(st))),
                Ok(None) => ops.push((u.clone(), ChangeOp::Delete)),
                Err(why) => {
                    self.daemon.storage_failure_notice("sync", &why);
                    return None;
                }
            }
        }
        Some(ops)
    }

    /// Send `uuids`' authoritative state to one session as a `resync` batch.
    async fn send_resync(&mut self, session_id: &str, uuids: &[String], why: &str) {
        if uuids.iter().any(|u| self.inflight_with(u).is_some()) {
            // The authoritative state of these uuids is about to change: send it once the
            // batch in flight is committed or rolled back, never the state before it.
            self.deferred.push(SyncEvent::ResyncUuids { session_id: session_id.to_string(), uuids: uuids.to_vec() });
            return;
        }
        let Some(s) = self.daemon.session_info(session_id) else { return };
        let Some(ops) = self.authoritative_ops(uuids) else { return };
        self.send_resync_ops(&s, ops, why, None, 0).await;
    }

    async fn send_resync_ops(
        &mut self,
        s: &SessionInfo,
        ops: Vec<(String, ChangeOp)>,
        why: &str,
        request_id: Option<&str>,
        attempts: u32,
    ) -> Option<String> {
        if ops.is_empty() {
            return None;
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        let seq = self.daemon.last_seq();
        debug!(session_id = %s.session_id, count = ops.len(), why, "resync");
        if self.send_batch(s, &batch_id, seq, PathKind::Resync, &ops, request_id).await {
            let expected = ops
                .iter()
                .map(|(u, op)| {
                    (
                        u.clone(),
                        match op {
                            ChangeOp::Create(st) => Some(st.hash()),
                            _ => None,
                        },
                    )
                })
                .collect();
            self.resyncs.insert(batch_id.clone(), ResyncCheck { session_id: s.session_id.clone(), expected, attempts });
            return Some(batch_id);
        }
        None
    }

    /// Replay for a (re)connecting editor: what changed after `last_seq` (§6.6). `answer`:
    /// the `resync` request being answered (always answered, with its `request_id`).
    async fn replay(&mut self, session_id: &str, last_seq: u64, answer: Option<Option<String>>) {
        let Some(s) = self.daemon.session_info(session_id) else { return };
        if !s.editor.holds_scene() {
            return;
        }
        let reg = &self.daemon.stores().registry;
        // Uuids of rollbacks it may have applied provisionally — except those this client
        // kept as a person's edit (never overwritten where they were made).
        let rolled: HashSet<String> = self
            .rolled_back
            .iter()
            .filter(|r| r.seq > last_seq)
            .flat_map(|r| {
                r.uuids
                    .iter()
                    .filter(|u| !r.kept_local.get(*u).is_some_and(|c| c.contains(&s.client_id)))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        // Batches that committed after `last_seq` with STEPs before it: the editor may have
        // learnt a later seq from a batch pipelined beside them (docs/PROTOCOL.md §6.6).
        let rolled: HashSet<String> = rolled
            .into_iter()
            .chain(self.late_commits.iter().filter(|(c, _)| *c > last_seq).flat_map(|(_, u)| u.iter().cloned()))
            .collect();
        // An editor that was away since before the WAL's compaction anchor gets every live
        // object, not a delta (docs/WAL.md §11): never a silent gap.
        let anchor = self.daemon.stores().anchor_seq();
        let full = last_seq > 0 && last_seq < anchor;
        if full {
            info!(session_id, last_seq, anchor, "replay: last_seq is before the WAL's compaction anchor; full resync");
        }
        let request_id = answer.as_ref().and_then(|r| r.as_deref());
        let ops: Vec<(String, ChangeOp)> = match replay_ops(reg, &self.project, last_seq, full, &rolled) {
            // Never over a person's edit this editor kept (§6.6): it re-sends it itself.
            Ok(ops) => ops.into_iter().filter(|(u, _)| !self.kept_by(session_id, u)).collect(),
            Err(why) => {
                // Never a partial or empty replay (an editor would take it as up to date):
                // the request is answered STORAGE_FAILED and the daemon stops.
                let frame = self.daemon.storage_failure_frame(request_id.unwrap_or(""), "replay", why);
                if answer.is_some() {
                    self.daemon.send_frames(session_id, vec![frame]).await;
                }
                return;
            }
        };
        let batch_id = if ops.is_empty() && answer.is_some() {
            // Nothing missed: an empty resync batch tells the editor it is up to date.
            let id = uuid::Uuid::new_v4().to_string();
            self.send_batch(&s, &id, self.daemon.last_seq(), PathKind::Resync, &[], request_id).await;
            None
        } else {
            self.send_resync_ops(&s, ops, "replay", request_id, 0).await
        };
        if let Some(slot) = self.diverged.get_mut(session_id) {
            *slot = batch_id;
            if slot.is_none() {
                self.diverged.remove(session_id); // nothing to replay: coherent again
            }
        }
    }

    /// Fenced batch to one session; false when it could not be delivered.
    async fn send_batch(
        &self,
        s: &SessionInfo,
        batch_id: &str,
        seq: u64,
        path: PathKind,
        ops: &[(String, ChangeOp)],
        request_id: Option<&str>,
    ) -> bool {
        self.expose(seq);
        let mut frames = Vec::with_capacity(ops.len() + 2);
        frames.push(
            Outbound::BatchBegin {
                batch_id: batch_id.into(),
                seq,
                path,
                count: ops.len() as u32,
                request_id: request_id.map(str::to_string),
            }
            .to_frame(),
        );
        for (uuid, op) in ops {
            let change = change_to_wire(uuid, op, s.unit_scale);
            let json = serde_json::to_vec(&json!({"type": "apply", "batch_id": batch_id, "change": change}))
                .expect("apply serializes");
            let attachment = match op.mesh_hash() {
                Some(h) => match self.daemon.stores().get_blob(h) {
                    Some(b) => Bytes::from(b),
                    None => {
                        error!(mesh_hash = h, uuid = %uuid, "mesh blob missing; sent without mesh");
                        Bytes::new()
                    }
                },
                None => Bytes::new(),
            };
            frames.push(Frame::new(json, attachment));
        }
        frames.push(
            Outbound::BatchEnd { batch_id: batch_id.into(), seq, request_id: request_id.map(str::to_string) }
                .to_frame(),
        );
        self.daemon.send_frames(&s.session_id, frames).await
    }
}

/// What admission found out about one change: the mesh to store once it is accepted, and
/// the uuid's registry entry (the gate reads the current state from it).
struct Admitted {
    blob: Option<String>,
    entry: Option<Entry>,
}

/// The committed state held by a registry entry (`None`: no state, or tombstoned). A stored
/// state that does not parse is an error, never "absent".
fn state_of(uuid: &str, entry: Option<Entry>) -> Result<Option<ObjectState>, String> {
    let Some(e) = entry else { return Ok(None) };
    match e.state {
        Some(v) if e.status != Status::Tombstoned => serde_json::from_value(v)
            .map(Some)
            .map_err(|err| format!("the registry's state of {uuid} is unreadable: {err}")),
        _ => Ok(None),
    }
}

/// A `live` frame (§6.3): one change, lengths in the receiver's units.
fn live_frame(uuid: &str, op: &ChangeOp, origin: ClientKind, unit_scale: f64) -> Frame {
    Outbound::Live { change: change_to_wire(uuid, op, unit_scale), origin }.to_frame()
}

/// What a replay after `last_seq` sends (docs/PROTOCOL.md §6.6): the live state of every
/// uuid changed after it or rolled back since (`rolled`) — of every live uuid when `full`
/// (`last_seq` is before the WAL's compaction anchor, docs/WAL.md §11) — parents first, then
/// `delete` for uuids tombstoned after it. Any read failure is an error.
fn replay_ops(
    reg: &vibesync_registry::Registry,
    project: &str,
    last_seq: u64,
    full: bool,
    rolled: &HashSet<String>,
) -> Result<Vec<(String, ChangeOp)>, String> {
    let read = |e: vibesync_registry::RegistryError| format!("registry read failed: {e}");
    let mut ops: Vec<(String, ChangeOp)> = Vec::new();
    for e in reg.live_entries(Some(project)).map_err(read)? {
        // Quarantined uuids are not replayed until a person releases them.
        if e.status != Status::Live || !(full || e.updated_seq > last_seq || rolled.contains(&e.uuid)) {
            continue;
        }
        if let Some(v) = e.state {
            let st = serde_json::from_value::<ObjectState>(v)
                .map_err(|err| format!("the registry's state of {} is unreadable: {err}", e.uuid))?;
            ops.push((e.uuid, ChangeOp::Create(st)));
        }
    }
    // Parents before children, so an editor can attach each object as it arrives.
    order_parents_first(&mut ops);
    if last_seq > 0 {
        let mut seen = HashSet::new();
        for e in reg.archived_entries(Some(project)).map_err(read)? {
            if e.tombstone_seq.unwrap_or(0) > last_seq
                && e.state.is_some()
                && seen.insert(e.uuid.clone())
                && reg.lookup(project, &e.uuid).map_err(read)?.is_none()
            {
                ops.push((e.uuid, ChangeOp::Delete));
            }
        }
    }
    Ok(ops)
}

/// "Unity", "Blender and Unity": editor kinds for people.
fn join_kinds(kinds: &[String]) -> String {
    let mut names: Vec<String> = kinds
        .iter()
        .map(|k| {
            let mut c = k.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_else(|| "an editor".into())
        })
        .collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 => "an editor".into(),
        1 => names.remove(0),
        _ => {
            let last = names.pop().unwrap_or_default();
            format!("{} and {last}", names.join(", "))
        }
    }
}

/// The last state of each uuid of a batch, in first-appearance order.
fn final_states(
    kept: &[Queued<SessionInfo>],
    states: &HashMap<String, Option<ObjectState>>,
) -> Vec<(String, Option<ObjectState>)> {
    let mut seen = HashSet::new();
    kept.iter()
        .filter(|q| seen.insert(q.change.uuid.clone()))
        .map(|q| (q.change.uuid.clone(), states.get(&q.change.uuid).cloned().flatten()))
        .collect()
}

fn order_parents_first(ops: &mut Vec<(String, ChangeOp)>) {
    let index: HashMap<String, usize> = ops.iter().enumerate().map(|(i, (u, _))| (u.clone(), i)).collect();
    let depth = |mut i: usize| {
        let mut d = 0;
        while let ChangeOp::Create(ObjectState { parent: Some(p), .. }) = &ops[i].1 {
            match index.get(p) {
                Some(&j) if d < 64 => {
                    i = j;
                    d += 1;
                }
                _ => break,
            }
        }
        d
    };
    let depths: Vec<usize> = (0..ops.len()).map(depth).collect();
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| depths[i]);
    let taken: Vec<(String, ChangeOp)> = order.into_iter().map(|i| ops[i].clone()).collect();
    *ops = taken;
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}
