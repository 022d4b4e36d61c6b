"""Sidebar panel (View3D > Sidebar > VibeSync) and the addon preferences."""


import bpy

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


_CLIENT_NAMES = {"unity": "Unity", "blender": "Blender"}


def panel_lines(st: dict) -> list[tuple[str, str]]:
    """What the sidebar says, as (text, icon) lines, from `status()` (plain data: tested
    without a UI)."""
    state = st["state"]
    icon = {"connected": "CHECKMARK", "reconnecting": "FILE_REFRESH", "safe mode": "ERROR",
            "paused": "PAUSE", "daemon not running": "ERROR"}.get(state, "X")
    lines = [(f"State: {state}", icon)]
    if state == "daemon not running":
        lines.append(("Start it with `vibesync serve`", "CONSOLE"))
    if st.get("handshake_error") and not st.get("connected"):
        he = st["handshake_error"]
        lines.append((f"{he.get('code')}: {he.get('message')}", "ERROR"))
    if st.get("pause_reason"):
        lines.append((f"Paused: {st['pause_reason']}", "PAUSE"))
    if st.get("safe_mode"):
        lines.append((f"Safe mode: {st.get('safe_mode_reason') or 'sync is read-only'}; "
                      "`vibesync safe-mode clear`", "ERROR"))
    lines.append((f"Daemon: {st.get('host')}:{st.get('port')}", "NONE"))
    lines.append((f"Project: {st.get('project_id') or '(assigned by the daemon)'}", "NONE"))
    if st.get("connected"):
        peers = st.get("peers") or []
        if peers:
            for p in peers:
                name = _CLIENT_NAMES.get(p.get("client"), str(p.get("client")))
                lines.append((f"{name}: connected", "LINKED"))
        else:
            lines.append(("No other editor in this project", "UNLINKED"))
            for other in st.get("other_projects") or []:
                clients = ", ".join(_CLIENT_NAMES.get(c, c) for c in other.get("clients", []))
                lines.append((f"{clients} is in project {other.get('project_id')}: set the "
                              "same project id to sync", "ERROR"))
        prog = st.get("progress") or {}
        if prog.get("total") and prog.get("synced", 0) < prog["total"]:
            lines.append((f"First sync: {prog['synced']:,} / {prog['total']:,} objects",
                          "TIME"))
    lines.append((f"Last seq: {st.get('daemon_seq')} (applied {st.get('last_seq')})", "NONE"))
    if st.get("blocked_reason"):
        lines.append((f"{st.get('deferred_batches', 0)} batch(es) held: "
                      f"{st['blocked_reason']}", "TIME"))
    not_synced = st.get("not_synced") or []
    if not_synced:
        lines.append((f"{len(not_synced)} object(s) not synced (kept here): "
                      f"{not_synced[-1]['reason']}", "ERROR"))
    if st.get("collisions"):
        c = st["collisions"][-1]
        lines.append((f"{len(st['collisions'])} uuid collision(s); last: {c.get('kind')} "
                      f"{c.get('name')!r} got a fresh uuid", "INFO"))
    if st.get("conflicts"):
        c = st["conflicts"][-1]
        lines.append((f"Conflict: {c.get('winner')} won over {c.get('loser')} "
                      f"({c.get('op')})", "INFO"))
    if st.get("errors"):
        e = st["errors"][-1]
        lines.append((f"Last error: {e['code']}: {e.get('message', '')}"[:200], "ERROR"))
    return lines


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
