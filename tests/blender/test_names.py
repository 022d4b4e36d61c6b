"""The addon spells every wire name as tests/vectors/names.json (generated from the Rust enums
of crates/vibesync-protocol) does: message types and directions, error codes and which close
the connection, statuses, outcomes, paths, client and entity kinds, ops, admin actions, and which refusals
leave a change kept here."""

from __future__ import annotations

import json
import os

from conftest import VECTORS
from vibesync import wire

with open(os.path.join(VECTORS, "names.json"), encoding="utf-8") as f:
    NAMES = json.load(f)


def _values(cls) -> set:
    return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}


def test_message_types_and_directions():
    want = {m["type"]: m["direction"] for m in NAMES["message_types"]}
    assert _values(wire.MessageType) == set(want)
    assert wire.DIRECTION == want


def test_error_codes_and_which_close_the_connection():
    codes = {c["code"]: c["closes_connection"] for c in NAMES["error_codes"]}
    every = set(codes) | set(NAMES["item_error_codes"]) | set(NAMES["rollback_codes"])
    assert _values(wire.ErrorCode) == every
    assert set(wire.CLOSING_ERRORS) == {c for c, closes in codes.items() if closes}
    assert list(wire.ITEM_ERROR_CODES) == NAMES["item_error_codes"]
    assert list(wire.ROLLBACK_CODES) == NAMES["rollback_codes"]


def test_the_refusals_an_editor_keeps_a_change_under():
    """PROTOCOL §6.1: the per-item refusals after which the person's change stays here, marked
    not synced — the daemon's `ItemErrorCode::kept_by_editor`, Unity's `KeptWhenRefused`."""
    from vibesync import engine
    kept = {c for c in NAMES["item_error_codes"] if engine.refusal(c) == engine.REFUSED_KEEP}
    assert kept == set(NAMES["kept_by_editor"])


def test_statuses_outcomes_paths():
    assert _values(wire.ItemStatus) == set(NAMES["item_statuses"])
    assert _values(wire.BatchOutcome) == set(NAMES["batch_outcomes"])
    assert _values(wire.PathKind) == set(NAMES["path_kinds"])
    assert _values(wire.AdminAction) == set(NAMES["admin_actions"])
    assert _values(wire.EditorRunState) == set(NAMES["editor_run_states"])


def test_kinds_and_ops():
    clients = NAMES["client_kinds"]
    assert _values(wire.ClientKind) == {c["kind"] for c in clients}
    assert wire.SCENE_HOLDERS == {c["kind"] for c in clients if c["holds_scene"]}
    kinds = NAMES["entity_kinds"]
    assert list(wire.KINDS) == [k["kind"] for k in kinds]
    assert list(wire.SYNCED_KINDS) == [k["kind"] for k in kinds if k["synced_state"]]
    ops = NAMES["change_ops"]
    assert _values(wire.Op) == {o["op"] for o in ops}
    assert wire.FAST_OPS == {o["op"] for o in ops if o["path"] == "fast"}
