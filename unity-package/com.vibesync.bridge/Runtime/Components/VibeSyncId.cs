// The identity of a synced GameObject: a lowercase RFC 4122 uuid in a serialized field, so it is
// saved with the scene and survives domain reloads and Play Mode. Instance ids and GlobalObjectId
// never go on the wire: they do not survive sessions. The Editor assembly assigns and
// re-assigns it (after Ctrl+D the copy gets a fresh uuid, the original keeps its own).
// Editor-only: the class exists only in the Editor (a MonoBehaviour in an Editor-only assembly could
// not be added to GameObjects), and VibeSyncBuildStrip removes the components from every scene
// built into a player, so nothing of VibeSync ships in a build.
#if UNITY_EDITOR
using UnityEngine;

namespace VibeSync.Bridge
{
    [DisallowMultipleComponent]
    [AddComponentMenu("VibeSync/VibeSync Id")]
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
