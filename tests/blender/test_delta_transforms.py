"""Delta transforms (Object > Transform > Delta) in real Blender: the pose synced is the one
the viewport shows — location + delta location, delta rotation · rotation, scale × delta
scale — and a received pose keeps the object's deltas, setting its own parts so that the
basis is the pose (addons/blender/README.md; docs/PROTOCOL.md §6.1 `t`, `r`, `s` are the
local transform). Before, the deltas were not read: Unity showed an object that a person
had offset with a delta at its undelta'd place."""

from __future__ import annotations

import bpy
import pytest
from mathutils import Euler, Matrix, Quaternion, Vector

from vibesync import capture, wire


def _basis_pose(ob):
    """The pose Blender shows (its basis matrix over the parent inverse), on the wire."""
    loc, rot, scale = (ob.matrix_parent_inverse @ ob.matrix_basis).decompose()
    return wire.blender_to_wire(tuple(loc), (rot.x, rot.y, rot.z, rot.w), tuple(scale))


def _same_matrix(t, r, s, t2, r2, s2, eps=2e-5):
    def m(t, r, s):
        bt, br, bs = wire.wire_to_blender(t, r, s)
        return Matrix.LocRotScale(Vector(bt), Quaternion((br[3], br[0], br[1], br[2])), Vector(bs))
    a, b = m(t, r, s), m(t2, r2, s2)
    return all(abs(a[i][j] - b[i][j]) <= eps * max(1.0, abs(b[i][j])) for i in range(4) for j in range(4))


@pytest.fixture
def cube():
    bpy.ops.wm.read_factory_settings(use_empty=False)
    return bpy.data.objects["Cube"]


@pytest.mark.parametrize("mode", ["XYZ", "ZXY", "QUATERNION", "AXIS_ANGLE"])
def test_the_pose_read_and_set_holds_the_delta_transform(cube, mode):
    cube.rotation_mode = mode
    cube.location, cube.scale = (1.0, 2.0, 3.0), (1.0, 2.0, 0.5)
    cube.rotation_quaternion = Quaternion((0.9, 0.1, 0.2, 0.3)).normalized()
    cube.rotation_euler = Euler((0.3, 0.2, 0.1))
    cube.rotation_axis_angle = (0.7, 0.0, 0.6, 0.8)
    cube.delta_location = (0.5, 0.0, -1.0)
    cube.delta_rotation_euler = Euler((0.1, 0.5, -0.2))
    cube.delta_rotation_quaternion = Quaternion((0.8, -0.2, 0.1, 0.3)).normalized()
    cube.delta_scale = (2.0, 1.0, 0.5)
    t, r, s = capture.local_trs(cube)
    assert _same_matrix(t, r, s, *_basis_pose(cube)), "the pose read is the pose Blender shows"

    want = ([4.0, -1.0, 2.5], [0.0, 0.3826834, 0.0, 0.9238795], [1.5, 0.5, 2.0])
    capture.set_local_trs(cube, *want)
    assert tuple(cube.delta_location) == (0.5, 0.0, -1.0), "the deltas stay as the person set them"
    assert tuple(cube.delta_scale) == (2.0, 1.0, 0.5)
    assert _same_matrix(*want, *_basis_pose(cube)), "Blender shows the pose received"
    got = capture.local_trs(cube)
    assert _same_matrix(*want, *got), "and reads it back as that pose"


def test_an_object_without_deltas_is_read_and_set_as_stored(cube):
    """No delta: the parts as stored, exactly (a mirrored scale stays mirrored)."""
    capture.set_local_trs(cube, [1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0], [1.0, -1.0, 1.0])
    t, r, s = capture.local_trs(cube)
    assert (t, s) == ([1.0, 2.0, 3.0], [1.0, -1.0, 1.0]), (t, s)
