"""End-to-end harness: the real daemon, real Blender (the `bpy` module) with the addon, and
the headless Unity host (a Mono process on the C# core), all on loopback.

Blender has no event loop in the `bpy` module, so every wait here drives the addon's pump
(`vibesync.tick`) while it polls: Blender must keep answering batches while we wait for the
host, and vice versa.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "blender"))
sys.path.insert(0, os.path.join(REPO, "addons", "blender"))

import bpy  # noqa: E402
import vibesync  # noqa: E402

from daemon import Client, Daemon, daemon_binary  # noqa: E402,F401

HOST_EXE = os.environ.get("VIBESYNC_HOST_EXE") or os.path.join(REPO, "build", "unity", "VibeSyncHeadlessHost.exe")


@contextlib.contextmanager
def selected(active, objs=None):
    """Run operators on `active` with `objs` (default: `active` alone) selected: the view
    layer's own selection and active object, restored after. Not `Context.temp_override`:
    with an override, `bpy.ops` reads the override's Python dict from C after releasing the
    GIL for the operator, and another Python thread holding the GIL then (the addon's
    transport thread, this harness's readers) makes that read crash Blender (a segfault in
    `BPY_context_member_get` under `object.mode_set`, seen in full runs)."""
    layer = bpy.context.view_layer
    objs = [active] if objs is None else list(objs)
    was_active = layer.objects.active
    was_selected = [o for o in layer.objects if o.select_get()]
    for o in was_selected:
        o.select_set(False)
    for o in objs:
        o.select_set(True)
    layer.objects.active = active
    try:
        yield
    finally:
        for o in layer.objects:
            o.select_set(False)
        for o in was_selected:
            try:
                o.select_set(True)
            except (ReferenceError, RuntimeError):
                pass  # removed or out of the view layer meanwhile
        try:
            layer.objects.active = was_active
        except (ReferenceError, RuntimeError):
            pass


def drive(cond, timeout: float = 15.0, what: str = "condition", budget_ms: float = 20.0):
    """Tick Blender's pump (`budget_ms` per tick) until cond() is truthy, checked after every
    tick; return its value. A small budget stops Blender at a step of its work (a slice)."""
    end = time.monotonic() + timeout
    while True:
        bpy.context.view_layer.update()
        vibesync.tick(budget_ms)
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; blender: {vibesync.status()}")
        time.sleep(0.005)


def drive_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        bpy.context.view_layer.update()
        vibesync.tick(20.0)
        time.sleep(0.005)


class Host:
    """The headless Unity host: stdin commands, JSON events on stdout, a dump file."""

    def __init__(self, daemon: Daemon, project_id: str | None, workdir: str,
                 extra_args: list[str] | None = None) -> None:
        if not os.path.exists(HOST_EXE):
            raise RuntimeError(f"{HOST_EXE} not found: run scripts/test-unity (it builds the host)")
        self.daemon = daemon
        self.dump_path = os.path.join(workdir, "host-scene.json")
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.stderr = open(os.path.join(workdir, "host.stderr"), "ab")
        project = ["--project", project_id] if project_id is not None else []
        self.proc = subprocess.Popen(
            ["mono", "--debug", HOST_EXE, "--connect", f"127.0.0.1:{daemon.port}",
             "--token-file", os.path.join(daemon.data_dir, "token"), *project,
             "--dump", self.dump_path, *(extra_args or [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ev["_t"] = time.monotonic()
            with self.lock:
                self.events.append(ev)

    def cmd(self, line: str) -> int:
        """Send a command; returns the event index to search from."""
        with self.lock:
            n = len(self.events)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return n

    def find(self, name: str, since: int = 0, pred=lambda e: True):
        with self.lock:
            for e in self.events[since:]:
                if e.get("event") == name and pred(e):
                    return e
        return None

    def wait(self, name: str, since: int = 0, pred=lambda e: True, timeout: float = 15.0, what: str = "") -> dict:
        return drive(lambda: self.find(name, since, pred), timeout, what or f"host event {name}")

    def count(self, name: str, since: int = 0) -> int:
        with self.lock:
            return sum(1 for e in self.events[since:] if e.get("event") == name)

    def stats(self) -> dict:
        i = self.cmd("stats")
        return self.wait("stats", i)

    def scene(self) -> dict:
        i = self.cmd(f"dump {self.dump_path}")
        self.wait("dumped", i)
        with open(self.dump_path, encoding="utf-8") as f:
            return json.load(f)

    def obj(self, uuid: str) -> dict | None:
        for o in self.scene()["objects"]:
            if o["uuid"] == uuid:
                return o
        return None

    def wait_obj(self, uuid: str, pred=lambda o: True, timeout: float = 15.0, what: str = "host object") -> dict:
        def check():
            o = self.obj(uuid)
            return o if o is not None and pred(o) else None
        return drive(check, timeout, what)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
        self.stderr.close()


def uuid_of(ob) -> str:
    return ob["vibesync_uuid"]


def close(a, b, eps: float = 1e-5) -> bool:
    return all(abs(x - y) <= eps for x, y in zip(a, b))


def same_rotation(q1, q2, eps: float = 1e-5) -> bool:
    return close(q1, q2, eps) or close(q1, [-c for c in q2], eps)
