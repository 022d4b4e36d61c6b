"""The sidebar's lines (`vibesync/statusview.py`) under plain CPython, against the shared
vector `tests/vectors/status_view.json` that the Unity window's `StatusView` reads too: both
editors say the same thing about the same state."""

from __future__ import annotations

import pytest
from plain import load, source, vector

statusview = load("statusview")
VECTOR = vector("status_view.json")
LEVELS = {statusview.PLAIN, statusview.OK, statusview.INFO, statusview.PROGRESS,
          statusview.WARNING, statusview.ERROR}


def test_statusview_module_does_not_need_bpy():
    text = source("statusview")
    assert "import bpy" not in text and "from . import" not in text


@pytest.mark.parametrize("case", VECTOR["cases"], ids=[c["name"] for c in VECTOR["cases"]])
def test_the_sidebar_says_what_the_vector_says(case):
    got = [line._asdict() for line in statusview.lines(case["status"])]
    assert got == case["lines"]
    assert all(line["level"] in LEVELS for line in got)


def test_the_vector_reads_only_the_fields_of_the_view():
    for case in VECTOR["cases"]:
        assert set(case["status"]) <= set(statusview.FIELDS), case["name"]


def test_the_vector_covers_every_line_the_view_can_say():
    keys = {line["key"] for case in VECTOR["cases"] for line in case["lines"]}
    text = source("statusview")
    said = {k for k in ("state", "daemon_not_running", "handshake_error", "paused",
                        "safe_mode", "daemon", "project", "peer", "alone", "other_project",
                        "first_sync", "seq", "linked", "untracked", "held_batches",
                        "not_synced", "collisions", "conflict", "last_error")
            if f'Line("{k}"' in text}
    assert keys == said, said - keys
