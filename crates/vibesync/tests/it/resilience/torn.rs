//! Torn writes and log damage at the daemon level, on a WAL the real daemon wrote.
//!
//! * For EVERY byte offset inside the last record of the segment, a copy of the data dir is
//!   cut there and booted (in-process through `vibesync_daemon::open` for speed; through the
//!   binary for a few offsets): the torn bytes land in `<data_dir>/quarantine/`, the segment
//!   keeps exactly the bytes before the torn record, every registered uuid is still there.
//! * A zero-filled tail is a torn tail too: verify names file and offset, boot quarantines it
//!   and logs file and offset.
//! * A bit flip mid-log, a deleted line and two swapped lines: `vibesync verify` reports the
//!   file and the byte offset of the first bad record, and boot refuses with the same.

use std::path::{Path, PathBuf};

use serde_json::json;
use vibesync_daemon::{Config, ServeOptions};

use super::editor::*;
use crate::common::*;

/// A data dir written by the real daemon: registrations, a synced object, a tombstone.
/// Returns (dir guard, data path, registered (uuid, name)).
fn daemon_written(dir: &Path) -> (PathBuf, Vec<(String, String)>) {
    let data = dir.join("orig");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let mut regs = vec![];
    for i in 0..6 {
        let (u, n) = (new_uuid(), format!("Torn{i}"));
        let ack = register(&mut c, &format!("r{i}"), &[(&u, "object", &n)]);
        assert_eq!(statuses(&ack), ["registered"]);
        regs.push((u, n));
    }
    let gone = new_uuid();
    register(&mut c, "g", &[(&gone, "object", "Gone")]);
    c.request(&json!({"type":"tombstone","request_id":"t","uuids":[gone]})).unwrap();
    drop(c);
    assert_eq!(d.stop(), Some(0));
    (data, regs)
}

/// Byte range [start, end) of the last line of `seg` (end includes the newline).
fn last_record(bytes: &[u8]) -> (usize, usize) {
    assert_eq!(*bytes.last().unwrap(), b'\n');
    let start = bytes[..bytes.len() - 1].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    (start, bytes.len())
}

fn quarantined(data: &Path) -> Vec<(String, Vec<u8>)> {
    match std::fs::read_dir(data.join("quarantine")) {
        Ok(rd) => rd
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
            })
            .collect(),
        Err(_) => vec![],
    }
}

fn in_process_config(data: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.storage.data_dir = data.display().to_string();
    cfg.audit.enabled = false; // the audit is derived data; the binary runs below cover it
    cfg
}

#[test]
fn torn_last_record_at_every_offset_is_quarantined_and_nothing_before_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (orig, regs) = daemon_written(dir.path());
    let seg = segments(&orig).pop().unwrap();
    let seg_name = seg.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&seg).unwrap();
    let (start, end) = last_record(&bytes);
    assert!(end - start > 100, "the last record is a real record");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let binary_offsets = [start + 1, (start + end) / 2, end - 1];
    let started = std::time::Instant::now();
    for cut in start + 1..end {
        let data = dir.path().join(format!("cut{cut}"));
        copy_dir(&orig, &data);
        let copy_seg = data.join("wal").join(&seg_name);
        std::fs::OpenOptions::new().write(true).open(&copy_seg).unwrap().set_len(cut as u64).unwrap();

        if binary_offsets.contains(&cut) {
            let mut d = Daemon::start(&data);
            let log = plain(&d.stderr_log());
            assert!(
                log.contains("torn WAL tail moved to quarantine") && log.contains(&format!("offset={start}")),
                "boot reports the torn tail with file and offset {start}: {log}"
            );
            let mut c = d.client("blender");
            for (u, n) in &regs {
                assert_eq!(statuses(&register(&mut c, "chk", &[(u, "object", n)])), ["unchanged"], "cut at {cut}");
            }
            drop(c);
            assert_eq!(d.stop(), Some(0));
            let (code, out, err) = verify(&data);
            assert_eq!(code, 0, "cut at {cut}: verify after recovery:\n{out}{err}");
        } else {
            let daemon = vibesync_daemon::open(in_process_config(&data), &ServeOptions::default())
                .unwrap_or_else(|e| panic!("cut at {cut}: boot refused a torn tail: {e}"));
            for (u, _) in &regs {
                let e = daemon.stores().registry.lookup("demo", u).unwrap();
                assert!(e.is_some(), "cut at {cut}: {u} lost");
            }
            rt.block_on(daemon.shutdown());
        }
        let now = std::fs::read(&copy_seg).unwrap();
        assert!(now.len() >= start, "cut at {cut}: records before the torn one were cut");
        assert_eq!(now[..start], bytes[..start], "cut at {cut}: bytes before the torn record changed");
        let q = quarantined(&data);
        let torn: Vec<_> = q.iter().filter(|(n, _)| n.ends_with(".torn")).collect();
        assert_eq!(torn.len(), 1, "cut at {cut}: one torn file in quarantine: {q:?}");
        assert!(torn[0].0.contains(&format!(".at-{start}.")), "cut at {cut}: named by its offset: {}", torn[0].0);
        assert_eq!(torn[0].1, bytes[start..cut], "cut at {cut}: the quarantine holds exactly the torn bytes");
        std::fs::remove_dir_all(&data).unwrap();
    }
    eprintln!("torn tail: {} offsets booted in {:.1} s", end - start - 1, started.elapsed().as_secs_f64());
}

/// verify exits 1 naming file and offset; boot refuses naming the same (or, for a torn
/// tail, repairs it and logs it).
fn assert_reported(data: &Path, seg_name: &str, offset: usize, boot_refuses: bool) {
    let (code, out, err) = verify(data);
    assert_eq!(code, 1, "verify must report the damage: {out}{err}");
    assert!(
        out.contains(seg_name) && out.contains(&format!("at byte {offset}")),
        "verify names {seg_name} and byte {offset}:\n{out}"
    );
    if boot_refuses {
        let e = Daemon::try_start(data, &[], "127.0.0.1:0").err().expect("boot must refuse a damaged log");
        assert!(
            e.contains(seg_name) && e.contains(&format!("at byte {offset}")) && e.contains("--repair"),
            "boot names file, byte {offset} and the remedy: {e}"
        );
    }
}

#[test]
fn zero_tail_flip_delete_and_reorder_are_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (orig, _) = daemon_written(dir.path());
    let seg = segments(&orig).pop().unwrap();
    let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(&seg).unwrap();
    let starts: Vec<usize> =
        std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    let lines: Vec<&[u8]> = starts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
    assert!(lines.len() > 10, "enough records: {}", lines.len());
    let mid = lines.len() / 2;

    let case = |name: &str, f: &dyn Fn(&mut Vec<u8>)| -> PathBuf {
        let data = dir.path().join(name);
        copy_dir(&orig, &data);
        let p = data.join("wal").join(&seg_name);
        let mut b = std::fs::read(&p).unwrap();
        f(&mut b);
        std::fs::write(&p, &b).unwrap();
        data
    };

    // 1. Zero-filled tail (a preallocated block after the last record): a torn tail.
    let data = case("zeros", &|b| b.extend(std::iter::repeat_n(0u8, 4096)));
    assert_reported(&data, &seg_name, bytes.len(), false);
    let mut d = Daemon::start(&data);
    let log = plain(&d.stderr_log());
    assert!(
        log.contains("torn WAL tail moved to quarantine") && log.contains(&format!("offset={}", bytes.len())),
        "boot reports the zero tail with its offset: {log}"
    );
    assert_eq!(ping_then_stop(&mut d), Some(0));
    assert_eq!(std::fs::read(data.join("wal").join(&seg_name)).unwrap()[..bytes.len()], bytes[..]);
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "clean after the zero tail was quarantined: {out}{err}");

    // 1b. The last record overwritten with zeros (a never-written block): torn tail too.
    let (ls, le) = (starts[starts.len() - 2], bytes.len());
    let data = case("zeroed-last", &|b| b[ls..le].iter_mut().for_each(|x| *x = 0));
    assert_reported(&data, &seg_name, ls, false);
    let mut d = Daemon::start(&data);
    assert_eq!(ping_then_stop(&mut d), Some(0));
    assert!(quarantined(&data).iter().any(|(n, c)| n.contains(&format!(".at-{ls}.")) && c.len() == le - ls));

    // 2. A bit flip in a record in the middle of the log.
    let at = starts[mid] + 30;
    let data = case("flip", &|b| b[at] ^= 0x10);
    assert_reported(&data, &seg_name, starts[mid], true);

    // 3. A deleted line: the next record's seq/prev no longer continue the chain.
    let data = case("delete", &|b| {
        b.drain(starts[mid]..starts[mid + 1]);
    });
    assert_reported(&data, &seg_name, starts[mid], true);

    // 4. Two lines swapped: the first moved record breaks the chain at the earlier offset.
    let data = case("reorder", &|b| {
        let mut v = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let l = if i == mid {
                lines[mid + 1]
            } else if i == mid + 1 {
                lines[mid]
            } else {
                l
            };
            v.extend_from_slice(l);
        }
        *b = v;
    });
    assert_reported(&data, &seg_name, starts[mid], true);

    // Nothing above modified the damaged copies that boot refused.
    for name in ["flip", "delete", "reorder"] {
        assert!(quarantined(&dir.path().join(name)).is_empty(), "{name}: a refused boot changes nothing");
    }
}
