"""Run in a fresh Python (see test_extension.py): install the built extension zip into a
private user resources dir, enable it, let its timer auto-connect, print a JSON report."""

import json
import sys
import time

import bpy  # first: it puts Blender's script modules (addon_utils) on sys.path
import addon_utils  # noqa: E402
from bpy_exit import leave  # noqa: E402

zip_path, port = sys.argv[1], int(sys.argv[2])
report = {}
report["install"] = sorted(bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True))
mods = [m for m in bpy.context.preferences.addons.keys() if m.endswith(".vibesync")]
report["modules"] = mods
mod = sys.modules[mods[0]]
prefs = bpy.context.preferences.addons[mods[0]].preferences
report["prefs_defaults"] = [prefs.host, prefs.port, prefs.token_file, prefs.project_id]
prefs.port = port  # the test daemon's port stands in for 47800
report["timer"] = bpy.app.timers.is_registered(mod._timer)
# Enabling twice must not double-register.
mod.register()
report["handlers"] = {name: sum(1 for h in getattr(bpy.app.handlers, name)
                                if getattr(h, "__module__", "").startswith(mods[0]))
                      for name in ("depsgraph_update_post", "undo_post", "load_post")}
end = time.monotonic() + 15
while time.monotonic() < end and not mod.status()["connected"]:
    mod._timer()  # what bpy.app.timers calls in the UI
    time.sleep(0.02)
bpy.ops.mesh.primitive_cube_add()
# Until every tracked datablock is registered (the first replay opens the adoption gate, then
# the registers go), or the deadline: the test fails on the report then, never on a machine
# that was merely slower than a fixed wait (20 ticks here failed once under load: 0 of 13).
end = time.monotonic() + 30
while True:
    mod._timer()
    st = mod.status()
    if st["connected"] and st["tracked_total"] >= 10 and st["registered"] == st["tracked_total"]:
        break
    if time.monotonic() > end:
        break
    time.sleep(0.02)
st = mod.status()
report["status"] = {k: st[k] for k in ("state", "connected", "port", "project_id",
                                        "tracked_total", "registered")}
addon_utils.disable(mods[0])
report["after_disable"] = {
    "handlers": sum(1 for name in ("depsgraph_update_post", "undo_post", "load_post")
                    for h in getattr(bpy.app.handlers, name)
                    if getattr(h, "__module__", "").startswith(mods[0])),
    "timer": bpy.app.timers.is_registered(mod._timer),
    "panel": hasattr(bpy.types, "VIBESYNC_PT_panel"),
}
print("REPORT " + json.dumps(report), flush=True)
leave(0)  # the bpy module can hang in a static destructor at exit (bpy_exit.py)
