//! Pipeline step `queue` of a project's sync: admission of a `change` request (zero-trust
//! parsing, quarantine, unknown uuids, STALE structural changes, parent cycles, mesh
//! attachments), the governance gate, automation held while people edit, and the two
//! windows (`crate::queue`). The `ack` goes out before anything that follows from it.

use crate::fast::{HashMap, HashSet};
use crate::stale::Parts;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info};
use vibesync_protocol::mesh::Mesh;
use vibesync_protocol::message::ItemResult;
use vibesync_protocol::{ClientKind, ItemErrorCode, ItemStatus, Outbound};
use vibesync_registry::{Entry, Status};

use super::forward::Preview;
use super::{dedup, state_of, Cx, Done, Editor, Effect, Project, SessionId};
use crate::governance::Decision;
use crate::live::Sight;
use crate::queue::{self, Lane};
use crate::sync::{apply_change, Author, Change, ChangeOp, Path, Queued};

/// Who wrote the links of a parent cycle that a change was made without
/// ([`Project::newer_link`]).
#[derive(Debug)]
pub(super) enum NewerLink {
    /// None was written by another client since the change's `base_seq`: a loop its editor
    /// knew of.
    None,
    /// A person wrote one: that reparent won.
    Person,
    /// Automation wrote every one, but the object whose link would be undone is quarantined
    /// (nothing changes it until a person releases it): the cycle stands as a conflict
    /// automation's reparent won.
    Quarantined,
    /// Automation wrote every one: the object on the chain whose parent automation wrote
    /// last, that write, and whether it was written in the window being formed (then the
    /// object's committed parent is the one it had before).
    Automation(String, crate::stale::Write, bool),
}

/// A STALE refusal: (uuid, op, (client_id, editor kind) of the change that won).
pub(super) type Stale = (String, &'static str, (String, String));

/// What admission found out about one change: the mesh to store once it is accepted, and
/// the uuid's registry entry (the gate reads the current state from it).
struct Admitted {
    blob: Option<String>,
    entry: Option<Arc<Entry>>,
    /// The bytes of the mesh its batch will carry to each receiver (0: none).
    mesh_bytes: u64,
    /// Stale only against this batch in flight (its id): decided when that batch ends
    /// (`Project::stale_after_flight`).
    after_flight: Option<String>,
}

impl Project {
    /// A `change` request: admit and queue each change, answer the `ack`, then the corrective
    /// resync for STALE changes — an editor learns its change was refused before the state
    /// that replaces it arrives (docs/PROTOCOL.md §6.1, §6.6).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn on_change(
        &mut self,
        cx: &Cx<'_>,
        session: &Editor,
        (base_seq, seen): (u64, &BTreeMap<String, u64>),
        changes: Vec<Result<Change, ItemResult>>,
        attachment: Bytes,
        request_id: String,
        author: Author,
    ) {
        let request: std::sync::Arc<str> = request_id.as_str().into();
        let (results, stale, refused, diverged_now) =
            self.enqueue(cx, session, (base_seq, seen), changes, attachment, author, request).await;
        let ack = Outbound::Ack { request_id, seq: cx.view.last_seq(), results }.to_frame();
        cx.send(&session.session_id, vec![ack]).await;
        if diverged_now {
            // After the `BLOCKED` ack, as a STALE refusal's resync follows its ack: the editor
            // has ended the refused changes before the replay that realigns it arrives.
            // Always answered: the full replay, or an empty `resync` batch carrying the
            // daemon's seq when there is nothing to replay (the refusal promises one).
            self.replay(cx, &session.session_id, 0, Some(None)).await;
        }
        if !stale.is_empty() {
            self.stale_conflicts(cx, session, stale).await;
        }
        // Every STALE refusal is followed by the state that stands — also one that is no
        // conflict (it would change nothing now, but a batch in flight may change the uuid).
        if !refused.is_empty() {
            self.send_resync(cx, &session.session_id, &dedup(refused), "stale change").await;
        }
    }

    /// Validate (zero trust) and queue one `change` request; returns its `ack` results, its
    /// STALE conflicts, the uuids of every STALE refusal, and whether this request found the
    /// session diverged (its full replay then follows the `ack`).
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &mut self,
        cx: &Cx<'_>,
        session: &Editor,
        (base_seq, seen): (u64, &BTreeMap<String, u64>),
        changes: Vec<Result<Change, ItemResult>>,
        attachment: Bytes,
        author: Author,
        request: std::sync::Arc<str>,
    ) -> (Vec<ItemResult>, Vec<Stale>, Vec<String>, bool) {
        let mut results = Vec::with_capacity(changes.len());
        let mut stale: Vec<Stale> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        let mut shown = false; // `status`'s list of refused changes changed
        let last_seq = cx.view.last_seq();
        let diverged_now = self.diverges(cx, &session.session_id, ("change", "base_seq", base_seq));
        let diverged = self.diverged.contains_key(&session.session_id).then(|| {
            if diverged_now {
                format!("sequence divergence: your base_seq {base_seq} is beyond this daemon's last seq {last_seq}; apply the full replay you were sent, then change again")
            } else {
                // A later change of a session blocked since: its own base_seq may be fine.
                format!("sequence divergence: this session followed another history (a seq beyond this daemon's last one was seen); apply the full replay you were sent (last seq {last_seq}), then change again")
            }
        });
        let automation_waits = session.editor == ClientKind::Agent
            && self.idle.automation_allowed_at(cx.now(), self.settings.user_idle_ms).is_some();
        // Admitted fast-path changes, forwarded at once as live previews (§6.3).
        let mut live: Vec<(String, Preview)> = Vec::new();
        // A person's queued edits of uuids automation has changes of held or waiting: (uuid, parts).
        let mut overwritten: Vec<(String, Parts)> = Vec::new();
        for (i, parsed) in changes.into_iter().enumerate() {
            let change = match parsed {
                Ok(c) => c,
                Err(bad) => {
                    // Read as one refused at admission (below): automation's `INVALID_FIELD` is
                    // undone in its origin; a refusal its editor keeps the change under (a value
                    // out of range, a name too long, itself as its parent) is listed by
                    // `status` (docs/PROTOCOL.md §5); any other ends what was listed of it.
                    if vibesync_protocol::validate::uuid(&bad.uuid).is_ok() {
                        match bad.error_code {
                            Some(ItemErrorCode::InvalidField)
                                if author == Author::Automation && session.editor.holds_scene() =>
                            {
                                refused.push(bad.uuid.clone());
                            }
                            Some(code) if code.kept_by_editor() => {
                                let msg = bad.message.clone().unwrap_or_default();
                                shown |= self.note_refused(session, &bad.uuid, code, &msg, last_seq);
                            }
                            _ => shown |= self.sent_again(session, &bad.uuid),
                        }
                    }
                    results.push(bad);
                    continue;
                }
            };
            let at = format!("changes[{i}]");
            // A session that followed another history: every change of it is refused, before
            // anything is read against this daemon's state (§6.7 "Sequence coherence"); its
            // editor keeps it, listed by `status`.
            if let Some(msg) = &diverged {
                let msg = format!("{at}: {msg}");
                shown |= self.note_refused(session, &change.uuid, ItemErrorCode::Blocked, &msg, last_seq);
                results.push(ItemResult::error(&change.uuid, ItemErrorCode::Blocked, msg));
                continue;
            }
            // Its mark, and what its person had in front of them: the other editors' changes
            // of the uuid this editor had applied as live previews (§6.1 `seen`, §6.3).
            self.next_mark += 1;
            let saw = match seen.get(&change.uuid) {
                Some(m) => self.delivered.saw(&session.session_id, &change.uuid, *m),
                None => [0; 3],
            };
            let sight = Sight { mark: self.next_mark, saw };

            let Admitted { blob, entry, mesh_bytes, after_flight } =
                match self.admit(cx, (session, author), (base_seq, saw), &change, &attachment, &at) {
                    Ok(a) => a,
                    Err(Refusal { code, message: msg, mesh_wanted }) => {
                        if code == ItemErrorCode::StorageFailed {
                            cx.storage_failed("sync", &msg).await;
                        }
                        // Automation's change the daemon cannot take as it is (a reparent read
                        // as a parent loop, say) is undone in its origin too, as automation's
                        // rolled-back changes are (§6.4): its editor ends it, not keeps it, and
                        // is sent the state that stands (model seed 2017). A person's stays; so
                        // does what `status` lists of a person's edit the editor keeps of it.
                        // (Not for a mesh named and not carried: the editor sends it again
                        // with the mesh.)
                        let revert = author == Author::Automation
                            && code == ItemErrorCode::InvalidField
                            && !mesh_wanted
                            && session.editor.holds_scene();
                        if revert {
                            refused.push(change.uuid.clone());
                        } else if !code.kept_by_editor() || mesh_wanted {
                            shown |= self.sent_again(session, &change.uuid); // a refusal the editor keeps: not
                        } else {
                            shown |= self.note_refused(session, &change.uuid, code, &msg, last_seq);
                        }
                        if code == ItemErrorCode::Stale {
                            refused.push(change.uuid.clone());
                            if author == Author::Person {
                                let op = std::slice::from_ref(&change.op);
                                self.lost_while_kept(&change.uuid, &session.client_id, op, None);
                            }
                            // A reparent closing a cycle with a newer one: the correction also
                            // carries the other objects on the cycle, parents first. The editor
                            // may hold the winner's reparent unapplied (its own reparent, made
                            // offline, made it a loop there), and needs both to agree (§6.1).
                            // Read over the batches in flight too (any editor's): a loop
                            // with one of them is corrected once it ends (`send_resync`
                            // waits for it), or the editor, which left that batch's reparent
                            // unapplied, would never get it (model seed 37).
                            let own = self.own_pending_parents(&session.session_id, &change);
                            let flying = self.inflight_parents();
                            let chain = self
                                .parent_cycle_of(cx, &change, |u| own.get(u).or_else(|| flying.get(u)).cloned())
                                .ok()
                                .flatten();
                            if !self.changes_nothing(cx, &change) {
                                // Read again as admission read it (a STALE uuid was either
                                // written by another editor since, or is deleted: `known` false
                                // is both).
                                let winner = self
                                    .stale_write(cx, &change, (base_seq, saw), (&session.client_id, author), false)
                                    .ok()
                                    .flatten()
                                    .or_else(|| {
                                        self.cycle_write(
                                            cx,
                                            chain.as_deref()?,
                                            base_seq,
                                            (&session.client_id, &session.session_id),
                                        )
                                        .ok()
                                        .flatten()
                                    })
                                    .map(|w| (w.client, w.editor))
                                    .unwrap_or_default();
                                stale.push((change.uuid.clone(), change.op.name(), winner));
                            }
                            refused.extend(chain.into_iter().flatten().filter(|u| *u != change.uuid));
                        }
                        results.push(ItemResult::error(&change.uuid, code, msg));
                        continue;
                    }
                };
            // Automation's change of a part a person's change is on its way for (waiting in a
            // window, or in a batch in flight): made without it, it would be the later writer
            // and undo the person's edit (§6.7) — refused `STALE`, and its editor is sent the
            // state that stands.
            if author == Author::Automation {
                if let Some(by) = self.persons_change_on_its_way(&change, &session.client_id) {
                    info!(uuid = %change.uuid, op = change.op.name(), person = %by, "automation's change refused: a person's change of the object is on its way");
                    results.push(ItemResult::error(
                        &change.uuid,
                        ItemErrorCode::Stale,
                        format!(
                            "{at}: a person's change of this object in {by} is on its way; automation never overwrites a person's edit — read the object again and send a new change if it is still wanted"
                        ),
                    ));
                    refused.push(change.uuid.clone());
                    continue;
                }
            }
            let decision = match self.consult_gate(cx, &change, entry) {
                Ok(d) => d,
                Err(why) => {
                    cx.storage_failed("sync", &why).await;
                    results.push(ItemResult::error(&change.uuid, ItemErrorCode::StorageFailed, format!("{at}: {why}")));
                    continue;
                }
            };
            match decision {
                Decision::Block(reason) => {
                    info!(uuid = %change.uuid, op = change.op.name(), reason = %reason, "gate: blocked");
                    let msg = format!("{at}: {reason}");
                    shown |= self.note_refused(session, &change.uuid, ItemErrorCode::Blocked, &msg, last_seq);
                    results.push(ItemResult::error(&change.uuid, ItemErrorCode::Blocked, msg));
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
                let stored = match cx.io(Effect::StoreBlob { hash, bytes: attachment.clone() }).await {
                    Done::Stored(r) => r,
                    other => Err(format!("the blob store was answered {other:?}")),
                };
                if let Err(e) = stored {
                    results.push(ItemResult::error(&change.uuid, ItemErrorCode::StorageFailed, format!("{at}: {e}")));
                    continue;
                }
            }
            self.bases.insert((session.session_id.clone(), change.uuid.clone()), base_seq);
            shown |= self.sent_again(session, &change.uuid);
            let q = Queued {
                origin: session.clone(),
                author,
                change,
                request: request.clone(),
                sight,
                admitted_seq: Some(last_seq),
                mesh_bytes,
                keeps_world: false,
            };
            if let Some(batch_id) = after_flight {
                self.stale_after_flight
                    .insert((session.session_id.clone(), q.change.uuid.clone(), sight.mark), (base_seq, batch_id));
            }
            if automation_waits {
                results.push(ItemResult::ok(&q.change.uuid, ItemStatus::Held));
                self.held.push(q);
                continue;
            }
            results.push(ItemResult::ok(&q.change.uuid, ItemStatus::Queued));
            // A person's edit of a part an automation change held (or waiting in a window)
            // writes: that change, made before it, would undo it — once people are idle, or
            // as the earlier write its batch reads (§6.7) — it does not run.
            if author == Author::Person
                && (self.held.holds(&q.change.uuid)
                    || self.queue.pending_of(&q.change.uuid).any(|p| p.author == Author::Automation))
                && !self.changes_nothing(cx, &q.change)
            {
                overwritten.push((q.change.uuid.clone(), Parts::written_by(&q.change.op)));
            }
            let uuid = &q.change.uuid;
            if q.change.op.path() == Path::Slow || self.degraded.contains_key(uuid) {
                // Its batch carries everything of this uuid from now on, in order.
                self.slow_queued.insert(uuid.clone());
                self.live.cancel_uuid(uuid);
                live.retain(|(u, _)| u != uuid);
            } else {
                let op = self.co_preview(uuid, &session.client_id, &q.change.op);
                if let ChangeOp::Transform { t, r, s } = &op {
                    let previewed = crate::sync::Pose { t: *t, r: *r, s: *s };
                    self.note_move(&session.session_id, uuid, (sight.mark, sight.saw[0]), previewed);
                }
                if !self.holds_live(uuid) {
                    live.push((uuid.clone(), Preview { op, origin: session.editor, mark: sight.mark }));
                }
            }
            let now = cx.now();
            self.push(cx, now, q);
        }
        self.forward_live(cx, session, live).await;
        if shown {
            self.publish_status(cx).await;
        }
        if !overwritten.is_empty() {
            self.drop_automation_a_person_overwrote(cx, session, overwritten).await;
        }
        (results, stale, refused, diverged_now)
    }

    /// Sequence coherence (docs/PROTOCOL.md §6.7): a `change`'s `base_seq` or an `applied`'s
    /// `seq` (`(message, field, value)`) beyond the daemon's last seq — the editor followed
    /// another history. Marks the session diverged (its changes are refused `BLOCKED` until
    /// it acknowledges a full replay); true when this message showed it first (the caller
    /// then sends the replay).
    pub(super) fn diverges(
        &mut self,
        cx: &Cx<'_>,
        session_id: &SessionId,
        (message, field, seq): (&str, &str, u64),
    ) -> bool {
        let last_seq = cx.view.last_seq();
        if seq <= last_seq || self.diverged.contains_key(session_id) {
            return false;
        }
        tracing::warn!(session_id = %session_id, project_id = %self.project, message, field, seq, last_seq, "sequence divergence: the editor followed another history; blocking its changes and replaying everything");
        self.diverged.insert(session_id.clone(), None);
        true
    }

    /// The newest write of a parent on `chain` (a parent cycle a reparent would close) by a
    /// client other than `me` after `base_seq`: the reparent it was made without knowing.
    /// Also one written before this machine started (`committed_writes`), and one written
    /// before `base_seq` of an object whose state the daemon sent `me`'s session after
    /// `base_seq` (`forwarded`): the editor had not read it — e.g. the correction of a
    /// reparent of that object it lost in a window, having kept its own while it was in
    /// flight (docs/PROTOCOL.md §6.1; model seed 265). Err: the registry could not be read.
    pub(super) fn cycle_write(
        &self,
        cx: &Cx<'_>,
        chain: &[String],
        base_seq: u64,
        (me, session_id): (&str, &str),
    ) -> Result<Option<crate::stale::Write>, String> {
        let mut newest: Option<crate::stale::Write> = None;
        for u in chain {
            if let Some(w) = self.parent_write_unseen(cx, u, base_seq, (me, session_id))? {
                if newest.as_ref().is_none_or(|n| w.seq > n.seq) {
                    newest = Some(w);
                }
            }
        }
        Ok(newest)
    }

    /// The last write of `u`'s parent by a client other than `me`, if made after `base_seq` —
    /// or at any seq when the daemon sent `u`'s state to `me`'s session after `base_seq`
    /// (`forwarded`: not read yet when the change was made). Err: the registry could not be
    /// read.
    fn parent_write_unseen(
        &self,
        cx: &Cx<'_>,
        u: &str,
        base_seq: u64,
        (me, session_id): (&str, &str),
    ) -> Result<Option<crate::stale::Write>, String> {
        let writes = self.committed_writes(cx, u, crate::stale::Parts::PARENT)?;
        let unread = self.forwarded.get(&(session_id.to_string(), u.to_string())).is_some_and(|seq| *seq > base_seq);
        let since = if unread { 0 } else { base_seq };
        Ok(writes.newer_by_other(crate::stale::Parts::PARENT, since, me).cloned())
    }

    /// Who last wrote, after `base_seq`, the links of `chain` (a parent cycle a reparent would
    /// close) — the parent of each object on it but the changed object itself, whose parent the
    /// reparent replaces — other than `me` (or wrote one `me`'s session had not read yet, as
    /// for [`Self::cycle_write`]). For a person's reparent, [`NewerLink::Automation`] — every
    /// such write automation's — means the reparent is taken and the newest of those links
    /// undone: that object goes back under its parent before (or the root), where it stands
    /// (docs/PROTOCOL.md §6.1). Err: the registry could not be read.
    pub(super) fn newer_link(
        &self,
        cx: &Cx<'_>,
        chain: &[String],
        base_seq: u64,
        (me, session_id): (&str, &str),
    ) -> Result<NewerLink, String> {
        let mut newest: Option<(String, crate::stale::Write)> = None;
        for u in chain.iter().take(chain.len().saturating_sub(1)) {
            let Some(w) = self.parent_write_unseen(cx, u, base_seq, (me, session_id))? else { continue };
            if !w.by_automation() {
                return Ok(NewerLink::Person);
            }
            if newest.as_ref().is_none_or(|(_, n)| w.seq > n.seq) {
                newest = Some((u.clone(), w));
            }
        }
        Ok(match newest {
            Some((u, _)) if self.quarantined(cx, &u)? => NewerLink::Quarantined,
            Some((u, w)) => NewerLink::Automation(u, w, false),
            None => NewerLink::None,
        })
    }

    /// Is `uuid`'s record quarantined? Err: the registry could not be read.
    pub(super) fn quarantined(&self, cx: &Cx<'_>, uuid: &str) -> Result<bool, String> {
        let entry = cx.view.lookup(uuid).map_err(|e| format!("registry read failed: {e}"))?;
        Ok(entry.is_some_and(|e| e.status == Status::Quarantined))
    }

    /// An editor sent a change of `uuid` that was queued (or held) or refused with a code it
    /// does not keep (`ItemErrorCode::kept_by_editor`): it no longer keeps it as a person's edit
    /// (docs/PROTOCOL.md §6.4) — it re-sent what it kept (e.g. a person's delete of it), or it
    /// never read the `kept_local` result (it reconnected and re-sent the change whose outcome
    /// it never heard). From now on that change's outcome decides: a commit, a rollback that
    /// keeps it again, or the corrections of a drop or a refusal.
    /// Returns whether `status`'s list changed.
    fn sent_again(&mut self, session: &Editor, uuid: &str) -> bool {
        if self.not_synced.is_empty() && self.refused.is_empty() {
            return false;
        }
        let key = (uuid.to_string(), session.client_id.clone());
        let ended = self.not_synced.remove(&key).is_some();
        if ended {
            // Not read from the WAL's ROLLBACKs and COMMITs: the `kept` STEP says it
            // (docs/WAL.md §9 "Kept uuids"), or a restart would list it again and replay
            // nothing over it there (the model test: a person's delete of a kept create,
            // refused, then automation's create of the uuid, rolled back by the restart).
            self.kept_here.touch(uuid);
        }
        ended | self.refused.remove(&key).is_some()
    }

    /// Queue an admitted change in its window (pipeline step `queue`).
    pub(super) fn push(&mut self, cx: &Cx<'_>, now: u64, q: Queued<Editor>) -> Lane {
        self.supersede_foreign(&q);
        // The slow batch in flight (its uuids as a set, not copied per change).
        let slow: Option<&HashSet<String>> =
            self.inflight.iter().find(|f| f.path == Path::Slow && self.settings.pipelining).map(|f| &f.members);
        let held_back = match slow {
            None => false,
            Some(slow) => {
                self.degraded.contains_key(&q.change.uuid)
                    || queue::held_back(&q.change.uuid, slow, |u| match self.current_state(cx, u) {
                        Ok(st) => st.and_then(|s| s.parent),
                        // Unreadable: never guessed free (the caller's reads report the failure).
                        Err(_) => Some(u.to_string()),
                    })
            }
        };
        self.queue.push(now, q, slow.is_some(), held_back)
    }

    /// `q`, a change of its editor's, supersedes the values other editors hold as that editor's
    /// person's (`foreign_kept`) of the parts it sets to another value
    /// ([`crate::stale::sets_other_value`]; the same value again is the same choice): from
    /// now on a full state carrying
    /// one of them does not write it (docs/PROTOCOL.md §6.2 "A full state of an object the
    /// daemon holds"). Until then it is that person's choice, kept in its own editor too, and
    /// written like any value: left out, a hide both persons made was lost — Unity's full
    /// state did not write it because Blender's hide had reached Unity in a batch that
    /// rolled back, and the object came back shown in both editors (random edits, seed 26).
    fn supersede_foreign(&mut self, q: &Queued<Editor>) {
        let Some(by) = self.foreign_kept.of_mut(&q.change.uuid) else { return };
        for held in by.values_mut() {
            for h in held.iter_mut().filter(|h| h.from == q.origin.client_id) {
                h.superseded |= crate::stale::sets_other_value(&q.change.op, &h.op);
            }
        }
    }

    /// No live preview for a uuid with a slow-path change queued or in flight: its changes
    /// reach the other editors only through batches, in order (§6.3).
    pub(super) fn holds_live(&self, uuid: &str) -> bool {
        self.slow_queued.contains(uuid) || self.inflight.iter().any(|f| f.holds_live.contains(uuid))
    }

    /// The editor kind of a person's change of `change`'s uuid, writing a part `change`
    /// writes, that waits in a window or is in a batch in flight (`None`: none) — from
    /// another editor than `client_id`'s: in its own editor, automation ran after the
    /// person's edit, over the scene that holds it.
    fn persons_change_on_its_way(&self, change: &Change, client_id: &str) -> Option<ClientKind> {
        let parts = Parts::written_by(&change.op);
        let writes = |op: &ChangeOp| Parts::written_by(op).intersects(parts);
        if let Some(q) = self.queue.pending_of(&change.uuid).find(|q| {
            q.author == Author::Person
                && q.origin.editor.holds_scene()
                && q.origin.client_id != client_id
                && writes(&q.change.op)
        }) {
            return Some(q.origin.editor);
        }
        self.inflight.iter().find_map(|f| {
            f.changes
                .iter()
                .filter(|q| q.change.uuid == change.uuid && q.author == Author::Person && writes(&q.change.op))
                .filter(|q| f.client_ids.get(&q.origin).is_some_and(|c| c != client_id))
                .find_map(|q| f.kinds.get(&q.origin))
                .and_then(|k| ClientKind::parse(k))
                .filter(|k| k.holds_scene())
        })
    }

    /// Would `change` leave the uuid's committed state as it is (equal state hashes, §6.5)?
    /// Then a `STALE` refusal of it is no conflict: the editor already holds the state that
    /// stands — e.g. its objects re-sent as `create` after a reconnect (§6.2). A state that
    /// cannot be read counts as changed (the conflict is reported).
    fn changes_nothing(&self, cx: &Cx<'_>, change: &Change) -> bool {
        let Ok(Some(current)) = self.current_state(cx, &change.uuid) else { return false };
        match apply_change(Some(&current), &change.op) {
            Ok(Some(next)) => next.hash() == current.hash(),
            Ok(None) | Err(_) => false,
        }
    }

    /// Checks before the gate. `Ok(Some(hash))`: the attachment is a valid new mesh, to be
    /// stored once the change is accepted.
    fn admit(
        &self,
        cx: &Cx<'_>,
        (session, author): (&Editor, Author),
        (base_seq, saw): (u64, [u64; 3]),
        change: &Change,
        attachment: &Bytes,
        at: &str,
    ) -> Result<Admitted, Refusal> {
        // A read failure answers STORAGE_FAILED for this item, never "unknown uuid".
        let entry = cx.view.lookup(&change.uuid).map_err(|e| {
            (ItemErrorCode::StorageFailed, format!("{at}: registry read failed: {e}; nothing was queued for it"))
        })?;
        if entry.as_ref().is_some_and(|e| e.status == Status::Quarantined) {
            return Err((
                ItemErrorCode::Quarantined,
                format!("{at}: uuid is quarantined; release it with `vibesync quarantine release {}`", change.uuid),
            )
                .into());
        }
        // A uuid names one datablock of one kind (docs/PROTOCOL.md §5, §6.1 `create`): a
        // `create` naming another kind than its live record's is no state of that record.
        if let (ChangeOp::Create(st), Some(e)) = (&change.op, entry.as_ref()) {
            if e.status != Status::Tombstoned && e.kind != st.kind {
                return Err((
                    ItemErrorCode::InvalidField,
                    format!(
                        "{at}.kind: {} is registered as `{}`, not `{}`; a uuid names one datablock of one kind — give this one a new uuid (`register` it)",
                        change.uuid,
                        e.kind,
                        vibesync_protocol::validate::truncate_for_message(&st.kind)
                    ),
                )
                    .into());
            }
        }
        let known = entry.as_ref().is_some_and(|e| e.state.is_some() && e.status == Status::Live)
            || self.queue.has_pending(&change.uuid)
            || self.inflight_with(&change.uuid).is_some();
        // Stale only when another editor changed a part this change writes or depends on
        // after `base_seq` (docs/PROTOCOL.md §6.1): a mesh edited while another editor moved
        // the object stands; a move of an object another editor deleted since does not (it
        // is a conflict the delete won). A change based on an in-flight batch's seq or later
        // was made over its state, and waits in the main window for it to end. Checked before
        // "unknown": a uuid another editor deleted after `base_seq` is no unknown uuid — also
        // when that delete committed before this daemon started (the registry keeps who).
        // A write whose value its person had in front of them as a live preview (`saw`) was
        // made over, not missed (§6.1).
        // Stale only against a batch still in flight: that batch may yet roll back, and a
        // person's change refused for a change that never committed was lost — corrected to
        // the state before that batch, neither person's edit (random edits, seed 2). It is
        // queued (it waits in the main window for that batch to end) and decided when that
        // batch ends: dropped as stale if it commits, left to go on if it rolls back
        // (docs/PROTOCOL.md §6.1, `Project::stale_after_commit`). Stale against a committed
        // change too, it is refused now. (Each source is read once: the registry at most once.)
        let in_flight = self.stale_in_flight(change, (base_seq, saw), (&session.client_id, author)).cloned();
        let committed = self
            .stale_write_committed(cx, change, (base_seq, saw), (&session.client_id, author), known)
            .map_err(|e| {
                (ItemErrorCode::StorageFailed, format!("{at}: registry read failed: {e}; nothing was queued for it"))
            })?;
        let mut after_flight = None;
        if let (Some(w), None) = (&in_flight, &committed) {
            if let Some(f) = self.inflight_with(&change.uuid) {
                debug!(uuid = %change.uuid, winner = %w.editor, seq = w.seq, batch_id = %f.batch_id, "a change stale only against a batch in flight: queued, decided when that batch ends");
                after_flight = Some(f.batch_id.clone());
            }
        }
        let stale = in_flight.or(committed);
        if let Some(w) = stale.filter(|_| after_flight.is_none()) {
            let by_flight = self.inflight_with(&change.uuid).is_some_and(|f| f.seq == w.seq);
            let what = match (by_flight, known) {
                (true, _) => "is being changed",
                (false, true) => "was changed",
                (false, false) => "was deleted",
            };
            return Err((
                ItemErrorCode::Stale,
                format!("{at}: {} {what} by another editor ({} at seq {}, after your base_seq {base_seq}); you are sent its current state — apply it; the change is not re-sent (a person may make it again)", change.uuid, w.editor, w.seq),
            ).into());
        }
        if !known && !matches!(change.op, ChangeOp::Create(_)) {
            return Err((
                ItemErrorCode::NotFound,
                format!("{at}: no synced state for {}; send `create` first", change.uuid),
            )
                .into());
        }
        if change.op == ChangeOp::Delete && !session.editor.holds_scene() {
            // A delete removes that one object; what happens to its children is its origin
            // editor's to send (docs/PROTOCOL.md §6.1 "delete"). A session without a scene (an
            // agent) sends nothing for them: the editors would make them roots while the
            // registry kept them under an object that is gone. It says first.
            let children = self
                .live_children(cx, &change.uuid)
                .map_err(|why| (ItemErrorCode::StorageFailed, format!("{at}: {why}; nothing was queued for it")))?;
            if !children.is_empty() {
                let shown: Vec<&str> = children.iter().take(5).map(String::as_str).collect();
                return Err((
                    ItemErrorCode::InvalidField,
                    format!(
                        "{at}: {} has {} child object(s) ({}{}); reparent them (`reparent`, parent null) or delete them first — a delete removes that one object",
                        change.uuid,
                        children.len(),
                        shown.join(", "),
                        if children.len() > shown.len() { ", …" } else { "" }
                    ),
                ).into());
            }
        }
        // A cycle built across batches (A under B now, B under A later) is refused per item:
        // the registry holds the committed parents, and this editor's own changes admitted
        // but not committed yet are what its person had in front of them (docs/PROTOCOL.md
        // §6.2): A under C, then B under A, is no loop through A's committed parent B.
        let own = self.own_pending_parents(&session.session_id, change);
        let cycle = self
            .parent_cycle_of(cx, change, |u| own.get(u).cloned())
            .map_err(|why| (ItemErrorCode::StorageFailed, format!("{at}.parent: {why}; nothing was queued for it")))?;
        // A person's reparent closing the cycle through automation's reparent it had not
        // heard of is taken: automation's link is undone when its batch forms (§6.1).
        let breaks = match (&cycle, author) {
            (Some(chain), Author::Person) => matches!(
                self.newer_link(cx, chain, base_seq, (&session.client_id, &session.session_id)).map_err(|why| (
                    ItemErrorCode::StorageFailed,
                    format!("{at}.parent: {why}; nothing was queued for it")
                ))?,
                NewerLink::Automation(..)
            ),
            _ => false,
        };
        if let Some(chain) = cycle.filter(|_| !breaks) {
            // Closed through another editor's reparent on the chain committed after this
            // change's `base_seq`: made before its editor heard of that one, a conflict it
            // won — `STALE`, and the editor is sent the current state (§6.1, §6.2).
            let newer =
                self.cycle_write(cx, &chain, base_seq, (&session.client_id, &session.session_id)).map_err(|why| {
                    (ItemErrorCode::StorageFailed, format!("{at}.parent: {why}; nothing was queued for it"))
                })?;
            if let Some(w) = newer {
                return Err((
                    ItemErrorCode::Stale,
                    format!(
                        "{at}.parent: {} under {} would close a parent cycle with another editor's reparent ({} at seq {}, after your base_seq {base_seq}: {} → {}); you are sent its current state — apply it; the change is not re-sent (a person may make it again)",
                        change.uuid,
                        chain.first().map(String::as_str).unwrap_or(""),
                        w.editor,
                        w.seq,
                        change.uuid,
                        chain.join(" → ")
                    ),
                ).into());
            }
            return Err((
                ItemErrorCode::InvalidField,
                format!(
                    "{at}.parent: {} would become its own ancestor ({} → {}); reparent one of them elsewhere first",
                    change.uuid,
                    change.uuid,
                    chain.join(" → ")
                ),
            )
                .into());
        }
        if let Some(hash) = change.op.mesh_hash() {
            if !attachment.is_empty() {
                let actual = Mesh::hash_bytes(attachment);
                if actual != hash {
                    return Err((
                        ItemErrorCode::InvalidField,
                        format!("{at}.mesh_hash: attachment hashes to {actual}"),
                    )
                        .into());
                }
                if let Err(e) = Mesh::decode(attachment) {
                    return Err((ItemErrorCode::InvalidField, format!("{at}: mesh attachment: {e}")).into());
                }
                return Ok(Admitted {
                    blob: Some(hash.to_string()),
                    entry,
                    mesh_bytes: attachment.len() as u64,
                    after_flight,
                });
            }
            return match cx.view.blob_len(hash) {
                Ok(Some(len)) => Ok(Admitted { blob: None, entry, mesh_bytes: len, after_flight }),
                Ok(None) => Err(Refusal {
                    code: ItemErrorCode::InvalidField,
                    message: format!("{at}.mesh_hash: unknown mesh; send it as this frame's attachment"),
                    mesh_wanted: true,
                }),
                Err(e) => Err((ItemErrorCode::StorageFailed, format!("{at}.mesh_hash: {e}")).into()),
            };
        }
        Ok(Admitted { blob: None, entry, mesh_bytes: 0, after_flight })
    }

    /// The parent of each uuid as `session`'s own changes admitted but not committed yet
    /// leave it — in flight or waiting in a window — for a `change` that names a parent
    /// (empty otherwise: nothing to check a cycle of).
    fn own_pending_parents(&self, session: &SessionId, change: &Change) -> HashMap<String, Option<String>> {
        if change.op.parent_after().flatten().is_none() {
            return HashMap::default();
        }
        let flying = self.inflight.iter().flat_map(|f| f.changes.iter()).filter(|q| &q.origin == session);
        let waiting = self.queue.pending().filter(|q| &q.origin.session_id == session);
        latest_parents(flying.map(|q| (&q.change, q.sight.mark)).chain(waiting.map(|q| (&q.change, q.sight.mark))))
    }

    /// The parent of each uuid as the batches in flight leave it (any editor's).
    fn inflight_parents(&self) -> HashMap<String, Option<String>> {
        latest_parents(self.inflight.iter().flat_map(|f| f.changes.iter()).map(|q| (&q.change, q.sight.mark)))
    }

    /// The live objects under `uuid`: those whose committed parent it is and those a change
    /// in flight or waiting in a window puts under it, each as its last such change leaves
    /// it (one that puts it elsewhere or deletes it takes it out). One pass over the
    /// project's registry (an agent's delete only).
    fn live_children(&self, cx: &Cx<'_>, uuid: &str) -> Result<Vec<String>, String> {
        let entries = cx.view.live_entries().map_err(|e| format!("registry read failed: {e}"))?;
        // uuid → is it under `uuid` after its last change not committed yet?
        let mut pending: BTreeMap<&str, bool> = BTreeMap::new();
        let flying = self.inflight.iter().flat_map(|f| f.changes.iter().map(|q| &q.change));
        for c in flying.chain(self.queue.pending().map(|q| &q.change)) {
            if let Some(parent) = c.op.parent_after() {
                pending.insert(c.uuid.as_str(), parent == Some(uuid));
            }
        }
        let mut out: Vec<String> = entries
            .into_iter()
            .filter(|e| e.status == Status::Live && !pending.contains_key(e.uuid.as_str()))
            .filter(|e| e.state.as_ref().and_then(|s| s.get("parent")).and_then(|p| p.as_str()) == Some(uuid))
            .map(|e| e.uuid)
            .collect();
        out.extend(pending.into_iter().filter(|(_, under)| *under).map(|(u, _)| u.to_string()));
        Ok(out)
    }

    /// The governance gate before queuing a mutation. `entry`: the uuid's registry entry as
    /// admission read it (one registry read per change, not two).
    fn consult_gate(&self, cx: &Cx<'_>, change: &Change, entry: Option<Arc<Entry>>) -> Result<Decision, String> {
        let current = state_of(&change.uuid, entry.as_deref())?;
        let next_hash = || apply_change(current.as_ref(), &change.op).ok().flatten().map(|s| s.hash());
        Ok(cx.view.gate(&change.uuid, change.op.name(), &next_hash))
    }
}

/// The parent of each uuid as `changes` (with their admission marks) leave it, the latest by
/// mark (`None`: a root, or deleted); ops that do not touch the parent are passed over.
fn latest_parents<'q>(changes: impl Iterator<Item = (&'q Change, u64)>) -> HashMap<String, Option<String>> {
    let mut out: HashMap<String, (u64, Option<String>)> = HashMap::default();
    for (c, mark) in changes {
        let Some(parent) = c.op.parent_after() else { continue };
        if out.get(&c.uuid).is_none_or(|(m, _)| *m <= mark) {
            out.insert(c.uuid.clone(), (mark, parent.map(str::to_string)));
        }
    }
    out.into_iter().map(|(u, (_, p))| (u, p)).collect()
}

/// Why `admit` refused a change: the `ack`'s code and message, and whether the editor is to
/// send it again with its mesh (`mesh_wanted`: an `INVALID_FIELD` for a mesh named by hash
/// and not carried — not a change its editor keeps, so never listed not synced,
/// docs/PROTOCOL.md §6.1).
struct Refusal {
    code: ItemErrorCode,
    message: String,
    mesh_wanted: bool,
}

impl From<(ItemErrorCode, String)> for Refusal {
    fn from((code, message): (ItemErrorCode, String)) -> Refusal {
        Refusal { code, message, mesh_wanted: false }
    }
}
