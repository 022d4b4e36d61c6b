"""Fixtures: the addon loaded into the real `bpy` module, and the real daemon."""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "addons", "blender"))

import bpy  # noqa: E402
import vibesync  # noqa: E402

from daemon import Daemon, daemon_binary  # noqa: E402

VECTORS = os.path.join(HERE, "..", "vectors")


def pump_until(cond, timeout: float = 10.0, what: str = "condition"):
    """Drive the addon's pump (timers never fire in the bpy module) until cond() is truthy."""
    end = time.monotonic() + timeout
    while True:
        vibesync.tick(20.0)
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"status: {vibesync.status()}")
        time.sleep(0.01)


def pump_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        vibesync.tick(20.0)
        time.sleep(0.01)


def clear_received(scripted) -> None:
    """Forget what the scripted daemon has received so far: every frame Blender sent before
    now, once the daemon has read them all — a marker frame sent now is read after them (one
    connection, in order). Cleared at once, a frame Blender had sent but the daemon had not
    read yet was counted as sent after the clear (a race that failed tests about one run in
    ten). Blender is not pumped meanwhile: nothing new is made while it waits."""
    marker = uuid.uuid4().hex
    if not vibesync._session()._send({"type": "ping", "marker": marker}):
        scripted.received.clear()  # not connected: nothing is on its way
        return
    end = time.monotonic() + 10.0
    while True:
        at = next((i for i, m in enumerate(list(scripted.received)) if m.get("marker") == marker), None)
        if at is not None:
            del scripted.received[:at + 1]  # (what came after the marker stays)
            return
        if time.monotonic() > end:
            raise AssertionError("timed out after 10s waiting for the scripted daemon to read "
                                 "what Blender sent")
        time.sleep(0.005)


def settle() -> None:
    """Let the depsgraph report pending changes, then run the pump."""
    bpy.context.view_layer.update()
    vibesync.tick(50.0)


@pytest.fixture(scope="session")
def daemon_bin(tmp_path_factory) -> str:
    # A private copy: other builds may replace target/debug/vibesync while tests run.
    src = daemon_binary()
    dst = tmp_path_factory.mktemp("bin") / "vibesync"
    shutil.copy2(src, dst)
    return str(dst)


@pytest.fixture(scope="module")
def daemon(daemon_bin, tmp_path_factory):
    d = Daemon(daemon_bin, str(tmp_path_factory.mktemp("daemon") / "data")).start()
    yield d
    d.stop()


@pytest.fixture
def project_id() -> str:
    return "p" + uuid.uuid4().hex[:12]


@pytest.fixture
def clean_blender():
    """Empty factory scene with undo available; the addon registered once."""
    vibesync.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.undo_steps = 32
    vibesync.register()
    yield
    vibesync.unregister()


@pytest.fixture
def bridge(clean_blender, daemon, project_id):
    """The addon connected to the module's daemon with its own project id."""
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    pump_until(lambda: vibesync.status()["connected"], what="connection")
    yield daemon
    vibesync.disconnect()

@pytest.fixture
def scripted(clean_blender):
    """A scripted daemon; tests push frames with `scripted.push(bytes)`."""
    from test_transport import HostileDaemon
    conns = []
    hostile = HostileDaemon(lambda n, conn: conns.append(conn))
    # `hostile.conns` holds a connection before its welcome goes (the script's list only after):
    # a push right after a reconnect reaches the new connection, not the closed one.
    hostile.push = lambda data: hostile.conns[-1].sendall(data)
    vibesync.connect("127.0.0.1", hostile.port, "a" * 64, "scripted")
    pump_until(lambda: vibesync.status()["connected"] and conns, what="connection")
    yield hostile
    vibesync.disconnect()
    hostile.close()


# bpy can hang at exit: leave with pytest's status once it has reported (bpy_exit.py).
from bpy_exit import pytest_sessionfinish, pytest_unconfigure  # noqa: E402,F401
