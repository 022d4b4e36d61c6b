//! Segment files: naming, listing, directory fsync, timestamps and quarantine names.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// Default rotation size of a segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Name of the segment whose first record has `first_seq`: 20 zero-padded digits + `.jsonl`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

/// The first seq encoded in a segment file name, or `None` if the name is not a segment's.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".jsonl")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// One segment file found in the WAL directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
}

/// Segment files of `dir`, ordered by first seq. Other files are ignored (with a warning).
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_segment_name) {
            Some(first_seq) => out.push(SegmentFile { first_seq, path: entry.path() }),
            None => {
                tracing::warn!(file = %entry.path().display(), "ignoring non-segment file in WAL directory")
            }
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

pub(crate) use crate::fsutil::fsync_dir;

/// Create `dir` (and parents) if missing and fsync its parent so the entry is durable.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// An exclusive advisory lock on the WAL directory, released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: Option<File>,
}

/// Lock `dir` exclusively; `Ok(None)` if someone else holds it.
#[cfg(unix)]
pub(crate) fn lock_dir(dir: &Path) -> io::Result<Option<DirLock>> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(dir)?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(DirLock { _file: Some(f) }));
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(None)
    } else {
        Err(err)
    }
}

/// Not implemented off unix: the daemon's own data-dir lock is the only guard there.
#[cfg(not(unix))]
pub(crate) fn lock_dir(dir: &Path) -> io::Result<Option<DirLock>> {
    let _ = dir;
    Ok(Some(DirLock { _file: None }))
}

const TS_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const FILE_TS_FORMAT: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:6]Z");

/// `ts` of a record: RFC 3339, UTC, microseconds, `Z` (e.g. `2026-11-21T09:14:03.123456Z`).
pub fn format_ts(t: OffsetDateTime) -> String {
    t.format(TS_FORMAT).expect("UTC timestamp formats")
}

pub(crate) fn now_ts() -> String {
    format_ts(OffsetDateTime::now_utc())
}

/// A UTC time as it appears in file names: `yyyymmddThhmmss.ffffffZ` (sorts by time).
pub fn file_ts(t: OffsetDateTime) -> String {
    t.format(FILE_TS_FORMAT).expect("UTC timestamp formats")
}

/// Name of a quarantine file for bytes cut from `segment_name` at `offset`:
/// `<segment>.at-<offset>.<UTC yyyymmddThhmmss.ffffffZ>.<kind>`, kind `torn` or `repair`.
pub fn quarantine_file_name(segment_name: &str, offset: u64, kind: &str) -> String {
    format!("{segment_name}.at-{offset}.{}.{kind}", file_ts(OffsetDateTime::now_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(1), "00000000000000000001.jsonl");
        assert_eq!(parse_segment_name("00000000000000000001.jsonl"), Some(1));
        assert_eq!(parse_segment_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("1.jsonl"), None);
        assert_eq!(parse_segment_name("0000000000000000000a.jsonl"), None);
        assert_eq!(parse_segment_name("00000000000000000001.json"), None);
    }

    #[test]
    fn ts_shape() {
        let t = time::macros::datetime!(2026-11-21 09:14:03.1234567 UTC);
        assert_eq!(format_ts(t), "2026-11-21T09:14:03.123456Z");
        let q = quarantine_file_name("00000000000000000001.jsonl", 77, "torn");
        assert!(q.starts_with("00000000000000000001.jsonl.at-77."), "{q}");
        assert!(q.ends_with("Z.torn"), "{q}");
    }
}
