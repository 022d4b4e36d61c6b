"""The wire contract of docs/PROTOCOL.md, in pure Python (no bpy).

Frame codec (§1), message and error-code names (§3-§6), canonical JSON, quantization and the
state and mesh hashes (§6.5, §7), coordinate conversion (§6) and the mesh attachment (§7). Everything here
is deterministic and tested against the shared vectors in tests/vectors/.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import sys

PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 47800
MAX_FRAME_BYTES = 64 * 1024 * 1024
# At most this many uuids in one `editor_state.held` (§6.7); Rust `EditorState::MAX_HELD`.
MAX_HELD = 1000
EPSILON = 1e-5


class MessageType:
    """Every `type` of docs/PROTOCOL.md."""

    HELLO = "hello"
    WELCOME = "welcome"
    ERROR = "error"
    PING = "ping"
    PONG = "pong"
    STATUS = "status"
    REGISTER = "register"
    TOMBSTONE = "tombstone"
    ACK = "ack"
    CHANGE = "change"
    BATCH_BEGIN = "batch_begin"
    APPLY = "apply"
    BATCH_END = "batch_end"
    APPLIED = "applied"
    BATCH_RESULT = "batch_result"
    USER_ACTIVITY = "user_activity"
    RESYNC = "resync"
    SAFE_MODE = "safe_mode"
    ADMIN = "admin"
    ADMIN_RESULT = "admin_result"
    PEERS = "peers"
    CONFLICT = "conflict"
    QUARANTINE_RELEASED = "quarantine_released"
    EDITOR_STATE = "editor_state"
    # A fast-path change forwarded at once, before its batch (§6.3 live previews).
    LIVE = "live"
    # Agent tool calls and addon registries (§9).
    ADDON_COMMAND = "addon_command"
    ADDON_CANCEL = "addon_cancel"
    COMMAND_RESPONSE = "command_response"
    COMMAND_PROGRESS = "command_progress"
    REGISTRY_UPDATED = "registry_updated"
    ADDON_REGISTERED = "addon_registered"
    ADDON_UNREGISTERED = "addon_unregistered"
    SCENE_QUERY = "scene_query"
    SCENE = "scene"


# Who sends each message type (tests/vectors/names.json `direction`).
TO_DAEMON, TO_CLIENT, BOTH = "to_daemon", "to_client", "both"
DIRECTION = {
    MessageType.HELLO: TO_DAEMON, MessageType.PING: TO_DAEMON, MessageType.REGISTER: TO_DAEMON,
    MessageType.TOMBSTONE: TO_DAEMON, MessageType.CHANGE: TO_DAEMON, MessageType.APPLIED: TO_DAEMON,
    MessageType.USER_ACTIVITY: TO_DAEMON, MessageType.ADMIN: TO_DAEMON,
    MessageType.EDITOR_STATE: TO_DAEMON, MessageType.ADDON_CANCEL: TO_DAEMON,
    MessageType.ADDON_REGISTERED: TO_DAEMON, MessageType.ADDON_UNREGISTERED: TO_DAEMON,
    MessageType.SCENE_QUERY: TO_DAEMON,
    MessageType.WELCOME: TO_CLIENT, MessageType.ERROR: TO_CLIENT, MessageType.PONG: TO_CLIENT,
    MessageType.ACK: TO_CLIENT, MessageType.BATCH_BEGIN: TO_CLIENT, MessageType.APPLY: TO_CLIENT,
    MessageType.BATCH_END: TO_CLIENT, MessageType.BATCH_RESULT: TO_CLIENT,
    MessageType.SAFE_MODE: TO_CLIENT, MessageType.ADMIN_RESULT: TO_CLIENT,
    MessageType.PEERS: TO_CLIENT, MessageType.CONFLICT: TO_CLIENT, MessageType.LIVE: TO_CLIENT,
    MessageType.QUARANTINE_RELEASED: TO_CLIENT,
    MessageType.COMMAND_PROGRESS: TO_CLIENT, MessageType.SCENE: TO_CLIENT,
    MessageType.STATUS: BOTH, MessageType.RESYNC: BOTH, MessageType.ADDON_COMMAND: BOTH,
    MessageType.COMMAND_RESPONSE: BOTH, MessageType.REGISTRY_UPDATED: BOTH,
}


class BatchOutcome:
    """`batch_result.outcome` values (§6.4); Rust `BatchOutcome`, C# `BatchOutcome`."""

    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    DROPPED = "dropped"


class PathKind:
    """`batch_begin.path` (§6.3)."""

    FAST = "fast"
    SLOW = "slow"
    RESYNC = "resync"


class ClientKind:
    """`hello.editor` (§3); BLENDER and UNITY hold scenes."""

    BLENDER = "blender"
    UNITY = "unity"
    CLI = "cli"
    AGENT = "agent"
    TEST = "test"


SCENE_HOLDERS = frozenset({ClientKind.BLENDER, ClientKind.UNITY})


class Op:
    """`change.changes[].op` (§6.1); FAST_OPS take the fast path."""

    CREATE = "create"
    DELETE = "delete"
    REPARENT = "reparent"
    MESH = "mesh"
    MATERIAL = "material"
    TRANSFORM = "transform"
    RENAME = "rename"
    VISIBILITY = "visibility"


FAST_OPS = frozenset({Op.TRANSFORM, Op.RENAME, Op.VISIBILITY})


class AdminAction:
    """`admin.action` (§6.7)."""

    SAFE_MODE_CLEAR = "safe_mode_clear"
    QUARANTINE_LIST = "quarantine_list"
    QUARANTINE_RELEASE = "quarantine_release"
    VERIFY = "verify"
    ENTRIES = "entries"
    MAINTAIN = "maintain"
    STOP = "stop"


class EditorRunState:
    """`editor_state.state` values (§6.7); Rust and C# `EditorRunState`."""

    PAUSED = "paused"
    RUNNING = "running"
    CLOSING = "closing"  # about to close this connection on purpose (§6.8)


class ErrorCode:
    """Connection-level, per-item and WAL error codes (§4), spelled as in Rust and C#."""

    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    BAD_FRAME = "BAD_FRAME"
    BAD_MESSAGE = "BAD_MESSAGE"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    AUTH_FAILED = "AUTH_FAILED"
    PROTOCOL_MISMATCH = "PROTOCOL_MISMATCH"
    BAD_PROJECT_ID = "BAD_PROJECT_ID"
    HANDSHAKE_TIMEOUT = "HANDSHAKE_TIMEOUT"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    RATE_LIMITED = "RATE_LIMITED"
    SAFE_MODE = "SAFE_MODE"
    STORAGE_FAILED = "STORAGE_FAILED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SLOW_CONSUMER = "SLOW_CONSUMER"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    SYNC_RESTARTED = "SYNC_RESTARTED"
    INTERNAL = "INTERNAL"
    # Per item, inside ack.results[].
    INVALID_UUID = "INVALID_UUID"
    UNKNOWN_KIND = "UNKNOWN_KIND"
    INVALID_NAME = "INVALID_NAME"
    INVALID_FIELD = "INVALID_FIELD"
    NON_FINITE = "NON_FINITE"
    TOO_LARGE = "TOO_LARGE"
    QUARANTINED = "QUARANTINED"
    NOT_FOUND = "NOT_FOUND"
    DUPLICATE_IN_REQUEST = "DUPLICATE_IN_REQUEST"
    STALE = "STALE"
    BLOCKED = "BLOCKED"
    # WAL only (also `batch_result.error_code` of a rollback).
    RECOVERED_INCOMPLETE = "RECOVERED_INCOMPLETE"
    VERIFY_MISMATCH = "VERIFY_MISMATCH"
    VERIFY_TIMEOUT = "VERIFY_TIMEOUT"
    PARTICIPANT_LOST = "PARTICIPANT_LOST"
    PARTICIPANT_LEFT = "PARTICIPANT_LEFT"


# Codes after which the daemon closes the connection (§4).
CLOSING_ERRORS = frozenset({
    ErrorCode.FRAME_TOO_LARGE, ErrorCode.BAD_FRAME, ErrorCode.AUTH_FAILED,
    ErrorCode.PROTOCOL_MISMATCH, ErrorCode.BAD_PROJECT_ID, ErrorCode.HANDSHAKE_TIMEOUT,
    ErrorCode.NOT_AUTHENTICATED, ErrorCode.SHUTTING_DOWN, ErrorCode.SLOW_CONSUMER,
    ErrorCode.TOO_MANY_CONNECTIONS, ErrorCode.SYNC_RESTARTED,
})


class ItemStatus:
    """`ack.results[].status` values (§5, §6.1); Rust `ItemStatus`."""

    REGISTERED = "registered"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    COLLISION = "collision"
    ERROR = "error"
    TOMBSTONED = "tombstoned"
    QUEUED = "queued"
    HELD = "held"
    COALESCED = "coalesced"


KINDS = ("object", "mesh", "material", "armature", "action", "image", "collection",
         "light", "camera", "node_group")
# Kinds with synced state (`create.kind`, §6.1).
SYNCED_KINDS = ("object", "collection")

# Per-item codes (`ack.results[].error_code`) and rollback codes, as subsets of ErrorCode.
ITEM_ERROR_CODES = ("INVALID_UUID", "UNKNOWN_KIND", "INVALID_NAME", "INVALID_FIELD", "NON_FINITE",
                    "TOO_LARGE", "QUARANTINED", "NOT_FOUND", "DUPLICATE_IN_REQUEST", "STALE",
                    "BLOCKED", "STORAGE_FAILED")
ROLLBACK_CODES = ("VERIFY_MISMATCH", "VERIFY_TIMEOUT", "RECOVERED_INCOMPLETE", "PARTICIPANT_LOST",
                  "PARTICIPANT_LEFT")


class WireError(Exception):
    """A frame or message that breaks the contract; `code` is an ErrorCode value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def fatal(self) -> bool:
        """True when the byte stream can no longer be trusted (close the connection)."""
        return self.code in (ErrorCode.FRAME_TOO_LARGE, ErrorCode.BAD_FRAME)


# ---------------------------------------------------------------------------------- frames

_HEADER = struct.Struct(">II")


def encode_frame(message: dict | str | bytes, attachment: bytes = b"") -> bytes:
    """One frame: `u32 BE total_len | u32 BE json_len | json | attachment`.

    A dict is serialized compactly; str/bytes are sent as given (exact JSON text).
    """
    if isinstance(message, dict):
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    elif isinstance(message, str):
        body = message.encode("utf-8")
    else:
        body = bytes(message)
    total = 4 + len(body) + len(attachment)
    if total > MAX_FRAME_BYTES:
        raise WireError(ErrorCode.FRAME_TOO_LARGE,
                        f"outgoing frame of {total} bytes exceeds {MAX_FRAME_BYTES}; "
                        "split the payload")
    return _HEADER.pack(total, len(body)) + body + bytes(attachment)


class FrameDecoder:
    """Incremental decoder: feed any byte slices, get whole frames out.

    Raises WireError(FRAME_TOO_LARGE | BAD_FRAME) on a bad header, before buffering the
    body; after that the stream is untrusted and the caller must drop the connection.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Append bytes; return the complete frames as (json_bytes, attachment)."""
        self._buf += data
        frames = []
        while len(self._buf) >= 4:
            total = int.from_bytes(self._buf[0:4], "big")
            if total > self.max_frame_bytes:
                raise WireError(ErrorCode.FRAME_TOO_LARGE,
                                f"frame length {total} bytes exceeds the limit of "
                                f"{self.max_frame_bytes} bytes")
            if total < 4:
                raise WireError(ErrorCode.BAD_FRAME,
                                f"malformed frame header: total_len {total} < 4")
            if len(self._buf) < 8:
                break
            json_len = int.from_bytes(self._buf[4:8], "big")
            if json_len > total - 4:
                raise WireError(ErrorCode.BAD_FRAME,
                                f"malformed frame header: total_len {total}, json_len "
                                f"{json_len} (json_len must be <= total_len - 4)")
            if len(self._buf) < 4 + total:
                break
            body = bytes(self._buf[8:4 + total])
            del self._buf[:4 + total]
            frames.append((body[:json_len], body[json_len:]))
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)


def parse_message(json_bytes: bytes) -> dict:
    """Decode a frame's JSON part into a message dict with a string `type`.

    Raises WireError(BAD_MESSAGE) naming what is wrong; the connection stays usable.
    """
    if not json_bytes:
        raise WireError(ErrorCode.BAD_MESSAGE, "empty JSON part (json_len == 0)")
    try:
        text = json_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError(ErrorCode.BAD_MESSAGE, f"JSON part is not UTF-8 ({e})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise WireError(ErrorCode.BAD_MESSAGE, f"invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise WireError(ErrorCode.BAD_MESSAGE, "JSON part is not an object")
    if "type" not in value:
        raise WireError(ErrorCode.BAD_MESSAGE, "field `type`: missing")
    if not isinstance(value["type"], str):
        raise WireError(ErrorCode.BAD_MESSAGE, "field `type`: not a string")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not JSON")


# ------------------------------------------------------------------------------ validation

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"
_PROJECT_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def is_valid_uuid(value: object) -> bool:
    """Lowercase 36-char RFC 4122 text, not nil (§2)."""
    return isinstance(value, str) and value != _NIL_UUID and bool(_UUID_RE.match(value))


def is_valid_project_id(value: object) -> bool:
    return (isinstance(value, str) and bool(_PROJECT_RE.match(value))
            and not value.startswith("."))


def project_id_from_folder(folder_name: str) -> str:
    """A valid project id derived from a folder name (used for the .blend's folder)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", folder_name).strip("-").lstrip(".")
    cleaned = cleaned[:128]
    return cleaned if is_valid_project_id(cleaned) else "default"


# ----------------------------------------------------------------- quantization and hashing

def quantize(v: float) -> int:
    """q(v) = sign(v) * floor(|v| * 100000 + 0.5) (§6.4)."""
    q = int(math.floor(abs(v) * 100000.0 + 0.5))
    return -q if v < 0 else q


def hashed_rotation(q) -> list[int] | None:
    """The hashed form of a quaternion [x, y, z, w] (§6.5, "smallest three"): [L, a, b, c]
    with L the index of the largest |component| (ties: lowest index) and a, b, c the other
    three quantized in index order, negated when component L is negative. None when `q` is
    not 4 numbers (then it is written as a plain array)."""
    if len(q) != 4 or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in q):
        return None
    c = [float(v) for v in q]
    big = 0
    for i in (1, 2, 3):
        if abs(c[i]) > abs(c[big]):
            big = i
    sign = -1.0 if c[big] < 0 else 1.0
    return [big] + [quantize(sign * c[i]) for i in range(4) if i != big]


def _write_canonical(value: object, key: str | None, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number in state (field `{key}`)")
        out.append(str(quantize(float(value))))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, (list, tuple)):
        items = list(value)
        form = hashed_rotation(items) if key == "r" else None
        if form is not None:
            if not all(math.isfinite(c) for c in items):
                raise ValueError("non-finite number in state (field `r`)")
            out.append("[%d,%d,%d,%d]" % tuple(form))
            return
        out.append("[")
        for i, item in enumerate(items):
            if i:
                out.append(",")
            _write_canonical(item, None, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, k in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _write_canonical(value[k], k, out)
        out.append("}")
    else:
        raise TypeError(f"cannot put {type(value).__name__} in canonical JSON")


def canonical_json(state: dict) -> str:
    """Keys sorted, compact, every number quantized, `r` in its hashed form (§6.5)."""
    out: list[str] = []
    _write_canonical(state, None, out)
    return "".join(out)


def state_hash(state: dict) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of a synced state (§6.5). hashlib runs
    in C: ~1 µs per state instead of ~280 µs for the former pure-Python hash."""
    return hashlib.sha256(canonical_json(state).encode("utf-8")).hexdigest()


def mesh_hash(attachment: bytes | bytearray | memoryview) -> str:
    """`mesh_hash` (§7): lowercase hex SHA-256 of the whole attachment. hashlib releases the
    GIL for large buffers, so a worker thread hashing a big mesh does not stall Blender."""
    return hashlib.sha256(attachment).hexdigest()


# --------------------------------------------------------------------------- coordinates

def blender_to_canonical(t, r, s, unit_scale: float = 1.0):
    """Blender (Z up, RH, editor units; r = [x,y,z,w]) -> canonical (Y up, RH, meters)."""
    x, y, z = t
    qx, qy, qz, qw = r
    sx, sy, sz = s
    return ([x * unit_scale, z * unit_scale, -y * unit_scale],
            [qx, qz, -qy, qw],
            [sx, sz, sy])


def canonical_to_blender(t, r, s, unit_scale: float = 1.0):
    """Canonical (Y up, RH, meters) -> Blender (Z up, RH, editor units)."""
    x, y, z = t
    qx, qy, qz, qw = r
    sx, sy, sz = s
    return ([x / unit_scale, -z / unit_scale, y / unit_scale],
            [qx, -qz, qy, qw],
            [sx, sz, sy])


def wire_lengths(t, unit_scale: float = 1.0):
    """Canonical meters -> canonical axes in editor units (what `change` messages carry)."""
    return [c / unit_scale for c in t]


def blender_to_wire(t, r, s):
    """Blender -> canonical axes, lengths kept in editor units (§6: the daemon scales)."""
    return blender_to_canonical(t, r, s, 1.0)


def wire_to_blender(t, r, s):
    """Canonical axes in editor units -> Blender."""
    return canonical_to_blender(t, r, s, 1.0)


# ------------------------------------------------------------------------ mesh attachment

MESH_MAGIC = b"VSM1"
MESH_FLAG_NORMALS = 1
MESH_FLAG_UV0 = 2


def encode_mesh(positions: list[float], indices: list[int], normals: list[float] | None = None,
                uv0: list[float] | None = None) -> bytes:
    """The §7 attachment from flat canonical-frame arrays (positions in meters)."""
    if len(positions) % 3:
        raise ValueError("positions must hold 3 floats per vertex")
    n = len(positions) // 3
    flags = 0
    if normals is not None:
        if len(normals) != 3 * n:
            raise ValueError("normals must hold 3 floats per vertex")
        flags |= MESH_FLAG_NORMALS
    if uv0 is not None:
        if len(uv0) != 2 * n:
            raise ValueError("uv0 must hold 2 floats per vertex")
        flags |= MESH_FLAG_UV0
    parts = [MESH_MAGIC, struct.pack("<III", n, len(indices), flags),
             struct.pack(f"<{3 * n}f", *positions)]
    if normals is not None:
        parts.append(struct.pack(f"<{3 * n}f", *normals))
    if uv0 is not None:
        parts.append(struct.pack(f"<{2 * n}f", *uv0))
    parts.append(struct.pack(f"<{len(indices)}I", *indices))
    return b"".join(parts)


def decode_mesh_header(data: bytes) -> tuple[int, int, int]:
    """Validate a §7 attachment (magic, flags, sizes, every index in range) without
    building Python lists; returns (vertex_count, index_count, flags)."""
    if len(data) < 16 or data[:4] != MESH_MAGIC:
        raise WireError(ErrorCode.BAD_MESSAGE, "mesh attachment does not start with VSM1")
    n, ni, flags = struct.unpack_from("<III", data, 4)
    if flags & ~(MESH_FLAG_NORMALS | MESH_FLAG_UV0):
        raise WireError(ErrorCode.BAD_MESSAGE, f"mesh attachment has unknown flags {flags:#x}")
    if ni % 3:
        raise WireError(ErrorCode.BAD_MESSAGE, f"mesh attachment has {ni} indices, not triangles")
    need = 16 + 12 * n + (12 * n if flags & MESH_FLAG_NORMALS else 0) \
        + (8 * n if flags & MESH_FLAG_UV0 else 0) + 4 * ni
    if len(data) < need:
        raise WireError(ErrorCode.BAD_MESSAGE,
                        f"mesh attachment is {len(data)} bytes, expected {need} for "
                        f"{n} vertices and {ni} indices")
    if ni:
        import array as _array
        idx = _array.array("I")
        idx.frombytes(data[need - 4 * ni:need])
        if sys.byteorder != "little":
            idx.byteswap()
        if max(idx) >= n:
            raise WireError(ErrorCode.BAD_MESSAGE, "mesh attachment has an index out of range")
    return n, ni, flags


def decode_mesh(data: bytes) -> dict:
    """Parse a §7 attachment; raises WireError(BAD_MESSAGE) when it is malformed."""
    if len(data) < 16 or data[:4] != MESH_MAGIC:
        raise WireError(ErrorCode.BAD_MESSAGE, "mesh attachment does not start with `VSM1`")
    n, ni, flags = struct.unpack_from("<III", data, 4)
    if flags & ~(MESH_FLAG_NORMALS | MESH_FLAG_UV0):
        raise WireError(ErrorCode.BAD_MESSAGE, f"mesh attachment has unknown flags {flags:#x}")
    need = 16 + 12 * n + (12 * n if flags & MESH_FLAG_NORMALS else 0) \
        + (8 * n if flags & MESH_FLAG_UV0 else 0) + 4 * ni
    if len(data) != need or ni % 3:
        raise WireError(ErrorCode.BAD_MESSAGE,
                        f"mesh attachment is {len(data)} bytes, expected {need} for "
                        f"{n} vertices and {ni} indices")
    off = 16
    positions = list(struct.unpack_from(f"<{3 * n}f", data, off))
    off += 12 * n
    normals = uv0 = None
    if flags & MESH_FLAG_NORMALS:
        normals = list(struct.unpack_from(f"<{3 * n}f", data, off))
        off += 12 * n
    if flags & MESH_FLAG_UV0:
        uv0 = list(struct.unpack_from(f"<{2 * n}f", data, off))
        off += 8 * n
    indices = list(struct.unpack_from(f"<{ni}I", data, off))
    if any(i >= n for i in indices):
        raise WireError(ErrorCode.BAD_MESSAGE, "mesh attachment has an index out of range")
    return {"positions": positions, "normals": normals, "uv0": uv0, "indices": indices}
