//! Starting the daemon: the boot sequence and its policy (data dir, token, stores with
//! recovery, the boot counter, safe mode after a crash loop or too many recent failures),
//! then binding the listener (docs/RESILIENCE.md §1: the crash-loop rule).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::{boot, fsutil, now_rfc3339, stores, token, Config, Daemon, DaemonError, DataDir, DAEMON_VERSION};

/// Options of `vibesync serve` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub repair: bool,
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
    // Why this run is in safe mode (`None`: it is not).
    let mut reason = current.safe_mode.then(|| {
        current.safe_mode_reason.clone().unwrap_or_else(|| "entered in an earlier run; not cleared since".to_string())
    });
    if threshold > 0 && current.consecutive_unclean_boots >= threshold && reason.is_none() {
        let mut s = current.clone();
        s.safe_mode = true;
        s.safe_mode_reason =
            Some(format!("{} unclean boots in a row (threshold {threshold})", current.consecutive_unclean_boots));
        boot::write(&data.boot(), &s)?;
        warn!("entering safe mode: {}", s.safe_mode_reason.as_deref().unwrap_or(""));
        reason = s.safe_mode_reason;
    }
    let failures = stores.governance.lock().unwrap().global_failures(stores::unix_ms());
    if failures >= config.governance.global_failures.max(1) && reason.is_none() {
        let mut s = boot::read(&data.boot())?;
        s.safe_mode = true;
        s.safe_mode_reason = Some(format!(
            "{failures} sync failures in the last {} s of the WAL (threshold {})",
            config.governance.failure_window_ms / 1000,
            config.governance.global_failures
        ));
        boot::write(&data.boot(), &s)?;
        warn!("entering safe mode: {}", s.safe_mode_reason.as_deref().unwrap_or(""));
        reason = s.safe_mode_reason;
    }
    Ok(Arc::new(Daemon::new(config, data, token, stores, reason)))
}

/// `vibesync safe-mode clear` while no daemon runs: the stores are opened as a boot opens
/// them (recovery included; the WAL's data-dir lock keeps a daemon from starting meanwhile),
/// the reset is written as a transaction of session `cli` (BEGIN `pending`, STEP, COMMIT,
/// FINAL), applied to the registry and audited, the stores are closed as a graceful stop
/// closes them, and boot.json leaves safe mode. Every store then ends where a clean stop
/// leaves it: `vibesync verify` is clean at once, not only after the next boot. Not counted as
/// a boot. Returns the reset's COMMIT seq.
pub fn clear_safe_mode_offline(config: &Config, by: &str) -> Result<u64, DaemonError> {
    let data = DataDir::new(config.data_dir());
    let stores = stores::Stores::open(config, &data, &ServeOptions { repair: false })?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| DaemonError::DataDir {
        path: data.root().to_path_buf(),
        message: format!("cannot start the runtime that writes the reset: {e}"),
    })?;
    let reset = serde_json::json!({"op": "governance_reset", "by": by});
    let seq = rt.block_on(async {
        let seq = stores.txn_as("cli", "", vec![], vec![reset.clone()], reset).await;
        stores.close(std::time::Duration::from_secs(60)).await;
        seq
    })?;
    let mut b = boot::read(&data.boot())?;
    b.safe_mode = false;
    b.safe_mode_reason = None;
    b.consecutive_unclean_boots = 0;
    boot::write(&data.boot(), &b)?;
    Ok(seq)
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
