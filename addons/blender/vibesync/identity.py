"""Datablock identity: `id["vibesync_uuid"]`, bindings by session_uid, persistence.

Rules (docs/PROTOCOL.md §5 `register`):
* every tracked datablock carries a uuid in its custom property `vibesync_uuid`;
* while a file is open, bindings are keyed by `(kind, session_uid)`; the datablock already
  bound keeps its uuid, a newcomer carrying a taken uuid (Shift+D, copy/paste, append) gets
  a fresh one at once and the collision is recorded;
* no bpy reference is kept: only uuids, kinds, names and session_uids; `resolve()` finds the
  datablock just before each use and returns None when it is gone;
* the registry is persisted in the .blend (text block `.vibesync_registry`) and in a sidecar
  `<file>.blend.vibesync.json`, both with `schema_version` and a checksum;
* data linked from a library .blend (File > Link) is read-only and cannot keep a property
  (Blender reloads it from the library): its uuid is derived, `uuid5(<library's uuid>,
  "<kind>:<name>")`, where the library's uuid is the `Library` datablock's own property (a
  `Library` belongs to this file: its property is saved with it); a library override stands
  for the linked datablock it overrides and takes its uuid (docs/PROTOCOL.md §5 `register`).
"""

from __future__ import annotations

import array
import collections
import hashlib
import json
import logging
import os
import time
import uuid as uuidlib

import bpy

from . import budget, capture, deleted_keep, wire

log = logging.getLogger("vibesync.identity")

PROP = "vibesync_uuid"
# On a copy `apply._keep_deleted` keeps of an object another editor deleted: the uuid it was
# kept for. Such a copy, linked nowhere, is not tracked (`Registry._held`).
KEPT = "vibesync_kept"
SCHEMA_VERSION = 1
TEXT_BLOCK = ".vibesync_registry"
SIDECAR_SUFFIX = ".vibesync.json"

# kind -> (bpy.data collection attribute, Blender ID code used in editor_ref)
KIND_TABLE: dict[str, tuple[str, str]] = {
    "object": ("objects", "OB"),
    "mesh": ("meshes", "ME"),
    "material": ("materials", "MA"),
    "armature": ("armatures", "AR"),
    "action": ("actions", "AC"),
    "image": ("images", "IM"),
    "collection": ("collections", "GR"),
    "light": ("lights", "LA"),
    "camera": ("cameras", "CA"),
    "node_group": ("node_groups", "NT"),
}
ID_TYPE_TO_KIND = {
    "OBJECT": "object", "MESH": "mesh", "MATERIAL": "material", "ARMATURE": "armature",
    "ACTION": "action", "IMAGE": "image", "COLLECTION": "collection", "LIGHT": "light",
    "CAMERA": "camera", "NODETREE": "node_group",
}


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def editor_ref(kind: str, name: str, library: str | None = None) -> str:
    """`OB:Cube`; a datablock linked from a library: `OB:Cube [lib.blend]` (Blender's full
    name, the library's name in brackets)."""
    if library is not None:
        return f"{KIND_TABLE[kind][1]}:{name} [{library}]"
    return f"{KIND_TABLE[kind][1]}:{name}"


def kind_of(idb) -> str | None:
    """The wire kind of a datablock, or None if it is not tracked."""
    try:
        return ID_TYPE_TO_KIND.get(idb.id_type)
    except (AttributeError, ReferenceError):
        return None


def _trackable(idb) -> bool:
    # Embedded data (a scene's master collection, node trees of materials) is not in
    # bpy.data. Linked (library) data is tracked by a derived uuid (`Registry.derived_uuid`).
    return not getattr(idb, "is_embedded_data", False)


def library_name(idb) -> str | None:
    """The name of the library `idb` is linked from (`lib.blend`), or None (local data)."""
    lib = idb.library
    return None if lib is None else lib.name


def override_reference(idb):
    """The linked datablock a library override overrides, or None (not an override)."""
    ov = getattr(idb, "override_library", None)
    if ov is None:
        return None
    ref = ov.reference
    return ref if ref is not None and ref.library is not None else None


def linked_read_only(idb) -> str | None:
    """Why Blender cannot hold an edit of `idb` (linked from a library, read-only), or None."""
    lib = idb.library
    if lib is None:
        return None
    return (f"{idb.name} is linked from {lib.filepath}: read-only in Blender; make a library "
            "override to edit it")


def run_to_end(steps):
    """Drive a sliced generator (`scan_steps`, `sweep_steps`) to the end in one go and return
    what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value

class Binding:
    """What we remember about one uuid: never a bpy reference."""

    __slots__ = ("uuid", "kind", "session_uid", "name", "alive", "library")

    def __init__(self, uuid: str, kind: str, session_uid: int, name: str,
                 library: str | None = None) -> None:
        self.uuid = uuid
        self.kind = kind
        self.session_uid = session_uid
        self.name = name
        self.alive = True
        self.library = library  # the library's name when linked from one (read-only data)

    def editor_ref(self) -> str:
        return editor_ref(self.kind, self.name, self.library)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "editor_ref": self.editor_ref()}


class ScanReport:
    """What one scan changed: for logging, the daemon and the tests."""

    def __init__(self) -> None:
        self.new: list[str] = []           # uuids bound for the first time this session
        self.rebound: list[str] = []       # bound uuids found again (undo/redo/load)
        self.renamed: list[str] = []
        self.vanished: list[str] = []      # bound, alive, now missing (deleted)
        self.revived: list[str] = []       # bound, missing earlier, back (undo of delete)
        self.restored_props: list[str] = []  # property rewritten to the bound uuid
        self.collisions: list[dict] = []   # {"original", "newcomer", "kind", "name"}
        self.assigned: list[str] = []      # datablocks that had no valid uuid


# Datablocks read per slice by the resumable scan and sweep (~0.5-1 ms of main-thread time).
SCAN_SLICE = 256
# A resumable pass yields once a slice has run this long (its items cost 1-40 us each).
SLICE_S = budget.SLICE_S
YIELD = object()  # what `slices` puts between two slices


def slices(items, seconds: float = SLICE_S):
    """The items, with `YIELD` inserted whenever the current slice has run `seconds`: a
    generator looping over them yields there, so a pass over 20,000 entries is spread over
    pump ticks (checked every 32 items)."""
    start = time.perf_counter()
    for n, item in enumerate(items):
        if n & 31 == 31 and time.perf_counter() - start > seconds:
            yield YIELD
            start = time.perf_counter()
        yield item


def datablock_slices():
    """Every datablock of every synced kind as `(kind, idb)`, read `SCAN_SLICE` at a time
    with `YIELD` after each slice (the scan and the sweep walk `bpy.data` this way)."""
    for kind, (attr, _code) in KIND_TABLE.items():
        coll = getattr(bpy.data, attr)
        start = 0
        while True:
            chunk = coll[start:start + SCAN_SLICE]
            if not chunk:
                break
            for idb in chunk:
                yield kind, idb
            start += len(chunk)
            yield YIELD


def _release(*containers):
    """Empty big containers a slice at a time (a generator yielding between slices)."""
    for c in containers:
        while c:
            if isinstance(c, list):
                del c[-4096:]
            else:
                for _ in range(min(4096, len(c))):
                    c.pop() if isinstance(c, set) else c.popitem()
            yield


def _unused(idb) -> bool:
    """No users, or used only by linked datablocks that have none (a linked mesh whose
    linked object was made local). `user_map` reads the whole file: asked only when a local
    newcomer is named like a linked datablock (`Registry._made_local`)."""
    if idb.users == 0:
        return True
    users = bpy.data.user_map(subset=[idb]).get(idb, ())
    return all(u.library is not None and u.users == 0 for u in users)


class Registry:
    """uuid <-> (kind, session_uid) bindings of the open file."""

    def __init__(self) -> None:
        self.bindings: dict = {}  # uuid -> Binding
        self.by_key: dict[tuple[str, int], str] = {}
        self.collision_log = collections.deque(maxlen=1000)
        # kind -> {session_uid: datablock}: `bpy.data.<kind>.get(name)` is a linear search
        # (~3 ms per lookup in a 10,000-object file), this makes `resolve` O(1). Built in one
        # pass when needed, rebuilt at most once per epoch (pump tick) on a miss, dropped on
        # undo/redo and file load (`invalidate`); every hit is checked (session_uid, and a
        # removed datablock raises ReferenceError).
        self._index: dict[str, dict[int, object]] = {}
        self._built_in: dict[str, int] = {}
        self.epoch = 0
        # Object session_uid -> session_uid of the first collection holding it (in
        # `bpy.data.collections` order: what `Object.users_collection` lists first). That
        # property builds a tuple of every object of every collection per call (~4 ms per
        # object in a 10,000-object file: quadratic over a first sync); this map is built
        # in one C-speed pass per collection (`foreach_get`) and dropped whenever
        # membership may have changed (`membership_changed`).
        self._container: dict[int, int] | None = None
        # Library session_uid -> the library's uuid (its property), what linked datablocks'
        # uuids derive from; kept here too, so an undo that rewinds the property gets it back.
        self.libraries: dict[int, str] = {}
        # (kind, session_uid) of linked datablocks a library override stands for: not
        # tracked (the override carries their uuid), rebuilt by each scan.
        self.shadowed: set[tuple[str, int]] = set()
        # (kind, session_uid) -> why that datablock is not tracked (its derived uuid is held
        # by another datablock: a derived uuid cannot be renumbered).
        self.untracked: dict[tuple[str, int], str] = {}
        # session_uids of the objects in the synced scene (`capture.home_scene`), built with
        # `_container` and for the scene named by `_home_sid`.
        self._in_home: set[int] | None = None
        self._home_colls: set[int] | None = None  # the collections under it, at any depth
        self._home_sid: int | None = None
        self._home_epoch = -1
        # uuids of the objects the pump found out of the synced scene (`Session._in_scene`).
        self.out_of_scene: set[str] = set()
        # (kind, name) -> uuids of the linked datablocks of that name (one per library): a
        # local newcomer of that kind and name, while one of them is gone, is it made local
        # (`_made_local`).
        self._linked_names: dict[tuple[str, str], list[str]] = {}
        # uuid -> what `apply._keep_deleted` kept of an object another editor deleted (its
        # copy's session_uid, the references to it); the copies (linked nowhere) are not
        # tracked while kept (`_held`).
        self.kept: deleted_keep.DeletedKeep[deleted_keep.Kept] = deleted_keep.DeletedKeep()

    def clear(self) -> None:
        """Forget every binding (file load: session_uids of the old file are meaningless)."""
        self.bindings.clear()
        self.by_key.clear()
        self.libraries.clear()
        self.shadowed.clear()
        self.untracked.clear()
        self.kept.clear()  # the copies were not saved with the file: gone with it
        self._linked_names.clear()
        self.invalidate()

    def invalidate(self) -> None:
        """Datablocks may have been reallocated (undo, redo, load): drop the index."""
        self._index.clear()
        self._built_in.clear()
        self._container = None

    def membership_changed(self) -> None:
        """A collection's objects may have changed (a depsgraph update of a collection or
        scene, an applied batch): the container map is rebuilt on its next use."""
        self._container = None

    def _membership(self) -> dict[int, int]:
        """The container map, and with it the synced scene's objects (one pass over the
        collections' object lists, `foreach_get`: ~0.5 ms for 10,000 objects), rebuilt
        after `membership_changed` or when the synced scene is another one."""
        if self._container is not None and self._home_epoch == self.epoch:
            return self._container  # the synced scene looked up once per pump tick
        scene = capture.home_scene(strict=True)
        sid = scene.session_uid if scene is not None else None
        self._home_epoch = self.epoch
        if self._container is None or sid != self._home_sid:
            home_colls: set[int] = set()
            home: set[int] | None = None  # not known: every object counts as in it
            if scene is not None:
                home = set()
                home_colls = {c.session_uid for c in scene.collection.children_recursive}
                master = scene.collection.objects
                sids = array.array("i", bytes(4 * len(master)))
                master.foreach_get("session_uid", sids)
                home.update(sids)
            m: dict[int, int] = {}
            elsewhere: dict[int, int] = {}  # held by collections of other scenes only
            for coll in bpy.data.collections:
                objs = coll.objects
                sids = array.array("i", bytes(4 * len(objs)))
                objs.foreach_get("session_uid", sids)
                csid = coll.session_uid
                if home is not None and csid not in home_colls:
                    for s in sids:
                        elsewhere.setdefault(s, csid)
                    continue
                for s in sids:
                    m.setdefault(s, csid)
                if home is not None:
                    home.update(sids)
            for s, csid in elsewhere.items():
                if s not in home:  # in the synced scene: its container is a collection there
                    m.setdefault(s, csid)
            self._container, self._in_home, self._home_sid = m, home, sid
            self._home_colls = home_colls if scene is not None else None
        return self._container

    def container_of(self, ob):
        """The first collection (not a scene's master) holding object `ob`, or None: what
        `capture.container_collection` finds, in O(1) once the map is built."""
        csid = self._membership().get(ob.session_uid)
        return None if csid is None else self.lookup("collection", csid)

    def in_home_scene(self, ob) -> bool:
        """Is object `ob` linked into the synced scene (`capture.home_scene`: its master
        collection or one of the collections under it)? O(1) once the map is built."""
        self._membership()
        return self._in_home is None or ob.session_uid in self._in_home

    def collection_in_home_scene(self, coll) -> bool:
        """Is collection `coll` in the synced scene (under its master collection, at any
        depth)? A collection only another scene holds is not sent, like its objects."""
        self._membership()
        return self._home_colls is None or coll.session_uid in self._home_colls

    def collection_parent(self, coll):
        """The collection `coll` is a child of in the synced scene, or None (under the
        scene's master collection); for a collection outside it, its first parent. A pass
        over `bpy.data.collections`."""
        self._membership()
        home = self._home_colls
        first = None
        for c in bpy.data.collections:
            child = c.children.get(coll.name)
            if child is None or child != coll:
                continue
            if home is None or c.session_uid in home:
                return c
            if first is None:
                first = c
        return None if home is not None and coll.session_uid in home else first

    def set_container(self, ob, coll) -> None:
        """`ob` was just moved into collection `coll` only (None: the scene's master):
        the container map, if built, follows without a rebuild."""
        if self._container is not None:
            if coll is None:
                self._container.pop(ob.session_uid, None)
            else:
                self._container[ob.session_uid] = coll.session_uid

    def new_epoch(self) -> None:
        self.epoch += 1

    def lookup(self, kind: str, session_uid: int):
        """The live datablock of this kind with this session_uid, or None."""
        idx = self._index.get(kind)
        if idx is not None:
            idb = idx.get(session_uid)
            if idb is not None:
                try:
                    if idb.session_uid == session_uid:
                        return idb
                except ReferenceError:
                    pass  # removed since it was indexed
            if self._built_in.get(kind) == self.epoch:
                return None  # indexed this epoch and not there: gone
        idx = self._index[kind] = {}
        for idb in getattr(bpy.data, KIND_TABLE[kind][0]):
            idx[idb.session_uid] = idb
        self._built_in[kind] = self.epoch
        return idx.get(session_uid)

    def _indexed(self, kind: str, idb) -> None:
        idx = self._index.get(kind)
        if idx is not None:
            idx[idb.session_uid] = idb

    # ---------------------------------------------------------------------- queries
    def alive_uuids(self) -> list[str]:
        return [u for u, b in self.bindings.items() if b.alive]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KIND_TABLE}
        for b in self.bindings.values():
            if b.alive:
                out[b.kind] += 1
        return out

    def uuid_for(self, idb) -> str | None:
        kind = kind_of(idb)
        if kind is None:
            return None
        return self.by_key.get((kind, idb.session_uid))

    def resolve(self, uuid: str):
        """The datablock bound to `uuid` right now, or None (fail fast; never cached)."""
        b = self.bindings.get(uuid)
        if b is None or not b.alive:
            return None
        idb = self.lookup(b.kind, b.session_uid)
        if idb is None or not _trackable(idb):
            return None
        if idb.name != b.name:
            b.name = idb.name  # renamed since we last looked
        return idb

    def library_uuid(self, lib) -> str:
        """The uuid of a `Library` datablock: its property (a library belongs to this file,
        so the property is saved with it), given once and restored when an undo rewinds it."""
        sid = lib.session_uid
        u = self.libraries.get(sid)
        prop = lib.get(PROP)
        if u is None:
            u = prop if wire.is_valid_uuid(prop) and prop not in self.libraries.values() \
                else new_uuid()
            self.libraries[sid] = u
        if prop != u:
            lib[PROP] = u
        return u

    def derived_uuid(self, kind: str, idb) -> str | None:
        """The uuid of a datablock that cannot keep the property, or None (local data keeps
        its own): linked from a library, `uuid5(<library's uuid>, "<kind>:<name>")` -- the
        same after a save and reopen, another for another library's datablock of that name;
        a library override, the uuid of the linked datablock it overrides (Blender rebuilds
        an override from it on load, dropping properties set on the override)."""
        if idb.library is None:
            ref = override_reference(idb)
            if ref is None:
                return None
            idb = ref
        return str(uuidlib.uuid5(uuidlib.UUID(self.library_uuid(idb.library)), f"{kind}:{idb.name}"))

    def linked_count(self) -> int:
        """Tracked datablocks linked from a library (read-only here)."""
        return sum(1 for b in self.bindings.values() if b.alive and b.library is not None)

    # ------------------------------------------------------------------------- scan
    def keep_deleted(self, uuid: str, copy) -> list[int]:
        """Record `copy` (an object linked nowhere) as what was kept of `uuid` when another
        editor deleted it; returns the session_uids of the copies forgotten for it (the
        oldest beyond `deleted_keep.CAPACITY`, or an earlier copy of the same uuid), for the
        caller to free."""
        copy[KEPT] = uuid
        return [k.sid for k in self.kept.keep(uuid, deleted_keep.Kept(copy.session_uid))]

    def take_kept(self, uuid: str) -> deleted_keep.Kept | None:
        """What was kept of `uuid` (its copy's session_uid, the references to it), taken out
        of the keep, or None."""
        return self.kept.take(uuid)

    @staticmethod
    def _held(kind: str, idb) -> bool:
        """A kept copy (`keep_deleted`), linked nowhere: not tracked -- nor one the keep has
        forgotten that an undo brought back. A person who links it into a scene makes it a
        new object (it carries no uuid while kept). Asked of untracked datablocks only."""
        return kind == "object" and idb.users == 0 and idb.get(KEPT) is not None

    def bind_new(self, idb, uuid: str) -> None:
        """Bind a datablock the addon itself created (incoming `create`)."""
        kind = kind_of(idb)
        idb[PROP] = uuid
        old = self.bindings.get(uuid)
        if old is not None:
            self.by_key.pop((old.kind, old.session_uid), None)
        self.bindings[uuid] = Binding(uuid, kind, idb.session_uid, idb.name)
        self.by_key[(kind, idb.session_uid)] = uuid
        self._indexed(kind, idb)

    def scan(self):
        """A whole scan at once (a save, an agent's tool call): see `scan_steps`."""
        return run_to_end(self.scan_steps())

    def scan_steps(self):
        """Enforce uuids on every tracked datablock and rebuild the bindings, in slices of
        `SCAN_SLICE` datablocks: a generator that yields between slices (the pump resumes
        it on its next tick, so a 10,000-object file never blocks Blender's main thread)
        and returns the `ScanReport`.

        Bound datablocks go first so that, whatever Blender's iteration order, the datablock
        already holding a uuid keeps it and only newcomers are renumbered. Datablocks made
        or removed between slices may be missed by this pass (the depsgraph and the sweep
        report them); a bound uuid not seen is declared vanished only if a fresh lookup by
        session_uid does not find its datablock either.
        """
        report = ScanReport()
        present: list[tuple[str, object, int]] = []
        live_keys: set[tuple[str, int]] = set()
        shadowed: set[tuple[str, int]] = set()
        for entry in datablock_slices():
            if entry is YIELD:
                yield
                continue
            kind, idb = entry
            if _trackable(idb):
                sid = idb.session_uid
                present.append((kind, idb, sid))
                live_keys.add((kind, sid))
                if idb.library is None:
                    ref = override_reference(idb)
                    if ref is not None:
                        shadowed.add((kind, ref.session_uid))
        # A linked datablock a library override stands for is not tracked: the override
        # takes its uuid (`derived_uuid`).
        self.shadowed = shadowed
        self.untracked.clear()
        live_keys.difference_update(shadowed)

        taken: dict[str, tuple[str, int]] = {}
        newcomers: list[tuple[str, object]] = []
        for entry in slices(present):
            if entry is YIELD:
                yield
                continue
            kind, idb, sid = entry
            key = (kind, sid)
            if key in shadowed:
                continue
            try:
                prop = idb.get(PROP)
                name = idb.name
            except ReferenceError:
                continue  # removed since the slice was read
            bound = self.by_key.get(key)
            if bound is None:
                if not self._held(kind, idb):
                    newcomers.append((kind, idb))
                continue
            b = self.bindings[bound]
            if prop != bound and b.library is None and override_reference(idb) is None:
                # Undo/redo rewound the property (e.g. a duplicate's fresh uuid): restore.
                idb[PROP] = bound
                report.restored_props.append(bound)
            if not b.alive:
                b.alive = True
                report.revived.append(bound)
            else:
                report.rebound.append(bound)
            if b.name != name:
                b.name = name
                report.renamed.append(bound)
            taken[bound] = key
            self._indexed(kind, idb)

        def holder_alive(uuid: str, key: tuple) -> bool:
            if uuid in taken:
                return True
            other = self.bindings.get(uuid)
            return other is not None and (other.kind, other.session_uid) in live_keys \
                and (other.kind, other.session_uid) != key

        for entry in slices(newcomers):
            if entry is YIELD:
                yield
                continue
            kind, idb = entry
            try:
                uuid = self._bind_newcomer(kind, idb, report, holder_alive)
            except ReferenceError:
                continue
            if uuid is not None:
                taken[uuid] = (kind, idb.session_uid)

        missing = []
        for b in slices(list(self.bindings.values())):
            if b is YIELD:
                yield
            elif b.alive and b.uuid not in taken:
                missing.append(b.uuid)
        if missing:
            yield
            for kind in {self.bindings[u].kind for u in missing}:
                self._index.pop(kind, None)  # the next lookup reads this kind afresh
            for u in missing:
                b = self.bindings[u]
                if self.lookup(b.kind, b.session_uid) is None:
                    b.alive = False
                    report.vanished.append(u)
        # Freeing 20,000 entries at once is itself a pause: release them a slice at a time.
        yield from _release(present, newcomers, live_keys, taken)
        return report

    def adopt(self, keys) -> "ScanReport":
        """Bind just these (kind, session_uid) keys: new datablocks seen by the depsgraph.

        Cheaper than a full scan for a big file; same rules (a newcomer carrying a uuid that
        a live datablock holds gets a fresh one).
        """
        report = ScanReport()
        wanted: dict[str, set[int]] = {}
        for kind, sid in keys:
            if (kind, sid) not in self.by_key:
                wanted.setdefault(kind, set()).add(sid)

        def holder_alive(uuid: str, key: tuple) -> bool:
            other = self.bindings.get(uuid)
            if other is None or not other.alive or (other.kind, other.session_uid) == key:
                return False
            return self.resolve(uuid) is not None

        for kind, sids in wanted.items():
            for sid in sids:
                if (kind, sid) in self.shadowed or (kind, sid) in self.untracked:
                    continue
                idb = self.lookup(kind, sid)  # O(1): no pass over a big file
                if idb is not None and _trackable(idb) and (kind, sid) not in self.by_key \
                        and not self._held(kind, idb):
                    self._bind_newcomer(kind, idb, report, holder_alive)
        return report

    def _bind_newcomer(self, kind: str, idb, report, holder_alive) -> str | None:
        """Bind a datablock not bound yet; returns its uuid, or None when it cannot be
        tracked (its derived uuid is held by another datablock: see `untracked`)."""
        key = (kind, idb.session_uid)
        derived = self.derived_uuid(kind, idb)
        if derived is not None:
            # Linked data or a library override: no property to keep or renumber.
            ref = override_reference(idb)
            holder = self.bindings.get(derived)
            if ref is not None:
                ref_key = (kind, ref.session_uid)
                self.shadowed.add(ref_key)
                if holder is not None and (holder.kind, holder.session_uid) == ref_key:
                    holder = None  # the override takes over the uuid of what it overrides
            if holder is not None and holder_alive(derived, key):
                why = (f"{idb.name}: its uuid {derived} (derived from its library and name) "
                       "is held by another datablock")
                if holder.library is None:
                    why = (f"{idb.name} was made local: the local {holder.name} carries its "
                           f"uuid {derived}, this unused linked one is not synced")
                self.untracked[key] = why
                log.warning("vibesync: %s; not synced", why)
                return None
            uuid = derived
            report.new.append(uuid)
            old = self.bindings.get(uuid)
            if old is not None:
                self.by_key.pop((old.kind, old.session_uid), None)
            self.bindings[uuid] = Binding(uuid, kind, idb.session_uid, idb.name,
                                          library_name(idb))
            self.by_key[key] = uuid
            self._indexed(kind, idb)
            if idb.library is not None:
                named = self._linked_names.setdefault((kind, idb.name), [])
                if uuid not in named:
                    named.append(uuid)
            return uuid
        if KEPT in idb:
            del idb[KEPT]  # a kept copy the person linked into a scene: an object again
        prop = idb.get(PROP)
        uuid = prop if wire.is_valid_uuid(prop) else None
        made_local = uuid is None and self._linked_names and self._made_local(kind, idb)
        if made_local:
            uuid = made_local
            idb[PROP] = uuid
        elif uuid is not None:
            if holder_alive(uuid, key):
                fresh = new_uuid()
                event = {"original": uuid, "newcomer": fresh, "kind": kind,
                         "name": idb.name, "at": time.time()}
                report.collisions.append(event)
                self.collision_log.append(event)
                log.warning("uuid collision: %s %r carried %s (already bound to another "
                            "datablock); gave the newcomer %s", kind, idb.name, uuid, fresh)
                uuid = fresh
                idb[PROP] = uuid
        else:
            uuid = new_uuid()
            idb[PROP] = uuid
            report.assigned.append(uuid)
        old = self.bindings.get(uuid)
        if old is not None:
            self.by_key.pop((old.kind, old.session_uid), None)
        self.bindings[uuid] = Binding(uuid, kind, idb.session_uid, idb.name)
        self.by_key[key] = uuid
        self._indexed(kind, idb)
        report.new.append(uuid)
        return uuid

    def _made_local(self, kind: str, idb) -> str | None:
        """The uuid of the linked datablock `idb` was made from by Make Local (Object > Library
        > Make Local, `ID.make_local`), or None. Blender makes a new local datablock of the
        same name in the linked one's place and frees the linked one (or leaves it unused,
        when other linked data still points at it), leaving no trace of where the local one
        came from: a local newcomer without a uuid, of the kind and name of a linked
        datablock that is gone or has no users left, is that one made local and keeps its
        uuid -- it had a new one, and the other editor deleted the object and made another
        (its own components lost). The unused linked one is then untracked (its derived
        uuid is the local one's)."""
        for u in self._linked_names.get((kind, idb.name), ()):
            b = self.bindings.get(u)
            if b is None or b.library is None or not b.alive:
                continue
            linked = self.lookup(kind, b.session_uid)
            if linked is None or _unused(linked):
                self._linked_names[(kind, idb.name)].remove(u)
                # It took the linked one's place in its collections without an update of
                # them: the synced scene's objects are read again.
                self.membership_changed()
                log.info("vibesync: %s %r made local: it keeps its uuid %s", kind, idb.name, u)
                return u
        return None

    def sweep(self) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
        """A whole sweep at once: see `sweep_steps`."""
        return run_to_end(self.sweep_steps())

    def sweep_steps(self, differs=None):
        """Cheap check without assignment, in slices of `SCAN_SLICE` datablocks (a generator
        like `scan_steps`, returning `(gone, renamed, unknown)`): bound uuids whose datablock
        is gone, keys whose name changed (some renames, e.g. of collections, send no
        depsgraph update) or for which `differs(uuid, datablock)` is true (what the caller
        last sent differs in a way no depsgraph update reports, e.g. an object hidden with
        the outliner's eye or H), and keys not bound yet (datablocks created without a
        depsgraph update, e.g. orphan data). A bound uuid not seen by the pass (its datablock
        may have moved between slices) is gone only if a fresh lookup does not find it."""
        seen: set[tuple[str, int]] = set()
        unknown = []
        unknown_names: set[tuple[str, str]] = set()  # local ones, when anything is linked
        renamed = []
        for entry in datablock_slices():
            if entry is YIELD:
                yield
                continue
            kind, idb = entry
            key = (kind, idb.session_uid)
            seen.add(key)
            u = self.by_key.get(key)
            if u is None:
                if key not in self.shadowed and key not in self.untracked \
                        and not self._held(kind, idb):
                    unknown.append(key)
                    if self._linked_names and idb.library is None:
                        unknown_names.add((kind, idb.name))
                continue
            b = self.bindings.get(u)
            if b is not None and b.alive and (b.name != idb.name or (differs is not None and differs(u, kind, idb))):
                renamed.append(key)
        gone = []
        missing = []
        for b in slices(list(self.bindings.values())):
            if b is YIELD:
                yield
            elif b.alive and (b.kind, b.session_uid) not in seen:
                missing.append(b)
        if missing:
            yield
            for kind in {b.kind for b in missing}:
                self._index.pop(kind, None)  # the next lookup reads this kind afresh
            # Sliced: a batch applied while the sweep runs binds thousands of new datablocks
            # the pass did not see (measured: 4,769 lookups, 17 ms in one step).
            for b in slices(missing):
                if b is YIELD:
                    yield
                elif self.lookup(b.kind, b.session_uid) is None:
                    if b.library is not None and (b.kind, b.name) in unknown_names:
                        continue  # made local: the newcomer takes its uuid (`_made_local`)
                    b.alive = False
                    gone.append(b.uuid)
        yield from _release(seen)
        return gone, renamed, unknown

    def rebind_uuid(self, old: str, new: str) -> None:
        """Give the datablock bound to `old` the uuid `new` (it takes back the uuid the
        daemon knows it by); `old` is forgotten."""
        b = self.bindings.pop(old)
        idb = self.resolve_binding(b)
        if idb is not None and b.library is None:
            idb[PROP] = new
        b.uuid = new
        self.bindings[new] = b
        self.by_key[(b.kind, b.session_uid)] = new

    def resolve_binding(self, b: Binding):
        return self.lookup(b.kind, b.session_uid)

    def has_unknown(self, kind: str, session_uid: int) -> bool:
        return (kind, session_uid) not in self.by_key

    # ------------------------------------------------------------------- persistence
    def snapshot(self, project_id: str | None, last_seq: int = 0,
                 synced: dict | None = None, unresolved: dict | None = None,
                 home: tuple[str, str] | None = None,
                 deleted: set[str] | frozenset[str] = frozenset()) -> dict:
        """The persisted registry; `project_id` and `last_seq` are the file's sync position
        (the project it belongs to and the last daemon seq its contents reflect). Optional:
        `synced` (uuid -> state) what this file last sent or applied of each object — the
        base a person's later edits are told apart by (PROTOCOL.md §6.6) — and `unresolved`
        (uuid -> parts) the parts of its changes that had no outcome yet; `home` the (scene,
        view layer) the file is synced with (`capture.home_view_layer`); `deleted` the uuids
        deleted here whose `tombstone` the daemon has not acknowledged (sent again when the
        file is opened and connects)."""
        entries = {u: b.as_dict() for u, b in sorted(self.bindings.items()) if b.alive}
        doc = {"schema_version": SCHEMA_VERSION, "project_id": project_id,
               "last_seq": int(last_seq), "entries": entries}
        if synced:
            doc["synced"] = {u: synced[u] for u in sorted(synced) if u in entries}
        if unresolved:
            doc["unresolved"] = {u: list(unresolved[u]) for u in sorted(unresolved) if u in entries}
        if home is not None:
            doc["home"] = list(home)
        gone = sorted(u for u in deleted if u not in entries)
        if gone:
            doc["deleted"] = gone
        doc["checksum"] = checksum(doc)
        return doc


def checksum(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class RegistryFileError(Exception):
    """A persisted registry that cannot be trusted (where + why)."""


def validate_document(doc: object, where: str) -> dict:
    """Check schema_version and checksum; migrate older schemas explicitly (none yet)."""
    if not isinstance(doc, dict):
        raise RegistryFileError(f"{where}: not a JSON object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RegistryFileError(f"{where}: schema_version {version!r} is not supported "
                                f"(expected {SCHEMA_VERSION}); update the VibeSync addon")
    if doc.get("checksum") != checksum(doc):
        raise RegistryFileError(f"{where}: checksum mismatch; the registry was edited or "
                                "truncated, it is ignored and rebuilt from the datablocks")
    if not isinstance(doc.get("entries"), dict):
        raise RegistryFileError(f"{where}: `entries` is not an object")
    return doc


def write_text_block(doc: dict) -> None:
    text = bpy.data.texts.get(TEXT_BLOCK)
    if text is None:
        text = bpy.data.texts.new(TEXT_BLOCK)
    text.use_fake_user = True
    text.clear()
    text.write(json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False))


def read_text_block() -> dict | None:
    text = bpy.data.texts.get(TEXT_BLOCK)
    if text is None:
        return None
    try:
        doc = json.loads(text.as_string())
    except ValueError as e:
        raise RegistryFileError(f"text block {TEXT_BLOCK!r}: invalid JSON ({e})") from None
    return validate_document(doc, f"text block {TEXT_BLOCK!r}")


def sidecar_path(blend_path: str) -> str:
    return blend_path + SIDECAR_SUFFIX


def write_sidecar(path: str, doc: dict) -> None:
    """Atomic: temp file -> write -> flush -> fsync -> rename -> fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    data = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_sidecar(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise RegistryFileError(f"sidecar {path}: unreadable ({e})") from None
    return validate_document(doc, f"sidecar {path}")


def compare(blend_doc: dict | None, sidecar_doc: dict | None, live: dict[str, dict]) -> dict:
    """Differences between the .blend registry, the sidecar and the datablocks found."""
    problems: list[str] = []
    b = (blend_doc or {}).get("entries", {})
    s = (sidecar_doc or {}).get("entries", {})
    if blend_doc is None:
        problems.append("the .blend has no registry text block")
    if sidecar_doc is None:
        problems.append("no sidecar registry next to the .blend")
    if blend_doc is not None and sidecar_doc is not None:
        for u in sorted(set(b) - set(s)):
            problems.append(f"{u} ({b[u].get('editor_ref')}) is in the .blend but not the sidecar")
        for u in sorted(set(s) - set(b)):
            problems.append(f"{u} ({s[u].get('editor_ref')}) is in the sidecar but not the .blend")
        for u in sorted(set(b) & set(s)):
            if b[u] != s[u]:
                problems.append(f"{u}: .blend says {b[u]}, sidecar says {s[u]}")
    reference = b if blend_doc is not None else s
    if blend_doc is not None or sidecar_doc is not None:
        for u in sorted(set(reference) - set(live)):
            problems.append(f"{u} ({reference[u].get('editor_ref')}) is registered but no "
                            "datablock carries it")
        for u in sorted(set(live) - set(reference)):
            problems.append(f"{u} ({live[u].get('editor_ref')}) is not in the saved registry")
    return {"agree": not problems, "problems": problems,
            "blend_entries": len(b), "sidecar_entries": len(s)}
