//! The MCP server's connection to the daemon: an `agent` session (docs/PROTOCOL.md §3, §9),
//! kept open in the background with reconnect and backoff. Requests are matched to replies by
//! `request_id`; `command_progress` goes to the call that waits; `registry_updated` is kept
//! as the latest registry and announced on a watch channel; `batch_result`s wake the built-in
//! tools waiting for their uuids.
//!
//! Invariant: nothing here blocks the MCP side: with no daemon, every request fails at once
//! with [`LinkError::Offline`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info, warn};
use vibesync_protocol::{Frame, FrameCodec, PROTOCOL_VERSION};

/// Finds the daemon: its address and token (the binary reads `<data_dir>/daemon.json` and
/// `<data_dir>/token`).
pub type Discover = Arc<dyn Fn() -> Result<(SocketAddr, String), String> + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("the VibeSync daemon is not reachable ({0}); start it with `vibesync serve`")]
    Offline(String),
    #[error("the daemon connection closed while waiting for the answer")]
    Closed,
    #[error("no answer from the daemon within {0} ms")]
    Timeout(u64),
}

struct Pending {
    done: oneshot::Sender<Value>,
    progress: Option<mpsc::UnboundedSender<Value>>,
}

type BatchWaiter = (Vec<String>, oneshot::Sender<Value>);

struct Inner {
    project_id: String,
    client_id: String,
    discover: Discover,
    out: Mutex<Option<mpsc::Sender<Frame>>>,
    pending: Mutex<HashMap<String, Pending>>,
    batches: Mutex<Vec<BatchWaiter>>,
    registry: watch::Sender<Option<Value>>,
    seq: AtomicU64,
    ids: AtomicU64,
    last_error: Mutex<String>,
    /// The `error` with no `request_id` the daemon sent last on this connection (a closing
    /// code: `SYNC_RESTARTED`, `SLOW_CONSUMER`, …, docs/PROTOCOL.md §4): why it closed. The
    /// calls still waiting then are answered with it, not with a bare "closed".
    last_words: Mutex<Option<Value>>,
}

/// A cheap handle to the background connection.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

impl Link {
    /// Start connecting in the background; returns at once.
    pub fn start(project_id: String, discover: Discover) -> Link {
        let (registry, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            project_id,
            client_id: format!("vibesync-mcp-{}", std::process::id()),
            discover,
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            batches: Mutex::new(Vec::new()),
            registry,
            seq: AtomicU64::new(0),
            ids: AtomicU64::new(1),
            last_error: Mutex::new("not connected yet".into()),
            last_words: Mutex::new(None),
        });
        tokio::spawn(run(inner.clone()));
        Link { inner }
    }

    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    /// The latest registry (`registry_updated` from the daemon), if connected.
    pub fn registry(&self) -> Option<Value> {
        self.inner.registry.borrow().clone()
    }

    pub fn watch_registry(&self) -> watch::Receiver<Option<Value>> {
        self.inner.registry.subscribe()
    }

    pub fn connected(&self) -> bool {
        self.inner.out.lock().unwrap().is_some()
    }

    /// The last daemon seq seen (base for the agent's `change`s).
    pub fn seq(&self) -> u64 {
        self.inner.seq.load(Ordering::SeqCst)
    }

    pub fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.inner.ids.fetch_add(1, Ordering::SeqCst))
    }

    /// Send `msg` with a fresh `request_id`; the reply carrying it completes the returned
    /// receiver. Progress messages (`command_progress`) for it go to `progress`.
    pub fn request(
        &self,
        mut msg: Value,
        progress: Option<mpsc::UnboundedSender<Value>>,
    ) -> Result<(String, oneshot::Receiver<Value>), LinkError> {
        let rid = self.next_id("m");
        msg["request_id"] = json!(rid);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().unwrap().insert(rid.clone(), Pending { done: tx, progress });
        if let Err(e) = self.send(&msg) {
            self.inner.pending.lock().unwrap().remove(&rid);
            return Err(e);
        }
        Ok((rid, rx))
    }

    /// Send without waiting for an answer.
    pub fn send(&self, msg: &Value) -> Result<(), LinkError> {
        let out = self.inner.out.lock().unwrap().clone();
        let Some(out) = out else {
            return Err(LinkError::Offline(self.inner.last_error.lock().unwrap().clone()));
        };
        let frame = Frame::new(serde_json::to_vec(msg).expect("json"), Bytes::new());
        out.try_send(frame).map_err(|_| LinkError::Closed)
    }

    /// Wake when a `batch_result` names any of these uuids (register before sending), or
    /// with the daemon's closing `error` when the connection ends before one does.
    pub fn wait_batch(&self, uuids: Vec<String>) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.inner.batches.lock().unwrap().push((uuids, tx));
        rx
    }
}

async fn run(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&inner).await {
            Ok(()) => {
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                debug!("daemon link: {e}");
                *inner.last_error.lock().unwrap() = e;
            }
        }
        *inner.out.lock().unwrap() = None;
        // Every wait ends: with the daemon's last words when it said why it closed (a call
        // whose change a `SYNC_RESTARTED` cut was neither taken nor refused: the agent reads
        // that and calls again), else by dropping the senders (`LinkError::Closed`).
        let last_words = inner.last_words.lock().unwrap().take();
        for (rid, p) in inner.pending.lock().unwrap().drain() {
            if let Some(words) = &last_words {
                let mut answer = words.clone();
                answer["request_id"] = json!(rid);
                let _ = p.done.send(answer);
            }
        }
        for (_, waiter) in inner.batches.lock().unwrap().drain(..) {
            if let Some(words) = &last_words {
                let _ = waiter.send(words.clone());
            }
        }
        if inner.registry.borrow().is_some() {
            inner.registry.send_replace(None);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn connect(inner: &Arc<Inner>) -> Result<(), String> {
    let (addr, token) = (inner.discover)()?;
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, FrameCodec::default());
    let mut writer = FramedWrite::new(wr, FrameCodec::default());
    let hello = json!({
        "type": "hello", "protocol": PROTOCOL_VERSION, "project_id": inner.project_id, "editor": "agent",
        "editor_version": concat!("vibesync-mcp ", env!("CARGO_PKG_VERSION")), "client_id": inner.client_id,
        "token": token, "last_seq": 0,
    });
    writer
        .send(Frame::new(serde_json::to_vec(&hello).expect("json"), Bytes::new()))
        .await
        .map_err(|e| format!("hello: {e}"))?;
    let first = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .map_err(|_| "no welcome within 5 s".to_string())?
        .ok_or("the daemon closed the connection during the handshake")?
        .map_err(|e| format!("handshake: {e}"))?;
    let welcome: Value = serde_json::from_slice(&first.json).map_err(|e| format!("welcome: {e}"))?;
    if welcome["type"] != "welcome" {
        return Err(format!("handshake refused: {} {}", welcome["code"], welcome["message"]));
    }
    inner.seq.store(welcome["seq"].as_u64().unwrap_or(0), Ordering::SeqCst);
    // Connected: no add-on tools until the daemon sends a registry (PROTOCOL.md §9.1).
    inner.registry.send_replace(Some(json!({"type": "registry_updated", "available_addons": []})));
    info!(%addr, project_id = %inner.project_id, session_id = %welcome["session_id"], "connected to the daemon as an agent");
    let (tx, mut rx) = mpsc::channel::<Frame>(256);
    *inner.out.lock().unwrap() = Some(tx);
    let writer_task = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if writer.send(f).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = reader.next().await {
        let Ok(frame) = frame else { break };
        let Ok(msg) = serde_json::from_slice::<Value>(&frame.json) else { continue };
        dispatch(inner, msg);
    }
    writer_task.abort();
    warn!("daemon connection closed; reconnecting");
    Err("the daemon closed the connection".into())
}

fn dispatch(inner: &Arc<Inner>, msg: Value) {
    if let Some(seq) = msg.get("seq").and_then(Value::as_u64) {
        if msg["type"] != "batch_begin" && msg["type"] != "batch_end" {
            inner.seq.fetch_max(seq, Ordering::SeqCst);
        }
    }
    let ty = msg["type"].as_str().unwrap_or_default().to_string();
    match ty.as_str() {
        "registry_updated" => {
            inner.registry.send_replace(Some(msg));
        }
        "command_progress" => {
            let rid = msg["request_id"].as_str().unwrap_or_default();
            if let Some(p) = inner.pending.lock().unwrap().get(rid).and_then(|p| p.progress.clone()) {
                let _ = p.send(msg);
            }
        }
        "batch_result" => {
            let uuids: Vec<String> =
                msg["uuids"].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(str::to_string)).collect();
            let mut waiters = inner.batches.lock().unwrap();
            let mut keep = vec![];
            for (want, tx) in waiters.drain(..) {
                if want.iter().any(|u| uuids.contains(u)) {
                    let _ = tx.send(msg.clone());
                } else {
                    keep.push((want, tx));
                }
            }
            *waiters = keep;
        }
        "error" if msg.get("request_id").is_none_or(Value::is_null) => {
            warn!(code = %msg["code"], message = %msg["message"], "the daemon says why it closes the connection");
            *inner.last_words.lock().unwrap() = Some(msg);
        }
        _ => {
            if let Some(rid) = msg.get("request_id").and_then(Value::as_str) {
                if let Some(p) = inner.pending.lock().unwrap().remove(rid) {
                    let _ = p.done.send(msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn frame(v: Value) -> Frame {
        Frame::new(serde_json::to_vec(&v).expect("json"), Bytes::new())
    }

    /// A daemon that says why it closes (`SYNC_RESTARTED`, docs/PROTOCOL.md §4) while a call
    /// waits: the call is answered with that error, its code and message, and so is a tool
    /// waiting for a `batch_result` — not with a bare "connection closed" the agent cannot
    /// act on. Before, both only saw the connection close.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_the_daemon_cuts_with_a_closing_error_is_answered_with_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let daemon = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, wr) = stream.into_split();
            let mut reader = FramedRead::new(rd, FrameCodec::default());
            let mut writer = FramedWrite::new(wr, FrameCodec::default());
            reader.next().await.unwrap().unwrap(); // hello
            let welcome = json!({"type":"welcome","session_id":"s1","protocol":1,"seq":3,"daemon_version":"test","safe_mode":false});
            writer.send(frame(welcome)).await.unwrap();
            let call = reader.next().await.unwrap().unwrap();
            let words = json!({"type":"error","code":"SYNC_RESTARTED","message":"this project's sync restarted"});
            writer.send(frame(words)).await.unwrap();
            serde_json::from_slice::<Value>(&call.json).unwrap() // both halves dropped: closed
        });
        let link = Link::start("p".into(), Arc::new(move || Ok((addr, "token".to_string()))));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !link.connected() {
            assert!(tokio::time::Instant::now() < deadline, "not connected within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let batch = link.wait_batch(vec!["u1".into()]);
        let (rid, answer) = link.request(json!({"type":"change","base_seq":3,"changes":[]}), None).unwrap();
        let answer =
            tokio::time::timeout(Duration::from_secs(10), answer).await.expect("answered").expect("not dropped");
        assert_eq!((answer["type"].as_str(), answer["code"].as_str()), (Some("error"), Some("SYNC_RESTARTED")));
        assert_eq!(answer["request_id"], json!(rid));
        assert_eq!(answer["message"], "this project's sync restarted");
        let batch = tokio::time::timeout(Duration::from_secs(10), batch).await.expect("answered").expect("not dropped");
        assert_eq!(batch["code"], "SYNC_RESTARTED");
        assert_eq!(daemon.await.unwrap()["request_id"], json!(rid));
    }
}
