"""Objects whose modifiers make their geometry (a Geometry Nodes scatter) send what Blender
shows: the evaluated mesh with instances realized, up to a documented limit (docs/PROTOCOL.md
§7.1). The base mesh is never overwritten by what comes back."""

from __future__ import annotations

import os

import bpy

import vibesync
from conftest import pump_until, settle
from daemon import registry_records, synced_states
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


def test_a_collection_instance_sends_what_blender_shows_of_it():
    """An Empty instancing a collection (§7.1) is sent as what Blender shows: every object
    of the collection and of its child collections, placed by the collection's instance
    offset, the collections its Empties instance in turn, not the objects or child
    collections disabled in viewports. Checked against Blender's own instance list of the dependency graph."""
    import numpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene

    def mesh_object(name, coll, location, verts):
        me = bpy.data.meshes.new(name)
        me.from_pydata(verts, [], [tuple(range(len(verts)))])
        ob = bpy.data.objects.new(name, me)
        ob.location = location
        coll.objects.link(ob)
        return ob

    tri = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    small = bpy.data.collections.new("Small")
    scene.collection.children.link(small)
    mesh_object("Leaf", small, (0, 0, 5), tri)
    props = bpy.data.collections.new("Props")
    scene.collection.children.link(props)
    props.instance_offset = (1, 0, 0)
    mesh_object("Box", props, (0, 0, 2), [(0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0)])
    mesh_object("Hidden", props, (9, 9, 9), tri).hide_viewport = True
    inner = bpy.data.collections.new("Inner")
    props.children.link(inner)
    mesh_object("Cone", inner, (3, 0, 0), tri)
    off = bpy.data.collections.new("Off")  # a child collection disabled in viewports
    props.children.link(off)
    off.hide_viewport = True
    mesh_object("Unshown", off, (0, 0, 7), tri)
    nested = bpy.data.objects.new("Nested", None)
    nested.instance_type, nested.instance_collection = "COLLECTION", small
    nested.location = (0, 4, 0)
    props.objects.link(nested)
    for name in ("Small", "Props"):
        bpy.context.view_layer.layer_collection.children[name].exclude = True
    inst = bpy.data.objects.new("Inst", None)
    inst.instance_type, inst.instance_collection = "COLLECTION", props
    inst.location, inst.rotation_euler = (10, 0, 0), (0, 0, 0.5)
    scene.collection.objects.link(inst)
    bpy.context.view_layer.update()

    arrays, note = capture.evaluated_mesh_arrays(inst)
    assert note is None and arrays["n"] == 4 + 3 + 3, "Box, Cone and the nested Leaf"
    got = numpy.frombuffer(arrays["co"], dtype=numpy.float32).reshape(-1, 3)
    dg = bpy.context.evaluated_depsgraph_get()
    to_local = inst.matrix_world.inverted()
    want = [tuple(to_local @ i.matrix_world @ v.co)
            for i in dg.object_instances if i.is_instance and i.parent and i.parent.original == inst
            and i.object.type == "MESH" for v in i.object.data.vertices]
    assert sorted(map(tuple, numpy.round(got, 4).tolist())) == \
        sorted(tuple(round(c, 4) for c in p) for p in want)
    assert arrays["tris"] and len(arrays["tris"]) == 3 * (2 + 1 + 1)


def test_an_empty_switched_to_another_collection_follows_that_one(bridge):
    """The Empty instances "A" (a triangle), then "B" (a quad): it sends B's geometry, again
    when B's mesh is edited; an edit of A then sends nothing for it."""
    daemon = bridge

    def holder(name, verts):
        coll = bpy.data.collections.new(name)
        bpy.context.scene.collection.children.link(coll)
        me = bpy.data.meshes.new(name)
        me.from_pydata(verts, [], [tuple(range(len(verts)))])
        coll.objects.link(bpy.data.objects.new(name, me))
        return coll, me

    a, a_mesh = holder("A", [(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    b, b_mesh = holder("B", [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)])
    inst = bpy.data.objects.new("Switcher", None)
    inst.instance_type, inst.instance_collection = "COLLECTION", a
    bpy.context.scene.collection.objects.link(inst)
    settle()
    u = pump_until(lambda: inst.get(PROP), what="the Empty's uuid")
    h, mesh = received_mesh(daemon, u)
    assert len(mesh["positions"]) // 3 == 3
    inst.instance_collection = b
    settle()
    h, mesh = received_mesh(daemon, u, not_hash=h)
    assert len(mesh["positions"]) // 3 == 4
    b_mesh.vertices[2].co.z = 1.0
    b_mesh.update()
    settle()
    h, mesh = received_mesh(daemon, u, not_hash=h)
    assert max(mesh["positions"][1::3]) == 1.0, "B's edit (Blender's z is the wire's y)"
    a_mesh.vertices[0].co.z = 5.0
    a_mesh.update()
    for _ in range(10):
        settle()
    assert synced_states(daemon)[u]["state"]["mesh_hash"] == h, "A is not what it shows"


def test_a_child_collection_shown_again_changes_what_the_instance_sends(bridge):
    """The monitor icon of a child collection of an instanced one (Disable in Viewports):
    Blender reports the update on the instanced collection, and the Empty sends what it now
    shows — the child's objects when enabled, without them when disabled again."""
    daemon = bridge
    props = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(props)
    child = bpy.data.collections.new("Detail")
    props.children.link(child)
    for coll, verts in ((props, [(0, 0, 0), (1, 0, 0), (0, 1, 0)]),
                        (child, [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)])):
        me = bpy.data.meshes.new(coll.name)
        me.from_pydata(verts, [], [tuple(range(len(verts)))])
        coll.objects.link(bpy.data.objects.new(coll.name, me))
    child.hide_viewport = True
    inst = bpy.data.objects.new("Placed", None)
    inst.instance_type, inst.instance_collection = "COLLECTION", props
    bpy.context.scene.collection.objects.link(inst)
    settle()
    u = pump_until(lambda: inst.get(PROP), what="the Empty's uuid")
    h, mesh = received_mesh(daemon, u)
    assert len(mesh["positions"]) // 3 == 3, "the disabled child left out"
    child.hide_viewport = False
    settle()
    h, mesh = received_mesh(daemon, u, not_hash=h)
    assert len(mesh["positions"]) // 3 == 3 + 4, "the child's quad now shown"
    child.hide_viewport = True
    settle()
    h, mesh = received_mesh(daemon, u, not_hash=h)
    assert len(mesh["positions"]) // 3 == 3


def test_a_mesh_converted_to_a_point_cloud_leaves_unity_no_stale_mesh(bridge):
    """Object > Convert > Point Cloud (Blender 4.3+) keeps the object and gives it geometry
    the protocol does not carry (§7.1): it sends an attachment with no vertices, says why in
    `status()`, and a mesh sent back for it is refused. Blender 4.2 has no point cloud
    target; its Grease Pencil conversion makes a new object instead (the Cube is deleted),
    which sends no geometry either."""
    daemon = bridge
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    name = cube.name
    settle()
    u = pump_until(lambda: cube.get(PROP), what="the Cube's uuid")
    h, mesh = received_mesh(daemon, u)
    assert len(mesh["positions"]) // 3 > 0
    targets = {i.identifier for i in
               bpy.ops.object.convert.get_rna_type().properties["target"].enum_items}
    for ob in bpy.context.view_layer.objects:
        ob.select_set(ob == cube)
    bpy.context.view_layer.objects.active = cube
    if "POINTCLOUD" in targets:
        assert bpy.ops.object.convert(target="POINTCLOUD") == {"FINISHED"}
        assert cube.type == "POINTCLOUD" and cube.get(PROP) == u, "the same object"
        settle()
        h, mesh = received_mesh(daemon, u, not_hash=h)
        assert mesh["positions"] == [] or len(mesh["positions"]) == 0
        note = vibesync.status()["generated_geometry_notes"].get(u)
        assert note and "point cloud" in note
        assert synced_states(daemon)[u]["state"]["kind"] == "object"
    else:
        assert bpy.ops.object.convert(target="GPENCIL") == {"FINISHED"}
        gp = bpy.context.active_object
        assert gp.type == "GPENCIL" and name not in bpy.data.objects
        settle()
        g = pump_until(lambda: gp.get(PROP), what="the new object's uuid")
        _, mesh = received_mesh(daemon, g)
        assert len(mesh["positions"]) == 0
        pump_until(lambda: registry_records(daemon).get(u, {}).get("state") == "tombstoned",
                   what="the Cube's delete committed")
