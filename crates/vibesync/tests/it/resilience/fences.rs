//! A fenced batch is contiguous (docs/PROTOCOL.md §6.3): nothing the daemon sends to the
//! same session — replies to its requests, events — lands between `batch_begin` and
//! `batch_end`, however busy the session's writer is.
//!
//! The receiving editor pings all the time (one per millisecond, from a second handle on
//! its connection) while another editor sends batches of 64 creates, and its writer queue is
//! only 8 frames long, so batch frames and `pong`s compete for room. Its test editor fails
//! on any frame between a batch's fences.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::editor::*;
use crate::common::*;

#[test]
fn a_batch_is_contiguous_while_replies_to_the_same_session_compete() {
    const BATCHES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "fences", 0, 20_000, "[server]\nsend_queue_frames = 8\n");
    let d = Daemon::start_with(&data, &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut blender = Editor::connect(d.addr, &d.token, "blender", 0).unwrap();
    let mut unity = Editor::connect(d.addr, &d.token, "unity", 0).unwrap();
    unity.drain(Duration::from_millis(200)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (mut c, stop) = (unity.c.try_clone_stream(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) {
                sent += 1;
                if c.send(&json!({"type":"ping","request_id":format!("p{sent}")})).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    for k in 0..BATCHES {
        let ops = (0..64).map(|i| create_op(&new_uuid(), &format!("B{k}-{i}"), [k as f64, i as f64, 0.0])).collect();
        let ack = blender.change(&format!("c{k}"), ops).unwrap();
        assert!(statuses(&ack).iter().all(|s| s == "queued"), "{ack}");
        // The receiving editor reads (and checks the fences) while the next batch is made.
        let got = unity.pump_until(Duration::from_secs(30), |e| e.batches.len() > k);
        assert!(got.expect("a batch interleaved with other frames"), "batch {k} reached unity");
    }
    stop.store(true, Ordering::SeqCst);
    let pings = pinger.join().unwrap();
    unity.drain(Duration::from_millis(200)).expect("no frame between fences");
    assert!(pings > 50, "the pinger ran alongside ({pings} pings)");
    assert!(unity.batches.iter().all(|(_, _, n)| *n == 64), "{:?}", unity.batches);
    assert!(unity.errors.is_empty(), "{:?}", unity.errors);
}
