//! Session ingest (docs/PROTOCOL.md §2, §6.6): over-budget coalescible changes are merged,
//! never refused, and the last pose arrives; a `resync` answer carries its `request_id`, and
//! nothing is sent after `welcome` when there is nothing to replay.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, until, Mini};

#[test]
fn over_budget_transforms_are_coalesced_never_refused_and_the_last_pose_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("limits.toml");
    std::fs::write(&cfg, "[sync]\nbatch_window_ms = 0\n[limits]\nmessages_per_sec = 2\nmessages_burst = 5\n").unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "unity", 1.0, 0);
    let mut a = Mini::connect(&d, "blender", 1.0, 0);
    let id = new_uuid();
    let ack = a.send_change("c", vec![create(&id, "Cube", [0.0, 0.0, 0.0])], &[]);
    assert_eq!(ack["results"][0]["status"], "queued", "{ack}");
    assert!(b.pump_until(Duration::from_secs(10), |m| m.states.contains_key(&id)), "B never got the create");

    // 300 transforms as fast as the socket takes them: far over 2 messages/s.
    let n = 300;
    let mut sender = a.c.try_clone_stream();
    let idc = id.clone();
    let writer = std::thread::spawn(move || {
        for i in 1..=n {
            let m = json!({"type":"change","request_id":format!("t{i}"),"base_seq":0,"changes":[{"op":"transform","uuid":idc,"t":[i as f64,0,0],"r":[0,0,0,1],"s":[1,1,1]}]});
            sender.send(&m).unwrap();
        }
    });
    // Every request is answered exactly once, in order; none is refused.
    let mut answered = Vec::new();
    let mut statuses_seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    a.c.set_read_timeout(Some(Duration::from_millis(200)));
    while answered.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} requests answered within 30 s", answered.len());
        let Ok(f) = a.c.recv_frame() else { continue };
        let m: Value = serde_json::from_slice(&f.json).unwrap();
        match m["type"].as_str() {
            Some("ack") if m["request_id"].as_str().is_some_and(|r| r.starts_with('t')) => {
                assert_eq!(m["results"].as_array().unwrap().len(), 1, "one result per change: {m}");
                for r in m["results"].as_array().unwrap() {
                    statuses_seen.insert(r["status"].as_str().unwrap().to_string());
                }
                answered.push(m["request_id"].as_str().unwrap()[1..].parse::<usize>().unwrap());
            }
            Some("error") => panic!("refused: {m}"),
            _ => {}
        }
    }
    writer.join().unwrap();
    assert_eq!(answered, (1..=n).collect::<Vec<_>>(), "one reply per request, in request order");
    assert!(statuses_seen.contains("coalesced"), "over budget, changes were merged: {statuses_seen:?}");
    assert!(statuses_seen.iter().all(|s| s == "queued" || s == "coalesced"), "{statuses_seen:?}");
    // The receiver ends up holding the last pose.
    let got =
        b.pump_until(Duration::from_secs(20), |m| m.states.get(&id).is_some_and(|s| s["t"][0] == json!(n as f64)));
    assert!(got, "B does not hold the last pose: {:?}", b.states.get(&id));
}

#[test]
fn resync_answer_carries_its_request_id_and_nothing_precedes_it_when_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut a = Mini::connect(&d, "blender", 1.0, 0);
    let id = new_uuid();
    a.send_change("c", vec![create(&id, "Cube", [1.0, 2.0, 3.0])], &[]);
    // Up to date (last_seq = the daemon's seq): no replay after welcome, so the first batch
    // this editor gets is the answer to its request.
    let last = d.client("cli").request(&json!({"type":"ping","request_id":"p"})).unwrap()["seq"].as_u64().unwrap();
    let mut u = vibesync_daemon::client::Client::connect_with(d.addr, &d.token, "demo", "unity", 1.0, last).unwrap();
    u.send(&json!({"type":"resync","request_id":"r-42","since_seq":last})).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no answer to the resync request within 10 s");
        let m = u.recv().unwrap();
        if m["type"] != "batch_begin" {
            continue;
        }
        assert_eq!(m["request_id"], "r-42", "the first batch after welcome answers the request: {m}");
        assert_eq!(m["count"], 0, "{m}");
        let end = u.recv().unwrap();
        assert_eq!((end["type"].as_str(), end["request_id"].as_str()), (Some("batch_end"), Some("r-42")), "{end}");
        break;
    }
}

/// A session reads and parses its next frame while the request before it waits on the sync
/// actor or the registrar (docs/ARCHITECTURE.md, "session"). Requests are still handled one
/// at a time: written back to back in one burst — a register, changes (one big enough to be
/// parsed off the async workers, one refused at once), pings, a status, an unknown message
/// type — every reply comes in request order, and the framing error written after them is
/// answered last, then the connection closes.
#[test]
fn requests_written_back_to_back_are_answered_in_request_order_and_a_framing_error_last() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut c = vibesync_daemon::client::Client::connect(d.addr, &d.token, "order", "blender").unwrap();
    let id = new_uuid();
    let moves: Vec<Value> = (0..3000)
        .map(|i| json!({"op":"transform","uuid":id,"t":[i as f64, 0.5, 0.25],"r":[0,0,0,1],"s":[1,1,1]}))
        .collect();
    let requests = [
        json!({"type":"register","request_id":"1-register","items":[{"uuid":new_uuid(),"kind":"object","name":"R","editor_ref":"OB:R"}]}),
        json!({"type":"change","request_id":"2-create","base_seq":0,"changes":[create(&id, "Cube", [0.0, 0.0, 0.0])]}),
        json!({"type":"ping","request_id":"3-ping"}),
        json!({"type":"change","request_id":"4-big","base_seq":0,"changes":moves}),
        json!({"type":"change","request_id":"4a-move","base_seq":0,"changes":[{"op":"transform","uuid":id,"t":[1,1,1],"r":[0,0,0,1],"s":[1,1,1]}]}),
        json!({"type":"change","request_id":"4b-move","base_seq":0,"changes":[{"op":"visibility","uuid":id,"visible":false}]}),
        // Refused at once (an attachment on a change of two): still after the acks before it.
        json!({"type":"change","request_id":"4c-refused","base_seq":0,"changes":[
            {"op":"visibility","uuid":id,"visible":true},{"op":"visibility","uuid":id,"visible":false}]}),
        json!({"type":"change","request_id":"4d-move","base_seq":0,"changes":[{"op":"transform","uuid":id,"t":[2,2,2],"r":[0,0,0,1],"s":[1,1,1]}]}),
        json!({"type":"no_such_message","request_id":"5-unknown"}),
        json!({"type":"status","request_id":"6-status"}),
        json!({"type":"change","request_id":"7-move","base_seq":0,"changes":[{"op":"transform","uuid":id,"t":[9,9,9],"r":[0,0,0,1],"s":[1,1,1]}]}),
        json!({"type":"ping","request_id":"8-ping"}),
    ];
    let mut burst = Vec::new();
    for r in &requests {
        let attachment = if r["request_id"] == "4c-refused" { vec![1u8, 2, 3] } else { Vec::new() };
        burst.extend(vibesync_protocol::Frame::new(serde_json::to_vec(r).unwrap(), attachment).to_bytes());
    }
    assert!(burst.len() > 300 * 1024, "the big change must be parsed on the blocking pool");
    // json_len > total_len - 4: BAD_FRAME (docs/PROTOCOL.md §3), then close.
    burst.extend([0, 0, 0, 10, 0, 0, 0, 20, 1, 2, 3, 4, 5, 6]);
    c.send_raw(&burst).unwrap();

    c.set_read_timeout(Some(Duration::from_secs(30)));
    let mut order = Vec::new();
    let framing_error = loop {
        let m = c.recv().unwrap_or_else(|e| panic!("the connection ended after {order:?} without BAD_FRAME: {e}"));
        match (m["type"].as_str(), m["request_id"].as_str()) {
            (Some("error"), None) => break m,
            (Some("ack" | "pong" | "status" | "error"), Some(rid)) => {
                if rid.ends_with("-unknown") {
                    assert_eq!(m["code"], "UNKNOWN_TYPE", "{m}");
                } else if rid.ends_with("-refused") {
                    assert_eq!(m["code"], "BAD_MESSAGE", "{m}");
                } else if m["type"] == "ack" {
                    assert!(m["results"].as_array().unwrap().iter().all(|r| r["error_code"].is_null()), "{m}");
                }
                order.push(rid.to_string());
            }
            _ => {} // batches and events the daemon sends on its own
        }
    };
    let want: Vec<String> = requests.iter().map(|r| r["request_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, want, "one reply per request, in request order");
    assert_eq!(framing_error["code"], "BAD_FRAME", "{framing_error}");
    // Then the daemon closes the connection (frames it sends on its own may come first).
    let closed = (0..1000).any(|_| c.recv_frame().is_err());
    assert!(closed, "the connection stayed open after BAD_FRAME");
}

#[test]
fn a_big_change_request_is_answered_item_by_item_in_its_order_in_the_senders_units() {
    // 300 changes: parsed off the async workers (more than 256), as a drag's are.
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::sync::fast_config(dir.path(), 50, 5000);
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut b = Mini::connect(&d, "unity", 1.0, 0);
    // Centimeters: 100 of the sender's units are 1 m for the receiver.
    let mut a = Mini::connect(&d, "blender", 0.01, 0);
    let ids: Vec<String> = (0..300).map(|_| new_uuid()).collect();
    let bad = [7usize, 150, 299];
    let changes: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match i {
            7 => json!({"op":"create","uuid":"not-a-uuid","kind":"object"}),
            150 => json!({"op":"teleport","uuid":id}),
            299 => json!({"op":"create","uuid":id,"kind":"object","name":"X","parent":null,"t":[1,2],"r":[0,0,0,1],"s":[1,1,1]}),
            _ => create(id, &format!("Obj{i}"), [100.0 * i as f64, 0.0, 0.0]),
        })
        .collect();
    let ack = a.send_change("big", changes, &[]);
    let results = ack["results"].as_array().unwrap();
    assert_eq!(results.len(), 300, "one result per change: {ack}");
    for (i, r) in results.iter().enumerate() {
        if bad.contains(&i) {
            assert!(r["error_code"].is_string(), "change {i} is invalid: {r}");
            assert!(r["message"].as_str().unwrap().contains(&format!("changes[{i}]")), "{r}");
        } else {
            assert_eq!(r["status"], "queued", "change {i}: {r}");
            assert_eq!(r["uuid"], ids[i].as_str(), "results in request order");
        }
    }
    assert_eq!(results[7]["error_code"], "INVALID_UUID");
    // The receiver holds every valid object, in its own units (meters).
    let valid: Vec<(usize, &String)> = ids.iter().enumerate().filter(|(i, _)| !bad.contains(i)).collect();
    until(&mut [&mut a, &mut b], Duration::from_secs(30), |m| {
        valid.iter().all(|(_, id)| m[1].states.contains_key(*id))
    });
    for (i, id) in &valid {
        assert_eq!(b.states[*id]["t"][0].as_f64().unwrap(), *i as f64, "{id}");
    }
    assert!(!b.states.contains_key(&ids[150]) && !b.states.contains_key(&ids[299]));
}
