// End-to-end tests against the real daemon binary (VIBESYNC_BIN).
#if !UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;
using VibeSync.Bridge.Core;
using VibeSync.Bridge.Headless;

namespace VibeSync.Bridge.Tests
{
    public static class DaemonTests
    {
        [VsTest]
        public static void ClientReconnectsWithBackoffAcrossADaemonRestartOnTheSamePort()
        {
            using (var d = new DaemonProcess().Start())
            {
                var scene = new HeadlessScene();
                var a = new SceneObject { Uuid = Msg.NewUuid(), Name = "Cube", Position = new[] { 1.0, 3, 2 } };
                scene.Add(a);
                var c = ClientTests.NewClient(d.Port, d.TokenFile, o =>
                    o.Backoff = new[] { TimeSpan.Zero, TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(600) });
                var engine = new SyncEngine(c, scene);
                var events = new List<string>();
                var registered = new List<Dictionary<string, object>>();
                engine.Event += (n, f) => { events.Add(n); if (n == "registered") registered.Add(f); };
                Action pump = () => engine.Tick(TimeSpan.FromMilliseconds(20));
                try
                {
                    c.Start();
                    Check.Eventually(() => engine.InitialRegisterDone, TimeSpan.FromSeconds(10), "registered with the real daemon (daemon stderr: " + d.StderrTail() + ")", pump);
                    Check.Equal(1L, (long)registered[0]["registered"], "first run: object registered");
                    string firstSession = c.SessionId;
                    int port = d.Port;

                    d.Kill();
                    Check.Eventually(() => events.Contains("disconnected"), TimeSpan.FromSeconds(5), "disconnect noticed", pump);
                    long attemptsAtDrop = c.ConnectAttempts;
                    // While the daemon is down the client keeps trying, spaced by the backoff.
                    var sw = Stopwatch.StartNew();
                    Check.Eventually(() => c.ConnectAttempts >= attemptsAtDrop + 3, TimeSpan.FromSeconds(5), "reconnect attempts while down", pump);
                    Check.True(sw.ElapsedMilliseconds >= 800, "attempts follow the 0/300/600 ms backoff (3 attempts took " + sw.ElapsedMilliseconds + " ms)");
                    Check.True(!c.IsConnected, "not connected while the daemon is down");
                    Check.Contains(c.LastError, "cannot connect", "reason recorded");

                    d.Start("127.0.0.1:" + port);
                    Check.Eventually(() => c.IsConnected && engine.InitialRegisterDone, TimeSpan.FromSeconds(10), "reconnected to the restarted daemon (stderr: " + d.StderrTail() + ")", pump);
                    Check.Equal(2L, c.Connections, "two handshakes");
                    Check.True(c.SessionId != firstSession, "a new session");
                    Check.Equal(2, registered.Count, "registered again after the restart");
                    Check.Equal(0L, (long)registered[1]["collisions"] + (long)registered[1]["errors"], "the daemon remembers the object (no collision, no error)");
                    Check.Equal(1L, (long)registered[1]["unchanged"] + (long)registered[1]["updated"], "known object is unchanged/updated after restart");
                }
                finally { c.Stop(); }
            }
        }

        static string HostExe()
        {
            string exe = Environment.GetEnvironmentVariable("VIBESYNC_HEADLESS_HOST");
            if (string.IsNullOrEmpty(exe)) exe = Path.Combine(AppDomain.CurrentDomain.BaseDirectory, "VibeSyncHeadlessHost.exe");
            if (!File.Exists(exe)) throw new AssertionException("headless host not built at " + exe + ": run scripts/test-unity");
            return exe;
        }

        sealed class HostRun
        {
            public int ExitCode;
            public List<Dictionary<string, object>> Events = new List<Dictionary<string, object>>();
            public string Stdout, Stderr;

            public List<Dictionary<string, object>> Named(string name)
            {
                return Events.FindAll(e => (string)e["event"] == name);
            }
        }

        /// <summary>Runs the headless host with <paramref name="stdin"/> as its script. If it has
        /// not exited after <paramref name="timeoutMs"/>, it is killed and the test fails with what
        /// it printed so far (its own "timed out: ..." errors name the wait that failed) and
        /// <paramref name="context"/> (e.g. the daemon's log).</summary>
        static HostRun RunHost(string args, string stdin, int timeoutMs = 30000, Func<string> context = null)
        {
            var psi = new ProcessStartInfo("mono", "\"" + HostExe() + "\" " + args)
            {
                UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            };
            using (var p = Process.Start(psi))
            {
                var err = new StringBuilder();
                var output = new StringBuilder();
                p.ErrorDataReceived += (s, e) => { if (e.Data != null) lock (err) err.AppendLine(e.Data); };
                p.OutputDataReceived += (s, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
                p.BeginErrorReadLine();
                p.BeginOutputReadLine();
                p.StandardInput.Write(stdin);
                p.StandardInput.Close();
                if (!p.WaitForExit(timeoutMs))
                {
                    p.Kill();
                    string so, se;
                    lock (output) so = output.ToString();
                    lock (err) se = err.ToString();
                    throw new AssertionException("headless host did not exit within " + timeoutMs + " ms; stdout so far:\n" + so +
                        "stderr so far:\n" + se + (context != null ? context() : ""));
                }
                p.WaitForExit(); // also waits for the output readers to finish
                var run = new HostRun { ExitCode = p.ExitCode };
                lock (output) run.Stdout = output.ToString();
                lock (err) run.Stderr = err.ToString();
                foreach (var line in run.Stdout.Split('\n'))
                {
                    if (line.Trim().Length == 0) continue;
                    object v;
                    try { v = Json.Parse(line); }
                    catch (JsonException e) { throw new AssertionException("headless host printed a non-JSON line: " + line + " (" + e.Message + ")"); }
                    run.Events.Add((Dictionary<string, object>)v);
                }
                return run;
            }
        }

        [VsTest]
        public static void HeadlessHostConnectsToTheRealDaemonRegistersAndDumps()
        {
            using (var d = new DaemonProcess().Start())
            {
                string dir = Path.Combine(d.DataDir, "host");
                Directory.CreateDirectory(dir);
                string sceneFile = Path.Combine(dir, "scene.json");
                string u1 = Msg.NewUuid();
                // Two objects carry the same uuid (a duplicate saved in the scene): the second is re-identified.
                File.WriteAllText(sceneFile, "{\"objects\":[" +
                    "{\"uuid\":\"" + u1 + "\",\"name\":\"Cube\",\"kind\":\"object\",\"parent\":null,\"visible\":true,\"transform\":{\"position\":[1,3,2],\"rotation\":[0,-0.2588190451025207,0,0.9659258262890683],\"scale\":[2,2,2]},\"mesh\":null,\"material\":null}," +
                    "{\"uuid\":\"" + u1 + "\",\"name\":\"Cube (1)\",\"kind\":\"object\",\"parent\":null,\"visible\":true,\"transform\":{\"position\":[0,0,0],\"rotation\":[0,0,0,1],\"scale\":[1,1,1]},\"mesh\":null,\"material\":null}]}");
                string dump = Path.Combine(dir, "dump.json");
                // The host's own waits (20 + 10 s) end before the kill (60 s), so a wait that fails
                // is reported by the host ("timed out: ...") with the daemon's log beside it.
                var run = RunHost("--connect " + d.Address + " --token-file \"" + d.TokenFile + "\" --project e2e --scene \"" + sceneFile + "\" --dump \"" + dump + "\"",
                    "wait-registered 20\ncreate auto Light @Cube\nwait-idle 10\nstatus\nsleep 300\nquit\n", 60000,
                    () => "daemon:\n" + d.StderrTail());
                Check.Equal(0, run.ExitCode, "host exit code; stdout:\n" + run.Stdout + "\nstderr:\n" + run.Stderr + "\ndaemon:\n" + d.StderrTail());
                Check.Equal(1, run.Named("reidentified").Count, "duplicate in the scene file re-identified");
                var conn = run.Named("connected");
                Check.Equal(1, conn.Count, "one connection");
                Check.True(Msg.IsValidUuid((string)conn[0]["session_id"]), "session id is a uuid");
                var reg = run.Named("registered")[0];
                Check.Equal(2L, (long)reg["registered"], "both scene objects registered");
                Check.Equal(0L, (long)reg["collisions"] + (long)reg["errors"], "no collision or error");
                var status = run.Named("status");
                Check.Equal(1, status.Count, "status reply");
                var registry = (Dictionary<string, object>)((Dictionary<string, object>)status[0]["status"])["registry"];
                Check.Equal(3L, (long)registry["live"], "daemon registry holds the 2 scene objects + the created child");
                var doc = (Dictionary<string, object>)Json.Parse(File.ReadAllBytes(dump));
                var objs = (List<object>)doc["objects"];
                Check.Equal(3, objs.Count, "dump has 3 objects");
                var cube = (Dictionary<string, object>)objs[0];
                Check.Equal(u1, (string)cube["uuid"], "original keeps its uuid");
                Check.True((string)((Dictionary<string, object>)objs[1])["uuid"] != u1, "copy has a fresh uuid");
                Check.Equal(u1, (string)((Dictionary<string, object>)objs[2])["parent"], "child parented by uuid");
                var tr = (Dictionary<string, object>)cube["transform"];
                Check.Near(new[] { 1.0, 3, 2 }, Vectors.Doubles(tr["position"]), 1e-12, "position kept in Unity's frame");
                Check.True(doc.ContainsKey("last_seq"), "dump has last_seq");
                Check.True(run.Named("exit").Count == 1, "exit event");
            }
        }

        [VsTest]
        public static void HeadlessHostAppliesABatchLikeTheEditorAndDumpsUnityCoordinates()
        {
            // A scripted daemon sends the batch at a chosen moment (LiveSyncTests use the real one).
            using (var fake = new FakeDaemon())
            {
                string u = Msg.NewUuid();
                long seq = 77;
                fake.OnRequest = f =>
                {
                    if (f.Type == "register")
                    {
                        var reply = fake.DefaultReply(f);
                        // Right after the ack, forward a batch as if Blender had made the cube.
                        new System.Threading.Thread(() =>
                        {
                            System.Threading.Thread.Sleep(50);
                            fake.SendBatch(seq, "slow", new Dictionary<string, object>
                            {
                                { "op", "create" }, { "uuid", u }, { "kind", "object" }, { "name", "Cube" }, { "parent", null },
                                { "t", Msg.List(1, 3, -2) }, { "r", Msg.List(0, 0.25881904510252074, 0, 0.9659258262890683) }, { "s", Msg.List(2, 2, 2) }, { "visible", true },
                            });
                        }).Start();
                        return reply;
                    }
                    return fake.DefaultReply(f);
                };
                string dump = Path.Combine(fake.Dir, "dump.json");
                var run = RunHost("--connect 127.0.0.1:" + fake.Port + " --token-file \"" + fake.TokenFile + "\" --project e2e --dump \"" + dump + "\"",
                    "create auto Seed\nwait-seq 77 10\nquit\n");
                Check.Equal(0, run.ExitCode, "host exit code; stdout:\n" + run.Stdout + "\nstderr:\n" + run.Stderr);
                var applied = run.Named("applied");
                Check.Equal(1, applied.Count, "one batch applied");
                Check.Equal("1e150c0c89aa6b5a1e0d6a9555a933a43f9197b5d899ad5a7d8924d480ae2072", (string)((Dictionary<string, object>)applied[0]["hashes"])[u], "state hash of the shared vector");
                var sent = fake.WaitFor("applied", 1, null, 2);
                Check.Equal(1, sent.Count, "applied sent to the daemon");
                var doc = (Dictionary<string, object>)Json.Parse(File.ReadAllBytes(dump));
                Check.Equal(77L, (long)doc["last_seq"], "dump records last_seq");
                Dictionary<string, object> cube = null;
                foreach (Dictionary<string, object> o in (List<object>)doc["objects"]) if ((string)o["uuid"] == u) cube = o;
                Check.True(cube != null, "cube in the dump");
                var tr = (Dictionary<string, object>)cube["transform"];
                Check.Near(new[] { 1.0, 3, 2 }, Vectors.Doubles(tr["position"]), 1e-12, "Unity position");
                Check.Near(new[] { 0, -0.2588190451, 0, 0.9659258263 }, Vectors.Doubles(tr["rotation"]), 1e-7, "Unity rotation (float32, as a Transform holds it)");
            }
        }
    }
}
#endif
