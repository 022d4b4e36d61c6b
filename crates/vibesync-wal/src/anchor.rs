//! Compaction (docs/WAL.md §11): closed segments whose records every derived store already
//! holds are removed (or archived), and `wal/anchor.json` keeps the chain verifiable: the
//! seq and `h` of the last removed record, so the first kept record's `prev` still has an
//! anchored value to match.
//!
//! The anchor also carries, opaquely, what derived stores need of the removed records
//! (`carry`: records the daemon replays into its governance index; `base`: a snapshot the
//! registry is rebuilt from). The WAL never interprets either.
//!
//! Order of a compaction (a crash at any point leaves a log that opens):
//! 1. the new anchor is written durably (temporary file, fsync, rename, directory fsync);
//! 2. then the covered segments are removed (or moved to the archive), oldest first, and the
//!    directory is fsync'd. Segments left over by a crash between 1 and 2 (first seq at or
//!    below the anchor) are skipped by readers and removed by the next `Wal::open`.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::ChainState;
use crate::error::WalError;
use crate::record::{Record, RecordHead};
use crate::segment::{ensure_dir, fsync_dir, list_segments, now_ts, SegmentFile};

/// File name of the anchor inside the WAL directory.
pub const ANCHOR_FILE: &str = "anchor.json";
/// Format version of the anchor file.
pub const ANCHOR_VERSION: u32 = 1;

/// `wal/anchor.json`: where the kept log starts. See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub version: u32,
    /// Seq of the last removed record: the kept log starts at `seq + 1`.
    pub seq: u64,
    /// `h` of that record: the first kept record's `prev`.
    pub h: String,
    /// `ts` of that record (history before it is only in the audit repository).
    pub ts: String,
    /// Records at or before `seq` that derived stores still need, in seq order (opaque).
    pub carry: Vec<Record>,
    /// Derived stores' snapshot taken when the anchor was written (opaque; `null` if none).
    pub base: serde_json::Value,
    /// Segments removed so far, over every compaction.
    pub removed_segments: u64,
    pub written_at: String,
}

impl Anchor {
    /// The chain state the first kept record continues.
    pub fn chain(&self) -> ChainState {
        ChainState { next_seq: self.seq + 1, last_h: self.h.clone() }
    }
}

pub fn anchor_path(wal_dir: &Path) -> PathBuf {
    wal_dir.join(ANCHOR_FILE)
}

/// Why an anchor file cannot be used.
fn damaged(path: &Path, reason: impl std::fmt::Display) -> WalError {
    WalError::BadAnchor {
        file: path.to_path_buf(),
        reason: format!(
            "the compaction anchor is damaged ({reason}); the records before the first kept segment were \
             compacted, so the chain cannot be checked from its start. Put back a good copy of {} (from a \
             backup), or run `vibesync serve --repair`, which sets it aside and re-anchors the chain at the \
             first kept record (that one link is then unproven; governance records it carried are lost)",
            path.display()
        ),
    }
}

/// Read `wal/anchor.json`. `Ok(None)`: the log was never compacted. A torn, edited or
/// unreadable file is [`WalError::BadAnchor`] naming it.
pub fn load_anchor(wal_dir: &Path) -> Result<Option<Anchor>, WalError> {
    let path = anchor_path(wal_dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("read", &path, e)),
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| damaged(&path, format!("not UTF-8: {e}")))?;
    let (body, sum) = text
        .strip_suffix('\n')
        .and_then(|t| t.rsplit_once('\n'))
        .ok_or_else(|| damaged(&path, "torn: no checksum line"))?;
    if blake3::hash(body.as_bytes()).to_hex().as_str() != sum {
        return Err(damaged(&path, "checksum mismatch: torn or edited"));
    }
    let a: Anchor = serde_json::from_str(body).map_err(|e| damaged(&path, e))?;
    if a.version != ANCHOR_VERSION {
        return Err(damaged(&path, format!("version {} (this build reads {ANCHOR_VERSION})", a.version)));
    }
    Ok(Some(a))
}

/// Write the anchor durably: temporary file, fsync, rename, directory fsync.
pub(crate) fn write_anchor(wal_dir: &Path, a: &Anchor) -> Result<(), WalError> {
    let path = anchor_path(wal_dir);
    let body = serde_json::to_string(a).map_err(|e| WalError::io("encode", &path, std::io::Error::other(e)))?;
    let sum = blake3::hash(body.as_bytes()).to_hex();
    let tmp = wal_dir.join(format!(".{ANCHOR_FILE}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(format!("{body}\n{sum}\n").as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        fsync_dir(wal_dir)
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        WalError::io("write", &path, e)
    })
}

/// The segments a reader or recovery uses: those after the anchor. Leftovers of a compaction
/// cut by a crash (first seq at or below the anchor's seq) are returned apart.
pub(crate) fn split_compacted(
    segments: Vec<SegmentFile>,
    anchor: Option<&Anchor>,
) -> (Vec<SegmentFile>, Vec<SegmentFile>) {
    match anchor {
        None => (segments, Vec::new()),
        Some(a) => {
            let (left, kept): (Vec<_>, Vec<_>) = segments.into_iter().partition(|s| s.first_seq <= a.seq);
            (kept, left)
        }
    }
}

/// Remove (or archive) segments a written anchor already covers.
pub(crate) fn drop_segments(wal_dir: &Path, segs: &[SegmentFile], archive: Option<&Path>) -> Result<(), WalError> {
    if segs.is_empty() {
        return Ok(());
    }
    if let Some(dir) = archive {
        ensure_dir(dir).map_err(|e| WalError::io("create archive directory", dir, e))?;
    }
    for s in segs {
        match archive {
            Some(dir) => {
                let to = dir.join(s.path.file_name().unwrap_or_default());
                fs::rename(&s.path, &to).map_err(|e| WalError::io("archive", &s.path, e))?;
            }
            None => fs::remove_file(&s.path).map_err(|e| WalError::io("remove", &s.path, e))?,
        }
    }
    if let Some(dir) = archive {
        fsync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    fsync_dir(wal_dir).map_err(|e| WalError::io("fsync directory", wal_dir, e))
}

/// What [`compact`] would remove: the closed segments whose every record is at or below
/// `upto`, ending right before a kept segment. `None` if there is nothing to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPlan {
    /// The new anchor's seq: the last record of the last removed segment.
    pub anchor_seq: u64,
    /// Segment files to remove, oldest first.
    pub segments: Vec<PathBuf>,
    /// Their total size.
    pub bytes: u64,
}

/// Plan a compaction up to `upto` (inclusive). The current (last) segment is never removed.
pub fn plan_compaction(wal_dir: &Path, upto: u64) -> Result<Option<CompactionPlan>, WalError> {
    let anchor = load_anchor(wal_dir)?;
    let all = list_segments(wal_dir).map_err(|e| WalError::io("list", wal_dir, e))?;
    let (segs, _) = split_compacted(all, anchor.as_ref());
    let mut n = 0;
    while n + 1 < segs.len() && segs[n + 1].first_seq - 1 <= upto {
        n += 1;
    }
    if n == 0 {
        return Ok(None);
    }
    let mut bytes = 0;
    for s in &segs[..n] {
        bytes += fs::metadata(&s.path).map_err(|e| WalError::io("stat", &s.path, e))?.len();
    }
    Ok(Some(CompactionPlan {
        anchor_seq: segs[n].first_seq - 1,
        segments: segs[..n].iter().map(|s| s.path.clone()).collect(),
        bytes,
    }))
}

/// What [`compact`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    pub anchor: Anchor,
    pub removed: Vec<PathBuf>,
    pub bytes: u64,
}

/// A test hook: stop a compaction right after the anchor is durable (as a crash would).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactStop {
    Never,
    AfterAnchor,
}

/// Carry out `plan`: check that the last removed record is intact and that the first kept
/// record chains to it, write the anchor (with `carry` and `base` from the caller), then
/// remove the segments (or move them to `archive`). Safe beside a running writer: it never
/// touches the current segment. The caller guarantees derived stores no longer need the
/// removed records (docs/WAL.md §11).
pub fn compact(
    wal_dir: &Path,
    plan: &CompactionPlan,
    carry: Vec<Record>,
    base: serde_json::Value,
    archive: Option<&Path>,
    stop: CompactStop,
) -> Result<Compacted, WalError> {
    let last_removed = plan.segments.last().ok_or_else(|| WalError::InvalidConfig("empty compaction plan".into()))?;
    let tail = last_line(last_removed)?;
    let last = Record::parse_line(&tail).map_err(|e| WalError::Corrupt {
        file: last_removed.clone(),
        offset: 0,
        reason: format!("its last record is damaged ({e}); run `vibesync verify`"),
    })?;
    if last.seq != plan.anchor_seq {
        return Err(WalError::Corrupt {
            file: last_removed.clone(),
            offset: 0,
            reason: format!("it ends at seq {} but the next segment starts at seq {}", last.seq, plan.anchor_seq + 1),
        });
    }
    let next = wal_dir.join(crate::segment::segment_file_name(plan.anchor_seq + 1));
    let first_kept = first_line(&next)?;
    let head = RecordHead::parse_line(&first_kept).map_err(|e| WalError::Corrupt {
        file: next.clone(),
        offset: 0,
        reason: format!("its first record is damaged ({e})"),
    })?;
    if head.prev != last.h {
        return Err(WalError::Corrupt {
            file: next.clone(),
            offset: 0,
            reason: format!("its first record's prev {} is not the h {} of seq {}", head.prev, last.h, last.seq),
        });
    }
    let previous = load_anchor(wal_dir)?;
    let anchor = Anchor {
        version: ANCHOR_VERSION,
        seq: last.seq,
        h: last.h.clone(),
        ts: last.ts.clone(),
        carry,
        base,
        removed_segments: previous.map_or(0, |a| a.removed_segments) + plan.segments.len() as u64,
        written_at: now_ts(),
    };
    write_anchor(wal_dir, &anchor)?;
    if stop == CompactStop::AfterAnchor {
        return Ok(Compacted { anchor, removed: Vec::new(), bytes: 0 });
    }
    let segs: Vec<SegmentFile> = plan
        .segments
        .iter()
        .map(|p| SegmentFile {
            first_seq: p.file_name().and_then(|n| n.to_str()).and_then(crate::parse_segment_name).unwrap_or(0),
            path: p.clone(),
        })
        .collect();
    drop_segments(wal_dir, &segs, archive)?;
    tracing::info!(
        anchor_seq = anchor.seq,
        removed = segs.len(),
        bytes = plan.bytes,
        archived = archive.is_some(),
        "WAL compacted"
    );
    Ok(Compacted { anchor, removed: plan.segments.clone(), bytes: plan.bytes })
}

fn first_line(path: &Path) -> Result<Vec<u8>, WalError> {
    let f = fs::File::open(path).map_err(|e| WalError::io("open", path, e))?;
    let mut line = Vec::new();
    BufReader::new(f).read_until(b'\n', &mut line).map_err(|e| WalError::io("read", path, e))?;
    Ok(line)
}

fn last_line(path: &Path) -> Result<Vec<u8>, WalError> {
    let mut f = fs::File::open(path).map_err(|e| WalError::io("open", path, e))?;
    let len = f.metadata().map_err(|e| WalError::io("stat", path, e))?.len();
    let mut back = 64 * 1024u64;
    loop {
        let n = back.min(len);
        let mut buf = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(len - n))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| WalError::io("read", path, e))?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(buf[i + 1..].to_vec()),
            None if n == len => return Ok(buf),
            None => back *= 4,
        }
    }
}

/// Re-anchor after a damaged anchor (`--repair`): the chain is taken to start at the first
/// kept record's `prev`. The damaged file is moved to `quarantine` first.
pub(crate) fn reanchor(wal_dir: &Path, quarantine: &Path, first: &SegmentFile) -> Result<Anchor, WalError> {
    let line = first_line(&first.path)?;
    let head = RecordHead::parse_line(&line).map_err(|e| WalError::Corrupt {
        file: first.path.clone(),
        offset: 0,
        reason: format!("cannot re-anchor: its first record is damaged ({e})"),
    })?;
    ensure_dir(quarantine).map_err(|e| WalError::io("create quarantine directory", quarantine, e))?;
    let from = anchor_path(wal_dir);
    if from.exists() {
        // `quarantine/anchor-<UTC yyyymmddThhmmss.ffffffZ>.json` (docs/WAL.md §11).
        crate::fsutil::set_aside(&from, quarantine, "anchor", ".json")
            .map_err(|e| WalError::io("move to quarantine", &from, e))?;
    }
    let a = Anchor {
        version: ANCHOR_VERSION,
        seq: head.seq - 1,
        h: head.prev.to_string(),
        ts: String::new(),
        carry: Vec::new(),
        base: serde_json::Value::Null,
        removed_segments: 0,
        written_at: now_ts(),
    };
    write_anchor(wal_dir, &a)?;
    tracing::warn!(seq = a.seq, "WAL re-anchored at the first kept record after a damaged anchor (repair)");
    Ok(a)
}
