"""Identity in real Blender against the real daemon: every kind, duplicate, rename, undo,
redo, save/reload, delete."""

from __future__ import annotations

import json
import os

import bpy

import vibesync
from conftest import pump_until, settle
from daemon import Daemon, registry_records
from vibesync import identity, wire

PROP = "vibesync_uuid"


def uid(idb) -> str:
    return idb[PROP]


def all_tracked():
    for kind, (attr, _code) in identity.KIND_TABLE.items():
        for idb in getattr(bpy.data, attr):
            yield kind, idb


def daemon_live(daemon, uuids) -> dict:
    recs = registry_records(daemon)
    return {u: recs.get(u, {}).get("state") for u in uuids}


def wait_registered(daemon, uuids, timeout=10.0):
    uuids = list(uuids)
    return pump_until(lambda: all(v == "live" for v in daemon_live(daemon, uuids).values())
                      and vibesync.status()["pending_requests"] == 0,
                      timeout, f"daemon to register {uuids}")


def make_cube(name="Cube"):
    bpy.ops.mesh.primitive_cube_add()
    ob = bpy.context.active_object
    ob.name = name
    return ob


def test_every_kind_gets_a_uuid_and_is_registered(bridge):
    daemon = bridge
    ob = make_cube()
    mat = bpy.data.materials.new("Paint")
    ob.data.materials.append(mat)
    arm = bpy.data.armatures.new("Rig")
    act = bpy.data.actions.new("Walk")
    img = bpy.data.images.new("Tex", 4, 4)
    col = bpy.data.collections.new("Props")
    lamp = bpy.data.lights.new("Lamp", "POINT")
    cam = bpy.data.cameras.new("Cam")
    tree = bpy.data.node_groups.new("Scatter", "GeometryNodeTree")
    settle()
    # Orphan data (no depsgraph update) is found by the throttled sweep.
    pump_until(lambda: all(wire.is_valid_uuid(idb.get(PROP)) for _k, idb in all_tracked()),
               what="uuids on orphan datablocks")
    kinds = {}
    for kind, idb in all_tracked():
        assert wire.is_valid_uuid(idb.get(PROP)), f"{kind} {idb.name} has no valid uuid"
        kinds[uid(idb)] = kind
    for idb in (ob, ob.data, mat, arm, act, img, col, lamp, cam, tree):
        assert uid(idb) in kinds
    assert set(kinds.values()) == set(identity.KIND_TABLE)
    assert len(kinds) == len(set(kinds))  # all distinct
    wait_registered(daemon, kinds)
    recs = registry_records(daemon)
    for u, kind in kinds.items():
        assert recs[u]["last"]["kind"] == kind
        assert recs[u]["last"]["editor"] == "blender"
    assert recs[uid(ob)]["last"]["editor_ref"] == "OB:Cube"
    assert recs[uid(mat)]["last"]["editor_ref"] == "MA:Paint"
    st = vibesync.status()
    assert st["tracked_total"] == len(kinds)
    assert st["tracked"]["camera"] == 1 and st["tracked"]["light"] == 1


def test_shift_d_gives_the_copy_a_new_uuid(bridge):
    daemon = bridge
    ob = make_cube("Original")
    settle()
    original_ob, original_me = uid(ob), uid(ob.data)
    wait_registered(daemon, [original_ob, original_me])

    bpy.ops.object.duplicate()
    copy = bpy.context.active_object
    assert copy.name != "Original"
    assert copy.get(PROP) == original_ob  # Blender copied the property...
    settle()
    # ...the pump renumbered the newcomer at once; the original kept its uuid.
    original = bpy.data.objects["Original"]
    assert uid(original) == original_ob
    assert uid(original.data) == original_me
    assert wire.is_valid_uuid(uid(copy)) and uid(copy) != original_ob
    assert uid(copy.data) != original_me
    collisions = vibesync.status()["collisions"]
    assert {c["original"] for c in collisions} == {original_ob, original_me}
    assert {c["newcomer"] for c in collisions} == {uid(copy), uid(copy.data)}
    # The sidebar says so, as the Unity window would (tests/vectors/status_view.json).
    from vibesync import ui
    texts = [t for t, _ in ui.panel_lines(vibesync.status())]
    assert any(t.startswith("2 uuid collision(s); last: ") and t.endswith("got a fresh uuid")
               for t in texts), texts
    # The daemon hears of both, and the copy is registered as a new record.
    wait_registered(daemon, [original_ob, original_me, uid(copy), uid(copy.data)])
    recs = registry_records(daemon)
    assert recs[uid(copy)]["last"]["editor_ref"] == f"OB:{copy.name}"
    assert recs[original_ob]["last"]["editor_ref"] == "OB:Original"
    assert recs[original_ob]["registers"] == 1  # the original was never re-bound


def test_copy_paste_style_duplicates_all_get_fresh_uuids(bridge):
    ob = make_cube("A")
    settle()
    a = uid(ob)
    # Three more datablocks claiming the same uuid at once (e.g. pasted/appended).
    copies = [ob.copy() for _ in range(3)]
    for c in copies:
        bpy.context.scene.collection.objects.link(c)
    settle()
    assert uid(bpy.data.objects["A"]) == a
    fresh = {uid(c) for c in copies}
    assert len(fresh) == 3 and a not in fresh


def test_rename_keeps_the_uuid(bridge):
    daemon = bridge
    ob = make_cube("Before")
    settle()
    u = uid(ob)
    wait_registered(daemon, [u])
    ob.name = "After"
    settle()
    assert uid(bpy.data.objects["After"]) == u
    pump_until(lambda: registry_records(daemon)[u]["last"]["editor_ref"] == "OB:After",
               what="daemon to see the rename")
    recs = registry_records(daemon)
    assert recs[u]["last"]["name"] == "After"
    assert recs[u]["state"] == "live"
    assert vibesync.status()["tracked"]["object"] == 1


def test_undo_and_redo_rebind_every_uuid(bridge):
    daemon = bridge
    ob = make_cube("Keep")
    settle()
    keep_ob, keep_me = uid(ob), uid(ob.data)
    bpy.ops.ed.undo_push(message="cube")
    bpy.ops.object.duplicate()
    settle()
    copy = bpy.context.active_object
    copy_name, copy_uuid = copy.name, uid(copy)
    assert copy_uuid != keep_ob
    bpy.ops.ed.undo_push(message="after duplicate")
    wait_registered(daemon, [keep_ob, keep_me, copy_uuid])

    assert bpy.ops.ed.undo() == {"FINISHED"}
    settle()
    assert copy_name not in bpy.data.objects  # the duplicate is undone
    assert uid(bpy.data.objects["Keep"]) == keep_ob
    assert uid(bpy.data.objects["Keep"].data) == keep_me
    st = vibesync.status()
    assert st["last_rebind"]["reason"] == "undo"
    assert st["last_rebind"]["rebound"] >= 2 and st["last_rebind"]["vanished"] >= 1
    pump_until(lambda: daemon_live(daemon, [copy_uuid])[copy_uuid] == "tombstoned",
               what="the undone duplicate to be tombstoned")

    assert bpy.ops.ed.redo() == {"FINISHED"}
    settle()
    copy = bpy.data.objects[copy_name]
    # Redo restores Blender's copy with the *original's* property; the binding by
    # session_uid gives it back the uuid it had, not a third one.
    assert uid(copy) == copy_uuid
    assert uid(bpy.data.objects["Keep"]) == keep_ob
    assert vibesync.status()["last_rebind"]["reason"] == "redo"
    pump_until(lambda: daemon_live(daemon, [copy_uuid])[copy_uuid] == "live",
               what="the redone duplicate to be registered again")
    # Every tracked datablock resolves through the registry.
    reg = vibesync._session().registry
    for _kind, idb in all_tracked():
        assert reg.resolve(uid(idb)).session_uid == idb.session_uid


def test_save_and_reload_keep_uuids_and_the_sidecar_agrees(bridge, tmp_path):
    daemon = bridge
    folder = tmp_path / "My Project"
    folder.mkdir()
    path = str(folder / "scene.blend")
    make_cube("Saved")
    bpy.data.materials.new("Mat").use_fake_user = True
    settle()
    assert bpy.ops.wm.save_as_mainfile(filepath=path) == {"FINISHED"}
    # Saving scanned everything first: even the orphan material carries a uuid.
    before = {(k, idb.name): uid(idb) for k, idb in all_tracked()}
    assert ("material", "Mat") in before
    side = identity.sidecar_path(path)
    assert os.path.exists(side)
    with open(side) as f:
        doc = json.load(f)
    assert doc["schema_version"] == identity.SCHEMA_VERSION
    assert doc["checksum"] == identity.checksum(doc)
    assert set(doc["entries"]) == set(before.values())
    assert not [p for p in os.listdir(folder) if ".tmp-" in p]  # atomic: no temp left

    old_session = vibesync.status()["session_id"]
    assert bpy.ops.wm.open_mainfile(filepath=path) == {"FINISHED"}
    pump_until(lambda: vibesync.status()["connected"]
               and vibesync.status()["session_id"] != old_session, what="reconnect after load")
    after = {(k, idb.name): uid(idb) for k, idb in all_tracked()}
    assert after == before
    st = vibesync.status()
    assert st["registry_check"]["agree"], st["registry_check"]
    assert st["registry_check"]["blend_entries"] == len(before)
    assert st["project_id"] != "My-Project"  # an explicit project id wins over the folder
    wait_registered(daemon, before.values())


def test_reload_reports_a_sidecar_that_disagrees(bridge, tmp_path):
    path = str(tmp_path / "scene.blend")
    make_cube("One")
    settle()
    bpy.ops.wm.save_as_mainfile(filepath=path)
    side = identity.sidecar_path(path)
    with open(side) as f:
        doc = json.load(f)
    doc["entries"]["00000000-0000-4000-8000-000000000001"] = {
        "kind": "object", "name": "Ghost", "editor_ref": "OB:Ghost"}
    doc["checksum"] = identity.checksum(doc)
    identity.write_sidecar(side, doc)
    bpy.ops.wm.open_mainfile(filepath=path)
    pump_until(lambda: not vibesync.status()["scanning"], what="the load scan")
    check = vibesync.status()["registry_check"]
    assert not check["agree"]
    assert any("OB:Ghost" in p and "sidecar but not the .blend" in p for p in check["problems"])

    # A tampered checksum is detected and named.
    doc["checksum"] = "sha256:" + "0" * 64
    with open(side, "w") as f:
        json.dump(doc, f)
    bpy.ops.wm.open_mainfile(filepath=path)
    pump_until(lambda: not vibesync.status()["scanning"], what="the load scan")
    check = vibesync.status()["registry_check"]
    assert any("checksum mismatch" in p for p in check["problems"])


def test_without_a_project_id_the_daemon_pairs_the_file(clean_blender, daemon, tmp_path):
    """No id set by the user: none is derived from the folder (another editor could not
    guess it); the daemon pairs the file and the assigned id is saved with it (§3)."""
    folder = tmp_path / "Space Game"
    folder.mkdir()
    path = str(folder / "level.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, None)
    pump_until(lambda: vibesync.status()["connected"], what="connection")
    pid = vibesync.status()["project_id"]
    assert wire.is_valid_project_id(pid) and pid != "Space-Game"
    bpy.ops.wm.save_mainfile()
    assert identity.read_text_block()["project_id"] == pid
    vibesync.disconnect()


def test_deleted_object_becomes_a_tombstone(bridge):
    daemon = bridge
    ob = make_cube("Doomed")
    keep = make_cube("Stays")
    settle()
    doomed, stays = uid(ob), uid(keep)
    wait_registered(daemon, [doomed, stays])
    bpy.data.objects.remove(bpy.data.objects["Doomed"])
    settle()
    pump_until(lambda: doomed in vibesync.status()["tombstoned"],
               what="tombstone ack for the deleted object")
    assert daemon_live(daemon, [doomed])[doomed] == "tombstoned"
    assert daemon_live(daemon, [stays])[stays] == "live"
    assert vibesync._session().registry.resolve(doomed) is None


def test_a_delete_the_daemon_never_knew_is_not_kept_for_the_next_connect(clean_blender, daemon_bin,
                                                                        tmp_path, project_id):
    """The daemon is down: the person adds a cube and deletes it again. Its uuid was never
    registered, so its `tombstone` is answered `NOT_FOUND` once connected (PROTOCOL §6.6):
    nothing is left to delete, and the file must not keep the delete to send it again at every
    connect (it did: only `TOMBSTONED` ended it)."""
    d = Daemon(daemon_bin, str(tmp_path / "daemon")).start()
    try:
        port = d.port
        vibesync.connect("127.0.0.1", port, d.token, project_id)
        pump_until(lambda: vibesync.status()["connected"], what="connection")
        d.kill()
        pump_until(lambda: not vibesync.status()["connected"], timeout=15, what="disconnected")
        ob = make_cube("Fleeting")
        settle()
        u = uid(ob)
        bpy.data.objects.remove(ob)
        settle()
        session = vibesync._session()
        pump_until(lambda: u in session.deleted_here, timeout=10,
                   what="the delete kept while the daemon is down")
        d.start(port=port)
        pump_until(lambda: vibesync.status()["connected"], timeout=30, what="reconnected")
        pump_until(lambda: u not in session.deleted_here and u not in session.to_tombstone
                   and vibesync.status()["pending_requests"] == 0, timeout=15,
                   what="the tombstone answered NOT_FOUND and the delete ended")
        assert u not in session._snapshot().get("deleted", []), "the file does not keep it"
        assert u not in registry_records(d)
    finally:
        vibesync.disconnect()
        d.stop()


def test_operator_delete_is_tombstoned_too(bridge):
    daemon = bridge
    ob = make_cube("ByOperator")
    settle()
    u = uid(ob)
    wait_registered(daemon, [u])
    bpy.ops.object.select_all(action="DESELECT")
    ob.select_set(True)
    bpy.ops.object.delete()
    settle()
    pump_until(lambda: daemon_live(daemon, [u])[u] == "tombstoned", what="tombstone")
