//! Durable file primitives, the one copy every store uses (the WAL, the registry's sidecar
//! and quarantine, the daemon's small files): fsync a directory so an entry survives a
//! crash, and replace a small file atomically (temp → write → fsync → rename → fsync dir),
//! so a crash leaves the old file or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// fsync a directory so a created, renamed or removed entry survives a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // NTFS journals directory metadata; a directory cannot be opened as a File here.
        let _ = dir;
        Ok(())
    }
}

/// Temp files of concurrent writers never share a name (two projects storing the same mesh
/// blob at once used to collide on `.<hash>.tmp-<pid>`).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replace `path` atomically with `bytes`; `mode` applies on Unix (e.g. 0o600 for the token).
/// The temp file is unique to this call and removed on every error path (a full disk must
/// not keep the space the WAL needs next).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(m) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(m);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

/// Set `from` (a file or a directory) aside, never deleting it: move it into `quarantine`
/// (created if missing) as `<prefix>-<UTC yyyymmddThhmmss.ffffffZ>[-n]<suffix>`, then fsync
/// both directories. The one way every store keeps damaged or superseded data as evidence
/// (docs/ARCHITECTURE.md, data directory `quarantine/`). Returns where it went.
pub fn set_aside(from: &Path, quarantine: &Path, prefix: &str, suffix: &str) -> io::Result<std::path::PathBuf> {
    fs::create_dir_all(quarantine)?;
    let stamp = crate::segment::file_ts(time::OffsetDateTime::now_utc());
    let mut target = quarantine.join(format!("{prefix}-{stamp}{suffix}"));
    let mut n = 1;
    while target.exists() {
        target = quarantine.join(format!("{prefix}-{stamp}-{n}{suffix}"));
        n += 1;
    }
    fs::rename(from, &target)?;
    fsync_dir(quarantine)?;
    if let Some(parent) = from.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f.json");
        write_atomic(&p, b"one", None).unwrap();
        write_atomic(&p, b"two", Some(0o600)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
        // A missing directory fails and leaves nothing behind.
        assert!(write_atomic(&tmp.path().join("no/f"), b"x", None).is_err());
    }

    #[test]
    fn set_aside_keeps_everything_under_distinct_sortable_names() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("quarantine");
        let mut names = vec![];
        for i in 0..3 {
            let f = tmp.path().join("checkpoint.json");
            fs::write(&f, format!("{i}")).unwrap();
            let to = set_aside(&f, &q, "checkpoint", ".json").unwrap();
            assert!(!f.exists());
            assert_eq!(fs::read_to_string(&to).unwrap(), format!("{i}"));
            names.push(to.file_name().unwrap().to_string_lossy().into_owned());
        }
        assert!(names.iter().all(|n| n.starts_with("checkpoint-") && n.ends_with(".json")), "{names:?}");
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{names:?}");
        let d = tmp.path().join("registry");
        fs::create_dir(&d).unwrap();
        let to = set_aside(&d, &q, "registry", "").unwrap();
        assert!(to.is_dir() && !d.exists());
    }
}
