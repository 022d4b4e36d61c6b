"""What artists do that the other scenario files did not cover, each found failing by a
tester and fixed (docs/PROTOCOL.md §6): a Unity object named like a Blender one, an undo
after the other editor's delete, reparents from both sides that close a cycle, a Unity edit
right after Unity reloads (and one that keeps what Blender changed while Unity was closed),
a scene or view layer switch in Blender, a child parented with Keep Transform to a scaled
parent or mirrored, an object taken out of the scene, a removed material, a delta transform,
a frame change. Every test ends with
`scenario.finish` (nothing a person made missing, convergence before a deadline, 5 s quiet,
`vibesync verify`)."""

from __future__ import annotations

import json
import os

import pytest

from harness import Host, bpy, drive, drive_for, selected, vibesync
from scenario import converge, finish, host_view, uuids_of
from test_scenarios import world  # noqa: F401 (fixture)


def _by_uuid(u):
    for o in list(bpy.data.objects) + list(bpy.data.collections):
        if o.get("vibesync_uuid") == u:
            return o
    return None


def _parent_keeping_transform(child, parent) -> None:
    """Ctrl-P > Object (Keep Transform), as a person does it in the viewport."""
    for o in bpy.context.view_layer.objects:
        o.select_set(o in (child, parent))
    bpy.context.view_layer.objects.active = parent
    with selected(parent, [child, parent]):
        bpy.ops.object.parent_set(type="OBJECT", keep_transform=True)


def _close_unity_saving(world, host) -> tuple[str, dict]:
    """The person saves Unity's scene and quits Unity: (the saved scene file, its content)."""
    path = os.path.join(world.workdir, "unity-saved.json")
    i = host.cmd(f"dump {path}")
    host.wait("dumped", i)
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    host.cmd("quit")
    host.proc.wait(timeout=20)
    return path, doc


def _reopen_unity(world, path: str, doc: dict, *extra: str) -> Host:
    """Unity reopens its saved scene (with the `last_seq` it saved) and connects."""
    again = Host(world.daemon, world.project_id, world.workdir,
                 ["--scene", path, "--last-seq", str(doc.get("last_seq", 0)), *extra])
    world.hosts.append(again)
    again.wait("connected", timeout=30)
    return again


def _rollbacks(world) -> int:
    return len([r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"])


def _begins(world) -> int:
    return len([r for r in world.daemon.tail() if r.get("phase") == "BEGIN"])


@pytest.mark.parametrize("names", [("Cube",), ("Tree", "Tree")], ids=["like_blenders_cube", "two_alike"])
def test_a_unity_object_named_like_one_blender_holds_reaches_blender(world, names):
    """GameObject > Create in Unity makes a "Cube" (Blender has one) or two "Tree"s: Blender
    holds them as "Cube.001" / "Tree.001" and says so (§6.1). The batch used to roll back —
    the answer read the name Blender made as a mismatch — and the new object vanished from
    Blender."""
    made, host = world.startup_synced()
    ids = {}
    for name in names:
        i = host.cmd(f"create auto {name}")
        ids[host.wait("created", i)["uuid"]] = name
    drive(lambda: all(_by_uuid(x) is not None for x in ids), timeout=15, what="in Blender")
    view = world.finish(host, made, dict(world.host_made(), **ids))
    assert _rollbacks(world) == 0, "nothing rolled back"
    assert sorted(view[x]["name"] for x in ids) == sorted(_by_uuid(x).name for x in ids)


def test_an_undo_in_blender_after_unity_deleted_an_object_brings_it_back_in_both(world):
    """Unity deletes the Light; the person in Blender presses Ctrl-Z once: the Light is back
    in Blender, and must be back in Unity too (it was sent as "unchanged": nothing)."""
    made, host = world.startup_synced()
    lu = bpy.data.objects["Light"]["vibesync_uuid"]
    bpy.ops.ed.undo_push(message="start")
    host.cmd(f"delete {lu}")
    drive(lambda: _by_uuid(lu) is None, what="the Light gone in Blender")
    converge(host)
    bpy.ops.ed.undo()
    drive(lambda: _by_uuid(lu) is not None, what="the Light back in Blender")
    view = world.finish(host, made)
    assert lu in view, "the Light is back in Unity as well"


@pytest.mark.parametrize("what", ["object", "collection"])
def test_an_eye_click_in_blender_as_unity_renames_the_object_stays_and_both_edits_reach_both(world, what):
    """Blender's person hides the Cube (the outliner's eye, `hide_set`) — or the eye of the
    Collection's layer — as Unity's person renames it. Blender reports no update for the eye;
    the rename's batch arrived first and its answer, and the rollback's resync after it, turned
    the person's eye back on, for good (docs/PROTOCOL.md §6.4: an edit made before a batch
    is applied is sent after it, never undone). Found by an independent artist tester."""
    made, host = world.startup_synced()
    cu = bpy.data.objects["Cube"]["vibesync_uuid"]
    if what == "object":
        bpy.data.objects["Cube"].hide_set(True)
        hidden = lambda: _by_uuid(cu).hide_get()  # noqa: E731
    else:
        layer = bpy.context.view_layer.layer_collection.children["Collection"]
        layer.hide_viewport = True
        hidden = lambda: bpy.context.view_layer.layer_collection.children["Collection"].hide_viewport  # noqa: E731
    host.cmd(f"rename {cu} UCube")
    drive(lambda: _by_uuid(cu) is not None and _by_uuid(cu).name == "UCube", what="Unity's rename in Blender")
    converge(host)
    assert hidden(), "the person's eye in Blender stands"
    assert host_view(host)[cu]["name"] == "UCube"
    world.finish(host, made)
    assert hidden()


def test_reparents_from_both_editors_that_close_a_cycle_do_not_loop(world):
    """In one window Unity puts the Cube under the Camera and Blender the Camera under the
    Cube. Each alone is fine; together they are a cycle no editor can hold. The batch rolled
    back, both re-sent, for ever (~9 rollbacks a second). Now the later is dropped and its
    editor corrected: the editors agree and the bridge goes quiet."""
    made, host = world.startup_synced()
    cube, cam = bpy.data.objects["Cube"], bpy.data.objects["Camera"]
    cu, camu = cube["vibesync_uuid"], cam["vibesync_uuid"]
    host.cmd(f"parent {cu} {camu}")
    _parent_keeping_transform(cam, cube)
    view = world.finish(host, made)
    assert not (view[cu]["parent"] == camu and view[camu]["parent"] == cu), "no cycle"
    before = _rollbacks(world)
    drive_for(3.0)
    assert _rollbacks(world) == before, "no rollback loop"


def test_a_unity_edit_right_after_unity_reloads_reaches_blender(world):
    """Unity reopens its saved scene (an editor restart, from its last seq) and the person
    moves the Main Camera at once, before the daemon answered its `register`: the move was
    taken for the synced state, or undone by the welcome replay, about two runs in three."""
    def build():
        bpy.data.objects.remove(bpy.data.objects["Cube"])

    world.blender(build=build)
    made = uuids_of(("Collection", "Camera", "Light"))
    host = world.host()
    converge(host)
    path, doc = _close_unity_saving(world, host)
    mc = next(u for u, n in world.host_made().items() if n == "Main Camera")
    again = _reopen_unity(world, path, doc)
    i = again.cmd(f"move {mc} 3 3 3")  # the person drags at once
    assert again.find("error", i) is None
    view = finish(world.daemon, world.project_id, again, made, world.host_made())
    assert view[mc]["t"] == pytest.approx([3, 3, -3], abs=1e-5)


def test_a_unity_edit_right_after_unity_reopens_keeps_blenders_edits_made_meanwhile(world):
    """While Unity is closed, the person in Blender renames the Camera and moves the Light.
    Unity reopens its saved scene and its person hides the Camera and renames the Light at
    once, before the daemon answered the `register`. Unity sent each whole as a `create`
    (it knew no base of them yet), which undid Blender's rename and move. Now its base is
    the scene as loaded: Blender's edits and Unity's all stand, and Unity sends only its
    parts (PROTOCOL.md §6.6)."""
    world.blender(build=lambda: bpy.data.objects.remove(bpy.data.objects["Cube"]))  # a scene the host can load
    made = uuids_of(("Collection", "Camera", "Light"))
    host = world.host()
    converge(host)
    cam, light = bpy.data.objects["Camera"], bpy.data.objects["Light"]
    camu, lu = cam["vibesync_uuid"], light["vibesync_uuid"]
    path, doc = _close_unity_saving(world, host)
    # Blender, while Unity is closed: both edits committed at the daemon.
    cam.name = "Shot Camera"
    light.location = (1.0, 2.0, 3.0)
    drive(lambda: {camu, lu} <= {u for r in world.daemon.tail() if r.get("phase") == "STEP"
                                  for u in r.get("uuids") or []
                                  if r.get("seq", 0) > doc.get("last_seq", 0)},
          timeout=15, what="Blender's rename and move in the WAL")
    drive(lambda: vibesync.status()["in_flight"] == 0, timeout=15, what="Blender's edits committed")
    reopened_at = max(r.get("seq", 0) for r in world.daemon.tail())
    # Unity reopens; the person's edits are its first command, run before the welcome is read.
    script = os.path.join(world.workdir, "unity-at-once.txt")
    with open(script, "w", encoding="utf-8") as f:
        f.write(f"together visible {camu} false ; rename {lu} Sun\n")
    again = _reopen_unity(world, path, doc, "--script", script)
    view = finish(world.daemon, world.project_id, again, made, world.host_made())
    assert view[camu]["name"] == "Shot Camera", "Blender's rename stands"
    assert view[camu]["visible"] is False, "Unity's hide stands"
    assert view[lu]["name"] == "Sun", "Unity's rename stands"
    assert tuple(_by_uuid(lu).location) == pytest.approx((1.0, 2.0, 3.0), abs=1e-5), "Blender's move stands"
    creates = [r for r in world.daemon.tail() if r.get("phase") == "STEP" and r.get("seq", 0) > reopened_at
               and (r.get("payload") or {}).get("op") == "create" and {camu, lu} & set(r.get("uuids") or [])]
    assert not creates, "Unity sent only the parts its person changed"


@pytest.mark.parametrize("switch", ["scene", "view_layer"])
def test_switching_scene_or_view_layer_in_blender_is_no_visibility_edit(world, switch):
    """A person in Unity hides the Light; Blender shows it hidden (the eye of its view
    layer). The person in Blender switches to another scene or view layer, where the eye is
    open: no edit, so nothing is sent and the Light stays hidden where the person hid it."""
    made, host = world.startup_synced()
    lu = bpy.data.objects["Light"]["vibesync_uuid"]
    sc = bpy.context.scene
    other = bpy.data.scenes.new("Other") if switch == "scene" else sc.view_layers.new("Other")
    drive_for(1.0)
    converge(host)
    host.cmd(f"visible {lu} false")
    drive(lambda: not vibesync.capture.is_visible(bpy.data.objects["Light"]), timeout=15,
          what="the Light hidden in Blender")
    converge(host)
    t0 = _begins(world)
    if switch == "scene":
        bpy.context.window.scene = other
    else:
        bpy.context.window.view_layer = other
    drive_for(3.0)
    converge(host)
    assert _begins(world) == t0, "the switch sent nothing"
    assert host.obj(lu)["visible"] is False, "Unity's hide stays"
    if switch == "scene":
        bpy.context.window.scene = sc
    else:
        bpy.context.window.view_layer = sc.view_layers[0]
    world.finish(host, made)


def test_a_unity_move_of_a_child_of_a_non_uniformly_scaled_parent_reaches_blender(world):
    """The Cube is scaled (2, 1, 1) and rotated, the Camera parented to it with Keep
    Transform: its parent inverse holds a non-uniform scale under a rotation, and no
    location, rotation and scale over it make the pose Unity sends. Blender applied an
    approximation, the batch rolled back, and Blender sent the approximation back as its
    person's edit, over Unity's move. The pose is now set exactly (over an identity parent
    inverse): the move commits and both editors hold it."""
    made, host = world.startup_synced()
    cube, cam = bpy.data.objects["Cube"], bpy.data.objects["Camera"]
    cube.location, cube.rotation_euler, cube.scale = (1, 2, 3), (0.3, 0.2, 0.1), (2, 1, 1)
    _parent_keeping_transform(cam, cube)
    converge(host)
    camu = cam["vibesync_uuid"]
    before = _rollbacks(world)
    host.cmd(f"move {camu} 0.5 0.5 0.5")
    view = world.finish(host, made)
    assert view[camu]["t"] == pytest.approx([0.5, 0.5, -0.5], abs=1e-5), "Unity's move stands"
    assert _rollbacks(world) == before, "nothing rolled back"


def test_a_material_removed_in_either_editor_is_removed_in_the_other(world):
    """A person empties the factory Cube's material slot in Blender: Unity kept showing the
    material — the protocol had no way to say "no material". `material` with `null` clears
    it (§6.1); the same from Unity (the renderer's material removed) reaches Blender."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    assert host.wait_obj(u, lambda o: o.get("material"), what="the Cube's material in Unity")
    mat = cube.material_slots[0].material
    cube.material_slots[0].material = None
    host.wait_obj(u, lambda o: not o.get("material"), timeout=15, what="the material removed in Unity")
    view = converge(host)
    assert "material" not in view[u], view[u]
    assert mat.name in bpy.data.materials, "the material datablock itself stays"

    cube.material_slots[0].material = mat  # back, then Unity's person removes it
    host.wait_obj(u, lambda o: o.get("material"), timeout=15, what="the material back in Unity")
    converge(host)
    host.cmd(f"material {u} none")
    drive(lambda: cube.material_slots[0].material is None, timeout=15,
          what="the material removed in Blender")
    view = world.finish(host, made)
    assert "material" not in view[u], view[u]
    assert _rollbacks(world) == 0, "nothing rolled back"


def test_a_delta_transform_is_the_pose_unity_shows_and_keeps(world):
    """A person offsets the Cube with Object > Transform > Delta Location: Unity showed it
    where it was without the delta (the deltas were not read). The pose synced is the one
    the viewport shows, and a move from Unity keeps the person's delta in Blender."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    cube.delta_location = (0.0, 0.0, 2.0)  # Blender's z up: 2 up
    host.wait_obj(u, lambda o: abs(o["transform"]["position"][1] - 2.0) < 1e-4, timeout=15,
                  what="the Cube 2 up in Unity (y up)")
    converge(host)
    host.cmd(f"move {u} 3 5 0")  # Unity: x 3, 5 up
    drive(lambda: abs(cube.matrix_basis.translation.z - 5.0) < 1e-4, timeout=15,
          what="the Cube 5 up in Blender")
    assert tuple(cube.delta_location) == (0.0, 0.0, 2.0), "the person's delta stays"
    assert abs(cube.location.z - 3.0) < 1e-4, cube.location
    world.finish(host, made)
    assert _rollbacks(world) == 0, "nothing rolled back"


def test_a_frame_change_moves_an_animated_object_in_unity(world):
    """A person keys the Cube at x 0 on frame 1 and x 4 on frame 20, then scrubs the
    timeline: Blender moved the Cube with each frame and Unity kept the pose of the frame it
    was keyed on (a frame change gives no depsgraph update). The animated pose of the
    current frame is what Unity shows."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    scene = bpy.context.scene
    scene.frame_set(1)
    cube.location = (0.0, 0.0, 0.0)
    cube.keyframe_insert("location", frame=1)
    cube.location = (4.0, 0.0, 0.0)
    cube.keyframe_insert("location", frame=20)
    scene.frame_set(1)
    host.wait_obj(u, lambda o: abs(o["transform"]["position"][0]) < 1e-4, timeout=15,
                  what="the Cube at x 0 (frame 1) in Unity")
    for frame in (10, 20):
        scene.frame_set(frame)
        x = cube.location.x
        assert x > 1.0, x
        host.wait_obj(u, lambda o, x=x: abs(abs(o["transform"]["position"][0]) - x) < 1e-4, timeout=15,
                      what=f"the Cube at x {x:.3f} (frame {frame}) in Unity")
    action = cube.animation_data.action
    drive(lambda: action.get("vibesync_uuid") and not vibesync.status()["pending_requests"], timeout=15,
          what="the keys' action registered (a sweep finds it)")
    world.finish(host, made)
    assert _rollbacks(world) == 0, "nothing rolled back"


def test_a_unity_mirror_of_a_child_parented_keeping_its_transform_reaches_blender(world):
    """The person in Blender parents the Camera to the rotated Cube with Keep Transform; the
    person in Unity mirrors it (scale −1 on one axis). Blender set the pose through its
    parent inverse and read the same matrix back as another rotation and scale (a mirror is
    a 180° turn with another sign pattern): the batch failed verification and the mirror
    was kept in Unity, not synced. Now both hold it, in Unity as its person made it, and
    Unity's later rename and move of it commit too."""
    made, host = world.startup_synced()
    cube, cam = bpy.data.objects["Cube"], bpy.data.objects["Camera"]
    camu = cam["vibesync_uuid"]
    cube.location, cube.rotation_euler = (1, 2, 3), (0.3, 0.2, 0.1)
    _parent_keeping_transform(cam, cube)
    converge(host)
    before = _rollbacks(world)
    host.cmd(f"scale {camu} 1 1 -1")
    drive(lambda: cam.matrix_world.determinant() < 0, timeout=15, what="the Camera mirrored in Blender")
    converge(host)
    assert host.obj(camu)["transform"]["scale"] == pytest.approx([1, 1, -1], abs=1e-5), \
        "Unity's mirror stands as its person made it"
    host.cmd(f"rename {camu} Mirrored")  # a batch without a pose: Blender reads it back
    drive(lambda: cam.name == "Mirrored", timeout=15, what="the rename in Blender")
    converge(host)
    host.cmd(f"move {camu} 0.5 0.5 0.5")
    converge(host)
    assert host.obj(camu)["transform"]["scale"] == pytest.approx([1, 1, -1], abs=1e-5)
    view = world.finish(host, made)
    assert view[camu]["t"] == pytest.approx([0.5, 0.5, -0.5], abs=1e-5), "Unity's move stands"
    assert _rollbacks(world) == before, "nothing rolled back"


@pytest.mark.parametrize("how", ["unlink_and_link_back", "other_scene_and_undo"])
def test_an_object_taken_out_of_the_scene_leaves_unity_and_comes_back(world, how):
    """Object > Collection > Remove from All (the Cube's only collection), or a move of the
    Light to another scene: in Blender it is no longer in the synced scene, but it stayed in
    Unity. Now Unity removes it; linked back, or with Ctrl-Z, it is back in Unity too, with
    its uuid and the components the person in Unity had given it."""
    made, host = world.startup_synced()
    name = "Cube" if how == "unlink_and_link_back" else "Light"
    ob = bpy.data.objects[name]
    u = ob["vibesync_uuid"]
    host.cmd(f"component {u} Rigidbody")
    coll = bpy.data.collections["Collection"]
    cu = coll["vibesync_uuid"]
    bpy.ops.ed.undo_push(message="before")
    if how == "unlink_and_link_back":
        coll.objects.unlink(ob)
    else:
        other = bpy.data.scenes.new("Other")
        other.collection.objects.link(ob)
        coll.objects.unlink(ob)
        bpy.ops.ed.undo_push(message="moved to Other")
    drive(lambda: host.obj(u) is None, timeout=15, what=f"the {name} gone in Unity")
    converge(host)  # only what the synced scene holds: the view leaves out nothing else
    if how == "unlink_and_link_back":
        coll.objects.link(ob)
    else:
        bpy.ops.ed.undo()
    drive(lambda: host.obj(u) is not None, timeout=15, what=f"the {name} back in Unity")
    assert host.obj(u)["components"] == ["Rigidbody"], "its Unity components are back"
    view = world.finish(host, made)
    assert view[u]["name"] == name and view[u]["parent"] == cu


def test_a_delete_undone_in_blender_gives_the_object_back_its_unity_components(world):
    """The person in Unity gives the Cube a Rigidbody and a script; in Blender the Cube is
    deleted and the delete undone (X, then Ctrl-Z). The Cube came back in Unity as a bare
    object: a day's Unity-side work on it was gone. Now it comes back with its components
    (they are no synced state: Blender never had them)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    host.cmd(f"component {u} Rigidbody")
    host.cmd(f"component {u} PlayerController")
    bpy.ops.ed.undo_push(message="before")
    bpy.data.objects.remove(cube)
    bpy.ops.ed.undo_push(message="deleted")
    drive(lambda: host.obj(u) is None, timeout=15, what="the Cube gone in Unity")
    converge(host)
    bpy.ops.ed.undo()
    drive(lambda: host.obj(u) is not None, timeout=15, what="the Cube back in Unity")
    assert host.obj(u)["components"] == ["Rigidbody", "PlayerController"], "its Unity components are back"
    view = world.finish(host, made)
    assert view[u]["name"] == "Cube"


@pytest.mark.parametrize("geometry", ["modifier", "own_mesh"])
def test_a_delete_undone_in_unity_gives_the_object_back_its_blender_work(world, geometry):
    """The person in Blender gives the Cube a Bevel modifier (or a vertex group on its own
    mesh), a Track To constraint aimed at the Camera and a custom property, and aims the
    Light at it (Damped Track); in Unity the Cube is deleted and the delete undone (Delete,
    then Ctrl+Z). The Cube came back in Blender as a bare object from what the `create`
    carries: the modifier, the constraint, the property and the vertex group were gone, and
    the Light aimed at nothing. Now it comes back as it was (PROTOCOL §6.1), and nothing of
    it is tracked while it is away."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    if geometry == "modifier":
        cube.modifiers.new("Bevel", "BEVEL").width = 0.1
    else:
        cube.vertex_groups.new(name="Pinned").add([0, 1, 2], 1.0, "REPLACE")
    cube.constraints.new("TRACK_TO").target = bpy.data.objects["Camera"]
    cube["hit_points"] = 42
    light = bpy.data.objects["Light"]
    aim = light.constraints.new("DAMPED_TRACK")  # another object's constraint aimed at it
    aim.target = cube
    converge(host)
    registered = {r["uuids"][0] for r in world.daemon.tail() if r.get("phase") == "STEP"
                  and (r.get("payload") or {}).get("op") == "register"}

    def in_blender():
        return [o for o in bpy.context.scene.objects if o.get("vibesync_uuid") == u]

    host.cmd(f"delete {u}")
    drive(lambda: not in_blender(), timeout=15, what="the Cube gone in Blender")
    view = converge(host)
    assert u not in view
    assert not [o for o in bpy.data.objects if o.get("vibesync_uuid") == u], "no datablock holds its uuid"
    assert aim.target is None, "cleared, as Blender's own delete clears it"
    host.cmd("undo")
    back = drive(in_blender, timeout=15, what="the Cube back in Blender")[0]
    view = world.finish(host, made)
    assert view[u]["name"] == "Cube" and back.name == "Cube"
    assert [c.target for c in back.constraints] == [bpy.data.objects["Camera"]], "its constraint"
    assert back.get("hit_points") == 42, "its custom property"
    assert aim.target == back, "the Light's constraint aims at it again"
    if geometry == "modifier":
        assert [(m.type, round(m.width, 6)) for m in back.modifiers] == [("BEVEL", 0.1)], "its modifier"
    else:
        assert [g.name for g in back.vertex_groups] == ["Pinned"], "its vertex group"
        assert len(back.data.vertices) == 8 and "UVMap" in back.data.uv_layers, "its own mesh"
    assert not [o.name for o in bpy.data.objects if o.users == 0], "no copy left behind"
    later = {r["uuids"][0] for r in world.daemon.tail() if r.get("phase") == "STEP"
             and (r.get("payload") or {}).get("op") == "register"}
    assert later - registered <= {u}, "nothing but the Cube itself was registered"


def test_curves_and_text_reach_unity_as_the_mesh_blender_makes_of_them(world):
    """A person adds a text object and a bevelled Bézier curve. They reached Unity as empty
    objects (only mesh objects sent geometry). They are sent as the mesh Blender shows
    (PROTOCOL §7.1), again when the text is edited, and a Unity mesh edit of one is refused
    with why, Unity keeping its person's edit."""
    made, host = world.startup_synced()
    text = bpy.data.objects.new("Title", bpy.data.curves.new("Title", "FONT"))
    text.data.body = "Hi"
    curve_data = bpy.data.curves.new("Rail", "CURVE")
    curve_data.bevel_depth = 0.1
    spline = curve_data.splines.new("BEZIER")
    spline.bezier_points.add(1)
    spline.bezier_points[1].co = (2, 0, 0)
    rail = bpy.data.objects.new("Rail", curve_data)
    coll = bpy.data.collections["Collection"]
    coll.objects.link(text)
    coll.objects.link(rail)
    drive(lambda: all((host.obj(o.get("vibesync_uuid", "")) or {}).get("mesh") for o in (text, rail)),
          timeout=15, what="the text and the curve in Unity with meshes")
    tu, ru = text["vibesync_uuid"], rail["vibesync_uuid"]
    assert host.obj(tu)["mesh"]["triangle_count"] > 0 and host.obj(ru)["mesh"]["triangle_count"] > 0
    view = converge(host)
    first = host.obj(tu)["mesh"]["mesh_hash"]
    text.data.body = "Hello"
    drive(lambda: host.obj(tu)["mesh"]["mesh_hash"] != first, timeout=15, what="the edited text in Unity")
    host.cmd(f"mesh {ru} cube")  # a person in Unity gives the rail a cube
    drive(lambda: host.stats().get("not_synced", 0) >= 1, timeout=15, what="Unity's edit refused")
    assert rail.type == "CURVE" and rail.data.bevel_depth == pytest.approx(0.1), "the curve stays"
    # A mesh turned into a curve (Object > Convert > Curve) sends the mesh made of the curve;
    # no op clears a mesh, and Unity kept the old one while Blender held none: every later
    # batch for it failed verification.
    bpy.ops.mesh.primitive_circle_add(fill_type="NOTHING", vertices=12)
    ring = bpy.context.active_object
    drive(lambda: (host.obj(ring.get("vibesync_uuid", "")) or {}).get("mesh"), timeout=15,
          what="the ring (a mesh) in Unity")
    ringu = ring["vibesync_uuid"]
    converge(host, meshes=False)
    as_mesh = host.obj(ringu)["mesh"]["mesh_hash"]
    with selected(ring):
        assert bpy.ops.object.convert(target="CURVE") == {"FINISHED"}
    assert ring.type == "CURVE" and ring["vibesync_uuid"] == ringu
    drive(lambda: host.obj(ringu)["mesh"]["mesh_hash"] != as_mesh, timeout=15,
          what="the ring's curve mesh in Unity")
    host.cmd(f"move {ringu} 0 1 0")
    drive(lambda: tuple(ring.location) == pytest.approx((0, 0, 1), abs=1e-5), timeout=15,
          what="Unity's move of the converted ring applied")
    made.update({tu: "Title", ringu: "Circle"})
    view = world.finish(host, made, meshes=False)
    assert view[ru]["name"] == "Rail"


def test_metaballs_reach_unity_as_the_mesh_their_family_makes(world):
    """A person adds two metaballs that melt together. They reached Unity as empty objects.
    The family's mesh is sent with the ball Blender makes it on (the one named without a
    number suffix; the other shows none of its own, PROTOCOL §7.1), again when the other
    ball moves, and a Unity mesh edit of it is refused with why, the balls kept."""
    made, host = world.startup_synced()
    coll = bpy.data.collections["Collection"]
    balls = []
    for name, x in (("Blob", 0.0), ("Blob.001", 1.2)):
        data = bpy.data.metaballs.new(name)
        data.elements.new().radius = 1.0
        ob = bpy.data.objects.new(name, data)
        ob.location = (x, 0, 0)
        coll.objects.link(ob)
        balls.append(ob)
    mother, other = balls
    drive(lambda: all(host.obj(o.get("vibesync_uuid", "")) for o in balls)
          and (host.obj(mother["vibesync_uuid"]).get("mesh") or {}).get("triangle_count", 0) > 0,
          timeout=15, what="the metaballs in Unity, the family's mesh on Blob")
    mu, ou = mother["vibesync_uuid"], other["vibesync_uuid"]
    assert host.obj(ou)["mesh"]["vertex_count"] == 0, "an empty mesh: none of its own"
    converge(host, meshes=False)
    first = host.obj(mu)["mesh"]["mesh_hash"]
    other.location.x = 3.0  # pulled apart: the family's mesh changes, on Blob
    drive(lambda: host.obj(mu)["mesh"]["mesh_hash"] != first, timeout=15,
          what="the family's new mesh in Unity")
    host.cmd(f"mesh {mu} cube")  # a person in Unity gives the blob a cube
    drive(lambda: host.stats().get("not_synced", 0) >= 1, timeout=15, what="Unity's edit refused")
    assert mother.type == "META" and len(mother.data.elements) == 1, "the metaball stays"
    host.cmd(f"move {ou} 0 1 0")
    drive(lambda: tuple(other.location) == pytest.approx((0, 0, 1), abs=1e-5), timeout=15,
          what="Unity's move of the other ball applied")
    made.update({mu: "Blob", ou: "Blob.001"})
    world.finish(host, made, meshes=False)


def test_a_cube_converted_to_a_point_cloud_leaves_unity_no_stale_mesh(world):
    """A person turns the Cube into a point cloud (Object > Convert > Point Cloud, Blender
    4.3+): the same object, now with geometry the protocol does not carry. Unity kept showing
    the cube's mesh. It now gets an empty mesh (PROTOCOL §7.1), Blender's status says why, and
    a Unity mesh edit of it is refused, the point cloud kept. (Blender 4.2 has no point
    cloud target: its Grease Pencil conversion replaces the Cube with a new object, which
    reaches Unity with no geometry, and the Cube is deleted there.)"""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    cu = cube["vibesync_uuid"]
    assert host.obj(cu)["mesh"]["vertex_count"] > 0
    targets = {i.identifier for i in
               bpy.ops.object.convert.get_rna_type().properties["target"].enum_items}
    for ob in bpy.context.view_layer.objects:
        ob.select_set(ob == cube)
    bpy.context.view_layer.objects.active = cube
    if "POINTCLOUD" in targets:
        assert bpy.ops.object.convert(target="POINTCLOUD") == {"FINISHED"}
        assert cube.type == "POINTCLOUD" and cube["vibesync_uuid"] == cu
        drive(lambda: host.obj(cu)["mesh"]["vertex_count"] == 0, timeout=15,
              what="no stale mesh on the point cloud in Unity")
        assert "point cloud" in vibesync.status()["generated_geometry_notes"][cu]
        converge(host, meshes=False)
        host.cmd(f"mesh {cu} cube")  # a person in Unity gives it a cube again
        drive(lambda: host.stats().get("not_synced", 0) >= 1, timeout=15,
              what="Unity's edit refused")
        assert cube.type == "POINTCLOUD" and len(cube.data.points) == 8, "the point cloud stays"
    else:
        assert bpy.ops.object.convert(target="GPENCIL") == {"FINISHED"}
        gp = bpy.context.active_object
        assert gp.type == "GPENCIL" and "Cube" not in bpy.data.objects
        gu = drive(lambda: gp.get("vibesync_uuid"), what="the new object's uuid")
        drive(lambda: host.obj(gu) is not None and host.obj(cu) is None, timeout=15,
              what="the Grease Pencil object in Unity, the Cube gone")
        assert host.obj(gu)["mesh"]["vertex_count"] == 0
        del made[cu]
        made[gu] = gp.name
    world.finish(host, made, meshes=False)


def placed_prop(host):
    """A prop (a tetrahedron) in a collection excluded from the view layer, placed by a
    Collection Instance in "Collection", and the instance in Unity with the prop's mesh:
    (the collection, the mesh, its object, the instance)."""
    props = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(props)
    bpy.context.view_layer.layer_collection.children["Props"].exclude = True
    me = bpy.data.meshes.new("Tetra")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [],
                   [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)])
    tetra = bpy.data.objects.new("Tetra", me)
    props.objects.link(tetra)
    inst = bpy.data.objects.new("Props Instance", None)
    inst.instance_type = "COLLECTION"
    inst.instance_collection = props
    inst.location = (4, 0, 0)
    bpy.data.collections["Collection"].objects.link(inst)
    drive(lambda: ((host.obj(inst.get("vibesync_uuid", "")) or {}).get("mesh") or {})
          .get("triangle_count") == 4, timeout=15, what="the instance in Unity with the prop's mesh")
    return props, me, tetra, inst


def test_a_collection_instance_reaches_unity_as_the_geometry_it_shows(world):
    """A person keeps a prop in a collection excluded from the view layer and places it with
    a Collection Instance (an Empty). Unity got an empty object where Blender shows the
    prop. The instance is sent as the geometry it shows (PROTOCOL §7.1), again when the
    prop's mesh is edited or its object moved, none when it stops instancing; a Unity mesh
    edit of it is refused with why, the instance kept."""
    made, host = world.startup_synced()
    props, me, tetra, inst = placed_prop(host)
    iu, tu = inst["vibesync_uuid"], tetra["vibesync_uuid"]
    assert inst.type == "EMPTY" and host.obj(tu) is not None
    converge(host, meshes=False)
    first = host.obj(iu)["mesh"]["mesh_hash"]
    me.vertices[3].co.z = 2.0  # the prop is modelled: the instance shows it
    me.update()
    drive(lambda: host.obj(iu)["mesh"]["mesh_hash"] != first, timeout=15,
          what="the instance's new geometry in Unity")
    converge(host, meshes=False)
    second = host.obj(iu)["mesh"]["mesh_hash"]
    tetra.location.x = 0.5  # moved inside the instanced collection
    drive(lambda: host.obj(iu)["mesh"]["mesh_hash"] != second, timeout=15,
          what="the instance's geometry after the prop moved")
    host.cmd(f"mesh {iu} cube")  # a person in Unity gives the instance a cube
    drive(lambda: host.stats().get("not_synced", 0) >= 1, timeout=15, what="Unity's edit refused")
    assert inst.type == "EMPTY" and inst.instance_collection == props, "the instance stays"
    converge(host, meshes=False)
    inst.instance_type = "NONE"  # the person stops instancing: Unity shows nothing there
    drive(lambda: host.obj(iu)["mesh"]["vertex_count"] == 0, timeout=15,
          what="no geometry on the Empty in Unity")
    made.update({iu: "Props Instance", tu: "Tetra", props["vibesync_uuid"]: "Props"})
    world.finish(host, made, meshes=False)


def test_make_instances_real_turns_a_collection_instance_into_objects_in_unity(world):
    """The person places a prop with a Collection Instance, then Object > Apply > Make
    Instances Real: Blender copies the prop's object into the scene (a linked duplicate
    carrying the original's uuid property) and the Empty stops instancing. Unity gets the
    copy as an object of its own (a fresh uuid, the prop's mesh, where the instance showed
    it), the Empty with no geometry, and the prop itself untouched."""
    made, host = world.startup_synced()
    props, me, tetra, inst = placed_prop(host)
    iu, tu = inst["vibesync_uuid"], tetra["vibesync_uuid"]
    converge(host, meshes=False)
    for ob in bpy.context.view_layer.objects:
        ob.select_set(ob == inst)
    bpy.context.view_layer.objects.active = inst
    assert bpy.ops.object.duplicates_make_real() == {"FINISHED"}
    copy = next(o for o in bpy.data.objects if o.data == me and o != tetra)
    assert tuple(copy.matrix_world.translation) == pytest.approx((4, 0, 0))
    cu = drive(lambda: copy.get("vibesync_uuid") not in (None, tu) and copy["vibesync_uuid"],
               what="a fresh uuid on the copy")
    drive(lambda: ((host.obj(cu) or {}).get("mesh") or {}).get("triangle_count") == 4
          and host.obj(iu)["mesh"]["vertex_count"] == 0, timeout=15,
          what="the copy in Unity with the prop's mesh, the Empty with none")
    assert tetra["vibesync_uuid"] == tu and host.obj(tu) is not None, "the prop keeps its uuid"
    made.update({iu: "Props Instance", tu: "Tetra", cu: copy.name, props["vibesync_uuid"]: "Props"})
    world.finish(host, made, meshes=False)


def test_a_child_of_an_object_taken_out_of_the_scene_stays_where_it_stands(world):
    """The Camera is the Cube's child (Keep Transform); the person unlinks the Cube from its
    only collection and links it back. The Camera stays in the scene: while the Cube is out
    it is a root in Unity where it stands (Unity keeps the children of what it deletes), and
    Blender says so (and sets Unity's move of it in the world); with the Cube back it is the
    Cube's child again in both."""
    made, host = world.startup_synced()
    cube, cam = bpy.data.objects["Cube"], bpy.data.objects["Camera"]
    u, camu = cube["vibesync_uuid"], cam["vibesync_uuid"]
    cube.location = (1, 2, 3)
    _parent_keeping_transform(cam, cube)
    converge(host)
    coll = bpy.data.collections["Collection"]
    coll.objects.unlink(cube)
    drive(lambda: host.obj(u) is None, timeout=15, what="the Cube gone in Unity")
    view = converge(host)
    assert view[camu]["parent"] == coll["vibesync_uuid"], "a root of the Collection"
    host.cmd(f"move {camu} 0.5 0.5 0.5")  # where Unity holds it: in the world
    drive(lambda: host.obj(camu)["transform"]["position"] == pytest.approx([0.5, 0.5, 0.5]),
          timeout=15, what="Unity's move")
    view = converge(host)
    assert view[camu]["t"] == pytest.approx([0.5, 0.5, -0.5], abs=1e-5), "Unity's move stands"
    coll.objects.link(cube)
    drive(lambda: host.obj(u) is not None, timeout=15, what="the Cube back in Unity")
    view = world.finish(host, made)
    assert view[camu]["parent"] == u, "the Cube's child again"


def test_collections_of_another_scene_stay_out_of_unity_until_linked_into_the_synced_one(world):
    """A person keeps props in a second scene ("Assets": a "Backdrop" collection holding a
    "Crate" and the Cube too, and a "Crates" collection under it). The collections reached
    Unity as empty objects though their objects did not, and the Cube moved under Backdrop
    there (its first collection by name). They stay out, and the Cube in its Collection,
    until the person links Backdrop into the synced scene; then they arrive with the Crate
    under them. Unlinked from the synced scene again they leave Unity, and Blender keeps
    them (PROTOCOL §6.1)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    collection = bpy.data.collections["Collection"]
    assets = bpy.data.scenes.new("Assets")
    props = bpy.data.collections.new("Backdrop")  # before "Collection" in bpy.data's order
    crates = bpy.data.collections.new("Crates")
    assets.collection.children.link(props)
    props.children.link(crates)
    crate = bpy.data.objects.new("Crate", bpy.data.meshes.new("Crate"))
    props.objects.link(crate)
    props.objects.link(cube)
    assert cube.users_collection[0] == props
    drive_for(1.5)  # the sweep runs; nothing of Assets may leave
    pu, cu, ku = (x["vibesync_uuid"] for x in (props, crates, crate))
    view = converge(host)
    assert not {pu, cu, ku} & set(host_view(host)), "nothing of another scene reaches Unity"
    assert not {pu, cu, ku} & set(view)
    assert view[cube["vibesync_uuid"]]["parent"] == collection["vibesync_uuid"], \
        "the Cube's place is its collection in the synced scene"
    bpy.context.scene.collection.children.link(props)  # now in the synced scene too
    drive(lambda: host.obj(ku) is not None and host.obj(cu) is not None, timeout=15,
          what="Backdrop, Crates and the Crate in Unity")
    view = converge(host)
    assert view[pu]["parent"] is None and view[cu]["parent"] == pu and view[ku]["parent"] == pu
    bpy.context.scene.collection.children.unlink(props)
    drive(lambda: host.obj(pu) is None and host.obj(cu) is None and host.obj(ku) is None,
          timeout=15, what="Backdrop and what it holds gone from Unity")
    view = world.finish(host, made)
    assert not {pu, cu, ku} & set(view)
    assert crate.name in assets.objects and props.name in assets.collection.children, \
        "Blender keeps them in the scene they are in"


def test_a_file_reopened_with_another_scene_active_syncs_the_scene_it_was_synced_with(world, tmp_path):
    """A person adds a second scene, leaves it active, saves and quits; Blender started again
    on the file made that scene the synced one, so every object of the first scene was "taken out of the
    synced scene" and deleted in Unity. The file keeps the scene it is synced with."""
    made, host = world.startup_synced()
    bpy.context.window.scene = bpy.data.scenes.new("Storyboard")
    path = str(tmp_path / "two_scenes.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    vibesync.disconnect()  # Blender closed; started again on the file
    bpy.ops.wm.open_mainfile(filepath=path)
    assert bpy.context.scene.name == "Storyboard", "the file opens on the scene it was saved on"
    vibesync.connect("127.0.0.1", world.daemon.port, world.daemon.token, world.project_id)
    drive(lambda: vibesync.status()["connected"], timeout=20, what="connected after the reopen")
    view = world.finish(host, made)
    assert set(made) <= set(view), "nothing of the synced scene left Unity"
    tombstones = [r for r in world.daemon.tail() if (r.get("payload") or {}).get("op") == "tombstone"]
    assert not tombstones, tombstones


@pytest.mark.parametrize("seq", ["saved", "zero"], ids=["its_saved_seq", "no_seq"])
def test_unity_edits_saved_while_the_daemon_was_down_reach_blender_and_stand(world, seq):
    """Unity is open while the daemon is down (not started yet, or stopped): the person moves
    the Main Camera, renames the Directional Light, deletes the Light and makes an object, saves
    and quits. Unity started again
    with the daemon up took the scene as loaded for what the daemon holds: the edits were
    never sent (Blender kept the old pose and name), and a replay from seq 0 — a Unity
    editor session keeps no seq across a restart — put the old ones back in Unity. The scene
    keeps what it last synced of each object (PROTOCOL.md §6.6): the edits are the person's,
    sent, and stand in both."""
    world.blender(build=lambda: bpy.data.objects.remove(bpy.data.objects["Cube"]))  # a scene the host can load
    made = uuids_of(("Collection", "Camera", "Light"))
    host = world.host()
    converge(host)
    path, doc = _close_unity_saving(world, host)
    mc = next(u for u, n in world.host_made().items() if n == "Main Camera")
    dl = next(u for u, n in world.host_made().items() if n == "Directional Light")
    # Unity without the daemon: the person's edits, saved in the scene.
    offline = Host(world.daemon, world.project_id, world.workdir,
                   ["--scene", path, "--last-seq", str(doc.get("last_seq", 0)), "--no-connect"])
    lu = bpy.data.objects["Light"]["vibesync_uuid"]
    offline.cmd(f"move {mc} 4 5 6")
    offline.cmd(f"rename {dl} Sun")
    offline.cmd(f"delete {lu}")  # Blender's Light, deleted in Unity
    i = offline.cmd("create auto MadeOffline")
    nu = offline.wait("created", i)["uuid"]
    i = offline.cmd(f"dump {path}")
    offline.wait("dumped", i)
    offline.cmd("quit")
    offline.proc.wait(timeout=20)
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if seq == "zero":
        doc["last_seq"] = 0
    again = _reopen_unity(world, path, doc)
    made.pop(lu)
    view = finish(world.daemon, world.project_id, again, made,
                  dict(world.host_made(), **{dl: "Sun", nu: "MadeOffline"}))
    assert view[mc]["t"] == pytest.approx([4, 5, -6], abs=1e-5), "Unity's move made offline"
    assert view[dl]["name"] == "Sun", "Unity's rename made offline"
    assert lu not in view and "Light" not in bpy.data.objects, "Unity's delete made offline"


def test_a_unity_reparent_made_offline_that_loops_with_blenders_is_a_conflict_blender_won(world):
    """Unity is saved and closed. Its person, with Unity open but the daemon out of reach,
    puts the Camera under the Light and saves; meanwhile the person in Blender puts the Light
    under the Camera, which commits. Unity reopens: the replay's reparent would make a loop
    with the person's own, so Unity leaves it unapplied and sends its reparent from the seq it
    was made on — a conflict Blender's committed reparent won (PROTOCOL.md §6.1, §6.6): shown
    in both editors, recorded in the WAL, and both end holding the Light under the Camera."""
    world.blender(build=lambda: bpy.data.objects.remove(bpy.data.objects["Cube"]))  # a scene the host can load
    made = uuids_of(("Collection", "Camera", "Light"))
    host = world.host()
    converge(host)
    path, doc = _close_unity_saving(world, host)
    cam, light = bpy.data.objects["Camera"], bpy.data.objects["Light"]
    camu, lu = cam["vibesync_uuid"], light["vibesync_uuid"]
    # Unity without the daemon: the person's reparent, saved in the scene.
    offline = Host(world.daemon, world.project_id, world.workdir,
                   ["--scene", path, "--last-seq", str(doc.get("last_seq", 0)), "--no-connect"])
    offline.cmd(f"parent {camu} {lu}")
    i = offline.cmd(f"dump {path}")
    offline.wait("dumped", i)
    offline.cmd("quit")
    offline.proc.wait(timeout=20)
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    # Blender meanwhile: Ctrl-P > Object (Keep Transform), committed while Unity is closed.
    _parent_keeping_transform(light, cam)
    drive(lambda: any(r.get("phase") == "COMMIT" and lu in (r.get("uuids") or [])
                      and (r.get("payload") or {}).get("op") == "sync" for r in world.daemon.tail()),
          what="Blender's reparent of the Light committed")
    again = _reopen_unity(world, path, doc)
    converge(again)
    shown = [c for c in vibesync.status()["conflicts"] if c.get("uuid") == camu]
    view = finish(world.daemon, world.project_id, again, made, world.host_made())
    coll = bpy.data.collections["Collection"]["vibesync_uuid"]
    problems = []
    if view[lu]["parent"] != camu:
        problems.append(f"Blender's reparent of the Light undone: parent {view[lu]['parent']}")
    if view[camu]["parent"] != coll:
        problems.append(f"the Camera is not back in its collection: parent {view[camu]['parent']}")
    if bpy.data.objects["Light"].parent != bpy.data.objects["Camera"]:
        problems.append("Blender does not show the Light under the Camera")
    if not [r for r in world.daemon.tail() if r.get("phase") == "STEP"
            and (r.get("payload") or {}).get("op") == "conflict" and r.get("uuids") == [camu]]:
        problems.append("no conflict STEP in the WAL")
    if not shown:
        problems.append("no conflict shown in Blender")
    if again.count("conflict") < 1:
        problems.append("no conflict shown in Unity")
    assert not problems, problems


def test_an_object_blender_deleted_while_unity_was_closed_leaves_no_live_record(world):
    """Unity saves and quits; in Blender the person deletes the Light. Unity reopens its scene,
    which still holds the Light: the replay deletes it there. Unity registered what its scene
    held before that replay, which made the daemon's record of the Light live again for an
    object in no editor (§5, §6.6)."""
    world.blender(build=lambda: bpy.data.objects.remove(bpy.data.objects["Cube"]))  # a scene the host can load
    made = uuids_of(("Collection", "Camera", "Light"))
    host = world.host()
    converge(host)
    path, doc = _close_unity_saving(world, host)
    lu = bpy.data.objects["Light"]["vibesync_uuid"]
    bpy.data.objects.remove(bpy.data.objects["Light"])
    drive(lambda: any((r.get("payload") or {}).get("op") == "tombstone" and r.get("uuids") == [lu]
                      and r.get("phase") == "COMMIT" for r in world.daemon.tail()),
          timeout=15, what="Blender's delete of the Light committed")
    again = _reopen_unity(world, path, doc)
    made.pop(lu)
    view = finish(world.daemon, world.project_id, again, made, world.host_made())
    assert lu not in view
    steps = [(r["payload"].get("op"), r["seq"]) for r in world.daemon.tail()
             if r.get("phase") == "STEP" and r.get("uuids") == [lu]]
    gone = max(seq for op, seq in steps if op == "tombstone")
    assert not [s for op, s in steps if op == "register" and s > gone], \
        "the daemon's record of the deleted Light is live again"
