//! Geometry Nodes from graph_json (docs/GEONODES.md).
//!
//! Layout:
//! - [`catalogue`]: node types, sockets, properties and socket compatibility of Blender 4.2,
//!   4.5 and 5.0 — generated in real Blender (`catalogue/generate.py`) and embedded; lookup
//!   and keyword search.
//! - [`graph`]: the graph_json document and its order-preserving parser (the duplicate
//!   `socket` key form is read as source then target, with a warning).
//! - [`validate`]: every rule, each finding with a code, a JSON pointer and a fix hint.
//! - [`mermaid`]: `flowchart LR` sketches in and out; other dialects refused with the reason.
//! - [`report`]: the answer (`GRAPH_OK` / `ERRORS_FOUND`) and the diagnostic codes.
//! - [`tools`]: the `geonodes.*` MCP tools (schemas, annotations, the editor-free calls).
//!
//! Invariant: pure — no I/O, no Blender; what Blender offers comes only from the catalogue.

pub mod catalogue;
pub mod graph;
pub mod mermaid;
pub mod report;
pub mod tools;
pub mod validate;

pub use catalogue::{BlenderVersion, Catalogue};
pub use graph::{Graph, Parsed};
pub use report::{Code, Diagnostic, Report, Status};
pub use validate::{validate, validate_str, Limits};

/// Errors of this crate's API (bad input to the graph itself is a [`Report`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum GeonodesError {
    #[error("no Geometry Nodes catalogue for Blender \"{given}\"; available: 4.2, 4.5, 5.0")]
    UnknownVersion { given: String },
    #[error("catalogue for Blender {version} is unreadable: {reason} (regenerate it with scripts/geonodes-catalogue {version})")]
    Catalogue { version: String, reason: String },
    #[error("Mermaid line {line}: {reason}")]
    Mermaid { line: usize, reason: String },
}
