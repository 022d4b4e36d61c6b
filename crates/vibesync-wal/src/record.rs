//! One WAL record and its byte-exact line format.
//!
//! Checksum rule (docs/WAL.md): serialize the record without `h` as compact JSON bytes `B`
//! (ends in `}`); `h = hex(blake3(B))`; the line is `B` minus its final `}`, then
//! `,"h":"<h>"}` and `\n`. Verification never re-serializes: it cuts the suffix off the raw
//! line, so any language can check a line with a JSON parser and blake3 alone.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Version of the record schema written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// `prev` of the very first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Transaction phase of a record. See docs/WAL.md for the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Begin,
    Step,
    Provisional,
    Commit,
    Final,
    Rollback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Begin => "BEGIN",
            Phase::Step => "STEP",
            Phase::Provisional => "PROVISIONAL",
            Phase::Commit => "COMMIT",
            Phase::Final => "FINAL",
            Phase::Rollback => "ROLLBACK",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s.to_ascii_uppercase().as_str() {
            "BEGIN" => Phase::Begin,
            "STEP" => Phase::Step,
            "PROVISIONAL" => Phase::Provisional,
            "COMMIT" => Phase::Commit,
            "FINAL" => Phase::Final,
            "ROLLBACK" => Phase::Rollback,
            _ => return None,
        })
    }
}

/// A record's `outcome` (docs/WAL.md §2): whether what the record says is known to have
/// worked. Any other spelling makes the line invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// BEGIN, PROVISIONAL: the result is not known yet.
    Pending,
    /// STEP, COMMIT, FINAL that succeeded.
    Ok,
    /// ROLLBACK, a failed STEP.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller supplies; the WAL fills in `seq`, `ts`, `process_id`, `schema_version`,
/// `prev` and `h` when it appends.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDraft {
    pub session_id: String,
    pub operation_id: String,
    pub uuids: Vec<String>,
    pub project_id: String,
    pub phase: Phase,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub payload: serde_json::Value,
}

/// A record as written to and read from disk. Field order here is the on-disk key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: String,
    pub process_id: u32,
    pub session_id: String,
    pub operation_id: String,
    pub uuids: Vec<String>,
    pub project_id: String,
    pub phase: Phase,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub prev: String,
    #[serde(default)]
    pub h: String,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line has no trailing `,\"h\":\"<64 hex>\"}}` checksum field")]
    MissingChecksum,
    #[error("checksum mismatch: line says {stated}, content hashes to {actual}")]
    ChecksumMismatch { stated: String, actual: String },
    #[error("line is not a valid record: {0}")]
    Json(String),
}

#[derive(Serialize)]
struct Unsealed<'a> {
    seq: u64,
    ts: &'a str,
    process_id: u32,
    session_id: &'a str,
    operation_id: &'a str,
    uuids: &'a [String],
    project_id: &'a str,
    phase: Phase,
    outcome: Outcome,
    error_code: &'a Option<String>,
    schema_version: u32,
    payload: &'a serde_json::Value,
    prev: &'a str,
}

impl Record {
    /// Compute `h` over the record's other fields and return the full line (with `\n`).
    /// Sets `self.h`.
    pub fn seal(&mut self) -> Vec<u8> {
        let unsealed = Unsealed {
            seq: self.seq,
            ts: &self.ts,
            process_id: self.process_id,
            session_id: &self.session_id,
            operation_id: &self.operation_id,
            uuids: &self.uuids,
            project_id: &self.project_id,
            phase: self.phase,
            outcome: self.outcome,
            error_code: &self.error_code,
            schema_version: self.schema_version,
            payload: &self.payload,
            prev: &self.prev,
        };
        let mut b = serde_json::to_vec(&unsealed).expect("record serializes");
        let h = blake3::hash(&b).to_hex().to_string();
        debug_assert_eq!(b.last(), Some(&b'}'));
        b.pop();
        b.extend_from_slice(b",\"h\":\"");
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(b"\"}\n");
        self.h = h;
        b
    }

    /// Parse and verify one line (without or with its trailing `\n`).
    pub fn parse_line(line: &[u8]) -> Result<Record, LineError> {
        let line = verify_line_checksum(line)?;
        let rec: Record = serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
        Ok(rec)
    }

    /// [`Record::parse_line`] without hashing the line again: for bytes this process has
    /// verified already (boot's recovery pass, docs/WAL.md §5). The `h` suffix's form is still
    /// checked; the caller verifies the checksum of any record outside what was verified.
    pub(crate) fn parse_verified_line(line: &[u8]) -> Result<Record, LineError> {
        let (line, _, _) = split_checksum(line)?;
        serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))
    }

    /// The borrowed head of this record (everything but the payload).
    pub fn head(&self) -> RecordHead<'_> {
        RecordHead {
            seq: self.seq,
            ts: Cow::Borrowed(&self.ts),
            process_id: self.process_id,
            session_id: Cow::Borrowed(&self.session_id),
            operation_id: Cow::Borrowed(&self.operation_id),
            uuids: self.uuids.iter().map(|u| Cow::Borrowed(u.as_str())).collect(),
            project_id: Cow::Borrowed(&self.project_id),
            phase: self.phase,
            outcome: self.outcome,
            error_code: self.error_code.as_deref().map(Cow::Borrowed),
            schema_version: self.schema_version,
            payload_checked: Validated,
            prev: Cow::Borrowed(&self.prev),
            h: Cow::Borrowed(&self.h),
        }
    }
}

/// Any JSON value, fully validated (UTF-8, escapes, numbers in range — exactly what building a
/// `serde_json::Value` would accept) but not built. `IgnoredAny` only skips syntax, which let
/// boot recovery accept lines the reader rejects (found by fuzzing: fuzz/ `wal_line`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Validated;

impl<'de> Deserialize<'de> for Validated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Validated;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_str<E>(self, _: &str) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_unit<E>(self) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_none<E>(self) -> Result<Validated, E> {
                Ok(Validated)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Validated, D::Error> {
                Validated::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Validated, A::Error> {
                while a.next_element::<Validated>()?.is_some() {}
                Ok(Validated)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Validated, A::Error> {
                while a.next_entry::<Validated, Validated>()?.is_some() {}
                Ok(Validated)
            }
        }
        d.deserialize_any(V)
    }
}

/// A verified record without its payload, borrowing from the line where it can. Boot
/// recovery parses a million of these; the payload is syntax-checked but not built.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordHead<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    pub process_id: u32,
    #[serde(borrow)]
    pub session_id: Cow<'a, str>,
    #[serde(borrow)]
    pub operation_id: Cow<'a, str>,
    pub uuids: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub project_id: Cow<'a, str>,
    pub phase: Phase,
    pub outcome: Outcome,
    pub error_code: Option<Cow<'a, str>>,
    pub schema_version: u32,
    #[allow(dead_code)]
    #[serde(rename = "payload")]
    payload_checked: Validated,
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
    #[serde(borrow, default)]
    pub h: Cow<'a, str>,
}

impl<'a> RecordHead<'a> {
    /// Verify one line exactly like [`Record::parse_line`] (same checksum rule, same
    /// required fields) without building the payload.
    pub fn parse_line(line: &'a [u8]) -> Result<RecordHead<'a>, LineError> {
        let line = verify_line_checksum(line)?;
        serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))
    }
}

/// A line split at its checksum: the line without `\n`, its body before the
/// `,"h":"<64 hex>"}` suffix, and the stated checksum.
type Split<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// [`Split`] a line (the suffix's form checked, nothing hashed).
fn split_checksum(line: &[u8]) -> Result<Split<'_>, LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    // suffix: ,"h":"<64 hex>"}  = 6 + 64 + 2 = 72 bytes
    const SUFFIX_LEN: usize = 72;
    if line.len() < SUFFIX_LEN + 2 {
        return Err(LineError::MissingChecksum);
    }
    let (body, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    if !suffix.starts_with(b",\"h\":\"") || !suffix.ends_with(b"\"}") {
        return Err(LineError::MissingChecksum);
    }
    let stated = &suffix[6..70];
    if !stated.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
        return Err(LineError::MissingChecksum);
    }
    Ok((line, body, stated))
}

/// Check the `,"h":"<64 hex>"}` suffix against blake3 of the rest; return the line without `\n`.
pub(crate) fn verify_line_checksum(line: &[u8]) -> Result<&[u8], LineError> {
    let (line, body, stated) = split_checksum(line)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(body);
    hasher.update(b"}");
    let actual = hasher.finalize().to_hex();
    if actual.as_bytes() != stated {
        return Err(LineError::ChecksumMismatch {
            stated: String::from_utf8_lossy(stated).into_owned(),
            actual: actual.to_string(),
        });
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            seq: 1,
            ts: "2026-11-21T00:00:00.000000Z".into(),
            process_id: 42,
            session_id: "s".into(),
            operation_id: "op".into(),
            uuids: vec!["6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a".into()],
            project_id: "demo".into(),
            phase: Phase::Begin,
            outcome: Outcome::Pending,
            error_code: None,
            schema_version: SCHEMA_VERSION,
            payload: serde_json::json!({"op":"register"}),
            prev: GENESIS_PREV.into(),
            h: String::new(),
        }
    }

    #[test]
    fn seal_then_parse_round_trips() {
        let mut r = sample();
        let line = r.seal();
        assert!(line.ends_with(b"\"}\n"));
        let back = Record::parse_line(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let mut r = sample();
        let line = r.seal();
        for i in 0..line.len() - 1 {
            let mut bad = line.clone();
            bad[i] ^= 0x01;
            assert!(Record::parse_line(&bad).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn an_outcome_or_phase_outside_the_documented_spellings_makes_the_line_invalid() {
        let line = String::from_utf8(sample().seal()).unwrap();
        // The sealed line without `\n` and without its `,"h":"<64 hex>"}` suffix.
        let open_body = &line[..line.len() - 1 - 72];
        for (good, bad) in [
            ("\"outcome\":\"pending\"", "\"outcome\":\"PENDING\""),
            ("\"outcome\":\"pending\"", "\"outcome\":\"done\""),
            ("\"phase\":\"BEGIN\"", "\"phase\":\"begin\""),
            ("\"phase\":\"BEGIN\"", "\"phase\":\"ABORT\""),
        ] {
            assert!(open_body.contains(good), "{open_body}");
            // Re-seal with a correct checksum so only the spelling is wrong.
            let body = open_body.replace(good, bad);
            let h = blake3::hash(format!("{body}}}").as_bytes()).to_hex();
            let bad_line = format!("{body},\"h\":\"{h}\"}}\n");
            assert!(matches!(Record::parse_line(bad_line.as_bytes()), Err(LineError::Json(_))), "{bad}");
            assert!(matches!(RecordHead::parse_line(bad_line.as_bytes()), Err(LineError::Json(_))), "{bad}");
        }
    }

    #[test]
    fn head_agrees_with_full_parse() {
        let mut r = sample();
        r.session_id = "quote\"and\\slash".into();
        let line = r.seal();
        let head = RecordHead::parse_line(&line).unwrap();
        assert_eq!(head, r.head());
        for i in 0..line.len() - 1 {
            let mut bad = line.clone();
            bad[i] ^= 0x01;
            assert!(RecordHead::parse_line(&bad).is_err(), "flip at {i} not detected");
        }
    }
}

/// The worked example of docs/WAL.md ("Checksum rule"), pinned so the document stays true.
#[cfg(test)]
mod doc_example {
    use super::*;

    pub(crate) fn example() -> Record {
        Record {
            seq: 1,
            ts: "2026-11-21T09:14:03.123456Z".into(),
            process_id: 4242,
            session_id: "5b0c7a52-9f3e-4e59-8d0e-2f4f1c9a0b11".into(),
            operation_id: "op-1".into(),
            uuids: vec!["6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a".into()],
            project_id: "demo".into(),
            phase: Phase::Begin,
            outcome: Outcome::Pending,
            error_code: None,
            schema_version: SCHEMA_VERSION,
            payload: serde_json::json!({"op":"register","count":1}),
            prev: GENESIS_PREV.into(),
            h: String::new(),
        }
    }

    const LINE: &str = concat!(
        r#"{"seq":1,"ts":"2026-11-21T09:14:03.123456Z","process_id":4242,"#,
        r#""session_id":"5b0c7a52-9f3e-4e59-8d0e-2f4f1c9a0b11","operation_id":"op-1","#,
        r#""uuids":["6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a"],"project_id":"demo","phase":"BEGIN","#,
        r#""outcome":"pending","error_code":null,"schema_version":1,"#,
        r#""payload":{"count":1,"op":"register"},"#,
        r#""prev":"0000000000000000000000000000000000000000000000000000000000000000","#,
        r#""h":"c6d01492e58266805890895e410a48110fda2c21bba79bc444dfeb32df588810"}"#,
        "\n"
    );

    #[test]
    fn worked_example_line_is_byte_exact() {
        let mut r = example();
        assert_eq!(String::from_utf8(r.seal()).unwrap(), LINE);
        // The rule by hand: hash the line without `,"h":"…"` (keeping the final `}`).
        let body = &LINE[..LINE.len() - 1 - 72];
        let h = blake3::hash(format!("{body}}}").as_bytes()).to_hex();
        assert_eq!(h.as_str(), "c6d01492e58266805890895e410a48110fda2c21bba79bc444dfeb32df588810");
        assert_eq!(Record::parse_line(LINE.as_bytes()).unwrap(), r);
    }
}
