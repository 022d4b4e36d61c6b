//! Configuration: defaults embedded from config/vibesync.toml, a user file, then flags.
//!
//! The user file is found in this order (the first that applies wins; see
//! config/vibesync.toml and README "Configure"): `--config FILE`, `$VIBESYNC_CONFIG`, the
//! platform config file [`default_config_file`] if it exists, else the embedded defaults.

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
    pub agents: AgentsConfig,
}

/// Agent tool calls (docs/PROTOCOL.md §9).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    pub call_timeout_ms: u64,
    pub handler_budget_ms: u64,
    pub tool_failures: u32,
    pub progress_interval_ms: u64,
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
    /// Live previews of fast-path changes: at most one `live` frame per receiver, uuid and
    /// op per this many ms (0 = no throttle); docs/PROTOCOL.md §6.3.
    pub live_interval_ms: u64,
    /// Fast batches of free uuids start beside a slow batch in flight (docs/PROTOCOL.md §6.2
    /// "Pipelining"); `false`: every batch waits for the one in flight.
    pub pipelining: bool,
    /// The most changes one batch carries (docs/PROTOCOL.md §6.2 "Batch size").
    pub max_batch_changes: usize,
    /// The most bytes of meshes one batch carries to each receiver (at least one change).
    pub max_batch_mesh_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub handshake_timeout_secs: u64,
    pub max_frame_bytes: u32,
    pub send_queue_frames: usize,
    /// Bytes of frames queued per connection (a frame larger than this waits for the queue
    /// to empty and goes alone): with `send_queue_frames`, when the consumer counts as slow.
    pub send_queue_bytes: u32,
    pub max_connections: usize,
    /// Quota of connections waiting for `hello` (see `admission`).
    pub max_unauthenticated: usize,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: String,
    pub wal_segment_bytes: u64,
    pub registry_cache_bytes: u64,
    pub sidecar_interval_secs: u64,
    pub maintenance_interval_secs: u64,
    pub blob_grace_secs: u64,
    /// WAL compaction (docs/WAL.md §11): a closed segment is removed once every store holds
    /// its records and its last write is older than this (0 = as soon as covered).
    pub wal_retention_secs: u64,
    /// Whether compaction runs at all.
    pub wal_compaction: bool,
    /// Move compacted segments to `<data_dir>/wal-archive/` instead of deleting them.
    pub wal_archive: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Lag bound of the group commit, ms (see `vibesync_audit::AuditConfig::group_ms`).
    pub group_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or comma-separated
    /// directives `target=level` beside it ([`check_level`]).
    pub level: String,
    pub rotation: Rotation,
}

/// How often `<data_dir>/logs/vibesync.log.*` starts a new file.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    Daily,
    Hourly,
    Never,
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A `logging.level` the daemon can log at: each comma-separated directive is a level name or
/// `target=level`. Anything else (`loud`) would be read as a target name and silence every
/// log line, errors included.
pub fn check_level(level: &str) -> Result<(), String> {
    let bad = |d: &str| format!("`{d}` is not a level; use one of {} (or `target=level`)", LEVELS.join(", "));
    if level.trim().is_empty() {
        return Err(bad(level));
    }
    for d in level.split(',').map(str::trim) {
        let lvl = d.rsplit_once('=').map_or(d, |(target, l)| if target.is_empty() { "" } else { l });
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
            return Err(bad(d));
        }
    }
    Ok(())
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

/// Where the configuration in effect came from (printed by `serve` and `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    Flag(PathBuf),
    /// `$VIBESYNC_CONFIG`.
    Env(PathBuf),
    /// The platform config file ([`default_config_file`]), which exists.
    DefaultFile(PathBuf),
    /// No file: the defaults compiled into the binary.
    Embedded,
}

impl ConfigSource {
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Flag(p) | ConfigSource::Env(p) | ConfigSource::DefaultFile(p) => Some(p),
            ConfigSource::Embedded => None,
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Flag(p) => write!(f, "{} (--config)", p.display()),
            ConfigSource::Env(p) => write!(f, "{} ($VIBESYNC_CONFIG)", p.display()),
            ConfigSource::DefaultFile(p) => write!(f, "{} (default location)", p.display()),
            ConfigSource::Embedded => f.write_str("embedded defaults (no config file)"),
        }
    }
}

/// The platform config file: `$XDG_CONFIG_HOME/vibesync/vibesync.toml` (else
/// `~/.config/vibesync/vibesync.toml`) on Linux, `~/Library/Application
/// Support/vibesync/vibesync.toml` on macOS, `%APPDATA%\vibesync\vibesync.toml` on Windows.
pub fn default_config_file() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Application Support"))
    } else if cfg!(windows) {
        var("APPDATA")
    } else {
        var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))
    };
    dir.map(|d| d.join("vibesync").join("vibesync.toml"))
}

/// Which file to read: `--config`, else `$VIBESYNC_CONFIG`, else the platform file when it
/// exists. A file named by the flag or the variable must exist (a typo is an error).
pub fn config_source(flag: Option<&Path>) -> ConfigSource {
    if let Some(p) = flag {
        return ConfigSource::Flag(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("VIBESYNC_CONFIG").filter(|v| !v.is_empty()) {
        return ConfigSource::Env(PathBuf::from(p));
    }
    match default_config_file() {
        Some(p) if p.is_file() => ConfigSource::DefaultFile(p),
        _ => ConfigSource::Embedded,
    }
}

impl Config {
    /// The configuration in effect for `flag` (see [`config_source`]) and where it came from.
    pub fn resolve(flag: Option<&Path>) -> Result<(Config, ConfigSource), DaemonError> {
        let source = config_source(flag);
        Ok((Config::load(source.path())?, source))
    }

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
        let config: Config = base
            .try_into()
            .map_err(|e: toml::de::Error| DaemonError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        config.check().map_err(|message| DaemonError::Config { path: path.to_path_buf(), message })?;
        Ok(config)
    }

    /// Values the daemon cannot run with, each named by its key with what to set instead.
    fn check(&self) -> Result<(), String> {
        let d = Config::default();
        // (key, value, least value, why, default)
        let bounds: [(&str, u64, u64, &str, u64); 5] = [
            (
                "sync.max_batch_changes",
                self.sync.max_batch_changes as u64,
                1,
                "a batch carries at least one change",
                d.sync.max_batch_changes as u64,
            ),
            (
                "server.max_connections",
                self.server.max_connections as u64,
                2,
                "an editor and the CLI (`vibesync status`, `vibesync stop`) each need a connection",
                d.server.max_connections as u64,
            ),
            (
                "server.max_frame_bytes",
                self.server.max_frame_bytes as u64,
                MIN_FRAME_BYTES,
                "replies such as `status` must fit in one frame",
                d.server.max_frame_bytes as u64,
            ),
            (
                "storage.wal_segment_bytes",
                self.storage.wal_segment_bytes,
                4096,
                "a WAL segment holds at least one record",
                d.storage.wal_segment_bytes,
            ),
            (
                "storage.registry_cache_bytes",
                self.storage.registry_cache_bytes,
                1 << 20,
                "the registry's cache needs room to work",
                d.storage.registry_cache_bytes,
            ),
        ];
        if let Some((key, got, min, why, default)) = bounds.into_iter().find(|(_, got, min, _, _)| got < min) {
            return Err(format!("{key} = {got}: {why}; set {min} or more (default {default})"));
        }
        // A frame as large as the daemon takes must fit in the bytes budget's burst, or it is
        // refused `RATE_LIMITED` however long its editor waits (docs/PROTOCOL.md §2).
        let frame = self.server.max_frame_bytes as f64;
        if self.limits.bytes_burst.is_nan() || self.limits.bytes_burst < frame {
            return Err(format!(
                "limits.bytes_burst = {}: a frame of up to server.max_frame_bytes ({frame}) must fit in the burst, or it \
                 is refused RATE_LIMITED for good; set {frame} or more (default {})",
                self.limits.bytes_burst, d.limits.bytes_burst
            ));
        }
        check_level(&self.logging.level).map_err(|e| format!("logging.level = {:?}: {e}", self.logging.level))
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

/// The smallest `server.max_frame_bytes` a daemon runs with (64 KiB).
pub const MIN_FRAME_BYTES: u64 = 64 * 1024;

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

    /// Values the daemon cannot run with are refused naming the key and what to set — not
    /// accepted and found out later (a daemon no CLI can reach, a log that stays silent).
    #[test]
    fn unusable_values_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for (toml, key) in [
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[server]\nmax_frame_bytes = 100\n", "server.max_frame_bytes"),
            ("[storage]\nwal_segment_bytes = 0\n", "storage.wal_segment_bytes"),
            ("[storage]\nregistry_cache_bytes = 0\n", "storage.registry_cache_bytes"),
            ("[logging]\nlevel = \"loud\"\n", "logging.level"),
            ("[logging]\nrotation = \"weekly\"\n", "rotation"),
            // A burst below the largest frame: that frame would be RATE_LIMITED for good.
            ("[limits]\nbytes_burst = 1000000\n", "limits.bytes_burst"),
        ] {
            std::fs::write(&p, toml).unwrap();
            let e = Config::load(Some(&p)).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("c.toml"), "{toml}: {e}");
        }
        for ok in ["info", "warn,vibesync_daemon=debug", "OFF", "vibesync_sync=trace"] {
            assert_eq!(check_level(ok), Ok(()), "{ok}");
        }
        std::fs::write(&p, "[logging]\nrotation = \"hourly\"\n").unwrap();
        assert_eq!(Config::load(Some(&p)).unwrap().logging.rotation, Rotation::Hourly);
    }

    #[test]
    fn a_batch_bound_of_zero_changes_is_refused_with_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[sync]\nmax_batch_changes = 0\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("max_batch_changes") && e.contains("c.toml") && e.contains("1 or more"), "{e}");
        std::fs::write(&p, "[sync]\nmax_batch_changes = 1\nmax_batch_mesh_bytes = 0\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!((c.sync.max_batch_changes, c.sync.max_batch_mesh_bytes), (1, 0), "0 bytes: one mesh per batch");
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
    fn source_order_flag_env_default_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("flag.toml");
        let env = dir.path().join("env.toml");
        // Variables are process-wide: this is the only test that sets them.
        std::env::set_var("XDG_CONFIG_HOME", dir.path().join("xdg"));
        std::env::remove_var("VIBESYNC_CONFIG");
        if cfg!(target_os = "linux") {
            assert_eq!(config_source(None), ConfigSource::Embedded);
            let file = dir.path().join("xdg/vibesync/vibesync.toml");
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, "[sync]\nbatch_window_ms = 7\n").unwrap();
            assert_eq!(config_source(None), ConfigSource::DefaultFile(file.clone()));
            assert_eq!(Config::resolve(None).unwrap().0.sync.batch_window_ms, 7);
        }
        std::env::set_var("VIBESYNC_CONFIG", &env);
        assert_eq!(config_source(None), ConfigSource::Env(env.clone()));
        let e = Config::resolve(None).unwrap_err().to_string();
        assert!(e.contains("env.toml") && e.contains("cannot read"), "{e}");
        std::fs::write(&env, "[sync]\nbatch_window_ms = 9\n").unwrap();
        assert_eq!(Config::resolve(None).unwrap().0.sync.batch_window_ms, 9);
        assert_eq!(config_source(Some(&flag)), ConfigSource::Flag(flag.clone()));
        std::env::remove_var("VIBESYNC_CONFIG");
        std::env::remove_var("XDG_CONFIG_HOME");
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
