"""Pure-Python BLAKE3 (hash mode only, 32-byte output by default).

Blender's Python has no third-party packages, so the state hash (docs/PROTOCOL.md §6.4) and
the mesh hash (§7) need their own BLAKE3. Correctness is pinned by tests/vectors/blake3.json
(the official test-vector input pattern). For large inputs (mesh attachments) a numpy path
compresses all 1 KiB chunks side by side; numpy ships with Blender, and the scalar path is
used when it is missing.
"""

from __future__ import annotations

import struct

__all__ = ["blake3_hex", "blake3_digest"]

_IV = (
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
    0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
)
_PERM = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
_CHUNK_START = 1
_CHUNK_END = 2
_PARENT = 4
_ROOT = 8
_CHUNK_LEN = 1024
_BLOCK_LEN = 64
_M = 0xFFFFFFFF

# Message word order for each of the 7 rounds (the permutation applied 0..6 times).
_SCHEDULE: list[tuple[int, ...]] = []
_order = tuple(range(16))
for _ in range(7):
    _SCHEDULE.append(_order)
    _order = tuple(_order[p] for p in _PERM)
del _order

_NUMPY_MIN_BYTES = 16 * _CHUNK_LEN


def _compress(cv: tuple[int, ...] | list[int], m: tuple[int, ...], counter: int,
              block_len: int, flags: int) -> list[int]:
    """The BLAKE3 compression function; returns the full 16-word output state."""
    s0, s1, s2, s3, s4, s5, s6, s7 = cv
    s8, s9, s10, s11 = _IV[0], _IV[1], _IV[2], _IV[3]
    s12 = counter & _M
    s13 = (counter >> 32) & _M
    s14 = block_len
    s15 = flags
    for sched in _SCHEDULE:
        # Columns.
        mx = m[sched[0]]; my = m[sched[1]]
        s0 = (s0 + s4 + mx) & _M; s12 ^= s0; s12 = ((s12 >> 16) | (s12 << 16)) & _M
        s8 = (s8 + s12) & _M; s4 ^= s8; s4 = ((s4 >> 12) | (s4 << 20)) & _M
        s0 = (s0 + s4 + my) & _M; s12 ^= s0; s12 = ((s12 >> 8) | (s12 << 24)) & _M
        s8 = (s8 + s12) & _M; s4 ^= s8; s4 = ((s4 >> 7) | (s4 << 25)) & _M
        mx = m[sched[2]]; my = m[sched[3]]
        s1 = (s1 + s5 + mx) & _M; s13 ^= s1; s13 = ((s13 >> 16) | (s13 << 16)) & _M
        s9 = (s9 + s13) & _M; s5 ^= s9; s5 = ((s5 >> 12) | (s5 << 20)) & _M
        s1 = (s1 + s5 + my) & _M; s13 ^= s1; s13 = ((s13 >> 8) | (s13 << 24)) & _M
        s9 = (s9 + s13) & _M; s5 ^= s9; s5 = ((s5 >> 7) | (s5 << 25)) & _M
        mx = m[sched[4]]; my = m[sched[5]]
        s2 = (s2 + s6 + mx) & _M; s14 ^= s2; s14 = ((s14 >> 16) | (s14 << 16)) & _M
        s10 = (s10 + s14) & _M; s6 ^= s10; s6 = ((s6 >> 12) | (s6 << 20)) & _M
        s2 = (s2 + s6 + my) & _M; s14 ^= s2; s14 = ((s14 >> 8) | (s14 << 24)) & _M
        s10 = (s10 + s14) & _M; s6 ^= s10; s6 = ((s6 >> 7) | (s6 << 25)) & _M
        mx = m[sched[6]]; my = m[sched[7]]
        s3 = (s3 + s7 + mx) & _M; s15 ^= s3; s15 = ((s15 >> 16) | (s15 << 16)) & _M
        s11 = (s11 + s15) & _M; s7 ^= s11; s7 = ((s7 >> 12) | (s7 << 20)) & _M
        s3 = (s3 + s7 + my) & _M; s15 ^= s3; s15 = ((s15 >> 8) | (s15 << 24)) & _M
        s11 = (s11 + s15) & _M; s7 ^= s11; s7 = ((s7 >> 7) | (s7 << 25)) & _M
        # Diagonals.
        mx = m[sched[8]]; my = m[sched[9]]
        s0 = (s0 + s5 + mx) & _M; s15 ^= s0; s15 = ((s15 >> 16) | (s15 << 16)) & _M
        s10 = (s10 + s15) & _M; s5 ^= s10; s5 = ((s5 >> 12) | (s5 << 20)) & _M
        s0 = (s0 + s5 + my) & _M; s15 ^= s0; s15 = ((s15 >> 8) | (s15 << 24)) & _M
        s10 = (s10 + s15) & _M; s5 ^= s10; s5 = ((s5 >> 7) | (s5 << 25)) & _M
        mx = m[sched[10]]; my = m[sched[11]]
        s1 = (s1 + s6 + mx) & _M; s12 ^= s1; s12 = ((s12 >> 16) | (s12 << 16)) & _M
        s11 = (s11 + s12) & _M; s6 ^= s11; s6 = ((s6 >> 12) | (s6 << 20)) & _M
        s1 = (s1 + s6 + my) & _M; s12 ^= s1; s12 = ((s12 >> 8) | (s12 << 24)) & _M
        s11 = (s11 + s12) & _M; s6 ^= s11; s6 = ((s6 >> 7) | (s6 << 25)) & _M
        mx = m[sched[12]]; my = m[sched[13]]
        s2 = (s2 + s7 + mx) & _M; s13 ^= s2; s13 = ((s13 >> 16) | (s13 << 16)) & _M
        s8 = (s8 + s13) & _M; s7 ^= s8; s7 = ((s7 >> 12) | (s7 << 20)) & _M
        s2 = (s2 + s7 + my) & _M; s13 ^= s2; s13 = ((s13 >> 8) | (s13 << 24)) & _M
        s8 = (s8 + s13) & _M; s7 ^= s8; s7 = ((s7 >> 7) | (s7 << 25)) & _M
        mx = m[sched[14]]; my = m[sched[15]]
        s3 = (s3 + s4 + mx) & _M; s14 ^= s3; s14 = ((s14 >> 16) | (s14 << 16)) & _M
        s9 = (s9 + s14) & _M; s4 ^= s9; s4 = ((s4 >> 12) | (s4 << 20)) & _M
        s3 = (s3 + s4 + my) & _M; s14 ^= s3; s14 = ((s14 >> 8) | (s14 << 24)) & _M
        s9 = (s9 + s14) & _M; s4 ^= s9; s4 = ((s4 >> 7) | (s4 << 25)) & _M
    return [
        s0 ^ s8, s1 ^ s9, s2 ^ s10, s3 ^ s11, s4 ^ s12, s5 ^ s13, s6 ^ s14, s7 ^ s15,
        s8 ^ cv[0], s9 ^ cv[1], s10 ^ cv[2], s11 ^ cv[3],
        s12 ^ cv[4], s13 ^ cv[5], s14 ^ cv[6], s15 ^ cv[7],
    ]


_WORDS = struct.Struct("<16I")


def _words(block: bytes) -> tuple[int, ...]:
    if len(block) < _BLOCK_LEN:
        block = block + bytes(_BLOCK_LEN - len(block))
    return _WORDS.unpack(block)


def _chunk_cv_and_last(chunk: bytes, counter: int) -> tuple[list[int], tuple[int, ...], int, int]:
    """Compress all but the last block of a chunk.

    Returns (cv before last block, last block words, last block len, flags for last block
    without ROOT) so the caller can produce either a chaining value or the root output.
    """
    cv: list[int] | tuple[int, ...] = _IV
    nblocks = max(1, (len(chunk) + _BLOCK_LEN - 1) // _BLOCK_LEN)
    for i in range(nblocks - 1):
        flags = _CHUNK_START if i == 0 else 0
        cv = _compress(cv, _words(chunk[i * 64:(i + 1) * 64]), counter, _BLOCK_LEN, flags)[:8]
    last = chunk[(nblocks - 1) * 64:]
    flags = _CHUNK_END | (_CHUNK_START if nblocks == 1 else 0)
    return list(cv), _words(last), len(last), flags


def _chunk_cvs_scalar(data: bytes, nfull: int) -> list[list[int]]:
    """Chaining values of the first `nfull` complete chunks (none of them is the root)."""
    out = []
    for c in range(nfull):
        cv, m, blen, flags = _chunk_cv_and_last(data[c * _CHUNK_LEN:(c + 1) * _CHUNK_LEN], c)
        out.append(_compress(cv, m, c, blen, flags)[:8])
    return out


def _chunk_cvs_numpy(data: bytes, nfull: int) -> list[list[int]] | None:
    """Same as `_chunk_cvs_scalar`, computing all chunks side by side with numpy."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with Blender
        return None
    words = np.frombuffer(data[: nfull * _CHUNK_LEN], dtype="<u4").reshape(nfull, 16, 16)
    words = words.astype(np.uint32)
    counters = np.arange(nfull, dtype=np.uint64)
    clo = (counters & 0xFFFFFFFF).astype(np.uint32)
    chi = (counters >> np.uint64(32)).astype(np.uint32)
    cv = [np.full(nfull, _IV[i], dtype=np.uint32) for i in range(8)]

    def rotr(x, n):
        return (x >> np.uint32(n)) | (x << np.uint32(32 - n))

    with np.errstate(over="ignore"):
        for b in range(16):
            flags = (_CHUNK_START if b == 0 else 0) | (_CHUNK_END if b == 15 else 0)
            m = [words[:, b, i] for i in range(16)]
            s = list(cv) + [
                np.full(nfull, _IV[0], dtype=np.uint32), np.full(nfull, _IV[1], dtype=np.uint32),
                np.full(nfull, _IV[2], dtype=np.uint32), np.full(nfull, _IV[3], dtype=np.uint32),
                clo.copy(), chi.copy(),
                np.full(nfull, _BLOCK_LEN, dtype=np.uint32), np.full(nfull, flags, dtype=np.uint32),
            ]

            def g(a, b_, c, d, mx, my):
                s[a] = s[a] + s[b_] + mx
                s[d] = rotr(s[d] ^ s[a], 16)
                s[c] = s[c] + s[d]
                s[b_] = rotr(s[b_] ^ s[c], 12)
                s[a] = s[a] + s[b_] + my
                s[d] = rotr(s[d] ^ s[a], 8)
                s[c] = s[c] + s[d]
                s[b_] = rotr(s[b_] ^ s[c], 7)

            for sched in _SCHEDULE:
                g(0, 4, 8, 12, m[sched[0]], m[sched[1]])
                g(1, 5, 9, 13, m[sched[2]], m[sched[3]])
                g(2, 6, 10, 14, m[sched[4]], m[sched[5]])
                g(3, 7, 11, 15, m[sched[6]], m[sched[7]])
                g(0, 5, 10, 15, m[sched[8]], m[sched[9]])
                g(1, 6, 11, 12, m[sched[10]], m[sched[11]])
                g(2, 7, 8, 13, m[sched[12]], m[sched[13]])
                g(3, 4, 9, 14, m[sched[14]], m[sched[15]])
            cv = [s[i] ^ s[i + 8] for i in range(8)]
    stacked = np.stack(cv, axis=1)
    return [[int(x) for x in row] for row in stacked]


def _parent_words(left: list[int], right: list[int]) -> tuple[int, ...]:
    return tuple(left) + tuple(right)


def blake3_digest(data: bytes | bytearray | memoryview, length: int = 32) -> bytes:
    """BLAKE3 hash of `data` (unkeyed), `length` output bytes."""
    data = bytes(data)
    n = len(data)
    nchunks = max(1, (n + _CHUNK_LEN - 1) // _CHUNK_LEN)
    nfull = nchunks - 1  # every chunk but the last one is complete
    cvs: list[list[int]] | None = None
    if nfull > 0 and n >= _NUMPY_MIN_BYTES:
        cvs = _chunk_cvs_numpy(data, nfull)
    if cvs is None:
        cvs = _chunk_cvs_scalar(data, nfull)

    # Merge chunk chaining values exactly as the incremental hasher's cv stack does.
    stack: list[list[int]] = []
    for i, cv in enumerate(cvs):
        total = i + 1
        while total & 1 == 0:
            cv = _compress(_IV, _parent_words(stack.pop(), cv), 0, _BLOCK_LEN, _PARENT)[:8]
            total >>= 1
        stack.append(cv)

    last_cv, m, blen, flags = _chunk_cv_and_last(data[nfull * _CHUNK_LEN:], nfull)
    out_cv: list[int] | tuple[int, ...] = last_cv
    out_m, out_counter, out_len, out_flags = m, nfull, blen, flags
    while stack:
        child = _compress(out_cv, out_m, out_counter, out_len, out_flags)[:8]
        out_cv, out_m, out_counter, out_len, out_flags = (
            _IV, _parent_words(stack.pop(), child), 0, _BLOCK_LEN, _PARENT)

    out = bytearray()
    block = 0
    while len(out) < length:
        words = _compress(out_cv, out_m, block, out_len, out_flags | _ROOT)
        out += struct.pack("<16I", *words)
        block += 1
    return bytes(out[:length])


def blake3_hex(data: bytes | bytearray | memoryview) -> str:
    """Lowercase hex of the 32-byte BLAKE3 hash."""
    return blake3_digest(data).hex()
