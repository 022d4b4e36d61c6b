//! (f) A corpus of broken graphs, one per rule: each gets ERRORS_FOUND (or, for warnings,
//! the warning) with the expected code and JSON pointer. Every graph is a small edit of
//! `graphs/scatter.json`, which itself validates.

use serde_json::{json, Value};
use vibesync_geonodes::{validate_str, BlenderVersion, Catalogue, Code, Limits, Report, Status};

fn base() -> Value {
    serde_json::from_str(include_str!("graphs/scatter.json")).unwrap()
}

fn check(g: &Value) -> Report {
    check_text(&g.to_string(), &Limits::default())
}

fn check_text(text: &str, limits: &Limits) -> Report {
    validate_str(text, Catalogue::get(BlenderVersion::V4_5), limits)
}

fn expect(report: &Report, code: Code, pointer: &str) {
    let all: Vec<_> = report.errors.iter().chain(&report.warnings).collect();
    assert!(
        all.iter().any(|d| d.code == code && d.pointer == pointer),
        "expected {code:?} at {pointer:?}, got:\n{}",
        all.iter().map(|d| format!("  {} {}", d.pointer, d)).collect::<Vec<_>>().join("\n")
    );
    for d in &all {
        assert!(!d.message.is_empty() && !d.hint.is_empty(), "every finding has a message and a fix hint: {d:?}");
    }
    if code.severity() == vibesync_geonodes::report::Severity::Error {
        assert_eq!(report.status, Status::ErrorsFound);
    }
}

fn node_index(g: &Value, id: &str) -> usize {
    g["nodes"].as_array().unwrap().iter().position(|n| n["id"] == id).unwrap()
}

#[test]
fn the_base_graph_and_the_seed_example_with_a_join_validate() {
    let r = check(&base());
    assert_eq!(r.status, Status::GraphOk, "{:#?}", r.errors);
    assert!(r.warnings.is_empty(), "{:#?}", r.warnings);
    let r = check_text(include_str!("graphs/seed_example_joined.json"), &Limits::default());
    assert_eq!(r.status, Status::GraphOk, "{:#?}", r.errors);
    // The duplicate-key form is understood, with one warning per link.
    assert_eq!(r.warnings.iter().filter(|w| w.code == Code::DuplicateSocketKey).count(), 4);
}

#[test]
fn the_seed_example_as_written_links_twice_into_one_input() {
    // Blender would keep only the second link (the cone) and drop the group input silently.
    let r = check_text(include_str!("graphs/seed_example.json"), &Limits::default());
    expect(&r, Code::MultipleLinksToInput, "/links/1/to_socket");
    expect(&r, Code::DuplicateSocketKey, "/links/0/socket");
}

#[test]
fn document_errors() {
    expect(&check_text("{\"nodes\": [", &Limits::default()), Code::InvalidJson, "/nodes");
    expect(&check_text("{\"nodes\": 3}", &Limits::default()), Code::InvalidShape, "/nodes");
    expect(&check_text("{\"nodes\": [], \"mermaid\": 1}", &Limits::default()), Code::InvalidShape, "/mermaid");
    expect(&check_text(&"x".repeat(100), &Limits { max_bytes: 10, ..Limits::default() }), Code::LimitExceeded, "");
    expect(&check_text(&base().to_string(), &Limits { max_nodes: 3, ..Limits::default() }), Code::LimitExceeded, "");
}

#[test]
fn node_errors() {
    let mut g = base();
    g["nodes"][2]["id"] = json!("grid");
    expect(&check(&g), Code::DuplicateNodeId, "/nodes/2/id");

    let mut g = base();
    g["nodes"][1]["type"] = json!("FunctionNodeCombineXYZ");
    let r = check(&g);
    expect(&r, Code::UnknownNodeType, "/nodes/1/type");
    assert!(r.errors[0].hint.contains("ShaderNodeCombineXYZ"), "{}", r.errors[0].hint);

    let mut g = base();
    g["nodes"][1]["type"] = json!("ShaderNodeBsdfPrincipled");
    let r = check(&g);
    expect(&r, Code::UnknownNodeType, "/nodes/1/type");
    assert!(r.errors[0].hint.contains("material"), "{}", r.errors[0].hint);

    let mut g = base();
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "fr", "type": "NodeFrame"}));
    expect(&check(&g), Code::UnsupportedNode, "/nodes/8/type");

    let mut g = base();
    let r = node_index(&g, "rand");
    g["nodes"][r]["properties"]["blend"] = json!("X");
    expect(&check(&g), Code::UnknownProperty, &format!("/nodes/{r}/properties/blend"));

    let mut g = base();
    g["nodes"][r]["properties"]["data_type"] = json!("DOUBLE");
    expect(&check(&g), Code::InvalidPropertyValue, &format!("/nodes/{r}/properties/data_type"));
}

#[test]
fn setting_errors() {
    let mut g = base();
    g["node_settings"]["nope"] = json!({"Vertices": 3});
    expect(&check(&g), Code::UnknownSettingNode, "/node_settings/nope");

    let mut g = base();
    g["node_settings"]["rand"]["data_type"] = json!("INT");
    expect(&check(&g), Code::SettingIsProperty, "/node_settings/rand/data_type");

    let mut g = base();
    g["node_settings"]["cone"]["Vertices"] = json!("many");
    expect(&check(&g), Code::InvalidSetting, "/node_settings/cone/Vertices");

    let mut g = base();
    g["node_settings"]["cone"]["Tip"] = json!(1);
    expect(&check(&g), Code::UnknownSocket, "/node_settings/cone/Tip");
}

#[test]
fn link_errors() {
    let mut g = base();
    g["links"][0] = json!({"from": "grid", "socket": "Mesh", "to": "pts"});
    expect(&check(&g), Code::InvalidLink, "/links/0/socket");

    let mut g = base();
    g["links"][0]["to"] = json!("nowhere");
    expect(&check(&g), Code::UnknownLinkNode, "/links/0/to");

    let mut g = base();
    g["links"][0]["from_socket"] = json!("Meshes");
    let r = check(&g);
    expect(&r, Code::UnknownSocket, "/links/0/from_socket");
    assert!(r.errors[0].hint.contains("Mesh"), "{}", r.errors[0].hint);

    // Math has two enabled "Value" inputs: the bare name is ambiguous, Value#1 is not.
    let mut g = base();
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "m", "type": "ShaderNodeMath"}));
    g["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"from": "rand", "from_socket": "Value", "to": "m", "to_socket": "Value"}));
    let r = check(&g);
    expect(&r, Code::AmbiguousSocket, "/links/7/to_socket");
    let msg = &r.errors.iter().find(|e| e.code == Code::AmbiguousSocket).unwrap();
    assert_eq!(msg.path, "links[7].to_socket");
    assert!(msg.message.contains("Value#0") && msg.message.contains("Value#1"), "{}", msg.message);
    assert!(msg.message.contains("m (ShaderNodeMath)"), "{}", msg.message);
    g["links"][7]["to_socket"] = json!("Value#1");
    assert_eq!(check(&g).status, Status::GraphOk, "{:#?}", check(&g).errors);
    g["links"][7]["to_socket"] = json!("Value_001");
    assert_eq!(check(&g).status, Status::GraphOk);

    // The third Value exists only for three-operand operations.
    g["links"][7]["to_socket"] = json!("Value_002");
    let r = check(&g);
    expect(&r, Code::SocketDisabled, "/links/7/to_socket");
    assert!(r.errors[0].hint.contains("operation"), "{}", r.errors[0].hint);
    g["nodes"][8]["properties"] = json!({"operation": "MULTIPLY_ADD"});
    assert_eq!(check(&g).status, Status::GraphOk, "{:#?}", check(&g).errors);

    let mut g = base();
    g["links"][1]["from_socket"] = json!("Mesh");
    g["links"][1]["from"] = json!("pts");
    expect(&check(&g), Code::WrongDirection, "/links/1/from_socket");

    let mut g = base();
    g["links"][3] = json!({"from": "cone", "from_socket": "Mesh", "to": "iop", "to_socket": "Scale"});
    expect(&check(&g), Code::IncompatibleSockets, "/links/3");

    let mut g = base();
    g["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"from": "rand", "from_socket": "Value", "to": "grid", "to_socket": "Vertices X"}));
    expect(&check(&g), Code::FieldIntoSingleValue, "/links/7");

    let mut g = base();
    let dup = g["links"][0].clone();
    g["links"].as_array_mut().unwrap().push(dup);
    expect(&check(&g), Code::DuplicateLink, "/links/7");

    let mut g = base();
    g["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"from": "grid", "from_socket": "Mesh", "to": "iop", "to_socket": "Instance"}));
    expect(&check(&g), Code::MultipleLinksToInput, "/links/7/to_socket");
}

#[test]
fn structure_errors() {
    let mut g = base();
    g["nodes"]
        .as_array_mut()
        .unwrap()
        .extend([json!({"id": "a", "type": "ShaderNodeMath"}), json!({"id": "b", "type": "ShaderNodeMath"})]);
    g["links"].as_array_mut().unwrap().extend([
        json!({"from": "a", "from_socket": "Value", "to": "b", "to_socket": "Value#0"}),
        json!({"from": "b", "from_socket": "Value", "to": "a", "to_socket": "Value#0"}),
    ]);
    expect(&check(&g), Code::Cycle, "/links/8");

    let mut g = base();
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "rep", "type": "GeometryNodeRepeatInput"}));
    expect(&check(&g), Code::ZoneUnpaired, "/nodes/8");

    let mut g = base();
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "rep_out", "type": "GeometryNodeRepeatOutput"}));
    expect(&check(&g), Code::ZoneUnpaired, "/nodes/8");

    // A zone's output feeding its own input is a cycle through the zone.
    let mut g = base();
    g["nodes"].as_array_mut().unwrap().extend([
        json!({"id": "ri", "type": "GeometryNodeRepeatInput", "paired_output": "ro"}),
        json!({"id": "ro", "type": "GeometryNodeRepeatOutput"}),
    ]);
    g["links"]
        .as_array_mut()
        .unwrap()
        .extend([json!({"from": "ro", "from_socket": "Geometry", "to": "ri", "to_socket": "Geometry"})]);
    expect(&check(&g), Code::Cycle, "/links/7");

    let mut g = base();
    g["links"].as_array_mut().unwrap().remove(0);
    expect(&check(&g), Code::RequiredInputUnlinked, &format!("/nodes/{}", node_index(&g, "pts")));
}

#[test]
fn interface_and_io_errors() {
    let mut g = base();
    g["interface"] = json!({"inputs": [{"name": "Geometry", "type": "NodeSocketGeometry"}, {"name": "Count", "type": "NodeSocketBanana"}],
                            "outputs": [{"name": "Geometry", "type": "Geometry"}]});
    expect(&check(&g), Code::InvalidInterface, "/interface/inputs/1/type");

    let mut g = base();
    g["interface"] = json!({"inputs": [{"name": "Count", "type": "Int", "default": 3, "min": 0, "max": 10}, {"name": "Geometry", "type": "Geometry"}],
                            "outputs": [{"name": "Geometry", "type": "Geometry"}]});
    expect(&check(&g), Code::RequiredGroupIo, "/interface/inputs/0");

    let mut g = base();
    g["interface"] = json!({"inputs": [{"name": "Geometry", "type": "Geometry"}, {"name": "Count", "type": "Int", "default": 1.5}],
                            "outputs": [{"name": "Geometry", "type": "Geometry"}]});
    expect(&check(&g), Code::InvalidInterface, "/interface/inputs/1/default");

    // Declared group inputs become Group Input sockets that links can use.
    let mut g = base();
    g["interface"] = json!({"inputs": [{"name": "Geometry", "type": "Geometry"}, {"name": "Size", "type": "Float", "default": 4.0}],
                            "outputs": [{"name": "Geometry", "type": "Geometry"}]});
    g["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"from": "gi", "from_socket": "Size", "to": "grid", "to_socket": "Size X"}));
    assert_eq!(check(&g).status, Status::GraphOk, "{:#?}", check(&g).errors);

    let mut g = base();
    let go = node_index(&g, "go");
    g["nodes"].as_array_mut().unwrap().remove(go);
    g["links"].as_array_mut().unwrap().pop();
    expect(&check(&g), Code::MissingGroupOutput, "/nodes");

    let mut g = base();
    g["links"].as_array_mut().unwrap().pop();
    expect(&check(&g), Code::GroupOutputUnlinked, &format!("/nodes/{}", node_index(&g, "go")));
}

#[test]
fn frame_errors() {
    let mut g = base();
    g["frames"][0]["nodes"] = json!(["grid", "ghost"]);
    expect(&check(&g), Code::InvalidFrame, "/frames/0/nodes/1");

    let mut g = base();
    g["frames"][0]["color"] = json!([2.0, 0.0, 0.0]);
    expect(&check(&g), Code::InvalidFrame, "/frames/0/color");

    let mut g = base();
    g["frames"].as_array_mut().unwrap().push(json!({"id": "f2", "nodes": ["grid"]}));
    expect(&check(&g), Code::InvalidFrame, "/frames/1/nodes/0");
}

#[test]
fn duplicate_socket_key_is_a_warning_and_keeps_order() {
    let mut text = base().to_string();
    text = text.replacen(
        r#"{"from":"grid","from_socket":"Mesh","to":"pts","to_socket":"Mesh"}"#,
        r#"{"from":"grid","socket":"Mesh","to":"pts","socket":"Mesh"}"#,
        1,
    );
    assert!(text.contains(r#""socket":"Mesh","to":"pts","socket""#), "{text}");
    let r = check_text(&text, &Limits::default());
    assert_eq!(r.status, Status::GraphOk, "{:#?}", r.errors);
    expect(&r, Code::DuplicateSocketKey, "/links/0/socket");
}

#[test]
fn every_version_validates_the_scatter_graph() {
    for v in BlenderVersion::ALL {
        let r = validate_str(&base().to_string(), Catalogue::get(v), &Limits::default());
        assert_eq!(r.status, Status::GraphOk, "Blender {v}: {:#?}", r.errors);
    }
}

#[test]
fn links_blender_refuses_but_a_rule_converts_get_a_conversion_node() {
    // An integer into a Rotation input: Blender refuses the link; it converts the way Blender's
    // own Float → Rotation does, through Euler to Rotation.
    let mut g = base();
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "ri", "type": "FunctionNodeRandomValue",
        "properties": {"data_type": "INT"}, "location": [0.0, 100.0]}));
    let iop = node_index(&g, "iop");
    g["nodes"][iop]["location"] = json!([200.0, 0.0]);
    g["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"from": "ri", "from_socket": "Value", "to": "iop", "to_socket": "Rotation"}));
    let r = check(&g);
    assert_eq!(r.status, Status::GraphOk, "{:#?}", r.errors);
    expect(&r, Code::ConversionInserted, "/links/7");
    let built = r.graph.as_ref().expect("the graph to build");
    let conv = built.nodes.iter().find(|n| n.id == "convert_7").expect("conversion node");
    assert_eq!(conv.node_type, "FunctionNodeEulerToRotation");
    assert_eq!(conv.location, Some([100.0, 50.0]), "placed between its ends");
    let l = &built.links[7];
    assert_eq!((l.from.as_str(), l.to.as_str(), l.to_socket.as_str()), ("ri", "convert_7", "Euler"));
    let l = built.links.last().unwrap();
    assert_eq!(
        (l.from.as_str(), l.from_socket.as_str(), l.to.as_str(), l.to_socket.as_str()),
        ("convert_7", "Rotation", "iop", "Rotation")
    );
    // What is built validates as it is: no further conversion.
    let again = check(&serde_json::to_value(built).unwrap());
    assert!(again.is_ok() && again.graph.is_none() && again.warnings.is_empty(), "{again:#?}");
    // A graph that needs nothing carries no `graph`.
    assert!(check(&base()).graph.is_none());

    // Rotation into a single number has no conversion that keeps its meaning: still refused.
    let mut g = base();
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "rot", "type": "FunctionNodeAlignRotationToVector"}));
    g["links"][3] = json!({"from": "rot", "from_socket": "Rotation", "to": "rand", "to_socket": "Min"});
    let r = check(&g);
    expect(&r, Code::IncompatibleSockets, "/links/3");
    assert!(r.graph.is_none());
}
