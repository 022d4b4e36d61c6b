"""Real scenes, end to end: a fresh daemon, real Blender (bpy) with the addon and the
headless Unity host per scenario. Every scenario ends with the four checks of
`scenario.finish`: nothing a person made is missing in either editor, both converge
(names, parents, poses, visibility) before a deadline, the bridge is then quiet for 5 s,
and `vibesync verify` passes."""

from __future__ import annotations

import json
import os
import time

import pytest

from harness import Client, Host, bpy, close, drive, drive_for, selected, vibesync
from scenario import UNITY_DEFAULT_SCENE, converge, finish, host_view, quiet, rot_z, uuids_of

STARTUP = ("Collection", "Cube", "Camera", "Light")
# Unity's default scene as a never-saved scene: its objects carry no uuid.
UNSAVED_UNITY_SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenes",
                                   "unity_unsaved.json")


class World:
    """What a scenario started; everything is stopped at the end, whatever happened."""

    def __init__(self, daemon, project_id, workdir):
        self.daemon, self.project_id, self.workdir = daemon, project_id, workdir
        self.hosts: list[Host] = []

    def blender(self, startup: bool = True, build=None, connect: bool = True,
                project_id: str | None | bool = True):
        """Blender with the factory startup scene (or an empty one), `build()` run before
        connecting. `project_id=None`: zero-config (no project id set)."""
        vibesync.unregister()
        bpy.ops.wm.read_factory_settings(use_empty=not startup)
        bpy.context.preferences.edit.undo_steps = 64
        vibesync.register()
        if build is not None:
            build()
            bpy.context.view_layer.update()
        if connect:
            self.connect(project_id)

    def connect(self, project_id: str | None | bool = True):
        pid = self.project_id if project_id is True else project_id
        vibesync.connect("127.0.0.1", self.daemon.port, self.daemon.token, pid)
        drive(lambda: vibesync.status()["connected"], timeout=20, what="Blender connected")

    def startup_synced(self, build=None, also: tuple = ()):
        """Blender's factory startup scene (with what `build()` adds, named in `also`)
        connected, then the Unity host with its default scene, both converged: (uuid -> name
        of what Blender made, the host)."""
        self.blender(build=build)
        made = uuids_of(STARTUP + also)
        host = self.host()
        converge(host)
        return made, host

    def host(self, scene: str | None = UNITY_DEFAULT_SCENE, project_id: str | None | bool = True):
        pid = self.project_id if project_id is True else project_id
        h = Host(self.daemon, pid, self.workdir, ["--scene", scene] if scene else None)
        self.hosts.append(h)
        h.wait("connected", timeout=30)
        return h

    def host_made(self, scene: str = UNITY_DEFAULT_SCENE) -> dict[str, str]:
        import json
        with open(scene, encoding="utf-8") as f:
            return {o["uuid"]: o["name"] for o in json.load(f)["objects"]}

    def finish(self, host, blender_made, host_made=None, meshes=True):
        if host_made is None:
            host_made = self.host_made()
        return finish(self.daemon, self.project_id, host, blender_made, host_made, meshes)

    def close(self):
        vibesync.disconnect()
        for h in self.hosts:
            h.close()
        vibesync.unregister()


@pytest.fixture
def world(daemon, project_id, workdir):
    w = World(daemon, project_id, workdir)
    yield w
    w.close()


def require_pairing(daemon) -> None:
    """Zero-config pairing is the daemon's (PROTOCOL §3): a daemon that still requires
    `hello.project_id` makes these scenarios expected failures, reported as such."""
    import json
    import socket
    import struct
    import uuid
    hello = {"type": "hello", "protocol": 1, "editor": "test", "editor_version": "probe",
             "client_id": str(uuid.uuid4()), "token": daemon.token, "last_seq": 0}
    body = json.dumps(hello).encode()
    with socket.create_connection(daemon.addr, timeout=10) as sock:
        sock.sendall(struct.pack(">II", 4 + len(body), len(body)) + body)
        head = b""
        while len(head) < 8:
            head += sock.recv(8 - len(head))
        total, jl = struct.unpack(">II", head)
        data = b""
        while len(data) < total - 4:
            data += sock.recv(total - 4 - len(data))
    reply = json.loads(data[:jl])
    if reply.get("type") != "welcome" or "project_id" not in reply:
        pytest.xfail(f"the daemon does not pair editors yet (hello without project_id -> "
                     f"{reply.get('type')} {reply.get('code')})")


def add_cube(name, location=(0, 0, 0), collection=None):
    me = bpy.data.meshes.get("SharedCube")
    if me is None:
        bpy.ops.mesh.primitive_cube_add()
        tmp = bpy.context.active_object
        me = tmp.data
        me.name = "SharedCube"
        bpy.data.objects.remove(tmp)
    ob = bpy.data.objects.new(name, me.copy())
    (collection or bpy.context.scene.collection).objects.link(ob)
    ob.location = location
    return ob


# ------------------------------------------------------------------ first connect

def test_factory_startup_scene_blender_first(world):
    world.blender()
    made = uuids_of(STARTUP)
    host = world.host()
    world.finish(host, made)


def test_factory_startup_scene_unity_first(world):
    host = world.host()
    world.blender()
    made = uuids_of(STARTUP)
    view = world.finish(host, made)
    assert {v["name"] for v in view.values()} == set(STARTUP) | {"Main Camera",
                                                                 "Directional Light"}


def test_nested_collections(world):
    def build():
        outer = bpy.data.collections.new("Outer")
        bpy.context.scene.collection.children.link(outer)
        mid = bpy.data.collections.new("Middle")
        outer.children.link(mid)
        inner = bpy.data.collections.new("Inner")
        mid.children.link(inner)
        for i, c in enumerate((outer, mid, inner)):
            add_cube(f"In{c.name}", (i, 0, 0), c)

    host = world.host()
    world.blender(build=build)
    made = uuids_of(STARTUP + ("Outer", "Middle", "Inner", "InOuter", "InMiddle", "InInner"))
    view = world.finish(host, made)
    by_name = {v["name"]: u for u, v in view.items()}
    assert view[by_name["Inner"]]["parent"] == by_name["Middle"]
    assert view[by_name["InInner"]]["parent"] == by_name["Inner"]


def test_object_in_two_collections(world):
    def build():
        extra = bpy.data.collections.new("Extra")
        bpy.context.scene.collection.children.link(extra)
        extra.objects.link(bpy.data.objects["Cube"])  # now in Collection and Extra

    world.blender(build=build)
    made = uuids_of(STARTUP + ("Extra",))
    host = world.host()
    world.finish(host, made)
    cube = bpy.data.objects["Cube"]
    assert sorted(c.name for c in cube.users_collection) == ["Collection", "Extra"], \
        "the person's second collection link is kept"


def test_hidden_objects_and_collections(world):
    def build():
        bpy.data.objects["Light"].hide_set(True)           # the eye on the object
        bpy.data.objects["Camera"].hide_viewport = True    # "Disable in Viewports"
        hidden = bpy.data.collections.new("HiddenByEye")
        bpy.context.scene.collection.children.link(hidden)
        add_cube("InHidden", (0, 3, 0), hidden)
        disabled = bpy.data.collections.new("Disabled")
        bpy.context.scene.collection.children.link(disabled)
        disabled.hide_viewport = True
        bpy.context.view_layer.layer_collection.children["HiddenByEye"].hide_viewport = True

    host = world.host()
    world.blender(build=build)
    made = uuids_of(STARTUP + ("HiddenByEye", "InHidden", "Disabled"))
    view = world.finish(host, made)
    hidden = {v["name"] for v in view.values() if not v["visible"]}
    assert hidden == {"Light", "Camera", "HiddenByEye", "Disabled"}, hidden


def test_parent_chains_with_parent_inverse(world):
    def build():
        prev = None
        for i in range(6):
            ob = add_cube(f"Link{i}", (i, i * 0.5, 0))
            ob.rotation_euler = rot_z(15 * i)
            ob.scale = (1 + 0.1 * i,) * 3
            bpy.context.view_layer.update()
            if prev is not None:
                ob.parent = prev  # like Ctrl+P: keep the world pose
                ob.matrix_parent_inverse = prev.matrix_world.inverted()
            prev = ob

    world.blender(build=build)
    names = tuple(f"Link{i}" for i in range(6))
    made = uuids_of(STARTUP + names)
    host = world.host()
    converge(host)
    world_before = {n: bpy.data.objects[n].matrix_world.copy() for n in names}
    # Unity moves the root: the children follow in Blender as they do in Unity.
    root = next(u for u, n in made.items() if n == "Link0")
    host.cmd(f"move {root} 0 2 0")
    drive(lambda: abs(bpy.data.objects["Link0"].location.z - 2) < 1e-4, what="root moved")
    world.finish(host, made)
    bpy.context.view_layer.update()
    for n in names[1:]:
        assert bpy.data.objects[n].parent.name == f"Link{int(n[4:]) - 1}"
    assert bpy.data.objects["Link5"].matrix_world != world_before["Link5"]


def test_linked_duplicates_share_one_mesh(world):
    def build():
        a = bpy.data.objects["Cube"]
        b = bpy.data.objects.new("CubeLinked", a.data)
        bpy.data.collections["Collection"].objects.link(b)
        b.location = (3, 0, 0)

    made, host = world.startup_synced(build, also=("CubeLinked",))
    hv = host_view(host)
    by_name = {v["name"]: u for u, v in hv.items()}
    assert hv[by_name["CubeLinked"]]["vertices"] == hv[by_name["Cube"]]["vertices"] == 8
    world.finish(host, made)
    assert bpy.data.objects["CubeLinked"].data == bpy.data.objects["Cube"].data


def test_modifiers_send_the_evaluated_mesh(world):
    def build():
        mod = bpy.data.objects["Cube"].modifiers.new("Subdiv", "SUBSURF")
        mod.levels = 2

    host = world.host()
    world.blender(build=build)
    made = uuids_of(STARTUP)
    converge(host)
    cube = next(u for u, n in made.items() if n == "Cube")
    # Documented (PROTOCOL §7.1): the peer sees what Blender shows, the evaluated mesh
    # (a cube subdivided twice: 98 vertices); Blender keeps its base mesh and modifier.
    assert host_view(host)[cube]["vertices"] == 98
    world.finish(host, made)
    assert bpy.data.objects["Cube"].modifiers["Subdiv"].levels == 2
    assert len(bpy.data.objects["Cube"].data.vertices) == 8


def test_cameras_lights_and_empties(world):
    def build():
        empty = bpy.data.objects.new("Pivot", None)
        bpy.context.scene.collection.objects.link(empty)
        empty.location = (0, 0, 4)
        spot = bpy.data.objects.new("Spot", bpy.data.lights.new("Spot", "SPOT"))
        bpy.data.collections["Collection"].objects.link(spot)
        spot.parent = empty
        spot.location = (1, 0, 0)
        cam = bpy.data.objects.new("Cam2", bpy.data.cameras.new("Cam2"))
        bpy.context.scene.collection.objects.link(cam)
        cam.rotation_euler = (1.1, 0, 0.8)

    world.blender(build=build)
    made = uuids_of(STARTUP + ("Pivot", "Spot", "Cam2"))
    host = world.host()
    view = world.finish(host, made)
    by_name = {v["name"]: v for v in view.values()}
    assert by_name["Spot"]["parent"] == next(u for u, n in made.items() if n == "Pivot")


# ------------------------------------------------------------------ edits while connected

def test_unity_creates_then_adds_a_mesh(world):
    made, host = world.startup_synced()
    i = host.cmd("create auto Thing")
    u = host.wait("created", i)["uuid"]
    drive(lambda: bpy.data.objects.get("Thing"), what="the empty in Blender")
    host.cmd(f"mesh {u} cube")
    drive(lambda: bpy.data.objects["Thing"].type == "MESH", what="Thing gets its mesh")
    world.finish(host, made, dict(world.host_made(), **{u: "Thing"}))
    ob = bpy.data.objects["Thing"]
    assert ob["vibesync_uuid"] == u and len(ob.data.vertices) == 8


@pytest.mark.window_ms(100)
def test_simultaneous_drags_from_both_sides(world):
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    for i in range(30):
        cube.location = (i * 0.1, 0, 0)
        host.cmd(f"move {u} 0 {i * 0.1} 5")
        drive_for(0.03)
    world.finish(host, made)


@pytest.mark.window_ms(300)  # the default
def test_a_drag_of_many_objects_in_unity_then_in_blender(world):
    """A person in Unity selects 50 objects and drags them for half a second (one edit of
    all of them per 60 Hz frame); Blender runs its timer at its default budget meanwhile.
    Then a person in Blender drags them back. Each editor ends holding the other person's
    last pose of every object, and no edit is taken for a conflict: with one person
    dragging at a time, Blender once took a preview that arrived while it was applying the
    drag's batch for a person's move, and its old pose won over the Unity person's last
    moves in both editors (PROTOCOL §6.3)."""
    names = tuple(f"Drag{i}" for i in range(50))

    def build():
        coll = bpy.data.collections["Collection"]
        for i, n in enumerate(names):
            add_cube(n, location=(i * 3.0, 0, 0), collection=coll)

    made, host = world.startup_synced(build=build, also=names)
    objs = [bpy.data.objects[n] for n in names]
    uuids = [ob["vibesync_uuid"] for ob in objs]
    frame_s = 1 / 60
    t0 = time.monotonic()
    for k in range(30):
        z = 5.0 + k * 0.01  # Unity's z is Blender's y
        host.cmd("together " + " ; ".join(f"move {u} 0 0 {z}" for u in uuids))
        bpy.context.view_layer.update()
        vibesync.tick()
        time.sleep(max(0.0, t0 + (k + 1) * frame_s - time.monotonic()))
    drive(lambda: all(abs(ob.location.y - 5.29) <= 1e-5 and abs(ob.location.x) <= 1e-5 for ob in objs),
          timeout=30, what="Blender holding the Unity person's last pose of every object")
    t0 = time.monotonic()
    for k in range(30):
        for ob in objs:
            ob.location.x = 1.0 + k * 0.01
        bpy.context.view_layer.update()
        vibesync.tick()
        time.sleep(max(0.0, t0 + (k + 1) * frame_s - time.monotonic()))
    converge(host)
    assert vibesync.status()["conflicts"] == []
    world.finish(host, made)  # and quiet: Unity holds what Blender holds
    behind = [(ob.name, tuple(ob.location)) for ob in objs if abs(ob.location.x - 1.29) > 1e-5]
    assert behind == [], f"the Blender person's last pose lost: {behind[:3]}"
    conflicts = [r for r in world.daemon.tail() if (r.get("payload") or {}).get("op") == "conflict"]
    assert conflicts == [], conflicts[:3]


# Random edits: the seeds and the mixes of edit kinds (pose, name, visible; `+` mixes them,
# `,` separates runs) come from the environment for longer runs:
# VIBESYNC_RANDOM_SEEDS=1-40 VIBESYNC_RANDOM_EDITS=pose+name+visible.
RANDOM_SEEDS = os.environ.get("VIBESYNC_RANDOM_SEEDS", "1-3")
RANDOM_EDITS = os.environ.get("VIBESYNC_RANDOM_EDITS", "pose,visible").split(",")


@pytest.mark.window_ms(300)  # the default
@pytest.mark.parametrize("edits", RANDOM_EDITS)
@pytest.mark.parametrize("seed", range(int(RANDOM_SEEDS.split("-")[0]), int(RANDOM_SEEDS.split("-")[-1]) + 1))
def test_random_edits_from_both_sides_end_on_a_persons_last_edit(world, seed, edits):
    """Two people edit objects at random for a second, each in their own editor, often the
    same object in the same window (60 Hz frames, Blender's timer at its default budget).
    Whoever wins each part of each object (§6.2), it ends, in both editors, on the last edit
    one of the two people made of that part: never on a value an editor received and sent
    back (an echo), never on an earlier edit of either person. The suite runs moves alone and
    the eye alone; mixed with each other or with renames (`VIBESYNC_RANDOM_EDITS`), some seeds
    still end with the editors apart (issue notes)."""
    import random
    rng = random.Random(seed)
    names = tuple(f"R{i}" for i in range(8))

    def build():
        for i, n in enumerate(names):
            add_cube(n, location=(i * 3.0, 0, 0), collection=bpy.data.collections["Collection"])

    made, host = world.startup_synced(build=build, also=names)
    objs = {n: bpy.data.objects[n] for n in ("Cube",) + names}
    uuid_of = {n: ob["vibesync_uuid"] for n, ob in objs.items()}
    # (object, part) -> the last value each person gave it; poses in Blender's axes (Unity's
    # (x, y, z) is Blender's (x, z, y)).
    last: dict[str, dict[tuple[str, str], object]] = {"blender": {}, "unity": {}}
    # Every edit, in order (frame, who, value), for the message of a failure.
    history: dict[tuple[str, str], list] = {}

    def value():
        return round(rng.uniform(-9, 9), 2)

    def edit(who: str, n: str, k: int):
        kinds = edits.split("+")
        kind = rng.choices(kinds, [{"pose": 7, "name": 2, "visible": 1}[k] for k in kinds])[0]
        try:
            return made_edit(who, n, k, kind)
        finally:
            history.setdefault((n, kind), []).append((k, who, last[who][(n, kind)]))

    def made_edit(who: str, n: str, k: int, kind: str):
        if kind == "pose":
            x, y, z = value(), value(), value()
            if who == "blender":
                objs[n].location = (x, y, z)
                last[who][(n, kind)] = (x, y, z)
                return None
            last[who][(n, kind)] = (x, z, y)
            return f"move {uuid_of[n]} {x} {y} {z}"
        if kind == "name":
            name = f"{n}-{who}-{k}"
            last[who][(n, kind)] = name
            if who == "blender":
                objs[n].name = name
                return None
            return f"rename {uuid_of[n]} {name}"
        shown = rng.random() < 0.5
        last[who][(n, kind)] = shown
        if who == "blender":
            objs[n].hide_set(not shown)
            return None
        return f"visible {uuid_of[n]} {'true' if shown else 'false'}"

    t0 = time.monotonic()
    for k in range(60):
        if rng.random() < 0.5:
            for n in rng.sample(sorted(objs), rng.randint(1, 4)):
                edit("blender", n, k)
        if rng.random() < 0.5:
            commands = [edit("unity", n, k) for n in rng.sample(sorted(objs), rng.randint(1, 4))]
            host.cmd("together " + " ; ".join(commands))
        bpy.context.view_layer.update()
        vibesync.tick()
        time.sleep(max(0.0, t0 + (k + 1) / 60 - time.monotonic()))
    try:
        converge(host)
    except AssertionError as e:
        apart = {part: edits for part, edits in history.items() if f"({part[0]}" in str(e)}
        raise AssertionError(f"{e}\nthe edits of those objects: {apart}") from None

    def holds(n: str, kind: str):
        ob = objs[n]
        return tuple(ob.location) if kind == "pose" else ob.name if kind == "name" else not ob.hide_get()

    def same(a, b):
        if isinstance(a, tuple):
            return all(abs(p - q) <= 1e-4 for p, q in zip(a, b))
        return a == b
    wrong = {}
    for part in set(last["blender"]) | set(last["unity"]):
        options = [who[part] for who in last.values() if part in who]
        held = holds(*part)
        if not any(same(held, v) for v in options):
            wrong[part] = {"holds": held, "blender's last": last["blender"].get(part),
                           "unity's last": last["unity"].get(part), "edits": history.get(part)}
    assert wrong == {}, f"not on a person's last edit: {wrong}; WAL conflicts: " + str(
        [r.get("payload") for r in world.daemon.tail() if (r.get("payload") or {}).get("op") == "conflict"][:10])
    world.finish(host, made)


def unity_edits_the_cube_before_blender_reads_it(world, command: str):
    """The factory startup scene synced; then `command` (its `{u}` the Cube's uuid) in Unity,
    whose batch (300 ms window) is left in Blender's socket, not read yet."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    host.cmd(command.format(u=u))
    time.sleep(1.0)
    return made, host, cube, u


def blender_conflicts(u: str) -> list:
    """The conflicts Blender shows (its `status()`) for `u`."""
    return [c for c in vibesync.status()["conflicts"] if c.get("uuid") == u]


def wal_conflict_steps(world, u: str) -> list:
    """The WAL's `conflict` STEPs naming `u`."""
    return [r for r in world.daemon.tail() if r.get("phase") == "STEP"
            and (r.get("payload") or {}).get("op") == "conflict" and r.get("uuids") == [u]]


@pytest.mark.window_ms(300)  # the default: both editors' changes land in one window
@pytest.mark.parametrize("first", ["unity", "blender"])
def test_blender_deletes_a_parent_while_unity_moves_its_child(world, first):
    """Blender's person deletes Parent (Blender keeps Kid where it stands, and sends Kid's
    move into "Collection"); at the same moment Unity's person moves Kid under Parent.
    Blender's move of Kid only keeps it where it stood: in one window, in either order,
    Unity's move stands, composed with Parent's pose (Unity leaves a deleted parent's child
    where it stands too), and no conflict is shown — nobody's edit was overwritten
    (PROTOCOL.md §6.1 "Parents the daemon holds no record of", §6.2). Unity's move made after
    Blender's batch committed is a conflict Unity wins. Either way nothing rolls back,
    nothing stays not synced and both editors converge. Before, Unity's move arriving last
    rolled the batch back (it was taken as a pose at the root) and left both editors apart,
    or Blender sent its old pose back over Unity's move; arriving first, Blender's kept pose
    won over it, a conflict. Found by an independent artist tester."""
    def build():
        bpy.ops.object.empty_add(location=(0, 0, 2))
        bpy.context.active_object.name = "Parent"
        bpy.ops.mesh.primitive_cube_add(size=0.5, location=(1, 0, 2))
        bpy.context.active_object.name = "Kid"
        with selected(bpy.data.objects["Parent"], [bpy.data.objects["Kid"], bpy.data.objects["Parent"]]):
            bpy.ops.object.parent_set(type="OBJECT", keep_transform=True)

    made, host = world.startup_synced(build=build, also=("Parent", "Kid"))
    par, kid = bpy.data.objects["Parent"], bpy.data.objects["Kid"]
    up, uk = par["vibesync_uuid"], kid["vibesync_uuid"]
    assert host_view(host)[uk]["parent"] == up
    if first == "unity":
        host.cmd(f"move {uk} 5 6 7")  # local, under Parent (Unity frame)
    with selected(par):
        bpy.ops.object.delete()
    if first == "blender":
        # Blender's delete and its move of Kid leave first; Unity's move follows at once
        # (made before or after Unity applied the delete: both are timings people make).
        drive(lambda: vibesync.status()["in_flight"] > 0, timeout=10, what="Blender's changes sent")
        host.cmd(f"move {uk} 5 6 7")
    del made[up]
    converge(host)
    won = [c for c in vibesync.status()["conflicts"] if c.get("uuid") == uk]
    in_unity = host.find("conflict", pred=lambda e: e.get("uuid") == uk)
    assert bool(won) == (in_unity is not None), f"shown in both editors or neither: {won} {in_unity}"
    view = world.finish(host, made)
    assert view[uk]["parent"] != up and up not in view
    # (Canonical frame: Parent at (0, 2, 0); Unity's (5, 6, 7) is (5, 6, -7) under it.)
    unity_put_it = pytest.approx([5, 8, -7], abs=1e-4)
    where_blender_left_it = pytest.approx([1, 2, 0], abs=1e-4)  # (1, 0, 2) in Blender
    moved_at_the_root = pytest.approx([5, 6, -7], abs=1e-4)  # made after applying the delete
    if first == "unity":
        # Unity's move went first, in the window Blender's changes joined.
        assert view[uk]["t"] == unity_put_it, view[uk]
        assert not won and in_unity is None, f"no edit was overwritten: {won} {in_unity}"
    elif view[uk]["t"] == unity_put_it or view[uk]["t"] == moved_at_the_root:
        assert not won or won[-1]["winner"] == "unity", won
    else:
        assert view[uk]["t"] == where_blender_left_it, view[uk]
        assert won and won[-1]["winner"] == "blender", f"Unity's move lost silently: {won}"
    assert not [r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"], "nothing rolled back"


def test_a_move_made_while_a_batch_of_the_same_object_waits_is_not_overwritten(world):
    """A person in Unity moves the Cube; its batch reaches Blender's socket; then, before
    Blender reads it, the person in Blender moves the Cube too. Blender applied the batch
    over the move it had not sent yet: the Cube jumped to Unity's pose and the person's move
    was never sent — lost, with no conflict anywhere. The batch's op of a part a person
    changed here is not applied; the person's move is sent after it and, the later of the
    two, stands in both editors (PROTOCOL.md §6.4)."""
    made, host, cube, u = unity_edits_the_cube_before_blender_reads_it(world, "move {u} 0 0 4")
    cube.location = (3, 0, 0)
    moved_away = []

    def unity_holds_the_move():
        if abs(cube.location.x - 3) > 1e-5:
            moved_away.append(tuple(cube.location))
        o = host.obj(u)
        return o is not None and abs(o["transform"]["position"][0] - 3) < 1e-5

    drive(unity_holds_the_move, timeout=15, what="the move made in Blender reaching Unity")
    view = world.finish(host, made)
    assert not moved_away, f"the person's move was overwritten in Blender: {moved_away[:3]}"
    assert view[u]["t"] == pytest.approx([3, 0, 0], abs=1e-5)


def test_a_move_made_while_disconnected_survives_reconnect(world):
    """The person moves the Cube while the bridge is disconnected, then presses Reconnect.
    The move stands in Blender and reaches Unity. The Cube's capture waits for its mesh's
    hash on the worker thread for a moment after reconnecting; a replay arriving then was
    applied over the move (about half the runs: found by a tester)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    vibesync.disconnect()
    cube.location = (4, 0, 0)
    bpy.context.view_layer.update()
    world.connect()
    view = world.finish(host, made)
    assert tuple(bpy.data.objects["Cube"].location) == pytest.approx((4, 0, 0)), \
        "the person's move was overwritten in Blender"
    assert view[u]["t"] == pytest.approx([4, 0, 0], abs=1e-5)


def test_hiding_an_object_with_the_eye_and_showing_it_again_reaches_unity(world):
    """The outliner's eye (or H / Alt-H: `hide_set`) on an object. Blender reports only a
    scene update for it, never one of the object, so the hide never reached Unity (found by
    a tester trying what users do)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    cube.hide_set(True)
    host.wait_obj(u, lambda o: o.get("visible") is False, timeout=15, what="hidden in Unity")
    converge(host)
    cube.hide_set(False)
    host.wait_obj(u, lambda o: o.get("visible") is True, timeout=15, what="shown in Unity")
    view = world.finish(host, made)
    assert view[u]["visible"]


def test_blender_shows_again_what_unity_hid(world):
    """A person in Unity hides the Cube (Blender follows); the person in Blender clicks the
    Cube's eye to show it again: Unity shows it too (before, the editors stayed apart)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    host.cmd(f"visible {u} false")
    drive(lambda: bpy.data.objects["Cube"].hide_get(), timeout=15, what="hidden in Blender")
    converge(host)
    bpy.data.objects["Cube"].hide_set(False)
    host.wait_obj(u, lambda o: o.get("visible") is True, timeout=15, what="shown again in Unity")
    view = world.finish(host, made)
    assert view[u]["visible"]


def test_a_move_made_after_seeing_unitys_move_live_is_no_conflict(world):
    """A person in Unity moves the Cube; Blender shows the move at once as a live preview;
    then the person in Blender, who saw it, moves the Cube again — within the same 300 ms
    window. That is one person changing the object after the other, not two at once: the
    Blender move names the preview in `seen` and wins with no conflict in either editor or
    in the WAL (PROTOCOL.md §6.1, §6.2). Before, it was logged as a conflict."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    seen_before = vibesync.status()["live_applied"]
    host.cmd(f"move {u} 0 0 4")
    drive(lambda: vibesync.status()["live_applied"] > seen_before, timeout=15,
          what="Unity's move shown in Blender as a live preview")
    assert not close(list(cube.location), [0.0, 0.0, 0.0]), "the preview moved the Cube"
    cube.location = (3, 0, 0)
    drive(lambda: (o := host.obj(u)) is not None and abs(o["transform"]["position"][0] - 3) < 1e-5
          and not vibesync._session().engine.inflight,
          timeout=15, what="the move made in Blender reaching Unity, and its result Blender")
    # A conflict's STEP is in its batch's transaction, written before the batch goes out:
    # the WAL says now whether there was one; the editors hear of it right after the result.
    assert not wal_conflict_steps(world, u), wal_conflict_steps(world, u)
    drive_for(0.5)
    assert not blender_conflicts(u), vibesync.status()["conflicts"]
    view = world.finish(host, made)
    assert view[u]["t"] == pytest.approx([3, 0, 0], abs=1e-5)
    assert host.count("conflict") == 0, host.find("conflict")
    assert not wal_conflict_steps(world, u)


def test_a_move_sent_while_unitys_rename_of_the_object_waits_commits_both(world):
    """A person in Unity renames the Cube; its batch waits in Blender's socket; the person in
    Blender moves the Cube, and Blender sends the move before it reads the batch. Blender
    answered the rename's batch with the renamed, moved Cube; the daemon expected the rename
    alone, rolled the rename back and then the move too (each editor holding the other's
    edit): two failed propagations, both edits marked not synced, where nobody did anything
    wrong. The editor's own change queued after the batch's window accounts for the
    difference (PROTOCOL.md §6.4): both commit, nothing rolls back."""
    made, host, cube, u = unity_edits_the_cube_before_blender_reads_it(world, "rename {u} Crate")
    rollbacks = sum(r.get("phase") == "ROLLBACK" for r in world.daemon.tail())
    cube.location = (3, 0, 0)
    # A tick that read its socket just before the batch arrived, then captured and sent the
    # move: the pump's steps after `events` (capture, send), without reading.
    bpy.context.view_layer.update()
    session = vibesync._session()
    session._process_dirty(time.perf_counter() + 0.05)
    assert session._flush() > 0, "the move is sent before the batch is read"
    drive(lambda: cube.name == "Crate" and (o := host.obj(u)) is not None
          and abs(o["transform"]["position"][0] - 3) < 1e-5,
          timeout=15, what="both edits in both editors")
    assert not vibesync.status()["not_synced"], vibesync.status()
    assert host.stats()["not_synced"] == 0
    view = world.finish(host, made)
    assert view[u]["name"] == "Crate" and view[u]["t"] == pytest.approx([3, 0, 0], abs=1e-5)
    after = sum(r.get("phase") == "ROLLBACK" for r in world.daemon.tail())
    assert after == rollbacks, "a batch rolled back although both edits applied everywhere"


def test_a_move_of_an_object_unity_deleted_meanwhile_is_a_conflict_the_delete_won(world):
    """A person in Unity deletes the Cube; before Blender reads that batch, the person in
    Blender moves the Cube. The delete is applied (an object's existence is not spared), and
    the move vanished with the Cube: nobody heard of it, in either editor or the WAL. Blender
    now still sends the move, from the base it had before the batch; the daemon refuses it
    STALE (the Cube was deleted by another editor after that base), a conflict the delete
    won: a WAL STEP, shown in both editors (PROTOCOL.md §6.1, §6.2)."""
    made, host, cube, u = unity_edits_the_cube_before_blender_reads_it(world, "delete {u}")
    cube.location = (3, 0, 0)
    drive(lambda: "Cube" not in bpy.data.objects and blender_conflicts(u), timeout=15,
          what="the delete applied and the conflict shown in Blender")
    c = blender_conflicts(u)[0]
    assert (c["winner"], c["loser"], c["op"]) == ("unity", "blender", "transform"), c
    ev = host.wait("conflict", pred=lambda e: e.get("uuid") == u, timeout=15,
                   what="the conflict shown in Unity")
    assert (ev["winner"], ev["loser"]) == ("unity", "blender"), ev
    assert host.obj(u) is None, "the delete stands in Unity"
    made = {k: v for k, v in made.items() if k != u}
    view = world.finish(host, made)
    assert u not in view, "the delete stands"
    steps = wal_conflict_steps(world, u)
    assert len(steps) == 1, steps


def test_an_agents_delete_of_the_cube_a_person_is_moving_is_undone_everywhere(world):
    """An agent deletes the Cube; Unity applies that, and before Blender reads it, the person
    in Blender moves the Cube. The delete was applied over the move (an object's existence
    was not spared): the person's Cube vanished from under their hands, by automation. Blender
    now does not apply automation's delete of an object a person there is editing: it answers
    with the Cube as it holds it, the batch rolls back, and the agent's delete is undone
    everywhere (Unity gets the Cube back); the person's move then stands in both editors
    (PROTOCOL.md §6.3, §6.4)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    agent = Client(world.daemon, world.project_id, editor="agent")
    try:
        base = agent.status()["seq"]
        ack = agent.request({"type": "change", "base_seq": base,
                             "changes": [{"op": "delete", "uuid": u}]})
        assert ack["results"][0]["status"] == "queued", ack
        # The batch (300 ms window) reaches both editors; Blender has not read its socket
        # (nothing ticks it here; reading the host's scene would).
        time.sleep(1.0)
        cube.location = (3, 0, 0)  # the person's move, made before Blender read the batch
        drive(lambda: (o := host.obj(u)) is not None
              and abs(o["transform"]["position"][0] - 3) < 1e-5,
              timeout=20, what="the Cube back in Unity, with the person's move")
    finally:
        agent.close()
    assert "Cube" in bpy.data.objects and tuple(cube.location) == pytest.approx((3, 0, 0)), \
        "the person's Cube and move stay in Blender"
    rollbacks = [r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"
                 and u in (r.get("uuids") or [])]
    assert rollbacks, "the agent's delete rolled back"
    assert not vibesync.status()["not_synced"], vibesync.status()
    view = world.finish(host, made)
    assert view[u]["t"] == pytest.approx([3, 0, 0], abs=1e-5), view[u]


@pytest.mark.parametrize("delay", [0.02, 0.1, 0.25])
def test_a_person_deletes_the_cube_while_unitys_move_of_it_is_on_its_way(world, delay):
    """A person in Unity moves the Cube; `delay` s later the person in Blender deletes it,
    before Blender read the move: the move is still in the daemon's window (0.02 s) or its
    batch is on its way to Blender (0.1, 0.25 s). Blender answered that batch without the
    Cube before it sent its delete: the move rolled back as a failed propagation, Unity
    marked the Cube "not synced" although it was gone, and no conflict was recorded. The
    delete now goes first; it is the later writer and wins — a conflict, in the WAL and
    shown in both editors, and nothing rolls back (PROTOCOL.md §6.2, §6.4)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    host.cmd(f"move {u} 0 0 4")
    time.sleep(delay)
    bpy.data.objects.remove(cube)

    drive(lambda: blender_conflicts(u) and host.obj(u) is None, timeout=15,
          what="the conflict shown in Blender and the Cube gone in Unity")
    c = blender_conflicts(u)[0]
    assert (c["winner"], c["loser"], c["op"]) == ("blender", "unity", "transform"), c
    host.wait("conflict", pred=lambda e: e.get("uuid") == u, timeout=15, what="the conflict in Unity")
    stats = host.stats()
    assert (stats["rolled_back"], stats["not_synced"]) == (0, 0), stats
    assert not vibesync.status()["not_synced"]
    made = {k: v for k, v in made.items() if k != u}
    view = world.finish(host, made)
    assert u not in view
    assert not [r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"], "nothing rolls back"
    assert len(wal_conflict_steps(world, u)) == 1


def test_a_cube_added_and_deleted_again_at_once_stays_deleted(world):
    """A person adds a cube and deletes it (or undoes the add) a moment later: Blender sent
    the cube's `create`, which waited in the daemon's window, then its delete. At batch time
    the waiting `create` brought the cube back: Unity showed it, and the daemon held it as
    live — a replay would have put it back into Blender. The editor's own delete supersedes
    its waiting changes (PROTOCOL.md §6.2)."""
    made, host = world.startup_synced()
    bpy.ops.mesh.primitive_cube_add(location=(4, 0, 0))
    added = bpy.context.active_object
    s = vibesync._session()
    drive(lambda: s.engine.inflight, timeout=10, what="the new cube's create sent")
    u = added["vibesync_uuid"]
    bpy.data.objects.remove(added)  # before the create's window (300 ms) closed
    view = world.finish(host, made)
    assert u not in view
    wal = world.daemon.tail()
    gone = [r["seq"] for r in wal if r.get("phase") == "COMMIT"
            and (r.get("payload") or {}).get("op") == "tombstone" and u in r.get("uuids", ())]
    assert gone, "the delete was committed"
    later = [r for r in wal if r["seq"] > gone[-1] and r.get("phase") == "STEP"
             and (r.get("payload") or {}).get("op") in ("state", "register") and r.get("uuids") == [u]]
    assert not later, f"the deleted cube was brought back: {later}"


def test_rename_and_delete_during_a_batch(world):
    made, host = world.startup_synced()
    cam, light = bpy.data.objects["Camera"], bpy.data.objects["Light"]
    cu, lu = cam["vibesync_uuid"], light["vibesync_uuid"]
    host.cmd(f"move {cu} 1 2 3")
    host.cmd(f"move {lu} 4 5 6")
    drive_for(0)  # nothing applied yet
    import time
    time.sleep(0.5)  # the batch reaches Blender's inbox, not applied yet
    cam.name = "Camera Renamed"
    bpy.data.objects.remove(light)
    made = {u: n for u, n in made.items() if u != lu}
    view = world.finish(host, made)
    assert lu not in view, "the person's delete wins"
    assert view[cu]["name"] == "Camera Renamed"


# ------------------------------------------------------------------ crashes and files

@pytest.mark.window_ms(50)
def test_kill_9_of_the_daemon_mid_first_sync_then_restart(world):
    def build():
        for i in range(300):
            add_cube(f"Box{i:03d}", (i % 20, i // 20, 0), bpy.data.collections["Collection"])

    host = world.host()
    world.blender(build=build, connect=False)
    with host.lock:
        before = len(host.events)
    world.connect()
    # Blender ticks with a 1 ms budget until some of its changes are in flight (a slice of
    # the scene), then the test waits, without ticking, until Unity has applied them: the
    # daemon is killed with that part synced and the rest not yet sent. (Polling Blender's
    # progress instead raced the sync: a fast machine finished it between two counts; so
    # did waiting for 20 in flight, when every tick's slice was acknowledged by the next.)
    drive(lambda: vibesync.status()["in_flight"] > 0, budget_ms=1.0,
          what="Blender's first changes of the first sync in flight")
    deadline = time.monotonic() + 30
    while host.find("applied", before) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"Unity applied none of Blender's first changes in 30 s; "
                                 f"blender: {vibesync.status()}")
        time.sleep(0.01)
    time.sleep(0.2)  # anything else the daemon sends on by now reaches Unity before the kill
    made = uuids_of(STARTUP + tuple(f"Box{i:03d}" for i in range(300)))
    with host.lock:
        applied = {u for e in host.events[before:] if e.get("event") == "applied"
                   for u in e["hashes"]}
    boxes = [u for u, n in made.items() if n.startswith("Box")]
    assert applied and any(u not in applied for u in boxes), \
        f"killed mid-sync: Unity holds {sum(u in applied for u in boxes)} of the 300 boxes"
    port = world.daemon.port
    world.daemon.kill()
    drive_for(0.3)
    world.daemon.start(port=port)
    drive(lambda: vibesync.status()["connected"], timeout=60, what="Blender reconnects")
    world.finish(host, made)


@pytest.mark.parametrize("unity_edit", ["rename", "material"])
def test_both_people_edit_one_object_while_the_daemon_is_down(world, unity_edit):
    """The daemon stops; the person in Blender moves the Cube, the person in Unity renames
    (or recolours) it; the daemon starts again and both reconnect. Blender re-sent the Cube
    in full: before the replay, from its old base_seq, so it was refused STALE and the
    resync undid the move; or after a replay that kept it whole, so its old name overwrote
    the rename. Blender now waits for the replay, applies its parts the person did not
    change, and sends only the move (PROTOCOL.md §6.6): both edits stand in both editors."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    port = world.daemon.port
    world.daemon.kill()
    drive(lambda: not vibesync.status()["connected"], timeout=15, what="Blender disconnected")
    cube.location = (3, 0, 0)
    if unity_edit == "rename":
        host.cmd(f"rename {u} Renamed In Unity")
    else:
        host.cmd(f"material {u} 1 0 0 1 0 0.5")
    drive_for(0.5)
    world.daemon.start(port=port)
    drive(lambda: vibesync.status()["connected"], timeout=30, what="Blender reconnected")
    if unity_edit == "material":
        drive(lambda: tuple(cube.active_material.diffuse_color)[:3] == pytest.approx((1, 0, 0)),
              timeout=20, what="Unity's colour in Blender")
    view = world.finish(host, made)
    assert view[u]["t"] == pytest.approx([3, 0, 0], abs=1e-5), "Blender's move stands"
    if unity_edit == "rename":
        assert view[u]["name"] == "Renamed In Unity", "Unity's rename stands"
    else:
        assert tuple(cube.active_material.diffuse_color)[:3] == pytest.approx((1, 0, 0)), \
            "Unity's colour stands"


def test_safe_mode_shows_one_reason_in_both_editors_and_keeps_each_persons_edit(world):
    """The daemon crashes three times in a row while both editors are connected, so it
    starts in safe mode (PROTOCOL.md §6.7). Both editors say so, with the same reason (Blender
    said nothing, the host "daemon started in safe mode"): `welcome` now carries it. Each
    person's edit made meanwhile stays in its editor (held, not sent: its status line says
    safe mode and why) and reaches the other editor once a person clears safe mode."""
    import subprocess

    from vibesync import statusview
    made, host = world.startup_synced()
    port = world.daemon.port
    camera = bpy.data.objects["Camera"]
    for i in range(3):
        world.daemon.kill()
        if i == 2:
            # An edit made while the daemon is down is held the same way.
            drive(lambda: not vibesync.status()["connected"], timeout=15, what="Blender disconnected")
            camera.location = (0, -9, 2)
            drive_for(0.3)
        world.daemon.start(port=port)
    reason = "3 unclean boots in a row (threshold 3)"
    drive(lambda: vibesync.status()["connected"] and vibesync.status()["safe_mode"], timeout=40,
          what="Blender reconnected, in safe mode")
    assert vibesync.status()["safe_mode_reason"] == reason
    drive(lambda: host.stats().get("safe_mode_reason") == reason, timeout=40,
          what="the host reconnected, showing why safe mode is on")
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    light = next(k for k, v in host_view(host).items() if v["name"] == "Directional Light")
    cube.location = (4, 0, 0)
    host.cmd(f"rename {light} Sun In Safe Mode")
    # Read-only: each editor holds its person's edit (its status line says safe mode, and
    # why) and sends nothing until safe mode ends.
    drive_for(1.5)
    assert tuple(cube.location) == pytest.approx((4, 0, 0)), "the person's move stays"
    assert host_view(host)[light]["name"] == "Sun In Safe Mode", "the person's rename stays"
    assert host_view(host)[u]["t"] != pytest.approx([4, 0, 0], abs=1e-5), "read-only: not synced"
    assert "Sun In Safe Mode" not in bpy.data.objects, "read-only: not synced"
    shown = [ln.text for ln in statusview.lines(vibesync.status()) if ln.key == "safe_mode"]
    assert shown and reason in shown[0], f"Blender's panel says why: {shown}"
    # Each held edit is shown not synced, with why (PROTOCOL.md §6.7), in both editors.
    drive(lambda: len(vibesync.status()["not_synced"]) >= 2, timeout=15,
          what="both held edits marked in Blender")
    assert {n["uuid"]: n["reason"] for n in vibesync.status()["not_synced"]} == \
        {u: f"SAFE_MODE: {reason}", camera["vibesync_uuid"]: f"SAFE_MODE: {reason}"}, \
        vibesync.status()["not_synced"]
    assert host.stats()["not_synced"] == 1, "the host marks its held rename"

    # `vibesync status` lists them too, in the editor that holds each (`editor_state.held`).
    def daemon_lists():
        out = subprocess.run([world.daemon.binary, "status", "--json", "--data-dir", world.daemon.data_dir],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        return {(n["uuid"], n["client"]): n["reason"]
                for p in json.loads(out.stdout)["projects"].values() for n in p["not_synced"]}

    held = {(u, "blender"), (camera["vibesync_uuid"], "blender"), (light, "unity")}
    drive(lambda: set(daemon_lists()) == held, timeout=15,
          what="`vibesync status` listing the three held edits")
    assert all(r.startswith("SAFE_MODE: held in the editor") and reason in r
               for r in daemon_lists().values()), daemon_lists()
    out = subprocess.run([world.daemon.binary, "safe-mode", "clear", "--data-dir", world.daemon.data_dir],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    drive(lambda: not vibesync.status()["safe_mode"], timeout=20, what="Blender out of safe mode")
    drive(lambda: not host.stats().get("safe_mode"), timeout=20, what="the host out of safe mode")
    drive(lambda: not vibesync.status()["not_synced"] and host.stats()["not_synced"] == 0,
          timeout=30, what="the held edits sent and committed: their marks cleared")
    assert daemon_lists() == {}, "nothing held or kept once they went"
    host_made = world.host_made()
    host_made[light] = "Sun In Safe Mode"
    view = world.finish(host, made, host_made)
    assert view[u]["t"] == pytest.approx([4, 0, 0], abs=1e-5), "Blender's move reached Unity"
    assert view[camera["vibesync_uuid"]]["t"] == pytest.approx([0, 2, 9], abs=1e-5), \
        "the move made while the daemon was down reached Unity"
    assert view[light]["name"] == "Sun In Safe Mode", "Unity's rename reached Blender"


def test_a_delete_made_while_the_daemon_is_down_then_saved_and_reopened_reaches_unity(world, tmp_path):
    """The daemon is down; the person in Blender deletes the Camera, saves, and reopens the
    file. The file's base no longer names the Camera and the delete was never sent: the
    reopened file forgot it, and Unity kept the Camera for good. The file now keeps its
    deletes the daemon did not acknowledge, and they go once connected (PROTOCOL.md §6.6,
    "Reopening a file"). Found by an independent artist tester."""
    made, host = world.startup_synced()
    cam = bpy.data.objects["Camera"]["vibesync_uuid"]
    path = str(tmp_path / "scene" / "scene.blend")
    os.makedirs(os.path.dirname(path))
    bpy.ops.wm.save_as_mainfile(filepath=path)
    port = world.daemon.port
    world.daemon.kill()
    drive(lambda: not vibesync.status()["connected"], timeout=15, what="Blender disconnected")
    with selected(bpy.data.objects["Camera"]):
        bpy.ops.object.delete()
    drive_for(0.3)
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=path)
    drive_for(0.5)
    world.daemon.start(port=port)
    drive(lambda: vibesync.status()["connected"], timeout=40, what="Blender reconnected")
    drive(lambda: cam not in host_view(host), timeout=30, what="the Camera deleted in Unity")
    del made[cam]
    view = world.finish(host, made)
    assert cam not in view


def test_save_and_reopen_while_connected(world, tmp_path):
    world.blender()
    made = uuids_of(STARTUP)
    host = world.host()
    before = converge(host)
    path = str(tmp_path / "scene" / "scene.blend")
    os.makedirs(os.path.dirname(path))
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.data.objects["Cube"].location = (0, 0, 2)
    drive_for(0.5)
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=path)
    drive(lambda: vibesync.status()["connected"], timeout=20, what="reconnected after reopen")
    view = world.finish(host, made)
    assert set(view) == set(before), "nothing duplicated or lost by the reopen"
    cube = next(u for u, n in made.items() if n == "Cube")
    assert abs(view[cube]["t"][1] - 2) < 1e-4, "the saved move (canonical y) is kept"


def test_file_switch_starts_from_each_files_own_position(world, tmp_path):
    """Zero-config: the files carry the project the daemon paired them with and their own
    replay position (needs the daemon's pairing, PROTOCOL §3)."""
    require_pairing(world.daemon)
    host = world.host()
    world.blender(project_id=None)
    made = uuids_of(STARTUP)
    converge(host)
    a = str(tmp_path / "a" / "a.blend")
    os.makedirs(os.path.dirname(a))
    bpy.ops.wm.save_as_mainfile(filepath=a)
    # While file A is closed, Unity adds an object.
    bpy.ops.wm.read_homefile(use_empty=True)
    drive(lambda: vibesync.status()["connected"], timeout=20, what="connected with a new file")
    converge(host)  # the new file receives the project's objects
    i = host.cmd("create auto AddedWhileAway")
    added = host.wait("created", i)["uuid"]
    drive(lambda: bpy.data.objects.get("AddedWhileAway"), what="added in the new file")
    bpy.ops.wm.open_mainfile(filepath=a)
    drive(lambda: vibesync.status()["connected"], timeout=20, what="connected with file A")
    drive(lambda: bpy.data.objects.get("AddedWhileAway"), timeout=20,
          what="file A catches up from its own seq")
    world.finish(host, made, dict(world.host_made(), **{added: "AddedWhileAway"}))


def test_another_editors_full_state_over_a_kept_cube_is_undone_when_unity_refuses_it(world):
    """PROTOCOL §6.4, real Blender and the headless Unity host. The person adds a cube in
    Blender; Unity cannot apply it as sent (its answer's hash is wrong, `corrupt-next-hash`),
    so the batch rolls back and Blender keeps the cube, not synced. Another editor (a `test`
    client) then sends its own full state of that object: another name and place. Blender
    applies it whole (nothing of the cube was ever committed); Unity refuses that batch too,
    and it rolls back. Blender puts back the person's name and place (the rollback's
    correction, a `delete` of a uuid never committed, cannot), and the cube goes again as the
    person left it: both editors end on the person's cube, never the other editor's. The
    daemon rolls that batch back at Unity's wrong answer, often before Blender has applied it:
    the result that came first is read once the batch is applied (it was dropped, and the
    other editor's cube went out as the person's and committed in both editors)."""
    from vibesync import capture, wire
    made, host = world.startup_synced()
    i = host.cmd("corrupt-next-hash")
    host.wait("corrupt_armed", i)
    ob = add_cube("PersonsCube", location=(1.0, 2.0, 3.0))
    u = drive(lambda: ob.get("vibesync_uuid"), what="a uuid for the person's cube")
    session = vibesync._session()
    drive(lambda: u in session.engine.not_synced and not session.engine.pending, timeout=20,
          what="the person's cube kept in Blender, not synced (Unity refused it)")
    i = host.cmd("corrupt-next-hash")
    host.wait("corrupt_armed", i)
    rollbacks = len([r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"])
    applied = session.applied_batches
    other = Client(world.daemon, world.project_id, editor="test")
    try:
        reply = other.request({"type": "change", "base_seq": other.welcome.get("last_seq", 0),
                               "changes": [{
                                   "op": "create", "uuid": u, "kind": "object",
                                   "name": "TheirCube", "parent": None, "visible": True,
                                   "t": [7.0, 0.0, 0.0], "r": [0.0, 0.0, 0.0, 1.0],
                                   "s": [1.0, 1.0, 1.0],
                                   "mesh_hash": wire.mesh_hash(capture.mesh_attachment(ob.data, 1.0))}]})
        assert reply["type"] == "ack", reply
        drive(lambda: len([r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"])
              > rollbacks, timeout=20, what="Unity refused it: the batch rolled back")
        drive(lambda: ob.name == "PersonsCube" and close(ob.location, (1.0, 2.0, 3.0)),
              timeout=15, what="the person's name and place in Blender after the rollback")
        assert session.applied_batches > applied, "Blender never applied the other's batch"
    finally:
        other.close()
    converge(host)
    hv = host_view(host)
    assert hv[u]["name"] == "PersonsCube", hv[u]
    assert close(hv[u]["t"], (1.0, 3.0, -2.0)), hv[u]  # the person's place, canonical axes
    world.finish(host, dict(made, **{u: "PersonsCube"}))
    assert ob.name == "PersonsCube" and close(ob.location, (1.0, 2.0, 3.0)), tuple(ob.location)


def test_another_editors_full_state_over_a_kept_unity_object_is_undone_when_it_times_out(world):
    """PROTOCOL §6.4, the same from Unity's side, with the real daemon and the headless host.
    A second Unity session that takes every batch and never answers stands in for a slow
    editor. The person makes an object in Unity; its batch times out (`VERIFY_TIMEOUT`) and
    Unity keeps it, not synced (Blender, which had applied it, is corrected: it is gone there).
    Another editor (a `test` client) sends its full state of that object; Unity applies it
    whole, that batch times out too, and Unity puts back the person's name and place. Once the
    slow editor has gone, Unity's own retry sends the person's object, and both editors hold
    it as the person made it."""
    import uuid as uuid_mod
    made, host = world.startup_synced()
    slow = Client(world.daemon, world.project_id, editor="unity")
    try:
        u = str(uuid_mod.uuid4())
        host.cmd(f"together create {u} UnitysCube ; move {u} 1 2 3")
        host.wait("batch_result", pred=lambda e: e.get("outcome") == "rolled_back" and u in e.get("uuids", ()),
                  timeout=20, what="the person's object rolled back (the slow editor never answered)")
        host.wait_obj(u, what="Unity keeps the person's object")
        drive(lambda: host.stats()["not_synced"] == 1, timeout=10, what="marked not synced in Unity")
        drive(lambda: not bpy.data.objects.get("UnitysCube"), timeout=10,
              what="Blender corrected: the object was never committed")
        with host.lock:
            since = len(host.events)
        other = Client(world.daemon, world.project_id, editor="test")
        try:
            reply = other.request({"type": "change", "base_seq": other.welcome.get("last_seq", 0),
                                   "changes": [{
                                       "op": "create", "uuid": u, "kind": "object",
                                       "name": "TheirObject", "parent": None, "visible": True,
                                       "t": [7.0, 0.0, 0.0], "r": [0.0, 0.0, 0.0, 1.0],
                                       "s": [1.0, 1.0, 1.0]}]})
            assert reply["type"] == "ack", reply
            host.wait("applied", since, lambda e: u in (e.get("hashes") or {}), timeout=10,
                      what="Unity applied the other editor's full state")
            host.wait("overtaken_undone", since, lambda e: e.get("uuid") == u, timeout=20,
                      what="Unity put the person's object back after that batch timed out")
        finally:
            other.close()
        o = host.obj(u)
        assert o["name"] == "UnitysCube", o
        assert close(o["transform"]["position"], (1.0, 2.0, 3.0)), o
    finally:
        slow.close()
    drive(lambda: bpy.data.objects.get("UnitysCube"), timeout=30,
          what="the person's object in Blender once Unity sent it again")
    ob = bpy.data.objects["UnitysCube"]
    assert close(ob.location, (1.0, 3.0, 2.0)), tuple(ob.location)  # Blender's (x, z, y)
    world.finish(host, made, dict(world.host_made(), **{u: "UnitysCube"}))


def test_a_file_opened_while_a_batch_is_applied_gets_it(world, tmp_path):
    """The person opens a file while Blender is applying a batch of Unity's over several
    ticks: the old file's connection leaves the batch unanswered, the
    objects the person made in Unity stay there, kept and marked not synced, and are re-sent
    to the newly opened file — at once if its connection joined before the rollback's
    result, else when it joins (PROTOCOL §6.4). Blender said it was closing that connection
    (`editor_state` `closing`), so the rollback is `PARTICIPANT_LEFT`, no evidence against
    the objects: the same create goes again (PROTOCOL §6.7, §6.8); as `PARTICIPANT_LOST` it
    was refused `BLOCKED` and never arrived."""
    made, host = world.startup_synced()
    a = str(tmp_path / "a" / "a.blend")
    os.makedirs(os.path.dirname(a))
    bpy.ops.wm.save_as_mainfile(filepath=a)
    names = [f"FromUnity{i:03d}" for i in range(250)]
    with host.lock:
        since = len(host.events)
    host.cmd("together " + " ; ".join(f"create auto {n}" for n in names))
    drive(lambda: host.count("created", since) == len(names), what="Unity made the objects")
    with host.lock:
        created = {e["uuid"]: e["name"] for e in host.events[since:] if e.get("event") == "created"}
    # A batch of 250 new objects is applied over several ticks (its link step has a tick of
    # its own, ARCHITECTURE "Main-thread budget"): stop between two of them.
    session = vibesync._session()
    drive(lambda: session.apply_job is not None, budget_ms=8.0,
          what="Blender applying Unity's batch")
    assert not all(bpy.data.objects.get(n) and bpy.data.objects[n].users_collection
                   for n in names), "the batch was applied in one tick"
    bpy.ops.wm.open_mainfile(filepath=a)
    drive(lambda: vibesync.status()["connected"], timeout=20, what="connected with file A")
    drive(lambda: all(bpy.data.objects.get(n) for n in names), timeout=30,
          what="Unity's objects in the newly opened file")
    world.finish(host, made, dict(world.host_made(), **created))


def test_crash_before_the_first_save(world):
    made, host = world.startup_synced()
    bpy.data.objects["Cube"].location = (2, 2, 0)
    converge(host)
    count = len(host_view(host))
    # Crash: the never-saved file (and its uuids) is gone; Blender starts again.
    vibesync.disconnect()
    world.blender()
    drive(lambda: vibesync.status()["adopted"] >= 4, timeout=20,
          what="the startup datablocks take back their uuids")
    view = world.finish(host, made)
    assert len(view) == count, "no duplicates"
    assert {o["vibesync_uuid"] for o in bpy.data.objects} <= set(view)
    cube = next(u for u, n in made.items() if n == "Cube")
    assert abs(view[cube]["t"][0] - 2) < 1e-4, "the synced pose came back"


def test_unity_crash_before_the_scene_was_saved(world):
    """Unity's scene was never saved since its objects were synced (they carry no uuid in
    it). Unity crashes (kill -9) and reopens that scene: its objects get fresh uuids, then
    take back the ones the daemon knows from the first replay (PROTOCOL §6.6), and what was
    made after the save comes back from the daemon. No duplicates in either editor."""
    world.blender()
    made = uuids_of(STARTUP)
    host = world.host(scene=UNSAVED_UNITY_SCENE)
    converge(host)
    i = host.cmd("create auto AddedInUnity")
    host.wait("created", i)
    drive(lambda: bpy.data.objects.get("AddedInUnity"), what="Unity's new object in Blender")
    before = converge(host)
    unity_made = {u: v["name"] for u, v in host_view(host).items()
                  if v["name"] in ("Main Camera", "Directional Light", "AddedInUnity")}
    assert len(unity_made) == 3
    host.proc.kill()  # SIGKILL: nothing saved, nothing said to the daemon
    host.proc.wait(timeout=10)
    drive(lambda: not [p for p in vibesync.status()["peers"] if p.get("client") == "unity"],
          timeout=20, what="the daemon saw Unity go")
    again = world.host(scene=UNSAVED_UNITY_SCENE)  # restarted from its last saved state
    again.wait("adopted", pred=lambda e: True, timeout=30, what="a fresh object adopted")
    view = world.finish(again, made, unity_made)
    assert set(view) == set(before), "nothing duplicated or lost by the crash"
    names = sorted(v["name"] for v in view.values())
    assert len(names) == len(set(names)) == 7, names
    assert {o.name for o in bpy.data.objects} == {"Cube", "Camera", "Light", "Main Camera",
                                                   "Directional Light", "AddedInUnity"}


def test_zero_config_pairing(world):
    """No project id anywhere: Blender (unsaved file) and Unity land in one project
    (PROTOCOL §3 pairing)."""
    require_pairing(world.daemon)
    host = world.host(project_id=None)
    world.blender(project_id=None)
    made = uuids_of(STARTUP)
    st = vibesync.status()
    assert st["project_id"], st
    world.project_id = st["project_id"]
    drive(lambda: [p for p in vibesync.status()["peers"] if p.get("client") == "unity"],
          timeout=20, what="Unity listed as a peer")
    world.finish(host, made)



# ------------------------------------------------------------------ everyday edits after connect

def test_move_an_object_to_a_new_collection(world):
    made, host = world.startup_synced()
    props = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(props)
    cube = bpy.data.objects["Cube"]
    props.objects.link(cube)
    bpy.data.collections["Collection"].objects.unlink(cube)
    made.update(uuids_of(["Props"]))
    view = world.finish(host, made)
    assert view[cube["vibesync_uuid"]]["parent"] == props["vibesync_uuid"]


def test_deleting_a_collection_keeps_its_objects_in_both_editors(world):
    """The Outliner's Delete of "Collection": its objects move to the scene collection. Unity
    got the collection's `delete` before Blender's reparents and destroyed its children with
    it, then sent their deletes back: the person's Cube, Camera and Light were deleted in
    Blender (PROTOCOL.md §6.1: a received `delete` removes that one object)."""
    made, host = world.startup_synced()
    coll = bpy.data.collections["Collection"]
    cu = coll["vibesync_uuid"]
    for ob in list(coll.objects):
        bpy.context.scene.collection.objects.link(ob)
    bpy.data.collections.remove(coll)
    made.pop(cu)
    view = world.finish(host, made)
    assert cu not in view
    assert all(view[u]["parent"] is None for u in made)


def test_parent_set_keep_transform_then_clear(world):
    made, host = world.startup_synced()
    cube, cam = bpy.data.objects["Cube"], bpy.data.objects["Camera"]
    cube.location, cube.rotation_euler, cube.scale = (1, 2, 3), (0.3, 0.2, 0.1), (2, 2, 2)
    with selected(cube, [cam, cube]):
        bpy.ops.object.parent_set(type="OBJECT", keep_transform=True)
    view = converge(host)
    assert view[cam["vibesync_uuid"]]["parent"] == cube["vibesync_uuid"]
    cube.location = (3, 2, 1)
    drive_for(0.2)
    with selected(cam):
        bpy.ops.object.parent_clear(type="CLEAR_KEEP_TRANSFORM")
    view = world.finish(host, made)
    assert view[cam["vibesync_uuid"]]["parent"] == bpy.data.collections["Collection"]["vibesync_uuid"]


def test_undo_of_a_delete_brings_the_object_back_in_both_editors(world):
    made, host = world.startup_synced()
    bpy.ops.ed.undo_push(message="before the delete")
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    with selected(cube):
        bpy.ops.object.delete()
    bpy.ops.ed.undo_push(message="delete")
    drive(lambda: host.obj(u) is None, timeout=15, what="the Cube gone in Unity")
    bpy.ops.ed.undo()
    view = world.finish(host, made)
    assert u in view and view[u]["name"] == "Cube"


def test_join_two_meshes(world):
    made, host = world.startup_synced()
    bpy.ops.mesh.primitive_uv_sphere_add(location=(3, 0, 0))
    sphere = bpy.context.active_object
    su = drive(lambda: sphere.get("vibesync_uuid"), what="the sphere's uuid")
    converge(host)
    cube = bpy.data.objects["Cube"]
    with selected(cube, [cube, sphere]):
        bpy.ops.object.join()
    view = world.finish(host, made)
    assert su not in view, "the joined sphere is deleted everywhere"
    assert view[cube["vibesync_uuid"]]["vertices"] > 8


def test_unity_reparents_then_deletes_a_hierarchy(world):
    """A person in Unity parents the Light under the Cube, then deletes the Cube: Unity
    destroys the hierarchy and sends both deletes; Blender follows (a person's edit there)."""
    made, host = world.startup_synced()
    cu = bpy.data.objects["Cube"]["vibesync_uuid"]
    lu = bpy.data.objects["Light"]["vibesync_uuid"]
    host.cmd(f"parent {lu} {cu}")
    drive(lambda: bpy.data.objects["Light"].parent is not None, timeout=15,
          what="the Light under the Cube in Blender")
    view = converge(host)
    assert view[lu]["parent"] == cu
    host.cmd(f"delete {cu}")
    made.pop(cu)
    made.pop(lu)
    view = world.finish(host, made)
    assert cu not in view and lu not in view


def test_deleting_a_parent_object_keeps_its_children_in_both_editors(world):
    """Blender keeps the children of a deleted object (PROTOCOL.md §6.1) where they stand;
    Unity, which gets the parent's `delete` before their reparents, must not take them along,
    and shows them where Blender does. (Blender leaves a deleted parent's children their
    parent inverse, which it no longer applies: read as if it did, their poses were sent
    displaced — both views agreed on the wrong pose, or, when Unity applied the delete first,
    the reparents failed verification and stayed not synced.)"""
    made, host = world.startup_synced()
    cube, cam, light = (bpy.data.objects[n] for n in ("Cube", "Camera", "Light"))
    cube.location, cube.rotation_euler, cube.scale = (1, 2, 3), (0.3, 0.2, 0.1), (2, 2, 2)
    for child in (cam, light):
        with selected(cube, [child, cube]):
            bpy.ops.object.parent_set(type="OBJECT", keep_transform=True)
    view = converge(host)
    assert view[cam["vibesync_uuid"]]["parent"] == cube["vibesync_uuid"]
    cu = cube["vibesync_uuid"]
    with selected(cube):
        bpy.ops.object.delete()
    made.pop(cu)
    view = world.finish(host, made)
    assert cu not in view
    home = bpy.data.collections["Collection"]["vibesync_uuid"]
    assert view[cam["vibesync_uuid"]]["parent"] == home and view[light["vibesync_uuid"]]["parent"] == home
    from vibesync import wire
    for ob in (cam, light):  # where Blender shows them (a collection is the identity pose)
        loc, rot, _ = ob.matrix_world.decompose()
        t, r, _ = wire.blender_to_wire(tuple(loc), (rot.x, rot.y, rot.z, rot.w), (1, 1, 1))
        assert view[ob["vibesync_uuid"]]["t"] == pytest.approx(t, abs=1e-4), ob.name
        assert view[ob["vibesync_uuid"]]["r"] == pytest.approx(r, abs=1e-4) or \
            view[ob["vibesync_uuid"]]["r"] == pytest.approx([-c for c in r], abs=1e-4), ob.name


def in_edit_mode_while_unity_moves_the_cube(world):
    """The factory startup scene synced; the Cube in Edit Mode in Blender; a person in Unity
    moves it by (0, 0, 4), and Blender holds that batch: (made, host, cube, its uuid)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    bpy.context.view_layer.objects.active = cube
    with selected(cube):
        bpy.ops.object.mode_set(mode="EDIT")
    host.cmd(f"move {u} 0 0 4")
    drive(lambda: vibesync.status().get("deferred_batches"), timeout=15,
          what="the move's batch held while the Cube is in Edit Mode")
    return made, host, cube, u


def test_a_visit_to_edit_mode_does_not_undo_a_move_made_in_unity(world):
    """The person in Blender enters and leaves Edit Mode on the Cube (no edit) while a person
    in Unity moves it. Blender holds the batch while in Edit Mode, then asks for a resync;
    the visit marked the Cube as edited, so the replay kept Blender's state and sent it in
    full: the move was undone in Unity, where the person made it (PROTOCOL.md §6.6)."""
    made, host, cube, u = in_edit_mode_while_unity_moves_the_cube(world)
    assert abs(cube.location.x) < 1e-6, "nothing is applied in Edit Mode"
    with selected(cube):
        bpy.ops.object.mode_set(mode="OBJECT")
    view = world.finish(host, made)
    assert view[u]["t"] == pytest.approx([0, 0, -4], abs=1e-5), "the move made in Unity stands"


def test_modelling_in_edit_mode_while_unity_moves_the_object_keeps_both(world):
    """The person in Blender models the Cube in Edit Mode while a person in Unity moves it.
    The daemon refused Blender's mesh as STALE (Unity's move was newer) and sent Blender the
    old mesh: the modelling was undone in Blender. Then, with that fixed, Blender's replay
    kept the Cube whole and sent it in full: the old pose in it undid the move in Unity.
    Staleness is per part, and a replay's parts the person did not change are applied
    (PROTOCOL.md §6.1, §6.6): both edits stand, in both editors, and the mesh Blender holds
    is the mesh Unity holds."""
    import bmesh

    from vibesync import capture
    made, host, cube, u = in_edit_mode_while_unity_moves_the_cube(world)
    bm = bmesh.from_edit_mesh(cube.data)
    for v in bm.verts:
        v.co.x *= 2
    bmesh.update_edit_mesh(cube.data)
    del bm  # no Python wrapper of the edit mesh outlives Edit Mode (mode_set frees it)
    with selected(cube):
        bpy.ops.object.mode_set(mode="OBJECT")
    widest = [max(v.co.x for v in cube.data.vertices)]

    def unity_holds_blenders_mesh():
        widest[0] = min(widest[0], max(v.co.x for v in cube.data.vertices))
        s = vibesync._session()
        held = s.mesh_hashes.get(capture.geometry_key(s.registry, cube))
        o = host.obj(u)
        return o is not None and o.get("mesh") is not None and o["mesh"]["mesh_hash"] == held

    drive(unity_holds_blenders_mesh, timeout=20, what="Unity holding the mesh modelled in Blender")
    view = world.finish(host, made)
    assert widest[0] == pytest.approx(2.0), "the modelling was never undone in Blender, not even for a tick"
    assert max(v.co.x for v in cube.data.vertices) == pytest.approx(2.0), "the modelling stands"
    assert view[u]["t"] == pytest.approx([0, 0, -4], abs=1e-5), "the move made in Unity stands"


def test_unity_changes_the_mesh_of_one_linked_duplicate(world):
    """Cube and Twin share one mesh in Blender; a person in Unity changes the Cube's. Blender
    wrote it into the shared mesh, so the Twin changed too, in both editors, though nobody
    touched it. The Cube now gets its own copy of the mesh (PROTOCOL.md §6.1)."""
    def build():
        twin = bpy.data.objects.new("Twin", bpy.data.objects["Cube"].data)
        bpy.data.collections["Collection"].objects.link(twin)
        twin.location = (3, 0, 0)

    made, host = world.startup_synced(build, also=("Twin",))
    cube, twin = bpy.data.objects["Cube"], bpy.data.objects["Twin"]
    host.cmd(f"mesh {cube['vibesync_uuid']} cube 2")
    drive(lambda: abs(max(v.co.x for v in cube.data.vertices) - 2) < 1e-4, timeout=15,
          what="the new mesh on the Cube in Blender")
    world.finish(host, made)
    assert max(v.co.x for v in twin.data.vertices) == pytest.approx(1.0), "the Twin keeps its mesh"
    assert cube.data != twin.data


def test_exclude_from_view_layer_hides_the_collection_in_unity(world):
    """The Outliner's "Exclude from View Layer" checkbox takes a collection out of Blender's
    viewport: Unity hides it too; a person in Unity showing it again includes it again."""
    made, host = world.startup_synced()
    coll = bpy.data.collections["Collection"]
    cu = coll["vibesync_uuid"]
    lc = bpy.context.view_layer.layer_collection.children["Collection"]
    lc.exclude = True
    host.wait_obj(cu, lambda o: o.get("visible") is False, timeout=15,
                  what="the excluded collection hidden in Unity")
    view = converge(host)
    assert not view[cu]["visible"]
    host.cmd(f"visible {cu} true")
    drive(lambda: not bpy.context.view_layer.layer_collection.children["Collection"].exclude,
          timeout=15, what="the collection included again in Blender")
    view = world.finish(host, made)
    assert view[cu]["visible"]


def test_a_name_blender_cannot_hold_ends_as_blenders_form_in_both_editors(world):
    """PROTOCOL.md §6.1: names taken in Blender or longer than it holds (63 bytes; 255 from
    Blender 5.0) get Blender's form, which Blender sends back; both editors converge on it
    (nothing loops, nothing is lost)."""
    made, host = world.startup_synced()
    camu = bpy.data.objects["Camera"]["vibesync_uuid"]
    lu = bpy.data.objects["Light"]["vibesync_uuid"]
    host.cmd(f"rename {camu} Cube")
    long = "Kamera-" + "é" * 130 + "🎥" * 5  # 287 bytes: longer than any Blender holds
    host.cmd(f"rename {lu} {long}")
    view = world.finish(host, made)
    assert view[camu]["name"] == "Cube.001"
    limit = 255 if bpy.app.version >= (5, 0, 0) else 63
    held = view[lu]["name"]
    assert long.startswith(held) and limit - 4 < len(held.encode()) <= limit, (len(held.encode()), limit)
    assert bpy.data.objects[held]["vibesync_uuid"] == lu


def test_unity_recolors_one_of_two_objects_sharing_a_material(world):
    """Cube and Crate show one material in Blender; a person in Unity recolors the Cube.
    Blender wrote the color into the shared material, so the Crate turned red too, in both
    editors, though nobody touched it. The Cube now gets its own copy (PROTOCOL.md §6.1)."""
    def build():
        crate = add_cube("Crate", (3, 0, 0), bpy.data.collections["Collection"])
        crate.data.materials.clear()
        crate.data.materials.append(bpy.data.objects["Cube"].active_material)

    made, host = world.startup_synced(build, also=("Crate",))
    cube, crate = bpy.data.objects["Cube"], bpy.data.objects["Crate"]
    host.cmd(f"material {cube['vibesync_uuid']} 1 0 0 1 0 0.5")
    drive(lambda: tuple(cube.active_material.diffuse_color)[:3] == pytest.approx((1, 0, 0)),
          timeout=15, what="the Cube red in Blender")
    converge(host)
    crate_in_unity = host.obj(crate["vibesync_uuid"])
    assert crate_in_unity["material"]["base_color"][:3] == pytest.approx([0.8, 0.8, 0.8])
    world.finish(host, made)
    assert tuple(crate.active_material.diffuse_color)[:3] == pytest.approx((0.8, 0.8, 0.8))


def test_undo_of_a_collection_delete_brings_it_back_with_its_objects(world):
    made, host = world.startup_synced()
    bpy.ops.ed.undo_push(message="before")
    coll = bpy.data.collections["Collection"]
    cu = coll["vibesync_uuid"]
    for ob in list(coll.objects):
        bpy.context.scene.collection.objects.link(ob)
    bpy.data.collections.remove(coll)
    bpy.ops.ed.undo_push(message="delete collection")
    drive(lambda: host.obj(cu) is None, timeout=15, what="the collection gone in Unity")
    converge(host)
    bpy.ops.ed.undo()
    view = world.finish(host, made)
    assert cu in view
    assert all(view[u]["parent"] == cu for u in made if u != cu), "its objects back in it"


def test_undo_of_a_delete_hierarchy_brings_everything_back(world):
    made, host = world.startup_synced()
    bpy.ops.ed.undo_push(message="before")
    coll = bpy.data.collections["Collection"]
    for ob in list(coll.objects):
        bpy.data.objects.remove(ob)
    bpy.data.collections.remove(coll)
    bpy.ops.ed.undo_push(message="delete all")
    drive(lambda: all(host.obj(u) is None for u in made), timeout=15, what="everything gone in Unity")
    bpy.ops.ed.undo()
    view = world.finish(host, made)
    assert all(u in view for u in made)


def test_unity_moves_an_object_to_another_blender_collection(world):
    def build():
        bpy.context.scene.collection.children.link(bpy.data.collections.new("Props"))

    made, host = world.startup_synced(build, also=("Props",))
    cube = bpy.data.objects["Cube"]
    pu = bpy.data.collections["Props"]["vibesync_uuid"]
    host.cmd(f"parent {cube['vibesync_uuid']} {pu}")
    view = world.finish(host, made)
    assert view[cube["vibesync_uuid"]]["parent"] == pu
    assert [c.name for c in cube.users_collection] == ["Props"]


def test_unity_puts_a_blender_collection_under_an_object_it_stays_there_not_synced(world):
    """A Blender collection cannot be under an object. Blender put it at the top instead,
    answered as if applied, and sent that back as its own edit: the move was undone in Unity,
    where a person made it. Now Blender refuses it, the batch rolls back, and Unity keeps
    the move, marked not synced (PROTOCOL.md §6.4)."""
    _, host = world.startup_synced()
    cu = bpy.data.collections["Collection"]["vibesync_uuid"]
    cam_u = next(u for u, n in world.host_made().items() if n == "Main Camera")
    applied = vibesync.status()["applied_batches"]
    host.cmd(f"parent {cu} {cam_u}")
    host.wait("not_synced", pred=lambda e: cu in e.get("uuids", ()), timeout=15,
              what="the collection marked not synced in Unity")
    # Blender answered the batch it could not apply, then is sent the authoritative state
    # after the rollback (§6.4): both before the quiet period (on a loaded machine the
    # resync may reach Blender after Unity heard of the rollback).
    drive(lambda: vibesync.status()["applied_batches"] >= applied + 2, timeout=15,
          what="Blender applied the batch it refused and the resync after the rollback")
    quiet(world.daemon, world.project_id, host)
    assert host.obj(cu)["parent"] == cam_u, "the person's move stays in Unity"
    assert bpy.context.scene.collection.children.get("Collection") is not None
    assert len(bpy.data.collections["Collection"].objects) == 3


def test_unity_moves_the_collection_gameobject_the_move_stays_not_synced(world):
    """A Blender collection has no transform. Blender ignored the move, answered as if it had
    applied it, then sent its own pose back: the move of "Collection" made by a person in Unity
    was undone there. Now Blender refuses it and Unity keeps it, not synced, however often the
    person moves it, and nothing else stops syncing (PROTOCOL.md §6.1)."""
    _, host = world.startup_synced()
    cu = bpy.data.collections["Collection"]["vibesync_uuid"]
    for x in (5, 6, 7):
        rolled = host.stats()["rolled_back"]
        applied = vibesync.status()["applied_batches"]
        host.cmd(f"move {cu} {x} 0 0")
        drive(lambda rolled=rolled: host.stats()["rolled_back"] > rolled, timeout=15,
              what=f"the move to x={x} refused by Blender")
        # Blender answered the batch it refused, then is sent the authoritative state after
        # the rollback (§6.4): both before the next move and the quiet period (on a loaded
        # machine that resync may reach Blender after Unity heard of the rollback).
        drive(lambda applied=applied: vibesync.status()["applied_batches"] >= applied + 2, timeout=15,
              what=f"Blender applied the refused move to x={x} and the resync after its rollback")
    ev = host.wait("not_synced", pred=lambda e: cu in e.get("uuids", ()), timeout=15,
                   what="the move kept in Unity, not synced")
    assert "no transform" in ev["reason"], ev  # Blender's own words, shown in Unity
    quiet(world.daemon, world.project_id, host)
    assert host.obj(cu)["transform"]["position"] == pytest.approx([7, 0, 0])
    assert host.stats()["not_synced"] == 1
    cube = bpy.data.objects["Cube"]
    cube.location = (1, 2, 3)
    host.wait_obj(cube["vibesync_uuid"],
                  lambda o: o["transform"]["position"] == pytest.approx([1, 3, 2], abs=1e-5),
                  timeout=15, what="a later edit in Blender still reaches Unity")


def anchor_empty():
    """An Empty "Anchor" in the startup scene's "Collection": turned 90°, scaled 2, at (1, 2, 3)."""
    import math
    e = bpy.data.objects.new("Anchor", None)
    bpy.data.collections["Collection"].objects.link(e)
    e.location, e.rotation_euler, e.scale = (1, 2, 3), (0, 0, math.pi / 2), (2, 2, 2)


@pytest.mark.window_ms(1000)
@pytest.mark.parametrize("order", ["its_delete_first", "the_batch_first"])
def test_unity_puts_the_cube_under_an_empty_blender_deletes_meanwhile(world, order):
    """The person in Unity puts the Cube under an Empty (turned 90°, scaled 2, at (1, 2, 3));
    at the same moment the person in Blender deletes that Empty. Every editor leaves a deleted
    parent's children where they stand in the world. `its_delete_first`: the Empty's
    `tombstone` commits while Unity's change still waits in the daemon's window (1 s here);
    the daemon committed the Cube under the deleted Empty, which Blender could not apply.
    `the_batch_first`: the Cube's batch reaches Blender after its person deleted the Empty;
    Blender cannot apply it, the batch rolls back and Unity keeps the Cube "not synced" — and
    then, applying the Empty's delete, Unity left the Cube at the root but never sent it
    again. Either way the editors never converged. Now the Cube stands at the root where the
    Empty put it — in Blender, in Unity and in the daemon — and everything converges and
    verifies (PROTOCOL.md §6.1, §6.4)."""
    made, host = world.startup_synced(build=anchor_empty, also=("Anchor",))
    cube, empty = bpy.data.objects["Cube"], bpy.data.objects["Anchor"]
    u, e = cube["vibesync_uuid"], empty["vibesync_uuid"]
    host.cmd(f"parent {u} {e}")
    if order == "the_batch_first":
        time.sleep(1.5)  # the window closes; the batch waits in Blender's socket, unread
    bpy.data.objects.remove(empty)
    drive(lambda: host.obj(e) is None and (o := host.obj(u)) is not None and o.get("parent") != e,
          timeout=20, what="the Empty gone in Unity, the Cube no longer under it")
    view = world.finish(host, {k: v for k, v in made.items() if k != e})
    assert e not in view
    # Unity's (0, 0, 0) under the Empty is the Empty's place: (1, 2, 3) in Blender.
    assert tuple(bpy.data.objects["Cube"].matrix_world.translation) == pytest.approx((1, 2, 3), abs=1e-4)


@pytest.mark.window_ms(1000)
def test_blender_puts_the_cube_under_an_empty_unity_deletes_meanwhile(world):
    """The roles of the test above swapped: the person in Blender puts the Cube under an Empty
    (turned 90°, scaled 2, at (1, 2, 3)) and, while that change waits in the daemon's window,
    the person in Unity deletes the Empty — which in Unity holds no child, so its delete names
    the Empty alone. Blender, applying that delete, dropped the Cube to its own pose ((0, 0,
    0), unscaled): the person's Cube moved. Now it stays where it stands, at the root, and the
    Cube converges there in Unity and in the daemon (PROTOCOL.md §6.1)."""
    made, host = world.startup_synced(build=anchor_empty, also=("Anchor",))
    cube, empty = bpy.data.objects["Cube"], bpy.data.objects["Anchor"]
    u, e = cube["vibesync_uuid"], empty["vibesync_uuid"]
    cube.parent = empty  # Set Parent To > Object (Without Inverse): the Cube at the Empty
    drive(lambda: vibesync.status()["in_flight"] > 0, what="the reparent sent")
    host.cmd(f"delete {e}")
    drive(lambda: "Anchor" not in bpy.data.objects, timeout=20, what="the Empty gone in Blender")
    cube = bpy.data.objects["Cube"]
    bpy.context.view_layer.update()
    assert cube.parent is None
    assert tuple(cube.matrix_world.translation) == pytest.approx((1, 2, 3), abs=1e-4), \
        "the Cube stands where the person put it"
    assert tuple(cube.matrix_world.to_scale()) == pytest.approx((2, 2, 2), abs=1e-4)
    view = world.finish(host, {k: v for k, v in made.items() if k != e})
    assert e not in view
    assert view[u]["parent"] == bpy.data.collections["Collection"]["vibesync_uuid"], \
        "at the root, in its collection"  # (finish: Unity holds it where Blender shows it)


def _drag_while_the_other_editor_scales(world, dragger):
    """The person in `dragger` drags the Cube for two seconds, one pose per editor frame;
    0.4 s in, the person in the other editor scales it to 3. (made, host, cube, uuid, the
    drag's end in glTF's frame)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    start = tuple(cube.location)
    frames = 120
    for i in range(1, frames + 1):
        x = start[0] + i * 0.02
        if dragger == "blender":
            cube.location = (x, start[1], start[2])  # one pose per editor frame
            bpy.context.view_layer.update()
            vibesync.tick(8.0)
        else:
            host.cmd(f"move {u} {x} {start[2]} {-start[1]}")
        if i == 24:
            if dragger == "blender":
                host.cmd(f"scale {u} 3 3 3")
            else:
                cube.scale = (3, 3, 3)
                bpy.context.view_layer.update()
                vibesync.tick(8.0)
        if dragger == "blender":
            time.sleep(0.017)
        else:
            drive_for(0.017)
    end = [start[0] + frames * 0.02, start[2], -start[1]]  # (glTF's frame: y up)
    return made, host, cube, u, end


@pytest.mark.window_ms(300)  # the default
@pytest.mark.parametrize("dragger", ["blender", "unity"])
def test_a_scale_made_in_one_editor_during_a_drag_in_the_other_stands_through_the_whole_drag(
        world, dragger):
    """The person in one editor drags the Cube for two seconds at the default settings; 0.4 s
    in, the person in the other editor scales it. The dragging editor keeps its own pose
    while its drag is in flight, so its moves after the window that merged the scale still
    carried the old scale, and the drag's later windows undid the other person's scale
    (silently when the drag's move was that window's last). Each part of the pose now stands
    from the editor that changed it in every window of the drag (PROTOCOL.md §6.2, "Across
    windows"): the drag's position and the other editor's scale, in both editors, with no
    conflict and nothing rolled back."""
    made, host, cube, u, end = _drag_while_the_other_editor_scales(world, dragger)
    drive(lambda: not vibesync._session().engine.inflight and close(list(cube.scale), [3, 3, 3])
          and close(list(cube.location), [end[0], -end[2], end[1]])
          and (o := host.obj(u)) is not None and close(o["transform"]["position"], end)
          and close(o["transform"]["scale"], [3, 3, 3]),
          timeout=20, what="the drag's end and the scale in both editors")
    drive_for(0.5)  # (a conflict event follows its batch's result at once)
    assert not wal_conflict_steps(world, u), [(r["payload"], r["seq"]) for r in wal_conflict_steps(world, u)]
    assert not blender_conflicts(u) and host.count("conflict") == 0, vibesync.status()["conflicts"]
    view = world.finish(host, made)
    assert view[u]["s"] == pytest.approx([3, 3, 3], abs=1e-5), "the scale stands"
    assert view[u]["t"] == pytest.approx(end, abs=1e-5), "the drag's end stands"
    assert not [r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"], "nothing rolled back"


@pytest.mark.window_ms(300)  # the default
@pytest.mark.parametrize("dragger", ["blender", "unity"])
def test_a_scale_set_back_by_the_dragging_person_right_after_the_drag_stands(world, dragger):
    """The same drag; as soon as the dragging editor shows the other person's scale, its
    person sets the scale back to 1. That is this person's edit, made over the pose the
    editor holds, and it stands in both editors. (Within a second of the drag's last move
    the daemon read it as a part the dragging editor "left as it held it" and put the other
    editor's scale back: the person's revert was undone in their own editor. The editors now
    say which uuids they left unapplied, `applied.spared`, PROTOCOL.md §6.4, and the daemon
    reads every other one as applied, §6.2 "Across windows".)"""
    made, host, cube, u, end = _drag_while_the_other_editor_scales(world, dragger)
    if dragger == "blender":
        drive(lambda: not vibesync._session().engine.inflight and close(list(cube.scale), [3, 3, 3]),
              timeout=20, what="Blender showing Unity's scale, its drag over")
        cube.scale = (1, 1, 1)
        bpy.context.view_layer.update()
        vibesync.tick(8.0)
    else:
        drive(lambda: host.stats().get("in_flight") == 0 and (o := host.obj(u)) is not None
              and close(o["transform"]["scale"], [3, 3, 3]),
              timeout=20, what="Unity showing Blender's scale, its drag over")
        host.cmd(f"scale {u} 1 1 1")
    drive(lambda: close(list(cube.scale), [1, 1, 1]) and (o := host.obj(u)) is not None
          and close(o["transform"]["scale"], [1, 1, 1]),
          timeout=20, what="the scale set back, in both editors")
    view = world.finish(host, made)
    assert view[u]["s"] == pytest.approx([1, 1, 1], abs=1e-5), "the person's revert stands"
    assert view[u]["t"] == pytest.approx(end, abs=1e-5), "the drag's end stands"


@pytest.mark.window_ms(300)  # the default: both people's edits land in one window
@pytest.mark.parametrize("first", ["blender", "unity"])
def test_a_scale_in_blender_and_a_move_in_unity_made_at_once_both_stand(world, first):
    """The person in Blender scales the Cube while the person in Unity moves it, neither
    having seen the other's edit (Blender sends its scale before it reads Unity's preview).
    Position, rotation and scale are parts of their own: the batch merges the two poses,
    both edits stand in both editors, nothing rolls back and no conflict is shown
    (PROTOCOL.md §6.2). Before, the later change's whole pose won and the other person's
    scale or move was undone (found by an independent artist tester)."""
    made, host = world.startup_synced()
    cube = bpy.data.objects["Cube"]
    u = cube["vibesync_uuid"]
    session = vibesync._session()

    def blender_scales():
        cube.scale = (2, 2, 2)
        bpy.context.view_layer.update()
        # The pump's capture and send, without reading its socket first: Blender has not
        # seen Unity's move when its scale leaves.
        session._process_dirty(time.perf_counter() + 0.05)
        assert session._flush() > 0, "the scale is sent"

    if first == "blender":
        blender_scales()
        host.cmd(f"move {u} 0 3 0")
    else:
        host.cmd(f"move {u} 0 3 0")
        blender_scales()
    drive(lambda: close(list(cube.location), [0.0, 0.0, 3.0]) and close(list(cube.scale), [2, 2, 2])
          and (o := host.obj(u)) is not None and close(o["transform"]["position"], [0.0, 3.0, 0.0])
          and close(o["transform"]["scale"], [2, 2, 2]),
          timeout=15, what="the scale and the move in both editors")
    drive(lambda: not session.engine.inflight, timeout=15, what="Blender's scale ended")
    assert not wal_conflict_steps(world, u), wal_conflict_steps(world, u)
    drive_for(0.5)  # (a conflict event follows its batch's result at once)
    assert not blender_conflicts(u) and host.count("conflict") == 0, vibesync.status()["conflicts"]
    view = world.finish(host, made)
    assert view[u]["t"] == pytest.approx([0, 3, 0], abs=1e-5)
    assert view[u]["s"] == pytest.approx([2, 2, 2], abs=1e-5)
    assert not [r for r in world.daemon.tail() if r.get("phase") == "ROLLBACK"], "nothing rolled back"
