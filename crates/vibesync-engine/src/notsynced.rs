//! The not-synced uuids of each project, derived from the WAL (docs/PROTOCOL.md §6.4,
//! docs/WAL.md §9): a uuid an editor kept locally as a person's edit after its propagation
//! failed, until a later commit covers it.
//!
//! Pure: a fold over WAL records in seq order. A sync batch's `ROLLBACK` adds an entry for
//! every uuid of its `kept_local` and each editor (`client_id`) listed for it, as the sync
//! machine keys them; a later `COMMIT` of a sync batch, or of a `tombstone` request, naming
//! the uuid removes its entries. The sync actor keeps the same list while it runs and is
//! seeded with this fold at boot, so a restart neither forgets a kept edit nor replays over it.
//!
//! It also folds the `kept` STEPs (docs/WAL.md §9, "Kept uuids"): per uuid, what the sync
//! machine held of the editors that keep it and the values they hold — the last record of the
//! uuid wins, one saying nothing ends it — seeded into the machine at boot
//! (`Project::restore_kept`); and a `kept` STEP ends the uuid's entries of the editors it does
//! not list as not synced (an editor's change of the uuid sent again ended them).
//!
//! Checkpoints and compaction keep it exact: [`NotSyncedIndex::observe`] says whether a
//! record changed the list, and the checkpoint's `kept` (hence a compaction anchor's `carry`)
//! holds every such record — every kept-local `ROLLBACK` and every `COMMIT` that covered a
//! listed uuid — so folding `kept` and then the log after the checkpoint gives what folding
//! the whole log gives (the records left out change nothing).

use std::collections::BTreeMap;

use serde_json::Value;
use vibesync_protocol::names::MessageType;
use vibesync_wal::{Phase, Record};

use crate::project::SYNC_SESSION;

/// The machine's entry types (`crate::project`), built here from the WAL.
pub use crate::project::{KeptOf, NotSynced};

/// (uuid, `client_id`): one not-synced entry, as the sync machine keys them.
pub type Key = (String, String);

/// Per project, (uuid, `client_id`) → its entry; and per project, uuid → what the last `kept`
/// STEP says.
#[derive(Debug, Default, Clone)]
pub struct NotSyncedIndex {
    projects: BTreeMap<String, BTreeMap<Key, NotSynced>>,
    kept: BTreeMap<String, BTreeMap<String, KeptOf>>,
}

/// The keys of `uuid`'s entries in `listed`.
fn keys_of(listed: &BTreeMap<Key, NotSynced>, uuid: &str) -> Vec<Key> {
    listed
        .range((uuid.to_string(), String::new())..)
        .take_while(|((u, _), _)| u == uuid)
        .map(|(k, _)| k.clone())
        .collect()
}

impl NotSyncedIndex {
    /// Fold one record (in seq order). True when it changed the list: such a record must be
    /// kept by a checkpoint (see the module docs).
    pub fn observe(&mut self, r: &Record) -> bool {
        if let Some(kept) = crate::project::kept_of(r) {
            return self.observe_kept(r, kept);
        }
        match r.phase {
            Phase::Rollback => {
                let Some(kept) = r.payload.get("kept_local").and_then(Value::as_object) else { return false };
                let reason = r.payload.get("reason").and_then(Value::as_str).unwrap_or_default();
                let by = r.payload.get("kept_by");
                let mut changed = false;
                for (uuid, clients) in kept {
                    let clients = clients.as_array().map(Vec::as_slice).unwrap_or_default();
                    for client_id in clients.iter().filter_map(Value::as_str) {
                        let who = by.and_then(|b| b.get(client_id));
                        let field = |k: &str| who.and_then(|w| w.get(k)).and_then(Value::as_str).unwrap_or_default();
                        self.projects.entry(r.project_id.clone()).or_default().insert(
                            (uuid.clone(), client_id.to_string()),
                            NotSynced {
                                uuid: uuid.clone(),
                                session_id: field("session_id").to_string(),
                                client: field("client").to_string(),
                                client_id: client_id.to_string(),
                                reason: reason.to_string(),
                                seq: r.seq,
                            },
                        );
                        changed = true;
                    }
                }
                changed
            }
            Phase::Commit if covers(r) => {
                let Some(listed) = self.projects.get_mut(&r.project_id) else { return false };
                let mut changed = false;
                for u in &r.uuids {
                    for key in keys_of(listed, u) {
                        changed |= listed.remove(&key).is_some();
                    }
                }
                if listed.is_empty() {
                    self.projects.remove(&r.project_id);
                }
                changed
            }
            _ => false,
        }
    }

    /// A `kept` STEP: each uuid it names is what it says now. One that does not parse changes
    /// nothing and is logged as an error naming its seq (what the machine held of those uuids
    /// is lost, as a restart lost all of it before the record existed); it never stops boot.
    fn observe_kept(&mut self, r: &Record, kept: Result<Vec<(String, KeptOf)>, String>) -> bool {
        let kept = match kept {
            Ok(kept) => kept,
            Err(e) => {
                tracing::error!(project_id = %r.project_id, seq = r.seq, uuids = ?r.uuids, "{e}: what editors keep of these uuids is not restored");
                return false;
            }
        };
        // An entry whose editor the record does not list as not synced ended (its change of
        // the uuid sent again); entries are added only by ROLLBACKs.
        if let Some(listed) = self.projects.get_mut(&r.project_id) {
            for (u, k) in &kept {
                for key in keys_of(listed, u) {
                    if !k.not_synced.contains(&key.1) {
                        listed.remove(&key);
                    }
                }
            }
            if listed.is_empty() {
                self.projects.remove(&r.project_id);
            }
        }
        self.kept.entry(r.project_id.clone()).or_default().extend(kept);
        true
    }

    /// What the last `kept` STEP of each of `project`'s uuids says, an empty one included
    /// (nothing kept: it voids what the not-synced list seeds for the uuid).
    pub fn kept(&self, project: &str) -> Vec<(String, KeptOf)> {
        self.kept.get(project).map(|k| k.iter().map(|(u, k)| (u.clone(), k.clone())).collect()).unwrap_or_default()
    }

    /// The list of `project`, uuid order.
    pub fn project(&self, project: &str) -> BTreeMap<Key, NotSynced> {
        self.projects.get(project).cloned().unwrap_or_default()
    }

    /// Every project with a listed uuid.
    pub fn projects(&self) -> impl Iterator<Item = (&String, &BTreeMap<Key, NotSynced>)> {
        self.projects.iter()
    }
}

/// A COMMIT that covers its uuids: a sync batch's, or a `tombstone` request's (docs/WAL.md §9).
fn covers(r: &Record) -> bool {
    r.session_id == SYNC_SESSION || r.payload.get("op").and_then(Value::as_str) == Some(MessageType::Tombstone.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vibesync_wal::Outcome;

    fn rec(seq: u64, session: &str, phase: Phase, uuids: &[&str], payload: Value) -> Record {
        Record {
            seq,
            ts: "2026-11-22T00:00:00.000000Z".into(),
            process_id: 1,
            session_id: session.into(),
            operation_id: format!("op{seq}"),
            uuids: uuids.iter().map(|u| u.to_string()).collect(),
            project_id: "p".into(),
            phase,
            outcome: if phase == Phase::Rollback { Outcome::Error } else { Outcome::Ok },
            error_code: None,
            schema_version: 1,
            payload,
            prev: String::new(),
            h: String::new(),
        }
    }

    fn key(u: &str, c: &str) -> Key {
        (u.to_string(), c.to_string())
    }

    /// The listed entries of project `p`, as "uuid/client_id".
    fn listed(ix: &NotSyncedIndex) -> Vec<String> {
        ix.project("p").keys().map(|(u, c)| format!("{u}/{c}")).collect()
    }

    fn rollback(seq: u64, kept: Value) -> Record {
        rec(
            seq,
            SYNC_SESSION,
            Phase::Rollback,
            &["a", "b"],
            json!({"op":"sync","kept_local":kept,"reason":"Unity could not apply it",
                   "kept_by":{"c1":{"session_id":"s1","client":"blender"}}}),
        )
    }

    #[test]
    fn a_kept_rollback_lists_and_a_later_commit_or_tombstone_covers() {
        let mut ix = NotSyncedIndex::default();
        assert!(ix.observe(&rollback(5, json!({"a":["c1"],"b":["c2"]}))));
        let a = &ix.project("p")[&key("a", "c1")];
        assert_eq!((a.session_id.as_str(), a.client.as_str(), a.client_id.as_str(), a.seq), ("s1", "blender", "c1", 5));
        assert_eq!(a.reason, "Unity could not apply it");
        assert_eq!(ix.project("p")[&key("b", "c2")].client, "", "no kept_by entry: the editor kind is unknown");
        // A register COMMIT does not cover; a sync COMMIT does, for its uuids only.
        assert!(!ix.observe(&rec(6, "s9", Phase::Commit, &["a"], json!({"op":"register"}))));
        assert!(ix.observe(&rec(7, SYNC_SESSION, Phase::Commit, &["a"], json!({"op":"sync"}))));
        assert_eq!(listed(&ix), ["b/c2"]);
        assert!(
            !ix.observe(&rec(8, SYNC_SESSION, Phase::Commit, &["a"], json!({"op":"sync"}))),
            "nothing left to cover"
        );
        assert!(ix.observe(&rec(9, "s2", Phase::Commit, &["b"], json!({"op":"tombstone"}))));
        assert!(ix.project("p").is_empty());
        assert_eq!(ix.projects().count(), 0);
        // A rollback without kept_local (automation, a crash) lists nothing.
        assert!(!ix.observe(&rec(10, SYNC_SESSION, Phase::Rollback, &["a"], json!({"op":"sync"}))));
        assert!(!ix.observe(&rollback(11, json!({}))));
    }

    fn kept_step(seq: u64, kept: Value) -> Record {
        let uuids: Vec<String> = kept.as_object().unwrap().keys().cloned().collect();
        let uuids: Vec<&str> = uuids.iter().map(String::as_str).collect();
        rec(seq, SYNC_SESSION, Phase::Step, &uuids, json!({"op":"kept","kept":kept}))
    }

    /// The last `kept` STEP of a uuid wins; one saying nothing is kept as such (it voids what
    /// the not-synced list seeds); one that does not parse changes nothing.
    #[test]
    fn the_last_kept_step_of_a_uuid_wins() {
        let a = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f";
        let held = json!({"c2":[{"change":{"op":"visibility","uuid":a,"visible":true},"from":"c1","superseded":true}]});
        let mut ix = NotSyncedIndex::default();
        let both = json!({a:{"here":["c2"],"held":held,"not_synced":[]},"b":{"here":["c1"],"held":{},"not_synced":[]}});
        assert!(ix.observe(&kept_step(1, both)));
        assert!(ix.observe(&kept_step(2, json!({"b":{"here":[],"held":{},"not_synced":[]}}))));
        assert!(!ix.observe(&kept_step(3, json!({"a":{"here":"c2"}}))), "damaged: changes nothing");
        let kept = ix.kept("p");
        assert_eq!(kept.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(), [a, "b"]);
        assert_eq!(kept[0].1.here.iter().collect::<Vec<_>>(), ["c2"]);
        assert_eq!(kept[0].1.held["c2"].len(), 1);
        assert!(kept[0].1.held["c2"][0].superseded);
        assert!(kept[1].1.is_empty());
        assert!(ix.kept("q").is_empty());
        assert!(ix.project("p").is_empty(), "the not-synced list is another fold");
    }

    /// A `kept` STEP ends a not-synced entry whose editor it does not list (its change of the
    /// uuid was sent again), and never adds one: only a ROLLBACK does.
    #[test]
    fn a_kept_step_ends_the_not_synced_entry_of_an_editor_it_does_not_list() {
        let mut ix = NotSyncedIndex::default();
        assert!(ix.observe(&rollback(1, json!({"a":["c1"],"b":["c2"]}))));
        let still = |c: &str| json!({"here":[c],"held":{},"not_synced":[c]});
        assert!(ix.observe(&kept_step(2, json!({"a": still("c1"), "b": still("c2")}))));
        assert_eq!(listed(&ix), ["a/c1", "b/c2"], "both still listed");
        assert!(ix.observe(&kept_step(3, json!({"a":{"here":["c1"],"held":{},"not_synced":[]}}))));
        assert_eq!(listed(&ix), ["b/c2"], "a's change was sent again");
        assert!(ix.observe(&kept_step(4, json!({"c": still("c3")}))));
        assert_eq!(listed(&ix), ["b/c2"], "a kept STEP adds none");
        assert!(ix.observe(&rollback(5, json!({"a":["c1"]}))));
        assert_eq!(listed(&ix), ["a/c1", "b/c2"], "a later rollback lists it again");
        // Two editors keep one uuid: each has its entry, and a `kept` STEP ends only those of
        // the editors it does not list.
        assert!(ix.observe(&rollback(6, json!({"a":["c1","c2"]}))));
        assert_eq!(listed(&ix), ["a/c1", "a/c2", "b/c2"]);
        assert!(ix.observe(&kept_step(7, json!({"a":{"here":["c1","c2"],"held":{},"not_synced":["c2"]}}))));
        assert_eq!(listed(&ix), ["a/c2", "b/c2"]);
    }

    /// Folding only the records `observe` marked (what a checkpoint keeps) gives the same list
    /// as folding everything.
    #[test]
    fn folding_the_changing_records_equals_folding_all() {
        let log = [
            rollback(1, json!({"a":["c1"]})),
            rec(2, SYNC_SESSION, Phase::Commit, &["b"], json!({"op":"sync"})),
            rollback(3, json!({"b":["c1"]})),
            rec(4, SYNC_SESSION, Phase::Commit, &["a"], json!({"op":"sync"})),
            rec(5, "s", Phase::Commit, &["b"], json!({"op":"register"})),
            rollback(6, json!({"a":["c1","c2"]})),
        ];
        let mut all = NotSyncedIndex::default();
        let kept: Vec<&Record> = log.iter().filter(|r| all.observe(r)).collect();
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3, 4, 6]);
        let mut again = NotSyncedIndex::default();
        for r in kept {
            again.observe(r);
        }
        assert_eq!(again.project("p"), all.project("p"));
        assert_eq!(listed(&all), ["a/c1", "a/c2", "b/c1"], "every listed client has its entry");
        assert_eq!(all.project("p")[&key("a", "c1")].seq, 6);
        assert_eq!(all.project("p")[&key("b", "c1")].seq, 3);
    }
}
