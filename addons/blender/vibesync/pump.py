"""The main-thread pump: everything that touches bpy happens in `Session.tick()`.

Handlers (depsgraph, undo, redo, load, save) only set flags or add session_uids to sets; the
pump, driven by a `bpy.app.timers` timer in the UI or by `vibesync.tick()` headless, does
the work under a per-tick time budget and caps:

1. drain transport events (acks, errors, batches) -- at most MAX_EVENTS_PER_TICK;
2. rescan after load/undo/redo or when an unknown datablock appeared (uuid enforcement);
3. apply deferred/complete incoming batches when nothing blocks them;
4. diff dirty datablocks against the last sent state -- at most MAX_DIRTY_PER_TICK;
5. throttled deletion sweep -> tombstones;
6. send register / tombstone / change requests.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import os
import time

import bpy

from . import apply as apply_mod
from . import capture, identity, wire
from . import router as router_mod
from .blake3 import blake3_hex

# Meshes above this many vertices are encoded and hashed off Blender's main thread.
BIG_MESH_VERTICES = 20000
_POOL: list = []


def _mesh_pool() -> concurrent.futures.ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vibesync-mesh"))
    return _POOL[0]


def _encode_and_hash(arrays: dict, unit_scale: float) -> tuple[bytes, str]:
    blob = capture.encode_mesh_arrays(arrays, unit_scale)
    return blob, blake3_hex(blob)
from .identity import Registry
from .transport import Transport

log = logging.getLogger("vibesync")

MAX_EVENTS_PER_TICK = 256
MAX_DIRTY_PER_TICK = 512
MAX_REGISTER_ITEMS = 10_000
SWEEP_INTERVAL_S = 1.0
SWEEP_SOON_S = 0.1
USER_IDLE_S = 3.0
USER_ACTIVITY_RESEND_S = 1.0

STATE_CONNECTED = "connected"
STATE_RECONNECTING = "reconnecting"
STATE_SAFE_MODE = "safe mode"
STATE_PAUSED = "paused"
STATE_DISCONNECTED = "disconnected"


def editor_version() -> str:
    return bpy.app.version_string


def current_unit_scale() -> float:
    scene = bpy.context.scene
    try:
        s = float(scene.unit_settings.scale_length) if scene is not None else 1.0
    except AttributeError:
        s = 1.0
    return s if s > 0 else 1.0


def derived_project_id() -> str:
    """Default project id: the .blend's folder name (or `default` for an unsaved file)."""
    path = bpy.data.filepath
    if not path:
        return "default"
    return wire.project_id_from_folder(os.path.basename(os.path.dirname(os.path.abspath(path))))


class Session:
    """One connection to the daemon plus everything the pump remembers between ticks."""

    def __init__(self, host: str, port: int, token: str | None, token_path: str | None,
                 project_id: str | None, client_id: str) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.token_path = token_path
        self.explicit_project_id = project_id
        self.project_id = project_id or derived_project_id()
        self.client_id = client_id
        self.registry = Registry()
        self.transport = None  # Transport while connected or reconnecting
        self.generation: int | None = None
        self.session_id: str | None = None
        self.connected = False
        self.ever_connected = False
        self.safe_mode = False
        self.safe_mode_reason = ""
        self.paused = False
        self.last_seq = 0      # last daemon seq this client applied (hello.last_seq)
        self.daemon_seq = 0    # highest daemon seq seen (welcome/ack/pong)
        self.unit_scale = 1.0
        # Capture.
        self.dirty: set[tuple[str, int]] = set()
        self.geometry_dirty: set[tuple[str, int]] = set()
        self.waiting_edit: set[tuple[str, int]] = set()
        self.master_dirty = False
        self.unknown_keys: set[tuple[str, int]] = set()
        self.scan_reason: str | None = "initial"
        self.file_loaded = False
        self.sweep_due_at = 0.0
        self.last_sweep = 0.0
        self.last_sent: dict[str, dict] = {}
        # uuids of changes sent with no `batch_result` yet: local work a replay must not undo
        # (PROTOCOL.md §6.6).
        self.unresolved: set[str] = set()
        self.applied_hash: dict[str, str] = {}
        self.mesh_hashes: dict[str, str] = {}
        self.mesh_blobs: dict[str, bytes] = {}
        self.mesh_alias: dict[str, tuple[str, str]] = {}  # mesh uuid -> (own hash, applied hash)
        self.remote_deleted: set[str] = set()
        self.quiet: set[str] = set()
        # Outgoing.
        self.to_register: set[str] = set()
        self.registered: dict[str, str] = {}      # uuid -> editor_ref the daemon has
        self.to_tombstone: set[str] = set()
        self.duplicate_of: dict[str, str] = {}    # newcomer uuid -> original uuid
        # Ordered outgoing change ops; an op with a mesh carries its attachment.
        self.out_ops: list[tuple[dict, bytes]] = []
        # Big meshes are encoded and hashed on a worker thread (§ issue: a 100k-vertex mesh
        # must not stall Blender): mesh uuid -> (Future of (blob, hash), waiting object keys).
        self.mesh_jobs: dict[str, tuple[concurrent.futures.Future, set]] = {}
        # Own encodings of big applied meshes, hashed on the worker: mesh uuid -> (Future,
        # the sender's hash). Until done, captures of that mesh wait (no echo).
        self.alias_jobs: dict[str, tuple[concurrent.futures.Future, str]] = {}
        self.changes_supported = True
        self.pending: dict[str, tuple[str, object]] = {}
        self._ids = itertools.count(1)
        # Incoming.
        self.collector = apply_mod.BatchCollector()
        self.batches = collections.deque()
        self.blocked_reason: str | None = None
        # User activity.
        self.user_active = False
        self.last_user_edit = 0.0
        self.last_activity_sent = 0.0
        self.applying = False
        # Diagnostics.
        self.bad_frames = 0
        self.errors = collections.deque(maxlen=20)
        self.collisions = collections.deque(maxlen=1000)
        self.tombstoned = collections.deque(maxlen=1000)
        self.reconnects = 0
        self.last_rebind: dict = {}
        self.registry_check: dict = {}
        self.last_daemon_status: dict | None = None
        self.last_handshake_error: dict | None = None
        self.applied_batches = 0
        self.pending_save_doc: dict | None = None
        # Agent tool calls (docs/PROTOCOL.md §9): the addon registry and the call runner.
        self.ai = router_mod.AddonRouter()
        self.automation: dict | None = None  # set while capturing a tool call's changes

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.unit_scale = current_unit_scale()
        self.transport = Transport(self.host, self.port, self._hello(), token=self.token,
                                   token_path=self.token_path)
        self.transport.start()
        log.info("vibesync: connecting to %s:%s as project %r", self.host, self.port,
                 self.project_id)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.stop()
            self.transport = None
        self.connected = False

    def _hello(self) -> dict:
        return {"protocol": wire.PROTOCOL_VERSION, "project_id": self.project_id,
                "editor": "blender", "editor_version": editor_version(),
                "client_id": self.client_id, "unit_scale": self.unit_scale,
                "last_seq": self.last_seq}

    # ------------------------------------------------------------ handler entry points
    def on_depsgraph(self, depsgraph) -> None:
        """Tiny: record which datablocks changed. No bpy reads beyond the update list."""
        structure = False
        for u in depsgraph.updates:
            idb = u.id
            try:
                idb = idb.original
                id_type = idb.id_type
            except (AttributeError, ReferenceError):
                continue
            kind = identity.ID_TYPE_TO_KIND.get(id_type)
            if kind is None:
                if id_type == "SCENE":
                    structure = True
                continue
            if kind == "collection" and idb.is_embedded_data:
                # A scene's master collection: objects may have moved in or out of it.
                self.master_dirty = True
                structure = True
                continue
            key = (kind, idb.session_uid)
            self.dirty.add(key)
            if u.is_updated_geometry and kind in ("object", "mesh"):
                self.geometry_dirty.add(key)
            if kind == "collection":
                structure = True
            if key not in self.registry.by_key:
                self.unknown_keys.add(key)
        if structure:
            self.sweep_due_at = min(self.sweep_due_at or float("inf"),
                                    time.monotonic() + SWEEP_SOON_S)

    def on_undo_redo(self, which: str) -> None:
        self.scan_reason = which

    def on_load(self) -> None:
        self.file_loaded = True
        self.scan_reason = "load"

    def on_save_pre(self) -> None:
        """Persist the registry into the .blend (text block) just before it is written."""
        # A save must persist a complete registry: one full scan (also finds orphan data
        # that never showed up in a depsgraph update); cheap next to writing the file.
        self.scan_reason = self.scan_reason or "save"
        self._scan()
        doc = self.registry.snapshot(self.project_id)
        identity.write_text_block(doc)
        self.pending_save_doc = doc

    def on_save_post(self) -> None:
        doc = self.pending_save_doc or self.registry.snapshot(self.project_id)
        self.pending_save_doc = None
        path = bpy.data.filepath
        if not path:
            return
        side = identity.sidecar_path(path)
        try:
            identity.write_sidecar(side, doc)
            log.info("registry saved: %d entries in %s and the .blend", len(doc["entries"]), side)
        except OSError as e:
            self._error("SIDECAR_WRITE_FAILED", f"cannot write the sidecar registry {side}: "
                        f"{e}; the .blend still holds the registry")

    # ----------------------------------------------------------------------- pump
    def tick(self, budget_ms: float = 8.0) -> int:
        """One pump step. Returns the number of work items processed."""
        deadline = time.perf_counter() + budget_ms / 1000.0
        work = self._drain_events(deadline)
        if self.file_loaded:
            self._after_load()
        if self.scan_reason is not None:
            self._scan()
            work += 1
        elif self.unknown_keys:
            keys, self.unknown_keys = self.unknown_keys, set()
            self._handle_report(self.registry.adopt(keys), "new datablock")
            work += 1
        work += self._apply_batches(deadline)
        self.ai.poll(self)
        work += self.ai.run_pending(self)
        work += self._process_dirty(deadline)
        now = time.monotonic()
        if (self.sweep_due_at and now >= self.sweep_due_at) or \
                now - self.last_sweep >= SWEEP_INTERVAL_S:
            self._sweep()
        self._user_activity_idle(now)
        work += self._flush()
        return work

    # -------------------------------------------------------------- transport events
    def _drain_events(self, deadline: float) -> int:
        if self.transport is None:
            return 0
        n = 0
        inbox = self.transport.inbox
        while n < MAX_EVENTS_PER_TICK and not inbox.empty():
            if n and time.perf_counter() > deadline:
                break
            kind, payload = inbox.get_nowait()
            n += 1
            try:
                self._handle_event(kind, payload)
            except Exception as e:  # a bad message must never break Blender
                log.exception("vibesync: dropped %s event after an error: %s", kind, e)
                self._error("INTERNAL", f"handling {kind}: {e}")
        return n

    def _handle_event(self, kind: str, payload: dict) -> None:
        if kind == "connected":
            welcome = payload["welcome"]
            self.generation = payload["generation"]
            self.connected = True
            if self.ever_connected:
                self.reconnects += 1
            self.ever_connected = True
            self.session_id = welcome.get("session_id")
            self._seen_seq(welcome.get("seq"))
            self.safe_mode = bool(welcome.get("safe_mode"))
            self.changes_supported = True
            self.pending.clear()
            self.last_handshake_error = None
            # The daemon may have restarted: tell it everything we hold (idempotent).
            self.registered.clear()
            self.to_register = set(self.registry.alive_uuids())
            # Changes in flight when the last connection died may never have been committed:
            # re-send every object's full state as `create` (the daemon drops repeats whose
            # hash it already holds). Not a user edit.
            for u in self.to_register:
                bnd = self.registry.bindings[u]
                if bnd.kind == "object" and u not in self.applied_hash:
                    self.last_sent.pop(u, None)
                    self.quiet.add(u)
                    self.dirty.add((bnd.kind, bnd.session_uid))
            self.out_ops.clear()
            self.ai.on_connected(self)
            log.info("vibesync: connected (session %s, daemon seq %s); registering %d "
                     "datablocks", self.session_id, welcome.get("seq"), len(self.to_register))
        elif kind == "disconnected":
            if self.connected:
                log.warning("vibesync: lost the daemon (%s); reconnecting with backoff",
                            payload.get("reason"))
            self.connected = False
            self.generation = None
            self.pending.clear()
            self.collector.current = None
        elif kind == "handshake_error":
            self.last_handshake_error = payload
            self._error(str(payload.get("code")), str(payload.get("message")))
        elif kind == "connect_failed":
            pass
        elif kind == "bad_frame":
            self.bad_frames += 1
            self._error(str(payload.get("code")), f"bad frame from the daemon: "
                        f"{payload.get('detail')}")
        elif kind == "message":
            self._handle_message(payload["message"], payload.get("attachment", b""))

    def _seen_seq(self, seq) -> None:
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > self.daemon_seq:
            self.daemon_seq = seq

    def _error(self, code: str, message: str, request_id: str | None = None) -> None:
        self.errors.append({"code": code, "message": message, "request_id": request_id,
                            "at": time.time()})
        log.error("vibesync: %s: %s%s", code, message,
                  f" (request {request_id})" if request_id else "")

    def _handle_message(self, msg: dict, attachment: bytes) -> None:
        t = msg["type"]
        rid = msg.get("request_id")
        if t == wire.MessageType.ACK:
            self._seen_seq(msg.get("seq"))
            entry = self.pending.pop(rid, None) if isinstance(rid, str) else None
            results = msg.get("results")
            if entry is None or not isinstance(results, list):
                log.warning("vibesync: ack for unknown request %r ignored", rid)
                return
            what, ctx = entry
            if what == "register":
                self._on_register_ack(ctx, results, msg.get("seq"))
            elif what == "tombstone":
                self._on_tombstone_ack(ctx, results)
            elif what == "change":
                for r in results:
                    if isinstance(r, dict) and r.get("status") == wire.Status.ERROR:
                        self._change_rejected(r, rid)
        elif t == wire.MessageType.ERROR:
            code = str(msg.get("code"))
            entry = self.pending.pop(rid, None) if isinstance(rid, str) else None
            if entry is not None and entry[0] == "change":
                self.unresolved.difference_update(entry[1] or [])
            if entry is not None and entry[0] == "change" and code == wire.ErrorCode.UNKNOWN_TYPE:
                if self.changes_supported:
                    log.warning("vibesync: the daemon does not accept `change` yet; change "
                                "capture continues locally, sending is off for this "
                                "connection")
                self.changes_supported = False
                return
            if entry is not None and entry[0] == "register":
                self.to_register.update(entry[1]["uuids"])
            if entry is not None and entry[0] == "tombstone":
                self.to_tombstone.update(entry[1])
            if code == wire.ErrorCode.SAFE_MODE:
                self.safe_mode = True
            self._error(code, str(msg.get("message")), rid)
        elif t == wire.MessageType.PONG:
            self._seen_seq(msg.get("seq"))
            self.pending.pop(rid, None)
        elif t == wire.MessageType.STATUS:
            self.pending.pop(rid, None)
            self.last_daemon_status = msg
        elif t == wire.MessageType.BATCH_RESULT:
            # Our own changes ended (committed / rolled_back / dropped): advance last_seq.
            for u in msg.get("uuids") or []:
                if isinstance(u, str):
                    self.unresolved.discard(u)
            seq = msg.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool) and seq > self.last_seq:
                self.last_seq = seq
                if self.transport is not None:
                    self.transport.update_hello(last_seq=seq)
            self._seen_seq(seq)
            if msg.get("outcome") == "rolled_back":
                log.warning("vibesync: batch %s rolled back (%s) for %s; the daemon re-sends "
                            "the authoritative state", msg.get("batch_id"),
                            msg.get("error_code"), msg.get("uuids"))
        elif t == wire.MessageType.ADDON_COMMAND:
            self.ai.queue(msg)
        elif t == wire.MessageType.SAFE_MODE:
            self.safe_mode = bool(msg.get("active"))
            self.safe_mode_reason = str(msg.get("reason", ""))
            log.warning("vibesync: daemon safe mode %s: %s",
                        "on" if self.safe_mode else "off", self.safe_mode_reason)
        elif t in (wire.MessageType.BATCH_BEGIN, wire.MessageType.APPLY,
                   wire.MessageType.BATCH_END):
            try:
                batch = self.collector.feed(msg, attachment)
            except apply_mod.BatchError as e:
                self._error(wire.ErrorCode.BAD_MESSAGE, str(e))
                return
            if batch is not None:
                self.batches.append(batch)
        else:
            log.debug("vibesync: ignoring message of type %r", t)

    def _on_register_ack(self, ctx: dict, results: list, seq) -> None:
        items = ctx["items"]
        for i, r in enumerate(results):
            if not isinstance(r, dict) or i >= len(items):
                continue
            item = items[i]
            uuid = item["uuid"]
            status = r.get("status")
            if status in (wire.Status.REGISTERED, wire.Status.UPDATED, wire.Status.UNCHANGED):
                self.registered[uuid] = item["editor_ref"]
                self.duplicate_of.pop(uuid, None)
            elif status == wire.Status.COLLISION:
                self._daemon_collision(uuid, str(r.get("message")))
            else:
                self._error(str(r.get("error_code")), f"register {uuid} "
                            f"({item['editor_ref']}): {r.get('message')}", ctx.get("rid"))

    def _change_rejected(self, r: dict, rid: str) -> None:
        uuid, code = r.get("uuid"), str(r.get("error_code"))
        self._error(code, f"change {uuid}: {r.get('message')}", rid)
        # Refused: nothing of it is pending any more (a STALE refusal is followed by the
        # current state, which must now be applied, not guarded against).
        self.unresolved.discard(uuid)
        b = self.registry.bindings.get(uuid) if isinstance(uuid, str) else None
        if b is not None and b.alive and code == wire.ErrorCode.NOT_FOUND:
            # The daemon has no state for it (e.g. its data was reset): send a create.
            self.last_sent.pop(uuid, None)
            self.dirty.add((b.kind, b.session_uid))
            self.geometry_dirty.add((b.kind, b.session_uid))

    def _daemon_collision(self, uuid: str, message: str) -> None:
        """The daemon knows `uuid` as another datablock: our holder is the newcomer."""
        idb = self.registry.resolve(uuid)
        if idb is None:
            return
        fresh = identity.new_uuid()
        b = self.registry.bindings.pop(uuid)
        idb[identity.PROP] = fresh
        b.uuid = fresh
        self.registry.bindings[fresh] = b
        self.registry.by_key[(b.kind, b.session_uid)] = fresh
        event = {"original": uuid, "newcomer": fresh, "kind": b.kind, "name": b.name,
                 "source": "daemon", "message": message, "at": time.time()}
        self.collisions.append(event)
        self.duplicate_of[fresh] = uuid
        self.to_register.add(fresh)
        self.last_sent.pop(uuid, None)
        self.dirty.add((b.kind, b.session_uid))
        log.warning("vibesync: daemon reported a collision for %s (%s): %s; gave our %s %r "
                    "the fresh uuid %s", uuid, b.kind, message, b.kind, b.name, fresh)

    def _on_tombstone_ack(self, uuids: list, results: list) -> None:
        for i, r in enumerate(results):
            if not isinstance(r, dict) or i >= len(uuids):
                continue
            status = r.get("status")
            if status == wire.Status.TOMBSTONED:
                self.tombstoned.append(uuids[i])
                self.registered.pop(uuids[i], None)
            elif r.get("error_code") == wire.ErrorCode.NOT_FOUND:
                self.registered.pop(uuids[i], None)  # never registered or already gone
            else:
                self._error(str(r.get("error_code")), f"tombstone {uuids[i]}: "
                            f"{r.get('message')}")

    # ---------------------------------------------------------------- identity scans
    def _after_load(self) -> None:
        self.file_loaded = False
        self.registry.clear()
        self.mesh_hashes.clear()
        self.mesh_blobs.clear()
        self.mesh_alias.clear()
        self.dirty.clear()
        self.geometry_dirty.clear()
        self.waiting_edit.clear()
        self.batches.clear()
        self.collector.current = None
        self._scan()
        try:
            self._check_persisted_registry()
        except Exception as e:  # never let a bad registry file break a load
            log.exception("vibesync: registry check failed")
            self.registry_check = {"agree": False, "problems": [str(e)]}
        new_project = self.explicit_project_id or derived_project_id()
        self.project_id = new_project
        self.unit_scale = current_unit_scale()
        if self.transport is not None:
            self.transport.update_hello(project_id=new_project, unit_scale=self.unit_scale,
                                        last_seq=self.last_seq)
            self.transport.reconnect()
            self.connected = False
            self.generation = None
            log.info("vibesync: file loaded; reconnecting as project %r", new_project)

    def _check_persisted_registry(self) -> None:
        problems = []
        blend_doc = side_doc = None
        try:
            blend_doc = identity.read_text_block()
        except identity.RegistryFileError as e:
            problems.append(str(e))
        path = bpy.data.filepath
        if path:
            try:
                side_doc = identity.read_sidecar(identity.sidecar_path(path))
            except identity.RegistryFileError as e:
                problems.append(str(e))
        live = {u: b.as_dict() for u, b in self.registry.bindings.items() if b.alive}
        if blend_doc is None and side_doc is None and not problems:
            self.registry_check = {"agree": True, "problems": [], "note": "no saved registry"}
            return
        check = identity.compare(blend_doc, side_doc, live)
        check["problems"] = problems + check["problems"]
        check["agree"] = not check["problems"]
        self.registry_check = check
        if check["problems"]:
            log.warning("vibesync: saved registry differs (%d problems): %s",
                        len(check["problems"]), "; ".join(check["problems"][:5]))
        else:
            log.info("vibesync: .blend registry and sidecar agree (%d entries)",
                     check["blend_entries"])

    def _scan(self) -> None:
        reason = self.scan_reason or "scan"
        self.scan_reason = None
        self.unknown_keys.clear()
        self._handle_report(self.registry.scan(), reason)

    def _handle_report(self, report, reason: str) -> None:
        for c in report.collisions:
            self.collisions.append(dict(c, source="local"))
            self.duplicate_of[c["newcomer"]] = c["original"]
        changed = report.new + report.revived + report.renamed
        self.to_register.update(changed)
        for u in report.vanished:
            self._vanished(u)
        if reason in ("undo", "redo", "load"):
            # Report the rebound set: registering is idempotent (`unchanged`).
            self.to_register.update(report.rebound)
            for u in report.rebound + report.revived:
                b = self.registry.bindings[u]
                self.dirty.add((b.kind, b.session_uid))
                if b.kind in ("mesh", "object"):
                    self.geometry_dirty.add((b.kind, b.session_uid))
            self.last_rebind = {"reason": reason, "rebound": len(report.rebound),
                                "revived": len(report.revived),
                                "vanished": len(report.vanished), "new": len(report.new),
                                "restored_props": len(report.restored_props),
                                "at": time.time()}
            log.info("vibesync: %s: rebound %d, revived %d, vanished %d, new %d uuids",
                     reason, len(report.rebound), len(report.revived), len(report.vanished),
                     len(report.new))
        if reason in ("initial", "load"):
            self.quiet.update(report.new)
        for u in report.new + report.revived:
            b = self.registry.bindings[u]
            self.dirty.add((b.kind, b.session_uid))
            if b.kind in ("mesh", "object"):
                self.geometry_dirty.add((b.kind, b.session_uid))

    def _vanished(self, uuid: str) -> None:
        if uuid in self.remote_deleted:
            self.remote_deleted.discard(uuid)
            return
        self.to_register.discard(uuid)
        self.to_tombstone.add(uuid)
        self.last_sent.pop(uuid, None)
        self.applied_hash.pop(uuid, None)
        self._mark_user_edit()
        # Blender keeps the children of a deleted object: let the pump re-read them so their
        # `reparent` to null (and new local transform) goes out (§6.1).
        for child, st in self.last_sent.items():
            if st.get("parent") == uuid:
                b = self.registry.bindings.get(child)
                if b is not None and b.alive:
                    self.dirty.add((b.kind, b.session_uid))
        log.info("vibesync: %s deleted -> tombstone", uuid)

    def _sweep(self) -> None:
        self.last_sweep = time.monotonic()
        self.sweep_due_at = 0.0
        gone, renamed, unknown = self.registry.sweep()
        for u in gone:
            self._vanished(u)
        self.dirty.update(renamed)
        self.unknown_keys.update(unknown)

    # --------------------------------------------------------------------- incoming
    def _apply_batches(self, deadline: float) -> int:
        if not self.batches or self.paused:
            return 0
        n = 0
        while self.batches and (n == 0 or time.perf_counter() < deadline):
            batch = self.batches[0]
            reason = apply_mod.blocked_reason(batch, self.registry)
            if reason is not None:
                if self.blocked_reason != reason:
                    log.info("vibesync: batch %s deferred: %s", batch.batch_id, reason)
                self.blocked_reason = reason
                # Tell the daemon at once that we hold it (§6.4): it commits without us
                # instead of timing out and rolling the other editor's change back.
                for b in self.batches:
                    if not b.held:
                        b.held = True
                        self._send({"type": wire.MessageType.APPLIED, "batch_id": b.batch_id,
                                    "seq": b.seq, "hashes": {}, "held": True})
                return n
            self.blocked_reason = None
            if batch.held:
                # What we held may be outdated: drop held batches, ask for the current state.
                held = [b for b in self.batches if b.held]
                self.batches = collections.deque(b for b in self.batches if not b.held)
                self.request("resync", {"type": wire.MessageType.RESYNC,
                                        "since_seq": self.last_seq})
                log.info("vibesync: %d held batch(es) dropped; asked for a resync since seq %d",
                         len(held), self.last_seq)
                n += 1
                continue
            self.batches.popleft()
            self.apply_now(batch)
            n += 1
        return n

    def _has_local_work(self, uuid: str) -> bool:
        """Changed here and not yet resolved by the daemon (unsent, or no batch_result)."""
        if uuid in self.unresolved:
            return True
        b = self.registry.bindings.get(uuid)
        return b is not None and ((b.kind, b.session_uid) in self.dirty
                                  or (b.kind, b.session_uid) in self.geometry_dirty)

    def apply_now(self, batch) -> dict:
        """Apply one batch, remember the applied state (echo suppression), answer."""
        kept: list[str] = []
        if batch.path == "resync":
            # A replay never undoes local work: keep those uuids, send them instead (§6.6).
            kept = [u for u in dict.fromkeys(batch.uuids()) if self._has_local_work(u)]
            if kept:
                batch.changes = [(c, a) for c, a in batch.changes if c.get("uuid") not in kept]
                for u in kept:
                    b = self.registry.bindings.get(u)
                    if b is not None:
                        self.dirty.add((b.kind, b.session_uid))
                        self.last_sent.pop(u, None)
                log.info("vibesync: resync %s: kept local changes of %d uuid(s) over the replay",
                         batch.batch_id, len(kept))
        self.applying = True
        try:
            result = apply_mod.apply_batch(batch, self.registry, self.unit_scale)
        finally:
            self.applying = False
        self.remote_deleted.update(result["deleted"])
        for sid, (incoming_hash, blob) in result["meshes"].items():
            mu = self.registry.by_key.get(("mesh", sid))
            me = self.registry.resolve(mu) if mu else None
            if me is None:
                continue
            # Our own encoding of the applied geometry differs from the sender's (normals,
            # flags); remember both so the applied mesh keeps the sender's hash: no echo.
            self.mesh_hashes[mu] = incoming_hash
            self.mesh_blobs[mu] = blob
            if len(me.vertices) > BIG_MESH_VERTICES:
                # On the (FIFO) worker: a capture of this mesh queued later waits for it.
                arrays = capture.read_mesh_arrays(me)
                fut = _mesh_pool().submit(_encode_and_hash, arrays, self.unit_scale)
                self.alias_jobs[mu] = (fut, incoming_hash)
            else:
                own = blake3_hex(capture.mesh_attachment(me, self.unit_scale))
                self.mesh_alias[mu] = (own, incoming_hash)
        hashes = {}
        for uuid in dict.fromkeys(result["touched"] + kept):
            if uuid in result["deleted"]:
                continue
            idb = self.registry.resolve(uuid)
            if idb is None:
                continue
            b = self.registry.bindings[uuid]
            state = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            h = wire.state_hash(capture.state_in_meters(state, self.unit_scale))
            hashes[uuid] = h
            if uuid in kept:
                continue  # ours, still to be sent: not an applied state
            self.last_sent[uuid] = state
            self.applied_hash[uuid] = h
            if uuid not in self.registered:
                self.to_register.add(uuid)
        self.last_seq = max(self.last_seq, batch.seq)
        self.applied_batches += 1
        if self.transport is not None:
            self.transport.update_hello(last_seq=self.last_seq)
        self._send({"type": wire.MessageType.APPLIED, "batch_id": batch.batch_id,
                    "seq": batch.seq, "hashes": hashes})
        log.info("vibesync: applied batch %s (seq %s): %d changes, %d failed",
                 batch.batch_id, batch.seq, len(result["touched"]), len(result["failed"]))
        result["hashes"] = hashes
        return result

    # ---------------------------------------------------------------------- capture
    def _process_dirty(self, deadline: float) -> int:
        if self.mesh_jobs or self.alias_jobs:
            self._collect_mesh_jobs()
        if self.master_dirty:
            self.master_dirty = False
            scene = bpy.context.scene
            if scene is not None:
                for ob in scene.collection.objects:
                    self.dirty.add(("object", ob.session_uid))
            # Collection visibility/membership edits are reported on the master collection.
            for c in bpy.data.collections:
                self.dirty.add(("collection", c.session_uid))
        if self.waiting_edit:
            for key in list(self.waiting_edit):
                self.dirty.add(key)
            self.waiting_edit.clear()
        if not self.dirty:
            return 0
        n = 0
        self._hashed_this_tick: set[int] = set()
        # Meshes and materials first so objects see their new state in the same tick.
        keys = sorted(self.dirty, key=lambda k: k[0] == "object")
        for key in keys:
            if n >= MAX_DIRTY_PER_TICK or (n and time.perf_counter() > deadline):
                break
            self.dirty.discard(key)
            n += 1
            uuid = self.registry.by_key.get(key)
            if uuid is None:
                continue  # unknown_keys / the next scan binds it
            idb = self.registry.resolve(uuid)
            if idb is None:
                self.sweep_due_at = time.monotonic()
                continue
            kind = key[0]
            try:
                self._capture_one(uuid, idb, kind, key)
            except (ReferenceError, RuntimeError, ValueError) as e:
                log.warning("vibesync: cannot read %s %s: %s", kind, uuid, e)
        return n

    def _mesh_ready(self, mu: str, me, kind: str, blob: bytes, h: str) -> None:
        """A mesh's encoding and hash are known: remember them, re-capture its users."""
        alias = self.mesh_alias.get(mu)
        if alias is not None:
            if alias[0] == h:
                h, blob = alias[1], self.mesh_blobs.get(mu, blob)
            else:
                del self.mesh_alias[mu]  # edited since: our encoding now
        if self.mesh_hashes.get(mu) != h:
            self.mesh_hashes[mu] = h
            self.mesh_blobs[mu] = blob
            if kind == "mesh":
                for ob in bpy.data.objects:
                    if ob.data is not None and ob.data.session_uid == me.session_uid:
                        self.dirty.add(("object", ob.session_uid))

    @staticmethod
    def _finished(jobs: dict):
        """Pop the finished jobs of `jobs` (mesh uuid -> (Future, extra)): yields
        (mesh uuid, extra, (blob, hash)); a failed job is logged and skipped."""
        for mu, (fut, extra) in list(jobs.items()):
            if not fut.done():
                continue
            del jobs[mu]
            try:
                yield mu, extra, fut.result()
            except Exception as e:  # noqa: BLE001 - a worker failure must not break Blender
                log.error("vibesync: encoding or hashing mesh %s failed: %s", mu, e)

    def _collect_mesh_jobs(self) -> None:
        """Finished background encodings: record them and capture the waiting objects."""
        for mu, incoming, (_, own) in self._finished(self.alias_jobs):
            self.mesh_alias[mu] = (own, incoming)
        for mu, keys, (blob, h) in self._finished(self.mesh_jobs):
            me = self.registry.resolve(mu)
            if me is None:
                continue
            self._mesh_ready(mu, me, "mesh", blob, h)
            self.dirty.update(keys)

    def _capture_one(self, uuid: str, idb, kind: str, key) -> None:
        b = self.registry.bindings[uuid]
        if b.name != idb.name:
            b.name = idb.name
        if self.registered.get(uuid) != identity.editor_ref(kind, idb.name):
            self.to_register.add(uuid)
        if kind == "object" and capture.in_edit_mode(idb):
            self.waiting_edit.add(key)  # nothing is read while the user is in edit mode
            return
        if key in self.geometry_dirty:
            me = idb.data if kind == "object" else idb
            if isinstance(me, bpy.types.Mesh):
                if me.is_editmode:
                    self.waiting_edit.add(key)
                    return
                self.geometry_dirty.discard(key)
                mu = self.registry.uuid_for(me)
                if mu is not None and mu in self.alias_jobs:
                    self.geometry_dirty.add(key)  # applied just now: wait for its own hash
                    return
                if mu is not None and mu in self.mesh_jobs:
                    # Still encoding the previous read: read again once it is done.
                    self.geometry_dirty.add(key)
                    self.mesh_jobs[mu][1].add(key)
                    return
                if mu is not None and len(me.vertices) > BIG_MESH_VERTICES:
                    arrays = capture.read_mesh_arrays(me)  # main thread, foreach_get only
                    fut = _mesh_pool().submit(_encode_and_hash, arrays, self.unit_scale)
                    self.mesh_jobs[mu] = (fut, {key})
                    return  # this object is captured when its mesh is ready
                if mu is not None and me.session_uid not in self._hashed_this_tick:
                    self._hashed_this_tick.add(me.session_uid)
                    blob = capture.mesh_attachment(me, self.unit_scale)
                    h = blake3_hex(blob)
                    self._mesh_ready(mu, me, kind, blob, h)
            else:
                self.geometry_dirty.discard(key)
        if kind == "collection":
            # Membership changed? Its objects and child collections name it as parent.
            for ob in idb.objects:
                self.dirty.add(("object", ob.session_uid))
            for c in idb.children:
                self.dirty.add(("collection", c.session_uid))
        if kind == "material":
            # The material travels in the state of every object that shows it.
            for ob in bpy.data.objects:
                mat = capture.first_material(ob)
                if mat is not None and mat.session_uid == idb.session_uid:
                    self.dirty.add(("object", ob.session_uid))
        state = capture.read_state(idb, kind, self.registry, self.mesh_hashes)
        prev = self.last_sent.get(uuid)
        ops = capture.diff_ops(uuid, prev, state)
        if not ops:
            return
        h = wire.state_hash(capture.state_in_meters(state, self.unit_scale))
        self.last_sent[uuid] = state
        if self.applied_hash.get(uuid) == h:
            return  # what we applied ourselves: no echo
        self.applied_hash.pop(uuid, None)
        if uuid in self.quiet:
            self.quiet.discard(uuid)  # found by the initial/load scan: not a user edit
        else:
            self._mark_user_edit()
        for op in ops:
            blob = b""
            if capture.needs_attachment(op):
                mu = self.registry.uuid_for(idb.data)
                blob = self.mesh_blobs.get(mu, b"") if mu else b""
                if not blob or self.mesh_hashes.get(mu) != op["mesh_hash"]:
                    log.warning("vibesync: mesh of %s not available; sending without it", uuid)
                    op.pop("mesh_hash", None)
                    if op["op"] == "mesh":
                        continue
                    blob = b""
            self.out_ops.append((op, blob))

    # ----------------------------------------------------------------- user activity
    def _mark_user_edit(self) -> None:
        if self.applying or self.automation is not None:
            return
        now = time.monotonic()
        self.last_user_edit = now
        if not self.user_active or now - self.last_activity_sent >= USER_ACTIVITY_RESEND_S:
            self.user_active = True
            self.last_activity_sent = now
            self._send({"type": wire.MessageType.USER_ACTIVITY, "active": True})

    def _user_activity_idle(self, now: float) -> None:
        if self.user_active and now - self.last_user_edit >= USER_IDLE_S:
            self.user_active = False
            self._send({"type": wire.MessageType.USER_ACTIVITY, "active": False})

    # ---------------------------------------------------------------------- sending
    def _rid(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def _send(self, msg: dict, attachment: bytes = b"") -> bool:
        if not self.connected or self.transport is None or self.generation is None:
            return False
        self.transport.send(self.generation, msg, attachment)
        return True

    def request(self, what: str, msg: dict, ctx=None, attachment: bytes = b"") -> str | None:
        rid = self._rid(what[0])
        msg["request_id"] = rid
        if self._send(msg, attachment):
            self.pending[rid] = (what, ctx)
            return rid
        return None

    def _flush(self) -> int:
        if not self.connected or self.paused or self.safe_mode:
            return 0
        n = 0
        if self.to_register:
            alive = [u for u in self.to_register if u in self.registry.bindings
                     and self.registry.bindings[u].alive]
            self.to_register.clear()
            for start in range(0, len(alive), MAX_REGISTER_ITEMS):
                chunk = alive[start:start + MAX_REGISTER_ITEMS]
                items = []
                for u in chunk:
                    b = self.registry.bindings[u]
                    item = {"uuid": u, "kind": b.kind, "name": b.name,
                            "editor_ref": identity.editor_ref(b.kind, b.name)}
                    if u in self.duplicate_of:
                        # Not in PROTOCOL.md yet: optional, readers ignore unknown fields.
                        item["duplicate_of"] = self.duplicate_of[u]
                    items.append(item)
                self.request("register", {"type": wire.MessageType.REGISTER, "items": items},
                             {"items": items, "uuids": chunk})
                n += 1
        if self.to_tombstone:
            uuids = sorted(self.to_tombstone)
            self.to_tombstone.clear()
            self.request("tombstone", {"type": wire.MessageType.TOMBSTONE, "uuids": uuids},
                         uuids)
            n += 1
        if not self.changes_supported:
            self.out_ops.clear()
        elif self.out_ops:
            ops, self.out_ops = self.out_ops, []
            n += self._send_ops(ops)
        return n

    def _send_ops(self, ops: list, automation: dict | None = None) -> int:
        """Send ops in order; a frame carries at most one attachment (one mesh)."""
        n = 0
        plain: list[dict] = []
        for op, blob in ops:
            if blob:
                if plain:
                    self._send_change(plain, automation=automation)
                    plain = []
                    n += 1
                self._send_change([op], blob, automation)
                n += 1
            else:
                plain.append(op)
        if plain:
            self._send_change(plain, automation=automation)
            n += 1
        return n

    def _send_change(self, ops: list[dict], attachment: bytes = b"",
                     automation: dict | None = None) -> None:
        uuids = [op["uuid"] for op in ops if isinstance(op.get("uuid"), str)]
        self.unresolved.update(uuids)
        msg = {"type": wire.MessageType.CHANGE, "base_seq": self.last_seq, "changes": ops}
        if automation is not None:
            msg["automation"] = automation  # an agent's tool call made these (§9.2)
        self.request("change", msg, uuids, attachment=attachment)

    # ------------------------------------------------------------- agent tool calls
    def capture_now(self, automation: dict | None) -> list:
        """Capture everything changed so far and send it at once (§9.2). With `automation`,
        the changes are a tool call's: sent carrying it, never counted as a person's edit.
        Returns the uuids of the changes sent."""
        bpy.context.view_layer.update()
        if self.scan_reason is not None:
            self._scan()
        if self.unknown_keys:
            keys, self.unknown_keys = self.unknown_keys, set()
            self._handle_report(self.registry.adopt(keys), "new datablock")
        start = len(self.out_ops)
        self.automation = automation
        try:
            for _ in range(8):  # collections/materials mark their objects: a few passes
                if not self.dirty:
                    break
                self._process_dirty(float("inf"))
        finally:
            self.automation = None
        if automation is None:
            self._flush()
            return []
        ops = self.out_ops[start:]
        del self.out_ops[start:]
        self._flush()  # registers first (new uuids), then the call's changes
        if self.connected and self.changes_supported and not self.paused and not self.safe_mode:
            self._send_ops(ops, automation)
        else:
            self.out_ops.extend(ops)
        return list(dict.fromkeys(op["uuid"] for op, _ in ops if isinstance(op.get("uuid"), str)))

    def after_rollback(self) -> None:
        """A failed tool call was undone: rebind every datablock now (undo replaced them)."""
        self.unknown_keys.clear()
        self.scan_reason = "undo"
        self._scan()

    # -------------------------------------------------------------------- status
    def state_name(self) -> str:
        if self.paused:
            return STATE_PAUSED
        if self.connected and self.safe_mode:
            return STATE_SAFE_MODE
        if self.connected:
            return STATE_CONNECTED
        return STATE_RECONNECTING if self.transport is not None else STATE_DISCONNECTED

    def status(self) -> dict:
        counts = self.registry.counts()
        return {
            "state": self.state_name(),
            "connected": self.connected,
            "safe_mode": self.safe_mode,
            "paused": self.paused,
            "host": self.host,
            "port": self.port,
            "project_id": self.project_id,
            "session_id": self.session_id,
            "last_seq": self.last_seq,
            "daemon_seq": self.daemon_seq,
            "tracked": counts,
            "tracked_total": sum(counts.values()),
            "registered": len(self.registered),
            "pending_requests": len(self.pending),
            "to_register": len(self.to_register),
            "to_tombstone": len(self.to_tombstone),
            "tombstoned": list(self.tombstoned),
            "collisions": list(self.collisions),
            "bad_frames": self.bad_frames,
            "errors": list(self.errors),
            "reconnects": self.reconnects,
            "changes_supported": self.changes_supported,
            "deferred_batches": len(self.batches),
            "blocked_reason": self.blocked_reason,
            "applied_batches": self.applied_batches,
            "user_active": self.user_active,
            "last_rebind": dict(self.last_rebind),
            "registry_check": dict(self.registry_check),
            "handshake_error": self.last_handshake_error,
            "backoff_s": self.transport.backoff_s if self.transport else None,
            "ai": {
                "available": sorted(self.ai.scan.available) if self.ai.scan else [],
                "withheld": list(self.ai.scan.withheld) if self.ai.scan else [],
                "rejected": list(self.ai.scan.rejected) if self.ai.scan else [],
                "last_results": list(self.ai.results[-5:]),
            },
        }
