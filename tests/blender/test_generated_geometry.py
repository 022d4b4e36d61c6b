"""Objects whose modifiers make their geometry (a Geometry Nodes scatter) send what Blender
shows: the evaluated mesh with instances realized, up to a documented limit (docs/PROTOCOL.md
§7.1). The base mesh is never overwritten by what comes back."""

from __future__ import annotations

import os

import bpy

import vibesync
from conftest import pump_until, settle
from daemon import synced_states
from vibesync import capture, geonodes, wire

PROP = "vibesync_uuid"
GRAPH = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "vibesync-geonodes",
                     "tests", "graphs", "scatter.json")


def scatter_on(name: str, grid: int = 5):
    bpy.ops.mesh.primitive_cube_add()
    ob = bpy.context.active_object
    ob.name = name
    with open(GRAPH, encoding="utf-8") as f:
        graph, _ = geonodes.parse_graph_text(f.read())
    graph["node_settings"]["grid"].update({"Vertices X": grid, "Vertices Y": grid})
    geonodes.build(ob, graph)
    return ob


def received_mesh(daemon, u: str, not_hash: str | None = None, timeout: float = 10.0) -> tuple[str, dict]:
    def ready():
        st = synced_states(daemon).get(u)
        h = st and st["state"].get("mesh_hash")
        return h if h and h != not_hash else None
    h = pump_until(ready, timeout, what="mesh state committed")
    with open(os.path.join(daemon.data_dir, "blobs", h), "rb") as f:
        return h, wire.decode_mesh(f.read())


def test_scatter_arrives_with_every_instance_realized(bridge):
    daemon = bridge
    ob = scatter_on("Scatter")
    settle()
    u = ob[PROP]
    _, mesh = received_mesh(daemon, u)
    cone = 16 + 1  # the scatter's 16-vertex cone and its tip
    assert len(mesh["positions"]) // 3 == 8 + 25 * cone
    assert len(ob.data.vertices) == 8  # the base mesh is what the person made
    # Instances sit on the 5 x 5 grid (4 m wide) around the cube, at their random scales.
    xs = sorted({round(mesh["positions"][3 * i], 3) for i in range(8, len(mesh["positions"]) // 3)})
    assert min(xs) < -1.9 and max(xs) > 1.9
    assert vibesync.status()["generated_geometry_notes"] == {}


def test_big_generated_geometry_is_encoded_off_the_main_thread(bridge):
    daemon = bridge
    ob = scatter_on("Big", grid=40)  # 1,600 cones: over the 20k-vertex worker threshold
    settle()
    u = ob[PROP]
    _, mesh = received_mesh(daemon, u, timeout=60.0)
    assert len(mesh["positions"]) // 3 == 8 + 1600 * 17


def test_instances_beyond_the_limit_are_left_out_with_a_message(bridge, monkeypatch):
    daemon = bridge
    monkeypatch.setattr(capture, "MAX_REALIZED_INSTANCES", 10)
    ob = scatter_on("Capped")
    settle()
    u = ob[PROP]
    _, mesh = received_mesh(daemon, u)
    assert len(mesh["positions"]) // 3 == 8 + 10 * 17
    note = vibesync.status()["generated_geometry_notes"][u]
    assert "15 of 25 instances not sent" in note, note


def test_a_node_group_has_a_uuid_that_survives_a_rebuild(bridge):
    from test_identity import daemon_live
    daemon = bridge
    ob = scatter_on("Rebuilt")
    group = ob.modifiers["GeometryNodes"].node_group
    settle()
    gu = pump_until(lambda: group.get(PROP), what="node group uuid")
    pump_until(lambda: daemon_live(daemon, [gu])[gu] == "live", what="node group registered")
    with open(GRAPH, encoding="utf-8") as f:
        graph, _ = geonodes.parse_graph_text(f.read())
    graph["node_settings"]["grid"]["Vertices X"] = 3
    geonodes.build(ob, graph)
    settle()
    rebuilt = ob.modifiers["GeometryNodes"].node_group
    assert rebuilt.name == "Rebuilt GeometryNodes"
    assert rebuilt[PROP] == gu
    for _ in range(20):
        vibesync.tick(20.0)
    assert daemon_live(daemon, [gu])[gu] == "live"
    assert gu not in vibesync.status()["tombstoned"]
