//! Pipeline step `queue` (docs/PROTOCOL.md §6.2 "Pipelining"): where an admitted change
//! waits for its batch, and which waiting changes may start a batch while others are in
//! flight.
//!
//! Two windows. The **main** window holds everything by default; it becomes a batch only
//! when no batch of the project is in flight (its batch may be slow, and slow batches keep
//! one order for the whole project). While a **slow** batch is in flight, a fast-path change
//! (transform, rename, visibility) whose uuid is *free* — not in that slow batch, no
//! ancestor in it, not degraded to the slow path by the gate, and no change of it already
//! waiting in the main window — waits in the **pipelined** window instead. That window
//! becomes a fast batch when it is due and no *fast* batch is in flight, even though the slow
//! batch still is: at most one slow and one fast batch per project are in flight, their uuids
//! disjoint.
//!
//! Per-uuid order: a uuid's changes wait in one window at a time. A change that must wait in
//! the main window takes the uuid's changes waiting in the pipelined window with it (in
//! order, so changes of one uuid from two editors are decided in one batch, as in a window
//! without pipelining), and a uuid with a change in the main window stays there; when nothing
//! is in flight both windows close together. So the
//! batches carry each uuid's changes in arrival order, and a uuid is in at most one batch in
//! flight.
//!
//! Pure: time is passed in; the actor says what is in flight ([`Flight`]) and whether a
//! change is held back by the slow batch ([`held_back`]).

use crate::fast::HashSet;

use crate::sync::{BatchLimit, Path, Queued, Window};

/// What is in flight for a project, as the queue needs to know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flight {
    /// A slow batch is in flight.
    pub slow: bool,
    /// A fast batch is in flight.
    pub fast: bool,
    /// Something waits until no batch is in flight (a replay for a session that joined
    /// meanwhile, which must get its state before it is made a participant of a new batch):
    /// no pipelined batch starts.
    pub drain: bool,
}

impl Flight {
    /// No batch in flight.
    pub fn idle(&self) -> bool {
        !self.slow && !self.fast
    }
}

/// The window a change waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Becomes a batch when no batch is in flight.
    Main,
    /// Becomes a fast batch beside a slow batch in flight.
    Pipelined,
}

/// Whether `uuid` must wait for the slow batch in flight: it, or an ancestor on its
/// authoritative parent chain (`parent_of`), is one of that batch's uuids (`slow_uuids`).
/// Bounded like [`crate::sync::parent_cycle`]: a chain longer than 1,000 is held back.
pub fn held_back(uuid: &str, slow_uuids: &HashSet<String>, mut parent_of: impl FnMut(&str) -> Option<String>) -> bool {
    let mut cur = uuid.to_string();
    for _ in 0..1_000 {
        if slow_uuids.contains(&cur) {
            return true;
        }
        match parent_of(&cur) {
            Some(p) => cur = p,
            None => return false,
        }
    }
    true
}

/// The two windows of one project (see the module documentation).
#[derive(Debug)]
pub struct Queue<S> {
    main: Window<S>,
    pipelined: Window<S>,
    /// The most one batch carries; the rest waits for the next batch, in order.
    limit: BatchLimit,
}

impl<S: Clone + PartialEq> Queue<S> {
    pub fn new(window_ms: u64, limit: BatchLimit) -> Self {
        Queue { main: Window::new(window_ms), pipelined: Window::new(window_ms), limit }
    }

    /// Queue an admitted change. `slow_in_flight`: a slow batch of the project is in flight;
    /// `held_back`: the change must wait for it ([`held_back`], or the gate degraded it).
    pub fn push(&mut self, now_ms: u64, q: Queued<S>, slow_in_flight: bool, held_back: bool) -> Lane {
        let free =
            slow_in_flight && !held_back && q.change.op.path() == Path::Fast && !self.main.has_pending(&q.change.uuid);
        if free {
            self.pipelined.push(now_ms, q);
            Lane::Pipelined
        } else {
            // The uuid's earlier changes waiting in the pipelined window go with it: a batch
            // beside the slow one must not carry an older change of a uuid that a later one
            // (e.g. another editor's) waits behind — the two are decided in one batch.
            for earlier in self.pipelined.take_uuid(&q.change.uuid) {
                self.main.push(now_ms, earlier);
            }
            self.main.push(now_ms, q);
            Lane::Main
        }
    }

    /// Whether a change of `uuid` waits in either window.
    pub fn has_pending(&self, uuid: &str) -> bool {
        self.main.has_pending(uuid) || self.pipelined.has_pending(uuid)
    }

    pub fn is_empty(&self) -> bool {
        self.main.is_empty() && self.pipelined.is_empty()
    }

    /// Remove the waiting changes of `uuid` that `drop` picks; the others keep their order (in
    /// the main window, where a uuid's changes that must wait go). Returns the removed ones.
    pub fn remove_of(&mut self, uuid: &str, mut drop: impl FnMut(&Queued<S>) -> bool, now_ms: u64) -> Vec<Queued<S>> {
        if !self.has_pending(uuid) {
            return Vec::new();
        }
        let mut all = self.pipelined.take_uuid(uuid);
        all.extend(self.main.take_uuid(uuid));
        let (gone, keep): (Vec<_>, Vec<_>) = all.into_iter().partition(|q| drop(q));
        for q in keep {
            self.main.push(now_ms, q);
        }
        gone
    }

    /// Every waiting change: the pipelined window's, then the main window's.
    pub fn pending(&self) -> impl Iterator<Item = &Queued<S>> {
        self.pipelined.pending().chain(self.main.pending())
    }

    /// The waiting changes of `uuid`, in arrival order (they wait in one window at a time).
    pub fn pending_of<'q>(&'q self, uuid: &'q str) -> impl Iterator<Item = &'q Queued<S>> + 'q {
        self.pipelined.pending_of(uuid).chain(self.main.pending_of(uuid))
    }

    /// When [`Queue::take_due`] will next return a batch, given what is in flight (None: not
    /// before something in flight ends).
    pub fn deadline(&self, flight: Flight) -> Option<u64> {
        if flight.idle() {
            match (self.main.deadline(), self.pipelined.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        } else if !flight.fast && !flight.drain {
            self.pipelined.deadline()
        } else {
            None
        }
    }

    /// The changes of the next batch, in arrival order per uuid (not coalesced), and the
    /// window they come from: with nothing in flight, both windows (the pipelined one first)
    /// once either is due; beside a slow batch, the pipelined window once it is due. At most
    /// the queue's [`BatchLimit`] (at least one change): what is left stays due, in order.
    pub fn take_due(&mut self, now_ms: u64, flight: Flight) -> Option<(Vec<Queued<S>>, Lane)> {
        let due = self.deadline(flight).is_some_and(|d| now_ms >= d);
        if !due {
            return None;
        }
        let mut out = self.pipelined.take_first(self.limit);
        if flight.idle() {
            // The batch is full when the pipelined window alone filled it: the main window
            // stays due and goes next (the windows hold disjoint uuids, so order per uuid holds).
            if self.pipelined.is_empty() && out.len() < self.limit.changes {
                let room = BatchLimit {
                    changes: self.limit.changes - out.len(),
                    mesh_bytes: self.limit.mesh_bytes.saturating_sub(out.iter().map(|q| q.mesh_bytes).sum()),
                };
                out.extend(self.main.take_first(room));
            }
            Some((out, Lane::Main))
        } else {
            Some((out, Lane::Pipelined))
        }
    }

    /// Take every waiting change of both windows (the pipelined one first), whatever is in
    /// flight.
    pub fn take_all(&mut self) -> Vec<Queued<S>> {
        let mut out = self.pipelined.take_all();
        out.extend(self.main.take_all());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Author, Change, ChangeOp};

    fn q(uuid: &str, op: ChangeOp) -> Queued<&'static str> {
        Queued::new("a", Author::Person, Change { uuid: uuid.into(), op })
    }
    fn tr(uuid: &str, x: f64) -> Queued<&'static str> {
        q(uuid, ChangeOp::Transform { t: [x, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] })
    }
    const SLOW: Flight = Flight { slow: true, fast: false, drain: false };
    const BOTH: Flight = Flight { slow: true, fast: true, drain: false };

    #[test]
    fn nothing_pipelines_without_a_slow_batch_in_flight() {
        let mut qu: Queue<&str> = Queue::new(0, BatchLimit::NONE);
        assert_eq!(qu.push(0, tr("y", 1.0), false, false), Lane::Main);
        assert_eq!(qu.take_due(0, Flight { fast: true, ..Flight::default() }), None, "a fast batch in flight: wait");
        let (got, lane) = qu.take_due(0, Flight::default()).unwrap();
        assert_eq!((got.len(), lane), (1, Lane::Main));
    }

    #[test]
    fn a_free_transform_goes_beside_the_slow_batch_a_held_back_one_waits() {
        let mut qu: Queue<&str> = Queue::new(300, BatchLimit::NONE);
        assert_eq!(qu.push(0, tr("y", 1.0), true, false), Lane::Pipelined);
        assert_eq!(qu.push(0, tr("x", 1.0), true, true), Lane::Main, "x is in the slow batch");
        assert_eq!(qu.push(10, q("z", ChangeOp::Delete), true, false), Lane::Main, "structural: main");
        assert_eq!(qu.push(20, tr("z", 2.0), true, false), Lane::Main, "z has a change in main: stays behind it");
        assert_eq!(qu.push(25, tr("w", 1.0), true, false), Lane::Pipelined);
        assert_eq!(qu.push(26, q("w", ChangeOp::Delete), true, false), Lane::Main, "w's transform moves with it");
        assert!(!qu.pipelined.has_pending("w"));
        assert_eq!(qu.deadline(SLOW), Some(300));
        assert_eq!(qu.take_due(299, SLOW), None);
        let (got, lane) = qu.take_due(300, SLOW).unwrap();
        assert_eq!(lane, Lane::Pipelined);
        assert_eq!(got.iter().map(|q| q.change.uuid.as_str()).collect::<Vec<_>>(), ["y"]);
        assert_eq!(qu.deadline(SLOW), None, "the rest waits for the slow batch");
        assert!(qu.has_pending("x") && qu.has_pending("z") && !qu.has_pending("y"));
        // A second pipelined batch waits for the first.
        assert_eq!(qu.push(400, tr("y", 2.0), true, false), Lane::Pipelined);
        assert_eq!(qu.take_due(10_000, BOTH), None);
        assert_eq!(qu.deadline(Flight { drain: true, ..SLOW }), None, "a replay waits: nothing new starts");
        // Nothing in flight: both windows, pipelined first.
        let (got, lane) = qu.take_due(10_000, Flight::default()).unwrap();
        assert_eq!(lane, Lane::Main);
        let order: Vec<(&str, &str)> = got.iter().map(|q| (q.change.uuid.as_str(), q.change.op.name())).collect();
        assert_eq!(
            order,
            [
                ("y", "transform"),
                ("x", "transform"),
                ("z", "delete"),
                ("z", "transform"),
                ("w", "transform"),
                ("w", "delete")
            ]
        );
        assert!(qu.is_empty());
    }

    #[test]
    fn an_object_under_a_parent_in_the_slow_batch_is_held_back() {
        let slow: HashSet<String> = ["p".to_string()].into_iter().collect();
        let parent_of = |u: &str| match u {
            "c" => Some("b".to_string()),
            "b" => Some("p".to_string()),
            _ => None,
        };
        assert!(held_back("c", &slow, parent_of), "grandparent in the slow batch");
        assert!(held_back("p", &slow, parent_of));
        assert!(!held_back("q", &slow, parent_of));
        let looped = |u: &str| Some(if u == "x" { "y" } else { "x" }.to_string());
        assert!(held_back("x", &slow, looped), "a loop is held back, never walked forever");
    }
}

#[cfg(test)]
mod order {
    //! Property: whatever the interleaving of changes, window closes and batch ends, the
    //! batches in flight never share a uuid, at most one slow and one fast are in flight, and
    //! every uuid's changes leave the queue exactly once, in arrival order.

    use crate::fast::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::sync::{batch_path, Author, Change, ChangeOp};

    #[derive(Debug, Clone)]
    enum Ev {
        /// A change of uuid `u`: fast (transform) or slow (mesh).
        Push { u: usize, slow: bool },
        /// Time passes by this many ms, then the actor asks for due batches.
        Tick(u64),
        /// The batch in flight at this index (modulo) ends.
        End(usize),
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            6 => (0..5usize, prop::bool::weighted(0.3)).prop_map(|(u, slow)| Ev::Push { u, slow }),
            3 => (0..4u64).prop_map(Ev::Tick),
            2 => any::<usize>().prop_map(Ev::End),
        ]
    }

    fn change(u: usize, id: u64, slow: bool) -> Queued<()> {
        let op = if slow {
            ChangeOp::Mesh(format!("{id:064}"))
        } else {
            ChangeOp::Transform { t: [id as f64, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] }
        };
        let mut q = Queued::new((), Author::Person, Change { uuid: format!("u{u}"), op });
        q.mesh_bytes = if slow { (id % 5) * 10 } else { 0 };
        q
    }

    fn id_of(q: &Queued<()>) -> u64 {
        match &q.change.op {
            ChangeOp::Mesh(h) => h.parse().unwrap(),
            ChangeOp::Transform { t, .. } => t[0] as u64,
            _ => unreachable!(),
        }
    }

    struct Sim {
        queue: Queue<()>,
        now: u64,
        /// Batches in flight: (path, uuids).
        flight: Vec<(Path, Vec<String>)>,
        /// uuid → ids in the order they left the queue.
        out: HashMap<String, Vec<u64>>,
    }

    impl Sim {
        fn flight(&self) -> Flight {
            Flight {
                slow: self.flight.iter().any(|(p, _)| *p == Path::Slow),
                fast: self.flight.iter().any(|(p, _)| *p == Path::Fast),
                drain: false,
            }
        }

        fn start(&mut self, batch: Vec<Queued<()>>, lane: Lane) {
            let limit = self.queue.limit;
            assert!(!batch.is_empty(), "a due window makes a batch of at least one change");
            assert!(batch.len() <= limit.changes, "{} changes over the limit {}", batch.len(), limit.changes);
            let bytes: u64 = batch.iter().map(|q| q.mesh_bytes).sum();
            let meshes = batch.iter().filter(|q| q.mesh_bytes > 0).count();
            assert!(bytes <= limit.mesh_bytes || meshes == 1, "{bytes} mesh bytes over the limit {}", limit.mesh_bytes);
            let path = batch_path(&batch);
            if lane == Lane::Pipelined {
                assert_eq!(path, Path::Fast, "a pipelined batch is fast");
                assert!(self.flight().slow && !self.flight().fast);
            } else {
                assert!(self.flight().idle(), "the main window waits for every batch in flight");
            }
            let mut uuids: Vec<String> = batch.iter().map(|q| q.change.uuid.clone()).collect();
            uuids.sort();
            uuids.dedup();
            for (_, theirs) in &self.flight {
                assert!(uuids.iter().all(|u| !theirs.contains(u)), "a uuid in two batches in flight");
            }
            for q in &batch {
                self.out.entry(q.change.uuid.clone()).or_default().push(id_of(q));
            }
            if !batch.is_empty() {
                self.flight.push((path, uuids));
            }
            assert!(self.flight.iter().filter(|(p, _)| *p == Path::Slow).count() <= 1);
            assert!(self.flight.iter().filter(|(p, _)| *p == Path::Fast).count() <= 1);
        }

        fn tick(&mut self) {
            while let Some((batch, lane)) = self.queue.take_due(self.now, self.flight()) {
                self.start(batch, lane);
            }
        }
    }

    proptest! {
        #[test]
        fn per_uuid_order_is_kept_and_batches_in_flight_are_disjoint(
            window_ms in 0..3u64,
            changes in prop::option::of(1..6usize),
            mesh_bytes in prop::option::of(1..60u64),
            evs in prop::collection::vec(ev(), 1..200),
        ) {
            // Batches bounded or not (docs/PROTOCOL.md §6.2 "Batch size").
            let limit = BatchLimit {
                changes: changes.unwrap_or(BatchLimit::NONE.changes),
                mesh_bytes: mesh_bytes.unwrap_or(BatchLimit::NONE.mesh_bytes),
            };
            let mut sim = Sim { queue: Queue::new(window_ms, limit), now: 0, flight: Vec::new(), out: HashMap::default() };
            // uuid → (id, slow) in push order.
            let mut pushed: HashMap<String, Vec<(u64, bool)>> = HashMap::default();
            for (id, e) in evs.into_iter().enumerate() {
                match e {
                    Ev::Push { u, slow } => {
                        let q = change(u, id as u64, slow);
                        let slow_uuids: HashSet<String> = sim
                            .flight
                            .iter()
                            .filter(|(p, _)| *p == Path::Slow)
                            .flat_map(|(_, us)| us.iter().cloned())
                            .collect();
                        let held = held_back(&q.change.uuid, &slow_uuids, |_| None);
                        pushed.entry(q.change.uuid.clone()).or_default().push((id as u64, slow));
                        let slow_in_flight = sim.flight().slow;
                        sim.queue.push(sim.now, q, slow_in_flight, held);
                    }
                    Ev::Tick(ms) => sim.now += ms,
                    Ev::End(i) => {
                        if !sim.flight.is_empty() {
                            let n = sim.flight.len();
                            sim.flight.remove(i % n);
                        }
                    }
                }
                sim.tick();
            }
            // Quiet: every batch ends, every window closes (a bounded batch leaves the rest
            // due: one more batch per round).
            for _ in 0..1_000 {
                if sim.queue.is_empty() && sim.flight.is_empty() {
                    break;
                }
                sim.flight.clear();
                sim.now += 10;
                sim.tick();
            }
            prop_assert!(sim.queue.is_empty());
            // Per uuid, the changes leave in push order; the only ones missing are transforms
            // superseded at push by the next change of their uuid, a transform waiting beside
            // them (`Window`); the last change of each uuid always leaves.
            prop_assert_eq!(sim.out.len(), pushed.len());
            for (u, ids) in &pushed {
                let out = &sim.out[u];
                let mut left = out.iter().peekable();
                for (k, (id, slow)) in ids.iter().enumerate() {
                    if left.peek() == Some(&id) {
                        left.next();
                        continue;
                    }
                    let next_is_transform = ids.get(k + 1).is_some_and(|(_, s)| !s);
                    prop_assert!(!slow && next_is_transform, "{} lost change {} (out {:?}, pushed {:?})", u, id, out, ids);
                }
                prop_assert!(left.next().is_none(), "{} out of order: {:?} for {:?}", u, out, ids);
            }
        }
    }
}
