//! The `VSM1` mesh attachment (docs/PROTOCOL.md §7). Little-endian throughout.

use bytes::{BufMut, BytesMut};

pub const MAGIC: &[u8; 4] = b"VSM1";
pub const FLAG_NORMALS: u32 = 1;
pub const FLAG_UV0: u32 = 2;
const HEADER: usize = 16;

/// A triangle mesh in the canonical frame, meters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mesh {
    pub positions: Vec<[f32; 3]>,
    pub normals: Option<Vec<[f32; 3]>>,
    pub uv0: Option<Vec<[f32; 2]>>,
    pub indices: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MeshError {
    #[error("mesh attachment too short: {len} bytes, need at least {need}")]
    Truncated { len: usize, need: usize },
    #[error("mesh attachment has {len} bytes but its header describes exactly {need}; send no trailing bytes")]
    TrailingBytes { len: usize, need: usize },
    #[error("mesh attachment does not start with the magic `VSM1`")]
    BadMagic,
    #[error("mesh attachment has unknown flags {0:#x}")]
    BadFlags(u32),
    #[error("triangle index count {0} is not a multiple of 3")]
    NotTriangles(u32),
    #[error("triangle index {index} at position {at} is out of range for {vertices} vertices")]
    IndexOutOfRange { index: u32, at: usize, vertices: u32 },
    #[error("vertex component {at} is not finite")]
    NonFinite { at: usize },
}

impl Mesh {
    pub fn encode(&self) -> Vec<u8> {
        let n = self.positions.len();
        let mut flags = 0;
        if self.normals.is_some() {
            flags |= FLAG_NORMALS;
        }
        if self.uv0.is_some() {
            flags |= FLAG_UV0;
        }
        let mut b = BytesMut::with_capacity(HEADER + n * 32 + self.indices.len() * 4);
        b.put_slice(MAGIC);
        b.put_u32_le(n as u32);
        b.put_u32_le(self.indices.len() as u32);
        b.put_u32_le(flags);
        for p in &self.positions {
            p.iter().for_each(|c| b.put_f32_le(*c));
        }
        if let Some(ns) = &self.normals {
            for p in ns {
                p.iter().for_each(|c| b.put_f32_le(*c));
            }
        }
        if let Some(uvs) = &self.uv0 {
            for p in uvs {
                p.iter().for_each(|c| b.put_f32_le(*c));
            }
        }
        self.indices.iter().for_each(|i| b.put_u32_le(*i));
        b.to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Mesh, MeshError> {
        if bytes.len() < HEADER {
            return Err(MeshError::Truncated { len: bytes.len(), need: HEADER });
        }
        if &bytes[..4] != MAGIC {
            return Err(MeshError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let (n, ni, flags) = (u32_at(4), u32_at(8), u32_at(12));
        if flags & !(FLAG_NORMALS | FLAG_UV0) != 0 {
            return Err(MeshError::BadFlags(flags));
        }
        if ni % 3 != 0 {
            return Err(MeshError::NotTriangles(ni));
        }
        let floats_per_vertex =
            3 + if flags & FLAG_NORMALS != 0 { 3 } else { 0 } + if flags & FLAG_UV0 != 0 { 2 } else { 0 };
        let need = HEADER as u64 + n as u64 * floats_per_vertex * 4 + ni as u64 * 4;
        if (bytes.len() as u64) < need {
            return Err(MeshError::Truncated { len: bytes.len(), need: need as usize });
        }
        if bytes.len() as u64 > need {
            // Both editors' decoders require the exact size: never store what they refuse.
            return Err(MeshError::TrailingBytes { len: bytes.len(), need: need as usize });
        }
        let mut off = HEADER;
        let mut f32s = |count: usize| -> Result<Vec<f32>, MeshError> {
            let mut v = Vec::with_capacity(count);
            for i in 0..count {
                let o = off + i * 4;
                let f = f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
                if !f.is_finite() {
                    return Err(MeshError::NonFinite { at: o });
                }
                v.push(f);
            }
            off += count * 4;
            Ok(v)
        };
        let n_us = n as usize;
        let positions = f32s(n_us * 3)?.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let normals = if flags & FLAG_NORMALS != 0 {
            Some(f32s(n_us * 3)?.chunks(3).map(|c| [c[0], c[1], c[2]]).collect())
        } else {
            None
        };
        let uv0 =
            if flags & FLAG_UV0 != 0 { Some(f32s(n_us * 2)?.chunks(2).map(|c| [c[0], c[1]]).collect()) } else { None };
        let mut indices = Vec::with_capacity(ni as usize);
        for i in 0..ni as usize {
            let idx = u32_at(off + i * 4);
            if idx >= n {
                return Err(MeshError::IndexOutOfRange { index: idx, at: i, vertices: n });
            }
            indices.push(idx);
        }
        Ok(Mesh { positions, normals, uv0, indices })
    }

    /// `mesh_hash`: lowercase hex SHA-256 of the encoded attachment (§7).
    pub fn hash_bytes(attachment: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(attachment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Mesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            normals: Some(vec![[0.0, 0.0, 1.0]; 3]),
            uv0: Some(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
            indices: vec![0, 1, 2],
        };
        let b = m.encode();
        assert_eq!(Mesh::decode(&b).unwrap(), m);
        let mut bad = b.clone();
        let last = bad.len() - 4;
        bad[last] = 9;
        assert!(matches!(Mesh::decode(&bad), Err(MeshError::IndexOutOfRange { .. })));
    }
}
