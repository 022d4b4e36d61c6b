//! Live sync, the pure part (docs/PROTOCOL.md §6): the synced state of an object, validation
//! of incoming changes (zero trust, unit normalization), applying a change to a state,
//! coalescing a window of changes, path selection, and the batch window itself.
//!
//! Time is passed in (`now_ms`), never read, so tests run with paused time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vibesync_protocol::message::ItemResult;
use vibesync_protocol::names::ChangeOpKind;
use vibesync_protocol::state::{stable_rotation, stable_scalar, state_hash};
use vibesync_protocol::validate::{self, ItemError};
use vibesync_protocol::ItemErrorCode;

/// The synced state of one object (or collection), canonical frame, meters, every float a
/// stable value (docs/PROTOCOL.md §6.5). Serialized, it is exactly the object hashed by the state hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    pub kind: String,
    pub name: String,
    pub parent: Option<String>,
    pub visible: bool,
    pub t: [f64; 3],
    pub r: [f64; 4],
    pub s: [f64; 3],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<Material>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Material {
    pub base_color: [f64; 4],
    pub metallic: f64,
    pub roughness: f64,
    pub emission: [f64; 3],
}

impl ObjectState {
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("state serializes")
    }
    pub fn hash(&self) -> String {
        state_hash(&self.to_value())
    }
}

/// A pose: translation, rotation (a unit quaternion `[x, y, z, w]`) and scale, in the
/// canonical frame (docs/PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub t: [f64; 3],
    pub r: [f64; 4],
    pub s: [f64; 3],
}

impl Pose {
    pub const IDENTITY: Pose = Pose { t: [0.0; 3], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] };

    /// The local pose a state holds.
    pub fn of(st: &ObjectState) -> Pose {
        Pose { t: st.t, r: st.r, s: st.s }
    }

    /// `local` (a pose relative to this one) in this pose's frame: where an object posed
    /// `local` under a parent standing at `self` stands in the world. Scale composes per axis,
    /// as the editors' own "keep the world transform" does when a parent goes (a rotated
    /// non-uniform scale has no exact per-axis form; both editors approximate it so too).
    pub fn then(&self, local: &Pose) -> Pose {
        let scaled = [self.s[0] * local.t[0], self.s[1] * local.t[1], self.s[2] * local.t[2]];
        let moved = rotate(self.r, scaled);
        Pose {
            t: [self.t[0] + moved[0], self.t[1] + moved[1], self.t[2] + moved[2]],
            r: normalized(quat_mul(self.r, local.r)),
            s: [self.s[0] * local.s[0], self.s[1] * local.s[1], self.s[2] * local.s[2]],
        }
    }
}

impl Pose {
    /// This pose as the daemon stores it: every float a stable value (docs/PROTOCOL.md §6.5),
    /// as an editor's change is once read. A pose the daemon computes itself (an object moved
    /// to the root where it stands in the world) is made so before it is carried or stored.
    pub fn stable(&self) -> Pose {
        Pose { t: self.t.map(stable_scalar), r: stable_rotation(self.r), s: self.s.map(stable_scalar) }
    }

    /// Both poses put an object at the same place, to the precision an editor stores one
    /// (float32, composed in the editor's own maths): each translation and scale component
    /// within 1e-4 (relative, over 1), the rotations within 1e-4 per component (`q` and `-q`
    /// are one rotation).
    pub fn near(&self, other: &Pose) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0);
        let rot = |sign: f64| self.r.iter().zip(other.r).all(|(a, b)| (a - sign * b).abs() <= 1e-4);
        self.t.iter().zip(other.t).all(|(a, b)| close(*a, b))
            && self.s.iter().zip(other.s).all(|(a, b)| close(*a, b))
            && (rot(1.0) || rot(-1.0))
    }

    /// The pose that undoes this one: `self.inverse().then(&self.then(&local))` is `local`
    /// (exactly for a uniform scale; per axis, as [`Pose::then`] composes, otherwise). A zero
    /// scale has no inverse: that axis stays 0.
    pub fn inverse(&self) -> Pose {
        let r = [-self.r[0], -self.r[1], -self.r[2], self.r[3]];
        let s = self.s.map(|c| if c != 0.0 && c.is_finite() { 1.0 / c } else { 0.0 });
        let back = rotate(r, self.t);
        Pose { t: [-s[0] * back[0], -s[1] * back[1], -s[2] * back[2]], r: normalized(r), s }
    }
}

/// A pose's components as a transform writes them: `t`, `r`, `s` (bits of a `u8`).
pub mod pose_part {
    pub const T: u8 = 1;
    pub const R: u8 = 1 << 1;
    pub const S: u8 = 1 << 2;
    pub const ALL: u8 = T | R | S;
}

impl Pose {
    /// Which components of this pose differ from `was`'s ([`pose_part`] bits): those whose
    /// values hash differently (docs/PROTOCOL.md §6.5: each number on the 1e-5 grid; a
    /// rotation and its negation are one).
    pub fn changed_from(&self, was: &Pose) -> u8 {
        use vibesync_protocol::state::quantize;
        let differ = |a: &[f64], b: &[f64]| a.iter().zip(b).any(|(x, y)| quantize(*x) != quantize(*y));
        let mut out = 0;
        if differ(&self.t, &was.t) {
            out |= pose_part::T;
        }
        if differ(&stable_rotation(self.r), &stable_rotation(was.r)) {
            out |= pose_part::R;
        }
        if differ(&self.s, &was.s) {
            out |= pose_part::S;
        }
        out
    }

    /// This pose with the components in `parts` ([`pose_part`] bits) taken from `other`.
    pub fn with_parts(&self, other: &Pose, parts: u8) -> Pose {
        let mut out = *self;
        if parts & pose_part::T != 0 {
            out.t = other.t;
        }
        if parts & pose_part::R != 0 {
            out.r = other.r;
        }
        if parts & pose_part::S != 0 {
            out.s = other.s;
        }
        out
    }

    /// The pose an object holds after `last`, its window's last `transform`, when other
    /// editors moved it concurrently in the window (`others`: their earlier poses that
    /// `last`'s editor had not seen, in arrival order), every one made over `was`, the pose it
    /// had before the window, under the same parent (docs/PROTOCOL.md §6.2): each component
    /// (`t`, `r`, `s`) is the one of the last of them that changed it from `was` — so a scale
    /// made in one editor and a move made in the other both stand. A `last` that changed
    /// nothing from `was` stands whole (it moved the object back where it was).
    pub fn merged(last: &Pose, others: &[Pose], was: &Pose) -> Pose {
        Pose::merged_made(last, last.made_from(was, &[]), others, was)
    }

    /// The parts of this pose its editor made over `was` ([`pose_part`] bits): those it
    /// holds differently, less those it holds as another editor's pose it had seen (a live
    /// preview it applied, §6.3, `seen`) — a value taken from there, not one it made. All
    /// three when it changed none (it moved the object back, an undo): it stands whole.
    pub fn made_from(&self, was: &Pose, seen: &[Pose]) -> u8 {
        match self.changed_from(was) {
            0 => pose_part::ALL,
            m => seen.iter().fold(m, |m, p| m & self.changed_from(p)),
        }
    }

    /// [`Pose::merged`] with the parts `last`'s editor made ([`Pose::made_from`]).
    pub fn merged_made(last: &Pose, mine: u8, others: &[Pose], was: &Pose) -> Pose {
        let mut out = *last;
        for part in [pose_part::T, pose_part::R, pose_part::S] {
            if mine & part != 0 {
                continue;
            }
            if let Some(o) = others.iter().rev().find(|o| o.changed_from(was) & part != 0) {
                match part {
                    pose_part::T => out.t = o.t,
                    pose_part::R => out.r = o.r,
                    _ => out.s = o.s,
                }
            }
        }
        out
    }
}

/// `a * b` (`b` first, then `a`), quaternions `[x, y, z, w]`.
fn quat_mul(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    let [ax, ay, az, aw] = a;
    let [bx, by, bz, bw] = b;
    [
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ]
}

fn normalized(q: [f64; 4]) -> [f64; 4] {
    let n = q.iter().map(|c| c * c).sum::<f64>().sqrt();
    if n > 0.0 && n.is_finite() {
        q.map(|c| c / n)
    } else {
        Pose::IDENTITY.r
    }
}

/// `v` rotated by the unit quaternion `q`.
fn rotate(q: [f64; 4], v: [f64; 3]) -> [f64; 3] {
    let p = quat_mul(quat_mul(q, [v[0], v[1], v[2], 0.0]), [-q[0], -q[1], -q[2], q[3]]);
    [p[0], p[1], p[2]]
}

/// One validated change. Lengths are meters (normalized with the sender's unit scale).
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeOp {
    Create(ObjectState),
    Delete,
    Reparent(Option<String>),
    Mesh(String),
    /// The object's first material (`None`: it has none any more — the slot emptied, §6.1).
    Material(Option<Material>),
    Transform {
        t: [f64; 3],
        r: [f64; 4],
        s: [f64; 3],
    },
    Rename(String),
    Visibility(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub uuid: String,
    pub op: ChangeOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Fast,
    Slow,
}

impl Path {
    /// The wire `batch_begin.path` of this path.
    pub fn kind(self) -> vibesync_protocol::PathKind {
        match self {
            Path::Fast => vibesync_protocol::PathKind::Fast,
            Path::Slow => vibesync_protocol::PathKind::Slow,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Path::Fast => "fast",
            Path::Slow => "slow",
        }
    }
}

impl ChangeOp {
    /// Where the op leaves the object's parent: `Some(parent)` for a `reparent` or `create`
    /// (`Some(None)`: a root), `Some(None)` for a `delete` (under nothing any more), `None`
    /// for an op that does not touch the parent.
    pub fn parent_after(&self) -> Option<Option<&str>> {
        match self {
            ChangeOp::Reparent(p) => Some(p.as_deref()),
            ChangeOp::Create(st) => Some(st.parent.as_deref()),
            ChangeOp::Delete => Some(None),
            _ => None,
        }
    }

    /// The op's wire name (`change.changes[].op`).
    pub fn kind(&self) -> ChangeOpKind {
        match self {
            ChangeOp::Create(_) => ChangeOpKind::Create,
            ChangeOp::Delete => ChangeOpKind::Delete,
            ChangeOp::Reparent(_) => ChangeOpKind::Reparent,
            ChangeOp::Mesh(_) => ChangeOpKind::Mesh,
            ChangeOp::Material(_) => ChangeOpKind::Material,
            ChangeOp::Transform { .. } => ChangeOpKind::Transform,
            ChangeOp::Rename(_) => ChangeOpKind::Rename,
            ChangeOp::Visibility(_) => ChangeOpKind::Visibility,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn path(&self) -> Path {
        match self {
            ChangeOp::Transform { .. } | ChangeOp::Rename(_) | ChangeOp::Visibility(_) => Path::Fast,
            _ => Path::Slow,
        }
    }

    /// The mesh this change references, if any.
    pub fn mesh_hash(&self) -> Option<&str> {
        match self {
            ChangeOp::Create(s) => s.mesh_hash.as_deref(),
            ChangeOp::Mesh(h) => Some(h),
            _ => None,
        }
    }
}

fn err(code: ItemErrorCode, msg: impl Into<String>) -> ItemError {
    ItemError::new(code, msg)
}

fn field<'a>(c: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a Value, ItemError> {
    c.get(name).ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}.{name}: missing")))
}

/// A finite number within ±1e9. `at` names the field in an error; it is only built on
/// one (every dragged transform has ten numbers).
fn num(v: &Value, at: impl Fn() -> String) -> Result<f64, ItemError> {
    let f = v.as_f64().ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{}: must be a number", at())))?;
    if !f.is_finite() {
        validate::finite(&at(), f)?;
    }
    if f.abs() > 1e9 {
        return Err(err(ItemErrorCode::InvalidField, format!("{}: {f} is out of range (|v| <= 1e9)", at())));
    }
    Ok(f)
}

fn vec<const N: usize>(c: &Map<String, Value>, name: &str, at: &str) -> Result<[f64; N], ItemError> {
    let a = field(c, name, at)?
        .as_array()
        .filter(|a| a.len() == N)
        .ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}.{name}: must be an array of {N} numbers")))?;
    let mut out = [0.0; N];
    for (i, v) in a.iter().enumerate() {
        out[i] = num(v, || format!("{at}.{name}[{i}]"))?;
    }
    Ok(out)
}

fn string(c: &Map<String, Value>, name: &str, at: &str) -> Result<String, ItemError> {
    field(c, name, at)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}.{name}: must be a string")))
}

fn parent(c: &Map<String, Value>, at: &str) -> Result<Option<String>, ItemError> {
    match field(c, "parent", at)? {
        Value::Null => Ok(None),
        Value::String(p) => {
            validate::uuid(p).map_err(|e| err(e.code, format!("{at}.parent: {}", e.message)))?;
            Ok(Some(p.clone()))
        }
        _ => Err(err(ItemErrorCode::InvalidField, format!("{at}.parent: must be a uuid or null"))),
    }
}

fn hash_field(c: &Map<String, Value>, at: &str) -> Result<String, ItemError> {
    let h = string(c, "mesh_hash", at)?;
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(err(ItemErrorCode::InvalidField, format!("{at}.mesh_hash: must be 64 lowercase hex chars")));
    }
    Ok(h)
}

fn material(v: &Value, at: &str) -> Result<Material, ItemError> {
    let m = v.as_object().ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}: must be an object")))?;
    let m = Material {
        base_color: vec::<4>(m, "base_color", at)?,
        metallic: num(field(m, "metallic", at)?, || format!("{at}.metallic"))?,
        roughness: num(field(m, "roughness", at)?, || format!("{at}.roughness"))?,
        emission: vec::<3>(m, "emission", at)?,
    };
    Ok(snap_material(m))
}

fn snap_material(m: Material) -> Material {
    Material {
        base_color: m.base_color.map(stable_scalar),
        metallic: stable_scalar(m.metallic),
        roughness: stable_scalar(m.roughness),
        emission: m.emission.map(stable_scalar),
    }
}

/// Translation, rotation quaternion `[x,y,z,w]`, scale.
type Trs = ([f64; 3], [f64; 4], [f64; 3]);

/// The ancestor chain that makes `uuid` under `new_parent` a cycle (`new_parent` …
/// `uuid`), if any, walking `parent_of` (the authoritative parents). Bounded: a chain longer
/// than 100,000 (or one that loops without reaching `uuid`) is not reported here.
pub fn parent_cycle(uuid: &str, new_parent: &str, parent_of: impl Fn(&str) -> Option<String>) -> Option<Vec<String>> {
    let mut chain = vec![new_parent.to_string()];
    let mut cur = new_parent.to_string();
    for _ in 0..100_000 {
        if cur == uuid {
            return Some(chain);
        }
        cur = parent_of(&cur)?;
        chain.push(cur.clone());
    }
    None
}

/// Parse and validate one change from an editor. `unit_scale` = meters per sender unit.
/// `at` names the change in error messages (e.g. `changes[2]`).
pub fn parse_change(v: &Value, unit_scale: f64, at: &str) -> Result<Change, ItemError> {
    let c = v.as_object().ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}: must be an object")))?;
    let uuid = string(c, "uuid", at)?;
    validate::uuid(&uuid).map_err(|e| err(e.code, format!("{at}.uuid: {}", e.message)))?;
    let op_name = string(c, "op", at)?;
    let trs = |c: &Map<String, Value>| -> Result<Trs, ItemError> {
        let t = vec::<3>(c, "t", at)?.map(|x| stable_scalar(x * unit_scale));
        let r = vec::<4>(c, "r", at)?;
        let n = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3]).sqrt();
        if !(0.5..=1.5).contains(&n) {
            return Err(err(
                ItemErrorCode::InvalidField,
                format!("{at}.r: quaternion [x,y,z,w] must be (close to) unit length, got norm {n}"),
            ));
        }
        Ok((t, stable_rotation(r), vec::<3>(c, "s", at)?.map(stable_scalar)))
    };
    let op = match op_name.as_str() {
        "create" => {
            let kind = string(c, "kind", at)?;
            if !matches!(kind.as_str(), "object" | "collection") {
                return Err(err(ItemErrorCode::UnknownKind, format!("{at}.kind: `{}` has no synced state; sync `object` or `collection`", validate::truncate_for_message(&kind))));
            }
            let name = string(c, "name", at)?;
            validate::name(&name).map_err(|e| err(e.code, format!("{at}.name: {}", e.message)))?;
            let (t, r, s) = trs(c)?;
            let visible = match c.get("visible") {
                None => true,
                Some(v) => v.as_bool().ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}.visible: must be a boolean")))?,
            };
            let mesh_hash = match c.get("mesh_hash") {
                None | Some(Value::Null) => None,
                Some(_) => Some(hash_field(c, at)?),
            };
            let material = match c.get("material") {
                None | Some(Value::Null) => None,
                Some(m) => Some(material(m, &format!("{at}.material"))?),
            };
            ChangeOp::Create(ObjectState { kind, name, parent: parent(c, at)?, visible, t, r, s, mesh_hash, material })
        }
        "delete" => ChangeOp::Delete,
        "reparent" => ChangeOp::Reparent(parent(c, at)?),
        "mesh" => ChangeOp::Mesh(hash_field(c, at)?),
        // `null` clears the material (§6.1); the field itself is required.
        "material" => ChangeOp::Material(match field(c, "material", at)? {
            Value::Null => None,
            m => Some(material(m, &format!("{at}.material"))?),
        }),
        "transform" => {
            let (t, r, s) = trs(c)?;
            ChangeOp::Transform { t, r, s }
        }
        "rename" => {
            let name = string(c, "name", at)?;
            validate::name(&name).map_err(|e| err(e.code, format!("{at}.name: {}", e.message)))?;
            ChangeOp::Rename(name)
        }
        "visibility" => ChangeOp::Visibility(
            field(c, "visible", at)?.as_bool().ok_or_else(|| err(ItemErrorCode::InvalidField, format!("{at}.visible: must be a boolean")))?,
        ),
        other => {
            return Err(err(ItemErrorCode::InvalidField, format!("{at}.op: unknown op `{}`; one of create, delete, reparent, mesh, material, transform, rename, visibility", validate::truncate_for_message(other))))
        }
    };
    if let (ChangeOp::Reparent(Some(p)), u) | (ChangeOp::Create(ObjectState { parent: Some(p), .. }), u) = (&op, &uuid)
    {
        if p == u {
            return Err(err(ItemErrorCode::InvalidField, format!("{at}.parent: an object cannot be its own parent")));
        }
    }
    Ok(Change { uuid, op })
}

/// Parse every change of one `change` request (zero trust, docs/PROTOCOL.md §6.1) from an
/// editor whose lengths are `unit_scale` meters: each a valid change, or the error result
/// its `ack` carries (naming the uuid as sent, shortened). Done by the session that read the
/// request, so the project's sync actor — the serial step — gets typed changes.
pub fn parse_changes(raw: &[Value], unit_scale: f64) -> Vec<Result<Change, ItemResult>> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            parse_change(v, unit_scale, &format!("changes[{i}]")).map_err(|e| {
                let shown =
                    v.get("uuid").and_then(Value::as_str).map(validate::truncate_for_message).unwrap_or_default();
                ItemResult::error(shown, e.code, e.message)
            })
        })
        .collect()
}

/// Apply a change to the current authoritative state. `None` in = no state yet;
/// `Ok(None)` out = deleted.
pub fn apply_change(current: Option<&ObjectState>, op: &ChangeOp) -> Result<Option<ObjectState>, ItemError> {
    if let ChangeOp::Create(s) = op {
        return Ok(Some(s.clone()));
    }
    let Some(cur) = current else {
        return Err(err(
            ItemErrorCode::NotFound,
            format!("no synced state for this uuid; send `create` before `{}`", op.name()),
        ));
    };
    let mut next = cur.clone();
    match op {
        ChangeOp::Create(_) => unreachable!(),
        ChangeOp::Delete => return Ok(None),
        ChangeOp::Reparent(p) => next.parent = p.clone(),
        ChangeOp::Mesh(h) => next.mesh_hash = Some(h.clone()),
        ChangeOp::Material(m) => next.material = m.clone(),
        ChangeOp::Transform { t, r, s } => {
            next.t = *t;
            next.r = *r;
            next.s = *s;
        }
        ChangeOp::Rename(n) => next.name = n.clone(),
        ChangeOp::Visibility(v) => next.visible = *v,
    }
    Ok(Some(next))
}

/// The wire form of a change for a receiver with `unit_scale` (meters per its unit), as a
/// JSON value (what [`WireChange`] serializes to).
pub fn change_to_wire(uuid: &str, op: &ChangeOp, unit_scale: f64) -> Value {
    serde_json::to_value(WireChange { uuid, op, unit_scale }).expect("a change serializes")
}

/// A change as the wire carries it (`apply.change`, `live.change`, docs/PROTOCOL.md §6.1,
/// §6.3), lengths in the receiver's units (`unit_scale`: meters per its unit). Serialized
/// straight into a frame, with no `serde_json::Value` built on the way: a drag forwards
/// one per object, receiver and editor frame. Keys come in sorted order, as in a `Value`
/// of it, so [`change_to_wire`] and a frame holding a `WireChange` are the same bytes.
pub struct WireChange<'a> {
    pub uuid: &'a str,
    pub op: &'a ChangeOp,
    pub unit_scale: f64,
}

impl Serialize for WireChange<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let t_out = |t: &[f64; 3]| t.map(|x| x / self.unit_scale);
        let op = self.op.kind();
        let mut m = ser.serialize_map(None)?;
        match self.op {
            ChangeOp::Create(s) => {
                m.serialize_entry("kind", &s.kind)?;
                if let Some(mat) = &s.material {
                    m.serialize_entry("material", &SortedMaterial(mat))?;
                }
                if let Some(h) = &s.mesh_hash {
                    m.serialize_entry("mesh_hash", h)?;
                }
                m.serialize_entry("name", &s.name)?;
                m.serialize_entry("op", &op)?;
                m.serialize_entry("parent", &s.parent)?;
                m.serialize_entry("r", &s.r)?;
                m.serialize_entry("s", &s.s)?;
                m.serialize_entry("t", &t_out(&s.t))?;
                m.serialize_entry("uuid", self.uuid)?;
                m.serialize_entry("visible", &s.visible)?;
            }
            ChangeOp::Delete => {
                m.serialize_entry("op", &op)?;
                m.serialize_entry("uuid", self.uuid)?;
            }
            ChangeOp::Reparent(p) => {
                m.serialize_entry("op", &op)?;
                m.serialize_entry("parent", p)?;
                m.serialize_entry("uuid", self.uuid)?;
            }
            ChangeOp::Mesh(h) => {
                m.serialize_entry("mesh_hash", h)?;
                m.serialize_entry("op", &op)?;
                m.serialize_entry("uuid", self.uuid)?;
            }
            ChangeOp::Material(mat) => {
                m.serialize_entry("material", &mat.as_ref().map(SortedMaterial))?;
                m.serialize_entry("op", &op)?;
                m.serialize_entry("uuid", self.uuid)?;
            }
            ChangeOp::Transform { t, r, s } => {
                m.serialize_entry("op", &op)?;
                m.serialize_entry("r", r)?;
                m.serialize_entry("s", s)?;
                m.serialize_entry("t", &t_out(t))?;
                m.serialize_entry("uuid", self.uuid)?;
            }
            ChangeOp::Rename(n) => {
                m.serialize_entry("name", n)?;
                m.serialize_entry("op", &op)?;
                m.serialize_entry("uuid", self.uuid)?;
            }
            ChangeOp::Visibility(v) => {
                m.serialize_entry("op", &op)?;
                m.serialize_entry("uuid", self.uuid)?;
                m.serialize_entry("visible", v)?;
            }
        }
        m.end()
    }
}

/// A material with its keys in sorted order (as in a `Value` of it).
struct SortedMaterial<'a>(&'a Material);

impl Serialize for SortedMaterial<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(4))?;
        m.serialize_entry("base_color", &self.0.base_color)?;
        m.serialize_entry("emission", &self.0.emission)?;
        m.serialize_entry("metallic", &self.0.metallic)?;
        m.serialize_entry("roughness", &self.0.roughness)?;
        m.end()
    }
}

/// Who made a change (docs/PROTOCOL.md §6.4): a person's edit is never undone in the editor
/// where it was made; automation's changes are reverted everywhere when propagation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Author {
    Person,
    Automation,
}

/// A change waiting in a window, with who sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued<S> {
    pub origin: S,
    pub author: Author,
    pub change: Change,
    /// The `request_id` of the `change` request that carried it: a `batch_result` names, per
    /// uuid, the last request of its origin it ends (`through`, docs/PROTOCOL.md §6.4).
    pub request: std::sync::Arc<str>,
    /// Its admission mark and the live previews its editor had applied when it made it
    /// (docs/PROTOCOL.md §6.2, §6.3): which other editors' changes it was made over.
    pub sight: crate::live::Sight,
    /// The daemon's last seq when it was admitted (None: not admitted from a request, e.g.
    /// built by the daemon itself): a `tombstone` its own editor committed after that
    /// supersedes it, also when the batch forms before the sync heard of the tombstone
    /// (docs/PROTOCOL.md §6.2).
    pub admitted_seq: Option<u64>,
    /// The bytes of the mesh its batch carries to each receiver (0: none): what bounds a
    /// batch's size (docs/PROTOCOL.md §6.2 "Batch size").
    pub mesh_bytes: u64,
    /// A `transform` the batch found to only keep the object where it stood in the world
    /// after its editor's `reparent` off a parent deleted meanwhile, and re-expressed over
    /// another editor's move of the window (docs/PROTOCOL.md §6.1): no pose its person made,
    /// so no writer in a conflict (§6.2, [`crate::forward::conflicts`]).
    pub keeps_world: bool,
}

impl<S> Queued<S> {
    /// A change not admitted from an editor's request (no request id, mark or admission seq).
    pub fn new(origin: S, author: Author, change: Change) -> Queued<S> {
        Queued {
            origin,
            author,
            change,
            request: Default::default(),
            sight: Default::default(),
            admitted_seq: None,
            mesh_bytes: 0,
            keeps_world: false,
        }
    }

    /// The same change with another handle of its origin (e.g. its session id).
    pub fn with_origin<T>(&self, origin: T) -> Queued<T> {
        Queued {
            origin,
            author: self.author,
            change: self.change.clone(),
            request: self.request.clone(),
            sight: self.sight,
            admitted_seq: self.admitted_seq,
            mesh_bytes: self.mesh_bytes,
            keeps_world: self.keeps_world,
        }
    }
}

/// Coalesce one window (docs/PROTOCOL.md §6.2): per uuid the last transform, rename and
/// visibility win (kept at the position of their last occurrence); structural ops keep
/// their order; a delete drops the earlier ops of its uuid.
///
/// One backward pass with hash sets: O(n) in the number of changes, whatever the number of
/// distinct objects.
pub fn coalesce<S: Clone>(window: Vec<Queued<S>>) -> Vec<Queued<S>> {
    let keep = coalesce_mask(&window);
    window.into_iter().zip(keep).filter_map(|(q, k)| k.then_some(q)).collect()
}

/// Which changes of a window survive coalescing (see [`coalesce`]).
pub fn coalesce_mask<S>(window: &[Queued<S>]) -> Vec<bool> {
    use crate::fast::HashSet;
    let mut keep = vec![true; window.len()];
    let mut deleted_later: HashSet<&str> = HashSet::default();
    let mut fast_later: HashSet<(&str, &str)> = HashSet::default();
    for (i, q) in window.iter().enumerate().rev() {
        let (u, op) = (q.change.uuid.as_str(), &q.change.op);
        if deleted_later.contains(u) {
            keep[i] = false; // a later delete drops every earlier op of its uuid
        } else if matches!(op, ChangeOp::Delete) {
            deleted_later.insert(u);
        } else if op.path() == Path::Fast && !fast_later.insert((u, op.name())) {
            keep[i] = false; // a later op of the same kind on the same uuid supersedes it
        }
    }
    keep
}

/// The path of a coalesced window: slow if any change is structural.
pub fn batch_path<S>(changes: &[Queued<S>]) -> Path {
    if changes.iter().any(|q| q.change.op.path() == Path::Slow) {
        Path::Slow
    } else {
        Path::Fast
    }
}

/// The batch window of one project. The first change opens it; it closes `window_ms` later.
///
/// A fast-path change that supersedes the uuid's last waiting change — same origin, same
/// author, same op kind, nothing else of that uuid in between — replaces it at once (it
/// moves to the newer one's position, as [`coalesce`] would place it). What the window
/// hands out then coalesces exactly as the changes pushed would have, and a drag that sends
/// the same objects every frame keeps the window at one entry per object and op instead
/// of growing with every frame.
#[derive(Debug)]
pub struct Window<S> {
    window_ms: u64,
    opened_at: Option<u64>,
    /// Arrival order; None where a later change superseded it at push.
    pending: Vec<Option<Queued<S>>>,
    /// How many of `pending` are None.
    superseded: usize,
    /// uuid → the index in `pending` of its last waiting change (membership in O(1)).
    last_of: crate::fast::HashMap<String, usize>,
    /// Beside `pending`: the index of the uuid's change before this one (superseded slots
    /// included), so that [`Window::pending_of`] reads only that uuid's changes.
    prev: Vec<Option<usize>>,
}

/// The most one batch carries (docs/PROTOCOL.md §6.2 "Batch size"; `sync.max_batch_changes`,
/// `sync.max_batch_mesh_bytes`): a batch is applied by each receiver as one step and verified
/// within `sync.verify_timeout_ms`, so a big first sync goes as several batches in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimit {
    pub changes: usize,
    pub mesh_bytes: u64,
}

impl BatchLimit {
    /// No bound.
    pub const NONE: BatchLimit = BatchLimit { changes: usize::MAX, mesh_bytes: u64::MAX };
}

/// Superseded slots are compacted away once there are this many and they are at least half
/// of the window.
const COMPACT_AT: usize = 1024;

impl<S: Clone + PartialEq> Window<S> {
    pub fn new(window_ms: u64) -> Self {
        Window {
            window_ms,
            opened_at: None,
            pending: Vec::new(),
            superseded: 0,
            last_of: Default::default(),
            prev: Vec::new(),
        }
    }

    pub fn push(&mut self, now_ms: u64, q: Queued<S>) {
        if self.opened_at.is_none() {
            self.opened_at = Some(now_ms);
        }
        let at = self.pending.len();
        let before = match self.last_of.get_mut(&q.change.uuid) {
            Some(last) => {
                if self.pending[*last].as_ref().is_some_and(|prev| supersedes(&q, prev)) {
                    self.pending[*last] = None;
                    self.superseded += 1;
                }
                Some(std::mem::replace(last, at))
            }
            None => {
                self.last_of.insert(q.change.uuid.clone(), at);
                None
            }
        };
        self.pending.push(Some(q));
        self.prev.push(before);
        if self.superseded >= COMPACT_AT && self.superseded * 2 >= self.pending.len() {
            self.compact();
        }
    }

    /// Drop the superseded slots and re-index.
    fn compact(&mut self) {
        self.pending.retain(Option::is_some);
        self.superseded = 0;
        self.last_of.clear();
        self.prev.clear();
        for (i, q) in self.pending.iter().enumerate() {
            let q = q.as_ref().expect("retained");
            self.prev.push(self.last_of.insert(q.change.uuid.clone(), i));
        }
    }

    /// When the window closes (None when empty).
    pub fn deadline(&self) -> Option<u64> {
        self.opened_at.map(|t| t + self.window_ms)
    }

    pub fn is_due(&self, now_ms: u64) -> bool {
        self.deadline().is_some_and(|d| now_ms >= d)
    }

    pub fn is_empty(&self) -> bool {
        self.last_of.is_empty()
    }

    pub fn pending_uuids(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().flatten().map(|q| q.change.uuid.as_str())
    }

    /// Whether a change of `uuid` waits in the window.
    pub fn has_pending(&self, uuid: &str) -> bool {
        self.last_of.contains_key(uuid)
    }

    /// Every waiting change, in arrival order.
    pub fn pending(&self) -> impl Iterator<Item = &Queued<S>> {
        self.pending.iter().flatten()
    }

    /// The waiting changes of `uuid`, in arrival order: a walk of that uuid's changes only,
    /// not a scan of the window (a drag asks this of every change it admits).
    pub fn pending_of(&self, uuid: &str) -> impl Iterator<Item = &Queued<S>> {
        let mut of = Vec::new();
        let mut at = self.last_of.get(uuid).copied();
        while let Some(i) = at {
            of.extend(self.pending[i].as_ref());
            at = self.prev[i];
        }
        of.into_iter().rev()
    }

    /// Remove and return the changes of `uuid`, in arrival order.
    pub fn take_uuid(&mut self, uuid: &str) -> Vec<Queued<S>> {
        if self.last_of.remove(uuid).is_none() {
            return Vec::new();
        }
        let (out, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().flatten().partition(|q| q.change.uuid == uuid);
        self.pending = keep.into_iter().map(Some).collect();
        self.compact();
        if self.pending.is_empty() {
            self.opened_at = None;
        }
        out
    }

    /// Close the window: the coalesced changes, in order.
    pub fn take(&mut self) -> Vec<Queued<S>> {
        coalesce(self.take_all())
    }

    /// Take the oldest changes, in arrival order, within a batch's bounds (docs/PROTOCOL.md
    /// §6.2 "Batch size"): at most `limit.changes` changes and `limit.mesh_bytes` bytes of
    /// meshes, but always at least one change. The rest stays, in order, and the window stays
    /// due (it opened when its oldest change arrived). Not coalesced, like [`Window::take_all`].
    pub fn take_first(&mut self, limit: BatchLimit) -> Vec<Queued<S>> {
        let (mut taken, mut bytes, mut cut) = (0usize, 0u64, None);
        for (i, q) in self.pending.iter().enumerate() {
            let Some(q) = q else { continue };
            bytes = bytes.saturating_add(q.mesh_bytes);
            if taken > 0 && (taken >= limit.changes || bytes > limit.mesh_bytes) {
                cut = Some(i);
                break;
            }
            taken += 1;
        }
        let Some(cut) = cut else {
            return self.take_all();
        };
        let rest = self.pending.split_off(cut);
        let first = std::mem::replace(&mut self.pending, rest).into_iter().flatten().collect();
        self.compact();
        first
    }

    /// Close the window: every queued change, in arrival order, not coalesced (but without
    /// the changes superseded at push: see the type's docs).
    pub fn take_all(&mut self) -> Vec<Queued<S>> {
        self.opened_at = None;
        self.last_of.clear();
        self.prev.clear();
        self.superseded = 0;
        std::mem::take(&mut self.pending).into_iter().flatten().collect()
    }
}

/// Whether `next` supersedes `prev`, the last waiting change of its uuid: both fast-path
/// ops of one kind (each sets its field whole: the later one is what the origin holds) from
/// the same origin and author.
fn supersedes<S: PartialEq>(next: &Queued<S>, prev: &Queued<S>) -> bool {
    next.change.op.path() == Path::Fast
        && prev.change.op.name() == next.change.op.name()
        && prev.origin == next.origin
        && prev.author == next.author
}

#[cfg(test)]
mod cycle_tests {
    use super::parent_cycle;

    #[test]
    fn reparenting_under_a_descendant_is_a_cycle() {
        // c → b → a (parents); reparent a under c: a cycle a ← c ← b ← a.
        let parent_of = |u: &str| match u {
            "c" => Some("b".to_string()),
            "b" => Some("a".to_string()),
            _ => None,
        };
        assert_eq!(parent_cycle("a", "c", parent_of), Some(vec!["c".into(), "b".into(), "a".into()]));
        assert_eq!(parent_cycle("c", "a", parent_of), None, "moving a leaf under the root is fine");
        // An existing loop that does not contain the uuid terminates.
        let looped = |u: &str| Some(if u == "x" { "y" } else { "x" }.to_string());
        assert_eq!(parent_cycle("a", "x", looped), None);
    }
}

#[cfg(test)]
mod pose_tests {
    /// A parent turned, moved and scaled uniformly: its inverse takes the world pose of a
    /// child back to the child's local pose under it.
    #[test]
    fn a_poses_inverse_takes_a_world_pose_back_under_it() {
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let parent = super::Pose { t: [1.0, 2.0, 3.0], r: [0.0, h, 0.0, h], s: [2.0; 3] };
        let local = super::Pose { t: [0.5, -1.0, 4.0], r: [h, 0.0, 0.0, h], s: [1.0, 3.0, 0.5] };
        let back = parent.inverse().then(&parent.then(&local));
        for (a, b) in back.t.iter().chain(&back.r).chain(&back.s).zip(local.t.iter().chain(&local.r).chain(&local.s)) {
            assert!((a - b).abs() < 1e-9, "{back:?} vs {local:?}");
        }
        let id = super::Pose::IDENTITY.inverse();
        assert_eq!((id.t, id.r, id.s), ([0.0; 3], [0.0, 0.0, 0.0, 1.0], [1.0; 3]));
    }

    use super::Pose;

    /// Blender's person scales the object while Unity's moves it, neither having seen the
    /// other's edit: both stand. Where both changed one component, the later one's stands.
    #[test]
    fn concurrent_poses_merge_per_component() {
        use super::pose_part::{ALL, R, S, T};
        let was = Pose { t: [1.0, 2.0, 3.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] };
        let moved = Pose { t: [0.0, 3.0, 0.0], ..was };
        let scaled = Pose { s: [2.0; 3], ..was };
        assert_eq!(moved.changed_from(&was), T);
        assert_eq!(scaled.changed_from(&was), S);
        // Below the state hash's grid (1e-5) is no change; a negated rotation is the same one.
        let same = Pose { t: [1.000_001, 2.0, 3.0], r: [0.0, 0.0, 0.0, -1.0], ..was };
        assert_eq!(same.changed_from(&was), 0);
        let both = Pose::merged(&scaled, &[moved], &was);
        assert_eq!((both.t, both.r, both.s), (moved.t, was.r, scaled.s));
        // Both moved: the later one's position stands, the other's scale too.
        let moved_and_scaled = Pose { t: [9.0, 9.0, 9.0], s: [3.0; 3], ..was };
        let m = Pose::merged(&moved, &[moved_and_scaled], &was);
        assert_eq!((m.t, m.s), (moved.t, [3.0; 3]));
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let turned = Pose { r: [0.0, h, 0.0, h], ..was };
        assert_eq!(turned.changed_from(&was), R);
        let all = Pose::merged(&turned, &[moved, scaled], &was);
        assert_eq!((all.t, all.r, all.s), (moved.t, turned.r, scaled.s));
        // Moved back where it was: the last pose stands whole.
        let back = Pose::merged(&was, &[moved], &was);
        assert_eq!(back.t, was.t);
        // A scale made where a live preview of the other editor's move had put the object:
        // the position is that move's (seen), not one it made; the later move's stands.
        let seen = Pose { t: [4.0, 0.0, 0.0], ..was };
        let scaled_there = Pose { s: [2.0; 3], ..seen };
        assert_eq!(scaled_there.made_from(&was, &[]), T | S);
        assert_eq!(scaled_there.made_from(&was, &[seen]), S);
        assert_eq!(was.made_from(&was, &[seen]), ALL, "moved back: whole");
        let later = Pose { t: [5.0, 0.0, 0.0], ..was };
        let m = Pose::merged_made(&scaled_there, scaled_there.made_from(&was, &[seen]), &[seen, later], &was);
        assert_eq!((m.t, m.s), (later.t, [2.0; 3]));
        // `with_parts` takes exactly the parts named.
        assert_eq!(moved.with_parts(&scaled, S), Pose { s: scaled.s, ..moved });
        assert_eq!(moved.with_parts(&scaled, 0), moved);
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    /// A parent at (1, 2, 3), turned 90° about Y, scaled 2: a child at (1, 0, 0) under it
    /// stands at (1, 2, 1) — the parent's +X is the world's −Z — turned and scaled with it.
    #[test]
    fn a_local_pose_under_a_parent_stands_where_the_parent_puts_it() {
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let parent = Pose { t: [1.0, 2.0, 3.0], r: [0.0, h, 0.0, h], s: [2.0; 3] };
        let child = Pose { t: [1.0, 0.0, 0.0], r: [0.0, h, 0.0, h], s: [0.5, 1.0, 3.0] };
        let w = parent.then(&child);
        assert!(close(&w.t, &[1.0, 2.0, 1.0]), "{w:?}");
        assert!(close(&w.r, &[0.0, 1.0, 0.0, 0.0]), "180° about Y: {w:?}");
        assert!(close(&w.s, &[1.0, 2.0, 6.0]), "{w:?}");
        let same = Pose::IDENTITY.then(&child);
        assert!(close(&same.t, &child.t) && close(&same.r, &child.r) && close(&same.s, &child.s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U1: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    const U2: &str = "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn tr(uuid: &str, x: f64) -> Queued<&'static str> {
        Queued::new(
            "b",
            Author::Person,
            Change {
                uuid: uuid.into(),
                op: ChangeOp::Transform { t: [x, 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] },
            },
        )
    }

    fn create_json(uuid: &str) -> Value {
        json!({"op":"create","uuid":uuid,"kind":"object","name":"Cube","parent":null,"t":[1,2,3],"r":[0,0,0,1],"s":[2,2,2],"visible":true})
    }

    #[test]
    fn parse_normalizes_units_and_snaps() {
        let c = parse_change(
            &json!({"op":"transform","uuid":U1,"t":[100.0,200.000001,0.0],"r":[0,0,0,1.2],"s":[1,1,1]}),
            0.01,
            "changes[0]",
        )
        .unwrap();
        let ChangeOp::Transform { t, r, .. } = c.op else { panic!() };
        assert_eq!(t, [1.0, 2.0, 0.0]);
        assert!(r[3] == 1.0, "quaternion normalized: {r:?}");
    }

    #[test]
    fn a_material_op_with_null_clears_the_material_and_a_missing_one_is_refused() {
        let made = json!({"op":"create","uuid":U1,"kind":"object","name":"Cube","parent":null,"t":[0,0,0],
            "r":[0,0,0,1],"s":[1,1,1],"visible":true,
            "material":{"base_color":[1,0,0,1],"metallic":0,"roughness":0.5,"emission":[0,0,0]}});
        let ChangeOp::Create(st) = parse_change(&made, 1.0, "changes[0]").unwrap().op else { panic!() };
        assert!(st.material.is_some());
        let clear = parse_change(&json!({"op":"material","uuid":U1,"material":null}), 1.0, "changes[0]").unwrap();
        assert_eq!(clear.op, ChangeOp::Material(None));
        let next = apply_change(Some(&st), &clear.op).unwrap().unwrap();
        assert_eq!(next.material, None, "the material is cleared");
        assert_ne!(next.hash(), st.hash());
        let without: ObjectState = ObjectState { material: None, ..st.clone() };
        assert_eq!(next.hash(), without.hash(), "a cleared material hashes as one never set");
        // On the wire it goes out as `"material":null`.
        assert_eq!(change_to_wire(U1, &clear.op, 1.0), json!({"op":"material","uuid":U1,"material":null}));
        let e = parse_change(&json!({"op":"material","uuid":U1}), 1.0, "changes[0]").unwrap_err();
        assert!(e.message.contains("changes[0]") && e.message.contains("material"), "{}", e.message);
    }

    #[test]
    fn parse_rejects_bad_input_with_field_names() {
        let cases = [
            (json!({"op":"transform","uuid":U1,"t":[1,2],"r":[0,0,0,1],"s":[1,1,1]}), "changes[0].t"),
            (json!({"op":"transform","uuid":"x","t":[1,2,3],"r":[0,0,0,1],"s":[1,1,1]}), "changes[0].uuid"),
            (json!({"op":"transform","uuid":U1,"t":[1,2,"3"],"r":[0,0,0,1],"s":[1,1,1]}), "changes[0].t[2]"),
            (json!({"op":"transform","uuid":U1,"t":[1,2,3],"r":[0,0,0,0],"s":[1,1,1]}), "changes[0].r"),
            (json!({"op":"teleport","uuid":U1}), "changes[0].op"),
            (json!({"op":"reparent","uuid":U1,"parent":U1}), "own parent"),
            (json!({"op":"mesh","uuid":U1,"mesh_hash":"abc"}), "mesh_hash"),
            (json!({"op":"transform","uuid":U1,"t":[1e300,2,3],"r":[0,0,0,1],"s":[1,1,1]}), "out of range"),
        ];
        for (v, needle) in cases {
            let e = parse_change(&v, 1.0, "changes[0]").unwrap_err();
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
    }

    #[test]
    fn apply_needs_create_first_and_delete_removes() {
        let c = parse_change(&create_json(U1), 1.0, "c").unwrap();
        let s = apply_change(None, &c.op).unwrap().unwrap();
        assert_eq!(s.s, [2.0; 3]);
        assert_eq!(apply_change(None, &ChangeOp::Rename("x".into())).unwrap_err().code, ItemErrorCode::NotFound);
        let renamed = apply_change(Some(&s), &ChangeOp::Rename("B".into())).unwrap().unwrap();
        assert_eq!(renamed.name, "B");
        assert_ne!(renamed.hash(), s.hash());
        assert!(apply_change(Some(&s), &ChangeOp::Delete).unwrap().is_none());
    }

    #[test]
    fn coalescing_keeps_last_transform_and_structural_order() {
        let mut w = vec![tr(U1, 1.0), tr(U2, 1.0), tr(U1, 2.0)];
        w.push(Queued::new("b", Author::Person, Change { uuid: U2.into(), op: ChangeOp::Rename("N".into()) }));
        w.push(tr(U1, 3.0));
        let out = coalesce(w);
        let xs: Vec<(String, String)> =
            out.iter().map(|q| (q.change.uuid.clone(), q.change.op.name().to_string())).collect();
        assert_eq!(
            xs,
            vec![(U2.into(), "transform".into()), (U2.into(), "rename".into()), (U1.into(), "transform".into())]
        );
        let ChangeOp::Transform { t, .. } = out[2].change.op else { panic!() };
        assert_eq!(t[0], 3.0, "the last transform wins");
        assert_eq!(batch_path(&out), Path::Fast);
    }

    #[test]
    fn delete_drops_earlier_ops_of_its_uuid() {
        let del = Queued::new("b", Author::Person, Change { uuid: U1.into(), op: ChangeOp::Delete });
        let out = coalesce(vec![tr(U1, 1.0), tr(U2, 1.0), del]);
        assert_eq!(out.len(), 2);
        assert_eq!(batch_path(&out), Path::Slow);
    }

    #[test]
    fn coalescing_is_linear_and_matches_the_rule() {
        // 5,000 distinct objects dragged for 20 frames: 100,000 changes coalesce to 5,000.
        let ids: Vec<String> = (0..5000).map(|i| format!("{:08x}-4b7d-4a53-9a43-9d7f9b0f1f3a", i)).collect();
        let mut w = Vec::with_capacity(100_000);
        for f in 0..20 {
            for id in &ids {
                w.push(tr(id, f as f64));
            }
        }
        // (The former quadratic scan needed ~5e9 comparisons here.)
        let out = coalesce(w);
        assert_eq!(out.len(), 5000);
        assert!(out.iter().all(|q| matches!(q.change.op, ChangeOp::Transform { t, .. } if t[0] == 19.0)));
        // create, delete, create again: the delete drops only what came before it.
        let c = |u: &str| {
            Queued::new(
                "b",
                Author::Person,
                Change {
                    uuid: u.into(),
                    op: apply_change(None, &parse_change(&create_json(u), 1.0, "c").unwrap().op)
                        .unwrap()
                        .map(ChangeOp::Create)
                        .unwrap(),
                },
            )
        };
        let d = |u: &str| Queued::new("b", Author::Person, Change { uuid: u.into(), op: ChangeOp::Delete });
        let out = coalesce(vec![c(U1), tr(U1, 1.0), d(U1), c(U1), tr(U1, 2.0)]);
        let names: Vec<&str> = out.iter().map(|q| q.change.op.name()).collect();
        assert_eq!(names, ["delete", "create", "transform"]);
    }

    #[test]
    fn window_with_paused_time() {
        let mut w: Window<&str> = Window::new(300);
        assert!(!w.is_due(0));
        for i in 0..200u64 {
            // 200 updates over one second, window of 300 ms: at most 4 batches close.
            w.push(i * 5, tr(U1, i as f64));
        }
        assert_eq!(w.deadline(), Some(300));
        assert!(w.is_due(300));
        let out = w.take();
        assert_eq!(out.len(), 1);
        assert!(w.is_empty() && w.deadline().is_none());
    }

    #[test]
    fn wire_form_converts_units_back() {
        let op = ChangeOp::Transform { t: [1.0, 2.0, 3.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] };
        let v = change_to_wire(U1, &op, 0.01);
        assert_eq!(v["t"], json!([100.0, 200.0, 300.0]));
    }

    mod window_push {
        use super::super::*;
        use proptest::prelude::*;

        fn op(kind: u8, v: u8) -> ChangeOp {
            match kind {
                0 | 1 => ChangeOp::Transform { t: [f64::from(v), 0.0, 0.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0; 3] },
                2 => ChangeOp::Rename(format!("N{v}")),
                3 => ChangeOp::Visibility(v.is_multiple_of(2)),
                4 => ChangeOp::Delete,
                _ => ChangeOp::Reparent(None),
            }
        }

        fn queued((origin, author, u, kind, v): (u8, bool, u8, u8, u8)) -> Queued<u8> {
            Queued::new(
                origin,
                if author { Author::Automation } else { Author::Person },
                Change { uuid: format!("u{u}"), op: op(kind, v) },
            )
        }

        /// What `origin` holds of each uuid after its own ops, in order (a transform, rename
        /// or visibility sets its field whole).
        fn holds(list: &[Queued<u8>], origin: u8) -> Vec<(String, String, String)> {
            let mut last: std::collections::BTreeMap<(String, String), String> = Default::default();
            for q in list.iter().filter(|q| q.origin == origin) {
                last.insert((q.change.uuid.clone(), q.change.op.name().to_string()), format!("{:?}", q.change.op));
            }
            last.into_iter().map(|((u, k), v)| (u, k, v)).collect()
        }

        proptest! {
            /// Superseding at push changes nothing a batch is made of: the window coalesces to
            /// exactly what the pushed changes coalesce to, and each origin's own ops leave it
            /// holding the same values.
            #[test]
            fn superseding_at_push_coalesces_like_the_changes_pushed(
                evs in prop::collection::vec((0..2u8, any::<bool>(), 0..3u8, 0..6u8, any::<u8>()), 0..300),
            ) {
                let all: Vec<Queued<u8>> = evs.into_iter().map(queued).collect();
                let mut w: Window<u8> = Window::new(300);
                for q in &all {
                    w.push(0, q.clone());
                }
                let uuids: std::collections::BTreeSet<&str> = all.iter().map(|q| q.change.uuid.as_str()).collect();
                for u in &uuids {
                    prop_assert!(w.has_pending(u));
                }
                let got = w.take_all();
                prop_assert!(w.is_empty() && w.deadline().is_none());
                prop_assert_eq!(coalesce(got.clone()), coalesce(all.clone()));
                for origin in 0..2 {
                    prop_assert_eq!(holds(&got, origin), holds(&all, origin));
                }
                // Per uuid, what is left keeps arrival order (a subsequence of what was pushed).
                let mut rest = all.iter();
                for q in &got {
                    prop_assert!(rest.any(|a| a == q), "not in arrival order: {:?}", q);
                }
            }
        }

        proptest! {
            /// `pending_of` walks one uuid's changes: it gives exactly what a scan of the
            /// window for that uuid gives, in arrival order, across pushes that supersede,
            /// compactions, `take_uuid` and `take_first`.
            #[test]
            fn pending_of_is_the_windows_changes_of_that_uuid(
                evs in prop::collection::vec((0..4u8, (0..2u8, any::<bool>(), 0..5u8, 0..6u8, any::<u8>())), 0..3000),
            ) {
                let mut w: Window<u8> = Window::new(300);
                for (i, (what, ev)) in evs.into_iter().enumerate() {
                    match (what, i % 97) {
                        (0, 0) => drop(w.take_uuid(&format!("u{}", ev.2))),
                        (0, 1) => drop(w.take_first(BatchLimit { changes: usize::from(ev.4 % 8) + 1, mesh_bytes: u64::MAX })),
                        _ => w.push(0, queued(ev)),
                    }
                    if i % 13 == 0 {
                        for u in 0..5u8 {
                            let u = format!("u{u}");
                            let scan: Vec<&Queued<u8>> = w.pending().filter(|q| q.change.uuid == u).collect();
                            prop_assert_eq!(w.pending_of(&u).collect::<Vec<_>>(), scan);
                        }
                    }
                }
            }
        }

        #[test]
        fn a_drag_keeps_one_entry_per_object_and_take_uuid_still_works() {
            let mut w: Window<u8> = Window::new(300);
            for frame in 0..200u8 {
                for u in 0..50u8 {
                    w.push(u64::from(frame), queued((0, false, u, 0, frame)));
                }
            }
            assert!(w.pending.len() <= 50 + 2 * COMPACT_AT, "{} slots for 50 objects", w.pending.len());
            let mine = w.take_uuid("u7");
            assert_eq!(mine.len(), 1);
            assert_eq!(mine[0].change.op, op(0, 199), "the last pose wins");
            assert!(!w.has_pending("u7") && w.has_pending("u8"));
            // Another origin's move of the same object is not superseded: both stay for the batch.
            w.push(300, queued((1, false, 8, 0, 1)));
            w.push(301, queued((0, false, 8, 0, 2)));
            let out = w.take_all();
            assert_eq!(out.len(), 49 + 2);
            assert_eq!(out.iter().filter(|q| q.change.uuid == "u8").count(), 3);
            assert_eq!(out.last().unwrap().change.op, op(0, 2));
        }
    }
}
