"""Write the Geometry Nodes catalogue and socket compatibility table of the running Blender.

Run inside real Blender (the `bpy` wheel): `scripts/geonodes-catalogue 4.5` does it.

    python generate.py OUT_DIR

writes OUT_DIR/geometry_nodes_<major.minor>.json and OUT_DIR/socket_compat_<major.minor>.json
(docs/GEONODES.md §Catalogue describes both). Everything comes from Blender itself:

* node types: every `bpy.types.Node` subclass that `GeometryNodeTree.nodes.new()` accepts;
* label and description: the node's RNA (`bl_rna.name`, `bl_rna.description`);
* category: the path through Blender's own Add menu (its menu classes are drawn into a
  recording layout, once for modifier trees and once for tool trees);
* sockets: name, identifier, idname, type, enabled, multi-input, default value, and the
  display shape after Blender's field inferencing ran, with what it means for fields
  (`field`: an input accepts fields or only single values; an output always is a field,
  is one when a field flows in (`dependent`), or never is);
* variants: for every enum/boolean property that changes which sockets exist, the sockets
  enabled under each value (all combinations when there are at most MAX_PRODUCT of them);
* compatibility: for every pair of socket base types, a link between real nodes with sockets
  of those types, and its `is_valid` after an update (`compat_table`); and the socket types
  a group interface accepts.

The output is deterministic (sorted, floats rounded) so a regeneration compares byte for byte.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import sys

import bpy

MAX_PRODUCT = 256
# node.add_<stem>_zone operator → node idname stem, where they differ in case.
ZONE_NODES = {"ForeachGeometryElement": "GeometryNodeForeachGeometryElement"}
SCHEMA_VERSION = 1
BASE_NODE_PROPS = {p.identifier for p in bpy.types.Node.bl_rna.properties}
# Properties that never change sockets or are not settings a graph sets.
SKIP_PROPS = {"color_tag", "warning_propagation", "show_options", "show_preview"}


def enum_values(obj, prop: str) -> list[str]:
    """All identifiers an enum accepts (Blender lists them when given an invalid one; this
    also works for enums whose items are computed at run time)."""
    try:
        setattr(obj, prop, "__vibesync_invalid__")
    except TypeError as e:
        m = re.search(r"not found in \((.*)\)", str(e))
        if m:
            return re.findall(r"'([^']*)'", m.group(1))
    except Exception:  # noqa: BLE001 - read-only or context-dependent: no values
        return []
    return []


def rounded(v):
    if isinstance(v, float):
        r = round(v, 6)
        return 0.0 if r == 0 else r
    return v


def default_of(sock):
    if not hasattr(sock, "default_value"):
        return None
    v = sock.default_value
    if isinstance(v, (bool, int, float, str)):
        return rounded(v)
    try:
        seq = list(v)
    except TypeError:
        return None  # pointers (object, material...) and menus without items
    if all(isinstance(x, (int, float)) for x in seq):
        return [rounded(float(x)) for x in seq]
    return None


# What a socket's display shape (after field inferencing) says about its structure.
# Inputs: single (single values only), field (single values and fields), dynamic (anything:
# single values, fields, grids, lists), grid, list. Outputs: single (never a field), field
# (always), dependent (what flows in), grid, list.
# Blender 5.0 (the API with `inferred_structure_type`) redrew the shapes: a single value is a
# LINE, a socket that may carry anything a CIRCLE; its display shape is the declared
# capability and `inferred_structure_type` what inferencing found, so an output inferred as a
# FIELD with nothing linked is a field source.
SHAPES_4 = {"CIRCLE": ("single", "single"), "DIAMOND": ("field", "field"),
            "DIAMOND_DOT": ("field", "dependent")}
SHAPES_5 = {"LINE": ("single", "single"), "CIRCLE": ("dynamic", "dependent"),
            "DIAMOND": ("field", "field"), "LIST": ("list", "list"),
            "VOLUME_GRID": ("grid", "grid")}


def field_support(sock) -> str:
    inferred = getattr(sock, "inferred_structure_type", None)
    shapes = SHAPES_4 if inferred is None else SHAPES_5
    if sock.is_output and inferred == "FIELD":
        return "field"
    meaning = shapes.get(sock.display_shape)
    if meaning is None:
        return "unknown"
    return meaning[1] if sock.is_output else meaning[0]


def socket_row(sock) -> dict:
    row = {
        "name": sock.name,
        "identifier": sock.identifier,
        "idname": sock.bl_idname,
        "type": sock.type,
        "shape": sock.display_shape,
        "field": field_support(sock),
        "multi_input": bool(sock.is_multi_input),
    }
    if not sock.is_output:
        d = default_of(sock)
        if d is not None:
            row["default"] = d
        if getattr(sock, "hide_value", False):
            row["hide_value"] = True
    return row


def socket_key(row: dict) -> tuple:
    return (row["identifier"], row["idname"], row["name"])


def settle(tree) -> None:
    """Run Blender's node tree update (field inferencing, link validation) now."""
    tree.update_tag()
    bpy.context.view_layer.update()
    tree.interface_update(bpy.context)


def signature(node) -> tuple:
    ins = tuple((s.identifier, s.bl_idname, s.name) for s in node.inputs if s.enabled)
    outs = tuple((s.identifier, s.bl_idname, s.name) for s in node.outputs if s.enabled)
    return ins, outs


class Recorder:
    """Stands in for UILayout and context while Blender's Add-menu classes draw."""

    def __init__(self, mode: str):
        self.items: list[tuple[str, str]] = []  # ("node", idname) | ("menu", menu idname)
        self.mode = mode

    def __getattr__(self, name):
        if name in ("operator", "menu", "menu_contents"):
            return getattr(self, "_" + name)
        return Permissive()

    def _operator(self, op, *args, **kw):
        props = OperatorProps()
        self.items.append(("op", props))
        # Zones are added in pairs by their own operators (node.add_repeat_zone...).
        m = re.fullmatch(r"node\.add_(\w+)_zone", op)
        if m:
            stem = "".join(w.capitalize() for w in m.group(1).split("_"))
            for side in ("Input", "Output"):
                zone = OperatorProps()
                zone.type = ZONE_NODES.get(stem, f"GeometryNode{stem}") + side
                self.items.append(("op", zone))
        return props

    def _menu(self, name, *args, **kw):
        self.items.append(("menu", name))
        return Permissive()

    def _menu_contents(self, name, *args, **kw):
        self.items.append(("inline", name))
        return Permissive()


class OperatorProps:
    def __init__(self):
        self.type = None
        self.settings = Permissive()

    def __setattr__(self, k, v):
        object.__setattr__(self, k, v)


class Permissive:
    """Falsy, callable, iterable-as-empty: whatever a menu's draw asks of the context."""

    def __getattr__(self, name):
        return Permissive()

    def __call__(self, *a, **k):
        return Permissive()

    def __bool__(self):
        return False

    def __iter__(self):
        return iter(())

    def __eq__(self, other):
        return False

    def __hash__(self):
        return 0

    def __len__(self):
        return 0


class FakeContext(Permissive):
    def __init__(self, mode: str):
        object.__setattr__(self, "_mode", mode)

    def __getattr__(self, name):
        if name == "space_data":
            space = Permissive()
            mode = object.__getattribute__(self, "_mode")
            return type("Space", (Permissive,), {"geometry_nodes_type": mode,
                                                  "tree_type": "GeometryNodeTree"})()
        return Permissive()


def menu_categories() -> dict[str, str]:
    """idname -> "Geometry > Read" from Blender's Add menu (modifier menus win over tool ones)."""
    mod = importlib.import_module("bl_ui.node_add_menu_geometry")
    menus = {}
    for name in dir(bpy.types):
        cls = getattr(bpy.types, name, None)
        if isinstance(cls, type) and issubclass(cls, bpy.types.Menu) and name.startswith("NODE_MT_"):
            menus[name] = cls
    for cls in getattr(mod, "classes", ()):
        menus.setdefault(getattr(cls, "bl_idname", cls.__name__), cls)
    root = None
    for candidate in ("NODE_MT_geometry_node_add_all", "NODE_MT_geometry_node_add"):
        if candidate in menus:
            root = candidate
            break
    if root is None:
        return {}
    # Asset catalog drawing needs a real window: leave it out.
    nam = importlib.import_module("bl_ui.node_add_menu")
    for fn in ("draw_assets_for_catalog", "draw_root_assets", "draw_node_group_add_menu"):
        if hasattr(nam, fn):
            setattr(nam, fn, lambda *a, **k: None)
    found: dict[str, str] = {}
    for mode in ("MODIFIER", "TOOL"):
        seen = set()

        def walk(menu_name: str, path: list[str], mode=mode, seen=seen):
            if menu_name in seen or menu_name not in menus:
                return
            seen.add(menu_name)
            cls = menus[menu_name]
            rec = Recorder(mode)
            draw = getattr(cls, "draw", None)
            if draw is None:
                return
            try:
                draw(_Self(cls, rec), FakeContext(mode))
            except Exception:  # noqa: BLE001 - a menu that needs a real window: skip it
                return
            for kind, item in rec.items:
                if kind == "op":
                    for attr in ("type", "input_node_type", "output_node_type"):
                        idname = getattr(item, attr, None)
                        if isinstance(idname, str) and idname not in found:
                            found[idname] = " > ".join(path)
                elif kind in ("menu", "inline"):
                    sub = menus.get(item)
                    label = getattr(sub, "bl_label", "") if sub else ""
                    walk(item, path + [label] if (kind == "menu" and label) else path)

        walk(root, [])
    return found


class _Self:
    """`self` for a Menu.draw call: the recording layout plus the class attributes
    (classmethods stay bound to the class, plain methods get this proxy as `self`)."""

    def __init__(self, cls, layout):
        self._cls = cls
        self.layout = layout

    def __getattr__(self, name):
        static = None
        for klass in self._cls.__mro__:
            if name in vars(klass):
                static = vars(klass)[name]
                break
        attr = getattr(self._cls, name)
        if isinstance(static, (classmethod, staticmethod)) or not callable(attr) \
                or isinstance(attr, type):
            return attr
        return lambda *a, **k: attr(self, *a, **k)


def node_types(tree) -> list[str]:
    out = []
    for name in sorted(dir(bpy.types)):
        cls = getattr(bpy.types, name, None)
        if not (isinstance(cls, type) and issubclass(cls, bpy.types.Node)):
            continue
        if name in ("Node", "NodeInternal", "NodeCustomGroup", "GeometryNode", "FunctionNode",
                    "ShaderNode", "CompositorNode", "TextureNode", "NodeUndefined"):
            continue
        try:
            n = tree.nodes.new(name)
        except (RuntimeError, TypeError):
            continue
        tree.nodes.remove(n)
        out.append(name)
    return out


def describe_node(tree, idname: str, categories: dict[str, str]) -> dict:
    node = tree.nodes.new(idname)
    settle(tree)
    rna = node.bl_rna
    props = []
    variant_props = []
    for p in rna.properties:
        ident = p.identifier
        if ident in BASE_NODE_PROPS or ident in SKIP_PROPS or p.is_readonly:
            continue
        row = {"identifier": ident, "type": p.type}
        if p.type == "ENUM":
            if p.is_enum_flag:
                continue
            default = getattr(node, ident)
            values = enum_values(node, ident)
            setattr(node, ident, default)
            row["items"] = values
            row["default"] = default
            variant_props.append((ident, values, default))
        elif p.type == "BOOLEAN" and not getattr(p, "is_array", False) and p.array_length == 0:
            row["default"] = bool(getattr(node, ident))
            variant_props.append((ident, [False, True], row["default"]))
        elif p.type in ("INT", "FLOAT") and p.array_length == 0:
            row["default"] = rounded(getattr(node, ident))
        elif p.type == "STRING":
            row["default"] = getattr(node, ident)
        props.append(row)
    tree.nodes.remove(node)

    union_in: dict[tuple, dict] = {}
    union_out: dict[tuple, dict] = {}
    order_in: list[tuple] = []
    order_out: list[tuple] = []
    seen_enabled: set[tuple] = set()

    def capture(settings: dict):
        n = tree.nodes.new(idname)
        partner = None
        if hasattr(n, "pair_with_output") and idname.endswith("Input") and categories.get(idname):
            # A zone input shows its items only once it is paired with its output. Only zones
            # the Add menu offers are paired (4.5's experimental closure crashes on it).
            partner = tree.nodes.new(idname[: -len("Input")] + "Output")
            n.pair_with_output(partner)
        try:
            for k, v in settings.items():
                setattr(n, k, v)
        except (TypeError, ValueError, AttributeError, RuntimeError):
            tree.nodes.remove(n)
            if partner is not None:
                tree.nodes.remove(partner)
            return None
        settle(tree)
        ins, outs = [], []
        # A socket's row comes from the first capture where it is enabled (inferencing
        # says nothing useful about a disabled socket).
        for socks, union, order, keys in ((n.inputs, union_in, order_in, ins),
                                          (n.outputs, union_out, order_out, outs)):
            for s in socks:
                row = socket_row(s)
                key = socket_key(row)
                if key not in union:
                    order.append(key)
                if key not in union or (s.enabled and key not in seen_enabled):
                    union[key] = row
                if s.enabled:
                    seen_enabled.add(key)
                    keys.append(key)
        tree.nodes.remove(n)
        if partner is not None:
            tree.nodes.remove(partner)
        return (tuple(ins), tuple(outs))

    base = capture({})
    # A property affects sockets when changing it changes them, with every other property
    # at its default or at any one other value (Compare's `mode` matters only for vectors).
    contexts = [{}] + [{q: w} for q, values, default in variant_props
                       for w in values if w != default]
    sigs = {}

    def sig_of(settings: dict):
        key = tuple(sorted(settings.items()))
        if key not in sigs:
            sigs[key] = capture(settings)
        return sigs[key]

    affecting = []
    for ident, values, default in variant_props:
        hit = False
        for ctx in contexts:
            if ident in ctx:
                continue
            ref = sig_of(ctx)
            for v in values:
                if v == default:
                    continue
                sig = sig_of({**ctx, ident: v})
                if ref is not None and sig is not None and sig != ref:
                    hit = True
                    break
            if hit:
                break
        if hit:
            affecting.append((ident, values, default))
    variants = []
    mode = "product"
    total = 1
    for _, values, _ in affecting:
        total *= len(values)
    if affecting and total <= MAX_PRODUCT:
        combos = [dict(zip([a[0] for a in affecting], vals))
                  for vals in itertools.product(*[a[1] for a in affecting])]
    else:
        mode = "single" if affecting else "product"
        combos = [{}]
        for ident, values, default in affecting:
            combos += [{ident: v} for v in values if v != default]
    for combo in combos:
        sig = capture(combo)
        if sig is None:
            continue
        variants.append({"properties": combo, "inputs": list(sig[0]), "outputs": list(sig[1])})

    default_in = set(base[0]) if base else set()
    default_out = set(base[1]) if base else set()
    inputs = []
    for key in order_in:
        row = dict(union_in[key])
        row["enabled"] = key in default_in
        inputs.append(row)
    outputs = []
    for key in order_out:
        row = dict(union_out[key])
        row["enabled"] = key in default_out
        outputs.append(row)
    index_in = {k: i for i, k in enumerate(order_in)}
    index_out = {k: i for i, k in enumerate(order_out)}
    for v in variants:
        v["inputs"] = [index_in[k] for k in v["inputs"]]
        v["outputs"] = [index_out[k] for k in v["outputs"]]
    return {
        "idname": idname,
        "label": rna.name,
        "description": rna.description,
        "category": categories.get(idname, ""),
        "properties": props,
        "inputs": inputs,
        "outputs": outputs,
        "variant_mode": mode,
        "variants": variants if affecting else [],
    }


PROBE_SKIP = {"NodeGroupInput", "NodeGroupOutput", "NodeReroute", "NodeFrame", "GeometryNodeGroup"}


def interface_types(tree) -> list[dict]:
    """The socket types a group interface accepts (for `interface` sections)."""
    kinds = []
    try:
        tree.interface.new_socket("x", in_out="INPUT", socket_type="__vibesync_invalid__")
    except TypeError as e:
        m = re.search(r"not found in \((.*)\)", str(e))
        kinds = re.findall(r"'([^']*)'", m.group(1)) if m else []
    rows = []
    for k in sorted(kinds):
        item = tree.interface.new_socket("probe", in_out="INPUT", socket_type=k)
        gi = tree.nodes.new("NodeGroupInput")
        rows.append({"idname": k, "type": gi.outputs[0].type})
        tree.nodes.remove(gi)
        tree.interface.remove(item)
    return rows


def compat_table(tree, nodes: list[dict]) -> dict:
    """`is_valid` of a link from each socket base type into each, between real nodes.

    Per type, the source is the first catalogue output of that type that is not a field at
    rest (so the field rule cannot refuse the link) and the target the first input of that
    type that accepts fields when one does; each pair is linked in a fresh tree and
    `is_valid` read after an update."""
    def usable(n):
        return n["idname"] not in PROBE_SKIP

    sources, targets = {}, {}
    for n in nodes:
        if not usable(n):
            continue
        for i, s in enumerate(n["outputs"]):
            if s["enabled"] and s["type"] != "CUSTOM" and s["field"] in ("single", "dependent"):
                sources.setdefault(s["type"], (n["idname"], i))
        for i, s in enumerate(n["inputs"]):
            if s["enabled"] and s["type"] != "CUSTOM" and not s["multi_input"]:
                best = targets.get(s["type"])
                if best is None or (not best[2] and s["field"] == "field"):
                    targets[s["type"]] = (n["idname"], i, s["field"] == "field")
    kinds = sorted(set(sources) & set(targets))
    rows = []
    for a in kinds:
        for b in kinds:
            tree.nodes.clear()
            src = tree.nodes.new(sources[a][0])
            dst = tree.nodes.new(targets[b][0])
            o, i = src.outputs[sources[a][1]], dst.inputs[targets[b][1]]
            link = tree.links.new(o, i)
            settle(tree)
            ok = bool(link.is_valid) and link.from_socket == o and link.to_socket == i
            rows.append({"from": a, "to": b, "valid": ok})
    tree.nodes.clear()
    probes = [{"type": k, "source": "%s.outputs[%d]" % sources[k],
               "target": "%s.inputs[%d]" % targets[k][:2]} for k in kinds]
    return {"socket_types": interface_types(tree), "probes": probes, "pairs": rows}


def main() -> None:
    out_dir = sys.argv[sys.argv.index("--") + 1] if "--" in sys.argv else sys.argv[-1]
    version = "%d.%d" % bpy.app.version[:2]
    tree = bpy.data.node_groups.new("vibesync_catalogue", "GeometryNodeTree")
    categories = menu_categories()
    nodes = [describe_node(tree, idname, categories) for idname in node_types(tree)]
    catalogue = {
        "schema_version": SCHEMA_VERSION,
        "blender": version,
        "tree_type": "GeometryNodeTree",
        "node_count": len(nodes),
        "nodes": nodes,
    }
    compat_tree = bpy.data.node_groups.new("vibesync_compat", "GeometryNodeTree")
    compat = {"schema_version": SCHEMA_VERSION, "blender": version, **compat_table(compat_tree, nodes)}
    os.makedirs(out_dir, exist_ok=True)
    for name, doc in ((f"geometry_nodes_{version}.json", catalogue),
                      (f"socket_compat_{version}.json", compat)):
        path = os.path.join(out_dir, name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(doc, indent=1, ensure_ascii=False))
            f.write("\n")
        os.replace(tmp, path)
        print(f"wrote {path}")
    print(f"{len(nodes)} node types, {sum(1 for n in nodes if n['category'])} with a menu category")


if __name__ == "__main__":
    main()
