"""What meshes cost on the wire, and what a failed propagation costs later: each geometry goes
to the daemon once per connection, however many objects show it (PROTOCOL §6.1: a `create`
naming a mesh the daemon holds needs no attachment); a change the daemon refuses
`RATE_LIMITED` is sent again, whole, after a pause (PROTOCOL §2 "Rate limits": retry later) —
a big first sync over the daemon's bytes budget loses nothing; a person's edit kept after a
`VERIFY_TIMEOUT` (a participant too slow to answer) goes again by itself after a pause
(PROTOCOL §6.4). Real bpy, the real daemon (configured small where a test needs it)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess

import bpy
import pytest

import vibesync
from conftest import pump_for, pump_until, settle
from daemon import Client, Daemon, synced_states
from vibesync import apply as apply_mod
from vibesync import capture, engine, wire

PROP = "vibesync_uuid"


def grids(n: int, same: bool) -> list:
    """`n` grids of 2,500 vertices in the scene collection: one geometry when `same`, else
    each its own (a different size moves every vertex)."""
    made = []
    for i in range(n):
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=49, y_subdivisions=49,
                                        size=2.0 if same else 2.0 + i, location=(3 * i, 0, 0))
        made.append(bpy.context.active_object)
    return made


# Daemon settings the tests below combine: a per-session bytes budget two 2,500-vertex grids
# exhaust (frames at most as large as its burst: the daemon refuses a burst below its largest
# frame), a 400 ms wait for each participant's answer, and no grace before an unreferenced
# mesh is collected.
TIGHT = ("[server]\nmax_frame_bytes = 300000\n"
         "[limits]\nbytes_per_sec = 400000\nbytes_burst = 300000\n")
IMPATIENT = "[sync]\nbatch_window_ms = 50\nverify_timeout_ms = 400\n"
COLLECTING = "[storage]\nblob_grace_secs = 0\n"


@contextlib.contextmanager
def configured_daemon(daemon_bin, tmp_path, config_toml: str):
    """A `vibesync serve` of its own, with `config_toml` as its config file."""
    config = tmp_path / "vibesync.toml"
    config.write_text(config_toml)
    d = Daemon(daemon_bin, str(tmp_path / "data"), ["--config", str(config)]).start()
    try:
        yield d
    finally:
        d.stop()


@contextlib.contextmanager
def beside_a_silent_unity(daemon, project_id: str):
    """Blender connected to `daemon`, and a Unity stand-in in the same project that takes each
    batch and never answers it (every batch it is sent times out: `VERIFY_TIMEOUT`)."""
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    try:
        pump_until(lambda: vibesync.status()["connected"], what="connection")
        unity = Client(daemon, project_id, editor="unity")
        try:
            yield unity
        finally:
            unity.close()
    finally:
        vibesync.disconnect()


def persons_cube_kept():
    """The person adds a cube "PersonsCube" at (1, 2, 3); beside a silent Unity its batch times
    out and Blender keeps it, not synced. Returns the cube, its uuid and the addon's session."""
    bpy.ops.mesh.primitive_cube_add(location=(1.0, 2.0, 3.0))
    ob = bpy.context.active_object
    ob.name = "PersonsCube"
    u = pump_until(lambda: ob.get(PROP), what="a uuid for the person's cube")
    session = vibesync._session()
    pump_until(lambda: u in session.engine.not_synced and not session.engine.pending,
               timeout=20, what="the person's cube kept here, not synced")
    return ob, u, session


def test_objects_showing_one_geometry_send_it_once(bridge):
    daemon = bridge
    first = grids(1, same=True)[0]
    settle()
    u0 = first.get(PROP) or pump_until(lambda: first.get(PROP), what="a uuid for the first grid")
    one = pump_until(lambda: (synced_states(daemon).get(u0) or {}).get("state", {}).get("mesh_hash"),
                     what="the first grid at the daemon")
    per_mesh = vibesync.status()["mesh_bytes_sent"]
    assert per_mesh > 100_000, per_mesh  # 2,500 vertices with normals and UVs
    # Nine more objects with the same geometry: linked duplicates share the mesh datablock,
    # copies have their own with the same content. Neither sends it again.
    linked = [first.copy() for _ in range(4)]
    copies = [first.copy() for _ in range(5)]
    for ob in copies:
        ob.data = first.data.copy()
    for i, ob in enumerate(linked + copies):
        ob.location.x = 3 * (i + 1)
        bpy.context.scene.collection.objects.link(ob)
    settle()

    def all_there():
        states = synced_states(daemon)
        got = [(states.get(ob.get(PROP, "")) or {}).get("state", {}).get("mesh_hash") for ob in linked + copies]
        return all(h == one for h in got)
    pump_until(all_there, timeout=20, what="ten objects with one geometry at the daemon")
    assert vibesync.status()["mesh_bytes_sent"] == per_mesh
    assert vibesync.status()["not_synced"] == []


@pytest.fixture
def tight_daemon(daemon_bin, tmp_path):
    """A daemon whose bytes budget per session is 400 kB/s with a 300 kB burst: two grids of
    2,500 vertices exhaust it."""
    with configured_daemon(daemon_bin, tmp_path, TIGHT) as d:
        yield d


def test_a_first_sync_over_the_bytes_budget_arrives_whole(clean_blender, tight_daemon, project_id):
    made = grids(8, same=False)  # ~1.1 MB of distinct meshes: ~3 s of this daemon's budget
    settle()
    vibesync.connect("127.0.0.1", tight_daemon.port, tight_daemon.token, project_id)
    try:
        def at_daemon():
            states = synced_states(tight_daemon)
            return all((states.get(ob.get(PROP, "")) or {}).get("state", {}).get("mesh_hash")
                       for ob in made)
        pump_until(at_daemon, timeout=30, what="eight distinct grids at the daemon")
        hashes = {synced_states(tight_daemon)[ob[PROP]]["state"]["mesh_hash"] for ob in made}
        assert len(hashes) == 8
        assert vibesync.status()["not_synced"] == []
    finally:
        vibesync.disconnect()


@pytest.fixture
def impatient_daemon(daemon_bin, tmp_path):
    """A daemon that waits 400 ms for each participant's answer."""
    with configured_daemon(daemon_bin, tmp_path, IMPATIENT) as d:
        yield d


def test_an_edit_kept_after_a_verify_timeout_goes_again_by_itself(clean_blender, impatient_daemon,
                                                                    project_id, monkeypatch):
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (0.5, 1.0, 2.0))
    daemon = impatient_daemon
    with beside_a_silent_unity(daemon, project_id) as unity:
        bpy.ops.mesh.primitive_cube_add()
        cube = bpy.context.active_object
        settle()

        def kept():
            return [n for n in vibesync.status()["not_synced"] if n["uuid"] == cube.get(PROP)]
        why = pump_until(kept, timeout=20, what="the cube kept, not synced, after the timeout")
        assert "in time" in why[0]["reason"], why
        assert cube.name in bpy.data.objects, "the person's cube stays"
        # The slow editor leaves; nothing else happens (no edit, no peer joining): the cube
        # goes again after the pause and commits.
        unity.close()
        pump_until(lambda: not kept() and (synced_states(daemon).get(cube[PROP]) or {}).get("state"),
                   timeout=20, what="the cube sent again by itself and committed")


@pytest.fixture
def collecting_daemon(daemon_bin, tmp_path):
    """A daemon that waits 400 ms for each participant's answer and collects an unreferenced
    mesh at its next maintenance pass (no grace period)."""
    with configured_daemon(daemon_bin, tmp_path, IMPATIENT + COLLECTING) as d:
        yield d


def test_a_mesh_the_daemon_collected_goes_again_with_the_object_that_names_it(
        clean_blender, collecting_daemon, project_id, monkeypatch):
    """PROTOCOL §6.1: each geometry goes once per connection, and a `create` naming a mesh the
    daemon no longer holds is refused `INVALID_FIELD`; the addon then sends it with the mesh.
    The daemon really collects it here: the batch that carried it was rolled back (nothing
    references it), and a maintenance pass removes it."""
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))  # only the edit re-sends
    daemon = collecting_daemon
    with beside_a_silent_unity(daemon, project_id) as unity:
        bpy.ops.mesh.primitive_cube_add()
        cube = bpy.context.active_object
        settle()

        def kept():
            return [n for n in vibesync.status()["not_synced"] if n["uuid"] == cube.get(PROP)]
        pump_until(kept, timeout=20, what="the cube kept, not synced, after the timeout")
        once = vibesync.status()["mesh_bytes_sent"]
        assert once > 0
        blobs = os.path.join(daemon.data_dir, "blobs")
        held = [f for f in os.listdir(blobs) if len(f) == 64]
        assert len(held) == 1, held  # the cube's mesh, stored when its change was taken
        out = subprocess.run([daemon.binary, "maintain", "--json", "--data-dir", daemon.data_dir],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["blobs"]["removed"] == 1, out.stdout
        assert not os.path.exists(os.path.join(blobs, held[0]))
        unity.close()

        # The person moves the cube: its create goes again, naming the mesh it sent on this
        # connection; refused, it goes once more with the mesh, and commits.
        cube.location.x += 1.0
        settle()

        def committed():
            state = (synced_states(daemon).get(cube[PROP]) or {}).get("state") or {}
            return state.get("mesh_hash") == held[0] and not kept()
        pump_until(committed, timeout=20, what="the cube and its mesh committed")
        assert vibesync.status()["mesh_bytes_sent"] == 2 * once
        assert os.path.exists(os.path.join(blobs, held[0]))


@pytest.fixture
def tight_impatient_daemon(daemon_bin, tmp_path):
    """The bytes budget of `tight_daemon` and the 400 ms answer wait of `impatient_daemon`."""
    with configured_daemon(daemon_bin, tmp_path, TIGHT + IMPATIENT) as d:
        yield d


@pytest.mark.parametrize("person_edits", [False, True], ids=["untouched", "edited_meanwhile"])
def test_an_agents_change_sent_again_after_rate_limited_stays_the_agents(
        clean_blender, tight_impatient_daemon, project_id, monkeypatch, caplog, person_edits):
    """PROTOCOL §6.1 "Who made it", §6.4: an agent's change that fails to propagate is reverted
    everywhere, Blender included. One the daemon refused `RATE_LIMITED` goes again after the
    pause; it must go as the agent's (carrying `automation`), not as a person's edit (which
    would be kept here, marked not synced, and hold automation) — unless a person edited the
    object before it went again: then it is the person's, and stays."""
    caplog.set_level(logging.INFO, logger="vibesync")
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))
    daemon = tight_impatient_daemon
    with beside_a_silent_unity(daemon, project_id):
        # What a tool call does (router: the handler runs, then `capture_now(automation)`):
        # three distinct grids, ~410 kB of meshes: over the 300 kB burst.
        made = grids(3, same=False)
        names = [ob.name for ob in made]
        session = vibesync._session()
        uuids = session.capture_now({"operation_id": "op-grids", "tool": "test.grids",
                                     "agent_session": "agent-1"})
        assert len(uuids) >= 3, uuids
        pump_until(lambda: any("answered RATE_LIMITED" in r.getMessage() for r in caplog.records),
                   timeout=20, what="the daemon's RATE_LIMITED for the third grid")
        refused = [ob.name for ob in made if ob.get(PROP) in session.automation_for]
        assert len(refused) == 1, refused
        if person_edits:
            bpy.data.objects[refused[0]].location.y += 2.0  # before the pause has passed
        # Every batch times out (the stand-in never answers): the agent's grids are reverted
        # here too (the one sent again included, unless a person moved it before), and only
        # a person's work is left "not synced".
        kept = refused if person_edits else []
        pump_until(lambda: sorted(n for n in names if n in bpy.data.objects) == kept, timeout=30,
                   what=f"the agent's grids reverted in Blender, {kept} kept")
        pump_until(lambda: len(vibesync.status()["not_synced"]) == len(kept), timeout=10,
                   what=f"{len(kept)} object(s) not synced")
        if person_edits:
            assert bpy.data.objects[refused[0]].location.y == pytest.approx(2.0)


def test_an_agents_delete_goes_as_the_agents_and_again_after_rate_limited(bridge, monkeypatch):
    """PROTOCOL §5, §6.3, §9.2: an object a tool call deleted goes as a `delete` change
    carrying the call's `automation` — never as a person's `tombstone` (committed at once and
    applied over a person's edit in Unity), never as a person's activity. Refused for later
    (`RATE_LIMITED`), it goes again as the agent's: nothing here captures a deleted object."""
    daemon = bridge
    grid = grids(1, same=True)[0]
    settle()
    u = grid.get(PROP) or pump_until(lambda: grid.get(PROP), what="a uuid for the grid")
    pump_until(lambda: u in synced_states(daemon), what="the grid at the daemon")
    session = vibesync._session()
    pump_until(lambda: not session.engine.pending and not session.user_active, timeout=15,
               what="Blender idle, the person's activity over")
    sent = []
    send_change = session._send_change

    def spy(ops, attachment=b"", automation=None, base_seq=None):
        rid = send_change(ops, attachment, automation, base_seq)
        sent.append((rid, [dict(op) for op in ops], automation))
        return rid

    monkeypatch.setattr(session, "_send_change", spy)
    automation = {"operation_id": "op-delete", "tool": "test.delete", "agent_session": "agent-1"}
    start = len(daemon.tail())
    bpy.data.objects.remove(grid)  # what the handler does
    assert session.capture_now(automation) == [u]
    assert [(ops, auto) for _, ops, auto in sent] == [([{"op": "delete", "uuid": u}], automation)]
    assert u not in session.to_tombstone and u not in session.deleted_here
    assert not session.user_active, "automation's delete is no person's activity"
    # The daemon's answer is not read yet: it refuses the frame for later instead.
    session._handle_message({"type": "error", "request_id": sent[0][0], "code": "RATE_LIMITED",
                             "message": "over the bytes budget; retry later"}, b"")
    pump_until(lambda: len(sent) == 2, timeout=10, what="the delete sent again after the pause")
    assert sent[1][1:] == ([{"op": "delete", "uuid": u}], automation)

    def deleted():
        records = daemon.tail()
        committed = {r.get("operation_id") for r in records if r.get("phase") == "COMMIT"}
        return [r for r in records if r.get("phase") == "STEP" and r.get("uuids") == [u]
                and (r.get("payload") or {}).get("op") == "tombstone"
                and r.get("operation_id") in committed]
    pump_until(deleted, what="the delete committed")
    assert not [r for r in daemon.tail()[start:] if r.get("phase") == "BEGIN"
                and (r.get("payload") or {}).get("op") == "tombstone"], "no tombstone request"


def test_an_agents_edit_of_an_object_kept_not_synced_goes_as_the_persons(
        clean_blender, impatient_daemon, project_id, monkeypatch):
    """PROTOCOL §6.4, §6.7: an object a person made here whose sync failed stays here, not
    synced. A tool call that then moves it sends its full state — the person's work with the
    move — as the person's change, never with the call's `automation`. As automation's, a
    `STALE` refusal of it (another editor's person's change of the object on its way) ended
    its not-synced mark here, and the state that stands replaced the person's work: in the
    model test `machine_regression_an_agents_edit_of_a_kept_create_refused_stale`, it deleted
    the person's object. Unity's stand-in never answers, so every batch rolls back and the
    moved cube stays here, not synced."""
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))
    daemon = impatient_daemon
    with beside_a_silent_unity(daemon, project_id):
        ob, u, session = persons_cube_kept()
        sent = []
        send_change = session._send_change

        def spy(ops, attachment=b"", automation=None, base_seq=None):
            rid = send_change(ops, attachment, automation, base_seq)
            sent.append(([dict(op) for op in ops], automation))
            return rid

        monkeypatch.setattr(session, "_send_change", spy)
        ob.location.x = 5.0  # what the tool's handler does
        call = {"operation_id": "op-move", "tool": "test.move", "agent_session": "agent-1"}
        session.capture_now(call)
        pump_until(lambda: any(op.get("uuid") == u for ops, _ in sent for op in ops),
                   what="the cube's change sent")
        mine = [(op, auto) for ops, auto in sent for op in ops if op.get("uuid") == u]
        assert all(auto is None for _, auto in mine), mine
        assert mine[0][0]["op"] == "create", mine  # its full state: not synced
        # Its batch rolls back too (nobody answers); the person's cube, moved, stays here.
        before = len([r for r in daemon.tail() if r.get("phase") == "ROLLBACK"])
        pump_until(lambda: len([r for r in daemon.tail() if r.get("phase") == "ROLLBACK"]) > before,
                   timeout=20, what="the batch of the moved cube rolled back")
        pump_for(1.0)
        assert "PersonsCube" in bpy.data.objects, "the person's cube deleted by a rollback"
        assert bpy.data.objects["PersonsCube"].location.x == pytest.approx(5.0)
        assert u in session.engine.not_synced



def their_full_state_over(daemon, project_id, ob, u) -> Client:
    """Another editor's full state of the person's kept cube, sent by a `test` client: its
    name "TheirCube", at x = 7. Returns that client."""
    other = Client(daemon, project_id, editor="test")
    mesh = wire.mesh_hash(capture.mesh_attachment(ob.data, 1.0))
    reply = other.request({"type": "change", "base_seq": other.welcome.get("last_seq", 0),
                           "changes": [{
                               "op": "create", "uuid": u, "kind": "object",
                               "name": "TheirCube", "parent": None, "visible": True,
                               "t": [7.0, 0.0, 0.0], "r": [0.0, 0.0, 0.0, 1.0],
                               "s": [1.0, 1.0, 1.0], "mesh_hash": mesh}]})
    assert reply["type"] == "ack", reply
    return other


def blender_states_sent(daemon, u, since: int) -> list:
    """The states of `u` that batches of Blender's changes carried, WAL records after `since`."""
    records = daemon.tail()
    ours = {r.get("operation_id") for r in records[since:] if r.get("phase") == "BEGIN"
            and "blender" in (r.get("payload") or {}).get("origin_editors", {}).values()}
    return [(r.get("payload") or {}).get("state") for r in records[since:]
            if r.get("operation_id") in ours and r.get("phase") == "STEP"
            and (r.get("payload") or {}).get("op") == "state" and r.get("uuids") == [u]]


def test_a_result_that_comes_before_the_batch_is_applied_is_read_once_it_is(
        clean_blender, impatient_daemon, project_id, monkeypatch):
    """PROTOCOL §6.4: the daemon rolls a batch back at the first wrong or missing answer,
    without waiting for Blender's, so its `batch_result` can come while Blender still holds
    the batch unapplied (queued behind others, or applied over several ticks). What the batch
    overwrites of the person's kept cube is read once it has been applied: the person's name
    and pose come back. (Read at once, there was nothing to put back yet, and the other
    editor's cube went out as the person's.) A batch that commits waited for Blender's
    answer: its result never comes first."""
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))
    daemon = impatient_daemon
    with beside_a_silent_unity(daemon, project_id):
        ob, u, session = persons_cube_kept()
        holding = [True]
        apply_batches = session._apply_batches
        monkeypatch.setattr(session, "_apply_batches",
                            lambda deadline: 0 if holding[0] else apply_batches(deadline))
        results = []
        steps = session._message_steps

        def noting_results(msg, attachment):
            if msg.get("type") == "batch_result":
                results.append(msg)
            yield from steps(msg, attachment)

        monkeypatch.setattr(session, "_message_steps", noting_results)
        other = their_full_state_over(daemon, project_id, ob, u)
        pump_until(lambda: session.batches and session.batches[0].batch_id in
                   {r.get("batch_id") for r in results}, timeout=20,
                   what="the batch's result read while the batch waits unapplied")
        assert ob.name == "PersonsCube", "applied before it was let go"
        holding[0] = False
        pump_until(lambda: not session.batches and session.apply_job is None
                   and not session.early_results, timeout=10,
                   what="the batch applied and its early result read")
        assert ob.name == "PersonsCube", "the other editor's name left in the person's cube"
        assert tuple(ob.location) == pytest.approx((1.0, 2.0, 3.0))
        assert u in session.engine.not_synced
        other.close()


def test_a_part_that_cannot_be_put_back_leaves_the_others_put_back(
        clean_blender, impatient_daemon, project_id, monkeypatch):
    """PROTOCOL §6.4: putting back what a rolled-back batch overwrote of a kept object goes part
    by part. One part that cannot be put back (here its name: Blender refuses it) stays as the
    batch wrote it, and the person's place still comes back. (In one go, the first failing part
    left every later one as the other editor wrote it.)"""
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))
    daemon = impatient_daemon
    with beside_a_silent_unity(daemon, project_id):
        ob, u, session = persons_cube_kept()
        apply_change = apply_mod.apply_change
        refused = []

        def refusing_the_rename(change, *args, **kwargs):
            if change.get("op") == "rename" and change.get("uuid") == u and putting_back:
                refused.append(change)
                raise RuntimeError("Blender refused the rename (test)")
            return apply_change(change, *args, **kwargs)

        putting_back = False
        undo = session._undo_overtaken

        def undoing(*args):
            nonlocal putting_back
            putting_back = True
            try:
                undo(*args)
            finally:
                putting_back = False

        monkeypatch.setattr(apply_mod, "apply_change", refusing_the_rename)
        monkeypatch.setattr(session, "_undo_overtaken", undoing)
        rollbacks = len([r for r in daemon.tail() if r.get("phase") == "ROLLBACK"])
        other = their_full_state_over(daemon, project_id, ob, u)
        pump_until(lambda: "TheirCube" in bpy.data.objects, timeout=10,
                   what="the other editor's full state applied in Blender")
        pump_until(lambda: len([r for r in daemon.tail() if r.get("phase") == "ROLLBACK"])
                   > rollbacks, timeout=20, what="the other editor's batch rolled back")
        pump_until(lambda: refused, timeout=10, what="the person's name put back (refused)")
        assert tuple(ob.location) == pytest.approx((1.0, 2.0, 3.0)), "the person's place back"
        assert ob.name == "TheirCube", "the refused part stays as the batch wrote it"
        assert u in session.engine.not_synced
        other.close()


@pytest.mark.parametrize("outcome", ["rolled_back", "committed", "rolled_back, paused"])
def test_another_editors_full_state_over_a_kept_create_is_undone_when_its_lost_result_was_a_rollback(
        clean_blender, impatient_daemon, project_id, monkeypatch, outcome):
    """PROTOCOL §6.4: the connection drops after Blender applied another editor's full state
    over the person's kept cube and before that batch's `batch_result` arrived. After the
    reconnect Blender asks the daemon from before that batch: the answer names the cube only
    if the batch committed it. Rolled back, the person's name and pose come back and go again
    as the person's; committed, the other editor's state stands and the cube is synced. Until
    the answer, the cube is not sent. (The result lost, Blender kept the other editor's name
    and pose, and sent them as this person's work when it reconnected.) Paused when the answer
    comes (the person paused the addon), the answer is held and dropped like any batch then,
    and asked for again on resume."""
    paused = outcome.endswith(", paused")
    outcome = outcome.split(",")[0]
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))
    daemon = impatient_daemon
    with beside_a_silent_unity(daemon, project_id) as silent:
        ob, u, session = persons_cube_kept()
        if outcome == "committed":
            silent.close()  # nobody else to answer: Blender's answer commits the batch
        # The overtaking batch's result never arrives: the connection drops as it comes.
        lost = []
        steps = session._message_steps

        def losing_its_result(msg, attachment):
            if msg.get("type") == "batch_result" and msg.get("batch_id") in session.overtook:
                lost.append((msg, session.session_id))
                if paused:
                    session.pause("the person paused it (test)")
                session.transport.reconnect()
                return
            yield from steps(msg, attachment)

        monkeypatch.setattr(session, "_message_steps", losing_its_result)
        seen = len(daemon.tail())
        other = their_full_state_over(daemon, project_id, ob, u)
        pump_until(lambda: "TheirCube" in bpy.data.objects, timeout=10,
                   what="the other editor's full state applied in Blender")
        pump_until(lambda: lost, timeout=20, what="the overtaking batch's result (lost)")
        assert lost[0][0]["outcome"] == outcome, lost
        first = lost[0][1]
        if paused:
            asked = pump_until(lambda: session.connected and session.session_id != first
                               and session.overtook_probe, timeout=20, what="asked, paused")
            pump_until(lambda: any(b.request_id == asked for b in session.batches), timeout=10,
                       what="the answer held while paused")
            pump_for(0.5)
            assert ob.name == "TheirCube" and session.overtook_unheard, "settled while paused"
            session.resume()
        pump_until(lambda: session.connected and session.session_id != first
                   and session.overtook_probe is None and not session.overtook_unheard,
                   timeout=20,
                   what="reconnected, and the lost result told by the daemon")
        if outcome == "rolled_back":
            assert "PersonsCube" in bpy.data.objects, "the other editor's name kept"
            assert tuple(ob.location) == pytest.approx((1.0, 2.0, 3.0))
            assert u in session.engine.not_synced
            state = pump_until(lambda: blender_states_sent(daemon, u, seen), timeout=10,
                               what="the kept cube sent again")[-1]
            assert state["name"] == "PersonsCube", state
            assert state["t"] == pytest.approx([1.0, 3.0, -2.0]), state  # (the wire is Y-up)
            assert all(s["name"] == "PersonsCube" for s in blender_states_sent(daemon, u, seen))
        else:
            pump_until(lambda: u not in session.engine.not_synced, timeout=10,
                       what="the cube synced")
            pump_for(0.5)
            assert ob.name == "TheirCube" and ob.location.x == pytest.approx(7.0)
            state = synced_states(daemon)[u]["state"]
            assert state["name"] == "TheirCube", state
        other.close()


@pytest.mark.parametrize("outcome", ["rolled_back", "committed"])
def test_another_editors_full_state_over_a_kept_create_is_undone_when_its_batch_rolls_back(
        clean_blender, impatient_daemon, project_id, monkeypatch, outcome):
    """PROTOCOL §6.4: another editor's full state of an object a person made here, kept not
    synced, is applied whole (nothing of it was ever committed, so nothing of it is spared).
    When that batch rolls back, the bridge undoes what it wrote: the person's name and pose
    come back here, the object stays not synced, and the full state it sends next is the
    person's. Left as the batch wrote it, the rollback's correction (a `delete` of a uuid
    never committed, which a kept object skips) restored nothing, and the other editor's
    name and pose went out later as this person's work. When the batch commits, the other
    editor's state stands and the object is synced."""
    monkeypatch.setattr(engine, "TIMEOUT_RETRY_S", (600.0, 600.0, 600.0))
    daemon = impatient_daemon
    with beside_a_silent_unity(daemon, project_id) as silent:
        ob, u, session = persons_cube_kept()
        if outcome == "committed":
            silent.close()  # nobody else to answer: Blender's answer commits the batch
        # Another editor's full state of the same object: its name, another place.
        rollbacks = len([r for r in daemon.tail() if r.get("phase") == "ROLLBACK"])
        seen = len(daemon.tail())
        other = their_full_state_over(daemon, project_id, ob, u)
        pump_until(lambda: "TheirCube" in bpy.data.objects, timeout=10,
                   what="the other editor's full state applied in Blender")
        if outcome == "rolled_back":
            pump_until(lambda: len([r for r in daemon.tail() if r.get("phase") == "ROLLBACK"])
                       > rollbacks, timeout=20, what="the other editor's batch rolled back")
            pump_until(lambda: "PersonsCube" in bpy.data.objects, timeout=10,
                       what="the person's name back in Blender after the rollback")
            assert tuple(ob.location) == pytest.approx((1.0, 2.0, 3.0))
            assert u in session.engine.not_synced
            # The rollback's correction (a `delete`: never committed) is skipped as kept work,
            # which goes again (§6.6): the person's state, not the other editor's.
            state = pump_until(lambda: blender_states_sent(daemon, u, seen), timeout=10,
                               what="the kept cube sent again")[-1]
            assert state["name"] == "PersonsCube", state
            assert state["t"] == pytest.approx([1.0, 3.0, -2.0]), state  # (the wire is Y-up)
            # The person edits it again once the slow editor is gone: its full state goes,
            # the person's, and commits.
            silent.close()
            ob.location.z = 4.0
            settle()
            pump_until(lambda: (synced_states(daemon).get(u) or {}).get("state"), timeout=20,
                       what="the person's cube committed")
            state = synced_states(daemon)[u]["state"]
            assert state["name"] == "PersonsCube", state
            assert state["t"] == pytest.approx([1.0, 4.0, -2.0]), state
        else:
            pump_until(lambda: (synced_states(daemon).get(u) or {}).get("state"), timeout=20,
                       what="the other editor's full state committed")
            pump_until(lambda: u not in session.engine.not_synced, timeout=10,
                       what="the cube synced")
            pump_for(0.5)
            assert ob.name == "TheirCube" and ob.location.x == pytest.approx(7.0)
        other.close()
