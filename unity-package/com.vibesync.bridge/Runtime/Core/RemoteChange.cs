// One change as received inside a fenced batch (PROTOCOL.md §6.1, §6.3), validated and
// converted to meters. Coordinates stay in the canonical frame: the scene adapter converts to
// its own frame (Unity: Coordinates.CanonicalToUnity).
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    public sealed class RemoteChange
    {
        public string Op;
        public string Uuid;
        public string Kind;              // create
        public string Name;              // create, rename
        public string Parent;            // create, reparent (null = root)
        public bool? Visible;            // create, visibility
        public double[] T, R, S;         // create, transform (canonical, meters)
        public string MeshHash;          // create?, mesh
        public MaterialState Material;   // create?, material
        public byte[] Attachment;        // mesh, create with mesh_hash: the VSM1 buffer of the `apply` frame (empty when not sent)
        public bool Automation;          // the `apply` frame's `automation`: automation made this change (PROTOCOL.md §6.3)

        /// <summary>Validates one change object. Throws MessageFormatException naming the field.</summary>
        public static RemoteChange Parse(IDictionary<string, object> c, byte[] attachment, double unitScale, string path = "change")
        {
            var rc = new RemoteChange { Op = Msg.Str(c, "op", path), Uuid = Msg.Str(c, "uuid", path) };
            if (!Msg.IsValidUuid(rc.Uuid)) throw new MessageFormatException(path + ".uuid", "not a lowercase RFC 4122 uuid");
            switch (rc.Op)
            {
                case Ops.Create:
                    rc.Kind = Msg.Str(c, "kind", path);
                    if (!EntityKind.IsValid(rc.Kind)) throw new MessageFormatException(path + ".kind", "unknown kind \"" + rc.Kind + "\"");
                    rc.Name = Msg.Str(c, "name", path);
                    rc.Parent = ParentField(c, path);
                    ReadTrs(rc, c, path, unitScale);
                    rc.Visible = Msg.OptBool(c, "visible", true);
                    rc.MeshHash = Msg.OptStr(c, "mesh_hash", path);
                    if (rc.MeshHash != null) rc.Attachment = attachment ?? Frame.Empty; // §6.3: a create with mesh carries it
                    object mat;
                    if (c.TryGetValue("material", out mat) && mat != null) rc.Material = MaterialState.FromJson(Msg.Obj(c, "material", path), path + ".material");
                    break;
                case Ops.Delete:
                    break;
                case Ops.Reparent:
                    rc.Parent = ParentField(c, path);
                    break;
                case Ops.Mesh:
                    rc.MeshHash = Msg.Str(c, "mesh_hash", path);
                    rc.Attachment = attachment ?? Frame.Empty;
                    break;
                case Ops.Material:
                    {
                        // `null` clears the object's material (PROTOCOL.md §6.1); the field is required.
                        object m;
                        if (!c.TryGetValue("material", out m)) throw new MessageFormatException(path + ".material", "missing (null clears the material)");
                        rc.Material = m == null ? null : MaterialState.FromJson(Msg.Obj(c, "material", path), path + ".material");
                        break;
                    }
                case Ops.Transform:
                    ReadTrs(rc, c, path, unitScale);
                    break;
                case Ops.Rename:
                    rc.Name = Msg.Str(c, "name", path);
                    break;
                case Ops.Visibility:
                    rc.Visible = Msg.Bool(c, "visible", path);
                    break;
                default:
                    throw new MessageFormatException(path + ".op", "unknown op \"" + rc.Op + "\"");
            }
            return rc;
        }

        static string ParentField(IDictionary<string, object> c, string path)
        {
            if (!c.ContainsKey("parent")) throw new MessageFormatException(path + ".parent", "missing (use null for a root object)");
            string p = Msg.OptStr(c, "parent", path);
            if (p != null && !Msg.IsValidUuid(p)) throw new MessageFormatException(path + ".parent", "not a lowercase RFC 4122 uuid");
            return p;
        }

        static void ReadTrs(RemoteChange rc, IDictionary<string, object> c, string path, double unitScale)
        {
            var t = Msg.Vec(c, "t", 3, path);
            rc.T = new[] { t[0] * unitScale, t[1] * unitScale, t[2] * unitScale };
            rc.R = Msg.Vec(c, "r", 4, path);
            rc.S = Msg.Vec(c, "s", 3, path);
        }
    }

    /// <summary>
    /// A complete fenced batch, ready to apply as one undo step. A `create` for a uuid the editor
    /// already has updates that object in place, every field (resync batches carry full state
    /// as `create`; an absent mesh_hash / material means the object has none).
    /// </summary>
    public sealed class IncomingBatch
    {
        public string BatchId;
        public long Seq;
        public string Path;
        public int Count;
        public string RequestId; // the `resync` request it answers, or null (PROTOCOL §6.6)
        public readonly List<RemoteChange> Changes = new List<RemoteChange>();
        public string Broken; // why it cannot be applied, or null

        /// <summary>A name for the undo group, e.g. "VibeSync: 3 changes (seq 60)".</summary>
        public string UndoName { get { return "VibeSync: " + Changes.Count + (Changes.Count == 1 ? " change" : " changes") + " (seq " + Seq + ")"; } }
    }
}
