//! `vibesync mcp`: the Model Context Protocol server (official Rust SDK `rmcp`, stdio) through
//! which AI agents work in Blender and Unity (docs/PROTOCOL.md §9, docs/ARCHITECTURE.md).
//!
//! Layout:
//! - [`tools`]: the tool catalogue, pure — built-ins, addon tools compiled from their
//!   manifests into JSON Schema 2020-12, annotations, `addon.call`, instructions, argument
//!   validation with the `jsonschema` crate.
//! - [`link`]: the `agent` session to the daemon, in the background, with reconnect.
//! - [`server`]: the `rmcp` handler: list, call, progress, `list_changed`.
//!
//! Invariant: the MCP side never waits for the daemon to answer `initialize` or
//! `tools/list`; no tool runs code: every call is a typed request the daemon gates (WAL,
//! governance, the person-is-editing hold, safe mode).

pub mod link;
pub mod server;
pub mod tools;

use rmcp::ServiceExt;

pub use link::{Discover, Link};
pub use server::VibeSyncMcp;

/// Errors of the MCP server.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP transport: {0}")]
    Transport(String),
}

/// Serve MCP on stdin/stdout until the client closes it.
pub async fn serve_stdio(project_id: String, discover: Discover) -> Result<(), McpError> {
    let link = Link::start(project_id, discover);
    let server = VibeSyncMcp::new(link);
    server.spawn_list_changed();
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| McpError::Transport(e.to_string()))?;
    running.waiting().await.map_err(|e| McpError::Transport(e.to_string()))?;
    Ok(())
}
