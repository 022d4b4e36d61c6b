//! `vibesync history` and `vibesync restore` against the real daemon, with two protocol
//! editors that apply and verify what they are sent.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, fast_config, settle, until, Mini};

/// Wait until the audit has committed everything FINAL (fails at the deadline): its own
/// watermark, not `history`'s newest point — a registration's FINAL, which makes no audit
/// commit, may be the WAL's last FINAL, and `history` then never reached it.
fn audit_caught_up(data: &std::path::Path) {
    audit_caught_up_all(data);
}

fn history(data: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["history", "--json", "--project", "demo", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["points"].as_array().unwrap().clone()
}

/// Run `vibesync restore …` while both editors keep answering their batches.
pub(crate) fn restore(data: &std::path::Path, minis: &mut [&mut Mini], extra: &[&str]) -> (i32, Value, String) {
    let mut child = Command::new(BIN)
        .args(["restore", "--json", "--project", "demo", "--data-dir", data.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "restore did not finish within 90 s");
        for m in minis.iter_mut() {
            m.drain(Duration::from_millis(30));
        }
    }
    let out = child.wait_with_output().unwrap();
    settle(minis);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn history_lists_points_and_restore_is_a_synced_undoable_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = fast_config(dir.path(), 0, 5000);
    let mut d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (a, c) = (new_uuid(), new_uuid());
    // Editors register their objects before syncing them (as the real ones do).
    let ack = register(&mut b.c, "r", &[(&a, "object", "Anvil"), (&c, "object", "Crate")]);
    assert_eq!(statuses(&ack), ["registered", "registered"]);

    // Point 1: A created at x = 1.
    b.send_change("c1", vec![create(&a, "Anvil", [1.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);
    audit_caught_up(&data);
    let p1 = history(&data, &[])[0].clone();
    assert_eq!(p1["changes"][0]["uuid"], a.as_str(), "{p1}");
    assert_eq!(p1["changes"][0]["change"], "created");
    assert_eq!(p1["who"][0]["editor"], "blender", "{p1}");
    std::thread::sleep(Duration::from_millis(1100)); // distinct commit times (seconds) for --to TIME

    // Point 2: A moved to x = 2, C created.
    b.send_change("c2", vec![json!({"op":"transform","uuid":a,"t":[2,0,0],"r":[0,0,0,1],"s":[1,1,1]})], &[]);
    settle(&mut [&mut b, &mut u]);
    b.send_change("c3", vec![create(&c, "Crate", [0.0, 5.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);
    audit_caught_up(&data);
    assert_eq!(u.states[&a]["t"], json!([2.0, 0.0, 0.0]));
    let points = history(&data, &[]);
    assert!(points.len() >= 3, "{points:?}");
    let moved = points
        .iter()
        .find(|p| p["changes"].as_array().unwrap().iter().any(|x| x["uuid"] == a.as_str() && x["change"] == "changed"))
        .unwrap();
    assert!(moved["changes"][0]["fields"].as_array().unwrap().contains(&json!("transform")), "{moved}");
    assert_eq!(moved["who"][0]["editor"], "blender", "{moved}");
    let only_c = history(&data, &["--uuid", &c]);
    assert_eq!(only_c.len(), 1, "{only_c:?}");
    let p2_seq = points[0]["last_seq"].as_u64().unwrap().to_string();
    let (code, out, _) = cli(&["history", "--project", "demo", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("Anvil") && out.contains("blender (session"), "{out}");

    // Restore to point 1 by commit: A back at x = 1 and C gone — in both editors.
    let commit = format!("commit:{}", &p1["commit"].as_str().unwrap()[..10]);
    let (code, r, text) = restore(&data, &mut [&mut b, &mut u], &["--to", &commit]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["outcome"], "committed", "{r}");
    assert_eq!(r["changes"], 2, "{r}");
    for (who, m) in [("blender", &b), ("unity", &u)] {
        let last = (m.batches.last(), m.results.last());
        assert_eq!(
            m.states[&a]["t"],
            json!([1.0, 0.0, 0.0]),
            "{who}: restored everywhere (last batch, result: {last:?})"
        );
        assert!(!m.states.contains_key(&c), "{who}: C did not exist at point 1 (last batch, result: {last:?})");
    }
    audit_caught_up(&data);
    let after = history(&data, &[]);
    assert_eq!(after.len(), points.len() + 1, "a restore adds history, never rewrites it");
    assert_eq!(after[0]["who"][0]["editor"], "cli", "made by a person from a cli session: {}", after[0]);
    assert_ne!(after[0]["who"][0]["session_id"], b.c.welcome["session_id"]);
    // Restoring to where we are is a no-op.
    let (code, r, text) = restore(&data, &mut [&mut b, &mut u], &["--to", &commit]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["outcome"], "nothing_to_do", "{r}");

    // Undo the restore with another restore (by seq): A at x = 2 and C back.
    let (code, r, text) = restore(&data, &mut [&mut b, &mut u], &["--to", &p2_seq]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["outcome"], "committed", "{r}");
    for m in [&b, &u] {
        assert_eq!(m.states[&a]["t"], json!([2.0, 0.0, 0.0]));
        assert_eq!(m.states[&c]["name"], "Crate", "a deleted object comes back");
    }

    // One uuid, by time: A back to point 1, C untouched.
    let (code, r, text) = restore(&data, &mut [&mut b, &mut u], &["--to", p1["time"].as_str().unwrap(), "--uuid", &a]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["changes"], 1, "{r}");
    assert_eq!(u.states[&a]["t"], json!([1.0, 0.0, 0.0]));
    assert!(u.states.contains_key(&c));

    // Bad targets are clear errors.
    let (code, _, text) = restore(&data, &mut [&mut b, &mut u], &["--to", "zzzz"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a commit"), "{text}");

    drop((b, u));
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");

    // Every log line of a sync batch names its project and operation (jq-friendly).
    let mut batch_lines = 0;
    for e in std::fs::read_dir(data.join("logs")).unwrap() {
        for line in std::fs::read_to_string(e.unwrap().path()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["fields"]["batch_id"].is_string() {
                batch_lines += 1;
                assert_eq!(v["fields"]["operation_id"], v["fields"]["batch_id"], "{line}");
                assert_eq!(v["span"]["project_id"], "demo", "{line}");
            }
        }
    }
    assert!(batch_lines > 0, "no sync batch lines in the log");
}

fn tri(x: f32) -> Vec<u8> {
    vibesync_protocol::mesh::Mesh {
        positions: vec![[0.0, 0.0, 0.0], [x, 0.0, 0.0], [0.0, 1.0, 0.0]],
        normals: None,
        uv0: None,
        indices: vec![0, 1, 2],
    }
    .encode()
}

/// Maintenance: the audit is packed, unreferenced blobs go, every blob a restore point names
/// stays — and a restore brings an old mesh back to the editors.
#[test]
fn maintenance_packs_the_audit_collects_orphan_blobs_and_keeps_what_history_needs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync]\nbatch_window_ms = 0\nverify_timeout_ms = 5000\n[storage]\nblob_grace_secs = 0\n")
        .unwrap();
    let mut d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let m = new_uuid();
    register(&mut b.c, "r", &[(&m, "object", "Meshy")]);
    b.send_change("c", vec![create(&m, "Meshy", [0.0, 0.0, 0.0])], &[]);
    let (m1, m2) = (tri(1.0), tri(2.0));
    let (h1, h2) = (vibesync_protocol::mesh::Mesh::hash_bytes(&m1), vibesync_protocol::mesh::Mesh::hash_bytes(&m2));
    b.send_change("m1", vec![json!({"op":"mesh","uuid":m,"mesh_hash":h1})], &m1);
    settle(&mut [&mut b, &mut u]);
    audit_caught_up(&data);
    let p1 = history(&data, &[])[0]["commit"].as_str().unwrap().to_string();
    b.send_change("m2", vec![json!({"op":"mesh","uuid":m,"mesh_hash":h2})], &m2);
    settle(&mut [&mut b, &mut u]);
    audit_caught_up(&data);
    assert_eq!(u.meshes[&m], m2);

    // Orphans: a blob nothing names, and a temporary file left by a crash.
    let orphan = data.join("blobs").join("f".repeat(64));
    std::fs::write(&orphan, b"orphan").unwrap();
    std::fs::write(data.join("blobs").join("x.tmp"), b"tmp").unwrap();
    let loose_before = std::fs::read_dir(data.join(".git_safety/objects")).unwrap().count();

    let (code, out, err) = cli(&["maintain", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["blobs"]["removed"], 2, "{r}");
    assert!(!orphan.exists());
    assert!(data.join("blobs").join(&h1).exists(), "the first mesh is named by an audit point: kept");
    assert!(data.join("blobs").join(&h2).exists());
    // The audit writes each commit as a pack: no loose object for the pass to pack
    // (`vibesync-audit` tests cover packing loose objects left by older versions).
    assert_eq!(r["audit_pack"]["loose_before"], 0, "{r}");
    assert_eq!(loose_before, 2, "objects/ holds only pack/ and info/");
    assert!(std::fs::read_dir(data.join(".git_safety/objects/pack")).unwrap().count() >= 2, "packs");
    let (_, out, _) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
    let s: Value = serde_json::from_str(&out).unwrap();
    for store in ["wal", "registry", "audit", "blobs", "logs", "total"] {
        assert!(s["disk"][store].as_u64().unwrap() > 0, "{store}: {}", s["disk"]);
    }
    assert!(s["disk"]["last_maintenance"]["blobs"].is_object(), "{}", s["disk"]);

    // The packed history still restores, mesh included.
    let (code, r, text) = restore(&data, &mut [&mut b, &mut u], &["--to", &p1]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["outcome"], "committed", "{r}");
    assert_eq!(u.states[&m]["mesh_hash"], h1.as_str());
    assert_eq!(b.states[&m]["mesh_hash"], h1.as_str());

    drop((b, u));
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
    let fsck = Command::new("git")
        .args(["--git-dir", data.join(".git_safety").to_str().unwrap(), "fsck", "--strict"])
        .output();
    if let Ok(o) = fsck {
        assert!(o.status.success(), "git fsck: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Disk use under a long run of transforms on 8 objects, measured per store before and after
/// a maintenance pass (WAL compaction, audit pack, blob collection), with passes during the
/// run too. `cargo test` runs 4,000 transforms; scripts/soak runs 1,000,000
/// (`VIBESYNC_DISK_TRANSFORMS`) and writes the figures to `VIBESYNC_DISK_REPORT`. The bounds
/// checked are the ones docs/BENCHMARKS.md "Disk use per store" documents: the WAL after a
/// pass is a few segments whatever the run's length (compaction, docs/WAL.md §11); the
/// total is a fixed base plus a per-batch cost (the audit history is never rewritten).
#[test]
fn disk_use_per_store_under_many_transforms_stays_within_the_documented_bound() {
    let n: usize = std::env::var("VIBESYNC_DISK_TRANSFORMS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nbatch_window_ms = 20\nverify_timeout_ms = 5000\n[storage]\nmaintenance_interval_secs = 0\n\
             wal_segment_bytes = {SEGMENT}\nwal_retention_secs = 0\n"
        ),
    )
    .unwrap();
    let mut d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let objs: Vec<String> = (0..8).map(|_| new_uuid()).collect();
    let items: Vec<(&str, &str, &str)> = objs.iter().map(|o| (o.as_str(), "object", "Soak")).collect();
    register(&mut b.c, "r", &items);
    let creates = objs.iter().enumerate().map(|(i, o)| create(o, &format!("Soak{i}"), [0.0, 0.0, 0.0])).collect();
    b.send_change("c", creates, &[]);
    settle(&mut [&mut b, &mut u]);

    let started = Instant::now();
    let per_msg = 800;
    let mut sent = 0usize;
    let mut msg = 0usize;
    let mut passes = 0usize;
    let mut peak_wal = 0u64;
    while sent < n {
        let k = per_msg.min(n - sent);
        let changes: Vec<Value> = (0..k)
            .map(|j| {
                let x = ((sent + j) / objs.len()) as f64 * 0.001;
                json!({"op":"transform","uuid":objs[(sent + j) % objs.len()],"t":[x,1,2],"r":[0,0,0,1],"s":[1,1,1]})
            })
            .collect();
        let ack = b.send_change(&format!("t{msg}"), changes, &[]);
        assert_eq!(ack["results"].as_array().unwrap().len(), k, "every transform acknowledged");
        sent += k;
        msg += 1;
        u.drain(Duration::from_millis(1));
        b.drain(Duration::from_millis(1));
        peak_wal = peak_wal.max(dir_bytes(&data.join("wal")));
        if msg.is_multiple_of(100) {
            // A maintenance pass during the run, as the schedule would make.
            let (code, _, err) = cli(&["maintain", "--json", "--data-dir", data.to_str().unwrap()]);
            assert_eq!(code, 0, "{err}");
            passes += 1;
        }
    }
    settle(&mut [&mut b, &mut u]);
    let elapsed = started.elapsed();
    let last_x = ((n - 1) / objs.len()) as f64 * 0.001;
    let held = u.states[objs.last().unwrap()]["t"][0].as_f64().unwrap();
    assert!((held - last_x).abs() < 1e-4, "the receiver holds the last pose: {held} vs {last_x}");
    audit_caught_up_all(&data);
    let status = || -> Value {
        let (_, out, _) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
        serde_json::from_str(&out).unwrap()
    };
    // The boot checkpoint must cover the log before compaction may remove it (written every 5 s).
    let last = status()["seq"].as_u64().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while status()["checkpoint"]["seq"].as_u64().unwrap_or(0) + 2 < last {
        assert!(Instant::now() < end, "no checkpoint near seq {last} within 30 s");
        std::thread::sleep(Duration::from_millis(250));
    }

    let status = || -> Value {
        let (_, out, _) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
        serde_json::from_str(&out).unwrap()
    };
    std::thread::sleep(Duration::from_millis(5100)); // disk figures are cached for 5 s
    let before = status();
    let (code, out, err) = cli(&["maintain", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let maint: Value = serde_json::from_str(&out).unwrap();
    let after = status()["disk"].clone();
    // Committed batches over the whole run (the WAL before the anchor is gone): every one has
    // a FINAL, and the audit counts the FINALs it committed in this run.
    let batches = before["audit"]["finals"].as_u64().unwrap().max(1);
    let commits = before["audit"]["commits"].as_u64().unwrap();
    let per = |v: &Value, k: &str| v[k].as_u64().unwrap() as f64 / batches as f64;
    let report = json!({
        "transforms": n, "batches": batches, "audit_commits": commits, "seconds": elapsed.as_secs_f64(),
        "maintenance_passes_during_run": passes, "peak_wal_bytes_during_run": peak_wal,
        "fdatasync": vibesync_wal::probe::fdatasync_cost(dir.path(), 200).map(|c| c.to_string()).unwrap_or_else(|e| e.to_string()),
        "wal_segment_bytes": SEGMENT, "compacted_upto": status()["wal"]["compacted_upto"],
        "before_maintenance": before["disk"], "after_maintenance": after, "maintenance": maint,
        "bytes_per_batch_after": {"wal": per(&after, "wal"), "audit": per(&after, "audit"), "registry": per(&after, "registry"), "total": per(&after, "total")},
    });
    eprintln!("disk use: {report:#}");
    if let Ok(p) = std::env::var("VIBESYNC_DISK_REPORT") {
        std::fs::write(p, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    // The documented bounds (docs/BENCHMARKS.md "Disk use per store"): after a pass the WAL
    // is at most 4 segments + 64 KiB (the anchor), whatever the run's length; the total is
    // 64 MiB (sled's files, logs) + 16 KiB per committed batch of 8 objects (sled, audit).
    let wal = after["wal"].as_u64().unwrap();
    assert!(wal <= 4 * SEGMENT + 64 * 1024, "WAL {wal} B after compaction: {report:#}");
    let bound = 64 * 1024 * 1024 + 16 * 1024 * batches;
    let total = after["total"].as_u64().unwrap();
    assert!(total <= bound, "disk {total} B > bound {bound} B for {batches} batches: {report:#}");
    assert!(
        after["audit"].as_u64().unwrap() <= before["disk"]["audit"].as_u64().unwrap(),
        "packing never grows the audit"
    );
    drop((b, u));
    d.stop();
}

/// WAL segment size of the disk test: small, so even the short run compacts.
const SEGMENT: u64 = 16 * 1024;

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
}

/// Like `audit_caught_up` for any project: the last FINAL is audited.
fn audit_caught_up_all(data: &std::path::Path) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
        let s: Value = serde_json::from_str(&out).unwrap();
        let last_final =
            wal_records(data).iter().filter(|r| r["phase"] == "FINAL").map(|r| r["seq"].as_u64().unwrap()).max();
        if s["audit"]["pending"] == 0 && s["audit"]["last_audited_seq"].as_u64() >= last_final {
            return;
        }
        assert!(Instant::now() < end, "the audit did not catch up within 60 s: {}", s["audit"]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A project big enough to be fanned out in the audit (docs/WAL.md §9): its history and a
/// restore read the commits before the fan-out (flat) and after it alike.
#[test]
fn history_and_restore_read_a_big_project_across_its_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = fast_config(dir.path(), 0, 20000);
    let mut d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let n = vibesync_audit::FAN_OUT_AT + 4;
    let ids: Vec<String> = (0..n).map(|_| new_uuid()).collect();
    let committed = |m: &Mini, uuid: &str| {
        m.results.iter().any(|r| {
            r["outcome"] == "committed" && r["uuids"].as_array().is_some_and(|us| us.iter().any(|x| x == uuid))
        })
    };
    // Point 1: every object created, at x = 1 (a flat directory of n entries).
    let creates: Vec<Value> =
        ids.iter().enumerate().map(|(i, id)| create(id, &format!("O{i}"), [1.0, 0.0, 0.0])).collect();
    let ack = b.send_change("c1", creates, &[]);
    assert!(ack["results"].as_array().unwrap().iter().all(|r| r["status"] == "queued"), "{ack}");
    until(&mut [&mut b, &mut u], Duration::from_secs(60), |m| m[1].states.len() == n && committed(m[0], &ids[0]));
    audit_caught_up(&data);
    let p1 = history(&data, &[])[0].clone();
    assert_eq!(p1["changes"].as_array().unwrap().len(), n, "every create listed at point 1");
    std::thread::sleep(Duration::from_millis(1100));

    // Point 2 (the commit that fans the directory out): one object moved.
    b.results.clear();
    b.send_change("c2", vec![json!({"op":"transform","uuid":ids[3],"t":[2,0,0],"r":[0,0,0,1],"s":[1,1,1]})], &[]);
    until(&mut [&mut b, &mut u], Duration::from_secs(60), |m| {
        m[1].states[&ids[3]]["t"] == json!([2.0, 0.0, 0.0]) && committed(m[0], &ids[3])
    });
    audit_caught_up(&data);
    let p2 = history(&data, &[])[0].clone();
    let changes = p2["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only the moved object changed across the fan-out: {p2}");
    assert_eq!(changes[0]["uuid"], ids[3].as_str());
    assert_eq!(changes[0]["change"], "changed", "{p2}");
    let ls = |rev: &str| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(data.join(".git_safety"))
            .args(["ls-tree", "--name-only", &format!("{rev}:registry/demo")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(ls(p1["commit"].as_str().unwrap()).len(), n, "flat at point 1");
    let buckets = ls(p2["commit"].as_str().unwrap());
    assert!(buckets.len() <= 256 && buckets.iter().all(|b| b.len() == 2), "fanned out at point 2: {buckets:?}");

    // Restore to point 1 (flat): the moved object goes back, nothing else changes.
    let commit = format!("commit:{}", &p1["commit"].as_str().unwrap()[..10]);
    let (code, r, text) = restore(&data, &mut [&mut b, &mut u], &["--to", &commit]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["changes"], 1, "{r}");
    until(&mut [&mut b, &mut u], Duration::from_secs(60), |m| {
        m.iter().all(|e| e.states[&ids[3]]["t"] == json!([1.0, 0.0, 0.0]) && e.states.len() == n)
    });
    drop((b, u));
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}
