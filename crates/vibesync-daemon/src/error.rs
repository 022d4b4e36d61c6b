//! The daemon library's error type: each variant names the file or address involved and what
//! to do about it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the daemon library. Each names the file or address involved and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("config {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("data directory {}: {message}", path.display())]
    DataDir { path: PathBuf, message: String },
    #[error("token file {}: {message}", path.display())]
    Token { path: PathBuf, message: String },
    #[error("boot state {}: {message}", path.display())]
    Boot { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}. Is another daemon running there? Pick another address with --listen")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wal(#[from] vibesync_wal::WalError),
    #[error(transparent)]
    Registry(#[from] vibesync_registry::RegistryError),
    #[error(transparent)]
    Audit(#[from] vibesync_audit::AuditError),
    /// docs/WAL.md §5: a derived store has seen a seq the WAL does not have.
    #[error("the {store} has seen seq {store_seq} but the WAL ends at seq {wal_last_seq}: the WAL lost its tail (a restored backup or a bad copy?). Nothing was served. Put the complete WAL back in {wal_dir}, or start with `vibesync serve --repair`, which rebuilds the registry from the shorter log and rewinds the audit history to it (acknowledged work after seq {wal_last_seq} is then lost; the audit keeps its old commits under refs/vibesync/rewound)", wal_dir = wal_dir.display())]
    WalLostTail { store: &'static str, store_seq: u64, wal_last_seq: u64, wal_dir: PathBuf },
    #[error("the audit history was written from another log: its newest commit {commit} anchors seq {seq} with h {audit_h}, but the WAL record at seq {seq} has h {wal_h}. Nothing was served. Put the right WAL back, or start with `vibesync serve --repair` to set the audit history aside and rebuild it from this WAL")]
    ForeignAudit { commit: String, seq: u64, audit_h: String, wal_h: String },
    #[error("client: {0}")]
    Client(String),
}
