//! Live previews (docs/PROTOCOL.md §6.3): at DEFAULT settings (300 ms window, 16 ms live
//! interval) a fast-path change reaches the other editor as a `live` frame before the
//! window's batch, throttled per object with the latest value delivered; a uuid with a
//! structural change queued gets none. Every wait has a deadline; nothing asserts timing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::sync::{create, settle, until, Mini};

fn transform(u: &str, x: f64) -> Value {
    json!({"op":"transform","uuid":u,"t":[x,1.0,2.0],"r":[0,0,0,1],"s":[1,1,1]})
}

fn lives_of<'a>(m: &'a Mini, uuid: &str) -> Vec<&'a Value> {
    m.lives.iter().filter(|l| l["change"]["uuid"] == uuid).collect()
}

/// Index in `m.order` of the first `batch_begin` at or after `from`.
fn first_batch_after(m: &Mini, from: usize) -> Option<usize> {
    (from..m.order.len()).find(|&i| m.order[i] == "batch_begin")
}

/// Blender and Unity connected to `d`, and an object `name` made in Blender at `t` that
/// both hold, its create committed: (blender, unity, its uuid).
fn one_object(d: &Daemon, name: &str, t: [f64; 3]) -> (Mini, Mini, String) {
    let mut b = Mini::connect(d, "blender", 1.0, 0);
    let mut u = Mini::connect(d, "unity", 1.0, 0);
    let id = new_uuid();
    b.send_change("c", vec![create(&id, name, t)], &[]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[1].states.contains_key(&id) && ms[0].results.iter().any(|r| r["outcome"] == "committed")
    });
    (b, u, id)
}

#[test]
fn a_transform_reaches_the_other_editor_live_before_its_batch_at_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data")); // defaults: 300 ms window, 16 ms live
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 0.5, 0); // half-meter units: lengths converted
    let id = new_uuid();
    b.send_change("c", vec![create(&id, "Cube", [0.0, 0.0, 0.0])], &[]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[1].states.contains_key(&id) && !ms[0].results.is_empty()
    });
    assert!(lives_of(&u, &id).is_empty(), "a create is structural: never live");

    let mark = u.order.len();
    let ack = b.send_change("m", vec![transform(&id, 3.0)], &[]);
    assert_eq!(statuses(&ack), ["queued"]);
    // Unity holds the pose through the live frame, and the window's batch follows.
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        first_batch_after(ms[1], mark).is_some() && ms[0].results.len() >= 2
    });
    let live = lives_of(&u, &id);
    assert_eq!(live.len(), 1, "{:?}", u.lives);
    assert_eq!(live[0]["origin"], "blender");
    assert_eq!(live[0]["change"]["op"], "transform");
    assert_eq!(live[0]["change"]["t"], json!([6.0, 2.0, 4.0]), "in the receiver's units");
    let live_at = u.order[mark..].iter().position(|t| t == "live").map(|i| i + mark).unwrap();
    let batch_at = first_batch_after(&u, mark).unwrap();
    assert!(live_at < batch_at, "live before the batch: {:?}", &u.order[mark..]);
    // The batch still verifies what Unity holds, and commits.
    assert_eq!(u.batches.last().unwrap().1, "fast");
    assert_eq!(b.results.last().unwrap()["outcome"], "committed");
    assert_eq!(u.states[&id]["t"], json!([3.0, 1.0, 2.0]));
    // The origin is never sent its own change live.
    assert!(b.lives.is_empty(), "{:?}", b.lives);
    drop((b, u));
    d.stop();
    let (code, out, err) = verify(&dir.path().join("data"));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_burst_on_one_object_is_throttled_and_ends_on_the_latest_pose() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let (mut b, mut u, id) = one_object(&d, "Mover", [0.0, 0.0, 0.0]);

    // 300 changes as fast as the socket takes them (acks read below).
    let n = 300;
    for i in 1..=n {
        let msg =
            json!({"type":"change","request_id":format!("m{i}"),"base_seq":0,"changes":[transform(&id, i as f64)]});
        b.c.send(&msg).unwrap();
    }
    let last = json!([n as f64, 1.0, 2.0]);
    // Unity holds the latest pose, and every change ended in a batch_result at Blender.
    until(&mut [&mut b, &mut u], Duration::from_secs(30), |ms| {
        ms[1].states[&id]["t"] == last
            && ms[0].results.iter().filter(|r| r["outcome"] == "committed").count() >= 2
            && ms[0].order.iter().filter(|t| *t == "ack").count() >= n
    });
    settle(&mut [&mut b, &mut u]);
    let live = lives_of(&u, &id);
    assert!(!live.is_empty(), "the drag was previewed live");
    assert!(live.len() < n, "throttled: {} live frames for {n} changes", live.len());
    // Never an older pose after a newer one.
    let xs: Vec<f64> = live.iter().map(|l| l["change"]["t"][0].as_f64().unwrap()).collect();
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    assert_eq!(u.states[&id]["t"], last);
    assert!(
        b.results.iter().all(|r| r["outcome"] != "rolled_back"),
        "live previews never replace verification: {:?}",
        b.results
    );
}

#[test]
fn the_last_pose_of_a_burst_arrives_live_when_no_batch_carries_it() {
    // A drag that ends where it began: the window's batch is a no-op (dropped), so only the
    // trailing live frame can bring the other editor back to the start pose.
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let (mut b, mut u, id) = one_object(&d, "Back", [0.0, 1.0, 2.0]);
    for (i, x) in [1.0, 2.0, 3.0, 0.0].iter().enumerate() {
        let msg = json!({"type":"change","request_id":format!("b{i}"),"base_seq":0,"changes":[transform(&id, *x)]});
        b.c.send(&msg).unwrap();
    }
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[0].results.iter().any(|r| r["outcome"] == "dropped") && ms[1].states[&id]["t"] == json!([0.0, 1.0, 2.0])
    });
    settle(&mut [&mut b, &mut u]);
    assert_eq!(u.states[&id]["t"], json!([0.0, 1.0, 2.0]));
    assert_eq!(lives_of(&u, &id).last().unwrap()["change"]["t"][0], 0.0, "the trailing pose was delivered");
}

#[test]
fn a_no_op_hide_goes_in_the_batch_that_carries_its_object_to_an_editor_that_missed_its_last_preview() {
    // Unity hides the cube and shows it again in one window, and moves it: the hide is
    // previewed to Blender, which then misses the show's preview. The coalesced show is a
    // no-op over the committed state, but the batch carries the cube's move anyway: it
    // carries the show too (PROTOCOL §6.2 "No-op changes"), and Blender ends shown. Left out,
    // Blender answered the batch hidden and it rolled back.
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data")); // defaults: 300 ms window, 16 ms live
    let (mut b, mut u, id) = one_object(&d, "Eye", [0.0, 1.0, 2.0]);
    settle(&mut [&mut b, &mut u]);
    let hide = |v: bool| json!({"op":"visibility","uuid":id,"visible":v});
    u.c.send(&json!({"type":"change","request_id":"h","base_seq":0,"changes":[hide(false)]})).unwrap();
    assert!(b.pump_until(Duration::from_secs(5), |m| m.states[&id]["visible"] == false), "the hide's preview");
    b.skip_live = true;
    u.c.send(&json!({"type":"change","request_id":"s","base_seq":0,"changes":[hide(true), transform(&id, 4.0)]}))
        .unwrap();
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[1].results.iter().any(|r| r["through"].get(id.as_str()) == Some(&json!("s")))
    });
    settle(&mut [&mut b, &mut u]);
    let end = u.results.iter().find(|r| r["through"].get(id.as_str()) == Some(&json!("s"))).unwrap();
    assert_eq!(end["outcome"], "committed", "{end}\n{}", d.stderr_log());
    assert_eq!(b.states[&id]["visible"], true, "Blender holds the show it missed the preview of");
    assert_eq!(b.states[&id]["t"][0], 4.0);
    d.stop();
    let recs = wal_records(&dir.path().join("data"));
    assert!(!recs.iter().any(|r| r["phase"] == "ROLLBACK"), "no rollback");
}

#[test]
fn a_forwarded_no_op_hide_does_not_leave_its_editors_later_move_unended() {
    // Blender shows the (shown) cube — a no-op — then moves it, in one window: the batch
    // carries the move and the show (§6.2 "No-op changes"), and its result ends both through
    // the move's request. Named through the show's, the move stayed in flight in Blender for
    // good, and Blender kept its pose over every correction.
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let (mut b, mut u, id) = one_object(&d, "Eye", [0.0, 1.0, 2.0]);
    let show = json!({"op":"visibility","uuid":id,"visible":true});
    b.c.send(&json!({"type":"change","request_id":"show","base_seq":0,"changes":[show]})).unwrap();
    b.c.send(&json!({"type":"change","request_id":"move","base_seq":0,"changes":[transform(&id, 5.0)]})).unwrap();
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[0].results.iter().any(|r| r["through"].get(id.as_str()).is_some_and(|t| t != "c"))
    });
    settle(&mut [&mut b, &mut u]);
    let ends: Vec<&Value> =
        b.results.iter().filter_map(|r| r["through"].get(id.as_str())).filter(|t| *t != "c").collect();
    assert_eq!(ends.last().copied(), Some(&json!("move")), "the move is ended: {:?}", b.results);
    assert_eq!(u.states[&id]["t"][0], 5.0);
}

#[test]
fn no_live_frame_for_a_uuid_with_a_structural_change_queued() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let (held, free) = (new_uuid(), new_uuid());
    b.send_change("c", vec![create(&held, "Held", [0.0; 3]), create(&free, "Free", [0.0; 3])], &[]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| ms[1].states.len() == 2 && !ms[0].results.is_empty());

    // A material change (slow path) of `held`, then transforms of both in the same window.
    let mat = json!({"op":"material","uuid":held,"material":{"base_color":[1,0,0,1],"metallic":0,"roughness":0.5,"emission":[0,0,0]}});
    assert_eq!(statuses(&b.send_change("s", vec![mat], &[])), ["queued"]);
    assert_eq!(
        statuses(&b.send_change("t", vec![transform(&held, 7.0), transform(&free, 7.0)], &[])),
        ["queued", "queued"]
    );
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[1].states[&held]["t"][0] == 7.0 && ms[0].results.len() >= 2
    });
    settle(&mut [&mut b, &mut u]);
    assert_eq!(lives_of(&u, &free).len(), 1, "the other object is previewed: {:?}", u.lives);
    assert!(lives_of(&u, &held).is_empty(), "per-uuid order: only its slow batch carries it: {:?}", u.lives);
    assert_eq!(u.batches.last().unwrap().1, "slow");
    assert_eq!(u.states[&held]["material"]["base_color"], json!([1.0, 0.0, 0.0, 1.0]));
    assert_eq!(b.results.last().unwrap()["outcome"], "committed");
}

#[test]
fn held_automation_is_not_previewed() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut b = Mini::connect(&d, "blender", 1.0, 0);
    let mut u = Mini::connect(&d, "unity", 1.0, 0);
    let id = new_uuid();
    b.send_change("c", vec![create(&id, "Cube", [0.0; 3])], &[]);
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
        ms[1].states.contains_key(&id) && !ms[0].results.is_empty()
    });
    // A person is editing in Blender: an agent's transform is held, not forwarded.
    b.tell(&json!({"type":"user_activity","active":true}));
    let mut agent = d.client_for("agent", "demo");
    let ack =
        agent.request(&json!({"type":"change","request_id":"a","base_seq":0,"changes":[transform(&id, 4.0)]})).unwrap();
    assert_eq!(statuses(&ack), ["held"]);
    // Until people are idle again nothing reaches Unity; then the batch does.
    b.c.send(&json!({"type":"user_activity","active":false})).unwrap();
    until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| ms[1].states[&id]["t"][0] == 4.0);
    assert!(lives_of(&u, &id).is_empty(), "held automation is never previewed: {:?}", u.lives);
}

/// Blender moves the cube; Unity shows the move as a live preview; Unity's person then moves
/// the cube — in the same window, or before Unity applied Blender's batch. Unity's change
/// names the preview in `seen`: it was made over Blender's move, so it wins and it is no
/// conflict (PROTOCOL §6.1, §6.2). The same move made without having seen the preview is.
#[test]
fn a_move_made_over_the_other_editors_live_preview_is_no_conflict() {
    for (window_ms, report_seen) in [(300, true), (300, false), (20, true), (20, false)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, mut b, mut u, id) = crate::sync::a_synced_cube_in_window(dir.path(), window_ms);
        u.report_seen = report_seen;
        let before = u.last_seq;
        b.send_change("m1", vec![transform(&id, 5.0)], &[]);
        assert!(u.pump_until(Duration::from_secs(20), |m| !lives_of(m, &id).is_empty()), "the live preview");
        assert_eq!(u.last_seq, before, "Unity has not applied Blender's batch yet");
        let ack = u.send_change("m2", vec![transform(&id, 9.0)], &[]);
        assert_eq!(statuses(&ack), ["queued"]);
        until(&mut [&mut b, &mut u], Duration::from_secs(20), |ms| {
            let ended = |m: &Mini, rid: &str| m.results.iter().any(|r| r["through"][&id] == rid);
            ended(ms[0], "m1") && ended(ms[1], "m2")
        });
        settle(&mut [&mut b, &mut u]);
        assert_eq!((b.states[&id]["t"][0].as_f64(), u.states[&id]["t"][0].as_f64()), (Some(9.0), Some(9.0)));
        let events = |m: &Mini| m.events.iter().filter(|e| e["type"] == "conflict").count();
        let steps = crate::sync::conflict_steps(&dir.path().join("data"), &id);
        let case = format!("window {window_ms} ms, seen reported: {report_seen}");
        if report_seen {
            assert_eq!((events(&b), events(&u), steps.len()), (0, 0, 0), "{case}: {steps:?}");
        } else {
            assert_eq!((events(&b), events(&u), steps.len()), (1, 1, 1), "{case}: {steps:?}");
            assert_eq!((steps[0]["winner"].as_str(), steps[0]["loser"].as_str()), (Some("unity"), Some("blender")));
        }
        drop((b, u));
        d.stop();
    }
}
