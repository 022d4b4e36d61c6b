// Runs the core's [VsTest] methods inside Unity's Test Runner (NUnit), one test case each.
// Under Mono the same sources run through TestRunner.Main (scripts/test-unity); that run is the
// one CI relies on. Tests that need the repository's shared vectors or the daemon binary report
// Ignored here when VIBESYNC_REPO / VIBESYNC_BIN are not set in the editor's environment.
#if UNITY_5_3_OR_NEWER && UNITY_INCLUDE_TESTS
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.ExceptionServices;
using NUnit.Framework;

namespace VibeSync.Bridge.Tests
{
    public class CoreTests
    {
        static IEnumerable<TestCaseData> Cases()
        {
            foreach (var m in TestRunner.Discover()) yield return new TestCaseData(m).SetName(TestRunner.NameOf(m));
        }

        [TestCaseSource(nameof(Cases))]
        public void Run(MethodInfo test)
        {
            try { test.Invoke(null, null); }
            catch (TargetInvocationException e)
            {
                var inner = e.InnerException;
                if (inner is AssertionException && (inner.Message.Contains("VIBESYNC_REPO") || inner.Message.Contains("VIBESYNC_BIN")))
                    Assert.Ignore(inner.Message);
                if (inner is AssertionException) Assert.Fail(inner.Message);
                ExceptionDispatchInfo.Capture(inner).Throw();
            }
        }
    }
}
#endif
