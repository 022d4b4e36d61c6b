//! Which live keys may exist, so that a uuid the registry has never held is answered
//! "absent" without a sled read (docs/ARCHITECTURE.md, `vibesync-registry`).
//!
//! Every registration of a new uuid looks its key up first. sled answers an absent key by
//! walking its tree, and in bulk registration that read was a quarter of the registrar's
//! time (docs/BENCHMARKS.md, "Registration"). A Bloom filter (the `fastbloom` crate) of the
//! live keys answers most of them from memory.
//!
//! # Invariant
//! Once the filter is ready, every live key the registry holds, in memory or in sled, is in
//! it: a key is added by the apply that makes it live, from the moment the filter exists, and
//! the keys that were live before that are added by one scan of sled, after what was held in
//! memory has been written. Only then is it ready; until then, and for good after a schema
//! migration rewrote the tree, it answers nothing. A Bloom filter has no false negatives, so
//! "absent" is never said of a key that exists; a false positive only costs the sled read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use fastbloom::AtomicBloomFilter;

/// The filter is sized for twice the live keys at its creation, and at least this many:
/// about 1.2 MB at the 1 % false-positive rate. Past its size it grows less precise, never
/// wrong.
const MIN_KEYS: usize = 1 << 20;
const FALSE_POSITIVE_RATE: f64 = 0.01;

#[derive(Default)]
pub(crate) struct KeyFilter {
    bloom: OnceLock<AtomicBloomFilter<foldhash::quality::RandomState>>,
    ready: AtomicBool,
    off: AtomicBool,
}

impl KeyFilter {
    /// Create the filter for about `live` keys; from now on [`KeyFilter::add`] records keys.
    /// Returns false if it already existed.
    pub fn create(&self, live: usize) -> bool {
        let expected = live.saturating_mul(2).max(MIN_KEYS);
        let mut created = false;
        self.bloom.get_or_init(|| {
            created = true;
            AtomicBloomFilter::with_false_pos(FALSE_POSITIVE_RATE)
                .hasher(foldhash::quality::RandomState::default())
                .expected_items(expected)
        });
        created
    }

    /// A key became live (a no-op before [`KeyFilter::create`]).
    pub fn add(&self, key: &[u8]) {
        if let Some(b) = self.bloom.get() {
            b.insert(key);
        }
    }

    /// Every key live before the filter was created has been added: answer from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Stop answering for good (the tree was rewritten other than by applies).
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Release);
    }

    /// True only if `key` is certainly not live.
    pub fn surely_absent(&self, key: &[u8]) -> bool {
        if !self.ready.load(Ordering::Acquire) || self.off.load(Ordering::Acquire) {
            return false;
        }
        self.bloom.get().is_some_and(|b| !b.contains(key))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.off.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_nothing_until_ready_and_never_absent_for_an_added_key() {
        let f = KeyFilter::default();
        f.add(b"before-create"); // not recorded: no filter yet
        assert!(!f.surely_absent(b"x"), "no filter: no answer");
        assert!(f.create(10));
        assert!(!f.create(10), "created once");
        for i in 0..10_000u32 {
            f.add(format!("live\0p\0{i}").as_bytes());
        }
        assert!(!f.surely_absent(b"x"), "not ready: no answer");
        f.set_ready();
        for i in 0..10_000u32 {
            assert!(!f.surely_absent(format!("live\0p\0{i}").as_bytes()), "key {i} was added");
        }
        let absent = (0..10_000u32).filter(|i| f.surely_absent(format!("live\0q\0{i}").as_bytes())).count();
        assert!(absent > 9_500, "most keys never added are answered absent: {absent}");
        f.turn_off();
        assert!(!f.surely_absent(b"live\0q\0x1"), "off: no answer");
    }
}
