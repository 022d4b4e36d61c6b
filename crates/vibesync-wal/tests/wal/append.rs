use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use tempfile::TempDir;
use vibesync_wal::{
    chain::verify_chain, parse_segment_name, read_all, segment_file_name, verify, Fault, Phase, WalError, GENESIS_PREV,
    SCHEMA_VERSION,
};

use crate::common::*;

#[test]
fn first_append_starts_the_chain_and_fills_every_field() {
    let d = TempDir::new().unwrap();
    let (wal, rec) = open(d.path(), 1 << 20);
    assert_eq!((rec.last_seq, rec.records, rec.last_h.as_str()), (0, 0, GENESIS_PREV));
    let mut dr = draft("op", Phase::Begin, &[U1]);
    dr.error_code = Some("X".into());
    let out = wal.append_blocking(vec![dr.clone(), draft("op", Phase::Step, &[U1])]).unwrap();
    assert_eq!(out.len(), 2);
    let r = &out[0];
    assert_eq!(r.seq, 1);
    assert_eq!(r.prev, GENESIS_PREV);
    assert_eq!(out[1].prev, r.h);
    assert_eq!(r.process_id, std::process::id());
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!((&r.session_id, &r.operation_id, &r.uuids), (&dr.session_id, &dr.operation_id, &dr.uuids));
    assert_eq!((&r.payload, &r.error_code, &r.outcome), (&dr.payload, &dr.error_code, &dr.outcome));
    // ts: RFC 3339 UTC with microseconds and Z.
    assert_eq!(r.ts.len(), 27, "{}", r.ts);
    assert!(r.ts.ends_with('Z') && r.ts.as_bytes()[10] == b'T' && r.ts.as_bytes()[19] == b'.');
    assert!(time::OffsetDateTime::parse(&r.ts, &time::format_description::well_known::Rfc3339).is_ok());
    // On disk: exactly the sealed lines.
    let file = d.path().join("wal").join(segment_file_name(1));
    let disk = fs::read(&file).unwrap();
    let mut expect = Vec::new();
    for r in &out {
        let mut c = r.clone();
        expect.extend(c.seal());
    }
    assert_eq!(disk, expect);
    assert_eq!(wal.last_seq(), 2);
    assert_eq!(wal.append_blocking(vec![]).unwrap(), vec![]);
}

#[test]
fn group_commit_64_concurrent_tasks() {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), 64 * 1024);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    const TASKS: usize = 64;
    const CALLS: usize = 8;
    let calls = rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let wal = wal.clone();
            let barrier = barrier.clone();
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut got = Vec::new();
                for c in 0..CALLS {
                    let op = format!("t{t}c{c}");
                    let n = 1 + (t + c) % 3;
                    let drafts = (0..n).map(|_| draft(&op, Phase::Step, &[U1])).collect();
                    let recs = wal.append(drafts).await.unwrap();
                    assert_eq!(recs.len(), n);
                    got.push(recs);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for recs in &calls {
        // contiguous per call, one operation per call
        for w in recs.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert_eq!(w[1].prev, w[0].h);
        }
        for r in recs {
            assert!(seen.insert(r.seq), "seq {} twice", r.seq);
            assert_eq!(r.operation_id, recs[0].operation_id);
        }
        total += recs.len() as u64;
    }
    assert_eq!(seen, (1..=total).collect::<HashSet<u64>>());
    let st = wal.stats();
    assert_eq!(st.appends, (TASKS * CALLS) as u64);
    assert_eq!(st.records, total);
    assert_eq!(st.last_seq, total);
    assert!(st.syncs < st.appends, "no group commit: {st:?}");
    assert!(st.syncs >= st.batches);
    println!("group commit: {st:?}");
    wal.close_blocking().unwrap();
    drop(wal);
    assert_eq!(verify(d.path().join("wal")).unwrap(), vec![]);
    let on_disk: Vec<_> = read_all(d.path().join("wal")).unwrap().into_iter().map(|e| e.record).collect();
    assert_eq!(on_disk.len() as u64, total);
    verify_chain(&on_disk).unwrap();
}

#[test]
fn rotation_names_segments_by_first_seq_and_the_chain_continues() {
    let d = TempDir::new().unwrap();
    let seg = 1500u64;
    let (wal, _) = open(d.path(), seg);
    let mut all = Vec::new();
    for i in 0..20 {
        let n = 1 + i % 3;
        all.extend(
            wal.append_blocking((0..n).map(|_| draft(&format!("op{i}"), Phase::Step, &[U2])).collect()).unwrap(),
        );
    }
    let st = wal.stats();
    drop(wal);
    let segs = segments(d.path());
    assert!(segs.len() >= 4, "{segs:?}");
    assert_eq!(st.segments, segs.len() as u64);
    assert_eq!(st.bytes, segs.iter().map(|p| fs::metadata(p).unwrap().len()).sum::<u64>());
    assert_eq!(segs[0].file_name().unwrap(), "00000000000000000001.jsonl");
    let entries = read_all(d.path().join("wal")).unwrap();
    for s in &segs {
        let name = s.file_name().unwrap().to_str().unwrap();
        let first = parse_segment_name(name).unwrap();
        let first_entry = entries.iter().find(|e| &e.file == s).unwrap();
        assert_eq!((first_entry.record.seq, first_entry.offset), (first, 0), "{name}");
        let len = fs::metadata(s).unwrap().len();
        let lines: Vec<_> = entries.iter().filter(|e| &e.file == s).collect();
        // A segment exceeds the limit only when a single append call is larger than it.
        assert!(len <= seg || lines.len() <= 3, "{name} is {len} bytes");
    }
    let recs: Vec<_> = entries.into_iter().map(|e| e.record).collect();
    assert_eq!(recs, all);
    verify_chain(&recs).unwrap();
    // One call's records never straddle two segments.
    let (wal, rec) = open(d.path(), seg);
    assert_eq!(rec.segments, segs.len());
    assert_eq!(wal.append_blocking(vec![draft("x", Phase::Step, &[])]).unwrap()[0].seq, all.len() as u64 + 1);
}

fn poison_with(fault: Fault) {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), 1 << 20);
    let acked = wal.append_blocking(vec![draft("a", Phase::Begin, &[U1]), draft("a", Phase::Commit, &[])]).unwrap();
    let before = wal.stats();
    wal.inject_fault(fault);
    let err = wal.append_blocking(vec![draft("b", Phase::Begin, &[U1])]).unwrap_err();
    match &err {
        WalError::Poisoned { seq, offset, file, cause } => {
            assert_eq!(*seq, 3);
            assert_eq!(*offset, before.bytes);
            assert_eq!(file, &d.path().join("wal").join(segment_file_name(1)));
            assert!(!cause.is_empty());
        }
        e => panic!("{fault:?}: expected Poisoned, got {e:?}"),
    }
    // Every later append fails too, the counters did not move, close reports the poison.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let later = rt.block_on(wal.append(vec![draft("c", Phase::Step, &[])]));
    assert!(matches!(later, Err(WalError::Poisoned { .. })), "{later:?}");
    assert!(matches!(wal.append_blocking(vec![draft("c", Phase::Step, &[])]), Err(WalError::Poisoned { .. })));
    assert!(wal.poisoned().is_some());
    assert_eq!(wal.last_seq(), 2);
    assert_eq!(wal.stats().records, before.records);
    assert!(matches!(wal.close_blocking(), Err(WalError::Poisoned { .. })));
    drop(wal);
    // Nothing unacknowledged is on disk.
    assert_eq!(records_in(d.path()), acked);
    let (_wal, rec) = open(d.path(), 1 << 20);
    assert_eq!(rec.last_seq, 2);
    assert!(rec.torn_tail.is_none());
}

#[test]
fn poisoned_after_fsync_failure() {
    poison_with(Fault::FailNextSync);
}

#[test]
fn poisoned_after_write_failure() {
    poison_with(Fault::FailNextWrite);
}

#[test]
fn poisoned_after_read_back_mismatch() {
    poison_with(Fault::CorruptNextReadBack);
}

#[test]
fn poison_fails_every_concurrent_waiter() {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), 1 << 20);
    wal.inject_fault(Fault::FailNextSync);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results = rt.block_on(async {
        let hs: Vec<_> = (0..32)
            .map(|i| {
                let wal = wal.clone();
                tokio::spawn(async move { wal.append(vec![draft(&format!("p{i}"), Phase::Step, &[])]).await })
            })
            .collect();
        let mut v = Vec::new();
        for h in hs {
            v.push(h.await.unwrap());
        }
        v
    });
    // The first batch fails; everything queued with it or after it fails too.
    assert!(results.iter().all(|r| matches!(r, Err(WalError::Poisoned { .. }))), "{results:?}");
    drop(wal);
    assert!(records_in(d.path()).is_empty());
}

#[test]
fn appends_started_without_waiting_are_answered_in_order_once_durable() {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), 1 << 20);
    let (tx, rx) = std::sync::mpsc::channel();
    // Several appends in flight from one thread; each answer comes on the writer thread.
    for i in 0..20u32 {
        let tx = tx.clone();
        let drafts = vec![draft(&format!("t{i}"), Phase::Begin, &[U1]), draft(&format!("t{i}"), Phase::Commit, &[])];
        wal.append_then(drafts, move |outcome| {
            let _ = tx.send((i, outcome, std::thread::current().name().map(str::to_owned)));
        })
        .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(rx.recv_timeout(std::time::Duration::from_secs(10)).expect("every append is answered"));
    }
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>(), "answered in order");
    let mut seqs = Vec::new();
    for (i, outcome, thread) in got {
        let recs = outcome.unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].operation_id, format!("t{i}"));
        assert_ne!(thread.as_deref(), Some(std::thread::current().name().unwrap_or("")));
        seqs.extend(recs.iter().map(|r| r.seq));
        // Durable when answered: on disk already.
        assert!(wal.last_seq() >= recs[1].seq);
    }
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
    // Nothing to write: answered at once with nothing.
    let (tx2, rx2) = std::sync::mpsc::channel();
    wal.append_then(vec![], move |o| tx2.send(o.unwrap().len()).unwrap()).unwrap();
    assert_eq!(rx2.try_recv().unwrap(), 0);
    // A failed write answers the append in flight with the error; a poisoned WAL refuses to
    // start another (and never calls it).
    wal.inject_fault(Fault::FailNextSync);
    let (tx3, rx3) = std::sync::mpsc::channel();
    wal.append_then(vec![draft("bad", Phase::Step, &[])], move |o| tx3.send(o.is_err()).unwrap()).unwrap();
    assert!(
        rx3.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
        "the failed append is answered with its error"
    );
    let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = called.clone();
    let refused = wal.append_then(vec![draft("late", Phase::Step, &[])], move |_| {
        c.store(true, std::sync::atomic::Ordering::SeqCst)
    });
    assert!(matches!(refused, Err(WalError::Poisoned { .. })), "{refused:?}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    drop(wal);
    assert_eq!(records_in(d.path()).len(), 40);
}

#[test]
fn close_drains_and_then_refuses() {
    let d = TempDir::new().unwrap();
    let (wal, _) = open(d.path(), 1 << 20);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        wal.append(vec![draft("a", Phase::Step, &[])]).await.unwrap();
        wal.close().await.unwrap();
        assert!(matches!(wal.append(vec![draft("b", Phase::Step, &[])]).await, Err(WalError::Closed)));
    });
    // The lock is released: another open works while the closed handle still exists.
    let (wal2, rec) = open(d.path(), 1 << 20);
    assert_eq!(rec.last_seq, 1);
    drop(wal2);
    drop(wal);
}

#[test]
fn handle_is_clone_send_sync() {
    fn assert_handle<T: Clone + Send + Sync + 'static>() {}
    assert_handle::<vibesync_wal::Wal>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<WalError>();
}
