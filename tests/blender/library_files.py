"""Library .blend files made in a test's tmp dir, and File > Link of their objects — shared
by the Blender tests and the end-to-end tests of linked data (docs/PROTOCOL.md §5)."""

from __future__ import annotations

import bpy

import vibesync


def make_library(path: str, location=(1.0, 2.0, 3.0)) -> None:
    """A library file: "Cube" (a mesh with a red material) and its child "Knob" (an
    empty), saved to `path`; Blender is left with a new empty file."""
    vibesync.unregister()  # the library is not a synced file
    bpy.ops.wm.read_factory_settings(use_empty=True)
    me = bpy.data.meshes.new("CubeMesh")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [], [(0, 1, 2), (0, 1, 3)])
    mat = bpy.data.materials.new("Red")
    mat.diffuse_color = (1.0, 0.0, 0.0, 1.0)
    bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
    if bsdf is not None:  # Blender 5.0: a new material has its nodes, and they are what shows
        bsdf.inputs["Base Color"].default_value = (1.0, 0.0, 0.0, 1.0)
    me.materials.append(mat)
    cube = bpy.data.objects.new("Cube", me)
    bpy.context.scene.collection.objects.link(cube)
    cube.location = location
    knob = bpy.data.objects.new("Knob", None)
    bpy.context.scene.collection.objects.link(knob)
    knob.parent = cube
    knob.location = (0.0, 0.0, 1.0)
    assert bpy.ops.wm.save_as_mainfile(filepath=path) == {"FINISHED"}
    bpy.ops.wm.read_factory_settings(use_empty=True)


def link_objects(path: str, names=("Cube", "Knob")) -> list:
    """What File > Link of these objects does: link them, put them in the scene's collection."""
    with bpy.data.libraries.load(path, link=True) as (_src, dst):
        dst.objects = list(names)
    for ob in dst.objects:
        bpy.context.scene.collection.objects.link(ob)
    return list(dst.objects)
