//! Applied transactions that sled does not hold yet, written to it later, many at a time
//! (docs/ARCHITECTURE.md, `vibesync-registry`).
//!
//! A committed transaction is applied in memory at once and reaches sled with the ones
//! applied after it, as one sled batch, when the registry is flushed (the daemon's
//! checkpointer does so every 100 ms) or before a scan. Every sled batch rolls sled's I/O
//! buffer and wakes its writer threads. One batch per registration group cost about a third
//! of the daemon's CPU with eight clients registering one item each (docs/BENCHMARKS.md,
//! "Registration"). Nothing here is a durability point: the registry never was one between
//! flushes; the WAL is, and boot catches the registry up from it (docs/WAL.md §8).
//!
//! # Invariant
//! A read sees every applied transaction: a live key is looked up here before the cache and
//! sled, a uuid's archived versions are read here beside sled's, and a layer leaves here only
//! once sled holds it. While its batch is written, a layer
//! stays readable; a failed write keeps it, and the next write retries it first. Layers reach
//! sled whole and in the order they were applied, each as one batch that also carries the
//! counters and `last_applied_seq` of its last transaction, so sled always holds a prefix of
//! the applied transactions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::entry::{Counts, Entry};

/// What one sled batch will carry: the changes of consecutive applied transactions.
#[derive(Default)]
pub(crate) struct Layer {
    /// Live key -> value after these transactions (None = removed from the live tree).
    pub live: HashMap<Vec<u8>, Option<Arc<Entry>>>,
    /// Archived versions written, in apply order (only [`WriteBehind::add`] adds to it, and
    /// to its index with it).
    archive: Vec<Entry>,
    /// (project, uuid) -> where its versions are in `archive`.
    archive_index: HashMap<(String, String), Vec<usize>>,
    /// Counters after the last transaction.
    pub counts: Counts,
    /// COMMIT seq of the last transaction.
    pub last: u64,
    pub txns: usize,
}

impl Layer {
    /// Archived versions written, in apply order.
    pub fn archive(&self) -> &[Entry] {
        &self.archive
    }

    fn records(&self) -> usize {
        self.live.len() + self.archive.len()
    }
}

#[derive(Default)]
struct Inner {
    /// Applied since the last write began.
    current: Layer,
    /// Being written, or a write of it failed (then retried first).
    writing: Option<Arc<Layer>>,
}

/// Applied, unwritten transactions. A [`WriteBehind::write`] writes them; one runs at a time.
#[derive(Default)]
pub(crate) struct WriteBehind {
    inner: Mutex<Inner>,
    turn: Mutex<()>,
}

/// What [`WriteBehind::get`] found for a live key.
pub(crate) enum Held {
    /// Applied and not yet in sled: this is its value (None = removed).
    Here(Option<Arc<Entry>>),
    /// Not held here: sled (or the cache in front of it) has the latest value.
    NotHere,
}

impl WriteBehind {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &[u8]) -> Held {
        let g = self.inner();
        if let Some(v) = g.current.live.get(key) {
            return Held::Here(v.clone());
        }
        match g.writing.as_ref().and_then(|l| l.live.get(key)) {
            Some(v) => Held::Here(v.clone()),
            None => Held::NotHere,
        }
    }

    /// Hold the changes of transactions just applied (in apply order, after every earlier
    /// one); returns how many records are held.
    pub fn add(
        &self,
        live: impl IntoIterator<Item = (Vec<u8>, Option<Arc<Entry>>)>,
        archive: Vec<Entry>,
        counts: Counts,
        last: u64,
        txns: usize,
    ) -> usize {
        let mut g = self.inner();
        let l = &mut g.current;
        l.live.extend(live);
        for e in archive {
            l.archive_index.entry((e.project_id.clone(), e.uuid.clone())).or_default().push(l.archive.len());
            l.archive.push(e);
        }
        l.counts = counts;
        l.last = last;
        l.txns += txns;
        g.current.records() + g.writing.as_ref().map_or(0, |l| l.records())
    }

    /// The archived versions of `(project, uuid)` held here, in apply order. A reader that
    /// asks here first and then sled misses none: a layer leaves only once sled holds it (it
    /// may find one in both).
    pub fn archived(&self, project: &str, uuid: &str) -> Vec<Entry> {
        let g = self.inner();
        if g.current.archive.is_empty() && g.writing.as_ref().is_none_or(|l| l.archive.is_empty()) {
            return Vec::new();
        }
        let key = (project.to_string(), uuid.to_string());
        let mut out = Vec::new();
        for l in g.writing.iter().map(|l| &**l).chain(std::iter::once(&g.current)) {
            for &i in l.archive_index.get(&key).into_iter().flatten() {
                out.push(l.archive[i].clone());
            }
        }
        out
    }

    /// Records held (for the caller's bound on memory).
    pub fn records(&self) -> usize {
        let g = self.inner();
        g.current.records() + g.writing.as_ref().map_or(0, |l| l.records())
    }

    /// Write what is held, oldest first, each layer with `put` (one sled batch). A layer
    /// leaves only when `put` succeeds; on an error it stays (readable) and is retried first
    /// by the next write.
    pub fn write<E>(&self, mut put: impl FnMut(&Layer) -> Result<(), E>) -> Result<usize, E> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut txns = 0;
        loop {
            let layer = {
                let mut g = self.inner();
                match &g.writing {
                    Some(l) => l.clone(),
                    None if g.current.txns == 0 => return Ok(txns),
                    None => {
                        let l = Arc::new(std::mem::take(&mut g.current));
                        g.writing = Some(l.clone());
                        l
                    }
                }
            };
            put(&layer)?;
            txns += layer.txns;
            self.inner().writing = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Status;

    fn entry(name: &str, seq: u64) -> Arc<Entry> {
        let json = serde_json::json!({
            "uuid": "00000000-0000-4000-8000-000000000001", "project_id": "p", "kind": "object",
            "name": name, "status": "live", "created_seq": 1, "updated_seq": seq,
        });
        let e: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(e.status, Status::Live);
        Arc::new(e)
    }

    fn name(h: Held) -> Option<String> {
        match h {
            Held::Here(Some(e)) => Some(e.name.clone()),
            Held::Here(None) => Some("<removed>".into()),
            Held::NotHere => None,
        }
    }

    fn counts(live: u64) -> Counts {
        Counts { live, ..Default::default() }
    }

    #[test]
    fn held_records_are_read_until_written_then_left_to_sled() {
        let wb = WriteBehind::default();
        assert_eq!(wb.add([(b"a".to_vec(), Some(entry("A", 2)))], vec![], counts(1), 2, 1), 1);
        assert_eq!(wb.add([(b"b".to_vec(), None)], vec![], counts(0), 3, 1), 2);
        assert_eq!(name(wb.get(b"a")).as_deref(), Some("A"));
        assert_eq!(name(wb.get(b"b")).as_deref(), Some("<removed>"));
        assert_eq!(name(wb.get(b"c")), None);
        let mut batches = Vec::new();
        let written = wb
            .write(|l| {
                batches.push((l.txns, l.last, l.counts.live, l.live.len()));
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(written, 2);
        assert_eq!(batches, vec![(2, 3, 0, 2)], "one batch, with the last transaction's watermark and counters");
        assert_eq!(name(wb.get(b"a")), None);
        assert_eq!(wb.records(), 0);
    }

    #[test]
    fn a_later_apply_of_a_key_wins() {
        let wb = WriteBehind::default();
        wb.add([(b"a".to_vec(), Some(entry("old", 2)))], vec![], counts(1), 2, 1);
        wb.add([(b"a".to_vec(), Some(entry("new", 3)))], vec![], counts(1), 3, 1);
        assert_eq!(name(wb.get(b"a")).as_deref(), Some("new"));
    }

    #[test]
    fn a_layer_being_written_stays_readable_and_newer_applies_shadow_it() {
        let wb = WriteBehind::default();
        wb.add([(b"a".to_vec(), Some(entry("first", 2)))], vec![], counts(1), 2, 1);
        let mut layers = Vec::new();
        wb.write(|l| {
            layers.push(l.last);
            if l.last == 2 {
                // While sled writes the layer, a reader still finds it, and an apply that
                // lands meanwhile is read over it.
                assert_eq!(name(wb.get(b"a")).as_deref(), Some("first"));
                wb.add([(b"a".to_vec(), Some(entry("second", 3)))], vec![], counts(1), 3, 1);
                assert_eq!(name(wb.get(b"a")).as_deref(), Some("second"));
            }
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(layers, vec![2, 3], "the write went on to the layer applied meanwhile");
        assert_eq!(name(wb.get(b"a")), None);
    }

    #[test]
    fn a_failed_write_keeps_the_layer_and_the_next_write_puts_it_first() {
        let wb = WriteBehind::default();
        wb.add([(b"a".to_vec(), Some(entry("A", 2)))], vec![], counts(1), 2, 1);
        assert_eq!(wb.write(|_| Err("disk full")), Err("disk full"));
        assert_eq!(name(wb.get(b"a")).as_deref(), Some("A"), "still readable after the failure");
        wb.add([(b"b".to_vec(), Some(entry("B", 3)))], vec![], counts(2), 3, 1);
        let mut order = Vec::new();
        let written = wb
            .write(|l| {
                order.push(l.last);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(order, vec![2, 3], "the failed layer first, then the newer one, each whole");
        assert_eq!(written, 2);
        assert_eq!(wb.records(), 0);
    }

    #[test]
    fn nothing_held_writes_nothing() {
        let wb = WriteBehind::default();
        let written = wb.write(|_| -> Result<(), ()> { panic!("no batch for nothing") }).unwrap();
        assert_eq!(written, 0);
    }
}
