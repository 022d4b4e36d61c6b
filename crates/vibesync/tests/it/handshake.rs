//! Handshake and framing errors over a real socket: each gets its error code, the daemon
//! stays up, and other sessions are unaffected.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use vibesync_protocol::Frame;

use crate::common::*;

fn raw(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send(s: &mut TcpStream, v: &Value) {
    s.write_all(&Frame::new(serde_json::to_vec(v).unwrap(), Vec::new()).to_bytes()).unwrap();
}

fn read_msg(s: &mut TcpStream) -> Option<Value> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).ok()?;
    let total = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    let jl = u32::from_be_bytes(head[4..].try_into().unwrap()) as usize;
    let mut body = vec![0u8; total - 4];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body[..jl]).ok()
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn hello(d: &Daemon) -> Value {
    json!({"type":"hello","protocol":1,"project_id":"demo","editor":"test","editor_version":"t","client_id":"c","token": d.token})
}

#[test]
fn handshake_errors_have_codes_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fast.toml");
    std::fs::write(&cfg, "[server]\nhandshake_timeout_secs = 1\n").unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut healthy = d.client("test");

    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut h = hello(&d);
                h["token"] = json!("0".repeat(64));
                h
            },
            "AUTH_FAILED",
        ),
        (
            {
                let mut h = hello(&d);
                h.as_object_mut().unwrap().remove("token");
                h
            },
            "AUTH_FAILED",
        ),
        (
            {
                let mut h = hello(&d);
                h["protocol"] = json!(2);
                h
            },
            "PROTOCOL_MISMATCH",
        ),
        (
            {
                let mut h = hello(&d);
                h["project_id"] = json!("../etc");
                h
            },
            "BAD_PROJECT_ID",
        ),
        (
            {
                let mut h = hello(&d);
                h["project_id"] = json!("");
                h
            },
            "BAD_PROJECT_ID",
        ),
        (json!({"type":"ping"}), "NOT_AUTHENTICATED"),
        // Unknown types too: whatever it is, it is not a `hello` (PROTOCOL §3).
        (json!({"type":"nonsense","request_id":"n1"}), "NOT_AUTHENTICATED"),
        (
            {
                let mut h = hello(&d);
                h["client_id"] = json!("c".repeat(129));
                h
            },
            "BAD_MESSAGE",
        ),
        (
            {
                let mut h = hello(&d);
                h["editor_version"] = json!("v".repeat(257));
                h
            },
            "BAD_MESSAGE",
        ),
        (
            {
                let mut h = hello(&d);
                h["protocol"] = json!("one");
                h
            },
            "BAD_MESSAGE",
        ),
        (
            {
                let mut h = hello(&d);
                h["editor"] = json!("photoshop");
                h
            },
            "BAD_MESSAGE",
        ),
    ];
    for (msg, code) in cases {
        let mut s = raw(&d);
        send(&mut s, &msg);
        let reply = read_msg(&mut s).unwrap_or_else(|| panic!("no reply for {msg}"));
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], code, "for {msg}: {reply}");
        assert!(reply["message"].as_str().unwrap().len() > 10);
        // An over-long field is named alone (§3: "field named").
        for field in ["client_id", "editor_version"] {
            if msg[field].as_str().is_some_and(|v| v.len() > 128) {
                let m = reply["message"].as_str().unwrap();
                assert!(m.starts_with(&format!("field `{field}`")), "{m}");
            }
        }
        assert!(closed(&mut s), "connection must close after {code}");
    }

    // Silence: HANDSHAKE_TIMEOUT after the configured 1 s.
    let mut s = raw(&d);
    let reply = read_msg(&mut s).expect("timeout error");
    assert_eq!(reply["code"], "HANDSHAKE_TIMEOUT");
    assert!(closed(&mut s));

    // A browser: plain close, no frame.
    let mut s = raw(&d);
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n").unwrap();
    assert!(closed(&mut s));

    // The healthy session never noticed.
    assert_eq!(healthy.request(&json!({"type":"ping","request_id":"p"})).unwrap()["type"], "pong");
}

#[test]
fn bad_frames_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut other = d.client("test");

    // Bad JSON, wrong shape, unknown type: answered, connection stays usable.
    let mut s = raw(&d);
    send(&mut s, &hello(&d));
    assert_eq!(read_msg(&mut s).unwrap()["type"], "welcome");
    for (bytes, code, needle) in [
        (b"{\"type\":".to_vec(), "BAD_MESSAGE", "invalid JSON"),
        (b"[1,2]".to_vec(), "BAD_MESSAGE", "object"),
        (b"{\"type\":\"p\xff\"}".to_vec(), "BAD_MESSAGE", "JSON"),
        (b"".to_vec(), "BAD_MESSAGE", "empty"),
        (
            br#"{"type":"register","request_id":"r1","items":[{"uuid":5,"kind":"object"}]}"#.to_vec(),
            "BAD_MESSAGE",
            "items[0].uuid",
        ),
        (br#"{"type":"exec","code":"import os"}"#.to_vec(), "UNKNOWN_TYPE", "exec"),
        (br#"{"type":"ping","request_id":17}"#.to_vec(), "BAD_MESSAGE", "request_id"),
    ] {
        s.write_all(&Frame::new(bytes, Vec::new()).to_bytes()).unwrap();
        let r = read_msg(&mut s).unwrap();
        assert_eq!(r["code"], code, "{r}");
        assert!(r["message"].as_str().unwrap().contains(needle), "{r}");
        send(&mut s, &json!({"type":"ping","request_id":"after"}));
        let pong = read_msg(&mut s).unwrap();
        assert_eq!(pong["type"], "pong", "connection must stay usable: {pong}");
        assert_eq!(pong["request_id"], "after");
    }

    // Oversized length: FRAME_TOO_LARGE, then close, before any payload is sent.
    let mut s = raw(&d);
    send(&mut s, &hello(&d));
    read_msg(&mut s).unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 2]).unwrap();
    assert_eq!(read_msg(&mut s).unwrap()["code"], "FRAME_TOO_LARGE");
    assert!(closed(&mut s));

    // json_len > total_len - 4: BAD_FRAME, then close.
    let mut s = raw(&d);
    send(&mut s, &hello(&d));
    read_msg(&mut s).unwrap();
    s.write_all(&[0, 0, 0, 10, 0, 0, 0, 20, 1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(read_msg(&mut s).unwrap()["code"], "BAD_FRAME");
    assert!(closed(&mut s));

    // Random garbage and a truncated frame followed by a disconnect: no reply needed,
    // but the daemon and the other session live on.
    let mut s = raw(&d);
    let mut noise = vec![0u8; 4096];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    let _ = s.write_all(&noise);
    drop(s);
    let mut s = raw(&d);
    send(&mut s, &hello(&d));
    read_msg(&mut s).unwrap();
    s.write_all(&[0, 0, 1, 0, 0, 0, 0, 50, b'{']).unwrap();
    drop(s);

    let pong = other.request(&json!({"type":"ping","request_id":"still"})).unwrap();
    assert_eq!(pong["type"], "pong");
    let st = other.request(&json!({"type":"status"})).unwrap();
    assert_eq!(st["registry"]["live"], 0, "nothing written by bad input: {st}");
}

/// docs/PROTOCOL.md §4: an error about a frame carries the frame's `request_id` when it had
/// one — also for messages that need none: a second `hello`, and the Blender-only addon
/// registry messages sent by another kind of session (found by a client written from the docs).
#[test]
fn errors_echo_the_frames_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut s = raw(&d);
    let mut h = hello(&d);
    h["editor"] = json!("unity");
    send(&mut s, &h);
    assert_eq!(read_msg(&mut s).unwrap()["type"], "welcome");
    let mut again = hello(&d);
    again["request_id"] = json!("h2");
    let frames = [
        again,
        json!({"type":"registry_updated","request_id":"ru","available_addons":[]}),
        json!({"type":"addon_registered","request_id":"ar","addon_id":"x","manifest":{}}),
        json!({"type":"addon_unregistered","request_id":"au","addon_id":"x"}),
    ];
    for f in frames {
        send(&mut s, &f);
        let r = loop {
            let m = read_msg(&mut s).expect("an answer");
            if m["type"] == "error" {
                break m;
            }
        };
        assert_eq!(r["code"], "BAD_MESSAGE", "{f} → {r}");
        assert_eq!(r["request_id"], f["request_id"], "{f} → {r}");
    }
    send(&mut s, &json!({"type":"ping","request_id":"after"}));
    let pong = loop {
        let m = read_msg(&mut s).unwrap();
        if m["type"] == "pong" {
            break m;
        }
    };
    assert_eq!(pong["request_id"], "after");
}

/// `client_id` and `editor_version` are optional (PROTOCOL §3): a client that sends neither is
/// welcomed, and stands for itself by its session id, so two such clients are never taken
/// for one (what the daemon keeps per client — staleness, kept work — is keyed by it).
#[test]
fn a_hello_without_client_id_stands_for_its_own_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut sessions = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut s = raw(&d);
        let mut h = hello(&d);
        h.as_object_mut().unwrap().remove("client_id");
        h.as_object_mut().unwrap().remove("editor_version");
        send(&mut s, &h);
        let w = read_msg(&mut s).unwrap();
        assert_eq!(w["type"], "welcome", "{w}");
        sessions.push(w["session_id"].as_str().unwrap().to_string());
        sockets.push(s);
    }
    send(&mut sockets[0], &json!({"type":"status","request_id":"s"}));
    let st = loop {
        let m = read_msg(&mut sockets[0]).unwrap();
        if m["type"] == "status" {
            break m;
        }
    };
    for sid in &sessions {
        let row = st["sessions"].as_array().unwrap().iter().find(|r| r["session_id"] == sid.as_str()).expect("listed");
        assert_eq!(row["client_id"], sid.as_str(), "{row}");
    }
}
