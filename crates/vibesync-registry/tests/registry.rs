//! Registry tests on real files in temp dirs. WAL records are built directly (sealed
//! `Record`s), so these tests do not depend on the WAL writer.

use std::path::Path;

use serde_json::{json, Value};
use vibesync_registry::*;
use vibesync_wal::{Phase, Record, GENESIS_PREV, SCHEMA_VERSION as WAL_SCHEMA};

const P: &str = "demo";

fn uuid(n: u32) -> String {
    format!("6f1c2a4e-4b7d-4a53-9a43-{n:012x}")
}

/// A tiny WAL: appends sealed records with chained `prev`.
#[derive(Default, Clone)]
struct Wal {
    records: Vec<Record>,
}

impl Wal {
    fn push(&mut self, op: &str, project: &str, phase: Phase, payload: Value) -> u64 {
        let seq = self.records.len() as u64 + 1;
        let prev = self.records.last().map(|r| r.h.clone()).unwrap_or_else(|| GENESIS_PREV.into());
        let mut r = Record {
            seq,
            ts: "2026-11-21T00:00:00.000000Z".into(),
            process_id: 1,
            session_id: "sess".into(),
            operation_id: op.into(),
            uuids: vec![],
            project_id: project.into(),
            phase,
            outcome: vibesync_wal::Outcome::Ok,
            error_code: None,
            schema_version: WAL_SCHEMA,
            payload,
            prev,
            h: String::new(),
        };
        r.seal();
        self.records.push(r);
        seq
    }

    /// BEGIN, STEPs, COMMIT, FINAL. Returns the records of the transaction (for
    /// apply_committed) — everything but FINAL.
    fn txn(&mut self, op: &str, steps: &[Value]) -> Vec<Record> {
        self.txn_in(P, op, steps)
    }

    fn txn_in(&mut self, project: &str, op: &str, steps: &[Value]) -> Vec<Record> {
        let start = self.records.len();
        self.push(op, project, Phase::Begin, json!({}));
        for s in steps {
            self.push(op, project, Phase::Step, s.clone());
        }
        self.push(op, project, Phase::Commit, json!({}));
        let txn = self.records[start..].to_vec();
        self.push(op, project, Phase::Final, json!({}));
        txn
    }

    fn all(&self) -> impl FnMut() -> Vec<WalRead> + '_ {
        move || self.records.iter().cloned().map(Ok).collect()
    }
}

fn register(n: u32, name: &str) -> Value {
    json!({"op":"register","uuid":uuid(n),"kind":"object","name":name,"editor":"blender","editor_ref":format!("OB:{name}"),"session_id":"s1","client_id":"c1"})
}

fn tombstone(n: u32) -> Value {
    json!({"op":"tombstone","uuid":uuid(n)})
}

/// Everything observable, for before/after comparisons.
fn content(reg: &Registry) -> (Vec<Entry>, Vec<Entry>, Counts, u64) {
    (reg.live_entries(None).unwrap(), reg.archived_entries(None).unwrap(), reg.counts(), reg.last_applied_seq())
}

/// A WAL with registers, renames, state, quarantine, tombstones, a re-create, a rollback,
/// an incomplete transaction and another project.
fn sample_wal() -> Wal {
    let mut w = Wal::default();
    w.txn("op1", &[register(1, "Cube"), register(2, "Light"), register(3, "Cam")]);
    w.txn("op2", &[json!({"op":"state","uuid":uuid(1),"state":{"t":[1,3,-2]},"state_hash":"ab"})]);
    w.txn("op3", &[tombstone(2)]);
    w.txn("op4", &[register(2, "Light2")]);
    w.txn("op5", &[tombstone(2)]);
    w.txn("op6", &[json!({"op":"quarantine","uuid":uuid(3),"reason":"duplicate"})]);
    // rolled back: never applied
    w.push("op7", P, Phase::Begin, json!({}));
    w.push("op7", P, Phase::Step, register(9, "Ghost"));
    w.push("op7", P, Phase::Rollback, json!({}));
    w.txn_in("other", "op8", &[register(1, "OtherCube"), json!({"op":"tool_effect","uuid":uuid(1),"tool":"a.b"})]);
    // incomplete at the tail: never applied
    w.push("op9", P, Phase::Begin, json!({}));
    w.push("op9", P, Phase::Step, register(10, "Half"));
    w
}

fn open(dir: &Path, w: &Wal) -> (Registry, OpenReport) {
    Registry::open(&RegistryConfig::new(dir), w.all()).unwrap()
}

#[test]
fn apply_lookup_tombstone_and_archive_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Created);

    let t = w.txn("a", &[register(1, "Cube")]);
    let r = reg.apply_committed(&t).unwrap();
    assert!(r.applied);
    assert_eq!(r.steps_applied, 1);
    let e = reg.lookup(P, &uuid(1)).unwrap().unwrap();
    assert_eq!(e.status, Status::Live);
    assert_eq!(e.name, "Cube");
    assert_eq!(e.bindings["blender"].editor_ref, "OB:Cube");
    assert_eq!(e.created_seq, 2);
    assert!(reg.lookup("other", &uuid(1)).unwrap().is_none(), "namespaced by project");
    assert_eq!(reg.counts(), Counts { live: 1, tombstoned: 0, quarantined: 0 });

    // Unity binds the same record; name update.
    let unity = json!({"op":"register","uuid":uuid(1),"kind":"object","name":"Cube","editor":"unity","editor_ref":"/Cube","session_id":"s2","client_id":"c2"});
    reg.apply_committed(&w.txn("b", &[unity])).unwrap();
    let e = reg.lookup(P, &uuid(1)).unwrap().unwrap();
    assert_eq!(e.bindings.len(), 2);
    assert_eq!(e.created_seq, 2);

    // Delete, re-create, delete again: two archived versions, nothing erased.
    let t1 = w.txn("c", &[tombstone(1)]);
    reg.apply_committed(&t1).unwrap();
    assert!(reg.lookup(P, &uuid(1)).unwrap().is_none());
    reg.apply_committed(&w.txn("d", &[register(1, "Cube.001")])).unwrap();
    let t2 = w.txn("e", &[tombstone(1)]);
    reg.apply_committed(&t2).unwrap();
    let arch = reg.archived(P, &uuid(1)).unwrap();
    assert_eq!(arch.len(), 2);
    assert_eq!(arch[0].tombstone_seq, Some(t1[1].seq));
    assert_eq!(arch[1].tombstone_seq, Some(t2[1].seq));
    assert_eq!(arch[0].name, "Cube");
    assert_eq!(arch[1].name, "Cube.001");
    assert!(arch.iter().all(|e| e.status == Status::Tombstoned));
    assert_eq!(reg.counts(), Counts { live: 0, tombstoned: 2, quarantined: 0 });

    // Tombstoning an unknown uuid is skipped, not an error.
    let r = reg.apply_committed(&w.txn("f", &[tombstone(42)])).unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(reg.last_applied_seq(), w.records.last().unwrap().seq - 1); // COMMIT before FINAL

    // Quarantine and release.
    reg.apply_committed(&w.txn("g", &[register(5, "X")])).unwrap();
    reg.apply_committed(&w.txn("h", &[json!({"op":"quarantine","uuid":uuid(5),"reason":"dup"})])).unwrap();
    assert_eq!(reg.lookup(P, &uuid(5)).unwrap().unwrap().status, Status::Quarantined);
    assert_eq!(reg.counts().quarantined, 1);
    reg.apply_committed(&w.txn("i", &[json!({"op":"release","uuid":uuid(5)})])).unwrap();
    let e = reg.lookup(P, &uuid(5)).unwrap().unwrap();
    assert_eq!((e.status, e.quarantine_reason), (Status::Live, None));
    assert_eq!(reg.counts(), Counts { live: 1, tombstoned: 2, quarantined: 0 });
    assert_eq!(reg.projects().unwrap(), vec![P.to_string()]);
    assert!(reg.parity(w.records.clone()).unwrap().is_empty());
}

#[test]
fn reapplying_a_transaction_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let (reg, _) = open(tmp.path(), &w);
    let t1 = w.txn("a", &[register(1, "Cube")]);
    let t2 = w.txn("b", &[json!({"op":"state","uuid":uuid(1),"state":{"v":1},"state_hash":"h1"})]);
    reg.apply_committed(&t1).unwrap();
    reg.apply_committed(&t2).unwrap();
    let before = content(&reg);
    for t in [&t1, &t2] {
        let r = reg.apply_committed(t).unwrap();
        assert!(!r.applied);
    }
    assert_eq!(content(&reg), before);
}

#[test]
fn a_group_applied_as_one_batch_equals_its_transactions_one_by_one() {
    // Registers, a state, a tombstone and a re-create of the same uuid, a quarantine, another
    // project: each later transaction reads what the earlier ones of the group staged.
    let mut w = Wal::default();
    let txns = vec![
        w.txn("a", &[register(1, "Cube"), register(2, "Light")]),
        w.txn("b", &[json!({"op":"state","uuid":uuid(1),"state":{"t":[1,2,3]},"state_hash":"h1"})]),
        w.txn("c", &[tombstone(2)]),
        w.txn("d", &[register(2, "Light.001")]),
        w.txn("e", &[json!({"op":"quarantine","uuid":uuid(1),"reason":"dup"})]),
        w.txn_in("other", "f", &[register(1, "OtherCube")]),
    ];
    let one = tempfile::tempdir().unwrap();
    let (by_one, _) = open(one.path(), &Wal::default());
    for t in &txns {
        assert!(by_one.apply_committed(t).unwrap().applied);
    }
    let grouped = tempfile::tempdir().unwrap();
    let (reg, _) = open(grouped.path(), &Wal::default());
    let slices: Vec<&[Record]> = txns.iter().map(Vec::as_slice).collect();
    let reports = reg.apply_committed_group(&slices).unwrap();
    assert_eq!(reports.len(), txns.len());
    assert!(reports.iter().all(|r| r.applied));
    assert_eq!(reports.iter().map(|r| r.operation_id.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(content(&reg), content(&by_one));
    // Applying the same group again changes nothing (each transaction is at or below the
    // watermark).
    let again = reg.apply_committed_group(&slices).unwrap();
    assert!(again.iter().all(|r| !r.applied));
    assert_eq!(content(&reg), content(&by_one));
    // Written to sled, not only to the cache: a reopen over the same log finds the same.
    let expected = content(&by_one);
    reg.flush().unwrap();
    drop(reg);
    let (reopened, _) = open(grouped.path(), &w);
    assert_eq!(content(&reopened), expected);
}

#[test]
fn bad_input_is_an_error_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let (reg, _) = open(tmp.path(), &w);
    let t = w.txn(
        "a",
        &[
            json!({"op":"tool_effect","uuid":uuid(1),"tool":"a.b"}), // another consumer's step
            json!({"op":"tombstone","uuid":uuid(7)}),                // changes nothing: skipped
            register(2, "Ok"),
        ],
    );
    let r = reg.apply_committed(&t).unwrap();
    assert_eq!((r.steps_applied, r.skipped.len(), r.foreign), (1, 1, 1));
    // Payloads the registry does not understand: the transaction is refused, nothing applied.
    for bad in [
        json!({"op":"register","uuid":"NOT-A-UUID","kind":"object"}),
        json!({"op":"register","uuid":uuid(1)}),  // no kind
        json!({"op":"transform","uuid":uuid(1)}), // nobody writes this as a STEP
        json!({"uuid":uuid(1)}),                  // no op
    ] {
        let before = content(&reg);
        let t = w.txn("bad", &[register(5, "Fine"), bad.clone()]);
        match reg.apply_committed(&t) {
            Err(RegistryError::UnknownStep { seq, .. }) => assert_eq!(seq, t[2].seq, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(content(&reg), before, "{bad}: nothing of the transaction applied");
    }
    // No COMMIT: refused.
    let no_commit: Vec<Record> = t.iter().filter(|r| r.phase != Phase::Commit).cloned().collect();
    assert!(matches!(reg.apply_committed(&no_commit), Err(RegistryError::NotCommitted { .. })));
    // Two operations mixed: refused.
    let mut mixed = w.txn("b", &[register(3, "A")]);
    mixed.extend(w.txn("c", &[register(4, "B")]));
    assert!(matches!(reg.apply_committed(&mixed), Err(RegistryError::MixedTransaction { .. })));
}

#[test]
fn open_replays_committed_transactions_only() {
    let tmp = tempfile::tempdir().unwrap();
    let w = sample_wal();
    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Created);
    assert_eq!(rep.caught_up_txns, 7);
    assert!(reg.lookup(P, &uuid(9)).unwrap().is_none(), "rolled back");
    assert!(reg.lookup(P, &uuid(10)).unwrap().is_none(), "never committed");
    assert_eq!(reg.lookup("other", &uuid(1)).unwrap().unwrap().name, "OtherCube");
    assert_eq!(reg.lookup(P, &uuid(1)).unwrap().unwrap().state, Some(json!({"t":[1,3,-2]})));
    assert_eq!(reg.archived(P, &uuid(2)).unwrap().len(), 2);
    assert_eq!(reg.counts(), Counts { live: 2, tombstoned: 2, quarantined: 1 });
    assert!(reg.parity(w.records.clone()).unwrap().is_empty());
    drop(reg);

    let (_reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert_eq!(rep.caught_up_txns, 0);
}

#[test]
fn rebuild_after_registry_dir_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let w = sample_wal();
    let (reg, _) = open(tmp.path(), &w);
    let before = content(&reg);
    drop(reg);
    std::fs::remove_dir_all(tmp.path().join("registry")).unwrap();

    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Created);
    assert_eq!(content(&reg), before);
}

#[test]
fn rebuild_after_registry_files_are_corrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let w = sample_wal();
    let (reg, _) = open(tmp.path(), &w);
    reg.flush().unwrap();
    let before = content(&reg);
    drop(reg);

    // Overwrite bytes all over every file sled wrote.
    let mut files = Vec::new();
    let mut stack = vec![tmp.path().join("registry")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                files.push(p)
            }
        }
    }
    assert!(!files.is_empty());
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        for (i, b) in bytes.iter_mut().enumerate() {
            if i % 7 == 3 {
                *b ^= 0xA5;
            }
        }
        std::fs::write(f, bytes).unwrap();
    }

    let (reg, rep) = open(tmp.path(), &w);
    let OpenOutcome::Rebuilt { quarantined_to: Some(q), .. } = &rep.outcome else {
        panic!("expected a rebuild with quarantine, got {rep}");
    };
    eprintln!("{rep}");
    assert!(q.starts_with(tmp.path().join("quarantine")));
    assert!(q.file_name().unwrap().to_string_lossy().starts_with("registry-"));
    assert!(q.exists());
    assert_eq!(content(&reg), before);
}

/// Damage only sled's data file (`db`), in several ways: sled may error, panic, or open
/// with lost or garbage data. Every case must end with the same content as before.
#[test]
fn damaged_sled_data_file_never_crashes_open() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("xor every 7th byte", |b| b.iter_mut().enumerate().filter(|(i, _)| i % 7 == 3).for_each(|(_, x)| *x ^= 0xA5)),
        ("zero the middle", |b| {
            let n = b.len();
            b[n / 4..3 * n / 4].iter_mut().for_each(|x| *x = 0)
        }),
        ("truncate to a third", |b| b.truncate(b.len() / 3)),
        ("random-ish bytes at the head", |b| {
            b.iter_mut().take(4096).enumerate().for_each(|(i, x)| *x = (i * 31 % 251) as u8)
        }),
    ];
    for (what, damage) in damages {
        let tmp = tempfile::tempdir().unwrap();
        let w = sample_wal();
        let (reg, _) = open(tmp.path(), &w);
        reg.flush().unwrap();
        let before = content(&reg);
        drop(reg);
        let db = tmp.path().join("registry").join("db");
        let mut bytes = std::fs::read(&db).unwrap();
        damage(&mut bytes);
        std::fs::write(&db, bytes).unwrap();
        let (reg, rep) = open(tmp.path(), &w);
        eprintln!("{what}: {rep}");
        assert_eq!(content(&reg), before, "{what}");
        assert!(reg.parity(w.records.clone()).unwrap().is_empty(), "{what}");
    }
}

#[test]
fn rebuild_when_meta_is_missing_or_registry_is_ahead_of_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let w = sample_wal();
    let (reg, _) = open(tmp.path(), &w);
    let before = content(&reg);
    drop(reg);

    // A WAL that ends before the registry's last_applied_seq: the WAL lost its tail. Refused
    // (docs/WAL.md §5), rebuilt only with repair.
    let mut short = w.clone();
    short.records.truncate(8);
    match Registry::open(&RegistryConfig::new(tmp.path()), short.all()) {
        Err(RegistryError::AheadOfWal { registry_seq, wal_last_seq, .. }) => {
            assert!(registry_seq > 8 && wal_last_seq == 8, "{registry_seq} {wal_last_seq}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok((_, rep)) => panic!("a registry ahead of the WAL must not open: {rep}"),
    }
    let mut cfg = RegistryConfig::new(tmp.path());
    cfg.repair = true;
    let (reg, rep) = Registry::open(&cfg, short.all()).unwrap();
    assert!(matches!(rep.outcome, OpenOutcome::Rebuilt { reason: RebuildReason::AheadOfWal { .. }, .. }), "{rep}");
    assert!(reg.last_applied_seq() <= 8);
    drop(reg);

    // Back to the full WAL: merely behind, caught up.
    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert!(rep.caught_up_txns > 0);
    assert_eq!(content(&reg), before);
    drop(reg);

    // Remove meta by hand.
    {
        let db = open_sled_when_released(&tmp.path().join("registry"));
        let t = db.open_tree("registry").unwrap();
        t.remove(b"meta\0last_applied_seq").unwrap();
        db.flush().unwrap();
    }
    let (reg, rep) = open(tmp.path(), &w);
    assert!(matches!(rep.outcome, OpenOutcome::Rebuilt { reason: RebuildReason::MetaMissing, .. }), "{rep}");
    assert_eq!(content(&reg), before);
}

#[test]
fn catch_up_when_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    w.txn("a", &[register(1, "A")]);
    w.txn("b", &[register(2, "B")]);
    let (reg, _) = open(tmp.path(), &w);
    drop(reg);
    // The daemon crashed after COMMIT, before applying to the registry.
    w.txn("c", &[tombstone(1)]);
    w.txn("d", &[register(3, "C")]);
    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert_eq!(rep.caught_up_txns, 2);
    assert!(reg.lookup(P, &uuid(1)).unwrap().is_none());
    assert!(reg.lookup(P, &uuid(3)).unwrap().is_some());
    assert!(reg.parity(w.records.clone()).unwrap().is_empty());
}

#[test]
fn parity_lists_differing_uuids() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = sample_wal();
    let (reg, _) = open(tmp.path(), &w);
    // Applied to the registry but not in the WAL we verify against.
    let mut ghost = w.clone();
    reg.apply_committed(
        &ghost.txn("x", &[register(77, "Ghost"), json!({"op":"state","uuid":uuid(1),"state":{"t":[0,0,0]}})]),
    )
    .unwrap();
    let problems = reg.parity(w.records.clone()).unwrap();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(problems.iter().any(|p| matches!(p, Problem::SeqMismatch { .. })), "{text:?}");
    assert!(
        problems.iter().any(|p| matches!(p, Problem::NotInWal { uuid, .. } if *uuid == self::uuid(77))),
        "{text:?}"
    );
    assert!(problems.iter().any(|p| matches!(p, Problem::Differs { uuid, .. } if *uuid == self::uuid(1))), "{text:?}");
    // The WAL catches up: parity again.
    w = ghost;
    assert!(reg.parity(w.records.clone()).unwrap().is_empty());
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn sidecar_atomic_write_check_and_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = sample_wal();
    let (reg, _) = open(tmp.path(), &w);
    assert_eq!(reg.check_sidecar().unwrap(), SidecarStatus::Missing);
    let written = reg.write_sidecar().unwrap();
    assert_eq!(written.records, 5);
    assert_eq!(files_in(tmp.path()), vec!["registry", "registry.sidecar.json"], "no temp files left");
    assert_eq!(reg.check_sidecar().unwrap(), SidecarStatus::Ok { seq: reg.last_applied_seq() });

    // The checksum is blake3 of the canonical JSON of everything but `checksum`.
    let doc: Value = serde_json::from_slice(&std::fs::read(reg.sidecar_path()).unwrap()).unwrap();
    assert_eq!(doc["seq"], json!(reg.last_applied_seq()));
    assert_eq!(doc["schema_version"], json!(SCHEMA_VERSION));
    let mut covered = doc.clone();
    covered.as_object_mut().unwrap().remove("checksum");
    let expect = blake3::hash(&sidecar::sorted_json(&covered)).to_hex().to_string();
    assert_eq!(doc["checksum"], json!(expect));
    let recs: Vec<Entry> = serde_json::from_value(doc["records"].clone()).unwrap();
    assert_eq!(recs.len(), 5);

    // Flip one byte inside the records: bad checksum, then rewritten.
    let path = reg.sidecar_path();
    let text = std::fs::read_to_string(&path).unwrap().replace("OB:Cube", "OB:Cubf");
    std::fs::write(&path, text).unwrap();
    assert!(matches!(reg.check_sidecar().unwrap(), SidecarStatus::BadChecksum { .. }));
    assert!(matches!(reg.ensure_sidecar().unwrap(), SidecarStatus::BadChecksum { .. }));
    assert!(reg.check_sidecar().unwrap().is_ok());

    // Truncated: unreadable.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(reg.check_sidecar().unwrap(), SidecarStatus::Unreadable { .. }));
    reg.write_sidecar().unwrap();

    // Stale after the registry moves on.
    reg.apply_committed(&w.txn("z", &[register(50, "New")])).unwrap();
    assert!(matches!(reg.check_sidecar().unwrap(), SidecarStatus::Stale { .. }));
    reg.ensure_sidecar().unwrap();
    assert!(reg.check_sidecar().unwrap().is_ok());
    assert_eq!(files_in(tmp.path()), vec!["registry", "registry.sidecar.json"]);
}

#[test]
fn v0_registry_is_migrated_explicitly_and_persisted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let t0 = w.txn("old", &[register(1, "Cube")]);
    let commit0 = t0.last().unwrap().seq;
    // A v0 registry (documented key layout, flat binding fields) at the WAL's head.
    {
        let db = open_sled_when_released(&tmp.path().join("registry"));
        let t = db.open_tree("registry").unwrap();
        let key = format!("live\0{P}\0{}", uuid(1));
        let v0 = json!({"project_id":P,"uuid":uuid(1),"kind":"object","name":"Cube","status":"live",
            "editor":"blender","editor_ref":"OB:Cube","session_id":"s1","client_id":"c1",
            "created_seq":2,"updated_seq":2});
        t.insert(key.as_bytes(), serde_json::to_vec(&v0).unwrap()).unwrap();
        t.insert(b"meta\0schema_version", b"0".as_ref()).unwrap();
        t.insert(b"meta\0last_applied_seq", commit0.to_string().as_bytes()).unwrap();
        t.insert(b"meta\0count_live", b"1".as_ref()).unwrap();
        db.flush().unwrap();
    }
    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert_eq!(rep.needs_migration, Some((0, 1)));
    assert_eq!(reg.needs_migration(), Some((0, 1)));
    // Nothing is read through an unmigrated schema.
    assert!(matches!(reg.lookup(P, &uuid(1)), Err(RegistryError::MigrationPending { from: 0, to: 1 })));
    let mut scratch = w.clone();
    assert!(matches!(
        reg.apply_committed(&scratch.txn("early", &[register(2, "X")])),
        Err(RegistryError::MigrationPending { .. })
    ));

    // The daemon logs the migration as a WAL transaction, then applies it.
    let payload = reg.migration_payload().unwrap();
    assert_eq!(payload, json!({"op":"migrate","from":0,"to":1}));
    let m = w.txn("migrate", &[payload]);
    let r = reg.apply_committed(&m).unwrap();
    assert_eq!(r.migrated, Some((0, 1)));
    assert_eq!(reg.needs_migration(), None);
    let e = reg.lookup(P, &uuid(1)).unwrap().unwrap();
    assert_eq!(e.bindings["blender"].editor_ref, "OB:Cube");
    assert_eq!(e.bindings["blender"].bound_seq, 2);
    assert_eq!(e.state, None);
    assert_eq!(reg.last_applied_seq(), m.last().unwrap().seq);
    assert_eq!(reg.counts().live, 1);
    drop(reg);

    // Persisted: a reopen sees v1, in parity with the WAL.
    let (reg, rep) = open(tmp.path(), &w);
    assert_eq!(rep.needs_migration, None);
    assert_eq!(reg.schema_version(), 1);
    assert_eq!(reg.lookup(P, &uuid(1)).unwrap().unwrap().bindings.len(), 1);
    assert!(reg.parity(w.records.clone()).unwrap().is_empty());

    // Pure migration function.
    let v1 = migrate::migrate_entry(0, json!({"uuid":"u","updated_seq":9,"editor":"unity","editor_ref":"/A"})).unwrap();
    assert_eq!(v1["bindings"]["unity"]["bound_seq"], json!(9));
    assert!(v1.get("editor").is_none());
}

#[test]
fn old_schema_behind_the_wal_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    w.txn("a", &[register(1, "Cube")]);
    let t = w.txn("b", &[register(2, "Two")]);
    {
        let db = open_sled_when_released(&tmp.path().join("registry"));
        let tr = db.open_tree("registry").unwrap();
        tr.insert(b"meta\0schema_version", b"0".as_ref()).unwrap();
        tr.insert(b"meta\0last_applied_seq", b"3".as_ref()).unwrap(); // COMMIT of "a"
        db.flush().unwrap();
    }
    let _ = t;
    let (reg, rep) = open(tmp.path(), &w);
    assert!(
        matches!(
            rep.outcome,
            OpenOutcome::Rebuilt { reason: RebuildReason::OldSchemaBehind { schema_version: 0 }, .. }
        ),
        "{rep}"
    );
    assert_eq!(reg.counts().live, 2);
}

/// A WAL read error while the registry is brought in line is an error: the records after it
/// are never taken as absent, on a fresh open and on a rebuild alike.
#[test]
fn a_wal_read_error_fails_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let w = sample_wal();
    let broken = || {
        let mut v: Vec<WalRead> = w.records[..4].iter().cloned().map(Ok).collect();
        v.push(Err(vibesync_wal::WalError::Corrupt {
            file: "wal/00000000000000000001.jsonl".into(),
            offset: 4096,
            reason: "injected".into(),
        }));
        v.extend(w.records[4..].iter().cloned().map(Ok));
        v
    };
    match Registry::open(&RegistryConfig::new(tmp.path()), broken) {
        Err(RegistryError::WalRead { source }) => assert!(source.to_string().contains("4096"), "{source}"),
        other => panic!("expected WalRead, got {:?}", other.map(|(_, r)| r)),
    }
    // The same log read without the error opens; the registry is complete.
    let (reg, _) = open(tmp.path(), &w);
    assert!(reg.parity(w.records.clone()).unwrap().is_empty());
}

/// Injected sled read faults (real sled underneath): lookups and scans answer an error,
/// never "absent"; only the faulted uuid fails when one is named.
#[test]
fn injected_read_faults_are_errors_not_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let w = sample_wal();
    let (reg, _) = open(tmp.path(), &w);
    reg.inject_read_fault(Some(ReadFault::Uuid(uuid(1))));
    assert!(matches!(reg.lookup(P, &uuid(1)), Err(RegistryError::Sled { .. })));
    assert!(reg.lookup(P, &uuid(3)).unwrap().is_some(), "other uuids read");
    assert!(matches!(reg.live_entries(Some(P)), Err(RegistryError::Sled { .. })));
    assert!(reg.archived(P, &uuid(2)).is_ok());
    reg.inject_read_fault(Some(ReadFault::All));
    assert!(matches!(reg.lookup(P, &uuid(3)), Err(RegistryError::Sled { .. })));
    assert!(matches!(reg.archived_entries(None), Err(RegistryError::Sled { .. })));
    // Applying a transaction reads the records it changes: the read fails, nothing applied.
    let mut w2 = sample_wal();
    let t = w2.txn("late", &[register(3, "CamRenamed")]);
    assert!(matches!(reg.apply_committed(&t), Err(RegistryError::Sled { .. })));
    reg.inject_read_fault(None);
    assert_eq!(reg.lookup(P, &uuid(3)).unwrap().unwrap().name, "Cam");
}

/// Catch-up writes many transactions per sled batch (docs/WAL.md §9): the result equals
/// applying each transaction on its own, across chunk boundaries (re-creates, tombstones and
/// renames of the same uuid in neighbouring transactions), and a replay that stops mid-way
/// (a WAL read error) leaves a consistent registry that the next open completes.
/// A registry that applied `txns` one transaction at a time (with its directory).
fn one_at_a_time(txns: &[Vec<Record>]) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let (reg, _) = Registry::open(&RegistryConfig::new(dir.path()), Vec::new).unwrap();
    for t in txns {
        let _ = reg.apply_committed(t);
    }
    (dir, reg)
}

/// A registry built from nothing stages the build in memory and writes it in sorted batches
/// of `bulk_build_records`; past the first batch it reads through sled. Whatever the batch
/// size, the result equals applying one transaction at a time, and a rebuild (registry
/// deleted) gives the same again.
#[test]
fn a_bulk_build_equals_one_at_a_time_whatever_its_batch_size() {
    let mut w = Wal::default();
    let mut txns = Vec::new();
    for i in 0..900u32 {
        let n = i % 300;
        let steps = match i % 5 {
            0 | 1 => vec![register(n, &format!("N{i}")), register(3000 + i, "X")],
            2 => vec![tombstone((i - 1) % 300)],
            3 => vec![json!({"op":"quarantine","uuid":uuid(3000 + i - 3),"reason":"r"})],
            _ => vec![
                register(n, &format!("R{i}")),
                json!({"op":"state","uuid":uuid(n),"state":{"i":i},"state_hash":"h"}),
            ],
        };
        txns.push(w.txn(&format!("op{i}"), &steps));
    }
    let (_one, reg1) = one_at_a_time(&txns);
    let expected = content(&reg1);
    assert!(expected.2.live > 100 && expected.2.tombstoned > 50 && expected.2.quarantined > 50, "{:?}", expected.2);
    // (records per sled batch, records staged in memory before a write)
    for (bulk, stage) in [(1, 1), (7, 7), (7, 250), (250, 100_000), (100_000, 100_000), (3, 1_000_000)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RegistryConfig::new(dir.path());
        cfg.bulk_build_records = bulk;
        cfg.bulk_stage_records = stage;
        let (reg, rep) = Registry::open(&cfg, w.all()).unwrap();
        assert_eq!(rep.outcome, OpenOutcome::Created);
        assert_eq!(content(&reg), expected, "bulk batches of {bulk}, staging {stage}");
        assert!(reg.parity(w.records.clone()).unwrap().is_empty());
        drop(reg);
        // Reopened as it is on disk (the counters checked against the records).
        assert_eq!(content(&Registry::open_for_check(&cfg).unwrap()), expected);
    }
}

/// A build from nothing that writes its staged records over several sled batches marks the
/// registry `building` first and clears the mark in its last batch. A registry found with
/// the mark (the daemon died between the batches) is rebuilt at the next open, never used.
#[test]
fn a_build_cut_off_between_its_batches_is_rebuilt_at_the_next_open() {
    let mut w = Wal::default();
    for i in 0..200u32 {
        w.txn(&format!("op{i}"), &[register(i, &format!("N{i}"))]);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RegistryConfig::new(dir.path());
    cfg.bulk_build_records = 16;
    let (reg, rep) = Registry::open(&cfg, w.all()).unwrap();
    assert_eq!(rep.outcome, OpenOutcome::Created);
    let expected = content(&reg);
    drop(reg);
    // What a cut-off build leaves: its first batches and the mark, not the last batch (the
    // counters and watermark): written straight into sled.
    {
        let db = open_sled_when_released(&dir.path().join("registry"));
        let tree = db.open_tree("registry").unwrap();
        tree.insert(b"meta\0building".as_slice(), b"1".as_slice()).unwrap();
        db.flush().unwrap();
    }
    let (reg, rep) = Registry::open(&cfg, w.all()).unwrap();
    assert!(matches!(rep.outcome, OpenOutcome::Rebuilt { .. }), "{:?}", rep.outcome);
    assert_eq!(content(&reg), expected);
    drop(reg);
    // The rebuilt registry has no mark: it opens as it is.
    let (_reg, rep) = Registry::open(&cfg, w.all()).unwrap();
    assert_eq!(rep.outcome, OpenOutcome::Opened);
}

#[test]
fn chunked_catch_up_equals_one_at_a_time_and_resumes_after_a_stop() {
    let mut w = Wal::default();
    let mut txns = Vec::new();
    for i in 0..2600u32 {
        let n = i % 700;
        let steps = match i % 4 {
            0 | 1 => vec![register(n, &format!("N{i}")), register(5000 + i, "X")],
            2 => vec![tombstone(n)],
            _ => vec![
                register(n, &format!("R{i}")),
                json!({"op":"state","uuid":uuid(n),"state":{"i":i},"state_hash":"h"}),
            ],
        };
        txns.push(w.txn(&format!("op{i}"), &steps));
    }
    let (_one, reg1) = one_at_a_time(&txns);
    // Chunked, stopped by a read error after ~1500 transactions, then completed.
    let two = tempfile::tempdir().unwrap();
    let cut = w.records.len() * 1500 / 2600;
    let broken = || {
        let mut v: Vec<WalRead> = w.records[..cut].iter().cloned().map(Ok).collect();
        v.push(Err(vibesync_wal::WalError::Corrupt {
            file: "wal/x.jsonl".into(),
            offset: 1,
            reason: "injected".into(),
        }));
        v
    };
    assert!(matches!(Registry::open(&RegistryConfig::new(two.path()), broken), Err(RegistryError::WalRead { .. })));
    {
        // As on disk (counters checked against the records), at a transaction boundary.
        let partial = Registry::open_for_check(&RegistryConfig::new(two.path())).unwrap();
        let applied = partial.last_applied_seq();
        assert!(applied > 0 && applied < w.records.last().unwrap().seq, "stopped mid-way at {applied}");
        let prefix: Vec<Record> = w.records.iter().filter(|r| r.seq <= applied).cloned().collect();
        assert!(partial.parity(prefix).unwrap().is_empty());
    }
    let (reg2, rep) = open(two.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert_eq!(content(&reg1), content(&reg2));
    assert!(reg2.parity(w.records.clone()).unwrap().is_empty());
}

/// `lookup` serves decoded records from memory (module `cache`): it must never return a
/// record older than the last write that finished before it, even with readers racing the
/// writer, and must agree with what sled holds (`live_entries` reads sled directly).
#[test]
fn lookups_follow_every_write_with_readers_racing_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let (reg, _) = open(tmp.path(), &w);
    let reg = std::sync::Arc::new(reg);
    reg.apply_committed(&w.txn("r", &(1..=8).map(|n| register(n, "Cube")).collect::<Vec<_>>())).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers: Vec<_> = (0..2)
        .map(|_| {
            let (reg, stop) = (reg.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for n in 1..=9 {
                        reg.lookup(P, &uuid(n)).unwrap();
                    }
                }
            })
        })
        .collect();
    // …and a flusher moving applied records from memory into sled meanwhile (module
    // `write_behind`), as the daemon's checkpointer does.
    readers.push({
        let (reg, stop) = (reg.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reg.flush().unwrap();
            }
        })
    });
    for i in 0..300u32 {
        let n = (i / 3) % 8 + 1; // state, tombstone, re-register: each uuid in turn
        let step = match i % 3 {
            0 => json!({"op":"state","uuid":uuid(n),"state":{"t":[i,0,0]},"state_hash":format!("h{i}")}),
            1 => tombstone(n),
            _ => register(n, &format!("Cube.{i}")),
        };
        reg.apply_committed(&w.txn(&format!("op{i}"), &[step])).unwrap();
        let e = reg.lookup(P, &uuid(n)).unwrap();
        match i % 3 {
            0 => assert_eq!(e.and_then(|e| e.state_hash), Some(format!("h{i}")), "write {i}"),
            1 => assert!(e.is_none(), "write {i}: tombstoned"),
            _ => assert_eq!(e.unwrap().name, format!("Cube.{i}"), "write {i}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let in_sled = reg.live_entries(Some(P)).unwrap();
    for n in 1..=9 {
        assert_eq!(reg.lookup(P, &uuid(n)).unwrap(), in_sled.iter().find(|e| e.uuid == uuid(n)).cloned(), "uuid {n}");
    }
}

/// Applied transactions reach sled later, many to a batch (module `write_behind`): reads see
/// them at once, a scan writes them first, and a registry closed without a flush still
/// leaves sled holding every one of them, so the next open has nothing to catch up.
#[test]
fn applied_transactions_held_in_memory_are_read_at_once_and_written_at_close() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let (reg, _) = open(tmp.path(), &w);
    let mut by_one = Vec::new();
    for i in 0..60u32 {
        let step = match i % 3 {
            0 | 1 => register(i, &format!("N{i}")),
            _ => tombstone(i - 2),
        };
        let t = w.txn(&format!("op{i}"), &[step]);
        assert!(reg.apply_committed(&t).unwrap().applied);
        by_one.push(t);
        // Read at once, before any flush.
        let e = reg.lookup(P, &uuid(i)).unwrap();
        match i % 3 {
            0 | 1 => assert_eq!(e.map(|e| e.name), Some(format!("N{i}")), "txn {i}"),
            _ => {
                assert!(reg.lookup(P, &uuid(i - 2)).unwrap().is_none(), "txn {i}: tombstoned");
                // Its archived version is read where it is held, without writing it first.
                let held = reg.unwritten_records();
                let versions = reg.archived(P, &uuid(i - 2)).unwrap();
                assert_eq!(versions.len(), 1, "txn {i}");
                assert_eq!(versions[0].name, format!("N{}", i - 2));
                assert_eq!(reg.unwritten_records(), held, "asking wrote nothing");
            }
        }
    }
    // Tombstoned again after a re-create: the older version in sled, the newer one held,
    // one list in tombstone order, and the same list once everything is written.
    reg.flush().unwrap();
    assert_eq!(reg.unwritten_records(), 0);
    for (i, step) in [(60u32, register(0, "Again")), (61, tombstone(0))] {
        let t = w.txn(&format!("op{i}"), &[step]);
        assert!(reg.apply_committed(&t).unwrap().applied);
        by_one.push(t);
    }
    let both = reg.archived(P, &uuid(0)).unwrap();
    assert!(reg.unwritten_records() > 0, "the newer version is still held");
    assert_eq!(both.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["N0", "Again"]);
    assert!(both[0].tombstone_seq < both[1].tombstone_seq);
    reg.flush().unwrap();
    assert_eq!(reg.archived(P, &uuid(0)).unwrap(), both);
    let expected = content(&reg); // scans: these write what is held first
    assert_eq!((expected.0.len(), expected.1.len()), (20, 21), "live and archived");
    let (_one, reg1) = one_at_a_time(&by_one);
    assert_eq!(content(&reg1), expected);
    for i in 62..92u32 {
        reg.apply_committed(&w.txn(&format!("op{i}"), &[register(i, "Late")])).unwrap();
    }
    let last = reg.last_applied_seq();
    drop(reg); // no flush
    let (reopened, rep) = open(tmp.path(), &w);
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert_eq!(rep.caught_up_txns, 0, "sled held every applied transaction");
    assert_eq!(reopened.last_applied_seq(), last);
    assert_eq!(reopened.live_entries(None).unwrap().len(), 50);
}

/// An apply that finds `max_unwritten_records` held writes them itself before it holds its
/// own (the daemon's checkpointer fell behind): with a bound of 7, a stream of registers,
/// states, tombstones and re-creates reads the same at every step, and the registry ends
/// equal to one applied one transaction at a time and to what a reopen finds.
#[test]
fn a_full_write_behind_is_written_by_the_next_apply_and_nothing_changes() {
    let mut w = Wal::default();
    let mut txns = Vec::new();
    for i in 0..120u32 {
        let n = i % 30;
        let step = match i % 4 {
            0 | 1 => register(n, &format!("N{i}")),
            2 => json!({"op":"state","uuid":uuid(n),"state":{"i":i},"state_hash":format!("h{i}")}),
            _ => tombstone(n),
        };
        txns.push(w.txn(&format!("op{i}"), &[step]));
    }
    let (_one, by_one) = one_at_a_time(&txns);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RegistryConfig::new(dir.path());
    cfg.max_unwritten_records = 7;
    let (reg, _) = Registry::open(&cfg, Vec::new).unwrap();
    for (i, t) in txns.iter().enumerate() {
        reg.apply_committed(t).unwrap();
        let n = i as u32 % 30;
        assert_eq!(reg.lookup(P, &uuid(n)).unwrap(), by_one_at(&txns[..=i], n), "after txn {i}");
    }
    let expected = content(&by_one);
    assert_eq!(content(&reg), expected);
    drop(reg);
    let (reopened, rep) = Registry::open(&cfg, w.all()).unwrap();
    assert_eq!(rep.caught_up_txns, 0);
    assert_eq!(content(&reopened), expected);
}

/// What `uuid(n)`'s live record is after `txns`, applied one at a time in a fresh registry.
fn by_one_at(txns: &[Vec<Record>], n: u32) -> Option<Entry> {
    let (_dir, reg) = one_at_a_time(txns);
    reg.lookup(P, &uuid(n)).unwrap()
}

/// The live-key filter (module `key_filter`) answers "absent" without a sled read only for
/// keys never held: keys from before a restart, keys applied while it is built (from another
/// thread, some still held in memory) and keys applied after it are all found, and a key
/// tombstoned then registered again comes back.
#[test]
fn the_live_key_filter_never_hides_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::default();
    let (reg, _) = open(tmp.path(), &w);
    for i in 0..300u32 {
        reg.apply_committed(&w.txn(&format!("a{i}"), &[register(i, "Before")])).unwrap();
    }
    reg.apply_committed(&w.txn("t5", &[tombstone(5)])).unwrap();
    drop(reg);
    let racing: Vec<Vec<Record>> = (300..900u32).map(|i| w.txn(&format!("b{i}"), &[register(i, "During")])).collect();
    let (reg, rep) = open(tmp.path(), &Wal { records: w.records[..w.records.len() - racing.len() * 4].to_vec() });
    assert_eq!(rep.outcome, OpenOutcome::Opened);
    assert!(!reg.keys_indexed(), "built only when asked");
    let reg = std::sync::Arc::new(reg);
    let writer = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            for t in &racing {
                assert!(reg.apply_committed(t).unwrap().applied);
            }
        })
    };
    let scanned = reg.index_keys().unwrap();
    writer.join().unwrap();
    assert!(reg.keys_indexed());
    assert!(scanned >= 299, "at least the keys from before the restart: {scanned}");
    assert_eq!(reg.index_keys().unwrap(), 0, "built once");
    // Past the records held unwritten and the cache of decoded ones: the filter, then sled,
    // answer.
    reg.flush().unwrap();
    reg.forget_cached();
    for i in (0..900u32).filter(|i| *i != 5) {
        assert!(reg.lookup(P, &uuid(i)).unwrap().is_some(), "uuid {i} hidden by the filter");
    }
    assert!(reg.lookup(P, &uuid(5)).unwrap().is_none(), "tombstoned");
    for i in 10_000..10_200u32 {
        assert!(reg.lookup(P, &uuid(i)).unwrap().is_none());
    }
    for i in 900..950u32 {
        reg.apply_committed(&w.txn(&format!("c{i}"), &[register(i, "After")])).unwrap();
    }
    reg.apply_committed(&w.txn("r5", &[register(5, "Again")])).unwrap();
    reg.flush().unwrap();
    reg.forget_cached();
    for i in 0..950u32 {
        assert!(reg.lookup(P, &uuid(i)).unwrap().is_some(), "uuid {i} hidden by the filter");
    }
    assert_eq!(reg.live_entries(Some(P)).unwrap().len(), 950);
}

/// Open the registry's sled database by hand once the dropped `Registry` has let go of it:
/// sled's background flusher releases the file lock a moment after the drop (the registry's
/// own open waits the same way). Fails at its deadline.
fn open_sled_when_released(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(25))
            }
            Err(e) => panic!("cannot open {}: {e}", dir.display()),
        }
    }
}
