// Nothing of VibeSync ships in a player build: the assemblies are Editor-only (asmdef
// includePlatforms ["Editor"]) and this build step removes the hidden VibeSync Identity object
// (and VibeSyncId components an older version added) from every scene as it is built into a player (Unity calls it with a null report when entering Play Mode,
// where the ids are kept). The scene files themselves are not changed.
using UnityEditor.Build;
using UnityEditor.Build.Reporting;
using UnityEngine;
using UnityEngine.SceneManagement;

namespace VibeSync.Bridge.Editor
{
    internal sealed class VibeSyncBuildStrip : IProcessSceneWithReport
    {
        public int callbackOrder { get { return 0; } }

        public void OnProcessScene(Scene scene, BuildReport report)
        {
            if (report == null) return; // entering Play Mode, not building a player
            foreach (var root in scene.GetRootGameObjects())
            {
                if (root.GetComponent<VibeSyncIdentityMap>() != null)
                {
                    Object.DestroyImmediate(root, false);
                    continue;
                }
                foreach (var id in root.GetComponentsInChildren<VibeSyncId>(true))
                    Object.DestroyImmediate(id, false);
            }
        }
    }
}
