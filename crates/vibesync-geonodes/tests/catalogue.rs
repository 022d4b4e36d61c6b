//! The committed catalogues have the shape the validator relies on (their content is
//! checked against real Blender by scripts/geonodes-catalogue --check and
//! tests/geonodes/test_catalogue.py).

use vibesync_geonodes::catalogue::{node_row, FieldSupport, SocketType, VariantMode};
use vibesync_geonodes::{BlenderVersion, Catalogue};

#[test]
fn every_catalogue_parses_and_is_consistent() {
    for v in BlenderVersion::ALL {
        let cat = Catalogue::get(v);
        assert_eq!(cat.version, v);
        assert_eq!(cat.tree_type, "GeometryNodeTree");
        assert!(cat.nodes.len() > 200, "{v}: {} nodes", cat.nodes.len());
        let mut ids: Vec<&str> = cat.nodes.iter().map(|n| n.idname.as_str()).collect();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "{v}: idnames unique and sorted");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{v}: sorted by idname");
        for n in &cat.nodes {
            assert!(!n.label.is_empty(), "{v} {}", n.idname);
            for var in &n.variants {
                assert!(var.inputs.iter().all(|&i| i < n.inputs.len()), "{v} {}", n.idname);
                assert!(var.outputs.iter().all(|&i| i < n.outputs.len()), "{v} {}", n.idname);
                if n.variant_mode == VariantMode::Product {
                    assert!(!var.properties.is_empty(), "{v} {}", n.idname);
                }
            }
            for s in n.inputs.iter().chain(&n.outputs) {
                assert!(
                    s.field != FieldSupport::Unknown || s.kind == SocketType::Custom,
                    "{v} {} {}",
                    n.idname,
                    s.name
                );
            }
        }
        // Every measured pair and every interface type is known to this build.
        assert!(cat.compat.pairs.iter().all(|p| p.from != SocketType::Unknown && p.to != SocketType::Unknown));
        assert!(cat.interface_socket_type("Geometry").is_some());
        assert_eq!(
            cat.link_types_valid(SocketType::Value, SocketType::Vector),
            Some(true),
            "{v}: Float → Vector converts"
        );
        assert_eq!(cat.link_types_valid(SocketType::Geometry, SocketType::Value), Some(false), "{v}");
    }
}

#[test]
fn shader_prefixed_nodes_are_geometry_nodes_when_blender_says_so() {
    let cat = Catalogue::get(BlenderVersion::V4_5);
    for id in ["ShaderNodeMath", "ShaderNodeCombineXYZ", "ShaderNodeTexNoise", "GeometryNodeMeshCone"] {
        assert!(cat.node(id).is_some(), "{id}");
    }
    assert!(cat.node("FunctionNodeCombineXYZ").is_none());
    assert!(cat.node("ShaderNodeBsdfPrincipled").is_none());
    let math = cat.node("ShaderNodeMath").unwrap();
    assert_eq!(math.inputs.iter().filter(|s| s.name == "Value").count(), 3);
    assert!(math.property("operation").unwrap().items.as_ref().unwrap().contains(&"MULTIPLY_ADD".to_string()));
}

#[test]
fn lookups_answer_names_labels_and_keywords() {
    let cat = Catalogue::get(BlenderVersion::V4_5);
    assert_eq!(cat.find_by_name("MeshCone")[0].idname, "GeometryNodeMeshCone");
    assert_eq!(cat.find_by_name("Cone")[0].idname, "GeometryNodeMeshCone");
    assert_eq!(cat.find_by_name("GroupInput")[0].idname, "NodeGroupInput");
    assert_eq!(cat.find_by_name("CombineXYZ")[0].idname, "ShaderNodeCombineXYZ");
    let hits: Vec<&str> = cat.search("scatter", 10).iter().map(|n| n.idname.as_str()).collect();
    assert!(hits.contains(&"GeometryNodeDistributePointsOnFaces"), "{hits:?}");
    let row = node_row(cat.node("GeometryNodeMeshCone").unwrap());
    assert_eq!(row["category"], "Mesh > Primitives");
    assert_eq!(row["inputs"][0]["name"], "Vertices");
    assert_eq!(row["inputs"][0]["default"], 32);
    assert!("4.5.3".parse::<BlenderVersion>().is_ok());
    assert!("3.6".parse::<BlenderVersion>().is_err());
}
