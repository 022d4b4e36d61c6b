"""An object created without a mesh that later gets one (Unity: create a GameObject, then
add a mesh): Blender cannot give an Empty mesh data, so the addon replaces the Empty with a
mesh object of the same uuid (docs/PROTOCOL.md §6.1). Nothing a person made on or around
that Empty may be lost. Real bpy; a scripted daemon sends the two batches."""

from __future__ import annotations

import math
import uuid as uuidlib

import bpy
import pytest
from mathutils import Matrix

from conftest import pump_until
from test_sync import applied_messages, batch_frames
from test_transport import frame
from vibesync import wire

PROP = "vibesync_uuid"


def mesh_batch(batch_id: str, seq: int, u: str) -> bytes:
    """One `mesh` op (a triangle) with its attachment."""
    blob = wire.encode_mesh([0, 0, 0, 1, 0, 0, 0, 0, -1], [0, 1, 2])
    body = frame({"type": "apply", "batch_id": batch_id,
                  "change": {"op": "mesh", "uuid": u, "mesh_hash": wire.mesh_hash(blob)}})
    json_len = int.from_bytes(body[4:8], "big")
    js = body[8:8 + json_len]
    with_att = (4 + len(js) + len(blob)).to_bytes(4, "big") + len(js).to_bytes(4, "big") \
        + js + blob
    return (frame({"type": "batch_begin", "batch_id": batch_id, "seq": seq, "path": "slow",
                   "count": 1}) + with_att
            + frame({"type": "batch_end", "batch_id": batch_id, "seq": seq}))


def empty_from_unity(scripted, name: str) -> tuple[str, bpy.types.Object]:
    u = str(uuidlib.uuid4())
    scripted.push(batch_frames("e1", 10, [{
        "op": "create", "uuid": u, "kind": "object", "name": name, "parent": None,
        "t": [0, 0, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True}], path="slow"))
    pump_until(lambda: len(applied_messages(scripted)) == 1, what="the empty applied")
    ob = bpy.data.objects[name]
    assert ob.type == "EMPTY" and ob[PROP] == u
    return u, ob


def test_an_empty_that_gets_a_mesh_keeps_everything_a_person_made(scripted):
    u, ob = empty_from_unity(scripted, "Thing")
    scene = bpy.context.scene
    vl = bpy.context.view_layer
    # What a person does with the Empty in Blender before Unity adds the mesh.
    pivot = bpy.data.objects.new("Pivot", None)
    scene.collection.objects.link(pivot)
    pivot.location = (1, 2, 3)
    pivot.rotation_euler = (0.3, 0.2, 0.1)
    bpy.context.view_layer.update()
    ob.parent = pivot
    ob.matrix_parent_inverse = pivot.matrix_world.inverted()      # Ctrl+P keeps the pose
    ob.rotation_mode = "YXZ"
    ob.rotation_euler = (0.5, 0.25, 1.0)
    ob.location = (4, 5, 6)
    ob.delta_location = (0.5, 0, 0)
    ob.lock_location = (True, False, True)
    ob.hide_render = True
    ob.hide_select = False
    ob.color = (1, 0, 0, 1)
    ob.pass_index = 7
    bpy.context.view_layer.objects.active = ob  # no temp_override: see tests/e2e/harness.selected
    bpy.ops.object.forcefield_toggle()                            # an Empty as a force field
    ob.field.type = "WIND"
    ob.field.strength = 3.5
    extra = bpy.data.collections.new("Extra")
    scene.collection.children.link(extra)
    extra.objects.link(ob)                                        # in two collections
    child = bpy.data.objects.new("Child", None)
    scene.collection.objects.link(child)
    child.parent = ob
    child.matrix_parent_inverse = Matrix.Translation((0, 0, -1))
    limit = ob.constraints.new("LIMIT_LOCATION")
    limit.use_max_x, limit.max_x = True, 10.0
    track = ob.constraints.new("TRACK_TO")
    track.target = pivot
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    follow = cam.constraints.new("COPY_LOCATION")                 # another object aims at it
    follow.target = ob
    cam.data.dof.focus_object = ob
    arrayed = bpy.data.objects.new("Arrayed", bpy.data.meshes.new("Arrayed"))
    scene.collection.objects.link(arrayed)
    arr = arrayed.modifiers.new("Array", "ARRAY")
    arr.use_object_offset, arr.offset_object = True, ob
    ob["note"] = "hand made"
    ob["weight"] = 0.25
    ob.id_properties_ui("weight").update(min=0.0, max=1.0, description="how heavy")
    ob.keyframe_insert("location", frame=1)
    ob.location = (4, 5, 9)
    ob.keyframe_insert("location", frame=20)
    fc = ob.driver_add("scale", 2)
    fc.driver.expression = "var * 2"
    var = fc.driver.variables.new()
    var.targets[0].id = pivot
    var.targets[0].data_path = "location.x"
    action = ob.animation_data.action
    for o in list(vl.objects):
        o.select_set(False)
    ob.select_set(True)
    vl.objects.active = ob
    bpy.context.scene.frame_set(1)
    world_before = ob.matrix_world.copy()

    scripted.push(mesh_batch("m1", 11, u))
    pump_until(lambda: len(applied_messages(scripted)) == 2, what="the mesh applied")

    new = bpy.data.objects["Thing"]
    assert new.type == "MESH" and new[PROP] == u and len(new.data.polygons) == 1
    assert len([o for o in bpy.data.objects if o.get(PROP) == u]) == 1, "one object, one uuid"
    assert applied_messages(scripted)[1]["hashes"].get(u), "the mesh op answered with a hash"
    # Transform, parenting, display and flags.
    assert new.parent == pivot
    assert new.matrix_parent_inverse == pivot.matrix_world.inverted()
    assert new.rotation_mode == "YXZ"
    assert tuple(new.rotation_euler) == pytest.approx((0.5, 0.25, 1.0))
    assert tuple(new.delta_location) == pytest.approx((0.5, 0, 0))
    assert tuple(new.lock_location) == (True, False, True)
    assert new.hide_render and new.pass_index == 7
    assert tuple(new.color) == pytest.approx((1, 0, 0, 1))
    assert new.field.type == "WIND" and new.field.strength == pytest.approx(3.5)
    bpy.context.scene.frame_set(1)
    assert all(math.isclose(a, b, abs_tol=1e-5) for ra, rb in zip(new.matrix_world, world_before)
               for a, b in zip(ra, rb)), "the same world pose (animation, driver, parent)"
    # Collections, children and what other objects point at.
    assert sorted(c.name for c in new.users_collection) == ["Extra", "Scene Collection"]
    assert child.parent == new
    assert child.matrix_parent_inverse == Matrix.Translation((0, 0, -1))
    assert follow.target == new and cam.data.dof.focus_object == new
    assert arr.offset_object == new
    # Its own constraints, custom properties (with their UI data) and animation.
    assert [c.type for c in new.constraints] == ["LIMIT_LOCATION", "TRACK_TO"]
    assert new.constraints[0].max_x == pytest.approx(10.0) and new.constraints[0].use_max_x
    assert new.constraints[1].target == pivot
    assert new["note"] == "hand made" and new["weight"] == pytest.approx(0.25)
    ui = new.id_properties_ui("weight").as_dict()
    assert ui["min"] == 0.0 and ui["max"] == 1.0 and ui["description"] == "how heavy"
    assert new.animation_data.action == action
    if hasattr(new.animation_data, "action_slot"):
        assert new.animation_data.action_slot is not None
    bpy.context.scene.frame_set(20)
    assert new.location.z == pytest.approx(9)
    [drv] = new.animation_data.drivers
    assert drv.data_path == "scale" and drv.array_index == 2
    assert drv.driver.expression == "var * 2"
    assert drv.driver.variables[0].targets[0].id == pivot
    # Selection and the active object.
    assert new.select_get() and vl.objects.active == new
    assert "Thing.001" not in bpy.data.objects


def test_hidden_empty_stays_hidden_and_unselected_when_it_gets_a_mesh(scripted):
    u, ob = empty_from_unity(scripted, "Hidden")
    ob.select_set(False)
    ob.hide_set(True)
    ob.hide_viewport = True
    scripted.push(mesh_batch("m2", 11, u))
    pump_until(lambda: len(applied_messages(scripted)) == 2, what="the mesh applied")
    new = bpy.data.objects["Hidden"]
    assert new.type == "MESH" and new.hide_get() and new.hide_viewport
    assert not new.select_get()


def test_an_empty_that_instances_a_collection_is_not_replaced(scripted):
    """Its instancing is what the person made; a mesh object cannot instance a
    collection: the mesh is refused, the Empty is kept as it is."""
    u, ob = empty_from_unity(scripted, "Instancer")
    src = bpy.data.collections.new("Source")
    ob.instance_type = "COLLECTION"
    ob.instance_collection = src
    scripted.push(mesh_batch("m3", 11, u))
    pump_until(lambda: len(applied_messages(scripted)) == 2, what="the batch answered")
    kept = bpy.data.objects["Instancer"]
    assert kept.type == "EMPTY" and kept.instance_collection == src and kept[PROP] == u


def test_an_empty_cannot_hold_modifiers_or_material_slots():
    """What the replacement cannot lose because an Empty never has it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ob = bpy.data.objects.new("E", None)
    bpy.context.scene.collection.objects.link(ob)
    assert ob.modifiers.new("S", "SUBSURF") is None
    assert len(ob.material_slots) == 0
    assert math.isclose(ob.empty_display_size, 1.0)
