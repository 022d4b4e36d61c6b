//! Registration through the real daemon binary on loopback:
//! `cargo bench -p vibesync --bench register`.
//!
//! * `ping` and `register` (one item) round trips from one client;
//! * 8 concurrent clients, one item per request: registrations acknowledged per second;
//! * bulk: one client, `BENCH_BULK_ITEMS` items (default 1000) per request: items
//!   acknowledged per second.
//!
//! Every `register` is a WAL transaction (BEGIN, STEPs, COMMIT) made durable before its
//! `ack`; the machine's fdatasync cost is printed beside the figures. Knobs: `BENCH_N`
//! (round trips and per-client requests, default 2000), `BENCH_BULK_TOTAL` (default 200000),
//! `BENCH_CONFIG` (the daemon's config file text, default empty: every default),
//! `BENCH_BIG_N` (default 0: then the 8 clients again, that many single registrations each, in
//! the project the bulk filled, and what the audit cost per FINAL there), `BENCH_AUDIT_COMMITS`
//! (default 0: then that many single registrations, one per audit
//! commit, printing what each commit adds to the audit repository on disk).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

/// The WAL's (appends, fdatasyncs) so far, from `status`.
fn wal_counters(c: &mut vibesync_daemon::client::Client) -> (u64, u64) {
    let s = c.request(&json!({"type":"status","request_id":"wal?"})).unwrap();
    let count = |k: &str| s["wal"][k].as_u64().unwrap_or_else(|| panic!("status has no wal.{k}: {s}"));
    (count("appends"), count("syncs"))
}

/// Wait until the audit holds the last FINAL (or is disabled); its `status` then. Fails
/// after 300 s.
fn audit_caught_up(c: &mut vibesync_daemon::client::Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = c.request(&json!({"type":"status","request_id":"audited?"})).unwrap();
        let a = &s["audit"];
        if a["enabled"] == false || (a["pending"] == 0 && a["last_audited_seq"] == s["seq"]) {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "the audit did not catch up within 300 s: {a}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn item(name: String) -> Value {
    json!({"uuid": uuid::Uuid::new_v4().to_string(), "kind": "object", "name": name, "editor_ref": "OB:x"})
}

fn registered(ack: &Value) -> usize {
    assert_eq!(ack["type"], "ack", "not acknowledged: {ack}");
    ack["results"].as_array().unwrap().iter().filter(|r| r["status"] == "registered").count()
}

fn main() {
    let n = env_usize("BENCH_N", 2000);
    let bulk_items = env_usize("BENCH_BULK_ITEMS", 1000);
    let bulk_total = env_usize("BENCH_BULK_TOTAL", 200_000);
    support::print_fdatasync_cost();
    support::print_handoff_cost();
    // BENCH_CONFIG: TOML text for the daemon (e.g. "[audit]\nenabled = false"), for experiments.
    let daemon = support::BenchDaemon::start("register", &std::env::var("BENCH_CONFIG").unwrap_or_default());

    let mut c = daemon.connect("bench", "test");
    let mut ping = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.request(&json!({"type":"ping","request_id": i.to_string()})).unwrap();
        ping.push(t.elapsed());
    }
    let mut reg = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let ack =
            c.request(&json!({"type":"register","request_id": i.to_string(),"items":[item(format!("O{i}"))]})).unwrap();
        reg.push(t.elapsed());
        assert_eq!(registered(&ack), 1);
    }
    println!(
        "ping     round trip (1 client, n={n}): p50 {:.3} ms  p99 {:.3} ms",
        support::pct(&mut ping, 0.5),
        support::pct(&mut ping, 0.99)
    );
    println!(
        "register round trip (1 client, 1 item, n={n}): p50 {:.3} ms  p99 {:.3} ms",
        support::pct(&mut reg, 0.5),
        support::pct(&mut reg, 0.99)
    );

    let clients = 8;
    concurrent(&daemon, &mut c, clients, n, "C");

    let mut lat = Vec::new();
    let mut ok = 0;
    let requests: Vec<Value> = (0..bulk_total.div_ceil(bulk_items))
        .map(|r| {
            let items: Vec<Value> = (0..bulk_items).map(|i| item(format!("B{r}-{i}"))).collect();
            json!({"type":"register","request_id": format!("bulk{r}"),"items":items})
        })
        .collect();
    let cpu0 = support::thread_cpu(daemon.child.id());
    let start = Instant::now();
    for req in &requests {
        let t = Instant::now();
        let ack = c.request(req).unwrap();
        lat.push(t.elapsed());
        ok += registered(&ack);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "register, bulk ({bulk_items} items per request, 1 client): {ok} acknowledged in {secs:.2} s = {:.0} items/s; request p50 {:.1} ms  p99 {:.1} ms",
        ok as f64 / secs,
        support::pct(&mut lat, 0.5),
        support::pct(&mut lat, 0.99)
    );
    // The audit's group commits follow the acknowledgements: count them too, once the
    // audit holds the last FINAL (its `status`), and say how long after the last ack that was.
    audit_caught_up(&mut c);
    let audited = start.elapsed().as_secs_f64() - secs;
    println!("  the audit held the last FINAL {audited:.2} s after the last ack");
    println!(
        "  daemon CPU by thread (bulk): {}",
        support::cpu_used(&cpu0, &support::thread_cpu(daemon.child.id()), ok)
    );

    // BENCH_BIG_N=k: then the 8 clients again, k single registrations each, in the project
    // the bulk filled: what the audit's group commits cost per FINAL there, once it caught up.
    let big_n = env_usize("BENCH_BIG_N", 0);
    if big_n > 0 {
        let audit = |c: &mut vibesync_daemon::client::Client| {
            c.request(&json!({"type":"status","request_id":"a"})).unwrap()["audit"].clone()
        };
        let a0 = audit(&mut c);
        println!(
            "in the project of {} live records:",
            c.request(&json!({"type":"status","request_id":"s"})).unwrap()["registry"]["live"]
        );
        let ok = concurrent(&daemon, &mut c, clients, big_n, "G");
        let a1 = audit_caught_up(&mut c);
        let d = |k: &str| a1[k].as_u64().unwrap() - a0[k].as_u64().unwrap();
        let (finals, commits, cpu) = (d("finals"), d("commits").max(1), d("cpu_us"));
        println!(
            "  audit: {ok} registrations acknowledged, {finals} FINALs in {commits} commits ({:.1} per commit): {:.1} µs of audit CPU per FINAL, {:.2} ms per commit",
            finals as f64 / commits as f64,
            cpu as f64 / finals.max(1) as f64,
            cpu as f64 / 1000.0 / commits as f64
        );
    }

    // BENCH_AUDIT_COMMITS=k: then k single registrations, one per audit commit, in the project
    // the phases above filled: what each commit adds to the audit repository on disk.
    let commits = env_usize("BENCH_AUDIT_COMMITS", 0);
    if commits > 0 {
        let audit_dir = daemon.dir.join("data").join(".git_safety");
        let size = || dir_bytes(&audit_dir);
        let status =
            |c: &mut vibesync_daemon::client::Client| c.request(&json!({"type":"status","request_id":"s"})).unwrap();
        let s0 = status(&mut c);
        let (before, commits0, cpu0) =
            (size(), s0["audit"]["commits"].as_u64().unwrap(), s0["audit"]["cpu_us"].as_u64().unwrap());
        for i in 0..commits {
            let want = status(&mut c)["audit"]["commits"].as_u64().unwrap() + 1;
            let ack = c
                .request(&json!({"type":"register","request_id": format!("a{i}"),"items":[item(format!("A{i}"))]}))
                .unwrap();
            assert_eq!(registered(&ack), 1);
            let deadline = Instant::now() + Duration::from_secs(60);
            while status(&mut c)["audit"]["commits"].as_u64().unwrap() < want {
                assert!(Instant::now() < deadline, "no audit commit within 60 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let s = status(&mut c);
        let made = s["audit"]["commits"].as_u64().unwrap() - commits0;
        println!(
            "  audit on disk: {made} commits of one registration each, in a project of {} live records: {:.0} bytes per commit ({before} -> {} bytes); audit CPU {:.1} ms per commit",
            s["registry"]["live"],
            (size() - before) as f64 / made.max(1) as f64,
            size(),
            (s["audit"]["cpu_us"].as_u64().unwrap() - cpu0) as f64 / 1000.0 / made.max(1) as f64
        );
    }
    drop(daemon);
    support::print_fdatasync_cost();
}

/// `clients` connections each registering `n` single items as fast as answers come;
/// prints what was acknowledged, the latencies, the daemon's CPU by thread and the WAL's
/// fdatasyncs. Returns how many were acknowledged.
fn concurrent(
    daemon: &support::BenchDaemon,
    c: &mut vibesync_daemon::client::Client,
    clients: usize,
    n: usize,
    prefix: &'static str,
) -> usize {
    // Each client connects and builds its requests first; the clock and the CPU counters
    // start once all of them are ready (as in bulk, the requests are built before timing).
    let ready = std::sync::Arc::new(std::sync::Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let (token, ready, addr) = (daemon.token.clone(), ready.clone(), daemon.addr);
            std::thread::spawn(move || {
                let mut c = vibesync_daemon::client::Client::connect(addr, &token, "bench", "test").unwrap();
                let requests: Vec<Value> = (0..n)
                    .map(|i| json!({"type":"register","request_id": i.to_string(),"items":[item(format!("{prefix}{k}-{i}"))]}))
                    .collect();
                let mut lat = Vec::with_capacity(n);
                let mut ok = 0;
                ready.wait();
                for req in &requests {
                    let t = Instant::now();
                    let ack = c.request(req).unwrap();
                    lat.push(t.elapsed());
                    ok += registered(&ack);
                }
                (ok, lat)
            })
        })
        .collect();
    let wal0 = wal_counters(c);
    ready.wait();
    let cpu_clients = support::thread_cpu(daemon.child.id());
    let own_clients = support::own_cpu();
    let start = Instant::now();
    let mut ok = 0;
    let mut all: Vec<Duration> = Vec::new();
    for h in handles {
        let (k, lat) = h.join().unwrap();
        ok += k;
        all.extend(lat);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "register, {clients} concurrent clients, 1 item per request: {ok} acknowledged in {secs:.2} s = {:.0} items/s; p50 {:.3} ms  p99 {:.3} ms",
        ok as f64 / secs,
        support::pct(&mut all, 0.5),
        support::pct(&mut all, 0.99)
    );
    println!(
        "  daemon CPU by thread ({clients} clients, while they ran): {}",
        support::cpu_used(&cpu_clients, &support::thread_cpu(daemon.child.id()), ok)
    );
    let own = support::own_cpu() - own_clients;
    let wal1 = wal_counters(c);
    let syncs = (wal1.1 - wal0.1).max(1);
    println!(
        "  WAL ({clients} clients): {} appends, {syncs} fdatasyncs = {:.1} items per fdatasync",
        wal1.0 - wal0.0,
        ok as f64 / syncs as f64
    );
    println!(
        "  the bench's own {clients} client threads, on the same cores: {own:.2} s of CPU = {:.1} µs per item",
        own * 1e6 / ok.max(1) as f64
    );

    ok
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
