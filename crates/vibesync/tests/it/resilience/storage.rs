//! Storage faults.
//!
//! * A full disk, for real: the data dir on a 2 MiB tmpfs (needs root + `mount`), filled with
//!   registrations until writes fail. The daemon answers `STORAGE_FAILED` with a clear
//!   message, exits non-zero, and every uuid it acknowledged is in the WAL and the registry
//!   once the data dir is copied to a normal disk and booted.
//! * The same contract with an injected fdatasync / write / read-back failure (the WAL's
//!   `fault-injection` feature, daemon in-process): runs everywhere, and stands in for the
//!   tmpfs test where mounting is impossible.
//! * A corrupted sled directory is rebuilt from the WAL (`durability.rs` covers deletion and
//!   garbage; here: a truncated sled file after a sync batch, state included).
//! * A corrupted sidecar is reported by verify and rewritten at boot (`cli.rs` covers it; here
//!   with a checksum-valid-looking but edited sidecar).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_daemon::Config;
use vibesync_wal::Fault;

use super::editor::*;
use super::inproc::InProc;
use crate::common::*;

/// Register batches of `n` uuids with long names until a reply is not an ack; returns
/// (acknowledged uuids, the first non-ack reply or the error).
fn fill(c: &mut Client, n: usize, limit: usize) -> (Vec<(String, String)>, Result<Value, String>) {
    let mut acked = vec![];
    for i in 0..limit {
        let batch: Vec<(String, String)> =
            (0..n).map(|k| (new_uuid(), format!("fill-{i}-{k}-{}", "x".repeat(900)))).collect();
        let items: Vec<Value> = batch
            .iter()
            .map(|(u, name)| json!({"uuid":u,"kind":"object","name":name,"editor_ref":eref(name)}))
            .collect();
        match c.request(&json!({"type":"register","request_id":format!("f{i}"),"items":items})) {
            Ok(ack) if ack["type"] == "ack" => {
                assert!(statuses(&ack).iter().all(|s| s == "registered"), "{ack}");
                acked.extend(batch);
            }
            Ok(other) => return (acked, Ok(other)),
            Err(e) => return (acked, Err(e.to_string())),
        }
    }
    panic!("{limit} requests did not fill the disk");
}

/// The editor_ref a test registration uses for `name`.
fn eref(name: &str) -> String {
    format!("OB:{}", &name[..name.len().min(12)])
}

fn wal_uuids(data: &Path) -> HashSet<String> {
    wal_records(data)
        .iter()
        .filter(|r| r["phase"] == "STEP")
        .filter_map(|r| r["payload"]["uuid"].as_str().map(str::to_string))
        .collect()
}

fn assert_storage_failed(reply: &Result<Value, String>) {
    let r = reply.as_ref().unwrap_or_else(|e| panic!("the failing request got no STORAGE_FAILED answer: {e}"));
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["code"], "STORAGE_FAILED", "{r}");
    let m = r["message"].as_str().unwrap();
    assert!(m.contains("not acknowledged") && m.contains("stopping"), "clear message: {m}");
}

/// Boot a copy of `data` on a normal disk: every acked uuid is in the WAL and `unchanged`;
/// after a graceful stop verify is clean.
fn recovered_copy_has(data: &Path, copy: &Path, acked: &[(String, String)]) {
    copy_dir(data, copy);
    let mut d = Daemon::start(copy);
    let in_wal = wal_uuids(copy);
    for (u, _) in acked {
        assert!(in_wal.contains(u), "acknowledged {u} is not in the WAL");
    }
    let mut c = d.client("blender");
    for chunk in acked.chunks(500) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|(u, name)| json!({"uuid":u,"kind":"object","name":name,"editor_ref":eref(name)}))
            .collect();
        let ack = c.request(&json!({"type":"register","request_id":"chk","items":items})).unwrap();
        for (r, (u, _)) in ack["results"].as_array().unwrap_or_else(|| panic!("{ack}")).iter().zip(chunk) {
            assert_eq!(r["status"], "unchanged", "acknowledged {u} lost: {r}");
        }
    }
    drop(c);
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = verify(copy);
    assert_eq!(code, 0, "verify of the recovered copy:\n{out}{err}");
}

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_answers_storage_failed_acks_only_durable_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let size = env_or("VIBESYNC_TMPFS_MIB", 2);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}m"), "tmpfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success().then_some(()).ok_or(String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = mounted {
        eprintln!("full_disk: cannot mount a tmpfs ({}); running the injected-fault variant instead", e.trim());
        injected_fault_case(Fault::FailNextSync);
        return;
    }
    let _guard = Mount(mnt.clone());
    // The data dir is the mount point itself, so the test's stderr log lives outside it.
    let mut d = Daemon::start(&mnt);
    let pid = d.pid();
    let mut c = d.client("blender");
    let (acked, reply) = fill(&mut c, 50, 10_000);
    assert!(!acked.is_empty(), "something fit on the disk before it filled");
    assert_storage_failed(&reply);
    // Nothing more is accepted, and the daemon stops on its own with a non-zero status.
    if let Ok(more) = c.request(
        &json!({"type":"register","request_id":"after","items":[{"uuid":new_uuid(),"kind":"object","name":"late"}]}),
    ) {
        assert!(
            more["code"] == "STORAGE_FAILED" || more["code"] == "SHUTTING_DOWN",
            "no mutation after a storage failure: {more}"
        );
    }
    let mut child = d.child.take().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "daemon {pid} did not stop after STORAGE_FAILED");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "exit status after a storage failure must be non-zero: {status:?}");
    let log = d.stderr_log();
    assert!(log.contains("storage failure"), "the log says why it stopped: {}", &log[log.len().saturating_sub(2000)..]);
    eprintln!(
        "full disk: {} uuids acknowledged on a {size} MiB tmpfs, then STORAGE_FAILED, exit {status}",
        acked.len()
    );
    recovered_copy_has(&mnt, &dir.path().join("bigger"), &acked);
}

/// The daemon in-process on a tokio runtime, the WAL told to fail once.
fn injected_fault_case(fault: Fault) {
    let d = InProc::start(Config::default().sync.batch_window_ms);
    let data = d.daemon.data_dir().root().to_path_buf();
    let mut c = d.client("blender");
    let mut acked = vec![];
    for i in 0..5 {
        let (u, n) = (new_uuid(), format!("ok{i}"));
        let ack = c
            .request(&json!({"type":"register","request_id":"r","items":[{"uuid":u,"kind":"object","name":n,"editor_ref":eref(&n)}]}))
            .unwrap();
        assert_eq!(statuses(&ack), ["registered"]);
        acked.push((u, n));
    }
    d.daemon.stores().wal.inject_fault(fault);
    let doomed = new_uuid();
    let reply = c
        .request(&json!({"type":"register","request_id":"doomed","items":[{"uuid":doomed,"kind":"object","name":"doomed","editor_ref":"OB:doomed"}]}))
        .map_err(|e| e.to_string());
    assert_storage_failed(&reply);
    assert_eq!(reply.unwrap()["request_id"], "doomed");
    // The server loop ends by itself (the fatal notification), without a signal.
    let dir = d.assert_stops();
    drop(c);
    let boot: Value = serde_json::from_slice(&std::fs::read(data.join("boot.json")).unwrap()).unwrap();
    assert_eq!(boot["running"], true, "a storage failure is not marked as a clean shutdown: {boot}");
    assert!(boot["last_clean_shutdown"].is_null(), "{boot}");
    // Restart on the same (now healthy) disk: everything acked is there, verify clean.
    let copy = dir.path().join("copy");
    recovered_copy_has(&data, &copy, &acked);
    // The doomed registration was never acknowledged; if the cut-back failed it may be in
    // the log, but only as a closed transaction (verify above is clean either way).
}

#[test]
fn injected_fsync_failure_answers_storage_failed_and_stops() {
    injected_fault_case(Fault::FailNextSync);
}

#[test]
fn injected_write_and_readback_failures_answer_storage_failed_and_stop() {
    injected_fault_case(Fault::FailNextWrite);
    injected_fault_case(Fault::CorruptNextReadBack);
}

#[test]
fn sled_truncated_after_sync_is_rebuilt_from_the_wal_with_states() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "sled", 20, 3000, "");
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut b = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
    let ids: Vec<String> = (0..5).map(|_| new_uuid()).collect();
    b.change("c", ids.iter().enumerate().map(|(i, u)| create_op(u, &format!("S{i}"), [i as f64, 1.0, 2.0])).collect())
        .unwrap();
    assert!(b.pump_until(Duration::from_secs(10), |e| !e.results.is_empty()).unwrap());
    b.change("m", vec![transform_op(&ids[0], [7.0, 8.0, 9.0])]).unwrap();
    assert!(b.pump_until(Duration::from_secs(10), |e| e.results.len() >= 2).unwrap());
    assert!(b.results.iter().all(|r| r["outcome"] == "committed"), "{:?}", b.results);
    let expected = b.states.clone();
    drop(b);
    assert_eq!(d.stop(), Some(0));

    // Truncate every sled file to half its length (a torn page cache flush).
    fn files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut fs = vec![];
    files(&data.join("registry"), &mut fs);
    assert!(!fs.is_empty());
    for f in &fs {
        let len = std::fs::metadata(f).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(len / 2).unwrap();
    }
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut fresh = Editor::connect(d.addr, &d.token, "unity", 0).unwrap();
    assert!(fresh.pump_until(Duration::from_secs(10), |e| e.states.len() >= ids.len()).unwrap());
    for u in &ids {
        assert_eq!(
            vibesync_protocol::state::state_hash(&fresh.states[u]),
            vibesync_protocol::state::state_hash(&expected[u]),
            "{u}: state rebuilt from the WAL"
        );
    }
    drop(fresh);
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn edited_sidecar_is_reported_by_verify_and_rewritten_at_boot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let u = new_uuid();
    register(&mut c, "r", &[(&u, "object", "Side")]);
    drop(c);
    assert_eq!(d.stop(), Some(0));
    let p = data.join("registry.sidecar.json");
    let orig = std::fs::read_to_string(&p).unwrap();
    assert!(orig.contains("Side"), "the sidecar lists the record");
    // A plausible edit (valid JSON, name changed) — only the checksum can catch it.
    std::fs::write(&p, orig.replace("Side", "Edit")).unwrap();
    let (code, out, _) = verify(&data);
    assert_eq!(code, 1, "verify reports an edited sidecar: {out}");
    assert!(out.contains("sidecar"), "{out}");
    let mut d = Daemon::start(&data);
    assert_eq!(ping_then_stop(&mut d), Some(0));
    let now = std::fs::read_to_string(&p).unwrap();
    assert!(now.contains("Side") && !now.contains("Edit"), "the sidecar is rewritten from the registry");
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}
