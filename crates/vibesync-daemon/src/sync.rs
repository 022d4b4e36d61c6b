//! Live sync, the I/O part: one actor per project feeds the project's pure state machine
//! (`vibesync_engine::project::Project`, docs/PROTOCOL.md §6) its inputs and the clock, and
//! carries out the effects it asks for, one at a time and in order: WAL appends (the written
//! records go back to the machine), the COMMIT + registry apply under the daemon-wide
//! mutation turn (the registry applies in COMMIT order), frames to sessions, blob writes,
//! FINALs, governance. Every decision — queue, batch, forward, verify, finalize, replay — is
//! the machine's; reads of committed state reach it through [`DaemonView`].
//!
//! # Who drives the machine
//! The machine sits behind its project's lock, and one input or tick is driven to its end
//! under it. The actor task drives the clock (ticks at [`Project::next_wake`]) and the inputs
//! sent to it through its channel ([`SyncHub::send`]: joins, leaves, `applied`, resyncs, …).
//! A `change` request is driven by the session that read it, on its own task, when nothing
//! sent through the channel is still waiting ([`SyncHub::change`]): its `ack` and its `live`
//! previews are then queued (or written, crate::outbox) without a hand-off to the actor and
//! back — the change's path is as short as a plain relay's (docs/BENCHMARKS.md, "Live sync
//! against a plain relay"). Otherwise the change goes through the channel behind what waits
//! there, as every input did before. Either way inputs are driven one at a time, in the
//! order they were sent: a change is driven directly only when every input sent before it
//! has been driven. What follows the input — a window that closes at once, a batch to start
//! with its WAL appends — is the actor's, woken for it: a session never waits on a batch's
//! fsyncs.
//!
//! No locks are held across awaits except the project's lock while one step is driven and
//! the mutation turn around COMMIT + registry apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tracing::{warn, Instrument};
use vibesync_engine::governance::{Decision, Escalation};
use vibesync_engine::project::{Done, Editor, Effect, Project, Settings, View};
use vibesync_registry::Entry;

pub use vibesync_engine::project::{Input, ProjectSync};

pub(crate) use crate::host::Host;

/// A message to a project's actor: an input, and for a `change` request the reply completed
/// once its `ack` (and any corrective resync after it) is queued.
type Envelope = (Input, Option<oneshot::Sender<()>>);

/// What the hub, the actor task and the sessions share of one project.
struct Shared<H> {
    /// The machine and what carries out its effects; held while one step is driven.
    actor: tokio::sync::Mutex<Actor<H>>,
    /// Inputs sent through the channel and not driven yet: a `change` is driven by its
    /// session only when this is 0 (nothing sent before it is still waiting).
    queued: AtomicUsize,
    /// When the actor task's clock is set to wake it (ms on the actor's clock; `u64::MAX`:
    /// not set).
    armed_ms: AtomicU64,
    /// Wakes the actor task to look at the clock again (a session's step made a wake due
    /// sooner).
    rearm: Notify,
    /// Every line the machine logs names its project (not the session that drove it).
    span: tracing::Span,
    /// A step a session drove panicked: the machine may be half-way through it. The actor
    /// task ends and the next input starts a fresh one, as when a step of the actor task
    /// itself panics (the task ends with it).
    broken: AtomicBool,
}

/// The hub's hold on a project's actor. Weak: the actor task owns its state (which holds
/// the daemon), so the state goes when the task ends and never keeps the daemon alive.
struct Handle<H> {
    tx: mpsc::UnboundedSender<Envelope>,
    shared: Weak<Shared<H>>,
}

/// Routes inputs to per-project actors, starting them on first use.
pub struct SyncHub<H> {
    actors: Mutex<HashMap<String, Handle<H>>>,
    /// Per project, kept up to date by its actor (read by `status`).
    status: Arc<Mutex<BTreeMap<String, ProjectSync>>>,
    /// The actors' tasks, awaited by [`SyncHub::stop`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set by [`SyncHub::stop`]: no actor starts and no event is delivered or driven after
    /// it.
    stopped: AtomicBool,
    /// Per project, when its actor was last restarted at once after a step panicked
    /// ([`SyncHub::restart`]), within [`RESTART_WINDOW`].
    restarts: Mutex<HashMap<String, Vec<std::time::Instant>>>,
}

/// How a `change` sent to a project's sync ended ([`SyncHub::change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driven {
    /// Driven to its end: its `ack` is queued.
    Done,
    /// Not driven: the daemon is stopping.
    Stopped,
    /// A step of the project's sync panicked on it or before it (a bug): the sync restarts,
    /// and the change is neither taken nor refused.
    Panicked,
}

/// At most [`RESTARTS_AT_ONCE`] restarts of a project's sync within this window start at once;
/// beyond, its sync starts again on its next input (a bug that panics every step does not
/// spin).
const RESTART_WINDOW: Duration = Duration::from_secs(60);
const RESTARTS_AT_ONCE: usize = 5;

impl<H> Default for SyncHub<H> {
    fn default() -> Self {
        SyncHub {
            actors: Mutex::default(),
            status: Arc::default(),
            tasks: Mutex::default(),
            stopped: AtomicBool::new(false),
            restarts: Mutex::default(),
        }
    }
}

impl<H: Host> SyncHub<H> {
    /// Sync status of every project that has an actor.
    pub fn status(&self) -> BTreeMap<String, ProjectSync> {
        self.status.lock().unwrap().clone()
    }

    /// Send `input` to the project's actor (it is driven after every input sent before it).
    pub fn send(&self, daemon: &Arc<H>, project_id: &str, input: Input) {
        self.deliver(daemon, project_id, (input, None));
    }

    /// A `change` request, driven to its end (its `ack` queued) when this returns: by the
    /// calling session itself when nothing sent to the project before it is still waiting,
    /// else by the actor after those.
    pub async fn change(&self, daemon: &Arc<H>, project_id: &str, input: Input) -> Driven {
        let Some(shared) = self.shared(daemon, project_id) else { return Driven::Stopped };
        if shared.queued.load(Ordering::Acquire) == 0 {
            if let Ok(mut actor) = shared.actor.try_lock() {
                // Under the lock nothing else is driven; an input sent meanwhile waits for it.
                if shared.queued.load(Ordering::Acquire) == 0 && !self.stopped.load(Ordering::SeqCst) {
                    let span = shared.span.clone();
                    if !guarded(&shared, &mut actor, Some(input)).instrument(span).await {
                        return Driven::Panicked;
                    }
                    // A window that closes now, a due deadline, a deferred replay: the actor's.
                    let now = actor.now_ms();
                    let wake = actor.machine.next_wake(now);
                    let due = actor.machine.tick_due(now);
                    drop(actor);
                    if due || wake.is_some_and(|w| w < shared.armed_ms.load(Ordering::Acquire)) {
                        shared.rearm.notify_one();
                    }
                    return Driven::Done;
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        self.deliver(daemon, project_id, (input, Some(tx)));
        match rx.await {
            Ok(()) => Driven::Done,
            Err(_) if self.stopped.load(Ordering::SeqCst) => Driven::Stopped,
            // Dropped undriven or half-way: the actor broke on this input or before it.
            Err(_) => Driven::Panicked,
        }
    }

    /// Start `project_id`'s next actor now if its actor is gone or broken (a step panicked):
    /// it reads the stores again and its editors reconnect ([`Actor::reseed`]), without
    /// waiting for the project's next input.
    pub fn restart(&self, daemon: &Arc<H>, project_id: &str) {
        {
            let mut restarts = self.restarts.lock().unwrap();
            let recent = restarts.entry(project_id.to_string()).or_default();
            recent.retain(|t| t.elapsed() < RESTART_WINDOW);
            if recent.len() >= RESTARTS_AT_ONCE {
                tracing::error!(
                    project_id,
                    "the project's sync panicked {} times within {RESTART_WINDOW:?}; it starts again on its next input",
                    recent.len()
                );
                return;
            }
            recent.push(std::time::Instant::now());
        }
        let _ = self.shared(daemon, project_id);
    }

    /// The project's shared state, its actor started on first use; None once stopped.
    fn shared(&self, daemon: &Arc<H>, project_id: &str) -> Option<Arc<Shared<H>>> {
        let mut actors = self.actors.lock().unwrap();
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        self.handle(&mut actors, daemon, project_id).1
    }

    /// The project's actor (started now if it has none, or if its task ended: it ends only
    /// when its channel closes or a step panicked) and its shared state.
    fn handle<'m>(
        &self,
        actors: &'m mut HashMap<String, Handle<H>>,
        daemon: &Arc<H>,
        project_id: &str,
    ) -> (&'m mut Handle<H>, Option<Arc<Shared<H>>>) {
        if let Some(h) = actors.get(project_id) {
            let alive = |s: &Arc<Shared<H>>| !h.tx.is_closed() && !s.broken.load(Ordering::SeqCst);
            if let Some(shared) = h.shared.upgrade().filter(alive) {
                return (actors.get_mut(project_id).unwrap(), Some(shared));
            }
        }
        let restart = actors.contains_key(project_id);
        let (tx, rx) = mpsc::unbounded_channel();
        // Every line the actor logs names its project (not the session that woke it).
        let span = tracing::info_span!(parent: None, "sync", project_id = %project_id);
        let shared = Arc::new(Shared {
            actor: tokio::sync::Mutex::new(Actor::new(
                daemon.clone(),
                project_id.to_string(),
                self.status.clone(),
                restart,
            )),
            queued: AtomicUsize::new(0),
            armed_ms: AtomicU64::new(u64::MAX),
            rearm: Notify::new(),
            span: span.clone(),
            broken: AtomicBool::new(false),
        });
        self.tasks.lock().unwrap().push(tokio::spawn(run(shared.clone(), rx).instrument(span)));
        let handle = Handle { tx, shared: Arc::downgrade(&shared) };
        actors.insert(project_id.to_string(), handle);
        (actors.get_mut(project_id).unwrap(), Some(shared))
    }

    fn deliver(&self, daemon: &Arc<H>, project_id: &str, ev: Envelope) {
        let mut actors = self.actors.lock().unwrap();
        if self.stopped.load(Ordering::SeqCst) {
            return; // the daemon is stopping: nothing new starts
        }
        let (handle, shared) = self.handle(&mut actors, daemon, project_id);
        let Some(shared) = shared else { return };
        // Counted before it is sent: a session that then finds the count at 0 knows this
        // input has been driven.
        shared.queued.fetch_add(1, Ordering::AcqRel);
        if handle.tx.send(ev).is_err() {
            // The actor ends only when its channel closes (stop), never while it is in the map.
            shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A graceful stop, before the stores close: every actor finishes the step it is
    /// driving (a session's `change` too) and ends; nothing more is appended to the WAL by
    /// sync. A batch still waiting for answers is left open: the next boot ends it as
    /// `RECOVERED_INCOMPLETE` — a cut batch, never a failure counted against its objects
    /// (docs/PROTOCOL.md §6.7) — and its origin re-sends it (docs/WAL.md).
    pub async fn stop(&self, timeout: std::time::Duration) {
        let (tasks, driven) = {
            let mut actors = self.actors.lock().unwrap();
            self.stopped.store(true, Ordering::SeqCst);
            // Closing every channel ends each actor's loop; a session may still be driving a
            // step, holding the project's state.
            let driven: Vec<Weak<Shared<H>>> = actors.drain().map(|(_, h)| h.shared).collect();
            (std::mem::take(&mut *self.tasks.lock().unwrap()), driven)
        };
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
            // A step a session is driving ends before the stores close.
            for shared in driven.iter().filter_map(Weak::upgrade) {
                let _ = shared.actor.lock().await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!("sync actors still busy after {timeout:?} at shutdown; stopping without them");
        }
    }
}

/// What the machine reads of the daemon: the project's registry entries, the blob store,
/// the WAL's position, the connected sessions and the governance gate.
struct DaemonView<'a, H> {
    daemon: &'a H,
    project: &'a str,
}

impl<H: Host> View for DaemonView<'_, H> {
    fn lookup(&self, uuid: &str) -> Result<Option<Arc<Entry>>, String> {
        self.daemon.stores().registry.lookup_shared(self.project, uuid).map_err(|e| e.to_string())
    }
    fn live_entries(&self) -> Result<Vec<Entry>, String> {
        self.daemon.stores().registry.live_entries(Some(self.project)).map_err(|e| e.to_string())
    }
    fn archived_entries(&self) -> Result<Vec<Entry>, String> {
        self.daemon.stores().registry.archived_entries(Some(self.project)).map_err(|e| e.to_string())
    }
    fn archived(&self, uuid: &str) -> Result<Vec<Entry>, String> {
        self.daemon.stores().registry.archived(self.project, uuid).map_err(|e| e.to_string())
    }
    fn any_archived(&self) -> bool {
        self.daemon.stores().registry.counts().tombstoned > 0
    }
    fn blob_len(&self, hash: &str) -> Result<Option<u64>, String> {
        self.daemon.stores().blob_len(hash).map_err(|e| e.to_string())
    }
    fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>, String> {
        self.daemon.stores().get_blob(hash).map_err(|e| e.to_string())
    }
    fn last_seq(&self) -> u64 {
        self.daemon.last_seq()
    }
    fn anchor_seq(&self) -> u64 {
        self.daemon.stores().anchor_seq()
    }
    fn sessions(&self) -> Vec<Editor> {
        self.daemon.sessions_of(self.project)
    }
    fn session(&self, session_id: &str) -> Option<Editor> {
        self.daemon.session(session_id)
    }
    fn deleting(&self) -> Vec<String> {
        self.daemon.deleting(self.project)
    }
    fn safe_mode(&self) -> bool {
        self.daemon.safe_mode()
    }
    fn gate(&self, uuid: &str, op: &str, next_hash: &dyn Fn() -> Option<String>) -> Decision {
        let now = crate::stores::unix_ms();
        self.daemon.stores().governance.lock().unwrap().gate_with(uuid, op, next_hash, now)
    }
}

/// One project's actor: its machine, and what carries out the machine's effects.
struct Actor<H> {
    daemon: Arc<H>,
    project: String,
    machine: Project,
    settings: Settings,
    status: Arc<Mutex<BTreeMap<String, ProjectSync>>>,
    epoch: Instant,
    /// An earlier actor of the project stopped (a step panicked): the first step rebuilds the
    /// machine from the stores as they are now ([`Actor::reseed`]).
    reseed: bool,
}

/// A project's machine, seeded with what the WAL says besides the registry.
fn seeded(project: String, settings: Settings, seed: crate::stores::SyncSeed) -> Project {
    let mut machine = Project::new(project, settings, seed.rolled_back, seed.late_commits, seed.not_synced);
    machine.restore_kept(seed.kept);
    machine
}

impl<H: Host> Actor<H> {
    /// `restart`: an earlier actor of the project stopped (a step panicked); this one starts
    /// with [`Actor::reseed`].
    fn new(
        daemon: Arc<H>,
        project: String,
        status: Arc<Mutex<BTreeMap<String, ProjectSync>>>,
        restart: bool,
    ) -> Actor<H> {
        let c = daemon.config();
        let settings = Settings {
            batch_window_ms: c.sync.batch_window_ms,
            live_interval_ms: c.sync.live_interval_ms,
            verify_timeout_ms: c.sync.verify_timeout_ms,
            user_idle_ms: c.governance.user_idle_ms,
            pipelining: c.sync.pipelining,
            batch_limit: vibesync_engine::sync::BatchLimit {
                changes: c.sync.max_batch_changes, // at least 1 (`Config::load`)
                mesh_bytes: c.sync.max_batch_mesh_bytes,
            },
        };
        // The not-synced list and what editors keep, rebuilt from the WAL at boot
        // (vibesync_engine::notsynced): a restart forgets no kept edit, nor what its editor
        // holds of other editors' values. After a step panicked, the first step reads them
        // again, as a boot would now (`reseed`).
        let machine = seeded(project.clone(), settings, daemon.stores().seed_at_boot(&project));
        Actor { daemon, project, machine, settings, status, epoch: Instant::now(), reseed: restart }
    }

    /// The machine again, from what a boot would read now (`Stores::seed_now`). What boot read
    /// is older than what the stopped machine held: rollbacks, late COMMITs and not-synced
    /// entries since, and kept values since forgotten. The sync batches the stopped machine
    /// left open are rolled back (`RECOVERED_INCOMPLETE`), those it committed without a FINAL
    /// finalized. Then every session of the project is
    /// disconnected (`SYNC_RESTARTED`): what the stopped machine held of them — changes
    /// admitted and not yet in a batch, batches sent and not answered, joins not yet driven —
    /// is gone, so each editor reconnects as after a daemon restart, takes the replay after its
    /// `last_seq` and re-sends its changes that have no `batch_result` (docs/PROTOCOL.md §6.6).
    /// A read that fails keeps boot's.
    async fn reseed(&mut self) {
        let (stores, project) = (self.daemon.stores().clone(), self.project.clone());
        // Read before the WAL: a FINAL written after it is in the WAL read.
        let finalizing = self.daemon.finalizing();
        let why = match tokio::task::spawn_blocking(move || stores.seed_now(&project, &finalizing)).await {
            Ok(Ok(seed)) => {
                self.machine = seeded(self.project.clone(), self.settings, seed);
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            tracing::error!("the restarted sync starts from what boot read of the WAL: {why}");
        }
        let kicked = self.daemon.restart_sessions(&self.project);
        tracing::warn!(sessions = ?kicked, "the project's sync restarted: its sessions reconnect");
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Run one step of the machine (an input, or a tick when `None`) to its end, carrying
    /// out each effect and handing its outcome back.
    async fn drive(&mut self, input: Option<Input>) {
        if std::mem::take(&mut self.reseed) {
            self.reseed().await;
        }
        #[cfg(feature = "fault-injection")]
        if self.daemon.stores().take_step_panic(&self.project, crate::stores::StepPanic::AtStart) {
            panic!("a step panic injected for a test (fault-injection)");
        }
        let epoch = self.epoch;
        let now = || epoch.elapsed().as_millis() as u64;
        let view = DaemonView { daemon: &*self.daemon, project: &self.project };
        let mut step = match input {
            Some(input) => self.machine.input(&view, input, now()),
            None => self.machine.tick(&view, now()),
        };
        let mut done = None;
        while let Some(effect) = step.next(done.take(), now()) {
            #[cfg(feature = "fault-injection")]
            if matches!(&effect, Effect::Finalize { session_id, .. } if session_id == crate::txn::SYNC_SESSION)
                && self.daemon.stores().take_step_panic(&self.project, crate::stores::StepPanic::BeforeFinal)
            {
                panic!("a panic before a sync batch's FINAL injected for a test (fault-injection)");
            }
            done = Some(perform(&self.daemon, &self.project, &self.status, effect).await);
        }
    }
}

/// The actor task: the clock, and the inputs sent through the channel, each driven under the
/// project's lock after every input sent before it. A restarted actor first reads the stores
/// again ([`Actor::reseed`]) before anything else is driven.
async fn run<H: Host>(shared: Arc<Shared<H>>, mut rx: mpsc::UnboundedReceiver<Envelope>) {
    {
        let mut actor = shared.actor.lock().await;
        if actor.reseed && !guarded(&shared, &mut actor, None).await {
            return;
        }
    }
    loop {
        let (epoch, wake) = {
            let mut actor = shared.actor.lock().await;
            if shared.broken.load(Ordering::SeqCst) {
                return; // the waiting inputs' replies are dropped: their sessions are told
            }
            let now = actor.now_ms();
            let wake = actor.machine.next_wake(now);
            shared.armed_ms.store(wake.unwrap_or(u64::MAX), Ordering::Release);
            (actor.epoch, wake)
        };
        let at = epoch + Duration::from_millis(wake.unwrap_or(0));
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = tokio::time::sleep_until(at), if wake.is_some() => {
                if !tick(&shared).await {
                    return;
                }
                continue;
            }
            // A session's step made a wake due sooner than the one armed.
            _ = shared.rearm.notified() => {
                if !tick(&shared).await {
                    return;
                }
                continue;
            }
        };
        let Some((input, reply)) = ev else { return };
        let mut actor = shared.actor.lock().await;
        if shared.broken.load(Ordering::SeqCst) || !guarded(&shared, &mut actor, Some(input)).await {
            return;
        }
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
        // Zero-length windows close at once.
        if !guarded(&shared, &mut actor, None).await {
            return;
        }
    }
}

/// A tick of the clock, unless a step a session drove left the machine broken. False when
/// the actor is broken (this task ends).
async fn tick<H: Host>(shared: &Shared<H>) -> bool {
    let mut actor = shared.actor.lock().await;
    !shared.broken.load(Ordering::SeqCst) && guarded(shared, &mut actor, None).await
}

/// Drive one step of the actor (an input, or a tick), under its lock. A step that panics (a
/// bug) leaves the machine half-way through it: the actor is marked broken and the project's
/// next actor starts at once, from the stores (its editors reconnect, [`Actor::reseed`]).
/// False then.
async fn guarded<H: Host>(shared: &Shared<H>, actor: &mut Actor<H>, input: Option<Input>) -> bool {
    let step = std::panic::AssertUnwindSafe(actor.drive(input));
    if futures::FutureExt::catch_unwind(step).await.is_ok() {
        return true;
    }
    tracing::error!(parent: &shared.span, "a sync step panicked; the project's sync restarts from the stores");
    shared.broken.store(true, Ordering::SeqCst);
    shared.rearm.notify_one();
    actor.daemon.restart_sync(&actor.project);
    false
}

/// Carry out one effect of a project's machine.
async fn perform<H: Host>(
    daemon: &Arc<H>,
    project: &str,
    status: &Mutex<BTreeMap<String, ProjectSync>>,
    effect: Effect,
) -> Done {
    match effect {
        Effect::Send { session_id, frames } => Done::Sent(daemon.send_frames(&session_id, frames).await),
        Effect::Offer { session_id, frames } => Done::Offered(daemon.offer_frames(&session_id, frames).await),
        Effect::Append(drafts) => Done::Appended(daemon.stores().wal.append(drafts).await.map_err(|e| e.to_string())),
        Effect::Commit { commit, mut records } => {
            let _turn = daemon.mutation_turn().await;
            let written = match daemon.stores().wal.append(vec![commit]).await {
                Ok(r) => r,
                Err(e) => return Done::Appended(Err(e.to_string())),
            };
            records.extend(written.iter().cloned());
            Done::Appended(daemon.stores().apply_committed(&records).map(|()| written).map_err(|e| e.to_string()))
        }
        Effect::StoreBlob { hash, bytes } => {
            let stores = daemon.stores().clone();
            let stored = tokio::task::spawn_blocking(move || stores.put_blob(&hash, &bytes)).await;
            Done::Stored(match stored {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            })
        }
        Effect::Finalize { session_id, operation_id, uuids } => {
            daemon.finalize_later(session_id, project.to_string(), operation_id, uuids);
            Done::Ok
        }
        Effect::Observe(record) => {
            Done::Escalation(daemon.stores().governance.lock().unwrap().observe(&crate::stores::observed(&record)))
        }
        Effect::Escalate(esc) => {
            escalate(daemon, project, esc).await;
            Done::Ok
        }
        Effect::StorageFailed { operation_id, message, answer: Some((session_id, request_id)) } => {
            let frame = daemon.storage_failure_frame(&request_id, &operation_id, message);
            daemon.send_frames(&session_id, vec![frame]).await;
            Done::Ok
        }
        Effect::StorageFailed { operation_id, message, answer: None } => {
            daemon.storage_failure_notice(&operation_id, &message);
            Done::Ok
        }
        Effect::Status(now) => {
            status.lock().unwrap().insert(project.to_string(), now);
            Done::Ok
        }
    }
}

/// Carry out what a new failure calls for, smallest thing first (docs/PROTOCOL.md §6.7), as
/// WAL transactions.
async fn escalate<H: Host>(daemon: &Arc<H>, project: &str, esc: Escalation) {
    if !esc.quarantine.is_empty() {
        let _turn = daemon.mutation_turn().await;
        let steps = esc
            .quarantine
            .iter()
            .map(|u| json!({"op": "quarantine", "uuid": u, "reason": "repeated sync failures"}))
            .collect();
        match daemon
            .stores()
            .daemon_txn(project, esc.quarantine.clone(), steps, json!({"op": "governance_quarantine"}))
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
