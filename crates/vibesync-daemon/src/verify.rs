//! `vibesync verify`: an offline, read-only check of everything in a data directory.
//! Each problem is one line naming the file (and byte offset or uuid) and what is wrong.

use std::path::Path;

use vibesync_audit::FinalRef;
use vibesync_registry::{Registry, RegistryConfig};
use vibesync_wal::{Phase, Reader, Record};

use crate::{DaemonError, DataDir};

#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub records: u64,
    pub last_seq: u64,
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
    for p in vibesync_wal::verify(data.wal())? {
        report.problems.push(format!("wal: {p}"));
    }
    let records: Vec<Record> = Reader::open(data.wal())?.map_while(|e| e.ok()).map(|e| e.record).collect();
    report.records = records.len() as u64;
    report.last_seq = records.last().map(|r| r.seq).unwrap_or(0);

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
        match check_registry(data, &records) {
            Ok(mut lines) => report.problems.append(&mut lines),
            Err(e) => report.problems.push(format!("registry: {}: {e}", data.registry().display())),
        }
    } else {
        report.notes.push("registry: no registry directory (the daemon builds it from the WAL at boot)".into());
    }

    // 4. Audit repository: order, completeness (every FINAL in exactly one commit), the
    //    anchors, and a history ahead of the WAL (docs/WAL.md §5).
    let audit_dir = data.audit();
    if audit_dir.exists() {
        match vibesync_audit::read_history(&audit_dir) {
            Ok(history) => {
                let finals: Vec<FinalRef> = records
                    .iter()
                    .filter(|r| r.phase == Phase::Final)
                    .map(|r| FinalRef { seq: r.seq, operation_id: r.operation_id.clone(), h: r.h.clone() })
                    .collect();
                let rep = vibesync_audit::check(&history, &finals, report.last_seq);
                for p in rep.problems {
                    report.problems.push(format!("audit: {}: {p}", audit_dir.display()));
                }
                if rep.unaudited > 0 {
                    report.problems.push(format!(
                        "audit: {}: {} FINAL(s) from seq {} on are in no commit yet; the daemon commits them at its next boot",
                        audit_dir.display(),
                        rep.unaudited,
                        rep.first_unaudited.unwrap_or(0)
                    ));
                }
                report.notes.push(format!(
                    "audit: {} commits cover {} FINALs",
                    history.len(),
                    finals.len() as u64 - rep.unaudited
                ));
            }
            Err(e) => report.problems.push(format!("audit: {}: {e}", audit_dir.display())),
        }
    }
    Ok(report)
}

fn check_registry(data: &DataDir, records: &[Record]) -> Result<Vec<String>, DaemonError> {
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
    let mut out: Vec<String> =
        reg.parity(records.iter().cloned())?.into_iter().map(|p| format!("registry: {p}")).collect();
    let wal_last = records.last().map(|r| r.seq).unwrap_or(0);
    if reg.last_applied_seq() > wal_last {
        out.push(format!(
            "registry: {}: it has applied seq {} but the WAL ends at seq {wal_last}: the WAL lost its tail (docs/WAL.md §5); the daemon refuses to boot until the WAL is restored or `vibesync serve --repair` rebuilds the registry from the shorter log",
            data.registry().display(),
            reg.last_applied_seq()
        ));
    }
    match reg.check_sidecar() {
        Ok(s) if s.is_ok() => {}
        Ok(s) => out.push(format!("sidecar: {}: {s:?}", data.sidecar().display())),
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
