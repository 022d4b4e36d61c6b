"""Sidebar panel (View3D > Sidebar > VibeSync) and the addon preferences."""


import bpy

from . import statusview

_PACKAGE = __package__ or "vibesync"


def preferences():
    """The addon's preferences, or None when not installed as an addon (e.g. tests)."""
    addon = bpy.context.preferences.addons.get(_PACKAGE)
    return addon.preferences if addon is not None else None


class VIBESYNC_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = _PACKAGE

    host: bpy.props.StringProperty(name="Host", default="127.0.0.1",
                                   description="Address of the VibeSync daemon")
    port: bpy.props.IntProperty(name="Port", default=47800, min=1, max=65535)
    token_file: bpy.props.StringProperty(
        name="Token file", subtype="FILE_PATH", default="",
        description="Empty: <daemon data dir>/token (VIBESYNC_DATA_DIR or the OS default)")
    project_id: bpy.props.StringProperty(
        name="Project id", default="",
        description="Empty: the daemon pairs this file with the project the other editor "
                    "is in (the assigned id is saved in the .blend)")
    ai_allowed_addons: bpy.props.StringProperty(
        name="Add-ons allowed for AI agents", default="",
        description="Comma-separated addon ids (addon_ai.json `addon_info.id`) whose tools "
                    "agents may call. Add-ons shipped with VibeSync are allowed unless denied")
    ai_denied_addons: bpy.props.StringProperty(
        name="Add-ons denied to AI agents", default="",
        description="Comma-separated addon ids whose tools agents may never call")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "host")
        col.prop(self, "port")
        col.prop(self, "token_file")
        col.prop(self, "project_id")
        col.separator()
        col.label(text="AI agents (MCP): which add-ons' tools agents may use")
        col.prop(self, "ai_allowed_addons")
        col.prop(self, "ai_denied_addons")
        col.operator(VIBESYNC_OT_reconnect.bl_idname, text="Apply and reconnect")


class VIBESYNC_OT_reconnect(bpy.types.Operator):
    bl_idname = "vibesync.reconnect"
    bl_label = "Reconnect"
    bl_description = "Reconnect to the VibeSync daemon with the current preferences"

    def execute(self, context):
        from . import connect_from_preferences
        connect_from_preferences()
        return {"FINISHED"}


class VIBESYNC_OT_pause(bpy.types.Operator):
    bl_idname = "vibesync.toggle_pause"
    bl_label = "Pause / resume"
    bl_description = "Pause sending and applying changes (capture keeps running)"

    def execute(self, context):
        from . import _session
        s = _session()
        if s is not None:
            if s.paused:
                s.resume()
            else:
                s.pause("paused by the user")
        return {"FINISHED"}


# Blender icons of the shared status lines (statusview.py: what they say, in both editors).
_STATE_ICONS = {statusview.CONNECTED: "CHECKMARK", statusview.RECONNECTING: "FILE_REFRESH",
                statusview.SAFE_MODE: "ERROR", statusview.PAUSED: "PAUSE",
                statusview.NO_DAEMON: "ERROR"}
_KEY_ICONS = {"daemon_not_running": "CONSOLE", "handshake_error": "ERROR", "paused": "PAUSE",
              "safe_mode": "ERROR", "peer": "LINKED", "alone": "UNLINKED",
              "other_project": "ERROR", "first_sync": "TIME", "held_batches": "TIME",
              "not_synced": "ERROR", "collisions": "INFO", "conflict": "INFO",
              "last_error": "ERROR", "linked": "LIBRARY_DATA_DIRECT", "untracked": "ERROR"}


def panel_lines(st: dict) -> list[tuple[str, str]]:
    """What the sidebar says, as (text, icon) lines, from `status()`: the shared status view
    (`statusview.lines`, the same lines as the Unity window) with Blender's icons."""
    out = []
    for line in statusview.lines(st):
        if line.key == "state":
            icon = _STATE_ICONS.get(st.get("state"), "X")
        else:
            icon = _KEY_ICONS.get(line.key, "NONE")
        out.append((line.text, icon))
    return out


class VIBESYNC_PT_panel(bpy.types.Panel):
    bl_idname = "VIBESYNC_PT_panel"
    bl_label = "VibeSync"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "VibeSync"

    def draw(self, context):
        from . import status
        st = status()
        layout = self.layout
        for text, icon in panel_lines(st):
            layout.label(text=text, icon=icon)
        box = layout.box()
        box.label(text=f"Tracked: {st.get('tracked_total', 0)}")
        for kind, n in (st.get("tracked") or {}).items():
            if n:
                box.label(text=f"  {kind}: {n}")
        ai = st.get("ai") or {}
        if ai.get("available") or ai.get("withheld") or ai.get("rejected"):
            box = layout.box()
            box.label(text="AI tools: " + (", ".join(ai.get("available") or []) or "none"))
            for w in ai.get("withheld") or []:
                box.label(text=f"{w['addon_id']}: not allowed yet (preferences)", icon="LOCKED")
            for r in ai.get("rejected") or []:
                box.label(text=f"{r.get('addon_id')}: {r.get('path')}: {r.get('reason')}", icon="ERROR")
        row = layout.row()
        row.operator(VIBESYNC_OT_reconnect.bl_idname, icon="FILE_REFRESH")
        row.operator(VIBESYNC_OT_pause.bl_idname,
                     text="Resume" if st.get("paused") else "Pause", icon="PAUSE")


CLASSES = (VIBESYNC_AP_preferences, VIBESYNC_OT_reconnect, VIBESYNC_OT_pause, VIBESYNC_PT_panel)
