//! Boot recovery: verify every line and the chain over all segments, cut a torn tail off
//! into quarantine, refuse on corruption (or quarantine from it on with `repair`), and build
//! the transaction index.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::anchor::{drop_segments, load_anchor, split_compacted, Anchor};
use crate::chain::ChainState;
use crate::error::WalError;
use crate::record::{RecordHead, SCHEMA_VERSION};
use crate::segment::{ensure_dir, fsync_dir, list_segments, quarantine_file_name, SegmentFile};
use crate::txindex::{TxIndex, TxIndexBuilder};
use crate::wal::{stamp, ResumeAt, SegmentStamp, WalConfig};

/// What `Wal::open` found and did.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Seq of the last good record (0 for an empty log).
    pub last_seq: u64,
    /// `h` of the last good record (`GENESIS_PREV` for an empty log).
    pub last_h: String,
    /// Number of good records in the log.
    pub records: u64,
    /// Segment files in the log after recovery.
    pub segments: usize,
    /// A torn tail that was cut off (normal after a crash during a write).
    pub torn_tail: Option<Quarantined>,
    /// What `repair: true` cut off (only when there was corruption).
    pub repaired: Option<Repaired>,
    /// Open operations: `incomplete` (BEGIN, no COMMIT/ROLLBACK) and `unfinalized`
    /// (COMMIT, no FINAL). After a resume, only operations that began after it.
    pub transactions: TxIndex,
    /// Recovery started after this record (`WalConfig::resume` was used); `records` counts
    /// only the records read: those of the segment holding it, and after.
    pub resumed_after: Option<u64>,
    /// Why `WalConfig::resume` was not used (the whole log was read instead).
    pub resume_rejected: Option<String>,
    /// The compaction anchor the log starts after (docs/WAL.md §11), if it was compacted.
    pub anchor: Option<Anchor>,
    /// Segments a compaction cut short by a crash had left; removed (or archived) now.
    pub finished_compaction: usize,
    pub elapsed: Duration,
}

/// Bytes moved from the end of a segment to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes: u64,
    pub quarantine_path: PathBuf,
    pub reason: String,
}

/// What a repair moved to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// Where the first bad byte was.
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// Total bytes moved to quarantine.
    pub bytes: u64,
    pub quarantine_paths: Vec<PathBuf>,
    /// Segment files removed from the WAL directory (their bytes are in quarantine).
    pub removed_segments: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadKind {
    /// The last line has no `\n` (or the tail is zeros).
    Incomplete,
    /// A complete line that fails its checksum or does not parse.
    Damaged,
    /// A well-formed record that does not continue the chain: never a torn write.
    Chain,
    /// The segment's name does not match the seq that should come next.
    SegmentName,
    /// A valid record from a newer writer (`schema_version` above ours): refuse, never cut.
    NewerSchema { seq: u64, found: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub offset: usize,
    pub kind: BadKind,
    pub reason: String,
}

/// Scan one segment's bytes, advancing `chain` and `tx` over every good record. Returns the
/// first bad spot, if any. Pure: no I/O.
pub(crate) fn scan_segment(
    bytes: &[u8],
    first_seq: u64,
    chain: &mut ChainState,
    tx: &mut TxIndexBuilder,
    records: &mut u64,
) -> Option<Bad> {
    if first_seq != chain.next_seq {
        return Some(Bad {
            offset: 0,
            kind: BadKind::SegmentName,
            reason: format!(
                "segment name says it starts at seq {first_seq} but the next seq is {} (a segment is missing or misnamed)",
                chain.next_seq
            ),
        });
    }
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') else {
            let rest = &bytes[pos..];
            let reason = if rest.iter().all(|&b| b == 0) {
                format!("{} zero bytes after the last complete line", rest.len())
            } else {
                format!("incomplete last line ({} bytes, no newline)", rest.len())
            };
            return Some(Bad { offset: pos, kind: BadKind::Incomplete, reason });
        };
        let line = &bytes[pos..pos + nl + 1];
        let head = match RecordHead::parse_line(line) {
            Ok(h) => h,
            Err(e) => {
                let zero = if line[0] == 0 { " (starts with zero bytes)" } else { "" };
                return Some(Bad { offset: pos, kind: BadKind::Damaged, reason: format!("bad record{zero}: {e}") });
            }
        };
        if head.schema_version > SCHEMA_VERSION {
            return Some(Bad {
                offset: pos,
                kind: BadKind::NewerSchema { seq: head.seq, found: head.schema_version },
                reason: format!("schema_version {} is newer than {SCHEMA_VERSION}", head.schema_version),
            });
        }
        if let Err(e) = chain.check(head.seq, &head.prev) {
            return Some(Bad { offset: pos, kind: BadKind::Chain, reason: e.to_string() });
        }
        chain.advance(head.seq, &head.h);
        tx.observe(&head);
        *records += 1;
        pos += nl + 1;
    }
    None
}

/// A bad spot is a torn tail when it is in the last segment, is line damage (not a chain
/// break) and no complete line follows it: at most one `\n`, at the very end, ignoring
/// trailing zero bytes — and that one line does not end in a whole record after zero bytes
/// ([`record_after_zeros`]).
pub(crate) fn is_torn_tail(kind: BadKind, rest: &[u8]) -> bool {
    if !matches!(kind, BadKind::Incomplete | BadKind::Damaged) {
        return false;
    }
    let end = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let trimmed = &rest[..end];
    match trimmed.iter().position(|&b| b == b'\n') {
        None => true,
        Some(i) => i + 1 == trimmed.len() && record_after_zeros(trimmed).is_none(),
    }
}

/// The seq of a whole record (its checksum holds) that ends the first line of `rest` right
/// after zero bytes: zeros that took the place of a record and its `\n` (a power loss during
/// an unsynced multi-page write persisted a later page and not an earlier one, docs/WAL.md §7)
/// make the zeros and the next record one line. A record never holds a zero byte (JSON
/// escapes control characters), so what follows the line's last zero byte is that record or
/// nothing whole.
pub(crate) fn record_after_zeros(rest: &[u8]) -> Option<u64> {
    let line = &rest[..rest.iter().position(|&b| b == b'\n')? + 1];
    let after = line.iter().rposition(|&b| b == 0)? + 1;
    RecordHead::parse_line(&line[after..]).ok().map(|h| h.seq)
}

pub(crate) struct Recovered {
    pub report: Recovery,
    pub chain: ChainState,
    /// The segment appends continue in, and its length.
    pub tail: Option<(SegmentFile, u64)>,
}

/// Is `resume` the end of a real record of this log? Returns the index of its segment.
fn check_resume(segments: &[SegmentFile], r: &ResumeAt, anchor: Option<&Anchor>) -> Result<(usize, String), String> {
    let i = segments
        .iter()
        .position(|s| s.first_seq == r.segment)
        .ok_or_else(|| format!("no segment starts at seq {}", r.segment))?;
    let before: Vec<&SegmentFile> = segments[..i].iter().collect();
    // Segments compacted since the checkpoint was written are covered by the anchor.
    let sealed: Vec<&SegmentStamp> = r.sealed.iter().filter(|s| anchor.is_none_or(|a| s.first_seq > a.seq)).collect();
    if before.len() != sealed.len() {
        return Err(format!("{} segments before the checkpoint's, it knew {}", before.len(), sealed.len()));
    }
    for (s, known) in before.iter().zip(sealed) {
        let now = stamp(&s.path, s.first_seq).map_err(|e| format!("{}: {e}", s.path.display()))?;
        if now != *known {
            return Err(format!("{} changed since the checkpoint (size or modification time)", s.path.display()));
        }
    }
    let path = &segments[i].path;
    let len = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if r.offset == 0 || r.offset > len || r.seq < r.segment {
        return Err(format!("offset {} is not inside {} ({len} bytes)", r.offset, path.display()));
    }
    // The line that ends at `offset`: read back at most one record's worth of bytes.
    let back = (r.offset).min(MAX_RESUME_LINE);
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; back as usize];
    f.seek(SeekFrom::Start(r.offset - back))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.last() != Some(&b'\n') {
        return Err(format!("byte {} of {} does not end a line", r.offset, path.display()));
    }
    let start = buf[..buf.len() - 1].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if start == 0 && back < r.offset {
        return Err(format!("no record ends at byte {} of {}", r.offset, path.display()));
    }
    let head =
        RecordHead::parse_line(&buf[start..]).map_err(|e| format!("the record before byte {}: {e}", r.offset))?;
    if head.seq != r.seq || head.h != r.h {
        return Err(format!(
            "the record ending at byte {} of {} is seq {} with h {}, not seq {} with h {}",
            r.offset,
            path.display(),
            head.seq,
            head.h,
            r.seq,
            r.h
        ));
    }
    // The checkpoint's own segment is read from its start (it may still have been written
    // after the checkpoint): its first record's `prev` starts the chain there.
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut first = Vec::new();
    std::io::BufRead::read_until(&mut std::io::BufReader::new(&mut f), b'\n', &mut first)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let head = RecordHead::parse_line(&first).map_err(|e| format!("first record of {}: {e}", path.display()))?;
    Ok((i, head.prev.to_string()))
}

/// Longest line `check_resume` reads back (records are far smaller; see docs/WAL.md §2).
const MAX_RESUME_LINE: u64 = 64 << 20;

pub(crate) fn recover(cfg: &WalConfig) -> Result<Recovered, WalError> {
    let started = Instant::now();
    let dir = &cfg.dir;
    let all = list_segments(dir).map_err(|e| WalError::io("list", dir, e))?;
    let anchor = match load_anchor(dir) {
        Ok(a) => a,
        // Nothing was removed yet (the log still starts at seq 1): the anchor is not needed.
        Err(e) if all.first().is_none_or(|s| s.first_seq == 1) => {
            tracing::warn!("{e}; the log still starts at seq 1, so the anchor is set aside and not used");
            set_aside_anchor(cfg)?;
            None
        }
        Err(e) if cfg.repair => {
            tracing::warn!("{e}; repairing");
            let first = all.first().expect("checked above");
            Some(crate::anchor::reanchor(dir, &cfg.quarantine_dir, first)?)
        }
        Err(e) => return Err(e),
    };
    let (mut segments, leftovers) = split_compacted(all, anchor.as_ref());
    if !leftovers.is_empty() {
        // A compaction was cut short after its anchor was durable: finish it.
        tracing::warn!(
            anchor_seq = anchor.as_ref().map_or(0, |a| a.seq),
            segments = leftovers.len(),
            "WAL: finishing a compaction interrupted after its anchor was written"
        );
        drop_segments(dir, &leftovers, cfg.archive_dir.as_deref())?;
    }
    let mut chain = anchor.as_ref().map_or_else(ChainState::genesis, Anchor::chain);
    let mut tx = TxIndexBuilder::new();
    let mut records = 0u64;
    let mut torn_tail = None;
    let mut repaired = None;
    let mut tail_len = 0u64;
    let mut first = 0;
    // (segment index, byte offset) recovery starts at.
    let mut resume_from: Option<(usize, u64)> = None;
    let mut resume_rejected = None;
    if let Some(r) = &cfg.resume {
        match check_resume(&segments, r, anchor.as_ref()) {
            Ok((i, prev)) => {
                chain = ChainState { next_seq: segments[i].first_seq, last_h: prev };
                tx = TxIndexBuilder::resuming();
                first = i;
                resume_from = Some((i, 0));
            }
            Err(why) => {
                tracing::warn!("WAL: not resuming after seq {} ({why}); reading the whole log", r.seq);
                resume_rejected = Some(why);
            }
        }
    }

    for i in first..segments.len() {
        let seg = segments[i].clone();
        let base = match resume_from {
            Some((j, off)) if j == i => off,
            _ => 0,
        };
        let bytes = read_from(&seg.path, base)?;
        tail_len = base + bytes.len() as u64;
        let expect_first = if base > 0 { chain.next_seq } else { seg.first_seq };
        let Some(mut bad) = scan_segment(&bytes, expect_first, &mut chain, &mut tx, &mut records) else {
            continue;
        };
        let bytes = if base > 0 {
            // Offsets below are positions in the file.
            bad.offset += base as usize;
            let mut all = vec![0u8; base as usize];
            all.extend_from_slice(&bytes);
            all
        } else {
            bytes
        };
        if let BadKind::NewerSchema { seq, found } = bad.kind {
            return Err(WalError::NewerSchema {
                file: seg.path.clone(),
                offset: bad.offset as u64,
                seq,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let rest = &bytes[bad.offset..];
        let is_last = i + 1 == segments.len();
        if is_last && is_torn_tail(bad.kind, rest) {
            let q = quarantine(cfg, &seg.path, bad.offset as u64, rest, "torn")?;
            truncate(&seg.path, bad.offset as u64)?;
            fsync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
            tracing::warn!(
                file = %seg.path.display(),
                offset = bad.offset,
                bytes = rest.len(),
                quarantine = %q.display(),
                last_seq = chain.last_seq(),
                "WAL torn tail cut off: {}",
                bad.reason
            );
            torn_tail = Some(Quarantined {
                file: seg.path.clone(),
                offset: bad.offset as u64,
                bytes: rest.len() as u64,
                quarantine_path: q,
                reason: bad.reason,
            });
            tail_len = bad.offset as u64;
            break;
        }
        let later = &segments[i + 1..];
        if !cfg.repair {
            if bad.kind == BadKind::SegmentName && chain.next_seq < seg.first_seq {
                return Err(WalError::MissingSegment {
                    file: seg.path.clone(),
                    first_missing: chain.next_seq,
                    last_missing: seg.first_seq - 1,
                    first_found: seg.first_seq,
                    later_segments: later.len(),
                    from: match &cfg.archive_dir {
                        Some(a) => format!("a backup or the WAL archive directory {}", a.display()),
                        None => "a backup".to_string(),
                    },
                    reason: match &anchor {
                        Some(a) => format!(
                            "the compaction anchor ({}) covers records up to seq {} only, so they were not compacted",
                            crate::anchor::anchor_path(dir).display(),
                            a.seq
                        ),
                        None => format!(
                            "there is no compaction anchor ({}), so they were not compacted",
                            crate::anchor::anchor_path(dir).display()
                        ),
                    },
                });
            }
            let mut reason = bad.reason;
            reason.push_str(&format!(
                "; {} bytes follow in this segment and {} later segment(s)",
                rest.len() - rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |n| n + 1),
                later.len()
            ));
            if let Some(seq) = record_after_zeros(rest) {
                reason.push_str(&format!("; a whole record (seq {seq}) follows the zero bytes in that line"));
            }
            if rest.first() == Some(&0) || record_after_zeros(rest).is_some() {
                reason.push_str(
                    "; zero bytes followed by records are typical of a power loss during a write \
                     that was never acknowledged",
                );
            }
            return Err(WalError::Corrupt { file: seg.path.clone(), offset: bad.offset as u64, reason });
        }
        let r = repair(cfg, &seg, bad.offset as u64, rest, later, &bad.reason)?;
        tracing::warn!(
            file = %seg.path.display(),
            offset = bad.offset,
            bytes = r.bytes,
            removed_segments = r.removed_segments.len(),
            last_seq = chain.last_seq(),
            "WAL repaired: everything from the first bad byte on moved to quarantine: {}",
            bad.reason
        );
        let removed_this = bad.offset == 0;
        repaired = Some(r);
        segments.truncate(if removed_this { i } else { i + 1 });
        tail_len = if removed_this {
            match segments.last() {
                Some(s) => fs::metadata(&s.path).map_err(|e| WalError::io("stat", &s.path, e))?.len(),
                None => 0,
            }
        } else {
            bad.offset as u64
        };
        break;
    }

    if let (Some(r), Some(_)) = (&cfg.resume, resume_from) {
        if chain.last_seq() < r.seq {
            // A torn tail or a repair cut the log below the checkpointed record: it no longer
            // describes this log. Read everything again, as without it.
            let why = format!("the log now ends at seq {}, before the checkpointed seq {}", chain.last_seq(), r.seq);
            tracing::warn!("WAL: {why}; reading the whole log");
            let mut again = cfg.clone();
            again.resume = None;
            let mut out = recover(&again)?;
            out.report.resume_rejected = Some(why);
            out.report.torn_tail = out.report.torn_tail.or(torn_tail);
            out.report.repaired = out.report.repaired.or(repaired);
            return Ok(out);
        }
    }
    let tail = segments.last().cloned().map(|s| (s, tail_len));
    let report = Recovery {
        last_seq: chain.last_seq(),
        last_h: chain.last_h.clone(),
        records,
        segments: segments.len(),
        torn_tail,
        repaired,
        transactions: tx.finish(),
        resumed_after: resume_from.and(cfg.resume.as_ref().map(|r| r.seq)),
        resume_rejected,
        anchor,
        finished_compaction: leftovers.len(),
        elapsed: started.elapsed(),
    };
    tracing::info!(
        last_seq = report.last_seq,
        records = report.records,
        segments = report.segments,
        incomplete = report.transactions.incomplete.len(),
        unfinalized = report.transactions.unfinalized.len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "WAL recovered"
    );
    Ok(Recovered { report, chain, tail })
}

/// Move a damaged anchor that is not needed (the log still starts at seq 1) to quarantine.
fn set_aside_anchor(cfg: &WalConfig) -> Result<(), WalError> {
    let from = crate::anchor::anchor_path(&cfg.dir);
    let q = &cfg.quarantine_dir;
    ensure_dir(q).map_err(|e| WalError::io("create quarantine directory", q, e))?;
    // `quarantine/anchor-<UTC yyyymmddThhmmss.ffffffZ>.json` (docs/WAL.md §11); the WAL
    // directory is fsync'd too.
    crate::fsutil::set_aside(&from, q, "anchor", ".json")
        .map(|_| ())
        .map_err(|e| WalError::io("move to quarantine", &from, e))
}

/// The bytes of `path` from `offset` on.
fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, WalError> {
    if offset == 0 {
        return fs::read(path).map_err(|e| WalError::io("read", path, e));
    }
    let mut f = fs::File::open(path).map_err(|e| WalError::io("open", path, e))?;
    let mut out = Vec::new();
    f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_to_end(&mut out)).map_err(|e| WalError::io("read", path, e))?;
    Ok(out)
}

/// Quarantine everything from `offset` in `seg` and all `later` segments, then cut.
/// Order: copy to quarantine and fsync first, only then remove/truncate, so a crash in
/// between loses nothing (at worst the quarantine holds a copy twice).
fn repair(
    cfg: &WalConfig,
    seg: &SegmentFile,
    offset: u64,
    rest: &[u8],
    later: &[SegmentFile],
    reason: &str,
) -> Result<Repaired, WalError> {
    let mut paths = Vec::new();
    let mut bytes = 0u64;
    if !rest.is_empty() {
        paths.push(quarantine(cfg, &seg.path, offset, rest, "repair")?);
        bytes += rest.len() as u64;
    }
    for s in later {
        let data = fs::read(&s.path).map_err(|e| WalError::io("read", &s.path, e))?;
        paths.push(quarantine(cfg, &s.path, 0, &data, "repair")?);
        bytes += data.len() as u64;
    }
    let mut removed = Vec::new();
    for s in later.iter().rev() {
        fs::remove_file(&s.path).map_err(|e| WalError::io("remove", &s.path, e))?;
        removed.push(s.path.clone());
    }
    if offset == 0 {
        // A segment cut to nothing would keep a name that may be wrong: remove it.
        fs::remove_file(&seg.path).map_err(|e| WalError::io("remove", &seg.path, e))?;
        removed.push(seg.path.clone());
    } else {
        truncate(&seg.path, offset)?;
    }
    fsync_dir(&cfg.dir).map_err(|e| WalError::io("fsync directory", &cfg.dir, e))?;
    removed.reverse();
    Ok(Repaired {
        file: seg.path.clone(),
        offset,
        reason: reason.to_string(),
        bytes,
        quarantine_paths: paths,
        removed_segments: removed,
    })
}

/// Write `data` (cut from `segment` at `offset`) to a new quarantine file, durably.
fn quarantine(cfg: &WalConfig, segment: &Path, offset: u64, data: &[u8], kind: &str) -> Result<PathBuf, WalError> {
    let qdir = &cfg.quarantine_dir;
    ensure_dir(qdir).map_err(|e| WalError::io("create quarantine directory", qdir, e))?;
    let seg_name = segment.file_name().and_then(|n| n.to_str()).unwrap_or("segment");
    let base = quarantine_file_name(seg_name, offset, kind);
    for attempt in 0u32.. {
        let name = if attempt == 0 { base.clone() } else { format!("{base}.{attempt}") };
        let path = qdir.join(name);
        let mut f = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(WalError::io("create quarantine file", path, e)),
        };
        f.write_all(data).map_err(|e| WalError::io("write quarantine file", &path, e))?;
        f.sync_all().map_err(|e| WalError::io("fsync quarantine file", &path, e))?;
        fsync_dir(qdir).map_err(|e| WalError::io("fsync directory", qdir, e))?;
        return Ok(path);
    }
    unreachable!("u32 attempts exhausted")
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new().write(true).open(path).map_err(|e| WalError::io("open for truncation", path, e))?;
    f.set_len(len).map_err(|e| WalError::io("truncate", path, e))?;
    f.sync_all().map_err(|e| WalError::io("fsync after truncation", path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_rules() {
        use BadKind::*;
        assert!(is_torn_tail(Incomplete, b"{\"seq\":4"));
        assert!(is_torn_tail(Incomplete, &[0u8; 100]));
        assert!(is_torn_tail(Damaged, b"garbage\n"));
        assert!(is_torn_tail(Damaged, b"garbage\n\0\0\0"));
        assert!(is_torn_tail(Damaged, b"{\"seq\":4\0\0\0\0"));
        assert!(!is_torn_tail(Damaged, b"garbage\n{\"seq\":5}\n"));
        assert!(!is_torn_tail(Damaged, b"garbage\n\n"));
        assert!(!is_torn_tail(Chain, b"{\"seq\":9}\n"));
        assert!(!is_torn_tail(SegmentName, b""));
    }
}
