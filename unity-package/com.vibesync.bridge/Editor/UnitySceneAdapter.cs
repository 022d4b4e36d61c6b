// ISceneAdapter over the open Unity scenes: the thin layer between the engine-free core and
// GameObjects. Reads and writes local transforms (parent-relative, parent named by uuid) and
// converts Unity (Y up, left-handed) <-> canonical (glTF) with Coordinates. Remote batches are
// applied under Undo with one named group per batch; a failing batch is reverted as a whole.
using System;
using System.Collections.Generic;
using UnityEditor;
using UnityEditor.SceneManagement;
using UnityEngine;
using UnityEngine.Rendering;
using UnityEngine.SceneManagement;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Editor
{
    internal sealed class UnitySceneAdapter : ISceneAdapter, IAdoptingScene
    {
        // Objects that carried no uuid when their scene was opened (not saved since they were
        // synced, e.g. an editor crash): they may take back the daemon's uuids (Adoption.cs).
        readonly HashSet<string> fresh = new HashSet<string>();
        public readonly IdentityRegistry<GameObject> Identity = new IdentityRegistry<GameObject>();
        // Mesh buffers are costly to build: cache per mesh instance, dropped when the mesh asset changes.
        readonly Dictionary<int, KeyValuePair<string, byte[]>> meshCache = new Dictionary<int, KeyValuePair<string, byte[]>>();

        public event Action<string> Log;
        // The components of objects another editor deleted, given back if it makes them again.
        readonly DeletedKeep<List<KeyValuePair<Type, string>>> deletedKeep = new DeletedKeep<List<KeyValuePair<Type, string>>>();

        void Say(string s) { var h = Log; if (h != null) h(s); }

        // ------------------------------------------------------------------ scanning and identity

        static IEnumerable<GameObject> AllSceneObjects()
        {
            for (int i = 0; i < SceneManager.sceneCount; i++)
            {
                var scene = SceneManager.GetSceneAt(i);
                if (!scene.isLoaded) continue;
                foreach (var root in scene.GetRootGameObjects())
                    foreach (var t in root.GetComponentsInChildren<Transform>(true))
                        if ((t.gameObject.hideFlags & (HideFlags.DontSave | HideFlags.HideInHierarchy)) == 0) yield return t.gameObject;
            }
        }

        // Identity lives in one hidden VibeSyncIdentityMap per scene, never on the synced objects
        // (Documentation~/index.md, "Identity and duplicates").
        // scene handle -> its map (found once per scene, not once per object).
        static readonly Dictionary<int, VibeSyncIdentityMap> maps = new Dictionary<int, VibeSyncIdentityMap>();

        static VibeSyncIdentityMap MapOf(Scene scene, bool create)
        {
            VibeSyncIdentityMap m;
            if (maps.TryGetValue(scene.handle, out m) && m != null && m.gameObject.scene == scene) return m;
            maps.Remove(scene.handle);
            foreach (var root in scene.GetRootGameObjects())
            {
                m = root.GetComponent<VibeSyncIdentityMap>();
                if (m != null) { maps[scene.handle] = m; return m; }
            }
            if (!create) return null;
            var holder = new GameObject(VibeSyncIdentityMap.ObjectName);
            holder.hideFlags = HideFlags.HideInHierarchy | HideFlags.HideInInspector | HideFlags.NotEditable;
            SceneManager.MoveGameObjectToScene(holder, scene);
            m = holder.AddComponent<VibeSyncIdentityMap>(); // bookkeeping, not a user edit: no Undo entry
            maps[scene.handle] = m;
            return m;
        }

        /// <summary>The uuid saved for this object: its scene's map, else another open scene's
        /// (it was moved between scenes; the entry moves with it), else a VibeSyncId component
        /// from an older version (migrated into the map).</summary>
        static string StoredUuid(GameObject go)
        {
            var own = MapOf(go.scene, false);
            string u = own != null ? own.UuidOf(go) : null;
            if (u != null) return u;
            for (int i = 0; i < SceneManager.sceneCount; i++)
            {
                var other = SceneManager.GetSceneAt(i);
                if (!other.isLoaded || other == go.scene) continue;
                var m = MapOf(other, false);
                u = m != null ? m.UuidOf(go) : null;
                if (u == null) continue;
                m.Remove(go);
                EditorUtility.SetDirty(m);
                Write(go, u);
                return u;
            }
            var legacy = go.GetComponent<VibeSyncId>();
            if (legacy == null) return null;
            u = legacy.Uuid;
            Write(go, u);
            // Removing a component the bridge added reverts an added-component override; a
            // component that is part of a prefab asset is left (removing it would be an override).
            if (!PrefabUtility.IsPartOfPrefabInstance(legacy) || PrefabUtility.IsAddedComponentOverride(legacy))
                UnityEngine.Object.DestroyImmediate(legacy);
            return string.IsNullOrEmpty(u) ? null : u;
        }

        /// <summary>Rebuilds uuid -> object after a domain reload or scene load
        /// (Documentation~/index.md, "Domain reload").</summary>
        public void Rescan()
        {
            var scan = new List<IdentityRegistry<GameObject>.ScanItem>();
            foreach (var go in AllSceneObjects())
                scan.Add(new IdentityRegistry<GameObject>.ScanItem(go, StoredUuid(go), PathOf(go.transform)));
            foreach (var fix in Identity.Rebuild(scan))
            {
                Write(fix.Key, fix.Value.NewUuid);
                if (fix.Value.OldUuid == null) fresh.Add(fix.Value.NewUuid);
                if (fix.Value.OldUuid != null) Say("re-identified " + PathOf(fix.Key.transform) + ": " + fix.Value.Reason);
            }
        }

        static void Write(GameObject go, string uuid)
        {
            if (!go.scene.IsValid()) return;
            var map = MapOf(go.scene, true);
            map.Set(go, uuid);
            EditorUtility.SetDirty(map);
            EditorSceneManager.MarkSceneDirty(go.scene);
        }

        /// <summary>The scene is being saved: pairs of objects deleted for good are dropped.</summary>
        /// <summary>Keeps the components of an object another editor deleted — type and
        /// serialized fields (`EditorJsonUtility`) — in `deletedKeep`: Unity-only work no other
        /// editor holds (PROTOCOL.md §6.1 `delete`).</summary>
        void KeepComponents(string uuid, GameObject go)
        {
            var kept = new List<KeyValuePair<Type, string>>();
            foreach (var comp in go.GetComponents<Component>())
            {
                if (comp == null || comp is Transform) continue; // a missing script; the synced transform
                kept.Add(new KeyValuePair<Type, string>(comp.GetType(), EditorJsonUtility.ToJson(comp)));
            }
            if (kept.Count > 0) deletedKeep.Keep(uuid, kept);
        }

        /// <summary>Gives an object made again with a uuid another editor had deleted (that
        /// delete undone: Ctrl+Z in Blender, the object back in its synced scene) the components
        /// it had; the `create` then sets its synced parts (mesh, material, pose) as always.</summary>
        void GiveBackComponents(string uuid, GameObject go)
        {
            List<KeyValuePair<Type, string>> kept;
            if (!deletedKeep.TryTake(uuid, out kept)) return;
            foreach (var kv in kept)
            {
                try
                {
                    // Unity's == (a missing component may be a "fake null" in the Editor, which ?? misses).
                    var comp = go.GetComponent(kv.Key);
                    if (comp == null) comp = Undo.AddComponent(go, kv.Key); // one a kept one required is there already
                    if (comp != null) EditorJsonUtility.FromJsonOverwrite(kv.Value, comp);
                }
                catch (Exception e)
                {
                    Say("could not give " + go.name + " back its " + kv.Key.Name + ": " + e.Message);
                }
            }
        }

        public static void PruneBeforeSave(Scene scene)
        {
            var map = MapOf(scene, false);
            if (map != null && map.Prune() > 0) EditorUtility.SetDirty(map);
        }

        /// <summary>The uuids the scene's map holds: its objects, and those deleted since its
        /// last save (their pairs are pruned as it is saved).</summary>
        public static List<string> MapUuids(Scene scene)
        {
            var map = MapOf(scene, false);
            return map != null ? map.Uuids() : new List<string>();
        }

        /// <summary>Keeps in the scene's map what it last synced of its objects
        /// (`SyncEngine.BaseSnapshot`): as the scene is saved (`markDirty`, written with it),
        /// and before a domain reload (in memory only, not an edit of the scene: the engine made
        /// after the reload takes it for the scene it finds, which is not the one on disk).</summary>
        public static void SaveBases(Scene scene, IDictionary<string, ObjectState> bases, bool markDirty)
        {
            var map = MapOf(scene, markDirty && bases.Count > 0);
            if (map == null) return;
            string json = Json.Write(ObjectState.WriteBases(bases));
            if (map.Synced == json) return;
            map.Synced = json;
            if (markDirty) EditorUtility.SetDirty(map);
        }

        /// <summary>What the scene's file kept of what it last synced (`SaveBases`), or null
        /// (none, or unreadable: then the scene as loaded is the base, and the reason is logged).</summary>
        public Dictionary<string, ObjectState> SavedBases(Scene scene)
        {
            var map = MapOf(scene, false);
            if (map == null || string.IsNullOrEmpty(map.Synced)) return null;
            try
            {
                var list = Json.Parse(map.Synced) as List<object>;
                if (list == null) throw new FormatException("expected a JSON array");
                return ObjectState.ReadBases(list, scene.path + ": synced");
            }
            catch (Exception e)
            {
                Say("the synced state saved with " + scene.path + " is unreadable (" + e.Message + "); the scene as loaded is taken for what the daemon holds");
                return null;
            }
        }

        /// <summary>`SavedBases` of every loaded scene.</summary>
        public Dictionary<string, ObjectState> SavedBases()
        {
            Dictionary<string, ObjectState> all = null;
            for (int i = 0; i < SceneManager.sceneCount; i++)
            {
                var b = SavedBases(SceneManager.GetSceneAt(i));
                if (b == null) continue;
                if (all == null) all = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
                foreach (var kv in b) all[kv.Key] = kv.Value;
            }
            return all;
        }

        /// <summary>A hierarchy appeared (Ctrl+D, paste, new, undo of a delete). Returns the uuids to mark dirty.</summary>
        public List<string> OnHierarchyCreated(GameObject root)
        {
            var uuids = new List<string>();
            foreach (var t in root.GetComponentsInChildren<Transform>(true))
            {
                var go = t.gameObject;
                IdentityChange change;
                // A copy (Ctrl+D, paste) has no entry: it gets a fresh uuid. Undo of a delete
                // brings back the same object, whose entry is still in the map.
                string uuid = Identity.OnCreated(go, StoredUuid(go), PathOf(t), out change);
                if (change != null) Write(go, uuid);
                uuids.Add(uuid);
            }
            return uuids;
        }

        public string UuidOf(GameObject go)
        {
            if (go == null) return null;
            string uuid;
            return Identity.TryGetUuid(go, out uuid) ? uuid : null;
        }

        /// <summary>Tracked objects whose GameObject is gone. They are untracked and returned.</summary>
        public List<string> SweepDestroyed()
        {
            var gone = new List<string>();
            foreach (var u in new List<string>(Identity.Uuids))
            {
                GameObject go;
                if (Identity.TryGet(u, out go) && go == null) gone.Add(u); // Unity's null: destroyed
            }
            foreach (var u in gone) Identity.Remove(u);
            return gone;
        }

        /// <summary>Tracked objects that belong to a scene being closed (not deleted by the user).</summary>
        public List<string> UuidsInScene(Scene scene)
        {
            var l = new List<string>();
            foreach (var u in Identity.Uuids)
            {
                GameObject go;
                if (Identity.TryGet(u, out go) && go != null && go.scene == scene) l.Add(u);
            }
            return l;
        }

        public void ForgetAll(IEnumerable<string> uuids) { foreach (var u in new List<string>(uuids)) Identity.Remove(u); }

        public void InvalidateMesh(int instanceId) { meshCache.Remove(instanceId); }

        static string PathOf(Transform t)
        {
            var parts = new List<string>();
            for (; t != null; t = t.parent) parts.Insert(0, t.name);
            return "/" + string.Join("/", parts.ToArray());
        }

        GameObject Find(string uuid)
        {
            GameObject go;
            return Identity.TryGet(uuid, out go) && go != null ? go : null;
        }

        // ------------------------------------------------------------------ capture

        public IList<ObjectState> CaptureAll()
        {
            var l = new List<ObjectState>();
            foreach (var u in Identity.Uuids)
            {
                var s = Capture(u);
                if (s != null) l.Add(s);
            }
            return l;
        }

        public ObjectState Capture(string uuid)
        {
            var go = Find(uuid);
            if (go == null) return null;
            var t = go.transform;
            Vector3 p = t.localPosition, s = t.localScale;
            Quaternion q = t.localRotation;
            var c = Coordinates.UnityToCanonical(new Trs(new double[] { p.x, p.y, p.z }, new double[] { q.x, q.y, q.z, q.w }, new double[] { s.x, s.y, s.z }));
            var st = new ObjectState
            {
                Uuid = uuid, Kind = EntityKind.Object, Name = go.name, Parent = UuidOf(t.parent != null ? t.parent.gameObject : null),
                Visible = go.activeSelf, T = c.T, R = c.R, S = c.S,
            };
            var mf = go.GetComponent<MeshFilter>();
            if (mf != null && mf.sharedMesh != null) st.MeshHash = MeshEntry(mf.sharedMesh).Key;
            var mr = go.GetComponent<Renderer>();
            if (mr != null && mr.sharedMaterial != null) st.Material = ReadMaterial(mr.sharedMaterial);
            return st;
        }

        public bool Holds(string uuid) { return Find(uuid) != null; }

        public string EditorRef(string uuid)
        {
            var go = Find(uuid);
            return go == null ? null : PathOf(go.transform);
        }

        public byte[] MeshAttachment(string uuid)
        {
            var go = Find(uuid);
            var mf = go != null ? go.GetComponent<MeshFilter>() : null;
            return mf != null && mf.sharedMesh != null ? MeshEntry(mf.sharedMesh).Value : null;
        }

        KeyValuePair<string, byte[]> MeshEntry(Mesh mesh)
        {
            KeyValuePair<string, byte[]> e;
            if (meshCache.TryGetValue(mesh.GetInstanceID(), out e)) return e;
            byte[] buf;
            if (!mesh.isReadable) buf = new MeshData().Encode(); // not readable: an empty mesh, hash still stable
            else
            {
                var m = new MeshData();
                var v = mesh.vertices;
                m.Positions = new float[v.Length * 3];
                for (int i = 0; i < v.Length; i++) { m.Positions[3 * i] = v[i].x; m.Positions[3 * i + 1] = v[i].y; m.Positions[3 * i + 2] = v[i].z; }
                var n = mesh.normals;
                if (n != null && n.Length == v.Length)
                {
                    m.Normals = new float[n.Length * 3];
                    for (int i = 0; i < n.Length; i++) { m.Normals[3 * i] = n[i].x; m.Normals[3 * i + 1] = n[i].y; m.Normals[3 * i + 2] = n[i].z; }
                }
                var uv = mesh.uv;
                if (uv != null && uv.Length == v.Length)
                {
                    m.Uv0 = new float[uv.Length * 2];
                    for (int i = 0; i < uv.Length; i++) { m.Uv0[2 * i] = uv[i].x; m.Uv0[2 * i + 1] = uv[i].y; }
                }
                var tris = mesh.triangles;
                m.Indices = new uint[tris.Length];
                for (int i = 0; i < tris.Length; i++) m.Indices[i] = (uint)tris[i];
                buf = m.MirrorZ().Encode(); // Unity (LH) -> canonical (RH): mirror Z, flip winding
            }
            e = new KeyValuePair<string, byte[]>(MeshData.HashOf(buf), buf);
            meshCache[mesh.GetInstanceID()] = e;
            return e;
        }

        static Mesh BuildMesh(MeshData canonical, string name)
        {
            var m = canonical.MirrorZ(); // canonical (RH) -> Unity (LH)
            int vc = m.VertexCount;
            var mesh = new Mesh { name = name };
            if (vc > 65535) mesh.indexFormat = IndexFormat.UInt32;
            var v = new Vector3[vc];
            for (int i = 0; i < vc; i++) v[i] = new Vector3(m.Positions[3 * i], m.Positions[3 * i + 1], m.Positions[3 * i + 2]);
            mesh.vertices = v;
            if (m.Normals != null)
            {
                var n = new Vector3[vc];
                for (int i = 0; i < vc; i++) n[i] = new Vector3(m.Normals[3 * i], m.Normals[3 * i + 1], m.Normals[3 * i + 2]);
                mesh.normals = n;
            }
            if (m.Uv0 != null)
            {
                var uv = new Vector2[vc];
                for (int i = 0; i < vc; i++) uv[i] = new Vector2(m.Uv0[2 * i], m.Uv0[2 * i + 1]);
                mesh.uv = uv;
            }
            var tris = new int[m.Indices.Length];
            for (int i = 0; i < tris.Length; i++) tris[i] = (int)m.Indices[i];
            mesh.triangles = tris;
            if (m.Normals == null) mesh.RecalculateNormals();
            mesh.RecalculateBounds();
            return mesh;
        }

        // Colors: the wire carries linear values (glTF); Unity material colors are authored in gamma.
        static MaterialState ReadMaterial(Material mat)
        {
            var ms = new MaterialState();
            string colorProp = mat.HasProperty("_BaseColor") ? "_BaseColor" : mat.HasProperty("_Color") ? "_Color" : null;
            if (colorProp != null)
            {
                var c = mat.GetColor(colorProp).linear;
                ms.BaseColor = new double[] { c.r, c.g, c.b, mat.GetColor(colorProp).a };
            }
            if (mat.HasProperty("_Metallic")) ms.Metallic = mat.GetFloat("_Metallic");
            if (mat.HasProperty("_Smoothness")) ms.Roughness = 1.0 - mat.GetFloat("_Smoothness");
            else if (mat.HasProperty("_Glossiness")) ms.Roughness = 1.0 - mat.GetFloat("_Glossiness");
            if (mat.HasProperty("_EmissionColor"))
            {
                var e = mat.GetColor("_EmissionColor").linear;
                ms.Emission = new double[] { e.r, e.g, e.b };
            }
            return ms;
        }

        static void WriteMaterial(Material mat, MaterialState ms)
        {
            var c = new Color((float)ms.BaseColor[0], (float)ms.BaseColor[1], (float)ms.BaseColor[2], 1f).gamma;
            c.a = (float)ms.BaseColor[3];
            if (mat.HasProperty("_BaseColor")) mat.SetColor("_BaseColor", c);
            if (mat.HasProperty("_Color")) mat.SetColor("_Color", c);
            if (mat.HasProperty("_Metallic")) mat.SetFloat("_Metallic", (float)ms.Metallic);
            if (mat.HasProperty("_Smoothness")) mat.SetFloat("_Smoothness", (float)(1.0 - ms.Roughness));
            if (mat.HasProperty("_Glossiness")) mat.SetFloat("_Glossiness", (float)(1.0 - ms.Roughness));
            if (mat.HasProperty("_EmissionColor"))
            {
                var e = new Color((float)ms.Emission[0], (float)ms.Emission[1], (float)ms.Emission[2], 1f).gamma;
                mat.SetColor("_EmissionColor", e);
                if (e.maxColorComponent > 0) mat.EnableKeyword("_EMISSION"); else mat.DisableKeyword("_EMISSION");
            }
        }

        // ------------------------------------------------------------------ apply

        public ICollection<string> FreshUuids { get { return new List<string>(fresh); } }

        public bool AdoptUuid(string freshUuid, string known)
        {
            GameObject go, other;
            if (!Identity.TryGet(freshUuid, out go) || go == null) return false;
            if (Identity.TryGet(known, out other) && other != null) return false;
            Identity.Remove(freshUuid);
            Identity.Bind(known, go, PathOf(go.transform));
            Write(go, known);
            fresh.Remove(freshUuid);
            Say("took back " + known + " for " + PathOf(go.transform) + " (the scene was not saved since it was synced)");
            return true;
        }

        public void KeepFresh(string uuid) { fresh.Remove(uuid); }

        public string ReassignUuid(string uuid)
        {
            GameObject go;
            if (!Identity.TryGet(uuid, out go) || go == null) return null;
            string fresh = Identity.Reassign(uuid);
            Write(go, fresh);
            return fresh;
        }

        // uuid -> the parent uuid a batch named that this scene did not have (the object is a root meanwhile).
        readonly Dictionary<string, string> waitingForParent = new Dictionary<string, string>();

        public void ApplyBatch(IncomingBatch batch)
        {
            Undo.IncrementCurrentGroup();
            int group = Undo.GetCurrentGroup();
            Undo.SetCurrentGroupName(batch.UndoName);
            var pendingParents = new List<KeyValuePair<GameObject, string>>();
            batchMaterials.Clear();
            foreach (var c in batch.Changes) if (c.Material != null) batchMaterials[c.Uuid] = c.Material;
            try
            {
                foreach (var c in batch.Changes) ApplyOne(c, batch.UndoName, pendingParents);
                // Children whose parent arrives in this batch, then this batch's parents. A parent this
                // scene does not have makes the object a root (PROTOCOL §6.1) until that parent arrives.
                foreach (var kv in new List<KeyValuePair<string, string>>(waitingForParent))
                {
                    var child = Find(kv.Key);
                    var parent = Find(kv.Value);
                    if (child == null) { waitingForParent.Remove(kv.Key); continue; }
                    if (parent == null) continue;
                    waitingForParent.Remove(kv.Key);
                    Undo.SetTransformParent(child.transform, parent.transform, batch.UndoName);
                }
                // A parent under the object here (a loop) is tried again once the batch's other
                // parents are set: a later change of the same batch may take it out from under the
                // object (its full state at the root, say; PROTOCOL §6.4). Still a loop, it is
                // left as it is, and the engine's read-back reports it.
                var looped = new List<KeyValuePair<Transform, Transform>>();
                foreach (var kv in pendingParents)
                {
                    var parent = kv.Value == null ? null : Find(kv.Value);
                    string uuid = UuidOf(kv.Key);
                    if (uuid != null) waitingForParent.Remove(uuid);
                    if (kv.Value != null && parent == null && uuid != null) waitingForParent[uuid] = kv.Value;
                    var want = parent != null ? parent.transform : null;
                    if (want != null && want.IsChildOf(kv.Key.transform)) { looped.Add(new KeyValuePair<Transform, Transform>(kv.Key.transform, want)); continue; }
                    Undo.SetTransformParent(kv.Key.transform, want, batch.UndoName);
                }
                foreach (var kv in looped)
                    if (!kv.Value.IsChildOf(kv.Key)) Undo.SetTransformParent(kv.Key, kv.Value, batch.UndoName);
                Undo.CollapseUndoOperations(group);
            }
            catch
            {
                Undo.RevertAllDownToGroup(group); // all or nothing
                Rescan();
                throw;
            }
            SceneView.RepaintAll();
        }

        /// <summary>
        /// A live preview (PROTOCOL §6.3): set at once with no Undo record — the batch that follows is
        /// the undo step, so one Ctrl+Z still takes the whole remote edit back.
        /// </summary>
        public void ApplyLive(RemoteChange c)
        {
            var go = Find(c.Uuid);
            if (go == null) throw new InvalidOperationException("`" + c.Op + "` for object " + c.Uuid + ", which is not in the open scenes");
            switch (c.Op)
            {
                case Ops.Transform:
                    var u = Coordinates.CanonicalToUnity(new Trs(c.T, c.R, c.S));
                    var t = go.transform;
                    t.localPosition = new Vector3((float)u.T[0], (float)u.T[1], (float)u.T[2]);
                    t.localRotation = new Quaternion((float)u.R[0], (float)u.R[1], (float)u.R[2], (float)u.R[3]);
                    t.localScale = new Vector3((float)u.S[0], (float)u.S[1], (float)u.S[2]);
                    break;
                case Ops.Rename:
                    go.name = c.Name;
                    break;
                case Ops.Visibility:
                    go.SetActive(c.Visible.Value);
                    break;
                default:
                    throw new InvalidOperationException("`" + c.Op + "` is not a live op");
            }
            SceneView.RepaintAll();
        }

        void ApplyOne(RemoteChange c, string undoName, List<KeyValuePair<GameObject, string>> pendingParents)
        {
            var go = Find(c.Uuid);
            if (go == null && c.Op == Ops.Delete) return; // already gone (e.g. destroyed with its parent)
            if (go == null && c.Op != Ops.Create) throw new InvalidOperationException("`" + c.Op + "` for object " + c.Uuid + ", which is not in the open scenes");
            switch (c.Op)
            {
                case Ops.Create:
                    if (go == null)
                    {
                        go = new GameObject(c.Name);
                        Undo.RegisterCreatedObjectUndo(go, undoName);
                        Write(go, c.Uuid);
                        Identity.Bind(c.Uuid, go, null);
                        GiveBackComponents(c.Uuid, go); // its delete undone in the other editor
                    }
                    else
                    {
                        Undo.RecordObject(go, undoName);
                        go.name = c.Name;
                    }
                    // A create for an object we have updates it in place, every field (resync batches
                    // carry full state): no mesh_hash / material means the object has none.
                    pendingParents.Add(new KeyValuePair<GameObject, string>(go, c.Parent));
                    SetTrs(go, c, undoName);
                    if (go.activeSelf != (c.Visible ?? true)) { Undo.RecordObject(go, undoName); go.SetActive(c.Visible ?? true); }
                    if (c.MeshHash != null) ApplyMesh(go, c, undoName);
                    else
                    {
                        var mf0 = go.GetComponent<MeshFilter>();
                        if (mf0 != null && mf0.sharedMesh != null) { Undo.RecordObject(mf0, undoName); mf0.sharedMesh = null; }
                    }
                    if (c.Material != null) ApplyMaterial(go, c.Material, undoName);
                    else
                    {
                        var r0 = go.GetComponent<Renderer>();
                        if (r0 != null && r0.sharedMaterial != null) { Undo.RecordObject(r0, undoName); r0.sharedMaterial = null; }
                    }
                    break;
                case Ops.Delete:
                    // A received `delete` removes that one object (PROTOCOL.md §6.1): its children
                    // become roots where they stand in the world, and the origin sends their fate.
                    var children = new List<Transform>();
                    for (int i = 0; i < go.transform.childCount; i++) children.Add(go.transform.GetChild(i));
                    foreach (var child in children) Undo.SetTransformParent(child, null, undoName);
                    KeepComponents(c.Uuid, go);
                    Undo.DestroyObjectImmediate(go);
                    SweepDestroyed();
                    break;
                case Ops.Reparent:
                    pendingParents.Add(new KeyValuePair<GameObject, string>(go, c.Parent));
                    break;
                case Ops.Mesh:
                    ApplyMesh(go, c, undoName);
                    break;
                case Ops.Material:
                    if (c.Material == null) ClearMaterial(go, undoName);
                    else ApplyMaterial(go, c.Material, undoName);
                    break;
                case Ops.Transform:
                    SetTrs(go, c, undoName);
                    break;
                case Ops.Rename:
                    Undo.RecordObject(go, undoName);
                    go.name = c.Name;
                    break;
                case Ops.Visibility:
                    Undo.RecordObject(go, undoName);
                    go.SetActive(c.Visible.Value);
                    break;
            }
        }

        /// <summary>The VSM1 buffer of a `mesh` op or a `create` with mesh_hash (§6.3: in its `apply` frame).</summary>
        void ApplyMesh(GameObject go, RemoteChange c, string undoName)
        {
            var mf = go.GetComponent<MeshFilter>();
            if (c.Attachment == null || c.Attachment.Length == 0) return; // hash only: keep the current mesh
            if (mf != null && mf.sharedMesh != null && MeshEntry(mf.sharedMesh).Key == c.MeshHash) return; // already this mesh
            byte[] buffer = MeshData.Verified(c.Attachment, c.MeshHash); // one buffer kept per geometry
            if (buffer == null)
                throw new InvalidOperationException("mesh buffer of " + c.Uuid + " hashes to " + MeshData.HashOf(c.Attachment) + " but the message says " + c.MeshHash);
            var mesh = BuildMesh(MeshData.Parse(buffer), go.name);
            if (mf == null) mf = Undo.AddComponent<MeshFilter>(go); // `??` would miss Unity's fake null
            if (go.GetComponent<MeshRenderer>() == null) Undo.AddComponent<MeshRenderer>(go);
            Undo.RecordObject(mf, undoName);
            mf.sharedMesh = mesh;
            // Remember the remote hash for this mesh instance so the echo hashes equal.
            meshCache[mesh.GetInstanceID()] = new KeyValuePair<string, byte[]>(c.MeshHash, buffer);
        }

        static void SetTrs(GameObject go, RemoteChange c, string undoName)
        {
            var u = Coordinates.CanonicalToUnity(new Trs(c.T, c.R, c.S));
            var t = go.transform;
            Undo.RecordObject(t, undoName);
            t.localPosition = new Vector3((float)u.T[0], (float)u.T[1], (float)u.T[2]);
            t.localRotation = new Quaternion((float)u.R[0], (float)u.R[1], (float)u.R[2], (float)u.R[3]);
            t.localScale = new Vector3((float)u.S[0], (float)u.S[1], (float)u.S[2]);
        }

        /// <summary>The material each uuid of the batch being applied is given.</summary>
        readonly Dictionary<string, MaterialState> batchMaterials = new Dictionary<string, MaterialState>(StringComparer.Ordinal);

        /// <summary>The object has no material any more (PROTOCOL.md §6.1): its renderer shows
        /// none; the material asset stays (other objects may show it).</summary>
        void ClearMaterial(GameObject go, string undoName)
        {
            var r = go.GetComponent<Renderer>();
            if (r == null || r.sharedMaterial == null) return;
            Undo.RecordObject(r, undoName);
            r.sharedMaterial = null;
        }

        void ApplyMaterial(GameObject go, MaterialState ms, string undoName)
        {
            var r = go.GetComponent<Renderer>();
            if (r == null) r = Undo.AddComponent<MeshRenderer>(go);
            var mat = r.sharedMaterial;
            if (mat == null || AssetDatabase.Contains(mat) && AssetDatabase.GetAssetPath(mat).StartsWith("Resources/unity_builtin", StringComparison.Ordinal))
            {
                // Never edit Unity's built-in default material: give the object its own.
                var shader = GraphicsSettings.currentRenderPipeline != null ? GraphicsSettings.currentRenderPipeline.defaultShader : Shader.Find("Standard");
                mat = new Material(shader) { name = go.name + " (VibeSync)" };
                Undo.RecordObject(r, undoName);
                r.sharedMaterial = mat;
            }
            else if (!ReadMaterial(mat).NearlyEquals(ms, 1e-5) && SharedWithOthers(go, mat, ms))
            {
                // A `material` changes the named object only (PROTOCOL.md §6.1): a material other
                // objects show, that the batch does not give the same values, is copied first.
                mat = new Material(mat) { name = mat.name + " (" + go.name + ")" };
                Undo.RecordObject(r, undoName);
                r.sharedMaterial = mat;
            }
            Undo.RecordObject(mat, undoName);
            WriteMaterial(mat, ms);
        }

        /// <summary>Another object of the open scenes shows <paramref name="mat"/> and the batch
        /// does not give it <paramref name="ms"/>.</summary>
        bool SharedWithOthers(GameObject go, Material mat, MaterialState ms)
        {
            foreach (var other in AllSceneObjects())
            {
                if (other == go) continue;
                var r = other.GetComponent<Renderer>();
                if (r == null || r.sharedMaterial != mat) continue;
                string u = UuidOf(other);
                MaterialState given;
                if (u == null || !batchMaterials.TryGetValue(u, out given) || !given.NearlyEquals(ms, 1e-5)) return true;
            }
            return false;
        }
    }
}
