"""The Blender side of agent tool calls, through the real daemon with a raw `agent` client:
manifests, the router's validation, one undo step per call, rollback of failed handlers, and
the call's WAL transaction."""

from __future__ import annotations

import json
import os
import time

import pytest

from agent import Agent
from conftest import enable
from harness import bpy, drive, vibesync

from vibesync import manifests


def ids(reg) -> set:
    return {a["addon_id"] for a in reg["available_addons"]}


def test_manifest_validation_pure():
    path = os.path.join(os.path.dirname(vibesync.__file__), "..", "random_mesh_generator", "addon_ai.json")
    with open(path) as f:
        doc = json.load(f)
    m, problems = manifests.validate_manifest(doc, "x.json", (4, 5, 0))
    assert problems == [] and m is doc
    bad = json.loads(json.dumps(doc))
    bad["ai_integration"]["tools"][0]["parameters"][0]["min"] = 500  # min > max
    bad["ai_integration"]["tools"][1]["name"] = "add_random_cube"    # duplicate
    bad["ai_integration"]["tools"][3]["parameters"][0]["options"] = []
    _, problems = manifests.validate_manifest(bad, "x.json", (4, 5, 0))
    paths = {p["path"] for p in problems}
    assert "ai_integration.tools[0].parameters[0].min" in paths
    assert "ai_integration.tools[1].name" in paths
    assert "ai_integration.tools[3].parameters[0].options" in paths
    _, problems = manifests.validate_manifest(doc, "x.json", (4, 1, 0))
    assert [p["path"] for p in problems] == ["ai_integration.requirements.blender_version_min"]


def test_malformed_manifests_are_refused_with_their_reason(blender, project_id):
    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    for m in ("bad_manifest_missing", "bad_manifest_types", "bad_manifest_dupes",
              "bad_manifest_conflict", "bad_manifest_version"):
        enable(m)
    reg = agent.registry(lambda r: len({x["addon_id"] for x in r["rejected"]}) >= 5)
    assert ids(reg) == {"random_mesh_generator"}
    by = {}
    for r in reg["rejected"]:
        by.setdefault(r["addon_id"], []).append(r)
        assert r["file"].endswith("addon_ai.json") and r["reason"]
    paths = lambda a: {r["path"] for r in by[a]}  # noqa: E731
    assert {"ai_integration.agent_description", "addon_info.description",
            "ai_integration.tools[0].description"} <= paths("bad_manifest_missing")
    assert {"ai_integration.tools[0].parameters[0].type", "ai_integration.tools[0].parameters[1].options",
            "ai_integration.tools[0].parameters[2].min"} <= paths("bad_manifest_types")
    assert "ai_integration.tools[1].name" in paths("bad_manifest_dupes")
    assert any("duplicate" in r["reason"] for r in by["bad_manifest_dupes"])
    assert paths("bad_manifest_conflict") == {"ai_integration.requirements.conflicts_with[0]"}
    assert paths("bad_manifest_version") == {"ai_integration.requirements.blender_version_min"}
    # The panel's status shows the same reasons.
    st = vibesync.status()["ai"]
    assert {r["addon_id"] for r in st["rejected"]} >= {"bad_manifest_missing", "bad_manifest_version"}
    agent.close()


def test_consent_withholds_third_party_tools(blender, project_id):
    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    enable("vibesync_test_tools")
    reg = agent.registry(lambda r: any(w["addon_id"] == "vibesync_test_tools" for w in r["withheld"]))
    assert ids(reg) == {"random_mesh_generator"}
    manifests.set_consent("vibesync_test_tools", True)
    # addon_registered arrives first (one push), then the full registry_updated.
    reg = agent.registry(lambda r: "vibesync_test_tools" in ids(r) and not r["withheld"])
    assert ids(reg) == {"random_mesh_generator", "vibesync_test_tools"}
    rid = agent.call("vibesync_test_tools", "count_objects")
    assert agent.result(rid)["result"]["status"] == "success"
    agent.close()


def test_call_creates_a_mesh_in_one_undo_step_and_one_transaction(blender, project_id):
    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    agent.registry(lambda r: "random_mesh_generator" in ids(r))
    before = len(bpy.data.objects)
    rid = agent.call("random_mesh_generator", "add_random_cube",
                     {"size": 2.0, "location": [1.0, 2.0, 3.0], "name": "AgentCube", "seed": 7})
    resp = agent.result(rid)
    assert resp["result"]["status"] == "success", resp
    ob = bpy.data.objects["AgentCube"]
    assert len(bpy.data.objects) == before + 1 and len(ob.data.vertices) == 8
    assert tuple(ob.location) == (1.0, 2.0, 3.0)
    uid = ob["vibesync_uuid"]
    assert uid in resp["uuids"]
    # One undo step removes the whole call.
    bpy.ops.ed.undo()
    assert "AgentCube" not in bpy.data.objects and len(bpy.data.objects) == before
    bpy.ops.ed.redo()
    # The WAL: the call's transaction, and the sync batch carrying the object.
    def txn():
        recs = blender.tail()
        mine = [r for r in recs if r["operation_id"] == resp["operation_id"]]
        return mine if any(r["phase"] == "FINAL" for r in mine) else None
    recs = drive(txn, what="the call's FINAL")
    phases = [r["phase"] for r in recs]
    assert phases[0] == "BEGIN" and phases[-2:] == ["COMMIT", "FINAL"]
    begin = recs[0]
    assert begin["payload"]["tool"] == "random_mesh_generator.add_random_cube"
    assert begin["session_id"] == agent.welcome["session_id"]
    assert any(r["phase"] == "STEP" and uid in r["uuids"] for r in recs)
    agent.close()


def test_raising_handler_is_undone_and_rolled_back(blender, project_id):
    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    enable("vibesync_test_tools")
    manifests.set_consent("vibesync_test_tools", True)
    agent.registry(lambda r: "vibesync_test_tools" in ids(r))
    names = sorted(bpy.data.objects.keys())
    cube_loc = tuple(bpy.data.objects["Cube"].location)
    rid = agent.call("vibesync_test_tools", "explode_halfway", {"count": 3})
    resp = agent.result(rid)
    assert resp["result"]["status"] == "error"
    assert resp["result"]["error_code"] == "HANDLER_FAILED", resp
    assert sorted(bpy.data.objects.keys()) == names
    assert tuple(bpy.data.objects["Cube"].location) == cube_loc
    recs = [r for r in blender.tail() if r["operation_id"] == resp["operation_id"]]
    assert [r["phase"] for r in recs] == ["BEGIN", "ROLLBACK"]
    assert recs[1]["error_code"] == "HANDLER_FAILED"
    agent.close()


def test_bad_arguments_are_refused_by_the_router_without_running(blender, project_id, workdir):
    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    enable("vibesync_test_tools")
    manifests.set_consent("vibesync_test_tools", True)
    agent.registry(lambda r: "vibesync_test_tools" in ids(r))
    seq_before = len(blender.tail())
    names = sorted(bpy.data.objects.keys())
    outside = os.path.join(workdir, "outside.json")
    with open(outside, "w") as f:
        f.write("[[0,0,0]]")
    cases = [
        ("random_mesh_generator", "add_random_cube", {"size": 1000}, "OUT_OF_RANGE", "/size"),
        ("random_mesh_generator", "add_surprise_mesh", {"kind": "torus"}, "INVALID_OPTION", "/kind"),
        ("random_mesh_generator", "add_random_cube", {"material": "NoSuchMaterial"}, "NOT_FOUND", "/material"),
        ("vibesync_test_tools", "rename_object", {"object_name": "Ghost", "new_name": "x"},
         "NOT_FOUND", "/object_name"),
        ("vibesync_test_tools", "import_points", {"file_path": "../outside.json"},
         "PATH_OUTSIDE_PROJECT", "/file_path"),
        ("random_mesh_generator", "add_random_cube", {"colour": [1, 0, 0]}, "UNKNOWN_FIELD", "/colour"),
        ("random_mesh_generator", "add_random_cube", {"size": "big"}, "INVALID_TYPE", "/size"),
        ("random_mesh_generator", "add_random_cube", {"location": [1, 2]}, "OUT_OF_RANGE", "/location"),
        ("vibesync_test_tools", "slow", {}, "MISSING_FIELD", "/seconds"),
    ]
    for addon, cmd, params, code, field in cases:
        resp = agent.result(agent.call(addon, cmd, params))
        assert resp["result"]["error_code"] == code, (params, resp)
        assert resp["result"]["field"] == field, (params, resp)
    assert sorted(bpy.data.objects.keys()) == names
    assert len(blender.tail()) == seq_before
    agent.close()


def test_calls_wait_while_blender_is_in_edit_mode(blender, project_id):
    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    agent.registry(lambda r: "random_mesh_generator" in ids(r))
    cube = bpy.data.objects["Cube"]
    bpy.context.view_layer.objects.active = cube
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        rid = agent.call("random_mesh_generator", "add_random_cube", {"name": "AfterEdit"})
        p = drive(lambda: agent.take(lambda m: m["type"] == "command_progress" and m["state"] == "busy"),
                  what="a busy progress while in edit mode")
        assert "edit" in p["reason"], p
        assert "AfterEdit" not in bpy.data.objects
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    resp = agent.result(rid)
    assert resp["result"]["status"] == "success", resp
    assert "AfterEdit" in bpy.data.objects
    agent.close()


@pytest.mark.parametrize("tool,params", [("delete_object", {"object_name": "Cube"}),
                                         ("delete_matching", {"prefix": "Cub"})],
                         ids=["named", "unnamed"])
def test_an_agent_tools_delete_of_what_a_person_in_unity_keeps_is_undone_everywhere(
        host, blender, project_id, tool, params):
    """A person in Unity moves the Cube; Blender does not confirm it in time, so Unity keeps
    the move "not synced" and retries it later. Meanwhile an agent's tool deletes the Cube in
    Blender. The delete went as a person's `tombstone`: committed at once and applied in Unity
    over the kept move, so automation took the Cube from under the person's hands. It now goes
    as a `delete` change carrying the call's `automation`: Unity keeps the Cube, the delete
    rolls back everywhere (the daemon gives Blender the Cube back), and the person's move then
    stands in both editors (PROTOCOL.md §5, §6.3, §6.4, §9.2). The Cube comes back whole,
    whether the call named it or deleted it by a prefix (copied from the state before the
    call, §9.2)."""
    from harness import close

    agent = Agent(blender, project_id)
    enable("random_mesh_generator")
    enable("vibesync_test_tools")
    manifests.set_consent("vibesync_test_tools", True)
    agent.registry(lambda r: "vibesync_test_tools" in ids(r))
    u = bpy.data.objects["Cube"]["vibesync_uuid"]
    host.wait_obj(u, what="the Cube in Unity")
    # What the person set up on it, which no other editor carries (PROTOCOL.md §6.1).
    cube = bpy.data.objects["Cube"]
    cube.modifiers.new("Bevel", "BEVEL").width = 0.2
    cube.constraints.new("LIMIT_LOCATION").use_max_z = True
    cube["note"] = "hand-tuned"
    aim = cube.constraints.new("TRACK_TO")  # a pointer at another object, muted
    aim.target, aim.mute = bpy.data.objects["Camera"], True
    drive(lambda: not vibesync._session().engine.pending, what="Blender idle")

    host.cmd(f"move {u} 0 0 4")
    # Blender is not ticked (`host.stats()` would tick it): it does not confirm the move
    # within the daemon's 5 s, and Unity keeps the move not synced.
    deadline = time.monotonic() + 15
    while True:
        i = host.cmd("stats")
        while (stats := host.find("stats", i)) is None:
            assert time.monotonic() < deadline, "the host answers `stats`"
            time.sleep(0.02)
        if stats["not_synced"] == 1:
            break
        assert time.monotonic() < deadline, f"Unity keeps its move not synced: {stats}"
        time.sleep(0.2)
    started = len(blender.tail())

    rid = agent.call("vibesync_test_tools", tool, params)
    resp = agent.result(rid)
    assert resp["result"]["status"] == "success" and u in resp["uuids"], resp

    def rolled_back():
        return [r for r in blender.tail()[started:] if r.get("phase") == "ROLLBACK"
                and u in (r.get("uuids") or [])]

    def blender_cube():
        return next((o for o in bpy.data.objects if o.get("vibesync_uuid") == u), None)

    drive(lambda: rolled_back() and blender_cube() is not None, timeout=20,
          what="the agent's delete rolled back and the Cube back in Blender")
    o = host.obj(u)
    assert o is not None and close(o["transform"]["position"], [0, 0, 4]), \
        "Unity kept the Cube with the person's move"
    assert not [r for r in blender.tail()[started:] if r.get("phase") == "BEGIN"
                and (r.get("payload") or {}).get("op") == "tombstone"], "no tombstone request went"
    # Blender's Cube is made again as the call deleted it: its own mesh and material, and
    # its modifier, constraint and custom property (the call named it: copied before it ran).
    ob = blender_cube()
    assert ob.data.name == "Cube" and len(ob.data.vertices) == 8, ob.data.name
    assert [s.material.name for s in ob.material_slots] == ["Material"], list(ob.material_slots)
    assert [(m.name, m.type, round(m.width, 4)) for m in ob.modifiers] == [("Bevel", "BEVEL", 0.2)], \
        list(ob.modifiers)
    assert [(c.type, getattr(c, "use_max_z", None), getattr(c, "target", None)) for c in ob.constraints] \
        == [("LIMIT_LOCATION", True, None), ("TRACK_TO", None, bpy.data.objects["Camera"])], list(ob.constraints)
    assert sorted(bpy.data.meshes.keys()) == ["Cube"] and "Camera.001" not in bpy.data.objects, \
        "what the Cube uses is Blender's own again, not a copy"
    assert ob.get("note") == "hand-tuned", dict(ob)
    assert ob.name == "Cube", ob.name
    assert not [o for o in bpy.data.objects if o.name.startswith(".Cube")], "no copy left over"
    # The move, retried by Unity, stands in Blender too (Unity (0, 0, 4) is Blender (0, 4, 0)).
    drive(lambda: (ob := blender_cube()) is not None and close(ob.location, (0, 4, 0))
          and host.stats()["not_synced"] == 0 and not vibesync.status()["not_synced"],
          timeout=40, what="the person's move in Blender, nothing left not synced")
    agent.close()
