//! Start and stop the real daemon binary; talk to it with the library's blocking client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
pub use vibesync_daemon::client::Client;

pub const BIN: &str = env!("CARGO_BIN_EXE_vibesync");

pub struct Daemon {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub token: String,
}

pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Daemon {
    pub fn start(data: &Path) -> Daemon {
        Daemon::start_with(data, &[], "127.0.0.1:0")
    }

    /// Start `vibesync serve` and wait for its "listening on" line.
    pub fn start_with(data: &Path, extra: &[&str], listen: &str) -> Daemon {
        match Daemon::try_start(data, extra, listen) {
            Ok(d) => d,
            Err(e) => panic!("daemon did not start: {e}"),
        }
    }

    pub fn try_start(data: &Path, extra: &[&str], listen: &str) -> Result<Daemon, String> {
        std::fs::create_dir_all(data).unwrap();
        let stderr =
            std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("stderr.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", listen])
            .args(extra)
            .env("RUST_LOG", std::env::var("VIBESYNC_TEST_LOG").unwrap_or("info".into()))
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn vibesync");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {} // keep draining
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap_or_default();
                let shown = match log.find("panicked at") {
                    Some(i) => &log[i.saturating_sub(200)..(i + 1500).min(log.len())],
                    None => tail(&log, 3000),
                };
                return Err(format!("no listening line (exit {status:?}); stderr:\n{shown}"));
            }
        };
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        let token = std::fs::read_to_string(data.join("token")).unwrap().trim().to_string();
        Ok(Daemon { child: Some(child), addr, data: data.to_path_buf(), token })
    }

    pub fn client(&self, editor: &str) -> Client {
        self.client_for(editor, "demo")
    }

    pub fn client_for(&self, editor: &str, project: &str) -> Client {
        Client::connect(self.addr, &self.token, project, editor).expect("connect")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok().and_then(|s| s.code())
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Read messages until one satisfies `pred`, skipping the rest (events, batches); fails
/// naming `what` when none comes within 20 s.
pub fn recv_until(c: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    c.set_read_timeout(Some(Duration::from_secs(20)));
    loop {
        let m = c.recv().unwrap_or_else(|e| panic!("no {what} within 20 s: {e}"));
        if pred(&m) {
            return m;
        }
    }
}

/// Send a request and return its answer (the message echoing its `request_id`), skipping
/// whatever the daemon sends meanwhile.
pub fn ask(c: &mut Client, msg: &Value) -> Value {
    c.send(msg).unwrap();
    recv_until(c, &format!("answer to {}", msg["request_id"]), |m| m["request_id"] == msg["request_id"])
}

pub fn register(c: &mut Client, rid: &str, items: &[(&str, &str, &str)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(u, kind, name)| json!({"uuid": u, "kind": kind, "name": name, "editor_ref": format!("OB:{name}")}))
        .collect();
    c.request(&json!({"type":"register","request_id": rid, "items": items})).unwrap()
}

/// Register `n` new objects from a Blender session, `per_request` items per `register`
/// (fewer per request: more transactions in the WAL); returns their (uuid, name).
pub fn register_n(d: &Daemon, tag: &str, n: usize, per_request: usize) -> Vec<(String, String)> {
    let mut c = d.client("blender");
    let all: Vec<(String, String)> = (0..n).map(|i| (new_uuid(), format!("{tag}{i}"))).collect();
    for (k, chunk) in all.chunks(per_request).enumerate() {
        let items: Vec<(&str, &str, &str)> = chunk.iter().map(|(u, n)| (u.as_str(), "object", n.as_str())).collect();
        let ack = register(&mut c, &format!("{tag}-{k}"), &items);
        assert!(statuses(&ack).iter().all(|s| s == "registered"), "{ack}");
    }
    all
}

pub fn statuses(ack: &Value) -> Vec<String> {
    ack["results"]
        .as_array()
        .unwrap_or_else(|| panic!("not an ack: {ack}"))
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run vibesync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn verify(data: &Path) -> (i32, String, String) {
    cli(&["verify", "--data-dir", data.to_str().unwrap()])
}

/// All WAL records via `vibesync tail --json`.
/// The WAL record of `operation_id` in `phase` (`"COMMIT"`, `"ROLLBACK"`, …); fails if none.
pub fn wal_record(data: &Path, operation_id: &str, phase: &str) -> Value {
    wal_records(data)
        .into_iter()
        .find(|r| r["operation_id"] == operation_id && r["phase"] == phase)
        .unwrap_or_else(|| panic!("no {phase} record of {operation_id}"))
}

pub fn wal_records(data: &Path) -> Vec<Value> {
    let (code, out, err) = cli(&["tail", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "tail failed: {err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
