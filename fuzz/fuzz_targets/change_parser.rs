//! The engine's change parser on arbitrary JSON: never panics; an accepted change applies
//! to "no state" and to its own result without panicking, hashes, and converts to the wire
//! form for any unit scale; an accepted change's numbers are finite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vibesync_engine::sync::{apply_change, change_to_wire, parse_change};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let unit = [1.0, 0.01, 1e-9, 1e9, 0.3048][data[0] as usize % 5];
    let Ok(v) = serde_json::from_slice::<Value>(&data[1..]) else { return };
    match parse_change(&v, unit, "changes[0]") {
        Ok(change) => {
            let wire = change_to_wire(&change.uuid, &change.op, unit);
            serde_json::to_string(&wire).expect("wire form serializes");
            if let Ok(Some(state)) = apply_change(None, &change.op) {
                let _ = state.hash();
                let _ = apply_change(Some(&state), &change.op);
                for x in state.t.iter().chain(state.r.iter()).chain(state.s.iter()) {
                    assert!(x.is_finite(), "non-finite number accepted: {x}");
                }
            }
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
