//! Storage read faults: a registry read that fails is an error, never "absent".
//!
//! The daemon runs in-process on real sled; the registry's `fault-injection` hook makes its
//! reads fail (one uuid, or all of them). Every path that reads the registry to answer an
//! editor — register's kind-clash check, tombstone, change admission, the current state a
//! change builds on, the start of a batch, replay, the quarantine commands, `scene_query` —
//! answers `STORAGE_FAILED` (per item where the request has items) and the daemon stops
//! (docs/PROTOCOL.md §4, docs/ARCHITECTURE.md storage invariant). Nothing is acknowledged
//! or sent as if the record were missing: no `registered` over an unread record, no
//! `NOT_FOUND`, no empty replay.

use std::time::Duration;

use serde_json::{json, Value};
use vibesync_registry::ReadFault;

use super::editor::*;
use super::inproc::InProc;
use crate::common::*;

fn storage_failed_item(ack: &Value, i: usize) {
    assert_eq!(ack["type"], "ack", "{ack}");
    let r = &ack["results"][i];
    assert_eq!(r["status"], "error", "{ack}");
    assert_eq!(r["error_code"], "STORAGE_FAILED", "{ack}");
    assert!(r["message"].as_str().unwrap().contains("injected read fault"), "{ack}");
}

fn storage_failed_error(reply: &Value, rid: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "STORAGE_FAILED", "{reply}");
    assert_eq!(reply["request_id"], rid, "{reply}");
}

/// A create committed with nobody else to verify it (the daemon's state of `u`).
fn created(e: &mut Editor, u: &str, name: &str) {
    let ack = e.change(&format!("c-{name}"), vec![create_op(u, name, [1.0, 2.0, 3.0])]).unwrap();
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    let done = e
        .pump_until(Duration::from_secs(20), |e| {
            e.results.iter().any(|r| r["outcome"] == "committed" && r["uuids"].as_array().unwrap().contains(&json!(u)))
        })
        .unwrap();
    assert!(done, "create of {name} committed");
}

#[test]
fn register_during_a_read_fault_fails_the_item_and_never_skips_the_kind_check() {
    let d = InProc::start(0);
    let mut c = d.client("blender");
    let (u1, u2) = (new_uuid(), new_uuid());
    let ack = register(&mut c, "r1", &[(&u1, "object", "Cube")]);
    assert_eq!(statuses(&ack), ["registered"]);
    d.fail_reads(ReadFault::Uuid(u1.clone()));
    // The same uuid as another kind: a read treated as "absent" would answer `registered`.
    let ack = register(&mut c, "r2", &[(&u1, "mesh", "CubeMesh"), (&u2, "object", "New")]);
    storage_failed_item(&ack, 0);
    assert_eq!(ack["results"][1]["status"], "registered", "{ack}");
    let wal = wal_records(d.daemon.data_dir().root());
    assert!(
        !wal.iter().any(|r| r["payload"]["uuid"] == u1.as_str() && r["payload"]["kind"] == "mesh"),
        "nothing written for the unread item"
    );
    d.assert_stops();
}

#[test]
fn tombstone_during_a_read_fault_answers_storage_failed_not_not_found() {
    let d = InProc::start(0);
    let mut c = d.client("blender");
    let u = new_uuid();
    assert_eq!(statuses(&register(&mut c, "r", &[(&u, "object", "Cube")])), ["registered"]);
    d.fail_reads(ReadFault::Uuid(u.clone()));
    let ack = c.request(&json!({"type":"tombstone","request_id":"t","uuids":[u]})).unwrap();
    storage_failed_item(&ack, 0);
    d.assert_stops();
}

#[test]
fn a_change_during_a_read_fault_fails_the_item_not_not_found() {
    let d = InProc::start(0);
    let mut e = d.editor("blender");
    let (u, other) = (new_uuid(), new_uuid());
    created(&mut e, &u, "Cube");
    created(&mut e, &other, "Other");
    d.fail_reads(ReadFault::Uuid(u.clone()));
    let ack = e.change("t", vec![transform_op(&u, [5.0, 0.0, 0.0]), transform_op(&other, [6.0, 0.0, 0.0])]).unwrap();
    storage_failed_item(&ack, 0);
    assert_eq!(ack["results"][1]["status"], "queued", "{ack}");
    d.assert_stops();
}

#[test]
fn the_current_state_a_change_builds_on_is_read_or_the_change_fails() {
    let d = InProc::start(0);
    let mut e = d.editor("blender");
    let (child, parent) = (new_uuid(), new_uuid());
    created(&mut e, &child, "Child");
    created(&mut e, &parent, "Parent");
    // The child itself reads; the parent's committed state (the cycle check) does not.
    d.fail_reads(ReadFault::Uuid(parent.clone()));
    let ack = e.change("p", vec![json!({"op":"reparent","uuid":child,"parent":parent})]).unwrap();
    storage_failed_item(&ack, 0);
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("changes[0].parent"), "{ack}");
    d.assert_stops();
}

#[test]
fn a_read_fault_at_the_start_of_a_batch_stops_it_before_anything_is_forwarded() {
    let d = InProc::start(600);
    let mut blender = d.editor("blender");
    let u = new_uuid();
    created(&mut blender, &u, "Cube");
    let mut unity = d.editor("unity");
    unity.drain(Duration::from_millis(300)).unwrap();
    let before = unity.batches.len();
    let ack = blender.change("t", vec![transform_op(&u, [9.0, 0.0, 0.0])]).unwrap();
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    // The window is still open: the batch's start reads fail.
    d.fail_reads(ReadFault::All);
    let data = d.daemon.data_dir().root().to_path_buf();
    let _kept = d.assert_stops();
    let _ = unity.drain(Duration::from_millis(200));
    assert_eq!(unity.batches.len(), before, "nothing forwarded from an unread state");
    let wal = wal_records(&data);
    assert!(
        !wal.iter().any(|r| r["phase"] == "BEGIN" && r["payload"]["ops"] == json!(["transform"])),
        "no batch began"
    );
}

#[test]
fn a_resync_during_a_read_fault_answers_storage_failed_never_an_empty_replay() {
    let d = InProc::start(0);
    let mut e = d.editor("blender");
    let u = new_uuid();
    created(&mut e, &u, "Cube");
    let mut unity = d.editor("unity");
    unity.drain(Duration::from_millis(300)).unwrap();
    let batches = unity.batches.len();
    d.fail_reads(ReadFault::All);
    let reply = unity.request(&json!({"type":"resync","request_id":"rs","since_seq":0}), &[]).unwrap();
    storage_failed_error(&reply, "rs");
    assert_eq!(unity.batches.len(), batches, "no (empty or partial) resync batch");
    d.assert_stops();
}

#[test]
fn quarantine_commands_during_a_read_fault_answer_storage_failed() {
    for action in ["quarantine_list", "quarantine_release"] {
        let d = InProc::start(0);
        let mut cli = d.client("cli");
        d.fail_reads(ReadFault::All);
        let reply = cli.request(&json!({"type":"admin","request_id":"q","action":action,"uuid":new_uuid()})).unwrap();
        storage_failed_error(&reply, "q");
        d.assert_stops();
    }
}

#[test]
fn scene_query_during_a_read_fault_answers_storage_failed() {
    let d = InProc::start(0);
    let mut agent = d.client("agent");
    d.fail_reads(ReadFault::All);
    let reply = agent.request(&json!({"type":"scene_query","request_id":"sq"})).unwrap();
    storage_failed_error(&reply, "sq");
    d.assert_stops();
}
