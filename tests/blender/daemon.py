"""Test helpers: start the real `vibesync` daemon and talk to it with a tiny client.

Nothing here imports the addon, so the client is an independent implementation of the
frame format (a second opinion on the addon's codec).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import threading
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def daemon_binary() -> str:
    path = os.environ.get("VIBESYNC_BIN") or os.path.join(REPO, "target", "debug", "vibesync")
    if not os.path.exists(path):
        raise RuntimeError(f"daemon binary {path} not found: run `cargo build -p vibesync` "
                           "(scripts/test-blender does) or set VIBESYNC_BIN")
    return path


class Daemon:
    """One `vibesync serve` child process on a data dir; restartable on the same port."""

    def __init__(self, binary: str, data_dir: str, extra_args: list[str] | None = None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.addr: tuple[str, int] | None = None
        self.lines: list[str] = []

    def start(self, port: int = 0, timeout: float = 30.0) -> "Daemon":
        os.makedirs(self.data_dir, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{port}",
             *self.extra_args],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.data_dir, "..",
                                                             os.path.basename(self.data_dir) + ".stderr"), "ab"),
            text=True)
        found = threading.Event()

        def reader(proc=self.proc):
            for line in proc.stdout:
                self.lines.append(line)
                m = re.search(r"listening on (\S+)", line)
                if m and not found.is_set():
                    host, p = m.group(1).rsplit(":", 1)
                    self.addr = (host, int(p))
                    found.set()

        self.addr = None
        threading.Thread(target=reader, daemon=True).start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError(f"daemon did not print `listening on` within {timeout}s; "
                               f"output: {''.join(self.lines)[-2000:]}")
        return self

    @property
    def port(self) -> int:
        return self.addr[1]

    @property
    def token(self) -> str:
        with open(os.path.join(self.data_dir, "token")) as f:
            return f.read().strip()

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def tail(self) -> list[dict]:
        """The WAL as JSON records (`vibesync tail --json`)."""
        out = subprocess.run([self.binary, "tail", "--data-dir", self.data_dir, "--json"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"vibesync tail failed: {out.stderr}")
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


class Client:
    """A minimal protocol client (editor `test`), independent of the addon's code."""

    def __init__(self, daemon: Daemon, project_id: str, editor: str = "test") -> None:
        self.sock = socket.create_connection(daemon.addr, timeout=10)
        self.buf = b""
        self.n = 0
        self.send({"type": "hello", "protocol": 1, "project_id": project_id, "editor": editor,
                   "editor_version": "pytest", "client_id": str(uuid.uuid4()),
                   "token": daemon.token, "unit_scale": 1.0, "last_seq": 0})
        self.welcome = self.recv()
        assert self.welcome["type"] == "welcome", self.welcome

    def send(self, msg: dict, attachment: bytes = b"") -> None:
        body = json.dumps(msg).encode()
        self.sock.sendall(struct.pack(">II", 4 + len(body) + len(attachment), len(body))
                          + body + attachment)

    def recv(self) -> dict:
        while True:
            if len(self.buf) >= 8:
                total, jl = struct.unpack(">II", self.buf[:8])
                if len(self.buf) >= 4 + total:
                    body = self.buf[8:8 + jl]
                    self.buf = self.buf[4 + total:]
                    return json.loads(body)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed the connection")
            self.buf += data

    def request(self, msg: dict) -> dict:
        self.n += 1
        rid = f"t{self.n}"
        msg = dict(msg, request_id=rid)
        self.send(msg)
        while True:
            reply = self.recv()
            if reply.get("request_id") == rid:
                return reply

    def status(self) -> dict:
        return self.request({"type": "status"})

    def register_probe(self, uuid_: str, kind: str, name: str, editor_ref: str) -> dict:
        """Register as editor `test`: tells whether the uuid is live (unchanged/updated)."""
        return self.request({"type": "register", "items": [
            {"uuid": uuid_, "kind": kind, "name": name, "editor_ref": editor_ref}]})

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def registry_records(daemon: Daemon) -> dict[str, dict]:
    """uuid -> last register/tombstone step seen in the WAL (COMMITted transactions only)."""
    records = daemon.tail()
    committed = {r.get("operation_id") for r in records if r.get("phase") == "COMMIT"}
    out: dict[str, dict] = {}
    for r in records:
        if r.get("phase") != "STEP" or r.get("operation_id") not in committed:
            continue
        p = r.get("payload") or {}
        op = p.get("op")
        if op in ("register", "tombstone"):
            for u in r.get("uuids") or [p.get("uuid")]:
                out.setdefault(u, {"registers": 0, "tombstones": 0})
                if op == "register":
                    out[u]["registers"] += 1
                    out[u]["last"] = p
                else:
                    out[u]["tombstones"] += 1
                out[u]["state"] = "live" if op == "register" else "tombstoned"
    return out


def synced_states(daemon: Daemon) -> dict[str, dict]:
    """uuid -> {"state", "state_hash"} of the last committed sync STEP in the WAL."""
    records = daemon.tail()
    committed = {r.get("operation_id") for r in records if r.get("phase") == "COMMIT"}
    out: dict[str, dict] = {}
    for r in records:
        p = r.get("payload") or {}
        if r.get("phase") == "STEP" and p.get("op") == "state" \
                and r.get("operation_id") in committed:
            u = p.get("uuid") or (r.get("uuids") or [None])[0]
            out[u] = {"state": p.get("state"), "state_hash": p.get("state_hash")}
    return out
