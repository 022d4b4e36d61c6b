//! The validator: checks a graph against one Blender version's catalogue and answers with a
//! [`Report`] (docs/GEONODES.md §Validator lists every rule and code). Pure: no I/O.
//!
//! Order: limits → nodes (types, properties) → interface → sockets per node (properties
//! first, because they decide which sockets exist) → node_settings → links (sockets,
//! direction, types, duplicates, multi-input) → zones → cycles → fields → required inputs
//! and group output → frames.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use crate::catalogue::{Catalogue, FieldSupport, NodeType, PropertyType, SocketDef, SocketType, VariantMode};
use crate::graph::{self, Graph, LinkSpec, NodeSpec, Parsed};
use crate::report::{Code, Diagnostic, Pointer, Report};

/// Size limits (docs/GEONODES.md §Limits): a graph beyond them is refused before any work.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_nodes: usize,
    pub max_links: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_bytes: 1 << 20, max_nodes: 2000, max_links: 8000 }
    }
}

pub const GROUP_INPUT: &str = "NodeGroupInput";
pub const GROUP_OUTPUT: &str = "NodeGroupOutput";

/// Validate graph_json text.
pub fn validate_str(text: &str, cat: &Catalogue, limits: &Limits) -> Report {
    let blender = cat.version.as_str();
    if text.len() > limits.max_bytes {
        return Report::from_diagnostics(
            blender,
            vec![Diagnostic::new(
                Code::LimitExceeded,
                Pointer::root(),
                format!("graph is {} bytes; the limit is {}", text.len(), limits.max_bytes),
                "split the tree into smaller graphs",
            )],
        );
    }
    match graph::parse(text) {
        Ok(parsed) => validate(&parsed, cat, limits),
        Err(d) => Report::from_diagnostics(blender, vec![d]),
    }
}

/// Validate a parsed graph. A link Blender refuses but a conversion rule covers
/// ([`conversion_node`]) is a `CONVERSION_INSERTED` warning, and the report carries the
/// graph to build with the conversion nodes in it — itself validated, so what is built is
/// exactly a graph the validator accepts.
pub fn validate(parsed: &Parsed, cat: &Catalogue, limits: &Limits) -> Report {
    let mut v = Validator {
        cat,
        parsed,
        g: &parsed.graph,
        out: parsed.diagnostics.clone(),
        nodes: Vec::new(),
        conversions: Vec::new(),
    };
    v.run(limits);
    let conversions = std::mem::take(&mut v.conversions);
    let mut report = Report::from_diagnostics(cat.version.as_str(), v.out);
    if report.is_ok() && !conversions.is_empty() {
        let converted = with_conversions(&parsed.graph, &conversions);
        let again = validate(&Parsed::from_graph(converted.clone()), cat, limits);
        if again.is_ok() && !again.has(Code::ConversionInserted) {
            report.graph = Some(converted);
        } else {
            // A rule that does not hold for this catalogue: refuse rather than build
            // something the validator has not accepted.
            report = Report::from_diagnostics(
                cat.version.as_str(),
                report.warnings.into_iter().chain(again.errors).chain(again.warnings).collect(),
            );
            if report.is_ok() {
                report.errors.push(Diagnostic::new(
                    Code::IncompatibleSockets,
                    Pointer::root().key("links"),
                    "the conversion nodes could not be inserted cleanly",
                    "insert the conversion nodes named in the warnings yourself",
                ));
                report.status = crate::report::Status::ErrorsFound;
            }
        }
    }
    report
}

/// The conversion node for a socket-type pair Blender refuses to link but that converts
/// the same way as a neighbouring pair Blender accepts (docs/GEONODES.md §Conversions):
/// Integer, Boolean and Color into Rotation go through Euler to Rotation (as Blender's own
/// Float/Vector → Rotation reads the value as Euler angles); Rotation into Color goes through
/// Rotation to Euler (as Blender's own Rotation → Vector). Returns (node, input, output).
pub fn conversion_node(from: SocketType, to: SocketType) -> Option<(&'static str, &'static str, &'static str)> {
    use SocketType::*;
    match (from, to) {
        (Int | Boolean | Rgba, Rotation) => Some(("FunctionNodeEulerToRotation", "Euler", "Rotation")),
        (Rotation, Rgba) => Some(("FunctionNodeRotationToEuler", "Rotation", "Euler")),
        _ => None,
    }
}

/// One inserted conversion: the link it replaces and the node that goes in between.
#[derive(Clone, Debug)]
struct Conversion {
    link: usize,
    node: &'static str,
    input: &'static str,
    output: &'static str,
}

/// `g` with each converted link split in two around a new conversion node (`convert_<k>`,
/// placed between its ends and in every frame holding both). The first half keeps the
/// link's index, the second half is appended, so pointers into `links` stay meaningful.
fn with_conversions(g: &Graph, conversions: &[Conversion]) -> Graph {
    let mut out = g.clone();
    let mut taken: BTreeSet<String> = g.nodes.iter().map(|n| n.id.clone()).collect();
    for c in conversions {
        let link = out.links[c.link].clone();
        let mut id = format!("convert_{}", c.link);
        while taken.contains(&id) {
            id.push('_');
        }
        taken.insert(id.clone());
        let at = |nid: &str| out.nodes.iter().find(|n| n.id == nid).and_then(|n| n.location);
        let location = match (at(&link.from), at(&link.to)) {
            (Some(a), Some(b)) => Some([(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0]),
            _ => None,
        };
        out.nodes.push(NodeSpec {
            id: id.clone(),
            node_type: c.node.to_string(),
            label: Some(format!("converted for {}.{}", link.to, link.to_socket)),
            location,
            ..NodeSpec::default()
        });
        for f in &mut out.frames {
            if f.nodes.contains(&link.from) && f.nodes.contains(&link.to) {
                f.nodes.push(id.clone());
            }
        }
        out.links[c.link] = LinkSpec {
            from: link.from.clone(),
            from_socket: link.from_socket.clone(),
            to: id.clone(),
            to_socket: c.input.to_string(),
            form: graph::LinkForm::Canonical,
        };
        out.links.push(LinkSpec {
            from: id,
            from_socket: c.output.to_string(),
            to: link.to,
            to_socket: link.to_socket,
            form: graph::LinkForm::Canonical,
        });
    }
    out
}

/// A socket of a node as this graph has it (after properties / interface).
#[derive(Clone, Debug)]
pub struct Sock {
    pub name: String,
    pub identifier: String,
    pub idname: String,
    pub kind: SocketType,
    pub field: FieldSupport,
    pub multi_input: bool,
    pub enabled: bool,
    pub default: Option<Value>,
}

impl Sock {
    fn from_def(d: &SocketDef, enabled: bool) -> Sock {
        Sock {
            name: d.name.clone(),
            identifier: d.identifier.clone(),
            idname: d.idname.clone(),
            kind: d.kind,
            field: d.field,
            multi_input: d.multi_input,
            enabled,
            default: d.default.clone(),
        }
    }
}

/// A node with its type resolved and its sockets decided.
#[derive(Clone, Debug)]
pub struct Resolved<'c> {
    pub ty: Option<&'c NodeType>,
    pub properties: Map<String, Value>,
    pub inputs: Vec<Sock>,
    pub outputs: Vec<Sock>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Input,
    Output,
}

impl Side {
    fn word(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }
    fn other(self) -> Side {
        match self {
            Side::Input => Side::Output,
            Side::Output => Side::Input,
        }
    }
}

/// Why a socket reference did not resolve.
#[derive(Clone, Debug)]
pub enum SocketError {
    Unknown { available: Vec<String> },
    Ambiguous { choices: Vec<String> },
    Disabled { enable_with: Option<BTreeMap<String, Value>> },
    WrongSide,
}

impl<'c> Resolved<'c> {
    pub fn sockets(&self, side: Side) -> &[Sock] {
        match side {
            Side::Input => &self.inputs,
            Side::Output => &self.outputs,
        }
    }

    /// Resolve `want` (name, `Name#k`, or identifier) among this node's sockets on `side`.
    pub fn resolve(&self, want: &str, side: Side) -> Result<usize, SocketError> {
        let socks = self.sockets(side);
        let usable = |s: &Sock| s.enabled && s.kind != SocketType::Custom;
        if let Some((name, k)) = want.rsplit_once('#') {
            if let Ok(k) = k.parse::<usize>() {
                let same: Vec<usize> =
                    (0..socks.len()).filter(|&i| usable(&socks[i]) && socks[i].name == name).collect();
                if let Some(&i) = same.get(k) {
                    return Ok(i);
                }
            }
        }
        let by_name: Vec<usize> = (0..socks.len()).filter(|&i| usable(&socks[i]) && socks[i].name == want).collect();
        match by_name.len() {
            1 => return Ok(by_name[0]),
            0 => {}
            _ => {
                let choices = by_name
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| format!("{}#{k} (identifier {})", socks[i].name, socks[i].identifier))
                    .collect();
                return Err(SocketError::Ambiguous { choices });
            }
        }
        if let Some(i) = (0..socks.len()).find(|&i| usable(&socks[i]) && socks[i].identifier == want) {
            return Ok(i);
        }
        if let Some(i) = (0..socks.len()).find(|&i| socks[i].name == want || socks[i].identifier == want) {
            if socks[i].kind != SocketType::Custom {
                return Err(SocketError::Disabled { enable_with: self.enabling_properties(side, i) });
            }
        }
        let other = self.sockets(side.other());
        if other.iter().any(|s| usable(s) && (s.name == want || s.identifier == want)) {
            return Err(SocketError::WrongSide);
        }
        let mut available: Vec<String> = Vec::new();
        for s in socks.iter().filter(|s| usable(s)) {
            if !available.contains(&s.name) {
                available.push(s.name.clone());
            }
        }
        Err(SocketError::Unknown { available })
    }

    /// Property values under which socket `i` exists (the first catalogue variant).
    fn enabling_properties(&self, side: Side, i: usize) -> Option<BTreeMap<String, Value>> {
        let ty = self.ty?;
        let idx_in_type = {
            let s = &self.sockets(side)[i];
            let defs = match side {
                Side::Input => &ty.inputs,
                Side::Output => &ty.outputs,
            };
            defs.iter().position(|d| d.identifier == s.identifier && d.idname == s.idname)?
        };
        ty.variants
            .iter()
            .find(|v| match side {
                Side::Input => v.inputs.contains(&idx_in_type),
                Side::Output => v.outputs.contains(&idx_in_type),
            })
            .map(|v| v.properties.clone())
    }
}

/// Decide a catalogue node's sockets under `props` (user values over the defaults).
/// Returns the sockets and whether the catalogue only approximates this combination.
pub fn sockets_for(ty: &NodeType, props: &Map<String, Value>) -> (Vec<Sock>, Vec<Sock>, bool) {
    let effective =
        |k: &str| -> Option<Value> { props.get(k).cloned().or_else(|| ty.property(k).and_then(|p| p.default.clone())) };
    let mut chosen = None;
    let mut approximate = false;
    if !ty.variants.is_empty() {
        match ty.variant_mode {
            VariantMode::Product => {
                chosen =
                    ty.variants.iter().find(|v| v.properties.iter().all(|(k, val)| effective(k).as_ref() == Some(val)));
            }
            VariantMode::Single => {
                let deviating: Vec<&crate::catalogue::Variant> = ty
                    .variants
                    .iter()
                    .filter(|v| {
                        !v.properties.is_empty()
                            && v.properties.iter().all(|(k, val)| props.get(k) == Some(val))
                            && v.properties
                                .iter()
                                .any(|(k, val)| ty.property(k).and_then(|p| p.default.as_ref()) != Some(val))
                    })
                    .collect();
                approximate = deviating.len() > 1;
                chosen = deviating.first().copied().or_else(|| ty.variants.iter().find(|v| v.properties.is_empty()));
            }
        }
    }
    let inputs = ty
        .inputs
        .iter()
        .enumerate()
        .map(|(i, d)| Sock::from_def(d, chosen.map(|v| v.inputs.contains(&i)).unwrap_or(d.enabled)))
        .collect();
    let outputs = ty
        .outputs
        .iter()
        .enumerate()
        .map(|(i, d)| Sock::from_def(d, chosen.map(|v| v.outputs.contains(&i)).unwrap_or(d.enabled)))
        .collect();
    (inputs, outputs, approximate)
}

/// The interface a graph declares, or the modifier default (Geometry in, Geometry out).
pub fn interface_of(g: &Graph) -> graph::Interface {
    g.interface.clone().unwrap_or_else(|| {
        let geo = || graph::InterfaceSocket {
            name: "Geometry".into(),
            socket_type: "NodeSocketGeometry".into(),
            ..Default::default()
        };
        graph::Interface { inputs: vec![geo()], outputs: vec![geo()] }
    })
}

/// The sockets a Group Input (`side` Output: the interface inputs) or Group Output (`side`
/// Input: the interface outputs) node has for the declared interface.
pub fn interface_sockets(cat: &Catalogue, list: &[graph::InterfaceSocket], side: Side) -> Vec<Sock> {
    list.iter()
        .enumerate()
        .map(|(k, s)| {
            let t = cat.interface_socket_type(&s.socket_type);
            Sock {
                name: s.name.clone(),
                identifier: format!("Socket_{k}"),
                idname: t.map(|t| t.idname.clone()).unwrap_or_else(|| s.socket_type.clone()),
                kind: t.map(|t| t.kind).unwrap_or(SocketType::Unknown),
                // Group inputs of a modifier's tree are single values; group outputs take fields.
                field: match side {
                    Side::Output => FieldSupport::Single,
                    Side::Input => FieldSupport::Field,
                },
                multi_input: false,
                enabled: true,
                default: s.default.clone(),
            }
        })
        .collect()
}

/// Zone input idname → its output idname (`GeometryNodeRepeatInput` → `…RepeatOutput`), read
/// from the catalogue: every `…Input` type with an `…Output` twin except group IO.
pub fn zone_output_of(cat: &Catalogue, idname: &str) -> Option<String> {
    if idname == GROUP_INPUT {
        return None;
    }
    let stem = idname.strip_suffix("Input")?;
    let out = format!("{stem}Output");
    cat.node(&out).map(|_| out)
}

struct Validator<'a> {
    cat: &'a Catalogue,
    parsed: &'a Parsed,
    g: &'a Graph,
    out: Vec<Diagnostic>,
    nodes: Vec<Resolved<'a>>,
    conversions: Vec<Conversion>,
}

fn node_ptr(i: usize) -> Pointer {
    Pointer::root().key("nodes").index(i)
}

impl<'a> Validator<'a> {
    fn push(&mut self, code: Code, at: Pointer, message: impl Into<String>, hint: impl Into<String>) {
        self.out.push(Diagnostic::new(code, at, message, hint));
    }

    fn run(&mut self, limits: &Limits) {
        let g = self.g;
        if g.nodes.len() > limits.max_nodes || g.links.len() > limits.max_links {
            self.push(
                Code::LimitExceeded,
                Pointer::root(),
                format!(
                    "{} nodes and {} links; the limits are {} and {}",
                    g.nodes.len(),
                    g.links.len(),
                    limits.max_nodes,
                    limits.max_links
                ),
                "split the tree into smaller graphs",
            );
            return;
        }
        let ids = self.check_node_ids();
        let iface = self.check_interface();
        self.resolve_nodes(&iface);
        self.check_settings(&ids);
        let links = self.check_links(&ids);
        let pairs = self.check_zones(&ids);
        let acyclic = self.check_cycles(&links, &pairs);
        if acyclic {
            self.check_fields(&links);
        }
        self.check_required(&links, &iface);
        self.check_frames(&ids);
    }

    /// Unique ids; returns id → node index (first occurrence).
    fn check_node_ids(&mut self) -> HashMap<String, usize> {
        let mut ids = HashMap::new();
        for (i, n) in self.g.nodes.iter().enumerate() {
            if n.id.is_empty() {
                self.push(
                    Code::InvalidShape,
                    node_ptr(i).key("id"),
                    "node id is empty",
                    "give every node a unique id like n1",
                );
            } else if let Some(first) = ids.get(&n.id) {
                self.push(
                    Code::DuplicateNodeId,
                    node_ptr(i).key("id"),
                    format!("node id \"{}\" is already used by nodes[{first}]", n.id),
                    "give every node a unique id",
                );
            } else {
                ids.insert(n.id.clone(), i);
            }
        }
        ids
    }

    fn check_interface(&mut self) -> graph::Interface {
        let iface = interface_of(self.g);
        let at = Pointer::root().key("interface");
        for (side, list) in [("inputs", &iface.inputs), ("outputs", &iface.outputs)] {
            let mut seen = BTreeSet::new();
            for (k, s) in list.iter().enumerate() {
                let p = at.key(side).index(k);
                if s.name.is_empty() || !seen.insert(s.name.clone()) {
                    self.push(
                        Code::InvalidInterface,
                        p.key("name"),
                        format!("interface {side} name \"{}\" is empty or repeated", s.name),
                        "give each group socket a unique name",
                    );
                }
                match self.cat.interface_socket_type(&s.socket_type) {
                    None => {
                        let known: Vec<&str> = self.cat.compat.socket_types.iter().map(|t| t.idname.as_str()).collect();
                        self.push(
                            Code::InvalidInterface,
                            p.key("type"),
                            format!("\"{}\" is not a group socket type in Blender {}", s.socket_type, self.cat.version),
                            format!("use one of {}", known.join(", ")),
                        );
                    }
                    Some(t) => {
                        if let Some(d) = &s.default {
                            if let Err(why) = check_value(t.kind, d, None) {
                                self.push(
                                    Code::InvalidInterface,
                                    p.key("default"),
                                    why,
                                    "give a default of the socket's type",
                                );
                            }
                        }
                    }
                }
                if let (Some(lo), Some(hi)) = (s.min, s.max) {
                    if lo > hi {
                        self.push(
                            Code::InvalidInterface,
                            p.key("min"),
                            format!("min {lo} > max {hi}"),
                            "swap min and max",
                        );
                    }
                }
            }
        }
        for (side, list) in [("inputs", &iface.inputs), ("outputs", &iface.outputs)] {
            let first_is_geometry = list
                .first()
                .and_then(|s| self.cat.interface_socket_type(&s.socket_type))
                .is_some_and(|t| t.kind == SocketType::Geometry);
            if !first_is_geometry {
                self.push(
                    Code::RequiredGroupIo,
                    at.key(side).index(0),
                    format!("a modifier's node group needs Geometry as its first {}", &side[..side.len() - 1]),
                    format!(
                        "put {{\"name\": \"Geometry\", \"type\": \"NodeSocketGeometry\"}} first in interface.{side}"
                    ),
                );
            }
        }
        iface
    }

    fn resolve_nodes(&mut self, iface: &graph::Interface) {
        for (i, n) in self.g.nodes.iter().enumerate() {
            let mut props = n.properties.clone();
            if let Some(extra) = self.g.properties.get(&n.id) {
                for (k, v) in extra {
                    if props.get(k).is_some_and(|old| old != v) {
                        self.push(
                            Code::InvalidPropertyValue,
                            Pointer::root().key("properties").key(&n.id).key(k),
                            format!("`{k}` is set to {} here and {} in nodes[{i}].properties", v, props[k]),
                            "set each property once",
                        );
                    }
                    props.insert(k.clone(), v.clone());
                }
            }
            let resolved = match n.node_type.as_str() {
                GROUP_INPUT => Resolved {
                    ty: self.cat.node(GROUP_INPUT),
                    properties: props,
                    inputs: Vec::new(),
                    outputs: interface_sockets(self.cat, &iface.inputs, Side::Output),
                },
                GROUP_OUTPUT => Resolved {
                    ty: self.cat.node(GROUP_OUTPUT),
                    properties: props,
                    inputs: interface_sockets(self.cat, &iface.outputs, Side::Input),
                    outputs: Vec::new(),
                },
                t => match self.cat.node(t) {
                    None => {
                        self.unknown_type(i, n);
                        Resolved { ty: None, properties: props, inputs: Vec::new(), outputs: Vec::new() }
                    }
                    Some(ty) => {
                        if matches!(t, "GeometryNodeGroup" | "NodeFrame") {
                            let hint = if t == "NodeFrame" {
                                "declare frames in the `frames` section"
                            } else {
                                "nested node groups are not built from graph_json; inline their nodes"
                            };
                            self.push(
                                Code::UnsupportedNode,
                                node_ptr(i).key("type"),
                                format!("{t} cannot be built from graph_json"),
                                hint,
                            );
                        }
                        self.check_properties(i, n, ty, &props);
                        let (inputs, outputs, approximate) = sockets_for(ty, &props);
                        if approximate {
                            self.push(
                                Code::VariantApproximate,
                                node_ptr(i).key("properties"),
                                format!("the catalogue lists {t}'s sockets for one changed property at a time; several are set"),
                                "check the sockets after the build (geonodes describe)",
                            );
                        }
                        Resolved { ty: Some(ty), properties: props, inputs, outputs }
                    }
                },
            };
            self.nodes.push(resolved);
        }
    }

    fn unknown_type(&mut self, i: usize, n: &NodeSpec) {
        let suggestions: Vec<String> = self.cat.find_by_name(&n.node_type).iter().map(|t| t.idname.clone()).collect();
        let hint = if !suggestions.is_empty() {
            format!("did you mean {}?", suggestions.join(" or "))
        } else if n.node_type.starts_with("ShaderNode") {
            "shader nodes belong in a material's node tree (mat.node_tree), not in Geometry Nodes".to_string()
        } else {
            "find the identifier with `vibesync geonodes query --search WORD`".to_string()
        };
        self.push(
            Code::UnknownNodeType,
            node_ptr(i).key("type"),
            format!("\"{}\" is not a Geometry Nodes node type in Blender {}", n.node_type, self.cat.version),
            hint,
        );
    }

    fn check_properties(&mut self, i: usize, n: &NodeSpec, ty: &NodeType, props: &Map<String, Value>) {
        for (k, v) in props {
            let at = if n.properties.contains_key(k) {
                node_ptr(i).key("properties").key(k)
            } else {
                Pointer::root().key("properties").key(&n.id).key(k)
            };
            let Some(def) = ty.property(k) else {
                let names: Vec<&str> = ty.properties.iter().map(|p| p.identifier.as_str()).collect();
                let hint = if names.is_empty() {
                    format!("{} has no properties; socket values go in node_settings", ty.idname)
                } else {
                    format!("{} has: {}", ty.idname, names.join(", "))
                };
                self.push(Code::UnknownProperty, at, format!("{} has no property `{k}`", ty.idname), hint);
                continue;
            };
            let ok = match def.kind {
                PropertyType::Enum => match (v.as_str(), &def.items) {
                    (Some(s), Some(items)) => items.iter().any(|it| it == s),
                    (Some(_), None) => true,
                    (None, _) => false,
                },
                PropertyType::Boolean => v.is_boolean(),
                PropertyType::Int => v.is_i64() || v.is_u64(),
                PropertyType::Float => v.is_number(),
                PropertyType::String | PropertyType::Pointer => v.is_string(),
                PropertyType::Collection | PropertyType::Unknown => true,
            };
            if !ok {
                let hint = match &def.items {
                    Some(items) => format!("one of {}", items.join(", ")),
                    None => format!("a value of type {:?}", def.kind).to_lowercase(),
                };
                self.push(Code::InvalidPropertyValue, at, format!("{v} is not a valid `{k}` for {}", ty.idname), hint);
            }
        }
    }

    fn describe(&self, idx: usize) -> String {
        let n = &self.g.nodes[idx];
        format!("{} ({})", n.id, n.node_type)
    }

    fn socket_problem(&mut self, code_at: Pointer, idx: usize, want: &str, side: Side, err: SocketError) {
        let who = self.describe(idx);
        match err {
            SocketError::Unknown { available } => self.push(
                Code::UnknownSocket,
                code_at,
                format!("\"{want}\" is not an {} of {who}", side.word()),
                format!(
                    "{}s: {}",
                    side.word(),
                    if available.is_empty() { "(none)".into() } else { available.join(", ") }
                ),
            ),
            SocketError::Ambiguous { choices } => self.push(
                Code::AmbiguousSocket,
                code_at,
                format!("\"{want}\" is ambiguous on {who}: {}", choices.join(", ")),
                "address the socket as Name#k (k-th of that name, from 0) or by its identifier",
            ),
            SocketError::Disabled { enable_with } => self.push(
                Code::SocketDisabled,
                code_at,
                format!("\"{want}\" exists on {who} but is not available with these properties"),
                match enable_with {
                    Some(p) => format!("it exists with properties {}", Value::Object(p.into_iter().collect())),
                    None => "change the node's properties or use another socket".into(),
                },
            ),
            SocketError::WrongSide => self.push(
                Code::WrongDirection,
                code_at,
                format!("\"{want}\" is an {} of {who}, not an {}", side.other().word(), side.word()),
                "links go from an output (from, from_socket) to an input (to, to_socket); swap them",
            ),
        }
    }

    fn check_settings(&mut self, ids: &HashMap<String, usize>) {
        for (nid, settings) in &self.g.node_settings {
            let at = Pointer::root().key("node_settings").key(nid);
            let Some(&idx) = ids.get(nid) else {
                self.push(Code::UnknownSettingNode, at, format!("no node has id \"{nid}\""), "use an id from `nodes`");
                continue;
            };
            if self.nodes[idx].ty.is_none() {
                continue;
            }
            for (key, value) in settings {
                let p = at.key(key);
                match self.nodes[idx].resolve(key, Side::Input) {
                    Ok(s) => {
                        let sock = self.nodes[idx].inputs[s].clone();
                        if let Err(why) = check_value(sock.kind, value, sock.default.as_ref()) {
                            self.push(
                                Code::InvalidSetting,
                                p,
                                format!("{why} for input \"{key}\" of {}", self.describe(idx)),
                                setting_hint(sock.kind),
                            );
                        }
                    }
                    Err(err) => {
                        let is_property = self.nodes[idx].ty.and_then(|t| t.property(key)).is_some();
                        if is_property {
                            self.push(
                                Code::SettingIsProperty,
                                p,
                                format!("`{key}` is a property of {}, not an input", self.describe(idx)),
                                format!("move it to nodes[{idx}].properties (properties decide which sockets exist)"),
                            );
                        } else {
                            self.socket_problem(p, idx, key, Side::Input, err);
                        }
                    }
                }
            }
        }
    }

    /// Per link: Some((from node, output index, to node, input index)) when it resolved.
    fn check_links(&mut self, ids: &HashMap<String, usize>) -> Vec<Option<(usize, usize, usize, usize)>> {
        let mut resolved = Vec::new();
        let mut seen: HashMap<(usize, usize, usize, usize), usize> = HashMap::new();
        let mut into: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        for (k, l) in self.g.links.iter().enumerate() {
            let at = self.parsed.link_pointer(k);
            resolved.push(self.check_link(k, l, &at, ids));
            if let Some(r) = resolved[k] {
                if let Some(first) = seen.get(&r) {
                    let first_ptr = self.parsed.link_pointer(*first).display();
                    self.push(Code::DuplicateLink, at, format!("same link as {first_ptr}"), "remove the repeated link");
                    resolved[k] = None;
                    continue;
                }
                seen.insert(r, k);
                into.entry((r.2, r.3)).or_default().push(k);
            }
        }
        for ((node, input), ks) in into {
            if ks.len() > 1 && !self.nodes[node].inputs[input].multi_input {
                let name = self.nodes[node].inputs[input].name.clone();
                let others: Vec<String> =
                    ks[..ks.len() - 1].iter().map(|&k| self.parsed.link_pointer(k).display()).collect();
                let last = *ks.last().unwrap_or(&0);
                self.push(
                    Code::MultipleLinksToInput,
                    self.parsed.link_pointer(last).key("to_socket"),
                    format!(
                        "input \"{name}\" of {} takes one link; {} also link into it",
                        self.describe(node),
                        others.join(", ")
                    ),
                    "join the values first (Join Geometry takes many links), or link into another input",
                );
            }
        }
        resolved
    }

    fn check_link(
        &mut self,
        k: usize,
        l: &LinkSpec,
        at: &Pointer,
        ids: &HashMap<String, usize>,
    ) -> Option<(usize, usize, usize, usize)> {
        let mut ends = [None, None];
        for (slot, (key, id)) in [("from", &l.from), ("to", &l.to)].into_iter().enumerate() {
            match ids.get(id) {
                Some(&i) => ends[slot] = Some(i),
                None => self.push(
                    Code::UnknownLinkNode,
                    at.key(key),
                    format!("no node has id \"{id}\""),
                    "use an id from `nodes`",
                ),
            }
        }
        let (a, b) = (ends[0]?, ends[1]?);
        if self.nodes[a].ty.is_none() || self.nodes[b].ty.is_none() {
            return None;
        }
        let out = match self.nodes[a].resolve(&l.from_socket, Side::Output) {
            Ok(s) => Some(s),
            Err(e) => {
                self.socket_problem(at.key("from_socket"), a, &l.from_socket, Side::Output, e);
                None
            }
        };
        let inp = match self.nodes[b].resolve(&l.to_socket, Side::Input) {
            Ok(s) => Some(s),
            Err(e) => {
                self.socket_problem(at.key("to_socket"), b, &l.to_socket, Side::Input, e);
                None
            }
        };
        let (o, i) = (out?, inp?);
        let (from, to) = (&self.nodes[a].outputs[o], &self.nodes[b].inputs[i]);
        match self.cat.link_types_valid(from.kind, to.kind) {
            Some(true) => Some((a, o, b, i)),
            Some(false) if conversion_node(from.kind, to.kind).is_some_and(|(n, ..)| self.cat.node(n).is_some()) => {
                let (node, input, output) = conversion_node(from.kind, to.kind)?;
                let label = self.cat.node(node).map(|n| n.label.clone()).unwrap_or_default();
                self.push(
                    Code::ConversionInserted,
                    at.clone(),
                    format!(
                        "{} output \"{}\" of {} does not link into {} input \"{}\" of {} directly; {label} ({node}) is inserted between them",
                        from.idname,
                        from.name,
                        self.describe(a),
                        to.idname,
                        to.name,
                        self.describe(b)
                    ),
                    "nothing to do; the graph to build (`graph`) has the node",
                );
                self.conversions.push(Conversion { link: k, node, input, output });
                Some((a, o, b, i))
            }
            Some(false) => {
                let msg = format!(
                    "{} output \"{}\" of {} cannot link into {} input \"{}\" of {}",
                    from.idname,
                    from.name,
                    self.describe(a),
                    to.idname,
                    to.name,
                    self.describe(b)
                );
                let hint = self.conversion_hint(from.kind, to.kind);
                self.push(Code::IncompatibleSockets, at.clone(), msg, hint);
                None
            }
            None => {
                // No measured row: Blender converts only between the types its table lists,
                // so two different unmeasured types do not link.
                self.push(
                    Code::IncompatibleSockets,
                    at.clone(),
                    format!(
                        "{} output \"{}\" of {} cannot link into {} input \"{}\" of {} (no conversion between {:?} and {:?})",
                        from.idname,
                        from.name,
                        self.describe(a),
                        to.idname,
                        to.name,
                        self.describe(b),
                        from.kind,
                        to.kind
                    ),
                    format!("link a {:?} socket into it", to.kind),
                );
                None
            }
        }
    }

    fn conversion_hint(&self, from: SocketType, to: SocketType) -> String {
        use SocketType::*;
        let node = |id: &str| self.cat.node(id).map(|n| format!("{} ({id})", n.label));
        let via = match (from, to) {
            (Rotation, Value | Int | Boolean) => {
                node("FunctionNodeRotationToEuler").map(|n| format!("insert {n} and Separate XYZ"))
            }
            _ => None,
        };
        let accepted: Vec<std::string::String> = self
            .cat
            .compat
            .socket_types
            .iter()
            .filter(|t| self.cat.link_types_valid(t.kind, to) == Some(true))
            .map(|t| t.idname.clone())
            .collect();
        via.unwrap_or_else(|| format!("this input accepts {}", accepted.join(", ")))
    }

    /// Zone inputs paired with outputs. Returns (input node, output node) pairs.
    fn check_zones(&mut self, ids: &HashMap<String, usize>) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        let mut outputs_taken: BTreeMap<usize, usize> = BTreeMap::new();
        let zone_inputs: Vec<(usize, String)> = (0..self.g.nodes.len())
            .filter_map(|i| zone_output_of(self.cat, &self.g.nodes[i].node_type).map(|o| (i, o)))
            .collect();
        for (i, out_type) in &zone_inputs {
            let n = &self.g.nodes[*i];
            let target = match &n.paired_output {
                Some(id) => match ids.get(id) {
                    Some(&o) if self.g.nodes[o].node_type == *out_type => Some(o),
                    _ => {
                        self.push(
                            Code::ZoneUnpaired,
                            node_ptr(*i).key("paired_output"),
                            format!("paired_output \"{id}\" of {} is not a {out_type} node", self.describe(*i)),
                            format!("name the id of a {out_type} node"),
                        );
                        continue;
                    }
                },
                None => {
                    let same_in = zone_inputs.iter().filter(|(_, t)| t == out_type).count();
                    let outs: Vec<usize> =
                        (0..self.g.nodes.len()).filter(|&o| self.g.nodes[o].node_type == *out_type).collect();
                    if same_in == 1 && outs.len() == 1 {
                        Some(outs[0])
                    } else {
                        None
                    }
                }
            };
            match target {
                Some(o) => {
                    if let Some(prev) = outputs_taken.insert(o, *i) {
                        self.push(
                            Code::ZoneUnpaired,
                            node_ptr(*i),
                            format!(
                                "{} and {} both pair with {}",
                                self.describe(prev),
                                self.describe(*i),
                                self.describe(o)
                            ),
                            "each zone input pairs with its own output",
                        );
                    } else {
                        pairs.push((*i, o));
                    }
                }
                None => self.push(
                    Code::ZoneUnpaired,
                    node_ptr(*i),
                    format!("zone input {} has no {out_type}", self.describe(*i)),
                    format!("add a {out_type} node and name it in \"paired_output\""),
                ),
            }
        }
        let output_types: BTreeSet<&String> = zone_inputs.iter().map(|(_, t)| t).collect();
        let all_out_types: BTreeSet<String> =
            self.cat.nodes.iter().filter_map(|n| zone_output_of(self.cat, &n.idname)).collect();
        for (o, n) in self.g.nodes.iter().enumerate() {
            if all_out_types.contains(&n.node_type) && !outputs_taken.contains_key(&o) {
                let _ = &output_types;
                self.push(
                    Code::ZoneUnpaired,
                    node_ptr(o),
                    format!("zone output {} has no input node paired with it", self.describe(o)),
                    format!(
                        "add its input node ({}) with \"paired_output\": \"{}\"",
                        n.node_type.replace("Output", "Input"),
                        n.id
                    ),
                );
            }
        }
        pairs
    }

    /// Links may not form a cycle; a zone's input → output pairing counts as an edge.
    fn check_cycles(&mut self, links: &[Option<(usize, usize, usize, usize)>], pairs: &[(usize, usize)]) -> bool {
        let n = self.g.nodes.len();
        let mut adj: Vec<Vec<(usize, Option<usize>)>> = vec![Vec::new(); n];
        for (k, l) in links.iter().enumerate() {
            if let Some((a, _, b, _)) = l {
                adj[*a].push((*b, Some(k)));
            }
        }
        for (i, o) in pairs {
            adj[*i].push((*o, None));
        }
        // Iterative DFS with colours; report the link that closes the first cycle found.
        let mut colour = vec![0u8; n];
        for start in 0..n {
            if colour[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            colour[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if *next < adj[node].len() {
                    let (to, via) = adj[node][*next];
                    *next += 1;
                    if colour[to] == 1 {
                        let path: Vec<String> = stack
                            .iter()
                            .skip_while(|(x, _)| *x != to)
                            .map(|(x, _)| self.g.nodes[*x].id.clone())
                            .chain([self.g.nodes[to].id.clone()])
                            .collect();
                        let at = via.map(|k| self.parsed.link_pointer(k)).unwrap_or_else(|| node_ptr(node));
                        self.push(
                            Code::Cycle,
                            at,
                            format!("links form a cycle: {}", path.join(" → ")),
                            "node trees cannot loop; repeat work with a Repeat zone",
                        );
                        return false;
                    }
                    if colour[to] == 0 {
                        colour[to] = 1;
                        stack.push((to, 0));
                    }
                } else {
                    colour[node] = 2;
                    stack.pop();
                }
            }
        }
        true
    }

    /// What flows along each link must be something its input takes: a field only into
    /// inputs that take fields, a grid or a list only into inputs that take them.
    fn check_fields(&mut self, links: &[Option<(usize, usize, usize, usize)>]) {
        let n = self.g.nodes.len();
        let mut incoming: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); n]; // (from node, output, input)
        for (a, o, b, i) in links.iter().flatten() {
            incoming[*b].push((*a, *o, *i));
        }
        // carries[node][output]: the structure the output carries. Fixpoint over the DAG.
        let mut carries: Vec<Vec<Carried>> = self
            .nodes
            .iter()
            .map(|r| {
                r.outputs
                    .iter()
                    .map(|s| match s.field {
                        FieldSupport::Field => Carried::Field,
                        FieldSupport::Grid => Carried::Grid,
                        FieldSupport::List => Carried::List,
                        _ => Carried::Single,
                    })
                    .collect()
            })
            .collect();
        loop {
            let mut changed = false;
            for b in 0..n {
                let inflow = incoming[b]
                    .iter()
                    .filter(|(_, _, i)| {
                        self.nodes[b]
                            .inputs
                            .get(*i)
                            .is_some_and(|s| matches!(s.field, FieldSupport::Field | FieldSupport::Dynamic))
                    })
                    .map(|(a, o, _)| carries[*a][*o])
                    .max()
                    .unwrap_or(Carried::Single);
                for (o, s) in self.nodes[b].outputs.iter().enumerate() {
                    if s.field == FieldSupport::Dependent && inflow > carries[b][o] {
                        carries[b][o] = inflow;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for (k, l) in links.iter().enumerate() {
            let Some((a, o, b, i)) = l else { continue };
            let to = &self.nodes[*b].inputs[*i];
            let what = carries[*a][*o];
            let accepted = match to.field {
                FieldSupport::Single => what == Carried::Single,
                FieldSupport::Field => matches!(what, Carried::Single | Carried::Field),
                FieldSupport::Grid => what == Carried::Grid,
                FieldSupport::List => what == Carried::List,
                FieldSupport::Dynamic | FieldSupport::Dependent | FieldSupport::Unknown => true,
            };
            if accepted {
                continue;
            }
            let from = &self.nodes[*a].outputs[*o];
            let takes = match to.field {
                FieldSupport::Single => "a single value",
                FieldSupport::Field => "a single value or a field",
                FieldSupport::Grid => "a volume grid",
                _ => "a list",
            };
            self.push(
                Code::FieldIntoSingleValue,
                self.parsed.link_pointer(k),
                format!(
                    "output \"{}\" of {} carries {}, but input \"{}\" of {} takes {takes}",
                    from.name,
                    self.describe(*a),
                    what.word(),
                    to.name,
                    self.describe(*b)
                ),
                match what {
                    Carried::Field => {
                        "evaluate the field first (e.g. Attribute Statistic, Sample Index) or feed a constant"
                    }
                    _ => "link a socket of the structure this input takes",
                },
            );
        }
    }

    fn check_required(&mut self, links: &[Option<(usize, usize, usize, usize)>], iface: &graph::Interface) {
        let n = self.g.nodes.len();
        let outputs: Vec<usize> = (0..n).filter(|&i| self.g.nodes[i].node_type == GROUP_OUTPUT).collect();
        if outputs.is_empty() {
            self.push(
                Code::MissingGroupOutput,
                Pointer::root().key("nodes"),
                "the graph has no Group Output node",
                "add {\"id\": \"go\", \"type\": \"NodeGroupOutput\"} and link the result into its Geometry",
            );
            return;
        }
        let mut linked_inputs: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut upstream: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (a, _, b, i) in links.iter().flatten() {
            linked_inputs.insert((*b, *i));
            upstream[*b].push(*a);
        }
        for &go in &outputs {
            let geometry_linked = linked_inputs.contains(&(go, 0));
            if !iface.outputs.is_empty() && !geometry_linked {
                let name = iface.outputs[0].name.clone();
                self.push(
                    Code::GroupOutputUnlinked,
                    node_ptr(go),
                    format!("nothing links into \"{name}\" of the Group Output {}", self.g.nodes[go].id),
                    format!(
                        "link the final geometry into {{\"to\": \"{}\", \"to_socket\": \"{name}\"}}",
                        self.g.nodes[go].id
                    ),
                );
            }
        }
        // Nodes the output depends on.
        let mut reach = vec![false; n];
        let mut stack = outputs.clone();
        while let Some(x) = stack.pop() {
            if reach[x] {
                continue;
            }
            reach[x] = true;
            stack.extend(upstream[x].iter().copied());
        }
        for (i, r) in self.nodes.iter().enumerate() {
            if !reach[i] || r.ty.is_none() || self.g.nodes[i].node_type == GROUP_OUTPUT {
                continue;
            }
            for (s, sock) in r.inputs.iter().enumerate() {
                if sock.enabled
                    && sock.kind == SocketType::Geometry
                    && !sock.multi_input
                    && !linked_inputs.contains(&(i, s))
                {
                    self.out.push(Diagnostic::new(
                        Code::RequiredInputUnlinked,
                        node_ptr(i),
                        format!(
                            "geometry input \"{}\" of {} is not linked, so it works on nothing",
                            sock.name,
                            self.describe(i)
                        ),
                        "link a geometry into it (from the Group Input or a primitive)",
                    ));
                }
            }
        }
    }

    fn check_frames(&mut self, ids: &HashMap<String, usize>) {
        let mut frame_ids = BTreeSet::new();
        let mut owner: HashMap<&str, usize> = HashMap::new();
        for (f, frame) in self.g.frames.iter().enumerate() {
            let at = Pointer::root().key("frames").index(f);
            if frame.id.is_empty() || !frame_ids.insert(frame.id.clone()) || ids.contains_key(&frame.id) {
                self.push(
                    Code::InvalidFrame,
                    at.key("id"),
                    format!("frame id \"{}\" is empty or already used", frame.id),
                    "give every frame and node a unique id",
                );
            }
            if let Some(c) = &frame.color {
                if !(c.len() == 3 || c.len() == 4) || c.iter().any(|x| !(0.0..=1.0).contains(x)) {
                    self.push(
                        Code::InvalidFrame,
                        at.key("color"),
                        "color must be 3 or 4 numbers in [0, 1]",
                        "e.g. [0.2, 0.4, 0.8, 0.8]",
                    );
                }
            }
            for (k, nid) in frame.nodes.iter().enumerate() {
                if !ids.contains_key(nid) {
                    self.push(
                        Code::InvalidFrame,
                        at.key("nodes").index(k),
                        format!("frame \"{}\" names \"{nid}\", which is not a node", frame.id),
                        "frames may contain only declared nodes",
                    );
                } else if let Some(prev) = owner.insert(nid.as_str(), f) {
                    self.push(
                        Code::InvalidFrame,
                        at.key("nodes").index(k),
                        format!("node \"{nid}\" is already in frame {}", self.g.frames[prev].id),
                        "put each node in at most one frame",
                    );
                }
            }
        }
    }
}

/// What flows along a link, ordered so that the "largest" inflow decides a dependent output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Carried {
    Single,
    Field,
    List,
    Grid,
}

impl Carried {
    fn word(self) -> &'static str {
        match self {
            Carried::Single => "a single value",
            Carried::Field => "a field",
            Carried::List => "a list",
            Carried::Grid => "a volume grid",
        }
    }
}

/// Does `v` fit a socket of type `kind`? `default` gives the expected array length.
pub fn check_value(kind: SocketType, v: &Value, default: Option<&Value>) -> Result<(), String> {
    use SocketType::*;
    let numbers =
        |n: usize| -> bool { v.as_array().is_some_and(|a| a.len() == n && a.iter().all(serde_json::Value::is_number)) };
    let want_len = default.and_then(serde_json::Value::as_array).map(Vec::len);
    let ok = match kind {
        Value => v.is_number(),
        Int => v.is_i64() || v.is_u64(),
        Boolean => v.is_boolean(),
        Vector => numbers(want_len.unwrap_or(3)),
        Rgba => numbers(4) || numbers(3),
        Rotation => numbers(3),
        Matrix => numbers(16),
        String | Menu | Object | Collection | Image | Material | Texture => v.is_string(),
        Geometry | Bundle | Closure | Shader | Custom => {
            return Err(format!("{kind:?} sockets take no value, only links"))
        }
        Unknown => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{v} is not a valid {kind:?} value"))
    }
}

fn setting_hint(kind: SocketType) -> &'static str {
    use SocketType::*;
    match kind {
        Value => "a number, e.g. 1.5",
        Int => "an integer, e.g. 32",
        Boolean => "true or false",
        Vector => "a list of numbers, e.g. [0, 0, 1]",
        Rgba => "[r, g, b, a] in 0..1",
        Rotation => "Euler angles in radians, [x, y, z]",
        Matrix => "16 numbers, column-major",
        String | Menu => "a string",
        Object | Collection | Image | Material | Texture => "the datablock's name",
        _ => "link a socket into it instead",
    }
}
