"""pytest hooks shared by the suites that import `bpy` (tests/blender, tests/e2e).

The bpy module (4.5) can deadlock in a C++ static destructor at process exit
(`GlobalState::~GlobalState` destroys a condition variable its `delayed_close` thread still
waits on; seen with gdb, independent of the addon). Once pytest has reported, leave without
running C++ static destructors so the run ends with pytest's status instead of hanging.
A conftest imports both hooks: `from bpy_exit import pytest_sessionfinish, pytest_unconfigure`.
"""

from __future__ import annotations

import os
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
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])
