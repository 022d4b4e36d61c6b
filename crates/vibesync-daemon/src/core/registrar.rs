//! Group commit for `register` and `tombstone` (docs/ARCHITECTURE.md, "registrar").
//!
//! Requests from every session queue for one registrar thread. It takes every request that
//! is waiting as one group — stopping before a request that names a uuid already in the
//! group or in a group in flight, so no plan depends on a transaction not yet applied —
//! plans each against the registry and starts the group's WAL append (one append for all of
//! its transactions) without waiting for it: while up to [`PIPELINE_DEPTH`] appends are in
//! flight (the WAL writer syncs what is queued together), new requests form the next group.
//! As appends become durable, in append order (= COMMIT order), the groups whose appends
//! finished together are applied to the registry as one sled batch and each request
//! answered.
//! A group's FINALs (written once it is applied, docs/WAL.md §9; a `tombstone`'s is its
//! project's sync's, once it has relayed the deletes) ride with the next group's
//! append, so a stream of requests pays one fdatasync per group, not two; when no request
//! comes within [`FINAL_LINGER`] they are written alone. Nothing here runs
//! on the async workers, and no request waits on a sled flush: the registry is flushed in the
//! background (the WAL is the truth; boot catches the registry up from it, docs/WAL.md §8).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;
use tracing::{info, warn};
use vibesync_engine::register::{self, Existing, Plan, Requester, View};
use vibesync_protocol::message::{Register, Tombstone};
use vibesync_protocol::{Frame, ItemStatus, Outbound};

use super::{Daemon, SessionInfo};
use crate::sync::Input;
use crate::txn::Txn;

/// A group stops growing at this many items (bounds one append and one reply burst).
const MAX_GROUP_ITEMS: usize = 50_000;
/// How long applied groups' FINALs wait for the next group's append before they are
/// written alone (the audit's lag grows by at most this).
const FINAL_LINGER: Duration = Duration::from_millis(5);
/// How long a graceful stop waits for FINALs the idle registrar is writing.
const SHUTDOWN_FINALS_WAIT: Duration = Duration::from_secs(10);

/// The FINAL of an applied, acknowledged registrar transaction, not yet written.
pub(super) struct PendingFinal {
    session_id: String,
    project_id: String,
    operation_id: String,
    uuids: Vec<String>,
}

impl PendingFinal {
    fn draft(&self) -> vibesync_wal::RecordDraft {
        let txn = Txn { session_id: &self.session_id, operation_id: &self.operation_id, project_id: &self.project_id };
        txn.final_draft(self.uuids.clone(), json!({}))
    }
}

pub(super) enum Request {
    Register(Register),
    Tombstone(Tombstone),
}

impl Request {
    fn uuids(&self) -> impl Iterator<Item = &str> {
        let (a, b) = match self {
            Request::Register(r) => (
                Some(r.items.iter().flat_map(|i| std::iter::once(i.uuid.as_str()).chain(i.duplicate_of.as_deref()))),
                None,
            ),
            Request::Tombstone(t) => (None, Some(t.uuids.iter().map(String::as_str))),
        };
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }

    fn len(&self) -> usize {
        match self {
            Request::Register(r) => r.items.len(),
            Request::Tombstone(t) => t.uuids.len(),
        }
    }

    fn request_id(&self) -> &str {
        match self {
            Request::Register(r) => &r.request_id,
            Request::Tombstone(t) => &t.request_id,
        }
    }

    fn op(&self) -> &'static str {
        match self {
            Request::Register(_) => "register",
            Request::Tombstone(_) => "tombstone",
        }
    }
}

pub(super) struct Job {
    pub sess: SessionInfo,
    pub request: Request,
    pub reply: oneshot::Sender<Frame>,
}

/// What the registrar thread receives: requests, and the outcome of its own WAL appends.
pub(super) enum Event {
    Job(Job),
    /// The append of in-flight group `id` is durable (or failed).
    Durable {
        id: u64,
        outcome: Result<Vec<vibesync_wal::Record>, vibesync_wal::WalError>,
    },
}

/// Groups whose WAL append may be in flight at once. A group never names a uuid of a group
/// in flight, so its plan does not depend on them; they are applied in the order they were
/// appended, which is COMMIT order.
const PIPELINE_DEPTH: usize = 4;
/// Groups started under one hold of the mutation turn; then the turn is released (after the
/// groups in flight are applied) so the sync actors' commits are not starved.
const GROUPS_PER_TURN: u64 = 16;

/// Start the registrar thread for `daemon`; it ends when the returned sender is dropped.
pub(super) fn start(daemon: &Arc<Daemon>) -> Sender<Event> {
    let (tx, rx) = std::sync::mpsc::channel();
    let weak = Arc::downgrade(daemon);
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("vibesync-registrar".into())
        .spawn(move || {
            let _rt = rt.enter(); // the tombstones' sync events are sent from here
            run(weak, rx)
        })
        .expect("spawn the registrar thread");
    tx
}

fn run(daemon: Weak<Daemon>, rx: Receiver<Event>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match next_job(&daemon, &rx) {
                Some(j) => waiting.push_back(j),
                None => return,
            }
        }
        let Some(d) = daemon.upgrade() else { return };
        d.pipeline(&rx, &mut waiting);
    }
}

/// The next request; while FINALs wait for a ride, wait at most [`FINAL_LINGER`] for it and
/// then write them alone. None: the daemon is gone (the FINALs left are written first).
/// Called with nothing in flight, so only requests arrive.
fn next_job(daemon: &Weak<Daemon>, rx: &Receiver<Event>) -> Option<Job> {
    loop {
        // The daemon is not held while waiting: dropping it is what ends this thread.
        let finals_wait = daemon.upgrade().is_some_and(|d| !d.registrar_finals.lock().unwrap().is_empty());
        let got = if finals_wait {
            rx.recv_timeout(FINAL_LINGER)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match got {
            Ok(Event::Job(j)) => return Some(j),
            Ok(Event::Durable { .. }) => {}
            Err(RecvTimeoutError::Timeout) => {
                if let Some(d) = daemon.upgrade() {
                    d.write_registrar_finals_blocking();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(d) = daemon.upgrade() {
        d.write_registrar_finals_blocking();
    }
    None
}

/// Take the next group from the front of `waiting`: every request up to the first that names
/// a uuid of the group or of a group in flight (`busy`), at most [`MAX_GROUP_ITEMS`] items.
fn take_group(waiting: &mut VecDeque<Job>, busy: &HashSet<String>) -> (Vec<Job>, HashSet<String>) {
    let mut touched: HashSet<String> = HashSet::new();
    let mut items = 0;
    let mut group = Vec::new();
    while let Some(next) = waiting.front() {
        if items >= MAX_GROUP_ITEMS || next.request.uuids().any(|u| touched.contains(u) || busy.contains(u)) {
            break;
        }
        let next = waiting.pop_front().expect("front exists");
        touched.extend(next.request.uuids().map(str::to_string));
        items += next.request.len();
        group.push(next);
    }
    (group, touched)
}

struct Planned {
    job: Job,
    plan: Plan,
    operation_id: String,
    records: Range<usize>,
}

/// The `(project, uuid)` keys a planned `tombstone` marks as committing (`Daemon::deleting`):
/// none when it writes nothing.
fn deleting_keys(p: &Planned) -> impl Iterator<Item = (String, String)> + '_ {
    let writes = matches!(p.job.request, Request::Tombstone(_)) && !p.records.is_empty();
    let uuids = if writes { p.plan.uuids.as_slice() } else { &[] };
    uuids.iter().map(|u| (p.job.sess.project_id.clone(), u.clone()))
}

/// A group whose append was started.
struct InFlight {
    id: u64,
    planned: Vec<Planned>,
    touched: HashSet<String>,
    outcome: Option<Result<Vec<vibesync_wal::Record>, vibesync_wal::WalError>>,
}

impl Daemon {
    /// Under the mutation turn: start groups from `waiting` (plan, WAL append) while the
    /// pipeline has room, and apply and answer each one once its append is durable, in append
    /// order; new requests are taken in while appends are in flight. Returns with nothing in
    /// flight: when no request is left, or after [`GROUPS_PER_TURN`] groups (the rest stay in
    /// `waiting`).
    fn pipeline(self: &Arc<Self>, rx: &Receiver<Event>, waiting: &mut VecDeque<Job>) {
        let turn = self.mutation.blocking_lock();
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut started = 0u64;
        loop {
            // Take in everything that arrived.
            while let Ok(e) = rx.try_recv() {
                self.take_in(e, waiting, &mut inflight);
            }
            // Apply and answer the groups at the front whose appends are done, in order.
            // Appends the WAL writer synced together finish together: their groups go to the
            // registry as one sled batch.
            let mut done = Vec::new();
            while inflight.front().is_some_and(|g| g.outcome.is_some()) {
                done.push(inflight.pop_front().expect("front exists"));
            }
            self.finish_groups(done);
            if inflight.len() < PIPELINE_DEPTH && started < GROUPS_PER_TURN && !waiting.is_empty() {
                let busy: HashSet<String> = inflight.iter().flat_map(|g| g.touched.iter().cloned()).collect();
                let (group, touched) = take_group(waiting, &busy);
                if !group.is_empty() {
                    // Ids only tell apart the groups of this call: it returns with none in flight.
                    started += 1;
                    if let Some(g) = self.start_group(started, group, touched) {
                        inflight.push_back(g);
                    }
                    continue;
                }
            }
            if inflight.is_empty() {
                break;
            }
            // Wait for an append to finish or a request to arrive. Each append in flight
            // holds a sender, so the channel cannot close while one is.
            match rx.recv() {
                Ok(e) => self.take_in(e, waiting, &mut inflight),
                Err(_) => {
                    let why = "the registrar's channel closed with appends in flight".to_string();
                    for g in inflight.drain(..) {
                        self.fail_group(g.planned, &why);
                    }
                    break;
                }
            }
        }
        drop(turn);
    }

    fn take_in(&self, e: Event, waiting: &mut VecDeque<Job>, inflight: &mut VecDeque<InFlight>) {
        match e {
            Event::Job(j) => waiting.push_back(j),
            Event::Durable { id, outcome } => {
                if let Some(g) = inflight.iter_mut().find(|g| g.id == id) {
                    g.outcome = Some(outcome);
                }
            }
        }
    }

    /// Plan a group and start its WAL append (with the FINALs of groups already applied in
    /// front). None: the group was answered at once (nothing to write, or the append could
    /// not start).
    fn start_group(self: &Arc<Self>, id: u64, group: Vec<Job>, touched: HashSet<String>) -> Option<InFlight> {
        // The FINALs of earlier groups (applied before this append starts) go first.
        let mut drafts = self.take_registrar_finals();
        let mut planned = Vec::with_capacity(group.len());
        for job in group {
            let sess = &job.sess;
            let plan = {
                let view = RegistryView { daemon: self, project_id: &sess.project_id, editor: sess.editor };
                let who = Requester {
                    session_id: &sess.session_id,
                    editor: sess.editor.as_str(),
                    client_id: &sess.client_id,
                };
                match &job.request {
                    Request::Register(r) => register::plan_register(&r.items, &who, &view),
                    Request::Tombstone(t) => register::plan_tombstone(&t.uuids, &who, &view),
                }
            };
            let operation_id = uuid::Uuid::new_v4().to_string();
            if let Some(why) = &plan.storage_failure {
                // Its items answer STORAGE_FAILED; the registry can no longer be trusted, so
                // the daemon stops (docs/ARCHITECTURE.md, storage invariant).
                self.storage_failure_notice(&operation_id, &format!("registry read failed: {why}"));
            }
            let start = drafts.len();
            if plan.writes_anything() {
                let txn =
                    Txn { session_id: &sess.session_id, operation_id: &operation_id, project_id: &sess.project_id };
                let op = job.request.op();
                drafts.extend(txn.drafts(
                    &plan.uuids,
                    json!({"op": op, "request_id": job.request.request_id(), "editor": sess.editor, "items": plan.results.len()}),
                    plan.steps.clone(),
                    json!({"op": op, "results": summarize(&plan), "collisions": plan.collisions}),
                ));
                for d in plan.steps.iter().filter(|s| s["op"] == "duplicate") {
                    warn!(operation_id = %operation_id, uuid = %d["uuid"].as_str().unwrap_or(""), duplicate_of = %d["duplicate_of"].as_str().unwrap_or(""), "editor resolved a duplicated uuid: the copy got a fresh uuid");
                }
                for c in &plan.collisions {
                    warn!(operation_id = %operation_id, uuid = %c["uuid"].as_str().unwrap_or(""), reason = %c["reason"].as_str().unwrap_or(""), "uuid collision refused");
                }
            }
            planned.push(Planned { job, plan, operation_id, records: start..drafts.len() });
        }
        if drafts.is_empty() {
            self.finish_groups(vec![InFlight { id, planned, touched, outcome: Some(Ok(Vec::new())) }]);
            return None;
        }
        // Until the registry has applied them, a sync batch formed meanwhile would read these
        // records live: windows holding a change of one wait (`Daemon::deleting`).
        self.deleting.lock().unwrap().extend(planned.iter().flat_map(deleting_keys));
        let tx = self.registrar.get().expect("the registrar runs, so its sender is set").clone();
        let then = move |outcome| {
            let _ = tx.send(Event::Durable { id, outcome });
        };
        match self.stores.wal.append_then(drafts, then) {
            Ok(()) => Some(InFlight { id, planned, touched, outcome: None }),
            Err(e) => {
                self.forget_deleting(planned.iter().flat_map(deleting_keys));
                self.fail_group(planned, &e.to_string());
                None
            }
        }
    }

    /// Answer every request of a group with STORAGE_FAILED (`why`).
    fn fail_group(&self, planned: Vec<Planned>, why: &str) {
        for p in planned {
            let f = self.storage_failure(p.job.request.request_id(), &p.operation_id, why.to_string());
            let _ = p.job.reply.send(f.to_frame());
        }
    }

    /// Apply groups whose appends finished (in append order) to the registry — each run of
    /// successful appends as one sled batch, in COMMIT order — then answer each request and
    /// queue its FINAL. A failed append fails its group.
    fn finish_groups(self: &Arc<Self>, groups: Vec<InFlight>) {
        let deleting: Vec<_> = groups.iter().flat_map(|g| g.planned.iter().flat_map(deleting_keys)).collect();
        let mut run: Vec<(Vec<Planned>, Vec<vibesync_wal::Record>)> = Vec::new();
        for g in groups {
            match g.outcome.expect("finished groups have an outcome") {
                Ok(records) => run.push((g.planned, records)),
                Err(e) => {
                    self.answer_groups(std::mem::take(&mut run));
                    self.fail_group(g.planned, &e.to_string());
                }
            }
        }
        self.answer_groups(run);
        // Applied (or failed): the registry read now tells what these tombstones did.
        self.forget_deleting(deleting);
    }

    /// Tombstones no longer committing: applied, failed, or whose append could not start.
    fn forget_deleting(&self, keys: impl IntoIterator<Item = (String, String)>) {
        let mut d = self.deleting.lock().unwrap();
        for k in keys {
            d.remove(&k);
        }
    }

    /// Apply consecutive durable groups to the registry as one sled batch and answer them.
    fn answer_groups(self: &Arc<Self>, run: Vec<(Vec<Planned>, Vec<vibesync_wal::Record>)>) {
        let txns: Vec<&[vibesync_wal::Record]> = run
            .iter()
            .flat_map(|(planned, records)| {
                planned.iter().filter(|p| !p.records.is_empty()).map(move |p| &records[p.records.clone()])
            })
            .collect();
        if !txns.is_empty() {
            if let Err(e) = self.stores.apply_committed_group(&txns) {
                // The WAL has it; the registry catches up from the WAL at next boot.
                let why = format!("registry apply failed: {e}");
                for (planned, _) in run {
                    self.fail_group(planned, &why);
                }
                return;
            }
        }
        for (planned, records) in run {
            self.answer_group(planned, &records);
        }
    }

    /// Answer each request of an applied group and queue its FINAL.
    fn answer_group(self: &Arc<Self>, planned: Vec<Planned>, records: &[vibesync_wal::Record]) {
        for p in planned {
            let Planned { job, plan, operation_id, records: range } = p;
            let request_id = job.request.request_id().to_string();
            let sess = &job.sess;
            let mut seq = 0;
            if !range.is_empty() {
                let txn = &records[range];
                seq = txn.last().map(|r| r.seq).unwrap_or(0);
                info!(operation_id = %operation_id, uuids = ?plan.uuids, seq, op = job.request.op(), "committed");
                // A tombstone's FINAL is the project's sync's, once it has relayed the deletes
                // (`Input::Tombstoned`): a tombstone with no FINAL is one whose relay a stop
                // may have cut, and boot records it as a late delete (docs/WAL.md §9).
                let relayed = matches!(job.request, Request::Tombstone(_)) && !plan.uuids.is_empty();
                if relayed {
                    self.unrelayed.lock().unwrap().insert(
                        operation_id.clone(),
                        vibesync_wal::UnfinalizedTx {
                            operation_id: operation_id.clone(),
                            session_id: sess.session_id.clone(),
                            project_id: sess.project_id.clone(),
                            uuids: plan.uuids.clone(),
                            begin_seq: txn.first().map(|r| r.seq).unwrap_or(seq),
                            commit_seq: seq,
                        },
                    );
                } else {
                    self.registrar_finals.lock().unwrap().push(PendingFinal {
                        session_id: sess.session_id.clone(),
                        project_id: sess.project_id.clone(),
                        operation_id: operation_id.clone(),
                        uuids: plan.uuids.clone(),
                    });
                }
            }
            match &job.request {
                Request::Register(_) => {
                    let mut claims = self.claims.lock().unwrap();
                    for r in plan.results.iter().filter(|r| {
                        matches!(r.status, ItemStatus::Registered | ItemStatus::Updated | ItemStatus::Unchanged)
                    }) {
                        claims.insert((sess.project_id.clone(), sess.editor, r.uuid.clone()), sess.session_id.clone());
                    }
                }
                Request::Tombstone(_) => {
                    let gone: HashSet<&String> = plan.uuids.iter().collect();
                    self.claims.lock().unwrap().retain(|(p, _, id), _| !(p == &sess.project_id && gone.contains(id)));
                    if seq > 0 && !plan.uuids.is_empty() {
                        self.sync.send(
                            self,
                            &sess.project_id,
                            Input::Tombstoned {
                                origin: sess.session_id.clone(),
                                operation_id: operation_id.clone(),
                                uuids: plan.uuids.clone(),
                                seq,
                            },
                        );
                    }
                }
            }
            let ack = Outbound::Ack { request_id, seq, results: plan.results };
            let _ = job.reply.send(ack.to_frame());
        }
    }
}

impl Daemon {
    fn take_registrar_finals(&self) -> Vec<vibesync_wal::RecordDraft> {
        std::mem::take(&mut *self.registrar_finals.lock().unwrap()).iter().map(PendingFinal::draft).collect()
    }

    /// Write the FINALs waiting for a ride, alone (the registrar thread, idle). The take and
    /// the raise of `registrar_finals_writing` happen under one lock, so a graceful stop never
    /// sees "nothing waiting, nothing being written" while these are on their way.
    fn write_registrar_finals_blocking(&self) {
        let drafts: Vec<vibesync_wal::RecordDraft> = {
            let mut waiting = self.registrar_finals.lock().unwrap();
            if waiting.is_empty() {
                return;
            }
            self.registrar_finals_writing.send_modify(|n| *n += 1);
            std::mem::take(&mut *waiting).iter().map(PendingFinal::draft).collect()
        };
        if let Err(e) = self.stores.wal.append_blocking(drafts) {
            tracing::error!("registrar FINALs not written: {e}; boot recovery will finalize them");
        }
        self.registrar_finals_writing.send_modify(|n| *n -= 1);
    }

    /// Graceful shutdown, before the stores close: write the FINALs waiting for a ride, and
    /// wait for the ones the registrar is writing alone, so the audit (fed when they are
    /// durable) holds them before it closes (at most `SHUTDOWN_FINALS_WAIT`; what is left is
    /// committed by the next boot, docs/WAL.md §9).
    pub(super) async fn write_registrar_finals(&self) {
        let drafts = self.take_registrar_finals();
        if !drafts.is_empty() {
            if let Err(e) = self.stores.wal.append(drafts).await {
                tracing::error!("registrar FINALs not written: {e}; boot recovery will finalize them");
            }
        }
        let mut writing = self.registrar_finals_writing.subscribe();
        if tokio::time::timeout(SHUTDOWN_FINALS_WAIT, writing.wait_for(|n| *n == 0)).await.is_err() {
            tracing::warn!("registrar FINALs still being written at shutdown; the next boot audits them");
        }
    }
}

struct RegistryView<'a> {
    daemon: &'a Daemon,
    project_id: &'a str,
    editor: vibesync_protocol::ClientKind,
}

impl View for RegistryView<'_> {
    fn live(&self, uuid: &str) -> Result<Option<Existing>, String> {
        self.daemon.stores.existing(self.project_id, uuid, self.editor.as_str()).map_err(|e| e.to_string())
    }
    fn claimed_by(&self, uuid: &str) -> Option<String> {
        self.daemon.claims.lock().unwrap().get(&(self.project_id.to_string(), self.editor, uuid.to_string())).cloned()
    }
}

fn summarize(plan: &Plan) -> serde_json::Value {
    let mut counts: HashMap<ItemStatus, u64> = HashMap::new();
    for r in &plan.results {
        *counts.entry(r.status).or_default() += 1;
    }
    json!(counts.into_iter().map(|(k, v)| (k.as_str(), v)).collect::<HashMap<_, _>>())
}
