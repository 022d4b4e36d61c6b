//! Agent tool calls through the real daemon (docs/PROTOCOL.md §9), with a raw `agent` client
//! and a raw client standing in for Blender: registries reach agents, calls are gated (offline,
//! unknown tool, people editing, cancellation, per-tool BLOCKED), relayed both ways, and each
//! call that ran is one WAL transaction (BEGIN → STEP → COMMIT → FINAL, or BEGIN → ROLLBACK).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

fn recv_type(c: &mut Client, ty: &str) -> Value {
    recv_until(c, &format!("`{ty}`"), |m| m["type"] == ty)
}

fn call(agent: &mut Client, rid: &str, addon: &str, command: &str) {
    agent
        .send(&json!({"type": "addon_command", "request_id": rid, "addon_id": addon, "command": command, "params": {"n": 1}}))
        .unwrap();
}

fn response(agent: &mut Client, rid: &str) -> Value {
    let r = recv_type(agent, "command_response");
    assert_eq!(r["request_id"], rid, "{r}");
    r
}

fn answer(blender: &mut Client, cmd: &Value, result: Value, uuids: &[&str]) {
    blender
        .send(&json!({"type": "command_response", "request_id": cmd["request_id"], "addon_id": cmd["addon_id"],
            "command": cmd["command"], "result": result, "uuids": uuids}))
        .unwrap();
}

fn of_operation(d: &Daemon, op: &str) -> Vec<Value> {
    wal_records(&d.data).into_iter().filter(|r| r["operation_id"] == op).collect()
}

#[test]
fn tool_calls_are_gated_relayed_and_logged_as_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vibesync.toml");
    std::fs::write(&cfg, "[governance]\nuser_idle_ms = 300\n[agents]\ntool_failures = 2\nprogress_interval_ms = 100\n")
        .unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut agent = d.client("agent");
    let agent_session = agent.welcome["session_id"].as_str().unwrap().to_string();

    // No Blender yet.
    call(&mut agent, "r1", "rmg", "mk");
    let r = response(&mut agent, "r1");
    assert_eq!(r["result"]["error_code"], "EDITOR_OFFLINE", "{r}");
    // Only agents call tools.
    let mut other = d.client("test");
    let e =
        other.request(&json!({"type": "addon_command", "request_id": "x", "addon_id": "a", "command": "b"})).unwrap();
    assert_eq!(e["code"], "BAD_MESSAGE", "{e}");

    // Blender reports its add-ons; the agent is told, with the session that serves them.
    let mut blender = d.client("blender");
    let blender_session = blender.welcome["session_id"].as_str().unwrap().to_string();
    let tools = json!([{"name": "mk", "parameters": []}, {"name": "other", "parameters": []}]);
    blender
        .send(&json!({"type": "registry_updated", "available_addons": [{"addon_id": "rmg", "tools": tools}],
            "rejected": [{"addon_id": "bad", "file": "f", "path": "addon_info.id", "reason": "r"}], "withheld": []}))
        .unwrap();
    let reg = recv_type(&mut agent, "registry_updated");
    assert_eq!(reg["available_addons"][0]["addon_id"], "rmg", "{reg}");
    assert_eq!(reg["available_addons"][0]["session_id"], blender_session.as_str());
    assert_eq!(reg["rejected"][0]["path"], "addon_info.id");
    call(&mut agent, "r2", "rmg", "nope");
    assert_eq!(response(&mut agent, "r2")["result"]["error_code"], "UNKNOWN_TOOL");

    // A call that runs: relayed to Blender and back, one transaction in the WAL.
    call(&mut agent, "r3", "rmg", "mk");
    let cmd = recv_type(&mut blender, "addon_command");
    assert_eq!(cmd["agent_session"], agent_session.as_str());
    assert_eq!(cmd["params"], json!({"n": 1}));
    assert!(cmd["timeout_ms"].as_u64().unwrap() > 0 && cmd["username"].is_string(), "{cmd}");
    let u = new_uuid();
    answer(&mut blender, &cmd, json!({"status": "success", "message": "made"}), &[&u]);
    let r = response(&mut agent, "r3");
    assert_eq!(r["result"]["status"], "success", "{r}");
    assert_eq!(r["operation_id"], cmd["operation_id"]);
    assert!(r["seq"].as_u64().unwrap() > 0);
    let op = r["operation_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let recs = loop {
        let recs = of_operation(&d, &op);
        if recs.iter().any(|x| x["phase"] == "FINAL") || Instant::now() > deadline {
            break recs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let phases: Vec<&str> = recs.iter().map(|x| x["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["BEGIN", "STEP", "COMMIT", "FINAL"], "{recs:?}");
    assert_eq!(recs[0]["session_id"], agent_session.as_str());
    assert_eq!(recs[0]["payload"]["tool"], "rmg.mk");
    assert_eq!(recs[1]["payload"], json!({"op": "tool_effect", "uuid": u, "tool": "rmg.mk"}));

    // A refusal by Blender's router ran nothing: nothing in the WAL.
    call(&mut agent, "r4", "rmg", "mk");
    let cmd = recv_type(&mut blender, "addon_command");
    answer(
        &mut blender,
        &cmd,
        json!({"status": "error", "message": "n > 0", "error_code": "OUT_OF_RANGE", "field": "/n"}),
        &[],
    );
    let r = response(&mut agent, "r4");
    assert_eq!((r["result"]["error_code"].as_str(), r["result"]["field"].as_str()), (Some("OUT_OF_RANGE"), Some("/n")));
    assert!(of_operation(&d, r["operation_id"].as_str().unwrap()).is_empty());

    // Failures: BEGIN → ROLLBACK; after 2, that tool alone is BLOCKED.
    for rid in ["r5", "r6"] {
        call(&mut agent, rid, "rmg", "mk");
        let cmd = recv_type(&mut blender, "addon_command");
        answer(&mut blender, &cmd, json!({"status": "error", "message": "boom", "error_code": "HANDLER_FAILED"}), &[]);
        let r = response(&mut agent, rid);
        assert_eq!(r["result"]["error_code"], "HANDLER_FAILED");
        let recs = of_operation(&d, r["operation_id"].as_str().unwrap());
        let phases: Vec<&str> = recs.iter().map(|x| x["phase"].as_str().unwrap()).collect();
        assert_eq!(phases, ["BEGIN", "ROLLBACK"]);
        assert_eq!(recs[1]["error_code"], "HANDLER_FAILED");
    }
    call(&mut agent, "r7", "rmg", "mk");
    assert_eq!(response(&mut agent, "r7")["result"]["error_code"], "BLOCKED");

    // People editing: the call is held (progress), then runs after the idle period.
    active(&mut blender);
    let t0 = Instant::now();
    call(&mut agent, "r8", "rmg", "other");
    let p = recv_type(&mut agent, "command_progress");
    assert_eq!((p["request_id"].as_str(), p["state"].as_str()), (Some("r8"), Some("held")), "{p}");
    blender.send(&json!({"type": "user_activity", "active": false})).unwrap();
    let cmd = recv_type(&mut blender, "addon_command");
    assert!(t0.elapsed() >= Duration::from_millis(300), "dispatched while people were editing");
    answer(&mut blender, &cmd, json!({"status": "warning", "message": "ok-ish"}), &[]);
    assert_eq!(response(&mut agent, "r8")["result"]["status"], "warning");

    // Cancelled while held: nothing reaches Blender.
    active(&mut blender);
    call(&mut agent, "r9", "rmg", "other");
    recv_type(&mut agent, "command_progress");
    agent.send(&json!({"type": "addon_cancel", "request_id": "r9"})).unwrap();
    assert_eq!(response(&mut agent, "r9")["result"]["error_code"], "CANCELLED");

    // Blender leaves: its tools go, calls are EDITOR_OFFLINE.
    drop(blender);
    let reg = recv_type(&mut agent, "registry_updated");
    assert_eq!(reg["available_addons"], json!([]));
    call(&mut agent, "r10", "rmg", "other");
    assert_eq!(response(&mut agent, "r10")["result"]["error_code"], "EDITOR_OFFLINE");

    // The count is the WAL's ROLLBACKs: a restart does not unblock the tool; a person does.
    drop(agent);
    let mut d = d;
    assert_eq!(d.stop(), Some(0), "clean shutdown: {}", d.stderr_log());
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut agent = d.client("agent");
    let mut blender = d.client("blender");
    blender
        .send(&json!({"type": "registry_updated", "available_addons": [{"addon_id": "rmg", "tools": tools}],
            "rejected": [], "withheld": []}))
        .unwrap();
    recv_type(&mut agent, "registry_updated");
    call(&mut agent, "r11", "rmg", "mk");
    assert_eq!(response(&mut agent, "r11")["result"]["error_code"], "BLOCKED", "a restart unblocked the tool");
    let (code, _, err) = cli(&["safe-mode", "clear", "--data-dir", d.data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    call(&mut agent, "r12", "rmg", "mk");
    let cmd = recv_type(&mut blender, "addon_command");
    answer(&mut blender, &cmd, json!({"status": "success", "message": "made"}), &[]);
    assert_eq!(response(&mut agent, "r12")["result"]["status"], "success");
}

/// Blender says a person is editing, and the daemon has handled it: its messages are handled
/// in order, so the `pong` to the ping sent right after is the event (not a sleep).
fn active(blender: &mut Client) {
    blender.send(&json!({"type": "user_activity", "active": true})).unwrap();
    let pong = blender.request(&json!({"type": "ping", "request_id": "after-user-activity"})).unwrap();
    assert_eq!(
        (pong["type"].as_str(), pong["request_id"].as_str()),
        (Some("pong"), Some("after-user-activity")),
        "{pong}"
    );
}
