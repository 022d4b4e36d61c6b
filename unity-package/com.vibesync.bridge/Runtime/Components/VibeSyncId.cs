// The identity component of earlier versions of the bridge: a uuid in a serialized field. The
// bridge no longer adds it (identity lives in the side store, Runtime/Core/IdentityStore.cs, so
// prefabs and scenes stay untouched); an existing one is read once and its uuid moved into the
// store, and the component is left alone. Editor-only: the class exists only in the Editor, and
// VibeSyncBuildStrip removes such components from every scene built into a player.
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
