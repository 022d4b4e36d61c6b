"""(a) The catalogue regenerated in this Blender equals the committed one, byte for byte."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

from conftest import CATALOGUE_DIR, VERSION


def test_regenerated_catalogue_equals_the_committed_one(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(CATALOGUE_DIR, "generate.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in (f"geometry_nodes_{VERSION}.json", f"socket_compat_{VERSION}.json"):
        fresh, committed = tmp_path / name, os.path.join(CATALOGUE_DIR, name)
        assert filecmp.cmp(fresh, committed, shallow=False), \
            f"{name} differs from a regeneration in Blender {VERSION}: run scripts/geonodes-catalogue {VERSION}"
