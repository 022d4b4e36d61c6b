//! Automation's changes held while people edit (docs/PROTOCOL.md §6.7, "Automation waits
//! for people"), in arrival order, with how many wait per uuid: every person's change asks
//! whether automation's change of its object is held, and the answer must not read every
//! held change (a person's drag of K objects while an agent's N changes wait would be
//! O(N·K)). Pure: no I/O.

use crate::fast::HashMap;
use crate::sync::Queued;

use super::Editor;

#[derive(Debug, Default)]
pub(super) struct Held {
    list: Vec<Queued<Editor>>,
    per_uuid: HashMap<String, usize>,
}

impl Held {
    pub(super) fn push(&mut self, q: Queued<Editor>) {
        *self.per_uuid.entry(q.change.uuid.clone()).or_default() += 1;
        self.list.push(q);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether a change of `uuid` is held (O(1)).
    pub(super) fn holds(&self, uuid: &str) -> bool {
        self.per_uuid.contains_key(uuid)
    }

    /// The held changes of `uuid`, in arrival order (reads the list only when one is held).
    pub(super) fn of<'h>(&'h self, uuid: &'h str) -> impl Iterator<Item = &'h Queued<Editor>> + 'h {
        let held = self.holds(uuid);
        self.list.iter().filter(move |q| held && q.change.uuid == uuid)
    }

    /// Every held change, in arrival order; none is held after.
    pub(super) fn take(&mut self) -> Vec<Queued<Editor>> {
        self.per_uuid.clear();
        std::mem::take(&mut self.list)
    }

    /// Remove and return the held changes `f` names, in arrival order; the rest stay, in
    /// order.
    pub(super) fn take_where(&mut self, mut f: impl FnMut(&Queued<Editor>) -> bool) -> Vec<Queued<Editor>> {
        let (out, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.list).into_iter().partition(|q| f(q));
        for q in &out {
            if let Some(n) = self.per_uuid.get_mut(&q.change.uuid) {
                *n -= 1;
                if *n == 0 {
                    self.per_uuid.remove(&q.change.uuid);
                }
            }
        }
        self.list = keep;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Author, Change, ChangeOp};

    fn editor(n: u8) -> Editor {
        Editor {
            session_id: format!("s{n}"),
            editor: vibesync_protocol::ClientKind::Blender,
            client_id: format!("c{n}"),
            unit_scale: 1.0,
        }
    }

    fn q(n: u8, uuid: &str) -> Queued<Editor> {
        Queued::new(editor(n), Author::Automation, Change { uuid: uuid.into(), op: ChangeOp::Rename(uuid.into()) })
    }

    #[test]
    fn holds_and_of_follow_push_take_where_and_take() {
        let mut h = Held::default();
        assert!(h.is_empty() && !h.holds("a"));
        h.push(q(1, "a"));
        h.push(q(2, "b"));
        h.push(q(2, "a"));
        assert_eq!((h.len(), h.holds("a"), h.holds("b"), h.holds("c")), (3, true, true, false));
        assert_eq!(h.of("a").map(|q| q.origin.session_id.clone()).collect::<Vec<_>>(), ["s1", "s2"]);
        let gone = h.take_where(|q| q.origin.session_id == "s1");
        assert_eq!(gone.len(), 1);
        assert!(h.holds("a"), "s2's change of a still waits");
        let gone = h.take_where(|q| q.change.uuid == "a");
        assert_eq!(gone.len(), 1);
        assert!(!h.holds("a") && h.holds("b"));
        assert_eq!(h.of("a").count(), 0);
        assert_eq!(h.take().len(), 1);
        assert!(h.is_empty() && !h.holds("b"));
    }
}
