//! The catalogue: every node type a `GeometryNodeTree` of one Blender version accepts, with
//! its sockets, properties and socket variants, plus the socket compatibility table — both
//! generated in real Blender by `catalogue/generate.py` (docs/GEONODES.md §Catalogue) and
//! embedded here. Nothing in this module is written by hand about Blender.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::GeonodesError;

/// The Blender versions a catalogue was generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum BlenderVersion {
    V4_2,
    #[default]
    V4_5,
    V5_0,
}

impl BlenderVersion {
    pub const ALL: [BlenderVersion; 3] = [BlenderVersion::V4_2, BlenderVersion::V4_5, BlenderVersion::V5_0];

    pub fn as_str(self) -> &'static str {
        match self {
            BlenderVersion::V4_2 => "4.2",
            BlenderVersion::V4_5 => "4.5",
            BlenderVersion::V5_0 => "5.0",
        }
    }

    fn sources(self) -> (&'static str, &'static str) {
        match self {
            BlenderVersion::V4_2 => (
                include_str!("../catalogue/geometry_nodes_4.2.json"),
                include_str!("../catalogue/socket_compat_4.2.json"),
            ),
            BlenderVersion::V4_5 => (
                include_str!("../catalogue/geometry_nodes_4.5.json"),
                include_str!("../catalogue/socket_compat_4.5.json"),
            ),
            BlenderVersion::V5_0 => (
                include_str!("../catalogue/geometry_nodes_5.0.json"),
                include_str!("../catalogue/socket_compat_5.0.json"),
            ),
        }
    }
}

impl fmt::Display for BlenderVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BlenderVersion {
    type Err = GeonodesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // "4.5", "4.5.3", "4.5 LTS" all mean the 4.5 catalogue.
        let mm: String = s.trim().split(['.', ' ']).take(2).collect::<Vec<_>>().join(".");
        BlenderVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == mm)
            .ok_or_else(|| GeonodesError::UnknownVersion { given: s.to_string() })
    }
}

/// A socket's base type (Blender's `NodeSocket.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SocketType {
    Value,
    Int,
    Boolean,
    Vector,
    Rgba,
    Rotation,
    Matrix,
    String,
    Menu,
    Object,
    Collection,
    Image,
    Material,
    Texture,
    Geometry,
    Bundle,
    Closure,
    Shader,
    Custom,
    #[serde(other)]
    Unknown,
}

/// What a socket says about the structure of the data it carries (derived from its display
/// shape after Blender's field inferencing; docs/GEONODES.md §Fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldSupport {
    /// Input: single values only. Output: never a field.
    Single,
    /// Input: single values and fields. Output: always a field (a field source).
    Field,
    /// Input (5.0): anything — single values, fields, grids, lists.
    Dynamic,
    /// Output: whatever flows into the node (a field when a field flows in).
    Dependent,
    /// Volume grids only (5.0).
    Grid,
    /// Lists only (5.0).
    List,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketDef {
    pub name: String,
    pub identifier: String,
    pub idname: String,
    #[serde(rename = "type")]
    pub kind: SocketType,
    pub shape: String,
    pub field: FieldSupport,
    pub multi_input: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hide_value: bool,
    pub enabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PropertyType {
    Enum,
    Boolean,
    Int,
    Float,
    String,
    Pointer,
    Collection,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PropertyDef {
    pub identifier: String,
    #[serde(rename = "type")]
    pub kind: PropertyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantMode {
    /// `variants` lists every combination of the socket-changing properties.
    Product,
    /// Too many combinations: each variant changes one property from its default.
    Single,
}

/// The sockets enabled under one combination of property values (indices into the node's
/// `inputs` / `outputs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Variant {
    pub properties: BTreeMap<String, Value>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeType {
    pub idname: String,
    pub label: String,
    pub description: String,
    pub category: String,
    pub properties: Vec<PropertyDef>,
    pub inputs: Vec<SocketDef>,
    pub outputs: Vec<SocketDef>,
    pub variant_mode: VariantMode,
    pub variants: Vec<Variant>,
}

impl NodeType {
    pub fn property(&self, identifier: &str) -> Option<&PropertyDef> {
        self.properties.iter().find(|p| p.identifier == identifier)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompatSocketType {
    pub idname: String,
    #[serde(rename = "type")]
    pub kind: SocketType,
}

/// Blender's verdict on a link from a socket of type `from` into one of type `to`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompatPair {
    pub from: SocketType,
    pub to: SocketType,
    pub valid: bool,
}

/// The sockets a compatibility row was measured with (`Node.outputs[i]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompatProbe {
    #[serde(rename = "type")]
    pub kind: SocketType,
    pub source: String,
    pub target: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompatTable {
    pub schema_version: u32,
    pub blender: String,
    /// The socket types a group interface accepts.
    pub socket_types: Vec<CompatSocketType>,
    pub probes: Vec<CompatProbe>,
    pub pairs: Vec<CompatPair>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CatalogueFile {
    schema_version: u32,
    blender: String,
    tree_type: String,
    node_count: usize,
    nodes: Vec<NodeType>,
}

/// One Blender version's catalogue and compatibility table, indexed.
#[derive(Debug)]
pub struct Catalogue {
    pub version: BlenderVersion,
    pub tree_type: String,
    pub nodes: Vec<NodeType>,
    pub compat: CompatTable,
    by_idname: BTreeMap<String, usize>,
    compat_by_type: BTreeMap<(SocketType, SocketType), bool>,
}

/// The only schema this crate reads (bumped with `SCHEMA_VERSION` in generate.py).
pub const SCHEMA_VERSION: u32 = 1;

impl Catalogue {
    /// The embedded catalogue of `version` (parsed once per process).
    pub fn get(version: BlenderVersion) -> &'static Catalogue {
        static CACHE: [OnceLock<Catalogue>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = &CACHE[BlenderVersion::ALL.iter().position(|v| *v == version).unwrap_or(0)];
        slot.get_or_init(|| {
            let (nodes, compat) = version.sources();
            // The embedded files are checked by the crate's tests; a failure here is a build
            // of a broken catalogue, not user input.
            Catalogue::parse(version, nodes, compat).expect("embedded catalogue parses (tests/catalogue.rs)")
        })
    }

    /// Parse a catalogue and compatibility table (as written by generate.py).
    pub fn parse(version: BlenderVersion, nodes: &str, compat: &str) -> Result<Catalogue, GeonodesError> {
        let file: CatalogueFile = serde_json::from_str(nodes)
            .map_err(|e| GeonodesError::Catalogue { version: version.to_string(), reason: e.to_string() })?;
        let compat: CompatTable = serde_json::from_str(compat)
            .map_err(|e| GeonodesError::Catalogue { version: version.to_string(), reason: e.to_string() })?;
        if file.schema_version != SCHEMA_VERSION || compat.schema_version != SCHEMA_VERSION {
            return Err(GeonodesError::Catalogue {
                version: version.to_string(),
                reason: format!("schema_version {} (this build reads {SCHEMA_VERSION})", file.schema_version),
            });
        }
        if file.node_count != file.nodes.len() {
            return Err(GeonodesError::Catalogue {
                version: version.to_string(),
                reason: format!("node_count {} but {} nodes", file.node_count, file.nodes.len()),
            });
        }
        let by_idname = file.nodes.iter().enumerate().map(|(i, n)| (n.idname.clone(), i)).collect();
        let mut compat_by_type = BTreeMap::new();
        for p in &compat.pairs {
            compat_by_type.insert((p.from, p.to), p.valid);
        }
        Ok(Catalogue { version, tree_type: file.tree_type, nodes: file.nodes, compat, by_idname, compat_by_type })
    }

    pub fn node(&self, idname: &str) -> Option<&NodeType> {
        self.by_idname.get(idname).map(|&i| &self.nodes[i])
    }

    /// Does Blender accept a link from a socket of type `from` into one of type `to`?
    /// `None` when the table has no row for the pair (a type no node offers both as an
    /// output and an input with default properties).
    pub fn link_types_valid(&self, from: SocketType, to: SocketType) -> Option<bool> {
        if from == to {
            return Some(true);
        }
        self.compat_by_type.get(&(from, to)).copied()
    }

    /// The interface socket idname (`NodeSocketFloat`) for a type name a graph may use:
    /// the idname itself, its suffix (`Float`), or the socket type (`VALUE`), any case.
    pub fn interface_socket_type(&self, name: &str) -> Option<&CompatSocketType> {
        let n = name.trim().to_ascii_lowercase();
        self.compat.socket_types.iter().find(|t| {
            let idname = t.idname.to_ascii_lowercase();
            idname == n
                || idname.strip_prefix("nodesocket") == Some(n.as_str())
                || serde_json::to_value(t.kind).ok().and_then(|v| v.as_str().map(|s| s.to_ascii_lowercase()))
                    == Some(n.clone())
                || (n == "bool" && t.kind == SocketType::Boolean)
                || (n == "color" && t.kind == SocketType::Rgba)
        })
    }

    /// Nodes answering a name: exact idname, then exact label (case-insensitive), then an
    /// idname whose part after the prefix (`GeometryNode`, `ShaderNode`…) matches.
    pub fn find_by_name(&self, name: &str) -> Vec<&NodeType> {
        if let Some(n) = self.node(name) {
            return vec![n];
        }
        let want = normalize(name);
        let by_label: Vec<&NodeType> = self.nodes.iter().filter(|n| normalize(&n.label) == want).collect();
        if !by_label.is_empty() {
            return by_label;
        }
        self.nodes.iter().filter(|n| normalize(strip_prefix(&n.idname)) == normalize(strip_prefix(name))).collect()
    }

    /// Keyword search over label, idname, description and category, best matches first
    /// (label hits, then idname, category, description), at most `limit` rows.
    pub fn search(&self, term: &str, limit: usize) -> Vec<&NodeType> {
        let words: Vec<String> = term.split_whitespace().map(|w| w.to_ascii_lowercase()).collect();
        if words.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(u32, &NodeType)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let label = n.label.to_ascii_lowercase();
                let idname = n.idname.to_ascii_lowercase();
                let category = n.category.to_ascii_lowercase();
                let description = n.description.to_ascii_lowercase();
                let mut score = 0;
                for w in &words {
                    let s = synonyms(w)
                        .iter()
                        .map(|w| field_score(w, &label, &idname, &category, &description))
                        .max()
                        .unwrap_or(0);
                    if s == 0 {
                        return None;
                    }
                    score += s;
                }
                Some((score, n))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.idname.cmp(&b.1.idname)));
        scored.into_iter().take(limit).map(|(_, n)| n).collect()
    }
}

/// Words people use for what Blender names otherwise ("scatter" points are "distributed").
/// A word also matches itself; this list only widens a search, it never names a node.
const SYNONYMS: &[(&str, &[&str])] = &[
    ("scatter", &["distribute", "instance on points"]),
    ("copy", &["instance", "duplicate"]),
    ("merge", &["join", "merge"]),
    ("combine", &["join", "combine"]),
    ("noise", &["noise", "random"]),
    ("loop", &["repeat"]),
    ("if", &["switch"]),
];

fn synonyms(word: &str) -> Vec<&str> {
    let mut out = vec![word];
    if let Some((_, alts)) = SYNONYMS.iter().find(|(w, _)| *w == word) {
        out.extend(alts.iter().copied());
    }
    out
}

fn field_score(w: &str, label: &str, idname: &str, category: &str, description: &str) -> u32 {
    let w = w.to_ascii_lowercase();
    let w = w.as_str();
    let compact: String = w.split_whitespace().collect();
    if label == w {
        8
    } else if label.contains(w) {
        4
    } else if idname.contains(compact.as_str()) {
        3
    } else if category.contains(w) {
        2
    } else if description.contains(w) {
        1
    } else {
        0
    }
}

/// `GeometryNodeMeshCone` → `MeshCone`.
pub fn strip_prefix(idname: &str) -> &str {
    for p in ["GeometryNode", "FunctionNode", "ShaderNode", "Node"] {
        if let Some(rest) = idname.strip_prefix(p) {
            if !rest.is_empty() {
                return rest;
            }
        }
    }
    idname
}

fn normalize(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(|c| c.to_lowercase()).collect()
}

/// A compact row for prompts and the CLI: what a node is and the sockets it has by default.
pub fn node_row(n: &NodeType) -> Value {
    let sockets = |list: &[SocketDef]| -> Vec<Value> {
        list.iter()
            .filter(|s| s.enabled && s.kind != SocketType::Custom)
            .map(|s| {
                let mut row = serde_json::json!({"name": s.name, "identifier": s.identifier, "idname": s.idname,
                    "field": s.field});
                if s.multi_input {
                    row["multi_input"] = Value::Bool(true);
                }
                if let Some(d) = &s.default {
                    row["default"] = d.clone();
                }
                row
            })
            .collect()
    };
    let props: Vec<Value> = n
        .properties
        .iter()
        .map(|p| {
            let mut row = serde_json::json!({"identifier": p.identifier, "type": p.kind});
            if let Some(items) = &p.items {
                row["items"] = serde_json::json!(items);
            }
            if let Some(d) = &p.default {
                row["default"] = d.clone();
            }
            row
        })
        .collect();
    serde_json::json!({
        "identifier": n.idname,
        "label": n.label,
        "category": n.category,
        "description": n.description,
        "properties": props,
        "inputs": sockets(&n.inputs),
        "outputs": sockets(&n.outputs),
    })
}
