"""`scripts/demo --quick`: the first-five-minutes demo runs on this machine (daemon + real
Blender with its factory startup scene + the headless Unity host) and shows what it claims."""

from __future__ import annotations

import os
import subprocess

from harness import REPO


def test_demo_quick_shows_both_scenes_converging_then_the_log_and_the_audit(daemon_bin):
    env = dict(os.environ, VIBESYNC_BIN=daemon_bin)
    out = subprocess.run([os.path.join(REPO, "scripts", "demo"), "--quick"], capture_output=True, text=True,
                         timeout=600, env=env)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    assert "\x1b[" not in out.stdout, "non-interactive output must not redraw the screen"
    frames = out.stdout.split("== ")
    act1 = next(f for f in frames if f.startswith("1. Blender's factory scene"))
    for name in ("Cube", "Camera", "Light"):
        row = next(line for line in act1.splitlines() if line.startswith(name))
        assert row.rstrip().endswith("synced") and row.count(name) == 2, row
    act2 = next(f for f in frames if f.startswith("2. a script edits Blender"))
    for name in ("Planet", "Suzanne", "Cube"):
        row = next(line for line in act2.splitlines() if line.startswith(name))
        assert "blender script" in row and row.rstrip().endswith("synced"), row
    act3 = next(f for f in frames if f.startswith("3. Unity moves the camera"))
    sun = next(line for line in act3.splitlines() if line.startswith("Sun"))
    cam = next(line for line in act3.splitlines() if line.startswith("Camera"))
    assert "unity host" in sun and sun.rstrip().endswith("synced"), sun
    assert "unity host" in cam and "-9.00" in cam, cam
    tail = next(f for f in frames if f.startswith("vibesync tail"))
    assert " COMMIT " in tail and " FINAL " in tail, tail
    audit = next(f for f in frames if f.startswith("the audit history"))
    # One audit commit may group batches of both editors (docs/WAL.md §9: group commits).
    assert "unity (session" in audit and "blender (session" in audit, audit
    assert "changed" in audit and "Sun" in audit, audit
    assert "both scenes converged after every act" in out.stdout
