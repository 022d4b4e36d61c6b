//! `vibesync geonodes …`: the Geometry Nodes catalogue, validator and Mermaid converter on
//! the command line (docs/GEONODES.md §CLI). Exit codes: 0 ok, 1 the graph/sketch/node was
//! refused (the answer says why), 2 usage or I/O error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use vibesync_geonodes::{catalogue, graph, mermaid, validate, BlenderVersion, Catalogue, Limits};

#[derive(Subcommand, Debug)]
pub enum GeonodesCommand {
    /// Look a node up by name (`--node`) or search labels and descriptions (`--search`).
    Query {
        /// Exact identifier (GeometryNodeMeshCone), label (Cone) or short name (MeshCone).
        #[arg(long, conflicts_with = "search", required_unless_present = "search")]
        node: Option<String>,
        /// Words to find in labels, identifiers, categories and descriptions.
        #[arg(long)]
        search: Option<String>,
        /// At most this many search results (at least 1).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        #[arg(long, default_value = "4.5")]
        blender: String,
    },
    /// Check a graph_json file (`-` = stdin): prints the report, exit 0 GRAPH_OK, 1 ERRORS_FOUND.
    Validate {
        file: PathBuf,
        #[arg(long, default_value = "4.5")]
        blender: String,
        /// Print the findings as text instead of the JSON report.
        #[arg(long)]
        human: bool,
        /// The input holds one graph per line; print one compact report per line.
        #[arg(long)]
        jsonl: bool,
    },
    /// Convert a `flowchart LR` sketch (`-` = stdin) to graph_json.
    FromMermaid {
        file: PathBuf,
        #[arg(long, default_value = "4.5")]
        blender: String,
    },
    /// Render a graph_json file (`-` = stdin) as a Mermaid sketch.
    ToMermaid {
        file: PathBuf,
        #[arg(long, default_value = "4.5")]
        blender: String,
    },
}

fn read_input(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

fn catalogue(blender: &str) -> anyhow::Result<&'static Catalogue> {
    let v: BlenderVersion = blender.parse()?;
    Ok(Catalogue::get(v))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

pub fn run(cmd: GeonodesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GeonodesCommand::Query { node, search, limit, blender } => {
            let cat = catalogue(&blender)?;
            let (rows, what) = match (&node, &search) {
                (Some(name), _) => (cat.find_by_name(name), format!("node \"{name}\"")),
                (None, Some(term)) => (cat.search(term, limit as usize), format!("\"{term}\"")),
                (None, None) => unreachable!("clap requires --node or --search"),
            };
            if rows.is_empty() {
                let near: Vec<String> = node
                    .as_deref()
                    .map(|n| cat.search(catalogue::strip_prefix(n), 5).iter().map(|t| t.idname.clone()).collect())
                    .unwrap_or_default();
                eprintln!(
                    "vibesync: no Geometry Nodes node matches {what} in Blender {}{}",
                    cat.version,
                    if near.is_empty() { String::new() } else { format!("; close: {}", near.join(", ")) }
                );
                return Ok(ExitCode::from(1));
            }
            let rows: Vec<serde_json::Value> = rows.into_iter().map(catalogue::node_row).collect();
            print_json(&serde_json::json!({"blender": cat.version.as_str(), "nodes": rows}))?;
            Ok(ExitCode::SUCCESS)
        }
        GeonodesCommand::Validate { file, blender, human, jsonl } => {
            let cat = catalogue(&blender)?;
            let text = read_input(&file)?;
            let limits = Limits::default();
            if jsonl {
                // One report per input line, blank lines included (report N is line N: a blank
                // line is no graph), and exit 1 when any line has errors.
                let mut out = std::io::stdout().lock();
                let mut all_ok = true;
                for line in text.lines() {
                    let report = validate::validate_str(line, cat, &limits);
                    all_ok &= report.is_ok();
                    serde_json::to_writer(&mut out, &report)?;
                    writeln!(out)?;
                }
                return Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            let report = validate::validate_str(&text, cat, &limits);
            if human {
                println!("{}", serde_json::to_value(report.status)?.as_str().unwrap_or_default());
                for d in report.errors.iter().chain(&report.warnings) {
                    println!("{d}");
                }
            } else {
                print_json(&report)?;
            }
            Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        GeonodesCommand::FromMermaid { file, blender } => {
            let cat = catalogue(&blender)?;
            match mermaid::from_mermaid(&read_input(&file)?, cat) {
                Ok(g) => {
                    println!("{}", g.to_json_pretty());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("vibesync: sketch refused: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        GeonodesCommand::ToMermaid { file, blender } => {
            let cat = catalogue(&blender)?;
            match graph::parse(&read_input(&file)?) {
                Ok(p) => {
                    print!("{}", mermaid::to_mermaid(&p.graph, cat));
                    Ok(ExitCode::SUCCESS)
                }
                Err(d) => {
                    eprintln!("vibesync: graph unreadable: {d}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
