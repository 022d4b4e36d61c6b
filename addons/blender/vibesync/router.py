"""Agent tool calls inside Blender (docs/PROTOCOL.md §9): the addon registry this session
reports to the daemon, argument validation, and running a handler as one undo step.

A call (`addon_command` from the daemon) runs on the main thread from the pump:

1. refuse at once, without running anything, when Blender is busy (edit mode, a modal
   operator: `EDITOR_BUSY`, the daemon retries), the tool is unknown, or an argument is
   invalid (type, range, enum option, unknown or missing field, a named object / material /
   collection that does not exist, a `file_path` outside the project's folder);
2. capture and send whatever a person changed before (so it is not mixed with the call);
3. push an undo step, copy the objects it names whole (kept should it delete one, so that
   a rollback of that delete brings back its modifiers and constraints), run the handler
   with the validated arguments;
4. on success: push one undo step named after the tool, capture the changes it made and
   send them as `change`s carrying `automation` (operation id, tool, agent session), then
   answer `command_response` with the uuids they name;
5. if the handler raised, returned `status: error`, or ran past its time budget: undo back
   to the state before the call (nothing is sent) and answer `HANDLER_FAILED` /
   `HANDLER_TIMEOUT`.
"""

from __future__ import annotations

import logging
import math
import os
import time

import bpy

from . import manifests, wire

log = logging.getLogger("vibesync")

REGISTRY_POLL_S = 0.25
MAX_UNDO_STEPS = 16


class CommandStatus:
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class CallErrorCode:
    """`result.error_code` values of the router (Rust `vibesync_protocol::addon::CallErrorCode`)."""

    UNKNOWN_TOOL = "UNKNOWN_TOOL"
    INVALID_TYPE = "INVALID_TYPE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    INVALID_OPTION = "INVALID_OPTION"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    MISSING_FIELD = "MISSING_FIELD"
    NOT_FOUND = "NOT_FOUND"
    PATH_OUTSIDE_PROJECT = "PATH_OUTSIDE_PROJECT"
    HANDLER_FAILED = "HANDLER_FAILED"
    HANDLER_TIMEOUT = "HANDLER_TIMEOUT"
    EDITOR_BUSY = "EDITOR_BUSY"


class ArgError(Exception):
    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def project_roots() -> list:
    """Folders a `file_path` argument may point into: the .blend's folder (none while the
    file is unsaved)."""
    path = bpy.data.filepath
    return [os.path.realpath(os.path.dirname(os.path.abspath(path)))] if path else []


def validate_args(tool: dict, params, exists=None, roots=None) -> dict:
    """Check `params` against the tool's manifest; return them with defaults filled in.

    `exists(kind, name) -> bool` checks object / material / collection names; `roots` are the
    folders file paths must stay in. Raises ArgError(code, JSON pointer, message)."""
    if not isinstance(params, dict):
        raise ArgError(CallErrorCode.INVALID_TYPE, "", "params must be an object")
    decl = {p["name"]: p for p in tool.get("parameters", [])}
    for k in params:
        if k not in decl:
            raise ArgError(CallErrorCode.UNKNOWN_FIELD, f"/{k}",
                           f"`{tool['name']}` has no parameter `{k}`; it takes {', '.join(decl) or 'none'}")
    out = {}
    for name, p in decl.items():
        ptr = f"/{name}"
        if name not in params:
            if p.get("required"):
                raise ArgError(CallErrorCode.MISSING_FIELD, ptr, f"`{name}` is required")
            if "default" in p:
                out[name] = p["default"]
            continue
        v = params[name]
        t = p["type"]
        if t in ("string", "object_name", "material_name", "collection_name", "file_path", "enum"):
            if not isinstance(v, str):
                raise ArgError(CallErrorCode.INVALID_TYPE, ptr, f"`{name}` must be a string ({t})")
        elif t == "integer":
            if not (isinstance(v, int) and not isinstance(v, bool)):
                raise ArgError(CallErrorCode.INVALID_TYPE, ptr, f"`{name}` must be an integer")
        elif t == "float":
            if not _num(v):
                raise ArgError(CallErrorCode.INVALID_TYPE, ptr, f"`{name}` must be a finite number")
        elif t == "boolean":
            if not isinstance(v, bool):
                raise ArgError(CallErrorCode.INVALID_TYPE, ptr, f"`{name}` must be true or false")
        elif t in ("vector3", "color"):
            sizes = (3,) if t == "vector3" else (3, 4)
            if not isinstance(v, list) or not all(_num(x) for x in v):
                raise ArgError(CallErrorCode.INVALID_TYPE, ptr, f"`{name}` must be a list of numbers")
            if len(v) not in sizes:
                raise ArgError(CallErrorCode.OUT_OF_RANGE, ptr,
                               f"`{name}` must have {' or '.join(map(str, sizes))} numbers, got {len(v)}")
        values = v if isinstance(v, list) else [v]
        for i, x in enumerate(values):
            where = f"{ptr}/{i}" if isinstance(v, list) else ptr
            if _num(x) and "min" in p and x < p["min"]:
                raise ArgError(CallErrorCode.OUT_OF_RANGE, where, f"`{name}` {x} is below the minimum {p['min']}")
            if _num(x) and "max" in p and x > p["max"]:
                raise ArgError(CallErrorCode.OUT_OF_RANGE, where, f"`{name}` {x} is above the maximum {p['max']}")
        if t == "enum" and v not in p.get("options", []):
            raise ArgError(CallErrorCode.INVALID_OPTION, ptr,
                           f"`{name}` `{v}` is not one of {', '.join(p.get('options', []))}")
        if t in ("object_name", "material_name", "collection_name") and exists is not None:
            kind = t.split("_")[0]
            if not exists(kind, v):
                raise ArgError(CallErrorCode.NOT_FOUND, ptr, f"no {kind} named `{v}` in this Blender file")
        if t == "file_path":
            roots = project_roots() if roots is None else roots
            if not roots:
                raise ArgError(CallErrorCode.PATH_OUTSIDE_PROJECT, ptr,
                               "file paths need a saved .blend: they must stay inside its folder; save the file first")
            base = roots[0]
            full = os.path.realpath(v if os.path.isabs(v) else os.path.join(base, v))
            if not any(full == r or full.startswith(r + os.sep) for r in roots):
                raise ArgError(CallErrorCode.PATH_OUTSIDE_PROJECT, ptr,
                               f"`{v}` resolves to {full}, outside the project folder {base}")
            v = full
        out[name] = v
    return out


def name_exists(kind: str, name: str) -> bool:
    coll = {"object": bpy.data.objects, "material": bpy.data.materials,
            "collection": bpy.data.collections}[kind]
    return coll.get(name) is not None


def busy_reason() -> str | None:
    """Why Blender cannot run a tool now (a person in edit mode or a modal operator)."""
    try:
        mode = bpy.context.mode
    except AttributeError:
        mode = "OBJECT"
    if mode != "OBJECT":
        return f"Blender is in {mode.lower().replace('_', ' ')} mode"
    wm = bpy.context.window_manager
    for win in getattr(wm, "windows", []) or []:
        if getattr(win, "modal_operators", None):
            return "a modal operator is running"
    return None


def fingerprint() -> tuple:
    """The datablocks that exist (names per collection): a rollback must restore these."""
    return tuple(tuple(sorted(c.keys())) for c in
                 (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.collections,
                  bpy.data.lights, bpy.data.cameras))


def _undo_to(before: tuple) -> bool:
    """Undo until the datablocks are those of `before` (one step in the bpy module, where
    operators called from Python push no steps of their own)."""
    bpy.ops.ed.undo_push(message="VibeSync AI: failed call")
    for _ in range(MAX_UNDO_STEPS):
        bpy.ops.ed.undo()
        if fingerprint() == before:
            return True
    return fingerprint() == before


class AddonRouter:
    """Per-session state: the last scan, queued calls, and the registry sent."""

    def __init__(self) -> None:
        self.scan: manifests.Scan | None = None
        self.sent_fingerprint = None
        self.sent_ids: set = set()
        self.last_poll = 0.0
        self.last_modules: tuple | None = None
        self.commands: list = []
        self.results: list = []  # recent results, for status() and tests

    # ------------------------------------------------------------- registry
    def rescan(self) -> manifests.Scan:
        self.scan = manifests.scan()
        return self.scan

    def on_connected(self, session) -> None:
        self.sent_fingerprint = None
        self.sent_ids = set()
        self.poll(session, force=True)

    def poll(self, session, force: bool = False) -> None:
        """Re-scan when the enabled add-ons (or the user's consent) changed; tell the daemon."""
        now = time.monotonic()
        if not force and now - self.last_poll < REGISTRY_POLL_S:
            return
        self.last_poll = now
        modules = tuple(manifests.enabled_modules())
        consent = tuple(sorted(manifests._consent_overrides.items()))
        if not force and (modules, consent) == self.last_modules and self.scan is not None:
            return
        self.last_modules = (modules, consent)
        scan = self.rescan()
        fp = scan.fingerprint()
        if fp == self.sent_fingerprint or not session.connected:
            return
        ids = set(scan.available)
        for aid in sorted(self.sent_ids - ids):
            session._send({"type": wire.MessageType.ADDON_UNREGISTERED, "addon_id": aid})
        for aid in sorted(ids - self.sent_ids):
            session._send({"type": wire.MessageType.ADDON_REGISTERED, "addon_id": aid,
                           "manifest": scan.available[aid]})
        session._send({"type": wire.MessageType.REGISTRY_UPDATED,
                       "available_addons": [scan.available[a] for a in sorted(ids)],
                       "rejected": scan.rejected, "withheld": scan.withheld})
        for r in scan.rejected:
            log.warning("vibesync: addon manifest refused: %s %s: %s", r.get("file"), r.get("path"),
                        r.get("reason"))
        self.sent_ids = ids
        self.sent_fingerprint = fp

    # ------------------------------------------------------------- calls
    def queue(self, msg: dict) -> None:
        self.commands.append(msg)

    def run_pending(self, session) -> int:
        n = 0
        while self.commands:
            msg = self.commands.pop(0)
            resp = self.run(session, msg)
            session._send(resp)
            self.results.append(resp)
            del self.results[:-50]
            n += 1
        return n

    def _answer(self, msg: dict, status: str, message: str, code: str | None = None,
                field: str | None = None, data=None, uuids=None, started=None) -> dict:
        result = {"status": status, "message": message}
        if data is not None:
            result["data"] = data
        if code is not None:
            result["error_code"] = code
        if field is not None:
            result["field"] = field
        return {"type": wire.MessageType.COMMAND_RESPONSE, "request_id": msg.get("request_id"),
                "addon_id": msg.get("addon_id"), "command": msg.get("command"),
                "result": result, "uuids": uuids or [],
                "duration_ms": int((time.perf_counter() - started) * 1000) if started else 0}

    def run(self, session, msg: dict) -> dict:
        started = time.perf_counter()
        addon_id, command = msg.get("addon_id"), msg.get("command")
        reason = busy_reason()
        if reason is not None:
            return self._answer(msg, CommandStatus.ERROR, f"{reason}; the call waits until it ends",
                                CallErrorCode.EDITOR_BUSY)
        if self.scan is None:
            self.rescan()
        entry = self.scan.available.get(addon_id) if self.scan else None
        tool = next((t for t in (entry or {}).get("tools", []) if t["name"] == command), None)
        handler = self.scan.handlers.get(addon_id, {}).get(command) if self.scan else None
        if tool is None or handler is None:
            return self._answer(msg, CommandStatus.ERROR,
                                f"`{addon_id}.{command}` is not available in this Blender (add-on disabled or not allowed for agents)",
                                CallErrorCode.UNKNOWN_TOOL)
        try:
            args = validate_args(tool, msg.get("params") or {}, exists=name_exists)
        except ArgError as e:
            return self._answer(msg, CommandStatus.ERROR, str(e), e.code, e.field)
        automation = {"operation_id": msg.get("operation_id") or msg.get("request_id"),
                      "tool": f"{addon_id}.{command}", "agent_session": msg.get("agent_session")}
        budget_s = max(float(msg.get("timeout_ms") or 10000), 1.0) / 1000.0
        if bpy.context.preferences.edit.undo_steps < 2:
            return self._answer(msg, CommandStatus.ERROR,
                                "Blender's undo is off (Preferences > System > Undo Steps): a failed "
                                "tool could not be undone, so none runs", CallErrorCode.HANDLER_FAILED)
        # A person's pending edits go first, as their own changes.
        session.capture_now(None)
        before = fingerprint()
        try:
            bpy.ops.ed.undo_push(message="VibeSync AI: before " + automation["tool"])
        except RuntimeError as e:
            return self._answer(msg, CommandStatus.ERROR,
                                f"cannot open an undo step here ({e}); nothing ran",
                                CallErrorCode.EDITOR_BUSY)
        # The objects it names, copied whole should it delete one (`copy_before_call`).
        session.copy_before_call([args[p["name"]] for p in tool.get("parameters", [])
                                  if p["type"] == "object_name" and isinstance(args.get(p["name"]), str)])
        existed = {ob.session_uid for ob in bpy.data.objects}
        t0 = time.perf_counter()
        failure = None
        out = None
        try:
            out = handler(**args)
        except Exception as e:  # noqa: BLE001 - any handler failure is undone
            log.exception("vibesync: tool %s raised", automation["tool"])
            failure = (CallErrorCode.HANDLER_FAILED, f"the handler raised {type(e).__name__}: {e}")
        elapsed = time.perf_counter() - t0
        if failure is None:
            if not isinstance(out, dict) or out.get("status") not in (
                    CommandStatus.SUCCESS, CommandStatus.WARNING, CommandStatus.ERROR):
                failure = (CallErrorCode.HANDLER_FAILED,
                           f"the handler returned {type(out).__name__}, not a dict with status success|warning|error")
            elif out["status"] == CommandStatus.ERROR:
                failure = (str(out.get("error_code") or CallErrorCode.HANDLER_FAILED),
                           str(out.get("message") or "the handler reported an error"))
            elif elapsed > budget_s:
                failure = (CallErrorCode.HANDLER_TIMEOUT,
                           f"the handler ran {elapsed * 1000:.0f} ms, over its budget of {budget_s * 1000:.0f} ms")
        if failure is None:
            bpy.ops.ed.undo_push(message="VibeSync AI: " + automation["tool"])
            # The synced objects it deleted without naming them, copied whole as they were.
            if not session.keep_deleted_by_call(existed):
                failure = (CallErrorCode.HANDLER_FAILED,
                           "Blender's redo did not give back the call's result after keeping what it deleted")
        if failure is not None:
            session.drop_copies()
            restored = _undo_to(before)
            session.after_rollback()
            msg_text = failure[1] + ("; its changes were undone" if restored else
                                     "; WARNING: Blender's undo could not restore every datablock")
            code = failure[0] if failure[0] != CallErrorCode.EDITOR_BUSY else CallErrorCode.HANDLER_FAILED
            if code in (CallErrorCode.UNKNOWN_TOOL, CallErrorCode.INVALID_TYPE, CallErrorCode.OUT_OF_RANGE,
                        CallErrorCode.INVALID_OPTION, CallErrorCode.UNKNOWN_FIELD, CallErrorCode.MISSING_FIELD,
                        CallErrorCode.NOT_FOUND, CallErrorCode.PATH_OUTSIDE_PROJECT):
                code = CallErrorCode.HANDLER_FAILED  # a handler cannot claim a refusal: it ran
            log.warning("vibesync: tool %s failed (%s): rolled back", automation["tool"], code)
            return self._answer(msg, CommandStatus.ERROR, msg_text, code, started=started)
        uuids = session.capture_now(automation)
        session.drop_copies()
        return self._answer(msg, out["status"], str(out.get("message") or ""), data=out.get("data"),
                            uuids=uuids, started=started)
