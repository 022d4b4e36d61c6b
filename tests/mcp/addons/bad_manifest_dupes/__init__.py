bl_info = {"name": "bad_manifest_dupes", "blender": (4, 2, 0), "category": "Development"}
AI_COMMAND_HANDLERS = {"t": lambda **k: {"status": "success", "message": ""}}
def register():
    pass
def unregister():
    pass
