// uuid <-> object bookkeeping for one editor. The uuid is the identity; the handle T is an
// ephemeral editor reference (a component in Unity, a scene object in the headless host)
// that is dropped and re-resolved after reloads (Documentation~/index.md, "Domain reload").
//
// The duplicate rule (Documentation~/index.md, "Identity and duplicates"; docs/PROTOCOL.md §5
// `register`). A copy that kept the original's uuid would make two objects one on the wire, so:
// an object reported as newly created (Ctrl+D, paste, instantiate) that carries a uuid already
// bound to another live object gets a fresh uuid; the original keeps its own.
// Without a creation event (a rescan after a domain reload found two objects with one uuid) the
// one whose editor_ref matches the last known binding keeps the uuid, otherwise the first in scan
// order; every other holder gets a fresh uuid and is reported.
using System;
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    public sealed class IdentityChange
    {
        public readonly string OldUuid; // may be null (object had no valid uuid)
        public readonly string NewUuid;
        public readonly string Reason;
        public IdentityChange(string oldUuid, string newUuid, string reason) { OldUuid = oldUuid; NewUuid = newUuid; Reason = reason; }
    }

    public sealed class IdentityRegistry<T> where T : class
    {
        readonly Dictionary<string, T> byUuid = new Dictionary<string, T>();
        readonly Dictionary<T, string> byObject;
        readonly Dictionary<string, string> lastRef = new Dictionary<string, string>(); // uuid -> editor_ref at last bind
        readonly Func<string> newUuid;

        public IdentityRegistry(IEqualityComparer<T> comparer = null, Func<string> uuidFactory = null)
        {
            byObject = new Dictionary<T, string>(comparer ?? EqualityComparer<T>.Default);
            newUuid = uuidFactory ?? Msg.NewUuid;
        }

        public int Count { get { return byUuid.Count; } }
        public IEnumerable<string> Uuids { get { return byUuid.Keys; } }

        public bool TryGet(string uuid, out T obj) { return byUuid.TryGetValue(uuid, out obj); }
        public bool TryGetUuid(T obj, out string uuid) { return byObject.TryGetValue(obj, out uuid); }
        public bool Contains(string uuid) { return byUuid.ContainsKey(uuid); }

        string Fresh()
        {
            for (int i = 0; i < 16; i++)
            {
                string u = newUuid();
                if (Msg.IsValidUuid(u) && !byUuid.ContainsKey(u)) return u;
            }
            throw new InvalidOperationException("uuid factory keeps returning invalid or taken uuids");
        }

        /// <summary>
        /// An object was created in the editor (duplicate, paste, new). Returns the uuid it must
        /// carry: its own if valid and free, else a fresh one (the original keeps its uuid).
        /// <paramref name="change"/> is non-null when the caller must write a new uuid into the object.
        /// </summary>
        public string OnCreated(T obj, string serializedUuid, string editorRef, out IdentityChange change)
        {
            change = null;
            string existing;
            if (byObject.TryGetValue(obj, out existing)) return existing; // reported twice
            T holder;
            if (Msg.IsValidUuid(serializedUuid) && (!byUuid.TryGetValue(serializedUuid, out holder) || holder == null))
            {
                Bind(serializedUuid, obj, editorRef);
                return serializedUuid;
            }
            string fresh = Fresh();
            change = new IdentityChange(serializedUuid, fresh,
                Msg.IsValidUuid(serializedUuid) ? "duplicate of a live object: the copy gets a fresh uuid, the original keeps " + serializedUuid
                                                 : "object had no valid uuid");
            Bind(fresh, obj, editorRef);
            return fresh;
        }

        /// <summary>Binds a uuid decided elsewhere (e.g. an object created by a remote `create`).</summary>
        public void Bind(string uuid, T obj, string editorRef)
        {
            if (!Msg.IsValidUuid(uuid)) throw new ArgumentException("not a lowercase RFC 4122 uuid: " + uuid);
            T prev;
            if (byUuid.TryGetValue(uuid, out prev) && prev != null && !byObject.Comparer.Equals(prev, obj))
                throw new InvalidOperationException("uuid " + uuid + " is already bound to another object");
            string prevUuid;
            if (byObject.TryGetValue(obj, out prevUuid) && prevUuid != uuid) byUuid.Remove(prevUuid);
            byUuid[uuid] = obj;
            byObject[obj] = uuid;
            if (editorRef != null) lastRef[uuid] = editorRef;
        }

        /// <summary>The object is gone (deleted). Returns its uuid, or null if it was not tracked.</summary>
        public string OnDestroyed(T obj)
        {
            string uuid;
            if (!byObject.TryGetValue(obj, out uuid)) return null;
            byObject.Remove(obj);
            byUuid.Remove(uuid);
            return uuid;
        }

        public bool Remove(string uuid)
        {
            T obj;
            if (!byUuid.TryGetValue(uuid, out obj)) return false;
            byUuid.Remove(uuid);
            if (obj != null) byObject.Remove(obj);
            return true;
        }

        /// <summary>Gives a tracked object a fresh uuid (after a daemon `collision`). Returns it.</summary>
        public string Reassign(string uuid)
        {
            T obj;
            if (!byUuid.TryGetValue(uuid, out obj)) throw new KeyNotFoundException("uuid " + uuid + " is not tracked");
            string fresh = Fresh();
            byUuid.Remove(uuid);
            byUuid[fresh] = obj;
            byObject[obj] = fresh;
            string r;
            if (lastRef.TryGetValue(uuid, out r)) lastRef[fresh] = r;
            return fresh;
        }

        public void UpdateRef(string uuid, string editorRef) { if (byUuid.ContainsKey(uuid)) lastRef[uuid] = editorRef; }

        public string LastRef(string uuid) { string r; return lastRef.TryGetValue(uuid, out r) ? r : null; }

        /// <summary>
        /// Rebuilds the mapping from a full scan (after domain reload, scene load, undo).
        /// Scan items are (object, serialized uuid, editor_ref) in a deterministic order.
        /// Returns the objects whose uuid must change; the caller writes the new uuid into them.
        /// </summary>
        public List<KeyValuePair<T, IdentityChange>> Rebuild(IList<ScanItem> scan)
        {
            var keepRefs = new Dictionary<string, string>(lastRef);
            byUuid.Clear();
            byObject.Clear();
            var result = new List<KeyValuePair<T, IdentityChange>>();
            // Which holder wins each uuid: the one matching the last known editor_ref, else the first.
            var winner = new Dictionary<string, int>();
            for (int i = 0; i < scan.Count; i++)
            {
                string u = scan[i].Uuid;
                if (!Msg.IsValidUuid(u)) continue;
                int w;
                if (!winner.TryGetValue(u, out w)) { winner[u] = i; continue; }
                string known;
                if (keepRefs.TryGetValue(u, out known) && scan[i].EditorRef == known && scan[w].EditorRef != known) winner[u] = i;
            }
            for (int i = 0; i < scan.Count; i++)
            {
                string u = scan[i].Uuid;
                if (Msg.IsValidUuid(u) && winner[u] == i)
                {
                    byUuid[u] = scan[i].Object;
                    byObject[scan[i].Object] = u;
                    if (scan[i].EditorRef != null) lastRef[u] = scan[i].EditorRef;
                }
            }
            for (int i = 0; i < scan.Count; i++)
            {
                string u = scan[i].Uuid;
                if (Msg.IsValidUuid(u) && winner[u] == i) continue;
                string fresh = Fresh();
                byUuid[fresh] = scan[i].Object;
                byObject[scan[i].Object] = fresh;
                if (scan[i].EditorRef != null) lastRef[fresh] = scan[i].EditorRef;
                string why = Msg.IsValidUuid(u) ? "two objects carried uuid " + u + " after a rescan; this one was not the known holder" : "object had no valid uuid";
                result.Add(new KeyValuePair<T, IdentityChange>(scan[i].Object, new IdentityChange(u, fresh, why)));
            }
            return result;
        }

        public struct ScanItem
        {
            public T Object; public string Uuid; public string EditorRef;
            public ScanItem(T obj, string uuid, string editorRef) { Object = obj; Uuid = uuid; EditorRef = editorRef; }
        }
    }
}
