//! A sync step that panics (a bug): the project's sync restarts, and it starts from the WAL
//! as it is now, not as boot read it; a batch the stopped sync left open is rolled back then;
//! its editors are disconnected (`SYNC_RESTARTED`) and reconnect (docs/RESILIENCE.md "A sync
//! step that panics"). The daemon runs in-process; the daemon's `fault-injection` hook makes a
//! project's next step panic.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use vibesync_daemon::StepPanic;

use super::inproc::InProc;
use crate::common::*;
use crate::sync::{
    create, ended, settle, unity_keeps_a_rename_and_loses_a_part, unitys_kept_full_state_writes_only_its_rename, until,
    Lost, Mini,
};

fn status(d: &InProc) -> Value {
    d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap()
}

/// `(uuid, client_id)` of each entry `status` lists as not synced in project `demo`.
fn listed(d: &InProc) -> Vec<(String, String)> {
    let st = status(d);
    let entries = st["projects"]["demo"]["not_synced"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    entries.iter().map(|e| (text(&e["uuid"]), text(&e["client_id"]))).collect()
}

/// Blender's next change meets an injected panic in the project's sync: both editors are
/// disconnected (`SYNC_RESTARTED`) and reconnect, holding what they held; the steps after
/// it run on the restarted sync.
fn a_step_panics(d: &InProc, mut b: Mini, u: Mini, spare: &str, x: f64) -> (Mini, Mini) {
    d.daemon.stores().inject_step_panic("demo", StepPanic::AtStart);
    let moved = json!({"op":"transform","uuid":spare,"t":[x,0.0,0.0],"r":[0,0,0,1],"s":[1,1,1]});
    let msg = json!({"type":"change","request_id":format!("spare-{x}"),"base_seq":b.last_seq,"changes":[moved]});
    b.c.send(&msg).unwrap();
    let (b, u) = restarted(b, u, d);
    assert!(!d.daemon.stores().take_step_panic("demo", StepPanic::AtStart), "a step panicked");
    (b, u)
}

/// A checkpoint reaches `seq` (the end of `what`) within 30 s, or the test fails.
fn checkpoint_passes(d: &InProc, seq: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(d)["checkpoint"]["seq"].as_u64().is_none_or(|c| c < seq) {
        assert!(Instant::now() < deadline, "no checkpoint past {what} within 30 s: {}", status(d));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The editors read until the daemon disconnects each with `SYNC_RESTARTED` (docs/PROTOCOL.md
/// §4), handling what comes before it (Unity answers the batches it is sent), then each
/// reconnects from its `last_seq`, holding what it held. Fails if that error does not come
/// to each within 20 s.
fn restarted(b: Mini, u: Mini, d: &InProc) -> (Mini, Mini) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut editors = [(b, "blender", false), (u, "unity", false)];
    for (m, ..) in editors.iter_mut() {
        m.c.set_read_timeout(Some(Duration::from_millis(50)));
    }
    while editors.iter().any(|(.., told)| !told) {
        for (m, editor, told) in editors.iter_mut().filter(|(.., told)| !told) {
            assert!(Instant::now() < deadline, "{editor}: no SYNC_RESTARTED within 20 s");
            let Ok(f) = m.c.recv_frame() else { continue };
            let msg: Value = serde_json::from_slice(&f.json).unwrap();
            match (msg["type"].as_str(), msg["code"].as_str()) {
                (Some("error"), Some("SYNC_RESTARTED")) => *told = true,
                // The change that met the panic is not refused (it goes again after the
                // reconnect): no other error comes.
                (Some("error"), _) => panic!("{editor}: only SYNC_RESTARTED, never a refusal: {msg}"),
                _ => m.handle(msg, f.attachment.to_vec()),
            }
        }
    }
    let [(b, ..), (u, ..)] = editors;
    (b.reconnected_at(d.addr, &d.token, "blender"), u.reconnected_at(d.addr, &d.token, "unity"))
}

/// Unity keeps an object it made, not synced (its create rolled back), and keeps a rename of
/// the cube, holding Blender's value of a part whose change of its own lost
/// (`unity_keeps_a_rename_and_loses_a_part`). A step of the project's sync then panics, twice:
/// once with those records after the last checkpoint, once with them in it. Each time the
/// restarted sync still lists Unity's object as not synced, and in the end Unity's kept full
/// state of the cube writes only its rename: Blender's value that won stands in both editors.
/// Before, the restarted sync started from what boot read: it listed nothing, and the full
/// state wrote the value Unity lost over Blender's person's.
#[test]
fn a_sync_restarted_after_a_step_panicked_forgets_nothing_editors_keep() {
    let d = InProc::start(400);
    let mut b = Mini::connect_at(d.addr, &d.token, "blender", 1.0, 0);
    let mut u = Mini::connect_at(d.addr, &d.token, "unity", 1.0, 0);
    let (id, spare, mine) = (new_uuid(), new_uuid(), new_uuid());
    let made = vec![create(&id, "Cube", [1.0, 2.0, 3.0]), create(&spare, "Spare", [0.0; 3])];
    assert_eq!(statuses(&b.send_change("c", made, &[])), ["queued"; 2]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| ended(m[0], "c") && m[1].states.len() == 2);
    settle(&mut [&mut b, &mut u]);
    b.corrupt_next = true; // Blender answers Unity's create wrongly: it rolls back
    assert_eq!(statuses(&u.send_change("k", vec![create(&mine, "Mine", [4.0; 3])], &[])), ["queued"]);
    until(&mut [&mut u, &mut b], Duration::from_secs(20), |m| ended(m[0], "k"));
    settle(&mut [&mut b, &mut u]);
    let kept = vec![(mine.clone(), format!("unity-{}", std::process::id()))];
    assert_eq!(listed(&d), kept, "Unity keeps its object, not synced: {}", status(&d));
    let (_, theirs) = unity_keeps_a_rename_and_loses_a_part(&mut b, &mut u, &id, Lost::Move);
    let kept_seq = wal_records(&d.dir.path().join("data"))
        .into_iter()
        .rfind(|r| r["payload"]["op"] == "kept")
        .and_then(|r| r["seq"].as_u64())
        .expect("a `kept` STEP");

    // The status `listed` reads is the one a sync's step leaves: Blender's move of the spare
    // commits on the restarted sync first. Its FINAL, after the `kept` STEP, lets a checkpoint
    // cover it.
    let (mut b, mut u) = a_step_panics(&d, b, u, &spare, 1.0);
    settle(&mut [&mut b, &mut u]);
    a_moved_spare_commits(&mut b, &mut u, &spare, 2.0);
    assert_eq!(listed(&d), kept, "the restarted sync read the records after the checkpoint");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&d)["checkpoint"]["seq"].as_u64().is_none_or(|c| c < kept_seq) {
        assert!(Instant::now() < deadline, "no checkpoint at seq {kept_seq} within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (mut b, mut u) = a_step_panics(&d, b, u, &spare, 3.0);
    settle(&mut [&mut b, &mut u]);
    a_moved_spare_commits(&mut b, &mut u, &spare, 4.0);
    assert_eq!(listed(&d), kept, "the restarted sync read the checkpoint's records");

    unitys_kept_full_state_writes_only_its_rename(&mut b, &mut u, &id, theirs, &String::new);
    assert_eq!(listed(&d), kept, "Unity's object is still kept");
}

/// Blender moves `spare` to x, and it commits.
fn a_moved_spare_commits(b: &mut Mini, u: &mut Mini, spare: &str, x: f64) {
    let rid = format!("spare-{x}");
    let moved = json!({"op":"transform","uuid":spare,"t":[x,0.0,0.0],"r":[0,0,0,1],"s":[1,1,1]});
    assert_eq!(statuses(&b.send_change(&rid, vec![moved], &[])), ["queued"]);
    until(&mut [&mut *b, &mut *u], Duration::from_secs(20), |m| ended(m[0], &rid));
    let r = b.results.iter().find(|r| r["through"][spare] == rid.as_str()).unwrap();
    assert_eq!(r["outcome"], "committed", "{r}");
}

/// A step panics while a batch is in flight: Blender moved the cube, Unity applied the batch
/// and has not answered it yet. The restarted sync rolls that batch back at once
/// (`RECOVERED_INCOMPLETE`), not at the next boot: a checkpoint then passes it. Both editors
/// are disconnected and reconnect: Unity, which applied the batch, is replayed the cube as
/// committed; Blender, whose move has no `batch_result`, keeps it over that replay and sends
/// it again (docs/PROTOCOL.md §6.6), and it commits in both. Before, the batch stayed open
/// until the next boot (every checkpoint stopped below it), and Blender's move was never
/// answered nor sent again while it stayed connected.
#[test]
fn a_batch_in_flight_when_a_step_panics_is_rolled_back_as_the_sync_restarts() {
    let d = InProc::start_with(100, |c| c.sync.verify_timeout_ms = 60_000);
    let mut b = Mini::connect_at(d.addr, &d.token, "blender", 1.0, 0);
    let mut u = Mini::connect_at(d.addr, &d.token, "unity", 1.0, 0);
    let (id, spare) = (new_uuid(), new_uuid());
    let made = vec![create(&id, "Cube", [1.0, 2.0, 3.0]), create(&spare, "Spare", [0.0; 3])];
    assert_eq!(statuses(&b.send_change("c", made, &[])), ["queued"; 2]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| ended(m[0], "c") && m[1].states.len() == 2);
    settle(&mut [&mut b, &mut u]);

    u.answer = false; // Unity applies the move's batch and does not answer it: it stays in flight
    let moved = json!({"op":"transform","uuid":id,"t":[5.0,2.0,3.0],"r":[0,0,0,1],"s":[1,1,1]});
    assert_eq!(statuses(&b.send_change("m", vec![moved.clone()], &[])), ["queued"]);
    // Unity applied the move's batch (its live preview came first), the create's before it.
    let batches_of = |m: &Mini| m.applies.values().filter(|us| us.contains(&id)).count();
    until(&mut [&mut u, &mut b], Duration::from_secs(20), |m| batches_of(m[0]) == 2);
    assert_eq!(u.states[&id]["t"], json!([5.0, 2.0, 3.0]));
    let data = d.dir.path().join("data");
    let begin = wal_records(&data)
        .into_iter()
        .rfind(|r| {
            r["phase"] == "BEGIN" && r["session_id"] == "sync" && r["uuids"].as_array().unwrap().contains(&json!(id))
        })
        .expect("the move's batch BEGIN");
    let op = begin["operation_id"].as_str().unwrap().to_string();
    assert!(b.results.iter().all(|r| r["through"][&id] != "m"), "the move has no result yet");

    let (mut b, mut u) = a_step_panics(&d, b, u, &spare, 1.0);
    let rollback = wal_records(&data)
        .into_iter()
        .find(|r| r["operation_id"] == op.as_str() && r["phase"] == "ROLLBACK")
        .unwrap_or_else(|| {
            let of: Vec<Value> = wal_records(&data).into_iter().filter(|r| r["operation_id"] == op.as_str()).collect();
            panic!("the cut batch is rolled back as the sync restarts, with no boot: {of:?}")
        });
    assert_eq!(rollback["error_code"], "RECOVERED_INCOMPLETE", "{rollback}");

    // Blender keeps its move over the replay (it has no result: local work, §6.6) and sends
    // it again; Unity is replayed the cube as committed, then takes Blender's move.
    b.own_pose.insert(id.clone());
    b.own_pose_until.insert(id.clone(), "m-again".into());
    assert_eq!(statuses(&b.send_change("m-again", vec![moved], &[])), ["queued"]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| ended(m[0], "m-again"));
    settle(&mut [&mut b, &mut u]);
    let r = b.results.iter().find(|r| r["through"][&id] == "m-again").unwrap();
    assert_eq!(r["outcome"], "committed", "{r}");
    let replayed = u.batches.iter().any(|(bid, path, _)| path == "resync" && u.applies[bid].contains(&id));
    assert!(replayed, "Unity was sent the cube again after it reconnected: {:?}", u.batches);
    for (name, m) in [("Blender", &b), ("Unity", &u)] {
        assert_eq!(m.states[&id]["t"], json!([5.0, 2.0, 3.0]), "{name} holds Blender's move");
    }

    checkpoint_passes(&d, rollback["seq"].as_u64().unwrap(), "the cut batch");
}

/// A step panics after the sync committed a batch and before its FINAL: Blender moved the
/// cube and Unity answered the batch. The restarted sync finalizes that batch at once
/// (`{"recovered":true,"commit_seq":C}`, one FINAL), not at the next boot: a checkpoint then
/// passes it. Both editors reconnect and the move stands in both. Before, the batch stayed
/// without a FINAL until the next boot, and no checkpoint of the daemon passed its BEGIN.
#[test]
fn a_batch_committed_when_a_step_panics_is_finalized_as_the_sync_restarts() {
    let d = InProc::start(100);
    let mut b = Mini::connect_at(d.addr, &d.token, "blender", 1.0, 0);
    let mut u = Mini::connect_at(d.addr, &d.token, "unity", 1.0, 0);
    let id = new_uuid();
    assert_eq!(statuses(&b.send_change("c", vec![create(&id, "Cube", [1.0, 2.0, 3.0])], &[])), ["queued"]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| ended(m[0], "c") && m[1].states.len() == 1);
    settle(&mut [&mut b, &mut u]);

    d.daemon.stores().inject_step_panic("demo", StepPanic::BeforeFinal);
    let moved = json!({"op":"transform","uuid":id,"t":[5.0,2.0,3.0],"r":[0,0,0,1],"s":[1,1,1]});
    assert_eq!(statuses(&b.send_change("m", vec![moved.clone()], &[])), ["queued"]);
    let (mut b, mut u) = restarted(b, u, &d);
    assert!(!d.daemon.stores().take_step_panic("demo", StepPanic::BeforeFinal), "the step panicked before a FINAL");

    let data = d.dir.path().join("data");
    let records = wal_records(&data);
    let commit = records
        .iter()
        .rfind(|r| {
            r["phase"] == "COMMIT" && r["session_id"] == "sync" && r["uuids"].as_array().unwrap().contains(&json!(id))
        })
        .expect("the move's batch COMMIT");
    let op = commit["operation_id"].as_str().unwrap();
    let finals: Vec<&Value> = records.iter().filter(|r| r["operation_id"] == op && r["phase"] == "FINAL").collect();
    assert_eq!(finals.len(), 1, "one FINAL, written as the sync restarted, with no boot: {finals:?}");
    assert_eq!(finals[0]["payload"], json!({"recovered": true, "commit_seq": commit["seq"]}), "{}", finals[0]);

    // Blender's move has no result if the panic came before it was answered: it keeps it and
    // sends it again (§6.6); either way it stands in both editors.
    if !b.results.iter().any(|r| r["through"][&id] == "m") {
        b.own_pose.insert(id.clone());
        b.own_pose_until.insert(id.clone(), "m-again".into());
        assert_eq!(statuses(&b.send_change("m-again", vec![moved], &[])), ["queued"]);
        until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| ended(m[0], "m-again"));
    }
    settle(&mut [&mut b, &mut u]);
    for (name, m) in [("Blender", &b), ("Unity", &u)] {
        assert_eq!(m.states[&id]["t"], json!([5.0, 2.0, 3.0]), "{name} holds Blender's move");
    }

    checkpoint_passes(&d, commit["seq"].as_u64().unwrap(), "the finalized batch");
}
