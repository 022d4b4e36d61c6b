//! Registry schema versions and the explicit migrations between them
//! (docs/ARCHITECTURE.md, `vibesync-registry`).
//!
//! * **v0** (pre-release): one editor binding stored flat on the record
//!   (`editor`, `editor_ref`, `session_id`, `client_id`), no `bindings`, no `state`.
//! * **v1** (current): `bindings` map per editor kind, `state`/`state_hash`,
//!   `quarantine_reason`.
//!
//! A registry found at an older version is never upgraded silently: `Registry::open` reports
//! it (`needs_migration`), every read and write refuses with `MigrationPending`, and the
//! daemon logs a WAL transaction with one `{"op":"migrate","from":N,"to":M}` STEP; applying
//! that committed transaction rewrites every record and `schema_version` in one sled batch.

use serde_json::{Map, Value};

/// Schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Oldest schema version this build can migrate from.
pub const OLDEST_MIGRATABLE: u32 = 0;

/// Upgrade one stored record (live or archived) from schema `from` to [`SCHEMA_VERSION`].
pub fn migrate_entry(from: u32, mut value: Value) -> Result<Value, String> {
    let mut v = from;
    while v < SCHEMA_VERSION {
        value = match v {
            0 => v0_to_v1(value)?,
            other => return Err(format!("no migration step from v{other}")),
        };
        v += 1;
    }
    Ok(value)
}

fn v0_to_v1(value: Value) -> Result<Value, String> {
    let Value::Object(mut obj) = value else {
        return Err("v0 record is not a JSON object".into());
    };
    let take_str = |obj: &mut Map<String, Value>, k: &str| match obj.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let editor = take_str(&mut obj, "editor");
    let editor_ref = take_str(&mut obj, "editor_ref").unwrap_or_default();
    let session_id = take_str(&mut obj, "session_id").unwrap_or_default();
    let client_id = take_str(&mut obj, "client_id").unwrap_or_default();
    let updated = obj.get("updated_seq").and_then(Value::as_u64).ok_or("v0 record has no updated_seq")?;
    let mut bindings = Map::new();
    if let Some(ed) = editor {
        bindings.insert(
            ed,
            serde_json::json!({
                "editor_ref": editor_ref,
                "session_id": session_id,
                "client_id": client_id,
                "bound_seq": updated,
            }),
        );
    }
    obj.insert("bindings".into(), Value::Object(bindings));
    obj.entry("state").or_insert(Value::Null);
    obj.entry("state_hash").or_insert(Value::Null);
    obj.entry("quarantine_reason").or_insert(Value::Null);
    Ok(Value::Object(obj))
}
