// The synced state of one object (PROTOCOL.md §6.1 create fields, §6.4 hashed fields),
// always held in the canonical frame and in meters. Editors convert at their boundary.
using System;
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    public sealed class MaterialState
    {
        public double[] BaseColor = { 1, 1, 1, 1 }; // r, g, b, a
        public double Metallic;
        public double Roughness = 0.5;
        public double[] Emission = { 0, 0, 0 };     // r, g, b

        public MaterialState Clone()
        {
            return new MaterialState
            {
                BaseColor = (double[])BaseColor.Clone(), Metallic = Metallic, Roughness = Roughness, Emission = (double[])Emission.Clone(),
            };
        }

        public Dictionary<string, object> ToJson()
        {
            return new Dictionary<string, object>
            {
                { "base_color", Msg.List(BaseColor) }, { "metallic", Metallic }, { "roughness", Roughness }, { "emission", Msg.List(Emission) },
            };
        }

        public static MaterialState FromJson(IDictionary<string, object> m, string path)
        {
            return new MaterialState
            {
                BaseColor = Msg.Vec(m, "base_color", 4, path),
                Metallic = Msg.Num(m, "metallic", path),
                Roughness = Msg.Num(m, "roughness", path),
                Emission = Msg.Vec(m, "emission", 3, path),
            };
        }

        public bool NearlyEquals(MaterialState o, double eps)
        {
            return o != null && StateDiff.Near(BaseColor, o.BaseColor, eps) && Math.Abs(Metallic - o.Metallic) <= eps
                   && Math.Abs(Roughness - o.Roughness) <= eps && StateDiff.Near(Emission, o.Emission, eps);
        }
    }

    public sealed class ObjectState
    {
        public string Uuid;
        public string Kind = EntityKind.Object;
        public string Name = "";
        public string Parent;          // uuid or null
        public bool Visible = true;
        public double[] T = { 0, 0, 0 };    // meters, canonical frame
        public double[] R = { 0, 0, 0, 1 }; // [x, y, z, w], canonical frame
        public double[] S = { 1, 1, 1 };
        public string MeshHash;        // 64 hex or null
        public MaterialState Material; // or null

        public ObjectState Clone()
        {
            return new ObjectState
            {
                Uuid = Uuid, Kind = Kind, Name = Name, Parent = Parent, Visible = Visible,
                T = (double[])T.Clone(), R = (double[])R.Clone(), S = (double[])S.Clone(),
                MeshHash = MeshHash, Material = Material == null ? null : Material.Clone(),
            };
        }

        /// <summary>The hashed fields of §6.4 (no uuid: the hash is keyed by uuid in `applied`).</summary>
        public Dictionary<string, object> ToHashState()
        {
            var d = new Dictionary<string, object>
            {
                { "kind", Kind }, { "name", Name }, { "parent", Parent }, { "visible", Visible },
                { "t", Msg.List(T) }, { "r", Msg.List(R) }, { "s", Msg.List(S) },
            };
            if (MeshHash != null) d["mesh_hash"] = MeshHash;
            if (Material != null) d["material"] = Material.ToJson();
            return d;
        }

        public string Hash() { return StateHash.Hash(ToHashState()); }

        /// <summary>Full state as JSON (the create-op fields without `op`), for snapshots.</summary>
        public Dictionary<string, object> ToJson()
        {
            var d = ToCreateOp(1.0);
            d.Remove("op");
            return d;
        }

        public static ObjectState FromJson(IDictionary<string, object> d, string path = "state")
        {
            return FromCreate(RemoteChange.Parse(new Dictionary<string, object>(d) { { "op", Ops.Create } }, null, 1.0, path));
        }

        /// <summary>The state a `create` change carries (its own copy of every field).</summary>
        public static ObjectState FromCreate(RemoteChange rc)
        {
            return new ObjectState
            {
                Uuid = rc.Uuid, Kind = rc.Kind, Name = rc.Name, Parent = rc.Parent, Visible = rc.Visible ?? true,
                T = (double[])rc.T.Clone(), R = (double[])rc.R.Clone(), S = (double[])rc.S.Clone(), MeshHash = rc.MeshHash,
                Material = rc.Material == null ? null : rc.Material.Clone(),
            };
        }

        /// <summary>Serializes a snapshot (uuid -> state) so it survives a domain reload (SessionState).</summary>
        public static string WriteSnapshot(IDictionary<string, ObjectState> snapshot)
        {
            var list = new List<object>();
            foreach (var kv in snapshot) list.Add(kv.Value.ToJson());
            return Json.Write(list);
        }

        /// <summary>Serializes what a scene file keeps of what it last synced
        /// (`SyncEngine.BaseSnapshot`): each state, or `{"uuid": …, "unresolved": true}` for a
        /// uuid whose change had no outcome yet (null in the map).</summary>
        public static List<object> WriteBases(IDictionary<string, ObjectState> bases)
        {
            var list = new List<object>();
            foreach (var kv in bases)
                list.Add(kv.Value != null ? (object)kv.Value.ToJson()
                    : new Dictionary<string, object> { { "uuid", kv.Key }, { "unresolved", true } });
            return list;
        }

        /// <summary>Reads what `WriteBases` wrote; `path` names the list in errors.</summary>
        public static Dictionary<string, ObjectState> ReadBases(List<object> list, string path)
        {
            var d = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
            for (int i = 0; i < list.Count; i++)
            {
                string at = path + "[" + i + "]";
                var o = list[i] as Dictionary<string, object>;
                if (o == null) throw new MessageFormatException(at, "expected an object");
                if (Msg.OptBool(o, "unresolved", false))
                {
                    string u = Msg.Str(o, "uuid", at);
                    if (!Msg.IsValidUuid(u)) throw new MessageFormatException(at + ".uuid", "expected a lowercase uuid");
                    d[u] = null;
                    continue;
                }
                var st = FromJson(o, at);
                d[st.Uuid] = st;
            }
            return d;
        }

        public static Dictionary<string, ObjectState> ReadSnapshot(string json)
        {
            var d = new Dictionary<string, ObjectState>();
            var list = Json.Parse(json) as List<object>;
            if (list == null) throw new JsonException("snapshot must be a JSON array", 0);
            for (int i = 0; i < list.Count; i++)
            {
                var o = list[i] as Dictionary<string, object>;
                if (o == null) throw new MessageFormatException("snapshot[" + i + "]", "expected an object");
                var st = FromJson(o, "snapshot[" + i + "]");
                d[st.Uuid] = st;
            }
            return d;
        }

        /// <summary>A `create` change op (§6.1). Lengths divided by unitScale (editor units on the wire).</summary>
        public Dictionary<string, object> ToCreateOp(double unitScale = 1.0)
        {
            var d = new Dictionary<string, object>
            {
                { "op", Ops.Create }, { "uuid", Uuid }, { "kind", Kind }, { "name", Name }, { "parent", Parent },
                { "t", Msg.List(T[0] / unitScale, T[1] / unitScale, T[2] / unitScale) }, { "r", Msg.List(R) }, { "s", Msg.List(S) },
                { "visible", Visible },
            };
            if (MeshHash != null) d["mesh_hash"] = MeshHash;
            if (Material != null) d["material"] = Material.ToJson();
            return d;
        }
    }

    /// <summary>Diffing with the numerical-invariance epsilon 1e-5 (docs/PROTOCOL.md §6.4).</summary>
    public static class StateDiff
    {
        public static bool Near(double[] a, double[] b, double eps)
        {
            if (a == null || b == null) return a == b;
            if (a.Length != b.Length) return false;
            for (int i = 0; i < a.Length; i++) if (Math.Abs(a[i] - b[i]) > eps) return false;
            return true;
        }

        /// <summary>q and -q are the same rotation.</summary>
        public static bool NearRotation(double[] a, double[] b, double eps)
        {
            if (Near(a, b, eps)) return true;
            for (int i = 0; i < 4; i++) if (Math.Abs(a[i] + b[i]) > eps) return false;
            return true;
        }

        public static bool TransformEquals(ObjectState a, ObjectState b, double eps)
        {
            return Near(a.T, b.T, eps) && NearRotation(a.R, b.R, eps) && Near(a.S, b.S, eps);
        }

        public static bool NearlyEquals(ObjectState a, ObjectState b, double eps = StateHash.Epsilon)
        {
            if (a == null || b == null) return a == b;
            return a.Uuid == b.Uuid && a.Kind == b.Kind && a.Name == b.Name && a.Parent == b.Parent && a.Visible == b.Visible
                   && TransformEquals(a, b, eps) && a.MeshHash == b.MeshHash
                   && (a.Material == null ? b.Material == null : a.Material.NearlyEquals(b.Material, eps));
        }

        /// <summary>
        /// The change ops (§6.1) that turn <paramref name="before"/> into <paramref name="after"/>.
        /// Either may be null (create / delete). A `mesh` op is emitted without its attachment:
        /// the caller attaches the mesh buffer. Lengths divided by unitScale.
        /// </summary>
        public static List<Dictionary<string, object>> Diff(ObjectState before, ObjectState after, double eps = StateHash.Epsilon, double unitScale = 1.0)
        {
            var ops = new List<Dictionary<string, object>>();
            if (before == null && after == null) return ops;
            if (after == null)
            {
                ops.Add(new Dictionary<string, object> { { "op", Ops.Delete }, { "uuid", before.Uuid } });
                return ops;
            }
            if (before == null)
            {
                ops.Add(after.ToCreateOp(unitScale));
                return ops;
            }
            string u = after.Uuid;
            if (before.Parent != after.Parent)
                ops.Add(new Dictionary<string, object> { { "op", Ops.Reparent }, { "uuid", u }, { "parent", after.Parent } });
            if (before.Name != after.Name)
                ops.Add(new Dictionary<string, object> { { "op", Ops.Rename }, { "uuid", u }, { "name", after.Name } });
            if (before.Visible != after.Visible)
                ops.Add(new Dictionary<string, object> { { "op", Ops.Visibility }, { "uuid", u }, { "visible", after.Visible } });
            if (!TransformEquals(before, after, eps))
                ops.Add(new Dictionary<string, object>
                {
                    { "op", Ops.Transform }, { "uuid", u },
                    { "t", Msg.List(after.T[0] / unitScale, after.T[1] / unitScale, after.T[2] / unitScale) },
                    { "r", Msg.List(after.R) }, { "s", Msg.List(after.S) },
                });
            if (before.MeshHash != after.MeshHash && after.MeshHash != null)
                ops.Add(new Dictionary<string, object> { { "op", Ops.Mesh }, { "uuid", u }, { "mesh_hash", after.MeshHash } });
            bool matChanged = before.Material == null ? after.Material != null : !before.Material.NearlyEquals(after.Material, eps);
            if (matChanged)
                ops.Add(new Dictionary<string, object> { { "op", Ops.Material }, { "uuid", u }, { "material", after.Material == null ? null : after.Material.ToJson() } });
            return ops;
        }

        /// <summary>
        /// <paramref name="to"/> with the parts (§6.1 op names) in <paramref name="parts"/> taken
        /// from <paramref name="from"/> (null: <paramref name="to"/> as it is).
        /// </summary>
        public static ObjectState WithParts(ObjectState to, ObjectState from, ICollection<string> parts)
        {
            if (to == null || from == null) return to;
            var s = to.Clone();
            foreach (var part in parts)
            {
                switch (part)
                {
                    case Ops.Transform: s.T = (double[])from.T.Clone(); s.R = (double[])from.R.Clone(); s.S = (double[])from.S.Clone(); break;
                    case Ops.Rename: s.Name = from.Name; break;
                    case Ops.Visibility: s.Visible = from.Visible; break;
                    case Ops.Reparent: s.Parent = from.Parent; break;
                    case Ops.Mesh: s.MeshHash = from.MeshHash; break;
                    case Ops.Material: s.Material = from.Material == null ? null : from.Material.Clone(); break;
                }
            }
            return s;
        }

        /// <summary>
        /// The state <paramref name="change"/> makes of <paramref name="state"/> (null: none; the
        /// result is null after a `delete`) — what the daemon holds after it (PROTOCOL.md §6.1).
        /// An op on no object changes nothing.
        /// </summary>
        public static ObjectState Apply(ObjectState state, RemoteChange change)
        {
            if (change.Op == Ops.Delete) return null;
            if (change.Op == Ops.Create) return ObjectState.FromCreate(change);
            if (state == null) return null;
            var s = state.Clone();
            switch (change.Op)
            {
                case Ops.Transform: s.T = (double[])change.T.Clone(); s.R = (double[])change.R.Clone(); s.S = (double[])change.S.Clone(); break;
                case Ops.Rename: s.Name = change.Name; break;
                case Ops.Visibility: s.Visible = change.Visible ?? s.Visible; break;
                case Ops.Reparent: s.Parent = change.Parent; break;
                case Ops.Mesh: s.MeshHash = change.MeshHash; break;
                case Ops.Material: s.Material = change.Material == null ? null : change.Material.Clone(); break;
            }
            return s;
        }
    }
}
