// Drives the headless host (Tools~/HeadlessHost) as a separate process, interactively: commands
// on stdin, one JSON event per stdout line — the way the end-to-end tests use it.
#if !UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;
using System.Threading;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public sealed class HostProcess : IDisposable
    {
        readonly Process proc;
        readonly List<Dictionary<string, object>> events = new List<Dictionary<string, object>>();
        readonly StringBuilder stdout = new StringBuilder(), stderr = new StringBuilder();
        readonly object gate = new object();

        public static string Exe()
        {
            string exe = Environment.GetEnvironmentVariable("VIBESYNC_HEADLESS_HOST");
            if (string.IsNullOrEmpty(exe)) exe = Path.Combine(AppDomain.CurrentDomain.BaseDirectory, "VibeSyncHeadlessHost.exe");
            if (!File.Exists(exe)) throw new AssertionException("headless host not built at " + exe + ": run scripts/test-unity");
            return exe;
        }

        public HostProcess(string args)
        {
            var psi = new ProcessStartInfo("mono", "\"" + Exe() + "\" " + args)
            {
                UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            };
            proc = new Process { StartInfo = psi };
            proc.OutputDataReceived += (s, e) =>
            {
                if (e.Data == null) return;
                lock (gate)
                {
                    stdout.AppendLine(e.Data);
                    if (e.Data.Trim().Length > 0)
                    {
                        try { events.Add((Dictionary<string, object>)Json.Parse(e.Data)); }
                        catch (Exception ex) { events.Add(new Dictionary<string, object> { { "event", "unparsable" }, { "line", e.Data }, { "error", ex.Message } }); }
                    }
                    Monitor.PulseAll(gate);
                }
            };
            proc.ErrorDataReceived += (s, e) => { if (e.Data != null) lock (gate) stderr.AppendLine(e.Data); };
            proc.Start();
            proc.BeginOutputReadLine();
            proc.BeginErrorReadLine();
        }

        public void Send(string command)
        {
            proc.StandardInput.WriteLine(command);
            proc.StandardInput.Flush();
        }

        public List<Dictionary<string, object>> Events(string name)
        {
            lock (gate) return events.FindAll(e => (string)e["event"] == name);
        }

        public string Stdout { get { lock (gate) return stdout.ToString(); } }
        public string Stderr { get { lock (gate) return stderr.ToString(); } }

        /// <summary>
        /// Waits for the first event named <paramref name="name"/> matching the predicate; runs
        /// <paramref name="pump"/> meanwhile (in-process editors must keep answering the daemon).
        /// </summary>
        public Dictionary<string, object> WaitEvent(string name, Func<Dictionary<string, object>, bool> match = null, double seconds = 15, Action pump = null)
        {
            var end = DateTime.UtcNow.AddSeconds(seconds);
            while (true)
            {
                if (pump != null) pump();
                lock (gate)
                {
                    foreach (var e in events)
                        if ((string)e["event"] == name && (match == null || match(e))) return e;
                    var left = end - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero || proc.HasExited)
                        throw new AssertionException("headless host: no `" + name + "` event within " + seconds + " s" + (proc.HasExited ? " (exited)" : "") + "; stdout:\n" + stdout + "\nstderr:\n" + stderr);
                    var slice = TimeSpan.FromMilliseconds(pump != null ? 5 : 200);
                    Monitor.Wait(gate, left < slice ? left : slice);
                }
            }
        }

        /// <summary>Sends `quit` (or closes stdin) and returns the exit code.</summary>
        public int Quit(int timeoutMs = 10000)
        {
            try { Send("quit"); proc.StandardInput.Close(); } catch (IOException) { } catch (InvalidOperationException) { }
            if (!proc.WaitForExit(timeoutMs)) { try { proc.Kill(); } catch (InvalidOperationException) { } throw new AssertionException("headless host did not exit after quit; stdout:\n" + Stdout); }
            proc.WaitForExit();
            return proc.ExitCode;
        }

        public void Dispose()
        {
            try { if (!proc.HasExited) { proc.Kill(); proc.WaitForExit(5000); } } catch (InvalidOperationException) { }
            proc.Dispose();
        }
    }
}
#endif
