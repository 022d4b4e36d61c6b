"""The addon's codec against the shared vectors in tests/vectors/ (byte compatibility)."""

from __future__ import annotations

import json
import math
import os

import pytest

from conftest import VECTORS
from vibesync import wire


def load(name: str):
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


FRAMES = load("frames.json")


def decode_all(data: bytes, split: bool) -> list:
    dec = wire.FrameDecoder(FRAMES["max_frame_bytes"])
    frames = []
    chunks = [data[i:i + 1] for i in range(len(data))] if split else [data]
    for c in chunks:
        frames += dec.feed(c)
    return [(wire.parse_message(j), a) for j, a in frames]


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte_by_byte"])
@pytest.mark.parametrize("case", FRAMES["frames"], ids=[c["name"] for c in FRAMES["frames"]])
def test_frame_vectors(case, split):
    data = bytes.fromhex(case["hex"])
    if case["expect"] == "ok":
        out = decode_all(data, split)
        assert len(out) == 1
        msg, att = out[0]
        assert msg == case["message"]
        assert att.hex() == case.get("attachment_hex", "")
    else:
        with pytest.raises(wire.WireError) as e:
            decode_all(data, split)
        assert e.value.code == case["error_code"]
        assert e.value.fatal == (case["error_code"] in ("FRAME_TOO_LARGE", "BAD_FRAME"))


def test_oversized_length_rejected_before_body_arrives():
    dec = wire.FrameDecoder(FRAMES["max_frame_bytes"])
    with pytest.raises(wire.WireError) as e:
        dec.feed(b"\xff\xff\xff\xff")  # only the length: nothing else was buffered
    assert e.value.code == wire.ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("case", FRAMES["encode"], ids=[c["name"] for c in FRAMES["encode"]])
def test_encode_vectors(case):
    out = wire.encode_frame(case["json"], bytes.fromhex(case["attachment_hex"]))
    assert out.hex() == case["hex"]
    # A dict round-trips through the decoder to the same message.
    dec = wire.FrameDecoder()
    [(j, a)] = dec.feed(wire.encode_frame(json.loads(case["json"]), bytes.fromhex(case["attachment_hex"])))
    assert json.loads(j) == json.loads(case["json"])
    assert a.hex() == case["attachment_hex"]


def test_several_frames_in_one_read():
    data = b"".join(bytes.fromhex(c["hex"]) for c in FRAMES["encode"])
    frames = wire.FrameDecoder().feed(data)
    assert [json.loads(j) for j, _ in frames] == [json.loads(c["json"]) for c in FRAMES["encode"]]


def test_mesh_hash_is_sha256():
    assert wire.mesh_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert wire.mesh_hash(memoryview(b"abc")) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_hashed_rotation_drops_the_largest_component():
    assert wire.hashed_rotation([0.0, 0.2588190451, 0.0, 0.9659258263]) == [3, 0, 25882, 0]
    assert wire.hashed_rotation([-0.0, -0.2588190451, -0.0, -0.9659258263]) == [3, 0, 25882, 0]
    # w on either side of 0: the same rotation, the same form (the old w-sign rule flipped it)
    assert wire.hashed_rotation([0.0, 1.0, 0.0, 1e-7]) == wire.hashed_rotation([0.0, -1.0, 0.0, 1e-7])


@pytest.mark.parametrize("case", load("quantize.json"), ids=lambda c: repr(c["v"]))
def test_quantize_vectors(case):
    assert wire.quantize(case["v"]) == case["q"]


@pytest.mark.parametrize("case", load("state_hash.json"), ids=lambda c: c["name"])
def test_state_hash_vectors(case):
    assert wire.canonical_json(case["state"]) == case["canonical"]
    assert wire.state_hash(case["state"]) == case["hash"]


def _close(a, b, tol=1e-9):
    return all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b)) and len(a) == len(b)


@pytest.mark.parametrize("case", load("coords.json"), ids=lambda c: c["name"])
def test_coordinate_vectors(case):
    b, c = case["blender"], case["canonical"]
    us = case.get("blender_unit_scale", 1.0)
    t, r, s = wire.blender_to_canonical(b["t"], b["r"], b["s"], us)
    assert _close(t, c["t"]) and _close(r, c["r"]) and _close(s, c["s"])
    t, r, s = wire.canonical_to_blender(c["t"], c["r"], c["s"], us)
    assert _close(t, b["t"]) and _close(r, b["r"]) and _close(s, b["s"])


@pytest.mark.parametrize("case", load("mesh.json"), ids=lambda c: c["name"])
def test_mesh_vectors(case):
    data = bytes.fromhex(case["hex"])
    assert wire.mesh_hash(data) == case["mesh_hash"]
    mesh = wire.decode_mesh(data)
    assert len(mesh["positions"]) == 3 * case["vertex_count"]
    assert len(mesh["indices"]) == case["index_count"]
    again = wire.encode_mesh(mesh["positions"], mesh["indices"], mesh["normals"], mesh["uv0"])
    assert again == data


def test_uuid_and_project_rules():
    assert wire.is_valid_uuid("6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a")
    assert not wire.is_valid_uuid("6F1C2A4E-4B7D-4A53-9A43-9D7F9B0F1F3A")
    assert not wire.is_valid_uuid("{6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a}")
    assert not wire.is_valid_uuid("00000000-0000-0000-0000-000000000000")
    assert wire.project_id_from_folder("My Game (2026)") == "My-Game-2026"
    assert wire.project_id_from_folder(".hidden") == "hidden"
    assert wire.project_id_from_folder("") == "default"
    assert wire.is_valid_project_id(wire.project_id_from_folder("x" * 300))
