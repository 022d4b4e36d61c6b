//! The sled-backed registry: open (with catch-up or rebuild from the WAL), apply, read.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vibesync_wal::Record;

/// One item of the WAL stream [`Registry::open`] reads: a record, or the read error that
/// ends the stream.
pub type WalRead = std::result::Result<Record, vibesync_wal::WalError>;

/// Reads to fail on purpose (tests only: set through [`Registry::inject_read_fault`] with
/// the `fault-injection` feature). Real sled stays underneath; the read answers the error
/// sled gives for a failed I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFault {
    /// Every read (lookups and scans) fails.
    All,
    /// Reads of this uuid fail: its lookups, and scans that reach a record of it.
    Uuid(String),
}

use crate::cache::{Cached, EntryCache};
use crate::entry::{Counts, Entry, EntryCheck, Status};
use crate::error::{RegistryError, Result};
use crate::key_filter::KeyFilter;
use crate::keys::{self, *};
use crate::migrate::{self, SCHEMA_VERSION};
use crate::model::{Grouper, Model};
use crate::ops::{self, ApplyReport, Base, Op, ParsedStep, Staging};
use crate::write_behind::{Held, Layer, WriteBehind};

/// Where and how to open the registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The daemon's data dir; the registry lives in `<data_dir>/registry/`, damaged copies
    /// are moved to `<data_dir>/quarantine/registry-<timestamp>/`, the sidecar is
    /// `<data_dir>/registry.sidecar.json`.
    pub data_dir: PathBuf,
    /// sled page cache, bytes (an upper bound). Default 256 MiB (docs/BENCHMARKS.md, boot).
    pub cache_capacity: u64,
    /// sled background flush interval. Default 500 ms; durability points are explicit
    /// [`Registry::flush`] calls anyway.
    pub flush_every_ms: Option<u64>,
    /// A registry ahead of the WAL (docs/WAL.md §5) is rebuilt from the WAL instead of
    /// refusing to open ([`RegistryError::AheadOfWal`]). Set by `vibesync serve --repair`.
    pub repair: bool,
    /// The WAL was compacted up to this seq (docs/WAL.md §11; 0 = never): records at or
    /// before it are gone, and a COMMIT there is not looked for.
    pub anchor_seq: u64,
    /// The registry snapshot the compacted WAL starts from: a registry built anew (missing,
    /// damaged, or behind `floor`) is seeded with it before the kept log is replayed.
    pub base: Option<std::sync::Arc<RegistryBase>>,
    /// A registry that holds nothing (first boot, rebuild without a base) is built in memory
    /// and written in sorted sled batches of up to this many records. Default
    /// [`BULK_BUILD_RECORDS`].
    pub bulk_build_records: usize,
    /// …after staging up to this many records in memory (default [`BULK_STAGE_RECORDS`]).
    pub bulk_stage_records: usize,
    /// Applied records held in memory, not yet in sled, at most (module `write_behind`):
    /// an apply that finds this many writes them itself first. Default
    /// [`MAX_UNWRITTEN_RECORDS`].
    pub max_unwritten_records: usize,
}

impl RegistryConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            data_dir: data_dir.into(),
            cache_capacity: 256 << 20,
            flush_every_ms: Some(500),
            repair: false,
            anchor_seq: 0,
            base: None,
            bulk_build_records: BULK_BUILD_RECORDS,
            bulk_stage_records: BULK_STAGE_RECORDS,
            max_unwritten_records: MAX_UNWRITTEN_RECORDS,
        }
    }
}

/// A snapshot of the registry kept in the WAL's compaction anchor (docs/WAL.md §11): what
/// the removed records built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryBase {
    /// Every transaction with a record at or before the anchor has its COMMIT at or below
    /// this seq (the boot checkpoint's registry watermark): a registry at or above it misses
    /// nothing the compaction removed.
    pub floor: u64,
    /// The snapshot's watermark (its last applied COMMIT seq; at or above `floor`).
    pub seq: u64,
    pub schema_version: u32,
    /// Live and quarantined records, then archived ones.
    pub entries: Vec<Entry>,
}

/// Why the registry was rebuilt from the WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RebuildReason {
    /// sled failed (error or panic) to open the directory.
    OpenFailed { message: String },
    /// The directory holds data but no `schema_version` / `last_applied_seq`.
    MetaMissing,
    /// Meta or a record could not be decoded, or counters disagree with the records.
    Unreadable { message: String },
    /// Written by a newer build, or an unknown version.
    UnsupportedSchema { found: u32 },
    /// The registry claims seqs the WAL does not have.
    AheadOfWal { registry_seq: u64, wal_last_seq: u64 },
    /// `last_applied_seq` is not the seq of any COMMIT in the WAL.
    CommitNotInWal { seq: u64 },
    /// Old schema and behind the WAL: cannot replay onto the old layout.
    OldSchemaBehind { schema_version: u32 },
    /// Another process holds the registry's lock: not damage, never rebuilt (an error).
    Locked { message: String },
    /// Behind the compaction's floor: transactions it misses were compacted out of the WAL.
    BehindCompaction { registry_seq: u64, floor: u64 },
}

impl std::fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebuildReason::OpenFailed { message } => {
                write!(f, "sled could not open it ({message})")
            }
            RebuildReason::MetaMissing => {
                write!(f, "its meta (schema_version, last_applied_seq) is missing")
            }
            RebuildReason::Unreadable { message } => write!(f, "it is unreadable ({message})"),
            RebuildReason::UnsupportedSchema { found } => {
                write!(f, "its schema v{found} is not supported by this build (v{SCHEMA_VERSION})")
            }
            RebuildReason::AheadOfWal { registry_seq, wal_last_seq } => {
                write!(f, "it claims seq {registry_seq} but the WAL ends at {wal_last_seq}")
            }
            RebuildReason::CommitNotInWal { seq } => {
                write!(f, "its last_applied_seq {seq} is not a COMMIT in the WAL")
            }
            RebuildReason::OldSchemaBehind { schema_version } => {
                write!(f, "it is at old schema v{schema_version} and behind the WAL")
            }
            RebuildReason::Locked { message } => write!(f, "it is locked by another process ({message})"),
            RebuildReason::BehindCompaction { registry_seq, floor } => write!(
                f,
                "it is at seq {registry_seq}, behind the compacted WAL's base (seq {floor}): rebuilt from the base"
            ),
        }
    }
}

/// Where a boot checkpoint lets [`Registry::open_resuming`] start (docs/WAL.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The checkpoint covers the records up to this seq.
    pub after_seq: u64,
    /// The registry watermark the checkpoint flushed: every COMMIT of a transaction that
    /// began at or before `after_seq` is at or below it.
    pub registry_seq: u64,
}

/// What `Registry::open` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OpenOutcome {
    /// Existing registry opened (and caught up, see `caught_up_txns`).
    Opened,
    /// No registry directory existed; built from the WAL.
    Created,
    /// Damaged or inconsistent; moved to `quarantined_to` (if it existed) and rebuilt.
    Rebuilt { reason: RebuildReason, quarantined_to: Option<PathBuf> },
}

/// Summary of `Registry::open`, for the boot log and `vibesync status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    pub outcome: OpenOutcome,
    /// Committed transactions replayed from the WAL during open.
    pub caught_up_txns: u64,
    /// Registry steps skipped during replay (see `ApplyReport::skipped`).
    pub skipped_steps: u64,
    pub last_applied_seq: u64,
    pub wal_last_seq: u64,
    /// Some((from, to)) when a migration transaction must be logged and applied.
    pub needs_migration: Option<(u32, u32)>,
}

impl std::fmt::Display for OpenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            OpenOutcome::Opened => write!(f, "registry opened")?,
            OpenOutcome::Created => write!(f, "registry created from the WAL")?,
            OpenOutcome::Rebuilt { reason, quarantined_to } => {
                write!(f, "registry rebuilt from the WAL because {reason}")?;
                if let Some(p) = quarantined_to {
                    write!(f, " (old copy moved to {})", p.display())?;
                }
            }
        }
        write!(
            f,
            ", caught up {} transactions, last_applied_seq {} (WAL ends at {})",
            self.caught_up_txns, self.last_applied_seq, self.wal_last_seq
        )?;
        if let Some((a, b)) = self.needs_migration {
            write!(f, ", schema migration v{a} -> v{b} pending")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    schema_version: u32,
    last_applied_seq: u64,
    counts: Counts,
}

/// The UUID registry. `Send + Sync`; writes are serialized internally.
pub struct Registry {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
    data_dir: PathBuf,
    meta: Mutex<Meta>,
    read_fault: Mutex<Option<ReadFault>>,
    /// Decoded live records (module `cache`): updated by every write, under `meta`'s lock.
    cache: EntryCache,
    /// Applied transactions not yet in sled (module `write_behind`), read before the cache.
    unwritten: WriteBehind,
    /// Live keys that may exist (module `key_filter`), consulted after the cache.
    keys: KeyFilter,
    /// [`RegistryConfig::max_unwritten_records`].
    max_unwritten: usize,
}

/// Applied records held unwritten at most (≈ 1 KiB each): an apply that finds this many
/// writes them first, itself (the daemon's checkpointer writes them every 100 ms; this
/// bounds memory when it falls behind).
pub const MAX_UNWRITTEN_RECORDS: usize = 100_000;

/// Transactions a catch-up has staged and not yet written (see [`Registry::catch_up`]).
#[derive(Default)]
struct Chunk {
    /// Live key -> value after the staged transactions (None = removed from live).
    live: std::collections::HashMap<(String, String), Option<Entry>>,
    archive: Vec<Entry>,
    counts: Counts,
    /// COMMIT seq of the last staged transaction.
    last: u64,
    txns: usize,
}

/// Transactions per sled batch during catch-up.
const CATCH_UP_CHUNK: usize = 1000;

/// Staged records (live keys and archived versions) per sled batch when a registry that
/// holds nothing is built (first boot, rebuild without a compaction base). Such a build also
/// keeps the set of live keys it has written, so a uuid it has not seen is known absent
/// without asking sled: 38 % of the first boot's registry phase at 1 M records was sled
/// lookups of uuids not there yet, each re-reading evicted nodes from sled's log
/// (docs/BENCHMARKS.md). Bounded: one sled batch holds every node version it makes until it
/// ends (2,000,000 records per batch took the first boot at 1 M records from 5.7 to 10.1 GB).
pub const BULK_BUILD_RECORDS: usize = 20_000;

/// Staged records a build from nothing holds in memory before it writes them: the build
/// writes its staged records in key order, [`BULK_BUILD_RECORDS`] per sled batch, so each
/// batch fills neighbouring leaves instead of touching the whole tree (random uuids written
/// as they come rewrote most of sled's nodes once per batch). The counters and the watermark
/// go in the last batch, and a `building` mark written before the first batch is removed by
/// it: a crash in between leaves the mark, and the next open rebuilds (docs/WAL.md §9).
/// About 1 KB of memory per staged record.
pub const BULK_STAGE_RECORDS: usize = 1_000_000;

/// Reads through a chunk's staged values to sled.
struct ChunkBase<'a> {
    reg: &'a Registry,
    chunk: &'a Chunk,
    /// Building from nothing: the live keys sled holds (all written by this build); a uuid
    /// neither staged nor here is absent.
    known: Option<&'a std::collections::HashSet<(String, String)>>,
}

impl Base for ChunkBase<'_> {
    fn live(&self, project: &str, uuid: &str) -> Result<Option<Entry>> {
        let key = (project.to_owned(), uuid.to_owned());
        if let Some(v) = self.chunk.live.get(&key) {
            return Ok(v.clone());
        }
        if self.known.is_some_and(|k| !k.contains(&key)) {
            return Ok(None);
        }
        Ok(self.reg.get_entry(&live_key(project, uuid))?.map(Arc::unwrap_or_clone))
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

enum Loaded {
    Fresh,
    Meta(Meta),
}

impl Drop for Registry {
    /// Applied transactions still held in memory reach sled (a dropped registry keeps what a
    /// flushed one would; sled flushes what it holds when its last handle goes).
    fn drop(&mut self) {
        if let Err(e) = self.write_unwritten() {
            tracing::error!("registry: applied transactions not written at close (boot catches up from the WAL): {e}");
        }
    }
}

impl Registry {
    /// Open an existing registry exactly as it is on disk, for checking only: no catch-up,
    /// no rebuild, no migration, no quarantine. `vibesync verify` uses it on a scratch copy
    /// and then calls [`Registry::parity`] and [`Registry::check_sidecar`].
    pub fn open_for_check(cfg: &RegistryConfig) -> Result<Registry> {
        let dir = cfg.data_dir.join("registry");
        if !dir.exists() {
            return Err(RegistryError::Unopenable { path: dir, reason: "no registry directory".into() });
        }
        Self::open_dir(cfg, &dir)
            .map(|(reg, _)| reg)
            .map_err(|reason| RegistryError::Unopenable { path: dir, reason: reason.to_string() })
    }

    /// Open `<data_dir>/registry/`, then bring it in line with the WAL.
    ///
    /// `wal` returns a fresh iterator over every WAL record from the start, in seq order; it
    /// is called once, or twice when the registry has to be rebuilt after a first pass. A
    /// read error in it fails the open ([`RegistryError::WalRead`]).
    /// Never panics on damaged sled files: they are moved to `<data_dir>/quarantine/` and the
    /// registry is rebuilt. Fails only when the rebuilt registry cannot be written either.
    pub fn open<F, I>(cfg: &RegistryConfig, mut wal: F) -> Result<(Registry, OpenReport)>
    where
        F: FnMut() -> I,
        I: IntoIterator<Item = WalRead>,
    {
        Self::open_resuming(cfg, None, |_| wal())
    }

    /// [`Registry::open`] after a boot checkpoint (docs/WAL.md §9). `wal(true)` returns the
    /// records after `resume.after_seq`, `wal(false)` every record from the start. The short
    /// read is used only when the registry is at least at `resume.registry_seq` (the
    /// watermark the checkpoint flushed); a registry behind it, missing or damaged is caught
    /// up or rebuilt from the whole log.
    pub fn open_resuming<F, I>(
        cfg: &RegistryConfig,
        resume: Option<Resume>,
        mut wal: F,
    ) -> Result<(Registry, OpenReport)>
    where
        F: FnMut(bool) -> I,
        I: IntoIterator<Item = WalRead>,
    {
        let dir = cfg.data_dir.join("registry");
        let existed = dir.exists();
        let reg = match Self::open_dir(cfg, &dir) {
            Ok((reg, Loaded::Fresh)) if existed => {
                // The directory was there but sled holds nothing: data was lost (sled drops a
                // damaged log tail silently). Keep the evidence, rebuild.
                drop(reg);
                return Self::rebuild(cfg, RebuildReason::MetaMissing, || wal(false));
            }
            Ok((reg, loaded)) => {
                if matches!(loaded, Loaded::Fresh) {
                    reg.init_meta()?;
                    reg.seed(cfg)?;
                }
                reg
            }
            Err(RebuildReason::Locked { message }) => return Err(locked(dir, &message)),
            Err(reason) => return Self::rebuild(cfg, reason, || wal(false)),
        };
        let outcome = if existed { OpenOutcome::Opened } else { OpenOutcome::Created };
        let before = reg.meta().last_applied_seq;
        if let Some(b) = cfg.base.as_ref().filter(|b| before < b.floor) {
            let reason = RebuildReason::BehindCompaction { registry_seq: before, floor: b.floor };
            drop(reg);
            return Self::rebuild(cfg, reason, || wal(false));
        }
        let short = resume.filter(|r| existed && before >= r.registry_seq);
        match reg.catch_up(wal(short.is_some()), cfg.bulk_build_records, cfg.bulk_stage_records) {
            Ok(mut cu) => {
                // A watermark at or before the compaction anchor names a COMMIT that was
                // compacted (it was checked against the base's floor above).
                cu.found_last_commit |= before <= cfg.anchor_seq;
                cu.wal_last_seq = cu.wal_last_seq.max(cfg.anchor_seq);
                if let Some(r) = short {
                    // A watermark at or before the resume point was checked when the
                    // checkpoint was written; one after it must be a COMMIT read here.
                    cu.found_last_commit |= before <= r.after_seq;
                    // The log goes at least to the checkpointed record (recovery checked it).
                    cu.wal_last_seq = cu.wal_last_seq.max(r.after_seq);
                }
                let m = reg.meta();
                if m.last_applied_seq > cu.wal_last_seq {
                    drop(reg);
                    if !cfg.repair {
                        return Err(RegistryError::AheadOfWal {
                            path: dir,
                            registry_seq: m.last_applied_seq,
                            wal_last_seq: cu.wal_last_seq,
                        });
                    }
                    let reason =
                        RebuildReason::AheadOfWal { registry_seq: m.last_applied_seq, wal_last_seq: cu.wal_last_seq };
                    return Self::rebuild(cfg, reason, || wal(false));
                }
                if before > 0 && !cu.found_last_commit {
                    drop(reg);
                    return Self::rebuild(cfg, RebuildReason::CommitNotInWal { seq: before }, || wal(false));
                }
                reg.flush()?;
                let report = OpenReport {
                    outcome,
                    caught_up_txns: cu.txns,
                    skipped_steps: cu.skipped,
                    last_applied_seq: m.last_applied_seq,
                    wal_last_seq: cu.wal_last_seq,
                    needs_migration: reg.needs_migration(),
                };
                tracing::info!(seq = m.last_applied_seq, caught_up = cu.txns, "{report}");
                Ok((reg, report))
            }
            Err(RegistryError::MigrationPending { from, .. }) => {
                drop(reg);
                Self::rebuild(cfg, RebuildReason::OldSchemaBehind { schema_version: from }, || wal(false))
            }
            Err(
                e @ (RegistryError::CorruptRecord { .. }
                | RegistryError::CorruptMeta { .. }
                | RegistryError::SledPanic { .. }),
            ) => {
                drop(reg);
                Self::rebuild(cfg, RebuildReason::Unreadable { message: e.to_string() }, || wal(false))
            }
            Err(e) => Err(e),
        }
    }

    fn rebuild<F, I>(cfg: &RegistryConfig, reason: RebuildReason, mut wal: F) -> Result<(Registry, OpenReport)>
    where
        F: FnMut() -> I,
        I: IntoIterator<Item = WalRead>,
    {
        let dir = cfg.data_dir.join("registry");
        tracing::warn!(path = %dir.display(), %reason, "registry: rebuilding from the WAL");
        let quarantined_to = if dir.exists() { Some(quarantine_dir(&cfg.data_dir, &dir)?) } else { None };
        let reg = match Self::open_dir(cfg, &dir) {
            Ok((reg, _)) => reg,
            Err(r) => return Err(RegistryError::Unopenable { path: dir, reason: r.to_string() }),
        };
        reg.init_meta()?;
        reg.seed(cfg)?;
        let mut cu = reg.catch_up(wal(), cfg.bulk_build_records, cfg.bulk_stage_records)?;
        cu.wal_last_seq = cu.wal_last_seq.max(cfg.anchor_seq);
        reg.flush()?;
        let report = OpenReport {
            outcome: OpenOutcome::Rebuilt { reason, quarantined_to },
            caught_up_txns: cu.txns,
            skipped_steps: cu.skipped,
            last_applied_seq: reg.last_applied_seq(),
            wal_last_seq: cu.wal_last_seq,
            needs_migration: None,
        };
        tracing::warn!(seq = report.last_applied_seq, "{report}");
        Ok((reg, report))
    }

    /// Open sled and validate what is in it. Err = reason to rebuild.
    fn open_dir(cfg: &RegistryConfig, dir: &Path) -> std::result::Result<(Registry, Loaded), RebuildReason> {
        // sled releases its file lock asynchronously when a previous handle is dropped (its
        // flusher thread still holds the pagecache): a lock held by us or a dying handle is
        // waited for, and a lock that stays held is an error — never a reason to rebuild.
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_secs(10);
        let mut waited = false;
        let opened = loop {
            let attempt = catch_unwind(AssertUnwindSafe(|| {
                let db = sled::Config::new()
                    .path(dir)
                    .cache_capacity(cfg.cache_capacity)
                    .flush_every_ms(cfg.flush_every_ms)
                    .open()?;
                let tree = db.open_tree(TREE)?;
                Ok::<_, sled::Error>((db, tree))
            }));
            match &attempt {
                Ok(Err(e)) if is_lock_error(e) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(RebuildReason::Locked { message: e.to_string() });
                    }
                    waited = true;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                _ => {
                    if waited {
                        let ms = started.elapsed().as_millis() as u64;
                        tracing::info!(waited_ms = ms, "registry: waited for sled's file lock");
                    }
                    break attempt;
                }
            }
        };
        let (db, tree) = match opened {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(RebuildReason::OpenFailed { message: e.to_string() }),
            Err(p) => {
                return Err(RebuildReason::OpenFailed { message: format!("sled panicked: {}", panic_message(p)) })
            }
        };
        let mut reg = Registry {
            db,
            tree,
            dir: dir.to_path_buf(),
            data_dir: cfg.data_dir.clone(),
            meta: Mutex::new(Meta { schema_version: SCHEMA_VERSION, last_applied_seq: 0, counts: Counts::default() }),
            read_fault: Mutex::new(None),
            cache: EntryCache::default(),
            unwritten: WriteBehind::default(),
            keys: KeyFilter::default(),
            max_unwritten: cfg.max_unwritten_records.max(1),
        };
        let loaded = match catch_unwind(AssertUnwindSafe(|| reg.load())) {
            Ok(r) => r?,
            Err(p) => {
                return Err(RebuildReason::Unreadable { message: format!("sled panicked: {}", panic_message(p)) })
            }
        };
        if let Loaded::Meta(m) = loaded {
            *reg.meta.get_mut().unwrap() = m;
        }
        Ok((reg, loaded))
    }

    /// Read and check meta, decode every record, compare counters.
    fn load(&self) -> std::result::Result<Loaded, RebuildReason> {
        let unreadable = |message: String| RebuildReason::Unreadable { message };
        let schema = self.read_meta(META_SCHEMA).map_err(|e| unreadable(e.to_string()))?;
        let last = self.read_meta(META_LAST).map_err(|e| unreadable(e.to_string()))?;
        let (schema, last) = match (schema, last) {
            (Some(s), Some(l)) => (s, l),
            _ => {
                let empty = self.tree.first().map_err(|e| unreadable(e.to_string()))?.is_none();
                return if empty { Ok(Loaded::Fresh) } else { Err(RebuildReason::MetaMissing) };
            }
        };
        if self.read_meta(META_BUILDING).map_err(|e| unreadable(e.to_string()))?.is_some() {
            return Err(unreadable("a build from the WAL was cut off before its last batch".into()));
        }
        let schema = u32::try_from(schema).map_err(|_| RebuildReason::UnsupportedSchema { found: u32::MAX })?;
        if !(migrate::OLDEST_MIGRATABLE..=SCHEMA_VERSION).contains(&schema) {
            return Err(RebuildReason::UnsupportedSchema { found: schema });
        }
        let mut counts = Counts::default();
        let mut seen = Counts::default();
        for (name, slot) in
            [(META_LIVE, &mut counts.live), (META_TOMB, &mut counts.tombstoned), (META_QUAR, &mut counts.quarantined)]
        {
            *slot = self.read_meta(name).map_err(|e| unreadable(e.to_string()))?.unwrap_or(0);
        }
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| unreadable(e.to_string()))?;
            if k.starts_with(META) {
                continue;
            }
            if !(k.starts_with(LIVE) || k.starts_with(ARCH)) {
                return Err(unreadable(format!("unexpected key {:?}", keys::show(&k))));
            }
            let bad = |e: serde_json::Error| unreadable(format!("record {:?}: {e}", keys::show(&k)));
            let (project_id, uuid, status, tombstone_seq) = if schema < SCHEMA_VERSION {
                let value: serde_json::Value = serde_json::from_slice(&v).map_err(bad)?;
                let e: Entry =
                    serde_json::from_value(migrate::migrate_entry(schema, value).map_err(unreadable)?).map_err(bad)?;
                (e.project_id.into(), e.uuid.into(), e.status, e.tombstone_seq)
            } else {
                // Current schema: the same checks as decoding an Entry, without building one
                // (`EntryCheck`): a large registry is checked at every boot.
                let e: EntryCheck = serde_json::from_slice(&v).map_err(bad)?;
                (e.project_id, e.uuid, e.status, e.tombstone_seq)
            };
            let expect_key = match status {
                Status::Tombstoned => archive_key(&project_id, &uuid, tombstone_seq.unwrap_or(u64::MAX)),
                _ => live_key(&project_id, &uuid),
            };
            if expect_key != k.as_ref() {
                return Err(unreadable(format!("record under {:?} does not match its key", keys::show(&k))));
            }
            match status {
                Status::Live => seen.live += 1,
                Status::Tombstoned => seen.tombstoned += 1,
                Status::Quarantined => seen.quarantined += 1,
            }
        }
        if schema == SCHEMA_VERSION && seen != counts {
            return Err(unreadable(format!("counters say {counts:?}, records say {seen:?}")));
        }
        Ok(Loaded::Meta(Meta { schema_version: schema, last_applied_seq: last, counts: seen }))
    }

    fn init_meta(&self) -> Result<()> {
        let mut b = sled::Batch::default();
        b.insert(meta_key(META_SCHEMA), SCHEMA_VERSION.to_string().as_bytes());
        b.insert(meta_key(META_LAST), b"0".as_ref());
        for n in [META_LIVE, META_TOMB, META_QUAR] {
            b.insert(meta_key(n), b"0".as_ref());
        }
        self.tree.apply_batch(b).map_err(|e| self.sled_err("write meta", e))?;
        *self.meta.lock().unwrap() =
            Meta { schema_version: SCHEMA_VERSION, last_applied_seq: 0, counts: Counts::default() };
        Ok(())
    }

    /// Seed a registry built anew with the compacted WAL's base (docs/WAL.md §11). Without
    /// a base over a compacted WAL, what the removed records built is gone: said loudly.
    fn seed(&self, cfg: &RegistryConfig) -> Result<()> {
        let Some(base) = &cfg.base else {
            if cfg.anchor_seq > 0 {
                tracing::error!(
                    anchor_seq = cfg.anchor_seq,
                    "registry: built from a compacted WAL without a base snapshot: objects last changed at or \
                     before seq {} are missing (restore them from the audit history with `vibesync restore`)",
                    cfg.anchor_seq
                );
            }
            return Ok(());
        };
        if base.schema_version != SCHEMA_VERSION {
            return Err(RegistryError::NoMigrationPath {
                from: base.schema_version,
                to: SCHEMA_VERSION,
                supported: SCHEMA_VERSION,
            });
        }
        let mut model = Model::default();
        let mut b = sled::Batch::default();
        for e in &base.entries {
            match e.status {
                Status::Tombstoned => {
                    let s = e.archive_seq();
                    b.insert(archive_key(&e.project_id, &e.uuid, s), encode(e));
                    model.archive.insert((e.project_id.clone(), e.uuid.clone(), s), e.clone());
                }
                _ => {
                    b.insert(live_key(&e.project_id, &e.uuid), encode(e));
                    model.live.insert((e.project_id.clone(), e.uuid.clone()), e.clone());
                }
            }
        }
        let counts = model.counts();
        put_counts(&mut b, counts);
        b.insert(meta_key(META_LAST), base.seq.to_string().as_bytes());
        self.tree.apply_batch(b).map_err(|e| self.sled_err("seed from the compaction base", e))?;
        self.cache.clear();
        let mut meta = self.meta.lock().unwrap();
        meta.last_applied_seq = base.seq;
        meta.counts = counts;
        tracing::info!(seq = base.seq, records = base.entries.len(), "registry: seeded from the compacted WAL's base");
        Ok(())
    }

    fn read_meta(&self, name: &'static str) -> Result<Option<u64>> {
        let Some(v) = self.tree.get(meta_key(name)).map_err(|e| self.sled_err("read meta", e))? else {
            return Ok(None);
        };
        let s = std::str::from_utf8(&v).map_err(|e| RegistryError::CorruptMeta { name, reason: e.to_string() })?;
        s.trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|e| RegistryError::CorruptMeta { name, reason: format!("{s:?}: {e}") })
    }

    fn sled_err(&self, op: &'static str, source: sled::Error) -> RegistryError {
        RegistryError::Sled { op, path: self.dir.clone(), source }
    }

    fn meta(&self) -> Meta {
        *self.meta.lock().unwrap()
    }

    fn check_schema(&self) -> Result<()> {
        match self.needs_migration() {
            Some((from, to)) => Err(RegistryError::MigrationPending { from, to }),
            None => Ok(()),
        }
    }

    fn get_entry(&self, key: &[u8]) -> Result<Option<Arc<Entry>>> {
        self.injected("read", |f| match f {
            ReadFault::All => true,
            ReadFault::Uuid(u) => key.ends_with(u.as_bytes()),
        })?;
        if let Held::Here(e) = self.unwritten.get(key) {
            return Ok(e);
        }
        let epoch = match self.cache.get(key) {
            Cached::Hit(e) => return Ok(e),
            Cached::Miss(epoch) => epoch,
        };
        if self.keys.surely_absent(key) {
            return Ok(None);
        }
        let e = match self.tree.get(key).map_err(|e| self.sled_err("read", e))? {
            Some(v) => Some(Arc::new(decode(key, &v)?)),
            None => None,
        };
        self.cache.fill(key, epoch, &e);
        Ok(e)
    }

    fn scan(&self, prefix: Vec<u8>) -> Result<Vec<Entry>> {
        self.check_schema()?;
        self.injected("scan", |f| *f == ReadFault::All)?;
        self.write_unwritten()?;
        self.scan_sled(prefix)
    }

    /// What sled holds under `prefix` (held records not included).
    fn scan_sled(&self, prefix: Vec<u8>) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item.map_err(|e| self.sled_err("scan", e))?;
            let e = decode(&k, &v)?;
            self.injected("scan", |f| matches!(f, ReadFault::Uuid(u) if *u == e.uuid))?;
            out.push(e);
        }
        Ok(out)
    }

    /// The injected read failure `hits` selects, as the error sled gives for a failed read.
    fn injected(&self, op: &'static str, hits: impl Fn(&ReadFault) -> bool) -> Result<()> {
        match &*self.read_fault.lock().unwrap() {
            Some(f) if hits(f) => {
                Err(self.sled_err(op, sled::Error::Io(std::io::Error::other(format!("injected read fault ({f:?})")))))
            }
            _ => Ok(()),
        }
    }

    /// Make reads fail (`Some`) or work again (`None`): real sled underneath, the failure on
    /// top. Tests only.
    #[cfg(feature = "fault-injection")]
    pub fn inject_read_fault(&self, fault: Option<ReadFault>) {
        *self.read_fault.lock().unwrap() = fault;
    }

    /// Forget every decoded record held in memory (module `cache`), so that the next reads
    /// go past it. Tests only.
    #[cfg(feature = "fault-injection")]
    pub fn forget_cached(&self) {
        self.cache.clear();
    }

    // ---- public API -------------------------------------------------------------------

    /// Apply one committed transaction: its records (STEPs and the COMMIT; BEGIN, FINAL...
    /// may be included and are ignored). STEPs are applied in seq order; the changes,
    /// counters and `last_applied_seq = COMMIT seq` land in one sled batch. Idempotent: a
    /// transaction whose COMMIT seq ≤ `last_applied_seq` is skipped (`applied == false`).
    /// Transactions must be applied in COMMIT order; the last one committed wins. Not durable until [`Registry::flush`].
    pub fn apply_committed(&self, records: &[Record]) -> Result<ApplyReport> {
        let (operation_id, commit_seq, steps) = ops::split_transaction(records)?;
        let mut meta = self.meta.lock().unwrap();
        let report = ApplyReport { operation_id, commit_seq, ..Default::default() };
        if commit_seq <= meta.last_applied_seq {
            tracing::debug!(
                seq = commit_seq,
                last_applied_seq = meta.last_applied_seq,
                "registry: transaction already applied"
            );
            return Ok(report);
        }
        if meta.schema_version != SCHEMA_VERSION {
            let migrate_step = steps.iter().find_map(|r| match ops::parse_payload(&r.payload) {
                ParsedStep::Op(Op::Migrate { from, to }) => Some((from, to)),
                _ => None,
            });
            return match migrate_step {
                Some((from, to)) => self.migrate_locked(&mut meta, from, to, &steps, report),
                None => Err(RegistryError::MigrationPending { from: meta.schema_version, to: SCHEMA_VERSION }),
            };
        }
        let mut reports = self.apply_staged(&mut meta, &[records])?;
        let report = reports.pop().expect("one report per transaction");
        tracing::debug!(seq = commit_seq, operation_id = %report.operation_id, steps = report.steps_applied, skipped = report.skipped.len(), "registry: transaction applied");
        Ok(report)
    }

    /// [`Registry::apply_committed`] for consecutive committed transactions (in COMMIT
    /// order), applied as one group: their changes, the counters and `last_applied_seq` =
    /// the last one's COMMIT seq are held together (module `write_behind`) and reach sled in
    /// one batch with whatever else is held. Each transaction is staged over the ones before
    /// it, so the result is what applying them one by one gives; one report per transaction,
    /// in order. On an error nothing of the group is applied. An old schema (a migration
    /// pending) applies them one at a time.
    pub fn apply_committed_group(&self, txns: &[&[Record]]) -> Result<Vec<ApplyReport>> {
        let mut meta = self.meta.lock().unwrap();
        if meta.schema_version != SCHEMA_VERSION {
            drop(meta);
            return txns.iter().map(|t| self.apply_committed(t)).collect();
        }
        self.apply_staged(&mut meta, txns)
    }

    /// Stage `txns` (schema current) over each other from `meta` and write what they change
    /// as one sled batch, under the caller's hold of `meta`: the one place a committed
    /// transaction reaches sled at run time.
    fn apply_staged(&self, meta: &mut Meta, txns: &[&[Record]]) -> Result<Vec<ApplyReport>> {
        let mut chunk = Chunk::default();
        let mut reports = Vec::with_capacity(txns.len());
        for t in txns {
            reports.push(self.stage_into(meta, &mut chunk, t, None)?);
        }
        if chunk.txns == 0 {
            return Ok(reports);
        }
        if self.unwritten.records() >= self.max_unwritten {
            self.write_unwritten()?; // before this group is held: an error applies nothing
        }
        let live: Vec<(Vec<u8>, Option<Arc<Entry>>)> =
            chunk.live.into_iter().map(|((p, u), value)| (live_key(&p, &u), value.map(Arc::new))).collect();
        for (key, _) in live.iter().filter(|(_, v)| v.is_some()) {
            self.keys.add(key);
        }
        self.unwritten.add(live.iter().cloned(), chunk.archive, chunk.counts, chunk.last, chunk.txns);
        self.cache.wrote(live);
        meta.last_applied_seq = chunk.last;
        meta.counts = chunk.counts;
        Ok(reports)
    }

    /// Write the applied transactions sled does not hold yet (module `write_behind`), each
    /// layer as one sled batch with its counters and watermark.
    fn write_unwritten(&self) -> Result<usize> {
        self.unwritten.write(|l| self.tree.apply_batch(layer_batch(l)).map_err(|e| self.sled_err("apply batch", e)))
    }

    fn migrate_locked(
        &self,
        meta: &mut Meta,
        from: u32,
        to: u32,
        steps: &[&Record],
        mut report: ApplyReport,
    ) -> Result<ApplyReport> {
        if from != meta.schema_version || to != SCHEMA_VERSION {
            return Err(RegistryError::NoMigrationPath { from, to, supported: SCHEMA_VERSION });
        }
        tracing::info!(from, to, seq = report.commit_seq, "registry: migrating schema");
        self.keys.turn_off(); // the keys are rewritten below, not by applies
        self.write_unwritten()?;
        let mut model = Model::default();
        let mut old_keys = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| self.sled_err("scan", e))?;
            if k.starts_with(META) {
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(&v)
                .map_err(|e| RegistryError::CorruptRecord { key: keys::show(&k), reason: e.to_string() })?;
            let value = migrate::migrate_entry(from, value)
                .map_err(|reason| RegistryError::CorruptRecord { key: keys::show(&k), reason })?;
            let e: Entry = serde_json::from_value(value)
                .map_err(|e| RegistryError::CorruptRecord { key: keys::show(&k), reason: e.to_string() })?;
            match e.status {
                Status::Tombstoned => {
                    model.archive.insert((e.project_id.clone(), e.uuid.clone(), e.archive_seq()), e);
                }
                _ => {
                    model.live.insert((e.project_id.clone(), e.uuid.clone()), e);
                }
            }
            old_keys.push(k);
        }
        let mut st = Staging::default();
        let at = ops::writes_seq(steps, report.commit_seq);
        for r in steps {
            ops::apply_step(&model, &mut st, &mut report, r, at)?;
        }
        model.merge(st);
        let counts = model.counts();
        let mut b = sled::Batch::default();
        for k in old_keys {
            b.remove(k);
        }
        for ((p, u), e) in &model.live {
            b.insert(live_key(p, u), encode(e));
        }
        for ((p, u, s), e) in &model.archive {
            b.insert(archive_key(p, u, *s), encode(e));
        }
        put_counts(&mut b, counts);
        b.insert(meta_key(META_SCHEMA), SCHEMA_VERSION.to_string().as_bytes());
        b.insert(meta_key(META_LAST), report.commit_seq.to_string().as_bytes());
        self.tree.apply_batch(b).map_err(|e| self.sled_err("apply migration batch", e))?;
        self.cache.clear();
        *meta = Meta { schema_version: SCHEMA_VERSION, last_applied_seq: report.commit_seq, counts };
        report.applied = true;
        report.migrated = Some((from, to));
        tracing::info!(from, to, seq = report.commit_seq, live = counts.live, "registry: schema migrated");
        Ok(report)
    }

    /// Replay committed transactions newer than `last_applied_seq`. With the schema current,
    /// consecutive transactions are staged together and written as one sled batch per
    /// [`CATCH_UP_CHUNK`] transactions (their changes, the counters and `last_applied_seq` =
    /// the chunk's last COMMIT seq, atomically): a crash mid-replay leaves the registry at a
    /// chunk boundary, caught up from there at the next open. A migration (old schema) goes
    /// through [`Registry::apply_committed`] one transaction at a time.
    fn catch_up<I: IntoIterator<Item = WalRead>>(
        &self,
        records: I,
        bulk_records: usize,
        stage_records: usize,
    ) -> Result<CatchUp> {
        let mut g = Grouper { watch_commit: Some(self.last_applied_seq()), ..Default::default() };
        let mut cu = CatchUp::default();
        let mut chunk = Chunk::default();
        // A registry that holds nothing (watermark 0, no records: the counters were checked
        // against the records at open) keeps the keys it writes (see BULK_BUILD_RECORDS).
        let m = self.meta();
        let mut known = (m.last_applied_seq == 0 && m.counts == Counts::default())
            .then(std::collections::HashSet::<(String, String)>::new);
        for r in records {
            // A read error ends the catch-up with that error: the records after it are never
            // taken as absent (docs/ARCHITECTURE.md, storage invariant).
            let r = match r {
                Ok(r) => r,
                Err(source) => {
                    self.write_chunk(&mut chunk, bulk_records)?;
                    return Err(RegistryError::WalRead { source });
                }
            };
            if let Some(txn) = g.push(r) {
                let rep = if self.meta().schema_version == SCHEMA_VERSION {
                    match self.stage_into(&self.meta(), &mut chunk, &txn, known.as_ref()) {
                        Ok(rep) => rep,
                        Err(e) => {
                            // The transactions before the failing one are kept, as when each
                            // was written on its own.
                            self.write_chunk(&mut chunk, bulk_records)?;
                            return Err(e);
                        }
                    }
                } else {
                    self.write_chunk(&mut chunk, bulk_records)?;
                    known = None;
                    self.apply_committed(&txn)?
                };
                if rep.applied {
                    cu.txns += 1;
                    cu.skipped += rep.skipped.len() as u64;
                }
                let full = match known {
                    Some(_) => chunk.live.len() + chunk.archive.len() >= stage_records.max(1),
                    None => chunk.txns >= CATCH_UP_CHUNK,
                };
                if full {
                    if let Some(k) = known.as_mut() {
                        for (key, value) in &chunk.live {
                            match value {
                                Some(_) => k.insert(key.clone()),
                                None => k.remove(key),
                            };
                        }
                    }
                    self.write_chunk(&mut chunk, bulk_records)?;
                }
            }
        }
        self.write_chunk(&mut chunk, bulk_records)?;
        cu.wal_last_seq = g.last_seq;
        cu.found_last_commit = g.watch_found;
        Ok(cu)
    }

    /// [`Registry::apply_committed`] for catch-up: stage one transaction (schema current) over
    /// the chunk's earlier transactions, without writing.
    fn stage_into(
        &self,
        meta: &Meta,
        chunk: &mut Chunk,
        records: &[Record],
        known: Option<&std::collections::HashSet<(String, String)>>,
    ) -> Result<ApplyReport> {
        let (operation_id, commit_seq, steps) = ops::split_transaction(records)?;
        let mut report = ApplyReport { operation_id, commit_seq, ..Default::default() };
        let last = if chunk.txns > 0 { chunk.last } else { meta.last_applied_seq };
        if commit_seq <= last {
            return Ok(report);
        }
        let mut st = Staging::default();
        {
            let base = ChunkBase { reg: self, chunk, known };
            let at = ops::writes_seq(&steps, commit_seq);
            for r in &steps {
                ops::apply_step(&base, &mut st, &mut report, r, at)?;
            }
        }
        let d = st.count_delta();
        let before = if chunk.txns > 0 { chunk.counts } else { meta.counts };
        chunk.counts = Counts {
            live: add(before.live, d[0]),
            tombstoned: add(before.tombstoned, d[1]),
            quarantined: add(before.quarantined, d[2]),
        };
        for (key, (_, value)) in st.live {
            chunk.live.insert(key, value);
        }
        chunk.archive.extend(st.archive);
        chunk.last = commit_seq;
        chunk.txns += 1;
        report.applied = true;
        Ok(report)
    }

    /// Write a chunk staged by [`Registry::stage_into`] as one sled batch; empties it.
    fn write_chunk(&self, chunk: &mut Chunk, bulk_records: usize) -> Result<()> {
        if chunk.txns == 0 {
            return Ok(());
        }
        let c = std::mem::take(chunk);
        let mut meta = self.meta.lock().unwrap();
        // Nothing is held while the registry opens; were it, it would go first.
        self.write_unwritten()?;
        // Key order, in batches of `bulk_records` (see BULK_STAGE_RECORDS); a catch-up chunk
        // (CATCH_UP_CHUNK transactions) is one batch.
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(c.live.len() + c.archive.len());
        for ((p, u), value) in &c.live {
            writes.push((live_key(p, u), value.as_ref().map(encode)));
        }
        for e in &c.archive {
            writes.push((archive_key(&e.project_id, &e.uuid, e.archive_seq()), Some(encode(e))));
        }
        writes.sort_by(|a, b| a.0.cmp(&b.0)); // stable: of two writes of one key, the later wins
        let per_batch = bulk_records.max(1);
        let batches = writes.len().div_ceil(per_batch).max(1);
        let mut writes = writes.into_iter();
        if batches > 1 {
            self.tree
                .insert(meta_key(META_BUILDING), b"1".as_slice())
                .map_err(|e| self.sled_err("mark the build", e))?;
        }
        for n in 0..batches {
            let mut b = sled::Batch::default();
            for (key, value) in writes.by_ref().take(per_batch) {
                match value {
                    Some(v) => b.insert(key, v),
                    None => b.remove(key),
                }
            }
            if n + 1 == batches {
                put_counts(&mut b, c.counts);
                b.insert(meta_key(META_LAST), c.last.to_string().as_bytes());
                b.remove(meta_key(META_BUILDING));
            }
            self.tree.apply_batch(b).map_err(|e| self.sled_err("apply batch", e))?;
        }
        self.cache.clear();
        meta.last_applied_seq = c.last;
        meta.counts = c.counts;
        tracing::debug!(seq = c.last, txns = c.txns, "registry: catch-up chunk written");
        Ok(())
    }

    /// `Some((stored, current))` when the stored schema is older than this build's: log a
    /// WAL transaction with the STEP [`Registry::migration_payload`], commit it, then pass it
    /// to [`Registry::apply_committed`] (which migrates and persists in one batch).
    pub fn needs_migration(&self) -> Option<(u32, u32)> {
        let v = self.meta().schema_version;
        (v != SCHEMA_VERSION).then_some((v, SCHEMA_VERSION))
    }

    /// The STEP payload of the pending migration, if any.
    pub fn migration_payload(&self) -> Option<serde_json::Value> {
        self.needs_migration().map(|(from, to)| Op::Migrate { from, to }.to_payload())
    }

    pub fn schema_version(&self) -> u32 {
        self.meta().schema_version
    }

    /// The live (or quarantined) record of `project_id` + `uuid`.
    pub fn lookup(&self, project_id: &str, uuid: &str) -> Result<Option<Entry>> {
        Ok(self.lookup_shared(project_id, uuid)?.map(Arc::unwrap_or_clone))
    }

    /// [`Registry::lookup`] without copying the record: the cached record itself, shared (a
    /// record read on every change, e.g. by the sync path, is not copied each time).
    pub fn lookup_shared(&self, project_id: &str, uuid: &str) -> Result<Option<Arc<Entry>>> {
        self.check_schema()?;
        self.get_entry(&live_key(project_id, uuid))
    }

    /// Every archived (tombstoned) version of `project_id` + `uuid`, oldest first.
    ///
    /// Held versions (module `write_behind`) are read beside sled's, not written first: the
    /// audit asks this for every uuid it commits, and a write per ask put sled's batch writes
    /// on the audit thread.
    pub fn archived(&self, project_id: &str, uuid: &str) -> Result<Vec<Entry>> {
        self.check_schema()?;
        self.injected("scan", |f| *f == ReadFault::All)?;
        let held = self.unwritten.archived(project_id, uuid);
        let mut out = self.scan_sled(archive_uuid_prefix(project_id, uuid))?;
        for e in held {
            self.injected("scan", |f| matches!(f, ReadFault::Uuid(u) if *u == e.uuid))?;
            if !out.iter().any(|o| o.archive_seq() == e.archive_seq()) {
                out.push(e);
            }
        }
        out.sort_by_key(Entry::archive_seq);
        Ok(out)
    }

    /// Live and quarantined records, of one project or all, ordered by (project, uuid).
    pub fn live_entries(&self, project_id: Option<&str>) -> Result<Vec<Entry>> {
        self.scan(live_prefix(project_id))
    }

    /// Archived records, of one project or all, ordered by (project, uuid, tombstone_seq).
    pub fn archived_entries(&self, project_id: Option<&str>) -> Result<Vec<Entry>> {
        self.scan(archive_prefix(project_id))
    }

    /// Project ids that have live or archived records.
    pub fn projects(&self) -> Result<Vec<String>> {
        self.write_unwritten()?;
        let mut out = std::collections::BTreeSet::new();
        for item in self.tree.iter() {
            let (k, _) = item.map_err(|e| self.sled_err("scan", e))?;
            if k.starts_with(META) {
                continue;
            }
            if let Some(p) = k[5..].split(|b| *b == 0).next() {
                out.insert(String::from_utf8_lossy(p).into_owned());
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Records applied and not yet written to sled (module `write_behind`).
    pub fn unwritten_records(&self) -> usize {
        self.unwritten.records()
    }

    /// Maintained counters; O(1).
    pub fn counts(&self) -> Counts {
        self.meta().counts
    }

    /// COMMIT seq of the last applied transaction (0 = none).
    pub fn last_applied_seq(&self) -> u64 {
        self.meta().last_applied_seq
    }

    /// Build the live-key filter (module `key_filter`): from now on a uuid never held is
    /// answered absent without a sled read. Scans every live key once (call it off the
    /// request path, after open; the daemon does so on a thread of its own); a second call
    /// does nothing. Returns the number of keys scanned.
    pub fn index_keys(&self) -> Result<usize> {
        {
            // Under the appliers' turn: from here each apply adds the keys it makes live.
            let meta = self.meta.lock().unwrap();
            if meta.schema_version != SCHEMA_VERSION || !self.keys.create(meta.counts.live as usize) {
                return Ok(0);
            }
        }
        // Keys applied before the filter existed are in memory or sled: write the first to
        // the second, then scan it.
        self.write_unwritten()?;
        let mut n = 0;
        for item in self.tree.scan_prefix(live_prefix(None)).keys() {
            let key = item.map_err(|e| self.sled_err("scan keys", e))?;
            self.keys.add(&key);
            n += 1;
        }
        self.keys.set_ready();
        tracing::info!(keys = n, "registry: live-key filter ready");
        Ok(n)
    }

    /// Whether [`Registry::index_keys`] finished (and no migration turned the filter off).
    pub fn keys_indexed(&self) -> bool {
        self.keys.is_ready()
    }

    /// Make everything applied so far durable. Call before any acknowledgement that
    /// depends on the registry. Returns bytes flushed.
    pub fn flush(&self) -> Result<usize> {
        self.write_unwritten()?;
        self.db.flush().map_err(|e| self.sled_err("flush", e))
    }

    /// `<data_dir>/registry`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Compare this registry with one rebuilt in memory from `records` (the whole WAL).
    /// Empty = in parity. Used by `vibesync verify`.
    pub fn parity<I: IntoIterator<Item = Record>>(&self, records: I) -> Result<Vec<Problem>> {
        self.parity_from(None, records)
    }

    /// [`Registry::parity`] over a compacted WAL: the reference starts from its `base`.
    pub fn parity_from<I: IntoIterator<Item = Record>>(
        &self,
        base: Option<&RegistryBase>,
        records: I,
    ) -> Result<Vec<Problem>> {
        let (model, wal_last_seq) = Model::from_base_and_wal(base, records)?;
        let mut problems = Vec::new();
        if let Some((from, to)) = self.needs_migration() {
            problems.push(Problem::MigrationPending { from, to });
            return Ok(problems);
        }
        let last = self.last_applied_seq();
        if last != model.last_applied_seq {
            problems.push(Problem::SeqMismatch { registry: last, wal: model.last_applied_seq, wal_last_seq });
        }
        let mut mine = Model { last_applied_seq: last, ..Default::default() };
        for e in self.live_entries(None)? {
            mine.live.insert((e.project_id.clone(), e.uuid.clone()), e);
        }
        for e in self.archived_entries(None)? {
            mine.archive.insert((e.project_id.clone(), e.uuid.clone(), e.tombstone_seq.unwrap_or(0)), e);
        }
        diff_maps(&mine.live, &model.live, |(p, u)| (p.clone(), u.clone(), None), &mut problems);
        diff_maps(&mine.archive, &model.archive, |(p, u, s)| (p.clone(), u.clone(), Some(*s)), &mut problems);
        let counts = self.counts();
        if counts != mine.counts() {
            problems.push(Problem::CountersWrong { counters: counts, records: mine.counts() });
        }
        Ok(problems)
    }

    /// The base a WAL compaction keeps (docs/WAL.md §11): a consistent snapshot, with the
    /// `floor` the caller vouches for.
    pub fn export_base(&self, floor: u64) -> Result<RegistryBase> {
        let (schema_version, seq, entries) = self.snapshot()?;
        Ok(RegistryBase { floor: floor.min(seq), seq, schema_version, entries })
    }

    /// A consistent (seq, records) snapshot: live records then archived ones, key order.
    pub(crate) fn snapshot(&self) -> Result<(u32, u64, Vec<Entry>)> {
        let meta = self.meta.lock().unwrap();
        if meta.schema_version != SCHEMA_VERSION {
            return Err(RegistryError::MigrationPending { from: meta.schema_version, to: SCHEMA_VERSION });
        }
        self.write_unwritten()?;
        let mut out = Vec::new();
        for prefix in [live_prefix(None), archive_prefix(None)] {
            for item in self.tree.scan_prefix(&prefix) {
                let (k, v) = item.map_err(|e| self.sled_err("scan", e))?;
                out.push(decode(&k, &v)?);
            }
        }
        Ok((meta.schema_version, meta.last_applied_seq, out))
    }
}

fn diff_maps<K: Ord>(
    mine: &std::collections::BTreeMap<K, Entry>,
    wal: &std::collections::BTreeMap<K, Entry>,
    id: impl Fn(&K) -> (String, String, Option<u64>),
    out: &mut Vec<Problem>,
) {
    for (k, e) in mine {
        let (project_id, uuid, tombstone_seq) = id(k);
        match wal.get(k) {
            None => out.push(Problem::NotInWal { project_id, uuid, tombstone_seq }),
            Some(w) if w != e => out.push(Problem::Differs { project_id, uuid, tombstone_seq }),
            Some(_) => {}
        }
    }
    for k in wal.keys() {
        if !mine.contains_key(k) {
            let (project_id, uuid, tombstone_seq) = id(k);
            out.push(Problem::MissingFromRegistry { project_id, uuid, tombstone_seq });
        }
    }
}

/// A registry ↔ WAL disagreement found by [`Registry::parity`].
/// `tombstone_seq` is `Some` for archived versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    SeqMismatch { registry: u64, wal: u64, wal_last_seq: u64 },
    MissingFromRegistry { project_id: String, uuid: String, tombstone_seq: Option<u64> },
    NotInWal { project_id: String, uuid: String, tombstone_seq: Option<u64> },
    Differs { project_id: String, uuid: String, tombstone_seq: Option<u64> },
    CountersWrong { counters: Counts, records: Counts },
    MigrationPending { from: u32, to: u32 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |t: &Option<u64>| t.map(|s| format!(" (archived at seq {s})")).unwrap_or_default();
        match self {
            Problem::SeqMismatch { registry, wal, wal_last_seq } => write!(
                f,
                "registry last_applied_seq is {registry}, the WAL's last COMMIT is {wal} (WAL ends at {wal_last_seq})"
            ),
            Problem::MissingFromRegistry { project_id, uuid, tombstone_seq } => {
                write!(f, "{project_id}/{uuid}{}: in the WAL but not in the registry", at(tombstone_seq))
            }
            Problem::NotInWal { project_id, uuid, tombstone_seq } => {
                write!(f, "{project_id}/{uuid}{}: in the registry but not in the WAL", at(tombstone_seq))
            }
            Problem::Differs { project_id, uuid, tombstone_seq } => {
                write!(f, "{project_id}/{uuid}{}: registry content differs from the WAL", at(tombstone_seq))
            }
            Problem::CountersWrong { counters, records } => {
                write!(f, "counters {counters:?} disagree with records {records:?}")
            }
            Problem::MigrationPending { from, to } => write!(f, "schema migration v{from} -> v{to} pending"),
        }
    }
}

#[derive(Default)]
struct CatchUp {
    txns: u64,
    skipped: u64,
    wal_last_seq: u64,
    found_last_commit: bool,
}

fn add(v: u64, d: i64) -> u64 {
    v.saturating_add_signed(d)
}

fn put_counts(b: &mut sled::Batch, c: Counts) {
    b.insert(meta_key(META_LIVE), c.live.to_string().as_bytes());
    b.insert(meta_key(META_TOMB), c.tombstoned.to_string().as_bytes());
    b.insert(meta_key(META_QUAR), c.quarantined.to_string().as_bytes());
}

/// One sled batch for a layer of applied transactions (module `write_behind`).
fn layer_batch(l: &Layer) -> sled::Batch {
    let mut b = sled::Batch::default();
    for (key, value) in &l.live {
        match value {
            Some(e) => b.insert(key.as_slice(), encode(e)),
            None => b.remove(key.as_slice()),
        }
    }
    for e in l.archive() {
        b.insert(archive_key(&e.project_id, &e.uuid, e.archive_seq()), encode(e));
    }
    put_counts(&mut b, l.counts);
    b.insert(meta_key(META_LAST), l.last.to_string().as_bytes());
    b
}

fn encode(e: &Entry) -> Vec<u8> {
    serde_json::to_vec(e).expect("entry serializes")
}

fn decode(key: &[u8], v: &[u8]) -> Result<Entry> {
    serde_json::from_slice(v).map_err(|e| RegistryError::CorruptRecord { key: keys::show(key), reason: e.to_string() })
}

/// Move `dir` to `<data_dir>/quarantine/registry-<UTC timestamp>[-n]/`.
fn quarantine_dir(data_dir: &Path, dir: &Path) -> Result<PathBuf> {
    let qdir = data_dir.join("quarantine");
    let target = vibesync_wal::fsutil::set_aside(dir, &qdir, "registry", "").map_err(|source| {
        RegistryError::Quarantine { from: dir.to_path_buf(), to: qdir.join("registry-<time>"), source }
    })?;
    tracing::warn!(from = %dir.display(), to = %target.display(), "registry: damaged registry moved to quarantine");
    Ok(target)
}

/// sled could not take its file lock (someone else, or a handle of ours still shutting down).
fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

fn locked(dir: PathBuf, message: &str) -> RegistryError {
    let reason =
        format!("locked by another process ({message}); is another daemon using this data directory? Stop it first");
    RegistryError::Unopenable { path: dir, reason }
}
