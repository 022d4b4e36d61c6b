//! The packfile of one audit commit and its index, encoded here (docs/ARCHITECTURE.md,
//! `vibesync-audit`, "pack").
//!
//! libgit2 can build a pack only from objects its object store already holds, and every
//! object written to the store first asks whether it exists, which on a miss re-reads the
//! pack directory (`git_odb__freshen` → `git_odb_refresh`): one directory scan per new blob.
//! With a blob per touched uuid that was the audit's largest cost (27 % of the audit
//! thread when registering in bulk, docs/BENCHMARKS.md "Daemon: round trips on loopback",
//! session 11). So a commit's blobs
//! are never written to the object store: their ids are computed (`Oid::hash_object`), the
//! trees name them, and their bytes go straight into this stream beside the few trees and
//! the commit (read from the commit's in-memory store). The stream and its index (git's
//! version 2, from the ids and entry CRCs the stream kept) are written to the pack
//! directory, the index last, which is what makes the pack part of the store
//! ([`PackStream::store`]; module `merge` puts its merged packs in place the same way).
//! libgit2's indexer, used before, inflated and hashed every object again. Tests check the
//! index byte for byte against the one libgit2's indexer writes, and the stream against the
//! indexer itself.
//!
//! # Format (git's pack format, version 2, no deltas)
//! `"PACK"`, version 2 and the object count (big-endian u32 each); per object a header (type
//! in bits 4–6 of the first byte, the size in 4 bits there and 7 bits in each following
//! byte, low bits first, the top bit meaning "more follows") and the zlib stream of its
//! bytes; then the SHA-1 of everything before it.
//!
//! # Invariant
//! An object is added at most once (its id is remembered), and [`PackStream::finish`] is the
//! only way out, so a stream always carries the count it says and a trailer over all of it;
//! its index lists every object once, at the offset and with the CRC of its entry.

use std::collections::HashSet;
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Oid};
use sha1::{Digest, Sha1};

/// zlib level 1: snapshots are small JSON files and trees of hashes; level 6 (libgit2's)
/// cost about three times the CPU for a few per cent of size.
const LEVEL: u32 = 1;

/// Entry types of git's pack format.
pub(crate) const OBJ_COMMIT: u8 = 1;
pub(crate) const OBJ_TREE: u8 = 2;
pub(crate) const OBJ_BLOB: u8 = 3;
pub(crate) const OBJ_TAG: u8 = 4;
/// A delta whose base is named by its distance back in the same pack.
pub(crate) const OBJ_OFS_DELTA: u8 = 6;
/// A delta whose base is named by its id (in the same pack).
pub(crate) const OBJ_REF_DELTA: u8 = 7;

/// An entry's header: its type, the size it announces, and where its zlib data starts;
/// for deltas, the base (an offset back in the same pack, or an id).
pub(crate) struct Header {
    pub kind: u8,
    pub size: usize,
    pub data_at: usize,
    pub base: Option<Base>,
}

pub(crate) enum Base {
    Offset(u64),
    Id(Oid),
}

/// The header of the entry at `offset` whose bytes start `raw` (None: not a valid one).
pub(crate) fn parse_header(raw: &[u8], offset: u64) -> Option<Header> {
    let mut at = 0;
    let mut c = *raw.first()?;
    at += 1;
    let kind = (c >> 4) & 7;
    let mut size = usize::from(c & 0x0f);
    let mut shift = 4;
    while c & 0x80 != 0 {
        c = *raw.get(at)?;
        at += 1;
        size |= usize::from(c & 0x7f).checked_shl(shift)?;
        shift += 7;
    }
    let base = match kind {
        OBJ_OFS_DELTA => {
            let mut c = *raw.get(at)?;
            at += 1;
            let mut back = u64::from(c & 0x7f);
            while c & 0x80 != 0 {
                c = *raw.get(at)?;
                at += 1;
                back = ((back + 1) << 7) | u64::from(c & 0x7f);
            }
            Some(Base::Offset(offset.checked_sub(back)?))
        }
        OBJ_REF_DELTA => {
            let id = Oid::from_bytes(raw.get(at..at + 20)?).ok()?;
            at += 20;
            Some(Base::Id(id))
        }
        OBJ_COMMIT..=OBJ_TAG => None,
        _ => return None,
    };
    Some(Header { kind, size, data_at: at, base })
}

/// Append an entry header: type `kind` (`OBJ_*`) and the size of the object (or delta).
pub(crate) fn put_header(out: &mut Vec<u8>, kind: u8, mut size: usize) {
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size != 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
}

/// A pack index (version 2): ids in sorted order with each one's CRC and offset.
pub(crate) struct PackIndex {
    pub oids: Vec<Oid>,
    pub crcs: Vec<u32>,
    pub offsets: Vec<u64>,
}

/// How many objects the index at `idx` lists (None: not a readable version-2 index). Reads
/// the header and fan-out table only.
pub(crate) fn index_count(idx: &Path) -> Option<usize> {
    let mut head = [0u8; IDX_HEAD];
    std::io::Read::read_exact(&mut std::fs::File::open(idx).ok()?, &mut head).ok()?;
    index_head_count(&head)
}

/// Bytes of a version-2 index before its ids: magic, version, fan-out table.
const IDX_HEAD: usize = 8 + 256 * 4;
const IDX_MAGIC: [u8; 8] = [0xff, b't', b'O', b'c', 0, 0, 0, 2];

/// The object count a version-2 index's head gives (None: not one).
fn index_head_count(b: &[u8]) -> Option<usize> {
    if b.get(..8)? != IDX_MAGIC {
        return None;
    }
    Some(u32::from_be_bytes(b.get(IDX_HEAD - 4..IDX_HEAD)?.try_into().ok()?) as usize)
}

/// The whole index at `idx` (Err: what is wrong, naming the file).
pub(crate) fn read_index(idx: &Path) -> Result<PackIndex, String> {
    let b = std::fs::read(idx).map_err(|e| format!("read {}: {e}", idx.display()))?;
    let bad = || format!("{} is not a version-2 pack index", idx.display());
    let n = index_head_count(&b).ok_or_else(bad)?;
    let ids_at = IDX_HEAD;
    let crcs_at = ids_at + n * 20;
    let offs_at = crcs_at + n * 4;
    let large_at = offs_at + n * 4;
    let be32 = |at: usize| b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap()));
    let mut oids = Vec::with_capacity(n);
    let mut crcs = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(n);
    for i in 0..n {
        oids.push(Oid::from_bytes(b.get(ids_at + i * 20..ids_at + i * 20 + 20).ok_or_else(bad)?).map_err(|_| bad())?);
        crcs.push(be32(crcs_at + i * 4).ok_or_else(bad)?);
        let off = be32(offs_at + i * 4).ok_or_else(bad)?;
        offsets.push(if off & 0x8000_0000 != 0 {
            let at = large_at + (off & 0x7fff_ffff) as usize * 8;
            u64::from_be_bytes(b.get(at..at + 8).ok_or_else(bad)?.try_into().unwrap())
        } else {
            u64::from(off)
        });
    }
    Ok(PackIndex { oids, crcs, offsets })
}

/// One zlib stream per object, from one compressor reset between objects: a new encoder
/// per object allocated and initialised zlib's state each time (~270 KB), which was most
/// of the audit's compression time for small snapshots.
pub(crate) struct Deflater(Compress);

impl Deflater {
    pub fn new() -> Deflater {
        Deflater(Compress::new(Compression::new(LEVEL), true))
    }

    /// Append the zlib stream of `data` to `out`.
    pub fn append(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.0.reset();
        let start = self.0.total_in();
        loop {
            out.reserve(data.len() / 2 + 64);
            let read = (self.0.total_in() - start) as usize;
            match self.0.compress_vec(&data[read..], out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return,
                Ok(_) => {}
                Err(e) => unreachable!("zlib refused a complete input with room to write: {e}"),
            }
        }
    }
}

/// (id, CRC-32 of its entry, offset of its entry) of each object in a pack.
pub(crate) type Table = Vec<(Oid, u32, u64)>;

pub(crate) struct PackStream {
    buf: Vec<u8>,
    ids: HashSet<Oid>,
    z: Deflater,
    table: Table,
}

impl PackStream {
    pub fn new() -> PackStream {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(b"PACK");
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes()); // the count, set by `finish`
        PackStream { buf, ids: HashSet::new(), z: Deflater::new(), table: Vec::new() }
    }

    /// Add object `id` (`kind`, `data`) unless it is already in the stream.
    pub fn add(&mut self, id: Oid, kind: ObjectType, data: &[u8]) {
        if !self.ids.insert(id) {
            return;
        }
        let code: u8 = match kind {
            ObjectType::Commit => OBJ_COMMIT,
            ObjectType::Tree => OBJ_TREE,
            ObjectType::Blob => OBJ_BLOB,
            ObjectType::Tag => OBJ_TAG,
            ObjectType::Any => unreachable!("an object read from a store has a concrete type"),
        };
        let at = self.buf.len();
        put_header(&mut self.buf, code, data.len());
        self.z.append(data, &mut self.buf);
        self.table.push((id, crc32fast::hash(&self.buf[at..]), at as u64));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The whole pack (the count filled in, the SHA-1 trailer appended) and its table.
    pub fn finish(mut self) -> (Vec<u8>, Table) {
        let count = u32::try_from(self.ids.len()).expect("fewer than 2^32 objects per commit");
        self.buf[8..12].copy_from_slice(&count.to_be_bytes());
        let sum = Sha1::digest(&self.buf);
        self.buf.extend_from_slice(&sum);
        (self.buf, self.table)
    }

    /// Write the pack and its index into the pack directory `dir`; returns the pack's name.
    /// Not synced, as libgit2's indexer did not sync it (the audit is derived data, and
    /// boot finds a lost tail, docs/WAL.md §9). The ids and entries are this stream's own,
    /// so nothing is inflated or hashed again (libgit2's indexer did both: a fifth of the
    /// audit's time in bulk registration, docs/BENCHMARKS.md "Disk use per store").
    pub fn store(self, dir: &Path) -> std::io::Result<String> {
        let (bytes, table) = self.finish();
        let tmp = dir.join(format!("tmp_vibesync_commit_{}.pack", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        let sum: [u8; 20] = bytes[bytes.len() - 20..].try_into().expect("a pack ends with its 20-byte checksum");
        install(dir, &tmp, table, &sum, false)
    }
}

/// Put the finished pack at `tmp` in place as `pack-<checksum>` with its index (git's
/// version 2, written here): the pack first, then the index, which is what makes it part of
/// the store. `sync`: both files and the directory are synced first. Returns the name.
pub(crate) fn install(dir: &Path, tmp: &Path, table: Table, sum: &[u8; 20], sync: bool) -> std::io::Result<String> {
    let name = format!("pack-{}", sum.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let tmp_idx = tmp.with_extension("idx");
    let put = || -> std::io::Result<()> {
        write_index(&tmp_idx, table, sum, sync)?;
        if sync {
            std::fs::File::open(tmp)?.sync_all()?;
        }
        std::fs::rename(tmp, dir.join(format!("{name}.pack")))?;
        std::fs::rename(&tmp_idx, dir.join(format!("{name}.idx")))?;
        if sync {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    put().inspect_err(|_| {
        let _ = std::fs::remove_file(tmp);
        let _ = std::fs::remove_file(&tmp_idx);
    })?;
    Ok(name)
}

/// Git's pack index, version 2: fan-out, sorted ids, CRCs, offsets (those past 2 GiB in a
/// table of their own), the pack's checksum, then the index's own.
fn write_index(path: &Path, mut table: Table, pack_sum: &[u8; 20], sync: bool) -> std::io::Result<()> {
    table.sort_by_key(|e| e.0);
    let mut b = Vec::with_capacity(8 + 1024 + table.len() * 28 + 40);
    b.extend_from_slice(&[0xff, b't', b'O', b'c', 0, 0, 0, 2]);
    let mut fan = [0u32; 256];
    for (oid, _, _) in &table {
        fan[usize::from(oid.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for n in fan {
        total += n;
        b.extend_from_slice(&total.to_be_bytes());
    }
    for (oid, _, _) in &table {
        b.extend_from_slice(oid.as_bytes());
    }
    for (_, crc, _) in &table {
        b.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, _, off) in &table {
        if *off < 0x8000_0000 {
            b.extend_from_slice(&(*off as u32).to_be_bytes());
        } else {
            b.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
            large.push(*off);
        }
    }
    for off in large {
        b.extend_from_slice(&off.to_be_bytes());
    }
    b.extend_from_slice(pack_sum);
    let sum = Sha1::digest(&b);
    b.extend_from_slice(&sum);
    let mut f = std::fs::File::create(path)?;
    std::io::Write::write_all(&mut f, &b)?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A pack of a blob, a tree naming it and a commit (sizes over 15 and over 2,047 bytes,
    /// so the size header takes one, two and three bytes) is accepted by libgit2's indexer,
    /// and every object reads back byte for byte.
    #[test]
    fn a_stream_is_indexed_by_libgit2_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let small = b"tiny".to_vec();
        let medium = vec![b'a'; 300];
        let big: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut pack = PackStream::new();
        let mut ids = Vec::new();
        for data in [&small, &medium, &big] {
            let id = Oid::hash_object(ObjectType::Blob, data).unwrap();
            pack.add(id, ObjectType::Blob, data);
            pack.add(id, ObjectType::Blob, data); // a second add is ignored
            ids.push((id, data.clone()));
        }
        assert_eq!(pack.len(), 3);
        let odb = repo.odb().unwrap();
        let mut w = odb.packwriter().unwrap();
        w.write_all(&pack.finish().0).unwrap();
        w.commit().unwrap();
        let odb = repo.odb().unwrap();
        for (id, data) in ids {
            let o = odb.read(id).unwrap();
            assert_eq!(o.kind(), ObjectType::Blob);
            assert_eq!(o.data(), &data[..]);
        }
    }

    /// One compressor, reset between objects, gives each its own complete zlib stream —
    /// small, empty and incompressible ones (more output than the first reservation).
    #[test]
    fn the_reused_compressor_writes_one_whole_stream_per_object() {
        use std::io::Read;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let inputs: Vec<Vec<u8>> = vec![b"{}".to_vec(), Vec::new(), noise, b"tiny".repeat(1000)];
        let mut z = Deflater::new();
        for data in &inputs {
            let mut out = b"prefix".to_vec();
            z.append(data, &mut out);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&out[6..]).read_to_end(&mut back).unwrap();
            assert_eq!(&back, data);
        }
    }

    /// `store` writes the index libgit2's indexer writes for the same pack, byte for byte,
    /// and git verifies the pack and index it put in place.
    #[test]
    fn store_writes_the_index_libgit2_writes() {
        let objects: Vec<Vec<u8>> =
            (0..300u32).map(|i| format!("{{\n  \"n\": {i}\n}}\n").repeat(1 + i as usize % 7).into_bytes()).collect();
        let stream = || {
            let mut p = PackStream::new();
            for o in &objects {
                p.add(Oid::hash_object(ObjectType::Blob, o).unwrap(), ObjectType::Blob, o);
            }
            p
        };
        let ours = tempfile::tempdir().unwrap();
        git2::Repository::init_bare(ours.path()).unwrap();
        let dir = ours.path().join("objects/pack");
        let name = stream().store(&dir).unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(theirs.path()).unwrap();
        let odb = repo.odb().unwrap();
        let mut w = odb.packwriter().unwrap();
        w.write_all(&stream().finish().0).unwrap();
        w.commit().unwrap();
        let idx = |d: &Path| std::fs::read(d.join(format!("{name}.idx"))).unwrap();
        assert_eq!(idx(&dir), idx(&theirs.path().join("objects/pack")), "the same index");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.starts_with("tmp_")), "{names:?}");
        let out =
            std::process::Command::new("git").arg("verify-pack").arg(dir.join(format!("{name}.idx"))).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let repo = git2::Repository::open_bare(ours.path()).unwrap();
        for o in &objects {
            assert_eq!(repo.find_blob(Oid::hash_object(ObjectType::Blob, o).unwrap()).unwrap().content(), &o[..]);
        }
    }

    /// A damaged stream (one byte of an object changed) is refused by the indexer.
    #[test]
    fn a_damaged_stream_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let data = b"hello, audit".to_vec();
        let mut pack = PackStream::new();
        pack.add(Oid::hash_object(ObjectType::Blob, &data).unwrap(), ObjectType::Blob, &data);
        let mut bytes = pack.finish().0;
        bytes[14] ^= 0x55;
        let odb = repo.odb().unwrap();
        let mut w = odb.packwriter().unwrap();
        let written = w.write_all(&bytes).is_ok();
        assert!(!written || w.commit().is_err(), "a damaged pack must not be indexed");
    }
}
