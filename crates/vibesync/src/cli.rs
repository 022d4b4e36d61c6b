//! Subcommands. Each is a function from parsed flags to an exit code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vibesync_protocol::AdminAction;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use vibesync_daemon::verify::CheckedBy;
use vibesync_daemon::{client, Config, DataDir, ServeOptions};
use vibesync_wal::{Phase, Position, Reader};

#[derive(Parser, Debug)]
#[command(name = "vibesync", version, about = "Crash-proof live bridge between Blender and Unity")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Machine-readable output: one JSON object (`tail`: one per line) on stdout. Errors
    /// still go to stderr. Exit codes: 0 done; 1 problems found (`verify`, `tail`), a refused
    /// boot (`serve`) or a failed command; 2 any other error (bad flags, unreadable files,
    /// no running daemon for a command that needs one: `status`, `maintain`,
    /// `restore`).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (embedded defaults; see config/vibesync.toml).
    Serve {
        /// Data directory (default: platform data dir, or $VIBESYNC_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:47800; port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Config file overriding the embedded defaults (else $VIBESYNC_CONFIG, else the
        /// platform config file if it exists; see config/vibesync.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// On WAL corruption, move everything from the first bad byte on to quarantine
        /// instead of refusing to start.
        #[arg(long)]
        repair: bool,
    },
    /// Ask the running daemon for its status.
    Status {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Read the WAL directly (works while the daemon is down): the forensic tool.
    Tail {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Keep reading new records as they are written.
        #[arg(long)]
        follow: bool,
        /// Only records touching this uuid.
        #[arg(long)]
        uuid: Option<String>,
        /// Only records of this operation id.
        #[arg(long)]
        op: Option<String>,
        /// Only records of this phase (BEGIN, STEP, PROVISIONAL, COMMIT, FINAL, ROLLBACK).
        #[arg(long)]
        phase: Option<String>,
    },
    /// Safe mode: `status`, or `clear` (a person re-enables sync and automation; also clears
    /// failure counters and re-enables disabled op kinds).
    SafeMode {
        #[command(subcommand)]
        action: SafeModeAction,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Quarantined uuids (known-bad, kept out of sync until a person releases them).
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Serve AI agents over MCP (stdio): tools that act on Blender and Unity through the
    /// daemon, as an `agent` session (docs/PROTOCOL.md §9). Starts answering at once, even
    /// before the daemon or an editor runs.
    Mcp {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Project whose editors the tools act on (default: $VIBESYNC_PROJECT, else `default`,
        /// the project of an unsaved Blender file).
        #[arg(long)]
        project: Option<String>,
    },
    /// The audit points of a project a person can restore to: time, what changed, who.
    History {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        project: String,
        /// Only points that changed this uuid.
        #[arg(long)]
        uuid: Option<String>,
        /// At most this many points (newest first).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Bring objects back to their state at an audit point, as a new transaction synced to
    /// every connected editor (undo it with another restore; history is never rewritten).
    Restore {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        project: String,
        /// An audit commit (≥ 4 hex chars), a WAL seq (digits: the newest point at or before
        /// it) or a time (RFC 3339: the newest point at or before it).
        #[arg(long)]
        to: String,
        /// Only these uuids (repeat the flag); default: the whole project.
        #[arg(long = "uuid")]
        uuids: Vec<String>,
    },
    /// Stop the running daemon gracefully (like SIGTERM; works on every platform) and wait
    /// until it has exited.
    Stop {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run a maintenance pass now (pack the audit repository, collect unreferenced mesh
    /// blobs; the daemon also runs it every `storage.maintenance_interval_secs`).
    Maintain {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the daemon as a user service at login (systemd on Linux, launchd on macOS).
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Check WAL hashes and chain, open transactions, registry↔WAL parity, sidecar
    /// checksum, audit repository. With a daemon running it asks the daemon (a consistent
    /// snapshot of its stores), else it reads the files; it says which. Exit 0 when clean, 1
    /// with one line per problem.
    Verify {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Geometry Nodes: catalogue queries, graph_json validation, Mermaid conversion
    /// (docs/GEONODES.md). Works without a daemon.
    Geonodes {
        #[command(subcommand)]
        action: crate::geonodes::GeonodesCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceAction {
    /// Write the user service (systemd unit on Linux, launchd agent on macOS) that runs
    /// `vibesync serve` at login, enable it and start it now.
    Install {
        /// Config file the service passes to `serve` (default: the same lookup as `serve`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory the service passes to `serve` (default: the platform data dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Only write the file; do not ask systemctl/launchctl to enable or start it.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop the service (SIGTERM: a clean shutdown), disable it and remove its file.
    Uninstall,
    /// Is the service installed, what does it run, is it active, is a daemon running.
    Status {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the definition `install` would write (any platform: both generators).
    Print {
        #[arg(long, value_enum)]
        platform: Option<crate::service::Platform>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SafeModeAction {
    /// Is the daemon in safe mode, and why.
    Status,
    /// Leave safe mode (works with the daemon running or stopped).
    Clear,
}

#[derive(Subcommand, Debug)]
pub enum QuarantineAction {
    /// List quarantined uuids with the reason (the daemon must be running: it answers from
    /// its registry).
    List {
        /// Only this project.
        #[arg(long, value_parser = project_arg)]
        project: Option<String>,
    },
    /// Release a uuid back into sync (the daemon must be running: a release is a WAL
    /// transaction).
    Release {
        /// The quarantined uuid (as `quarantine list` prints it).
        #[arg(value_parser = uuid_arg)]
        uuid: String,
        /// Only in this project (default: every project that has it quarantined).
        #[arg(long, value_parser = project_arg)]
        project: Option<String>,
    },
}

/// A uuid argument, checked as the protocol checks it (a bad one is a bad flag: exit 2,
/// before any daemon is asked).
fn uuid_arg(s: &str) -> Result<String, String> {
    vibesync_protocol::validate::uuid(s).map(|()| s.to_string()).map_err(|e| e.message)
}

/// A `--project` argument, checked by the rule of PROTOCOL.md §2.
fn project_arg(s: &str) -> Result<String, String> {
    vibesync_protocol::validate::project_id(s).map(|()| s.to_string())
}

/// The data directory a client command works on: `--data-dir`, else the one the daemon's
/// configuration names (`--config` is the daemon's; here `$VIBESYNC_CONFIG` or the platform
/// config file, as `vibesync serve` reads them without the flag), else the platform default.
fn data_dir(flag: Option<PathBuf>) -> DataDir {
    if let Some(d) = flag {
        return DataDir::new(d);
    }
    match Config::resolve(None) {
        Ok((cfg, _)) => DataDir::new(cfg.data_dir()),
        Err(e) => {
            let d = vibesync_daemon::config::default_data_dir();
            eprintln!("vibesync: warning: {e}; using the default data directory {}", d.display());
            DataDir::new(d)
        }
    }
}

impl Cli {
    /// A command whose only output worth finishing is its stdout: cut short by a closed pipe
    /// (`vibesync tail | head`), it ends quietly as command-line tools do — never `serve`
    /// or `mcp`, whose sockets must answer a closed peer with an error, not end the process.
    pub fn ends_with_its_reader(&self) -> bool {
        !matches!(self.command, Command::Serve { .. } | Command::Mcp { .. })
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Serve { data_dir, listen, config, repair } => serve(data_dir, listen, config, repair),
        Command::Status { data_dir: d } => status(data_dir(d), json),
        Command::Tail { data_dir: d, follow, uuid, op, phase } => tail(data_dir(d), follow, uuid, op, phase, json),
        Command::Verify { data_dir: d } => verify(data_dir(d), json),
        Command::SafeMode { action, data_dir: d } => safe_mode(data_dir(d), action, json),
        Command::Quarantine { action, data_dir: d } => quarantine(data_dir(d), action, json),
        Command::Service { action } => service(action, json),
        Command::Geonodes { action } => crate::geonodes::run(action),
        Command::Maintain { data_dir: d } => maintain(data_dir(d), json),
        Command::Stop { data_dir: d } => stop(data_dir(d), json),
        Command::History { data_dir: d, project, uuid, limit } => {
            crate::restore_cli::history(&data_dir(d), &project, uuid.as_deref(), limit, json)
        }
        Command::Restore { data_dir: d, project, to, uuids } => {
            crate::restore_cli::restore(&data_dir(d), &project, &to, &uuids, json)
        }
        Command::Mcp { data_dir: d, project } => mcp(data_dir(d), project),
    }
}

/// `vibesync mcp`: stdout carries MCP only, so logs go to stderr.
fn mcp(data: DataDir, project: Option<String>) -> anyhow::Result<ExitCode> {
    crate::logging::init_stderr("warn");
    let project = project
        .or_else(|| std::env::var("VIBESYNC_PROJECT").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_string());
    if let Err(m) = vibesync_protocol::validate::project_id(&project) {
        bail!("--project: {m}");
    }
    let discover: vibesync_mcp::Discover =
        std::sync::Arc::new(move || client::discover(&data).map_err(|e| e.to_string()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(vibesync_mcp::serve_stdio(project, discover))?;
    Ok(ExitCode::SUCCESS)
}

fn service(action: ServiceAction, json: bool) -> anyhow::Result<ExitCode> {
    use crate::service as svc;
    let (name, v) = match action {
        ServiceAction::Install { config, data_dir, no_start } => {
            ("install", svc::install(&svc::spec_for_current_exe(config, data_dir)?, !no_start)?)
        }
        ServiceAction::Uninstall => ("uninstall", svc::uninstall()?),
        ServiceAction::Status { data_dir: d } => ("status", svc::status(d.as_deref(), data_dir(None).root())?),
        ServiceAction::Print { platform, config, data_dir } => {
            let platform = match platform.or_else(svc::Platform::current) {
                Some(p) => p,
                None => bail!("no service manager on this platform; pass --platform systemd|launchd"),
            };
            let text = svc::definition(platform, &svc::spec_for_current_exe(config, data_dir)?);
            if json {
                print_json(&serde_json::json!({"platform": platform.as_str(), "definition": text}))?;
            } else {
                print!("{text}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&v)?;
        let failed =
            name == "install" && v["commands"].as_array().is_some_and(|a| !a.is_empty()) && v["started"] != true;
        return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    svc::print_human(name, &v)?;
    Ok(ExitCode::SUCCESS)
}

/// Print one JSON object on stdout (`--json`).
fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn serve(
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    config: Option<PathBuf>,
    repair: bool,
) -> anyhow::Result<ExitCode> {
    let (mut cfg, source) = Config::resolve(config.as_deref())?;
    if let Some(d) = dir {
        cfg.storage.data_dir = d.display().to_string();
    }
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    let data = DataDir::new(cfg.data_dir());
    std::fs::create_dir_all(data.root()).with_context(|| format!("creating data dir {}", data.root().display()))?;
    let _log_guard = crate::logging::init(&data.logs(), &cfg.logging.level, cfg.logging.rotation)?;
    let listen = cfg.server.listen;
    // Boot recovery is synchronous file work: done before the async runtime starts.
    // A refused boot (a damaged or shortened log, a store ahead of it, another daemon on
    // the data dir) exits 1 with its reason on stderr, nothing changed (docs/WAL.md §5, §11).
    let daemon = match vibesync_daemon::open(cfg, &ServeOptions { repair }) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("boot refused: {e:#}");
            eprintln!("vibesync: boot refused: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        // Signal handlers exist before anyone can learn where we listen: a SIGTERM sent right
        // after the "listening on" line is a graceful stop, never a kill.
        let signals = ShutdownSignals::install()?;
        let (listener, addr) = vibesync_daemon::bind(&daemon, listen).await?;
        // The first line is parsed by tests and scripts: keep its shape.
        println!("vibesync listening on {addr} data_dir={}", data.root().display());
        print!("{}", crate::welcome::next_steps(&data, addr, &source));
        std::io::stdout().flush().ok();
        // Audit packing and blob collection on a schedule (ends with the runtime).
        tokio::spawn(vibesync_daemon::retention::schedule(daemon.clone()));
        let d2 = daemon.clone();
        let shutdown = async move {
            tokio::select! {
                _ = signals.recv() => tracing::info!("signal received"),
                _ = d2.stop_requested() => tracing::info!("stopping: vibesync stop"),
                _ = d2.fatal_error() => tracing::error!("storage failure: stopping"),
            }
        };
        vibesync_daemon::server::run(listener, daemon.clone(), shutdown).await;
        if daemon.storage_failed() {
            bail!("stopped after a storage failure; see the log in {}", data.logs().display());
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGINT/SIGTERM, registered up front (registration is what stops the default action).
struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn status(data: DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let (addr, token) = client::discover(&data)?;
    let mut c = client::Client::connect(addr, &token, "vibesync-cli", "cli")?;
    let mut s = c.request(&serde_json::json!({"type":"status","request_id":"cli"}))?;
    if let Some(o) = s.as_object_mut() {
        o.remove("type");
        o.remove("request_id");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "vibesync {} on {} (data dir {})",
            s["daemon_version"].as_str().unwrap_or("?"),
            s["listen"].as_str().unwrap_or("?"),
            s["data_dir"].as_str().unwrap_or("?")
        );
        println!("  safe mode:  {}", s["safe_mode"]);
        println!("  last seq:   {}", s["seq"]);
        println!(
            "  registry:   {} live, {} tombstoned, {} quarantined",
            s["registry"]["live"], s["registry"]["tombstoned"], s["registry"]["quarantined"]
        );
        println!("  wal:        {} segments, {} bytes", s["wal"]["segments"], s["wal"]["bytes"]);
        let d = &s["disk"];
        println!(
            "  disk:       {} bytes: wal {}, registry {}, audit {}, blobs {}, logs {}, quarantine {}",
            d["total"], d["wal"], d["registry"], d["audit"], d["blobs"], d["logs"], d["quarantine"]
        );
        match &d["last_maintenance"] {
            serde_json::Value::Null => println!("  maintained: not yet since the daemon started"),
            m => println!(
                "  maintained: at {}: wal compaction {}, audit pack {}, mesh blobs {}",
                m["at"], m["wal_compaction"], m["audit_pack"], m["blobs"]
            ),
        }
        if s["audit"]["enabled"] == false {
            println!("  audit:      disabled (audit.enabled = false)");
        } else {
            println!(
                "  audit:      last audited seq {}, lag {}, failures {}",
                s["audit"]["last_audited_seq"], s["audit"]["lag"], s["audit"]["failures"]
            );
        }
        let sessions = s["sessions"].as_array().cloned().unwrap_or_default();
        println!("  sessions:   {}", sessions.len());
        for x in sessions {
            let state = match x["editor_state"]["state"].as_str() {
                Some(st) => format!(" editor_state={st} ({})", x["editor_state"]["reason"].as_str().unwrap_or("")),
                None => String::new(),
            };
            let held = match x["held"].as_u64() {
                Some(n) if n > 0 => format!(" held_in_safe_mode={n}"),
                _ => String::new(),
            };
            println!(
                "    {} {} project={} client={}{state}{held}",
                x["session_id"].as_str().unwrap_or(""),
                x["editor"].as_str().unwrap_or(""),
                x["project_id"].as_str().unwrap_or(""),
                x["client_id"].as_str().unwrap_or("")
            );
        }
        // Per project: who holds a scene, and what was kept locally after a failed sync.
        if let Some(projects) = s["projects"].as_object() {
            for (p, v) in projects {
                let peers: Vec<&str> =
                    v["peers"].as_array().into_iter().flatten().filter_map(|x| x["client"].as_str()).collect();
                println!("  project {p}: peers [{}], conflicts {}", peers.join(", "), v["conflicts"]);
                for n in v["not_synced"].as_array().into_iter().flatten() {
                    println!(
                        "    not synced: {} (kept in {}): {}",
                        n["uuid"].as_str().unwrap_or(""),
                        n["client"].as_str().unwrap_or(""),
                        n["reason"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tail(
    data: DataDir,
    follow: bool,
    uuid: Option<String>,
    op: Option<String>,
    phase: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let phase = match phase {
        Some(p) => Some(Phase::parse(&p).with_context(|| {
            format!("unknown phase `{p}`; use BEGIN, STEP, PROVISIONAL, COMMIT, FINAL or ROLLBACK")
        })?),
        None => None,
    };
    let dir = data.wal();
    if !dir.exists() {
        bail!("no WAL at {}; pass --data-dir of a daemon that has run", dir.display());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut pos: Option<Position> = None;
    let mut problems = 0usize;
    loop {
        let reader = match pos {
            None => Reader::open(&dir)?,
            Some(p) => Reader::open_at(&dir, p)?,
        };
        let mut reader = reader;
        for item in reader.by_ref() {
            let entry = match item {
                Ok(e) => e,
                Err(p) => {
                    if follow {
                        break; // an incomplete last line: the writer is mid-write; retry
                    }
                    // The forensic tool shows every record it can read: the problem is
                    // named on stderr and reading goes on (docs/WAL.md §8).
                    eprintln!("vibesync tail: {p}");
                    problems += 1;
                    continue;
                }
            };
            let r = &entry.record;
            if uuid.as_ref().is_some_and(|u| !r.uuids.contains(u))
                || op.as_ref().is_some_and(|o| &r.operation_id != o)
                || phase.is_some_and(|p| r.phase != p)
            {
                continue;
            }
            let line = if json {
                serde_json::to_string(r)?
            } else {
                format!(
                    "{:>8} {} {:<11} op={} session={} project={} uuids=[{}] outcome={}{} {}",
                    r.seq,
                    r.ts,
                    r.phase.as_str(),
                    r.operation_id,
                    r.session_id,
                    r.project_id,
                    r.uuids.join(","),
                    r.outcome,
                    r.error_code.as_ref().map(|c| format!(" error={c}")).unwrap_or_default(),
                    r.payload
                )
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(ExitCode::SUCCESS); // reader went away (e.g. `| head`)
            }
        }
        if !follow {
            return Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        out.flush().ok();
        pos = Some(reader.position());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verify(data: DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let report = match admin(&data, serde_json::json!({"action": AdminAction::Verify}))? {
        Some(r) => vibesync_daemon::verify::Report::from_json(&r),
        None => vibesync_daemon::verify::run(&data)?,
    };
    let by = match report.checked_by {
        CheckedBy::Daemon => "asked the running daemon (consistent snapshot of its stores)",
        CheckedBy::Offline => "read the files (no daemon running)",
    };
    if json {
        print_json(&report.to_json())?;
    } else {
        for note in &report.notes {
            eprintln!("note: {note}");
        }
        for p in &report.problems {
            println!("{p}");
        }
        if report.problems.is_empty() {
            println!("verify: clean ({} WAL records, last seq {}); {by}", report.records, report.last_seq);
        } else {
            println!("verify: {} problem(s); {by}", report.problems.len());
        }
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn stop(data: DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let Some(r) = admin(&data, serde_json::json!({"action": AdminAction::Stop}))? else {
        if json {
            print_json(&serde_json::json!({"stopped": false, "running": false}))?;
        } else {
            println!("no daemon is running on {}", data.root().display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let pid = r["pid"].as_u64();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while vibesync_daemon::verify::daemon_running(&data).is_some() {
        if std::time::Instant::now() > deadline {
            bail!("the daemon (pid {pid:?}) did not exit within 60 s of `stop`; see its log");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if json {
        print_json(&serde_json::json!({"stopped": true, "pid": pid}))?;
    } else {
        println!("stopped the daemon (pid {}) gracefully", pid.map(|p| p.to_string()).unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

fn maintain(data: DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let Some(r) = admin(&data, serde_json::json!({"action": AdminAction::Maintain}))? else {
        bail!("no daemon is running on {}; start it (`vibesync serve`)", data.root().display());
    };
    if json {
        print_json(&r)?;
    } else {
        println!("wal compaction: {}", r["wal_compaction"]);
        println!("audit pack: {}", r["audit_pack"]);
        println!("mesh blobs: {}", r["blobs"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Send one `admin` request to the running daemon, if one runs on this data dir.
fn admin(data: &DataDir, body: serde_json::Value) -> anyhow::Result<Option<serde_json::Value>> {
    if vibesync_daemon::verify::daemon_running(data).is_none() {
        return Ok(None);
    }
    let (addr, token) = client::discover(data)?;
    let mut c = client::Client::connect(addr, &token, "vibesync-cli", "cli")?;
    let mut msg = body;
    msg["type"] = "admin".into();
    msg["request_id"] = "cli".into();
    let reply = c.request(&msg)?;
    if reply["type"] == "error" {
        bail!(
            "the daemon refused it: {} ({})",
            reply["message"].as_str().unwrap_or(""),
            reply["code"].as_str().unwrap_or("?")
        );
    }
    Ok(Some(reply["result"].clone()))
}

fn safe_mode(data: DataDir, action: SafeModeAction, json: bool) -> anyhow::Result<ExitCode> {
    // A mistyped --data-dir is no daemon that never entered safe mode (and `clear` must not
    // make a data directory there).
    if !data.wal().exists() {
        bail!("no WAL at {}; pass --data-dir of a daemon that has run", data.wal().display());
    }
    match action {
        SafeModeAction::Status => {
            let b = vibesync_daemon::boot::read(&data.boot())?;
            if json {
                print_json(&serde_json::json!({
                    "safe_mode": b.safe_mode,
                    "reason": b.safe_mode_reason,
                    "consecutive_unclean_boots": b.consecutive_unclean_boots,
                }))?;
            } else if b.safe_mode {
                println!("safe mode: ON ({})", b.safe_mode_reason.as_deref().unwrap_or("no reason recorded"));
                println!("sync is read-only and automation is disabled; `vibesync safe-mode clear` to leave it");
            } else {
                println!("safe mode: off ({} unclean boot(s) in a row)", b.consecutive_unclean_boots);
            }
            Ok(ExitCode::SUCCESS)
        }
        SafeModeAction::Clear => {
            if let Some(r) = admin(&data, serde_json::json!({"action": AdminAction::SafeModeClear}))? {
                if json {
                    print_json(&serde_json::json!({"safe_mode": false, "seq": r["seq"], "by": "daemon"}))?;
                    return Ok(ExitCode::SUCCESS);
                }
                println!("safe mode cleared by the running daemon (WAL seq {}); failure counters reset", r["seq"]);
                return Ok(ExitCode::SUCCESS);
            }
            // Daemon stopped: open the stores as a boot does, write the reset, close them as a
            // graceful stop does (registry applied, audit committed), then clear boot.json.
            crate::logging::init_stderr("warn");
            let (mut cfg, _) = Config::resolve(None)?;
            cfg.storage.data_dir = data.root().display().to_string();
            let seq = vibesync_daemon::clear_safe_mode_offline(&cfg, "cli (offline)").context(
                "recording the reset with the daemon stopped (if a daemon is starting on this data dir, \
                 run `vibesync safe-mode clear` again once it answers; if a store is damaged, `vibesync verify` lists it)",
            )?;
            if json {
                print_json(&serde_json::json!({"safe_mode": false, "seq": seq, "by": "offline"}))?;
            } else {
                println!(
                    "safe mode cleared (daemon not running; reset logged at WAL seq {seq}); failure counters reset"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn quarantine(data: DataDir, action: QuarantineAction, json: bool) -> anyhow::Result<ExitCode> {
    match action {
        QuarantineAction::List { project } => {
            let result = match admin(
                &data,
                serde_json::json!({"action": AdminAction::QuarantineList, "project_id": project}),
            )? {
                Some(r) => r,
                None => bail!(
                    "no daemon is running on {}; start it (`vibesync serve`) to list quarantined uuids",
                    data.root().display()
                ),
            };
            if json {
                print_json(&result)?;
                return Ok(ExitCode::SUCCESS);
            }
            let items = result["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no quarantined uuids");
            }
            for i in items {
                println!(
                    "{} {} {} `{}` since seq {}: {}",
                    i["project_id"].as_str().unwrap_or(""),
                    i["uuid"].as_str().unwrap_or(""),
                    i["kind"].as_str().unwrap_or(""),
                    i["name"].as_str().unwrap_or(""),
                    i["since_seq"],
                    i["reason"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineAction::Release { uuid, project } => {
            match admin(
                &data,
                serde_json::json!({"action": AdminAction::QuarantineRelease, "uuid": uuid, "project_id": project}),
            )? {
                Some(r) if json => {
                    print_json(&r)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(r) => {
                    println!("released {uuid}: {}", r["released"]);
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!(
                    "no daemon is running on {}; start it (`vibesync serve`): a release is a WAL transaction",
                    data.root().display()
                ),
            }
        }
    }
}
