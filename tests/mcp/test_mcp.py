"""`vibesync mcp` driven by the official MCP Python SDK (issue scenarios a–h)."""

from __future__ import annotations

import asyncio
import os
import time

import jsonschema
import pytest
from conftest import enable, disable
from harness import bpy, daemon_binary, vibesync
from mcpclient import body, mcp_session, pumped, until

from vibesync import manifests

BUILTINS = {"scene.query", "object.create", "object.delete", "object.transform", "object.rename",
            "object.reparent", "object.set_material", "addon.call",
            "geonodes.catalogue", "geonodes.validate", "geonodes.from_mermaid", "geonodes.build",
            "geonodes.describe"}


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
            # Geometry Nodes: the catalogue answers without any editor; a broken graph never
            # leaves the server.
            r = await asyncio.wait_for(s.call_tool("geonodes.catalogue", {"node": "MeshCone"}), 5)
            assert not r.is_error and body(r)["nodes"][0]["identifier"] == "GeometryNodeMeshCone", body(r)
            r = await asyncio.wait_for(
                s.call_tool("geonodes.build", {"object": "Cube", "graph_json": "{\"nodes\": 3}"}), 5)
            assert r.is_error and body(r)["error_code"] == "INVALID_ARGUMENT", body(r)
            assert body(r)["validation"]["status"] == "ERRORS_FOUND", body(r)
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
            r = await pumped(s.call_tool("addon.call", {"addon_id": "random_mesh_generator",
                                                        "tool": "add_random_cylinder",
                                                        "arguments": {"name": "Can", "seed": 2}}))
            assert not r.is_error, body(r)
            assert "Can" in bpy.data.objects
            # Disabling removes them; addon.call then refuses with a clear code.
            n = s.notes.list_changed
            disable("random_mesh_generator")
            await until(lambda: s.notes.list_changed > n, timeout=2.0, what="list_changed after disabling")
            listed = await pumped(s.list_tools())
            assert not any(x.startswith("random_mesh_generator.") for x in names(listed))
            r = await pumped(s.call_tool("addon.call",
                                         {"addon_id": "random_mesh_generator", "tool": "add_random_cube"}))
            assert r.is_error and body(r)["error_code"] == "UNKNOWN_TOOL"
            n = s.notes.list_changed
            enable("random_mesh_generator")
            await until(lambda: s.notes.list_changed > n, timeout=2.0, what="list_changed after re-enabling")
            r = await pumped(s.call_tool("addon.call", {"addon_id": "random_mesh_generator",
                                                        "tool": "add_surprise_mesh",
                                                        "arguments": {"kind": "cube", "seed": 3}}))
            assert not r.is_error, body(r)
    asyncio.run(scenario())


def wal(daemon) -> list:
    return daemon.tail()


def allow_test_tools():
    enable("random_mesh_generator")
    enable("vibesync_test_tools")
    manifests.set_consent("vibesync_test_tools", True)


async def wait_tool(s, name: str, timeout: float = 10.0):
    """Wait until the MCP server lists tool `name`. Blender's pump runs the whole time, as
    an editor's timers do (between list calls too: its registry poll sends the manifest);
    fails at the deadline naming what was listed and what Blender knew."""
    end = time.monotonic() + timeout
    while True:
        listed = names(await pumped(s.list_tools()))
        if name in listed:
            return
        if time.monotonic() > end:
            raise AssertionError(f"tool {name} never appeared within {timeout} s; listed: {sorted(listed)}; "
                                 f"blender: {vibesync.status()}")
        await pumped(asyncio.sleep(0.05))


def blender_hashes() -> dict:
    """State hash of every tracked object as Blender holds it (the addon's own rule)."""
    from vibesync import capture, wire
    sess = vibesync._session()
    out = {}
    for ob in bpy.data.objects:
        uid = ob.get("vibesync_uuid")
        if uid:
            st = capture.read_state(ob, "object", sess.registry, sess.mesh_hashes)
            out[uid] = wire.state_hash(capture.state_in_meters(st, sess.unit_scale))
    return out


def test_c_add_random_cube_reaches_unity_with_its_transaction_and_audit(host, blender, project_id):
    async def scenario():
        enable("random_mesh_generator")
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await wait_tool(s, "random_mesh_generator.add_random_cube")
            r = await pumped(s.call_tool("random_mesh_generator.add_random_cube",
                                         {"size": 2.0, "location": [1.0, 2.0, 3.0], "name": "AgentCube"}))
            assert not r.is_error, body(r)
            return body(r)
    res = asyncio.run(scenario())
    ob = bpy.data.objects["AgentCube"]
    uid = ob["vibesync_uuid"]
    assert uid in res["uuids"]
    # In the Unity host: Blender (1, 2, 3) is Unity (1, 3, 2), with its mesh.
    o = host.wait_obj(uid, lambda o: o.get("name") == "AgentCube" and o.get("mesh") is not None,
                      what="AgentCube with its mesh in Unity")
    assert [round(v, 4) for v in o["transform"]["position"]] == [1.0, 3.0, 2.0], o
    assert o["mesh"]["vertex_count"] == 8, o["mesh"]
    # The WAL: BEGIN (agent session, tool) -> STEPs naming the uuid -> COMMIT -> FINAL.
    recs = [r for r in wal(blender) if r["operation_id"] == res["operation_id"]]
    assert [r["phase"] for r in recs][0] == "BEGIN" and [r["phase"] for r in recs][-2:] == ["COMMIT", "FINAL"]
    assert recs[0]["payload"]["tool"] == "random_mesh_generator.add_random_cube"
    assert recs[0]["payload"]["agent_session"] == recs[0]["session_id"]
    assert any(r["phase"] == "STEP" and uid in r["uuids"] for r in recs)
    # The object's own sync batch committed too (the state the registry holds).
    assert any(r["phase"] == "COMMIT" and uid in r["uuids"] and r["operation_id"] != res["operation_id"]
               for r in wal(blender))
    # An audit commit names the call's operation.
    import subprocess
    def audited():
        out = subprocess.run(["git", "--git-dir", os.path.join(blender.data_dir, ".git_safety"), "log",
                              "--format=%B", "--all"], capture_output=True, text=True)
        return res["operation_id"] in out.stdout
    from harness import drive
    drive(audited, timeout=10, what="audit commit of the call")


def test_d_bad_arguments_are_refused_with_code_and_field_and_change_nothing(blender, project_id, workdir):
    allow_test_tools()
    outside = os.path.join(workdir, "outside.json")
    with open(outside, "w") as f:
        f.write("[[0, 0, 0]]")
    cases = [
        ("random_mesh_generator.add_random_cube", {"size": 1000}, "OUT_OF_RANGE", "/size"),
        ("random_mesh_generator.add_surprise_mesh", {"kind": "torus"}, "INVALID_OPTION", "/kind"),
        ("random_mesh_generator.add_random_cube", {"material": "NoSuchMaterial"}, "NOT_FOUND", "/material"),
        ("vibesync_test_tools.rename_object", {"object_name": "Ghost", "new_name": "x"}, "NOT_FOUND", "/object_name"),
        ("vibesync_test_tools.import_points", {"file_path": "../outside.json"}, "PATH_OUTSIDE_PROJECT", "/file_path"),
        ("vibesync_test_tools.import_points", {"file_path": outside}, "PATH_OUTSIDE_PROJECT", "/file_path"),
        ("random_mesh_generator.add_random_cube", {"colour": [1, 0, 0]}, "UNKNOWN_FIELD", "/colour"),
        ("random_mesh_generator.add_random_cube", {"size": "big"}, "INVALID_TYPE", "/size"),
        ("random_mesh_generator.add_random_cube", {"location": [1, 2]}, "OUT_OF_RANGE", "/location"),
        ("vibesync_test_tools.slow", {}, "MISSING_FIELD", "/seconds"),
        ("object.transform", {"uuid": "not-a-uuid"}, "INVALID_ARGUMENT", "/uuid"),
    ]

    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await wait_tool(s, "vibesync_test_tools.import_points")
            await pumped(asyncio.sleep(0.5))  # let the startup registration settle
            before_wal = len(wal(blender))
            before_names = sorted(bpy.data.objects.keys())
            before_hashes = blender_hashes()
            for tool, args, code, field in cases:
                r = await pumped(s.call_tool(tool, args))
                assert r.is_error, (tool, args, body(r))
                b = body(r)
                assert (b["error_code"], b["field"]) == (code, field), (tool, args, b)
                assert b["message"]
            await pumped(asyncio.sleep(0.3))
            assert len(wal(blender)) == before_wal
            assert sorted(bpy.data.objects.keys()) == before_names
            assert blender_hashes() == before_hashes
    asyncio.run(scenario())


def test_e_calls_wait_while_a_person_edits_with_progress(blender, project_id):
    enable("random_mesh_generator")
    progress = []

    async def on_progress(p, total, message):
        progress.append((time.monotonic(), message))

    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await wait_tool(s, "random_mesh_generator.add_random_cube")
            # A person moves the default cube: Blender reports activity.
            bpy.data.objects["Cube"].location.x += 1.0
            await until(lambda: vibesync.status()["user_active"], what="Blender reports the person")

            async def person_keeps_editing():
                # Until the call is held: a single move's report may be older than
                # `user_idle_ms` by the time the call arrives on a loaded machine.
                end = time.monotonic() + 15
                while not progress and time.monotonic() < end:
                    bpy.data.objects["Cube"].location.x += 0.01
                    await asyncio.sleep(0.2)

            editing = asyncio.ensure_future(person_keeps_editing())
            t0 = time.monotonic()
            r = await pumped(s.call_tool("random_mesh_generator.add_random_cube", {"name": "Patient"},
                                         progress_callback=on_progress), timeout=30)
            waited = time.monotonic() - t0
            await editing
            assert not r.is_error, body(r)
            return waited
    from harness import vibesync
    waited = asyncio.run(scenario())
    assert progress, "no progress notification while the call was held"
    assert any("held" in (m or "") for _, m in progress), progress
    assert waited >= 1.5, f"the call ran after {waited:.2f}s: it was not held"
    assert "Patient" in bpy.data.objects


@pytest.mark.governance("crash_loop_threshold = 1")
def test_f_safe_mode_refuses_and_a_failing_tool_alone_is_blocked(blender, project_id):
    import subprocess
    allow_test_tools()
    # A crash: the next boot is unclean and (threshold 1) starts in safe mode.
    blender.kill()
    blender.start(port=blender.port)

    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await wait_tool(s, "vibesync_test_tools.explode_halfway")
            r = await pumped(s.call_tool("random_mesh_generator.add_random_cube", {}))
            assert r.is_error and body(r)["error_code"] == "SAFE_MODE", body(r)
            out = subprocess.run([blender.binary, "safe-mode", "clear", "--data-dir", blender.data_dir],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            for _ in range(3):
                r = await pumped(s.call_tool("vibesync_test_tools.explode_halfway", {}))
                assert r.is_error and body(r)["error_code"] == "HANDLER_FAILED", body(r)
            r = await pumped(s.call_tool("vibesync_test_tools.explode_halfway", {}))
            assert r.is_error and body(r)["error_code"] == "BLOCKED", body(r)
            # Only that tool: the others still run.
            r = await pumped(s.call_tool("vibesync_test_tools.count_objects", {}))
            assert not r.is_error, body(r)
            r = await pumped(s.call_tool("random_mesh_generator.add_random_cube", {"name": "StillWorks"}))
            assert not r.is_error, body(r)
    asyncio.run(scenario())
    assert "StillWorks" in bpy.data.objects


def test_g_a_handler_that_raises_halfway_changes_nothing(host, blender, project_id):
    allow_test_tools()

    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await wait_tool(s, "vibesync_test_tools.explode_halfway")
            await pumped(asyncio.sleep(1.0))  # the factory scene is synced
            names_before = sorted(bpy.data.objects.keys())
            hashes_before = blender_hashes()
            host_before = sorted(o["uuid"] for o in host.scene()["objects"])
            r = await pumped(s.call_tool("vibesync_test_tools.explode_halfway", {"count": 3}))
            assert r.is_error and body(r)["error_code"] == "HANDLER_FAILED", body(r)
            assert "undone" in body(r)["message"]
            await pumped(asyncio.sleep(0.5))
            assert sorted(bpy.data.objects.keys()) == names_before
            assert blender_hashes() == hashes_before
            assert sorted(o["uuid"] for o in host.scene()["objects"]) == host_before
            recs = [x for x in wal(blender) if x["operation_id"] == body(r)["operation_id"]]
            assert [x["phase"] for x in recs] == ["BEGIN", "ROLLBACK"], recs
            assert recs[1]["error_code"] == "HANDLER_FAILED"
    asyncio.run(scenario())


def test_builtin_tools_act_on_both_editors(host, blender, project_id):
    from harness import close

    def blender_obj(uid):
        return next((o for o in bpy.data.objects if o.get("vibesync_uuid") == uid), None)

    def registered(uid, name):
        # Blender registers what it applied (its editor_ref). The daemon today can drop a
        # just-committed state when that register lands between a batch's STEP and COMMIT
        # (fixed in the sync actor separately): the next call waits for it to settle.
        sess = vibesync._session()
        return sess.registered.get(uid) == f"OB:{name}" and not sess.engine.pending

    async def scenario():
        async with mcp_session(daemon_binary(), blender.data_dir, project_id) as s:
            await s.initialize()
            await pumped(asyncio.sleep(0.5))
            # Canonical (1, 3, -2) is Blender (1, 2, 3) and Unity (1, 3, 2).
            r = await pumped(s.call_tool("object.create", {"name": "AgentEmpty", "location": [1.0, 3.0, -2.0]}))
            assert not r.is_error, body(r)
            uid = body(r)["uuid"]
            assert body(r)["outcome"] == "committed"
            ob = await until(lambda: blender_obj(uid), what="the created object in Blender")
            assert close(ob.location, (1.0, 2.0, 3.0)), tuple(ob.location)
            o = host.wait_obj(uid, what="the created object in Unity")
            assert close(o["transform"]["position"], [1.0, 3.0, 2.0]), o
            await until(lambda: registered(uid, "AgentEmpty"), what="Blender registered it")
            r = await pumped(s.call_tool("object.rename", {"uuid": uid, "name": "Renamed"}))
            assert not r.is_error, body(r)
            await until(lambda: blender_obj(uid) is not None and blender_obj(uid).name == "Renamed", what="rename")
            await until(lambda: registered(uid, "Renamed"), what="Blender registered the new name")
            r = await pumped(s.call_tool("object.transform", {"uuid": uid, "scale": [2.0, 2.0, 2.0]}))
            assert not r.is_error, body(r)
            await until(lambda: close(blender_obj(uid).scale, (2.0, 2.0, 2.0)), what="scale in Blender")
            assert close(blender_obj(uid).location, (1.0, 2.0, 3.0))  # omitted parts kept
            r = await pumped(s.call_tool("scene.query", {"uuid": uid}))
            objs = body(r)["objects"]
            assert len(objs) == 1 and objs[0]["name"] == "Renamed" and close(objs[0]["s"], [2, 2, 2]), objs
            r = await pumped(s.call_tool("object.transform", {"uuid": "00000000-0000-4000-8000-000000000001"}))
            assert r.is_error and body(r)["error_code"] == "NOT_FOUND", body(r)
            # set_material: omitted parts keep their current value, as transform's do (§9.4).
            # (The factory Cube once its synced state is committed: registered alone, a change
            # of it is NOT_FOUND. Fails after 20 s.)
            cube = None
            for _ in range(200):
                objs = body(await pumped(s.call_tool("scene.query", {"name": "Cube"})))["objects"]
                # (Earlier tests' Cubes may be registered too: the one Blender holds now.)
                here = [o["uuid"] for o in objs if "t" in o and blender_obj(o["uuid"]) is not None]
                if here:
                    cube = here[0]
                    break
                await pumped(asyncio.sleep(0.1))
            assert cube is not None, "the Cube's synced state within 20 s"
            shiny = {"uuid": cube, "base_color": [1.0, 0.0, 0.0, 1.0], "metallic": 0.9, "roughness": 0.1}
            r = await pumped(s.call_tool("object.set_material", shiny))
            assert not r.is_error, body(r)
            r = await pumped(s.call_tool("object.set_material", {"uuid": cube, "base_color": [0.0, 0.0, 1.0, 1.0]}))
            assert not r.is_error, body(r)
            mat = body(await pumped(s.call_tool("scene.query", {"uuid": cube})))["objects"][0]["material"]
            assert close(mat["base_color"], [0.0, 0.0, 1.0, 1.0]), mat
            assert abs(mat["metallic"] - 0.9) < 1e-4 and abs(mat["roughness"] - 0.1) < 1e-4, mat
            await until(lambda: abs(blender_obj(cube).active_material.node_tree.nodes["Principled BSDF"]
                                    .inputs["Metallic"].default_value - 0.9) < 1e-4, what="metallic kept in Blender")
            r = await pumped(s.call_tool("object.delete", {"uuid": uid}))
            assert not r.is_error, body(r)
            await until(lambda: blender_obj(uid) is None, what="deleted in Blender")
            from harness import drive
            drive(lambda: host.obj(uid) is None, what="deleted in Unity")
    asyncio.run(scenario())
