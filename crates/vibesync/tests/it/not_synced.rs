//! The not-synced uuids (docs/PROTOCOL.md §5 `status`, §6.4) survive a daemon restart: they
//! are rebuilt from the WAL at boot — from the checkpoint's kept records and the log after
//! it, or from the whole log — so `status` still lists a person's edit kept locally after a
//! failed propagation, and a reconnecting origin is not replayed over it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, fast_config, settle, until, Mini};

/// A data dir in a temporary directory, and the config of a 20 ms window: `start` runs the
/// daemon on it (again, after a stop or a kill).
struct Store {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    cfg: std::path::PathBuf,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let (data, cfg) = (dir.path().join("data"), fast_config(dir.path(), 20, 5000));
        Store { _dir: dir, data, cfg }
    }

    fn start(&self) -> Daemon {
        Daemon::start_with(&self.data, &["--config", self.cfg.to_str().unwrap()], "127.0.0.1:0")
    }
}

fn status(d: &Daemon) -> Value {
    d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap()
}

fn move_to(m: &mut Mini, rid: &str, id: &str, t: [f64; 3]) {
    m.send_change(rid, vec![json!({"op":"transform","uuid":id,"t":t,"r":[0,0,0,1],"s":[1,1,1]})], &[]);
}

/// Drive both until `b` has the `batch_result` (`outcome`) that ends its request `rid` of
/// `uuid` (`through`, PROTOCOL §6.4); fails at the deadline.
fn ended(b: &mut Mini, u: &mut Mini, uuid: &str, rid: &str, outcome: &str) {
    until(&mut [b, u], Duration::from_secs(30), |m| {
        m[0].results.iter().any(|r| r["outcome"] == outcome && r["through"][uuid] == rid)
    });
}

/// Wait until the daemon's checkpoint is at `seq` or past it (a checkpoint never passes the
/// audit's last FINAL: the caller puts a transaction after `seq`); fails after 30 s.
fn checkpoint_at(d: &Daemon, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(d)["checkpoint"]["seq"].as_u64().is_none_or(|c| c < seq) {
        assert!(Instant::now() < deadline, "no checkpoint at seq {seq} within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The uuids `status` lists as not synced in project `demo`.
fn listed(st: &Value) -> Vec<Value> {
    st["projects"]["demo"]["not_synced"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_kept_edit_stays_not_synced_across_kill9_and_is_not_replayed_over() {
    let store = Store::new();
    let data = store.data.clone();
    let mut d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (kept, covered) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&kept, "Kept", [1.0, 2.0, 3.0]), create(&covered, "Covered", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);

    // `covered`: a person's move fails to propagate (kept locally), then a later move commits.
    // Each step waits for its own result (a quiet spell can come before the batch on a
    // loaded machine, and the next move would join it).
    u.corrupt_next = true;
    move_to(&mut b, "c1", &covered, [5.0, 5.0, 5.0]);
    ended(&mut b, &mut u, &covered, "c1", "rolled_back");
    move_to(&mut b, "c2", &covered, [6.0, 6.0, 6.0]);
    ended(&mut b, &mut u, &covered, "c2", "committed");
    // `kept`: a person's move fails to propagate and nothing covers it.
    u.corrupt_next = true;
    move_to(&mut b, "k1", &kept, [9.0, 9.0, 9.0]);
    ended(&mut b, &mut u, &kept, "k1", "rolled_back");
    settle(&mut [&mut b, &mut u]);
    let rb = b.results.iter().rfind(|r| r["outcome"] == "rolled_back").expect("rolled back").clone();
    assert_eq!(rb["kept_local"], true, "{rb}");
    assert_eq!(rb["uuids"], json!([kept]), "{rb}");
    let before = listed(&status(&d));
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["uuid"], kept.as_str());

    // A checkpoint covering all of it, so the restart reads only what follows it (a
    // checkpoint never passes the audit's last FINAL: one more transaction puts one after).
    let other = new_uuid();
    let ack = register(&mut d.client("test"), "r", &[(other.as_str(), "object", "Other")]);
    assert_eq!(statuses(&ack), ["registered"], "{ack}");
    checkpoint_at(&d, rb["seq"].as_u64().unwrap());
    let b_states = b.states.clone();
    drop((b, u));
    d.kill9();

    // 1. Restart from the checkpoint (its kept records: both ROLLBACKs and the COMMIT that
    //    covered `covered`); 2. restart reading the whole log (checkpoint removed).
    for (round, from_checkpoint) in [(1, true), (2, false)] {
        if !from_checkpoint {
            std::fs::remove_file(data.join("checkpoint.json")).unwrap();
        }
        d = store.start();
        let st = status(&d);
        assert_eq!(st["boot"]["resumed_after"].is_u64(), from_checkpoint, "round {round}: {}", st["boot"]);
        let after = listed(&st);
        assert_eq!(after.len(), 1, "round {round}: only the uncovered uuid is listed: {after:?}");
        let e = &after[0];
        assert_eq!(e["uuid"], kept.as_str());
        assert_eq!(e["client"], "blender", "{e}");
        assert_eq!(e["client_id"], format!("blender-{}", std::process::id()), "{e}");
        assert_eq!(e["seq"], rb["seq"], "the ROLLBACK record: {e}");
        assert_eq!(e["reason"], rb["reason"], "{e}");
        assert_eq!(e, &before[0], "round {round}: the same entry as before the restart");

        // The origin reconnects from seq 0: it is replayed every object but the one it kept.
        let mut b = Mini::connect(&d, "blender", 1.0, 0);
        b.states = b_states.clone();
        until(&mut [&mut b], Duration::from_secs(30), |m| !m[0].batches.is_empty());
        settle(&mut [&mut b]);
        assert_eq!(b.batches.len(), 1, "round {round}: one replay: {:?}", b.batches);
        assert_eq!(b.batches[0].1, "resync");
        assert_eq!(b.batches[0].2, 1, "round {round}: `covered` only, never the kept uuid");
        assert_eq!(b.states[&kept]["t"], json!([9.0, 9.0, 9.0]), "the person's edit is not replayed over");
        assert_eq!(b.states[&covered]["t"], json!([6.0, 6.0, 6.0]));
        drop(b);
        if from_checkpoint {
            d.kill9();
        } else {
            d.stop(); // a third kill -9 in a row would be a crash loop (safe mode)
        }
    }

    // The person edits it again: it propagates, and a later commit covers it — also after a
    // restart.
    d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    b.states = b_states;
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    settle(&mut [&mut b, &mut u]);
    move_to(&mut b, "k2", &kept, [8.0, 8.0, 8.0]);
    settle(&mut [&mut b, &mut u]);
    assert_eq!(u.states[&kept]["t"], json!([8.0, 8.0, 8.0]));
    assert_eq!(listed(&status(&d)), Vec::<Value>::new());
    drop((b, u));
    d.stop();
    d = store.start();
    assert_eq!(listed(&status(&d)), Vec::<Value>::new(), "covered before the restart");
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// A rollback's correction lost on the way: Unity applies a batch, reads its `batch_result`
/// `rolled_back`, and the daemon dies before the resync that re-sends Unity the
/// authoritative state arrives. The result carried the seq before the ROLLBACK record
/// (PROTOCOL §6.4), so Unity's `last_seq` had not passed it and the replay after it, read
/// from the WAL at boot, brings the authoritative state: the object whose create failed to
/// propagate is deleted in Unity — and stays in Blender, where the person made it.
#[test]
fn a_rollbacks_resync_lost_in_a_crash_comes_again_in_the_replay() {
    let store = Store::new();
    let data = store.data.clone();
    let mut d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let kept = new_uuid();
    b.send_change("k", vec![create(&kept, "Kept", [0.0, 0.0, 0.0])], &[]);
    ended(&mut b, &mut u, &kept, "k", "committed");
    settle(&mut [&mut b, &mut u]);

    let id = new_uuid();
    u.corrupt_next = true;
    b.send_change("c", vec![create(&id, "Cube", [1.0, 2.0, 3.0])], &[]);
    // Unity applies the batch (answering a wrong hash) and reads up to its result, no further.
    let rb = u.read_through(|m| m["type"] == "batch_result");
    assert_eq!(rb["outcome"], "rolled_back", "{rb}");
    assert!(u.states.contains_key(&id), "Unity applied the create");
    until(&mut [&mut b], Duration::from_secs(30), |m| {
        m[0].results.iter().any(|r| r["outcome"] == "rolled_back" && r["through"][&id] == "c")
    });
    let rollback = wal_record(&data, rb["batch_id"].as_str().unwrap(), "ROLLBACK");
    assert!(
        rb["seq"].as_u64() < rollback["seq"].as_u64(),
        "the result to the editor that is corrected stays before the ROLLBACK: {rb} {rollback}"
    );
    let (u_states, u_seq) = (u.states.clone(), u.last_seq);
    drop((b, u));
    d.kill9();

    d = store.start();
    let mut u = Mini::connect(&d, "unity", 1.0, u_seq);
    u.states = u_states;
    until(&mut [&mut u], Duration::from_secs(30), |m| !m[0].states.contains_key(&id));
    assert!(u.states.contains_key(&kept), "the committed object stays");
    assert_eq!(u.batches.len(), 1, "one replay: {:?}", u.batches);
    let st = status(&d);
    assert_eq!(listed(&st).len(), 1, "Blender's create stays not synced: {st}");
    drop(u);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// A conflict's correction lost in a crash: Blender and then Unity move the cube in one
/// window; Blender, the loser, keeps its own pose while its move is in flight (PROTOCOL §6.4)
/// and reads the result, and the daemon is killed before the correction reaches it — after a
/// checkpoint has passed the batch. The COMMIT names the corrected uuid (docs/WAL.md §9) and
/// the checkpoint keeps it, so the replay after Blender's `last_seq` brings the winner's pose.
#[test]
fn a_conflicts_correction_lost_in_a_crash_comes_again_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut d, mut b, mut u, id) = crate::sync::a_synced_cube_in_window(dir.path(), 400);
    let mv = |x: f64| json!({"op":"transform","uuid":id,"t":[x,0.0,0.0],"r":[0,0,0,1],"s":[1,1,1]});
    assert_eq!(statuses(&b.send_change("b-mv", vec![mv(4.0)], &[])), ["queued"]);
    assert_eq!(statuses(&u.send_change("u-mv", vec![mv(7.0)], &[])), ["queued"]);
    let rb = b.read_through(|m| m["type"] == "batch_result" && m["through"][&id] == "b-mv");
    assert_eq!(rb["outcome"], "committed", "{rb}");
    let commit = wal_record(&data, rb["batch_id"].as_str().unwrap(), "COMMIT");
    assert_eq!(commit["payload"]["corrected"], json!([id]), "{commit}");
    // A checkpoint past the COMMIT (one more transaction puts a FINAL after it).
    let other = new_uuid();
    assert_eq!(statuses(&register(&mut d.client("test"), "r", &[(other.as_str(), "object", "Other")])), ["registered"]);
    checkpoint_at(&d, commit["seq"].as_u64().unwrap());
    b.states.get_mut(&id).unwrap()["t"] = json!([4.0, 0.0, 0.0]); // its own pose, kept
    let (b_states, b_seq) = (b.states.clone(), b.last_seq);
    drop((b, u));
    d.kill9();

    let cfg = dir.path().join("sync-400-5000.toml");
    d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    assert!(status(&d)["boot"]["resumed_after"].is_u64(), "the restart read the checkpoint");
    let mut b = Mini::connect(&d, "blender", 1.0, b_seq);
    b.states = b_states;
    until(&mut [&mut b], Duration::from_secs(30), |m| m[0].states[&id]["t"] == json!([7.0, 0.0, 0.0]));
    drop(b);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// A change refused with a code its editor keeps it under (`INVALID_FIELD` here: Blender's
/// person puts A under B while B is under A) stays in that editor, marked not synced
/// (docs/PROTOCOL.md §6.1): `status` lists it too, with the editor and the reason, although
/// a refusal writes nothing to the WAL; the editor's next change of it that is queued takes
/// it off the list, and so does a commit of the uuid.
#[test]
fn a_refused_change_its_editor_keeps_is_listed_not_synced_until_sent_again() {
    let store = Store::new();
    let d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (a, bb) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&a, "A", [0.0; 3]), create(&bb, "B", [1.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);
    b.send_change("p", vec![json!({"op":"reparent","uuid":bb,"parent":a})], &[]);
    settle(&mut [&mut b, &mut u]);
    let base = b.last_seq;
    let ack = b.ask(&json!({"type":"change","request_id":"loop","base_seq":base,"changes":[{"op":"reparent","uuid":a,"parent":bb}]}));
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "{ack}");
    let shown = listed(&status(&d));
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["uuid"], json!(a));
    assert_eq!(shown[0]["client"], "blender");
    let reason = shown[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("INVALID_FIELD: ") && reason.contains("own ancestor"), "{reason}");
    // The person puts A elsewhere: queued, no longer listed; committed, still not.
    b.send_change("fix", vec![json!({"op":"reparent","uuid":a,"parent":null})], &[]);
    assert_eq!(listed(&status(&d)), Vec::<Value>::new());
    settle(&mut [&mut b, &mut u]);
    assert_eq!(listed(&status(&d)), Vec::<Value>::new());
}

/// The refusals met while a change is read, before admission — a coordinate out of range, a
/// name too long, the object as its own parent — are kept by their editor like the others
/// and listed by `status` the same way (docs/PROTOCOL.md §5). They were missing from the list.
#[test]
fn a_change_refused_as_it_is_read_is_listed_not_synced_too() {
    let store = Store::new();
    let d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (x, y, z) = (new_uuid(), new_uuid(), new_uuid());
    b.send_change(
        "c",
        vec![create(&x, "X", [0.0; 3]), create(&y, "Y", [1.0, 0.0, 0.0]), create(&z, "Z", [2.0, 0.0, 0.0])],
        &[],
    );
    settle(&mut [&mut b, &mut u]);
    let base = b.last_seq;
    let ack = b.ask(&json!({"type":"change","request_id":"bad","base_seq":base,"changes":[
        {"op":"transform","uuid":x,"t":[2e9,0,0],"r":[0,0,0,1],"s":[1,1,1]},
        {"op":"rename","uuid":y,"name":"N".repeat(1100)},
        {"op":"reparent","uuid":z,"parent":z}]}));
    let codes: Vec<&str> =
        ack["results"].as_array().unwrap().iter().map(|r| r["error_code"].as_str().unwrap_or("")).collect();
    assert_eq!(codes, ["INVALID_FIELD", "TOO_LARGE", "INVALID_FIELD"], "{ack}");
    let shown = listed(&status(&d));
    let mut uuids: Vec<&str> = shown.iter().map(|s| s["uuid"].as_str().unwrap()).collect();
    uuids.sort();
    let mut want = vec![x.as_str(), y.as_str(), z.as_str()];
    want.sort();
    assert_eq!(uuids, want, "{shown:?}");
    for s in &shown {
        assert_eq!(s["client"], "blender", "{s}");
        let reason = s["reason"].as_str().unwrap();
        assert!(reason.starts_with("INVALID_FIELD: ") || reason.starts_with("TOO_LARGE: "), "{reason}");
    }
    // The editor's next change of Y refused with a code it does not keep (a NUL in the name:
    // `INVALID_NAME`) ends what was listed of it (§5: refused other than `BLOCKED` or
    // `QUARANTINED`).
    let ack = b.ask(&json!({"type":"change","request_id":"nul","base_seq":base,"changes":[
        {"op":"rename","uuid":y,"name":"a\u{0}b"}]}));
    assert_eq!(ack["results"][0]["error_code"], "INVALID_NAME", "{ack}");
    let shown = listed(&status(&d));
    assert!(!shown.iter().any(|s| s["uuid"] == json!(y)), "{shown:?}");
    // Automation's change refused as it is read is automation's, not a person's (§6.1): not
    // listed, and its origin is sent the state that stands.
    let resyncs = u.batches.len();
    let ack = u.ask(&json!({"type":"change","request_id":"bot","base_seq":u.last_seq,
        "automation":{"operation_id":"op-1","tool":"object.transform","agent_session":"a1"},
        "changes":[{"op":"transform","uuid":z,"t":[0,3e9,0],"r":[0,0,0,1],"s":[1,1,1]}]}));
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "{ack}");
    let shown = listed(&status(&d));
    assert!(!shown.iter().any(|s| s["uuid"] == json!(z) && s["client"] == "unity"), "{shown:?}");
    assert!(
        u.pump_until(Duration::from_secs(10), |m| m.batches.len() > resyncs),
        "Unity is sent Z's state that stands"
    );
}

/// The origin's session ends before its batch rolls back: Blender's person moves an object,
/// Unity receives the batch, Blender disconnects, then Unity leaves without answering
/// (`PARTICIPANT_LOST`). Blender still keeps the person's move, so `status` names Blender's
/// `client_id` (as the batch formed, not as connected at the rollback: it is gone) and the
/// ROLLBACK's `kept_by` does too — and when Blender reconnects from seq 0 it is replayed
/// every object but the one it kept (docs/PROTOCOL.md §5 `status`, §6.4, §6.6).
#[test]
fn a_rollback_after_its_origin_left_names_that_editor_and_its_kept_edit_is_not_replayed_over() {
    let store = Store::new();
    let data = store.data.clone();
    let d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (kept, other) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&kept, "Kept", [1.0, 2.0, 3.0]), create(&other, "Other", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);
    u.answer = false;
    let seen = u.batches.len();
    move_to(&mut b, "k1", &kept, [9.0, 9.0, 9.0]);
    until(&mut [&mut u], Duration::from_secs(20), |m| m[0].batches.len() > seen);
    let b_states = b.states.clone();
    drop(b);
    // Blender's session has ended (the daemon saw it go) before Unity leaves.
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&d)["sessions"].as_array().is_some_and(|s| s.iter().any(|x| x["editor"] == "blender")) {
        assert!(Instant::now() < deadline, "Blender's session did not end: {}", status(&d)["sessions"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(u);
    let blender = format!("blender-{}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        if let Some(e) = listed(&status(&d)).into_iter().find(|e| e["uuid"] == kept.as_str()) {
            break e;
        }
        assert!(Instant::now() < deadline, "no rollback listed the kept move: {}", d.stderr_log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(e["client"], "blender", "{e}");
    assert_eq!(e["client_id"], blender.as_str(), "the editor that keeps it, gone as it is: {e}");
    let rb = wal_records(&data).into_iter().rfind(|r| r["phase"] == "ROLLBACK").expect("a ROLLBACK");
    assert_eq!(rb["error_code"], "PARTICIPANT_LOST", "{rb}");
    assert_eq!(rb["payload"]["kept_by"][&blender]["client"], "blender", "{rb}");
    assert_eq!(rb["payload"]["kept_local"][&kept], json!([blender]), "{rb}");
    // Blender comes back from seq 0: replayed `other`, never the kept uuid.
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    b.states = b_states;
    until(&mut [&mut b], Duration::from_secs(30), |m| !m[0].batches.is_empty());
    settle(&mut [&mut b]);
    assert!(b.applies.values().flatten().all(|v| *v != kept), "the kept uuid is not replayed: {:?}", b.applies);
    assert_eq!(b.states[&kept]["t"], json!([9.0, 9.0, 9.0]), "the person's move stays");
    assert!(b.applies.values().flatten().any(|v| *v == other), "the rest is replayed: {:?}", b.applies);
}

/// A `create` naming its mesh by a hash the daemon does not hold, without the attachment, is
/// refused `INVALID_FIELD` ("unknown mesh") — a refusal its editor does not keep: it sends the
/// change again with the mesh (docs/PROTOCOL.md §6.1). So `status` never lists it not synced,
/// and the change sent again with its mesh commits.
#[test]
fn a_change_refused_for_a_mesh_it_did_not_carry_is_not_listed_not_synced() {
    let store = Store::new();
    let d = store.start();
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let x = new_uuid();
    let mesh = vibesync_protocol::mesh::Mesh {
        positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        normals: None,
        uv0: None,
        indices: vec![0, 1, 2],
    }
    .encode();
    let hash = vibesync_protocol::mesh::Mesh::hash_bytes(&mesh);
    let mut made = create(&x, "Tri", [0.0; 3]);
    made["mesh_hash"] = json!(hash);
    let base = b.last_seq;
    let ack = b.ask(&json!({"type":"change","request_id":"bare","base_seq":base,"changes":[made.clone()]}));
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "{ack}");
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("unknown mesh"), "{ack}");
    assert_eq!(listed(&status(&d)), Vec::<Value>::new(), "not a change its editor keeps");
    let ack = b.send_change("with-mesh", vec![made], &mesh);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| m[1].states.contains_key(&x));
    assert_eq!(listed(&status(&d)), Vec::<Value>::new());
}

/// Unity's person creates a cube; Blender cannot apply it, the batch rolls back and Unity
/// keeps it, listed not synced. The person then deletes it: refused `NOT_FOUND` (it never
/// committed), which ends the entry (PROTOCOL §6.4: a change sent again). The end is in the
/// WAL (a `kept` STEP, docs/WAL.md §9 "Kept uuids"): a restart, from the whole log or from a
/// checkpoint, does not list it again. Before, boot read only the ROLLBACK that listed it,
/// and the next replay left the uuid out in Unity.
/// Blender and Unity connect to `d`; Unity makes an object and Blender answers its batch
/// wrongly: it rolls back, and Unity keeps it, listed not synced. (Blender, Unity, its uuid.)
fn unity_keeps_what_it_made(d: &Daemon) -> (Mini, Mini, String) {
    let mut b = Mini::connect(d, "blender", 1.0, 0);
    let mut u = Mini::connect(d, "unity", 1.0, 0);
    let id = new_uuid();
    b.corrupt_next = true;
    u.send_change("k", vec![create(&id, "Mine", [1.0, 2.0, 3.0])], &[]);
    ended(&mut u, &mut b, &id, "k", "rolled_back");
    settle(&mut [&mut b, &mut u]);
    assert_eq!(listed(&status(d)).len(), 1, "kept in Unity, not synced");
    (b, u, id)
}

#[test]
fn a_not_synced_entry_its_editor_ended_stays_ended_across_a_restart() {
    let store = Store::new();
    let data = store.data.clone();
    let mut d = store.start();
    let (b, mut u, id) = unity_keeps_what_it_made(&d);
    let ack = u.send_change("d", vec![json!({"op":"delete","uuid":id})], &[]);
    assert_eq!(ack["results"][0]["error_code"], "NOT_FOUND", "{ack}");
    assert_eq!(listed(&status(&d)), Vec::<Value>::new(), "its person deleted it: no longer kept");
    let kept = wal_records(&data).into_iter().rfind(|r| r["payload"]["op"] == "kept").expect("a `kept` STEP");
    assert_eq!(kept["payload"]["kept"][&id]["not_synced"], json!([]), "{kept}");
    drop((b, u));
    // A checkpoint past it (one more transaction puts a FINAL after it).
    let other = new_uuid();
    assert_eq!(statuses(&register(&mut d.client("test"), "r", &[(other.as_str(), "object", "Other")])), ["registered"]);
    checkpoint_at(&d, kept["seq"].as_u64().unwrap());
    for from_checkpoint in [true, false] {
        d.kill9();
        if !from_checkpoint {
            std::fs::remove_file(data.join("checkpoint.json")).unwrap();
        }
        d = store.start();
        let st = status(&d);
        assert_eq!(st["boot"]["resumed_after"].is_u64(), from_checkpoint, "{}", st["boot"]);
        assert_eq!(listed(&st), Vec::<Value>::new(), "not listed again (checkpoint: {from_checkpoint})");
    }
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// A checkpoint that fails to be written (here the file's place is taken by a directory)
/// loses none of the records it was to keep: the next one written keeps them (docs/WAL.md
/// §9). Unity's kept object is still listed not synced after a kill -9 and a boot from that
/// checkpoint. Before, the failed write had taken them from the records waiting for a
/// checkpoint, the next checkpoint lacked the ROLLBACK, and the boot listed nothing.
#[test]
fn a_checkpoint_that_failed_to_be_written_loses_no_kept_record() {
    let store = Store::new();
    let data = store.data.clone();
    let mut d = store.start();
    let in_the_way = data.join("checkpoint.json");
    let _ = std::fs::remove_file(&in_the_way);
    std::fs::create_dir_all(in_the_way.join("in-the-way")).unwrap();
    let (b, u, _) = unity_keeps_what_it_made(&d);
    let kept = listed(&status(&d));
    // A transaction after the ROLLBACK: a checkpoint can cover it once its FINAL is audited.
    let other = new_uuid();
    assert_eq!(statuses(&register(&mut d.client("test"), "r", &[(other.as_str(), "object", "Other")])), ["registered"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.stderr_log().contains("checkpoint not written") {
        assert!(Instant::now() < deadline, "no failed checkpoint within 30 s: {}", d.stderr_log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::remove_dir_all(&in_the_way).unwrap();
    checkpoint_at(
        &d,
        d.client("test").request(&json!({"type":"status","request_id":"s"})).unwrap()["seq"].as_u64().unwrap(),
    );
    drop((b, u));
    d.kill9();
    d = store.start();
    let st = status(&d);
    assert!(st["boot"]["resumed_after"].is_u64(), "booted from the checkpoint: {}", st["boot"]);
    assert_eq!(listed(&st), kept, "still kept in Unity after the boot");
    d.stop();
}
