//! Audit tests against real bare repositories, checked with git2 and the git CLI.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vibesync_audit::*;

const P: &str = "demo";
const T: Duration = Duration::from_secs(20);

fn uuid(n: u32) -> String {
    format!("6f1c2a4e-4b7d-4a53-9a43-{n:012x}")
}

/// The registry as the audit thread sees it.
#[derive(Clone, Default)]
struct Reg(Arc<Mutex<HashMap<(String, String), AuditContent>>>);

impl Reg {
    fn live(&self, project: &str, n: u32, name: &str) {
        let v = json!({"uuid":uuid(n),"name":name,"status":"live"});
        self.0.lock().unwrap().insert((project.into(), uuid(n)), AuditContent::Live(v));
    }
    fn archive(&self, project: &str, n: u32, seq: u64) {
        let v = json!({"uuid":uuid(n),"status":"tombstoned","tombstone_seq":seq});
        self.0
            .lock()
            .unwrap()
            .insert((project.into(), uuid(n)), AuditContent::Archived { tombstone_seq: seq, value: v });
    }
    fn snapshot(&self) -> Snapshot {
        let me = self.clone();
        Box::new(move |p, u, _since, _upto| {
            Ok(me.0.lock().unwrap().get(&(p.to_string(), u.to_string())).cloned().into_iter().collect())
        })
    }
}

fn mark(seq: u64, op: &str, project: &str, uuids: &[u32]) -> FinalMark {
    FinalMark {
        seq,
        h: format!("h{seq}"),
        operation_id: op.into(),
        project_id: project.into(),
        uuids: uuids.iter().map(|n| uuid(*n)).collect(),
    }
}

fn finals(marks: &[FinalMark]) -> Vec<FinalRef> {
    marks.iter().map(|m| FinalRef { seq: m.seq, operation_id: m.operation_id.clone(), h: m.h.clone() }).collect()
}

fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git").arg("--git-dir").arg(dir).args(args).output().expect("git CLI installed");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn file_at_head(dir: &Path, path: &str) -> Option<Value> {
    let repo = git2::Repository::open_bare(dir).unwrap();
    let tree = repo.find_reference(BRANCH).unwrap().peel_to_commit().unwrap().tree().unwrap();
    let entry = tree.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).unwrap();
    Some(serde_json::from_slice(blob.content()).unwrap())
}

/// Commit whenever the thread is free.
fn eager() -> AuditConfig {
    AuditConfig { group_ms: 0, ..AuditConfig::default() }
}

/// Commit only on `flush`: exactly one commit per flush (deterministic groups).
fn manual() -> AuditConfig {
    AuditConfig { group_ms: 600_000, ..AuditConfig::default() }
}

#[test]
fn commits_snapshot_trees_with_trailers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    assert_eq!(audit.last_audited_seq(), 0);

    reg.live(P, 1, "Cube");
    reg.live(P, 2, "Light");
    audit.note(mark(5, "op-a", P, &[1, 2])).unwrap();
    audit.flush(T).unwrap();
    reg.live(P, 1, "Cube.renamed");
    audit.note(mark(7, "op-b", P, &[1])).unwrap();
    audit.note(mark(9, "op-c", P, &[1])).unwrap();
    audit.flush(T).unwrap();
    reg.archive(P, 2, 11);
    audit.note(mark(12, "op-d", P, &[2])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.failures, s.pending, s.last_audited_seq, s.finals, s.commits), (0, 0, 12, 4, 3), "{s:?}");

    assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(1))).unwrap()["name"], "Cube.renamed");
    assert!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(2))).is_none(), "archived: removed");
    assert_eq!(file_at_head(&dir, &format!("archive/{P}/{}/11.json", uuid(2))).unwrap()["tombstone_seq"], 11);

    // Content is pretty JSON with a trailing newline.
    let (ok, shown) = git(&dir, &["show", &format!("main:registry/{P}/{}.json", uuid(1))]);
    assert!(ok, "{shown}");
    assert!(shown.starts_with("{\n  \"") && shown.ends_with("}\n"), "{shown}");

    assert!(git2::Repository::open_bare(&dir).unwrap().is_bare());
    assert_eq!(git(&dir, &["symbolic-ref", "HEAD"]).1.trim(), "refs/heads/main");
    let (ok, out) = git(&dir, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "fsck: {out}");
    let (ok, log) = git(&dir, &["log", "--format=%s|%an <%ae>|%cn"]);
    assert!(ok, "{log}");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec![
            "vibesync: seq 10-12 (1 operation, 1 entry)|vibesync <vibesync@localhost>|vibesync",
            "vibesync: seq 6-9 (2 operations, 1 entry)|vibesync <vibesync@localhost>|vibesync",
            "vibesync: seq 1-5 (1 operation, 2 entries)|vibesync <vibesync@localhost>|vibesync",
        ],
        "ranges tile the log: each starts after the previous one"
    );
    let (ok, trailers) = git(&dir, &["log", "-1", "--skip=1", "--format=%(trailers:only,unfold)"]);
    assert!(ok, "{trailers}");
    assert_eq!(
        trailers.trim(),
        "VibeSync-Seq-Range: 6-9\nVibeSync-Operation: op-b\nVibeSync-Operation: op-c\nVibeSync-Entries: 1\nVibeSync-Wal-Seq: 9\nVibeSync-Wal-H: h9"
    );
    let all = [mark(5, "op-a", P, &[]), mark(7, "op-b", P, &[]), mark(9, "op-c", P, &[]), mark(12, "op-d", P, &[])];
    let rep = check(&read_history(&dir).unwrap(), &finals(&all), 12);
    assert_eq!(rep, CheckReport::default());
    audit.close();
    assert!(matches!(audit.note(mark(13, "x", P, &[])), Err(AuditError::Closed)));
}

/// Many FINALs of many projects, noted faster than git commits: a few group commits cover
/// every FINAL exactly once, in order (no per-project batches, nothing dropped).
#[test]
fn group_commits_cover_every_final_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let cfg = AuditConfig { group_ms: 50, max_group: 700, ..AuditConfig::default() };
    let audit = Audit::open_with(&dir, cfg, reg.snapshot()).unwrap();
    let projects = ["p0", "p1", "p2", "p3"];
    let mut all = Vec::new();
    let mut seq = 0;
    for i in 0..3000u32 {
        seq += 3; // BEGIN, STEP, COMMIT between FINALs
        let p = projects[(i % 4) as usize];
        reg.live(p, i % 50, &format!("v{i}"));
        let m = mark(seq, &format!("op{i}"), p, &[i % 50]);
        all.push(m.clone());
        audit.note(m).unwrap();
        if i % 500 == 0 {
            audit.note(all[all.len() - 1].clone()).unwrap(); // a duplicate is ignored
        }
    }
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.finals, s.failures, s.last_audited_seq, s.duplicates), (3000, 0, seq, 6), "{s:?}");
    assert!(s.commits >= 5 && s.commits < 300, "grouped: {s:?}");
    let hist = read_history(&dir).unwrap();
    let rep = check(&hist, &finals(&all), seq);
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(rep.unaudited, 0);
    for p in projects {
        // The last write of each uuid wins.
        let last = (0..3000u32).rev().find(|i| projects[(i % 4) as usize] == p).unwrap();
        let name = file_at_head(&dir, &format!("registry/{p}/{}.json", uuid(last % 50))).unwrap()["name"].clone();
        assert_eq!(name, format!("v{last}"));
    }
    assert_eq!(verify(&dir).unwrap(), seq);
}

#[test]
fn reopen_continues_from_last_audited_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    reg.live(P, 1, "A");
    reg.live(P, 2, "B");
    reg.live(P, 3, "C");
    {
        let audit = Audit::open_with(&dir, eager(), reg.snapshot()).unwrap();
        audit.note(mark(4, "a", P, &[1])).unwrap();
        audit.note(mark(8, "b", P, &[2])).unwrap();
        audit.flush(T).unwrap();
    } // dropped: thread joined
    assert_eq!(head(&dir).unwrap().unwrap().last_seq, 8);
    assert_eq!(head(&dir).unwrap().unwrap().wal_h.as_deref(), Some("h8"));

    let audit = Audit::open_with(&dir, eager(), reg.snapshot()).unwrap();
    assert_eq!(audit.last_audited_seq(), 8);
    // Re-noted from the WAL after a crash: already audited, ignored.
    audit.note(mark(8, "b", P, &[2])).unwrap();
    audit.note(mark(10, "c", P, &[3])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.duplicates, s.last_audited_seq), (1, 10), "{s:?}");
    let hist = read_history(&dir).unwrap();
    assert_eq!(hist.last().unwrap().first_seq, 9);
    let rep = check(&hist, &finals(&[mark(4, "a", P, &[]), mark(8, "b", P, &[]), mark(10, "c", P, &[])]), 10);
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(git(&dir, &["fsck", "--strict"]).0);
}

/// A failing commit is retried with everything noted since: no FINAL is skipped, no range
/// overlaps. Entries that cannot be paths are left out, their FINAL still covered.
#[test]
fn failures_are_retried_and_bad_entries_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let cfg = AuditConfig { group_ms: 0, retry_ms: 100, ..AuditConfig::default() };
    let audit = Audit::open_with(&dir, cfg, reg.snapshot()).unwrap();
    reg.live(P, 1, "A");
    reg.live("../../etc", 2, "X");
    audit.note(mark(1, "ok", P, &[1])).unwrap();
    audit.note(mark(2, "evil", "../../etc", &[2])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.failures, s.rejected_entries, s.last_audited_seq), (0, 1, 2), "{s:?}");

    // Storage failure: the objects dir is replaced by a file (works even as root).
    let objects = dir.join("objects");
    let aside = dir.join("objects.aside");
    std::fs::rename(&objects, &aside).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();
    reg.live(P, 4, "Z");
    audit.note(mark(4, "disk", P, &[4])).unwrap();
    let deadline = std::time::Instant::now() + T;
    while audit.stats().failures < 2 {
        assert!(std::time::Instant::now() < deadline, "no retry: {:?}", audit.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    reg.live(P, 5, "W");
    audit.note(mark(6, "after", P, &[5])).unwrap();
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(&aside, &objects).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.finals, s.last_audited_seq, s.pending), (4, 6, 0), "{s:?}");
    assert!(s.last_error.is_some());
    assert!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(5))).is_some());
    let all = [mark(1, "ok", P, &[]), mark(2, "evil", P, &[]), mark(4, "disk", P, &[]), mark(6, "after", P, &[])];
    let rep = check(&read_history(&dir).unwrap(), &finals(&all), 6);
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(git(&dir, &["fsck", "--strict"]).0);
}

/// A registry read that fails while a commit is built is an error, never "nothing to write":
/// no commit is made without that uuid's content, the group is retried, and once the
/// registry reads again the commit carries it.
#[test]
fn a_registry_read_failure_is_retried_never_committed_as_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let snapshot: Snapshot = {
        let (inner, failing) = (reg.snapshot(), failing.clone());
        Box::new(move |p, u, since, upto| {
            if failing.load(std::sync::atomic::Ordering::SeqCst) && u == uuid(2) {
                return Err("sled read failed (injected)".into());
            }
            inner(p, u, since, upto)
        })
    };
    let cfg = AuditConfig { group_ms: 0, retry_ms: 50, ..AuditConfig::default() };
    let audit = Audit::open_with(&dir, cfg, snapshot).unwrap();
    reg.live(P, 1, "A");
    reg.live(P, 2, "B");
    audit.note(mark(3, "op", P, &[1, 2])).unwrap();
    let deadline = std::time::Instant::now() + T;
    while audit.stats().failures < 2 {
        assert!(std::time::Instant::now() < deadline, "no failed attempt: {:?}", audit.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = audit.stats();
    assert_eq!((s.commits, s.last_audited_seq, s.pending), (0, 0, 1), "nothing committed: {s:?}");
    let why = s.last_error.clone().unwrap();
    assert!(why.contains(&uuid(2)) && why.contains("injected") && why.contains("retried"), "{why}");
    assert!(git2::Repository::open_bare(&dir).unwrap().find_reference(BRANCH).is_err(), "no commit on main");

    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.commits, s.last_audited_seq, s.pending), (1, 3, 0), "{s:?}");
    for (n, name) in [(1, "A"), (2, "B")] {
        let v = file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(n))).expect("both uuids committed");
        assert_eq!(v["name"], name);
    }
    assert!(check(&read_history(&dir).unwrap(), &finals(&[mark(3, "op", P, &[])]), 3).problems.is_empty());
}

/// Pending marks beyond the bound suspend the audit instead of committing past a gap.
#[test]
fn too_many_pending_marks_suspend_the_audit_without_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let cfg = AuditConfig { group_ms: 60_000, max_group: 1_000_000, max_pending: 10, retry_ms: 1_000, rest_factor: 4 };
    let audit = Audit::open_with(&dir, cfg, reg.snapshot()).unwrap();
    for i in 1..=25u64 {
        audit.note(mark(i, &format!("op{i}"), P, &[])).unwrap();
    }
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert!(s.suspended && s.pending == 0 && s.last_audited_seq == 0, "{s:?}");
    assert!(read_history(&dir).unwrap().is_empty(), "nothing committed past the dropped marks");
}

#[test]
fn check_finds_overlaps_gaps_extras_foreign_wal_and_a_lost_tail() {
    let c = |first, last, ops: &[&str], wal: Option<(u64, &str)>| CommitInfo {
        commit: format!("c{first}"),
        first_seq: first,
        last_seq: last,
        operations: ops.iter().map(|s| s.to_string()).collect(),
        wal: wal.map(|(s, h)| (s, h.to_string())),
    };
    let f = |seq, op: &str| FinalRef { seq, operation_id: op.into(), h: format!("h{seq}") };
    let fin = [f(3, "a"), f(6, "b"), f(9, "c"), f(12, "d")];

    let good = [c(1, 6, &["a", "b"], Some((6, "h6"))), c(7, 12, &["c", "d"], Some((12, "h12")))];
    assert_eq!(check(&good, &fin, 12), CheckReport::default());
    // Lag after a crash: FINALs after the newest commit are counted, not problems.
    let rep = check(&good[..1], &fin, 12);
    assert_eq!((rep.problems.len(), rep.unaudited, rep.first_unaudited), (0, 2, Some(9)));

    // Overlapping ranges (per-project catch-up of the old audit).
    let rep = check(&[c(1, 6, &["a", "b"], None), c(4, 12, &["c", "d"], None)], &fin, 12);
    assert!(rep.problems.iter().any(|p| p.contains("overlaps")), "{:?}", rep.problems);
    // A FINAL in no commit (a gap between ranges) and one missing from its commit.
    let rep = check(&[c(1, 3, &["a"], None), c(7, 12, &["d"], None)], &fin, 12);
    assert!(rep.problems.iter().any(|p| p.contains("seq 6") && p.contains("in no audit commit")), "{:?}", rep.problems);
    assert!(
        rep.problems.iter().any(|p| p.contains("seq 9") && p.contains("missing from commit")),
        "{:?}",
        rep.problems
    );
    // An operation named twice.
    let rep = check(&[c(1, 12, &["a", "b", "c", "d", "d"], None)], &fin, 12);
    assert!(rep.problems.iter().any(|p| p.contains("operation d 1 time(s) more")), "{:?}", rep.problems);
    // The WAL is not the log the history anchors.
    let rep = check(&[c(1, 12, &["a", "b", "c", "d"], Some((12, "other")))], &fin, 12);
    assert!(rep.problems.iter().any(|p| p.contains("is not the log")), "{:?}", rep.problems);
    // The WAL lost its tail: the history has seen seq 15, the WAL ends at 12.
    let rep = check(&[c(1, 15, &["a", "b", "c", "d", "e"], Some((15, "h15")))], &fin, 12);
    assert!(
        rep.problems
            .iter()
            .any(|p| p.contains("seen seq 15") && p.contains("ends at seq 12") && p.contains("--repair")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn a_repository_with_no_commit_verifies_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    drop(Audit::open(&dir, Reg::default().snapshot()).unwrap());
    assert_eq!(verify(&dir).unwrap(), 0);
    assert!(read_history(&dir).unwrap().is_empty());
    assert_eq!(head(&dir).unwrap(), None);
}

#[test]
fn archiving_the_last_record_of_a_project_leaves_a_clean_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let audit = Audit::open_with(&dir, eager(), reg.snapshot()).unwrap();
    reg.live("solo", 1, "Only");
    audit.note(mark(2, "a", "solo", &[1])).unwrap();
    audit.flush(T).unwrap();
    reg.archive("solo", 1, 3);
    reg.archive("solo", 2, 4);
    audit.note(mark(4, "b", "solo", &[1, 2])).unwrap();
    audit.flush(T).unwrap();
    assert_eq!(audit.stats().failures, 0, "{:?}", audit.stats());
    let (ok, ls) = git(&dir, &["ls-tree", "-r", "-t", "--name-only", "main"]);
    assert!(ok, "{ls}");
    assert!(!ls.contains("registry/solo/"), "{ls}");
    assert!(ls.contains(&format!("archive/solo/{}/3.json", uuid(1))), "{ls}");
    assert!(ls.contains(&format!("archive/solo/{}/4.json", uuid(2))), "{ls}");
    let (ok, out) = git(&dir, &["fsck", "--strict"]);
    assert!(ok, "{out}");
}

#[test]
fn audit_handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Audit>();
}

/// A kill -9 in the middle of a ref update leaves `refs/heads/main.lock`; the next open must
/// clear it, or every later commit fails (found by the daemon's kill -9 loop).
#[test]
fn stale_lock_files_from_a_crash_are_cleared_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    reg.live(P, 1, "A");
    {
        let audit = Audit::open_with(&dir, eager(), reg.snapshot()).unwrap();
        audit.note(mark(2, "a", P, &[1])).unwrap();
        audit.flush(T).unwrap();
    }
    std::fs::write(dir.join("refs/heads/main.lock"), b"").unwrap();
    let audit = Audit::open_with(&dir, eager(), reg.snapshot()).unwrap();
    audit.note(mark(4, "b", P, &[1])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.failures, s.last_audited_seq), (0, 4), "{s:?}");
    assert!(!dir.join("refs/heads/main.lock").exists());
    assert_eq!(verify(&dir).unwrap(), 4);
    assert!(git(&dir, &["fsck", "--strict"]).0);
}

/// `git gc` run by a person while the audit commits (it repacks everything and removes the
/// packs the audit's commit handle has open): the commits go on, and the history is whole.
#[test]
fn git_gc_between_commits_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    let mut marks = vec![];
    for i in 1..=12u32 {
        reg.live(P, 1 + i % 4, &format!("v{i}"));
        let m = mark(u64::from(i), &format!("op-{i}"), P, &[1 + i % 4]);
        marks.push(m.clone());
        audit.note(m).unwrap();
        audit.flush(T).unwrap();
        if i % 4 == 0 {
            let (ok, out) = git(&dir, &["gc", "--quiet", "--prune=now"]);
            assert!(ok, "gc: {out}");
        }
    }
    assert_eq!(audit.stats().failures, 0, "{:?}", audit.stats());
    audit.close();
    let (ok, out) = git(&dir, &["fsck", "--strict"]);
    assert!(ok, "fsck: {out}");
    let report = check(&read_history(&dir).unwrap(), &finals(&marks), 12);
    assert!(report.problems.is_empty() && report.unaudited == 0, "{report:?}");
    for n in 1..=4u32 {
        let last = (1..=12u32).filter(|i| 1 + i % 4 == n).max().unwrap();
        assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(n))).unwrap()["name"], format!("v{last}"));
    }
}

/// A crash in the middle of a pack merge leaves its temporary files, or the merged pack
/// renamed into place without its index: the next open removes them, the packs the merge
/// was to replace still hold everything, and the audit goes on.
#[test]
fn a_pack_merge_cut_short_by_a_crash_is_cleared_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let pack_dir = dir.join("objects/pack");
    {
        let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
        for i in 1..=5u32 {
            reg.live(P, i, &format!("v{i}"));
            audit.note(mark(u64::from(i), &format!("op-{i}"), P, &[i])).unwrap();
            audit.flush(T).unwrap();
        }
    }
    let pack = std::fs::read_dir(&pack_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let bytes = std::fs::read(&pack).unwrap();
    std::fs::write(pack_dir.join("tmp_vibesync_merge_4242.pack"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(pack_dir.join("tmp_vibesync_merge_4242.idx"), b"torn").unwrap();
    let orphan = pack_dir.join(format!("pack-{}.pack", "ab".repeat(20)));
    std::fs::write(&orphan, &bytes).unwrap();
    let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&pack_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with("tmp_") && !n.starts_with("pack-abab")), "{names:?}");
    assert_eq!(packs(&dir), 5);
    reg.live(P, 1, "after");
    audit.note(mark(6, "op-6", P, &[1])).unwrap();
    audit.flush(T).unwrap();
    audit.close();
    assert_eq!(verify(&dir).unwrap(), 6);
    let (ok, out) = git(&dir, &["fsck", "--strict"]);
    assert!(ok, "fsck: {out}");
    assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(3))).unwrap()["name"], "v3");
}

/// After WAL compaction (docs/WAL.md §11) the FINALs at or before the anchor are gone: the
/// commits covering them are not problems, a commit straddling the anchor is checked for
/// the FINALs still in the log, and everything after is checked as before.
#[test]
fn check_against_a_compacted_wal_checks_only_what_the_log_still_holds() {
    let c = |first, last, ops: &[&str], wal: Option<(u64, &str)>| CommitInfo {
        commit: format!("c{first}"),
        first_seq: first,
        last_seq: last,
        operations: ops.iter().map(|s| s.to_string()).collect(),
        wal: wal.map(|(s, h)| (s, h.to_string())),
    };
    let f = |seq, op: &str| FinalRef { seq, operation_id: op.into(), h: format!("h{seq}") };
    let history = [
        c(1, 6, &["a", "b"], Some((6, "h6"))),
        c(7, 12, &["c", "d"], Some((12, "h12"))),
        c(13, 15, &["e"], Some((15, "h15"))),
    ];
    // Compacted up to 10: FINALs 3, 6 and 9 are gone; 12 and 15 remain.
    let kept = [f(12, "d"), f(15, "e")];
    assert!(!check(&history, &kept, 15).problems.is_empty(), "the plain check sees missing FINALs");
    assert_eq!(check_compacted(&history, &kept, 15, 10), CheckReport::default());
    // A kept FINAL missing from its commit is still found.
    let bad = [c(1, 6, &["a", "b"], None), c(7, 12, &["c"], None), c(13, 15, &["e"], None)];
    let rep = check_compacted(&bad, &kept, 15, 10);
    assert!(
        rep.problems.iter().any(|p| p.contains("seq 12") && p.contains("missing from commit")),
        "{:?}",
        rep.problems
    );
}

/// A commit touches only what changed: an entry whose snapshot is the same as in the head
/// tree is not rewritten (looked up in its directory, read once per commit), whichever
/// project or archive directory it is in.
#[test]
fn unchanged_snapshots_are_left_out_of_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    for n in 1..=50 {
        reg.live(P, n, "Cube");
        reg.live("other", n, "Light");
    }
    reg.archive(P, 60, 3);
    audit.note(mark(5, "op-a", P, &(1..=50).chain([60]).collect::<Vec<_>>())).unwrap();
    audit.note(mark(6, "op-b", "other", &(1..=50).collect::<Vec<_>>())).unwrap();
    audit.flush(T).unwrap();
    reg.live(P, 7, "Cube.moved");
    reg.live("other", 9, "Light.moved");
    audit.note(mark(8, "op-c", P, &(1..=50).chain([60]).collect::<Vec<_>>())).unwrap();
    audit.note(mark(9, "op-d", "other", &(1..=50).collect::<Vec<_>>())).unwrap();
    audit.flush(T).unwrap();
    let (ok, changed) = git(&dir, &["diff-tree", "-r", "--name-status", "main~1", "main"]);
    assert!(ok, "{changed}");
    assert_eq!(
        changed.lines().collect::<Vec<_>>(),
        vec![format!("M\tregistry/{P}/{}.json", uuid(7)), format!("M\tregistry/other/{}.json", uuid(9))],
        "only the two changed snapshots"
    );
    assert_eq!(file_at_head(&dir, &format!("archive/{P}/{}/3.json", uuid(60))).unwrap()["tombstone_seq"], 3);
    let (ok, out) = git(&dir, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "fsck: {out}");
}

fn loose_objects(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("objects"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum()
}

fn packs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .count()
}

/// Each commit's objects reach the disk as one pack (no loose object files), written before
/// `main` moves; once there are 16 small packs they are merged into one (older versions as
/// deltas of the next), and every commit, tree and snapshot stays readable (git fsck, the
/// history check, the content at head).
#[test]
fn each_commit_is_one_pack_and_small_packs_are_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    let mut marks = vec![];
    for i in 1..=15u32 {
        for n in 1..=20 {
            reg.live(P, n, &format!("Cube.{i}"));
        }
        if i == 3 {
            reg.archive(P, 20, 9);
        }
        let m = mark(u64::from(i) * 2, &format!("op-{i}"), P, &(1..=20).collect::<Vec<_>>());
        marks.push(m.clone());
        audit.note(m).unwrap();
        audit.flush(T).unwrap();
        assert_eq!(loose_objects(&dir), 0, "commit {i} wrote loose objects");
        assert_eq!(packs(&dir), i as usize, "one pack per commit");
    }
    assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(7))).unwrap()["name"], "Cube.15");
    // The 16th small pack triggers the merge.
    reg.live(P, 1, "Cube.last");
    let m = mark(40, "op-16", P, &[1]);
    marks.push(m.clone());
    audit.note(m).unwrap();
    audit.flush(T).unwrap();
    assert_eq!(packs(&dir), 1, "16 small packs merged into one");
    assert_eq!(loose_objects(&dir), 0);
    // The older versions of each snapshot and of the project's directory are deltas of the
    // next version; the newest of each is whole (git checks the pack, its index and every
    // object's CRC here).
    let idx = std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    let out = Command::new("git").arg("verify-pack").arg("-v").arg(&idx).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{listing}{}", String::from_utf8_lossy(&out.stderr));
    let kind_of = |id: &str| -> (String, bool) {
        let line = listing.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not in {listing}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols[1].to_string(), cols.len() > 5)
    };
    let (ok, head_tree) = git(&dir, &["rev-parse", &format!("main:registry/{P}")]);
    assert!(ok);
    assert_eq!(kind_of(head_tree.trim()), ("tree".into(), false), "the newest directory is whole");
    let (ok, old_tree) = git(&dir, &["rev-parse", &format!("main~1:registry/{P}")]);
    assert!(ok);
    assert_eq!(
        kind_of(old_tree.trim()),
        ("tree".into(), true),
        "the directory before the last commit (one entry changed since) is a delta"
    );
    let (ok, old_blob) = git(&dir, &["rev-parse", &format!("main~8:registry/{P}/{}.json", uuid(7))]);
    assert!(ok);
    assert_eq!(kind_of(old_blob.trim()), ("blob".into(), true), "an older snapshot is a delta");
    let (ok, new_blob) = git(&dir, &["rev-parse", &format!("main:registry/{P}/{}.json", uuid(7))]);
    assert!(ok);
    assert_eq!(kind_of(new_blob.trim()), ("blob".into(), false), "the newest snapshot is whole");
    audit.close();
    let (ok, out) = git(&dir, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "fsck: {out}");
    let hist = read_history(&dir).unwrap();
    assert_eq!(hist.len(), 16);
    let report = check(&hist, &finals(&marks), 40);
    assert!(report.problems.is_empty() && report.unaudited == 0, "{report:?}");
    assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(1))).unwrap()["name"], "Cube.last");
    assert_eq!(file_at_head(&dir, &format!("archive/{P}/{}/9.json", uuid(20))).unwrap()["tombstone_seq"], 9);
    // Every commit's tree is still readable after the merge removed the packs it came from.
    let (ok, out) = git(&dir, &["log", "--format=%H", "-p", "main"]);
    assert!(ok, "{out}");
    assert!(out.contains("Cube.3"), "an old version is still in the history");
}

/// Merges roll packs into bigger ones again and again, across a restart (which forgets
/// which object replaced which): after 120 one-change commits the pack count is still
/// bounded, git finds nothing wrong, every commit's snapshot reads back as written, and the
/// directory's versions are mostly stored as deltas.
#[test]
fn packs_roll_up_across_restarts_and_every_version_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    for n in 1..=40 {
        reg.live(P, n, "start");
    }
    let mut marks = vec![mark(1, "op-0", P, &(1..=40).collect::<Vec<_>>())];
    let mut audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    audit.note(marks[0].clone()).unwrap();
    audit.flush(T).unwrap();
    for i in 1..=120u32 {
        if i == 50 || i == 90 {
            audit.close();
            audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
        }
        let n = 1 + i % 40;
        reg.live(P, n, &format!("v{i}"));
        let m = mark(u64::from(i) + 1, &format!("op-{i}"), P, &[n]);
        marks.push(m.clone());
        audit.note(m).unwrap();
        audit.flush(T).unwrap();
        assert!(packs(&dir) <= 16, "commit {i}: {} packs", packs(&dir));
    }
    audit.close();
    assert_eq!(loose_objects(&dir), 0);
    let (ok, out) = git(&dir, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "fsck: {out}");
    for idx in std::fs::read_dir(dir.join("objects/pack")).unwrap().flatten().map(|e| e.path()) {
        if idx.extension().is_some_and(|x| x == "idx") {
            let out = Command::new("git").arg("verify-pack").arg(&idx).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let hist = read_history(&dir).unwrap();
    assert_eq!(hist.len(), 121);
    let report = check(&hist, &finals(&marks), 121);
    assert!(report.problems.is_empty() && report.unaudited == 0, "{report:?}");
    let repo = git2::Repository::open_bare(&dir).unwrap();
    let mut commit = repo.find_reference(BRANCH).unwrap().peel_to_commit().unwrap();
    for i in (1..=120u32).rev() {
        let path = format!("registry/{P}/{}.json", uuid(1 + i % 40));
        let blob = commit.tree().unwrap().get_path(Path::new(&path)).unwrap().to_object(&repo).unwrap();
        let v: Value = serde_json::from_slice(blob.as_blob().unwrap().content()).unwrap();
        assert_eq!(v["name"], format!("v{i}"), "commit {i}");
        commit = commit.parent(0).unwrap();
    }
    let (ok, out) = git(&dir, &["rev-list", "--objects", "main"]);
    assert!(ok);
    let mut deltas = 0;
    let mut trees = 0;
    let listing: String = std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .map(|idx| {
            String::from_utf8_lossy(&Command::new("git").arg("verify-pack").arg("-v").arg(idx).output().unwrap().stdout)
                .into_owned()
        })
        .collect();
    for line in out.lines().filter(|l| l.ends_with(&format!("registry/{P}"))) {
        let id = line.split_whitespace().next().unwrap();
        let entry = listing.lines().find(|l| l.starts_with(id)).unwrap();
        trees += 1;
        if entry.split_whitespace().count() > 5 {
            deltas += 1;
        }
    }
    assert!(trees >= 100 && deltas * 2 > trees, "{deltas} of {trees} versions of the directory are deltas");
}

/// After each commit the audit rests `rest_factor` times that commit's CPU time before the
/// next (its share of a core stays bounded however big the commits grow); a flush does not
/// wait, and with no rest the next group commits at once.
#[test]
fn the_audit_rests_after_a_commit_in_proportion_to_its_cost() {
    let wait_commits = |audit: &Audit, n: u64| {
        let deadline = std::time::Instant::now() + T;
        while audit.stats().commits < n {
            assert!(std::time::Instant::now() < deadline, "commit {n} never came: {:?}", audit.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let reg = Reg::default();
    reg.live(P, 1, "Cube");
    // Any commit costs well over 1 µs of CPU: a factor of 10^6 makes the rest over a second.
    let cfg = AuditConfig { group_ms: 0, rest_factor: 1_000_000, ..AuditConfig::default() };
    let audit = Audit::open_with(tmp.path().join("a"), cfg, reg.snapshot()).unwrap();
    audit.note(mark(1, "op-1", P, &[1])).unwrap();
    wait_commits(&audit, 1);
    audit.note(mark(2, "op-2", P, &[1])).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let s = audit.stats();
    assert_eq!((s.commits, s.pending), (1, 1), "resting: the second group waits {s:?}");
    audit.flush(T).unwrap();
    assert_eq!(audit.stats().commits, 2, "a flush does not wait for the rest");
    audit.close();

    let cfg = AuditConfig { group_ms: 0, rest_factor: 0, ..AuditConfig::default() };
    let audit = Audit::open_with(tmp.path().join("b"), cfg, reg.snapshot()).unwrap();
    audit.note(mark(1, "op-1", P, &[1])).unwrap();
    wait_commits(&audit, 1);
    audit.note(mark(2, "op-2", P, &[1])).unwrap();
    wait_commits(&audit, 2);
    audit.close();
}

/// uuids spread over every bucket (the first two hex digits vary).
fn spread(n: u32) -> String {
    format!("{:08x}-4b7d-4a53-9a43-{n:012x}", n.wrapping_mul(2_654_435_761))
}

fn put_live(reg: &Reg, u: &str, name: &str) {
    let v = json!({"uuid":u,"name":name,"status":"live"});
    reg.0.lock().unwrap().insert((P.into(), u.to_string()), AuditContent::Live(v));
}

fn spread_mark(seq: u64, op: &str, uuids: &[String]) -> FinalMark {
    FinalMark { seq, h: format!("h{seq}"), operation_id: op.into(), project_id: P.into(), uuids: uuids.to_vec() }
}

fn entries_at(dir: &Path, rev: &str) -> std::collections::BTreeMap<String, String> {
    let repo = git2::Repository::open_bare(dir).unwrap();
    let tree = repo.revparse_single(rev).unwrap().peel_to_commit().unwrap().tree().unwrap();
    project_entries(&repo, &tree, P)
        .unwrap()
        .into_iter()
        .map(|(u, id)| {
            let v: Value = serde_json::from_slice(repo.find_blob(id).unwrap().content()).unwrap();
            (u, v["name"].as_str().unwrap().to_string())
        })
        .collect()
}

/// A project whose directory reaches FAN_OUT_AT entries is fanned out by the next commit
/// (docs/WAL.md §9): every entry moves under its bucket unchanged, the commit's own changes
/// apply on top, the older commits keep the flat layout and read the same, and from then on
/// a commit rewrites only the buckets it touches.
#[test]
fn a_big_project_is_fanned_out_and_reads_the_same_in_either_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let reg = Reg::default();
    let audit = Audit::open_with(&dir, manual(), reg.snapshot()).unwrap();
    let all: Vec<String> = (0..FAN_OUT_AT as u32).map(spread).collect();
    for u in &all {
        put_live(&reg, u, "Obj");
    }
    let mut marks = vec![spread_mark(2, "op-1", &all)];
    audit.note(marks[0].clone()).unwrap();
    audit.flush(T).unwrap();
    // Up to the threshold: flat.
    assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", all[0])).unwrap()["name"], "Obj");
    let flat = entries_at(&dir, "main");
    assert_eq!(flat.len(), FAN_OUT_AT);

    // The next commit: one renamed, one archived, one new.
    let (renamed, gone, new) = (all[10].clone(), all[20].clone(), spread(1_000_000));
    put_live(&reg, &renamed, "Renamed");
    put_live(&reg, &new, "New");
    let v = json!({"uuid":gone,"status":"tombstoned","tombstone_seq":3});
    reg.0.lock().unwrap().insert((P.into(), gone.clone()), AuditContent::Archived { tombstone_seq: 3, value: v });
    marks.push(spread_mark(4, "op-2", &[renamed.clone(), gone.clone(), new.clone()]));
    audit.note(marks[1].clone()).unwrap();
    audit.flush(T).unwrap();
    let (_, ls) = git(&dir, &["ls-tree", "--name-only", &format!("main:registry/{P}")]);
    assert!(ls.lines().all(|l| l.len() == 2), "only buckets left in the project's directory: {ls}");
    assert_eq!(ls.lines().count(), 256, "{ls}");
    let bucket = |u: &str| format!("registry/{P}/{}/{u}.json", &u[..2]);
    assert_eq!(file_at_head(&dir, &bucket(&renamed)).unwrap()["name"], "Renamed");
    assert_eq!(file_at_head(&dir, &bucket(&new)).unwrap()["name"], "New");
    assert_eq!(file_at_head(&dir, &bucket(&all[0])).unwrap()["name"], "Obj");
    assert!(
        file_at_head(&dir, &bucket(&gone)).is_none()
            && file_at_head(&dir, &format!("registry/{P}/{gone}.json")).is_none()
    );
    assert_eq!(file_at_head(&dir, &format!("archive/{P}/{gone}/3.json")).unwrap()["tombstone_seq"], 3);
    let mut want = flat.clone();
    want.insert(renamed.clone(), "Renamed".into());
    want.insert(new.clone(), "New".into());
    want.remove(&gone);
    assert_eq!(entries_at(&dir, "main"), want, "the fanned-out commit reads as the flat one plus its changes");
    assert_eq!(entries_at(&dir, "main~1"), flat, "the commit before keeps its flat layout");

    // Fanned out for good: a commit of one change rewrites that bucket only.
    put_live(&reg, &all[30], "Again");
    marks.push(spread_mark(6, "op-3", std::slice::from_ref(&all[30])));
    audit.note(marks[2].clone()).unwrap();
    audit.flush(T).unwrap();
    let (_, changed) = git(&dir, &["diff", "--name-only", "main~1", "main"]);
    assert_eq!(changed.trim(), bucket(&all[30]), "{changed}");
    audit.close();
    let (ok, out) = git(&dir, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "fsck: {out}");
    let report = check(&read_history(&dir).unwrap(), &finals(&marks), 6);
    assert!(report.problems.is_empty() && report.unaudited == 0, "{report:?}");
}
