// Where the identity of synced GameObjects is kept: one hidden object per scene ("VibeSync
// Identity", HideInHierarchy) holding object -> uuid pairs, saved with the scene. Nothing is
// added to the synced GameObjects themselves, so identity never shows up as a prefab-instance
// override and never dirties a prefab the user did not touch (Documentation~/index.md,
// "Identity and duplicates"). A reference to an object inside a prefab instance is an ordinary
// scene reference, not an override.
// Editor-only, like VibeSyncId (which it replaces; scenes saved with VibeSyncId components are
// migrated on load): VibeSyncBuildStrip removes the hidden object from every scene built into a
// player.
#if UNITY_EDITOR
using System.Collections.Generic;
using UnityEngine;

namespace VibeSync.Bridge
{
    [DisallowMultipleComponent]
    [AddComponentMenu("")]
    public sealed class VibeSyncIdentityMap : MonoBehaviour
    {
        /// <summary>The hidden object's name.</summary>
        public const string ObjectName = "VibeSync Identity";

        [SerializeField] List<GameObject> objects = new List<GameObject>();
        [SerializeField] List<string> uuids = new List<string>();
        // What the scene last synced of its objects, as the scene was saved (JSON written by
        // ObjectState.WriteBases): the base of edits a person makes and saves while the daemon
        // is away, so that they are sent, not taken for what the daemon holds (PROTOCOL.md §6.6).
        [SerializeField] string synced = "";

        /// <summary>The synced bases saved with the scene (JSON), or "".</summary>
        public string Synced { get { return synced ?? ""; } set { synced = value ?? ""; } }

        /// <summary>The uuid stored for this object, or null.</summary>
        public string UuidOf(GameObject go)
        {
            if (go == null) return null;
            for (int i = 0; i < objects.Count && i < uuids.Count; i++)
                if (ReferenceEquals(objects[i], go)) return string.IsNullOrEmpty(uuids[i]) ? null : uuids[i];
            return null;
        }

        /// <summary>Stores (or replaces) the uuid of this object.</summary>
        public void Set(GameObject go, string uuid)
        {
            for (int i = 0; i < objects.Count && i < uuids.Count; i++)
                if (ReferenceEquals(objects[i], go)) { uuids[i] = uuid ?? ""; return; }
            objects.Add(go);
            uuids.Add(uuid ?? "");
        }

        /// <summary>Every uuid stored, those of objects deleted since the last save included.</summary>
        public List<string> Uuids()
        {
            var l = new List<string>();
            foreach (var u in uuids) if (!string.IsNullOrEmpty(u)) l.Add(u);
            return l;
        }

        /// <summary>Forgets this object (it moved to another scene).</summary>
        public void Remove(GameObject go)
        {
            for (int i = objects.Count - 1; i >= 0; i--)
                if (ReferenceEquals(objects[i], go)) { objects.RemoveAt(i); if (i < uuids.Count) uuids.RemoveAt(i); }
        }

        /// <summary>Drops pairs whose object is gone (called as the scene is saved: an object
        /// deleted and not brought back by undo before the save has left for good). Returns how
        /// many were dropped.</summary>
        public int Prune()
        {
            int dropped = 0;
            for (int i = objects.Count - 1; i >= 0; i--)
            {
                if (objects[i] != null && i < uuids.Count) continue; // Unity's null: destroyed
                objects.RemoveAt(i);
                if (i < uuids.Count) uuids.RemoveAt(i);
                dropped++;
            }
            return dropped;
        }
    }
}
#endif
