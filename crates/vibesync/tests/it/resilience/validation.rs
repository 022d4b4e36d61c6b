//! Validation gaps found by an independent attack (docs/RESILIENCE.md §11). Each test
//! failed on the code before its fix; the mesh trailing-bytes case lives in `blobs.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use vibesync_protocol::Frame;

use super::editor::*;
use crate::common::*;

fn send(s: &mut TcpStream, json: &[u8]) {
    s.write_all(&Frame::new(json.to_vec(), Vec::new()).to_bytes()).unwrap();
}

fn recv(s: &mut TcpStream) -> Option<Value> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).ok()?;
    let total = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    let jl = u32::from_be_bytes(head[4..].try_into().unwrap()) as usize;
    let mut body = vec![0u8; total - 4];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body[..jl]).ok()
}

fn raw(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn hello_text(d: &Daemon, extra: &str) -> String {
    format!(
        r#"{{"type":"hello","protocol":1,"project_id":"demo","editor":"test","editor_version":"t","client_id":"v","token":"{}"{extra}}}"#,
        d.token
    )
}

#[test]
fn hello_refuses_duplicate_keys_and_unit_scales_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data"));
    // Two `token` fields: the last one (right) used to win silently.
    let bad = format!(
        r#"{{"token":"{}","type":"hello","protocol":1,"project_id":"demo","editor":"test","editor_version":"t","client_id":"v","token":"{}"}}"#,
        "0".repeat(64),
        d.token
    );
    for (what, text, needle) in [
        ("duplicate token", bad, "`token`: appears more than once"),
        ("denormal unit_scale", hello_text(&d, r#","unit_scale":5e-324"#), "unit_scale"),
        ("huge unit_scale", hello_text(&d, r#","unit_scale":1e7"#), "unit_scale"),
    ] {
        let mut s = raw(&d);
        send(&mut s, text.as_bytes());
        let r = recv(&mut s).unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(r["code"], "BAD_MESSAGE", "{what}: {r}");
        assert!(r["message"].as_str().unwrap().contains(needle), "{what}: {r}");
    }
    // In range: accepted.
    let mut s = raw(&d);
    send(&mut s, hello_text(&d, r#","unit_scale":0.001"#).as_bytes());
    assert_eq!(recv(&mut s).unwrap()["type"], "welcome");
    drop(s);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn request_ids_are_echoed_whole_or_not_at_all_and_resync_from_a_non_editor_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data"));
    let mut s = raw(&d);
    send(&mut s, hello_text(&d, "").as_bytes());
    assert_eq!(recv(&mut s).unwrap()["type"], "welcome");
    // 100 bytes (legal, ≤ 128) on a bad message: echoed whole (it was cut at 64).
    let rid = "r".repeat(100);
    send(&mut s, json!({"type":"register","request_id":rid,"items":"nope"}).to_string().as_bytes());
    let r = recv(&mut s).unwrap();
    assert_eq!((r["code"].as_str(), r["request_id"].as_str()), (Some("BAD_MESSAGE"), Some(rid.as_str())), "{r}");
    // 200 bytes: refused whole, no truncated id that matches nothing.
    let long = "q".repeat(200);
    send(&mut s, json!({"type":"ping","request_id":long}).to_string().as_bytes());
    let r = recv(&mut s).unwrap();
    assert_eq!(r["code"], "BAD_MESSAGE", "{r}");
    assert!(r["message"].as_str().unwrap().contains("request_id"), "{r}");
    assert!(r.get("request_id").is_none_or(Value::is_null), "no partial request_id: {r}");
    // `resync` from a session that holds no scene: answered (it used to get nothing).
    send(&mut s, br#"{"type":"resync","request_id":"rs","since_seq":0}"#);
    let r = recv(&mut s).expect("a resync from a test session must be answered");
    assert_eq!((r["code"].as_str(), r["request_id"].as_str()), (Some("BAD_MESSAGE"), Some("rs")), "{r}");
    send(&mut s, br#"{"type":"ping","request_id":"after"}"#);
    assert_eq!(recv(&mut s).unwrap()["type"], "pong", "the connection stays usable");
    drop(s);
    assert_eq!(d.stop(), Some(0));
}

/// A reparent cycle built across batches (A under B, committed; then B under A) is refused
/// per item; and a `base_seq` beyond the daemon's seq is answered with the replay the
/// refusal promises (an empty `resync` batch when there is nothing to replay).
#[test]
fn reparent_cycles_across_batches_and_a_base_seq_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data"));
    let mut e = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
    // Nothing committed yet: the divergence is answered by an empty resync batch.
    let u0 = new_uuid();
    let msg = json!({"type":"change","request_id":"future","base_seq":1_000_000_000u64,"changes":[create_op(&u0, "Z", [0.0, 0.0, 0.0])]});
    e.request(&msg, &[]).unwrap();
    let got = e
        .pump_until(Duration::from_secs(10), |e| e.batches.iter().any(|(_, path, n)| path == "resync" && *n == 0))
        .unwrap();
    assert!(got, "the promised replay (an empty resync batch) was never sent: {:?}", e.batches);

    let (a, b) = (new_uuid(), new_uuid());
    e.change("c", vec![create_op(&a, "A", [0.0, 0.0, 0.0]), create_op(&b, "B", [1.0, 0.0, 0.0])]).unwrap();
    assert!(e
        .pump_until(Duration::from_secs(20), |e| e
            .results
            .iter()
            .any(|r| r["uuids"].as_array().unwrap().contains(&json!(a))))
        .unwrap());
    let n = e.results.len();
    let ack = e.change("p1", vec![json!({"op":"reparent","uuid":a,"parent":b})]).unwrap();
    assert_eq!(statuses(&ack), ["queued"], "{ack}");
    assert!(e.pump_until(Duration::from_secs(20), |e| e.results.len() > n).unwrap(), "A under B committed");
    assert_eq!(e.results.last().unwrap()["outcome"], "committed", "{:?}", e.results.last());
    let ack = e.change("p2", vec![json!({"op":"reparent","uuid":b,"parent":a})]).unwrap();
    assert_eq!(ack["results"][0]["error_code"], "INVALID_FIELD", "B under A makes a cycle: {ack}");
    assert!(ack["results"][0]["message"].as_str().unwrap().contains("ancestor"), "{ack}");
    drop(e);
    assert_eq!(d.stop(), Some(0));
}

/// Binding beyond loopback is loud, and `status` says the daemon is reachable.
#[test]
fn a_non_loopback_bind_warns_and_status_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let st = d.client("test").request(&json!({"type":"status"})).unwrap();
    assert_eq!(st["reachable_from_network"], false, "{st}");
    assert_eq!(d.stop(), Some(0));
    let mut d = Daemon::start_with(&data, &[], "0.0.0.0:0");
    let st = d.client("test").request(&json!({"type":"status"})).unwrap();
    assert_eq!(st["reachable_from_network"], true, "{st}");
    assert!(plain(&d.stderr_log()).contains("LISTENING BEYOND LOOPBACK"), "loud warning expected");
    assert_eq!(d.stop(), Some(0));
}
