//! Pipeline step `forward` (docs/PROTOCOL.md §6.2–§6.4): who is sent which ops of a batch,
//! and what each participant must hold afterwards.
//!
//! A participant is verified against exactly what it was sent, applied on top of what it
//! holds — its own changes of the same window included — never against ops it was not sent.
//! When two editors changed one part of an object in one window, the last writer in daemon
//! arrival order wins and every other origin of that part is a conflict's loser ([`conflicts`]).
//! Whoever differs from the batch's state after applying what it was sent — keeping its own
//! value of each part it changed in the window, as an editor does (§6.4, [`held_sparing`]) —
//! is corrected once the batch commits.

use crate::fast::HashMap;
use std::collections::BTreeMap;

use crate::stale::Parts;
use crate::sync::{apply_change, pose_part, ChangeOp, ObjectState, Pose, Queued};
use vibesync_protocol::names::ChangeOpKind;

/// What an editor holds after applying `ops` in order to `start` — as an editor does: an op
/// that does not apply (e.g. to an object it does not have) changes nothing.
pub fn held_after<'o>(start: Option<ObjectState>, ops: impl IntoIterator<Item = &'o ChangeOp>) -> Option<ObjectState> {
    let mut held = start;
    for op in ops {
        if let Ok(next) = apply_change(held.as_ref(), op) {
            held = next;
        }
    }
    held
}

/// What an editor holds after applying `sent` on top of `start` and its own changes `mine`,
/// keeping its own values as docs/PROTOCOL.md §6.4 says: while its change is in flight, a sent
/// op of a part one of `mine` changed is not applied, and a sent `create` is applied without
/// those parts. A `create` or `delete` of its own spares nothing (a full state sent is
/// answered by the batch that carries it; an object's existence is not spared), and a sent
/// `delete` is applied.
pub fn held_sparing(start: Option<ObjectState>, mine: &[&ChangeOp], sent: &[&ChangeOp]) -> Option<ObjectState> {
    let spared: Vec<ChangeOpKind> =
        mine.iter().map(|op| op.kind()).filter(|k| !matches!(k, ChangeOpKind::Create | ChangeOpKind::Delete)).collect();
    let mut held = held_after(start, mine.iter().copied());
    for op in sent {
        if spared.contains(&op.kind()) {
            continue;
        }
        match (apply_change(held.as_ref(), op), &held) {
            (Ok(Some(new)), Some(before)) if matches!(op, ChangeOp::Create(_)) => {
                held = Some(keep_parts(new, before, &spared));
            }
            (Ok(next), _) => held = next,
            (Err(_), _) => {}
        }
    }
    held
}

/// `to` with the parts of kinds `keep` taken from `from`.
fn keep_parts(mut to: ObjectState, from: &ObjectState, keep: &[ChangeOpKind]) -> ObjectState {
    for k in keep {
        match k {
            ChangeOpKind::Transform => (to.t, to.r, to.s) = (from.t, from.r, from.s),
            ChangeOpKind::Rename => to.name.clone_from(&from.name),
            ChangeOpKind::Visibility => to.visible = from.visible,
            ChangeOpKind::Reparent => to.parent.clone_from(&from.parent),
            ChangeOpKind::Mesh => to.mesh_hash.clone_from(&from.mesh_hash),
            ChangeOpKind::Material => to.material.clone_from(&from.material),
            ChangeOpKind::Create | ChangeOpKind::Delete => {}
        }
    }
    to
}

/// Ops for one participant, in batch order.
pub type Ops = Vec<(String, ChangeOp)>;

/// Two editors changed one uuid in one window (docs/PROTOCOL.md §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub uuid: String,
    /// Session whose change is authoritative (the window's last writer of a part the loser
    /// wrote, in arrival order).
    pub winner: String,
    pub loser: String,
    /// The loser's last op on the uuid.
    pub op: &'static str,
}

/// What forwarding a batch means for each participant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// participant → the ops it is sent (the batch's ops from other origins, in order).
    pub sends: BTreeMap<String, Ops>,
    /// participant → uuid → the state hash it must answer (`None`: the uuid is deleted).
    pub expected: BTreeMap<String, BTreeMap<String, Option<String>>>,
    /// participant → uuids it will hold differently from the authoritative state after
    /// applying what it was sent, its own values of the window kept ([`held_sparing`]: a
    /// conflict's loser): re-sent after COMMIT.
    pub corrections: BTreeMap<String, Vec<String>>,
    pub conflicts: Vec<Conflict>,
    /// uuid → the state hash after the batch (`None`: deleted).
    pub final_hashes: HashMap<String, Option<String>>,
}

/// Plan the forwarding of one batch.
///
/// * `all`: every admitted change of the window, in arrival order (before coalescing).
/// * `kept`: the batch's changes (coalesced, no-ops dropped), in order.
/// * `start`: each uuid's authoritative state before the batch.
/// * `finals`: each uuid's authoritative state after the batch.
/// * `participants`: the connected scene-holding sessions of the project.
pub fn plan<'a>(
    all: &[Queued<String>],
    kept: &[Queued<String>],
    (start, seen, foreign): (&HashMap<String, Option<ObjectState>>, &Seen<'_>, &Foreign<'_>),
    finals: &HashMap<String, Option<ObjectState>>,
    participants: impl IntoIterator<Item = &'a String>,
) -> Plan {
    let mut out = Plan::default();
    // Indexes, so planning is linear in the batch size.
    let mut own: HashMap<(&str, &str), Vec<&ChangeOp>> = HashMap::default();
    for q in all {
        own.entry((q.origin.as_str(), q.change.uuid.as_str())).or_default().push(&q.change.op);
    }
    out.final_hashes = finals.iter().map(|(u, s)| (u.clone(), s.as_ref().map(ObjectState::hash))).collect();
    for p in participants {
        let ops: Ops =
            kept.iter().filter(|q| &q.origin != p).map(|q| (q.change.uuid.clone(), q.change.op.clone())).collect();
        // An origin whose own change of a batch uuid was superseded in the window, and that
        // was sent nothing of that uuid, still holds what it made: it is corrected after
        // COMMIT like any loser (it is not verified on that uuid: it was sent nothing of it).
        let sent_uuids: crate::fast::HashSet<&str> = ops.iter().map(|(u, _)| u.as_str()).collect();
        let mut lost: Vec<String> = own
            .iter()
            .filter(|((o, u), _)| *o == p.as_str() && !sent_uuids.contains(u) && finals.contains_key(*u))
            .filter(|((_, u), mine)| {
                held_after(start.get(*u).cloned().flatten(), mine.iter().copied()).as_ref()
                    != finals.get(*u).and_then(Option::as_ref)
            })
            .map(|((_, u), _)| u.to_string())
            .collect();
        lost.sort();
        if ops.is_empty() {
            if !lost.is_empty() {
                out.corrections.insert(p.clone(), lost);
            }
            continue;
        }
        // uuid → its ops sent to this participant, in order (first-appearance order of uuids).
        let mut sent: HashMap<&str, Vec<&ChangeOp>> = HashMap::default();
        let mut uuids: Vec<&str> = Vec::new();
        for (u, op) in &ops {
            let e = sent.entry(u.as_str()).or_default();
            if e.is_empty() {
                uuids.push(u);
            }
            e.push(op);
        }
        let mut exp: BTreeMap<String, Option<String>> = BTreeMap::new();
        for u in uuids {
            // What the participant holds: the state before the batch with its own changes…
            let mine = own.get(&(p.as_str(), u)).map(Vec::as_slice).unwrap_or_default();
            // … then what it is sent, in order.
            let held = held_after(start.get(u).cloned().flatten(), mine.iter().chain(sent[u].iter()).copied());
            // Hashing is the costly part: equal states share the final hash.
            let fin = finals.get(u).and_then(Option::as_ref);
            let want = if held.as_ref() == fin {
                out.final_hashes.get(u).cloned().flatten()
            } else {
                held.as_ref().map(ObjectState::hash)
            };
            // What it holds in the end: its own values of the window kept (§6.4).
            let differs = if mine.is_empty() {
                out.final_hashes.get(u) != Some(&want)
            } else {
                held_sparing(start.get(u).cloned().flatten(), mine, &sent[u]).as_ref() != fin
            };
            if differs {
                out.corrections.entry(p.clone()).or_default().push(u.to_string());
            }
            exp.insert(u.to_string(), want);
        }
        if !lost.is_empty() {
            out.corrections.entry(p.clone()).or_default().extend(lost);
        }
        out.expected.insert(p.clone(), exp);
        out.sends.insert(p.clone(), ops);
    }
    let in_batch: crate::fast::HashSet<&str> = kept.iter().map(|q| q.change.uuid.as_str()).collect();
    out.conflicts =
        conflicts_seeing(all.iter().filter(|q| in_batch.contains(q.change.uuid.as_str())), start, (seen, foreign));
    out
}

/// The conflicts among a window's changes (docs/PROTOCOL.md §6.2), in arrival order: a change
/// of a uuid loses when a later change of another origin wrote a part it wrote (§6.1's parts:
/// pose, name, visibility, parent, mesh, material; a `create` or `delete` writes them all) and
/// that change is the window's last writer of that part — also when it turned out a no-op
/// that undid the other's (dropped from the batch) — unless it was made over it (its live
/// preview applied, §6.3 `mark`/`seen`). One conflict per uuid and loser (`op`: the loser's last
/// op of the uuid; `winner`: the origin of the last change that overwrote one of the loser's).
/// Edits of different parts of one object from two editors both stand: no conflict. A
/// `transform` that only keeps the object where it stood in the world after its editor's
/// reparent ([`Queued::keeps_world`]) writes no part here: its person did not move the object.
pub fn conflicts<'q>(
    window: impl IntoIterator<Item = &'q Queued<String>>,
    start: &HashMap<String, Option<ObjectState>>,
) -> Vec<Conflict> {
    conflicts_seeing(window, start, (&|_, _| None, &|_, _| None))
}

/// (origin, uuid) → the pose of another editor's live preview that the origin's latest
/// `transform` of the uuid was made over (its `seen` mark, docs/PROTOCOL.md §6.1), when the
/// daemon still knows it: the components it holds as that pose are none it made.
pub type Seen<'a> = dyn Fn(&str, &str) -> Option<Pose> + 'a;

/// (origin, uuid) → other editors' ops of the uuid the origin holds uncorrected, kept locally
/// after a rollback ([`crate::stale::made_over`]): values its full state holds that are no
/// edit of its person, and that it does not write.
pub type Foreign<'a> = dyn Fn(&str, &str) -> Option<Vec<ChangeOp>> + 'a;

/// [`conflicts`], knowing the live previews each `transform` was made over ([`Seen`]).
pub fn conflicts_seeing<'q>(
    window: impl IntoIterator<Item = &'q Queued<String>>,
    start: &HashMap<String, Option<ObjectState>>,
    (seen_preview, foreign): (&Seen<'_>, &Foreign<'_>),
) -> Vec<Conflict> {
    let window: Vec<&Queued<String>> = window.into_iter().collect();
    if window.windows(2).all(|w| w[0].origin == w[1].origin) {
        return Vec::new(); // one editor's changes (a drag, say): nobody else's to overwrite
    }
    // A pose is three parts here (position, rotation, scale: bits 8–10): a `transform`
    // writes those it changed from the object's pose before the window — all three when it
    // changed none (it moved the object back) or when the window links the object elsewhere
    // (its pose is then one under another parent).
    let linked: crate::fast::HashSet<&str> = window
        .iter()
        .filter(|q| matches!(q.change.op, ChangeOp::Create(_) | ChangeOp::Reparent(_) | ChangeOp::Delete))
        .map(|q| q.change.uuid.as_str())
        .collect();
    // uuid → where in `window` its `transform`s are: the moves a change may have seen.
    let mut moves: HashMap<&str, Vec<usize>> = HashMap::default();
    for (i, q) in window.iter().enumerate() {
        if matches!(q.change.op, ChangeOp::Transform { .. }) {
            moves.entry(q.change.uuid.as_str()).or_default().push(i);
        }
    }
    // uuid → where in `window` its first `delete` is: a `create` after it writes every part (it
    // makes the object again).
    let mut deleted: HashMap<&str, usize> = HashMap::default();
    for (i, q) in window.iter().enumerate() {
        if matches!(q.change.op, ChangeOp::Delete) {
            deleted.entry(q.change.uuid.as_str()).or_insert(i);
        }
    }
    let writes = |i: usize| -> u16 {
        let q = window[i];
        if q.keeps_world {
            return 0;
        }
        let was = start.get(&q.change.uuid).and_then(Option::as_ref);
        // A full state of an object the daemon holds: what its person made of it writes the
        // parts it holds differently, and of the pose the components (all three under another
        // parent).
        let held = match &q.change.op {
            ChangeOp::Create(_) => crate::stale::held_full_state(
                &q.change.op,
                was,
                deleted.get(q.change.uuid.as_str()).is_some_and(|&d| d < i),
                foreign(&q.origin, &q.change.uuid).as_deref(),
            ),
            _ => None,
        };
        let parts = held.as_ref().map_or_else(|| Parts::written_by(&q.change.op), |(_, parts)| *parts);
        let pose = match (&q.change.op, was, &held) {
            (_, Some(was), Some((made, parts))) => match (parts.intersects(Parts::POSE), made.parent == was.parent) {
                (false, _) => 0,
                (true, true) => Pose::of(made).changed_from(&Pose::of(was)),
                (true, false) => pose_part::ALL,
            },
            (ChangeOp::Transform { t, r, s }, Some(was), None) if !linked.contains(q.change.uuid.as_str()) => {
                // (One that changed nothing moved the object back: its whole pose, as merged;
                // a part it holds as another editor's earlier move it had seen, none it made.)
                let seen: Vec<Pose> = moves[q.change.uuid.as_str()]
                    .iter()
                    .take_while(|&&k| k < i)
                    .map(|&k| window[k])
                    .filter(|w| w.origin != q.origin && q.sight.sees("transform", w.sight.mark))
                    .filter_map(|w| match &w.change.op {
                        ChangeOp::Transform { t, r, s } => Some(Pose { t: *t, r: *r, s: *s }),
                        _ => None,
                    })
                    .chain(seen_preview(&q.origin, &q.change.uuid))
                    .collect();
                (Pose { t: *t, r: *r, s: *s }).made_from(&Pose::of(was), &seen)
            }
            _ if parts.intersects(Parts::POSE) => pose_part::ALL,
            _ => 0,
        };
        u16::from(parts.without(Parts::POSE).bits()) | (u16::from(pose) << 8)
    };
    let bits = |w: u16| (0..11u8).filter(move |b| w & (1 << b) != 0);
    let written: Vec<u16> = (0..window.len()).map(writes).collect();
    // (uuid, part bit) → the index of the window's last change writing it: where it stands.
    let mut last: HashMap<(&str, u8), usize> = HashMap::default();
    for (i, q) in window.iter().enumerate() {
        for bit in bits(written[i]) {
            last.insert((q.change.uuid.as_str(), bit), i);
        }
    }
    // (uuid, loser) → the index of the change that overwrote its latest lost change.
    let mut lost: HashMap<(&str, &str), usize> = HashMap::default();
    for (i, q) in window.iter().enumerate() {
        for bit in bits(written[i]) {
            let w = last[&(q.change.uuid.as_str(), bit)];
            let winner = window[w];
            if winner.origin != q.origin && !winner.sight.sees(q.change.op.name(), q.sight.mark) {
                lost.insert((q.change.uuid.as_str(), q.origin.as_str()), w);
            }
        }
    }
    // In arrival order of each (uuid, origin)'s first change; `op`: its last.
    let mut out: Vec<Conflict> = Vec::new();
    let mut at: HashMap<(&str, &str), usize> = HashMap::default();
    for q in &window {
        let key = (q.change.uuid.as_str(), q.origin.as_str());
        let Some(&w) = lost.get(&key) else { continue };
        match at.get(&key) {
            Some(&k) => out[k].op = q.change.op.name(),
            None => {
                at.insert(key, out.len());
                out.push(Conflict {
                    uuid: key.0.to_string(),
                    winner: window[w].origin.clone(),
                    loser: key.1.to_string(),
                    op: q.change.op.name(),
                });
            }
        }
    }
    out
}

/// The origins of dropped changes (docs/PROTOCOL.md §6.4 `dropped`) left off the
/// authoritative state, and their uuids: a dropped change whose uuid is not in the batch
/// (`in_batch`) leaves its origin holding what it made — the authoritative state (`start`)
/// with its own ops of the window (`own`) applied. Where that differs from the authoritative
/// state (it lost a same-window conflict to a change that turned out a no-op, §6.2) the origin
/// is sent the authoritative state after its `dropped` result, like any conflict's loser —
/// never over a uuid it keeps locally (the caller leaves those out, §6.4), whose lost values
/// the daemon remembers instead (§6.2 "A full state of an object the daemon holds").
///
/// `dropped`: origin → the uuids of its dropped changes (deduplicated, in order).
pub fn dropped_left_off<'a, S: Clone + Eq + std::hash::Hash + 'a>(
    dropped: impl IntoIterator<Item = (&'a S, &'a [String])>,
    in_batch: impl Fn(&str) -> bool,
    start: &HashMap<String, Option<ObjectState>>,
    own: &HashMap<(S, String), Vec<ChangeOp>>,
) -> Vec<(S, Vec<String>)> {
    let mut out = Vec::new();
    for (origin, uuids) in dropped {
        let differ: Vec<String> = uuids
            .iter()
            .filter(|u| !in_batch(u))
            .filter(|u| {
                let auth = start.get(*u).cloned().flatten();
                let mine = own.get(&(origin.clone(), (*u).clone())).map(Vec::as_slice).unwrap_or_default();
                held_after(auth.clone(), mine).map(|s| s.hash()) != auth.map(|s| s.hash())
            })
            .cloned()
            .collect();
        if !differ.is_empty() {
            out.push((origin.clone(), differ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Author, Change};

    const U: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn state(x: f64, name: &str) -> ObjectState {
        ObjectState {
            kind: "object".into(),
            name: name.into(),
            parent: None,
            visible: true,
            t: [x, 0.0, 0.0],
            r: [0.0, 0.0, 0.0, 1.0],
            s: [1.0; 3],
            mesh_hash: None,
            material: None,
        }
    }

    fn q(origin: &str, op: ChangeOp) -> Queued<String> {
        Queued::new(origin.into(), Author::Person, Change { uuid: U.into(), op })
    }

    fn tr(x: f64) -> ChangeOp {
        ChangeOp::Transform { t: [x, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] }
    }

    fn run(all: Vec<Queued<String>>, kept: Vec<Queued<String>>) -> (Plan, ObjectState) {
        let s0 = state(0.0, "A");
        let start: HashMap<_, _> = [(U.to_string(), Some(s0.clone()))].into_iter().collect();
        let mut fin = Some(s0);
        for k in &kept {
            fin = apply_change(fin.as_ref(), &k.change.op).unwrap();
        }
        let finals: HashMap<_, _> = [(U.to_string(), fin.clone())].into_iter().collect();
        let parts = ["a".to_string(), "b".to_string()];
        (plan(&all, &kept, (&start, &|_, _| None, &|_, _| None), &finals, &parts), fin.unwrap())
    }

    #[test]
    fn each_side_is_expected_to_hold_its_own_edit_plus_what_it_was_sent() {
        // a moves, b renames the same object in one window: both end with both edits.
        let all = vec![q("a", tr(5.0)), q("b", ChangeOp::Rename("B".into()))];
        let (p, fin) = run(all.clone(), all);
        assert_eq!(p.expected["a"][U], Some(fin.hash()));
        assert_eq!(p.expected["b"][U], Some(fin.hash()));
        assert!(p.corrections.is_empty());
        assert_eq!(p.sends["a"].len(), 1, "a is sent only b's rename");
        assert!(p.conflicts.is_empty(), "two people changed different parts of one object: both stand");
    }

    #[test]
    fn a_conflict_is_a_part_another_editor_overwrote_later() {
        let start: HashMap<String, Option<ObjectState>> =
            [(U.to_string(), Some(state(0.0, "A")))].into_iter().collect();
        let c = |all: Vec<Queued<String>>| conflicts(all.iter(), &start);
        let lost = |winner: &str, loser: &str, op: &'static str| Conflict {
            uuid: U.into(),
            winner: winner.into(),
            loser: loser.into(),
            op,
        };
        // The same part: the later writer wins.
        assert_eq!(c(vec![q("a", tr(1.0)), q("b", tr(2.0))]), vec![lost("b", "a", "transform")]);
        // a moves, b moves, a moves again: a's pose stands, b's move lost to it (a per-uuid
        // "last writer" named b the winner when b's rename came last).
        let all = vec![q("a", tr(1.0)), q("b", tr(2.0)), q("a", tr(3.0)), q("b", ChangeOp::Rename("B".into()))];
        assert_eq!(c(all), vec![lost("a", "b", "rename")]);
        // Position, rotation and scale are parts of their own: a scale made in one editor
        // and a move made in the other both stand (the batch merges them, §6.2).
        let scaled = ChangeOp::Transform { t: [0.0; 3], r: [0.0, 0.0, 0.0, 1.0], s: [2.0; 3] };
        assert!(c(vec![q("a", scaled.clone()), q("b", tr(2.0))]).is_empty());
        let both = ChangeOp::Transform { t: [3.0, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [2.0; 3] };
        assert_eq!(c(vec![q("a", scaled), q("b", both)]), vec![lost("b", "a", "transform")]);
        // A reparent writes the parent, not the pose: a move under the old parent stands.
        assert!(c(vec![q("a", tr(1.0)), q("b", ChangeOp::Reparent(None))]).is_empty());
        // A create or a delete writes every part.
        assert_eq!(c(vec![q("a", tr(1.0)), q("b", ChangeOp::Delete)]), vec![lost("b", "a", "transform")]);
        assert_eq!(
            c(vec![q("a", ChangeOp::Rename("X".into())), q("b", ChangeOp::Create(state(9.0, "B")))]),
            vec![lost("b", "a", "rename")]
        );
        // A full state of an object the daemon holds (kept local work sent again) writes the
        // parts it holds differently from the state before the window, never a value its
        // person did not change: a's rename stands beside b's full state that only hides it.
        let mut hidden = state(0.0, "A");
        hidden.visible = false;
        assert!(c(vec![q("a", ChangeOp::Rename("X".into())), q("b", ChangeOp::Create(hidden.clone()))]).is_empty());
        // Two editors' full states of one object, each with its person's edit: both stand.
        assert!(c(vec![q("a", ChangeOp::Create(hidden.clone())), q("b", ChangeOp::Create(state(4.0, "A")))]).is_empty());
        // … a conflict when both changed one part (b hid it too, then showed it again).
        assert_eq!(
            c(vec![q("a", ChangeOp::Create(hidden)), q("b", ChangeOp::Visibility(true))]),
            vec![lost("b", "a", "create")]
        );
        // After a delete of the window it makes the object again: every part.
        assert_eq!(
            c(vec![q("a", ChangeOp::Delete), q("b", ChangeOp::Create(state(0.0, "Z")))]),
            vec![lost("b", "a", "delete")]
        );
        // A move that only keeps the object where it stood after its editor's reparent off a
        // deleted parent writes no pose (§6.1): the other editor's move stands, no conflict.
        let kept_world = Queued { keeps_world: true, ..q("b", tr(7.0)) };
        assert!(c(vec![q("a", tr(1.0)), q("b", ChangeOp::Reparent(None)), kept_world]).is_empty());
    }

    #[test]
    fn a_create_after_a_peer_move_verifies_each_side_against_what_it_holds() {
        // a moves; b then re-creates the object with its own pose (full state). The batch's
        // state is b's create; a holds b's create (sent after its own move) = authoritative;
        // b holds its create and is then sent a's earlier move → differs: corrected after
        // COMMIT, and verified against what it really holds (no false mismatch).
        let create = ChangeOp::Create(state(9.0, "B"));
        let all = vec![q("a", tr(5.0)), q("b", create.clone())];
        let (p, fin) = run(all.clone(), all);
        assert_eq!(fin.t[0], 9.0);
        assert_eq!(p.expected["a"][U], Some(fin.hash()));
        let mut b_holds = state(9.0, "B");
        b_holds.t[0] = 5.0;
        assert_eq!(p.expected["b"][U], Some(b_holds.hash()), "b is checked against what it was sent");
        assert_eq!(p.corrections["b"], vec![U.to_string()]);
        assert_eq!(
            p.conflicts,
            vec![Conflict { uuid: U.into(), winner: "b".into(), loser: "a".into(), op: "transform" }]
        );
    }

    #[test]
    fn a_loser_to_a_no_op_winner_is_corrected_after_its_dropped_result() {
        // The object is at x = 0. a moves it to 5; b, later in the window, moves it back to
        // 0: b's transform wins and is a no-op, so no batch forms and both changes are
        // dropped. a holds 5: it is corrected to 0. b holds 0: nothing to correct.
        let start: HashMap<_, _> = [(U.to_string(), Some(state(0.0, "A")))].into_iter().collect();
        let own: HashMap<(String, String), Vec<ChangeOp>> =
            [(("a".to_string(), U.to_string()), vec![tr(5.0)]), (("b".to_string(), U.to_string()), vec![tr(0.0)])]
                .into_iter()
                .collect();
        let (a, b) = ("a".to_string(), "b".to_string());
        let uuids = vec![U.to_string()];
        let dropped = [(&a, uuids.as_slice()), (&b, uuids.as_slice())];
        let fix = dropped_left_off(dropped, |_| false, &start, &own);
        assert_eq!(fix, vec![(a.clone(), uuids.clone())]);
        // Never for a uuid the batch carries (it brings the winner's value).
        assert!(dropped_left_off(dropped, |u| u == U, &start, &own).is_empty());
    }

    #[test]
    fn the_last_writer_wins_a_simultaneous_drag() {
        // a and b both drag; coalescing keeps b's (later) transform only.
        let all = vec![q("a", tr(1.0)), q("b", tr(2.0))];
        let kept = vec![all[1].clone()];
        let (p, fin) = run(all, kept);
        assert_eq!(fin.t[0], 2.0);
        assert!(!p.sends.contains_key("b"), "b is sent nothing: it made the winning change");
        assert_eq!(p.expected["a"][U], Some(fin.hash()), "a answers the state the batch made");
        // …but keeps its own drag while its change is in flight (§6.4: it does not apply b's
        // transform over it), so it is corrected once the batch commits.
        assert_eq!(p.corrections["a"], vec![U.to_string()]);
        assert_eq!(p.conflicts[0].loser, "a");
        assert_eq!(p.conflicts[0].winner, "b");
    }

    #[test]
    fn a_last_writer_whose_change_undid_the_other_editors_is_the_winner() {
        // a renames and hides the object; b, later in the window, shows it again: b's
        // visibility is a no-op over the committed state and is dropped from the batch, which
        // carries a's rename only — but b wrote last and won the visibility: a is the loser
        // (of its `visibility`), and it is corrected (its hide did not stand).
        let all = vec![
            q("a", ChangeOp::Rename("Z".into())),
            q("a", ChangeOp::Visibility(false)),
            q("b", ChangeOp::Visibility(true)),
        ];
        let kept = vec![all[0].clone()];
        let (p, fin) = run(all, kept);
        assert!(fin.visible && fin.name == "Z");
        assert_eq!(
            p.conflicts,
            vec![Conflict { uuid: U.into(), winner: "b".into(), loser: "a".into(), op: "visibility" }]
        );
        assert_eq!(p.corrections["a"], vec![U.to_string()]);
    }

    #[test]
    fn a_change_made_over_the_others_live_preview_is_no_conflict() {
        use crate::live::Sight;
        let at = |origin: &str, op: ChangeOp, mark: u64, saw: [u64; 3]| Queued {
            sight: Sight { mark, saw },
            ..q(origin, op)
        };
        // a drags (marks 1, 3); b had applied a's preview of mark 3 when its person moved the
        // object: b made its move over a's, no conflict — the batch still carries b's.
        let all = vec![at("a", tr(1.0), 1, [0; 3]), at("a", tr(2.0), 3, [0; 3]), at("b", tr(5.0), 4, [3, 0, 0])];
        let (p, fin) = run(all.clone(), vec![all[2].clone()]);
        assert_eq!(fin.t[0], 5.0);
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        // b had applied only the first preview: a's second move was not in front of its
        // person — a conflict, as before.
        let all = vec![at("a", tr(1.0), 1, [0; 3]), at("a", tr(2.0), 3, [0; 3]), at("b", tr(5.0), 4, [1, 0, 0])];
        let (p, _) = run(all.clone(), vec![all[2].clone()]);
        assert_eq!(p.conflicts.len(), 1);
        // A preview of another op does not cover a move; a slow-path change is never previewed.
        let all = vec![at("a", tr(1.0), 1, [0; 3]), at("b", tr(5.0), 4, [0, 9, 9])];
        assert_eq!(run(all.clone(), vec![all[1].clone()]).0.conflicts.len(), 1);
        let all = vec![
            at(
                "a",
                ChangeOp::Material(Some(crate::sync::Material {
                    base_color: [1.0; 4],
                    metallic: 0.0,
                    roughness: 0.5,
                    emission: [0.0; 3],
                })),
                1,
                [0; 3],
            ),
            at("b", ChangeOp::Material(None), 4, [9, 9, 9]),
        ];
        assert_eq!(run(all.clone(), all).0.conflicts.len(), 1);
    }
}
