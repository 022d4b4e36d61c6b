"""Data linked from a library .blend (File > Link): identity without a property, state sent
like any object's, edits from the other editor refused with why (read-only here). Real bpy,
real library files made in the test's tmp dir; the real daemon, or a scripted one where the
test must control the bytes."""

from __future__ import annotations

import os

import bpy
import pytest

import vibesync
from conftest import pump_until, settle
from daemon import registry_records, synced_states
from library_files import link_objects, make_library
from test_sync import applied_messages, batch_frames, resolve_sent
from vibesync import identity

PROP = "vibesync_uuid"


@pytest.fixture
def libraries(tmp_path):
    """Two library files, both `lib.blend`: tmp/lib.blend (Cube at 1, 2, 3) and
    tmp/sub/lib.blend (Cube at 4, 5, 6); made before the test's Blender starts."""
    os.makedirs(tmp_path / "sub")
    a, b = str(tmp_path / "lib.blend"), str(tmp_path / "sub" / "lib.blend")
    make_library(a, (1.0, 2.0, 3.0))
    make_library(b, (4.0, 5.0, 6.0))
    return a, b


def linked(name: str, lib_path: str):
    return next(o for o in bpy.data.objects if o.name == name and o.library is not None
                and os.path.samefile(bpy.path.abspath(o.library.filepath), lib_path))


def uuid_of(idb) -> str | None:
    return vibesync._session().registry.uuid_for(idb)


def test_linked_objects_get_stable_distinct_uuids_and_their_state_is_sent(libraries, bridge,
                                                                          tmp_path):
    """Linked objects were skipped (no property): Unity never saw them, and nothing said so.
    They are tracked by a uuid derived from their library and name, registered with a
    distinguishable editor_ref, sent with their mesh, material, pose and parent, and keep
    their uuids over a save and reopen; two libraries' "Cube" are two objects."""
    daemon = bridge
    lib_a, lib_b = libraries
    link_objects(lib_a)
    link_objects(lib_b)
    settle()
    cube_a, cube_b = linked("Cube", lib_a), linked("Cube", lib_b)
    knob_a = linked("Knob", lib_a)
    pump_until(lambda: all(uuid_of(o) for o in (cube_a, cube_b, knob_a)), what="linked uuids")
    ua, ub, uk = uuid_of(cube_a), uuid_of(cube_b), uuid_of(knob_a)
    assert len({ua, ub, uk}) == 3, "another library's Cube is another object"
    assert PROP not in cube_a.keys(), "nothing is written into linked data"
    mesh_u = uuid_of(cube_a.data)
    assert mesh_u is not None, "the linked mesh is tracked too"
    assert vibesync.status()["linked"] == 8, "4 objects, 2 meshes, 2 materials: said so"
    from vibesync import ui
    assert ("Linked from library files: 8 datablock(s), read-only here (edit them through a "
            "library override)", "LIBRARY_DATA_DIRECT") in ui.panel_lines(vibesync.status()), \
        "and the sidebar says so"

    pump_until(lambda: all(u in synced_states(daemon) for u in (ua, ub, uk)), timeout=15,
               what="the linked objects' state at the daemon")
    states = synced_states(daemon)
    sa = states[ua]["state"]
    assert sa["name"] == "Cube" and sa["t"] == [1.0, 3.0, -2.0], sa
    assert sa.get("mesh_hash"), "its mesh is sent"
    assert sa["material"]["base_color"][:3] == [1.0, 0.0, 0.0], sa
    assert states[uk]["state"]["parent"] == ua, "the hierarchy inside the library"
    assert states[ub]["state"]["t"] == [4.0, 6.0, -5.0]
    refs = {u: registry_records(daemon)[u]["last"]["editor_ref"] for u in (ua, ub)}
    assert refs[ua] == "OB:Cube [lib.blend]" and refs[ub] == "OB:Cube [lib.blend.001]", refs

    path = str(tmp_path / "scene.blend")
    assert bpy.ops.wm.save_as_mainfile(filepath=path) == {"FINISHED"}
    old_session = vibesync.status()["session_id"]
    assert bpy.ops.wm.open_mainfile(filepath=path) == {"FINISHED"}
    pump_until(lambda: vibesync.status()["connected"]
               and vibesync.status()["session_id"] != old_session, what="reconnect after load")
    pump_until(lambda: not vibesync.status()["scanning"] and uuid_of(linked("Cube", lib_a)),
               what="the reopened file scanned")
    assert uuid_of(linked("Cube", lib_a)) == ua
    assert uuid_of(linked("Cube", lib_b)) == ub
    assert uuid_of(linked("Knob", lib_a)) == uk
    st = vibesync.status()
    assert st["registry_check"]["agree"], st["registry_check"]
    recs = registry_records(daemon)
    assert all(recs[u]["tombstones"] == 0 for u in (ua, ub, uk)), "nothing deleted"


def test_a_library_override_takes_the_uuid_of_what_it_overrides(libraries, bridge, tmp_path):
    """An override is local data, but Blender rebuilds it from the linked datablock on load,
    dropping a property set on it: it had a fresh uuid after every reopen (Unity deleted and
    made it again). It takes the linked object's uuid, and the linked object it stands for
    is not sent as an object of its own."""
    cube = link_objects(libraries[0], ("Cube",))[0]
    settle()
    pump_until(lambda: uuid_of(cube), what="linked uuid")
    u = uuid_of(cube)
    ov = cube.override_create(remap_local_usages=True)
    settle()
    pump_until(lambda: uuid_of(ov) == u, what="the override takes the uuid")
    assert uuid_of(cube) is None
    ov.location = (7.0, 0.0, 0.0)
    settle()
    pump_until(lambda: (synced_states(bridge).get(u) or {}).get("state", {}).get("t")
               == [7.0, 0.0, 0.0], timeout=15, what="the override's move sent")
    path = str(tmp_path / "scene.blend")
    assert bpy.ops.wm.save_as_mainfile(filepath=path) == {"FINISHED"}
    assert bpy.ops.wm.open_mainfile(filepath=path) == {"FINISHED"}
    pump_until(lambda: vibesync.status()["connected"] and not vibesync.status()["scanning"],
               what="reopened")
    ov = next(o for o in bpy.data.objects if o.override_library is not None)
    pump_until(lambda: uuid_of(ov) == u, what="the same uuid after reopening")
    assert registry_records(bridge)[u]["tombstones"] == 0


def test_an_edit_of_a_linked_object_is_refused_with_why_and_nothing_is_sent_back(libraries,
                                                                                scripted):
    """Blender cannot hold an edit of linked data (read-only; Python may write it for the
    session, and the next load reverts it). A batch moving, renaming or hiding a linked
    object is not applied: Blender answers what it holds and names why in `applied.failed`,
    so the batch rolls back and the other editor keeps its person's edit (PROTOCOL.md §6.4);
    a replay re-sending what it holds is applied as a no-op; a live preview is dropped."""
    cube = link_objects(libraries[0], ("Cube",))[0]
    settle()
    pump_until(lambda: uuid_of(cube), what="linked uuid")
    u = uuid_of(cube)
    resolve_sent(scripted, 90)
    sent = [c for m in scripted.received if m.get("type") == "change" for c in m["changes"]
            if c["uuid"] == u]
    assert sent and sent[0]["op"] == "create", "the linked object is sent"
    sent_before = len([m for m in scripted.received if m.get("type") == "change"])

    scripted.push(batch_frames("op-l1", 97, [
        {"op": "transform", "uuid": u, "t": [0, 9, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1]},
        {"op": "rename", "uuid": u, "name": "Renamed"}], path="slow"))
    pump_until(lambda: applied_messages(scripted), what="applied")
    a = applied_messages(scripted)[-1]
    why = a.get("failed", {}).get(u, "")
    assert "linked from" in why and "read-only in Blender" in why \
        and "library override" in why, a
    assert u not in a["hashes"], "not answered as applied: the batch rolls back"
    assert tuple(cube.location) == (1.0, 2.0, 3.0) and cube.name == "Cube"

    # A replay of what Blender holds (a reconnect) is no failure.
    state = sent[0]
    scripted.push(batch_frames("op-l2", 98, [dict(state)], path="resync"))
    pump_until(lambda: len(applied_messages(scripted)) == 2, what="replay applied")
    a2 = applied_messages(scripted)[-1]
    assert u in a2["hashes"] and not a2.get("failed"), a2

    later = [m for m in scripted.received if m.get("type") == "change"][sent_before:]
    assert not [c for m in later for c in m["changes"] if c["uuid"] == u], \
        ("nothing sent back as if a person here had made it", later)
    assert identity.linked_read_only(cube)


@pytest.mark.parametrize("how", ["object", "object_and_data"])
def test_make_local_keeps_the_uuid(libraries, bridge, tmp_path, how):
    """Make Local (Object > Library > Make Local) frees the linked object and makes a new
    local one of the same name: it had a fresh uuid, so the other editor deleted the object
    and made another (its Unity components lost with it). The local object (and its mesh,
    made local too) keeps the linked one's uuid, in this session and after a save and
    reopen; the daemon's record is updated, never tombstoned. (The linked Knob keeps the
    linked Cube as its parent: Blender cannot change linked data.)"""
    daemon = bridge
    cube, knob = link_objects(libraries[0])
    settle()
    pump_until(lambda: uuid_of(cube) and uuid_of(cube.data) and uuid_of(knob), what="linked uuids")
    u, mu = uuid_of(cube), uuid_of(cube.data)
    pump_until(lambda: u in synced_states(daemon), timeout=15, what="the linked Cube synced")
    local = cube.make_local()
    if how == "object_and_data":
        local.data = local.data.make_local()
    settle()
    pump_until(lambda: uuid_of(local) == u, what="the local Cube keeps its uuid")
    assert local.library is None and local[PROP] == u, "written into the local object: it lasts"
    if how == "object_and_data":
        pump_until(lambda: uuid_of(local.data) == mu, what="the local mesh keeps its uuid")
    pump_until(lambda: registry_records(daemon)[u]["last"]["editor_ref"] == "OB:Cube",
               what="the record names the local object")
    local.location = (0.0, 0.0, 5.0)  # a local object takes edits
    settle()
    pump_until(lambda: synced_states(daemon)[u]["state"]["t"] == [0.0, 5.0, 0.0], timeout=15,
               what="the local Cube's move sent")
    path = str(tmp_path / "made_local.blend")
    assert bpy.ops.wm.save_as_mainfile(filepath=path) == {"FINISHED"}
    assert bpy.ops.wm.open_mainfile(filepath=path) == {"FINISHED"}
    pump_until(lambda: vibesync.status()["connected"] and not vibesync.status()["scanning"],
               what="reopened")
    again = next(o for o in bpy.data.objects if o.name == "Cube" and o.library is None)
    pump_until(lambda: uuid_of(again) == u, what="the same uuid after reopening")
    records = registry_records(daemon)
    assert records[u]["tombstones"] == 0, "the object was never deleted"
    if how == "object_and_data":
        assert records[mu]["tombstones"] == 0
