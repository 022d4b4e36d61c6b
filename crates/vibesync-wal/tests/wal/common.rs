use std::path::{Path, PathBuf};

use vibesync_wal::{Phase, Record, RecordDraft, Wal, WalConfig};

pub fn draft(op: &str, phase: Phase, uuids: &[&str]) -> RecordDraft {
    RecordDraft {
        session_id: "5b0c7a52-9f3e-4e59-8d0e-2f4f1c9a0b11".into(),
        operation_id: op.into(),
        uuids: uuids.iter().map(|s| s.to_string()).collect(),
        project_id: "demo".into(),
        phase,
        outcome: match phase {
            Phase::Begin | Phase::Provisional => vibesync_wal::Outcome::Pending,
            Phase::Rollback => vibesync_wal::Outcome::Error,
            _ => vibesync_wal::Outcome::Ok,
        },
        error_code: None,
        payload: serde_json::json!({"op": "register", "name": "Cube", "note": "x".repeat(40)}),
    }
}

pub fn cfg(data: &Path, segment_bytes: u64) -> WalConfig {
    let mut c = WalConfig::new(data);
    c.segment_bytes = segment_bytes;
    c
}

pub fn open(data: &Path, segment_bytes: u64) -> (Wal, vibesync_wal::Recovery) {
    Wal::open(cfg(data, segment_bytes)).expect("open")
}

pub const U1: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
pub const U2: &str = "0b8e5d0c-1f6e-4c8a-9e61-7a3c2d1b4e5f";
pub const U3: &str = "9d2a7c4e-3b1f-4e6d-8a5c-1e2f3a4b5c6d";

/// ~30 records, a few transactions, several segments (small segment size). Returns every
/// record in order. Ends with: "inc" BEGIN+STEP (incomplete), "unf" COMMIT without FINAL.
pub fn write_sample_log(data: &Path, segment_bytes: u64) -> Vec<Record> {
    use Phase::*;
    let (wal, rec) = open(data, segment_bytes);
    assert_eq!(rec.last_seq, 0);
    let mut out = Vec::new();
    let mut put = |drafts: Vec<RecordDraft>| out.extend(wal.append_blocking(drafts).expect("append"));
    for i in 0..3 {
        let op = format!("ok{i}");
        put(vec![draft(&op, Begin, &[U1]), draft(&op, Step, &[U1]), draft(&op, Step, &[U2])]);
        put(vec![draft(&op, Commit, &[])]);
        put(vec![draft(&op, Final, &[])]);
    }
    put(vec![draft("rb", Begin, &[U2]), draft("rb", Step, &[U2]), draft("rb", Provisional, &[])]);
    put(vec![draft("rb", Rollback, &[])]);
    put(vec![draft("evt", Step, &[U3])]);
    put(vec![draft("unf", Begin, &[U3]), draft("unf", Step, &[U3]), draft("unf", Commit, &[])]);
    put(vec![draft("inc", Begin, &[U1]), draft("inc", Step, &[U2])]);
    put(vec![draft("inc", Provisional, &[])]);
    for i in 0..3 {
        put(vec![draft(&format!("tail{i}"), Begin, &[U1]), draft(&format!("tail{i}"), Rollback, &[])]);
    }
    wal.close_blocking().expect("close");
    out
}

pub fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    v
}

pub fn quarantine_files(data: &Path) -> Vec<PathBuf> {
    let q = data.join("quarantine");
    if !q.exists() {
        return Vec::new();
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(q).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Copy the WAL directory of `from` into a fresh data dir.
pub fn copy_wal(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for s in segments(from) {
        std::fs::copy(&s, to.join("wal").join(s.file_name().unwrap())).unwrap();
    }
}

/// Byte offsets where each line of `bytes` starts, plus the end.
pub fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            v.push(i + 1);
        }
    }
    v
}

pub fn records_in(data: &Path) -> Vec<Record> {
    vibesync_wal::read_all(data.join("wal")).expect("read_all").into_iter().map(|e| e.record).collect()
}
