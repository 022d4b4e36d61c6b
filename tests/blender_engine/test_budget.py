"""The main-thread budget and the garbage-collector hold (`vibesync/budget.py`) under plain
CPython: loaded from its file, so the package (which imports bpy) is never imported. The
hold is exercised against the real `gc` module and against a recording fake."""

from __future__ import annotations

import gc
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_PATH = os.path.join(HERE, "..", "..", "addons", "blender", "vibesync", "budget.py")
_spec = importlib.util.spec_from_file_location("vibesync_budget_plain", _PATH)
budget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budget)


class FakeGc:
    def __init__(self, thresholds=(700, 10, 10), frozen: int = 0) -> None:
        self.t = tuple(thresholds)
        self.frozen = frozen
        self.collected = 0

    def get_freeze_count(self):
        return self.frozen

    def freeze(self):
        self.frozen += 1000

    def unfreeze(self):
        self.frozen = 0

    def collect(self):
        self.collected += 1

    def get_threshold(self):
        return self.t

    def set_threshold(self, *t):
        self.t = tuple(t)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_module_does_not_need_bpy():
    with open(_PATH, encoding="utf-8") as f:
        text = f.read()
    assert "import bpy" not in text and "from . import" not in text


def test_the_budget_fits_in_a_frame():
    assert budget.TICK_BUDGET_MS + 1000 * budget.SLICE_S < budget.FRAME_MS
    assert budget.BUSY_TIMER_INTERVAL_S < budget.TIMER_INTERVAL_S < budget.IDLE_TIMER_INTERVAL_S


def test_a_big_sync_holds_full_collections_and_restores_the_real_thresholds():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    hold = budget.GcHold()
    try:
        hold.update(True)
        assert hold.active
        t = gc.get_threshold()
        assert t[:2] == before[:2], "young generations are still collected"
        assert t[2] > 1_000_000, "no full collection starts while the sync runs"
        hold.update(True)
        assert hold.holds == 1
        hold.update(False)
        assert not hold.active and gc.get_threshold() == before
        assert hold.frozen and gc.get_freeze_count() > 0, "what the sync left is frozen"
    finally:
        hold.thaw()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_thaw_collects_only_when_asked_and_only_what_it_froze():
    fake = FakeGc()
    hold = budget.GcHold(fake)
    hold.thaw(collect=True)
    assert fake.collected == 0, "nothing frozen: nothing to do"
    hold.update(True)
    hold.update(False)
    assert fake.frozen
    hold.thaw(collect=True)
    assert fake.frozen == 0 and fake.collected == 1


def test_someone_elses_freeze_is_left_alone():
    fake = FakeGc(frozen=5)
    hold = budget.GcHold(fake)
    hold.update(True)
    hold.update(False)
    assert not hold.frozen and fake.frozen == 5
    hold.thaw()
    assert fake.frozen == 5


def test_thresholds_changed_by_someone_else_during_the_hold_are_left_alone():
    fake = FakeGc()
    hold = budget.GcHold(fake)
    hold.update(True)
    fake.set_threshold(500, 5, 5)  # another add-on's choice
    hold.update(False)
    assert fake.get_threshold() == (500, 5, 5)


def test_a_backlog_that_never_drains_is_released_after_the_maximum_and_not_held_again():
    fake, clock = FakeGc(), Clock()
    hold = budget.GcHold(fake, clock)
    hold.update(True)
    assert hold.active
    clock.now = budget.GC_HOLD_MAX_S + 1
    hold.update(True)
    assert not hold.active and fake.get_threshold() == (700, 10, 10)
    assert not hold.frozen, "an expired hold does not freeze"
    clock.now += 10
    hold.update(True)
    assert not hold.active, "held again before the backlog drained"
    hold.update(False)
    hold.update(True)
    assert hold.active and hold.holds == 2
    hold.release()
    hold.release()  # idempotent
    assert fake.get_threshold() == (700, 10, 10)
