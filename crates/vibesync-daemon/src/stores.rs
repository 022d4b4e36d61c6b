//! The three stores opened together, in dependency order, with boot recovery:
//!
//! 1. WAL (`vibesync-wal`): verify, cut a torn tail, refuse corruption unless `--repair`.
//! 2. Registry (`vibesync-registry`): catch up from the WAL, or rebuild it from the WAL.
//! 3. Schema migration, if the registry asks for one — as a WAL transaction.
//! 4. BEGIN without COMMIT/ROLLBACK → ROLLBACK (`RECOVERED_INCOMPLETE`) and quarantine.
//! 5. COMMIT without FINAL → FINAL (the registry already caught up idempotently).
//! 6. Audit (`vibesync-audit`): refuse a history ahead of the WAL (docs/WAL.md §5), note the
//!    FINALs newer than its last commit in one seq-ordered pass, then hook the WAL so every
//!    later durable FINAL is noted in seq order.
//! 7. Sidecar: checked, rewritten when stale or damaged.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{error, info, warn};
use vibesync_audit::{Audit, AuditContent, FinalMark};
use vibesync_engine::governance::{FailureIndex, Observed, SeenPhase};
use vibesync_engine::register::Existing;
use vibesync_registry::{Registry, RegistryConfig, RegistryError, Status};
use vibesync_wal::{Outcome, Phase, Reader, Record, RecordDraft, Wal, WalConfig};

use crate::config::Config;
use crate::paths::DataDir;
use crate::txn::Txn;
use crate::{DaemonError, ServeOptions};
use vibesync_engine::notsynced::{KeptOf, NotSynced, NotSyncedIndex};

/// Session id used for records the daemon writes on its own (recovery, migration).
pub const DAEMON_SESSION: &str = "daemon";

#[derive(Clone)]
pub struct Stores {
    pub wal: Wal,
    pub registry: Arc<Registry>,
    pub audit: Option<Arc<Audit>>,
    data: DataDir,
    sidecar_dirty: Arc<AtomicBool>,
    /// Applied to the registry since its last flush.
    registry_dirty: Arc<AtomicBool>,
    /// The boot checkpoint's writer (docs/WAL.md §9) and how this boot used one.
    checkpoints: Arc<std::sync::Mutex<crate::checkpoint::Tracker>>,
    checkpointer_stop: Arc<AtomicBool>,
    boot: Arc<Value>,
    /// ROLLBACK records found at boot (project, rollback), for replay to reconnecting editors.
    rollbacks: Arc<Vec<(String, RolledBack)>>,
    late_commits: Arc<Vec<(String, LateCommit)>>,
    /// The not-synced uuids per project found at boot (docs/PROTOCOL.md §6.4), seeding the
    /// sync actors.
    not_synced: Arc<NotSyncedIndex>,
    /// One sidecar writer at a time (boot check thread, timer, shutdown).
    sidecar_lock: Arc<std::sync::Mutex<()>>,
    /// Failure counters and last errors, derived from the WAL (log-as-state).
    pub governance: Arc<std::sync::Mutex<FailureIndex>>,
    /// The WAL was compacted up to this seq (docs/WAL.md §11; 0 = never).
    anchor_seq: Arc<AtomicU64>,
    /// Projects whose sync panics next at a point ([`Stores::inject_step_panic`]; tests only).
    #[cfg(feature = "fault-injection")]
    step_panics: Arc<std::sync::Mutex<std::collections::HashMap<String, StepPanic>>>,
}

pub use vibesync_engine::project::{late_commit_of, LateCommit, RolledBack};

/// What a project's sync starts from besides the registry ([`Stores::seed_at_boot`],
/// [`Stores::seed_now`]).
pub struct SyncSeed {
    pub rolled_back: Vec<RolledBack>,
    pub late_commits: Vec<LateCommit>,
    pub not_synced: Vec<NotSynced>,
    pub kept: Vec<(String, KeptOf)>,
}

/// Where an injected panic stops a project's sync ([`Stores::inject_step_panic`]; tests
/// only).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPanic {
    /// As its next step begins.
    AtStart,
    /// As it is about to write the FINAL of a sync batch it committed.
    BeforeFinal,
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The ROLLBACK (`RECOVERED_INCOMPLETE`) of an operation left without COMMIT or ROLLBACK
/// (docs/WAL.md §9): by a crash, found at boot, or by a project's sync that stopped on a
/// panic, found when it restarts.
fn recovered_incomplete(tx: &vibesync_wal::IncompleteTx, reason: &str) -> RecordDraft {
    RecordDraft {
        session_id: tx.session_id.clone(),
        operation_id: tx.operation_id.clone(),
        uuids: tx.uuids.clone(),
        project_id: tx.project_id.clone(),
        phase: Phase::Rollback,
        outcome: Outcome::Error,
        error_code: Some(vibesync_protocol::RollbackCode::RecoveredIncomplete.as_str().into()),
        payload: json!({"reason": reason, "begin_seq": tx.begin_seq, "provisional": tx.provisional}),
    }
}

/// What the governance index needs of a WAL record; its time comes from `ts`.
pub fn observed(r: &Record) -> Observed<'_> {
    let at_ms = time::OffsetDateTime::parse(&r.ts, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
        .unwrap_or(0);
    Observed {
        seq: r.seq,
        project_id: &r.project_id,
        at_ms,
        phase: match r.phase {
            Phase::Step => SeenPhase::Step,
            Phase::Rollback => SeenPhase::Rollback,
            _ => SeenPhase::Other,
        },
        uuids: &r.uuids,
        error_code: r.error_code.as_deref(),
        payload: &r.payload,
    }
}

/// The WAL's records from the start, or (`from`) after a checkpoint position; those this
/// boot's recovery verified (`verified`, see [`Reader::verified`]) are not hashed again. A
/// read error is the stream's last item (the registry's open fails with it), never an early
/// end.
fn wal_records(
    dir: &std::path::Path,
    from: Option<vibesync_wal::Position>,
    verified: (u64, u64),
) -> Box<dyn Iterator<Item = vibesync_registry::WalRead>> {
    let reader = match from {
        Some(p) => Reader::open_at(dir, p),
        None => Reader::open(dir),
    }
    .map(|r| r.verified(verified.0, verified.1));
    match reader {
        Ok(r) => Box::new(until_error(r.map(|e| e.map(|e| e.record).map_err(vibesync_wal::WalError::from)))),
        Err(e) => Box::new(std::iter::once(Err(e))),
    }
}

/// `items` up to and including its first error.
pub(crate) fn until_error<T, E>(items: impl Iterator<Item = Result<T, E>>) -> impl Iterator<Item = Result<T, E>> {
    let mut failed = false;
    items.map_while(move |r| {
        if failed {
            return None;
        }
        failed = r.is_err();
        Some(r)
    })
}

impl Stores {
    pub fn open(config: &Config, data: &DataDir, opts: &ServeOptions) -> Result<Stores, DaemonError> {
        let started = std::time::Instant::now();
        let lap = |what: &str| info!(elapsed_ms = started.elapsed().as_millis() as u64, "boot: {what}");
        let mut checkpoint = match crate::checkpoint::load(data.root()) {
            Ok(c) => c,
            Err(why) => {
                warn!("boot checkpoint unusable ({why}); moved to quarantine, reading the whole log");
                crate::checkpoint::set_aside(data.root(), &data.quarantine());
                None
            }
        };
        let wal_cfg = WalConfig {
            dir: data.wal(),
            quarantine_dir: data.quarantine(),
            segment_bytes: config.storage.wal_segment_bytes,
            repair: opts.repair,
            resume: checkpoint.as_ref().map(crate::checkpoint::Checkpoint::resume_at),
            archive_dir: config.storage.wal_archive.then(|| data.wal_archive()),
        };
        let (wal, recovery) = Wal::open(wal_cfg)?;
        if let Some(why) = &recovery.resume_rejected {
            warn!("boot checkpoint does not match the WAL ({why}); reading the whole log");
            checkpoint = None;
        }
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
        // A compacted WAL starts after its anchor; the registry base it keeps is what the
        // removed records built (docs/WAL.md §11).
        let (anchor_seq, carry) = match &recovery.anchor {
            Some(a) => {
                reg_cfg.anchor_seq = a.seq;
                reg_cfg.base = a.base.get("registry").and_then(|b| {
                    serde_json::from_value::<vibesync_registry::RegistryBase>(b.clone())
                        .map_err(|e| error!("compaction anchor: the registry base is unreadable ({e})"))
                        .ok()
                        .map(Arc::new)
                });
                info!(anchor_seq = a.seq, carried = a.carry.len(), "WAL compacted up to the anchor");
                (a.seq, a.carry.clone())
            }
            None => (0, Vec::new()),
        };
        // A tail the WAL recovery cut off itself (torn or repaired: logged, kept in
        // quarantine) is not a silent loss (docs/WAL.md §5): derived stores that saw it are
        // rebuilt instead of stopping the boot.
        let repair = opts.repair || recovery.torn_tail.is_some() || recovery.repaired.is_some();
        reg_cfg.repair = repair;
        lap("WAL recovered");
        // The audit's head, and the boot scan of the WAL (governance index, ROLLBACKs,
        // not-synced uuids, FINALs the audit lacks) on a thread of its own while the registry
        // opens: it needs neither the registry nor anything boot appends (those records are
        // observed after it, below), and a first boot's registry build is the long pass.
        // What the recovery pass just verified: later passes of this boot do not hash it again.
        let verified = (recovery.resumed_after.unwrap_or(0), recovery.last_seq);
        let head = audit_head(config, data, repair, recovery.last_seq)?;
        let since = if config.audit.enabled { head.as_ref().map_or(0, |h| h.last_seq) } else { u64::MAX };
        // After a checkpoint only the records after it are read, unless the audit lost
        // commits the checkpoint counted on (docs/WAL.md §9).
        let scan_from = checkpoint.clone().filter(|c| since >= c.seq);
        let governance = Arc::new(std::sync::Mutex::new(FailureIndex::new(config.governance.thresholds())));
        let scan_job = {
            let (scan_data, governance, carry) = (data.clone(), governance.clone(), carry.clone());
            std::thread::Builder::new()
                .name("boot-scan".into())
                .spawn(move || {
                    let t = std::time::Instant::now();
                    let mut gov = governance.lock().unwrap();
                    let span = ScanSpan {
                        compacted_upto: anchor_seq,
                        checkpoint: scan_from.as_ref(),
                        carry: &carry,
                        verified,
                    };
                    let scan = boot_scan(&scan_data, span, since, since, Some(&mut gov));
                    info!(elapsed_ms = t.elapsed().as_millis() as u64, "boot: the WAL scan took (beside the registry)");
                    scan
                })
                .map_err(|e| DaemonError::DataDir {
                    path: data.root().to_path_buf(),
                    message: format!("cannot start the boot scan thread: {e}"),
                })?
        };
        let join_scan = |job: std::thread::JoinHandle<Result<BootScan, DaemonError>>| match job.join() {
            Ok(scan) => scan,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let resume =
            checkpoint.as_ref().map(|c| vibesync_registry::Resume { after_seq: c.seq, registry_seq: c.registry_seq });
        let from = checkpoint.as_ref().map(crate::checkpoint::Checkpoint::position);
        let wal_dir = data.wal();
        let opened = Registry::open_resuming(&reg_cfg, resume, |short| {
            wal_records(&wal_dir, if short { from } else { None }, verified)
        });
        let (registry, report) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let _ = join_scan(scan_job);
                return Err(match e {
                    RegistryError::AheadOfWal { registry_seq, wal_last_seq, .. } => DaemonError::WalLostTail {
                        store: "registry",
                        store_seq: registry_seq,
                        wal_last_seq,
                        wal_dir: data.wal(),
                    },
                    e => e.into(),
                });
            }
        };
        lap("registry opened");
        info!(report = ?report, "registry opened");
        let mut scan = join_scan(scan_job)?;
        lap("boot scan joined");
        let stores = Stores {
            wal,
            registry: Arc::new(registry),
            audit: None,
            data: data.clone(),
            sidecar_dirty: Arc::new(AtomicBool::new(true)),
            registry_dirty: Arc::new(AtomicBool::new(false)),
            checkpoints: Arc::new(std::sync::Mutex::new(crate::checkpoint::Tracker::new(
                data.wal(),
                data.root().to_path_buf(),
                checkpoint.clone(),
                carry.clone(),
            ))),
            checkpointer_stop: Arc::new(AtomicBool::new(false)),
            boot: Arc::new(json!({
                "resumed_after": recovery.resumed_after,
                "wal_records_read": recovery.records,
                "registry": report,
            })),
            rollbacks: Arc::new(Vec::new()),
            late_commits: Arc::new(Vec::new()),
            not_synced: Arc::new(NotSyncedIndex::default()),
            sidecar_lock: Arc::new(std::sync::Mutex::new(())),
            governance,
            anchor_seq: Arc::new(AtomicU64::new(anchor_seq)),
            #[cfg(feature = "fault-injection")]
            step_panics: Arc::default(),
        };

        // What boot appends itself, observed by the scan after it (it read the WAL up to here).
        let mut boot_appended: Vec<Record> = Vec::new();
        // The last seq an editor may have been sent before the stop.
        let wal_end = stores.wal.last_seq();
        if let Some(payload) = stores.registry.migration_payload() {
            let op = uuid::Uuid::new_v4().to_string();
            info!(operation_id = %op, payload = %payload, "migrating registry schema");
            let records = stores.append_txn_blocking(&op, "", vec![], vec![payload], json!({"op":"migrate"}))?;
            stores.registry.apply_committed(&records)?;
            stores.registry.flush()?;
            boot_appended.extend(records);
            boot_appended.extend(stores.final_blocking(&op, "", vec![])?);
        }

        for tx in &recovery.transactions.incomplete {
            warn!(operation_id = %tx.operation_id, uuids = ?tx.uuids, begin_seq = tx.begin_seq, "rolling back a transaction left incomplete by a crash");
            boot_appended.extend(
                stores.wal.append_blocking(vec![recovered_incomplete(
                    tx,
                    "BEGIN without COMMIT or ROLLBACK found at boot",
                )])?,
            );
            // A sync batch (session "sync") cut by a crash is rolled back deterministically: its
            // uuids stay live, the registry keeps the last committed state and reconnecting
            // editors are re-sent it (docs/PROTOCOL.md §6.6). It is not a sync failure for the
            // governance index (crashes count through the unclean-boot rule). Any other interrupted transaction
            // quarantines the uuids it touched until a person looks (docs/WAL.md).
            if tx.session_id == crate::txn::SYNC_SESSION {
                continue;
            }
            let mut live: Vec<String> = Vec::new();
            for u in &tx.uuids {
                // A read error stops the boot: an unreadable uuid is never left unquarantined.
                if stores.registry.lookup(&tx.project_id, u)?.is_some_and(|e| e.status == Status::Live) {
                    live.push(u.clone());
                }
            }
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
                boot_appended.extend(records);
                boot_appended.extend(stores.final_blocking(&op, &tx.project_id, live)?);
            }
        }
        for tx in &recovery.transactions.unfinalized {
            info!(operation_id = %tx.operation_id, uuids = ?tx.uuids, commit_seq = tx.commit_seq, "finalizing a committed transaction after a crash");
            // A `tombstone` request's FINAL is written once the project's sync has relayed
            // its deletes: without one, an editor may have been sent a later seq and never
            // the delete. Recorded as a late delete (docs/WAL.md §9, "Late deletes"), so the
            // replays after any `last_seq` up to the stop carry it.
            stores.registry.flush()?;
            boot_appended.extend(stores.finalize_cut_relay(
                tx,
                wal_end,
                json!({"recovered": true, "commit_seq": tx.commit_seq}),
            )?);
        }

        let mut stores = stores;
        {
            let mut gov = stores.governance.lock().unwrap();
            for r in boot_appended {
                scan.observe(r, Some(&mut gov), since, since, false);
            }
        }
        stores.open_audit(config, repair, head, since, scan, &carry)?;
        lap("audit reconciled");
        stores.checkpointer_stop = crate::checkpoint::spawn(
            stores.checkpoints.clone(),
            stores.wal.clone(),
            Arc::downgrade(&stores.registry),
            stores.audit.as_ref().map(Arc::downgrade),
            stores.registry_dirty.clone(),
        );
        // The live-key filter (a registration of a new uuid then skips sled's read of an
        // absent key) is built off the boot path too; until it is ready, sled answers.
        let registry = Arc::downgrade(&stores.registry);
        let spawned = std::thread::Builder::new().name("vibesync-keys".into()).spawn(move || {
            let Some(registry) = registry.upgrade() else { return };
            if let Err(e) = registry.index_keys() {
                warn!("live-key filter not built (new uuids are looked up in sled): {e}");
            }
        });
        if let Err(e) = spawned {
            warn!("live-key filter not built (new uuids are looked up in sled): cannot start its thread: {e}");
        }
        // The sidecar is a backup: its full comparison runs off the boot path.
        let bg = stores.clone();
        std::thread::spawn(move || {
            let _turn = bg.sidecar_lock.lock().unwrap();
            // A graceful close that began first wrote what it had: nothing is written into
            // the data directory after `close` returns (it takes this turn after setting the
            // flag).
            if bg.checkpointer_stop.load(Ordering::SeqCst) {
                return;
            }
            match bg.registry.ensure_sidecar() {
                Ok(status) => info!(?status, "sidecar checked"),
                Err(e) => error!("sidecar check failed: {e}"),
            }
        });
        Ok(stores)
    }

    /// The uuids of an unfinalized transaction `tx` that it tombstoned, when it is an
    /// editor's `tombstone` request (a session's, not the sync's or the daemon's): the
    /// registry archived a version of them with a synced state (an editor can hold it only
    /// then, as a replay's `delete`s, docs/PROTOCOL.md §6.6) at a seq of this transaction. A
    /// read error is an error.
    fn relay_cut_by_stop(&self, tx: &vibesync_wal::UnfinalizedTx) -> Result<Vec<String>, DaemonError> {
        if tx.session_id == crate::txn::SYNC_SESSION || tx.session_id == DAEMON_SESSION {
            return Ok(Vec::new());
        }
        let by_tx = |t: u64| (tx.begin_seq..=tx.commit_seq).contains(&t);
        let mut cut = Vec::new();
        for u in &tx.uuids {
            let archived = self.registry.archived(&tx.project_id, u)?;
            if archived.iter().any(|e| e.tombstone_seq.is_some_and(by_tx) && e.state.is_some()) {
                cut.push(u.clone());
            }
        }
        Ok(cut)
    }

    /// Finalize committed transaction `tx` (`final_payload` in its FINAL), first recording
    /// the deletes of a `tombstone` whose relay a stop may have cut (`relay_cut_by_stop`) as a
    /// `late_delete` STEP after `after_seq` (docs/WAL.md §9, "Late deletes"). Boot does this
    /// for every transaction it finds without a FINAL, a graceful stop for the tombstones its
    /// end of sync left unrelayed. Returns the records written.
    pub(crate) fn finalize_cut_relay(
        &self,
        tx: &vibesync_wal::UnfinalizedTx,
        after_seq: u64,
        final_payload: Value,
    ) -> Result<Vec<Record>, DaemonError> {
        let mut written = Vec::new();
        let cut = self.relay_cut_by_stop(tx)?;
        if !cut.is_empty() {
            let op = uuid::Uuid::new_v4().to_string();
            info!(operation_id = %op, project_id = %tx.project_id, uuids = ?cut, tombstone_seq = tx.commit_seq, after_seq, "deletes whose relay a stop may have cut: recorded for the replays of editors that may have missed them");
            written.extend(self.wal.append_blocking(vec![vibesync_engine::project::late_delete_draft(
                &tx.project_id,
                &op,
                cut,
                tx.commit_seq,
                after_seq,
            )])?);
        }
        written.extend(self.wal.append_blocking(vec![RecordDraft {
            session_id: tx.session_id.clone(),
            operation_id: tx.operation_id.clone(),
            uuids: tx.uuids.clone(),
            project_id: tx.project_id.clone(),
            phase: Phase::Final,
            outcome: Outcome::Ok,
            error_code: None,
            payload: final_payload,
        }])?);
        Ok(written)
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

    fn final_blocking(&self, op: &str, project_id: &str, uuids: Vec<String>) -> Result<Vec<Record>, DaemonError> {
        let txn = Txn { session_id: DAEMON_SESSION, operation_id: op, project_id };
        Ok(self.wal.append_blocking(vec![txn.final_draft(uuids, json!({}))])?)
    }

    /// Apply a committed transaction to the registry (flushed by the background flusher).
    pub fn apply_committed(&self, records: &[Record]) -> Result<(), DaemonError> {
        self.apply_committed_group(&[records])
    }

    /// [`Stores::apply_committed`] for consecutive committed transactions in COMMIT order,
    /// applied to the registry as one group (`Registry::apply_committed_group`).
    pub fn apply_committed_group(&self, txns: &[&[Record]]) -> Result<(), DaemonError> {
        let reports = self.registry.apply_committed_group(txns)?;
        // Durable by the WAL already; the registry writes to sled and flushes in the
        // background, on the checkpointer (a sled batch wakes sled's writer threads and a
        // flush is an fsync: never on an acknowledgement path or an async worker).
        self.registry_dirty.store(true, Ordering::SeqCst);
        self.sidecar_dirty.store(true, Ordering::SeqCst);
        reports.into_iter().try_for_each(|r| self.applied(r))
    }

    fn applied(&self, report: vibesync_registry::ApplyReport) -> Result<(), DaemonError> {
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
        self.txn_as(DAEMON_SESSION, project_id, uuids, steps, summary).await
    }

    /// [`Stores::daemon_txn`] written under `session_id` (the offline `safe-mode clear`
    /// writes as `cli`: `start::clear_safe_mode_offline`).
    pub async fn txn_as(
        &self,
        session_id: &str,
        project_id: &str,
        uuids: Vec<String>,
        steps: Vec<Value>,
        summary: Value,
    ) -> Result<u64, DaemonError> {
        let op = uuid::Uuid::new_v4().to_string();
        let txn = Txn { session_id, operation_id: &op, project_id };
        let records = self.wal.append(txn.drafts(&uuids, summary.clone(), steps, summary)).await?;
        let seq = records.last().map(|r| r.seq).unwrap_or(0);
        {
            let mut gov = self.governance.lock().unwrap();
            for r in &records {
                gov.observe(&observed(r));
            }
        }
        self.apply_committed(&records)?;
        self.finalize(session_id, project_id, &op, uuids).await?;
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
        // The audit is fed by the WAL's durable hook, in seq order (see `open_audit`).
        let txn = Txn { session_id, operation_id, project_id };
        self.wal.append(vec![txn.final_draft(uuids, json!({}))]).await?;
        Ok(())
    }

    /// Open the ghost audit and feed it every FINAL in seq order: first the ones its history
    /// lacks (`scan`: one pass over the WAL, all projects, started by `open`), then — through
    /// the WAL's durable hook — every FINAL made durable from now on. The same pass rebuilt the
    /// governance index and collected ROLLBACKs. docs/WAL.md §5: a history that anchors a
    /// different `h` stops the boot unless `--repair`.
    fn open_audit(
        &mut self,
        config: &Config,
        repair: bool,
        mut head: Option<vibesync_audit::Head>,
        since: u64,
        mut scan: BootScan,
        carry: &[Record],
    ) -> Result<(), DaemonError> {
        // A history whose newest commit is at or before the compaction anchor cannot be
        // compared with a record that is gone (docs/WAL.md §11); at the anchor it is compared
        // with the anchor's h.
        let anchor = self.anchor_seq();
        if anchor > 0 && since <= anchor {
            match vibesync_wal::load_anchor(&self.data.wal()) {
                Ok(Some(a)) if a.seq == since => scan.anchor_h = Some(a.h),
                _ => {
                    if head.is_some() {
                        warn!(audit_seq = since, anchor, "audit: its newest commit is before the WAL's compaction anchor; its anchor cannot be checked");
                    }
                    head = head.map(|mut h| {
                        h.wal_h = None;
                        h
                    });
                }
            }
        }
        if let Some(h) = &head {
            let anchored = h.wal_h.as_ref().map(|ah| (ah, scan.anchor_h.as_ref()));
            if let Some((audit_h, wal_h)) = anchored.filter(|(a, w)| w.is_none_or(|w| w != *a)) {
                let wal_h = wal_h.cloned().unwrap_or_else(|| "(no record)".into());
                if !repair {
                    return Err(DaemonError::ForeignAudit {
                        commit: h.commit.clone(),
                        seq: h.last_seq,
                        audit_h: audit_h.clone(),
                        wal_h,
                    });
                }
                set_aside_audit(
                    &self.data,
                    &format!(
                        "it anchors h {audit_h} at seq {} but the WAL has {wal_h} (repair or a cut WAL tail)",
                        h.last_seq
                    ),
                );
                let span = ScanSpan { compacted_upto: self.anchor_seq(), checkpoint: None, carry, verified: (0, 0) };
                scan.marks = boot_scan(&self.data, span, 0, 0, None)?.marks;
            }
        }
        self.rollbacks = Arc::new(std::mem::take(&mut scan.rollbacks));
        self.late_commits = Arc::new(std::mem::take(&mut scan.late_commits));
        self.not_synced = Arc::new(std::mem::take(&mut scan.not_synced));
        if !config.audit.enabled {
            return Ok(());
        }
        let registry = self.registry.clone();
        let cfg = vibesync_audit::AuditConfig { group_ms: config.audit.group_ms, ..Default::default() };
        let audit = match Audit::open_with(
            self.data.audit(),
            cfg,
            Box::new(move |p, u, since, upto| audit_content(&registry, p, u, since, upto)),
        ) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                error!("ghost audit disabled for this run: {e}");
                return Ok(());
            }
        };
        let count = scan.marks.len();
        let scanned_to = scan.marks.last().map(|m| m.seq).unwrap_or(0);
        for m in scan.marks {
            let _ = audit.note(m);
        }
        // Nothing appends while the stores open, so the hook starts right after the scan.
        let hooked = audit.clone();
        let cut = self.wal.set_durable_hook(Box::new(move |records| {
            for r in records.iter().filter(|r| r.phase == Phase::Final) {
                let _ = hooked.note(FinalMark {
                    seq: r.seq,
                    h: r.h.clone(),
                    operation_id: r.operation_id.clone(),
                    project_id: r.project_id.clone(),
                    uuids: r.uuids.clone(),
                });
            }
        }));
        if cut > scan.last_seq {
            error!(
                scanned_to = scan.last_seq,
                cut,
                "audit: records were appended during the boot scan; FINALs between them are audited at the next boot"
            );
        }
        if count > 0 {
            info!(since, finals = count, last = scanned_to, "audit: catching up from the WAL");
        }
        self.audit = Some(audit);
        Ok(())
    }

    /// The WAL was compacted up to this seq (0 = never; docs/WAL.md §11).
    pub fn anchor_seq(&self) -> u64 {
        self.anchor_seq.load(Ordering::SeqCst)
    }

    /// One WAL compaction (docs/WAL.md §11), run by the maintenance pass. Removes the closed
    /// segments whose every record is at or before the boot checkpoint and the audit's last
    /// commit, and whose last write is older than `retention`; the anchor written first
    /// carries the checkpoint's kept records and a registry base. Holds the checkpointer's
    /// lock, so no checkpoint is written meanwhile.
    pub fn compact_wal(&self, retention: Duration, archive: bool) -> Result<Value, String> {
        let Some(audit) = &self.audit else {
            return Ok(
                json!({"skipped": "the audit is off: nothing else holds the history, so the WAL is kept whole"}),
            );
        };
        let tracker = self.checkpoints.lock().unwrap();
        let Some(c) = tracker.last() else {
            return Ok(json!({"skipped": "no boot checkpoint yet"}));
        };
        let covered = c.seq.min(audit.last_audited_seq());
        let wal_dir = self.data.wal();
        let cutoff = std::time::SystemTime::now()
            .checked_sub(retention)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let stamps = vibesync_wal::segment_stamps(&wal_dir, u64::MAX).map_err(|e| e.to_string())?;
        let upto = match stamps.iter().find(|s| s.modified_ns > cutoff) {
            Some(young) => covered.min(young.first_seq.saturating_sub(1)),
            None => covered,
        };
        let plan = match vibesync_wal::plan_compaction(&wal_dir, upto).map_err(|e| e.to_string())? {
            Some(p) => p,
            None => return Ok(json!({"removed_segments": 0, "covered_seq": covered, "retained_upto": upto})),
        };
        let carry: Vec<Record> = c.kept.iter().filter(|r| r.seq <= plan.anchor_seq).cloned().collect();
        let base = self.registry.export_base(c.registry_seq).map_err(|e| e.to_string())?;
        let base = json!({ "registry": base });
        let archive_dir = archive.then(|| self.data.wal_archive());
        let done = vibesync_wal::compact(
            &wal_dir,
            &plan,
            carry,
            base,
            archive_dir.as_deref(),
            vibesync_wal::CompactStop::Never,
        )
        .map_err(|e| e.to_string())?;
        self.anchor_seq.store(done.anchor.seq, Ordering::SeqCst);
        self.wal.note_compacted(done.removed.len() as u64, done.bytes);
        info!(
            anchor_seq = done.anchor.seq,
            removed = done.removed.len(),
            bytes = done.bytes,
            archived = archive,
            "WAL compacted"
        );
        Ok(json!({
            "anchor_seq": done.anchor.seq,
            "removed_segments": done.removed.len(),
            "removed_bytes": done.bytes,
            "archived": archive,
            "carried_records": done.anchor.carry.len(),
        }))
    }

    /// What boot read for `project`'s sync (docs/WAL.md §9): its ROLLBACKs, late COMMITs,
    /// not-synced and kept uuids.
    pub fn seed_at_boot(&self, project: &str) -> SyncSeed {
        SyncSeed {
            rolled_back: self.rolled_back_since_boot(project),
            late_commits: self.late_commits_since_boot(project),
            not_synced: self.not_synced_at_boot(project).into_values().collect(),
            kept: self.kept_at_boot(project),
        }
    }

    /// [`Stores::seed_at_boot`] as a boot would read it now, at the WAL's durable end: from the
    /// checkpointer's records (`checkpoint::Tracker::seed_now`). A project's sync restarting
    /// after a step panicked starts from it, not from what boot read. Blocking; a read error is
    /// an error.
    ///
    /// The project's sync batches the stopped sync left open are settled first, as a boot
    /// settles them (docs/WAL.md §9): one without COMMIT or ROLLBACK is rolled back,
    /// `RECOVERED_INCOMPLETE` — a cut batch, never a failure counted against its objects; its
    /// ROLLBACK is then among the seed's, replayed to the editors that reconnect. One
    /// committed without a FINAL is finalized (`{"recovered":true,"commit_seq":C}`), unless
    /// its operation id is in `finalizing` (a FINAL being written, read before the WAL): until
    /// then it held every checkpoint back.
    pub fn seed_now(&self, project: &str, finalizing: &HashSet<String>) -> Result<SyncSeed, DaemonError> {
        let read = || {
            self.checkpoints.lock().unwrap().seed_now(&self.wal, project, crate::txn::SYNC_SESSION).map_err(|message| {
                DaemonError::DataDir { path: self.data.wal(), message: format!("cannot read the WAL: {message}") }
            })
        };
        let mut now = read()?;
        let orphans: Vec<_> = now.open.unfinalized.iter().filter(|tx| !finalizing.contains(&tx.operation_id)).collect();
        if !now.open.incomplete.is_empty() || !orphans.is_empty() {
            for tx in &now.open.incomplete {
                warn!(operation_id = %tx.operation_id, project_id = %tx.project_id, uuids = ?tx.uuids, begin_seq = tx.begin_seq, "rolling back a sync batch the stopped sync left open");
            }
            let why = "BEGIN without COMMIT or ROLLBACK when the project's sync restarted after a step panicked";
            if !now.open.incomplete.is_empty() {
                self.wal
                    .append_blocking(now.open.incomplete.iter().map(|tx| recovered_incomplete(tx, why)).collect())?;
            }
            for tx in orphans {
                warn!(operation_id = %tx.operation_id, project_id = %tx.project_id, uuids = ?tx.uuids, commit_seq = tx.commit_seq, "finalizing a sync batch the stopped sync committed and left without a FINAL");
                let payload = json!({"recovered": true, "commit_seq": tx.commit_seq});
                self.finalize_cut_relay(tx, self.wal.last_seq(), payload)?;
            }
            now = read()?;
        }
        let rolled_back = now.records.iter().filter(|r| r.phase == Phase::Rollback).map(RolledBack::from_record);
        Ok(SyncSeed {
            rolled_back: rolled_back.collect(),
            late_commits: now.records.iter().filter_map(late_commit_of).collect(),
            not_synced: now.not_synced,
            kept: now.kept,
        })
    }

    /// Make `project`'s sync panic next `at` that point, as a bug would (tests only: the
    /// `fault-injection` feature). The project's sync restarts from the stores.
    #[cfg(feature = "fault-injection")]
    pub fn inject_step_panic(&self, project: &str, at: StepPanic) {
        self.step_panics.lock().unwrap().insert(project.to_string(), at);
    }

    /// Whether `project`'s sync is to panic now, `at` this point ([`Stores::inject_step_panic`]),
    /// once.
    #[cfg(feature = "fault-injection")]
    pub fn take_step_panic(&self, project: &str, at: StepPanic) -> bool {
        let mut panics = self.step_panics.lock().unwrap();
        panics.get(project) == Some(&at) && panics.remove(project).is_some()
    }

    /// Rollbacks of `project` found in the WAL at boot.
    pub fn rolled_back_since_boot(&self, project: &str) -> Vec<RolledBack> {
        self.rollbacks.iter().filter(|(p, _)| p == project).map(|(_, r)| r.clone()).collect()
    }

    /// Late COMMITs of `project` found in the WAL at boot (replayed to editors that
    /// reconnect, docs/PROTOCOL.md §6.6).
    pub fn late_commits_since_boot(&self, project: &str) -> Vec<LateCommit> {
        self.late_commits.iter().filter(|(p, _)| p == project).map(|(_, l)| l.clone()).collect()
    }

    /// The not-synced uuids of `project` found in the WAL at boot (vibesync_engine::notsynced).
    pub fn not_synced_at_boot(&self, project: &str) -> BTreeMap<vibesync_engine::notsynced::Key, NotSynced> {
        self.not_synced.project(project)
    }

    /// What the `kept` STEPs of `project` said at boot (vibesync_engine::notsynced).
    pub fn kept_at_boot(&self, project: &str) -> Vec<(String, KeptOf)> {
        self.not_synced.kept(project)
    }

    /// Every project with not-synced uuids at boot, and its list.
    pub fn not_synced_projects_at_boot(&self) -> Vec<(String, Vec<NotSynced>)> {
        self.not_synced.projects().map(|(p, m)| (p.clone(), m.values().cloned().collect())).collect()
    }

    /// The planner's view of a live record for `editor`; a read error is an error.
    pub fn existing(&self, project_id: &str, uuid: &str, editor: &str) -> Result<Option<Existing>, RegistryError> {
        Ok(self.registry.lookup_shared(project_id, uuid)?.map(|e| Existing {
            kind: e.kind.clone(),
            name: e.name.clone(),
            quarantined: e.status == Status::Quarantined,
            editor_ref: e.bindings.get(editor).map(|b| b.editor_ref.clone()),
        }))
    }

    pub fn status_json(&self) -> Value {
        let w = self.wal.stats();
        let c = self.registry.counts();
        let audit = match &self.audit {
            Some(a) => {
                let s = a.stats();
                json!({
                    "enabled": true,
                    "last_audited_seq": s.last_audited_seq,
                    "lag": w.last_seq.saturating_sub(s.last_audited_seq),
                    "pending": s.pending,
                    "lag_ms": s.lag_ms,
                    "commits": s.commits,
                    "finals": s.finals,
                    "cpu_us": s.cpu_us,
                    "cpu_us_per_final": if s.finals > 0 { s.cpu_us as f64 / s.finals as f64 } else { 0.0 },
                    "failures": s.failures,
                    "suspended": s.suspended,
                    "last_error": s.last_error,
                })
            }
            // Disabled: the same fields, nothing waiting for it (docs/PROTOCOL.md §5 `status`).
            None => json!({
                "enabled": false, "last_audited_seq": 0, "lag": 0, "pending": 0, "lag_ms": 0, "commits": 0,
                "finals": 0, "cpu_us": 0, "cpu_us_per_final": 0.0, "failures": 0, "suspended": false, "last_error": null,
            }),
        };
        json!({
            "checkpoint": self.checkpoints.lock().unwrap().last().map(|c| json!({
                "seq": c.seq, "registry_seq": c.registry_seq, "audit_seq": c.audit_seq, "written_at": c.written_at,
            })),
            "boot": *self.boot,
            "seq": w.last_seq,
            "registry": {"live": c.live, "tombstoned": c.tombstoned, "quarantined": c.quarantined},
            "wal": {"segments": w.segments, "bytes": w.bytes, "appends": w.appends, "syncs": w.syncs, "compacted_upto": self.anchor_seq()},
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
        self.checkpointer_stop.store(true, Ordering::SeqCst);
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
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let audit = me.audit.as_deref();
            if let Err(e) = me.checkpoints.lock().unwrap().checkpoint(&me.wal, &me.registry, audit) {
                warn!("no checkpoint at shutdown (the next boot reads more of the log): {e}");
            }
        })
        .await;
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

    /// The size of a stored mesh, None when it is not stored. A store that cannot be read is
    /// an error, never "not stored".
    pub fn blob_len(&self, hash: &str) -> Result<Option<u64>, DaemonError> {
        let path = self.data.blobs().join(hash);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DaemonError::DataDir { path, message: format!("cannot read the mesh blob store: {e}") }),
        }
    }

    /// A stored mesh, checked against its hash: None when it is not stored; a blob that
    /// cannot be read or fails its hash is an error (a damaged blob is never sent).
    pub fn get_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, DaemonError> {
        let path = self.data.blobs().join(hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DaemonError::DataDir { path, message: format!("cannot read mesh blob: {e}") }),
        };
        let actual = vibesync_protocol::mesh::Mesh::hash_bytes(&bytes);
        if actual == hash {
            Ok(Some(bytes))
        } else {
            Err(DaemonError::DataDir {
                path,
                message: format!("stored mesh blob is damaged: its bytes hash to {actual}"),
            })
        }
    }
}

/// What the boot scan found (`boot_scan`).
#[derive(Default)]
struct BootScan {
    rollbacks: Vec<(String, RolledBack)>,
    /// Late COMMITs (`late_commit_of`) per project.
    late_commits: Vec<(String, LateCommit)>,
    not_synced: NotSyncedIndex,
    marks: Vec<FinalMark>,
    anchor_h: Option<String>,
    last_seq: u64,
}

impl BootScan {
    /// One record, in seq order: FINALs after `since` become audit marks, the record at
    /// `anchor_seq` gives its `h`; `from_kept`: a checkpoint's or anchor's kept record (only
    /// the governance index, the not-synced fold and ROLLBACKs take it).
    fn observe(&mut self, r: Record, gov: Option<&mut FailureIndex>, since: u64, anchor_seq: u64, from_kept: bool) {
        if let Some(gov) = gov {
            gov.observe(&observed(&r));
        }
        self.not_synced.observe(&r);
        if r.phase == Phase::Rollback {
            self.rollbacks.push((r.project_id.clone(), RolledBack::from_record(&r)));
        }
        if let Some(late) = late_commit_of(&r) {
            self.late_commits.push((r.project_id.clone(), late));
        }
        if from_kept {
            return;
        }
        self.last_seq = r.seq;
        if r.seq == anchor_seq {
            self.anchor_h = Some(r.h.clone());
        }
        if r.seq > since && r.phase == Phase::Final {
            self.marks.push(FinalMark {
                seq: r.seq,
                h: r.h,
                operation_id: r.operation_id,
                project_id: r.project_id,
                uuids: r.uuids,
            });
        }
    }
}

/// Where a boot scan reads: from `checkpoint` (its kept records, then the log after it), else
/// from the start of a log compacted up to `compacted_upto` (the anchor's `carry` first);
/// `verified`: what this boot's recovery verified ([`Reader::verified`]).
struct ScanSpan<'a> {
    compacted_upto: u64,
    checkpoint: Option<&'a crate::checkpoint::Checkpoint>,
    carry: &'a [Record],
    verified: (u64, u64),
}

/// One pass over the WAL: governance index, ROLLBACKs, the not-synced uuids, FINALs after
/// `since` (as audit marks) and the `h` of the record at `anchor_seq`. `gov` is None on a
/// second pass (after a foreign history was set aside). A read error stops the boot: records
/// after it are never taken as absent.
fn boot_scan(
    data: &DataDir,
    span: ScanSpan<'_>,
    since: u64,
    anchor_seq: u64,
    mut gov: Option<&mut FailureIndex>,
) -> Result<BootScan, DaemonError> {
    let ScanSpan { compacted_upto, checkpoint, carry, verified } = span;
    let mut scan = BootScan::default();
    let (reader, kept) = match checkpoint {
        Some(c) => {
            scan.last_seq = c.seq;
            if anchor_seq == c.seq {
                scan.anchor_h = Some(c.h.clone());
            }
            (Reader::open_at(data.wal(), c.position())?.verified(verified.0, verified.1), c.kept.clone())
        }
        None => (Reader::open(data.wal())?.verified(verified.0, verified.1), carry.to_vec()),
    };
    let kept_upto = checkpoint.map_or(compacted_upto, |c| c.seq);
    let read = reader.map(|e| e.map(|e| e.record).map_err(vibesync_wal::WalError::from));
    for r in kept.into_iter().map(Ok).chain(read) {
        let r = r?;
        let from_kept = r.seq <= kept_upto;
        scan.observe(r, gov.as_deref_mut(), since, anchor_seq, from_kept);
    }
    Ok(scan)
}

/// The audit history's head, checked against the WAL's end before boot appended anything
/// (docs/WAL.md §5): a history that has seen a seq beyond it stops the boot unless
/// `repair`, which rewinds it; an unreadable one is set aside. None with the audit off.
fn audit_head(
    config: &Config,
    data: &DataDir,
    repair: bool,
    wal_last: u64,
) -> Result<Option<vibesync_audit::Head>, DaemonError> {
    if !config.audit.enabled {
        return Ok(None);
    }
    let head = match vibesync_audit::head(data.audit()) {
        Ok(h) => h,
        Err(e) => {
            set_aside_audit(data, &format!("it is unreadable ({e})"));
            None
        }
    };
    let Some(h) = head.as_ref().filter(|h| h.last_seq > wal_last) else {
        return Ok(head);
    };
    if !repair {
        return Err(DaemonError::WalLostTail {
            store: "audit history",
            store_seq: h.last_seq,
            wal_last_seq: wal_last,
            wal_dir: data.wal(),
        });
    }
    Ok(match vibesync_audit::rewind(data.audit(), wal_last) {
        Ok((h, _)) => h,
        Err(e) => {
            set_aside_audit(data, &format!("it could not be rewound to seq {wal_last} ({e})"));
            None
        }
    })
}

/// What the audit commits for one uuid in a commit covering seqs up to `upto`: the versions
/// archived after `since` (and at most `upto`), then its live record unless it changed after
/// `upto` (`vibesync_audit::Snapshot`: a later commit carries it). A registry read that fails
/// is an error (the audit retries the group), never "nothing to write".
fn audit_content(
    registry: &Registry,
    project_id: &str,
    uuid: &str,
    since: u64,
    upto: u64,
) -> Result<Vec<AuditContent>, String> {
    let mut out = Vec::new();
    let versions = registry.archived(project_id, uuid).map_err(|e| format!("archived versions: {e}"))?;
    for v in versions.into_iter().filter(|v| (since + 1..=upto).contains(&v.tombstone_seq.unwrap_or(0))) {
        let value = serde_json::to_value(&v).map_err(|e| format!("archived version as JSON: {e}"))?;
        out.push(AuditContent::Archived { tombstone_seq: v.tombstone_seq.unwrap_or(0), value });
    }
    match registry.lookup_shared(project_id, uuid).map_err(|e| format!("live record: {e}"))? {
        Some(e) if e.updated_seq <= upto => {
            out.push(AuditContent::Live(serde_json::to_value(&*e).map_err(|e| format!("live record as JSON: {e}"))?));
        }
        _ => {}
    }
    Ok(out)
}

/// Audit repositories set aside and kept in `quarantine/`; older ones are deleted (the
/// audit is derived data: the WAL rebuilds it).
pub const KEEP_SET_ASIDE_AUDITS: usize = 3;

/// Move the audit repository to `quarantine/git_safety-<time>` (it is rebuilt from the WAL)
/// and keep only the newest [`KEEP_SET_ASIDE_AUDITS`] set-asides, naming the ones removed.
fn set_aside_audit(data: &DataDir, why: &str) {
    let dir = data.audit();
    if !dir.exists() {
        return;
    }
    let q = data.quarantine();
    match vibesync_wal::fsutil::set_aside(&dir, &q, "git_safety", "") {
        Ok(target) => {
            warn!(from = %dir.display(), to = %target.display(), "audit repository set aside because {why}; rebuilding it from the WAL")
        }
        Err(e) => error!("could not move {} to {}: {e}", dir.display(), q.display()),
    }
    let mut old: Vec<std::path::PathBuf> = std::fs::read_dir(&q)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("git_safety-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    old.sort();
    let excess = old.len().saturating_sub(KEEP_SET_ASIDE_AUDITS);
    for p in &old[..excess] {
        match std::fs::remove_dir_all(p) {
            Ok(()) => {
                warn!(path = %p.display(), kept = KEEP_SET_ASIDE_AUDITS, "removed an older set-aside audit repository (derived data; the newest are kept)")
            }
            Err(e) => error!(path = %p.display(), "could not remove an older set-aside audit repository: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(op: &str) -> RecordDraft {
        RecordDraft {
            session_id: DAEMON_SESSION.into(),
            operation_id: op.into(),
            uuids: vec![],
            project_id: "demo".into(),
            phase: Phase::Begin,
            outcome: Outcome::Pending,
            error_code: None,
            payload: json!({"op": "test"}),
        }
    }

    /// The stream the registry is rebuilt from ends with the read error, never early as if
    /// the log ended there (docs/ARCHITECTURE.md, storage invariant).
    #[test]
    fn wal_records_end_with_the_read_error_not_early() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(WalConfig::new(tmp.path())).unwrap();
        for i in 0..5 {
            wal.append_blocking(vec![draft(&format!("op{i}"))]).unwrap();
        }
        drop(wal);
        let dir = tmp.path().join("wal");
        let clean: Vec<_> = wal_records(&dir, None, (0, 0)).collect();
        assert_eq!(clean.len(), 5);
        assert!(clean.iter().all(Result::is_ok));
        // Flip one byte inside the third record.
        let seg = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let third = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 20;
        bytes[third] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        // Also when the records before it were verified by this boot's recovery: the damaged
        // one is outside that span and hashed as always.
        for verified in [(0, 0), (0, 2)] {
            let read: Vec<_> = wal_records(&dir, None, verified).collect();
            assert_eq!(read.iter().filter(|r| r.is_ok()).count(), 2, "the records before the damage");
            assert!(read.last().unwrap().is_err(), "the damage is the stream's last item");
            assert_eq!(read.len(), 3);
        }
        // The registry does not open on it (it would otherwise take the log as two records).
        let reg_cfg = RegistryConfig::new(tmp.path());
        let opened = Registry::open(&reg_cfg, || wal_records(&dir, None, (0, 0)));
        assert!(matches!(opened, Err(RegistryError::WalRead { .. })), "{:?}", opened.map(|(_, r)| r));
    }

    #[test]
    fn until_error_keeps_the_first_error_and_stops() {
        let items = vec![Ok(1), Err("x"), Ok(2), Err("y")];
        let out: Vec<_> = until_error(items.into_iter()).collect();
        assert_eq!(out, vec![Ok(1), Err("x")]);
    }
}
