//! Coordinate frames (docs/PROTOCOL.md §6). Canonical = glTF: Y up, right-handed, meters.
//! Quaternions are `[x, y, z, w]`.

/// A transform: translation, rotation quaternion `[x,y,z,w]`, scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub t: [f64; 3],
    pub r: [f64; 4],
    pub s: [f64; 3],
}

/// Blender (Z up, right-handed) → canonical. `unit_scale` = meters per Blender unit.
pub fn blender_to_canonical(b: &Transform, unit_scale: f64) -> Transform {
    let [x, y, z] = b.t;
    let [qx, qy, qz, qw] = b.r;
    let [sx, sy, sz] = b.s;
    Transform { t: [x * unit_scale, z * unit_scale, -y * unit_scale], r: [qx, qz, -qy, qw], s: [sx, sz, sy] }
}

/// Canonical → Blender.
pub fn canonical_to_blender(c: &Transform, unit_scale: f64) -> Transform {
    let [x, y, z] = c.t;
    let [qx, qy, qz, qw] = c.r;
    let [sx, sy, sz] = c.s;
    Transform { t: [x / unit_scale, -z / unit_scale, y / unit_scale], r: [qx, -qz, qy, qw], s: [sx, sz, sy] }
}

/// Unity (Y up, left-handed, meters) → canonical: mirror Z.
pub fn unity_to_canonical(u: &Transform) -> Transform {
    let [x, y, z] = u.t;
    let [qx, qy, qz, qw] = u.r;
    Transform { t: [x, y, -z], r: [-qx, -qy, qz, qw], s: u.s }
}

/// Canonical → Unity (the mirror is its own inverse).
pub fn canonical_to_unity(c: &Transform) -> Transform {
    unity_to_canonical(c)
}

/// Scale a length-valued triple (positions) between editor units and meters.
pub fn scale_lengths(t: [f64; 3], factor: f64) -> [f64; 3] {
    [t[0] * factor, t[1] * factor, t[2] * factor]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_example_from_protocol_doc() {
        let half = 15f64.to_radians();
        let b = Transform { t: [1.0, 2.0, 3.0], r: [0.0, 0.0, half.sin(), half.cos()], s: [2.0, 2.0, 2.0] };
        let c = blender_to_canonical(&b, 1.0);
        assert_eq!(c.t, [1.0, 3.0, -2.0]);
        let u = canonical_to_unity(&c);
        assert_eq!(u.t, [1.0, 3.0, 2.0]);
        assert!((u.r[1] + half.sin()).abs() < 1e-12);
        assert!((u.r[3] - half.cos()).abs() < 1e-12);
        let back = canonical_to_blender(&unity_to_canonical(&u), 1.0);
        for i in 0..3 {
            assert!((back.t[i] - b.t[i]).abs() < 1e-12);
        }
    }
}
