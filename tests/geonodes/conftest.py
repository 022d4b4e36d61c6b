"""Fixtures for the Geometry Nodes suite: real Blender (the bpy wheel of the venv running
pytest: 4.5 in CI, 4.2 / 5.0 from scripts/geonodes-soak), the vibesync binary, the catalogue."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "blender"))
sys.path.insert(0, os.path.join(REPO, "addons", "blender"))

import bpy  # noqa: E402

from daemon import daemon_binary  # noqa: E402

VERSION = "%d.%d" % bpy.app.version[:2]
CATALOGUE_DIR = os.path.join(REPO, "crates", "vibesync-geonodes", "catalogue")


def vibesync_bin() -> str:
    return daemon_binary()


def run_cli(*args: str, stdin: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([vibesync_bin(), "geonodes", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"vibesync geonodes {' '.join(args)} exited {proc.returncode}: "
                             f"{proc.stderr}{proc.stdout[:2000]}")
    return proc


def validate_many(graphs: list[dict]) -> list[dict]:
    """Run the Rust validator on many graphs at once (one JSON per line)."""
    text = "".join(json.dumps(g) + "\n" for g in graphs)
    proc = run_cli("validate", "-", "--jsonl", "--blender", VERSION, stdin=text)
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(reports) == len(graphs), (len(reports), len(graphs), proc.stderr)
    # Exit 1 when any graph has errors (GEONODES.md, Validator).
    want = 1 if any(r["status"] == "ERRORS_FOUND" for r in reports) else 0
    assert proc.returncode == want, (proc.returncode, want, proc.stderr)
    return reports


@pytest.fixture(scope="session")
def catalogue() -> dict:
    with open(os.path.join(CATALOGUE_DIR, f"geometry_nodes_{VERSION}.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture
def fresh_file():
    """Blender's factory startup scene (the default cube, camera and light), undo enabled."""
    bpy.ops.wm.read_factory_settings(use_empty=False)
    bpy.context.preferences.edit.undo_steps = 32
    yield


# bpy can hang at exit: leave with pytest's status once it has reported (bpy_exit.py).
from bpy_exit import pytest_sessionfinish, pytest_unconfigure  # noqa: E402,F401
