//! Admission of unauthenticated connections (docs/PROTOCOL.md §3, "Before `hello`").
//!
//! A connection that has not completed its handshake holds a [`Ticket`] from the
//! [`Admission`] quota (`server.max_unauthenticated`). The quota is separate from the slots
//! of authenticated sessions (`server.max_connections`), so idle or slow sockets from any
//! local process can never take an editor's place. When the quota is full, the **oldest**
//! waiting connection is evicted (told `TOO_MANY_CONNECTIONS` and closed) to admit the new
//! one: an editor sends `hello` at once, so it gets through while a hostile process holds
//! hundreds of sockets, and each of those costs at most one small read buffer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
struct Waiting {
    next_id: u64,
    /// id → eviction signal; ids grow, so the first entry is the oldest.
    by_id: BTreeMap<u64, Arc<Notify>>,
    evicted: u64,
}

/// The quota of connections waiting for their `hello`.
pub struct Admission {
    max: usize,
    waiting: Arc<Mutex<Waiting>>,
}

/// Held while a connection waits for its handshake; dropping it frees the place.
pub struct Ticket {
    id: u64,
    /// Notified when this connection is evicted to admit a newer one.
    pub evicted: Arc<Notify>,
    waiting: Arc<Mutex<Waiting>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.waiting.lock().unwrap().by_id.remove(&self.id);
    }
}

impl Admission {
    pub fn new(max: usize) -> Admission {
        Admission { max: max.max(1), waiting: Arc::default() }
    }

    /// Admit a new connection, evicting the oldest waiting one if the quota is full.
    pub fn admit(&self) -> Ticket {
        let mut w = self.waiting.lock().unwrap();
        while w.by_id.len() >= self.max {
            let Some((_, oldest)) = w.by_id.pop_first() else { break };
            oldest.notify_one();
            w.evicted += 1;
        }
        let id = w.next_id;
        w.next_id += 1;
        let evicted = Arc::new(Notify::new());
        w.by_id.insert(id, evicted.clone());
        Ticket { id, evicted, waiting: self.waiting.clone() }
    }

    /// (connections waiting for `hello`, evicted since start).
    #[cfg(test)]
    pub fn counts(&self) -> (usize, u64) {
        let w = self.waiting.lock().unwrap();
        (w.by_id.len(), w.evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_quota_evicts_the_oldest_and_frees_places_on_drop() {
        let a = Admission::new(2);
        let t1 = a.admit();
        let t2 = a.admit();
        assert_eq!(a.counts(), (2, 0));
        let t3 = a.admit();
        assert_eq!(a.counts(), (2, 1));
        // t1 was told (the permit is stored even though nobody waited yet).
        tokio::time::timeout(std::time::Duration::from_secs(1), t1.evicted.notified()).await.unwrap();
        drop(t1); // already out of the map: dropping it changes nothing
        assert_eq!(a.counts(), (2, 1));
        drop(t2);
        assert_eq!(a.counts(), (1, 1));
        let _t4 = a.admit();
        assert_eq!(a.counts(), (2, 1), "a free place needs no eviction");
        drop(t3);
    }
}
