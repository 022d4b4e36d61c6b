// Sync engine tests through the headless host's scene (the same ISceneAdapter logic the editor
// glue mirrors) against the scripted fake daemon. HeadlessScene lives in Tools~/ (not compiled by
// Unity), so this file is Mono-only.
#if !UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using VibeSync.Bridge.Core;
using VibeSync.Bridge.Headless;

namespace VibeSync.Bridge.Tests
{
    public static class EngineTests
    {
        sealed class Rig : IDisposable
        {
            public FakeDaemon Daemon = new FakeDaemon();
            public HeadlessScene Scene = new HeadlessScene();
            public BridgeClient Client;
            public SyncEngine Engine;
            public readonly List<string> Events = new List<string>();
            public readonly List<Dictionary<string, object>> EventFields = new List<Dictionary<string, object>>();

            public Rig(Action<Rig> setup = null)
            {
                if (setup != null) setup(this);
                Client = ClientTests.NewClient(Daemon.Port, Daemon.TokenFile);
                Engine = new SyncEngine(Client, Scene);
                Engine.Event += (n, f) => { Events.Add(n); EventFields.Add(f); };
            }

            public void Pump() { Engine.Tick(TimeSpan.FromMilliseconds(50)); }

            public void StartAndRegister()
            {
                Client.Start();
                Check.Eventually(() => Engine.InitialRegisterDone, TimeSpan.FromSeconds(5), "initial register done", Pump);
            }

            public SceneObject Add(string name, double x = 0, double y = 0, double z = 0)
            {
                var o = new SceneObject { Uuid = Msg.NewUuid(), Name = name, Position = new[] { x, y, z } };
                Scene.Add(o);
                return o;
            }

            /// <summary>All change ops the daemon has received so far, flattened.</summary>
            public List<Dictionary<string, object>> Ops()
            {
                var l = new List<Dictionary<string, object>>();
                foreach (var f in Daemon.Received("change"))
                    foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"]) l.Add(op);
                return l;
            }

            public void Settle(int ms = 150)
            {
                var end = DateTime.UtcNow.AddMilliseconds(ms);
                while (DateTime.UtcNow < end) { Pump(); System.Threading.Thread.Sleep(10); }
            }

            public void Dispose() { Client.Stop(); Daemon.Dispose(); }
        }

        static Dictionary<string, object> CubeCreate(string uuid)
        {
            // The state of tests/vectors/state_hash.json "cube": Blender (1,2,3), 30° about Z, scale 2.
            return new Dictionary<string, object>
            {
                { "op", "create" }, { "uuid", uuid }, { "kind", "object" }, { "name", "Cube" }, { "parent", null },
                { "t", Msg.List(1, 3, -2) }, { "r", Msg.List(0, 0.25881904510252074, 0, 0.9659258262890683) }, { "s", Msg.List(2, 2, 2) }, { "visible", true },
            };
        }

        [VsTest]
        public static void RegistersTheSceneOnWelcomeThenSendsCreates()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 1, 2, 3);
                var b = r.Add("B");
                b.Parent = a.Uuid;
                r.StartAndRegister();
                var reg = r.Daemon.Received("register")[0].Message;
                var items = (List<object>)reg["items"];
                Check.Equal(2, items.Count, "two items registered");
                var first = (Dictionary<string, object>)items[0];
                Check.Equal(a.Uuid, (string)first["uuid"], "uuid");
                Check.Equal("object", (string)first["kind"], "kind");
                Check.Equal("/A", (string)first["editor_ref"], "editor_ref is the hierarchy path");
                Check.Equal("/A/B", (string)((Dictionary<string, object>)items[1])["editor_ref"], "child path");
                r.Daemon.WaitFor("change", 1, r.Pump);
                var ops = r.Ops();
                Check.Equal(2, ops.Count, "a create per newly registered object");
                Check.Equal("create", (string)ops[0]["op"], "op");
                Check.Near(new[] { 1.0, 2, -3 }, Vectors.Doubles(ops[0]["t"]), 1e-12, "position converted to canonical");
                Check.Equal(a.Uuid, (string)ops[1]["parent"], "parent by uuid");
                Check.Equal(r.Engine.LastSeq, (long)r.Daemon.Received("change")[0].Message["base_seq"], "base_seq is the last applied daemon seq");
                Check.True(r.Events.Contains("registered"), "registered event");
            }
        }

        [VsTest]
        public static void CollisionGivesTheNewcomerAFreshUuid()
        {
            string collided = null;
            using (var r = new Rig(rig => rig.Daemon.OnRequest = f =>
            {
                if (f.Type != "register") return rig.Daemon.DefaultReply(f);
                var items = (List<object>)f.Message["items"];
                var results = new List<object>();
                foreach (Dictionary<string, object> it in items)
                {
                    bool first = collided == null;
                    if (first) collided = (string)it["uuid"];
                    results.Add(new Dictionary<string, object> { { "uuid", it["uuid"] }, { "status", first ? "collision" : "registered" }, { "error_code", null }, { "message", "uuid is live for OB:Cube" } });
                }
                return new Dictionary<string, object> { { "type", "ack" }, { "request_id", f.Message["request_id"] }, { "seq", rig.Daemon.NextSeq() }, { "results", results } };
            }))
            {
                var a = r.Add("A");
                string original = a.Uuid;
                r.StartAndRegister();
                r.Daemon.WaitFor("register", 2, r.Pump);
                Check.True(a.Uuid != original && Msg.IsValidUuid(a.Uuid), "object got a fresh uuid");
                Check.True(r.Scene.Find(original) == null && r.Scene.Find(a.Uuid) == a, "registry follows");
                var second = (Dictionary<string, object>)((List<object>)r.Daemon.Received("register")[1].Message["items"])[0];
                Check.Equal(a.Uuid, (string)second["uuid"], "re-registered under the fresh uuid");
                Check.True(r.Events.Contains("collision"), "collision reported");
            }
        }

        [VsTest]
        public static void AppliesAFencedBatchAsOneStepAndAnswersWithStateHashes()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                long seq = r.Daemon.NextSeq();
                string id = r.Daemon.SendBatch(seq, "slow", CubeCreate(u),
                    new Dictionary<string, object> { { "op", "rename" }, { "uuid", u }, { "name", "Cube" } });
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var o = r.Scene.Find(u);
                Check.True(o != null, "object created");
                Check.Near(new[] { 1.0, 3, 2 }, o.Position, 1e-12, "Unity position (PROTOCOL §6 example)");
                Check.Near(new[] { 0, -0.2588190451, 0, 0.9659258263 }, o.Rotation, 1e-9, "Unity rotation");
                Check.Near(new[] { 2.0, 2, 2 }, o.Scale, 0, "scale");
                Check.Equal(1, r.Scene.UndoSteps, "one undo step for the batch");
                Check.Equal(id, (string)applied["batch_id"], "batch id echoed");
                Check.Equal(seq, (long)applied["seq"], "seq echoed");
                var hashes = (Dictionary<string, object>)applied["hashes"];
                // Same state as the shared vector "cube": the hash must be the vector's.
                Check.Equal("84ac9bdc3982f7dc99a49c513250f3cbca2f989ce3fd1816e51e7b1857dba66b", (string)hashes[u], "state hash equals tests/vectors/state_hash.json cube");
                Check.Equal(seq, r.Engine.LastSeq, "last seq advanced");
            }
        }

        [VsTest]
        public static void EchoOfAnAppliedBatchIsNotSentBack()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", CubeCreate(u));
                r.Daemon.WaitFor("applied", 1, r.Pump);
                int before = r.Daemon.Received("change").Count + r.Daemon.Received("register").Count;
                // Unity publishes the change events of our own apply a frame later.
                r.Engine.MarkDirty(u);
                r.Settle();
                Check.Equal(before, r.Daemon.Received("change").Count + r.Daemon.Received("register").Count, "no change or register echoed");
                Check.Equal(0, r.Engine.DirtyCount, "dirty set drained");
            }
        }

        [VsTest]
        public static void LocalEditIsSentAsCanonicalChangeAndUserActivity()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump); // the create
                a.Position = new[] { 1.0, 3.0, 2.0 };
                a.Rotation = new[] { 0, -0.25881904510252074, 0, 0.9659258262890683 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                var op = (Dictionary<string, object>)((List<object>)r.Daemon.Received("change")[1].Message["changes"])[0];
                Check.Equal("transform", (string)op["op"], "transform op");
                Check.Near(new[] { 1.0, 3, -2 }, Vectors.Doubles(op["t"]), 1e-12, "canonical position");
                Check.Near(new[] { 0, 0.25881904510252074, 0, 0.9659258262890683 }, Vectors.Doubles(op["r"]), 1e-12, "canonical rotation");
                var ua = r.Daemon.WaitFor("user_activity", 1, r.Pump);
                Check.Equal(true, (bool)ua[0].Message["active"], "user activity reported");
                // A sub-epsilon wiggle is not a change (numerical invariance).
                a.Position = new[] { 1.000003, 3.0, 2.0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(2, r.Daemon.Received("change").Count, "sub-epsilon edit not sent");
            }
        }

        [VsTest]
        public static void DuplicateIsRegisteredUnderAFreshUuidAndDeleteIsSent()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                IdentityChange ch;
                var copy = r.Scene.Duplicate(a, out ch);
                r.Engine.MarkDirty(copy.Uuid);
                var regs = r.Daemon.WaitFor("register", 2, r.Pump);
                var items = (List<object>)regs[1].Message["items"];
                Check.Equal(1, items.Count, "only the copy is registered");
                Check.Equal(copy.Uuid, (string)((Dictionary<string, object>)items[0])["uuid"], "under its fresh uuid");
                Check.True(copy.Uuid != a.Uuid, "original keeps its own uuid");
                r.Daemon.WaitFor("change", 2, r.Pump);
                foreach (var u in r.Scene.Delete(a)) r.Engine.MarkDirty(u);
                r.Daemon.WaitFor("change", 3, r.Pump);
                var ops = r.Ops();
                var last = ops[ops.Count - 1];
                Check.Equal("delete", (string)last["op"], "delete op");
                Check.Equal(a.Uuid, (string)last["uuid"], "of the original");
            }
        }

        [VsTest]
        public static void BrokenBatchIsNotAppliedAndAResyncIsRequested()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                // count says 2, only 1 apply arrives.
                string id = Guid.NewGuid().ToString();
                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "batch_begin" }, { "batch_id", id }, { "seq", 30L }, { "path", "slow" }, { "count", 2L } });
                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "apply" }, { "batch_id", id }, { "change", CubeCreate(u) } });
                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "batch_end" }, { "batch_id", id }, { "seq", 30L } });
                var rs = r.Daemon.WaitFor("resync", 1, r.Pump);
                Check.Equal(0L, (long)rs[0].Message["since_seq"], "resync from the last applied seq");
                Check.True(r.Scene.Find(u) == null, "nothing applied");
                Check.Equal(0, r.Daemon.Received("applied").Count, "no applied");
                Check.Equal(0L, r.Engine.LastSeq, "seq not advanced");
            }
        }

        [VsTest]
        public static void FailingBatchRollsBackCompletely()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 5, 5, 5);
                r.StartAndRegister();
                string u = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow",
                    CubeCreate(u),
                    new Dictionary<string, object> { { "op", "rename" }, { "uuid", a.Uuid }, { "name", "Renamed" } },
                    new Dictionary<string, object> { { "op", "reparent" }, { "uuid", u }, { "parent", Msg.NewUuid() } }); // unknown parent
                r.Daemon.WaitFor("resync", 1, r.Pump);
                Check.True(r.Scene.Find(u) == null, "create rolled back");
                Check.Equal("A", r.Scene.Find(a.Uuid).Name, "rename rolled back");
                Check.Equal(0, r.Scene.UndoSteps, "no undo step recorded");
                Check.True(r.Engine.LastError.Contains("does not exist"), "error explains: " + r.Engine.LastError);
            }
        }

        [VsTest]
        public static void PlayModeHoldsBatchesAndRestoresThePrePlayState()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 1, 1, 1);
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                var snap = r.Engine.Snapshot();
                r.Engine.SetPaused(true);
                // Play Mode: a script moves the object; nothing is synced.
                a.Position = new[] { 9.0, 9, 9 };
                r.Engine.MarkDirty(a.Uuid);
                string u = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", CubeCreate(u));
                Check.Eventually(() => r.Events.Contains("held"), TimeSpan.FromSeconds(5), "batch held", r.Pump);
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "no change sent during Play");
                Check.True(r.Scene.Find(u) == null, "no batch applied during Play");
                r.Engine.SetPaused(false, snap);
                Check.Near(new[] { 1.0, 1, 1 }, a.Position, 1e-9, "pre-Play state restored");
                Check.True(r.Scene.Find(u) != null, "held batch applied after Play");
                r.Daemon.WaitFor("applied", 1, r.Pump);
                r.Daemon.WaitFor("resync", 1, r.Pump);
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "the restore is not echoed as a change");
            }
        }

        [VsTest]
        public static void ConnectingDuringPlayModeRegistersOnlyAfterPlay()
        {
            // After the domain reload that entering Play causes, the editor reconnects while paused.
            using (var r = new Rig())
            {
                r.Add("A");
                r.Engine.SetPaused(true);
                r.Client.Start();
                Check.Eventually(() => r.Events.Contains("connected"), TimeSpan.FromSeconds(5), "connected", r.Pump);
                r.Settle();
                Check.Equal(0, r.Daemon.Received("register").Count, "nothing registered while playing");
                r.Engine.SetPaused(false, new Dictionary<string, ObjectState>());
                r.Daemon.WaitFor("register", 1, r.Pump);
                Check.Eventually(() => r.Engine.InitialRegisterDone, TimeSpan.FromSeconds(5), "registered after Play", r.Pump);
                Check.Equal(1, ((List<object>)r.Daemon.Received("register")[0].Message["items"]).Count, "the edit-mode object");
            }
        }

        [VsTest]
        public static void SafeModeHoldsLocalChangesUntilItEnds()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "safe_mode" }, { "active", true }, { "reason", "previous session crashed" } });
                Check.Eventually(() => r.Engine.SafeMode, TimeSpan.FromSeconds(5), "safe mode on", r.Pump);
                Check.Equal("previous session crashed", r.Engine.SafeModeReason, "reason kept");
                a.Name = "Renamed";
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "nothing sent in safe mode");
                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "safe_mode" }, { "active", false } });
                r.Daemon.WaitFor("change", 2, r.Pump);
                var op = r.Ops()[1];
                Check.Equal("rename", (string)op["op"], "held rename sent after safe mode");
            }
        }

        [VsTest]
        public static void UnacknowledgedChangesAreResentAfterReconnect()
        {
            bool swallow = false;
            using (var r = new Rig(rig => rig.Daemon.OnRequest = f => (swallow && f.Type == "change") ? null : rig.Daemon.DefaultReply(f)))
            {
                var a = r.Add("A");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                swallow = true;
                a.Name = "Lost?";
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                swallow = false;
                r.Daemon.DropAll();
                r.Daemon.WaitFor("change", 3, r.Pump);
                var ops = r.Ops();
                Check.Equal("rename", (string)ops[ops.Count - 1]["op"], "rename re-sent after reconnect");
                Check.Equal("Lost?", (string)ops[ops.Count - 1]["name"], "with the current name");
            }
        }
    }
}
#endif
