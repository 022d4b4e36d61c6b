// The C# core spells every wire name as tests/vectors/names.json (generated from the Rust enums
// of crates/vibesync-protocol) does.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class NamesTests
    {
        static Dictionary<string, object> Names() { return (Dictionary<string, object>)Vectors.Load("names.json"); }

        static List<Dictionary<string, object>> Objects(string key)
        {
            return ((List<object>)Names()[key]).Cast<Dictionary<string, object>>().ToList();
        }

        static List<string> Strings(string key) { return ((List<object>)Names()[key]).Cast<string>().ToList(); }

        /// <summary>The values of a class's `public const string` fields, minus the listed ones.</summary>
        static HashSet<string> Consts(Type t, params string[] except)
        {
            var r = new HashSet<string>();
            foreach (var f in t.GetFields(BindingFlags.Public | BindingFlags.Static))
                if (f.IsLiteral && f.FieldType == typeof(string) && Array.IndexOf(except, f.Name) < 0) r.Add((string)f.GetRawConstantValue());
            return r;
        }

        static void SameSet(IEnumerable<string> want, HashSet<string> got, string what)
        {
            var w = new HashSet<string>(want);
            Check.True(w.SetEquals(got), what + ": names.json has [" + string.Join(", ", w.OrderBy(x => x)) + "], C# has [" + string.Join(", ", got.OrderBy(x => x)) + "]");
        }

        [VsTest]
        public static void MessageTypesAndDirections()
        {
            var types = Objects("message_types");
            SameSet(types.Select(m => (string)m["type"]), Consts(typeof(MessageType), "ToDaemon", "ToClient", "Both"), "message types");
            foreach (var m in types)
                Check.Equal((string)m["direction"], MessageType.Direction((string)m["type"]), "direction of " + m["type"]);
        }

        [VsTest]
        public static void ErrorCodesAndWhichCloseTheConnection()
        {
            var codes = Objects("error_codes");
            var every = codes.Select(c => (string)c["code"]).Concat(Strings("item_error_codes")).Concat(Strings("rollback_codes"));
            SameSet(every, Consts(typeof(ErrorCode)), "error codes");
            SameSet(every, new HashSet<string>(ErrorCode.All), "ErrorCode.All");
            foreach (var c in codes)
                Check.Equal((bool)c["closes_connection"], ErrorCode.ClosesConnection((string)c["code"]), "closes connection: " + c["code"]);
            Check.Equal(string.Join(",", Strings("item_error_codes")), string.Join(",", ErrorCode.ItemCodes), "per-item codes");
            Check.Equal(string.Join(",", Strings("rollback_codes")), string.Join(",", ErrorCode.RollbackCodes), "rollback codes");
        }

        [VsTest]
        public static void TheRefusalsAnEditorKeepsAChangeUnder()
        {
            // PROTOCOL §6.1: the per-item refusals after which the person's change stays in the
            // scene, marked not synced — the daemon's `kept_by_editor`, Blender's `engine.refusal`.
            SameSet(Strings("item_error_codes").Where(SyncEngine.KeptWhenRefused), new HashSet<string>(Strings("kept_by_editor")), "kept when refused");
        }

        [VsTest]
        public static void StatusesOutcomesPathsActions()
        {
            SameSet(Strings("item_statuses"), Consts(typeof(ItemStatus)), "ack statuses");
            SameSet(Strings("batch_outcomes"), Consts(typeof(BatchOutcome)), "batch outcomes");
            SameSet(Strings("path_kinds"), Consts(typeof(BatchPath)), "batch paths");
            SameSet(Strings("admin_actions"), Consts(typeof(AdminAction)), "admin actions");
            SameSet(Strings("editor_run_states"), Consts(typeof(EditorRunState)), "editor states");
        }

        [VsTest]
        public static void KindsAndOps()
        {
            var clients = Objects("client_kinds");
            SameSet(clients.Select(c => (string)c["kind"]), Consts(typeof(ClientKind)), "client kinds");
            foreach (var c in clients) Check.Equal((bool)c["holds_scene"], ClientKind.HoldsScene((string)c["kind"]), "holds scene: " + c["kind"]);
            var kinds = Objects("entity_kinds");
            Check.Equal(string.Join(",", kinds.Select(k => (string)k["kind"])), string.Join(",", EntityKind.All), "entity kinds");
            foreach (var k in kinds) Check.Equal((bool)k["synced_state"], EntityKind.HasSyncedState((string)k["kind"]), "synced state: " + k["kind"]);
            var ops = Objects("change_ops");
            SameSet(ops.Select(o => (string)o["op"]), Consts(typeof(Ops)), "change ops");
            foreach (var o in ops) Check.Equal((string)o["path"] == BatchPath.Fast, Ops.IsFastPath((string)o["op"]), "fast path: " + o["op"]);
        }
    }
}
