"""`scripts/demo`: VibeSync doing its main job, in one terminal, with nothing installed but
what the tests use: the real daemon, real Blender (the `bpy` wheel) with the addon and its
factory startup scene, and the headless Unity host (the C# core under Mono).

Act 1: Blender's factory scene (Cube, Light, Camera) appears in Unity.
Act 2: a script edits Blender like a person would: adds a sphere and a monkey, moves the cube
       around a circle; every pose arrives in Unity.
Act 3: the Unity side moves the camera and renames the light; Blender follows.
Then `vibesync tail` (the write-ahead log) and `vibesync history` (the audit history: what
changed in each finalized batch and who made it).

Both scenes are shown side by side as they update (Blender coordinates on the left, Unity's
on the right: Blender (x, y, z) is Unity (x, z, y)), with who made the last change of each
object and its sync state. `--quick` is the short, non-interactive run the tests use.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, Host, bpy, daemon_binary, drive, drive_for, vibesync  # noqa: E402
from bpy_exit import leave  # noqa: E402

PROJECT = "demo"
EPS = 1e-4


def b2u(p):
    """Blender position → Unity position (docs/PROTOCOL.md §6: y and z swap)."""
    return [p[0], p[2], p[1]]


class View:
    """The two scenes side by side."""

    def __init__(self, host: Host, interactive: bool) -> None:
        self.host = host
        self.interactive = interactive
        self.last_by: dict[str, str] = {}
        self.frames = 0

    def blender_objects(self) -> dict[str, dict]:
        """Objects and collections (a collection is a root GameObject in Unity; it has no
        transform of its own)."""
        out = {}
        for ob in bpy.data.objects:
            u = ob.get("vibesync_uuid")
            if u:
                out[u] = {"name": ob.name, "pos": list(ob.matrix_world.translation)}
        for col in bpy.data.collections:
            u = col.get("vibesync_uuid")
            if u:
                out[u] = {"name": col.name, "pos": None}
        return out

    def unity_objects(self) -> dict[str, dict]:
        return {o["uuid"]: {"name": o["name"], "pos": o["transform"]["position"]}
                for o in self.host.scene()["objects"]}

    def rows(self):
        b, u = self.blender_objects(), self.unity_objects()
        not_synced = {n["uuid"] if isinstance(n, dict) else n
                      for n in vibesync.status().get("not_synced") or []}
        rows = []
        for uid in sorted(set(b) | set(u), key=lambda k: (b.get(k) or u.get(k))["name"]):
            bo, uo = b.get(uid), u.get(uid)
            if uid in not_synced:
                state = "NOT SYNCED"
            elif bo is None or uo is None:
                state = "syncing…"
            elif bo["name"] == uo["name"] and (bo["pos"] is None or all(
                    abs(x - y) <= EPS for x, y in zip(b2u(bo["pos"]), uo["pos"]))):
                state = "synced"
            else:
                state = "syncing…"
            rows.append((uid, bo, uo, self.last_by.get(uid, "factory scene"), state))
        return rows

    def converged(self) -> bool:
        rows = self.rows()
        return bool(rows) and all(r[4] == "synced" for r in rows)

    def frame(self, title: str) -> None:
        fmt = lambda p: "(collection)" if p is None else "(" + ", ".join(f"{c:6.2f}" for c in p) + ")"  # noqa: E731
        lines = [f"== {title}", f"{'Blender':<38}  {'Unity (headless host)':<38}  {'last change by':<15} state"]
        for _uid, bo, uo, who, state in self.rows():
            left = f"{bo['name'][:14]:<14} {fmt(bo['pos'])}" if bo else "—"
            right = f"{uo['name'][:14]:<14} {fmt(uo['pos'])}" if uo else "—"
            lines.append(f"{left:<38}  {right:<38}  {who:<15} {state}")
        st = vibesync.status()
        lines.append(f"Blender bridge: {st['state']}, project {st.get('project_id')}, "
                     f"daemon seq {st.get('daemon_seq')}")
        if self.interactive:
            sys.stdout.write("\x1b[H\x1b[2J")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        self.frames += 1

    def settle(self, title: str, timeout: float) -> None:
        """Drive both sides until every object is synced (fails at the deadline)."""
        end = time.monotonic() + timeout
        while not self.converged():
            if time.monotonic() > end:
                self.frame(title + " — DID NOT CONVERGE")
                raise AssertionError(f"{title}: the scenes did not converge within {timeout}s")
            if self.interactive:
                self.frame(title)
            drive_for(0.2)
        self.frame(title)


def add(op, name, location):
    op(location=location)
    ob = bpy.context.active_object
    ob.name = name
    return ob


def person_objects(*names):
    """The objects the script (standing in for a person) made or edited. A person's work is
    never undone by the bridge: one that vanished is a failure of the demo."""
    obs = [bpy.data.objects.get(n) for n in names]
    gone = [n for n, ob in zip(names, obs) if ob is None]
    if gone:
        raise AssertionError(f"{', '.join(gone)} vanished from Blender: the bridge undid a person's edit")
    return obs


def run(args) -> int:
    interactive = sys.stdout.isatty() and not args.quick
    work = tempfile.mkdtemp(prefix="vibesync-demo-")
    data = args.data_dir or os.path.join(work, "data")
    cfg = os.path.join(work, "vibesync.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("[sync]\nbatch_window_ms = 100\n")
    daemon = Daemon(daemon_binary(), data, ["--config", cfg]).start()
    host = None
    print(f"daemon: {daemon.binary} listening on 127.0.0.1:{daemon.port}, data dir {data}")
    try:
        # Blender's factory startup scene, exactly what a new user sees.
        bpy.ops.wm.read_factory_settings(use_empty=False)
        vibesync.register()
        vibesync.connect("127.0.0.1", daemon.port, daemon.token, PROJECT)
        drive(lambda: vibesync.status()["connected"], timeout=30, what="Blender connected")
        host = Host(daemon, PROJECT, work)
        host.wait("connected", timeout=60, what="Unity host connected")
        view = View(host, interactive)
        view.settle("1. Blender's factory scene arrives in Unity", timeout=60)

        # Act 2: a script edits Blender, as a person would.
        add(bpy.ops.mesh.primitive_uv_sphere_add, "Planet", (3.0, 0.0, 1.0))
        add(bpy.ops.mesh.primitive_monkey_add, "Suzanne", (-3.0, 0.0, 1.0))
        title = "2. a script edits Blender: the cube circles, the planet bobs"
        steps = 12 if args.quick else 120
        for i in range(steps + 1):
            cube, sphere, monkey = person_objects("Cube", "Planet", "Suzanne")
            a = 2 * math.pi * i / steps
            cube.location = (2.0 * math.cos(a), 2.0 * math.sin(a), 0.5 * math.sin(2 * a))
            sphere.location = (3.0, 0.0, 1.0 + 0.5 * math.sin(a))
            bpy.context.view_layer.update()
            for ob in (cube, sphere, monkey):
                if ob.get("vibesync_uuid"):
                    view.last_by[ob["vibesync_uuid"]] = "blender script"
            drive_for(0.05)
            if interactive and i % 3 == 0:
                view.frame(title)
        drive(lambda: all(ob.get("vibesync_uuid") for ob in person_objects("Planet", "Suzanne")),
              what="uuids on new objects")
        for ob in person_objects("Planet", "Suzanne"):
            view.last_by[ob["vibesync_uuid"]] = "blender script"
        view.settle(title, timeout=60)
        person_objects("Cube", "Planet", "Suzanne")

        # Act 3: the Unity side edits.
        cam, light = bpy.data.objects["Camera"], bpy.data.objects["Light"]
        cu, lu = cam["vibesync_uuid"], light["vibesync_uuid"]
        host.cmd(f"move {cu} 0 4 -9")  # Unity coordinates
        host.cmd(f"rename {lu} Sun")
        view.last_by[cu] = view.last_by[lu] = "unity host"
        drive(lambda: light.name == "Sun" and abs(cam.location[1] - -9.0) < EPS, timeout=30,
              what="Unity's edits in Blender")
        view.settle("3. Unity moves the camera and renames the light; Blender follows", timeout=60)

        print("\n== vibesync tail (the write-ahead log, last 12 records)")
        tail = subprocess.run([daemon.binary, "tail", "--data-dir", data], capture_output=True, text=True, timeout=60)
        print("\n".join(tail.stdout.splitlines()[-12:]))
        print("\n== the audit history (vibesync history: one git commit per finalized batch, newest first)")
        deadline = time.monotonic() + 30
        hist = ""
        while time.monotonic() < deadline:  # the audit commits after each ack; wait for the last
            out = subprocess.run([daemon.binary, "history", "--project", PROJECT, "--data-dir", data, "--limit", "6"],
                                 capture_output=True, text=True, timeout=60)
            hist = out.stdout if out.returncode == 0 else out.stderr
            if out.returncode == 0 and "unity" in hist:
                break
            # Keep Blender's pump running, as Blender's timers do: the scenes already agree
            # through live previews (docs/PROTOCOL.md §6.3), and the window's batch that
            # commits Unity's edit still needs Blender's `applied`.
            drive_for(0.2)
        print(hist.rstrip())
        print(f"\ndemo: done — {view.frames} views; both scenes converged after every act")
        return 0
    except AssertionError as e:
        print(f"demo: FAILED: {e}")
        return 1
    finally:
        if host is not None:
            host.close()
        vibesync.disconnect()
        daemon.stop()
        if not args.data_dir:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short non-interactive run (used by the tests)")
    ap.add_argument("--data-dir", help="keep the daemon's data here (default: a temporary dir, removed)")
    code = run(ap.parse_args())
    leave(code)  # bpy can hang in a static destructor at exit (tests/blender/bpy_exit.py)


if __name__ == "__main__":
    main()
