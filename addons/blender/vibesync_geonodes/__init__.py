"""VibeSync Geometry Nodes: the Blender side of the `geonodes.build` and `geonodes.describe`
agent tools (docs/GEONODES.md §MCP tools).

Handlers follow the add-on tool standard: keyword arguments (validated against
`addon_ai.json` by VibeSync's router), a dict `{status, message, data}` back. The work is
done by `vibesync.geonodes` (the builder): all-or-nothing, so a failed build leaves the file
as it was; the router makes each call one undo step, so the builder pushes none itself.
"""

import json

import bpy

bl_info = {
    "name": "VibeSync Geometry Nodes",
    "author": "VibeSync",
    "version": (1, 0, 0),
    "blender": (4, 2, 0),
    "category": "Node",
    "description": "Geometry Nodes trees from graph_json, callable by AI agents through VibeSync",
}


def _geonodes():
    from vibesync import geonodes  # the VibeSync add-on must be enabled
    return geonodes


def _error(text: str, data: dict | None = None) -> dict:
    return {"status": "error", "message": text, "data": data or {}}


def build(object, graph_json, modifier="GeometryNodes", inputs_json=None):  # noqa: A002 - manifest name
    geonodes = _geonodes()
    ob = bpy.data.objects.get(object)
    if ob is None:
        return _error(f"no object named {object!r}")
    try:
        graph, warnings = geonodes.parse_graph_text(graph_json)
        inputs = json.loads(inputs_json) if inputs_json else None
    except ValueError as e:
        return _error(f"graph_json or inputs_json is not JSON: {e}")
    try:
        summary = geonodes.build(ob, graph, modifier=modifier, inputs=inputs, undo=False)
    except geonodes.BuildError as e:
        return _error(str(e), e.to_dict())
    evaluated = geonodes.evaluated_summary(ob)
    summary.update({"warnings": warnings, "evaluated": evaluated})
    status = "warning" if evaluated["warnings"] else "success"
    return {"status": status,
            "message": f"Built {summary['nodes']} nodes and {summary['links']} links into "
                       f"{ob.name}'s {modifier}: {evaluated['vertices']} vertices, "
                       f"{evaluated['instances']} instances",
            "data": summary}


def describe(object, modifier="GeometryNodes", frames="none"):  # noqa: A002 - manifest name
    geonodes = _geonodes()
    ob = bpy.data.objects.get(object)
    mod = ob.modifiers.get(modifier) if ob is not None else None
    if mod is None or mod.type != "NODES" or mod.node_group is None:
        return _error(f"{object!r} has no Geometry Nodes modifier {modifier!r} with a tree")
    data = {"graph_json": geonodes.describe(mod.node_group)}
    if frames != "none":
        data["suggested_frames"] = geonodes.auto_frame_graph(mod.node_group, strategy=frames)
    return {"status": "success", "message": f"{len(data['graph_json']['nodes'])} nodes", "data": data}


AI_COMMAND_HANDLERS = {"build": build, "describe": describe}


def register():
    pass


def unregister():
    pass
