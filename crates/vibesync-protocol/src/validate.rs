//! Zero-trust checks applied to everything an editor sends (docs/PROTOCOL.md §2, §4, §5, §6.1).

use crate::error::ItemErrorCode;
use crate::names::EntityKind;

pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_EDITOR_REF_BYTES: usize = 1024;
pub const MAX_SHORT_STRING_BYTES: usize = 256;
pub const MAX_ID_BYTES: usize = 128;
/// `hello.unit_scale` bounds (meters per editor unit): a micrometre to a thousand km.
pub const MIN_UNIT_SCALE: f64 = 1e-6;
pub const MAX_UNIT_SCALE: f64 = 1e6;
pub const MAX_ITEMS_PER_REQUEST: usize = 10_000;

/// A per-item validation failure: a code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub code: ItemErrorCode,
    pub message: String,
}

impl ItemError {
    pub fn new(code: ItemErrorCode, message: impl Into<String>) -> ItemError {
        ItemError { code, message: message.into() }
    }
}

/// Lowercase, hyphenated, 36-char RFC 4122 text; not nil.
pub fn uuid(s: &str) -> Result<(), ItemError> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        });
    if !ok {
        return Err(ItemError::new(
            ItemErrorCode::InvalidUuid,
            format!(
                "`{}` is not a lowercase RFC 4122 uuid; send 36-char lowercase text like 6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a",
                truncate_for_message(s)
            ),
        ));
    }
    if s == "00000000-0000-0000-0000-000000000000" {
        return Err(ItemError::new(
            ItemErrorCode::InvalidUuid,
            "the nil uuid is reserved; generate a random (v4) uuid",
        ));
    }
    Ok(())
}

/// 1–128 chars of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn project_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_ID_BYTES {
        return Err(format!("project_id must be 1-{MAX_ID_BYTES} characters, got {}", s.len()));
    }
    if s.starts_with('.') {
        return Err("project_id must not start with `.`".into());
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("project_id may contain only A-Z a-z 0-9 . _ - (found {c:?})"));
    }
    Ok(())
}

pub fn kind(s: &str) -> Result<EntityKind, ItemError> {
    EntityKind::parse(s).ok_or_else(|| {
        ItemError::new(
            ItemErrorCode::UnknownKind,
            format!("unknown kind `{}`; expected one of {}", truncate_for_message(s), EntityKind::list()),
        )
    })
}

pub fn name(s: &str) -> Result<(), ItemError> {
    bounded_string("name", s, MAX_NAME_BYTES, ItemErrorCode::InvalidName)?;
    if s.chars().any(|c| c == '\0') {
        return Err(ItemError::new(ItemErrorCode::InvalidName, "name contains a NUL character"));
    }
    Ok(())
}

pub fn editor_ref(s: &str) -> Result<(), ItemError> {
    bounded_string("editor_ref", s, MAX_EDITOR_REF_BYTES, ItemErrorCode::TooLarge)
}

fn bounded_string(field: &str, s: &str, max: usize, code: ItemErrorCode) -> Result<(), ItemError> {
    if s.len() > max {
        return Err(ItemError::new(
            if code == ItemErrorCode::InvalidName { ItemErrorCode::TooLarge } else { code },
            format!("{field} is {} bytes; the limit is {max}", s.len()),
        ));
    }
    Ok(())
}

pub fn finite(field: &str, v: f64) -> Result<(), ItemError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ItemError::new(ItemErrorCode::NonFinite, format!("{field} is {v}; only finite numbers are accepted")))
    }
}

/// Cut long hostile strings down before echoing them in an error message.
pub fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_rules() {
        assert!(uuid("6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a").is_ok());
        assert!(uuid("6F1C2A4E-4B7D-4A53-9A43-9D7F9B0F1F3A").is_err());
        assert!(uuid("{6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a}").is_err());
        assert!(uuid("00000000-0000-0000-0000-000000000000").is_err());
        assert!(uuid("6f1c2a4e4b7d4a539a439d7f9b0f1f3a").is_err());
    }

    #[test]
    fn project_rules() {
        assert!(project_id("demo-1.2_x").is_ok());
        assert!(project_id("").is_err());
        assert!(project_id(".hidden").is_err());
        assert!(project_id("a/b").is_err());
    }
}
