use std::fs::{self, OpenOptions};
use std::io::Write;

use tempfile::TempDir;
use vibesync_wal::{read_all, segment_file_name, verify, Phase, Position, Reader, Record, SCHEMA_VERSION};

use crate::common::*;

#[test]
fn reader_yields_every_record_with_file_and_offset() {
    let d = TempDir::new().unwrap();
    let all = write_sample_log(d.path(), 2048);
    let entries = read_all(d.path().join("wal")).unwrap();
    assert_eq!(entries.iter().map(|e| e.record.clone()).collect::<Vec<_>>(), all);
    for e in &entries {
        let bytes = fs::read(&e.file).unwrap();
        let line = &bytes[e.offset as usize..(e.offset + e.len) as usize];
        assert_eq!(Record::parse_line(line).unwrap(), e.record);
    }
}

#[test]
fn reader_does_not_modify_a_torn_log() {
    let d = TempDir::new().unwrap();
    let all = write_sample_log(d.path(), 2048);
    let last = segments(d.path()).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(b"{\"seq\":99,\"ts\"").unwrap();
    drop(f);
    let before = fs::read(&last).unwrap();
    let got = read_all(d.path().join("wal")).unwrap();
    assert_eq!(got.len(), all.len());
    assert_eq!(verify(d.path().join("wal")).unwrap().len(), 1);
    assert_eq!(fs::read(&last).unwrap(), before);
    assert!(quarantine_files(d.path()).is_empty());
}

#[test]
fn follow_picks_up_new_records_and_waits_for_incomplete_lines() {
    let d = TempDir::new().unwrap();
    let seg = 1500;
    let (wal, _) = open(d.path(), seg);
    wal.append_blocking(vec![draft("a", Phase::Step, &[])]).unwrap();
    let mut reader = Reader::open(d.path().join("wal")).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().record.seq, 1);
    assert!(reader.next().is_none());
    // New records, across a rotation.
    for i in 0..10 {
        wal.append_blocking(vec![draft(&format!("b{i}"), Phase::Step, &[U1])]).unwrap();
    }
    let seqs: Vec<u64> = reader.by_ref().map(|e| e.unwrap().record.seq).collect();
    assert_eq!(seqs, (2..=11).collect::<Vec<_>>());
    assert!(segments(d.path()).len() > 1);
    let pos = reader.position();
    drop(wal);

    // Resume from a saved position.
    let (wal, _) = open(d.path(), seg);
    wal.append_blocking(vec![draft("c", Phase::Step, &[])]).unwrap();
    drop(wal);
    let mut resumed = Reader::open_at(d.path().join("wal"), pos).unwrap();
    assert_eq!(resumed.next().unwrap().unwrap().record.seq, 12);
    assert!(resumed.next().is_none());

    // An incomplete line is left for later; once complete, it is read.
    let last = segments(d.path()).pop().unwrap();
    let prev = read_all(d.path().join("wal")).unwrap().pop().unwrap().record;
    let mut r = Record {
        seq: 13,
        ts: "2026-11-21T00:00:00.000000Z".into(),
        process_id: 1,
        session_id: "s".into(),
        operation_id: "manual".into(),
        uuids: vec![],
        project_id: "demo".into(),
        phase: Phase::Step,
        outcome: vibesync_wal::Outcome::Ok,
        error_code: None,
        schema_version: SCHEMA_VERSION,
        payload: serde_json::json!({}),
        prev: prev.h.clone(),
        h: String::new(),
    };
    let line = r.seal();
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&line[..30]).unwrap();
    let before = resumed.position();
    assert!(resumed.next().is_none());
    assert_eq!(resumed.position(), before);
    f.write_all(&line[30..]).unwrap();
    let e = resumed.next().unwrap().unwrap();
    assert_eq!(e.record, r);
    assert_eq!(e.offset, before.offset);
}

#[test]
fn open_at_end_skips_history() {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), 1 << 20);
    wal.append_blocking(vec![draft("a", Phase::Step, &[]), draft("a", Phase::Step, &[])]).unwrap();
    let mut r = Reader::open_at_end(d.path().join("wal")).unwrap();
    assert!(r.next().is_none());
    wal.append_blocking(vec![draft("b", Phase::Step, &[])]).unwrap();
    assert_eq!(r.next().unwrap().unwrap().record.seq, 3);
    assert_eq!(r.position().segment, 1);
    let _ = Position { segment: 1, offset: 0 };
    let _ = segment_file_name(1);
}
