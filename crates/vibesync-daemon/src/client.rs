//! A small blocking protocol client for the CLI (`vibesync status`) and for tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use vibesync_protocol::Frame;

use crate::DaemonError;

pub struct Client {
    stream: TcpStream,
    pub welcome: Value,
}

fn err(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Client(e.to_string())
}

impl Client {
    /// Connect and complete the handshake as `editor` (`cli`, `test`, …).
    pub fn connect(addr: SocketAddr, token: &str, project_id: &str, editor: &str) -> Result<Client, DaemonError> {
        Client::connect_with(addr, token, project_id, editor, 1.0, 0)
    }

    /// Connect declaring a unit scale and the last seq this client applied.
    pub fn connect_with(
        addr: SocketAddr,
        token: &str,
        project_id: &str,
        editor: &str,
        unit_scale: f64,
        last_seq: u64,
    ) -> Result<Client, DaemonError> {
        Client::connect_hello(
            addr,
            json!({
                "type": "hello", "protocol": 1, "project_id": project_id, "editor": editor,
                "editor_version": crate::DAEMON_VERSION, "client_id": format!("{editor}-{}", std::process::id()),
                "token": token, "unit_scale": unit_scale, "last_seq": last_seq,
            }),
        )
    }

    /// Connect with this exact `hello` (e.g. without `project_id`: zero-config pairing).
    pub fn connect_hello(addr: SocketAddr, hello: Value) -> Result<Client, DaemonError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| err(format!("cannot connect to {addr}: {e}. Is `vibesync serve` running?")))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        let mut c = Client { stream, welcome: Value::Null };
        c.send(&hello)?;
        let w = c.recv()?;
        if w["type"] != "welcome" {
            return Err(err(format!("handshake refused: {} {}", w["code"], w["message"])));
        }
        c.welcome = w;
        Ok(c)
    }

    /// A second handle on the same connection (e.g. to read on another thread).
    pub fn try_clone_stream(&self) -> Client {
        Client { stream: self.stream.try_clone().expect("clone socket"), welcome: self.welcome.clone() }
    }

    /// A framed connection without the handshake (the benchmarks' plain relay speaks only
    /// the framing).
    pub fn connect_raw(addr: SocketAddr) -> Result<Client, DaemonError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        Ok(Client { stream, welcome: Value::Null })
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        let _ = self.stream.set_read_timeout(t);
    }

    pub fn send(&mut self, msg: &Value) -> Result<(), DaemonError> {
        self.send_frame(&Frame::new(serde_json::to_vec(msg).map_err(err)?, Vec::new()))
    }

    /// Bytes as they are, framed or not (tests of the daemon's framing).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), DaemonError> {
        self.stream.write_all(bytes).map_err(err)
    }

    pub fn send_frame(&mut self, f: &Frame) -> Result<(), DaemonError> {
        self.stream.write_all(&f.to_bytes()).map_err(err)
    }

    pub fn recv_frame(&mut self) -> Result<Frame, DaemonError> {
        let mut head = [0u8; 8];
        self.stream.read_exact(&mut head).map_err(err)?;
        let total = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let json_len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if total < 4 || json_len > total - 4 || total > 64 * 1024 * 1024 {
            return Err(err(format!("bad frame from daemon: total {total}, json {json_len}")));
        }
        let mut body = vec![0u8; total - 4];
        self.stream.read_exact(&mut body).map_err(err)?;
        let attachment = body.split_off(json_len);
        Ok(Frame::new(body, attachment))
    }

    pub fn recv(&mut self) -> Result<Value, DaemonError> {
        let f = self.recv_frame()?;
        serde_json::from_slice(&f.json).map_err(err)
    }

    /// Send a request and return its reply. Events the daemon sends on its own (`peers`,
    /// `conflict`, `quarantine_released`, `live`, `safe_mode`, `registry_updated`: they carry no `request_id`) that
    /// arrive first are skipped.
    pub fn request(&mut self, msg: &Value) -> Result<Value, DaemonError> {
        self.send(msg)?;
        loop {
            let v = self.recv()?;
            if !matches!(
                v["type"].as_str(),
                Some("peers" | "conflict" | "quarantine_released" | "live" | "safe_mode" | "registry_updated")
            ) {
                return Ok(v);
            }
        }
    }
}

/// Where the daemon of `data_dir` listens (from daemon.json), and its token.
pub fn discover(data: &crate::DataDir) -> Result<(SocketAddr, String), DaemonError> {
    let info = std::fs::read(data.daemon_info()).map_err(|e| {
        err(format!(
            "no running daemon found for {} ({}: {e}); start one with `vibesync serve`",
            data.root().display(),
            data.daemon_info().display()
        ))
    })?;
    let v: Value = serde_json::from_slice(&info).map_err(err)?;
    let addr: SocketAddr = v["listen"].as_str().unwrap_or_default().parse().map_err(err)?;
    let token = std::fs::read_to_string(data.token()).map_err(|e| err(format!("{}: {e}", data.token().display())))?;
    Ok((addr, token.trim().to_string()))
}
