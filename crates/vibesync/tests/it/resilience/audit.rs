//! The ghost audit as one total order over FINALs (docs/WAL.md §7, docs/RESILIENCE.md
//! "Audit"), and a WAL that lost its tail (docs/WAL.md §5). Each test failed on the code
//! before the audit was fed by the WAL's durable hook:
//! * a fresh data dir failed `verify` (`refs/heads/main` not found);
//! * concurrent FINALs of several projects were submitted out of order and some were
//!   silently skipped, and `verify` said clean (it checked order, not completeness);
//! * boot catch-up made one commit per project, so ranges overlapped after a kill -9 with
//!   two active projects, and every later boot set the whole history aside;
//! * a WAL truncated at a record boundary was served: the registry was rebuilt from it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

fn set_asides(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("quarantine"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("git_safety-"))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_verify_clean(data: &std::path::Path, what: &str) {
    let (code, out, err) = verify(data);
    assert_eq!(code, 0, "{what}: verify must be clean:\n{out}{err}");
}

/// `n` clients, one per project, registering as fast as they can until `stop`.
fn load(d: &Daemon, projects: &[&str], stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    projects
        .iter()
        .map(|p| {
            let (addr, token, p, stop) = (d.addr, d.token.clone(), p.to_string(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = Client::connect(addr, &token, &p, "blender") else { return 0 };
                let mut acks = 0;
                while !stop.load(Ordering::SeqCst) {
                    let u = new_uuid();
                    let item = json!({"uuid":u,"kind":"object","name":format!("{p}-{acks}"),"editor_ref":format!("OB:{acks}")});
                    match c.request(&json!({"type":"register","request_id":format!("r{acks}"),"items":[item]})) {
                        Ok(a) if a["type"] == "ack" => acks += 1,
                        _ => break,
                    }
                }
                acks
            })
        })
        .collect()
}

#[test]
fn a_fresh_data_dir_passes_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    assert_eq!(d.stop(), Some(0));
    assert_verify_clean(&data, "fresh data dir");
    // And the next boot keeps the (empty) history.
    let mut d = Daemon::start(&data);
    assert_eq!(d.stop(), Some(0));
    assert!(set_asides(&data).is_empty(), "an empty audit repository is not damage");
    assert_verify_clean(&data, "second boot");
}

/// Four projects finalize concurrently for a few seconds: every FINAL is in exactly one
/// commit, in seq order, with few commits (group commit), and `status` reports the lag.
#[test]
fn four_projects_every_final_in_exactly_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(&d, &["p0", "p1", "p2", "p3"], stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    let mut c = d.client("unity");
    let st = c.request(&json!({"type":"status"})).unwrap();
    stop.store(true, Ordering::SeqCst);
    let acks: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(acks > 50, "load too small to mean anything: {acks}");
    let a = &st["audit"];
    for k in ["pending", "lag_ms", "commits", "finals", "cpu_us", "cpu_us_per_final", "suspended"] {
        assert!(!a[k].is_null(), "status.audit.{k} missing: {a}");
    }
    // Lag is bounded by the group window (200 ms) plus one commit, with margin for a loaded CI.
    assert!(a["lag_ms"].as_u64().unwrap() < 5_000, "{a}");
    drop(c);
    assert_eq!(d.stop(), Some(0));
    assert_verify_clean(&data, "after concurrent projects");
    let finals = wal_records(&data).iter().filter(|r| r["phase"] == "FINAL").count() as u64;
    let git = std::process::Command::new("git")
        .args(["--git-dir", data.join(".git_safety").to_str().unwrap(), "rev-list", "--count", "main"])
        .output()
        .unwrap();
    let commits: u64 = String::from_utf8_lossy(&git.stdout).trim().parse().unwrap();
    eprintln!("audit: {finals} FINALs in {commits} commits ({acks} acks)");
    assert!(commits * 4 <= finals, "group commit: {commits} commits for {finals} FINALs");
}

/// kill -9 while two (then three) projects register; each restart catches up in one
/// seq-ordered pass: no overlap, no gap, nothing set aside, `verify` clean at the end.
#[test]
fn kill9_with_several_projects_never_breaks_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for round in 0..3 {
        let d = Daemon::start(&data);
        let stop = Arc::new(AtomicBool::new(false));
        let projects: &[&str] = if round % 2 == 0 { &["a", "b"] } else { &["a", "b", "c"] };
        let threads = load(&d, projects, stop.clone());
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        let mut d = d;
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
    }
    let mut d = Daemon::start(&data);
    // Deleting the audit repository (derived data) must rebuild it cleanly, too.
    assert_eq!(d.stop(), Some(0));
    assert_verify_clean(&data, "after kill -9 rounds");
    assert!(set_asides(&data).is_empty(), "nothing was damaged, nothing set aside: {:?}", set_asides(&data));
    std::fs::remove_dir_all(data.join(".git_safety")).unwrap();
    let mut d = Daemon::start(&data);
    assert_eq!(d.stop(), Some(0));
    assert_verify_clean(&data, "after deleting .git_safety");
}

/// A damaged audit repository is set aside and rebuilt; set-asides are bounded.
#[test]
fn damaged_histories_are_set_aside_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    register(&mut c, "r", &[(&new_uuid(), "object", "A")]);
    drop(c);
    d.stop();
    for i in 0..5 {
        // Point main at garbage: the head commit is unreadable.
        std::fs::write(data.join(".git_safety/refs/heads/main"), "0123456789012345678901234567890123456789\n").unwrap();
        let mut d = Daemon::start(&data);
        assert_eq!(d.stop(), Some(0), "round {i}");
        assert_verify_clean(&data, "rebuilt history");
    }
    let kept = set_asides(&data);
    assert_eq!(kept.len(), 3, "only the newest set-asides are kept: {kept:?}");
}

/// docs/WAL.md §5: a WAL cut at a record boundary (a restored backup) must not be served.
#[test]
fn a_wal_that_lost_its_tail_refuses_to_boot_until_repair() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let mut uuids = vec![];
    for i in 0..4 {
        let u = new_uuid();
        register(&mut c, &format!("r{i}"), &[(&u, "object", &format!("O{i}"))]);
        uuids.push(u);
    }
    drop(c);
    assert_eq!(d.stop(), Some(0));
    let recs = wal_records(&data);
    let last = recs.last().unwrap()["seq"].as_u64().unwrap();
    // Cut the last two transactions (BEGIN, STEP, COMMIT, FINAL each) at a record boundary.
    let seg = {
        let mut s: Vec<_> = std::fs::read_dir(data.join("wal")).unwrap().flatten().map(|e| e.path()).collect();
        s.sort();
        s.pop().unwrap()
    };
    let text = std::fs::read_to_string(&seg).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let keep = lines.len() - 8;
    std::fs::write(&seg, lines[..keep].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let short_last = last - 8;

    let (code, out, _) = verify(&data);
    assert_eq!(code, 1, "verify must report the lost tail:\n{out}");
    assert!(out.contains("lost its tail") && out.contains(&format!("ends at seq {short_last}")), "{out}");

    let err = Daemon::try_start(&data, &[], "127.0.0.1:0").err().expect("boot must refuse a WAL that lost its tail");
    assert!(
        err.contains(&format!("ends at seq {short_last}")) && err.contains("--repair") && err.contains("has seen seq"),
        "{err}"
    );
    // A refused boot exits 1, with the reason on stderr (docs/WAL.md §5).
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a refused boot exits 1: {stderr}");
    assert!(stderr.contains("boot refused") && stderr.contains("--repair"), "{stderr}");
    // With --repair: the shorter log is served, derived stores rebuilt, verify clean.
    let mut d = Daemon::start_with(&data, &["--repair"], "127.0.0.1:0");
    let mut c = d.client("blender");
    let st: Value = c.request(&json!({"type":"status"})).unwrap();
    assert_eq!(st["registry"]["live"], 2, "{st}");
    drop(c);
    assert_eq!(d.stop(), Some(0));
    assert_verify_clean(&data, "after repair");
    let _ = Instant::now();
}
