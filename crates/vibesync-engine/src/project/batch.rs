//! Pipeline step `batch` of a project's sync: a closed window becomes a WAL transaction —
//! new states computed from the committed ones, no-op and inapplicable changes dropped (their
//! origins told, and corrected where a dropped change left them off the authoritative
//! state), BEGIN / STEP… (/ PROVISIONAL on the fast path) written — and is forwarded to the
//! participants (docs/PROTOCOL.md §6.2, docs/WAL.md §3).

use crate::fast::{HashMap, HashSet};
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tracing::{debug, info, warn};
use vibesync_registry::{Op as RegOp, Status};
use vibesync_wal::{Outcome, Phase, RecordDraft};

use super::queue::NewerLink;
use super::{dedup, state_of, Cx, Editor, Inflight, Project, Rebased, SessionId, SYNC_SESSION};
use crate::forward;
use crate::queue::Lane;
use crate::stale::{LastWrites, Parts};
use crate::sync::{apply_change, batch_path, coalesce_mask, Author, ChangeOp, ObjectState, Path, Pose, Queued};
use crate::verify::Verification;

impl Project {
    /// A window closed (`queued`, from `lane`): compute new states, write
    /// BEGIN/STEPs(/PROVISIONAL), forward.
    pub(super) async fn start_batch(&mut self, cx: &Cx<'_>, queued: Vec<Queued<Editor>>, lane: Lane) {
        if lane == Lane::Main && !queued.is_empty() {
            // The main window held every slow change. (A batch of the moves of objects left
            // under a deleted parent alone takes nothing from it: what waits there still
            // holds its uuids' live previews.)
            self.slow_queued.clear();
        }
        // Parents deleted since the last main batch that objects may still be under: this
        // batch takes them (below).
        let mut gone_parents: Vec<(String, Editor, crate::sync::Author)> = Vec::new();
        if lane == Lane::Main {
            gone_parents = std::mem::take(&mut self.orphaned);
            self.orphaned_at = None;
        }
        let nothing_queued = queued.is_empty();
        if nothing_queued && gone_parents.is_empty() {
            return;
        }

        let mask = coalesce_mask(&queued);
        // Origins that made their change before they applied a batch carrying the uuid.
        let mut overtaken: Vec<(SessionId, String)> = Vec::new();
        // (origin, uuid) → the `base_seq` of the origin's latest change of the uuid.
        let mut base_of: HashMap<(SessionId, String), u64> = HashMap::default();
        for q in &queued {
            let key = (q.origin.session_id.clone(), q.change.uuid.clone());
            let Some(base) = self.bases.remove(&key) else { continue };
            if self.forwarded.get(&key).is_some_and(|seq| *seq > base) {
                overtaken.push(key.clone());
            }
            base_of.insert(key, base);
        }
        // (origin, uuid) → the origin's own ops of this window, in order: what it holds.
        let mut own_ops: HashMap<(SessionId, String), Vec<ChangeOp>> = HashMap::default();
        for q in &queued {
            own_ops.entry((q.origin.session_id.clone(), q.change.uuid.clone())).or_default().push(q.change.op.clone());
        }
        let mut start: HashMap<String, Option<ObjectState>> = HashMap::default();
        // uuid → registered (live or quarantined) before the batch: read with `start`, one
        // registry read per uuid of the window.
        let mut registered: HashMap<String, bool> = HashMap::default();
        let mut states: HashMap<String, Option<ObjectState>> = HashMap::default();
        let mut kept: Vec<Queued<Editor>> = Vec::new();
        let mut all: Vec<Queued<SessionId>> = Vec::new();
        let mut window: Vec<Queued<SessionId>> = Vec::new();
        // (uuid, origin) of every change in `window`: "has its editor changed it already in
        // this window?" without a scan per change.
        let mut in_window: HashSet<(String, SessionId)> = HashSet::default();
        // Per origin, its dropped changes: (uuid, request, admission mark) — the `dropped`
        // result's uuids and, per uuid, the last request it ends (`through`: the request of
        // the latest admitted, since they are collected out of arrival order).
        let mut dropped: HashMap<SessionId, Vec<DropKey>> = HashMap::default();
        let mut kinds: HashMap<SessionId, String> = HashMap::default();
        // session → its `client_id`, kept with the batch: a rollback names the editor that
        // keeps a person's edit even after that session ended (§6.4, `status`'s not_synced).
        let mut client_ids: HashMap<SessionId, String> = HashMap::default();
        // No-op changes dropped, with their editor's `client_id`: each is ended by the batch's
        // own result instead when its editor has another change of that uuid carried in the
        // batch (below).
        let mut noops: Vec<(String, Queued<SessionId>, Queued<Editor>)> = Vec::new();
        // uuid → (who, when) of its tombstone, for uuids the registry holds deleted.
        let mut deleted: HashMap<String, (vibesync_registry::DeletedBy, u64)> = HashMap::default();
        // Another editor's delete, committed after these changes were admitted, that the sync
        // has not heard of yet: (winner's editor, client id) → (loser, uuid, its op).
        let mut delete_won: BTreeMap<(String, String), Vec<Lost>> = BTreeMap::new();
        // Reparents dropped because they would close a parent cycle with another editor's
        // reparent of the window: conflicts that reparent won.
        let mut cycles: Vec<forward::Conflict> = Vec::new();
        // Reparents dropped because they close a parent cycle with another editor's reparent
        // committed after they were made (its batch was in flight when they arrived): per
        // loser, conflicts that reparent won, and the other objects on each cycle — the loser
        // is corrected with the whole chain, parents first (§6.1), as for a `STALE` refusal.
        let mut committed_cycles: BTreeMap<SessionId, (Editor, Vec<super::queue::Stale>, Vec<String>)> =
            BTreeMap::new();
        // Per loser of a cycle with another editor's reparent of this window, the objects on
        // that cycle: it holds its own dropped reparent until corrected, and may leave the
        // batch's reparents on the cycle unapplied (a loop there, §6.4) — corrected with the
        // whole chain, as above (model seed 106).
        let mut window_cycles: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
        // Automation's reparents undone for a person's reparent that closed a cycle through
        // them: conflicts the person won (§6.1).
        let mut undone: Vec<Rebased> = Vec::new();
        // Moves that kept or lost parts another editor's concurrent move set in an earlier
        // window (`CoPose`): their conflicts are those (`co_rebased`), not `rebased`'s.
        let mut co_rebased: Vec<Rebased> = Vec::new();
        let mut co_decided: HashSet<(SessionId, String)> = HashSet::default();
        // uuid → where in `window` its `transform`s are (`moves`), and its `create`s,
        // `reparent`s and `delete`s (`links`), in arrival order, as sent: what concurrent
        // moves merge over (§6.2), and what a move that only keeps an object where it stood
        // after its parent's delete is re-expressed over (§6.1). Each origin's handle once.
        let mut moves: HashMap<String, Vec<usize>> = HashMap::default();
        // Where in `kept` a `create` of an object the daemon holds stands, and the parts it
        // writes ([`crate::stale::held_full_state`]): its registry writers (below).
        let mut create_writes: HashMap<usize, Parts> = HashMap::default();
        let mut links: HashMap<String, Vec<usize>> = HashMap::default();
        let mut editors: HashMap<SessionId, Editor> = HashMap::default();
        for (mut q, keep) in queued.into_iter().zip(mask) {
            if !kinds.contains_key(&q.origin.session_id) {
                kinds.insert(q.origin.session_id.clone(), q.origin.editor.to_string());
                client_ids.insert(q.origin.session_id.clone(), q.origin.client_id.clone());
            }
            if !start.contains_key(&q.change.uuid) {
                let entry = match cx.view.lookup(&q.change.uuid) {
                    Ok(e) => e,
                    Err(e) => return cx.storage_failed("sync", &format!("registry read failed: {e}")).await,
                };
                registered
                    .insert(q.change.uuid.clone(), entry.as_ref().is_some_and(|e| e.status != Status::Tombstoned));
                // A tombstone moves the record to the archive: no live record, read who deleted
                // it and when from its newest archived version.
                if entry.is_none() {
                    let newest = match cx.view.archived(&q.change.uuid) {
                        Ok(v) => v.into_iter().max_by_key(vibesync_registry::Entry::archive_seq),
                        Err(e) => return cx.storage_failed("sync", &format!("registry read failed: {e}")).await,
                    };
                    if let Some((by, seq)) = newest.and_then(|e| e.deleted_by.zip(e.tombstone_seq)) {
                        deleted.insert(q.change.uuid.clone(), (by, seq));
                    }
                }
                match state_of(&q.change.uuid, entry.as_deref()) {
                    Ok(st) => start.insert(q.change.uuid.clone(), st),
                    Err(why) => return cx.storage_failed("sync", &why).await,
                };
            }
            // The uuid was deleted after this change was admitted, and the batch forms before
            // the sync heard of that `tombstone` (it commits apart). Its own editor's delete
            // supersedes the change, as it would have in the window (§6.2) — an object added
            // and deleted at once is never created; another editor's is the later writer and
            // wins, a conflict as when the sync hears of it first (`on_tombstoned`).
            if let (Some((by, at)), Some(admitted)) = (deleted.get(&q.change.uuid), q.admitted_seq) {
                if *at > admitted {
                    if by.client_id == q.origin.client_id {
                        debug!(uuid = %q.change.uuid, op = q.change.op.name(), "change superseded by its editor's delete");
                    } else {
                        delete_won.entry((by.editor.clone(), by.client_id.clone())).or_default().push((
                            q.origin.clone(),
                            q.change.uuid.clone(),
                            q.change.op.name(),
                        ));
                    }
                    dropped.entry(q.origin.session_id.clone()).or_default().push(drop_key(&q));
                    continue;
                }
            }
            // A `create` of exactly the state the daemon holds, and nothing else of this uuid
            // from its editor in the window: a re-send of what it already holds (an editor
            // re-sends every object whole when it reconnects), not an edit. Dropped as a
            // repeat, and no writer: it never undoes another editor's change of the window
            // (§6.2). (`keep`: no later change of its editor supersedes it.)
            if keep
                && matches!((&q.change.op, start.get(&q.change.uuid)), (ChangeOp::Create(st), Some(Some(held))) if st.hash() == held.hash())
                && !in_window.contains(&(q.change.uuid.clone(), q.origin.session_id.clone()))
            {
                debug!(uuid = %q.change.uuid, origin = %q.origin.session_id, "a create of the state the daemon holds (a re-send): dropped, no writer");
                dropped.entry(q.origin.session_id.clone()).or_default().push(drop_key(&q));
                continue;
            }
            let mut as_id = q.with_origin(q.origin.session_id.clone());
            // Every change of the window, in arrival order: what each origin holds, and who
            // wrote last (§6.2).
            in_window.insert((q.change.uuid.clone(), q.origin.session_id.clone()));
            window.push(as_id.clone());
            let index = match &q.change.op {
                ChangeOp::Transform { .. } => Some(&mut moves),
                ChangeOp::Create(_) | ChangeOp::Reparent(_) | ChangeOp::Delete => Some(&mut links),
                _ => None,
            };
            if let Some(index) = index {
                match index.get_mut(&q.change.uuid) {
                    Some(at) => at.push(window.len() - 1),
                    None => {
                        index.insert(q.change.uuid.clone(), vec![window.len() - 1]);
                    }
                }
            }
            if !editors.contains_key(&q.origin.session_id) {
                editors.insert(q.origin.session_id.clone(), q.origin.clone());
            }
            if !keep {
                all.push(as_id); // superseded in this window: its origin still holds it
                continue;
            }
            let cur = match states.get(&q.change.uuid) {
                Some(s) => s.clone(),
                None => start[&q.change.uuid].clone(),
            };
            // Two editors' reparents of one window, each fine alone, may make a cycle
            // together (Unity puts A under B while Blender puts B under A): the later one in
            // arrival order is dropped — its origin is corrected after its `dropped` result
            // (§6.2) — or the batch could never apply and would roll back for ever.
            let mut cycle = match self.parent_cycle_of(cx, &q.change, |u| window_parent(&states, &start, u)) {
                Err(why) => return cx.storage_failed("sync", &why).await,
                Ok(c) => c,
            };
            // A person's reparent closing the cycle through automation's reparent it had not
            // heard of — committed since the change was made, or made in this window: that
            // link is undone — the object goes back under its parent before it, where it
            // stands, in every editor — and the person's reparent is carried, a conflict the
            // person won (§6.1).
            if let (Some(chain), Author::Person) = (&cycle, q.author) {
                let key = (q.origin.session_id.clone(), q.change.uuid.clone());
                let base = base_of.get(&key).copied().or(q.admitted_seq).unwrap_or(0);
                let link = match self.window_link(cx, chain, (&q, base), &window, &kept) {
                    Ok(l) => l,
                    Err(why) => return cx.storage_failed("sync", &why).await,
                };
                if let NewerLink::Automation(x, w, in_window) = link {
                    let to = match self.parent_to_restore(cx, (&x, in_window), &q.change, (&states, &start)) {
                        Ok(to) => to,
                        Err(why) => return cx.storage_failed("sync", &why).await,
                    };
                    warn!(uuid = %q.change.uuid, origin = %q.origin.session_id, chain = ?chain, undone = %x, back_under = ?to, automation = %w.editor, "a person's reparent closes a parent cycle through automation's reparent it had not heard of: automation's link is undone, the object goes back under its parent before it (none: the root) where it stands");
                    let undo = match undo_link(cx, &x, to, &mut states, &mut start, &mut registered) {
                        Ok(ops) => ops,
                        Err(why) => return cx.storage_failed("sync", &why).await,
                    };
                    // Carried for the person, to every editor (its origin's too: it may hold
                    // the object where automation's reparent did not reach it).
                    // (`vibesync history` names the daemon as its maker.)
                    kinds.insert(SYNC_SESSION.to_string(), "daemon".to_string());
                    carry_for(&q.origin, Author::Person, &x, undo, (&mut all, &mut kept));
                    undone.push(Rebased {
                        uuid: x,
                        winner: q.origin.session_id.clone(),
                        loser: w,
                        op: q.change.op.name(),
                    });
                    cycle = match self.parent_cycle_of(cx, &q.change, |u| window_parent(&states, &start, u)) {
                        Err(why) => return cx.storage_failed("sync", &why).await,
                        Ok(c) => c,
                    };
                }
            }
            if let Some(chain) = cycle {
                warn!(uuid = %q.change.uuid, origin = %q.origin.session_id, chain = ?chain, "a reparent would close a parent cycle with another editor's change of this window: dropped, its editor corrected");
                // A conflict the other editor's earlier reparent on the chain won (§6.2).
                let won = window.iter().rev().find(|w| {
                    w.origin != q.origin.session_id
                        && chain.contains(&w.change.uuid)
                        && matches!(w.change.op, ChangeOp::Reparent(_) | ChangeOp::Create(_))
                });
                if let Some(w) = won {
                    cycles.push(forward::Conflict {
                        uuid: q.change.uuid.clone(),
                        winner: w.origin.clone(),
                        loser: q.origin.session_id.clone(),
                        op: q.change.op.name(),
                    });
                    window_cycles.entry(q.origin.session_id.clone()).or_default().extend(chain);
                } else {
                    // Through the committed parents: another editor's reparent on the
                    // chain committed after this change was made (the queue admitted it
                    // while that one's batch was in flight). Its editor may have left
                    // that reparent unapplied (a loop with its own, §6.4): corrected with
                    // the chain.
                    let key = (q.origin.session_id.clone(), q.change.uuid.clone());
                    let base = base_of.get(&key).copied().or(q.admitted_seq).unwrap_or(0);
                    let (_, lost, extra) = committed_cycles
                        .entry(q.origin.session_id.clone())
                        .or_insert_with(|| (q.origin.clone(), Vec::new(), Vec::new()));
                    let newer = match self.cycle_write(cx, &chain, base, (&q.origin.client_id, &q.origin.session_id)) {
                        Ok(w) => w,
                        Err(why) => return cx.storage_failed("sync", &why).await,
                    };
                    if let Some(w) = newer {
                        lost.push((q.change.uuid.clone(), q.change.op.name(), (w.client, w.editor)));
                    }
                    extra.extend(chain);
                }
                dropped.entry(q.origin.session_id.clone()).or_default().push(drop_key(&q));
                continue;
            }
            // A `create` or `reparent` that puts the object under a parent deleted meanwhile
            // (another editor's delete, committed after the change was made): the object
            // stands at the root where that parent put it, as every editor leaves the children
            // of a parent it deletes (§6.1); the batch carries that, and its origin is
            // corrected after the commit. Committed under the deleted parent, it stayed there in
            // the registry while every editor held it at the root (model seed 58).
            let mut standing: Option<Queued<Editor>> = None;
            if let (Some(Some(p)), ChangeOp::Create(_) | ChangeOp::Reparent(_)) =
                (q.change.op.parent_after().map(|p| p.map(str::to_string)), &q.change.op)
            {
                let world = match deleted_parent_world(cx, &p, &states, &start) {
                    Ok(w) => w,
                    Err(why) => return cx.storage_failed("sync", &why).await,
                };
                if let Some(world) = world {
                    info!(uuid = %q.change.uuid, parent = %p, origin = %q.origin.session_id, "a change puts the object under a parent deleted meanwhile: it stands at the root where that parent put it; its editor is corrected after the commit");
                    match &mut q.change.op {
                        ChangeOp::Create(st) => {
                            let at = world.then(&Pose::of(st)).stable();
                            (st.parent, st.t, st.r, st.s) = (None, at.t, at.r, at.s);
                        }
                        op => {
                            *op = ChangeOp::Reparent(None);
                            if let Some(held) = &cur {
                                let at = world.then(&Pose::of(held)).stable();
                                let mut moved = q.clone();
                                moved.change.op = ChangeOp::Transform { t: at.t, r: at.r, s: at.s };
                                standing = Some(moved);
                            }
                        }
                    }
                    // (Its origin, which holds its own op, is corrected after the COMMIT as
                    // any origin left off the authoritative state: `forward::plan`.)
                }
            }
            // A `transform` of an object the registry still holds under a deleted parent (one
            // whose left objects are owed a move to the root), from an editor (Blender, Unity)
            // that had applied that delete when it made it (`applied_delete_of`): that editor
            // holds the object at the root, where the delete left it, and the pose is one
            // there, never one under the deleted parent (composed with the parent's, it would
            // move the object away from where that person just put it). The batch puts the
            // object at the root first, on that editor's behalf, as every editor holds it
            // (§6.1 "Objects left under a deleted parent").
            let mut to_root: Option<Queued<Editor>> = None;
            if let (ChangeOp::Transform { .. }, Some(Some(p))) = (&q.change.op, cur.as_ref().map(|c| &c.parent)) {
                // (An agent holds no scene: it reads the registry's state, under the parent.)
                let owed =
                    q.origin.editor.holds_scene() && gone_parents.iter().chain(&self.orphaned).any(|(g, _, _)| g == p);
                let base = base_of.get(&(q.origin.session_id.clone(), q.change.uuid.clone())).copied();
                // (Still deleted: not made again, in this window or since.)
                let applied = match base.filter(|_| owed) {
                    Some(base) => last_state(cx, p, &states, &start).and_then(|last| match last {
                        Some((_, true)) => self.applied_delete_of(cx, p, &q.origin.client_id, base),
                        _ => Ok(false),
                    }),
                    None => Ok(false),
                };
                match applied {
                    Ok(true) => {
                        info!(uuid = %q.change.uuid, parent = %p, origin = %q.origin.session_id, "a move of an object its editor holds at the root since it applied its parent's delete: the object goes to the root with the pose as sent");
                        let mut r = q.clone();
                        r.change.op = ChangeOp::Reparent(None);
                        to_root = Some(r);
                    }
                    Ok(false) => {}
                    Err(why) => return cx.storage_failed("sync", &why).await,
                }
            }
            // A `transform` made under a parent deleted meanwhile, by an editor that had not
            // applied that delete when it made it (it held the object under that parent, as
            // the registry still does), of an object an earlier change of this window already
            // moved off it (the deleting editor's `reparent` of the parent's children, to the
            // root or to a collection): the pose is one under the deleted parent. Composed
            // with that parent's last world pose (and put in the frame of the object's parent
            // now), the object stands where that person put it — where its editor holds it
            // once it applies the delete. Taken as a pose at the root, it stood
            // elsewhere than in the editor that made it, the batch could never verify, and
            // both editors kept their own (§6.1 "Parents the daemon holds no record of").
            let under_deleted = match (&q.change.op, &to_root, start.get(&q.change.uuid), &cur) {
                (ChangeOp::Transform { .. }, None, Some(Some(was)), Some(now))
                    if was.parent.is_some() && now.parent != was.parent =>
                {
                    was.parent.clone().zip(Some(now.parent.clone()))
                }
                _ => None,
            };
            if let Some((p, now_under)) = under_deleted {
                let key = (q.origin.session_id.clone(), q.change.uuid.clone());
                let base = base_of.get(&key).copied();
                match self.pose_made_under_deleted(cx, &q, (&p, now_under.as_deref()), base, (&states, &start)) {
                    Ok(Some(at)) => {
                        if let ChangeOp::Transform { t, r, s } = &mut q.change.op {
                            (*t, *r, *s) = (at.t, at.r, at.s);
                        }
                        info!(uuid = %q.change.uuid, parent = %p, origin = %q.origin.session_id, "a move made under a parent deleted meanwhile, of an object this window moved off it: it stands where that parent put the pose");
                        // Another editor's `transform` of this window, after its `reparent` of
                        // the object off `p`, that only kept the object where it stood (the
                        // deleting editor's): no pose its person made, no conflict writer (§6.2).
                        let was = start.get(&q.change.uuid).cloned().flatten().map(|st| Pose::of(&st));
                        let candidates: Vec<usize> = moves
                            .get(&q.change.uuid)
                            .into_iter()
                            .flatten()
                            .copied()
                            .filter(|&i| {
                                let o = &window[i].origin;
                                *o != q.origin.session_id && links_by(&links, &window, &q.change.uuid, o, true)
                            })
                            .collect();
                        for i in candidates {
                            let kept_world = self.pose_kept_over_a_move(
                                cx,
                                &window[i].change.op,
                                (&p, now_under.as_deref()),
                                (was, Pose::IDENTITY),
                                (&states, &start),
                            );
                            match kept_world {
                                Ok(Some(_)) => {
                                    let request = window[i].request.clone();
                                    let same = |r: &Arc<str>, u: &str| Arc::ptr_eq(r, &request) && u == q.change.uuid;
                                    window[i].keeps_world = true;
                                    for a in all.iter_mut().filter(|a| same(&a.request, &a.change.uuid)) {
                                        a.keeps_world |= matches!(a.change.op, ChangeOp::Transform { .. });
                                    }
                                    for k in kept.iter_mut().filter(|k| same(&k.request, &k.change.uuid)) {
                                        k.keeps_world |= matches!(k.change.op, ChangeOp::Transform { .. });
                                    }
                                }
                                Ok(None) => {}
                                Err(why) => return cx.storage_failed("sync", &why).await,
                            }
                        }
                    }
                    Ok(None) => {
                        // A `transform` that only keeps the object where it stood in the world
                        // after its own editor's `reparent` off the deleted parent (the
                        // deleting editor leaves a deleted object's children where they
                        // stand, §6.1) — over another editor's move of this window made under
                        // that parent: its person did not move the object, the other did. The
                        // object stands where that move puts it, as in the other order
                        // (above), and this change writes no pose (`keeps_world`: no conflict
                        // or staleness writer, §6.2).
                        // The other editor's last move of this window, made under `p`: it had
                        // linked the object nowhere else in this window, nor applied `p`'s
                        // delete.
                        let last_other = moves
                            .get(&q.change.uuid)
                            .into_iter()
                            .flatten()
                            .rev()
                            .map(|&i| &window[i])
                            .find(|w| w.origin != q.origin.session_id && !w.keeps_world);
                        let other = match last_other {
                            Some(w)
                                if links_by(&links, &window, &q.change.uuid, &q.origin.session_id, true)
                                    && !links_by(&links, &window, &q.change.uuid, &w.origin, false) =>
                            {
                                let o = &editors[&w.origin];
                                let base = base_of.get(&(w.origin.clone(), q.change.uuid.clone()));
                                let applied = match (o.editor.holds_scene(), base) {
                                    (true, Some(base)) => self.applied_delete_of(cx, &p, &o.client_id, *base),
                                    _ => Ok(false),
                                };
                                match applied {
                                    Ok(applied) => (!applied).then(|| pose_sent(&w.change.op)).flatten(),
                                    Err(why) => return cx.storage_failed("sync", &why).await,
                                }
                            }
                            _ => None,
                        };
                        if let Some(moved) = other {
                            let was = start.get(&q.change.uuid).cloned().flatten().map(|st| Pose::of(&st));
                            match self.pose_kept_over_a_move(
                                cx,
                                &q.change.op,
                                (&p, now_under.as_deref()),
                                (was, moved),
                                (&states, &start),
                            ) {
                                Ok(Some(at)) => {
                                    if let ChangeOp::Transform { t, r, s } = &mut q.change.op {
                                        (*t, *r, *s) = (at.t, at.r, at.s);
                                    }
                                    q.keeps_world = true;
                                    as_id.keeps_world = true;
                                    if let Some(w) = window.last_mut() {
                                        w.keeps_world = true;
                                    }
                                    info!(uuid = %q.change.uuid, parent = %p, origin = %q.origin.session_id, "a move that only keeps the object where it stood after its parent's delete, over another editor's move made under that parent: it stands where that move put it");
                                }
                                Ok(None) => {}
                                Err(why) => return cx.storage_failed("sync", &why).await,
                            }
                        }
                    }
                    Err(why) => return cx.storage_failed("sync", &why).await,
                }
            }
            // Another editor moved the object in this window too, and this editor had not
            // seen it (no live preview of it applied): made concurrently over the same pose,
            // each component stands from the last change that changed it — a scale made here
            // and a move made there both stand; the batch carries the merged pose, and each
            // editor is corrected to it after the commit (§6.2).
            // Across windows, the same for an editor whose move an earlier window merged the
            // others' parts into while its moves kept coming (`CoPose`): its later moves carry
            // those parts as it held them, and the others' values stand.
            let op_name = q.change.op.name();
            if let (ChangeOp::Transform { t, r, s }, None, false, Some(Some(was))) =
                (&mut q.change.op, &to_root, links.contains_key(&q.change.uuid), start.get(&q.change.uuid))
            {
                let was = Pose::of(was);
                let sent = Pose { t: *t, r: *r, s: *s };
                let mut mine = sent;
                let key = (q.change.uuid.clone(), q.origin.client_id.clone());
                let now_ms = cx.now();
                if self.co_poses.get(&key).is_some_and(|co| now_ms.saturating_sub(co.last_ms) > super::CO_POSE_HOLD_MS)
                {
                    self.co_poses.remove(&key); // its moves had stopped: it applied the pose since
                }
                if let Some(co) = self.co_poses.get_mut(&key) {
                    co.theirs = was;
                    let (kept, lost) = co.apply(&sent, now_ms);
                    if kept != sent {
                        info!(uuid = %q.change.uuid, origin = %q.origin.session_id, "a move made before its editor could apply the pose a concurrent move of another editor made: the parts it did not change stand from the other editor");
                    }
                    if lost {
                        co_rebased.push(Rebased {
                            uuid: q.change.uuid.clone(),
                            winner: q.origin.session_id.clone(),
                            loser: co.other.clone(),
                            op: op_name,
                        });
                    }
                    if co.from == 0 {
                        self.co_poses.remove(&key);
                    }
                    co_decided.insert((q.origin.session_id.clone(), q.change.uuid.clone()));
                    mine = kept;
                }
                let others: Vec<Pose> = moves
                    .get(&q.change.uuid)
                    .into_iter()
                    .flatten()
                    .map(|&i| &window[i])
                    .filter(|w| w.origin != q.origin.session_id && !q.sight.sees("transform", w.sight.mark))
                    .filter_map(|w| pose_sent(&w.change.op))
                    .collect();
                if !others.is_empty() {
                    // (A part it holds as another editor's move it had seen is none it made.)
                    let seen: Vec<Pose> = moves
                        .get(&q.change.uuid)
                        .into_iter()
                        .flatten()
                        .map(|&i| &window[i])
                        .filter(|w| w.origin != q.origin.session_id && q.sight.sees("transform", w.sight.mark))
                        .filter_map(|w| pose_sent(&w.change.op))
                        .chain(self.seen_poses.get(&(q.origin.session_id.clone(), q.change.uuid.clone())).copied())
                        .collect();
                    let merged = Pose::merged_made(&mine, mine.made_from(&was, &seen), &others, &was);
                    if merged != mine {
                        info!(uuid = %q.change.uuid, origin = %q.origin.session_id, "two editors moved one object concurrently: each part of the pose (position, rotation, scale) stands from the last editor that changed it");
                    }
                    mine = merged;
                }
                // Each editor that moved it in this window keeps its own pose while its moves
                // are in flight (§6.4): the parts the pose this move leaves has from the others
                // stay theirs in its later moves (`CoPose`), until it changes them or applies
                // that pose. Also for an editor whose move this one was made over, seen as a
                // live preview: that editor had not seen this one, and its next moves carry
                // its own scale (say) as it held it. (Left out, a drag in Blender undid the
                // scale a person in Unity made over the drag's preview, as a conflict Unity
                // lost.)
                if moves.get(&q.change.uuid).into_iter().flatten().any(|&i| window[i].origin != q.origin.session_id) {
                    let merged = mine;
                    let mut last_by: Vec<(SessionId, Pose)> = Vec::new();
                    for w in moves.get(&q.change.uuid).into_iter().flatten().map(|&i| &window[i]) {
                        if let (Some(p), false) = (pose_sent(&w.change.op), w.keeps_world) {
                            last_by.retain(|(o, _)| *o != w.origin);
                            last_by.push((w.origin.clone(), p));
                        }
                    }
                    for (o, own) in &last_by {
                        let from = merged.changed_from(own);
                        let (Some(ed), true) = (editors.get(o), from != 0) else { continue };
                        if !ed.editor.holds_scene() {
                            continue; // an agent reads the registry's state: it holds nothing
                        }
                        let Some(by) = moves
                            .get(&q.change.uuid)
                            .into_iter()
                            .flatten()
                            .rev()
                            .map(|&i| &window[i])
                            .find(|w| w.origin != *o)
                        else {
                            continue;
                        };
                        let Some(other) = editors.get(&by.origin) else { continue };
                        let co = super::CoPose::new(*own, from, merged, (other, by.author), now_ms);
                        self.co_poses.insert((q.change.uuid.clone(), ed.client_id.clone()), co);
                    }
                }
                if mine != sent {
                    (*t, *r, *s) = (mine.t, mine.r, mine.s);
                }
            }
            // A full state of an object the daemon holds (an editor's kept local work, sent
            // again, §6.2 "A full state of an object the daemon holds"): it writes the parts it
            // holds differently from the state before the window; another editor's change of
            // another part in this window stands. (After a delete of this window it makes the
            // object again: whole.)
            let mut create_writes_here: Option<Parts> = None;
            if let (ChangeOp::Create(_), Some(now)) = (&q.change.op, &cur) {
                let was = start.get(&q.change.uuid).and_then(Option::as_ref);
                let deleted_here = links
                    .get(&q.change.uuid)
                    .is_some_and(|at| at.iter().any(|&i| matches!(window[i].change.op, ChangeOp::Delete)));
                // (Less the values it holds as another editor's, kept after a rollback.)
                let foreign =
                    self.foreign_kept.get(&q.change.uuid, &q.origin.client_id).map(|h| crate::stale::superseded_ops(h));
                let held = crate::stale::held_full_state(&q.change.op, was, deleted_here, foreign.as_deref());
                if let (Some(was), Some((made, parts))) = (was, held) {
                    create_writes_here = Some(parts);
                    q.change.op = ChangeOp::Create(crate::stale::create_over(&made, was, now));
                }
            }
            // (The pose where the deleted parent put it, after its reparent.)
            let applied = match &to_root {
                Some(r) => apply_change(cur.as_ref(), &r.change.op),
                None => Ok(cur.clone()),
            }
            .and_then(|at| apply_change(at.as_ref(), &q.change.op))
            .and_then(|next| match &standing {
                Some(moved) => apply_change(next.as_ref(), &moved.change.op),
                None => Ok(next),
            });
            match applied {
                Ok(next) => {
                    let same = cur.is_some()
                        && (next == cur || next.as_ref().map(|s| s.hash()) == cur.as_ref().map(|s| s.hash()));
                    if same {
                        debug!(uuid = %q.change.uuid, op = q.change.op.name(), "no-op change dropped (echo or repeat)");
                        dropped.entry(q.origin.session_id.clone()).or_default().push(drop_key(&q));
                        noops.push((q.origin.client_id.clone(), as_id, q));
                        // Still in `window`: it may be the last writer of a conflict (it undid
                        // another editor's change).
                        continue;
                    }
                    states.insert(q.change.uuid.clone(), next);
                    if let Some(r) = to_root {
                        // Its editor holds it (before its move, last in `window`).
                        let r_id = r.with_origin(r.origin.session_id.clone());
                        window.insert(window.len() - 1, r_id.clone());
                        all.push(r_id);
                        kept.push(r);
                    }
                    all.push(as_id);
                    if let Some(parts) = create_writes_here {
                        create_writes.insert(kept.len(), parts);
                    }
                    kept.push(q);
                    if let Some(moved) = standing {
                        all.push(moved.with_origin(moved.origin.session_id.clone()));
                        kept.push(moved);
                    }
                }
                Err(e) => {
                    warn!(uuid = %q.change.uuid, "change dropped at batch time: {}", e.message);
                    dropped.entry(q.origin.session_id.clone()).or_default().push(drop_key(&q));
                }
            }
        }
        // Objects left under a parent that is gone — deleted by this batch, or by a
        // `tombstone` request committed since the last batch — that nothing moves elsewhere:
        // each goes to the root where it stands in the world, as every editor leaves the
        // children of an object it deletes (§6.1), carried on behalf of the deleting editor, to
        // every editor (its own too: it may hold the object elsewhere, a batch putting it there
        // having reached it after its delete). The registry never keeps a live object under
        // one that is gone, where a replay would put it at its local pose (model seed 2011).
        gone_parents.extend(
            kept.iter()
                .filter(|q| matches!(q.change.op, ChangeOp::Delete) && matches!(states.get(&q.change.uuid), Some(None)))
                .map(|q| (q.change.uuid.clone(), q.origin.clone(), q.author)),
        );
        // Where those moves stand in `kept`: no editor's write (below).
        let mut left_moved: HashSet<usize> = HashSet::default();
        if !gone_parents.is_empty() {
            let parents: Vec<&str> = gone_parents.iter().map(|(p, _, _)| p.as_str()).collect();
            let committed = match self.left_under(cx, &parents) {
                Ok(c) => c,
                Err(why) => return cx.storage_failed("sync", &why).await,
            };
            let orphans = orphans_of(&gone_parents, &committed, &states, &start);
            for (x, (parent, origin, author)) in orphans {
                info!(uuid = %x, parent = %parent, origin = %origin.session_id, "an object is left under a deleted parent: it goes to the root where it stands");
                let undo = match undo_link(cx, &x, None, &mut states, &mut start, &mut registered) {
                    Ok(ops) => ops,
                    Err(why) => return cx.storage_failed("sync", &why).await,
                };
                kinds.insert(SYNC_SESSION.to_string(), "daemon".to_string());
                let from = kept.len();
                carry_for(origin, author, &x, undo, (&mut all, &mut kept));
                left_moved.extend(from..kept.len());
            }
        }
        if nothing_queued && kept.is_empty() {
            return; // only deleted parents to look at, and nothing was under them
        }
        // Two editors changed a uuid in the window and no batch carries it (the last writer's
        // change undid the other's, a no-op): still a conflict the last writer won (§6.2),
        // logged after the `dropped` results and corrections below.
        let carried: HashSet<&str> = kept.iter().map(|q| q.change.uuid.as_str()).collect();
        let unbatched = forward::conflicts(window.iter().filter(|q| !carried.contains(q.change.uuid.as_str())), &start);
        drop(carried);
        // Superseded changes of uuids that left the batch (all of them when nothing is kept)
        // are dropped as well.
        let batch_uuids: HashSet<String> = kept.iter().map(|q| q.change.uuid.clone()).collect();
        for q in all.iter().filter(|q| !batch_uuids.contains(q.change.uuid.as_str())) {
            dropped.entry(q.origin.clone()).or_default().push(drop_key(q));
        }
        all.retain(|q| batch_uuids.contains(q.change.uuid.as_str()));
        // A no-op change of a uuid whose editor has another change of it carried in this batch
        // is ended by the batch's result, not by a `dropped` of its own (§6.4):
        // - from the same session (a rename and a no-op reparent of one object in one
        //   request, say): `through` names a uuid's request, so a `dropped` result would end
        //   the carried change too while it is still in flight;
        // - from a later session of the same editor (one that reconnected sends its
        //   unresolved work again while the first connection's change still waits here): the
        //   result must reach the session that holds the edit now — a rollback keeps it there,
        //   where a `dropped` would have ended it (model: a create re-sent after a reconnect,
        //   then rolled back, lost the person's object).
        // The latest of them goes last in `all`, so that the result's `through` names its
        // request.
        let mut latest: HashMap<(String, String), u64> = HashMap::default();
        for q in &kept {
            let m = latest.entry((q.origin.client_id.clone(), q.change.uuid.clone())).or_default();
            *m = (*m).max(q.sight.mark);
        }
        // A no-op move, rename or hide of a uuid that the batch carries anyway with moves,
        // renames and hides alone goes in the batch too, to the other editors (§6.2 "No-op
        // changes"): its live previews reached them, and one that applied an earlier preview
        // of the window but not the last (skipped while behind, or refused over its person's
        // edit of another part) holds a value nobody left there. Not forwarded, it answered
        // the batch with that value: the batch rolled back, and the editor that kept its
        // person's edit of the object sent the stale value back as its own. It sets the part
        // to the state the batch holds, so it writes nothing, rebases nothing (`no_write`), and
        // ends as any no-op does (below). (Coalescing left it the window's last op of its kind
        // on the uuid, so it commutes with the batch's others.)
        let mut fast_only: HashMap<String, bool> = HashMap::default();
        for q in &kept {
            *fast_only.entry(q.change.uuid.clone()).or_insert(true) &= q.change.op.path() == Path::Fast;
        }
        let mut no_write: HashSet<usize> = HashSet::default();
        // (session, uuid) → the mark of its newest change the result ends: `through` names the
        // last of `all`, so a no-op older than another change of its uuid from its session
        // (one superseded in the window, say) is not put after it.
        let mut newest: HashMap<(SessionId, String), u64> = HashMap::default();
        for q in &all {
            let m = newest.entry((q.origin.clone(), q.change.uuid.clone())).or_default();
            *m = (*m).max(q.sight.mark);
        }
        for (client_id, q, full) in noops {
            if full.change.op.path() == Path::Fast && fast_only.get(&q.change.uuid) == Some(&true) {
                no_write.insert(kept.len());
                kept.push(full);
            }
            let key = (client_id, q.change.uuid.clone());
            let Some(m) = latest.get(&key).copied() else { continue };
            if let Some(d) = dropped.get_mut(&q.origin) {
                let dk = drop_key(&q);
                d.retain(|k| *k != dk);
            }
            let n = newest.entry((q.origin.clone(), q.change.uuid.clone())).or_default();
            if q.sight.mark > m && q.sight.mark >= *n {
                *n = q.sight.mark;
                latest.insert(key, q.sight.mark);
                all.push(q);
            }
        }
        dropped.retain(|_, d| !d.is_empty());
        // Origins hear about every change: dropped ones (no-op or no longer applicable) too;
        // then the engine's corrections for origins a dropped change left off the
        // authoritative state (docs/PROTOCOL.md §6.2), after their `dropped` result.
        let dropped: Vec<(SessionId, Vec<String>, BTreeMap<String, String>)> = dropped
            .into_iter()
            .map(|(s, mut d)| {
                // In admission order, so that `through` names each uuid's latest request (an
                // object created and deleted in one window was answered for its create alone,
                // and the delete's request stayed in flight at its editor for good).
                d.sort_by_key(|(_, _, mark)| *mark);
                let through = d.iter().map(|(u, r, _)| (u.clone(), r.to_string())).collect();
                (s, dedup(d.into_iter().map(|(u, _, _)| u).collect()), through)
            })
            .collect();
        // A full state of a kept uuid dropped as a no-op (the daemon holds it already) ends
        // its editor's keeping of it, as one that lost does (docs/PROTOCOL.md §6.4).
        if !self.kept_here.is_empty() {
            for (s, uuids, _) in &dropped {
                let Some(client_id) = cx.view.session(s).map(|e| e.client_id) else { continue };
                for u in uuids {
                    let ops = own_ops.get(&(s.clone(), u.clone()));
                    if ops.is_some_and(|ops| ops.iter().any(|op| matches!(op, ChangeOp::Create(_)))) {
                        self.kept_here.remove(u, &client_id);
                    }
                }
            }
        }
        let left_off = forward::dropped_left_off(
            dropped.iter().map(|(s, u, _)| (s, u.as_slice())),
            |u| batch_uuids.contains(u),
            &start,
            &own_ops,
        );
        // Of those, an origin that keeps the uuid locally (or may yet) holds its lost values
        // still, and is corrected only once its full state commits; the others now.
        let mut corrections = Vec::new();
        for (s, uuids) in left_off {
            let client_id = cx.view.session(&s).map(|e| e.client_id).unwrap_or_default();
            let mut now = Vec::new();
            for u in uuids {
                let ops = own_ops.get(&(s.clone(), u.clone())).cloned().unwrap_or_default();
                self.lost_while_kept(&u, &client_id, &ops, None);
                if !self.keeps(cx, &s, &u) {
                    now.push(u);
                }
            }
            if !now.is_empty() {
                corrections.push((s, now));
            }
        }
        // Every object on each dropped reparent's cycle goes with its loser's correction,
        // parents first: the loser left the winner's reparent unapplied and holds its own, and
        // needs both to agree — also an object this batch changes (its state before the batch
        // comes first, the batch's op after), but one whose parent the loser itself writes in
        // it (a `reparent` or `create`: the batch carries that parent). One the loser only
        // moves, renames or hides in it still goes: the loser applies the parts its change in
        // flight does not touch, the parent among them (§6.6).
        let chains = committed_cycles.iter().map(|(s, (_, _, extra))| (s, extra)).chain(window_cycles.iter());
        for (session_id, extra) in chains {
            let carried_own = |u: &str| {
                kept.iter().any(|q| {
                    q.origin.session_id == *session_id && q.change.uuid == u && q.change.op.parent_after().is_some()
                })
            };
            let more: Vec<String> =
                extra.iter().filter(|u| !carried_own(u) && !self.keeps(cx, session_id, u)).cloned().collect();
            if more.is_empty() {
                continue;
            }
            match corrections.iter_mut().find(|(s, _)| s == session_id) {
                Some((_, uuids)) => {
                    uuids.extend(more);
                    *uuids = dedup(std::mem::take(uuids));
                }
                None => corrections.push((session_id.clone(), dedup(more))),
            }
        }
        for (session_id, uuids, through) in dropped {
            self.send_dropped(cx, &session_id, uuids, cx.view.last_seq(), Some(through), None).await;
        }
        for (session_id, uuids) in corrections {
            info!(session_id = %session_id, uuids = ?uuids, "a superseded change left its editor off the authoritative state: corrected");
            self.send_resync(cx, &session_id, &uuids, "conflict").await;
        }
        self.unbatched_conflicts(cx, unbatched, &kinds, "two editors changed one object in one window and the last writer undid the other's change; the object stays as it was").await;
        self.unbatched_conflicts(cx, cycles, &kinds, "two editors' reparents of one window close a parent cycle together: the later one is dropped and its editor corrected").await;
        for (_, (loser, lost, _)) in committed_cycles {
            self.stale_conflicts(cx, &loser, lost).await;
        }
        for ((winner, winner_client), losers) in delete_won {
            // One conflict per losing editor and uuid — its sessions are one editor (a change
            // re-sent after a reconnect is the same edit) — its last change names the op.
            let mut last: BTreeMap<(String, String), (Editor, &'static str)> = BTreeMap::new();
            for (loser, u, op) in losers {
                last.insert((loser.client_id.clone(), u), (loser, op));
            }
            let at = last.keys().filter_map(|(_, u)| deleted.get(u).map(|(_, seq)| *seq)).max().unwrap_or_default();
            let losers = last.into_iter().map(|((_, u), (loser, op))| (loser, u, op)).collect();
            self.delete_won(cx, (&winner, &winner_client), losers, at).await;
        }
        // A dropped change whose origin applied a later-forwarded batch of the uuid after
        // making it: that origin holds the batch's state, not the authoritative one.
        let (in_batch, dropped_over): (Vec<_>, Vec<_>) =
            overtaken.into_iter().partition(|(_, u)| batch_uuids.contains(u.as_str()));
        // One resync per editor for all its overtaken uuids (an editor that re-sends its
        // whole scene after a reconnect would otherwise get one batch per object).
        let mut overtaken_by: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
        for (session_id, u) in dropped_over {
            if self.keeps(cx, &session_id, &u) {
                continue; // kept locally: never corrected (docs/PROTOCOL.md §6.4)
            }
            overtaken_by.entry(session_id).or_default().push(u);
        }
        for (session_id, uuids) in overtaken_by {
            let uuids = dedup(uuids);
            info!(session_id = %session_id, uuids = ?uuids, "changes made before their editor applied a batch of the same objects were dropped: corrected");
            self.send_resync(cx, &session_id, &uuids, "overtaken").await;
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
        let participants: Vec<Editor> = self.project_sessions(cx);
        for p in &participants {
            kinds.insert(p.session_id.clone(), p.editor.to_string());
            client_ids.insert(p.session_id.clone(), p.client_id.clone());
        }
        // Full states of one object from several editors, and nothing else of it: each is
        // sent the batch's state of it, so an editor whose own is in flight (it applies
        // another's whole, §6.4) holds every person's edit at once, never the earlier full
        // state alone until a correction puts its person's edit back (§6.2 "A full state of
        // an object the daemon holds").
        if !create_writes.is_empty() {
            let held: HashSet<String> = create_writes.keys().map(|&i| kept[i].change.uuid.clone()).collect();
            // uuid → (something else than a `create` of it, the origins of its `create`s)
            let mut of: HashMap<&str, (bool, Vec<&SessionId>)> = HashMap::default();
            for q in kept.iter().filter(|q| held.contains(&q.change.uuid)) {
                let e = of.entry(q.change.uuid.as_str()).or_default();
                e.0 |= !matches!(q.change.op, ChangeOp::Create(_));
                if !e.1.contains(&&q.origin.session_id) {
                    e.1.push(&q.origin.session_id);
                }
            }
            let merged: HashSet<String> = of
                .into_iter()
                .filter(|(_, (other, origins))| !*other && origins.len() > 1)
                .map(|(u, _)| u.to_string())
                .collect();
            for q in kept.iter_mut().filter(|q| merged.contains(&q.change.uuid)) {
                if let (ChangeOp::Create(st), Some(Some(fin))) = (&mut q.change.op, states.get(&q.change.uuid)) {
                    st.clone_from(fin);
                }
            }
        }
        let kept_ids: Vec<Queued<SessionId>> =
            kept.iter().map(|q| q.with_origin(q.origin.session_id.clone())).collect();
        let participant_ids: Vec<SessionId> = participants.iter().map(|p| p.session_id.clone()).collect();
        // The batch carries the latest value of its uuids to every participant: live previews
        // still waiting for them are superseded (and could arrive after a rollback's resync).
        for u in &uuids {
            self.live.cancel_uuid(u);
        }
        // Every change of the window: what each participant holds, and the winner of each
        // conflict — also a no-op change that undid the other editor's (not in `all`).
        let seen_poses = &self.seen_poses;
        let seen = |origin: &str, uuid: &str| {
            (!seen_poses.is_empty()).then(|| seen_poses.get(&(origin.to_string(), uuid.to_string())).copied()).flatten()
        };
        let foreign_kept = &self.foreign_kept;
        let foreign = |origin: &str, uuid: &str| {
            let client = client_ids.get(origin)?;
            foreign_kept.get(uuid, client).map(|h| crate::stale::superseded_ops(h))
        };
        let plan = forward::plan(&window, &kept_ids, (&start, &seen, &foreign), &states, &participant_ids);
        let rebased = match self.rebased(cx, (&kept, &no_write), &base_of, &plan.conflicts, &co_decided) {
            Ok(mut r) => {
                r.extend(undone);
                r.extend(co_rebased);
                r
            }
            Err(why) => return cx.storage_failed("sync", &why).await,
        };
        self.note_sparing_editors(cx.now(), &kept, (&start, &states));

        // Who writes which part of each uuid, for staleness (docs/PROTOCOL.md §6.1): kept in
        // memory at the batch's seq once appended, and in each `state` STEP, so that the
        // registry keeps them across a restart.
        // The moves of objects left under a deleted parent are no edit: every editor that
        // applied the delete holds them so already, and a change its person made there before
        // reading them was made over what they write — never stale against them (§6.1).
        let mut writes: HashMap<String, LastWrites> = HashMap::default();
        for (i, q) in kept.iter().enumerate() {
            if left_moved.contains(&i) || no_write.contains(&i) || q.keeps_world {
                continue;
            }
            writes.entry(q.change.uuid.clone()).or_default().record(
                create_writes.get(&i).copied().unwrap_or_else(|| Parts::written_by(&q.change.op)),
                0,
                (&q.origin.client_id, q.origin.editor.as_str()),
                q.sight.own_marks(q.change.op.name()),
                q.author,
            );
        }
        let mut drafts = vec![self.draft(
            &batch_id,
            Phase::Begin,
            uuids.clone(),
            Outcome::Pending,
            json!({
                "op": "sync", "path": path.as_str(), "changes": kept.len(), "ops": ops,
                "origins": origins.iter().collect::<Vec<_>>(),
                // Who made the batch, for `vibesync history` (the daemon's restore): every
                // origin of the window, also one whose changes were superseded in it.
                "origin_editors": origins.iter().map(|s| (s.to_string(), kinds.get(s).cloned().unwrap_or_default())).collect::<BTreeMap<_, _>>(),
                "gate": if gate.is_empty() { json!({"decision": "proceed"}) } else { Value::Object(gate) },
            }),
        )];
        // Per uuid, its last change in the window and its last `reparent`/`create`: read once
        // for the STEPs below (a scan of the window per uuid made a drag of K objects O(K²)).
        let mut last_change: HashMap<&str, &Queued<Editor>> = HashMap::default();
        let mut last_link: HashMap<&str, Author> = HashMap::default();
        for q in &kept {
            last_change.insert(q.change.uuid.as_str(), q);
            if matches!(q.change.op, ChangeOp::Reparent(_) | ChangeOp::Create(_)) {
                last_link.insert(q.change.uuid.as_str(), q.author);
            }
        }
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
                    drafts.push(
                        self.step(
                            &batch_id,
                            &uuid,
                            RegOp::State {
                                uuid: uuid.clone(),
                                state: s.to_value(),
                                state_hash: Some(hash),
                                // A writer the record already names for those parts (a drag's
                                // later batches) is left out: the registry keeps the run's first
                                // seq, and the state STEPs of a drag stay small.
                                writes: writes
                                    .get(&uuid)
                                    .map(|w| {
                                        let mut ws = w.to_registry_over(self.synced.get(&uuid));
                                        if last_link.get(uuid.as_str()) == Some(&Author::Automation) {
                                            automations_parent_before(&mut ws, &uuid, &start);
                                        }
                                        ws
                                    })
                                    .unwrap_or_default(),
                            },
                        ),
                    );
                }
                None => {
                    if registered {
                        // Who deleted it: the origin of the uuid's last change (its delete).
                        let last = last_change.get(uuid.as_str());
                        let by = last.map(|q| &q.origin);
                        drafts.push(self.step(
                            &batch_id,
                            &uuid,
                            RegOp::Tombstone {
                                uuid: uuid.clone(),
                                client_id: by.map(|e| e.client_id.clone()),
                                editor: by.map(|e| e.editor.to_string()),
                                automation: last.is_some_and(|q| q.author == Author::Automation),
                            },
                        ));
                    }
                }
            }
        }
        let kind = |s: &SessionId| kinds.get(s).cloned().unwrap_or_default();
        for c in &plan.conflicts {
            drafts.push(self.conflict_step(&batch_id, &c.uuid, &kind(&c.winner), &kind(&c.loser), c.op));
        }
        for r in &rebased {
            drafts.push(self.conflict_step(&batch_id, &r.uuid, &kind(&r.winner), &r.loser.editor, r.op));
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
        let records = match cx.append(drafts).await {
            Ok(r) => r,
            Err(e) => return cx.storage_failed(&batch_id, &e).await,
        };
        let seq = records
            .iter()
            .rev()
            .find(|r| r.phase == Phase::Step)
            .map(|r| r.seq)
            .unwrap_or_else(|| records.last().map(|r| r.seq).unwrap_or(0));
        for w in writes.values_mut() {
            w.at_seq(seq);
        }
        info!(batch_id = %batch_id, project_id = %self.project, uuids = ?uuids, path = path.as_str(), seq, changes = kept.len(), pipelined = lane == Lane::Pipelined, "batch forwarded");
        for c in &plan.conflicts {
            warn!(batch_id = %batch_id, project_id = %self.project, uuid = %c.uuid, winner = %kinds.get(&c.winner).map(String::as_str).unwrap_or(""), loser = %kinds.get(&c.loser).map(String::as_str).unwrap_or(""), op = c.op, seq, "conflict: two editors changed one object in one window; the last writer wins");
        }

        let mut sends = plan.sends;
        let deadline = cx.now() + self.settings.verify_timeout_ms;
        let mut verification = Verification::new(plan.expected, deadline);
        for s in &participants {
            let Some(ops) = sends.get(&s.session_id) else { continue };
            // Which of its ops automation made (its ops are the batch's of the other origins,
            // in order, `forward::plan`): an editor spares a person's edit from such a delete.
            let automation: Vec<bool> = kept
                .iter()
                .filter(|q| q.origin.session_id != s.session_id)
                .map(|q| q.author == Author::Automation)
                .collect();
            debug_assert_eq!(automation.len(), ops.len());
            if self.send_batch(cx, s, &batch_id, seq, path.kind(), ops, &automation, None).await {
                for (u, _) in ops {
                    self.forwarded.insert((s.session_id.clone(), u.clone()), seq);
                }
            } else {
                // Could not reach it: it will be resynced when it reconnects.
                sends.remove(&s.session_id);
                verification.unreachable(&s.session_id);
            }
        }
        let holds_live = if path == Path::Slow { uuids.iter().cloned().collect() } else { HashSet::default() };
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
            rebased,
            origins,
            writes,
            kinds,
            client_ids,
            ops: ops.clone(),
            new_hashes: plan.final_hashes.into_iter().filter_map(|(u, h)| h.map(|h| (u, h))).collect(),
            why_failed: BTreeMap::new(),
            holds_live,
            overtaken: in_batch,
            tombstoned: HashSet::default(),
        });
        // Nobody else is connected: nothing to verify.
        if let Some((id, v)) = self.inflight.last().map(|f| (f.batch_id.clone(), f.verification.verdict())) {
            self.carry_out(cx, &id, v).await;
        }
    }

    /// Where automation's link of `x` on a cycle `change` (a person's reparent) closes goes
    /// back to: the parent `x` had before automation's reparent of it — its committed parent
    /// when that reparent is of this window (`in_window`), else the one its record keeps with
    /// that write (`PartWriter::parent_before`) — when it is known and live, and `x` under it
    /// closes no cycle once `change` is carried; else `None`, the root (docs/PROTOCOL.md
    /// §6.1). Err: the registry could not be read.
    fn parent_to_restore(
        &self,
        cx: &Cx<'_>,
        (x, in_window): (&str, bool),
        change: &crate::sync::Change,
        (states, start): (&States, &States),
    ) -> Result<Option<String>, String> {
        let before = if in_window {
            start.get(x).cloned().flatten().and_then(|st| st.parent)
        } else {
            let entry = cx.view.lookup(x).map_err(|e| format!("registry read failed: {e}"))?;
            entry.and_then(|e| {
                e.writers
                    .iter()
                    .find(|w| w.automation && w.parts.contains(&vibesync_registry::Part::Parent))
                    .and_then(|w| w.parent_before.clone())
            })
        };
        let Some(p) = &before else { return Ok(None) };
        if !matches!(last_state(cx, p, states, start)?, Some((_, false))) {
            return Ok(None); // deleted meanwhile, or unknown
        }
        let after = change.op.parent_after().map(|p| p.map(str::to_string));
        let back = crate::sync::Change { uuid: x.to_string(), op: ChangeOp::Reparent(Some(p.clone())) };
        let cycle = self.parent_cycle_of(cx, &back, |u| {
            if u == change.uuid {
                after.clone()
            } else if u == x {
                Some(None) // (its link is the one undone)
            } else {
                window_parent(states, start, u)
            }
        })?;
        Ok(cycle.is_none().then(|| p.clone()))
    }

    /// Who wrote the links of `chain` (a parent cycle `q`, a person's reparent made at `base`,
    /// would close) that `q`'s editor had not heard of: each link's last writer in this window
    /// (`window`, `kept`: the window so far) if another origin wrote it there, else its last
    /// writer committed after `base` ([`Project::newer_link`]). [`NewerLink::Automation`]:
    /// automation wrote every such link — the newest of them (in this window, the latest in
    /// arrival order) is undone (docs/PROTOCOL.md §6.1). Err: the registry could not be read.
    fn window_link(
        &self,
        cx: &Cx<'_>,
        chain: &[String],
        (q, base): (&Queued<Editor>, u64),
        window: &[Queued<SessionId>],
        kept: &[Queued<Editor>],
    ) -> Result<NewerLink, String> {
        let links = &chain[..chain.len().saturating_sub(1)];
        let mut newest: Option<&Queued<SessionId>> = None;
        for u in links {
            let last = window
                .iter()
                .rev()
                .find(|w| &w.change.uuid == u && matches!(w.change.op, ChangeOp::Reparent(_) | ChangeOp::Create(_)));
            match last {
                Some(w) if w.origin == q.origin.session_id => {}
                Some(w) if w.author == Author::Person => return Ok(NewerLink::Person),
                Some(w) => {
                    let pos = |x: &Queued<SessionId>| window.iter().position(|y| std::ptr::eq(x, y));
                    if newest.is_none_or(|n| pos(w) > pos(n)) {
                        newest = Some(w);
                    }
                }
                None => {}
            }
        }
        let committed = self.newer_link(cx, chain, base, (&q.origin.client_id, &q.origin.session_id))?;
        let Some(w) = newest else { return Ok(committed) };
        if matches!(committed, NewerLink::Person) {
            return Ok(NewerLink::Person);
        }
        if self.quarantined(cx, &w.change.uuid)? {
            return Ok(NewerLink::Quarantined);
        }
        // Automation's reparent of this window: who made it, as a write of the parent.
        let by = kept.iter().find(|k| k.origin.session_id == w.origin && k.change.uuid == w.change.uuid);
        let (client, editor) =
            by.map(|k| (k.origin.client_id.clone(), k.origin.editor.to_string())).unwrap_or_default();
        let write = crate::stale::Write {
            parts: Parts::PARENT,
            seq: 0,
            client,
            editor,
            marks: [0; 3],
            author: Author::Automation,
        };
        Ok(NewerLink::Automation(w.change.uuid.clone(), write, true))
    }

    /// The editors that will keep their own pose over this batch's moves: another scene
    /// holder with a move of the object waiting here (its change is unresolved when the batch
    /// reaches it, §6.4). Its moves that follow, made before it could apply this pose, carry
    /// the parts this batch changed as it held them: each gets a `CoPose`, so that those
    /// parts stand from this batch in its later windows (docs/PROTOCOL.md §6.2, "Across
    /// windows"). One pass over the waiting changes, only when something waits.
    fn note_sparing_editors(&mut self, now_ms: u64, kept: &[Queued<Editor>], (start, states): (&States, &States)) {
        if self.queue.is_empty() {
            return;
        }
        // uuid → (the pose this batch leaves, the parts it changed from `was`, who moved it).
        let mut moved: HashMap<&str, (Pose, Pose, &Queued<Editor>)> = HashMap::default();
        for q in kept.iter().filter(|q| matches!(q.change.op, ChangeOp::Transform { .. })) {
            let (Some(Some(was)), Some(Some(now))) = (start.get(&q.change.uuid), states.get(&q.change.uuid)) else {
                continue;
            };
            let (was_pose, now_pose) = (Pose::of(was), Pose::of(now));
            if now_pose.changed_from(&was_pose) != 0 && was.parent == now.parent {
                moved.insert(q.change.uuid.as_str(), (now_pose, was_pose, q));
            }
        }
        if moved.is_empty() {
            return;
        }
        let mut held: HashMap<(String, String), (Pose, &Queued<Editor>)> = HashMap::default();
        for p in self.queue.pending() {
            let (ChangeOp::Transform { t, r, s }, Some(&(_, _, by))) =
                (&p.change.op, moved.get(p.change.uuid.as_str()))
            else {
                continue;
            };
            if !p.origin.editor.holds_scene() || p.origin.client_id == by.origin.client_id {
                continue;
            }
            held.insert((p.change.uuid.clone(), p.origin.client_id.clone()), (Pose { t: *t, r: *r, s: *s }, by));
        }
        for (key, (own, by)) in held {
            let Some(&(now_pose, was_pose, _)) = moved.get(key.0.as_str()) else { continue };
            // The parts this batch changed that the waiting move left as they were: it holds
            // them as before. (A part both changed is a conflict across windows, as ever.)
            let from = now_pose.changed_from(&was_pose) & !own.changed_from(&was_pose);
            if from == 0 {
                continue;
            }
            let co = super::CoPose::new(own, from, now_pose, (&by.origin, by.author), now_ms);
            match self.co_poses.get_mut(&key) {
                // (It still holds the parts of the earlier one as it held them then.)
                Some(was) => *was = super::CoPose { held: was.held, from: was.from | from, ..co },
                None => {
                    self.co_poses.insert(key, co);
                }
            }
        }
    }

    /// Fast-path changes of the batch made before their editor heard of another editor's
    /// committed change of the same part (its `base_seq` older than that write): rebased, the
    /// later writer wins (docs/PROTOCOL.md §6.1) — a conflict across windows, reported like
    /// one in a window (§6.2). So is a person's slow-path change made before its editor heard
    /// of automation's committed change of a part it writes or depends on: never stale
    /// against it, the person's change is the later writer (§6.1, §6.7). One per uuid, part
    /// and loser; none where the window's own conflict rule already names the uuid.
    ///
    /// Err: the registry could not be read (a write from before this machine started).
    fn rebased(
        &self,
        cx: &Cx<'_>,
        (kept, no_write): (&[Queued<Editor>], &HashSet<usize>),
        base_of: &HashMap<(SessionId, String), u64>,
        in_window: &[forward::Conflict],
        co_decided: &HashSet<(SessionId, String)>,
    ) -> Result<Vec<Rebased>, String> {
        let mut out: Vec<Rebased> = Vec::new();
        let changes = kept.iter().enumerate().filter(|(i, _)| !no_write.contains(i)).map(|(_, q)| q);
        for q in changes.filter(|q| q.change.op.path() == Path::Fast || q.author == Author::Person) {
            if in_window.iter().any(|c| c.uuid == q.change.uuid) {
                continue;
            }
            if matches!(q.change.op, ChangeOp::Transform { .. })
                && co_decided.contains(&(q.origin.session_id.clone(), q.change.uuid.clone()))
            {
                continue; // its `CoPose` said which parts it kept or won
            }
            let key = (q.origin.session_id.clone(), q.change.uuid.clone());
            let Some(base) = base_of.get(&key) else { continue };
            let fast = q.change.op.path() == Path::Fast;
            let parts = if fast {
                Parts::written_by(&q.change.op)
            } else {
                Parts::stale_against(&q.change.op).without(Parts::GONE)
            };
            let writes = self.committed_writes(cx, &q.change.uuid, parts)?;
            let Some(w) = writes.newer_unseen_by_other(parts, *base, &q.origin.client_id, q.sight.saw) else {
                continue;
            };
            if !fast && !w.by_automation() {
                continue; // a person's write: such a change was refused `STALE`, or made over it
            }
            let op = q.change.op.name();
            if out.iter().any(|r| r.uuid == q.change.uuid && r.op == op && r.loser.client == w.client) {
                continue;
            }
            out.push(Rebased {
                uuid: q.change.uuid.clone(),
                winner: q.origin.session_id.clone(),
                loser: w.clone(),
                op,
            });
        }
        Ok(out)
    }

    /// Where a `transform` (`q`) made under the parent `p`, deleted meanwhile, puts the object
    /// now under `now_under` (`None`: the root): composed with `p`'s last world pose, in the
    /// frame of `now_under`'s, as a stable pose. `None` when `p` is not deleted, or `q`'s
    /// editor had applied its delete (it holds the object off `p`: the pose is one there). An
    /// agent reads the registry's state, under `p`: it never applied it.
    fn pose_made_under_deleted(
        &self,
        cx: &Cx<'_>,
        q: &Queued<Editor>,
        (p, now_under): (&str, Option<&str>),
        base: Option<u64>,
        (states, start): (&States, &States),
    ) -> Result<Option<Pose>, String> {
        let Some(world) = deleted_parent_world(cx, p, states, start)? else { return Ok(None) };
        if let (true, Some(base)) = (q.origin.editor.holds_scene(), base) {
            if self.applied_delete_of(cx, p, &q.origin.client_id, base)? {
                return Ok(None);
            }
        }
        let frame = frame_of(cx, now_under, states, start)?;
        let ChangeOp::Transform { t, r, s } = &q.change.op else { return Ok(None) };
        Ok(Some(frame.then(&world.then(&Pose { t: *t, r: *r, s: *s })).stable()))
    }

    /// Where a `transform` (`q`) that only keeps the object where it stood in the world after
    /// its editor's reparent off `p` (deleted meanwhile) to `now_under` puts it, over another
    /// editor's pose `moved` made under `p` in this window: `p`'s last world pose composed with
    /// `moved`, in the frame of `now_under`, as a stable pose. `None` unless `p` is deleted and
    /// `q`'s pose is `p`'s world pose composed with the object's pose before the window
    /// (`was`), in that frame — the pose its editor kept, no move its person made.
    fn pose_kept_over_a_move(
        &self,
        cx: &Cx<'_>,
        op: &ChangeOp,
        (p, now_under): (&str, Option<&str>),
        (was, moved): (Option<Pose>, Pose),
        (states, start): (&States, &States),
    ) -> Result<Option<Pose>, String> {
        let (Some(was), ChangeOp::Transform { t, r, s }) = (was, op) else { return Ok(None) };
        let Some(world) = deleted_parent_world(cx, p, states, start)? else { return Ok(None) };
        let frame = frame_of(cx, now_under, states, start)?;
        if !(Pose { t: *t, r: *r, s: *s }).near(&frame.then(&world.then(&was))) {
            return Ok(None);
        }
        Ok(Some(frame.then(&world.then(&moved)).stable()))
    }

    pub(super) fn draft(
        &self,
        batch_id: &str,
        phase: Phase,
        uuids: Vec<String>,
        outcome: Outcome,
        payload: Value,
    ) -> RecordDraft {
        RecordDraft {
            session_id: SYNC_SESSION.to_string(),
            operation_id: batch_id.to_string(),
            uuids,
            project_id: self.project.clone(),
            phase,
            outcome,
            error_code: None,
            payload,
        }
    }

    /// A registry STEP of a batch, built only through the registry's typed `Op`.
    pub(super) fn step(&self, batch_id: &str, uuid: &str, op: RegOp) -> RecordDraft {
        self.draft(batch_id, Phase::Step, vec![uuid.to_string()], Outcome::Ok, op.to_payload())
    }
}

/// Automation's write of the parent of `uuid` among `writes` (a `state` STEP's; the window's
/// last `reparent` or `create` of `uuid` is automation's) names the parent the object had
/// before the batch — where a person's reparent closing a cycle through that link puts it
/// back, also after a restart (docs/PROTOCOL.md §6.1, docs/WAL.md §9).
fn automations_parent_before(writes: &mut [vibesync_registry::StateWrite], uuid: &str, start: &States) {
    let before = start.get(uuid).cloned().flatten().and_then(|st| st.parent);
    for w in writes.iter_mut().filter(|w| w.automation && w.parts.contains(&vibesync_registry::Part::Parent)) {
        w.parent_before.clone_from(&before);
    }
}

/// uuid → its state (`None`: none, or deleted), as a window reads or leaves it.
type States = HashMap<String, Option<ObjectState>>;

/// The parent of `u` as the window leaves it so far (`None`: not read in this window).
fn window_parent(
    states: &HashMap<String, Option<ObjectState>>,
    start: &HashMap<String, Option<ObjectState>>,
    u: &str,
) -> Option<Option<String>> {
    states.get(u).or_else(|| start.get(u)).map(|st| st.as_ref().and_then(|st| st.parent.clone()))
}

/// The ops that undo the link of `x` to its parent, automation's reparent on a parent cycle
/// a person's reparent closes (docs/PROTOCOL.md §6.1): `x` goes under `to` (the parent it had
/// before automation's reparent) or, `None`, to the root, where it stands in the world — as
/// an editor leaves an object whose parent goes. `states` gets its new state (`start` its
/// state before, read from the registry when this window had not read it).
fn undo_link(
    cx: &Cx<'_>,
    x: &str,
    to: Option<String>,
    states: &mut HashMap<String, Option<ObjectState>>,
    start: &mut HashMap<String, Option<ObjectState>>,
    registered: &mut HashMap<String, bool>,
) -> Result<Vec<ChangeOp>, String> {
    if !start.contains_key(x) {
        let entry = cx.view.lookup(x).map_err(|e| format!("registry read failed: {e}"))?;
        registered.insert(x.to_string(), entry.as_ref().is_some_and(|e| e.status != Status::Tombstoned));
        start.insert(x.to_string(), state_of(x, entry.as_deref())?);
    }
    let Some(Some(cur)) = states.get(x).or_else(|| start.get(x)).cloned() else {
        return Err(format!("{x} is on a parent cycle and has no state"));
    };
    let world = match &cur.parent {
        Some(p) => match last_state(cx, p, states, start)? {
            Some((st, _)) => world_of(cx, st, p, states, start)?,
            None => Pose::IDENTITY,
        },
        None => Pose::IDENTITY,
    }
    .then(&Pose::of(&cur));
    let local = match &to {
        Some(p) => match last_state(cx, p, states, start)? {
            Some((st, _)) => world_of(cx, st, p, states, start)?.inverse().then(&world),
            None => world,
        },
        None => world,
    };
    let local = local.stable();
    let ops = vec![ChangeOp::Reparent(to), ChangeOp::Transform { t: local.t, r: local.r, s: local.s }];
    let mut next = Some(cur);
    for op in &ops {
        next = apply_change(next.as_ref(), op).map_err(|e| e.message)?;
    }
    states.insert(x.to_string(), next);
    Ok(ops)
}

/// The daemon's own ops of `x` (`undo_link`'s) carried in the batch on behalf of `origin`'s
/// editor and client, to every editor (its origin's session too: the sync session makes them).
/// (`vibesync history` names the daemon as their maker.)
fn carry_for(
    origin: &Editor,
    author: Author,
    x: &str,
    ops: Vec<ChangeOp>,
    (all, kept): (&mut Vec<Queued<SessionId>>, &mut Vec<Queued<Editor>>),
) {
    let by = Editor {
        session_id: SYNC_SESSION.to_string(),
        editor: origin.editor,
        client_id: origin.client_id.clone(),
        unit_scale: 1.0,
    };
    for op in ops {
        let u = Queued::new(by.clone(), author, crate::sync::Change { uuid: x.to_string(), op });
        all.push(u.with_origin(by.session_id.clone()));
        kept.push(u);
    }
}

/// The live objects whose parent — as this window leaves it, or committed (`committed`, the
/// registry's children of `parents`) — is one of `parents` (deleted), each with the parent
/// and its deleting editor's entry. Sorted by uuid.
fn orphans_of<'p>(
    parents: &'p [(String, Editor, crate::sync::Author)],
    committed: &BTreeMap<String, String>,
    states: &HashMap<String, Option<ObjectState>>,
    start: &HashMap<String, Option<ObjectState>>,
) -> BTreeMap<String, (String, &'p Editor, crate::sync::Author)> {
    let by: HashMap<&str, (&'p Editor, crate::sync::Author)> =
        parents.iter().map(|(p, e, a)| (p.as_str(), (e, *a))).collect();
    let mut out = BTreeMap::new();
    let mut consider = |u: &str, parent: Option<&str>| {
        let Some((p, (e, a))) = parent.and_then(|p| by.get_key_value(p)) else { return };
        if !by.contains_key(u) {
            out.insert(u.to_string(), (p.to_string(), *e, *a));
        }
    };
    for (u, p) in committed {
        if !states.contains_key(u) && !start.contains_key(u) {
            consider(u, Some(p));
        }
    }
    let window: HashSet<&String> = states.keys().chain(start.keys()).collect();
    for u in window {
        if let Some(Some(st)) = states.get(u.as_str()).or_else(|| start.get(u.as_str())) {
            consider(u, st.parent.as_deref());
        }
    }
    out
}

/// The last state of `u` the daemon knows — this window's, the registry's, or (deleted) its
/// archived last state — and whether it is deleted.
fn last_state(
    cx: &Cx<'_>,
    u: &str,
    states: &HashMap<String, Option<ObjectState>>,
    start: &HashMap<String, Option<ObjectState>>,
) -> Result<Option<(ObjectState, bool)>, String> {
    use serde::Deserialize;
    match (states.get(u), start.get(u)) {
        (Some(Some(st)), _) => return Ok(Some((st.clone(), false))),
        (Some(None), Some(Some(st))) => return Ok(Some((st.clone(), true))), // deleted in this window
        (None, Some(Some(st))) => return Ok(Some((st.clone(), false))),
        _ => {}
    }
    let entry = cx.view.lookup(u)?;
    if let Some(e) = entry.as_deref().filter(|e| e.status != Status::Tombstoned) {
        return Ok(state_of(u, Some(e))?.map(|st| (st, false)));
    }
    let newest = cx.view.archived(u)?.into_iter().max_by_key(vibesync_registry::Entry::archive_seq);
    match newest.and_then(|e| e.state) {
        Some(v) => ObjectState::deserialize(&v)
            .map(|st| Some((st, true)))
            .map_err(|err| format!("the registry's archived state of {u} is unreadable: {err}")),
        None => Ok(None),
    }
}

/// Where `first` (the last state of `p`) stands in the world: its pose under its own
/// parents' last states.
fn world_of(
    cx: &Cx<'_>,
    first: ObjectState,
    p: &str,
    states: &HashMap<String, Option<ObjectState>>,
    start: &HashMap<String, Option<ObjectState>>,
) -> Result<Pose, String> {
    let mut chain = vec![first];
    let mut seen: HashSet<String> = HashSet::default();
    seen.insert(p.to_string());
    while let Some(up) = chain.last().and_then(|st| st.parent.clone()) {
        if !seen.insert(up.clone()) || chain.len() > 1024 {
            break; // (no cycle is ever committed; bounded all the same)
        }
        match last_state(cx, &up, states, start)? {
            Some((st, _)) => chain.push(st),
            None => break, // a parent the daemon holds no record of: a root, as receivers take it
        }
    }
    Ok(chain.iter().rev().fold(Pose::IDENTITY, |world, st| world.then(&Pose::of(st))))
}

/// The pose a `transform` sets (`None`: another op).
fn pose_sent(op: &ChangeOp) -> Option<Pose> {
    match op {
        ChangeOp::Transform { t, r, s } => Some(Pose { t: *t, r: *r, s: *s }),
        _ => None,
    }
}

/// Whether `origin` reparented `uuid` in the window (`links`: where in `window` each uuid's
/// `create`s, `reparent`s and `delete`s are) — or, `reparent_only` false, created it too.
fn links_by(
    links: &HashMap<String, Vec<usize>>,
    window: &[Queued<SessionId>],
    uuid: &str,
    origin: &str,
    reparent_only: bool,
) -> bool {
    links.get(uuid).into_iter().flatten().map(|&i| &window[i]).any(|w| {
        w.origin == origin
            && match w.change.op {
                ChangeOp::Reparent(_) => true,
                ChangeOp::Create(_) => !reparent_only,
                _ => false,
            }
    })
}

/// What takes a world pose into the frame of the parent `under` (`None`: the root): the
/// inverse of `under`'s world pose as this window leaves it (a parent the daemon holds no
/// record of is a root, as receivers take it).
fn frame_of(cx: &Cx<'_>, under: Option<&str>, states: &States, start: &States) -> Result<Pose, String> {
    match under {
        Some(n) => match last_state(cx, n, states, start)? {
            Some((st, _)) => Ok(world_of(cx, st, n, states, start)?.inverse()),
            None => Ok(Pose::IDENTITY),
        },
        None => Ok(Pose::IDENTITY),
    }
}

/// Where a parent `p` deleted meanwhile stood in the world: `None` when it is not deleted
/// (live in the registry or made in this window, or unknown: a `create` of it may be on its
/// way). Its pose is its last state, under its own parents' (this window's, the registry's,
/// or — deleted too — their archived last state).
fn deleted_parent_world(
    cx: &Cx<'_>,
    p: &str,
    states: &HashMap<String, Option<ObjectState>>,
    start: &HashMap<String, Option<ObjectState>>,
) -> Result<Option<Pose>, String> {
    let Some((first, true)) = last_state(cx, p, states, start)? else { return Ok(None) };
    world_of(cx, first, p, states, start).map(Some)
}

/// The last state of each uuid of a batch, in first-appearance order.
fn final_states(
    kept: &[Queued<Editor>],
    states: &HashMap<String, Option<ObjectState>>,
) -> Vec<(String, Option<ObjectState>)> {
    let mut seen = HashSet::default();
    kept.iter()
        .filter(|q| seen.insert(q.change.uuid.clone()))
        .map(|q| (q.change.uuid.clone(), states.get(&q.change.uuid).cloned().flatten()))
        .collect()
}

/// A dropped change as its `dropped` result names it: (uuid, request).
/// A change that lost to another editor's delete: (its origin, uuid, op).
type Lost = (Editor, String, &'static str);

/// A dropped change as its `batch_result` names it: (uuid, request, admission mark).
type DropKey = (String, Arc<str>, u64);

fn drop_key<S>(q: &Queued<S>) -> DropKey {
    (q.change.uuid.clone(), q.request.clone(), q.sight.mark)
}
