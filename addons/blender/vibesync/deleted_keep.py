"""What the addon keeps of the objects another editor deleted (a `delete` applied here,
docs/PROTOCOL.md §6.1), so that the same uuid made again -- the delete undone there (Ctrl+Z
in Unity), or the object put back in the other editor's scene -- gets back what only Blender
held of it: its modifiers, constraints, vertex groups, UV maps, custom properties,
animation, which no `create` carries. Without it a person's Blender-side work on an object
was lost for good by another editor's delete and its undo: the object came back bare.

The twin of the Unity core's `DeletedKeep` (`Runtime/Core/DeletedKeep.cs`), free of bpy:
`apply.py` keeps an unlinked copy of the deleted object (in no scene, no users: never saved,
never evaluated) and records its session_uid here; the registry leaves the copy untracked
(`holds`) so it is neither registered nor synced while it waits.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

T = TypeVar("T")

CAPACITY = 1000


class Kept:
    """What Blender keeps of one deleted object: the session_uid of its copy, and what other
    objects pointed at it -- (holder's uuid, `modifier` or `constraint`, its name, the
    pointer property), cleared by the removal and set back when the object is made again
    (a Boolean's cutter, a Track To's target)."""

    __slots__ = ("sid", "refs")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.refs: list[tuple[str, str, str, str]] = []


class DeletedKeep(Generic[T]):
    """uuid -> what was kept of the object when it was deleted, the most recent `capacity`
    deletes (an older one is forgotten first: `keep` returns what it forgot, for the caller
    to free)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._kept: collections.OrderedDict[str, T] = collections.OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, uuid: str, what: T) -> list[T]:
        """Keeps `what` for `uuid` (replacing what was kept of it: the replaced one is
        returned first); beyond `capacity` the oldest are forgotten and returned too."""
        forgotten = []
        old = self._kept.pop(uuid, None)
        if old is not None:
            forgotten.append(old)
        self._kept[uuid] = what
        while len(self._kept) > self.capacity:
            forgotten.append(self._kept.popitem(last=False)[1])
        return forgotten

    def get(self, uuid: str) -> T | None:
        """What is kept of `uuid`, left in the keep."""
        return self._kept.get(uuid)

    def take(self, uuid: str) -> T | None:
        """What was kept of `uuid`, taken out (it is the object's again), or None."""
        return self._kept.pop(uuid, None)

    def forget(self, uuid: str) -> T | None:
        """Forgets what was kept of `uuid` (nothing to give back any more); returns it."""
        return self._kept.pop(uuid, None)

    def values(self) -> list[T]:
        return list(self._kept.values())

    def clear(self) -> list[T]:
        """Forgets everything (a file load); returns what was kept."""
        out = list(self._kept.values())
        self._kept.clear()
        return out
