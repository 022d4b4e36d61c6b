//! The decoded live records most recently read or written, so that a record read once per
//! change (the sync path reads each changed uuid's record) is decoded from sled's JSON once,
//! not once per read.
//!
//! # Invariant
//! The cache never returns a value older than the last write that finished before the read
//! began. Every write updates (or clears) the cache after sled holds it, under the writer's
//! turn; a read that missed fills the cache only if no write happened since it looked
//! (a generation number), so a value read from sled before a concurrent write can never be
//! put back over that write's result. Absent records are cached too (`None`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::entry::Entry;

/// At most this many records are held (≈ 1 KiB each); when full, the cache starts over.
pub(crate) const CAPACITY: usize = 50_000;

#[derive(Default)]
struct Inner {
    map: HashMap<Vec<u8>, Option<Entry>>,
    /// Bumped by every write.
    generation: u64,
}

/// What [`EntryCache::get`] found.
// A transient return value, moved once: boxing the hit would cost an allocation per read.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cached {
    Hit(Option<Entry>),
    /// Not held; pass the generation to [`EntryCache::fill`] with what sled returned.
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
            None => Cached::Miss(g.generation),
        }
    }

    /// Remember what a read that missed at `generation` found, unless a write happened since.
    pub fn fill(&self, key: &[u8], generation: u64, value: &Option<Entry>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.generation != generation {
            return;
        }
        if g.map.len() >= CAPACITY {
            g.map.clear();
        }
        g.map.insert(key.to_vec(), value.clone());
    }

    /// A write of these live keys reached sled (None = removed from the live tree).
    pub fn wrote(&self, writes: impl IntoIterator<Item = (Vec<u8>, Option<Entry>)>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.generation += 1;
        for (key, value) in writes {
            if g.map.len() >= CAPACITY {
                g.map.clear();
            }
            g.map.insert(key, value);
        }
    }

    /// A write this cache does not follow key by key (catch-up, migration, seeding).
    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.generation += 1;
        g.map.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Option<Entry> {
        Some(Entry {
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
        })
    }

    #[test]
    fn a_read_from_before_a_write_is_not_put_back_over_it() {
        let c = EntryCache::default();
        let Cached::Miss(generation) = c.get(b"k") else { panic!("empty cache hit") };
        // A write lands between the reader's sled read (old value) and its fill.
        c.wrote([(b"k".to_vec(), entry("new"))]);
        c.fill(b"k", generation, &entry("old"));
        match c.get(b"k") {
            Cached::Hit(e) => assert_eq!(e.unwrap().name, "new"),
            Cached::Miss(_) => panic!("the write's value is held"),
        }
    }

    #[test]
    fn absent_records_are_cached_and_clear_forgets_everything() {
        let c = EntryCache::default();
        let Cached::Miss(generation) = c.get(b"k") else { panic!() };
        c.fill(b"k", generation, &None);
        assert!(matches!(c.get(b"k"), Cached::Hit(None)));
        c.clear();
        assert!(matches!(c.get(b"k"), Cached::Miss(_)));
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = EntryCache::default();
        for i in 0..CAPACITY + 10 {
            let Cached::Miss(generation) = c.get(i.to_string().as_bytes()) else { panic!() };
            c.fill(i.to_string().as_bytes(), generation, &None);
        }
        assert!(c.len() <= CAPACITY);
    }
}
