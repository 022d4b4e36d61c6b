//! The three stores opened together, in dependency order, with boot recovery:
//!
//! 1. WAL (`vibesync-wal`): verify, cut a torn tail, refuse corruption unless `--repair`.
//! 2. Registry (`vibesync-registry`): catch up from the WAL, or rebuild it from the WAL.
//! 3. Schema migration, if the registry asks for one — as a WAL transaction.
//! 4. BEGIN without COMMIT/ROLLBACK → ROLLBACK (`RECOVERED_INCOMPLETE`) and quarantine.
//! 5. COMMIT without FINAL → FINAL (the registry already caught up idempotently).
//! 6. Audit (`vibesync-audit`): FINAL records newer than the last audit commit are committed.
//! 7. Sidecar: checked, rewritten when stale or damaged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{error, info, warn};
use vibesync_audit::{Audit, AuditBatch, AuditContent, AuditEntry};
use vibesync_engine::governance::{FailureIndex, Observed};
use vibesync_engine::register::Existing;
use vibesync_registry::{Registry, RegistryConfig, Status};
use vibesync_wal::{Phase, Reader, Record, RecordDraft, Wal, WalConfig};

use crate::config::Config;
use crate::paths::DataDir;
use crate::txn::Txn;
use crate::{DaemonError, ServeOptions};

/// Session id used for records the daemon writes on its own (recovery, migration).
pub const DAEMON_SESSION: &str = "daemon";

#[derive(Clone)]
pub struct Stores {
    pub wal: Wal,
    pub registry: Arc<Registry>,
    pub audit: Option<Arc<Audit>>,
    data: DataDir,
    sidecar_dirty: Arc<AtomicBool>,
    /// ROLLBACK records found at boot (project, rollback), for replay to reconnecting editors.
    rollbacks: Arc<Vec<(String, RolledBack)>>,
    /// One sidecar writer at a time (boot check thread, timer, shutdown).
    sidecar_lock: Arc<std::sync::Mutex<()>>,
    /// Failure counters and last errors, derived from the WAL (log-as-state).
    pub governance: Arc<std::sync::Mutex<FailureIndex>>,
}

/// A rolled-back sync batch, for replay to editors that reconnect (docs/PROTOCOL.md §6.6).
#[derive(Debug, Clone, PartialEq)]
pub struct RolledBack {
    /// The ROLLBACK record.
    pub seq: u64,
    pub uuids: Vec<String>,
    /// uuid → client_ids that keep it locally as a person's edit (never replayed over).
    pub kept_local: BTreeMap<String, Vec<String>>,
}

impl RolledBack {
    fn from_record(r: &Record) -> RolledBack {
        let kept_local = r
            .payload
            .get("kept_local")
            .and_then(|v| serde_json::from_value::<BTreeMap<String, Vec<String>>>(v.clone()).ok())
            .unwrap_or_default();
        RolledBack { seq: r.seq, uuids: r.uuids.clone(), kept_local }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What the governance index needs of a WAL record; its time comes from `ts`.
pub fn observed(r: &Record) -> Observed<'_> {
    let at_ms = time::OffsetDateTime::parse(&r.ts, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
        .unwrap_or(0);
    Observed {
        seq: r.seq,
        at_ms,
        phase: r.phase.as_str(),
        uuids: &r.uuids,
        error_code: r.error_code.as_deref(),
        payload: &r.payload,
    }
}

fn wal_records(dir: std::path::PathBuf) -> impl FnMut() -> Box<dyn Iterator<Item = Record>> {
    move || match Reader::open(&dir) {
        Ok(r) => Box::new(r.map_while(|e| e.ok()).map(|e| e.record)),
        Err(_) => Box::new(std::iter::empty()),
    }
}

impl Stores {
    pub fn open(config: &Config, data: &DataDir, opts: &ServeOptions) -> Result<Stores, DaemonError> {
        let started = std::time::Instant::now();
        let lap = |what: &str| info!(elapsed_ms = started.elapsed().as_millis() as u64, "boot: {what}");
        let wal_cfg = WalConfig {
            dir: data.wal(),
            quarantine_dir: data.quarantine(),
            segment_bytes: config.storage.wal_segment_bytes,
            repair: opts.repair,
        };
        let (wal, recovery) = Wal::open(wal_cfg)?;
        if let Some(t) = &recovery.torn_tail {
            warn!(file = %t.file.display(), offset = t.offset, bytes = t.bytes, quarantine = %t.quarantine_path.display(), "torn WAL tail moved to quarantine");
        }
        if let Some(r) = &recovery.repaired {
            warn!(file = %r.file.display(), offset = r.offset, bytes = r.bytes, "repair: corrupt WAL tail moved to quarantine: {}", r.reason);
        }
        info!(
            last_seq = recovery.last_seq,
            records = recovery.records,
            elapsed_ms = recovery.elapsed.as_millis() as u64,
            "WAL recovered"
        );

        let mut reg_cfg = RegistryConfig::new(data.root());
        reg_cfg.cache_capacity = config.storage.registry_cache_bytes;
        lap("WAL recovered");
        let (registry, report) = Registry::open(&reg_cfg, wal_records(data.wal()))?;
        lap("registry opened");
        info!(report = ?report, "registry opened");
        let stores = Stores {
            wal,
            registry: Arc::new(registry),
            audit: None,
            data: data.clone(),
            sidecar_dirty: Arc::new(AtomicBool::new(true)),
            rollbacks: Arc::new(Vec::new()),
            sidecar_lock: Arc::new(std::sync::Mutex::new(())),
            governance: Arc::new(std::sync::Mutex::new(FailureIndex::new(config.governance.thresholds()))),
        };

        if let Some(payload) = stores.registry.migration_payload() {
            let op = uuid::Uuid::new_v4().to_string();
            info!(operation_id = %op, payload = %payload, "migrating registry schema");
            let records = stores.append_txn_blocking(&op, "", vec![], vec![payload], json!({"op":"migrate"}))?;
            stores.registry.apply_committed(&records)?;
            stores.registry.flush()?;
            stores.final_blocking(&op, "", vec![])?;
        }

        for tx in &recovery.transactions.incomplete {
            warn!(operation_id = %tx.operation_id, uuids = ?tx.uuids, begin_seq = tx.begin_seq, "rolling back a transaction left incomplete by a crash");
            stores.wal.append_blocking(vec![RecordDraft {
                session_id: tx.session_id.clone(),
                operation_id: tx.operation_id.clone(),
                uuids: tx.uuids.clone(),
                project_id: tx.project_id.clone(),
                phase: Phase::Rollback,
                outcome: "error".into(),
                error_code: Some("RECOVERED_INCOMPLETE".into()),
                payload: json!({"reason": "BEGIN without COMMIT or ROLLBACK found at boot", "begin_seq": tx.begin_seq, "provisional": tx.provisional}),
            }])?;
            // A sync batch (session "sync") cut by a crash is rolled back deterministically: its
            // uuids stay live, the registry keeps the last committed state and reconnecting
            // editors are re-sent it (docs/PROTOCOL.md §6.6). It is not a sync failure for the
            // governance index (crashes count through the unclean-boot rule). Any other interrupted transaction
            // quarantines the uuids it touched until a person looks (docs/WAL.md).
            if tx.session_id == crate::sync::SYNC_SESSION {
                continue;
            }
            let live: Vec<String> = tx
                .uuids
                .iter()
                .filter(
                    |u| matches!(stores.registry.lookup(&tx.project_id, u), Ok(Some(e)) if e.status == Status::Live),
                )
                .cloned()
                .collect();
            if !live.is_empty() {
                let op = uuid::Uuid::new_v4().to_string();
                let steps = live
                    .iter()
                    .map(|u| json!({"op":"quarantine","uuid":u,"reason":format!("transaction {} was interrupted by a crash", tx.operation_id)}))
                    .collect();
                let records = stores.append_txn_blocking(
                    &op,
                    &tx.project_id,
                    live.clone(),
                    steps,
                    json!({"op":"recover_quarantine","rolled_back":tx.operation_id}),
                )?;
                stores.registry.apply_committed(&records)?;
                stores.registry.flush()?;
                stores.final_blocking(&op, &tx.project_id, live)?;
            }
        }
        for tx in &recovery.transactions.unfinalized {
            info!(operation_id = %tx.operation_id, uuids = ?tx.uuids, commit_seq = tx.commit_seq, "finalizing a committed transaction after a crash");
            stores.registry.flush()?;
            stores.wal.append_blocking(vec![RecordDraft {
                session_id: tx.session_id.clone(),
                operation_id: tx.operation_id.clone(),
                uuids: tx.uuids.clone(),
                project_id: tx.project_id.clone(),
                phase: Phase::Final,
                outcome: "ok".into(),
                error_code: None,
                payload: json!({"recovered": true, "commit_seq": tx.commit_seq}),
            }])?;
        }

        let mut stores = stores;
        if config.audit.enabled {
            set_aside_audit_if_ahead(data, stores.wal.last_seq());
            match Audit::open(data.audit()) {
                Ok(audit) => {
                    stores.audit = Some(Arc::new(audit));
                }
                Err(e) => error!("ghost audit disabled for this run: {e}"),
            }
        }
        stores.boot_scan();
        lap("audit reconciled");
        // The sidecar is a backup: its full comparison runs off the boot path.
        let bg = stores.clone();
        std::thread::spawn(move || {
            let _turn = bg.sidecar_lock.lock().unwrap();
            match bg.registry.ensure_sidecar() {
                Ok(status) => info!(?status, "sidecar checked"),
                Err(e) => error!("sidecar check failed: {e}"),
            }
        });
        Ok(stores)
    }

    fn append_txn_blocking(
        &self,
        op: &str,
        project_id: &str,
        uuids: Vec<String>,
        steps: Vec<Value>,
        summary: Value,
    ) -> Result<Vec<Record>, DaemonError> {
        let txn = Txn { session_id: DAEMON_SESSION, operation_id: op, project_id };
        Ok(self.wal.append_blocking(txn.drafts(&uuids, summary.clone(), steps, summary))?)
    }

    fn final_blocking(&self, op: &str, project_id: &str, uuids: Vec<String>) -> Result<(), DaemonError> {
        let txn = Txn { session_id: DAEMON_SESSION, operation_id: op, project_id };
        self.wal.append_blocking(vec![txn.final_draft(uuids, json!({}))])?;
        Ok(())
    }

    /// Apply a committed transaction to the registry and make it durable.
    pub fn apply_committed(&self, records: &[Record]) -> Result<(), DaemonError> {
        let report = self.registry.apply_committed(records)?;
        if !report.applied {
            // Would mean a transaction reached the registry out of COMMIT order: never
            // acknowledge it as if it had been applied.
            return Err(DaemonError::Registry(vibesync_registry::RegistryError::NotCommitted {
                operation_id: format!(
                    "{} (commit seq {} at or below the registry watermark {})",
                    report.operation_id,
                    report.commit_seq,
                    self.registry.last_applied_seq()
                ),
            }));
        }
        for s in &report.skipped {
            warn!(operation_id = %report.operation_id, seq = s.seq, uuid = ?s.uuid, "registry step skipped: {}", s.reason);
        }
        self.registry.flush()?;
        self.sidecar_dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// A transaction the daemon makes on its own (governance, operator actions): BEGIN,
    /// STEPs, COMMIT, durable, applied to the registry, then FINAL and audit.
    pub async fn daemon_txn(
        &self,
        project_id: &str,
        uuids: Vec<String>,
        steps: Vec<Value>,
        summary: Value,
    ) -> Result<u64, DaemonError> {
        let op = uuid::Uuid::new_v4().to_string();
        let txn = Txn { session_id: DAEMON_SESSION, operation_id: &op, project_id };
        let records = self.wal.append(txn.drafts(&uuids, summary.clone(), steps, summary)).await?;
        let seq = records.last().map(|r| r.seq).unwrap_or(0);
        {
            let mut gov = self.governance.lock().unwrap();
            for r in &records {
                gov.observe(&observed(r));
            }
        }
        self.apply_committed(&records)?;
        self.finalize(DAEMON_SESSION, project_id, &op, uuids).await?;
        Ok(seq)
    }

    /// Write FINAL for a transaction whose side effects are done, then audit it.
    pub async fn finalize(
        &self,
        session_id: &str,
        project_id: &str,
        operation_id: &str,
        uuids: Vec<String>,
    ) -> Result<(), DaemonError> {
        let txn = Txn { session_id, operation_id, project_id };
        let rec = self.wal.append(vec![txn.final_draft(uuids.clone(), json!({}))]).await?;
        let seq = rec.last().map(|r| r.seq).unwrap_or(0);
        self.submit_audit(seq, seq, vec![operation_id.to_string()], project_id, &uuids);
        Ok(())
    }

    fn submit_audit(
        &self,
        first_seq: u64,
        last_seq: u64,
        operation_ids: Vec<String>,
        project_id: &str,
        uuids: &[String],
    ) {
        let Some(audit) = &self.audit else { return };
        let entries = uuids.iter().filter_map(|u| self.audit_entry(project_id, u)).collect();
        if let Err(e) = audit.submit(AuditBatch { first_seq, last_seq, operation_ids, entries }) {
            warn!(first_seq, last_seq, "audit batch not queued: {e}");
        }
    }

    fn audit_entry(&self, project_id: &str, uuid: &str) -> Option<AuditEntry> {
        match self.registry.lookup(project_id, uuid) {
            Ok(Some(e)) => Some(AuditEntry {
                project_id: project_id.to_string(),
                uuid: uuid.to_string(),
                content: AuditContent::Live(serde_json::to_value(&e).ok()?),
            }),
            Ok(None) => {
                let last = self.registry.archived(project_id, uuid).ok()?.into_iter().last()?;
                Some(AuditEntry {
                    project_id: project_id.to_string(),
                    uuid: uuid.to_string(),
                    content: AuditContent::Archived {
                        tombstone_seq: last.tombstone_seq.unwrap_or(0),
                        value: serde_json::to_value(&last).ok()?,
                    },
                })
            }
            Err(e) => {
                error!(uuid, "audit snapshot: registry lookup failed: {e}");
                None
            }
        }
    }

    /// Commit every FINAL the audit repository has not seen (it is derived data).
    /// One pass over the WAL after recovery: collect ROLLBACKs (for replay to reconnecting
    /// editors) and commit every FINAL the audit repository has not seen (it is derived data).
    fn boot_scan(&mut self) {
        let since = self.audit.as_ref().map(|a| a.last_audited_seq()).unwrap_or(u64::MAX);
        let Ok(reader) = Reader::open(self.data.wal()) else {
            return;
        };
        let mut rollbacks = Vec::new();
        // Group missing FINALs per project, in chunks, to keep commits few but bounded.
        let mut pending: BTreeMap<String, (u64, u64, Vec<String>, Vec<String>)> = BTreeMap::new();
        let mut count = 0u64;
        let mut gov = self.governance.lock().unwrap();
        for entry in reader.map_while(|e| e.ok()) {
            let r = entry.record;
            gov.observe(&observed(&r));
            if r.phase == Phase::Rollback {
                rollbacks.push((r.project_id.clone(), RolledBack::from_record(&r)));
            }
            if r.seq <= since || r.phase != Phase::Final {
                continue;
            }
            count += 1;
            let p = pending.entry(r.project_id.clone()).or_insert((r.seq, r.seq, vec![], vec![]));
            p.1 = r.seq;
            p.2.push(r.operation_id.clone());
            p.3.extend(r.uuids.iter().cloned());
            if p.2.len() >= 1000 {
                let (a, b, ops, uuids) = pending.remove(&r.project_id).unwrap();
                self.submit_audit(a, b, ops, &r.project_id, &dedup(uuids));
            }
        }
        for (project, (a, b, ops, uuids)) in pending {
            self.submit_audit(a, b, ops, &project, &dedup(uuids));
        }
        if count > 0 {
            info!(since, finals = count, "audit reconciled from the WAL");
        }
        drop(gov);
        self.rollbacks = Arc::new(rollbacks);
    }

    /// Rollbacks of `project` found in the WAL at boot.
    pub fn rolled_back_since_boot(&self, project: &str) -> Vec<RolledBack> {
        self.rollbacks.iter().filter(|(p, _)| p == project).map(|(_, r)| r.clone()).collect()
    }

    /// The planner's view of a live record for `editor`.
    pub fn existing(&self, project_id: &str, uuid: &str, editor: &str) -> Option<Existing> {
        match self.registry.lookup(project_id, uuid) {
            Ok(Some(e)) => Some(Existing {
                kind: e.kind.clone(),
                name: e.name.clone(),
                quarantined: e.status == Status::Quarantined,
                editor_ref: e.bindings.get(editor).map(|b| b.editor_ref.clone()),
            }),
            _ => None,
        }
    }

    pub fn status_json(&self) -> Value {
        let w = self.wal.stats();
        let c = self.registry.counts();
        let audit = match &self.audit {
            Some(a) => {
                let s = a.stats();
                json!({"enabled": true, "last_audited_seq": s.last_audited_seq, "lag": w.last_seq.saturating_sub(s.last_audited_seq), "commits": s.commits, "failures": s.failures, "pending": s.pending})
            }
            None => json!({"enabled": false}),
        };
        json!({
            "seq": w.last_seq,
            "registry": {"live": c.live, "tombstoned": c.tombstoned, "quarantined": c.quarantined},
            "wal": {"segments": w.segments, "bytes": w.bytes, "appends": w.appends, "syncs": w.syncs},
            "audit": audit,
        })
    }

    /// Rewrite the sidecar when the registry changed since the last write.
    pub fn write_sidecar_if_dirty(&self) {
        let _turn = self.sidecar_lock.lock().unwrap();
        if self.sidecar_dirty.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.registry.write_sidecar() {
                self.sidecar_dirty.store(true, Ordering::SeqCst);
                error!("sidecar write failed: {e}");
            }
        }
    }

    /// Graceful close: drain the audit, flush the registry, write the sidecar, sync the WAL.
    pub async fn close(&self, timeout: Duration) {
        if let Some(a) = &self.audit {
            // Commit everything queued (audit lag 0 after a clean stop), then join the thread.
            let a = a.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = a.flush(timeout) {
                    warn!("audit still busy at shutdown ({e}); waiting for it to finish");
                }
                a.close();
            })
            .await;
        }
        if let Err(e) = self.registry.flush() {
            error!("registry flush at shutdown failed: {e}");
        }
        self.write_sidecar_if_dirty();
        if let Err(e) = self.wal.close().await {
            error!("WAL close failed: {e}");
        }
    }
}

impl Stores {
    /// Store a mesh attachment under its hash (durable before return). Idempotent.
    pub fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), DaemonError> {
        let dir = self.data.blobs();
        let path = dir.join(hash);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| DaemonError::DataDir { path: dir.clone(), message: e.to_string() })?;
        crate::fsutil::write_atomic(&path, bytes, None)
            .map_err(|e| DaemonError::DataDir { path, message: format!("cannot store mesh blob: {e}") })
    }

    pub fn has_blob(&self, hash: &str) -> bool {
        self.data.blobs().join(hash).exists()
    }

    /// A stored mesh, checked against its hash (a damaged blob is never sent).
    pub fn get_blob(&self, hash: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.data.blobs().join(hash)).ok()?;
        if blake3::hash(&bytes).to_hex().as_str() == hash {
            Some(bytes)
        } else {
            error!(mesh_hash = hash, "stored mesh blob fails its hash; not sent");
            None
        }
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// The audit repository is derived from the WAL. If it claims seqs the WAL no longer has
/// (the WAL was repaired), it is moved to quarantine whole and rebuilt from the WAL.
fn set_aside_audit_if_ahead(data: &DataDir, wal_last_seq: u64) {
    let dir = data.audit();
    if !dir.exists() {
        return;
    }
    match vibesync_audit::verify(&dir) {
        Ok(last) if last <= wal_last_seq => return,
        Ok(last) => warn!(
            audit_last_seq = last,
            wal_last_seq, "audit repository is ahead of the WAL (repaired log); setting it aside"
        ),
        Err(e) => warn!("audit repository unreadable ({e}); setting it aside"),
    }
    let target = data.quarantine().join(format!("git_safety-{}", crate::now_rfc3339().replace(':', "")));
    let _ = std::fs::create_dir_all(data.quarantine());
    if let Err(e) = std::fs::rename(&dir, &target) {
        error!("could not move {} to {}: {e}", dir.display(), target.display());
    }
}
