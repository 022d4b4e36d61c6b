//! A small editor stand-in for the resilience suites (modelled on `sync.rs`'s `Mini`, copied
//! rather than shared so the two can evolve independently). Unlike `Mini` it never panics on
//! a dropped connection: every call returns `Result`, because the kill loop pulls the daemon
//! away mid-request on purpose.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_protocol::state::state_hash;
use vibesync_protocol::Frame;

use crate::common::*;

pub struct Editor {
    pub c: Client,
    pub unit: f64,
    /// Canonical states (meters) as this editor holds them.
    pub states: BTreeMap<String, Value>,
    pub last_seq: u64,
    /// Every `batch_result` received, in order.
    pub results: Vec<Value>,
    /// (batch_id, path, count) of every fenced batch applied.
    pub batches: Vec<(String, String, usize)>,
    /// `error` frames that were not the reply to a request.
    pub errors: Vec<Value>,
    /// Whether to answer batches with `applied`.
    pub answer: bool,
    /// Acks that were not awaited by `request` (fire-and-forget sends), and their per-item
    /// errors.
    pub unsolicited_acks: usize,
    pub item_errors: Vec<Value>,
}

pub type R<T> = Result<T, String>;

impl Editor {
    pub fn connect(addr: SocketAddr, token: &str, editor: &str, last_seq: u64) -> R<Editor> {
        Editor::connect_to(addr, token, "demo", editor, last_seq)
    }

    pub fn connect_to(addr: SocketAddr, token: &str, project: &str, editor: &str, last_seq: u64) -> R<Editor> {
        let mut c = Client::connect_with(addr, token, project, editor, 1.0, last_seq).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(20)));
        Ok(Editor {
            c,
            unit: 1.0,
            states: BTreeMap::new(),
            last_seq,
            results: vec![],
            batches: vec![],
            errors: vec![],
            answer: true,
            unsolicited_acks: 0,
            item_errors: vec![],
        })
    }

    fn recv(&mut self) -> R<(Value, Vec<u8>)> {
        let f = self.c.recv_frame().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&f.json).map_err(|e| format!("daemon sent invalid JSON: {e}"))?;
        Ok((v, f.attachment.to_vec()))
    }

    /// Send a request (optionally with an attachment) and return its reply (`ack`, `pong`,
    /// `status` or `error` with the same request_id), handling batches that arrive first.
    pub fn request(&mut self, msg: &Value, attachment: &[u8]) -> R<Value> {
        let rid = msg["request_id"].clone();
        self.c
            .send_frame(&Frame::new(serde_json::to_vec(msg).unwrap(), attachment.to_vec()))
            .map_err(|e| e.to_string())?;
        loop {
            let (m, a) = self.recv()?;
            let t = m["type"].as_str().unwrap_or("");
            if matches!(t, "ack" | "pong" | "status" | "error") && m["request_id"] == rid {
                return Ok(m);
            }
            self.handle(m, a)?;
        }
    }

    /// Send `change`, applying it locally first (an editor holds what it sends).
    pub fn change(&mut self, rid: &str, changes: Vec<Value>) -> R<Value> {
        for ch in &changes {
            let u = ch["uuid"].as_str().unwrap_or("");
            if ch["op"] == "create" || self.states.contains_key(u) {
                self.apply(ch);
            }
        }
        let msg = json!({"type":"change","request_id":rid,"base_seq":self.last_seq,"changes":changes});
        self.request(&msg, &[])
    }

    /// Process traffic until `pred` holds (true) or `timeout` passes (false).
    pub fn pump_until(&mut self, timeout: Duration, mut pred: impl FnMut(&Editor) -> bool) -> R<bool> {
        let end = Instant::now() + timeout;
        while !pred(self) {
            if Instant::now() > end {
                return Ok(false);
            }
            let left = end.saturating_duration_since(Instant::now());
            self.c.set_read_timeout(Some(left.clamp(Duration::from_millis(1), Duration::from_millis(50))));
            let r = self.c.recv_frame();
            self.c.set_read_timeout(Some(Duration::from_secs(20)));
            match r {
                Ok(f) => {
                    let m: Value = serde_json::from_slice(&f.json).map_err(|e| e.to_string())?;
                    self.handle(m, f.attachment.to_vec())?;
                }
                Err(e) => {
                    let s = e.to_string();
                    if !(s.contains("timed out") || s.contains("WouldBlock") || s.contains("temporarily unavailable")) {
                        return Err(s);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Process traffic until nothing arrives for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> R<usize> {
        let mut n = 0;
        loop {
            self.c.set_read_timeout(Some(quiet));
            let r = self.c.recv_frame();
            self.c.set_read_timeout(Some(Duration::from_secs(20)));
            match r {
                Ok(f) => {
                    let m: Value = serde_json::from_slice(&f.json).map_err(|e| e.to_string())?;
                    self.handle(m, f.attachment.to_vec())?;
                    n += 1;
                }
                Err(e) => {
                    let s = e.to_string();
                    if s.contains("timed out") || s.contains("WouldBlock") || s.contains("temporarily unavailable") {
                        return Ok(n);
                    }
                    return Err(s);
                }
            }
        }
    }

    fn handle(&mut self, m: Value, _att: Vec<u8>) -> R<()> {
        match m["type"].as_str().unwrap_or("") {
            "batch_begin" => {
                let id = m["batch_id"].as_str().unwrap_or_default().to_string();
                let count = m["count"].as_u64().unwrap_or(0) as usize;
                let mut touched = vec![];
                // A batch is contiguous (docs/PROTOCOL.md §6.3): exactly its `count` applies,
                // then its `batch_end`, with nothing else between the fences.
                let end = loop {
                    let (f, _) = self.recv()?;
                    match f["type"].as_str() {
                        Some("apply") if f["batch_id"] == id.as_str() && touched.len() < count => {
                            touched.push(self.apply(&f["change"]))
                        }
                        Some("batch_end") if f["batch_id"] == id.as_str() && touched.len() == count => break f,
                        _ => {
                            return Err(format!(
                                "batch {id}: {f} between its fences after {} of {count} applies (PROTOCOL §6.3: a batch is contiguous)",
                                touched.len()
                            ))
                        }
                    }
                };
                self.last_seq = self.last_seq.max(end["seq"].as_u64().unwrap_or(0));
                self.batches.push((id.clone(), m["path"].as_str().unwrap_or("").to_string(), count));
                if self.answer {
                    let mut hashes = serde_json::Map::new();
                    for u in touched {
                        if let Some(s) = self.states.get(&u) {
                            hashes.insert(u, json!(state_hash(s)));
                        }
                    }
                    self.c
                        .send(&json!({"type":"applied","batch_id":id,"seq":self.last_seq,"hashes":hashes}))
                        .map_err(|e| e.to_string())?;
                }
            }
            "batch_result" => {
                self.last_seq = self.last_seq.max(m["seq"].as_u64().unwrap_or(0));
                self.results.push(m);
            }
            "error" => self.errors.push(m),
            "ack" => {
                self.unsolicited_acks += 1;
                for r in m["results"].as_array().into_iter().flatten() {
                    if r["status"] == "error" {
                        self.item_errors.push(r.clone());
                    }
                }
            }
            "pong" | "status" => {} // replies to fire-and-forget requests
            "peers" | "conflict" | "quarantine_released" | "live" => {} // events (PROTOCOL §6.2, §6.3, §6.8)
            "safe_mode" => self.errors.push(m),
            other => return Err(format!("unexpected message {other}: {m}")),
        }
        Ok(())
    }

    fn apply(&mut self, ch: &Value) -> String {
        let u = ch["uuid"].as_str().unwrap_or_default().to_string();
        let unit = self.unit;
        let meters = |v: &Value| {
            json!(v.as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0) * unit).collect::<Vec<_>>()))
        };
        match ch["op"].as_str().unwrap_or("") {
            "create" => {
                let mut s = json!({"kind":ch["kind"],"name":ch["name"],"parent":ch["parent"],"visible":ch.get("visible").cloned().unwrap_or(json!(true)),"t":meters(&ch["t"]),"r":ch["r"],"s":ch["s"]});
                if let Some(h) = ch.get("mesh_hash").filter(|h| !h.is_null()) {
                    s["mesh_hash"] = h.clone();
                }
                if let Some(m) = ch.get("material").filter(|m| !m.is_null()) {
                    s["material"] = m.clone();
                }
                self.states.insert(u.clone(), s);
            }
            "delete" => {
                self.states.remove(&u);
            }
            op => {
                if let Some(s) = self.states.get_mut(&u) {
                    match op {
                        "transform" => {
                            s["t"] = meters(&ch["t"]);
                            s["r"] = ch["r"].clone();
                            s["s"] = ch["s"].clone();
                        }
                        "rename" => s["name"] = ch["name"].clone(),
                        "visibility" => s["visible"] = ch["visible"].clone(),
                        "reparent" => s["parent"] = ch["parent"].clone(),
                        "material" => s["material"] = ch["material"].clone(),
                        "mesh" => s["mesh_hash"] = ch["mesh_hash"].clone(),
                        _ => {}
                    }
                }
            }
        }
        u
    }
}

pub fn create_op(u: &str, name: &str, t: [f64; 3]) -> Value {
    json!({"op":"create","uuid":u,"kind":"object","name":name,"parent":null,"t":t,"r":[0,0,0,1],"s":[1,1,1],"visible":true})
}

pub fn transform_op(u: &str, t: [f64; 3]) -> Value {
    json!({"op":"transform","uuid":u,"t":t,"r":[0,0,0,1],"s":[1,1,1]})
}

/// A config file with a short batch window (so tests run fast) plus `extra` TOML lines.
pub fn config(dir: &std::path::Path, name: &str, window_ms: u64, verify_ms: u64, extra: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("[sync]\nbatch_window_ms = {window_ms}\nverify_timeout_ms = {verify_ms}\n{extra}"))
        .unwrap();
    p
}

/// An env var as a number, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sorted WAL segment paths of a data dir.
pub fn segments(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segs.sort();
    segs
}

/// Copy a directory tree (files and directories only).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        let dst = to.join(e.file_name());
        if ty.is_dir() {
            copy_dir(&e.path(), &dst);
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Every BEGIN in the WAL is closed: COMMIT followed by FINAL, or ROLLBACK. Returns the
/// authoritative state hash of every uuid according to the committed sync transactions, in
/// COMMIT order (None = tombstoned).
pub fn check_transactions(recs: &[Value]) -> BTreeMap<String, Option<String>> {
    use std::collections::HashMap;
    let mut phases: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut order: Vec<&str> = vec![];
    for r in recs {
        let op = r["operation_id"].as_str().unwrap();
        let ph = r["phase"].as_str().unwrap();
        let e = phases.entry(op).or_insert_with(|| {
            order.push(op);
            vec![]
        });
        e.push(ph);
    }
    for op in &order {
        let p = &phases[op];
        if p.first() != Some(&"BEGIN") {
            continue; // standalone records
        }
        let committed = p.contains(&"COMMIT");
        let rolled = p.contains(&"ROLLBACK");
        assert!(
            committed ^ rolled,
            "transaction {op} must end in exactly one of COMMIT or ROLLBACK after recovery: {p:?}"
        );
        if committed {
            assert!(p.contains(&"FINAL"), "committed transaction {op} has no FINAL after a graceful stop: {p:?}");
            let ci = p.iter().position(|x| *x == "COMMIT").unwrap();
            assert!(
                p[ci..].iter().all(|x| matches!(*x, "COMMIT" | "FINAL")),
                "{op}: nothing but FINAL may follow COMMIT: {p:?}"
            );
        }
    }
    // Authoritative states: STEP payloads of committed transactions, applied at COMMIT.
    let mut steps: HashMap<&str, Vec<&Value>> = HashMap::new();
    let mut out = BTreeMap::new();
    for r in recs {
        let op = r["operation_id"].as_str().unwrap();
        match r["phase"].as_str().unwrap() {
            "STEP" => steps.entry(op).or_default().push(&r["payload"]),
            "COMMIT" => {
                for p in steps.remove(op).unwrap_or_default() {
                    let u = p["uuid"].as_str().unwrap_or_default().to_string();
                    match p["op"].as_str().unwrap_or("") {
                        "state" => {
                            out.insert(u, Some(p["state_hash"].as_str().unwrap().to_string()));
                        }
                        "tombstone" => {
                            out.insert(u, None);
                        }
                        _ => {}
                    }
                }
            }
            "ROLLBACK" => {
                steps.remove(op);
            }
            _ => {}
        }
    }
    out
}

/// A log with its ANSI colour codes removed (stderr is coloured).
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut it = log.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Graceful stop after one round trip. The round trip matters: `serve` prints its
/// "listening" line before it installs the SIGTERM handler, so a SIGTERM sent right after
/// that line kills the process instead of stopping it (see
/// `kill_loop::sigterm_right_after_the_listening_line_is_graceful`).
pub fn ping_then_stop(d: &mut Daemon) -> Option<i32> {
    // A project of its own: no welcome resync arrives before the pong.
    let mut c = d.client_for("test", "zz-stop");
    let pong = c.request(&json!({"type":"ping","request_id":"bye"})).unwrap();
    assert_eq!(pong["type"], "pong", "{pong}");
    drop(c);
    d.stop()
}
