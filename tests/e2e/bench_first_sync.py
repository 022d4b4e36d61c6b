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
  `VIBESYNC_BENCH_PROFILE=path` writes a cProfile of the ticks to `path.N`,
  `VIBESYNC_BENCH_PROFILE_SLOW=path` one of the ticks over 16 ms of CPU only.

The receiving direction (`scripts/bench-first-sync --receive [N ...]`): the host loads a
scene file of N objects (10 roots, each the parent of N/10 objects, at spread transforms),
connects first and waits until the daemon has committed all of it; Blender then connects
with its factory startup scene (Cube, Camera, Light in
"Collection") and is measured the same way until it holds all N objects (its registry binds
every one of the host's uuids) — the daemon's replay of a big project to a joining editor.
`--meshes M [--grid S]`: M of the N objects carry an S x S vertex grid mesh; `--reconnect`:
then Blender reconnects with a replay position of 0 (an unsaved file) and receives the whole
project again into the scene that holds it; `--blender-costs`: Blender's own cost of N
objects joining a scene at once and in slices (bpy only). Blender's own dependency-graph
evaluation between two ticks is timed apart from the addon's ticks.

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
from bpy_exit import leave  # noqa: E402


AFTER_S = 5.0  # ticks are measured this long after the host holds everything


def fdatasync_cost(directory: str, n: int = 200) -> tuple[float, float]:
    """p50 and p99 (ms) of a 300-byte append + fdatasync in `directory` (the method of
    `vibesync_wal::probe::fdatasync_cost`): the machine's durability cost in this run."""
    path = os.path.join(directory, f".fdatasync-probe-{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 300)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    return lat[len(lat) // 2], lat[int(0.99 * (len(lat) - 1))]


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


def host_scene(n: int, path: str, meshes: int = 0, grid: int = 50) -> list[str]:
    """A host scene file of 10 roots with N objects under them, the first `meshes` of them
    with a `grid` x `grid` vertex mesh each (the host generates it); returns every uuid."""
    rng = random.Random(7)
    objs = []
    roots = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10)]
    for r, u in enumerate(roots):
        objs.append({"uuid": u, "name": f"Set{r}", "parent": None, "visible": True,
                     "transform": {"position": [0, 0, 0], "rotation": [0, 0, 0, 1],
                                   "scale": [1, 1, 1]}})
    for i in range(n):
        objs.append({"uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "name": f"Obj{i:05d}", "parent": roots[i % 10], "visible": True,
                     "transform": {"position": [rng.uniform(-50, 50), rng.uniform(0, 10),
                                                rng.uniform(-50, 50)],
                                   "rotation": [0, 0, 0, 1], "scale": [1, 1, 1]}})
        if i < meshes:
            objs[-1]["mesh"] = {"grid": grid}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"objects": objs}, f)
    return [o["uuid"] for o in objs]


def host_count(host: Host) -> int:
    i = host.cmd(f"dump {host.dump_path}")
    deadline = time.monotonic() + 60
    while not host.find("dumped", i):
        if time.monotonic() > deadline:
            raise AssertionError("host dump timed out")
        time.sleep(0.01)
    with open(host.dump_path, encoding="utf-8") as f:
        return len(json.load(f)["objects"])


class Ticks:
    """Drives `vibesync.tick()` the way Blender's event loop does -- its own depsgraph
    evaluation (`view_layer.update`), then the addon's timer -- and times both on the main
    thread (wall and CPU), apart; every full (generation-2) garbage collection too."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.blender_eval: list[float] = []
        self.full_gc: list[tuple[float, float]] = []
        self._gc_t: list[float] = []
        self.prof = None
        if os.environ.get("VIBESYNC_BENCH_PROFILE"):
            import cProfile
            self.prof = cProfile.Profile()
        # VIBESYNC_BENCH_PROFILE_SLOW=path: a cProfile of only the ticks over 16 ms of CPU.
        self.slow_prof = None
        self.slow_path = os.environ.get("VIBESYNC_BENCH_PROFILE_SLOW")

    def _on_gc(self, phase, info) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_t[:] = [time.perf_counter(), time.thread_time()]
        elif self._gc_t:
            self.full_gc.append(((time.perf_counter() - self._gc_t[0]) * 1000,
                                 (time.thread_time() - self._gc_t[1]) * 1000))

    def __enter__(self):
        gc.callbacks.append(self._on_gc)
        # Each pump step's CPU time within the tick, kept for the ticks over 16 ms.
        from vibesync import pump
        self._clock, self._laps = pump._StepClock, []
        lap = self._clock.lap
        laps = self._laps

        def timed(clock, name):
            c = clock.c
            lap(clock, name)
            laps.append((name, round((clock.c - c) * 1000, 1)))
        self._clock.lap, self._orig_lap = timed, lap
        self.slow: list[tuple[float, list]] = []
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._on_gc)
        self._clock.lap = self._orig_lap

    def one(self) -> None:
        c = time.thread_time()
        bpy.context.view_layer.update()
        self.blender_eval.append((time.thread_time() - c) * 1000)
        a, c = time.perf_counter(), time.thread_time()
        prof = self.prof
        if self.slow_path:
            import cProfile
            prof = cProfile.Profile()
        if prof is not None:
            prof.enable()
        vibesync.tick(8.0)
        if prof is not None:
            prof.disable()
        self.wall.append((time.perf_counter() - a) * 1000)
        self.cpu.append((time.thread_time() - c) * 1000)
        if self.cpu[-1] > 16.0:
            self.slow.append((round(self.cpu[-1], 1), [x for x in self._laps if x[1] >= 1.0]))
            if self.slow_path:
                import pstats
                if self.slow_prof is None:
                    self.slow_prof = pstats.Stats(prof)
                else:
                    self.slow_prof.add(prof)
        self._laps.clear()
        time.sleep(0.001)

    def figures(self) -> dict:
        wall, cpu = sorted(self.wall), sorted(self.cpu)
        return {"ticks": len(wall), "worst_ms": wall[-1], "p99_ms": wall[int(0.99 * (len(wall) - 1))],
                "over_16ms": sum(1 for t in wall if t > 16.0), "cpu_worst_ms": cpu[-1],
                "cpu_p99_ms": cpu[int(0.99 * (len(cpu) - 1))],
                "cpu_over_16ms": sum(1 for t in cpu if t > 16.0),
                "blender_eval_worst_ms": max(self.blender_eval),
                "blender_eval_over_16ms": sum(1 for t in self.blender_eval if t > 16.0),
                "blender_eval_total_ms": sum(self.blender_eval), "full_gc": self.full_gc,
                "slow": self.slow}


def trace_line(t0: float, n_ticks: int) -> str:
    s = vibesync._session()
    return (f"  t={time.monotonic() - t0:6.1f}s {s.progress()} in flight {len(s.engine.inflight)}, "
            f"out_ops {len(s.out_ops)}, dirty {len(s.dirty)}, mesh jobs {len(s.mesh_jobs)}, "
            f"pending {len(s.engine.pending)}, inbox {s.transport.inbox.qsize()}, "
            f"to_register {len(s.to_register)}, registered {len(s.registered)}, "
            f"ticks {n_ticks}, waiting for parents {sum(map(len, s.parent_waiters.values()))}, "
            f"apply job {s.apply_job is not None}, batches {len(s.batches)}")


def measure(n: int, t0: float, done, limit_s: float) -> tuple[dict, float]:
    """Tick until `done()` (checked every 0.5 s) is true, then AFTER_S more; returns the
    figures and when `done` became true (seconds after t0)."""
    trace = os.environ.get("VIBESYNC_BENCH_TRACE")
    next_check = 0.0
    next_trace = t0 + 5.0
    done_at = end_at = None
    limit = t0 + limit_s
    with Ticks() as ticks:
        while end_at is None or time.monotonic() < end_at:
            ticks.one()
            now = time.monotonic()
            if done_at is None and now >= next_check:
                next_check = now + 0.5
                if done():
                    done_at = time.monotonic()
                    end_at = done_at + AFTER_S  # keep ticking: what comes after counts too
            if trace and now >= next_trace:
                next_trace = now + 5.0
                print(trace_line(t0, len(ticks.wall)), flush=True)
            if now > limit:
                s = vibesync._session()
                raise AssertionError(
                    f"N={n}: not done within {limit_s:.0f}s: {trace_line(t0, len(ticks.wall))}; "
                    f"gated {len(s.gated_keys)}, not synced {len(s.engine.not_synced)}, "
                    f"errors {list(s.errors)[-3:]}")
    if ticks.prof is not None:
        ticks.prof.dump_stats(f"{os.environ['VIBESYNC_BENCH_PROFILE']}.{n}")
    if ticks.slow_prof is not None:
        ticks.slow_prof.dump_stats(f"{ticks.slow_path}.{n}.{int(t0)}")
    return ticks.figures(), done_at - t0


def gc_now() -> dict:
    """What one full collection costs now (the one CPython runs after the sync, when its
    own rule says so, costs this much wherever it lands)."""
    c0, w0 = time.thread_time(), time.perf_counter()
    gc.collect()
    return {"full_gc_now": ((time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000),
            "tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count()}


def run(n: int, binary: str, work: str, receive: bool = False, meshes: int = 0,
        grid: int = 50, reconnect: bool = False) -> list[dict]:
    """One benchmark run; returns its phases' figures (the first sync, then with
    `reconnect` the replay into the scene Blender now holds)."""
    data = os.path.join(work, f"data{n}")
    cfg = os.path.join(work, "c.toml")
    with open(cfg, "w") as f:
        # A generous verify timeout by default: on a loaded 2-core machine the host (Mono)
        # may take longer than the default 5 s to apply a big batch; a timeout there is about
        # the host's speed, not Blender's main thread (what this benchmark measures).
        # `BENCH_VERIFY_MS=5000`: the daemon's default, with batches bounded (§6.2).
        verify_ms = int(os.environ.get("BENCH_VERIFY_MS", "60000"))
        f.write(f"[sync]\nbatch_window_ms = 100\nverify_timeout_ms = {verify_ms}\n")
    d = Daemon(binary, data, ["--config", cfg]).start()
    project = "bench" + uuid.uuid4().hex[:8]
    phases = []
    try:
        vibesync.unregister()
        bpy.ops.wm.read_factory_settings(use_empty=not receive)
        vibesync.register()
        if receive:
            scene = os.path.join(work, f"host-scene-{n}.json")
            wanted = host_scene(n, scene, meshes, grid)
            total = len(wanted)
            host = Host(d, project, work, ["--scene", scene])
        else:
            total = build(n)
            host = Host(d, project, work)
        deadline = time.monotonic() + 60
        while not host.find("connected"):
            if time.monotonic() > deadline:
                raise AssertionError("host did not connect")
            time.sleep(0.01)
        if receive:
            # The host's scene is committed in the daemon first: Blender joins a project
            # that holds N objects (the replay of a big project, not a race with its sync).
            i = host.cmd("wait-idle 1200")
            deadline = time.monotonic() + 1200
            while not host.find("idle", i):
                if time.monotonic() > deadline:
                    raise AssertionError("the host's scene was not committed")
                time.sleep(0.05)
        limit_s = max(600.0, n * 0.1)
        fsync_before = fdatasync_cost(work)
        t0 = time.monotonic()
        vibesync.connect("127.0.0.1", d.port, d.token, project)
        if receive:
            def done() -> bool:  # held by Blender: its registry binds every host uuid
                bindings = vibesync._session().registry.bindings
                return all(u in bindings for u in wanted)
        else:
            acked = []

            def done() -> bool:  # acknowledged by the daemon, then held by the host
                p = vibesync._session().progress()  # recounted every 0.25 s
                if not acked and p["total"] >= total and p["synced"] >= total:
                    acked.append(time.monotonic() - t0)
                return bool(acked) and host_count(host) >= total
        fig, held_s = measure(n, t0, done, limit_s)
        fig.update({"phase": "first sync", "held_s": held_s,
                    "acked_s": held_s if receive else acked[0]})
        phases.append(fig)
        if reconnect:
            # Blender reconnects with the objects it holds and a replay position of 0 (an
            # unsaved file): the daemon replays the whole project into a scene that
            # already holds every object (each `create` updates its object in place).
            before = len(bpy.data.objects)
            s0 = vibesync._session()
            vibesync.disconnect()
            del s0
            t0 = time.monotonic()
            vibesync.connect("127.0.0.1", d.port, d.token, project)

            def replayed() -> bool:
                s = vibesync._session()
                return s.applied_batches >= 1 and s.apply_job is None and s.backlog() == 0
            fig, held_s = measure(n, t0, replayed, limit_s)
            if len(bpy.data.objects) != before:
                raise AssertionError(f"the replay changed the number of objects: {before} -> "
                                     f"{len(bpy.data.objects)}")
            fig.update({"phase": "replay into the scene it holds", "held_s": held_s,
                        "acked_s": held_s})
            phases.append(fig)
        after = gc_now()
        st = vibesync.status()
        for fig in phases:
            fig.update(after)
        phases[-1].update({"steps": st["step_ms"], "cpu_steps": st["step_cpu_ms"]})
        host.close()
        vibesync.disconnect()
    finally:
        d.stop()
    load = os.getloadavg()[0]
    fsync_after = fdatasync_cost(work)
    for fig in phases:
        fig.update({"n": n, "load": load, "fsync": (fsync_before, fsync_after)})
    return phases


def report(r: dict, receive: bool, meshes: int, grid: int) -> str:
    if receive:
        what = (f"{r['phase']} of {r['n']} objects (+10 roots"
                f"{f', {meshes} with {grid * grid}-vertex meshes' if meshes else ''}) RECEIVED "
                f"by Blender (factory startup scene)")
    else:
        what = f"first sync of {r['n']} objects (+10 collections)"
    steps = (f"worst per step (wall ms): {r['steps']}; (main-thread CPU ms): {r['cpu_steps']}; "
             if "steps" in r else "")
    return (f"{what}: main-thread tick CPU time worst {r['cpu_worst_ms']:.1f} ms, p99 "
            f"{r['cpu_p99_ms']:.1f} ms, {r['cpu_over_16ms']} of {r['ticks']} ticks over 16 ms; "
            f"wall time worst {r['worst_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"{r['over_16ms']} over 16 ms; load average {r['load']:.1f}; Blender's own "
            f"depsgraph evaluation between ticks (not the addon's): worst "
            f"{r['blender_eval_worst_ms']:.1f} ms CPU, {r['blender_eval_over_16ms']} over 16 ms, "
            f"{r['blender_eval_total_ms'] / 1000:.1f} s in all; fdatasync (300-byte append, "
            f"n=200) p50/p99 {r['fsync'][0][0]:.2f}/{r['fsync'][0][1]:.2f} ms before, "
            f"{r['fsync'][1][0]:.2f}/{r['fsync'][1][1]:.2f} ms after; all acknowledged by the "
            f"daemon after {r['acked_s']:.1f} s, all held by "
            f"{'Blender' if receive else 'the Unity host'} after {r['held_s']:.1f} s; "
            f"ticks over 16 ms (CPU ms, steps of 1 ms or more): {r['slow'][:10]}; {steps}"
            f"full garbage collections during it and {AFTER_S:.0f} s after: "
            f"{len(r['full_gc'])} (wall/CPU ms: "
            f"{[(round(a, 1), round(b, 1)) for a, b in r['full_gc']]}); one full collection at "
            f"the end: {r['full_gc_now'][0]:.1f} ms wall, {r['full_gc_now'][1]:.1f} ms CPU over "
            f"{r['tracked']:,} tracked objects ({r['frozen']:,} frozen)")


def blender_costs(n: int, parts: int = 10) -> str:
    """Blender's own costs when N new objects (10 roots, N parented to them) join a scene,
    main-thread CPU, no addon: why `apply.link_unplaced` links them in one step.
    (a) linked and parented at once, then one `view_layer.update` (Blender's event loop
    after the tick); (b) the same in `parts` slices with an update after each (as if each
    slice were a tick of its own); (c) one undo push in that scene; (d) one more object
    linked, then an update (any structural edit in a scene of that size); (e) the addon
    receiving them as one batch (`receive_costs`)."""
    def t():
        return time.thread_time() * 1000.0

    def fresh():
        bpy.ops.wm.read_factory_settings(use_empty=False)
        obs = [bpy.data.objects.new(f"Obj{i:05d}", None) for i in range(n + 10)]
        for i, ob in enumerate(obs):
            ob.location = (i * 0.01, 1.0, 2.0)
        return obs[:10], obs[10:]

    def place(roots, kids, link, with_roots=True):
        if with_roots:
            for ob in roots:
                link(ob)
        for i, ob in enumerate(kids):
            link(ob)
            ob.parent = roots[i % 10]

    vibesync.unregister()
    roots, kids = fresh()
    link = bpy.context.scene.collection.objects.link
    c = t()
    place(roots, kids, link)
    once_link = t() - c
    c = t()
    bpy.context.view_layer.update()
    once_eval = t() - c
    c = t()
    bpy.ops.ed.undo_push(message="bench")
    undo = t() - c
    extra = bpy.data.objects.new("Extra", None)
    c = t()
    link(extra)
    bpy.context.view_layer.update()
    one_more = t() - c
    roots, kids = fresh()
    link = bpy.context.scene.collection.objects.link
    sliced_link = sliced_eval = 0.0
    evals = []
    step = (n + parts - 1) // parts
    for k in range(parts):
        c = t()
        place(roots, kids[k * step:(k + 1) * step], link, k == 0)
        sliced_link += t() - c
        c = t()
        bpy.context.view_layer.update()
        evals.append(t() - c)
    sliced_eval = sum(evals)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    vibesync.register()
    return (f"Blender's own costs, {n} objects (+10 roots) joining the factory startup scene "
            f"(main-thread CPU, load {os.getloadavg()[0]:.1f}): (a) at once: link and parent "
            f"{once_link:.1f} ms, then Blender's dependency-graph update {once_eval:.1f} ms; "
            f"(b) in {parts} slices with an update after each: link and parent "
            f"{sliced_link:.1f} ms, updates {sliced_eval:.1f} ms in all (each: "
            f"{', '.join(f'{e:.0f}' for e in evals)} ms); (c) one undo push in that scene "
            f"{undo:.1f} ms; (d) one more object linked, then an update: {one_more:.1f} ms; "
            f"{receive_costs(n)}; {receive_costs(n, held=n)}")


def receive_costs(n: int, held: int = 0) -> str:
    """(e) The addon receives N new objects (10 roots, N parented to them) as one `resync`
    batch into the factory startup scene, no daemon: the batch is handed to a session that
    is not connected, and the loop does what Blender's event loop does between two timer
    ticks (`view_layer.update`, timed apart) and the addon's tick (8 ms budget, main-thread
    CPU). Reports the worst tick and what it ran, the ticks over 16 ms, the link step
    (`apply.link_unplaced`, when the addon has one) and the time until every object is held
    (the batch applied and answered, its undo step pushed). (f) `held`: the same into a
    scene that already holds that many objects (bound and captured before the batch)."""
    from vibesync import apply as apply_mod
    from vibesync import budget, pump

    def t():
        return time.thread_time() * 1000.0

    bpy.ops.wm.read_factory_settings(use_empty=False)
    bpy.context.preferences.edit.undo_steps = 32
    for i in range(held):
        bpy.context.scene.collection.objects.link(bpy.data.objects.new(f"Held{i:05d}", None))
    bpy.context.view_layer.update()
    s = pump.Session("127.0.0.1", 1, "0" * 64, None, "bench", str(uuid.uuid4()))
    vibesync._state["session"] = s
    while s.scan_job is not None or s.scan_reason is not None or s.dirty:
        s.tick(budget.TICK_BUDGET_MS)
    links: list[float] = []
    undos: list[float] = []
    link = getattr(apply_mod, "link_unplaced", None)
    undo = apply_mod.push_undo_step

    def timed(fn, into):
        def run(*a, **k):
            c = t()
            try:
                return fn(*a, **k)
            finally:
                into.append((t() - c, len(ticks)))
        return run
    if link is not None:
        apply_mod.link_unplaced = timed(link, links)
    apply_mod.push_undo_step = timed(undo, undos)
    roots = [str(uuid.uuid4()) for _ in range(10)]
    kids = [str(uuid.uuid4()) for _ in range(n)]
    batch = apply_mod.Batch("bench-receive", 1, "resync", n + 10)
    pose = {"r": [0, 0, 0, 1], "s": [1, 1, 1], "visible": True}
    batch.changes = [({"op": "create", "uuid": u, "kind": "object", "name": f"Root{i}",
                       "parent": None, "t": [i, 0, 0], **pose}, b"") for i, u in enumerate(roots)]
    batch.changes += [({"op": "create", "uuid": u, "kind": "object", "name": f"Kid{i:05d}",
                        "parent": roots[i % 10], "t": [0, i * 0.01, 0], **pose}, b"")
                      for i, u in enumerate(kids)]
    gc.collect()
    start = time.perf_counter()
    s.batches.append(batch)
    ticks: list[tuple[float, dict]] = []
    evals: list[float] = []
    try:
        while s.batches or s.apply_job is not None:
            s.step_cpu_ms.clear()
            c = t()
            s.tick(budget.TICK_BUDGET_MS)
            ticks.append((t() - c, dict(s.step_cpu_ms)))
            c = t()
            bpy.context.view_layer.update()  # Blender's event loop after the tick
            evals.append(t() - c)
        held_s = time.perf_counter() - start
        got = sum(1 for u in roots + kids if s.registry.resolve(u) is not None)
    finally:
        if link is not None:
            apply_mod.link_unplaced = link
        apply_mod.push_undo_step = undo
        vibesync._state["session"] = None
    worst, worst_steps = max(ticks, key=lambda x: x[0])
    worst_at = next(i for i, x in enumerate(ticks) if x[0] == worst)
    what = {i: f"link {ms:.1f}" for ms, i in links}
    what.update({i: f"undo push {ms:.1f}" for ms, i in undos})
    # Each tick over 16 ms with its pump steps of 1 ms or more (and a link or undo push in it).
    over = [(round(ms, 1), what.get(i, ""), {k: round(v, 1) for k, v in st.items() if v >= 1.0})
            for i, (ms, st) in enumerate(ticks) if ms > 16.0]
    return (f"{'(f)' if held else '(e)'} the addon receives {n} new objects (+10 roots) as one "
            f"batch into a scene of {len(bpy.context.scene.objects) - n - 10} objects (load "
            f"{os.getloadavg()[0]:.1f}): {len(ticks)} ticks, worst {worst:.1f} ms CPU "
            f"(tick {worst_at}: {what.get(worst_at, '')}; steps: "
            f"{', '.join(f'{k} {v:.1f}' for k, v in worst_steps.items() if v >= 1.0)}), "
            f"ticks over 16 ms: {len(over)} {over}; link step "
            f"{', '.join(f'{x:.1f} (tick {i})' for x, i in links) or 'none (with the parenting)'}"
            f" ms; undo push {', '.join(f'{x:.1f} (tick {i})' for x, i in undos)} ms; "
            f"Blender's own evaluation between ticks: worst {max(evals):.1f} ms, "
            f"{sum(1 for e in evals if e > 16.0)} over 16 ms, {sum(evals) / 1000:.2f} s in all; "
            f"all {got} held after {held_s:.2f} s")


def main() -> int:
    import argparse
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[500, 10000])
    ap.add_argument("--receive", action="store_true",
                    help="the host holds the N objects; Blender receives them")
    ap.add_argument("--meshes", type=int, default=0,
                    help="with --receive: this many of the N objects carry a mesh")
    ap.add_argument("--grid", type=int, default=50,
                    help="with --meshes: each mesh is a GRID x GRID vertex grid (default 50)")
    ap.add_argument("--blender-costs", action="store_true",
                    help="measure Blender's own cost of N objects joining a scene at once and "
                         "in slices (no daemon, no addon)")
    ap.add_argument("--reconnect", action="store_true",
                    help="with --receive: then reconnect Blender with a replay position of 0 "
                         "and measure the replay of the whole project into the scene it holds")
    args = ap.parse_args()
    if args.blender_costs:
        for n in args.sizes:
            print(blender_costs(n), flush=True)
        return 0
    work = tempfile.mkdtemp(prefix="vibesync-first-sync-")
    binary = os.path.join(work, "vibesync")
    shutil.copy2(daemon_binary(), binary)
    try:
        for n in args.sizes:
            for r in run(n, binary, work, args.receive, args.meshes, args.grid, args.reconnect):
                print(report(r, args.receive, args.meshes, args.grid), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    code = main()
    leave(code)  # bpy may hang in a static destructor at exit (tests/blender/bpy_exit.py)
