"""End-to-end benchmarks of live sync (docs/BENCHMARKS.md "Live sync"), run by `scripts/bench-e2e`:

1. latency of one Blender change until the headless Unity host has applied it (its
   `applied` event), batch window 0, p50/p99 over N moves;
2. the same at DEFAULT settings (300 ms window, 16 ms live interval): until the host applied
   the `live` preview (its `live` event, docs/PROTOCOL.md §6.3), and until it applied the
   window's verified batch (each move waits for that batch before the next);
3. a 100k-vertex mesh from Blender to the host: time from the change until the host has
   applied it, and bytes on the wire (the VSM1 attachment).

Prints the figures; docs/BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Host, bpy, daemon_binary, drive, drive_for, vibesync  # noqa: E402
from bpy_exit import leave  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def main() -> int:
    n = int(os.environ.get("BENCH_N", "100"))
    work = tempfile.mkdtemp(prefix="vibesync-e2e-bench-")
    cfg = os.path.join(work, "c.toml")
    with open(cfg, "w") as f:
        f.write("[sync]\nbatch_window_ms = 0\n")
    binary = os.path.join(work, "vibesync")
    shutil.copy2(daemon_binary(), binary)
    d = Daemon(binary, os.path.join(work, "data"), ["--config", cfg]).start()
    project = "bench" + uuid.uuid4().hex[:8]
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        vibesync.register()
        vibesync.connect("127.0.0.1", d.port, d.token, project)
        drive(lambda: vibesync.status()["connected"])
        host = Host(d, project, work)
        host.wait("connected", timeout=30)

        bpy.ops.mesh.primitive_cube_add()
        ob = bpy.context.active_object
        u = drive(lambda: ob.get("vibesync_uuid"))
        host.wait_obj(u)
        drive_for(0.5)

        lat = []
        for i in range(n):
            since = len(host.events)
            t0 = time.monotonic()
            ob.location = ((i + 1) * 0.01, 0.0, 0.0)
            ev = drive(lambda since=since: host.find("applied", since, lambda e: u in (e.get("hashes") or {})),
                       10, "host applied")
            lat.append((ev["_t"] - t0) * 1000)
            drive_for(0.01)
        print(f"Blender change -> host applied (window 0, n={n}): p50 {statistics.median(lat):.1f} ms  "
              f"p99 {pct(lat, 0.99):.1f} ms")

        # 100k vertices: a 316 x 316 grid (99,856 vertices, 198,450 triangles).
        since = len(host.events)
        t0 = time.monotonic()
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=315, y_subdivisions=315, size=10)
        grid = bpy.context.active_object
        g = drive(lambda: grid.get("vibesync_uuid"), 60)
        t_captured = time.monotonic()
        host.wait("applied", since, lambda e: g in (e.get("hashes") or {}), timeout=120)
        t_applied = time.monotonic()
        o = host.obj(g)
        blobs = os.path.join(d.data_dir, "blobs")
        sizes = [os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs)]
        print(f"100k-vertex mesh ({o['mesh']['vertex_count']} vertices, {o['mesh']['triangle_count']} triangles): "
              f"{(t_applied - t0) * 1000:.0f} ms from creation to applied on the host "
              f"({(t_captured - t0) * 1000:.0f} ms until Blender had registered it); "
              f"attachment {max(sizes):,} bytes on the wire")
        host.close()
        vibesync.disconnect()
    finally:
        d.stop()
    try:
        default_settings(int(os.environ.get("BENCH_DEFAULT_N", "40")), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def default_settings(n: int, work: str) -> None:
    """A Blender move until the host applied it, at the daemon's default settings."""
    cfg = os.path.join(work, "default.toml")
    with open(cfg, "w") as f:
        f.write("")  # every setting at its default
    d = Daemon(os.path.join(work, "vibesync"), os.path.join(work, "data-default"), ["--config", cfg]).start()
    project = "bench" + uuid.uuid4().hex[:8]
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        vibesync.connect("127.0.0.1", d.port, d.token, project)
        drive(lambda: vibesync.status()["connected"])
        host = Host(d, project, work)
        host.wait("connected", timeout=30)
        bpy.ops.mesh.primitive_cube_add()
        ob = bpy.context.active_object
        u = drive(lambda: ob.get("vibesync_uuid"))
        host.wait_obj(u)
        drive(lambda: not len(vibesync._session().engine.inflight), 15, "the create committed")
        live, batch = [], []
        for i in range(n):
            since = len(host.events)
            t0 = time.monotonic()
            ob.location = ((i + 1) * 0.01, 0.0, 0.0)
            ev = drive(lambda since=since: host.find("live", since, lambda e: e.get("uuid") == u),
                       10, "host applied the live preview")
            live.append((ev["_t"] - t0) * 1000)
            ev = drive(lambda since=since: host.find("applied", since, lambda e: u in (e.get("hashes") or {})),
                       10, "host applied the batch")
            batch.append((ev["_t"] - t0) * 1000)
            drive(lambda: not len(vibesync._session().engine.inflight), 10, "the move committed")
        print(f"Blender change -> host applied, DEFAULT settings (n={n}): live preview p50 "
              f"{statistics.median(live):.1f} ms  p99 {pct(live, 0.99):.1f} ms; window's batch p50 "
              f"{statistics.median(batch):.1f} ms  p99 {pct(batch, 0.99):.1f} ms")
        host.close()
        vibesync.disconnect()
    finally:
        d.stop()


if __name__ == "__main__":
    code = main()
    leave(code)  # bpy may hang in a static destructor at exit (tests/blender/bpy_exit.py)
