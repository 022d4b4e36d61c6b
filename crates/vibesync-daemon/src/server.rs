//! The accept loop. `run` takes the listener and a shutdown future (mini-redis style), so
//! tests run the whole server in-process on port 0.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::core::Daemon;
use crate::session::serve_connection;

/// Serve until `shutdown` resolves; then stop accepting, let sessions finish their current
/// request (bounded by `shutdown_grace_secs`) and close the stores cleanly.
pub async fn run(listener: TcpListener, daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let admission = crate::admission::Admission::new(daemon.config().server.max_unauthenticated);
    let sidecar = spawn_sidecar_writer(daemon.clone(), stop_rx.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    while sessions.try_join_next().is_some() {}
                    // Bounded: at most `max_unauthenticated` wait for hello (older ones are
                    // evicted), and authenticated sessions are capped after hello.
                    let ticket = admission.admit();
                    sessions.spawn(serve_connection(daemon.clone(), stream, peer, stop_rx.clone(), ticket));
                    // A burst of connects (a flood) must not hold a worker away from the
                    // sessions: let them run between accepts.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(res) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = res {
                    if e.is_panic() {
                        error!("a session task panicked: {e}; other sessions continue");
                    }
                }
            }
        }
    }
    info!("shutting down: no new connections");
    drop(listener);
    daemon.stop_sync().await;
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(daemon.config().server.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!("sessions did not drain within {grace:?}; closing them");
        sessions.abort_all();
    }
    let _ = sidecar.await;
    daemon.shutdown().await;
}

/// Rewrite the registry sidecar at most every `sidecar_interval_secs` while changes come in.
fn spawn_sidecar_writer(daemon: Arc<Daemon>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(daemon.config().storage.sidecar_interval_secs.max(1));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            let stores = daemon.stores().clone();
            let _ = tokio::task::spawn_blocking(move || stores.write_sidecar_if_dirty()).await;
        }
    })
}
