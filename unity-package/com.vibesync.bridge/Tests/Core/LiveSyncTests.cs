// Live sync through the REAL daemon (VIBESYNC_BIN) with a short batch window: in-process
// editors (SyncEngine + the headless host's scene) and the headless host as a process.
// PROTOCOL §6: change -> window -> forwarded batch -> applied hashes -> batch_result.
#if !UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.IO;
using VibeSync.Bridge.Core;
using VibeSync.Bridge.Headless;

namespace VibeSync.Bridge.Tests
{
    public static class LiveSyncTests
    {
        const string CubeVectorHash = "1e150c0c89aa6b5a1e0d6a9555a933a43f9197b5d899ad5a7d8924d480ae2072";

        /// <summary>One in-process editor: its scene, client, engine and what it saw.</summary>
        sealed class Peer : IDisposable
        {
            public readonly HeadlessScene Scene = new HeadlessScene();
            public readonly BridgeClient Client;
            public readonly SyncEngine Engine;
            public readonly List<Dictionary<string, object>> Results = new List<Dictionary<string, object>>();
            public readonly List<Dictionary<string, object>> Applied = new List<Dictionary<string, object>>();
            public readonly List<string> Errors = new List<string>();

            public Peer(DaemonProcess d, string project = "demo", string editor = ClientKind.Unity)
            {
                Client = ClientTests.NewClient(d.Port, d.TokenFile, o => { o.ProjectId = project; o.Editor = editor; });
                Engine = new SyncEngine(Client, Scene);
                Engine.Event += (n, f) =>
                {
                    if (n == "batch_result") Results.Add(f);
                    else if (n == "applied") Applied.Add(f);
                    else if (n == "error" || n == "daemon_error" || n == "apply_failed") Errors.Add(n + ": " + Json.Write(f));
                };
            }

            public void Tick() { Engine.Tick(TimeSpan.FromMilliseconds(20)); }

            public bool HasResult(string uuid, string outcome)
            {
                foreach (var r in Results)
                    if ((string)r["outcome"] == outcome && ((List<object>)r["uuids"]).Contains(uuid)) return true;
                return false;
            }

            public void Dispose() { Client.Stop(); }
        }

        static Action PumpAll(params Peer[] peers)
        {
            return () =>
            {
                foreach (var p in peers) p.Tick();
                System.Threading.Thread.Sleep(2);
            };
        }

        static SceneObject VectorCube(HeadlessScene scene)
        {
            // tests/vectors/state_hash.json "cube", in Unity's frame.
            var o = new SceneObject
            {
                Uuid = Msg.NewUuid(), Name = "Cube", Position = new[] { 1.0, 3, 2 },
                Rotation = new[] { 0, -0.25881904510252074, 0, 0.9659258262890683 }, Scale = new[] { 2.0, 2, 2 },
            };
            scene.Add(o);
            return o;
        }

        [VsTest]
        public static void TwoEditorsSyncACreateAndAMoveThroughTheRealDaemon()
        {
            using (var d = DaemonProcess.WithBatchWindow(20).Start())
            using (var a = new Peer(d))
            using (var b = new Peer(d))
            {
                var pump = PumpAll(a, b);
                string why = " (daemon stderr: " + d.StderrTail() + ")";
                // B first, so it is a participant when A's create is forwarded.
                b.Client.Start();
                Check.Eventually(() => b.Engine.InitialRegisterDone, TimeSpan.FromSeconds(10), "B registered" + why, pump);
                var cube = VectorCube(a.Scene);
                a.Client.Start();

                // create: A registers, sends `create`; B applies it and answers the hashes -> committed.
                Check.Eventually(() => a.HasResult(cube.Uuid, "committed"), TimeSpan.FromSeconds(10), "A's create committed" + why, pump);
                Check.Eventually(() => b.HasResult(cube.Uuid, "committed"), TimeSpan.FromSeconds(5), "B told the batch committed", pump);
                var got = b.Scene.Find(cube.Uuid);
                Check.True(got != null, "B has the cube");
                // The daemon snaps authoritative floats to the 1e-5 grid (§6.5).
                Check.Near(new[] { 1.0, 3, 2 }, got.Position, 1e-5, "B position in Unity's frame");
                Check.Near(new[] { 0, -0.2588190451, 0, 0.9659258263 }, got.Rotation, 1e-5, "B rotation in Unity's frame");
                Check.Near(new[] { 2.0, 2, 2 }, got.Scale, 1e-5, "B scale");
                var firstApply = b.Applied.Find(f => ((Dictionary<string, object>)f["hashes"]).ContainsKey(cube.Uuid));
                Check.Equal("slow", (string)firstApply["path"], "a create travels on the slow path");
                Check.Equal(CubeVectorHash, (string)((Dictionary<string, object>)firstApply["hashes"])[cube.Uuid], "B's hash is the shared vector's");
                var createResult = a.Results.Find(r => ((List<object>)r["uuids"]).Contains(cube.Uuid));
                Check.Equal(createResult["seq"], (object)a.Engine.LastSeq, "A's LastSeq advanced to the COMMIT seq");

                // move: fast path, verified by B's hash, committed.
                cube.Position = new[] { 4.0, 5, 6 };
                a.Engine.MarkDirty(cube.Uuid);
                Check.Eventually(() => a.Results.FindAll(r => (string)r["outcome"] == "committed" && ((List<object>)r["uuids"]).Contains(cube.Uuid)).Count == 2,
                    TimeSpan.FromSeconds(10), "A's move committed" + why, pump);
                Check.Near(new[] { 4.0, 5, 6 }, got.Position, 1e-5, "B moved in Unity's frame");
                var moveApply = b.Applied[b.Applied.Count - 1];
                Check.Equal("fast", (string)moveApply["path"], "a transform travels on the fast path");
                Check.Equal(a.Scene.Capture(cube.Uuid).Hash(), (string)((Dictionary<string, object>)moveApply["hashes"])[cube.Uuid], "B's hash equals A's state hash");

                // Nothing echoes back: B never sends a change, A sent exactly create + transform.
                var end = DateTime.UtcNow.AddMilliseconds(300);
                while (DateTime.UtcNow < end) pump();
                Check.Equal(0L, b.Engine.ChangeMessagesSent, "B sent no change (no echo)");
                Check.Equal(2L, a.Engine.ChangeMessagesSent, "A sent the create and the transform only");
                Check.Equal(0L, a.Engine.BatchesRolledBack + b.Engine.BatchesRolledBack, "nothing rolled back");
                Check.Equal(a.Engine.LastSeq, b.Engine.LastSeq, "both editors at the same seq");
                Check.True(a.Engine.Idle && b.Engine.Idle, "both idle");
                Check.Equal(0, a.Errors.Count + b.Errors.Count, "no errors: " + string.Join("; ", a.Errors.ToArray()) + string.Join("; ", b.Errors.ToArray()));

                // A third editor connecting with last_seq 0 gets the state in the welcome resync.
                using (var c = new Peer(d))
                {
                    var pump3 = PumpAll(a, b, c);
                    c.Client.Start();
                    Check.Eventually(() => c.Scene.Find(cube.Uuid) != null, TimeSpan.FromSeconds(10), "C received the cube by the welcome resync" + why, pump3);
                    Check.Equal("resync", (string)c.Applied[0]["path"], "resync batch");
                    Check.Near(new[] { 4.0, 5, 6 }, c.Scene.Find(cube.Uuid).Position, 1e-5, "C has the current position");
                    Check.Equal(0L, c.Engine.ResyncsRequested, "C did not have to ask");
                }
            }
        }

        [VsTest]
        public static void PausedEditorAnswersHeldTheBatchCommitsAtOnceAndResumeResyncs()
        {
            using (var d = DaemonProcess.WithBatchWindow(20).Start())
            using (var a = new Peer(d))
            using (var b = new Peer(d))
            {
                var pump = PumpAll(a, b);
                string why = " (daemon stderr: " + d.StderrTail() + ")";
                b.Client.Start();
                Check.Eventually(() => b.Engine.InitialRegisterDone, TimeSpan.FromSeconds(10), "B registered" + why, pump);
                var cube = VectorCube(a.Scene);
                a.Client.Start();
                Check.Eventually(() => a.HasResult(cube.Uuid, "committed") && b.HasResult(cube.Uuid, "committed"), TimeSpan.FromSeconds(10), "create committed" + why, pump);
                long seqBeforePlay = b.Engine.LastSeq;

                b.Engine.SetPaused(true); // B enters Play Mode
                cube.Position = new[] { 0.0, 7, 0 };
                a.Engine.MarkDirty(cube.Uuid);
                var sw = System.Diagnostics.Stopwatch.StartNew();
                Check.Eventually(() => a.Results.FindAll(r => (string)r["outcome"] == "committed").Count == 2, TimeSpan.FromSeconds(10), "A's move committed" + why, pump);
                Check.True(sw.ElapsedMilliseconds < 3000, "committed without waiting for the 5 s verify timeout (" + sw.ElapsedMilliseconds + " ms)");
                Check.Equal(1L, b.Engine.BatchesHeld, "B held the batch");
                Check.Near(new[] { 1.0, 3, 2 }, b.Scene.Find(cube.Uuid).Position, 1e-5, "B did not apply it during Play");
                Check.Equal(seqBeforePlay, b.Engine.LastSeq, "B's last seq unchanged during Play");

                b.Engine.SetPaused(false, b.Engine.Snapshot());
                Check.Eventually(() => b.Engine.ResyncBatchesApplied >= 1, TimeSpan.FromSeconds(10), "B resynced after Play" + why, pump);
                Check.Near(new[] { 0.0, 7, 0 }, b.Scene.Find(cube.Uuid).Position, 1e-5, "B caught up with the move");
                Check.Equal(1L, b.Engine.ResyncsRequested, "one resync request");
                Check.Equal(0L, a.Engine.BatchesRolledBack + b.Engine.BatchesRolledBack, "nothing rolled back");
                Check.Equal(0L, b.Engine.ChangeMessagesSent, "B sent nothing back");
            }
        }

        [VsTest]
        public static void KillDuringAMoveThenMoveAgainWhileDownLocalWorkSurvivesTheReplay()
        {
            // PROTOCOL §6.6: local work is never overwritten by a replay.
            using (var d = DaemonProcess.WithBatchWindow(20).Start())
            using (var a = new Peer(d))
            using (var b = new Peer(d, "demo", ClientKind.Blender)) // the other side (registering A's uuid after the restart is no collision)
            {
                var pump = PumpAll(a, b);
                Func<string> why = () => " (daemon stderr: " + d.StderrTail() + ")";
                var kept = new List<Dictionary<string, object>>();
                a.Engine.Event += (n, f) => { if (n == "replay_kept_local") kept.Add(f); };
                int bCollisions = 0;
                b.Engine.Event += (n, f) => { if (n == "collision") bCollisions++; };
                b.Client.Start();
                Check.Eventually(() => b.Engine.InitialRegisterDone, TimeSpan.FromSeconds(10), "B registered" + why(), pump);
                var cube = VectorCube(a.Scene);
                a.Client.Start();
                Check.Eventually(() => a.HasResult(cube.Uuid, "committed") && b.HasResult(cube.Uuid, "committed"), TimeSpan.FromSeconds(10), "create committed" + why(), pump);
                var got = b.Scene.Find(cube.Uuid);
                string listen = d.Address;

                // A moves; the daemon queues it and forwards it to B, which does not answer yet (only A
                // is pumped): no batch_result, the move is unresolved when the daemon is killed.
                cube.Position = new[] { 4.0, 5, 6 };
                a.Engine.MarkDirty(cube.Uuid);
                Check.Eventually(() => a.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(10), "A's move acknowledged" + why(), a.Tick);
                var end = DateTime.UtcNow.AddMilliseconds(150); // the 20 ms window closes, the batch is forwarded
                while (DateTime.UtcNow < end) { a.Tick(); System.Threading.Thread.Sleep(5); }
                Check.True(a.Engine.HasUnresolvedLocalWork(cube.Uuid), "A's move is unresolved");
                d.Kill();

                // The user keeps working while the daemon is down.
                Check.Eventually(() => !a.Client.IsConnected && !b.Client.IsConnected, TimeSpan.FromSeconds(10), "both see the daemon gone", pump);
                cube.Position = new[] { 7.0, 8, 9 };
                a.Engine.MarkDirty(cube.Uuid);
                for (int i = 0; i < 10; i++) pump();

                d.Start(listen); // same port, same data dir: recovery rolls the unfinished batch back
                Check.Eventually(() => a.Client.IsConnected && b.Client.IsConnected, TimeSpan.FromSeconds(15), "both reconnect" + why(), pump);
                Check.Eventually(() => b.Scene.Find(cube.Uuid) != null && StateDiff.Near(b.Scene.Find(cube.Uuid).Position, new[] { 7.0, 8, 9 }, 1e-5)
                                       && !a.Engine.HasUnresolvedLocalWork(cube.Uuid),
                    TimeSpan.FromSeconds(15), "B converges on A's last position, A's change resolved" + why(), pump);
                end = DateTime.UtcNow.AddMilliseconds(400); // a re-sent replay or a late answer must not move anything back
                while (DateTime.UtcNow < end) pump();
                Check.Near(new[] { 7.0, 8, 9 }, b.Scene.Find(cube.Uuid).Position, 1e-5, "B has A's last position");
                Check.Near(new[] { 7.0, 8, 9 }, cube.Position, 1e-12, "A still holds its last position, not the replayed older state");
                Check.True(kept.Exists(f => ((List<object>)f["uuids"]).Contains(cube.Uuid)), "A kept its work over the replay (replay_kept_local)");
                Check.Equal(a.Scene.Capture(cube.Uuid).Hash(), b.Scene.Capture(cube.Uuid).Hash(), "same state hash on both editors");
                Check.True(got != null, "B had the cube before the restart");
                Check.Equal(0, bCollisions, "no uuid collision on re-register");
            }
        }

        [VsTest]
        public static void HeadlessHostCorruptedHashRollsBackAndEveryoneIsCorrected()
        {
            using (var d = DaemonProcess.WithBatchWindow(20).Start())
            using (var a = new Peer(d))
            {
                string why = " (daemon stderr: " + d.StderrTail() + ")";
                var cube = VectorCube(a.Scene);
                a.Client.Start();
                Check.Eventually(() => a.HasResult(cube.Uuid, "committed"), TimeSpan.FromSeconds(10), "A's create committed (no participant yet)" + why, a.Tick);

                string dump = d.DataDir + ".host-dump.json";
                using (var host = new HostProcess("--connect " + d.Address + " --token-file \"" + d.TokenFile + "\" --project demo --dump \"" + dump + "\" --stay"))
                {
                    Action pump = () => { a.Tick(); System.Threading.Thread.Sleep(2); };
                    host.Send("wait-registered 20");
                    host.Send("wait-stat resync_batches_applied 1 20"); // the welcome resync brought the cube
                    host.Send("corrupt-next-hash");
                    host.Send("echo armed");
                    host.WaitEvent("echo", e => (string)e["text"] == "armed", 20, pump);
                    var resync = host.WaitEvent("applied", e => (string)e["path"] == "resync", 15, pump);
                    Check.Equal(CubeVectorHash, (string)((Dictionary<string, object>)resync["hashes"])[cube.Uuid], "host hash of the welcome resync");

                    // A moves; the host applies it but answers a wrong hash -> VERIFY_MISMATCH.
                    cube.Position = new[] { 7.0, 0, 0 };
                    a.Engine.MarkDirty(cube.Uuid);
                    Check.Eventually(() => a.HasResult(cube.Uuid, "rolled_back"), TimeSpan.FromSeconds(10), "A told the move was rolled back" + why, pump);
                    host.WaitEvent("hash_corrupted", null, 15, pump);
                    var hr = host.WaitEvent("batch_result", e => (string)e["outcome"] == "rolled_back", 15, pump);
                    Check.Equal("VERIFY_MISMATCH", (string)hr["error_code"], "rollback reason");
                    // A person's move is never undone where it was made (PROTOCOL 6.4, kept_local).
                    var keepUntil = DateTime.UtcNow.AddSeconds(1);
                    while (DateTime.UtcNow < keepUntil) pump();
                    Check.Near(new[] { 7.0, 0, 0 }, cube.Position, 1e-5, "A keeps its own move");

                    // The host is corrected too, and then moves the cube itself (host -> daemon -> A).
                    host.Send("wait-idle 20");
                    host.Send("dump");
                    var idle = host.WaitEvent("idle", null, 25, pump);
                    Check.Equal(1L, (long)idle["rolled_back"], "host counted the rollback");
                    host.WaitEvent("dumped", null, 15, pump);
                    var doc = (Dictionary<string, object>)Json.Parse(File.ReadAllBytes(dump));
                    var obj = (Dictionary<string, object>)((List<object>)doc["objects"])[0];
                    Check.Near(new[] { 1.0, 3, 2 }, Vectors.Doubles(((Dictionary<string, object>)obj["transform"])["position"]), 1e-5, "host corrected to the authoritative position");
                    Check.True(doc.ContainsKey("stats"), "dump has stats");

                    host.Send("move " + cube.Uuid + " 2 2 2");
                    host.Send("rename " + cube.Uuid + " Renamed Cube");
                    host.Send("wait-idle 20");
                    host.Send("stats");
                    var idle2 = host.WaitEvent("idle", e => (long)e["committed"] >= 1, 25, pump);
                    Check.Eventually(() => cube.Name == "Renamed Cube", TimeSpan.FromSeconds(5), "A got the host's rename", pump);
                    Check.Near(new[] { 2.0, 2, 2 }, cube.Position, 1e-5, "A got the host's move (Unity frame in, Unity frame out)");
                    var stats = host.WaitEvent("stats", null, 15, pump);
                    Check.Equal(2L, (long)stats["change_ops"], "host sent two ops (move, rename), nothing else");
                    Check.Equal((long)host.Events("change_sent").Count, (long)stats["change_messages"], "a change_sent event per change message");
                    Check.Equal(0, host.Events("error").Count, "no host errors: " + host.Stdout);
                    Check.True(idle2 != null, "idle after commit");
                    Check.Equal(0, host.Quit(), "host exit code; stdout:\n" + host.Stdout + "\nstderr:\n" + host.Stderr);
                }
                try { File.Delete(dump); } catch (IOException) { }
            }
        }
    }
}
#endif
