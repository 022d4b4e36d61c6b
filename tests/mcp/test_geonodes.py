"""(d) "Scatter cones on a grid, random scale" through an MCP client: geonodes.validate in the
MCP server, geonodes.build dispatched to Blender's `geonodes` add-on through the daemon's
agent router; it evaluates to one instance per grid point with differing scales and no
modifier warning, and the realized result appears in the Unity host. A graph with errors is
answered by the validator and never reaches Blender (docs/GEONODES.md §MCP tools)."""

from __future__ import annotations

import asyncio
import json
import os
import time

from conftest import REPO, enable
from harness import bpy, daemon_binary, drive, uuid_of
from mcpclient import body, mcp_session, pumped

GRAPHS = os.path.join(REPO, "crates", "vibesync-geonodes", "tests", "graphs")


def read(name: str) -> str:
    with open(os.path.join(GRAPHS, name), encoding="utf-8") as f:
        return f.read()


async def wait_tool(s, name: str):
    end = time.monotonic() + 10
    while name not in {t.name for t in (await pumped(s.list_tools())).tools}:
        if time.monotonic() > end:
            raise AssertionError(f"tool {name} never appeared")
        await asyncio.sleep(0.05)


def test_d_scatter_built_through_mcp_appears_in_unity(blender, host, project_id):
    bpy.ops.mesh.primitive_cube_add(size=2, location=(0, 0, 0))
    ob = bpy.context.active_object
    ob.name = "Scatter"
    u = drive(lambda: uuid_of(ob), what="uuid on the cube")
    host.wait_obj(u, lambda o: o.get("mesh") is not None, what="plain cube on the host")

    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            enable("vibesync_geonodes")
            await wait_tool(s, "geonodes.build")
            r = await pumped(s.call_tool("geonodes.catalogue", {"search": "scatter", "limit": 3}))
            assert not r.is_error and body(r)["count"] == 3, body(r)
            r = await pumped(s.call_tool("geonodes.validate", {"graph_json": read("scatter.json")}))
            assert body(r)["status"] == "GRAPH_OK", body(r)
            # Errors are answered by the validator: nothing reaches Blender.
            groups = sorted(g.name for g in bpy.data.node_groups)
            r = await pumped(s.call_tool("geonodes.build",
                                         {"object": "Scatter", "graph_json": read("seed_example.json")}))
            assert r.is_error and body(r)["validation"]["status"] == "ERRORS_FOUND", body(r)
            assert body(r)["error_code"] == "INVALID_ARGUMENT" and body(r)["field"] == "/graph_json", body(r)
            assert sorted(g.name for g in bpy.data.node_groups) == groups and not ob.modifiers
            # The MCP server lists geonodes.* from the start; the daemon's router learns that
            # Blender offers them when the enabled add-on's registry arrives. Until then a build
            # is refused with UNKNOWN_TOOL before anything runs: wait for that event, bounded.
            end = time.monotonic() + 20
            while True:
                r = await pumped(s.call_tool("geonodes.build",
                                             {"object": "Scatter", "graph_json": read("scatter.json")}), timeout=60)
                if not (r.is_error and body(r).get("error_code") == "UNKNOWN_TOOL") or time.monotonic() > end:
                    break
                await asyncio.sleep(0.1)
            assert not r.is_error, body(r)
            return body(r)

    out = asyncio.run(scenario())
    evaluated = json.dumps(out)
    ev = bpy.data.objects["Scatter"]
    from vibesync import geonodes
    summary = geonodes.evaluated_summary(ev)
    assert summary["instances"] == 25 and len(set(summary["instance_scales"])) > 1, summary
    assert summary["warnings"] == [], summary
    o = host.wait_obj(u, lambda o: (o.get("mesh") or {}).get("vertex_count") == 8 + 25 * 17,
                      timeout=30, what="the scatter's evaluated mesh on the host")
    assert o["mesh"]["vertex_count"] == 8 + 25 * 17, evaluated
