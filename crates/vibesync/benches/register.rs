//! Register round-trip latency through the real daemon binary on loopback.
//!
//! `cargo bench -p vibesync --bench register` — starts `vibesync serve` on port 0 in a temp
//! data dir, then measures `register` (one item, a full WAL transaction with fdatasync and a
//! sled flush before the ack) and `ping` round trips from one client, then the throughput of
//! 8 concurrent clients. Prints p50/p99 in microseconds.

use std::time::{Duration, Instant};

use serde_json::json;
use vibesync_daemon::client::Client;

mod support;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::var("BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let daemon = support::BenchDaemon::start("register", "");
    let (addr, token) = (daemon.addr, daemon.token.clone());

    let mut c = Client::connect(addr, &token, "bench", "test").unwrap();
    let mut ping = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.request(&json!({"type":"ping","request_id": i.to_string()})).unwrap();
        ping.push(t.elapsed());
    }
    let mut reg = Vec::with_capacity(n);
    for i in 0..n {
        let u = uuid::Uuid::new_v4().to_string();
        let t = Instant::now();
        let ack = c
            .request(&json!({"type":"register","request_id": i.to_string(),"items":[{"uuid":u,"kind":"object","name":format!("O{i}"),"editor_ref":format!("OB:O{i}")}]}))
            .unwrap();
        reg.push(t.elapsed());
        assert_eq!(ack["results"][0]["status"], "registered");
    }
    println!(
        "ping     round trip (1 client, n={n}): p50 {:>8.0} us  p99 {:>8.0} us",
        pct(&mut ping, 0.5),
        pct(&mut ping, 0.99)
    );
    println!(
        "register round trip (1 client, n={n}): p50 {:>8.0} us  p99 {:>8.0} us",
        pct(&mut reg, 0.5),
        pct(&mut reg, 0.99)
    );

    let clients = 8;
    let per = n / clients;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let token = token.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr, &token, "bench", "test").unwrap();
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let u = uuid::Uuid::new_v4().to_string();
                    let t = Instant::now();
                    c.request(&json!({"type":"register","request_id": i.to_string(),"items":[{"uuid":u,"kind":"object","name":format!("C{k}-{i}"),"editor_ref":"x"}]})).unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "register, {clients} concurrent clients: {:.0} registrations/s, p50 {:.0} us  p99 {:.0} us",
        all.len() as f64 / secs,
        pct(&mut all, 0.5),
        pct(&mut all, 0.99)
    );
    drop(daemon);
}
