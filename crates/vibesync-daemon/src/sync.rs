//! Live sync, the I/O part: one actor task per project turns windows of validated changes
//! into WAL transactions, forwards them to the other editors, verifies their state hashes and
//! commits or rolls back (docs/PROTOCOL.md §6). The decisions themselves (validation,
//! coalescing, state transitions, paths) are pure functions in `vibesync_engine::sync`.
//!
//! One batch per project is in flight at a time; the next window waits for it. All state of a
//! project lives in its actor, so no locks are held across awaits except the daemon-wide
//! mutation turn around COMMIT + registry apply (the registry applies in COMMIT order).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use vibesync_engine::governance::{Decision, Escalation, IdleTracker, Observed};
use vibesync_engine::sync::{
    apply_change, batch_path, change_to_wire, parse_change, Change, ChangeOp, ObjectState, Path, Queued, Window,
};
use vibesync_protocol::mesh::Mesh;
use vibesync_protocol::message::ItemResult;
use vibesync_protocol::{Frame, Outbound};
use vibesync_registry::Status;
use vibesync_wal::{Phase, Record, RecordDraft};

use crate::core::{Daemon, SessionInfo};
use crate::txn::Txn;

type SessionId = String;

/// `session_id` of the WAL records of sync batches (boot recovery tells them apart by it).
pub const SYNC_SESSION: &str = "sync";

/// Messages to a project's actor.
pub enum SyncEvent {
    Change {
        session: Box<SessionInfo>,
        base_seq: u64,
        changes: Vec<Value>,
        attachment: Bytes,
        request_id: String,
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
    /// uuids tombstoned through a `tombstone` request: tell the other editors.
    Tombstoned {
        origin: SessionId,
        uuids: Vec<String>,
        seq: u64,
    },
}

/// Routes events to per-project actors, starting them on first use.
#[derive(Default)]
pub struct SyncHub {
    actors: Mutex<HashMap<String, mpsc::UnboundedSender<SyncEvent>>>,
}

impl SyncHub {
    pub fn send(&self, daemon: &Arc<Daemon>, project_id: &str, ev: SyncEvent) {
        let mut actors = self.actors.lock().unwrap();
        let tx = actors.entry(project_id.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let actor = Actor::new(daemon.clone(), project_id.to_string());
            tokio::spawn(actor.run(rx));
            tx
        });
        if let Err(e) = tx.send(ev) {
            // The actor ended (it only ends when the hub is dropped); start a fresh one.
            let (tx2, rx) = mpsc::unbounded_channel();
            tokio::spawn(Actor::new(daemon.clone(), project_id.to_string()).run(rx));
            let _ = tx2.send(e.0);
            *tx = tx2;
        }
    }
}

struct Inflight {
    batch_id: String,
    path: Path,
    seq: u64,
    uuids: Vec<String>,
    records: Vec<Record>,
    /// participant → uuid → expected hash (None: the uuid was deleted).
    expected: HashMap<SessionId, HashMap<String, Option<String>>>,
    answered: HashSet<SessionId>,
    origins: HashSet<SessionId>,
    origin_clients: HashMap<String, String>,
    deadline: Instant,
    ops: Vec<String>,
    new_hashes: HashMap<String, String>,
}

struct ResyncCheck {
    session_id: SessionId,
    expected: HashMap<String, Option<String>>,
    attempts: u32,
}

struct Actor {
    daemon: Arc<Daemon>,
    project: String,
    window: Window<SessionInfo>,
    inflight: Option<Inflight>,
    /// uuid → (seq of its last committed sync change, client_id of the editor that made it).
    synced: HashMap<String, (u64, String)>,
    /// (ROLLBACK seq, uuids) for replay to editors that reconnect.
    rolled_back: Vec<(u64, Vec<String>)>,
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
}

impl Actor {
    fn new(daemon: Arc<Daemon>, project: String) -> Actor {
        let window_ms = daemon.config().sync.batch_window_ms;
        Actor {
            rolled_back: daemon.stores().rolled_back_since_boot(&project),
            daemon,
            project,
            window: Window::new(window_ms),
            inflight: None,
            synced: HashMap::new(),
            resyncs: HashMap::new(),
            deferred: Vec::new(),
            epoch: Instant::now(),
            idle: IdleTracker::default(),
            held: Vec::new(),
            degraded: HashMap::new(),
            diverged: HashMap::new(),
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

    fn next_wake(&self) -> Option<Instant> {
        let mut at: Option<Instant> = self.inflight.as_ref().map(|f| f.deadline);
        if !self.held.is_empty() {
            let idle_ms = self.daemon.config().governance.user_idle_ms;
            let release = self.idle.automation_allowed_at(self.now_ms(), idle_ms).unwrap_or(self.now_ms());
            let w = self.epoch + Duration::from_millis(release);
            at = Some(at.map_or(w, |a| a.min(w)));
        }
        if self.inflight.is_none() {
            if let Some(d) = self.window.deadline() {
                let w = self.epoch + Duration::from_millis(d);
                at = Some(at.map_or(w, |a| a.min(w)));
            }
        }
        at
    }

    async fn on_tick(&mut self) {
        if let Some(f) = &self.inflight {
            if Instant::now() >= f.deadline {
                let missing: Vec<String> = f.expected.keys().filter(|s| !f.answered.contains(*s)).cloned().collect();
                self.rollback(
                    "VERIFY_TIMEOUT",
                    json!({"reason": "no `applied` within the verify timeout", "sessions": missing}),
                )
                .await;
            }
        }
        if !self.held.is_empty() {
            let idle_ms = self.daemon.config().governance.user_idle_ms;
            if self.idle.automation_allowed_at(self.now_ms(), idle_ms).is_none() {
                let now = self.now_ms();
                info!(changes = self.held.len(), "people idle: running held automation changes");
                for q in std::mem::take(&mut self.held) {
                    self.window.push(now, q);
                }
            }
        }
        if self.inflight.is_none() && self.window.is_due(self.now_ms()) {
            self.start_batch().await;
        }
        if self.inflight.is_none() && !self.deferred.is_empty() {
            for ev in std::mem::take(&mut self.deferred) {
                Box::pin(self.on_event(ev)).await;
            }
        }
    }

    async fn on_event(&mut self, ev: SyncEvent) {
        match ev {
            SyncEvent::Change { session, base_seq, changes, attachment, request_id, reply } => {
                let (results, stale) = self.enqueue(&session, base_seq, changes, attachment).await;
                // The ack first, then the corrective resync for STALE changes: an editor learns
                // its change was refused before the state that replaces it arrives (§6.1, §6.6).
                let ack = Outbound::Ack { request_id, seq: self.daemon.last_seq(), results }.to_frame();
                self.daemon.send_frames(&session.session_id, vec![ack]).await;
                if !stale.is_empty() {
                    self.send_resync(&session.session_id, &stale, "stale change").await;
                }
                let _ = reply.send(());
            }
            SyncEvent::Applied { session_id, batch_id, hashes, held } => {
                self.on_applied(session_id, batch_id, hashes, held).await
            }
            ev @ (SyncEvent::Joined { .. } | SyncEvent::Resync { .. }) if self.inflight.is_some() => {
                self.deferred.push(ev)
            }
            SyncEvent::ResyncUuids { session_id, uuids } => self.send_resync(&session_id, &uuids, "deferred").await,
            SyncEvent::UserActivity { session_id, active } => {
                let now = self.now_ms();
                self.idle.activity(&session_id, active, now);
            }
            SyncEvent::Joined { session_id, last_seq } => self.replay(&session_id, last_seq, false).await,
            SyncEvent::Resync { session_id, since_seq } => self.replay(&session_id, since_seq, true).await,
            SyncEvent::Left { session_id } => {
                self.resyncs.retain(|_, r| r.session_id != session_id);
                self.idle.left(&session_id);
                self.diverged.remove(&session_id);
                let mut all_answered = false;
                if let Some(f) = &mut self.inflight {
                    if f.expected.remove(&session_id).is_some() {
                        // A departed editor catches up by replay when it reconnects.
                        info!(batch_id = %f.batch_id, session_id = %session_id, "participant left; it will be resynced on reconnect");
                        all_answered = f.expected.keys().all(|s| f.answered.contains(s));
                    }
                }
                if all_answered {
                    self.commit().await;
                }
            }
            SyncEvent::Tombstoned { origin, uuids, seq } => {
                let ops: Vec<(String, ChangeOp)> = uuids.into_iter().map(|u| (u, ChangeOp::Delete)).collect();
                for s in self.project_sessions() {
                    if s.session_id != origin {
                        self.send_batch(&s, &uuid::Uuid::new_v4().to_string(), seq, "slow", &ops).await;
                    }
                }
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
    ) -> (Vec<ItemResult>, Vec<String>) {
        let mut results = Vec::with_capacity(changes.len());
        let mut stale: Vec<String> = Vec::new();
        let last_seq = self.daemon.last_seq();
        if base_seq > last_seq && !self.diverged.contains_key(&session.session_id) {
            warn!(session_id = %session.session_id, base_seq, last_seq, "sequence divergence: the editor followed another history; blocking its changes and replaying everything");
            self.diverged.insert(session.session_id.clone(), None);
            // Always answered: the full replay, or an empty `resync` batch carrying the
            // daemon's seq when there is nothing to replay (the refusal promises one).
            self.replay(&session.session_id, 0, true).await;
        }
        let diverged = self.diverged.contains_key(&session.session_id).then(|| {
            format!("sequence divergence: your base_seq {base_seq} is beyond this daemon's last seq {last_seq}; apply the full replay you were sent, then change again")
        });
        let automation_waits = session.editor == "agent"
            && self.idle.automation_allowed_at(self.now_ms(), self.daemon.config().governance.user_idle_ms).is_some();
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
                    results.push(ItemResult::error(shown, e.code.as_str(), e.message));
                    continue;
                }
            };

            let blob = match self.admit(session, base_seq, &change, &attachment, &at) {
                Ok(blob) => blob,
                Err((code, msg)) => {
                    if code == "STALE" {
                        stale.push(change.uuid.clone());
                    }
                    results.push(ItemResult::error(&change.uuid, code, msg));
                    continue;
                }
            };
            if let Some(msg) = &diverged {
                results.push(ItemResult::error(&change.uuid, "BLOCKED", format!("{at}: {msg}")));
                continue;
            }
            match self.consult_gate(&change) {
                Decision::Block(reason) => {
                    info!(uuid = %change.uuid, op = change.op.name(), reason = %reason, "gate: blocked");
                    results.push(ItemResult::error(&change.uuid, "BLOCKED", format!("{at}: {reason}")));
                    continue;
                }
                Decision::Degrade(reasons) => {
                    info!(uuid = %change.uuid, op = change.op.name(), ?reasons, "gate: degraded to the slow path");
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
                    results.push(ItemResult::error(&change.uuid, "STORAGE_FAILED", format!("{at}: {e}")));
                    continue;
                }
            }
            if automation_waits {
                results.push(ItemResult::ok(&change.uuid, "held"));
                self.held.push(Queued { origin: session.clone(), change });
                continue;
            }
            results.push(ItemResult::ok(&change.uuid, "queued"));
            self.window.push(self.now_ms(), Queued { origin: session.clone(), change });
        }
        (results, stale)
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
    ) -> Result<Option<String>, (&'static str, String)> {
        let entry = self.daemon.stores().registry.lookup(&self.project, &change.uuid).ok().flatten();
        if entry.as_ref().is_some_and(|e| e.status == Status::Quarantined) {
            return Err((
                "QUARANTINED",
                format!("{at}: uuid is quarantined; release it with `vibesync quarantine release {}`", change.uuid),
            ));
        }
        let known = entry.as_ref().is_some_and(|e| e.state.is_some() && e.status == Status::Live)
            || self.window.pending_uuids().any(|u| u == change.uuid)
            || self.inflight.as_ref().is_some_and(|f| f.uuids.contains(&change.uuid));
        if !known && !matches!(change.op, ChangeOp::Create(_)) {
            return Err(("NOT_FOUND", format!("{at}: no synced state for {}; send `create` first", change.uuid)));
        }
        if change.op.path() == Path::Slow {
            if let Some(f) = self.inflight.as_ref().filter(|f| f.uuids.contains(&change.uuid)) {
                if f.origin_clients.get(&change.uuid).is_some_and(|c| c != &session.client_id) {
                    return Err((
                        "STALE",
                        format!("{at}: {} is being changed by another editor (batch seq {}); you are sent its current state — apply it, then retry", change.uuid, f.seq),
                    ));
                }
            }
            if let Some((seq, client)) = self.synced.get(&change.uuid) {
                if *seq > base_seq && client != &session.client_id {
                    return Err(("STALE", format!("{at}: {} changed at seq {seq} after your base_seq {base_seq}; you are sent its current state — apply it, then retry", change.uuid)));
                }
            }
        }
        if let ChangeOp::Reparent(Some(p)) | ChangeOp::Create(ObjectState { parent: Some(p), .. }) = &change.op {
            // A cycle built across batches (A under B now, B under A later) is refused per
            // item: the registry holds the committed parents (docs/PROTOCOL.md §6.2).
            let parent_of = |u: &str| self.current_state(u).and_then(|s| s.parent);
            if let Some(chain) = vibesync_engine::sync::parent_cycle(&change.uuid, p, parent_of) {
                return Err((
                    "INVALID_FIELD",
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
                    return Err(("INVALID_FIELD", format!("{at}.mesh_hash: attachment hashes to {actual}")));
                }
                if let Err(e) = Mesh::decode(attachment) {
                    return Err(("INVALID_FIELD", format!("{at}: mesh attachment: {e}")));
                }
                return Ok(Some(hash.to_string()));
            } else if !self.daemon.stores().has_blob(hash) {
                return Err((
                    "INVALID_FIELD",
                    format!("{at}.mesh_hash: unknown mesh; send it as this frame's attachment"),
                ));
            }
        }
        Ok(None)
    }

    /// L2: consult the failure index before queuing a mutation.
    fn consult_gate(&self, change: &Change) -> Decision {
        let next_hash =
            apply_change(self.current_state(&change.uuid).as_ref(), &change.op).ok().flatten().map(|s| s.hash());
        self.daemon.stores().governance.lock().unwrap().gate(&change.uuid, change.op.name(), next_hash.as_deref())
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
        self.daemon.sessions_of(&self.project).into_iter().filter(|s| holds_scene(&s.editor)).collect()
    }

    fn current_state(&self, uuid: &str) -> Option<ObjectState> {
        let e = self.daemon.stores().registry.lookup(&self.project, uuid).ok().flatten()?;
        if e.status == Status::Tombstoned {
            return None;
        }
        serde_json::from_value(e.state?).ok()
    }

    /// Close the window: compute new states, write BEGIN/STEPs(/PROVISIONAL), forward.
    async fn start_batch(&mut self) {
        let queued = self.window.take();
        if queued.is_empty() {
            return;
        }
        let mut states: HashMap<String, Option<ObjectState>> = HashMap::new();
        let mut kept: Vec<Queued<SessionInfo>> = Vec::new();
        let mut dropped: HashMap<SessionId, Vec<String>> = HashMap::new();
        for q in queued {
            let cur = match states.get(&q.change.uuid) {
                Some(s) => s.clone(),
                None => self.current_state(&q.change.uuid),
            };
            match apply_change(cur.as_ref(), &q.change.op) {
                Ok(next) => {
                    if next.as_ref().map(|s| s.hash()) == cur.as_ref().map(|s| s.hash()) && cur.is_some() {
                        debug!(uuid = %q.change.uuid, op = q.change.op.name(), "no-op change dropped (echo or repeat)");
                        dropped.entry(q.origin.session_id.clone()).or_default().push(q.change.uuid.clone());
                        continue;
                    }
                    states.insert(q.change.uuid.clone(), next);
                    kept.push(q);
                }
                Err(e) => {
                    warn!(uuid = %q.change.uuid, "change dropped at batch time: {}", e.message);
                    dropped.entry(q.origin.session_id.clone()).or_default().push(q.change.uuid.clone());
                }
            }
        }
        // Origins hear about every change: dropped ones (no-op or no longer applicable) too.
        for (session_id, uuids) in dropped {
            let msg = Outbound::BatchResult {
                batch_id: uuid::Uuid::new_v4().to_string(),
                seq: self.daemon.last_seq(),
                outcome: "dropped".into(),
                uuids: dedup(uuids),
                error_code: None,
            };
            self.daemon.send_frames(&session_id, vec![msg.to_frame()]).await;
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
        let origins: HashSet<SessionId> = kept.iter().map(|q| q.origin.session_id.clone()).collect();
        let origin_clients: HashMap<String, String> =
            kept.iter().map(|q| (q.change.uuid.clone(), q.origin.client_id.clone())).collect();

        let mut drafts = vec![self.draft(
            &batch_id,
            Phase::Begin,
            uuids.clone(),
            "pending",
            json!({
                "op": "sync", "path": path.as_str(), "changes": kept.len(), "ops": ops,
                "origins": origins.iter().collect::<Vec<_>>(),
                // Who made the batch, for `vibesync history` (restore.rs).
                "origin_editors": kept.iter().map(|q| (q.origin.session_id.to_string(), q.origin.editor.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                "gate": if gate.is_empty() { json!({"decision": "proceed"}) } else { Value::Object(gate) },
            }),
        )];
        for (uuid, state) in final_states(&kept, &states) {
            let registered = self
                .daemon
                .stores()
                .registry
                .lookup(&self.project, &uuid)
                .ok()
                .flatten()
                .is_some_and(|e| e.status != Status::Tombstoned);
            match state {
                Some(s) => {
                    if !registered {
                        drafts.push(self.draft(
                            &batch_id,
                            Phase::Step,
                            vec![uuid.clone()],
                            "ok",
                            json!({
                                "op": "register", "uuid": uuid, "kind": s.kind, "name": s.name,
                            }),
                        ));
                    }
                    drafts.push(self.draft(
                        &batch_id,
                        Phase::Step,
                        vec![uuid.clone()],
                        "ok",
                        json!({
                            "op": "state", "uuid": uuid, "state": s.to_value(), "state_hash": s.hash(),
                        }),
                    ));
                }
                None => {
                    if registered {
                        drafts.push(self.draft(
                            &batch_id,
                            Phase::Step,
                            vec![uuid.clone()],
                            "ok",
                            json!({"op": "tombstone", "uuid": uuid}),
                        ));
                    }
                }
            }
        }
        if path == Path::Fast {
            drafts.push(self.draft(&batch_id, Phase::Provisional, uuids.clone(), "pending", json!({"op": "sync"})));
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
        info!(batch_id = %batch_id, uuids = ?uuids, path = path.as_str(), seq, changes = kept.len(), "batch forwarded");

        let mut expected: HashMap<SessionId, HashMap<String, Option<String>>> = HashMap::new();
        for s in self.project_sessions() {
            let ops: Vec<(String, ChangeOp)> = kept
                .iter()
                .filter(|q| q.origin.session_id != s.session_id)
                .map(|q| (q.change.uuid.clone(), q.change.op.clone()))
                .collect();
            if ops.is_empty() {
                continue;
            }
            if !self.send_batch(&s, &batch_id, seq, path.as_str(), &ops).await {
                continue; // could not reach it: it will be resynced when it reconnects
            }
            let exp =
                ops.iter().map(|(u, _)| (u.clone(), states.get(u).cloned().flatten().map(|st| st.hash()))).collect();
            expected.insert(s.session_id.clone(), exp);
        }
        let timeout = Duration::from_millis(self.daemon.config().sync.verify_timeout_ms);
        self.inflight = Some(Inflight {
            batch_id,
            path,
            seq,
            uuids,
            records,
            expected,
            answered: HashSet::new(),
            origins,
            origin_clients,
            deadline: Instant::now() + timeout,
            ops: ops.clone(),
            new_hashes: states.iter().filter_map(|(u, s)| s.as_ref().map(|s| (u.clone(), s.hash()))).collect(),
        });
        if self.inflight.as_ref().is_some_and(|f| f.expected.is_empty()) {
            self.commit().await; // nobody else is connected: nothing to verify
        }
    }

    fn draft(&self, batch_id: &str, phase: Phase, uuids: Vec<String>, outcome: &str, payload: Value) -> RecordDraft {
        Txn { session_id: SYNC_SESSION, operation_id: batch_id, project_id: &self.project }
            .draft(phase, uuids, outcome, payload)
    }

    async fn on_applied(
        &mut self,
        session_id: SessionId,
        batch_id: String,
        hashes: BTreeMap<String, String>,
        held: bool,
    ) {
        if let Some(check) = self.resyncs.get_mut(&batch_id) {
            let bad = mismatches(&check.expected, &hashes);
            if bad.is_empty() && self.diverged.get(&session_id).is_some_and(|b| b.as_deref() == Some(batch_id.as_str()))
            {
                info!(session_id = %session_id, "diverged session acknowledged the full replay; its changes flow again");
                self.diverged.remove(&session_id);
            }
            if bad.is_empty() || held {
                self.resyncs.remove(&batch_id);
            } else if check.attempts < 1 {
                warn!(batch_id = %batch_id, session_id = %session_id, uuids = ?bad, "resync not matched; re-sending once");
                check.attempts += 1;
                let sid = check.session_id.clone();
                self.resyncs.remove(&batch_id);
                self.send_resync(&sid, &bad, "resync mismatch").await;
            } else {
                error!(batch_id = %batch_id, session_id = %session_id, uuids = ?bad, "editor does not match the authoritative state after two resyncs; giving up on these uuids until they change");
                self.resyncs.remove(&batch_id);
            }
            return;
        }
        let Some(f) = &mut self.inflight else { return };
        if f.batch_id != batch_id {
            return;
        }
        let Some(exp) = f.expected.get(&session_id) else { return };
        if held {
            // The editor holds the batch (e.g. Unity Play Mode): it is not a participant any
            // more and will ask for a resync when it can apply again.
            info!(batch_id = %batch_id, session_id = %session_id, "participant holds the batch; excluded from verification");
            f.expected.remove(&session_id);
        } else {
            let bad = mismatches(exp, &hashes);
            if !bad.is_empty() {
                warn!(batch_id = %batch_id, session_id = %session_id, uuids = ?bad, "state hash mismatch");
                self.rollback("VERIFY_MISMATCH", json!({"session_id": session_id, "uuids": bad})).await;
                return;
            }
            f.answered.insert(session_id);
        }
        if f.expected.keys().all(|s| f.answered.contains(s)) {
            self.commit().await;
        }
    }

    async fn commit(&mut self) {
        let Some(f) = self.inflight.take() else { return };
        let daemon = self.daemon.clone();
        let turn = daemon.mutation_turn().await;
        let commit = self.draft(
            &f.batch_id,
            Phase::Commit,
            f.uuids.clone(),
            "ok",
            json!({"op": "sync", "path": f.path.as_str(), "participants": f.expected.keys().collect::<Vec<_>>()}),
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
            if let Some(c) = f.origin_clients.get(u) {
                self.synced.insert(u.clone(), (f.seq, c.clone()));
            }
        }
        info!(batch_id = %f.batch_id, uuids = ?f.uuids, seq = commit_seq, "batch committed");
        self.daemon.finalize_later(SYNC_SESSION.into(), self.project.clone(), f.batch_id.clone(), f.uuids.clone());
        self.result(&f, commit_seq, "committed", None).await;
    }

    async fn rollback(&mut self, code: &str, detail: Value) {
        let Some(f) = self.inflight.take() else { return };
        let mut rb = self.draft(
            &f.batch_id,
            Phase::Rollback,
            f.uuids.clone(),
            "error",
            json!({
                "op": "sync", "detail": detail, "ops": f.ops, "state_hashes": f.new_hashes,
            }),
        );
        rb.error_code = Some(code.to_string());
        let (seq, escalation) = match self.daemon.stores().wal.append(vec![rb]).await {
            Ok(r) => {
                let r = r.last().expect("one record");
                let esc = self.daemon.stores().governance.lock().unwrap().observe(&Observed {
                    seq: r.seq,
                    phase: r.phase.as_str(),
                    uuids: &r.uuids,
                    error_code: r.error_code.as_deref(),
                    payload: &r.payload,
                });
                (r.seq, esc)
            }
            Err(e) => {
                self.daemon.storage_failure_notice(&f.batch_id, &e.to_string());
                return;
            }
        };
        warn!(batch_id = %f.batch_id, uuids = ?f.uuids, seq, error_code = code, "batch rolled back; re-sending the authoritative state");
        self.rolled_back.push((seq, f.uuids.clone()));
        // The outcome first: an origin learns its change is resolved before the authoritative
        // state arrives, so it applies that state instead of guarding its own edit from it.
        self.result(&f, seq, "rolled_back", Some(code.to_string())).await;
        let mut targets: Vec<SessionId> = f.expected.keys().cloned().collect();
        targets.extend(f.origins.iter().cloned());
        for s in dedup(targets) {
            self.send_resync(&s, &f.uuids, code).await;
        }
        self.escalate(escalation).await;
    }

    async fn result(&self, f: &Inflight, seq: u64, outcome: &str, error_code: Option<String>) {
        let msg = Outbound::BatchResult {
            batch_id: f.batch_id.clone(),
            seq,
            outcome: outcome.into(),
            uuids: f.uuids.clone(),
            error_code,
        }
        .to_frame();
        let mut targets: HashSet<&SessionId> = f.expected.keys().collect();
        targets.extend(f.origins.iter());
        for s in targets {
            let ok = self.daemon.send_frames(s, vec![msg.clone()]).await;
            debug!(batch_id = %f.batch_id, session_id = %s, ok, outcome, "batch_result sent");
        }
    }

    /// Send `uuids`' authoritative state to one session as a `resync` batch.
    async fn send_resync(&mut self, session_id: &str, uuids: &[String], why: &str) {
        if self.inflight.as_ref().is_some_and(|f| uuids.iter().any(|u| f.uuids.contains(u))) {
            // The authoritative state of these uuids is about to change: send it once the
            // batch in flight is committed or rolled back, never the state before it.
            self.deferred.push(SyncEvent::ResyncUuids { session_id: session_id.to_string(), uuids: uuids.to_vec() });
            return;
        }
        let Some(s) = self.daemon.session_info(session_id) else { return };
        let ops: Vec<(String, ChangeOp)> = uuids
            .iter()
            .map(|u| match self.current_state(u) {
                Some(st) => (u.clone(), ChangeOp::Create(st)),
                None => (u.clone(), ChangeOp::Delete),
            })
            .collect();
        self.send_resync_ops(&s, ops, why).await;
    }

    async fn send_resync_ops(&mut self, s: &SessionInfo, ops: Vec<(String, ChangeOp)>, why: &str) -> Option<String> {
        if ops.is_empty() {
            return None;
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        let seq = self.daemon.last_seq();
        debug!(session_id = %s.session_id, count = ops.len(), why, "resync");
        if self.send_batch(s, &batch_id, seq, "resync", &ops).await {
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
            self.resyncs
                .insert(batch_id.clone(), ResyncCheck { session_id: s.session_id.clone(), expected, attempts: 0 });
            return Some(batch_id);
        }
        None
    }

    /// Replay for a (re)connecting editor: what changed after `last_seq` (§6.6).
    async fn replay(&mut self, session_id: &str, last_seq: u64, always_answer: bool) {
        let Some(s) = self.daemon.session_info(session_id) else { return };
        if !holds_scene(&s.editor) {
            return;
        }
        let reg = &self.daemon.stores().registry;
        let rolled: HashSet<String> =
            self.rolled_back.iter().filter(|(seq, _)| *seq > last_seq).flat_map(|(_, u)| u.iter().cloned()).collect();
        let mut ops: Vec<(String, ChangeOp)> = Vec::new();
        match reg.live_entries(Some(&self.project)) {
            Ok(entries) => {
                for e in entries {
                    if e.status == Status::Tombstoned || !(e.updated_seq > last_seq || rolled.contains(&e.uuid)) {
                        continue;
                    }
                    if let Some(st) = e.state.and_then(|v| serde_json::from_value::<ObjectState>(v).ok()) {
                        ops.push((e.uuid, ChangeOp::Create(st)));
                    }
                }
            }
            Err(e) => error!("replay: registry read failed: {e}"),
        }
        // Parents before children, so an editor can attach each object as it arrives.
        order_parents_first(&mut ops);
        if last_seq > 0 {
            if let Ok(archived) = reg.archived_entries(Some(&self.project)) {
                let mut seen = HashSet::new();
                for e in archived {
                    if e.tombstone_seq.unwrap_or(0) > last_seq
                        && e.state.is_some()
                        && seen.insert(e.uuid.clone())
                        && reg.lookup(&self.project, &e.uuid).ok().flatten().is_none()
                    {
                        ops.push((e.uuid, ChangeOp::Delete));
                    }
                }
            }
        }
        let batch_id = if ops.is_empty() && always_answer {
            // Nothing missed: an empty resync batch tells the editor it is up to date.
            let id = uuid::Uuid::new_v4().to_string();
            self.send_batch(&s, &id, self.daemon.last_seq(), "resync", &[]).await;
            None
        } else {
            self.send_resync_ops(&s, ops, "replay").await
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
        path: &str,
        ops: &[(String, ChangeOp)],
    ) -> bool {
        let mut frames = Vec::with_capacity(ops.len() + 2);
        frames.push(
            Outbound::BatchBegin { batch_id: batch_id.into(), seq, path: path.into(), count: ops.len() as u32 }
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
        frames.push(Outbound::BatchEnd { batch_id: batch_id.into(), seq }.to_frame());
        self.daemon.send_frames(&s.session_id, frames).await
    }
}

/// Editor kinds that hold a scene (receive batches, may ask for `resync`).
pub fn holds_scene(editor: &str) -> bool {
    matches!(editor, "blender" | "unity")
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

fn mismatches(expected: &HashMap<String, Option<String>>, got: &BTreeMap<String, String>) -> Vec<String> {
    expected
        .iter()
        .filter(|(u, h)| match h {
            Some(h) => got.get(*u) != Some(h),
            None => got.contains_key(*u), // deleted: must be gone
        })
        .map(|(u, _)| u.clone())
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
