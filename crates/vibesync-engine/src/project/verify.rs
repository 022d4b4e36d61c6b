//! Pipeline step `verify` of a project's sync: `applied` answers (of batches in flight and of
//! resync batches), departures and the deadline, each turned into a verdict of
//! `crate::verify` and carried out (docs/PROTOCOL.md §6.4, §6.7).

use std::collections::BTreeMap;

use serde_json::json;
use tracing::{debug, error, info, warn};
use vibesync_protocol::RollbackCode;

use super::{state_of, Cx, Project, SessionId};
use crate::fast::{HashMap, HashSet};
use crate::forward::held_after;
use crate::sync::ChangeOp;
use crate::verify::{mismatches, Verdict};

/// At most this many characters of an editor's reason for not applying a uuid are kept.
const MAX_WHY_CHARS: usize = 300;

/// An editor's `applied` answer (docs/PROTOCOL.md §6.4), as [`Project::on_applied`] reads it.
pub(super) struct Answer {
    pub hashes: BTreeMap<String, String>,
    /// It holds the batch (`held`): not a participant any more.
    pub held: bool,
    /// uuid → why it could not apply it as sent (`applied.failed`).
    pub failed: BTreeMap<String, String>,
    /// The uuids it left unapplied for a person's edit (`applied.spared`); `None`: it does
    /// not say.
    pub spared: Option<Vec<String>>,
}

impl Project {
    pub(super) async fn on_applied(&mut self, cx: &Cx<'_>, session_id: SessionId, batch_id: String, answer: Answer) {
        let Answer { hashes, held, failed, spared } = answer;
        if let Some(check) = self.resyncs.remove(&batch_id) {
            let mut bad = mismatches(&check.expected, &hashes);
            if bad.is_empty() && self.diverged.get(&session_id).is_some_and(|b| b.as_deref() == Some(batch_id.as_str()))
            {
                info!(session_id = %session_id, "diverged session acknowledged the full replay; its changes flow again");
                self.diverged.remove(&session_id);
            }
            if bad.is_empty() || held {
                return;
            }
            if let Some(spared) = &spared {
                // Kept as local work over the replay (docs/PROTOCOL.md §6.6): the editor holds
                // its person's edit there, which it sends (a drag's next moves, say) — no
                // mismatch to re-send or give up on (one it could not apply, `failed`, is).
                // Re-sent, it was kept again, and every window of a drag over another
                // editor's edit logged an error.
                let spared: HashSet<&str> = spared.iter().map(String::as_str).collect();
                let (kept, rest): (Vec<String>, Vec<String>) =
                    bad.into_iter().partition(|u| spared.contains(u.as_str()) && !failed.contains_key(u));
                if !kept.is_empty() {
                    debug!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?kept, "resync answered with local work kept over it: its change follows");
                }
                bad = rest;
                if bad.is_empty() {
                    return;
                }
            }
            if check.attempts < 1 {
                // Re-sent once; the re-send carries its attempt count, so this never loops.
                warn!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?bad, "resync not matched; re-sending once");
                // Never over a person's edit it keeps since (a rollback while the resync was
                // on its way, docs/PROTOCOL.md §6.4): that editor re-sends it. A uuid in a
                // batch in flight is re-sent after its outcome, never the state before it.
                let bad: Vec<String> = bad.into_iter().filter(|u| !self.keeps(cx, &check.session_id, u)).collect();
                if !bad.is_empty() {
                    self.send_resync_attempt(cx, &check.session_id, &bad, "resync mismatch", check.attempts + 1).await;
                }
            } else {
                error!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?bad, "editor does not match the authoritative state after two resyncs; giving up on these uuids until they change");
            }
            return;
        }
        let hashes = match self.answer_explained_by_later_edits(cx, &batch_id, &session_id, hashes) {
            Ok(h) => h,
            Err(why) => return cx.storage_failed("sync", &why).await,
        };
        let Some(f) = self.inflight.iter_mut().find(|f| f.batch_id == batch_id) else {
            debug!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, "`applied` for no batch in flight (unknown, ended, or answered already): ignored");
            return;
        };
        if held && f.verification.is_participant(&session_id) {
            // The editor holds the batch (e.g. Unity Play Mode): it is not a participant any
            // more and will ask for a resync when it can apply again.
            info!(batch_id = %batch_id, session_id = %session_id, "participant holds the batch; excluded from verification");
            f.sends.remove(&session_id);
        }
        for (uuid, why) in failed {
            if f.members.contains(&uuid) {
                // Bounded: a reason is shown in editors' UIs and logged, never a payload.
                f.why_failed.entry(uuid).or_insert_with(|| why.chars().take(MAX_WHY_CHARS).collect());
            }
        }
        let verdict = f.verification.applied(&session_id, &hashes, held);
        self.carry_out(cx, &batch_id, verdict).await;
    }

    /// A participant's answer for a uuid that is the batch's authoritative state (what it
    /// commits), or that differs from what it must hold only by edits made after the batch
    /// went out, is what it must hold (docs/PROTOCOL.md §6.4): a uuid
    /// deleted since through a `tombstone` request, left out; or its own changes of that uuid
    /// the daemon queued after the batch's window (sent before the
    /// editor read the batch, or while it applied it: an editor answers the state it holds
    /// with every change it sent, docs/PROTOCOL.md §6.4) is what it must hold: those changes
    /// follow in a batch of their own. Such an answer is taken as the expected hash; any
    /// other difference stays a mismatch. Only a differing answer is looked at (a registry
    /// read and a replay of the uuid's ops).
    fn answer_explained_by_later_edits(
        &self,
        cx: &Cx<'_>,
        batch_id: &str,
        session_id: &str,
        mut hashes: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let Some(f) = self.inflight.iter().find(|f| f.batch_id == batch_id) else { return Ok(hashes) };
        let Some(expected) = f.verification.expected_of(session_id) else { return Ok(hashes) };
        // The session's own changes of the batch and the ops it was sent, per uuid: built
        // the first time a uuid needs them (in a drag, every uuid of the answer may — one
        // pass each, not one per uuid).
        type PerUuid<'a> = HashMap<&'a str, Vec<&'a ChangeOp>>;
        let mut own_and_sent: Option<(PerUuid, PerUuid)> = None;
        for (uuid, want) in expected {
            if hashes.get(uuid) == want.as_ref() {
                continue;
            }
            if hashes.get(uuid).is_some_and(|h| f.new_hashes.get(uuid) == Some(h)) {
                // It holds what the batch commits: e.g. it kept its own later value of a part
                // that another editor's earlier op of the window, sent to it, also set
                // (docs/PROTOCOL.md §6.4: a person's value sent without a result stays).
                info!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?[uuid], "the answer is the batch's authoritative state: verified");
                match want {
                    Some(h) => hashes.insert(uuid.clone(), h.clone()),
                    None => hashes.remove(uuid),
                };
                continue;
            }
            if f.tombstoned.contains(uuid) && !hashes.contains_key(uuid) {
                // Deleted through a `tombstone` request since the batch went out (a person's
                // delete, docs/PROTOCOL.md §6.1): gone is what the editor holds after it.
                info!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?[uuid], "the answer leaves out a uuid deleted since the batch went out: verified without it");
                if let Some(h) = want {
                    hashes.insert(uuid.clone(), h.clone());
                }
                continue;
            }
            let later: Vec<&ChangeOp> = self
                .queue
                .pending_of(uuid)
                .chain(self.held.of(uuid))
                .filter(|q| q.origin.session_id == session_id)
                .map(|q| &q.change.op)
                .collect();
            if later.is_empty() {
                continue;
            }
            let entry = cx.view.lookup(uuid).map_err(|e| format!("registry read failed: {e}"))?;
            let start = state_of(uuid, entry.as_deref())?;
            let (own, sent) = own_and_sent.get_or_insert_with(|| {
                let (mut own, mut sent) = (PerUuid::default(), PerUuid::default());
                for q in f.changes.iter().filter(|q| q.origin == session_id) {
                    own.entry(q.change.uuid.as_str()).or_default().push(&q.change.op);
                }
                for (u, op) in f.sends.get(session_id).into_iter().flatten() {
                    sent.entry(u.as_str()).or_default().push(op);
                }
                (own, sent)
            });
            let own = own.get(uuid.as_str()).into_iter().flatten().copied();
            let sent = sent.get(uuid.as_str()).into_iter().flatten().copied();
            let holds = held_after(start, own.chain(sent).chain(later)).map(|s| s.hash());
            if holds.as_ref() != hashes.get(uuid) {
                continue;
            }
            info!(batch_id = %batch_id, project_id = %self.project, session_id = %session_id, uuids = ?[uuid], "the answer also holds the editor's own change queued after the batch's window: verified without it");
            match want {
                Some(h) => hashes.insert(uuid.clone(), h.clone()),
                None => hashes.remove(uuid),
            };
        }
        Ok(hashes)
    }

    /// A session left: its resync checks end, and a participant that received a batch and
    /// went away before answering fails it — evidence that the data may crash that editor
    /// (docs/PROTOCOL.md §6.7) unless it said it was `closing` on purpose: the batch is never
    /// committed, so never replayed to it.
    pub(super) async fn on_left(&mut self, cx: &Cx<'_>, session_id: &str, closing: bool) {
        self.resyncs.retain(|_, r| r.session_id != session_id);
        self.joined.remove(session_id);
        self.idle.left(session_id);
        self.diverged.remove(session_id);
        self.forwarded.retain(|(s, _), _| s != session_id);
        self.bases.retain(|(s, _), _| s != session_id);
        self.delivered.forget(&session_id.to_string());
        let verdicts: Vec<(String, Verdict)> =
            self.inflight.iter_mut().map(|f| (f.batch_id.clone(), f.verification.left(session_id, closing))).collect();
        for (batch_id, verdict) in verdicts {
            self.carry_out(cx, &batch_id, verdict).await;
        }
    }

    /// Carry out a verdict of the `verify` step for the batch in flight `batch_id`.
    pub(super) async fn carry_out(&mut self, cx: &Cx<'_>, batch_id: &str, verdict: Verdict) {
        let failure = match verdict {
            Verdict::Wait => return,
            Verdict::Commit => return self.commit(cx, batch_id).await,
            Verdict::Rollback(failure) => failure,
        };
        let Some(f) = self.inflight.iter().find(|f| f.batch_id == batch_id) else { return };
        let kinds: Vec<String> = failure.sessions.iter().filter_map(|s| f.kinds.get(s).cloned()).collect();
        let who = join_kinds(&kinds);
        let (detail, reason) = match failure.code {
            RollbackCode::VerifyMismatch => {
                warn!(batch_id = %f.batch_id, project_id = %self.project, sessions = ?failure.sessions, uuids = ?failure.uuids, "state hash mismatch");
                let why: Vec<&str> = failure
                    .uuids
                    .iter()
                    .filter_map(|u| f.why_failed.get(u).map(String::as_str))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let reason = if why.is_empty() {
                    format!("{who} could not apply the change as sent (its state differs)")
                } else {
                    format!("{who} could not apply the change as sent: {}", why.join("; "))
                };
                (json!({"session_id": failure.sessions.first(), "uuids": failure.uuids, "why": why}), reason)
            }
            RollbackCode::VerifyTimeout => (
                json!({"reason": "no `applied` within the verify timeout", "sessions": failure.sessions}),
                format!("{who} did not confirm the change in time"),
            ),
            RollbackCode::ParticipantLeft => (
                json!({"reason": "a participant closed its connection on purpose before answering `applied`", "session_id": failure.sessions.first()}),
                format!("{who} closed its file or quit while applying the change"),
            ),
            _ => (
                json!({"reason": "a participant disconnected before answering `applied`", "session_id": failure.sessions.first()}),
                format!("{who} disconnected while applying the change"),
            ),
        };
        // The uuids that failed it: an editor keeping its edit of any other uuid of the batch
        // sends it again by itself (docs/PROTOCOL.md §6.4, `mismatched`).
        let mut mismatched = match failure.code {
            RollbackCode::VerifyMismatch => failure.uuids,
            _ => Vec::new(),
        };
        mismatched.sort();
        mismatched.dedup();
        self.rollback(cx, batch_id, failure.code, detail, reason, mismatched).await;
    }
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
