//! Read-only access for offline tools (`vibesync tail`, `vibesync verify`, registry
//! rebuild). Never modifies anything and works while the daemon is down or running.
//!
//! [`Reader`] iterates records in order across segments with their file and byte offset,
//! checking every checksum and the chain as it goes (problems are yielded as `Err` items
//! and reading continues). It is not fused: at the end of the log `next()` returns `None`,
//! and calling it again later picks up records written since (`tail --follow`). An
//! incomplete last line is left alone until its newline arrives.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::anchor::{load_anchor, Anchor};
use crate::chain::{ChainBreak, ChainState};
use crate::error::WalError;
use crate::record::{LineError, Record, SCHEMA_VERSION};
use crate::segment::{list_segments, segment_file_name};

/// A record and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub record: Record,
    pub file: PathBuf,
    /// Byte offset of the line's first byte in `file`.
    pub offset: u64,
    /// Line length including `\n`.
    pub len: u64,
}

/// Where a reader stands: the next line starts at `offset` in the segment whose first seq
/// is `segment`. Save it to resume with [`Reader::open_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The line's `h` does not match its content.
    BadChecksum,
    /// No checksum suffix, or not a valid record.
    Unparsable,
    /// `prev` is not the previous record's `h`.
    ChainBreak,
    /// A seq is missing, repeated or out of order (or a segment name does not fit).
    SeqGap,
    /// Incomplete or zero-filled bytes after the last complete line.
    TornTail,
    /// A file could not be read.
    Io,
    /// The compaction anchor (`wal/anchor.json`) is damaged while the log needs it.
    BadAnchor,
    /// A valid record written by a newer VibeSync (`schema_version` above this build's): the
    /// daemon refuses to start on it (docs/WAL.md §2), so it is no clean log either.
    NewerSchema,
}

/// Something wrong in the log, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub kind: ProblemKind,
    pub description: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}: {:?}: {}", self.file.display(), self.offset, self.kind, self.description)
    }
}

struct Current {
    first_seq: u64,
    path: PathBuf,
    reader: BufReader<File>,
    /// Start of the next unread line.
    offset: u64,
    /// Whether a record of this segment has been seen (to check it against the name).
    seen_record: bool,
}

/// Iterator over the records of a WAL directory. See the module docs.
pub struct Reader {
    dir: PathBuf,
    cur: Option<Current>,
    /// Where to start if no segment is open yet.
    start: Option<Position>,
    /// `None` when the chain is unknown (after a bad line, or when resuming mid-log).
    chain: Option<ChainState>,
    line: Vec<u8>,
    stashed: Option<Entry>,
    failed: bool,
    /// The compaction anchor the log starts after (docs/WAL.md §11).
    anchor: Option<Anchor>,
    /// `(after, upto)`: the lines of records with `after < seq <= upto` were verified by this
    /// process already (boot's recovery pass): they are not hashed again.
    verified: Option<(u64, u64)>,
}

impl Reader {
    /// Read from the first record of the log: seq 1, or the first record after the
    /// compaction anchor (docs/WAL.md §11), whose `prev` must be the anchor's `h`. A damaged
    /// anchor in front of a compacted log is [`WalError::Corrupt`] (it names the file).
    pub fn open(dir: impl AsRef<Path>) -> Result<Reader, WalError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(WalError::io(
                "open WAL directory",
                &dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            ));
        }
        let anchor = match load_anchor(&dir) {
            Ok(a) => a,
            Err(e) => {
                let segs = list_segments(&dir).map_err(|e| WalError::io("list", &dir, e))?;
                if segs.first().is_some_and(|s| s.first_seq != 1) {
                    return Err(e);
                }
                None // nothing was removed yet: the anchor is not needed (boot sets it aside)
            }
        };
        Ok(Reader {
            dir,
            cur: None,
            start: None,
            chain: Some(anchor.as_ref().map_or_else(ChainState::genesis, Anchor::chain)),
            line: Vec::new(),
            stashed: None,
            failed: false,
            anchor,
            verified: None,
        })
    }

    /// The lines of records with `after < seq <= upto` were verified by this process's WAL
    /// recovery (the same bytes, under the data directory's lock): they are not hashed again.
    /// Their form, the chain and every other record are checked as always (docs/WAL.md §5).
    pub fn verified(mut self, after: u64, upto: u64) -> Reader {
        self.verified = Some((after, upto));
        self
    }

    /// Resume at a saved position. The first record read is not checked against the chain.
    pub fn open_at(dir: impl AsRef<Path>, pos: Position) -> Result<Reader, WalError> {
        let mut r = Reader::open(dir)?;
        r.start = Some(pos);
        r.chain = None;
        Ok(r)
    }

    /// Start reading at the end of the log: only records written from now on are returned
    /// (`tail --follow` without history).
    pub fn open_at_end(dir: impl AsRef<Path>) -> Result<Reader, WalError> {
        let dir = dir.as_ref();
        let segs = list_segments(dir).map_err(|e| WalError::io("list", dir, e))?;
        match segs.last() {
            Some(s) => {
                let len = std::fs::metadata(&s.path).map_err(|e| WalError::io("stat", &s.path, e))?.len();
                // Back up to the last complete line so a line being written is not skipped.
                let data = std::fs::read(&s.path).map_err(|e| WalError::io("read", &s.path, e))?;
                let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i as u64 + 1).min(len);
                Reader::open_at(dir, Position { segment: s.first_seq, offset: end })
            }
            None => Reader::open(dir),
        }
    }

    /// The compaction anchor this reader started after, if the log was compacted.
    pub fn anchor(&self) -> Option<&Anchor> {
        self.anchor.as_ref()
    }

    /// Where the next line will be read from.
    pub fn position(&self) -> Position {
        match (&self.cur, &self.start) {
            (Some(c), _) => Position { segment: c.first_seq, offset: c.offset },
            (None, Some(p)) => *p,
            (None, None) => Position { segment: 1, offset: 0 },
        }
    }

    /// The file currently being read.
    pub fn current_file(&self) -> Option<&Path> {
        self.cur.as_ref().map(|c| c.path.as_path())
    }

    fn problem(&self, path: &Path, offset: u64, kind: ProblemKind, description: String) -> Problem {
        Problem { file: path.to_path_buf(), offset, kind, description }
    }

    /// Open the segment after the current one (or the first / the start position's), if any.
    fn advance_segment(&mut self) -> Result<bool, Problem> {
        let segs = list_segments(&self.dir)
            .map_err(|e| self.problem(&self.dir, 0, ProblemKind::Io, format!("cannot list segments: {e}")))?;
        let (next, offset) = match (&self.cur, self.start) {
            (Some(c), _) => match segs.iter().find(|s| s.first_seq > c.first_seq) {
                Some(s) => (s.clone(), 0),
                None => return Ok(false),
            },
            (None, Some(p)) => match segs.iter().find(|s| s.first_seq == p.segment) {
                Some(s) => (s.clone(), p.offset),
                None => {
                    let path = self.dir.join(segment_file_name(p.segment));
                    return Err(self.problem(
                        &path,
                        p.offset,
                        ProblemKind::Io,
                        "segment to resume from no longer exists".into(),
                    ));
                }
            },
            (None, None) => match segs.iter().find(|s| self.anchor.as_ref().is_none_or(|a| s.first_seq > a.seq)) {
                Some(s) => (s.clone(), 0),
                None => return Ok(false),
            },
        };
        let file = File::open(&next.path)
            .map_err(|e| self.problem(&next.path, 0, ProblemKind::Io, format!("cannot open: {e}")))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.problem(&next.path, offset, ProblemKind::Io, format!("cannot seek: {e}")))?;
        self.start = None;
        let gap = match &self.chain {
            Some(ch) if offset == 0 && ch.next_seq != next.first_seq => Some(ch.next_seq),
            _ => None,
        };
        self.cur = Some(Current {
            first_seq: next.first_seq,
            path: next.path.clone(),
            reader,
            offset,
            seen_record: offset > 0,
        });
        if let Some(expected) = gap {
            self.chain = None;
            return Err(self.problem(
                &next.path,
                0,
                ProblemKind::SeqGap,
                format!(
                    "segment name says it starts at seq {} but the next seq is {expected} (a segment is missing or misnamed)",
                    next.first_seq
                ),
            ));
        }
        Ok(true)
    }

    fn next_inner(&mut self) -> Option<Result<Entry, Problem>> {
        if let Some(e) = self.stashed.take() {
            return Some(Ok(e));
        }
        if self.failed {
            return None;
        }
        loop {
            if self.cur.is_none() {
                match self.advance_segment() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(p) => {
                        if p.kind == ProblemKind::Io {
                            self.failed = true;
                        }
                        return Some(Err(p));
                    }
                }
            }
            let cur = self.cur.as_mut().expect("segment open");
            self.line.clear();
            let n = match cur.reader.read_until(b'\n', &mut self.line) {
                Ok(n) => n,
                Err(e) => {
                    self.failed = true;
                    let (p, o) = (cur.path.clone(), cur.offset);
                    return Some(Err(self.problem(&p, o, ProblemKind::Io, format!("read failed: {e}"))));
                }
            };
            let offset = cur.offset;
            let path = cur.path.clone();
            if n == 0 || self.line.last() != Some(&b'\n') {
                // End of this segment (maybe with an incomplete line).
                let partial = n as u64;
                let before = self.cur.as_ref().map(|c| c.first_seq);
                match self.advance_segment() {
                    Ok(true) => {
                        if partial > 0 {
                            self.chain = None;
                            return Some(Err(self.problem(
                                &path,
                                offset,
                                ProblemKind::TornTail,
                                format!("incomplete line ({partial} bytes, no newline) at the end of a segment that is not the last"),
                            )));
                        }
                        continue;
                    }
                    Ok(false) => {
                        // Last segment: leave the partial line for the next poll.
                        let cur = self.cur.as_mut().expect("segment open");
                        debug_assert_eq!(Some(cur.first_seq), before);
                        if let Err(e) = cur.reader.seek(SeekFrom::Start(cur.offset)) {
                            self.failed = true;
                            return Some(Err(self.problem(
                                &path,
                                offset,
                                ProblemKind::Io,
                                format!("cannot seek: {e}"),
                            )));
                        }
                        return None;
                    }
                    Err(p) => {
                        if p.kind == ProblemKind::Io {
                            self.failed = true;
                        }
                        return Some(Err(p));
                    }
                }
            }
            let cur = self.cur.as_mut().expect("segment open");
            cur.offset += n as u64;
            let first_in_segment = !cur.seen_record;
            cur.seen_record = true;
            let seg_first = cur.first_seq;
            let parsed = match self.verified {
                Some((after, upto)) => Record::parse_verified_line(&self.line).and_then(|r| {
                    if r.seq > after && r.seq <= upto {
                        Ok(r)
                    } else {
                        crate::record::verify_line_checksum(&self.line).map(|_| r)
                    }
                }),
                None => Record::parse_line(&self.line),
            };
            let record = match parsed {
                Ok(r) => r,
                Err(e) => {
                    self.chain = None;
                    let kind = match e {
                        LineError::ChecksumMismatch { .. } => ProblemKind::BadChecksum,
                        _ => ProblemKind::Unparsable,
                    };
                    let zero = if self.line[0] == 0 { " (zero-filled)" } else { "" };
                    return Some(Err(self.problem(&path, offset, kind, format!("bad line{zero}: {e}"))));
                }
            };
            let entry = Entry { file: path.clone(), offset, len: n as u64, record };
            let r = &entry.record;
            let mut problem = None;
            if first_in_segment && r.seq != seg_first {
                problem = Some(self.problem(
                    &path,
                    offset,
                    ProblemKind::SeqGap,
                    format!("first record of the segment has seq {} but the file name says {seg_first}", r.seq),
                ));
            }
            if let Some(ch) = &self.chain {
                if let Err(b) = ch.check(r.seq, &r.prev) {
                    let kind = match b {
                        ChainBreak::SeqGap { .. } => ProblemKind::SeqGap,
                        ChainBreak::PrevMismatch { .. } => ProblemKind::ChainBreak,
                    };
                    problem.get_or_insert_with(|| self.problem(&path, offset, kind, b.to_string()));
                }
            }
            if r.schema_version > SCHEMA_VERSION {
                problem.get_or_insert_with(|| {
                    self.problem(
                        &path,
                        offset,
                        ProblemKind::NewerSchema,
                        format!(
                            "seq {} has schema_version {}, but this build understands only up to {SCHEMA_VERSION}: \
                             run the newer VibeSync that wrote it",
                            r.seq, r.schema_version
                        ),
                    )
                });
            }
            // Re-anchor the chain on this record either way, so one break is one problem.
            self.chain.get_or_insert_with(ChainState::genesis).advance(r.seq, &r.h);
            match problem {
                Some(p) => {
                    self.stashed = Some(entry);
                    return Some(Err(p));
                }
                None => return Some(Ok(entry)),
            }
        }
    }
}

impl From<Problem> for WalError {
    /// A problem met while reading, as the error of whoever needed the records.
    fn from(p: Problem) -> WalError {
        WalError::Corrupt { file: p.file, offset: p.offset, reason: format!("{:?}: {}", p.kind, p.description) }
    }
}

impl Iterator for Reader {
    type Item = Result<Entry, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_inner()
    }
}

/// Every record of the log, in order. Stops at an incomplete last line (a torn tail the
/// daemon will cut at its next boot); any other problem is an error naming file and offset.
pub fn read_all(dir: impl AsRef<Path>) -> Result<Vec<Entry>, WalError> {
    let mut out = Vec::new();
    for item in Reader::open(dir)? {
        match item {
            Ok(e) => out.push(e),
            Err(p) => return Err(WalError::Corrupt { file: p.file, offset: p.offset, reason: p.description }),
        }
    }
    Ok(out)
}

/// Check the whole log without changing it: every checksum, the chain, seq continuity,
/// segment names and the tail. An empty list means the log is intact.
pub fn verify(dir: impl AsRef<Path>) -> Result<Vec<Problem>, WalError> {
    let mut reader = match Reader::open(dir) {
        Ok(r) => r,
        Err(WalError::BadAnchor { file, reason }) => {
            return Ok(vec![Problem { file, offset: 0, kind: ProblemKind::BadAnchor, description: reason }])
        }
        Err(e) => return Err(e),
    };
    let mut problems = Vec::new();
    for item in &mut reader {
        if let Err(p) = item {
            problems.push(p);
        }
    }
    if let Some(cur) = &reader.cur {
        let len = std::fs::metadata(&cur.path).map_err(|e| WalError::io("stat", &cur.path, e))?.len();
        if len > cur.offset {
            let rest = std::fs::read(&cur.path).map_err(|e| WalError::io("read", &cur.path, e))?;
            let rest = &rest[cur.offset as usize..];
            let what = if rest.iter().all(|&b| b == 0) { "zero-filled" } else { "incomplete" };
            problems.push(Problem {
                file: cur.path.clone(),
                offset: cur.offset,
                kind: ProblemKind::TornTail,
                description: format!(
                    "{} {what} bytes after the last complete line (a torn write; the daemon moves them to quarantine at boot)",
                    rest.len()
                ),
            });
        }
    }
    Ok(problems)
}
