"""What every real-scene scenario asserts (tests/e2e/test_scenarios.py):

1. nothing a person made is missing in either editor;
2. both editors converge -- same objects, names, parents, poses (§6, canonical frame) and
   visibility -- before a deadline, and the wait fails when the deadline passes;
3. then the bridge is quiet: the daemon's WAL does not grow for QUIET_S seconds while
   nobody edits (no batch, no resync loop);
4. `vibesync verify` passes on the data dir once the daemon has stopped.

Views are plain dicts uuid -> {kind, name, parent, visible, t, r, s, vertices}; both sides
are read in the canonical frame (glTF axes, meters).
"""

from __future__ import annotations

import math
import os
import subprocess
import time

from harness import Host, bpy, drive, drive_for, vibesync

QUIET_S = 5.0
CONVERGE_S = 30.0
POSE_EPS = 1e-4


def blender_view() -> dict[str, dict]:
    from vibesync import capture
    s = vibesync._session()
    reg = s.registry
    out = {}
    bpy.context.view_layer.update()
    # What the synced scene holds: an object linked into none of its collections, or a
    # collection only another scene holds, is not synced (PROTOCOL §6.1).
    home = capture.home_scene()
    in_scene = {o.session_uid for o in home.objects}
    in_scene.update(c.session_uid for c in home.collection.children_recursive)
    for kind, coll in (("object", bpy.data.objects), ("collection", bpy.data.collections)):
        for idb in coll:
            if idb.session_uid not in in_scene:
                continue
            # Through the registry: data linked from a library carries no property.
            u = reg.uuid_for(idb) or idb.get("vibesync_uuid")
            if not u and (kind, idb.session_uid) in reg.shadowed:
                continue  # a linked datablock a library override stands for
            if not u:
                out[f"<no uuid: {idb.name}>"] = {"kind": kind, "name": idb.name}
                continue
            st = capture.read_state(idb, kind, reg, {})
            verts = None
            if kind == "object" and capture.generated_geometry(idb):
                # What Blender shows: the evaluated mesh when modifiers (or a curve, a text)
                # make it (§7.1).
                verts = capture.evaluated_mesh_arrays(idb)[0]["n"]
            elif kind == "object" and idb.type == "MESH":
                verts = len(idb.data.vertices)
            out[u] = {"kind": kind, "name": st["name"], "parent": st["parent"],
                      "visible": st["visible"], "t": list(st["t"]), "r": list(st["r"]),
                      "s": list(st["s"]), "vertices": verts}
    return out


def host_view(host: Host) -> dict[str, dict]:
    out = {}
    for o in host.scene()["objects"]:
        tr = o["transform"]
        px, py, pz = tr["position"]
        rx, ry, rz, rw = tr["rotation"]
        mesh = o.get("mesh")
        out[o["uuid"]] = {"kind": o.get("kind") or "object", "name": o["name"],
                          "parent": o.get("parent"), "visible": o.get("visible", True),
                          "t": [px, py, -pz], "r": [-rx, -ry, rz, rw], "s": list(tr["scale"]),
                          "vertices": mesh["vertex_count"] if mesh else None}
    return out


def _close(a, b, eps=POSE_EPS) -> bool:
    return all(abs(x - y) <= eps for x, y in zip(a, b))


def _same_rotation(a, b) -> bool:
    return _close(a, b) or _close(a, [-c for c in b])


def _matrix(p) -> list[float]:
    """The local matrix (rotation and scale part, by rows) of a pose."""
    x, y, z, w = p["r"]
    rot = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
           [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
           [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    return [rot[i][j] * p["s"][j] for i in range(3) for j in range(3)]


def same_pose(a, b) -> bool:
    """One local matrix: equal parts, or a mirrored scale that one editor holds as another
    rotation and sign pattern (Blender through a parent inverse, PROTOCOL §6.4)."""
    return _close(a["t"], b["t"]) and ((_same_rotation(a["r"], b["r"]) and _close(a["s"], b["s"]))
                                       or _close(_matrix(a), _matrix(b)))


def differences(bv: dict, hv: dict, meshes: bool = True) -> list[str]:
    """What differs between the two editors (empty when they agree)."""
    diffs = []
    for u in sorted(set(bv) | set(hv)):
        b, h = bv.get(u), hv.get(u)
        if b is None or h is None:
            where = "Blender" if b is None else "Unity"
            name = (h or b).get("name")
            diffs.append(f"{u} ({name}) missing in {where}")
            continue
        for f in ("kind", "name", "parent", "visible"):
            if b[f] != h[f]:
                diffs.append(f"{u} ({b['name']}): {f} Blender {b[f]!r} != Unity {h[f]!r}")
        if not same_pose(b, h):
            diffs.append(f"{u} ({b['name']}): pose Blender t{_r(b['t'])} r{_r(b['r'])} "
                         f"s{_r(b['s'])} != Unity t{_r(h['t'])} r{_r(h['r'])} s{_r(h['s'])}")
        if meshes and (b["vertices"] or 0) != (h["vertices"] or 0) \
                and not (b["vertices"] and h["vertices"] is None):
            diffs.append(f"{u} ({b['name']}): vertices Blender {b['vertices']} != "
                         f"Unity {h['vertices']}")
    return diffs


def _r(v):
    return [round(x, 4) for x in v]


def converge(host: Host, timeout: float = CONVERGE_S, meshes: bool = True) -> dict:
    """Drive both editors until they agree and neither has a change in flight (two editors
    may agree before the daemon does, e.g. on a person's edit kept locally and being re-sent);
    fails with the differences at the deadline."""
    end = time.monotonic() + timeout
    last: list[str] = []
    while True:
        drive_for(0.2)
        bv, hv = blender_view(), host_view(host)
        last = differences(bv, hv, meshes)
        flying = (vibesync.status()["in_flight"], host.stats().get("in_flight"))
        if flying != (0, 0):
            last = last + [f"changes in flight (Blender, Unity): {flying}"]
        if not last:
            return bv
        if time.monotonic() > end:
            raise AssertionError(f"editors did not converge within {timeout}s:\n  "
                                 + "\n  ".join(last[:40])
                                 + f"\nblender status: {vibesync.status()}")


def nothing_missing(view: dict, made: dict[str, str], where: str) -> None:
    """Every uuid a person made (uuid -> name) is in `view`."""
    missing = {u: n for u, n in made.items() if u not in view}
    assert not missing, f"lost in {where}: {missing}"


def transactions(daemon) -> list[dict]:
    """BEGIN records of the WAL: one per transaction (a FINAL or audit record that
    completes an earlier transaction is not new work)."""
    return [r for r in daemon.tail() if r.get("phase") == "BEGIN"]


def quiet(daemon, project_id: str, host: Host, seconds: float = QUIET_S) -> None:
    """Nobody edits: no transaction may start and no batch be applied for `seconds`."""
    txns0 = len(transactions(daemon))
    applied0 = vibesync.status()["applied_batches"]
    host0 = host.stats().get("batches_applied")
    drive_for(seconds)
    after = transactions(daemon)
    applied1 = vibesync.status()["applied_batches"]
    host1 = host.stats().get("batches_applied")
    assert (len(after), applied1, host1) == (txns0, applied0, host0), (
        f"the bridge was not quiet for {seconds}s with nobody editing: WAL transactions "
        f"{txns0} -> {len(after)} (new: {[r.get('payload') for r in after[txns0:]][:5]}), "
        f"Blender applied {applied0} -> {applied1}, Unity applied {host0} -> {host1}")


def verify(daemon) -> None:
    """`vibesync verify` on the stopped daemon's data dir."""
    daemon.stop()
    v = subprocess.run([daemon.binary, "verify", "--data-dir", daemon.data_dir],
                       capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr


def finish(daemon, project_id: str, host: Host, blender_made: dict, host_made: dict,
           meshes: bool = True) -> dict:
    """The four checks, in order; returns the converged Blender view."""
    view = converge(host, meshes=meshes)
    nothing_missing(view, blender_made, "Blender (made there)")
    nothing_missing(view, host_made, "Blender (made in Unity)")
    hv = host_view(host)
    nothing_missing(hv, blender_made, "Unity (made in Blender)")
    nothing_missing(hv, host_made, "Unity (made there)")
    quiet(daemon, project_id, host)
    hv = host_view(host)
    diffs = differences(blender_view(), hv, meshes)
    assert not diffs, f"diverged while quiet: {diffs}; blender status: {vibesync.status()}"
    misplaced = not_where_blender_shows(hv)
    assert not misplaced, f"Unity shows objects elsewhere than Blender: {misplaced}"
    vibesync.disconnect()
    host.close()
    verify(daemon)
    return view


def not_where_blender_shows(hv: dict) -> list[str]:
    """Objects Unity holds elsewhere than Blender shows them: Blender's own evaluated world
    position against the one the host's hierarchy of local poses gives — a check that does
    not go through the addon's reading of local poses (`capture.read_state`, which both
    views above use). Left out: objects whose place Blender makes from more than their own
    and their parents' transforms (constraints, a bone or vertex parent), which the protocol
    does not carry (PROTOCOL §6.5)."""
    from mathutils import Matrix, Quaternion, Vector

    from vibesync import capture, wire
    layer = capture.home_view_layer()  # the synced scene may not be the active one
    layer.update()
    dg = layer.depsgraph
    reg = vibesync._session().registry
    world: dict[str, Matrix] = {}

    def host_world(u):
        if u not in world:
            h = hv[u]
            x, y, z, w = h["r"]
            m = Matrix.LocRotScale(Vector(h["t"]), Quaternion((w, x, y, z)), Vector(h["s"]))
            world[u] = host_world(h["parent"]) @ m if h["parent"] in hv else m
        return world[u]

    def own_place(ob) -> bool:
        while ob is not None:
            if len(ob.constraints) or ob.parent_type != "OBJECT":
                return False
            ob = ob.parent
        return True

    out = []
    for ob in capture.home_scene().objects:
        u = reg.uuid_for(ob) or ob.get("vibesync_uuid")
        if not u or u not in hv or not own_place(ob):
            continue
        where = ob.evaluated_get(dg).matrix_world.translation
        want = wire.blender_to_wire(tuple(where), (0, 0, 0, 1), (1, 1, 1))[0]
        got = host_world(u).translation
        if any(abs(a - b) > 1e-3 for a, b in zip(want, got)):
            out.append(f"{u} ({ob.name}): Blender {_r(want)} Unity {_r(list(got))}")
    return out


def uuids_of(names) -> dict[str, str]:
    """uuid -> name of Blender datablocks (objects and collections) by name."""
    out = {}
    for n in names:
        idb = bpy.data.objects.get(n) or bpy.data.collections.get(n)
        assert idb is not None, f"{n} not in Blender"
        u = drive(lambda idb=idb: idb.get("vibesync_uuid"), what=f"uuid on {n}")
        out[u] = n
    return out


def rot_z(deg: float):
    return (0.0, 0.0, math.radians(deg))


HERE = os.path.dirname(os.path.abspath(__file__))
UNITY_DEFAULT_SCENE = os.path.join(HERE, "scenes", "unity_default.json")
