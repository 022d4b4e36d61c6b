use std::fs;

use tempfile::TempDir;
use vibesync_wal::{transaction_index, verify, Phase, ProblemKind, Wal, WalError, GENESIS_PREV};

use crate::common::*;

const SEG: u64 = 3500;

#[test]
fn every_prefix_of_the_last_segment_recovers_exactly_the_complete_records() {
    let src = TempDir::new().unwrap();
    let all = write_sample_log(src.path(), SEG);
    assert_eq!(all.len(), 32);
    let segs = segments(src.path());
    assert!(segs.len() >= 2, "need several segments, got {}", segs.len());
    let last = segs.last().unwrap().clone();
    let last_bytes = fs::read(&last).unwrap();
    let starts = line_starts(&last_bytes);
    let first_seq_last: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let before_last = (first_seq_last - 1) as usize;
    assert_eq!(*starts.last().unwrap(), last_bytes.len(), "log ends with a newline");
    println!("{} segments, last one {} bytes / {} records", segs.len(), last_bytes.len(), starts.len() - 1);
    assert!(starts.len() > 3, "last segment should hold several records");

    for p in 0..=last_bytes.len() {
        let dst = TempDir::new().unwrap();
        copy_wal(src.path(), dst.path());
        let dst_last = dst.path().join("wal").join(last.file_name().unwrap());
        fs::write(&dst_last, &last_bytes[..p]).unwrap();

        // complete lines in the prefix
        let complete = starts.iter().filter(|&&s| s <= p).count() - 1;
        let boundary = starts[complete];
        let expected = &all[..before_last + complete];

        let (wal, rec) = open(dst.path(), SEG);
        assert_eq!(rec.last_seq, expected.len() as u64, "prefix {p}");
        assert_eq!(rec.records, expected.len() as u64, "prefix {p}");
        let want_h = expected.last().map_or(GENESIS_PREV.to_string(), |r| r.h.clone());
        assert_eq!(rec.last_h, want_h, "prefix {p}");
        assert_eq!(rec.transactions, transaction_index(expected), "prefix {p}");
        assert!(rec.repaired.is_none());
        if p == boundary {
            assert!(rec.torn_tail.is_none(), "prefix {p}: nothing torn");
            assert!(quarantine_files(dst.path()).is_empty());
        } else {
            let t = rec.torn_tail.as_ref().unwrap_or_else(|| panic!("prefix {p}: torn tail expected"));
            assert_eq!(t.file, dst_last);
            assert_eq!(t.offset, boundary as u64);
            assert_eq!(t.bytes, (p - boundary) as u64);
            assert_eq!(fs::read(&t.quarantine_path).unwrap(), &last_bytes[boundary..p], "prefix {p}");
            assert_eq!(fs::metadata(&dst_last).unwrap().len(), boundary as u64);
        }
        drop(wal);
        assert_eq!(records_in(dst.path()), expected, "prefix {p}");

        // Reopening is a no-op.
        let (wal, rec2) = open(dst.path(), SEG);
        assert!(rec2.torn_tail.is_none() && rec2.repaired.is_none(), "prefix {p}: second open changed something");
        assert_eq!(rec2.last_seq, rec.last_seq);
        assert_eq!(quarantine_files(dst.path()).len(), usize::from(p != boundary));

        // Appending continues the chain.
        let appended = wal.append_blocking(vec![draft("after", Phase::Step, &[U1])]).unwrap();
        assert_eq!(appended[0].seq, rec.last_seq + 1);
        assert_eq!(appended[0].prev, want_h);
        drop(wal);
        assert_eq!(verify(dst.path().join("wal")).unwrap(), vec![], "prefix {p}");
    }
}

/// Flip one byte in the middle of a non-last segment.
fn flip_mid_log(data: &std::path::Path) -> (std::path::PathBuf, u64, u64) {
    let segs = segments(data);
    let victim = segs[1].clone();
    let mut bytes = fs::read(&victim).unwrap();
    let starts = line_starts(&bytes);
    let line_start = starts[1];
    bytes[line_start + 20] ^= 0x04;
    fs::write(&victim, &bytes).unwrap();
    let first: u64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    (victim, line_start as u64, first + 1)
}

#[test]
fn flipped_byte_mid_log_refuses_and_names_file_and_offset() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let (victim, offset, bad_seq) = flip_mid_log(d.path());
    let before: Vec<Vec<u8>> = segments(d.path()).iter().map(|p| fs::read(p).unwrap()).collect();

    let err = Wal::open(cfg(d.path(), SEG)).unwrap_err();
    match &err {
        WalError::Corrupt { file, offset: o, .. } => {
            assert_eq!(file, &victim);
            assert_eq!(*o, offset);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&victim.display().to_string()) && msg.contains(&format!("byte {offset}")), "{msg}");
    assert!(msg.contains("--repair"), "{msg}");
    // Nothing was changed.
    let after: Vec<Vec<u8>> = segments(d.path()).iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert!(quarantine_files(d.path()).is_empty());

    let problems = verify(d.path().join("wal")).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, victim);
    assert_eq!(problems[0].offset, offset);
    assert_eq!(problems[0].kind, ProblemKind::BadChecksum);
    let _ = bad_seq;
}

#[test]
fn repair_quarantines_everything_from_the_first_bad_byte() {
    let d = TempDir::new().unwrap();
    let all = write_sample_log(d.path(), SEG);
    let (victim, offset, bad_seq) = flip_mid_log(d.path());
    let segs = segments(d.path());
    let idx = segs.iter().position(|s| s == &victim).unwrap();
    let victim_bytes = fs::read(&victim).unwrap();
    let later: Vec<Vec<u8>> = segs[idx + 1..].iter().map(|p| fs::read(p).unwrap()).collect();

    let mut c = cfg(d.path(), SEG);
    c.repair = true;
    let (wal, rec) = Wal::open(c).unwrap();
    let r = rec.repaired.clone().expect("repaired");
    assert_eq!(r.file, victim);
    assert_eq!(r.offset, offset);
    assert_eq!(rec.last_seq, bad_seq - 1);
    assert_eq!(r.removed_segments, segs[idx + 1..].to_vec());
    let expected_bytes = victim_bytes.len() as u64 - offset + later.iter().map(|b| b.len() as u64).sum::<u64>();
    assert_eq!(r.bytes, expected_bytes);
    // The quarantine holds exactly the cut bytes.
    assert_eq!(fs::read(&r.quarantine_paths[0]).unwrap(), &victim_bytes[offset as usize..]);
    for (q, orig) in r.quarantine_paths[1..].iter().zip(&later) {
        assert_eq!(&fs::read(q).unwrap(), orig);
    }
    assert_eq!(segments(d.path()), segs[..=idx].to_vec());
    assert_eq!(fs::metadata(&victim).unwrap().len(), offset);

    let next = wal.append_blocking(vec![draft("post-repair", Phase::Step, &[])]).unwrap();
    assert_eq!(next[0].seq, bad_seq);
    assert_eq!(next[0].prev, all[(bad_seq - 2) as usize].h);
    drop(wal);
    assert_eq!(verify(d.path().join("wal")).unwrap(), vec![]);
    let (_, again) = open(d.path(), SEG);
    assert!(again.repaired.is_none() && again.torn_tail.is_none());
}

#[test]
fn bad_last_line_is_torn_but_bad_second_to_last_line_is_corruption() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let last = segments(d.path()).pop().unwrap();
    let orig = fs::read(&last).unwrap();
    let starts = line_starts(&orig);
    let n = starts.len() - 1;
    assert!(n >= 2);

    // Damage the last complete line (it keeps its newline): torn tail.
    let mut bytes = orig.clone();
    bytes[starts[n - 1] + 10] ^= 0x01;
    fs::write(&last, &bytes).unwrap();
    let (wal, rec) = open(d.path(), SEG);
    let t = rec.torn_tail.expect("torn");
    assert_eq!(t.offset, starts[n - 1] as u64);
    assert_eq!(fs::read(&t.quarantine_path).unwrap(), &bytes[starts[n - 1]..]);
    drop(wal);

    // Damage the second-to-last line with a good line after it: corruption.
    let d2 = TempDir::new().unwrap();
    write_sample_log(d2.path(), SEG);
    let last2 = segments(d2.path()).pop().unwrap();
    let mut bytes = fs::read(&last2).unwrap();
    let starts = line_starts(&bytes);
    bytes[starts[n - 2] + 10] ^= 0x01;
    fs::write(&last2, &bytes).unwrap();
    match Wal::open(cfg(d2.path(), SEG)).unwrap_err() {
        WalError::Corrupt { file, offset, .. } => {
            assert_eq!(file, last2);
            assert_eq!(offset, starts[n - 2] as u64);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    let d = TempDir::new().unwrap();
    let all = write_sample_log(d.path(), SEG);
    let last = segments(d.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let good_len = bytes.len();
    // A partial line followed by preallocated zeros.
    bytes.extend_from_slice(b"{\"seq\":33,\"ts\":\"2026");
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&last, &bytes).unwrap();

    let problems = verify(d.path().join("wal")).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].kind, ProblemKind::TornTail);
    assert_eq!(problems[0].offset, good_len as u64);

    let (wal, rec) = open(d.path(), SEG);
    let t = rec.torn_tail.expect("torn");
    assert_eq!(t.offset, good_len as u64);
    assert_eq!(t.bytes, (bytes.len() - good_len) as u64);
    assert_eq!(rec.last_seq, all.len() as u64);
    assert_eq!(fs::metadata(&last).unwrap().len(), good_len as u64);
    drop(wal);

    // Only zeros.
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0u8; 8192]);
    fs::write(&last, &bytes).unwrap();
    let (_wal, rec) = open(d.path(), SEG);
    assert_eq!(rec.torn_tail.expect("torn").bytes, 8192);
    assert_eq!(rec.last_seq, all.len() as u64);
}

#[test]
fn zero_hole_followed_by_records_is_corruption_with_a_hint() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let last = segments(d.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let starts = line_starts(&bytes);
    for b in &mut bytes[starts[0]..starts[1] - 1] {
        *b = 0;
    }
    fs::write(&last, &bytes).unwrap();
    let err = Wal::open(cfg(d.path(), SEG)).unwrap_err();
    assert!(matches!(&err, WalError::Corrupt { offset: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("power loss"), "{err}");
}

/// Zeros that took the place of a record and its `\n` — or were written before the last
/// record — make the zeros and that last record one line: a whole record still follows the
/// bad spot, so it is the power-loss pattern (docs/WAL.md §7), refused, never cut as a torn
/// tail (the last record could be an acknowledged COMMIT).
#[test]
fn zeros_that_swallowed_a_newline_before_the_last_record_are_corruption_not_a_torn_tail() {
    let src = TempDir::new().unwrap();
    let all = write_sample_log(src.path(), SEG);
    let last = segments(src.path()).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    let starts = line_starts(&bytes);
    let n = starts.len() - 1;
    assert!(n >= 3, "the last segment holds several records");
    let last_seq = all.len();
    // The second-to-last record, its `\n` included, zeroed; and 4 KiB of zeros inserted before
    // the last record.
    let mut zeroed = bytes.clone();
    zeroed[starts[n - 2]..starts[n - 1]].fill(0);
    let mut inserted = bytes[..starts[n - 1]].to_vec();
    inserted.extend_from_slice(&[0u8; 4096]);
    inserted.extend_from_slice(&bytes[starts[n - 1]..]);
    for (what, damaged, at) in [("zeroed", zeroed, starts[n - 2]), ("inserted", inserted, starts[n - 1])] {
        let d = TempDir::new().unwrap();
        copy_wal(src.path(), d.path());
        let dst = d.path().join("wal").join(last.file_name().unwrap());
        fs::write(&dst, &damaged).unwrap();
        match Wal::open(cfg(d.path(), SEG)).unwrap_err() {
            WalError::Corrupt { file, offset, reason } => {
                assert_eq!((file, offset), (dst.clone(), at as u64), "{what}");
                assert!(reason.contains(&format!("a whole record (seq {last_seq}) follows")), "{what}: {reason}");
                assert!(reason.contains("power loss"), "{what}: {reason}");
            }
            e => panic!("{what}: {e:?}"),
        }
        assert_eq!(fs::read(&dst).unwrap(), damaged, "{what}: nothing changed");
        assert!(quarantine_files(d.path()).is_empty(), "{what}");
    }
}

#[test]
fn deleted_line_is_detected_by_the_chain() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let victim = segments(d.path())[1].clone();
    let bytes = fs::read(&victim).unwrap();
    let s = line_starts(&bytes);
    assert!(s.len() >= 4);
    let mut cut = bytes[..s[1]].to_vec();
    cut.extend_from_slice(&bytes[s[2]..]);
    fs::write(&victim, &cut).unwrap();

    let problems = verify(d.path().join("wal")).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::SeqGap);
    assert_eq!((problems[0].file.clone(), problems[0].offset), (victim.clone(), s[1] as u64));
    match Wal::open(cfg(d.path(), SEG)).unwrap_err() {
        WalError::Corrupt { file, offset, reason } => {
            assert_eq!((file, offset), (victim, s[1] as u64));
            assert!(reason.contains("seq"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn deleting_the_last_line_is_invisible_to_the_chain() {
    // Documented limitation: cutting whole lines off the end looks like a shorter log.
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let segs = segments(d.path());
    // Delete the last line of the last segment: undetectable by the chain alone (a
    // truncation), which is why stores compare their seq with the WAL's last_seq.
    let last = segs.last().unwrap();
    let bytes = fs::read(last).unwrap();
    let s = line_starts(&bytes);
    fs::write(last, &bytes[..s[s.len() - 2]]).unwrap();
    assert_eq!(verify(d.path().join("wal")).unwrap(), vec![]);
}

#[test]
fn reordered_lines_are_detected_by_the_chain() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let victim = segments(d.path())[0].clone();
    let bytes = fs::read(&victim).unwrap();
    let s = line_starts(&bytes);
    let mut swapped = bytes[..s[1]].to_vec();
    swapped.extend_from_slice(&bytes[s[2]..s[3]]);
    swapped.extend_from_slice(&bytes[s[1]..s[2]]);
    swapped.extend_from_slice(&bytes[s[3]..]);
    fs::write(&victim, &swapped).unwrap();

    let problems = verify(d.path().join("wal")).unwrap();
    assert!(!problems.is_empty());
    assert_eq!(problems[0].offset, s[1] as u64);
    assert!(problems.iter().all(|p| matches!(p.kind, ProblemKind::SeqGap | ProblemKind::ChainBreak)));
    match Wal::open(cfg(d.path(), SEG)).unwrap_err() {
        WalError::Corrupt { file, offset, .. } => assert_eq!((file, offset), (victim, s[1] as u64)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn missing_segment_is_detected() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let segs = segments(d.path());
    fs::remove_file(&segs[1]).unwrap();
    match Wal::open(cfg(d.path(), SEG)).unwrap_err() {
        WalError::MissingSegment { file, first_missing, .. } => {
            assert_eq!(file, segs[2]);
            assert!(first_missing > 1);
        }
        e => panic!("{e:?}"),
    }
    let problems = verify(d.path().join("wal")).unwrap();
    assert_eq!(problems[0].kind, ProblemKind::SeqGap);
    assert_eq!(problems[0].file, segs[2]);
}

#[test]
fn transaction_index_reports_incomplete_and_unfinalized() {
    let d = TempDir::new().unwrap();
    let all = write_sample_log(d.path(), SEG);
    let (_wal, rec) = open(d.path(), SEG);
    let tx = &rec.transactions;
    assert_eq!(tx.incomplete.len(), 1, "{tx:?}");
    let inc = &tx.incomplete[0];
    assert_eq!(inc.operation_id, "inc");
    assert_eq!(inc.uuids, vec![U1.to_string(), U2.to_string()]);
    assert!(inc.provisional);
    let begin = all.iter().find(|r| r.operation_id == "inc" && r.phase == Phase::Begin).unwrap();
    assert_eq!(inc.begin_seq, begin.seq);
    assert_eq!(inc.session_id, begin.session_id);
    assert_eq!(inc.project_id, "demo");

    assert_eq!(tx.unfinalized.len(), 1, "{tx:?}");
    let unf = &tx.unfinalized[0];
    assert_eq!(unf.operation_id, "unf");
    let commit = all.iter().find(|r| r.operation_id == "unf" && r.phase == Phase::Commit).unwrap();
    assert_eq!(unf.commit_seq, commit.seq);
    assert_eq!(unf.uuids, vec![U3.to_string()]);
    assert!(tx.anomalies.is_empty(), "{:?}", tx.anomalies);
}

#[test]
fn daemon_closing_open_operations_clears_the_index() {
    let d = TempDir::new().unwrap();
    write_sample_log(d.path(), SEG);
    let (wal, rec) = open(d.path(), SEG);
    let mut rb = draft("inc", Phase::Rollback, &[]);
    rb.error_code = Some("RECOVERED_INCOMPLETE".into());
    wal.append_blocking(vec![rb, draft("unf", Phase::Final, &[])]).unwrap();
    assert_eq!(rec.transactions.incomplete.len(), 1);
    drop(wal);
    let (_wal, rec) = open(d.path(), SEG);
    assert!(rec.transactions.incomplete.is_empty() && rec.transactions.unfinalized.is_empty());
}

#[test]
fn second_open_is_refused_while_locked() {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), SEG);
    assert!(matches!(Wal::open(cfg(d.path(), SEG)), Err(WalError::Locked { .. })));
    drop(wal);
    let (_wal, _) = open(d.path(), SEG);
}

#[test]
fn newer_schema_version_is_refused_even_with_repair() {
    let d = TempDir::new().unwrap();
    let all = write_sample_log(d.path(), SEG);
    // Append a well-formed record from a "future" writer.
    let last = segments(d.path()).pop().unwrap();
    let mut r = all.last().unwrap().clone();
    r.prev = r.h.clone();
    r.seq += 1;
    r.schema_version = vibesync_wal::SCHEMA_VERSION + 1;
    let offset = fs::metadata(&last).unwrap().len();
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut f, &r.seal()).unwrap();
    drop(f);
    let before = fs::read(&last).unwrap();
    for repair in [false, true] {
        let mut c = cfg(d.path(), SEG);
        c.repair = repair;
        match Wal::open(c).unwrap_err() {
            WalError::NewerSchema { file, offset: o, seq, found, .. } => {
                assert_eq!((file, o, seq, found), (last.clone(), offset, r.seq, r.schema_version));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(fs::read(&last).unwrap(), before, "nothing may change");
    }
    assert!(quarantine_files(d.path()).is_empty());
    // The offline verifier calls it a problem too: a log the daemon refuses is not clean.
    let problems = vibesync_wal::verify(d.path().join("wal")).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, vibesync_wal::ProblemKind::NewerSchema);
    assert_eq!((problems[0].file.clone(), problems[0].offset), (last.clone(), offset));
    assert!(problems[0].description.contains("schema_version"), "{}", problems[0].description);
}
