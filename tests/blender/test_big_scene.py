"""Big files do not freeze Blender: the registry's scan and sweep run in slices resumed on
the pump's next tick, and a datablock is found by session_uid without a pass over the file
(docs/ARCHITECTURE.md, Blender addon). What a person does between two slices (delete,
add, rename) must neither be lost nor make the bridge delete something. Real bpy; the
speed itself is measured by scripts/bench-first-sync (docs/BENCHMARKS.md), not here."""

from __future__ import annotations

import gc
import uuid as uuidlib

import bpy

import vibesync
from conftest import pump_until
from vibesync import identity

N = 1200  # several slices of identity.SCAN_SLICE


def build(n: int = N) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    me = bpy.data.meshes.new("Shared")
    for i in range(n):
        ob = bpy.data.objects.new(f"Obj{i:05d}", me)
        bpy.context.scene.collection.objects.link(ob)


def finish(steps):
    slices = 0
    while True:
        try:
            next(steps)
            slices += 1
        except StopIteration as done:
            return done.value, slices


def test_a_scan_in_slices_keeps_every_uuid_when_the_file_changes_between_slices():
    build()
    reg = identity.Registry()
    reg.scan()
    uuids = {o.name: o[identity.PROP] for o in bpy.data.objects}
    steps = reg.scan_steps()
    for _ in range(3):
        next(steps)  # the first slices are read
    first, last = bpy.data.objects["Obj00000"], bpy.data.objects[f"Obj{N - 1:05d}"]
    gone = {uuids[first.name], uuids[last.name]}
    bpy.data.objects.remove(first)   # read already
    bpy.data.objects.remove(last)    # not read yet
    bpy.data.objects["Obj00500"].name = "Renamed"
    late = bpy.data.objects.new("Aaa late", None)  # sorts first: every index shifts
    bpy.context.scene.collection.objects.link(late)
    report, slices = finish(steps)
    assert slices > N // identity.SCAN_SLICE, "the scan yielded between slices"
    assert set(report.vanished) == gone, "only what was deleted is gone"
    alive = {u for u, b in reg.bindings.items() if b.alive}
    for ob in bpy.data.objects:
        if ob != late:
            assert ob[identity.PROP] in alive and reg.resolve(ob[identity.PROP]) == ob
    assert reg.bindings[uuids["Obj00500"]].name == "Renamed"
    # The newcomer added mid-scan may be left to the next pass, never given a taken uuid.
    assert late.get(identity.PROP) in (None, *[u for u in alive if u not in uuids.values()])


def test_a_sweep_in_slices_reports_only_what_was_deleted():
    build()
    reg = identity.Registry()
    reg.scan()
    steps = reg.sweep_steps()
    for _ in range(2):
        next(steps)
    victim = bpy.data.objects["Obj00010"]  # read already: every later index shifts down
    vu = victim[identity.PROP]
    bpy.data.objects.remove(victim)
    bpy.data.objects["Obj00900"].name = "Renamed"
    (gone, renamed, unknown), slices = finish(steps)
    assert slices > N // identity.SCAN_SLICE
    assert gone in ([], [vu]), "a datablock skipped by the shift is not taken for deleted"
    if not gone:  # read before it was deleted: the next pass reports it
        assert reg.sweep()[0] == [vu]
    assert reg.sweep()[0] == []
    renamed_uid = bpy.data.objects["Renamed"].session_uid
    assert ("object", renamed_uid) in renamed


def test_datablocks_bound_while_a_sweep_runs_are_not_gone_and_are_checked_in_slices(
        monkeypatch):
    """An incoming batch binds new datablocks between two slices of a sweep (the sweep's
    starved slice runs while a big batch is applied): the pass did not see them, so each is
    looked up again -- in slices, and none is taken for deleted."""
    build(300)
    reg = identity.Registry()
    reg.scan()
    sliced = []
    real_slices = identity.slices

    def recording(items, *a):
        items = list(items)
        sliced.append(items)
        return real_slices(items, *a)
    monkeypatch.setattr(identity, "slices", recording)
    steps = reg.sweep_steps()
    for _ in range(3):  # past the objects (2 slices) and the mesh: new objects are not seen
        next(steps)
    made = []
    for i in range(N * 4):
        ob = bpy.data.objects.new(f"New{i:05d}", None)  # as `apply_change` makes them
        u = str(uuidlib.uuid4())
        reg.bind_new(ob, u)
        made.append(u)
    (gone, _renamed, _unknown), _ = finish(steps)
    assert gone == [], "a datablock bound during the sweep was taken for deleted"
    assert all(reg.bindings[u].alive for u in made)
    assert any(len(x) == len(made) and {b.uuid for b in x} == set(made) for x in sliced), \
        "the bindings the pass did not see were not looked up in slices"


def test_resolve_does_not_search_by_name_and_survives_renames_and_removal():
    build(300)
    reg = identity.Registry()
    reg.scan()
    ob = bpy.data.objects["Obj00123"]
    u = ob[identity.PROP]
    ob.name = "Elsewhere"
    assert reg.resolve(u) == ob and reg.bindings[u].name == "Elsewhere"
    bpy.data.objects.remove(ob)
    reg.new_epoch()
    assert reg.resolve(u) is None


def test_the_pump_runs_a_big_scan_over_several_ticks_and_nothing_else_meanwhile(clean_blender):
    build(3000)
    vibesync.unregister()
    vibesync.register()
    vibesync.connect("127.0.0.1", 9, "a" * 64, "big")  # nothing listens: no daemon needed
    s = vibesync._session()
    vibesync.tick(2.0)
    assert s.scan_job is not None, "a 3,000-object scan does not fit one 2 ms tick"
    assert not s.registry.bindings or len(s.registry.bindings) < 3000
    pump_until(lambda: s.scan_job is None, what="the scan finished")
    assert len([b for b in s.registry.bindings.values() if b.kind == "object"]) == 3000
    assert all(o.get(identity.PROP) for o in bpy.data.objects)
    vibesync.disconnect()


def test_an_undo_during_the_first_scan_leaves_nothing_uncaptured(clean_blender):
    build(3000)
    vibesync.unregister()
    vibesync.register()
    vibesync.connect("127.0.0.1", 9, "a" * 64, "big")  # nothing listens: no daemon needed
    s = vibesync._session()
    # Until every datablock is bound: the scan is then acting on its report (marking the
    # new uuids for capture), the moment an undo can cut it short.
    while len(s.registry.bindings) < 3001:
        vibesync.tick(0.2)
    assert s.scan_job is not None, "still acting on the report"
    s.on_undo_redo("undo")  # what Blender's undo_post handler calls
    pump_until(lambda: s.scan_job is None and s.scan_reason is None, what="the scan finished")
    for ob in bpy.data.objects:
        u = ob.get(identity.PROP)
        assert u and s.registry.resolve(u) == ob
        assert ("object", ob.session_uid) in s.dirty or u in s.last_sent, \
            f"{ob.name} is neither captured nor marked for capture"
    vibesync.disconnect()


def test_a_big_sync_holds_full_garbage_collections_and_restores_the_thresholds(clean_blender):
    """CPython's full collections (tens of ms over Blender's heap) do not start while a big
    sync runs; afterwards the user's thresholds are exactly as they were, what was alive is
    frozen (so the collection the sync made due is cheap), and disconnecting thaws it
    (budget.GcHold)."""
    build(3000)
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    vibesync.unregister()
    vibesync.register()
    vibesync.connect("127.0.0.1", 9, "a" * 64, "big")  # nothing listens: no daemon needed
    s = vibesync._session()
    vibesync.tick(2.0)
    assert s.scan_job is not None
    assert gc.get_threshold()[:2] == before[:2], "young generations are still collected"
    assert gc.get_threshold()[2] > 1_000_000, "no full collection during the big scan"
    pump_until(lambda: s.scan_job is None and not s.dirty and not s.mesh_jobs,
               what="the scan and the capture finished")
    vibesync.tick(2.0)
    assert s.gc_hold.holds == 1
    assert not s.gc_hold.active and gc.get_threshold() == before
    frozen = gc.get_freeze_count()
    assert frozen > 3000, "the registry and Blender's objects left the collected generations"
    # Disconnecting in the middle of a hold restores everything too.
    s.scan_reason = "scan"
    vibesync.tick(0.5)
    assert s.gc_hold.active
    vibesync.disconnect()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_loading_a_file_thaws_the_frozen_objects(clean_blender):
    build(1500)
    vibesync.unregister()
    vibesync.register()
    vibesync.connect("127.0.0.1", 9, "a" * 64, "big")
    s = vibesync._session()
    pump_until(lambda: s.gc_hold.frozen, what="the sync's end")
    assert gc.get_freeze_count() > 0
    bpy.ops.wm.read_factory_settings(use_empty=True)  # a load: load_post thaws
    assert gc.get_freeze_count() == 0 and not s.gc_hold.frozen
    vibesync.disconnect()


def test_a_small_file_does_not_touch_the_garbage_collector(clean_blender):
    build(50)
    before = gc.get_threshold()
    vibesync.unregister()
    vibesync.register()
    vibesync.connect("127.0.0.1", 9, "a" * 64, "small")
    s = vibesync._session()
    pump_until(lambda: s.scan_job is None and not s.dirty, what="the scan finished")
    assert s.gc_hold.holds == 0 and gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    vibesync.disconnect()


def test_a_big_batch_result_is_handled_over_several_ticks_in_order(scripted):
    """A first sync's `batch_result` names thousands of uuids: it is handled in slices
    resumed on the next ticks, nothing else runs in between, and last_seq moves once every
    uuid is resolved."""
    s = vibesync._session()
    uuids = [str(uuidlib.uuid4()) for _ in range(20_000)]
    s.engine.inflight.sent("c1", uuids)
    seq0 = s.engine.last_seq
    result = {"type": "batch_result", "batch_id": "b-big", "seq": seq0 + 7,
              "outcome": "committed", "uuids": uuids}
    pong = {"type": "pong", "request_id": "x", "seq": seq0 + 8}
    for msg in (result, pong):
        s.transport.inbox.put(("message", {"message": msg, "attachment": b"",
                                           "generation": s.generation}))
    vibesync.tick(0.05)
    assert s.event_job is not None, "20,000 uuids are not handled in one 0.05 ms tick"
    assert 0 < len(s.engine.inflight) < len(uuids), "part of it is handled"
    assert s.engine.last_seq == seq0, "last_seq moves only once the whole result is handled"
    assert s.engine.daemon_seq < seq0 + 8, "the next message waits for the big one"
    ticks = 1
    while s.event_job is not None:
        vibesync.tick(0.05)
        ticks += 1
        assert ticks < 10_000
    assert ticks > 2
    assert len(s.engine.inflight) == 0 and s.engine.last_seq == seq0 + 7
    assert set(uuids) <= s.engine.synced and s.engine.result_seq[uuids[-1]] == seq0 + 7
    pump_until(lambda: s.engine.daemon_seq == seq0 + 8, what="the pong after it")


def test_an_apply_step_that_cannot_be_split_starts_a_tick_and_the_undo_step_follows_a_tick_later(
        scripted):
    """`Session._run_apply_job` (docs/ARCHITECTURE.md "Main-thread budget"): a batch yields
    `budget.HEAVY_NEXT` before a change built in one go (a mesh); the tick ends there unless
    it has only just started, so the change runs first thing next tick (never deferred for
    good). `budget.END_TICK` ends the tick at once (the undo step after the answer)."""
    import time

    from vibesync import apply as apply_mod
    from vibesync import budget
    s = vibesync._session()
    ran = []

    def job():
        time.sleep(0.003)  # this tick has done work already
        ran.append("light")
        yield None
        yield budget.HEAVY_NEXT
        ran.append("heavy")  # first thing of the next tick
        yield None
        yield budget.HEAVY_NEXT  # at the start of a tick: not deferred
        ran.append("heavy again")
        yield None
        yield budget.END_TICK
        ran.append("undo step")

    s.apply_job = job()
    far = time.perf_counter() + 10.0
    assert s._run_apply_job(far) is False and ran == ["light"]
    assert s._run_apply_job(far) is False and ran == ["light", "heavy", "heavy again"]
    assert s._run_apply_job(far) is True and ran[-1] == "undo step" and s.apply_job is None
    # A batch marks every change that carries a mesh attachment this way.
    batch = apply_mod.Batch("b", 1, "fast", 2)
    batch.changes = [({"op": "rename", "uuid": str(uuidlib.uuid4()), "name": "x"}, b""),
                     ({"op": "mesh", "uuid": str(uuidlib.uuid4()), "mesh_hash": "0" * 64},
                      b"VSM1")]
    steps = list(apply_mod.apply_batch_steps(batch, s.registry, 1.0, {}))
    assert steps.count(budget.HEAVY_NEXT) == 1 and steps.index(budget.HEAVY_NEXT) == 1


def test_a_material_change_marks_every_object_showing_it_over_several_ticks(scripted):
    """A material travels in the state of every object that shows it (§6.1): its capture
    marks them all for capture again. That is a pass over every object
    (`capture.first_material` each, ~16 ms at 10,000 objects): `Session._material_step` runs
    it in slices over ticks, marking exactly the objects that show the material, each once,
    in `bpy.data.objects` order; an object removed between two slices is skipped, not
    read."""
    s = vibesync._session()
    mat = bpy.data.materials.new("Shared")
    shown = bpy.data.meshes.new("Shown")
    shown.materials.append(mat)
    plain = bpy.data.meshes.new("Plain")
    n = 6000
    for i in range(n):
        ob = bpy.data.objects.new(f"Obj{i:05d}", shown if i % 3 else plain)
        bpy.context.scene.collection.objects.link(ob)
    bpy.context.view_layer.update()
    # The first sync's captures (the scripted daemon answers nothing: they stay in flight).
    pump_until(lambda: not s.dirty and s.scan_job is None and s.scan_reason is None,
               timeout=60.0, what="the new objects captured")
    assert s.material_job is None and not s.material_users

    class Marks(set):
        """The pump's dirty set, recording which tick marked what."""
        tick = 0
        at: list = []

        def add(self, key):
            self.at.append((self.tick, key))
            super().add(key)
    s.dirty = Marks(s.dirty)
    users = {ob.session_uid for ob in bpy.data.objects if ob.data == shown}
    mat.diffuse_color = (1.0, 0.0, 0.0, 1.0)
    bpy.context.view_layer.update()  # the depsgraph reports the material
    del Marks.at[:]  # (and may report some of its objects: the pump's marks are counted)
    gone = None
    ticks = 0
    while True:
        Marks.tick = ticks
        vibesync.tick(0.01)  # past its budget at once: one slice per tick
        ticks += 1
        assert ticks < 10_000, "the material's pass did not finish"
        if s.material_job is not None and gone is None:
            # A person deletes an object the pass has not reached yet, between two ticks.
            victim = bpy.data.objects[f"Obj{n - 1:05d}"]
            gone = victim.session_uid
            bpy.data.objects.remove(victim)
            users.discard(gone)
        if gone is not None and s.material_job is None and not s.material_users:
            break
    marked = [(t, k[1]) for t, k in Marks.at if k[0] == "object"]
    assert {sid for _, sid in marked} == users, "exactly the objects showing the material"
    assert len(marked) == len(users), "each once"
    assert len({t for t, _ in marked}) > 1, "marked over several ticks, not in one"
    order = [sid for _, sid in marked]
    expected = [ob.session_uid for ob in bpy.data.objects if ob.session_uid in users]
    assert order == expected, "in bpy.data.objects order"


def test_a_delete_of_a_uuid_blender_does_not_hold_is_a_no_op(caplog):
    """PROTOCOL.md §6.1: a `delete` of an object the receiver does not have (a replay from
    `last_seq` 0 sends the deletes of tombstoned uuids, §6.6) removes nothing and is no
    failure; it is logged at debug level, never as an error. Other ops still fail."""
    import logging

    from vibesync import apply as apply_mod
    build(3)
    reg = identity.Registry()
    reg.scan()
    gone = str(uuidlib.uuid4())
    batch = apply_mod.Batch("b", 1, "resync", 2)
    batch.changes = [({"op": "delete", "uuid": gone}, b""),
                     ({"op": "rename", "uuid": str(uuidlib.uuid4()), "name": "x"}, b"")]
    result = {}
    with caplog.at_level(logging.DEBUG, logger="vibesync.apply"):
        list(apply_mod.apply_batch_steps(batch, reg, 1.0, result))
    assert result["touched"] == [gone] and result["deleted"] == []
    assert [f["op"] for f in result["failed"]] == ["rename"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "rename" in errors[0].getMessage()
    assert any(r.levelno == logging.DEBUG and gone in r.getMessage() for r in caplog.records)
    assert len(bpy.data.objects) == 3
