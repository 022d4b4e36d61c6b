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
