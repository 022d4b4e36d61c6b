//! The daemon's shared state and request handling: sessions, claims, and the mutation path
//! validate → plan (engine) → WAL (BEGIN, STEP…, COMMIT, durable) → registry (flushed) →
//! ack → FINAL → ghost audit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tracing::{error, info, warn};
use vibesync_engine::register;
use vibesync_engine::sync::Author;
use vibesync_protocol::message::{status_reply, EditorRunState, EditorState, OtherProject, Peer, Register, Tombstone};
use vibesync_protocol::{AdminAction, ClientKind, ErrorCode, Frame, Inbound, Outbound};

use crate::config::Config;
pub(crate) use crate::host::SessionInfo;
use crate::outbox::SessionHandle;
use crate::paths::DataDir;
use crate::stores::Stores;
use crate::sync::{Driven, Input, SyncHub};
use vibesync_engine::notsynced::NotSynced;

mod registrar;

struct Connected {
    info: SessionInfo,
    handle: SessionHandle,
    /// Messages received, by type (shown in `status`: e.g. to check that an editor echoes
    /// nothing back).
    received: BTreeMap<&'static str, u64>,
    /// The editor's own run state (`editor_state`, docs/PROTOCOL.md §6.7), without `held`.
    editor_state: Option<EditorState>,
    /// The edits it holds unsent while the daemon is in safe mode (`editor_state.held`):
    /// shown by `status` as not synced; forgotten when safe mode ends (it sends them then).
    held: Option<Held>,
    /// The last `peers` event queued for it (its JSON): one that says the same again is not
    /// sent (two editors joining back to back announced each other twice).
    last_peers: Option<bytes::Bytes>,
}

/// What an editor said it holds unsent in safe mode (`editor_state.held`, docs/PROTOCOL.md §6.7).
#[derive(Debug, Clone)]
struct Held {
    uuids: Vec<String>,
    /// How many it holds in all (`uuids` may be the first [`EditorState::MAX_HELD`]).
    count: u64,
    /// The daemon's last seq when it said so.
    seq: u64,
}

/// Key of an in-memory claim: which live session holds a uuid for an editor kind.
type ClaimKey = (String, ClientKind, String); // (project_id, editor, uuid)

/// The project of last resort for zero-config pairing.
pub const DEFAULT_PROJECT: &str = "default";

/// A `change` request with more changes than this is parsed on the blocking pool (a drag of
/// 5,000 objects is ~5 ms of parsing), a smaller one on the session's task.
const PARSE_ON_BLOCKING_POOL: usize = 256;

pub struct Daemon {
    config: Config,
    data: DataDir,
    token: String,
    stores: Stores,
    sessions: Mutex<HashMap<String, Connected>>,
    claims: Mutex<HashMap<ClaimKey, String>>,
    /// Serializes plan → WAL → registry: the registry must apply transactions in COMMIT
    /// order (its watermark is the last applied COMMIT seq), so mutations take turns.
    mutation: tokio::sync::Mutex<()>,
    started: Instant,
    listen: Mutex<Option<SocketAddr>>,
    safe_mode: AtomicBool,
    /// Why safe mode is on (told in `welcome` and the `safe_mode` event); `None` when off.
    safe_mode_reason: Mutex<Option<String>>,
    storage_failed: AtomicBool,
    /// The daemon is stopping: `SHUTTING_DOWN` is each session's last frame, so the sessions
    /// that close meanwhile announce no `peers` to the others (docs/PROTOCOL.md §4).
    stopping: AtomicBool,
    fatal: Notify,
    /// A person asked the daemon to stop (`vibesync stop`): a graceful shutdown.
    stop: Notify,
    sync: SyncHub<Daemon>,
    /// Agent tool calls and addon registries (docs/PROTOCOL.md §9).
    router: Arc<crate::router::Router>,
    /// FINAL + audit tasks spawned after acknowledgements; drained at shutdown.
    finals: tokio_util::task::TaskTracker,
    /// Group commit of register/tombstone requests (started on first use).
    registrar: std::sync::OnceLock<std::sync::mpsc::Sender<registrar::Event>>,
    /// The registrar's FINALs waiting to ride with its next WAL append (`core::registrar`).
    registrar_finals: Mutex<Vec<registrar::PendingFinal>>,
    /// How many writes of FINALs the idle registrar took from `registrar_finals` are under
    /// way (raised under that lock, with the take): a graceful stop waits for 0 before the
    /// audit closes.
    registrar_finals_writing: tokio::sync::watch::Sender<usize>,
    /// Committed `tombstone` requests whose deletes the project's sync has not relayed yet
    /// (their FINAL is the sync's, docs/WAL.md §9 "Late deletes"), by operation id: a
    /// graceful stop records what its end of sync cut (`finalize_unrelayed`).
    unrelayed: Mutex<HashMap<String, vibesync_wal::UnfinalizedTx>>,
    /// (project, uuid) of `tombstone` requests planned whose WAL append the registry has not
    /// applied yet: a sync batch formed meanwhile would read the record live, so a window
    /// holding a change of one waits (docs/PROTOCOL.md §6.2).
    deleting: Mutex<HashSet<(String, String)>>,
    /// Operation ids whose FINAL a `finalize_later` task is writing: a project's sync that
    /// restarts after a step panicked finalizes the committed batches the stopped sync left
    /// without a FINAL, except these (`Stores::seed_now`).
    finalizing: Arc<Mutex<HashSet<String>>>,
}

impl Daemon {
    /// `safe_mode`: why the daemon starts in safe mode, or `None` when it does not.
    pub fn new(config: Config, data: DataDir, token: String, stores: Stores, safe_mode: Option<String>) -> Daemon {
        Daemon {
            config,
            data,
            token,
            stores,
            sessions: Mutex::new(HashMap::new()),
            claims: Mutex::new(HashMap::new()),
            mutation: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            listen: Mutex::new(None),
            safe_mode: AtomicBool::new(safe_mode.is_some()),
            safe_mode_reason: Mutex::new(safe_mode),
            storage_failed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            fatal: Notify::new(),
            stop: Notify::new(),
            sync: SyncHub::default(),
            router: Arc::default(),
            finals: tokio_util::task::TaskTracker::new(),
            registrar: std::sync::OnceLock::new(),
            registrar_finals: Mutex::new(Vec::new()),
            registrar_finals_writing: tokio::sync::watch::Sender::new(0),
            unrelayed: Mutex::new(HashMap::new()),
            deleting: Mutex::new(HashSet::new()),
            finalizing: Arc::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }
    pub fn token(&self) -> &str {
        &self.token
    }
    pub fn stores(&self) -> &Stores {
        &self.stores
    }
    pub fn last_seq(&self) -> u64 {
        self.stores.wal.last_seq()
    }
    pub fn storage_failed(&self) -> bool {
        self.storage_failed.load(Ordering::SeqCst)
    }
    pub fn safe_mode(&self) -> bool {
        self.safe_mode.load(Ordering::SeqCst)
    }
    /// Why safe mode is on, or `None` when it is off.
    pub fn safe_mode_reason(&self) -> Option<String> {
        self.safe_mode_reason.lock().unwrap().clone()
    }
    pub fn set_listen_addr(&self, addr: SocketAddr) {
        *self.listen.lock().unwrap() = Some(addr);
    }

    /// Resolves when the daemon must stop by itself (storage failure).
    pub async fn fatal_error(&self) {
        self.fatal.notified().await
    }

    /// Resolves when `vibesync stop` asked for a graceful shutdown.
    pub async fn stop_requested(&self) {
        self.stop.notified().await
    }

    /// Authenticated sessions now connected.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    pub fn add_session(&self, info: SessionInfo, handle: SessionHandle) {
        self.sessions.lock().unwrap().insert(
            info.session_id.clone(),
            Connected { info, handle, received: BTreeMap::new(), editor_state: None, held: None, last_peers: None },
        );
    }

    pub fn remove_session(self: &Arc<Self>, session_id: &str) {
        let gone = self.sessions.lock().unwrap().remove(session_id);
        self.claims.lock().unwrap().retain(|_, s| s != session_id);
        if let Some(Connected { info, editor_state, .. }) = gone {
            // It said it was closing on purpose (a file opened, the editor quitting): a batch it
            // leaves unanswered is no evidence against the data (docs/PROTOCOL.md §6.7).
            let closing = editor_state.is_some_and(|e| e.state == EditorRunState::Closing);
            self.router.left(self, &info);
            self.sync.send(self, &info.project_id, Input::Left { session_id: session_id.to_string(), closing });
            if info.editor.holds_scene() && !self.stopping.load(Ordering::SeqCst) {
                self.announce_peers();
            }
        }
    }

    /// Called once the session has its `welcome`: `peers` (D3 in docs/PROTOCOL.md §6.8), then
    /// replay what it missed (§6.6).
    pub fn session_ready(self: &Arc<Self>, info: &SessionInfo) {
        if info.editor.holds_scene() {
            self.remember_project(&info.project_id);
            self.announce_peers();
        }
        self.router.joined(self, info);
        self.sync.send(
            self,
            &info.project_id,
            Input::Joined { session_id: info.session_id.clone(), last_seq: info.last_seq },
        );
    }

    /// Tell every scene-holding session who else holds a scene of its project, and which
    /// other projects have editors (docs/PROTOCOL.md §6.8).
    fn announce_peers(&self) {
        let mut sessions = self.sessions.lock().unwrap();
        let holders: Vec<&Connected> = sessions.values().filter(|c| c.info.editor.holds_scene()).collect();
        let mut sent: Vec<(String, bytes::Bytes)> = Vec::new();
        for me in &holders {
            let peers: Vec<Peer> = holders
                .iter()
                .filter(|o| o.info.project_id == me.info.project_id && o.info.session_id != me.info.session_id)
                .map(|o| Peer {
                    session_id: o.info.session_id.clone(),
                    client: o.info.editor,
                    client_id: o.info.client_id.clone(),
                })
                .collect();
            let mut others: BTreeMap<&str, Vec<ClientKind>> = BTreeMap::new();
            for o in holders.iter().filter(|o| o.info.project_id != me.info.project_id) {
                let clients = others.entry(&o.info.project_id).or_default();
                if !clients.contains(&o.info.editor) {
                    clients.push(o.info.editor);
                }
            }
            let frame = Outbound::Peers {
                project_id: me.info.project_id.clone(),
                peers,
                other_projects: others
                    .into_iter()
                    .map(|(p, mut clients)| {
                        clients.sort();
                        OtherProject { project_id: p.to_string(), clients }
                    })
                    .collect(),
            }
            .to_frame();
            if me.last_peers.as_ref() == Some(&frame.json) {
                continue; // the same as the last one it was sent: nothing changed for it
            }
            let json = frame.json.clone();
            if me.handle.tx.try_send(frame).is_err() {
                warn!(session_id = %me.info.session_id, "peers event not queued (the session's queue is full)");
            } else {
                sent.push((me.info.session_id.clone(), json));
            }
        }
        for (session_id, json) in sent {
            if let Some(c) = sessions.get_mut(&session_id) {
                c.last_peers = Some(json);
            }
        }
    }

    /// The project for a `hello` without `project_id` (zero-config pairing, docs/PROTOCOL.md
    /// §3): the project of the most recently joined connected scene-holding session of
    /// another client kind, else the project most recently used by any editor (persisted),
    /// else `default`.
    pub fn assign_project(&self, editor: ClientKind) -> String {
        let joined = {
            let sessions = self.sessions.lock().unwrap();
            sessions
                .values()
                .filter(|c| c.info.editor.holds_scene() && c.info.editor != editor)
                .max_by_key(|c| c.info.connected_at)
                .map(|c| c.info.project_id.clone())
        };
        if let Some(p) = joined {
            return p;
        }
        match std::fs::read_to_string(self.data.last_project()) {
            Ok(p) if vibesync_protocol::validate::project_id(p.trim()).is_ok() => p.trim().to_string(),
            Ok(_) => DEFAULT_PROJECT.to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_PROJECT.to_string(),
            Err(e) => {
                warn!("cannot read {}: {e}; assigning `{DEFAULT_PROJECT}`", self.data.last_project().display());
                DEFAULT_PROJECT.to_string()
            }
        }
    }

    /// Persist the project an editor joined last (for zero-config pairing).
    fn remember_project(&self, project_id: &str) {
        let path = self.data.last_project();
        if std::fs::read_to_string(&path).is_ok_and(|p| p.trim() == project_id) {
            return;
        }
        if let Err(e) = crate::fsutil::write_atomic(&path, format!("{project_id}\n").as_bytes(), None) {
            warn!("cannot write {}: {e}", path.display());
        }
    }

    pub fn session_info(&self, session_id: &str) -> Option<SessionInfo> {
        self.sessions.lock().unwrap().get(session_id).map(|c| c.info.clone())
    }

    /// Connected sessions of a project.
    pub fn sessions_of(&self, project_id: &str) -> Vec<SessionInfo> {
        self.sessions
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.info.project_id == project_id)
            .map(|c| c.info.clone())
            .collect()
    }

    /// Disconnect session `session_id` with `SYNC_RESTARTED` ([`Daemon::restart_sessions`]).
    pub fn restart_session(&self, session_id: &str) {
        if let Some(c) = self.sessions.lock().unwrap().get(session_id) {
            c.handle.restarted.notify_one();
        }
    }

    /// Disconnect every session of `project_id` with `SYNC_RESTARTED` (its sync restarted
    /// after a step panicked): each editor reconnects, takes the replay after its `last_seq`
    /// and re-sends its changes that have no `batch_result` (docs/PROTOCOL.md §6.6). Returns
    /// their session ids.
    pub fn restart_sessions(&self, project_id: &str) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap();
        let of = sessions.values().filter(|c| c.info.project_id == project_id);
        of.map(|c| {
            c.handle.restarted.notify_one();
            c.info.session_id.clone()
        })
        .collect()
    }

    /// Queue frames on a session's writer as one unit: they are written back to back, with
    /// nothing else between them (a fenced batch is contiguous, docs/PROTOCOL.md §6.3). A
    /// consumer that cannot take a frame within the timeout is not waited for longer (it is
    /// disconnected, `SLOW_CONSUMER`, and resynced when it reconnects); returns false.
    pub async fn send_frames(&self, session_id: &str, frames: Vec<Frame>) -> bool {
        let Some((tx, kick)) =
            self.sessions.lock().unwrap().get(session_id).map(|c| (c.handle.tx.clone(), c.handle.kick.clone()))
        else {
            return false;
        };
        let patience = Duration::from_millis(self.config.limits.slow_consumer_ms);
        match tx.send_all(frames, Some(patience)).await {
            Ok(()) => true,
            Err(crate::outbox::SendError::Closed) => false,
            Err(crate::outbox::SendError::Slow) => {
                warn!(session_id, "session does not take its messages: disconnecting it (SLOW_CONSUMER)");
                kick.notify_one();
                false
            }
        }
    }

    /// Queue best-effort frames (live previews, docs/PROTOCOL.md §6.3) without waiting for
    /// the consumer (`Outbox::offer`; another sender's frames going in are waited for at most
    /// 5 ms): they never hold back the sender nor crowd out the batches that supersede them.
    /// Returns how many were queued.
    pub async fn offer_frames(&self, session_id: &str, frames: Vec<Frame>) -> usize {
        let Some(tx) = self.sessions.lock().unwrap().get(session_id).map(|c| c.handle.tx.clone()) else {
            return 0;
        };
        tx.offer(frames, Duration::from_millis(5)).await
    }

    /// The daemon-wide mutation turn: held around WAL COMMIT + registry apply.
    pub async fn mutation_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.mutation.lock().await
    }

    /// A storage error outside a request (the sync actor): stop the daemon.
    pub fn storage_failure_notice(&self, operation_id: &str, message: &str) {
        let _ = self.storage_failure("", operation_id, message.to_string());
    }

    /// A storage error while answering `request_id`: stop the daemon; the `STORAGE_FAILED`
    /// error frame to send.
    pub fn storage_failure_frame(&self, request_id: &str, operation_id: &str, message: String) -> Frame {
        self.storage_failure(request_id, operation_id, message).to_frame()
    }

    /// Handle one request; returns the frames to send back, in order.
    pub async fn handle(self: &Arc<Self>, session_id: &str, msg: Inbound, attachment: Bytes) -> Vec<Frame> {
        let Some(sess) = self.session_info(session_id) else {
            return vec![];
        };
        if let Some(c) = self.sessions.lock().unwrap().get_mut(session_id) {
            *c.received.entry(msg.type_name()).or_default() += 1;
        }
        if !attachment.is_empty() && !matches!(msg, Inbound::Change(ref c) if names_its_mesh(&c.changes)) {
            return vec![Outbound::error(
                ErrorCode::BadMessage,
                format!(
                    "attachment: only a `change` frame of exactly one change, a `mesh` or a `create` with `mesh_hash`, may carry an attachment (got {} bytes on a `{}`); send the other changes without it",
                    attachment.len(),
                    msg.type_name()
                ),
                msg.request_id().map(str::to_string),
            )
            .to_frame()];
        }
        match msg {
            Inbound::Ping(p) => vec![Outbound::Pong { request_id: p.request_id, seq: self.last_seq() }.to_frame()],
            Inbound::Status(s) => vec![status_reply(self.status_json(), s.request_id)],
            Inbound::Register(r) => vec![self.register(&sess, r).await],
            Inbound::Tombstone(t) => vec![self.tombstone(&sess, t).await],
            Inbound::Change(c) => self.change(&sess, c, attachment).await,
            Inbound::Applied(a) => {
                self.sync.send(
                    self,
                    &sess.project_id,
                    Input::Applied {
                        session_id: sess.session_id.clone(),
                        batch_id: a.batch_id,
                        seq: a.seq,
                        hashes: a.hashes,
                        held: a.held,
                        failed: a.failed,
                        spared: a.spared,
                    },
                );
                vec![]
            }
            Inbound::Resync(r) if !sess.editor.holds_scene() => vec![Outbound::error(
                ErrorCode::BadMessage,
                format!(
                    "field `type`: `resync` is for editor sessions (blender, unity) that hold a scene; this is a `{}` session — read state with `status` or the registry instead",
                    sess.editor
                ),
                r.request_id,
            )
            .to_frame()],
            Inbound::Resync(r) => {
                self.sync.send(
                    self,
                    &sess.project_id,
                    Input::Resync {
                        session_id: sess.session_id.clone(),
                        since_seq: r.since_seq,
                        request_id: r.request_id,
                    },
                );
                vec![]
            }
            // Only a person at an editor holds automation back (§6.7): another session's report
            // would let an agent hold its own changes for good.
            Inbound::UserActivity(_) if !sess.editor.holds_scene() => vec![Outbound::error(
                ErrorCode::BadMessage,
                format!(
                    "field `type`: `user_activity` is for editor sessions (blender, unity), where a person edits; a `{}` session's report would hold automation for nobody",
                    sess.editor
                ),
                None,
            )
            .to_frame()],
            Inbound::UserActivity(a) => {
                self.router.user_activity(&sess, a.active);
                self.sync.send(
                    self,
                    &sess.project_id,
                    Input::UserActivity { session_id: sess.session_id.clone(), active: a.active },
                );
                vec![]
            }
            Inbound::Admin(a) => vec![self.admin(&sess, a).await],
            Inbound::EditorState(mut e) => {
                let held = match self.held_of(&sess, &mut e) {
                    Ok(h) => h,
                    Err(why) => return vec![Outbound::error(ErrorCode::BadMessage, why, None).to_frame()],
                };
                info!(session_id, editor = %sess.editor, project_id = %sess.project_id, state = ?e.state, reason = %e.reason, held = held.as_ref().map(|h| h.count), "editor state");
                if let Some(c) = self.sessions.lock().unwrap().get_mut(session_id) {
                    c.editor_state = Some(e);
                    if held.is_some() {
                        c.held = held.filter(|h| h.count > 0);
                    }
                }
                vec![]
            }
            Inbound::AddonCommand(c) => self.router.call(self, &sess, c),
            Inbound::AddonCancel(c) => self.router.cancel(&sess, c),
            Inbound::CommandResponse(r) => self.router.response(&sess, r),
            Inbound::RegistryUpdated(r) => self.router.registry_updated(self, &sess, r),
            Inbound::AddonRegistered(r) => self.router.addon_registered(self, &sess, r),
            Inbound::AddonUnregistered(r) => self.router.addon_unregistered(self, &sess, r),
            Inbound::SceneQuery(q) => vec![self.router.scene(&**self, &sess, q)],
            Inbound::Hello(_) => vec![],
        }
    }

    /// `change`: checked here, then validated and queued by the project's sync actor, which
    /// sends the `ack` itself — followed by any corrective resync, in that order.
    async fn change(
        self: &Arc<Self>,
        sess: &SessionInfo,
        req: vibesync_protocol::message::Change,
        attachment: Bytes,
    ) -> Vec<Frame> {
        let refuse =
            |code, message: String| vec![Outbound::error(code, message, Some(req.request_id.clone())).to_frame()];
        if req.changes.len() > register::MAX_ITEMS {
            return refuse(
                ErrorCode::BadMessage,
                format!(
                    "field `changes`: {} changes; at most {} per request — split it",
                    req.changes.len(),
                    register::MAX_ITEMS
                ),
            );
        }
        if let Some(f) = self.refuse_mutation(&req.request_id) {
            return vec![f];
        }
        if let Some(f) = self.refuse_sync_in_safe_mode(&req.request_id) {
            return vec![f];
        }
        // Zero-trust parsing here, beside the project's actor (the serial step); a big
        // request on the blocking pool, so other sessions on this worker do not wait for it.
        let unit_scale = sess.unit_scale;
        let changes = if req.changes.len() > PARSE_ON_BLOCKING_POOL {
            let raw = req.changes;
            match tokio::task::spawn_blocking(move || vibesync_engine::sync::parse_changes(&raw, unit_scale)).await {
                Ok(parsed) => parsed,
                Err(e) => {
                    return vec![Outbound::error(
                        ErrorCode::Internal,
                        format!("parsing the changes failed: {e}; see the daemon log"),
                        Some(req.request_id),
                    )
                    .to_frame()]
                }
            }
        } else {
            vibesync_engine::sync::parse_changes(&req.changes, unit_scale)
        };
        let request_id = req.request_id.clone();
        let author =
            if sess.is(ClientKind::Agent) || req.automation.is_some() { Author::Automation } else { Author::Person };
        let driven = self
            .sync
            .change(
                self,
                &sess.project_id,
                Input::Change {
                    session: Box::new(vibesync_engine::project::Editor::from(sess)),
                    base_seq: req.base_seq,
                    changes,
                    attachment,
                    request_id,
                    author,
                    seen: req.seen,
                },
            )
            .await;
        match driven {
            Driven::Done => vec![],
            // A bug stopped the project's sync on this change or before it: not a refusal of
            // the edit. The session is disconnected (`SYNC_RESTARTED`, as every session of the
            // project is when its sync restarts, even when that restart waits for the next
            // input) and the change stays unanswered: its editor sends it again once it has
            // reconnected (docs/PROTOCOL.md §4, §6.6).
            Driven::Panicked => {
                self.restart_session(&sess.session_id);
                vec![]
            }
            Driven::Stopped => vec![Outbound::error(
                ErrorCode::Internal,
                "the sync actor for this project stopped; see the daemon log",
                Some(req.request_id),
            )
            .to_frame()],
        }
    }

    async fn register(self: &Arc<Self>, sess: &SessionInfo, req: Register) -> Frame {
        if let Some(refused) = self.precheck_mutation(sess, &req.request_id, req.items.len(), "items") {
            return refused;
        }
        self.group_commit(sess, registrar::Request::Register(req)).await
    }

    async fn tombstone(self: &Arc<Self>, sess: &SessionInfo, req: Tombstone) -> Frame {
        if sess.is(ClientKind::Agent) {
            // A tombstone commits at once; automation's delete must reach the editors as a
            // batch they verify, so that one holding a person's edit of the object can refuse
            // it (docs/PROTOCOL.md §5, §6.4). In any mode, safe mode included (§6.7).
            return Outbound::error(
                ErrorCode::BadMessage,
                "field `type`: an agent deletes with a `delete` change (docs/PROTOCOL.md §6.1), which the editors verify: a `tombstone` commits at once, over a person's edit of the object — send `{\"type\":\"change\",…,\"changes\":[{\"op\":\"delete\",\"uuid\":…}]}`",
                Some(req.request_id),
            )
            .to_frame();
        }
        if let Some(refused) = self.precheck_mutation(sess, &req.request_id, req.uuids.len(), "uuids") {
            return refused;
        }
        // A tombstone deletes synced state and relays the deletes.
        if let Some(f) = self.refuse_sync_in_safe_mode(&req.request_id) {
            return f;
        }
        self.group_commit(sess, registrar::Request::Tombstone(req)).await
    }

    /// Hand a register/tombstone request to the registrar (group commit) and wait for its
    /// answer; the session's task only awaits, it never blocks a worker.
    async fn group_commit(self: &Arc<Self>, sess: &SessionInfo, request: registrar::Request) -> Frame {
        let request_id = match &request {
            registrar::Request::Register(r) => r.request_id.clone(),
            registrar::Request::Tombstone(t) => t.request_id.clone(),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let tx = self.registrar.get_or_init(|| registrar::start(self));
        if tx.send(registrar::Event::Job(registrar::Job { sess: sess.clone(), request, reply })).is_ok() {
            if let Ok(frame) = answer.await {
                return frame;
            }
        }
        Outbound::error(ErrorCode::Internal, "the registrar stopped; see the daemon log", Some(request_id)).to_frame()
    }

    /// Operator actions (`vibesync safe-mode`, `vibesync quarantine`): cli sessions only.
    async fn admin(self: &Arc<Self>, sess: &SessionInfo, a: vibesync_protocol::message::Admin) -> Frame {
        let rid = Some(a.request_id.clone());
        if !sess.is(ClientKind::Cli) {
            return Outbound::error(
                ErrorCode::BadMessage,
                "field `type`: `admin` is accepted only from `cli` sessions (the vibesync command line)",
                rid,
            )
            .to_frame();
        }
        if let Some(Err(why)) = a.project_id.as_deref().map(vibesync_protocol::validate::project_id) {
            return Outbound::error(ErrorCode::BadMessage, format!("field `project_id`: {why}"), rid).to_frame();
        }
        if let Some(Err(e)) = a.uuid.as_deref().map(vibesync_protocol::validate::uuid) {
            return Outbound::error(ErrorCode::BadMessage, format!("field `uuid`: {}", e.message), rid).to_frame();
        }
        let Some(action) = AdminAction::parse(&a.action) else {
            return Outbound::error(
                ErrorCode::BadMessage,
                format!(
                    "field `action`: unknown `{}`; one of {}",
                    vibesync_protocol::validate::truncate_for_message(&a.action),
                    AdminAction::list()
                ),
                rid,
            )
            .to_frame();
        };
        let _turn = self.mutation.lock().await;
        let result = match action {
            AdminAction::SafeModeClear => {
                let steps = vec![json!({"op": "governance_reset", "by": sess.client_id})];
                match self.stores.daemon_txn("", vec![], steps, json!({"op": "governance_reset"})).await {
                    Ok(seq) => {
                        self.set_safe_mode(false, "cleared by a person (vibesync safe-mode clear)");
                        json!({"safe_mode": false, "seq": seq, "failures_cleared": true})
                    }
                    Err(e) => return self.storage_failure(&a.request_id, "admin", e.to_string()).to_frame(),
                }
            }
            // Under the turn: a consistent snapshot of registry + WAL (verify.rs).
            AdminAction::Verify => {
                let (data, registry, seq) = (self.data.clone(), self.stores.registry.clone(), self.last_seq());
                match tokio::task::spawn_blocking(move || crate::verify::live(&data, &registry, seq)).await {
                    Ok(Ok(report)) => report.to_json(),
                    Ok(Err(e)) => return Outbound::error(ErrorCode::Internal, format!("verify: {e}"), rid).to_frame(),
                    Err(e) => return Outbound::error(ErrorCode::Internal, e.to_string(), rid).to_frame(),
                }
            }
            // A graceful stop, the same as SIGTERM (the only one on Windows).
            AdminAction::Stop => {
                info!(by = %sess.client_id, "stop requested by a person (vibesync stop)");
                self.stop.notify_one();
                json!({"stopping": true, "pid": std::process::id()})
            }
            // WAL compaction + audit pack + blob collection now (also on a schedule: retention.rs).
            AdminAction::Maintain => {
                let (data, stores, storage) = (self.data.clone(), self.stores.clone(), self.config.storage.clone());
                match tokio::task::spawn_blocking(move || crate::retention::maintain(&data, &stores, &storage)).await {
                    Ok(report) => report,
                    Err(e) => return Outbound::error(ErrorCode::Internal, e.to_string(), rid).to_frame(),
                }
            }
            // Today's synced state of a project's objects (`vibesync restore` plans from it).
            AdminAction::Entries => {
                let Some(project) = a.project_id.as_deref() else {
                    return Outbound::error(ErrorCode::BadMessage, "field `project_id`: missing", rid).to_frame();
                };
                match self.stores.registry.live_entries(Some(project)) {
                    Ok(entries) => {
                        let items: Vec<Value> = entries
                            .into_iter()
                            .filter(|e| e.status == vibesync_registry::Status::Live && e.state.is_some())
                            .map(|e| json!({"uuid": e.uuid, "kind": e.kind, "state": e.state, "state_hash": e.state_hash, "updated_seq": e.updated_seq}))
                            .collect();
                        json!({"project_id": project, "seq": self.last_seq(), "items": items})
                    }
                    Err(e) => {
                        return self
                            .storage_failure(&a.request_id, "admin", format!("registry read failed: {e}"))
                            .to_frame()
                    }
                }
            }
            AdminAction::QuarantineList => {
                let entries = match self.stores.registry.live_entries(a.project_id.as_deref()) {
                    Ok(entries) => entries,
                    Err(e) => {
                        return self
                            .storage_failure(&a.request_id, "admin", format!("registry read failed: {e}"))
                            .to_frame()
                    }
                };
                let items: Vec<Value> = entries
                    .into_iter()
                    .filter(|e| e.status == vibesync_registry::Status::Quarantined)
                    .map(|e| json!({"project_id": e.project_id, "uuid": e.uuid, "kind": e.kind, "name": e.name, "reason": e.quarantine_reason, "since_seq": e.updated_seq}))
                    .collect();
                json!({"items": items})
            }
            AdminAction::QuarantineRelease => {
                let Some(uuid) = a.uuid.clone() else {
                    return Outbound::error(
                        ErrorCode::BadMessage,
                        "field `uuid`: missing; say which uuid to release",
                        rid,
                    )
                    .to_frame();
                };
                let entries = match self.stores.registry.live_entries(a.project_id.as_deref()) {
                    Ok(entries) => entries,
                    Err(e) => {
                        return self
                            .storage_failure(&a.request_id, "admin", format!("registry read failed: {e}"))
                            .to_frame()
                    }
                };
                let found: Vec<String> = entries
                    .into_iter()
                    .filter(|e| e.uuid == uuid && e.status == vibesync_registry::Status::Quarantined)
                    .map(|e| e.project_id)
                    .collect();
                if found.is_empty() {
                    return Outbound::error(
                        ErrorCode::BadMessage,
                        format!(
                            "{uuid} is not quarantined{} (see `vibesync quarantine list`)",
                            a.project_id.as_deref().map(|p| format!(" in project {p}")).unwrap_or_default()
                        ),
                        rid,
                    )
                    .to_frame();
                }
                let mut released = vec![];
                for project in found {
                    let steps = vec![json!({"op": "release", "uuid": uuid})];
                    match self
                        .stores
                        .daemon_txn(
                            &project,
                            vec![uuid.clone()],
                            steps,
                            json!({"op": "quarantine_release", "by": sess.client_id}),
                        )
                        .await
                    {
                        Ok(seq) => {
                            self.sync.send(self, &project, Input::Released { uuids: vec![uuid.clone()] });
                            released.push(json!({"project_id": project, "seq": seq}))
                        }
                        Err(e) => return self.storage_failure(&a.request_id, "admin", e.to_string()).to_frame(),
                    }
                }
                info!(uuid = %uuid, "quarantine released by a person");
                json!({"uuid": uuid, "released": released})
            }
        };
        Outbound::AdminResult { request_id: a.request_id, action: a.action, result }.to_frame()
    }

    /// An `editor_state`'s `held` list, taken out of it: `Some` when it has one (an empty
    /// one, or one sent while the daemon is not in safe mode, clears the session's: it
    /// sends what it held once safe mode ends), `None` when it says nothing of it; or why the
    /// list is refused (`BAD_MESSAGE`, naming the field).
    fn held_of(&self, sess: &SessionInfo, e: &mut EditorState) -> Result<Option<Held>, String> {
        let count = e.held_count.take();
        let Some(uuids) = e.held.take() else {
            return match count {
                Some(_) => Err("field `held_count`: given without `held`; send both (docs/PROTOCOL.md §6.7)".into()),
                None => Ok(None),
            };
        };
        if !sess.editor.holds_scene() {
            return Err(format!(
                "field `held`: a `{}` session holds no person's edits; `held` is for editor sessions (blender, unity)",
                sess.editor
            ));
        }
        if uuids.len() > EditorState::MAX_HELD {
            return Err(format!(
                "field `held`: {} uuids; at most {} — list the first {} and give the total in `held_count`",
                uuids.len(),
                EditorState::MAX_HELD,
                EditorState::MAX_HELD
            ));
        }
        if let Some((i, e)) =
            uuids.iter().enumerate().find_map(|(i, u)| vibesync_protocol::validate::uuid(u).err().map(|e| (i, e)))
        {
            return Err(format!("field `held[{i}]`: {}", e.message));
        }
        let count = count.unwrap_or(uuids.len() as u64);
        if count < uuids.len() as u64 {
            return Err(format!("field `held_count`: {count}, fewer than the {} uuids `held` lists", uuids.len()));
        }
        let mut uuids = uuids;
        uuids.sort_unstable();
        uuids.dedup();
        let held = Held { uuids, count, seq: self.last_seq() };
        Ok(Some(if self.safe_mode() { held } else { Held { uuids: Vec::new(), count: 0, ..held } }))
    }

    /// Enter or leave safe mode: persisted in boot.json and told to every editor. Leaving it
    /// forgets what the editors said they held (`editor_state.held`): they send it now.
    pub fn set_safe_mode(&self, active: bool, reason: &str) {
        let was = {
            let mut why = self.safe_mode_reason.lock().unwrap();
            *why = active.then(|| reason.to_string());
            self.safe_mode.swap(active, Ordering::SeqCst)
        };
        if !active {
            for c in self.sessions.lock().unwrap().values_mut() {
                c.held = None;
            }
        }
        let path = self.data.boot();
        match crate::boot::read(&path) {
            Ok(mut b) => {
                b.safe_mode = active;
                b.safe_mode_reason = active.then(|| reason.to_string());
                if !active {
                    b.consecutive_unclean_boots = 0;
                }
                if let Err(e) = crate::boot::write(&path, &b) {
                    error!("could not persist safe mode: {e}");
                }
            }
            Err(e) => error!("could not persist safe mode: {e}"),
        }
        if was != active {
            if active {
                warn!(reason, "entering safe mode: sync is read-only until a person runs `vibesync safe-mode clear`");
            } else {
                info!(reason, "safe mode cleared");
            }
            let frame = Outbound::SafeMode { active, reason: reason.to_string() }.to_frame();
            let txs: Vec<_> = self.sessions.lock().unwrap().values().map(|c| c.handle.tx.clone()).collect();
            for tx in txs {
                let _ = tx.try_send(frame.clone());
            }
        }
    }

    /// What every register / tombstone request is checked for before it is planned.
    fn precheck_mutation(&self, sess: &SessionInfo, request_id: &str, count: usize, field: &str) -> Option<Frame> {
        if count > register::MAX_ITEMS {
            return Some(
                Outbound::error(
                    ErrorCode::BadMessage,
                    format!("field `{field}`: {count} entries; at most {} per request — split it", register::MAX_ITEMS),
                    Some(request_id.to_string()),
                )
                .to_frame(),
            );
        }
        self.refuse_mutation(request_id).or_else(|| self.refuse_automation_in_safe_mode(sess, request_id))
    }

    fn refuse_automation_in_safe_mode(&self, sess: &SessionInfo, request_id: &str) -> Option<Frame> {
        (self.safe_mode() && sess.is(ClientKind::Agent)).then(|| {
            Outbound::error(
                ErrorCode::SafeMode,
                "safe mode: automation is disabled until a person runs `vibesync safe-mode clear`",
                Some(request_id.to_string()),
            )
            .to_frame()
        })
    }

    /// In safe mode sync is read-only: a `change` or a `tombstone` is refused `SAFE_MODE`; the
    /// editor keeps its person's edits and deletes and sends them again once a person clears
    /// it (docs/PROTOCOL.md §6.7).
    fn refuse_sync_in_safe_mode(&self, request_id: &str) -> Option<Frame> {
        self.safe_mode().then(|| {
            Outbound::error(
                ErrorCode::SafeMode,
                "the daemon is in safe mode: sync is read-only (changes and deletes) until a person runs `vibesync safe-mode clear`; keep the edit and send it again then",
                Some(request_id.to_string()),
            )
            .to_frame()
        })
    }

    fn refuse_mutation(&self, request_id: &str) -> Option<Frame> {
        if self.storage_failed.load(Ordering::SeqCst) {
            return Some(
                Outbound::error(
                    ErrorCode::StorageFailed,
                    "the write-ahead log failed; the daemon accepts no mutations and is stopping — see its log",
                    Some(request_id.to_string()),
                )
                .to_frame(),
            );
        }
        None
    }

    fn storage_failure(&self, request_id: &str, operation_id: &str, message: String) -> Outbound {
        error!(operation_id, "storage failure, stopping: {message}");
        if !self.storage_failed.swap(true, Ordering::SeqCst) {
            self.fatal.notify_waiters();
            self.fatal.notify_one();
        }
        Outbound::error(
            ErrorCode::StorageFailed,
            format!(
                "not acknowledged: {message}. Nothing was acknowledged that is not durable; the daemon is stopping"
            ),
            Some(request_id.to_string()),
        )
    }

    /// Append FINAL (side effects done) and hand the snapshot to the audit thread, off the
    /// acknowledgement path.
    pub fn finalize_later(&self, session_id: String, project_id: String, operation_id: String, uuids: Vec<String>) {
        {
            let mut unrelayed = self.unrelayed.lock().unwrap();
            if !unrelayed.is_empty() {
                unrelayed.remove(&operation_id);
            }
        }
        let stores = self.stores.clone();
        let finalizing = self.finalizing.clone();
        finalizing.lock().unwrap().insert(operation_id.clone());
        self.finals.spawn(async move {
            if let Err(e) = stores.finalize(&session_id, &project_id, &operation_id, uuids).await {
                error!(operation_id = %operation_id, "FINAL not written: {e}; boot recovery will finalize it");
            }
            finalizing.lock().unwrap().remove(&operation_id);
        });
    }

    pub fn status_json(&self) -> Value {
        let sessions: Vec<Value> = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .map(|c| {
                json!({
                    "session_id": c.info.session_id,
                    "editor": c.info.editor,
                    "project_id": c.info.project_id,
                    "client_id": c.info.client_id,
                    "connected_ms": c.info.connected_at.elapsed().as_millis() as u64,
                    "received": c.received,
                    "editor_state": c.editor_state,
                    "held": c.held.as_ref().map_or(0, |h| h.count),
                })
            })
            .collect();
        let mut projects = serde_json::Map::new();
        {
            let sessions = self.sessions.lock().unwrap();
            for c in sessions.values().filter(|c| c.info.editor.holds_scene()) {
                let p = projects
                    .entry(c.info.project_id.clone())
                    .or_insert_with(|| json!({"peers": [], "not_synced": [], "conflicts": 0}));
                p["peers"].as_array_mut().expect("array").push(json!({
                    "session_id": c.info.session_id, "client": c.info.editor, "client_id": c.info.client_id,
                }));
            }
        }
        let sync = self.sync.status();
        // Projects whose actor has published nothing yet show the list rebuilt at boot.
        for (project, not_synced) in self.stores.not_synced_projects_at_boot() {
            if !sync.contains_key(&project) {
                let p =
                    projects.entry(project).or_insert_with(|| json!({"peers": [], "not_synced": [], "conflicts": 0}));
                p["not_synced"] = json!(not_synced);
            }
        }
        for (project, st) in sync {
            let p = projects.entry(project).or_insert_with(|| json!({"peers": [], "not_synced": [], "conflicts": 0}));
            p["not_synced"] = json!(st.not_synced);
            p["conflicts"] = json!(st.conflicts);
        }
        // The edits editors hold unsent in safe mode (`editor_state.held`), beside what the
        // daemon itself lists for the same editor (docs/PROTOCOL.md §5 `status`, §6.7).
        {
            let reason = format!(
                "{}: held in the editor while the daemon is in safe mode ({}); it is sent when a person runs `vibesync safe-mode clear`",
                ErrorCode::SafeMode.as_str(),
                self.safe_mode_reason().unwrap_or_else(|| "no reason recorded".into())
            );
            let sessions = self.sessions.lock().unwrap();
            for c in sessions.values() {
                let Some(held) = &c.held else { continue };
                let p = projects
                    .entry(c.info.project_id.clone())
                    .or_insert_with(|| json!({"peers": [], "not_synced": [], "conflicts": 0}));
                let list = p["not_synced"].as_array_mut().expect("array");
                let listed: HashSet<String> = list
                    .iter()
                    .filter(|n| n["client_id"] == c.info.client_id.as_str())
                    .filter_map(|n| n["uuid"].as_str().map(str::to_string))
                    .collect();
                for u in held.uuids.iter().filter(|u| !listed.contains(u.as_str())) {
                    list.push(json!(NotSynced {
                        uuid: u.clone(),
                        session_id: c.info.session_id.clone(),
                        client: c.info.editor.as_str().to_string(),
                        client_id: c.info.client_id.clone(),
                        reason: reason.clone(),
                        seq: held.seq,
                    }));
                }
            }
        }
        let mut s = self.stores.status_json();
        let obj = s.as_object_mut().expect("stores status is an object");
        // `boot`: boot.json as this daemon last wrote it (at start, and on each safe-mode
        // change), beside what this boot read (docs/PROTOCOL.md §5 `status`).
        if let Some(boot) = obj.get_mut("boot").and_then(Value::as_object_mut) {
            match crate::boot::read(&self.data.boot()) {
                Ok(b) => {
                    if let Ok(Value::Object(fields)) = serde_json::to_value(&b) {
                        boot.extend(fields);
                    }
                }
                Err(e) => {
                    boot.insert("error".into(), json!(e.to_string()));
                }
            }
        }
        obj.insert("daemon_version".into(), json!(crate::DAEMON_VERSION));
        obj.insert("data_dir".into(), json!(self.data.root().display().to_string()));
        let listen = *self.listen.lock().unwrap();
        obj.insert("listen".into(), json!(listen.map(|a| a.to_string())));
        obj.insert("reachable_from_network".into(), json!(listen.is_some_and(|a| !a.ip().is_loopback())));
        obj.insert("uptime_ms".into(), json!(self.started.elapsed().as_millis() as u64));
        obj.insert("safe_mode".into(), json!(self.safe_mode()));
        obj.insert("sessions".into(), Value::Array(sessions));
        obj.insert("projects".into(), Value::Object(projects));
        obj.insert("disk".into(), crate::retention::status_json(&self.data));
        s
    }

    /// First step of a graceful stop, before sessions are closed: the sync actors end, so
    /// an editor disconnected by the stop is never taken for a participant lost mid-batch
    /// (which is evidence against the batch's objects, docs/PROTOCOL.md §6.7). Idempotent.
    pub async fn stop_sync(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.sync.stop(Duration::from_secs(10)).await;
    }

    /// Graceful stop, once sync has ended: the `tombstone` requests whose deletes sync did not
    /// relay (it ended first) get what boot would write for them (docs/WAL.md §9, "Late
    /// deletes"): a `late_delete` STEP for the uuids they archived with a synced state, then
    /// their FINAL — so `vibesync verify` of a cleanly stopped data directory finds every
    /// transaction finalized, and the replays after any `last_seq` up to the stop carry the
    /// deletes. A write that fails leaves it to the next boot, as after a crash.
    async fn finalize_unrelayed(&self) {
        let txs: Vec<vibesync_wal::UnfinalizedTx> =
            std::mem::take(&mut *self.unrelayed.lock().unwrap()).into_values().collect();
        if txs.is_empty() {
            return;
        }
        let stores = self.stores.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<(), crate::DaemonError> {
            stores.registry.flush()?; // the deletes' side effects durable before their FINAL
            let end = stores.wal.last_seq();
            for tx in txs {
                stores.finalize_cut_relay(&tx, end, json!({"stopped": true, "commit_seq": tx.commit_seq}))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = done {
            error!("tombstone FINALs not written at stop: {e}; the next boot finalizes them");
        }
    }

    /// Graceful stop: close the stores in order (WAL synced, registry flushed, sidecar,
    /// audit drained) and mark a clean boot.
    pub async fn shutdown(&self) {
        self.stop_sync().await;
        self.write_registrar_finals().await;
        self.finalize_unrelayed().await;
        self.finals.close();
        self.finals.wait().await;
        self.stores.close(Duration::from_secs(10)).await;
        if !self.storage_failed.load(Ordering::SeqCst) {
            let now = crate::now_rfc3339();
            if let Err(e) = crate::boot::end_clean(&self.data.boot(), &now) {
                error!("could not mark clean shutdown: {e}");
            }
        }
        let _ = std::fs::remove_file(self.data.daemon_info());
        info!("stopped");
    }
}

/// The narrow view of the daemon that sync and the router get (`crate::host::Host`).
impl crate::host::Host for Daemon {
    fn config(&self) -> &Config {
        Daemon::config(self)
    }
    fn stores(&self) -> &Stores {
        Daemon::stores(self)
    }
    fn last_seq(&self) -> u64 {
        Daemon::last_seq(self)
    }
    fn sessions_of(&self, project: &str) -> Vec<vibesync_engine::project::Editor> {
        Daemon::sessions_of(self, project).iter().map(Into::into).collect()
    }
    fn session(&self, session_id: &str) -> Option<vibesync_engine::project::Editor> {
        self.session_info(session_id).as_ref().map(Into::into)
    }
    fn send_frames(&self, session_id: &str, frames: Vec<Frame>) -> impl std::future::Future<Output = bool> + Send {
        Daemon::send_frames(self, session_id, frames)
    }
    fn offer_frames(&self, session_id: &str, frames: Vec<Frame>) -> impl std::future::Future<Output = usize> + Send {
        Daemon::offer_frames(self, session_id, frames)
    }
    fn mutation_turn(&self) -> impl std::future::Future<Output = tokio::sync::MutexGuard<'_, ()>> + Send {
        Daemon::mutation_turn(self)
    }
    fn finalize_later(&self, session_id: String, project_id: String, operation_id: String, uuids: Vec<String>) {
        Daemon::finalize_later(self, session_id, project_id, operation_id, uuids)
    }
    fn storage_failure_notice(&self, operation_id: &str, message: &str) {
        Daemon::storage_failure_notice(self, operation_id, message)
    }
    fn storage_failure_frame(&self, request_id: &str, operation_id: &str, message: String) -> Frame {
        Daemon::storage_failure_frame(self, request_id, operation_id, message)
    }
    fn safe_mode(&self) -> bool {
        Daemon::safe_mode(self)
    }
    fn set_safe_mode(&self, active: bool, reason: &str) {
        Daemon::set_safe_mode(self, active, reason)
    }
    fn restart_sessions(&self, project: &str) -> Vec<String> {
        Daemon::restart_sessions(self, project)
    }
    fn finalizing(&self) -> HashSet<String> {
        self.finalizing.lock().unwrap().clone()
    }
    fn restart_sync(self: &Arc<Self>, project: &str) {
        self.sync.restart(self, project)
    }
    fn deleting(&self, project: &str) -> Vec<String> {
        let d = self.deleting.lock().unwrap();
        d.iter().filter(|(p, _)| p == project).map(|(_, u)| u.clone()).collect()
    }
}

/// Does a `change` frame's list name the one mesh an attachment may carry (docs/PROTOCOL.md
/// §1, §6.1): exactly one change, a `mesh` or a `create` with `mesh_hash`?
fn names_its_mesh(changes: &[Value]) -> bool {
    match changes {
        [c] => match c.get("op").and_then(Value::as_str) {
            Some("mesh") => true,
            Some("create") => c.get("mesh_hash").is_some_and(|h| !h.is_null()),
            _ => false,
        },
        _ => false,
    }
}
