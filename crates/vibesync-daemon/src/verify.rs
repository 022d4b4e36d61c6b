//! `vibesync verify`: a read-only check of everything in a data directory. Each problem is
//! one line naming the file (and byte offset or uuid) and what is wrong.
//!
//! Two ways, and the report says which ([`CheckedBy`]): [`run`] offline, on a stopped
//! daemon's files; [`live`] inside the running daemon (the `admin` action `verify`), under
//! its mutation turn so the registry and the WAL up to the last durable seq are one
//! consistent snapshot. Live, an open transaction, an unwritten sidecar or an audit lag are
//! normal work in progress and are reported as notes, not problems.

use std::path::Path;

use vibesync_audit::FinalRef;
use vibesync_registry::{Registry, RegistryConfig};
// `live` reads the WAL with the same Reader as `run`: both see exactly the bytes on disk.
use vibesync_wal::{Phase, ProblemKind, Reader, Record};

use crate::{DaemonError, DataDir};

#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub records: u64,
    pub last_seq: u64,
    pub checked_by: CheckedBy,
}

/// Who made the check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum CheckedBy {
    /// `vibesync verify` read the files of a stopped daemon.
    #[default]
    Offline,
    /// The running daemon checked a consistent snapshot of its own stores.
    Daemon,
}

impl CheckedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckedBy::Offline => "offline",
            CheckedBy::Daemon => "daemon",
        }
    }
}

impl Report {
    /// The report as JSON (the `admin` `verify` result and `vibesync verify --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "checked_by": self.checked_by.as_str(),
            "clean": self.problems.is_empty(),
            "problems": self.problems,
            "notes": self.notes,
            "records": self.records,
            "last_seq": self.last_seq,
        })
    }

    /// Parse [`Report::to_json`] (the CLI reading the daemon's answer).
    pub fn from_json(v: &serde_json::Value) -> Report {
        let strings = |k: &str| -> Vec<String> {
            v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        Report {
            problems: strings("problems"),
            notes: strings("notes"),
            records: v["records"].as_u64().unwrap_or(0),
            last_seq: v["last_seq"].as_u64().unwrap_or(0),
            checked_by: if v["checked_by"] == "daemon" { CheckedBy::Daemon } else { CheckedBy::Offline },
        }
    }
}

/// Whether a daemon process is alive on this data dir (daemon.json names a live pid).
pub fn daemon_running(data: &DataDir) -> Option<u32> {
    let bytes = std::fs::read(data.daemon_info()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let pid = v["pid"].as_u64()? as u32;
    #[cfg(unix)]
    {
        // Signal 0: existence check only.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        alive.then_some(pid)
    }
    #[cfg(not(unix))]
    {
        Some(pid)
    }
}

pub fn run(data: &DataDir) -> Result<Report, DaemonError> {
    let mut report = Report::default();
    if let Some(pid) = daemon_running(data) {
        return Err(DaemonError::DataDir {
            path: data.root().to_path_buf(),
            message: format!("a daemon (pid {pid}) is running on it; verify is an offline check — stop the daemon first (SIGTERM), then run verify"),
        });
    }
    if !data.wal().exists() {
        report.problems.push(format!("{}: no WAL directory; is this a VibeSync data dir?", data.wal().display()));
        return Ok(report);
    }

    // 1. WAL: every hash, the chain, seq continuity, the tail.
    let wal_problems = vibesync_wal::verify(data.wal())?;
    // A segment missing (or misnamed) in front of later ones: the boot refuses it
    // (docs/WAL.md §7), and the log is not the whole one the stores were built from. A
    // damaged compaction anchor: the boot refuses it too (§11), and the kept log cannot be
    // read past it. Either way the derived stores are not compared with what is left: every
    // difference would be that one problem's, listed once.
    let segment_gap = wal_problems.iter().any(|p| p.kind == ProblemKind::SeqGap && p.offset == 0);
    let bad_anchor = wal_problems.iter().any(|p| p.kind == ProblemKind::BadAnchor);
    for p in wal_problems {
        report.problems.push(format!("wal: {p}"));
    }
    let unchecked = if segment_gap {
        Some(
            "a WAL segment is missing or misnamed (above), so the log is not the whole one they were built from \
             and any difference would be the gap's. Put the missing segment back (from a backup or the WAL archive \
             directory) and run verify again; `vibesync serve --repair` is not the remedy (docs/WAL.md §7)",
        )
    } else if bad_anchor {
        Some(
            "the compaction anchor is damaged (above), so the kept log cannot be read from it and any difference \
             would be the anchor's. Put back a good copy of wal/anchor.json and run verify again, or run \
             `vibesync serve --repair` (docs/WAL.md §11)",
        )
    } else {
        None
    };
    if let Some(why) = unchecked {
        let readable: Vec<Record> = match Reader::open(data.wal()) {
            Ok(r) => r.filter_map(|e| e.ok()).map(|e| e.record).collect(),
            Err(_) => Vec::new(), // listed above
        };
        report.records = readable.len() as u64;
        report.last_seq = readable.last().map(|r| r.seq).unwrap_or(0);
        report.notes.push(format!("registry, transactions, audit: not checked — {why}"));
        return Ok(report);
    }
    // A damaged compaction anchor is listed above; nothing of the log can be read after it.
    let records: Vec<Record> = match Reader::open(data.wal()) {
        Ok(r) => r.map_while(|e| e.ok()).map(|e| e.record).collect(),
        Err(
            vibesync_wal::WalError::Corrupt { .. }
            | vibesync_wal::WalError::MissingSegment { .. }
            | vibesync_wal::WalError::BadAnchor { .. },
        ) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let compacted = Compacted::load(data, &mut report);
    report.records = records.len() as u64;
    report.last_seq = records.last().map(|r| r.seq).unwrap_or(compacted.seq);

    // 2. Transactions left open (normal right after a crash; boot recovery closes them).
    let tx = vibesync_wal::transaction_index(records.iter());
    for t in &tx.incomplete {
        report.problems.push(format!(
            "wal: transaction {} (BEGIN seq {}) has no COMMIT or ROLLBACK; the daemon rolls it back at its next boot",
            t.operation_id, t.begin_seq
        ));
    }
    for t in &tx.unfinalized {
        report.problems.push(format!(
            "wal: transaction {} (COMMIT seq {}) has no FINAL; the daemon finalizes it at its next boot",
            t.operation_id, t.commit_seq
        ));
    }

    // 3. Registry ↔ WAL parity, on a scratch copy so nothing here writes to the data dir.
    if data.registry().exists() {
        match check_registry(data, &records, &compacted) {
            Ok(mut lines) => report.problems.append(&mut lines),
            Err(e) => report.problems.push(format!("registry: {}: {e}", data.registry().display())),
        }
    } else {
        report.notes.push("registry: no registry directory (the daemon builds it from the WAL at boot)".into());
    }

    // 4. Audit repository.
    check_audit(data, &records, compacted.seq, &mut report);
    Ok(report)
}

/// What a compacted WAL starts from (docs/WAL.md §11): the anchor's seq and registry base.
#[derive(Default)]
struct Compacted {
    seq: u64,
    base: Option<vibesync_registry::RegistryBase>,
}

impl Compacted {
    fn load(data: &DataDir, report: &mut Report) -> Compacted {
        match vibesync_wal::load_anchor(&data.wal()) {
            Ok(Some(a)) => {
                let base = a.base.get("registry").and_then(|b| serde_json::from_value(b.clone()).ok());
                report.notes.push(format!(
                    "wal: compacted up to seq {} ({} segments removed so far); the kept log chains to the anchor's h {}{}",
                    a.seq,
                    a.removed_segments,
                    a.h,
                    if base.is_some() { "" } else { "; the anchor holds no registry base" }
                ));
                Compacted { seq: a.seq, base }
            }
            // A damaged anchor is listed by the WAL check above.
            _ => Compacted::default(),
        }
    }
}

/// Audit repository: order, completeness (every FINAL in exactly one commit), the anchors,
/// and a history ahead of the WAL (docs/WAL.md §5).
fn check_audit(data: &DataDir, records: &[Record], compacted_upto: u64, report: &mut Report) {
    let audit_dir = data.audit();
    if !audit_dir.exists() {
        return;
    }
    let history = match vibesync_audit::read_history(&audit_dir) {
        Ok(h) => h,
        Err(e) => {
            report.problems.push(format!("audit: {}: {e}", audit_dir.display()));
            return;
        }
    };
    let finals: Vec<FinalRef> = records
        .iter()
        .filter(|r| r.phase == Phase::Final)
        .map(|r| FinalRef { seq: r.seq, operation_id: r.operation_id.clone(), h: r.h.clone() })
        .collect();
    let rep = vibesync_audit::check_compacted(&history, &finals, report.last_seq, compacted_upto);
    for p in rep.problems {
        report.problems.push(format!("audit: {}: {p}", audit_dir.display()));
    }
    if rep.unaudited > 0 {
        let what = format!(
            "audit: {}: {} FINAL(s) from seq {} on are in no commit yet",
            audit_dir.display(),
            rep.unaudited,
            rep.first_unaudited.unwrap_or(0)
        );
        match report.checked_by {
            CheckedBy::Offline => report.problems.push(format!("{what}; the daemon commits them at its next boot")),
            CheckedBy::Daemon => report.notes.push(format!("{what} (the audit thread is catching up)")),
        }
    }
    report.notes.push(format!("audit: {} commits cover {} FINALs", history.len(), finals.len() as u64 - rep.unaudited));
}

/// The check made by the running daemon. The caller holds the daemon's mutation turn: no
/// COMMIT and registry apply is in progress, so the registry reflects exactly the COMMITs
/// up to `last_seq` (the WAL's last durable seq, read under the turn). Records written
/// after `last_seq` (by batches in flight) are not part of the snapshot.
pub fn live(data: &DataDir, registry: &Registry, last_seq: u64) -> Result<Report, DaemonError> {
    let mut report = Report { checked_by: CheckedBy::Daemon, ..Report::default() };
    let compacted = Compacted::load(data, &mut report);
    let mut records = Vec::new();
    for item in Reader::open(data.wal())? {
        match item {
            Ok(e) if e.record.seq > last_seq => break,
            Ok(e) => records.push(e.record),
            Err(p) => report.problems.push(format!("wal: {p}")),
        }
    }
    report.records = records.len() as u64;
    report.last_seq = records.last().map(|r| r.seq).unwrap_or(compacted.seq);
    if report.last_seq != last_seq {
        report.problems.push(format!(
            "wal: {}: the readable log ends at seq {} but the writer has made seq {last_seq} durable",
            data.wal().display(),
            report.last_seq
        ));
    }
    let tx = vibesync_wal::transaction_index(records.iter());
    if !tx.incomplete.is_empty() || !tx.unfinalized.is_empty() {
        report.notes.push(format!(
            "wal: {} transaction(s) in flight, {} committed awaiting FINAL (normal while running)",
            tx.incomplete.len(),
            tx.unfinalized.len()
        ));
    }
    for p in registry.parity_from(compacted.base.as_ref(), records.iter().cloned())? {
        report.problems.push(format!("registry: {p}"));
    }
    report.notes.push("sidecar: rewritten on a timer while running; checked by offline verify".into());
    check_audit(data, &records, compacted.seq, &mut report);
    Ok(report)
}

fn check_registry(data: &DataDir, records: &[Record], compacted: &Compacted) -> Result<Vec<String>, DaemonError> {
    let scratch = tempfile_dir()?;
    copy_dir(&data.registry(), &scratch.join("registry")).map_err(|e| DaemonError::DataDir {
        path: data.registry(),
        message: format!("cannot copy for checking: {e}"),
    })?;
    if data.sidecar().exists() {
        let _ = std::fs::copy(data.sidecar(), scratch.join("registry.sidecar.json"));
    }
    let cfg = RegistryConfig::new(&scratch);
    let reg = Registry::open_for_check(&cfg)?;
    let mut out: Vec<String> = reg
        .parity_from(compacted.base.as_ref(), records.iter().cloned())?
        .into_iter()
        .map(|p| format!("registry: {p}"))
        .collect();
    let wal_last = records.last().map(|r| r.seq).unwrap_or(compacted.seq);
    if reg.last_applied_seq() > wal_last {
        out.push(format!(
            "registry: {}: it has applied seq {} but the WAL ends at seq {wal_last}: the WAL lost its tail (docs/WAL.md §5); the daemon refuses to boot until the WAL is restored or `vibesync serve --repair` rebuilds the registry from the shorter log",
            data.registry().display(),
            reg.last_applied_seq()
        ));
    }
    match reg.check_sidecar() {
        Ok(s) if s.is_ok() => {}
        Ok(s) => out.push(format!("sidecar: {}: {s}", data.sidecar().display())),
        Err(e) => out.push(format!("sidecar: {}: {e}", data.sidecar().display())),
    }
    drop(reg);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(out)
}

fn tempfile_dir() -> Result<std::path::PathBuf, DaemonError> {
    let d = std::env::temp_dir().join(format!("vibesync-verify-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).map_err(|e| DaemonError::DataDir { path: d.clone(), message: e.to_string() })?;
    Ok(d)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}
