//! The mesh blob store (`<data_dir>/blobs/`, docs/RESILIENCE.md §10). Each test failed on the
//! code before it: two writers of one blob shared a temp name (one got `STORAGE_FAILED`
//! every time), a write that hit a full disk left its temp file behind, a mesh was stored
//! even when its change was refused, and an attachment with trailing bytes was accepted.

use std::process::Command;

use serde_json::json;
use vibesync_protocol::mesh::Mesh;

use super::editor::*;
use crate::common::*;

fn mesh(n: u32) -> Vec<u8> {
    let positions = (0..n).map(|i| [i as f32, 0.0, 1.0]).collect();
    Mesh { positions, normals: None, uv0: None, indices: vec![0, 1, 2] }.encode()
}

fn blobs(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("blobs"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Two projects upload the same mesh at the same moment, many times: every upload is
/// accepted and no temp file is left.
#[test]
fn two_projects_uploading_the_same_mesh_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let rounds = 12;
    let threads: Vec<_> = ["left", "right"]
        .iter()
        .map(|p| {
            let (addr, token, p) = (d.addr, d.token.clone(), p.to_string());
            std::thread::spawn(move || {
                let mut e = Editor::connect_to(addr, &token, &p, "blender", 0).unwrap();
                let mut refused = vec![];
                for r in 0..rounds {
                    // A fresh mesh per round: the blob does not exist yet for either project.
                    let m = mesh(3 + r);
                    let h = Mesh::hash_bytes(&m);
                    let u = new_uuid();
                    let created = e.change(&format!("c{r}"), vec![create_op(&u, "M", [0.0, 0.0, 0.0])]).unwrap();
                    assert_eq!(statuses(&created), ["queued"], "{created}");
                    let msg = json!({"type":"change","request_id":format!("m{r}"),"base_seq":0,
                        "changes":[{"op":"mesh","uuid":u,"mesh_hash":h}]});
                    let ack = e.request(&msg, &m).unwrap();
                    for x in ack["results"].as_array().unwrap() {
                        if x["error_code"].is_string() {
                            refused.push(x.clone());
                        }
                    }
                }
                // Batches of a project end in order: once this marker's batch has a result,
                // every mesh before it has too (the daemon is stopped with nothing in flight).
                let marker = new_uuid();
                e.change("marker", vec![create_op(&marker, "Marker", [0.0, 0.0, 0.0])]).unwrap();
                let done = e
                    .pump_until(std::time::Duration::from_secs(30), |e| {
                        e.results
                            .iter()
                            .any(|r| r["uuids"].as_array().is_some_and(|a| a.iter().any(|u| u == &json!(marker))))
                    })
                    .unwrap();
                assert!(done, "the marker batch ended");
                refused
            })
        })
        .collect();
    for t in threads {
        let refused = t.join().unwrap();
        assert!(refused.is_empty(), "same mesh from two projects must both succeed: {refused:?}");
    }
    let names = blobs(&data);
    assert_eq!(names.len(), rounds as usize, "one blob per distinct mesh: {names:?}");
    assert!(names.iter().all(|n| !n.contains(".tmp")), "no temp file left: {names:?}");
    let code = d.stop();
    assert_eq!(code, Some(0), "{}", plain(&d.stderr_log()));
}

/// A change refused by the gate (here: a sequence divergence, `BLOCKED`) or by validation
/// (trailing bytes after the mesh: `INVALID_FIELD`) stores no blob.
#[test]
fn refused_changes_store_no_blob_and_trailing_bytes_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut e = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
    let u = new_uuid();
    assert_eq!(statuses(&e.change("c", vec![create_op(&u, "M", [0.0, 0.0, 0.0])]).unwrap()), ["queued"]);
    // Committed first, so the divergence below has a replay to wait for (and blocks).
    assert!(e.pump_until(std::time::Duration::from_secs(20), |e| !e.results.is_empty()).unwrap(), "create committed");
    let m = mesh(3);
    let h = Mesh::hash_bytes(&m);
    let msg = json!({"type":"change","request_id":"blocked","base_seq":1_000_000_000u64,
        "changes":[{"op":"mesh","uuid":u,"mesh_hash":h}]});
    let ack = e.request(&msg, &m).unwrap();
    assert_eq!(ack["results"][0]["error_code"], "BLOCKED", "{ack}");
    assert!(blobs(&data).is_empty(), "no orphan blob for a refused change: {:?}", blobs(&data));

    let mut e = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
    let mut long = m.clone();
    long.extend_from_slice(&[0, 0, 0, 0]);
    let h2 = Mesh::hash_bytes(&long);
    let msg = json!({"type":"change","request_id":"trailing","base_seq":0,
        "changes":[{"op":"mesh","uuid":u,"mesh_hash":h2}]});
    let ack = e.request(&msg, &long).unwrap();
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "{ack}");
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("trailing"), "{ack}");
    assert!(blobs(&data).is_empty(), "{:?}", blobs(&data));
    assert_eq!(d.stop(), Some(0));
}

/// A blob write that hits a full disk (a real tmpfs) fails and leaves no temp file, so the
/// space is there for the WAL. Needs root + `mount`; otherwise the check runs on a
/// read-only-made directory (the open fails) and the temp-name rule is still checked.
#[test]
fn a_blob_write_on_a_full_disk_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("blob full disk: cannot mount a tmpfs; skipped the real full-disk case");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _g = Unmount(mnt.clone());
    let target = mnt.join("blob");
    let err = vibesync_daemon::fsutil::write_atomic(&target, &vec![7u8; 2 << 20], None)
        .expect_err("2 MiB cannot fit on a 1 MiB tmpfs");
    eprintln!("blob full disk: {err}");
    let left: Vec<_> = std::fs::read_dir(&mnt).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the temp file must be removed on error: {left:?}");
    // And the space is free again: a small write fits.
    vibesync_daemon::fsutil::write_atomic(&target, &[1u8; 1024], None).unwrap();
}
