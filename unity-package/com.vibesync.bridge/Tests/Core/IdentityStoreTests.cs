// The side store that keeps Unity identity off the GameObjects (IdentityStore): keys, re-keying at
// save, editor restarts, damaged files, and the duplicate rule working through it.
using System;
using System.Collections.Generic;
using System.Text;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class IdentityStoreTests
    {
        // A stand-in for a GameObject: a saved object has a GlobalObjectId-like key, an unsaved one only an instance id.
        sealed class Go { public int InstanceId; public string SavedKey; public override string ToString() { return "Go" + InstanceId; } }

        static string KeyOf(IdentityStore s, Go go) { return go.SavedKey ?? IdentityStore.TemporaryKey(s.Session, go.InstanceId); }

        /// <summary>What the glue does when it meets an object: the stored uuid, through the duplicate rule.</summary>
        static string Track(IdentityStore s, IdentityRegistry<Go> reg, Go go)
        {
            string stored;
            s.TryGet(KeyOf(s, go), out stored);
            IdentityChange change;
            string uuid = reg.OnCreated(go, stored, go.ToString(), out change);
            if (change != null || stored == null) s.Set(KeyOf(s, go), uuid);
            return uuid;
        }

        [VsTest]
        public static void UuidsSurviveSaveAndEditorRestartWithoutTouchingTheObjects()
        {
            var s = new IdentityStore("sessA");
            var reg = new IdentityRegistry<Go>();
            var saved = new Go { InstanceId = 10, SavedKey = "GlobalObjectId_V1-2-aaaa-100-0" };
            var inPrefab = new Go { InstanceId = 11, SavedKey = "GlobalObjectId_V1-2-aaaa-200-300" };
            var fresh = new Go { InstanceId = 12 }; // created in this session, scene not saved yet
            string u1 = Track(s, reg, saved), u2 = Track(s, reg, inPrefab), u3 = Track(s, reg, fresh);
            Check.True(s.Dirty, "new identities make the store dirty (not the scene)");
            Check.True(IdentityStore.IsTemporary(KeyOf(s, fresh)), "an unsaved object has a temporary key");

            // The scene is saved: the new object gets its local file id, and the glue re-keys it.
            string tmp = KeyOf(s, fresh);
            fresh.SavedKey = "GlobalObjectId_V1-2-aaaa-400-0";
            Check.True(s.Rekey(tmp, fresh.SavedKey), "re-keyed at save");
            byte[] file = s.Serialize();
            Check.True(!s.Dirty, "written");

            // Editor restart: new session, new instance ids, same saved keys.
            List<string> dropped;
            var s2 = IdentityStore.Load(file, "sessB", out dropped);
            Check.Equal(0, dropped.Count, "nothing stale");
            var reg2 = new IdentityRegistry<Go>();
            Check.Equal(u1, Track(s2, reg2, new Go { InstanceId = 90, SavedKey = saved.SavedKey }), "saved object keeps its uuid");
            Check.Equal(u2, Track(s2, reg2, new Go { InstanceId = 91, SavedKey = inPrefab.SavedKey }), "object in a prefab instance keeps its uuid");
            Check.Equal(u3, Track(s2, reg2, new Go { InstanceId = 92, SavedKey = fresh.SavedKey }), "object saved after creation keeps its uuid");
            Check.True(!s2.Dirty, "reading identities back writes nothing");
        }

        [VsTest]
        public static void AnObjectNeverSavedIsForgottenWithItsSession()
        {
            var s = new IdentityStore("sessA");
            s.Set(IdentityStore.TemporaryKey("sessA", 5), Msg.NewUuid());
            s.Set("GlobalObjectId_V1-2-bbbb-1-0", Msg.NewUuid());
            byte[] file = s.Serialize();
            // A domain reload in the same session keeps it (instance ids survive it) ...
            List<string> dropped;
            Check.Equal(2, IdentityStore.Load(file, "sessA", out dropped).Count, "same session keeps the unsaved object");
            // ... an editor restart drops it (another object may get instance id 5).
            var later = IdentityStore.Load(file, "sessB", out dropped);
            Check.Equal(1, later.Count, "the never-saved object is gone");
            Check.Equal(1, dropped.Count, "and reported");
            Check.True(later.Dirty, "the file is rewritten without it");
        }

        [VsTest]
        public static void ADuplicateGetsAFreshUuidAndTheOriginalKeepsItsOwn()
        {
            var s = new IdentityStore("sessA");
            var reg = new IdentityRegistry<Go>();
            var original = new Go { InstanceId = 1, SavedKey = "GlobalObjectId_V1-2-cccc-1-0" };
            string u = Track(s, reg, original);
            // Ctrl+D: the copy is a new object with no key in the store (nothing is copied with it).
            var copy = new Go { InstanceId = 2 };
            string c = Track(s, reg, copy);
            Check.True(c != u && Msg.IsValidUuid(c), "the copy gets a fresh uuid");
            Check.Equal(u, Track(s, reg, original), "the original keeps its own");
            // A store that maps two keys to one uuid (e.g. merged by hand): the duplicate rule applies.
            var s2 = new IdentityStore("sessA");
            s2.Set("k1", u);
            s2.Set("k2", u);
            var reg2 = new IdentityRegistry<Go>();
            string a = Track(s2, reg2, new Go { InstanceId = 3, SavedKey = "k1" });
            string b = Track(s2, reg2, new Go { InstanceId = 4, SavedKey = "k2" });
            Check.True(a == u && b != u, "the first holder keeps the uuid, the second is re-identified");
            string stored;
            Check.True(s2.TryGet("k2", out stored) && stored == b, "and the store records the new one");
        }

        [VsTest]
        public static void ADamagedFileIsAnErrorNeverAnEmptyStore()
        {
            List<string> dropped;
            Check.Contains(Check.Throws<FormatException>(() => IdentityStore.Load(Encoding.UTF8.GetBytes("{\"version\":1,\"ids\":{\"k\":"), "s", out dropped), "torn").Message, "not JSON", "torn file");
            Check.Contains(Check.Throws<FormatException>(() => IdentityStore.Load(Encoding.UTF8.GetBytes("{\"version\":2,\"ids\":{}}"), "s", out dropped), "version").Message, "version", "unknown version");
            Check.Contains(Check.Throws<FormatException>(() => IdentityStore.Load(Encoding.UTF8.GetBytes("{\"version\":1,\"ids\":{\"k\":\"nope\"}}"), "s", out dropped), "bad uuid").Message, "ids[\"k\"]", "names the bad entry");
            Check.Throws<ArgumentException>(() => new IdentityStore("a:b"), "session with ':'");
            Check.Throws<ArgumentException>(() => new IdentityStore("s").Set("k", "NOT-A-UUID"), "bad uuid refused");
        }

        [VsTest]
        public static void TheFileIsDeterministic()
        {
            var a = new IdentityStore("s");
            var b = new IdentityStore("s");
            string u1 = Msg.NewUuid(), u2 = Msg.NewUuid();
            a.Set("b", u2); a.Set("a", u1);
            b.Set("a", u1); b.Set("b", u2);
            Check.Equal(Encoding.UTF8.GetString(a.Serialize()), Encoding.UTF8.GetString(b.Serialize()), "same content, same bytes (keys in order)");
            Check.True(!a.Rekey("missing", "x") && a.Remove("a") && !a.Remove("a"), "rekey/remove report what they did");
        }
    }
}
