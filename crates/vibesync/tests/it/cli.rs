//! The forensic and status commands.

use serde_json::json;

use crate::common::*;

#[test]
fn status_tail_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let (u1, u2) = (new_uuid(), new_uuid());
    let ack = register(&mut c, "r", &[(&u1, "object", "A"), (&u2, "object", "B")]);
    let seq = ack["seq"].as_u64().unwrap();

    let (code, out, err) = cli(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["registry"]["live"], 2);
    assert!(st["seq"].as_u64().unwrap() >= seq);
    assert_eq!(st["safe_mode"], false);
    assert_eq!(st["listen"], d.addr.to_string());
    let (code, out, _) = cli(&["status", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("2 live"), "{out}");

    // While running: verify asks the daemon, and says so.
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verify: clean") && out.contains("asked the running daemon"), "{out}");
    let (code, out, err) = cli(&["verify", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["checked_by"], "daemon", "{v}");
    assert_eq!(v["clean"], true, "{v}");
    assert!(v["last_seq"].as_u64().unwrap() >= seq, "{v}");

    // tail works while the daemon runs and after it stops; filters combine.
    let (code, out, _) = cli(&["tail", "--data-dir", data.to_str().unwrap(), "--uuid", &u2, "--phase", "step"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("STEP") && out.contains(&u2));
    drop(c);
    d.stop();
    let (code, out, _) = cli(&["tail", "--data-dir", data.to_str().unwrap(), "--json", "--phase", "COMMIT"]);
    assert_eq!(code, 0);
    let commit: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(commit["seq"].as_u64().unwrap(), seq);
    let op = commit["operation_id"].as_str().unwrap().to_string();
    let (_, out, _) = cli(&["tail", "--data-dir", data.to_str().unwrap(), "--op", &op]);
    let phases: Vec<&str> = out.lines().map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(phases, ["BEGIN", "STEP", "STEP", "COMMIT", "FINAL"]);
    let (code, _, err) = cli(&["tail", "--data-dir", data.to_str().unwrap(), "--phase", "NOPE"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown phase"));

    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("read the files"), "{out}");
    let (code, out, _) = cli(&["verify", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["checked_by"], "offline", "{v}");

    // A damaged sidecar is reported by verify and rewritten by the next boot.
    std::fs::write(data.join("registry.sidecar.json"), b"{\"schema_version\":1,\"garbage\":").unwrap();
    let (code, out, _) = verify(&data);
    assert_eq!(code, 1);
    assert!(out.contains("sidecar"), "{out}");
    let mut d = Daemon::start(&data);
    d.stop();
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");
    let _ = json!({});
}

/// docs/PROTOCOL.md §5 `status`: with the audit disabled, `audit` still has every field
/// (`enabled: false`, nothing waiting) — found by a client written from the docs.
#[test]
fn status_names_every_audit_field_when_the_audit_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[audit]\nenabled = false\n").unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()], "127.0.0.1:0");
    let mut c = d.client("test");
    let st = c.request(&json!({"type":"status","request_id":"s"})).unwrap();
    let audit = st["audit"].as_object().unwrap();
    for k in [
        "enabled",
        "last_audited_seq",
        "lag",
        "pending",
        "lag_ms",
        "commits",
        "finals",
        "cpu_us",
        "cpu_us_per_final",
        "failures",
        "suspended",
        "last_error",
    ] {
        assert!(audit.contains_key(k), "status.audit.{k} missing: {st}");
    }
    assert_eq!(st["audit"]["enabled"], false);
    assert_eq!(st["audit"]["lag"], 0);
}

/// docs/PROTOCOL.md §6.8 `admin`: a `project_id` breaking §2's rule (or a `uuid` that is not
/// one) is `BAD_MESSAGE` naming the field, for every action — `entries` answered them as
/// empty projects (found by a client written from the docs).
#[test]
fn admin_refuses_a_bad_project_id_or_uuid_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut c = d.client("cli");
    let long = "p".repeat(200);
    for bad in ["../x", "", long.as_str(), ".hidden", "sp ace"] {
        let r = c.request(&json!({"type":"admin","request_id":"a","action":"entries","project_id":bad})).unwrap();
        assert_eq!(r["code"], "BAD_MESSAGE", "{bad:?}: {r}");
        assert!(r["message"].as_str().unwrap().contains("project_id"), "{r}");
        assert_eq!(r["request_id"], "a");
    }
    let r = c.request(&json!({"type":"admin","request_id":"q","action":"quarantine_list","uuid":"NOPE"})).unwrap();
    assert_eq!(r["code"], "BAD_MESSAGE", "{r}");
    let r = c.request(&json!({"type":"admin","request_id":"e","action":"entries","project_id":"demo"})).unwrap();
    assert_eq!(r["type"], "admin_result", "{r}");
}

/// docs/WAL.md §8: `vibesync tail` is the forensic tool — a damaged record in the middle is
/// named on stderr and the records after it are still shown; exit 1 at the end.
#[test]
fn tail_names_a_damaged_record_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    for i in 0..3 {
        register(&mut c, &format!("r{i}"), &[(&new_uuid(), "object", &format!("O{i}"))]);
    }
    drop(c);
    d.stop();
    let seg = std::fs::read_dir(data.join("wal")).unwrap().flatten().map(|e| e.path()).min().unwrap();
    let text = std::fs::read_to_string(&seg).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let total = lines.len();
    // Flip one character of a record's payload in the middle: its checksum no longer matches.
    let mid = total / 2;
    lines[mid] = lines[mid].replacen("\"seq\":", "\"seq\" :", 1);
    std::fs::write(&seg, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (code, out, err) = cli(&["tail", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1, "a damaged record makes tail exit 1: {err}");
    assert!(err.contains("vibesync tail:"), "the problem is named: {err}");
    let shown: Vec<u64> =
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap()).collect();
    assert!(shown.contains(&(total as u64)), "records after the damage are still shown: {shown:?}\n{err}");
    assert!(!shown.contains(&(mid as u64 + 1)), "the damaged one is not: {shown:?}");
}
