"""Fixtures for the agent (MCP) suite: a fresh daemon, real Blender (the `bpy` module) with
the addon connected, the headless Unity host, the fixture add-ons under tests/mcp/addons, and
`vibesync mcp` driven by the official MCP Python SDK."""

from __future__ import annotations

import os
import shutil
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(HERE, "addons"))

from harness import Daemon, Host, bpy, daemon_binary, drive, vibesync  # noqa: E402

import addon_utils  # noqa: E402


@pytest.fixture(scope="session")
def daemon_bin(tmp_path_factory) -> str:
    dst = tmp_path_factory.mktemp("bin") / "vibesync"
    shutil.copy2(daemon_binary(), dst)
    return str(dst)


@pytest.fixture
def workdir(tmp_path) -> str:
    return str(tmp_path)


def pytest_configure(config):
    config.addinivalue_line("markers", "governance(toml): extra lines of the daemon's [governance]")


@pytest.fixture
def daemon_config(request, workdir) -> str:
    marker = request.node.get_closest_marker("governance")
    extra = marker.args[0] if marker else ""
    cfg = os.path.join(workdir, "vibesync.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("[sync]\nbatch_window_ms = 50\nverify_timeout_ms = 5000\n"
                f"[governance]\nuser_idle_ms = 1500\n{extra}\n"
                "[agents]\ncall_timeout_ms = 20000\nhandler_budget_ms = 3000\ntool_failures = 3\n"
                "progress_interval_ms = 200\n")
    return cfg


@pytest.fixture
def daemon(daemon_bin, workdir, daemon_config):
    d = Daemon(daemon_bin, os.path.join(workdir, "data"), ["--config", daemon_config]).start()
    yield d
    d.stop()


@pytest.fixture
def project_id() -> str:
    return "mcp" + uuid.uuid4().hex[:10]


FIXTURE_ADDONS = ("random_mesh_generator", "vibesync_test_tools", "vibesync_geonodes")


def disable_fixture_addons():
    for mod in list(bpy.context.preferences.addons.keys()):
        if mod in FIXTURE_ADDONS or mod.startswith("bad_manifest_"):
            addon_utils.disable(mod, default_set=True)


@pytest.fixture
def blender(daemon, project_id, workdir):
    """The factory startup scene saved in the project folder, the addon connected."""
    vibesync.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=False)
    bpy.context.preferences.edit.undo_steps = 64
    disable_fixture_addons()
    from vibesync import manifests
    manifests._consent_overrides.clear()
    proj = os.path.join(workdir, "project")
    os.makedirs(proj, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(proj, "scene.blend"))
    vibesync.register()
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, project_id)
    drive(lambda: vibesync.status()["connected"], what="Blender connected")
    yield daemon
    vibesync.disconnect()
    vibesync.unregister()
    disable_fixture_addons()


@pytest.fixture
def host(daemon, project_id, workdir, blender):
    h = Host(daemon, project_id, workdir)
    h.wait("connected", timeout=30)
    yield h
    h.close()


def enable(module: str) -> None:
    addon_utils.enable(module, default_set=True, persistent=True)


def disable(module: str) -> None:
    addon_utils.disable(module, default_set=True)


# bpy can hang at exit: leave with pytest's status once it has reported.
sys.path.insert(0, os.path.join(REPO, "tests", "blender"))
from bpy_exit import pytest_sessionfinish, pytest_unconfigure  # noqa: E402,F401
