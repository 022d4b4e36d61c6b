//! Pipelining (docs/PROTOCOL.md §6.2 "Pipelining"): while a slow batch waits for a
//! participant that has not answered, a fast batch of other uuids is forwarded, verified and
//! committed beside it; a change of a uuid in the slow batch, or of an object under it, waits
//! for it; a rollback of the slow batch leaves the committed fast one alone; both transactions
//! interleave in the WAL and every check (`vibesync verify`, boot recovery) holds.
//! Every wait has a deadline; nothing asserts timing.

use std::time::Duration;

use serde_json::{json, Value};
use vibesync_protocol::state::state_hash;

use crate::common::*;
use crate::sync::{create, fast_config, until, Mini};

const DEADLINE: Duration = Duration::from_secs(30);

fn transform(u: &str, x: f64) -> Value {
    json!({"op":"transform","uuid":u,"t":[x,1.0,2.0],"r":[0,0,0,1],"s":[1,1,1]})
}

fn material(u: &str) -> Value {
    json!({"op":"material","uuid":u,"material":{"base_color":[1,0,0,1],"metallic":0,"roughness":0.5,"emission":[0,0,0]}})
}

/// The participant's `applied` for `batch_id`: the hash of everything it holds (extra uuids
/// are not checked), or a wrong hash for each when `wrong`.
fn answer(m: &mut Mini, batch_id: &str, wrong: bool) {
    let hashes: serde_json::Map<String, Value> =
        m.states.iter().map(|(u, s)| (u.clone(), json!(if wrong { "0".repeat(64) } else { state_hash(s) }))).collect();
    m.c.send(&json!({"type":"applied","batch_id":batch_id,"seq":m.last_seq,"hashes":hashes})).unwrap();
}

/// `batch_result`s naming `uuid`, as (outcome, batch_id).
fn results_for(m: &Mini, uuid: &str) -> Vec<(String, String)> {
    m.results
        .iter()
        .filter(|r| r["uuids"].as_array().is_some_and(|a| a.iter().any(|x| x == uuid)))
        .map(|r| (r["outcome"].as_str().unwrap().to_string(), r["batch_id"].as_str().unwrap().to_string()))
        .collect()
}

struct Rig {
    dir: tempfile::TempDir,
    d: Daemon,
    b: Mini,
    u: Mini,
    /// Parent P with child C, and a free object Y.
    p: String,
    c: String,
    y: String,
}

/// Two editors holding P, C (under P) and Y; Unity then stops answering on its own.
fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    // Window 0 (every change is its own window); a verify timeout far beyond the test.
    let cfg = fast_config(dir.path(), 0, 120_000);
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (p, c, y) = (new_uuid(), new_uuid(), new_uuid());
    let mut child = create(&c, "Child", [0.0; 3]);
    child["parent"] = json!(p);
    b.send_change("c", vec![create(&p, "Parent", [0.0; 3]), child, create(&y, "Free", [0.0; 3])], &[]);
    until(&mut [&mut b, &mut u], DEADLINE, |ms| ms[1].states.len() == 3 && !ms[0].results.is_empty());
    u.answer = false;
    Rig { dir, d, b, u, p, c, y }
}

/// Blender changes P's material (a slow batch); Unity receives it and does not answer.
/// Returns the slow batch's id.
fn slow_batch_waiting(r: &mut Rig) -> String {
    let seen = r.u.batches.len();
    let ack = r.b.send_change("slow", vec![material(&r.p)], &[]);
    assert_eq!(statuses(&ack), ["queued"]);
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| ms[1].batches.len() > seen);
    let (id, path, count) = r.u.batches[seen].clone();
    assert_eq!((path.as_str(), count), ("slow", 1));
    id
}

#[test]
fn a_transform_of_another_object_commits_while_a_slow_batch_waits_and_dependents_wait_for_it() {
    let mut r = rig();
    let slow = slow_batch_waiting(&mut r);
    let seen = r.u.batches.len();
    // Held back: C (its parent P is in the slow batch) and P itself. Free: Y, sent last.
    r.b.send_change("tc", vec![transform(&r.c, 1.0)], &[]);
    r.b.send_change("tp", vec![transform(&r.p, 2.0)], &[]);
    r.b.send_change("ty", vec![transform(&r.y, 3.0)], &[]);
    // Unity gets a fast batch carrying Y's transform only, and answers it.
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| ms[1].batches.len() > seen);
    let (fast, path, count) = r.u.batches[seen].clone();
    assert_eq!((path.as_str(), count), ("fast", 1), "only Y's transform: {:?}", r.u.batches);
    answer(&mut r.u, &fast, false);
    let y = r.y.clone();
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| results_for(ms[0], &y).iter().any(|(_, id)| id == &fast));
    assert!(results_for(&r.b, &r.y).contains(&("committed".to_string(), fast.clone())), "{:?}", r.b.results);
    // The slow batch is still unanswered: nothing of P or C has ended, and nothing of them
    // reached Unity as a batch after the slow one.
    assert!(results_for(&r.b, &r.p).iter().all(|(_, id)| id != &slow), "{:?}", r.b.results);
    assert!(results_for(&r.b, &r.c).len() == 1, "only C's create ended: {:?}", r.b.results);
    assert_eq!(r.u.batches.len(), seen + 1, "P's and C's transforms wait for the slow batch: {:?}", r.u.batches);

    // Unity answers the slow batch: it commits, then the held-back transforms follow.
    answer(&mut r.u, &slow, false);
    r.u.answer = true;
    let (p, c) = (r.p.clone(), r.c.clone());
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| {
        ms[1].states[&p]["t"] == json!([2.0, 1.0, 2.0])
            && ms[1].states[&c]["t"] == json!([1.0, 1.0, 2.0])
            && results_for(ms[0], &p).iter().filter(|(o, _)| o == "committed").count() >= 3
            && results_for(ms[0], &c).iter().filter(|(o, _)| o == "committed").count() >= 2
    });
    assert!(r.b.results.iter().all(|x| x["outcome"] != "rolled_back"), "{:?}", r.b.results);
    assert_eq!(r.u.states[&r.p]["material"]["base_color"], json!([1.0, 0.0, 0.0, 1.0]));

    // In the WAL the two transactions interleave: the fast one begins after the slow one and
    // commits before it (docs/WAL.md §3).
    let wal = wal_records(&r.dir.path().join("data"));
    let at = |op: &str, phase: &str| {
        wal.iter().find(|x| x["operation_id"] == op && x["phase"] == phase).map(|x| x["seq"].as_u64().unwrap())
    };
    let (sb, sc) = (at(&slow, "BEGIN").unwrap(), at(&slow, "COMMIT").unwrap());
    let (fb, fc) = (at(&fast, "BEGIN").unwrap(), at(&fast, "COMMIT").unwrap());
    assert!(sb < fb && fc < sc, "slow {sb}..{sc}, fast {fb}..{fc}");
    assert!(at(&fast, "FINAL").is_some() && at(&slow, "FINAL").is_some());
    drop((r.b, r.u));
    r.d.stop();
    let (code, out, err) = verify(&r.dir.path().join("data"));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn rolling_back_the_slow_batch_leaves_the_committed_fast_batch_alone() {
    let mut r = rig();
    let (slow, _fast) = fast_batch_committed_beside_a_slow_one(&mut r);
    // Unity's answer to the slow batch is wrong: it rolls back.
    answer(&mut r.u, &slow, true);
    r.u.answer = true;
    let p = r.p.clone();
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| {
        results_for(ms[0], &p).iter().any(|(o, id)| o == "rolled_back" && id == &slow)
            && ms[1].states[&p].get("material").is_none()
    });
    let rb = r.b.results.iter().find(|x| x["batch_id"] == slow.as_str()).unwrap();
    assert_eq!(rb["kept_local"], true, "a person's edit stays in Blender: {rb}");
    // Y keeps the committed pose everywhere: a replay from 0 to a fresh Unity shows it.
    assert_eq!(r.u.states[&r.y]["t"], json!([3.0, 1.0, 2.0]));
    let mut fresh = Mini::connect(&r.d, "unity", 1.0, 0);
    let y = r.y.clone();
    until(&mut [&mut fresh], DEADLINE, |ms| ms[0].states.contains_key(&y));
    assert_eq!(fresh.states[&r.y]["t"], json!([3.0, 1.0, 2.0]), "the fast batch stays committed");
    assert!(fresh.states[&r.p].get("material").is_none(), "the slow batch was rolled back");
    drop((r.b, r.u, fresh));
    r.d.stop();
    let (code, out, err) = verify(&r.dir.path().join("data"));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_crash_with_the_slow_batch_open_after_a_pipelined_commit_recovers_both() {
    let mut r = rig();
    let (slow, fast) = fast_batch_committed_beside_a_slow_one(&mut r);
    // The FINAL of the fast batch is written after its result: wait for it in the WAL.
    let data = r.dir.path().join("data");
    let end = std::time::Instant::now() + DEADLINE;
    while !wal_records(&data).iter().any(|x| x["operation_id"] == fast.as_str() && x["phase"] == "FINAL") {
        assert!(std::time::Instant::now() < end, "no FINAL for the fast batch");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Killed first: clients closing their sockets before the kill let the daemon roll the
    // slow batch back as PARTICIPANT_LOST before the crash (a flaky run in CI).
    r.d.kill9();
    drop((r.b, r.u));
    let mut d = Daemon::start(&data);
    let wal = wal_records(&data);
    let rb =
        wal.iter().find(|x| x["operation_id"] == slow.as_str() && x["phase"] == "ROLLBACK").expect("slow rolled back");
    assert_eq!(rb["error_code"], "RECOVERED_INCOMPLETE");
    assert!(!wal.iter().any(|x| x["operation_id"] == fast.as_str() && x["phase"] == "ROLLBACK"));
    let mut fresh = Mini::connect(&d, "unity", 1.0, 0);
    let (y, p) = (r.y.clone(), r.p.clone());
    until(&mut [&mut fresh], DEADLINE, |ms| ms[0].states.contains_key(&y) && ms[0].states.contains_key(&p));
    assert_eq!(fresh.states[&r.y]["t"], json!([3.0, 1.0, 2.0]));
    assert!(fresh.states[&r.p].get("material").is_none());
    drop(fresh);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// A slow batch waits for Unity; meanwhile Blender moves Y, and that fast batch is forwarded,
/// answered and committed beside it. Returns (slow batch id, fast batch id).
fn fast_batch_committed_beside_a_slow_one(r: &mut Rig) -> (String, String) {
    let slow = slow_batch_waiting(r);
    let seen = r.u.batches.len();
    r.b.send_change("ty", vec![transform(&r.y, 3.0)], &[]);
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| ms[1].batches.len() > seen);
    let fast = r.u.batches[seen].0.clone();
    answer(&mut r.u, &fast, false);
    let y = r.y.clone();
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| results_for(ms[0], &y).iter().any(|(_, id)| id == &fast));
    (slow, fast)
}

/// Batch size (docs/PROTOCOL.md §6.2): a window that gathered more than `max_batch_changes`
/// changes, or more than `max_batch_mesh_bytes` of meshes, goes as several batches in arrival
/// order; every change commits and the receiver holds everything, each mesh included; a
/// `create` naming a mesh the daemon holds, without the attachment, counts that mesh's size.
#[test]
fn a_window_over_the_batch_bounds_goes_as_several_batches_in_order() {
    use vibesync_protocol::mesh::Mesh;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bounded.toml");
    // A long window: everything sent below waits in one window.
    std::fs::write(
        &cfg,
        "[sync]\nbatch_window_ms = 400\nverify_timeout_ms = 30000\nmax_batch_changes = 2\nmax_batch_mesh_bytes = 100\n",
    )
    .unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let plain: Vec<String> = (0..5).map(|_| new_uuid()).collect();
    let changes = plain.iter().enumerate().map(|(i, id)| create(id, &format!("O{i}"), [i as f64, 0.0, 0.0])).collect();
    assert_eq!(statuses(&b.send_change("plain", changes, &[])), ["queued"; 5]);
    // Three objects showing one 64-byte mesh: the first carries it, the others name it.
    let mesh = crate::sync::triangle_mesh();
    let h = Mesh::hash_bytes(&mesh);
    let shown: Vec<String> = (0..3).map(|_| new_uuid()).collect();
    for (i, id) in shown.iter().enumerate() {
        let mut c = create(id, &format!("M{i}"), [0.0, i as f64, 0.0]);
        c["mesh_hash"] = json!(h);
        let ack = b.send_change(&format!("m{i}"), vec![c], if i == 0 { &mesh } else { &[] });
        assert_eq!(statuses(&ack), ["queued"], "{ack}");
    }
    until(&mut [&mut b, &mut u], DEADLINE, |ms| ms[1].states.len() == 8 && ms[0].results.len() >= 4);
    // At most two changes per batch, and the meshes (64 bytes each against 100) one per
    // batch: at least five batches (2, 2, the fifth plain object beside the first mesh, 1, 1
    // when everything waited in one window; more when the machine was slow to send).
    let counts: Vec<usize> = u.batches.iter().map(|(_, _, n)| *n).collect();
    assert!(counts.iter().all(|&n| (1..=2).contains(&n)), "{:?}", u.batches);
    assert_eq!(counts.iter().sum::<usize>(), 8, "{:?}", u.batches);
    assert!(counts.len() >= 5, "the mesh bound split nothing: {:?}", u.batches);
    assert!(u.batches.iter().all(|(_, path, _)| path == "slow"));
    for id in &shown {
        assert_eq!(u.meshes[id], mesh, "each receiver gets the mesh with every object that shows it");
    }
    let names: Vec<&str> = plain.iter().chain(&shown).map(|id| u.states[id]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["O0", "O1", "O2", "O3", "O4", "M0", "M1", "M2"]);
    assert!(b.results.iter().all(|r| r["outcome"] == "committed"), "{:?}", b.results);
    let committed: usize = b.results.iter().map(|r| r["uuids"].as_array().unwrap().len()).sum();
    assert_eq!(committed, 8);
}

/// Batch bounds and `through` (docs/PROTOCOL.md §6.2 "Batch size", §6.4): Unity renames the
/// cube, then Blender moves it, in one window cut into batches of one change. Blender is a
/// participant of the first batch (the rename) while its move waits for the second: the first
/// result it gets carries an empty `through` (its move is not ended: by the fence rule alone it
/// would be, as it was acknowledged before that batch's fences), the second names the move.
#[test]
fn a_result_names_in_through_only_the_changes_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("one.toml");
    std::fs::write(&cfg, "[sync]\nbatch_window_ms = 300\nverify_timeout_ms = 30000\nmax_batch_changes = 1\n").unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let id = new_uuid();
    b.send_change("c", vec![create(&id, "Cube", [1.0, 2.0, 3.0])], &[]);
    until(&mut [&mut b, &mut u], DEADLINE, |ms| ms[0].results.iter().any(|r| r["through"][&id] == "c"));
    let before = b.results.len();
    let rename = json!({"op":"rename","uuid":id,"name":"Renamed"});
    assert_eq!(statuses(&u.send_change("ren", vec![rename], &[])), ["queued"]);
    assert_eq!(statuses(&b.send_change("mv", vec![transform(&id, 7.0)], &[])), ["queued"]);
    until(&mut [&mut b, &mut u], DEADLINE, |ms| ms[0].results[before..].iter().any(|r| r["through"][&id] == "mv"));
    let got = &b.results[before..];
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["outcome"], "committed", "{got:?}");
    assert_eq!(got[0]["through"], json!({}), "the rename's batch ends none of Blender's changes: {got:?}");
    assert_eq!(got[1]["through"], json!({ id.clone(): "mv" }), "{got:?}");
    until(&mut [&mut b, &mut u], DEADLINE, |ms| ms[1].states[&id]["t"][0] == 7.0);
    assert_eq!(u.states[&id]["name"], "Renamed");
    assert_eq!(b.states.get(&id).map(|s| s["name"].clone()), Some(json!("Renamed")));
}

/// A slow batch commits after a fast one pipelined beside it went out: its COMMIT says
/// `late` (docs/WAL.md §9), so after a crash and restart the replay after the fast batch's
/// seq — what an editor that applied the fast batch and not the slow one holds — still
/// carries the slow batch's object (docs/PROTOCOL.md §6.6; before, the daemon knew late
/// commits only until it stopped).
#[test]
fn a_late_commit_is_replayed_after_a_restart() {
    let mut r = rig();
    let (slow, _fast) = fast_batch_committed_beside_a_slow_one(&mut r);
    let fast_seq = r.u.last_seq;
    answer(&mut r.u, &slow, false);
    let p = r.p.clone();
    until(&mut [&mut r.b, &mut r.u], DEADLINE, |ms| results_for(ms[0], &p).iter().any(|(_, id)| id == &slow));
    let data = r.dir.path().join("data");
    let commit = wal_record(&data, &slow, "COMMIT");
    assert_eq!(commit["payload"]["late"], true, "{commit}");
    assert!(commit["seq"].as_u64() > Some(fast_seq), "{commit} after {fast_seq}");
    drop((r.b, r.u));
    r.d.kill9();
    let cfg = r.dir.path().join("sync-0-120000.toml");
    let mut d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut late = Mini::connect(&d, "unity", 1.0, fast_seq);
    until(&mut [&mut late], DEADLINE, |ms| ms[0].states.get(&p).is_some_and(|s| s.get("material").is_some()));
    assert_eq!(late.batches.len(), 1, "one replay: {:?}", late.batches);
    drop(late);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}
