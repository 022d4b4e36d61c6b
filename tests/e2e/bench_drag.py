"""A person drags many selected objects in Blender, at default settings, with the headless
Unity host in the project (docs/BENCHMARKS.md, "A drag of many objects in Blender").

Real Blender (the bpy wheel) and the real daemon: `BENCH_DRAG_OBJECTS` objects (default
1,000) in the file's collection, synced to the host first. Then `BENCH_DRAG_FRAMES` frames
(default 120: two seconds at 60 Hz) each move every object, as a grab of all of them does:
Blender's own depsgraph evaluation (`view_layer.update`), then the addon's timer
(`vibesync.tick`, its default 8 ms budget), paced at one frame per 1/60 s. Reported:

- the addon's main-thread time per frame (wall; p50, p99, longest), and Blender's own
  evaluation beside it;
- the `transform`s the daemon acknowledged (the `ack` results the addon received, counted
  as they arrive), per second of the drag;
- what the receiver holds: the live previews the host applied, and when it holds the last
  pose of every object (after the last frame), read from its scene.

Then the other way: the host drags the same objects (one edit of all of them per 1/60 s),
and Blender's main-thread time per frame, the previews it applied and when it holds the
last pose of every object.

Fails when a receiver does not hold the other editor's last pose within 120 s, and when
the WAL records a conflict (one person drags at a time: a conflict is an editor sending what
it received as its person's edit); prints the WAL's rollbacks.

Run: `VIBESYNC_BIN=<daemon> .venv/blender/bin/python tests/e2e/bench_drag.py` (needs
build/unity from scripts/test-unity). Prints the figures with the machine's fdatasync cost.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Host, bpy, daemon_binary, drive, vibesync  # noqa: E402
from bench_first_sync import fdatasync_cost  # noqa: E402
from bpy_exit import leave  # noqa: E402

FRAME_S = 1 / 60


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def profiled_tick(prof) -> float:
    """One run of the addon's timer (its default budget), under `prof` if set; its ms."""
    a = time.perf_counter()
    if prof is not None:
        prof.enable()
    vibesync.tick(8.0)
    if prof is not None:
        prof.disable()
    return (time.perf_counter() - a) * 1e3


def wal_trouble(d: Daemon) -> list[dict]:
    """The WAL records of rollbacks and conflicts (for a failure's message)."""
    return [r for r in d.tail() if r.get("phase") == "ROLLBACK" or "conflict" in json.dumps(r)]


def host_positions(host: Host) -> dict[str, list[float]]:
    i = host.cmd(f"dump {host.dump_path}")
    host.wait("dumped", i, timeout=60)
    with open(host.dump_path, encoding="utf-8") as f:
        return {o["uuid"]: o["transform"]["position"] for o in json.load(f)["objects"]}


def the_other_way(d: Daemon, host: Host, objs, uuids: list[str], frames: int) -> None:
    """The host drags the same objects (one `together` edit of every object per 1/60 s) while
    Blender runs its loop; Blender's main-thread time per frame, the live previews it
    applied, and when it holds the last pose of every object."""
    live0 = vibesync.status()["live_applied"]
    tick_ms = []
    base = 5.0
    t0 = time.monotonic()
    prof = None
    if os.environ.get("VIBESYNC_BENCH_PROFILE"):
        import cProfile
        prof = cProfile.Profile()
    for k in range(frames):
        z = base + k * 0.01  # Unity's z is Blender's y
        host.cmd("together " + " ; ".join(f"move {u} 0 0 {z}" for u in uuids))
        a = time.perf_counter()
        bpy.context.view_layer.update()
        tick_ms.append((time.perf_counter() - a) * 1e3 + profiled_tick(prof))
        rest = t0 + (k + 1) * FRAME_S - time.monotonic()
        if rest > 0:
            time.sleep(rest)
    t_last = time.monotonic()
    if prof is not None:
        prof.dump_stats(os.environ["VIBESYNC_BENCH_PROFILE"] + ".other-way")
    final = base + (frames - 1) * 0.01
    deadline = t_last + 120
    while not all(abs(ob.location.y - final) <= 1e-5 for ob in objs):
        if time.monotonic() > deadline:
            behind = [ob for ob in objs if abs(ob.location.y - final) > 1e-5]
            held = host_positions(host)
            s = vibesync._session()
            raise AssertionError(
                f"Blender does not hold the last pose of {len(behind)} of {len(objs)} objects 120 s after "
                f"the host's drag: e.g. {behind[0].name} at {tuple(behind[0].location)}, the host holds "
                f"{held.get(behind[0]['vibesync_uuid'])}; Blender's not synced: "
                f"{dict(list(s.engine.not_synced.reasons.items())[:3])}; live dropped {dict(s.live_dropped)}; "
                f"errors {list(s.errors)[-3:]}; the host's stats {host.stats()}; the WAL's rollbacks "
                f"and conflicts {wal_trouble(d)[-5:]}")
        a = time.perf_counter()
        bpy.context.view_layer.update()
        vibesync.tick(8.0)
        tick_ms.append((time.perf_counter() - a) * 1e3)
        time.sleep(FRAME_S)
    t_held = time.monotonic()
    live = vibesync.status()["live_applied"] - live0
    print(f"the other way: the host drags the {len(objs)} objects x {frames} frames at 60 Hz "
          f"({(t_last - t0):.2f} s):")
    print(f"  Blender's main-thread time per frame (its evaluation and the addon's tick): "
          f"p50 {statistics.median(tick_ms):.2f} ms, p99 {pct(tick_ms, 0.99):.2f} ms, longest {max(tick_ms):.2f} ms")
    print(f"  Blender applied {live:,} live previews ({live / len(objs):.1f} per object); it held the last pose "
          f"of every object {(t_held - t_last) * 1e3:.0f} ms after the host's last frame; previews it dropped, "
          f"by reason: {dict(vibesync._session().live_dropped)}")


def main() -> int:
    n = int(os.environ.get("BENCH_DRAG_OBJECTS", "1000"))
    frames = int(os.environ.get("BENCH_DRAG_FRAMES", "120"))
    work = tempfile.mkdtemp(prefix="vibesync-drag-bench-")
    binary = os.path.join(work, "vibesync")
    shutil.copy2(daemon_binary(), binary)
    d = Daemon(binary, os.path.join(work, "data")).start()  # every default
    project = "drag" + uuid.uuid4().hex[:8]
    host = None
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        coll = bpy.data.collections.new("Collection")
        bpy.context.scene.collection.children.link(coll)
        me = bpy.data.meshes.new("Tri")
        me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
        objs = []
        for i in range(n):
            ob = bpy.data.objects.new(f"O{i}", me)
            ob.location = (0.0, i * 0.1, 0.0)
            coll.objects.link(ob)
            objs.append(ob)
        bpy.context.view_layer.update()
        vibesync.register()
        vibesync.connect("127.0.0.1", d.port, d.token, project)
        drive(lambda: vibesync.status()["connected"], 30, "connection")
        host = Host(d, project, work)
        host.wait("connected", timeout=30)
        drive(lambda: all(ob.get("vibesync_uuid") for ob in objs), 300, "every object registered")
        uuids = [ob["vibesync_uuid"] for ob in objs]
        deadline = time.monotonic() + 600
        while True:  # the first sync: the host holds every object, and the addon is done
            vibesync.tick(20.0)
            held = host_positions(host)
            if all(u in held for u in uuids) and vibesync._session().backlog() == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"first sync not done: host holds {len(held)} of {n}")

        session = vibesync._session()
        acked = [0]
        on_ack = session.engine.on_change_ack

        def counting(request_id, results, *a, **k):
            acked[0] += sum(1 for r in results if isinstance(r, dict) and r.get("status") in ("queued", "held"))
            return on_ack(request_id, results, *a, **k)

        session.engine.on_change_ack = counting
        live0 = host.stats()["live_applied"]

        tick_ms, eval_ms = [], []
        prof = None
        if os.environ.get("VIBESYNC_BENCH_PROFILE"):  # a cProfile of the drag's ticks, to that path
            import cProfile
            prof = cProfile.Profile()
        base = 1.0
        t0 = time.monotonic()
        for k in range(frames):
            x = base + k * 0.01
            for ob in objs:
                ob.location.x = x
            a = time.perf_counter()
            bpy.context.view_layer.update()
            eval_ms.append((time.perf_counter() - a) * 1e3)
            tick_ms.append(profiled_tick(prof))
            rest = t0 + (k + 1) * FRAME_S - time.monotonic()
            if rest > 0:
                time.sleep(rest)
        t_last = time.monotonic()
        if prof is not None:
            prof.dump_stats(os.environ["VIBESYNC_BENCH_PROFILE"])
        final = base + (frames - 1) * 0.01
        ticks_after = []
        check_at = 0.0
        deadline = t_last + 120
        while True:  # until the host holds the last pose of every object
            a = time.perf_counter()
            vibesync.tick(8.0)
            ticks_after.append((time.perf_counter() - a) * 1e3)
            now = time.monotonic()
            if now >= check_at:
                check_at = now + 0.1
                held = host_positions(host)
                if all(abs(held[u][0] - final) <= 1e-5 for u in uuids):
                    t_held = time.monotonic()
                    break
            if now > deadline:
                behind = sum(1 for u in uuids if abs(held[u][0] - final) > 1e-5)
                raise AssertionError(f"the host does not hold the last pose of {behind} of {n} objects "
                                     f"120 s after the drag")
            time.sleep(FRAME_S)
        drive(lambda: session.backlog() == 0, 120, "the addon's backlog worked off")
        t_acked = time.monotonic()
        live = host.stats()["live_applied"] - live0
        drag_s = t_last - t0
        p50, p99 = fdatasync_cost(d.data_dir)
        moves = n * frames
        print(f"drag of {n} objects x {frames} frames at 60 Hz (default settings; {moves:,} moves made, "
              f"{drag_s:.2f} s; fdatasync p50 {p50:.3f} ms, p99 {p99:.3f} ms):")
        print(f"  addon's main-thread time per frame: p50 {statistics.median(tick_ms):.2f} ms, "
              f"p99 {pct(tick_ms, 0.99):.2f} ms, longest {max(tick_ms):.2f} ms "
              f"(Blender's own evaluation: p50 {statistics.median(eval_ms):.2f} ms, longest {max(eval_ms):.2f} ms); "
              f"after the drag, longest tick {max(ticks_after):.2f} ms")
        print(f"  acknowledged by the daemon: {acked[0]:,} transforms = {acked[0] / (t_acked - t0):,.0f}/s "
              f"until the addon's backlog was worked off ({t_acked - t_last:.2f} s after the last frame)")
        print(f"  the host applied {live:,} live previews ({live / n:.1f} per object); it held the last pose "
              f"of every object {(t_held - t_last) * 1e3:.0f} ms after the last frame")
        the_other_way(d, host, objs, uuids, frames)
        # One person drags at a time: a conflict means an editor took what it received for
        # its person's edit (an echo), and sent it over the other person's moves.
        trouble = wal_trouble(d)
        rollbacks = [r.get("error_code") for r in trouble if r.get("phase") == "ROLLBACK"]
        conflicts = [r for r in trouble if r.get("phase") != "ROLLBACK"]
        print(f"  the WAL: {len(conflicts)} conflicts, {len(rollbacks)} rollbacks {sorted(set(rollbacks))}")
        if conflicts:
            raise AssertionError(f"conflicts with one person dragging at a time: {conflicts[:3]}")
        return 0
    finally:
        if host is not None:
            host.close()
        vibesync.disconnect()
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    leave(main())
