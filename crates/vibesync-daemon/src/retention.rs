//! Bounded disk (docs/ARCHITECTURE.md "Disk use and retention"): disk use per store for
//! `status`, WAL compaction (`Stores::compact_wal`, docs/WAL.md §11), packing of the audit
//! repository, and collection of unreferenced mesh blobs, run by [`maintain`] on a schedule
//! (`storage.maintenance_interval_secs`).
//!
//! * **Audit pack.** The audit thread writes each commit as one pack (`vibesync-audit`);
//!   repositories written before that hold loose objects (several files per commit).
//!   [`pack_audit`] packs any loose objects into one pack (with deltas: successive versions
//!   of a registry entry compress well) and then removes exactly the loose files it packed.
//!   Nothing is rewritten: the same objects, stored packed; history is untouched.
//! * **Blob collection.** A mesh blob is kept while anything can still ask for it: a live or
//!   archived registry entry, any object of the audit repository (every commit a person can
//!   restore to), or a WAL `STEP` of a transaction that is not rolled back (in flight,
//!   committed, or replayed at boot). Blobs younger than `storage.blob_grace_secs` are never
//!   collected (a mesh is stored before the `STEP` that names it). Only files named like a
//!   hash (or leftover temporary files) are touched.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};
use vibesync_registry::Registry;
use vibesync_wal::{Phase, Reader};

use crate::DataDir;

/// Bytes on disk per store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    pub wal: u64,
    pub registry: u64,
    pub audit: u64,
    pub blobs: u64,
    pub logs: u64,
    pub quarantine: u64,
    pub total: u64,
}

/// Size of everything under `p` (files only; symlinks are not followed). Missing = 0.
fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    let mut n = 0;
    for e in rd.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += dir_size(&e.path()),
            Ok(t) if t.is_file() => n += e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    n
}

pub fn disk_usage(data: &DataDir) -> DiskUsage {
    let mut d = DiskUsage {
        wal: dir_size(&data.wal()),
        registry: dir_size(&data.registry()) + std::fs::metadata(data.sidecar()).map(|m| m.len()).unwrap_or(0),
        audit: dir_size(&data.audit()),
        blobs: dir_size(&data.blobs()),
        logs: dir_size(&data.logs()),
        quarantine: dir_size(&data.quarantine()),
        total: 0,
    };
    d.total = d.wal + d.registry + d.audit + d.blobs + d.logs + d.quarantine;
    d
}

/// What one [`pack_audit`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PackReport {
    pub loose_before: usize,
    pub packed: usize,
    pub pack_bytes: u64,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Pack the audit repository's loose objects and remove the loose copies. Safe beside the
/// audit thread: objects it writes meanwhile stay loose until the next run (only files
/// listed before the pack was built are removed, and only once the pack is indexed).
pub fn pack_audit(git_dir: &Path) -> Result<PackReport, String> {
    let objects = git_dir.join("objects");
    let mut loose = vec![];
    for d in std::fs::read_dir(&objects).map_err(|e| format!("{}: {e}", objects.display()))?.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if !is_hex(&name, 2) {
            continue; // pack/, info/
        }
        for f in std::fs::read_dir(d.path()).map_err(|e| format!("{}: {e}", d.path().display()))?.flatten() {
            let rest = f.file_name().to_string_lossy().into_owned();
            if is_hex(&rest, 38) {
                if let Ok(oid) = git2::Oid::from_str(&format!("{name}{rest}")) {
                    loose.push((oid, f.path()));
                }
            }
        }
    }
    let mut report = PackReport { loose_before: loose.len(), ..Default::default() };
    if loose.is_empty() {
        return Ok(report);
    }
    let repo =
        git2::Repository::open_bare(git_dir).map_err(|e| format!("open {}: {}", git_dir.display(), e.message()))?;
    let mut pb = repo.packbuilder().map_err(|e| e.message().to_string())?;
    for (oid, _) in &loose {
        pb.insert_object(*oid, None).map_err(|e| format!("pack {oid}: {}", e.message()))?;
    }
    let mut buf = git2::Buf::new();
    pb.write_buf(&mut buf).map_err(|e| format!("build the pack: {}", e.message()))?;
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let mut w = odb.packwriter().map_err(|e| format!("pack writer: {}", e.message()))?;
    w.write_all(&buf).map_err(|e| format!("write the pack: {e}"))?;
    w.commit().map_err(|e| format!("index the pack: {}", e.message()))?;
    report.pack_bytes = buf.len() as u64;
    // The pack is written and indexed: the loose copies are redundant.
    for (oid, path) in &loose {
        if odb.exists(*oid) && std::fs::remove_file(path).is_ok() {
            report.packed += 1;
        }
    }
    for d in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
        if is_hex(&d.file_name().to_string_lossy(), 2) {
            let _ = std::fs::remove_dir(d.path()); // only succeeds when empty
        }
    }
    Ok(report)
}

/// What one [`collect_blobs`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlobReport {
    pub referenced: usize,
    pub kept: usize,
    pub removed: usize,
    pub removed_bytes: u64,
}

fn mesh_hash_of(v: &Value, out: &mut HashSet<String>) {
    for s in [&v["state"], &v["payload"]["state"], v] {
        if let Some(h) = s["mesh_hash"].as_str() {
            out.insert(h.to_string());
        }
    }
}

/// Every mesh hash something can still ask for (see the module doc).
fn referenced_blobs(data: &DataDir, registry: &Registry) -> Result<HashSet<String>, String> {
    let mut refs = HashSet::new();
    let entries = registry.live_entries(None).map_err(|e| e.to_string())?;
    let archived = registry.archived_entries(None).map_err(|e| e.to_string())?;
    for e in entries.iter().chain(archived.iter()) {
        if let Some(s) = &e.state {
            mesh_hash_of(s, &mut refs);
        }
    }
    if data.audit().exists() {
        let repo = git2::Repository::open_bare(data.audit()).map_err(|e| e.message().to_string())?;
        let odb = repo.odb().map_err(|e| e.message().to_string())?;
        let mut ids = vec![];
        odb.foreach(|oid| {
            ids.push(*oid);
            true
        })
        .map_err(|e| e.message().to_string())?;
        for oid in ids {
            // An unreadable object stops the collection (what it names must not look unused).
            let obj = odb.read(oid).map_err(|e| format!("audit object {oid} unreadable, no blob collected: {e}"))?;
            if obj.kind() != git2::ObjectType::Blob {
                continue;
            }
            let bytes = obj.data();
            if bytes.windows(9).any(|w| w == b"mesh_hash") {
                if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
                    mesh_hash_of(&v, &mut refs);
                }
            }
        }
    }
    if data.wal().exists() {
        // A WAL read error stops the collection: a blob named after it must not look unused.
        let records: Vec<_> = Reader::open(data.wal())
            .map_err(|e| e.to_string())?
            .map(|e| e.map(|e| e.record))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the WAL could not be read, no blob collected: {e}"))?;
        let rolled_back: HashSet<&str> =
            records.iter().filter(|r| r.phase == Phase::Rollback).map(|r| r.operation_id.as_str()).collect();
        for r in &records {
            if r.phase == Phase::Step && !rolled_back.contains(r.operation_id.as_str()) {
                mesh_hash_of(&r.payload, &mut refs);
            }
        }
    }
    Ok(refs)
}

/// Remove mesh blobs nothing references any more, older than `grace`.
pub fn collect_blobs(data: &DataDir, registry: &Registry, grace: Duration) -> Result<BlobReport, String> {
    let dir = data.blobs();
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(BlobReport::default()) };
    let refs = referenced_blobs(data, registry)?;
    let mut report = BlobReport { referenced: refs.len(), ..Default::default() };
    let now = SystemTime::now();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age >= grace);
        let is_blob = is_hex(&name, 64);
        let is_tmp = name.contains(".tmp");
        if old && ((is_blob && !refs.contains(&name)) || is_tmp) {
            if std::fs::remove_file(e.path()).is_ok() {
                report.removed += 1;
                report.removed_bytes += meta.len();
            }
        } else if is_blob {
            report.kept += 1;
        }
    }
    Ok(report)
}

/// The last maintenance report and a recent disk-use figure, per data dir (for `status`).
static STATUS: std::sync::Mutex<Option<StatusCache>> = std::sync::Mutex::new(None);

struct StatusCache {
    root: std::path::PathBuf,
    measured: std::time::Instant,
    usage: DiskUsage,
    last_maintenance: Value,
}

/// `status.disk`: bytes per store (measured at most every 5 s: walking the stores is file
/// system work) and the last maintenance pass.
pub fn status_json(data: &DataDir) -> Value {
    let mut g = STATUS.lock().unwrap_or_else(|p| p.into_inner());
    let stale = match &*g {
        Some(c) => c.root != data.root() || c.measured.elapsed() > Duration::from_secs(5),
        None => true,
    };
    if stale {
        let last = g.as_ref().filter(|c| c.root == data.root()).map(|c| c.last_maintenance.clone());
        *g = Some(StatusCache {
            root: data.root().to_path_buf(),
            measured: std::time::Instant::now(),
            usage: disk_usage(data),
            last_maintenance: last.unwrap_or(Value::Null),
        });
    }
    let c = g.as_ref().expect("just filled");
    let mut v = serde_json::to_value(&c.usage).unwrap_or_default();
    v["last_maintenance"] = c.last_maintenance.clone();
    v
}

/// One maintenance pass: compact the WAL, pack the audit, collect blobs. Errors are logged,
/// never fatal.
pub fn maintain(data: &DataDir, stores: &crate::stores::Stores, storage: &crate::config::StorageConfig) -> Value {
    let wal = if storage.wal_compaction {
        match stores.compact_wal(Duration::from_secs(storage.wal_retention_secs), storage.wal_archive) {
            Ok(r) => r,
            Err(e) => {
                warn!("WAL compaction failed (nothing was lost; retried at the next pass): {e}");
                serde_json::json!({"error": e})
            }
        }
    } else {
        serde_json::json!({"skipped": "storage.wal_compaction is false"})
    };
    let mut report = maintain_once(data, &stores.registry, Duration::from_secs(storage.blob_grace_secs));
    report["wal_compaction"] = wal;
    let mut g = STATUS.lock().unwrap_or_else(|p| p.into_inner());
    *g = Some(StatusCache {
        root: data.root().to_path_buf(),
        measured: std::time::Instant::now(),
        usage: disk_usage(data),
        last_maintenance: report.clone(),
    });
    report
}

/// Run [`maintain`] every `interval` (0 = never) until the task is dropped.
pub async fn schedule(daemon: std::sync::Arc<crate::Daemon>) {
    let interval = daemon.config().storage.maintenance_interval_secs;
    if interval == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(interval));
    tick.tick().await; // the first tick is immediate: the first pass runs one interval after boot
    loop {
        tick.tick().await;
        let d = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || maintain(d.data_dir(), d.stores(), &d.config().storage)).await;
    }
}

fn maintain_once(data: &DataDir, registry: &Registry, blob_grace: Duration) -> Value {
    let pack = if data.audit().exists() {
        match pack_audit(&data.audit()) {
            Ok(r) => {
                info!(packed = r.packed, pack_bytes = r.pack_bytes, "audit repository packed");
                serde_json::to_value(r).unwrap_or_default()
            }
            Err(e) => {
                warn!("audit pack failed: {e}");
                serde_json::json!({"error": e})
            }
        }
    } else {
        Value::Null
    };
    let blobs = match collect_blobs(data, registry, blob_grace) {
        Ok(r) => {
            info!(removed = r.removed, kept = r.kept, "unreferenced mesh blobs collected");
            serde_json::to_value(r).unwrap_or_default()
        }
        Err(e) => {
            warn!("blob collection failed: {e}");
            serde_json::json!({"error": e})
        }
    };
    serde_json::json!({"at": crate::now_rfc3339(), "audit_pack": pack, "blobs": blobs})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keeps_every_object_readable_and_removes_the_loose_copies() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@localhost").unwrap();
        let mut parent: Option<git2::Oid> = None;
        let mut blobs = vec![];
        for i in 0..20 {
            let b = repo.blob(format!("{{\"x\":{i},\"pad\":\"{}\"}}", "a".repeat(200)).as_bytes()).unwrap();
            blobs.push(b);
            let mut tb = repo.treebuilder(None).unwrap();
            tb.insert("e.json", b, 0o100644).unwrap();
            let tree = repo.find_tree(tb.write().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            parent = Some(repo.commit(Some("refs/heads/main"), &sig, &sig, "c", &tree, &refs).unwrap());
        }
        let r = pack_audit(dir.path()).unwrap();
        assert_eq!(r.loose_before, 60, "20 × (blob, tree, commit)");
        assert_eq!(r.packed, 60);
        let again = pack_audit(dir.path()).unwrap();
        assert_eq!(again.loose_before, 0);
        let repo = git2::Repository::open_bare(dir.path()).unwrap();
        for b in blobs {
            assert!(repo.find_blob(b).is_ok());
        }
        let mut walk = repo.revwalk().unwrap();
        walk.push(parent.unwrap()).unwrap();
        assert_eq!(walk.count(), 20);
    }
}
