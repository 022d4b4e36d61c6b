"""Geometry Nodes builder: graph_json → a Geometry Nodes modifier (docs/GEONODES.md §Builder).

The graph is validated by the daemon first (`vibesync geonodes validate`); the builder
still checks everything Blender decides at build time:

* sockets are addressed by name among enabled sockets, `Name#k` for the k-th of a repeated
  name, with the identifier as fallback; an ambiguous bare name is an error;
* direction guard: the source must be an output and the target an input before
  `links.new()` (Blender silently swaps reversed links);
* node properties are set before any socket is resolved (they decide which sockets exist);
* after the last link, every link's `is_valid` is read at once, and the link count must
  match (Blender replaces a second link into a single input without a word).

Never half-builds: the tree is built in a scratch node group; only when it is complete and
every link is valid is it swapped into the modifier (keeping the old group's name and
uuid). Any failure removes the scratch group, so `bpy.data.node_groups` and the modifiers
are exactly as before. A successful build is one undo step.
"""

from __future__ import annotations

import json

import bpy

UNDO_MESSAGE = "VibeSync: build Geometry Nodes"
DEFAULT_MODIFIER = "GeometryNodes"
FRAME_TEXT_PROP = "vibesync_text"
GROUP_INPUT = "NodeGroupInput"
GROUP_OUTPUT = "NodeGroupOutput"

# Socket base type (NodeSocket.type) → the interface socket idname Blender uses for it.
TYPE_TO_IDNAME = {
    "VALUE": "NodeSocketFloat", "INT": "NodeSocketInt", "BOOLEAN": "NodeSocketBool",
    "VECTOR": "NodeSocketVector", "RGBA": "NodeSocketColor", "ROTATION": "NodeSocketRotation",
    "MATRIX": "NodeSocketMatrix", "STRING": "NodeSocketString", "MENU": "NodeSocketMenu",
    "OBJECT": "NodeSocketObject", "COLLECTION": "NodeSocketCollection",
    "IMAGE": "NodeSocketImage", "MATERIAL": "NodeSocketMaterial",
    "TEXTURE": "NodeSocketTexture", "GEOMETRY": "NodeSocketGeometry",
}
DEFAULT_INTERFACE = {"inputs": [{"name": "Geometry", "type": "NodeSocketGeometry"}],
                     "outputs": [{"name": "Geometry", "type": "NodeSocketGeometry"}]}


class BuildError(Exception):
    """A build refused or failed; nothing was changed. Codes match docs/GEONODES.md §Errors."""

    def __init__(self, code: str, pointer: str, message: str, hint: str = "") -> None:
        super().__init__(f"{pointer or '(graph)'}: {message} [{code}]")
        self.code = code
        self.pointer = pointer
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict:
        return {"code": self.code, "pointer": self.pointer, "message": self.message,
                "hint": self.hint}


# ---------------------------------------------------------------------------------------
# graph_json text with the duplicate "socket" key form


def parse_graph_text(text: str) -> tuple[dict, list[str]]:
    """Parse graph_json keeping duplicate keys in links (first `socket` = source, second =
    target). Returns the canonical graph and warnings."""
    warnings: list[str] = []

    def pairs(items):
        keys = [k for k, _ in items]
        if keys.count("socket") == 2 and "from_socket" not in keys and "to_socket" not in keys:
            out, sockets = {}, []
            for k, v in items:
                if k == "socket":
                    sockets.append(v)
                else:
                    out[k] = v
            out["from_socket"], out["to_socket"] = sockets
            warnings.append("DUPLICATE_SOCKET_KEY")
            return out
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs), warnings


# ---------------------------------------------------------------------------------------
# sockets


def _usable(sockets):
    return [s for s in sockets if s.enabled and s.bl_idname != "NodeSocketVirtual"]


def find_socket(node, ref: str, *, output: bool, pointer: str):
    """Resolve a socket reference (name, Name#k, identifier) among enabled sockets."""
    side = node.outputs if output else node.inputs
    usable = _usable(side)
    if "#" in ref:
        name, _, k = ref.rpartition("#")
        if k.isdigit():
            same = [s for s in usable if s.name == name]
            if int(k) < len(same):
                return same[int(k)]
    by_name = [s for s in usable if s.name == ref]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        choices = ", ".join(f"{ref}#{k} (identifier {s.identifier})" for k, s in enumerate(by_name))
        raise BuildError("AMBIGUOUS_SOCKET", pointer,
                         f'"{ref}" is ambiguous on {node.name} ({node.bl_idname}): {choices}',
                         "address the socket as Name#k or by its identifier")
    for s in usable:
        if s.identifier == ref:
            return s
    other = node.inputs if output else node.outputs
    if any(s.name == ref or s.identifier == ref for s in _usable(other)):
        raise BuildError("WRONG_DIRECTION", pointer,
                         f'"{ref}" is an {"input" if output else "output"} of {node.name}',
                         "links go from an output to an input")
    if any(s.name == ref or s.identifier == ref for s in side):
        raise BuildError("SOCKET_DISABLED", pointer,
                         f'"{ref}" exists on {node.name} but is not available with its properties',
                         "set the node's properties so the socket exists")
    names = ", ".join(dict.fromkeys(s.name for s in usable)) or "(none)"
    raise BuildError("UNKNOWN_SOCKET", pointer,
                     f'"{ref}" is not an {"output" if output else "input"} of {node.name} '
                     f"({node.bl_idname})", f"available: {names}")


def interface_idname(name: str) -> str:
    if name.startswith("NodeSocket"):
        return name
    upper = name.upper()
    if upper in TYPE_TO_IDNAME:
        return TYPE_TO_IDNAME[upper]
    aliases = {"FLOAT": "VALUE", "COLOR": "RGBA", "BOOL": "BOOLEAN"}
    if upper in aliases:
        return TYPE_TO_IDNAME[aliases[upper]]
    return "NodeSocket" + name[:1].upper() + name[1:]


def _set_value(target, value, pointer: str, what: str) -> None:
    try:
        current = target.default_value
        if hasattr(current, "__len__") and not isinstance(current, str):
            target.default_value = tuple(value)
        elif isinstance(value, str) and hasattr(bpy.data, "objects") and \
                getattr(target, "type", "") in ("OBJECT", "MATERIAL", "COLLECTION", "IMAGE"):
            coll = {"OBJECT": bpy.data.objects, "MATERIAL": bpy.data.materials,
                    "COLLECTION": bpy.data.collections, "IMAGE": bpy.data.images}[target.type]
            target.default_value = coll[value]
        else:
            target.default_value = value
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise BuildError("INVALID_SETTING", pointer, f"cannot set {what} to {value!r}: {e}",
                         "give a value of the socket's type") from None


# ---------------------------------------------------------------------------------------
# building


def _build_tree(tree, graph: dict, fault_at_link: int | None) -> dict:
    iface = graph.get("interface") or DEFAULT_INTERFACE
    for side, in_out in (("inputs", "INPUT"), ("outputs", "OUTPUT")):
        for k, spec in enumerate(iface.get(side, [])):
            pointer = f"/interface/{side}/{k}"
            try:
                item = tree.interface.new_socket(spec["name"], in_out=in_out,
                                                 socket_type=interface_idname(spec["type"]))
            except (TypeError, KeyError) as e:
                raise BuildError("INVALID_INTERFACE", pointer, f"cannot create group socket: {e}",
                                 "use a group socket type of this Blender version") from None
            if "default" in spec and hasattr(item, "default_value"):
                _set_value(item, spec["default"], pointer + "/default", "the default")
            for key, attr in (("min", "min_value"), ("max", "max_value")):
                if key in spec and hasattr(item, attr):
                    setattr(item, attr, spec[key])
            if spec.get("description"):
                item.description = spec["description"]

    nodes: dict[str, object] = {}
    for i, spec in enumerate(graph.get("nodes", [])):
        pointer = f"/nodes/{i}"
        try:
            node = tree.nodes.new(spec["type"])
        except RuntimeError as e:
            raise BuildError("UNKNOWN_NODE_TYPE", pointer + "/type", str(e).strip(),
                             "use `vibesync geonodes query` for identifiers") from None
        node.name = spec["id"]
        if node.name != spec["id"]:
            raise BuildError("DUPLICATE_NODE_ID", pointer + "/id", f'node id "{spec["id"]}" repeats', "")
        if spec.get("label"):
            node.label = spec["label"]
        props = dict(spec.get("properties") or {})
        props.update((graph.get("properties") or {}).get(spec["id"], {}))
        for key, value in props.items():
            try:
                setattr(node, key, value)
            except (TypeError, ValueError, AttributeError) as e:
                raise BuildError("INVALID_PROPERTY_VALUE", f"{pointer}/properties/{key}",
                                 f"{spec['type']}.{key} = {value!r}: {e}", "") from None
        if spec.get("location"):
            node.location = spec["location"]
        nodes[spec["id"]] = node

    # Zones: pair each input with its output (named, or the only one of its kind).
    for i, spec in enumerate(graph.get("nodes", [])):
        node = nodes[spec["id"]]
        if not hasattr(node, "pair_with_output"):
            continue
        out_type = spec["type"][: -len("Input")] + "Output"
        partner = spec.get("paired_output")
        if partner is None:
            candidates = [n for n in graph["nodes"] if n["type"] == out_type]
            partner = candidates[0]["id"] if len(candidates) == 1 else None
        if partner not in nodes or not node.pair_with_output(nodes[partner]):
            raise BuildError("ZONE_UNPAIRED", f"/nodes/{i}", f"{spec['id']} has no {out_type}",
                             "name its output node in paired_output")

    for nid, settings in (graph.get("node_settings") or {}).items():
        if nid not in nodes:
            raise BuildError("UNKNOWN_SETTING_NODE", f"/node_settings/{nid}", f'no node "{nid}"', "")
        for key, value in settings.items():
            pointer = f"/node_settings/{nid}/{key}"
            sock = find_socket(nodes[nid], key, output=False, pointer=pointer)
            _set_value(sock, value, pointer, f'input "{key}" of {nid}')

    created = []
    for k, link in enumerate(graph.get("links", [])):
        pointer = f"/links/{k}"
        a, b = nodes.get(link.get("from")), nodes.get(link.get("to"))
        if a is None or b is None:
            raise BuildError("UNKNOWN_LINK_NODE", pointer, "link names a node that does not exist", "")
        src = find_socket(a, link["from_socket"], output=True, pointer=pointer + "/from_socket")
        dst = find_socket(b, link["to_socket"], output=False, pointer=pointer + "/to_socket")
        # Direction guard: Blender would silently swap a reversed link.
        if not src.is_output or dst.is_output:
            raise BuildError("WRONG_DIRECTION", pointer, "a link must go from an output to an input", "")
        created.append((k, tree.links.new(src, dst), src, dst))
        if fault_at_link is not None and k == fault_at_link:
            raise BuildError("FAULT_INJECTED", pointer, f"fault injected at link {k}", "")

    tree.update_tag()
    bpy.context.view_layer.update()
    bad = []
    live = {(l.from_socket.as_pointer(), l.to_socket.as_pointer()) for l in tree.links}
    for k, link, src, dst in created:
        try:
            ok = link.is_valid and link.from_socket == src and link.to_socket == dst
        except ReferenceError:
            ok = False
        if not ok or (src.as_pointer(), dst.as_pointer()) not in live:
            bad.append(k)
    if bad:
        raise BuildError("INCOMPATIBLE_SOCKETS", f"/links/{bad[0]}",
                         f"Blender marks {len(bad)} link(s) invalid or dropped them: "
                         + ", ".join(f"links[{k}]" for k in bad),
                         "run `vibesync geonodes validate` for the reason of each")

    for f, frame in enumerate(graph.get("frames") or []):
        fr = tree.nodes.new("NodeFrame")
        fr.name = frame["id"]
        fr.label = frame.get("label") or frame["id"]
        color = frame.get("color")
        if color:
            fr.use_custom_color = True
            fr.color = tuple(color[:3])
        if frame.get("text"):
            fr[FRAME_TEXT_PROP] = frame["text"]
        for nid in frame.get("nodes", []):
            if nid not in nodes:
                raise BuildError("INVALID_FRAME", f"/frames/{f}/nodes", f'"{nid}" is not a node', "")
            nodes[nid].parent = fr
    _layout(tree, graph, nodes)
    return {"nodes": len(nodes), "links": len(created),
            "echo": [f"{l.from_node.name}.{l.from_socket.name} → {l.to_node.name}.{l.to_socket.name}"
                     for _, l, _, _ in created]}


def _layout(tree, graph: dict, nodes: dict) -> None:
    """Columns by longest path from the sources (left→right = output→input)."""
    depth = {nid: 0 for nid in nodes}
    links = [(l["from"], l["to"]) for l in graph.get("links", [])]
    for _ in range(len(nodes)):
        changed = False
        for a, b in links:
            if depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    for spec in graph.get("nodes", []):
        if spec.get("location"):
            continue
        d = depth[spec["id"]]
        nodes[spec["id"]].location = (d * 260.0, -rows.get(d, 0) * 220.0)
        rows[d] = rows.get(d, 0) + 1


def build(obj, graph: dict, *, modifier: str = DEFAULT_MODIFIER, inputs: dict | None = None,
          undo: bool = True, fault_at_link: int | None = None) -> dict:
    """Build `graph` into the Geometry Nodes modifier `modifier` of `obj` (created if missing).

    Returns a summary; raises BuildError with nothing changed on any failure.
    `fault_at_link` (tests) raises right after creating that link.
    """
    if obj is None or obj.type not in ("MESH", "CURVE", "POINTCLOUD", "CURVES", "VOLUME", "GREASEPENCIL"):
        raise BuildError("INVALID_TARGET", "", f"{getattr(obj, 'name', obj)!r} cannot carry a "
                         "Geometry Nodes modifier", "pick a mesh, curve or point cloud object")
    existing = obj.modifiers.get(modifier)
    if existing is not None and existing.type != "NODES":
        raise BuildError("INVALID_TARGET", "", f"modifier {modifier!r} of {obj.name} is a "
                         f"{existing.type} modifier", "name another modifier")
    scratch = bpy.data.node_groups.new(f".vibesync_build_{obj.name}", "GeometryNodeTree")
    try:
        summary = _build_tree(scratch, graph, fault_at_link)
    except BaseException:
        bpy.data.node_groups.remove(scratch)
        raise
    # Commit: swap the finished group in. Only plain attribute writes from here on.
    geomod = obj.modifiers.get(modifier) or obj.modifiers.new(modifier, "NODES")
    old = geomod.node_group
    name = old.name if old is not None else f"{obj.name} {modifier}"
    if old is not None:
        uuid = old.get("vibesync_uuid")
        geomod.node_group = scratch
        if old.users == 0:
            bpy.data.node_groups.remove(old)
        if uuid:
            scratch["vibesync_uuid"] = uuid
    else:
        geomod.node_group = scratch
    geomod = obj.modifiers[modifier]  # re-acquire after the destructive swap
    scratch.name = name
    for key, value in (inputs or {}).items():
        set_modifier_input(geomod, key, value)
    obj.update_tag()
    if undo:
        bpy.ops.ed.undo_push(message=UNDO_MESSAGE)
    summary.update({"object": obj.name, "modifier": geomod.name, "node_group": scratch.name})
    return summary


def set_modifier_input(geomod, name: str, value) -> None:
    """Set a group input on the modifier by its interface name. The modifier keys inputs by
    the interface socket identifier (`Socket_2` since Blender 4.0; `Input_2` before)."""
    group = geomod.node_group
    for item in group.interface.items_tree:
        if getattr(item, "item_type", "") == "SOCKET" and item.in_out == "INPUT" and item.name == name:
            key = item.identifier if bpy.app.version >= (4, 0, 0) else f"Input_{item.index}"
            value = tuple(value) if isinstance(value, list) else value
            geomod[key] = value
            return
    raise BuildError("UNKNOWN_SOCKET", "", f"the group has no input {name!r}", "")


# ---------------------------------------------------------------------------------------
# reading a tree back


def describe(group) -> dict:
    """An existing node tree as graph_json (round trips with build; frames included)."""
    scratch = bpy.data.node_groups.new(".vibesync_describe", "GeometryNodeTree")
    try:
        nodes, settings, frames = [], {}, []
        for node in group.nodes:
            if node.bl_idname == "NodeFrame":
                frame = {"id": node.name, "label": node.label or node.name,
                         "nodes": [n.name for n in group.nodes if n.parent == node]}
                if node.use_custom_color:
                    frame["color"] = [round(c, 4) for c in node.color] + [1.0]
                if FRAME_TEXT_PROP in node:
                    frame["text"] = node[FRAME_TEXT_PROP]
                frames.append(frame)
                continue
            spec = {"id": node.name, "type": node.bl_idname}
            fresh = scratch.nodes.new(node.bl_idname)
            props = {}
            for p in node.bl_rna.properties:
                if p.is_readonly or p.identifier in bpy.types.Node.bl_rna.properties:
                    continue
                if p.type in ("ENUM", "BOOLEAN", "INT", "FLOAT", "STRING") and \
                        getattr(p, "array_length", 0) == 0 and not getattr(p, "is_enum_flag", False):
                    value = getattr(node, p.identifier)
                    if value != getattr(fresh, p.identifier):
                        props[p.identifier] = value
                        setattr(fresh, p.identifier, value)
            if props:
                spec["properties"] = props
            if node.label:
                spec["label"] = node.label
            if hasattr(node, "paired_output") and node.paired_output is not None:
                spec["paired_output"] = node.paired_output.name
            values = {}
            for s, f in zip(node.inputs, fresh.inputs):
                if not s.enabled or s.is_linked or not hasattr(s, "default_value") or \
                        not hasattr(f, "default_value"):
                    continue
                v, d = s.default_value, f.default_value
                if hasattr(v, "__len__") and not isinstance(v, str):
                    v, d = [round(x, 6) for x in v], [round(x, 6) for x in d]
                elif isinstance(v, float):
                    v, d = round(v, 6), round(d, 6)
                elif isinstance(v, bpy.types.ID):
                    v, d = v.name, getattr(d, "name", None)
                if v != d:
                    values[_socket_ref(node, s)] = v
            if values:
                settings[node.name] = values
            nodes.append(spec)
        links = [{"from": l.from_node.name, "from_socket": _socket_ref(l.from_node, l.from_socket),
                  "to": l.to_node.name, "to_socket": _socket_ref(l.to_node, l.to_socket)}
                 for l in group.links if l.from_node.bl_idname != "NodeReroute"]
        iface = {"inputs": [], "outputs": []}
        for item in group.interface.items_tree:
            if getattr(item, "item_type", "") != "SOCKET":
                continue
            row = {"name": item.name, "type": item.socket_type}
            if hasattr(item, "default_value") and not isinstance(item.default_value, bpy.types.ID):
                v = item.default_value
                row["default"] = [round(x, 6) for x in v] if hasattr(v, "__len__") and \
                    not isinstance(v, str) else (round(v, 6) if isinstance(v, float) else v)
            iface["inputs" if item.in_out == "INPUT" else "outputs"].append(row)
        graph = {"nodes": nodes, "links": links, "interface": iface}
        if settings:
            graph["node_settings"] = settings
        if frames:
            graph["frames"] = frames
        return graph
    finally:
        bpy.data.node_groups.remove(scratch)


def _socket_ref(node, sock) -> str:
    side = node.outputs if sock.is_output else node.inputs
    same = [s for s in _usable(side) if s.name == sock.name]
    if len(same) <= 1:
        return sock.name
    return f"{sock.name}#{same.index(sock)}" if sock in same else sock.identifier


def auto_frame_graph(group, strategy: str = "connectivity", apply: bool = False) -> list[dict]:
    """Suggest frames for a tree: one per connected part ("connectivity", group IO nodes
    left out) or one per node family ("type": Mesh, Curve, Instance, Utilities…).
    With apply=True the frames are created (one undo step)."""
    members = [n for n in group.nodes if n.bl_idname not in ("NodeFrame", GROUP_INPUT, GROUP_OUTPUT)]
    frames: list[dict] = []
    if strategy == "connectivity":
        parent = {n.name: n.name for n in members}

        def root(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for l in group.links:
            a, b = l.from_node.name, l.to_node.name
            if a in parent and b in parent:
                parent[root(a)] = root(b)
        parts: dict[str, list[str]] = {}
        for n in members:
            parts.setdefault(root(n.name), []).append(n.name)
        for k, names in enumerate(sorted(parts.values(), key=lambda v: v[0])):
            frames.append({"id": f"frame_{k}", "label": f"Part {k + 1}", "nodes": names})
    elif strategy == "type":
        fams: dict[str, list[str]] = {}
        for n in members:
            fams.setdefault(_family(n.bl_idname), []).append(n.name)
        for fam, names in sorted(fams.items()):
            frames.append({"id": f"frame_{fam.lower()}", "label": fam, "nodes": names,
                           "color": list(FAMILY_COLORS.get(fam, (0.5, 0.5, 0.5))) + [0.8]})
    else:
        raise BuildError("INVALID_FRAME", "", f"unknown strategy {strategy!r}",
                         'use "connectivity" or "type"')
    if apply:
        for f in frames:
            fr = group.nodes.new("NodeFrame")
            fr.name, fr.label = f["id"], f["label"]
            for name in f["nodes"]:
                group.nodes[name].parent = fr
        bpy.ops.ed.undo_push(message="VibeSync: frame Geometry Nodes")
    return frames


FAMILY_COLORS = {"Mesh": (0.2, 0.4, 0.8), "Curve": (0.2, 0.6, 0.3), "Instances": (0.2, 0.6, 0.3),
                 "Utilities": (0.5, 0.3, 0.7), "Input": (0.2, 0.4, 0.8), "Geometry": (0.9, 0.5, 0.2)}


def _family(idname: str) -> str:
    for fam, keys in (("Mesh", ("Mesh", "Subdivide", "Extrude", "Triangulate", "Dual")),
                      ("Curve", ("Curve", "Spline", "Fillet", "Resample")),
                      ("Instances", ("Instance", "Realize")),
                      ("Input", ("Input", "Value", "Object", "Collection")),
                      ("Geometry", ("Geometry", "Join", "Transform", "Bound", "Merge", "Points",
                                    "Distribute", "Position", "Delete", "Separate"))):
        if idname.startswith(("GeometryNode", "FunctionNode")) and any(k in idname for k in keys):
            return fam
    return "Utilities"


# ---------------------------------------------------------------------------------------
# evaluation summary (tests, describe)


def evaluated_summary(obj) -> dict:
    """What the modifier stack produces: vertex count and instances (with their scales)."""
    dg = bpy.context.evaluated_depsgraph_get()
    ob_eval = obj.evaluated_get(dg)
    scales = []
    for inst in dg.object_instances:
        if inst.is_instance and inst.parent is not None and inst.parent.original == obj:
            m = inst.matrix_world
            scales.append(round(m.to_scale().x, 5))
    mesh = ob_eval.to_mesh()
    try:
        verts = len(mesh.vertices)
    finally:
        ob_eval.to_mesh_clear()
    warnings = []
    for mod in obj.modifiers:
        for w in getattr(mod, "node_warnings", ()):
            warnings.append(getattr(w, "message", str(w)))
    return {"vertices": verts, "instances": len(scales), "instance_scales": scales,
            "warnings": warnings}
