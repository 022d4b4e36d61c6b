//! Frame codec: `u32 BE total_len | u32 BE json_len | json | attachment`.
//!
//! `total_len` counts everything after its own four bytes. The decoder rejects an oversized
//! length before allocating anything, and never reads past a malformed header: after an
//! error the stream cannot be trusted and the caller must close it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default limit for `total_len`: 64 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// One decoded frame: the JSON bytes (not yet parsed) and the binary attachment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub json: Bytes,
    pub attachment: Bytes,
}

impl Frame {
    pub fn new(json: impl Into<Bytes>, attachment: impl Into<Bytes>) -> Frame {
        Frame { json: json.into(), attachment: attachment.into() }
    }

    /// Encode into a fresh byte vector (handy for tests and vectors).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        write_frame(&self.json, &self.attachment, &mut buf);
        buf.to_vec()
    }
}

/// Why a byte stream is not a valid sequence of frames. Both are fatal for the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} bytes exceeds the limit of {max} bytes; split the payload")]
    TooLarge { len: u64, max: u32 },
    #[error("malformed frame header: total_len {total_len}, json_len {json_len} (json_len must be <= total_len - 4)")]
    BadFrame { total_len: u32, json_len: u32 },
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// tokio-util codec for frames.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_bytes: u32,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: u32) -> FrameCodec {
        FrameCodec { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Change the limit for the frames decoded from now on (the daemon raises it from
    /// [`PRE_AUTH_MAX_FRAME_BYTES`] once `hello` is accepted).
    pub fn set_max_frame_bytes(&mut self, max: u32) {
        self.max_frame_bytes = max;
    }
}

/// Largest frame accepted before the handshake completes (docs/PROTOCOL.md §3): a `hello`
/// is well under 1 KiB; larger first frames are `FRAME_TOO_LARGE` and close.
pub const PRE_AUTH_MAX_FRAME_BYTES: u32 = 4096;

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total_len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if total_len > self.max_frame_bytes {
            return Err(FrameError::TooLarge { len: total_len as u64, max: self.max_frame_bytes });
        }
        if total_len < 4 {
            return Err(FrameError::BadFrame { total_len, json_len: 0 });
        }
        if src.len() < 8 {
            src.reserve(8 - src.len());
            return Ok(None);
        }
        let json_len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
        if json_len > total_len - 4 {
            return Err(FrameError::BadFrame { total_len, json_len });
        }
        let needed = 4 + total_len as usize;
        if src.len() < needed {
            // Bounded by max_frame_bytes, checked above.
            src.reserve(needed - src.len());
            return Ok(None);
        }
        src.advance(8);
        let json = src.split_to(json_len as usize).freeze();
        let attachment = src.split_to((total_len - 4 - json_len) as usize).freeze();
        Ok(Some(Frame { json, attachment }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let total = 4u64 + item.json.len() as u64 + item.attachment.len() as u64;
        if total > self.max_frame_bytes as u64 {
            return Err(FrameError::TooLarge { len: total, max: self.max_frame_bytes });
        }
        write_frame(&item.json, &item.attachment, dst);
        Ok(())
    }
}

fn write_frame(json: &[u8], attachment: &[u8], dst: &mut BytesMut) {
    let total = 4 + json.len() + attachment.len();
    dst.reserve(4 + total);
    dst.put_u32(total as u32);
    dst.put_u32(json.len() as u32);
    dst.put_slice(json);
    dst.put_slice(attachment);
}

/// True when the first bytes of a connection look like an HTTP request line. A browser
/// (or any HTTP client) is turned away with a plain close: VibeSync never speaks HTTP.
pub fn looks_like_http(prefix: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [b"GET ", b"POST", b"PUT ", b"HEAD", b"OPTI", b"DELE", b"PATC", b"CONN", b"TRAC"];
    prefix.len() >= 4 && METHODS.iter().any(|m| &prefix[..4] == *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reads_decode_one_frame() {
        let bytes = Frame::new(&b"{\"type\":\"ping\"}"[..], &b"\x01\x02"[..]).to_bytes();
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let out = codec.decode(&mut buf).unwrap();
            if i + 1 < bytes.len() {
                assert!(out.is_none());
            } else {
                let f = out.unwrap();
                assert_eq!(&f.json[..], b"{\"type\":\"ping\"}");
                assert_eq!(&f.attachment[..], b"\x01\x02");
            }
        }
    }

    #[test]
    fn oversize_rejected_before_payload_arrives() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 4, 1][..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge { len: 1025, .. })));
    }

    #[test]
    fn http_is_recognised() {
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(!looks_like_http(&[0, 0, 0, 20]));
    }
}
