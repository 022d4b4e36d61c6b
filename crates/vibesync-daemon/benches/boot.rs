//! Daemon boot time with a WAL of N records (default 1,000,000).
//!
//! `cargo bench -p vibesync-daemon --bench boot` writes N records as register transactions
//! (BEGIN, 2 STEPs, COMMIT, FINAL: 2 uuids per transaction) through the WAL library, then
//! times `vibesync_daemon::open` — WAL verification + registry + audit + sidecar — in four
//! situations: first boot (registry and audit built from the WAL, no checkpoint), a restart
//! with everything up to date (the checkpoint written at the clean shutdown), the same
//! restart without a checkpoint (the whole log read, as before checkpoints existed), and a
//! restart after the registry directory was deleted (rebuild). The machine's fdatasync cost
//! is printed first.
//!
//! `BOOT_DIR=<dir>` keeps the data directory: a first run writes the log and runs the first
//! boot; with `BOOT_ONLY=restart` a later run over the same directory only times the
//! restart with the checkpoint (and keeps the directory), to compare builds on one log.

use std::time::Instant;

use serde_json::json;
use vibesync_daemon::{Config, ServeOptions};
use vibesync_wal::{Phase, RecordDraft, Wal, WalConfig};

/// The allocator of the `vibesync` binary, so this bench times what the daemon does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::var("BOOT_LOG").is_ok() {
        tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    }
    let n: u64 = std::env::var("BOOT_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let kept = std::env::var_os("BOOT_DIR").map(std::path::PathBuf::from);
    let only_restart = std::env::var("BOOT_ONLY").is_ok_and(|v| v == "restart");
    let dir = kept
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vibesync-boot-bench-{}", std::process::id())));
    let reuse = kept.is_some() && dir.join("wal").exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match vibesync_wal::probe::fdatasync_cost(&dir, 500) {
        Ok(c) => println!("{c}"),
        Err(e) => println!("fdatasync probe failed: {e}"),
    }
    let t = Instant::now();
    if !reuse {
        let (wal, _) = Wal::open(WalConfig::new(&dir)).unwrap();
        let mut written = 0u64;
        let mut batch = Vec::new();
        while written < n {
            let op = uuid::Uuid::new_v4().to_string();
            let (a, b) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
            let d = |phase, payload| RecordDraft {
                session_id: "bench".into(),
                operation_id: op.clone(),
                uuids: vec![a.clone(), b.clone()],
                project_id: "bench".into(),
                phase,
                outcome: if phase == Phase::Begin { vibesync_wal::Outcome::Pending } else { vibesync_wal::Outcome::Ok },
                error_code: None,
                payload,
            };
            batch.push(d(Phase::Begin, json!({"op":"register","items":2})));
            for u in [&a, &b] {
                batch.push(d(Phase::Step, json!({"op":"register","uuid":u,"kind":"object","name":format!("Object {u}"),"editor":"blender","editor_ref":format!("OB:{u}"),"session_id":"s","client_id":"c"})));
            }
            batch.push(d(Phase::Commit, json!({"op":"register"})));
            batch.push(d(Phase::Final, json!({})));
            written += 5;
            if batch.len() >= 5000 {
                wal.append_blocking(std::mem::take(&mut batch)).unwrap();
            }
        }
        if !batch.is_empty() {
            wal.append_blocking(batch).unwrap();
        }
        wal.close_blocking().unwrap();
    }
    let bytes: u64 = std::fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!("wrote {n} records ({:.0} MiB) in {:.1} s", bytes as f64 / 1048576.0, t.elapsed().as_secs_f64());

    let mut cfg = Config::default();
    cfg.storage.data_dir = dir.display().to_string();
    cfg.audit.enabled = std::env::var("BOOT_AUDIT").map(|v| v != "0").unwrap_or(true);
    if let Some(mb) = std::env::var("BOOT_CACHE_MB").ok().and_then(|s| s.parse::<u64>().ok()) {
        cfg.storage.registry_cache_bytes = mb << 20;
    }
    let boot = |label: &str| {
        let t = Instant::now();
        let d = vibesync_daemon::open(cfg.clone(), &ServeOptions::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let opened = t.elapsed();
        let read = d.stores().status_json()["boot"]["wal_records_read"].clone();
        rt.block_on(d.shutdown());
        println!("{label:<48} {:>8.2} s  (WAL records read: {read})", opened.as_secs_f64());
    };
    if only_restart {
        boot("restart, everything up to date (checkpoint)");
        return;
    }
    if !reuse {
        boot("first boot (registry + audit built)");
    }
    boot("restart, everything up to date (checkpoint)");
    if kept.is_some() {
        return;
    }
    std::fs::remove_file(vibesync_daemon::checkpoint::path(&dir)).unwrap();
    boot("restart, no checkpoint (whole log read)");
    std::fs::remove_dir_all(dir.join("registry")).unwrap();
    boot("restart, registry deleted (rebuild)");
    let _ = std::fs::remove_dir_all(&dir);
}
