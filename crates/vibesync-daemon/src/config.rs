//! Configuration: defaults embedded from config/vibesync.toml, a user file, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::DaemonError;

/// The documented defaults, compiled in. `vibesync serve` without `--config` uses these.
pub const DEFAULT_TOML: &str = include_str!("../../../config/vibesync.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub audit: AuditConfig,
    pub logging: LoggingConfig,
    pub sync: SyncConfig,
    pub limits: LimitsConfig,
    pub governance: GovernanceConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub messages_per_sec: f64,
    pub messages_burst: f64,
    pub bytes_per_sec: f64,
    pub bytes_burst: f64,
    pub slow_consumer_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub batch_window_ms: u64,
    pub verify_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub handshake_timeout_secs: u64,
    pub max_frame_bytes: u32,
    pub send_queue_frames: usize,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: String,
    pub wal_segment_bytes: u64,
    pub registry_cache_bytes: u64,
    pub sidecar_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: String,
    pub rotation: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    pub crash_loop_threshold: u32,
    pub uuid_failures: u32,
    pub op_failures: u32,
    pub global_failures: u32,
    pub window_failures: usize,
    pub failure_window_ms: u64,
    pub user_idle_ms: u64,
}

impl GovernanceConfig {
    pub fn thresholds(&self) -> vibesync_engine::governance::Thresholds {
        vibesync_engine::governance::Thresholds {
            uuid_failures: self.uuid_failures.max(1),
            op_failures: self.op_failures.max(1),
            global_failures: self.global_failures.max(1),
            window_records: self.window_failures.max(1),
            failure_window_ms: self.failure_window_ms.max(1),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str(DEFAULT_TOML).expect("embedded config/vibesync.toml is valid")
    }
}

impl Config {
    /// Defaults overlaid with the user's file: keys the file leaves out keep their default.
    pub fn load(path: Option<&Path>) -> Result<Config, DaemonError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Config {
            path: path.to_path_buf(),
            message: format!("cannot read: {source}"),
        })?;
        let mut base: toml::Value = toml::from_str(DEFAULT_TOML).expect("embedded config is valid");
        let user: toml::Value = toml::from_str(&text)
            .map_err(|e| DaemonError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        merge(&mut base, user);
        base.try_into()
            .map_err(|e: toml::de::Error| DaemonError::Config { path: path.to_path_buf(), message: e.to_string() })
    }

    /// The data directory: the configured one, else the platform default.
    pub fn data_dir(&self) -> PathBuf {
        if self.storage.data_dir.is_empty() {
            default_data_dir()
        } else {
            PathBuf::from(&self.storage.data_dir)
        }
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// `$VIBESYNC_DATA_DIR`, else the platform data dir + `vibesync`. Python and C# clients
/// resolve the same path to find the token.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VIBESYNC_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if cfg!(target_os = "macos") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join("Library/Application Support/vibesync");
        }
    } else if cfg!(windows) {
        if let Some(appdata) = std::env::var_os("APPDATA") {
            return PathBuf::from(appdata).join("vibesync");
        }
    } else {
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(x).join("vibesync");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(".local/share/vibesync");
        }
    }
    PathBuf::from("vibesync-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let c = Config::default();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:47800");
        assert_eq!(c.server.max_frame_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn user_file_overrides_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.server.handshake_timeout_secs, 5);
    }

    #[test]
    fn typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[server]\nlisten_addr = \"127.0.0.1:0\"\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("listen_addr"), "{e}");
    }
}
