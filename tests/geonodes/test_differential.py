"""(b) The validator's verdict on a link equals Blender's `is_valid`.

The corpus: every socket base type as a source (a single value and a field where the
catalogue has one) into every base type as a target (a single-value input and a field
input), plus every input and output of Math, Mix, Compare and Random Value under each of
their socket variants (each data type, each operation's socket set). Each link is created
in real Blender in a fresh tree and `is_valid` read after an update; the same link as
graph_json goes through `vibesync geonodes validate`.
"""

from __future__ import annotations

import os

import bpy

from conftest import VERSION, validate_many

LINK_CODES = {"INCOMPATIBLE_SOCKETS", "FIELD_INTO_SINGLE_VALUE"}
SKIP_TYPES = {"NodeGroupInput", "NodeGroupOutput", "NodeReroute", "NodeFrame", "GeometryNodeGroup",
              "GeometryNodeViewer", "GeometryNodeWarning"}
VARIANT_NODES = ["ShaderNodeMath", "ShaderNodeMix", "FunctionNodeCompare", "FunctionNodeRandomValue"]


def is_zone(cat_ids: set[str], idname: str) -> bool:
    for side, other in (("Input", "Output"), ("Output", "Input")):
        if idname.endswith(side) and idname[: -len(side)] + other in cat_ids and "Group" not in idname:
            return True
    return False


def probes(catalogue: dict):
    """One source per (type, field) and one target per (type, field): (idname, socket index)."""
    ids = {n["idname"] for n in catalogue["nodes"]}
    sources, targets = {}, {}
    for n in catalogue["nodes"]:
        if n["idname"] in SKIP_TYPES or is_zone(ids, n["idname"]) or n["variants"]:
            continue
        for i, s in enumerate(n["outputs"]):
            if s["enabled"] and s["type"] != "CUSTOM":
                sources.setdefault((s["type"], s["field"]), (n["idname"], i))
        for i, s in enumerate(n["inputs"]):
            if s["enabled"] and s["type"] != "CUSTOM" and not s["multi_input"]:
                targets.setdefault((s["type"], s["field"]), (n["idname"], i))
    return sources, targets


def variants_of(catalogue: dict, idname: str):
    """Each distinct socket set of the node (plus each data type at least once)."""
    node = next(n for n in catalogue["nodes"] if n["idname"] == idname)
    seen, out = set(), []
    for v in node["variants"] or [{"properties": {}, "inputs": None, "outputs": None}]:
        key = (tuple(v["inputs"] or ()), tuple(v["outputs"] or ()), v["properties"].get("data_type"))
        if key not in seen:
            seen.add(key)
            out.append(v["properties"])
    return out


def socket_ref(node, sock) -> str:
    """The name, or Name#k when several enabled sockets share it (what a graph would say)."""
    side = node.outputs if sock.is_output else node.inputs
    same = [s for s in side if s.enabled and s.name == sock.name and s.bl_idname != "NodeSocketVirtual"]
    if len(same) == 1:
        return sock.name
    return f"{sock.name}#{same.index(sock)}"


def build_corpus(catalogue: dict):
    sources, targets = probes(catalogue)
    cases = []  # (src idname, src props, output selector, dst idname, dst props, input selector)
    for (_, _), (sid, si) in sorted(sources.items()):
        for (_, _), (tid, ti) in sorted(targets.items()):
            cases.append((sid, {}, ("index", si), tid, {}, ("index", ti)))
    for idname in VARIANT_NODES:
        for props in variants_of(catalogue, idname):
            for (sid, si) in sorted(sources.values()):
                cases.append((sid, {}, ("index", si), idname, props, ("each", None)))
            for (tid, ti) in sorted(targets.values()):
                cases.append((idname, props, ("each", None), tid, {}, ("index", ti)))
    return cases


def blender_links(cases):
    """Create each link in real Blender; return (graph_json, is_valid) per concrete link."""
    out = []
    tree = bpy.data.node_groups.new("differential", "GeometryNodeTree")
    for sid, sprops, ssel, tid, tprops, tsel in cases:
        tree.nodes.clear()
        a = tree.nodes.new(sid)
        b = tree.nodes.new(tid)
        for k, v in sprops.items():
            setattr(a, k, v)
        for k, v in tprops.items():
            setattr(b, k, v)
        tree.update_tag()
        bpy.context.view_layer.update()
        outs = [a.outputs[ssel[1]]] if ssel[0] == "index" else \
            [s for s in a.outputs if s.enabled and s.bl_idname != "NodeSocketVirtual"]
        ins = [b.inputs[tsel[1]]] if tsel[0] == "index" else \
            [s for s in b.inputs if s.enabled and s.bl_idname != "NodeSocketVirtual"]
        pairs = [(o, i) for o in outs for i in ins] if ssel[0] == "index" or tsel[0] == "index" else []
        for o, i in pairs:
            link = tree.links.new(o, i)
            tree.update_tag()
            bpy.context.view_layer.update()
            valid = bool(link.is_valid) and link.from_socket == o and link.to_socket == i
            graph = {
                "nodes": [{"id": "a", "type": sid, "properties": sprops},
                          {"id": "b", "type": tid, "properties": tprops}],
                "links": [{"from": "a", "from_socket": socket_ref(a, o),
                           "to": "b", "to_socket": socket_ref(b, i)}],
            }
            out.append((graph, valid, f"{sid}{sprops}.{o.identifier} -> {tid}{tprops}.{i.identifier}"))
            tree.links.remove(link)
    bpy.data.node_groups.remove(tree)
    return out


def test_validator_agrees_with_blender_on_every_link(catalogue):
    corpus = blender_links(build_corpus(catalogue))
    assert len(corpus) > 500, len(corpus)
    reports = validate_many([g for g, _, _ in corpus])
    mismatches, unresolved = [], []
    for (_graph, valid, what), report in zip(corpus, reports):
        at_link = [e for e in report["errors"] if e["pointer"].startswith("/links/0")]
        other = [e for e in at_link if e["code"] not in LINK_CODES]
        if other:
            unresolved.append(f"{what}: {other[0]['code']} {other[0]['message']}")
            continue
        # A link the validator converts (CONVERSION_INSERTED, docs/GEONODES.md §Conversions) is
        # one it judges Blender refuses as written.
        converted = any(w["code"] == "CONVERSION_INSERTED" and w["pointer"].startswith("/links/0")
                        for w in report["warnings"])
        verdict = not any(e["code"] in LINK_CODES for e in at_link) and not converted
        if verdict != valid:
            mismatches.append(f"{what}: Blender is_valid={valid}, validator={verdict} "
                              f"{[e['message'] for e in at_link]}")
    invalid = sum(1 for _, v, _ in corpus if not v)
    print(f"Blender {VERSION}: {len(corpus)} links, {invalid} invalid in Blender")
    assert not unresolved, f"{len(unresolved)} links not resolved:\n" + "\n".join(unresolved[:20])
    show = int(os.environ.get("GEONODES_SHOW", "30"))
    assert not mismatches, f"{len(mismatches)} of {len(corpus)} disagree:\n" + "\n".join(mismatches[:show])
    assert invalid > 50, "the corpus must contain links Blender refuses"
