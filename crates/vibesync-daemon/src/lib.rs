//! The VibeSync daemon: boot sequence, stores, sessions and the TCP server.
//!
//! Layout:
//! - [`config`]: settings; defaults embedded from config/vibesync.toml.
//! - [`paths`]: the data directory layout (every file the daemon owns is named there).
//! - [`boot`]: boot.json (clean/unclean boots), [`token`]: the shared secret.
//! - [`stores`]: WAL + registry + audit opened together, with boot recovery.
//! - [`core`]: shared state and the request handlers (the mutation path); `core::registrar`
//!   group-commits register/tombstone requests.
//! - [`checkpoint`]: the background registry flush and the boot checkpoint (docs/WAL.md §9).
//! - [`sync`]: live sync, one actor per project (window → WAL → forward → verify).
//! - [`ratelimit`]: over-budget coalescible changes are merged, never refused (pure).
//! - [`router`]: agent tool calls — addon registries, the call gate, the call's WAL transaction.
//! - [`session`]: one connection (handshake, framed read loop, writer task).
//! - [`server`]: the accept loop and graceful shutdown; [`admission`]: the quota of
//!   connections waiting for `hello`.
//! - [`client`]: a small blocking client used by the CLI and tests.
//! - [`verify`]: the consistency check; [`restore`]: audit history and restore plans;
//!   [`retention`]: disk use per store, audit packing, blob collection.
//!
//! Invariant: no reply that depends on a mutation leaves before the WAL COMMIT is fdatasync'd
//! and applied to the registry (whose flush runs in the background: boot catches it up from
//! the WAL); a storage failure stops the daemon rather than pretending.

pub mod admission;
pub mod boot;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod core;
pub mod fsutil;
pub mod outbox;
pub mod paths;
pub mod ratelimit;
pub mod restore;
pub mod retention;
pub mod router;
pub mod server;
pub mod session;
pub mod stores;
pub mod sync;
pub mod token;
pub mod txn;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info, warn};

pub use crate::config::Config;
pub use crate::core::Daemon;
pub use crate::paths::DataDir;

pub const DAEMON_VERSION: &str = env!("CARGO_PKG_VERSION");

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
    #[error("the {store} has seen seq {store_seq} but the WAL ends at seq {wal_last_seq}: the WAL lost its tail (a restored backup or a bad copy?). Nothing was served. Put the complete WAL back in {wal_dir}, or start with `vibesync serve --repair` to rebuild the {store} from the shorter log (acknowledged work after seq {wal_last_seq} is then lost; the audit keeps the old commits under refs/vibesync/rewound)", wal_dir = wal_dir.display())]
    WalLostTail { store: &'static str, store_seq: u64, wal_last_seq: u64, wal_dir: PathBuf },
    #[error("the audit history was written from another log: its newest commit {commit} anchors seq {seq} with h {audit_h}, but the WAL record at seq {seq} has h {wal_h}. Nothing was served. Put the right WAL back, or start with `vibesync serve --repair` to set the audit history aside and rebuild it from this WAL")]
    ForeignAudit { commit: String, seq: u64, audit_h: String, wal_h: String },
    #[error("client: {0}")]
    Client(String),
}

/// Options of `vibesync serve` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub repair: bool,
}

/// RFC 3339 UTC timestamp with microseconds, as in WAL records (`vibesync_wal::format_ts`).
pub fn now_rfc3339() -> String {
    vibesync_wal::format_ts(time::OffsetDateTime::now_utc())
}

/// Boot: data dir, boot.json, token, stores (with recovery). Does not listen yet.
pub fn open(config: Config, opts: &ServeOptions) -> Result<Arc<Daemon>, DaemonError> {
    let data = DataDir::new(config.data_dir());
    std::fs::create_dir_all(data.root()).map_err(|e| DaemonError::DataDir {
        path: data.root().to_path_buf(),
        message: format!("cannot create: {e}"),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data.root(), std::fs::Permissions::from_mode(0o700));
    }
    let now = now_rfc3339();
    let token = token::load_or_create(&data.token())?;
    let stores = stores::Stores::open(&config, &data, opts)?;
    // Only after the stores opened (the WAL holds the data-dir lock) is this boot counted.
    let (previous, current) = boot::begin(&data.boot(), &now)?;
    if !previous.last_boot_success || previous.running {
        warn!(
            consecutive_unclean_boots = current.consecutive_unclean_boots,
            "previous run did not shut down cleanly; recovered from the WAL"
        );
    }
    let threshold = config.governance.crash_loop_threshold;
    let mut safe = current.safe_mode;
    if threshold > 0 && current.consecutive_unclean_boots >= threshold && !safe {
        safe = true;
        let mut s = current.clone();
        s.safe_mode = true;
        s.safe_mode_reason =
            Some(format!("{} unclean boots in a row (threshold {threshold})", current.consecutive_unclean_boots));
        boot::write(&data.boot(), &s)?;
        warn!("entering safe mode: {}", s.safe_mode_reason.as_deref().unwrap_or(""));
    }
    let failures = stores.governance.lock().unwrap().global_failures(stores::unix_ms());
    if failures >= config.governance.global_failures.max(1) && !safe {
        safe = true;
        let mut s = boot::read(&data.boot())?;
        s.safe_mode = true;
        s.safe_mode_reason = Some(format!(
            "{failures} sync failures in the last {} s of the WAL (threshold {})",
            config.governance.failure_window_ms / 1000,
            config.governance.global_failures
        ));
        boot::write(&data.boot(), &s)?;
        warn!("entering safe mode: {}", s.safe_mode_reason.as_deref().unwrap_or(""));
    }
    Ok(Arc::new(Daemon::new(config, data, token, stores, safe)))
}

/// Bind the configured address (or `listen`), record it in daemon.json, and return the
/// listener with its real address.
pub async fn bind(daemon: &Daemon, listen: SocketAddr) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let listener = TcpListener::bind(listen).await.map_err(|source| DaemonError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| DaemonError::Listen { addr: listen, source })?;
    daemon.set_listen_addr(addr);
    let info = serde_json::json!({"pid": std::process::id(), "listen": addr.to_string(), "version": DAEMON_VERSION});
    fsutil::write_atomic(&daemon.data_dir().daemon_info(), info.to_string().as_bytes(), None)
        .map_err(|e| DaemonError::DataDir { path: daemon.data_dir().daemon_info(), message: e.to_string() })?;
    if !addr.ip().is_loopback() {
        warn!(
            listen = %addr,
            "LISTENING BEYOND LOOPBACK: {addr} is reachable from the network. VibeSync trusts only the local user: \
             anyone who can reach this port and read the token can change your scenes. Use --listen 127.0.0.1:<port> \
             unless you really mean this (`vibesync status` shows reachable_from_network: true)"
        );
    }
    info!(listen = %addr, data_dir = %daemon.data_dir().root().display(), "listening");
    Ok((listener, addr))
}
