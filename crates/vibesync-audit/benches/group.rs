//! Audit group-commit benchmark (plain main, no criterion): `cargo bench -p vibesync-audit`.
//!
//! Feeds the audit thread a steady stream of FINAL marks (like a daemon finalizing sync
//! batches, 2 uuids each, 8 projects) for VIBESYNC_BENCH_SECS (default 5) at
//! VIBESYNC_BENCH_RATE FINALs/s (default 1000), flushes, and reports what was committed
//! (read back from git) and the audit thread's CPU time per FINAL, for group windows of 0
//! (one commit whenever the thread is free), 50 and 200 ms (the default), and two working
//! sets: "hot" (8 objects per project being edited, each FINAL a new state) and "spread"
//! (500 objects per project: nearly every FINAL touches objects no other FINAL of its
//! group touches — the worst case for grouping). Also prints this machine's fdatasync cost,
//! measured in the same run.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use vibesync_audit::{read_history, Audit, AuditConfig, AuditContent, FinalMark};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn uuid(n: u64) -> String {
    format!("6f1c2a4e-4b7d-4a53-9a43-{n:012x}")
}

fn fdatasync_us(dir: &std::path::Path) -> (f64, f64) {
    let mut f = std::fs::File::create(dir.join("sync-probe")).unwrap();
    let mut t: Vec<f64> = (0..200)
        .map(|_| {
            f.write_all(&[0u8; 256]).unwrap();
            let s = Instant::now();
            f.sync_data().unwrap();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

fn main() {
    let secs = env_u64("VIBESYNC_BENCH_SECS", 5);
    let rate = env_u64("VIBESYNC_BENCH_RATE", 1000);
    let tmp = tempfile::tempdir().unwrap();
    let (p50, p99) = fdatasync_us(tmp.path());
    println!("fdatasync on this machine: p50 {p50:.0} µs, p99 {p99:.0} µs");
    for (set, objects) in [("hot", 8u64), ("spread", 500)] {
        for group_ms in [0u64, 50, 200] {
            let dir = tmp.path().join(format!("git-{set}-{group_ms}"));
            let cfg = AuditConfig { group_ms, ..AuditConfig::default() };
            let snapshot = Box::new(|p: &str, u: &str, _since: u64, _upto: u64| {
                Ok(vec![AuditContent::Live(
                    json!({"uuid":u,"project_id":p,"name":"Cube","kind":"object","status":"live","bindings":{"blender":{"editor_ref":"OB:Cube"}}}),
                )])
            });
            let audit = Audit::open_with(&dir, cfg, snapshot).unwrap();
            let start = Instant::now();
            let n = secs * rate;
            let mut seq = 0;
            for i in 0..n {
                // Pace: FINAL i is due at i / rate seconds.
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                seq += 4; // BEGIN, STEP…, COMMIT, FINAL
                audit
                    .note(FinalMark {
                        seq,
                        h: format!("{seq:064x}"),
                        operation_id: format!("op-{i}"),
                        project_id: format!("p{}", i % 8),
                        uuids: vec![uuid(i % objects), uuid((i + 3) % objects)],
                    })
                    .unwrap();
            }
            audit.flush(Duration::from_secs(600)).unwrap();
            let wall = start.elapsed().as_secs_f64();
            let s = audit.stats();
            audit.close();
            let hist = read_history(&dir).unwrap();
            let covered: usize = hist.iter().map(|c| c.operations.len()).sum();
            println!(
            "audit {set:<6} group_ms={group_ms:>3}  FINALs noted {n}  committed (read back) {covered} in {} commits  \
             CPU {:.1} ms total, {:.1} µs/FINAL ({:.2} ms/commit)  wall {wall:.1}s  failures {}",
            hist.len(),
            s.cpu_us as f64 / 1e3,
            s.cpu_us as f64 / covered.max(1) as f64,
            s.cpu_us as f64 / 1e3 / hist.len().max(1) as f64,
            s.failures
        );
            assert_eq!(covered as u64, n, "every FINAL committed exactly once");
        }
    }
}
