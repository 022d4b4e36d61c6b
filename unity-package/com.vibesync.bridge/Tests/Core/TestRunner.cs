// A tiny test runner so the core's tests run under Mono without NUnit:
// every public static void method marked [VsTest] in this assembly runs once;
// the last line printed is "N passed, N failed" and the exit code is the failure count (capped).
// Usage: mono VibeSyncTests.exe [name-substring ...]
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;

namespace VibeSync.Bridge.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class VsTestAttribute : Attribute { }

    public sealed class AssertionException : Exception
    {
        public AssertionException(string m) : base(m) { }
    }

    public static class TestRunner
    {
        /// <summary>All tests, "Class.Method" -> method, in declaration order per class.</summary>
        public static List<MethodInfo> Discover()
        {
            return typeof(TestRunner).Assembly.GetTypes()
                .OrderBy(t => t.FullName, StringComparer.Ordinal)
                .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static)
                    .Where(m => m.GetCustomAttributes(typeof(VsTestAttribute), false).Length > 0)
                    .OrderBy(m => m.MetadataToken))
                .ToList();
        }

        public static string NameOf(MethodInfo m) { return m.DeclaringType.Name + "." + m.Name; }

#if !UNITY_5_3_OR_NEWER
        public static int Main(string[] args)
        {
            var all = Discover();
            var selected = args.Length == 0 ? all : all.Where(m => args.Any(a => NameOf(m).IndexOf(a, StringComparison.OrdinalIgnoreCase) >= 0)).ToList();
            int passed = 0, failed = 0;
            var total = Stopwatch.StartNew();
            foreach (var m in selected)
            {
                var sw = Stopwatch.StartNew();
                string error = null;
                try { m.Invoke(null, null); }
                catch (TargetInvocationException e) { error = Describe(e.InnerException ?? e); }
                catch (Exception e) { error = Describe(e); }
                sw.Stop();
                if (error == null) { passed++; Console.WriteLine("PASS " + NameOf(m) + " (" + sw.ElapsedMilliseconds + " ms)"); }
                else { failed++; Console.WriteLine("FAIL " + NameOf(m) + " (" + sw.ElapsedMilliseconds + " ms): " + error); }
                Console.Out.Flush();
            }
            Console.WriteLine("time " + total.ElapsedMilliseconds + " ms");
            Console.WriteLine(passed + " passed, " + failed + " failed");
            return Math.Min(failed, 100);
        }
#endif

        static string Describe(Exception e)
        {
            if (e is AssertionException) return e.Message;
            return e.GetType().Name + ": " + e.Message + "\n" + e.StackTrace;
        }
    }
}
