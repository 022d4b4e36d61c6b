//! Logs: JSON lines to `<data_dir>/logs/vibesync.log*` (rotated) for forensics, readable text
//! on stderr for people. Span fields (session_id, operation_id, uuids) appear on every line.
//!
//! Files and service journals never get ANSI colour codes: the file layer has none, and
//! stderr is coloured only when it is a terminal and `NO_COLOR` is unset. Every JSON line is
//! jq-friendly: a `uuids` field (recorded by the daemon as a Debug list) is rewritten into a
//! real JSON array before the line reaches the file (see [`JsonFixup`]).

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer as _};
use vibesync_daemon::config::Rotation;

pub fn init(logs_dir: &Path, level: &str, rotation: Rotation) -> anyhow::Result<WorkerGuard> {
    std::fs::create_dir_all(logs_dir).with_context(|| format!("creating {}", logs_dir.display()))?;
    let rotation = match rotation {
        Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
        Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
        Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
    };
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix("vibesync")
        .filename_suffix("log")
        .max_log_files(14)
        .build(logs_dir)
        .with_context(|| format!("opening log files in {}", logs_dir.display()))?;
    // The fix-up runs on the appender's worker thread, never on the daemon's.
    let (file_writer, guard) = tracing_appender::non_blocking(JsonFixup::new(appender));
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .json()
                .with_ansi(false)
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(file_writer)
                .with_filter(filter()),
        )
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(stderr_colour())
                .with_target(false)
                .with_filter(filter()),
        )
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

/// Colour on stderr only for a person at a terminal (a service journal is not one).
fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && !matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty())
}

/// A writer that passes complete JSON lines through [`fix_line`]. Partial lines wait in a
/// buffer until their newline arrives.
pub struct JsonFixup<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> JsonFixup<W> {
    pub fn new(inner: W) -> Self {
        JsonFixup { inner, pending: Vec::new() }
    }
}

impl<W: Write> Write for JsonFixup<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let fixed = fix_line(&line[..line.len() - 1]);
            self.inner.write_all(&fixed)?;
            self.inner.write_all(b"\n")?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rewrite `"uuids":"[\"a\", \"b\"]"` (a Debug-formatted list, wherever it appears: the
/// event's fields, the current span, the span list) into `"uuids":["a","b"]`, and give a
/// line that names a sync batch (`batch_id`, which is the batch's WAL operation id,
/// docs/PROTOCOL.md §6.3) the same value as `operation_id`, so one jq filter finds every
/// line of an operation. A line that is not JSON, or has nothing to fix, is passed through
/// byte for byte.
pub fn fix_line(line: &[u8]) -> Vec<u8> {
    if !line.windows(7).any(|w| w == b"\"uuids\"") && !line.windows(10).any(|w| w == b"\"batch_id\"") {
        return line.to_vec();
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
        return line.to_vec();
    };
    fix_value(&mut v);
    serde_json::to_vec(&v).unwrap_or_else(|_| line.to_vec())
}

fn fix_value(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if !map.contains_key("operation_id") {
                if let Some(b) = map.get("batch_id").filter(|b| b.is_string()).cloned() {
                    map.insert("operation_id".into(), b);
                }
            }
            for (k, x) in map.iter_mut() {
                if k == "uuids" {
                    if let Value::String(s) = x {
                        if let Ok(arr @ Value::Array(_)) = serde_json::from_str::<Value>(s) {
                            *x = arr;
                        }
                    }
                } else {
                    fix_value(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(fix_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_become_arrays_everywhere_and_other_lines_pass_through() {
        let line = br#"{"fields":{"message":"x","uuids":"[\"a\", \"b\"]"},"span":{"uuids":"[]","name":"s"},"spans":[{"uuids":"[\"c\"]"}]}"#;
        let v: Value = serde_json::from_slice(&fix_line(line)).unwrap();
        assert_eq!(v["fields"]["uuids"], serde_json::json!(["a", "b"]));
        assert_eq!(v["span"]["uuids"], serde_json::json!([]));
        assert_eq!(v["spans"][0]["uuids"], serde_json::json!(["c"]));
        assert_eq!(fix_line(b"not json \"uuids\""), b"not json \"uuids\"");
        assert_eq!(fix_line(br#"{"a":1}"#), br#"{"a":1}"#);
        let v: Value = serde_json::from_slice(&fix_line(br#"{"fields":{"batch_id":"op-1"}}"#)).unwrap();
        assert_eq!(v["fields"]["operation_id"], "op-1");
        let mut out = JsonFixup::new(Vec::new());
        out.write_all(br#"{"uuids":"[\"a\"]"}"#).unwrap();
        out.write_all(b"\n{\"b\":").unwrap();
        assert_eq!(out.inner, b"{\"uuids\":[\"a\"]}\n");
        out.write_all(b"2}\n").unwrap();
        assert_eq!(out.inner, b"{\"uuids\":[\"a\"]}\n{\"b\":2}\n");
    }
}
