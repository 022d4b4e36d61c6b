//! Load: 64 concurrent editor clients (8 projects × 8 editors, default config: 300 ms batch
//! window) register and sync transforms at an editor's drag rate for `VIBESYNC_LOAD_SECS`
//! (default 5 s; `scripts/soak` runs 30 s), while a separate client pings.
//!
//! Asserted: no error frame and no per-item error except `RATE_LIMITED`; every request is
//! answered and every client's object converges to its last pose on every peer of its
//! project, each within a deadline (events, never a quiet period; rolled-back batches — a
//! propagation failure, the person's edit stays — are reported);
//! daemon RSS stays under `VIBESYNC_LOAD_MAX_RSS_MB` (default 300), the pinger never fails
//! and its p99 stays under a very generous sanity bound (1 s; CI machines vary). The
//! figures (ping p50/p99, changes/s, RSS) are printed and, with `VIBESYNC_LOAD_REPORT=<file>`,
//! written as JSON for docs/BENCHMARKS.md ("Load").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_protocol::state::state_hash;

use super::editor::*;
use super::wire::percentile;
use crate::common::*;

const PROJECTS: usize = 8;
const PER_PROJECT: usize = 8;
/// How long a client waits for an event (its acks, its peers' final poses) before failing.
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Default, Debug)]
struct Stats {
    changes_sent: u64,
    registers_sent: u64,
    acks: usize,
    committed: usize,
    rolled_back: Vec<Value>,
    errors: Vec<Value>,
    item_errors: Vec<Value>,
    /// (uuid, hash of its final pose) owned by this client.
    own: (String, String),
    /// Hashes of every object this client holds at the end.
    held: BTreeMap<String, String>,
}

/// What every client publishes once all its requests are answered: its uuid and the hash of
/// its final pose. Peers then wait (with a deadline) until they hold each of them.
type Finals = Arc<(Mutex<BTreeMap<String, String>>, Barrier)>;

fn client(
    addr: std::net::SocketAddr,
    token: String,
    project: String,
    idx: usize,
    secs: f64,
    go: Arc<Barrier>,
    finals: Finals,
) -> Stats {
    let editor = if idx.is_multiple_of(2) { "blender" } else { "unity" };
    let mut e = Editor::connect_to(addr, &token, &project, editor, 0).expect("connect");
    let mut st = Stats::default();
    let me = new_uuid();
    let ack = e.change("create", vec![create_op(&me, &format!("C{idx}"), [idx as f64, 0.0, 0.0])]).unwrap();
    assert_eq!(ack["results"][0]["status"], "queued", "{ack}");
    go.wait();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut next_change = start;
    let mut next_register = start;
    let mut i = 0u64;
    // 20 Hz transforms (an editor streaming a drag), a 5-item register every second.
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_change {
            i += 1;
            let t = [idx as f64, i as f64 * 0.01, (i % 100) as f64];
            if let Some(s) = e.states.get_mut(&me) {
                s["t"] = json!(t);
            }
            let msg = json!({"type":"change","request_id":format!("t{i}"),"base_seq":e.last_seq,"changes":[transform_op(&me, t)]});
            e.c.send(&msg).expect("send change");
            st.changes_sent += 1;
            next_change += Duration::from_millis(50);
        }
        if now >= next_register {
            let items: Vec<Value> = (0..5)
                .map(|k| json!({"uuid":new_uuid(),"kind":"material","name":format!("M{idx}-{i}-{k}"),"editor_ref":format!("MA:{idx}-{i}-{k}")}))
                .collect();
            e.c.send(&json!({"type":"register","request_id":format!("r{i}"),"items":items})).expect("send register");
            st.registers_sent += 1;
            next_register += Duration::from_secs(1);
        }
        let wait = next_change.min(next_register).saturating_duration_since(Instant::now());
        e.pump_until(wait.max(Duration::from_millis(1)), |_| false).expect("pump");
    }
    // Events, each with a deadline (never a quiet period): every request answered…
    let expected = (st.changes_sent + st.registers_sent) as usize;
    let answered = e.pump_until(DEADLINE, |e| e.unsolicited_acks + e.errors.len() >= expected).expect("pump");
    assert!(
        answered,
        "client {idx}: {} of {expected} requests answered within {DEADLINE:?}",
        e.unsolicited_acks + e.errors.len()
    );
    // … then every peer of the project holds every client's final pose.
    let mine = state_hash(&e.states[&me]);
    finals.0.lock().unwrap().insert(me.clone(), mine);
    finals.1.wait();
    let want: BTreeMap<String, String> = finals.0.lock().unwrap().clone();
    let project_uuids: Vec<String> = want.keys().cloned().collect();
    let converged = e
        .pump_until(DEADLINE, |e| project_uuids.iter().all(|u| e.states.get(u).map(state_hash).as_ref() == want.get(u)))
        .expect("pump");
    if !converged {
        let off: Vec<String> = project_uuids
            .iter()
            .filter(|u| e.states.get(*u).map(state_hash).as_ref() != want.get(*u))
            .map(|u| format!("{u}: holds {:?}", e.states.get(u).map(|s| s["t"].clone())))
            .collect();
        panic!(
            "client {idx} ({project}): peers' final poses not held within {DEADLINE:?}: {off:?}; errors {:?}; last results {:?}",
            e.errors,
            e.results.iter().rev().take(3).collect::<Vec<_>>()
        );
    }
    st.acks = e.unsolicited_acks + 1;
    st.committed = e.results.iter().filter(|r| r["outcome"] == "committed").count();
    st.rolled_back = e.results.iter().filter(|r| r["outcome"] != "committed").cloned().collect();
    st.errors = e.errors.clone();
    st.item_errors = e.item_errors.clone();
    st.own = (me.clone(), state_hash(&e.states[&me]));
    st.held = e.states.iter().map(|(u, s)| (u.clone(), state_hash(s))).collect();
    st
}

#[test]
fn sixty_four_clients_sync_with_bounded_rss_and_low_ping_latency() {
    let secs = env_or("VIBESYNC_LOAD_SECS", 5) as f64;
    let max_rss_mb = env_or("VIBESYNC_LOAD_MAX_RSS_MB", 300);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let pid = d.pid();
    let rss_before = rss_kib(pid);
    let go = Arc::new(Barrier::new(PROJECTS * PER_PROJECT + 1));
    let mut threads = vec![];
    for p in 0..PROJECTS {
        let finals: Finals = Arc::new((Mutex::new(BTreeMap::new()), Barrier::new(PER_PROJECT)));
        for k in 0..PER_PROJECT {
            let (a, t, g, f) = (d.addr, d.token.clone(), go.clone(), finals.clone());
            let project = format!("load{p}");
            threads.push(std::thread::spawn(move || client(a, t, project, p * PER_PROJECT + k, secs, g, f)));
        }
    }
    // The pinger: its own project, one ping every 20 ms, RSS sampled alongside.
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (a, t, s) = (d.addr, d.token.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(a, &t, "ping", "test").unwrap();
            let (mut lat, mut peak) = (vec![], 0u64);
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let t0 = Instant::now();
                let p = c.request(&json!({"type":"ping","request_id":format!("p{i}")})).expect("ping during load");
                lat.push(t0.elapsed());
                assert_eq!(p["type"], "pong", "{p}");
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            (lat, peak)
        })
    };
    go.wait();
    let started = Instant::now();
    let stats: Vec<Stats> = threads.into_iter().map(|t| t.join().expect("load client failed")).collect();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (mut lat, peak_kib) = pinger.join().expect("pinger failed");
    let rss_after = rss_kib(pid);
    lat.sort();

    // Errors: only deliberate rate limits.
    let mut rate_limited = 0usize;
    for s in &stats {
        for e in &s.errors {
            assert_eq!(e["code"], "RATE_LIMITED", "unexpected error under load: {e}");
            rate_limited += 1;
        }
        for e in &s.item_errors {
            assert_eq!(e["error_code"], "RATE_LIMITED", "unexpected per-item error under load: {e}");
            rate_limited += 1;
        }
        // A rollback under load is a propagation failure, not a loss: the person's edit stays
        // where it was made and is re-sent (docs/PROTOCOL.md §6.4). Convergence below is the
        // check; rollbacks are reported. (Known: about 1 run in 4 sees one here — to explain.)
        if !s.rolled_back.is_empty() {
            eprintln!("load: batches rolled back under load (converged anyway?): {:?}", s.rolled_back);
        }
        assert_eq!(
            (s.acks + s.errors.len()) as u64,
            s.changes_sent + s.registers_sent + 1,
            "every request got its ack (or a RATE_LIMITED error)"
        );
    }
    // Convergence: every peer holds each client's final pose.
    for p in 0..PROJECTS {
        let group = &stats[p * PER_PROJECT..(p + 1) * PER_PROJECT];
        for owner in group {
            let (u, h) = &owner.own;
            for peer in group {
                assert_eq!(peer.held.get(u), Some(h), "project load{p}: {u} did not converge on every peer");
            }
        }
    }
    let changes: u64 = stats.iter().map(|s| s.changes_sent).sum();
    let registers: u64 = stats.iter().map(|s| s.registers_sent).sum();
    let committed: usize = stats.iter().map(|s| s.committed).sum::<usize>();
    let load_secs = secs.min(elapsed.as_secs_f64());
    let (p50, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.99), *lat.last().unwrap());
    let report = json!({
        "clients": PROJECTS * PER_PROJECT, "projects": PROJECTS, "seconds": secs,
        "changes_sent": changes, "changes_per_s": (changes as f64 / load_secs).round(),
        "register_requests": registers, "registrations_per_s": ((registers * 5) as f64 / load_secs).round(),
        "batch_results_committed": committed, "rate_limited": rate_limited,
        "ping_count": lat.len(), "ping_p50_ms": p50.as_secs_f64() * 1e3, "ping_p99_ms": p99.as_secs_f64() * 1e3,
        "ping_max_ms": max.as_secs_f64() * 1e3,
        "rss_before_mb": rss_before / 1024, "rss_peak_mb": peak_kib / 1024, "rss_after_mb": rss_after / 1024,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    });
    eprintln!("load: {report}");
    if let Ok(path) = std::env::var("VIBESYNC_LOAD_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    assert!(rss_before > 0 && rss_after > 0, "RSS readable from /proc/{pid}/status");
    assert!(peak_kib / 1024 < max_rss_mb, "daemon RSS peaked at {} MB (bound {max_rss_mb} MB)", peak_kib / 1024);
    assert!(p99 < Duration::from_secs(1), "sanity bound: ping p99 {p99:?} under load");
    assert!(changes as f64 > 64.0 * 10.0 * load_secs * 0.5, "the clients kept their rate: {changes} changes");
    // A graceful stop leaves a batch still waiting for answers open, for the next boot to
    // end (docs/PROTOCOL.md §6.7): the clients have left, so every batch ends (committed, or
    // rolled back as its participants went) before the stop — within the verify timeout.
    let idle_by = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, err) = verify(&data);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < idle_by, "a batch still open 20 s after the load ended:\n{out}{err}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(ping_then_stop(&mut d), Some(0));
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "verify after load:\n{out}{err}");
}
