//! The registry flusher: one thread that makes applied registry changes durable in the
//! background (a sled flush is an fsync). Acknowledgements never wait for it: everything
//! acknowledged is durable in the WAL first, and boot catches the registry up from the WAL
//! (docs/WAL.md §8). The thread ends when the registry is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::error;
use vibesync_registry::Registry;

/// How often a dirty registry is flushed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub fn spawn(registry: Weak<Registry>, dirty: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("vibesync-flusher".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            let Some(reg) = registry.upgrade() else { return };
            if dirty.swap(false, Ordering::SeqCst) {
                if let Err(e) = reg.flush() {
                    dirty.store(true, Ordering::SeqCst);
                    error!("registry flush failed (the WAL has every change; boot catches up): {e}");
                }
            }
        })
        .expect("spawn the registry flusher");
}
