"""`vibesync/deleted_keep.py` under plain CPython: what the addon keeps of objects another
editor deleted, the twin of the Unity core's `DeletedKeep` (the same rules as
`IdentityTests` there)."""

from __future__ import annotations

import pytest
from plain import load, source

deleted_keep = load("deleted_keep")


def test_the_module_does_not_need_bpy():
    text = source("deleted_keep")
    assert "import bpy" not in text and "from . import" not in text


def test_what_is_kept_is_taken_once():
    k = deleted_keep.DeletedKeep()
    assert k.keep("a", 1) == []
    assert len(k) == 1
    assert k.take("a") == 1
    assert k.take("a") is None, "given back once: the object is its uuid's again"
    assert len(k) == 0


def test_the_oldest_is_forgotten_beyond_the_capacity_and_handed_back_to_be_freed():
    k = deleted_keep.DeletedKeep(capacity=2)
    assert k.keep("a", 1) == [] and k.keep("b", 2) == []
    assert k.keep("c", 3) == [1], "the oldest goes first, returned for the caller to free"
    assert k.take("a") is None and k.take("b") == 2 and k.take("c") == 3


def test_keeping_a_uuid_again_replaces_and_hands_back_the_earlier_copy():
    k = deleted_keep.DeletedKeep(capacity=2)
    k.keep("a", 1)
    k.keep("b", 2)
    assert k.keep("a", 3) == [1], "a second delete of a remade object keeps its latest state"
    assert k.keep("c", 4) == [2], "`a` was kept again after `b`: `b` is now the oldest"
    assert k.values() == [3, 4]


def test_forget_and_clear_hand_back_what_they_drop():
    k = deleted_keep.DeletedKeep()
    k.keep("a", 1)
    k.keep("b", 2)
    assert k.forget("a") == 1 and k.forget("a") is None
    assert k.clear() == [2] and len(k) == 0


def test_a_capacity_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        deleted_keep.DeletedKeep(capacity=0)


def test_get_leaves_what_is_kept_and_a_kept_object_starts_with_no_references():
    k = deleted_keep.DeletedKeep()
    entry = deleted_keep.Kept(7)
    k.keep("a", entry)
    assert k.get("a") is entry and k.get("a") is entry and len(k) == 1
    assert entry.refs == [] and deleted_keep.Kept(8).refs is not entry.refs
