"""Random Mesh Generator: the example capability add-on of VibeSync (docs/PROTOCOL.md §9).

It declares four tools in `addon_ai.json` and implements them in `AI_COMMAND_HANDLERS`
following the handler standard: keyword arguments (already validated by VibeSync's router
against the manifest), a dict `{status, message, data}` back. Handlers build meshes with
`bmesh` (no operator context needed, so they also run headless); VibeSync runs each call in
one undo step and sends what it created to Unity.
"""

import random

import bmesh
import bpy

bl_info = {
    "name": "Random Mesh Generator",
    "author": "VibeSync",
    "version": (1, 0, 0),
    "blender": (4, 2, 0),
    "category": "Add Mesh",
    "description": "Cubes, spheres and cylinders with random properties, callable by AI agents",
}


def _rng(seed):
    return random.Random(seed) if seed is not None else random.Random()


def _link(ob, collection):
    target = bpy.data.collections[collection] if collection else bpy.context.scene.collection
    target.objects.link(ob)


def _material(rng, name, material):
    if material:
        return bpy.data.materials[material]
    mat = bpy.data.materials.new(name + "Material")
    if bpy.app.version < (5, 0, 0):  # 5.0: every material uses its nodes
        mat.use_nodes = True
    color = (rng.random(), rng.random(), rng.random(), 1.0)
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = color
    mat.diffuse_color = color
    return mat


def _make(name, build, rng, location, collection=None, material=None):
    me = bpy.data.meshes.new(name)
    bm = bmesh.new()
    try:
        build(bm)
        bm.to_mesh(me)
    finally:
        bm.free()
    ob = bpy.data.objects.new(name, me)
    if location is None:
        location = [rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(0, 3)]
    ob.location = location
    me.materials.append(_material(rng, name, material))
    _link(ob, collection)
    return ob


def _ok(ob, what):
    loc = [round(v, 4) for v in ob.location]
    return {"status": "success", "message": f"Created {what} '{ob.name}' at {loc}",
            "data": {"object_name": ob.name, "location": loc,
                     "vertices": len(ob.data.vertices)}}


def add_random_cube(size=None, location=None, name="RandomCube", collection=None,
                    material=None, seed=None):
    rng = _rng(seed)
    size = size if size is not None else rng.uniform(0.5, 3.0)
    ob = _make(name, lambda bm: bmesh.ops.create_cube(bm, size=size), rng, location,
               collection, material)
    return _ok(ob, f"random cube (size {size:.3f} m)")


def add_random_sphere(radius=None, segments=32, rings=16, location=None, name="RandomSphere",
                      seed=None):
    rng = _rng(seed)
    radius = radius if radius is not None else rng.uniform(0.25, 1.5)
    ob = _make(name, lambda bm: bmesh.ops.create_uvsphere(
        bm, u_segments=segments, v_segments=rings, radius=radius), rng, location)
    return _ok(ob, f"random sphere (radius {radius:.3f} m)")


def add_random_cylinder(radius=None, depth=None, vertices=32, location=None,
                        name="RandomCylinder", seed=None):
    rng = _rng(seed)
    radius = radius if radius is not None else rng.uniform(0.25, 1.5)
    depth = depth if depth is not None else rng.uniform(0.5, 4.0)
    ob = _make(name, lambda bm: bmesh.ops.create_cone(
        bm, cap_ends=True, cap_tris=False, segments=vertices, radius1=radius, radius2=radius,
        depth=depth), rng, location)
    return _ok(ob, f"random cylinder (radius {radius:.3f} m, depth {depth:.3f} m)")


def add_surprise_mesh(kind="any", seed=None):
    rng = _rng(seed)
    if kind == "any":
        kind = rng.choice(["cube", "sphere", "cylinder"])
    sub = rng.randrange(2 ** 31)
    if kind == "cube":
        return add_random_cube(name="SurpriseCube", seed=sub)
    if kind == "sphere":
        return add_random_sphere(name="SurpriseSphere", seed=sub)
    return add_random_cylinder(name="SurpriseCylinder", seed=sub)


AI_COMMAND_HANDLERS = {
    "add_random_cube": add_random_cube,
    "add_random_sphere": add_random_sphere,
    "add_random_cylinder": add_random_cylinder,
    "add_surprise_mesh": add_surprise_mesh,
}


def register():
    pass


def unregister():
    pass
