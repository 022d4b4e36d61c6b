"""A raw protocol `agent` client for the suite, polled without blocking so the test can keep
pumping Blender while it waits."""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid

from harness import drive


class Agent:
    def __init__(self, daemon, project_id: str) -> None:
        self.sock = socket.create_connection(daemon.addr, timeout=10)
        self.buf = b""
        self.inbox: list[dict] = []
        self.n = 0
        self._send({"type": "hello", "protocol": 1, "project_id": project_id, "editor": "agent",
                    "editor_version": "pytest", "client_id": "pytest-agent-" + uuid.uuid4().hex[:6],
                    "token": daemon.token, "last_seq": 0})
        self.sock.setblocking(False)
        self.welcome = drive(lambda: self.take(lambda m: m["type"] == "welcome"), what="welcome")

    def _send(self, msg: dict) -> None:
        body = json.dumps(msg).encode()
        self.sock.setblocking(True)
        self.sock.sendall(struct.pack(">II", 4 + len(body), len(body)) + body)
        self.sock.setblocking(False)

    def poll(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            self.buf += data
        while len(self.buf) >= 8:
            total, jl = struct.unpack(">II", self.buf[:8])
            if len(self.buf) < 4 + total:
                break
            self.inbox.append(json.loads(self.buf[8:8 + jl]))
            self.buf = self.buf[4 + total:]

    def take(self, pred):
        self.poll()
        for i, m in enumerate(self.inbox):
            if pred(m):
                return self.inbox.pop(i)
        return None

    def all(self, pred) -> list:
        self.poll()
        return [m for m in self.inbox if pred(m)]

    def call(self, addon_id: str, command: str, params: dict | None = None, **extra) -> str:
        self.n += 1
        rid = f"a{self.n}"
        self._send({"type": "addon_command", "request_id": rid, "addon_id": addon_id,
                    "command": command, "params": params or {}, **extra})
        return rid

    def result(self, rid: str, timeout: float = 20.0) -> dict:
        return drive(lambda: self.take(lambda m: m["type"] == "command_response"
                                       and m.get("request_id") == rid),
                     timeout=timeout, what=f"command_response {rid}")

    def registry(self, pred=lambda m: True, timeout: float = 10.0) -> dict:
        """The latest `registry_updated` that satisfies pred (older ones are dropped)."""
        def latest():
            msgs = self.all(lambda m: m["type"] == "registry_updated")
            for m in msgs:
                self.inbox.remove(m)
            for m in reversed(msgs):
                if pred(m):
                    self._last = m
                    return m
            return None
        return drive(latest, timeout=timeout, what="registry_updated")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def wait_until(cond, timeout=10.0, what="condition"):
    return drive(cond, timeout=timeout, what=what)


def sleep_pumping(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        drive(lambda: True)
        time.sleep(0.01)
