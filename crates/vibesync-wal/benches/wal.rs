//! WAL benchmark (plain main, no criterion): `cargo bench -p vibesync-wal`.
//!
//! 1. Appends per second with fdatasync for 1, 8 and 64 concurrent writers (tokio tasks on
//!    a 2-worker runtime; one record of ~200 payload bytes per append), bounded by time.
//! 2. Boot recovery (`Wal::open`) of a log of 1 million records.
//!
//! Knobs: VIBESYNC_BENCH_SECS (default 5), VIBESYNC_BENCH_RECORDS (default 1000000),
//! VIBESYNC_BENCH_DIR (default: a temp dir next to the system temp dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vibesync_wal::{Phase, RecordDraft, Wal, WalConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("VIBESYNC_BENCH_DIR") {
        Some(d) => tempfile::TempDir::new_in(d).unwrap(),
        None => tempfile::TempDir::new().unwrap(),
    }
}

fn draft(i: u64) -> RecordDraft {
    RecordDraft {
        session_id: "5b0c7a52-9f3e-4e59-8d0e-2f4f1c9a0b11".into(),
        operation_id: format!("op-{i:012}"),
        uuids: vec!["6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a".into()],
        project_id: "demo".into(),
        phase: Phase::Step,
        outcome: vibesync_wal::Outcome::Ok,
        error_code: None,
        payload: serde_json::json!({
            "op": "transform",
            "uuid": "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a",
            "t": [1.25, 3.5, -2.0],
            "r": [0.0, 0.258819, 0.0, 0.965926],
            "s": [2.0, 2.0, 2.0],
            "name": "Cube.001",
            "editor_ref": "OB:Cube.001",
            "pad": "0123456789abcdef0123456789",
        }),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench_appends(writers: usize, secs: u64) {
    let dir = tempdir();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let lat = rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(writers));
        let mut hs = Vec::new();
        for w in 0..writers {
            let wal = wal.clone();
            let barrier = barrier.clone();
            hs.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut lat = Vec::new();
                let mut i = (w as u64) << 40;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    wal.append(vec![draft(i)]).await.unwrap();
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort();
    let st = wal.stats();
    println!(
        "appends  writers={writers:>2}  {:>8.0} appends/s  {:>7} appends in {elapsed:.1}s  fdatasyncs={:>6} ({:.1} appends/sync)  \
         latency p50={:?} p99={:?}  {:.0} bytes/record",
        st.appends as f64 / elapsed,
        st.appends,
        st.syncs,
        st.appends as f64 / st.syncs.max(1) as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        st.bytes as f64 / st.records.max(1) as f64,
    );
    wal.close_blocking().unwrap();
}

fn bench_recovery(records: u64) {
    let dir = tempdir();
    let t = Instant::now();
    {
        let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
        let batch = 10_000;
        let mut i = 0;
        while i < records {
            let n = batch.min(records - i);
            wal.append_blocking((i..i + n).map(draft).collect()).unwrap();
            i += n;
        }
        let st = wal.stats();
        println!(
            "generate {records} records: {:.1}s, {} segments, {:.0} MiB",
            t.elapsed().as_secs_f64(),
            st.segments,
            st.bytes as f64 / (1 << 20) as f64
        );
        wal.close_blocking().unwrap();
    }
    for run in 1..=3 {
        let t = Instant::now();
        let (wal, rec) = Wal::open(WalConfig::new(dir.path())).unwrap();
        let el = t.elapsed();
        assert_eq!(rec.records, records);
        println!(
            "recovery run {run}: Wal::open of {} records in {:.2}s ({:.0} records/s; page cache warm)",
            rec.records,
            el.as_secs_f64(),
            rec.records as f64 / el.as_secs_f64()
        );
        drop(wal);
    }
    let t = Instant::now();
    let problems = vibesync_wal::verify(dir.path().join("wal")).unwrap();
    assert!(problems.is_empty());
    println!("verify (full Record parse, offline reader) of {records} records in {:.2}s", t.elapsed().as_secs_f64());
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let secs = env_u64("VIBESYNC_BENCH_SECS", 5);
    let records = env_u64("VIBESYNC_BENCH_RECORDS", 1_000_000);
    println!(
        "vibesync-wal benchmark: {} CPUs, {secs}s per append run",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for writers in [1, 8, 64] {
        bench_appends(writers, secs);
    }
    bench_recovery(records);
}
