//! Model test of the sync pipeline's pure steps (docs/ARCHITECTURE.md, "vibesync-engine"):
//! `queue` → `batch` (coalesce) → `forward` (plan) → `verify` → `finalize` (commit, or the
//! rollback plan), driven by random interleavings of people's edits in two editors, an agent's
//! changes, automation inside an editor, and every kind of answer a participant can give —
//! the expected hashes, a wrong hash, silence until the deadline, a disconnect before answering
//! — plus reconnects and re-sends of work kept locally.
//!
//! After every step it checks the rules of docs/PROTOCOL.md §6.4:
//! * a rollback never changes, in its origin, a uuid a person edited there (`kept_local`);
//! * automation's changes are reverted everywhere, their origin included;
//! * a verdict is exactly one of commit or rollback, and only a commit changes the registry;
//!
//! and, once nobody edits and every editor has re-sent what it kept (the retry rules of
//! §6.4), that both editors hold exactly the registry's state.
//!
//! The number of cases is `PROPTEST_CASES` (scripts/soak raises it); each case runs up to 60
//! steps plus the quiet phase.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use vibesync_engine::finalize::plan_rollback;
use vibesync_engine::forward;
use vibesync_engine::sync::{apply_change, coalesce, Author, Change, ChangeOp, ObjectState, Queued};
use vibesync_engine::verify::{Verdict, Verification};

const EDITORS: [&str; 2] = ["blender", "unity"];
const AGENT: &str = "agent";
const UUIDS: [&str; 3] = [
    "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a",
    "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a",
    "8f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a",
];
const DEADLINE_MS: u64 = 5_000;

fn state(name: &str, x: f64) -> ObjectState {
    ObjectState {
        kind: "object".into(),
        name: name.into(),
        parent: None,
        visible: true,
        t: [x, 0.0, 0.0],
        r: [0.0, 0.0, 0.0, 1.0],
        s: [1.0, 1.0, 1.0],
        mesh_hash: None,
        material: None,
    }
}

/// An op as generated (resolved against the editor's scene when applied).
#[derive(Debug, Clone)]
enum Edit {
    Create(u8),
    Move(u8),
    Rename(u8),
    Hide(bool),
    Delete,
}

impl Edit {
    fn op(&self) -> ChangeOp {
        match self {
            Edit::Create(x) => ChangeOp::Create(state(&format!("c{x}"), f64::from(*x))),
            Edit::Move(x) => {
                ChangeOp::Transform { t: [f64::from(*x) * 0.5, 1.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0, 1.0, 1.0] }
            }
            Edit::Rename(x) => ChangeOp::Rename(format!("n{x}")),
            Edit::Hide(v) => ChangeOp::Visibility(*v),
            Edit::Delete => ChangeOp::Delete,
        }
    }
}

/// How a participant answers a batch.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Right,
    WrongHash,
    Silent,
    Disconnect,
}

#[derive(Debug, Clone)]
enum Step {
    /// A person edits in an editor (applied there at once, then sent).
    Person { editor: usize, uuid: usize, edit: Edit },
    /// An agent's tool changes something inside an editor (`change.automation`).
    AutomationInEditor { editor: usize, uuid: usize, edit: Edit },
    /// An `agent` session sends a change (it holds no scene).
    Agent { uuid: usize, edit: Edit },
    /// The window closes: one batch, answered as given per editor.
    Close([Answer; 2]),
    /// An editor re-sends the uuids it keeps locally (a peer joined, the person edited again).
    Resend { editor: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<u8>().prop_map(Edit::Create),
        4 => any::<u8>().prop_map(Edit::Move),
        2 => any::<u8>().prop_map(Edit::Rename),
        1 => any::<bool>().prop_map(Edit::Hide),
        1 => Just(Edit::Delete),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        6 => Just(Answer::Right),
        1 => Just(Answer::WrongHash),
        1 => Just(Answer::Silent),
        1 => Just(Answer::Disconnect),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..2usize, 0..UUIDS.len(), edit()).prop_map(|(editor, uuid, edit)| Step::Person { editor, uuid, edit }),
        1 => (0..2usize, 0..UUIDS.len(), edit())
            .prop_map(|(editor, uuid, edit)| Step::AutomationInEditor { editor, uuid, edit }),
        1 => (0..UUIDS.len(), edit()).prop_map(|(uuid, edit)| Step::Agent { uuid, edit }),
        4 => [answer(), answer()].prop_map(Step::Close),
        1 => (0..2usize).prop_map(|editor| Step::Resend { editor }),
    ]
}

/// One editor's scene and bookkeeping, as the addon and the Unity package keep it.
#[derive(Debug, Default, Clone)]
struct Editor {
    scene: BTreeMap<String, ObjectState>,
    /// uuid → a person's edit there that no commit has covered yet (sent, or kept locally).
    unresolved: BTreeSet<String>,
    /// uuids marked "not synced" after a rollback kept them (`kept_local`).
    not_synced: BTreeSet<String>,
}

#[derive(Default)]
struct World {
    registry: HashMap<String, Option<ObjectState>>,
    editors: [Editor; 2],
    window: Vec<Queued<String>>,
    now_ms: u64,
    commits: u64,
    rollbacks: u64,
}

fn name(i: usize) -> String {
    EDITORS[i].to_string()
}

impl World {
    fn editor_edit(&mut self, i: usize, uuid: &str, edit: &Edit, author: Author) {
        let op = edit.op();
        // A new object gets a new uuid: a create of a uuid this editor does not hold is only
        // possible when nobody knows it yet.
        if matches!(op, ChangeOp::Create(_)) && !self.editors[i].scene.contains_key(uuid) {
            let known = self.registry.contains_key(uuid)
                || self.editors.iter().any(|e| e.scene.contains_key(uuid))
                || self.window.iter().any(|q| q.change.uuid == uuid);
            if known {
                return;
            }
        }
        let ed = &mut self.editors[i];
        // An editor only reports what it could do to its own scene.
        let Ok(next) = apply_change(ed.scene.get(uuid), &op) else { return };
        match &next {
            Some(s) => {
                ed.scene.insert(uuid.to_string(), s.clone());
            }
            None => {
                ed.scene.remove(uuid);
            }
        }
        if author == Author::Person {
            ed.unresolved.insert(uuid.to_string());
        }
        // A uuid marked not synced is re-sent in full when it is edited again (§6.4): the
        // daemon never took the earlier state.
        let op = match (ed.not_synced.remove(uuid), &next) {
            (true, Some(s)) => ChangeOp::Create(s.clone()),
            _ => op,
        };
        self.window.push(Queued { origin: name(i), author, change: Change { uuid: uuid.into(), op } });
    }

    fn agent_edit(&mut self, uuid: &str, edit: &Edit) {
        let op = edit.op();
        // An agent knows only what was committed (scene_query answers the registry).
        if apply_change(self.registry.get(uuid).cloned().flatten().as_ref(), &op).is_err() {
            return;
        }
        self.window.push(Queued {
            origin: AGENT.into(),
            author: Author::Automation,
            change: Change { uuid: uuid.into(), op },
        });
    }

    fn resend(&mut self, i: usize) {
        let ed = &mut self.editors[i];
        let kept: Vec<String> = std::mem::take(&mut ed.not_synced).into_iter().collect();
        for u in kept {
            // The full state as `create` (or the delete the person made).
            let op = match ed.scene.get(&u) {
                Some(s) => ChangeOp::Create(s.clone()),
                None => ChangeOp::Delete,
            };
            self.window.push(Queued { origin: name(i), author: Author::Person, change: Change { uuid: u, op } });
        }
    }

    /// The `batch` step plus admission: coalesce the window, drop what no longer applies
    /// (the daemon answers those `dropped`), compute each uuid's state before and after.
    fn close(&mut self, answers: [Answer; 2]) {
        let all = std::mem::take(&mut self.window);
        if all.is_empty() {
            return;
        }
        let start: HashMap<String, Option<ObjectState>> =
            all.iter().map(|q| (q.change.uuid.clone(), self.registry.get(&q.change.uuid).cloned().flatten())).collect();
        let mut finals = start.clone();
        let mut kept = Vec::new();
        for q in coalesce(all.clone()) {
            let cur = finals.get(&q.change.uuid).cloned().flatten();
            match apply_change(cur.as_ref(), &q.change.op) {
                Ok(next) if next != cur => {
                    finals.insert(q.change.uuid.clone(), next);
                    kept.push(q);
                }
                _ => {} // a no-op or no longer applicable: dropped
            }
        }
        // Dropped person edits are resolved (their origin gets `dropped`).
        let kept_keys: BTreeSet<(String, String)> =
            kept.iter().map(|q| (q.origin.clone(), q.change.uuid.clone())).collect();
        for q in &all {
            if let Some(i) = EDITORS.iter().position(|e| *e == q.origin) {
                if !kept_keys.contains(&(q.origin.clone(), q.change.uuid.clone())) {
                    self.editors[i].unresolved.remove(&q.change.uuid);
                }
            }
        }
        // An origin left off the authoritative state by a dropped change (it lost a conflict
        // to a change that turned out a no-op) is corrected, never over kept work.
        let batch_uuids: BTreeSet<String> = kept.iter().map(|q| q.change.uuid.clone()).collect();
        for q in &all {
            let Some(i) = EDITORS.iter().position(|e| *e == q.origin) else { continue };
            let u = &q.change.uuid;
            if batch_uuids.contains(u) || self.editors[i].not_synced.contains(u) {
                continue;
            }
            if self.editors[i].scene.get(u) != self.registry.get(u).cloned().flatten().as_ref() {
                self.set_authoritative(i, u);
            }
        }
        if kept.is_empty() {
            return;
        }
        let participants: Vec<String> = EDITORS.iter().map(|e| e.to_string()).collect();
        let plan = forward::plan(&all, &kept, &start, &finals, participants.iter());

        // `forward`: each participant applies what it was sent (on top of its own changes).
        let before: [Editor; 2] = self.editors.clone();
        let mut v = Verification::new(plan.expected.clone(), self.now_ms + DEADLINE_MS);
        let mut verdict = v.verdict();
        let mut left = BTreeSet::new();
        for (i, ed) in self.editors.iter_mut().enumerate() {
            let Some(ops) = plan.sends.get(&name(i)) else { continue };
            for (u, op) in ops {
                if let Ok(next) = apply_change(ed.scene.get(u), op) {
                    match next {
                        Some(s) => ed.scene.insert(u.clone(), s),
                        None => ed.scene.remove(u),
                    };
                }
            }
        }
        // `verify`: the answers, in editor order.
        for (i, a) in answers.iter().enumerate() {
            if !matches!(verdict, Verdict::Wait) {
                break;
            }
            let Some(exp) = plan.expected.get(&name(i)) else { continue };
            let ed = &self.editors[i];
            let mut hashes: BTreeMap<String, String> =
                exp.keys().filter_map(|u| ed.scene.get(u).map(|s| (u.clone(), s.hash()))).collect();
            verdict = match a {
                Answer::Right => v.applied(&name(i), &hashes, false),
                Answer::WrongHash => {
                    for h in hashes.values_mut() {
                        *h = "0".repeat(64);
                    }
                    if hashes.is_empty() {
                        hashes.insert(exp.keys().next().unwrap().clone(), "0".repeat(64));
                    }
                    v.applied(&name(i), &hashes, false)
                }
                Answer::Silent => Verdict::Wait,
                Answer::Disconnect => {
                    left.insert(i);
                    v.left(&name(i))
                }
            };
        }
        if matches!(verdict, Verdict::Wait) {
            self.now_ms += DEADLINE_MS;
            verdict = v.tick(self.now_ms);
        }
        self.now_ms += 1;
        match verdict {
            Verdict::Wait => panic!("a verdict is reached by the deadline"),
            Verdict::Commit => {
                self.commits += 1;
                for (u, s) in &finals {
                    self.registry.insert(u.clone(), s.clone());
                }
                for q in &kept {
                    if let Some(i) = EDITORS.iter().position(|e| *e == q.origin) {
                        self.editors[i].unresolved.remove(&q.change.uuid);
                        self.editors[i].not_synced.remove(&q.change.uuid);
                    }
                }
                // Corrections: a conflict's loser is sent the batch's state.
                for (p, uuids) in &plan.corrections {
                    let i = EDITORS.iter().position(|e| e == p).unwrap();
                    for u in uuids {
                        self.set_authoritative(i, u);
                        self.editors[i].unresolved.remove(u);
                    }
                }
            }
            Verdict::Rollback(_) => {
                self.rollbacks += 1;
                let rb = plan_rollback(&all, &plan.sends, |s| s != AGENT);
                for (s, uuids) in &rb.resync {
                    let i = EDITORS.iter().position(|e| e == s).unwrap();
                    for u in uuids {
                        self.set_authoritative(i, u);
                    }
                }
                for (s, uuids) in &rb.kept_local {
                    let i = EDITORS.iter().position(|e| e == s).unwrap();
                    self.editors[i].not_synced.extend(uuids.iter().cloned());
                }
                // The rule: what a person made stays in the editor where it was made.
                // (Where another editor's op on the same uuid was forwarded to it in this
                // window, that is a conflict, resolved by arrival order, §6.2: not checked here.)
                for (i, ed) in self.editors.iter().enumerate() {
                    let sent = plan.sends.get(&name(i));
                    for u in &before[i].unresolved {
                        let mine = all
                            .iter()
                            .any(|q| q.origin == name(i) && &q.change.uuid == u && q.author == Author::Person);
                        let conflict = sent.is_some_and(|o| o.iter().any(|(x, _)| x == u));
                        if mine && !conflict {
                            assert_eq!(
                                ed.scene.get(u),
                                before[i].scene.get(u),
                                "{}: a rollback changed {u}, which a person edited there",
                                EDITORS[i]
                            );
                        }
                    }
                }
                // Automation is reverted everywhere, its origin included (unless a person
                // there also changed the uuid in this batch: then it stays, marked).
                for q in all.iter().filter(|q| q.author == Author::Automation) {
                    for (i, ed) in self.editors.iter().enumerate() {
                        let persons = all.iter().any(|p| {
                            p.origin == name(i) && p.change.uuid == q.change.uuid && p.author == Author::Person
                        });
                        let sent = plan.sends.get(&name(i)).is_some_and(|o| o.iter().any(|(u, _)| *u == q.change.uuid));
                        if !persons && (sent || q.origin == name(i)) {
                            assert_eq!(
                                ed.scene.get(&q.change.uuid),
                                self.registry.get(&q.change.uuid).cloned().flatten().as_ref(),
                                "{}: automation's change of {} was not reverted",
                                EDITORS[i],
                                q.change.uuid
                            );
                        }
                    }
                }
            }
        }
        // A disconnected editor reconnects and is replayed what it missed — never over its
        // unresolved local work (docs/PROTOCOL.md §6.6).
        for i in left {
            for u in UUIDS {
                if !self.editors[i].unresolved.contains(u) {
                    self.set_authoritative(i, u);
                }
            }
        }
    }

    fn set_authoritative(&mut self, i: usize, u: &str) {
        let ed = &mut self.editors[i];
        match self.registry.get(u).cloned().flatten() {
            Some(s) => ed.scene.insert(u.to_string(), s),
            None => ed.scene.remove(u),
        };
    }

    /// Nobody edits any more: editors re-send what they kept, windows close with every
    /// answer right; at most a few rounds.
    fn quiet(&mut self) {
        for _ in 0..4 {
            for i in 0..2 {
                self.resend(i);
            }
            self.close([Answer::Right, Answer::Right]);
        }
    }
}

fn run(steps: &[Step]) -> World {
    let mut w = World::default();
    for s in steps {
        match s {
            Step::Person { editor, uuid, edit } => w.editor_edit(*editor, UUIDS[*uuid], edit, Author::Person),
            Step::AutomationInEditor { editor, uuid, edit } => {
                w.editor_edit(*editor, UUIDS[*uuid], edit, Author::Automation)
            }
            Step::Agent { uuid, edit } => w.agent_edit(UUIDS[*uuid], edit),
            Step::Close(a) => w.close(*a),
            Step::Resend { editor } => w.resend(*editor),
        }
    }
    w.close([Answer::Right, Answer::Right]);
    w.quiet();
    w
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn persons_work_survives_and_editors_converge(steps in prop::collection::vec(step(), 1..60)) {
        let w = run(&steps);
        for (i, ed) in w.editors.iter().enumerate() {
            let live: BTreeMap<String, ObjectState> =
                w.registry.iter().filter_map(|(u, s)| s.clone().map(|s| (u.clone(), s))).collect();
            prop_assert_eq!(&ed.scene, &live, "{} does not hold the registry's state once quiet", EDITORS[i]);
            prop_assert!(ed.not_synced.is_empty(), "{} still has not-synced uuids once quiet", EDITORS[i]);
        }
    }
}
