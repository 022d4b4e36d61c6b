"""Live sync end to end: real daemon + real Blender with the addon + the headless
Unity host. Coordinates: Blender (x, y, z) appears in Unity at (x, z, y); a rotation of θ
about Blender's Z is a rotation of -θ about Unity's Y (docs/PROTOCOL.md §6)."""

from __future__ import annotations

import math
import os
import subprocess
import time

import pytest

from harness import Client, bpy, close, drive, drive_for, same_rotation, uuid_of, vibesync


def add_cube(name="Cube", location=(1, 2, 3), rot_z_deg=30.0, scale=2.0):
    bpy.ops.mesh.primitive_cube_add(size=2, location=location, rotation=(0, 0, math.radians(rot_z_deg)))
    ob = bpy.context.active_object
    ob.scale = (scale,) * 3  # the operator's `scale` scales the mesh; the object's is what syncs
    ob.name = name
    return ob


def daemon_status(daemon, project_id):
    c = Client(daemon, project_id, editor="cli")
    try:
        return c.status()
    finally:
        c.close()


def session_of(status, editor):
    return next(s for s in status["sessions"] if s["editor"] == editor)


def test_1_cube_appears_in_unity_with_converted_transform_and_mesh(host):
    ob = add_cube()
    u = drive(lambda: ob.get("vibesync_uuid"), what="uuid on the cube")
    o = host.wait_obj(u, lambda o: o.get("mesh") is not None, what="cube with mesh on the host")
    t = o["transform"]
    s15, c15 = math.sin(math.radians(15)), math.cos(math.radians(15))
    assert close(t["position"], [1.0, 3.0, 2.0]), t
    assert same_rotation(t["rotation"], [0.0, -s15, 0.0, c15]), t
    assert close(t["scale"], [2.0, 2.0, 2.0]), t
    assert o["mesh"]["vertex_count"] == 8, o["mesh"]
    assert o["mesh"]["triangle_count"] == 12, o["mesh"]
    assert o["name"] == "Cube"


@pytest.mark.window_ms(300)
def test_2_rapid_moves_are_coalesced(host):
    ob = add_cube("Mover", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive_for(0.5)
    before = host.stats()["batches_applied"]
    t0 = __import__("time").monotonic()
    for i in range(200):
        ob.location = (i * 0.01, 1.0, 2.0)
        bpy.context.view_layer.update()
        vibesync.tick(2.0)
        # 200 updates spread over ~1 s
        while __import__("time").monotonic() < t0 + (i + 1) * 0.005:
            pass
    final = (1.99, 1.0, 2.0)
    o = host.wait_obj(u, lambda o: close(o["transform"]["position"], [final[0], final[2], final[1]]), what="final pose")
    drive_for(0.5)
    batches = host.stats()["batches_applied"] - before
    assert 1 <= batches <= 5, f"200 location updates became {batches} batches"
    assert close(o["transform"]["position"], [1.99, 2.0, 1.0])


def test_3_unity_edit_lands_in_blender_as_one_undo_step_without_echo(host, blender, project_id):
    ob = add_cube("Target", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive_for(0.5)
    bpy.ops.ed.undo_push(message="before remote edit")
    st = daemon_status(blender, project_id)
    changes_before = session_of(st, "blender")["received"].get("change", 0)
    applied_before = vibesync.status()["applied_batches"]

    # One editor frame: both edits leave in one change (a second change of the object would
    # wait for the first one's batch_result, PROTOCOL §6.6, and become a batch of its own).
    host.cmd(f"together rename {u} FromUnity ; move {u} 4 5 6")  # Blender gets (4, 6, 5)
    drive(lambda: ob.name == "FromUnity" and close(ob.location, (4, 6, 5)), what="Blender applies the Unity edit")
    drive_for(1.0)
    st = daemon_status(blender, project_id)
    assert session_of(st, "blender")["received"].get("change", 0) == changes_before, \
        "Blender echoed the applied change back"
    assert vibesync.status()["applied_batches"] == applied_before + 1, "one batch, applied once"

    bpy.ops.ed.undo()
    ob = bpy.data.objects.get("Target")
    assert ob is not None, "one undo reverts the whole batch (rename and move)"
    assert close(ob.location, (0, 0, 0))


def test_4_duplicate_gets_a_new_uuid_on_both_sides(host):
    ob = add_cube("Original", location=(1, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    bpy.ops.object.select_all(action="DESELECT")
    ob.select_set(True)
    bpy.context.view_layer.objects.active = ob
    bpy.ops.object.duplicate()
    dup = bpy.context.active_object
    assert dup.name != ob.name
    d = drive(lambda: dup.get("vibesync_uuid") if dup.get("vibesync_uuid") != u else None,
              what="a fresh uuid on the copy")
    assert uuid_of(ob) == u, "the original keeps its uuid"
    host.wait_obj(d, what="the copy on the host")
    o = host.obj(u)
    assert close(o["transform"]["position"], [1.0, 0.0, 0.0]), "the original is unchanged"
    assert o["name"] == "Original"


def test_5_delete_tombstones_and_removes_from_unity(host, blender):
    ob = add_cube("Doomed", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    bpy.data.objects.remove(ob)
    drive(lambda: host.obj(u) is None, timeout=20, what="the object gone from the host")
    tomb = drive(lambda: [r for r in blender.tail() if r["phase"] == "STEP"
                          and r["payload"].get("op") == "tombstone" and u in r["uuids"]],
                 what="a tombstone STEP in the WAL")
    assert tomb


def test_6_blender_undo_of_a_move_reaches_unity(host):
    ob = add_cube("Undoable", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive_for(0.3)
    bpy.ops.ed.undo_push(message="placed")
    ob.location = (3, 0, 0)
    bpy.ops.ed.undo_push(message="moved")
    host.wait_obj(u, lambda o: close(o["transform"]["position"], [3.0, 0.0, 0.0]), what="the move on the host")
    bpy.ops.ed.undo()
    host.wait_obj(u, lambda o: close(o["transform"]["position"], [0.0, 0.0, 0.0]), what="the undo on the host")


def test_7_material_base_color_follows(host):
    ob = add_cube("Painted", location=(0, 0, 0), rot_z_deg=0, scale=1)
    mat = bpy.data.materials.new("Paint")
    if bpy.app.version < (5, 0, 0):  # 5.0: every material uses its nodes
        mat.use_nodes = True
    ob.data.materials.append(mat)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (0.8, 0.1, 0.05, 1.0)
    bsdf.inputs["Metallic"].default_value = 0.7
    o = host.wait_obj(u, lambda o: o.get("material")
                      and close(o["material"]["base_color"], [0.8, 0.1, 0.05, 1.0], 1e-4),
                      what="the material on the host")
    assert abs(o["material"]["metallic"] - 0.7) < 1e-4


def test_8_kill_daemon_mid_stream_and_everything_converges(host, blender, workdir):
    daemon = blender
    ob = add_cube("Survivor", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    port = daemon.port
    for i in range(20):
        ob.location = (i * 0.1, 0, 0)
        drive_for(0.02)
        if i == 10:
            daemon.kill()
    ob.location = (5, 5, 5)
    daemon.start(port=port)
    drive(lambda: vibesync.status()["connected"], timeout=60, what="Blender reconnects")
    host.wait("connected", since=1, timeout=60)
    try:
        host.wait_obj(u, lambda o: close(o["transform"]["position"], [5.0, 5.0, 5.0]), timeout=30,
                      what="scenes converge after the restart")
    except AssertionError:
        log = open(os.path.join(os.path.dirname(daemon.data_dir), os.path.basename(daemon.data_dir) + ".stderr"),
                   errors="replace").read()
        print("DAEMON LOG:\n" + "\n".join(l for l in log.splitlines() if "session opened" not in l)[-6000:])
        print("HOST EVENTS:", [e for e in host.events if e.get("event") not in ("dumped",)][-30:])
        print("HOST OBJ:", host.obj(u))
        raise
    drive_for(1.0)
    vibesync.disconnect()
    host.close()
    daemon.stop()
    v = subprocess.run([daemon.binary, "verify", "--data-dir", daemon.data_dir], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    log = subprocess.run(["git", "--git-dir", os.path.join(daemon.data_dir, ".git_safety"), "log", "--format=%B"],
                         capture_output=True, text=True)
    assert log.returncode == 0 and "VibeSync-Seq-Range" in log.stdout, log.stdout + log.stderr
    daemon.start(port=port)  # the fixture stops it again


def test_9_wrong_hash_rolls_back_and_corrects_the_peer(host, blender):
    ob = add_cube("Checked", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive_for(0.5)
    i = host.cmd("corrupt-next-hash")
    host.wait("corrupt_armed", i)
    ob.location = (2, 0, 0)
    host.wait("batch_result", i, lambda e: e.get("outcome") == "rolled_back", what="rollback")
    rb = drive(lambda: [r for r in blender.tail() if r["phase"] == "ROLLBACK" and u in r["uuids"]],
               what="ROLLBACK in the WAL")
    assert rb[-1]["error_code"] == "VERIFY_MISMATCH"
    assert rb[-1]["payload"]["kept_local"].get(u), rb[-1]
    # The peer is corrected to the authoritative (last committed) state; the person's move
    # stays in Blender, where it was made (PROTOCOL §6.4: kept_local, marked not synced).
    host.wait_obj(u, lambda o: close(o["transform"]["position"], [0.0, 0.0, 0.0]), what="the host corrected")
    drive_for(1.0)
    assert close(ob.location, (2, 0, 0)), tuple(ob.location)
    assert [n["uuid"] for n in vibesync.status()["not_synced"]] == [u]


@pytest.mark.window_ms(300)
def test_10_a_blender_move_reaches_unity_live_before_the_windows_batch(host):
    """At the default window (300 ms) a move is previewed in Unity at once (`live`,
    docs/PROTOCOL.md §6.3); the window's batch follows and is verified as before, and
    nothing echoes back."""
    ob = add_cube("Live", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive(lambda: not len(vibesync._session().engine.inflight), what="the create committed")
    changes_before = host.stats()["change_messages"]
    with host.lock:
        mark = len(host.events)
    ob.location = (4.0, 5.0, 6.0)
    bpy.context.view_layer.update()
    host.wait("live", mark, lambda e: e.get("uuid") == u, what="the live preview")
    host.wait("applied", mark, lambda e: u in (e.get("hashes") or {}), what="the window's batch")
    with host.lock:
        events = list(host.events[mark:])
    kinds = [(e.get("event"), e.get("uuid")) for e in events]
    i_live = kinds.index(("live", u))
    i_batch = next(i for i, e in enumerate(events)
                   if e.get("event") == "applied" and u in (e.get("hashes") or {}))
    assert i_live < i_batch, kinds
    assert close(host.obj(u)["transform"]["position"], [4.0, 6.0, 5.0])
    # Verified and committed like any batch; Unity sent nothing back.
    drive(lambda: not len(vibesync._session().engine.inflight), what="Blender's move committed")
    assert not vibesync.status()["not_synced"]
    assert host.stats()["change_messages"] == changes_before
    assert host.stats()["live_applied"] >= 1


@pytest.mark.window_ms(300)
def test_11_a_drag_in_blender_moves_the_object_in_unity_continuously_at_default_settings(host):
    """A person drags the cube for a second at the default 300 ms window: each pose goes to
    the daemon as it is made (fast-path changes do not wait for the previous one's result,
    docs/PROTOCOL.md §6.6) and reaches Unity at once as a live preview (§6.3). Unity shows
    the drag frame by frame — not one pose per window — the batches verify the coalesced
    poses, and both end on the last pose with nothing marked not synced."""
    ob = add_cube("Dragged", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive(lambda: not len(vibesync._session().engine.inflight), what="the create committed")
    with host.lock:
        mark = len(host.events)
    frames = 60
    for i in range(1, frames + 1):
        ob.location = (i * 0.05, 0.0, 0.0)  # one pose per editor frame
        bpy.context.view_layer.update()
        vibesync.tick(8.0)
        time.sleep(0.017)
    drive(lambda: not len(vibesync._session().engine.inflight), what="the drag committed")
    host.wait_obj(u, lambda o: close(o["transform"]["position"], [3.0, 0.0, 0.0]), what="the last pose")
    with host.lock:
        events = list(host.events[mark:])
    previews = sum(1 for e in events if e.get("event") == "live" and e.get("uuid") == u)
    batches = sum(1 for e in events if e.get("event") == "applied" and u in (e.get("hashes") or {}))
    # One change per uuid in flight gave one pose per window (about 4 in this drag).
    assert previews >= frames // 2, (previews, batches)
    assert batches < previews, "the batches carry the coalesced poses"
    assert not vibesync.status()["not_synced"]


@pytest.mark.window_ms(300)
def test_12_a_drag_in_unity_moves_the_object_in_blender_continuously_at_default_settings(host):
    """The same drag made in Unity (the headless host moving the cube once per editor frame
    for a second, default window): Blender applies the poses as live previews as they come,
    not one per window, and both end on the last pose (docs/PROTOCOL.md §6.3, §6.6)."""
    ob = add_cube("DraggedInUnity", location=(0, 0, 0), rot_z_deg=0, scale=1)
    u = drive(lambda: ob.get("vibesync_uuid"))
    host.wait_obj(u)
    drive(lambda: not len(vibesync._session().engine.inflight), what="the create committed")
    before = vibesync.status()["live_applied"]
    frames = 60
    for i in range(1, frames + 1):
        host.cmd(f"move {u} {i * 0.05} 0 0")  # Unity coordinates: x is Blender's x
        drive_for(0.017)
    drive(lambda: close(list(ob.location), [3.0, 0.0, 0.0]), what="the last pose in Blender")
    previews = vibesync.status()["live_applied"] - before
    # One change per uuid in flight gave one pose per window (about 4 in this drag).
    assert previews >= frames // 3, previews
    drive(lambda: not vibesync.status()["not_synced"] and host.stats().get("in_flight", 0) == 0,
          what="nothing left in flight or marked")
