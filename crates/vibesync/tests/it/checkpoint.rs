//! The boot checkpoint (docs/WAL.md §9) with the real binary: a restart after kill -9 reads
//! only the records after the checkpoint and loses nothing; a stale, torn, lying or
//! future checkpoint never loses or double-applies a record (the registry's counters and
//! `vibesync verify` prove it).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vibesync_daemon::checkpoint::{self, Checkpoint};

use crate::common::*;

fn status(d: &Daemon) -> Value {
    d.client("cli").request(&json!({"type":"status","request_id":"s"})).unwrap()
}

/// Wait (failing at the deadline) until a checkpoint covers at least `seq`.
fn wait_checkpoint(d: &Daemon, seq: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(d);
        if let Some(c) = s["checkpoint"]["seq"].as_u64().filter(|c| *c >= seq) {
            return c;
        }
        assert!(Instant::now() < deadline, "no checkpoint at or after seq {seq} within 30 s: {}", s["checkpoint"]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tombstone(d: &Daemon, uuids: &[String]) {
    let ack = d.client("blender").request(&json!({"type":"tombstone","request_id":"t","uuids":uuids})).unwrap();
    assert!(statuses(&ack).iter().all(|s| s == "tombstoned"), "{ack}");
}

/// Every registered object is there exactly once and the counters are exact.
fn assert_registry(d: &Daemon, live: &[(String, String)], tombstoned: u64) {
    let s = status(d);
    assert_eq!(s["registry"]["live"], json!(live.len()), "live count: {}", s["registry"]);
    assert_eq!(s["registry"]["tombstoned"], json!(tombstoned), "tombstoned count: {}", s["registry"]);
    let mut c = d.client("blender");
    for chunk in live.chunks(500) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|(u, n)| json!({"uuid": u, "kind": "object", "name": n, "editor_ref": format!("OB:{n}")}))
            .collect();
        let ack = c.request(&json!({"type":"register","request_id":"check","items": items})).unwrap();
        for (r, (u, _)) in ack["results"].as_array().unwrap().iter().zip(chunk) {
            assert_eq!(r["status"], "unchanged", "uuid {u} lost or altered: {r}");
        }
    }
}

/// A named way to damage the checkpoint file.
type Damage<'a> = (&'static str, Box<dyn Fn() + 'a>);

fn assert_verifies(data: &Path) {
    let (code, out, err) = verify(data);
    assert_eq!(code, 0, "verify failed:\n{out}\n{err}");
}

#[test]
fn restart_after_kill9_reads_only_the_records_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small segments, so that reading "the checkpoint's segment and after" is a short read.
    let cfg = dir.path().join("small-segments.toml");
    std::fs::write(&cfg, "[storage]\nwal_segment_bytes = 16384\n").unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let mut live = register_n(&d, "a", 300, 50);
    let seq = status(&d)["seq"].as_u64().unwrap();
    let covered = wait_checkpoint(&d, seq - 10);
    live.extend(register_n(&d, "b", 200, 50));
    let total = status(&d)["seq"].as_u64().unwrap();
    d.kill9();

    let mut d = Daemon::start_with(&data, &args, "127.0.0.1:0");
    let s = status(&d);
    let resumed = s["boot"]["resumed_after"].as_u64().expect("the checkpoint was used");
    assert!(resumed >= covered, "resumed after {resumed}, checkpoint covered {covered}");
    let read = s["boot"]["wal_records_read"].as_u64().unwrap();
    // Beside what this boot read, boot.json as this daemon wrote it (docs/PROTOCOL.md §5).
    let boot = &s["boot"];
    assert_eq!(
        (&boot["running"], &boot["last_boot_success"], &boot["consecutive_unclean_boots"], &boot["pid"]),
        (&json!(true), &json!(false), &json!(1), &json!(d.pid())),
        "{boot}"
    );
    assert!(boot["started_at"].is_string() && boot["safe_mode"] == json!(false), "{boot}");
    // The checkpoint's own segment (≤ 16 KiB of records) and what follows it.
    assert!(
        read <= total - resumed + 40 && read < total,
        "read {read} of {total} records; only the {} after the checkpoint and its segment were needed",
        total - resumed
    );
    assert_registry(&d, &live, 0);
    assert_eq!(d.stop(), Some(0));
    assert_verifies(&data);
}

#[test]
fn a_stale_torn_lying_or_future_checkpoint_never_loses_or_double_applies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut live = register_n(&d, "a", 100, 50);
    assert_eq!(d.stop(), Some(0));
    let stale = std::fs::read(checkpoint::path(&data)).expect("a clean stop writes a checkpoint");

    let mut d = Daemon::start(&data);
    assert!(status(&d)["boot"]["resumed_after"].is_u64(), "a clean restart resumes from the checkpoint");
    live.extend(register_n(&d, "b", 100, 50));
    let gone: Vec<String> = live.drain(..10).map(|(u, _)| u).collect();
    tombstone(&d, &gone);
    let seq = status(&d)["seq"].as_u64().unwrap();
    wait_checkpoint(&d, seq - 5);
    live.extend(register_n(&d, "c", 50, 50));
    d.kill9();
    let good: Checkpoint = checkpoint::load(&data).unwrap().expect("checkpoint");
    let last_seq = vibesync_wal::Reader::open(data.join("wal")).unwrap().map(|e| e.unwrap().record.seq).max().unwrap();

    let bad: Vec<Damage> = vec![
        ("stale", Box::new(|| std::fs::write(checkpoint::path(&data), &stale).unwrap())),
        (
            "torn",
            Box::new(|| {
                let b = std::fs::read(checkpoint::path(&data)).unwrap();
                std::fs::write(checkpoint::path(&data), &b[..b.len() / 2]).unwrap();
            }),
        ),
        (
            "lying: another record's position",
            Box::new(|| checkpoint::write(&data, &Checkpoint { seq: good.seq - 1, ..good.clone() }).unwrap()),
        ),
        (
            "lying: registry ahead",
            Box::new(|| {
                checkpoint::write(&data, &Checkpoint { registry_seq: last_seq + 100, ..good.clone() }).unwrap()
            }),
        ),
        (
            "future: beyond the WAL",
            Box::new(|| {
                checkpoint::write(&data, &Checkpoint { seq: last_seq + 3, offset: good.offset + 4096, ..good.clone() })
                    .unwrap()
            }),
        ),
    ];
    for (what, damage) in bad {
        checkpoint::write(&data, &good).unwrap();
        damage();
        let mut d = Daemon::start(&data);
        let s = status(&d);
        match what {
            "stale" => assert!(s["boot"]["resumed_after"].as_u64() < Some(good.seq), "{what}: {}", s["boot"]),
            "lying: registry ahead" => {}
            _ => assert!(s["boot"]["resumed_after"].is_null(), "{what}: must not be used: {}", s["boot"]),
        }
        assert_registry(&d, &live, 10);
        assert_eq!(d.stop(), Some(0), "{what}");
        assert_verifies(&data);
    }
    let set_aside = std::fs::read_dir(data.join("quarantine"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("checkpoint-"))
        .count();
    assert!(set_aside >= 1, "the torn checkpoint is kept in quarantine");
}
