//! The registry fed by the real WAL writer and reader (the daemon's wiring).

use serde_json::{json, Value};
use vibesync_registry::*;
use vibesync_wal::{Phase, Reader, RecordDraft, Wal, WalConfig};

fn draft(op: &str, phase: Phase, payload: Value) -> RecordDraft {
    RecordDraft {
        session_id: "s".into(),
        operation_id: op.into(),
        uuids: vec![],
        project_id: "demo".into(),
        phase,
        outcome: if phase == Phase::Rollback { vibesync_wal::Outcome::Error } else { vibesync_wal::Outcome::Ok },
        error_code: None,
        payload,
    }
}

#[test]
fn registry_follows_the_real_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let u = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    let wal_dir = tmp.path().join("wal");
    let (wal, _) = Wal::open(WalConfig::new(tmp.path())).unwrap();
    let reader = || Reader::open(&wal_dir).unwrap().map(|e| e.expect("clean WAL").record);
    let stream = || reader().map(Ok);
    let (reg, rep) = Registry::open(&RegistryConfig::new(tmp.path()), stream).unwrap();
    assert_eq!(rep.outcome, OpenOutcome::Created);

    let register = Op::Register {
        uuid: u.into(),
        kind: "object".into(),
        name: Some("Cube".into()),
        editor: Some("blender".into()),
        editor_ref: Some("OB:Cube".into()),
        session_id: Some("s".into()),
        client_id: Some("c".into()),
    };
    let txn = wal
        .append_blocking(vec![
            draft("op1", Phase::Begin, json!({})),
            draft("op1", Phase::Step, register.to_payload()),
            draft("op1", Phase::Commit, json!({})),
        ])
        .unwrap();
    let r = reg.apply_committed(&txn).unwrap();
    assert!(r.applied);
    reg.flush().unwrap();
    wal.append_blocking(vec![draft("op1", Phase::Final, json!({}))]).unwrap();
    // Committed in the WAL, never applied (crash): caught up at the next open.
    wal.append_blocking(vec![
        draft("op2", Phase::Begin, json!({})),
        draft(
            "op2",
            Phase::Step,
            Op::Tombstone { uuid: u.into(), client_id: None, editor: None, automation: false }.to_payload(),
        ),
        draft("op2", Phase::Commit, json!({})),
    ])
    .unwrap();
    drop(reg);

    let (reg, rep) = Registry::open(&RegistryConfig::new(tmp.path()), stream).unwrap();
    assert_eq!((rep.outcome.clone(), rep.caught_up_txns), (OpenOutcome::Opened, 1), "{rep}");
    assert!(reg.lookup("demo", u).unwrap().is_none());
    assert_eq!(reg.archived("demo", u).unwrap().len(), 1);
    assert!(reg.parity(reader()).unwrap().is_empty());
    wal.close_blocking().unwrap();
}

#[test]
fn registry_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Registry>();
}
