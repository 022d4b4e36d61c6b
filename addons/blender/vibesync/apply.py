"""Applying fenced batches from the daemon (docs/PROTOCOL.md §6.2) by uuid only.

A batch is collected between `batch_begin` and `batch_end`, validated as untrusted input,
and applied as one undo step -- but never while a modal operator runs or while a target
object (or its mesh) is in edit mode: then it waits in the pump's deferred queue. After
applying, the caller records each uuid's state and hash so the change is not echoed back.
"""

from __future__ import annotations

import array
import logging
import math
import os
import struct
import sys

import bpy

from . import budget, capture, identity, wire
from .identity import KIND_TABLE

log = logging.getLogger("vibesync.apply")

_OPS = {"create", "delete", "reparent", "mesh", "material", "transform", "rename", "visibility"}
# The fast-path ops a `live` preview may carry (§6.3).


class BatchError(Exception):
    """A batch that violates the protocol; it is dropped as a whole."""


class Unrepresentable(LookupError):
    """A change Blender cannot hold as sent (a collection's transform, a collection under an
    object, an edit of data linked from a library): not applied, so the batch fails
    verification and the other editor keeps what its person made, marked not synced
    (PROTOCOL.md §6.1, §6.4)."""


class ParentLoop(Unrepresentable):
    """A parent that is under the object here. Tried again once the batch's other changes
    are applied: a later change of the same batch may take the parent out from under it
    (its full state at the root, say) — the loop is read over what the batch leaves,
    PROTOCOL.md §6.4."""


def _linked_unchanged(change: dict, idb, registry, shared: "SharedPlan | None") -> bool:
    """A change of a datablock linked from a library (read-only here: an edit would not even
    be saved, Blender reloads it from the library): True when it changes nothing Blender
    holds (a replay re-sending its state; nothing to do), else `Unrepresentable` with why,
    so the other editor keeps its person's edit, not synced (PROTOCOL.md §6.4). False for
    local data."""
    why = identity.linked_read_only(idb)
    if why is None:
        return False
    uuid = change["uuid"]
    b = registry.bindings.get(uuid)
    held = shared.held_meshes if shared is not None else {}
    state = capture.read_state(idb, b.kind if b is not None else "object", registry, held)
    made = capture.merge_applied(state, [(change, b"")], uuid)
    if capture.differing_fields(state, made, lambda p: registry.resolve(p) is not None):
        raise Unrepresentable(why)
    return True


def _writable(idb):
    """`idb` (a mesh or material about to be written), refused when it is linked from a
    library (a local object showing linked data)."""
    why = identity.linked_read_only(idb)
    if why is not None:
        raise Unrepresentable(why)
    return idb


def _is_identity(change: dict) -> bool:
    """The pose a Blender collection holds: no offset, no rotation, unit scale."""
    t, r, s = change.get("t", (0, 0, 0)), change.get("r", (0, 0, 0, 1)), change.get("s", (1, 1, 1))
    return (all(abs(v) <= 1e-6 for v in t) and all(abs(v) <= 1e-6 for v in r[:3])
            and abs(abs(r[3]) - 1) <= 1e-6 and all(abs(v - 1) <= 1e-6 for v in s))


class Batch:
    def __init__(self, batch_id: str, seq: int, path: str, count: int,
                 request_id: str | None = None) -> None:
        self.batch_id = batch_id
        self.request_id = request_id  # the `resync` request it answers, if any (§6.6)
        self.seq = seq
        self.path = path
        self.count = count
        self.changes: list[tuple[dict, bytes]] = []
        self.held = False  # answered `applied` with held: true (could not apply in time)
        # (uuid, op) of the changes automation made (`apply.automation`, PROTOCOL.md §6.3).
        self.automation: set[tuple[str, str]] = set()

    def uuids(self) -> list[str]:
        return [c["uuid"] for c, _ in self.changes]


class BatchCollector:
    """Assembles `batch_begin` / `apply`* / `batch_end` into Batch objects."""

    def __init__(self) -> None:
        self.current = None  # the Batch being collected

    def feed(self, msg: dict, attachment: bytes):
        t = msg.get("type")
        if t == wire.MessageType.BATCH_BEGIN:
            if self.current is not None:
                log.error("batch %s: batch_begin before batch_end of the previous batch; "
                          "dropping the unfinished one", self.current.batch_id)
            bid, seq, path, count = (msg.get("batch_id"), msg.get("seq"), msg.get("path"),
                                     msg.get("count"))
            if not isinstance(bid, str) or not _is_int(seq) or not _is_int(count) \
                    or path not in ("fast", "slow", "resync"):
                self.current = None
                raise BatchError(f"malformed batch_begin {msg!r}")
            rid = msg.get("request_id")
            self.current = Batch(bid, seq, path, count, rid if isinstance(rid, str) else None)
            return None
        if t == wire.MessageType.APPLY:
            cur = self.current
            if cur is None or msg.get("batch_id") != cur.batch_id:
                raise BatchError(f"apply outside its batch (batch_id {msg.get('batch_id')!r})")
            change = msg.get("change")
            try:
                validate_change(change)
            except BatchError as e:
                self.current = None
                raise BatchError(f"batch {cur.batch_id}: {e}") from None
            cur.changes.append((change, attachment))
            if msg.get("automation") is True:
                cur.automation.add((change["uuid"], change["op"]))
            return None
        if t == wire.MessageType.BATCH_END:
            cur, self.current = self.current, None
            if cur is None or msg.get("batch_id") != cur.batch_id:
                raise BatchError(f"batch_end without batch_begin ({msg.get('batch_id')!r})")
            if len(cur.changes) != cur.count:
                raise BatchError(f"batch {cur.batch_id}: announced {cur.count} changes, got "
                                 f"{len(cur.changes)}; dropped")
            return cur
        return None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _finite_list(v, n: int) -> bool:
    return (isinstance(v, list) and len(v) == n
            and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                    and math.isfinite(c) for c in v))


def validate_change(c) -> None:
    """Zero trust: check every field an op uses before anything touches bpy."""
    if not isinstance(c, dict):
        raise BatchError("change is not an object")
    op = c.get("op")
    if op not in _OPS:
        raise BatchError(f"unknown op {op!r}")
    if not wire.is_valid_uuid(c.get("uuid")):
        raise BatchError(f"op {op}: field `uuid` is not a lowercase RFC 4122 uuid")
    if op in ("transform", "create"):
        for f, n in (("t", 3), ("r", 4), ("s", 3)):
            if not _finite_list(c.get(f), n):
                raise BatchError(f"op {op} {c['uuid']}: field `{f}` must be {n} finite numbers")
    if op in ("rename", "create") and not (isinstance(c.get("name"), str) and c["name"]):
        raise BatchError(f"op {op} {c['uuid']}: field `name` must be a non-empty string")
    if op in ("visibility",) and not isinstance(c.get("visible"), bool):
        raise BatchError(f"op {op} {c['uuid']}: field `visible` must be a boolean")
    if op in ("reparent", "create"):
        p = c.get("parent")
        if p is not None and not wire.is_valid_uuid(p):
            raise BatchError(f"op {op} {c['uuid']}: field `parent` must be a uuid or null")
    if op == "create" and c.get("kind") not in KIND_TABLE:
        raise BatchError(f"op create {c['uuid']}: unknown kind {c.get('kind')!r}")
    if op == "material" and "material" not in c:
        raise BatchError(f"op material {c['uuid']}: field `material` is missing (null clears it)")
    if (op == "material" and c["material"] is not None) or (op == "create" and "material" in c):
        m = c.get("material")
        if not isinstance(m, dict) or not _finite_list(m.get("base_color"), 4) \
                or not _finite_list(m.get("emission", [0, 0, 0]), 3):
            raise BatchError(f"op {op} {c['uuid']}: field `material` is malformed")
        for f in ("metallic", "roughness"):
            if f in m and not _finite_list([m[f]], 1):
                raise BatchError(f"op {op} {c['uuid']}: field `material.{f}` is not finite")


def modal_running() -> bool:
    wm = bpy.context.window_manager
    if wm is None:
        return False
    for w in wm.windows:
        if len(getattr(w, "modal_operators", ())) > 0:
            return True
    return False


# Data kinds with an edit mode of their own (`is_editmode`), read in one C-speed pass each.
_EDITABLE_DATA = ("meshes", "curves", "armatures", "lattices", "metaballs")


def _nothing_in_edit_mode() -> bool:
    """True when no datablock is in edit mode and the active object is in object mode: then
    no object of a batch can be (O(1) per datablock kind, not a lookup per uuid)."""
    for attr in _EDITABLE_DATA:
        coll = getattr(bpy.data, attr, None)
        if coll is None or not len(coll):
            continue
        flags = array.array("b", bytes(len(coll)))
        coll.foreach_get("is_editmode", flags)
        if any(flags):
            return False
    view_layer = getattr(bpy.context, "view_layer", None)
    active = view_layer.objects.active if view_layer is not None else None
    return active is None or active.mode == "OBJECT"


def blocked_reason(batch, registry) -> str | None:
    """Why the batch must wait (modal operator, edit mode), or None."""
    if modal_running():
        return "a modal operator is running"
    if _nothing_in_edit_mode():
        return None
    for uuid in batch.uuids():
        idb = registry.resolve(uuid)
        if idb is None:
            continue
        if capture.in_edit_mode(idb):
            return f"{uuid} ({idb.name}) is in edit mode"
        if isinstance(idb, bpy.types.Object) and idb.data is not None \
                and capture.in_edit_mode(idb.data):
            return f"{uuid} ({idb.name}) is in edit mode"
    return None


def _set_material(mat, m: dict) -> None:
    base = m.get("base_color")
    mat.diffuse_color = base
    if "metallic" in m:
        mat.metallic = m["metallic"]
    if "roughness" in m:
        mat.roughness = m["roughness"]
    tree = capture.shader_nodes(mat)
    if tree is not None:
        for node in tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                node.inputs["Base Color"].default_value = base
                if "metallic" in m:
                    node.inputs["Metallic"].default_value = m["metallic"]
                if "roughness" in m:
                    node.inputs["Roughness"].default_value = m["roughness"]
                em = node.inputs.get("Emission Color")
                if em is not None and "emission" in m:
                    em.default_value = list(m["emission"]) + [1.0]
                    strength = node.inputs.get("Emission Strength")
                    if strength is not None and any(m["emission"]):
                        strength.default_value = 1.0
                break


def _le_array(typecode: str, raw) -> array.array:
    """Little-endian bytes (the wire's order, §7) into a native array, without a Python loop."""
    a = array.array(typecode)
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def _mesh_from_attachment(me, attachment: bytes, unit_scale: float) -> None:
    """Build `me` from a §7 attachment with `foreach_set` (C-level): a 100k-vertex mesh in
    about 100 ms, where `from_pydata` takes seconds."""
    wire.decode_mesh_header(attachment)  # validates magic, flags, sizes and index range
    n, ni, flags = struct.unpack_from("<III", attachment, 4)
    off = 16
    p = _le_array("f", attachment[off:off + 12 * n])
    off += 12 * n
    if flags & wire.MESH_FLAG_NORMALS:
        off += 12 * n  # Blender computes its own normals
    uv0 = None
    if flags & wire.MESH_FLAG_UV0:
        uv0 = _le_array("f", attachment[off:off + 8 * n])
        off += 8 * n
    idx = _le_array("i", attachment[off:off + 4 * ni])
    k = 1.0 / unit_scale
    co = array.array("f", bytes(12 * n))  # canonical (x, y, z) -> Blender (x, -z, y)
    co[0::3] = array.array("f", [x * k for x in p[0::3]]) if k != 1.0 else p[0::3]
    co[1::3] = array.array("f", [-z * k for z in p[2::3]])
    co[2::3] = array.array("f", [y * k for y in p[1::3]]) if k != 1.0 else p[1::3]
    me.clear_geometry()
    me.vertices.add(n)
    me.vertices.foreach_set("co", co)
    me.loops.add(ni)
    me.loops.foreach_set("vertex_index", idx)
    me.polygons.add(ni // 3)
    me.polygons.foreach_set("loop_start", array.array("i", range(0, ni, 3)))
    me.polygons.foreach_set("loop_total", array.array("i", [3]) * (ni // 3))
    if uv0 is not None:
        layer = me.uv_layers.active or me.uv_layers.new(name="UVMap")
        us, vs = uv0[0::2], uv0[1::2]
        luv = array.array("f", bytes(8 * ni))
        luv[0::2] = array.array("f", [us[vi] for vi in idx])
        luv[1::2] = array.array("f", [vs[vi] for vi in idx])
        layer.data.foreach_set("uv", luv)
    me.update(calc_edges=True)


def apply_change(change: dict, attachment: bytes, registry, unit_scale: float,
                 deleted: set[str], meshes: dict | None = None,
                 unplaced: dict | None = None, rehomed: list | None = None,
                 shared: "SharedPlan | None" = None, removals: list | None = None) -> str:
    """Apply one validated change; returns the uuid touched. Raises LookupError if gone.

    Meshes built from an attachment are recorded in `meshes` (mesh session_uid ->
    (mesh_hash, attachment)) so the pump keeps the incoming hash as that mesh's identity.
    `unplaced` (uuid -> (object, parent uuid, visible)): a new object is made outside every
    scene and recorded there, to be parented and linked at the batch's end (see
    `apply_batch_steps`); a later change of the same uuid places it first (`place_unplaced`).
    `rehomed` gets the uuids a `delete` of a collection moved to its parent (`_remove_collection`).
    `shared`: what the batch gives to data objects may share (`SharedPlan`).
    `removals`: a deleted object is put there, for the caller to remove with others in one
    pass (`remove_objects`), instead of removed at once.
    """
    if meshes is None:
        meshes = {}
    op = change["op"]
    uuid = change["uuid"]
    if unplaced and uuid in unplaced:
        place_unplaced({uuid: unplaced.pop(uuid)}, registry)
    if op == "create":
        if change.get("kind") == "collection" and not _is_identity(change):
            raise Unrepresentable(f"{change['name']} is a collection in Blender, which has no "
                                  "transform: move its objects instead")
        existing = registry.resolve(uuid)
        fresh = existing is None  # made here: unhidden, in the scene's master collection only
        kept = None
        if existing is not None and _linked_unchanged(change, existing, registry, shared):
            return uuid
        if existing is not None:
            idb = existing  # a create for a uuid we hold updates it in place (resync)
            if idb.name != change["name"]:
                idb.name = change["name"]
                registry.bindings[uuid].name = idb.name
        else:
            kind = change["kind"]
            if kind == "object":
                # The object as this editor held it when another editor's delete took it
                # (`_keep_deleted`): that delete undone there gives back its modifiers,
                # constraints, custom properties and mesh, none of which a `create` carries.
                idb = kept = _kept_copy(uuid, registry)
                if kept is not None:
                    kept.name = change["name"]
                    if change.get("visible", True):
                        kept.hide_viewport = False
                else:
                    data = None
                    if change.get("mesh_hash") and attachment:
                        data = bpy.data.meshes.new(change["name"])
                        registry.bind_new(data, identity.new_uuid())
                    idb = bpy.data.objects.new(change["name"], data)
                if unplaced is None:
                    capture.home_scene().collection.objects.link(idb)
            elif kind == "material":
                idb = bpy.data.materials.new(change["name"])
            elif kind == "mesh":
                idb = bpy.data.meshes.new(change["name"])
            elif kind == "collection":
                idb = bpy.data.collections.new(change["name"])
                capture.home_scene().collection.children.link(idb)
            else:
                raise LookupError(f"create of kind {kind} is not supported by the Blender addon")
            registry.bind_new(idb, uuid)
        if isinstance(idb, bpy.types.Collection):
            parent = change.get("parent")
            _place(idb, registry.resolve(parent) if parent else None)
            _set_collection_visible(idb, change.get("visible", True))
            return uuid
        if isinstance(idb, bpy.types.Object):
            parent = change.get("parent")
            loop = None
            if fresh and unplaced is not None:
                unplaced[uuid] = (idb, parent, change.get("visible", True))
            else:
                try:
                    # An unknown parent: treat as a root (§6.1).
                    _place(idb, registry.resolve(parent) if parent else None, registry, fresh)
                except ParentLoop as e:
                    # Only the parent is refused: the other parts are applied under the
                    # parent the object has here, as Unity does (PROTOCOL.md §6.4).
                    loop = e
            capture.set_local_trs(idb, change["t"], change["r"], change["s"])
            if not fresh or (unplaced is None and not change.get("visible", True)):
                # `hide_set` re-syncs the view layer after each new object: skipped for a
                # new visible object (quadratic over a big incoming batch).
                _set_visible(idb, change.get("visible", True))
            if capture.generated_geometry(idb):
                # Its modifiers (or its curve, its text) make what was sent: what it is made
                # from stays as the person left it.
                pass
            elif change.get("mesh_hash") and attachment:
                idb = _ensure_mesh_object(idb, registry)
                me = _writable_mesh(idb, registry, shared)
                if not (kept is not None and _holds_mesh(me, change["mesh_hash"], unit_scale, shared)):
                    # (a kept object's own mesh keeps its UV maps, vertex groups and
                    # attributes when it is what the other editor sends back)
                    _mesh_from_attachment(me, attachment, unit_scale)
                meshes[me.session_uid] = (change["mesh_hash"], attachment)
            if change.get("material"):
                _set_material(_writable_material(idb, registry, shared), change["material"])
            if loop is not None:
                raise loop
        elif "material" in change and isinstance(idb, bpy.types.Material):
            _set_material(idb, change["material"])
        return uuid

    pending = removals is not None and any(u == uuid for _, u in removals)
    idb = None if pending else registry.resolve(uuid)  # (a delete's removal may be pending)
    if idb is None and op == "delete":
        # Nothing to remove: already gone here (deleted with its parent, by the person) or
        # never held (a replay deletes uuids an editor may not have, PROTOCOL.md §6.1, §6.6).
        log.debug("delete %s: no datablock carries it; nothing to do", uuid)
        return uuid
    if idb is None:
        raise LookupError(f"{op}: no datablock carries {uuid} (deleted or never synced)")
    if op != "delete" and _linked_unchanged(change, idb, registry, shared):
        return uuid
    if op == "delete":
        # A linked datablock is removed from this file like any other (the library keeps it).
        if isinstance(idb, bpy.types.Collection):
            moved = _remove_collection(idb, registry)
            registry.membership_changed()
            if rehomed is not None:
                rehomed.extend(moved)
        else:
            if isinstance(idb, bpy.types.Object):
                _keep_deleted(idb, uuid, registry)
            if removals is not None and isinstance(idb, bpy.types.Object):
                removals.append((idb, uuid))
            else:
                if isinstance(idb, bpy.types.Object):
                    _free_children([idb])
                coll = getattr(bpy.data, KIND_TABLE[registry.bindings[uuid].kind][0])
                coll.remove(idb)
        registry.bindings[uuid].alive = False
        deleted.add(uuid)
    elif op == "rename":
        idb.name = change["name"]
        registry.bindings[uuid].name = idb.name
    elif op == "transform":
        if isinstance(idb, bpy.types.Collection):
            if not _is_identity(change):
                # Not representable here: refused, never "ignored" and then sent back as if a
                # person here had moved it back (the other editor's move would be undone).
                raise Unrepresentable(f"{idb.name} is a collection in Blender, which has no "
                                      "transform: move its objects instead")
        else:
            capture.set_pose(idb, change["t"], change["r"], change["s"], registry)
    elif op == "visibility":
        if isinstance(idb, bpy.types.Collection):
            _set_collection_visible(idb, change["visible"])
        else:
            _set_visible(idb, change["visible"])
    elif op == "reparent":
        parent = change.get("parent")
        pob = registry.resolve(parent) if parent else None
        if parent and pob is None:
            raise LookupError(f"reparent {uuid}: parent {parent} not found")
        _place(idb, pob, registry)
    elif op == "material" and change["material"] is None:
        # The object has no material any more (§6.1): its first slot is emptied; the slot
        # and the material datablock stay (other objects may show it).
        if isinstance(idb, bpy.types.Object) and len(idb.material_slots):
            slot = idb.material_slots[0]
            if slot.link == "DATA" and idb.data is not None:
                _writable(idb.data)
            slot.material = None
    elif op == "material":
        mat = idb if isinstance(idb, bpy.types.Material) else _writable_material(idb, registry, shared)
        if mat is None:
            raise LookupError(f"material {uuid}: the object cannot hold a material")
        _set_material(mat, change["material"])
    elif op == "mesh":
        if capture.generated_geometry(idb):
            raise LookupError(f"mesh {uuid}: {idb.name}'s geometry is made by "
                              f"{capture.generated_by(idb)} in Blender; edit it there (what "
                              "it is made from is never overwritten)")
        if isinstance(idb, bpy.types.Object):
            idb = _ensure_mesh_object(idb, registry)  # create, then add a mesh (Unity)
        me = idb.data if isinstance(idb, bpy.types.Object) else idb
        if not isinstance(me, bpy.types.Mesh):
            raise LookupError(f"mesh {uuid}: not a mesh object")
        if isinstance(idb, bpy.types.Object):
            me = _writable_mesh(idb, registry, shared)
        _mesh_from_attachment(me, attachment, unit_scale)
        meshes[me.session_uid] = (change["mesh_hash"], attachment)
    return uuid


def remove_objects(removals: list, registry) -> None:
    """Remove the objects (with their uuids) a batch's consecutive `delete`s took, in one
    pass: each removal alone walks every datablock of the file to clear what pointed at the
    object (1.7 ms per object in a 10,000-object file, measured; `bpy.data.batch_remove`
    walks once for all). What other objects' modifiers and constraints pointed at a kept
    one is recorded first (`_record_references`). One a person removed meanwhile (between
    two ticks) is skipped."""
    alive = []
    for ob, uuid in removals:
        try:
            ob.name  # noqa: B018 (raises ReferenceError once removed)
        except ReferenceError:
            continue
        alive.append((ob, uuid))
    removals.clear()
    if alive:
        _record_references(alive, registry)
        _free_children([ob for ob, _ in alive])
        bpy.data.batch_remove([ob for ob, _ in alive])


def _free_children(obs: list) -> None:
    """The children of `obs` (objects about to be removed) that are not removed with them
    stay where they stand in the world, at the root (PROTOCOL.md §6.1 `delete`: a receiver
    never removes more than the uuid named): e.g. an object a person here put under one that
    the other editor's person deleted meanwhile (that editor never held it there)."""
    going = {ob.session_uid for ob in obs}
    staying = [c for ob in obs for c in ob.children if c.session_uid not in going]
    if staying:
        capture.roots_where_they_stand(staying)


def _record_references(obs: list, registry) -> None:
    """For each (object, uuid) whose copy is kept: the modifiers and constraints of other
    objects in the file that point at it, by the holder's uuid, the item's name and the
    pointer property (one `user_map` pass for all: ~1 ms at 10,000 objects)."""
    kept = {ob: registry.kept.get(uuid) for ob, uuid in obs}
    if not any(kept.values()):
        return
    users = bpy.data.user_map(subset=[ob for ob, k in kept.items() if k is not None],
                              key_types={"OBJECT"}, value_types={"OBJECT"})
    for ob, entry in kept.items():
        for holder in users.get(ob, ()):
            hu = registry.uuid_for(holder)
            if hu is None or holder in kept:
                continue
            for what, items in (("modifier", holder.modifiers), ("constraint", holder.constraints)):
                for item in items:
                    for prop in item.bl_rna.properties:
                        if prop.type == "POINTER" and not prop.is_readonly \
                                and getattr(item, prop.identifier, None) == ob:
                            entry.refs.append((hu, what, item.name, prop.identifier))


def _restore_references(ob, refs: list, registry) -> None:
    """Point the modifiers and constraints that pointed at `ob` when it was deleted at it
    again, where they still exist and point at nothing (a person who set another target
    meanwhile keeps it)."""
    for hu, what, name, prop in refs:
        holder = registry.resolve(hu)
        items = getattr(holder, what + "s", None) if holder is not None else None
        item = items.get(name) if items is not None else None
        if item is not None and getattr(item, prop, None) is None:
            try:
                setattr(item, prop, ob)
            except (AttributeError, TypeError, ValueError, RuntimeError) as e:
                log.info("%s: cannot point %s %s.%s at it again: %s", ob.name, holder.name, name, prop, e)


def _keep_deleted(ob, uuid: str, registry) -> None:
    """Before another editor's delete removes `ob`: keep a copy of it, linked nowhere (no
    users: never evaluated, never saved with the file), for the same uuid made again
    (`_kept_copy`; `deleted_keep`, PROTOCOL.md §6.1). The copy shares the object's data (the
    mesh with its UV maps and vertex groups) and holds its own settings: modifiers,
    constraints, custom properties, animation. What other objects held of it (a Boolean's
    cutter, a constraint's target, a child's parent) is cleared by the removal, as Blender's
    own delete clears it; the modifiers and constraints are pointed at it again when it is
    made again (`_record_references`). Linked objects and library overrides are not kept:
    their identity is their library's."""
    copy = copy_to_keep(ob, uuid)
    if copy is not None:
        keep_copy(uuid, copy, registry)


def copy_to_keep(ob, uuid: str):
    """A copy of `ob` (uuid `uuid`) to keep should it be deleted (`_keep_deleted`), linked
    nowhere and left out of scans (`identity.KEPT`); None for a linked object or a library
    override, whose identity is their library's."""
    if ob.library is not None or ob.override_library is not None:
        return None
    copy = ob.copy()
    if copy.users:
        # A rigid body's copy joins the scene's Rigid Body World collection: it would be
        # tracked, and simulated unseen. Unlinked; `_kept_copy` puts it back in its world.
        for coll in copy.users_collection:
            coll.objects.unlink(copy)
    copy.name = "." + ob.name  # a leading dot: Blender's lists of datablocks leave it out
    if identity.PROP in copy:
        del copy[identity.PROP]  # no identity while kept: `_kept_copy` binds it again
    copy[identity.KEPT] = uuid
    return copy


def keep_copy(uuid: str, copy, registry) -> None:
    """Keep `copy` (`copy_to_keep`) as what is made again for `uuid` (`_kept_copy`)."""
    for sid in registry.keep_deleted(uuid, copy):
        old = registry.lookup("object", sid)
        if old is not None and old.users == 0:
            bpy.data.objects.remove(old)  # the oldest beyond `deleted_keep.CAPACITY`


def write_copies(copies: list, path: str) -> dict:
    """Write `copies` (`copy_to_keep`) to the .blend file `path`, with what they use (their
    mesh, materials, parent, a constraint's target): how copies made in an undone state
    outlive the redo that frees them (`read_copies`, `Session.keep_deleted_by_call`).
    Returns who each datablock in the file is here, {(list, name): session_uid}, taken now:
    a session_uid outlives undo, redo and renames, a name does not (`read_copies`)."""
    bpy.data.libraries.write(path, set(copies))
    held = {}
    for attr, names in _file_names(path).items():
        ids = getattr(bpy.data, attr, None)
        for name in names if ids is not None else ():
            idb = ids.get(name)
            if idb is not None and idb.library is None:
                held[(attr, name)] = idb.session_uid
    return held


def _file_names(path: str) -> dict:
    """{list: names} of the datablocks the .blend file `path` holds, loading none."""
    with bpy.data.libraries.load(path, link=False) as (src, _dst):
        return _lists(src)


def _lists(src) -> dict:
    """{list: names} of a file opened by `bpy.data.libraries.load` (its `src` side)."""
    return {attr: list(getattr(src, attr)) for attr in dir(src)
            if isinstance(getattr(src, attr), list)}


def read_copies(path: str, held: dict) -> dict:
    """Append what `write_copies` wrote: {uuid: kept copy, linked nowhere}. What the copies
    use is this file's own datablock again where it still exists (`held`, what
    `write_copies` returned: found by session_uid, so a datablock the call renamed is still
    found, and one it made under the old name is not taken for it); an appended duplicate
    is remapped to it and removed: no "Cube.001" mesh, no second Camera. An object the
    copies use that the call deleted too is its kept copy, or nothing; any other datablock
    the call deleted comes back as it was."""
    with bpy.data.libraries.load(path, link=False) as (src, dst):
        names = _lists(src)
        for attr, wanted in names.items():
            setattr(dst, attr, list(wanted))  # (filled in place with what was appended)
    kept: dict = {}
    objects: list = []
    others: list = []
    for attr, wanted in names.items():
        for name, idb in zip(wanted, getattr(dst, attr)):
            if idb is None:
                continue
            if attr == "objects" and isinstance(idb.get(identity.KEPT), str):
                kept[idb[identity.KEPT]] = idb
            elif attr == "objects":
                objects.append((name, idb))
            else:
                others.append((attr, name, idb))
    local = _by_session_uid(held)
    for attr, name, idb in others:
        ids = getattr(bpy.data, attr, None)  # (a file's list Blender holds no collection of)
        here = local.get((attr, name))
        if ids is not None and here is not None and here != idb:
            idb.user_remap(here)
            ids.remove(idb)
    for name, idb in objects:
        # The copies' parent or a constraint's target: the object here, the kept copy of
        # one the call deleted too, or (deleted, not kept) nothing.
        here = local.get(("objects", name))
        target = here if here is not None and here != idb else kept.get(idb.get(identity.PROP))
        if target is not None:
            idb.user_remap(target)
        bpy.data.objects.remove(idb)
    for lib in [lib for lib in bpy.data.libraries
                if os.path.realpath(bpy.path.abspath(lib.filepath)) == os.path.realpath(path)]:
        bpy.data.libraries.remove(lib)  # append leaves the file listed as a library
    return kept


def _by_session_uid(held: dict) -> dict:
    """{(list, name): the datablock here} for each entry of `held` ({(list, name):
    session_uid}, `write_copies`) whose datablock still exists, whatever its name now."""
    wanted: dict = {}
    for (attr, name), sid in held.items():
        wanted.setdefault(attr, {})[sid] = name
    found = {}
    for attr, sids in wanted.items():
        for idb in getattr(bpy.data, attr, ()):
            name = sids.get(idb.session_uid)
            if name is not None:
                found[(attr, name)] = idb
    return found


def keep_data_of_deleted(uuid: str, name: str, data, registry) -> None:
    """An object deleted here by automation (an agent's tool call), whose delete may roll
    back (PROTOCOL.md §6.4): the object is gone already, its data (`data`, a mesh no object
    uses now) is kept as an object of its own, linked nowhere, as `_keep_deleted` keeps one,
    so that the object made again (`_kept_copy`) gets back its mesh with its UV maps, vertex
    groups and material slots. (Its modifiers and constraints went with it: an object a tool
    call names is copied whole before the call instead, `router.Router.run`.)"""
    copy = bpy.data.objects.new("." + name, data)
    for sid in registry.keep_deleted(uuid, copy):
        old = registry.lookup("object", sid)
        if old is not None and old.users == 0:
            bpy.data.objects.remove(old)


def _kept_copy(uuid: str, registry):
    """The object kept when another editor deleted `uuid` (`_keep_deleted`), now the uuid's
    again, bound and not yet in any scene; or None (nothing kept, or the copy is gone:
    undone past, purged, or linked into a scene by the person meanwhile)."""
    kept = registry.take_kept(uuid)
    if kept is None:
        return None
    ob = registry.lookup("object", kept.sid)
    if ob is None or ob.get(identity.KEPT) != uuid:
        # An undo and redo may have made it again under another session_uid.
        ob = next((o for o in bpy.data.objects if o.get(identity.KEPT) == uuid), None)
    if ob is None or ob.users != 0:
        return None
    del ob[identity.KEPT]
    registry.bind_new(ob, uuid)
    _restore_references(ob, kept.refs, registry)
    world = capture.home_scene().rigidbody_world
    if ob.rigid_body is not None and world is not None and world.collection is not None \
            and world.collection.objects.get(ob.name) != ob:
        world.collection.objects.link(ob)  # a rigid body again in the synced scene's world
    log.info("%s: made again; it gets back what it had here when it was deleted "
             "(modifiers, constraints, custom properties, mesh)", uuid)
    return ob


def _holds_mesh(me, mesh_hash: str, unit_scale: float, shared: "SharedPlan | None") -> bool:
    """True when the mesh `me` holds the geometry `mesh_hash` names already: the hash it was
    last given (`SharedPlan.held_meshes`) or its own encoding's."""
    held = shared.held_meshes.get(me.get(identity.PROP)) if shared is not None else None
    return mesh_hash == held or mesh_hash == wire.mesh_hash(capture.mesh_attachment(me, unit_scale))


def _set_collection_visible(coll, visible: bool) -> None:
    """Show: clear "Disable in Viewports", the outliner's eye and "Exclude from View Layer".
    Hide: the eye (what a person uses), which `capture.collection_visible` reads back as
    hidden."""
    lc = capture.layer_collection(coll)
    if visible:
        coll.hide_viewport = False
        if lc is not None:
            lc.exclude = False
            lc.hide_viewport = False
    elif lc is not None:
        lc.hide_viewport = True
    else:
        coll.hide_viewport = True


def _ensure_mesh_object(ob, registry):
    """`ob` if it holds a mesh. An Empty (Unity's GameObject before its mesh is added) is
    replaced by a mesh object with the same uuid and name that keeps everything a person
    made on it: Blender cannot give an Empty data (only an image) nor change an object's
    type. `_carry_over` copies the object's own settings; `user_remap` then points every
    reference to the Empty at the new object (collections, children, other objects'
    constraints, modifiers and drivers, the view layers), and the per-view-layer state
    (selected, active, hidden) is restored. An Empty that shows an image or instances a
    collection, and other object types (lights, cameras), cannot hold a mesh: LookupError,
    the person's object is left as it is."""
    if isinstance(ob.data, bpy.types.Mesh):
        return ob
    if ob.data is not None:
        raise LookupError(f"{ob.name} is a {ob.type.lower()} object; it cannot hold a mesh")
    if ob.instance_type == "COLLECTION" and ob.instance_collection is not None:
        raise LookupError(f"{ob.name} instances the collection {ob.instance_collection.name} "
                          "in Blender; it cannot also hold a mesh")
    uuid = ob.get(identity.PROP)
    name = ob.name
    me = bpy.data.meshes.new(name)
    registry.bind_new(me, identity.new_uuid())
    new = bpy.data.objects.new(name, me)
    _carry_over(ob, new)
    layers = []
    for scene in bpy.data.scenes:
        for vl in scene.view_layers:
            try:
                layers.append((vl, ob.select_get(view_layer=vl), ob.hide_get(view_layer=vl),
                               vl.objects.active == ob))
            except RuntimeError:
                pass  # not in this view layer
    ob.user_remap(new)
    _carry_field(ob, new)
    bpy.data.objects.remove(ob)
    new.name = name
    for vl, selected, hidden, active in layers:
        try:
            new.select_set(selected, view_layer=vl)
            new.hide_set(hidden, view_layer=vl)
        except RuntimeError:
            continue
        if active:
            vl.objects.active = new
    registry.bind_new(new, uuid)
    return new


# Object settings not copied as plain values: identity, data and derived matrices, or
# handled by `_carry_over` itself (parenting, rotation mode first, instancing).
_NOT_CARRIED = frozenset((
    "name", "data", "tag", "is_runtime_data", "use_extra_user", "asset_data", "type", "mode",
    "parent", "matrix_world", "matrix_local", "matrix_basis", "matrix_parent_inverse",
    "dimensions", "rotation_mode", "active_material", "active_material_index",
    "active_shape_key_index", "active_selection_set"))
# Settings structs an Empty may carry (a force field, display, line art, ...).
_NESTED = ("display", "lineart", "light_linking", "animation_visualization",
           "cycles")


def _copy_values(src, dst, skip=frozenset()) -> None:
    """Every writable RNA property of `src` onto `dst` (what the type accepts)."""
    for prop in src.bl_rna.properties:
        key = prop.identifier
        if prop.is_readonly or key in skip or key == "rna_type":
            continue
        try:
            setattr(dst, key, getattr(src, key))
        except (AttributeError, TypeError, ValueError, RuntimeError):
            pass  # not meaningful for the new type (e.g. an Empty's display size)


def _carry_over(ob, new) -> None:
    """What a person made on the object `ob`, onto `new` (see `_ensure_mesh_object`)."""
    new.rotation_mode = ob.rotation_mode  # before the rotations: setting it converts them
    _copy_values(ob, new, _NOT_CARRIED)
    for key in _NESTED:
        src = getattr(ob, key, None)
        if src is not None:
            _copy_values(src, getattr(new, key))
    new.parent = ob.parent
    new.parent_type = ob.parent_type
    new.parent_bone = ob.parent_bone
    new.matrix_parent_inverse = ob.matrix_parent_inverse.copy()
    for k in ob.keys():
        if k == identity.PROP:
            continue
        value = ob[k]
        if hasattr(value, "to_dict") and k in new.keys():
            new[k].update(value.to_dict())  # an add-on's settings group already made above
            continue
        new[k] = value
        try:
            new.id_properties_ui(k).update(**ob.id_properties_ui(k).as_dict())
        except TypeError:
            pass  # a property type without UI data (group, array of ids, ...)
    for c in ob.constraints:
        new.constraints.copy(c)
    _carry_animation(ob, new)


def _carry_field(ob, new) -> None:
    """An Empty used as a force field: the field settings exist only once made, and only
    the operator makes them (on an object in the view layer: after `user_remap`)."""
    if ob.field is None or ob.field.type == "NONE":
        return
    if new.field is None:
        # The view layer's active object for the call, put back at once: not
        # `Context.temp_override`, whose Python dict `bpy.ops` reads from C after releasing
        # the GIL, which crashes Blender when another Python thread (this addon's transport
        # thread) holds the GIL then.
        layer = bpy.context.view_layer
        was = layer.objects.active
        layer.objects.active = new
        try:
            bpy.ops.object.forcefield_toggle()
        finally:
            layer.objects.active = was
    if new.field is not None:
        _copy_values(ob.field, new.field)


def _carry_animation(ob, new) -> None:
    """The action (and its slot), drivers and NLA tracks of `ob`, onto `new`."""
    src = ob.animation_data
    if src is None:
        return
    dst = new.animation_data_create()
    for key in ("action_extrapolation", "action_blend_type", "action_influence", "use_nla"):
        setattr(dst, key, getattr(src, key))
    if src.action is not None:
        dst.action = src.action
        if getattr(src, "action_slot", None) is not None:
            dst.action_slot = src.action_slot  # Blender 4.4+: slotted actions
    for fc in src.drivers:
        dst.drivers.from_existing(src_driver=fc)
    for track in src.nla_tracks:
        t = dst.nla_tracks.new()
        for key in ("name", "mute", "is_solo", "lock"):
            setattr(t, key, getattr(track, key))
        for strip in track.strips:
            if strip.action is None:
                continue
            st = t.strips.new(strip.name, int(strip.frame_start), strip.action)
            _copy_values(strip, st, frozenset(("action", "frame_start_ui", "frame_end_ui",
                                               "frame_start_raw", "frame_end_raw",
                                               "select")))


def _place(idb, parent, registry=None, fresh: bool = False) -> None:
    """Put an object or collection under `parent` (an object, a collection or None = root).

    A collection parent means membership (Blender collections are the wire's `collection`
    kind); None puts it at scene level (the master collection) unless it is already there.
    `fresh`: the object was just made and linked to the scene's master collection only.
    Never reads `Object.users_collection` (a tuple of every object of every collection,
    built per call: quadratic over a big incoming batch); the collections holding the
    object are found with `registry.container_of` and a name lookup per collection.
    """
    scene_coll = capture.home_scene().collection
    if isinstance(idb, bpy.types.Collection):
        if parent is not None and not isinstance(parent, bpy.types.Collection):
            # Not representable here: refused (the batch fails verification, §6.4), so the
            # other editor keeps what its person made, marked not synced -- never "placed"
            # somewhere else and sent back as if a person here had moved it.
            raise Unrepresentable(f"{idb.name} is a collection in Blender: it can only be inside "
                              f"another collection, not under the object {parent.name}; it "
                              "stays where it is")
        target = parent if isinstance(parent, bpy.types.Collection) else scene_coll
        holders = [c for c in list(bpy.data.collections) + [scene_coll]
                   if c.children.get(idb.name) == idb]
        if target not in holders:
            _writable(target).children.link(idb)
        for c in holders:
            if c != target:
                c.children.unlink(idb)
        return
    if isinstance(parent, bpy.types.Object):
        if idb.parent != parent:
            idb.parent = parent
            if idb.parent != parent:
                # Blender refuses a parent loop without a word: `parent` is under this
                # object here (e.g. a person's reparent made while offline). Refused, so the
                # batch fails verification for it and nothing here is sent back as if a
                # person had moved it (§6.4); the daemon's answer to that person's reparent
                # says which of the two stands (§6.1 "cycle").
                raise ParentLoop(f"{idb.name} cannot go under {parent.name}: "
                                      f"{parent.name} is under {idb.name} here (a parent "
                                      "loop); it stays where it is")
            idb.matrix_parent_inverse.identity()
        return
    if idb.parent is not None:
        idb.parent = None
        idb.matrix_parent_inverse.identity()
    target = parent if isinstance(parent, bpy.types.Collection) else None
    if fresh:
        if target is not None:
            _writable(target).objects.link(idb)
            scene_coll.objects.unlink(idb)
            if registry is not None:
                registry.set_container(idb, target)
        return
    current = registry.container_of(idb) if registry is not None \
        else capture.container_collection(idb)
    if target is not None and current == target:
        return  # already there: other collections the person linked it to stay
    if target is None:
        if current is None and scene_coll.objects.get(idb.name) == idb:
            return
        if scene_coll.objects.get(idb.name) != idb:
            scene_coll.objects.link(idb)
        for c in _holders(idb):
            c.objects.unlink(idb)
        if registry is not None:
            registry.set_container(idb, None)
        return
    if target.objects.get(idb.name) != idb:
        _writable(target).objects.link(idb)
    for c in _holders(idb) + [scene_coll]:
        if c != target and c.objects.get(idb.name) == idb:
            c.objects.unlink(idb)
    if registry is not None:
        registry.set_container(idb, target)


def place_unplaced(unplaced: dict, registry) -> None:
    """Parent, then link, the new objects `apply_change` made outside every scene (uuid ->
    (object, parent uuid, visible)), in one go (`parent_unplaced_steps`, `link_unplaced`)."""
    link_unplaced(identity.run_to_end(parent_unplaced_steps(unplaced, registry)), registry)


def parent_unplaced_steps(unplaced: dict, registry):
    """Parent the new objects made outside every scene (uuid -> (object, parent uuid,
    visible)) in the batch's order, a generator yielding between time slices
    (`identity.slices`); returns what `link_unplaced` links, in the same order: (object,
    the collection it joins or None for the scene's, visible). An unknown parent makes a
    root (§6.1); each parent is resolved once. An object outside every scene is cheap to
    parent (no scene's dependency graph holds it), but each parenting still tags the
    relations of every dependency graph for a rebuild that Blender runs after the tick and
    that grows with the scene: `apply_batch_steps` slices this pass only in a small scene
    (`budget.SLICED_PARENTING_MAX_OBJECTS`; docs/ARCHITECTURE.md "Main-thread budget",
    docs/BENCHMARKS.md)."""
    parents: dict = {None: None}
    placed = []
    for item in identity.slices(list(unplaced.values())):
        if item is identity.YIELD:
            yield
            continue
        ob, parent, visible = item
        pob = parents.get(parent, parents)
        if pob is parents:
            pob = parents[parent] = registry.resolve(parent)
        if isinstance(pob, bpy.types.Object):
            try:
                ob.parent = pob
            except (ReferenceError, RuntimeError) as e:  # removed, or a parent loop
                log.error("cannot parent %s to %s: %s", ob, parent, e)
        # A collection linked from a library is read-only: the object joins the scene's
        # (its parent then reads back otherwise than sent: not synced, §6.4).
        placed.append((ob, pob if isinstance(pob, bpy.types.Collection) and pob.library is None
                       else None, visible))
    return placed


def link_unplaced(placed: list, registry) -> None:
    """Link the objects `parent_unplaced_steps` parented to their collections, in one step:
    every link tags Blender's dependency graph for a rebuild of the whole scene, which its
    event loop runs after the tick -- spread over k ticks, it would be built k times
    (docs/BENCHMARKS.md). Hidden ones are hidden once all are linked (one view-layer
    resync). A collection removed meanwhile (a person, between two ticks) leaves the object
    in the scene's collection."""
    scene_link = capture.home_scene().collection.objects.link
    links: dict = {}  # collection -> its bound `objects.link` (made once: a quarter of the step)
    hidden = []
    for ob, coll, visible in placed:
        try:
            if coll is not None:
                try:
                    link = links.get(coll)
                    if link is None:
                        link = links[coll] = coll.objects.link
                    link(ob)
                    registry.set_container(ob, coll)
                except ReferenceError:
                    scene_link(ob)
            else:
                scene_link(ob)
        except (ReferenceError, RuntimeError) as e:  # removed meanwhile
            log.error("cannot link %s: %s", ob, e)
            continue
        if not visible:
            hidden.append(ob)
    for ob in hidden:  # once every object is linked: one view-layer resync
        _set_visible(ob, False)


class SharedPlan:
    """What a batch gives to data Blender objects may share (meshes, materials): the
    mesh_hash and the material it gives each uuid, and the hash each mesh held here has,
    by mesh uuid (`held_meshes`, the pump's). See `_writable_mesh`, `_writable_material`."""

    def __init__(self, changes, held_meshes: dict[str, str]) -> None:
        self.meshes = {c["uuid"]: c["mesh_hash"] for c, _ in changes if c.get("mesh_hash")}
        self.materials = {c["uuid"]: c["material"] for c, _ in changes if c.get("material")}
        self.held_meshes = held_meshes
        # mesh uuid -> the mesh_hash this batch wrote into it (shared ones: checked once).
        self.written: dict[str, str] = {}


def _same_material(a: dict | None, b: dict | None) -> bool:
    """Equal material values within float32 storage (§6.5's epsilon)."""
    if a is None or b is None or set(a) != set(b):
        return a is b
    for k in a:
        x, y = a[k], b[k]
        xs, ys = (x, y) if isinstance(x, (list, tuple)) else ([x], [y])
        if len(xs) != len(ys) or any(abs(float(i) - float(j)) > 1e-5 for i, j in zip(xs, ys)):
            return False
    return True


def _writable_material(ob, registry, plan: "SharedPlan | None"):
    """The material a received material of object `ob` is written into (its first slot's,
    made if it has none). Objects sharing one material are separate objects elsewhere: a
    `material` for one of them changes that object only (PROTOCOL.md §6.1), so it gets its
    own copy first -- unless the batch gives every object showing it those same values, or
    the material holds them already. Linked duplicates (a shared mesh holding the slot)
    keep sharing it."""
    mat = capture.first_material(ob)
    if mat is not None:
        _writable(mat)
    elif ob.data is not None and (not len(ob.material_slots) or ob.material_slots[0].link == "DATA"):
        _writable(ob.data)  # the new material goes into the data's slot
    if mat is None or mat.users <= 1:
        return _object_material(ob, create=True)
    plan = plan or SharedPlan((), {})
    want = plan.materials.get(ob.get(identity.PROP))
    held = capture.read_state(mat, "material", registry, {}).get("material")
    if want is not None and _same_material(held, want):
        return mat
    # (an object linked nowhere -- a copy `_keep_deleted` keeps -- shows nothing: not counted)
    others = [o for o in bpy.data.objects if o != ob and o.users and capture.first_material(o) == mat]
    if not others or (want is not None and all(
            _same_material(plan.materials.get(o.get(identity.PROP)), want) for o in others)):
        return mat
    slot = ob.material_slots[0]
    if slot.link == "DATA" and ob.data is not None and ob.data.users > 1:
        return mat  # the slot is the shared mesh's: linked duplicates show one material
    slot.material = _own_copy(mat, registry, ob, len(others))
    return slot.material


def _writable_mesh(ob, registry, plan: "SharedPlan | None"):
    """The mesh a received mesh of object `ob` is written into. Objects sharing one mesh
    (Blender's linked duplicates) are separate objects in the other editor: a `mesh` for one
    of them changes that object only (PROTOCOL.md §6.1), so it gets its own copy of the
    mesh first -- unless the batch gives every object sharing it that same mesh (the other
    editor changed them all), or the mesh holds it already: they stay linked."""
    me = _writable(ob.data)
    if me.users <= 1:
        return me
    plan = plan or SharedPlan((), {})
    want = plan.meshes.get(ob.get(identity.PROP))
    mu = me.get(identity.PROP)
    if want is not None and want in (plan.held_meshes.get(mu), plan.written.get(mu)):
        return me  # what it holds already (a resync re-sending it, or a twin of this batch)
    others = [o for o in bpy.data.objects if o.data == me and o != ob and o.users]
    if not others or (want is not None and all(plan.meshes.get(o.get(identity.PROP)) == want
                                               for o in others)):
        if mu is not None and want is not None:
            plan.written[mu] = want  # its other users need no scan of every object
        return me
    ob.data = _own_copy(me, registry, ob, len(others))
    return ob.data


def _own_copy(idb, registry, ob, others: int):
    """A copy of `idb` (a mesh or material `ob` shares with `others` objects) with a uuid of
    its own, for `ob` alone."""
    own = idb.copy()
    registry.bind_new(own, identity.new_uuid())
    log.info("%s: its own copy of %s %s (shared with %d other object(s) the batch does not "
             "change)", ob.name, type(idb).__name__.lower(), idb.name, others)
    return own


def _remove_collection(coll, registry) -> list[str]:
    """Remove one collection as the Outliner's Delete does: what it alone held (objects,
    child collections) moves to the collections holding it (the scene's master collection
    at the top), so nothing leaves the scene with it. A received `delete` removes that one
    object (PROTOCOL.md §6.1); what happens to its children is the origin's to send.
    Returns the uuids moved."""
    scene_coll = capture.home_scene().collection
    parents = [c for c in list(bpy.data.collections) + [scene_coll]
               if c != coll and c.children.get(coll.name) == coll] or [scene_coll]
    moved = []
    for ob in list(coll.objects):
        if all(c == coll for c in ob.users_collection):
            for p in parents:
                if p.objects.get(ob.name) != ob:
                    p.objects.link(ob)
            u = registry.uuid_for(ob)
            if u is not None:
                moved.append(u)
    for child in list(coll.children):
        held = [c for c in list(bpy.data.collections) + [s.collection for s in bpy.data.scenes]
                if c != coll and c.children.get(child.name) == child]
        if not held:
            for p in parents:
                if p.children.get(child.name) != child:
                    p.children.link(child)
            u = registry.uuid_for(child)
            if u is not None:
                moved.append(u)
    bpy.data.collections.remove(coll)
    return moved


def _holders(ob) -> list:
    """The collections (not a scene's master) holding object `ob`."""
    return [c for c in bpy.data.collections if c.objects.get(ob.name) == ob]


def _object_material(ob, create: bool):
    """The object's first material (§6.1); a new one in a new slot if it has none."""
    mat = capture.first_material(ob)
    if mat is None and create and ob.data is not None and hasattr(ob.data, "materials"):
        mat = bpy.data.materials.new(ob.name)
        capture.use_shader_nodes(mat)
        if len(ob.material_slots):
            ob.material_slots[0].material = mat
        else:
            ob.data.materials.append(mat)
    return mat


def _set_visible(ob, visible: bool) -> None:
    if not isinstance(ob, bpy.types.Object):
        return
    ob.hide_viewport = False if visible else ob.hide_viewport
    try:
        # The sync's view layer, whichever one the person is looking at (capture.is_visible).
        vl = capture.home_view_layer()
        if vl is not None:
            ob.hide_set(not visible, view_layer=vl)
        else:
            ob.hide_set(not visible)
    except RuntimeError:
        ob.hide_viewport = not visible


def apply_live(change: dict, registry) -> None:
    """Apply one validated live preview (§6.3) at once: no undo step (the batch that follows
    is the undo step). Raises LookupError when the uuid is gone. The view layer is not
    updated here: Blender evaluates its dependency graph after the tick, once for every
    preview of the tick (docs/ARCHITECTURE.md "Main-thread budget")."""
    apply_change(change, b"", registry, 1.0, set())


def apply_batch(batch, registry, unit_scale: float) -> dict:
    """Apply every change of a batch, then push its undo step. Returns a report dict."""
    result: dict = {}
    for _ in apply_batch_steps(batch, registry, unit_scale, result):
        pass
    push_undo_step(batch)
    return result


def apply_batch_steps(batch, registry, unit_scale: float, result: dict,
                      mesh_hashes: dict | None = None, spare=None):
    """`apply_batch` as a generator: yields after each change, so that the pump spreads a
    big batch over several ticks (docs/ARCHITECTURE.md "Main-thread budget"); the changes
    are applied in order, and `result` is filled in when it is exhausted. The caller pushes
    the batch's undo step (`push_undo_step`) once it is done with it.

    New objects are made outside every scene, parented there in time slices
    (`parent_unplaced_steps`: cheap, the scene's dependency graph does not hold them; only
    in a scene of at most `budget.SLICED_PARENTING_MAX_OBJECTS`, where the relations
    rebuild each parenting tick leads to is small), then the tick ends (`budget.END_TICK`)
    and they are linked to their collections in one step at the start of the next
    (`link_unplaced`; in a bigger scene parented in that step too, `place_unplaced`): each
    link tags Blender's dependency graph for a rebuild of the whole scene (~600 ms at
    10,000 objects, measured), which Blender would otherwise redo after every tick of the
    batch. The view layer is not updated here: that rebuild is
    Blender's own, run by its event loop right after the tick (docs/BENCHMARKS.md), and
    nothing read back from the batch needs an evaluated dependency graph (`capture.read_state`
    reads local transforms, parents and flags).

    `spare(change, attachment)`, asked right before each change is applied, in the same
    step (the batch may span ticks, and a person may edit between them): True leaves that change unapplied (a
    part a person changed here meanwhile, PROTOCOL.md §6.4), a list of (change, attachment)
    pairs applies those in its place (of a replayed `create`, the parts the person did not
    change, §6.6), False applies it; the caller answers for it."""
    touched: list[str] = []
    failed: list[dict] = []
    deleted: set[str] = set()
    rehomed: list[str] = []
    meshes: dict = {}
    unplaced: dict = {}
    removals: list = []  # objects consecutive deletes took, removed together
    shared = SharedPlan(batch.changes, mesh_hashes or {})
    looped: list = []  # reparents that met a parent loop: tried again after the rest

    def apply_one(change, attachment, defer_loops: bool) -> None:
        try:
            touched.append(apply_change(change, attachment, registry, unit_scale, deleted,
                                        meshes, unplaced, rehomed, shared, removals))
        except (LookupError, wire.WireError, ValueError, TypeError, RuntimeError) as e:
            if defer_loops and isinstance(e, ParentLoop):
                looped.append((change, attachment))
                return
            log.error("batch %s: cannot apply %s to %s: %s", batch.batch_id,
                      change.get("op"), change.get("uuid"), e)
            failed.append({"uuid": change.get("uuid"), "op": change.get("op"),
                           "error": str(e)})

    for change, attachment in batch.changes:
        if removals and (change.get("op") != "delete" or len(removals) >= budget.REMOVE_STEP_OBJECTS):
            remove_objects(removals, registry)  # before any other change: it sees them gone
            yield
        if attachment:
            # A mesh is built in one go: at the start of a tick. The tick may end here, and a
            # person may edit the object before the next one: `spare` is asked after, in the
            # step that applies the change. Asked before, a rename made in between was
            # overwritten by the batch's name (random edits, seed 87).
            yield budget.HEAVY_NEXT
        instead = spare(change, attachment) if spare is not None else False
        if instead is True:
            yield
            continue
        if instead is not False:
            # (An empty list applies nothing: every part of it is the person's. Taken for
            # False, the change was applied whole over them.)
            for part, part_attachment in instead:
                apply_one(part, part_attachment, defer_loops=True)
                yield
            if not instead:
                yield
            continue
        apply_one(change, attachment, defer_loops=True)
        yield
    if removals:
        remove_objects(removals, registry)
        yield
    for change, attachment in looped:
        apply_one(change, attachment, defer_loops=False)
        yield
    if removals:
        remove_objects(removals, registry)
        yield
    if len(unplaced) < budget.LINK_STEP_MIN_OBJECTS:
        # A few new objects: parented and linked in this tick (budget.LINK_STEP_MIN_OBJECTS).
        if unplaced:
            place_unplaced(unplaced, registry)
    elif len(bpy.context.scene.objects) <= budget.SLICED_PARENTING_MAX_OBJECTS:
        # Parented in slices while outside every scene, then the tick ends and the link
        # step starts the next one: the one step that puts them in the scene.
        placed = yield from parent_unplaced_steps(unplaced, registry)
        yield budget.END_TICK
        link_unplaced(placed, registry)
        yield  # ~10 ms at 10,000 objects: what follows waits for the next tick
    else:
        # A big scene: each parenting tick would be followed by Blender's rebuild of the
        # whole scene's relations; parented and linked in one step, one rebuild.
        yield budget.END_TICK
        place_unplaced(unplaced, registry)
        yield
    result.update({"touched": touched, "failed": failed, "deleted": sorted(deleted),
                   "meshes": meshes, "rehomed": rehomed})


def push_undo_step(batch) -> None:
    """The batch's one undo step (PROTOCOL.md §6.3). `bpy.ops` updates the view layer before
    and after every operator: run on a tick after the batch's own, once Blender's event loop
    has evaluated the new scene, that update has nothing left to do (at 10,000 new objects
    it is the ~0.7 s dependency-graph build otherwise paid inside this step). An empty batch
    pushes none."""
    if not batch.changes:
        return
    try:
        bpy.ops.ed.undo_push(message=f"VibeSync: apply batch {batch.seq}")
    except RuntimeError as e:  # e.g. no undo stack in this context
        log.warning("batch %s: could not push an undo step: %s", batch.batch_id, e)
