"""Addon capability manifests (`addon_ai.json`, docs/PROTOCOL.md §9.1): validation, the scan
of enabled add-ons, and the user's consent.

`validate_manifest()` is pure (no bpy): it checks every field of the format and returns the
normalized manifest or the list of problems, each with the JSON path at fault and what to
fix. `scan()` reads the enabled add-ons and extensions (bpy), validates each
`addon_ai.json` next to their `__init__.py`, checks `blender_version_min`, `depends_on`,
`conflicts_with`, unique tool names and that every tool has a handler in the module's
`AI_COMMAND_HANDLERS`, and sorts the add-ons into available / withheld (no consent yet) /
rejected.
"""

from __future__ import annotations

import json
import os
import re
import sys

MANIFEST_FILE = "addon_ai.json"

# Parameter types of the manifest format.
PARAM_TYPES = ("string", "integer", "float", "boolean", "object_name", "material_name",
               "collection_name", "enum", "vector3", "color", "file_path")
CATEGORIES = ("modeling", "animation", "rendering", "simulation", "io", "utility",
              "procedural", "texturing", "sculpting")
# Tool and addon ids: they become MCP tool names `addon_id.tool` ([A-Za-z0-9_.-], <= 64).
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TOOL_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
MAX_TOOL_NAME = 64
VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")

# Add-ons shipped with VibeSync: their tools reach agents unless the user turns them off.
# Every other add-on needs the user's tick in the VibeSync preferences first.
SHIPPED = frozenset({"random_mesh_generator", "geonodes"})


class Problem(dict):
    """One reason a manifest is refused: `{"file", "path", "reason"}`."""


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(ptype: str, v, options) -> bool:
    if ptype in ("string", "object_name", "material_name", "collection_name", "file_path"):
        return isinstance(v, str)
    if ptype == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if ptype == "float":
        return _is_num(v)
    if ptype == "boolean":
        return isinstance(v, bool)
    if ptype == "enum":
        return isinstance(v, str) and v in (options or [])
    if ptype == "vector3":
        return isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v)
    if ptype == "color":
        return isinstance(v, list) and len(v) in (3, 4) and all(_is_num(x) for x in v)
    return False


def version_tuple(text: str) -> tuple:
    return tuple(int(p) for p in text.split("."))


def validate_manifest(doc, file: str = MANIFEST_FILE,
                      blender_version: tuple = (4, 5, 0)) -> tuple[dict | None, list]:
    """Check one parsed `addon_ai.json`. Returns (manifest, []) or (None, problems)."""
    problems: list = []

    def bad(path: str, reason: str) -> None:
        problems.append(Problem(file=file, path=path, reason=reason))

    def need(obj, key, kind, path, required=True):
        if not isinstance(obj, dict) or key not in obj:
            if required:
                bad(f"{path}.{key}" if path else key, f"missing; add `{key}` ({kind.__name__ if isinstance(kind, type) else 'see the format'})")
            return None
        v = obj[key]
        if isinstance(kind, type) and not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            bad(f"{path}.{key}" if path else key,
                f"must be a {kind.__name__ if isinstance(kind, type) else kind}, got {type(v).__name__}")
            return None
        return v

    if not isinstance(doc, dict):
        bad("$", "the manifest must be a JSON object with `addon_info` and `ai_integration`")
        return None, problems
    info = need(doc, "addon_info", dict, "")
    ai = need(doc, "ai_integration", dict, "")
    if info is not None:
        aid = need(info, "id", str, "addon_info")
        if aid is not None and not ID_RE.match(aid):
            bad("addon_info.id", "use 1-40 chars of [A-Za-z0-9_-] (it prefixes the MCP tool names)")
        for key in ("name", "version", "author", "description"):
            need(info, key, str, "addon_info")
        cat = need(info, "category", str, "addon_info")
        if cat is not None and cat not in CATEGORIES:
            bad("addon_info.category", f"`{cat}` is not one of {', '.join(CATEGORIES)}")
    if ai is not None:
        need(ai, "agent_description", str, "ai_integration")
        hints = need(ai, "context_hints", list, "ai_integration", required=False)
        for i, h in enumerate(hints or []):
            if not isinstance(h, str):
                bad(f"ai_integration.context_hints[{i}]", "must be a string")
        tools = need(ai, "tools", list, "ai_integration")
        if tools is not None and not tools:
            bad("ai_integration.tools", "declare at least one tool")
        seen: dict = {}
        aid = info.get("id") if isinstance(info, dict) and isinstance(info.get("id"), str) else ""
        for ti, tool in enumerate(tools or []):
            tp = f"ai_integration.tools[{ti}]"
            if not isinstance(tool, dict):
                bad(tp, "each tool must be an object with name, description, parameters")
                continue
            name = need(tool, "name", str, tp)
            if name is not None:
                if not TOOL_RE.match(name):
                    bad(f"{tp}.name", "use 1-63 chars of [A-Za-z0-9_-]")
                elif len(aid) + 1 + len(name) > MAX_TOOL_NAME:
                    bad(f"{tp}.name", f"`{aid}.{name}` is longer than {MAX_TOOL_NAME} characters (MCP tool name limit); shorten the tool or addon id")
                if name in seen:
                    bad(f"{tp}.name", f"duplicate tool name `{name}` (also ai_integration.tools[{seen[name]}]); tool names must be unique")
                else:
                    seen[name] = ti
            need(tool, "description", str, tp)
            need(tool, "usage", str, tp, required=False)
            ex = need(tool, "examples", list, tp, required=False)
            for i, e in enumerate(ex or []):
                if not isinstance(e, str):
                    bad(f"{tp}.examples[{i}]", "must be a string")
            ro = need(tool, "read_only", bool, tp, required=False)
            de = need(tool, "destructive", bool, tp, required=False)
            if ro and de:
                bad(f"{tp}.destructive", "a read_only tool cannot be destructive")
            params = need(tool, "parameters", list, tp)
            pseen: set = set()
            for pi, p in enumerate(params or []):
                pp = f"{tp}.parameters[{pi}]"
                if not isinstance(p, dict):
                    bad(pp, "each parameter must be an object with name and type")
                    continue
                pname = need(p, "name", str, pp)
                if pname is not None:
                    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", pname):
                        bad(f"{pp}.name", "use a Python identifier (it becomes a keyword argument)")
                    elif pname in pseen:
                        bad(f"{pp}.name", f"duplicate parameter `{pname}`")
                    pseen.add(pname)
                ptype = need(p, "type", str, pp)
                if ptype is not None and ptype not in PARAM_TYPES:
                    bad(f"{pp}.type", f"`{ptype}` is not one of {', '.join(PARAM_TYPES)}")
                    ptype = None
                need(p, "description", str, pp, required=False)
                need(p, "required", bool, pp, required=False)
                options = need(p, "options", list, pp, required=False)
                if ptype == "enum":
                    if not options:
                        bad(f"{pp}.options", "an enum needs a non-empty `options` list")
                    elif not all(isinstance(o, str) for o in options):
                        bad(f"{pp}.options", "options must be strings")
                    elif len(set(options)) != len(options):
                        bad(f"{pp}.options", "options must be unique")
                elif options is not None:
                    bad(f"{pp}.options", "only `enum` parameters take options")
                for bound in ("min", "max"):
                    if bound in p:
                        if ptype not in ("integer", "float", "vector3", "color"):
                            bad(f"{pp}.{bound}", f"`{bound}` applies to integer, float, vector3 and color only")
                        elif not _is_num(p[bound]):
                            bad(f"{pp}.{bound}", "must be a number")
                if _is_num(p.get("min")) and _is_num(p.get("max")) and p["min"] > p["max"]:
                    bad(f"{pp}.min", f"min {p['min']} is above max {p['max']}")
                if "default" in p and ptype is not None:
                    d = p["default"]
                    if not _check_value(ptype, d, options):
                        bad(f"{pp}.default", f"default {json.dumps(d)} is not a valid {ptype}")
                    elif _is_num(d) and ((_is_num(p.get("min")) and d < p["min"]) or
                                         (_is_num(p.get("max")) and d > p["max"])):
                        bad(f"{pp}.default", f"default {d} is outside [{p.get('min')}, {p.get('max')}]")
        req = need(ai, "requirements", dict, "ai_integration", required=False)
        if req is not None:
            v = need(req, "blender_version_min", str, "ai_integration.requirements", required=False)
            if v is not None:
                if not VERSION_RE.match(v):
                    bad("ai_integration.requirements.blender_version_min", f"`{v}` is not a version like `4.2`")
                elif version_tuple(v) > tuple(blender_version[:len(version_tuple(v))]):
                    bad("ai_integration.requirements.blender_version_min",
                        f"needs Blender {v}; this is {'.'.join(map(str, blender_version))} — update Blender or use an older version of the addon")
            for key in ("depends_on", "conflicts_with"):
                lst = need(req, key, list, "ai_integration.requirements", required=False)
                for i, x in enumerate(lst or []):
                    if not isinstance(x, str):
                        bad(f"ai_integration.requirements.{key}[{i}]", "must be an addon id string")
    if problems:
        return None, problems
    return doc, []


def check_requirements(manifest: dict, enabled: dict, file: str) -> list:
    """`depends_on` / `conflicts_with` against the other enabled addons (`enabled`: addon id
    -> module name of every enabled add-on, manifest or not)."""
    problems = []
    req = manifest["ai_integration"].get("requirements") or {}
    for i, dep in enumerate(req.get("depends_on") or []):
        if dep not in enabled:
            problems.append(Problem(file=file, path=f"ai_integration.requirements.depends_on[{i}]",
                                    reason=f"depends on `{dep}`, which is not enabled; enable it first"))
    for i, other in enumerate(req.get("conflicts_with") or []):
        if other in enabled:
            problems.append(Problem(file=file, path=f"ai_integration.requirements.conflicts_with[{i}]",
                                    reason=f"conflicts with the enabled addon `{other}`; disable one of them"))
    return problems


def entry_for_agents(manifest: dict, module: str) -> dict:
    """The registry entry sent to the daemon: what agents need to know about the addon."""
    info, ai = manifest["addon_info"], manifest["ai_integration"]
    return {
        "addon_id": info["id"], "name": info["name"], "version": info["version"],
        "author": info["author"], "category": info["category"],
        "description": info["description"], "module": module,
        "agent_description": ai["agent_description"],
        "context_hints": list(ai.get("context_hints") or []),
        "tools": ai["tools"],
    }


# ------------------------------------------------------------------------ consent
_consent_overrides: dict = {}


def consented(addon_id: str) -> bool:
    """Whether the user lets agents use this addon's tools (shipped ones: yes by default)."""
    if addon_id in _consent_overrides:
        return _consent_overrides[addon_id]
    prefs = _prefs()
    if prefs is not None and hasattr(prefs, "ai_allowed_addons"):
        allowed = {a.strip() for a in prefs.ai_allowed_addons.split(",") if a.strip()}
        denied = {a.strip() for a in prefs.ai_denied_addons.split(",") if a.strip()}
        if addon_id in denied:
            return False
        if addon_id in allowed:
            return True
    return addon_id in SHIPPED


def set_consent(addon_id: str, allowed: bool) -> None:
    """Allow or deny an addon's tools for agents (persisted in the preferences when the
    VibeSync addon is installed)."""
    _consent_overrides[addon_id] = bool(allowed)
    prefs = _prefs()
    if prefs is not None and hasattr(prefs, "ai_allowed_addons"):
        allowed_set = {a for a in prefs.ai_allowed_addons.split(",") if a}
        denied_set = {a for a in prefs.ai_denied_addons.split(",") if a}
        (allowed_set if allowed else denied_set).add(addon_id)
        (denied_set if allowed else allowed_set).discard(addon_id)
        prefs.ai_allowed_addons = ",".join(sorted(allowed_set))
        prefs.ai_denied_addons = ",".join(sorted(denied_set))


def _prefs():
    try:
        from .ui import preferences
        return preferences()
    except Exception:  # noqa: BLE001 - no UI (tests): overrides only
        return None


# --------------------------------------------------------------------------- scan
class Scan:
    """Result of one scan of the enabled add-ons."""

    def __init__(self) -> None:
        self.available: dict = {}   # addon_id -> entry_for_agents(...)
        self.handlers: dict = {}    # addon_id -> {tool name: callable}
        self.withheld: list = []    # [{addon_id, reason}]
        self.rejected: list = []    # [{addon_id, file, path, reason}]

    def fingerprint(self) -> tuple:
        return (tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in self.available.items())),
                json.dumps(self.withheld, sort_keys=True), json.dumps(self.rejected, sort_keys=True))


def enabled_modules() -> list:
    import bpy
    return list(bpy.context.preferences.addons.keys())


def scan(modules: list | None = None, blender_version: tuple | None = None) -> Scan:
    """Validate the manifest of every enabled add-on / extension that has one."""
    import bpy
    if modules is None:
        modules = enabled_modules()
    if blender_version is None:
        blender_version = tuple(bpy.app.version)
    out = Scan()
    found: list = []
    enabled_ids: dict = {}
    for mod_name in modules:
        mod = sys.modules.get(mod_name)
        path = getattr(mod, "__file__", None) if mod is not None else None
        short = mod_name.rsplit(".", 1)[-1]  # extensions: bl_ext.<repo>.<id>
        enabled_ids[short] = mod_name
        if not path:
            continue
        file = os.path.join(os.path.dirname(path), MANIFEST_FILE)
        if not os.path.isfile(file):
            continue
        try:
            with open(file, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            out.rejected.append({"addon_id": short, "file": file, "path": "$",
                                 "reason": f"not readable JSON: {e}"})
            continue
        manifest, problems = validate_manifest(doc, file, blender_version)
        if problems:
            aid = doc.get("addon_info", {}).get("id") if isinstance(doc, dict) and \
                isinstance(doc.get("addon_info"), dict) else None
            for p in problems:
                out.rejected.append({"addon_id": aid if isinstance(aid, str) else short, **p})
            continue
        found.append((mod_name, mod, file, manifest))
        enabled_ids[manifest["addon_info"]["id"]] = mod_name
    ids_seen: dict = {}
    for mod_name, mod, file, manifest in found:
        aid = manifest["addon_info"]["id"]
        problems = check_requirements(manifest, {k: v for k, v in enabled_ids.items() if v != mod_name}, file)
        if aid in ids_seen:
            problems.append(Problem(file=file, path="addon_info.id",
                                    reason=f"id `{aid}` is also used by the enabled add-on `{ids_seen[aid]}`"))
        handlers = getattr(mod, "AI_COMMAND_HANDLERS", None)
        if not isinstance(handlers, dict):
            problems.append(Problem(file=file, path="$", reason="the add-on's module has no `AI_COMMAND_HANDLERS` dict"))
            handlers = {}
        for ti, tool in enumerate(manifest["ai_integration"]["tools"]):
            if not callable(handlers.get(tool["name"])):
                problems.append(Problem(file=file, path=f"ai_integration.tools[{ti}].name",
                                        reason=f"no handler `{tool['name']}` in AI_COMMAND_HANDLERS"))
        if problems:
            out.rejected.extend({"addon_id": aid, **p} for p in problems)
            continue
        ids_seen[aid] = mod_name
        if not consented(aid):
            out.withheld.append({"addon_id": aid, "reason": "not allowed for agents yet: tick it in the VibeSync preferences"})
            continue
        out.available[aid] = entry_for_agents(manifest, mod_name)
        out.handlers[aid] = {t["name"]: handlers[t["name"]] for t in manifest["ai_integration"]["tools"]}
    return out
