//! Which objects the registry holds under each parent, for one project: what a delete may
//! leave under the object it deletes (docs/PROTOCOL.md §6.1, "Objects left under a deleted
//! parent"), answered without a pass over the registry per delete.
//!
//! Built from one pass over the project's live records the first time a delete asks, then
//! kept by the sync from what it commits (`Project::note_committed`) and tombstones. Only a
//! hint: every uuid it names is read back from the registry before anything is done with it
//! (`Project::left_under`), so an entry it still holds after another writer changed the
//! record is dropped there, never acted on. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::fast::HashMap;

/// parent uuid → the uuids under it, and each child's parent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Children {
    under: HashMap<String, BTreeSet<String>>,
    parent_of: HashMap<String, String>,
}

impl Children {
    /// From (uuid, its committed parent) pairs.
    pub fn from_parents<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Children {
        let mut c = Children::default();
        for (u, p) in pairs {
            c.set(u, p);
        }
        c
    }

    /// `uuid` is now under `parent` (`None`: a root).
    pub fn set(&mut self, uuid: &str, parent: Option<&str>) {
        if self.parent_of.get(uuid).map(String::as_str) == parent {
            return;
        }
        self.remove(uuid);
        if let Some(p) = parent {
            self.under.entry(p.to_string()).or_default().insert(uuid.to_string());
            self.parent_of.insert(uuid.to_string(), p.to_string());
        }
    }

    /// `uuid` is gone (deleted): it is under nothing. What was under it stays listed under it
    /// — left there, until the sync moves it (`set`).
    pub fn remove(&mut self, uuid: &str) {
        if let Some(p) = self.parent_of.remove(uuid) {
            if let Some(set) = self.under.get_mut(&p) {
                set.remove(uuid);
                if set.is_empty() {
                    self.under.remove(&p);
                }
            }
        }
    }

    /// Every uuid something is under, sorted.
    pub fn parents(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.under.keys().map(String::as_str).collect();
        out.sort_unstable();
        out
    }

    /// The uuids under any of `parents`, each with its parent, sorted by uuid.
    pub fn under_any<'p>(&self, parents: impl IntoIterator<Item = &'p str>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for p in parents {
            for c in self.under.get(p).into_iter().flatten() {
                out.insert(c.clone(), p.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_follow_their_parent_and_stay_listed_under_a_deleted_one() {
        let mut c = Children::from_parents([("x", Some("a")), ("y", Some("a")), ("z", None), ("a", Some("r"))]);
        assert_eq!(c.under_any(["a"]).keys().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(c.parents(), ["a", "r"]);
        c.set("y", Some("b"));
        c.set("z", Some("a"));
        assert_eq!(c.under_any(["a"]).keys().collect::<Vec<_>>(), ["x", "z"]);
        assert_eq!(c.under_any(["a", "b"]).get("y").map(String::as_str), Some("b"));
        c.remove("a"); // deleted: its children are still under it, it is no longer under r
        assert_eq!(c.under_any(["a"]).len(), 2);
        assert!(c.under_any(["r"]).is_empty());
        c.set("x", None);
        c.remove("z");
        assert!(c.under_any(["a"]).is_empty());
        assert_eq!(c, Children::from_parents([("y", Some("b"))]));
    }
}
