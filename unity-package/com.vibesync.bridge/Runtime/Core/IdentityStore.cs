// Where a Unity object's uuid is kept without touching the object (Documentation~/index.md,
// "Identity without a component"): a side store, one small JSON file owned by the bridge
// (`UserSettings/VibeSync/identity.json`), mapping a stable object key to the uuid. Nothing is
// added to GameObjects, so identity never shows up as a prefab instance override, a scene diff
// or anything in a player build, and prefabs the user never touched stay clean.
//
// Keys (computed by the Editor glue; opaque here):
//  * a saved object: its GlobalObjectId string (scene GUID + local file id, and the prefab
//    instance for objects inside prefab instances): stable across editor sessions;
//  * an object not saved yet (no local file id): a temporary key `unsaved:<session>:<instance id>`,
//    valid only in the editor session that made it (instance ids are reused after a restart).
//    When its scene is saved the glue re-keys it to its GlobalObjectId (`Rekey`). A temporary key of
//    another session names an object that was never saved: it is dropped when the file is loaded.
// The file is written whole and atomically by the glue; a damaged file is an error (identity is
// never silently reset: fresh uuids would duplicate every object on the other side).
using System;
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    public sealed class IdentityStore
    {
        public const int Version = 1;
        const string TemporaryPrefix = "unsaved:";

        readonly SortedDictionary<string, string> ids = new SortedDictionary<string, string>(StringComparer.Ordinal);

        /// <summary>This editor session's token (temporary keys of other sessions are stale).</summary>
        public string Session { get; private set; }

        /// <summary>Changed since the last <see cref="Serialize"/>.</summary>
        public bool Dirty { get; private set; }

        public int Count { get { return ids.Count; } }

        public IdentityStore(string session)
        {
            if (string.IsNullOrEmpty(session) || session.IndexOf(':') >= 0)
                throw new ArgumentException("session token must be non-empty and contain no ':'", "session");
            Session = session;
        }

        public static string TemporaryKey(string session, int instanceId)
        {
            return TemporaryPrefix + session + ":" + instanceId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        public static bool IsTemporary(string key) { return key != null && key.StartsWith(TemporaryPrefix, StringComparison.Ordinal); }

        static string SessionOf(string key)
        {
            if (!IsTemporary(key)) return null;
            int end = key.IndexOf(':', TemporaryPrefix.Length);
            return end < 0 ? null : key.Substring(TemporaryPrefix.Length, end - TemporaryPrefix.Length);
        }

        public bool TryGet(string key, out string uuid) { return ids.TryGetValue(key, out uuid); }

        /// <summary>Every (key, uuid), in key order.</summary>
        public IEnumerable<KeyValuePair<string, string>> Entries { get { return ids; } }

        public void Set(string key, string uuid)
        {
            if (string.IsNullOrEmpty(key)) throw new ArgumentException("empty key", "key");
            if (!Msg.IsValidUuid(uuid)) throw new ArgumentException("not a lowercase RFC 4122 uuid: " + uuid, "uuid");
            string old;
            if (ids.TryGetValue(key, out old) && old == uuid) return;
            ids[key] = uuid;
            Dirty = true;
        }

        public bool Remove(string key)
        {
            if (!ids.Remove(key)) return false;
            Dirty = true;
            return true;
        }

        /// <summary>An object got a stable key (its scene was saved): move its uuid there. Returns
        /// false when <paramref name="oldKey"/> holds nothing. A uuid already at the new key wins
        /// only if the old key holds none (the object is the same; its stored uuid stays).</summary>
        public bool Rekey(string oldKey, string newKey)
        {
            string uuid;
            if (oldKey == newKey || !ids.TryGetValue(oldKey, out uuid)) return false;
            ids.Remove(oldKey);
            ids[newKey] = uuid;
            Dirty = true;
            return true;
        }

        /// <summary>The file's bytes: {"version":1,"ids":{key:uuid,…}} with keys in ordinal order.</summary>
        public byte[] Serialize()
        {
            var map = new Dictionary<string, object>();
            foreach (var kv in ids) map[kv.Key] = kv.Value;
            var doc = new Dictionary<string, object> { { "version", (long)Version }, { "ids", map } };
            Dirty = false;
            return Json.WriteUtf8(doc);
        }

        /// <summary>Read a store file. Temporary keys of other editor sessions are dropped (their
        /// objects were never saved) and listed in <paramref name="dropped"/>. Throws
        /// FormatException naming what is wrong (never returns an empty store for a damaged file).</summary>
        public static IdentityStore Load(byte[] bytes, string session, out List<string> dropped)
        {
            dropped = new List<string>();
            var store = new IdentityStore(session);
            object parsed;
            try { parsed = Json.Parse(bytes); }
            catch (Exception e) { throw new FormatException("identity store is not JSON (" + e.Message + ")"); }
            var doc = parsed as Dictionary<string, object>;
            if (doc == null) throw new FormatException("identity store: expected a JSON object");
            object v;
            if (!doc.TryGetValue("version", out v) || !(v is long) || (long)v != Version)
                throw new FormatException("identity store: field `version`: expected " + Version + ", found " + (v == null ? "nothing" : Json.TypeName(v) + " " + v));
            object m;
            if (!doc.TryGetValue("ids", out m) || !(m is Dictionary<string, object>))
                throw new FormatException("identity store: field `ids`: expected an object");
            foreach (var kv in (Dictionary<string, object>)m)
            {
                var uuid = kv.Value as string;
                if (!Msg.IsValidUuid(uuid)) throw new FormatException("identity store: ids[\"" + kv.Key + "\"]: not a lowercase RFC 4122 uuid");
                if (IsTemporary(kv.Key) && SessionOf(kv.Key) != session) { dropped.Add(kv.Key); continue; }
                store.ids[kv.Key] = uuid;
            }
            store.Dirty = dropped.Count > 0;
            return store;
        }
    }
}
