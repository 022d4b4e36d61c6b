//! The daemon in-process on a tokio runtime (real sockets, real stores), for suites that
//! inject storage faults through the stores' test hooks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use vibesync_daemon::{Config, ServeOptions};
use vibesync_registry::ReadFault;

use super::editor::*;
use crate::common::*;

pub struct InProc {
    pub daemon: Arc<vibesync_daemon::Daemon>,
    pub rt: tokio::runtime::Runtime,
    pub server: tokio::task::JoinHandle<()>,
    pub addr: SocketAddr,
    pub token: String,
    pub dir: tempfile::TempDir,
}

impl InProc {
    /// The data dir is `<dir>/data`.
    pub fn start(window_ms: u64) -> InProc {
        InProc::start_with(window_ms, |_| {})
    }

    /// [`InProc::start`] with the rest of the configuration as `set` leaves it.
    pub fn start_with(window_ms: u64, set: impl FnOnce(&mut Config)) -> InProc {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut cfg = Config::default();
        cfg.storage.data_dir = data.display().to_string();
        cfg.server.listen = "127.0.0.1:0".parse().unwrap();
        cfg.sync.batch_window_ms = window_ms;
        set(&mut cfg);
        let daemon = vibesync_daemon::open(cfg, &ServeOptions::default()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (listener, addr) = rt.block_on(vibesync_daemon::bind(&daemon, "127.0.0.1:0".parse().unwrap())).unwrap();
        let d2 = daemon.clone();
        let server =
            rt.spawn(vibesync_daemon::server::run(listener, daemon.clone(), async move { d2.fatal_error().await }));
        let token = std::fs::read_to_string(data.join("token")).unwrap().trim().to_string();
        InProc { daemon, rt, server, addr, token, dir }
    }

    pub fn client(&self, editor: &str) -> Client {
        let mut c = Client::connect(self.addr, &self.token, "demo", editor).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20)));
        c
    }

    pub fn editor(&self, editor: &str) -> Editor {
        Editor::connect(self.addr, &self.token, editor, 0).unwrap()
    }

    pub fn fail_reads(&self, fault: ReadFault) {
        // What was applied so far is written first: the registry's write-behind would
        // otherwise meet the fault on its own, on a loaded machine, and stop the daemon
        // before the request under test arrives.
        self.daemon.stores().registry.flush().expect("the registry flushes before the fault");
        self.daemon.stores().registry.inject_read_fault(Some(fault));
    }

    /// The server loop ends on its own (the storage failure), without a signal. Returns the
    /// data dir's holder, for checks after the stop.
    pub fn assert_stops(self) -> tempfile::TempDir {
        let InProc { daemon, rt, server, dir, .. } = self;
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), server).await })
            .expect("the daemon stops after a storage failure")
            .unwrap();
        assert!(daemon.storage_failed(), "stopped by a storage failure");
        dir
    }
}
