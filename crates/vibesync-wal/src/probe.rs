//! What a durability figure costs on this machine: the latency of one small append followed
//! by `fdatasync`, measured in the directory under test. Benchmarks print it beside every
//! durability figure (docs/BENCHMARKS.md), because a number of appends per second means
//! nothing without the cost of the sync it waited for.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Latency of `write(300 bytes)` + `fdatasync`, over `n` appends to one new file.
#[derive(Debug, Clone, Copy)]
pub struct SyncCost {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
}

impl std::fmt::Display for SyncCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fdatasync (300-byte append, n={}): p50 {:.0} us, p99 {:.0} us",
            self.samples,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6
        )
    }
}

/// Measure in `dir` (a scratch file is created there and removed).
pub fn fdatasync_cost(dir: &Path, n: usize) -> std::io::Result<SyncCost> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".fdatasync-probe-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let line = [b'x'; 300];
    let mut lat = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let t = Instant::now();
        f.write_all(&line)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    lat.sort();
    let at = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Ok(SyncCost { samples: lat.len(), p50: at(0.5), p99: at(0.99) })
}
