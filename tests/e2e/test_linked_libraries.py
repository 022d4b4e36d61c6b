"""Objects linked from a library .blend (File > Link), end to end: they were skipped by the
addon (linked data cannot carry its uuid property) and never reached Unity, with no word
anywhere. They reach Unity with their mesh, pose and hierarchy, keep their uuids over a save
and reopen, and a Unity edit of one — read-only in Blender — stays in Unity, marked not
synced with why (docs/PROTOCOL.md §6.4)."""

from __future__ import annotations

import os

import pytest

from harness import bpy, drive, drive_for, vibesync
from library_files import link_objects, make_library
from scenario import converge, quiet, uuids_of
from test_scenarios import world  # noqa: F401 (fixture)


@pytest.fixture
def libraries(tmp_path):
    """tmp/lib.blend (Cube at 1, 2, 3) and tmp/sub/lib.blend (Cube at 4, 5, 6)."""
    os.makedirs(tmp_path / "sub")
    a, b = str(tmp_path / "lib.blend"), str(tmp_path / "sub" / "lib.blend")
    make_library(a, (1.0, 2.0, 3.0))
    make_library(b, (4.0, 5.0, 6.0))
    return a, b


def _link(*paths):
    """File > Link of each library's Cube and Knob into the scene's collection, beside a
    local "Local" empty."""
    def build():
        local = bpy.data.objects.new("Local", None)
        bpy.context.scene.collection.objects.link(local)
        for path in paths:
            link_objects(path)
    return build


def _linked_uuids() -> dict[str, tuple[str, str]]:
    """uuid -> (name, library name) of every linked object, once Blender has bound them."""
    reg = vibesync._session().registry
    out = {}
    for ob in bpy.data.objects:
        if ob.library is not None:
            u = drive(lambda ob=ob: reg.uuid_for(ob), what=f"a uuid for the linked {ob.name}")
            out[u] = (ob.name, ob.library.name)
    return out


def _made(linked: dict) -> dict[str, str]:
    """uuid -> name of what the Blender person has: the local empty and the linked objects."""
    return dict(uuids_of(("Local",)), **{u: v[0] for u, v in linked.items()})


def _by_name(linked: dict, name: str, library: str) -> str:
    return next(u for u, v in linked.items() if v == (name, library))


def test_linked_objects_reach_unity(world, libraries):
    world.blender(startup=False, build=_link(*libraries))
    linked = _linked_uuids()
    assert len(linked) == 4, linked
    host = world.host()
    view = converge(host)
    for u in linked:
        assert u in view, f"{linked[u]} missing"
    cube_a = _by_name(linked, "Cube", "lib.blend")
    cube_b = _by_name(linked, "Cube", "lib.blend.001")
    knob_a = _by_name(linked, "Knob", "lib.blend")
    o = host.obj(cube_a)
    assert o["name"] == "Cube" and o["transform"]["position"] == pytest.approx([1, 3, 2], abs=1e-5)
    assert o["mesh"]["vertex_count"] == 4, o
    assert host.obj(cube_b)["transform"]["position"] == pytest.approx([4, 6, 5], abs=1e-5)
    assert host.obj(knob_a)["parent"] == cube_a, "the library's hierarchy"
    world.finish(host, _made(linked))


def test_linked_objects_keep_their_uuids_over_save_and_reopen(world, libraries, tmp_path):
    world.blender(startup=False, build=_link(*libraries))
    linked = _linked_uuids()
    host = world.host()
    before = converge(host)
    count = len(host.scene()["objects"])
    path = str(tmp_path / "scene" / "scene.blend")
    os.makedirs(os.path.dirname(path))
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    drive(lambda: vibesync.status()["connected"] and not vibesync.status()["scanning"],
          timeout=20, what="reconnected after reopen")
    assert _linked_uuids() == linked, "the same uuids after the reopen"
    converge(host)
    assert len(host.scene()["objects"]) == count, "nothing duplicated in Unity"
    view = world.finish(host, _made(linked))
    assert set(view) == set(before), "nothing duplicated or lost by the reopen"


def test_a_unity_move_of_a_linked_object_stays_in_unity_not_synced(world, libraries):
    world.blender(startup=False, build=_link(libraries[0]))
    linked = _linked_uuids()
    host = world.host()
    converge(host)
    cube = _by_name(linked, "Cube", "lib.blend")
    ob = next(o for o in bpy.data.objects if o.library is not None and o.name == "Cube")
    applied = vibesync.status()["applied_batches"]
    host.cmd(f"move {cube} 5 0 0")
    ev = host.wait("not_synced", pred=lambda e: cube in e.get("uuids", ()), timeout=15,
                   what="the move kept in Unity, not synced")
    assert "read-only in Blender" in ev["reason"] and "library override" in ev["reason"], ev
    # Blender, which could not apply the move, is sent the state that stands (§6.4): the
    # move's batch and that correction, both answered before the bridge can be quiet.
    drive(lambda: vibesync.status()["applied_batches"] >= applied + 2, timeout=15,
          what="Blender answered the move's batch and its correction")
    quiet(world.daemon, world.project_id, host)
    assert host.obj(cube)["transform"]["position"] == pytest.approx([5, 0, 0]), \
        "the person's move stays in Unity"
    assert host.stats()["not_synced"] == 1
    assert tuple(ob.location) == pytest.approx((1, 2, 3)), "Blender holds the library's pose"
    # Nothing else stops syncing: a move made in Blender still reaches Unity.
    local = bpy.data.objects["Local"]
    local.location = (0, 0, 2)
    host.wait_obj(uuids_of(("Local",)).popitem()[0],
                  lambda o: o["transform"]["position"] == pytest.approx([0, 2, 0], abs=1e-5),
                  timeout=15, what="a later edit in Blender reaches Unity")
    drive_for(0.2)
