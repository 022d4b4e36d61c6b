"""The addon's bpy-free sync bookkeeping (`vibesync/engine.py`) under plain CPython: the
module is loaded from its file, so the package (which imports bpy) is never imported."""

from __future__ import annotations

from plain import load, source

engine = load("engine")

A, B, C = ("a" * 8 + "-0000-4000-8000-" + "0" * 12, "b" * 8 + "-0000-4000-8000-" + "0" * 12,
           "c" * 8 + "-0000-4000-8000-" + "0" * 12)


def test_engine_module_does_not_need_bpy():
    text = source("engine")
    assert "import bpy" not in text and "from . import" not in text


def test_a_result_resolves_only_the_change_it_covered():
    f = engine.InFlight()
    f.sent("c1", [A])
    assert A in f
    # A newer edit of A while c1 is in flight waits instead of being sent.
    f.wait(A, ("object", 1))
    assert f.resolve([A]) == [("object", 1)], "the waiting edit is captured again"
    assert A not in f
    # Resolving again (a late duplicate result) releases nothing.
    assert f.resolve([A]) == []


def test_a_drag_sends_each_pose_and_a_result_ends_the_moves_up_to_its_through():
    f = engine.InFlight()
    ns = engine.NotSynced()
    f.sent("m1", [A, A])  # two ops of A in one request: one request in flight
    assert f.requests[A] == ["m1"]
    # Only fast-path changes of A in flight: the next pose goes at once (PROTOCOL §6.6).
    assert engine.send_mode(A, f, ns, True, fast=True) == engine.SEND_DIFF
    assert engine.send_mode(A, f, ns, True, fast=False) == engine.SEND_WAIT, "a mesh waits"
    f.sent("m2", [A])
    f.sent("m3", [A])
    # The first window's result ends m1 and m2, not m3 (sent after it closed).
    assert f.resolve([A], {A: "m2"}) == [] and A in f
    # A result naming a request that already ended leaves the later ones in flight.
    assert f.resolve([A], {A: "m1"}) == [] and A in f
    f.wait(A, "ka")
    assert f.resolve([A], {A: "m3"}) == ["ka"] and A not in f
    # A slow change in flight: nothing else of the uuid goes until it ends.
    f.sent("c1", [B], slow={B})
    assert engine.send_mode(B, f, ns, True, fast=True) == engine.SEND_WAIT
    # No `through` (an older daemon): the result ends every change of the uuid.
    f.sent("m4", [A])
    f.sent("m5", [A])
    assert f.resolve([A]) == [] and A not in f
    # A refusal ends only its own request.
    f.sent("m6", [C])
    f.sent("m7", [C])
    f.refused("m6", [C])
    assert C in f and f.requests[C] == ["m7"]


def test_a_refusal_resolves_only_its_own_request():
    f = engine.InFlight()
    f.sent("c1", [A, B])
    f.sent("c2", [C])
    assert f.refused("c1", [A]) == []
    assert A not in f and B in f and C in f
    f.wait(B, "kb")
    assert f.refused("c1") == ["kb"]  # the whole request (an error frame)
    assert B not in f and C in f
    assert f.refused("c9", [C]) == [] and C in f, "another request's refusal does not touch C"


def test_reset_releases_every_waiting_edit():
    f = engine.InFlight()
    f.sent("c1", [A])
    f.wait(A, "ka")
    assert f.reset() == ["ka"] and len(f) == 0


def test_not_synced_marks_and_retries_children_of_an_arrived_parent():
    n = engine.NotSynced()
    n.mark([A, B], "VERIFY_MISMATCH: parent missing in Unity")
    parents = {A: C, B: None}
    assert n.waiting_for({C}, parents.get) == [A]
    n.synced([A])
    assert A not in n and B in n
    assert n.as_list() == [{"uuid": B, "reason": "VERIFY_MISMATCH: parent missing in Unity"}]


def test_error_loop_needs_identical_failures_within_the_window():
    now = [0.0]
    loop = engine.ErrorLoop(threshold=3, window_s=10.0, clock=lambda: now[0])
    assert not loop.record("x")
    assert not loop.record("y"), "a different failure starts over"
    assert not loop.record("y")
    now[0] = 30.0
    assert not loop.record("y"), "old failures age out"
    assert not loop.record("y")
    assert loop.record("y")
    loop.reset()
    assert not loop.record("y")


def test_adoption_pairs_only_unambiguous_unknown_names():
    incoming = [(A, "object", "Cube"), (B, "collection", "Collection"),
                (C, "object", "Light"), ("dup1", "object", "Twin"), ("dup2", "object", "Twin")]
    fresh = {("object", "Cube"): "f1", ("collection", "Collection"): "f2",
             ("object", "Twin"): "f3", ("object", "Camera"): "f4", ("object", "Light"): "f5"}
    known = {C}  # Light's uuid is already bound here: nothing to adopt
    assert engine.match_adoptions(incoming, fresh, known) == {"f1": A, "f2": B}


class Scene:
    """A `SceneAdapter` that records what the engine asked of it."""

    def __init__(self, alive=()) -> None:
        self.objects = set(alive)
        self.captured: list = []   # editor keys captured again
        self.forgotten: list[str] = []
        self.marked: list[tuple] = []  # (uuid, geometry, quiet)

    def alive(self, uuid):
        return uuid in self.objects

    def capture(self, keys):
        self.captured.extend(keys)

    def forget_sent(self, uuid):
        self.forgotten.append(uuid)

    def mark_for_capture(self, uuid, geometry=False, quiet=False):
        self.marked.append((uuid, geometry, quiet))


def test_sync_engine_a_new_connection_drops_what_the_old_one_left_unanswered():
    scene = Scene()
    e = engine.SyncEngine(scene, last_seq=7)
    e.sent("c1", engine.CHANGE, [A])
    e.sent("r2", "register", {"uuids": [B]})
    assert A in e.inflight and B not in e.inflight, "only a change's uuids are in flight"
    e.send_mode(A, "ka", True)  # a newer edit of A waits
    e.changes_supported = False
    e.connected(12)
    assert e.pending == {} and len(e.inflight) == 0 and e.changes_supported
    assert scene.captured == ["ka"], "the waiting edit is captured again"
    assert e.daemon_seq == 12 and e.last_seq == 7, "welcome's seq is seen, not applied"
    e.sent("c3", engine.CHANGE, [A])
    e.disconnected()
    assert e.pending == {} and A in e.inflight, "in flight until the next connection says"


def test_sync_engine_seqs_only_move_forward_on_integers():
    e = engine.SyncEngine(Scene(), last_seq=5)
    for seq in (None, True, "9", 3.0):
        e.seen_seq(seq)
        assert not e.result_done(seq)
    assert e.daemon_seq == 0 and e.last_seq == 5
    e.seen_seq(9)
    e.seen_seq(4)
    assert e.daemon_seq == 9
    assert not e.result_done(5) and e.last_seq == 5, "not past the position it has"
    assert e.result_done(11) and e.last_seq == 11 and e.daemon_seq == 11


def test_sync_engine_a_loaded_file_starts_from_its_own_position():
    scene = Scene()
    e = engine.SyncEngine(scene, last_seq=40)
    e.sent("c1", engine.CHANGE, [A])
    e.send_mode(A, "ka", True)
    e.not_synced.mark([B], "kept")
    e.synced.add(C)
    e.result_seq[C] = 39
    e.file_loaded(3)
    assert e.last_seq == 3 and len(e.inflight) == 0 and len(e.not_synced) == 0
    assert not e.synced and not e.result_seq
    assert scene.captured == [], "the last file's waiting edits are not captured here"


def test_sync_engine_an_error_ends_the_whole_change_and_unknown_type_stops_sending():
    scene = Scene()
    e = engine.SyncEngine(scene)
    e.sent("c1", engine.CHANGE, [A, B])
    e.sent("c2", engine.CHANGE, [C])
    e.send_mode(B, "kb", True)
    assert e.answered("c1") == (engine.CHANGE, [A, B]) and e.answered("c1") is None
    assert e.answered(None) is None and e.answered(["c2"]) is None, "no request id: nothing"
    scene.objects = {A, B, C}
    assert e.on_change_error("c1", "RATE_LIMITED"), "not run: it goes again later"
    assert A not in e.inflight and B not in e.inflight and C in e.inflight
    assert scene.captured == ["kb"] and e.changes_supported
    # Everything it carried is captured again, whole (PROTOCOL §2: retry later).
    assert sorted(scene.forgotten) == sorted([A, B])
    assert sorted(scene.marked) == sorted([(A, True, False), (B, True, False)])
    assert not e.on_change_error("c2", engine.UNKNOWN_TYPE)
    assert C not in e.inflight and not e.changes_supported
    assert C not in scene.forgotten, "a refusal that is final is not sent again"


def test_sync_engine_safe_mode_keeps_and_marks_what_it_refused_and_what_waits():
    scene = Scene()
    e = engine.SyncEngine(scene)
    scene.objects = {A, B}
    e.sent("c1", engine.CHANGE, [A, B])
    e.answered("c1")
    scene.objects = {A}  # B was deleted here meanwhile: nothing of it is kept
    assert e.on_change_error("c1", engine.SAFE_MODE, "read-only"), "kept: it goes again"
    assert len(e.inflight) == 0
    assert e.not_synced.as_list() == [{"uuid": A, "reason": "SAFE_MODE: read-only"}]
    assert scene.forgotten == [A] and scene.marked == [(A, True, False)]
    scene.objects = {A, C}
    e.mark_held([A, C], "3 unclean boots")
    assert e.not_synced.reasons == {A: "SAFE_MODE: read-only", C: "SAFE_MODE: 3 unclean boots"}
    assert scene.forgotten == [A, C], "a held edit goes in full, like every kept edit"
    assert scene.marked[-1] == (C, False, True), "captured again quietly: no new user edit"
    e.on_batch_result({"type": "batch_result", "batch_id": "b", "seq": 9,
                       "outcome": engine.COMMITTED, "uuids": [A, C]})
    assert len(e.not_synced) == 0, "committed: the marks are gone"


def test_sync_engine_a_refusal_of_an_object_gone_here_keeps_and_resends_nothing():
    scene = Scene(alive=[B])
    e = engine.SyncEngine(scene)
    e.sent("c1", engine.CHANGE, [A, B])
    refused = e.on_change_ack("c1", [
        {"uuid": A, "status": engine.ITEM_ERROR, "error_code": engine.QUARANTINED, "message": "q"},
        {"uuid": B, "status": engine.ITEM_ERROR, "error_code": engine.NOT_FOUND},
        {"uuid": 5, "status": engine.ITEM_ERROR, "error_code": "INVALID_UUID"},
        "not an item"])
    assert refused == [(A, engine.QUARANTINED, "q"), (B, engine.NOT_FOUND, None),
                       (5, "INVALID_UUID", None)]
    assert len(e.not_synced) == 0, "A is gone here: nothing to keep"
    assert scene.forgotten == [B] and scene.marked == [(B, True, False)], "B in full, geometry too"
    assert len(e.inflight) == 0


def test_sync_engine_a_change_the_daemon_cannot_take_stays_here_marked_not_synced():
    # PROTOCOL §6.1: a reparent that would close a parent cycle through the committed state
    # (INVALID_FIELD), a non-finite value, a mesh over the limit: the person's edit stays here,
    # marked not synced with the reason, re-sent on the usual triggers; STALE ends it (its
    # current state follows); INVALID_FIELD for a change that named its geometry without it
    # is the caller's to send again, with it — not a refusal of the edit.
    D = "d" * 8 + "-0000-4000-8000-" + "0" * 12
    scene = Scene(alive=[A, B, C, D])
    e = engine.SyncEngine(scene)
    e.sent("c1", engine.CHANGE, [A, B, C, D])
    cycle = "changes[0].parent: A would become its own ancestor (A → B → A)"
    refused = e.on_change_ack("c1", [
        {"uuid": A, "status": engine.ITEM_ERROR, "error_code": engine.INVALID_FIELD, "message": cycle},
        {"uuid": B, "status": engine.ITEM_ERROR, "error_code": engine.TOO_LARGE, "message": "big"},
        {"uuid": C, "status": engine.ITEM_ERROR, "error_code": "STALE", "message": "s"},
        {"uuid": D, "status": engine.ITEM_ERROR, "error_code": engine.INVALID_FIELD, "message": "m"}],
        mesh_named={D})
    assert [r.uuid for r in refused] == [A, B, C, D]
    assert e.not_synced.reasons == {A: f"INVALID_FIELD: {cycle}", B: "TOO_LARGE: big"}
    assert len(e.inflight) == 0 and scene.forgotten == []


def test_sync_engine_an_agents_change_refused_as_a_loop_is_ended_not_kept():
    """Model seed 2017: an agent's tool call put A under B; the daemon refused it
    INVALID_FIELD (a loop through the committed parents) and sends the state that stands,
    which must undo it here — automation's changes are undone everywhere (PROTOCOL §6.1,
    §6.4). Not kept, not marked, not sent again; a person's same refusal is kept, and so is
    an agent's change of a uuid this editor keeps a person's edit of."""
    scene = Scene(alive=[A, B, C])
    e = engine.SyncEngine(scene)
    loop = {"status": engine.ITEM_ERROR, "error_code": engine.INVALID_FIELD, "message": "loop"}
    e.sent("c1", engine.CHANGE, [A])
    e.on_change_ack("c1", [{"uuid": A, **loop}], automation=True)
    assert A not in e.not_synced and e.not_synced.refused_invalid == set(), "the agent's: ended"
    e.sent("c2", engine.CHANGE, [B])
    e.on_change_ack("c2", [{"uuid": B, **loop}])
    assert B in e.not_synced, "a person's: kept"
    e.not_synced.mark([C], "Unity did not confirm it in time")
    e.sent("c3", engine.CHANGE, [C])
    e.on_change_ack("c3", [{"uuid": C, **loop}], automation=True)
    assert C in e.not_synced, "a person's kept edit of it stays"


def test_sync_engine_an_edit_refused_as_a_loop_goes_again_when_its_parents_may_differ():
    """Model seed 222: the person put C under B, whose own kept reparent the daemon did not
    have, so C was read as a loop and refused INVALID_FIELD (kept). When a change of this
    editor commits (B's kept reparent, sent again) or a batch changes parents, C goes again,
    whole; what was kept for another reason waits for its own triggers (PROTOCOL §6.4)."""
    scene = Scene(alive=[A, B, C])
    e = engine.SyncEngine(scene)
    e.sent("c1", engine.CHANGE, [C, A])
    e.on_change_ack("c1", [
        {"uuid": C, "status": engine.ITEM_ERROR, "error_code": engine.INVALID_FIELD, "message": "loop"},
        {"uuid": A, "status": engine.ITEM_ERROR, "error_code": engine.TOO_LARGE, "message": "big"}])
    e.not_synced.mark([B], "Unity did not confirm it in time")
    assert e.not_synced.refused_invalid == {C}
    e.sent("c2", engine.CHANGE, [B])
    e.on_change_ack("c2", [{"uuid": B, "status": "queued"}])
    e.on_batch_result({"batch_id": "b1", "seq": 9, "outcome": engine.COMMITTED, "uuids": [B],
                       "through": {B: "c2"}})
    assert scene.forgotten == [C] and scene.marked[-1] == (C, False, True), "C alone, in full"
    e.parents_changed()
    assert scene.forgotten == [C, C], "a batch that changed parents: again"
    e.on_batch_result({"batch_id": "b2", "seq": 10, "outcome": engine.COMMITTED, "uuids": [C],
                       "through": {C: "c3"}})
    assert e.not_synced.refused_invalid == set() and C not in e.not_synced
    e.parents_changed()
    assert scene.forgotten == [C, C], "committed: nothing kept to send"


def test_sync_engine_an_edit_refused_as_a_loop_goes_again_when_a_batch_that_changed_parents_commits():
    """Model seed 2011: C, kept here, was refused as a loop through automation's link of B.
    Another editor's batch that undoes that link is applied here: C goes at once and is
    refused again (the daemon reads committed parents, and the batch is not committed yet).
    When the batch commits, C goes again; a batch rolled back, or one that moved nothing,
    sends nothing (PROTOCOL §6.1)."""
    scene = Scene(alive=[A, B, C])
    e = engine.SyncEngine(scene)
    loop = {"uuid": C, "status": engine.ITEM_ERROR, "error_code": engine.INVALID_FIELD, "message": "loop"}
    e.sent("c1", engine.CHANGE, [C])
    e.on_change_ack("c1", [loop])
    e.batch_begun("b1")
    e.batch_changed_parents("b1")
    assert scene.forgotten == [C], "applied: again at once"
    e.sent("c2", engine.CHANGE, [C])
    e.on_change_ack("c2", [loop])
    e.on_batch_result({"batch_id": "b1", "seq": 9, "outcome": engine.COMMITTED, "uuids": [A, B],
                       "through": {}})
    assert scene.forgotten == [C, C], "its batch committed: the daemon's parents moved, again"
    e.batch_begun("b2")
    e.batch_changed_parents("b2")
    assert scene.forgotten == [C, C, C]
    e.on_batch_result({"batch_id": "b2", "seq": 11, "outcome": "rolled_back", "uuids": [A],
                       "through": {}})
    e.on_batch_result({"batch_id": "b3", "seq": 12, "outcome": engine.COMMITTED, "uuids": [A],
                       "through": {}})
    assert scene.forgotten == [C, C, C], "rolled back, or not a batch that moved parents: no more"


def test_sync_engine_a_peer_joining_retries_what_is_still_here_and_forgets_the_rest():
    scene = Scene(alive=[A])
    e = engine.SyncEngine(scene)
    e.not_synced.mark([A, B], "kept")
    e.on_peers({"peers": [{"session_id": "s1"}, "junk"], "other_projects": [{"id": "p"}, 3]})
    assert e.peers == [{"session_id": "s1"}] and e.other_projects == [{"id": "p"}]
    assert scene.forgotten == [A] and scene.marked == [(A, False, True)], "quiet: not an edit"
    assert e.not_synced.reasons == {A: "kept"}, "B is gone here: not synced any more"
    e.on_peers({"peers": [{"session_id": "s1"}]})
    assert scene.marked == [(A, False, True)] and e.other_projects == [], "nobody new"


def test_sync_engine_an_applied_batch_counts_as_synced_and_retries_children_of_its_parents():
    scene = Scene(alive=[A, B])
    e = engine.SyncEngine(scene, last_seq=10)
    e.not_synced.mark([A], "parent missing in Unity")
    parents = {A: C}
    e.applied(8, {C, B}, {B}, parents.get)
    assert e.synced == {C}, "a uuid the replay kept is not synced by it"
    assert scene.marked == [(A, False, True)] and e.last_seq == 10
    e.applied(12, set(), set(), parents.get)
    assert e.last_seq == 12


def test_sync_engine_retries_kept_children_of_a_parent_the_batch_deleted():
    """Kept here, not synced, under C (its kept edit named C); a batch deletes C: B stands
    at the root now, and nothing else would send it again (PROTOCOL.md §6.4)."""
    scene = Scene(alive=[A, B])
    e = engine.SyncEngine(scene, last_seq=10)
    e.not_synced.mark([A, B], "Unity does not hold the parent")
    parents = {A: C, B: A}
    e.applied(11, set(), set(), parents.get, {C})
    assert scene.forgotten == [A] and scene.marked == [(A, False, True)], "A alone, quietly"
    assert e.last_seq == 11


def test_sync_engine_remembers_a_bounded_number_of_received_batches():
    e = engine.SyncEngine(Scene())
    e.sent("c1", engine.CHANGE, [A])
    e.batch_begun("b0")
    e.answered("c1")
    for i in range(1, engine.MAX_RECEIVED_BATCHES + 1):
        e.batch_begun(f"b{i}")
    assert len(e.received_batches) == engine.MAX_RECEIVED_BATCHES and "b0" not in e.received_batches
    assert e.received_batches["b1"] == frozenset([A]), "acknowledged by then"


def test_sync_engine_a_resync_batch_answers_the_oldest_resync_request():
    e = engine.SyncEngine(Scene())
    e.sent("r1", engine.RESYNC, None)
    e.sent("c2", engine.CHANGE, [A])
    e.sent("r3", engine.RESYNC, None)
    e.resync_answered()
    assert list(e.pending) == ["c2", "r3"]
    e.resync_answered()
    e.resync_answered()
    assert list(e.pending) == ["c2"]


def test_sync_engine_keeps_the_last_hundred_conflicts():
    e = engine.SyncEngine(Scene())
    for i in range(105):
        e.on_conflict({"type": "conflict", "uuid": A, "n": i})
    assert len(e.conflicts) == 100 and e.conflicts[0]["n"] == 5 and "at" in e.conflicts[-1]


def test_sync_engine_a_person_s_edit_kept_after_a_verify_timeout_goes_again_by_itself():
    scene = Scene(alive=[A, B])
    e = engine.SyncEngine(scene)
    e.sent("c1", engine.CHANGE, [A, B])
    timeout = {"type": "batch_result", "batch_id": "b1", "seq": 3, "outcome": "rolled_back",
               "uuids": [A, B], "error_code": engine.VERIFY_TIMEOUT, "kept_local": True,
               "reason": "Unity did not confirm the change in time"}
    e.on_batch_result(timeout)
    assert A in e.not_synced and B in e.not_synced
    now = engine.time.monotonic()
    assert e.retry_due(now) == 0, "not at once: the participant was slow"
    assert e.retry_due(now + engine.TIMEOUT_RETRY_S[0] + 1) == 2
    assert sorted(scene.marked) == [(A, False, True), (B, False, True)], "sent in full, not as an edit"
    assert e.retry_due(now + 1000) == 0, "once per timeout"
    # A mismatch is no reason to try again by itself; three timeouts in a row are the most.
    e.on_batch_result(dict(timeout, error_code="VERIFY_MISMATCH"))
    assert e.retry_due(now + 1000) == 0
    for _ in range(5):
        e.on_batch_result(timeout)
        e.retry_due(now + 10_000)
    assert e.retries_in_a_row[A] == len(engine.TIMEOUT_RETRY_S) and not e.retry_at
    # Committed at last: the count starts over.
    e.on_batch_result(dict(timeout, outcome="committed", error_code=None, kept_local=None))
    assert A not in e.retries_in_a_row and A not in e.not_synced


def test_sync_engine_a_person_s_edit_rolled_back_for_another_uuid_s_mismatch_goes_again_by_itself():
    """PROTOCOL §6.4: a VERIFY_MISMATCH rollback names the uuids that caused it (`mismatched`);
    a kept edit of any other uuid of the batch goes again in full after a short pause, the
    edit of a uuid it names waits for the usual triggers."""
    scene = Scene(alive=[A, B])
    e = engine.SyncEngine(scene)
    e.sent("c1", engine.CHANGE, [A, B])
    mismatch = {"type": "batch_result", "batch_id": "b1", "seq": 3, "outcome": "rolled_back",
                "uuids": [A, B], "error_code": engine.VERIFY_MISMATCH, "kept_local": True,
                "reason": "Unity could not apply the change as sent (its state differs)",
                "mismatched": [B]}
    e.on_batch_result(mismatch)
    assert A in e.not_synced and B in e.not_synced
    now = engine.time.monotonic()
    assert e.retry_due(now) == 0, "after a pause: a person may still be at work"
    assert e.retry_due(now + engine.COLLATERAL_RETRY_S[0] + 0.5) == 1
    assert scene.marked == [(A, False, True)], "A goes again in full; B waits"
    for _ in range(5):
        e.on_batch_result(mismatch)
        e.retry_due(now + 10_000)
    assert e.retries_in_a_row[A] == len(engine.COLLATERAL_RETRY_S) and not e.retry_at, "three in a row at most"
    assert B not in e.retries_in_a_row


def test_creates_go_ancestors_first_also_through_an_object_not_sent():
    """PROTOCOL.md §6.1: kept work goes again in one `change`, an ancestor's full state before
    its descendant's, also through one that is not sent (here C is under B, B under A; B is
    not sent). Other ops keep their places."""
    move = ({"op": "transform", "uuid": B}, b"")
    c = ({"op": "create", "uuid": C, "parent": B}, b"")
    a = ({"op": "create", "uuid": A, "parent": None}, b"")
    last = {B: {"parent": A}}
    out = engine.order_creates_parent_first([c, move, a], lambda u: (last.get(u) or {}).get("parent"))
    assert out == [a, move, c]
    # Nothing to reorder, and a parent loop among the creates, end as they are (no hang).
    assert engine.order_creates_parent_first([a, move], lambda u: None) == [a, move]
    x = ({"op": "create", "uuid": A, "parent": C}, b"")
    y = ({"op": "create", "uuid": C, "parent": A}, b"")
    assert sorted(u[0]["uuid"] for u in engine.order_creates_parent_first([x, y], lambda u: None)) == [A, C]
