"""The socket thread: connect, hello, framed read/write, reconnect with backoff.

This thread only moves bytes. It never touches bpy; it talks to the main thread through two
thread-safe queues:

* `outbox` (main -> thread): `(generation, message_dict, attachment)`. Items of an older
  connection generation are dropped, so nothing queued for a dead connection leaks into the
  next one (the main thread re-sends its state after each `connected` event).
* `inbox` (thread -> main): events `(kind, payload)`:
  `("connected", {"welcome": dict, "generation": int})`, `("disconnected", {"reason": str})`,
  `("message", {"message": dict, "attachment": bytes, "generation": int})`,
  `("bad_frame", {"code": str, "detail": str})`, `("handshake_error", {"code", "message"})`.
  A message carries the generation of the connection it came on: the main thread drops
  those of a connection it has already left (a file switch), whose replies would otherwise
  land in the next file (e.g. a `batch_result` advancing the new file's `last_seq`).
* A requested reconnect (file switch) first sends the frames already queued for the
  current connection (e.g. the `applied` answer of a batch just applied), within
  `FLUSH_BEFORE_RECONNECT_S`: a batch that was applied is answered, never reported lost.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import threading
import time

from . import wire

log = logging.getLogger("vibesync.transport")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
HELLO_TIMEOUT_S = 5.0
FLUSH_BEFORE_RECONNECT_S = 2.0
_RECV_BYTES = 256 * 1024


def data_dir() -> str:
    """The daemon's data directory, resolved exactly as the daemon does."""
    env = os.environ.get("VIBESYNC_DATA_DIR")
    if env:
        return env
    import sys
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "vibesync")
    if sys.platform.startswith("win"):
        return os.path.join(os.environ.get("APPDATA", home), "vibesync")
    xdg = os.environ.get("XDG_DATA_HOME")
    return os.path.join(xdg if xdg else os.path.join(home, ".local", "share"), "vibesync")


def default_token_path() -> str:
    return os.path.join(data_dir(), "token")


def read_token(path: str) -> str:
    """Token file contents, stripped. Raises OSError with a readable message."""
    with open(path, "r", encoding="utf-8") as f:
        return f.read().strip()


class Transport:
    """Owns the background connection thread."""

    def __init__(self, host: str, port: int, hello: dict, token: str | None = None,
                 token_path: str | None = None) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.token_path = token_path
        self.inbox = queue.Queue()
        self.outbox = queue.Queue()
        self._hello_lock = threading.Lock()
        self._hello = dict(hello)
        self._stop = threading.Event()
        self._thread = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.generation = 0  # written by the thread only; read for diagnostics
        # (uuid, op) -> the number of the last `live` frame of it received (`live_superseded`).
        self.live_latest: dict[tuple[str, str], int] = {}
        self._live_no = 0
        self.backoff_s = BACKOFF_MIN_S
        self.next_attempt_at = 0.0
        self.connect_attempts = 0

    # ------------------------------------------------------------------ main-thread API
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="vibesync-transport",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for s in (self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def update_hello(self, **fields) -> None:
        """Fields of the next hello (e.g. last_seq, unit_scale, project_id)."""
        with self._hello_lock:
            self._hello.update(fields)

    def send(self, generation: int, message: dict, attachment: bytes = b"") -> None:
        self.outbox.put((generation, message, attachment))
        self._wake()

    def reconnect(self) -> None:
        """Drop the current connection (if any); the thread reconnects with fresh hello."""
        self.outbox.put(("reconnect", None, b""))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -------------------------------------------------------------------- thread body
    def _post(self, kind: str, **payload) -> None:
        self.inbox.put((kind, payload))

    def _run(self) -> None:
        while not self._stop.is_set():
            reason = "closed"
            sock = None
            try:
                sock = self._connect()
                if sock is not None:
                    reason = self._serve(sock)
                # A failed connect or handshake waits its backoff too (below): no retry loop
                # that hammers a daemon refusing the token, or spins while none runs.
            except Exception as e:  # never let the thread die silently
                reason = f"{type(e).__name__}: {e}"
                log.debug("transport error", exc_info=True)
            finally:
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
                    self._post("disconnected", reason=reason)
                    log.info("disconnected from %s:%s: %s", self.host, self.port, reason)
            if not self._stop.is_set():
                self._sleep_backoff()

    def _sleep_backoff(self) -> None:
        delay = self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
        self.next_attempt_at = time.monotonic() + delay
        end = self.next_attempt_at
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self._wake_r], [], [], left)
            if r:
                self._drain_wake()
                # A reconnect request cuts the wait short; other items stay queued.
                if self._take_reconnect_request():
                    return

    def _take_reconnect_request(self) -> bool:
        keep = []
        found = False
        while True:
            try:
                item = self.outbox.get_nowait()
            except queue.Empty:
                break
            if item[0] == "reconnect":
                found = True
            else:
                keep.append(item)
        for item in keep:
            self.outbox.put(item)
        return found

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _connect(self):
        self.connect_attempts += 1
        with self._hello_lock:
            # Optional fields left unset are omitted (e.g. project_id: the daemon pairs).
            hello = {k: v for k, v in self._hello.items() if v is not None}
        token = self.token
        if not token:
            path = self.token_path or default_token_path()
            try:
                token = read_token(path)
            except OSError as e:
                self._post("handshake_error", code="NO_TOKEN",
                           message=f"cannot read the daemon token at {path}: {e}; start "
                                   "the daemon (`vibesync serve`) or set the token file in "
                                   "the VibeSync preferences")
                return None
        hello["token"] = token
        hello["type"] = wire.MessageType.HELLO
        try:
            sock = socket.create_connection((self.host, self.port), timeout=HELLO_TIMEOUT_S)
        except OSError as e:
            log.debug("connect to %s:%s failed: %s", self.host, self.port, e)
            self._post("connect_failed", reason=str(e))
            return None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(wire.encode_frame(hello))
            decoder = wire.FrameDecoder()
            deadline = time.monotonic() + HELLO_TIMEOUT_S
            frames: list = []
            while not frames:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no welcome within 5 s")
                sock.settimeout(left)
                data = sock.recv(_RECV_BYTES)
                if not data:
                    raise ConnectionError("daemon closed the connection during the handshake")
                frames = decoder.feed(data)
            msg = wire.parse_message(frames[0][0])
            if msg.get("type") == wire.MessageType.ERROR:
                self._post("handshake_error", code=str(msg.get("code")),
                           message=str(msg.get("message")))
                sock.close()
                return None
            if msg.get("type") != wire.MessageType.WELCOME:
                raise wire.WireError(wire.ErrorCode.BAD_MESSAGE,
                                     f"expected welcome, got {msg.get('type')!r}")
        except (OSError, wire.WireError, TimeoutError, ConnectionError) as e:
            log.warning("handshake with %s:%s failed: %s", self.host, self.port, e)
            self._post("handshake_error", code="HANDSHAKE_FAILED", message=str(e))
            try:
                sock.close()
            except OSError:
                pass
            return None
        self.generation += 1
        self.backoff_s = BACKOFF_MIN_S
        sock.setblocking(False)
        self._sock_decoder = decoder
        self._post("connected", welcome=msg, generation=self.generation)
        # Frames that arrived right behind the welcome.
        for json_bytes, attachment in frames[1:]:
            self._deliver(json_bytes, attachment)
        log.info("connected to %s:%s (session %s)", self.host, self.port,
                 msg.get("session_id"))
        return sock

    def _deliver(self, json_bytes: bytes, attachment: bytes) -> None:
        try:
            msg = wire.parse_message(json_bytes)
        except wire.WireError as e:
            log.warning("dropped a bad message from the daemon: %s", e)
            self._post("bad_frame", code=e.code, detail=e.message)
            return
        live_no = None
        change = msg.get("change") if msg.get("type") == wire.MessageType.LIVE else None
        if isinstance(change, dict) and isinstance(change.get("uuid"), str) and isinstance(change.get("op"), str):
            self._live_no += 1
            live_no = self._live_no
            self.live_latest[(change["uuid"], change["op"])] = live_no
        self._post("message", message=msg, attachment=attachment, generation=self.generation,
                   live_no=live_no)

    def live_superseded(self, change: dict, live_no: int | None) -> bool:
        """Main thread: has a later `live` frame of this uuid and op already been received
        (still waiting in the inbox)? Then this one need not be applied: the later one sets
        the same field whole (PROTOCOL §6.3, editors behind on reading)."""
        if live_no is None:
            return False
        return self.live_latest.get((change.get("uuid"), change.get("op")), live_no) > live_no

    def _serve(self, sock) -> str:
        decoder = self._sock_decoder
        pending = bytearray()
        while not self._stop.is_set():
            if self._take_outgoing(pending):
                self._flush_before_reconnect(sock, pending)
                return "reconnect requested"
            wants = [sock] if pending else []
            r, w, _ = select.select([sock, self._wake_r], wants, [], 1.0)
            if self._wake_r in r:
                self._drain_wake()
            if sock in w and pending:
                try:
                    n = sock.send(pending)
                    del pending[:n]
                except (BlockingIOError, InterruptedError):
                    pass
            if sock in r:
                try:
                    data = sock.recv(_RECV_BYTES)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    return "daemon closed the connection"
                try:
                    frames = decoder.feed(data)
                except wire.WireError as e:
                    log.error("bad frame from the daemon (%s); resetting the connection", e)
                    self._post("bad_frame", code=e.code, detail=e.message)
                    return f"bad frame: {e.code}"
                for json_bytes, attachment in frames:
                    self._deliver(json_bytes, attachment)
        # Stopped: what the main thread queued for this connection before the stop (its
        # `editor_state` `closing`) still goes out (bounded).
        self._take_outgoing(pending)
        self._flush_before_reconnect(sock, pending)
        return "stopped"

    def _take_outgoing(self, pending: bytearray) -> bool:
        """Move the queued frames of this connection into `pending`, up to a reconnect
        request (True when one was taken; what follows it stays queued)."""
        while True:
            try:
                gen, msg, att = self.outbox.get_nowait()
            except queue.Empty:
                return False
            if gen == "reconnect":
                return True
            if gen != self.generation:
                continue  # queued for an older connection: the main thread resends
            try:
                pending += wire.encode_frame(msg, att)
            except (wire.WireError, ValueError, TypeError) as e:
                log.error("cannot encode outgoing %s message: %s", msg.get("type"), e)

    def _flush_before_reconnect(self, sock, pending: bytearray) -> None:
        """Send what is already queued for this connection before leaving it (bounded)."""
        if not pending:
            return
        try:
            sock.setblocking(True)
            sock.settimeout(FLUSH_BEFORE_RECONNECT_S)
            sock.sendall(bytes(pending))
        except OSError as e:
            log.warning("%d queued bytes not sent before the reconnect: %s", len(pending), e)
