"""Fixtures for the end-to-end tests: a fresh daemon, Blender connected to it, the host."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, Host, bpy, daemon_binary, drive, vibesync  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "window_ms(ms): the daemon's batch window for this test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the WAL (one line a record) and the hosts' events: a
    failure that shows once in ten runs can be read from the run that had it."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    d = getattr(item, "funcargs", {}).get("daemon")
    if d is not None:
        try:
            lines = [json.dumps({k: r.get(k) for k in ("seq", "phase", "operation_id", "session_id", "outcome", "uuids")
                                 if r.get(k) is not None} | {"payload": r.get("payload")},
                                separators=(",", ":"))[:400] for r in d.tail()]
            rep.sections.append(("daemon WAL", "\n".join(lines)))
        except Exception as e:  # noqa: BLE001 — a report, not the test
            rep.sections.append(("daemon WAL", f"unreadable: {e}"))
    for name, value in getattr(item, "funcargs", {}).items():
        hosts = value.hosts if hasattr(value, "hosts") else [value] if isinstance(value, Host) else []
        for i, h in enumerate(hosts):
            ev = "\n".join(json.dumps(e, separators=(",", ":"))[:300] for e in list(h.events))
            rep.sections.append((f"host {name}[{i}] events", ev))


@pytest.fixture(scope="session")
def daemon_bin(tmp_path_factory) -> str:
    # A private copy: another build may replace target/debug/vibesync while tests run.
    dst = tmp_path_factory.mktemp("bin") / "vibesync"
    shutil.copy2(daemon_binary(), dst)
    return str(dst)


@pytest.fixture
def workdir(tmp_path) -> str:
    return str(tmp_path)


@pytest.fixture
def daemon(request, daemon_bin, workdir):
    marker = request.node.get_closest_marker("window_ms")
    window = marker.args[0] if marker else 100
    cfg = os.path.join(workdir, "vibesync.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(f"[sync]\nbatch_window_ms = {window}\nverify_timeout_ms = 5000\n")
    d = Daemon(daemon_bin, os.path.join(workdir, "data"), ["--config", cfg]).start()
    yield d
    d.stop()


@pytest.fixture
def project_id() -> str:
    return "e2e" + uuid.uuid4().hex[:10]


@pytest.fixture
def blender(daemon, project_id):
    """An empty factory scene, undo enabled, the addon connected to the daemon."""
    vibesync.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.undo_steps = 64
    vibesync.register()
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    drive(lambda: vibesync.status()["connected"], what="Blender connected")
    yield daemon
    vibesync.disconnect()
    vibesync.unregister()


@pytest.fixture
def host(daemon, project_id, workdir, blender):
    h = Host(daemon, project_id, workdir)
    h.wait("connected", timeout=30)
    yield h
    h.close()

# bpy can hang at exit: leave with pytest's status once it has reported (bpy_exit.py).
from bpy_exit import pytest_sessionfinish, pytest_unconfigure  # noqa: E402,F401
