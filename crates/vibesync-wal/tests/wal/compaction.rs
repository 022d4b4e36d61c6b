//! Compaction (docs/WAL.md §11): covered segments go, `wal/anchor.json` keeps the chain
//! verifiable; a crash at any point of a compaction leaves a log that opens; a damaged
//! anchor or a missing segment it does not cover is refused, naming the file and the fix.

use std::path::Path;

use serde_json::json;
use vibesync_wal::{
    compact, load_anchor, plan_compaction, CompactStop, Phase, ProblemKind, Reader, Record, ResumeAt, Wal, WalError,
    ANCHOR_FILE,
};

use crate::common::*;

/// A log of many small segments (256-byte rotation: about one append per segment).
fn many_segments(data: &Path) -> Vec<Record> {
    let all = write_sample_log(data, 256);
    assert!(segments(data).len() >= 8, "{} segments", segments(data).len());
    all
}

fn compact_upto(data: &Path, upto: u64, stop: CompactStop) -> vibesync_wal::Compacted {
    let wal = data.join("wal");
    let plan = plan_compaction(&wal, upto).unwrap().expect("something to compact");
    let carry: Vec<Record> = records_in(data).into_iter().filter(|r| r.phase == Phase::Rollback).collect();
    compact(&wal, &plan, carry, json!({"note": "opaque"}), None, stop).unwrap()
}

#[test]
fn compaction_removes_covered_segments_and_the_kept_log_chains_to_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let all = many_segments(dir.path());
    let before = segments(dir.path());
    let c = compact_upto(dir.path(), 20, CompactStop::Never);
    assert!(c.anchor.seq <= 20 && c.anchor.seq >= 10, "anchor at a segment boundary at or below 20: {}", c.anchor.seq);
    let removed_h = &all[(c.anchor.seq - 1) as usize].h;
    assert_eq!(&c.anchor.h, removed_h, "the anchor holds the h of the last removed record");
    let after = segments(dir.path());
    assert_eq!(after.len(), before.len() - c.removed.len());
    assert!(c.removed.iter().all(|p| !p.exists()));
    // The reader starts after the anchor; the chain is checked from it; nothing is a problem.
    let read = records_in(dir.path());
    assert_eq!(read.first().unwrap().seq, c.anchor.seq + 1);
    assert_eq!(read.first().unwrap().prev, c.anchor.h);
    assert_eq!(read.len() as u64, all.len() as u64 - c.anchor.seq);
    assert!(vibesync_wal::verify(dir.path().join("wal")).unwrap().is_empty());
    assert_eq!(Reader::open(dir.path().join("wal")).unwrap().anchor().map(|a| a.seq), Some(c.anchor.seq));
    // The carried records and the opaque base come back as written.
    let a = load_anchor(&dir.path().join("wal")).unwrap().unwrap();
    assert_eq!(a.base, json!({"note": "opaque"}));
    assert!(a.carry.iter().all(|r| r.phase == Phase::Rollback));
    // Recovery opens it, keeps the open transactions after the anchor, and appends continue.
    let (wal, rec) = open(dir.path(), 256);
    assert_eq!(rec.anchor.as_ref().map(|a| a.seq), Some(c.anchor.seq));
    assert_eq!(rec.last_seq, all.last().unwrap().seq);
    assert_eq!(rec.records, all.len() as u64 - c.anchor.seq);
    let more = wal.append_blocking(vec![draft("next", Phase::Step, &[U1])]).unwrap();
    assert_eq!(more[0].prev, all.last().unwrap().h);
    wal.close_blocking().unwrap();
    // A second compaction moves the anchor on and counts every removed segment.
    let c2 = compact_upto(dir.path(), 30, CompactStop::Never);
    assert!(c2.anchor.seq > c.anchor.seq);
    assert_eq!(c2.anchor.removed_segments, (c.removed.len() + c2.removed.len()) as u64);
    assert!(vibesync_wal::verify(dir.path().join("wal")).unwrap().is_empty());
    // The current segment is never removed, however far `upto` goes.
    let wal_dir = dir.path().join("wal");
    if let Some(p) = plan_compaction(&wal_dir, u64::MAX).unwrap() {
        compact(&wal_dir, &p, vec![], json!(null), None, CompactStop::Never).unwrap();
    }
    assert_eq!(segments(dir.path()).len(), 1);
    let (_wal, rec) = open(dir.path(), 256);
    assert_eq!(rec.last_seq, all.last().unwrap().seq + 1);
}

#[test]
fn a_crash_after_the_anchor_is_written_leaves_a_log_that_opens_and_boot_finishes_the_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let all = many_segments(dir.path());
    let before = segments(dir.path());
    let c = compact_upto(dir.path(), 20, CompactStop::AfterAnchor);
    assert_eq!(segments(dir.path()), before, "killed before any segment was removed");
    // Readers skip the covered leftovers.
    assert!(vibesync_wal::verify(dir.path().join("wal")).unwrap().is_empty());
    assert_eq!(records_in(dir.path()).first().unwrap().seq, c.anchor.seq + 1);
    // Boot removes them.
    let (wal, rec) = open(dir.path(), 256);
    assert!(rec.finished_compaction > 0);
    assert_eq!(rec.last_seq, all.last().unwrap().seq);
    assert!(segments(dir.path()).iter().all(|p| vibesync_wal::parse_segment_name(
        p.file_name().unwrap().to_str().unwrap()
    )
    .unwrap()
        > c.anchor.seq));
    wal.close_blocking().unwrap();
    // Every prefix of the removal (kill -9 between two unlinks) opens too.
    let dir2 = tempfile::tempdir().unwrap();
    many_segments(dir2.path());
    let plan = plan_compaction(&dir2.path().join("wal"), 25).unwrap().unwrap();
    compact(&dir2.path().join("wal"), &plan, vec![], json!(null), None, CompactStop::AfterAnchor).unwrap();
    for p in &plan.segments[..plan.segments.len() / 2] {
        std::fs::remove_file(p).unwrap();
    }
    assert!(vibesync_wal::verify(dir2.path().join("wal")).unwrap().is_empty());
    let (_wal, rec) = open(dir2.path(), 256);
    assert_eq!(rec.finished_compaction, plan.segments.len() - plan.segments.len() / 2);
}

#[test]
fn a_torn_anchor_in_front_of_a_compacted_log_is_refused_by_name_and_repair_re_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let all = many_segments(dir.path());
    let c = compact_upto(dir.path(), 20, CompactStop::Never);
    let anchor = dir.path().join("wal").join(ANCHOR_FILE);
    let bytes = std::fs::read(&anchor).unwrap();
    std::fs::write(&anchor, &bytes[..bytes.len() / 2]).unwrap();
    match Wal::open(cfg(dir.path(), 256)) {
        Err(e @ WalError::BadAnchor { .. }) => {
            let WalError::BadAnchor { file, reason } = &e else { unreachable!() };
            assert_eq!(file, &anchor);
            assert!(reason.contains("anchor is damaged") && reason.contains("--repair"), "{reason}");
            // Its own advice only: not the advice for a damaged record (move everything from
            // this byte on to quarantine), which --repair does not do to an anchor.
            let shown = e.to_string();
            assert!(!shown.contains("from this byte on"), "{shown}");
            assert!(shown.ends_with("Nothing was changed"), "{shown}");
        }
        other => panic!("expected BadAnchor naming the anchor, got {:?}", other.map(|(_, r)| r)),
    }
    let problems = vibesync_wal::verify(dir.path().join("wal")).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].kind, ProblemKind::BadAnchor);
    assert_eq!(problems[0].file, anchor);
    // Edited (checksum no longer matches) is refused the same way.
    let mut edited = bytes.clone();
    let i = edited.iter().position(|&b| b.is_ascii_digit()).unwrap();
    edited[i] = if edited[i] == b'9' { b'8' } else { edited[i] + 1 };
    std::fs::write(&anchor, &edited).unwrap();
    assert!(matches!(Wal::open(cfg(dir.path(), 256)), Err(WalError::BadAnchor { .. })));
    // --repair: the damaged anchor goes to quarantine; the chain restarts at the first kept
    // record's prev; nothing of the kept log is lost.
    let mut rc = cfg(dir.path(), 256);
    rc.repair = true;
    let (wal, rec) = Wal::open(rc).unwrap();
    assert_eq!(rec.anchor.as_ref().map(|a| (a.seq, a.h.clone())), Some((c.anchor.seq, c.anchor.h.clone())));
    assert_eq!(rec.last_seq, all.last().unwrap().seq);
    // Named `anchor-<UTC yyyymmddThhmmss.ffffffZ>.json` like every set-aside (docs/WAL.md §11).
    let names: Vec<String> =
        quarantine_files(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(
        names.iter().any(|n| {
            let stamp = n.strip_prefix("anchor-").and_then(|n| n.strip_suffix(".json")).unwrap_or("");
            let b = stamp.as_bytes();
            b.len() == 23
                && b[8] == b'T'
                && b[15] == b'.'
                && b[22] == b'Z'
                && b.iter().enumerate().all(|(i, c)| [8, 15, 22].contains(&i) || c.is_ascii_digit())
        }),
        "{names:?}"
    );
    wal.close_blocking().unwrap();
    assert!(vibesync_wal::verify(dir.path().join("wal")).unwrap().is_empty());
}

#[test]
fn a_torn_anchor_before_any_segment_was_removed_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let all = many_segments(dir.path());
    compact_upto(dir.path(), 20, CompactStop::AfterAnchor);
    let anchor = dir.path().join("wal").join(ANCHOR_FILE);
    let bytes = std::fs::read(&anchor).unwrap();
    std::fs::write(&anchor, &bytes[..10]).unwrap();
    // The log still starts at seq 1: nothing needs the anchor.
    assert!(vibesync_wal::verify(dir.path().join("wal")).unwrap().is_empty());
    let (_wal, rec) = open(dir.path(), 256);
    assert_eq!(rec.anchor, None);
    assert_eq!(rec.records, all.len() as u64);
    assert!(!anchor.exists(), "set aside into quarantine");
}

#[test]
fn a_missing_segment_the_anchor_does_not_cover_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    many_segments(dir.path());
    let c = compact_upto(dir.path(), 20, CompactStop::Never);
    let segs = segments(dir.path());
    std::fs::remove_file(&segs[0]).unwrap(); // the first kept segment: its records were never compacted
    match Wal::open(cfg(dir.path(), 256)) {
        Err(e @ WalError::MissingSegment { .. }) => {
            let msg = e.to_string();
            let WalError::MissingSegment {
                file, first_missing, last_missing, first_found, later_segments, reason, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(file, segs[1]);
            assert_eq!(first_missing, c.anchor.seq + 1);
            assert_eq!(last_missing, first_found - 1);
            assert_eq!(later_segments, segs.len() - 2);
            assert!(reason.contains(&format!("up to seq {} only", c.anchor.seq)), "{reason}");
            // The fix comes first; --repair only if the segment is lost for good, and the
            // message says what repair would throw away.
            let put_back = msg.find("Put the missing segment back").expect(&msg);
            let repair = msg.find("--repair").expect(&msg);
            assert!(put_back < repair, "{msg}");
            assert!(msg.contains("lost for good") && msg.contains(&format!("from seq {first_found} on")), "{msg}");
        }
        other => panic!("expected MissingSegment, got {:?}", other.map(|(_, r)| r)),
    }
    let problems = vibesync_wal::verify(dir.path().join("wal")).unwrap();
    assert!(problems.iter().any(|p| p.kind == ProblemKind::SeqGap && p.file == segs[1]), "{problems:?}");
    // Without an anchor, a log that does not start at seq 1 is refused the same way.
    let dir2 = tempfile::tempdir().unwrap();
    many_segments(dir2.path());
    std::fs::remove_file(&segments(dir2.path())[0]).unwrap();
    match Wal::open(cfg(dir2.path(), 256)) {
        Err(WalError::MissingSegment { reason, first_missing: 1, .. }) => {
            assert!(reason.contains("there is no compaction anchor"), "{reason}")
        }
        other => panic!("expected MissingSegment, got {:?}", other.map(|(_, r)| r)),
    }
    // A segment missing in the middle of the log: the same refusal, naming the next one.
    let dir3 = tempfile::tempdir().unwrap();
    many_segments(dir3.path());
    let segs3 = segments(dir3.path());
    let aside = dir3.path().join("aside.jsonl");
    std::fs::rename(&segs3[2], &aside).unwrap();
    match Wal::open(cfg(dir3.path(), 256)) {
        Err(WalError::MissingSegment { file, later_segments, .. }) => {
            assert_eq!(file, segs3[3]);
            assert_eq!(later_segments, segs3.len() - 4);
        }
        other => panic!("expected MissingSegment, got {:?}", other.map(|(_, r)| r)),
    }
    // Nothing was changed: with the segment put back, the whole log opens again.
    assert_eq!(segments(dir3.path()).len(), segs3.len() - 1);
    std::fs::rename(&aside, &segs3[2]).unwrap();
    let (_wal, rec) = Wal::open(cfg(dir3.path(), 256)).expect("the log opens with the segment back");
    assert!(rec.repaired.is_none() && rec.torn_tail.is_none());
}

#[test]
fn a_checkpoint_written_before_a_compaction_still_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let all = many_segments(dir.path());
    let at = all[all.len() - 4].seq;
    let e = Reader::open(dir.path().join("wal")).unwrap().map(|e| e.unwrap()).find(|e| e.record.seq == at).unwrap();
    let seg = vibesync_wal::parse_segment_name(e.file.file_name().unwrap().to_str().unwrap()).unwrap();
    let resume = ResumeAt {
        seq: at,
        h: e.record.h.clone(),
        segment: seg,
        offset: e.offset + e.len,
        sealed: vibesync_wal::segment_stamps(&dir.path().join("wal"), seg).unwrap(),
    };
    compact_upto(dir.path(), 20, CompactStop::Never);
    let mut c = cfg(dir.path(), 256);
    c.resume = Some(resume);
    let (_wal, rec) = Wal::open(c).unwrap();
    assert_eq!(rec.resume_rejected, None);
    assert_eq!(rec.resumed_after, Some(at));
}

#[test]
fn compaction_can_archive_instead_of_deleting() {
    let dir = tempfile::tempdir().unwrap();
    many_segments(dir.path());
    let wal = dir.path().join("wal");
    let archive = dir.path().join("wal-archive");
    let plan = plan_compaction(&wal, 20).unwrap().unwrap();
    compact(&wal, &plan, vec![], json!(null), Some(&archive), CompactStop::Never).unwrap();
    for p in &plan.segments {
        assert!(archive.join(p.file_name().unwrap()).exists());
    }
    assert!(vibesync_wal::verify(&wal).unwrap().is_empty());
}
