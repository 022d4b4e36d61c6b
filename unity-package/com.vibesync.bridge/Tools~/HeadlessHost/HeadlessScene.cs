// The headless host's in-memory scene: what a Unity scene holds, in Unity's frame
// (Y up, left-handed, meters). It implements ISceneAdapter exactly as the Editor glue does:
// canonical <-> Unity conversion at the boundary, one atomic "undo step" per batch, the
// duplicate rule through IdentityRegistry.
using System;
using System.Collections.Generic;
using System.IO;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Headless
{
    public sealed class MeshInfo
    {
        public int VertexCount, TriangleCount;
        public string MeshHash;
        public byte[] Buffer; // VSM1, canonical frame (what travels on the wire)
    }

    public sealed class SceneObject
    {
        public string Uuid;              // its entry in the scene's saved identity map
        public string Name = "";
        public string Kind = EntityKind.Object;
        public string Parent;            // uuid or null
        public bool Visible = true;
        public double[] Position = { 0, 0, 0 };    // Unity frame, local
        public double[] Rotation = { 0, 0, 0, 1 }; // Unity frame [x, y, z, w]
        public double[] Scale = { 1, 1, 1 };
        public MeshInfo Mesh;
        public MaterialState Material;
        // Unity-only components (by name: what stands in for a script, a collider…): no other
        // editor has them and no change carries them.
        public List<string> Components = new List<string>();

        public SceneObject Clone()
        {
            var o = (SceneObject)MemberwiseClone();
            o.Position = (double[])Position.Clone(); o.Rotation = (double[])Rotation.Clone(); o.Scale = (double[])Scale.Clone();
            o.Material = Material == null ? null : Material.Clone();
            o.Components = new List<string>(Components);
            return o;
        }
    }

    public sealed class HeadlessScene : ISceneAdapter, IAdoptingScene
    {
        // The components of objects another editor deleted, given back if it makes them again.
        readonly DeletedKeep<List<string>> deletedKeep = new DeletedKeep<List<string>>();

        // Objects that carried no uuid in the loaded scene file (a scene never saved since they
        // were synced, e.g. an editor crash before the save): the engine lets them take back the
        // uuids the daemon knows them by (Adoption, PROTOCOL §6.6).
        readonly HashSet<string> fresh = new HashSet<string>();
        // Insertion order = hierarchy order (like Unity's root order).
        readonly List<SceneObject> objects = new List<SceneObject>();
        public readonly IdentityRegistry<SceneObject> Identity = new IdentityRegistry<SceneObject>();
        public double UnitScale = 1.0;
        public int UndoSteps { get; private set; }
        public string LastUndoName { get; private set; }

        public IList<SceneObject> Objects { get { return objects; } }

        public SceneObject Find(string uuid)
        {
            SceneObject o;
            return Identity.TryGet(uuid, out o) ? o : null;
        }

        public SceneObject FindByName(string name)
        {
            foreach (var o in objects) if (o.Name == name) return o;
            return null;
        }

        public string PathOf(SceneObject o)
        {
            var parts = new List<string>();
            var seen = new HashSet<SceneObject>();
            while (o != null && seen.Add(o))
            {
                parts.Insert(0, o.Name);
                o = o.Parent != null ? Find(o.Parent) : null;
            }
            return "/" + string.Join("/", parts.ToArray());
        }

        /// <summary>Adds an object as Unity would report it (ObjectChangeEvents CreateGameObjectHierarchy).
        /// Returns the uuid it ends up with (the duplicate rule may replace a copied uuid).</summary>
        public IdentityChange Add(SceneObject o)
        {
            objects.Add(o);
            IdentityChange change;
            o.Uuid = Identity.OnCreated(o, o.Uuid, PathOf(o), out change);
            return change;
        }

        /// <summary>Ctrl+D: copy (including the serialized uuid), then the duplicate rule.</summary>
        public SceneObject Duplicate(SceneObject src, out IdentityChange change)
        {
            var copy = src.Clone();
            copy.Name = src.Name + " (1)";
            objects.Add(copy);
            copy.Uuid = Identity.OnCreated(copy, src.Uuid, PathOf(copy), out change);
            return copy;
        }

        /// <summary>Deletes the object and its children (as Unity destroys a hierarchy). Returns removed uuids.</summary>
        public List<string> Delete(SceneObject o)
        {
            var removed = new List<string>();
            var stack = new List<SceneObject> { o };
            while (stack.Count > 0)
            {
                var cur = stack[stack.Count - 1];
                stack.RemoveAt(stack.Count - 1);
                foreach (var c in objects) if (c.Parent == cur.Uuid && c != cur) stack.Add(c);
                objects.Remove(cur);
                Identity.OnDestroyed(cur);
                removed.Add(cur.Uuid);
            }
            return removed;
        }

        /// <summary>
        /// A received `delete` removes that one object (PROTOCOL.md §6.1): what happens to its
        /// children is the origin editor's to say, in changes of their own. Until they come, the
        /// children are roots where they stand in the world, as Unity's
        /// `Undo.SetTransformParent(child, null)` leaves them. (A person's delete in Unity takes
        /// the hierarchy: <see cref="Delete"/>.)
        /// </summary>
        void RemoveOne(SceneObject o)
        {
            foreach (var c in objects)
            {
                if (c.Parent != o.Uuid || c == o) continue;
                var w = WorldOf(c);
                c.Parent = null;
                c.Position = w.T; c.Rotation = w.R; c.Scale = w.S;
            }
            objects.Remove(o);
            Identity.OnDestroyed(o);
        }

        /// <summary>An object's pose in the world (Unity frame): its parents' poses composed
        /// with its own, scale per axis (no skew, as a Transform's lossy scale).</summary>
        Trs WorldOf(SceneObject o)
        {
            var t = (double[])o.Position.Clone();
            var r = (double[])o.Rotation.Clone();
            var s = (double[])o.Scale.Clone();
            var seen = new HashSet<SceneObject> { o };
            for (var p = o.Parent == null ? null : Find(o.Parent); p != null && seen.Add(p); p = p.Parent == null ? null : Find(p.Parent))
            {
                var scaled = new[] { p.Scale[0] * t[0], p.Scale[1] * t[1], p.Scale[2] * t[2] };
                var moved = Coordinates.Rotate(p.Rotation, scaled);
                t = new[] { p.Position[0] + moved[0], p.Position[1] + moved[1], p.Position[2] + moved[2] };
                r = Coordinates.Multiply(p.Rotation, r);
                s = new[] { p.Scale[0] * s[0], p.Scale[1] * s[1], p.Scale[2] * s[2] };
            }
            return new Trs(t, r, s);
        }

        // ------------------------------------------------------------------ ISceneAdapter

        public ObjectState StateOf(SceneObject o)
        {
            var trs = Coordinates.UnityToCanonical(new Trs(o.Position, o.Rotation, o.Scale), UnitScale);
            return new ObjectState
            {
                Uuid = o.Uuid, Kind = o.Kind, Name = o.Name, Parent = o.Parent, Visible = o.Visible,
                T = trs.T, R = trs.R, S = trs.S,
                MeshHash = o.Mesh == null ? null : o.Mesh.MeshHash,
                Material = o.Material == null ? null : o.Material.Clone(),
            };
        }

        public IList<ObjectState> CaptureAll()
        {
            var l = new List<ObjectState>();
            foreach (var o in objects) l.Add(StateOf(o));
            return l;
        }

        public ObjectState Capture(string uuid)
        {
            var o = Find(uuid);
            return o == null ? null : StateOf(o);
        }

        public bool Holds(string uuid) { return Find(uuid) != null; }

        public string EditorRef(string uuid)
        {
            var o = Find(uuid);
            return o == null ? null : PathOf(o);
        }

        public byte[] MeshAttachment(string uuid)
        {
            var o = Find(uuid);
            return o == null || o.Mesh == null ? null : o.Mesh.Buffer;
        }

        public ICollection<string> FreshUuids { get { return new List<string>(fresh); } }

        public bool AdoptUuid(string freshUuid, string known)
        {
            var o = Find(freshUuid);
            if (o == null || Find(known) != null || !Msg.IsValidUuid(known)) return false;
            Identity.Remove(freshUuid);
            o.Uuid = known;
            Identity.Bind(known, o, PathOf(o));
            foreach (var c in objects) if (c.Parent == freshUuid) c.Parent = known;
            fresh.Remove(freshUuid);
            return true;
        }

        public void KeepFresh(string uuid) { fresh.Remove(uuid); }

        public string ReassignUuid(string uuid)
        {
            var o = Find(uuid);
            if (o == null) return null;
            string fresh = Identity.Reassign(uuid);
            foreach (var c in objects) if (c.Parent == uuid) c.Parent = fresh;
            o.Uuid = fresh;
            return fresh;
        }

        /// <summary>All or nothing, like one Undo group that is reverted when a step throws.</summary>
        public void ApplyBatch(IncomingBatch batch)
        {
            var before = new List<SceneObject>();
            foreach (var o in objects) before.Add(o.Clone());
            try
            {
                foreach (var c in batch.Changes) ApplyOne(c);
                // Parents are resolved after the whole batch (a child may arrive before its parent),
                // exactly like the editor's deferred SetTransformParent. A parent this scene does not
                // have makes the object a root (PROTOCOL §6.1); it is attached when that parent arrives.
                ResolveParents();
                RefuseLoops(before, batch);
                UndoSteps++;
                LastUndoName = batch.UndoName;
            }
            catch
            {
                // Restore the scene exactly (Undo.RevertAllDownToGroup in the editor).
                foreach (var o in new List<SceneObject>(objects)) Identity.OnDestroyed(o);
                objects.Clear();
                foreach (var o in before)
                {
                    objects.Add(o);
                    Identity.Bind(o.Uuid, o, null);
                }
                throw;
            }
        }

        /// <summary>Live previews applied (PROTOCOL §6.3): no undo step each.</summary>
        public int LiveApplied;

        public void ApplyLive(RemoteChange c)
        {
            if (c.Op != Ops.Transform && c.Op != Ops.Rename && c.Op != Ops.Visibility)
                throw new InvalidOperationException("`" + c.Op + "` is not a live op");
            ApplyOne(c);
            LiveApplied++;
        }

        /// <summary>Objects whose parent (by uuid) this scene did not have when it was applied:
        /// they are roots until that parent arrives (PROTOCOL §6.1).</summary>
        public readonly Dictionary<string, string> WaitingForParent = new Dictionary<string, string>();

        void ResolveParents()
        {
            foreach (var o in objects)
            {
                string want;
                if (o.Parent == null && WaitingForParent.TryGetValue(o.Uuid, out want) && Find(want) != null)
                {
                    o.Parent = want;
                    WaitingForParent.Remove(o.Uuid);
                }
                if (o.Parent != null && Find(o.Parent) == null)
                {
                    WaitingForParent[o.Uuid] = o.Parent;
                    o.Parent = null;
                }
            }
        }

        /// <summary>
        /// Unity refuses a parent that is under the object (a loop). The editor glue sets a batch's
        /// parents in order after its other changes, tries a looping one again once the rest are set
        /// (a later change of the batch may take the parent out from under it), and else leaves the
        /// object where it was (UnitySceneAdapter.ApplyBatch): the same here.
        /// </summary>
        void RefuseLoops(List<SceneObject> before, IncomingBatch batch)
        {
            var was = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var o in before) was[o.Uuid] = o.Parent;
            var wanted = new List<KeyValuePair<SceneObject, string>>();
            var named = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in batch.Changes)
            {
                if ((c.Op != Ops.Create && c.Op != Ops.Reparent) || !named.Add(c.Uuid)) continue;
                var o = Find(c.Uuid);
                string old;
                was.TryGetValue(c.Uuid, out old);
                if (o == null || o.Parent == old) continue;
                wanted.Add(new KeyValuePair<SceneObject, string>(o, o.Parent));
                o.Parent = old != null && Find(old) != null ? old : null;
            }
            var looped = new List<KeyValuePair<SceneObject, string>>();
            foreach (var kv in wanted)
            {
                if (Under(kv.Value, kv.Key.Uuid)) looped.Add(kv);
                else kv.Key.Parent = kv.Value;
            }
            foreach (var kv in looped)
                if (!Under(kv.Value, kv.Key.Uuid)) kv.Key.Parent = kv.Value;
        }

        /// <summary><paramref name="parent"/> is <paramref name="uuid"/> or under it here.</summary>
        bool Under(string parent, string uuid)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (var x = parent; x != null && seen.Add(x);)
            {
                if (x == uuid) return true;
                var p = Find(x);
                x = p == null ? null : p.Parent;
            }
            return false;
        }

        /// <summary>Changes the editor refuses, for tests (an engine error, a locked object): the
        /// batch throws as Unity's would.</summary>
        public Predicate<RemoteChange> Refuses;

        void ApplyOne(RemoteChange c)
        {
            if (Refuses != null && Refuses(c)) throw new InvalidOperationException("`" + c.Op + "` of " + c.Uuid + " refused by the editor");
            var o = Find(c.Uuid);
            if (c.Op == Ops.Delete && o == null) return; // already gone (e.g. deleted with its parent): nothing to do
            if (c.Op != Ops.Create && o == null)
                throw new InvalidOperationException("`" + c.Op + "` for unknown object " + c.Uuid);
            switch (c.Op)
            {
                case Ops.Create:
                    // A create for an object we have updates it in place, every field (resync batches
                    // carry full state): no mesh_hash / material means the object has none.
                    WaitingForParent.Remove(c.Uuid); // the create names its parent afresh
                    if (o == null)
                    {
                        o = new SceneObject { Uuid = c.Uuid };
                        List<string> components;
                        if (deletedKeep.TryTake(c.Uuid, out components)) o.Components = components; // its delete undone there
                        objects.Add(o);
                        Identity.Bind(c.Uuid, o, null);
                    }
                    o.Kind = c.Kind; o.Name = c.Name; o.Parent = c.Parent; o.Visible = c.Visible ?? true;
                    SetTrs(o, c);
                    o.Material = c.Material == null ? null : c.Material.Clone();
                    if (c.MeshHash == null) o.Mesh = null;
                    else if (c.Attachment != null && c.Attachment.Length > 0) o.Mesh = MeshFrom(c);
                    else if (o.Mesh == null || o.Mesh.MeshHash != c.MeshHash)
                        o.Mesh = new MeshInfo { MeshHash = c.MeshHash }; // the daemon sent no buffer: the hash is still the state
                    break;
                case Ops.Delete:
                    if (o.Components.Count > 0) deletedKeep.Keep(o.Uuid, new List<string>(o.Components));
                    RemoveOne(o);
                    break;
                case Ops.Reparent:
                    WaitingForParent.Remove(c.Uuid);
                    o.Parent = c.Parent; // checked after the batch
                    break;
                case Ops.Mesh:
                    if (c.Attachment != null && c.Attachment.Length > 0) o.Mesh = MeshFrom(c);
                    else if (o.Mesh == null || o.Mesh.MeshHash != c.MeshHash) o.Mesh = new MeshInfo { MeshHash = c.MeshHash };
                    break;
                case Ops.Material:
                    o.Material = c.Material == null ? null : c.Material.Clone(); // null: cleared (§6.1)
                    break;
                case Ops.Transform:
                    SetTrs(o, c);
                    break;
                case Ops.Rename:
                    o.Name = c.Name;
                    break;
                case Ops.Visibility:
                    o.Visible = c.Visible.Value;
                    break;
            }
            Identity.UpdateRef(o.Uuid, PathOf(o));
        }

        static MeshInfo MeshFrom(RemoteChange c)
        {
            byte[] buffer = MeshData.Verified(c.Attachment, c.MeshHash);
            if (buffer == null)
                throw new InvalidOperationException("mesh attachment of " + c.Uuid + " hashes to " + MeshData.HashOf(c.Attachment) + ", message says " + c.MeshHash);
            var m = MeshData.Parse(buffer);
            return new MeshInfo { MeshHash = c.MeshHash, VertexCount = m.VertexCount, TriangleCount = m.TriangleCount, Buffer = buffer };
        }

        void SetTrs(SceneObject o, RemoteChange c)
        {
            var u = StoreAsUnity(Coordinates.CanonicalToUnity(new Trs(c.T, c.R, c.S), UnitScale));
            o.Position = u.T; o.Rotation = u.R; o.Scale = u.S;
        }

        /// <summary>
        /// What a Unity Transform holds after being given `u`: Vector3 and Quaternion are float32,
        /// and the engine normalizes the rotation (in float32). The headless scene stores the same,
        /// so its state hashes are those a real editor answers (PROTOCOL §6.5 "Stable values").
        /// </summary>
        public static Trs StoreAsUnity(Trs u)
        {
            var r = new float[4];
            float n = 0f;
            for (int i = 0; i < 4; i++) { r[i] = (float)u.R[i]; n += r[i] * r[i]; }
            n = (float)Math.Sqrt(n);
            var rd = new double[4];
            for (int i = 0; i < 4; i++) rd[i] = n > 0f ? (double)(r[i] / n) : (i == 3 ? 1.0 : 0.0);
            return new Trs(F32(u.T), rd, F32(u.S));
        }

        static double[] F32(double[] v)
        {
            var r = new double[v.Length];
            for (int i = 0; i < v.Length; i++) r[i] = (double)(float)v[i];
            return r;
        }

        // ------------------------------------------------------------------ dump / load

        /// <summary>What the loaded file kept of what it last synced (`synced`, written from
        /// `SyncEngine.BaseSnapshot`), or null: a file saved before there was any.</summary>
        public Dictionary<string, ObjectState> SavedBases { get; private set; }

        public Dictionary<string, object> ToJson(long lastSeq, Dictionary<string, object> stats = null, IDictionary<string, ObjectState> bases = null)
        {
            var list = new List<object>();
            foreach (var o in objects)
            {
                list.Add(new Dictionary<string, object>
                {
                    { "uuid", o.Uuid }, { "name", o.Name }, { "kind", o.Kind }, { "parent", o.Parent }, { "visible", o.Visible },
                    { "transform", new Dictionary<string, object> { { "position", Msg.List(o.Position) }, { "rotation", Msg.List(o.Rotation) }, { "scale", Msg.List(o.Scale) } } },
                    { "mesh", o.Mesh == null ? null : new Dictionary<string, object> { { "vertex_count", (long)o.Mesh.VertexCount }, { "triangle_count", (long)o.Mesh.TriangleCount }, { "mesh_hash", o.Mesh.MeshHash } } },
                    { "material", o.Material == null ? null : o.Material.ToJson() },
                    { "components", ComponentList(o) },
                });
            }
            var doc = new Dictionary<string, object> { { "objects", list }, { "last_seq", lastSeq } };
            if (bases != null) doc["synced"] = ObjectState.WriteBases(bases); // what Unity keeps with a saved scene
            if (stats != null) doc["stats"] = stats;
            return doc;
        }

        static List<object> ComponentList(SceneObject o)
        {
            var l = new List<object>();
            foreach (var c in o.Components) l.Add(c);
            return l;
        }

        /// <summary>Writes atomically (temp file + rename) so a reader never sees half a dump.</summary>
        public void Dump(string file, long lastSeq, Dictionary<string, object> stats = null, IDictionary<string, ObjectState> bases = null)
        {
            string full = Path.GetFullPath(file);
            string tmp = full + ".tmp";
            File.WriteAllText(tmp, Json.Write(ToJson(lastSeq, stats, bases)) + "\n");
            if (File.Exists(full)) File.Replace(tmp, full, null); // rename(2): readers see the old or the new file
            else File.Move(tmp, full);
        }

        /// <summary>Loads objects from a dump (same format). Returns identity changes (duplicates in the file).</summary>
        public List<IdentityChange> Load(string file)
        {
            var doc = Json.Parse(File.ReadAllBytes(file)) as Dictionary<string, object>;
            if (doc == null) throw new FormatException(file + ": expected a JSON object with an `objects` array");
            var changes = new List<IdentityChange>();
            object kept;
            SavedBases = doc.TryGetValue("synced", out kept) && kept != null ? ObjectState.ReadBases(Msg.Arr(doc, "synced"), "synced") : null;
            var list = Msg.Arr(doc, "objects");
            for (int i = 0; i < list.Count; i++)
            {
                string path = "objects[" + i + "]";
                var d = list[i] as Dictionary<string, object>;
                if (d == null) throw new MessageFormatException(path, "expected an object");
                var tr = Msg.Obj(d, "transform", path);
                var o = new SceneObject
                {
                    Uuid = Msg.OptStr(d, "uuid", path), Name = Msg.Str(d, "name", path),
                    Kind = Msg.OptStr(d, "kind", path) ?? EntityKind.Object, Parent = Msg.OptStr(d, "parent", path),
                    Visible = Msg.OptBool(d, "visible", true),
                    Position = Msg.Vec(tr, "position", 3, path + ".transform"),
                    Rotation = Msg.Vec(tr, "rotation", 4, path + ".transform"),
                    Scale = Msg.Vec(tr, "scale", 3, path + ".transform"),
                };
                object comps;
                if (d.TryGetValue("components", out comps) && comps != null)
                    foreach (var x in Msg.Arr(d, "components")) if (x is string) o.Components.Add((string)x);
                object mat;
                if (d.TryGetValue("material", out mat) && mat != null) o.Material = MaterialState.FromJson(Msg.Obj(d, "material", path), path + ".material");
                object mesh;
                if (d.TryGetValue("mesh", out mesh) && mesh != null)
                {
                    // {"grid": side}: a flat side x side vertex grid (what a test scene needs
                    // of a real mesh: a few thousand vertices), generated, not stored.
                    var md = Msg.Obj(d, "mesh", path);
                    long side = Msg.Long(md, "grid", path + ".mesh");
                    if (side < 2 || side > 1000) throw new MessageFormatException(path + ".mesh.grid", "expected 2..1000");
                    byte[] buf = GridMesh((int)side, 1f);
                    var m = MeshData.Parse(buf);
                    o.Mesh = new MeshInfo { Buffer = buf, MeshHash = MeshData.HashOf(buf), VertexCount = m.VertexCount, TriangleCount = m.TriangleCount };
                }
                var ch = Add(o);
                if (ch != null) changes.Add(ch);
                if (ch != null && !Msg.IsValidUuid(ch.OldUuid)) fresh.Add(o.Uuid);
            }
            return changes;
        }

        /// <summary>A flat grid of side x side vertices spanning [-half, half] in x and z
        /// (2 (side-1)^2 triangles), canonical frame, CCW winding seen from +y.</summary>
        public static byte[] GridMesh(int side, float half)
        {
            var pos = new float[3 * side * side];
            for (int i = 0; i < side; i++)
                for (int j = 0; j < side; j++)
                {
                    int v = 3 * (i * side + j);
                    pos[v] = -half + 2 * half * j / (side - 1);
                    pos[v + 2] = -half + 2 * half * i / (side - 1);
                }
            var idx = new uint[6 * (side - 1) * (side - 1)];
            int k = 0;
            for (int i = 0; i < side - 1; i++)
                for (int j = 0; j < side - 1; j++)
                {
                    uint a = (uint)(i * side + j), b = a + 1, c = a + (uint)side, e = c + 1;
                    idx[k++] = a; idx[k++] = c; idx[k++] = b;
                    idx[k++] = b; idx[k++] = c; idx[k++] = e;
                }
            return new MeshData { Positions = pos, Indices = idx }.Encode();
        }

        /// <summary>A unit cube (8 vertices, 12 triangles), canonical frame, CCW winding.</summary>
        public static byte[] CubeMesh(float half)
        {
            float h = half;
            var m = new MeshData
            {
                Positions = new[] { -h, -h, -h, h, -h, -h, h, h, -h, -h, h, -h, -h, -h, h, h, -h, h, h, h, h, -h, h, h },
                Indices = new uint[] { 0, 2, 1, 0, 3, 2, 4, 5, 6, 4, 6, 7, 0, 1, 5, 0, 5, 4, 2, 3, 7, 2, 7, 6, 1, 2, 6, 1, 6, 5, 0, 4, 7, 0, 7, 3 },
            };
            return m.Encode();
        }
    }
}
