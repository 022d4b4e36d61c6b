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
    def __init__(self, thresholds=(700, 10, 10)) -> None:
        self.t = tuple(thresholds)

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
    hold = budget.GcHold()
    try:
        hold.update(True)
        assert hold.active
        t = gc.get_threshold()
        assert t[:2] == before[:2], "young generations are still collected"
        assert t[2] > 1_000_000, "no full collection starts while the sync runs"
        hold.update(True)
        assert hold.holds == 1
    finally:
        hold.update(False)
    assert not hold.active
    assert gc.get_threshold() == before


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
    clock.now += 10
    hold.update(True)
    assert not hold.active, "held again before the backlog drained"
    hold.update(False)
    hold.update(True)
    assert hold.active and hold.holds == 2
    hold.release()
    hold.release()  # idempotent
    assert fake.get_threshold() == (700, 10, 10)
