//! Pipeline step `finalize`, the rollback half (docs/PROTOCOL.md §6.4): after a failed
//! verification, who is corrected and who keeps what it made.
//!
//! **A person's edit is never undone, deleted or overwritten in the editor where it was
//! made.** The origin of a person's edit keeps its state (`kept_local`) and is sent no
//! corrective resync for those uuids; every other editor that was sent the batch's ops is
//! re-sent the authoritative state; automation's changes are reverted everywhere, their
//! origin included.

use std::collections::{BTreeMap, BTreeSet};

use crate::forward::Ops;
use crate::sync::{Author, Queued};

/// What a rollback sends to whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackPlan {
    /// session → uuids re-sent with their authoritative state (resync batch).
    pub resync: BTreeMap<String, Vec<String>>,
    /// session → uuids it keeps locally (a person made them there): marked not synced.
    pub kept_local: BTreeMap<String, Vec<String>>,
}

/// Plan a rollback. `changes`: the batch's changes (every admitted change of its window);
/// `sends`: what each participant was sent; `holds_scene`: whether a session holds a scene
/// (only those are sent resyncs).
pub fn plan_rollback(
    changes: &[Queued<String>],
    sends: &BTreeMap<String, Ops>,
    holds_scene: impl Fn(&str) -> bool,
) -> RollbackPlan {
    let mut kept: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut revert: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for q in changes {
        match q.author {
            // Only an editor holds a person's work to keep; a `cli` or `test` session (a
            // restore, a script) holds no scene: its change simply failed.
            Author::Person if holds_scene(&q.origin) => {
                kept.entry(q.origin.clone()).or_default().insert(q.change.uuid.clone());
            }
            Author::Person => {}
            Author::Automation => {
                revert.entry(q.origin.clone()).or_default().insert(q.change.uuid.clone());
            }
        }
    }
    for (s, ops) in sends {
        revert.entry(s.clone()).or_default().extend(ops.iter().map(|(u, _)| u.clone()));
    }
    let mut plan = RollbackPlan::default();
    for (s, uuids) in revert {
        if !holds_scene(&s) {
            continue;
        }
        let mine = kept.get(&s);
        let list: Vec<String> = uuids.into_iter().filter(|u| !mine.is_some_and(|m| m.contains(u))).collect();
        if !list.is_empty() {
            plan.resync.insert(s, list);
        }
    }
    plan.kept_local = kept.into_iter().map(|(s, u)| (s, u.into_iter().collect())).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Change, ChangeOp};

    const U: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    const V: &str = "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn q(origin: &str, author: Author, uuid: &str) -> Queued<String> {
        Queued::new(origin.into(), author, Change { uuid: uuid.into(), op: ChangeOp::Delete })
    }

    fn sent(uuids: &[&str]) -> Ops {
        uuids.iter().map(|u| (u.to_string(), ChangeOp::Delete)).collect()
    }

    #[test]
    fn a_persons_edit_stays_in_its_origin_and_peers_are_corrected() {
        let changes = vec![q("blender", Author::Person, U)];
        let sends = BTreeMap::from([("unity".to_string(), sent(&[U]))]);
        let p = plan_rollback(&changes, &sends, |_| true);
        assert_eq!(p.resync, BTreeMap::from([("unity".to_string(), vec![U.to_string()])]));
        assert_eq!(p.kept_local, BTreeMap::from([("blender".to_string(), vec![U.to_string()])]));
    }

    #[test]
    fn automation_is_reverted_everywhere_origin_included() {
        let changes = vec![q("blender", Author::Automation, U), q("blender", Author::Person, V)];
        let sends = BTreeMap::from([("unity".to_string(), sent(&[U, V]))]);
        let p = plan_rollback(&changes, &sends, |_| true);
        assert_eq!(p.resync["blender"], vec![U.to_string()], "the agent's change is undone at its origin");
        assert_eq!(p.resync["unity"], vec![U.to_string(), V.to_string()]);
        assert_eq!(p.kept_local["blender"], vec![V.to_string()]);
    }

    #[test]
    fn two_people_on_one_object_both_keep_their_edit() {
        let changes = vec![q("blender", Author::Person, U), q("unity", Author::Person, U)];
        let sends = BTreeMap::from([("blender".to_string(), sent(&[U])), ("unity".to_string(), sent(&[U]))]);
        let p = plan_rollback(&changes, &sends, |_| true);
        assert!(p.resync.is_empty(), "{p:?}");
        assert_eq!(p.kept_local.len(), 2);
    }

    /// A `cli` session's change (a restore) that fails keeps nothing anywhere: it holds no
    /// scene (found by a client written from docs/PROTOCOL.md).
    #[test]
    fn a_failed_change_of_a_session_without_a_scene_is_kept_nowhere() {
        let changes = vec![q("cli", Author::Person, U)];
        let sends = BTreeMap::from([("unity".to_string(), sent(&[U]))]);
        let p = plan_rollback(&changes, &sends, |s| s != "cli");
        assert!(p.kept_local.is_empty(), "{p:?}");
        assert_eq!(p.resync, BTreeMap::from([("unity".to_string(), vec![U.to_string()])]));
    }

    #[test]
    fn sessions_without_a_scene_get_no_resync() {
        let changes = vec![q("agent", Author::Automation, U)];
        let sends = BTreeMap::from([("unity".to_string(), sent(&[U]))]);
        let p = plan_rollback(&changes, &sends, |s| s != "agent");
        assert_eq!(p.resync.keys().collect::<Vec<_>>(), ["unity"]);
        assert!(p.kept_local.is_empty());
    }
}
