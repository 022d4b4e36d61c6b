"""First sync of a big Blender scene (issue "big scenes do not freeze Blender"), run by
`scripts/bench-first-sync [N ...]` (default 500 and 10000 objects):

* the scene is built before connecting: N objects in 10 collections, each object with its
  own mesh (for N <= 1000: 100 to 5,000 vertices, like a real set; above: cubes);
* the headless Unity host is connected first; then Blender connects;
* measured: every `vibesync.tick()` on Blender's main thread (worst, p99, count), and the
  time from `connect()` until (a) the daemon has acknowledged every object and collection
  (Blender's `progress`: committed `batch_result`s, recounted every 0.25 s) and (b) the
  host holds all of them (its scene dump) — what the receiver holds, not what was sent;
  ticks go on AFTER_S seconds after (b), and every full (generation-2) garbage collection
  on the main thread, wherever it lands, is timed from (a connect) to the end;
* `VIBESYNC_BENCH_TRACE=1` prints the pump's queues every 5 s (where the time goes);
  `VIBESYNC_BENCH_PROFILE=path` writes a cProfile of the ticks to `path.N`.

Prints one line per N; docs/BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Host, bpy, daemon_binary, vibesync  # noqa: E402


AFTER_S = 5.0  # ticks are measured this long after the host holds everything


def build(n: int) -> int:
    """N objects with their own meshes in 10 collections; returns objects + collections."""
    rng = random.Random(7)
    colls = []
    for c in range(10):
        coll = bpy.data.collections.new(f"Set{c}")
        bpy.context.scene.collection.children.link(coll)
        colls.append(coll)
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    base = cube.data
    bpy.data.objects.remove(cube)
    grids = {}
    for i in range(n):
        if n <= 1000:
            side = rng.randint(10, 70)  # 100 .. 4,900 vertices
            if side not in grids:
                bpy.ops.mesh.primitive_grid_add(x_subdivisions=side - 1, y_subdivisions=side - 1)
                g = bpy.context.active_object
                grids[side] = g.data
                bpy.data.objects.remove(g)
            me = grids[side].copy()
        else:
            me = base.copy()
        ob = bpy.data.objects.new(f"Obj{i:05d}", me)
        colls[i % 10].objects.link(ob)
        ob.location = (rng.uniform(-50, 50), rng.uniform(-50, 50), rng.uniform(0, 10))
        ob.rotation_euler = (rng.uniform(0, 3), rng.uniform(0, 3), rng.uniform(0, 3))
    bpy.context.view_layer.update()
    return n + 10


def host_count(host: Host) -> int:
    i = host.cmd(f"dump {host.dump_path}")
    deadline = time.monotonic() + 60
    while not host.find("dumped", i):
        if time.monotonic() > deadline:
            raise AssertionError("host dump timed out")
        time.sleep(0.01)
    with open(host.dump_path, encoding="utf-8") as f:
        return len(json.load(f)["objects"])


def run(n: int, binary: str, work: str) -> dict:
    data = os.path.join(work, f"data{n}")
    cfg = os.path.join(work, "c.toml")
    with open(cfg, "w") as f:
        # A generous verify timeout: on a loaded 2-core machine the host (Mono) may take
        # longer than the default 5 s to apply a big batch; a timeout there is about the
        # host's speed, not Blender's main thread (what this benchmark measures).
        f.write("[sync]\nbatch_window_ms = 100\nverify_timeout_ms = 60000\n")
    d = Daemon(binary, data, ["--config", cfg]).start()
    project = "bench" + uuid.uuid4().hex[:8]
    ticks: list[float] = []
    cpu: list[float] = []
    try:
        vibesync.unregister()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        vibesync.register()
        total = build(n)
        host = Host(d, project, work)
        deadline = time.monotonic() + 60
        while not host.find("connected"):
            if time.monotonic() > deadline:
                raise AssertionError("host did not connect")
            time.sleep(0.01)
        t0 = time.monotonic()
        vibesync.connect("127.0.0.1", d.port, d.token, project)
        acked_at = held_at = None
        # Every full (generation 2) collection CPython runs on this thread, wherever it
        # lands (a tick or not), during the sync and AFTER_S after it.
        full_gc: list[tuple[float, float]] = []
        gc_t: list[float] = []

        def on_gc(phase, info):
            if info.get("generation") != 2:
                return
            if phase == "start":
                gc_t[:] = [time.perf_counter(), time.thread_time()]
            elif gc_t:
                full_gc.append(((time.perf_counter() - gc_t[0]) * 1000,
                                (time.thread_time() - gc_t[1]) * 1000))
        gc.callbacks.append(on_gc)
        next_check = 0.0
        next_trace = t0 + 5.0
        trace = os.environ.get("VIBESYNC_BENCH_TRACE")
        prof_path = os.environ.get("VIBESYNC_BENCH_PROFILE")
        prof = None
        if prof_path:
            import cProfile
            prof = cProfile.Profile()
        limit = t0 + max(600.0, n * 0.1)
        end_at = None
        while end_at is None or time.monotonic() < end_at:
            bpy.context.view_layer.update()
            a, c = time.perf_counter(), time.thread_time()
            if prof is not None:
                prof.enable()
            vibesync.tick(8.0)
            if prof is not None:
                prof.disable()
            ticks.append((time.perf_counter() - a) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
            now = time.monotonic()
            p = vibesync._session().progress()  # recounted every 0.25 s (status() would
            # also list and count every binding, each loop: not what the sync costs)
            if acked_at is None and p["total"] >= total and p["synced"] >= total:
                acked_at = now
            if acked_at is not None and now >= next_check:
                next_check = now + 0.5
                if held_at is None and host_count(host) >= total:
                    held_at = time.monotonic()
                    end_at = held_at + AFTER_S  # keep ticking: what comes after counts too
            if trace and now >= next_trace:
                next_trace = now + 5.0
                s = vibesync._session()
                print(f"  t={now - t0:6.1f}s {p} in flight {len(s.inflight)}, out_ops "
                      f"{len(s.out_ops)}, dirty {len(s.dirty)}, mesh jobs {len(s.mesh_jobs)}, "
                      f"pending {len(s.pending)}, inbox {s.transport.inbox.qsize()}, "
                      f"to_register {len(s.to_register)}, registered {len(s.registered)}, "
                      f"ticks {len(ticks)}, waiting for parents "
                      f"{sum(map(len, s.parent_waiters.values()))}", flush=True)
            if now > limit:
                s = vibesync._session()
                raise AssertionError(
                    f"N={n}: not synced within {limit - t0:.0f}s: {p}; in flight "
                    f"{len(s.inflight)}, dirty {len(s.dirty)}, mesh jobs {len(s.mesh_jobs)}, "
                    f"waiting for parents {sum(map(len, s.parent_waiters.values()))}, "
                    f"gated {len(s.gated_keys)}, not synced {len(s.not_synced)}, "
                    f"errors {list(s.errors)[-3:]}")
            time.sleep(0.001)
        if prof is not None:
            prof.dump_stats(f"{prof_path}.{n}")
        gc.callbacks.remove(on_gc)
        # What one full collection costs now (the one CPython runs after the sync, when
        # its own rule says so, costs this much wherever it lands).
        c0, w0 = time.thread_time(), time.perf_counter()
        gc.collect()
        full_now = ((time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000)
        tracked = len(gc.get_objects())
        frozen = gc.get_freeze_count()
        steps = vibesync.status()["step_ms"]
        cpu_steps = vibesync.status()["step_cpu_ms"]
        host.close()
        vibesync.disconnect()
    finally:
        d.stop()
    ticks.sort()
    cpu.sort()
    return {"n": n, "ticks": len(ticks), "worst_ms": ticks[-1],
            "cpu_worst_ms": cpu[-1], "cpu_p99_ms": cpu[int(0.99 * (len(cpu) - 1))],
            "cpu_over_16ms": sum(1 for t in cpu if t > 16.0),
            "p99_ms": ticks[int(0.99 * (len(ticks) - 1))],
            "over_16ms": sum(1 for t in ticks if t > 16.0),
            "acked_s": acked_at - t0, "held_s": held_at - t0, "steps": steps,
            "full_gc": full_gc, "full_gc_now": full_now, "tracked": tracked, "frozen": frozen,
            "cpu_steps": cpu_steps}


def main() -> int:
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    sizes = [int(a) for a in sys.argv[1:]] or [500, 10000]
    work = tempfile.mkdtemp(prefix="vibesync-first-sync-")
    binary = os.path.join(work, "vibesync")
    shutil.copy2(daemon_binary(), binary)
    try:
        for n in sizes:
            r = run(n, binary, work)
            print(f"first sync of {r['n']} objects (+10 collections): main-thread tick CPU time "
                  f"worst {r['cpu_worst_ms']:.1f} ms, p99 {r['cpu_p99_ms']:.1f} ms, "
                  f"{r['cpu_over_16ms']} of {r['ticks']} ticks over 16 ms; wall time worst "
                  f"{r['worst_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['over_16ms']} over 16 ms; "
                  f"load average {os.getloadavg()[0]:.1f}; all acknowledged by the daemon after "
                  f"{r['acked_s']:.1f} s, all held by the Unity host after {r['held_s']:.1f} s; "
                  f"worst per step (wall ms): {r['steps']}; (main-thread CPU ms): {r['cpu_steps']}; "
                  f"full garbage collections during the sync and {AFTER_S:.0f} s after: "
                  f"{len(r['full_gc'])} (wall/CPU ms: "
                  f"{[(round(a, 1), round(b, 1)) for a, b in r['full_gc']]}); one full "
                  f"collection at the end: {r['full_gc_now'][0]:.1f} ms wall, "
                  f"{r['full_gc_now'][1]:.1f} ms CPU over {r['tracked']:,} tracked objects "
                  f"({r['frozen']:,} frozen)",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # bpy may hang in a static destructor at exit (see tests/e2e/conftest.py)
