//! Hostile input over the wire (beyond `handshake.rs`): random bytes, huge and tiny lengths,
//! truncated frames, invalid UTF-8, wrong JSON types, deep nesting, NaN/Infinity tokens,
//! 10 MB strings, a million-item register, wrong tokens and project ids, attachments where
//! none may be, meshes that do not decode. Every case gets a clear answer (or, for a broken
//! stream, a close), while a healthy client pings throughout, the daemon stays up, and
//! nothing is written (WAL seq and bytes, registry counts and the blob store unchanged).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use vibesync_protocol::mesh::Mesh;
use vibesync_protocol::Frame;

use super::editor::*;
use crate::common::*;

fn raw(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// A hello claiming to be up to date, so no welcome resync interleaves with the replies.
fn hello(d: &Daemon) -> Value {
    json!({"type":"hello","protocol":1,"project_id":"demo","editor":"test","editor_version":"t","client_id":"hostile","token": d.token,"last_seq":1_000_000_000u64})
}

/// One frame from the daemon: (json, attachment length, total frame bytes).
fn read_frame(s: &mut TcpStream) -> Option<(Value, usize)> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).ok()?;
    let total = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    let jl = u32::from_be_bytes(head[4..].try_into().unwrap()) as usize;
    let mut body = vec![0u8; total - 4];
    s.read_exact(&mut body).ok()?;
    Some((serde_json::from_slice(&body[..jl]).expect("daemon sends valid JSON"), total + 4))
}

fn read_msg(s: &mut TcpStream) -> Option<Value> {
    read_frame(s).map(|(v, _)| v)
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn authed(d: &Daemon) -> TcpStream {
    let mut s = raw(d);
    s.write_all(&Frame::new(serde_json::to_vec(&hello(d)).unwrap(), Vec::new()).to_bytes()).unwrap();
    let w = read_msg(&mut s).unwrap();
    assert_eq!(w["type"], "welcome", "{w}");
    s
}

fn send_raw_json(s: &mut TcpStream, json: &[u8], attachment: &[u8]) {
    s.write_all(&Frame::new(json.to_vec(), attachment.to_vec()).to_bytes()).unwrap();
}

/// The reply to the last request, then proof the connection still works (a ping).
fn reply_and_still_usable(s: &mut TcpStream, what: &str) -> Value {
    let (r, size) = read_frame(s).unwrap_or_else(|| panic!("{what}: no reply"));
    assert!(size < 16 * 1024, "{what}: the reply must not echo hostile input ({size} bytes)");
    send_raw_json(s, br#"{"type":"ping","request_id":"still"}"#, &[]);
    let pong = read_msg(s).unwrap_or_else(|| panic!("{what}: connection closed"));
    assert_eq!(pong["type"], "pong", "{what}: connection must stay usable: {pong}");
    r
}

fn assert_error(r: &Value, code: &str, needle: &str, what: &str) {
    assert_eq!(r["type"], "error", "{what}: {r}");
    assert_eq!(r["code"], code, "{what}: {r}");
    let m = r["message"].as_str().unwrap_or("");
    assert!(m.contains(needle), "{what}: the message names `{needle}`: {m}");
    assert!(m.len() < 2048, "{what}: message kept short ({} bytes)", m.len());
}

/// Per-item error codes of an ack.
fn item_codes(r: &Value, what: &str) -> Vec<String> {
    assert_eq!(r["type"], "ack", "{what}: {r}");
    r["results"].as_array().unwrap().iter().map(|x| x["error_code"].as_str().unwrap_or("").to_string()).collect()
}

/// Pings every 10 ms until stopped; returns the round-trip times. Panics on any failure.
fn pinger(d: &Daemon, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    let (addr, token) = (d.addr, d.token.clone());
    std::thread::spawn(move || {
        let mut c = Client::connect(addr, &token, "other", "test").unwrap();
        let mut lat = vec![];
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let t = Instant::now();
            let p = c.request(&json!({"type":"ping","request_id":format!("h{i}")})).expect("healthy ping");
            lat.push(t.elapsed());
            assert_eq!(p["type"], "pong", "{p}");
            assert_eq!(p["request_id"], format!("h{i}"), "replies in order, nothing stray");
            std::thread::sleep(Duration::from_millis(10));
        }
        lat
    })
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn snapshot(d: &Daemon) -> Value {
    let mut c = d.client_for("test", "other");
    let st = c.request(&json!({"type":"status","request_id":"st"})).unwrap();
    json!({"seq": st["seq"], "wal_bytes": st["wal"]["bytes"], "registry": st["registry"]})
}

fn settled_snapshot(d: &Daemon) -> Value {
    let mut last = snapshot(d);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = snapshot(d);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the daemon's log never settled: {last}");
}

#[test]
fn hostile_input_gets_clear_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    // One legitimate object, so `mesh`/`transform` cases reach their real checks.
    let known = new_uuid();
    {
        let mut e = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
        e.change("setup", vec![create_op(&known, "Known", [0.0, 0.0, 0.0])]).unwrap();
        assert!(e.pump_until(Duration::from_secs(10), |e| !e.results.is_empty()).unwrap());
        assert_eq!(e.results[0]["outcome"], "committed");
    }
    // FINAL and the audit follow a commit off the acknowledgement path: take the baseline
    // once the log has settled, so only what hostile input writes can differ.
    let before = settled_snapshot(&d);
    let stop = Arc::new(AtomicBool::new(false));
    let ping = pinger(&d, stop.clone());
    let started = Instant::now();

    // --- well-framed but bad messages: answered, connection stays usable ----------------------
    let mut s = authed(&d);
    let u = new_uuid();
    let nested = format!("{{\"type\":\"ping\",\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (format!(r#"{{"type":"change","request_id":"n","base_seq":0,"changes":[{{"op":"transform","uuid":"{u}","t":[NaN,1,2],"r":[0,0,0,1],"s":[1,1,1]}}]}}"#).into_bytes(), "BAD_MESSAGE", "invalid JSON"),
        (format!(r#"{{"type":"change","request_id":"i","base_seq":0,"changes":[{{"op":"transform","uuid":"{u}","t":[Infinity,1,2],"r":[0,0,0,1],"s":[1,1,1]}}]}}"#).into_bytes(), "BAD_MESSAGE", "invalid JSON"),
        (format!(r#"{{"type":"change","request_id":"i","base_seq":0,"changes":[{{"op":"transform","uuid":"{u}","t":[-Infinity,1,2],"r":[0,0,0,1],"s":[1,1,1]}}]}}"#).into_bytes(), "BAD_MESSAGE", "invalid JSON"),
        (b"{\"type\":\"ping\",\"request_id\":\"\xff\xfe\"}".to_vec(), "BAD_MESSAGE", "JSON"),
        (b"{\"type\":\"ping\",\"request_id\":\"\xc0\xaf\"}".to_vec(), "BAD_MESSAGE", "JSON"),
        (br#"{"type":"ping","request_id":"\ud800"}"#.to_vec(), "BAD_MESSAGE", "JSON"),
        (b"\xef\xbb\xbf{\"type\":\"ping\"}".to_vec(), "BAD_MESSAGE", "JSON"),
        (br#"{"type":5}"#.to_vec(), "BAD_MESSAGE", "type"),
        (br#"{"type":null}"#.to_vec(), "BAD_MESSAGE", "type"),
        (br#"{"request_id":"x"}"#.to_vec(), "BAD_MESSAGE", "type"),
        (br#""ping""#.to_vec(), "BAD_MESSAGE", "object"),
        (br#"null"#.to_vec(), "BAD_MESSAGE", "object"),
        (br#"{"type":"register","request_id":"w","items":"all"}"#.to_vec(), "BAD_MESSAGE", "items"),
        (br#"{"type":"register","request_id":"w","items":[{"uuid":"a","kind":7}]}"#.to_vec(), "BAD_MESSAGE", "items[0].kind"),
        (br#"{"type":"register","request_id":"w"}"#.to_vec(), "BAD_MESSAGE", "items"),
        (br#"{"type":"tombstone","request_id":"t","uuids":[1]}"#.to_vec(), "BAD_MESSAGE", "uuids[0]"),
        (br#"{"type":"change","request_id":"c","base_seq":-1,"changes":[]}"#.to_vec(), "BAD_MESSAGE", "base_seq"),
        (br#"{"type":"change","request_id":"c","base_seq":1e400,"changes":[]}"#.to_vec(), "BAD_MESSAGE", "JSON"),
        (br#"{"type":"change","request_id":"c","changes":{"op":"delete"}}"#.to_vec(), "BAD_MESSAGE", "changes"),
        (br#"{"type":"applied","batch_id":17}"#.to_vec(), "BAD_MESSAGE", "batch_id"),
        (br#"{"type":"resync","since_seq":"zero"}"#.to_vec(), "BAD_MESSAGE", "since_seq"),
        (br#"{"type":"user_activity","active":"yes"}"#.to_vec(), "BAD_MESSAGE", "active"),
        (br#"{"type":"hello","protocol":1,"project_id":"demo","editor":"test","token":"x"}"#.to_vec(), "BAD_MESSAGE", "hello"),
        (nested.into_bytes(), "BAD_MESSAGE", "JSON"),
        (br#"{"type":"exec","cmd":"rm -rf /"}"#.to_vec(), "UNKNOWN_TYPE", "exec"),
        (br#"{"type":"eval","code":"1+1"}"#.to_vec(), "UNKNOWN_TYPE", "eval"),
        (br#"{"type":"shell"}"#.to_vec(), "UNKNOWN_TYPE", "shell"),
        (br#"{"type":"__proto__"}"#.to_vec(), "UNKNOWN_TYPE", "__proto__"),
        (br#"{"type":""}"#.to_vec(), "UNKNOWN_TYPE", "unknown"),
        (br#"{"type":"PING"}"#.to_vec(), "UNKNOWN_TYPE", "PING"),
        (format!(r#"{{"type":"{}"}}"#, "z".repeat(10 << 20)).into_bytes(), "UNKNOWN_TYPE", "bytes"),
        (format!(r#"{{"type":"ping","request_id":"{}"}}"#, "r".repeat(10 << 20)).into_bytes(), "BAD_MESSAGE", "request_id"),
    ];
    for (bytes, code, needle) in &cases {
        let what = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        send_raw_json(&mut s, bytes, &[]);
        let r = reply_and_still_usable(&mut s, &what);
        assert_error(&r, code, needle, &what);
    }

    // --- 10 MB strings inside items: per-item TOO_LARGE, the valid neighbour still processed -
    let big = "N".repeat(10 << 20);
    let (u1, u2) = (new_uuid(), new_uuid());
    let msg = json!({"type":"register","request_id":"big","items":[
        {"uuid":u1,"kind":"object","name":big,"editor_ref":"OB:x"},
        {"uuid":u2,"kind":"object","name":"x","editor_ref":big}]});
    send_raw_json(&mut s, &serde_json::to_vec(&msg).unwrap(), &[]);
    let r = reply_and_still_usable(&mut s, "10 MB name/editor_ref");
    assert_eq!(item_codes(&r, "10 MB register"), ["TOO_LARGE", "TOO_LARGE"], "{r}");
    assert_eq!(r["seq"], 0, "nothing written: {r}");
    let msg = json!({"type":"change","request_id":"bigc","base_seq":0,"changes":[
        {"op":"create","uuid":u1,"kind":"object","name":big,"parent":null,"t":[0,0,0],"r":[0,0,0,1],"s":[1,1,1],"visible":true},
        {"op":"rename","uuid":known,"name":big}]});
    send_raw_json(&mut s, &serde_json::to_vec(&msg).unwrap(), &[]);
    let r = reply_and_still_usable(&mut s, "10 MB name in change");
    assert_eq!(item_codes(&r, "10 MB change"), ["TOO_LARGE", "TOO_LARGE"], "{r}");
    drop(big);

    // --- a million items: refused as a whole, naming the field ---------------------------------
    let mut million = Vec::with_capacity(30 << 20);
    million.extend_from_slice(br#"{"type":"register","request_id":"m","items":["#);
    for i in 0..1_000_000 {
        if i > 0 {
            million.push(b',');
        }
        million.extend_from_slice(br#"{"uuid":"a","kind":"object"}"#);
    }
    million.extend_from_slice(b"]}");
    let t = Instant::now();
    send_raw_json(&mut s, &million, &[]);
    let r = reply_and_still_usable(&mut s, "1,000,000 items");
    let million_ms = t.elapsed().as_millis();
    assert_error(&r, "BAD_MESSAGE", "items", "1,000,000 items");
    assert!(r["message"].as_str().unwrap().contains("10000"), "names the limit: {r}");
    drop(million);
    let mut many = Vec::new();
    many.extend_from_slice(br#"{"type":"tombstone","request_id":"m","uuids":["#);
    for i in 0..1_000_000 {
        many.extend_from_slice(if i > 0 { b",\"a\"" as &[u8] } else { b"\"a\"" });
    }
    many.extend_from_slice(b"]}");
    send_raw_json(&mut s, &many, &[]);
    assert_error(&reply_and_still_usable(&mut s, "1M tombstones"), "BAD_MESSAGE", "uuids", "1M tombstones");
    many.clear();
    many.extend_from_slice(br#"{"type":"change","request_id":"m","base_seq":0,"changes":["#);
    for i in 0..1_000_000 {
        many.extend_from_slice(if i > 0 { b",{}" as &[u8] } else { b"{}" });
    }
    many.extend_from_slice(b"]}");
    send_raw_json(&mut s, &many, &[]);
    assert_error(&reply_and_still_usable(&mut s, "1M changes"), "BAD_MESSAGE", "changes", "1M changes");
    drop(many);

    // --- attachments where none may be, and meshes that do not decode ---------------------------
    let two = json!({"type":"change","request_id":"two","base_seq":0,"changes":[{"op":"delete","uuid":known},{"op":"delete","uuid":known}]});
    send_raw_json(&mut s, &serde_json::to_vec(&two).unwrap(), &[1, 2, 3]);
    assert_error(&reply_and_still_usable(&mut s, "attachment on 2 changes"), "BAD_MESSAGE", "attachment", "multi");
    send_raw_json(&mut s, br#"{"type":"ping","request_id":"p"}"#, b"unexpected");
    let r = reply_and_still_usable(&mut s, "attachment on ping");
    assert!(r["type"] == "pong" || r["code"] == "BAD_MESSAGE", "a ping with an attachment: {r}");
    let good_mesh = Mesh { positions: vec![[0.0; 3]; 3], normals: None, uv0: None, indices: vec![0, 1, 2] }.encode();
    let mut bombs: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"not a mesh at all".to_vec()),
        ("bad magic", {
            let mut m = good_mesh.clone();
            m[0] = b'X';
            m
        }),
        ("truncated", good_mesh[..good_mesh.len() - 3].to_vec()),
        ("index out of range", {
            let mut m = good_mesh.clone();
            let n = m.len();
            m[n - 4..].copy_from_slice(&99u32.to_le_bytes());
            m
        }),
    ];
    let mut huge = b"VSM1".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes()); // 4 billion vertices claimed …
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&3u32.to_le_bytes());
    huge.extend_from_slice(&[0u8; 64]); // … 64 bytes sent: must not allocate for the claim
    bombs.push(("huge counts", huge));
    for (what, att) in &bombs {
        let h = Mesh::hash_bytes(att);
        let fresh = new_uuid();
        for (rid, ch) in [
            (
                "mc",
                json!({"op":"create","uuid":fresh,"kind":"object","name":"M","parent":null,"t":[0,0,0],"r":[0,0,0,1],"s":[1,1,1],"visible":true,"mesh_hash":h}),
            ),
            ("mm", json!({"op":"mesh","uuid":known,"mesh_hash":h})),
        ] {
            // base_seq up to date (the daemon's last seq, from a pong): the mesh check, not the
            // stale rule, must refuse it. (One beyond it would be a sequence divergence,
            // refused `BLOCKED` before anything is read, §6.7.)
            send_raw_json(&mut s, br#"{"type":"ping","request_id":"seq"}"#, &[]);
            let base = read_msg(&mut s).expect("pong")["seq"].as_u64().expect("pong.seq");
            let msg = json!({"type":"change","request_id":rid,"base_seq":base,"changes":[ch]});
            send_raw_json(&mut s, &serde_json::to_vec(&msg).unwrap(), att);
            let r = reply_and_still_usable(&mut s, what);
            assert_eq!(item_codes(&r, what), ["INVALID_FIELD"], "{what}: {r}");
            assert!(r["results"][0]["message"].as_str().unwrap().contains("mesh"), "{what}: {r}");
        }
    }
    drop(s);

    // --- frame-level damage: error + close, or just a close; the daemon lives on ---------------
    let frame_cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("length u32::MAX", vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], Some("FRAME_TOO_LARGE")),
        (
            "length 64 MiB + 1",
            ((64u32 << 20) + 1).to_be_bytes().iter().chain(&[0, 0, 0, 0]).copied().collect(),
            Some("FRAME_TOO_LARGE"),
        ),
        ("total_len 0", vec![0, 0, 0, 0], Some("BAD_FRAME")),
        ("total_len 3", vec![0, 0, 0, 3, 0, 0, 0], Some("BAD_FRAME")),
        ("json_len > total", vec![0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0], Some("BAD_FRAME")),
        ("json_len u32::MAX", vec![0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff], Some("BAD_FRAME")),
    ];
    for (what, bytes, code) in &frame_cases {
        for authenticated in [true, false] {
            let mut s = if authenticated { authed(&d) } else { raw(&d) };
            s.write_all(bytes).unwrap();
            let r = read_msg(&mut s).unwrap_or_else(|| panic!("{what}: no error frame"));
            assert_eq!(r["code"].as_str(), *code, "{what}: {r}");
            assert!(closed(&mut s), "{what}: connection closed after {code:?}");
        }
    }
    // Truncated frames: a header promising more than ever comes, then a disconnect — or a
    // 64 MiB promise with 1 KiB delivered. No reply is owed; the daemon must not wait on it
    // for anyone else.
    for promised in [100u32, 64 << 20] {
        let mut s = authed(&d);
        let mut f = promised.to_be_bytes().to_vec();
        f.extend_from_slice(&10u32.to_be_bytes());
        f.extend_from_slice(&vec![b'{'; 1024.min(promised as usize - 4 - 4 - 1)]); // one byte short
        s.write_all(&f).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert!(closed(&mut s), "truncated frame of {promised}: closed at EOF");
    }
    // Random bytes, before and after the handshake (seeded: failures are reproducible).
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0006);
    for i in 0..40 {
        let mut s = if i % 2 == 0 { authed(&d) } else { raw(&d) };
        let n = rng.gen_range(1..4096);
        let noise: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        let _ = s.write_all(&noise);
        let _ = s.shutdown(Shutdown::Write);
        // Whatever the daemon answers must be well-formed error frames, then a close.
        while let Some(r) = read_msg(&mut s) {
            assert_eq!(r["type"], "error", "random bytes #{i}: {r}");
        }
    }

    // --- handshake: wrong token, wrong project -------------------------------------------------
    let upper = d.token.to_uppercase();
    let longer = format!("{}0", d.token);
    let huge_token = "f".repeat(10 << 20);
    for (field, value, code) in [
        ("token", json!("0".repeat(64)), "AUTH_FAILED"),
        ("token", json!(upper), "AUTH_FAILED"),
        ("token", json!(longer), "AUTH_FAILED"),
        ("token", json!(&d.token[..63]), "AUTH_FAILED"),
        ("token", json!(""), "AUTH_FAILED"),
        ("token", json!(42), "BAD_MESSAGE"),
        ("project_id", json!("other/../../etc"), "BAD_PROJECT_ID"),
        ("project_id", json!(".git"), "BAD_PROJECT_ID"),
        ("project_id", json!("p".repeat(129)), "BAD_PROJECT_ID"),
        ("project_id", json!("démo"), "BAD_PROJECT_ID"),
        ("project_id", json!(["demo"]), "BAD_MESSAGE"),
    ] {
        let mut h = hello(&d);
        h[field] = value;
        let mut s = raw(&d);
        send_raw_json(&mut s, &serde_json::to_vec(&h).unwrap(), &[]);
        let (r, size) = read_frame(&mut s).unwrap_or_else(|| panic!("no reply for bad {field}"));
        assert!(size < 16 * 1024, "bad {field}: reply does not echo the input");
        assert_eq!(r["code"], code, "bad {field}: {r}");
        assert!(closed(&mut s), "bad {field}: closed");
    }

    // A 10 MB hello is over the pre-auth frame limit (docs/PROTOCOL.md §3): refused from its
    // header, before the daemon buffers it. The daemon closes while the client still writes,
    // so the error frame may be lost to the reset; it must never be answered otherwise.
    let mut h = hello(&d);
    h["token"] = json!(huge_token);
    let mut s = raw(&d);
    let _ = s.write_all(&Frame::new(serde_json::to_vec(&h).unwrap(), Vec::new()).to_bytes());
    if let Some(r) = read_msg(&mut s) {
        assert_eq!(r["code"], "FRAME_TOO_LARGE", "10 MB hello: {r}");
    }
    assert!(closed(&mut s), "10 MB hello: closed");

    // --- nothing changed, nobody noticed ---------------------------------------------------------
    stop.store(true, Ordering::SeqCst);
    let mut lat = ping.join().expect("the healthy client never saw an error");
    lat.sort();
    let (p50, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.99), *lat.last().unwrap());
    eprintln!(
        "hostile input: {:.1} s, healthy pings: {} (p50 {p50:?}, p99 {p99:?}, max {max:?}); 1M-item register answered in {million_ms} ms",
        started.elapsed().as_secs_f64(),
        lat.len()
    );
    assert!(lat.len() >= 10, "the healthy client kept pinging");
    assert!(max < Duration::from_secs(10), "sanity bound on the healthy client's worst ping: {max:?}");
    assert_eq!(snapshot(&d), before, "hostile input wrote nothing");
    assert!(
        !data.join("blobs").exists() || std::fs::read_dir(data.join("blobs")).unwrap().count() == 0,
        "no mesh stored"
    );
    assert_eq!(ping_then_stop(&mut d), Some(0), "the daemon survived and stops cleanly");
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
}

/// Daemon bug (found by the suite above): a session parses its frames (`parse_inbound`:
/// serde_json into a `Value`, then typed) on the tokio worker that runs it. A single large
/// but legal frame — here a 28 MB `register` with 1,000,000 items, refused only after the
/// parse — occupies a worker for seconds in a debug build, and an unrelated session's ping
/// waits behind it (measured: max 2.5 s, p99 0.5 s on 2 cores; expected: a few ms). Large
/// frames should be parsed off the async workers (`spawn_blocking`) or bounded before parsing.
#[test]
fn a_huge_frame_does_not_stall_other_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data"));
    let stop = Arc::new(AtomicBool::new(false));
    let ping = pinger(&d, stop.clone());
    std::thread::sleep(Duration::from_millis(100)); // a few pings before the big frame
    let mut million = Vec::with_capacity(30 << 20);
    million.extend_from_slice(br#"{"type":"register","request_id":"m","items":["#);
    for i in 0..1_000_000 {
        if i > 0 {
            million.push(b',');
        }
        million.extend_from_slice(br#"{"uuid":"a","kind":"object"}"#);
    }
    million.extend_from_slice(b"]}");
    let mut s = authed(&d);
    let mut answered_in = Duration::MAX;
    for _ in 0..2 {
        send_raw_json(&mut s, &million, &[]);
        let sent = Instant::now();
        let Some(m) = read_msg(&mut s) else { panic!("closed: {}", d.stderr_log()) };
        answered_in = answered_in.min(sent.elapsed());
        assert_error(&m, "BAD_MESSAGE", "items", "1M items");
    }
    stop.store(true, Ordering::SeqCst);
    let mut lat = ping.join().unwrap();
    lat.sort();
    let max = *lat.last().unwrap();
    // Not a speed bound (that is a benchmark's job) but the event that shows the stall: a
    // ping parked behind the big frame on the worker parsing it waits as long as the parse
    // itself. Off the workers, no ping waits even half as long as the big frame's answer took.
    assert!(
        max < answered_in / 2,
        "another session's ping waited {max:?} behind a big frame that took {answered_in:?} to answer"
    );
    assert_eq!(ping_then_stop(&mut d), Some(0));
}

/// What an independent client, written from docs/PROTOCOL.md alone, found the daemon doing
/// otherwise — each checked here against the document's words:
/// - §1: only a `change` of exactly one change, a `mesh` or a `create` with `mesh_hash`, may
///   carry an attachment: a `hello` with one is refused (and, a handshake failure, closed); a
///   single `rename` with one is refused `BAD_MESSAGE` `attachment:`, the connection kept;
/// - §4: a first frame of a known `type` other than `hello` is `NOT_AUTHENTICATED` with that
///   frame's `request_id`;
/// - §2: a `request_id` that is not a string — `null` included — is `BAD_MESSAGE` naming it;
/// - §4: a missing field is named itself (``field `request_id`: missing``);
/// - §3: a frame that starts like HTTP gets a plain close after `welcome` too.
#[test]
fn protocol_rules_an_independent_client_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut other = d.client("test");

    // A hello with an attachment: refused, closed.
    let mut s = raw(&d);
    send_raw_json(&mut s, &serde_json::to_vec(&hello(&d)).unwrap(), b"hi");
    let r = read_msg(&mut s).expect("an error");
    assert_error(&r, "BAD_MESSAGE", "attachment:", "hello with an attachment");
    assert!(closed(&mut s), "a handshake failure closes");

    // A first `ping` with a request_id: NOT_AUTHENTICATED echoing it.
    let mut s = raw(&d);
    send_raw_json(&mut s, br#"{"type":"ping","request_id":"p"}"#, &[]);
    let r = read_msg(&mut s).expect("an error");
    assert_eq!((r["code"].as_str(), r["request_id"].as_str()), (Some("NOT_AUTHENTICATED"), Some("p")), "{r}");
    assert!(closed(&mut s));

    let mut s = authed(&d);
    // One `rename` with an attachment: not a mesh the attachment could be.
    let x = new_uuid();
    let change = json!({"type":"change","request_id":"ren","changes":[{"op":"rename","uuid":x,"name":"N"}]});
    send_raw_json(&mut s, &serde_json::to_vec(&change).unwrap(), b"VSM1junk");
    let r = reply_and_still_usable(&mut s, "rename with an attachment");
    assert_error(&r, "BAD_MESSAGE", "attachment:", "rename with an attachment");
    assert_eq!(r["request_id"], "ren", "{r}");
    // `request_id: null`, on a request where it is optional.
    for msg in [&br#"{"type":"ping","request_id":null}"#[..], br#"{"type":"status","request_id":null}"#] {
        send_raw_json(&mut s, msg, &[]);
        let r = reply_and_still_usable(&mut s, "request_id null");
        assert_error(&r, "BAD_MESSAGE", "field `request_id`", "request_id null");
        assert!(r.get("request_id").is_none(), "{r}");
    }
    // A missing field is named.
    send_raw_json(&mut s, br#"{"type":"register","items":[]}"#, &[]);
    let r = reply_and_still_usable(&mut s, "register without request_id");
    assert_eq!(r["message"], "field `request_id`: missing", "{r}");
    send_raw_json(&mut s, br#"{"type":"register","request_id":"r","items":[{"kind":"object"}]}"#, &[]);
    let r = reply_and_still_usable(&mut s, "an item without uuid");
    assert_eq!(r["message"], "field `items[0].uuid`: missing", "{r}");
    // An agent's scene_query with a malformed uuid: refused, never an empty list (§9.3).
    let mut agent = d.client("agent");
    for bad in ["AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", "NOT-A-UUID"] {
        let r = agent.request(&json!({"type":"scene_query","request_id":"q","uuid":bad})).unwrap();
        assert_error(&r, "BAD_MESSAGE", "field `uuid`", "scene_query with a malformed uuid");
        assert_eq!(r["request_id"], "q", "{r}");
    }
    // HTTP after welcome: a plain close, no frame.
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert!(closed(&mut s), "plain close");

    assert_eq!(other.request(&json!({"type":"ping","request_id":"p"})).unwrap()["type"], "pong");
}
