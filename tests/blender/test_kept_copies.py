"""Objects an agent's tool call deleted without naming them are copied whole from the state
before the call: one undo step back, copied and written to a file, one redo, read back
(`apply.write_copies`, `apply.read_copies`; docs/PROTOCOL.md §9.2). What the copies use must
be Blender's own datablocks again, never a second mesh, material or camera, and an object
the call deleted too must be its kept copy. Real bpy, in a user's scene: a mesh with a
material, a modifier, a muted constraint aiming at the camera, a custom property, under an
Empty in a collection."""

from __future__ import annotations

import bpy

from vibesync import apply, identity


def test_copies_read_back_use_blenders_own_datablocks(clean_blender, tmp_path):
    coll = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(coll)
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    coll.objects.link(cam)
    mesh = bpy.data.meshes.new("Crate")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0)], [], [(0, 1, 2)])
    mesh.materials.append(bpy.data.materials.new("Wood"))
    crate = bpy.data.objects.new("Crate", mesh)
    holder = bpy.data.objects.new("Holder", None)
    for ob in (crate, holder):
        coll.objects.link(ob)
    crate.parent = holder
    crate.modifiers.new("Bevel", "BEVEL").width = 0.25
    aim = crate.constraints.new("TRACK_TO")
    aim.target, aim.mute = cam, True
    crate["note"] = "hand-tuned"
    crate[identity.PROP], holder[identity.PROP] = "u-crate", "u-holder"
    bpy.ops.ed.undo_push(message="before the call")
    sids = {crate.session_uid: "u-crate", holder.session_uid: "u-holder"}
    # The call deletes both, naming neither.
    bpy.data.batch_remove([crate, holder])
    bpy.ops.ed.undo_push(message="the call")
    after = sorted(bpy.data.objects.keys())

    bpy.ops.ed.undo()
    by_sid = {ob.session_uid: ob for ob in bpy.data.objects}
    assert set(sids) <= set(by_sid), "one step back holds what the call deleted"
    path = str(tmp_path / "kept.blend")
    held = apply.write_copies([apply.copy_to_keep(by_sid[s], u) for s, u in sids.items()], path)
    bpy.ops.ed.redo()
    assert sorted(bpy.data.objects.keys()) == after, "one step forward is the call's result again"

    kept = apply.read_copies(path, held)
    assert sorted(kept) == ["u-crate", "u-holder"]
    crate, holder = kept["u-crate"], kept["u-holder"]
    for ob in kept.values():
        assert ob.users == 0 and identity.PROP not in ob, "kept: linked nowhere, no identity"
    assert crate.data == bpy.data.meshes["Crate"] and len(crate.data.vertices) == 3, crate.data
    assert [s.material.name for s in crate.material_slots] == ["Wood"]
    assert [(m.type, round(m.width, 4)) for m in crate.modifiers] == [("BEVEL", 0.25)]
    assert [(c.type, c.target, c.mute) for c in crate.constraints] == [("TRACK_TO", cam, True)]
    assert crate["note"] == "hand-tuned"
    assert crate.parent == holder, "a parent the call deleted too is its kept copy"
    assert sorted(bpy.data.meshes.keys()) == ["Crate"], "no second mesh"
    assert sorted(bpy.data.materials.keys()) == ["Wood"], "no second material"
    assert sorted(bpy.data.cameras.keys()) == ["Camera"], "no second camera"
    assert sorted(o.name for o in bpy.data.objects) == [".Crate", ".Holder", "Camera"], \
        "nothing else came back with the copies"
    assert not list(bpy.data.libraries), "the file is not left linked"


def test_copies_use_what_the_call_renamed_not_what_it_made_under_the_old_name(
        clean_blender, tmp_path):
    """The call renames the crate's material and the camera its constraint aims at, makes a
    new "Wood" and a new "Camera", and deletes the crate: the copy uses the renamed
    originals (Blender's own datablocks, found by session_uid), not the new ones that took
    their names."""
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    bpy.context.scene.collection.objects.link(cam)
    mesh = bpy.data.meshes.new("Crate")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0)], [], [(0, 1, 2)])
    mesh.materials.append(bpy.data.materials.new("Wood"))
    crate = bpy.data.objects.new("Crate", mesh)
    bpy.context.scene.collection.objects.link(crate)
    crate.constraints.new("TRACK_TO").target = cam
    crate[identity.PROP] = "u-crate"
    bpy.ops.ed.undo_push(message="before the call")
    sid = crate.session_uid
    wood_sid, cam_sid = bpy.data.materials["Wood"].session_uid, cam.session_uid

    bpy.data.materials["Wood"].name = "Oak"
    bpy.data.materials.new("Wood")
    cam.name = "Old camera"
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("Camera", None))
    bpy.data.objects.remove(crate)
    bpy.ops.ed.undo_push(message="the call")

    bpy.ops.ed.undo()
    path = str(tmp_path / "kept.blend")
    by_sid = {ob.session_uid: ob for ob in bpy.data.objects}
    held = apply.write_copies([apply.copy_to_keep(by_sid[sid], "u-crate")], path)
    bpy.ops.ed.redo()
    assert sorted(bpy.data.materials.keys()) == ["Oak", "Wood"], "the call's result again"

    crate = apply.read_copies(path, held)["u-crate"]
    [slot] = crate.material_slots
    assert (slot.material.name, slot.material.session_uid) == ("Oak", wood_sid), \
        "the renamed original, not the new material under its old name"
    [aim] = crate.constraints
    assert (aim.target.name, aim.target.session_uid) == ("Old camera", cam_sid)
    assert sorted(bpy.data.materials.keys()) == ["Oak", "Wood"], "no material came back twice"
    assert sorted(o.name for o in bpy.data.objects) == [".Crate", "Camera", "Old camera"]
    assert sorted(bpy.data.cameras.keys()) == ["Camera"], "no second camera data"
