// Starts the real daemon binary (env VIBESYNC_BIN, set by scripts/test-unity) for end-to-end tests:
//   vibesync serve --data-dir D --listen ADDR [--config F]   and waits for "listening on ADDR" on stdout.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;

namespace VibeSync.Bridge.Tests
{
    public sealed class DaemonProcess : IDisposable
    {
        static readonly Regex Listening = new Regex(@"listening on (\S+)");
        Process proc;
        readonly StringBuilder stderr = new StringBuilder();
        readonly object gate = new object();
        string addr;

        public readonly string DataDir;
        public string Address { get { return addr; } }
        public string Host { get { return addr.Substring(0, addr.LastIndexOf(':')); } }
        public int Port { get { return int.Parse(addr.Substring(addr.LastIndexOf(':') + 1)); } }
        public string TokenFile { get { return Path.Combine(DataDir, "token"); } }
        public string ConfigFile { get { return DataDir + ".config.toml"; } }
        public bool Running { get { return proc != null && !proc.HasExited; } }

        public static string Binary()
        {
            string bin = Environment.GetEnvironmentVariable("VIBESYNC_BIN");
            if (string.IsNullOrEmpty(bin)) throw new AssertionException("VIBESYNC_BIN is not set: run through scripts/test-unity, which builds target/debug/vibesync");
            if (!File.Exists(bin)) throw new AssertionException("VIBESYNC_BIN " + bin + " does not exist: run `cargo build -p vibesync`");
            return bin;
        }

        /// <summary>Config file contents (TOML) passed with --config; null = the embedded defaults.</summary>
        public string ConfigToml;

        public DaemonProcess(string dataDir = null)
        {
            DataDir = dataDir ?? Path.Combine(Path.GetTempPath(), "vsdaemon-" + Guid.NewGuid().ToString("N"));
        }

        /// <summary>A daemon with a short batch window (live-sync tests): `[sync] batch_window_ms = N`.</summary>
        public static DaemonProcess WithBatchWindow(int ms)
        {
            return new DaemonProcess { ConfigToml = "[sync]\nbatch_window_ms = " + ms + "\n" };
        }

        /// <summary>Starts on 127.0.0.1:0 (first time) or on the given address (a restart on the same port).</summary>
        public DaemonProcess Start(string listen = "127.0.0.1:0")
        {
            if (Running) throw new InvalidOperationException("daemon already running");
            addr = null;
            lock (gate) stderr.Length = 0;
            string args = "serve --data-dir \"" + DataDir + "\" --listen " + listen;
            if (ConfigToml != null)
            {
                string cfg = ConfigFile; // outside the data dir: the daemon creates that one itself
                File.WriteAllText(cfg, ConfigToml);
                args += " --config \"" + cfg + "\"";
            }
            var psi = new ProcessStartInfo(Binary(), args)
            {
                UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            };
            psi.EnvironmentVariables["NO_COLOR"] = "1";
            var p = new Process { StartInfo = psi };
            p.OutputDataReceived += (s, e) =>
            {
                if (e.Data == null) return;
                var m = Listening.Match(e.Data);
                lock (gate) { if (m.Success && addr == null) { addr = m.Groups[1].Value; Monitor.PulseAll(gate); } }
            };
            p.ErrorDataReceived += (s, e) =>
            {
                if (e.Data == null) return;
                lock (gate) { if (stderr.Length < 20000) stderr.AppendLine(e.Data); }
            };
            p.Start();
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            proc = p;
            var deadline = DateTime.UtcNow.AddSeconds(30);
            lock (gate)
            {
                while (addr == null && DateTime.UtcNow < deadline && !p.HasExited) Monitor.Wait(gate, 100);
            }
            if (addr == null)
            {
                string err = StderrTail();
                Kill();
                throw new AssertionException("daemon did not print `listening on ADDR` within 30 s (" + Binary() + " serve --listen " + listen + "); stderr:\n" + err);
            }
            return this;
        }

        public string StderrTail()
        {
            lock (gate)
            {
                string s = stderr.ToString();
                return s.Length > 3000 ? s.Substring(s.Length - 3000) : s;
            }
        }

        /// <summary>Stops the daemon hard (SIGKILL): the client sees the connection die.</summary>
        public void Kill()
        {
            if (proc == null) return;
            try { if (!proc.HasExited) proc.Kill(); } catch (InvalidOperationException) { }
            proc.WaitForExit(10000);
            proc.Dispose();
            proc = null;
        }

        public void Dispose()
        {
            Kill();
            try { Directory.Delete(DataDir, true); } catch (Exception) { }
            try { if (ConfigToml != null) File.Delete(ConfigFile); } catch (Exception) { }
        }
    }
}
