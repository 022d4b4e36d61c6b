//! Logs: JSON lines to `<data_dir>/logs/vibesync.log*` (rotated) for forensics, readable text
//! on stderr for people. Span fields (session_id, operation_id, uuids) appear on every line.

use std::path::Path;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

pub fn init(logs_dir: &Path, level: &str, rotation: &str) -> anyhow::Result<WorkerGuard> {
    std::fs::create_dir_all(logs_dir).with_context(|| format!("creating {}", logs_dir.display()))?;
    let rotation = match rotation {
        "hourly" => tracing_appender::rolling::Rotation::HOURLY,
        "never" => tracing_appender::rolling::Rotation::NEVER,
        _ => tracing_appender::rolling::Rotation::DAILY,
    };
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix("vibesync")
        .filename_suffix("log")
        .max_log_files(14)
        .build(logs_dir)
        .with_context(|| format!("opening log files in {}", logs_dir.display()))?;
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(file_writer)
                .with_filter(filter()),
        )
        .with(fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(filter()))
        .try_init()
        .ok();
    Ok(guard)
}

/// Text logs on stderr only (for `vibesync mcp`, whose stdout is the MCP channel).
pub fn init_stderr(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::registry()
        .with(fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(filter))
        .try_init()
        .ok();
}

use tracing_subscriber::Layer as _;
