"""What an editor's VibeSync panel says, as lines, from a plain status (free of bpy).

The Blender sidebar (`ui.py`) and the Unity window (`StatusView.cs` in the Unity package's
core) draw the same lines from the same fields; `tests/vectors/status_view.json` pins them
for both (docs/ARCHITECTURE.md, "Editors say what is going on"). The input is the subset of
the addon's `status()` listed in `FIELDS`; each line is `(key, level, text)`:

* `key` names what the line is about (`state`, `daemon_not_running`, `handshake_error`,
  `paused`, `safe_mode`, `daemon`, `project`, `peer`, `alone`, `other_project`,
  `first_sync`, `seq`, `linked`, `untracked`, `held_batches`, `not_synced`, `collisions`,
  `conflict`, `last_error`; `linked` and `untracked` are Blender's alone: Unity has no
  data linked from library files);
* `level` how loud it is: `plain`, `ok`, `info`, `progress`, `warning`, `error`.
"""

from __future__ import annotations

from typing import NamedTuple

FIELDS = ("state", "next_try_s", "connected", "handshake_error", "pause_reason", "safe_mode",
          "safe_mode_reason", "host", "port", "project_id", "peers", "other_projects",
          "progress", "daemon_seq", "last_seq", "linked", "untracked", "deferred_batches",
          "blocked_reason", "not_synced", "collisions", "conflicts", "errors")

# The connection states both editors show (the first line).
CONNECTED = "connected"
RECONNECTING = "reconnecting"
SAFE_MODE = "safe mode"
PAUSED = "paused"
NO_DAEMON = "daemon not running"
DISCONNECTED = "disconnected"

PLAIN, OK, INFO, PROGRESS, WARNING, ERROR = "plain", "ok", "info", "progress", "warning", "error"

_STATE_LEVEL = {CONNECTED: OK, RECONNECTING: PROGRESS, SAFE_MODE: ERROR, PAUSED: WARNING,
                NO_DAEMON: ERROR}
_CLIENT_NAMES = {"unity": "Unity", "blender": "Blender"}
MAX_ERROR_CHARS = 200


class Line(NamedTuple):
    key: str
    level: str
    text: str


def client_name(kind) -> str:
    return _CLIENT_NAMES.get(kind, str(kind))


def lines(st: dict) -> list[Line]:
    """The panel's lines, in order, from a status with the keys of `FIELDS` (missing keys
    read as empty)."""
    state = st.get("state") or DISCONNECTED
    head = f"State: {state}"
    if state == RECONNECTING and st.get("next_try_s"):
        head += f" (next try in {st['next_try_s']} s)"
    out = [Line("state", _STATE_LEVEL.get(state, PLAIN), head)]
    if state == NO_DAEMON:
        out.append(Line("daemon_not_running", INFO, "Start it with `vibesync serve`"))
    he = st.get("handshake_error")
    if he and not st.get("connected"):
        out.append(Line("handshake_error", ERROR, f"{he.get('code')}: {he.get('message')}"))
    if st.get("pause_reason"):
        out.append(Line("paused", WARNING, f"Paused: {st['pause_reason']}"))
    if st.get("safe_mode"):
        out.append(Line("safe_mode", ERROR,
                        f"Safe mode: {st.get('safe_mode_reason') or 'sync is read-only'}; "
                        "`vibesync safe-mode clear`"))
    out.append(Line("daemon", PLAIN, f"Daemon: {st.get('host')}:{st.get('port')}"))
    out.append(Line("project", PLAIN,
                    f"Project: {st.get('project_id') or '(assigned by the daemon)'}"))
    if st.get("connected"):
        peers = st.get("peers") or []
        for p in peers:
            out.append(Line("peer", OK, f"{client_name(p.get('client'))}: connected"))
        if not peers:
            out.append(Line("alone", WARNING, "No other editor in this project"))
            for other in st.get("other_projects") or []:
                kinds = other.get("clients") or []
                clients = ", ".join(client_name(c) for c in kinds)
                verb = "is" if len(kinds) == 1 else "are"
                out.append(Line("other_project", ERROR,
                                f"{clients} {verb} in project {other.get('project_id')}: set "
                                "the same project id to sync"))
        prog = st.get("progress") or {}
        total, synced = prog.get("total") or 0, prog.get("synced") or 0
        if total and synced < total:
            out.append(Line("first_sync", PROGRESS,
                            f"First sync: {synced:,} / {total:,} objects"))
    out.append(Line("seq", PLAIN,
                    f"Last seq: {st.get('daemon_seq')} (applied {st.get('last_seq')})"))
    linked = st.get("linked") or 0
    if linked:
        out.append(Line("linked", INFO, f"Linked from library files: {linked:,} datablock(s), "
                        "read-only here (edit them through a library override)"))
    untracked = st.get("untracked") or []
    if untracked:
        out.append(Line("untracked", WARNING, f"{len(untracked)} datablock(s) not synced: "
                        f"{untracked[-1]}"))
    if st.get("blocked_reason"):
        out.append(Line("held_batches", PROGRESS, f"{st.get('deferred_batches') or 0} "
                        f"batch(es) held: {st['blocked_reason']}"))
    not_synced = st.get("not_synced") or []
    if not_synced:
        out.append(Line("not_synced", ERROR, f"{len(not_synced)} object(s) not synced (kept "
                        f"here): {not_synced[-1].get('reason')}"))
    collisions = st.get("collisions") or []
    if collisions:
        c = collisions[-1]
        out.append(Line("collisions", INFO, f"{len(collisions)} uuid collision(s); last: "
                        f"{c.get('kind')} \"{c.get('name')}\" got a fresh uuid"))
    conflicts = st.get("conflicts") or []
    if conflicts:
        c = conflicts[-1]
        out.append(Line("conflict", INFO, f"Conflict: {client_name(c.get('winner'))} won over "
                        f"{client_name(c.get('loser'))} ({c.get('op')})"))
    errors = st.get("errors") or []
    if errors:
        e = errors[-1]
        what = f"{e['code']}: {e.get('message', '')}" if e.get("code") else str(e.get("message"))
        out.append(Line("last_error", ERROR, f"Last error: {what}"[:MAX_ERROR_CHARS]))
    return out
