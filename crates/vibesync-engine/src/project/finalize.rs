//! Pipeline step `finalize` of a project's sync: COMMIT (registry applied under the
//! daemon-wide turn, FINAL scheduled, `batch_result`, conflict events, the losers'
//! corrections) or ROLLBACK (governance observes it; the engine's rollback plan: people's
//! edits kept where they were made, the others re-sent the authoritative state), and the
//! STALE refusals logged as conflicts (docs/PROTOCOL.md §6.2, §6.4, docs/WAL.md §3).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use tracing::{debug, info, warn};
use vibesync_protocol::{BatchOutcome, ClientKind, Outbound, RollbackCode};
use vibesync_registry::{Entry, Op as RegOp};
use vibesync_wal::{Outcome, Phase, RecordDraft};

use super::queue::Stale;
use super::{dedup, Cx, Done, Editor, Effect, Inflight, NotSynced, Project, RolledBack, SessionId};
use crate::finalize::plan_rollback;
use crate::forward::Conflict;
use crate::stale::{LastWrites, Parts, Write};

/// No writer known.
static EMPTY_WRITES: LastWrites = LastWrites::EMPTY;
use crate::sync::{Author, Change, ChangeOp, Path};

impl Project {
    /// Take the batch `batch_id` out of the batches in flight.
    fn take_inflight(&mut self, batch_id: &str) -> Option<Inflight> {
        let i = self.inflight.iter().position(|f| f.batch_id == batch_id)?;
        Some(self.inflight.remove(i))
    }

    pub(super) async fn commit(&mut self, cx: &Cx<'_>, batch_id: &str) {
        let Some(f) = self.take_inflight(batch_id) else { return };
        // A later seq reached an editor while this batch was in flight (docs/PROTOCOL.md §6.6).
        let late = self.exposed_seq.load(std::sync::atomic::Ordering::Relaxed) > f.seq;
        // The sessions this commit corrects right after its result (a conflict's loser, an
        // origin an older batch overtook, a resync waiting for it — e.g. the answer to a
        // change refused `STALE` against it): their result stays before the COMMIT and the
        // replay after that carries the corrected uuids, so a correction lost to a
        // disconnect or a restart comes again (docs/PROTOCOL.md §6.4, §6.6).
        let mut corrected = f.corrections.clone();
        for (s, u) in &f.overtaken {
            corrected.entry(s.clone()).or_default().push(u.clone());
        }
        for (s, uuids) in self.waiting_corrections(&f.uuids) {
            corrected.entry(s).or_default().extend(uuids);
        }
        // Queued changes this batch makes stale now that it commits: dropped, and their
        // editors corrected right after this result, as for a `STALE` refusal.
        let stale_now = self.stale_after_commit(&f, cx.now());
        for (q, _) in &stale_now {
            corrected.entry(q.origin.session_id.clone()).or_default().push(q.change.uuid.clone());
        }
        let corrected_uuids = dedup(corrected.values().flatten().cloned().collect());
        // Both written in the COMMIT, so that a restart knows them (`late_commit_of`,
        // docs/WAL.md §9).
        let mut payload = json!({"op": "sync", "path": f.path.as_str(), "participants": f.verification.participants().collect::<Vec<_>>()});
        if late {
            payload["late"] = json!(true);
        }
        if !corrected_uuids.is_empty() {
            payload["corrected"] = json!(corrected_uuids);
        }
        let commit = self.draft(&f.batch_id, Phase::Commit, f.uuids.clone(), Outcome::Ok, payload);
        let written = match cx.io(Effect::Commit { commit, records: f.records.clone() }).await {
            Done::Appended(r) => r,
            other => Err(format!("the COMMIT was answered {other:?}")),
        };
        let commit_seq = match written {
            Ok(r) => r.last().map(|r| r.seq).unwrap_or(0),
            Err(e) => return cx.storage_failed(&f.batch_id, &e).await,
        };
        self.co_poses_ended(&f.uuids, true, cx.now());
        self.own_writes_end_foreign(&f);
        for u in &f.uuids {
            if let Some(w) = f.writes.get(u) {
                self.synced.entry(u.clone()).or_default().merge(w);
            }
            self.not_synced.retain(|(x, _), _| x != u);
            self.refused.retain(|(x, _), _| x != u);
            if !self.kept_here.is_empty() {
                // Its editor's full state committed (or the uuid is deleted): kept no more.
                for q in f.changes.iter().filter(|q| &q.change.uuid == u) {
                    match q.change.op {
                        ChangeOp::Create(_) => {
                            self.kept_here.remove(u, &client_of(cx, &f, &q.origin));
                        }
                        ChangeOp::Delete => self.kept_here.forget_uuid(u),
                        _ => {}
                    }
                }
            }
            if !self.foreign_kept.is_empty() {
                if f.changes.iter().any(|q| &q.change.uuid == u && matches!(q.change.op, ChangeOp::Delete)) {
                    self.foreign_kept.forget_uuid(u); // deleted: nobody holds it
                } else {
                    // An editor whose change of the uuid commits while it keeps nothing of it
                    // holds the batch's state now: its full state committed (above), or it took
                    // the corrections of what it lost while its change was in flight
                    // (`lost_while_kept` counted it as one that might keep the uuid).
                    for q in f.changes.iter().filter(|q| &q.change.uuid == u) {
                        let key = (u.clone(), client_of(cx, &f, &q.origin));
                        if !self.kept_here.contains(&key.0, &key.1) {
                            self.foreign_kept.forget(u, &key.1);
                        }
                    }
                }
            }
            if self.delete_losers.contains_key(u)
                && f.changes.iter().any(|q| &q.change.uuid == u && matches!(q.change.op, ChangeOp::Create(_)))
            {
                self.delete_losers.remove(u); // it lives again: a later delete is a new conflict
            }
        }
        // A loser of the batch's conflicts that keeps the uuid locally holds its lost value
        // still (after the ends above: its own change in this batch is the one that lost).
        for c in &f.conflicts {
            let client_id = client_of(cx, &f, &c.loser);
            let lost = f.changes.iter().filter(|q| q.origin == c.loser && q.change.uuid == c.uuid);
            let ops: Vec<ChangeOp> = lost.map(|q| q.change.op.clone()).collect();
            self.lost_while_kept(&c.uuid, &client_id, &ops, Some(&f.batch_id));
        }
        // A parent this batch puts an object under that a `tombstone` request deleted while
        // the batch was in flight: the object stands under one that is gone. Every editor
        // that applied the batch before the delete holds it at the root where it stands; the
        // next main batch puts it there for all (`batch`, docs/PROTOCOL.md §6.1 "delete").
        // (The fast path writes no parent: transforms, renames and visibility only.)
        if f.path != Path::Fast {
            let parents = self.note_committed(&f.records);
            if let Err(why) = self.owe_moves_under_deleted(cx, parents, cx.now()) {
                return cx.storage_failed(&f.batch_id, &why).await;
            }
        }
        if late || !corrected_uuids.is_empty() {
            let uuids =
                if late { dedup(f.uuids.iter().cloned().chain(corrected_uuids).collect()) } else { corrected_uuids };
            self.late_commits.push((commit_seq, uuids));
        }
        info!(batch_id = %f.batch_id, project_id = %self.project, uuids = ?f.uuids, seq = commit_seq, "batch committed");
        cx.io(Effect::Finalize {
            session_id: super::SYNC_SESSION.into(),
            operation_id: f.batch_id.clone(),
            uuids: f.uuids.clone(),
        })
        .await;
        self.result(cx, &f, commit_seq, BatchOutcome::Committed, None, &BTreeMap::new(), &corrected, "", &[]).await;
        let stale_corrections = self.drop_stale_after_commit(cx, stale_now, commit_seq).await;
        // Conflicts: both editors hear of it; the loser is corrected when what it holds after
        // applying what it was sent differs from the winner's state.
        let kind = |s: &SessionId| f.kinds.get(s).cloned().unwrap_or_default();
        for c in &f.conflicts {
            let to = [c.winner.clone(), c.loser.clone()];
            self.announce_conflict(cx, &c.uuid, (&kind(&c.winner), &kind(&c.loser)), c.op, f.seq, &to).await;
        }
        // Across windows: the loser is corrected by the batch it was sent (it holds the
        // winner's value); both hear of it.
        for r in &f.rebased {
            let winner = kind(&r.winner);
            warn!(batch_id = %f.batch_id, project_id = %self.project, uuids = ?[&r.uuid], winner = %winner, loser = %r.loser.editor, op = r.op, seq = f.seq, overridden_seq = r.loser.seq, "conflict: a change made before its editor heard of another editor's change of the same part overrides it; the later writer wins");
            let to = self.with_sessions_of(cx, &r.winner, &r.loser.client);
            self.announce_conflict(cx, &r.uuid, (&winner, &r.loser.editor), r.op, f.seq, &to).await;
        }
        for (s, uuids) in &f.corrections {
            self.send_resync(cx, s, uuids, "conflict: corrected to the winner's state").await;
        }
        // Origins that applied an earlier-forwarded batch of the uuid after making their
        // change hold that batch's state: they are sent the state their change made.
        // One resync per editor for all of them.
        let mut overtaken_by: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (s, u) in &f.overtaken {
            if f.corrections.get(s).is_some_and(|c| c.contains(u)) {
                continue;
            }
            overtaken_by.entry(s).or_default().push(u.clone());
        }
        for (s, uuids) in overtaken_by {
            let uuids = dedup(uuids);
            info!(batch_id = %f.batch_id, session_id = %s, uuids = ?uuids, "an editor applied an older batch of these objects after its own change: sent the committed state");
            self.send_resync(cx, s, &uuids, "overtaken").await;
        }
        for (s, uuids) in stale_corrections {
            self.send_deferred_resync(cx, &s, uuids, 0).await;
        }
        self.send_waiting_corrections(cx, &f.uuids).await;
        self.publish_status(cx).await;
    }

    /// The queued changes that were stale only against batch `f` when they arrived
    /// (`stale_after_flight`, docs/PROTOCOL.md §6.1), now that it commits: each that a part
    /// `f` wrote makes stale — written after its `base_seq`, unseen by its editor — leaves
    /// the queue, with the write it lost to. The others go on. Every entry of `f` ends here.
    fn stale_after_commit(&mut self, f: &Inflight, now: u64) -> Vec<(crate::sync::Queued<Editor>, Write)> {
        let mine: Vec<((SessionId, String, u64), u64)> = self
            .stale_after_flight
            .iter()
            .filter(|(_, (_, b))| *b == f.batch_id)
            .map(|(k, (base, _))| (k.clone(), *base))
            .collect();
        let mut out = Vec::new();
        for ((session, uuid, mark), base) in mine {
            self.stale_after_flight.remove(&(session.clone(), uuid.clone(), mark));
            let Some(writes) = f.writes.get(&uuid) else { continue };
            let lost_to = |q: &crate::sync::Queued<Editor>| {
                writes
                    .newer_unseen_by_other_for(
                        Parts::stale_against(&q.change.op),
                        (base, q.sight.saw),
                        &q.origin.client_id,
                        q.author,
                    )
                    .cloned()
            };
            let gone = self.queue.remove_of(
                &uuid,
                |q| q.origin.session_id == session && q.sight.mark == mark && lost_to(q).is_some(),
                now,
            );
            out.extend(gone.into_iter().filter_map(|q| lost_to(&q).map(|w| (q, w))));
        }
        out.sort_by_key(|(q, _)| q.sight.mark);
        out
    }

    /// End the changes [`Self::stale_after_commit`] took, after the result of the batch that
    /// made them stale (committed at `commit_seq`): one `dropped` result per editor, before the
    /// COMMIT like that result so that the correction lost to a disconnect comes again in the
    /// replay (§6.4), and a conflict the batch's change won (§6.2). Returns the corrections
    /// to send, per session.
    async fn drop_stale_after_commit(
        &mut self,
        cx: &Cx<'_>,
        stale: Vec<(crate::sync::Queued<Editor>, Write)>,
        commit_seq: u64,
    ) -> BTreeMap<SessionId, Vec<String>> {
        let mut by_origin: BTreeMap<SessionId, Vec<(crate::sync::Queued<Editor>, Write)>> = BTreeMap::new();
        for (q, w) in stale {
            warn!(uuids = ?[&q.change.uuid], origin = %q.origin.session_id, winner = %w.editor, seq = w.seq, "a change made before its editor heard of another editor's change of the same part, which has committed since: dropped, its editor corrected");
            by_origin.entry(q.origin.session_id.clone()).or_default().push((q, w));
        }
        let mut corrections = BTreeMap::new();
        for (session_id, changes) in by_origin {
            let loser = changes[0].0.origin.clone();
            for (q, _) in &changes {
                self.lost_while_kept(&q.change.uuid, &loser.client_id, std::slice::from_ref(&q.change.op), None);
            }
            let uuids = dedup(changes.iter().map(|(q, _)| q.change.uuid.clone()).collect());
            let through = through_of(changes.iter().map(|(q, _)| q));
            let seq = commit_seq.saturating_sub(1);
            self.send_dropped(cx, &session_id, uuids.clone(), seq, Some(through), None).await;
            let lost: Vec<Stale> =
                changes.into_iter().map(|(q, w)| (q.change.uuid, q.change.op.name(), (w.client, w.editor))).collect();
            self.stale_conflicts(cx, &loser, lost).await;
            corrections.insert(session_id, uuids);
        }
        corrections
    }

    /// The resyncs that waited for a batch of `uuids` to end (`waiting_corrections`), sent
    /// right after its result — never over a person's edit its rollback kept in that editor
    /// (docs/PROTOCOL.md §6.4). One still held by another batch in flight, or behind a replay
    /// waiting for its session, waits again (`send_resync_attempt`).
    async fn send_waiting_corrections(&mut self, cx: &Cx<'_>, uuids: &[String]) {
        let (due, rest): (Vec<super::Deferred>, Vec<super::Deferred>) =
            std::mem::take(&mut self.deferred).into_iter().partition(
                |d| matches!(d, super::Deferred::Resync { uuids: w, .. } if w.iter().any(|u| uuids.contains(u))),
            );
        self.deferred = rest;
        for d in due {
            if let super::Deferred::Resync { session_id, uuids, attempts } = d {
                self.send_deferred_resync(cx, &session_id, uuids, attempts).await;
            }
        }
    }

    /// A resync decided before a batch ended, sent now — never over a person's edit its
    /// rollback kept in that editor meanwhile (docs/PROTOCOL.md §6.4).
    pub(super) async fn send_deferred_resync(
        &mut self,
        cx: &Cx<'_>,
        session_id: &str,
        uuids: Vec<String>,
        attempts: u32,
    ) {
        let uuids: Vec<String> = uuids.into_iter().filter(|u| !self.keeps(cx, session_id, u)).collect();
        if !uuids.is_empty() {
            self.send_resync_attempt(cx, session_id, &uuids, "deferred", attempts).await;
        }
    }

    /// Verification failed: ROLLBACK in the WAL, then `finalize` (docs/PROTOCOL.md §6.4): the
    /// origin of a person's edit keeps it (`kept_local`), everyone else who was sent the
    /// batch is re-sent the authoritative state, automation is reverted at its origin too.
    pub(super) async fn rollback(
        &mut self,
        cx: &Cx<'_>,
        batch_id: &str,
        code: RollbackCode,
        detail: Value,
        reason: String,
        mismatched: Vec<String>,
    ) {
        let Some(f) = self.take_inflight(batch_id) else { return };
        // Changes stale only against this batch go on: it never wrote what they missed.
        self.stale_after_flight.retain(|_, (_, b)| *b != f.batch_id);
        self.co_poses_ended(&f.uuids, false, cx.now());
        let mut plan = plan_rollback(&f.changes, &f.sends, |s| {
            f.kinds.get(s).is_some_and(|k| ClientKind::parse(k).is_some_and(ClientKind::holds_scene))
                || cx.view.session(s).is_some_and(|i| i.editor.holds_scene())
        });
        // A session gone since whose editor is connected again sent its unresolved work anew
        // when it reconnected (§6.6): that new session's changes decide what it keeps — one
        // refused `STALE` there was ended and is answered with the state that stands, which a
        // mark left by the old session's rollback would withhold for ever. Until the editor
        // reconnects, the mark stands (and the replay leaves the uuid out).
        // (Connected is enough: a session's join may wait for this very batch to end.)
        let back: BTreeSet<String> =
            cx.view.sessions().into_iter().filter(|e| e.editor.holds_scene()).map(|e| e.client_id).collect();
        plan.kept_local.retain(|s, _| cx.view.session(s).is_some() || !back.contains(&client_of(cx, &f, s)));
        // `kept_by` names each keeping editor's session and kind, for the not-synced list
        // rebuilt at boot (`crate::notsynced`).
        let (kept_clients, kept_by) = {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut by = serde_json::Map::new();
            for (s, uuids) in &plan.kept_local {
                let client = client_of(cx, &f, s);
                by.insert(client.clone(), json!({"session_id": s, "client": f.kinds.get(s)}));
                for u in uuids {
                    m.entry(u.clone()).or_default().push(client.clone());
                }
            }
            (m, by)
        };
        let mut rb: RecordDraft = self.draft(
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
        let record = match cx.append(vec![rb]).await {
            Ok(mut r) if !r.is_empty() => r.remove(r.len() - 1),
            Ok(_) => return cx.storage_failed(&f.batch_id, "the WAL wrote no ROLLBACK record").await,
            Err(e) => return cx.storage_failed(&f.batch_id, &e).await,
        };
        let seq = record.seq;
        let escalation = match cx.io(Effect::Observe(record)).await {
            Done::Escalation(e) => e,
            _ => Default::default(),
        };
        warn!(batch_id = %f.batch_id, project_id = %self.project, uuids = ?f.uuids, seq, error_code = code.as_str(), %reason, "batch rolled back; people's edits stay where they were made, the others are re-sent the authoritative state");
        self.rolled_back.push(RolledBack { seq, uuids: f.uuids.clone(), kept_local: kept_clients, sync: true });
        // What each editor that keeps a uuid locally was sent of it: it holds that,
        // uncorrected (§6.2) — less the parts it last wrote itself in the batch (its own
        // values, sent back in a full state), which are its person's (`stale::foreign_of`).
        // That is the editors this rollback keeps it at, and those that kept it already (an
        // earlier rollback) and had no change of it in this batch: the correction they are
        // sent leaves their kept work alone (§6.6), so they hold the rolled-back batch's
        // values of its other parts too, and their next full state must not write them
        // (random edits, seed 22: a rename rolled back in Blender, then sent back by Unity
        // as its person's, over Blender's person's next rename) — of those, only the plain
        // ops: another editor's full state may carry back the keeping editor's own kept
        // values, which stay its person's (random edits, seed 14: a kept hide).
        self.own_writes_end_foreign(&f);
        for (s, sent) in &f.sends {
            let client_id = client_of(cx, &f, s);
            let kept_here = plan.kept_local.get(s);
            let keeps = |u: &String, op: &ChangeOp| {
                kept_here.is_some_and(|k| k.contains(u))
                    || (!matches!(op, ChangeOp::Create(_))
                        && self.not_synced.contains_key(&(u.clone(), client_id.clone())))
            };
            let held: Vec<(String, ChangeOp)> = sent.iter().filter(|(u, op)| keeps(u, op)).cloned().collect();
            for (u, op) in held {
                let writes = f.writes.get(&u);
                let own = writes.map_or(Parts::NONE, |w| w.parts_of(&client_id));
                let values: Vec<crate::stale::HeldForeign> = crate::stale::foreign_of(&op, own)
                    .into_iter()
                    .map(|theirs| {
                        let parts = Parts::written_by(&theirs);
                        let from = writes.and_then(|w| w.writer_of(parts, &client_id)).map(str::to_string);
                        // (Whose it is unknown: never written, as before the writer was kept.)
                        let superseded = from.as_ref().is_none_or(|from| self.changed_since(cx, &u, from, &theirs));
                        crate::stale::HeldForeign { op: theirs, from: from.unwrap_or_default(), superseded }
                    })
                    .collect();
                self.foreign_kept.hold(&u, &client_id, values);
            }
        }
        for (s, uuids) in &plan.kept_local {
            let client_id = client_of(cx, &f, s);
            for u in uuids {
                self.kept_here.insert(u, &client_id);
                self.kept_here.touch(u); // its not-synced editors, in the next `kept` STEP
                self.not_synced.insert(
                    (u.clone(), client_id.clone()),
                    NotSynced {
                        uuid: u.clone(),
                        session_id: s.clone(),
                        client: f.kinds.get(s).cloned().unwrap_or_default(),
                        client_id: client_id.clone(),
                        reason: reason.clone(),
                        seq,
                    },
                );
            }
        }
        self.publish_status(cx).await;
        // The outcome first: an origin learns its change is resolved before any authoritative
        // state arrives.
        let mut corrected = plan.resync.clone();
        for (s, uuids) in self.waiting_corrections(&f.uuids) {
            corrected.entry(s).or_default().extend(uuids);
        }
        self.result(
            cx,
            &f,
            seq,
            BatchOutcome::RolledBack,
            Some(code),
            &plan.kept_local,
            &corrected,
            &reason,
            &mismatched,
        )
        .await;
        for (s, uuids) in &plan.resync {
            self.send_resync(cx, s, uuids, code.as_str()).await;
        }
        self.send_waiting_corrections(cx, &f.uuids).await;
        if !escalation.quarantine.is_empty() || !escalation.disable_ops.is_empty() || escalation.safe_mode.is_some() {
            cx.io(Effect::Escalate(escalation)).await;
        }
    }

    /// The resyncs that wait for a batch of `uuids` to end (`Deferred::Resync`: a change
    /// refused `STALE` while the batch was in flight is answered with the state after it, a
    /// correction decided meanwhile), by session: they go right after the batch's result.
    /// A part an editor wrote itself in batch `f` (committed or rolled back) holds its
    /// person's value there: no longer another editor's value it holds (`foreign_kept`), so
    /// its next full state writes it (docs/PROTOCOL.md §6.2). Left, a hide both persons made,
    /// the one in Unity sent to Blender by a batch that rolled back, was dropped from
    /// Blender's full state as Unity's (and Unity's as Blender's): the object came back shown
    /// in both editors (random edits, seed 14). But a full state of its own that carried the
    /// value as it was sent, while it was still the other person's choice (not
    /// `superseded`), wrote that on their behalf: the value stays theirs.
    fn own_writes_end_foreign(&mut self, f: &Inflight) {
        if self.foreign_kept.is_empty() {
            return;
        }
        for (u, writes) in &f.writes {
            let Some(held) = self.foreign_kept.of_mut(u) else { continue };
            for (client, ops) in held.iter_mut() {
                let own = writes.parts_of(client);
                if own == Parts::NONE {
                    continue;
                }
                // The editor's last op of the uuid in the batch writing each part of a held
                // value.
                let last_of = |parts: Parts| {
                    f.changes
                        .iter()
                        .rev()
                        .filter(|q| q.change.uuid == *u && f.client_ids.get(&q.origin) == Some(client))
                        .find(|q| Parts::written_by(&q.change.op).intersects(parts))
                        .map(|q| &q.change.op)
                };
                ops.retain(|o| {
                    let parts = Parts::written_by(&o.op);
                    if matches!(o.op, ChangeOp::Create(_)) || !own.intersects(parts) {
                        return true;
                    }
                    // A full state that carried the value unchanged while it was still its
                    // editor's person's choice wrote that person's value, not its own: it
                    // stays theirs, left out once they change the part (random edits, seed 14:
                    // Unity's full state carried Blender's first rename from a rolled-back
                    // batch; taken as Unity's own, its next full state wrote it over Blender's
                    // person's next name).
                    !o.superseded
                        && matches!(last_of(parts), Some(ChangeOp::Create(st)) if crate::stale::carries(st, &o.op))
                });
            }
            self.foreign_kept.tidy(u);
        }
    }

    /// `ops`, a change of `uuid` its editor (`client_id`) made while it keeps the uuid locally
    /// (`kept_here`), lost to another editor's change: a conflict (`dropped`) or a `STALE`
    /// refusal. The editor corrects nothing of a uuid it keeps (docs/PROTOCOL.md §6.6), so it
    /// holds the lost values still, and its next full state of the uuid carries them: that
    /// full state does not write them (`foreign_kept`, superseded from the start: §6.2 "A full
    /// state of an object the daemon holds"), and its editor is corrected once it commits.
    /// Written, they went over the winner's value in every editor (a hide dropped beside
    /// another person's later show came back with the kept rename's full state). A `create`
    /// that lost is kept no longer (§6.4): its editor takes the correction.
    ///
    /// Also while a change of the uuid from that editor is in a batch in flight (other than
    /// `deciding`, the batch this loss is decided in): it may roll back and be kept, and a
    /// change sent before its result carries none of the kept edit (§6.4).
    pub(super) fn lost_while_kept(&mut self, uuid: &str, client_id: &str, ops: &[ChangeOp], deciding: Option<&str>) {
        if ops.iter().any(|op| matches!(op, ChangeOp::Create(_))) {
            self.kept_here.remove(uuid, client_id);
            return;
        }
        let may_keep = self.inflight.iter().filter(|g| Some(g.batch_id.as_str()) != deciding).any(|g| {
            g.changes
                .iter()
                .any(|q| q.change.uuid == uuid && g.client_ids.get(&q.origin).is_some_and(|c| c == client_id))
        });
        if !may_keep && !self.kept_here.contains(uuid, client_id) {
            return;
        }
        let plain = ops.iter().filter(|op| {
            matches!(
                op,
                ChangeOp::Transform { .. }
                    | ChangeOp::Rename(_)
                    | ChangeOp::Visibility(_)
                    | ChangeOp::Mesh(_)
                    | ChangeOp::Material(_)
            )
        });
        let values: Vec<crate::stale::HeldForeign> = plain
            .map(|op| crate::stale::HeldForeign { op: op.clone(), from: String::new(), superseded: true })
            .collect();
        if values.is_empty() {
            return;
        }
        debug!(uuids = ?[uuid], client_id, lost = values.len(), "a change of a uuid its editor keeps lost: its next full state does not write those values");
        self.foreign_kept.hold(uuid, client_id, values);
    }

    /// Does a change of `uuid` by `client` that sets a part of `held` to another value
    /// ([`crate::stale::sets_other_value`]) wait in a window, or go in a batch still in
    /// flight: its person has changed it since (`HeldForeign::superseded`; later ones are
    /// marked as they are admitted, `supersede_foreign`).
    fn changed_since(&self, cx: &Cx<'_>, uuid: &str, client: &str, held: &ChangeOp) -> bool {
        let writes = |op: &ChangeOp| crate::stale::sets_other_value(op, held);
        self.queue
            .pending_of(uuid)
            .chain(self.held.of(uuid))
            .any(|q| q.origin.client_id == client && writes(&q.change.op))
            || self.inflight.iter().any(|g| {
                g.changes
                    .iter()
                    .any(|q| q.change.uuid == uuid && writes(&q.change.op) && client_of(cx, g, &q.origin) == client)
            })
    }

    fn waiting_corrections(&self, uuids: &[String]) -> BTreeMap<SessionId, Vec<String>> {
        let mut out: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
        for d in &self.deferred {
            if let super::Deferred::Resync { session_id, uuids: waiting, .. } = d {
                let hit: Vec<String> = waiting.iter().filter(|u| uuids.contains(u)).cloned().collect();
                if !hit.is_empty() {
                    out.entry(session_id.clone()).or_default().extend(hit);
                }
            }
        }
        out
    }

    /// The batch's `batch_result` to its participants, the sessions it was sent to and its
    /// origins. A session in `corrected` is re-sent the authoritative state right after it
    /// (a rollback's resync, a commit's correction): its result carries `seq - 1`, so that
    /// its editor's `last_seq` passes the COMMIT or ROLLBACK record only with that resync's
    /// `batch_end` — a resync lost in a disconnect or a restart comes again in the replay
    /// after `last_seq`, which names the uuids of every rollback after it and of the
    /// corrections of every commit after it (`late_commits`; both read from the WAL at boot)
    /// (docs/PROTOCOL.md §6.4, §6.6).
    #[allow(clippy::too_many_arguments)]
    async fn result(
        &self,
        cx: &Cx<'_>,
        f: &Inflight,
        seq: u64,
        outcome: BatchOutcome,
        error_code: Option<RollbackCode>,
        kept_local: &BTreeMap<SessionId, Vec<String>>,
        corrected: &BTreeMap<SessionId, Vec<String>>,
        reason: &str,
        mismatched: &[String],
    ) {
        let mut targets: BTreeSet<&SessionId> = f.verification.participants().collect();
        targets.extend(f.sends.keys());
        targets.extend(f.origins.iter());
        self.expose(seq);
        for s in targets {
            let kept = kept_local.contains_key(s);
            // Why it did not stand: for the person who keeps the edit, and for an origin that
            // keeps nothing (an agent, a `cli` or `test` session) — never for a bystander.
            let told = kept || (outcome == BatchOutcome::RolledBack && f.origins.contains(s) && !reason.is_empty());
            let seq = if corrected.contains_key(s) { seq.saturating_sub(1) } else { seq };
            let msg = Outbound::BatchResult {
                batch_id: f.batch_id.clone(),
                seq: self.result_seq_for(s, seq),
                outcome,
                uuids: f.uuids.clone(),
                error_code,
                kept_local: kept,
                reason: told.then(|| reason.to_string()),
                // Always sent (also empty): a change of one of these uuids that the receiver
                // sent and the daemon holds for a later batch is not ended by this one.
                through: Some(through_of(f.changes.iter().filter(|q| &q.origin == s))),
                mismatched: mismatched.to_vec(),
            }
            .to_frame();
            let ok = cx.send(s, vec![msg]).await;
            debug!(batch_id = %f.batch_id, session_id = %s, ok, outcome = outcome.as_str(), kept, "batch_result sent");
        }
    }

    /// The WAL STEP that records a conflict (registry op `conflict`, docs/WAL.md): in the
    /// batch that resolved it, or standalone under `operation_id`.
    pub(super) fn conflict_step(
        &self,
        operation_id: &str,
        uuid: &str,
        winner: &str,
        loser: &str,
        op: &str,
    ) -> RecordDraft {
        self.step(
            operation_id,
            uuid,
            RegOp::Conflict {
                uuid: uuid.to_string(),
                winner: winner.to_string(),
                loser: loser.to_string(),
                change_op: op.to_string(),
            },
        )
    }

    /// The `conflict` event (docs/PROTOCOL.md §6.2, §6.8) to each of `to` once, counted for
    /// `status`. `winner` and `loser` are editor kinds.
    pub(super) async fn announce_conflict(
        &mut self,
        cx: &Cx<'_>,
        uuid: &str,
        (winner, loser): (&str, &str),
        op: &str,
        seq: u64,
        to: &[SessionId],
    ) {
        let ev = Outbound::Conflict {
            uuid: uuid.to_string(),
            winner: winner.to_string(),
            loser: loser.to_string(),
            op: op.to_string(),
            seq,
        }
        .to_frame();
        let to: BTreeSet<&SessionId> = to.iter().collect();
        for s in to {
            cx.send(s, vec![ev.clone()]).await;
        }
        self.conflicts += 1;
    }

    /// `session` and the project's sessions of `client_id` (a side known by its client id,
    /// e.g. the writer of a committed change, whose session may have changed since).
    pub(super) fn with_sessions_of(&self, cx: &Cx<'_>, session: &str, client_id: &str) -> Vec<SessionId> {
        let mut out = vec![session.to_string()];
        out.extend(self.project_sessions(cx).into_iter().filter(|s| s.client_id == client_id).map(|s| s.session_id));
        out
    }

    /// STALE refusals of slow-path changes are conflicts the other editor won: a standalone
    /// WAL STEP (`conflict`), a log line and a `conflict` event to both editors.
    pub(super) async fn stale_conflicts(&mut self, cx: &Cx<'_>, loser: &Editor, stale: Vec<Stale>) {
        // A change of a deleted uuid whose editor already lost to that delete (its earlier
        // change of the uuid, before a reconnect re-sent it) is the same conflict: once.
        let stale: Vec<Stale> = stale
            .into_iter()
            .filter(|(u, _, _)| !self.delete_losers.get(u).is_some_and(|c| c.contains(&loser.client_id)))
            .collect();
        if stale.is_empty() {
            return;
        }
        for (u, _, _) in &stale {
            // Lost to a delete (the uuid is gone): its later changes lose to it once more.
            let gone = match cx.view.lookup(u) {
                Ok(e) => e.is_none_or(|e| e.status == vibesync_registry::Status::Tombstoned),
                Err(_) => false,
            };
            if gone {
                self.delete_losers.entry(u.clone()).or_default().insert(loser.client_id.clone());
            }
        }
        let seq = cx.view.last_seq();
        let op_id = uuid::Uuid::new_v4().to_string();
        let loser_kind = loser.editor.to_string();
        let drafts: Vec<RecordDraft> =
            stale.iter().map(|(u, op, (_, winner))| self.conflict_step(&op_id, u, winner, &loser_kind, op)).collect();
        if let Err(e) = cx.append(drafts).await {
            return cx.storage_failed(&op_id, &e).await;
        }
        for (u, op, (winner_client, winner)) in stale {
            warn!(project_id = %self.project, operation_id = %op_id, uuid = %u, winner = %winner, loser = %loser.editor, op, seq, "conflict: a stale structural change was refused; the other editor's change stands");
            let to = self.with_sessions_of(cx, &loser.session_id, &winner_client);
            self.announce_conflict(cx, &u, (&winner, &loser_kind), op, seq, &to).await;
        }
        self.publish_status(cx).await;
    }

    /// Conflicts of a window that no batch carries — the last writer's change undid the
    /// other editor's, so every change of the uuid was dropped, or a reparent was dropped
    /// because it closed a parent cycle with the other editor's (docs/PROTOCOL.md §6.2): a
    /// standalone `conflict` STEP each, a log line (`why`) and the event to both editors
    /// (`seq`: the daemon's last seq before the STEPs). `kinds`: session → editor kind.
    pub(super) async fn unbatched_conflicts(
        &mut self,
        cx: &Cx<'_>,
        conflicts: Vec<Conflict>,
        kinds: &crate::fast::HashMap<SessionId, String>,
        why: &str,
    ) {
        if conflicts.is_empty() {
            return;
        }
        let seq = cx.view.last_seq();
        let op_id = uuid::Uuid::new_v4().to_string();
        let kind = |s: &SessionId| kinds.get(s).cloned().unwrap_or_default();
        let drafts: Vec<RecordDraft> = conflicts
            .iter()
            .map(|c| self.conflict_step(&op_id, &c.uuid, &kind(&c.winner), &kind(&c.loser), c.op))
            .collect();
        if let Err(e) = cx.append(drafts).await {
            return cx.storage_failed(&op_id, &e).await;
        }
        for c in conflicts {
            let (winner, loser) = (kind(&c.winner), kind(&c.loser));
            warn!(project_id = %self.project, operation_id = %op_id, uuids = ?[&c.uuid], winner = %winner, loser = %loser, op = c.op, seq, "conflict: {why}");
            self.announce_conflict(cx, &c.uuid, (&winner, &loser), c.op, seq, &[c.winner.clone(), c.loser.clone()])
                .await;
        }
        self.publish_status(cx).await;
    }

    /// A delete through a `tombstone` request (by `by`) of uuids another editor's change of
    /// which is waiting in a window or in a batch in flight: the delete is the later writer and
    /// wins (the waiting change is dropped at batch time, the batch's state of the uuid is not
    /// applied to a deleted record), and that is a conflict (docs/PROTOCOL.md §6.2): a
    /// standalone `conflict` STEP per loser and uuid, a log line and the event to both editors.
    pub(super) async fn tombstone_conflicts(&mut self, cx: &Cx<'_>, by: &Editor, ops: &[(String, ChangeOp)], seq: u64) {
        // (loser session, uuid) → the loser's last op of it.
        let mut lost: BTreeMap<(SessionId, String), &'static str> = BTreeMap::new();
        for (u, _) in ops {
            let waiting = self.queue.pending_of(u).map(|q| (q.origin.session_id.clone(), q.change.op.name()));
            let in_flight = self
                .inflight
                .iter()
                .flat_map(|f| f.changes.iter())
                .filter(|q| &q.change.uuid == u)
                .map(|q| (q.origin.clone(), q.change.op.name()));
            for (s, op) in in_flight.chain(waiting) {
                if s != by.session_id {
                    lost.insert((s, u.clone()), op);
                }
            }
        }
        let losers: Vec<(Editor, String, &'static str)> = lost
            .into_iter()
            .filter_map(|((s, u), op)| cx.view.session(&s).filter(|e| e.client_id != by.client_id).map(|e| (e, u, op)))
            .collect();
        self.delete_won(cx, (by.editor.as_str(), &by.client_id), losers, seq).await;
    }

    /// The `seq` of a `batch_result` to `session_id`: `seq`, but never past a replay that waits
    /// for that session — a later seq would move the editor's `last_seq` past what the replay
    /// brings (docs/PROTOCOL.md §6.4, §6.6), e.g. a delete committed meanwhile, lost for good
    /// if the editor drops before the replay arrives.
    fn result_seq_for(&self, session_id: &str, seq: u64) -> u64 {
        self.pending_replay_base(session_id).map_or(seq, |base| base.min(seq))
    }

    /// A `batch_result` `dropped` to `session_id` for its changes of `uuids` that no batch
    /// carries, at `seq`; `through` names per uuid the last request it ends (`None`: every
    /// change of `uuids` ends, PROTOCOL §6.4); `reason` says why when the change did not run
    /// (automation's, §6.7).
    pub(super) async fn send_dropped(
        &self,
        cx: &Cx<'_>,
        session_id: &SessionId,
        uuids: Vec<String>,
        seq: u64,
        through: Option<BTreeMap<String, String>>,
        reason: Option<&str>,
    ) {
        let seq = self.result_seq_for(session_id, seq);
        self.expose(seq);
        let msg = Outbound::BatchResult {
            batch_id: uuid::Uuid::new_v4().to_string(),
            seq,
            outcome: vibesync_protocol::BatchOutcome::Dropped,
            uuids,
            error_code: None,
            kept_local: false,
            reason: reason.map(str::to_string),
            through,
            mismatched: Vec::new(),
        };
        cx.send(session_id, vec![msg.to_frame()]).await;
    }

    /// Automation's held changes when people are idle and the daemon is in safe mode: none
    /// runs; each origin gets one `dropped` result for its uuids, its `reason` naming safe
    /// mode (docs/PROTOCOL.md §6.7).
    pub(super) async fn drop_held_in_safe_mode(&mut self, cx: &Cx<'_>) {
        let held = self.held.take();
        warn!(changes = held.len(), "safe mode: automation's held changes are not run");
        let reason = "safe mode: automation is disabled, so this held change was not run; a person runs \
                      `vibesync safe-mode clear`, then send it again";
        self.drop_unrun(cx, held, reason).await;
    }

    /// Automation's changes — held, or waiting in a window — of a part a person's queued edit
    /// (`overwritten`: uuid and the parts it writes, by `person`'s session) writes: made
    /// before that edit, each would undo it (once people are idle, or as the earlier write of
    /// the batch) — none runs; each origin gets a `dropped` result, its `reason` saying so,
    /// and an editor that made one (a tool call run there) the state that stands
    /// (docs/PROTOCOL.md §6.7).
    pub(super) async fn drop_automation_a_person_overwrote(
        &mut self,
        cx: &Cx<'_>,
        person: &Editor,
        overwritten: Vec<(String, crate::stale::Parts)>,
    ) {
        // (Not automation's change made in the person's own editor: it ran over the scene
        // that holds the person's edit, which comes after it.)
        let mut written: crate::fast::HashMap<&str, Parts> = Default::default();
        for (u, p) in &overwritten {
            let w = written.entry(u.as_str()).or_default();
            *w = w.union(*p);
        }
        let overwrites = |q: &crate::sync::Queued<Editor>| {
            q.author == crate::sync::Author::Automation
                && q.origin.client_id != person.client_id
                && written.get(q.change.uuid.as_str()).is_some_and(|p| p.intersects(Parts::written_by(&q.change.op)))
        };
        let mut gone = if overwritten.iter().any(|(u, _)| self.held.holds(u)) {
            self.held.take_where(&overwrites)
        } else {
            Vec::new()
        };
        let now = cx.now();
        let uuids: BTreeSet<String> = overwritten.iter().map(|(u, _)| u.clone()).collect();
        for u in &uuids {
            gone.extend(self.queue.remove_of(u, |q| overwrites(q), now));
        }
        if gone.is_empty() {
            return;
        }
        let names: Vec<&str> = gone.iter().map(|h| h.change.uuid.as_str()).collect();
        info!(uuids = ?names, editor = %person.editor, "a person changed what automation's waiting changes would write: they do not run");
        let reason = format!(
            "a person changed this object in {} before this change ran; automation never overwrites a person's \
             edit: read the object again and send a new change if it is still wanted",
            person.editor
        );
        let mut undo: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for q in gone.iter().filter(|q| q.origin.editor.holds_scene()) {
            undo.entry(q.origin.session_id.clone()).or_default().push(q.change.uuid.clone());
        }
        self.drop_unrun(cx, gone, &reason).await;
        for (session_id, uuids) in undo {
            self.send_resync(cx, &session_id, &dedup(uuids), "automation's change a person overwrote").await;
        }
    }

    /// End automation's changes that did not run (held, or taken from a window): one
    /// `dropped` result per origin, with `reason`.
    async fn drop_unrun(&mut self, cx: &Cx<'_>, changes: Vec<crate::sync::Queued<Editor>>, reason: &str) {
        let mut by_origin: BTreeMap<String, Vec<crate::sync::Queued<String>>> = BTreeMap::new();
        for q in changes {
            let s = q.origin.session_id.clone();
            by_origin.entry(s.clone()).or_default().push(q.with_origin(s));
        }
        let seq = cx.view.last_seq();
        for (session_id, changes) in by_origin {
            let uuids = dedup(changes.iter().map(|q| q.change.uuid.clone()).collect());
            self.send_dropped(cx, &session_id, uuids, seq, Some(through_of(changes.iter())), Some(reason)).await;
        }
    }

    /// A delete (by the editor kind and client id `winner`, committed at `seq`) won over
    /// `losers`' changes — (loser, uuid, the loser's op): a standalone `conflict` STEP per
    /// loser and uuid, a log line, and the event to the loser and the deleting editor's
    /// sessions (docs/PROTOCOL.md §6.2).
    pub(super) async fn delete_won(
        &mut self,
        cx: &Cx<'_>,
        (winner, winner_client): (&str, &str),
        losers: Vec<(Editor, String, &'static str)>,
        seq: u64,
    ) {
        // Once per losing editor and uuid while the uuid stays deleted (`delete_losers`).
        let losers: Vec<(Editor, String, &'static str)> = losers
            .into_iter()
            .filter(|(loser, u, _)| self.delete_losers.entry(u.clone()).or_default().insert(loser.client_id.clone()))
            .collect();
        if losers.is_empty() {
            return;
        }
        let op_id = uuid::Uuid::new_v4().to_string();
        let drafts: Vec<RecordDraft> = losers
            .iter()
            .map(|(loser, u, op)| self.conflict_step(&op_id, u, winner, loser.editor.as_str(), op))
            .collect();
        if let Err(e) = cx.append(drafts).await {
            return cx.storage_failed(&op_id, &e).await;
        }
        for (loser, u, op) in losers {
            warn!(project_id = %self.project, operation_id = %op_id, uuids = ?[&u], winner = %winner, loser = %loser.editor, op, seq, "conflict: an object another editor was changing was deleted; the delete stands");
            let to = self.with_sessions_of(cx, &loser.session_id, winner_client);
            self.announce_conflict(cx, &u, (winner, loser.editor.as_str()), op, seq, &to).await;
        }
    }

    /// The write of the batch in flight with `change`'s uuid that makes it (made by `me` at
    /// `base_seq`) stale, if any (docs/PROTOCOL.md §6.1): a write after `base_seq` of a part
    /// `change` writes or depends on. That batch may yet roll back: such a change waits for it
    /// (`stale_after_flight`).
    pub(super) fn stale_in_flight(
        &self,
        change: &Change,
        sight: (u64, [u64; 3]),
        (me, author): (&str, Author),
    ) -> Option<&Write> {
        self.inflight_with(&change.uuid)
            .and_then(|f| f.writes.get(&change.uuid))
            .and_then(|w| w.newer_unseen_by_other_for(Parts::stale_against(&change.op), sight, me, author))
    }

    /// Who last wrote each part of `uuid` in a committed batch (docs/PROTOCOL.md §6.1): the
    /// batches committed since this machine started (`synced`, with their live-preview
    /// marks), over the writers the registry keeps of batches before that (a daemon restart
    /// forgets none). The registry is read only when `synced` has no writer of some part of
    /// `parts`. Err: the registry could not be read.
    pub(super) fn committed_writes(
        &self,
        cx: &Cx<'_>,
        uuid: &str,
        parts: Parts,
    ) -> Result<std::borrow::Cow<'_, LastWrites>, String> {
        let since = self.synced.get(uuid);
        let wanted = parts.without(Parts::GONE);
        if since.is_some_and(|w| w.parts().intersection(wanted) == wanted) || wanted.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(since.unwrap_or(&EMPTY_WRITES)));
        }
        let boot = self.boot_seq.unwrap_or(0);
        let before = match cx.view.lookup(uuid)? {
            Some(e) if e.writers.iter().any(|w| w.seq <= boot) => LastWrites::from_registry(&e.writers, boot),
            _ => return Ok(std::borrow::Cow::Borrowed(since.unwrap_or(&EMPTY_WRITES))),
        };
        let mut all = before;
        if let Some(w) = since {
            all.merge(w);
        }
        Ok(std::borrow::Cow::Owned(all))
    }

    /// What makes `change` (made by `author`) stale (docs/PROTOCOL.md §6.1): a person's
    /// change is never stale against automation's write, its delete included. The batch in
    /// flight's write ([`Self::stale_in_flight`]), a committed one, or —
    /// for a uuid with no live record and no change waiting (`known` false) — its delete by
    /// another client after `base_seq` as the registry keeps it (the newest archived version's
    /// `tombstone_seq` and `deleted_by`): a delete this daemon has not seen a batch write
    /// because it committed before the daemon started. Every op is stale against a delete.
    /// Err: the registry could not be read.
    pub(super) fn stale_write(
        &self,
        cx: &Cx<'_>,
        change: &Change,
        (base_seq, saw): (u64, [u64; 3]),
        (me, author): (&str, Author),
        known: bool,
    ) -> Result<Option<Write>, String> {
        if let Some(w) = self.stale_in_flight(change, (base_seq, saw), (me, author)) {
            return Ok(Some(w.clone()));
        }
        self.stale_write_committed(cx, change, (base_seq, saw), (me, author), known)
    }

    /// [`Self::stale_write`] over committed changes alone: not the batch in flight. Err: the
    /// registry could not be read.
    pub(super) fn stale_write_committed(
        &self,
        cx: &Cx<'_>,
        change: &Change,
        (base_seq, saw): (u64, [u64; 3]),
        (me, author): (&str, Author),
        known: bool,
    ) -> Result<Option<Write>, String> {
        let parts = Parts::stale_against(&change.op);
        if let Some(w) =
            self.synced.get(&change.uuid).and_then(|w| w.newer_unseen_by_other_for(parts, (base_seq, saw), me, author))
        {
            return Ok(Some(w.clone()));
        }
        // Parts last written before this machine started, as the registry keeps them.
        let committed = self.committed_writes(cx, &change.uuid, parts)?;
        if let Some(w) = committed.newer_unseen_by_other_for(parts, (base_seq, saw), me, author) {
            return Ok(Some(w.clone()));
        }
        if known {
            return Ok(None);
        }
        let newest = cx.view.archived(&change.uuid)?.into_iter().max_by_key(Entry::archive_seq);
        Ok(newest.and_then(|e| {
            let seq = e.tombstone_seq.filter(|s| *s > base_seq)?;
            let by = e.deleted_by.filter(|by| by.client_id != me)?;
            let parts = Parts::written_by(&ChangeOp::Delete);
            let author_of_delete = if by.automation { Author::Automation } else { Author::Person };
            let w =
                Write { parts, seq, client: by.client_id, editor: by.editor, marks: [0; 3], author: author_of_delete };
            // Automation's delete (an agent session's, or an editor's sent as automation's):
            // a person's change brings it back.
            (author == Author::Automation || !w.by_automation()).then_some(w)
        }))
    }
}

/// A `batch_result`'s `through` (docs/PROTOCOL.md §6.4): per uuid, the request of the last of
/// `changes` (one origin's, in arrival order) that the result ends.
pub(super) fn through_of<'q, S: 'q>(
    changes: impl IntoIterator<Item = &'q crate::sync::Queued<S>>,
) -> BTreeMap<String, String> {
    changes.into_iter().map(|q| (q.change.uuid.clone(), q.request.to_string())).collect()
}

/// The `client_id` of session `s` of batch `f`: as the batch formed (the session may have
/// ended since: its editor still keeps what the rollback kept, §6.4), else as connected now.
fn client_of(cx: &Cx<'_>, f: &Inflight, s: &str) -> String {
    f.client_ids.get(s).cloned().or_else(|| cx.view.session(s).map(|i| i.client_id)).unwrap_or_default()
}
