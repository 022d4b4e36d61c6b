//! Inputs found by `fuzz/` (target `wal_line`), kept as regression tests.
//!
//! Invariant under test: `RecordHead::parse_line` (what boot recovery uses) accepts exactly
//! the lines `Record::parse_line` (what `Reader`, `read_all`, `verify` and the registry
//! rebuild use) accepts — its doc says "Verify one line exactly like Record::parse_line".

use vibesync_wal::{Record, RecordHead};

const BODY: &str = r#"{"seq":1,"ts":"2026-11-21T09:14:03.123456Z","process_id":4242,"session_id":"5b0c7a52-9f3e-4e59-8d0e-2f4f1c9a0b11","operation_id":"op-1","uuids":["6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a"],"project_id":"demo","phase":"BEGIN","outcome":"pending","error_code":null,"schema_version":1,"payload":PAYLOAD,"prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#;

/// A line with a correct checksum around `payload` (raw bytes, may be invalid UTF-8).
fn sealed(payload: &[u8]) -> Vec<u8> {
    let (a, b) = BODY.split_once("PAYLOAD").unwrap();
    let mut body = a.as_bytes().to_vec();
    body.extend_from_slice(payload);
    body.extend_from_slice(b.as_bytes());
    let h = blake3::hash(&body).to_hex().to_string();
    body.pop();
    body.extend_from_slice(format!(",\"h\":\"{h}\"}}\n").as_bytes());
    body
}

fn agree(line: &[u8]) -> (bool, bool) {
    (Record::parse_line(line).is_ok(), RecordHead::parse_line(line).is_ok())
}

#[test]
fn valid_payloads_parse_with_both() {
    for p in [&br#"{"count":1,"op":"register"}"#[..], br#"{"count":1.5e300}"#, br#"[1,"x",null]"#, b"null"] {
        assert_eq!(agree(&sealed(p)), (true, true), "{}", String::from_utf8_lossy(p));
    }
}

/// Found by the fuzzer: invalid UTF-8 inside a payload string, under a correct checksum.
/// `Record` refuses the line ("invalid unicode code point"); `RecordHead` skips the payload
/// with `IgnoredAny`, which does not validate UTF-8, and accepts it. Boot recovery therefore
/// passes a line that the reader, `verify` and the registry catch-up reject — and the
/// daemon's catch-up iterator (`stores.rs`, `map_while(|e| e.ok())`) silently stops there,
/// skipping every later record. Only a crafted or checksum-preserving corruption produces
/// such a line (the writer serializes valid UTF-8), but the two parsers must agree.
#[test]
fn invalid_utf8_in_payload_is_rejected_by_both() {
    let line = sealed(b"{\"cou\xb8\xff\xff\xffnt\":1.5e300,\"op\":\"register\"}");
    assert_eq!(agree(&line), (false, false));
    let line = sealed(b"{\"name\":\"\xc0\xaf\"}");
    assert_eq!(agree(&line), (false, false));
}

/// Same class: a number outside f64 range in the payload.
#[test]
fn out_of_range_number_in_payload_is_rejected_by_both() {
    let line = sealed(br#"{"count":1e400}"#);
    assert_eq!(agree(&line), (false, false));
}

/// The fuzzer's artifact, byte for byte.
#[test]
fn fuzz_artifact_wal_line_9a2858b0() {
    let line = sealed(b"{\"cou\xb8\xff\xff\xffnt\":1.5e300,\"op\":\"register\"}");
    assert_eq!(Record::parse_line(&line).is_ok(), RecordHead::parse_line(&line).is_ok());
}
