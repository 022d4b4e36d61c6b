//! Numerical invariance (docs/PROTOCOL.md §6.5): quantization, canonical JSON, the SHA-256
//! state hash, and the daemon's *stable* values — the authoritative floats it stores, chosen
//! so that an editor that stores them in float32 and reads them back hashes equal.
//! Python and C# implement the same rules; tests/vectors pins them.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Quantization step: differences below 1e-5 are treated as equal.
pub const EPSILON: f64 = 1e-5;

/// `q(v) = sign(v) * floor(|v| * 100000 + 0.5)`.
pub fn quantize(v: f64) -> i64 {
    let q = (v.abs() * 100000.0 + 0.5).floor() as i64;
    if v < 0.0 {
        -q
    } else {
        q
    }
}

/// The value on the 1e-5 grid that `quantize` maps `v` to.
pub fn snap(v: f64) -> f64 {
    quantize(v) as f64 / 100000.0
}

/// How far `v` is from the edge of its quantization cell, in cells: 0.5 at the grid point,
/// 0 on the boundary between two cells.
pub fn margin(v: f64) -> f64 {
    0.5 - (v * 100000.0 - quantize(v) as f64).abs()
}

fn f32_round(v: f64) -> f64 {
    v as f32 as f64
}

/// The authoritative value the daemon stores for a length, scale or colour component `v`
/// (§6.5 "Stable values"): a float32-representable number whose quantization is that of `v`'s
/// grid point where float32 can hold it, chosen (among the float32 neighbours of the grid
/// point) to lie as far inside its quantization cell as possible. An editor storing it in a
/// float32 field reads back exactly this value, so its hash equals the daemon's; a
/// read-back computed in float32 arithmetic (matrix decompositions) stays within the cell
/// for |v| up to ~50 (margin ≥ 0.1 cell against ~1e-7 relative error).
pub fn stable_scalar(v: f64) -> f64 {
    let q = quantize(v);
    // Depth inside `v`'s own cell (not the candidate's): a neighbour deeper inside the next
    // cell would move the value to another cell, and, stored again, on by one float32 each
    // time (an independent client found 394.39554 stored as 394.39556884765625, then
    // 394.3955993652344). Where no float32 lies in the cell (|v| ≳ 128, a float32 step over a
    // cell), the nearest to the grid point: a value that stays put when stored again.
    let depth = |x: f64| 0.5 - (x * 100000.0 - q as f64).abs();
    let c = f32_round(q as f64 / 100000.0);
    let up = f32::from_bits(next_bits(c as f32, true)) as f64;
    let down = f32::from_bits(next_bits(c as f32, false)) as f64;
    let mut best = c;
    for cand in [up, down] {
        if cand.is_finite() && depth(cand) > depth(best) + 1e-9 {
            best = cand;
        }
    }
    best + 0.0
}

fn next_bits(x: f32, up: bool) -> u32 {
    if x == 0.0 {
        return if up { 1 } else { 0x8000_0001 };
    }
    let b = x.to_bits();
    if (x > 0.0) == up {
        b + 1
    } else {
        b - 1
    }
}

/// Index (in `[x, y, z, w]`) of the component with the largest magnitude; ties go to the
/// lowest index.
fn largest(q: &[f64; 4]) -> usize {
    let mut l = 0;
    for i in 1..4 {
        if q[i].abs() > q[l].abs() {
            l = i;
        }
    }
    l
}

/// The gap (in cells) between the largest magnitude and the next one: how far the quaternion
/// is from a change of the dropped component in the hashed form.
fn largest_gap(q: &[f64; 4], l: usize) -> f64 {
    let next = (0..4).filter(|&i| i != l).map(|i| q[i].abs()).fold(0.0, f64::max);
    (q[l].abs() - next) * 100000.0
}

/// The authoritative rotation the daemon stores for a quaternion `[x, y, z, w]` (§6.5
/// "Stable values"): unit length in float32, the largest component positive, the other
/// three on grid points (float32-rounded, so ≥ 0.49 cell from any boundary), the largest
/// derived from them, and the largest at least 0.3 cell above the others. Editors normalize
/// quaternions and convert them to Euler angles or matrices in float32; those errors
/// (≲ 1e-6) stay inside the cells, so equal stored poses hash equal. Moves the rotation by
/// at most ~2e-5 per component. `q` must have a non-zero norm.
pub fn stable_rotation(q: [f64; 4]) -> [f64; 4] {
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let mut u = q.map(|c| c / n);
    let l = largest(&u);
    if u[l] < 0.0 {
        u = u.map(|c| -c);
    }
    let others: Vec<usize> = (0..4).filter(|&i| i != l).collect();
    let base: Vec<i64> = others.iter().map(|&i| quantize(u[i])).collect();
    let build = |d: [i64; 3]| -> [f64; 4] {
        let mut a = [0.0; 4];
        let mut sum = 0.0;
        for k in 0..3 {
            let g = (base[k] + d[k]) as f64 / 100000.0;
            a[others[k]] = g;
            sum += g * g;
        }
        a[l] = (1.0 - sum).max(0.0).sqrt();
        a.map(|c| f32_round(c) + 0.0)
    };
    // Candidates in order of distance from the grid point (0 first, then one step, ...).
    let mut best = build([0, 0, 0]);
    if largest(&best) == l && largest_gap(&best, l) >= 0.3 {
        return best;
    }
    let mut best_gap = largest_gap(&best, l);
    for steps in 1..=3 {
        for dx in -1i64..=1 {
            for dy in -1i64..=1 {
                for dz in -1i64..=1 {
                    if dx.abs() + dy.abs() + dz.abs() != steps {
                        continue;
                    }
                    let a = build([dx, dy, dz]);
                    let gap = largest_gap(&a, l);
                    if largest(&a) == l && gap >= 0.3 {
                        return a;
                    }
                    if gap > best_gap {
                        best = a;
                        best_gap = gap;
                    }
                }
            }
        }
    }
    best
}

/// Canonical JSON: keys sorted by bytes, compact, strings escaped as serde_json does
/// (`"`, `\`, `\b \f \n \r \t`, other controls `\u00xx`), every number quantized.
/// `r` arrays (quaternions `[x,y,z,w]`) are written in their hashed form (`hashed_rotation`).
pub fn canonical_json(state: &Value) -> String {
    let mut out = String::new();
    write_canonical(state, None, &mut out);
    out
}

fn write_canonical(v: &Value, key: Option<&str>, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            let _ = write!(out, "{}", quantize(f));
        }
        Value::String(s) => out.push_str(&serde_json::to_string(s).expect("string serializes")),
        Value::Array(items) => {
            if key == Some("r") {
                if let Some(q) = quaternion(items) {
                    let h = hashed_rotation(q);
                    let _ = write!(out, "[{},{},{},{}]", h[0], h[1], h[2], h[3]);
                    return;
                }
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, None, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("key serializes"));
                out.push(':');
                write_canonical(&map[k.as_str()], Some(k), out);
            }
            out.push('}');
        }
    }
}

fn quaternion(items: &[Value]) -> Option<[f64; 4]> {
    if items.len() != 4 {
        return None;
    }
    let mut q = [0.0; 4];
    for (i, v) in items.iter().enumerate() {
        q[i] = v.as_f64()?;
    }
    Some(q)
}

/// The hashed form of a rotation `[x, y, z, w]` ("smallest three"): `[L, a, b, c]` where `L`
/// is the index of the component with the largest magnitude (ties: lowest index) and `a, b,
/// c` are the quantized other three in index order, negated when component `L` is negative.
/// `q` and `-q` (the same rotation) give the same form, and the dropped component — the one
/// that float32 storage and normalization disturb most, and that is ≥ 0.5 for a unit
/// quaternion — is implied by the others.
pub fn hashed_rotation(q: [f64; 4]) -> [i64; 4] {
    let l = largest(&q);
    let sign = if q[l] < 0.0 { -1.0 } else { 1.0 };
    let mut out = [l as i64, 0, 0, 0];
    let mut k = 1;
    for (i, c) in q.iter().enumerate() {
        if i != l {
            out[k] = quantize(sign * c);
            k += 1;
        }
    }
    out
}

/// Lowercase hex SHA-256 of the canonical JSON (§6.5).
pub fn state_hash(state: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(state).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantize_rounds_half_away_from_zero() {
        assert_eq!(quantize(0.0), 0);
        assert_eq!(quantize(1.0), 100000);
        assert_eq!(quantize(-1.0), -100000);
        assert_eq!(quantize(0.000_015), 2);
        assert_eq!(quantize(-0.000_015), -2);
        assert_eq!(quantize(-0.0), 0);
    }

    #[test]
    fn close_values_hash_equal() {
        let a = json!({"t":[1.0,2.0,3.0]});
        let b = json!({"t":[1.000001,2.0,3.0]});
        assert_eq!(state_hash(&a), state_hash(&b));
        let c = json!({"t":[1.0001,2.0,3.0]});
        assert_ne!(state_hash(&a), state_hash(&c));
    }

    /// A stored value stored again is itself (an editor that sends back what it holds
    /// changes nothing), and it keeps `v`'s cell wherever a float32 lies in it.
    #[test]
    fn stable_scalar_keeps_the_cell_and_is_a_fixed_point() {
        for v in [100.00001, 394.39554, 498.5398559570312, 257.123456, 1234.5678, 99_999.999_99, -394.39554] {
            let s = stable_scalar(v);
            assert_eq!(stable_scalar(s), s, "{v}: {s} moves when stored again");
            assert_eq!(s as f32 as f64, s, "{v}: {s} is a float32");
        }
        assert_eq!(quantize(stable_scalar(100.00001)), quantize(100.00001), "a float32 lies in this cell");
        assert_eq!(quantize(stable_scalar(394.39554)), quantize(394.39554));
        let mut x = 0.5f64;
        while x < 100_000.0 {
            for v in [x, -x, x * 1.000_003_7] {
                let s = stable_scalar(v);
                assert_eq!(stable_scalar(s), s, "{v}: {s} moves when stored again");
                assert!((s - v).abs() <= 0.5e-5 + f64::from(f32::EPSILON) * v.abs(), "{v}: stored as {s}");
            }
            x *= 1.0137;
        }
    }

    #[test]
    fn negated_quaternion_hashes_equal() {
        let a = json!({"r":[0.0,0.2588190451,0.0,0.9659258263]});
        let b = json!({"r":[-0.0,-0.2588190451,-0.0,-0.9659258263]});
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn keys_sorted_and_strings_escaped() {
        let s = json!({"name":"a\"b\\c\n\u{1}é","kind":"object"});
        assert_eq!(canonical_json(&s), "{\"kind\":\"object\",\"name\":\"a\\\"b\\\\c\\n\\u0001é\"}");
    }
}
