"""The main-thread pump: everything that touches bpy happens in `Session.tick()`.

Handlers (depsgraph, undo, redo, load, save) only set flags or add session_uids to sets; the
pump, driven by a `bpy.app.timers` timer in the UI or by `vibesync.tick()` headless, does
the work under a per-tick time budget and caps:

1. drain transport events (acks, errors, batches) -- at most MAX_EVENTS_PER_TICK;
2. rescan after load/undo/redo or when an unknown datablock appeared (uuid enforcement);
3. apply deferred/complete incoming batches when nothing blocks them;
4. diff dirty datablocks against the last sent state -- at most MAX_DIRTY_PER_TICK;
5. throttled deletion sweep -> tombstones;
6. send register / tombstone / change requests.
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import itertools
import logging
import math
import os
import tempfile
import time
import typing

import bpy

from . import apply as apply_mod
from . import budget, capture, engine, identity, wire
from . import router as router_mod

# Meshes above this many vertices are encoded and hashed off Blender's main thread: all of
# them (reading them with foreach_get is the only mesh work on the main thread), so no
# main-thread step waits for a hash, whatever the hash function costs.
BIG_MESH_VERTICES = 0
# After batches were held (edit mode, a modal operator), the resync that replaces them waits
# at most this long for the captures of what changed meanwhile.
RESYNC_SETTLE_S = 2.0
_POOL: list = []


def _mesh_pool() -> concurrent.futures.ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vibesync-mesh"))
    return _POOL[0]


def _encode_and_hash(arrays: dict, unit_scale: float) -> tuple[bytes, str]:
    blob = capture.encode_mesh_arrays(arrays, unit_scale)
    return blob, wire.mesh_hash(blob)


from .identity import Registry  # noqa: E402
from .transport import Transport  # noqa: E402

log = logging.getLogger("vibesync")

MAX_EVENTS_PER_TICK = 256
MAX_DIRTY_PER_TICK = 512
MAX_REGISTER_ITEMS = 10_000
MAX_REGISTER_PER_TICK = 1_000
# Items of a big message (a `batch_result`'s uuids, an `ack`'s results) handled per slice.
RESULT_CHUNK = 512
SWEEP_INTERVAL_S = 1.0
SWEEP_SOON_S = 0.1
USER_IDLE_S = 3.0
USER_ACTIVITY_RESEND_S = 1.0
PROGRESS_INTERVAL_S = 0.25
# A step left out of ticks that used their whole budget runs one slice anyway after this.
STARVED_S = 1.0

STATE_CONNECTED = "connected"
STATE_RECONNECTING = "reconnecting"
STATE_SAFE_MODE = "safe mode"
STATE_PAUSED = "paused"
STATE_DISCONNECTED = "disconnected"
STATE_NO_DAEMON = "daemon not running"

# The welcome replay that lets fresh datablocks take back their uuids (crash before the
# first save) is waited for at most this long (an older daemon may never send it).
ADOPT_WAIT_S = 10.0
# Identical failures of the pump in a row (within ERROR_LOOP_WINDOW_S) that pause it (§6.7).
ERROR_LOOP_THRESHOLD = 5
ERROR_LOOP_WINDOW_S = 60.0
SYNCED_KINDS = ("object", "collection")
# A change refused RATE_LIMITED (or STORAGE_FAILED) is sent again in full after a pause that
# doubles on each refusal in a row, up to the maximum (PROTOCOL §2 "Rate limits": retry later;
# `engine.RETRY_LATER`).
RETRY_PAUSE_MIN_S = 0.25
RETRY_PAUSE_MAX_S = 4.0


def editor_version() -> str:
    return bpy.app.version_string


def current_unit_scale() -> float:
    scene = bpy.context.scene
    try:
        s = float(scene.unit_settings.scale_length) if scene is not None else 1.0
    except AttributeError:
        s = 1.0
    return s if s > 0 else 1.0


class SavedSync(typing.NamedTuple):
    """What the open .blend says of its sync (§6.6, pairing §3), read once per file: the
    project it belongs to, its replay position, whether it holds a registry, and the base a
    person's edits made since the save are told apart by — uuid -> what Blender last sent or
    applied of each object (`synced`), and uuid -> the parts of its changes that had no
    outcome yet (`unresolved`: sent again after the replay, as after a reconnect). Without
    the base, a replay on reopening kept every object as the person's work and sent it whole
    over what another editor changed meanwhile."""
    project_id: str | None
    last_seq: int
    has_registry: bool
    base: dict
    unresolved: dict
    home: tuple[str, str] | None = None  # the (scene, view layer) it was synced with
    # uuids deleted here whose tombstone the daemon had not acknowledged when it was saved
    # (the daemon was down, say): they go again once connected (§6.6).
    deleted: frozenset = frozenset()


def saved_sync() -> SavedSync:
    """The open file's `SavedSync`; (None, 0, False, {}, {}) for a new file."""
    try:
        doc = identity.read_text_block()
    except identity.RegistryFileError as e:
        log.warning("vibesync: %s", e)
        doc = None
    if doc is None:
        return SavedSync(None, 0, False, {}, {})
    pid = doc.get("project_id")
    seq = doc.get("last_seq")
    pid = pid if wire.is_valid_project_id(pid) else None
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0
    synced, unresolved = doc.get("synced"), doc.get("unresolved")
    base = {u: st for u, st in synced.items() if isinstance(u, str) and isinstance(st, dict)} \
        if isinstance(synced, dict) else {}
    away = {u: {p for p in parts if isinstance(p, str)} for u, parts in unresolved.items()
            if isinstance(u, str) and isinstance(parts, list)} if isinstance(unresolved, dict) else {}
    home = doc.get("home")
    home = (home[0], home[1]) if isinstance(home, list) and len(home) == 2 \
        and all(isinstance(x, str) and x for x in home) else None
    deleted = doc.get("deleted")
    deleted = frozenset(u for u in deleted if wire.is_valid_uuid(u)) if isinstance(deleted, list) \
        else frozenset()
    return SavedSync(pid, seq if pid is not None else 0, True, base, away, home, deleted)


def _open_file() -> tuple:
    """Which file is open, in this Blender process: its path and its scenes' session uids
    (a new or reloaded file, saved or not, makes new datablocks with new uids)."""
    return (bpy.data.filepath, tuple(sorted(sc.session_uid for sc in bpy.data.scenes)))


class Overtaken(typing.NamedTuple):
    """What another editor's full state overwrote of an object kept here not synced."""
    before: dict           # the object's state before the batch (`capture.read_state`)
    last_sent: dict | None  # what was last sent of it then
    mesh: bytes            # its geometry then, when the batch brought another (else b"")
    theirs: dict           # the batch's full state of it
    seq: int               # the batch's seq (a lost result is asked for from before it)


def _full_state(change: dict) -> dict:
    """The object state a `create` change names (its fields of `capture.read_state`)."""
    return {k: change[k] for k in ("kind", "name", "parent", "visible", "t", "r", "s",
                                   "mesh_hash", "material") if k in change}


class _StepClock:
    """Keeps the worst duration of each named pump step (main-thread budget, §Threads): wall
    time, and the main thread's own CPU time (what the step costs Blender's frame, without
    the time the thread spent descheduled on a loaded machine)."""

    def __init__(self, worst: dict[str, float], worst_cpu: dict[str, float]) -> None:
        self.worst = worst
        self.worst_cpu = worst_cpu
        self.t = time.perf_counter()
        self.c = time.thread_time()

    def lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        for table, ms in ((self.worst, (now - self.t) * 1000.0),
                          (self.worst_cpu, (cpu - self.c) * 1000.0)):
            if ms > table.get(name, 0.0):
                table[name] = ms
        self.t, self.c = now, cpu


class _BlenderScene:
    """`engine.SceneAdapter` over the pump's registry and capture marks: what the sync
    engine asks of Blender (docs/ARCHITECTURE.md "Blender addon")."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def alive(self, uuid: str) -> bool:
        b = self.session.registry.bindings.get(uuid)
        return b is not None and b.alive

    def capture(self, keys) -> None:
        self.session.dirty.update(keys)

    def forget_sent(self, uuid: str) -> None:
        # Its next capture sends it in full (`resend_full`). What was last sent stays the
        # base a person's edits are told from: popped, a batch that came before that capture
        # (another editor's full state, §6.4) found nothing to tell the person's kept parts
        # from its own and was applied whole over them — a person's hide and rename lost in
        # both editors (random edits, seed 14; seed 48 while a change was on its way).
        # What was applied here last is no echo to leave unsent either: the daemon does not
        # hold it (a batch that brought this editor's own state back to it rolled back).
        s = self.session
        if uuid in s.last_sent:
            s.resend_full.add(uuid)
        s.applied_hash.pop(uuid, None)

    def mark_for_capture(self, uuid: str, geometry: bool = False, quiet: bool = False) -> None:
        s = self.session
        b = s.registry.bindings.get(uuid)
        if b is None:
            return
        if quiet:
            s.quiet.add(uuid)
        s.dirty.add((b.kind, b.session_uid))
        if geometry:
            s.geometry_dirty.add((b.kind, b.session_uid))


class Session:
    """One connection to the daemon plus everything the pump remembers between ticks: the
    bpy glue, scheduling, transport and UI around `self.engine` (`engine.SyncEngine`, the
    protocol-level sync bookkeeping)."""

    def __init__(self, host: str, port: int, token: str | None, token_path: str | None,
                 project_id: str | None, client_id: str) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.token_path = token_path
        self.explicit_project_id = project_id
        # Visibility and scene membership are read from the view layer the file was synced
        # with (saved in it), else the one active now, wherever the person looks later.
        saved = saved_sync()
        capture.take_home(saved.home)
        saved_pid, saved_seq, self.file_has_registry = saved.project_id, saved.last_seq, saved.has_registry
        # The user's id, else the one this file was assigned, else none: the daemon pairs
        # it with the editor that is already there (§3) and `welcome` says which.
        self.project_id = project_id or saved_pid
        self.client_id = client_id
        self.registry = Registry()
        self.transport = None  # Transport while connected or reconnecting
        self.generation: int | None = None
        self.session_id: str | None = None
        self.connected = False
        self.ever_connected = False
        self.safe_mode = False
        self.safe_mode_reason = ""
        self.held_edits: set[str] = set()  # a person's edits captured in safe mode
        # What `editor_state.held` last told this connection (`_report_held`), and the
        # `NotSynced.version` it was read at.
        self.held_reported: list[str] | None = None
        self.held_version = -1
        self.paused = False
        # The sync bookkeeping (in flight, not synced, pending requests, last_seq, peers),
        # from this file's replay position for its project.
        self.engine = engine.SyncEngine(_BlenderScene(self),
                                        saved_seq if self.project_id == saved_pid else 0)
        self.unit_scale = 1.0
        # Capture.
        self.dirty: set[tuple[str, int]] = set()
        self.geometry_dirty: set[tuple[str, int]] = set()
        # Empties instancing a collection (§7.1): object key -> the collection's session_uid,
        # and the reverse (its geometry changing is no update of theirs in Blender's
        # dependency graph).
        self.instancers: dict[tuple[str, int], int] = {}
        self.instanced_by: dict[int, set[tuple[str, int]]] = {}
        # The encoding of what those Empties show (`capture.evaluated_mesh_arrays` gives them
        # one shared arrays object per collection): id(arrays) -> (arrays, the mesh worker's
        # job), one job for all of them, dropped with the collections' geometry at the next
        # update.
        self.shared_encodings: dict[int, tuple[dict, concurrent.futures.Future]] = {}
        self.waiting_edit: set[tuple[str, int]] = set()
        self.settle_since: float | None = None  # held batches unblocked, resync not asked yet
        self.replay_settle_since: float | None = None  # a replay waiting for hashes
        self.master_dirty = False
        # The objects whose pose animation sets (an action or drivers), for a frame change,
        # and the counts they were listed under (`on_frame_change`); None: to be listed.
        self.animated: list[tuple[str, int]] | None = None
        self.animated_under: tuple | None = None
        self.unknown_keys: set[tuple[str, int]] = set()
        self.scan_reason: str | None = "initial"
        # A scan or sweep in progress (generators resumed each tick within its budget).
        self.scan_job: tuple | None = None  # (Registry.scan_steps generator, reason)
        self.sweep_job = None               # Registry.sweep_steps generator
        # First-sync progress, counted in slices (`_progress_steps`) at most every
        # PROGRESS_INTERVAL_S: {"synced", "total"} and when it was counted.
        self._progress: dict | None = None
        self._progress_at = 0.0
        self.progress_job = None
        # Materials captured as changed whose users (every object showing them) are still
        # to be marked for capture, and the pass marking them in slices (`_material_step`).
        self.material_users: set[int] = set()
        self.material_job = None
        # A transport event being handled over several ticks (a big `batch_result` or
        # register `ack`, the `connected` resend of a big file): (generator, kind).
        self.event_job: tuple | None = None
        # Full garbage collections are held off while a big sync runs (budget.GcHold).
        self.gc_hold = budget.GcHold()
        self.scan_big = False  # the scan in progress is of a big file (GC hold)
        self.file_loaded = False
        self.sweep_due_at = 0.0
        self.last_sweep = 0.0
        # uuid -> what the daemon holds of it as far as this editor knows: what it last sent
        # or applied. A file's saved base seeds it (`SavedSync`), so a replay after
        # reopening tells the person's edits from the other editor's.
        self.last_sent: dict[str, dict] = {}
        # uuid -> (what was last sent, the parts then in flight) when the connection was
        # made again: the base of a person's edits until the first replay is applied.
        self.reconnect_base: dict[str, tuple[dict, set[str]]] = {}
        # uuid -> the ops sent (or queued) for it since its last resolved change: what a
        # person changed here that the daemon has not yet taken (`_parts_not_changed_here`).
        self.sent_parts: dict[str, set[str]] = {}
        # uuids whose next capture sends their full state (a `create`), whether or not they
        # changed since `last_sent`: the daemon may not hold what was sent (`forget_sent`: a
        # kept edit retried, a refusal, safe mode). Unity's `resendFull`.
        self.resend_full: set[str] = set()
        # uuid -> request id -> the ops that change carried, while it is in flight: when a
        # result ends some of a uuid's changes, the others' parts are what stays unresolved
        # (a rename whose result came is not spared while a drag's moves are on their way).
        self.request_parts: dict[str, dict[str, set[str]]] = {}
        # uuid -> the ops of the person's changes here that a rollback left kept here, not
        # synced (`kept_local`): still the person's while it stays not synced — another
        # editor's full state of the object never takes them away (§6.4).
        self.kept_parts: dict[str, set[str]] = {}
        # batch_id -> uuid -> what another editor's full state in that batch overwrote of an
        # object kept here not synced (`Overtaken`): put back if the batch rolls back (§6.4).
        self.overtook: dict[str, dict[str, Overtaken]] = {}
        # Those whose `batch_result` a lost connection took (`overtook_unheard`): after the
        # reconnect, a `resync` from before the oldest of them (`overtook_probe`, its request
        # id) tells committed from rolled back, and until it is read the objects are not sent
        # (`overtook_gated`, their editor keys), so the batch's values never go as the person's.
        self.overtook_unheard: dict[str, dict[str, Overtaken]] = {}
        self.overtook_probe: str | None = None
        self.overtook_gated: set = set()
        # batch_id -> its `batch_result`, when it came before the batch was applied here (the
        # daemon rolls a batch back at the first wrong answer, without waiting for this one):
        # what the batch overwrites is read once it has been applied (`_overtook_ended`).
        self.early_results: dict[str, dict] = {}
        self.applying_batch: str | None = None  # the batch `_apply_steps` is applying
        if self.project_id == saved_pid and saved_pid:
            self._start_from(saved)
        # A person's unsent changes that lose to a forwarded batch, with the base_seq from
        # before that batch, sent after its answer to be refused STALE, a conflict: of objects
        # it deleted (`_report_deleted_over`). (Unity's `lostOver`; a person's reparent that
        # loops with the batch's goes through `away_base` instead, `_leave_out_loops`: the
        # object is still here and is captured as usual.)
        self.lost_over: list[tuple[list[dict], int]] = []
        # Kept (not synced) uuids whose reparent a batch's reparent would loop with here
        # (`_leave_out_loops`): re-sent whole after the answer, from `away_base`.
        self.kept_lost: set[str] = set()
        # uuid -> the parent a batch's reparent left out for a loop (`_leave_out_loops`) gave
        # it: the daemon holds it, so the object goes under it once that is no loop here any
        # more (`_attach_loop_waiting`), unless another parent of it arrives first or the
        # person reparents it (PROTOCOL.md §6.4).
        self.loop_waiting: dict[str, str] = {}
        # Of those, the ones whose batch's result has not arrived yet -> that batch's id: the
        # daemon holds that parent only if the batch commits. Rolled back, or its result lost
        # with the connection (the replay after the reconnect restates the object if it
        # committed), they wait no more (§6.4).
        self.loop_waiting_from: dict[str, str] = {}
        # uuids whose own change in flight a batch's reparent looped with here (left out,
        # `_leave_out_loops`) -> the seq before that batch, and those of edits made while away
        # sent from their seq (`_send_in_runs`); kept over a lost connection (`flight_lost`)
        # while the change is unresolved: its re-send after the reconnect goes from that seq,
        # not the one Blender connected with — Blender never held the batch's reparent, so
        # the daemon tells a conflict (`STALE`) from a loop it knew of.
        self.flight_base: dict[str, int] = {}
        self.flight_lost: dict[str, int] = {}
        # Datablocks that carried no uuid when the file was opened and the file has no saved
        # registry (never saved, or a crash before the first save): uuid -> (kind, name).
        # Until the first replay after connecting, they are not sent: they may take back
        # the uuids the daemon holds for them (`engine.match_adoptions`).
        self.adoptable: dict[str, tuple[str, str]] = {}
        self.adopt_until: float | None = None
        self.adopted: int = 0
        self.gated_keys: set[tuple[str, int]] = set()
        # The base of a person's edits made while away (PROTOCOL.md §6.6 "Edits made while
        # away"): `connect_seq` is this editor's seq when it connected, before the first
        # replay (None once the gate has opened); `away` the uuids then waiting to be read,
        # each with that seq; `away_base` those read with an edit, until it is sent; and
        # `replayed` the uuids that first replay brought (a whole `create` of one is sent
        # from the replay's seq instead: from the older base it is stale beside any part
        # another editor changed, and the resync would undo the person's parts).
        self.connect_seq: int | None = None
        self.away: dict[str, int] = {}
        self.away_base: dict[str, int] = {}
        self.replayed: set[str] = set()
        # Children waiting for their parent's create to be queued: parent uuid -> keys.
        self.parent_waiters: dict[str, set] = {}
        self.error_loop = engine.ErrorLoop(ERROR_LOOP_THRESHOLD, ERROR_LOOP_WINDOW_S)
        self.pause_reason = ""
        self.daemon_unreachable: str | None = None
        self.ui_signature = None
        # Worst duration of each pump step seen so far, in ms (status()["step_ms"]).
        self.step_ms: dict[str, float] = {}
        self.step_cpu_ms: dict[str, float] = {}  # the same, main-thread CPU time
        # uuid -> the state hash of what was applied here last (a live preview's state dict until
        # `_applied_hash_of` hashes it).
        self.applied_hash: dict[str, str | dict] = {}
        # uuid -> the `mark` of the last `live` frame applied on this connection: a person's
        # next change of it is made over that value, and says so in `seen` (§6.1).
        self.live_seen: dict[str, int] = {}
        # Each geometry goes to the daemon once per connection (PROTOCOL §6.1: a `create` or
        # `mesh` naming a mesh the daemon holds needs no attachment): mesh hash -> the request
        # that carried it while unanswered, None once the daemon took it. A thousand collection
        # instances then send one copy of their geometry instead of a thousand.
        self.daemon_meshes: dict[str, str | None] = {}
        # request -> its changes that only named their mesh (uuid -> mesh hash), while
        # unanswered: an INVALID_FIELD refusal of one of them says the daemon no longer holds
        # that mesh (it removes meshes nothing references), and the object goes again with it.
        self.named_meshes: dict[str, dict[str, str]] = {}
        # An agent's change that goes again (the daemon asked to retry later, or it could not
        # be sent when the tool call ended) stays the agent's (§6.1 "Who made it"): uuid ->
        # (its `automation`, the hash of the state the agent made), until it is sent — or
        # captured in another state (a person edited it meanwhile: then it is the person's,
        # and a person's work is never reverted). `automation_requests`: request -> the
        # `automation` it carried, while unanswered (what it made is read only if it is
        # refused, `_made_by`); `automation_deletes`: request -> the uuids whose delete by an
        # agent it carried (they go again if it is refused for later, `_deleted_by_automation`).
        self.automation_for: dict[str, tuple[dict, str]] = {}
        # uuid -> a copy of an object a tool call names, made before the call runs
        # (`router.Router.run`): kept should the call delete it (`_deleted_by_automation`).
        self.copied_before_call: dict[str, object] = {}
        self.automation_requests: dict[str, dict] = {}
        self.automation_deletes: dict[str, list[str]] = {}
        # While a tool call's deletes are captured: mesh hash -> mesh uuids (`_deleted_by_automation`).
        self.meshes_by_hash: dict[str, list[str]] | None = None
        self.mesh_bytes_sent = 0
        # No request goes out before this time (monotonic): the daemon asked to retry later.
        self.send_after = 0.0
        self.retry_pause_s = RETRY_PAUSE_MIN_S
        self.mesh_hashes: dict[str, str] = {}
        self.mesh_blobs: dict[str, bytes] = {}
        # Objects whose generated geometry was not sent whole (too many instances): uuid -> why.
        self.generated_notes: dict[str, str] = {}
        self.mesh_alias: dict[str, tuple[str, str]] = {}  # mesh uuid -> (own hash, applied hash)
        self.remote_deleted: set[str] = set()
        # Deleted here by the person: a replay must not bring them back (§6.6).
        self.deleted_here: set[str] = set()
        # Objects linked into no collection of the synced scene (unlinked from all, or moved
        # to another scene): a delete for the other editors while out, a create once back
        # (`_capture_one`, PROTOCOL §6.1, §5).
        self.out_of_scene: set[str] = self.registry.out_of_scene
        self.quiet: set[str] = set()
        # Outgoing.
        self.to_register: set[str] = set()
        self.registered: dict[str, str] = {}      # uuid -> editor_ref the daemon has
        self.to_tombstone: set[str] = set()
        if self.project_id == saved_pid and saved_pid:
            self._resume_deletes(saved)
        self.duplicate_of: dict[str, str] = {}    # newcomer uuid -> original uuid
        # Ordered outgoing change ops; an op with a mesh carries its attachment.
        self.out_ops: list[tuple[dict, bytes]] = []
        # Big meshes are encoded and hashed on a worker thread (§ issue: a 100k-vertex mesh
        # must not stall Blender): mesh uuid -> (Future of (blob, hash), waiting object keys).
        self.mesh_jobs: dict[str, tuple[concurrent.futures.Future, set]] = {}
        # Own encodings of big applied meshes, hashed on the worker: mesh uuid -> (Future,
        # (the sender's hash, the keys of the objects whose capture waits for it)). Until
        # done, captures of that mesh wait (no echo); once done, those objects are read.
        self.alias_jobs: dict[str, tuple[concurrent.futures.Future, tuple[str, set]]] = {}
        self._ids = itertools.count(1)
        # Incoming.
        self.collector = apply_mod.BatchCollector()
        self.batches = collections.deque()
        self.apply_job = None  # the batch being applied over several ticks (_apply_steps)
        self.apply_job_size = 0
        self.blocked_reason: str | None = None
        # User activity.
        self.user_active = False
        self.last_user_edit = 0.0
        self.last_activity_sent = 0.0
        self.applying = False
        # Diagnostics.
        self.bad_frames = 0
        self.errors = collections.deque(maxlen=20)
        self.collisions = collections.deque(maxlen=1000)
        self.tombstoned = collections.deque(maxlen=1000)
        self.reconnects = 0
        self.last_rebind: dict = {}
        self.registry_check: dict = {}
        self.last_daemon_status: dict | None = None
        self.last_handshake_error: dict | None = None
        self.applied_batches = 0
        # Live previews (§6.3): applied at once, and dropped (the batch brings the state).
        self.live_applied = 0
        self.live_dropped: collections.Counter[str] = collections.Counter()
        # (uuid, op) -> (change, mark): the latest `live` frame of each, received after every
        # batch that waits or is being applied (so newer than them), applied once they are
        # done (`_apply_deferred_live`, PROTOCOL §6.3); dropped when another batch begins.
        self.live_deferred: dict[tuple[str, str], tuple[dict, int | None]] = {}
        self.pending_save_doc: dict | None = None
        # Agent tool calls (docs/PROTOCOL.md §9): the addon registry and the call runner.
        self.ai = router_mod.AddonRouter()
        self.automation: dict | None = None  # set while capturing a tool call's changes

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.unit_scale = current_unit_scale()
        self.transport = Transport(self.host, self.port, self._hello(), token=self.token,
                                   token_path=self.token_path)
        self.transport.start()
        log.info("vibesync: connecting to %s:%s as project %r", self.host, self.port,
                 self.project_id)

    def _closing(self, reason: str) -> None:
        """Say this connection closes on purpose (`editor_state` `closing`, §6.8): a batch
        left unanswered by it is no evidence against the data (§6.7), and a person's change
        in it goes again unchanged to the next connection."""
        self._send({"type": wire.MessageType.EDITOR_STATE, "state": wire.EditorRunState.CLOSING,
                    "reason": reason})

    def stop(self) -> None:
        if self.transport is not None:
            self._closing("the addon disconnects")
            self.transport.stop()
            self.transport = None
        self.connected = False
        self.event_job = None
        self.apply_job = None
        self.gc_hold.thaw()

    def _hello(self) -> dict:
        return {"protocol": wire.PROTOCOL_VERSION, "project_id": self.project_id,
                "editor": "blender", "editor_version": editor_version(),
                "client_id": self.client_id, "unit_scale": self.unit_scale,
                "last_seq": self.engine.last_seq}

    # ------------------------------------------------------------ handler entry points
    def on_depsgraph(self, depsgraph) -> None:
        """Tiny: record which datablocks changed. No bpy reads beyond the update list."""
        structure = False
        capture.forget_collection_geometry()
        self.shared_encodings.clear()
        instanced: set[int] = set()  # collections whose geometry changed
        for u in depsgraph.updates:
            idb = u.id
            try:
                idb = idb.original
                id_type = idb.id_type
            except (AttributeError, ReferenceError):
                continue
            kind = identity.ID_TYPE_TO_KIND.get(id_type)
            if kind is None:
                if id_type == "SCENE":
                    structure = True
                continue
            if kind == "collection" and idb.is_embedded_data:
                # A scene's master collection: objects may have moved in or out of it.
                self.master_dirty = True
                structure = True
                continue
            key = (kind, idb.session_uid)
            self.dirty.add(key)
            if u.is_updated_geometry and kind in ("object", "mesh"):
                self.geometry_dirty.add(key)
            if kind == "collection":
                structure = True
                if u.is_updated_geometry and idb.session_uid in self.instanced_by:
                    instanced.add(idb.session_uid)
            if key not in self.registry.by_key:
                self.unknown_keys.add(key)
        for coll in instanced:  # what they instance changed: what they show did
            self.dirty.update(self.instanced_by[coll])
            self.geometry_dirty.update(self.instanced_by[coll])
        if structure:
            self.registry.membership_changed()  # which collection holds which object
            self.sweep_due_at = min(self.sweep_due_at or float("inf"),
                                    time.monotonic() + SWEEP_SOON_S)

    def on_frame_change(self) -> None:
        """A frame change (the timeline scrubbed, playback): animation set the poses of the
        animated objects without a depsgraph update telling us, so Unity kept showing the
        old frame. Their poses are captured like any edit (sent only where they changed).
        The animated objects are listed again (one pass over the objects) when the objects or
        the actions' users changed since, after an undo or a load; else taken as listed (a
        keyframe insert gives no depsgraph update that says so)."""
        under = (len(bpy.data.objects), len(bpy.data.actions), sum(a.users for a in bpy.data.actions))
        if self.animated is None or under != self.animated_under:
            self.animated_under = under
            self.animated = [("object", ob.session_uid) for ob in bpy.data.objects
                             if ob.animation_data is not None
                             and (ob.animation_data.action is not None or len(ob.animation_data.drivers))]
        self.dirty.update(self.animated)

    def on_undo_redo(self, which: str) -> None:
        self.animated = None
        self.registry.invalidate()  # undo reallocates datablocks
        # A scan or sweep in progress holds datablocks of before the undo: start over,
        # keeping what a first scan of the file does. A first scan cut short may have bound
        # datablocks without marking them: "load" (unlike "initial") captures the rebound too.
        if self.scan_job is not None and self.scan_job[1] in ("initial", "load"):
            which = "load"
        elif self.scan_reason in ("initial", "load"):
            which = self.scan_reason
        self.scan_job = None
        self.sweep_job = None
        self._drop_material_pass()  # the rescan marks the rebound objects anyway
        self.scan_reason = which

    def on_load(self) -> None:
        self.animated = None
        # Blender's collector as it was before the last sync: the full collection this
        # leads to runs now, as part of the load (budget.GcHold).
        self.gc_hold.thaw(collect=True)
        self.registry.invalidate()
        self.scan_job = None
        self.sweep_job = None
        self.file_loaded = True
        self.scan_reason = "load"

    def on_save_pre(self) -> None:
        """Persist the registry into the .blend (text block) just before it is written."""
        # A save must persist a complete registry: one full scan (also finds orphan data
        # that never showed up in a depsgraph update); cheap next to writing the file.
        self.scan_reason = self.scan_reason or "save"
        self._scan()
        doc = self._snapshot()
        identity.write_text_block(doc)
        self.pending_save_doc = doc

    def carry(self) -> dict:
        """What this session knew of the daemon's state, for the next session in the same
        open file (a Reconnect, `Session.inherit`): the file, the project, the replay
        position, what was last sent or applied of each object and the unresolved parts."""
        return {"file": _open_file(), "project_id": self.project_id,
                "last_seq": self.engine.last_seq, "base": dict(self.last_sent),
                "unresolved": self.unresolved_parts()}

    def inherit(self, carry: dict) -> None:
        """Start from what the previous session in this file knew (`carry`), when it is the
        same file and project: its replay position (the scene holds what it applied) and its
        base, so the replay tells the person's edits from another editor's (§6.6). Without
        it a Reconnect started from the saved file's position, or 0 in an unsaved file, and
        every object counted as the person's work: sent in full, it undid what the other
        editor changed meanwhile."""
        if carry.get("file") != _open_file():
            return
        pid = carry.get("project_id")
        if self.explicit_project_id is not None and self.explicit_project_id != pid:
            return
        if self.project_id is not None and self.project_id != pid:
            return
        self.project_id = pid
        self.engine.last_seq = int(carry.get("last_seq") or 0)
        self.last_sent.clear()
        self.last_sent.update(carry.get("base") or {})
        self.sent_parts = {u: set(p) for u, p in (carry.get("unresolved") or {}).items()}

    def _start_from(self, saved: SavedSync) -> None:
        """The saved file's base and unresolved parts: when the connection is made, they are
        the base of a reconnect (`reconnect_base`)."""
        self.last_sent.update(saved.base)
        self.sent_parts = saved.unresolved

    def _resume_deletes(self, saved: SavedSync) -> None:
        """The file's deletes the daemon never acknowledged (deleted while it was down, then
        saved): their `tombstone`s go once connected, as if deleted now (§6.6: an object of
        the base the scene no longer holds was deleted here meanwhile)."""
        for u in saved.deleted:
            self.to_tombstone.add(u)
            self.deleted_here.add(u)

    def unresolved_parts(self) -> dict[str, list[str]]:
        """uuid -> the parts of its changes sent or queued and not ended yet (what a
        reconnect sends again after the replay, `reconnect_base`)."""
        out = {u: sorted(p) for u, p in self.sent_parts.items()
               if p and self._unresolved_sent_parts(u)}
        for u in self.engine.not_synced.reasons:
            out[u] = [wire.Op.CREATE]  # kept here after a failed propagation: all of it again
        return out

    def _snapshot(self) -> dict:
        """The registry as the file keeps it: with its sync position, base, unresolved parts
        and the scene it is synced with (PROTOCOL §6.6, §6.1)."""
        return self.registry.snapshot(self.project_id, self.engine.last_seq, self.last_sent,
                                      self.unresolved_parts(), capture.home_names(),
                                      self.deleted_here)

    def on_save_post(self) -> None:
        doc = self.pending_save_doc or self._snapshot()
        self.pending_save_doc = None
        # The file now holds every uuid: nothing in it is fresh any more.
        self.file_has_registry = True
        path = bpy.data.filepath
        if not path:
            return
        side = identity.sidecar_path(path)
        try:
            identity.write_sidecar(side, doc)
            log.info("registry saved: %d entries in %s and the .blend", len(doc["entries"]), side)
        except OSError as e:
            self._error("SIDECAR_WRITE_FAILED", f"cannot write the sidecar registry {side}: "
                        f"{e}; the .blend still holds the registry")

    # ----------------------------------------------------------------------- pump
    def tick(self, budget_ms: float = 8.0) -> int:
        """One pump step. Returns the number of work items processed. Never raises: a
        failure is logged, and the same failure repeated pauses the addon (§6.7)."""
        try:
            work = self._tick(budget_ms)
        except Exception as e:  # noqa: BLE001 - the pump must survive anything
            log.exception("vibesync: pump step failed")
            self._failed("pump step", e)
            work = 0
        self.gc_hold.update(self._big_sync())
        self._redraw_if_changed()
        return work

    def backlog(self) -> int:
        """Work items waiting that the pump can work off now (a first sync's backlog):
        datablocks to capture, meshes encoding, changes to send or waiting for their
        result, registers, changes of the batches to apply (the one under way counts whole
        until it has finished, the one still arriving what has arrived), a scan or an event
        being handled."""
        n = len(self.dirty) + len(self.mesh_jobs) + sum(len(b.changes) for b in self.batches)
        if self.apply_job is not None:
            n += self.apply_job_size
        if self.collector.current is not None:
            n += len(self.collector.current.changes)  # a big replay still arriving
        if self.scan_job is not None or self.scan_reason is not None:
            n += 1
        n += self.material_job is not None or bool(self.material_users)
        if self.connected and not self.safe_mode:
            n += len(self.to_register) + len(self.out_ops) + len(self.engine.inflight) \
                + (self.event_job is not None)
        return n

    def _big_sync(self) -> bool:
        """A big sync is under way: a scan of a big file, or a backlog of at least
        GC_HOLD_MIN_ITEMS; once held, until the backlog is gone (budget.GcHold)."""
        if self.paused:
            return False
        scanning = self.scan_job is not None or self.scan_reason is not None
        if scanning and self.scan_big:
            return True
        n = self.backlog()
        return n > 0 if self.gc_hold.active else n >= budget.GC_HOLD_MIN_ITEMS

    def _failed(self, where: str, e: BaseException) -> None:
        """Record a failure; the same one `ERROR_LOOP_THRESHOLD` times pauses the addon."""
        detail = f"{where}: {type(e).__name__}: {e}"
        self._error(wire.ErrorCode.INTERNAL, detail)
        if self.error_loop.record(detail) and not self.paused:
            self.pause(f"the same failure repeated {self.error_loop.threshold} times: "
                       f"{detail}")

    def pause(self, reason: str) -> None:
        """Stop sending and applying (capture keeps its marks); tell the daemon why."""
        self.paused = True
        self.pause_reason = reason
        log.error("vibesync: paused: %s", reason)
        self._send({"type": wire.MessageType.EDITOR_STATE, "state": wire.EditorRunState.PAUSED,
                    "reason": reason})

    def resume(self) -> None:
        self.paused = False
        self.pause_reason = ""
        self.error_loop.reset()
        log.info("vibesync: resumed")
        self._send({"type": wire.MessageType.EDITOR_STATE, "state": wire.EditorRunState.RUNNING,
                    "reason": "resumed by the user"})

    def _redraw_if_changed(self) -> None:
        """Redraw the sidebar when what it shows changed (no mouse move needed)."""
        sig = self.ui_summary()
        if sig == self.ui_signature:
            return
        self.ui_signature = sig
        wm = getattr(bpy.context, "window_manager", None)
        if wm is None:
            return
        for window in wm.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    for region in area.regions:
                        if region.type == "UI":
                            region.tag_redraw()

    def _tick(self, budget_ms: float) -> int:
        deadline = time.perf_counter() + budget_ms / 1000.0
        self.registry.new_epoch()
        clock = _StepClock(self.step_ms, self.step_cpu_ms)
        if self.file_loaded:
            self._after_load()
            clock.lap("load")
        if self.scan_job is not None or self.scan_reason is not None:
            running = self._scan_step(deadline)
            clock.lap("scan")
            if running:
                return 1  # nothing else reads the registry until the scan has finished
            work = 1
        else:
            work = 0
        # A step left out of busy ticks for STARVED_S runs one slice first, so that what
        # follows stops within the same budget.
        now = time.monotonic()
        if self._sweep_due(now) and (now - self.last_sweep >= SWEEP_INTERVAL_S + STARVED_S
                                     or (self.sweep_due_at and now - self.sweep_due_at >= STARVED_S)):
            self._sweep_step(0.0)
            clock.lap("sweep")
        if now - self._progress_at >= STARVED_S:
            self._progress_step(0.0)
            clock.lap("progress")
        work += self._drain_events(deadline)
        clock.lap("events")
        if self.event_job is not None:
            return work + 1  # the rest of the tick sees the whole message, next tick
        if self.unknown_keys:
            keys, self.unknown_keys = self.unknown_keys, set()
            self._handle_report(self.registry.adopt(keys), "new datablock")
            work += 1
            clock.lap("adopt new datablocks")
        if self.adopt_until is not None and time.monotonic() > self.adopt_until:
            log.warning("vibesync: no replay within %.0f s of connecting; sending what this "
                        "file holds as it is (new datablocks as new)", ADOPT_WAIT_S)
            self._open_adopt_gate()
        applied = self._apply_batches(deadline)
        work += applied
        clock.lap("apply")
        if self.apply_job is not None:
            return work  # a big batch is being applied over several ticks
        if self.live_deferred and not self.batches and self.collector.current is None:
            work += self._apply_deferred_live(deadline)
            clock.lap("deferred previews")
        if applied and time.perf_counter() > deadline:
            # A batch's last step (its undo push) used the tick: capture and send go on
            # next tick instead of adding to it.
            return work
        self.ai.poll(self)
        work += self.ai.run_pending(self)
        clock.lap("agent tools")
        work += self._material_step(deadline)
        clock.lap("material users")
        if self.connected:
            work += self.engine.retry_due(time.monotonic())  # kept after a VERIFY_TIMEOUT
        work += self._process_dirty(deadline)
        clock.lap("capture")
        now = time.monotonic()
        if self._sweep_due(now) and time.perf_counter() < deadline:
            self._sweep_step(deadline)  # within the budget only (see the start of the tick)
            clock.lap("sweep")
        self._user_activity_idle(now)
        work += self._flush()
        if self.connected and self.safe_mode:
            self._mark_held()
            self._report_held()
        clock.lap("send")
        if time.perf_counter() < deadline:
            self._progress_step(deadline)
            clock.lap("progress")
        return work

    def _edited_while_away(self, uuid: str, prev: dict | None, state: dict) -> bool:
        """The quiet re-send after a reconnect (`reconnect_base`) carries a person's edit:
        the parts a replay left to this editor (it kept the uuid and set what was last sent
        to its own state, `_parts_not_changed_here`), or, with no replay of it, what differs
        from what the daemon last had or was still unresolved (made or sent while away)."""
        if prev is not None:
            return True
        base = self.reconnect_base.get(uuid)
        return base is not None and bool(base[1] or capture.diff_ops(uuid, base[0], state))

    def _mark_held(self) -> None:
        """Safe mode (§6.7): a person's edits captured meanwhile (a new datablock's among
        them; not the quiet re-send of everything after a reconnect, nor a registration,
        which change nothing the daemon holds) wait here, marked not synced with why, in the
        sidebar and `status()`, until they are sent and committed once a person clears it."""
        if not self.held_edits:
            return
        edits, self.held_edits = self.held_edits, set()
        self.engine.mark_held([u for u in edits if self.engine.scene.alive(u)],
                         self.safe_mode_reason or "the daemon is in safe mode")

    def _report_held(self) -> None:
        """Safe mode (§6.7): tell the daemon which edits wait here (`editor_state.held`, the
        first `wire.MAX_HELD` and how many in all), so that `vibesync status` lists them as
        not synced here; again whenever that changes. The daemon forgets the list when safe
        mode ends: they are sent then."""
        ns = self.engine.not_synced
        if ns.version == self.held_version:
            return
        self.held_version = ns.version
        held = ns.held()
        if held == (self.held_reported or []):
            self.held_reported = held
            return
        self.held_reported = held
        self._send({"type": wire.MessageType.EDITOR_STATE,
                    "state": wire.EditorRunState.PAUSED if self.paused else wire.EditorRunState.RUNNING,
                    "reason": self.pause_reason if self.paused else
                    f"holding {len(held)} edit(s) while the daemon is in safe mode",
                    "held": held[:wire.MAX_HELD], "held_count": len(held)})

    def _sweep_due(self, now: float) -> bool:
        return self.sweep_job is not None or bool(self.sweep_due_at and now >= self.sweep_due_at) \
            or now - self.last_sweep >= SWEEP_INTERVAL_S

    # -------------------------------------------------------------- transport events
    def _drain_events(self, deadline: float) -> int:
        """Handle transport events in arrival order until `deadline`. A big message is
        handled in slices (`_event_steps` yields between them): it is resumed on the next
        tick, and no later event is handled before it has finished."""
        if self.transport is None:
            return 0
        n = 0
        inbox = self.transport.inbox
        while True:
            if self.event_job is None:
                if n >= MAX_EVENTS_PER_TICK or inbox.empty() \
                        or (n and time.perf_counter() > deadline):
                    return n
                kind, payload = inbox.get_nowait()
                if self._superseded_live(kind, payload):
                    continue  # cheap: not counted against the tick's events
                n += 1
                self.event_job = (self._event_steps(kind, payload), kind)
            steps, kind = self.event_job
            try:
                while True:
                    next(steps)
                    if time.perf_counter() > deadline:
                        return n  # resumed next tick
            except StopIteration:
                self.event_job = None
            except Exception as e:  # a bad message must never break Blender
                self.event_job = None
                log.exception("vibesync: dropped %s event after an error: %s", kind, e)
                self._failed(f"handling {kind}", e)

    def _superseded_live(self, kind: str, payload: dict) -> bool:
        """Is this a `live` preview a later one of the same uuid and op, already received,
        supersedes? Behind on reading (another editor drags many objects), only the latest
        is applied (PROTOCOL §6.3)."""
        if kind != "message" or self.transport is None:
            return False
        msg = payload.get("message")
        if not isinstance(msg, dict) or msg.get("type") != wire.MessageType.LIVE \
                or not isinstance(msg.get("change"), dict):
            return False
        if not self.transport.live_superseded(msg["change"], payload.get("live_no")):
            return False
        self.live_dropped["superseded"] += 1
        return True

    def _handle_event(self, kind: str, payload: dict) -> None:
        """One transport event, handled whole."""
        identity.run_to_end(self._event_steps(kind, payload))

    def _event_steps(self, kind: str, payload: dict):
        if kind == "connected":
            welcome = payload["welcome"]
            self.generation = payload["generation"]
            self.connected = True
            if self.ever_connected:
                self.reconnects += 1
            self.ever_connected = True
            self.session_id = welcome.get("session_id")
            self.live_seen.clear()  # marks mean something on the connection that sent them
            self.daemon_meshes.clear()  # the daemon may have lost what it took (a new data dir)
            self.named_meshes.clear()
            self.automation_requests.clear()
            self.automation_deletes.clear()
            # Waiting for a loop through a batch whose result went with the old connection.
            for u in self.loop_waiting_from:
                self.loop_waiting.pop(u, None)
            self.loop_waiting_from.clear()
            self.send_after, self.retry_pause_s = 0.0, RETRY_PAUSE_MIN_S
            # Nothing sent on the last connection will be answered now: the edits that
            # waited for it are captured again.
            self.engine.connected(welcome.get("seq"))
            self.safe_mode = bool(welcome.get("safe_mode"))
            self.held_reported, self.held_version = None, -1  # a new session knows nothing held
            why = welcome.get("safe_mode_reason")
            self.safe_mode_reason = (why if isinstance(why, str) and why else
                                     "the daemon is in safe mode") if self.safe_mode else ""
            self.last_handshake_error = None
            self.daemon_unreachable = None
            assigned = welcome.get("project_id")
            if wire.is_valid_project_id(assigned) and assigned != self.project_id:
                # Zero-config pairing (§3): keep the assigned project for this file (saved
                # into the .blend) and name it explicitly from now on.
                log.info("vibesync: the daemon paired this file with project %r", assigned)
                self.project_id = assigned
            if self.transport is not None and self.project_id is not None:
                self.transport.update_hello(project_id=self.project_id)
            # The daemon may have restarted: tell it everything we hold (idempotent).
            self.registered.clear()
            # Changes in flight when the last connection died may never have been committed:
            # re-send the full state of every object and collection as `create` (the daemon
            # drops repeats whose hash it already holds). Not a user edit. In slices: a big
            # file holds 20,000 bindings.
            applied = self.applied_hash
            to_register: set[str] = set()
            resend = []
            for b in identity.slices(list(self.registry.bindings.values())):
                if b is identity.YIELD:
                    yield
                elif b.alive:
                    to_register.add(b.uuid)
                    if b.kind in SYNCED_KINDS and b.uuid not in applied:
                        resend.append(b)
            self.to_register = to_register
            # They wait for the first replay (or the answer that there is none): sent before
            # it, from the old base_seq, a person's edit made while away was refused STALE
            # beside another editor's newer change of another part, and the resync undid it;
            # sent after a replay that kept them whole, their old parts overwrote that change.
            # What was last sent (and what was in flight) is kept as the base that tells the
            # person's parts from the replay's (`_parts_not_changed_here`).
            self.reconnect_base = {}
            for bnd in identity.slices(resend):
                if bnd is identity.YIELD:
                    yield
                    continue
                base = self.last_sent.pop(bnd.uuid, None)
                if base is not None:
                    self.reconnect_base[bnd.uuid] = (base, self.sent_parts.get(bnd.uuid, set()))
                self.quiet.add(bnd.uuid)
                key = (bnd.kind, bnd.session_uid)
                if key not in self.geometry_dirty:
                    # Captured once the gate opens. One whose geometry changed (every
                    # object, just after a file is loaded) stays marked: `_capture_one`
                    # hashes it before the gate (the replay waits for that,
                    # `_hashes_settled`); unmarked, it was never hashed, and after the
                    # wait the replay kept it as the person's work and sent it whole.
                    self.dirty.discard(key)
                self.gated_keys.add(key)
            self.out_ops.clear()
            self.automation_for.clear()  # captured again as the person's (the safe side)
            self.lost_over.clear()  # its base belongs to the connection that ended
            self.kept_lost.clear()  # so does its `away_base`; the replay re-sends kept work
            self.sent_parts.clear()
            self.request_parts.clear()
            self.parent_waiters.clear()
            if self.adoptable or self.gated_keys:
                self.connect_seq = self.engine.last_seq if self.connect_seq is None \
                    else min(self.connect_seq, self.engine.last_seq)
                self._await_adoption()
            if self.overtook_unheard:
                self._ask_overtaken()
            if self.paused and self.pause_reason:
                self._send({"type": wire.MessageType.EDITOR_STATE,
                            "state": wire.EditorRunState.PAUSED, "reason": self.pause_reason})
            self.ai.on_connected(self)
            log.info("vibesync: connected (session %s, project %s, daemon seq %s); "
                     "registering %d datablocks", self.session_id, self.project_id,
                     welcome.get("seq"), len(self.to_register))
        elif kind == "disconnected":
            if self.connected:
                log.warning("vibesync: lost the daemon (%s); reconnecting with backoff",
                            payload.get("reason"))
            self.connected = False
            self.generation = None
            # Changes in flight that lost a loop here: re-sent from before that batch.
            for u, b in self.flight_base.items():
                if u in self.engine.inflight:
                    self.flight_lost[u] = min(b, self.flight_lost.get(u, b))
            self.flight_base.clear()
            self.engine.disconnected()
            self.collector.current = None
            self.live_deferred.clear()
            # Their results will not come: the replay after the reconnect tells (§6.4).
            self.overtook_unheard.update(self.overtook)
            self.overtook.clear()
            self.overtook_probe = None
            self.early_results.clear()
            self.applying_batch = None
        elif kind == "handshake_error":
            self.last_handshake_error = payload
            if payload.get("code") == "NO_TOKEN":
                self.daemon_unreachable = str(payload.get("message"))
            refused_pairing = payload.get("code") == wire.ErrorCode.BAD_PROJECT_ID or (
                payload.get("code") == wire.ErrorCode.BAD_MESSAGE
                and "project_id" in str(payload.get("message")))
            if refused_pairing and self.project_id is None and self.transport is not None:
                # A daemon that does not pair editors yet: the shared default project.
                log.warning("vibesync: the daemon needs a project id; using 'default'")
                self.project_id = "default"
                self.transport.update_hello(project_id=self.project_id)
            self._error(str(payload.get("code")), str(payload.get("message")))
        elif kind == "connect_failed":
            self.daemon_unreachable = str(payload.get("reason"))
        elif kind == "bad_frame":
            self.bad_frames += 1
            self._error(str(payload.get("code")), f"bad frame from the daemon: "
                        f"{payload.get('detail')}")
        elif kind == "message":
            if payload.get("generation") != self.generation:
                # From a connection this file has left (a file switch, §6.6): its replies
                # belong to the previous file (a `batch_result` would move this file's
                # replay position past objects it never received).
                log.debug("vibesync: dropped a %s from an earlier connection",
                          payload["message"].get("type"))
                return
            yield from self._message_steps(payload["message"], payload.get("attachment", b""))

    def _error(self, code: str, message: str, request_id: str | None = None) -> None:
        self.errors.append({"code": code, "message": message, "request_id": request_id,
                            "at": time.time()})
        log.error("vibesync: %s: %s%s", code, message,
                  f" (request {request_id})" if request_id else "")

    def _handle_message(self, msg: dict, attachment: bytes) -> None:
        """One message, handled whole."""
        identity.run_to_end(self._message_steps(msg, attachment))

    def _message_steps(self, msg: dict, attachment: bytes):
        """Handle one message; a generator yielding between slices of a big one."""
        t = msg["type"]
        rid = msg.get("request_id")
        if t == wire.MessageType.ACK:
            self.engine.seen_seq(msg.get("seq"))
            entry = self.engine.answered(rid)
            results = msg.get("results")
            if entry is None or not isinstance(results, list):
                log.warning("vibesync: ack for unknown request %r ignored", rid)
                return
            what, ctx = entry
            if what == wire.MessageType.REGISTER:
                yield from self._on_register_ack(ctx, results)
            elif what == wire.MessageType.TOMBSTONE:
                self._on_tombstone_ack(ctx, results, msg.get("seq"))
            elif what == wire.MessageType.CHANGE:
                named = self.named_meshes.get(rid, {})
                automation = self.automation_requests.pop(rid, None) is not None
                refusals = self.engine.on_change_ack(rid, results, named, automation)
                self.automation_deletes.pop(rid, None)
                self._meshes_answered(rid, taken=not refusals)
                self.retry_pause_s = RETRY_PAUSE_MIN_S
                for refused in refusals:
                    if refused.uuid not in self.engine.inflight:
                        self.flight_base.pop(refused.uuid, None)  # the daemon's answer is in
                    if refused.code == wire.ErrorCode.INVALID_FIELD and refused.uuid in named:
                        # Sent naming its geometry only, which the daemon no longer holds (it
                        # collects meshes nothing references): send it again, with it. Sent
                        # with it, an INVALID_FIELD is a real refusal (reported below).
                        self.daemon_meshes.pop(named[refused.uuid], None)
                        if self.engine.scene.alive(refused.uuid):
                            self.engine.scene.forget_sent(refused.uuid)
                            self.engine.scene.mark_for_capture(refused.uuid, geometry=True)
                        continue
                    self._error(refused.code, f"change {refused.uuid}: {refused.message}", rid)
        elif t == wire.MessageType.ERROR:
            code = str(msg.get("code"))
            entry = self.engine.answered(rid)
            if code == wire.ErrorCode.SAFE_MODE:
                # Read-only until a person clears it (§6.7): nothing is sent meanwhile.
                self.safe_mode = True
                self.safe_mode_reason = self.safe_mode_reason or str(msg.get("message", ""))
            if entry is not None and entry[0] == wire.MessageType.CHANGE:
                supported = self.engine.changes_supported
                automation = self.automation_requests.pop(rid, None)
                # What the agent made, read before the refusal forgets what was sent.
                made = self._made_by(automation, entry[1] or ()) if automation is not None else {}
                deleted = self.automation_deletes.pop(rid, [])
                again = self.engine.on_change_error(rid, code, str(msg.get("message", "")))
                self._meshes_answered(rid, taken=False)
                if again and made:
                    # An agent's change: it goes again as the agent's (never as a person's).
                    self.automation_for.update(made)
                if again and deleted:
                    # Its deletes too (nothing here captures a deleted object again).
                    self.out_ops.extend(({"op": wire.Op.DELETE, "uuid": u}, b"") for u in deleted)
                    self.automation_for.update((u, (automation, "")) for u in deleted)
                if again and code == wire.ErrorCode.SAFE_MODE:
                    log.warning("vibesync: the daemon is in safe mode; the change stays here, "
                                "not synced, and goes once a person clears safe mode")
                elif again:
                    # Not run, not evidence against the objects: everything it carried goes
                    # again, in full, once the pause has passed (a big first sync over the
                    # daemon's bytes budget loses nothing).
                    log.info("vibesync: the daemon answered %s; the change is sent again in %.2f s",
                             code, self.retry_pause_s)
                    self.send_after = time.monotonic() + self.retry_pause_s
                    self.retry_pause_s = min(self.retry_pause_s * 2, RETRY_PAUSE_MAX_S)
                    return
                if code == wire.ErrorCode.UNKNOWN_TYPE:
                    if supported:
                        log.warning("vibesync: the daemon does not accept `change` yet; "
                                    "change capture continues locally, sending is off for "
                                    "this connection")
                    return
            if entry is not None and entry[0] == wire.MessageType.REGISTER:
                self.to_register.update(entry[1]["uuids"])
            if entry is not None and entry[0] == wire.MessageType.TOMBSTONE:
                self.to_tombstone.update(entry[1])
            self._error(code, str(msg.get("message")), rid)
        elif t == wire.MessageType.PONG:
            self.engine.seen_seq(msg.get("seq"))
            self.engine.answered(rid)
        elif t == wire.MessageType.STATUS:
            self.engine.answered(rid)
            self.last_daemon_status = msg
        elif t == wire.MessageType.BATCH_RESULT:
            # Our own changes ended (committed / rolled_back / dropped): advance last_seq.
            # A first sync's result names thousands of uuids: handled in chunks (one
            # `SyncEngine.on_batch_result` each), last_seq moves once all of them are.
            raw = msg.get("uuids")
            raw = raw if isinstance(raw, list) else []
            self._loop_wait_answered(msg)
            kept_reason, kept_n = None, 0
            for start in range(0, len(raw), RESULT_CHUNK):
                if start:
                    yield
                effect = self.engine.on_batch_result(
                    dict(msg, uuids=raw[start:start + RESULT_CHUNK]))
                if effect.kept_local is not None:
                    kept_reason, kept_n = effect.kept_local, kept_n + len(effect.uuids)
                    for u in effect.uuids:
                        self.kept_parts.setdefault(u, set()).update(
                            self.sent_parts.get(u, set()) - {wire.Op.CREATE, wire.Op.DELETE, wire.Op.REPARENT})
                elif msg.get("outcome") in (wire.BatchOutcome.COMMITTED, wire.BatchOutcome.DROPPED):
                    for u in effect.uuids:
                        if u not in self.engine.not_synced:  # (still kept: edited again, above)
                            self.kept_parts.pop(u, None)
                self._forget_sent_parts(effect.uuids)
            if self._not_applied_yet(msg.get("batch_id")):
                self.early_results[msg["batch_id"]] = msg
            else:
                self._overtook_ended(msg)
            if kept_reason is not None:
                # D1: a person's edit stays here; it is marked and retried later (§6.4).
                log.warning("vibesync: %d object(s) not synced, kept as they are here: %s",
                            kept_n, kept_reason)
            seq = msg.get("seq")
            if any(b.held for b in self.batches):
                # Batches held here (PROTOCOL.md §6.4): last_seq stays before them, so the
                # `resync` asked once they can be applied brings what they carried.
                self.engine.seen_seq(seq)
            elif self.engine.result_done(seq) and self.transport is not None:
                self.transport.update_hello(last_seq=seq)
            if msg.get("outcome") == wire.BatchOutcome.ROLLED_BACK and kept_reason is None:
                log.warning("vibesync: batch %s rolled back (%s) for %s; the daemon re-sends "
                            "the authoritative state", msg.get("batch_id"),
                            msg.get("error_code"), msg.get("uuids"))
        elif t == wire.MessageType.LIVE:
            self._on_live(msg.get("change"), msg.get("mark"))
        elif t == wire.MessageType.ADDON_COMMAND:
            self.ai.queue(msg)
        elif t == wire.MessageType.PEERS:
            self.engine.on_peers(msg)
        elif t == wire.MessageType.QUARANTINE_RELEASED:
            self.engine.on_quarantine_released(msg)
        elif t == wire.MessageType.CONFLICT:
            self.engine.on_conflict(msg)
            log.warning("vibesync: conflict on %s (%s): %s won over %s", msg.get("uuid"),
                        msg.get("op"), msg.get("winner"), msg.get("loser"))
        elif t == wire.MessageType.SAFE_MODE:
            self.safe_mode = bool(msg.get("active"))
            self.safe_mode_reason = str(msg.get("reason", ""))
            self.held_reported, self.held_version = None, -1  # the daemon forgot any list
            log.warning("vibesync: daemon safe mode %s: %s",
                        "on" if self.safe_mode else "off", self.safe_mode_reason)
        elif t in (wire.MessageType.BATCH_BEGIN, wire.MessageType.APPLY,
                   wire.MessageType.BATCH_END):
            try:
                batch = self.collector.feed(msg, attachment)
            except apply_mod.BatchError as e:
                self._error(wire.ErrorCode.BAD_MESSAGE, str(e))
                return
            if msg.get("type") == wire.MessageType.BATCH_BEGIN:
                self.engine.batch_begun(msg.get("batch_id"))
                if self.live_deferred:
                    # Older than this batch, which brings their state (or a later one).
                    self.live_dropped["batches waiting"] += len(self.live_deferred)
                    self.live_deferred.clear()
            if batch is not None:
                self.batches.append(batch)
                if batch.path == "resync":
                    self.engine.resync_answered()  # the oldest `resync` request (§6.6)
        else:
            log.debug("vibesync: ignoring message of type %r", t)

    def _on_live(self, change, mark=None) -> None:
        """A live preview (§6.3): another editor's transform, rename or visibility, applied
        at once, outside any undo step (the batch that follows is the undo step), never
        answered. What is applied becomes the state this editor last knows as synced, so
        reading it back is no change of ours (no echo). Dropped — the window's batch brings
        the state — when it cannot be applied now or would overwrite a person's edit here."""
        try:
            apply_mod.validate_change(change)
        except apply_mod.BatchError as e:
            self._error(wire.ErrorCode.BAD_MESSAGE, f"live: {e}")
            return
        op, uuid = change["op"], change["uuid"]
        if op not in wire.FAST_OPS:
            self._error(wire.ErrorCode.BAD_MESSAGE, f"live: op {op} is not a fast-path op")
            return
        reason = self._live_refusal(uuid)
        if reason == "batches waiting" and self.collector.current is None:
            # Newer than every batch waiting or being applied: applied after them. Dropped,
            # a drag of many objects in the other editor was seen here only through its
            # batches (Blender is applying one most of the time).
            if self.live_deferred.pop((uuid, op), None) is not None:
                self.live_dropped["superseded"] += 1
            self.live_deferred[(uuid, op)] = (change, mark)
            return
        # A deferred one of the uuid and op is older than this one.
        if self.live_deferred.pop((uuid, op), None) is not None:
            self.live_dropped["superseded"] += 1
        if reason is not None:
            self.live_dropped[reason] += 1
            log.debug("vibesync: live %s of %s dropped: %s", op, uuid, reason)
            return
        b = self.registry.bindings[uuid]
        idb = self.registry.resolve(uuid)
        self.applying = True
        try:
            apply_mod.apply_live(change, self.registry)
        except apply_mod.Unrepresentable as e:
            # Every frame of a drag in the other editor: its batch says why, once.
            self.live_dropped["unrepresentable"] += 1
            log.debug("vibesync: live %s of %s not applied: %s", op, uuid, e)
            return
        except (LookupError, ValueError, TypeError, RuntimeError) as e:
            self.live_dropped["failed"] += 1
            log.warning("vibesync: live %s of %s not applied: %s", op, uuid, e)
            return
        finally:
            self.applying = False
        state = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
        if op == "transform":
            state = capture.snap_to(state, change)
        elif uuid in self.last_sent:
            # A rename or a hide leaves the pose as it was: in the form last sent or applied,
            # not the one Blender reads back (a mirrored scale through a parent inverse, §6.4).
            state = capture.keep_pose(state, self.last_sent[uuid])
        self.last_sent[uuid] = state
        # Hashed only if a capture of it needs the hash (`_applied_hash_of`): the hash was a
        # third of each preview's main-thread time.
        self.applied_hash[uuid] = capture.state_in_meters(state, self.unit_scale)
        if isinstance(mark, int) and not isinstance(mark, bool) and mark > 0:
            self.live_seen[uuid] = mark
        self.live_applied += 1

    def _apply_deferred_live(self, deadline: float) -> int:
        """The previews deferred while batches were applied (`live_deferred`), in arrival
        order, until `deadline` (at least one); each is checked again as it is applied (a
        person's edit made meanwhile wins, §6.3)."""
        n = 0
        while self.live_deferred and (n == 0 or time.perf_counter() < deadline):
            key = next(iter(self.live_deferred))
            change, mark = self.live_deferred.pop(key)
            self._on_live(change, mark)
            n += 1
        return n

    def _live_refusal(self, uuid: str) -> str | None:
        """Why a live preview of `uuid` is not applied now, or None
        (`SyncEngine.live_refusal`)."""
        b = self.registry.bindings.get(uuid)
        idb = self.registry.resolve(uuid) if b is not None else None
        held = idb is not None and uuid in self.last_sent
        busy = held and (apply_mod.modal_running() or capture.in_edit_mode(idb))
        # A batch being received, waiting, or being applied over several ticks is older than
        # the preview. Applied in the middle of one, the preview was undone by the batch's
        # answer: Blender held the preview's pose, remembered the batch's as synced, and
        # sent the preview's pose back as a person's move (tests/blender/test_sync.py
        # `test_a_live_preview_received_while_a_batch_is_applied_is_applied_after_it`).
        older = bool(self.batches) or self.apply_job is not None or self.collector.current is not None
        return self.engine.live_refusal(uuid, self.paused, older, held, busy, lambda: self._changed_here(uuid))

    def _on_register_ack(self, ctx: dict, results: list):
        """A register `ack` (up to MAX_REGISTER_PER_TICK items): a generator yielding
        between slices."""
        items = ctx["items"]
        for i, r in enumerate(results):
            if i and i % RESULT_CHUNK == 0:
                yield
            if not isinstance(r, dict) or i >= len(items):
                continue
            item = items[i]
            uuid = item["uuid"]
            status = r.get("status")
            if status in (wire.ItemStatus.REGISTERED, wire.ItemStatus.UPDATED, wire.ItemStatus.UNCHANGED):
                self.registered[uuid] = item["editor_ref"]
                self.duplicate_of.pop(uuid, None)
            elif status == wire.ItemStatus.COLLISION:
                self._daemon_collision(uuid, str(r.get("message")))
            else:
                self._error(str(r.get("error_code")), f"register {uuid} "
                            f"({item['editor_ref']}): {r.get('message')}", ctx.get("rid"))

    def _daemon_collision(self, uuid: str, message: str) -> None:
        """The daemon knows `uuid` as another datablock: our holder is the newcomer."""
        idb = self.registry.resolve(uuid)
        if idb is None:
            return
        if self.registry.derived_uuid(self.registry.bindings[uuid].kind, idb) is not None:
            # Linked data (or its override) has no property to give a fresh uuid: it is not
            # tracked, and nothing of it is sent over the datablock the daemon knows.
            b = self.registry.bindings.pop(uuid)
            self.registry.by_key.pop((b.kind, b.session_uid), None)
            self.registry.untracked[(b.kind, b.session_uid)] = f"{b.name}: {message}"
            self.last_sent.pop(uuid, None)
            log.warning("vibesync: daemon reported a collision for the linked %s %r (%s): %s; "
                        "not synced", b.kind, b.name, uuid, message)
            return
        fresh = identity.new_uuid()
        b = self.registry.bindings.pop(uuid)
        idb[identity.PROP] = fresh
        b.uuid = fresh
        self.registry.bindings[fresh] = b
        self.registry.by_key[(b.kind, b.session_uid)] = fresh
        event = {"original": uuid, "newcomer": fresh, "kind": b.kind, "name": b.name,
                 "source": "daemon", "message": message, "at": time.time()}
        self.collisions.append(event)
        self.duplicate_of[fresh] = uuid
        self.to_register.add(fresh)
        self.last_sent.pop(uuid, None)
        self.dirty.add((b.kind, b.session_uid))
        log.warning("vibesync: daemon reported a collision for %s (%s): %s; gave our %s %r "
                    "the fresh uuid %s", uuid, b.kind, message, b.kind, b.name, fresh)

    def _on_tombstone_ack(self, uuids: list, results: list, seq) -> None:
        """The person's deletes the daemon has tombstoned are resolved (§6.6): from now on a
        replay older than the tombstone (the ack's `seq`, its COMMIT) is stale for the uuid
        and skipped, and a newer one -- the uuid made again since, elsewhere -- is applied."""
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
        for i, r in enumerate(results):
            if not isinstance(r, dict) or i >= len(uuids):
                continue
            status = r.get("status")
            if status == wire.ItemStatus.TOMBSTONED:
                u = uuids[i]
                self.tombstoned.append(u)
                self.registered.pop(u, None)
                if seq > 0:
                    self.engine.tombstoned(u, seq)
                    self.deleted_here.discard(u)
            elif r.get("error_code") == wire.ErrorCode.NOT_FOUND:
                # Never registered, or already gone: nothing is left to tombstone, so a
                # saved delete is not sent again at the next connect.
                self.registered.pop(uuids[i], None)
                self.deleted_here.discard(uuids[i])
            else:
                self._error(str(r.get("error_code")), f"tombstone {uuids[i]}: "
                            f"{r.get('message')}")

    # ---------------------------------------------------------------- identity scans
    def _after_load(self) -> None:
        self.file_loaded = False
        self.event_job = None  # a message of the previous file's connection
        self.apply_job = None
        self._progress = None
        self.progress_job = None
        self.registry.clear()
        self.mesh_hashes.clear()
        self.mesh_blobs.clear()
        self.mesh_alias.clear()
        self.dirty.clear()
        self.geometry_dirty.clear()
        self.instancers.clear()
        self.instanced_by.clear()
        self.shared_encodings.clear()
        capture.forget_collection_geometry()
        self.waiting_edit.clear()
        self._drop_material_pass()
        self.batches.clear()
        self.collector.current = None
        self.live_deferred.clear()
        # Another file: its own project and replay position (§6.6), nothing of the last one.
        saved = saved_sync()
        capture.take_home(saved.home)
        saved_pid, saved_seq, self.file_has_registry = saved.project_id, saved.last_seq, saved.has_registry
        self.project_id = self.explicit_project_id or saved_pid
        self.engine.file_loaded(saved_seq if self.project_id == saved_pid else 0)
        self.last_sent.clear()
        self.resend_full.clear()
        self.reconnect_base.clear()
        self.applied_hash.clear()
        self.adoptable.clear()
        self.adopt_until = None
        self.gated_keys.clear()
        self._forget_away()
        self.parent_waiters.clear()
        self.loop_waiting.clear()
        self.loop_waiting_from.clear()
        self.registered.clear()
        self.to_register.clear()
        self.to_tombstone.clear()
        self.out_ops.clear()
        self.automation_for.clear()
        self.lost_over.clear()
        self.kept_lost.clear()
        self.sent_parts.clear()
        self.request_parts.clear()
        self.deleted_here.clear()
        if self.project_id == saved_pid and saved_pid:
            self._start_from(saved)
            self._resume_deletes(saved)
        self.quiet.clear()
        self.remote_deleted.clear()
        self.out_of_scene.clear()
        # The file's scan runs in slices from this tick on (`_scan_step`, reason "load");
        # nothing else reads the registry until it has finished.
        self.scan_job = None
        self.sweep_job = None
        self.scan_reason = "load"
        new_project = self.project_id
        self.unit_scale = current_unit_scale()
        if self.transport is not None:
            self._closing("another file was opened")
            self.transport.update_hello(project_id=new_project, unit_scale=self.unit_scale,
                                        last_seq=self.engine.last_seq)
            self.transport.reconnect()
            self.connected = False
            self.generation = None
            log.info("vibesync: file loaded; reconnecting as project %r from seq %d",
                     new_project, self.engine.last_seq)

    def _after_load_scan(self) -> None:
        try:
            self._check_persisted_registry()
        except Exception as e:  # never let a bad registry file break a load
            log.exception("vibesync: registry check failed")
            self.registry_check = {"agree": False, "problems": [str(e)]}

    def _check_persisted_registry(self) -> None:
        problems = []
        blend_doc = side_doc = None
        try:
            blend_doc = identity.read_text_block()
        except identity.RegistryFileError as e:
            problems.append(str(e))
        path = bpy.data.filepath
        if path:
            try:
                side_doc = identity.read_sidecar(identity.sidecar_path(path))
            except identity.RegistryFileError as e:
                problems.append(str(e))
        live = {u: b.as_dict() for u, b in self.registry.bindings.items() if b.alive}
        if blend_doc is None and side_doc is None and not problems:
            self.registry_check = {"agree": True, "problems": [], "note": "no saved registry"}
            return
        check = identity.compare(blend_doc, side_doc, live)
        check["problems"] = problems + check["problems"]
        check["agree"] = not check["problems"]
        self.registry_check = check
        if check["problems"]:
            log.warning("vibesync: saved registry differs (%d problems): %s",
                        len(check["problems"]), "; ".join(check["problems"][:5]))
        else:
            log.info("vibesync: .blend registry and sidecar agree (%d entries)",
                     check["blend_entries"])

    def _scan(self) -> None:
        """A whole scan now (a save, an agent's tool call, a rollback): a scan in progress
        is finished first."""
        while self.scan_job is not None or self.scan_reason is not None:
            self._scan_step(float("inf"))

    def _scan_step(self, deadline: float) -> bool:
        """Start or resume the scan; slices until `deadline` (at least one). True while it
        is still running."""
        if self.scan_job is None:
            reason = self.scan_reason or "scan"
            self.scan_job = (self._scan_steps(reason), reason)
            self.scan_big = len(bpy.data.objects) + len(bpy.data.meshes) \
                >= budget.GC_HOLD_MIN_ITEMS
            if self.scan_big and not self.paused:
                # The hold covers the scan itself: a scan that ends within its first tick
                # (a fast machine) still counts as a big sync, so its end freezes what it
                # made (budget.GcHold).
                self.gc_hold.update(True)
            self.scan_reason = None
            self.unknown_keys.clear()
            self.sweep_job = None
        steps = self.scan_job[0]
        while True:
            try:
                next(steps)
            except StopIteration:
                self.scan_job = None
                return False
            if time.perf_counter() >= deadline:
                return True

    def _scan_steps(self, reason: str):
        report = yield from self.registry.scan_steps()
        yield from self._report_steps(report, reason)
        if reason in ("initial", "load"):
            # The base this session started from (a saved file's, or the previous
            # session's in this file) names objects the scene no longer holds: a person
            # deleted them meanwhile (e.g. while disconnected) — their delete goes out.
            bindings = self.registry.bindings
            for u in [u for u in self.last_sent if u not in bindings or not bindings[u].alive]:
                self._vanished(u)
        if reason == "load":
            self._after_load_scan()

    def _handle_report(self, report, reason: str) -> None:
        """A whole report at once (a few new datablocks, a synchronous scan)."""
        for _ in self._report_steps(report, reason):
            pass

    def _report_steps(self, report, reason: str):
        """What a scan found, acted on in time slices (a generator: the first scan of a
        10,000-object file reports 20,000 datablocks; see `identity.slices`)."""
        for c in report.collisions:
            self.collisions.append(dict(c, source="local"))
            self.duplicate_of[c["newcomer"]] = c["original"]
        changed = report.new + report.revived + report.renamed
        self.deleted_here.difference_update(report.revived)  # undo of a delete
        self.to_register.update(changed)
        for u in identity.slices(report.vanished):
            if u is identity.YIELD:
                yield
                continue
            self._vanished(u)
        bindings = self.registry.bindings
        if reason in ("undo", "redo", "load"):
            # Report the rebound set: registering is idempotent (`unchanged`).
            self.to_register.update(report.rebound)
            yield from self._mark_dirty(report.rebound + report.revived)
            self.last_rebind = {"reason": reason, "rebound": len(report.rebound),
                                "revived": len(report.revived),
                                "vanished": len(report.vanished), "new": len(report.new),
                                "restored_props": len(report.restored_props),
                                "at": time.time()}
            log.info("vibesync: %s: rebound %d, revived %d, vanished %d, new %d uuids",
                     reason, len(report.rebound), len(report.revived), len(report.vanished),
                     len(report.new))
        if reason in ("initial", "load"):
            self.quiet.update(report.new)
            if not self.file_has_registry:
                for u in identity.slices(report.assigned):
                    if u is identity.YIELD:
                        yield
                        continue
                    b = bindings.get(u)
                    if b is not None and b.kind in SYNCED_KINDS:
                        self.adoptable[u] = (b.kind, b.name)
                if self.adoptable:
                    self._await_adoption()
        yield from self._mark_dirty(report.new + report.revived)

    def _mark_dirty(self, uuids: list):
        """Mark these uuids for capture (geometry too), in time slices."""
        bindings = self.registry.bindings
        for u in identity.slices(uuids):
            if u is identity.YIELD:
                yield
                continue
            b = bindings[u]
            self.dirty.add((b.kind, b.session_uid))
            if b.kind in ("mesh", "object"):
                self.geometry_dirty.add((b.kind, b.session_uid))

    def _vanished(self, uuid: str) -> None:
        if uuid in self.remote_deleted:
            self.remote_deleted.discard(uuid)
            return
        self.to_register.discard(uuid)
        if self.automation is not None and (uuid in self.last_sent or uuid in self.engine.inflight):
            self._deleted_by_automation(uuid, self.last_sent.get(uuid))
        else:
            self.to_tombstone.add(uuid)
            self.deleted_here.add(uuid)
            self._mark_user_edit()  # (not while capturing an agent's tool call)
            log.info("vibesync: %s deleted -> tombstone", uuid)
        self.last_sent.pop(uuid, None)
        self.resend_full.discard(uuid)
        self.applied_hash.pop(uuid, None)
        # Blender keeps the children of a deleted object: let the pump re-read them so their
        # `reparent` to null (and new local transform) goes out (§6.1).
        for child, st in self.last_sent.items():
            if st.get("parent") == uuid:
                b = self.registry.bindings.get(child)
                if b is not None and b.alive:
                    self.dirty.add((b.kind, b.session_uid))

    def _deleted_by_automation(self, uuid: str, sent: dict | None) -> None:
        """An agent's tool call deleted an object the daemon holds (`capture_now`): its delete
        goes as a `delete` change carrying the call's `automation`, never as a person's
        `tombstone` (PROTOCOL.md §5, §9.2). The other editors get it marked as automation's
        (`apply.automation`, §6.3): one holding a person's edit of the object does not apply
        it, and the delete rolls back everywhere — here too: the daemon re-sends the object
        (§6.4), and its mesh, which no object uses now, is kept for it
        (`apply.keep_data_of_deleted`). It is no person's activity."""
        self.automation_for.pop(uuid, None)
        copy = self.copied_before_call.pop(uuid, None)
        h = (sent or {}).get("mesh_hash")
        if copy is not None:
            # The call named it: copied whole before it ran (`router.Router.run`), its
            # modifiers, constraints and custom properties with it.
            apply_mod.keep_copy(uuid, copy, self.registry)
        elif h:
            if self.meshes_by_hash is None:  # once per tool call, not per deleted object
                self.meshes_by_hash = {}
                for mu, mh in self.mesh_hashes.items():
                    self.meshes_by_hash.setdefault(mh, []).append(mu)
            for mu in self.meshes_by_hash.get(h, ()):
                me = self.registry.resolve(mu)
                if isinstance(me, bpy.types.Mesh) and me.users == 0 and me.library is None:
                    apply_mod.keep_data_of_deleted(uuid, str(sent.get("name") or me.name), me, self.registry)
                    break
        self.out_ops.append(({"op": wire.Op.DELETE, "uuid": uuid}, b""))
        log.info("vibesync: %s deleted by %s -> delete", uuid, self.automation.get("tool"))

    def _shown_differently(self, uuid: str, kind: str, idb) -> bool:
        """Is an object shown otherwise than it was last sent? Hiding it with the outliner's
        eye or H (`hide_set`) changes the view layer, and Blender reports only a scene
        update, never one of the object: the sweep compares (a `visibility` change, §6.1).
        Likewise an object that left the synced scene or came back to it (no update of the
        object: it left the dependency graph, or joined it as a new one): an O(1) lookup."""
        if kind == "collection":
            return (uuid in self.out_of_scene) == self.registry.collection_in_home_scene(idb)
        if kind != "object":
            return False
        if (uuid in self.out_of_scene) == self.registry.in_home_scene(idb):
            return True  # `_capture_one` sends its delete, or its create
        return self._hidden_differently(uuid, kind, idb)

    def _renamed_differently(self, uuid: str, idb) -> bool:
        """Is a datablock named otherwise than it was last sent (a rename, which Blender
        reports as no update of it)? O(1): what was sent against its name."""
        sent = self.last_sent.get(uuid)
        if sent is None or idb is None:
            return False
        try:
            return sent.get("name") != idb.name
        except ReferenceError:
            return False

    def _hidden_differently(self, uuid: str, kind: str, idb) -> bool:
        """Is an object or collection shown otherwise than it was last sent (the outliner's
        eye, H)? O(1): what was sent against the view layer."""
        sent = self.last_sent.get(uuid)
        if sent is None or idb is None:
            return False
        try:
            if kind == "object":
                return sent.get("visible") != capture.is_visible(idb)
            if kind == "collection":
                return sent.get("visible") != capture.collection_visible(idb)
        except ReferenceError:
            return False
        return False

    def _sweep(self) -> None:
        """A whole sweep now."""
        self._sweep_step(float("inf"))

    def _sweep_step(self, deadline: float) -> None:
        """Start or resume the sweep; slices until `deadline` (at least one)."""
        if self.sweep_job is None:
            self.sweep_job = self.registry.sweep_steps(self._shown_differently)
            self.sweep_due_at = 0.0
        while True:
            try:
                next(self.sweep_job)
            except StopIteration as done:
                gone, renamed, unknown = done.value
                break
            if time.perf_counter() >= deadline:
                return
        self.sweep_job = None
        self.last_sweep = time.monotonic()
        for u in gone:
            self._vanished(u)
        self.dirty.update(renamed)
        self.unknown_keys.update(unknown)
        # The outliner's eye on a collection sends no depsgraph update of the collection:
        # compare what was sent (collections are few).
        for coll in bpy.data.collections:
            u = self.registry.uuid_for(coll)
            if u is not None and self._hidden_differently(u, "collection", coll):
                self.dirty.add(("collection", coll.session_uid))

    # --------------------------------------------------------------------- incoming
    def _apply_batches(self, deadline: float) -> int:
        n = 0
        if self.apply_job is not None:
            n += 1
            if not self._run_apply_job(deadline):
                return n
        if not self.batches:
            return n
        while self.batches and (n == 0 or time.perf_counter() < deadline):
            batch = self.batches[0]
            if self.paused:
                reason = f"paused: {self.pause_reason or 'by the user'}"
            else:
                reason = apply_mod.blocked_reason(batch, self.registry)
            if reason is not None:
                if self.blocked_reason != reason:
                    log.info("vibesync: batch %s deferred: %s", batch.batch_id, reason)
                self.blocked_reason = reason
                # Tell the daemon at once that we hold it (§6.4): it commits without us
                # instead of timing out and rolling the other editor's change back.
                for b in self.batches:
                    if not b.held:
                        b.held = True
                        self._send({"type": wire.MessageType.APPLIED, "batch_id": b.batch_id,
                                    "seq": b.seq, "hashes": {}, "held": True})
                return n
            self.blocked_reason = None
            if batch.held:
                # What we held may be outdated: drop held batches, ask for the current state
                # -- once what was edited meanwhile (in edit mode, say) is read and hashed,
                # so that the replay keeps only what really changed here (`_changed_here`);
                # at most RESYNC_SETTLE_S after the block ended.
                now = time.monotonic()
                if self.settle_since is None:
                    self.settle_since = now
                if not self._captures_settled() and now - self.settle_since < RESYNC_SETTLE_S:
                    return n
                self.settle_since = None
                held = [b for b in self.batches if b.held]
                self.batches = collections.deque(b for b in self.batches if not b.held)
                for b in held:
                    self.early_results.pop(b.batch_id, None)
                if self.overtook_probe is not None \
                        and any(b.request_id == self.overtook_probe for b in held):
                    self._ask_overtaken()  # its answer dropped unread: asked again
                self.request({"type": wire.MessageType.RESYNC,
                                        "since_seq": self.engine.last_seq})
                log.info("vibesync: %d held batch(es) dropped; asked for a resync since seq %d",
                         len(held), self.engine.last_seq)
                n += 1
                continue
            if batch.path == "resync" and batch.changes and not self._hashes_settled():
                # A replay keeps what was changed here (`_changed_here`); an object whose
                # mesh is still being hashed (every one, just after a file is loaded) cannot
                # be told apart yet and would be kept whole, its saved state sent over what
                # the other editor changed meanwhile. Wait for the hashes, at most
                # RESYNC_SETTLE_S. (An empty one — the answer to a `resync` asked at connect
                # — keeps nothing: applied at once, it is not applied seconds later, once
                # the editors were quiet.)
                now = time.monotonic()
                if self.replay_settle_since is None:
                    self.replay_settle_since = now
                if now - self.replay_settle_since < RESYNC_SETTLE_S:
                    return n
            self.replay_settle_since = None
            self.batches.popleft()
            self.apply_job = self._apply_steps(batch, {})
            self.apply_job_size = len(batch.changes)
            n += 1
            if not self._run_apply_job(deadline):
                return n
        return n

    def _run_apply_job(self, deadline: float) -> bool:
        """Go on applying the batch under way until `deadline` (or until it yields
        `budget.END_TICK`, or `budget.HEAVY_NEXT` once this tick has run more than
        `budget.HEAVY_START_S`); True when it is done. No other batch, capture or send runs
        before it has finished (`_tick`): the states it made are remembered as applied
        (echo suppression) only at its end."""
        started = time.perf_counter()
        try:
            while True:
                step = next(self.apply_job)
                now = time.perf_counter()
                if step is budget.END_TICK or now > deadline or (
                        step is budget.HEAVY_NEXT and now - started > budget.HEAVY_START_S):
                    return False  # resumed next tick
        except StopIteration:
            self.apply_job = None
            return True
        except Exception:
            self.apply_job = None
            self.applying_batch = None
            raise

    def _edited_here(self, uuid: str) -> bool:
        """Changed here and not sent yet (deleted, dirty, waiting for edit mode, a parent,
        the first replay after connecting (`gated_keys`) or its mesh's hash on the worker
        thread: captured, not read back yet)."""
        if uuid in self.deleted_here:
            return True
        b = self.registry.bindings.get(uuid)
        if b is None or not b.alive:
            # Gone here and its delete resolved: a mark left on it (a replay it kept while
            # the delete was unresolved marks it for capture) is no edit — nothing is left
            # to capture, and a newer replay that makes it again is applied (§6.6).
            return False
        key = (b.kind, b.session_uid)
        idb = self.registry.resolve(uuid)
        if b.alive and idb is None:
            return True  # deleted here, not noticed by a sweep yet
        if key in self.dirty or key in self.geometry_dirty or key in self.waiting_edit \
                or key in self.gated_keys \
                or any(key in keys for keys in self.parent_waiters.values()):
            return True
        if self._renamed_differently(uuid, idb):
            # Renamed since it was sent: no update of the object either (only the sweep
            # finds it) — too late for a batch applied now, whose name would overwrite the
            # person's before it was ever sent (§6.4). Captured now.
            self.dirty.add(key)
            return True
        if self._hidden_differently(uuid, b.kind, idb):
            # Hidden or shown with the outliner's eye (or H) since it was sent: Blender
            # reports no update of the object, so only the sweep would find it — too late
            # for a batch applied now, whose answer (or a replay) would turn the person's
            # eye back (§6.4). Captured now.
            self.dirty.add(key)
            return True
        if not self.mesh_jobs or idb is None or b.kind != "object":
            return False
        # Its (generated or own) geometry is being hashed on the worker: one lookup each.
        return uuid in self.mesh_jobs or capture.geometry_key(self.registry, idb) in self.mesh_jobs

    def _changed_here(self, uuid: str) -> bool:
        """`_edited_here`, read off the scene where a mark does not prove an edit: a
        depsgraph update marks every object it touches (our own applies, a selection, a
        visit to edit mode), so a replay keeps a uuid only when what it holds differs from
        what the daemon last had from it, or when that is not known yet (in edit mode,
        waiting for a parent, its geometry not hashed yet: hashes are made off the main
        thread). A visit to edit mode without an edit made a replay keep the object and
        send it in full, which overwrote the other editor's move of it (PROTOCOL.md §6.6);
        the resync after such a visit waits for its capture (`_captures_settled`)."""
        if not self._edited_here(uuid):
            return False
        b = self.registry.bindings[uuid]
        key = (b.kind, b.session_uid)
        idb = self.registry.resolve(uuid)
        prev = self.last_sent.get(uuid)
        if prev is None and uuid in self.reconnect_base:
            prev, in_flight = self.reconnect_base[uuid]
            if in_flight:
                return True  # sent before the connection dropped, maybe never taken
        if uuid in self.deleted_here or idb is None or prev is None \
                or key in self.geometry_dirty or key in self.waiting_edit \
                or any(key in keys for keys in self.parent_waiters.values()):
            return True
        if b.kind == "object" and capture.in_edit_mode(idb):
            return True
        mu = capture.geometry_key(self.registry, idb) if b.kind == "object" else None
        if mu is not None and (mu in self.mesh_jobs or mu in self.alias_jobs):
            return True
        now = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
        return bool(capture.diff_ops(uuid, prev, now))

    def _parts_not_changed_here(self, item, batch: bool = False) -> list | None:
        """A replayed `create` of a uuid kept for local work (§6.6), cut to the parts of it
        this editor did not change: the ops that bring those parts to the replay's state,
        ready to apply. What was last sent becomes the replay's state, so only the parts the
        person changed here are sent after. A mesh modelled in Edit Mode while a person in
        Unity moved the object: the move is applied here, the mesh is sent, both stand (it
        was sent in full, and the old pose in it undid the move in Unity).

        A geometry not read or hashed yet is hashed here, so a reshape the person just made
        is spared too. None — keep the whole uuid and send it in full, as before — when the
        item is no `create`, or what Blender holds is not fully known yet (nothing sent
        before, generated geometry not evaluated yet, edit mode, a parent awaited).
        `batch`: a batch's `create` over a person's edit (§6.4), cut the same way; over the
        editor's own full state kept not synced or on its way, only the parts changed again
        since it was sent are spared."""
        change, attachment = item
        uuid = change.get("uuid")
        if change.get("op") != wire.Op.CREATE or uuid in self.deleted_here \
                or (uuid in self.engine.not_synced and not batch):
            return None  # a replay never touches kept work (§6.6)
        b = self.registry.bindings.get(uuid)
        idb = self.registry.resolve(uuid) if b is not None else None
        prev = self.last_sent.get(uuid)
        away: set[str] = set()
        if prev is None and uuid in self.reconnect_base:
            prev, away = self.reconnect_base[uuid]  # sent before the connection dropped
        if b is None or idb is None or prev is None:
            return None
        key = (b.kind, b.session_uid)
        if key in self.waiting_edit or any(key in keys for keys in self.parent_waiters.values()):
            return None
        reshaped = False
        if b.kind == "object":
            if capture.in_edit_mode(idb):
                return None
            mu = capture.geometry_key(self.registry, idb)
            if mu is not None and mu in self.alias_jobs:
                return None
            if key in self.geometry_dirty or (mu is not None and mu in self.mesh_jobs):
                if mu is None or idb.type != "MESH" or capture.generated_geometry(idb):
                    return None
                # A geometry not read or hashed yet (the person may have just reshaped it):
                # hashed here, once — rare, another editor's full state over an unsent edit —
                # so that a reshape is spared and nothing else is.
                own = wire.mesh_hash(capture.mesh_attachment(idb.data, self.unit_scale))
                alias = self.mesh_alias.get(mu)
                reshaped = own != self.mesh_hashes.get(mu) and not (alias and alias[0] == own)
        elif key in self.geometry_dirty:
            return None
        now = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
        if ("mesh_hash" in prev) != ("mesh_hash" in now):
            return None
        theirs = _full_state(change)
        if theirs.get("kind") != now["kind"]:
            return None
        # What was sent and is not resolved yet is the person's too (`last_sent` has it).
        in_flight = self._unresolved_sent_parts(uuid)
        since_sent = {op["op"] for op in capture.diff_ops(uuid, prev, now)} \
            | ({wire.Op.MESH} if reshaped else set())
        # Only a batch's: a replay is older than a full state on its way, which keeps the
        # whole uuid (below; §6.6) — cut to the parts changed since it was sent, a replay's
        # older visibility hid an object the daemon then committed shown (seed 212).
        if batch and (wire.Op.CREATE in in_flight or (uuid in self.engine.not_synced and not in_flight)):
            # A batch's: its own full state, kept here not synced or on its way, is overtaken
            # by the other editor's newer one: applied whole (the daemon reads a full state
            # sent as sparing nothing, §6.4) — but a part the person changed again since it
            # was sent, not sent yet, is spared like any. Applied whole, the batch moved back
            # an object the person had just moved, and the move was never sent. A move or
            # hide of a kept object on its way (sent before its batch rolled back) is no full
            # state: its parts are spared, as the daemon reads them; applied whole, the
            # other editor's full state took the person's hide away, and Blender then sent
            # its kept object again with the other's value as the person's.
            # So are the parts of the person's kept edit (a rename whose batch rolled back):
            # the other editor's full state writes only what its person changed (§6.2), and
            # applied whole it took the kept rename away — nobody's name in both editors.
            kept = self._kept_parts(uuid)
            if not since_sent and not kept:
                return None
            in_flight, mine = set(), since_sent | kept
        else:
            mine = since_sent | away | in_flight | self._kept_parts(uuid)
        if wire.Op.CREATE in mine or wire.Op.DELETE in mine:
            return None
        parts = [(op, attachment if op["op"] == wire.Op.MESH else b"")
                 for op in capture.diff_ops(uuid, now, theirs) if op["op"] not in mine]
        # The new base: the replay's state with the parts of a change in flight as sent (what
        # the daemon holds once it commits), so they are not sent again after it.
        self.last_sent[uuid] = capture.with_parts(theirs, prev, in_flight)
        self.reconnect_base.pop(uuid, None)
        return parts

    def _parts_changed_here(self, uuid: str) -> set[str]:
        """The ops (`change.op` names, §6.1) of a person's changes of `uuid` here that the
        daemon has not taken yet: what differs between the scene and what was last sent or
        applied, what was sent and is unresolved, and a mesh being read or hashed. Never a
        `create` or `delete` (the object's existence is not spared)."""
        b = self.registry.bindings.get(uuid)
        idb = self.registry.resolve(uuid) if b is not None else None
        out = set(self._unresolved_sent_parts(uuid))
        prev = self.last_sent.get(uuid)
        if idb is None or prev is None:  # gone here, or never sent: nothing to compare with
            return out - {wire.Op.CREATE, wire.Op.DELETE}
        key = (b.kind, b.session_uid)
        if b.kind == "object":
            mu = capture.geometry_key(self.registry, idb)
            if mu is not None and idb.type == "MESH" and not capture.generated_geometry(idb) \
                    and (key in self.geometry_dirty or mu in self.mesh_jobs):
                # Marked, not proven (a material slot, a visit to edit mode) or still being
                # hashed: hashed here, once, so that only a real edit is spared — a mark
                # taken for an edit would send the old mesh back over the other person's.
                own = wire.mesh_hash(capture.mesh_attachment(idb.data, self.unit_scale))
                alias = self.mesh_alias.get(mu)
                if own != self.mesh_hashes.get(mu) and not (alias and alias[0] == own):
                    out.add(wire.Op.MESH)
        if key not in self.waiting_edit:
            now = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            out |= {op["op"] for op in capture.diff_ops(uuid, prev, now)}
        return out - {wire.Op.CREATE, wire.Op.DELETE}

    def _leave_out_loops(self, batch) -> list[str]:
        """A batch's `reparent` that would make a parent loop here with a reparent a person
        made here and the daemon has not taken yet (sent without a result, or not captured
        yet): the other editor's, made before it heard of this one. It is not applied -- the
        object stays where it is -- and the answer is the state the batch made, as for a part
        the person changed (PROTOCOL.md §6.4). The person's reparent, sent after, then loses
        to it as a conflict, and the daemon corrects this editor with every object on the
        cycle (§6.1). Applied, Blender refused the loop, the batch rolled back, and each
        editor kept its own reparent, not synced, for good. The loop is read over the parents
        the batch's ops leave (`batch_parents`): a kept reparent that the same batch's
        `create` of that object overwrites loops no more. Returns those uuids."""
        looped: list[str] = []
        base = min(self.engine.last_seq, batch.seq - 1)
        batch_parents = {c["uuid"]: (c.get("parent") if c["op"] != wire.Op.DELETE else None)
                         for c, _ in batch.changes
                         if c.get("op") in (wire.Op.REPARENT, wire.Op.CREATE, wire.Op.DELETE)}
        for change, _ in batch.changes:
            if change.get("op") != wire.Op.REPARENT or not change.get("parent"):
                continue
            own = self._own_reparent_looping(change["uuid"], change["parent"], batch_parents)
            if own is None:
                continue
            looped.append(change["uuid"])
            self.loop_waiting[change["uuid"]] = change["parent"]
            self.loop_waiting_from[change["uuid"]] = str(batch.batch_id)
            if own in self.engine.inflight:
                self.flight_base[own] = min(base, self.flight_base.get(own, base))
            else:
                # Not sent yet: it goes from the seq Blender had before this batch, made
                # without it, so the daemon can tell it lost (§6.1 `STALE`), not refuse it as
                # a loop this editor knew of (`INVALID_FIELD`).
                self.away_base[own] = min(base, self.away_base.get(own, base))
                if own in self.engine.not_synced:
                    # Kept here, not synced: sent again whole after the answer (`_apply_steps`).
                    self.kept_lost.add(own)
        if looped:
            batch.changes = [item for item in batch.changes
                             if not (item[0].get("op") == wire.Op.REPARENT
                                     and item[0].get("uuid") in looped)]
            log.info("vibesync: batch %s: %d reparent(s) would loop with a person's reparent "
                     "here; not applied, answered as made: %s", batch.batch_id, len(looped),
                     looped[:20])
        return looped

    def _loop_wait_answered(self, result: dict) -> None:
        """A batch's result: a parent one of its reparents left waiting for a loop here
        (`_leave_out_loops`) is the daemon's if it committed; rolled back, it is not, and the
        object waits for it no more (PROTOCOL.md §6.4)."""
        if not self.loop_waiting_from:
            return
        bid = str(result.get("batch_id"))
        for u in [u for u, b in self.loop_waiting_from.items() if b == bid]:
            del self.loop_waiting_from[u]
            if result.get("outcome") == wire.BatchOutcome.ROLLED_BACK:
                self.loop_waiting.pop(u, None)

    def _attach_loop_waiting(self, batch) -> None:
        """Objects a batch's reparent was left out of for a loop with a person's reparent here
        (`_leave_out_loops`) go under the batch's parent once that is no loop here any more:
        the person's reparent lost, and its correction is applied (PROTOCOL.md §6.4). The
        daemon holds that parent, and the correction does not always name the object (two of
        the person's reparents made the loop: model seed 217). The batch's doing, not a
        person's edit: what was last sent of it takes the parent, and nothing is sent. One the
        person reparented meanwhile, or that is gone, waits no more; one whose parent is not
        here yet still waits."""
        attach = apply_mod.Batch(batch.batch_id, batch.seq, batch.path, 0)
        for uuid, parent in list(self.loop_waiting.items()):
            ob = self.registry.resolve(uuid)
            if not isinstance(ob, bpy.types.Object) or uuid not in self.last_sent \
                    or wire.Op.REPARENT in self._parts_changed_here(uuid):
                del self.loop_waiting[uuid]
                continue
            pob = self.registry.resolve(parent) if parent else None
            if parent and not isinstance(pob, bpy.types.Object):
                continue  # not here yet
            x = pob
            while x is not None and x != ob:
                x = x.parent
            if x is not None:
                continue  # still a loop here
            attach.changes.append(({"op": wire.Op.REPARENT, "uuid": uuid, "parent": parent}, b""))
        if not attach.changes:
            return
        result: dict = {}
        steps = apply_mod.apply_batch_steps(attach, self.registry, self.unit_scale, result,
                                            self.mesh_hashes, None)
        self.applying = True
        try:
            for _ in steps:
                pass
        finally:
            self.applying = False
            self.registry.membership_changed()
        failed = {f.get("uuid") for f in result.get("failed", ())}
        for c, _ in attach.changes:
            uuid = c["uuid"]
            if uuid in failed:
                continue  # still waits
            del self.loop_waiting[uuid]
            self.last_sent[uuid] = {**self.last_sent[uuid], "parent": c["parent"]}
            self.applied_hash.pop(uuid, None)
        log.info("vibesync: batch %s: %d object(s) put under the parent a loop kept them from: %s",
                 batch.batch_id, len(attach.changes) - len(failed), [c["uuid"] for c, _ in attach.changes][:20])

    def _own_reparent_looping(self, uuid: str, parent: str,
                              batch_parents: dict[str, str | None]) -> str | None:
        """When `parent` is under `uuid` here (its parent chain leads to it) through an object
        whose parent a person changed here and the daemon has not taken: that object's uuid.
        The chain takes an object's parent from `batch_parents` (uuid -> the parent the
        batch's ops leave it with) where the batch names it."""
        ob, pob = self.registry.resolve(uuid), self.registry.resolve(parent)
        if not isinstance(ob, bpy.types.Object) or not isinstance(pob, bpy.types.Object):
            return None
        by_key = self.registry.by_key
        chain, seen, x = [], set(), pob
        while x is not None and x != ob:
            if x.session_uid in seen:
                return None
            seen.add(x.session_uid)
            chain.append(x)
            xu = by_key.get(("object", x.session_uid))
            if xu in batch_parents:
                nxt = self.registry.resolve(batch_parents[xu]) if batch_parents[xu] else None
                x = nxt if isinstance(nxt, bpy.types.Object) else None
            else:
                x = x.parent
        if x is None:
            return None  # no loop (a pointer walk: the person's parts are read only for one)
        for x in chain:
            xu = by_key.get(("object", x.session_uid))
            if xu is not None and (wire.Op.REPARENT in self._parts_changed_here(xu)
                                   or wire.Op.CREATE in self._unresolved_sent_parts(xu)
                                   or (xu in self.engine.not_synced
                                       and xu not in self.engine.inflight)):
                # Its own reparent, or its whole state, not taken yet -- or kept here, not
                # synced (its batch rolled back, kept_local): the daemon has not taken that
                # either, and the loop is here only (what of it is the person's is not known
                # any more: what was sent became its base, so it goes whole).
                return xu
        return None

    def _leave_out_deleted_here(self, batch, pending: set[str]) -> None:
        """Objects of a forwarded batch that the person deleted here before it was applied:
        nothing of them is applied (they are gone) and the answer leaves them out, and their
        delete goes to the daemon now, before the answer — so the daemon has it when the
        answer arrives: the delete is the later writer, a conflict the batch's change lost,
        and the batch is no failed propagation (PROTOCOL.md §6.2, §6.4). Answered before
        the delete was sent, the batch rolled back over a delete that then went through."""
        bindings = self.registry.bindings
        gone = set()
        for u in pending:
            b = bindings.get(u)
            if u in self.deleted_here or (b is not None and b.alive and self.registry.resolve(u) is None):
                gone.add(u)
        if not gone:
            return
        for u in gone:
            if u not in self.deleted_here:
                self._vanished(u)
        batch.changes = [item for item in batch.changes if item[0].get("uuid") not in gone]
        if self.connected and not self.paused and not self.safe_mode:
            self._send_tombstones()
        log.info("vibesync: batch %s changes %d object(s) deleted here before it arrived; "
                 "not applied, the delete sent first: %s", batch.batch_id, len(gone),
                 sorted(gone)[:20])

    def _keep_from_automations_delete(self, batch, pending: set[str]) -> dict[str, set[str]]:
        """A forwarded `delete` that automation made (`apply.automation`) of an object a
        person here changed and the daemon has not taken yet: not applied. The object stays,
        with the person's edit; the answer is the state Blender holds, so the batch rolls back
        and automation's delete is undone everywhere (PROTOCOL.md §6.4: only automation's
        changes are rolled back everywhere). The person's edit is then sent as usual. A
        person's delete in the other editor is still applied (a conflict the delete won,
        `_report_deleted_over`). A person's edit kept here not synced (its batch rolled back)
        is spared the same way. uuid -> the ops of the person's edit."""
        out = {}
        # Only a delete that ends the batch's ops of its uuid: another editor's later change
        # of it in the same batch (its full state, say) brings the object back anyway.
        last = {c.get("uuid"): c.get("op") for c, _ in batch.changes}
        for c, _ in batch.changes:
            u = c.get("uuid")
            if c.get("op") != wire.Op.DELETE or last.get(u) != wire.Op.DELETE \
                    or (u, wire.Op.DELETE) not in batch.automation \
                    or u in self.deleted_here or self.registry.resolve(u) is None:
                continue  # not here (a person's delete of it goes its own way)
            # Read off the scene for every uuid automation deletes (few): a person's edit made
            # since the last capture (a rename, a move not sent yet) is spared too.
            mine = self._parts_changed_here(u)
            if mine:
                out[u] = mine
            elif u in self.engine.not_synced:
                out[u] = {"kept not synced"}
        if out:
            batch.changes = [item for item in batch.changes if item[0].get("uuid") not in out]
            log.info("vibesync: batch %s: automation's delete of %d object(s) a person here was "
                     "editing is not applied: %s", batch.batch_id, len(out), sorted(out)[:20])
        return out

    def _report_deleted_over(self, batch, pending: set[str]) -> None:
        """A forwarded `delete` of an object a person here changed and Blender has not sent
        yet: the delete is applied (the object's existence is not spared) and the person's
        change is still sent, from the `base_seq` Blender had before the batch, so the
        daemon refuses it `STALE` — a conflict the delete won, recorded in the WAL and shown
        in both editors (PROTOCOL.md §6.1). Without it the edit vanished with the object
        and nobody heard of it. A change already sent meets the same refusal by itself."""
        gone = {c.get("uuid") for c, _ in batch.changes if c.get("op") == wire.Op.DELETE}
        base = min(self.engine.last_seq, batch.seq - 1)
        for u in gone & pending:
            b = self.registry.bindings.get(u)
            idb = self.registry.resolve(u) if b is not None else None
            prev = self.last_sent.get(u)
            if idb is None or prev is None or (b.kind, b.session_uid) in self.waiting_edit:
                continue
            now = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            ops = [op for op in capture.diff_ops(u, prev, now)
                   if op["op"] not in (wire.Op.CREATE, wire.Op.DELETE, wire.Op.MESH)]
            if ops:
                self.lost_over.append((ops, base))
                log.info("vibesync: batch %s deletes %s, which a person here changed (%s); "
                         "the change is reported as a conflict the delete won", batch.batch_id,
                         idb.name, [op["op"] for op in ops])

    def _as_sent(self, uuid: str, made: dict) -> dict | None:
        """A batch left parts of `uuid` unapplied for a change of them sent from here and not
        ended yet (§6.4): the daemon has those values, in this batch or one to come, so they
        are remembered as sent — `made` (the state the batch made) with those parts as last
        sent, or None when there are none. A part the person has not changed again since is
        then no edit left to send; one they changed again differs from it and goes as an
        edit of its own. Remembered as the batch's value, an unchanged part read as an edit
        made after it: kept over the `resync` that corrects a conflict it lost, and sent
        again over the winner's value (found by an independent tester: Unity's move of a
        child, made as Blender deleted its parent, undone by Blender's old pose of it). And
        a part changed again to the very value the batch carried read as no edit at all: a
        hide sent, the object shown again, and another editor's full state (shown) in the
        batch — the daemon kept the hide, the person's show was never sent, and the next
        batch rolled back, both editors apart for good (random edits of names and the eye,
        seed 2). The Unity package remembers them so too (`asSent`, in `ApplyComplete`)."""
        prev = self.last_sent.get(uuid)
        sent = self._unresolved_sent_parts(uuid) - {wire.Op.CREATE, wire.Op.DELETE}
        if prev is None or not sent:
            return None
        return capture.with_parts(made, prev, sent)

    def _unresolved_sent_parts(self, uuid: str) -> set[str]:
        """The ops sent (or queued) for `uuid` whose change the daemon has not ended yet."""
        if uuid in self.engine.inflight or any(op.get("uuid") == uuid for op, _ in self.out_ops):
            return self.sent_parts.get(uuid, set())
        return set()

    def _forget_sent_parts(self, uuids) -> None:
        """These uuids' changes are resolved: what was sent of them is no longer unresolved
        local work (unless a newer change of theirs is queued or in flight). One pass over
        the queue: a first sync's result names thousands of uuids."""
        queued: dict[str, set[str]] = {}
        for op, _ in self.out_ops:
            queued.setdefault(op.get("uuid"), set()).add(op["op"])
        for u in uuids:
            if u not in self.engine.inflight:
                if u not in queued:
                    self.sent_parts.pop(u, None)
                    self.request_parts.pop(u, None)
                    self.flight_base.pop(u, None)
                    continue
            # Some of its changes ended: what the others carried (and the queued ones) stays.
            left = self.engine.inflight.requests.get(u, ())
            by_request = self.request_parts.get(u, {})
            if any(r not in by_request for r in left):
                continue  # not all known: kept whole, the safe side
            for r in [r for r in by_request if r not in left]:
                del by_request[r]
            self.sent_parts[u] = set().union(*by_request.values(), queued.get(u, ()))

    def _hashes_settled(self) -> bool:
        """What a replay needs to tell the person's edits apart is known: no geometry
        waits to be hashed, but that of fresh datablocks (`adoptable`: they wait for the
        replay themselves, and are new to it anyway)."""
        if self.mesh_jobs or self.alias_jobs:
            return False
        if not self.geometry_dirty:
            return True
        by_key = self.registry.by_key
        if all(by_key.get(k) in self.adoptable for k in self.geometry_dirty):
            return True
        self._forget_gone(self.geometry_dirty)
        return all(by_key.get(k) in self.adoptable for k in self.geometry_dirty)

    def _captures_settled(self) -> bool:
        """Nothing marked waits to be read or hashed: what the scene holds is known."""
        if self.waiting_edit or self.geometry_dirty:
            self._forget_gone(self.waiting_edit)
            self._forget_gone(self.geometry_dirty)
        return not (self.waiting_edit or self.geometry_dirty or self.mesh_jobs
                    or self.alias_jobs)

    def _forget_gone(self, keys: set) -> None:
        """Drop the keys of datablocks gone from the file -- deleted here, or by a delete
        applied from the other editor -- from a set of keys waiting to be read or hashed:
        nothing will ever read them, and a replay waiting for them waited its whole
        RESYNC_SETTLE_S each time (the bridge was not quiet after an applied delete)."""
        bindings, by_key = self.registry.bindings, self.registry.by_key
        for key in [k for k in keys if k[0] in identity.KIND_TABLE]:
            u = by_key.get(key)
            b = bindings.get(u) if u is not None else None
            if (b is not None and not b.alive) or self.registry.lookup(key[0], key[1]) is None:
                keys.discard(key)

    def _has_local_work(self, uuid: str) -> bool:
        """Changed here and not yet resolved by the daemon (unsent, or no batch_result)."""
        return uuid in self.engine.inflight or self._edited_here(uuid)

    def _kept_parts(self, uuid: str) -> set[str]:
        """The ops of the person's changes of `uuid` a rollback left kept here, while it is
        not synced and its full state is not on its way again (`kept_parts`)."""
        if uuid not in self.kept_parts:
            return set()
        if uuid not in self.engine.not_synced:
            self.kept_parts.pop(uuid, None)
            return set()
        if wire.Op.CREATE in self._unresolved_sent_parts(uuid):
            return set()  # sent again in full: that batch answers it (§6.4)
        return self.kept_parts[uuid]

    def _kept_part_overtaken(self, change: dict) -> None:
        """Another editor's plain op of a kept part, applied here, is its person's later edit
        (§6.4): that part holds the batch's value now, no longer the person's kept one, so a
        later full state of the other editor is no longer spared it. Still counted kept,
        Blender spared that part from the other person's newer full state, then sent the value
        it had received as its own person's over it (random edits, seed 66)."""
        ops = self.kept_parts.get(change.get("uuid"))
        if ops and change.get("op") != wire.Op.CREATE and change.get("op") in ops:
            ops.discard(change["op"])
            if not ops:
                self.kept_parts.pop(change["uuid"], None)

    def _overtaking(self, change: dict, seq: int) -> "Overtaken | None":
        """What a batch's `create` of an object kept here not synced is about to overwrite:
        another editor's full state of it, applied whole where the person's kept edit names
        no part (a kept create: nothing of it was ever committed, §6.4). None: not here."""
        uuid = change["uuid"]
        if uuid in self.engine.inflight:
            # Its own change is on its way (its full state sent again, say): the batch answers
            # that, and a rollback keeps it here (`kept_local`) as the daemon reads what this
            # editor was sent — put back, it held values the daemon did not know of, and their
            # re-sends never settled (random edits, seed 233).
            return None
        b = self.registry.bindings.get(uuid)
        idb = self.registry.resolve(uuid) if b is not None else None
        if idb is None or b.kind != "object":
            return None
        try:
            before = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            mesh = b""
            if before.get("mesh_hash") is not None and change.get("mesh_hash") != before["mesh_hash"] \
                    and idb.type == "MESH" and not capture.generated_geometry(idb):
                mesh = capture.mesh_attachment(idb.data, self.unit_scale)
        except (ReferenceError, RuntimeError, ValueError) as e:
            log.warning("vibesync: cannot read %s before a batch overwrites it: %s", uuid, e)
            return None
        return Overtaken(before, self.last_sent.get(uuid), mesh, _full_state(change), seq)

    def _not_applied_yet(self, batch_id) -> bool:
        """A batch this editor was sent and has not finished applying: still arriving, queued,
        or being applied over several ticks."""
        if not isinstance(batch_id, str):
            return False
        current = self.collector.current
        return batch_id == self.applying_batch \
            or (current is not None and current.batch_id == batch_id) \
            or any(b.batch_id == batch_id for b in self.batches)

    def _overtook_ended(self, result: dict) -> None:
        """A batch's `batch_result`, once the batch is applied here: what its full states
        overwrote of kept objects is put back if it rolled back, synced if it committed
        (§6.4). Not those whose change of this editor the result ends (`through`): what it
        keeps is its own."""
        overtook = self.overtook.pop(result.get("batch_id"), None)
        through = result.get("through") if isinstance(result.get("through"), dict) else {}
        overtook = {u: o for u, o in (overtook or {}).items() if u not in through}
        if overtook and result.get("outcome") == wire.BatchOutcome.ROLLED_BACK:
            self._undo_overtaken(result["batch_id"], overtook)
        elif overtook and result.get("outcome") == wire.BatchOutcome.COMMITTED:
            self._overtaken_synced(overtook)

    def _ask_overtaken(self) -> None:
        """Batches that overwrote kept objects here lost their `batch_result` with the
        connection: ask for what changed from before the oldest of them (§6.4). The answer
        names such an object only if a batch committed it: the daemon replays no state of a
        uuid it counts as kept here, and a rollback leaves it so (§6.6)."""
        since = min(o.seq for over in self.overtook_unheard.values() for o in over.values())
        self.overtook_probe = self.request({"type": wire.MessageType.RESYNC,
                                            "since_seq": max(since - 1, 0)})

    def _settle_unheard_overtaken(self, batch) -> None:
        """The answer to `_ask_overtaken`, before it is applied: what it does not name was
        rolled back and is put back as the person left it, and goes again, as after a rollback
        heard (`_undo_overtaken`); what it names committed (`_overtaken_synced`)."""
        named = set(batch.uuids())
        unheard, self.overtook_unheard = self.overtook_unheard, {}
        self.overtook_probe = None
        for batch_id, over in unheard.items():
            committed = {u: o for u, o in over.items() if u in named}
            rolled_back = {u: o for u, o in over.items() if u not in named}
            if rolled_back:
                log.info("vibesync: batch %s, whose result the lost connection took, did not "
                         "commit %s", batch_id, ", ".join(sorted(rolled_back)))
                self._undo_overtaken(batch_id, rolled_back)
                self.engine.retry_not_synced(sorted(u for u in rolled_back
                                                    if u in self.engine.not_synced))
            if committed:
                self._overtaken_synced(committed)
        self.dirty.update(self.overtook_gated)
        self.overtook_gated.clear()

    def _kept_state(self, uuid: str) -> dict | None:
        """What Blender holds of `uuid` while it is kept not synced; None when it is gone, synced,
        or cannot be read (logged)."""
        b = self.registry.bindings.get(uuid)
        idb = self.registry.resolve(uuid) if b is not None else None
        if idb is None or uuid not in self.engine.not_synced:
            return None
        try:
            return capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
        except (ReferenceError, RuntimeError, ValueError) as e:
            log.warning("vibesync: cannot read %s: %s", uuid, e)
            return None

    def _overtaken_synced(self, overtook: dict) -> None:
        """Another editor's full state of objects kept here not synced committed: where this
        editor holds it as the batch wrote it, the object is synced (the daemon holds what it
        holds, and no longer counts it kept here, §6.4); one the person changed since stays
        not synced, and that change goes in full as usual."""
        for uuid, o in overtook.items():
            now = self._kept_state(uuid)
            if now is not None and not capture.diff_ops(uuid, o.theirs, now) and uuid not in self.engine.inflight:
                self.engine.not_synced.synced([uuid])
                self.kept_parts.pop(uuid, None)

    def _undo_overtaken(self, batch_id: str, overtook: dict) -> None:
        """Another editor's full state of objects kept here not synced rolled back: what it
        overwrote of the person's work is put back (§6.4 "A person's edit is never undone").
        The rollback's correction cannot: those objects were never committed, so it is a
        `delete`, which a kept object skips. A part the person changed again since the batch
        stays as the person left it. Nothing is sent: the object is as it was before the
        batch, still not synced, and goes as usual when the person edits it again."""
        for uuid, o in overtook.items():
            now = self._kept_state(uuid)
            if now is None:
                continue  # gone, or synced since: what stands is the daemon's
            touched = {op["op"] for op in capture.diff_ops(uuid, o.theirs, now)}
            ops = [op for op in capture.diff_ops(uuid, now, o.before)
                   if op["op"] not in touched and (op["op"] != wire.Op.MESH or o.mesh)]
            if not ops:
                continue
            meshes: dict = {}
            back = []
            self.applying = True
            try:
                for op in ops:
                    # Each part on its own: one that cannot be put back (its parent deleted
                    # since, say) leaves the object where it is in that part only.
                    try:
                        apply_mod.apply_change(op, o.mesh if op["op"] == wire.Op.MESH else b"",
                                               self.registry, self.unit_scale, set(), meshes)
                        back.append(op["op"])
                    except (LookupError, ReferenceError, RuntimeError, ValueError) as e:
                        log.warning("vibesync: could not put back the %s of %s after batch %s "
                                    "rolled back: %s", op["op"], uuid, batch_id, e)
            finally:
                self.applying = False
                self.registry.membership_changed()
            if not back:
                continue
            for sid, (h, blob) in meshes.items():
                mu = self.registry.by_key.get(("mesh", sid))
                if mu is not None:
                    self.mesh_hashes[mu] = h
                    self.mesh_blobs[mu] = blob
            if o.last_sent is None:
                self.last_sent.pop(uuid, None)
                self.reconnect_base.pop(uuid, None)
            else:
                self.last_sent[uuid] = o.last_sent
                if uuid in self.reconnect_base:  # (read after a reconnect: `_ask_overtaken`)
                    self.reconnect_base[uuid] = (o.last_sent, self.reconnect_base[uuid][1])
            self.applied_hash.pop(uuid, None)
            log.info("vibesync: batch %s rolled back: %s put back as the person left it (%s)",
                     batch_id, uuid, ", ".join(back))

    def _adopt_steps(self, batch):
        """The first replay after connecting: fresh datablocks the daemon already knows
        (same kind and name; a crash before the first save lost their uuids) take back
        their uuids, so nothing is duplicated on either side. A generator yielding between
        slices (a 10,000-create replay, an unsaved file of 10,000 fresh datablocks)."""
        bindings = self.registry.bindings
        fresh = {}  # (kind, name) -> the fresh uuid (what the local file may hold twice)
        for u in identity.slices(list(self.adoptable)):
            if u is identity.YIELD:
                yield
                continue
            b = bindings.get(u)
            if b is not None and b.alive:
                fresh[(b.kind, b.name)] = u
        # Only what the replay names with a kind and name a fresh datablock has.
        incoming = []
        for item in identity.slices(batch.changes):
            if item is identity.YIELD:
                yield
                continue
            c = item[0]
            if c.get("op") == "create" and (c.get("kind"), c.get("name")) in fresh:
                incoming.append((c["uuid"], c.get("kind"), c.get("name")))
        alive = {u for u, _, _ in incoming if u in bindings and bindings[u].alive}
        pairs = engine.match_adoptions(incoming, fresh, alive)
        for item in identity.slices(list(pairs.items())):
            if item is identity.YIELD:
                yield
                continue
            old, new = item
            self.registry.rebind_uuid(old, new)
            b = self.registry.bindings[new]
            key = (b.kind, b.session_uid)
            for keys in (self.dirty, self.geometry_dirty, self.gated_keys):
                keys.discard(key)
            for table in (self.last_sent, self.applied_hash):
                table.pop(old, None)
            # What it holds now (the fresh file's) is its base: no edit of a person's, so the
            # replay's state — what was synced before the crash — is applied over it. With no
            # base it read as local work, the replay kept it, and the fresh state was sent
            # over the person's synced edits (a crash before the first save, some runs).
            idb = self.registry.resolve(new)
            if idb is not None and new not in self.reconnect_base:
                self.reconnect_base[new] = (
                    capture.read_state(idb, b.kind, self.registry, self.mesh_hashes), set())
            self.quiet.discard(old)
            self.to_register.discard(old)
            self.to_register.add(new)
            del self.adoptable[old]
        self.adopted += len(pairs)
        if pairs:
            log.info("vibesync: %d datablock(s) took back the uuids the daemon knows them by "
                     "(the file's uuids were never saved)", len(pairs))
        self._open_adopt_gate()

    def _await_adoption(self) -> None:
        """Fresh uuids wait for the first replay: the daemon may know these datablocks
        under their old uuids (a crash before the first save). Ask for what is new since
        now so that an answer comes even when there is nothing to replay; the daemon
        answers after the welcome replay (§6.6)."""
        if self.adopt_until is not None or not self.connected:
            return
        self.adopt_until = time.monotonic() + ADOPT_WAIT_S
        self.request({"type": wire.MessageType.RESYNC,
                                "since_seq": self.engine.daemon_seq})

    def _open_adopt_gate(self) -> None:
        self.adopt_until = None
        self.to_register.update(self.adoptable)
        self.adoptable.clear()
        self.dirty.update(self.gated_keys)
        self.gated_keys.clear()
        if self.connect_seq is not None:
            # What waits to be read now may hold a person's edits made while away: they go
            # from the seq they were made on, not the replay's (`_away_base_of`).
            by_key = self.registry.by_key
            for key in self.dirty:
                u = by_key.get(key)
                if u is not None:
                    self.away.setdefault(u, self.connect_seq)
            for u, b in self.flight_lost.items():
                if u in self.away:
                    self.away[u] = min(self.away[u], b)
            self.connect_seq = None
        self.flight_lost.clear()

    def _forget_away(self) -> None:
        """Another file, or a session that starts over: no edit made while away is left."""
        self.connect_seq = None
        self.away.clear()
        self.away_base.clear()
        self.replayed.clear()
        self.flight_base.clear()
        self.flight_lost.clear()

    def _away_base_of(self, op: dict) -> int | None:
        """The `base_seq` `op` goes with when it is a person's edit made while away (PROTOCOL.md
        §6.6): the seq this editor had when it was made, so that the daemon can tell it was
        made without another editor's newer change (a reparent closing a cycle with one is a
        conflict the earlier one won, §6.1). None: the current seq. A whole `create` of an
        object the first replay brought goes from the current seq (`replayed`)."""
        u = op.get("uuid")
        base = self.away_base.get(u)
        if base is None or (op.get("op") == wire.Op.CREATE and u in self.replayed):
            return None
        return base

    def apply_now(self, batch) -> dict:
        """Apply one batch, remember the applied state (echo suppression), answer."""
        result: dict = {}
        for _ in self._apply_steps(batch, result):
            pass
        return result

    def _apply_steps(self, batch, result: dict):
        """`apply_now` as a generator: yields after each change applied and each state read
        back, and between slices of every pass over the batch, so that `_apply_batches`
        spreads a big batch over ticks (docs/ARCHITECTURE.md "Main-thread budget"); after
        the `applied` answer it yields `budget.END_TICK` and pushes the batch's undo step on
        the next tick, once Blender has evaluated what the batch made. `result` is filled in
        when it is exhausted."""
        kept: list[str] = []
        keep: set[str] = set()
        self.applying_batch = batch.batch_id
        for c, _ in batch.changes:
            if c.get("op") in (wire.Op.CREATE, wire.Op.REPARENT, wire.Op.DELETE):
                self.loop_waiting.pop(c.get("uuid"), None)  # another parent of it (or its delete)
        if batch.path == "resync" and self.overtook_probe is not None \
                and batch.request_id == self.overtook_probe:
            self._settle_unheard_overtaken(batch)
        if batch.path == "resync" and self.connect_seq is not None:
            self.replayed.update(batch.uuids())  # the first replay since connecting
        if batch.path == "resync" and self.adopt_until is not None:
            yield from self._adopt_steps(batch)
        uuids = list(dict.fromkeys(batch.uuids()))
        if batch.path == "resync":
            # A replay never undoes local work: keep those uuids, send them instead (§6.6).
            for u in identity.slices(uuids):
                if u is identity.YIELD:
                    yield
                elif self.engine.replay_keeps(u, batch.seq, self._changed_here(u)):
                    kept.append(u)
            if kept:
                keep = set(kept)
                changes = []
                merged: set[str] = set()
                for item in identity.slices(batch.changes):
                    if item is identity.YIELD:
                        yield
                    elif item[0].get("uuid") not in keep:
                        changes.append(item)
                    else:
                        parts = self._parts_not_changed_here(item)
                        if parts is not None:
                            changes.extend(parts)
                            merged.add(item[0]["uuid"])
                batch.changes = changes
                uuids = [u for u in uuids if u not in keep]
                for u in identity.slices(kept):
                    if u is identity.YIELD:
                        yield
                    else:
                        self.engine.replay_kept(u, merged=u in merged)
                log.info("vibesync: resync %s: kept local changes of %d uuid(s) over the replay: "
                         "%s%s", batch.batch_id, len(kept), kept[:20],
                         " …" if len(kept) > 20 else "")
        kept_from_delete: dict[str, set[str]] = {}
        # Local edits of these uuids not sent yet: applying the batch must not swallow them.
        pending = set()
        for u in identity.slices(uuids):
            if u is identity.YIELD:
                yield
            elif self._has_local_work(u):
                pending.add(u)
        if self.kept_parts and batch.path != "resync":
            # Another editor's full state of an object whose person's edit is kept here: its
            # parts are spared (`_kept_parts`); a plain op is that person's later edit, applied.
            pending.update(c["uuid"] for c, _ in batch.changes
                           if c.get("op") == wire.Op.CREATE and self._kept_parts(c.get("uuid")))
        # What the batch made, for the answer: every change, also those spared below.
        answered = batch.changes
        spared: list[str] = []
        # The uuids whose parts to spare were decided as the batch began (below); any other,
        # pending too (its change merely in flight), is read again when the batch reaches it.
        decided: set[str] = set()
        if batch.automation and batch.path != "resync":
            kept_from_delete = self._keep_from_automations_delete(batch, pending)
        if pending and batch.path != "resync":
            self._leave_out_deleted_here(batch, pending)
            # A part a person changed here and the daemon has not taken yet (not captured,
            # or sent and unresolved) is not overwritten: that op is not applied, the
            # answer is still the state the batch made, and the person's edit is sent after
            # as a change of its own (§6.4). Applying it moved the object the person had
            # just moved, and their move was never sent.
            # (Those kept from automation's delete are no longer in the batch: not read again.)
            mine = {u: self._parts_changed_here(u) for u in pending if u not in kept_from_delete}
            decided = {u for u, parts in mine.items() if parts or self._kept_parts(u)}
            self._report_deleted_over(batch, pending)
            kept_ops = []
            for item in identity.slices(batch.changes):
                if item is identity.YIELD:
                    yield
                elif item[0].get("op") in mine.get(item[0].get("uuid"), ()):
                    spared.append(item[0]["uuid"])
                elif item[0].get("op") == wire.Op.CREATE and (mine.get(item[0].get("uuid"))
                                                              or self._kept_parts(item[0]["uuid"])):
                    # Another editor's full state of an object the person changed here (its
                    # not-synced edit sent again, say): the parts the person did not change,
                    # never the person's — a `create` names every part.
                    parts = self._parts_not_changed_here(item, batch=True)
                    if parts is None:
                        kept_ops.append(item)
                    else:
                        kept_ops.extend(parts)
                        spared.append(item[0]["uuid"])
                else:
                    kept_ops.append(item)
            if spared:
                batch.changes = kept_ops
                spared = list(dict.fromkeys(spared))
                log.info("vibesync: batch %s: a person's unsent edit of %d uuid(s) kept over "
                         "the same part in the batch: %s", batch.batch_id, len(spared),
                         spared[:20])
        loop_spared: list[str] = []
        if batch.path != "resync":
            loop_spared = self._leave_out_loops(batch)
        reached: set[str] = set()
        if batch.path != "resync":

            def spare(change, _attachment) -> bool:
                # A person's edit between two ticks of this batch, of a uuid the batch has not
                # reached yet: spared like one made before it (above) — also of a uuid whose
                # own change was merely in flight as the batch began. Left to that start, a
                # rename made between its ticks was overwritten by the editor's own full state
                # coming back in it, in both editors (random edits, seed 26).
                u = change.get("uuid")
                first = u not in reached
                reached.add(u)
                b = self.registry.bindings.get(u)
                # The outliner's eye (or H) marks nothing — Blender reports no update — so it
                # is read off the view layer (O(1)). Missed, Blender answered the object as
                # held differently than sent: the batch rolled back, the other person's move
                # with it, and the hide was not sent as the person's edit.
                idb = self.registry.resolve(u) if b is not None else None
                marked = b is not None and ((b.kind, b.session_uid) in self.dirty
                                            or self._hidden_differently(u, b.kind, idb)
                                            or self._renamed_differently(u, idb))
                if u in decided or not first or not marked:
                    return u in spared_now and change.get("op") in spared_now[u]
                parts = self._parts_changed_here(u)
                if not parts:
                    return False
                pending.add(u)
                spared.append(u)
                spared_now[u] = parts
                if change.get("op") == wire.Op.CREATE:
                    # Another editor's full state: the parts the person did not change, as
                    # for one found when the batch began (above).
                    cut = self._parts_not_changed_here((change, _attachment), batch=True)
                    return False if cut is None else cut
                return change.get("op") in parts

            spared_now: dict[str, set[str]] = {}
        else:
            late_kept: set[str] = set()

            def spare(change, attachment):
                # A person's edit between two ticks of this replay, of a uuid it has not
                # reached yet: kept as local work, like one found when the replay began
                # (above) — the replayed parts the person did not change are applied, the
                # person's are sent after (§6.6). Applying the replay's state whole undid a
                # move made while a big replay (the first after a reconnect) was applied.
                u = change.get("uuid")
                if u in keep or u in reached:
                    return u in late_kept  # planned when it began, or decided below
                reached.add(u)
                b = self.registry.bindings.get(u)
                if b is None or not self._changed_here(u):
                    return False
                parts = self._parts_not_changed_here((change, attachment))
                late_kept.add(u)
                keep.add(u)
                kept.append(u)
                self.engine.replay_kept(u, merged=parts is not None)
                log.info("vibesync: resync %s: a person's edit of %s made while it was applied "
                         "is kept over it", batch.batch_id, u)
                return True if parts is None else parts
        if batch.path != "resync" and self.kept_parts:
            sparing = spare

            def spare(change, attachment):
                instead = sparing(change, attachment)
                if instead is False:
                    self._kept_part_overtaken(change)
                return instead

        if batch.path != "resync" and len(self.engine.not_synced):
            overtaking = {}
            for item in identity.slices(answered):
                if item is identity.YIELD:
                    yield
                elif item[0].get("op") == wire.Op.CREATE and item[0].get("uuid") in self.engine.not_synced:
                    o = self._overtaking(item[0], batch.seq)
                    if o is not None:
                        overtaking[item[0]["uuid"]] = o
            if overtaking:
                self.overtook[batch.batch_id] = overtaking
        steps = apply_mod.apply_batch_steps(batch, self.registry, self.unit_scale, result,
                                            self.mesh_hashes, spare)
        try:
            while True:
                self.applying = True
                try:
                    step = next(steps)
                except StopIteration:
                    break
                finally:
                    self.applying = False
                yield step
        finally:
            self.registry.membership_changed()  # creates, deletes and reparents
        self.remote_deleted.update(result["deleted"])
        for uuid in result["deleted"]:
            # Gone here too: nothing was last sent of it any more, so a person's undo that
            # brings it back is a new object to send whole (a `create`, §6.1), not "unchanged".
            self.last_sent.pop(uuid, None)
            self.resend_full.discard(uuid)
            self.applied_hash.pop(uuid, None)
        for sid, (incoming_hash, blob) in result["meshes"].items():
            yield  # one mesh read (and, when small, encoded and hashed) per step
            mu = self.registry.by_key.get(("mesh", sid))
            me = self.registry.resolve(mu) if mu else None
            if me is None:
                continue
            # Our own encoding of the applied geometry differs from the sender's (normals,
            # flags); remember both so the applied mesh keeps the sender's hash: no echo.
            self.mesh_hashes[mu] = incoming_hash
            self.mesh_blobs[mu] = blob
            if len(me.vertices) > BIG_MESH_VERTICES:
                # On the (FIFO) worker: a capture of this mesh queued later waits for it.
                arrays = capture.read_mesh_arrays(me)
                fut = _mesh_pool().submit(_encode_and_hash, arrays, self.unit_scale)
                # (Captures waiting for an earlier job of this mesh wait for this one.)
                waiting = self.alias_jobs[mu][1][1] if mu in self.alias_jobs else set()
                self.alias_jobs[mu] = (fut, (incoming_hash, waiting))
            else:
                own = wire.mesh_hash(capture.mesh_attachment(me, self.unit_scale))
                self.mesh_alias[mu] = (own, incoming_hash)
        hashes = {}
        # Each uuid's changes, in order (one pass; `merge_applied` reads only its own).
        changes_of: dict[str, list] = {}
        for item in identity.slices(answered):
            if item is identity.YIELD:
                yield
            else:
                changes_of.setdefault(item[0]["uuid"], []).append(item)
        deleted = set(result["deleted"])
        # uuid -> why it was not applied as sent (`applied.failed`, §6.4).
        failed = {f["uuid"]: f["error"] for f in reversed(result["failed"])
                  if isinstance(f.get("uuid"), str)}
        for uuid in loop_spared:
            # Not applied (a loop with the person's reparent here): the answer is the state
            # the batch made; what Blender holds stays what it last sent or applied.
            if uuid not in result["touched"] and uuid in self.last_sent:
                made = capture.merge_applied(self.last_sent[uuid], changes_of.get(uuid, ()), uuid)
                hashes[uuid] = wire.state_hash(capture.state_in_meters(made, self.unit_scale))
        for uuid in dict.fromkeys(result["touched"] + kept + spared):
            yield
            if uuid in deleted:
                continue
            idb = self.registry.resolve(uuid)
            if idb is None:
                continue
            b = self.registry.bindings[uuid]
            state = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            mine = changes_of.get(uuid, ())
            pose = capture.incoming_poses(mine).get(uuid)
            if uuid not in keep and pose is not None:
                # Blender stores float32: what it holds is the sent pose within storage
                # precision; answer (and remember) the pose it was sent (§6.4, §6.5).
                state = capture.snap_to(state, pose)
            held_back = False
            answer_made = None
            remember = None  # what Blender is left holding, when not the answer (below)
            # An object this batch created has no last state; its `create` carries all of it
            # (a new object named like one Blender holds is the §6.1 name case too).
            created = any(c.get("op") == "create" and c.get("uuid") == uuid for c, _ in mine)
            if uuid not in keep and (uuid in self.last_sent or created):
                made = capture.merge_applied(self.last_sent.get(uuid, {}), mine, uuid)
                if uuid in loop_spared and uuid in self.last_sent:
                    # Its reparent left out (`_leave_out_loops`): it holds the rest.
                    held_made = {**made, "parent": self.last_sent[uuid].get("parent")}
                    answer_made = made
                else:
                    held_made = made
                # The pose the batch made, read back in another form (a mirrored scale
                # through a parent inverse: one matrix), is answered as made (§6.4).
                state = capture.keep_pose(state, held_made)
                differs = capture.differing_fields(
                    state, held_made, lambda p: self.registry.resolve(p) is not None)
                if uuid in pending or differs == ["name"]:
                    # The batch is applied; the person's newer edit of this uuid (e.g. a
                    # rename not reported yet), or the name Blender made of the one sent
                    # (§6.1), is a change of its own, sent after: answer the state the
                    # batch made (§6.4), keep the edit as what is left to send.
                    remember = self._as_sent(uuid, held_made)
                    state = held_made
                    self.dirty.add((b.kind, b.session_uid))
                elif differs:
                    # Blender holds something else than was sent, and no person here
                    # changed it: answer what it holds, so the batch rolls back and the
                    # other editor keeps its person's edit (§6.4). Never sent back as if a
                    # person here had made it: what was last sent stays what it was.
                    held_back = True
                    failed.setdefault(uuid, f"{idb.name}: Blender holds its {', '.join(differs)} "
                                            "differently than sent")
            h = wire.state_hash(capture.state_in_meters(state, self.unit_scale))
            hashes[uuid] = h
            if answer_made is not None and not held_back:
                # Answered as the batch made it; remembered as what Blender holds.
                hashes[uuid] = wire.state_hash(capture.state_in_meters(answer_made, self.unit_scale))
            if uuid in keep or held_back:
                continue  # ours, still to be sent, or not what was sent: not an applied state
            if uuid in spared and uuid not in self.last_sent and not created:
                # The person's edit kept over the batch, with nothing known as sent (its
                # base waits for a replay after a reconnect): what it holds is theirs, still
                # to be sent — never what was sent or applied. Remembered so, the person's
                # rename was never sent and the editors stayed apart (random edits, seed 48).
                continue
            self.last_sent[uuid] = remember if remember is not None else state
            if remember is None:
                self.applied_hash[uuid] = h
            else:
                # Parts on their way, spared: what the daemon holds of them is known only
                # once their change ends (their own value, or a winner's with its correction),
                # so no state of the uuid is an echo until then — told from what was last
                # sent alone. The answer's hash made the person's show of a hide on its way
                # read as an echo of the batch's value (random edits of names and the eye,
                # seed 2); the remembered state's made the person's hide read as one after
                # that hide lost to the other editor's show (the eye alone, seed 2).
                self.applied_hash.pop(uuid, None)
            if uuid not in self.registered:
                self.to_register.add(uuid)
        for uuid, ops in kept_from_delete.items():
            # Not deleted: answered as Blender holds it, so the batch rolls back and
            # automation's delete with it, everywhere (§6.4); the person's edit is sent after.
            idb = self.registry.resolve(uuid)
            b = self.registry.bindings.get(uuid)
            if idb is None or b is None:
                continue
            state = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            hashes[uuid] = wire.state_hash(capture.state_in_meters(state, self.unit_scale))
            failed[uuid] = (f"{idb.name}: a person in Blender was editing it ({', '.join(sorted(ops))}) "
                            "when automation's delete of it arrived; Blender keeps it")
            self.dirty.add((b.kind, b.session_uid))
        if batch.path == "resync" and self.away:
            # What the first replay applied here is what a person edits from now on: an edit
            # of it is made over the replay, not while away (a kept uuid is not in `uuids`).
            for uuid in uuids:
                if uuid in self.replayed and uuid not in keep:  # (kept while it was applied)
                    self.away.pop(uuid, None)
        for uuid in failed:
            if uuid not in keep and uuid in self.reconnect_base:
                # A replay's state this file cannot hold (a parent loop with a person's
                # offline reparent): what it held before is what it still holds and what the
                # daemon last had from it, never a person's edit to re-send (§6.6).
                self.last_sent[uuid] = self.reconnect_base.pop(uuid)[0]
        for uuid in result.get("rehomed", ()):
            # Moved out of a collection the batch deleted (apply._remove_collection): the
            # batch's doing, not the person's, so not sent back (no echo); the origin sends
            # its fate (PROTOCOL.md §6.1).
            idb = self.registry.resolve(uuid)
            if uuid in changes_of or uuid in deleted or uuid in keep or idb is None \
                    or uuid not in self.last_sent:
                continue
            b = self.registry.bindings[uuid]
            now = capture.read_state(idb, b.kind, self.registry, self.mesh_hashes)
            # Only the parent moved: any other edit of the person's is still to be sent.
            self.last_sent[uuid] = {**self.last_sent[uuid], "parent": now["parent"]}
        if self.loop_waiting:
            self._attach_loop_waiting(batch)
        # Synced now; a parent that was missing arrived, or was deleted: its kept-local
        # children go again.
        self.engine.applied(batch.seq, set(hashes), set(keep) | kept_from_delete.keys(),
                            lambda u: (self.last_sent.get(u) or {}).get("parent"), deleted)
        if any(c.get("op") in ("create", "reparent", "delete") for c, _ in batch.changes):
            self.engine.batch_changed_parents(batch.batch_id)
        self.applied_batches += 1
        if self.transport is not None:
            self.transport.update_hello(last_seq=self.engine.last_seq)
        applied = {"type": wire.MessageType.APPLIED, "batch_id": batch.batch_id,
                   "seq": batch.seq, "hashes": hashes,
                   # What it left unapplied, in whole or in part, for a person's edit here
                   # (or could not apply as sent): the daemon reads every other uuid as held
                   # as sent (§6.4, `applied.spared`).
                   "spared": sorted(set(spared) | keep | set(loop_spared)
                                    | kept_from_delete.keys() | failed.keys())}
        if failed:
            applied["failed"] = failed  # why, for the origin's person (§6.4)
        self._send(applied)
        self.applying_batch = None
        early = self.early_results.pop(batch.batch_id, None)
        if early is not None:
            self._overtook_ended(early)  # its result came before it was applied
        if self.kept_lost:
            # After the answer, like every edit that loses to a batch (§6.4).
            self.engine.retry_not_synced(sorted(self.kept_lost))
            self.kept_lost.clear()
        log.info("vibesync: applied batch %s (seq %s): %d changes, %d failed",
                 batch.batch_id, batch.seq, len(result["touched"]), len(result["failed"]))
        result["hashes"] = hashes
        # Blender's event loop evaluates what the batch made after this tick (the dependency
        # graph of new objects is its own cost, paid once); the undo step follows on the
        # next tick, where `bpy.ops`' view-layer update finds nothing left to do.
        yield budget.END_TICK
        apply_mod.push_undo_step(batch)

    # ---------------------------------------------------------------------- capture
    def _process_dirty(self, deadline: float) -> int:
        if self.mesh_jobs or self.alias_jobs:
            self._collect_mesh_jobs()
        if self.master_dirty:
            self.master_dirty = False
            scene = capture.home_scene()
            if scene is not None:  # C-speed read of the session uids (10,000: ~1 ms)
                objs = scene.collection.objects
                sids = array.array("i", bytes(4 * len(objs)))
                objs.foreach_get("session_uid", sids)
                self.dirty.update(zip(itertools.repeat("object"), sids))
            # Collection visibility/membership edits are reported on the master collection.
            for c in bpy.data.collections:
                self.dirty.add(("collection", c.session_uid))
        if self.waiting_edit:
            for key in list(self.waiting_edit):
                self.dirty.add(key)
            self.waiting_edit.clear()
        if not self.dirty:
            return 0
        n = 0
        self._hashed_this_tick: set[int] = set()
        # Meshes and materials first so objects see their new state in the same tick (two
        # lazy passes over a snapshot, not a sort: ~1 ms for 20,000 dirty keys).
        snapshot = list(self.dirty)
        keys = itertools.chain((k for k in snapshot if k[0] != "object"),
                               (k for k in snapshot if k[0] == "object"))
        for key in keys:
            if n >= MAX_DIRTY_PER_TICK or (n and time.perf_counter() > deadline):
                break
            self.dirty.discard(key)
            n += 1
            uuid = self.registry.by_key.get(key)
            if uuid is None:
                continue  # unknown_keys / the next scan binds it
            if uuid in self.adoptable:
                self.gated_keys.add(key)  # sent once the replay said who it is
                continue
            if self.overtook_unheard and any(uuid in o for o in self.overtook_unheard.values()):
                self.overtook_gated.add(key)  # sent once the daemon said what stands (§6.4)
                continue
            idb = self.registry.resolve(uuid)
            if idb is None:
                self.sweep_due_at = time.monotonic()
                continue
            kind = key[0]
            try:
                self._capture_read(uuid, idb, kind, key)
            except (ReferenceError, RuntimeError, ValueError) as e:
                log.warning("vibesync: cannot read %s %s: %s", kind, uuid, e)
        if not self.away and not self.away_base:
            self.replayed.clear()
        return n

    def _capture_read(self, uuid: str, idb, kind: str, key) -> None:
        """`_capture_one`, keeping the base of an edit made while away (`_note_away`): for
        what the scan reads and for a parent read first for its child alike."""
        base = self.away.pop(uuid, None) if self.away else None
        queued = len(self.out_ops)
        try:
            self._capture_one(uuid, idb, kind, key)
        finally:
            if base is not None:
                self._note_away(uuid, key, base, queued)

    def _note_away(self, uuid: str, key, base: int, queued: int) -> None:
        """After reading `uuid`, made while away from `base`: an edit queued goes from
        `base` (`_away_base_of`); one not read yet (edit mode, a mesh being hashed, a parent
        awaited, a change in flight) stays away until it is."""
        if any(op.get("uuid") == uuid for op, _ in self.out_ops[queued:]):
            self.away_base[uuid] = min(base, self.away_base.get(uuid, base))
        elif key in self.dirty or key in self.geometry_dirty or key in self.waiting_edit \
                or key in self.gated_keys or uuid in self.engine.inflight \
                or any(key in keys for keys in self.parent_waiters.values()):
            self.away[uuid] = base

    def _material_step(self, deadline: float) -> int:
        """Mark for capture every object showing a material captured as changed: start (or
        resume) the pass over every object and run it until `deadline`, one slice at least
        (docs/ARCHITECTURE.md "Main-thread budget": `capture.first_material` per object is
        ~16 ms at 10,000 objects). Materials changed while a pass runs get a pass of their
        own after it. Returns 1 when it did work."""
        if self.material_job is None:
            if not self.material_users:
                return 0
            self.material_job = self._material_steps(self.material_users)
            self.material_users = set()
        try:
            while True:
                next(self.material_job)
                if time.perf_counter() >= deadline:
                    return 1
        except StopIteration:
            self.material_job = None
        return 1

    def _material_steps(self, materials: set[int]):
        """The pass of `_material_step` over the objects there are when it starts (their
        session_uids, read at C speed; each looked up when its slice comes, so an object
        renamed or removed meanwhile is neither skipped nor read after its removal; one
        added meanwhile is captured whole as a new object)."""
        objs = bpy.data.objects
        sids = array.array("i", bytes(4 * len(objs)))
        objs.foreach_get("session_uid", sids)
        lookup = self.registry.lookup
        for sid in identity.slices(sids):
            if sid is identity.YIELD:
                yield
                continue
            ob = lookup("object", sid)
            if ob is None:
                continue
            mat = capture.first_material(ob)
            if mat is not None and mat.session_uid in materials:
                self.dirty.add(("object", sid))

    def _drop_material_pass(self) -> None:
        """Undo, redo and load mark every rebound object anyway: no pass is left over."""
        self.material_users.clear()
        self.material_job = None

    def _note_instancer(self, uuid: str, ob, key) -> None:
        """An Empty's collection instancing (§7.1): which collection it instances is kept, so
        that a change of that collection's geometry captures the Empty again; a change of
        which one (none included) is a change of its geometry. An Empty that stops
        instancing shows no geometry: an empty mesh is sent (no op removes a mesh)."""
        coll = capture.instanced_collection(ob)
        now = coll.session_uid if coll is not None else None
        was = self.instancers.get(key)
        if was == now:
            return
        if was is not None:
            users = self.instanced_by[was]
            users.discard(key)
            if not users:
                del self.instanced_by[was]
        if now is None:
            del self.instancers[key]
            if uuid in self.mesh_hashes:
                blob = capture.encode_mesh_arrays(capture.NO_GEOMETRY, self.unit_scale)
                self.mesh_hashes[uuid] = wire.mesh_hash(blob)
                self.mesh_blobs[uuid] = blob
            return
        self.instancers[key] = now
        self.instanced_by.setdefault(now, set()).add(key)
        self.geometry_dirty.add(key)

    def _generated_ready(self, uuid: str, ob, key) -> bool:
        """Encode the evaluated geometry of an object with modifiers (capture §7.1), kept
        under the object's own uuid; a note when instances were left out (limits). Big
        geometry is encoded and hashed on the mesh worker (True: wait for it)."""
        arrays, note = capture.evaluated_mesh_arrays(ob)
        if note is not None:
            if self.generated_notes.get(uuid) != note:
                log.warning("vibesync: %s", note)
            self.generated_notes[uuid] = note
        else:
            self.generated_notes.pop(uuid, None)
        if arrays["n"] > BIG_MESH_VERTICES:
            # Empties instancing one collection share its arrays: one encoding for them all.
            shared = self.shared_encodings.get(id(arrays))
            if shared is None:
                shared = (arrays, _mesh_pool().submit(_encode_and_hash, arrays, self.unit_scale))
                if capture.instanced_collection(ob) is not None:
                    self.shared_encodings[id(arrays)] = shared  # (holds the arrays: ids stay unique)
            self.mesh_jobs[uuid] = (shared[1], {key})
            return True
        blob = capture.encode_mesh_arrays(arrays, self.unit_scale)
        self.mesh_hashes[uuid] = wire.mesh_hash(blob)
        self.mesh_blobs[uuid] = blob
        return False

    def _mesh_ready(self, mu: str, me, kind: str, blob: bytes, h: str) -> bool:
        """A mesh's encoding and hash are known: remember them, re-capture its users.
        Returns True when a mesh's hash changed and its users were not found here (the
        caller finds them, once for all meshes that finished together)."""
        alias = self.mesh_alias.get(mu)
        if alias is not None:
            if alias[0] == h:
                h, blob = alias[1], self.mesh_blobs.get(mu, blob)
            else:
                del self.mesh_alias[mu]  # edited since: our encoding now
        if self.mesh_hashes.get(mu) != h:
            self.mesh_hashes[mu] = h
            self.mesh_blobs[mu] = blob
            return kind == "mesh"
        return False

    def _dirty_users(self, mesh_sids: set[int]) -> None:
        """Capture again every object showing one of these meshes (one pass over objects)."""
        if not mesh_sids:
            return
        for ob in bpy.data.objects:
            data = ob.data
            if data is not None and data.session_uid in mesh_sids:
                self.dirty.add(("object", ob.session_uid))

    @staticmethod
    def _finished(jobs: dict):
        """Pop the finished jobs of `jobs` (mesh uuid -> (Future, extra)): yields
        (mesh uuid, extra, (blob, hash)); a failed job is logged and skipped."""
        for mu, (fut, extra) in list(jobs.items()):
            if not fut.done():
                continue
            del jobs[mu]
            try:
                yield mu, extra, fut.result()
            except Exception as e:  # noqa: BLE001 - a worker failure must not break Blender
                log.error("vibesync: encoding or hashing mesh %s failed: %s", mu, e)

    def _collect_mesh_jobs(self) -> None:
        """Finished background encodings: record them and capture the waiting objects."""
        for mu, (incoming, waiting), (_, own) in self._finished(self.alias_jobs):
            self.mesh_alias[mu] = (own, incoming)
            self.dirty.update(waiting)  # read now: a person's edit made meanwhile goes
        changed: set[int] = set()
        for mu, keys, (blob, h) in self._finished(self.mesh_jobs):
            me = self.registry.resolve(mu)
            if me is None:
                continue
            if self._mesh_ready(mu, me, "mesh", blob, h) and me.users > len(keys):
                changed.add(me.session_uid)  # shown by other objects too (linked duplicates)
            self.dirty.update(keys)
        self._dirty_users(changed)

    def _capture_one(self, uuid: str, idb, kind: str, key) -> None:
        b = self.registry.bindings[uuid]
        if b.name != idb.name:
            b.name = idb.name
        if kind in SYNCED_KINDS and not self._in_scene(uuid, idb, kind):
            return  # not in the synced scene: nothing to send but its delete
        if self.registered.get(uuid) != b.editor_ref():
            self.to_register.add(uuid)
        if kind == "object" and capture.in_edit_mode(idb):
            self.waiting_edit.add(key)  # nothing is read while the user is in edit mode
            return
        if kind == "object" and idb.type == "EMPTY":
            self._note_instancer(uuid, idb, key)
        if key in self.geometry_dirty and kind == "object" and capture.generated_geometry(idb):
            # Modifiers make this object's geometry: send what Blender shows (§7.1).
            if uuid in self.mesh_jobs:
                self.mesh_jobs[uuid][1].add(key)
                return  # the previous evaluation is still encoding: read again once it is done
            self.geometry_dirty.discard(key)
            if self._generated_ready(uuid, idb, key):
                return  # big: encoded on the worker; this object is captured when it is ready
        if key in self.geometry_dirty:
            me = idb.data if kind == "object" else idb
            if isinstance(me, bpy.types.Mesh):
                if me.is_editmode:
                    self.waiting_edit.add(key)
                    return
                self.geometry_dirty.discard(key)
                mu = self.registry.uuid_for(me)
                if mu is not None and mu in self.alias_jobs:
                    # Applied just now: read once its own hash is known (`_collect_mesh_jobs`).
                    # Left marked only for geometry, a person's move of the object made while
                    # the worker hashed it was never read again, nor sent (a scale set back
                    # right after a batch, on a loaded machine).
                    self.geometry_dirty.add(key)
                    self.alias_jobs[mu][1][1].add(key)
                    return
                if mu is not None and mu in self.mesh_jobs:
                    # Still encoding the previous read: read again once it is done.
                    self.geometry_dirty.add(key)
                    self.mesh_jobs[mu][1].add(key)
                    return
                if mu is not None and len(me.vertices) > BIG_MESH_VERTICES:
                    arrays = capture.read_mesh_arrays(me)  # main thread, foreach_get only
                    fut = _mesh_pool().submit(_encode_and_hash, arrays, self.unit_scale)
                    self.mesh_jobs[mu] = (fut, {key})
                    return  # this object is captured when its mesh is ready
                if mu is not None and me.session_uid not in self._hashed_this_tick:
                    self._hashed_this_tick.add(me.session_uid)
                    blob = capture.mesh_attachment(me, self.unit_scale)
                    h = wire.mesh_hash(blob)
                    if self._mesh_ready(mu, me, kind, blob, h):
                        self._dirty_users({me.session_uid})
            else:
                self.geometry_dirty.discard(key)
        if kind == "collection":
            # Membership changed? Its objects and child collections name it as parent.
            for ob in idb.objects:
                self.dirty.add(("object", ob.session_uid))
            for c in idb.children:
                self.dirty.add(("collection", c.session_uid))
        if kind == "material":
            # The material travels in the state of every object that shows it: a pass over
            # every object, in slices over ticks (`_material_step`).
            self.material_users.add(idb.session_uid)
        if key in self.gated_keys:
            # Waits for the first replay after connecting (`reconnect_base`): its geometry
            # is hashed now (the replay tells what changed here by it), nothing is sent
            # before the replay — captured again when the gate opens.
            return
        state = capture.read_state(idb, kind, self.registry, self.mesh_hashes)
        prev = self.last_sent.get(uuid)
        if prev is not None:
            # The pose last sent or applied, read back in another form (a mirrored scale
            # through a parent inverse), is no edit and keeps that form (§6.4).
            state = capture.keep_pose(state, prev)
        ops = capture.diff_ops(uuid, prev, state)
        full = uuid in self.resend_full  # goes in full, changed or not (`forget_sent`)
        if not ops and not full:
            return
        # A drag: an edit of fast-path parts only goes at once, also while an earlier one of
        # the uuid is in flight (each pose reaches the other editor as it is made, §6.3).
        fast = not full and all(op["op"] in wire.FAST_OPS for op in ops)
        mode = self.engine.send_mode(uuid, key, prev is not None and not full, fast)
        if mode == engine.SEND_WAIT:
            return  # captured again once its change in flight has ended (§6.6)
        parent = state.get("parent")
        if parent is not None and parent not in self.last_sent:
            # Dependencies first: the parent's create goes before anything naming it.
            if not self._capture_parent(parent):
                self.parent_waiters.setdefault(parent, set()).add(key)
                return
        # The state hash tells an echo of what was applied here, or an agent's object as it
        # left it; an object with neither (a person's drag) is not hashed: the hash was half
        # of each capture's main-thread time.
        h = None
        if uuid in self.automation_for or uuid in self.applied_hash:
            h = wire.state_hash(capture.state_in_meters(state, self.unit_scale))
        if uuid in self.automation_for and self.automation_for[uuid][1] != h:
            del self.automation_for[uuid]  # a person changed the agent's object meanwhile
        self.last_sent[uuid] = state
        self.resend_full.discard(uuid)
        if h is not None and not full and self._applied_hash_of(uuid) == h:
            self._release_children(uuid)
            return  # what we applied ourselves: no echo
        self.applied_hash.pop(uuid, None)
        if uuid in self.quiet:
            self.quiet.discard(uuid)  # found by the initial/load scan: not a user edit
            if self.safe_mode and self._edited_while_away(uuid, prev, state):
                self.held_edits.add(uuid)  # shown not synced (`_mark_held`)
        elif uuid not in self.automation_for:  # an agent's change going again is no user edit
            self._mark_user_edit()
            if self.safe_mode:
                self.held_edits.add(uuid)  # shown not synced (`_mark_held`)
        if mode == engine.SEND_FULL and prev is not None:
            # The daemon never took the earlier state: send all of it again (D1 retry).
            ops = capture.diff_ops(uuid, None, state)
        if uuid not in self.engine.inflight:
            # A new change after the last one ended: only its parts are unresolved (a part
            # left over from a change whose end went unseen would be spared for nothing).
            self.sent_parts[uuid] = set()
            self.request_parts.pop(uuid, None)
        for op in ops:
            blob = b""
            if capture.needs_attachment(op):
                mu = capture.geometry_key(self.registry, idb)
                blob = self.mesh_blobs.get(mu, b"") if mu else b""
                if not blob or self.mesh_hashes.get(mu) != op["mesh_hash"]:
                    log.warning("vibesync: mesh of %s not available; sending without it", uuid)
                    op.pop("mesh_hash", None)
                    if op["op"] == "mesh":
                        continue
                    blob = b""
            self.out_ops.append((op, blob))
            self.sent_parts.setdefault(uuid, set()).add(op["op"])
        self._release_children(uuid)

    def _applied_hash_of(self, uuid: str) -> str | None:
        """The state hash of what was last applied here to `uuid` (None: nothing); a live
        preview's state is kept unhashed until this asks."""
        h = self.applied_hash.get(uuid)
        if isinstance(h, dict):
            h = self.applied_hash[uuid] = wire.state_hash(h)
        return h

    def _in_scene(self, uuid: str, idb, kind: str = "object") -> bool:
        """Is the object (or collection) in the synced scene? One that left it (Object >
        Collection > Remove from All, an unlink from its only collection, a move to another
        scene; a collection unlinked from the scene's tree) is gone for the other editors:
        its delete goes as a person's delete does (a `tombstone`, §5), and it keeps its uuid
        here. Back in the scene (linked again, or Ctrl-Z) it is a new object to them: sent
        whole, a `create` after the delete (PROTOCOL §6.1). A collection only another scene
        holds is never sent."""
        if kind == "collection":
            here = self.registry.collection_in_home_scene(idb)
        else:
            here = self.registry.in_home_scene(idb)
        if here:
            if uuid in self.out_of_scene:
                self.out_of_scene.discard(uuid)
                self.deleted_here.discard(uuid)
                self.to_tombstone.discard(uuid)  # not sent yet: the daemon still holds it
                self.last_sent.pop(uuid, None)  # sent whole
                # Its children in the scene were roots to the other editors: under it again.
                # (`Object.children` reads every object: once per return, not per tick.)
                if kind == "collection":
                    self.dirty.update(("collection", c.session_uid) for c in idb.children)
                    self.dirty.update(("object", o.session_uid) for o in idb.objects)
                else:
                    self.dirty.update(("object", c.session_uid) for c in idb.children)
                log.info("vibesync: %s back in the scene -> create", uuid)
            return True
        if uuid not in self.out_of_scene:
            self.out_of_scene.add(uuid)
            if uuid in self.last_sent or uuid in self.engine.inflight:
                log.info("vibesync: %s left the scene", uuid)
                self._vanished(uuid)
        return False

    def _release_children(self, uuid: str) -> None:
        keys = self.parent_waiters.pop(uuid, None)
        if keys:
            self.dirty.update(keys)

    def _capture_parent(self, parent: str) -> bool:
        """Capture `parent` now (before its child). False when it cannot be sent yet (not
        read in edit mode, mesh still encoding, gated): the child then waits for it."""
        b = self.registry.bindings.get(parent)
        if b is None or not b.alive:
            return True  # gone or never ours: the receiver treats the child as a root
        if parent in self.adoptable:
            return False
        if parent in self.applied_hash:
            return True  # came from the daemon: it has it
        idb = self.registry.resolve(parent)
        if idb is None:
            return True
        key = (b.kind, b.session_uid)
        self.dirty.discard(key)
        try:
            self._capture_read(parent, idb, b.kind, key)
        except (ReferenceError, RuntimeError, ValueError) as e:
            log.warning("vibesync: cannot read %s %s: %s", b.kind, parent, e)
            return True
        return parent in self.last_sent

    # ----------------------------------------------------------------- user activity
    def _mark_user_edit(self) -> None:
        if self.applying or self.automation is not None:
            return
        now = time.monotonic()
        self.last_user_edit = now
        if not self.user_active or now - self.last_activity_sent >= USER_ACTIVITY_RESEND_S:
            self.user_active = True
            self.last_activity_sent = now
            self._send({"type": wire.MessageType.USER_ACTIVITY, "active": True})

    def _user_activity_idle(self, now: float) -> None:
        if self.user_active and now - self.last_user_edit >= USER_IDLE_S:
            self.user_active = False
            self._send({"type": wire.MessageType.USER_ACTIVITY, "active": False})

    # ---------------------------------------------------------------------- sending
    def _rid(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def _send(self, msg: dict, attachment: bytes = b"") -> bool:
        if not self.connected or self.transport is None or self.generation is None:
            return False
        self.transport.send(self.generation, msg, attachment)
        return True

    def request(self, msg: dict, ctx=None, attachment: bytes = b"", slow=()) -> str | None:
        """Send a request; its answer is matched by `request_id`, its kind is its `type`.
        `slow`: a change's uuids whose ops are not all fast-path."""
        what = msg["type"]
        rid = self._rid(what[0])
        msg["request_id"] = rid
        if self._send(msg, attachment):
            self.engine.sent(rid, what, ctx, slow)  # a change's uuids (ctx) are in flight now
            return rid
        return None

    def _meshes_answered(self, rid: str, taken: bool) -> None:
        """The daemon answered request `rid`: the meshes it carried are held there (`taken`)
        or must be sent again with the next object that names them."""
        for h, carrier in list(self.daemon_meshes.items()):
            if carrier == rid:
                if taken:
                    self.daemon_meshes[h] = None
                else:
                    del self.daemon_meshes[h]
        self.named_meshes.pop(rid, None)

    def _flush(self) -> int:
        if not self.connected or self.paused or self.safe_mode:
            return 0
        if time.monotonic() < self.send_after:
            return 0  # the daemon asked to retry later: what waits goes after the pause
        n = 0
        if self.to_register and self.adopt_until is None:
            # Not while the first replay after connecting is awaited (`_await_adoption`): it
            # may delete what this file holds (another editor's delete made while the file
            # was closed), and a registration before it made the daemon's record of such an
            # object live again (§5) while it was in no editor.
            # A bounded slice per tick (main-thread budget); the rest goes next tick.
            picked = list(itertools.islice(
                (u for u in self.to_register if u not in self.adoptable), MAX_REGISTER_PER_TICK))
            self.to_register.difference_update(picked)
            bindings = self.registry.bindings
            alive = [u for u in picked if u in bindings and bindings[u].alive]
            for start in range(0, len(alive), MAX_REGISTER_ITEMS):
                chunk = alive[start:start + MAX_REGISTER_ITEMS]
                items = []
                for u in chunk:
                    b = self.registry.bindings[u]
                    item = {"uuid": u, "kind": b.kind, "name": b.name,
                            "editor_ref": b.editor_ref()}
                    if u in self.duplicate_of:
                        # Not in PROTOCOL.md yet: optional, readers ignore unknown fields.
                        item["duplicate_of"] = self.duplicate_of[u]
                    items.append(item)
                self.request({"type": wire.MessageType.REGISTER, "items": items},
                             {"items": items, "uuids": chunk})
                n += 1
        n += self._send_tombstones()
        if not self.engine.changes_supported:
            self.out_ops.clear()
            self.lost_over.clear()
        else:
            if self.out_ops:
                ops, self.out_ops = self.out_ops, []
                n += self._send_queued(ops)
            reports, self.lost_over = self.lost_over, []
            for ops, base in reports:
                self._send_change(ops, base_seq=base)
                n += 1
        return n

    def _send_tombstones(self) -> int:
        """The person's deletes not sent yet, as one `tombstone` request."""
        if not self.to_tombstone:
            return 0
        uuids = sorted(self.to_tombstone)
        self.to_tombstone.clear()
        self.request({"type": wire.MessageType.TOMBSTONE, "uuids": uuids}, uuids)
        return 1

    def _made_by(self, automation: dict, uuids) -> dict[str, tuple[dict, str]]:
        """The state each of `uuids` was captured in (what the agent made), with `automation`."""
        made = {}
        for u in uuids:
            state = self.last_sent.get(u)
            if state is not None:
                made[u] = (automation, wire.state_hash(capture.state_in_meters(state, self.unit_scale)))
        return made

    def _send_queued(self, ops: list) -> int:
        """Send the queued ops: an agent's that go again (`automation_for`) first, carrying
        their `automation`, each call's in its own frames; then the person's."""
        if not self.automation_for:
            return self._send_in_runs(ops)
        calls: dict[object, tuple[dict, list]] = {}
        people = []
        for item in ops:
            automation = self.automation_for.get(item[0].get("uuid"), (None, ""))[0]
            if automation is None or self._persons_kept(item[0]):
                if automation is not None:
                    # Over a person's edit kept here: it goes as the person's (`_persons_kept`).
                    self.automation_for.pop(item[0].get("uuid"), None)
                people.append(item)
            else:
                calls.setdefault(automation.get("operation_id"), (automation, []))[1].append(item)
        n = 0
        for automation, items in calls.values():
            n += self._send_in_runs(items, automation)
            for op, _ in items:
                self.automation_for.pop(op.get("uuid"), None)
        if people:
            n += self._send_in_runs(people)
        return n

    def _send_in_runs(self, ops: list, automation: dict | None = None) -> int:
        """`_send_ops`, in runs of consecutive ops that go from the same `base_seq` (a person's
        edits made while away go from theirs, `_away_base_of`), in order; an ancestor's
        `create` before its descendants' (`engine.order_creates_parent_first`)."""
        ops = engine.order_creates_parent_first(
            ops, lambda u: (self.last_sent.get(u) or {}).get("parent"))
        if not self.away_base:
            return self._send_ops(ops, automation)
        n, run, run_base = 0, [], None
        for item in ops:
            base = self._away_base_of(item[0])
            u = item[0].get("uuid")
            if base is not None and isinstance(u, str):
                # Lost with the connection again before the daemon answers it, it goes again
                # from this seq, not the newer one Blender connects with then (model seeds
                # 2020, 3012: a reparent read as a loop, `INVALID_FIELD`, kept for good).
                self.flight_base[u] = min(base, self.flight_base.get(u, base))
            if run and base != run_base:
                n += self._send_ops(run, automation, run_base)
                run = []
            run.append(item)
            run_base = base
        if run:
            n += self._send_ops(run, automation, run_base)
        for op, _ in ops:
            self.away_base.pop(op.get("uuid"), None)
        return n

    def _send_ops(self, ops: list, automation: dict | None = None,
                  base_seq: int | None = None) -> int:
        """Send ops in order; a frame carries at most one attachment (one mesh)."""
        n = 0
        plain: list[dict] = []
        named: dict[str, str] = {}  # the plain ops that only name their mesh: uuid -> hash

        def send_plain() -> None:
            rid = self._send_change(list(plain), automation=automation,  # the frame keeps its list
                                    base_seq=base_seq)
            if rid is not None and named:
                self.named_meshes[rid] = dict(named)
            plain.clear()
            named.clear()

        for op, blob in ops:
            h = op.get("mesh_hash")
            if blob and h in self.daemon_meshes:
                # Carried already on this connection (taken, or ahead of this one in the
                # daemon's order: a refusal of that one is answered first): name it only.
                plain.append(op)
                if isinstance(op.get("uuid"), str):
                    named[op["uuid"]] = h
            elif blob:
                if plain:
                    send_plain()
                    n += 1
                rid = self._send_change([op], blob, automation, base_seq)
                if rid is not None and isinstance(h, str):
                    self.daemon_meshes[h] = rid
                    self.mesh_bytes_sent += len(blob)
                n += 1
            else:
                plain.append(op)
        if plain:
            send_plain()
            n += 1
        return n

    def _send_change(self, ops: list[dict], attachment: bytes = b"",
                     automation: dict | None = None, base_seq: int | None = None) -> str | None:
        uuids = [op["uuid"] for op in ops if isinstance(op.get("uuid"), str)]
        msg = {"type": wire.MessageType.CHANGE,
               "base_seq": self.engine.last_seq if base_seq is None else base_seq,
               "changes": ops}
        if automation is not None:
            msg["automation"] = automation  # an agent's tool call made these (§9.2)
        seen = {u: self.live_seen[u] for u in uuids if u in self.live_seen}
        if seen:
            msg["seen"] = seen  # made over these live previews: no conflict with them (§6.2)
        slow = {op["uuid"] for op in ops if op.get("op") not in wire.FAST_OPS}
        rid = self.request(msg, uuids, attachment=attachment, slow=slow)
        if rid is not None:
            for op in ops:
                if isinstance(op.get("uuid"), str):
                    self.request_parts.setdefault(op["uuid"], {}).setdefault(rid, set()).add(op["op"])
        if rid is not None and automation is not None:
            self.automation_requests[rid] = automation
            deleted = [op["uuid"] for op in ops if op.get("op") == wire.Op.DELETE]
            if deleted:
                self.automation_deletes[rid] = deleted
        if rid is not None:
            log.debug("vibesync: change %s sent: %s", rid,
                      [(op["op"], op.get("uuid")) for op in ops])
        return rid

    # ------------------------------------------------------------- agent tool calls
    def capture_now(self, automation: dict | None) -> list:
        """Capture everything changed so far and send it at once (§9.2). With `automation`,
        the changes are a tool call's: sent carrying it, never counted as a person's edit.
        Returns the uuids of the changes sent."""
        bpy.context.view_layer.update()
        self.registry.membership_changed()  # the tool may have moved objects
        start = len(self.out_ops)
        self.automation = automation
        try:
            if self.scan_reason is not None:
                self._scan()
            # What was deleted: before the call, by the person (a `tombstone`); after it, by
            # the call (`_deleted_by_automation`). A sweep under way began before the call:
            # it is finished first, then one made afresh.
            if self.sweep_job is not None:
                self._sweep()
            self._sweep()
            if self.unknown_keys:
                keys, self.unknown_keys = self.unknown_keys, set()
                self._handle_report(self.registry.adopt(keys), "new datablock")
            # Collections/materials mark their objects, meshes are encoded on the worker and
            # their objects captured when done: a few passes, waiting for the encodings, so
            # the whole call's changes are captured now, under `automation`.
            for _ in range(16):
                jobs = [f for f, _ in self.mesh_jobs.values()] + [f for f, _ in self.alias_jobs.values()]
                if jobs:
                    concurrent.futures.wait(jobs, timeout=10.0)
                while self._material_step(float("inf")):
                    pass
                if not self.dirty and not jobs:
                    break
                self._process_dirty(float("inf"))
        finally:
            self.automation = None
            self.meshes_by_hash = None
        if automation is None:
            self._flush()
            return []
        ops = self.out_ops[start:]
        del self.out_ops[start:]
        self._flush()  # registers first (new uuids), then the call's changes
        touched = list(dict.fromkeys(op["uuid"] for op, _ in ops if isinstance(op.get("uuid"), str)))
        # An object a person's edit is kept on here (not synced) goes in full as the person's:
        # it carries that work, which automation's refusal or rollback would undo here, the
        # person's object with it (§6.4, §6.7).
        persons, calls = [], []
        for item in ops:
            (persons if self._persons_kept(item[0]) else calls).append(item)
        ops = calls
        if self.connected and self.engine.changes_supported and not self.paused \
                and not self.safe_mode:
            self._send_in_runs(ops, automation)
            if persons:
                self._send_in_runs(persons)
        else:
            self.out_ops.extend(ops + persons)  # sent later, the call's still as the agent's
            self.automation_for.update(self._made_by(
                automation, [op["uuid"] for op, _ in ops if isinstance(op.get("uuid"), str)]))
            self.automation_for.update((op["uuid"], (automation, "")) for op, _ in ops
                                       if op.get("op") == wire.Op.DELETE)
        return touched

    def _persons_kept(self, op: dict) -> bool:
        """`op` changes an object this editor keeps a person's edit of, not synced (§6.4)."""
        return op.get("uuid") in self.engine.not_synced

    def copy_before_call(self, names) -> None:
        """A tool call is about to run and names these objects: copy each synced one whole
        (`apply.copy_to_keep`: its modifiers, constraints and custom properties with it), so
        that if the call deletes it and that delete rolls back (PROTOCOL.md §6.4), the object
        made again is the one the call deleted (`_deleted_by_automation`). What the call does
        not delete is dropped after it (`drop_copies`)."""
        for name in names:
            ob = bpy.data.objects.get(name)
            uuid = self.registry.uuid_for(ob) if ob is not None else None
            if uuid is None or uuid in self.copied_before_call:
                continue
            copy = apply_mod.copy_to_keep(ob, uuid)
            if copy is not None:
                self.copied_before_call[uuid] = copy

    def keep_deleted_by_call(self, before: set) -> bool:
        """A tool call that succeeded deleted synced objects it did not name (`before`: the
        session_uids of the objects before it ran; its undo step is pushed). Copy each whole,
        as `copy_before_call` copies a named one, from the state before the call: one undo
        step back, the copies written to a .blend in Blender's temporary folder
        (`apply.write_copies`), one redo, and appended (`apply.read_copies`). The rest of
        this session's state is rebound as after any undo (`on_undo_redo`). False if the redo did not give back the
        call's result (the caller then rolls the call back)."""
        gone = before - {ob.session_uid for ob in bpy.data.objects}
        if not gone:
            return True
        uncopied = {b.session_uid: u for u, b in self.registry.bindings.items()
                    if b.kind == "object" and b.session_uid in gone and u not in self.copied_before_call}
        if not uncopied:
            return True
        after = router_mod.fingerprint()
        copy_sids = {u: c.session_uid for u, c in self.copied_before_call.items()}
        path = os.path.join(bpy.app.tempdir or tempfile.gettempdir(),
                            f"vibesync-deleted-{os.getpid()}-{time.monotonic_ns()}.blend")
        held: dict = {}
        try:
            bpy.ops.ed.undo()
        except RuntimeError as e:
            # Nothing moved: the deleted objects keep what `keep_data_of_deleted` keeps.
            log.warning("vibesync: cannot step back to copy what a tool call deleted: %s", e)
            return True
        try:
            by_sid = {ob.session_uid: ob for ob in bpy.data.objects}
            copies = [c for sid, u in uncopied.items() if sid in by_sid
                      and (c := apply_mod.copy_to_keep(by_sid[sid], u)) is not None]
            if copies:
                held = apply_mod.write_copies(copies, path)
        except (OSError, RuntimeError) as e:
            log.warning("vibesync: cannot keep what a tool call deleted: %s", e)
        finally:
            try:
                bpy.ops.ed.redo()
            except RuntimeError as e:
                log.error("vibesync: cannot step forward again after copying: %s", e)
        self.on_undo_redo("redo")  # every datablock was reallocated, twice
        if router_mod.fingerprint() != after:
            log.error("vibesync: the redo after copying what a tool call deleted did not give "
                      "back its result")
            return False
        by_sid = {ob.session_uid: ob for ob in bpy.data.objects}
        self.copied_before_call = {u: by_sid[sid] for u, sid in copy_sids.items() if sid in by_sid}
        if os.path.exists(path):
            try:
                self.copied_before_call.update(apply_mod.read_copies(path, held))
            except (OSError, RuntimeError) as e:
                log.warning("vibesync: cannot read back what a tool call deleted: %s", e)
            finally:
                os.remove(path)
        return True

    def drop_copies(self) -> None:
        """The copies `copy_before_call` made that no delete of the call kept."""
        copies, self.copied_before_call = self.copied_before_call, {}
        for copy in copies.values():
            try:
                bpy.data.objects.remove(copy)
            except ReferenceError:
                pass  # freed already (an undo replaced every datablock)

    def after_rollback(self) -> None:
        """A failed tool call was undone: rebind every datablock now (undo replaced them)."""
        self.unknown_keys.clear()
        self.scan_reason = "undo"
        self._scan()

    # -------------------------------------------------------------------- status
    def state_name(self) -> str:
        if self.paused:
            return STATE_PAUSED
        if self.connected and self.safe_mode:
            return STATE_SAFE_MODE
        if self.connected:
            return STATE_CONNECTED
        if self.transport is not None and self.daemon_unreachable is not None:
            return STATE_NO_DAEMON
        return STATE_RECONNECTING if self.transport is not None else STATE_DISCONNECTED

    def next_try_s(self) -> int | None:
        """Whole seconds until the next connection attempt while reconnecting, else None."""
        t = self.transport
        if self.connected or t is None:
            return None
        left = t.next_attempt_at - time.monotonic()
        return math.ceil(left) if left > 0 else None

    def progress(self) -> dict:
        """First-sync progress: objects and collections the daemon holds as synced. The
        count is a pass over every binding: the pump recounts it in slices at most every
        PROGRESS_INTERVAL_S (`_progress_step`); this returns the last count (counted now
        only if there is none yet)."""
        if self._progress is None:
            identity.run_to_end(self._progress_steps())
        return dict(self._progress)

    def _progress_step(self, deadline: float) -> None:
        """Resume (or start, when due) the progress count until `deadline` (one slice at
        least)."""
        if self.progress_job is None and self._progress is not None \
                and time.monotonic() - self._progress_at < PROGRESS_INTERVAL_S:
            return
        if self.progress_job is None:
            self.progress_job = self._progress_steps()
        try:
            while True:
                next(self.progress_job)
                if time.perf_counter() > deadline:
                    return
        except StopIteration:
            self.progress_job = None

    def _progress_steps(self):
        synced, n, total = self.engine.synced, 0, 0
        for b in identity.slices(list(self.registry.bindings.values())):
            if b is identity.YIELD:
                yield
            elif b.alive and b.kind in SYNCED_KINDS:
                total += 1
                n += b.uuid in synced
        self._progress = {"synced": n, "total": total}
        self._progress_at = time.monotonic()

    def ui_summary(self) -> tuple:
        """What the sidebar shows; a change triggers a redraw. Called every tick."""
        p = self.progress()
        return (self.state_name(), self.next_try_s(), self.project_id, self.pause_reason,
                self.safe_mode_reason,
                self.blocked_reason, len(self.engine.not_synced), len(self.collisions),
                len(self.engine.conflicts),
                tuple(sorted(str(x.get("client")) for x in self.engine.peers)),
                len(self.engine.other_projects), p["synced"], p["total"], len(self.batches),
                len(self.errors), str((self.last_handshake_error or {}).get("code")))

    def status(self) -> dict:
        counts = self.registry.counts()
        return {
            "state": self.state_name(),
            "next_try_s": self.next_try_s(),
            "connected": self.connected,
            "safe_mode": self.safe_mode,
            "paused": self.paused,
            "host": self.host,
            "port": self.port,
            "project_id": self.project_id,
            "session_id": self.session_id,
            "last_seq": self.engine.last_seq,
            "daemon_seq": self.engine.daemon_seq,
            "tracked": counts,
            "tracked_total": sum(counts.values()),
            # Linked from a library: synced, read-only here (edits from elsewhere are refused).
            "linked": self.registry.linked_count(),
            "untracked": sorted(self.registry.untracked.values()),
            "registered": len(self.registered),
            "pending_requests": len(self.engine.pending),
            "to_register": len(self.to_register),
            "to_tombstone": len(self.to_tombstone),
            "tombstoned": list(self.tombstoned),
            "collisions": list(self.collisions),
            "bad_frames": self.bad_frames,
            "errors": list(self.errors),
            "reconnects": self.reconnects,
            "changes_supported": self.engine.changes_supported,
            "deferred_batches": len(self.batches),
            "blocked_reason": self.blocked_reason,
            "applied_batches": self.applied_batches,
            "live_applied": self.live_applied,
            "live_dropped": dict(self.live_dropped),
            "user_active": self.user_active,
            "last_rebind": dict(self.last_rebind),
            # A scan of the file is under way (it runs over several ticks in a big file).
            "scanning": self.file_loaded or self.scan_job is not None or self.scan_reason is not None,
            "registry_check": dict(self.registry_check),
            "generated_geometry_notes": dict(self.generated_notes),
            # Bytes of mesh attachments sent on this session's connections (each geometry
            # once per connection, however many objects name it).
            "mesh_bytes_sent": self.mesh_bytes_sent,
            "handshake_error": self.last_handshake_error,
            "backoff_s": self.transport.backoff_s if self.transport else None,
            "pause_reason": self.pause_reason,
            "safe_mode_reason": self.safe_mode_reason,
            "not_synced": self.engine.not_synced.as_list(),
            "in_flight": len(self.engine.inflight),
            "peers": list(self.engine.peers),
            "other_projects": list(self.engine.other_projects),
            "conflicts": list(self.engine.conflicts),
            "progress": self.progress(),
            "adopted": self.adopted,
            "daemon_unreachable": self.daemon_unreachable,
            "step_ms": {k: round(v, 2) for k, v in self.step_ms.items()},
            "step_cpu_ms": {k: round(v, 2) for k, v in self.step_cpu_ms.items()},
            "ai": {
                "available": sorted(self.ai.scan.available) if self.ai.scan else [],
                "withheld": list(self.ai.scan.withheld) if self.ai.scan else [],
                "rejected": list(self.ai.scan.rejected) if self.ai.scan else [],
                "last_results": list(self.ai.results[-5:]),
            },
        }
