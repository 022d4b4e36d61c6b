"""Another editor deletes 2,000 of the 10,000 objects of a Blender file: the time the batch
takes on Blender's main thread, and its longest step (docs/BENCHMARKS.md, "A delete batch
in Blender"). Real Blender (the bpy wheel), the addon's own `apply.apply_batch_steps` over
a registry scanned from the file. Run: `.venv/blender/bin/python tests/blender/bench_deletes.py`.
"""

from __future__ import annotations

import gc
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "addons", "blender"))

import bpy  # noqa: E402

from vibesync import apply, identity  # noqa: E402

OBJECTS, DELETED = 10_000, 2_000


def main() -> None:
    bpy.ops.wm.read_homefile(use_empty=True)
    me = bpy.data.meshes.new("Tri")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    coll = bpy.context.scene.collection
    for i in range(OBJECTS):
        coll.objects.link(bpy.data.objects.new(f"O{i}", me))
    bpy.context.view_layer.update()
    registry = identity.Registry()
    registry.scan()
    changes = [({"op": "delete", "uuid": o[identity.PROP]}, b"")
               for o in list(bpy.data.objects)[:DELETED]]
    batch = apply.Batch("bench", 1, "slow", len(changes))
    batch.changes = changes
    result: dict = {}
    worst = 0.0
    gc.collect()
    gc.disable()  # as the pump holds the collector over a batch this big (budget.GcHold)
    start = last = time.perf_counter()
    for _ in apply.apply_batch_steps(batch, registry, 1.0, result):
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    total = time.perf_counter() - start
    gc.enable()
    assert len(result["deleted"]) == DELETED and not result["failed"]
    print(f"{DELETED:,} deletes in a {OBJECTS:,}-object file: {total:.2f} s in all, "
          f"longest step {worst * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
