// What a scene adapter keeps of the objects another editor deleted (a `delete` applied here,
// PROTOCOL.md §6.1), so that the same uuid made again — the delete undone there (Ctrl+Z in
// Blender), the object back in Blender's synced scene — gets back what only this editor held
// of it: its Unity components (scripts, colliders, audio sources…), which no other editor has
// and no `create` carries. Without it a person's Unity-side work on an object was lost for
// good by another editor's delete and its undo. Engine-free: the Editor's adapter keeps each
// component's type and serialized fields, the headless host its component names.
using System;
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    /// <summary>uuid -> what was kept of the object when it was deleted, the most recent
    /// `Capacity` deletes (an older one is forgotten first).</summary>
    public sealed class DeletedKeep<T>
    {
        readonly Dictionary<string, T> kept = new Dictionary<string, T>(StringComparer.Ordinal);
        readonly LinkedList<string> order = new LinkedList<string>(); // oldest first
        readonly Dictionary<string, LinkedListNode<string>> nodes = new Dictionary<string, LinkedListNode<string>>(StringComparer.Ordinal);

        public DeletedKeep(int capacity = 1000)
        {
            if (capacity < 1) throw new ArgumentOutOfRangeException("capacity", "must be at least 1");
            Capacity = capacity;
        }

        public int Capacity { get; private set; }
        public int Count { get { return kept.Count; } }

        /// <summary>Keeps `what` for `uuid` (replacing what was kept of it); beyond `Capacity`
        /// the oldest is forgotten.</summary>
        public void Keep(string uuid, T what)
        {
            if (uuid == null) throw new ArgumentNullException("uuid");
            Forget(uuid);
            kept[uuid] = what;
            nodes[uuid] = order.AddLast(uuid);
            while (kept.Count > Capacity)
            {
                string oldest = order.First.Value;
                Forget(oldest);
            }
        }

        /// <summary>What was kept of `uuid`, taken out (it is the object's again).</summary>
        public bool TryTake(string uuid, out T what)
        {
            if (uuid != null && kept.TryGetValue(uuid, out what))
            {
                Forget(uuid);
                return true;
            }
            what = default(T);
            return false;
        }

        /// <summary>Forgets what was kept of `uuid` (nothing to give back any more).</summary>
        public void Forget(string uuid)
        {
            LinkedListNode<string> n;
            if (uuid == null || !nodes.TryGetValue(uuid, out n)) return;
            order.Remove(n);
            nodes.Remove(uuid);
            kept.Remove(uuid);
        }
    }
}
