//! The frame decoder on arbitrary bytes: never panics, never yields a frame that does not
//! re-encode to exactly the bytes it consumed, and decodes the same frames whether the
//! bytes arrive at once or in pieces (as TCP delivers them).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use vibesync_protocol::{Frame, FrameCodec};

/// Decode everything; returns the frames and whether the stream ended in an error.
fn decode_all(data: &[u8], chunk: usize, max: u32) -> (Vec<Frame>, bool) {
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = vec![];
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // First byte: chunk size for the incremental run; second: the frame size limit.
    let chunk = data[0] as usize % 17 + 1;
    let max = 4 + (data[1] as u32) * 64;
    let data = &data[2..];
    let (whole, whole_err) = decode_all(data, data.len().max(1), max);
    let (pieces, pieces_err) = decode_all(data, chunk, max);
    assert_eq!(whole, pieces, "chunking changed the decoded frames");
    assert_eq!(whole_err, pieces_err, "chunking changed whether the stream is malformed");
    let mut consumed = 0;
    for f in &whole {
        let bytes = f.to_bytes();
        assert!(bytes.len() as u64 <= 4 + max as u64, "a frame above the limit was decoded");
        assert_eq!(&data[consumed..consumed + bytes.len()], &bytes[..], "frame does not re-encode to its bytes");
        consumed += bytes.len();
    }
});
