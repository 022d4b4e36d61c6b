//! `<data_dir>/registry.sidecar.json`: a full, human-readable dump of the registry,
//! written atomically and self-checking.
//!
//! Format:
//! ```json
//! {"schema_version": 1, "seq": 57, "checksum": "<64 hex>", "records": [Entry, ...]}
//! ```
//! `records` holds live and quarantined records ordered by (project_id, uuid), then archived
//! ones ordered by (project_id, uuid, tombstone_seq).
//!
//! **What the checksum covers**: `checksum = hex(blake3(C))` where `C` is the sorted JSON
//! ([`sorted_json`]) of the object `{"records": [...], "schema_version": N, "seq": N}` —
//! every field of the file except `checksum` itself. Sorted JSON: object keys sorted by their
//! UTF-8 bytes at every depth, no whitespace, strings escaped as serde_json does (`"`, `\`,
//! control characters; `\n` style where one exists, else `\u00xx` lowercase), numbers
//! exactly as serde_json prints them (not the state hash's canonical JSON,
//! `vibesync_protocol::state::canonical_json`, which quantizes numbers). Formatting of the
//! file (the pretty-printing) is not covered, so it can be
//! re-indented without invalidating it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::entry::Entry;
use crate::error::{RegistryError, Result};
use crate::Registry;

pub const SIDECAR_FILE: &str = "registry.sidecar.json";

/// Result of [`Registry::check_sidecar`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SidecarStatus {
    /// Checksum verifies and content equals the registry.
    Ok {
        seq: u64,
    },
    Missing,
    /// Not JSON, or missing/mistyped fields.
    Unreadable {
        reason: String,
    },
    BadChecksum {
        stated: String,
        actual: String,
    },
    /// Older than the registry.
    Stale {
        sidecar_seq: u64,
        registry_seq: u64,
    },
    /// Same or newer seq (or other schema) but other records; lists up to 20 differing
    /// `project_id/uuid` (archived versions as `project_id/uuid@tombstone_seq`).
    Differs {
        sidecar_seq: u64,
        registry_seq: u64,
        differing: Vec<String>,
    },
}

impl SidecarStatus {
    pub fn is_ok(&self) -> bool {
        matches!(self, SidecarStatus::Ok { .. })
    }
}

/// What is wrong and what to do: the sidecar is derived (the registry's human-readable copy),
/// so every remedy is to let the daemon write it again.
impl std::fmt::Display for SidecarStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const AGAIN: &str = "start the daemon: it writes the sidecar again from the registry";
        match self {
            SidecarStatus::Ok { seq } => write!(f, "matches the registry at seq {seq}"),
            SidecarStatus::Missing => write!(f, "missing; {AGAIN}"),
            SidecarStatus::Unreadable { reason } => write!(f, "unreadable ({reason}); {AGAIN}"),
            SidecarStatus::BadChecksum { stated, actual } => {
                write!(f, "its checksum does not hold (it states {stated}, its content hashes to {actual}): edited or damaged; {AGAIN}")
            }
            SidecarStatus::Stale { sidecar_seq, registry_seq } => {
                write!(f, "older than the registry (seq {sidecar_seq}, the registry is at {registry_seq}); {AGAIN}")
            }
            SidecarStatus::Differs { sidecar_seq, registry_seq, differing } => write!(
                f,
                "differs from the registry (sidecar seq {sidecar_seq}, registry seq {registry_seq}) in {}; {AGAIN}",
                differing.join(", ")
            ),
        }
    }
}

/// What [`Registry::write_sidecar`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SidecarWritten {
    pub path: PathBuf,
    pub seq: u64,
    pub records: usize,
    pub checksum: String,
}

/// Sorted JSON bytes (see module docs): exact values, keys sorted at every depth.
pub fn sorted_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_sorted(v, &mut out);
    out
}

fn write_sorted(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&serde_json::to_vec(k).expect("string serializes"));
                out.push(b':');
                write_sorted(&m[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(&serde_json::to_vec(other).expect("scalar serializes")),
    }
}

/// The sidecar checksum of (schema_version, seq, records).
pub fn sidecar_checksum(schema_version: u32, seq: u64, records: &Value) -> String {
    let covered = serde_json::json!({"records": records, "schema_version": schema_version, "seq": seq});
    blake3::hash(&sorted_json(&covered)).to_hex().to_string()
}

/// Write `bytes` to `path` atomically (`vibesync_wal::fsutil::write_atomic`: temp file,
/// fsync, rename, fsync of the directory; the temp file is removed on failure).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    vibesync_wal::fsutil::write_atomic(path, bytes, None).map_err(|source| RegistryError::Io {
        op: "write atomically",
        path: path.to_path_buf(),
        source,
    })
}

fn entry_id(e: &Entry) -> String {
    match e.tombstone_seq {
        Some(s) => format!("{}/{}@{s}", e.project_id, e.uuid),
        None => format!("{}/{}", e.project_id, e.uuid),
    }
}

impl Registry {
    /// `<data_dir>/registry.sidecar.json`.
    pub fn sidecar_path(&self) -> PathBuf {
        self.data_dir().join(SIDECAR_FILE)
    }

    /// Dump the whole registry to the sidecar, atomically.
    pub fn write_sidecar(&self) -> Result<SidecarWritten> {
        let path = self.sidecar_path();
        let (schema_version, seq, entries) = self.snapshot()?;
        // Streamed one record at a time: building the whole registry as one `Value` tree
        // costs ~10x the file's size in memory (seen as RSS growth under load). The checksum
        // is the same as `sidecar_checksum` over the parsed file: the sorted JSON of
        // {"records","schema_version","seq"} is the records' sorted forms joined.
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"{\"records\":[");
        let mut records_json = Vec::with_capacity(entries.len() * 512 + 2);
        records_json.push(b'[');
        for (i, e) in entries.iter().enumerate() {
            let v = serde_json::to_value(e)
                .map_err(|source| RegistryError::SidecarEncode { path: path.clone(), source })?;
            let b = sorted_json(&v);
            if i > 0 {
                hasher.update(b",");
                records_json.push(b',');
            }
            hasher.update(&b);
            records_json.extend_from_slice(&b);
        }
        records_json.push(b']');
        hasher.update(format!("],\"schema_version\":{schema_version},\"seq\":{seq}}}").as_bytes());
        let checksum = hasher.finalize().to_hex().to_string();
        // Field order for readers: header first, records last.
        let mut doc = serde_json::Map::new();
        doc.insert("schema_version".into(), schema_version.into());
        doc.insert("seq".into(), seq.into());
        doc.insert("checksum".into(), checksum.clone().into());
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc))
            .map_err(|source| RegistryError::SidecarEncode { path: path.clone(), source })?;
        // Append records by hand so the header stays first even if serde_json sorts keys.
        bytes.truncate(bytes.len() - 2); // "\n}"
        bytes.extend_from_slice(b",\n  \"records\": ");
        bytes.extend_from_slice(&records_json);
        bytes.extend_from_slice(b"\n}\n");
        write_atomic(&path, &bytes)?;
        tracing::debug!(seq, records = entries.len(), path = %path.display(), "registry: sidecar written");
        Ok(SidecarWritten { path, seq, records: entries.len(), checksum })
    }

    /// Compare the sidecar with the registry. Never modifies anything.
    pub fn check_sidecar(&self) -> Result<SidecarStatus> {
        let path = self.sidecar_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SidecarStatus::Missing),
            Err(source) => return Err(RegistryError::Io { op: "read", path, source }),
        };
        let unreadable = |reason: String| Ok(SidecarStatus::Unreadable { reason });
        let doc: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return unreadable(format!("not JSON: {e}")),
        };
        let (Some(schema), Some(seq), Some(stated), Some(records)) = (
            doc.get("schema_version").and_then(Value::as_u64),
            doc.get("seq").and_then(Value::as_u64),
            doc.get("checksum").and_then(Value::as_str),
            doc.get("records").filter(|r| r.is_array()),
        ) else {
            return unreadable("missing or mistyped schema_version/seq/checksum/records".into());
        };
        let actual = sidecar_checksum(schema as u32, seq, records);
        if schema > u32::MAX as u64 || actual != stated {
            return Ok(SidecarStatus::BadChecksum { stated: stated.to_owned(), actual });
        }
        let (my_schema, my_seq, mine) = self.snapshot()?;
        if seq < my_seq {
            return Ok(SidecarStatus::Stale { sidecar_seq: seq, registry_seq: my_seq });
        }
        let theirs: Vec<Entry> = match serde_json::from_value(records.clone()) {
            Ok(v) => v,
            Err(e) => return unreadable(format!("records: {e}")),
        };
        let mut differing = Vec::new();
        let a: std::collections::BTreeMap<String, &Entry> = mine.iter().map(|e| (entry_id(e), e)).collect();
        let b: std::collections::BTreeMap<String, &Entry> = theirs.iter().map(|e| (entry_id(e), e)).collect();
        for (k, e) in &a {
            if b.get(k) != Some(e) {
                differing.push(k.clone());
            }
        }
        for k in b.keys() {
            if !a.contains_key(k) {
                differing.push(k.clone());
            }
        }
        if seq != my_seq || schema as u32 != my_schema || !differing.is_empty() {
            differing.sort();
            differing.truncate(20);
            return Ok(SidecarStatus::Differs { sidecar_seq: seq, registry_seq: my_seq, differing });
        }
        Ok(SidecarStatus::Ok { seq })
    }

    /// Check the sidecar and rewrite it from the registry unless it is `Ok`. Returns what
    /// the check found.
    pub fn ensure_sidecar(&self) -> Result<SidecarStatus> {
        let status = self.check_sidecar()?;
        if !status.is_ok() {
            tracing::warn!(?status, "registry: sidecar out of date or damaged, rewriting");
            self.write_sidecar()?;
        }
        Ok(status)
    }
}
