//! `vibesync service install|uninstall|status|print`: run the daemon at login as a user
//! service — a systemd user unit on Linux, a launchd agent on macOS. Both generators are
//! plain functions compiled on every platform so both are tested everywhere; Windows uses
//! Task Scheduler (README "Run it as a service").
//!
//! Stopping the service sends SIGTERM, which `serve` handles as a graceful shutdown (sessions
//! drained, WAL closed, boot.json marked clean); both definitions give it 30 s before a kill.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// systemd unit name and launchd label.
pub const UNIT_NAME: &str = "vibesync.service";
pub const LAUNCHD_LABEL: &str = "com.vibesync.daemon";
/// Seconds the service manager waits after SIGTERM before killing the daemon; well above
/// `server.shutdown_grace_secs` (5 s by default).
pub const STOP_TIMEOUT_SECS: u32 = 30;

/// A service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd agent (macOS).
    Launchd,
}

impl Platform {
    pub fn current() -> Option<Platform> {
        if cfg!(target_os = "macos") {
            Some(Platform::Launchd)
        } else if cfg!(target_os = "linux") {
            Some(Platform::Systemd)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Systemd => "systemd",
            Platform::Launchd => "launchd",
        }
    }
}

/// What the service runs: `<exe> serve [--config F] [--data-dir D]`.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub exe: PathBuf,
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// launchd only: where stdout/stderr go (systemd uses the journal).
    pub log_dir: PathBuf,
}

impl ServiceSpec {
    fn args(&self) -> Vec<String> {
        let mut a = vec![self.exe.display().to_string(), "serve".to_string()];
        if let Some(c) = &self.config {
            a.extend(["--config".to_string(), c.display().to_string()]);
        }
        if let Some(d) = &self.data_dir {
            a.extend(["--data-dir".to_string(), d.display().to_string()]);
        }
        a
    }
}

/// Quote one `ExecStart=` word for systemd: always double-quoted, with `\`, `"`, `$` and `%`
/// escaped (systemd.service(5) "Command lines", systemd.unit(5) specifiers).
fn systemd_word(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let exec: Vec<String> = spec.args().iter().map(|a| systemd_word(a)).collect();
    format!(
        "# Written by `vibesync service install`; `vibesync service uninstall` removes it.\n\
         [Unit]\n\
         Description=VibeSync daemon (crash-proof live bridge between Blender and Unity)\n\
         Documentation=https://github.com/vibesync/vibesync#readme\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={}\n\
         # SIGTERM is a graceful stop: sessions drained, WAL closed, boot marked clean.\n\
         KillSignal=SIGTERM\n\
         KillMode=mixed\n\
         TimeoutStopSec={STOP_TIMEOUT_SECS}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         # The journal is not a terminal: logs carry no colour codes.\n\
         Environment=NO_COLOR=1\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec.join(" ")
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The launchd agent property list.
pub fn launchd_plist(spec: &ServiceSpec) -> String {
    let args: String = spec.args().iter().map(|a| format!("        <string>{}</string>\n", xml_escape(a))).collect();
    let log = |name: &str| xml_escape(&spec.log_dir.join(name).display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `vibesync service install`; `vibesync service uninstall` removes it. -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LAUNCHD_LABEL}</string>
    <key>ProgramArguments</key>
    <array>
{args}    </array>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <key>ProcessType</key>
    <string>Background</string>
    <key>ExitTimeOut</key>
    <integer>{STOP_TIMEOUT_SECS}</integer>
    <key>EnvironmentVariables</key>
    <dict>
        <key>NO_COLOR</key>
        <string>1</string>
    </dict>
    <key>StandardOutPath</key>
    <string>{}</string>
    <key>StandardErrorPath</key>
    <string>{}</string>
</dict>
</plist>
"#,
        log("stdout.log"),
        log("stderr.log")
    )
}

pub fn definition(platform: Platform, spec: &ServiceSpec) -> String {
    match platform {
        Platform::Systemd => systemd_unit(spec),
        Platform::Launchd => launchd_plist(spec),
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).context("$HOME is not set")
}

/// Where the definition is installed: `$XDG_CONFIG_HOME/systemd/user/vibesync.service`
/// (else `~/.config/...`), or `~/Library/LaunchAgents/com.vibesync.daemon.plist`.
pub fn install_path(platform: Platform) -> anyhow::Result<PathBuf> {
    Ok(match platform {
        Platform::Systemd => {
            let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x),
                None => home()?.join(".config"),
            };
            base.join("systemd/user").join(UNIT_NAME)
        }
        Platform::Launchd => home()?.join("Library/LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist")),
    })
}

/// The spec for this binary: its own absolute path, the flags given to `install`.
pub fn spec_for_current_exe(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<ServiceSpec> {
    let exe = std::env::current_exe().context("finding the path of this vibesync binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let abs = |p: PathBuf| -> anyhow::Result<PathBuf> {
        Ok(if p.is_absolute() { p } else { std::env::current_dir()?.join(p) })
    };
    let log_dir = match Platform::current() {
        Some(Platform::Launchd) => home()?.join("Library/Logs/vibesync"),
        _ => std::env::temp_dir().join("vibesync"),
    };
    Ok(ServiceSpec { exe, config: config.map(abs).transpose()?, data_dir: data_dir.map(abs).transpose()?, log_dir })
}

/// One service-manager command and how it went.
fn run(cmd: &[&str]) -> Value {
    match Command::new(cmd[0]).args(&cmd[1..]).output() {
        Ok(o) => json!({
            "command": cmd.join(" "),
            "ok": o.status.success(),
            "output": format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string(),
        }),
        Err(e) => json!({"command": cmd.join(" "), "ok": false, "output": format!("cannot run {}: {e}", cmd[0])}),
    }
}

fn uid() -> String {
    #[cfg(unix)]
    {
        unsafe { libc::getuid() }.to_string()
    }
    #[cfg(not(unix))]
    {
        String::new()
    }
}

fn current_platform() -> anyhow::Result<Platform> {
    Platform::current().context(
        "no systemd or launchd on this platform; on Windows use Task Scheduler (README \"Run it as a service\")",
    )
}

/// Write the definition and (unless `start` is false) enable and start it.
pub fn install(spec: &ServiceSpec, start: bool) -> anyhow::Result<Value> {
    let platform = current_platform()?;
    let path = install_path(platform)?;
    let text = definition(platform, spec);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if platform == Platform::Launchd {
        std::fs::create_dir_all(&spec.log_dir).with_context(|| format!("creating {}", spec.log_dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    let mut commands = vec![];
    if start {
        match platform {
            Platform::Systemd => {
                commands.push(run(&["systemctl", "--user", "daemon-reload"]));
                commands.push(run(&["systemctl", "--user", "enable", "--now", UNIT_NAME]));
            }
            Platform::Launchd => {
                let target = format!("gui/{}", uid());
                // Re-installing: unload the old definition first (failure = it was not loaded).
                let _ = run(&["launchctl", "bootout", &format!("{target}/{LAUNCHD_LABEL}")]);
                commands.push(run(&["launchctl", "bootstrap", &target, &path.display().to_string()]));
            }
        }
    }
    let started = start && commands.iter().all(|c| c["ok"] == true);
    Ok(json!({
        "platform": platform.as_str(),
        "path": path.display().to_string(),
        "exec": spec.args(),
        "started": started,
        "commands": commands,
    }))
}

/// Stop (SIGTERM: a clean shutdown), disable and remove the definition.
pub fn uninstall() -> anyhow::Result<Value> {
    let platform = current_platform()?;
    let path = install_path(platform)?;
    let existed = path.exists();
    let mut commands = vec![];
    if existed {
        match platform {
            Platform::Systemd => {
                commands.push(run(&["systemctl", "--user", "disable", "--now", UNIT_NAME]));
            }
            Platform::Launchd => {
                commands.push(run(&["launchctl", "bootout", &format!("gui/{}/{LAUNCHD_LABEL}", uid())]));
            }
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        if platform == Platform::Systemd {
            commands.push(run(&["systemctl", "--user", "daemon-reload"]));
        }
    }
    Ok(
        json!({"platform": platform.as_str(), "path": path.display().to_string(), "removed": existed, "commands": commands}),
    )
}

/// Installed? Current? Running (per the service manager, and per daemon.json)?
/// `data_dir`: the `--data-dir` given, else the one the installed service runs with, else
/// `fallback` (what `serve` would use).
pub fn status(data_dir: Option<&Path>, fallback: &Path) -> anyhow::Result<Value> {
    let platform = current_platform()?;
    let path = install_path(platform)?;
    let installed = path.exists();
    let text = if installed {
        Some(std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
    } else {
        None
    };
    let exec = text.as_deref().and_then(|t| installed_exec(platform, t));
    let args = text.as_deref().and_then(|t| installed_args(platform, t));
    let served = args.as_ref().and_then(|a| a.iter().position(|w| w == "--data-dir").and_then(|i| a.get(i + 1)));
    let data_dir = match (data_dir, served) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => std::path::PathBuf::from(d),
        (None, None) => fallback.to_path_buf(),
    };
    let data_dir = data_dir.as_path();
    let manager = if !installed {
        Value::Null
    } else {
        match platform {
            Platform::Systemd => run(&["systemctl", "--user", "is-active", UNIT_NAME]),
            Platform::Launchd => run(&["launchctl", "print", &format!("gui/{}/{LAUNCHD_LABEL}", uid())]),
        }
    };
    let active = manager["ok"] == true;
    let daemon = vibesync_daemon::DataDir::new(data_dir);
    let pid = vibesync_daemon::verify::daemon_running(&daemon);
    Ok(json!({
        "platform": platform.as_str(),
        "path": path.display().to_string(),
        "installed": installed,
        "exec": exec,
        "active": active,
        "manager": manager,
        "data_dir": data_dir.display().to_string(),
        "daemon_pid": pid,
    }))
}

/// The command line an installed definition runs, as written there (for `status`).
fn installed_exec(platform: Platform, text: &str) -> Option<String> {
    match platform {
        Platform::Systemd => text.lines().find_map(|l| l.strip_prefix("ExecStart=")).map(str::to_string),
        Platform::Launchd => installed_args(platform, text).map(|w| w.join(" ")),
    }
}

/// The command line an installed definition runs, word by word, unquoted (for `status`).
fn installed_args(platform: Platform, text: &str) -> Option<Vec<String>> {
    match platform {
        Platform::Systemd => text.lines().find_map(|l| l.strip_prefix("ExecStart=")).map(systemd_words),
        Platform::Launchd => {
            let start = text.find("<array>")? + "<array>".len();
            let end = text[start..].find("</array>")? + start;
            let words: Vec<String> = text[start..end]
                .split("<string>")
                .filter_map(|w| w.split("</string>").next())
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(|w| {
                    w.replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&quot;", "\"")
                        .replace("&apos;", "'")
                        .replace("&amp;", "&")
                })
                .collect();
            Some(words)
        }
    }
}

/// The words of an `ExecStart=` line as [`systemd_word`] writes them (double-quoted, `\`-escaped,
/// `$$` and `%%` doubled); an unquoted word ends at a space.
fn systemd_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => w.extend(chars.next()),
                    '$' | '%' if chars.peek() == Some(&c) => {
                        chars.next();
                        w.push(c);
                    }
                    c => w.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        words.push(w);
    }
    words
}

pub fn print_human(action: &str, v: &Value) -> anyhow::Result<()> {
    match action {
        "install" => {
            println!("wrote {} ({})", v["path"].as_str().unwrap_or(""), v["platform"].as_str().unwrap_or(""));
            for c in v["commands"].as_array().into_iter().flatten() {
                let mark = if c["ok"] == true { "ok" } else { "FAILED" };
                println!("  {} … {mark} {}", c["command"].as_str().unwrap_or(""), c["output"].as_str().unwrap_or(""));
            }
            if v["started"] == true {
                println!("the daemon now starts at login; `vibesync service status` shows it");
            } else if v["commands"].as_array().is_some_and(|a| a.is_empty()) {
                println!("not started (--no-start)");
            } else {
                bail!("the service manager did not start it (see above); the file is written — fix the cause and run `vibesync service install` again");
            }
        }
        "uninstall" => {
            if v["removed"] == true {
                println!("stopped and removed {}", v["path"].as_str().unwrap_or(""));
            } else {
                println!("not installed ({} does not exist)", v["path"].as_str().unwrap_or(""));
            }
        }
        _ => {
            println!(
                "{}: {} ({})",
                v["platform"].as_str().unwrap_or(""),
                if v["installed"] == true { "installed" } else { "not installed" },
                v["path"].as_str().unwrap_or("")
            );
            if let Some(e) = v["exec"].as_str() {
                println!("  runs:    {e}");
            }
            println!("  active:  {}", v["active"]);
            match v["daemon_pid"].as_u64() {
                Some(pid) => println!("  daemon:  running (pid {pid}) on {}", v["data_dir"].as_str().unwrap_or("")),
                None => println!("  daemon:  not running on {}", v["data_dir"].as_str().unwrap_or("")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            exe: PathBuf::from("/opt/vibe sync/vibesync"),
            config: Some(PathBuf::from("/etc/100%/\"v\".toml")),
            data_dir: None,
            log_dir: PathBuf::from("/tmp/l&g"),
        }
    }

    #[test]
    fn systemd_quotes_every_word() {
        let u = systemd_unit(&spec());
        assert!(u.contains(r#"ExecStart="/opt/vibe sync/vibesync" "serve" "--config" "/etc/100%%/\"v\".toml""#), "{u}");
        // Read back word for word (`service status` finds the installed --data-dir so).
        let mut with_dir = spec();
        with_dir.data_dir = Some(PathBuf::from("/data/$HOME 100%"));
        let u = systemd_unit(&with_dir);
        assert_eq!(
            installed_args(Platform::Systemd, &u).unwrap(),
            ["/opt/vibe sync/vibesync", "serve", "--config", "/etc/100%/\"v\".toml", "--data-dir", "/data/$HOME 100%"]
        );
    }

    #[test]
    fn launchd_escapes_xml() {
        let p = launchd_plist(&spec());
        assert!(p.contains("<string>/etc/100%/&quot;v&quot;.toml</string>"), "{p}");
        assert!(p.contains("/tmp/l&amp;g/stderr.log"), "{p}");
        let args = installed_args(Platform::Launchd, &p).unwrap();
        assert_eq!(args[..4], ["/opt/vibe sync/vibesync", "serve", "--config", "/etc/100%/\"v\".toml"]);
    }
}
