// Packaging rules that can be checked without Unity: nothing of VibeSync ships in a player build,
// and the package declares its license.
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
