//! sled key layout. Everything lives in one tree (`registry`) so a transaction's changes,
//! counters and `last_applied_seq` land in one atomic `apply_batch`:
//!
//! | key | value |
//! |---|---|
//! | `live\0<project_id>\0<uuid>` | JSON [`crate::Entry`] (status live or quarantined) |
//! | `arch\0<project_id>\0<uuid>\0<tombstone_seq, 20 decimal digits>` | JSON [`crate::Entry`] (status tombstoned) |
//! | `meta\0<name>` | JSON number: `schema_version`, `last_applied_seq`, `count_live`, `count_tombstoned`, `count_quarantined` |
//!
//! project ids and uuids are validated (protocol §2) so they never contain `\0`.

pub const TREE: &str = "registry";
pub const LIVE: &[u8] = b"live\0";
pub const ARCH: &[u8] = b"arch\0";
pub const META: &[u8] = b"meta\0";

pub const META_SCHEMA: &str = "schema_version";
pub const META_LAST: &str = "last_applied_seq";
pub const META_LIVE: &str = "count_live";
pub const META_TOMB: &str = "count_tombstoned";
pub const META_QUAR: &str = "count_quarantined";
/// Present while a build from the WAL writes its staged records over several sled batches;
/// the last batch removes it. Found at open: the build was cut off, rebuild.
pub const META_BUILDING: &str = "building";

pub fn live_key(project: &str, uuid: &str) -> Vec<u8> {
    let mut k = LIVE.to_vec();
    k.extend_from_slice(project.as_bytes());
    k.push(0);
    k.extend_from_slice(uuid.as_bytes());
    k
}

pub fn live_prefix(project: Option<&str>) -> Vec<u8> {
    let mut k = LIVE.to_vec();
    if let Some(p) = project {
        k.extend_from_slice(p.as_bytes());
        k.push(0);
    }
    k
}

pub fn archive_key(project: &str, uuid: &str, tombstone_seq: u64) -> Vec<u8> {
    let mut k = archive_uuid_prefix(project, uuid);
    k.extend_from_slice(format!("{tombstone_seq:020}").as_bytes());
    k
}

pub fn archive_uuid_prefix(project: &str, uuid: &str) -> Vec<u8> {
    let mut k = ARCH.to_vec();
    k.extend_from_slice(project.as_bytes());
    k.push(0);
    k.extend_from_slice(uuid.as_bytes());
    k.push(0);
    k
}

pub fn archive_prefix(project: Option<&str>) -> Vec<u8> {
    let mut k = ARCH.to_vec();
    if let Some(p) = project {
        k.extend_from_slice(p.as_bytes());
        k.push(0);
    }
    k
}

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = META.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Printable form of a key for error messages.
pub fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "/")
}
