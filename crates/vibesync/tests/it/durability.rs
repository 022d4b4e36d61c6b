//! Crash safety with the real binary: kill -9 while clients register, torn tails, flipped
//! bytes, interrupted transactions, and a registry deleted or corrupted on disk.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use vibesync_wal::{Phase, RecordDraft, Wal, WalConfig};

use crate::common::*;

fn last_segment(data: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Re-register everything `acked` as the same editor: every item must be `unchanged`
/// (present, same name and binding) — proof that each acknowledged registration survived.
fn assert_all_present(d: &Daemon, acked: &[(String, String)]) {
    let mut c = d.client("blender");
    for chunk in acked.chunks(500) {
        let items: Vec<_> = chunk
            .iter()
            .map(|(u, n)| json!({"uuid": u, "kind": "object", "name": n, "editor_ref": format!("OB:{n}")}))
            .collect();
        let ack = c.request(&json!({"type":"register","request_id":"check","items": items})).unwrap();
        for (r, (u, _)) in ack["results"].as_array().unwrap().iter().zip(chunk) {
            assert_eq!(r["status"], "unchanged", "acknowledged uuid {u} lost or altered: {r}");
        }
    }
}

#[test]
fn kill9_while_registering_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    let rounds = 6;
    let mut d = Daemon::start(&data);
    for round in 0..rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (addr, token, acked, stop) = (d.addr, d.token.clone(), acked.clone(), stop.clone());
            writers.push(std::thread::spawn(move || {
                let Ok(mut c) = Client::connect(addr, &token, "demo", "blender") else { return };
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let batch: Vec<(String, String)> =
                        (0..4).map(|k| (new_uuid(), format!("r{round}w{w}i{i}k{k}"))).collect();
                    let items: Vec<_> = batch
                        .iter()
                        .map(|(u, n)| json!({"uuid": u, "kind": "object", "name": n, "editor_ref": format!("OB:{n}")}))
                        .collect();
                    match c.request(&json!({"type":"register","request_id": format!("{i}"), "items": items})) {
                        Ok(ack) if ack["type"] == "ack" => {
                            assert!(
                                ack["results"].as_array().unwrap().iter().all(|r| r["status"] == "registered"),
                                "{ack}"
                            );
                            acked.lock().unwrap().extend(batch);
                        }
                        _ => return, // daemon killed mid-request: this batch was never acknowledged
                    }
                    i += 1;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        d.kill9();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in writers {
            w.join().expect("writer thread");
        }
        d = Daemon::start(&data);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the load generator made too little progress ({})", acked.len());
    assert_all_present(&d, &acked);
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = verify(&data);
    let audit_log: String = d.stderr_log().lines().filter(|l| l.contains("audit")).map(|l| format!("{l}\n")).collect();
    assert_eq!(code, 0, "verify after {rounds} kill -9 rounds:\n{out}{err}\n{audit_log}");
    let boot: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("boot.json")).unwrap()).unwrap();
    assert_eq!(boot["last_boot_success"], true);
}

#[test]
fn torn_tail_is_quarantined_and_nothing_before_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let u = new_uuid();
    register(&mut c, "r", &[(&u, "object", "Keep")]);
    drop(c);
    d.stop();
    let seg = last_segment(&data);
    let before = std::fs::read(&seg).unwrap();
    std::fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"{\"seq\":999,\"ts\":\"2026-").unwrap();

    let mut d = Daemon::start(&data);
    assert_eq!(std::fs::read(&seg).unwrap()[..before.len()], before[..]);
    let q: Vec<_> = std::fs::read_dir(data.join("quarantine")).unwrap().collect();
    assert!(!q.is_empty(), "torn bytes must be kept in quarantine");
    assert_all_present(&d, &[(u, "Keep".into())]);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn flipped_byte_mid_log_refuses_boot_until_repair() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    for i in 0..3 {
        register(&mut c, &format!("r{i}"), &[(&new_uuid(), "object", &format!("O{i}"))]);
    }
    drop(c);
    d.stop();
    let seg = last_segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let first_nl = bytes.iter().position(|b| *b == b'\n').unwrap();
    let at = first_nl + 20; // inside the second record
    bytes[at] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();

    let (code, out, _) = verify(&data);
    assert_eq!(code, 1);
    assert!(out.contains(&format!("at byte {}", first_nl + 1)), "verify names file and offset: {out}");

    let err = Daemon::try_start(&data, &[], "127.0.0.1:0").err().expect("boot must refuse corruption");
    assert!(err.contains("corruption") && err.contains("--repair"), "{err}");

    let mut d = Daemon::start_with(&data, &["--repair"], "127.0.0.1:0");
    let mut c = d.client("blender");
    let st = c.request(&json!({"type":"status"})).unwrap();
    // Record 1 (a BEGIN) survives; its transaction lost its COMMIT, so boot rolled it back.
    assert_eq!(st["seq"], 2, "everything from the bad record on was quarantined: {st}");
    assert_eq!(st["registry"]["live"], 0);
    let recs = wal_records(&data);
    assert_eq!(recs[1]["phase"], "ROLLBACK");
    assert_eq!(recs[1]["error_code"], "RECOVERED_INCOMPLETE");
    // Work continues, and the audit history follows the repaired log.
    let u = new_uuid();
    assert_eq!(statuses(&register(&mut c, "after", &[(&u, "object", "After")])), ["registered"]);
    drop(c);
    d.stop();
    let git_dir = data.join(".git_safety");
    let ls = std::process::Command::new("git")
        .args(["--git-dir", git_dir.to_str().unwrap(), "ls-tree", "-r", "--name-only", "HEAD"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains(&u), "audit rebuilt after repair");
    assert!(std::fs::read_dir(data.join("quarantine")).unwrap().count() > 0);
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn begin_without_commit_is_rolled_back_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let live = new_uuid();
    register(&mut c, "r", &[(&live, "object", "Live")]);
    drop(c);
    d.stop();

    // A crash between BEGIN and COMMIT: written with the WAL library while the daemon is down.
    let fresh = new_uuid();
    let (wal, _) = Wal::open(WalConfig::new(&data)).unwrap();
    let mk = |phase, payload| RecordDraft {
        session_id: "crashed".into(),
        operation_id: "op-interrupted".into(),
        uuids: vec![live.clone(), fresh.clone()],
        project_id: "demo".into(),
        phase,
        outcome: vibesync_wal::Outcome::Pending,
        error_code: None,
        payload,
    };
    wal.append_blocking(vec![
        mk(Phase::Begin, json!({"op":"register"})),
        mk(Phase::Step, json!({"op":"register","uuid":fresh,"kind":"object","name":"Half","editor":"blender","editor_ref":"OB:Half"})),
    ])
    .unwrap();
    wal.close_blocking().unwrap();
    drop(wal);

    let mut d = Daemon::start(&data);
    let recs = wal_records(&data);
    let rb = recs
        .iter()
        .find(|r| r["phase"] == "ROLLBACK" && r["operation_id"] == "op-interrupted")
        .expect("ROLLBACK written at boot");
    assert_eq!(rb["error_code"], "RECOVERED_INCOMPLETE");
    let mut c = d.client("blender");
    // The half-written registration was never applied; the live uuid it touched is quarantined.
    let ack = register(&mut c, "after", &[(&fresh, "object", "Half"), (&live, "object", "Live")]);
    assert_eq!(statuses(&ack)[0], "registered", "{ack}");
    assert_eq!(ack["results"][1]["error_code"], "QUARANTINED", "{ack}");
    drop(c);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn registry_is_rebuilt_from_the_wal_when_deleted_or_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let mut acked = Vec::new();
    for i in 0..20 {
        let (u, n) = (new_uuid(), format!("Obj{i}"));
        register(&mut c, "r", &[(&u, "object", &n)]);
        acked.push((u, n));
    }
    let gone = acked.pop().unwrap();
    c.request(&json!({"type":"tombstone","request_id":"t","uuids":[gone.0]})).unwrap();
    drop(c);
    d.stop();

    // 1. Deleted.
    std::fs::remove_dir_all(data.join("registry")).unwrap();
    let mut d = Daemon::start(&data);
    assert_all_present(&d, &acked);
    let st = d.client("cli").request(&json!({"type":"status"})).unwrap();
    assert_eq!(st["registry"]["tombstoned"], 1);
    d.stop();

    // 2. Corrupted: every file in the sled directory overwritten with garbage.
    for e in walk(&data.join("registry")) {
        let len = std::fs::metadata(&e).unwrap().len() as usize;
        std::fs::write(&e, vec![0xA5u8; len.max(64)]).unwrap();
    }
    let started = Instant::now();
    let mut d = Daemon::start(&data);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_all_present(&d, &acked);
    d.stop();
    let quarantined: HashSet<String> = std::fs::read_dir(data.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        quarantined.iter().any(|n| n.starts_with("registry")),
        "damaged registry kept in quarantine: {quarantined:?}"
    );
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A sync batch left PROVISIONAL by a crash is rolled back deterministically at boot: no
/// quarantine, the registry keeps the last committed state, editors get it on reconnect.
#[test]
fn provisional_sync_batch_is_rolled_back_without_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = crate::sync::fast_config(dir.path(), 20, 5000);
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut b = crate::sync::Mini::connect(&d, "blender", 1.0, 0);
    let x = new_uuid();
    b.send_change("c", vec![crate::sync::create(&x, "X", [1.0, 2.0, 3.0])], &[]);
    crate::sync::settle(&mut [&mut b]);
    drop(b);
    d.stop();

    let (wal, _) = Wal::open(WalConfig::new(&data)).unwrap();
    let mk = |phase, payload| RecordDraft {
        session_id: "sync".into(),
        operation_id: "batch-cut-by-a-crash".into(),
        uuids: vec![x.clone()],
        project_id: "demo".into(),
        phase,
        outcome: vibesync_wal::Outcome::Pending,
        error_code: None,
        payload,
    };
    let moved = json!({"kind":"object","name":"X","parent":null,"visible":true,"t":[9.0,9.0,9.0],"r":[0.0,0.0,0.0,1.0],"s":[1.0,1.0,1.0]});
    wal.append_blocking(vec![
        mk(Phase::Begin, json!({"op":"sync","path":"fast","ops":["transform"]})),
        mk(Phase::Step, json!({"op":"state","uuid":x,"state":moved})),
        mk(Phase::Provisional, json!({"op":"sync"})),
    ])
    .unwrap();
    wal.close_blocking().unwrap();
    drop(wal);

    let d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let recs = wal_records(&data);
    let rb = recs
        .iter()
        .find(|r| r["phase"] == "ROLLBACK" && r["operation_id"] == "batch-cut-by-a-crash")
        .expect("rolled back at boot");
    assert_eq!(rb["error_code"], "RECOVERED_INCOMPLETE");
    assert!(!recs.iter().any(|r| r["payload"]["op"] == "quarantine"), "sync batches are not quarantined");
    // A reconnecting editor gets the last committed state, and may keep editing.
    let mut u = crate::sync::Mini::connect(&d, "unity", 1.0, 0);
    assert!(u.pump_until(Duration::from_secs(5), |m| m.states.contains_key(&x)));
    assert_eq!(u.states[&x]["t"], json!([1.0, 2.0, 3.0]));
    let ack = u.send_change("m", vec![json!({"op":"transform","uuid":x,"t":[4,4,4],"r":[0,0,0,1],"s":[1,1,1]})], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
}

/// A WAL segment moved away from the middle of the log (docs/WAL.md §7): the boot refuses
/// with `MissingSegment`'s message (put it back first; what `--repair` would cost), `verify`
/// lists the gap and leaves the registry and audit unchecked (any difference would be the
/// gap's) instead of calling it a lost tail and advising `--repair`; with the segment back,
/// the daemon starts and nothing is lost.
#[test]
fn a_missing_middle_segment_is_refused_and_verified_without_repair_advice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("small-segments.toml");
    std::fs::write(&cfg, "[storage]\nwal_segment_bytes = 4096\n").unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let live = register_n(&d, "m", 120, 10);
    d.stop();
    let mut segs: Vec<std::path::PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 6, "{} segments", segs.len());
    let victim = segs[segs.len() / 2].clone();
    let aside = dir.path().join("aside.jsonl");
    std::fs::rename(&victim, &aside).unwrap();

    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let put_back = err.find("Put the missing segment back").unwrap_or_else(|| panic!("{err}"));
    assert!(err[put_back..].contains("--repair") && err.contains("are missing in front of"), "{err}");

    let (code, out, err) = verify(&data);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("SeqGap"), "{out}");
    assert!(err.contains("not checked"), "{err}");
    assert!(!out.contains("registry:") && !out.contains("lost its tail"), "no derived-store noise: {out}");

    std::fs::rename(&aside, &victim).unwrap();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
    let d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut c = d.client("blender");
    // Every object registered before the stop is still live: registered again, it is no
    // new record.
    let items: Vec<(&str, &str, &str)> = live.iter().map(|(u, n)| (u.as_str(), "object", n.as_str())).collect();
    let ack = register(&mut c, "again", &items);
    assert!(statuses(&ack).iter().all(|s| s != "registered"), "{ack}");
}
