"""(d) end to end: "scatter cones on a grid, random scale" built in Blender through the
`geonodes` add-on tool handler appears in the Unity host as the evaluated geometry — the
cube plus one cone per grid point (docs/GEONODES.md, docs/PROTOCOL.md §7.1)."""

from __future__ import annotations

import os
import sys

from harness import bpy, drive, uuid_of, vibesync

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "addons", "blender"))
import vibesync_geonodes  # noqa: E402
from vibesync import capture  # noqa: E402


def test_scatter_built_in_blender_appears_in_unity(host):
    bpy.ops.mesh.primitive_cube_add(size=2)
    ob = bpy.context.active_object
    ob.name = "Scatter"
    u = drive(lambda: uuid_of(ob), what="uuid on the cube")
    host.wait_obj(u, lambda o: o.get("mesh") is not None, what="plain cube on the host")
    with open(os.path.join(REPO, "crates", "vibesync-geonodes", "tests", "graphs", "scatter.json"),
              encoding="utf-8") as f:
        out = vibesync_geonodes.build(object="Scatter", graph_json=f.read())
    assert out["status"] == "success", out
    assert out["data"]["evaluated"]["instances"] == 25 and out["data"]["evaluated"]["warnings"] == []
    arrays, note = capture.evaluated_mesh_arrays(ob)
    assert note is None
    want_vertices, want_triangles = arrays["n"], len(arrays["tris"]) // 3
    assert want_vertices == 8 + 25 * 17  # the cube and 25 cones of 16 vertices and a tip
    o = host.wait_obj(u, lambda o: (o.get("mesh") or {}).get("vertex_count") == want_vertices,
                      timeout=30, what="the scatter's evaluated mesh on the host")
    assert o["mesh"]["triangle_count"] == want_triangles
    assert len(ob.data.vertices) == 8  # Blender's base mesh is untouched
    assert vibesync.status()["generated_geometry_notes"] == {}
