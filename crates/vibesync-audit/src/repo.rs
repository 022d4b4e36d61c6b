//! Git side of the audit: open/init the bare repository, build snapshot trees without a
//! work tree, commit with trailers. Only the audit thread calls this (Repository is Send,
//! not Sync).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Repository, RepositoryInitOptions, Signature};

use crate::batch::{AuditBatch, AuditContent, AuditEntry};
use crate::error::AuditError;
use crate::merge::{self, Hints};
use crate::pack::PackStream;

pub const BRANCH: &str = "refs/heads/main";
pub const TRAILER_RANGE: &str = "VibeSync-Seq-Range";
pub const TRAILER_OPERATION: &str = "VibeSync-Operation";
pub const TRAILER_ENTRIES: &str = "VibeSync-Entries";
/// Seq of the last WAL record the commit covers (its last FINAL).
pub const TRAILER_WAL_SEQ: &str = "VibeSync-Wal-Seq";
/// `h` of that record: anchors the WAL hash chain (docs/WAL.md §5).
pub const TRAILER_WAL_H: &str = "VibeSync-Wal-H";

/// What the newest commit on `main` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub commit: String,
    /// Upper end of its `VibeSync-Seq-Range`.
    pub last_seq: u64,
    /// Its `VibeSync-Wal-H` (absent in commits written before it existed).
    pub wal_h: Option<String>,
}

pub(crate) struct AuditRepo {
    pub repo: Repository,
    pub path: PathBuf,
    /// Which object replaced which, for the merges' deltas (module `merge`).
    hints: Mutex<Hints>,
    /// Object count of each pack index seen (file name → count).
    pack_counts: Mutex<std::collections::HashMap<String, usize>>,
    /// The commits' handle between commits ([`AuditRepo::writer`]).
    writer: Mutex<Option<Writer>>,
}

/// A repository handle for commits, with the in-memory object store they write to.
struct Writer {
    repo: Repository,
    /// Bytes its in-memory store holds (what the commits built there).
    memory: usize,
}

/// The in-memory store a commit handle may hold before it is dropped.
const WRITER_MEMORY: usize = 8 << 20;

fn git(op: &'static str, path: &Path) -> impl FnOnce(git2::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Git { op, path, source }
}

impl AuditRepo {
    /// Open the bare repository at `git_dir`, creating it (HEAD → refs/heads/main) if missing.
    pub fn open(git_dir: &Path) -> Result<AuditRepo, AuditError> {
        let open_err = |source| AuditError::Open { path: git_dir.to_path_buf(), source };
        // A commit's trees name blobs that are in no object store until its pack is indexed
        // (module `pack`), so libgit2 must not look each one up when a tree is built
        // (process-wide; the audit is the daemon's only git writer and builds every object
        // it names).
        git2::opts::strict_object_creation(false);
        remove_stale_locks(git_dir);
        remove_merge_leftovers(&git_dir.join("objects").join("pack"));
        let repo = if git_dir.join("HEAD").exists() {
            Repository::open_bare(git_dir).map_err(open_err)?
        } else {
            let mut opts = RepositoryInitOptions::new();
            opts.bare(true).mkpath(true).initial_head("main");
            let repo = Repository::init_opts(git_dir, &opts).map_err(open_err)?;
            tracing::info!(path = %git_dir.display(), "audit: created bare repository");
            repo
        };
        let head_is_main =
            repo.find_reference("HEAD").ok().and_then(|h| h.symbolic_target().map(|t| t == BRANCH)).unwrap_or(false);
        if !head_is_main {
            repo.set_head(BRANCH).map_err(git("point HEAD at main", git_dir))?;
        }
        // Pack settings files earlier versions wrote for libgit2's pack builder, which the
        // audit no longer uses (module `merge`).
        for file in ["vibesync-pack.config", "vibesync-pack-delta.config"] {
            let _ = std::fs::remove_file(git_dir.join(file));
        }
        Ok(AuditRepo::with(repo, git_dir))
    }

    pub fn with(repo: Repository, git_dir: &Path) -> AuditRepo {
        AuditRepo {
            repo,
            path: git_dir.to_path_buf(),
            hints: Mutex::new(Hints::default()),
            pack_counts: Mutex::new(Default::default()),
            writer: Mutex::new(None),
        }
    }

    /// The commits' own handle, whose object store has an in-memory backend on top: the
    /// trees and commit a commit builds go there. Kept across commits (opening a handle and
    /// loading the pack list through it was ~15 % of a one-change commit) until its
    /// in-memory store holds [`WRITER_MEMORY`] bytes or a merge removes packs; the backend
    /// cannot be emptied through git2 (its handle borrows the store), so a full one is
    /// dropped with its handle.
    fn writer(&self) -> Result<Writer, AuditError> {
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Ok(w);
        }
        let repo = Repository::open_bare(&self.path).map_err(git("open the repository for a commit", &self.path))?;
        repo.odb()
            .and_then(|odb| odb.add_new_mempack_backend(MEMPACK_PRIORITY).map(drop))
            .map_err(git("add the in-memory object store", &self.path))?;
        Ok(Writer { repo, memory: 0 })
    }

    fn head_commit(&self) -> Result<Option<git2::Commit<'_>>, AuditError> {
        head_commit(&self.repo, &self.path)
    }

    /// What the head commit covers (None = no commit yet). A head commit without a
    /// `VibeSync-Seq-Range` trailer is damage ([`AuditError::Inconsistent`]).
    pub fn head(&self) -> Result<Option<Head>, AuditError> {
        let Some(c) = self.head_commit()? else {
            return Ok(None);
        };
        let message = c.message().unwrap_or("");
        let (_, last_seq) = parse_range(message).ok_or_else(|| AuditError::Inconsistent {
            path: self.path.clone(),
            reason: format!("head commit {} has no {TRAILER_RANGE} trailer", c.id()),
        })?;
        Ok(Some(Head {
            commit: c.id().to_string(),
            last_seq,
            wal_h: trailer(message, TRAILER_WAL_H).map(str::to_owned),
        }))
    }

    pub fn commit_count(&self) -> u64 {
        let Ok(mut walk) = self.repo.revwalk() else {
            return 0;
        };
        if walk.push_ref(BRANCH).is_err() {
            return 0;
        }
        walk.count() as u64
    }

    /// Commit one batch as a snapshot on top of the head commit's tree. Entries that cannot
    /// become paths are left out and returned (the FINALs they belong to stay covered).
    pub fn commit_batch(&self, batch: &AuditBatch) -> Result<(Oid, Vec<AuditError>), AuditError> {
        if batch.first_seq > batch.last_seq {
            return Err(AuditError::BadBatch {
                first_seq: batch.first_seq,
                last_seq: batch.last_seq,
                reason: "first_seq is after last_seq".into(),
            });
        }
        // The entries that can become paths (the others are returned, their FINALs stay
        // covered).
        let mut valid = Vec::new();
        let mut rejected = Vec::new();
        for e in &batch.entries {
            match check_component(&e.project_id, &e.uuid, "project_id", &e.project_id)
                .and_then(|_| check_uuid(&e.project_id, &e.uuid))
            {
                Ok(()) => valid.push(e),
                Err(bad) => rejected.push(bad),
            }
        }
        // The commit's trees and the commit itself go to an in-memory object store
        // (libgit2's mempack backend, on the commits' own repository handle, `writer`);
        // its blobs go to no store at all: they go straight into the pack (module `pack`),
        // which is then indexed to disk as one packfile before `main` moves. One pack per
        // commit instead of one loose file per object, and no pack-directory scan per blob.
        let mut writer = self.writer()?;
        let done = self.commit_with(&mut writer, batch, &valid)?;
        // Kept for the next commit only after a commit that went through.
        if writer.memory < WRITER_MEMORY {
            *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        }
        Ok((done, rejected))
    }

    fn commit_with(&self, writer: &mut Writer, batch: &AuditBatch, valid: &[&AuditEntry]) -> Result<Oid, AuditError> {
        let w = &writer.repo;
        let odb = w.odb().map_err(git("open the object store", &self.path))?;
        let head = head_commit(w, &self.path)?;
        let mut pack = PackStream::new();
        // Trees and the commit, read back from memory once built.
        let mut stored = Vec::new();
        let base = match &head {
            Some(c) => c.tree().map_err(git("read the head tree", &self.path))?,
            None => {
                let empty =
                    w.treebuilder(None).and_then(|b| b.write()).map_err(git("write the empty tree", &self.path))?;
                stored.push(empty);
                w.find_tree(empty).map_err(git("read the empty tree", &self.path))?
            }
        };
        let mut upd = TreeUpdateBuilder::new();
        let mut base_entries = BaseTree::new(w, base.clone());
        // Final content per path. A project whose directory reaches FAN_OUT_AT entries is
        // fanned out by this commit: its entries move under their buckets unchanged (the same
        // blobs), then the batch's entries apply on top.
        let mut paths: BTreeMap<String, Content> = BTreeMap::new();
        let mut fanned: BTreeMap<&str, bool> = BTreeMap::new();
        for e in valid {
            if fanned.contains_key(e.project_id.as_str()) {
                continue;
            }
            let dir = format!("registry/{}", e.project_id);
            let layout = base_entries.layout(&dir);
            if let Layout::Flat(entries) = &layout {
                if entries.len() >= FAN_OUT_AT {
                    for (name, id) in entries {
                        let Some(uuid) = name.strip_suffix(".json") else { continue };
                        paths.insert(format!("{dir}/{name}"), Content::Remove);
                        paths.insert(live_path(&e.project_id, uuid, true), Content::Keep(*id));
                    }
                }
            }
            let fan = match layout {
                Layout::Fanned => true,
                Layout::Flat(entries) => entries.len() >= FAN_OUT_AT,
            };
            fanned.insert(e.project_id.as_str(), fan);
        }
        for e in valid {
            let live = live_path(&e.project_id, &e.uuid, fanned[e.project_id.as_str()]);
            match &e.content {
                AuditContent::Live(v) => {
                    paths.insert(live, Content::Put(pretty(v)));
                }
                AuditContent::Archived { tombstone_seq, value } => {
                    paths.insert(live, Content::Remove);
                    paths.insert(
                        format!("archive/{}/{}/{}.json", e.project_id, e.uuid, tombstone_seq),
                        Content::Put(pretty(value)),
                    );
                }
            }
        }
        let mut changed_dirs = BTreeSet::new();
        // (old, new) object at the same path: the bases a later merge deltas against.
        let mut replaced: Vec<(Oid, Oid)> = Vec::new();
        for (path, content) in &paths {
            match content {
                Content::Put(bytes) => {
                    // Unchanged content: no object, no tree update.
                    let id = Oid::hash_object(git2::ObjectType::Blob, bytes).map_err(git("hash a blob", &self.path))?;
                    let old = base_entries.blob_id(path);
                    if old == Some(id) {
                        continue;
                    }
                    replaced.extend(old.map(|o| (o, id)));
                    pack.add(id, git2::ObjectType::Blob, bytes);
                    upd.upsert(path.as_str(), id, FileMode::Blob);
                }
                // A snapshot the repository holds already, at a new path.
                Content::Keep(id) => {
                    if base_entries.blob_id(path) == Some(*id) {
                        continue;
                    }
                    upd.upsert(path.as_str(), *id, FileMode::Blob);
                }
                Content::Remove => {
                    if base_entries.blob_id(path).is_none() {
                        continue;
                    }
                    upd.remove(path.as_str());
                }
            }
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                if !changed_dirs.insert(parent.to_string()) {
                    break;
                }
                dir = parent;
            }
        }
        let old_dirs: Vec<Option<Oid>> = changed_dirs.iter().map(|d| base_entries.dir(d).map(|t| t.id())).collect();
        drop(base_entries);
        let tree_id = upd.create_updated(w, &base).map_err(git("build the snapshot tree", &self.path))?;
        let tree = w.find_tree(tree_id).map_err(git("read the snapshot tree", &self.path))?;
        stored.push(tree_id);
        replaced.push((base.id(), tree_id));
        for (dir, old) in changed_dirs.iter().zip(old_dirs) {
            // A directory emptied by this commit is gone from the new tree.
            if let Ok(e) = tree.get_path(Path::new(dir)) {
                stored.push(e.id());
                replaced.extend(old.map(|o| (o, e.id())));
            }
        }
        let sig = Signature::now("vibesync", "vibesync@localhost").map_err(git("make the signature", &self.path))?;
        let message = commit_message(batch);
        let parents: Vec<&git2::Commit<'_>> = head.iter().collect();
        let oid = w.commit(None, &sig, &sig, &message, &tree, &parents).map_err(git("commit", &self.path))?;
        stored.push(oid);
        for id in stored {
            let o = odb.read(id).map_err(git("read a new object back from memory", &self.path))?;
            writer.memory += o.data().len();
            pack.add(id, o.kind(), o.data());
        }
        let dir = self.path.join("objects").join("pack");
        pack.store(&dir).map_err(|source| AuditError::Io {
            op: "write the commit's pack",
            path: dir.clone(),
            source,
        })?;
        // The pack is on disk and indexed: only now does `main` point at it.
        let log = format!("vibesync: audit seq {}-{}", batch.first_seq, batch.last_seq);
        match &head {
            Some(c) => w.reference_matching(BRANCH, oid, true, c.id(), &log),
            None => w.reference(BRANCH, oid, false, &log),
        }
        .map_err(git("move the main branch", &self.path))?;
        self.hints.lock().unwrap_or_else(|p| p.into_inner()).record(replaced);
        Ok(oid)
    }

    /// Merge small packs (fewer than [`SMALL_PACK_OBJECTS`] objects each) into one once
    /// there are [`MERGE_AT_PACKS`] of them, then remove them: the pack count stays bounded
    /// (each lookup of a missing object scans every pack). Which ones: the smallest, rolled
    /// up geometrically ([`packs_to_merge`]), so a merged pack is not rewritten at every
    /// merge and each object is rewritten a few times — as the bytes it already has in its
    /// pack (module `merge`: only a commit's whole trees and snapshots are re-encoded, once,
    /// as deltas against their next version). Packs with a `.keep` file are left alone.
    /// Returns how many packs were merged (0: nothing to do). Nothing is lost on a crash
    /// part-way: the old packs are removed only once the merged pack and its index are
    /// synced and in place, and an object in two packs is harmless.
    pub fn merge_small_packs(&self) -> Result<usize, AuditError> {
        let dir = self.path.join("objects").join("pack");
        let io = |e: std::io::Error| AuditError::Inconsistent {
            path: dir.clone(),
            reason: format!("cannot read the pack directory: {e}"),
        };
        let names: BTreeSet<String> =
            std::fs::read_dir(&dir).map_err(io)?.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        // Object counts by index file (a pack never changes under its name): each index is
        // read once, not at every commit.
        let mut counts = self.pack_counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.retain(|name, _| names.contains(name));
        let mut small = Vec::new();
        for name in &names {
            let Some(stem) = name.strip_suffix(".idx") else { continue };
            if names.contains(&format!("{stem}.keep")) {
                continue;
            }
            let n = match counts.get(name) {
                Some(n) => *n,
                None => match crate::pack::index_count(&dir.join(name)) {
                    Some(n) => *counts.entry(name.clone()).or_insert(n),
                    None => continue,
                },
            };
            if n < SMALL_PACK_OBJECTS {
                small.push((dir.join(name), n));
            }
        }
        drop(counts);
        let sizes: Vec<usize> = small.iter().map(|(_, n)| *n).collect();
        let Some(chosen) = packs_to_merge(&sizes) else { return Ok(0) };
        let before: Vec<PathBuf> = chosen.iter().map(|&i| small[i].0.clone()).collect();
        let odb = self.repo.odb().map_err(git("open the object store", &self.path))?;
        let read = |id: Oid| odb.read(id).ok().map(|o| o.data().to_vec());
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        let name = merge::merge(&dir, &before, &mut hints, &read).map_err(|e| AuditError::Inconsistent {
            path: dir.clone(),
            reason: format!("merging small packs: {}", e.0),
        })?;
        // The commits' handle has the removed packs open: the next commit opens a fresh one.
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for p in &before {
            if p.file_stem().is_some_and(|s| *s == *name) {
                continue; // the merged pack is one of them, byte for byte
            }
            // The index first: without it the pack is no longer part of the store, so a
            // reader never finds an index whose pack is gone (and a crash here leaves a pack
            // without index, which the next open removes).
            for ext in ["idx", "keep", "rev", "bitmap", "mtimes", "pack"] {
                let _ = std::fs::remove_file(p.with_extension(ext));
            }
        }
        Ok(before.len())
    }
}

fn head_commit<'r>(repo: &'r Repository, path: &Path) -> Result<Option<git2::Commit<'r>>, AuditError> {
    match repo.find_reference(BRANCH) {
        Ok(r) => Ok(Some(r.peel_to_commit().map_err(git("read the main branch", path))?)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git("read the main branch", path)(e)),
    }
}

/// Above the loose (1) and pack (2) backends: new objects of a commit go to memory.
const MEMPACK_PRIORITY: i32 = 1000;
/// A pack with fewer objects than this is "small" and merged with others.
pub const SMALL_PACK_OBJECTS: usize = 50_000;
/// How many small packs trigger a merge.
pub const MERGE_AT_PACKS: usize = 16;

/// Which small packs (by object count) to merge once there are [`MERGE_AT_PACKS`] of them:
/// the smallest ones, rolled up as `git repack --geometric=2` does — the packs left must
/// each hold at least twice as many objects as the next smaller one, and every pack smaller
/// than twice the rolled-up total joins it. A big merged pack is left alone until enough
/// small ones have gathered beside it, so each object is rewritten a few times (each
/// rewrite at least doubles its pack), not at every merge: over 20,000 simulated commits
/// merging every small pack rewrote objects 246 times on average, this 10 times (the
/// test below). Indices into `sizes`.
pub fn packs_to_merge(sizes: &[usize]) -> Option<Vec<usize>> {
    if sizes.len() < MERGE_AT_PACKS {
        return None;
    }
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let size = |k: usize| sizes[order[k]];
    // From the biggest down: the first pack less than twice the next smaller one ends the
    // geometric run; it and everything smaller are rolled up...
    let mut split = order.len() - 1;
    while split > 0 && size(split) >= 2 * size(split - 1) {
        split -= 1;
    }
    let mut total: usize = (0..=split).map(size).sum();
    let mut end = split + 1;
    // ...with every bigger pack that is less than twice the total so far.
    while end < order.len() && size(end) < 2 * total {
        total += size(end);
        end += 1;
    }
    // A run already geometric throughout: the two smallest, so the count still goes down.
    order.truncate(end.max(2));
    Some(order)
}

/// Entries of the head commit's tree, looked up by path with each directory read once per
/// commit. `Tree::get_path` reads every directory on the way from the object store on each
/// call, and libgit2 does not cache trees over 4 KiB, so a commit touching n objects of a
/// project with K objects inflated the K-entry directory n times: O(n·K). Here a directory
/// is read once and its entries found by binary search (`Tree::get_name`).
/// What a commit does at one path.
enum Content {
    /// Write these bytes (a new snapshot).
    Put(Vec<u8>),
    /// Point at this blob, which the repository already holds (an entry moved by a fan-out).
    Keep(Oid),
    /// Remove the file.
    Remove,
}

/// A project's directory of live entries (`registry/<project>/`) in a commit's tree.
enum Layout {
    /// `<uuid>.json` files, with their blobs (name, id); empty when there is no directory.
    Flat(Vec<(String, Oid)>),
    /// `<2 hex>/<uuid>.json` (docs/WAL.md §9).
    Fanned,
}

/// A project's directory of live entries is fanned out (`registry/<project>/<first two hex
/// digits of the uuid>/<uuid>.json`) by the first commit that finds it holding this many
/// entries or more: every commit rewrites the directories on its paths whole, and a flat
/// directory of N objects made each commit cost ~6 µs per object of the project
/// (docs/BENCHMARKS.md, "Disk use per store"). A fanned-out project stays fanned out.
pub const FAN_OUT_AT: usize = 4096;

/// The path of a live entry: flat, or under its bucket (the uuid's first two hex digits).
fn live_path(project_id: &str, uuid: &str, fanned: bool) -> String {
    if fanned {
        format!("registry/{project_id}/{}/{uuid}.json", &uuid[..2])
    } else {
        format!("registry/{project_id}/{uuid}.json")
    }
}

/// The live entries of `project_id` in `tree`, whatever its layout (docs/WAL.md §9): uuid →
/// blob id. No directory: none.
pub fn project_entries(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    project_id: &str,
) -> Result<BTreeMap<String, Oid>, git2::Error> {
    let mut out = BTreeMap::new();
    let dir = match tree.get_path(Path::new("registry").join(project_id).as_path()) {
        Ok(e) => repo.find_tree(e.id())?,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in dir.iter() {
        match e.kind() {
            Some(git2::ObjectType::Blob) => {
                if let Some(uuid) = e.name().and_then(|n| n.strip_suffix(".json")) {
                    out.insert(uuid.to_string(), e.id());
                }
            }
            Some(git2::ObjectType::Tree) => {
                for b in repo.find_tree(e.id())?.iter() {
                    if let Some(uuid) = b.name().and_then(|n| n.strip_suffix(".json")) {
                        out.insert(uuid.to_string(), b.id());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

struct BaseTree<'r> {
    repo: &'r Repository,
    /// directory path ("" = the root) → its tree (None: it does not exist in the base).
    dirs: std::collections::HashMap<String, Option<git2::Tree<'r>>>,
}

impl<'r> BaseTree<'r> {
    fn new(repo: &'r Repository, root: git2::Tree<'r>) -> Self {
        BaseTree { repo, dirs: std::collections::HashMap::from([(String::new(), Some(root))]) }
    }

    fn dir(&mut self, dir: &str) -> Option<&git2::Tree<'r>> {
        if !self.dirs.contains_key(dir) {
            let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
            let tree = self
                .dir(parent)
                .and_then(|p| p.get_name(name).map(|e| e.id()))
                .and_then(|id| self.repo.find_tree(id).ok());
            self.dirs.insert(dir.to_string(), tree);
        }
        self.dirs.get(dir).and_then(Option::as_ref)
    }

    /// The layout of the directory `dir` (`registry/<project>`) in the base tree.
    fn layout(&mut self, dir: &str) -> Layout {
        let Some(tree) = self.dir(dir) else { return Layout::Flat(Vec::new()) };
        if tree.iter().any(|e| e.kind() == Some(git2::ObjectType::Tree)) {
            return Layout::Fanned;
        }
        Layout::Flat(
            tree.iter()
                .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
                .filter_map(|e| Some((e.name()?.to_string(), e.id())))
                .collect(),
        )
    }

    /// The blob at `path` in the base tree (None: no such entry).
    fn blob_id(&mut self, path: &str) -> Option<Oid> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.dir(dir)?.get_name(name).filter(|e| e.kind() == Some(git2::ObjectType::Blob)).map(|e| e.id())
    }
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("JSON value serializes");
    b.push(b'\n');
    b
}

/// The project id becomes a path in the audit tree: docs/PROTOCOL.md §2's rule
/// (`vibesync_protocol::validate::project_id`) keeps it one safe component.
fn check_component(project_id: &str, uuid: &str, what: &str, s: &str) -> Result<(), AuditError> {
    vibesync_protocol::validate::project_id(s).map_err(|why| AuditError::BadEntry {
        project_id: project_id.into(),
        uuid: uuid.into(),
        reason: format!("{what} {s:?}: {why} (it becomes a path in the audit tree)"),
    })
}

fn check_uuid(project_id: &str, uuid: &str) -> Result<(), AuditError> {
    vibesync_protocol::validate::uuid(uuid).map_err(|e| AuditError::BadEntry {
        project_id: project_id.into(),
        uuid: uuid.into(),
        reason: e.message,
    })
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Subject, blank line, trailers (one `VibeSync-Operation` per FINAL covered, in seq order).
pub fn commit_message(b: &AuditBatch) -> String {
    let n = b.operation_ids.len();
    let mut m = format!(
        "vibesync: seq {}-{} ({n} operation{}, {} entr{})\n\n",
        b.first_seq,
        b.last_seq,
        if n == 1 { "" } else { "s" },
        b.entries.len(),
        if b.entries.len() == 1 { "y" } else { "ies" }
    );
    m.push_str(&format!("{TRAILER_RANGE}: {}-{}\n", b.first_seq, b.last_seq));
    for id in &b.operation_ids {
        m.push_str(&format!("{TRAILER_OPERATION}: {}\n", one_line(id)));
    }
    m.push_str(&format!("{TRAILER_ENTRIES}: {}\n", b.entries.len()));
    m.push_str(&format!("{TRAILER_WAL_SEQ}: {}\n", b.last_seq));
    m.push_str(&format!("{TRAILER_WAL_H}: {}\n", one_line(&b.wal_h)));
    m
}

/// The value of the last `key: value` trailer line of a commit message.
pub fn trailer<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message.lines().rev().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':'))).map(str::trim)
}

/// Every `VibeSync-Operation` trailer value, in order.
pub fn operations(message: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|l| l.strip_prefix(TRAILER_OPERATION).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_owned())
        .collect()
}

/// `(first, last)` from a commit message's `VibeSync-Seq-Range: a-b` trailer.
pub fn parse_range(message: &str) -> Option<(u64, u64)> {
    let (a, b) = trailer(message, TRAILER_RANGE)?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A process killed while git updates a ref leaves `<name>.lock` behind, and libgit2 then
/// refuses every later update of that ref. The daemon is the only writer of the audit
/// repository (it holds the data directory's lock), so any lock file found at open is stale.
fn remove_stale_locks(git_dir: &Path) {
    fn walk(dir: &Path, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 6 && !p.ends_with("objects") {
                    walk(&p, depth + 1);
                }
            } else if p.extension().is_some_and(|x| x == "lock") {
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        tracing::warn!(path = %p.display(), "audit: removed a stale git lock file left by a crash")
                    }
                    Err(err) => tracing::error!(path = %p.display(), "audit: cannot remove stale lock file: {err}"),
                }
            }
        }
    }
    walk(git_dir, 0);
}

/// What a crash during a pack merge or a commit's indexing leaves in the pack directory:
/// temporary files, and a merged pack renamed into place without its index yet (not part of
/// the store: git and libgit2 read a pack only through its index; the packs it was to
/// replace are all still there).
fn remove_merge_leftovers(pack_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pack_dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let leftover = name.starts_with("tmp_vibesync_")
            || name.starts_with("pack_git2_")
            || (name.starts_with("pack-") && name.ends_with(".pack") && !p.with_extension("idx").exists());
        if leftover {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::warn!(path = %p.display(), "audit: removed a partly written pack left by a crash"),
                Err(err) => tracing::error!(path = %p.display(), "audit: cannot remove a partly written pack: {err}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{packs_to_merge, MERGE_AT_PACKS, SMALL_PACK_OBJECTS};

    /// The merge policy over a long run of commits, most of one change (a few objects),
    /// some of a batch, now and then a big one: after each commit's merge check fewer than
    /// `MERGE_AT_PACKS` small packs are left, and objects are rewritten ~10 times on average
    /// (merging every small pack, the policy before, rewrote them 246 times on average and
    /// 1,357 at most in this same run: the merged packs again at every merge).
    #[test]
    fn merges_keep_few_packs_and_rewrite_each_object_a_few_times() {
        let mut packs: Vec<Vec<usize>> = Vec::new(); // object ids per pack
        let mut rewrites: Vec<u32> = Vec::new(); // per object
        let mut merges = 0;
        for commit in 0..20_000usize {
            let objects = match commit % 1000 {
                999 => 3_000,
                n if n % 10 == 0 => 24,
                _ => 5,
            };
            let first = rewrites.len();
            rewrites.extend(std::iter::repeat_n(0, objects));
            packs.push((first..first + objects).collect());
            let small: Vec<usize> = (0..packs.len()).filter(|&i| packs[i].len() < SMALL_PACK_OBJECTS).collect();
            let sizes: Vec<usize> = small.iter().map(|&i| packs[i].len()).collect();
            if let Some(chosen) = packs_to_merge(&sizes) {
                assert!(chosen.len() >= 2, "{chosen:?}");
                merges += 1;
                let mut chosen: Vec<usize> = chosen.iter().map(|&c| small[c]).collect();
                chosen.sort_unstable_by(|a, b| b.cmp(a));
                let mut merged = Vec::new();
                for &i in &chosen {
                    merged.extend(packs.remove(i));
                }
                for &o in &merged {
                    rewrites[o] += 1;
                }
                // Two packs: the snapshots and the trees and commits.
                let cut = merged.len() / 5;
                packs.push(merged[..cut].to_vec());
                packs.push(merged[cut..].to_vec());
            }
            let left = packs.iter().filter(|p| p.len() < SMALL_PACK_OBJECTS).count();
            assert!(left < MERGE_AT_PACKS, "commit {commit}: {left} small packs left");
        }
        let most = rewrites.iter().max().copied().unwrap_or(0);
        let mean = rewrites.iter().map(|&r| f64::from(r)).sum::<f64>() / rewrites.len() as f64;
        assert!(merges > 1_000, "{merges} merges");
        assert!(most <= 32 && mean <= 12.0, "objects rewritten {mean:.1} times on average, {most} at most");
    }

    #[test]
    fn nothing_to_merge_below_the_count() {
        assert_eq!(packs_to_merge(&[]), None);
        assert_eq!(packs_to_merge(&[5; MERGE_AT_PACKS - 1]), None);
        assert_eq!(packs_to_merge(&[5; MERGE_AT_PACKS]), Some((0..MERGE_AT_PACKS).collect()));
        // The small ones first: the big merged pack waits for its peers.
        let mut sizes = vec![4_000];
        sizes.extend([5; MERGE_AT_PACKS]);
        assert_eq!(
            packs_to_merge(&sizes).map(|mut v| {
                v.sort();
                v
            }),
            Some((1..1 + MERGE_AT_PACKS).collect())
        );
        // A run already geometric: the two smallest.
        let run: Vec<usize> = (0..MERGE_AT_PACKS as u32).map(|k| 1 << k).collect();
        assert_eq!(packs_to_merge(&run), Some(vec![0, 1]));
    }
}
