"""`vibesync mcp` driven by the official MCP Python SDK (issue scenarios a–h)."""

from __future__ import annotations

import asyncio
import os
import time

import jsonschema
from conftest import enable, disable
from harness import bpy, daemon_binary
from mcpclient import body, mcp_session, pumped, until

from vibesync import manifests

BUILTINS = {"scene.query", "object.create", "object.delete", "object.transform", "object.rename",
            "object.reparent", "object.set_material", "addon.call"}


def names(tools) -> set:
    return {t.name for t in tools.tools}


def test_a_initialize_and_list_answer_at_once_with_nothing_running(tmp_path):
    async def scenario():
        t0 = time.monotonic()
        async with mcp_session(daemon_binary(), str(tmp_path / "nodaemon"), "default") as s:
            init = await asyncio.wait_for(s.initialize(), 5)
            listed = await asyncio.wait_for(s.list_tools(), 5)
            elapsed = time.monotonic() - t0
            assert elapsed < 1.0, f"initialize + tools/list took {elapsed:.2f}s"
            assert init.capabilities.tools is not None and init.capabilities.tools.list_changed
            assert "VibeSync" in (init.instructions or "")
            assert names(listed) == BUILTINS
            meta = jsonschema.Draft202012Validator.META_SCHEMA
            for t in listed.tools:
                schema = t.input_schema
                assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
                jsonschema.Draft202012Validator.check_schema(schema)
                jsonschema.validate(schema, meta)
                assert len(t.name) <= 64
                assert t.annotations is not None and t.annotations.read_only_hint is not None
            q = next(t for t in listed.tools if t.name == "scene.query")
            assert q.annotations.read_only_hint is True
            d = next(t for t in listed.tools if t.name == "object.delete")
            assert d.annotations.destructive_hint is True
            # A call with the daemon down: EDITOR_OFFLINE, as a tool result.
            r = await asyncio.wait_for(s.call_tool("addon.call", {"addon_id": "random_mesh_generator",
                                                                  "tool": "add_random_cube"}), 5)
            assert r.is_error and body(r)["error_code"] == "EDITOR_OFFLINE"
            r = await asyncio.wait_for(s.call_tool("scene.query", {}), 5)
            assert r.is_error and body(r)["error_code"] == "EDITOR_OFFLINE"
    asyncio.run(scenario())


def test_b_enabling_the_addon_adds_tools_with_list_changed(blender, project_id):
    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await until(lambda: True)
            before = s.notes.list_changed
            listed = await s.list_tools()
            assert not any(n.startswith("random_mesh_generator.") for n in names(listed))
            t0 = time.monotonic()
            enable("random_mesh_generator")
            await until(lambda: s.notes.list_changed > before, timeout=2.0, what="list_changed after enabling")
            assert time.monotonic() - t0 < 2.0
            listed = await pumped(s.list_tools())
            tools = {t.name: t for t in listed.tools}
            for n in ("add_random_cube", "add_random_sphere", "add_random_cylinder", "add_surprise_mesh"):
                assert f"random_mesh_generator.{n}" in tools
                jsonschema.Draft202012Validator.check_schema(tools[f"random_mesh_generator.{n}"].input_schema)
            cube = tools["random_mesh_generator.add_random_cube"]
            assert "When to use" in cube.description and "Examples" in cube.description
            assert cube.input_schema["properties"]["size"]["maximum"] == 100
            # Direct call and addon.call both work.
            r = await pumped(s.call_tool("random_mesh_generator.add_random_sphere", {"name": "Ball", "seed": 1}))
            assert not r.is_error, body(r)
            assert "Ball" in bpy.data.objects
            r = await pumped(s.call_tool("addon.call", {"addon_id": "random_mesh_generator", "tool": "add_random_cylinder",
                                                        "arguments": {"name": "Can", "seed": 2}}))
            assert not r.is_error, body(r)
            assert "Can" in bpy.data.objects
            # Disabling removes them; addon.call then refuses with a clear code.
            n = s.notes.list_changed
            disable("random_mesh_generator")
            await until(lambda: s.notes.list_changed > n, timeout=2.0, what="list_changed after disabling")
            listed = await pumped(s.list_tools())
            assert not any(x.startswith("random_mesh_generator.") for x in names(listed))
            r = await pumped(s.call_tool("addon.call", {"addon_id": "random_mesh_generator", "tool": "add_random_cube"}))
            assert r.is_error and body(r)["error_code"] == "UNKNOWN_TOOL"
            n = s.notes.list_changed
            enable("random_mesh_generator")
            await until(lambda: s.notes.list_changed > n, timeout=2.0, what="list_changed after re-enabling")
            r = await pumped(s.call_tool("addon.call", {"addon_id": "random_mesh_generator", "tool": "add_surprise_mesh",
                                                        "arguments": {"kind": "cube", "seed": 3}}))
            assert not r.is_error, body(r)
    asyncio.run(scenario())
