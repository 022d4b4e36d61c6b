"""The addon's bpy-free modules, loaded from their files under plain CPython: the package
(`vibesync/__init__.py` imports bpy) is never imported."""

from __future__ import annotations

import importlib.util
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ADDON = os.path.join(HERE, "..", "..", "addons", "blender", "vibesync")
VECTORS = os.path.join(HERE, "..", "vectors")


def load(module: str):
    """`vibesync/<module>.py` as a standalone module (it must not import bpy or the package)."""
    path = os.path.join(ADDON, module + ".py")
    spec = importlib.util.spec_from_file_location(f"vibesync_{module}_plain", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def source(module: str) -> str:
    with open(os.path.join(ADDON, module + ".py"), encoding="utf-8") as f:
        return f.read()


def vector(name: str):
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)
