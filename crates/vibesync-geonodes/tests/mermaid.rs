//! (g) Mermaid → graph_json → Mermaid round-trips, and refused dialects say why.

use serde_json::Value;
use vibesync_geonodes::graph::{self, Graph};
use vibesync_geonodes::mermaid::{from_mermaid, to_mermaid};
use vibesync_geonodes::{BlenderVersion, Catalogue, GeonodesError};

const SEED_SKETCH: &str = r#"flowchart LR
  gi["GroupInput"] --> |Geometry| n2["SetPosition"]
  n1["MeshCone"] --> |Mesh| n2
  n2 --> |Geometry| go["GroupOutput"]
"#;

fn cat() -> &'static Catalogue {
    Catalogue::get(BlenderVersion::V4_5)
}

fn canonical(g: &Graph) -> Value {
    serde_json::to_value(g).unwrap()
}

#[test]
fn the_seed_sketch_gives_the_seed_graph() {
    let g = from_mermaid(SEED_SKETCH, cat()).unwrap();
    let seed = graph::parse(include_str!("graphs/seed_example.json")).unwrap().graph;
    let (a, b) = (canonical(&g), canonical(&seed));
    let sorted = |v: &Value| {
        let mut n = v["nodes"].as_array().unwrap().clone();
        n.sort_by_key(|x| x["id"].as_str().unwrap().to_string());
        n
    };
    assert_eq!(sorted(&a), sorted(&b));
    assert_eq!(a["links"], b["links"]);
}

#[test]
fn graph_to_mermaid_and_back_is_the_same_graph() {
    for text in [include_str!("graphs/scatter.json"), include_str!("graphs/seed_example_joined.json")] {
        let g = graph::parse(text).unwrap().graph;
        let sketch = to_mermaid(&g, cat());
        assert!(sketch.starts_with("flowchart LR\n"), "{sketch}");
        let back = from_mermaid(&sketch, cat()).unwrap_or_else(|e| panic!("{e}\n{sketch}"));
        assert_eq!(canonical(&back), canonical(&g), "{sketch}");
        // And the sketch is a fixed point.
        assert_eq!(to_mermaid(&back, cat()), sketch);
    }
}

#[test]
fn mermaid_to_graph_and_back_is_the_same_sketch() {
    let sketch =
        "flowchart LR\n  gi[\"GroupInput\"]\n  j[\"JoinGeometry\"]\n  go[\"GroupOutput\"]\n  c[\"MeshCone\"]\n  \
                  subgraph f[\"Shapes\"]\n    c\n  end\n  gi --> |Geometry| j\n  c --> |Mesh -> Geometry| j\n  \
                  j --> |Geometry| go\n  %% c {\"settings\":{\"Vertices\":8}}\n";
    let g = from_mermaid(sketch, cat()).unwrap();
    assert_eq!(g.frames[0].nodes, vec!["c"]);
    assert_eq!(g.node_settings["c"]["Vertices"], 8);
    assert_eq!(to_mermaid(&g, cat()), sketch);
    let report = vibesync_geonodes::validate(&graph::Parsed::from_graph(g), cat(), &Default::default());
    assert!(report.is_ok(), "{:#?}", report.errors);
}

fn refused(sketch: &str) -> String {
    match from_mermaid(sketch, cat()) {
        Err(GeonodesError::Mermaid { line, reason }) => format!("line {line}: {reason}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(g) => panic!("accepted: {g:?}"),
    }
}

#[test]
fn other_dialects_are_refused_with_the_reason() {
    let io = "  gi[\"GroupInput\"] --> |Geometry| go[\"GroupOutput\"]\n";
    let cases: &[(&str, &str)] = &[
        ("flowchart TD\n", "direction `TD` is refused"),
        ("graph LR\n", "must start with `flowchart LR`"),
        ("flowchart LR\n  n1(\"MeshCone\") --> |Mesh| go[\"GroupOutput\"]\n", "parenthesised"),
        ("flowchart LR\n  n1[MeshCone] --> |Mesh| go[\"GroupOutput\"]\n", "double quotes"),
        ("flowchart LR\n  n1[\"Mesh (Cone)\"] --> |Mesh| go[\"GroupOutput\"]\n", "parentheses"),
        ("flowchart LR\n  n1[\"MeshCone\"] --> |Mesh| go[\"GroupOutput\"]\n", "no GroupInput node"),
        ("flowchart LR\n  gi[\"GroupInput\"] --> go[\"GroupOutput\"]\n", "needs a socket label"),
        ("flowchart LR\n  gi[\"GroupInput\"] -.-> |Geometry| go[\"GroupOutput\"]\n", "only `-->` edges"),
        ("flowchart LR\n  style gi fill:#f9f\n", "`style` is refused"),
        ("flowchart LR\n  n1[\"Scatterbrain\"] --> |Mesh| go[\"GroupOutput\"]\n", "is not a node"),
    ];
    for (text, why) in cases {
        let text = if text.lines().count() == 1 { format!("{text}{io}") } else { text.to_string() };
        let msg = refused(&text);
        assert!(msg.contains(why), "{text:?} → {msg:?} (wanted {why:?})");
        assert!(msg.starts_with("line "), "{msg}");
    }
}
