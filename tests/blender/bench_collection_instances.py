"""Empties (200, or BENCH_INSTANCES) instance one collection of 5 grids (2,500 vertices
each): the main-thread CPU time of reading what each one shows
(`capture.evaluated_mesh_arrays`, PROTOCOL §7.1) and of encoding it, with the collection
realized once for all of them (as the pump does between two updates: the Empties share the
arrays and their encoding) and read again for each (docs/BENCHMARKS.md, "Collection
instances in Blender"). Real Blender (the bpy wheel).
Run: `.venv/blender/bin/python tests/blender/bench_collection_instances.py`.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "addons", "blender"))

import bpy  # noqa: E402

from vibesync import capture  # noqa: E402

INSTANCES, GRIDS = int(os.environ.get("BENCH_INSTANCES", "200")), 5


def main() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    props = bpy.data.collections.new("Props")
    scene.collection.children.link(props)
    for i in range(GRIDS):
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=49, y_subdivisions=49, location=(i, 0, 0))
        ob = bpy.context.active_object
        scene.collection.objects.unlink(ob)
        props.objects.link(ob)
    bpy.context.view_layer.layer_collection.children["Props"].exclude = True
    empties = []
    for i in range(INSTANCES):
        e = bpy.data.objects.new(f"Instance{i}", None)
        e.instance_type, e.instance_collection = "COLLECTION", props
        e.location = (i, 5, 0)
        scene.collection.objects.link(e)
        empties.append(e)
    bpy.context.view_layer.update()
    for label, shared in (("read and encoded for each Empty", False),
                          ("realized and encoded once for all", True)):
        times, arrays = [], None
        capture.forget_collection_geometry()
        encoded: dict[int, bytes] = {}
        for e in empties:
            if not shared:
                capture.forget_collection_geometry()
                encoded.clear()
            t = time.thread_time()
            arrays, _ = capture.evaluated_mesh_arrays(e)
            if id(arrays) not in encoded:  # the pump's `shared_encodings`
                encoded[id(arrays)] = capture.encode_mesh_arrays(arrays, 1.0)
            times.append(time.thread_time() - t)
        times.sort()
        print(f"{label}: {arrays['n']} vertices each; per Empty p50 {1e3 * times[len(times) // 2]:.2f} ms, "
              f"worst {1e3 * times[-1]:.2f} ms; all {INSTANCES}: {1e3 * sum(times):.0f} ms")
    sys.stdout.flush()
    os._exit(0)  # skip Blender's slow teardown


if __name__ == "__main__":
    main()
