//! Audit tests against real bare repositories, checked with git2 and the git CLI.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vibesync_audit::*;

const P: &str = "demo";
const T: Duration = Duration::from_secs(20);

fn uuid(n: u32) -> String {
    format!("6f1c2a4e-4b7d-4a53-9a43-{n:012x}")
}

fn live(n: u32, name: &str) -> AuditEntry {
    AuditEntry {
        project_id: P.into(),
        uuid: uuid(n),
        content: AuditContent::Live(json!({"uuid":uuid(n),"name":name,"status":"live"})),
    }
}

fn archived(n: u32, seq: u64) -> AuditEntry {
    AuditEntry {
        project_id: P.into(),
        uuid: uuid(n),
        content: AuditContent::Archived {
            tombstone_seq: seq,
            value: json!({"uuid":uuid(n),"status":"tombstoned","tombstone_seq":seq}),
        },
    }
}

fn batch(first: u64, last: u64, ops: &[&str], entries: Vec<AuditEntry>) -> AuditBatch {
    AuditBatch { first_seq: first, last_seq: last, operation_ids: ops.iter().map(|s| s.to_string()).collect(), entries }
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

#[test]
fn commits_snapshot_trees_with_trailers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let audit = Audit::open(&dir).unwrap();
    assert_eq!(audit.last_audited_seq(), 0);

    audit.submit(batch(1, 5, &["op-a"], vec![live(1, "Cube"), live(2, "Light")])).unwrap();
    audit.submit(batch(6, 9, &["op-b", "op-c"], vec![live(1, "Cube.renamed")])).unwrap();
    audit.submit(batch(10, 12, &["op-d"], vec![archived(2, 11)])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.commits, s.failures, s.pending, s.last_audited_seq), (3, 0, 0, 12), "{s:?}");

    assert_eq!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(1))).unwrap()["name"], "Cube.renamed");
    assert!(
        file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(2))).is_none(),
        "archived: removed from registry/"
    );
    assert_eq!(file_at_head(&dir, &format!("archive/{P}/{}/11.json", uuid(2))).unwrap()["tombstone_seq"], 11);

    // Content is pretty JSON with a trailing newline.
    let (ok, shown) = git(&dir, &["show", &format!("main:registry/{P}/{}.json", uuid(1))]);
    assert!(ok, "{shown}");
    assert!(shown.starts_with("{\n  \"") && shown.ends_with("}\n"), "{shown}");

    // Bare repo, HEAD -> main, fsck --strict clean, history visible.
    assert!(git2::Repository::open_bare(&dir).unwrap().is_bare());
    assert_eq!(git(&dir, &["symbolic-ref", "HEAD"]).1.trim(), "refs/heads/main");
    let (ok, out) = git(&dir, &["fsck", "--strict", "--no-dangling"]);
    assert!(ok, "fsck: {out}");
    let (ok, log) = git(&dir, &["log", "--format=%s|%an <%ae>|%cn"]);
    assert!(ok, "{log}");
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects,
        vec![
            "vibesync: seq 10-12 (1 operation, 1 entry)|vibesync <vibesync@localhost>|vibesync",
            "vibesync: seq 6-9 (2 operations, 1 entry)|vibesync <vibesync@localhost>|vibesync",
            "vibesync: seq 1-5 (1 operation, 2 entries)|vibesync <vibesync@localhost>|vibesync",
        ]
    );
    // Trailers parse as git trailers.
    let (ok, trailers) = git(&dir, &["log", "-1", "--skip=1", "--format=%(trailers:only,unfold)"]);
    assert!(ok, "{trailers}");
    assert_eq!(
        trailers.trim(),
        "VibeSync-Seq-Range: 6-9\nVibeSync-Operation: op-b\nVibeSync-Operation: op-c\nVibeSync-Entries: 1"
    );
    audit.close();
    assert!(matches!(audit.submit(batch(13, 13, &[], vec![])), Err(AuditError::Closed)));
}

#[test]
fn reopen_continues_from_last_audited_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    {
        let audit = Audit::open(&dir).unwrap();
        audit.submit(batch(1, 4, &["a"], vec![live(1, "A")])).unwrap();
        audit.submit(batch(5, 8, &["b"], vec![live(2, "B")])).unwrap();
        audit.flush(T).unwrap();
    } // dropped: thread joined

    let audit = Audit::open(&dir).unwrap();
    assert_eq!(audit.last_audited_seq(), 8);
    assert_eq!(audit.stats().commits, 2);
    // Re-submitted from the WAL after a crash: already audited, skipped.
    audit.submit(batch(5, 8, &["b"], vec![live(2, "B")])).unwrap();
    audit.submit(batch(9, 10, &["c"], vec![live(3, "C")])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.commits, s.skipped, s.last_audited_seq), (3, 1, 10), "{s:?}");
    assert!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(1))).is_some(), "history continued");
    assert_eq!(git(&dir, &["rev-list", "--count", "main"]).1.trim(), "3");
    assert!(git(&dir, &["fsck", "--strict"]).0);
}

#[test]
fn failures_are_counted_and_the_thread_keeps_going() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let audit = Audit::open(&dir).unwrap();
    audit.submit(batch(1, 1, &["ok"], vec![live(1, "A")])).unwrap();

    // Bad data: a path-escaping project id and a non-uuid.
    let mut evil = live(2, "X");
    evil.project_id = "../../etc".into();
    audit.submit(batch(2, 2, &["evil"], vec![evil])).unwrap();
    let mut bad_uuid = live(3, "Y");
    bad_uuid.uuid = "a/b".into();
    audit.submit(batch(3, 3, &["bad"], vec![bad_uuid])).unwrap();
    audit.submit(batch(9, 4, &["backwards"], vec![])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.commits, s.failures, s.last_audited_seq), (1, 3, 1), "{s:?}");
    assert!(s.last_error.is_some());

    // Storage failure: the objects dir is replaced by a file (works even as root).
    let objects = dir.join("objects");
    let aside = dir.join("objects.aside");
    std::fs::rename(&objects, &aside).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();
    audit.submit(batch(4, 4, &["disk"], vec![live(4, "Z")])).unwrap();
    audit.flush(T).unwrap();
    assert_eq!(audit.stats().failures, 4);
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(&aside, &objects).unwrap();

    // Still alive.
    audit.submit(batch(5, 6, &["after"], vec![live(5, "W")])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.commits, s.failures, s.last_audited_seq), (2, 4, 6), "{s:?}");
    assert!(file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(5))).is_some());
    assert!(git(&dir, &["fsck", "--strict"]).0);
}

#[test]
fn a_full_queue_coalesces_instead_of_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let audit = Audit::open_with(&dir, AuditConfig { queue_capacity: 2 }).unwrap();
    let n = 300u64;
    let mut coalesced = 0;
    for i in 1..=n {
        // uuid i%10 is rewritten many times: the last write must win.
        let e = live((i % 10) as u32, &format!("v{i}"));
        if audit.submit(batch(i, i, &[&format!("op{i}")], vec![e])).unwrap() == Submitted::Coalesced {
            coalesced += 1;
        }
    }
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!(s.coalesced, coalesced);
    assert_eq!(s.commits + s.coalesced, n, "{s:?}");
    assert_eq!((s.failures, s.last_audited_seq), (0, n));
    for k in 0..10u64 {
        let last = (n - 9..=n).find(|i| i % 10 == k).unwrap();
        assert_eq!(
            file_at_head(&dir, &format!("registry/{P}/{}.json", uuid(k as u32))).unwrap()["name"],
            format!("v{last}")
        );
    }
    // Every operation id is in some commit's trailers.
    let (_, all) = git(&dir, &["log", "--format=%(trailers:key=VibeSync-Operation,valueonly)"]);
    assert_eq!(all.lines().filter(|l| !l.is_empty()).count() as u64, n);
}

#[test]
fn merge_keeps_order_and_range() {
    let mut a = batch(5, 6, &["x"], vec![live(1, "old")]);
    a.merge(batch(7, 9, &["y"], vec![live(1, "new")]));
    assert_eq!((a.first_seq, a.last_seq), (5, 9));
    assert_eq!(a.operation_ids, vec!["x", "y"]);
    assert_eq!(a.entries.len(), 2);
    let msg = commit_message(&a);
    assert_eq!(parse_range(&msg), Some((5, 9)));
}

#[test]
fn archiving_the_last_record_of_a_project_leaves_a_clean_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".git_safety");
    let audit = Audit::open(&dir).unwrap();
    let mut solo = live(1, "Only");
    solo.project_id = "solo".into();
    audit.submit(batch(1, 2, &["a"], vec![solo])).unwrap();
    let mut gone = archived(1, 3);
    gone.project_id = "solo".into();
    // Same batch: live then archived; the archived state wins.
    let mut again = live(2, "Two");
    again.project_id = "solo".into();
    let mut gone2 = archived(2, 4);
    gone2.project_id = "solo".into();
    audit.submit(batch(3, 4, &["b"], vec![gone, again, gone2])).unwrap();
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
    {
        let audit = Audit::open(&dir).unwrap();
        audit.submit(batch(1, 2, &["a"], vec![live(1, "A")])).unwrap();
        audit.flush(T).unwrap();
    }
    std::fs::write(dir.join("refs/heads/main.lock"), b"").unwrap();
    let audit = Audit::open(&dir).unwrap();
    audit.submit(batch(3, 4, &["b"], vec![live(2, "B")])).unwrap();
    audit.flush(T).unwrap();
    let s = audit.stats();
    assert_eq!((s.failures, s.last_audited_seq), (0, 4), "{s:?}");
    assert!(!dir.join("refs/heads/main.lock").exists());
    assert_eq!(verify(&dir).unwrap(), 4);
    assert!(git(&dir, &["fsck", "--strict"]).0);
}
