"""The addon's sync bookkeeping, free of bpy (plain CPython tests drive it directly).

The main-thread pump (`pump.py`) is the bpy glue: it reads and writes datablocks and asks
these objects what to send, what to keep and when to stop. Each class keeps one rule of
docs/PROTOCOL.md §6:

* `InFlight` -- `send`: at most one change per uuid is in flight; a newer local edit of
  that uuid waits for the `batch_result` (or refusal) of the previous one, so a result can
  never resolve work it did not cover (§6.6, "local work").
* `NotSynced` -- D1 of §6.4: uuids whose propagation failed but whose local state is kept
  (`kept_local`), with the reason; retried on a new edit, a parent's arrival, a peer
  (re)joining or a quarantine release.
* `ErrorLoop` -- §6.7 editor state: the same failure repeated `threshold` times within
  `window_s` pauses the addon (it tells the daemon with `editor_state`).
* `match_adoptions` -- `replay`: after a crash before the first save, datablocks that were
  given fresh uuids take back the uuids the daemon already holds for them (same kind and
  name), instead of being duplicated on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class InFlight:
    """uuid -> request id of its change that has no `batch_result` or refusal yet."""

    def __init__(self) -> None:
        self.requests: dict[str, str] = {}
        self.waiting: dict[str, object] = {}  # uuid -> editor key whose capture waits

    def __contains__(self, uuid: str) -> bool:
        return uuid in self.requests

    def __len__(self) -> int:
        return len(self.requests)

    def sent(self, request_id: str, uuids: Iterable[str]) -> None:
        for u in uuids:
            self.requests[u] = request_id

    def wait(self, uuid: str, key: object) -> None:
        """A newer edit of `uuid` exists: capture it again once the uuid is resolved."""
        self.waiting[uuid] = key

    def resolve(self, uuids: Iterable[str]) -> list:
        """The daemon ended these uuids' changes: returns the keys to capture again."""
        keys = []
        for u in uuids:
            self.requests.pop(u, None)
            k = self.waiting.pop(u, None)
            if k is not None:
                keys.append(k)
        return keys

    def refused(self, request_id: str, uuids: Iterable[str] | None = None) -> list:
        """A refusal of a whole request (uuids None) or of some of its items."""
        if uuids is None:
            uuids = [u for u, r in self.requests.items() if r == request_id]
        return self.resolve([u for u in uuids if self.requests.get(u) == request_id])

    def reset(self) -> list:
        """The connection changed: nothing old will be answered (everything is re-sent)."""
        keys = list(self.waiting.values())
        self.requests.clear()
        self.waiting.clear()
        return keys


class NotSynced:
    """uuids kept locally after a failed propagation (`kept_local`), with the reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def __contains__(self, uuid: str) -> bool:
        return uuid in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def mark(self, uuids: Iterable[str], reason: str) -> None:
        for u in uuids:
            self.reasons[u] = reason

    def synced(self, uuids: Iterable[str]) -> None:
        for u in uuids:
            self.reasons.pop(u, None)

    def waiting_for(self, parents: set[str], parent_of: Callable[[str], str | None]) -> list[str]:
        """Not-synced uuids whose parent is one of `parents` (it just arrived)."""
        return [u for u in self.reasons if parent_of(u) in parents]

    def as_list(self) -> list[dict]:
        return [{"uuid": u, "reason": r} for u, r in sorted(self.reasons.items())]


class ErrorLoop:
    """Counts identical failures; `record` returns True once they form a loop."""

    def __init__(self, threshold: int = 5, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.clock = clock
        self.signature: str | None = None
        self.times: list[float] = []

    def record(self, signature: str) -> bool:
        now = self.clock()
        if signature != self.signature:
            self.signature = signature
            self.times = []
        self.times = [t for t in self.times if now - t <= self.window_s] + [now]
        return len(self.times) >= self.threshold

    def reset(self) -> None:
        self.signature = None
        self.times = []


def match_adoptions(incoming: Iterable[tuple[str, str, str]],
                    fresh: dict[tuple[str, str], str], known: set[str]) -> dict[str, str]:
    """Pair incoming replayed objects with local datablocks that got fresh uuids.

    `incoming`: (uuid, kind, name) of the replay's `create`s; `fresh`: (kind, name) -> the
    fresh local uuid of a datablock that carried no uuid when its file was opened; `known`:
    uuids bound locally. Returns fresh uuid -> the daemon's uuid, only for unambiguous pairs
    (one incoming and one local datablock of that kind and name, incoming uuid unknown here).
    """
    by_name: dict[tuple[str, str], list[str]] = {}
    for uuid, kind, name in incoming:
        if uuid not in known:
            by_name.setdefault((kind, name), []).append(uuid)
    out = {}
    for key, uuids in by_name.items():
        local = fresh.get(key)
        if local is not None and len(uuids) == 1:
            out[local] = uuids[0]
    return out
