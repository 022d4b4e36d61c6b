//! Mermaid sketches ⇄ graph_json (docs/GEONODES.md §Mermaid).
//!
//! The dialect: `flowchart LR`; nodes `id["Label"]` where the label is a node name the
//! catalogue knows (`MeshCone`, `GroupInput`, `Math`, or a full idname); edges
//! `a --> |Socket| b` (the source socket; the target is the input of the same name, else
//! the first free input of the same type, else the first free input Blender converts to,
//! else the first input of the same type) or `a --> |From -> To| b`;
//! `subgraph f["Label"]` … `end` for frames; `%% id {"properties": …, "settings": …}` and
//! `%% interface {…}` comments carry what a sketch cannot draw. Anything else is refused
//! with the reason: another direction, parenthesised or unquoted labels, other edge kinds,
//! edges without a socket label, styling, a sketch without GroupInput and GroupOutput.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::catalogue::{strip_prefix, Catalogue, SocketType};
use crate::graph::{Frame, Graph, Interface, LinkForm, LinkSpec, NodeSpec};
use crate::validate::{interface_of, interface_sockets, sockets_for, Side, Sock, GROUP_INPUT, GROUP_OUTPUT};
use crate::GeonodesError;

fn refuse(line: usize, reason: impl Into<String>) -> GeonodesError {
    GeonodesError::Mermaid { line, reason: reason.into() }
}

struct Edge {
    line: usize,
    from: String,
    to: String,
    from_socket: String,
    to_socket: Option<String>,
}

/// Convert a sketch to graph_json.
pub fn from_mermaid(text: &str, cat: &Catalogue) -> Result<Graph, GeonodesError> {
    let mut header_seen = false;
    let mut nodes: Vec<NodeSpec> = Vec::new();
    let mut node_line: BTreeMap<String, usize> = BTreeMap::new();
    let mut edges: Vec<Edge> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut open_frame: Option<usize> = None;
    let mut extras: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut interface: Option<Interface> = None;

    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let s = raw.trim().trim_end_matches(';').trim();
        if s.is_empty() || s.starts_with("```") {
            continue;
        }
        if let Some(c) = s.strip_prefix("%%") {
            let c = c.trim();
            if let Some(rest) = c.strip_prefix("interface ") {
                interface = Some(serde_json::from_str(rest).map_err(|e| refuse(line, format!("%% interface: {e}")))?);
            } else if let Some((id, rest)) = c.split_once(' ') {
                if rest.trim_start().starts_with('{') {
                    let v: Map<String, Value> =
                        serde_json::from_str(rest).map_err(|e| refuse(line, format!("%% {id}: {e}")))?;
                    extras.insert(id.to_string(), v);
                }
            }
            continue;
        }
        if !header_seen {
            let mut words = s.split_whitespace();
            let kind = words.next().unwrap_or("");
            let dir = words.next().unwrap_or("");
            if kind != "flowchart" {
                return Err(refuse(line, format!("the sketch must start with `flowchart LR`, not `{s}`")));
            }
            if dir != "LR" {
                return Err(refuse(
                    line,
                    format!("direction `{dir}` is refused: only `flowchart LR` (left→right means output→input)"),
                ));
            }
            header_seen = true;
            continue;
        }
        let first = s.split_whitespace().next().unwrap_or("");
        match first {
            "subgraph" => {
                if open_frame.is_some() {
                    return Err(refuse(line, "nested subgraphs are refused: frames do not nest"));
                }
                let rest = s["subgraph".len()..].trim();
                let mut cur = Cursor { s: rest, line };
                let (id, label) = cur.node_token()?;
                frames.push(Frame { id, label, ..Default::default() });
                open_frame = Some(frames.len() - 1);
                continue;
            }
            "end" => {
                if open_frame.take().is_none() {
                    return Err(refuse(line, "`end` without `subgraph`"));
                }
                continue;
            }
            "style" | "classDef" | "class" | "click" | "linkStyle" | "direction" => {
                return Err(refuse(
                    line,
                    format!("`{first}` is refused: the dialect has nodes, edges and subgraphs only"),
                ));
            }
            _ => {}
        }
        // A chain: node (edge node)*
        let mut cur = Cursor { s, line };
        let mut prev = cur.node(&mut nodes, &mut node_line, open_frame.map(|f| &mut frames[f]))?;
        while !cur.done() {
            let (from_socket, to_socket) = cur.edge()?;
            let next = cur.node(&mut nodes, &mut node_line, open_frame.map(|f| &mut frames[f]))?;
            edges.push(Edge { line, from: prev.clone(), to: next.clone(), from_socket, to_socket });
            prev = next;
        }
    }
    if !header_seen {
        return Err(refuse(1, "empty sketch: start with `flowchart LR`"));
    }
    if let Some(f) = open_frame {
        return Err(refuse(text.lines().count(), format!("subgraph \"{}\" has no `end`", frames[f].id)));
    }

    // Labels → node types.
    for node in &mut nodes {
        let label = node.node_type.clone();
        let found = cat.find_by_name(&label);
        let line = node_line[&node.id];
        match found.len() {
            1 => node.node_type = found[0].idname.clone(),
            0 => {
                let hints: Vec<String> =
                    cat.search(&label, 3).iter().map(|n| strip_prefix(&n.idname).to_string()).collect();
                return Err(refuse(
                    line,
                    format!(
                        "\"{label}\" (node {}) is not a node in Blender {}{}",
                        node.id,
                        cat.version,
                        if hints.is_empty() { String::new() } else { format!("; did you mean {}?", hints.join(", ")) }
                    ),
                ));
            }
            _ => {
                let names: Vec<&str> = found.iter().map(|n| n.idname.as_str()).collect();
                return Err(refuse(
                    line,
                    format!("\"{label}\" is ambiguous: {}; write the full idname", names.join(", ")),
                ));
            }
        }
        if let Some(extra) = extras.get(&node.id) {
            if let Some(Value::Object(p)) = extra.get("properties") {
                node.properties = p.clone();
            }
            if let Some(Value::String(p)) = extra.get("paired_output") {
                node.paired_output = Some(p.clone());
            }
        }
    }
    for io in [GROUP_INPUT, GROUP_OUTPUT] {
        if !nodes.iter().any(|n| n.node_type == io) {
            return Err(refuse(
                text.lines().count().max(1),
                format!("the sketch has no {} node: include both GroupInput and GroupOutput", strip_prefix(io)),
            ));
        }
    }
    let mut graph = Graph { nodes, interface, frames, ..Default::default() };
    for (id, extra) in &extras {
        if let Some(Value::Object(s)) = extra.get("settings") {
            graph.node_settings.insert(id.clone(), s.clone());
        }
        if let Some(Value::String(t)) = extra.get("text") {
            if let Some(f) = graph.frames.iter_mut().find(|f| &f.id == id) {
                f.text = Some(t.clone());
            }
        }
        if let Some(c) = extra.get("color").and_then(|c| serde_json::from_value::<Vec<f64>>(c.clone()).ok()) {
            if let Some(f) = graph.frames.iter_mut().find(|f| &f.id == id) {
                f.color = Some(c);
            }
        }
    }

    // Edges → links; a missing target socket is inferred from the node's sockets.
    let iface = interface_of(&graph);
    let mut used: BTreeMap<(String, String), bool> = BTreeMap::new();
    for e in edges {
        let to_socket = match e.to_socket {
            Some(t) => t,
            None => infer_target(cat, &graph, &iface, &e, &used)?,
        };
        used.insert((e.to.clone(), to_socket.clone()), true);
        graph.links.push(LinkSpec {
            from: e.from,
            from_socket: e.from_socket,
            to: e.to,
            to_socket,
            form: LinkForm::Canonical,
        });
    }
    Ok(graph)
}

fn node_sockets(cat: &Catalogue, g: &Graph, iface: &Interface, id: &str, side: Side) -> Vec<Sock> {
    let Some(n) = g.nodes.iter().find(|n| n.id == id) else { return Vec::new() };
    match (n.node_type.as_str(), side) {
        (GROUP_INPUT, Side::Output) => interface_sockets(cat, &iface.inputs, Side::Output),
        (GROUP_OUTPUT, Side::Input) => interface_sockets(cat, &iface.outputs, Side::Input),
        (t, side) => match cat.node(t) {
            Some(ty) => {
                let (i, o, _) = sockets_for(ty, &n.properties);
                match side {
                    Side::Input => i,
                    Side::Output => o,
                }
            }
            None => Vec::new(),
        },
    }
}

fn infer_target(
    cat: &Catalogue,
    g: &Graph,
    iface: &Interface,
    e: &Edge,
    used: &BTreeMap<(String, String), bool>,
) -> Result<String, GeonodesError> {
    let inputs: Vec<Sock> = node_sockets(cat, g, iface, &e.to, Side::Input)
        .into_iter()
        .filter(|s| s.enabled && s.kind != SocketType::Custom)
        .collect();
    if inputs.iter().filter(|s| s.name == e.from_socket).count() == 1 {
        return Ok(e.from_socket.clone());
    }
    let outputs = node_sockets(cat, g, iface, &e.from, Side::Output);
    let from_kind = outputs.iter().find(|s| s.enabled && s.name == e.from_socket).map(|s| s.kind);
    let Some(from_kind) = from_kind else {
        return Err(refuse(e.line, format!("\"{}\" is not an output of {}", e.from_socket, e.from)));
    };
    let free = |s: &&Sock| s.multi_input || !used.contains_key(&(e.to.clone(), s.name.clone()));
    let converts =
        |s: &&Sock| from_kind != SocketType::Geometry && cat.link_types_valid(from_kind, s.kind) == Some(true);
    // Same type and free, then a free type Blender converts to, then same type even if
    // taken (the validator then reports the second link into it).
    let pick = inputs
        .iter()
        .filter(free)
        .find(|s| s.kind == from_kind)
        .or_else(|| inputs.iter().filter(free).find(converts))
        .or_else(|| inputs.iter().find(|s| s.kind == from_kind));
    match pick {
        Some(s) => Ok(s.name.clone()),
        None => Err(refuse(
            e.line,
            format!(
                "no input of {} takes \"{}\"; name it: `--> |{} -> Input| {}`",
                e.to, e.from_socket, e.from_socket, e.to
            ),
        )),
    }
}

struct Cursor<'a> {
    s: &'a str,
    line: usize,
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.s.trim().is_empty()
    }

    fn skip_ws(&mut self) {
        self.s = self.s.trim_start();
    }

    /// `id` or `id["Label"]`; refuses other shapes.
    fn node_token(&mut self) -> Result<(String, Option<String>), GeonodesError> {
        self.skip_ws();
        let end = self.s.find(|c: char| !is_id_char(c)).unwrap_or(self.s.len());
        let id = &self.s[..end];
        if id.is_empty() {
            return Err(refuse(self.line, format!("expected a node id at `{}`", self.s)));
        }
        let id = id.to_string();
        self.s = &self.s[end..];
        let label = match self.s.chars().next() {
            Some('[') => {
                let rest = &self.s[1..];
                if !rest.starts_with('"') {
                    return Err(refuse(self.line, format!("label of {id} must be in double quotes: {id}[\"Name\"]")));
                }
                let close =
                    rest[1..].find('"').ok_or_else(|| refuse(self.line, format!("unterminated label of {id}")))?;
                let label = &rest[1..1 + close];
                let after = &rest[1 + close + 1..];
                if !after.starts_with(']') {
                    return Err(refuse(self.line, format!("label of {id} must be written {id}[\"Name\"]")));
                }
                if label.contains('(') || label.contains(')') {
                    return Err(refuse(
                        self.line,
                        format!("parentheses in the label of {id} are refused (they break Mermaid routing)"),
                    ));
                }
                self.s = &after[1..];
                Some(label.to_string())
            }
            Some('(') | Some('{') | Some('>') => {
                return Err(refuse(
                    self.line,
                    format!("node {id}: parenthesised or other shapes are refused; write {id}[\"Name\"]"),
                ))
            }
            _ => None,
        };
        Ok((id, label))
    }

    fn node(
        &mut self,
        nodes: &mut Vec<NodeSpec>,
        node_line: &mut BTreeMap<String, usize>,
        frame: Option<&mut Frame>,
    ) -> Result<String, GeonodesError> {
        let (id, label) = self.node_token()?;
        match nodes.iter_mut().find(|n| n.id == id) {
            Some(n) => {
                if let Some(l) = label {
                    if n.node_type.is_empty() {
                        n.node_type = l;
                        node_line.insert(id.clone(), self.line);
                    } else if n.node_type != l {
                        return Err(refuse(
                            self.line,
                            format!("node {id} is labelled \"{}\" and \"{l}\"", n.node_type),
                        ));
                    }
                }
            }
            None => {
                nodes.push(NodeSpec { id: id.clone(), node_type: label.unwrap_or_default(), ..Default::default() });
                node_line.insert(id.clone(), self.line);
            }
        }
        if let Some(f) = frame {
            if !f.nodes.contains(&id) {
                f.nodes.push(id.clone());
            }
        }
        Ok(id)
    }

    /// `--> |Socket|` or `-->|From -> To|`.
    fn edge(&mut self) -> Result<(String, Option<String>), GeonodesError> {
        self.skip_ws();
        if !self.s.starts_with("-->") {
            let what: String = self.s.chars().take(6).collect();
            return Err(refuse(self.line, format!("only `-->` edges are allowed, found `{what}`")));
        }
        self.s = self.s[3..].trim_start();
        if !self.s.starts_with('|') {
            return Err(refuse(self.line, "every edge needs a socket label: `a --> |Socket| b`"));
        }
        let close = self.s[1..].find('|').ok_or_else(|| refuse(self.line, "unterminated edge label"))?;
        let label = self.s[1..1 + close].trim().to_string();
        self.s = &self.s[1 + close + 1..];
        if label.is_empty() {
            return Err(refuse(self.line, "empty edge label: name the socket"));
        }
        Ok(match label.split_once("->") {
            Some((a, b)) => (a.trim().to_string(), Some(b.trim().to_string())),
            None => (label, None),
        })
    }
}

/// Render graph_json as a sketch that [`from_mermaid`] reads back to the same graph.
pub fn to_mermaid(g: &Graph, cat: &Catalogue) -> String {
    let mut out = String::from("flowchart LR\n");
    let label = |t: &str| -> String {
        let short = strip_prefix(t);
        let found = cat.find_by_name(short);
        if found.len() == 1 && found[0].idname == t {
            short.to_string()
        } else {
            t.to_string()
        }
    };
    if let Some(i) = &g.interface {
        out.push_str(&format!("  %% interface {}\n", serde_json::to_string(i).unwrap_or_default()));
    }
    // Every node is declared in graph order; subgraphs then name their members.
    for n in &g.nodes {
        out.push_str(&format!("  {}[\"{}\"]\n", n.id, label(&n.node_type)));
    }
    for f in &g.frames {
        match &f.label {
            Some(l) => out.push_str(&format!("  subgraph {}[\"{}\"]\n", f.id, l)),
            None => out.push_str(&format!("  subgraph {}\n", f.id)),
        }
        for id in &f.nodes {
            out.push_str(&format!("    {id}\n"));
        }
        out.push_str("  end\n");
    }
    for l in &g.links {
        let text = if l.from_socket == l.to_socket {
            l.from_socket.clone()
        } else {
            format!("{} -> {}", l.from_socket, l.to_socket)
        };
        out.push_str(&format!("  {} --> |{}| {}\n", l.from, text, l.to));
    }
    for n in &g.nodes {
        let mut extra = Map::new();
        let mut props = n.properties.clone();
        if let Some(p) = g.properties.get(&n.id) {
            props.extend(p.clone());
        }
        if !props.is_empty() {
            extra.insert("properties".into(), Value::Object(props));
        }
        if let Some(s) = g.node_settings.get(&n.id) {
            extra.insert("settings".into(), Value::Object(s.clone()));
        }
        if let Some(p) = &n.paired_output {
            extra.insert("paired_output".into(), json!(p));
        }
        if !extra.is_empty() {
            out.push_str(&format!("  %% {} {}\n", n.id, Value::Object(extra)));
        }
    }
    for f in &g.frames {
        let mut extra = Map::new();
        if let Some(t) = &f.text {
            extra.insert("text".into(), json!(t));
        }
        if let Some(c) = &f.color {
            extra.insert("color".into(), json!(c));
        }
        if !extra.is_empty() {
            out.push_str(&format!("  %% {} {}\n", f.id, Value::Object(extra)));
        }
    }
    out
}
