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
* `send_mode`, `refusal`, `on_batch_result`, `peer_joined`, `replay_keeps`,
  `live_refusal` -- the decisions of `send`, `verify`, `replay` and `apply` that the Unity
  package's `SyncEngine` makes too; `tests/vectors/engine_scenarios.json` holds both to the
  same scenarios.
* `match_adoptions` -- `replay`: after a crash before the first save, datablocks that were
  given fresh uuids take back the uuids the daemon already holds for them (same kind and
  name), instead of being duplicated on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Mapping
from typing import NamedTuple

# Wire words this module reads (tests/vectors/names.json): `batch_result.outcome` (§6.4) and
# the per-item refusals of a `change` that need more than ending it (§6.1).
COMMITTED, ROLLED_BACK, DROPPED = "committed", "rolled_back", "dropped"
NOT_FOUND, BLOCKED, QUARANTINED = "NOT_FOUND", "BLOCKED", "QUARANTINED"

# What an editor does with a change the daemon refused per item (`refusal`).
REFUSED_RESEND_FULL = "resend_full"  # the daemon holds no state for it: send the full state
REFUSED_KEEP = "keep"                # kept here, marked not synced, retried like a kept_local
REFUSED_END = "end"                  # ended; nothing to do (e.g. STALE: its resync follows)

# What `send` does with a captured edit of a uuid (`send_mode`).
SEND_WAIT = "wait"  # its previous change is in flight: send it once that one has ended
SEND_FULL = "full"  # the daemon does not hold what this editor holds: send the whole state
SEND_DIFF = "diff"  # send what changed since the last state sent


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

    def acknowledged(self, unanswered: Container[str]) -> frozenset[str]:
        """uuids whose change in flight the daemon has acknowledged (its request id is not
        among the `unanswered` ones): what a batch whose fences arrive now can carry."""
        return frozenset(u for u, r in self.requests.items() if r not in unanswered)

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


def send_mode(uuid: str, inflight: InFlight, not_synced: NotSynced, sent_before: bool) -> str:
    """`send`: one change per uuid in flight (§6.6); a not-synced uuid, or one never sent,
    goes as its full state (`create`, §6.4)."""
    if uuid in inflight:
        return SEND_WAIT
    if uuid in not_synced or not sent_before:
        return SEND_FULL
    return SEND_DIFF


def refusal(code: str) -> str:
    """`send`: what a per-item refusal of a change means for the editor (§6.1). Every refusal
    ends the change; `NOT_FOUND` is answered with the full state (`create`); a change refused
    by governance (`BLOCKED`, `QUARANTINED`) stays here, marked not synced with the reason,
    and is re-sent in full on the next edit, a peer joining or a quarantine release (§6.4)."""
    if code == NOT_FOUND:
        return REFUSED_RESEND_FULL
    if code in (BLOCKED, QUARANTINED):
        return REFUSED_KEEP
    return REFUSED_END


class ResultEffect(NamedTuple):
    uuids: list[str]         # this editor's uuids whose change the result ended
    recapture: list          # keys of edits that waited for it: capture them again now
    kept_local: str | None   # the reason, when this editor keeps its state (not synced)


def on_batch_result(msg: dict, received: Mapping[str, Container[str]], inflight: InFlight,
                    not_synced: NotSynced, synced: set[str],
                    result_seq: dict[str, int]) -> ResultEffect:
    """`verify` (editor side): a `batch_result` ends this editor's changes of its uuids,
    whatever the outcome (§6.4). The result of a batch this editor also received between
    fences (`received`: batch id -> `InFlight.acknowledged` when its `batch_begin` arrived)
    ends only the changes acknowledged before those fences: a change the batch carries is
    always acknowledged before the batch is forwarded, a later one is not in it. `committed` and
    `dropped` clear the not-synced marks and count as synced (first-sync progress);
    `rolled_back` with `kept_local` marks the uuids not synced with the reason (D1)."""
    uuids = [u for u in msg.get("uuids") or [] if isinstance(u, str)]
    covered = received.get(msg.get("batch_id"))
    if covered is not None:
        uuids = [u for u in uuids if u in covered]
    recapture = inflight.resolve(uuids)
    outcome = msg.get("outcome")
    kept = None
    if outcome in (COMMITTED, DROPPED):
        not_synced.synced(uuids)
        synced.update(uuids)
        rseq = msg.get("seq")
        if outcome == COMMITTED and isinstance(rseq, int) and not isinstance(rseq, bool):
            for u in uuids:
                result_seq[u] = max(rseq, result_seq.get(u, 0))
    elif outcome == ROLLED_BACK and msg.get("kept_local") is True:
        kept = str(msg.get("reason") or msg.get("error_code") or "propagation failed")
        not_synced.mark(uuids, kept)
    return ResultEffect(uuids, recapture, kept)


def replay_keeps(uuid: str, replay_seq: int, edited: bool, inflight: InFlight,
                 not_synced: NotSynced, result_seq: dict[str, int]) -> bool:
    """`replay`: a `resync` batch skips a uuid with local work not yet resolved — `edited`
    here and not sent, a change in flight, or marked not synced — and one for which it is
    older than the last committed `batch_result` this editor got (stale for it) (§6.6)."""
    return (edited or uuid in inflight or uuid in not_synced
            or replay_seq < result_seq.get(uuid, 0))


def live_refusal(uuid: str, paused: bool, batches_waiting: bool, held: bool, busy: bool,
                 inflight: InFlight, not_synced: NotSynced,
                 edited: Callable[[], bool]) -> str | None:
    """`apply` of a `live` preview (§6.3): why it is dropped (the window's batch brings the
    state), or None to apply it. The person's own edit wins here: a uuid with a change in
    flight, kept here not synced, or `edited` and not sent yet (asked last: it may read the
    scene) is not overwritten by another editor's preview."""
    if paused:
        return "paused"
    if batches_waiting:
        return "batches waiting"  # older than the preview: it must not jump ahead of them
    if not held:
        return "not held here"
    if busy:
        return "busy"
    if uuid in inflight or uuid in not_synced or edited():
        return "local edit"
    return None


def peer_joined(before: Iterable[dict], after: Iterable[dict]) -> bool:
    """A `peers` event names a session the previous one did not: not-synced work is retried."""
    old = {p.get("session_id") for p in before}
    return any(p.get("session_id") not in old for p in after)
