"""What meshes cost on the wire: each geometry goes to the daemon once per connection, however
many objects show it (PROTOCOL §6.1: a `create` naming a mesh the daemon holds needs no
attachment), and a change the daemon refuses `RATE_LIMITED` is sent again, whole, after a
pause (PROTOCOL §2 "Rate limits": retry later) — a big first sync over the daemon's bytes
budget loses nothing. Real bpy, the real daemon (with a small bytes budget for the second)."""

from __future__ import annotations

import bpy
import pytest

import vibesync
from conftest import pump_until, settle
from daemon import Daemon, synced_states

PROP = "vibesync_uuid"


def grids(n: int, same: bool) -> list:
    """`n` grids of 2,500 vertices in the scene collection: one geometry when `same`, else
    each its own (a different size moves every vertex)."""
    made = []
    for i in range(n):
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=49, y_subdivisions=49,
                                        size=2.0 if same else 2.0 + i, location=(3 * i, 0, 0))
        made.append(bpy.context.active_object)
    return made


def test_objects_showing_one_geometry_send_it_once(bridge):
    daemon = bridge
    first = grids(1, same=True)[0]
    settle()
    u0 = first.get(PROP) or pump_until(lambda: first.get(PROP), what="a uuid for the first grid")
    one = pump_until(lambda: (synced_states(daemon).get(u0) or {}).get("state", {}).get("mesh_hash"),
                     what="the first grid at the daemon")
    per_mesh = vibesync.status()["mesh_bytes_sent"]
    assert per_mesh > 100_000, per_mesh  # 2,500 vertices with normals and UVs
    # Nine more objects with the same geometry: linked duplicates share the mesh datablock,
    # copies have their own with the same content. Neither sends it again.
    linked = [first.copy() for _ in range(4)]
    copies = [first.copy() for _ in range(5)]
    for ob in copies:
        ob.data = first.data.copy()
    for i, ob in enumerate(linked + copies):
        ob.location.x = 3 * (i + 1)
        bpy.context.scene.collection.objects.link(ob)
    settle()

    def all_there():
        states = synced_states(daemon)
        got = [(states.get(ob.get(PROP, "")) or {}).get("state", {}).get("mesh_hash") for ob in linked + copies]
        return all(h == one for h in got)
    pump_until(all_there, timeout=20, what="ten objects with one geometry at the daemon")
    assert vibesync.status()["mesh_bytes_sent"] == per_mesh
    assert vibesync.status()["not_synced"] == []


@pytest.fixture
def tight_daemon(daemon_bin, tmp_path):
    """A daemon whose bytes budget per session is 400 kB/s with a 300 kB burst: two grids of
    2,500 vertices exhaust it."""
    config = tmp_path / "vibesync.toml"
    config.write_text("[limits]\nbytes_per_sec = 400000\nbytes_burst = 300000\n")
    d = Daemon(daemon_bin, str(tmp_path / "data"), ["--config", str(config)]).start()
    yield d
    d.stop()


def test_a_first_sync_over_the_bytes_budget_arrives_whole(clean_blender, tight_daemon, project_id):
    made = grids(8, same=False)  # ~1.1 MB of distinct meshes: ~3 s of this daemon's budget
    settle()
    vibesync.connect("127.0.0.1", tight_daemon.port, tight_daemon.token, project_id)
    try:
        def at_daemon():
            states = synced_states(tight_daemon)
            return all((states.get(ob.get(PROP, "")) or {}).get("state", {}).get("mesh_hash")
                       for ob in made)
        pump_until(at_daemon, timeout=30, what="eight distinct grids at the daemon")
        hashes = {synced_states(tight_daemon)[ob[PROP]]["state"]["mesh_hash"] for ob in made}
        assert len(hashes) == 8
        assert vibesync.status()["not_synced"] == []
    finally:
        vibesync.disconnect()
