// Message types, field values and builders exactly as spelled in PROTOCOL.md.
using System;
using System.Collections.Generic;
using System.Text;

namespace VibeSync.Bridge.Core
{
    public static class MessageType
    {
        public const string Hello = "hello";
        public const string Welcome = "welcome";
        public const string Error = "error";
        public const string Ping = "ping";
        public const string Pong = "pong";
        public const string Status = "status";
        public const string Register = "register";
        public const string Tombstone = "tombstone";
        public const string Ack = "ack";
        public const string Change = "change";
        public const string BatchBegin = "batch_begin";
        public const string Apply = "apply";
        public const string BatchEnd = "batch_end";
        public const string Applied = "applied";
        public const string BatchResult = "batch_result";
        public const string UserActivity = "user_activity";
        public const string Resync = "resync";
        public const string SafeMode = "safe_mode";
        public const string Admin = "admin";
        public const string AdminResult = "admin_result";
        public const string Peers = "peers";
        public const string Conflict = "conflict";
        public const string QuarantineReleased = "quarantine_released";
        public const string EditorState = "editor_state";
        /// <summary>A fast-path change forwarded at once, before its batch (PROTOCOL §6.3 live previews).</summary>
        public const string Live = "live";
        // Agent tool calls and addon registries (PROTOCOL §9; Unity neither sends nor receives them).
        public const string AddonCommand = "addon_command";
        public const string AddonCancel = "addon_cancel";
        public const string CommandResponse = "command_response";
        public const string CommandProgress = "command_progress";
        public const string RegistryUpdated = "registry_updated";
        public const string AddonRegistered = "addon_registered";
        public const string AddonUnregistered = "addon_unregistered";
        public const string SceneQuery = "scene_query";
        public const string Scene = "scene";

        public const string ToDaemon = "to_daemon", ToClient = "to_client", Both = "both";

        /// <summary>Who sends a message type (tests/vectors/names.json `direction`).</summary>
        public static string Direction(string type)
        {
            switch (type)
            {
                case Hello: case Ping: case Register: case Tombstone: case Change: case Applied:
                case UserActivity: case Admin: case EditorState: case AddonCancel: case AddonRegistered:
                case AddonUnregistered: case SceneQuery:
                    return ToDaemon;
                case Status: case Resync: case AddonCommand: case CommandResponse: case RegistryUpdated:
                    return Both;
                case Welcome: case Error: case Pong: case Ack: case BatchBegin: case Apply: case BatchEnd:
                case BatchResult: case SafeMode: case AdminResult: case Peers: case Conflict: case QuarantineReleased: case Live: case CommandProgress:
                case Scene:
                    return ToClient;
                default:
                    return null;
            }
        }
    }

    /// <summary>admin.action (PROTOCOL §6.7).</summary>
    public static class AdminAction
    {
        public const string SafeModeClear = "safe_mode_clear";
        public const string QuarantineList = "quarantine_list";
        public const string QuarantineRelease = "quarantine_release";
        public const string Verify = "verify";
        public const string Entries = "entries";
        public const string Maintain = "maintain";
        public const string Stop = "stop";
    }

    /// <summary>editor_state.state (PROTOCOL §6.8).</summary>
    public static class EditorRunState
    {
        public const string Running = "running";
        public const string Paused = "paused";
        /// <summary>About to close this connection on purpose (a scene closed, the editor quitting), PROTOCOL §6.8.</summary>
        public const string Closing = "closing";
    }

    public static class ClientKind
    {
        public const string Blender = "blender";
        public const string Unity = "unity";
        public const string Cli = "cli";
        public const string Agent = "agent";
        public const string Test = "test";

        /// <summary>Editors that hold a scene and receive batches (PROTOCOL §6.2).</summary>
        public static bool HoldsScene(string kind) { return kind == Blender || kind == Unity; }
    }

    /// <summary>ack.results[].status values (PROTOCOL §5, §6.1).</summary>
    public static class ItemStatus
    {
        public const string Registered = "registered";
        public const string Updated = "updated";
        public const string Unchanged = "unchanged";
        public const string Collision = "collision";
        public const string Error = "error";
        public const string Tombstoned = "tombstoned";
        public const string Queued = "queued";
        public const string Held = "held"; // change ack: queued but waiting (agent changes while people edit, §6.7)
        public const string Coalesced = "coalesced"; // merged into a later change of this session by the rate limiter (§2)
    }

    /// <summary>Datablock kinds (PROTOCOL §5 register).</summary>
    public static class EntityKind
    {
        public const string Object = "object";
        public const string Mesh = "mesh";
        public const string Material = "material";
        public const string Armature = "armature";
        public const string Action = "action";
        public const string Image = "image";
        public const string Collection = "collection";
        public const string Light = "light";
        public const string Camera = "camera";
        public const string NodeGroup = "node_group"; // Blender node groups (registered, not synced)

        public static readonly string[] All = { Object, Mesh, Material, Armature, Action, Image, Collection, Light, Camera, NodeGroup };

        public static bool IsValid(string k) { return Array.IndexOf(All, k) >= 0; }

        /// <summary>Kinds with synced state (`create.kind`, PROTOCOL §6.1).</summary>
        public static bool HasSyncedState(string k) { return k == Object || k == Collection; }
    }

    /// <summary>change ops (PROTOCOL §6.1).</summary>
    public static class Ops
    {
        public const string Create = "create";
        public const string Delete = "delete";
        public const string Reparent = "reparent";
        public const string Mesh = "mesh";
        public const string Material = "material";
        public const string Transform = "transform";
        public const string Rename = "rename";
        public const string Visibility = "visibility";

        public static bool IsFastPath(string op) { return op == Transform || op == Rename || op == Visibility; }
    }

    public static class BatchPath
    {
        public const string Fast = "fast";
        public const string Slow = "slow";
        public const string Resync = "resync";
    }

    /// <summary>batch_result.outcome values (PROTOCOL §6.4).</summary>
    public static class BatchOutcome
    {
        public const string Committed = "committed";
        public const string RolledBack = "rolled_back";
        public const string Dropped = "dropped";
    }

    /// <summary>A required field was missing or had the wrong type. Message names the field.</summary>
    public sealed class MessageFormatException : Exception
    {
        public readonly string Field;
        public MessageFormatException(string field, string problem)
            : base("field `" + field + "`: " + problem)
        {
            Field = field;
        }
    }

    /// <summary>Typed access to a decoded message with errors that name the field.</summary>
    public static class Msg
    {
        public const int ProtocolVersion = 1;

        public static string Str(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            string name = path == null ? field : path + "." + field;
            if (!m.TryGetValue(field, out v)) throw new MessageFormatException(name, "missing");
            var s = v as string;
            if (s == null) throw new MessageFormatException(name, "expected a string, found " + Json.TypeName(v));
            return s;
        }

        public static string OptStr(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            if (!m.TryGetValue(field, out v) || v == null) return null;
            var s = v as string;
            if (s == null) throw new MessageFormatException(path == null ? field : path + "." + field, "expected a string or null, found " + Json.TypeName(v));
            return s;
        }

        public static long Long(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            string name = path == null ? field : path + "." + field;
            if (!m.TryGetValue(field, out v)) throw new MessageFormatException(name, "missing");
            if (v is long) return (long)v;
            if (v is double)
            {
                double d = (double)v;
                if (d == Math.Floor(d) && Math.Abs(d) < 9.2e18) return (long)d;
            }
            throw new MessageFormatException(name, "expected an integer, found " + Json.TypeName(v));
        }

        public static long OptLong(IDictionary<string, object> m, string field, long dflt)
        {
            return m.ContainsKey(field) && m[field] != null ? Long(m, field) : dflt;
        }

        public static double Num(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            string name = path == null ? field : path + "." + field;
            if (!m.TryGetValue(field, out v)) throw new MessageFormatException(name, "missing");
            if (!Json.IsNumber(v)) throw new MessageFormatException(name, "expected a number, found " + Json.TypeName(v));
            return Json.ToDouble(v);
        }

        public static bool Bool(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            string name = path == null ? field : path + "." + field;
            if (!m.TryGetValue(field, out v)) throw new MessageFormatException(name, "missing");
            if (!(v is bool)) throw new MessageFormatException(name, "expected true or false, found " + Json.TypeName(v));
            return (bool)v;
        }

        public static bool OptBool(IDictionary<string, object> m, string field, bool dflt)
        {
            object v;
            if (!m.TryGetValue(field, out v) || v == null) return dflt;
            return Bool(m, field);
        }

        public static Dictionary<string, object> Obj(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            string name = path == null ? field : path + "." + field;
            if (!m.TryGetValue(field, out v)) throw new MessageFormatException(name, "missing");
            var d = v as Dictionary<string, object>;
            if (d == null) throw new MessageFormatException(name, "expected an object, found " + Json.TypeName(v));
            return d;
        }

        public static List<object> Arr(IDictionary<string, object> m, string field, string path = null)
        {
            object v;
            string name = path == null ? field : path + "." + field;
            if (!m.TryGetValue(field, out v)) throw new MessageFormatException(name, "missing");
            var l = v as List<object>;
            if (l == null) throw new MessageFormatException(name, "expected an array, found " + Json.TypeName(v));
            return l;
        }

        /// <summary>Reads a fixed-length array of finite numbers (t:[3], r:[4], s:[3], colors).</summary>
        public static double[] Vec(IDictionary<string, object> m, string field, int length, string path = null)
        {
            string name = path == null ? field : path + "." + field;
            var l = Arr(m, field, path);
            if (l.Count != length) throw new MessageFormatException(name, "expected " + length + " numbers, found " + l.Count);
            var r = new double[length];
            for (int i = 0; i < length; i++)
            {
                if (!Json.IsNumber(l[i])) throw new MessageFormatException(name + "[" + i + "]", "expected a number, found " + Json.TypeName(l[i]));
                r[i] = Json.ToDouble(l[i]);
                if (double.IsNaN(r[i]) || double.IsInfinity(r[i])) throw new MessageFormatException(name + "[" + i + "]", "not finite");
            }
            return r;
        }

        public static List<object> List(params double[] v)
        {
            var l = new List<object>(v.Length);
            foreach (var d in v) l.Add(d);
            return l;
        }

        // ------------------------------------------------------------------ builders

        public static Dictionary<string, object> Hello(string projectId, string editor, string editorVersion, string clientId, string token, double unitScale, long lastSeq)
        {
            var hello = new Dictionary<string, object>
            {
                { "type", MessageType.Hello },
                { "protocol", (long)ProtocolVersion },
                { "editor", editor ?? ClientKind.Unity },
                { "editor_version", editorVersion ?? "" },
                { "client_id", clientId },
                { "token", token },
                { "unit_scale", unitScale },
                { "last_seq", lastSeq },
            };
            // Omitted unless set: the daemon assigns the project (PROTOCOL §6.8 zero-config pairing).
            if (projectId != null) hello["project_id"] = projectId;
            return hello;
        }

        public static Dictionary<string, object> Ping(string requestId)
        {
            return new Dictionary<string, object> { { "type", MessageType.Ping }, { "request_id", requestId } };
        }

        public static Dictionary<string, object> StatusRequest(string requestId)
        {
            return new Dictionary<string, object> { { "type", MessageType.Status }, { "request_id", requestId } };
        }

        public static Dictionary<string, object> RegisterItem(string uuid, string kind, string name, string editorRef)
        {
            return new Dictionary<string, object> { { "uuid", uuid }, { "kind", kind }, { "name", name }, { "editor_ref", editorRef } };
        }

        public static Dictionary<string, object> Register(string requestId, List<object> items)
        {
            return new Dictionary<string, object> { { "type", MessageType.Register }, { "request_id", requestId }, { "items", items } };
        }

        public static Dictionary<string, object> Tombstone(string requestId, IEnumerable<string> uuids)
        {
            var l = new List<object>();
            foreach (var u in uuids) l.Add(u);
            return new Dictionary<string, object> { { "type", MessageType.Tombstone }, { "request_id", requestId }, { "uuids", l } };
        }

        /// <param name="seen">uuid → the mark of the last `live` frame of it applied (§6.1 `seen`); empty or null: none.</param>
        public static Dictionary<string, object> Change(string requestId, long baseSeq, List<object> changes,
                                                        Dictionary<string, object> seen = null)
        {
            var m = new Dictionary<string, object>
            {
                { "type", MessageType.Change }, { "request_id", requestId }, { "base_seq", baseSeq }, { "changes", changes },
            };
            if (seen != null && seen.Count > 0) m["seen"] = seen;
            return m;
        }

        /// <summary>
        /// `applied` (§6.4). <paramref name="held"/>: the editor received the batch but cannot apply it
        /// now (Unity Play Mode); it sends `resync` when it can apply again. Then hashes is empty.
        /// </summary>
        /// <param name="failed">uuid → why it could not be applied as sent (§6.4), or null.</param>
        /// <param name="spared">`applied.spared` (PROTOCOL §6.4): the uuids of the batch this editor
        /// left unapplied, in whole or in part, to keep a person's edit not taken yet (or could not
        /// apply as sent); null leaves the field out (the editor does not say).</param>
        public static Dictionary<string, object> Applied(string batchId, long seq, IDictionary<string, string> hashes, bool held = false,
                                                         IDictionary<string, string> failed = null, ICollection<string> spared = null)
        {
            var h = new Dictionary<string, object>();
            if (hashes != null) foreach (var kv in hashes) h[kv.Key] = kv.Value;
            var m = new Dictionary<string, object>
            {
                { "type", MessageType.Applied }, { "batch_id", batchId }, { "seq", seq }, { "hashes", h },
            };
            if (held) m["held"] = true;
            if (failed != null && failed.Count > 0)
            {
                var f = new Dictionary<string, object>();
                foreach (var kv in failed) f[kv.Key] = kv.Value;
                m["failed"] = f;
            }
            if (spared != null)
            {
                var l = new List<string>(spared);
                l.Sort(StringComparer.Ordinal);
                var o = new List<object>();
                foreach (var u in l) o.Add(u);
                m["spared"] = o;
            }
            return m;
        }

        public static Dictionary<string, object> UserActivity(bool active)
        {
            return new Dictionary<string, object> { { "type", MessageType.UserActivity }, { "active", active } };
        }

        public static Dictionary<string, object> Resync(string requestId, long sinceSeq)
        {
            return new Dictionary<string, object> { { "type", MessageType.Resync }, { "request_id", requestId }, { "since_seq", sinceSeq } };
        }

        // ------------------------------------------------------------------ validation helpers

        /// <summary>RFC 4122 text form, lowercase, 36 chars, not nil (PROTOCOL §2).</summary>
        public static bool IsValidUuid(string s)
        {
            if (s == null || s.Length != 36) return false;
            bool nonZero = false;
            for (int i = 0; i < 36; i++)
            {
                char c = s[i];
                if (i == 8 || i == 13 || i == 18 || i == 23) { if (c != '-') return false; continue; }
                bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                if (!hex) return false;
                if (c != '0') nonZero = true;
            }
            return nonZero;
        }

        public static string NewUuid() { return Guid.NewGuid().ToString("D"); }

        /// <summary>1–128 chars of [A-Za-z0-9._-], not starting with '.' (PROTOCOL §2).</summary>
        public static bool IsValidProjectId(string s)
        {
            if (string.IsNullOrEmpty(s) || s.Length > 128 || s[0] == '.') return false;
            foreach (char c in s)
            {
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                if (!ok) return false;
            }
            return true;
        }

        /// <summary>Truncates to at most maxBytes of UTF-8 without splitting a character.</summary>
        public static string TruncateUtf8(string s, int maxBytes)
        {
            if (s == null || Encoding.UTF8.GetByteCount(s) <= maxBytes) return s;
            int bytes = 0, i = 0;
            while (i < s.Length)
            {
                int step = char.IsHighSurrogate(s[i]) && i + 1 < s.Length ? 2 : 1;
                int n = Encoding.UTF8.GetByteCount(s.Substring(i, step));
                if (bytes + n > maxBytes) break;
                bytes += n; i += step;
            }
            return s.Substring(0, i);
        }
    }
}
