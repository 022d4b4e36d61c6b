"""pytest hooks shared by the suites that import `bpy` (tests/blender, tests/e2e).

The bpy module (4.5) can deadlock in a C++ static destructor at process exit
(`GlobalState::~GlobalState` destroys a condition variable its `delayed_close` thread still
waits on; seen with gdb, independent of the addon). Once pytest has reported, leave without
running C++ static destructors so the run ends with pytest's status instead of hanging.
A conftest imports both hooks: `from bpy_exit import pytest_sessionfinish, pytest_unconfigure`;
scripts that import bpy end with `leave(code)`.

Leaving this way also skips Blender's removal of its session temporary directory
(`bpy.app.tempdir`, `/tmp/blender_XXXXXX`): `leave` removes it first, so test runs do not
fill the machine's /tmp.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

_EXIT = {"status": None}


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _EXIT["status"] is None:
        return
    try:
        import vibesync
        vibesync.unregister()
    finally:
        leave(_EXIT["status"])


def leave(status: int) -> None:
    """End the process with `status` now: remove Blender's session temporary directory, flush
    the standard streams, skip C++ static destructors."""
    bpy = sys.modules.get("bpy")
    tempdir = getattr(getattr(bpy, "app", None), "tempdir", "") if bpy else ""
    if tempdir and os.path.basename(os.path.normpath(tempdir)).startswith("blender_"):
        shutil.rmtree(tempdir, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
