"""Benchmark: what sending generated geometry costs Blender (docs/BENCHMARKS.md).

Builds the scatter graph with growing grids on the factory cube and times, best of 3, the
main-thread part (evaluate, read the evaluated mesh and its instances, realize them) and the
encode + hash that runs on the mesh worker for big results. Run: scripts/bench-geonodes.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "addons", "blender"))
sys.path.insert(0, os.path.join(HERE, "..", "blender"))

import bpy  # noqa: E402

from bpy_exit import leave  # noqa: E402
from vibesync import capture, geonodes, wire  # noqa: E402

GRAPH = os.path.join(HERE, "..", "..", "crates", "vibesync-geonodes", "tests", "graphs", "scatter.json")


def main() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=False)
    with open(GRAPH, encoding="utf-8") as f:
        graph, _ = geonodes.parse_graph_text(f.read())
    ob = bpy.data.objects["Cube"]
    print(f"Blender {bpy.app.version_string}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("instances | vertices sent | attachment bytes | main thread ms | worker encode+hash ms")
    for n in (5, 32, 100):
        graph["node_settings"]["grid"].update({"Vertices X": n, "Vertices Y": n})
        geonodes.build(ob, graph, undo=False)
        bpy.context.view_layer.update()
        best = None
        for _ in range(3):
            t0 = time.perf_counter()
            arrays, _note = capture.evaluated_mesh_arrays(ob)
            t1 = time.perf_counter()
            blob = capture.encode_mesh_arrays(arrays, 1.0)
            wire.mesh_hash(blob)
            t2 = time.perf_counter()
            r = ((t1 - t0) * 1000, (t2 - t1) * 1000)
            best = r if best is None or sum(r) < sum(best) else best
        print(f"{n * n} | {arrays['n']} | {len(blob)} | {best[0]:.1f} | {best[1]:.1f}")
    leave(0)  # bpy can hang in a static destructor at exit (tests/blender/bpy_exit.py)


if __name__ == "__main__":
    main()
