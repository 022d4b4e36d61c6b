//! The engine's hash maps and sets: `std`'s, with foldhash's hasher instead of SipHash.
//!
//! The engine keys nearly every map by uuid strings and looks each changed uuid up several
//! times per change; SipHash was 3–4 % of the sync actor's CPU in a drag of 5,000 objects
//! (docs/BENCHMARKS.md, "Session 8"). foldhash (the hasher hashbrown uses by default) is
//! seeded per process, so keys chosen by a client cannot be aimed at one bucket.

/// `std::collections::HashMap` with foldhash's seeded hasher.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// `std::collections::HashSet` with foldhash's seeded hasher.
pub type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
