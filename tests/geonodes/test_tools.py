"""The Blender side of geonodes.build / geonodes.describe: the add-on `geonodes`'s manifest
and handlers, called as the agent router calls them (keyword arguments, a result dict)."""

from __future__ import annotations

import json
import os
import sys

import bpy

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "addons", "blender"))
import vibesync_geonodes  # noqa: E402

ADDON = os.path.join(REPO, "addons", "blender", "vibesync_geonodes")
GRAPHS = os.path.join(REPO, "crates", "vibesync-geonodes", "tests", "graphs")


def test_manifest_names_the_tools_the_handlers_implement():
    with open(os.path.join(ADDON, "addon_ai.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["addon_info"]["id"] == "geonodes"  # MCP names geonodes.build, geonodes.describe
    tools = {t["name"] for t in manifest["ai_integration"]["tools"]}
    assert tools == set(vibesync_geonodes.AI_COMMAND_HANDLERS) == {"build", "describe"}


def test_build_and_describe_handlers(fresh_file):
    with open(os.path.join(GRAPHS, "scatter.json"), encoding="utf-8") as f:
        text = f.read()
    out = vibesync_geonodes.build(object="Cube", graph_json=text)
    assert out["status"] == "success", out
    assert out["data"]["evaluated"]["instances"] == 25
    desc = vibesync_geonodes.describe(object="Cube", frames="connectivity")
    assert desc["status"] == "success"
    assert {n["id"] for n in desc["data"]["graph_json"]["nodes"]} >= {"grid", "iop", "go"}
    assert desc["data"]["suggested_frames"]
    # A failed build answers an error and changes nothing.
    before = [g.name for g in bpy.data.node_groups]
    bad = json.loads(text)
    bad["links"][0]["to_socket"] = "Nope"
    out = vibesync_geonodes.build(object="Cube", graph_json=json.dumps(bad))
    assert out["status"] == "error" and out["data"]["code"] == "UNKNOWN_SOCKET"
    assert [g.name for g in bpy.data.node_groups] == before
    assert vibesync_geonodes.build(object="Nobody", graph_json=text)["status"] == "error"
