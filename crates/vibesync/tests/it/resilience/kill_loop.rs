//! Kill loop: a load generator registers AND syncs (two editors: `blender` sends create /
//! transform changes and registrations, `unity` applies the forwarded batches and answers
//! with state hashes) while the harness SIGKILLs the daemon at a random moment,
//! `VIBESYNC_KILL_ROUNDS` times (default 10; `scripts/soak` runs 50).
//!
//! After each kill the daemon restarts on the same data dir, and:
//! * every acknowledged registration is present (re-register → `unchanged`);
//! * every batch the origin saw `committed` is reflected in the recovered registry: a fresh
//!   editor connecting with `last_seq: 0` receives, in its welcome resync, for each synced
//!   uuid exactly the state of the last COMMITted transaction in the WAL, and that state is
//!   the committed one or one the generator sent after it (never an older one);
//! * a graceful stop (SIGTERM) exits 0, `vibesync verify` is clean, and in the WAL every
//!   BEGIN ends in COMMIT + FINAL or ROLLBACK (no half-applied transaction); uuids of
//!   transactions that were rolled back show their last committed state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use vibesync_protocol::state::state_hash;

use super::editor::*;
use crate::common::*;

/// What the generator knows about one synced uuid: every state it sent, in order, and the
/// index of the newest one a `committed` batch_result confirmed.
#[derive(Default, Clone, Debug)]
struct Track {
    sent: Vec<String>, // state hashes
    committed: Option<usize>,
}

#[derive(Default)]
struct Shared {
    registered: Vec<(String, String)>,
    tracks: BTreeMap<String, Track>,
    committed_batches: usize,
    rolled_back: usize,
    acks: usize,
}

/// One generator round: until `stop` or the connection dies.
fn generate(
    addr: std::net::SocketAddr,
    token: String,
    round: usize,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut b) = Editor::connect(addr, &token, "blender", 0) else { return };
    let mut live: Vec<String> = vec![];
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        // 1. Registrations (a `register` transaction per iteration).
        let batch: Vec<(String, String)> = (0..3).map(|k| (new_uuid(), format!("k{round}i{i}n{k}"))).collect();
        let items: Vec<Value> = batch
            .iter()
            .map(|(u, n)| json!({"uuid":u,"kind":"mesh","name":n,"editor_ref":format!("ME:{n}")}))
            .collect();
        match b.request(&json!({"type":"register","request_id":format!("r{i}"),"items":items}), &[]) {
            Ok(ack) if ack["type"] == "ack" => {
                assert!(
                    ack["results"].as_array().unwrap().iter().all(|r| r["status"] == "registered"),
                    "fresh uuids must register: {ack}"
                );
                let mut s = shared.lock().unwrap();
                s.registered.extend(batch);
                s.acks += 1;
            }
            Ok(other) => panic!("register refused: {other}"),
            Err(_) => return, // killed mid-request: never acknowledged
        }
        // 2. Sync: keep up to 4 objects; create the missing ones, move the others.
        live.retain(|u| b.states.contains_key(u));
        let mut changes = vec![];
        while live.len() < 4 {
            let u = new_uuid();
            changes.push(create_op(&u, &format!("Obj{round}-{i}"), [round as f64, i as f64, 0.0]));
            live.push(u);
        }
        for (k, u) in live.iter().enumerate() {
            if !changes.iter().any(|c| c["uuid"] == u.as_str()) {
                changes.push(transform_op(u, [round as f64, i as f64, k as f64 + 0.5]));
            }
        }
        let uuids: Vec<String> = changes.iter().map(|c| c["uuid"].as_str().unwrap().to_string()).collect();
        let before = b.results.len();
        let ack = match b.change(&format!("c{i}"), changes) {
            Ok(a) => a,
            Err(_) => return,
        };
        {
            // What we sent, now that the daemon has it queued.
            let mut s = shared.lock().unwrap();
            for (u, r) in uuids.iter().zip(ack["results"].as_array().unwrap()) {
                assert_eq!(r["status"], "queued", "change refused: {ack}");
                s.tracks.entry(u.clone()).or_default().sent.push(state_hash(&b.states[u]));
            }
        }
        // Wait for the batch results of every uuid (one batch per uuid in flight).
        let mut pending: Vec<String> = uuids.clone();
        let end = Instant::now() + Duration::from_secs(10);
        while !pending.is_empty() && Instant::now() < end {
            if b.pump_until(Duration::from_millis(200), |e| e.results.len() > before).is_err() {
                return;
            }
            let mut s = shared.lock().unwrap();
            for r in b.results.drain(before..) {
                let us: Vec<String> =
                    r["uuids"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
                if r["outcome"] == "committed" {
                    s.committed_batches += 1;
                    for u in &us {
                        let t = s.tracks.get_mut(u).expect("committed uuid was sent");
                        t.committed = Some(t.sent.len() - 1);
                    }
                } else {
                    s.rolled_back += 1;
                }
                pending.retain(|p| !us.contains(p));
            }
        }
        if !pending.is_empty() {
            return; // the daemon died with the batch in flight
        }
        // Let a rollback's resync arrive before deciding what is live.
        if b.drain(Duration::from_millis(5)).is_err() {
            return;
        }
    }
}

/// The peer editor: applies forwarded batches and answers with hashes until stopped.
fn peer(addr: std::net::SocketAddr, token: String, stop: Arc<AtomicBool>) {
    let Ok(mut u) = Editor::connect(addr, &token, "unity", 0) else { return };
    while !stop.load(Ordering::SeqCst) {
        if u.pump_until(Duration::from_millis(100), |_| false).is_err() {
            return;
        }
    }
}

fn check_registrations(d: &Daemon, regs: &[(String, String)]) {
    // An editor client: with last_seq 0 the welcome resync arrives before the acks.
    let mut c = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
    for chunk in regs.chunks(1000) {
        let items: Vec<_> = chunk
            .iter()
            .map(|(u, n)| json!({"uuid":u,"kind":"mesh","name":n,"editor_ref":format!("ME:{n}")}))
            .collect();
        let ack = c.request(&json!({"type":"register","request_id":"check","items":items}), &[]).unwrap();
        for (r, (u, _)) in ack["results"].as_array().unwrap_or_else(|| panic!("{ack}")).iter().zip(chunk) {
            assert_eq!(r["status"], "unchanged", "acknowledged registration {u} lost or altered: {r}");
        }
    }
}

#[test]
fn kill_loop_register_and_sync() {
    let rounds = env_or("VIBESYNC_KILL_ROUNDS", 10) as usize;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "kill", 20, 3000, "");
    let args = ["--config", cfg.to_str().unwrap()];
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    for round in 0..rounds {
        // --- load, then SIGKILL at a random moment -----------------------------------------
        let stop = Arc::new(AtomicBool::new(false));
        let p = {
            let (a, t, s) = (d.addr, d.token.clone(), stop.clone());
            std::thread::spawn(move || peer(a, t, s))
        };
        // Let the peer's session open first so batches have a participant.
        std::thread::sleep(Duration::from_millis(30));
        let g = {
            let (a, t, sh, s) = (d.addr, d.token.clone(), shared.clone(), stop.clone());
            std::thread::spawn(move || generate(a, t, round, sh, s))
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        g.join().expect("generator thread panicked");
        p.join().expect("peer thread panicked");

        // --- restart after the crash: nothing acknowledged is lost ----------------------------
        let mut d2 = Daemon::start_with(&data, &args, "127.0.0.1:0");
        let (regs, tracks) = {
            let s = shared.lock().unwrap();
            (s.registered.clone(), s.tracks.clone())
        };
        check_registrations(&d2, &regs);
        // A fresh editor with last_seq 0 gets the whole project in its welcome resync.
        let mut fresh = Editor::connect(d2.addr, &d2.token, "unity", 0).unwrap();
        assert_eq!(fresh.c.welcome["safe_mode"], false, "graceful stops reset the crash-loop counter");
        let must: Vec<&String> = tracks.iter().filter(|(_, t)| t.committed.is_some()).map(|(u, _)| u).collect();
        let got_all =
            fresh.pump_until(Duration::from_secs(10), |e| must.iter().all(|u| e.states.contains_key(*u))).unwrap();
        assert!(got_all, "round {round}: committed uuids missing from the welcome resync");
        fresh.drain(Duration::from_millis(200)).unwrap();
        let resynced: HashMap<String, String> = fresh.states.iter().map(|(u, s)| (u.clone(), state_hash(s))).collect();
        for (u, t) in &tracks {
            match (t.committed, resynced.get(u)) {
                (Some(i), Some(h)) => {
                    let j = t.sent.iter().rposition(|x| x == h);
                    assert!(
                        j.is_some_and(|j| j >= i),
                        "round {round}: {u} recovered with a state older than its committed one (committed #{i}, got #{j:?} of {})",
                        t.sent.len()
                    );
                }
                (Some(i), None) => panic!("round {round}: committed state #{i} of {u} lost"),
                (None, Some(h)) => assert!(t.sent.contains(h), "round {round}: {u} has a state nobody sent"),
                (None, None) => {}
            }
        }
        drop(fresh);

        // --- graceful stop, then offline checks --------------------------------------------------
        assert_eq!(d2.stop(), Some(0), "round {round}: graceful stop after recovery");
        let (code, out, err) = verify(&data);
        assert_eq!(code, 0, "round {round}: verify after kill -9:\n{out}{err}");
        let recs = wal_records(&data);
        let authoritative = check_transactions(&recs);
        for (u, h) in &resynced {
            assert_eq!(
                authoritative.get(u).cloned().flatten().as_ref(),
                Some(h),
                "round {round}: {u}: the registry shows a state other than its last COMMITted one"
            );
        }
        for (u, h) in &authoritative {
            if let Some(h) = h {
                assert_eq!(resynced.get(u), Some(h), "round {round}: committed {u} not in the resync");
            }
        }
        d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    }
    let s = shared.lock().unwrap();
    eprintln!(
        "kill loop: {rounds} rounds in {:.1} s; {} registrations acked ({} requests), {} sync batches committed, {} rolled back, {} uuids synced",
        started.elapsed().as_secs_f64(),
        s.registered.len(),
        s.acks,
        s.committed_batches,
        s.rolled_back,
        s.tracks.len()
    );
    assert!(s.acks >= rounds, "the generator made too little progress: {} register acks", s.acks);
    assert!(s.committed_batches >= rounds, "too few committed sync batches: {}", s.committed_batches);
    drop(s);
    assert_eq!(ping_then_stop(&mut d), Some(0));
}

/// Daemon bug: `vibesync serve` prints "listening on …" (the readiness signal tests and
/// supervisors wait for) before the SIGTERM handler exists; the handler is installed only when
/// the shutdown future is first polled inside `server::run`. A SIGTERM in that window kills
/// the process with the default disposition: no graceful shutdown, boot.json left `running`,
/// the next boot counted as unclean.
#[test]
fn sigterm_right_after_the_listening_line_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..20 {
        let mut d = Daemon::start(&data);
        let code = d.stop();
        assert_eq!(code, Some(0), "attempt {i}: SIGTERM right after the listening line must stop gracefully");
    }
}
