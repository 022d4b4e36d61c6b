"""The addon as a Blender 4.2+ extension: build the zip with Blender's own tool, install it
into a private user dir, enable it, and see it connect by itself (no configuration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
ADDON = os.path.join(HERE, "..", "..", "addons", "blender", "vibesync")
BLENDER_EXT = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg",
                           "cli", "blender_ext.py")


def test_extension_builds_installs_enables_and_auto_connects(daemon, tmp_path):
    out = subprocess.run([sys.executable, BLENDER_EXT, "validate", ADDON],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([sys.executable, BLENDER_EXT, "build", "--source-dir", ADDON,
                          "--output-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    [zip_name] = [f for f in os.listdir(tmp_path) if f.endswith(".zip")]
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"),
               VIBESYNC_DATA_DIR=daemon.data_dir)
    out = subprocess.run([sys.executable, os.path.join(HERE, "extension_probe.py"),
                          str(tmp_path / zip_name), str(daemon.port)],
                         capture_output=True, text=True, timeout=120, env=env,
                         cwd=str(tmp_path))
    lines = [l for l in out.stdout.splitlines() if l.startswith("REPORT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert report["install"] == ["FINISHED"]
    assert report["modules"] == ["bl_ext.user_default.vibesync"]
    assert report["prefs_defaults"] == ["127.0.0.1", 47800, "", ""]
    assert report["timer"] is True
    assert report["handlers"] == {"depsgraph_update_post": 1, "undo_post": 1, "load_post": 1}
    st = report["status"]
    assert st["connected"] and st["state"] == "connected" and st["port"] == daemon.port, json.dumps(report)
    assert st["project_id"] == "default"
    # The default startup scene (cube, camera, light, ...) plus the added cube: all registered.
    assert st["tracked_total"] >= 10 and st["registered"] == st["tracked_total"]
    assert report["after_disable"] == {"handlers": 0, "timer": False, "panel": False}
