//! The `geonodes.*` MCP tools (docs/GEONODES.md §MCP tools), ready for the MCP server to
//! register: names, descriptions, JSON Schema 2020-12 input schemas, annotations, and the
//! calls of the tools that need no editor. Pure.
//!
//! `geonodes.catalogue`, `geonodes.validate` and `geonodes.from_mermaid` answer here.
//! `geonodes.build` and `geonodes.describe` run in Blender: they are the tools `build` and
//! `describe` of the Blender add-on `geonodes` (addons/blender/vibesync_geonodes), reached
//! through the daemon's agent router like every add-on tool (gated, one WAL transaction
//! whose BEGIN keeps the graph_json, one undo step). [`prepare_build`] validates a build's
//! graph first, so a graph with errors never reaches Blender.

use serde_json::{json, Value};

use crate::catalogue::{node_row, BlenderVersion, Catalogue};
use crate::report::Report;
use crate::validate::{validate_str, Limits};
use crate::{graph, mermaid};

/// JSON Schema dialect of every input schema.
pub const SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// The Blender add-on whose tools `build` and `describe` these names reach.
pub const BLENDER_ADDON_ID: &str = "geonodes";
/// Most catalogue rows one call returns (prompts need a few rows, not the catalogue).
pub const MAX_ROWS: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeonodesTool {
    Catalogue,
    Validate,
    FromMermaid,
    Build,
    Describe,
}

/// Why a tool call was refused before it ran (the argument and what to do).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub field: String,
    pub message: String,
}

impl GeonodesTool {
    pub const ALL: [GeonodesTool; 5] = [
        GeonodesTool::Catalogue,
        GeonodesTool::Validate,
        GeonodesTool::FromMermaid,
        GeonodesTool::Build,
        GeonodesTool::Describe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GeonodesTool::Catalogue => "geonodes.catalogue",
            GeonodesTool::Validate => "geonodes.validate",
            GeonodesTool::FromMermaid => "geonodes.from_mermaid",
            GeonodesTool::Build => "geonodes.build",
            GeonodesTool::Describe => "geonodes.describe",
        }
    }

    pub fn from_name(name: &str) -> Option<GeonodesTool> {
        GeonodesTool::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs in Blender (through the agent router) rather than in the MCP server.
    pub fn runs_in_blender(self) -> bool {
        matches!(self, GeonodesTool::Build | GeonodesTool::Describe)
    }

    /// The Blender add-on tool it is dispatched to (`geonodes`, `build`).
    pub fn blender_command(self) -> Option<(&'static str, &'static str)> {
        match self {
            GeonodesTool::Build => Some((BLENDER_ADDON_ID, "build")),
            GeonodesTool::Describe => Some((BLENDER_ADDON_ID, "describe")),
            _ => None,
        }
    }

    pub fn read_only(self) -> bool {
        self != GeonodesTool::Build
    }

    /// Replaces the modifier's node tree (one undo step; a failed build changes nothing).
    pub fn destructive(self) -> bool {
        self == GeonodesTool::Build
    }

    pub fn description(self) -> &'static str {
        match self {
            GeonodesTool::Catalogue => "Look up Geometry Nodes node types of a Blender version (read from real Blender): by `node` (identifier like GeometryNodeMeshCone, label like Cone, or short name MeshCone) or by `search` words (labels, categories, descriptions). Returns only the matching rows: identifier, label, category, description, properties with their items, inputs and outputs with identifiers and field support. Use identifiers exactly as returned: Math, Combine XYZ and Noise Texture are ShaderNode* types that are valid in Geometry Nodes.",
            GeonodesTool::Validate => "Check a graph_json node tree against what the Blender version offers. Answers status GRAPH_OK or ERRORS_FOUND with errors, each with a code, a JSON pointer and a fix hint. Links are {from, from_socket, to, to_socket}; sockets by name, Name#k for repeated names (Math's Value#0, Value#1) or identifier; node properties (data_type, operation) under nodes[i].properties, input values under node_settings. Fix and re-validate until GRAPH_OK before geonodes.build.",
            GeonodesTool::FromMermaid => "Convert a Mermaid sketch (flowchart LR, nodes n1[\"MeshCone\"], edges n1 --> |Mesh| n2, with GroupInput and GroupOutput nodes) to graph_json, and validate it. Other Mermaid dialects are refused with the reason.",
            GeonodesTool::Build => "Build a validated graph_json into a Geometry Nodes modifier of a Blender mesh object (created if missing; an existing tree is replaced). One undo step; if anything fails nothing changes. The evaluated result is sent to Unity too. Validate first with geonodes.validate.",
            GeonodesTool::Describe => "Read an existing Geometry Nodes modifier's node tree back as graph_json (nodes, properties, changed input values, links, interface, frames): for round trips, edits and frames. Optionally suggest frames (strategy connectivity or type).",
        }
    }

    pub fn input_schema(self) -> Value {
        let blender = json!({"type": "string", "enum": ["4.2", "4.5", "5.0"], "default": "4.5",
            "description": "Blender version whose catalogue to use"});
        let object = json!({"type": "string", "minLength": 1, "maxLength": 1024, "description": "Name of the Blender mesh object"});
        let modifier = json!({"type": "string", "minLength": 1, "maxLength": 64, "default": "GeometryNodes", "description": "Name of the Geometry Nodes modifier"});
        let graph = json!({"type": "string", "minLength": 2, "maxLength": Limits::default().max_bytes,
            "description": "The graph_json document as text (the repeated \"socket\" link key form is accepted with a warning)"});
        let (props, required): (Value, Vec<&str>) = match self {
            GeonodesTool::Catalogue => (
                json!({
                    "node": {"type": "string", "minLength": 1, "maxLength": 128},
                    "search": {"type": "string", "minLength": 1, "maxLength": 256},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS, "default": 10},
                    "blender": blender,
                }),
                vec![],
            ),
            GeonodesTool::Validate => (json!({"graph_json": graph, "blender": blender}), vec!["graph_json"]),
            GeonodesTool::FromMermaid => (
                json!({"mermaid": {"type": "string", "minLength": 1, "maxLength": 262144}, "blender": blender}),
                vec!["mermaid"],
            ),
            GeonodesTool::Build => (
                json!({"object": object, "graph_json": graph, "modifier": modifier,
                       "inputs_json": {"type": "string", "maxLength": 65536,
                                       "description": "Optional JSON object: modifier input values by group input name"},
                       "blender": blender}),
                vec!["object", "graph_json"],
            ),
            GeonodesTool::Describe => (
                json!({"object": object, "modifier": modifier,
                       "frames": {"type": "string", "enum": ["none", "connectivity", "type"], "default": "none",
                                  "description": "Also suggest frames with this strategy"}}),
                vec!["object"],
            ),
        };
        json!({"$schema": SCHEMA_2020_12, "type": "object", "properties": props, "required": required,
               "additionalProperties": false})
    }
}

fn version(args: &Value) -> Result<&'static Catalogue, ToolError> {
    let v = args.get("blender").and_then(Value::as_str).unwrap_or("4.5");
    let v: BlenderVersion =
        v.parse().map_err(|e: crate::GeonodesError| ToolError { field: "blender".into(), message: e.to_string() })?;
    Ok(Catalogue::get(v))
}

fn text<'a>(args: &'a Value, field: &str) -> Result<&'a str, ToolError> {
    args.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError { field: field.into(), message: format!("`{field}` (a string) is required") })
}

/// Run a tool that needs no editor. `Err` for refused arguments; a graph with errors is a
/// successful call answering `ERRORS_FOUND`.
pub fn call(tool: GeonodesTool, args: &Value) -> Result<Value, ToolError> {
    let cat = version(args)?;
    match tool {
        GeonodesTool::Catalogue => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(10).clamp(1, MAX_ROWS as u64) as usize;
            let rows = match (args.get("node").and_then(Value::as_str), args.get("search").and_then(Value::as_str)) {
                (Some(n), _) => cat.find_by_name(n),
                (None, Some(s)) => cat.search(s, limit),
                (None, None) => {
                    return Err(ToolError { field: "node".into(), message: "give `node` or `search`".into() })
                }
            };
            let rows: Vec<Value> = rows.into_iter().take(limit).map(node_row).collect();
            Ok(json!({"blender": cat.version.as_str(), "count": rows.len(), "nodes": rows}))
        }
        GeonodesTool::Validate => {
            let report = validate_str(text(args, "graph_json")?, cat, &Limits::default());
            Ok(serde_json::to_value(report).unwrap_or(Value::Null))
        }
        GeonodesTool::FromMermaid => match mermaid::from_mermaid(text(args, "mermaid")?, cat) {
            Ok(g) => {
                let report = crate::validate(&graph::Parsed::from_graph(g.clone()), cat, &Limits::default());
                Ok(json!({"graph_json": g, "validation": report}))
            }
            Err(e) => Err(ToolError { field: "mermaid".into(), message: e.to_string() }),
        },
        GeonodesTool::Build | GeonodesTool::Describe => Err(ToolError {
            field: String::new(),
            message: format!(
                "{} runs in Blender: dispatch it to the add-on tool {:?}",
                tool.name(),
                tool.blender_command()
            ),
        }),
    }
}

/// Before dispatching `geonodes.build` to Blender: validate its graph. `Ok` carries the
/// parameters of the add-on call (`object`, `graph_json`, `modifier`, `inputs_json`);
/// `Err` the report with the errors (nothing is sent to Blender).
pub fn prepare_build(args: &Value) -> Result<Value, Box<Report>> {
    let cat = match version(args) {
        Ok(c) => c,
        Err(e) => return Err(Box::new(refusal(&e))),
    };
    let graph = match text(args, "graph_json") {
        Ok(g) => g,
        Err(e) => return Err(Box::new(refusal(&e))),
    };
    let report = validate_str(graph, cat, &Limits::default());
    if !report.is_ok() {
        return Err(Box::new(report));
    }
    let mut params = serde_json::Map::new();
    for key in ["object", "graph_json", "modifier", "inputs_json"] {
        if let Some(v) = args.get(key) {
            params.insert(key.into(), v.clone());
        }
    }
    // Blender builds what the validator accepted: with the conversion nodes it inserted.
    if let Some(g) = &report.graph {
        params.insert("graph_json".into(), Value::String(g.to_json_pretty()));
    }
    Ok(Value::Object(params))
}

fn refusal(e: &ToolError) -> Report {
    use crate::report::{Code, Diagnostic, Pointer};
    Report::from_diagnostics(
        "",
        vec![Diagnostic::new(
            Code::InvalidShape,
            Pointer::root().key(&e.field),
            e.message.clone(),
            "see the tool's input schema",
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_schemas_and_annotations() {
        for t in GeonodesTool::ALL {
            assert_eq!(GeonodesTool::from_name(t.name()), Some(t));
            assert!(t.name().len() <= 64 && t.name().chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
            let s = t.input_schema();
            assert_eq!(s["$schema"], SCHEMA_2020_12);
            assert_eq!(s["additionalProperties"], false);
            for r in s["required"].as_array().unwrap() {
                assert!(s["properties"].get(r.as_str().unwrap()).is_some());
            }
            assert_eq!(t.runs_in_blender(), t.blender_command().is_some());
        }
        assert!(GeonodesTool::Build.destructive() && !GeonodesTool::Build.read_only());
    }

    #[test]
    fn catalogue_returns_just_the_rows_asked_for() {
        let out = call(GeonodesTool::Catalogue, &json!({"search": "scatter", "limit": 3})).unwrap();
        assert_eq!(out["count"], 3);
        let out = call(GeonodesTool::Catalogue, &json!({"node": "CombineXYZ", "blender": "5.0"})).unwrap();
        assert_eq!(out["nodes"][0]["identifier"], "ShaderNodeCombineXYZ");
        assert!(call(GeonodesTool::Catalogue, &json!({})).is_err());
        assert_eq!(
            call(GeonodesTool::Catalogue, &json!({"node": "x", "blender": "3.6"})).unwrap_err().field,
            "blender"
        );
    }

    #[test]
    fn validate_from_mermaid_and_prepare_build() {
        let good = include_str!("../tests/graphs/scatter.json");
        let out = call(GeonodesTool::Validate, &json!({"graph_json": good})).unwrap();
        assert_eq!(out["status"], "GRAPH_OK");
        let bad = include_str!("../tests/graphs/seed_example.json");
        let out = call(GeonodesTool::Validate, &json!({"graph_json": bad})).unwrap();
        assert_eq!(out["status"], "ERRORS_FOUND");
        assert_eq!(out["errors"][0]["pointer"], "/links/1/to_socket");

        let sketch = "flowchart LR\n  gi[\"GroupInput\"] --> |Geometry| go[\"GroupOutput\"]\n";
        let out = call(GeonodesTool::FromMermaid, &json!({"mermaid": sketch})).unwrap();
        assert_eq!(out["validation"]["status"], "GRAPH_OK");
        let err = call(GeonodesTool::FromMermaid, &json!({"mermaid": "flowchart TD\n"})).unwrap_err();
        assert!(err.message.contains("TD"), "{}", err.message);

        let params = prepare_build(&json!({"object": "Cube", "graph_json": good})).unwrap();
        assert_eq!(params["object"], "Cube");
        let report = prepare_build(&json!({"object": "Cube", "graph_json": bad})).unwrap_err();
        assert!(!report.is_ok());
    }
}
