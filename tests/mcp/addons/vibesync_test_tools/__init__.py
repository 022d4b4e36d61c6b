"""Fixture add-on for the agent suite: tools that fail on purpose, read files, rename, delete."""

import json
import time

import bpy

bl_info = {"name": "VibeSync test tools", "blender": (4, 2, 0), "category": "Development"}


def _cube(name):
    me = bpy.data.meshes.new(name)
    me.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], [], [(0, 1, 2, 3)])
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def explode_halfway(count=2):
    """Create objects and move the default cube, then raise: everything must be undone."""
    for i in range(count):
        _cube(f"Doomed{i}")
    cube = bpy.data.objects.get("Cube")
    if cube is not None:
        cube.location.x += 3.0
    raise RuntimeError("boom halfway through")


def report_error():
    _cube("AlsoDoomed")
    return {"status": "error", "message": "refused by the handler", "error_code": "OPERATION_FAILED"}


def slow(seconds=1.0):
    _cube("TooSlow")
    time.sleep(seconds)
    return {"status": "success", "message": "slept"}


def import_points(file_path, name="Points"):
    with open(file_path, encoding="utf-8") as f:
        pts = json.load(f)
    me = bpy.data.meshes.new(name)
    me.from_pydata([tuple(p) for p in pts], [], [])
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return {"status": "success", "message": f"{len(pts)} points", "data": {"object_name": ob.name}}


def rename_object(object_name, new_name):
    ob = bpy.data.objects[object_name]
    ob.name = new_name
    return {"status": "warning", "message": f"renamed to {ob.name}", "data": {"name": ob.name}}


def delete_object(object_name):
    bpy.data.objects.remove(bpy.data.objects[object_name])
    return {"status": "success", "message": f"deleted {object_name}"}


def delete_matching(prefix):
    """Deletes every object whose name starts with `prefix`: objects the call does not name."""
    gone = [ob for ob in bpy.data.objects if ob.name.startswith(prefix)]
    bpy.data.batch_remove(gone)
    return {"status": "success", "message": f"deleted {len(gone)} objects"}


def count_objects():
    return {"status": "success", "message": "counted", "data": {"objects": len(bpy.data.objects)}}


AI_COMMAND_HANDLERS = {
    "explode_halfway": explode_halfway,
    "report_error": report_error,
    "slow": slow,
    "import_points": import_points,
    "rename_object": rename_object,
    "delete_object": delete_object,
    "delete_matching": delete_matching,
    "count_objects": count_objects,
}


def register():
    pass


def unregister():
    pass
