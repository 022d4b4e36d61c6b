//! Merging the audit's small packs into one (docs/ARCHITECTURE.md, `vibesync-audit`,
//! "merge"), written here rather than by libgit2's pack builder.
//!
//! libgit2's pack builder reuses nothing: every merge inflated each object of the packs it
//! rolled up, searched a delta for it among ten others and compressed it again, so an
//! object paid that each time its pack was rolled into a bigger one, and a one-change commit
//! in a project of ~21,000 objects cost 6 ms after 100 commits and 34 ms after 800
//! (docs/BENCHMARKS.md, "Disk use per store"). Here an object's bytes in its pack are copied
//! as they are (their CRC checked against the index, as git checks what it reuses), and
//! only whole trees and snapshots are re-encoded, each once, as a delta against the next
//! version of the same path when that version is in the merged pack too ([`Hints`],
//! recorded by the commit that replaced them; module `delta`). The newest version stays
//! whole, so reading `main`'s tree applies no delta. The merged pack and its index (git's
//! version 2) are written here, synced, and renamed into place before the caller removes the
//! packs they replace.
//!
//! # Invariants
//! Every object of the merged packs is in the merged one, with the same id and content; a
//! delta's base is in the same pack and no chain is longer than [`MAX_DEPTH`]; nothing is
//! renamed into place before it is fully written and synced.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;
use git2::Oid;
use sha1::{Digest, Sha1};

use crate::delta::{self, Records};
use crate::pack::{
    self, parse_header, put_header, read_index, Base, Deflater, Header, Table, OBJ_BLOB, OBJ_REF_DELTA, OBJ_TREE,
};

/// Longest delta chain a merge makes (git's default depth).
pub const MAX_DEPTH: usize = 50;

/// Which object replaced which at the same path, as the commits recorded it: the delta
/// bases a merge may use. A pair waits until one merge holds both sides (a directory's
/// bucket is touched again hundreds of commits later, and the geometric roll-up brings the
/// two versions into one pack only then); at most [`MAX_HINTS`] are kept, the oldest
/// dropped first. In memory only: after a restart the older versions stay whole.
#[derive(Default)]
pub(crate) struct Hints {
    /// Replaced object → (its successor, the number of the commit that replaced it).
    next: HashMap<Oid, (Oid, u64)>,
    commits: u64,
}

/// Most pairs kept (~100 bytes each).
pub const MAX_HINTS: usize = 100_000;

impl Hints {
    /// One commit's replacements: (old object, new object) at the same path.
    pub fn record(&mut self, pairs: impl IntoIterator<Item = (Oid, Oid)>) {
        self.commits += 1;
        for (old, new) in pairs {
            if old != new {
                self.next.insert(old, (new, self.commits));
            }
        }
        if self.next.len() > MAX_HINTS {
            let mut ns: Vec<u64> = self.next.values().map(|v| v.1).collect();
            let (_, cut, _) = ns.select_nth_unstable(self.next.len() - MAX_HINTS / 2);
            let cut = *cut;
            self.next.retain(|_, v| v.1 >= cut);
        }
    }

    /// Drop the pairs a merge held both sides of (used, or not worth a delta).
    fn forget(&mut self, packed: &HashSet<Oid>) {
        self.next.retain(|old, (new, _)| !(packed.contains(old) && packed.contains(new)));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.next.len()
    }
}

/// Why a merge was not made (the caller keeps the small packs).
#[derive(Debug)]
pub(crate) struct MergeError(pub String);

fn fail<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> MergeError {
    move |e| MergeError(format!("{what}: {e}"))
}

/// One object as it sits in a source pack.
struct Entry {
    oid: Oid,
    pack: usize,
    offset: u64,
    /// Bytes from the entry's header to the next entry.
    len: usize,
    crc: u32,
}

fn inflate(data: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(size);
    ZlibDecoder::new(data).read_to_end(&mut out).ok()?;
    (out.len() == size).then_some(out)
}

/// What the merged pack holds for one object.
enum Out {
    /// The source entry's bytes as they are.
    Raw,
    /// The source entry's zlib data behind a new header naming its base by id.
    Rebased(Oid),
    /// A delta against `base`, computed by this merge.
    Delta { base: Oid, delta: Vec<u8> },
}

/// Merge the packs whose indexes are `idxs` into one pack in `dir`; returns its name
/// (`pack-<hex>`). The caller removes the source packs. `read` gives an object's content
/// (the repository's object store).
pub(crate) fn merge(
    dir: &Path,
    idxs: &[PathBuf],
    hints: &mut Hints,
    read: &dyn Fn(Oid) -> Option<Vec<u8>>,
) -> Result<String, MergeError> {
    let mut files = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashMap<Oid, usize> = HashMap::new();
    // (pack, offset) → id, to name an offset delta's base.
    let mut at_offset: HashMap<(usize, u64), Oid> = HashMap::new();
    for (k, idx) in idxs.iter().enumerate() {
        let index = read_index(idx).map_err(MergeError)?;
        let path = idx.with_extension("pack");
        let file = File::open(&path).map_err(fail(format_args!("open {}", path.display())))?;
        let pack_len = file.metadata().map_err(fail(format_args!("stat {}", path.display())))?.len();
        let mut order: Vec<usize> = (0..index.oids.len()).collect();
        order.sort_by_key(|&i| index.offsets[i]);
        for (j, &i) in order.iter().enumerate() {
            let end = order.get(j + 1).map_or(pack_len.saturating_sub(20), |&n| index.offsets[n]);
            let (oid, offset) = (index.oids[i], index.offsets[i]);
            at_offset.insert((k, offset), oid);
            if end <= offset {
                return Err(MergeError(format!("{}: entry {oid} has no bytes", path.display())));
            }
            if seen.contains_key(&oid) {
                continue;
            }
            seen.insert(oid, entries.len());
            entries.push(Entry { oid, pack: k, offset, len: (end - offset) as usize, crc: index.crcs[i] });
        }
        files.push((path, file));
    }
    // Each entry's header, its bytes checked against the CRC. Bytes are read again when
    // needed (from the page cache): a merge holds headers, not packs, in memory.
    let src = Sources(files);
    let mut heads = Vec::with_capacity(entries.len());
    for e in &entries {
        let raw = src.read(e)?;
        let h = parse_header(&raw, e.offset)
            .ok_or_else(|| MergeError(format!("{}: object {} has a bad header", src.0[e.pack].0.display(), e.oid)))?;
        heads.push(h);
    }
    // The base of each entry that is a delta already, by id (all in this merge: a source
    // pack holds its deltas' bases).
    let mut outs: Vec<Out> = Vec::with_capacity(entries.len());
    let mut base_of: HashMap<Oid, Oid> = HashMap::new();
    for (e, h) in entries.iter().zip(&heads) {
        outs.push(match &h.base {
            None => Out::Raw,
            Some(Base::Id(b)) => {
                base_of.insert(e.oid, *b);
                Out::Raw
            }
            Some(Base::Offset(o)) => {
                let b = *at_offset
                    .get(&(e.pack, *o))
                    .ok_or_else(|| MergeError(format!("object {}: its delta base is not in its pack", e.oid)))?;
                base_of.insert(e.oid, b);
                Out::Rebased(b)
            }
        });
        if let Some(b) = base_of.get(&e.oid) {
            if !seen.contains_key(b) {
                return Err(MergeError(format!("object {}: delta base {b} is in none of the merged packs", e.oid)));
            }
        }
    }
    // Whole trees and snapshots with a successor in this merge become deltas against it —
    // a commit's own whole objects and older versions packed whole by earlier merges alike —
    // newest replacement first, so a base is settled before the older version that points
    // at it (a loop is refused by `depth_under`).
    let mut candidates: Vec<(u64, usize, Oid)> = Vec::new();
    for (i, (e, h)) in entries.iter().zip(&heads).enumerate() {
        if matches!(h.kind, OBJ_TREE | OBJ_BLOB) {
            if let Some(&(next, n)) = hints.next.get(&e.oid) {
                if seen.contains_key(&next) {
                    candidates.push((n, i, next));
                }
            }
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    let pending: HashSet<Oid> = candidates.iter().map(|c| entries[c.1].oid).collect();
    let wanted: HashSet<Oid> = candidates.iter().map(|c| c.2).collect();
    // The content of each object re-encoded so far that an older version is based on.
    let mut contents: HashMap<Oid, Vec<u8>> = HashMap::new();
    // What is based on what (copied deltas, then each re-encoding): a re-encoded object's
    // dependents move one level deeper with it.
    let mut children: HashMap<Oid, Vec<Oid>> = HashMap::new();
    for (o, b) in &base_of {
        children.entry(*b).or_default().push(*o);
    }
    let mut settled: HashSet<Oid> = HashSet::new();
    for (_, i, next) in candidates {
        let oid = entries[i].oid;
        settled.insert(oid);
        if pending.contains(&next) && !settled.contains(&next) {
            continue; // its successor is decided later: stays whole
        }
        let Some(depth) = depth_under(next, oid, &base_of) else { continue };
        if depth + 1 + height(oid, &children, 0) > MAX_DEPTH {
            continue;
        }
        let h = &heads[i];
        let Some(target) = inflate(&src.read(&entries[i])?[h.data_at..], h.size) else {
            return Err(MergeError(format!("object {oid} does not inflate to its size")));
        };
        // The base's content: kept from its own re-encoding, inflated from its entry when
        // it is whole, else read through the object store (a delta already).
        let base = match contents.get(&next) {
            Some(b) => b.clone(),
            None => {
                let j = seen[&next];
                let hb = &heads[j];
                match (&hb.base, &outs[j]) {
                    (None, Out::Raw) => inflate(&src.read(&entries[j])?[hb.data_at..], hb.size),
                    _ => read(next),
                }
                .ok_or_else(|| MergeError(format!("object {next} cannot be read")))?
            }
        };
        let records = if h.kind == OBJ_TREE { Records::TreeEntries } else { Records::Lines };
        let d = delta::encode(&base, &target, records);
        if d.len() * 2 >= target.len() {
            continue;
        }
        // Checked before it replaces a whole object (cheap next to the zlib it saves).
        if delta::apply(&base, &d).as_deref() != Some(&target[..]) {
            return Err(MergeError(format!("the delta of {oid} against {next} does not rebuild it")));
        }
        base_of.insert(oid, next);
        children.entry(next).or_default().push(oid);
        outs[i] = Out::Delta { base: next, delta: d };
        if wanted.contains(&oid) {
            contents.insert(oid, target);
        }
    }
    // The pack, to a temporary file.
    let tmp = dir.join(format!("tmp_vibesync_merge_{}.pack", std::process::id()));
    let result = write_pack(&tmp, &entries, &src, &heads, &outs);
    let (sum, table) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Synced, then renamed into place: the pack first, then its index.
    let name = pack::install(dir, &tmp, table, &sum, true)
        .map_err(fail(format_args!("put the merged pack in place in {}", dir.display())))?;
    let packed: HashSet<Oid> = entries.iter().map(|e| e.oid).collect();
    hints.forget(&packed);
    Ok(name)
}

/// How many deltas lie under `from` before a whole object; None when the chain passes
/// through `avoid` (a loop) or is longer than [`MAX_DEPTH`].
fn depth_under(from: Oid, avoid: Oid, base_of: &HashMap<Oid, Oid>) -> Option<usize> {
    let (mut at, mut depth) = (from, 0);
    while let Some(&b) = base_of.get(&at) {
        if at == avoid || depth > MAX_DEPTH {
            return None;
        }
        depth += 1;
        at = b;
    }
    (at != avoid).then_some(depth)
}

/// The longest chain of deltas based on `oid` (0: none), or more than [`MAX_DEPTH`].
fn height(oid: Oid, children: &HashMap<Oid, Vec<Oid>>, above: usize) -> usize {
    if above > MAX_DEPTH {
        return MAX_DEPTH + 1;
    }
    children.get(&oid).map_or(0, |cs| cs.iter().map(|c| 1 + height(*c, children, above + 1)).max().unwrap_or(0))
}

/// The source packs (path, open file), in the order of the merge's indexes.
struct Sources(Vec<(PathBuf, File)>);

impl Sources {
    /// An entry's bytes, checked against the CRC its index holds.
    fn read(&self, e: &Entry) -> Result<Vec<u8>, MergeError> {
        let (path, file) = &self.0[e.pack];
        let mut raw = vec![0u8; e.len];
        file.read_exact_at(&mut raw, e.offset).map_err(fail(format_args!("read {}", path.display())))?;
        if crc32fast::hash(&raw) != e.crc {
            return Err(MergeError(format!("{}: object {} does not match its CRC", path.display(), e.oid)));
        }
        Ok(raw)
    }
}

fn write_pack(
    path: &Path,
    entries: &[Entry],
    src: &Sources,
    heads: &[Header],
    outs: &[Out],
) -> Result<([u8; 20], Table), MergeError> {
    let file = File::create(path).map_err(fail(format_args!("create {}", path.display())))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    let mut sha = Sha1::new();
    let mut put = |b: &[u8]| -> Result<(), MergeError> {
        sha.update(b);
        w.write_all(b).map_err(fail(format_args!("write {}", path.display())))
    };
    let count = u32::try_from(entries.len()).map_err(|_| MergeError("more than 2^32 objects".into()))?;
    let mut head = Vec::with_capacity(12);
    head.extend_from_slice(b"PACK");
    head.extend_from_slice(&2u32.to_be_bytes());
    head.extend_from_slice(&count.to_be_bytes());
    put(&head)?;
    let mut offset = head.len() as u64;
    let mut table = Vec::with_capacity(entries.len());
    let mut entry = Vec::new();
    let mut z = Deflater::new();
    for ((e, h), out) in entries.iter().zip(heads).zip(outs) {
        let raw = match out {
            Out::Delta { .. } => Vec::new(),
            _ => src.read(e)?,
        };
        let bytes: &[u8] = match out {
            Out::Raw => &raw,
            Out::Rebased(base) => {
                entry.clear();
                put_header(&mut entry, OBJ_REF_DELTA, h.size);
                entry.extend_from_slice(base.as_bytes());
                entry.extend_from_slice(&raw[h.data_at..]);
                &entry
            }
            Out::Delta { base, delta } => {
                entry.clear();
                put_header(&mut entry, OBJ_REF_DELTA, delta.len());
                entry.extend_from_slice(base.as_bytes());
                z.append(delta, &mut entry);
                &entry
            }
        };
        put(bytes)?;
        table.push((e.oid, crc32fast::hash(bytes), offset));
        offset += bytes.len() as u64;
    }
    let sum: [u8; 20] = sha.finalize().into();
    w.write_all(&sum).map_err(fail(format_args!("write {}", path.display())))?;
    w.into_inner().map_err(|e| MergeError(format!("write {}: {}", path.display(), e.error())))?;
    Ok((sum, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackStream;
    use git2::{ObjectType, Repository};
    use std::process::{Command, Stdio};

    /// 40 versions of one snapshot, each a field changed from the one before.
    fn versions() -> Vec<Vec<u8>> {
        versions_n(40)
    }

    fn versions_n(n: u32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|v| {
                let fields: String =
                    (0..60).map(|f| format!("  \"field_{f}\": {},\n", if f == v % 60 { v * 7 } else { f })).collect();
                format!("{{\n{fields}  \"version\": {v}\n}}\n").into_bytes()
            })
            .collect()
    }

    fn idxs(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .collect();
        v.sort();
        v
    }

    /// Three packs as each writer makes them — git's own (offset deltas), libgit2's pack
    /// builder (deltas by id) and the audit's commit stream (whole objects, with the
    /// replacements a commit records) — merge into one pack that git verifies, in which
    /// every object reads back byte for byte, the stream's older versions are deltas of the
    /// next and the newest is whole.
    #[test]
    fn packs_from_every_writer_merge_into_one_that_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let pack_dir = tmp.path().join("objects/pack");
        let vs = versions();
        let ids: Vec<Oid> = vs.iter().map(|v| Oid::hash_object(ObjectType::Blob, v).unwrap()).collect();
        for v in &vs[..30] {
            repo.blob(v).unwrap();
        }
        // git pack-objects, offset deltas.
        let mut child = Command::new("git")
            .args(["pack-objects", "--delta-base-offset", "-q"])
            .arg(pack_dir.join("pack"))
            .env("GIT_DIR", tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let list: String = ids[..20].iter().map(|i| format!("{i}\n")).collect();
        child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
        // libgit2's pack builder.
        let mut pb = repo.packbuilder().unwrap();
        for id in &ids[20..30] {
            pb.insert_object(*id, None).unwrap();
        }
        let mut buf = git2::Buf::new();
        pb.write_buf(&mut buf).unwrap();
        let odb = repo.odb().unwrap();
        let mut w = odb.packwriter().unwrap();
        w.write_all(&buf).unwrap();
        w.commit().unwrap();
        // The audit's stream.
        stream_pack(&odb, &vs[30..]);
        // Only the packs hold the objects now.
        let loose = tmp.path().join("objects");
        for e in std::fs::read_dir(&loose).unwrap().flatten() {
            if e.file_name().len() == 2 {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
        let listing = |idx: &Path| {
            let out = Command::new("git").arg("verify-pack").arg("-v").arg(idx).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let sources = idxs(&pack_dir);
        assert_eq!(sources.len(), 3);
        assert!(sources.iter().map(|i| listing(i)).any(|l| l.contains("chain length")), "some source deltas");
        let mut hints = Hints::default();
        for w in ids.windows(2) {
            hints.record([(w[0], w[1])]);
        }
        let reader = Repository::open_bare(tmp.path()).unwrap();
        let odb2 = reader.odb().unwrap();
        let read = |id: Oid| odb2.read(id).ok().map(|o| o.data().to_vec());
        let name = merge(&pack_dir, &sources, &mut hints, &read).unwrap();
        for s in &sources {
            std::fs::remove_file(s).unwrap();
            std::fs::remove_file(s.with_extension("pack")).unwrap();
        }
        assert_eq!(idxs(&pack_dir), vec![pack_dir.join(format!("{name}.idx"))]);
        assert_eq!(hints.len(), 0, "the hints of packed objects are dropped");
        let l = listing(&pack_dir.join(format!("{name}.idx")));
        let is_delta =
            |id: &Oid| l.lines().find(|x| x.starts_with(&id.to_string())).unwrap().split_whitespace().count() > 5;
        assert!(ids[30..39].iter().all(is_delta), "the stream's older versions are deltas:\n{l}");
        assert!(!is_delta(&ids[39]), "the newest version is whole");
        let fresh = Repository::open_bare(tmp.path()).unwrap();
        for (id, v) in ids.iter().zip(&vs) {
            assert_eq!(fresh.find_blob(*id).unwrap().content(), &v[..], "object {id}");
        }
        let out = Command::new("git").args(["fsck", "--strict"]).env("GIT_DIR", tmp.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// One pack of the audit's stream holding `vs`, indexed by libgit2.
    fn stream_pack(odb: &git2::Odb<'_>, vs: &[Vec<u8>]) {
        let mut stream = PackStream::new();
        for v in vs {
            stream.add(Oid::hash_object(ObjectType::Blob, v).unwrap(), ObjectType::Blob, v);
        }
        let mut w = odb.packwriter().unwrap();
        w.write_all(&stream.finish().0).unwrap();
        w.commit().unwrap();
    }

    /// A version an earlier merge packed whole (the newest of its time, and the base of the
    /// versions before it) becomes a delta of its successor once a later roll-up holds both,
    /// unless that would make a chain longer than MAX_DEPTH; every version reads back.
    #[test]
    fn an_older_whole_version_becomes_a_delta_when_a_roll_up_meets_its_successor() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let pack_dir = tmp.path().join("objects/pack");
        let odb = repo.odb().unwrap();
        let vs = versions_n(60);
        let ids: Vec<Oid> = vs.iter().map(|v| Oid::hash_object(ObjectType::Blob, v).unwrap()).collect();
        let mut hints = Hints::default();
        let merge_all = |hints: &mut Hints| {
            let sources = idxs(&pack_dir);
            let reader = Repository::open_bare(tmp.path()).unwrap();
            let odb2 = reader.odb().unwrap();
            let read = |id: Oid| odb2.read(id).ok().map(|o| o.data().to_vec());
            let name = merge(&pack_dir, &sources, hints, &read).unwrap();
            for s in &sources {
                if !s.ends_with(format!("{name}.idx")) {
                    std::fs::remove_file(s).unwrap();
                    std::fs::remove_file(s.with_extension("pack")).unwrap();
                }
            }
            let idx = pack_dir.join(format!("{name}.idx"));
            let out = Command::new("git").arg("verify-pack").arg("-v").arg(&idx).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let is_delta = |l: &str, id: &Oid| {
            l.lines().find(|x| x.starts_with(&id.to_string())).unwrap().split_whitespace().count() > 5
        };
        let longest = |l: &str| {
            l.lines()
                .filter_map(|l| l.strip_prefix("chain length = "))
                .filter_map(|l| l.split(':').next()?.trim().parse::<usize>().ok())
                .max()
                .unwrap_or(0)
        };
        // Three roll-ups of 20 versions each, every version replaced by the next.
        let mut listings = Vec::new();
        for stage in 0..3 {
            let range = stage * 20..stage * 20 + 20;
            if stage > 0 {
                hints.record([(ids[range.start - 1], ids[range.start])]);
            }
            for k in range.clone() {
                stream_pack(&odb, &vs[k..k + 1]);
                if k + 1 < range.end {
                    hints.record([(ids[k], ids[k + 1])]);
                }
            }
            let l = merge_all(&mut hints);
            assert!(!is_delta(&l, &ids[range.end - 1]), "stage {stage}: the newest is whole");
            assert!(is_delta(&l, &ids[range.start]), "stage {stage}: the older versions are deltas");
            assert!(longest(&l) <= MAX_DEPTH, "stage {stage}: a chain of {}", longest(&l));
            listings.push(l);
        }
        // The second roll-up joined the first one's chain (19 + 1 + 19 deltas deep)...
        assert!(is_delta(&listings[1], &ids[19]), "the first merge's newest became a delta of its successor");
        assert_eq!(longest(&listings[1]), 39);
        // ...and the third could not without a chain of 59: that version stays whole.
        assert!(!is_delta(&listings[2], &ids[39]), "joining would pass MAX_DEPTH");
        let fresh = Repository::open_bare(tmp.path()).unwrap();
        for (id, v) in ids.iter().zip(&vs) {
            assert_eq!(fresh.find_blob(*id).unwrap().content(), &v[..], "object {id}");
        }
    }

    /// A byte changed inside an object of a source pack fails the merge (the CRC), and no
    /// pack is written.
    #[test]
    fn a_damaged_source_pack_is_not_merged() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let pack_dir = tmp.path().join("objects/pack");
        let odb = repo.odb().unwrap();
        for vs in versions().chunks(20) {
            stream_pack(&odb, vs);
        }
        let sources = idxs(&pack_dir);
        let pack = sources[1].with_extension("pack");
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[40] ^= 0x20;
        std::fs::write(&pack, &bytes).unwrap();
        let read = |_: Oid| None;
        let e = merge(&pack_dir, &sources, &mut Hints::default(), &read).expect_err("a damaged pack is refused");
        assert!(e.0.contains("CRC"), "{}", e.0);
        assert_eq!(idxs(&pack_dir), sources, "no pack written");
        assert!(std::fs::read_dir(&pack_dir)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("tmp_")));
    }
}
