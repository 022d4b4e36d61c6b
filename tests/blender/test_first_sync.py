"""A person's work is never lost (docs/PROTOCOL.md §6): real scenes on first connect,
dependencies first, one change per uuid in flight, kept-local marks, error loops, per-file
project and replay position, and no duplicates after a crash before the first save.
Real bpy; the real daemon where it serves, a scripted daemon where the test needs bytes the
daemon does not send by itself."""

from __future__ import annotations

import os
import time
import uuid as uuidlib

import bpy
import pytest

import vibesync
from conftest import clear_received, pump_for, pump_until, settle
from daemon import synced_states
from test_sync import applied_messages, batch_frames, make_cube
from test_transport import HostileDaemon, frame

PROP = "vibesync_uuid"


def startup_scene():
    """Blender's factory startup scene as a user gets it: Cube, Camera, Light in
    "Collection"."""
    vibesync.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=False)
    bpy.context.preferences.edit.undo_steps = 32
    vibesync.register()
    assert {o.name for o in bpy.data.objects} == {"Cube", "Camera", "Light"}
    assert [c.name for c in bpy.data.collections] == ["Collection"]


def synced_kinds(daemon):
    mine = {idb[PROP] for idb in list(bpy.data.objects) + list(bpy.data.collections)}
    return {st["state"]["name"]: st["state"] for u, st in synced_states(daemon).items()
            if u in mine}


def first_step_seq(daemon) -> dict[str, int]:
    """uuid -> seq of its first committed `state` STEP (the order the daemon got them)."""
    records = daemon.tail()
    committed = {r.get("operation_id") for r in records if r.get("phase") == "COMMIT"}
    out: dict[str, int] = {}
    for r in records:
        p = r.get("payload") or {}
        if r.get("phase") == "STEP" and p.get("op") == "state" \
                and r.get("operation_id") in committed:
            out.setdefault(p.get("uuid") or r["uuids"][0], r["seq"])
    return out


@pytest.fixture
def startup_bridge(daemon, project_id):
    startup_scene()
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    pump_until(lambda: vibesync.status()["connected"], what="connection")
    yield daemon
    vibesync.disconnect()
    vibesync.unregister()


def test_the_factory_startup_scene_is_sent_whole_collection_first(startup_bridge):
    daemon = startup_bridge
    coll = bpy.data.collections["Collection"]
    settle()
    mine = {ob[PROP] for ob in bpy.data.objects} | {coll[PROP]}
    pump_until(lambda: mine <= set(synced_states(daemon)), timeout=20,
               what="Collection, Cube, Camera and Light synced")
    states = synced_kinds(daemon)
    assert states["Collection"]["kind"] == "collection"
    for name in ("Cube", "Camera", "Light"):
        assert states[name]["parent"] == coll[PROP], f"{name} names its collection"
    seqs = first_step_seq(daemon)
    for name in ("Cube", "Camera", "Light"):
        assert seqs[coll[PROP]] < seqs[bpy.data.objects[name][PROP]], \
            "the collection's create reached the daemon before its children"
    pump_until(lambda: vibesync.status()["progress"] == {"synced": 4, "total": 4},
               what="first-sync progress 4 / 4")


def test_parents_are_sent_before_children_in_a_big_first_sync(clean_blender, daemon,
                                                               project_id):
    # Built before connecting, in an order where children are created first: nested
    # collections, chains of parented objects with non-identity parent inverses.
    outer = bpy.data.collections.new("Outer")
    bpy.context.scene.collection.children.link(outer)
    inner = bpy.data.collections.new("Inner")
    outer.children.link(inner)
    chains = []
    for c in range(20):
        obs = []
        for i in range(10):
            ob = bpy.data.objects.new(f"C{c}_{i}", None)
            (inner if c % 2 else outer).objects.link(ob)
            ob.location = (i, c, 0)
            obs.append(ob)
        for i in range(1, 10):  # child i -> parent i-1, keep the world pose
            obs[i].parent = obs[i - 1]
            obs[i].matrix_parent_inverse = obs[i - 1].matrix_world.inverted()
        chains.append(obs)
    bpy.context.view_layer.update()
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    pump_until(lambda: vibesync.status()["connected"], what="connection")
    settle()
    mine = {idb[PROP] for idb in list(bpy.data.objects) + list(bpy.data.collections)}
    assert len(mine) == 202
    pump_until(lambda: mine <= set(synced_states(daemon)), timeout=60, what="202 states")
    seqs = first_step_seq(daemon)
    states = {u: st for u, st in synced_states(daemon).items() if u in mine}
    for u, st in states.items():
        p = st["state"]["parent"]
        if p is not None:
            assert seqs[p] < seqs[u], f"{st['state']['name']} reached the daemon before its parent"
    vibesync.disconnect()


def changes_for(hostile, u):
    return [(m, c) for m in hostile.received if m.get("type") == "change"
            for c in m["changes"] if c.get("uuid") == u]


def result(batch_id, seq, uuids, outcome="committed", **extra):
    return frame(dict({"type": "batch_result", "batch_id": batch_id, "seq": seq,
                       "outcome": outcome, "uuids": uuids, "error_code": None}, **extra))


def test_one_change_per_uuid_in_flight_and_a_result_does_not_clear_a_newer_edit(scripted):
    ob = make_cube("Dragged")
    settle()
    u = ob[PROP]
    pump_until(lambda: changes_for(scripted, u), what="the create")
    ob.location = (1, 0, 0)
    settle()
    pump_for(0.3)
    assert len(changes_for(scripted, u)) == 1, "the move waits for the create's result"
    assert vibesync.status()["in_flight"] == 1
    # The create's result arrives: the move goes now.
    scripted.push(result("b1", 10, [u]))
    pump_until(lambda: len(changes_for(scripted, u)) == 2, what="the waiting move sent")
    msg, op = changes_for(scripted, u)[1]
    assert op["op"] == "transform" and op["t"][0] == pytest.approx(1)
    # A replay naming u while the move is unresolved keeps the local state (§6.6).
    scripted.push(batch_frames("r1", 11, [
        {"op": "create", "uuid": u, "kind": "object", "name": "Dragged", "parent": None,
         "t": [0, 0, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True}], path="resync"))
    pump_until(lambda: applied_messages(scripted), what="the replay answered")
    assert tuple(bpy.data.objects["Dragged"].location) == pytest.approx((1, 0, 0))


def test_a_kept_local_rollback_marks_not_synced_and_retries_on_edit_and_peer(scripted):
    ob = make_cube("Precious")
    settle()
    u = ob[PROP]
    pump_until(lambda: changes_for(scripted, u), what="the create")
    scripted.push(result("b1", 10, [u], outcome="rolled_back", error_code="VERIFY_MISMATCH",
                         kept_local=True, reason="Unity could not apply it"))
    pump_until(lambda: vibesync.status()["not_synced"], what="not synced mark")
    st = vibesync.status()
    assert st["not_synced"] == [{"uuid": u, "reason": "Unity could not apply it"}]
    assert "Precious" in bpy.data.objects, "the person's object stays"
    from vibesync import ui
    assert any("not synced" in text for text, _ in ui.panel_lines(st))
    # A new edit re-sends the whole state as `create` (the daemon never took the first).
    ob.location = (2, 0, 0)
    settle()
    pump_until(lambda: len(changes_for(scripted, u)) == 2, what="retry on edit")
    assert changes_for(scripted, u)[1][1]["op"] == "create"
    scripted.push(result("b2", 12, [u], outcome="rolled_back", kept_local=True,
                         reason="still failing"))
    pump_until(lambda: vibesync.status()["in_flight"] == 0, what="resolved")
    # A peer joining is a reason to try again.
    scripted.push(frame({"type": "peers", "project_id": "scripted", "peers": [
        {"session_id": str(uuidlib.uuid4()), "client": "unity", "client_id": "u1"}],
        "other_projects": []}))
    pump_until(lambda: len(changes_for(scripted, u)) == 3, what="retry on peers")
    assert changes_for(scripted, u)[2][1]["op"] == "create"
    assert any(t == "Unity: connected" for t, _ in ui.panel_lines(vibesync.status()))
    scripted.push(result("b3", 13, [u]))
    pump_until(lambda: not vibesync.status()["not_synced"], what="synced at last")


def test_a_batch_can_give_an_empty_object_a_mesh(scripted):
    """Unity creates a GameObject, then adds a mesh: the Blender object becomes a mesh
    object with the same uuid, name, pose, parent, children and collection."""
    from vibesync import wire
    parent = make_cube("Holder")
    settle()
    pu = parent[PROP]
    nu, cu = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    scripted.push(batch_frames("e1", 20, [
        {"op": "create", "uuid": nu, "kind": "object", "name": "GameObject", "parent": pu,
         "t": [0, 2, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True},
        {"op": "create", "uuid": cu, "kind": "object", "name": "Kid", "parent": nu,
         "t": [1, 0, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True}], path="slow"))
    pump_until(lambda: applied_messages(scripted), what="creates applied")
    assert bpy.data.objects["GameObject"].type == "EMPTY"
    blob = wire.encode_mesh([0, 0, 0, 1, 0, 0, 0, 1, 0], [0, 1, 2])
    h = wire.mesh_hash(blob)
    body = frame({"type": "apply", "batch_id": "e2",
                  "change": {"op": "mesh", "uuid": nu, "mesh_hash": h}})
    js = body[8:]
    with_att = (4 + len(js) + len(blob)).to_bytes(4, "big") + len(js).to_bytes(4, "big") + js + blob
    scripted.push(frame({"type": "batch_begin", "batch_id": "e2", "seq": 21, "path": "slow",
                         "count": 1}) + with_att
                  + frame({"type": "batch_end", "batch_id": "e2", "seq": 21}))
    pump_until(lambda: len(applied_messages(scripted)) == 2, what="mesh applied")
    ob = bpy.data.objects["GameObject"]
    assert ob.type == "MESH" and ob[PROP] == nu and len(ob.data.vertices) == 3
    assert ob.parent.name == "Holder"
    assert tuple(ob.location) == pytest.approx((0, 0, 2), abs=1e-5)
    assert bpy.data.objects["Kid"].parent == ob
    assert nu in applied_messages(scripted)[1]["hashes"], "answered with its hash"
    assert not [e for e in vibesync.status()["errors"]], vibesync.status()["errors"]


def test_repeated_identical_failures_pause_the_addon_and_tell_the_daemon(scripted,
                                                                        monkeypatch):
    s = vibesync._session()

    def broken(deadline):
        raise RuntimeError("boom in capture")

    monkeypatch.setattr(s, "_process_dirty", broken)
    for _ in range(10):
        vibesync.tick(5.0)  # never raises
    st = vibesync.status()
    assert st["state"] == "paused" and "boom in capture" in st["pause_reason"]
    pump_until(lambda: [m for m in scripted.received if m.get("type") == "editor_state"],
               what="editor_state sent")
    [m] = [m for m in scripted.received if m.get("type") == "editor_state"]
    assert m["state"] == "paused" and "boom in capture" in m["reason"]
    monkeypatch.undo()
    s.resume()
    pump_until(lambda: [m for m in scripted.received if m.get("type") == "editor_state"
                        and m["state"] == "running"], what="running again")
    assert vibesync.status()["state"] == "connected"


def test_project_id_is_omitted_then_kept_per_file_with_its_own_replay_position(clean_blender,
                                                                                tmp_path):
    conns = []
    hostile = HostileDaemon(lambda n, conn: conns.append(conn))
    hostile.welcome_extra = {"project_id": "paired"}
    try:
        vibesync.connect("127.0.0.1", hostile.port, "a" * 64, None)
        pump_until(lambda: vibesync.status()["connected"], what="connection")
        assert "project_id" not in hostile.hellos[0], "no project id unless the user set one"
        pump_until(lambda: vibesync.status()["project_id"] == "paired", what="assigned id")
        conns[-1].sendall(result("x", 40, []))
        pump_until(lambda: vibesync.status()["last_seq"] == 40, what="last_seq 40")
        a = str(tmp_path / "a" / "a.blend")
        os.makedirs(os.path.dirname(a))
        bpy.ops.wm.save_as_mainfile(filepath=a)
        # Another (new) file: no project id, replay from 0.
        bpy.ops.wm.read_homefile(use_empty=True)
        pump_until(lambda: len(hostile.hellos) >= 2, what="reconnect after the switch")
        assert "project_id" not in hostile.hellos[-1] and hostile.hellos[-1]["last_seq"] == 0
        # Back to the first file: its project and its replay position.
        bpy.ops.wm.open_mainfile(filepath=a)
        pump_until(lambda: len(hostile.hellos) >= 3, what="reconnect after reopening")
        assert hostile.hellos[-1]["project_id"] == "paired"
        assert hostile.hellos[-1]["last_seq"] == 40
    finally:
        vibesync.disconnect()
        hostile.close()


def test_a_reply_to_the_previous_file_does_not_move_the_next_files_replay_position(
        clean_blender, tmp_path):
    """A `batch_result` of the connection a file switch left, read after the switch, must
    not become the opened file's `last_seq` (it would skip what that file never got)."""
    conns = []
    hostile = HostileDaemon(lambda n, conn: conns.append(conn))
    hostile.welcome_extra = {"project_id": "paired"}
    try:
        vibesync.connect("127.0.0.1", hostile.port, "a" * 64, None)
        pump_until(lambda: vibesync.status()["project_id"] == "paired", what="assigned id")
        conns[-1].sendall(result("x", 40, []))
        pump_until(lambda: vibesync.status()["last_seq"] == 40, what="last_seq 40")
        a = str(tmp_path / "a" / "a.blend")
        os.makedirs(os.path.dirname(a))
        bpy.ops.wm.save_as_mainfile(filepath=a)
        bpy.ops.wm.read_homefile(use_empty=True)
        pump_until(lambda: len(hostile.hellos) >= 2 and vibesync.status()["connected"],
                   what="connected with the new file")
        s = vibesync._session()
        left = s.generation
        bpy.ops.wm.open_mainfile(filepath=a)
        vibesync.tick(20.0)  # the load is handled: file A's position, reconnect requested
        assert vibesync.status()["last_seq"] == 40
        # The reply to the new file's last batch, read off the socket just before it closed.
        s.transport.inbox.put(("message", {
            "message": {"type": "batch_result", "batch_id": "late", "seq": 95,
                        "outcome": "committed", "uuids": [], "error_code": None},
            "attachment": b"", "generation": left}))
        pump_until(lambda: len(hostile.hellos) >= 3 and vibesync.status()["connected"],
                   what="reconnect after reopening")
        assert hostile.hellos[-1]["last_seq"] == 40, "file A replays from its own position"
        assert vibesync.status()["last_seq"] == 40
    finally:
        vibesync.disconnect()
        hostile.close()


def test_frames_queued_before_a_file_switch_are_sent_before_the_reconnect(clean_blender):
    """The `applied` answer of a batch applied just before a file switch reaches the
    daemon: the batch is answered, not reported lost (which would count as evidence
    against the objects, docs/PROTOCOL.md §6.7)."""
    hostile = HostileDaemon(lambda n, conn: None)
    try:
        vibesync.connect("127.0.0.1", hostile.port, "a" * 64, "scripted")
        pump_until(lambda: vibesync.status()["connected"], what="connection")
        s = vibesync._session()
        # Both in the outbox before the socket thread looks: the answer, then the switch.
        s.transport.outbox.put((s.generation, {"type": "applied", "batch_id": "b1", "seq": 7,
                                               "hashes": {}}, b""))
        s.transport.reconnect()
        pump_until(lambda: len(hostile.hellos) >= 2, what="the reconnect")
        pump_until(lambda: [m for m in hostile.received if m.get("batch_id") == "b1"],
                   what="the queued answer at the daemon")
    finally:
        vibesync.disconnect()
        hostile.close()


def test_a_crash_before_the_first_save_duplicates_nothing(daemon, project_id):
    startup_scene()
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    settle()
    old = {o.name: o[PROP] for o in bpy.data.objects}
    pump_until(lambda: set(old.values()) <= set(synced_states(daemon)), timeout=20,
               what="first sync")
    cube = bpy.data.objects["Cube"]
    cube.location = (3, 0, 0)
    settle()
    pump_until(lambda: synced_states(daemon)[old["Cube"]]["state"]["t"][0] == pytest.approx(3),
               what="the move synced")
    before = set(synced_states(daemon))
    # Crash: the never-saved file and its uuids are gone; Blender starts over.
    vibesync.disconnect()
    startup_scene()
    assert bpy.data.objects["Cube"].get(PROP) is None
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    pump_until(lambda: vibesync.status()["connected"] and vibesync.status()["adopted"] >= 4
               and vibesync.status()["in_flight"] == 0, timeout=20,
               what="the fresh datablocks take back their uuids")
    pump_for(0.5)
    assert {o.name: o[PROP] for o in bpy.data.objects} == old, "no duplicate in Blender"
    assert set(synced_states(daemon)) == before, "no new object state on the daemon"
    assert tuple(bpy.data.objects["Cube"].location) == pytest.approx((3, 0, 0)), \
        "the synced pose came back"
    vibesync.disconnect()
    vibesync.unregister()


def test_hiding_a_collection_with_the_outliner_eye_syncs_its_visibility(bridge):
    daemon = bridge
    props = bpy.data.collections.new("Shelf")
    bpy.context.scene.collection.children.link(props)
    settle()
    cu = props[PROP]
    pump_until(lambda: cu in synced_states(daemon), what="collection synced")
    lc = bpy.context.view_layer.layer_collection.children["Shelf"]
    lc.hide_viewport = True  # the eye in the outliner
    settle()
    pump_until(lambda: synced_states(daemon)[cu]["state"]["visible"] is False, what="hidden")
    lc.hide_viewport = False
    settle()
    pump_until(lambda: synced_states(daemon)[cu]["state"]["visible"] is True, what="shown")


def test_daemon_not_running_says_how_to_start_it(clean_blender):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    vibesync.connect("127.0.0.1", port, "a" * 64, "nobody")
    try:
        pump_until(lambda: vibesync.status()["state"] == "daemon not running",
                   what="daemon not running")
        from vibesync import ui
        lines = [t for t, _ in ui.panel_lines(vibesync.status())]
        assert "Start it with `vibesync serve`" in lines
    finally:
        vibesync.disconnect()


def test_the_result_of_a_batch_applied_as_participant_resolves_nothing_of_ours(scripted):
    ob = make_cube("Shared2")
    settle()
    u = ob[PROP]
    pump_until(lambda: changes_for(scripted, u), what="the create in flight")
    scripted.push(batch_frames("peer-1", 20, [
        {"op": "visibility", "uuid": u, "visible": True}]))
    pump_until(lambda: applied_messages(scripted), what="the peer's batch applied")
    scripted.push(result("peer-1", 21, [u]))  # every participant gets the result too
    pump_for(0.3)
    assert vibesync.status()["in_flight"] == 1, "our create is still unanswered"
    scripted.push(result("ours-1", 22, [u]))
    pump_until(lambda: vibesync.status()["in_flight"] == 0, what="our own result")


def test_in_a_big_scene_a_batchs_new_objects_are_parented_in_the_link_step(scripted):
    """Parenting an object, even one outside every scene, tags the relations of every
    dependency graph for a rebuild that Blender runs after the tick and that grows with the
    scene (docs/BENCHMARKS.md): in a scene of more than
    `budget.SLICED_PARENTING_MAX_OBJECTS` objects the new objects are not parented in
    slices over ticks but in the one step that links them, in the batch's order."""
    from vibesync import budget
    s = vibesync._session()
    for i in range(budget.SLICED_PARENTING_MAX_OBJECTS + 1):
        bpy.context.scene.collection.objects.link(bpy.data.objects.new(f"Held{i:04d}", None))
    bpy.context.view_layer.update()
    pump_until(lambda: not s.dirty and s.scan_job is None and s.scan_reason is None,
               timeout=60.0, what="the scene's objects captured")
    in_scene = len(bpy.context.scene.objects)
    root = str(uuidlib.uuid4())
    kids = [str(uuidlib.uuid4()) for _ in range(300)]
    pose = {"r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True}
    changes = [{"op": "create", "uuid": root, "kind": "object", "name": "NewRoot",
                "parent": None, "t": [0, 0, 0], **pose}]
    changes += [{"op": "create", "uuid": u, "kind": "object", "name": f"NewKid{i:04d}",
                 "parent": root, "t": [0, i, 0], **pose} for i, u in enumerate(kids)]
    scripted.push(batch_frames("big-scene-1", 60, changes, path="resync"))
    deadline = time.monotonic() + 10.0
    while s.apply_job is None:
        assert time.monotonic() < deadline, "timed out waiting for the batch's apply to start"
        vibesync.tick(1.0)
    ticks = 0
    while s.apply_job is not None:
        if len(bpy.context.scene.objects) == in_scene:
            made = [s.registry.resolve(u) for u in kids]
            assert not [ob for ob in made if ob is not None and ob.parent is not None], \
                "parented in a tick before the link step"
        vibesync.tick(1.0)
        ticks += 1
        assert ticks < 10_000
    assert len(bpy.context.scene.objects) == in_scene + 1 + len(kids)
    parent = s.registry.resolve(root)
    assert all(s.registry.resolve(u).parent == parent for u in kids)
    linked = [ob.name for ob in bpy.context.scene.collection.objects
              if ob.name.startswith("New")]
    assert linked == ["NewRoot"] + [f"NewKid{i:04d}" for i in range(len(kids))]


def test_a_big_incoming_batch_is_applied_over_several_ticks_in_order(scripted, monkeypatch):
    """A replay of a big project (a peer holds it, Blender joins with its factory startup
    scene) is applied in slices over several pump ticks, in the batch's order: parents
    before their children, into the batch's collection; nothing is captured or sent back
    while it is under way, and one `applied` answers the whole batch at its end. New
    objects are parented outside the scene (in slices), then linked in one step of a tick of
    its own, in the batch's order. Objects are placed without `Object.users_collection`
    (quadratic in a big file). The addon never evaluates the dependency graph itself
    (Blender's event loop does, after the tick), and the undo step is pushed on the tick
    after the answer (`budget.END_TICK`)."""
    from vibesync import capture
    s = vibesync._session()
    n = 400
    cu = str(uuidlib.uuid4())
    roots = [str(uuidlib.uuid4()) for _ in range(4)]
    changes = [{"op": "create", "uuid": cu, "kind": "collection", "name": "Incoming",
                "parent": None, "t": [0, 0, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1],
                "visible": True}]
    changes += [{"op": "create", "uuid": u, "kind": "object", "name": f"Root{i}",
                 "parent": cu, "t": [i, 0, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1],
                 "visible": True} for i, u in enumerate(roots)]
    kids = [str(uuidlib.uuid4()) for _ in range(n)]
    changes += [{"op": "create", "uuid": u, "kind": "object", "name": f"Kid{i:04d}",
                 "parent": roots[i % 4], "t": [0, i, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1],
                 "visible": i % 50 != 7} for i, u in enumerate(kids)]

    def no_users_collection(ob):
        raise AssertionError("apply read Object.users_collection")
    monkeypatch.setattr(capture, "container_collection", no_users_collection)
    pump_for(0.2)
    clear_received(scripted)
    # Counted before the batch arrives: a 20 ms tick on a quiet machine may take the batch
    # as far as its end step, so what the scene holds once the apply has started is no base.
    in_scene = len(bpy.context.scene.objects)
    scripted.push(batch_frames("big-1", 50, changes, path="resync"))
    # Ticks of a 1 ms budget from the batch's arrival on, so the apply's steps are seen.
    deadline = time.monotonic() + 10.0
    while s.apply_job is None and not applied_messages(scripted):
        assert time.monotonic() < deadline, "timed out waiting for the batch's apply to start"
        vibesync.tick(1.0)
    assert s.apply_job is not None, "a 405-change batch is not applied in one tick"
    ticks = 0
    placed_at = answered_at = parented_at = None
    applied_before = s.applied_batches

    def all_parented() -> bool:
        obs = [s.registry.resolve(u) for u in kids]
        return all(ob is not None and ob.parent == s.registry.resolve(roots[i % 4])
                   for i, ob in enumerate(obs))
    while s.apply_job is not None:
        if answered_at is None:
            assert not applied_messages(scripted), "answered before the batch was applied"
        # New objects join the scene together at the end: a link per tick would make
        # Blender rebuild the whole scene's dependency graph after every tick.
        assert len(bpy.context.scene.objects) in (in_scene, in_scene + 4 + n), \
            "new objects linked one slice at a time"
        vibesync.tick(1.0)
        ticks += 1
        assert ticks < 10000, "the batch's apply did not finish"
        if parented_at is None and len(bpy.context.scene.objects) == in_scene \
                and all_parented():
            parented_at = ticks  # parented outside the scene (cheap there), not yet linked
        if placed_at is None and len(bpy.context.scene.objects) == in_scene + 4 + n:
            placed_at = ticks
        if placed_at is not None and answered_at is None:
            # The addon leaves the dependency graph to Blender's event loop (after the
            # tick): what it placed is not evaluated yet (world matrices still identity).
            kid = s.registry.resolve(kids[5])
            assert tuple(kid.location) != (0, 0, 0)
            assert kid.matrix_world.translation.length == 0, \
                "the addon evaluated the dependency graph inside its tick"
        if answered_at is None and s.applied_batches > applied_before:
            answered_at = ticks
            assert s.apply_job is not None, \
                "the undo step is pushed on a tick after the answer, not in it"
            # What Blender's event loop does between two ticks: evaluate what the batch made.
            bpy.context.view_layer.update()
    assert ticks > 1, "applied over several ticks"
    assert placed_at is not None and answered_at is not None and ticks == answered_at + 1, \
        (placed_at, answered_at, ticks)
    # Parent before link: every new object had its parent in a tick before the one that
    # linked them all (the link step starts a tick of its own, `budget.END_TICK`).
    assert parented_at is not None and parented_at < placed_at, (parented_at, placed_at)
    pump_until(lambda: applied_messages(scripted), what="the batch answered")
    answers = applied_messages(scripted)
    assert len(answers) == 1 and set(answers[0]["hashes"]) == {cu, *roots, *kids}
    coll = bpy.data.collections["Incoming"]
    for i, u in enumerate(roots):
        ob = s.registry.resolve(u)
        assert ob.name == f"Root{i}" and ob.parent is None
        assert coll.objects.get(ob.name) == ob
        assert bpy.context.scene.collection.objects.get(ob.name) is None
    for i, u in enumerate(kids):
        ob = s.registry.resolve(u)
        assert ob.parent == s.registry.resolve(roots[i % 4])
        assert ob.hide_get() == (i % 50 == 7)
    # Linked in the batch's order (deterministic, whatever the slices were).
    linked = [ob.name for ob in bpy.context.scene.collection.objects
              if ob.name.startswith("Kid")]
    assert linked == [f"Kid{i:04d}" for i in range(n)]
    pump_for(0.3)
    sent = [c for m in scripted.received if m.get("type") == "change"
            for c in m.get("changes", []) if c.get("uuid") in {cu, *roots, *kids}]
    assert not sent, f"applied states echoed back: {sent[:2]}"
    assert not [e for e in vibesync.status()["errors"]], vibesync.status()["errors"]


def holder_and_kid_committed(scripted, at, turned, scale):
    """The person makes Holder (at `at`, turned `turned`, scaled `scale`) and Kid at (4, 0, 0);
    their creates are sent and committed."""
    holder = make_cube("Holder", location=at)
    holder.rotation_euler = turned
    holder.scale = (scale, scale, scale)
    kid = make_cube("Kid", location=(4, 0, 0))
    settle()
    hu, ku = holder[PROP], kid[PROP]
    pump_until(lambda: changes_for(scripted, hu) and changes_for(scripted, ku), what="the creates")
    sent = sorted({c["uuid"] for m in scripted.received if m.get("type") == "change"
                   for c in m["changes"]})
    scripted.push(result("b1", 10, sent))
    pump_until(lambda: vibesync.status()["in_flight"] == 0, what="the creates committed")
    return holder, kid, hu, ku


def test_a_kept_object_whose_parent_a_batch_deletes_stays_where_it_stands_and_goes_again(
        scripted):
    """The person put Kid under Holder here; its batch rolled back, so Kid is kept here, not
    synced (PROTOCOL.md §6.4). Then another editor's delete of Holder arrives (its person
    deleted Holder while Kid's reparent was on its way; it never held Kid under Holder, so
    its delete names Holder alone). Kid stays where it stands in the world, at the root (§6.1:
    a receiver never removes more than the uuid named), and goes again, whole, as it stands:
    its kept edit named a parent that is gone, and nothing else would send it again, so the
    two editors stayed apart for good."""
    holder, kid, hu, ku = holder_and_kid_committed(scripted, (1, 2, 3), (0.3, 0, 0.5), 2)
    # The person's Set Parent To > Object (Without Inverse): Kid at (4, 0, 0) in Holder's
    # space (turned, scaled 2, at (1, 2, 3)).
    kid.parent = holder
    settle()
    pump_until(lambda: [c for _, c in changes_for(scripted, ku) if c["op"] == "reparent"],
               what="the reparent")
    assert [c["parent"] for _, c in changes_for(scripted, ku) if c["op"] == "reparent"] == [hu]
    before = len(changes_for(scripted, ku))
    scripted.push(result("b2", 11, [ku], outcome="rolled_back", error_code="VERIFY_MISMATCH",
                         kept_local=True, reason="Unity does not hold the parent"))
    pump_until(lambda: vibesync.status()["not_synced"], what="Kid kept, not synced")
    bpy.context.view_layer.update()
    world = kid.matrix_world.copy()
    scripted.push(batch_frames("d1", 12, [{"op": "delete", "uuid": hu}], path="slow"))
    pump_until(lambda: applied_messages(scripted), what="the delete applied")
    assert "Holder" not in bpy.data.objects
    kid = bpy.data.objects["Kid"]
    bpy.context.view_layer.update()
    assert kid.parent is None
    got = [round(v, 4) for row in kid.matrix_world for v in row]
    assert got == pytest.approx([round(v, 4) for row in world for v in row], abs=1e-4), \
        "Kid stands where it stood in the world"
    pump_until(lambda: len(changes_for(scripted, ku)) > before, what="Kid sent again")
    assert len(changes_for(scripted, ku)) == before + 1, changes_for(scripted, ku)[before:]
    msg, op = changes_for(scripted, ku)[before]
    assert op["op"] == "create" and op["parent"] is None, op
    x, y, z = world.translation
    assert op["t"] == pytest.approx([x, z, -y], abs=1e-4), "as it stands"
    assert list(world.to_scale()) == pytest.approx([2, 2, 2], abs=1e-4)
    assert op["s"] == pytest.approx([2, 2, 2], abs=1e-4)
    assert len(changes_for(scripted, hu)) == 1, "the deleted Holder is not sent back"


def test_an_edit_refused_as_a_loop_goes_again_when_a_batch_changes_parents(scripted):
    """The person put Kid under Holder; the daemon refused it `INVALID_FIELD` (read against
    parents it held then, a loop) and Blender keeps it, not synced (PROTOCOL.md §6.4). A
    batch that changes parents (here another editor's new object) may have made it takeable:
    Kid goes again, whole, by itself — before, only the person's next edit of Kid or a peer
    joining sent it (model seed 222)."""
    holder, kid, hu, ku = holder_and_kid_committed(scripted, (1, 0, 0), (0, 0, 0), 1)
    kid.parent = holder
    settle()
    msg = pump_until(lambda: next((m for m, c in changes_for(scripted, ku) if c["op"] == "reparent"),
                                  None), what="the reparent")
    scripted.push(frame({"type": "ack", "request_id": msg["request_id"], "seq": 10, "results": [
        {"uuid": ku, "status": "error", "error_code": "INVALID_FIELD",
         "message": "changes[0].parent: a parent cycle"}]}))
    pump_until(lambda: vibesync.status()["not_synced"], what="Kid kept, not synced")
    pump_for(0.3)
    before = len(changes_for(scripted, ku))
    nu = str(uuidlib.uuid4())
    scripted.push(batch_frames("e1", 11, [
        {"op": "create", "uuid": nu, "kind": "object", "name": "GameObject", "parent": None,
         "t": [0, 2, 0], "r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True}], path="slow"))
    pump_until(lambda: len(changes_for(scripted, ku)) > before, what="Kid sent again")
    op = changes_for(scripted, ku)[before][1]
    assert op["op"] == "create" and op["parent"] == hu, op
    assert kid.parent == holder, "the person's edit stands"
