//! WAL compaction (docs/WAL.md §11) with the real binary: covered segments go behind
//! `wal/anchor.json`; boot, `vibesync verify`, the registry rebuilt after sled is lost, the
//! replay to an editor that was away since before the anchor (a full resync, never a gap),
//! `history` and `restore` to a point before the anchor stay correct; kill -9 during a
//! compaction loses nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, settle, Mini};

const CONFIG: &str = "[sync]\nbatch_window_ms = 20\nverify_timeout_ms = 5000\n\
    [storage]\nwal_segment_bytes = 8192\nmaintenance_interval_secs = 0\nwal_retention_secs = 0\n";

fn status(data: &Path) -> Value {
    let (code, out, err) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Wait (failing at the deadline) until the checkpoint and the audit cover `seq`.
fn wait_covered(data: &Path, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(data);
        let ck = s["checkpoint"]["seq"].as_u64().unwrap_or(0);
        let audit = s["audit"]["last_audited_seq"].as_u64().unwrap_or(0);
        if ck >= seq && audit >= seq {
            return;
        }
        assert!(Instant::now() < deadline, "checkpoint {ck} / audit {audit} did not reach seq {seq} within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn maintain(data: &Path) -> Value {
    let (code, out, err) = cli(&["maintain", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn first_segment(data: &Path) -> u64 {
    std::fs::read_dir(data.join("wal"))
        .unwrap()
        .filter_map(|e| vibesync_wal::parse_segment_name(e.unwrap().file_name().to_str().unwrap()))
        .min()
        .unwrap()
}

fn transforms(b: &mut Mini, u: &mut Mini, objs: &[String], round: usize) {
    let changes = objs
        .iter()
        .map(|o| json!({"op":"transform","uuid":o,"t":[round as f64 * 0.5, 1, 2],"r":[0,0,0,1],"s":[1,1,1]}))
        .collect();
    b.send_change(&format!("t{round}"), changes, &[]);
    settle(&mut [b, u]);
}

#[test]
fn compaction_keeps_boot_verify_the_registry_replay_and_history_correct() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let objs: Vec<String> = (0..8).map(|_| new_uuid()).collect();
    let items: Vec<(&str, &str, &str)> = objs.iter().map(|o| (o.as_str(), "object", "Keep")).collect();
    register(&mut b.c, "r", &items);
    let creates = objs.iter().enumerate().map(|(i, o)| create(o, &format!("Keep{i}"), [0.0, 0.0, 0.0])).collect();
    b.send_change("c", creates, &[]);
    settle(&mut [&mut b, &mut u]);
    for round in 1..=40 {
        transforms(&mut b, &mut u, &objs, round);
    }
    let seq = status(&data)["seq"].as_u64().unwrap();
    wait_covered(&data, seq - 1);
    let report = maintain(&data);
    let w = &report["wal_compaction"];
    let anchor = w["anchor_seq"].as_u64().unwrap_or_else(|| panic!("nothing compacted: {report:#}"));
    assert!(w["removed_segments"].as_u64().unwrap() > 0, "{w}");
    assert_eq!(first_segment(&data), anchor + 1, "{report:#}");
    assert!(data.join("wal").join(vibesync_wal::ANCHOR_FILE).exists());
    assert_eq!(status(&data)["wal"]["compacted_upto"], json!(anchor));
    for round in 41..=45 {
        transforms(&mut b, &mut u, &objs, round);
    }
    let last_x = 45.0 * 0.5;

    // An editor away since before the anchor (last_seq 1) gets every object, not a delta.
    let mut late = Mini::connect(&d, "unity", 1.0, 1);
    settle(&mut [&mut late]);
    for o in &objs {
        let held = late.states.get(o).unwrap_or_else(|| panic!("{o} missing from the full resync"));
        assert_eq!(held["t"][0].as_f64(), Some(last_x), "{o}: {held}");
    }
    // `restore` to an audit point before the anchor: the audit keeps every point, so the
    // objects go back to a pose the compacted WAL no longer holds, and both editors follow.
    let (code, out, err) = cli(&["history", "--json", "--project", "demo", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let points: Value = serde_json::from_str(&out).unwrap();
    let old = points["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["last_seq"].as_u64().is_some_and(|s| s + 50 < anchor))
        .unwrap_or_else(|| panic!("no audit point well before the anchor {anchor}: {points}"))
        .clone();
    let (code, r, text) =
        crate::restore::restore(&data, &mut [&mut b, &mut u, &mut late], &["--to", old["commit"].as_str().unwrap()]);
    assert_eq!(code, 0, "restore to {old}: {text}");
    assert!(r.is_object(), "{text}");
    for o in &objs {
        let (bx, ux) = (b.states[o]["t"][0].as_f64().unwrap(), u.states[o]["t"][0].as_f64().unwrap());
        assert!(bx < last_x && (bx - ux).abs() < 1e-6, "{o}: restored to {bx} in Blender, {ux} in Unity");
    }
    let expect: Vec<f64> = objs.iter().map(|o| b.states[o]["t"][0].as_f64().unwrap()).collect();
    drop((b, u, late));
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify after compaction:\n{out}\n{err}");
    assert!(err.contains(&format!("compacted up to seq {anchor}")), "{err}");
    // A damaged anchor is one problem, not one per object the unreadable log then seems to
    // lack (docs/WAL.md §11): the derived stores are not compared with a log that cannot be
    // read. A good copy put back, verify is clean again.
    let anchor_file = data.join("wal").join(vibesync_wal::ANCHOR_FILE);
    let good = std::fs::read(&anchor_file).unwrap();
    std::fs::write(&anchor_file, &good[..good.len() / 2]).unwrap();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 1, "verify with a torn anchor:\n{out}\n{err}");
    let problems: Vec<&str> = out.lines().chain(err.lines()).filter(|l| !l.starts_with("note:")).collect();
    assert!(problems.iter().any(|l| l.contains("BadAnchor")), "{out}\n{err}");
    assert!(out.contains("1 problem(s)") || err.contains("1 problem(s)"), "{out}\n{err}");
    assert!(err.contains("not checked — the compaction anchor is damaged"), "{err}");
    std::fs::write(&anchor_file, &good).unwrap();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify with the anchor put back:\n{out}\n{err}");

    // sled lost, and the boot checkpoint with it: the registry is rebuilt from the anchor's
    // base and the kept log, and a fresh editor is sent today's state.
    std::fs::remove_dir_all(data.join("registry")).unwrap();
    std::fs::remove_file(data.join("checkpoint.json")).unwrap();
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let s = status(&data);
    assert_eq!(s["registry"]["live"], json!(objs.len()), "{}", s["registry"]);
    let mut fresh = Mini::connect(&d, "unity", 1.0, 0);
    settle(&mut [&mut fresh]);
    for (o, x) in objs.iter().zip(&expect) {
        assert_eq!(fresh.states[o]["t"][0].as_f64(), Some(*x), "{o} after the rebuild: today's (restored) pose");
    }
    let (code, out, err) = cli(&["history", "--json", "--project", "demo", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let h: Value = serde_json::from_str(&out).unwrap();
    assert!(h["points"].as_array().is_some_and(|p| !p.is_empty()), "{h}");
    drop(fresh);
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify after the rebuild:\n{out}\n{err}");
}

/// Every registered object is there, unchanged, and the counter is exact.
fn assert_registry(d: &Daemon, data: &Path, live: &[(String, String)]) {
    assert_eq!(status(data)["registry"]["live"], json!(live.len()));
    let mut c = d.client("blender");
    for chunk in live.chunks(500) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|(u, n)| json!({"uuid": u, "kind": "object", "name": n, "editor_ref": format!("OB:{n}")}))
            .collect();
        let ack = c.request(&json!({"type":"register","request_id":"check","items": items})).unwrap();
        for (r, (u, _)) in ack["results"].as_array().unwrap().iter().zip(chunk) {
            assert_eq!(r["status"], "unchanged", "uuid {u} lost or altered: {r}");
        }
    }
}

#[test]
fn kill9_during_compaction_loses_nothing() {
    let rounds: u64 = std::env::var("VIBESYNC_COMPACTION_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let mut live = Vec::new();
    for round in 0..rounds {
        let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
        assert_registry(&d, &data, &live);
        live.extend(register_n(&d, &format!("r{round}-"), 150, 25));
        let seq = status(&data)["seq"].as_u64().unwrap();
        wait_covered(&data, seq - 1);
        // Compaction in flight, then kill -9 at a different moment each round.
        let data2 = data.clone();
        let t = std::thread::spawn(move || cli(&["maintain", "--json", "--data-dir", data2.to_str().unwrap()]));
        std::thread::sleep(Duration::from_millis(round * 9));
        d.kill9();
        let _ = t.join();
    }
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    assert_registry(&d, &data, &live);
    // Compaction still works after all that, and the log verifies.
    let seq = status(&data)["seq"].as_u64().unwrap();
    wait_covered(&data, seq - 1);
    maintain(&data);
    assert!(first_segment(&data) > 1, "compacted at least once");
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify:\n{out}\n{err}");
}
