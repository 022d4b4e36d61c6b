//! Governance through the real daemon: crash-loop safe mode, failure escalation
//! (degrade → block → quarantine → op disabled → safe mode), operator commands,
//! user-edit protection, rate limits, sequence divergence, slow consumers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, settle, until, Mini};

fn config(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// A daemon in `dir` after three unclean boots in a row: in safe mode (docs/PROTOCOL.md
/// §6.7). Returns it and its data dir.
fn crash_looped(dir: &std::path::Path) -> (Daemon, std::path::PathBuf) {
    let data = dir.join("data");
    let cfg = config(dir, "c.toml", "[sync]\nbatch_window_ms = 20\n");
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    for _ in 0..3 {
        d.kill9();
        d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    }
    (d, data)
}

fn transform(u: &str, x: f64) -> Value {
    json!({"op":"transform","uuid":u,"t":[x,0,0],"r":[0,0,0,1],"s":[1,1,1]})
}

#[test]
fn crash_loop_enters_safe_mode_until_a_person_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, data) = crash_looped(dir.path());
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    assert_eq!(b.c.welcome["safe_mode"], true, "3 unclean boots in a row: safe mode");
    assert_eq!(
        b.c.welcome["safe_mode_reason"], "3 unclean boots in a row (threshold 3)",
        "welcome says why, as every editor must show it"
    );
    let ack = b.send_change("c", vec![create(&new_uuid(), "X", [0.0, 0.0, 0.0])], &[]);
    assert_eq!(ack["code"], "SAFE_MODE", "sync is read-only: {ack}");
    let mut agent = d.client("agent");
    let r = register(&mut agent, "a", &[(&new_uuid(), "object", "Bot")]);
    assert_eq!(r["code"], "SAFE_MODE", "automation disabled: {r}");
    // An agent's tombstone is BAD_MESSAGE in any mode (it deletes with a `delete` change).
    let r = ask(&mut agent, &json!({"type":"tombstone","request_id":"t","uuids":[new_uuid()]}));
    assert_eq!(r["code"], "BAD_MESSAGE", "{r}");
    assert!(r["message"].as_str().unwrap().starts_with("field `type`: "), "{r}");
    let mut person = d.client("blender");
    let mine = new_uuid();
    assert_eq!(
        statuses(&register(&mut person, "p", &[(&mine, "object", "Mine")])),
        ["registered"],
        "people keep their identity bookkeeping"
    );
    // A delete changes synced state: refused too (the editor keeps it and sends it again).
    let del = json!({"type":"tombstone","request_id":"del","uuids":[mine]});
    let r = ask(&mut person, &del);
    assert_eq!((r["code"].as_str(), r["request_id"].as_str()), (Some("SAFE_MODE"), Some("del")), "{r}");

    let (code, out, _) = cli(&["safe-mode", "status", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ON") && out.contains("unclean boots"), "{out}");
    let (code, out, err) = cli(&["safe-mode", "clear", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let m = loop {
        let (m, _) = b.recv();
        if m["type"] != "peers" {
            break m;
        }
    };
    assert_eq!(m["type"], "safe_mode");
    assert_eq!(m["active"], false);
    let ack = b.send_change("c2", vec![create(&new_uuid(), "X", [0.0, 0.0, 0.0])], &[]);
    assert_eq!(statuses(&ack), ["queued"]);
    assert_eq!(statuses(&ask(&mut person, &del)), ["tombstoned"], "sent again once cleared");
    drop((b, agent, person));
    d.stop();
    let boot: Value = serde_json::from_slice(&std::fs::read(data.join("boot.json")).unwrap()).unwrap();
    assert_eq!(boot["safe_mode"], false);
    let recs = wal_records(&data);
    assert!(recs.iter().any(|r| r["payload"]["op"] == "governance_reset"), "the person's reset is in the WAL");
}

/// In safe mode an editor holds its person's edits unsent (docs/PROTOCOL.md §6.7) and says
/// which with `editor_state.held`: `vibesync status` lists them as not synced in that editor,
/// with the reason, until safe mode ends (the editor sends them then). A bad list is refused
/// `BAD_MESSAGE` naming the field, the connection kept; a list sent out of safe mode, or by
/// a session that holds no scene, lists nothing.
#[test]
fn status_lists_the_edits_an_editor_holds_in_safe_mode_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = crash_looped(dir.path());
    let mut b = d.client("blender");
    assert_eq!(b.welcome["safe_mode"], true);
    let status = || {
        let (code, out, err) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let project = b.welcome["project_id"].as_str().unwrap().to_string();
    let not_synced = |s: &Value| -> Vec<(String, String, String)> {
        s["projects"][&project]["not_synced"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                let f = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                (f("uuid"), f("client"), f("reason"))
            })
            .collect()
    };
    let (u1, u2) = (new_uuid(), new_uuid());
    let state = |held: Value, count: Value| json!({"type":"editor_state","state":"running","reason":"holding edits: safe mode","held":held,"held_count":count});
    // Bad lists: refused, naming the field; the connection stays and nothing is listed.
    for (bad, field) in [
        (state(json!([u1, "not-a-uuid"]), Value::Null), "field `held[1]`"),
        (state(json!((0..1001).map(|_| new_uuid()).collect::<Vec<_>>()), Value::Null), "field `held`: 1001 uuids"),
        (state(json!([u1, u2]), json!(1)), "field `held_count`"),
    ] {
        b.send(&bad).unwrap();
        let e = recv_until(&mut b, "the error", |m| m["type"] == "error");
        assert_eq!(e["code"], "BAD_MESSAGE", "{e}");
        assert!(e["message"].as_str().unwrap().starts_with(field), "{e}");
    }
    assert_eq!(ask(&mut b, &json!({"type":"ping","request_id":"p"}))["type"], "pong");
    let mut agent = d.client("agent");
    agent.send(&state(json!([u1]), Value::Null)).unwrap();
    let e = recv_until(&mut agent, "the error", |m| m["type"] == "error");
    assert!(e["message"].as_str().unwrap().contains("is for editor sessions"), "{e}");
    assert!(not_synced(&status()).is_empty(), "{}", status());

    // Two listed of three held: both listed, the count beside the session.
    b.send(&state(json!([u2, u1]), json!(3))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = status();
        if !not_synced(&s).is_empty() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut listed = not_synced(&s);
    listed.sort();
    let mut want = [u1.clone(), u2.clone()];
    want.sort();
    assert_eq!(listed.iter().map(|(u, _, _)| u.clone()).collect::<Vec<_>>(), want, "{s}");
    for (_, client, reason) in &listed {
        assert_eq!(client, "blender");
        assert!(reason.starts_with("SAFE_MODE: held in the editor") && reason.contains("unclean boots"), "{reason}");
    }
    let session = s["sessions"].as_array().unwrap().iter().find(|x| x["editor"] == "blender").unwrap();
    assert_eq!(session["held"], 3, "{s}");
    assert!(session["editor_state"].get("held").is_none(), "`held` is not repeated in editor_state: {s}");
    let (code, out, _) = cli(&["status", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("held_in_safe_mode=3"), "{out}");
    assert!(out.contains(&format!("not synced: {u1} (kept in blender): SAFE_MODE: held")), "{out}");
    // An `editor_state` that says nothing of `held` leaves the list; an empty one clears it.
    b.send(&json!({"type":"editor_state","state":"paused","reason":"the same failure repeated"})).unwrap();
    assert_eq!(ask(&mut b, &json!({"type":"ping","request_id":"p2"}))["type"], "pong");
    assert_eq!(not_synced(&status()).len(), 2);
    b.send(&state(json!([]), Value::Null)).unwrap();
    assert_eq!(ask(&mut b, &json!({"type":"ping","request_id":"p3"}))["type"], "pong");
    assert!(not_synced(&status()).is_empty());

    // Once a person clears safe mode the editor sends what it held: nothing is listed, and a
    // late list (sent as safe mode ended) lists nothing either.
    b.send(&state(json!([u1]), Value::Null)).unwrap();
    assert_eq!(ask(&mut b, &json!({"type":"ping","request_id":"p4"}))["type"], "pong");
    assert_eq!(not_synced(&status()).len(), 1);
    let (code, out, err) = cli(&["safe-mode", "clear", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    recv_until(&mut b, "safe mode's end", |m| m["type"] == "safe_mode" && m["active"] == false);
    let s = status();
    assert!(not_synced(&s).is_empty(), "{s}");
    b.send(&state(json!([u1]), Value::Null)).unwrap();
    assert_eq!(ask(&mut b, &json!({"type":"ping","request_id":"p5"}))["type"], "pong");
    let s = status();
    assert!(not_synced(&s).is_empty(), "{s}");
    assert_eq!(s["sessions"].as_array().unwrap().iter().find(|x| x["editor"] == "blender").unwrap()["held"], 0);
}

/// `vibesync safe-mode clear` with the daemon stopped writes the reset as the daemon's own
/// transactions are written (docs/WAL.md §3): BEGIN `pending`, STEP, COMMIT, FINAL — applied
/// and audited at once (`verify` clean before the next boot), and the next boot is out of
/// safe mode, with `verify` clean.
#[test]
fn an_offline_safe_mode_clear_is_a_well_formed_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    for _ in 0..3 {
        d.kill9();
        d = Daemon::start(&data);
    }
    assert_eq!(d.client("blender").welcome["safe_mode"], true);
    d.stop();
    // Safe mode outlives a clean stop, and so does its reason.
    d = Daemon::start(&data);
    let w = d.client("unity").welcome;
    assert_eq!(
        (&w["safe_mode"], &w["safe_mode_reason"]),
        (&json!(true), &json!("3 unclean boots in a row (threshold 3)"))
    );
    d.stop();
    let (code, out, err) = cli(&["safe-mode", "clear", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("daemon not running"), "{out}");
    let recs: Vec<Value> = wal_records(&data)
        .into_iter()
        .filter(|r| r["payload"]["by"] == "cli (offline)" || r["session_id"] == "cli")
        .collect();
    let shape: Vec<(&str, &str)> =
        recs.iter().map(|r| (r["phase"].as_str().unwrap(), r["outcome"].as_str().unwrap())).collect();
    assert_eq!(shape, [("BEGIN", "pending"), ("STEP", "ok"), ("COMMIT", "ok"), ("FINAL", "ok")], "{recs:?}");
    assert_eq!(recs[1]["payload"]["op"], "governance_reset");
    // Every store ends where a graceful stop leaves it: the registry applied the reset and
    // the audit committed its FINAL, so `verify` is clean before any boot.
    let (code, out, err) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "verify right after an offline clear: {out}{err}");
    let mut d = Daemon::start(&data);
    let w = d.client("blender").welcome;
    assert_eq!(w["safe_mode"], false);
    assert!(w.get("safe_mode_reason").is_none(), "no reason out of safe mode: {w}");
    d.stop();
    // The next boot applied and audited it like any transaction of its own.
    let (code, out, err) = cli(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Unity receives the batch carrying `change` and disconnects before answering (as an
/// editor that crashes on the data would). Returns a fresh Unity session.
fn fail_by_disconnect(d: &Daemon, b: &mut Mini, u: Mini, rid: &str, change: Value) -> Mini {
    leave_mid_batch(d, b, u, rid, change, false)
}

/// Unity receives the batch carrying `change` and leaves before answering — after saying it
/// closes its connection on purpose when `closing` (`editor_state`, PROTOCOL §6.8). The batch
/// rolls back (`PARTICIPANT_LEFT` or `PARTICIPANT_LOST`) and Blender keeps the person's edit.
/// Returns a fresh Unity session.
fn leave_mid_batch(d: &Daemon, b: &mut Mini, u: Mini, rid: &str, change: Value, closing: bool) -> Mini {
    let mut u = u;
    u.answer = false;
    let before = u.batches.len();
    let results = b.results.len();
    let ack = b.send_change(rid, vec![change], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    assert!(u.pump_until(Duration::from_secs(20), |m| m.batches.len() > before), "the batch reached Unity");
    if closing {
        u.c.send(&json!({"type": "editor_state", "state": "closing", "reason": "a file is being opened"})).unwrap();
    }
    drop(u);
    assert!(b.pump_until(Duration::from_secs(20), |m| m.results.len() > results), "rolled back: {}", d.stderr_log());
    let r = b.results.last().unwrap();
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(r["error_code"], if closing { "PARTICIPANT_LEFT" } else { "PARTICIPANT_LOST" }, "{r}");
    assert_eq!(r["kept_local"], true, "a person's edit stays in Blender: {r}");
    let mut u = Mini::connect(d, "unity", 1.0, 0);
    settle(&mut [b, &mut u]);
    u
}

/// A daemon with the governance ladder set low (a uuid quarantined after 2 evidence failures,
/// an op kind after 3, safe mode after 4), Blender and Unity connected, and `objects`
/// created and synced.
fn ladder(dir: &std::path::Path, objects: &[&str]) -> (Daemon, Mini, Mini) {
    let cfg = config(
        dir,
        "c.toml",
        "[sync]\nbatch_window_ms = 20\n[governance]\nuuid_failures = 2\nop_failures = 3\nglobal_failures = 4\n",
    );
    let d = Daemon::start_with(&dir.join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let creates = objects.iter().enumerate().map(|(i, x)| create(x, &format!("O{i}"), [0.0, 0.0, 0.0])).collect();
    b.send_change("c", creates, &[]);
    settle(&mut [&mut b, &mut u]);
    (d, b, u)
}

/// A person's reparent that closes a parent cycle through automation's reparent of an
/// object that is quarantined (docs/PROTOCOL.md §6.1, §6.7): automation's link is not undone,
/// as it would be otherwise — nothing changes a quarantined object until a person releases
/// it — so the person's reparent loses as to another person's: refused `STALE`, a conflict
/// automation's editor won, and Blender is sent the chain as it stands.
#[test]
fn a_persons_reparent_closing_a_cycle_through_a_quarantined_objects_automation_link_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cube, cam) = (new_uuid(), new_uuid());
    let (d, mut b, mut u) = ladder(dir.path(), &[&cube, &cam]);
    let base = b.last_seq;
    u.automation = Some(json!({"operation_id":"op-1","tool":"scene.reparent","agent_session":"agent-1"}));
    let ack = u.send_change("u-parent", vec![json!({"op":"reparent","uuid":cube,"parent":cam})], &[]);
    assert_eq!(statuses(&ack), ["queued"]);
    settle(&mut [&mut b, &mut u]);
    assert_eq!(b.states[&cube]["parent"], json!(cam), "automation's reparent committed");
    // Two evidence failures on the cube: quarantined.
    u = fail_by_disconnect(&d, &mut b, u, "m1", transform(&cube, 1.0));
    u = fail_by_disconnect(&d, &mut b, u, "m2", transform(&cube, 2.0));
    let ack = b.send_change("m3", vec![transform(&cube, 3.0)], &[]);
    assert_eq!(ack["results"][0]["error_code"], "QUARANTINED", "{ack}");
    // Blender's person put the camera under the cube before Blender heard of automation's
    // reparent: over `base`.
    b.states.get_mut(&cam).unwrap()["parent"] = json!(cube);
    b.states.get_mut(&cube).unwrap()["parent"] = Value::Null;
    let msg = json!({"type":"change","request_id":"b-parent","base_seq":base,"changes":[{"op":"reparent","uuid":cam,"parent":cube}]});
    let ack = b.ask(&msg);
    assert_eq!(ack["results"][0]["error_code"], "STALE", "{ack}");
    settle(&mut [&mut b, &mut u]);
    assert!(b.states[&cam]["parent"].is_null(), "the camera is back where it stands: {}", b.states[&cam]);
    assert_eq!(b.states[&cube]["parent"], json!(cam), "nothing changed the quarantined cube: {}", b.states[&cube]);
    assert!(u.states.get(&cam).is_some_and(|s| s["parent"].is_null()), "{:?}", u.states.get(&cam));
    let steps = crate::sync::conflict_steps(&data, &cam);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!((steps[0]["winner"].as_str(), steps[0]["loser"].as_str()), (Some("unity"), Some("blender")));
    let (code, out, err) = cli(&["quarantine", "list", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&cube), "still quarantined: {out}");
}

/// An editor that says it is closing its connection on purpose (`editor_state` `closing`:
/// Blender opening another file) and leaves a batch unanswered: the batch rolls back
/// `PARTICIPANT_LEFT`, the person's edit stays in its origin, and the very same input goes
/// again unchanged — no evidence, so never `BLOCKED` nor quarantined (PROTOCOL §6.7, §6.8).
#[test]
fn an_editor_closing_on_purpose_is_no_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let x = new_uuid();
    let (mut d, mut b, mut u) = ladder(dir.path(), &[&x]);
    for i in 0..4 {
        // The same input each time: never refused, as a `PARTICIPANT_LOST` one would be.
        u = leave_mid_batch(&d, &mut b, u, &format!("m{i}"), transform(&x, 1.0), true);
    }
    let ack = b.send_change("again", vec![transform(&x, 1.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    settle(&mut [&mut b, &mut u]);
    assert_eq!(u.states[&x]["t"], json!([1.0, 0.0, 0.0]), "it reached the editor's next connection");
    let (code, out, err) = cli(&["quarantine", "list", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&x), "not quarantined: {out}");
    drop((b, u));
    d.stop();
    let recs = wal_records(&data);
    assert_eq!(recs.iter().filter(|r| r["error_code"] == "PARTICIPANT_LEFT").count(), 4);
    assert!(!recs.iter().any(|r| r["error_code"] == "PARTICIPANT_LOST"), "no evidence was recorded");
}

#[test]
fn evidence_escalates_smallest_thing_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (x, y) = (new_uuid(), new_uuid());
    let (mut d, mut b, mut u) = ladder(dir.path(), &[&x, &y]);

    // 1st failure on X (Unity went away mid-apply): X degrades to the slow path; the very
    // input that took Unity down is refused when sent again unchanged.
    u = fail_by_disconnect(&d, &mut b, u, "m1", transform(&x, 1.0));
    let again = b.send_change("m1b", vec![transform(&x, 1.0)], &[]);
    assert_eq!(again["results"][0]["error_code"], "BLOCKED", "no silent retry of a failed input: {again}");
    let ack = b.send_change("m2", vec![transform(&x, 2.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "a changed input may proceed");
    settle(&mut [&mut b, &mut u]);
    assert_eq!(u.batches.last().unwrap().1, "slow", "degraded to the slow path after a failure on this uuid");
    assert_eq!(u.states[&x]["t"], json!([2.0, 0.0, 0.0]));

    // 2nd failure on X: quarantined (the smallest thing), and not replayed; Y untouched.
    u = fail_by_disconnect(&d, &mut b, u, "m3", transform(&x, 3.0));
    // The fresh Unity session got the full replay: Y, but not the quarantined X.
    assert!(!u.states.contains_key(&x), "a quarantined uuid is not replayed until a person releases it");
    assert!(u.states.contains_key(&y));
    let ack = b.send_change("m4", vec![transform(&x, 4.0)], &[]);
    assert_eq!(ack["results"][0]["error_code"], "QUARANTINED", "{ack}");
    let ack = b.send_change("m5", vec![transform(&y, 4.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "other uuids still sync");
    settle(&mut [&mut b, &mut u]);
    let (code, out, err) = cli(&["quarantine", "list", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&x) && out.contains("repeated sync failures"), "{out}");

    // 3rd transform failure (on Y): the op kind `transform` is disabled; renames still work.
    u = fail_by_disconnect(&d, &mut b, u, "m6", transform(&y, 5.0));
    let ack = b.send_change("m7", vec![transform(&y, 6.0)], &[]);
    assert_eq!(ack["results"][0]["error_code"], "BLOCKED");
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("disabled"), "{ack}");
    let ack = b.send_change("m8", vec![json!({"op":"rename","uuid":y,"name":"Y2"})], &[]);
    assert_eq!(statuses(&ack), ["queued"]);
    settle(&mut [&mut b, &mut u]);

    // 4th failure overall: safe mode, announced to every editor.
    u = fail_by_disconnect(&d, &mut b, u, "m9", json!({"op":"rename","uuid":y,"name":"Y3"}));
    assert!(
        b.events.iter().any(|e| e["type"] == "safe_mode" && e["active"] == true),
        "safe mode announced: {:?}",
        b.events
    );
    let st = d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap();
    assert_eq!(st["safe_mode"], true);

    // A person releases X and clears safe mode; everything flows again.
    let (code, _, err) = cli(&["quarantine", "release", "NOT-A-UUID", "--data-dir", data.to_str().unwrap()]);
    assert!(code != 0 && err.contains("not a lowercase RFC 4122 uuid"), "a mistyped uuid is named as such: {err}");
    let (code, out, err) = cli(&["quarantine", "release", &x, "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // Released once, a second release says so in a person's words.
    let (code, _, err) = cli(&["quarantine", "release", &x, "--data-dir", data.to_str().unwrap()]);
    assert!(
        code == 2 && err.contains(&format!("the daemon refused it: {x} is not quarantined")) && !err.contains("field"),
        "{err}"
    );
    // Both editors hear of it (docs/PROTOCOL.md §6.8): Blender, whose person's move of X
    // was refused QUARANTINED and kept there, re-sends it now.
    for (who, m) in [("blender", &mut b), ("unity", &mut u)] {
        let heard = m.pump_until(Duration::from_secs(20), |m| {
            m.events.iter().any(|e| e["type"] == "quarantine_released" && e["uuids"] == json!([x]))
        });
        assert!(heard, "{who} was told of the release: {:?}", m.events);
    }
    let (code, _, err) = cli(&["safe-mode", "clear", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    settle(&mut [&mut b, &mut u]);
    let ack = b.send_change("m10", vec![transform(&x, 7.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    settle(&mut [&mut b, &mut u]);
    assert_eq!(u.states[&x]["t"], json!([7.0, 0.0, 0.0]));
    drop((b, u));
    d.stop();
    // The escalations are WAL transactions: the index rebuilt at boot reaches the same state.
    let recs = wal_records(&data);
    for op in ["quarantine", "disable_op", "release", "governance_reset"] {
        assert!(recs.iter().any(|r| r["phase"] == "STEP" && r["payload"]["op"] == op), "{op} in the WAL");
    }
    let begin = recs
        .iter()
        .find(|r| {
            r["phase"] == "BEGIN" && r["payload"]["gate"]["decision"].is_null() && r["payload"]["gate"].is_object()
        })
        .expect("a degraded batch logs the gate's decision");
    assert!(begin["payload"]["gate"][&x]["reasons"][0].as_str().unwrap().contains("prior failure"));
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn bridge_failures_never_lock_anyone_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[sync]\nbatch_window_ms = 20\n[governance]\nuuid_failures = 2\nop_failures = 2\nglobal_failures = 2\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let x = new_uuid();
    b.send_change("c", vec![create(&x, "X", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);
    // Five verification mismatches in a row (a bridge problem, not the user's object).
    for i in 1..=5 {
        u.corrupt_next = true;
        let ack = b.send_change(&format!("m{i}"), vec![transform(&x, i as f64)], &[]);
        assert_eq!(statuses(&ack), ["queued"], "never blocked, quarantined or read-only: {ack}");
        settle(&mut [&mut b, &mut u]);
        assert_eq!(b.results.last().unwrap()["outcome"], "rolled_back");
    }
    // The same input again is allowed (it was not evidence against the object).
    let ack = b.send_change("again", vec![transform(&x, 5.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    settle(&mut [&mut b, &mut u]);
    assert_eq!(b.results.last().unwrap()["outcome"], "committed");
    assert_eq!(u.states[&x]["t"], json!([5.0, 0.0, 0.0]));
    assert_eq!(u.batches.last().unwrap().1, "slow", "degraded to the slow path");
    assert!(!b.events.iter().any(|e| e["type"] == "safe_mode"), "{:?}", b.events);
}

#[test]
fn batches_cut_by_daemon_crashes_are_not_failures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "c.toml",
        "[sync]\nbatch_window_ms = 20\nverify_timeout_ms = 60000\n[governance]\ncrash_loop_threshold = 100\nuuid_failures = 1\nglobal_failures = 1\n",
    );
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let x = new_uuid();
    for i in 0..3 {
        let mut b = Mini::connect(&d, "blender", 1.0, 0);
        let mut u = Mini::connect(&d, "unity", 1.0, 0);
        assert_eq!(b.c.welcome["safe_mode"], false, "round {i}: {}", d.stderr_log());
        u.answer = false;
        let ack = b.send_change("c", vec![create(&x, "X", [i as f64, 0.0, 0.0])], &[]);
        assert_eq!(statuses(&ack), ["queued"], "round {i}: never quarantined or blocked: {ack}");
        assert!(u.pump_until(Duration::from_secs(20), |m| m.states.contains_key(&x)), "batch in flight");
        d.kill9(); // mid-batch: BEGIN + STEPs, no COMMIT
        drop((b, u));
        d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    }
    let b = Mini::connect(&d, "blender", 1.0, 0);
    assert_eq!(b.c.welcome["safe_mode"], false, "crash-cut batches are not evidence against objects");
    let recs = wal_records(&data);
    assert_eq!(recs.iter().filter(|r| r["error_code"] == "RECOVERED_INCOMPLETE").count(), 3);
}

#[test]
fn automation_waits_while_people_edit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 20\n[governance]\nuser_idle_ms = 600\n");
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let mut bot = Mini::connect(&d, "agent", 1.0, 0);
    let (mine, bots) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&mine, "Mine", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u, &mut bot]);

    // Only a person at an editor holds automation back: an agent's (or any other
    // non-editor session's) report is refused and counts for nothing (§6.7).
    let mut other = d.client("agent");
    other.send(&json!({"type":"user_activity","active":true})).unwrap();
    let e = other.recv().unwrap();
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("BAD_MESSAGE")), "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("user_activity")), "{e}");
    let free = new_uuid();
    let ack = bot.send_change("f", vec![create(&free, "NotHeld", [2.0, 0.0, 0.0])], &[]);
    assert_eq!(statuses(&ack), ["queued"], "no person is editing: {ack}");
    settle(&mut [&mut b, &mut u, &mut bot]);

    b.tell(&json!({"type":"user_activity","active":true}));
    let ack = bot.send_change("a", vec![create(&bots, "BotMade", [1.0, 0.0, 0.0])], &[]);
    assert_eq!(statuses(&ack), ["held"], "automation is held while a person works: {ack}");
    b.send_change("p", vec![transform(&mine, 3.0)], &[]);
    settle(&mut [&mut b, &mut u, &mut bot]);
    assert_eq!(u.states[&mine]["t"], json!([3.0, 0.0, 0.0]), "a person's edits always flow");
    assert!(!u.states.contains_key(&bots), "the held change has not run");

    let stopped = Instant::now();
    b.c.send(&json!({"type":"user_activity","active":false})).unwrap();
    assert!(
        u.pump_until(Duration::from_secs(5), |m| m.states.contains_key(&bots)),
        "held, not dropped: it runs after the idle period"
    );
    assert!(stopped.elapsed() >= Duration::from_millis(500), "not before the idle period");
}

/// An agent's rename of X is held while a person works; the person renames X too (and moves
/// Y, which the agent's other held change renames). When people are idle, the agent's rename
/// of X does not run — made before the person's, it would undo it (docs/PROTOCOL.md §6.7:
/// automation never undoes a person's edit) — and the agent hears why; its rename of Y, whose
/// name no person touched, runs.
#[test]
fn a_held_automation_change_of_a_part_a_person_then_changed_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 20\n[governance]\nuser_idle_ms = 300\n");
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let mut bot = Mini::connect(&d, "agent", 1.0, 0);
    let (x, y) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&x, "X", [0.0, 0.0, 0.0]), create(&y, "Y", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u, &mut bot]);

    b.tell(&json!({"type":"user_activity","active":true}));
    let ack = bot.send_change(
        "a",
        vec![json!({"op":"rename","uuid":x,"name":"BotX"}), json!({"op":"rename","uuid":y,"name":"BotY"})],
        &[],
    );
    assert_eq!(statuses(&ack), ["held", "held"], "{ack}");
    b.send_change("p", vec![json!({"op":"rename","uuid":x,"name":"Mine"}), transform(&y, 2.0)], &[]);
    let dropped = bot
        .results
        .iter()
        .find(|r| r["outcome"] == "dropped" && r["uuids"] == json!([x]))
        .cloned()
        .or_else(|| {
            bot.pump_until(Duration::from_secs(10), |m| m.results.iter().any(|r| r["outcome"] == "dropped"));
            bot.results.iter().find(|r| r["outcome"] == "dropped").cloned()
        })
        .expect("the agent hears its held rename of X will not run");
    assert_eq!(dropped["uuids"], json!([x]), "{dropped}");
    assert!(dropped["reason"].as_str().is_some_and(|m| m.contains("a person changed")), "{dropped}");
    b.c.send(&json!({"type":"user_activity","active":false})).unwrap();
    assert!(
        u.pump_until(Duration::from_secs(10), |m| m.states[&y]["name"] == "BotY"),
        "the rename of Y, which no person touched, runs after the idle period"
    );
    settle(&mut [&mut b, &mut u, &mut bot]);
    for (who, m) in [("blender", &b), ("unity", &u)] {
        assert_eq!(m.states[&x]["name"], "Mine", "{who}: the person's name of X stands");
        assert_eq!(m.states[&y]["t"], json!([2.0, 0.0, 0.0]), "{who}: the person's move of Y stands");
    }
}

/// People idle, no hold: a person's change and an agent's change of the same object meet
/// at the daemon before a batch forms (docs/PROTOCOL.md §6.7). An agent's rename arriving
/// while a person's rename of X waits in the window is refused `STALE` (made without it, it
/// would be the later writer); an agent's delete of Y waiting in the window when a person's
/// move of Y arrives does not run (`dropped`, with the reason) — Y stays, where the person
/// put it, in both editors. (Found by an independent artist-scenario tester: the delete
/// committed and removed the object the person had just moved, in both editors.)
#[test]
fn automation_never_overwrites_a_persons_change_waiting_in_the_same_window() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 400\n");
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let mut bot = Mini::connect(&d, "agent", 1.0, 0);
    let (x, y) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&x, "X", [0.0, 0.0, 0.0]), create(&y, "Y", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u, &mut bot]);

    // The person first, then the agent: the agent's change is refused at once.
    assert_eq!(statuses(&u.send_change("p", vec![json!({"op":"rename","uuid":x,"name":"Mine"})], &[])), ["queued"]);
    let ack = bot.ask(&json!({"type":"change","request_id":"a","base_seq":bot.last_seq,
        "changes":[{"op":"rename","uuid":x,"name":"BotX"}]}));
    assert_eq!(ack["results"][0]["error_code"], "STALE", "{ack}");
    assert!(ack["results"][0]["message"].as_str().is_some_and(|m| m.contains("a person's change")), "{ack}");
    settle(&mut [&mut b, &mut u, &mut bot]);

    // The agent first, then the person: the agent's delete does not run. (It read the
    // daemon's seq: a delete made before the object's create would be STALE of its own.)
    let seq = d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap()["seq"].as_u64().unwrap();
    let ack = bot.ask(&json!({"type":"change","request_id":"del","base_seq":seq,
        "changes":[{"op":"delete","uuid":y}]}));
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    assert_eq!(statuses(&u.send_change("mv", vec![transform(&y, 4.0)], &[])), ["queued"]);
    assert!(
        bot.pump_until(Duration::from_secs(10), |m| m.results.iter().any(|r| r["outcome"] == "dropped")),
        "the agent hears its delete did not run"
    );
    let r = bot.results.iter().find(|r| r["outcome"] == "dropped").unwrap();
    assert_eq!(r["uuids"], json!([y]), "{r}");
    assert!(r["reason"].as_str().is_some_and(|m| m.contains("a person changed")), "{r}");
    // The person's move reaches Blender in its batch (a window of 400 ms: waited for by its
    // effect, not by a quiet period).
    until(&mut [&mut b, &mut u], Duration::from_secs(10), |m| m[0].states[&y]["t"] == json!([4.0, 0.0, 0.0]));
    settle(&mut [&mut b, &mut u, &mut bot]);
    for (who, m) in [("blender", &b), ("unity", &u)] {
        assert_eq!(m.states[&x]["name"], "Mine", "{who}: the person's name of X stands");
        assert!(m.states.contains_key(&y), "{who}: Y, which the person moved, is still there");
        assert_eq!(m.states[&y]["t"], json!([4.0, 0.0, 0.0]), "{who}: where the person put it");
    }
}

/// An agent's change held while a person works, then the daemon enters safe mode (one
/// evidence failure with `global_failures = 1`): when people are idle it does not run —
/// automation is disabled in safe mode (docs/PROTOCOL.md §6.7) — and the agent hears it as
/// `dropped` with the reason. The person's object keeps its name.
#[test]
fn a_held_automation_change_does_not_run_in_safe_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[sync]\nbatch_window_ms = 20\n[governance]\nuser_idle_ms = 300\nglobal_failures = 1\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let u = Mini::connect(&d, "unity", 1.0, 0);
    let mut bot = Mini::connect(&d, "agent", 1.0, 0);
    let (x, y) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&x, "X", [0.0, 0.0, 0.0]), create(&y, "Y", [0.0, 0.0, 0.0])], &[]);
    let mut u = u;
    settle(&mut [&mut b, &mut u, &mut bot]);

    b.tell(&json!({"type":"user_activity","active":true}));
    let ack = bot.send_change("a", vec![json!({"op":"rename","uuid":y,"name":"BotName"})], &[]);
    assert_eq!(statuses(&ack), ["held"], "{ack}");
    let mut u = fail_by_disconnect(&d, &mut b, u, "m", transform(&x, 1.0));
    let st = d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap();
    assert_eq!(st["safe_mode"], true, "{st}");

    let results = bot.results.len();
    b.c.send(&json!({"type":"user_activity","active":false})).unwrap();
    assert!(
        bot.pump_until(Duration::from_secs(10), |m| m.results.len() > results),
        "the agent hears what became of its held change"
    );
    let r = bot.results.last().unwrap();
    assert_eq!(r["outcome"], "dropped", "{r}");
    assert_eq!(r["uuids"], json!([y]), "{r}");
    assert!(r["reason"].as_str().is_some_and(|m| m.contains("safe mode")), "{r}");
    settle(&mut [&mut b, &mut u]);
    assert_eq!(u.states[&y]["name"], "Y", "nothing of the agent's change ran");
    assert_eq!(b.states[&y]["name"], "Y");
}

/// A person's `user_activity` sent while their editor is over its message budget is still
/// taken (docs/PROTOCOL.md §2: counted, never refused): refused, it would not hold
/// automation back.
#[test]
fn user_activity_over_the_rate_limit_still_holds_automation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[limits]\nmessages_per_sec = 1.0\nmessages_burst = 2.0\n[governance]\nuser_idle_ms = 60000\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut blender = d.client("blender");
    for i in 0..3 {
        let _ = blender.request(&json!({"type":"ping","request_id":format!("p{i}")}));
    }
    blender.send(&json!({"type":"user_activity","active":true})).unwrap();
    // The budget refills one message a second: this ping, after it, is answered once the
    // activity was handled (a session's messages are handled in order).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = blender.request(&json!({"type":"ping","request_id":"after"})).unwrap();
        if r["type"] == "pong" {
            break;
        }
        assert_eq!(r["code"], "RATE_LIMITED", "{r}");
        assert!(Instant::now() < deadline, "the budget never refilled");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut bot = d.client("agent");
    let x = new_uuid();
    let ack = bot
        .request(&json!({"type":"change","request_id":"a","base_seq":0,"changes":[
            {"op":"create","uuid":x,"kind":"object","name":"Bot","parent":null,"t":[0,0,0],"r":[0,0,0,1],"s":[1,1,1],"visible":true}]}))
        .unwrap();
    assert_eq!(statuses(&ack), ["held"], "a person is editing: {ack}");
}

#[test]
fn rate_limits_answer_rate_limited_and_spare_others() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "[limits]\nmessages_per_sec = 5.0\nmessages_burst = 5.0\n");
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut noisy = d.client("test");
    let mut calm = d.client("test");
    for i in 0..30 {
        noisy.send(&json!({"type":"ping","request_id":format!("n{i}")})).unwrap();
    }
    let mut limited = 0;
    for _ in 0..30 {
        let r = noisy.recv().unwrap();
        if r["type"] == "error" {
            assert_eq!(r["code"], "RATE_LIMITED");
            assert!(r["request_id"].as_str().unwrap().starts_with('n'), "{r}");
            limited += 1;
        }
    }
    assert!(limited >= 20, "most of a 30-message burst over a 5/s budget is refused ({limited})");
    assert_eq!(
        calm.request(&json!({"type":"ping","request_id":"c"})).unwrap()["type"],
        "pong",
        "other sessions unaffected"
    );
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(
        noisy.request(&json!({"type":"ping","request_id":"later"})).unwrap()["type"],
        "pong",
        "the connection stays usable"
    );
}

/// An editor's `applied` answers a batch the daemon sent it: over the session's rate limit it
/// is counted but never refused (docs/PROTOCOL.md §2). Refused, the batch waited for an
/// answer that never came and rolled back (`VERIFY_TIMEOUT`) — a busy editor's own pings
/// made another editor's edit fail.
#[test]
fn an_applied_over_the_rate_limit_is_taken_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[sync]\nbatch_window_ms = 20\nverify_timeout_ms = 1500\n[limits]\nmessages_per_sec = 2.0\nmessages_burst = 4.0\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    // Unity spends its whole budget (and more) on pings...
    for i in 0..10 {
        u.c.send(&json!({"type":"ping","request_id":format!("p{i}")})).unwrap();
    }
    let (mut replies, mut refused) = (0, 0);
    while replies < 10 {
        let m = u.c.recv().unwrap();
        if m["request_id"].as_str().is_some_and(|r| r.starts_with('p')) {
            replies += 1;
            refused += usize::from(m["code"] == "RATE_LIMITED");
        }
    }
    assert!(refused >= 5, "the pings went over the budget ({refused} refused)");
    // ... then Blender's create reaches it, and its answer is over the budget.
    let id = new_uuid();
    let ack = b.send_change("c", vec![create(&id, "Cube", [1.0, 2.0, 3.0])], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    assert!(u.pump_until(Duration::from_secs(5), |m| m.states.contains_key(&id)), "Unity got the batch");
    assert!(b.pump_until(Duration::from_secs(5), |m| !m.results.is_empty()), "Blender heard its batch's outcome");
    assert_eq!(b.results[0]["outcome"], "committed", "{:?}", b.results);
}

/// An agent's change in an editor (sent with `automation`) that the daemon cannot take as it
/// is — here a reparent that closes a parent loop with the committed parents — is undone in
/// its origin too: right after the `INVALID_FIELD` ack, the origin is sent the state that
/// stands (docs/PROTOCOL.md §6.1). Before, the origin kept the agent's reparent while the
/// registry and the other editor did not (model seed 2017).
#[test]
fn an_agents_change_refused_as_a_loop_is_undone_in_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::sync::fast_config(dir.path(), 20, 5000);
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (a, child) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&a, "A", [0.0, 0.0, 0.0]), create(&child, "B", [0.0, 0.0, 0.0])], &[]);
    b.send_change("r", vec![json!({"op":"reparent","uuid":child,"parent":a})], &[]);
    settle(&mut [&mut b, &mut u]);
    assert_eq!(b.states[&child]["parent"], json!(a));
    let resyncs = b.batches.iter().filter(|x| x.1 == "resync").count();
    b.automation = Some(json!({"operation_id":"op-1","tool":"scene.reparent","agent_session":"agent-1"}));
    let ack = b.send_change("loop", vec![json!({"op":"reparent","uuid":a,"parent":child})], &[]);
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "{ack}");
    assert_eq!(b.states[&a]["parent"], json!(child), "the agent's reparent, applied locally");
    assert!(
        b.pump_until(Duration::from_secs(5), |m| m.batches.iter().filter(|x| x.1 == "resync").count() > resyncs
            && m.states[&a]["parent"].is_null()),
        "the origin is sent A's state that stands, which undoes the agent's reparent: {:?}",
        b.states[&a]
    );
}

#[test]
fn sequence_divergence_blocks_until_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 20\n");
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let x = new_uuid();
    b.send_change("c", vec![create(&x, "X", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b]);
    // An editor restored from another history: it claims to have seen seq 1,000,000.
    let mut lost = Mini::connect(&d, "unity", 1.0, 1_000_000);
    lost.last_seq = 1_000_000;
    // An object this daemon never heard of is BLOCKED too, not NOT_FOUND: nothing of a
    // diverged session is read against this daemon's state (§6.7).
    let unknown = new_uuid();
    let ack = lost.send_change("z", vec![transform(&x, 9.0), transform(&unknown, 1.0)], &[]);
    assert_eq!(ack["results"][0]["error_code"], "BLOCKED", "{ack}");
    assert_eq!(ack["results"][1]["error_code"], "BLOCKED", "{ack}");
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("divergence"));
    // Its editor keeps them: `status` lists them not synced (§5).
    let st = d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap();
    let listed: Vec<&str> = st["projects"]["demo"]["not_synced"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reason"].as_str().is_some_and(|r| r.starts_with("BLOCKED: ")))
        .map(|n| n["uuid"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&x.as_str()) && listed.contains(&unknown.as_str()), "{st}");
    assert!(!lost.states.contains_key(&x), "the full replay follows the BLOCKED ack (docs/PROTOCOL.md §6.7)");
    settle(&mut [&mut b, &mut lost]);
    assert!(lost.states.contains_key(&x), "the diverged editor was sent a full replay");
    lost.last_seq = 0;
    let ack = lost.send_change("z2", vec![transform(&x, 9.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "after acknowledging the replay it may change things again: {ack}");
}

/// PROTOCOL §6.7: an `applied` whose `seq` is beyond the daemon's last seq shows the editor
/// followed another history, as a `change`'s `base_seq` does: blocked, then a full replay.
#[test]
fn an_applied_beyond_the_daemons_seq_is_a_sequence_divergence_too() {
    let dir = tempfile::tempdir().unwrap();
    let (d, mut b, mut lost, x) = crate::sync::a_synced_cube(dir.path());
    assert!(lost.states.contains_key(&x));
    let replays = lost.batches.len();
    // An answer from another history: seq 1,000,000 (an unknown batch id, as after a restore).
    lost.c.send(&json!({"type":"applied","batch_id":new_uuid(),"seq":1_000_000u64,"hashes":{}})).unwrap();
    let ack = lost.send_change("z", vec![transform(&x, 9.0)], &[]);
    assert_eq!(ack["results"][0]["error_code"], "BLOCKED", "{ack}");
    let message = ack["results"][0]["message"].as_str().unwrap();
    assert!(message.contains("divergence"), "{ack}");
    // This change's own base_seq is fine: the message does not say it is beyond (§6.7).
    assert!(!message.contains("your base_seq"), "{message}");
    settle(&mut [&mut b, &mut lost]);
    assert!(lost.batches.len() > replays, "the diverged editor was sent a full replay: {:?}", lost.batches);
    assert_eq!(lost.batches.last().unwrap().1, "resync");
    let ack = lost.send_change("z2", vec![transform(&x, 9.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "after acknowledging the replay it may change things again: {ack}");
    assert!(d.stderr_log().contains("sequence divergence"), "logged");
}

#[test]
fn a_slow_consumer_is_disconnected_and_nobody_else_waits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[sync]\nbatch_window_ms = 20\n[server]\nsend_queue_frames = 4\n[limits]\nslow_consumer_ms = 300\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut stalled = Client::connect(d.addr, &d.token, "demo", "unity").unwrap(); // never reads
    let name = "n".repeat(1000);
    let creates: Vec<Value> = (0..4000).map(|i| create(&new_uuid(), &format!("{name}{i}"), [0.0, 0.0, 0.0])).collect();
    let ack = b.send_change("big", creates, &[]);
    assert!(ack["results"].as_array().unwrap().iter().all(|r| r["status"] == "queued"));
    // The deadline is generous (debug build, shared machine): a stalled reader that blocked
    // the batch would block it forever.
    assert!(
        b.pump_until(Duration::from_secs(120), |m| m.results.iter().any(|r| r["outcome"] == "committed")),
        "the batch committed without the stalled editor: {:?}\n{}",
        b.results,
        d.stderr_log()
    );
    let mut ping = d.client("test");
    assert_eq!(ping.request(&json!({"type":"ping"})).unwrap()["type"], "pong");
    // The stalled editor was cut off: reading now gives whole frames, then SLOW_CONSUMER
    // (docs/PROTOCOL.md §4), then the end of the stream.
    stalled.set_read_timeout(Some(Duration::from_secs(10)));
    let mut last = None;
    for _ in 0..20_000 {
        match stalled.recv_frame() {
            Ok(f) => last = Some(serde_json::from_slice::<Value>(&f.json).expect("whole frames")),
            Err(_) => break,
        }
    }
    let last = last.expect("frames before the cut");
    assert_eq!(last["type"], "error", "the last frame says why: {last}");
    assert_eq!(last["code"], "SLOW_CONSUMER", "{last}");
}

/// Whether `session` left the daemon's `status` within `limit` (asked every 50 ms).
fn session_gone_within(d: &Daemon, session: &str, limit: Duration) -> bool {
    let mut other = d.client("test");
    let deadline = Instant::now() + limit;
    loop {
        let st = other.request(&json!({"type":"status"})).unwrap();
        if !st["sessions"].as_array().unwrap().iter().any(|s| s["session_id"] == session) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Read a cut-off client to the end of its stream: the last whole frame, and how it ended.
fn last_frame(c: &mut Client) -> (Option<Value>, vibesync_daemon::DaemonError) {
    c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut last = None;
    loop {
        match c.recv_frame() {
            Ok(f) => last = Some(serde_json::from_slice::<Value>(&f.json).expect("whole frames")),
            Err(e) => return (last, e),
        }
    }
}

/// A client that sends requests and never reads the replies is a slow consumer too
/// (`limits.slow_consumer_ms`, docs/PROTOCOL.md §4): disconnected with `SLOW_CONSUMER` as
/// its last frame, not held back for ever; other sessions are served meanwhile.
#[test]
fn a_client_that_never_reads_its_replies_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[server]\nsend_queue_frames = 4\n[limits]\nslow_consumer_ms = 300\nmessages_per_sec = 1000000\nmessages_burst = 1000000\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut flood = Client::connect(d.addr, &d.token, "demo", "test").unwrap();
    let session = flood.welcome["session_id"].as_str().unwrap().to_string();
    // Pings with a long request_id each, from a thread of their own (the socket blocks once
    // the daemon stops reading): their pongs fill the socket and the queue.
    let mut sender = flood.try_clone_stream();
    std::thread::spawn(move || {
        let pad = "p".repeat(100);
        for i in 0..1_000_000 {
            if sender.send(&json!({"type":"ping","request_id": format!("{i}{pad}")})).is_err() {
                break;
            }
        }
    });
    let gone = session_gone_within(&d, &session, Duration::from_secs(60));
    assert!(gone, "the session that does not read its replies was disconnected\n{}", d.stderr_log());
    let (last, end) = last_frame(&mut flood);
    let last = last.expect("pongs before the cut");
    assert_eq!(last["code"], "SLOW_CONSUMER", "the last frame says why: {last} (then: {end})\n{}", d.stderr_log());
}

/// The send queue is bounded in bytes too (`server.send_queue_bytes`, docs/PROTOCOL.md §4):
/// a client that asks for resyncs of a big mesh and reads nothing is cut off with
/// `SLOW_CONSUMER` once that much waits for it, however few the frames — it cannot make the
/// daemon hold its meshes over and over (an independent client had ~96 MB held with 150
/// frames). Before, only a full queue of `send_queue_frames` frames counted.
#[test]
fn a_client_that_asks_for_big_resyncs_and_never_reads_is_cut_off_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "c.toml",
        "[sync]\nbatch_window_ms = 20\n[server]\nsend_queue_bytes = 4194304\n[limits]\nslow_consumer_ms = 300\nmessages_per_sec = 1000000\nmessages_burst = 1000000\n",
    );
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    // ~2.4 MB of mesh.
    let n = 150_000u32;
    let mesh = vibesync_protocol::mesh::Mesh {
        positions: (0..n).map(|i| [i as f32, (i % 7) as f32, 0.5]).collect(),
        normals: None,
        uv0: None,
        indices: (0..n).collect(),
    }
    .encode();
    let id = new_uuid();
    let hash = vibesync_protocol::mesh::Mesh::hash_bytes(&mesh);
    let mut big = create(&id, "Big", [0.0, 0.0, 0.0]);
    big["mesh_hash"] = json!(hash);
    let ack = b.send_change("c", vec![big], &mesh);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    assert!(b.pump_until(Duration::from_secs(20), |m| m.results.iter().any(|r| r["outcome"] == "committed")));

    let mut u = Client::connect(d.addr, &d.token, "demo", "unity").unwrap();
    let session = u.welcome["session_id"].as_str().unwrap().to_string();
    let mut sender = u.try_clone_stream();
    std::thread::spawn(move || {
        for i in 0..200 {
            let msg = json!({"type":"resync","request_id": format!("r{i}"),"since_seq":0});
            if sender.send(&msg).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let gone = session_gone_within(&d, &session, Duration::from_secs(60));
    assert!(gone, "the session that reads nothing was disconnected\n{}", d.stderr_log());
    let (last, end) = last_frame(&mut u);
    let last = last.expect("frames before the cut");
    assert_eq!(last["code"], "SLOW_CONSUMER", "the last frame says why: {last} (then: {end})");
}

/// A graceful stop while a batch waits for an editor's answer: the stop disconnects the
/// editor, which must not be taken for a participant lost mid-apply (evidence against the
/// objects). The batch is cut — `RECOVERED_INCOMPLETE` at the next boot, never
/// `PARTICIPANT_LOST` — nothing is appended after the WAL closes, the stop is clean, and the
/// same change goes through afterwards.
#[test]
fn a_graceful_stop_mid_batch_is_not_evidence_against_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 0\nverify_timeout_ms = 60000\n");
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let x = new_uuid();
    b.send_change("c", vec![create(&x, "X", [0.0, 0.0, 0.0])], &[]);
    settle(&mut [&mut b, &mut u]);

    u.answer = false;
    let before = u.batches.len();
    let ack = b.send_change("m", vec![transform(&x, 5.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    assert!(u.pump_until(Duration::from_secs(20), |m| m.batches.len() > before), "the batch reached Unity");
    assert_eq!(d.stop(), Some(0), "clean stop: {}", d.stderr_log());
    let log = d.stderr_log();
    assert!(!log.contains("PARTICIPANT_LOST"), "the stop was taken for a lost participant:\n{log}");
    assert!(!log.contains("WAL is closed") && !log.contains("storage failure"), "appended after close:\n{log}");
    drop((b, u));

    let d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let recs = wal_records(&data);
    assert!(!recs.iter().any(|r| r["error_code"] == "PARTICIPANT_LOST"), "no evidence was recorded");
    assert!(
        recs.iter().any(|r| r["phase"] == "ROLLBACK" && r["error_code"] == "RECOVERED_INCOMPLETE"),
        "the cut batch is closed at boot as incomplete"
    );
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    assert_eq!(b.c.welcome["safe_mode"], false, "a clean stop is not an unclean boot");
    // Both replays arrived (X at its committed pose) before anyone edits again.
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| m.iter().all(|m| m.states.contains_key(&x)));
    let ack = b.send_change("m2", vec![transform(&x, 5.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"], "the same input is not refused as a failure: {ack}");
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |m| {
        m[1].states.get(&x).is_some_and(|s| s["t"] == json!([5.0, 0.0, 0.0]))
    });
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// An agent deletes the Cube the Camera is under. A delete removes that one object: the
/// editors make the Camera a root, while nothing would tell the daemon, whose record kept
/// the Camera under an object that is gone (a session without a scene sends nothing for
/// the children, docs/PROTOCOL.md §6.1 "delete"). The delete is refused `INVALID_FIELD`,
/// naming the child and what to do; with the Camera reparented first, in the same request,
/// it goes through.
#[test]
fn an_agents_delete_of_an_object_with_children_is_refused_until_they_are_moved() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 20\n");
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let mut bot = Mini::connect(&d, "agent", 1.0, 0);
    let (cube, cam) = (new_uuid(), new_uuid());
    let mut child = create(&cam, "Camera", [0.0, 1.0, 0.0]);
    child["parent"] = json!(cube);
    b.send_change("c", vec![create(&cube, "Cube", [1.0, 0.0, 0.0]), child], &[]);
    settle(&mut [&mut b, &mut u, &mut bot]);
    assert_eq!(u.states[&cam]["parent"], json!(cube));
    bot.last_seq = b.last_seq; // what the agent has read of the scene (it receives no batches)

    let ack = bot.send_change("del", vec![json!({"op":"delete","uuid":cube})], &[]);
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "{ack}");
    let why = ack["results"][0]["message"].as_str().unwrap();
    assert!(why.contains(&cam) && why.contains("reparent"), "names the child and what to do: {why}");
    settle(&mut [&mut b, &mut u, &mut bot]);
    assert!(u.states.contains_key(&cube) && b.states.contains_key(&cube), "nothing deleted");

    let ack = bot.send_change(
        "del2",
        vec![json!({"op":"reparent","uuid":cam,"parent":null}), json!({"op":"delete","uuid":cube})],
        &[],
    );
    assert_eq!(statuses(&ack), ["queued", "queued"], "{ack}");
    settle(&mut [&mut b, &mut u, &mut bot]);
    for m in [&b, &u] {
        assert!(!m.states.contains_key(&cube), "the Cube is deleted");
        assert!(m.states[&cam]["parent"].is_null(), "the Camera is a root: {:?}", m.states[&cam]);
    }
}

/// A daemon with a 20 ms window under `dir`, and Blender, Unity and an agent connected to
/// its project: (its data directory, the daemon, blender, unity, the agent).
fn blender_unity_and_an_agent(dir: &std::path::Path) -> (std::path::PathBuf, Daemon, Mini, Mini, Mini) {
    let data = dir.join("data");
    let cfg = config(dir, "c.toml", "[sync]\nbatch_window_ms = 20\n");
    let d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let b = Mini::connect(&d, "blender", 1.0, 0);
    let u = Mini::connect(&d, "unity", 1.0, 0);
    let bot = Mini::connect(&d, "agent", 1.0, 0);
    (data, d, b, u, bot)
}

/// Automation's writes stay automation's across a daemon restart (docs/PROTOCOL.md §6.1):
/// an agent's tool inside Unity moves the cube and deletes the lamp (changes sent with
/// `automation`); the daemon restarts; Blender's person, who had not seen either, puts the
/// cube under the camera and moves the lamp. Before, the registry kept who wrote each part
/// but not on whose behalf, so after the restart both were refused `STALE` — automation's
/// write undid the person's edit in Blender. Now the reparent is queued and stands, and the
/// move of the deleted lamp is `NOT_FOUND` (the editor then sends it whole: it comes back),
/// as without the restart. Tried from the checkpoint and from the whole log.
#[test]
fn automations_writes_stay_automations_across_a_restart() {
    for from_checkpoint in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = config(dir.path(), "c.toml", "[sync]\nbatch_window_ms = 20\n");
        let mut d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
        let mut b = Mini::connect(&d, "blender", 1.0, 0);
        let mut u = Mini::connect(&d, "unity", 1.0, 0);
        let (cube, cam, lamp) = (new_uuid(), new_uuid(), new_uuid());
        let made =
            vec![create(&cube, "Cube", [0.0; 3]), create(&cam, "Camera", [0.0; 3]), create(&lamp, "Lamp", [0.0; 3])];
        assert_eq!(statuses(&b.send_change("c", made, &[])), ["queued"; 3]);
        settle(&mut [&mut b, &mut u]);
        let base = b.last_seq;
        u.automation = Some(json!({"operation_id":"op-1","tool":"demo.tidy","agent_session":"a-1"}));
        let ack = u.send_change("u1", vec![transform(&cube, 9.0), json!({"op":"delete","uuid":lamp})], &[]);
        assert_eq!(statuses(&ack), ["queued"; 2]);
        u.states.remove(&lamp);
        until(&mut [&mut b, &mut u], Duration::from_secs(10), |m| {
            m[1].results.iter().any(|r| r["outcome"] == "committed" && r["through"].get(&lamp).is_some())
        });
        drop((b, u));
        d.stop();
        if !from_checkpoint {
            let _ = std::fs::remove_file(data.join("checkpoint.json"));
        }
        let d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
        let mut b = Mini::connect(&d, "blender", 1.0, base);
        let msg = json!({"type":"change","request_id":"b1","base_seq":base,"changes":[{"op":"reparent","uuid":cube,"parent":cam}]});
        let ack = b.ask(&msg);
        assert_eq!(
            statuses(&ack),
            ["queued"],
            "checkpoint {from_checkpoint}: not stale against the tool's move: {ack}"
        );
        let msg = json!({"type":"change","request_id":"b2","base_seq":base,"changes":[transform(&lamp, 3.0)]});
        let ack = b.ask(&msg);
        assert_eq!(
            ack["results"][0]["error_code"], "NOT_FOUND",
            "checkpoint {from_checkpoint}: not stale against the tool's delete: {ack}"
        );
        b.states.get_mut(&cube).unwrap()["parent"] = json!(cam);
        let mut u = Mini::connect(&d, "unity", 1.0, 0);
        settle(&mut [&mut b, &mut u]);
        for (who, m) in [("blender", &b), ("unity", &u)] {
            assert_eq!(
                m.states[&cube]["parent"],
                json!(cam),
                "{who}: the person's reparent stands: {}",
                d.stderr_log()
            );
        }
    }
}

/// A person's change is never stale against automation's (docs/PROTOCOL.md §6.1, §6.7:
/// people's own edits always flow). An agent moves the cube — committed, then again with its
/// batch still in flight — and an agent's tool inside Unity moves it (`change.automation`);
/// each time Blender's person, who had not seen the move, puts the cube under the camera.
/// A reparent is stale against another person's move (a local pose is relative to its
/// parent), but not against automation's: it is queued, it is the later writer, and both
/// editors hold the person's reparent — a conflict the person won. Before, it was refused
/// `STALE` and the person's reparent was undone in Blender, by automation that might even
/// roll back afterwards (model seed 59). An agent's delete still wins: the object is gone.
#[test]
fn a_persons_change_is_never_stale_against_automations() {
    let dir = tempfile::tempdir().unwrap();
    let (data, d, mut b, mut u, mut bot) = blender_unity_and_an_agent(dir.path());
    let (cube, cam, gone) = (new_uuid(), new_uuid(), new_uuid());
    let made = vec![create(&cube, "Cube", [0.0; 3]), create(&cam, "Camera", [0.0; 3]), create(&gone, "Gone", [0.0; 3])];
    assert_eq!(statuses(&b.send_change("c", made, &[])), ["queued"; 3]);
    settle(&mut [&mut b, &mut u, &mut bot]);
    let reparent = |rid: &str, base: u64, parent: Value| json!({"type":"change","request_id":rid,"base_seq":base,"changes":[{"op":"reparent","uuid":cube,"parent":parent}]});
    let agent_won = |data: &std::path::Path| {
        crate::sync::conflict_steps(data, &cube)
            .iter()
            .filter(|s| s["winner"] == "blender" && s["loser"] == "agent")
            .count()
    };

    // 1. The agent's move committed before Blender's person reparented.
    let base = b.last_seq;
    assert_eq!(statuses(&bot.send_change("a1", vec![transform(&cube, 5.0)], &[])), ["queued"]);
    until(&mut [&mut u], Duration::from_secs(10), |m| m[0].states[&cube]["t"] == json!([5.0, 0.0, 0.0]));
    let ack = b.ask(&reparent("b1", base, json!(cam)));
    assert_eq!(statuses(&ack), ["queued"], "not stale against the agent's move: {ack}");
    b.states.get_mut(&cube).unwrap()["parent"] = json!(cam);
    settle(&mut [&mut b, &mut u, &mut bot]);
    for (who, m) in [("blender", &b), ("unity", &u)] {
        assert_eq!(m.states[&cube]["parent"], json!(cam), "{who}: the person's reparent stands: {}", d.stderr_log());
    }
    assert_eq!(agent_won(&data), 1, "a conflict the person won: {:?}", crate::sync::conflict_steps(&data, &cube));
    assert!(
        b.events.iter().any(|e| e["type"] == "conflict" && e["winner"] == "blender" && e["loser"] == "agent"),
        "Blender is told: {:?}",
        b.events
    );

    // 2. The agent's move still in flight (Unity has not answered it).
    let base = b.last_seq;
    u.answer = false;
    let seen = u.batches.len();
    assert_eq!(statuses(&bot.send_change("a2", vec![transform(&cube, 7.0)], &[])), ["queued"]);
    until(&mut [&mut u], Duration::from_secs(10), |m| m[0].batches.len() > seen);
    let ack = b.ask(&reparent("b2", base, Value::Null));
    assert_eq!(statuses(&ack), ["queued"], "not stale against the agent's move in flight: {ack}");
    b.states.get_mut(&cube).unwrap()["parent"] = Value::Null;
    u.answer = true;
    let (batch_id, _, _) = u.batches[seen].clone();
    let hash = vibesync_protocol::state::state_hash(&u.states[&cube]);
    u.c.send(&json!({"type":"applied","batch_id":batch_id,"seq":u.last_seq,"hashes":{cube.clone(): hash}})).unwrap();
    settle(&mut [&mut b, &mut u, &mut bot]);
    for (who, m) in [("blender", &b), ("unity", &u)] {
        assert!(m.states[&cube]["parent"].is_null(), "{who}: the person's reparent stands: {}", d.stderr_log());
        assert_eq!(m.states[&cube]["t"], json!([7.0, 0.0, 0.0]), "{who}: the agent's move stands too");
    }

    // 3. An agent's tool inside Unity moves it (automation sent by an editor).
    let base = b.last_seq;
    u.automation = Some(json!({"operation_id":"op-9","tool":"demo.move","agent_session":"a-1"}));
    assert_eq!(statuses(&u.send_change("u3", vec![transform(&cube, 9.0)], &[])), ["queued"]);
    u.automation = None;
    until(&mut [&mut b], Duration::from_secs(10), |m| m[0].states[&cube]["t"] == json!([9.0, 0.0, 0.0]));
    let ack = b.ask(&reparent("b3", base, json!(cam)));
    assert_eq!(statuses(&ack), ["queued"], "not stale against the tool's move: {ack}");
    b.states.get_mut(&cube).unwrap()["parent"] = json!(cam);
    settle(&mut [&mut b, &mut u, &mut bot]);
    for (who, m) in [("blender", &b), ("unity", &u)] {
        assert_eq!(m.states[&cube]["parent"], json!(cam), "{who}: the person's reparent stands: {}", d.stderr_log());
    }

    // A person's move is another matter: Unity's person moves it; Blender's reparent made
    // before it heard of that is stale (a local pose is relative to its parent).
    let base = b.last_seq;
    assert_eq!(statuses(&u.send_change("u4", vec![transform(&cube, 11.0)], &[])), ["queued"]);
    until(&mut [&mut b], Duration::from_secs(10), |m| m[0].states[&cube]["t"] == json!([11.0, 0.0, 0.0]));
    let ack = b.ask(&reparent("b4", base, Value::Null));
    assert_eq!(ack["results"][0]["error_code"], "STALE", "{ack}");

    // The agent's delete neither: a move made before Blender heard of it brings the object
    // back. The move alone is `NOT_FOUND` (the daemon holds no object to move); Blender
    // then sends the object whole, as an editor does, and that stands in both editors.
    let base = b.last_seq;
    let results = bot.results.len();
    assert_eq!(statuses(&bot.send_change("a5", vec![json!({"op":"delete","uuid":gone})], &[])), ["queued"]);
    until(&mut [&mut b, &mut u, &mut bot], Duration::from_secs(10), |m| {
        m[2].results[results..].iter().any(|r| r["outcome"] == "committed")
    });
    assert!(!b.states.contains_key(&gone) && !u.states.contains_key(&gone));
    let msg = json!({"type":"change","request_id":"b5","base_seq":base,"changes":[transform(&gone, 3.0)]});
    let ack = b.ask(&msg);
    assert_eq!(ack["results"][0]["error_code"], "NOT_FOUND", "not stale against the agent's delete: {ack}");
    let mut whole = create(&gone, "Gone", [3.0, 0.0, 0.0]);
    let msg = json!({"type":"change","request_id":"b6","base_seq":base,"changes":[whole.clone()]});
    assert_eq!(statuses(&b.ask(&msg)), ["queued"]);
    whole.as_object_mut().unwrap().remove("op");
    whole.as_object_mut().unwrap().remove("uuid");
    b.states.insert(gone.clone(), whole);
    settle(&mut [&mut b, &mut u, &mut bot]);
    for (who, m) in [("blender", &b), ("unity", &u)] {
        let s =
            m.states.get(&gone).unwrap_or_else(|| panic!("{who}: the person's object is not back: {}", d.stderr_log()));
        assert_eq!(s["t"], json!([3.0, 0.0, 0.0]), "{who}");
    }
    let won = crate::sync::conflict_steps(&data, &gone);
    assert!(
        won.iter().any(|s| s["winner"] == "blender" && s["loser"] == "agent"),
        "a conflict the person won: {won:?}"
    );
    // Another person's delete still wins: Unity's person deletes it; Blender's move made
    // before it heard of that is stale, a conflict the delete won.
    let base = b.last_seq;
    let ack = u.ask(&json!({"type":"tombstone","request_id":"u6","uuids":[gone]}));
    assert_eq!(ack["results"][0]["status"], "tombstoned", "{ack}");
    u.states.remove(&gone);
    settle(&mut [&mut b, &mut u, &mut bot]);
    let msg = json!({"type":"change","request_id":"b7","base_seq":base,"changes":[transform(&gone, 4.0)]});
    let ack = b.ask(&msg);
    assert_eq!(ack["results"][0]["error_code"], "STALE", "{ack}");
}

/// PROTOCOL §6.3, §6.4: an agent's `delete` goes to the editors marked `automation`. Blender's
/// person moved the object before Blender read that batch: the move is queued, not `STALE`,
/// while the batch is in flight (§6.1), and Blender, which does not apply automation's delete
/// over a person's edit, answers with the object as it holds it. The batch rolls back — the
/// agent's delete is undone everywhere, Unity gets the object back — and the person's move
/// commits after it: it stands in both editors.
#[test]
fn an_agents_delete_of_what_a_person_is_moving_rolls_back_and_the_move_stands() {
    let dir = tempfile::tempdir().unwrap();
    let (_, d, mut b, mut u, mut bot) = blender_unity_and_an_agent(dir.path());
    let (cube, other) = (new_uuid(), new_uuid());
    let made = vec![create(&cube, "Cube", [0.0; 3]), create(&other, "Other", [0.0; 3])];
    assert_eq!(statuses(&b.send_change("c", made, &[])), ["queued"; 2]);
    settle(&mut [&mut b, &mut u, &mut bot]);
    let base = b.last_seq;

    // An agent's `tombstone` would commit at once, verified by nobody: refused (§5).
    bot.c.send(&json!({"type":"tombstone","request_id":"t1","uuids":[cube]})).unwrap();
    let (m, _) = bot.recv();
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str(), m["request_id"].as_str()),
        (Some("error"), Some("BAD_MESSAGE"), Some("t1")),
        "{m}"
    );
    assert!(m["message"].as_str().unwrap().contains("`delete` change"), "{m}");
    settle(&mut [&mut b, &mut u, &mut bot]);
    assert!(b.states.contains_key(&cube) && u.states.contains_key(&cube), "nothing deleted");
    assert_eq!(b.last_seq, base, "nothing written");

    // Blender has the agent's batch in its socket, unread; Unity applies it.
    b.answer = false;
    let seen = b.batches.len();
    let ack =
        bot.ask(&json!({"type":"change","request_id":"a1","base_seq":base,"changes":[{"op":"delete","uuid":cube}]}));
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    until(&mut [&mut u], Duration::from_secs(10), |m| !m[0].states.contains_key(&cube));
    // Meanwhile Blender's person moves the Cube and Blender sends the move.
    let ack = b.ask(&json!({"type":"change","request_id":"b1","base_seq":base,"changes":[transform(&cube, 3.0)]}));
    assert_eq!(statuses(&ack), ["queued"], "not stale against the agent's delete in flight: {ack}");
    until(&mut [&mut b], Duration::from_secs(10), |m| m[0].batches.len() > seen);
    assert_eq!(b.automation_applies, [(cube.clone(), "delete".to_string())], "the delete is marked automation's");
    assert!(u.automation_applies.contains(&(cube.clone(), "delete".to_string())));
    // Blender keeps the Cube with the person's move, and answers it as it holds it.
    let mut held = create(&cube, "Cube", [3.0, 0.0, 0.0]);
    held.as_object_mut().unwrap().remove("op");
    held.as_object_mut().unwrap().remove("uuid");
    b.states.insert(cube.clone(), held);
    let (batch_id, _, _) = b.batches[seen].clone();
    let hash = vibesync_protocol::state::state_hash(&b.states[&cube]);
    let why =
        "Cube: a person in Blender was editing it (transform) when automation's delete of it arrived; Blender keeps it";
    b.c.send(&json!({"type":"applied","batch_id":batch_id,"seq":b.last_seq,"hashes":{cube.clone(): hash},"failed":{cube.clone(): why}})).unwrap();
    b.answer = true;
    settle(&mut [&mut b, &mut u, &mut bot]);

    let result = bot.results.iter().find(|r| r["batch_id"] == batch_id.as_str()).expect("the agent hears of its batch");
    assert_eq!(result["outcome"], "rolled_back", "{result}");
    assert!(result.get("kept_local").is_none(), "automation keeps nothing: {result}");
    let why = result["reason"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("Blender could not apply the change as sent")
            && why.contains("a person in Blender was editing it"),
        "the agent is told why: {result}"
    );
    for (who, m) in [("blender", &b), ("unity", &u)] {
        let s = m.states.get(&cube).unwrap_or_else(|| panic!("{who}: the Cube is gone: {}", d.stderr_log()));
        assert_eq!(s["t"], json!([3.0, 0.0, 0.0]), "{who}: the person's move stands");
    }
    assert!(u.states.contains_key(&other) && b.states.contains_key(&other));

    // A client that applies the delete anyway (it ignores `automation`): the delete commits,
    // and the move queued behind it ends — a conflict the delete won, nothing left waiting.
    let base = b.last_seq;
    b.answer = false;
    let seen = b.batches.len();
    let ack =
        bot.ask(&json!({"type":"change","request_id":"a2","base_seq":base,"changes":[{"op":"delete","uuid":other}]}));
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    // In flight (Unity applied it) before the move arrives: a move arriving while the delete
    // still waits in its window drops it instead (§6.7; test
    // `automation_never_overwrites_a_persons_change_waiting_in_the_same_window`).
    until(&mut [&mut u], Duration::from_secs(10), |m| !m[0].states.contains_key(&other));
    let ack = b.ask(&json!({"type":"change","request_id":"b2","base_seq":base,"changes":[transform(&other, 4.0)]}));
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    until(&mut [&mut b], Duration::from_secs(10), |m| m[0].batches.len() > seen);
    b.answer = true;
    let (batch_id, _, _) = b.batches[seen].clone();
    b.c.send(&json!({"type":"applied","batch_id":batch_id,"seq":b.last_seq,"hashes":{}})).unwrap();
    settle(&mut [&mut b, &mut u, &mut bot]);
    let ended = b.results.iter().find(|r| r["through"].get(&other).is_some_and(|x| x == "b2")).expect("the move ends");
    assert_eq!(ended["outcome"], "dropped", "{ended}");
    assert!(!b.states.contains_key(&other) && !u.states.contains_key(&other), "the delete stands");
    assert!(bot.results.iter().any(|r| r["outcome"] == "committed" && r["through"].get(&other).is_some()));
}
