// The per-object identity component of earlier versions: a lowercase RFC 4122 uuid in a
// serialized field. It is no longer added: identity now lives in the scene's hidden
// VibeSyncIdentityMap, so synced objects carry nothing (no prefab-instance override). The class
// stays so scenes saved with it load without "missing script" warnings; the Editor adapter moves
// each uuid into the map and removes the component (unless it is part of a prefab asset).
// Editor-only; VibeSyncBuildStrip removes any left from every scene built into a player.
#if UNITY_EDITOR
using UnityEngine;

namespace VibeSync.Bridge
{
    [DisallowMultipleComponent]
    [AddComponentMenu("")]
    public sealed class VibeSyncId : MonoBehaviour
    {
        [SerializeField, Tooltip("VibeSync identity of this object (managed by the bridge; do not edit)")]
        string uuid = "";

        public string Uuid { get { return uuid; } }

        /// <summary>Editor only: written by the bridge when it assigns or re-assigns identity.</summary>
        public void AssignUuid(string value) { uuid = value ?? ""; }
    }
}
#endif
