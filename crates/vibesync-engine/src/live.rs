//! Pipeline step `forward`, live half (docs/PROTOCOL.md §6.3 "Live previews"): fast-path
//! changes (transform, rename, visibility) go to the other editors as soon as they are
//! admitted, before the window's batch carries and verifies them.
//!
//! [`Throttle`] bounds what a receiver is sent: at most one frame per key (receiver, uuid,
//! op) per `interval_ms`. A change offered sooner waits as the key's *pending* value, which
//! later offers replace (the latest value wins); it is delivered when the interval has passed
//! (the trailing value is never lost), unless [`Throttle::cancel_uuid`] drops it because the
//! uuid's batch (or a structural change of it) now carries the state.
//!
//! [`Delivered`] remembers which marks (§6.3 `mark`: a change's admission number in its
//! project) each receiver was sent, so that the `seen` mark of that receiver's next change
//! tells which of the other editors' changes its person had in front of them ([`Sight`]):
//! a change made after its editor applied the other editor's value as a live preview is no
//! conflict with it (§6.2), nor stale against it (§6.1).
//!
//! Pure: time is passed in; the daemon's actor asks [`Throttle::next_due`] for its timer.

use crate::fast::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One pending value of a key, and its heap generation (older heap entries are stale).
struct Pending<P> {
    generation: u64,
    payload: P,
}

/// A timer-queue entry: (due, generation, uuid, receiver, op).
type Due<R> = Reverse<(u64, u64, String, R, &'static str)>;

/// One uuid's (receiver, op) → value: a handful of entries (receivers × fast-path ops),
/// searched in place, so an offer neither hashes nor copies its receiver.
type PerKey<R, V> = Vec<(R, &'static str, V)>;

fn slot<'a, R: Eq, V>(m: &'a mut PerKey<R, V>, r: &R, op: &str) -> Option<&'a mut V> {
    m.iter_mut().find(|(k, o, _)| k == r && *o == op).map(|(_, _, v)| v)
}

fn get<'a, R: Eq, V>(m: &'a PerKey<R, V>, r: &R, op: &str) -> Option<&'a V> {
    m.iter().find(|(k, o, _)| k == r && *o == op).map(|(_, _, v)| v)
}

/// Per-key rate limit with "latest wins, trailing value always delivered".
/// `R`: the receiver; keys are `(R, uuid, op)`; `P`: what is sent.
pub struct Throttle<R, P> {
    interval_ms: u64,
    /// uuid → (receiver, op) → when a frame was last sent.
    last: HashMap<String, PerKey<R, u64>>,
    /// uuid → (receiver, op) → the value waiting for its interval.
    pending: HashMap<String, PerKey<R, Pending<P>>>,
    /// (due, generation, uuid, receiver, op): the timer queue, entries checked lazily.
    heap: BinaryHeap<Due<R>>,
    generation: u64,
    offers: u64,
}

impl<R: Clone + Eq + Ord, P> Throttle<R, P> {
    /// `interval_ms` 0: every offer is sent at once.
    pub fn new(interval_ms: u64) -> Self {
        Throttle {
            interval_ms,
            last: HashMap::default(),
            pending: HashMap::default(),
            heap: BinaryHeap::new(),
            generation: 0,
            offers: 0,
        }
    }

    /// A new value for `(receiver, uuid, op)` at `now_ms`. `Some(payload)`: send it now.
    /// `None`: it waits (replacing any value already waiting) until the interval has passed.
    pub fn offer(&mut self, now_ms: u64, receiver: &R, uuid: &str, op: &'static str, payload: P) -> Option<P> {
        self.offers += 1;
        if self.offers.is_multiple_of(4096) {
            self.prune(now_ms);
        }
        if let Some(p) = self.pending.get_mut(uuid).and_then(|m| slot(m, receiver, op)) {
            p.payload = payload; // the latest value wins; its due time stands
            return None;
        }
        let last = self.last.get(uuid).and_then(|m| get(m, receiver, op)).copied();
        match last {
            Some(t) if now_ms < t.saturating_add(self.interval_ms) => {
                let due = t + self.interval_ms;
                self.generation += 1;
                let generation = self.generation;
                self.heap.push(Reverse((due, generation, uuid.to_string(), receiver.clone(), op)));
                let waiting = (receiver.clone(), op, Pending { generation, payload });
                match self.pending.get_mut(uuid) {
                    Some(m) => m.push(waiting),
                    None => {
                        self.pending.insert(uuid.to_string(), vec![waiting]);
                    }
                }
                None
            }
            _ => {
                self.sent(now_ms, receiver, uuid, op);
                Some(payload)
            }
        }
    }

    /// Record a send of `(receiver, uuid, op)` at `now_ms`.
    fn sent(&mut self, now_ms: u64, receiver: &R, uuid: &str, op: &'static str) {
        match self.last.get_mut(uuid) {
            Some(m) => match slot(m, receiver, op) {
                Some(t) => *t = now_ms,
                None => m.push((receiver.clone(), op, now_ms)),
            },
            None => {
                self.last.insert(uuid.to_string(), vec![(receiver.clone(), op, now_ms)]);
            }
        }
    }

    /// When the earliest waiting value is due (None: nothing waits).
    pub fn next_due(&mut self) -> Option<u64> {
        while let Some(Reverse((due, generation, uuid, r, op))) = self.heap.peek() {
            let live = self.pending.get(uuid).and_then(|m| get(m, r, op)).is_some_and(|p| p.generation == *generation);
            if live {
                return Some(*due);
            }
            self.heap.pop();
        }
        None
    }

    /// Every waiting value due at `now_ms`, in due order: (receiver, uuid, payload). Each
    /// counts as sent now.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<(R, String, P)> {
        let mut out = Vec::new();
        while let Some(due) = self.next_due() {
            if due > now_ms {
                break;
            }
            let Some(Reverse((_, _, uuid, r, op))) = self.heap.pop() else { break };
            let Some(m) = self.pending.get_mut(&uuid) else { continue };
            let Some(i) = m.iter().position(|(k, o, _)| *k == r && *o == op) else { continue };
            let (_, _, p) = m.swap_remove(i);
            if m.is_empty() {
                self.pending.remove(&uuid);
            }
            self.sent(now_ms, &r, &uuid, op);
            out.push((r, uuid, p.payload));
        }
        out
    }

    /// Drop every value waiting for `uuid` (its batch, or a structural change, now carries
    /// its state to every receiver). Returns how many were dropped.
    pub fn cancel_uuid(&mut self, uuid: &str) -> usize {
        self.pending.remove(uuid).map_or(0, |m| m.len())
    }

    /// Values waiting, over all keys.
    pub fn pending_len(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Forget send times older than the interval (they no longer hold anything back).
    fn prune(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.interval_ms);
        self.last.retain(|_, m| {
            m.retain(|(_, _, t)| *t > horizon);
            !m.is_empty()
        });
    }
}

/// The fast-path ops a live frame carries, in [`Sight::saw`]'s order.
pub const LIVE_OPS: [&str; 3] = ["transform", "rename", "visibility"];

/// Where `op` (a fast-path op's name) sits in [`Sight::saw`]; None for slow-path ops.
pub fn live_op_index(op: &str) -> Option<usize> {
    LIVE_OPS.iter().position(|o| *o == op)
}

/// A change's place among its project's live previews (docs/PROTOCOL.md §6.2, §6.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sight {
    /// Its admission mark (0: none — e.g. built by the daemon itself).
    pub mark: u64,
    /// Per fast-path op ([`LIVE_OPS`]): the newest mark of that op's live frames of the uuid
    /// its editor had applied when it made the change (0: none).
    pub saw: [u64; 3],
}

impl Sight {
    /// Had this change's editor applied a live frame carrying another editor's change of the
    /// same uuid with op `op` and mark `mark` (or a later value of that op)?
    pub fn sees(&self, op: &str, mark: u64) -> bool {
        mark != 0 && live_op_index(op).is_some_and(|i| self.saw[i] >= mark)
    }

    /// Its own mark in the slot of its op (`op`, its op's name), for [`crate::stale::Write`].
    pub fn own_marks(&self, op: &str) -> [u64; 3] {
        let mut m = [0; 3];
        if let Some(i) = live_op_index(op) {
            m[i] = self.mark;
        }
        m
    }
}

/// One delivered live frame: receiver, op index, mark, when.
type Sent<R> = (R, u8, u64, u64);

/// The live frames each receiver was sent, per uuid (the last [`Delivered::KEEP`] of each
/// uuid, none older than [`Delivered::MAX_AGE_MS`]): what a receiver's `seen` mark covers.
pub struct Delivered<R> {
    per: HashMap<String, Vec<Sent<R>>>,
    records: u64,
}

impl<R> Default for Delivered<R> {
    fn default() -> Self {
        Delivered { per: HashMap::default(), records: 0 }
    }
}

impl<R: Eq> Delivered<R> {
    /// Frames kept per uuid (over all receivers and ops).
    pub const KEEP: usize = 32;
    /// A change is made within moments of the preview its person saw: older frames are
    /// forgotten (their batch has long brought the state, and `base_seq` says so).
    pub const MAX_AGE_MS: u64 = 60_000;

    /// `receiver` was sent the live frame of `uuid`, op `op`, mark `mark` at `now_ms`.
    pub fn record(&mut self, now_ms: u64, receiver: R, uuid: &str, op: &str, mark: u64) {
        let Some(i) = live_op_index(op) else { return };
        self.records += 1;
        if self.records.is_multiple_of(4096) {
            let horizon = now_ms.saturating_sub(Self::MAX_AGE_MS);
            self.per.retain(|_, v| {
                v.retain(|e| e.3 > horizon);
                !v.is_empty()
            });
        }
        let v = match self.per.get_mut(uuid) {
            Some(v) => v,
            None => self.per.entry(uuid.to_string()).or_default(),
        };
        if v.len() >= Self::KEEP {
            v.remove(0);
        }
        v.push((receiver, i as u8, mark, now_ms));
    }

    /// What a change of `uuid` from `receiver` whose `seen` mark is `seen` had in front of it:
    /// per op, the newest mark at or below `seen` that `receiver` was sent.
    pub fn saw(&self, receiver: &R, uuid: &str, seen: u64) -> [u64; 3] {
        let mut out = [0; 3];
        for (r, i, m, _) in self.per.get(uuid).into_iter().flatten() {
            if r == receiver && *m <= seen {
                let slot = &mut out[*i as usize];
                *slot = (*slot).max(*m);
            }
        }
        out
    }

    /// Forget a receiver (its session ended: its marks meant something on that connection only).
    pub fn forget(&mut self, receiver: &R) {
        self.per.retain(|_, v| {
            v.retain(|e| &e.0 != receiver);
            !v.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seen_mark_covers_what_the_receiver_was_sent_up_to_it_per_op() {
        let mut d: Delivered<&str> = Delivered::default();
        d.record(0, "b", U, "transform", 3);
        d.record(1, "b", U, "rename", 4);
        d.record(2, "c", U, "transform", 5);
        d.record(3, "b", U, "transform", 7);
        // "b" applied up to mark 4: transform 3 and rename 4; not 7 (still on its way), and
        // never what "c" was sent.
        assert_eq!(d.saw(&"b", U, 4), [3, 4, 0]);
        assert_eq!(d.saw(&"b", U, 7), [7, 4, 0]);
        assert_eq!(d.saw(&"c", U, 9), [5, 0, 0]);
        assert_eq!(d.saw(&"b", V, 9), [0, 0, 0]);
        let s = Sight { mark: 9, saw: d.saw(&"b", U, 4) };
        assert!(s.sees("transform", 3) && s.sees("rename", 4));
        assert!(!s.sees("transform", 5), "a later transform of another editor was not in front of it");
        assert!(!s.sees("reparent", 1), "slow-path changes are never previewed");
        assert!(!s.sees("transform", 0), "a change without a mark is never seen");
        d.forget(&"b");
        assert_eq!(d.saw(&"b", U, 9), [0, 0, 0]);
        assert_eq!(d.saw(&"c", U, 9), [5, 0, 0]);
    }

    const U: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    const V: &str = "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    #[test]
    fn first_value_goes_at_once_later_ones_wait_and_the_latest_wins() {
        let mut t: Throttle<&str, u32> = Throttle::new(16);
        assert_eq!(t.offer(100, &"b", U, "transform", 1), Some(1));
        assert_eq!(t.offer(101, &"b", U, "transform", 2), None);
        assert_eq!(t.offer(105, &"b", U, "transform", 3), None);
        assert_eq!(t.next_due(), Some(116));
        assert!(t.take_due(115).is_empty(), "not before its interval");
        assert_eq!(t.take_due(116), vec![("b", U.to_string(), 3)], "the trailing value, the latest");
        assert_eq!(t.next_due(), None);
        // The trailing send counts: the next offer within 16 ms of it waits again.
        assert_eq!(t.offer(120, &"b", U, "transform", 4), None);
        assert_eq!(t.next_due(), Some(132));
        assert_eq!(t.offer(140, &"b", V, "transform", 9), Some(9), "another uuid has its own interval");
    }

    #[test]
    fn keys_are_per_receiver_and_op() {
        let mut t: Throttle<&str, u32> = Throttle::new(16);
        assert_eq!(t.offer(0, &"b", U, "transform", 1), Some(1));
        assert_eq!(t.offer(1, &"c", U, "transform", 1), Some(1));
        assert_eq!(t.offer(2, &"b", U, "rename", 5), Some(5));
        assert_eq!(t.offer(3, &"b", U, "transform", 2), None);
        assert_eq!(t.pending_len(), 1);
    }

    #[test]
    fn a_burst_sends_few_frames_and_ends_on_the_last_value() {
        // 1,000 changes 1 ms apart on one object: ~1 frame per 16 ms, the last value delivered.
        let mut t: Throttle<&str, u32> = Throttle::new(16);
        let mut sent = Vec::new();
        for i in 0..1000u64 {
            for (_, _, p) in t.take_due(i) {
                sent.push(p);
            }
            if let Some(p) = t.offer(i, &"b", U, "transform", i as u32) {
                sent.push(p);
            }
        }
        let end = t.next_due().expect("the last value waits");
        sent.extend(t.take_due(end).into_iter().map(|(_, _, p)| p));
        assert_eq!(sent.last(), Some(&999));
        assert!(sent.len() <= 1000 / 16 + 2, "{} frames", sent.len());
        assert!(sent.windows(2).all(|w| w[0] < w[1]), "never an older value after a newer one");
    }

    #[test]
    fn cancel_drops_waiting_values_of_a_uuid_only() {
        let mut t: Throttle<&str, u32> = Throttle::new(16);
        t.offer(0, &"b", U, "transform", 1);
        t.offer(0, &"b", V, "transform", 1);
        t.offer(1, &"b", U, "transform", 2);
        t.offer(1, &"b", V, "transform", 2);
        assert_eq!(t.cancel_uuid(U), 1);
        assert_eq!(t.take_due(100), vec![("b", V.to_string(), 2)]);
        assert_eq!(t.next_due(), None);
        // A cancelled key starts a fresh wait after its last send.
        assert_eq!(t.offer(5, &"b", U, "transform", 3), None);
        assert_eq!(t.take_due(16), vec![("b", U.to_string(), 3)]);
    }

    #[test]
    fn zero_interval_never_waits() {
        let mut t: Throttle<&str, u32> = Throttle::new(0);
        for i in 0..10 {
            assert_eq!(t.offer(7, &"b", U, "transform", i), Some(i));
        }
        assert_eq!(t.next_due(), None);
    }
}
