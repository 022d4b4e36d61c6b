//! A sync step that panics (a bug): the project's sync restarts, and it starts from the WAL
//! as it is now, not as boot read it (docs/RESILIENCE.md "A sync step that panics"). The
//! daemon runs in-process; the daemon's `fault-injection` hook makes a project's next step
//! panic.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

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

/// Blender's next change meets an injected panic in the project's sync; the step after it
/// runs on the restarted sync.
fn a_step_panics(d: &InProc, b: &mut Mini, spare: &str, x: f64) {
    d.daemon.stores().inject_step_panic("demo");
    let moved = json!({"op":"transform","uuid":spare,"t":[x,0.0,0.0],"r":[0,0,0,1],"s":[1,1,1]});
    let reply = b.send_change(&format!("spare-{x}"), vec![moved], &[]);
    assert!(!d.daemon.stores().take_step_panic("demo"), "a step panicked: {reply}");
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
    a_step_panics(&d, &mut b, &spare, 1.0);
    a_moved_spare_commits(&mut b, &mut u, &spare, 2.0);
    assert_eq!(listed(&d), kept, "the restarted sync read the records after the checkpoint");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&d)["checkpoint"]["seq"].as_u64().is_none_or(|c| c < kept_seq) {
        assert!(Instant::now() < deadline, "no checkpoint at seq {kept_seq} within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    a_step_panics(&d, &mut b, &spare, 3.0);
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
