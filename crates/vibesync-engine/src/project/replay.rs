//! Pipeline step `replay` of a project's sync: what a (re)connecting editor missed after its
//! `last_seq` (docs/PROTOCOL.md §6.6), answers to `resync` requests, and the corrective
//! resync batches the other steps ask for (a STALE change, a conflict's loser, a rollback,
//! a released quarantine), each checked against the hashes its receiver answers.

use crate::fast::{HashMap, HashSet};
use std::collections::BTreeMap;

use tracing::{debug, info};
use vibesync_protocol::{Outbound, PathKind};
use vibesync_registry::Status;

use super::{Cx, Deferred, Editor, Effect, Input, Project, ResyncCheck, SessionId, View};
use crate::sync::{ChangeOp, ObjectState, Queued};

impl Project {
    /// The authoritative state of `uuids` as ops: `create` with the full state, or `delete`.
    /// `None` after a storage read failure (the daemon stops; nothing is sent — a read
    /// failure must never reach an editor as `delete`).
    pub(super) async fn authoritative_ops(&self, cx: &Cx<'_>, uuids: &[String]) -> Option<Vec<(String, ChangeOp)>> {
        let mut ops = Vec::with_capacity(uuids.len());
        for u in uuids {
            match self.current_state(cx, u) {
                Ok(Some(st)) => ops.push((u.clone(), ChangeOp::Create(st))),
                Ok(None) => ops.push((u.clone(), ChangeOp::Delete)),
                Err(why) => {
                    cx.storage_failed("sync", &why).await;
                    return None;
                }
            }
        }
        // Dependencies first (docs/PROTOCOL.md §6.1): a correction naming a parent and its
        // child (a reparent cycle's) is applied in an order that never makes a loop.
        if ops.len() > 1 {
            order_parents_first(&mut ops);
        }
        Some(ops)
    }

    /// Send `uuids`' authoritative state to one session as a `resync` batch.
    pub(super) async fn send_resync(&mut self, cx: &Cx<'_>, session_id: &str, uuids: &[String], why: &str) {
        self.send_resync_attempt(cx, session_id, uuids, why, 0).await
    }

    /// [`Project::send_resync`], the `attempts`-th time for these uuids (a re-send after a
    /// mismatch is attempt 1, never re-sent again).
    pub(super) async fn send_resync_attempt(
        &mut self,
        cx: &Cx<'_>,
        session_id: &str,
        uuids: &[String],
        why: &str,
        attempts: u32,
    ) {
        // Only an editor that holds a scene is sent state: `agent`, `cli` and `test` sessions
        // only send, they get no batches (docs/PROTOCOL.md §6.2).
        if !cx.view.session(session_id).is_some_and(|s| s.editor.holds_scene()) {
            return;
        }
        if uuids.iter().any(|u| self.inflight_with(u).is_some()) || self.replay_pending(session_id) {
            // The authoritative state of these uuids is about to change: send it once the
            // batch in flight is committed or rolled back, never the state before it. And
            // never before a replay that waits for this session (it joined or asked while a
            // batch was in flight): a resync's seq would move the editor's `last_seq` past
            // objects that replay is to bring (docs/PROTOCOL.md §6.6) — it goes after it.
            self.deferred.push(Deferred::Resync {
                session_id: session_id.to_string(),
                uuids: uuids.to_vec(),
                attempts,
            });
            return;
        }
        let Some(s) = cx.view.session(session_id) else { return };
        let Some(ops) = self.authoritative_ops(cx, uuids).await else { return };
        self.send_resync_ops(cx, &s, ops, why, None, attempts).await;
    }

    /// The `last_seq` a replay waiting for the batches in flight starts from for `session_id`
    /// (its join's, or its `resync` request's), if one waits.
    pub(super) fn pending_replay_base(&self, session_id: &str) -> Option<u64> {
        self.deferred.iter().find_map(|d| match d {
            Deferred::Input(Input::Joined { session_id: s, last_seq }) if s == session_id => Some(*last_seq),
            Deferred::Input(Input::Resync { session_id: s, since_seq, .. }) if s == session_id => Some(*since_seq),
            _ => None,
        })
    }

    /// Whether a replay for `session_id` (its join, or its `resync` request) waits for the
    /// batches in flight.
    fn replay_pending(&self, session_id: &str) -> bool {
        self.deferred.iter().any(|d| {
            matches!(d, Deferred::Input(Input::Joined { session_id: s, .. } | Input::Resync { session_id: s, .. })
                if s == session_id)
        })
    }

    pub(super) async fn send_resync_ops(
        &mut self,
        cx: &Cx<'_>,
        s: &Editor,
        ops: Vec<(String, ChangeOp)>,
        why: &str,
        request_id: Option<&str>,
        attempts: u32,
    ) -> Option<String> {
        if ops.is_empty() {
            return None;
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        let seq = cx.view.last_seq();
        debug!(session_id = %s.session_id, count = ops.len(), why, "resync");
        if self.send_batch(cx, s, &batch_id, seq, PathKind::Resync, &ops, &[], request_id).await {
            // An editor skips a resync for a uuid with unresolved local work (docs/PROTOCOL.md
            // §6.6): a change it made before reading this is corrected once it commits.
            for (u, _) in &ops {
                self.forwarded.insert((s.session_id.clone(), u.clone()), seq);
            }
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
            let poses = match self.co_poses.is_empty() {
                true => Vec::new(),
                false => ops.iter().filter_map(|(u, op)| super::pose_set(op).map(|p| (u.clone(), p))).collect(),
            };
            self.resyncs
                .insert(batch_id.clone(), ResyncCheck { session_id: s.session_id.clone(), expected, attempts, poses });
            return Some(batch_id);
        }
        None
    }

    /// Replay for a (re)connecting editor: what changed after `last_seq` (§6.6). `answer`:
    /// the `resync` request being answered (always answered, with its `request_id`).
    pub(super) async fn replay(
        &mut self,
        cx: &Cx<'_>,
        session_id: &str,
        last_seq: u64,
        answer: Option<Option<String>>,
    ) {
        let Some(s) = cx.view.session(session_id) else { return };
        if !s.editor.holds_scene() {
            return;
        }
        // Uuids of rollbacks it may have applied provisionally — except those this client
        // kept as a person's edit (never overwritten where they were made).
        let theirs = |r: &&crate::project::RolledBack| r.seq > last_seq;
        let not_kept = |r: &crate::project::RolledBack| {
            r.uuids
                .iter()
                .filter(|u| !r.kept_local.get(*u).is_some_and(|c| c.contains(&s.client_id)))
                .cloned()
                .collect::<Vec<_>>()
        };
        let rolled: HashSet<String> = self.rolled_back.iter().filter(theirs).flat_map(not_kept).collect();
        // Sync batches rolled back after `last_seq` whose uuids have no committed state: the
        // editor may hold their provisional create, or its own create refused beside it —
        // also from `last_seq` 0 (a fresh file, an editor that never applied a batch).
        let gone: HashSet<String> =
            self.rolled_back.iter().filter(theirs).filter(|r| r.sync).flat_map(not_kept).collect();
        // Batches that committed after `last_seq` with STEPs before it: the editor may have
        // learnt a later seq from a batch pipelined beside them (docs/PROTOCOL.md §6.6).
        // Deletes relayed after a later seq had gone out (`on_tombstoned`) are among them:
        // a uuid of these with no committed state is sent as a `delete` (with `gone`).
        let late: HashSet<String> =
            self.late_commits.iter().filter(|(c, _)| *c > last_seq).flat_map(|(_, u)| u.iter().cloned()).collect();
        let gone: HashSet<String> = gone.into_iter().chain(late.iter().cloned()).collect();
        let rolled: HashSet<String> = rolled.into_iter().chain(late).collect();
        // An editor that was away since before the WAL's compaction anchor gets every live
        // object, not a delta (docs/WAL.md §11): never a silent gap.
        let anchor = cx.view.anchor_seq();
        let full = last_seq > 0 && last_seq < anchor;
        if full {
            info!(session_id, last_seq, anchor, "replay: last_seq is before the WAL's compaction anchor; full resync");
        }
        let request_id = answer.as_ref().and_then(|r| r.as_deref());
        let ops: Vec<(String, ChangeOp)> = match replay_ops(cx.view, last_seq, full, &rolled, &gone) {
            // Never over a person's edit this editor kept (§6.6): it re-sends it itself.
            Ok(ops) => ops.into_iter().filter(|(u, _)| !self.keeps(cx, session_id, u)).collect(),
            Err(why) => {
                // Never a partial or empty replay (an editor would take it as up to date):
                // the request is answered STORAGE_FAILED and the daemon stops.
                let answer = answer.is_some().then(|| (session_id.to_string(), request_id.unwrap_or("").to_string()));
                cx.io(Effect::StorageFailed { operation_id: "replay".into(), message: why, answer }).await;
                return;
            }
        };
        let batch_id = if ops.is_empty() && answer.is_some() {
            // Nothing missed: an empty resync batch tells the editor it is up to date.
            let id = uuid::Uuid::new_v4().to_string();
            self.send_batch(cx, &s, &id, cx.view.last_seq(), PathKind::Resync, &[], &[], request_id).await;
            None
        } else {
            self.send_resync_ops(cx, &s, ops, "replay", request_id, 0).await
        };
        if let Some(slot) = self.diverged.get_mut(session_id) {
            *slot = batch_id;
            if slot.is_none() {
                self.diverged.remove(session_id); // nothing to replay: coherent again
            }
        }
    }

    /// A person released `uuids` from quarantine: editors get their authoritative state —
    /// never over a person's edit kept where it was made (that editor re-sends it).
    pub(super) async fn on_released(&mut self, cx: &Cx<'_>, uuids: &[String]) {
        // Every editor hears of the release: one that kept a person's edit of these uuids
        // (not synced) re-sends it now (docs/PROTOCOL.md §6.4, §6.8); the others are sent
        // their state below.
        let ev = Outbound::QuarantineReleased { uuids: uuids.to_vec() }.to_frame();
        for s in self.project_sessions(cx) {
            cx.send(&s.session_id, vec![ev.clone()]).await;
            let theirs: Vec<String> = uuids
                .iter()
                .filter(|u| !self.not_synced.iter().any(|((x, _), n)| x == *u && n.client_id == s.client_id))
                .cloned()
                .collect();
            if !theirs.is_empty() {
                self.send_resync(cx, &s.session_id, &theirs, "quarantine released").await;
            }
        }
    }

    /// uuids tombstoned through a `tombstone` request (transaction `operation_id`, WAL
    /// `seq`): the other editors delete them; they are no longer "not synced". Then the
    /// request's transaction is finalized: a tombstone without a FINAL is one whose relay a
    /// stop may have cut, and boot records it as a late delete (docs/WAL.md §9).
    pub(super) async fn on_tombstoned(
        &mut self,
        cx: &Cx<'_>,
        origin: &str,
        operation_id: &str,
        uuids: Vec<String>,
        seq: u64,
    ) {
        let ops: Vec<(String, ChangeOp)> = uuids.into_iter().map(|u| (u, ChangeOp::Delete)).collect();
        // The origin's delete is its write of every part (staleness, docs/PROTOCOL.md §6.1): a
        // change another editor made before it heard of it is refused `STALE`, a conflict
        // the delete won — never `NOT_FOUND`, answered with a `create` that brings it back.
        if let Some(by) = cx.view.session(origin) {
            for (u, op) in &ops {
                self.synced.entry(u.clone()).or_default().record(
                    crate::stale::Parts::written_by(op),
                    seq,
                    (&by.client_id, by.editor.as_str()),
                    [0; 3],
                    crate::sync::Author::Person,
                );
            }
            self.tombstone_conflicts(cx, &by, &ops, seq).await;
            // The other editors' changes of these uuids still waiting lost to the delete
            // (their conflict is recorded above): dropped now, so that the batch does not
            // count the same loss again (it records the conflicts of a delete it forms
            // before the sync heard of, `batch`).
            let now = cx.now();
            let mut lost: BTreeMap<SessionId, Vec<Queued<Editor>>> = BTreeMap::new();
            for (u, _) in &ops {
                for q in self.queue.remove_of(u, |q| q.origin.client_id != by.client_id, now) {
                    self.bases.remove(&(q.origin.session_id.clone(), q.change.uuid.clone()));
                    lost.entry(q.origin.session_id.clone()).or_default().push(q);
                }
            }
            for (session_id, changes) in lost {
                let uuids = super::dedup(changes.iter().map(|q| q.change.uuid.clone()).collect());
                self.send_dropped(cx, &session_id, uuids, seq, Some(super::finalize::through_of(&changes)), None).await;
            }
            // The deleting editor's own changes of these uuids still waiting (a `create` of an
            // object added and deleted within one window) are superseded by its delete: a
            // waiting `create` applied at batch time brought the deleted object back.
            let now = cx.now();
            let mut dropped: Vec<String> = Vec::new();
            for (u, _) in &ops {
                let queued = !self.queue.remove_of(u, |q| q.origin.session_id == by.session_id, now).is_empty();
                let held = self.held.holds(u)
                    && !self
                        .held
                        .take_where(|q| q.origin.session_id == by.session_id && &q.change.uuid == u)
                        .is_empty();
                if queued || held {
                    dropped.push(u.clone());
                }
            }
            if !dropped.is_empty() {
                info!(project_id = %self.project, session_id = %by.session_id, uuids = ?dropped, "its editor deleted these objects: its changes of them still waiting are dropped");
                // Every change of these uuids its editor still has in flight ends: it deleted
                // them (no `through`, docs/PROTOCOL.md §6.4).
                self.send_dropped(cx, &by.session_id, dropped, seq, None, None).await;
            }
        }
        for f in self.inflight.iter_mut() {
            for (u, _) in &ops {
                if f.members.contains(u) {
                    f.tombstoned.insert(u.clone());
                }
            }
        }
        // A batch with this seq or a later one may have reached an editor before this relay
        // (the registrar commits apart from the sync): an editor that learnt that seq and lost its
        // connection before the relay arrived would otherwise never hear of these deletes. A
        // replay after any `last_seq` up to that seq carries them (docs/PROTOCOL.md §6.6).
        // Written to the WAL (a standalone `late_delete` STEP, docs/WAL.md §9) so that a
        // restart forgets none of them.
        // The tombstone's own seq counts too: a frame carrying the daemon's last seq (a
        // `dropped` result of a change this delete won over, a resync) may have gone out
        // before this relay, and a replay after it would not carry the delete.
        let exposed = self.exposed_seq.load(std::sync::atomic::Ordering::Relaxed);
        if exposed >= seq {
            let uuids: Vec<String> = ops.iter().map(|(u, _)| u.clone()).collect();
            let op_id = uuid::Uuid::new_v4().to_string();
            let step = super::late_delete_draft(&self.project, &op_id, uuids.clone(), seq, exposed);
            if let Err(e) = cx.append(vec![step]).await {
                return cx.storage_failed(&op_id, &e).await;
            }
            info!(project_id = %self.project, operation_id = %op_id, uuids = ?uuids, tombstone_seq = seq, after_seq = exposed, "deletes relayed after a later seq went out: recorded for the replays of editors that may have missed them");
            self.late_commits.push((exposed + 1, uuids));
        }
        for s in self.project_sessions(cx) {
            // Not to a session whose replay waits for the batches in flight: that replay is
            // read from the registry when it goes out, so it carries these deletes, and this
            // batch's seq would move the editor's `last_seq` past what it is to bring
            // (docs/PROTOCOL.md §6.6), as a resync's would.
            if s.session_id != origin
                && !self.replay_pending(&s.session_id)
                && self
                    .send_batch(cx, &s, &uuid::Uuid::new_v4().to_string(), seq, PathKind::Slow, &ops, &[], None)
                    .await
            {
                for (u, _) in &ops {
                    self.forwarded.insert((s.session_id.clone(), u.clone()), seq);
                }
            }
        }
        for (u, _) in &ops {
            self.not_synced.retain(|(x, _), _| x != u);
            self.refused.retain(|(x, _), _| x != u);
        }
        let uuids: Vec<String> = ops.into_iter().map(|(u, _)| u).collect();
        // Objects the registry still holds under these uuids — the deleting editor did not
        // hold them there (a batch that put them there reached it after its delete): the next
        // main batch puts them at the root where they stand, as the other editors leave them
        // (`batch`, docs/PROTOCOL.md §6.1 "delete"). Its own changes of them (Blender's
        // reparents of a deleted object's children) have a window's time to arrive first.
        let gone: Vec<&str> = uuids.iter().map(String::as_str).collect();
        let left = self.left_under(cx, &gone);
        if let Some(index) = self.children.as_mut() {
            for u in &uuids {
                index.remove(u);
            }
        }
        match left.map(|l| super::dedup(l.into_values().collect())) {
            Ok(parents) if !parents.is_empty() => {
                // Who deleted them, as the archive keeps it (automation's delete, or a
                // person's), the session when it is still here.
                let by = match super::deleted_by(cx, &parents[0]) {
                    Ok(by) => by.map(|(e, author)| (cx.view.session(origin).unwrap_or(e), author)),
                    Err(why) => return cx.storage_failed(operation_id, &why).await,
                };
                if let Some((by, author)) = by {
                    for p in parents {
                        self.orphaned.push((p, by.clone(), author));
                    }
                    let at = cx.now() + self.settings.batch_window_ms;
                    self.orphaned_at.get_or_insert(at);
                }
            }
            Ok(_) => {}
            Err(why) => return cx.storage_failed(operation_id, &why).await,
        }
        cx.io(Effect::Finalize { session_id: origin.to_string(), operation_id: operation_id.to_string(), uuids }).await;
        self.publish_status(cx).await;
    }
}

/// What a replay after `last_seq` sends (docs/PROTOCOL.md §6.6): the live state of every
/// uuid changed after it or rolled back since (`rolled`) — of every live uuid when `full`
/// (`last_seq` is before the WAL's compaction anchor, docs/WAL.md §11) — parents first, then
/// `delete` for uuids of rolled-back sync batches (`gone`) that have no committed state and for
/// uuids tombstoned after it, also after `last_seq` 0. The caller leaves out the uuids its
/// editor keeps as a person's edit. Any read failure is an error.
pub fn replay_ops(
    view: &dyn View,
    last_seq: u64,
    full: bool,
    rolled: &HashSet<String>,
    gone: &HashSet<String>,
) -> Result<Vec<(String, ChangeOp)>, String> {
    let read = |e: String| format!("registry read failed: {e}");
    let mut ops: Vec<(String, ChangeOp)> = Vec::new();
    for e in view.live_entries().map_err(read)? {
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
    let mut seen = HashSet::default();
    // A uuid of a rolled-back sync batch that has no committed state (its create was never
    // committed, e.g. a batch cut by a crash): the authoritative state is its absence
    // (docs/PROTOCOL.md §6.4).
    let mut absent: Vec<&String> = gone.iter().collect();
    absent.sort();
    for u in absent {
        if view.lookup(u).map_err(read)?.is_none() && seen.insert(u.clone()) {
            ops.push((u.clone(), ChangeOp::Delete));
        }
    }
    // Tombstoned after `last_seq` — from `last_seq` 0 too: an editor with nothing synced may
    // still hold the object (a file opened without its saved seq, a create it made itself).
    for e in view.archived_entries().map_err(read)? {
        if e.tombstone_seq.unwrap_or(0) > last_seq
            && e.state.is_some()
            && seen.insert(e.uuid.clone())
            && view.lookup(&e.uuid).map_err(read)?.is_none()
        {
            ops.push((e.uuid, ChangeOp::Delete));
        }
    }
    Ok(ops)
}

/// Order `create` ops so that each parent comes before its children (depth on the parent
/// chain among the ops, bounded at 64).
pub fn order_parents_first(ops: &mut Vec<(String, ChangeOp)>) {
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
