//! The WAL line parser. Random bytes almost never carry a valid checksum, so the input is
//! used twice: as a raw line, and as the body `B` of a record that is then sealed with the
//! correct checksum (docs/WAL.md §4), which reaches the JSON parsing. Invariants: no panic;
//! `Record::parse_line` and `RecordHead::parse_line` (used by boot recovery) accept exactly
//! the same lines; a parsed record re-sealed parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vibesync_wal::record::RecordHead;
use vibesync_wal::Record;

fn check(line: &[u8]) {
    let full = Record::parse_line(line);
    let head = RecordHead::parse_line(line);
    assert_eq!(
        full.is_ok(),
        head.is_ok(),
        "Record and RecordHead disagree on {:?}: {:?} vs {:?}",
        String::from_utf8_lossy(line),
        full.as_ref().err(),
        head.as_ref().err()
    );
    if let Ok(rec) = full {
        let mut again = rec.clone();
        let sealed = again.seal();
        let back = Record::parse_line(&sealed).expect("a re-sealed record parses");
        assert_eq!(back, again, "seal/parse round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.last() == Some(&b'}') {
        let h = blake3_hex(data);
        let mut line = data[..data.len() - 1].to_vec();
        line.extend_from_slice(b",\"h\":\"");
        line.extend_from_slice(h.as_bytes());
        line.extend_from_slice(b"\"}\n");
        check(&line);
    }
});

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}
