"""The shared engine scenarios (`tests/vectors/engine_scenarios.json`) against the addon's
bpy-free engine (`vibesync/engine.py`: `send_mode`, `InFlight`, `refusal`, `on_batch_result`,
`NotSynced`, `peer_joined`, `replay_keeps`, `live_refusal` — what `pump.py` calls), under
plain CPython. The Unity core's `ScenarioTests` run the same file against `SyncEngine`."""

from __future__ import annotations

import pytest
from plain import load, vector

engine = load("engine")
SCENARIOS = vector("engine_scenarios.json")["scenarios"]
STEPS = ("send", "verify", "replay", "apply")


class Editor:
    """The addon's bookkeeping as `pump.py` wires it, with objects named instead of read
    from Blender: an edit always changes the object, so a capture always finds a change."""

    def __init__(self, objects: list[str]) -> None:
        self.inflight = engine.InFlight()
        self.not_synced = engine.NotSynced()
        self.received: dict[str, frozenset] = {}  # batch id -> acknowledged at its fences
        self.unanswered: set[str] = set()  # change requests with no ack or refusal yet
        self.synced: set[str] = set(objects)
        self.result_seq: dict[str, int] = {}
        self.last_sent = set(objects)  # objects whose last sent state the daemon holds
        self.peers: list[dict] = []
        self.sent: list[list[list[str]]] = []
        self.kept: list[str] = []
        self.live: dict[str, str] = {}
        self.n = 0

    def capture(self, names) -> None:
        ops = []
        for name in names:
            mode = engine.send_mode(name, self.inflight, self.not_synced, name in self.last_sent)
            if mode == engine.SEND_WAIT:
                self.inflight.wait(name, name)
                continue
            ops.append([name, "create" if mode == engine.SEND_FULL else "edit"])
        if ops:
            self.n += 1
            self.inflight.sent(f"c{self.n}", [name for name, _ in ops])
            self.unanswered.add(f"c{self.n}")
            self.last_sent.update(name for name, _ in ops)
            self.sent.append(ops)

    def step(self, s: dict) -> None:
        do = s["do"]
        if do == "edit":
            self.capture(s["objects"])
        elif do == "ack":
            for name, status in s["results"].items():
                rid = self.inflight.requests.get(name)
                self.unanswered.discard(rid)
                if status != "queued":
                    # pump._change_rejected
                    self.capture(self.inflight.refused(rid, [name]))
                    action = engine.refusal(status)
                    if action == engine.REFUSED_KEEP:
                        self.not_synced.mark([name], f"{status}: scenario")
                    elif action == engine.REFUSED_RESEND_FULL:
                        self.last_sent.discard(name)
                        self.capture([name])
        elif do == "batch":
            # pump: BATCH_BEGIN records what the daemon had acknowledged (`pending` = unanswered).
            self.received[s["id"]] = self.inflight.acknowledged(self.unanswered)
        elif do == "batch_result":
            self.n += 1
            msg = {"type": "batch_result", "batch_id": s.get("batch", f"b{self.n}"),
                   "seq": self.n, "outcome": s["outcome"], "uuids": list(s["objects"])}
            for k in ("error_code", "kept_local", "reason"):
                if k in s:
                    msg[k] = s[k]
            effect = engine.on_batch_result(msg, self.received, self.inflight, self.not_synced,
                                            self.synced, self.result_seq)
            self.capture(effect.recapture)
        elif do == "peers":
            self.n += 1
            after = self.peers + [{"session_id": f"s{self.n}", "client": "unity"}]
            joined = engine.peer_joined(self.peers, after)
            self.peers = after
            if joined and len(self.not_synced):
                retry = list(self.not_synced.reasons)
                self.last_sent.difference_update(retry)  # the daemon never took them: in full
                self.capture(retry)
        elif do == "live":
            # pump._live_refusal: the scene holds the object, nothing else waits; a capture
            # of this model's objects always happens in the step that edits them.
            self.live = {name: "dropped" if engine.live_refusal(
                name, False, False, True, False, self.inflight, self.not_synced,
                lambda: False) else "applied" for name in s["objects"]}
        elif do == "replay":
            self.n += 1
            first = s["objects"][0]
            seq = self.result_seq[first] - 1 if s.get("stale") else self.n
            self.kept = [name for name in s["objects"] if engine.replay_keeps(
                name, seq, False, self.inflight, self.not_synced, self.result_seq)]
            # pump.apply_now: kept uuids are sent in full; the others hold the replayed state.
            self.last_sent.update(name for name in s["objects"] if name not in self.kept)
            self.last_sent.difference_update(self.kept)
            self.capture(self.kept)
        else:
            raise AssertionError(f"unknown step {do!r}")


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
        assert sorted(u for u in scenario["objects"] if u in ed.inflight) == sorted(
            want["in_flight"]), where
        assert ed.not_synced.reasons == want["not_synced"], where
        if "live" in want:
            assert ed.live == want["live"], where
        if "kept" in want:
            assert sorted(ed.kept) == sorted(want["kept"]), where


def test_outcomes_are_the_wire_vocabulary():
    names = vector("names.json")
    assert [engine.COMMITTED, engine.ROLLED_BACK, engine.DROPPED] == names["batch_outcomes"]
    assert {engine.NOT_FOUND, engine.BLOCKED, engine.QUARANTINED} <= set(names["item_error_codes"])
