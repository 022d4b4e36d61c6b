//! Running as a background service: what `serve` prints, where the config comes from, plain
//! JSON logs, a clean stop on SIGTERM, the service definitions and `--json` everywhere.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// Lines of the daemon's stdout, read on a thread (so a deadline can be enforced).
fn stdout_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_exit(child: &mut std::process::Child, deadline: Duration) -> Option<i32> {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("daemon did not exit within {deadline:?} after SIGTERM");
}

#[test]
fn serve_says_what_to_do_next_reads_vibesync_config_and_logs_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("custom.toml");
    // No --listen and no --config: the port comes from the file named by $VIBESYNC_CONFIG.
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:0\"\n[logging]\nrotation = \"never\"\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .env("VIBESYNC_CONFIG", &cfg)
        .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        // Not a terminal, like a service journal: no colour codes.
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while !out.last().is_some_and(|l: &String| l.contains("Watch:")) {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => out.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not print its next steps within 60 s; got:\n{}", out.join("\n"));
            }
        }
    }
    let text = out.join("\n");
    assert!(out[0].starts_with("vibesync listening on 127.0.0.1:"), "{text}");
    assert!(text.contains("custom.toml ($VIBESYNC_CONFIG)"), "{text}");
    assert!(text.contains(&data.join("token").display().to_string()), "{text}");
    assert!(text.contains("addons/blender/vibesync") && text.contains("Install from Disk"), "{text}");
    assert!(text.contains("com.vibesync.bridge/package.json") && text.contains("Add package from disk"), "{text}");
    assert!(text.contains("\"default\""), "{text}");
    // Printed once: nothing more arrives while the daemon idles.
    let addr: std::net::SocketAddr = out[0].split_whitespace().nth(3).unwrap().parse().unwrap();
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let mut c = Client::connect(addr, token.trim(), "demo", "blender").unwrap();
    let (u1, u2) = (new_uuid(), new_uuid());
    let ack = register(&mut c, "r", &[(&u1, "object", "A"), (&u2, "object", "B")]);
    assert_eq!(statuses(&ack), ["registered", "registered"]);
    drop(c);

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0), "SIGTERM is a clean stop");
    assert!(rx.try_recv().is_err(), "serve printed more than its next steps");
    let boot: Value = serde_json::from_slice(&std::fs::read(data.join("boot.json")).unwrap()).unwrap();
    assert_eq!(boot["running"], false, "{boot}");
    assert_eq!(boot["last_boot_success"], true, "{boot}");

    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(stderr.contains("listening") && !stderr.contains('\u{1b}'), "stderr (journal) has colour codes:\n{stderr}");
    // The log file: JSON lines, no ANSI escapes, `uuids` a real array.
    let logs = read_logs(&data.join("logs"));
    assert!(!logs.contains('\u{1b}'), "ANSI escape in the log file");
    let lines: Vec<Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let committed = lines
        .iter()
        .find(|l| l["fields"]["uuids"].as_array().is_some_and(|a| a.iter().any(|u| u == &Value::from(u1.clone()))))
        .unwrap_or_else(|| panic!("no log line with uuids as an array naming {u1}:\n{logs}"));
    assert!(committed["fields"]["operation_id"].is_string(), "{committed}");
}

fn read_logs(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        s.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    s
}

/// `vibesync service print`: both generators, checked by the tools that read them.
#[test]
fn service_definitions_pass_systemd_analyze_and_plistlib() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("my config.toml");
    std::fs::write(&cfg, "").unwrap();
    let data = dir.path().join("data 100%");
    let args = |p: &str| {
        let (code, out, err) = cli(&[
            "service",
            "print",
            "--platform",
            p,
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let exe = std::fs::canonicalize(BIN).unwrap();

    let plist = dir.path().join("com.vibesync.daemon.plist");
    std::fs::write(&plist, args("launchd")).unwrap();
    let py = "import json, plistlib, sys\nd = plistlib.load(open(sys.argv[1], 'rb'))\nprint(json.dumps(d))";
    let out = Command::new("python3").args(["-c", py, plist.to_str().unwrap()]).output().expect("python3 (plistlib)");
    assert!(out.status.success(), "plistlib: {}", String::from_utf8_lossy(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["Label"], "com.vibesync.daemon");
    let expected =
        [exe.to_str().unwrap(), "serve", "--config", cfg.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    assert_eq!(d["ProgramArguments"], serde_json::json!(expected), "{d}");
    assert_eq!(d["RunAtLoad"], true);
    assert_eq!(d["KeepAlive"]["SuccessfulExit"], false, "restarted after a crash, not after a clean stop");
    assert!(d["ExitTimeOut"].as_u64().unwrap() >= 10);

    let unit = dir.path().join("vibesync.service");
    let text = args("systemd");
    std::fs::write(&unit, &text).unwrap();
    assert!(text.contains("KillSignal=SIGTERM") && text.contains("WantedBy=default.target"), "{text}");
    if !cfg!(target_os = "linux") {
        return; // systemd-analyze exists only on Linux
    }
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--user", unit.to_str().unwrap()])
        .env("XDG_RUNTIME_DIR", &run)
        .output()
        .expect("systemd-analyze is missing: install Debian's `systemd` package (scripts/test does)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{err}\n{text}");
    // Warnings ("ignoring") do not change the exit code: any line about the unit is a failure.
    assert!(!err.contains("vibesync.service"), "systemd-analyze complained:\n{err}\n{text}");
    let broken = dir.path().join("broken.service");
    std::fs::write(&broken, text.replace(exe.to_str().unwrap(), "/nonexistent/vibesync")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--user", broken.to_str().unwrap()])
        .env("XDG_RUNTIME_DIR", &run)
        .output()
        .unwrap();
    assert!(!out.status.success(), "systemd-analyze must reject a unit whose binary is missing");
}

/// install → status → uninstall, writing only into a temporary XDG_CONFIG_HOME (--no-start:
/// a test never enables a real service on the machine running it).
#[cfg(target_os = "linux")]
#[test]
fn service_install_status_uninstall() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    let data = dir.path().join("data");
    let run = |args: &[&str]| -> (i32, Value) {
        let out = Command::new(BIN).args(args).env("XDG_CONFIG_HOME", &xdg).env("HOME", dir.path()).output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (code, v)
    };
    let d = data.to_str().unwrap();
    let (code, v) = run(&["service", "install", "--no-start", "--data-dir", d, "--json"]);
    assert_eq!(code, 0, "{v}");
    let unit = xdg.join("systemd/user/vibesync.service");
    assert_eq!(v["path"], unit.to_str().unwrap());
    assert_eq!(v["started"], false);
    let text = std::fs::read_to_string(&unit).unwrap();
    let (_, printed, _) = cli(&["service", "print", "--platform", "systemd", "--data-dir", d]);
    assert_eq!(text, printed, "install writes what print shows");

    let (code, v) = run(&["service", "status", "--data-dir", d, "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["installed"], true, "{v}");
    assert!(v["exec"].as_str().unwrap().contains("\"serve\" \"--data-dir\""), "{v}");
    assert_eq!(v["daemon_pid"], Value::Null);
    let mut daemon = Daemon::start(&data);
    let (_, v) = run(&["service", "status", "--data-dir", d, "--json"]);
    assert_eq!(v["daemon_pid"], daemon.pid(), "{v}");
    // Without --data-dir: the data directory the installed service runs with.
    let (_, v) = run(&["service", "status", "--json"]);
    assert_eq!((&v["data_dir"], &v["daemon_pid"]), (&json!(d), &json!(daemon.pid())), "{v}");
    assert_eq!(daemon.stop(), Some(0), "SIGTERM (what the service manager sends) is a clean exit");

    let (code, v) = run(&["service", "uninstall", "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["removed"], true);
    assert!(!unit.exists());
    let (_, v) = run(&["service", "status", "--data-dir", d, "--json"]);
    assert_eq!(v["installed"], false);
    let (_, v) = run(&["service", "uninstall", "--json"]);
    assert_eq!(v["removed"], false);
}

/// `vibesync stop`: the graceful stop that works on every platform (Windows has no SIGTERM).
#[test]
fn vibesync_stop_is_a_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let mut c = d.client("blender");
    let u = new_uuid();
    assert_eq!(statuses(&register(&mut c, "r", &[(&u, "object", "A")])), ["registered"]);
    let (code, out, err) = cli(&["stop", "--json", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stopped"], true, "{v}");
    assert_eq!(v["pid"], d.pid(), "{v}");
    let mut child = d.child.take().unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0));
    let boot: Value = serde_json::from_slice(&std::fs::read(data.join("boot.json")).unwrap()).unwrap();
    assert_eq!(boot["running"], false, "{boot}");
    assert_eq!(boot["last_boot_success"], true, "{boot}");
    // Nothing running: says so, still exit 0.
    let (code, out, _) = cli(&["stop", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("no daemon is running"), "{out}");
}
