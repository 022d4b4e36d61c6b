//! Git deltas between two versions of one audit path (docs/ARCHITECTURE.md,
//! `vibesync-audit`, "delta"): encoded here because no Rust crate encodes git's delta format
//! (gitoxide applies deltas only) and git2 does not expose libgit2's encoder.
//!
//! A version differs from the previous one at the same path in a few records: a tree in the
//! entries that changed (entries are sorted, so the rest is the same bytes in the same
//! order), a snapshot (pretty JSON, one field per line) in the lines of the fields that
//! changed. So the target is cut into records — tree entries, or lines — and each record
//! found in the base becomes a copy (runs of records that follow each other in the base
//! merge into one copy), the others literal inserts. One pass, no search window.
//!
//! # Format (git's delta, as `patch-delta.c` reads it)
//! The base's size and the result's size (7 bits per byte, low bits first, top bit "more
//! follows"); then instructions: `1xxxxxxx` copy (the low 4 bits say which of 4 offset
//! bytes follow, bits 4–6 which of 3 size bytes, little-endian, size 0 meaning 0x10000),
//! `0nnnnnnn` insert the next n (1–127) bytes.
//!
//! # Invariant
//! [`apply`] of [`encode`]'s output to the base gives the target, byte for byte (tested
//! here, and libgit2 reads every merged pack back in the crate's tests).

use std::collections::HashMap;

/// How the bytes of an object are cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Git tree entries: `<mode> <name>\0<20-byte id>`.
    TreeEntries,
    /// Lines, each with its `\n` (the last may have none).
    Lines,
}

/// Largest copy one instruction carries (3 size bytes).
const MAX_COPY: usize = 0x00ff_ffff;
/// Largest insert one instruction carries.
const MAX_INSERT: usize = 0x7f;

/// The delta that turns `base` into `target`.
pub fn encode(base: &[u8], target: &[u8], records: Records) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + target.len() / 8);
    put_size(&mut out, base.len());
    put_size(&mut out, target.len());
    // Each distinct record of the base at its first offset.
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    for r in cut(base, records) {
        index.entry(&base[r.clone()]).or_insert(r.start);
    }
    let mut copy: Option<(usize, usize)> = None; // base offset, length
    let mut insert: Vec<u8> = Vec::new();
    for r in cut(target, records) {
        let rec = &target[r];
        // The run goes on when the base continues with this very record (repeated
        // records, like a JSON closing brace, then stay in one copy).
        if let Some((off, len)) = copy.as_mut() {
            if base.get(*off + *len..*off + *len + rec.len()) == Some(rec) {
                *len += rec.len();
                continue;
            }
        }
        match index.get(rec) {
            Some(&at) => {
                flush_copy(&mut out, copy.take());
                flush_insert(&mut out, &mut insert);
                copy = Some((at, rec.len()));
            }
            None => {
                flush_copy(&mut out, copy.take());
                insert.extend_from_slice(rec);
            }
        }
    }
    flush_copy(&mut out, copy);
    flush_insert(&mut out, &mut insert);
    out
}

/// Apply `delta` to `base` (None: the delta is malformed or does not fit the base).
pub fn apply(base: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0;
    let base_len = get_size(delta, &mut at)?;
    let len = get_size(delta, &mut at)?;
    if base_len != base.len() {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    while at < delta.len() {
        let op = delta[at];
        at += 1;
        if op & 0x80 != 0 {
            let (mut off, mut size) = (0usize, 0usize);
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    off |= usize::from(*delta.get(at)?) << (8 * i);
                    at += 1;
                }
            }
            for i in 0..3 {
                if op & (0x10 << i) != 0 {
                    size |= usize::from(*delta.get(at)?) << (8 * i);
                    at += 1;
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            out.extend_from_slice(base.get(off..off.checked_add(size)?)?);
        } else if op != 0 {
            let n = usize::from(op);
            out.extend_from_slice(delta.get(at..at + n)?);
            at += n;
        } else {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

fn put_size(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get_size(d: &[u8], at: &mut usize) -> Option<usize> {
    let (mut n, mut shift) = (0usize, 0u32);
    loop {
        let b = *d.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn flush_copy(out: &mut Vec<u8>, copy: Option<(usize, usize)>) {
    let Some((mut off, mut len)) = copy else { return };
    while len > 0 {
        let n = len.min(MAX_COPY);
        let at = out.len();
        out.push(0x80);
        let mut op = 0x80u8;
        for i in 0..4 {
            let b = ((off >> (8 * i)) & 0xff) as u8;
            if b != 0 {
                op |= 1 << i;
                out.push(b);
            }
        }
        for i in 0..3 {
            let b = ((n >> (8 * i)) & 0xff) as u8;
            if b != 0 {
                op |= 0x10 << i;
                out.push(b);
            }
        }
        out[at] = op;
        off += n;
        len -= n;
    }
}

fn flush_insert(out: &mut Vec<u8>, insert: &mut Vec<u8>) {
    for chunk in insert.chunks(MAX_INSERT) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    insert.clear();
}

/// The records of `data`, as byte ranges that tile it. A tree that does not parse is cut
/// into lines instead (still a correct delta, only a bigger one).
fn cut(data: &[u8], records: Records) -> Vec<std::ops::Range<usize>> {
    if records == Records::TreeEntries {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let Some(nul) = data[at..].iter().position(|&b| b == 0) else { break };
            let end = at + nul + 1 + 20;
            if end > data.len() {
                break;
            }
            out.push(at..end);
            at = end;
        }
        if at == data.len() {
            return out;
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push(start..data.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, u8)]) -> Vec<u8> {
        let mut t = Vec::new();
        for (name, id) in entries {
            t.extend_from_slice(format!("100644 {name}\0").as_bytes());
            t.extend_from_slice(&[*id; 20]);
        }
        t
    }

    fn roundtrip(base: &[u8], target: &[u8], records: Records) -> usize {
        let d = encode(base, target, records);
        assert_eq!(apply(base, &d).as_deref(), Some(target), "delta does not rebuild the target");
        d.len()
    }

    /// A tree with one entry changed, one added and one removed is a few copies and the new
    /// entries: far smaller than the tree.
    #[test]
    fn a_tree_version_is_a_small_delta() {
        let names: Vec<String> = (0..200).map(|i| format!("{i:08x}-0000-4000-8000-000000000000.json")).collect();
        let base: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let mut next = base.clone();
        next[57].1 = 2;
        next.remove(120);
        next.insert(150, ("99999999-new.json", 3));
        let (b, t) = (tree(&base), tree(&next));
        let n = roundtrip(&b, &t, Records::TreeEntries);
        assert!(n < 200, "delta of {n} bytes for a {}-byte tree", t.len());
    }

    /// Pretty JSON with two numbers changed far apart: two lines inserted, the rest copied.
    #[test]
    fn a_snapshot_version_is_a_small_delta() {
        let mut lines: Vec<String> = (0..300).map(|i| format!("  \"field_{i}\": {i}.5,\n")).collect();
        lines.push("  }\n".into());
        lines.push("  }\n".into());
        let base = lines.concat().into_bytes();
        lines[3] = "  \"field_3\": 9.25,\n".into();
        lines[280] = "  \"field_280\": -1,\n".into();
        let target = lines.concat().into_bytes();
        let n = roundtrip(&base, &target, Records::Lines);
        assert!(n < 80, "delta of {n} bytes");
    }

    /// Unrelated bytes, empty sides, a tree that does not parse, inserts over 127 bytes and
    /// copies over 64 KiB all rebuild exactly.
    #[test]
    fn any_pair_rebuilds_exactly() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let mut big2 = big.clone();
        big2.extend_from_slice(&[b'x'; 1000]);
        let cases: Vec<(Vec<u8>, Vec<u8>, Records)> = vec![
            (b"".to_vec(), b"".to_vec(), Records::Lines),
            (b"".to_vec(), b"abc\ndef".to_vec(), Records::Lines),
            (b"abc\n".to_vec(), b"".to_vec(), Records::Lines),
            (b"no newline at all".to_vec(), b"no newline at all!".to_vec(), Records::Lines),
            (b"100644 a\0short".to_vec(), b"100644 b\0short, not a tree".to_vec(), Records::TreeEntries),
            (vec![7; 300], vec![9; 300], Records::Lines),
            (big.clone(), big2, Records::Lines),
            (big, b"line 5\nline 4\nline 5\n".to_vec(), Records::Lines),
        ];
        for (b, t, r) in cases {
            roundtrip(&b, &t, r);
        }
    }

    /// A delta is refused by `apply` for a base of another size, and a truncated one too.
    #[test]
    fn apply_checks_what_it_is_given() {
        let d = encode(b"a\nb\n", b"a\nc\n", Records::Lines);
        assert_eq!(apply(b"a\nb\nc\n", &d), None);
        assert_eq!(apply(b"a\nb\n", &d[..d.len() - 1]), None);
    }
}
