//! Unauthenticated connections (docs/PROTOCOL.md §3 "Before `hello`", docs/RESILIENCE.md §9).
//! Before this suite: 300 idle sockets from any local process filled the 256 connection
//! slots and editors were refused with a bare reset, and every connection could make the
//! daemon buffer a 64 MiB frame before `hello` (16 of them got it OOM-killed in a 768 MiB
//! cgroup). Now waiting connections have their own small quota (the oldest is evicted with
//! `TOO_MANY_CONNECTIONS`), frames before `hello` are limited to 4 KiB, and the handshake
//! deadline covers the whole first frame.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::editor::rss_kib;
use super::wire::percentile;
use crate::common::*;

/// `n` hostile sockets: idle ones never send a byte; slowloris ones promise a 1,000-byte
/// frame and trickle one byte per round. A socket the daemon closed is reopened at most once
/// a second, so the pressure stays on. Returns how many reconnects it made.
fn hostile(
    addr: SocketAddr,
    n: usize,
    slowloris: bool,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let open = || {
            let s = TcpStream::connect(addr).ok()?;
            s.set_nonblocking(true).ok()?;
            Some((s, Instant::now(), 0usize))
        };
        let mut socks: Vec<Option<(TcpStream, Instant, usize)>> = (0..n).map(|_| open()).collect();
        opened.fetch_add(socks.iter().filter(|s| s.is_some()).count() as u64, Ordering::SeqCst);
        let mut reconnects = 0;
        let frame_head = [0u8, 0, 3, 232, 0, 0, 3, 200]; // total_len 1000, json_len 968
        while !stop.load(Ordering::SeqCst) {
            for slot in socks.iter_mut() {
                let alive = match slot {
                    None => false,
                    Some((s, _, sent)) => {
                        let mut b = [0u8; 512];
                        let readable_closed = match s.read(&mut b) {
                            Ok(_) => true, // an error frame, then the close
                            Err(e) => e.kind() != ErrorKind::WouldBlock,
                        };
                        let write_failed = slowloris && {
                            let byte: &[u8] = if *sent < 8 { &frame_head[*sent..*sent + 1] } else { b"{" };
                            match s.write(byte) {
                                Ok(n) => {
                                    *sent += n;
                                    false
                                }
                                Err(e) => e.kind() != ErrorKind::WouldBlock,
                            }
                        };
                        !(readable_closed || write_failed)
                    }
                };
                let may_retry = slot.as_ref().is_none_or(|(_, t, _)| t.elapsed() > Duration::from_secs(1));
                if !alive && may_retry {
                    *slot = open();
                    reconnects += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        reconnects
    })
}

#[test]
fn an_editor_connects_and_pings_while_1000_hostile_sockets_wait() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let pid = d.pid();
    let rss_before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let idle = hostile(d.addr, 500, false, stop.clone(), opened.clone());
    let slow = hostile(d.addr, 500, true, stop.clone(), opened.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while opened.load(Ordering::SeqCst) < 1000 {
        assert!(Instant::now() < deadline, "hostile sockets not opened: {}", opened.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));

    // An editor connects (several times: each must get in) and pings every 10 ms.
    let mut connects = vec![];
    let mut lat = vec![];
    let mut rss_peak = 0;
    for round in 0..5 {
        let t = Instant::now();
        let mut c = Client::connect(d.addr, &d.token, "demo", "blender")
            .unwrap_or_else(|e| panic!("round {round}: an editor must always get in: {e}"));
        connects.push(t.elapsed());
        for i in 0..60 {
            let t = Instant::now();
            let p = c.request(&json!({"type":"ping","request_id":format!("p{round}-{i}")})).unwrap();
            lat.push(t.elapsed());
            assert_eq!(p["type"], "pong", "{p}");
            std::thread::sleep(Duration::from_millis(10));
        }
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    stop.store(true, Ordering::SeqCst);
    let reconnects = idle.join().unwrap() + slow.join().unwrap();
    lat.sort();
    connects.sort();
    let (p50, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.99), *lat.last().unwrap());
    eprintln!(
        "pre-auth flood: 500 idle + 500 slowloris sockets ({reconnects} reconnects after eviction/timeouts); \
         editor connect max {:?}; ping p50 {p50:?} p99 {p99:?} max {max:?} over {} pings; \
         daemon RSS {} KiB before, peak {} KiB",
        connects.last().unwrap(),
        lat.len(),
        rss_before,
        rss_peak
    );
    // The issue states this bound: an editor's ping p99 under 50 ms during the flood.
    assert!(p99 < Duration::from_millis(50), "ping p99 {p99:?}");
    assert!(rss_peak < rss_before + 64 * 1024, "RSS bounded: {rss_before} → {rss_peak} KiB");
    let mut c = d.client("blender");
    let st = c.request(&json!({"type":"status"})).unwrap();
    assert_eq!(st["sessions"].as_array().unwrap().len(), 1, "hostile sockets hold no session: {st}");
    drop(c);
    assert_eq!(d.stop(), Some(0));
}

/// Before `hello` a frame over 4 KiB is refused from its header (nothing buffered), and a
/// hello trickled byte by byte is cut at the handshake deadline however steadily it comes.
#[test]
fn pre_auth_frames_are_small_and_the_deadline_covers_the_whole_frame() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start_with(&data, &[], "127.0.0.1:0");
    // 64 KiB promised before hello: FRAME_TOO_LARGE naming the limit, then close.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(&[0, 1, 0, 0, 0, 0, 0, 10]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![];
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("FRAME_TOO_LARGE") && text.contains("4096"), "{text}");

    // A slowloris hello: one byte every 200 ms never completes the deadline (5 s).
    let hello = serde_json::to_vec(&json!({"type":"hello","protocol":1,"project_id":"demo","editor":"test","editor_version":"t","client_id":"slow","token":d.token})).unwrap();
    let mut frame = ((hello.len() + 4) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&(hello.len() as u32).to_be_bytes());
    frame.extend_from_slice(&hello);
    let mut s = TcpStream::connect(d.addr).unwrap();
    let t = Instant::now();
    let mut closed_after = None;
    for b in &frame {
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if t.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![];
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("HANDSHAKE_TIMEOUT") && !text.contains("welcome"), "{text} (closed after {closed_after:?})");
    assert!(t.elapsed() < Duration::from_secs(12), "cut at the deadline, not after the whole frame");
    assert_eq!(d.stop(), Some(0));
}
