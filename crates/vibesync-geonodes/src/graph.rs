//! graph_json: the document an agent or a person writes to describe a node tree
//! (docs/GEONODES.md §graph_json), and its parser.
//!
//! Links are read as ordered key/value pairs so the duplicate-key form
//! `{"from":"a","socket":"Mesh","to":"b","socket":"Geometry"}` (which ordinary JSON parsers
//! collapse to the last `socket`) is understood: first `socket` = source, second = target,
//! with a `DUPLICATE_SOCKET_KEY` warning.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::{Code, Diagnostic, Pointer};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// Input socket defaults per node id: `{"n1": {"Vertices": 32}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_settings: BTreeMap<String, Map<String, Value>>,
    /// Node properties per node id (the same as `nodes[i].properties`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Frame>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    /// Node properties (`operation`, `data_type`, `domain`…), applied before sockets are
    /// resolved because they decide which sockets exist.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<[f64; 2]>,
    /// For a zone input node (Repeat, Simulation, For Each): the id of its output node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_output: Option<String>,
}

/// A link in canonical form. Sockets are addressed by name, `Name#k` (the k-th enabled
/// socket of that name, from 0) or identifier.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LinkSpec {
    pub from: String,
    pub from_socket: String,
    pub to: String,
    pub to_socket: String,
    /// Which form the link was written in (not serialized: output is always canonical).
    #[serde(skip)]
    pub form: LinkForm,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkForm {
    #[default]
    Canonical,
    DuplicateSocketKey,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(default)]
    pub inputs: Vec<InterfaceSocket>,
    #[serde(default)]
    pub outputs: Vec<InterfaceSocket>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSocket {
    pub name: String,
    /// `NodeSocketFloat`, `Float` or `VALUE` (any of Blender's interface socket types).
    #[serde(rename = "type")]
    pub socket_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Vec<f64>>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The graph plus what parsing noticed (link shape errors, duplicate-key warnings).
#[derive(Clone, Debug)]
pub struct Parsed {
    pub graph: Graph,
    /// For each link of `graph.links`, its index in the submitted document.
    pub link_index: Vec<usize>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    /// A graph built in code (e.g. from Mermaid): every link is where it says.
    pub fn from_graph(graph: Graph) -> Parsed {
        let link_index = (0..graph.links.len()).collect();
        Parsed { graph, link_index, diagnostics: Vec::new() }
    }

    /// The document pointer of `graph.links[k]`.
    pub fn link_pointer(&self, k: usize) -> Pointer {
        Pointer::root().key("links").index(self.link_index.get(k).copied().unwrap_or(k))
    }
}

/// The top level as read: links kept as ordered pairs until they are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    nodes: Vec<NodeSpec>,
    #[serde(default)]
    links: Vec<RawLink>,
    #[serde(default)]
    node_settings: BTreeMap<String, Map<String, Value>>,
    #[serde(default)]
    properties: BTreeMap<String, Map<String, Value>>,
    #[serde(default)]
    interface: Option<Interface>,
    #[serde(default)]
    frames: Vec<Frame>,
}

/// A JSON object's entries in document order, duplicates included.
struct RawLink(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for RawLink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawLink, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLink;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a link object {"from", "from_socket", "to", "to_socket"}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawLink, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    entries.push((k, v));
                }
                Ok(RawLink(entries))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for LinkSpec {
    /// Strict canonical form only (used when a graph is read back, e.g. from a WAL step).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LinkSpec, D::Error> {
        let raw = RawLink::deserialize(d)?;
        let mut diags = Vec::new();
        link_from_raw(raw, &Pointer::root(), &mut diags)
            .filter(|l| l.form == LinkForm::Canonical && diags.is_empty())
            .ok_or_else(|| de::Error::custom("a link needs exactly from, from_socket, to, to_socket"))
    }
}

/// Parse graph_json text. `Err` is a document that cannot be read at all (one diagnostic
/// with the place serde stopped at); link-level problems come back as diagnostics.
pub fn parse(text: &str) -> Result<Parsed, Diagnostic> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: RawGraph = match serde_path_to_error::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => {
            let pointer = pointer_of(e.path());
            let inner = e.into_inner();
            let code = if inner.is_syntax() || inner.is_eof() { Code::InvalidJson } else { Code::InvalidShape };
            let hint = if code == Code::InvalidJson {
                "send one JSON object (no comments, no trailing commas)"
            } else {
                "top-level keys: nodes, links, node_settings, properties, interface, frames; \
                 nodes have id, type and optionally properties, label, location, paired_output"
            };
            return Err(Diagnostic::new(code, pointer, inner.to_string(), hint));
        }
    };
    if let Err(e) = de.end() {
        return Err(Diagnostic::new(Code::InvalidJson, Pointer::root(), e.to_string(), "send exactly one JSON object"));
    }
    let mut diagnostics = Vec::new();
    let mut links = Vec::new();
    for (i, raw_link) in raw.links.into_iter().enumerate() {
        let at = Pointer::root().key("links").index(i);
        if let Some(link) = link_from_raw(raw_link, &at, &mut diagnostics) {
            links.push((i, link));
        }
    }
    // Links that could not be read are left out of the graph; `link_index` keeps each
    // remaining link's index in the document so pointers stay true.
    let graph = Graph {
        nodes: raw.nodes,
        links: links.iter().map(|(_, l)| l.clone()).collect(),
        node_settings: raw.node_settings,
        properties: raw.properties,
        interface: raw.interface,
        frames: raw.frames,
    };
    let link_index = links.iter().map(|(i, _)| *i).collect();
    let mut parsed = Parsed { graph, link_index, diagnostics };
    parsed.diagnostics.sort_by_key(|d| d.pointer.clone());
    Ok(parsed)
}

fn link_from_raw(raw: RawLink, at: &Pointer, diags: &mut Vec<Diagnostic>) -> Option<LinkSpec> {
    let mut from = None;
    let mut to = None;
    let mut from_socket = None;
    let mut to_socket = None;
    let mut bare: Vec<String> = Vec::new();
    let mut ok = true;
    for (k, v) in raw.0 {
        let Some(s) = v.as_str().map(str::to_string) else {
            diags.push(Diagnostic::new(
                Code::InvalidLink,
                at.key(&k),
                format!("`{k}` must be a string, got {v}"),
                "node ids and socket names are strings",
            ));
            ok = false;
            continue;
        };
        let slot = match k.as_str() {
            "from" => &mut from,
            "to" => &mut to,
            "from_socket" => &mut from_socket,
            "to_socket" => &mut to_socket,
            "socket" => {
                bare.push(s);
                continue;
            }
            other => {
                diags.push(Diagnostic::new(
                    Code::InvalidLink,
                    at.key(other),
                    format!("unknown link key `{other}`"),
                    "a link is {\"from\", \"from_socket\", \"to\", \"to_socket\"}",
                ));
                ok = false;
                continue;
            }
        };
        if slot.is_some() {
            diags.push(Diagnostic::new(
                Code::InvalidLink,
                at.key(&k),
                format!("`{k}` appears twice"),
                "give each of from, from_socket, to, to_socket once",
            ));
            ok = false;
        }
        *slot = Some(s);
    }
    let mut form = LinkForm::Canonical;
    match (bare.len(), from_socket.is_some() || to_socket.is_some()) {
        (0, _) => {}
        (2, false) => {
            form = LinkForm::DuplicateSocketKey;
            to_socket = bare.pop();
            from_socket = bare.pop();
            diags.push(Diagnostic::new(
                Code::DuplicateSocketKey,
                at.key("socket"),
                "link repeats the key \"socket\"; read the first as from_socket and the second as to_socket",
                "write {\"from\", \"from_socket\", \"to\", \"to_socket\"}: most JSON parsers keep only the last \"socket\"",
            ));
        }
        (n, _) => {
            diags.push(Diagnostic::new(
                Code::InvalidLink,
                at.key("socket"),
                format!("`socket` appears {n} time(s) beside from_socket/to_socket"),
                "name both sockets: {\"from\", \"from_socket\", \"to\", \"to_socket\"}",
            ));
            ok = false;
        }
    }
    for (name, v) in [("from", &from), ("from_socket", &from_socket), ("to", &to), ("to_socket", &to_socket)] {
        if v.is_none() {
            diags.push(Diagnostic::new(
                Code::InvalidLink,
                at.key(name),
                format!("link has no `{name}`"),
                "a link is {\"from\", \"from_socket\", \"to\", \"to_socket\"}",
            ));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(LinkSpec { from: from?, from_socket: from_socket?, to: to?, to_socket: to_socket?, form })
}

fn pointer_of(path: &serde_path_to_error::Path) -> Pointer {
    use serde_path_to_error::Segment as S;
    let mut p = Pointer::root();
    for seg in path.iter() {
        p = match seg {
            S::Seq { index } => p.index(*index),
            S::Map { key } => p.key(key),
            S::Enum { variant } => p.key(variant),
            S::Unknown => p,
        };
    }
    p
}

impl Graph {
    /// Canonical JSON (links with from_socket/to_socket), pretty-printed.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
