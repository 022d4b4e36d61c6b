//! Shared by the benches: the real `vibesync serve` on port 0 in a temporary data dir.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct BenchDaemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub token: String,
    pub dir: PathBuf,
}

impl BenchDaemon {
    /// Start the daemon with `config` (TOML text, may be empty) and wait for its address.
    pub fn start(name: &str, config: &str) -> BenchDaemon {
        let dir = std::env::temp_dir().join(format!("vibesync-{name}-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let data = dir.join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vibesync"))
            .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vibesync serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        let token = std::fs::read_to_string(data.join("token")).unwrap().trim().to_string();
        BenchDaemon { child, addr, token, dir }
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
