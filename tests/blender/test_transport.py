"""Transport: daemon kill -9 and restart, hostile frames, handshake failures, lifecycle."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import bpy
import pytest

import vibesync
from conftest import pump_for, pump_until, settle
from daemon import Client, Daemon, registry_records, synced_states
from vibesync import transport

PROP = "vibesync_uuid"


def make_cube(name):
    bpy.ops.mesh.primitive_cube_add()
    ob = bpy.context.active_object
    ob.name = name
    return ob


def tracked_uuids() -> set[str]:
    return set(vibesync._session().registry.alive_uuids())


def test_daemon_killed_and_restarted_reconnects_and_reregisters_without_duplicates(
        clean_blender, daemon_bin, tmp_path, project_id):
    d = Daemon(daemon_bin, str(tmp_path / "data")).start()
    try:
        vibesync.connect("127.0.0.1", d.port, d.token, project_id)
        pump_until(lambda: vibesync.status()["connected"], what="first connection")
        for name in ("A", "B", "C"):
            make_cube(name)
        settle()
        before = tracked_uuids()
        pump_until(lambda: all(registry_records(d).get(u, {}).get("state") == "live"
                               for u in before), what="registration")
        first_session = vibesync.status()["session_id"]

        port = d.port
        d.kill()  # kill -9: no goodbye
        pump_until(lambda: not vibesync.status()["connected"], what="the loss to be noticed")
        assert vibesync.status()["state"] == "reconnecting"
        # Work goes on while the daemon is down.
        make_cube("WhileDown")
        bpy.data.objects["A"].name = "A2"
        settle()
        pump_for(0.3)
        assert bpy.data.objects["WhileDown"].get(PROP)

        d.start(port=port)
        pump_until(lambda: vibesync.status()["connected"]
                   and vibesync.status()["session_id"] != first_session
                   and vibesync.status()["to_register"] == 0
                   and vibesync.status()["pending_requests"] == 0,
                   timeout=20, what="reconnect and re-register")
        st = vibesync.status()
        assert st["reconnects"] == 1
        after = tracked_uuids()
        assert before < after and len(after) == len(before) + 2  # + WhileDown object+mesh
        recs = registry_records(d)
        for u in after:
            assert recs[u]["state"] == "live"
        for u in before - {bpy.data.objects["A2"][PROP]}:
            assert recs[u]["registers"] == 1, "an unchanged datablock was written twice"
        assert recs[bpy.data.objects["A2"][PROP]]["last"]["editor_ref"] == "OB:A2"
        c = Client(d, project_id)
        try:
            daemon_status = c.status()
        finally:
            c.close()
        assert daemon_status["registry"]["live"] == len(after)
        # Changes the killed daemon never committed are answered NOT_FOUND; the addon then
        # re-sends a full `create`. In the end the daemon holds the state of every object.
        assert not [e for e in st["errors"] if e["code"] not in ("HANDSHAKE_FAILED", "NOT_FOUND")]
        objects = {ob[PROP]: ob.name for ob in bpy.data.objects}
        pump_until(lambda: set(objects) <= set(synced_states(d)), timeout=10,
                   what="synced state of every object after the restart")
        states = synced_states(d)
        assert {u: states[u]["state"]["name"] for u in objects} == objects
    finally:
        vibesync.disconnect()
        d.stop()


def test_backoff_doubles_to_thirty_seconds():
    t = transport.Transport("127.0.0.1", 9, {"protocol": 1}, token="x")
    delays = []
    t._stop.set()  # _sleep_backoff returns at once, only the schedule is exercised
    for _ in range(9):
        delays.append(t.backoff_s)
        t._sleep_backoff()
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    t.stop()


def frame(obj) -> bytes:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">II", 4 + len(body), len(body)) + body


class HostileDaemon:
    """Speaks just enough protocol to welcome the addon, then misbehaves."""

    def __init__(self, script) -> None:
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.hellos: list[dict] = []
        self.received: list[dict] = []
        self.script = script
        self.welcome_extra: dict = {}  # extra welcome fields (e.g. an assigned project_id)
        self.conns = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def read_frame(self, conn) -> dict:
        hdr = b""
        while len(hdr) < 8:
            chunk = conn.recv(8 - len(hdr))
            if not chunk:
                raise ConnectionError
            hdr += chunk
        total, jl = struct.unpack(">II", hdr)
        body = b""
        while len(body) < total - 4:
            chunk = conn.recv(total - 4 - len(body))
            if not chunk:
                raise ConnectionError
            body += chunk
        return json.loads(body[:jl])

    def run(self) -> None:
        n = 0
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                self.hellos.append(self.read_frame(conn))
                conn.sendall(frame(dict({"type": "welcome", "session_id": f"s{n}",
                                         "daemon_version": "hostile", "protocol": 1,
                                         "seq": 5, "safe_mode": False},
                                        **self.welcome_extra)))
                self.script(n, conn)
                conn.settimeout(0.2)
                while True:
                    try:
                        self.received.append(self.read_frame(conn))
                    except socket.timeout:
                        continue
            except (ConnectionError, OSError, ValueError):
                pass
            n += 1

    def close(self) -> None:
        self.srv.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_bad_frames_are_logged_and_blender_keeps_working(clean_blender, caplog):
    def script(n, conn):
        if n == 0:
            conn.sendall(frame(b"{not json"))                       # BAD_MESSAGE: dropped
            conn.sendall(frame(b"[1,2]"))                           # not an object
            conn.sendall(frame(b'{"type":7}'))                      # type not a string
            conn.sendall(frame(b"\xff\xfe"))                        # not UTF-8
            conn.sendall(frame({"type": "batch_end", "batch_id": "nope", "seq": 1}))
            conn.sendall(frame({"type": "batch_begin", "batch_id": "b", "seq": 6,
                                "path": "fast", "count": 1}))
            conn.sendall(frame({"type": "apply", "batch_id": "b",
                                "change": {"op": "transform", "uuid": "NOT-A-UUID"}}))
            conn.sendall(frame({"type": "ack", "request_id": "unknown", "results": "x"}))
            conn.sendall(frame({"type": "pong", "request_id": "p", "seq": 6}))  # still usable
            time.sleep(0.3)
            conn.sendall(b"\xff\xff\xff\xff")                       # FRAME_TOO_LARGE: reset
        # n == 1: behave.

    hostile = HostileDaemon(script)
    try:
        vibesync.connect("127.0.0.1", hostile.port, "0" * 64, "hostile")
        pump_until(lambda: vibesync.status()["reconnects"] >= 1
                   and vibesync.status()["connected"], timeout=15,
                   what="reset after FRAME_TOO_LARGE and reconnect")
        st = vibesync.status()
        assert st["bad_frames"] >= 5
        codes = [e["code"] for e in st["errors"]]
        assert codes.count("BAD_MESSAGE") >= 5  # 4 bad JSON parts + 2 bad batch frames
        assert "FRAME_TOO_LARGE" in codes
        assert st["daemon_seq"] == 6  # the pong after the garbage was still read
        assert st["deferred_batches"] == 0 and st["applied_batches"] == 0
        assert len(hostile.hellos) == 2
        assert all(h["type"] == "hello" and h["editor"] == "blender" and h["protocol"] == 1
                   for h in hostile.hellos)
        # Blender is fine and the addon still does its job.
        ob = make_cube("StillAlive")
        settle()
        assert ob.get(PROP)
        pump_until(lambda: any(m.get("type") == "register" for m in hostile.received),
                   what="register on the new connection")
    finally:
        vibesync.disconnect()
        hostile.close()


def test_wrong_token_is_reported_not_raised(clean_blender, daemon, project_id):
    vibesync.connect("127.0.0.1", daemon.port, "f" * 64, project_id)
    pump_until(lambda: (vibesync.status().get("handshake_error") or {}).get("code")
               == "AUTH_FAILED", what="AUTH_FAILED")
    st = vibesync.status()
    assert st["state"] == "reconnecting" and not st["connected"]
    # The sidebar says why, with the daemon's code, and when it tries again (the shared
    # status view, tests/vectors/status_view.json).
    pump_until(lambda: vibesync.status()["next_try_s"], what="a retry is scheduled")
    from vibesync import ui
    texts = [t for t, _ in ui.panel_lines(vibesync.status())]
    assert any(t.startswith("State: reconnecting (next try in ") for t in texts), texts
    assert any(t.startswith("AUTH_FAILED: ") for t in texts), texts
    # Refused attempts back off (0.5 s doubling): a handful in a second, not a busy loop.
    t0, n0 = time.monotonic(), vibesync._session().transport.connect_attempts
    pump_for(1.0)
    n = vibesync._session().transport.connect_attempts - n0
    assert n <= 3, f"{n} attempts in {time.monotonic() - t0:.1f} s"
    vibesync.disconnect()


def test_token_is_read_from_the_data_dir(clean_blender, daemon, project_id, monkeypatch):
    monkeypatch.setenv("VIBESYNC_DATA_DIR", daemon.data_dir)
    assert transport.default_token_path() == daemon.data_dir + "/token"
    vibesync.connect("127.0.0.1", daemon.port, None, project_id)
    pump_until(lambda: vibesync.status()["connected"], what="connect with the data dir token")
    vibesync.disconnect()


def test_hello_carries_unit_scale_and_blender_identity(clean_blender):
    hostile = HostileDaemon(lambda n, conn: None)
    try:
        bpy.context.scene.unit_settings.scale_length = 0.01
        vibesync.connect("127.0.0.1", hostile.port, "a" * 64, "units")
        pump_until(lambda: vibesync.status()["connected"], what="connection")
        h = hostile.hellos[0]
        assert h["unit_scale"] == pytest.approx(0.01)
        assert h["editor"] == "blender" and h["project_id"] == "units"
        assert h["token"] == "a" * 64 and h["last_seq"] == 0
        assert h["editor_version"] == bpy.app.version_string
    finally:
        vibesync.disconnect()
        hostile.close()


def test_register_twice_is_harmless_and_unregister_removes_everything():
    vibesync.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    handler_lists = ("depsgraph_update_post", "undo_post", "redo_post", "load_post",
                     "save_pre", "save_post")

    def ours(name):
        return [h for h in getattr(bpy.app.handlers, name)
                if getattr(h, "__module__", "").startswith("vibesync")]

    vibesync.register()
    vibesync.register()
    for name in handler_lists:
        assert len(ours(name)) == 1, name
    assert bpy.app.timers.is_registered(vibesync._timer)
    assert hasattr(bpy.types, "VIBESYNC_PT_panel")
    vibesync.connect("127.0.0.1", 9, "x" * 64, "twice")
    vibesync.connect("127.0.0.1", 9, "x" * 64, "twice")
    for name in handler_lists:
        assert len(ours(name)) == 1, name
    threads = [t for t in threading.enumerate() if t.name == "vibesync-transport"]
    assert len(threads) == 1
    vibesync.unregister()
    vibesync.unregister()
    for name in handler_lists:
        assert ours(name) == [], name
    assert not bpy.app.timers.is_registered(vibesync._timer)
    assert not hasattr(bpy.types, "VIBESYNC_PT_panel")
    assert vibesync.status()["state"] == "disconnected"
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "vibesync-transport"]


def test_safe_mode_holds_mutations_until_it_ends(clean_blender):
    conns = []

    def script(n, conn):
        conns.append(conn)

    hostile = HostileDaemon(script)
    try:
        vibesync.connect("127.0.0.1", hostile.port, "a" * 64, "safe")
        pump_until(lambda: vibesync.status()["connected"] and conns, what="connection")
        conns[-1].sendall(frame({"type": "safe_mode", "active": True, "reason": "WAL corrupt"}))
        pump_until(lambda: vibesync.status()["state"] == "safe mode", what="safe mode")
        hostile.received.clear()
        make_cube("Held")
        settle()
        pump_for(0.3)
        assert not [m for m in hostile.received if m.get("type") in ("register", "change")]
        assert vibesync.status()["to_register"] > 0
        conns[-1].sendall(frame({"type": "safe_mode", "active": False, "reason": ""}))
        pump_until(lambda: any(m.get("type") == "register" for m in hostile.received),
                   what="registration after safe mode ends")
        assert vibesync.status()["state"] == "connected"
    finally:
        vibesync.disconnect()
        hostile.close()


def test_a_change_refused_as_safe_mode_begins_stays_marked_and_goes_once_it_ends(clean_blender):
    """The daemon enters safe mode while a person's change is on its way: it refuses it
    `SAFE_MODE`. The edit stays here, shown not synced with the daemon's message, and goes
    again in full once safe mode ends (PROTOCOL.md §6.7). It was ended and never re-sent:
    the other editor missed the edit for good."""
    conns = []
    hostile = HostileDaemon(lambda n, conn: conns.append(conn))
    try:
        vibesync.connect("127.0.0.1", hostile.port, "a" * 64, "safe-race")
        pump_until(lambda: vibesync.status()["connected"] and conns, what="connection")
        ob = make_cube("Raced")
        settle()
        reg = pump_until(lambda: next((m for m in hostile.received if m.get("type") == "register"
                                       and any(i["uuid"] == ob.get(PROP) for i in m["items"])),
                                      None), what="the cube's registration")
        conns[-1].sendall(frame({"type": "ack", "request_id": reg["request_id"], "seq": 6,
                                 "results": [{"uuid": i["uuid"], "status": "registered"}
                                             for i in reg["items"]]}))
        u = ob[PROP]

        def change_naming_u(after):
            return next((m for m in hostile.received[after:] if m.get("type") == "change"
                         and any(c.get("uuid") == u for c in m["changes"])), None)

        first = pump_until(lambda: change_naming_u(0), what="the cube's change")
        why = "the daemon is in safe mode: sync is read-only"
        conns[-1].sendall(frame({"type": "error", "code": "SAFE_MODE", "message": why,
                                 "request_id": first["request_id"]}))
        pump_until(lambda: vibesync.status()["safe_mode"], what="safe mode")
        assert vibesync.status()["not_synced"] == [{"uuid": u, "reason": f"SAFE_MODE: {why}"}]
        seen = len(hostile.received)
        ob.location = (3, 0, 0)  # the person goes on editing meanwhile
        settle()
        pump_for(0.5)
        assert change_naming_u(seen) is None, "nothing is sent in safe mode"
        assert tuple(ob.location) == pytest.approx((3, 0, 0)), "the edit stays here"
        # ... and the daemon is told what waits here, for `vibesync status` (§6.7), once.
        told = [m for m in hostile.received if m.get("type") == "editor_state"]
        assert len(told) == 1, told
        assert (told[0]["state"], told[0]["held"], told[0]["held_count"]) == ("running", [u], 1)
        conns[-1].sendall(frame({"type": "safe_mode", "active": False, "reason": "cleared"}))
        again = pump_until(lambda: change_naming_u(seen), what="the kept change sent again")
        ops = {c["op"]: c for c in again["changes"] if c.get("uuid") == u}
        assert "create" in ops, f"sent in full: {again}"
        assert ops["create"]["t"] == pytest.approx([3, 0, 0], abs=1e-6), "with the later edit"
    finally:
        vibesync.disconnect()
        hostile.close()


def test_timer_auto_connects_with_defaults_and_the_data_dir_token(clean_blender, daemon,
                                                                  monkeypatch):
    # No configuration: default host/port (the test daemon's port stands in for 47800) and
    # the token from the daemon's data directory.
    from vibesync import wire as w
    monkeypatch.setattr(w, "DEFAULT_PORT", daemon.port)
    monkeypatch.setenv("VIBESYNC_DATA_DIR", daemon.data_dir)
    assert vibesync.status()["state"] == "disconnected"
    interval = vibesync._timer()  # what bpy.app.timers would call in the UI
    assert interval > 0
    end = time.monotonic() + 10
    while not vibesync.status()["connected"] and time.monotonic() < end:
        vibesync._timer()
        time.sleep(0.02)
    st = vibesync.status()
    assert st["connected"] and st["port"] == daemon.port
    # No project id set: the daemon assigned one (zero-config pairing, PROTOCOL §3) — the
    # shared test daemon remembers the project an editor used last, so any valid id.
    assert w.is_valid_project_id(st["project_id"]), st["project_id"]


def test_file_load_reconnects_with_the_new_files_project_id(clean_blender, daemon, tmp_path):
    """A file keeps the project it was paired with (saved in the .blend, §3)."""
    from vibesync import identity
    folder = tmp_path / "Level Two"
    folder.mkdir()
    path = str(folder / "two.blend")
    identity.write_text_block(identity.Registry().snapshot("Level-Two", 0))
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    vibesync.connect("127.0.0.1", daemon.port, daemon.token, None)
    pump_until(lambda: vibesync.status()["connected"], what="connection")
    assert vibesync.status()["project_id"] != "Level-Two"
    first = vibesync.status()["session_id"]
    bpy.ops.wm.open_mainfile(filepath=path)
    pump_until(lambda: vibesync.status()["connected"]
               and vibesync.status()["session_id"] != first, what="reconnect after load")
    assert vibesync.status()["project_id"] == "Level-Two"
    c = Client(daemon, "Level-Two")
    try:
        sessions = c.status()["sessions"]
    finally:
        c.close()
    assert any(s["editor"] == "blender" and s["project_id"] == "Level-Two" for s in sessions)


def test_sync_restarted_reconnects_and_sends_the_unanswered_change_again(clean_blender):
    """`SYNC_RESTARTED` (PROTOCOL §4) is the last frame of a connection whose project's sync
    a bug stopped; the `change` it left unanswered is neither acknowledged nor refused. In
    Blender's factory startup scene, the addon shows the error, reconnects, and sends that
    change again on the new connection; nothing in the scene is touched."""
    vibesync.unregister()
    bpy.ops.wm.read_factory_settings()
    vibesync.register()
    names = sorted(ob.name for ob in bpy.data.objects)
    assert names == ["Camera", "Cube", "Light"]
    hostile = HostileDaemon(lambda n, conn: None)
    changes: dict[int, list[dict]] = {0: [], 1: []}

    def serve(n, conn):
        # Enough of a daemon: nothing missed (an empty `resync` batch, §6.6), every item
        # registered; each `change` is kept, never answered.
        conn.settimeout(30)
        while True:
            msg = hostile.read_frame(conn)
            hostile.received.append(msg)
            rid = msg.get("request_id")
            if msg.get("type") == "resync":
                bid = f"replay-{rid}"
                conn.sendall(frame({"type": "batch_begin", "batch_id": bid, "seq": 5,
                                    "path": "resync", "count": 0, "request_id": rid}))
                conn.sendall(frame({"type": "batch_end", "batch_id": bid, "seq": 5,
                                    "request_id": rid}))
            elif msg.get("type") == "register":
                results = [{"uuid": i["uuid"], "status": "registered"} for i in msg["items"]]
                conn.sendall(frame({"type": "ack", "request_id": rid, "seq": 5, "results": results}))
            elif msg.get("type") == "change":
                changes[n].append(msg)
                if n == 0:
                    # The project's sync stops on this change: the last frame, then close.
                    conn.sendall(frame({"type": "error", "code": "SYNC_RESTARTED",
                                        "message": "this project's sync stopped on a bug and "
                                                   "restarted"}))
                    conn.close()
                    return

    hostile.script = serve
    try:
        vibesync.connect("127.0.0.1", hostile.port, "0" * 64, "hostile")
        pump_until(lambda: len(hostile.hellos) >= 2 and vibesync.status()["connected"],
                   timeout=20, what="a reconnect after SYNC_RESTARTED")
        codes = [e["code"] for e in vibesync.status()["errors"]]
        assert "SYNC_RESTARTED" in codes, codes
        assert not any(e["code"] == "INTERNAL" for e in vibesync.status()["errors"])
        cut = {c["uuid"] for c in changes[0][0]["changes"]}
        assert cut, changes[0]
        again = lambda: {c["uuid"] for m in changes[1] for c in m["changes"]}  # noqa: E731
        pump_until(lambda: cut <= again(), timeout=20,
                   what="the unanswered change sent again on the new connection")
        assert sorted(ob.name for ob in bpy.data.objects) == names
    finally:
        vibesync.disconnect()
        hostile.close()
