//! Live sync through the real daemon with the batch window at 0, two protocol clients
//! standing in for the editors (no editor cost): `cargo bench -p vibesync --bench sync`.
//!
//! * latency: client A sends one `transform`, client B receives the fenced batch and answers
//!   `applied` with the right hash; measured from A's send to B's `batch_end` (the daemon's
//!   share of an editor-to-editor change), p50/p99 over `BENCH_N` (default 500) changes;
//! * throughput: A streams transforms for several objects without waiting, B applies and
//!   answers; changes/s and batches/s committed over `BENCH_SECS` (default 5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_daemon::client::Client;
use vibesync_protocol::state::state_hash;

mod support;

struct Peer {
    c: Client,
    states: BTreeMap<String, Value>,
}

impl Peer {
    /// Read until a batch ends; apply it; answer. Returns the number of changes applied.
    fn apply_one_batch(&mut self) -> Option<(String, usize)> {
        loop {
            let f = self.c.recv_frame().ok()?;
            let m: Value = serde_json::from_slice(&f.json).unwrap();
            if m["type"] != "batch_begin" {
                continue;
            }
            let id = m["batch_id"].as_str().unwrap().to_string();
            let n = m["count"].as_u64().unwrap() as usize;
            let mut touched = vec![];
            for _ in 0..n {
                let a: Value = serde_json::from_slice(&self.c.recv_frame().unwrap().json).unwrap();
                let ch = &a["change"];
                let u = ch["uuid"].as_str().unwrap().to_string();
                let s = self.states.entry(u.clone()).or_insert_with(|| json!({}));
                if ch["op"] == "create" {
                    *s = json!({"kind":ch["kind"],"name":ch["name"],"parent":ch["parent"],"visible":ch["visible"],"t":ch["t"],"r":ch["r"],"s":ch["s"]});
                } else {
                    s["t"] = ch["t"].clone();
                    s["r"] = ch["r"].clone();
                    s["s"] = ch["s"].clone();
                }
                touched.push(u);
            }
            let end: Value = serde_json::from_slice(&self.c.recv_frame().unwrap().json).unwrap();
            let hashes: serde_json::Map<String, Value> =
                touched.iter().map(|u| (u.clone(), json!(state_hash(&self.states[u])))).collect();
            self.c.send(&json!({"type":"applied","batch_id":id,"seq":end["seq"],"hashes":hashes})).unwrap();
            return Some((id, n));
        }
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::var("BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let daemon = support::BenchDaemon::start(
        "sync",
        "[sync]
batch_window_ms = 0
[limits]
messages_per_sec = 1000000.0
messages_burst = 1000000.0
",
    );
    let (addr, token) = (daemon.addr, daemon.token.clone());

    let mut a = Client::connect(addr, &token, "bench", "blender").unwrap();
    let mut b = Peer { c: Client::connect(addr, &token, "bench", "unity").unwrap(), states: BTreeMap::new() };
    let objects: Vec<String> = (0..8).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, u) in objects.iter().enumerate() {
        a.send(&json!({"type":"change","request_id":format!("c{i}"),"base_seq":0,"changes":[{"op":"create","uuid":u,"kind":"object","name":format!("O{i}"),"parent":null,"t":[0,0,0],"r":[0,0,0,1],"s":[1,1,1],"visible":true}]})).unwrap();
        b.apply_one_batch().unwrap();
    }
    // Drain A (acks, batch results) in the background.
    let mut a_reader = a.try_clone_stream();
    std::thread::spawn(move || while a_reader.recv_frame().is_ok() {});

    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        a.send(&json!({"type":"change","request_id":format!("l{i}"),"base_seq":0,"changes":[{"op":"transform","uuid":objects[0],"t":[i as f64 * 0.001,1,2],"r":[0,0,0,1],"s":[1,1,1]}]})).unwrap();
        b.apply_one_batch().unwrap();
        lat.push(t.elapsed());
    }
    println!(
        "change A -> daemon -> B (window 0, 1 object, n={n}): p50 {:.0} us  p99 {:.0} us",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    // Throughput: A streams, B applies as fast as it can.
    let stop = Instant::now() + Duration::from_secs(secs);
    let sender = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut i = 0u64;
        while Instant::now() < stop {
            let u = &objects[(i % objects.len() as u64) as usize];
            a.send(&json!({"type":"change","request_id":format!("t{i}"),"base_seq":0,"changes":[{"op":"transform","uuid":u,"t":[i as f64 * 1e-3,0,0],"r":[0,0,0,1],"s":[1,1,1]}]})).unwrap();
            sent += 1;
            i += 1;
            if i.is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(200)); // let acks drain
            }
        }
        sent
    });
    let start = Instant::now();
    let (mut batches, mut changes) = (0u64, 0u64);
    b.c.set_read_timeout(Some(Duration::from_secs(2)));
    while start.elapsed() < Duration::from_secs(secs) + Duration::from_secs(1) {
        match b.apply_one_batch() {
            Some((_, k)) => {
                batches += 1;
                changes += k as u64;
            }
            None => break,
        }
    }
    let sent = sender.join().unwrap();
    let el = start.elapsed().as_secs_f64();
    println!(
        "sustained: {sent} transforms sent in {secs} s ({:.0}/s); {batches} batches ({:.0}/s) carrying {changes} coalesced changes reached B",
        sent as f64 / secs as f64,
        batches as f64 / el,
    );
    drop(daemon);
}
