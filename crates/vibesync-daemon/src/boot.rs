//! `<data_dir>/boot.json`: was the previous run shut down cleanly?
//! (docs/ARCHITECTURE.md, "Data directory")
//!
//! At start the daemon marks `running: true`; a graceful shutdown writes
//! `running: false, last_boot_success: true`. Finding `running: true` at start means the last
//! run died (kill -9, crash, power loss): one more unclean boot in a row.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{fsutil, DaemonError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootState {
    /// Whether the previous run ended with a graceful shutdown.
    pub last_boot_success: bool,
    /// Unclean ends in a row (reset by a clean shutdown).
    pub consecutive_unclean_boots: u32,
    /// True while a daemon runs.
    pub running: bool,
    pub pid: u32,
    pub started_at: String,
    pub last_clean_shutdown: Option<String>,
    /// Set when safe mode was entered; cleared only by `vibesync safe-mode clear`.
    #[serde(default)]
    pub safe_mode: bool,
    #[serde(default)]
    pub safe_mode_reason: Option<String>,
}

/// Read the previous state (absent file = first boot) and record this boot.
pub fn begin(path: &Path, now: &str) -> Result<(BootState, BootState), DaemonError> {
    let previous = read(path)?;
    let mut current = previous.clone();
    if previous.running {
        current.consecutive_unclean_boots = previous.consecutive_unclean_boots + 1;
        current.last_boot_success = false;
    }
    current.running = true;
    current.pid = std::process::id();
    current.started_at = now.to_string();
    write(path, &current)?;
    Ok((previous, current))
}

/// Mark a graceful shutdown.
pub fn end_clean(path: &Path, now: &str) -> Result<(), DaemonError> {
    let mut s = read(path)?;
    s.running = false;
    s.last_boot_success = true;
    s.consecutive_unclean_boots = 0;
    s.last_clean_shutdown = Some(now.to_string());
    write(path, &s)
}

pub fn read(path: &Path) -> Result<BootState, DaemonError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| DaemonError::Boot {
            path: path.to_path_buf(),
            message: format!("unreadable ({e}); fix or delete it (it only holds boot counters)"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(BootState { last_boot_success: true, ..BootState::default() })
        }
        Err(e) => Err(DaemonError::Boot { path: path.to_path_buf(), message: e.to_string() }),
    }
}

pub fn write(path: &Path, s: &BootState) -> Result<(), DaemonError> {
    let bytes = serde_json::to_vec_pretty(s).expect("boot state serializes");
    fsutil::write_atomic(path, &bytes, None)
        .map_err(|e| DaemonError::Boot { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclean_boots_count_until_a_clean_shutdown() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("boot.json");
        let (prev, cur) = begin(&p, "t0").unwrap();
        assert!(prev.last_boot_success);
        assert_eq!(cur.consecutive_unclean_boots, 0);
        // killed: no end_clean
        let (_, cur) = begin(&p, "t1").unwrap();
        assert_eq!(cur.consecutive_unclean_boots, 1);
        let (_, cur) = begin(&p, "t2").unwrap();
        assert_eq!(cur.consecutive_unclean_boots, 2);
        end_clean(&p, "t3").unwrap();
        let (prev, cur) = begin(&p, "t4").unwrap();
        assert!(prev.last_boot_success);
        assert_eq!(cur.consecutive_unclean_boots, 0);
    }
}
