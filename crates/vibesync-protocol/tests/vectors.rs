//! Shared test vectors (tests/vectors/*.json): the Rust implementation must agree with them,
//! and they must be exactly what this file generates. Regenerate after an intentional
//! protocol change with `VIBESYNC_REGEN_VECTORS=1 cargo test -p vibesync-protocol --test vectors`
//! and update docs/PROTOCOL.md in the same commit.

use std::path::PathBuf;

use bytes::BytesMut;
use serde_json::{json, Value};
use tokio_util::codec::Decoder;
use vibesync_protocol::coords::{self, Transform};
use vibesync_protocol::frame::{Frame, FrameCodec, FrameError};
use vibesync_protocol::mesh::Mesh;
use vibesync_protocol::message::parse_inbound;
use vibesync_protocol::state::{canonical_json, quantize, stable_rotation, stable_scalar, state_hash};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn raw_frame(total_len: u32, json_len: u32, rest: &[u8]) -> Vec<u8> {
    let mut v = total_len.to_be_bytes().to_vec();
    v.extend_from_slice(&json_len.to_be_bytes());
    v.extend_from_slice(rest);
    v
}

fn ok_frame(name: &str, json_text: &str, attachment: &[u8]) -> Value {
    let bytes = Frame::new(json_text.as_bytes().to_vec(), attachment.to_vec()).to_bytes();
    json!({
        "name": name,
        "hex": hex::encode(&bytes),
        "expect": "ok",
        "message": serde_json::from_str::<Value>(json_text).unwrap(),
        "attachment_hex": hex::encode(attachment),
    })
}

fn err_frame(name: &str, bytes: Vec<u8>, code: &str, layer: &str) -> Value {
    json!({"name": name, "hex": hex::encode(bytes), "expect": "error", "error_code": code, "layer": layer})
}

fn gen_frames() -> Value {
    let hello = r#"{"type":"hello","protocol":1,"project_id":"demo","editor":"blender","editor_version":"4.5.0","client_id":"c1","token":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","unit_scale":1.0,"last_seq":0}"#;
    let register = r#"{"type":"register","request_id":"r1","items":[{"uuid":"6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a","kind":"object","name":"Würfel \"A\"","editor_ref":"OB:Würfel \"A\""}]}"#;
    let ack = r#"{"type":"ack","request_id":"r1","seq":4,"results":[{"uuid":"6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a","status":"registered"}]}"#;
    let error =
        r#"{"type":"error","code":"BAD_MESSAGE","message":"field `items[0].uuid`: invalid type","request_id":"r1"}"#;
    let mesh = cube_mesh().encode();
    let mesh_change = format!(
        r#"{{"type":"change","request_id":"c1","base_seq":4,"changes":[{{"op":"mesh","uuid":"6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a","mesh_hash":"{}"}}]}}"#,
        Mesh::hash_bytes(&mesh)
    );
    let frames = vec![
        ok_frame("ping", r#"{"type":"ping","request_id":"p1"}"#, b""),
        ok_frame("hello", hello, b""),
        ok_frame("register_unicode", register, b""),
        ok_frame("ack", ack, b""),
        ok_frame("error", error, b""),
        ok_frame(
            "welcome",
            r#"{"type":"welcome","session_id":"5b0e8a8c-2f3e-4d6a-8f0e-3c1b2a4d5e6f","daemon_version":"0.1.0","protocol":1,"seq":0,"safe_mode":false}"#,
            b"",
        ),
        ok_frame("attachment_small", r#"{"type":"ping"}"#, &[0x00, 0x01, 0xfe, 0xff]),
        ok_frame("mesh_change_with_attachment", &mesh_change, &mesh),
        err_frame("oversize_length", raw_frame(64 * 1024 * 1024 + 1, 2, b"{}"), "FRAME_TOO_LARGE", "frame"),
        err_frame("oversize_max_u32", raw_frame(u32::MAX, 0, b""), "FRAME_TOO_LARGE", "frame"),
        err_frame("json_len_exceeds_total", raw_frame(10, 20, b"{\"type\":\"p"), "BAD_FRAME", "frame"),
        err_frame("total_len_below_4", vec![0, 0, 0, 2, 0, 0], "BAD_FRAME", "frame"),
        err_frame("zero_length_json", raw_frame(4, 0, b""), "BAD_MESSAGE", "message"),
        err_frame("invalid_json", raw_frame(4 + 8, 8, b"{\"type\":"), "BAD_MESSAGE", "message"),
        err_frame("invalid_utf8", raw_frame(4 + 16, 16, b"{\"type\":\"p\xff\xfeng\"}"), "BAD_MESSAGE", "message"),
        err_frame("not_an_object", raw_frame(4 + 5, 5, b"[1,2]"), "BAD_MESSAGE", "message"),
        err_frame("missing_type", raw_frame(4 + 7, 7, b"{\"a\":1}"), "BAD_MESSAGE", "message"),
        err_frame("type_not_string", raw_frame(4 + 10, 10, b"{\"type\":1}"), "BAD_MESSAGE", "message"),
    ];
    let encode: Vec<Value> = [
        ("ping", r#"{"type":"ping","request_id":"p1"}"#, &b""[..]),
        ("pong", r#"{"type":"pong","request_id":"p1","seq":7}"#, &b""[..]),
        ("with_attachment", r#"{"type":"ping"}"#, &[1u8, 2, 3][..]),
        ("empty_object", "{}", &b""[..]),
    ]
    .iter()
    .map(|(name, j, a)| {
        json!({"name": name, "json": j, "attachment_hex": hex::encode(a),
               "hex": hex::encode(Frame::new(j.as_bytes().to_vec(), a.to_vec()).to_bytes())})
    })
    .collect();
    json!({
        "description": "Frames: u32 BE total_len | u32 BE json_len | JSON | attachment. layer=frame errors close the connection; layer=message errors are answered and the connection stays usable. Decode each hex whole and split byte by byte.",
        "max_frame_bytes": 67108864,
        "frames": frames,
        "encode": encode,
    })
}

fn cube_mesh() -> Mesh {
    let p = [
        [-1.0, -1.0, -1.0],
        [1.0, -1.0, -1.0],
        [1.0, 1.0, -1.0],
        [-1.0, 1.0, -1.0],
        [-1.0, -1.0, 1.0],
        [1.0, -1.0, 1.0],
        [1.0, 1.0, 1.0],
        [-1.0, 1.0, 1.0],
    ];
    Mesh {
        positions: p.to_vec(),
        normals: None,
        uv0: None,
        indices: vec![
            0, 2, 1, 0, 3, 2, 4, 5, 6, 4, 6, 7, 0, 1, 5, 0, 5, 4, 2, 3, 7, 2, 7, 6, 1, 2, 6, 1, 6, 5, 0, 4, 7, 0, 7, 3,
        ],
    }
}

#[allow(clippy::approx_constant)] // deliberate: values near well-known constants
fn gen_quantize() -> Value {
    let vs = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        1e-5,
        -1e-5,
        4e-6,
        5e-6,
        6e-6,
        1.5e-5,
        -1.5e-5,
        1.234565,
        -1.234565,
        0.1 + 0.2,
        3.14159265358979,
        -2.718281828459045,
        123456.789012,
        -98765.4321,
        1e-9,
        0.7071067811865476,
        1e9,
    ];
    Value::Array(vs.iter().map(|&v| json!({"v": v, "q": quantize(v)})).collect())
}

fn gen_state_hash() -> Value {
    let half = 15f64.to_radians();
    let states = vec![
        (
            "cube",
            json!({"kind":"object","name":"Cube","parent":null,"visible":true,"t":[1.0,3.0,-2.0],"r":[0.0,half.sin(),0.0,half.cos()],"s":[2.0,2.0,2.0]}),
        ),
        (
            "cube_within_epsilon",
            json!({"kind":"object","name":"Cube","parent":null,"visible":true,"t":[1.000001,2.999999,-2.000002],"r":[0.0,half.sin(),0.0,half.cos()],"s":[2.0,2.0,2.0]}),
        ),
        (
            "negated_quaternion",
            json!({"kind":"object","name":"Cube","parent":null,"visible":true,"t":[1.0,3.0,-2.0],"r":[-0.0,-half.sin(),-0.0,-half.cos()],"s":[2.0,2.0,2.0]}),
        ),
        (
            "names_escaped",
            json!({"kind":"object","name":"a\"b\\c\nd\te\u{1}f/é漢🙂","parent":"6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a","visible":false,"t":[-0.5,0.25,1e-6],"r":[0.0,0.0,0.0,1.0],"s":[-1.0,1.0,1.0]}),
        ),
        (
            "with_mesh_and_material",
            json!({"kind":"object","name":"Mat","parent":null,"visible":true,"t":[0.0,0.0,0.0],"r":[0.0,0.0,0.0,1.0],"s":[1.0,1.0,1.0],"mesh_hash": Mesh::hash_bytes(&cube_mesh().encode()),"material":{"base_color":[0.8,0.1,0.1,1.0],"metallic":0.5,"roughness":0.25,"emission":[0.0,0.0,0.0]}}),
        ),
        (
            "w_zero_quaternion",
            json!({"kind":"object","name":"Flip","parent":null,"visible":true,"t":[0.0,0.0,0.0],"r":[0.0,-1.0,0.0,0.0],"s":[1.0,1.0,1.0]}),
        ),
        (
            "w_tiny_negative_same_rotation",
            json!({"kind":"object","name":"Flip","parent":null,"visible":true,"t":[0.0,0.0,0.0],"r":[0.0,1.0,0.0,-1e-7],"s":[1.0,1.0,1.0]}),
        ),
        (
            "largest_is_x",
            json!({"kind":"object","name":"X","parent":null,"visible":true,"t":[1234.5678,-0.00001,0.000005],"r":[-0.9,0.3,-0.1,0.3],"s":[1.0,1.0,1.0]}),
        ),
    ];
    Value::Array(
        states
            .into_iter()
            .map(|(name, s)| json!({"name": name, "state": s, "canonical": canonical_json(&s), "hash": state_hash(&s)}))
            .collect(),
    )
}

/// Stable values (PROTOCOL §6.5): what the daemon stores for given inputs, and the state hash
/// an editor must compute after storing and reading them back. A fixed pseudo-random
/// sequence (no RNG dependency) of rotations, positions up to 100 km and scales.
fn gen_stable() -> Value {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut cases = Vec::new();
    for i in 0..500 {
        let mut r = [next(), next(), next(), next()];
        match i % 5 {
            0 => r[3] *= 1e-5,                                     // near 180°
            1 => r = [r[0] * 1e-3, r[1] * 1e-3, r[2] * 1e-3, 1.0], // near identity
            _ => {}
        }
        let mag = [1.0, 10.0, 1000.0, 100_000.0][i % 4];
        let t = [next() * mag, next() * mag, next() * mag];
        let s = [next() * 4.0, next() * 4.0 + 4.1, 1.0];
        let (t, r, s) = (t.map(stable_scalar), stable_rotation(r), s.map(stable_scalar));
        let st = json!({"kind":"object","name":format!("o{i}"),"parent":null,"visible":true,"t":t,"r":r,"s":s});
        cases.push(json!({"t": t, "r": r, "s": s, "hash": state_hash(&st)}));
    }
    json!({
        "description": "Authoritative (stable) values the daemon stores; an editor that stores t, r, s in its own fields and reads them back must hash {kind:object,name:o<index>,parent:null,visible:true,t,r,s} to `hash`. Canonical frame, meters.",
        "cases": cases,
    })
}

/// The wire vocabulary (D6): every name of docs/PROTOCOL.md the three implementations spell.
fn gen_names() -> Value {
    use vibesync_protocol::names::*;
    use vibesync_protocol::{ErrorCode, ItemErrorCode};
    fn names<T: Copy + std::fmt::Display>(all: &[T]) -> Value {
        Value::Array(all.iter().map(|v| Value::String(v.to_string())).collect())
    }
    json!({
        "description": "The wire vocabulary of docs/PROTOCOL.md, generated from the enums of crates/vibesync-protocol (names.rs, error.rs), which per-item refusals an editor keeps a change under (`kept_by_editor`, §6.1), and `optional_fields`: the fields a message of a type may lack in some case the protocol names (e.g. `batch_result`'s `through`, absent only from the `dropped` result of a self-delete, §6.4; every other result carries it). Python (addons/blender/vibesync/wire.py) and C# (Runtime/Core) check their names against this file.",
        "message_types": MessageType::ALL.iter().map(|t| json!({"type": t.as_str(), "direction": t.direction().as_str()})).collect::<Vec<_>>(),
        "error_codes": ErrorCode::ALL.iter().map(|c| json!({"code": c.as_str(), "closes_connection": c.closes_connection()})).collect::<Vec<_>>(),
        "item_error_codes": names(&ItemErrorCode::ALL),
        // The per-item refusals an editor keeps a person's change under, marked not synced
        // (docs/PROTOCOL.md §6.1): Blender's `engine.refusal`, Unity's `KeptWhenRefused`.
        "kept_by_editor": names(&ItemErrorCode::ALL.iter().copied().filter(|c| c.kept_by_editor()).collect::<Vec<_>>()),
        "item_statuses": names(ItemStatus::ALL),
        "batch_outcomes": names(BatchOutcome::ALL),
        "rollback_codes": names(RollbackCode::ALL),
        "path_kinds": names(PathKind::ALL),
        "client_kinds": ClientKind::ALL.iter().map(|k| json!({"kind": k.as_str(), "holds_scene": k.holds_scene()})).collect::<Vec<_>>(),
        "entity_kinds": EntityKind::ALL.iter().map(|k| json!({"kind": k.as_str(), "synced_state": k.has_synced_state()})).collect::<Vec<_>>(),
        "change_ops": ChangeOpKind::ALL.iter().map(|o| json!({"op": o.as_str(), "path": o.path().as_str()})).collect::<Vec<_>>(),
        "admin_actions": names(AdminAction::ALL),
        "editor_run_states": names(EditorRunState::ALL),
        "optional_fields": OPTIONAL_FIELDS.iter().map(|(t, f)| json!({"type": t.as_str(), "fields": f})).collect::<Vec<_>>(),
    })
}

fn t_json(t: &Transform) -> Value {
    json!({"t": t.t, "r": t.r, "s": t.s})
}

fn gen_coords() -> Value {
    let h = 15f64.to_radians();
    let s45 = (22.5f64).to_radians();
    let cases = vec![
        ("cube_e2e_1", 1.0, Transform { t: [1.0, 2.0, 3.0], r: [0.0, 0.0, h.sin(), h.cos()], s: [2.0, 2.0, 2.0] }),
        ("identity", 1.0, Transform { t: [0.0, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0, 1.0, 1.0] }),
        ("rot_x_45", 1.0, Transform { t: [-4.5, 0.25, 10.0], r: [s45.sin(), 0.0, 0.0, s45.cos()], s: [1.0, 2.0, 3.0] }),
        (
            "mirrored_scale",
            1.0,
            Transform { t: [1.0, -2.0, 0.5], r: [0.1, 0.2, 0.3, (1.0f64 - 0.14).sqrt()], s: [-1.0, 1.0, 2.0] },
        ),
        ("centimeter_scene", 0.01, Transform { t: [100.0, 200.0, 300.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0, 1.0, 1.0] }),
    ];
    Value::Array(
        cases
            .into_iter()
            .map(|(name, unit, b)| {
                let c = coords::blender_to_canonical(&b, unit);
                let u = coords::canonical_to_unity(&c);
                json!({"name": name, "blender_unit_scale": unit, "blender": t_json(&b), "canonical": t_json(&c), "unity": t_json(&u)})
            })
            .collect(),
    )
}

fn gen_mesh() -> Value {
    let bytes = cube_mesh().encode();
    json!([{"name": "cube_8v_12t", "vertex_count": 8, "index_count": 36, "flags": 0,
            "hex": hex::encode(&bytes), "mesh_hash": Mesh::hash_bytes(&bytes)}])
}

fn all_files() -> Vec<(&'static str, Value)> {
    vec![
        ("frames.json", gen_frames()),
        ("quantize.json", gen_quantize()),
        ("state_hash.json", gen_state_hash()),
        ("stable.json", gen_stable()),
        ("names.json", gen_names()),
        ("coords.json", gen_coords()),
        ("mesh.json", gen_mesh()),
    ]
}

#[test]
fn committed_vectors_match_the_generator() {
    let dir = vectors_dir();
    let regen = std::env::var("VIBESYNC_REGEN_VECTORS").is_ok();
    for (name, value) in all_files() {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        if regen {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate with VIBESYNC_REGEN_VECTORS=1", path.display()));
        assert_eq!(committed, text, "{name} differs from the generator; regenerate deliberately");
    }
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(name)).unwrap()).unwrap()
}

/// Decode feeding the given chunk size; returns the first frame or the frame error.
fn decode_chunked(bytes: &[u8], chunk: usize, max: u32) -> Result<Option<Frame>, FrameError> {
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        if let Some(f) = codec.decode(&mut buf)? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

#[test]
fn frames_decode_as_the_vectors_say() {
    let v = load("frames.json");
    let max = v["max_frame_bytes"].as_u64().unwrap() as u32;
    for f in v["frames"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let bytes = hex::decode(f["hex"].as_str().unwrap()).unwrap();
        for chunk in [bytes.len().max(1), 1, 3] {
            let out = decode_chunked(&bytes, chunk, max);
            match (f["expect"].as_str().unwrap(), f["layer"].as_str()) {
                ("ok", _) => {
                    let frame = out.unwrap().unwrap_or_else(|| panic!("{name}: no frame"));
                    let msg: Value = serde_json::from_slice(&frame.json).unwrap();
                    assert_eq!(msg, f["message"], "{name}");
                    assert_eq!(hex::encode(&frame.attachment), f["attachment_hex"].as_str().unwrap());
                }
                ("error", Some("frame")) => {
                    let code = match out {
                        Err(FrameError::TooLarge { .. }) => "FRAME_TOO_LARGE",
                        Err(FrameError::BadFrame { .. }) => "BAD_FRAME",
                        other => panic!("{name}: expected a frame error, got {other:?}"),
                    };
                    assert_eq!(code, f["error_code"], "{name}");
                }
                ("error", Some("message")) => {
                    let frame = out.unwrap().unwrap();
                    let err = parse_inbound(&frame.json).unwrap_err();
                    assert_eq!(err.code.as_str(), f["error_code"], "{name}");
                }
                other => panic!("bad vector {name}: {other:?}"),
            }
        }
    }
    for e in v["encode"].as_array().unwrap() {
        let bytes = Frame::new(
            e["json"].as_str().unwrap().as_bytes().to_vec(),
            hex::decode(e["attachment_hex"].as_str().unwrap()).unwrap(),
        )
        .to_bytes();
        assert_eq!(hex::encode(bytes), e["hex"].as_str().unwrap());
    }
}

#[test]
fn state_hashes_match_and_epsilon_cases_agree() {
    let v = load("state_hash.json");
    let by_name = |n: &str| v.as_array().unwrap().iter().find(|x| x["name"] == n).unwrap()["hash"].clone();
    assert_eq!(by_name("cube"), by_name("cube_within_epsilon"));
    assert_eq!(by_name("cube"), by_name("negated_quaternion"));
    for case in v.as_array().unwrap() {
        assert_eq!(canonical_json(&case["state"]), case["canonical"].as_str().unwrap());
        assert_eq!(state_hash(&case["state"]), case["hash"].as_str().unwrap());
    }
}

/// Every name of the vocabulary is spelled in docs/PROTOCOL.md (the document is the contract).
#[test]
fn every_name_is_in_the_protocol_document() {
    let doc = std::fs::read_to_string(vectors_dir().join("../../docs/PROTOCOL.md")).unwrap();
    let names = load("names.json");
    let mut missing = Vec::new();
    for (key, list) in names.as_object().unwrap() {
        let Some(list) = list.as_array() else { continue };
        for v in list {
            let name = match v {
                Value::String(s) => s.clone(),
                Value::Object(o) => ["type", "code", "kind", "op"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str))
                    .unwrap_or_default()
                    .to_string(),
                _ => continue,
            };
            if !name.is_empty() && !doc.contains(&format!("`{name}`")) && !doc.contains(&format!("\"{name}\"")) {
                missing.push(format!("{key}: {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "names.json names missing from docs/PROTOCOL.md: {missing:?}");
}
