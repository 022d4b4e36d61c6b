//! Numerical invariance (seed 002): quantization, canonical JSON and the state hash
//! (docs/PROTOCOL.md §6.4). Python and C# implement the same rules; tests/vectors pins them.

use serde_json::Value;
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

/// The value on the 1e-5 grid that `quantize` maps `v` to. The daemon stores authoritative
/// floats snapped so that a peer that applies them hashes equal.
pub fn snap(v: f64) -> f64 {
    quantize(v) as f64 / 100000.0
}

/// Canonical JSON: keys sorted by bytes, compact, strings escaped as serde_json does
/// (`"`, `\`, `\b \f \n \r \t`, other controls `\u00xx`), every number quantized.
/// `r` arrays (quaternions `[x,y,z,w]`) are sign-canonicalized first (w >= 0).
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
            let canon;
            let items = if key == Some("r") {
                canon = canonical_quaternion(items);
                &canon
            } else {
                items
            };
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

/// q and -q are the same rotation: pick the one with w > 0 (or, when w == 0, whose first
/// non-zero component is positive).
fn canonical_quaternion(items: &[Value]) -> Vec<Value> {
    let nums: Vec<f64> = items.iter().filter_map(|v| v.as_f64()).collect();
    if nums.len() != 4 || items.len() != 4 {
        return items.to_vec();
    }
    let order = [3usize, 0, 1, 2];
    let negate = order.iter().map(|&i| nums[i]).find(|&c| c != 0.0).is_some_and(|c| c < 0.0);
    nums.iter()
        .map(|&c| {
            let c = if negate { -c } else { c };
            serde_json::Number::from_f64(c + 0.0).map(Value::Number).unwrap_or(Value::Null)
        })
        .collect()
}

/// Lowercase hex blake3 of the canonical JSON.
pub fn state_hash(state: &Value) -> String {
    blake3::hash(canonical_json(state).as_bytes()).to_hex().to_string()
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
