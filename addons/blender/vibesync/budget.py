"""The main thread's time budget, in one place, and the garbage-collector hold of a big sync.

Free of bpy (plain CPython tests drive it). docs/ARCHITECTURE.md "Main-thread budget":

* `TICK_BUDGET_MS` -- the work one pump tick starts (each step checks the tick's deadline
  and leaves the rest for the next tick); `FRAME_MS` -- what no main-thread step of the
  addon may exceed (one frame at 60 Hz; measured by `scripts/bench-first-sync`);
  `SLICE_S` -- how long a resumable pass (scan, sweep, a big message, the progress count)
  runs before it yields; `END_TICK` -- what a resumable step yields to end its tick
  early, so that Blender evaluates what it did before it goes on (`HEAVY_NEXT`: before
  an item that cannot be split, unless the tick has just started); `TIMER_INTERVAL_S` /
  `BUSY_TIMER_INTERVAL_S` (a backlog of `BUSY_BACKLOG_ITEMS` or more, or a batch being
  applied) / `IDLE_TIMER_INTERVAL_S` -- how often Blender's timer runs the pump;
  `SLICED_PARENTING_MAX_OBJECTS` -- up to which scene size a batch's new objects are
  parented in slices before the one step that links them; `LINK_STEP_MIN_OBJECTS` -- from
  how many new objects that link step gets a tick of its own; `REMOVE_STEP_OBJECTS` -- how
  many objects a batch's deletes remove in one step.
* `GcHold` -- CPython's cyclic garbage collector walks every tracked Python object of
  Blender in a full (generation 2) collection: ~50 ms of CPU in a 10,000-object file,
  landing in whichever step happens to allocate. While a big sync runs (a scan of a big
  file, or a backlog of `GC_HOLD_MIN_ITEMS` items or more), the hold raises the
  generation-2 threshold (`gc.set_threshold`) so that no full collection starts; young
  generations are still collected. When the backlog is gone the user's thresholds are put
  back exactly as they were (unless someone else changed them meanwhile: theirs stay) and
  `gc.freeze()` moves the objects alive at that moment (Blender's and the registry built
  by the sync) to CPython's permanent generation: the full collection that the sync made
  due then walks only newer objects instead of pausing Blender for the whole heap.
  `thaw()` (`gc.unfreeze()`) puts them back into the oldest generation on disconnect,
  unregister and file load (where the collection it leads to is part of the load), so
  Blender's collector is left as it was. Frozen objects are still freed by reference
  counting; only cyclic garbage among them waits for the thaw. Nothing is frozen when
  another party already uses `gc.freeze()`. A backlog older than `GC_HOLD_MAX_S` (a peer
  that never answers) is released without freezing and not held again until it drains.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("vibesync")

TICK_BUDGET_MS = 8.0
FRAME_MS = 16.0
SLICE_S = 0.002
TIMER_INTERVAL_S = 0.05
# While a backlog is being worked off (a first sync), the timer comes back sooner: each
# tick stays within TICK_BUDGET_MS, and Blender's event loop runs between two ticks.
BUSY_TIMER_INTERVAL_S = 0.01
BUSY_BACKLOG_ITEMS = 100  # what counts as "a backlog" for the timer
IDLE_TIMER_INTERVAL_S = 0.25

# What a resumable step (an incoming batch's apply) yields to end the tick at once: what it
# did so far is evaluated by Blender's event loop (its dependency graph) before it goes on.
END_TICK = "end of tick"
# What it yields before an item that cannot be split and may take most of a tick (a mesh
# built from its attachment): the tick ends there unless it has only just started, so the
# item runs at the start of the next tick instead of past this one's budget.
HEAVY_NEXT = "heavy item next"
HEAVY_START_S = 0.001  # "only just started"

# A batch's new objects are parented outside the scene in slices over ticks only while the
# scene holds at most this many objects: parenting one tags the relations of every
# dependency graph for a rebuild, which Blender runs after each such tick, and that rebuild
# grows with the scene (measured: ~1 ms at 100 objects, ~7 ms at 400, ~28 ms at 1,000,
# ~400 ms at 10,000). In a bigger scene they are parented in the link step (one rebuild).
SLICED_PARENTING_MAX_OBJECTS = 500

# A batch making at least this many new objects links them at the start of a tick of its
# own (`END_TICK` first: ~10 ms at 10,000 objects). A smaller one links them in the tick
# that made them, so a batch of a few objects is applied and answered within one tick: an
# answer left for a later tick is lost when the person opens another file in between.
LINK_STEP_MIN_OBJECTS = 200

# A batch's consecutive deletes remove their objects this many at a time, in one pass over
# the file (`apply.remove_objects`): `batch_remove` of 16 objects takes ~4.5 ms in a
# 10,000-object file (of 1: 3.6 ms; of 32: 6.7 ms), and the whole step, with the pass that
# records what pointed at them, 13.7-15.7 ms at its longest (docs/BENCHMARKS.md).
REMOVE_STEP_OBJECTS = 16

GC_HOLD_MIN_ITEMS = 1000
GC_HOLD_MAX_S = 900.0
_HELD_GEN2 = 2**31 - 1


class GcHold:
    """Holds CPython's full collections off while a big sync runs; restores after."""

    def __init__(self, gc_module=gc, clock: Callable[[], float] = time.monotonic) -> None:
        self.gc = gc_module
        self.clock = clock
        self.saved: tuple[int, int, int] | None = None  # the user's thresholds
        self.held: tuple[int, int, int] | None = None   # what we set
        self.since = 0.0
        self.holds = 0  # how many holds were started (diagnostics, tests)
        self.expired = False
        self.frozen = False  # we called gc.freeze() and have not thawed yet

    @property
    def active(self) -> bool:
        return self.held is not None

    def update(self, busy: bool) -> None:
        """Called once per tick: `busy` says a big sync is under way."""
        if not busy:
            self.expired = False
            if self.held is not None:
                self.release()
                self.freeze()
        elif self.held is None:
            if not self.expired:
                self.start()
        elif self.clock() - self.since > GC_HOLD_MAX_S:
            # A backlog that never drains (e.g. a peer that never answers) does not keep
            # the collector held: released, and not held again until it has drained.
            self.release()
            self.expired = True

    def start(self) -> None:
        saved = tuple(self.gc.get_threshold())
        held = (saved[0], saved[1], max(saved[2], _HELD_GEN2))
        self.gc.set_threshold(*held)
        self.saved, self.held = saved, held
        self.since = self.clock()
        self.holds += 1
        log.debug("vibesync: big sync: full garbage collections held (thresholds %s)", saved)

    def freeze(self) -> None:
        """Move every object alive now to the permanent generation (see the module)."""
        if self.gc.get_freeze_count() and not self.frozen:
            return  # someone else freezes objects: their freeze is theirs to undo
        self.gc.freeze()
        self.frozen = True

    def thaw(self, collect: bool = False) -> None:
        """Undo our freeze (and release a hold); `collect` runs the full collection now
        (where a pause is expected anyway, e.g. a file load)."""
        self.release()
        if self.frozen:
            self.gc.unfreeze()
            self.frozen = False
            if collect:
                self.gc.collect()

    def release(self) -> None:
        """Put the user's thresholds back (no-op when not holding)."""
        if self.held is None:
            return
        if tuple(self.gc.get_threshold()) == self.held:
            self.gc.set_threshold(*self.saved)
        else:
            log.info("vibesync: garbage-collector thresholds changed by someone else during "
                     "the sync; leaving theirs (%s)", self.gc.get_threshold())
        self.saved = self.held = None
        log.debug("vibesync: full garbage collections released")
