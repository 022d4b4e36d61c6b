//! Session ingest (docs/PROTOCOL.md §2, §6.6): over-budget coalescible changes are merged,
//! never refused, and the last pose arrives; a `resync` answer carries its `request_id`, and
//! nothing is sent after `welcome` when there is nothing to replay.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, Mini};

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
