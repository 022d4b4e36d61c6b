//! `parse_inbound` on arbitrary bytes (the JSON part of a frame): never panics; an error is
//! BAD_MESSAGE or UNKNOWN_TYPE with a non-empty message; a parsed message's request_id
//! respects the 128-byte limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vibesync_protocol::{parse_inbound, ErrorCode};

fuzz_target!(|data: &[u8]| {
    match parse_inbound(data) {
        Ok(msg) => {
            let _ = msg.type_name();
            if let Some(r) = msg.request_id() {
                assert!(r.len() <= 128, "request_id over the limit accepted");
            }
        }
        Err(e) => {
            assert!(matches!(e.code, ErrorCode::BadMessage | ErrorCode::UnknownType), "{:?}", e.code);
            assert!(!e.message.is_empty());
            if let Some(r) = &e.request_id {
                assert!(r.len() <= 256, "echoed request_id not truncated: {} bytes", r.len());
            }
        }
    }
});
