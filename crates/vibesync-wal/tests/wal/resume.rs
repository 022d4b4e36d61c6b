//! Recovery that resumes after a checkpointed record (docs/WAL.md §9): used only when that
//! record is really there; a stale, torn or lying position falls back to reading everything.

use vibesync_wal::{Reader, Record, ResumeAt, Wal};

use crate::common::*;

/// Where record `seq` ends, as a checkpoint names it.
fn resume_at(data: &std::path::Path, seq: u64) -> ResumeAt {
    let e = Reader::open(data.join("wal")).unwrap().map(|e| e.unwrap()).find(|e| e.record.seq == seq).unwrap();
    let name = e.file.file_name().unwrap().to_str().unwrap();
    ResumeAt {
        seq,
        h: e.record.h.clone(),
        segment: vibesync_wal::parse_segment_name(name).unwrap(),
        offset: e.offset + e.len,
        sealed: vibesync_wal::segment_stamps(&data.join("wal"), vibesync_wal::parse_segment_name(name).unwrap())
            .unwrap(),
    }
}

fn reopen(data: &std::path::Path, resume: Option<ResumeAt>) -> (Wal, vibesync_wal::Recovery) {
    let mut c = cfg(data, 2048);
    c.resume = resume;
    Wal::open(c).expect("open")
}

#[test]
fn resume_reads_only_what_follows_and_keeps_the_open_transactions_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<Record> = write_sample_log(dir.path(), 2048);
    let last = all.last().unwrap().seq;
    // After the three finished transactions: "unf" and "inc" begin later.
    let at = all.iter().find(|r| r.operation_id == "ok2" && r.phase == vibesync_wal::Phase::Final).unwrap().seq;
    let (wal, rec) = reopen(dir.path(), Some(resume_at(dir.path(), at)));
    assert_eq!(rec.resumed_after, Some(at));
    assert_eq!(rec.resume_rejected, None);
    assert!(
        rec.records >= last - at && rec.records < last,
        "only the checkpoint's segment and after are read: {}",
        rec.records
    );
    assert_eq!(rec.last_seq, last);
    assert_eq!(rec.transactions.anomaly_count, 0, "records of operations settled before it are expected");
    let inc: Vec<_> = rec.transactions.incomplete.iter().map(|t| t.operation_id.as_str()).collect();
    let unf: Vec<_> = rec.transactions.unfinalized.iter().map(|t| t.operation_id.as_str()).collect();
    assert_eq!(inc, ["inc"]);
    assert_eq!(unf, ["unf"]);
    // Appends continue the chain.
    let more = wal.append_blocking(vec![draft("next", vibesync_wal::Phase::Step, &[U1])]).unwrap();
    assert_eq!(more[0].seq, last + 1);
    assert_eq!(more[0].prev, all.last().unwrap().h);
    wal.close_blocking().unwrap();
    assert!(vibesync_wal::verify(dir.path().join("wal")).unwrap().is_empty());
}

#[test]
fn resume_at_the_very_end_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_sample_log(dir.path(), 2048);
    let last = all.last().unwrap().seq;
    let (_wal, rec) = reopen(dir.path(), Some(resume_at(dir.path(), last)));
    assert_eq!((rec.resumed_after, rec.last_seq), (Some(last), last));
    assert!(rec.records < last);
}

#[test]
fn a_position_that_does_not_match_the_log_is_rejected_and_everything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_sample_log(dir.path(), 2048);
    let last = all.last().unwrap().seq;
    let good = resume_at(dir.path(), 10);
    let lies = [
        ResumeAt { h: "0".repeat(64), ..good.clone() },
        ResumeAt { seq: 11, ..good.clone() },
        ResumeAt { offset: good.offset - 3, ..good.clone() },
        ResumeAt { offset: good.offset + 1_000_000, ..good.clone() },
        ResumeAt { segment: 999_999, ..good.clone() },
        ResumeAt { seq: last + 5, ..resume_at(dir.path(), last) },
    ];
    // An earlier (sealed) segment changed since the checkpoint.
    let mut touched = good.clone();
    touched.sealed[0].modified_ns += 1;
    let mut lies = lies.to_vec();
    lies.push(touched);
    for lie in lies {
        let (wal, rec) = reopen(dir.path(), Some(lie.clone()));
        assert_eq!(rec.resumed_after, None, "{lie:?}");
        assert!(rec.resume_rejected.is_some(), "{lie:?}");
        assert_eq!((rec.records, rec.last_seq), (last, last), "{lie:?}: the whole log is read");
        wal.close_blocking().unwrap();
    }
}

#[test]
fn a_torn_tail_after_the_resume_point_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_sample_log(dir.path(), 1 << 20);
    let last = all.last().unwrap().seq;
    let seg = std::fs::read_dir(dir.path().join("wal")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":").unwrap();
    drop(f);
    let (_wal, rec) = reopen(dir.path(), Some(resume_at(dir.path(), 5)));
    assert_eq!(rec.resumed_after, Some(5));
    assert!(rec.torn_tail.is_some());
    assert_eq!(rec.last_seq, last);
}

#[test]
fn a_repair_that_cuts_below_the_resume_point_discards_it() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_sample_log(dir.path(), 1 << 20);
    let at = resume_at(dir.path(), all.last().unwrap().seq);
    let seg = std::fs::read_dir(dir.path().join("wal")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let line5 = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(3).unwrap().0 + 1;
    bytes[line5 + 20] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    let mut c = cfg(dir.path(), 1 << 20);
    c.resume = Some(at);
    c.repair = true;
    let (_wal, rec) = Wal::open(c).expect("open with repair");
    assert!(rec.repaired.is_some());
    assert_eq!(rec.resumed_after, None, "the checkpointed record was cut off");
    assert!(rec.resume_rejected.is_some());
    assert_eq!((rec.last_seq, rec.records), (4, 4));
}
