//! Live sync through the real daemon, side by side with a plain TCP relay (tokio, same
//! framing, no WAL) in the same run: `cargo bench -p vibesync --bench sync`.
//!
//! Two protocol clients stand in for the editors (no editor cost): A sends `change`s, B
//! applies each batch at its `batch_end` and answers `applied` with the state hashes, as an
//! editor does. Figures are what was acknowledged (A's `ack`s) and what B holds, never what
//! was sent:
//!
//! 1. one transform A → B, paced (send, wait until B holds it, repeat): p50/p99 for the relay,
//!    the daemon at default settings and the daemon with `batch_window_ms = 0`. On the daemon
//!    B holds it first through the `live` preview (docs/PROTOCOL.md §6.3); the second figure
//!    is until A's `batch_result` says the window's batch committed (verified, durable), and
//!    the next transform is sent only then;
//!    Then back to back, like-for-like with the relay's paced figure: the next transform is
//!    sent as soon as B holds the previous one, to the next of 400 objects in turn (none is
//!    moved again within the live throttle's 16 ms), relay and daemon at default settings;
//! 2. a burst of 20,000 transforms on 8 objects, sent as fast as the socket takes them:
//!    ingested = items acknowledged / time to the last ack; time until B holds the latest
//!    pose of all 8 objects (live or batch), and until a verified batch brought it, counted
//!    from the last send;
//! 3. a drag of 5,000 selected objects: 20 `change` requests of 5,000 transforms each (one
//!    per editor frame): changes acknowledged per second, time until B holds the last pose;
//! 4. one transform while a 100k-vertex mesh batch is in flight (docs/PROTOCOL.md §6.2
//!    "Pipelining"): A sends a `mesh` change of another object (100,000 vertices), B receives
//!    its slow batch and takes `BENCH_MESH_APPLY_MS` (default 500) to answer it, as an editor
//!    applying that mesh; right after B received it, A moves an object. Until a verified batch
//!    makes B hold the pose, and until A's `batch_result` says it committed; with pipelining
//!    (the default) and without (`sync.pipelining = false`: every batch waits for the one in
//!    flight, the behaviour before), each with B answering batches as they are applied and in
//!    arrival order (the shipped editors apply and answer in order).
//!
//! The machine's fdatasync cost is measured at the start and the end of the run.
//! Knobs: `BENCH_N` (paced samples, default 200), `BENCH_DEFAULT_N` (paced samples at default
//! settings, default 40), `BENCH_BURST` (default 20000), `BENCH_DRAG_OBJECTS` (default 5000),
//! `BENCH_DRAG_FRAMES` (default 20), `BENCH_MESH_N` (samples beside a mesh, default 10),
//! `BENCH_MESH_APPLY_MS` (default 500); `BENCH_ONLY_MESH` / `BENCH_ONLY_DRAG` / `BENCH_ONLY_B2B`
//! (set: run only that part; B2B: the back-to-back transform, `BENCH_N` of them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_daemon::client::Client;
use vibesync_protocol::mesh::Mesh;
use vibesync_protocol::Frame;

mod support;
use support::{Acks, BenchDaemon, Held, RelayProc};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

enum Side {
    Daemon(#[allow(dead_code)] BenchDaemon),
    Relay(#[allow(dead_code)] RelayProc),
}

/// A sender, a receiver and the objects they share, on the relay or on a daemon.
struct Rig {
    label: &'static str,
    a: Client,
    acks: Option<Arc<Acks>>,
    held: Arc<Held>,
    objects: Vec<String>,
    next_request: u64,
    _side: Side,
}

impl Rig {
    fn relay(objects: usize) -> Rig {
        let relay = RelayProc::start();
        let held = support::spawn_relay_receiver(relay.connect());
        let a = relay.connect();
        std::thread::sleep(Duration::from_millis(200)); // both accepted by the relay
        let objects = (0..objects).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        Rig { label: "relay", a, acks: None, held, objects, next_request: 0, _side: Side::Relay(relay) }
    }

    fn daemon_pid(&self) -> Option<u32> {
        match &self._side {
            Side::Daemon(d) => Some(d.child.id()),
            Side::Relay(_) => None,
        }
    }

    /// The daemon's CPU since `before` (from [`support::thread_cpu`]), by thread.
    fn print_cpu(&self, before: Option<std::collections::BTreeMap<String, f64>>, items: usize) {
        if let (Some(before), Some(pid)) = (before, self.daemon_pid()) {
            // The verified batches, their commits and the audit's group commits run after
            // B holds the pose: count them too.
            support::wait_cpu_idle(pid, Duration::from_secs(10));
            println!(
                "  {:<28} daemon CPU by thread: {}",
                self.label,
                support::cpu_used(&before, &support::thread_cpu(pid), items)
            );
        }
    }

    fn daemon(label: &'static str, config: &str, objects: usize) -> Rig {
        Rig::daemon_with(label, config, objects, Duration::ZERO, false)
    }

    /// A daemon rig whose receiver takes `mesh_apply` to answer a batch with a mesh (in
    /// arrival order when `in_order`).
    fn daemon_with(label: &'static str, config: &str, objects: usize, mesh_apply: Duration, in_order: bool) -> Rig {
        let d = BenchDaemon::start(&label.replace([' ', ',', '(', ')', '='], "-"), config);
        let held = support::spawn_daemon_receiver_with(d.connect("bench", "unity"), mesh_apply, in_order);
        let a = d.connect("bench", "blender");
        let acks = support::spawn_ack_counter(a.try_clone_stream());
        let mut rig = Rig {
            label,
            a,
            acks: Some(acks),
            held,
            objects: (0..objects).map(|_| uuid::Uuid::new_v4().to_string()).collect(),
            next_request: 0,
            _side: Side::Daemon(d),
        };
        let objs = rig.objects.clone();
        let created = Instant::now();
        let mut goal = HashMap::new();
        for (k, chunk) in objs.chunks(1000).enumerate() {
            let changes: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    goal.insert(u.clone(), 0.0);
                    json!({"op":"create","uuid":u,"kind":"object","name":format!("O{k}-{i}"),"parent":null,"t":[0,0,0],"r":[0,0,0,1],"s":[1,1,1],"visible":true})
                })
                .collect();
            rig.send_changes(changes);
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        if rig.held.wait_for(&goal, deadline).is_none() {
            panic!("{label}: the receiver did not get the {} created objects within 300 s", objs.len());
        }
        // The creates are committed before any figure is taken: a measurement that began while
        // their batch was still open would count its commit as its own.
        let acks = rig.acks.clone().expect("a daemon rig counts acknowledgements");
        for u in &objs {
            if acks.wait_committed_uuid(u, created, deadline).is_none() {
                panic!("{label}: the create of {u} was not committed within 300 s");
            }
        }
        rig
    }

    fn frame(&mut self, changes: Vec<Value>) -> Frame {
        self.next_request += 1;
        let m = json!({"type":"change","request_id":format!("r{}", self.next_request),"base_seq":0,"changes":changes});
        Frame::new(serde_json::to_vec(&m).unwrap(), Vec::new())
    }

    fn send_changes(&mut self, changes: Vec<Value>) {
        let f = self.frame(changes);
        self.a.send_frame(&f).unwrap();
    }
}

fn transform(uuid: &str, x: f64) -> Value {
    json!({"op":"transform","uuid":uuid,"t":[x,0.5,0.25],"r":[0,0,0,1],"s":[1,1,1]})
}

/// Objects the back-to-back run moves in turn: enough that no object is moved again within
/// the live throttle's 16 ms (docs/PROTOCOL.md §6.3) at the relay's pace.
const BACK_TO_BACK_OBJECTS: usize = 400;

/// Send one transform, wait until B holds it, send the next at once (no wait for a commit),
/// each to the next object in turn; `n` times. The relay's paced figure is taken this way, so
/// this is the daemon's like-for-like figure: the paced one at default settings waits ~300 ms
/// for each commit, so every one of its transforms reaches an idle daemon.
fn back_to_back(rig: &mut Rig, n: usize) {
    let (mut lat, mut lost) = (Vec::with_capacity(n), 0);
    // Sample 0 is a warm-up, not recorded.
    for i in 0..=n {
        let obj = rig.objects[i % rig.objects.len()].clone();
        let x = 1000.0 + i as f64;
        let t = Instant::now();
        rig.send_changes(vec![transform(&obj, x)]);
        match rig.held.wait_for(&HashMap::from([(obj, x)]), t + Duration::from_secs(10)) {
            Some(at) if i > 0 => lat.push(at - t),
            Some(_) => {}
            None => lost += 1,
        }
    }
    let how = if rig.acks.is_some() { "held (live)" } else { "held" };
    println!(
        "  {:<28} one transform A -> B {how}, back to back over {} objects, n={n}: {}",
        rig.label,
        rig.objects.len(),
        latencies(&mut lat, lost, "never held")
    );
}

/// "p50 … ms  p99 … ms", and how many samples `missed` their 10 s deadline.
fn latencies(lat: &mut [Duration], missed: usize, what: &str) -> String {
    format!(
        "p50 {:>8.3} ms  p99 {:>8.3} ms{}",
        support::pct(lat, 0.5),
        support::pct(lat, 0.99),
        if missed > 0 { format!("  ({missed} {what} within 10 s)") } else { String::new() }
    )
}

/// Send one transform, wait until B holds it (and, on a daemon, until A hears it committed);
/// `n` times.
fn paced(rig: &mut Rig, n: usize, base: f64) {
    let obj = rig.objects[0].clone();
    let (mut lat, mut committed) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut lost, mut uncommitted) = (0, 0);
    // Sample 0 is a warm-up, not recorded: once it is committed, nothing sent before it (the
    // objects' creates) is still in flight.
    for i in 0..=n {
        let x = base + i as f64;
        let goal = HashMap::from([(obj.clone(), x)]);
        let c0 = rig.acks.as_ref().map(|a| a.snapshot().committed);
        let t = Instant::now();
        rig.send_changes(vec![transform(&obj, x)]);
        match rig.held.wait_for(&goal, t + Duration::from_secs(10)) {
            Some(at) if i > 0 => lat.push(at - t),
            Some(_) => {}
            None => lost += 1,
        }
        if let (Some(acks), Some(c0)) = (&rig.acks, c0) {
            match acks.wait_committed(c0 + 1, t + Duration::from_secs(10)) {
                Some(at) if i > 0 => committed.push(at - t),
                Some(_) => {}
                None => uncommitted += 1,
            }
        }
    }
    let held_how = if rig.acks.is_some() { "held (live)" } else { "held" };
    println!("  {:<28} one transform A -> B {held_how}, n={n}: {}", rig.label, latencies(&mut lat, lost, "never held"));
    if rig.acks.is_some() {
        println!(
            "  {:<28} one transform A -> committed at A, n={n}: {}",
            rig.label,
            latencies(&mut committed, uncommitted, "not committed")
        );
    }
}

/// Send `frames` as fast as the socket takes them; report acknowledged items and the time
/// until B holds `goal`.
fn stream(rig: &mut Rig, what: &str, frames: Vec<Frame>, items: usize, goal: HashMap<String, f64>) {
    // This phase's requests are numbered `first..=last` (`Rig::frame`): only their replies
    // count, whatever replies of earlier phases still arrive meanwhile.
    let (first, last) = (rig.next_request + 1 - frames.len() as u64, rig.next_request);
    let refused_before = rig.acks.as_ref().map(|a| a.snapshot().refused).unwrap_or_default();
    let t0 = Instant::now();
    for f in &frames {
        rig.a.send_frame(f).unwrap();
    }
    let sent = Instant::now();
    let held_at = rig.held.wait_for(&goal, sent + Duration::from_secs(60));
    let batch_at = rig.acks.as_ref().map(|_| rig.held.wait_for_batch(&goal, sent + Duration::from_secs(60)));
    let ingest = match &rig.acks {
        Some(acks) => {
            let per_request = (items / frames.len()) as u64;
            let (answered, ok, last_reply) =
                acks.wait_requests(first, last, per_request, sent + Duration::from_secs(60));
            let s = acks.snapshot();
            let secs = last_reply.map(|l| (l - t0).as_secs_f64()).unwrap_or(f64::NAN);
            let refused: Vec<String> = s
                .refused
                .iter()
                .map(|(c, k)| (c, k - refused_before.get(c).copied().unwrap_or(0)))
                .filter(|(_, k)| *k > 0)
                .map(|(c, k)| format!("{k} {c}"))
                .collect();
            let n = last + 1 - first;
            format!(
                "ingested (acknowledged) {ok} of {items} in {:.3} s = {:.0}/s{}{}",
                secs,
                ok as f64 / secs,
                if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join(", ")) },
                if answered < n { format!("; {} requests unanswered after 60 s", n - answered) } else { String::new() },
            )
        }
        None => format!("sent {items} in {:.3} s (a relay acknowledges nothing)", (sent - t0).as_secs_f64()),
    };
    let held = match held_at {
        Some(at) => format!(
            "B holds the latest pose {:.1} ms after the last send ({:.3} s after the first)",
            at.saturating_duration_since(sent).as_secs_f64() * 1e3,
            (at - t0).as_secs_f64()
        ),
        None => "B never held the latest pose (60 s)".into(),
    };
    let verified = match batch_at {
        None => String::new(),
        Some(Some(at)) => format!(
            "; a verified batch brought it {:.1} ms after the last send",
            at.saturating_duration_since(sent).as_secs_f64() * 1e3
        ),
        Some(None) => "; no batch brought it within 60 s".into(),
    };
    println!("  {:<28} {what}: {ingest}; {held}{verified}", rig.label);
}

fn burst(rig: &mut Rig, total: usize, base: f64) {
    let objs = rig.objects.clone();
    let mut goal = HashMap::new();
    let frames: Vec<Frame> = (0..total)
        .map(|i| {
            let u = &objs[i % objs.len()];
            let x = base + i as f64;
            goal.insert(u.clone(), x);
            rig.frame(vec![transform(u, x)])
        })
        .collect();
    let cpu0 = rig.daemon_pid().map(support::thread_cpu);
    stream(rig, &format!("burst of {total} transforms on {} objects", objs.len()), frames, total, goal);
    rig.print_cpu(cpu0, total);
}

fn drag(rig: &mut Rig, frames: usize, base: f64) {
    let objs = rig.objects.clone();
    let mut goal = HashMap::new();
    let out: Vec<Frame> = (0..frames)
        .map(|k| {
            let x = base + k as f64;
            let changes = objs
                .iter()
                .map(|u| {
                    goal.insert(u.clone(), x);
                    transform(u, x)
                })
                .collect();
            rig.frame(changes)
        })
        .collect();
    let cpu0 = rig.daemon_pid().map(support::thread_cpu);
    stream(rig, &format!("drag of {} objects x {frames} frames", objs.len()), out, frames * objs.len(), goal);
    rig.print_cpu(cpu0, frames * objs.len());
}

/// A mesh of `vertices` vertices (a strip of triangles); `k` makes each one different.
fn big_mesh(vertices: usize, k: usize) -> Vec<u8> {
    let positions: Vec<[f32; 3]> =
        (0..vertices).map(|i| [(i % 1000) as f32 * 0.01, (i / 1000) as f32 * 0.01, k as f32 * 1e-3]).collect();
    let indices: Vec<u32> = (0..vertices as u32 - 2).flat_map(|i| [i, i + 1, i + 2]).collect();
    Mesh { positions, normals: None, uv0: None, indices }.encode()
}

/// Scenario 4: one transform of object 0 right after B received a mesh batch of object 1.
fn beside_mesh(rig: &mut Rig, n: usize) {
    let (obj, meshed) = (rig.objects[0].clone(), rig.objects[1].clone());
    let acks = rig.acks.clone().expect("a daemon rig");
    let (mut held, mut committed, mut mesh_committed) = (vec![], vec![], vec![]);
    let mut lost = 0;
    for i in 0..=n {
        let mesh = big_mesh(100_000, i);
        let hash = Mesh::hash_bytes(&mesh);
        let before = rig.held.mesh_batches();
        rig.next_request += 1;
        let m = json!({"type":"change","request_id":format!("r{}", rig.next_request),"base_seq":0,
            "changes":[{"op":"mesh","uuid":meshed,"mesh_hash":hash}]});
        let t_mesh = Instant::now();
        rig.a.send_frame(&Frame::new(serde_json::to_vec(&m).unwrap(), mesh)).unwrap();
        if !rig.held.wait_mesh_batches(before, t_mesh + Duration::from_secs(60)) {
            panic!("{}: B never received the mesh batch", rig.label);
        }
        // The mesh batch is in flight (B is applying it): move the other object.
        let x = 1000.0 + i as f64;
        let t = Instant::now();
        rig.send_changes(vec![transform(&obj, x)]);
        let end = t + Duration::from_secs(30);
        let by_batch = rig.held.wait_for_batch(&HashMap::from([(obj.clone(), x)]), end);
        let done = acks.wait_committed_uuid(&obj, t, end);
        // After B received it (an earlier commit naming the object may still be read after
        // the mesh was sent: its create's, when the sender reads results late).
        let mesh_done = acks.wait_committed_uuid(&meshed, t, end);
        if i == 0 {
            continue; // warm-up
        }
        match (by_batch, done, mesh_done) {
            (Some(h), Some(c), Some(mc)) => {
                if std::env::var_os("BENCH_TRACE").is_some() {
                    eprintln!("sample {i}: mesh batch at B +{:?}, held {:?} committed {:?} mesh committed +{:?} (from mesh send)", t - t_mesh, h - t, c - t, mc - t_mesh);
                }
                held.push(h - t);
                committed.push(c - t);
                mesh_committed.push(mc - t);
            }
            _ => lost += 1,
        }
    }
    println!(
        "  {:<44} n={n}: transform held at B by its batch p50 {:>7.1} ms p99 {:>7.1} ms; committed at A p50 {:>7.1} ms p99 {:>7.1} ms; (the mesh committed p50 {:>7.1} ms after the transform was sent){}",
        rig.label,
        support::pct(&mut held, 0.5),
        support::pct(&mut held, 0.99),
        support::pct(&mut committed, 0.5),
        support::pct(&mut committed, 0.99),
        support::pct(&mut mesh_committed, 0.5),
        if lost > 0 { format!("  ({lost} samples incomplete within 30 s)") } else { String::new() }
    );
}

fn main() {
    if std::env::var_os(support::RELAY_ROLE).is_some() {
        support::run_relay();
    }
    let n = env_usize("BENCH_N", 200);
    let default_n = env_usize("BENCH_DEFAULT_N", 40);
    let total = env_usize("BENCH_BURST", 20_000);
    let drag_objects = env_usize("BENCH_DRAG_OBJECTS", 5_000);
    let drag_frames = env_usize("BENCH_DRAG_FRAMES", 20);
    let mesh_n = env_usize("BENCH_MESH_N", 10);
    let mesh_apply = Duration::from_millis(env_usize("BENCH_MESH_APPLY_MS", 500) as u64);
    let only_mesh = std::env::var_os("BENCH_ONLY_MESH").is_some();
    let only_drag = std::env::var_os("BENCH_ONLY_DRAG").is_some();
    support::print_fdatasync_cost();
    support::print_handoff_cost();
    support::print_load();

    if std::env::var_os("BENCH_ONLY_B2B").is_some() {
        // The back-to-back transform alone (e.g. to profile the daemon's live path).
        println!("== one transform A -> B, back to back (the next sent once B holds it; objects in turn)");
        back_to_back(&mut Rig::relay(BACK_TO_BACK_OBJECTS), n);
        back_to_back(&mut Rig::daemon("daemon, default settings", "", BACK_TO_BACK_OBJECTS), n);
        return;
    }
    if !only_drag {
        others(n, default_n, total, mesh_n, mesh_apply, only_mesh);
    }
    if !only_mesh {
        println!("== drag");
        let mut relay = Rig::relay(drag_objects);
        drag(&mut relay, drag_frames, 1.0);
        drop(relay);
        let mut default = Rig::daemon("daemon, default settings", "", drag_objects);
        drag(&mut default, drag_frames, 1.0);
        drop(default);
    }
    support::print_load();
    support::print_fdatasync_cost();
}

/// Every part but the drag: beside a mesh, paced, back to back, burst.
fn others(n: usize, default_n: usize, total: usize, mesh_n: usize, mesh_apply: Duration, only_mesh: bool) {
    let window0 = "[sync]\nbatch_window_ms = 0\n";
    println!(
        "== one transform beside a 100k-vertex mesh batch in flight (B answers the mesh after {} ms)",
        mesh_apply.as_millis()
    );
    for (window, wlabel) in [("", "default settings"), (window0, "window 0")] {
        for (pipelining, plabel) in [("", "pipelining"), ("pipelining = false\n", "no pipelining (before)")] {
            for (in_order, olabel) in [(false, "answers as applied"), (true, "answers in order")] {
                let config = if window.is_empty() && pipelining.is_empty() {
                    String::new()
                } else {
                    format!("[sync]\n{}{pipelining}", window.trim_start_matches("[sync]\n"))
                };
                let label: &'static str = Box::leak(format!("{wlabel}, {plabel}, {olabel}").into_boxed_str());
                let mut rig = Rig::daemon_with(label, &config, 2, mesh_apply, in_order);
                beside_mesh(&mut rig, mesh_n);
            }
        }
    }
    if only_mesh {
        return;
    }

    println!("== one transform A -> B (paced)");
    let mut relay = Rig::relay(8);
    paced(&mut relay, n, 1.0);
    let mut default = Rig::daemon("daemon, default settings", "", 8);
    paced(&mut default, default_n, 1.0);
    let mut w0 = Rig::daemon("daemon, window 0", window0, 8);
    paced(&mut w0, n, 1.0);
    {
        println!("== one transform A -> B, back to back (the next sent once B holds it; objects in turn)");
        let mut relay = Rig::relay(BACK_TO_BACK_OBJECTS);
        back_to_back(&mut relay, n);
        let mut default = Rig::daemon("daemon, default settings", "", BACK_TO_BACK_OBJECTS);
        back_to_back(&mut default, n);
    }

    println!("== burst");
    burst(&mut relay, total, 100_000.0);
    burst(&mut default, total, 100_000.0);
    burst(&mut w0, total, 100_000.0);
    drop((relay, default, w0));
}
