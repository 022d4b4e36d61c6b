//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in the registry. Messages say what happened, where, and what
/// to do; the registry is derived data, so the usual remedy is a restart (which rebuilds it
/// from the WAL).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry I/O failed: could not {op} {path}: {source}; check permissions and free disk space")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("sled {op} failed in {path}: {source}; restart the daemon to rebuild the registry from the WAL")]
    Sled {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("sled panicked during {op} in {path}: {message}; the registry files are damaged, restart to rebuild from the WAL")]
    SledPanic { op: &'static str, path: PathBuf, message: String },

    #[error("registry record {key:?} is unreadable: {reason}; run `vibesync verify`, a restart rebuilds the registry from the WAL")]
    CorruptRecord { key: String, reason: String },

    #[error(
        "registry meta `{name}` is missing or unreadable ({reason}); a restart rebuilds the registry from the WAL"
    )]
    CorruptMeta { name: &'static str, reason: String },

    #[error("registry schema v{from} must be migrated to v{to} before use: log a `migrate` step in a WAL transaction and apply it (see `Registry::needs_migration`)")]
    MigrationPending { from: u32, to: u32 },

    #[error("no migration from registry schema v{from} to v{to}; this build understands v{supported}")]
    NoMigrationPath { from: u32, to: u32, supported: u32 },

    #[error(
        "transaction {operation_id} has no COMMIT record; pass the STEP records together with their COMMIT record"
    )]
    NotCommitted { operation_id: String },

    #[error("transaction {operation_id} was rolled back (ROLLBACK at seq {seq}); rolled back transactions must not be applied")]
    RolledBack { operation_id: String, seq: u64 },

    #[error("record at seq {seq} belongs to operation {found}, not {expected}; pass exactly one transaction to apply_committed")]
    MixedTransaction { expected: String, found: String, seq: u64 },

    #[error("could not move the damaged registry {from} to {to}: {source}; move it away by hand and restart")]
    Quarantine {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "could not open a fresh registry at {path}: {reason}; check permissions and free disk space, then restart"
    )]
    Unopenable { path: PathBuf, reason: String },

    /// docs/WAL.md §5: the registry has applied a seq the WAL does not have.
    #[error(
        "registry {path} has applied seq {registry_seq} but the WAL ends at seq {wal_last_seq}: the WAL lost its tail; restore it, or open with repair to rebuild the registry from the shorter log"
    )]
    AheadOfWal { path: PathBuf, registry_seq: u64, wal_last_seq: u64 },

    /// A STEP of a committed transaction the registry does not understand (docs/WAL.md
    /// "Registry STEP payloads"): never skipped — the transaction is not applied.
    #[error("WAL STEP at seq {seq} (operation {operation_id}) is not understood: {reason}. The transaction was not applied; was this log written by a newer vibesync? Run `vibesync verify` and use the vibesync that wrote it")]
    UnknownStep { seq: u64, operation_id: String, reason: String },

    /// The WAL could not be read while the registry was brought in line with it.
    #[error("reading the WAL to bring the registry in line failed: {source}")]
    WalRead {
        #[source]
        source: vibesync_wal::WalError,
    },

    #[error("sidecar {path} could not be encoded: {source}")]
    SidecarEncode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
