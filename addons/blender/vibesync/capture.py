"""Change capture: read the synced state of a datablock and diff it against what was sent.

`depsgraph_update_post` only records session_uids (see pump.Session.on_depsgraph); the pump
calls `read_state()` for each dirty uuid and `diff_ops()` against the last sent state, with
epsilon 1e-5 (docs/PROTOCOL.md §6.4). States use the wire's canonical axes with lengths in
Blender units (the daemon scales by hello.unit_scale); `state_in_meters()` gives the form
§6.4 hashes.
"""

from __future__ import annotations

import array
import math
import struct

import bpy
import numpy  # ships with Blender
from mathutils import Euler, Matrix, Quaternion, Vector

from . import wire

EPSILON = wire.EPSILON


# Blender 5.0 renders every material with its node tree and deprecates `Material.use_nodes`
# (to be removed in 6.0); before 5.0 the tree counts only with `use_nodes` on.
_NODES_ALWAYS = bpy.app.version >= (5, 0, 0)


def shader_nodes(mat):
    """The node tree material `mat` renders with, or None (it uses its plain settings)."""
    if _NODES_ALWAYS or mat.use_nodes:
        return mat.node_tree
    return None


def use_shader_nodes(mat) -> None:
    """Make a new material render with its node tree (its Principled BSDF)."""
    if not _NODES_ALWAYS:
        mat.use_nodes = True


def _principled(mat) -> dict | None:
    """Base color, metallic, roughness and emission of a material (Principled BSDF if any)."""
    base = list(mat.diffuse_color)
    metallic = float(mat.metallic)
    roughness = float(mat.roughness)
    emission = [0.0, 0.0, 0.0]
    tree = shader_nodes(mat)
    if tree is not None:
        for node in tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                base = list(node.inputs["Base Color"].default_value)
                metallic = float(node.inputs["Metallic"].default_value)
                roughness = float(node.inputs["Roughness"].default_value)
                em = node.inputs.get("Emission Color") or node.inputs.get("Emission")
                strength = node.inputs.get("Emission Strength")
                if em is not None:
                    k = float(strength.default_value) if strength is not None else 1.0
                    emission = [float(c) * k for c in list(em.default_value)[:3]]
                break
    return {"base_color": [float(c) for c in base[:4]], "metallic": metallic,
            "roughness": roughness, "emission": emission}


def first_material(ob):
    """The object's first material slot's material (what `material` syncs, §6.1)."""
    for slot in ob.material_slots:
        return slot.material
    return None


def _rotation_quaternion(ob):
    """The object's own rotation as a Quaternion, whatever its rotation mode."""
    mode = ob.rotation_mode
    if mode == "QUATERNION":
        return ob.rotation_quaternion.normalized()
    if mode == "AXIS_ANGLE":
        angle, x, y, z = ob.rotation_axis_angle
        return Quaternion(Vector((x, y, z)), angle)
    return ob.rotation_euler.to_quaternion()


def _is_identity(m) -> bool:
    return all(m[i][j] == (1.0 if i == j else 0.0) for i in range(4) for j in range(4))


def _deltas(ob):
    """The object's delta transform (Object > Transform > Delta) as (location, rotation
    quaternion, scale), or None when it has none. Blender's basis is (location + delta
    location, delta rotation · rotation, scale × delta scale); the delta rotation follows the
    rotation mode (none in axis-angle mode)."""
    dl, ds, mode = ob.delta_location, ob.delta_scale, ob.rotation_mode
    if mode == "QUATERNION":
        dq = ob.delta_rotation_quaternion
        dq = None if tuple(dq) == (1.0, 0.0, 0.0, 0.0) else dq.normalized()
    elif mode == "AXIS_ANGLE":
        dq = None
    else:
        de = ob.delta_rotation_euler
        dq = None if tuple(de) == (0.0, 0.0, 0.0) else Euler(tuple(de), mode).to_quaternion()
    if dq is None and tuple(dl) == (0.0, 0.0, 0.0) and tuple(ds) == (1.0, 1.0, 1.0):
        return None
    return Vector(dl), dq or Quaternion(), Vector(ds)


def _less_deltas(ob, loc, rot, scale):
    """The object's own parts for a basis of (loc, rot, scale): less its delta transform
    (`_deltas`); a delta scale of 0 on an axis leaves that axis's scale as it is (nothing
    makes it)."""
    d = _deltas(ob)
    if d is None:
        return loc, rot, scale
    return (loc - d[0], d[1].inverted() @ rot,
            Vector([a / b if b != 0.0 else c for a, b, c in zip(scale, d[2], ob.scale)]))


def local_trs(ob) -> tuple[list[float], list[float], list[float]]:
    """Object transform relative to its parent, in canonical axes (Blender units).

    With no parent, or an identity parent inverse (parented "without inverse"), this is the
    object's own location, rotation and scale as stored — exactly what `set_local_trs` wrote,
    negative (mirrored) scales included, which a matrix decomposition cannot tell apart from
    a 180° rotation (§6.5 "Stable values") — with its delta transform added (`_deltas`), as
    the viewport shows it. Otherwise it is matrix_parent_inverse @ matrix_basis (which holds
    the deltas), decomposed (always current; the world/local matrices are only refreshed by
    a depsgraph evaluation). Blender applies the parent inverse only under a parent: deleting
    a parent leaves its children's parent inverse as it was, and they stay where they were.
    """
    if ob.parent is None or _is_identity(ob.matrix_parent_inverse):
        loc, rot, scale = ob.location, _rotation_quaternion(ob), ob.scale
        d = _deltas(ob)
        if d is not None:
            loc, rot = loc + d[0], d[1] @ rot
            scale = Vector([a * b for a, b in zip(scale, d[2])])
    else:
        loc, rot, scale = (ob.matrix_parent_inverse @ ob.matrix_basis).decompose()
    return wire.blender_to_wire(tuple(loc), (rot.x, rot.y, rot.z, rot.w), tuple(scale))


def _world_matrix(ob):
    """The object's matrix in the world: its parent chain's local matrices (parent inverse @
    basis, as `local_trs` reads them; always current, unlike `matrix_world`) composed."""
    m = ob.matrix_basis.copy()
    while ob.parent is not None:
        m = ob.matrix_parent_inverse @ m
        ob = ob.parent
        m = ob.matrix_basis @ m
    return m


def world_trs(ob) -> tuple[list[float], list[float], list[float]]:
    """The object's pose in the world, in canonical axes (Blender units)."""
    loc, rot, scale = _world_matrix(ob).decompose()
    return wire.blender_to_wire(tuple(loc), (rot.x, rot.y, rot.z, rot.w), tuple(scale))


def roots_where_they_stand(children) -> None:
    """Make each of `children` a root posed where it stands in the world: what a receiver
    does with the children of an object a batch deletes that the batch does not delete
    (PROTOCOL.md §6.1 `delete`), as Unity does. Removing the parent alone leaves a child's
    own location, rotation and scale as they are, so it would jump to that pose in the
    world. Every pose is read before any parent changes (a child may be under another)."""
    worlds = [(ob, _world_matrix(ob)) for ob in children]
    for ob, m in worlds:
        ob.parent = None
        ob.matrix_parent_inverse.identity()
        _set_parts(ob, *_less_deltas(ob, *m.decompose()))


def set_pose(ob, t, r, s, registry) -> None:
    """Set the pose the wire holds for `ob` (`read_state`): local to its parent, or, for a
    child of an object found out of the synced scene (a root to the other editors), in the
    world, over the parent it keeps here. (Not `in_home_scene`: a parent a batch is making
    is linked into the scene only at its end.)"""
    if ob.parent is None or registry.uuid_for(ob.parent) not in registry.out_of_scene:
        set_local_trs(ob, t, r, s)
        return
    bt, br, bs = wire.wire_to_blender(t, r, s)
    m = Matrix.LocRotScale(Vector(bt), Quaternion((br[3], br[0], br[1], br[2])), Vector(bs))
    basis = (_world_matrix(ob.parent) @ ob.matrix_parent_inverse).inverted_safe() @ m
    _set_parts(ob, *_less_deltas(ob, *basis.decompose()))


def set_local_trs(ob, t, r, s) -> None:
    """Inverse of local_trs: set loc/rot/scale so that the local matrix is (t, r, s)."""
    bt, br, bs = wire.wire_to_blender(t, r, s)
    q = Quaternion((br[3], br[0], br[1], br[2]))
    if ob.parent is None or _is_identity(ob.matrix_parent_inverse):
        loc, rot, scale = Vector(bt), q, Vector(bs)
    else:
        m = Matrix.LocRotScale(Vector(bt), q, Vector(bs))
        basis = ob.matrix_parent_inverse.inverted_safe() @ m
        loc, rot, scale = basis.decompose()
        if not _same_matrix(Matrix.LocRotScale(loc, rot, scale), basis):
            # The parent inverse holds a non-uniform scale under a rotation (parented with
            # Keep Transform to a non-uniformly scaled parent): no location, rotation and
            # scale make this pose over it, and an approximation read back as another pose
            # (sent as if a person had made it). The pose is set exactly instead, over an
            # identity parent inverse: the object is where the sent pose puts it.
            ob.matrix_parent_inverse.identity()
            loc, rot, scale = Vector(bt), q, Vector(bs)
    _set_parts(ob, *_less_deltas(ob, loc, rot, scale))


def _set_parts(ob, loc, rot, scale) -> None:
    """The object's own location, rotation (in its rotation mode) and scale."""
    ob.location = loc
    mode = ob.rotation_mode
    if mode == "QUATERNION":
        ob.rotation_quaternion = rot
    elif mode == "AXIS_ANGLE":
        ob.rotation_axis_angle = _axis_angle(rot)
    else:
        ob.rotation_euler = rot.to_euler(mode, ob.rotation_euler)
    ob.scale = scale


def _same_matrix(a, b, eps: float = 1e-6) -> bool:
    """Equal within float32 noise, relative to the matrices' size."""
    scale = max(1.0, max(abs(x) for row in b for x in row))
    return all(abs(a[i][j] - b[i][j]) <= eps * scale for i in range(4) for j in range(4))


def _axis_angle(q) -> tuple[float, float, float, float]:
    """(angle, x, y, z) of a quaternion, in double precision: mathutils' float32 acos loses
    ~3e-4 rad for small angles, more than the state hash's 1e-5 (§6.5)."""
    w, x, y, z = q.w, q.x, q.y, q.z
    n = math.sqrt(x * x + y * y + z * z)
    if n == 0.0:
        return (0.0, 0.0, 1.0, 0.0)
    return (2.0 * math.atan2(n, w), x / n, y / n, z / n)


# The view layer whose eye the sync reads and sets (the eye is per view layer): the one the
# file was synced with, by scene and view layer name, so that a person switching the scene or
# the view layer is no visibility edit (PROTOCOL §6.1 `visible`). None: the active one.
_home: tuple[str, str] | None = None


def set_home_view_layer(scene_name: str | None, layer_name: str | None) -> None:
    global _home
    _home = (scene_name, layer_name) if scene_name and layer_name else None


def home_names() -> tuple[str, str] | None:
    """(scene, view layer) the sync reads and sets, by name: saved with the file's registry
    so that a reopen with another scene active syncs the same scene."""
    return _home


def take_home(saved: tuple[str, str] | None) -> None:
    """The sync's view layer for the file just opened: the one it was saved with, if it
    still has it; else the active one (a new file, or one never synced)."""
    if saved is not None:
        sc = bpy.data.scenes.get(saved[0])
        if sc is not None and sc.view_layers.get(saved[1]) is not None:
            set_home_view_layer(*saved)
            return
    set_home_view_layer(getattr(bpy.context.scene, "name", None),
                        getattr(getattr(bpy.context, "view_layer", None), "name", None))


def home_view_layer():
    """The sync's view layer (looked up by name: a view layer is not kept across an undo or
    a load), else the active one."""
    if _home is not None:
        sc = bpy.data.scenes.get(_home[0])
        vl = sc.view_layers.get(_home[1]) if sc is not None else None
        if vl is not None:
            return vl
    return getattr(bpy.context, "view_layer", None)


def home_scene(strict: bool = False):
    """The scene of the sync's view layer (`home_view_layer`): the synced scene. An object
    linked into none of its collections is not in it (PROTOCOL §6.1). `strict`: None when
    it is not known for sure — the scene the file was synced with is not found by its name
    (renamed or removed), or there is no context — rather than the active one (which scene
    holds an object then decides nothing: it would delete a whole scene in Unity)."""
    if strict:
        if _home is None:
            return getattr(bpy.context, "scene", None)
        sc = bpy.data.scenes.get(_home[0])
        return sc if sc is not None and sc.view_layers.get(_home[1]) is not None else None
    vl = home_view_layer()
    return vl.id_data if vl is not None else getattr(bpy.context, "scene", None)


def is_visible(ob, view_layer=None) -> bool:
    vl = view_layer or home_view_layer()
    try:
        hidden = ob.hide_get(view_layer=vl) if vl is not None else ob.hide_get()
    except RuntimeError:  # not in that view layer
        hidden = False
    return not (ob.hide_viewport or hidden)


def layer_collection(coll, view_layer=None):
    """The view layer's LayerCollection of `coll` (it holds the outliner's eye), or None."""
    if view_layer is None:
        view_layer = home_view_layer()
    if view_layer is None:
        return None
    stack = [view_layer.layer_collection]
    while stack:
        lc = stack.pop()
        if lc.collection == coll:
            return lc
        stack.extend(lc.children)
    return None


def collection_visible(coll) -> bool:
    """A collection is shown unless "Disable in Viewports", the outliner's eye (the view
    layer's hide flag) or its "Exclude from View Layer" checkbox hides it."""
    if coll.hide_viewport:
        return False
    lc = layer_collection(coll)
    return not (lc is not None and (lc.hide_viewport or lc.exclude))


def read_mesh_arrays(me) -> dict:
    """Everything an attachment needs, read with `foreach_get` (main thread, fast). The
    result holds only plain arrays: `encode_mesh_arrays` may run on another thread."""
    me.calc_loop_triangles()
    n = len(me.vertices)
    co = array.array("f", bytes(12 * n))
    me.vertices.foreach_get("co", co)
    nor = array.array("f", bytes(12 * n))
    me.vertices.foreach_get("normal", nor)
    tris = array.array("I", bytes(12 * len(me.loop_triangles)))
    me.loop_triangles.foreach_get("vertices", tris)
    out = {"n": n, "co": co, "nor": nor, "tris": tris, "luv": None, "lv": None}
    layer = me.uv_layers.active
    nl = len(me.loops)
    if layer is not None and nl:
        out["luv"] = array.array("f", bytes(8 * nl))
        layer.data.foreach_get("uv", out["luv"])
        out["lv"] = array.array("i", bytes(4 * nl))
        me.loops.foreach_get("vertex_index", out["lv"])
    return out


def encode_mesh_arrays(a: dict, unit_scale: float) -> bytes:
    """The §7 attachment from `read_mesh_arrays` output (no bpy: safe on a worker thread).
    Positions in meters on canonical axes, vertex normals, UV0 per vertex (Blender stores
    UVs per face corner: exact without UV seams, at a seam the last corner's UV wins).
    numpy does the per-vertex work (C speed, no Python loop); the bytes are exactly those
    of `wire.encode_mesh` (float64 arithmetic rounded once to float32)."""
    n = a["n"]
    co = numpy.frombuffer(a["co"], dtype=numpy.float32).astype(numpy.float64).reshape(-1, 3)
    nor = numpy.frombuffer(a["nor"], dtype=numpy.float32).reshape(-1, 3)
    k = unit_scale
    pos = numpy.empty((n, 3), dtype=numpy.float64)
    pos[:, 0] = co[:, 0] * k
    pos[:, 1] = co[:, 2] * k
    pos[:, 2] = -co[:, 1] * k
    nrm = numpy.empty((n, 3), dtype=numpy.float32)
    nrm[:, 0] = nor[:, 0]
    nrm[:, 1] = nor[:, 2]
    nrm[:, 2] = -nor[:, 1]
    parts = [pos.astype("<f4").tobytes(), nrm.astype("<f4").tobytes()]
    flags = wire.MESH_FLAG_NORMALS
    if a["luv"] is not None:
        luv = numpy.frombuffer(a["luv"], dtype=numpy.float32).reshape(-1, 2)
        lv = numpy.frombuffer(a["lv"], dtype=numpy.int32)
        # The last corner of each vertex: first occurrence in the reversed corner list.
        rev = lv[::-1]
        verts, first = numpy.unique(rev, return_index=True)
        uvs = numpy.zeros((n, 2), dtype=numpy.float32)
        uvs[verts] = luv[::-1][first]
        parts.append(uvs.astype("<f4").tobytes())
        flags |= wire.MESH_FLAG_UV0
    tris = numpy.frombuffer(a["tris"], dtype=numpy.uint32)
    header = wire.MESH_MAGIC + struct.pack("<III", n, len(tris), flags)
    return b"".join([header, *parts, tris.astype("<u4").tobytes()])


def vertex_uvs(me) -> list[float] | None:
    """UV0 per vertex as sent on the wire (see `encode_mesh_arrays`)."""
    data = wire.decode_mesh(mesh_attachment(me, 1.0))
    return data["uv0"]


def mesh_attachment(me, unit_scale: float) -> bytes:
    """The §7 attachment of a mesh, read and encoded on the calling thread."""
    return encode_mesh_arrays(read_mesh_arrays(me), unit_scale)


def in_edit_mode(idb) -> bool:
    """True when `idb` (an object or its data) is being edited: do not read it now."""
    if isinstance(idb, bpy.types.Object):
        return idb.mode == "EDIT"
    if isinstance(idb, bpy.types.Mesh):
        return idb.is_editmode
    return False


def container_collection(ob):
    """The collection an object lives in (its first one that is not a scene's master)."""
    for c in ob.users_collection:
        if not c.is_embedded_data:
            return c
    return None


IDENTITY_TRS = ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0])


def read_state(idb, kind: str, registry, mesh_hashes: dict[str, str]) -> dict:
    """The synced state of a datablock (canonical axes, Blender units).

    A collection is a synced `collection` (§6.1) at the identity transform; an object with no
    parent object names its collection (if not the scene's master collection) as parent.
    """
    state: dict = {"kind": kind, "name": idb.name}
    if kind == "collection":
        pc = registry.collection_parent(idb)
        t, r, s = IDENTITY_TRS
        state.update({"parent": registry.uuid_for(pc) if pc is not None else None,
                      "visible": collection_visible(idb), "t": list(t), "r": list(r),
                      "s": list(s)})
        return state
    if kind == "object":
        if idb.parent is not None and registry.in_home_scene(idb.parent):
            t, r, s = local_trs(idb)
            parent = registry.uuid_for(idb.parent)
        else:
            # A root; or a child of an object taken out of the synced scene, which the other
            # editors do not hold (§6.1): a root there, where it stands in the world.
            t, r, s = local_trs(idb) if idb.parent is None else world_trs(idb)
            coll = registry.container_of(idb)
            parent = registry.uuid_for(coll) if coll is not None else None
        state.update({"parent": parent, "visible": is_visible(idb), "t": t, "r": r, "s": s})
        du = geometry_key(registry, idb)
        if du is not None and du in mesh_hashes:
            state["mesh_hash"] = mesh_hashes[du]
        mat = first_material(idb)
        if mat is not None:
            state["material"] = _principled(mat)
    elif kind == "material":
        state["material"] = _principled(idb)
    elif kind == "mesh":
        du = registry.uuid_for(idb)
        if du is not None and du in mesh_hashes:
            state["mesh_hash"] = mesh_hashes[du]
    return state


def state_in_meters(state: dict, unit_scale: float) -> dict:
    """The hashed form of a state (§6.4): lengths in meters."""
    if "t" not in state or unit_scale == 1.0:
        return state
    out = dict(state)
    out["t"] = [c * unit_scale for c in state["t"]]
    return out


def _close(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= EPSILON
        except (TypeError, ValueError):
            return False
    return a == b


def _rotation_close(a, b) -> bool:
    # q and -q are the same rotation.
    return _close(a, b) or _close(a, [-c for c in b])


# A local matrix R·S with a mirrored (negative) scale has four rotation and scale pairs: for
# D = diag(d) with two of d's signs flipped, R·S = (R·D)·(D·S), and R·D is R turned 180°
# about the axis d leaves alone. Each entry: that half turn as [x, y, z, w] and d.
_SIGN_PATTERNS = (((1.0, 0.0, 0.0, 0.0), (1.0, -1.0, -1.0)),
                  ((0.0, 1.0, 0.0, 0.0), (-1.0, 1.0, -1.0)),
                  ((0.0, 0.0, 1.0, 0.0), (-1.0, -1.0, 1.0)))


def _quat_mul(a, b) -> list[float]:
    """a · b of two wire quaternions ([x, y, z, w]), with mathutils."""
    q = Quaternion((a[3], a[0], a[1], a[2])) @ Quaternion((b[3], b[0], b[1], b[2]))
    return [q.x, q.y, q.z, q.w]


def same_pose(a: dict, b: dict) -> bool:
    """Do poses `a` and `b` (their t, r, s) make one local matrix within storage precision
    (1e-5 per component, §6.4)? Either component by component (q and −q are one rotation),
    or as another form of it (`_SIGN_PATTERNS`): Blender holding a pose through a parent
    inverse decomposes its matrix, and reads a mirrored scale of (1, 1, −1) back as
    (−1, −1, −1) under a rotation turned 180° (§6.4). Those forms are the only other pairs
    that pass: no other rotation or scale does."""
    if not _close(a.get("t"), b.get("t")):
        return False
    ra, sa, rb, sb = a.get("r"), a.get("s"), b.get("r"), b.get("s")
    if _rotation_close(ra, rb) and _close(sa, sb):
        return True
    if not (isinstance(ra, list) and isinstance(rb, list) and isinstance(sa, list)
            and isinstance(sb, list) and len(ra) == len(rb) == 4 and len(sa) == len(sb) == 3):
        return False
    return any(_close(sb, [x * y for x, y in zip(sa, d)]) and _rotation_close(rb, _quat_mul(ra, h))
               for h, d in _SIGN_PATTERNS)


def keep_pose(state: dict, pose: dict) -> dict:
    """`state` with `pose`'s t, r and s when they are the same pose (`same_pose`): what was
    sent, applied or made is answered and remembered in its own form, not in the form
    Blender read back (§6.4); otherwise `state` unchanged."""
    if "t" not in state or "t" not in pose or not same_pose(state, pose):
        return state
    out = dict(state)
    for f in ("t", "r", "s"):
        out[f] = list(pose[f])
    return out


def diff_ops(uuid: str, prev: dict | None, cur: dict) -> list[dict]:
    """`change` ops (§6.1) that turn `prev` (last sent) into `cur`.

    Only objects carry synced state in the daemon (their mesh and material travel inside
    the object's state), so other kinds produce no ops: they are registered only. A `create`
    or `mesh` op with a `mesh_hash` needs the mesh attachment in the same frame.
    """
    if cur["kind"] not in ("object", "collection"):
        return []
    if prev is None:
        op = {"op": "create", "uuid": uuid, "kind": cur["kind"], "name": cur["name"],
              "parent": cur["parent"], "t": cur["t"], "r": cur["r"], "s": cur["s"],
              "visible": cur["visible"]}
        if "mesh_hash" in cur:
            op["mesh_hash"] = cur["mesh_hash"]
        if "material" in cur:
            op["material"] = cur["material"]
        return [op]
    ops: list[dict] = []
    if prev.get("name") != cur["name"]:
        ops.append({"op": "rename", "uuid": uuid, "name": cur["name"]})
    if prev.get("parent") != cur["parent"]:
        ops.append({"op": "reparent", "uuid": uuid, "parent": cur["parent"]})
    if prev.get("visible") != cur["visible"]:
        ops.append({"op": "visibility", "uuid": uuid, "visible": cur["visible"]})
    if not same_pose(prev, cur):
        ops.append({"op": "transform", "uuid": uuid, "t": cur["t"], "r": cur["r"],
                    "s": cur["s"]})
    if "mesh_hash" in cur and prev.get("mesh_hash") != cur["mesh_hash"]:
        ops.append({"op": "mesh", "uuid": uuid, "mesh_hash": cur["mesh_hash"]})
    if "material" in cur and not _close(prev.get("material"), cur["material"]):
        ops.append({"op": "material", "uuid": uuid, "material": cur["material"]})
    elif "material" not in cur and prev.get("material") is not None:
        ops.append({"op": "material", "uuid": uuid, "material": None})  # its slot emptied
    return ops


def incoming_poses(changes) -> dict[str, dict]:
    """uuid -> the last t / r / s a batch sets for it (in the receiver's units)."""
    out: dict[str, dict] = {}
    for c, _ in changes:
        if c.get("op") in ("create", "transform"):
            out[c["uuid"]] = {"t": c["t"], "r": c["r"], "s": c["s"]}
    return out


def snap_to(state: dict, pose: dict) -> dict:
    """`state` with its t / r / s replaced by `pose` where they agree within EPSILON
    (Blender keeps float32 and Euler angles, so a pose read back is the pose it was given
    only within storage precision; the hash must be the given one's) — r and s together
    where they are the given mirrored scale in another sign pattern (`same_pose`)."""
    out = dict(state)
    for f in ("t", "s"):
        if f in out and _close(out[f], pose[f]):
            out[f] = list(pose[f])
    if "r" in out and _rotation_close(out["r"], pose["r"]):
        out["r"] = list(pose["r"])
    return keep_pose(out, pose)  # a mirrored scale read back in another sign pattern


_OP_FIELDS = {"transform": ("t", "r", "s"), "rename": ("name",), "visibility": ("visible",),
              "reparent": ("parent",), "mesh": ("mesh_hash",), "material": ("material",)}


def with_parts(state: dict, source: dict, parts) -> dict:
    """`state` with the fields of `parts` (`change.op` names, §6.1) taken from `source`."""
    out = dict(state)
    for p in parts:
        for f in _OP_FIELDS.get(p, ()):
            if f in source:
                out[f] = source[f]
            else:
                out.pop(f, None)
    return out


def merge_applied(prev: dict, changes, uuid: str) -> dict:
    """`prev` (the last state sent or applied for `uuid`) with the fields a batch's changes
    of `uuid` set: the state the batch made, whatever was edited locally since."""
    out = dict(prev)
    for c, _ in changes:
        if c.get("uuid") != uuid:
            continue
        if c["op"] == "create":
            out = {k: c[k] for k in ("kind", "name", "parent", "visible", "t", "r", "s")}
            for k in ("mesh_hash", "material"):
                if k in c:
                    out[k] = c[k]
            continue
        for f in _OP_FIELDS.get(c["op"], ()):
            if f in c:
                out[f] = c[f]
        if c["op"] == "material" and c.get("material") is None:
            out.pop("material", None)  # cleared: a state without one (§6.1)
    return out


def differing_fields(state: dict, made: dict, resolvable) -> list[str]:
    """The fields in which `state` (read after applying a batch) differs from `made` (the
    state the batch made) by more than storage precision ("pose" for t, r and s). A parent
    Blender does not hold (`resolvable(parent)` false) is no difference: the object was
    placed at the root as §6.1 says."""
    out = [f for f in ("kind", "name", "visible", "mesh_hash") if state.get(f) != made.get(f)]
    if state.get("parent") != made.get("parent") and (
            made.get("parent") is None or resolvable(made["parent"])):
        out.append("parent")
    if not same_pose(state, made):
        out.append("pose")
    if not _close(state.get("material"), made.get("material")):
        out.append("material")
    return out


def needs_attachment(op: dict) -> bool:
    return op["op"] in ("create", "mesh") and "mesh_hash" in op


# ---------------------------------------------------------------------------------------
# Generated geometry (docs/PROTOCOL.md §7.1): an object whose modifiers make its geometry
# (a Geometry Nodes scatter, a mirror…) is sent as what Blender shows — the evaluated mesh
# with instances realized — instead of its base mesh. Kept apart from the base-mesh path.

MAX_REALIZED_INSTANCES = 10_000
MAX_GENERATED_VERTICES = 2_000_000


# Object types whose geometry Blender makes from other data: sent as the mesh it makes.
CONVERTED_TYPES = {"CURVE": "curve", "SURFACE": "surface", "FONT": "text", "META": "metaballs"}
# Object types whose geometry the protocol does not carry (§7.1): they send an attachment with
# no vertices, so that a mesh object converted into one leaves the other editors no stale mesh.
UNCARRIED_TYPES = {"POINTCLOUD": "point cloud", "CURVES": "hair curves",
                   "GREASEPENCIL": "grease pencil", "GPENCIL": "grease pencil", "VOLUME": "volume"}


def generated_geometry(ob) -> bool:
    """Does the object show geometry Blender makes: a mesh object with a modifier enabled in
    the viewport, a curve, surface, text or metaball object (their mesh is made from them; a
    family of metaballs makes one mesh, held by the ball whose name has no number suffix,
    and the others show none of their own), an Empty instancing a collection, or an object
    whose geometry is not carried (`UNCARRIED_TYPES`: sent as no geometry)?"""
    if not isinstance(ob, bpy.types.Object):
        return False
    if ob.type == "MESH":
        return any(m.show_viewport for m in ob.modifiers)
    return ob.type in CONVERTED_TYPES or ob.type in UNCARRIED_TYPES \
        or instanced_collection(ob) is not None


def instanced_collection(ob):
    """The collection an Empty instances (Add > Collection Instance), or None."""
    if ob.type == "EMPTY" and ob.instance_type == "COLLECTION":
        return ob.instance_collection
    return None


def generated_by(ob) -> str:
    """What makes a generated geometry (`generated_geometry`), for messages."""
    what = CONVERTED_TYPES.get(ob.type) or UNCARRIED_TYPES.get(ob.type)
    if what:
        return f"its {what}"
    coll = instanced_collection(ob)
    if coll is not None:
        return f"the collection it instances ({coll.name})"
    return "its modifiers"


def geometry_key(registry, ob) -> str | None:
    """The uuid a mesh hash of this object is kept under: the object's own uuid when its
    geometry is generated (two objects sharing a mesh may generate different geometry),
    else its mesh's."""
    if generated_geometry(ob) or ob.type == "EMPTY":
        return registry.uuid_for(ob)  # (an Empty that instanced a collection keeps its last)
    data = getattr(ob, "data", None)
    return registry.uuid_for(data) if isinstance(data, bpy.types.Mesh) else None


def evaluated_mesh_arrays(ob) -> tuple[dict, str | None]:
    """`read_mesh_arrays` of the evaluated object, instances realized into it.

    Instances beyond MAX_REALIZED_INSTANCES (or vertices beyond MAX_GENERATED_VERTICES) are
    left out, and the returned note says how many and why (the pump logs it and shows it in
    `status()`); otherwise the note is None. Instances are read as whole arrays from the
    evaluated geometry (Blender 4.3+: `Object.evaluated_geometry()`), else from the
    depsgraph's instance list, and transformed per shared mesh in one numpy operation.
    """
    if ob.type in UNCARRIED_TYPES:
        return NO_GEOMETRY, (f"{ob.name}: a {UNCARRIED_TYPES[ob.type]} is not sent (the protocol "
                             "carries meshes); the other editors show it with no geometry")
    dg = bpy.context.evaluated_depsgraph_get()
    ob_eval = ob.evaluated_get(dg)
    if ob.type == "EMPTY":
        base = NO_GEOMETRY  # a collection instance: all of it is instances
    else:
        me = ob_eval.to_mesh()
        try:
            base = read_mesh_arrays(me)
        finally:
            ob_eval.to_mesh_clear()
    coll = instanced_collection(ob) if ob.type == "EMPTY" else None
    if coll is not None:
        # The same for every Empty instancing it (in the Empty's own space): realized once
        # for all of them, until Blender reports the next update.
        hit = _COLLECTION_GEOMETRY.get(coll.session_uid)
        if hit is None:
            groups = _collection_groups(coll, dg, Matrix.Identity(4), COLLECTION_DEPTH)
            hit = _COLLECTION_GEOMETRY[coll.session_uid] = _realize(base, groups)
    else:
        # [(arrays, (K, 4, 4) matrices), object space]
        hit = _realize(base, _instance_groups(ob, ob_eval, dg))
    arrays, total_instances, kept = hit
    note = None
    if kept < total_instances:
        note = (f"{ob.name}: {total_instances - kept} of {total_instances} instances not sent "
                f"(limits: {MAX_REALIZED_INSTANCES} instances, {MAX_GENERATED_VERTICES} "
                "vertices); Unity shows the rest")
    return arrays, note


def _realize(base: dict, groups: list) -> tuple[dict, int, int]:
    """`base` with the instances of `groups` realized into it, within the limits: (arrays,
    instances in all, instances kept)."""
    total_instances = sum(len(m) for _, m in groups)
    parts = [(base, None)]
    vertices, kept = base["n"], 0
    for arrays, mats in groups:
        room = MAX_REALIZED_INSTANCES - kept
        if arrays["n"]:
            room = min(room, (MAX_GENERATED_VERTICES - vertices) // arrays["n"])
        take = max(0, min(len(mats), room))
        if take:
            parts.append((arrays, mats[:take]))
            kept += take
            vertices += take * arrays["n"]
    return _concat(parts), total_instances, kept


# Collection instances inside an instanced collection are followed this deep.
COLLECTION_DEPTH = 8
# What an instanced collection shows (`_collection_groups` realized: arrays, instances in all,
# instances kept), by its session_uid: read once for all the Empties instancing it (a forest
# of instanced trees; the arrays are shared, never changed), dropped whenever Blender reports
# a change (`forget_collection_geometry`, the pump's depsgraph handler).
_COLLECTION_GEOMETRY: dict[int, tuple[dict, int, int]] = {}


def forget_collection_geometry() -> None:
    _COLLECTION_GEOMETRY.clear()


def _collection_groups(coll, dg, space: Matrix, depth: int) -> list:
    """What a collection instance shows, as `_instance_groups` gives it: each object of the
    collection (and of its children) that makes geometry -- its evaluated mesh, with the
    instances its own modifiers make realized -- placed as the instance places it
    (`space` @ its offset @ the object's world matrix), and the collections its Empties
    instance in turn. Objects and child collections disabled in viewports (the monitor
    icon) are not instanced, as in Blender."""
    place = space @ Matrix.Translation(-coll.instance_offset)
    groups = []
    for o in _instanced_objects(coll):
        oe = o.evaluated_get(dg)
        if o.type == "EMPTY":
            inner = instanced_collection(o)
            if inner is not None and depth > 1:
                groups.extend(_collection_groups(inner, dg, place @ oe.matrix_world, depth - 1))
            continue
        if o.type != "MESH" and o.type not in CONVERTED_TYPES:
            continue
        me = oe.to_mesh()
        try:
            own = read_mesh_arrays(me)
        finally:
            oe.to_mesh_clear()
        if o.type == "MESH" and generated_geometry(o):
            inner = _instance_groups(o, oe, dg)
            if inner:
                own = _concat([(own, None)] + inner)
        if own["n"]:
            mat = numpy.array(place @ oe.matrix_world, dtype=numpy.float64)
            groups.append((own, mat[None, :, :]))
    return groups


def _instanced_objects(coll) -> list:
    """The objects a collection instance shows: those of the collection and of its child
    collections, each once, leaving out what is disabled in viewports (a child collection
    and everything in it, or an object)."""
    seen: dict[int, object] = {}
    todo = [coll]
    while todo:
        c = todo.pop()
        for o in c.objects:
            if not o.hide_viewport:
                seen.setdefault(o.session_uid, o)
        todo.extend(ch for ch in c.children if not ch.hide_viewport)
    return list(seen.values())


NO_GEOMETRY = {"n": 0, "co": array.array("f"), "nor": array.array("f"), "tris": array.array("I"),
                "luv": None, "lv": None}


def _instance_groups(ob, ob_eval, dg) -> list:
    """The object's mesh instances grouped by the mesh they show: [(its arrays, matrices)]
    (meshes are read while their owner is alive: a GeometrySet frees them with itself)."""
    fast = getattr(ob_eval, "evaluated_geometry", None)
    if fast is not None:
        groups = _instance_groups_geometry(fast())
        if groups is not None:
            return groups
    to_local = numpy.array(ob.matrix_world.inverted_safe(), dtype=numpy.float64)
    by_mesh: dict[int, tuple] = {}
    for inst in dg.object_instances:
        if not inst.is_instance or inst.parent is None or inst.parent.original != ob:
            continue
        data = inst.object.data
        if not isinstance(data, bpy.types.Mesh):
            continue
        key = data.as_pointer()
        if key not in by_mesh:
            by_mesh[key] = (read_mesh_arrays(data), [])
        by_mesh[key][1].append(numpy.array(inst.matrix_world, dtype=numpy.float64))
    return [(arrays, to_local @ numpy.stack(mats)) for arrays, mats in by_mesh.values()]


def _instance_groups_geometry(gs) -> list | None:
    """From an evaluated GeometrySet; None when it holds what this reader does not handle
    (nested instances, object or collection references): the caller uses the depsgraph."""
    pc = gs.instances_pointcloud()
    if pc is None:
        return []
    meshes = []
    for ref in gs.instance_references():
        inner = getattr(ref, "instances_pointcloud", None)
        if inner is None or inner() is not None:
            return None
        meshes.append(getattr(ref, "mesh", None))
    n = len(pc.points)
    flat = numpy.empty(16 * n, dtype=numpy.float32)
    pc.attributes["instance_transform"].data.foreach_get("value", flat)
    mats = flat.reshape(n, 4, 4).transpose(0, 2, 1).astype(numpy.float64)  # stored by column
    index = numpy.empty(n, dtype=numpy.int32)
    pc.attributes[".reference_index"].data.foreach_get("value", index)
    return [(read_mesh_arrays(mesh), mats[index == i]) for i, mesh in enumerate(meshes)
            if mesh is not None and numpy.any(index == i)]


def _concat(parts) -> dict:
    """One arrays dict from (arrays, None | (K, 4, 4) matrices) parts: K transformed copies
    of each part's positions and normals, triangle and corner indices offset."""
    co, nor, tris, luv, lv = [], [], [], [], []
    any_uv = any(a["luv"] is not None for a, _ in parts)
    base = 0
    for a, mats in parts:
        n = a["n"]
        p = numpy.frombuffer(a["co"], dtype=numpy.float32).reshape(-1, 3).astype(numpy.float64)
        q = numpy.frombuffer(a["nor"], dtype=numpy.float32).reshape(-1, 3).astype(numpy.float64)
        t = numpy.frombuffer(a["tris"], dtype=numpy.uint32).astype(numpy.int64)
        k = 1
        if mats is None:
            co.append(p)
            nor.append(q)
            offsets = numpy.array([base])
        else:
            k = len(mats)
            rot = mats[:, :3, :3]
            co.append((numpy.einsum("kij,nj->kni", rot, p) + mats[:, None, :3, 3]).reshape(-1, 3))
            qq = numpy.einsum("kij,nj->kni", rot, q)
            length = numpy.linalg.norm(qq, axis=2, keepdims=True)
            nor.append((qq / numpy.where(length == 0, 1, length)).reshape(-1, 3))
            offsets = base + n * numpy.arange(k)
        tris.append((t[None, :] + offsets[:, None]).reshape(-1))
        if any_uv:
            if a["luv"] is not None:
                uv = numpy.frombuffer(a["luv"], dtype=numpy.float32)
                corner = numpy.frombuffer(a["lv"], dtype=numpy.int32).astype(numpy.int64)
                luv.append(numpy.tile(uv, k))
                lv.append((corner[None, :] + offsets[:, None]).reshape(-1))
        base += n * k

    def flat(chunks, dtype, code):
        out = array.array(code)
        if chunks:
            out.frombytes(numpy.concatenate(chunks).astype(dtype).tobytes())
        return out

    has_uv = any_uv and bool(lv)
    return {"n": base, "co": flat(co, numpy.float32, "f"), "nor": flat(nor, numpy.float32, "f"),
            "tris": flat(tris, numpy.uint32, "I"),
            "luv": flat(luv, numpy.float32, "f") if has_uv else None,
            "lv": flat(lv, numpy.int32, "i") if has_uv else None}
