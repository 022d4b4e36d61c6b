//! The one error type of this crate. Every variant names the file (and offset or seq where
//! it has one) and the message says what to do.

use std::path::PathBuf;

/// Why the WAL refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A filesystem call failed outside the append path (open, recovery, reading).
    #[error("WAL I/O error: could not {action} {}: {source}. Check that the path exists, is writable and the disk is not full", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A bad record followed by good ones (or a chain break, a seq gap, a bad record in a
    /// non-last segment). Boot stops; nothing was changed.
    #[error(
        "WAL corruption in {} at byte {offset}: {reason}. Nothing was changed. \
         Run `vibesync verify` to list every problem, then `vibesync serve --repair` to move \
         everything from this byte on to quarantine (the records after it will be lost from \
         the log but kept in the quarantine directory)",
        file.display()
    )]
    Corrupt { file: PathBuf, offset: u64, reason: String },

    /// Records are missing between two segments (or before the first one) and no compaction
    /// anchor covers them: a segment was deleted or moved away. Boot stops; nothing was
    /// changed. The remedy is to put the segment back, not `--repair`: repair would move this
    /// segment and every later one to quarantine, so every record after the gap would leave
    /// the log.
    #[error(
        "WAL records {first_missing}..{last_missing} are missing in front of {}: {reason}. \
         Nothing was changed. Put the missing segment back (from {from}) and start the daemon \
         again. Only if it is lost for good: `vibesync serve \
         --repair` moves {} and {later_segments} later segment(s) to quarantine, and every \
         record from seq {first_found} on is then lost from the log (kept in the quarantine \
         directory)",
        file.display(),
        file.display()
    )]
    MissingSegment {
        /// The first segment found after the gap.
        file: PathBuf,
        first_missing: u64,
        last_missing: u64,
        /// The first seq of `file`.
        first_found: u64,
        later_segments: usize,
        /// Whether an anchor exists and how far it reaches.
        reason: String,
        /// Where a copy may be: "a backup", and the WAL archive directory when compaction
        /// archives segments (`WalConfig::archive_dir`).
        from: String,
    },

    /// The compaction anchor (`wal/anchor.json`) is damaged while the log needs it. Boot
    /// stops; nothing was changed. `reason` says what to do (a good copy back, or `--repair`,
    /// which sets it aside and re-anchors: no record of the kept log is lost).
    #[error("{reason}. Nothing was changed")]
    BadAnchor { file: PathBuf, reason: String },

    /// A write, fdatasync or read-back verification failed. The WAL stopped; this append and
    /// every later one fail. Nothing in the failed batch was acknowledged.
    #[error(
        "WAL is poisoned: {cause} (file {}, byte {offset}, first seq {seq}). No further \
         appends are possible. Stop the daemon, check the disk (space, dmesg for I/O errors), \
         then restart: boot recovery will verify the log",
        file.display()
    )]
    Poisoned { file: PathBuf, offset: u64, seq: u64, cause: String },

    /// A record was written by a newer VibeSync (higher `schema_version`). Never repaired:
    /// the records are fine, this build is too old.
    #[error(
        "WAL record seq {seq} in {} at byte {offset} has schema_version {found}, but this build \
         understands only up to {supported}. Nothing was changed. Run the newer VibeSync that \
         wrote it (do not use --repair: it would throw those records away)",
        file.display()
    )]
    NewerSchema { file: PathBuf, offset: u64, seq: u64, found: u32, supported: u32 },

    /// `close()` was called (or the writer is gone); nothing more can be appended.
    #[error("WAL is closed: the daemon is shutting down and accepts no more appends")]
    Closed,

    /// Another process (or another `Wal` in this process) holds the WAL directory.
    #[error(
        "WAL directory {} is locked by another process: is another `vibesync serve` running \
         on this data directory? Stop it first",
        dir.display()
    )]
    Locked { dir: PathBuf },

    /// The configuration cannot work.
    #[error("invalid WAL configuration: {0}")]
    InvalidConfig(String),
}

impl WalError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io { action, path: path.into(), source }
    }
}
