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
    apply.write_copies([apply.copy_to_keep(by_sid[s], u) for s, u in sids.items()], path)
    bpy.ops.ed.redo()
    assert sorted(bpy.data.objects.keys()) == after, "one step forward is the call's result again"

    kept = apply.read_copies(path)
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
