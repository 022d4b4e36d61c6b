"""(c), (d), (e): the builder in real Blender, on the factory startup scene's cube.

(c) the widely copied example of docs/GEONODES.md ("Seed example") in its duplicate-key
    form: as written it links twice into Set Position's Geometry (the validator says so;
    Blender would drop the first link); with a Join Geometry it validates, builds and
    evaluates.
(d) "scatter cones on a grid, random scale": one instance per grid point, differing scales,
    no modifier warning.
(e) a fault injected at link k leaves node groups and modifiers identical; one undo removes
    a successful build entirely.
"""

from __future__ import annotations

import json
import os

import bpy
import pytest

from conftest import REPO, run_cli, VERSION

from vibesync import geonodes  # noqa: E402

GRAPHS = os.path.join(REPO, "crates", "vibesync-geonodes", "tests", "graphs")


def read(name: str) -> str:
    with open(os.path.join(GRAPHS, name), encoding="utf-8") as f:
        return f.read()


def validate_file(name: str) -> dict:
    proc = run_cli("validate", os.path.join(GRAPHS, name), "--blender", VERSION)
    return json.loads(proc.stdout)


def state() -> tuple:
    """Everything a failed build must leave as it was."""
    groups = []
    for g in bpy.data.node_groups:
        groups.append((g.name, g.bl_idname, g.users,
                       tuple(sorted((n.name, n.bl_idname) for n in g.nodes)),
                       tuple(sorted((l.from_node.name, l.from_socket.identifier, l.to_node.name,
                                     l.to_socket.identifier) for l in g.links)),
                       tuple((i.name, i.in_out) for i in g.interface.items_tree
                             if getattr(i, "item_type", "") == "SOCKET")))
    mods = []
    for ob in bpy.data.objects:
        for m in ob.modifiers:
            mods.append((ob.name, m.name, m.type, getattr(m.node_group, "name", None)))
    return tuple(sorted(groups)), tuple(mods)


def test_seed_example_as_written_is_refused_and_joined_builds_and_evaluates(fresh_file):
    report = validate_file("seed_example.json")
    assert report["status"] == "ERRORS_FOUND"
    assert [e["code"] for e in report["errors"]] == ["MULTIPLE_LINKS_TO_INPUT"]
    assert report["errors"][0]["pointer"] == "/links/1/to_socket"

    assert validate_file("seed_example_joined.json")["status"] == "GRAPH_OK"
    graph, warnings = geonodes.parse_graph_text(read("seed_example_joined.json"))
    assert warnings == ["DUPLICATE_SOCKET_KEY"] * 4
    assert graph["links"][1] == {"from": "n1", "from_socket": "Mesh", "to": "j", "to_socket": "Geometry"}
    cube = bpy.data.objects["Cube"]
    summary = geonodes.build(cube, graph)
    assert summary["links"] == 4 and summary["nodes"] == 5
    ev = geonodes.evaluated_summary(cube)
    assert ev["warnings"] == []
    assert ev["vertices"] == 8 + 33, ev  # the cube's 8 + a 32-vertex cone with its tip
    dg = bpy.context.evaluated_depsgraph_get()
    mesh = cube.evaluated_get(dg).to_mesh()
    zs = [v.co.z for v in mesh.vertices]
    cube.evaluated_get(dg).to_mesh_clear()
    assert min(zs) == pytest.approx(0.0), min(zs)  # everything lifted by Offset (0, 0, 1)


def test_scatter_cones_on_a_grid_with_random_scale(fresh_file):
    text = read("scatter.json")
    assert validate_file("scatter.json")["status"] == "GRAPH_OK"
    graph, _ = geonodes.parse_graph_text(text)
    cube = bpy.data.objects["Cube"]
    summary = geonodes.build(cube, graph)
    assert len(summary["echo"]) == len(graph["links"])
    ev = geonodes.evaluated_summary(cube)
    assert ev["instances"] == 25, ev
    assert len(set(ev["instance_scales"])) > 1, ev
    assert ev["warnings"] == [], ev
    group = cube.modifiers["GeometryNodes"].node_group
    assert group.nodes["f_points"].bl_idname == "NodeFrame"
    assert group.nodes["grid"].parent == group.nodes["f_points"]
    # describe() reads the tree back as a graph that validates and round-trips.
    described = geonodes.describe(group)
    proc = run_cli("validate", "-", "--blender", VERSION, stdin=json.dumps(described))
    assert json.loads(proc.stdout)["status"] == "GRAPH_OK", proc.stdout
    assert {(l["from"], l["to"]) for l in described["links"]} == \
        {(l["from"], l["to"]) for l in graph["links"]}
    assert described["node_settings"]["grid"]["Vertices X"] == 5


@pytest.mark.parametrize("pre_existing", [False, True])
def test_fault_at_every_link_leaves_everything_identical(fresh_file, pre_existing):
    graph, _ = geonodes.parse_graph_text(read("scatter.json"))
    cube = bpy.data.objects["Cube"]
    if pre_existing:
        joined, _ = geonodes.parse_graph_text(read("seed_example_joined.json"))
        geonodes.build(cube, joined)
    before = state()
    for k in range(len(graph["links"])):
        with pytest.raises(geonodes.BuildError) as err:
            geonodes.build(cube, graph, fault_at_link=k)
        assert err.value.code == "FAULT_INJECTED"
        assert state() == before, f"fault at link {k} changed the file"
    # A build Blender refuses (an invalid link) is also all-or-nothing.
    bad = json.loads(json.dumps(graph))
    bad["links"][3] = {"from": "cone", "from_socket": "Mesh", "to": "iop", "to_socket": "Scale"}
    with pytest.raises(geonodes.BuildError) as err:
        geonodes.build(cube, bad)
    assert err.value.code == "INCOMPATIBLE_SOCKETS" and err.value.pointer == "/links/3"
    assert state() == before


def test_one_undo_removes_a_build(fresh_file):
    bpy.ops.ed.undo_push(message="before build")
    before = state()
    graph, _ = geonodes.parse_graph_text(read("scatter.json"))
    geonodes.build(bpy.data.objects["Cube"], graph)
    assert state() != before
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert state() == before
    assert not bpy.data.objects["Cube"].modifiers


def test_builder_guards_resolve_sockets_like_the_validator(fresh_file):
    tree = bpy.data.node_groups.new("guards", "GeometryNodeTree")
    math = tree.nodes.new("ShaderNodeMath")
    with pytest.raises(geonodes.BuildError) as err:
        geonodes.find_socket(math, "Value", output=False, pointer="/links/2/to_socket")
    assert err.value.code == "AMBIGUOUS_SOCKET" and "Value#1" in err.value.message
    assert geonodes.find_socket(math, "Value#1", output=False, pointer="").identifier == "Value_001"
    assert geonodes.find_socket(math, "Value_001", output=False, pointer="").identifier == "Value_001"
    cone = tree.nodes.new("GeometryNodeMeshCone")
    with pytest.raises(geonodes.BuildError) as err:
        geonodes.find_socket(cone, "Vertices", output=True, pointer="/links/0/from_socket")
    assert err.value.code == "WRONG_DIRECTION"
    with pytest.raises(geonodes.BuildError) as err:
        geonodes.find_socket(math, "Value_002", output=False, pointer="")
    assert err.value.code == "SOCKET_DISABLED"
    bpy.data.node_groups.remove(tree)


def test_auto_frame_graph_suggests_and_applies(fresh_file):
    graph, _ = geonodes.parse_graph_text(read("scatter.json"))
    graph.pop("frames")
    cube = bpy.data.objects["Cube"]
    geonodes.build(cube, graph)
    group = cube.modifiers["GeometryNodes"].node_group
    by_part = geonodes.auto_frame_graph(group, strategy="connectivity")
    assert len(by_part) == 1 and set(by_part[0]["nodes"]) == {"grid", "pts", "cone", "rand", "iop", "join"}
    by_type = geonodes.auto_frame_graph(group, strategy="type", apply=True)
    assert {f["label"] for f in by_type} >= {"Mesh", "Instances"}
    assert group.nodes["cone"].parent is not None


@pytest.mark.parametrize("source", [
    {"id": "src", "type": "FunctionNodeRandomValue", "properties": {"data_type": "INT"},
     "socket": "Value"},
    {"id": "src", "type": "FunctionNodeCombineColor", "socket": "Color"},
])
def test_a_link_blender_refuses_is_built_through_the_inserted_conversion_node(fresh_file, source):
    """Integer / Color into Instance on Points' Rotation: Blender refuses the link itself;
    the validator inserts Euler to Rotation (docs/GEONODES.md §Conversions) and Blender
    accepts, builds and evaluates the graph it answers with."""
    graph, _ = geonodes.parse_graph_text(read("scatter.json"))
    socket = source.pop("socket")
    graph["nodes"].append(source)
    graph["links"].append({"from": "src", "from_socket": socket, "to": "iop", "to_socket": "Rotation"})
    cube = bpy.data.objects["Cube"]
    before = state()
    # Blender itself refuses the link as written (the differential half of the rule).
    with pytest.raises(geonodes.BuildError) as err:
        geonodes.build(cube, graph)
    assert err.value.code == "INCOMPATIBLE_SOCKETS", err.value.message
    assert state() == before
    proc = run_cli("validate", "-", "--blender", VERSION, stdin=json.dumps(graph))
    report = json.loads(proc.stdout)
    assert report["status"] == "GRAPH_OK", report
    assert [w["code"] for w in report["warnings"]] == ["CONVERSION_INSERTED"], report
    built = report["graph"]
    summary = geonodes.build(cube, built)
    assert summary["links"] == len(graph["links"]) + 1
    group = cube.modifiers["GeometryNodes"].node_group
    conv = group.nodes[f"convert_{len(graph['links']) - 1}"]
    assert conv.bl_idname == "FunctionNodeEulerToRotation"
    assert all(link.is_valid for link in group.links)
    ev = geonodes.evaluated_summary(cube)
    assert ev["instances"] == 25 and ev["warnings"] == [], ev
