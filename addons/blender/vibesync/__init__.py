"""VibeSync for Blender: a thin client of the VibeSync daemon.

Layout
------
* `wire`      -- the protocol: frames, message/error names, canonical JSON, hashes, axes (no bpy)
* `transport` -- the socket thread; only moves bytes, talks through queues (no bpy)
* `identity`  -- uuids on datablocks, bindings by session_uid, registry persistence
* `capture`   -- reading synced state, diffing against what was sent
* `apply`     -- applying fenced batches from the daemon as one undo step
* `pump`      -- the main-thread tick that ties it together
* `ui`        -- sidebar panel and preferences

Headless API (timers never fire in `blender -b` scripts or the `bpy` module; drive the
pump yourself): `connect(host, port, token, project_id)`, `tick(budget_ms)`, `status()`,
`disconnect()`.
"""

from __future__ import annotations

import atexit
import logging
import uuid as _uuidlib

import bpy
from bpy.app.handlers import persistent

from . import budget, wire
from .pump import Session
from .transport import default_token_path

log = logging.getLogger("vibesync")

TICK_BUDGET_MS = budget.TICK_BUDGET_MS  # the per-tick budget lives in budget.py

_state = {"session": None, "registered": False, "classes": False, "atexit": False,
          "autoconnect_done": False, "carry": None}
_CLIENT_ID = str(_uuidlib.uuid4())


def _session():
    return _state["session"]


# ------------------------------------------------------------------------ headless API
def connect(host: str = wire.DEFAULT_HOST, port: int = wire.DEFAULT_PORT,
            token: str | None = None, project_id: str | None = None,
            token_path: str | None = None) -> dict:
    """Connect (or reconnect) to the daemon. Replaces any previous connection.

    `token=None` reads `token_path` or `<data_dir>/token`; `project_id=None` derives it from
    the .blend's folder. Installs the handlers if `register()` was not called. Returns
    `status()`; the connection itself completes in the background (call `tick()`).
    """
    if project_id is not None and not wire.is_valid_project_id(project_id):
        raise ValueError(f"project_id {project_id!r} is invalid: use 1-128 chars of "
                         "[A-Za-z0-9._-], not starting with '.'")
    _install_handlers()
    old = _state["session"]
    if old is not None:
        old.stop()
        _state["carry"] = old.carry()
    s = Session(host, port, token, token_path, project_id, _CLIENT_ID)
    carry, _state["carry"] = _state["carry"], None
    if carry is not None:
        s.inherit(carry)
    _state["session"] = s
    s.start()
    return s.status()


def tick(budget_ms: float = TICK_BUDGET_MS) -> int:
    """One pump step on the calling (main) thread. Returns the work items processed."""
    s = _state["session"]
    if s is None:
        return 0
    return s.tick(budget_ms)


def status() -> dict:
    """State of the bridge as a plain dict (`state` is connected / reconnecting / safe mode
    / paused / disconnected)."""
    s = _state["session"]
    if s is None:
        return {"state": "disconnected", "connected": False, "tracked": {},
                "tracked_total": 0, "last_seq": 0, "daemon_seq": 0, "project_id": None,
                "errors": [], "bad_frames": 0}
    return s.status()


def disconnect() -> None:
    """Close the connection and stop the socket thread (bindings are kept in the file)."""
    s = _state["session"]
    _state["session"] = None
    if s is not None:
        s.stop()
        _state["carry"] = s.carry()  # for a Reconnect in this file (Session.inherit)


def connect_from_preferences() -> dict:
    from .ui import preferences
    prefs = preferences()
    host = prefs.host if prefs else wire.DEFAULT_HOST
    port = prefs.port if prefs else wire.DEFAULT_PORT
    token_path = (bpy.path.abspath(prefs.token_file) if prefs and prefs.token_file
                  else default_token_path())
    project_id = prefs.project_id.strip() if prefs and prefs.project_id.strip() else None
    if project_id is not None and not wire.is_valid_project_id(project_id):
        log.error("vibesync: project id %r in the preferences is invalid; using the one "
                  "derived from the .blend's folder", project_id)
        project_id = None
    return connect(host, port, None, project_id, token_path=token_path)


# ---------------------------------------------------------------------------- handlers
@persistent
def _on_depsgraph(scene, depsgraph=None):
    s = _state["session"]
    if s is not None and depsgraph is not None:
        s.on_depsgraph(depsgraph)


@persistent
def _on_frame_change(scene, depsgraph=None):
    s = _state["session"]
    if s is not None:
        s.on_frame_change()


@persistent
def _on_undo(*_args):
    s = _state["session"]
    if s is not None:
        s.on_undo_redo("undo")


@persistent
def _on_redo(*_args):
    s = _state["session"]
    if s is not None:
        s.on_undo_redo("redo")


@persistent
def _on_load(*_args):
    _state["carry"] = None  # another file: nothing of the last one's sync carries over
    s = _state["session"]
    if s is not None:
        s.on_load()


@persistent
def _on_save_pre(*_args):
    s = _state["session"]
    if s is not None:
        try:
            s.on_save_pre()
        except Exception:  # saving the user's file matters more than our registry
            log.exception("vibesync: could not write the registry into the .blend")


@persistent
def _on_save_post(*_args):
    s = _state["session"]
    if s is not None:
        try:
            s.on_save_post()
        except Exception:
            log.exception("vibesync: could not write the sidecar registry")


_HANDLERS = (
    ("depsgraph_update_post", _on_depsgraph),
    ("frame_change_post", _on_frame_change),
    ("undo_post", _on_undo),
    ("redo_post", _on_redo),
    ("load_post", _on_load),
    ("save_pre", _on_save_pre),
    ("save_post", _on_save_post),
)


def _same(a, b) -> bool:
    # A reloaded module has new function objects: compare by qualified name as well.
    return a is b or (getattr(a, "__module__", None) == getattr(b, "__module__", None)
                      and getattr(a, "__name__", None) == getattr(b, "__name__", None))


def _install_handlers() -> None:
    for name, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, name)
        for h in list(lst):
            if _same(h, fn):
                lst.remove(h)
        lst.append(fn)
    if not _state["atexit"]:
        # A handler left installed at interpreter exit hangs the bpy module: clean up.
        atexit.register(_atexit)
        _state["atexit"] = True


def _remove_handlers() -> None:
    for name, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, name)
        for h in list(lst):
            if _same(h, fn):
                lst.remove(h)


def _atexit() -> None:
    try:
        unregister()
    except Exception:
        pass


def _timer():
    try:
        if not _state["autoconnect_done"]:
            _state["autoconnect_done"] = True
            if _state["session"] is None:
                connect_from_preferences()
        s = _state["session"]
        if s is None:
            return budget.IDLE_TIMER_INTERVAL_S
        work = s.tick(TICK_BUDGET_MS)
        if s.apply_job is not None or s.backlog() >= budget.BUSY_BACKLOG_ITEMS:
            return budget.BUSY_TIMER_INTERVAL_S  # a first sync or a batch's end: come back soon
        return budget.TIMER_INTERVAL_S if work or s.dirty or s.batches \
            else budget.IDLE_TIMER_INTERVAL_S
    except Exception:  # a timer that raises is removed by Blender: log and keep going
        log.exception("vibesync: pump tick failed")
        return 1.0


# ----------------------------------------------------------------- register/unregister
def register() -> None:
    """Install classes, handlers and the pump timer. Safe to call twice."""
    from . import ui
    if not _state["classes"]:
        for cls in ui.CLASSES:
            try:
                bpy.utils.register_class(cls)
            except ValueError:  # already registered by an earlier, interrupted enable
                bpy.utils.unregister_class(cls)
                bpy.utils.register_class(cls)
        _state["classes"] = True
    _install_handlers()
    if not bpy.app.timers.is_registered(_timer):
        # The first call auto-connects (preferences / defaults); headless scripts where
        # timers never fire call connect() and tick() themselves.
        bpy.app.timers.register(_timer, first_interval=0.1, persistent=True)
    _state["registered"] = True


def unregister() -> None:
    """Remove everything register() or connect() installed. Safe to call twice."""
    from . import ui
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    _remove_handlers()
    disconnect()
    _state["carry"] = None  # without handlers a load would go unseen: nothing carries over
    if _state["classes"]:
        for cls in reversed(ui.CLASSES):
            try:
                bpy.utils.unregister_class(cls)
            except RuntimeError:
                pass
        _state["classes"] = False
    _state["registered"] = False
    _state["autoconnect_done"] = False
