"""The addon's sync bookkeeping, free of bpy (plain CPython tests drive it directly).

`SyncEngine` is the twin of the Unity core's `SyncEngine`: it owns the protocol-level state
of one editor session (the changes in flight, the not-synced marks, the requests awaiting an
answer, `last_seq`, peers, conflicts) and decides what each message does to it. Everything
that touches Blender goes through a `SceneAdapter` (the twin of `ISceneAdapter`), which the
main-thread pump (`pump.py`, the bpy glue) implements over its registry and capture marks.
`tests/vectors/engine_scenarios.json` holds both engines to the same scenarios. The pieces
it is made of each keep one rule of docs/PROTOCOL.md §6:

* `InFlight` -- `send`: one change per uuid in flight, except fast-path ones: while only
  `transform`/`rename`/`visibility` changes of a uuid are in flight, the next one goes at
  once (a drag reaches the other editor continuously), and each `batch_result` ends those up
  to the request its `through` names; any other newer edit waits for the `batch_result` (or
  refusal) of the previous change, so a result never resolves work it did not cover (§6.6).
* `NotSynced` -- D1 of §6.4: uuids whose propagation failed but whose local state is kept
  (`kept_local`), with the reason; retried on a new edit, a parent's arrival, a peer
  (re)joining or a quarantine release.
* `ErrorLoop` -- §6.7 editor state: the same failure repeated `threshold` times within
  `window_s` pauses the addon (it tells the daemon with `editor_state`).
* `send_mode`, `refusal`, `on_batch_result`, `peer_joined`, `replay_keeps`,
  `live_refusal` -- the decisions of `send`, `verify`, `replay` and `apply`.
* `match_adoptions` -- `replay`: after a crash before the first save, datablocks that were
  given fresh uuids take back the uuids the daemon already holds for them (same kind and
  name), instead of being duplicated on both sides.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Container, Iterable, Mapping
from typing import NamedTuple, Protocol

# Wire words this module reads (tests/vectors/names.json): `batch_result.outcome` (§6.4) and
# the per-item refusals of a `change` that need more than ending it (§6.1).
COMMITTED, ROLLED_BACK, DROPPED = "committed", "rolled_back", "dropped"
NOT_FOUND, BLOCKED, QUARANTINED, STALE = "NOT_FOUND", "BLOCKED", "QUARANTINED", "STALE"
# Refusals of what the editor holds that the daemon cannot take (a reparent that would close
# a parent cycle through the committed state, a value out of range, a mesh over the limit):
# the person's edit stays here, marked not synced (§6.1).
INVALID_FIELD, NON_FINITE, TOO_LARGE = "INVALID_FIELD", "NON_FINITE", "TOO_LARGE"
# An item the daemon refused (`ack.results[].status`), and the `error` of a daemon that does
# not take `change` at all (§4).
ITEM_ERROR, UNKNOWN_TYPE = "error", "UNKNOWN_TYPE"
# Whole-request refusals that say "not run, try again later" (§2 rate limits, §4).
RETRY_LATER = ("RATE_LIMITED", "STORAGE_FAILED")
# The daemon is in safe mode (§6.7): sync is read-only until a person clears it. What this
# editor holds stays here, marked not synced with this code, and goes once safe mode ends.
SAFE_MODE = "SAFE_MODE"
# A rollback because a participant did not answer in time (§6.4): it may only have been slow.
VERIFY_TIMEOUT = "VERIFY_TIMEOUT"
# A person's edit kept after a VERIFY_TIMEOUT is sent again by itself after these pauses, one
# per timeout in a row, then only on the usual triggers (PROTOCOL §6.4).
TIMEOUT_RETRY_S = (10.0, 30.0, 60.0)
# A rollback because a participant's state differed (§6.4): the uuids it names (`mismatched`)
# caused it; a person's edit of any other uuid of the batch was rolled back only because the
# batch is one transaction, and is sent again by itself after these pauses, one per such
# rollback in a row (counted with the timeouts in `retries_in_a_row`), then only on the usual triggers.
VERIFY_MISMATCH = "VERIFY_MISMATCH"
COLLATERAL_RETRY_S = (1.0, 10.0, 30.0)

# The pending-request kinds this engine reads (`SyncEngine.sent`): a request's kind is its
# message type.
CHANGE, RESYNC = "change", "resync"
# Batches received between fences remembered for their `batch_result` (oldest forgotten).
MAX_RECEIVED_BATCHES = 4096

# What an editor does with a change the daemon refused per item (`refusal`).
REFUSED_RESEND_FULL = "resend_full"  # the daemon holds no state for it: send the full state
REFUSED_KEEP = "keep"                # kept here, marked not synced, retried like a kept_local
REFUSED_END = "end"                  # ended; nothing to do (e.g. STALE: its resync follows)

# What `send` does with a captured edit of a uuid (`send_mode`).
SEND_WAIT = "wait"  # its previous change is in flight: send it once that one has ended
SEND_FULL = "full"  # the daemon does not hold what this editor holds: send the whole state
SEND_DIFF = "diff"  # send what changed since the last state sent


class InFlight:
    """uuid -> request ids of its changes that have no `batch_result` or refusal yet, in the
    order sent (more than one only while all of them are fast-path changes)."""

    def __init__(self) -> None:
        self.requests: dict[str, list[str]] = {}
        self.slow: set[str] = set()  # uuids with a change in flight that is not fast-path
        self.waiting: dict[str, object] = {}  # uuid -> editor key whose capture waits

    def __contains__(self, uuid: str) -> bool:
        return uuid in self.requests

    def __len__(self) -> int:
        return len(self.requests)

    def sent(self, request_id: str, uuids: Iterable[str], slow: Container[str] = ()) -> None:
        """A change naming `uuids` went out; `slow`: those whose ops are not all fast-path."""
        for u in uuids:
            reqs = self.requests.setdefault(u, [])
            if request_id not in reqs:  # a request with several ops of one uuid counts once
                reqs.append(request_id)
            if u in slow:
                self.slow.add(u)

    def fast_only(self, uuid: str) -> bool:
        """Only fast-path changes of `uuid` are in flight (at least one)."""
        return uuid in self.requests and uuid not in self.slow

    def wait(self, uuid: str, key: object) -> None:
        """A newer edit of `uuid` exists: capture it again once the uuid is resolved."""
        self.waiting[uuid] = key

    def _end(self, u: str, through: str | None) -> bool:
        """End `u`'s changes up to the request `through` (all of them when None). True when
        none is left in flight."""
        reqs = self.requests.get(u)
        if reqs is not None:
            if through is None:
                reqs.clear()
            elif through in reqs:
                del reqs[:reqs.index(through) + 1]
            # else: that request has ended already (e.g. a `dropped` result came first); the
            # ones left were sent after it and are not ended by this result.
            if reqs:
                return False
        self.requests.pop(u, None)
        self.slow.discard(u)
        return True

    def resolve(self, uuids: Iterable[str], through: Mapping[str, str] | None = None) -> list:
        """The daemon ended these uuids' changes — with `through` (`batch_result.through`,
        §6.4), only those it names, each up to the request it names (a uuid it does not name
        is not ended: e.g. its change waits at the daemon for a later batch); without, all —
        and returns the keys to capture again (for the uuids with nothing left in flight)."""
        keys = []
        for u in uuids:
            last = None
            if through is not None:
                last = through.get(u)
                if not isinstance(last, str):
                    continue  # not one of this editor's changes in this result (§6.4)
            if not self._end(u, last):
                continue
            k = self.waiting.pop(u, None)
            if k is not None:
                keys.append(k)
        return keys

    def refused(self, request_id: str, uuids: Iterable[str] | None = None) -> list:
        """A refusal of a whole request (uuids None) or of some of its items."""
        if uuids is None:
            uuids = [u for u, r in self.requests.items() if request_id in r]
        keys = []
        for u in uuids:
            reqs = self.requests.get(u)
            if reqs is None or request_id not in reqs:
                continue
            reqs.remove(request_id)
            keys.extend(self.resolve([u]) if not reqs else ())
        return keys

    def acknowledged(self, unanswered: Container[str]) -> frozenset[str]:
        """uuids with a change in flight the daemon has acknowledged (its request id is not
        among the `unanswered` ones): what a batch whose fences arrive now can carry."""
        return frozenset(u for u, rs in self.requests.items() if any(r not in unanswered for r in rs))

    def reset(self) -> list:
        """The connection changed: nothing old will be answered (everything is re-sent)."""
        keys = list(self.waiting.values())
        self.requests.clear()
        self.slow.clear()
        self.waiting.clear()
        return keys


_NOT_SYNCED_VERSIONS = itertools.count()


class NotSynced:
    """uuids kept locally after a failed propagation (`kept_local`), with the reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        # Moved by every `mark` and `synced` (what `held` reads), unique across instances: a
        # reader that kept one never mistakes a new list (after a reset) for the one it read.
        self.version = next(_NOT_SYNCED_VERSIONS)
        # Of those, the ones kept after an `INVALID_FIELD` refusal (e.g. a reparent that would
        # close a parent cycle with the daemon's committed parents): sent again also when
        # those parents may have changed (`SyncEngine.parents_changed`).
        self.refused_invalid: set[str] = set()

    def __contains__(self, uuid: str) -> bool:
        return uuid in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def mark(self, uuids: Iterable[str], reason: str, refused_invalid: bool = False) -> None:
        self.version = next(_NOT_SYNCED_VERSIONS)
        for u in uuids:
            self.reasons[u] = reason
            if refused_invalid:
                self.refused_invalid.add(u)
            else:
                self.refused_invalid.discard(u)

    def synced(self, uuids: Iterable[str]) -> None:
        self.version = next(_NOT_SYNCED_VERSIONS)
        for u in uuids:
            self.reasons.pop(u, None)
            self.refused_invalid.discard(u)

    def waiting_for(self, parents: set[str], parent_of: Callable[[str], str | None]) -> list[str]:
        """Not-synced uuids whose parent is one of `parents` (it just arrived, or was deleted)."""
        return [u for u in self.reasons if parent_of(u) in parents]

    def held(self) -> list[str]:
        """The uuids marked as held in safe mode (`SAFE_MODE: …`, `SyncEngine.mark_held` and
        a change refused `SAFE_MODE`), sorted: what `editor_state.held` says (§6.7)."""
        prefix = SAFE_MODE + ":"
        return sorted(u for u, r in self.reasons.items() if r.startswith(prefix))

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


def send_mode(uuid: str, inflight: InFlight, not_synced: NotSynced, sent_before: bool,
              fast: bool = False) -> str:
    """`send`: one change per uuid in flight (§6.6) — except a `fast` edit (only fast-path
    ops) while only fast-path changes of the uuid are in flight: it goes at once, so a drag
    reaches the other editor continuously. A not-synced uuid, or one never sent, goes as its
    full state (`create`, §6.4)."""
    if uuid in inflight:
        if fast and inflight.fast_only(uuid) and uuid not in not_synced:
            return SEND_DIFF
        return SEND_WAIT
    if uuid in not_synced or not sent_before:
        return SEND_FULL
    return SEND_DIFF


def refusal(code: str) -> str:
    """`send`: what a per-item refusal of a change means for the editor (§6.1). Every refusal
    ends the change; `NOT_FOUND` is answered with the full state (`create`); a change refused
    by governance (`BLOCKED`, `QUARANTINED`) or one the daemon cannot take as it is
    (`INVALID_FIELD`, `NON_FINITE`, `TOO_LARGE`: e.g. a reparent that would close a parent
    cycle) stays here, marked not synced with the reason, and is re-sent in full on the next
    edit, a peer joining or a quarantine release (§6.4); `STALE` ends it (the current state
    follows)."""
    if code == NOT_FOUND:
        return REFUSED_RESEND_FULL
    if code in (BLOCKED, QUARANTINED, INVALID_FIELD, NON_FINITE, TOO_LARGE):
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
    always acknowledged before the batch is forwarded, a later one is not in it. With
    `through` (always sent by this daemon), only the uuids it names are this editor's: a
    change waiting at the daemon for a later batch (bounded batches, §6.2) is not ended.
    `committed` and `dropped` clear the not-synced marks and count as synced (first-sync
    progress); `rolled_back` with `kept_local` marks this editor's uuids not synced with the
    reason (D1)."""
    uuids = [u for u in msg.get("uuids") or [] if isinstance(u, str)]
    covered = received.get(msg.get("batch_id"))
    if covered is not None:
        uuids = [u for u in uuids if u in covered]
    through = msg.get("through")
    through = through if isinstance(through, dict) else None
    recapture = inflight.resolve(uuids, through)
    everyone = uuids
    if through is not None:
        # This editor's changes in the result: the uuids `through` names (§6.4).
        uuids = [u for u in uuids if isinstance(through.get(u), str)]
    outcome = msg.get("outcome")
    kept = None
    if outcome in (COMMITTED, DROPPED):
        not_synced.synced(everyone)
        synced.update(everyone)
        rseq = msg.get("seq")
        if outcome == COMMITTED and isinstance(rseq, int) and not isinstance(rseq, bool):
            for u in everyone:
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
    scene) is not overwritten by another editor's preview. `batches_waiting`: a batch is
    being received, waits, or is being applied over several ticks — older than the preview."""
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


def order_creates_parent_first(ops: list, parent_of: Callable[[str], str | None]) -> list:
    """`send`: `ops` ((change, attachment) pairs) with its `create`s reordered among the slots
    they hold so that an ancestor created in the list comes before its descendants — also
    through an ancestor the list does not carry (`parent_of`: its last known parent);
    everything else keeps its place (the Unity core's `OrderCreatesParentFirst`). Kept work
    sent again child first was judged against its ancestor's committed parent, not the one
    sent right after it, and closed a loop: refused `INVALID_FIELD` (PROTOCOL.md §6.1)."""
    slots = [i for i, (c, _) in enumerate(ops) if c.get("op") == "create"]
    if len(slots) < 2:
        return ops
    created = {ops[i][0].get("uuid"): i for i in slots}
    bound = len(created) + 1024  # a loop, or a chain longer than that, ends the walk

    def nearest(p: str | None) -> str | None:
        for _ in range(bound):
            if p is None or p in created:
                return p
            p = parent_of(p)
        return None

    depth: dict[str, int] = {}
    for i in slots:
        u = ops[i][0].get("uuid")
        chain = []
        while u is not None and u not in depth and u not in chain and len(chain) < bound:
            chain.append(u)
            u = nearest(ops[created[u]][0].get("parent"))
        d = depth.get(u, -1) if u is not None else -1
        for x in reversed(chain):
            d += 1
            depth[x] = d
    order = sorted(slots, key=lambda i: depth.get(ops[i][0].get("uuid"), 0))
    out = list(ops)
    for slot, i in zip(slots, order):
        out[slot] = ops[i]
    return out


def peer_joined(before: Iterable[dict], after: Iterable[dict]) -> bool:
    """A `peers` event names a session the previous one did not: not-synced work is retried."""
    old = {p.get("session_id") for p in before}
    return any(p.get("session_id") not in old for p in after)


class SceneAdapter(Protocol):
    """What `SyncEngine` needs from the editor's scene (the twin of the Unity core's
    `ISceneAdapter`). The pump implements it over its registry and capture marks; the
    plain-CPython tests over a scene of named objects."""

    def alive(self, uuid: str) -> bool:
        """The scene holds `uuid` (bound here, not deleted)."""
        ...

    def capture(self, keys: Iterable) -> None:
        """`capture` these editor keys again (edits that waited for a change to end)."""
        ...

    def forget_sent(self, uuid: str) -> None:
        """The daemon may not hold what was last sent of `uuid`: its next `capture` sends it
        in full, changed or not (what was sent stays the base a person's edits are told
        from)."""
        ...

    def mark_for_capture(self, uuid: str, geometry: bool = False, quiet: bool = False) -> None:
        """Mark `uuid` for `capture` (its geometry too); `quiet`: not a person's edit."""
        ...


class Refused(NamedTuple):
    """An item of a `change` the daemon refused (`ack`), for the editor to report."""
    uuid: object   # as the daemon named it
    code: str
    message: object


class SyncEngine:
    """One editor session's sync bookkeeping (the twin of the Unity core's `SyncEngine`): the
    changes in flight, the not-synced marks, what the daemon holds as synced, the requests
    awaiting an answer, the replay position, peers and conflicts; and what each answer of
    the daemon does to them. It decides; the scene (`SceneAdapter`) captures, and the pump
    moves the messages, slices big ones over ticks, and reports."""

    def __init__(self, scene: SceneAdapter, last_seq: int = 0) -> None:
        self.scene = scene
        # Last daemon seq this client applied (hello.last_seq), for this file's project.
        self.last_seq = last_seq
        self.daemon_seq = 0    # highest daemon seq seen (welcome/ack/pong)
        # Requests sent on this connection with no answer yet: request id -> (what, ctx); a
        # `change`'s ctx is its uuids. A change counts as acknowledged once it is not here.
        self.pending: dict[str, tuple[str, object]] = {}
        self.changes_supported = True
        # uuids of changes sent with no `batch_result` yet: local work a replay must not undo
        # (PROTOCOL.md §6.6); at most one change per uuid is in flight.
        self.inflight = InFlight()
        # Kept locally after a failed propagation (D1, §6.4): uuid -> reason.
        self.not_synced = NotSynced()
        # uuids the daemon holds as synced (committed / dropped / applied): first-sync
        # progress (§ UI).
        self.synced: set[str] = set()
        # uuid -> seq of the last committed batch_result naming it: a replay older than
        # that is stale for the uuid and is not applied to it.
        self.result_seq: dict[str, int] = {}
        # Batches received between fences: batch id -> the uuids whose change the daemon had
        # acknowledged when its batch_begin arrived (all its result can end, §6.4).
        self.received_batches: collections.OrderedDict[str, frozenset] = \
            collections.OrderedDict()
        # Batches applied here that create, reparent or delete, until their `batch_result`
        # (`batch_changed_parents`).
        self.structural_batches: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.peers: list[dict] = []
        self.other_projects: list[dict] = []
        self.conflicts: collections.deque = collections.deque(maxlen=100)
        # Peers that joined so far (`peers` naming a new session), and the count when each
        # uuid's last change was sent: a change kept after a rollback is re-sent at once when
        # a peer joined after it was sent — that peer never saw it, and its join came before
        # the result (§6.4).
        self.peer_joins = 0
        self.sent_at_joins: dict[str, int] = {}
        # Kept after a VERIFY_TIMEOUT, or after a VERIFY_MISMATCH that other uuids caused: uuid ->
        # such rollbacks in a row, and when it goes again by itself.
        self.retries_in_a_row: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        # Kept uuids whose person edited them again before the kept result came: that later
        # change, still on its way then, carries only its own parts. Sent again in full once
        # it has its result (`on_batch_result`).
        self.edited_again: set[str] = set()

    # ------------------------------------------------------------ connection and file
    def seen_seq(self, seq) -> None:
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > self.daemon_seq:
            self.daemon_seq = seq

    def connected(self, seq) -> None:
        """A new connection (`welcome` with the daemon's `seq`): nothing sent on the last
        one will be answered; the edits that waited for it are captured again."""
        self.seen_seq(seq)
        self.changes_supported = True
        self.pending.clear()
        self.scene.capture(self.inflight.reset())

    def disconnected(self) -> None:
        self.pending.clear()

    def file_loaded(self, last_seq: int) -> None:
        """Another file: its own replay position (§6.6), nothing of the last one's work."""
        self.last_seq = last_seq
        self.inflight.reset()  # its waiting edits were the last file's
        self.not_synced = NotSynced()
        self.synced.clear()
        self.result_seq.clear()
        self.sent_at_joins.clear()
        self.retries_in_a_row.clear()
        self.retry_at.clear()
        self.edited_again.clear()

    # ----------------------------------------------------------------------- send
    def sent(self, request_id: str, what: str, ctx, slow: Container[str] = ()) -> None:
        """A request went out, awaiting its answer; a `change`'s uuids (`ctx`) are in
        flight until its `batch_result` or refusal (`send`, §6.6); `slow`: those of its uuids
        whose ops are not all fast-path."""
        self.pending[request_id] = (what, ctx)
        if what == CHANGE:
            self.inflight.sent(request_id, ctx, slow)
            for u in ctx:
                self.sent_at_joins[u] = self.peer_joins

    def answered(self, request_id) -> tuple[str, object] | None:
        """The request an `ack` or `error` answers, no longer pending (None: unknown)."""
        return self.pending.pop(request_id, None) if isinstance(request_id, str) else None

    def send_mode(self, uuid: str, key, sent_before: bool, fast: bool = False) -> str:
        """`capture` found an edit of `uuid` (editor key `key`; `fast`: only fast-path ops):
        send it in full, as what changed, or not yet (`send_mode`); a waiting edit is
        captured again once the change in flight has ended."""
        mode = send_mode(uuid, self.inflight, self.not_synced, sent_before, fast)
        if mode == SEND_WAIT:
            # One change per uuid in flight: this edit goes once the last one is resolved,
            # so its result cannot be mistaken for this one's (§6.6).
            self.inflight.wait(uuid, key)
        return mode

    def on_change_ack(self, request_id: str, results: list,
                      mesh_named: Container[str] = (), automation: bool = False) -> list[Refused]:
        """`send`: the `ack` of a `change`; returns the items it refused (§6.1).
        `mesh_named`: uuids sent naming their geometry without it — their `INVALID_FIELD`
        says the daemon no longer holds it, and the caller sends them again with it.
        `automation`: the change was an agent's tool call's (sent with `automation`)."""
        refused = []
        for r in results:
            if isinstance(r, dict) and r.get("status") == ITEM_ERROR:
                refused.append(self._change_rejected(r, request_id, mesh_named, automation))
        return refused

    def _change_rejected(self, r: dict, request_id: str, mesh_named: Container[str] = (),
                         automation: bool = False) -> Refused:
        uuid, code = r.get("uuid"), str(r.get("error_code"))
        # Refused: nothing of it is pending any more (a STALE refusal is followed by the
        # current state, which must now be applied, not guarded against).
        if isinstance(uuid, str):
            self.scene.capture(self.inflight.refused(request_id, [uuid]))
        alive = isinstance(uuid, str) and self.scene.alive(uuid)
        action = REFUSED_END if code == INVALID_FIELD and uuid in mesh_named else refusal(code)
        # Automation's change the daemon cannot take as it is (e.g. a reparent read as a
        # parent loop) is not kept: the state that stands follows and undoes it here, as
        # automation's rolled-back changes are undone everywhere (§6.1, §6.4) — unless this
        # editor keeps a person's edit of the uuid (not synced): that stays, and the state
        # that follows is not applied over it.
        reverted = automation and code == INVALID_FIELD and action == REFUSED_KEEP \
            and uuid not in self.not_synced
        if reverted:
            action = REFUSED_END
        if code == STALE and uuid in self.edited_again:
            # A change sent before the kept result came carried no kept edit: its refusal ends
            # no mark (§6.4). Unmarked, the state that follows was applied over the kept rename.
            self.kept_edit_again_once_ended([uuid])
        elif (code == STALE or reverted) and isinstance(uuid, str):
            # A conflict another editor's change won: the current state that follows replaces
            # the edit, also one kept here as not synced and sent again (§6.4).
            self.not_synced.synced([uuid])
        if alive and action == REFUSED_KEEP:
            # Refused local work stays here, marked, and is re-sent when the block is
            # lifted (a peer joins, a quarantine is released, the person edits again).
            self.not_synced.mark([uuid], f"{code}: {r.get('message')}",
                                 refused_invalid=code == INVALID_FIELD)
        if alive and action == REFUSED_RESEND_FULL:
            # The daemon has no state for it (e.g. its data was reset): send a create.
            self.scene.forget_sent(uuid)
            self.scene.mark_for_capture(uuid, geometry=True)
        return Refused(uuid, code, r.get("message"))

    def on_change_error(self, request_id: str, code: str, message: str = "") -> bool:
        """`send`: an `error` answering a `change` refuses all of it: its changes end and
        the edits that waited are captured again. `UNKNOWN_TYPE`: the daemon does not take
        `change`; capture goes on, sending is off for this connection. `RATE_LIMITED`,
        `STORAGE_FAILED` (not run; retry later, §2, §4): what it carried is captured again in
        full, to go after a pause — True. `SAFE_MODE` (§6.7): the same, and what it carried
        is marked not synced with the daemon's message until a commit clears it — it goes
        once safe mode ends (the pump sends nothing before)."""
        carried = [u for u, reqs in self.inflight.requests.items() if request_id in reqs]
        self.scene.capture(self.inflight.refused(request_id))
        if code == UNKNOWN_TYPE:
            self.changes_supported = False
        if code not in RETRY_LATER and code != SAFE_MODE:
            return False
        alive = [u for u in carried if self.scene.alive(u)]
        if code == SAFE_MODE:
            self.not_synced.mark(alive, f"{SAFE_MODE}: {message}")
        for u in alive:
            self.scene.forget_sent(u)
            self.scene.mark_for_capture(u, geometry=True)
        return True

    def mark_held(self, uuids: Iterable[str], reason: str) -> None:
        """`send`: edits made while the daemon is in safe mode wait here (§6.7): marked not
        synced with why (`SAFE_MODE: <reason>`), and captured again to go in full once it
        ends, like every kept edit (§6.4); a commit clears the mark."""
        new = [u for u in uuids if u not in self.not_synced]
        self.not_synced.mark(new, f"{SAFE_MODE}: {reason}")
        for u in new:
            self.scene.forget_sent(u)
            self.scene.mark_for_capture(u, quiet=True)

    # --------------------------------------------------------------------- verify
    def batch_begun(self, batch_id) -> None:
        """A batch arrives between fences (`batch_begin`): its result can end only the
        changes the daemon has acknowledged by now (§6.4, `on_batch_result`)."""
        self.received_batches[str(batch_id)] = self.inflight.acknowledged(self.pending)
        while len(self.received_batches) > MAX_RECEIVED_BATCHES:
            self.received_batches.popitem(last=False)

    def on_batch_result(self, msg: dict) -> ResultEffect:
        """`verify`: a `batch_result` (or a chunk of its uuids) ends this editor's changes of
        them (`on_batch_result`); the edits that waited are captured again. `last_seq`
        moves once the whole result is handled (`result_done`)."""
        # A kept uuid edited again before its kept result came: a commit or a drop of that later
        # change (sent before the mark) ends no mark — the kept edit is not in it (§6.4).
        kept_reasons = {u: self.not_synced.reasons[u] for u in self.edited_again
                        if u in self.not_synced}
        effect = on_batch_result(msg, self.received_batches, self.inflight, self.not_synced,
                                 self.synced, self.result_seq)
        self.scene.capture(effect.recapture)
        if effect.kept_local is not None:
            self.edited_again.update(u for u in effect.uuids if u in self.inflight)
        for u in effect.uuids:
            if u in kept_reasons and u not in self.not_synced and u not in self.inflight:
                self.not_synced.mark([u], kept_reasons[u])
        self.kept_edit_again_once_ended(effect.uuids)
        if effect.kept_local is not None:
            self.retry_not_synced([u for u in effect.uuids
                                   if self.sent_at_joins.get(u, self.peer_joins) < self.peer_joins])
            if msg.get("error_code") == VERIFY_TIMEOUT:
                self._retry_later(effect.uuids, time.monotonic(), TIMEOUT_RETRY_S)
            elif msg.get("error_code") == VERIFY_MISMATCH and isinstance(msg.get("mismatched"), list):
                caused = set(msg["mismatched"])
                self._retry_later([u for u in effect.uuids if u not in caused], time.monotonic(),
                                  COLLATERAL_RETRY_S)
        elif msg.get("outcome") == COMMITTED:
            for u in effect.uuids:
                self.retries_in_a_row.pop(u, None)
                self.retry_at.pop(u, None)
            if effect.uuids or str(msg.get("batch_id")) in self.structural_batches:
                self.parents_changed()
        self.structural_batches.pop(str(msg.get("batch_id")), None)
        return effect

    def batch_changed_parents(self, batch_id) -> None:
        """A batch with a `create`, `reparent` or `delete` was applied here: what was
        refused as a loop goes again now (`parents_changed`), and once more when the batch
        commits — the daemon reads a change against its committed parents, and a batch's
        are committed only by its `batch_result` (PROTOCOL.md §6.1)."""
        self.parents_changed()
        self.structural_batches[str(batch_id)] = None
        while len(self.structural_batches) > MAX_RECEIVED_BATCHES:
            self.structural_batches.popitem(last=False)  # a resync's: no result follows

    def parents_changed(self) -> None:
        """A change of this editor committed, or a batch with a `create`, `reparent` or
        `delete` was applied: the parents the daemon reads a change against may differ now.
        What it refused `INVALID_FIELD` and this editor keeps (e.g. a reparent read as a loop
        through an object whose own kept reparent the daemon did not have yet) goes again, in
        full (PROTOCOL.md §6.4); refused again, it stays kept until the next such change."""
        if self.not_synced.refused_invalid:
            self.retry_not_synced(sorted(self.not_synced.refused_invalid))

    def _retry_later(self, uuids: Iterable[str], now: float, pauses: tuple[float, ...]) -> None:
        """Kept after a rollback that says nothing against the edit: a participant did not
        answer in time (a slow editor, a loaded machine; `TIMEOUT_RETRY_S`), or another uuid
        of the batch mismatched (`COLLATERAL_RETRY_S`). Sent again by itself after a pause, up
        to three such rollbacks in a row."""
        for u in uuids:
            n = self.retries_in_a_row.get(u, 0)
            if n < len(pauses):
                self.retries_in_a_row[u] = n + 1
                self.retry_at[u] = now + pauses[n]

    def retry_due(self, now: float) -> int:
        """The kept uuids whose pause after a rollback (`_retry_later`) has passed are sent again in
        full (those still not synced). Returns how many."""
        if not self.retry_at:
            return 0
        due = [u for u, at in self.retry_at.items() if at <= now]
        for u in due:
            del self.retry_at[u]
        again = [u for u in due if u in self.not_synced]
        self.retry_not_synced(again)
        return len(again)

    def result_done(self, seq) -> bool:
        """A whole `batch_result` is handled: `last_seq` moves to its `seq`. True when it
        moved (the next hello says so)."""
        moved = isinstance(seq, int) and not isinstance(seq, bool) and seq > self.last_seq
        if moved:
            self.last_seq = seq
        self.seen_seq(seq)
        return moved

    def resync_answered(self) -> None:
        """A `resync` batch arrived: it answers the oldest `resync` request (§6.6)."""
        for rid, (what, _ctx) in list(self.pending.items()):
            if what == RESYNC:
                del self.pending[rid]
                break

    # ------------------------------------------------------------ replay and apply
    def replay_keeps(self, uuid: str, replay_seq: int, edited: bool) -> bool:
        """`replay`: a `resync` batch skips `uuid` (`replay_keeps`)."""
        return replay_keeps(uuid, replay_seq, edited, self.inflight, self.not_synced,
                            self.result_seq)

    def tombstoned(self, uuid: str, seq: int) -> None:
        """The person's delete of `uuid` is resolved: the daemon tombstoned it at `seq` (its
        `ack`). A replay older than that is stale for it (§6.6)."""
        if seq > 0:
            self.result_seq[uuid] = max(seq, self.result_seq.get(uuid, 0))

    def replay_kept(self, uuid: str, merged: bool = False) -> None:
        """`replay`: a uuid the replay skipped is sent instead (§6.6): in full, or — `merged`:
        the replay's parts not changed here were applied, and what was last sent is now the
        replay's state — only the parts changed here."""
        self.scene.mark_for_capture(uuid)
        if not merged:
            self.scene.forget_sent(uuid)

    def applied(self, seq: int, arrived: set[str], kept: Container[str],
                parent_of: Callable[[str], str | None],
                deleted: set[str] | frozenset[str] = frozenset()) -> None:
        """`apply`: a batch is applied: what arrived counts as synced (not the uuids a
        replay kept), not-synced children of an arrived parent go again (D1), and so do
        those of a parent the batch `deleted` (they stand at the root now, and their kept
        edit named a parent that is gone, PROTOCOL.md §6.4); `last_seq` moves to the
        batch's seq."""
        self.synced.update(u for u in arrived if u not in kept)
        if len(self.not_synced):
            # A parent that was missing arrived: its kept-local children go again (D1).
            self.retry_not_synced(self.not_synced.waiting_for(arrived | set(deleted), parent_of))
        self.last_seq = max(self.last_seq, seq)

    def live_refusal(self, uuid: str, paused: bool, batches_waiting: bool, held: bool,
                     busy: bool, edited: Callable[[], bool]) -> str | None:
        """`apply` of a `live` preview: why it is dropped, or None (`live_refusal`)."""
        return live_refusal(uuid, paused, batches_waiting, held, busy, self.inflight,
                            self.not_synced, edited)

    # ------------------------------------------------------------- peers, conflicts
    def on_peers(self, msg: dict) -> None:
        """A `peers` event: a peer (re)joined, so what could not reach it before may now
        (D1): the not-synced uuids are sent again in full."""
        peers = [p for p in msg.get("peers") or [] if isinstance(p, dict)]
        others = [p for p in msg.get("other_projects") or [] if isinstance(p, dict)]
        joined = peer_joined(self.peers, peers)
        self.peers, self.other_projects = peers, others
        if joined:
            self.peer_joins += 1
        if joined and len(self.not_synced):
            self.retry_not_synced(list(self.not_synced.reasons))

    def on_quarantine_released(self, msg: dict) -> None:
        """A `quarantine_released` event (PROTOCOL §6.8): a person released these uuids, so
        what this editor kept of them (not synced) is sent again in full."""
        released = msg.get("uuids") or []
        self.retry_not_synced([u for u in released if isinstance(u, str) and u in self.not_synced])

    def kept_edit_again_once_ended(self, uuids: Iterable[str]) -> None:
        """A kept uuid edited again before its kept result came (`edited_again`): once its
        changes sent before the mark have all ended — committed, dropped or refused — the kept
        edit goes again in full, as after any edit of a kept uuid (§6.4; the Unity package's
        `KeptEditAgainOnceEnded`). Left to that commit, the mark ended with the kept edit (a
        rename) never sent again, the editors apart and nothing marked (random edits, seed
        87)."""
        again = [u for u in uuids if u in self.edited_again and u not in self.inflight]
        self.edited_again.difference_update(again)
        self.retry_not_synced([u for u in again if u in self.not_synced])

    def retry_not_synced(self, uuids: Iterable[str]) -> None:
        """Re-send the full state of kept-local uuids as `create` (D1 retry); a uuid the
        scene no longer holds is not synced any more."""
        for u in uuids:
            if not self.scene.alive(u):
                self.not_synced.synced([u])
                continue
            self.scene.forget_sent(u)
            self.scene.mark_for_capture(u, quiet=True)

    def on_conflict(self, msg: dict) -> None:
        self.conflicts.append(dict(msg, at=time.time()))
