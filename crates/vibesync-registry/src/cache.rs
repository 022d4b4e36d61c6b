//! The decoded live records most recently read or written, so that a record read once per
//! change (the sync path reads each changed uuid's record) is decoded from sled's JSON once,
//! not once per read.
//!
//! # Invariant
//! The cache never returns a value older than the last write that finished before the read
//! began. Every write updates (or clears) the cache once it is applied (held in memory by
//! module `write_behind`, which reads look in first, or in sled), under the writer's turn, and a key leaves the cache only when the whole cache is cleared. A read that missed
//! fills the cache only if its key is still not held and no clear happened since it looked
//! (an epoch number): a write of that key since the miss put the key in the cache (or a
//! clear ended the epoch), so a value read from sled before a concurrent write can never be
//! put back over that write's result. Writes of other keys do not stop the fill (the
//! registrar writes while sessions read). Absent records are cached too (`None`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::entry::Entry;

/// At most this many records are held (≈ 1 KiB each); when full, the cache starts over.
pub(crate) const CAPACITY: usize = 50_000;

#[derive(Default)]
struct Inner {
    /// Shared, so a hit costs a reference count, not a copy of the record and its state.
    map: HashMap<Vec<u8>, Option<Arc<Entry>>>,
    /// Bumped by every clear (keys leave the map only then).
    epoch: u64,
}

impl Inner {
    fn start_over(&mut self) {
        self.epoch += 1;
        self.map.clear();
    }

    fn make_room(&mut self) {
        if self.map.len() >= CAPACITY {
            self.start_over();
        }
    }
}

/// What [`EntryCache::get`] found.
// A transient return value, moved once: boxing the hit would cost an allocation per read.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cached {
    Hit(Option<Arc<Entry>>),
    /// Not held; pass the epoch to [`EntryCache::fill`] with what sled returned.
    Miss(u64),
}

#[derive(Default)]
pub(crate) struct EntryCache {
    inner: Mutex<Inner>,
}

impl EntryCache {
    pub fn get(&self, key: &[u8]) -> Cached {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.map.get(key) {
            Some(v) => Cached::Hit(v.clone()),
            None => Cached::Miss(g.epoch),
        }
    }

    /// Remember what a read that missed at `epoch` found, unless that key was written (it is
    /// held again) or the cache was cleared since.
    pub fn fill(&self, key: &[u8], epoch: u64, value: &Option<Arc<Entry>>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.epoch != epoch || g.map.contains_key(key) {
            return;
        }
        g.make_room();
        g.map.insert(key.to_vec(), value.clone());
    }

    /// A write of these live keys was applied (None = removed from the live tree).
    pub fn wrote(&self, writes: impl IntoIterator<Item = (Vec<u8>, Option<Arc<Entry>>)>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (key, value) in writes {
            g.make_room();
            g.map.insert(key, value);
        }
    }

    /// A write this cache does not follow key by key (catch-up, migration, seeding).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).start_over();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(name: &str) -> Option<Arc<Entry>> {
        Some(Arc::new(Entry {
            project_id: "p".into(),
            uuid: "u".into(),
            kind: "object".into(),
            name: name.into(),
            status: crate::entry::Status::Live,
            bindings: Default::default(),
            state: None,
            state_hash: None,
            quarantine_reason: None,
            created_seq: 1,
            updated_seq: 1,
            tombstone_seq: None,
            deleted_by: None,
            writers: Vec::new(),
        }))
    }

    #[test]
    fn a_read_from_before_a_write_is_not_put_back_over_it() {
        let c = EntryCache::default();
        let Cached::Miss(epoch) = c.get(b"k") else { panic!("empty cache hit") };
        // A write lands between the reader's sled read (old value) and its fill.
        c.wrote([(b"k".to_vec(), shared("new"))]);
        c.fill(b"k", epoch, &shared("old"));
        match c.get(b"k") {
            Cached::Hit(e) => assert_eq!(e.unwrap().name, "new"),
            Cached::Miss(_) => panic!("the write's value is held"),
        }
    }

    #[test]
    fn a_read_from_before_a_write_and_a_clear_is_not_put_back() {
        let c = EntryCache::default();
        let Cached::Miss(epoch) = c.get(b"k") else { panic!("empty cache hit") };
        // The write's value was held, then the cache started over: the key is gone again.
        c.wrote([(b"k".to_vec(), shared("new"))]);
        c.clear();
        c.fill(b"k", epoch, &shared("old"));
        assert!(matches!(c.get(b"k"), Cached::Miss(_)), "the old value must not come back");
    }

    #[test]
    fn writes_of_other_keys_do_not_stop_a_fill() {
        let c = EntryCache::default();
        let Cached::Miss(epoch) = c.get(b"k") else { panic!("empty cache hit") };
        c.wrote([(b"other".to_vec(), shared("x"))]);
        c.fill(b"k", epoch, &shared("read"));
        match c.get(b"k") {
            Cached::Hit(e) => assert_eq!(e.unwrap().name, "read"),
            Cached::Miss(_) => panic!("the fill was dropped for another key's write"),
        }
    }

    #[test]
    fn absent_records_are_cached_and_clear_forgets_everything() {
        let c = EntryCache::default();
        let Cached::Miss(epoch) = c.get(b"k") else { panic!() };
        c.fill(b"k", epoch, &None);
        assert!(matches!(c.get(b"k"), Cached::Hit(None)));
        c.clear();
        assert!(matches!(c.get(b"k"), Cached::Miss(_)));
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = EntryCache::default();
        for i in 0..CAPACITY + 10 {
            let Cached::Miss(epoch) = c.get(i.to_string().as_bytes()) else { panic!() };
            c.fill(i.to_string().as_bytes(), epoch, &None);
        }
        assert!(c.len() <= CAPACITY);
    }
}
