//! register / ack / tombstone through the real daemon, and what lands in the WAL.

use serde_json::json;

use crate::common::*;

#[test]
fn register_statuses_collisions_and_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut a = d.client("blender");
    let (u1, u2, u3) = (new_uuid(), new_uuid(), new_uuid());

    let ack = register(&mut a, "r1", &[(&u1, "object", "Cube"), (&u2, "mesh", "CubeMesh")]);
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["request_id"], "r1");
    assert_eq!(statuses(&ack), ["registered", "registered"]);
    let seq1 = ack["seq"].as_u64().unwrap();
    assert!(seq1 > 0);

    // Same again: unchanged, nothing written.
    let ack = register(&mut a, "r2", &[(&u1, "object", "Cube")]);
    assert_eq!(statuses(&ack), ["unchanged"]);
    assert_eq!(ack["seq"], 0);

    // Rename keeps the uuid: updated.
    let ack = register(&mut a, "r3", &[(&u1, "object", "Cube Renamed")]);
    assert_eq!(statuses(&ack), ["updated"]);

    // Another Blender session claiming a held uuid: collision, never merged.
    let mut b = d.client("blender");
    let ack = register(&mut b, "r4", &[(&u1, "object", "Cube.001"), (&u3, "object", "Fresh")]);
    assert_eq!(statuses(&ack), ["collision", "registered"]);
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("fresh uuid"));
    // A Unity session may bind the same uuid (the same datablock on the other side).
    let mut u = d.client("unity");
    let ack = register(&mut u, "r5", &[(&u1, "object", "Cube Renamed")]);
    assert_eq!(statuses(&ack), ["updated"], "{ack}");
    // Kind mismatch is a collision too.
    let ack = register(&mut u, "r6", &[(&u2, "material", "CubeMesh")]);
    assert_eq!(statuses(&ack), ["collision"]);

    // Per-item errors: nothing written for them, the valid item still goes through.
    let long = "n".repeat(5000);
    let u4 = new_uuid();
    let ack = a
        .request(&json!({"type":"register","request_id":"r7","items":[
            {"uuid":"NOT-A-UUID","kind":"object","name":"x","editor_ref":"x"},
            {"uuid":new_uuid(),"kind":"spaceship","name":"x","editor_ref":"x"},
            {"uuid":new_uuid(),"kind":"object","name":long,"editor_ref":"x"},
            {"uuid":"00000000-0000-0000-0000-000000000000","kind":"object","name":"x","editor_ref":"x"},
            {"uuid":u4,"kind":"light","name":"Sun","editor_ref":"LA:Sun"}]}))
        .unwrap();
    let codes: Vec<_> = ack["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error_code"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(codes, ["INVALID_UUID", "UNKNOWN_KIND", "TOO_LARGE", "INVALID_UUID", "-"]);
    assert_eq!(statuses(&ack)[4], "registered");

    // Tombstone: archived, never erased; unknown uuids are NOT_FOUND.
    let ack = a.request(&json!({"type":"tombstone","request_id":"t1","uuids":[u2, new_uuid()]})).unwrap();
    assert_eq!(statuses(&ack), ["tombstoned", "error"]);
    assert_eq!(ack["results"][1]["error_code"], "NOT_FOUND");
    let ack = a.request(&json!({"type":"tombstone","request_id":"t2","uuids":[u2]})).unwrap();
    assert_eq!(ack["results"][0]["error_code"], "NOT_FOUND");
    // Re-registering a tombstoned uuid makes a new live record; the archive keeps the old.
    let ack = register(&mut a, "r8", &[(&u2, "mesh", "CubeMesh")]);
    assert_eq!(statuses(&ack), ["registered"]);

    let st = a.request(&json!({"type":"status","request_id":"s"})).unwrap();
    assert_eq!(st["type"], "status");
    assert_eq!(st["request_id"], "s");
    assert_eq!(st["registry"]["live"], 4, "{st}");
    assert_eq!(st["registry"]["tombstoned"], 1, "{st}");
    assert_eq!(st["sessions"].as_array().unwrap().len(), 3);

    drop((a, b, u));
    assert_eq!(d.stop(), Some(0), "graceful stop: {}", d.stderr_log());

    // The WAL tells the whole story, every transaction closed and finalized.
    let recs = wal_records(&data);
    let phases: Vec<&str> = recs.iter().map(|r| r["phase"].as_str().unwrap()).collect();
    assert_eq!(phases[..4], ["BEGIN", "STEP", "STEP", "COMMIT"]);
    for w in recs.windows(2) {
        assert_eq!(w[1]["seq"].as_u64().unwrap(), w[0]["seq"].as_u64().unwrap() + 1);
        assert_eq!(w[1]["prev"], w[0]["h"]);
    }
    let commits = phases.iter().filter(|p| **p == "COMMIT").count();
    let finals = phases.iter().filter(|p| **p == "FINAL").count();
    assert_eq!(commits, finals, "every COMMIT has its FINAL");
    let collision_commit = recs
        .iter()
        .find(|r| r["phase"] == "COMMIT" && r["payload"]["collisions"].as_array().is_some_and(|c| !c.is_empty()))
        .expect("collision logged in the WAL");
    assert_eq!(collision_commit["payload"]["collisions"][0]["uuid"], u1.as_str());
    for r in &recs {
        for f in [
            "seq",
            "ts",
            "process_id",
            "session_id",
            "operation_id",
            "uuids",
            "project_id",
            "phase",
            "outcome",
            "error_code",
            "schema_version",
            "payload",
            "prev",
            "h",
        ] {
            assert!(r.get(f).is_some(), "record lacks {f}: {r}");
        }
    }

    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify: {out}{err}");

    // Audit: fsck-clean, one commit per finalized batch (or fewer), trailers present.
    let git_dir = data.join(".git_safety");
    let fsck = std::process::Command::new("git")
        .args(["--git-dir", git_dir.to_str().unwrap(), "fsck", "--strict"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "git fsck: {}", String::from_utf8_lossy(&fsck.stderr));
    let log = std::process::Command::new("git")
        .args(["--git-dir", git_dir.to_str().unwrap(), "log", "--format=%B"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("VibeSync-Seq-Range:"), "{log}");
    let ls = std::process::Command::new("git")
        .args(["--git-dir", git_dir.to_str().unwrap(), "ls-tree", "-r", "--name-only", "HEAD"])
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains(&format!("registry/demo/{u1}.json")), "{ls}");
    assert!(ls.contains(&format!("archive/demo/{u2}/")), "{ls}");
}

/// A registration's FINAL rides with the registrar's next WAL append; with no next request it
/// is written alone shortly after, while the daemon keeps running (never only at shutdown or
/// by the next boot's recovery).
#[test]
fn a_registration_is_finalized_while_the_daemon_runs_with_no_later_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start(&data);
    let mut a = d.client("blender");
    let mut b = d.client("unity");
    // Back-to-back requests from two sessions (FINALs riding along), then nothing more.
    for k in 0..20 {
        let (c, editor) = if k % 2 == 0 { (&mut a, "a") } else { (&mut b, "b") };
        let u = new_uuid();
        let ack = register(c, &format!("{editor}{k}"), &[(&u, "object", &format!("O{k}"))]);
        assert_eq!(statuses(&ack), ["registered"], "{ack}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let recs = wal_records(&data);
        let ops = |phase: &str| -> std::collections::BTreeSet<String> {
            recs.iter()
                .filter(|r| r["phase"] == phase)
                .map(|r| r["operation_id"].as_str().unwrap().to_string())
                .collect()
        };
        let (commits, finals) = (ops("COMMIT"), ops("FINAL"));
        assert_eq!(commits.len(), 20, "one transaction per registration");
        if commits == finals {
            // Each FINAL follows its own COMMIT.
            for op in &commits {
                let seq = |phase: &str| {
                    recs.iter().find(|r| r["phase"] == phase && r["operation_id"] == op.as_str()).unwrap()["seq"]
                        .as_u64()
                        .unwrap()
                };
                assert!(seq("FINAL") > seq("COMMIT"), "{op}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "registrations never finalized while the daemon ran: {:?}",
            commits.difference(&finals).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop((a, b));
}

/// The registrar keeps several groups in flight (docs/ARCHITECTURE.md, `core::registrar`):
/// concurrent sessions registering fresh and shared uuids and tombstoning some end with a
/// registry that equals the fold of the WAL (`vibesync verify`), every request answered, and
/// every transaction finalized.
#[test]
fn concurrent_registrations_with_shared_uuids_end_equal_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let shared: std::sync::Arc<Vec<String>> = std::sync::Arc::new((0..40).map(|_| new_uuid()).collect());
    let clients: Vec<_> = ["blender", "unity", "blender", "unity"]
        .iter()
        .enumerate()
        .map(|(k, editor)| {
            let mut c = d.client(editor);
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..150usize {
                    let fresh = new_uuid();
                    let s = &shared[(i * 7 + k * 13) % shared.len()];
                    let items = [(&fresh, format!("F{k}-{i}")), (s, format!("S{i}"))].map(|(u, name)| {
                        serde_json::json!({"uuid": u, "kind": "object", "name": name, "editor_ref": format!("OB:{name}")})
                    });
                    let ack = ask(&mut c, &serde_json::json!({"type":"register","request_id":format!("c{k}-{i}"),"items":items}));
                    let st = statuses(&ack);
                    assert_eq!(st[0], "registered", "{ack}");
                    assert!(["registered", "updated", "unchanged", "collision"].contains(&st[1].as_str()), "{ack}");
                    if i % 5 == 0 {
                        let ack =
                            ask(&mut c, &serde_json::json!({"type":"tombstone","request_id":format!("t{k}-{i}"),"uuids":[fresh]}));
                        assert_eq!(statuses(&ack), ["tombstoned"], "{ack}");
                    } else {
                        kept.push(fresh);
                    }
                }
                kept
            })
        })
        .collect();
    let kept: usize = clients.into_iter().map(|h| h.join().unwrap().len()).sum();
    let mut c = d.client("blender");
    let st = c.request(&serde_json::json!({"type":"status","request_id":"s"})).unwrap();
    assert_eq!(st["registry"]["live"], (kept + shared.len()) as u64, "{st}");
    assert_eq!(st["registry"]["tombstoned"], (4 * 30) as u64, "{st}");
    drop(c);
    assert_eq!(d.stop(), Some(0), "graceful stop: {}", d.stderr_log());
    let recs = wal_records(&data);
    let count = |phase: &str| recs.iter().filter(|r| r["phase"] == phase).count();
    assert_eq!(count("COMMIT"), count("FINAL"), "every COMMIT has its FINAL");
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify: {out}{err}");
}
