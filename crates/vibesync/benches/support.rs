//! Shared by the benches: the real `vibesync serve` on port 0 in a temporary data dir, the
//! plain relay it is compared with, a receiving editor stand-in and an acknowledgement
//! counter. Every figure a bench prints is what was acknowledged or what the receiver holds,
//! never what was sent (docs/BENCHMARKS.md).
#![allow(dead_code)] // each bench uses its own part

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_daemon::client::Client;
use vibesync_protocol::state::state_hash;

pub struct BenchDaemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub token: String,
    pub dir: PathBuf,
}

impl BenchDaemon {
    /// Start the daemon with `config` (TOML text, may be empty) and wait for its address.
    pub fn start(name: &str, config: &str) -> BenchDaemon {
        // One directory per daemon, even for two alive at once under one label (a dropped
        // daemon removes its directory).
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vibesync-{name}-bench-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let data = dir.join("data");
        // VIBESYNC_BENCH_BIN runs another build of the daemon (e.g. main's, for before/after).
        let bin = std::env::var("VIBESYNC_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vibesync").to_string());
        let mut child = Command::new(bin)
            .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vibesync serve");
        let addr = read_listen_line(&mut child);
        let token = std::fs::read_to_string(data.join("token")).unwrap().trim().to_string();
        BenchDaemon { child, addr, token, dir }
    }

    pub fn connect(&self, project: &str, editor: &str) -> Client {
        Client::connect(self.addr, &self.token, project, editor).unwrap()
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The address from the first stdout line; the rest of stdout is drained in the background
/// (`serve` prints more after that line, and a closed pipe would make it fail).
fn read_listen_line(child: &mut Child) -> SocketAddr {
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// The machine's fdatasync cost, measured now in the directory the daemons use.
pub fn print_fdatasync_cost() {
    let dir = std::env::temp_dir().join(format!("vibesync-fsync-probe-{}", std::process::id()));
    match vibesync_wal::probe::fdatasync_cost(&dir, 500) {
        Ok(c) => println!("{c}  [{}]", std::env::temp_dir().display()),
        Err(e) => println!("fdatasync probe failed: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The machine's cost of waking a parked thread, measured now: a message sent over a std
/// channel to a thread blocked on it and answered the same way (two hand-offs), after the
/// thread has parked, from a thread that stays busy. Each step of the daemon's pipeline
/// that runs on its own thread pays one hand-off when it is idle (docs/BENCHMARKS.md,
/// "Daemon: round trips on loopback", session 12).
pub fn print_handoff_cost() {
    let (to, from_main) = std::sync::mpsc::channel::<u32>();
    let (back, from_thread) = std::sync::mpsc::channel::<u32>();
    let echo = std::thread::spawn(move || {
        for v in from_main {
            if back.send(v).is_err() {
                break;
            }
        }
    });
    let mut rtt = Vec::with_capacity(2000);
    for i in 0..2000 {
        // Let the echo thread park first, as an idle pipeline step does, while this thread
        // stays on its core (as the busy step handing work over does): the wake is then one
        // from another core, which is what the daemon's hand-offs mostly are.
        let parked = Instant::now();
        while parked.elapsed() < Duration::from_micros(200) {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        to.send(i).unwrap();
        from_thread.recv().unwrap();
        rtt.push(t.elapsed());
    }
    drop(to);
    let _ = echo.join();
    println!(
        "thread hand-off to a parked thread and back (std channel, n=2000): p50 {:.0} us, p99 {:.0} us",
        pct(&mut rtt, 0.5) * 1e3,
        pct(&mut rtt, 0.99) * 1e3
    );
}

/// The machine's load average (shared machines: figures are comparable within one run).
pub fn print_load() {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(l) => println!("load average: {}", l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        Err(_) => println!("load average: unknown (no /proc/loadavg)"),
    }
}

pub fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

// ---- the plain relay ----------------------------------------------------------------------

/// Environment variable that turns a bench binary into the relay process.
pub const RELAY_ROLE: &str = "VIBESYNC_BENCH_ROLE";

/// A plain TCP relay (tokio, 2 workers, same framing, no WAL, no registry, no parsing): every
/// frame a client sends is written to every other client. The floor a live bridge is
/// compared with; run as a separate process like the daemon.
pub struct RelayProc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl RelayProc {
    pub fn start() -> RelayProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(RELAY_ROLE, "relay")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the relay");
        let addr = read_listen_line(&mut child);
        RelayProc { child, addr }
    }

    pub fn connect(&self) -> Client {
        Client::connect_raw(self.addr).unwrap()
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the relay (never returns). Called by a bench's `main` when [`RELAY_ROLE`] is set.
pub fn run_relay() -> ! {
    use futures::{SinkExt, StreamExt};
    use tokio::sync::mpsc;
    use tokio_util::codec::{FramedRead, FramedWrite};
    use vibesync_protocol::{Frame, FrameCodec};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("relay listening on {}", listener.local_addr().unwrap());
        type Peers = Arc<Mutex<Vec<(u64, mpsc::Sender<Frame>)>>>;
        let peers: Peers = Arc::default();
        let mut next = 0u64;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let (rd, wr) = stream.into_split();
            let (tx, mut rx) = mpsc::channel::<Frame>(1024);
            let id = next;
            next += 1;
            peers.lock().unwrap().push((id, tx));
            tokio::spawn(async move {
                let mut w = FramedWrite::new(wr, FrameCodec::default());
                while let Some(f) = rx.recv().await {
                    if w.send(f).await.is_err() {
                        break;
                    }
                }
            });
            let peers = peers.clone();
            tokio::spawn(async move {
                let mut r = FramedRead::new(rd, FrameCodec::default());
                while let Some(Ok(f)) = r.next().await {
                    let targets: Vec<_> =
                        peers.lock().unwrap().iter().filter(|(p, _)| *p != id).map(|(_, t)| t.clone()).collect();
                    for t in targets {
                        let _ = t.send(f.clone()).await;
                    }
                }
                peers.lock().unwrap().retain(|(p, _)| *p != id);
            });
        }
    });
    std::process::exit(0)
}

// ---- the receiving editor ----------------------------------------------------------------

/// What the receiving side holds: uuid → x of the last pose it applied, from any frame
/// (`live` previews included), and of the last pose a fenced batch applied.
#[derive(Default)]
pub struct Held {
    poses: Mutex<Poses>,
    cv: Condvar,
}

#[derive(Default)]
struct Poses {
    shown: HashMap<String, f64>,
    batched: HashMap<String, f64>,
    /// When the receiver thread last applied a pose (of any frame, of a batch): a goal that
    /// holds was reached then, not when the waiting thread happened to wake up.
    shown_at: Option<Instant>,
    batched_at: Option<Instant>,
    mesh_batches: u64,
}

impl Held {
    /// Wait until every uuid of `goal` holds its x (from a live preview or a batch); the
    /// instant it was seen, or None at the deadline.
    pub fn wait_for(&self, goal: &HashMap<String, f64>, deadline: Instant) -> Option<Instant> {
        self.wait(goal, deadline, |p| (&p.shown, p.shown_at))
    }

    /// Wait until a fenced batch (verified by the daemon) made every uuid of `goal` hold its x.
    pub fn wait_for_batch(&self, goal: &HashMap<String, f64>, deadline: Instant) -> Option<Instant> {
        self.wait(goal, deadline, |p| (&p.batched, p.batched_at))
    }

    fn wait(
        &self,
        goal: &HashMap<String, f64>,
        deadline: Instant,
        which: impl Fn(&Poses) -> (&HashMap<String, f64>, Option<Instant>),
    ) -> Option<Instant> {
        let mut held = self.poses.lock().unwrap();
        loop {
            let (m, at) = which(&held);
            if goal.iter().all(|(u, x)| m.get(u).is_some_and(|h| (h - x).abs() < 1e-6)) {
                return Some(at.unwrap_or_else(Instant::now));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            held = self.cv.wait_timeout(held, deadline - now).unwrap().0;
        }
    }

    /// Batches carrying a mesh received so far.
    pub fn mesh_batches(&self) -> u64 {
        self.poses.lock().unwrap().mesh_batches
    }

    /// Wait until more than `n` batches carrying a mesh were received.
    pub fn wait_mesh_batches(&self, n: u64, deadline: Instant) -> bool {
        let mut held = self.poses.lock().unwrap();
        while held.mesh_batches <= n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            held = self.cv.wait_timeout(held, deadline - now).unwrap().0;
        }
        true
    }

    fn mesh_batch(&self) {
        self.poses.lock().unwrap().mesh_batches += 1;
        self.cv.notify_all();
    }

    fn set(&self, updates: impl IntoIterator<Item = (String, f64)>, batch: bool) {
        let mut held = self.poses.lock().unwrap();
        let now = Instant::now();
        for (u, x) in updates {
            if batch {
                held.batched.insert(u.clone(), x);
                held.batched_at = Some(now);
            }
            held.shown.insert(u, x);
            held.shown_at = Some(now);
        }
        self.cv.notify_all();
    }
}

/// Receive batches as an editor does (a batch is applied at its `batch_end`) and answer
/// `applied` with the state hashes; apply `live` previews at once (docs/PROTOCOL.md §6.3);
/// runs until the connection closes.
pub fn spawn_daemon_receiver(c: Client) -> Arc<Held> {
    spawn_daemon_receiver_with(c, Duration::ZERO, false)
}

/// The receiving editor stand-in, taking `mesh_apply` to answer a batch that carries a mesh
/// (as an editor applying a large mesh does). `in_order`: batches are answered in arrival
/// order, so the batches after a mesh wait for it (the shipped editors apply batches in
/// order); otherwise each is answered as soon as it is applied.
pub fn spawn_daemon_receiver_with(mut c: Client, mesh_apply: Duration, in_order: bool) -> Arc<Held> {
    let held = Arc::new(Held::default());
    let h = held.clone();
    c.set_read_timeout(None);
    std::thread::spawn(move || {
        let mut states: BTreeMap<String, Value> = BTreeMap::new();
        let mut batch: Vec<(String, Value)> = Vec::new();
        let answers = spawn_answerer(c.try_clone_stream(), in_order);
        while let Ok(f) = c.recv_frame() {
            let m: Value = serde_json::from_slice(&f.json).unwrap();
            match m["type"].as_str() {
                Some("live") => {
                    let ch = &m["change"];
                    let Some(u) = ch["uuid"].as_str() else { continue };
                    if let (Some(s), Some("transform")) = (states.get_mut(u), ch["op"].as_str()) {
                        s["t"] = ch["t"].clone();
                        s["r"] = ch["r"].clone();
                        s["s"] = ch["s"].clone();
                        if let Some(x) = ch["t"][0].as_f64() {
                            h.set([(u.to_string(), x)], false);
                        }
                    }
                }
                Some("batch_begin") => batch.clear(),
                Some("apply") => batch.push((m["change"]["uuid"].as_str().unwrap().to_string(), m["change"].clone())),
                Some("batch_end") => {
                    let mut hashes = serde_json::Map::new();
                    let mut poses = Vec::new();
                    let mut mesh = false;
                    for (u, ch) in batch.drain(..) {
                        let s = states.entry(u.clone()).or_insert_with(|| json!({}));
                        match ch["op"].as_str() {
                            Some("create") => {
                                *s = json!({"kind":ch["kind"],"name":ch["name"],"parent":ch["parent"],"visible":ch["visible"],"t":ch["t"],"r":ch["r"],"s":ch["s"]});
                                if ch["mesh_hash"].is_string() {
                                    s["mesh_hash"] = ch["mesh_hash"].clone();
                                    mesh = true;
                                }
                            }
                            Some("mesh") => {
                                s["mesh_hash"] = ch["mesh_hash"].clone();
                                mesh = true;
                            }
                            Some("transform") => {
                                s["t"] = ch["t"].clone();
                                s["r"] = ch["r"].clone();
                                s["s"] = ch["s"].clone();
                            }
                            _ => {}
                        }
                        if let Some(x) = s["t"][0].as_f64() {
                            poses.push((u.clone(), x));
                        }
                        hashes.insert(u.clone(), json!(state_hash(s)));
                    }
                    // An editor holds the batch's poses before it answers.
                    h.set(poses, true);
                    if mesh {
                        h.mesh_batch();
                    }
                    if m["batch_id"].is_string() {
                        let at = Instant::now() + if mesh { mesh_apply } else { Duration::ZERO };
                        let msg = json!({"type":"applied","batch_id":m["batch_id"],"seq":m["seq"],"hashes":hashes});
                        if answers.send((at, msg)).is_err() {
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
    });
    held
}

/// Sends `applied` answers at their time (`(when, message)`), in arrival order when
/// `in_order`, else each when due.
fn spawn_answerer(mut c: Client, in_order: bool) -> std::sync::mpsc::Sender<(Instant, Value)> {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Value)>();
    std::thread::spawn(move || {
        let mut waiting: std::collections::VecDeque<(Instant, Value)> = Default::default();
        loop {
            let now = Instant::now();
            while let Some(i) = waiting.iter().position(|(at, _)| *at <= now) {
                if in_order && i > 0 {
                    break;
                }
                let (_, msg) = waiting.remove(i).unwrap();
                if c.send(&msg).is_err() {
                    return;
                }
            }
            let next = if in_order { waiting.front().map(|a| a.0) } else { waiting.iter().map(|a| a.0).min() };
            let got = match next {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(a) => waiting.push_back(a),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    });
    tx
}

/// The relay's receiver: every frame is a `change` as the sender wrote it.
pub fn spawn_relay_receiver(mut c: Client) -> Arc<Held> {
    let held = Arc::new(Held::default());
    let h = held.clone();
    c.set_read_timeout(None);
    std::thread::spawn(move || {
        while let Ok(f) = c.recv_frame() {
            let m: Value = serde_json::from_slice(&f.json).unwrap();
            let poses: Vec<(String, f64)> = m["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|ch| Some((ch["uuid"].as_str()?.to_string(), ch["t"][0].as_f64()?)))
                .collect();
            h.set(poses, false);
        }
    });
    held
}

// ---- acknowledgements ----------------------------------------------------------------------

/// Replies to the sender's requests, counted by a reader thread.
#[derive(Default)]
pub struct Acks {
    state: Mutex<AckState>,
    cv: Condvar,
}

#[derive(Default, Clone, Debug)]
pub struct AckState {
    /// Requests answered (ack or error).
    pub replies: u64,
    /// Items acknowledged without an error status.
    pub ok_items: u64,
    /// Items refused, by code; whole requests refused count every item they carried as 1.
    pub refused: BTreeMap<String, u64>,
    pub last_reply: Option<Instant>,
    /// `batch_result`s with outcome `committed` (the sender's changes verified and durable).
    pub committed: u64,
    pub last_committed: Option<Instant>,
    /// uuid → when the last committed `batch_result` naming it was read.
    pub committed_at: HashMap<String, Instant>,
    /// Request number (`request_id` "r<N>") → items acknowledged without an error, and
    /// when its reply was read: a phase counts only its own requests' replies.
    pub by_request: HashMap<u64, (u64, Instant)>,
}

impl Acks {
    /// Wait until every request numbered `first..=last` is answered (or the deadline);
    /// returns (requests answered, items acknowledged without an error, when the last of
    /// those replies was read) over that range only. A request counts at most `per_request`
    /// items: the `ack` of a request that carried changes merged over the rate limit lists
    /// them again (docs/PROTOCOL.md §2), after the requests they came in were answered
    /// `coalesced`.
    pub fn wait_requests(
        &self,
        first: u64,
        last: u64,
        per_request: u64,
        deadline: Instant,
    ) -> (u64, u64, Option<Instant>) {
        let mut s = self.state.lock().unwrap();
        let count = |s: &AckState| {
            let mut r = (0, 0, None::<Instant>);
            for k in first..=last {
                if let Some((ok, at)) = s.by_request.get(&k) {
                    r.0 += 1;
                    r.1 += (*ok).min(per_request);
                    r.2 = Some(r.2.map_or(*at, |t: Instant| t.max(*at)));
                }
            }
            r
        };
        loop {
            let r = count(&s);
            let now = Instant::now();
            if r.0 > last - first || now >= deadline {
                return r;
            }
            s = self.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Wait until `n` replies arrived (or the deadline); returns the counters then.
    pub fn wait_replies(&self, n: u64, deadline: Instant) -> AckState {
        let mut s = self.state.lock().unwrap();
        while s.replies < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = self.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
        s.clone()
    }

    /// Wait until `n` committed `batch_result`s arrived; the instant the n-th was read.
    pub fn wait_committed(&self, n: u64, deadline: Instant) -> Option<Instant> {
        let mut s = self.state.lock().unwrap();
        while s.committed < n {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = self.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
        s.last_committed
    }

    /// Wait until a committed `batch_result` naming `uuid` is read after `after`; its instant.
    pub fn wait_committed_uuid(&self, uuid: &str, after: Instant, deadline: Instant) -> Option<Instant> {
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some(at) = s.committed_at.get(uuid).filter(|at| **at > after) {
                return Some(*at);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = self.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    pub fn snapshot(&self) -> AckState {
        self.state.lock().unwrap().clone()
    }
}

/// Read the sender's side of the connection, counting acknowledgements.
pub fn spawn_ack_counter(mut c: Client) -> Arc<Acks> {
    let acks = Arc::new(Acks::default());
    let a = acks.clone();
    c.set_read_timeout(None);
    std::thread::spawn(move || {
        while let Ok(f) = c.recv_frame() {
            let m: Value = serde_json::from_slice(&f.json).unwrap();
            let mut s = a.state.lock().unwrap();
            match m["type"].as_str() {
                Some("ack") => {
                    s.replies += 1;
                    let mut ok = 0;
                    for r in m["results"].as_array().into_iter().flatten() {
                        if r["status"] == "error" {
                            let code = r["error_code"].as_str().unwrap_or("error").to_string();
                            *s.refused.entry(code).or_default() += 1;
                        } else {
                            s.ok_items += 1;
                            ok += 1;
                        }
                    }
                    if let Some(k) = m["request_id"].as_str().and_then(|r| r.strip_prefix('r')?.parse().ok()) {
                        s.by_request.insert(k, (ok, Instant::now()));
                    }
                }
                Some("error") if m["request_id"].is_string() => {
                    s.replies += 1;
                    *s.refused.entry(m["code"].as_str().unwrap_or("?").to_string()).or_default() += 1;
                }
                Some("batch_result") if m["outcome"] == "committed" => {
                    let now = Instant::now();
                    s.committed += 1;
                    s.last_committed = Some(now);
                    for u in m["uuids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                        s.committed_at.insert(u.to_string(), now);
                    }
                    a.cv.notify_all();
                    continue;
                }
                _ => continue,
            }
            s.last_reply = Some(Instant::now());
            a.cv.notify_all();
        }
    });
    acks
}

/// CPU seconds used so far by each thread of process `pid`, summed by thread name (Linux
/// `/proc/<pid>/task/*/stat`; empty elsewhere). Taken before and after a scenario, the
/// difference is the daemon's own cost of it, whatever else the machine runs.
pub fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    // SAFETY: sysconf reads a constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut by_name = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        // The name, then (from field 3 on) utime and stime are fields 14 and 15.
        let name = stat[open + 1..close].trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: f64 = rest.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + rest.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *by_name.entry(name).or_insert(0.0) += ticks / tick;
    }
    by_name
}

/// CPU time (user + system, seconds) of this process so far, ended threads included: the
/// bench's own clients share the machine's cores with the daemon.
pub fn own_cpu() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value, and getrusage only writes the struct
    // it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// `after - before` of [`thread_cpu`], as "name 1.23 s, …, total 4.56 s = 7.8 µs per item".
pub fn cpu_used(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    items: usize,
) -> String {
    let mut parts = vec![];
    let mut total = 0.0;
    for (name, a) in after {
        let d = a - before.get(name).copied().unwrap_or(0.0);
        total += d;
        if d >= 0.005 {
            parts.push(format!("{name} {d:.2} s"));
        }
    }
    format!("{}; total {total:.2} s = {:.1} µs per item", parts.join(", "), total * 1e6 / items.max(1) as f64)
}

/// Wait until process `pid` stops using CPU (< 10 ms in 500 ms), `max` at most.
pub fn wait_cpu_idle(pid: u32, max: Duration) {
    let end = Instant::now() + max;
    let mut last = thread_cpu(pid).values().sum::<f64>();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        let now = thread_cpu(pid).values().sum::<f64>();
        if now - last < 0.01 {
            return;
        }
        last = now;
    }
}
