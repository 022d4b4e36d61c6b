// Packaging rules that can be checked without Unity: nothing of VibeSync ships in a player build,
// and the package declares its license.
using System;
using System.Collections.Generic;
using System.IO;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class PackagingTests
    {
        static string Pkg() { return Path.Combine(Path.Combine(Vectors.RepoRoot(), "unity-package"), "com.vibesync.bridge"); }

        static Dictionary<string, object> JsonFile(params string[] parts)
        {
            string p = Pkg();
            foreach (var x in parts) p = Path.Combine(p, x);
            return (Dictionary<string, object>)Json.Parse(File.ReadAllBytes(p));
        }

        static string Platforms(Dictionary<string, object> asmdef)
        {
            return string.Join(",", ((List<object>)asmdef["includePlatforms"]).ConvertAll(x => (string)x).ToArray());
        }

        [VsTest]
        public static void CoreAndEditorAssembliesAreEditorOnly()
        {
            Check.Equal("Editor", Platforms(JsonFile("Runtime", "Core", "VibeSync.Bridge.Core.asmdef")), "core assembly");
            Check.Equal("Editor", Platforms(JsonFile("Editor", "VibeSync.Bridge.Editor.asmdef")), "editor assembly");
        }

        [VsTest]
        public static void TheIdentityComponentExistsOnlyInTheEditorAndIsStrippedFromBuilds()
        {
            string id = File.ReadAllText(Path.Combine(Path.Combine(Path.Combine(Pkg(), "Runtime"), "Components"), "VibeSyncId.cs"));
            Check.True(id.Contains("#if UNITY_EDITOR") && id.TrimEnd().EndsWith("#endif"), "VibeSyncId is compiled only in the Editor");
            string strip = File.ReadAllText(Path.Combine(Path.Combine(Pkg(), "Editor"), "VibeSyncBuildStrip.cs"));
            Check.True(strip.Contains("IProcessSceneWithReport") && strip.Contains("DestroyImmediate"), "a build step removes the components from built scenes");
            string map = File.ReadAllText(Path.Combine(Path.Combine(Path.Combine(Pkg(), "Runtime"), "Components"), "VibeSyncIdentityMap.cs"));
            Check.True(map.Contains("#if UNITY_EDITOR") && map.TrimEnd().EndsWith("#endif"), "the identity map is compiled only in the Editor");
            Check.True(strip.Contains("VibeSyncIdentityMap"), "the build step removes the hidden identity object");
        }

        // Identity must not dirty prefabs the user never touched: nothing is added to a synced
        // GameObject. The adapter keeps uuids in the per-scene map on a hidden object and only
        // ever removes the old per-object component (migration). (Source check: the Unity glue
        // cannot run here; scripts/test-unity compiles it against the API stubs.)
        [VsTest]
        public static void IdentityAddsNothingToSyncedObjects()
        {
            string editor = Path.Combine(Pkg(), "Editor");
            foreach (var file in Directory.GetFiles(editor, "*.cs"))
            {
                string src = File.ReadAllText(file);
                Check.True(!src.Contains("AddComponent<VibeSyncId>"), Path.GetFileName(file) + " adds no VibeSyncId component");
                int i = src.IndexOf("AddComponent<VibeSyncIdentityMap>", StringComparison.Ordinal);
                if (i < 0) continue;
                string before = src.Substring(Math.Max(0, i - 600), Math.Min(600, i));
                Check.True(before.Contains("HideFlags.HideInHierarchy") && before.Contains("new GameObject(VibeSyncIdentityMap.ObjectName)"),
                    "the map goes only on its own hidden object");
            }
            string adapter = File.ReadAllText(Path.Combine(editor, "UnitySceneAdapter.cs"));
            Check.True(adapter.Contains("IdentityRegistry<GameObject>"), "identity is tracked per GameObject, not per component");
        }

        [VsTest]
        public static void PackageDeclaresItsLicense()
        {
            Check.Equal("MIT OR Apache-2.0", (string)JsonFile("package.json")["license"], "package.json license");
            string text = File.ReadAllText(Path.Combine(Pkg(), "LICENSE.md"));
            Check.True(text.Contains("MIT License") && text.Contains("Apache License"), "LICENSE.md carries both texts");
        }
    }
}
