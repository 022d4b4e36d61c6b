"""A forest of collection instances reaching Unity: the factory startup scene synced with the
headless Unity host, then `BENCH_FOREST` Empties (default 300) instancing one collection of 5
grids (12,500 vertices) are added in Blender. Reports when the host holds every Empty with
the collection's geometry (what the receiver holds), and when both editors have converged
(docs/BENCHMARKS.md, "Collection instances in Blender"). The Empties show one geometry:
Blender sends it to the daemon once (PROTOCOL §6.1), the daemon sends the host one copy per
Empty, in batches of at most 32 MiB of meshes (§6.2 "Batch size").
Run: `scripts/test-e2e -o python_files=bench_collection_forest.py -s` (not part of the suite).
"""

from __future__ import annotations

import os
import time

from harness import bpy, drive, vibesync
from scenario import converge
from test_scenarios import world  # noqa: F401 (fixture)

N = int(os.environ.get("BENCH_FOREST", "300"))


def test_forest_of_collection_instances(world):  # noqa: F811 (fixture)
    made, host = world.startup_synced()
    tree = bpy.data.collections.new("Tree")
    bpy.context.scene.collection.children.link(tree)
    for i in range(5):
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=49, y_subdivisions=49, location=(i, 0, 0))
        ob = bpy.context.active_object
        for c in list(ob.users_collection):
            c.objects.unlink(ob)
        tree.objects.link(ob)
    bpy.context.view_layer.layer_collection.children["Tree"].exclude = True
    home = bpy.data.collections["Collection"]
    t0 = time.monotonic()
    empties = []
    for i in range(N):
        e = bpy.data.objects.new(f"Tree{i}", None)
        e.instance_type, e.instance_collection = "COLLECTION", tree
        e.location = (i % 20, i // 20, 0)
        home.objects.link(e)
        empties.append(e)

    def held() -> bool:
        # One dump of the host's scene per look (not one per Empty: that loads the host).
        meshes = {o["uuid"]: (o.get("mesh") or {}).get("vertex_count")
                  for o in host.scene()["objects"]}
        return all(meshes.get(e.get("vibesync_uuid", "")) == 12_500 for e in empties)

    drive(held, timeout=1200, what="the forest in Unity")
    got = time.monotonic() - t0
    converge(host, meshes=False)
    print(f"\n{N} collection instances (12,500 vertices each): held by the host after {got:.1f} s, "
          f"converged after {time.monotonic() - t0:.1f} s; not synced in Blender: "
          f"{len(vibesync.status()['not_synced'])}; mesh attachments sent by Blender: "
          f"{vibesync.status()['mesh_bytes_sent'] / 1e6:.1f} MB; load {os.getloadavg()[0]:.1f}")
