//! The data directory layout. Every file the daemon owns is named here and nowhere else.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `<data>/wal/`: the write-ahead log segments (the source of truth).
    pub fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// `<data>/wal-archive/`: WAL segments removed by compaction when `storage.wal_archive`
    /// is on (docs/WAL.md §11).
    pub fn wal_archive(&self) -> PathBuf {
        self.root.join("wal-archive")
    }
    /// `<data>/registry/`: the sled registry (derived from the WAL).
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry")
    }
    /// `<data>/registry.sidecar.json`: human-readable registry backup.
    pub fn sidecar(&self) -> PathBuf {
        self.root.join("registry.sidecar.json")
    }
    /// `<data>/quarantine/`: torn WAL tails, corrupt stores; never deleted automatically.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// `<data>/.git_safety/`: the ghost-audit bare git repository.
    pub fn audit(&self) -> PathBuf {
        self.root.join(".git_safety")
    }
    /// `<data>/logs/`: JSON log lines, rotated.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `<data>/blobs/`: mesh attachments by `mesh_hash` (SHA-256, PROTOCOL §7) (content-addressed, immutable).
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }
    /// `<data>/token`: the shared secret clients present in `hello` (mode 0600).
    pub fn token(&self) -> PathBuf {
        self.root.join("token")
    }
    /// `<data>/boot.json`: clean/unclean boot tracking.
    pub fn boot(&self) -> PathBuf {
        self.root.join("boot.json")
    }
    /// `<data>/daemon.json`: where the running daemon listens (pid, addr), for the CLI.
    pub fn daemon_info(&self) -> PathBuf {
        self.root.join("daemon.json")
    }
    /// `<data>/last_project`: the project an editor joined most recently (zero-config
    /// pairing, docs/PROTOCOL.md §3).
    pub fn last_project(&self) -> PathBuf {
        self.root.join("last_project")
    }
    /// `<data>/daemon.lock`: held while a daemon runs on this data dir.
    pub fn lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
}
