//! Subcommands. Each is a function from parsed flags to an exit code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use vibesync_daemon::{client, Config, DataDir, ServeOptions};
use vibesync_wal::{Phase, Position, Reader};

#[derive(Parser, Debug)]
#[command(name = "vibesync", version, about = "Crash-proof live bridge between Blender and Unity")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
        /// Config file overriding the embedded defaults.
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
        /// Print the raw JSON (the same object the `status` message returns).
        #[arg(long)]
        json: bool,
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
        /// Print each record as its raw JSON line.
        #[arg(long)]
        json: bool,
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
    /// Offline check: WAL hashes and chain, open transactions, registry↔WAL parity,
    /// sidecar checksum, audit repository. Exit 0 when clean, 1 with one line per problem.
    Verify {
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
    /// List quarantined uuids with the reason.
    List {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Release a uuid back into sync (the daemon must be running: a release is a WAL
    /// transaction).
    Release {
        uuid: String,
        #[arg(long)]
        project: Option<String>,
    },
}

fn data_dir(flag: Option<PathBuf>) -> DataDir {
    DataDir::new(flag.unwrap_or_else(vibesync_daemon::config::default_data_dir))
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { data_dir, listen, config, repair } => serve(data_dir, listen, config, repair),
        Command::Status { data_dir: d, json } => status(data_dir(d), json),
        Command::Tail { data_dir: d, follow, uuid, op, phase, json } => {
            tail(data_dir(d), follow, uuid, op, phase, json)
        }
        Command::Verify { data_dir: d } => verify(data_dir(d)),
        Command::SafeMode { action, data_dir: d } => safe_mode(data_dir(d), action),
        Command::Quarantine { action, data_dir: d } => quarantine(data_dir(d), action),
    }
}

fn serve(
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    config: Option<PathBuf>,
    repair: bool,
) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(config.as_deref())?;
    if let Some(d) = dir {
        cfg.storage.data_dir = d.display().to_string();
    }
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    let data = DataDir::new(cfg.data_dir());
    std::fs::create_dir_all(data.root()).with_context(|| format!("creating data dir {}", data.root().display()))?;
    let _log_guard = crate::logging::init(&data.logs(), &cfg.logging.level, &cfg.logging.rotation)?;
    let listen = cfg.server.listen;
    // Boot recovery is synchronous file work: done before the async runtime starts.
    let daemon = vibesync_daemon::open(cfg, &ServeOptions { repair })?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        // Signal handlers exist before anyone can learn where we listen: a SIGTERM sent right
        // after the "listening on" line is a graceful stop, never a kill.
        let signals = ShutdownSignals::install()?;
        let (listener, addr) = vibesync_daemon::bind(&daemon, listen).await?;
        println!("vibesync listening on {addr} data_dir={}", data.root().display());
        std::io::stdout().flush().ok();
        let d2 = daemon.clone();
        let shutdown = async move {
            tokio::select! {
                _ = signals.recv() => tracing::info!("signal received"),
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
        println!(
            "  audit:      last audited seq {}, lag {}, failures {}",
            s["audit"]["last_audited_seq"], s["audit"]["lag"], s["audit"]["failures"]
        );
        let sessions = s["sessions"].as_array().cloned().unwrap_or_default();
        println!("  sessions:   {}", sessions.len());
        for x in sessions {
            let state = match x["editor_state"]["state"].as_str() {
                Some(st) => format!(" editor_state={st} ({})", x["editor_state"]["reason"].as_str().unwrap_or("")),
                None => String::new(),
            };
            println!(
                "    {} {} project={} client={}{state}",
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
                    eprintln!("vibesync tail: {p}");
                    return Ok(ExitCode::from(1));
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
            return Ok(ExitCode::SUCCESS);
        }
        out.flush().ok();
        pos = Some(reader.position());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verify(data: DataDir) -> anyhow::Result<ExitCode> {
    let report = vibesync_daemon::verify::run(&data)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for p in &report.problems {
        println!("{p}");
    }
    if report.problems.is_empty() {
        eprintln!("verify: clean ({} WAL records, last seq {})", report.records, report.last_seq);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("verify: {} problem(s)", report.problems.len());
        Ok(ExitCode::from(1))
    }
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
        bail!("{}: {}", reply["code"].as_str().unwrap_or("?"), reply["message"].as_str().unwrap_or(""));
    }
    Ok(Some(reply["result"].clone()))
}

fn safe_mode(data: DataDir, action: SafeModeAction) -> anyhow::Result<ExitCode> {
    match action {
        SafeModeAction::Status => {
            let b = vibesync_daemon::boot::read(&data.boot())?;
            if b.safe_mode {
                println!("safe mode: ON ({})", b.safe_mode_reason.as_deref().unwrap_or("no reason recorded"));
                println!("sync is read-only and automation is disabled; `vibesync safe-mode clear` to leave it");
            } else {
                println!("safe mode: off ({} unclean boot(s) in a row)", b.consecutive_unclean_boots);
            }
            Ok(ExitCode::SUCCESS)
        }
        SafeModeAction::Clear => {
            if let Some(r) = admin(&data, serde_json::json!({"action": "safe_mode_clear"}))? {
                println!("safe mode cleared by the running daemon (WAL seq {}); failure counters reset", r["seq"]);
                return Ok(ExitCode::SUCCESS);
            }
            // Daemon stopped: log the reset in the WAL ourselves, then clear boot.json.
            let (wal, _) = vibesync_wal::Wal::open(vibesync_wal::WalConfig::new(data.root()))
                .context("opening the WAL to record the reset (is a daemon starting on this data dir?)")?;
            let op = format!("cli-{}", std::process::id());
            let d = |phase, payload| vibesync_wal::RecordDraft {
                session_id: "cli".into(),
                operation_id: op.clone(),
                uuids: vec![],
                project_id: String::new(),
                phase,
                outcome: "ok".into(),
                error_code: None,
                payload,
            };
            let reset = serde_json::json!({"op": "governance_reset", "by": "cli (offline)"});
            let records = wal.append_blocking(vec![
                d(Phase::Begin, reset.clone()),
                d(Phase::Step, reset.clone()),
                d(Phase::Commit, reset),
                d(Phase::Final, serde_json::json!({})),
            ])?;
            wal.close_blocking()?;
            let mut b = vibesync_daemon::boot::read(&data.boot())?;
            b.safe_mode = false;
            b.safe_mode_reason = None;
            b.consecutive_unclean_boots = 0;
            vibesync_daemon::boot::write(&data.boot(), &b)?;
            println!("safe mode cleared (daemon not running; reset logged at WAL seq {})", records[1].seq);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn quarantine(data: DataDir, action: QuarantineAction) -> anyhow::Result<ExitCode> {
    match action {
        QuarantineAction::List { project } => {
            let result = match admin(&data, serde_json::json!({"action": "quarantine_list", "project_id": project}))? {
                Some(r) => r,
                None => bail!(
                    "no daemon is running on {}; start it (`vibesync serve`) to list quarantined uuids",
                    data.root().display()
                ),
            };
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
                serde_json::json!({"action": "quarantine_release", "uuid": uuid, "project_id": project}),
            )? {
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
