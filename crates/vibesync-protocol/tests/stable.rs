//! Equal stored poses hash equal (docs/PROTOCOL.md §6.5 "Stable values"): the daemon's
//! authoritative values, stored by an editor in float32 the way Blender and Unity store them
//! and read back, give the daemon's state hash — for random rotations (including near-180°
//! and near-identity ones and Euler round trips near gimbal lock), scales and positions up to
//! large coordinates.

use proptest::prelude::*;
use serde_json::json;
use vibesync_protocol::state::{hashed_rotation, stable_rotation, stable_scalar, state_hash};

fn state(t: [f64; 3], r: [f64; 4], s: [f64; 3]) -> serde_json::Value {
    json!({"kind":"object","name":"o","parent":null,"visible":true,"t":t,"r":r,"s":s})
}

fn f32v<const N: usize>(v: [f64; N]) -> [f32; N] {
    v.map(|c| c as f32)
}

fn back<const N: usize>(v: [f32; N]) -> [f64; N] {
    v.map(|c| c as f64)
}

/// Unity: `Quaternion` is float32 and the engine normalizes what it is given (in float32).
fn unity_store(q: [f64; 4]) -> [f64; 4] {
    let q = f32v(q);
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    back(q.map(|c| c / n))
}

type M3 = [[f32; 3]; 3];

fn quat_to_mat(q: [f32; 4]) -> M3 {
    let [x, y, z, w] = q;
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
        [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
        [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

fn mat_to_quat(m: M3) -> [f32; 4] {
    let tr = m[0][0] + m[1][1] + m[2][2];
    let q = if tr > 0.0 {
        let s = (tr + 1.0).sqrt() * 2.0;
        [(m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s, 0.25 * s]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s, (m[2][1] - m[1][2]) / s]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [(m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s, (m[0][2] - m[2][0]) / s]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [(m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s, (m[1][0] - m[0][1]) / s]
    };
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    q.map(|c| c / n)
}

/// Blender with the default XYZ Euler rotation mode: the quaternion becomes three float32
/// angles (converted in float64 as the addon does), and is read back through a float32
/// rotation matrix.
fn blender_euler_store(q: [f64; 4]) -> [f64; 4] {
    let [x, y, z, w] = q;
    // R = Rz * Ry * Rx; matrix entries in float64.
    let m20 = 2.0 * (x * z - y * w);
    let m21 = 2.0 * (y * z + x * w);
    let m22 = 1.0 - 2.0 * (x * x + y * y);
    let m10 = 2.0 * (x * y + z * w);
    let m00 = 1.0 - 2.0 * (y * y + z * z);
    let m11 = 1.0 - 2.0 * (x * x + z * z);
    let cy = (m00 * m00 + m10 * m10).sqrt();
    let (ex, ey, ez) = if cy > 1e-12 {
        (m21.atan2(m22), (-m20).atan2(cy), m10.atan2(m00))
    } else {
        ((-2.0 * (y * z - x * w)).atan2(m11), (-m20).atan2(cy), 0.0)
    };
    let (ex, ey, ez) = (ex as f32, ey as f32, ez as f32);
    let (sx, cx, sy, cyy, sz, cz) = (ex.sin(), ex.cos(), ey.sin(), ey.cos(), ez.sin(), ez.cos());
    let m: M3 = [
        [cyy * cz, sx * sy * cz - cx * sz, cx * sy * cz + sx * sz],
        [cyy * sz, sx * sy * sz + cx * cz, cx * sy * sz - sx * cz],
        [-sy, sx * cyy, cx * cyy],
    ];
    back(mat_to_quat(m))
}

/// Blender with QUATERNION rotation mode, read back through `matrix_basis.decompose()`.
fn blender_quat_store(q: [f64; 4]) -> [f64; 4] {
    back(mat_to_quat(quat_to_mat(f32v(q))))
}

fn unit_quaternion() -> impl Strategy<Value = [f64; 4]> {
    let gauss = || -1.0f64..1.0;
    let general = (gauss(), gauss(), gauss(), gauss()).prop_map(|(a, b, c, d)| [a, b, c, d]);
    // Near-identity, near-180° (w ≈ 0) and near-ties between components.
    let tiny =
        (-2e-3f64..2e-3, -2e-3f64..2e-3, -2e-3f64..2e-3, 0usize..4, any::<bool>()).prop_map(|(a, b, c, i, neg)| {
            let mut q = [a, b, c, a + b];
            q[i] = if neg { -1.0 } else { 1.0 };
            q
        });
    let tie = (0.0f64..1.0, -1e-5f64..1e-5, 0usize..4, 0usize..4).prop_map(|(a, e, i, j)| {
        let mut q = [a * 0.1, 0.05, -0.02, 0.01];
        q[i] = std::f64::consts::FRAC_1_SQRT_2;
        q[(i + 1 + j % 3) % 4] = -std::f64::consts::FRAC_1_SQRT_2 + e;
        q
    });
    prop_oneof![general, tiny, tie].prop_filter("non-zero", |q| q.iter().map(|c| c * c).sum::<f64>() > 1e-6)
}

fn coordinate() -> impl Strategy<Value = f64> {
    prop_oneof![-10.0f64..10.0, -1e5f64..1e5, -2e-5f64..2e-5]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn stored_rotations_hash_equal(q in unit_quaternion()) {
        let a = stable_rotation(q);
        let expect = state_hash(&state([0.0; 3], a, [1.0; 3]));
        let qn = {
            let n = q.iter().map(|c| c * c).sum::<f64>().sqrt();
            q.map(|c| c / n)
        };
        // The stable rotation is the same rotation, within the quantization step.
        let sign = if (0..4).map(|i| a[i] * qn[i]).sum::<f64>() < 0.0 { -1.0 } else { 1.0 };
        let moved = (0..4).map(|i| (a[i] - sign * qn[i]).abs()).fold(0.0, f64::max);
        prop_assert!(moved <= 3e-5, "moved {moved}: {q:?} -> {a:?}");
        for (name, got) in [
            ("exact", a),
            ("negated", a.map(|c| -c)),
            ("unity", unity_store(a)),
            ("blender quaternion", blender_quat_store(a)),
            ("blender euler", blender_euler_store(a)),
        ] {
            let same = state_hash(&state([0.0; 3], got, [1.0; 3])) == expect;
            // Euler angles near gimbal lock lose more than a grid step in float32. For an
            // editor that stores poses with less precision than the wire, the contract is the
            // tolerance rule (docs/PROTOCOL.md §6.4): a read-back within 1e-5 per component of
            // the pose it was sent (q and -q alike) is answered as that pose.
            let within = || {
                let d = |sg: f64| (0..4).map(|i| (got[i] - sg * a[i]).abs()).fold(0.0, f64::max);
                d(1.0).min(d(-1.0)) <= 1e-5
            };
            prop_assert!(
                same || (name == "blender euler" && within()),
                "{} read-back {:?} of {:?} (hashed {:?} vs {:?})", name, got, a, hashed_rotation(got), hashed_rotation(a)
            );
        }
    }

    #[test]
    fn stored_positions_and_scales_hash_equal(t in [coordinate(), coordinate(), coordinate()],
                                              s in [-10.0f64..10.0, 0.001f64..100.0, -1e3f64..1e3]) {
        let (ta, sa) = (t.map(stable_scalar), s.map(stable_scalar));
        for i in 0..3 {
            prop_assert!((ta[i] - t[i]).abs() <= 1e-5_f64.max(t[i].abs() * 2.0 * f32::EPSILON as f64), "{} -> {}", t[i], ta[i]);
        }
        let r = [0.0, 0.0, 0.0, 1.0];
        let expect = state_hash(&state(ta, r, sa));
        // Blender and Unity store locations and scales as float32 fields.
        prop_assert_eq!(state_hash(&state(back(f32v(ta)), r, back(f32v(sa)))), expect.clone());
        // A receiver in centimetres (unit scale 0.01) stores t / 0.01 in float32 and hashes
        // its read-back times 0.01: exact to ~1e-7 relative, inside the cell for |t| < 50 m.
        if ta.iter().all(|c| c.abs() < 50.0) {
            let cm = ta.map(|c| (c / 0.01) as f32 as f64 * 0.01);
            prop_assert_eq!(state_hash(&state(cm, r, sa)), expect);
        }
    }
}

#[test]
fn stable_values_are_fixed_points() {
    for v in [0.0, 1.0, -2.5, 0.123456789, 1234.56789, -98765.4321, 3e-6] {
        let a = stable_scalar(v);
        assert_eq!(stable_scalar(a), a, "{v}");
        assert_eq!(a as f32 as f64, a, "{v} is float32-exact");
    }
    let q = stable_rotation([0.1, 0.7, -0.2, 0.6]);
    assert_eq!(stable_rotation(q), q);
    assert_eq!(stable_rotation([0.0, 0.0, 0.0, 1.0]), [0.0, 0.0, 0.0, 1.0]);
}
