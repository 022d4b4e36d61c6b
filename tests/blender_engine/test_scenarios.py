"""The shared engine scenarios (`tests/vectors/engine_scenarios.json`) against the addon's
bpy-free `engine.SyncEngine` (what `pump.Session` delegates to), under plain CPython, with a
scene of named objects as its `SceneAdapter`. The Unity core's `ScenarioTests` run the same
file against its `SyncEngine`."""

from __future__ import annotations

import pytest
from plain import load, vector

engine = load("engine")
SCENARIOS = vector("engine_scenarios.json")["scenarios"]
STEPS = ("send", "verify", "replay", "apply")


class Scene:
    """`engine.SceneAdapter` over named objects: an edit always changes the object, so a
    capture always finds a change."""

    def __init__(self, objects: list[str]) -> None:
        self.objects = set(objects)
        self.last_sent = set(objects)  # objects whose last sent state the daemon holds
        self.marked: list[str] = []    # marked for capture, in order

    def alive(self, uuid: str) -> bool:
        return uuid in self.objects

    def capture(self, keys) -> None:
        self.marked.extend(keys)  # an object's editor key is its name

    def forget_sent(self, uuid: str) -> None:
        self.last_sent.discard(uuid)

    def mark_for_capture(self, uuid: str, geometry: bool = False, quiet: bool = False) -> None:
        if uuid in self.objects:
            self.marked.append(uuid)


class Editor:
    """The scenario's steps as messages to `SyncEngine`, and the `capture` and `send` the
    pump runs on what the engine (or a person's edit) marked, once per step."""

    def __init__(self, objects: list[str]) -> None:
        self.scene = Scene(objects)
        self.engine = engine.SyncEngine(self.scene)
        self.engine.synced.update(objects)
        self.last_change: dict[str, str] = {}  # object -> the last change naming it
        self.peers: list[dict] = []
        self.sent: list[list[list[str]]] = []
        self.kept: list[str] = []
        self.live: dict[str, str] = {}
        self.slow_edits: set[str] = set()  # objects whose pending edit is not a move
        self.n = 0
        self.rid = ""  # the last `change` sent
        self.safe_mode: str | None = None  # its reason while the daemon is in safe mode

    def capture_and_send(self) -> None:
        if self.safe_mode is not None:
            # pump._mark_held: nothing is sent; what waits is marked (and captured again).
            self.engine.mark_held(list(dict.fromkeys(self.scene.marked)), self.safe_mode)
            return
        names, self.scene.marked = list(dict.fromkeys(self.scene.marked)), []
        ops = []
        for name in names:
            # An edit is a move (fast-path, PROTOCOL §6.6) unless the step said `slow`.
            fast = name not in self.slow_edits
            mode = self.engine.send_mode(name, name, name in self.scene.last_sent, fast)
            if mode != engine.SEND_WAIT:
                ops.append([name, "create" if mode == engine.SEND_FULL else "edit"])
        if ops:
            self.n += 1
            rid = f"c{self.n}"
            slow = {name for name, kind in ops if kind == "create" or name in self.slow_edits}
            self.slow_edits.difference_update(name for name, _ in ops)
            self.engine.sent(rid, engine.CHANGE, [name for name, _ in ops], slow)
            self.scene.last_sent.update(name for name, _ in ops)
            self.last_change.update((name, rid) for name, _ in ops)
            self.rid = rid
            self.sent.append(ops)

    def step(self, s: dict) -> None:
        do, eng = s["do"], self.engine
        if do == "edit":
            self.scene.marked.extend(s["objects"])
            if s.get("slow"):
                self.slow_edits.update(s["objects"])
        elif do == "ack":
            # One `ack` per change the results answer, in the order they were sent.
            acks: dict[str, list[dict]] = {}
            for name, status in s["results"].items():
                r = {"uuid": name, "status": "queued"} if status == "queued" else {
                    "uuid": name, "status": engine.ITEM_ERROR, "error_code": status,
                    "message": "scenario"}
                acks.setdefault(self.last_change[name], []).append(r)
            for rid, results in acks.items():
                assert eng.answered(rid)[0] == engine.CHANGE, "answers a pending change"
                refused = eng.on_change_ack(rid, results)
                assert [(x.uuid, x.code) for x in refused] == [
                    (r["uuid"], r["error_code"]) for r in results if r["status"] != "queued"]
        elif do == "refused":
            # pump: an `error` answering the last change refuses all of it.
            assert eng.answered(self.rid)[0] == engine.CHANGE, "answers a pending change"
            eng.on_change_error(self.rid, s["code"], "scenario")
            if s["code"] == engine.SAFE_MODE:
                self.safe_mode = "scenario"
        elif do == "safe_mode":
            self.safe_mode = "scenario" if s["active"] else None
        elif do == "batch":
            eng.batch_begun(s["id"])
        elif do == "batch_result":
            self.n += 1
            msg = {"type": "batch_result", "batch_id": s.get("batch", f"b{self.n}"),
                   "seq": self.n, "outcome": s["outcome"], "uuids": list(s["objects"])}
            for k in ("error_code", "kept_local", "reason"):
                if k in s:
                    msg[k] = s[k]
            if "through" in s:  # the objects whose last change the result ends
                msg["through"] = {name: self.last_change[name] for name in s["through"]}
            eng.on_batch_result(msg)
            assert eng.result_done(msg["seq"]) and eng.last_seq == self.n
        elif do == "peers":
            self.n += 1
            self.peers = self.peers + [{"session_id": f"s{self.n}", "client": "unity"}]
            eng.on_peers({"type": "peers", "peers": self.peers, "other_projects": []})
            assert eng.peers == self.peers
        elif do == "released":
            eng.on_quarantine_released({"type": "quarantine_released", "uuids": list(s["objects"])})
        elif do == "live":
            # pump._live_refusal: the scene holds the object, nothing else waits; a capture
            # of this model's objects always happens in the step that edits them.
            self.live = {name: "dropped" if eng.live_refusal(
                name, False, False, True, False, lambda: False) else "applied"
                for name in s["objects"]}
        elif do == "replay":
            self.n += 1
            first = s["objects"][0]
            seq = eng.result_seq[first] - 1 if s.get("stale") else self.n
            self.kept = [name for name in s["objects"] if eng.replay_keeps(name, seq, False)]
            for name in s["objects"]:
                if name in self.kept:
                    eng.replay_kept(name)  # sent in full instead
                else:
                    self.scene.last_sent.add(name)  # holds the replayed state
            eng.applied(seq, set(s["objects"]), set(self.kept), lambda u: None)
        else:
            raise AssertionError(f"unknown step {do!r}")
        self.capture_and_send()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(scenario):
    assert scenario["name"].split(":")[0] in STEPS, "named for its pipeline step"
    ed = Editor(scenario["objects"])
    for i, s in enumerate(scenario["steps"]):
        before = len(ed.sent)
        ed.step(s)
        where = f"step {i} ({s['do']})"
        want = s["expect"]
        assert [sorted(m) for m in ed.sent[before:]] == [sorted(m) for m in want["sent"]], where
        assert sorted(u for u in scenario["objects"] if u in ed.engine.inflight) == sorted(
            want["in_flight"]), where
        assert ed.engine.not_synced.reasons == want["not_synced"], where
        if "live" in want:
            assert ed.live == want["live"], where
        if "kept" in want:
            assert sorted(ed.kept) == sorted(want["kept"]), where


def test_outcomes_are_the_wire_vocabulary():
    names = vector("names.json")
    assert [engine.COMMITTED, engine.ROLLED_BACK, engine.DROPPED] == names["batch_outcomes"]
    assert {engine.NOT_FOUND, engine.BLOCKED, engine.QUARANTINED, engine.STALE} <= set(names["item_error_codes"])
    assert engine.ITEM_ERROR in names["item_statuses"]
    assert engine.UNKNOWN_TYPE in {e["code"] for e in names["error_codes"]}
    assert set(engine.RETRY_LATER) <= {e["code"] for e in names["error_codes"]}
    assert {engine.VERIFY_TIMEOUT, engine.VERIFY_MISMATCH} <= set(names["rollback_codes"])
    # The pending-request kinds it reads are the requests' message types.
    assert {engine.CHANGE, engine.RESYNC} <= {m["type"] for m in names["message_types"]}
