//! Stale changes, per part of an object (docs/PROTOCOL.md §6.1 "Stale changes"): which parts
//! of an object's state a change writes, which parts a slow-path change is stale against, and
//! who last wrote each part in a committed or in-flight batch.
//!
//! A slow-path change made before the editor heard of another editor's change of the same
//! object is refused `STALE` only when that other change wrote a part the refused change
//! writes or depends on. A mesh edited in Blender's Edit Mode while a person in Unity moved
//! the object is not stale: both edits stand. (Refusing it sent Blender the old mesh and the
//! person's modelling was undone.)
//!
//! Pure: no I/O, no clock.

use vibesync_registry::{Part, PartWriter, StateWrite};

use crate::sync::{pose_part, Author, ChangeOp, ObjectState, Pose};
use vibesync_protocol::names::ClientKind;

/// Each part as the registry names it (its `writers`, docs/PROTOCOL.md §6.1).
const REGISTRY_PARTS: [(Part, Parts); 7] = [
    (Part::Pose, Parts::POSE),
    (Part::Name, Parts::NAME),
    (Part::Visibility, Parts::VISIBILITY),
    (Part::Parent, Parts::PARENT),
    (Part::Mesh, Parts::MESH),
    (Part::Material, Parts::MATERIAL),
    (Part::Existence, Parts::EXISTENCE),
];

/// A set of parts of an object's synced state (§6.5's fields, grouped as ops write them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parts(u8);

impl Parts {
    pub const NONE: Parts = Parts(0);
    /// `t`, `r`, `s` (op `transform`).
    pub const POSE: Parts = Parts(1);
    /// `name` (op `rename`).
    pub const NAME: Parts = Parts(1 << 1);
    /// `visible` (op `visibility`).
    pub const VISIBILITY: Parts = Parts(1 << 2);
    /// `parent` (op `reparent`).
    pub const PARENT: Parts = Parts(1 << 3);
    /// `mesh_hash` (op `mesh`).
    pub const MESH: Parts = Parts(1 << 4);
    /// `material` (op `material`).
    pub const MATERIAL: Parts = Parts(1 << 5);
    /// The object itself: made (`create`, every field) or removed (`delete`).
    pub const EXISTENCE: Parts = Parts(1 << 6);
    /// Every part above: what a `create` writes.
    pub const ALL: Parts = Parts(0x7f);
    /// Removed: written by a `delete` only (beside every other part).
    pub const GONE: Parts = Parts(1 << 7);

    /// The set as bits (`POSE` = 1, … `GONE` = 1 << 7).
    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn union(self, other: Parts) -> Parts {
        Parts(self.0 | other.0)
    }

    pub const fn intersection(self, other: Parts) -> Parts {
        Parts(self.0 & other.0)
    }

    pub const fn intersects(self, other: Parts) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn without(self, other: Parts) -> Parts {
        Parts(self.0 & !other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The registry's names of these parts (`GONE` has none: a delete archives the record).
    pub fn to_registry(self) -> Vec<Part> {
        REGISTRY_PARTS.iter().filter(|(_, p)| self.intersects(*p)).map(|(r, _)| *r).collect()
    }

    /// The parts the registry names.
    pub fn from_registry(parts: &[Part]) -> Parts {
        REGISTRY_PARTS.iter().filter(|(r, _)| parts.contains(r)).fold(Parts::NONE, |acc, (_, p)| acc.union(*p))
    }

    /// What of the object `op` changes.
    pub fn written_by(op: &ChangeOp) -> Parts {
        match op {
            ChangeOp::Create(_) => Parts::ALL,
            ChangeOp::Delete => Parts::ALL.union(Parts::GONE),
            ChangeOp::Transform { .. } => Parts::POSE,
            ChangeOp::Rename(_) => Parts::NAME,
            ChangeOp::Visibility(_) => Parts::VISIBILITY,
            ChangeOp::Reparent(_) => Parts::PARENT,
            ChangeOp::Mesh(_) => Parts::MESH,
            ChangeOp::Material(_) => Parts::MATERIAL,
        }
    }

    /// The parts `st` holds differently from `was`; what a `create` of `st` writes over `was`
    /// (same kind, [`held_full_state`]). Its pose is meaningful under its parent, so a changed
    /// pose counts the parent too.
    pub fn changed(st: &ObjectState, was: &ObjectState) -> Parts {
        let mut out = Parts::NONE;
        let pairs = [
            (Parts::POSE, Pose::of(st).changed_from(&Pose::of(was)) != 0),
            (Parts::NAME, st.name != was.name),
            (Parts::VISIBILITY, st.visible != was.visible),
            (Parts::PARENT, st.parent != was.parent),
            (Parts::MESH, st.mesh_hash != was.mesh_hash),
            (Parts::MATERIAL, st.material != was.material),
        ];
        for (part, differs) in pairs {
            if differs {
                out = out.union(part);
            }
        }
        if out.intersects(Parts::POSE) {
            out = out.union(Parts::PARENT);
        }
        out
    }

    /// What `op` is stale against when another editor changed it after the change's
    /// `base_seq`: what it writes, and what its meaning depends on. A `reparent` depends on
    /// the pose (a local pose is relative to its parent); a `create` carries the whole state
    /// and a `delete` removes it, so both depend on every part; slow-path ops depend on the
    /// object's existence (another editor's `create` or `delete` of it). A fast-path op is
    /// stale only against another editor's `delete` (the object it changes is gone: a
    /// conflict the delete won); otherwise it is rebased (§6.1, the later writer wins, a
    /// conflict across windows).
    pub fn stale_against(op: &ChangeOp) -> Parts {
        match op {
            ChangeOp::Create(_) | ChangeOp::Delete => Parts::ALL.union(Parts::GONE),
            ChangeOp::Reparent(_) => Parts::PARENT.union(Parts::POSE).union(Parts::EXISTENCE),
            ChangeOp::Mesh(_) => Parts::MESH.union(Parts::EXISTENCE),
            ChangeOp::Material(_) => Parts::MATERIAL.union(Parts::EXISTENCE),
            ChangeOp::Transform { .. } | ChangeOp::Rename(_) | ChangeOp::Visibility(_) => Parts::GONE,
        }
    }
}

/// An editor's full state of an object the daemon holds — its kept local work, sent again as
/// a `create` (docs/PROTOCOL.md §6.2 "A full state of an object the daemon holds") — as its
/// person made it, and the parts that writes: `st` less the values it holds as another
/// editor's, kept uncorrected after a rollback (`foreign`, [`made_over`]), and the parts that
/// holds differently from `was`, the object's state before the window ([`Parts::changed`]).
/// `None` when the `create` makes the object whole ([`Parts::written_by`]): `op` is no
/// `create`, the daemon held no live record of the uuid before the window (`was`), an earlier
/// change of the window deleted it (`after_delete`: the create makes it again), or the kinds
/// differ. The batch (what it applies and records) and the conflict rule both decide by this.
pub fn held_full_state(
    op: &ChangeOp,
    was: Option<&ObjectState>,
    after_delete: bool,
    foreign: Option<&[ChangeOp]>,
) -> Option<(ObjectState, Parts)> {
    match (op, was) {
        (ChangeOp::Create(st), Some(was)) if !after_delete && st.kind == was.kind => {
            let made = match foreign {
                Some(f) => made_over(st, was, f),
                None => st.clone(),
            };
            let parts = Parts::changed(&made, was);
            Some((made, parts))
        }
        _ => None,
    }
}

/// The state a `create` of an object the daemon holds leaves over `cur`, the object's state
/// so far in the window (`was`: before it): `cur` with the parts the create writes
/// ([`held_full_state`]) taken from it — so another editor's change of another part, in
/// the same window, stands (docs/PROTOCOL.md §6.2). A pose component the create holds as
/// `was` is `cur`'s, unless the create puts the object under another parent than `cur`'s (its
/// pose is one there: taken whole).
pub fn create_over(st: &ObjectState, was: &ObjectState, cur: &ObjectState) -> ObjectState {
    if st.kind != was.kind || st.kind != cur.kind {
        return st.clone();
    }
    let w = Parts::changed(st, was);
    let mut out = cur.clone();
    if w.intersects(Parts::NAME) {
        out.name.clone_from(&st.name);
    }
    if w.intersects(Parts::VISIBILITY) {
        out.visible = st.visible;
    }
    if w.intersects(Parts::MESH) {
        out.mesh_hash.clone_from(&st.mesh_hash);
    }
    if w.intersects(Parts::MATERIAL) {
        out.material.clone_from(&st.material);
    }
    if w.intersects(Parts::POSE) {
        let mine = Pose::of(st);
        let pose = if st.parent == cur.parent {
            Pose::of(cur).with_parts(&mine, mine.changed_from(&Pose::of(was)))
        } else {
            mine
        };
        (out.t, out.r, out.s) = (pose.t, pose.r, pose.s);
    }
    if w.intersects(Parts::PARENT) && st.parent != cur.parent {
        if !w.intersects(Parts::POSE) {
            // Its pose is `was`'s under `was`'s parent: taken whole with it.
            (out.t, out.r, out.s) = (st.t, st.r, st.s);
        }
        out.parent.clone_from(&st.parent);
    }
    out
}

/// `st`, an editor's full state of an object the daemon holds, with each part it holds as
/// another editor's value it was sent and keeps uncorrected (`foreign`: a rolled-back batch's
/// ops of the uuid, while it keeps the uuid locally, that their editor has changed since,
/// [`superseded_ops`]) set back to `was`, the object's state
/// before the window: that value is no edit of its person, and the full state does not write
/// it (docs/PROTOCOL.md §6.2 "A full state of an object the daemon holds"). Pose components,
/// name, visibility, mesh and material; never the parent (its pose is one under it).
pub fn made_over(st: &ObjectState, was: &ObjectState, foreign: &[ChangeOp]) -> ObjectState {
    let mut out = st.clone();
    let pose = |theirs: Pose, out: &mut ObjectState| {
        let same = pose_part::ALL & !Pose::of(out).changed_from(&theirs);
        let back = Pose::of(out).with_parts(&Pose::of(was), same);
        (out.t, out.r, out.s) = (back.t, back.r, back.s);
    };
    for op in foreign {
        match op {
            ChangeOp::Transform { t, r, s } => pose(Pose { t: *t, r: *r, s: *s }, &mut out),
            ChangeOp::Rename(n) if *n == out.name => out.name.clone_from(&was.name),
            ChangeOp::Visibility(v) if *v == out.visible => out.visible = was.visible,
            ChangeOp::Mesh(h) if out.mesh_hash.as_ref() == Some(h) => out.mesh_hash.clone_from(&was.mesh_hash),
            ChangeOp::Material(m) if *m == out.material => out.material.clone_from(&was.material),
            ChangeOp::Create(theirs) => {
                if theirs.parent == out.parent {
                    pose(Pose::of(theirs), &mut out);
                }
                if theirs.name == out.name {
                    out.name.clone_from(&was.name);
                }
                if theirs.visible == out.visible {
                    out.visible = was.visible;
                }
                if theirs.mesh_hash == out.mesh_hash {
                    out.mesh_hash.clone_from(&was.mesh_hash);
                }
                if theirs.material == out.material {
                    out.material.clone_from(&was.material);
                }
            }
            _ => {}
        }
    }
    out
}

/// What `op`, sent to an editor in a batch that rolled back while it keeps the uuid, holds
/// of other editors' values ([`made_over`]'s `foreign`): less the parts that editor itself
/// last wrote in the batch (`own`). The daemon sends each editor a batch's full state of an
/// object several editors sent full states of (§6.2), its own values included: those are its
/// person's, and its next full state writes them. Counted as another editor's, a kept rename
/// sent back that way was never written again (random edits, seed 14).
pub fn foreign_of(op: &ChangeOp, own: Parts) -> Vec<ChangeOp> {
    match op {
        ChangeOp::Create(theirs) if !own.is_empty() => {
            let mut out = Vec::new();
            if !own.intersects(Parts::POSE) {
                out.push(ChangeOp::Transform { t: theirs.t, r: theirs.r, s: theirs.s });
            }
            if !own.intersects(Parts::NAME) {
                out.push(ChangeOp::Rename(theirs.name.clone()));
            }
            if !own.intersects(Parts::VISIBILITY) {
                out.push(ChangeOp::Visibility(theirs.visible));
            }
            if let (false, Some(h)) = (own.intersects(Parts::MESH), &theirs.mesh_hash) {
                out.push(ChangeOp::Mesh(h.clone()));
            }
            if !own.intersects(Parts::MATERIAL) {
                out.push(ChangeOp::Material(theirs.material.clone()));
            }
            out
        }
        ChangeOp::Create(_) => vec![op.clone()],
        _ if own.intersects(Parts::written_by(op)) => Vec::new(),
        _ => vec![op.clone()],
    }
}

/// Does `st` hold the value `op` sets (of a pose, any of its components; a plain op's value,
/// as [`holds_all`])?
pub fn carries(st: &ObjectState, op: &ChangeOp) -> bool {
    match op {
        ChangeOp::Transform { t, r, s } => Pose::of(st).changed_from(&Pose { t: *t, r: *r, s: *s }) != pose_part::ALL,
        ChangeOp::Create(_) => false,
        _ => holds_all(st, op),
    }
}

/// Does `new`, a later change from the editor whose value `held` is, set a part `held` sets
/// to another value? Its person changed that part since ([`HeldForeign::superseded`]); a full
/// state that carries the value again, or a plain op that sets it again, is that person's
/// same choice (random edits, seed 14: both persons hid an object, each editor held the
/// other's hide from a rolled-back batch, and each one's next full state, counted as
/// changing every part, made the other's hide no longer its person's — the object came back
/// shown in both editors).
pub fn sets_other_value(new: &ChangeOp, held: &ChangeOp) -> bool {
    if !Parts::written_by(new).intersects(Parts::written_by(held)) {
        return false;
    }
    let pose = |t: &[f64; 3], r: &[f64; 4], s: &[f64; 3]| Pose { t: *t, r: *r, s: *s };
    match (new, held) {
        (ChangeOp::Create(st), _) => !holds_all(st, held),
        (_, ChangeOp::Create(theirs)) => !holds_all(theirs, new),
        (ChangeOp::Transform { t, r, s }, ChangeOp::Transform { t: t2, r: r2, s: s2 }) => {
            pose(t, r, s).changed_from(&pose(t2, r2, s2)) != 0
        }
        (ChangeOp::Rename(a), ChangeOp::Rename(b)) => a != b,
        (ChangeOp::Visibility(a), ChangeOp::Visibility(b)) => a != b,
        (ChangeOp::Mesh(a), ChangeOp::Mesh(b)) => a != b,
        (ChangeOp::Material(a), ChangeOp::Material(b)) => a != b,
        _ => true,
    }
}

/// Does `st` hold every value `op` sets?
fn holds_all(st: &ObjectState, op: &ChangeOp) -> bool {
    match op {
        ChangeOp::Transform { t, r, s } => Pose::of(st).changed_from(&Pose { t: *t, r: *r, s: *s }) == 0,
        ChangeOp::Rename(n) => *n == st.name,
        ChangeOp::Visibility(v) => *v == st.visible,
        ChangeOp::Mesh(h) => st.mesh_hash.as_ref() == Some(h),
        ChangeOp::Material(m) => *m == st.material,
        ChangeOp::Create(theirs) => Parts::changed(st, theirs).is_empty(),
        ChangeOp::Reparent(_) | ChangeOp::Delete => false,
    }
}

/// A value an editor holds as another editor's ([`foreign_of`]): sent it by a batch that
/// rolled back while it kept the uuid locally, so never corrected (docs/PROTOCOL.md §6.2 "A
/// full state of an object the daemon holds").
#[derive(Debug, Clone, PartialEq)]
pub struct HeldForeign {
    pub op: ChangeOp,
    /// The `client_id` of the editor whose person's value it is ("" when unknown).
    pub from: String,
    /// That editor has changed the part since (a change of it admitted): the value is no
    /// longer its person's last, and a full state that carries it does not write it. Until
    /// then the value is that person's choice, which the editor also keeps: a full state that
    /// carries it writes it like any other value.
    pub superseded: bool,
}

/// Of the values an editor holds as other editors' (`held`), those a full state of it does
/// not write ([`made_over`]'s `foreign`): the superseded ones.
pub fn superseded_ops(held: &[HeldForeign]) -> Vec<ChangeOp> {
    held.iter().filter(|h| h.superseded).map(|h| h.op.clone()).collect()
}

/// One writer of some parts of an object: at `seq`, by `client` (its `client_id`) of editor
/// kind `editor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub parts: Parts,
    pub seq: u64,
    pub client: String,
    pub editor: String,
    /// Per fast-path part (pose, name, visibility: `live::LIVE_OPS`' order), the admission
    /// mark of the change that wrote it (0: none known): an editor that applied that
    /// change's live preview made its own change over it (docs/PROTOCOL.md §6.1, §6.3).
    pub marks: [u64; 3],
    /// Who made the changes that wrote it: automation only when all of them were automation's
    /// (an agent session's, or an editor's sent with `automation`). The registry keeps it
    /// across a restart (`PartWriter::automation`).
    pub author: Author,
}

/// The fast-path parts, in `live::LIVE_OPS`' order.
const LIVE_PARTS: [Parts; 3] = [Parts::POSE, Parts::NAME, Parts::VISIBILITY];

impl Write {
    /// Automation's write: an `agent` session's, or made by changes all sent as automation.
    pub fn by_automation(&self) -> bool {
        self.author == Author::Automation || self.editor == ClientKind::Agent.as_str()
    }

    /// Were the parts of `parts` this write wrote in front of an editor that had applied
    /// the live previews `saw` (per fast-path op, the newest mark)? Only fast-path parts are
    /// ever previewed.
    fn seen_in(&self, parts: Parts, saw: [u64; 3]) -> bool {
        let mut rest = self.parts.intersection(parts);
        for (i, p) in LIVE_PARTS.iter().enumerate() {
            if rest.intersects(*p) && self.marks[i] != 0 && saw[i] >= self.marks[i] {
                rest = rest.without(*p);
            }
        }
        rest.is_empty()
    }
}

/// Who last wrote each part of one object (at most one entry per part; entries with no part
/// left are dropped, so at most eight).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastWrites(Vec<Write>);

impl LastWrites {
    /// No writer.
    pub const EMPTY: LastWrites = LastWrites(Vec::new());

    /// `client` wrote `parts` at `seq`: it is now their last writer. A write of the object's
    /// existence (a `create`, e.g. the undo of a delete) also ends an earlier delete's
    /// `GONE`: the object is there again, and a move made before both is rebased over the
    /// create, not refused as a move of a deleted object.
    ///
    /// `marks`: per fast-path part, the admission mark of the change that wrote it (0: none).
    pub fn record(&mut self, parts: Parts, seq: u64, (client, editor): (&str, &str), marks: [u64; 3], author: Author) {
        if parts.is_empty() {
            return;
        }
        let overwritten = if parts.intersects(Parts::EXISTENCE) { parts.union(Parts::GONE) } else { parts };
        for w in &mut self.0 {
            w.parts = w.parts.without(overwritten);
        }
        self.0.retain(|w| !w.parts.is_empty());
        if let Some(w) = self.0.iter_mut().find(|w| w.seq == seq && w.client == client && w.editor == editor) {
            w.parts = w.parts.union(parts);
            for (m, n) in w.marks.iter_mut().zip(marks) {
                *m = (*m).max(n);
            }
            if author == Author::Person {
                w.author = Author::Person;
            }
        } else {
            self.0.push(Write { parts, seq, client: client.to_string(), editor: editor.to_string(), marks, author });
        }
    }

    /// Every write of `other` is newer than those here (a later batch's writes).
    pub fn merge(&mut self, other: &LastWrites) {
        for w in &other.0 {
            self.record(w.parts, w.seq, (&w.client, &w.editor), w.marks, w.author);
        }
    }

    /// The newest write by a client other than `me`, after `base_seq`, of a part in `parts`:
    /// what makes a change of `me` made at `base_seq` stale (`None`: not stale).
    pub fn newer_by_other(&self, parts: Parts, base_seq: u64, me: &str) -> Option<&Write> {
        self.newer_unseen_by_other(parts, base_seq, me, [0; 3])
    }

    /// [`Self::newer_by_other`], leaving out writes whose parts (of `parts`) `me`'s change was
    /// made over: their values were in front of its person as live previews (`saw`, per
    /// fast-path op the newest mark its editor had applied).
    /// No write is left out for who made it (as for automation's own change; a person's is
    /// [`Self::newer_unseen_by_other_for`]).
    pub fn newer_unseen_by_other(&self, parts: Parts, base_seq: u64, me: &str, saw: [u64; 3]) -> Option<&Write> {
        self.newer_unseen_by_other_for(parts, (base_seq, saw), me, Author::Automation)
    }

    /// [`Self::newer_unseen_by_other`] for a change made by `author`: a person's change
    /// is never stale against automation's write (docs/PROTOCOL.md §6.1, §6.7: people's own
    /// edits always flow; made without it, the person's change is the later writer) — its
    /// delete of the object included: the person's edit brings the object back (a change
    /// other than a `create` is then `NOT_FOUND`, and the editor sends the object whole).
    pub fn newer_unseen_by_other_for(
        &self,
        parts: Parts,
        (base_seq, saw): (u64, [u64; 3]),
        me: &str,
        author: Author,
    ) -> Option<&Write> {
        self.0
            .iter()
            .filter(|w| w.parts.intersects(parts) && w.seq > base_seq && w.client != me && !w.seen_in(parts, saw))
            .filter(|w| author == Author::Automation || !w.by_automation())
            .max_by_key(|w| w.seq)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every write is at `seq` (a batch's writes, known before its records are appended).
    pub fn at_seq(&mut self, seq: u64) {
        for w in &mut self.0 {
            w.seq = seq;
        }
    }

    /// The parts some write here names.
    pub fn parts(&self) -> Parts {
        self.0.iter().fold(Parts::NONE, |acc, w| acc.union(w.parts))
    }

    /// The parts `client` (a `client_id`) is the last writer of here.
    pub fn parts_of(&self, client: &str) -> Parts {
        self.0.iter().filter(|w| w.client == client).fold(Parts::NONE, |acc, w| acc.union(w.parts))
    }

    /// The `client_id` of the last writer of some of `parts` here other than `not`, if any.
    pub fn writer_of(&self, parts: Parts, not: &str) -> Option<&str> {
        self.0.iter().rev().find(|w| w.client != not && w.parts.intersects(parts)).map(|w| w.client.as_str())
    }

    /// These writes as a registry `state` STEP names them (the seq is the STEP's), but for a
    /// writer `committed` already names as the last writer of all its parts here: a run of
    /// writes of the same parts by one client (a drag) is recorded once, at its first seq. A
    /// write of the parent is always recorded: a parent cycle a later change would close is
    /// judged by when each parent on it was written (docs/PROTOCOL.md §6.1, a loop the editor
    /// knew of or one it lost), and after a restart a reparent kept at its client's earlier
    /// `create` made a loss look like a loop its editor knew of (model seed 89).
    pub fn to_registry_over(&self, committed: Option<&LastWrites>) -> Vec<StateWrite> {
        let known = |w: &Write| {
            let parts = w.parts.without(Parts::GONE);
            !parts.intersects(Parts::PARENT)
                && committed.is_some_and(|c| {
                    // (A delete's write is no record's: the registry archived that one.)
                    c.0.iter().any(|x| {
                        x.client == w.client
                            && x.editor == w.editor
                            && x.author == w.author
                            && !x.parts.intersects(Parts::GONE)
                            && x.parts.intersection(parts) == parts
                    })
                })
        };
        self.0
            .iter()
            .filter(|w| !w.parts.without(Parts::GONE).is_empty() && !known(w))
            .map(|w| StateWrite {
                parts: w.parts.to_registry(),
                client_id: w.client.clone(),
                editor: w.editor.clone(),
                automation: w.author == Author::Automation,
                parent_before: None, // (the batch names it, `Project::start_batch`)
            })
            .collect()
    }

    /// The writers a registry record keeps, at or before `upto` (those of batches this
    /// machine did not see commit: before it started), with no live-preview marks.
    pub fn from_registry(writers: &[PartWriter], upto: u64) -> LastWrites {
        let mut out = LastWrites::default();
        let mut ws: Vec<&PartWriter> = writers.iter().filter(|w| w.seq <= upto).collect();
        ws.sort_by_key(|w| w.seq);
        for w in ws {
            let author = if w.automation { Author::Automation } else { Author::Person };
            out.record(Parts::from_registry(&w.parts), w.seq, (&w.client_id, &w.editor), [0; 3], author);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr() -> ChangeOp {
        ChangeOp::Transform { t: [1.0, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] }
    }

    fn st(x: f64, name: &str, visible: bool) -> ObjectState {
        ObjectState {
            kind: "object".into(),
            name: name.into(),
            parent: None,
            visible,
            t: [x, 0.0, 0.0],
            r: [0.0, 0.0, 0.0, 1.0],
            s: [1.0; 3],
            mesh_hash: None,
            material: None,
        }
    }

    #[test]
    fn a_full_state_of_a_held_object_writes_only_what_its_person_changed() {
        let was = st(0.0, "A", true);
        // Blender's kept full state hides it; Unity's moves it: each writes its own part.
        let hidden = ChangeOp::Create(st(0.0, "A", false));
        let moved = ChangeOp::Create(st(4.0, "A", true));
        let writes = |op: &ChangeOp, was: Option<&ObjectState>, deleted: bool| {
            held_full_state(op, was, deleted, None).map_or(Parts::written_by(op), |(_, parts)| parts)
        };
        assert_eq!(writes(&hidden, Some(&was), false), Parts::VISIBILITY);
        // (Its pose is meaningful under its parent: with it, the parent.)
        assert_eq!(writes(&moved, Some(&was), false), Parts::POSE.union(Parts::PARENT));
        // A create of an object the daemon holds no live record of makes it: every part; so
        // does one after a delete of the same window.
        assert_eq!(writes(&moved, None, false), Parts::ALL);
        assert_eq!(writes(&moved, Some(&was), true), Parts::ALL);
        // In one window, in either order, both edits stand.
        let (ChangeOp::Create(h), ChangeOp::Create(m)) = (&hidden, &moved) else { unreachable!() };
        let both = create_over(m, &was, &create_over(h, &was, &was));
        assert_eq!(both, st(4.0, "A", false));
        assert_eq!(create_over(h, &was, &create_over(m, &was, &was)), both);
        // A rename made in the window stands beside a full state that leaves the name.
        assert_eq!(create_over(h, &was, &st(0.0, "B", true)), st(0.0, "B", false));
        // Per component of the pose: a scale made there stands beside this move.
        let mut scaled = was.clone();
        scaled.s = [2.0; 3];
        let mut want = st(4.0, "A", true);
        want.s = [2.0; 3];
        assert_eq!(create_over(m, &was, &scaled), want);
        // Under another parent than the window's: its pose is one there, taken whole.
        let mut elsewhere = st(4.0, "A", true);
        elsewhere.parent = Some("p".into());
        let mut turned = was.clone();
        turned.r = [0.0, 0.0, 1.0, 0.0];
        assert_eq!(create_over(&elsewhere, &was, &turned), elsewhere);
    }

    #[test]
    fn a_value_an_editor_holds_from_a_rolled_back_batch_is_no_edit_of_its_person() {
        let was = st(0.0, "A", true);
        // Unity moved it and holds Blender's rename and hide, sent in a batch that rolled back.
        let held = st(4.0, "First", false);
        let foreign = [ChangeOp::Rename("First".into()), ChangeOp::Visibility(false)];
        assert_eq!(made_over(&held, &was, &foreign), st(4.0, "A", true));
        let (made, parts) =
            held_full_state(&ChangeOp::Create(held.clone()), Some(&was), false, Some(&foreign)).unwrap();
        assert_eq!((made, parts), (st(4.0, "A", true), Parts::POSE.union(Parts::PARENT)));
        // A value its person set since (another name) is its own.
        assert_eq!(made_over(&st(4.0, "Mine", false), &was, &foreign), st(4.0, "Mine", true));
        // Per pose component: another editor's position, its own scale.
        let mut scaled = st(4.0, "A", true);
        scaled.s = [2.0; 3];
        let theirs = ChangeOp::Transform { t: [4.0, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] };
        let mut want = was.clone();
        want.s = [2.0; 3];
        assert_eq!(made_over(&scaled, &was, &[theirs]), want);
    }

    #[test]
    fn a_held_value_is_left_out_only_once_its_editor_changed_that_part_since() {
        let held = |op: ChangeOp, superseded: bool| HeldForeign { op, from: "blender".into(), superseded };
        let hide = ChangeOp::Visibility(false);
        let name = ChangeOp::Rename("First".into());
        // Blender's hide, still its person's choice, is written; its rename, renamed since, is not.
        assert_eq!(superseded_ops(&[held(hide, false), held(name.clone(), true)]), vec![name]);
        // Whose a part is: its last writer other than the keeping editor.
        let mut w = LastWrites::default();
        w.record(Parts::NAME, 3, ("blender", "blender"), [0; 3], Author::Person);
        w.record(Parts::POSE, 4, ("unity", "unity"), [0; 3], Author::Person);
        assert_eq!(w.writer_of(Parts::NAME, "unity"), Some("blender"));
        assert_eq!(w.writer_of(Parts::POSE, "unity"), None);
    }

    #[test]
    fn only_another_value_of_a_held_part_changes_it_since() {
        let hide = ChangeOp::Visibility(false);
        let moved = ChangeOp::Transform { t: [4.0, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] };
        // A full state carrying the held values again is the same choice.
        let full = ChangeOp::Create(st(4.0, "First", false));
        assert!(!sets_other_value(&full, &hide));
        assert!(!sets_other_value(&full, &moved));
        assert!(!sets_other_value(&full, &ChangeOp::Create(st(4.0, "First", false))));
        // One that holds another value there changed it; of a pose, any component.
        assert!(sets_other_value(&ChangeOp::Create(st(4.0, "First", true)), &hide));
        let mut scaled = st(4.0, "First", false);
        scaled.s = [2.0; 3];
        assert!(sets_other_value(&ChangeOp::Create(scaled), &moved));
        assert!(sets_other_value(
            &ChangeOp::Create(st(4.0, "Other", false)),
            &ChangeOp::Create(st(4.0, "First", false))
        ));
        // Plain ops: the same value again changes nothing; another value, or another part, as said.
        assert!(!sets_other_value(&ChangeOp::Visibility(false), &hide));
        assert!(sets_other_value(&ChangeOp::Visibility(true), &hide));
        assert!(!sets_other_value(&ChangeOp::Rename("Other".into()), &hide));
        assert!(sets_other_value(&ChangeOp::Rename("Other".into()), &ChangeOp::Create(st(4.0, "First", false))));
        assert!(!sets_other_value(&ChangeOp::Rename("First".into()), &ChangeOp::Create(st(4.0, "First", false))));
        assert!(sets_other_value(&ChangeOp::Delete, &hide));
        // `carries`: a full state holding any component of a held pose.
        assert!(carries(&st(4.0, "A", true), &moved));
        assert!(!carries(
            &st(5.0, "A", true),
            &ChangeOp::Transform { t: [4.0, 0.0, 0.0], r: [0.0, 0.0, 1.0, 0.0], s: [2.0; 3] }
        ));
        assert!(carries(&st(4.0, "A", false), &hide) && !carries(&st(4.0, "A", true), &hide));
    }

    #[test]
    fn an_editors_own_value_sent_back_in_a_full_state_is_not_another_editors() {
        let was = st(0.0, "A", true);
        // The batch's full state, sent to Blender: Blender's rename, Unity's move.
        let sent = ChangeOp::Create(st(4.0, "First", true));
        let own = Parts::NAME;
        let foreign = foreign_of(&sent, own);
        // Blender's next full state: its name is written, Unity's move is not.
        let held = st(4.0, "First", false);
        assert_eq!(made_over(&held, &was, &foreign), st(0.0, "First", false));
        // Nothing of its own: the whole full state is another editor's.
        assert_eq!(foreign_of(&sent, Parts::NONE), vec![sent.clone()]);
        // A plain op of a part it last wrote itself is its own.
        assert!(foreign_of(&ChangeOp::Rename("First".into()), own).is_empty());
        assert_eq!(foreign_of(&tr(), own), vec![tr()]);
    }

    #[test]
    fn a_mesh_edit_is_not_stale_against_another_editors_move() {
        let mut w = LastWrites::default();
        w.record(Parts::written_by(&tr()), 41, ("unity", "unity"), [0; 3], Author::Person);
        let mesh = ChangeOp::Mesh("a".repeat(64));
        assert!(w.newer_by_other(Parts::stale_against(&mesh), 40, "blender").is_none());
        let mat = ChangeOp::Material(Some(crate::sync::Material {
            base_color: [1.0; 4],
            metallic: 0.0,
            roughness: 0.5,
            emission: [0.0; 3],
        }));
        assert!(w.newer_by_other(Parts::stale_against(&mat), 40, "blender").is_none());
    }

    #[test]
    fn a_change_is_stale_against_another_editors_write_of_the_same_part() {
        let mut w = LastWrites::default();
        w.record(Parts::MESH, 41, ("unity", "unity"), [0; 3], Author::Person);
        let mesh = ChangeOp::Mesh("a".repeat(64));
        let by = w.newer_by_other(Parts::stale_against(&mesh), 40, "blender").unwrap();
        assert_eq!((by.seq, by.client.as_str()), (41, "unity"));
        // Made over that write (base_seq at or after it), or by the same editor: not stale.
        assert!(w.newer_by_other(Parts::stale_against(&mesh), 41, "blender").is_none());
        assert!(w.newer_by_other(Parts::stale_against(&mesh), 40, "unity").is_none());
    }

    #[test]
    fn a_persons_change_is_never_stale_against_automations_write_its_delete_included() {
        let reparent = Parts::stale_against(&ChangeOp::Reparent(None));
        let sight = (40, [0; 3]);
        // An agent session's move, and an editor's sent as automation.
        for (who, author) in [(("agent-1", "agent"), Author::Person), (("unity", "unity"), Author::Automation)] {
            let mut w = LastWrites::default();
            w.record(Parts::POSE, 41, who, [0; 3], author);
            assert!(w.newer_unseen_by_other_for(reparent, sight, "blender", Author::Person).is_none(), "{who:?}");
            // Automation's own change still is (it never overrides what it did not see).
            assert!(w.newer_unseen_by_other_for(reparent, sight, "blender", Author::Automation).is_some());
            assert!(w.newer_unseen_by_other(reparent, 40, "blender", [0; 3]).is_some());
        }
        // A person's and automation's change in one batch of one editor: a person's write.
        let mut both = LastWrites::default();
        both.record(Parts::POSE, 41, ("unity", "unity"), [0; 3], Author::Automation);
        both.record(Parts::POSE, 41, ("unity", "unity"), [0; 3], Author::Person);
        assert!(both.newer_unseen_by_other_for(reparent, sight, "blender", Author::Person).is_some());
        // An agent's delete neither: the person's edit brings the object back (in flight, the
        // person's editor does not apply it and the batch rolls back, docs/PROTOCOL.md §6.4).
        let moved = Parts::stale_against(&tr());
        let mut gone = LastWrites::default();
        gone.record(Parts::written_by(&ChangeOp::Delete), 41, ("agent-1", "agent"), [0; 3], Author::Automation);
        assert!(gone.newer_unseen_by_other_for(moved, sight, "blender", Author::Person).is_none());
        assert!(gone.newer_unseen_by_other_for(moved, sight, "blender", Author::Automation).is_some());
        // Another person's delete is: the object is gone, a conflict the delete won.
        let mut deleted = LastWrites::default();
        deleted.record(Parts::written_by(&ChangeOp::Delete), 41, ("unity", "unity"), [0; 3], Author::Person);
        assert!(deleted.newer_unseen_by_other_for(moved, sight, "blender", Author::Person).is_some());
    }

    #[test]
    fn reparent_depends_on_the_pose_and_create_delete_on_everything() {
        let mut w = LastWrites::default();
        w.record(Parts::POSE, 41, ("unity", "unity"), [0; 3], Author::Person);
        assert!(w.newer_by_other(Parts::stale_against(&ChangeOp::Reparent(None)), 40, "blender").is_some());
        assert!(w.newer_by_other(Parts::stale_against(&ChangeOp::Delete), 40, "blender").is_some());
        let mut x = LastWrites::default();
        x.record(Parts::NAME, 41, ("unity", "unity"), [0; 3], Author::Person);
        assert!(x.newer_by_other(Parts::stale_against(&ChangeOp::Reparent(None)), 40, "blender").is_none());
        // Another editor's create or delete writes every part.
        let mut y = LastWrites::default();
        y.record(Parts::written_by(&ChangeOp::Delete), 41, ("unity", "unity"), [0; 3], Author::Person);
        assert!(y.newer_by_other(Parts::stale_against(&ChangeOp::Mesh("b".repeat(64))), 40, "blender").is_some());
        // A move of an object another editor deleted since is stale; a move beside another
        // editor's create, move or rename is rebased, not stale.
        assert!(y.newer_by_other(Parts::stale_against(&tr()), 40, "blender").is_some());
        let mut made = LastWrites::default();
        made.record(Parts::written_by(&ChangeOp::Delete), 30, ("unity", "unity"), [0; 3], Author::Person);
        made.record(Parts::ALL, 41, ("unity", "unity"), [0; 3], Author::Person); // what a `create` writes
        assert!(made.newer_by_other(Parts::stale_against(&tr()), 40, "blender").is_none());
        // Deleted and made again (a person's undo of the delete) after the move's base: the
        // object is there, the move is rebased over the create (not stale); a mesh edit made
        // before both is stale against the create.
        let mut undone = LastWrites::default();
        undone.record(Parts::written_by(&ChangeOp::Delete), 41, ("unity", "unity"), [0; 3], Author::Person);
        undone.record(Parts::ALL, 42, ("unity", "unity"), [0; 3], Author::Person);
        assert!(undone.newer_by_other(Parts::stale_against(&tr()), 40, "blender").is_none());
        assert_eq!(undone.newer_by_other(Parts::written_by(&tr()), 40, "blender").unwrap().seq, 42);
        let mesh = ChangeOp::Mesh("c".repeat(64));
        assert_eq!(undone.newer_by_other(Parts::stale_against(&mesh), 40, "blender").unwrap().seq, 42);
        assert!(w.newer_by_other(Parts::stale_against(&tr()), 40, "blender").is_none());
        assert!(x.newer_by_other(Parts::stale_against(&ChangeOp::Rename("n".into())), 40, "blender").is_none());
    }

    #[test]
    fn the_last_writer_of_each_part_is_kept_and_entries_stay_few() {
        let mut w = LastWrites::default();
        w.record(Parts::ALL, 10, ("blender", "blender"), [0; 3], Author::Person);
        w.record(Parts::POSE, 11, ("unity", "unity"), [0; 3], Author::Person);
        w.record(Parts::MESH, 12, ("unity", "unity"), [0; 3], Author::Person);
        w.record(Parts::POSE, 13, ("blender", "blender"), [0; 3], Author::Person);
        assert_eq!(w.0.len(), 3, "{w:?}");
        let mesh = ChangeOp::Mesh("a".repeat(64));
        assert_eq!(w.newer_by_other(Parts::stale_against(&mesh), 11, "blender").unwrap().seq, 12);
        // Blender wrote the pose last: Unity's reparent from base 12 is stale against it.
        assert_eq!(w.newer_by_other(Parts::stale_against(&ChangeOp::Reparent(None)), 12, "unity").unwrap().seq, 13);
        let mut all = LastWrites::default();
        for s in 0..100 {
            all.record(Parts::POSE, s, (if s % 2 == 0 { "a" } else { "b" }, "blender"), [0; 3], Author::Person);
        }
        assert_eq!(all.0.len(), 1);
    }

    #[test]
    fn a_write_its_person_had_in_front_of_them_as_a_live_preview_is_not_missed() {
        // Unity moved the object (mark 7) and committed at seq 41; Blender, at base 40, had
        // applied that move's live preview when its person reparented: made over it, not stale.
        let mut w = LastWrites::default();
        w.record(Parts::POSE, 41, ("unity", "unity"), [7, 0, 0], Author::Person);
        let reparent = Parts::stale_against(&ChangeOp::Reparent(None));
        assert!(w.newer_unseen_by_other(reparent, 40, "blender", [7, 0, 0]).is_none());
        assert!(w.newer_unseen_by_other(reparent, 40, "blender", [8, 0, 0]).is_none());
        assert_eq!(w.newer_unseen_by_other(reparent, 40, "blender", [6, 0, 0]).unwrap().seq, 41, "an earlier preview");
        assert_eq!(w.newer_unseen_by_other(reparent, 40, "blender", [0, 7, 7]).unwrap().seq, 41, "another op's");
        // A write of a part no preview carries (the parent) is never covered.
        let mut x = LastWrites::default();
        x.record(Parts::PARENT.union(Parts::POSE), 41, ("unity", "unity"), [7, 0, 0], Author::Person);
        assert!(x.newer_unseen_by_other(reparent, 40, "blender", [9, 9, 9]).is_some());
        // Marks merge per part when one batch writes several parts of one editor.
        let mut y = LastWrites::default();
        y.record(Parts::POSE, 41, ("unity", "unity"), [7, 0, 0], Author::Person);
        y.record(Parts::NAME, 41, ("unity", "unity"), [0, 8, 0], Author::Person);
        assert!(y.newer_unseen_by_other(Parts::POSE.union(Parts::NAME), 40, "blender", [7, 8, 0]).is_none());
        assert!(y.newer_unseen_by_other(Parts::POSE.union(Parts::NAME), 40, "blender", [7, 7, 0]).is_some());
    }

    /// A writer the record already names for all its parts is left out of a state STEP (a
    /// drag's later batches); another writer, new parts, a write after a delete, or a write
    /// of the parent are kept.
    #[test]
    fn a_state_step_names_only_writers_the_record_does_not_already_name() {
        let by = |c: &str| (c.to_string(), "unity".to_string());
        let mut committed = LastWrites::default();
        let (c, e) = by("u");
        committed.record(Parts::POSE.union(Parts::NAME), 5, (&c, &e), [0; 3], Author::Person);
        let mut batch = LastWrites::default();
        batch.record(Parts::POSE, 9, (&c, &e), [0; 3], Author::Person);
        assert!(batch.to_registry_over(Some(&committed)).is_empty(), "the same writer of the pose");
        assert_eq!(batch.to_registry_over(None).len(), 1, "nothing committed known");
        let mut more = LastWrites::default();
        more.record(Parts::POSE.union(Parts::PARENT), 9, (&c, &e), [0; 3], Author::Person);
        assert_eq!(more.to_registry_over(Some(&committed))[0].parts, vec![Part::Pose, Part::Parent]);
        let (b, be) = by("b");
        let mut other = LastWrites::default();
        other.record(Parts::POSE, 9, (&b, &be), [0; 3], Author::Person);
        assert_eq!(other.to_registry_over(Some(&committed)).len(), 1, "another writer");
        let mut deleted = LastWrites::default();
        deleted.record(Parts::written_by(&ChangeOp::Delete), 7, (&c, &e), [0; 3], Author::Person);
        let mut again = LastWrites::default();
        again.record(Parts::ALL, 9, (&c, &e), [0; 3], Author::Person);
        assert_eq!(again.to_registry_over(Some(&deleted)).len(), 1, "a create after its own delete");
        // A write of the parent is always named, also by the writer of every part (its create).
        let mut made = LastWrites::default();
        made.record(Parts::ALL, 5, (&c, &e), [0; 3], Author::Person);
        let mut reparent = LastWrites::default();
        reparent.record(Parts::PARENT, 9, (&c, &e), [0; 3], Author::Person);
        assert_eq!(reparent.to_registry_over(Some(&made))[0].parts, vec![Part::Parent], "a parent cycle reads its seq");
    }
}
