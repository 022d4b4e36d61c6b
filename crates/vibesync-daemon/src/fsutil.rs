//! Durable small-file writes: the one implementation lives in `vibesync_wal::fsutil` (the
//! registry and the WAL use it too); re-exported for the daemon's modules.

pub use vibesync_wal::fsutil::{fsync_dir, write_atomic};
