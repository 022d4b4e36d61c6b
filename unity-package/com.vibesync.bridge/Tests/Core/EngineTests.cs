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
        internal sealed class Rig : IDisposable
        {
            public FakeDaemon Daemon = new FakeDaemon();
            public HeadlessScene Scene = new HeadlessScene();
            public BridgeClient Client;
            public SyncEngine Engine;
            public readonly List<string> Events = new List<string>();
            public readonly List<Dictionary<string, object>> EventFields = new List<Dictionary<string, object>>();
            /// <summary>What the scene file kept of what it last synced (set by `setup`).</summary>
            public Dictionary<string, ObjectState> SavedBases;

            public Rig(Action<Rig> setup = null, double unitScale = 1.0)
            {
                if (setup != null) setup(this);
                Scene.UnitScale = unitScale;
                Client = ClientTests.NewClient(Daemon.Port, Daemon.TokenFile, o => o.UnitScale = unitScale);
                Engine = new SyncEngine(Client, Scene, unitScale, SavedBases);
                Engine.Event += (n, f) => { Events.Add(n); EventFields.Add(f); };
            }

            public void Pump() { Engine.Tick(TimeSpan.FromMilliseconds(50)); }

            public void StartAndRegister()
            {
                Client.Start();
                Check.Eventually(() => Engine.InitialRegisterDone, TimeSpan.FromSeconds(5), "initial register done", Pump);
            }

            /// <summary>A scene of one object `name`, connected, registered, its `create` sent and
            /// the traffic settled: the start of a test about what follows a synced object.</summary>
            public SceneObject StartWithOneSynced(string name)
            {
                var o = Add(name);
                StartAndRegister();
                Daemon.WaitFor("change", 1, Pump);
                Settle();
                return o;
            }

            /// <summary>The person renames <paramref name="o"/>; the rename is sent and stays on its
            /// way (the daemon commits nothing from now on). Returns its request id.</summary>
            public string RenameOnItsWay(SceneObject o, string name)
            {
                Daemon.Commits = false;
                int changes = Daemon.Received("change").Count;
                o.Name = name;
                Engine.MarkDirty(o.Uuid);
                var sent = Daemon.WaitFor("change", changes + 1, Pump);
                Check.Eventually(() => Engine.IsInFlight(o.Uuid), TimeSpan.FromSeconds(5), "the rename on its way", Pump);
                return (string)sent[changes].Message["request_id"];
            }

            /// <summary>The person renames <paramref name="o"/>; that batch rolls back (Blender did not
            /// confirm it in time) and the rename is kept here, not synced, with nothing on its way
            /// (PROTOCOL.md §6.4).</summary>
            public void RenameKeptNotSynced(SceneObject o, string name)
            {
                string rename = RenameOnItsWay(o, name);
                Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", Daemon.NextSeq() }, { "outcome", BatchOutcome.RolledBack },
                    { "uuids", new List<object> { o.Uuid } }, { "through", new Dictionary<string, object> { { o.Uuid, rename } } },
                    { "error_code", "VERIFY_TIMEOUT" }, { "kept_local", true }, { "reason", "Blender did not confirm the change in time" },
                });
                Check.Eventually(() => Engine.NotSynced.ContainsKey(o.Uuid) && !Engine.IsInFlight(o.Uuid), TimeSpan.FromSeconds(5), "kept, not synced", Pump);
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
                var reg = r.Daemon.WaitFor("register", 1, r.Pump)[0].Message; // received once answered
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
                Check.Near(new[] { 0, -0.2588190451, 0, 0.9659258263 }, o.Rotation, 1e-7, "Unity rotation (float32, as a Transform holds it)");
                Check.Near(new[] { 2.0, 2, 2 }, o.Scale, 0, "scale");
                Check.Equal(1, r.Scene.UndoSteps, "one undo step for the batch");
                Check.Equal(id, (string)applied["batch_id"], "batch id echoed");
                Check.Equal(seq, (long)applied["seq"], "seq echoed");
                var hashes = (Dictionary<string, object>)applied["hashes"];
                // Same state as the shared vector "cube": the hash must be the vector's.
                Check.Equal("1e150c0c89aa6b5a1e0d6a9555a933a43f9197b5d899ad5a7d8924d480ae2072", (string)hashes[u], "state hash equals tests/vectors/state_hash.json cube");
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
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.Equal(0, ((List<object>)applied["spared"]).Count, "applied whole: nothing spared (§6.4)");
                int before = r.Daemon.Received("change").Count + r.Daemon.Received("register").Count;
                // Unity publishes the change events of our own apply a frame later.
                r.Engine.MarkDirty(u);
                r.Settle();
                Check.Equal(before, r.Daemon.Received("change").Count + r.Daemon.Received("register").Count, "no change or register echoed");
                Check.Equal(0, r.Engine.DirtyCount, "dirty set drained");
            }
        }

        static Dictionary<string, object> Live(Dictionary<string, object> change)
        {
            return new Dictionary<string, object> { { "type", "live" }, { "change", change }, { "origin", "blender" } };
        }

        static Dictionary<string, object> TransformOp(string uuid, double x, double y, double z)
        {
            return new Dictionary<string, object> { { "op", "transform" }, { "uuid", uuid }, { "t", Msg.List(x, y, z) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) } };
        }

        [VsTest]
        public static void ALivePreviewIsAppliedAtOnceWithoutUndoStepAnswerOrEcho()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", CubeCreate(u));
                r.Daemon.WaitFor("applied", 1, r.Pump);
                int changesBefore = r.Daemon.Received("change").Count;
                r.Daemon.Broadcast(Live(TransformOp(u, 5, 0, -1)));
                Check.Eventually(() => r.Engine.LiveApplied == 1, TimeSpan.FromSeconds(5), "live applied", r.Pump);
                var o = r.Scene.Find(u);
                Check.Near(new[] { 5.0, 0, 1 }, o.Position, 1e-12, "Unity position of the canonical (5, 0, -1)");
                r.Daemon.Broadcast(Live(new Dictionary<string, object> { { "op", "rename" }, { "uuid", u }, { "name", "Live" } }));
                Check.Eventually(() => r.Engine.LiveApplied == 2, TimeSpan.FromSeconds(5), "live rename", r.Pump);
                Check.Equal("Live", o.Name, "renamed");
                Check.Equal(1, r.Scene.UndoSteps, "no undo step for live previews (only the batch's)");
                Check.Equal(2, r.Scene.LiveApplied, "applied through ApplyLive");
                // Unity reports our own apply a frame later: not a change of ours, and never answered.
                r.Engine.MarkDirty(u);
                r.Settle();
                Check.Equal(changesBefore, r.Daemon.Received("change").Count, "no echo");
                Check.Equal(1, r.Daemon.Received("applied").Count, "live frames are not answered");
                Check.Equal(0L, r.Engine.LiveDropped, "nothing dropped");
                // The batch that follows carries the same pose and verifies it.
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", TransformOp(u, 5, 0, -1));
                var applied = r.Daemon.WaitFor("applied", 2, r.Pump)[1].Message;
                Check.Equal(o.Name, "Live", "the batch leaves the previewed state");
                Check.True(((Dictionary<string, object>)applied["hashes"]).ContainsKey(u), "the batch is answered");
                r.Settle();
                Check.Equal(changesBefore, r.Daemon.Received("change").Count, "still no echo");
            }
        }

        /// <summary>
        /// PROTOCOL §6.1 `seen`: a person's change of an object made after a live preview of it
        /// was applied names that preview's mark; a change of another object, or made on a new
        /// connection, names none.
        /// </summary>
        [VsTest]
        public static void APersonsChangeAfterALivePreviewNamesItsMarkInSeen()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid(), v = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", CubeCreate(u), CubeCreate(v));
                r.Daemon.WaitFor("applied", 1, r.Pump);
                var live = Live(TransformOp(u, 5, 0, -1));
                live["mark"] = 17L;
                r.Daemon.Broadcast(live);
                Check.Eventually(() => r.Engine.LiveApplied == 1, TimeSpan.FromSeconds(5), "live applied", r.Pump);
                int before = r.Daemon.Received("change").Count;
                var o = r.Scene.Find(u);
                o.Position = new[] { 7.0, 0, 0 };
                r.Engine.MarkDirty(u);
                var m = r.Daemon.WaitFor("change", before + 1, r.Pump)[before].Message;
                var seen = m["seen"] as Dictionary<string, object>;
                Check.True(seen != null && seen.Count == 1, "seen names the previewed object only");
                Check.Equal(17L, Convert.ToInt64(seen[u]), "the mark of the last live frame applied");
                r.Scene.Find(v).Position = new[] { 1.0, 2, 3 };
                r.Engine.MarkDirty(v);
                var m2 = r.Daemon.WaitFor("change", before + 2, r.Pump)[before + 1].Message;
                Check.True(!m2.ContainsKey("seen"), "no live frame of that object was applied: no seen");
            }
        }

        /// <summary>
        /// Blender's person hides an object (a live preview hides it here too); the person in
        /// Unity shows it (sent), then hides it again. That hide is an edit: it equals what this
        /// editor last applied, but a change was sent since. Taken for our own apply coming
        /// back, it was never sent, and the editors differed for good (the daemon held what
        /// Blender's person settled on, Unity the hide) — found by random edits of the eye
        /// from both editors (tests/e2e, 7 of 10 seeds).
        /// </summary>
        [VsTest]
        public static void AnEditBackToAPreviewedValueAfterAChangeWasSentIsSent()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", CubeCreate(u));
                r.Daemon.WaitFor("applied", 1, r.Pump);
                r.Daemon.Broadcast(Live(new Dictionary<string, object> { { "op", "visibility" }, { "uuid", u }, { "visible", false } }));
                Check.Eventually(() => r.Engine.LiveApplied == 1, TimeSpan.FromSeconds(5), "live hide applied", r.Pump);
                var o = r.Scene.Find(u);
                Check.True(!o.Visible, "hidden by the preview");
                int before = r.Daemon.Received("change").Count;
                o.Visible = true; // the person shows it
                r.Engine.MarkDirty(u);
                r.Daemon.WaitFor("change", before + 1, r.Pump);
                o.Visible = false; // and hides it again, as the preview had
                r.Engine.MarkDirty(u);
                var m = r.Daemon.WaitFor("change", before + 2, r.Pump)[before + 1].Message;
                var op = (Dictionary<string, object>)((List<object>)m["changes"])[0];
                Check.Equal("visibility", (string)op["op"], "the hide is sent");
                Check.Equal(false, (bool)op["visible"], "as hidden");
            }
        }

        [VsTest]
        public static void ALivePreviewNeverOverwritesAPersonsUnsentEdit()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                string free = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", CubeCreate(u), CubeCreate(free));
                r.Daemon.WaitFor("applied", 1, r.Pump);
                var o = r.Scene.Find(u);
                o.Position = new[] { 9.0, 9, 9 }; // the person's edit, not captured yet
                r.Engine.MarkDirty(u);
                r.Daemon.Broadcast(Live(TransformOp(u, 1, 1, 1)));
                r.Daemon.Broadcast(Live(TransformOp(free, 1, 1, 1)));
                Check.Eventually(() => r.Engine.LiveDropped == 1 && r.Engine.LiveApplied == 1, TimeSpan.FromSeconds(5), "one dropped, one applied", r.Pump);
                Check.Near(new[] { 9.0, 9, 9 }, o.Position, 0, "the person's edit stays");
                Check.Near(new[] { 1.0, 1, -1 }, r.Scene.Find(free).Position, 1e-12, "the other object is previewed");
                // The edit goes to the daemon as it is (the window's batch decides).
                Check.Eventually(() => r.Ops().Exists(op => (string)op["uuid"] == u && (string)op["op"] == "transform"), TimeSpan.FromSeconds(5), "edit sent", r.Pump);
                bool dropped = false;
                for (int i = 0; i < r.EventFields.Count; i++)
                    if (r.Events[i] == "live_dropped" && (string)r.EventFields[i]["reason"] == "local edit") dropped = true;
                Check.True(dropped, "live_dropped event with reason `local edit`");
            }
        }

        [VsTest]
        public static void LocalEditIsSentAsCanonicalChangeAndUserActivity()
        {
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
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
        public static void DuplicateIsRegisteredUnderAFreshUuidAndDeleteIsSentAsATombstone()
        {
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
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
                // A person's delete is a `tombstone` request (PROTOCOL §5, §6.2).
                var t = r.Daemon.WaitFor("tombstone", 1, r.Pump)[0].Message;
                var gone = (List<object>)t["uuids"];
                Check.Equal(1, gone.Count, "one uuid");
                Check.Equal(a.Uuid, (string)gone[0], "of the original");
                Check.Eventually(() => r.Events.Contains("tombstone_ack"), TimeSpan.FromSeconds(5), "acknowledged", r.Pump);
                r.Settle();
                Check.Equal(2, r.Daemon.Received("change").Count, "no `delete` change besides");
            }
        }

        [VsTest]
        public static void BrokenBatchIsNotAppliedAndAnsweredWithTheHeldState()
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
                // Answered at once (the daemon rolls back now instead of after its 5 s timeout).
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.Equal(id, (string)applied["batch_id"], "the broken batch is answered");
                Check.Equal(0, ((Dictionary<string, object>)applied["hashes"]).Count, "no hash for an object this editor does not have");
                var rs = r.Daemon.WaitFor("resync", 1, r.Pump);
                Check.Equal(0L, (long)rs[0].Message["since_seq"], "resync from the last applied seq");
                Check.True(r.Scene.Find(u) == null, "nothing applied");
                Check.Equal(0L, r.Engine.LastSeq, "seq not advanced");
                Check.Equal(1L, r.Engine.BatchesFailed, "counted as failed");
            }
        }

        [VsTest]
        public static void FailingBatchRollsBackCompletelyAndReportsTheStateItKept()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 5, 5, 5);
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                string kept = r.Scene.Capture(a.Uuid).Hash();
                string u = Msg.NewUuid();
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow",
                    CubeCreate(u),
                    new Dictionary<string, object> { { "op", "rename" }, { "uuid", a.Uuid }, { "name", "Renamed" } },
                    new Dictionary<string, object> { { "op", "visibility" }, { "uuid", Msg.NewUuid() }, { "visible", false } }); // unknown object
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var hashes = (Dictionary<string, object>)applied["hashes"];
                Check.Equal(kept, (string)hashes[a.Uuid], "the hash of the state actually kept (mismatch -> daemon rolls back)");
                Check.True(!hashes.ContainsKey(u), "the object that was not created is not reported");
                Check.True(r.Scene.Find(u) == null, "create rolled back");
                Check.Equal("A", r.Scene.Find(a.Uuid).Name, "rename rolled back");
                Check.Equal(0, r.Scene.UndoSteps, "no undo step recorded");
                Check.True(r.Engine.LastError.Contains("unknown object"), "error explains: " + r.Engine.LastError);
                r.Settle();
                Check.Equal(0, r.Daemon.Received("resync").Count, "no resync request: the daemon's rollback sends the state");
            }
        }

        [VsTest]
        public static void PlayModeAnswersHeldAtOnceAndResyncsAfterPlay()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 1, 1, 1);
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                long seqBefore = r.Daemon.NextSeq();
                string firstId = r.Daemon.SendBatch(seqBefore, "fast", new Dictionary<string, object> { { "op", "rename" }, { "uuid", a.Uuid }, { "name", "A" } });
                r.Daemon.WaitFor("applied", 1, r.Pump);
                Check.Equal(seqBefore, r.Engine.LastSeq, "seq before Play");
                var snap = r.Engine.Snapshot();
                r.Engine.SetPaused(true);
                // Play Mode: a script moves the object; nothing is synced.
                a.Position = new[] { 9.0, 9, 9 };
                r.Engine.MarkDirty(a.Uuid);
                string u = Msg.NewUuid();
                long heldSeq = r.Daemon.NextSeq();
                string id = r.Daemon.SendBatch(heldSeq, "slow", CubeCreate(u));
                var answers = r.Daemon.WaitFor("applied", 2, r.Pump);
                var held = answers[1].Message;
                Check.Equal(id, (string)held["batch_id"], "the held batch is answered at once");
                Check.Equal(true, (bool)held["held"], "held: true");
                Check.Equal(heldSeq, (long)held["seq"], "with its seq");
                Check.Equal(0, ((Dictionary<string, object>)held["hashes"]).Count, "and no hashes");
                Check.True(r.Events.Contains("held"), "held event");
                Check.True(r.Scene.Find(u) == null, "no batch applied during Play");
                // A batch_result during Play does not move LastSeq: the resync must start before the held batch.
                r.Daemon.SendResult(firstId, heldSeq + 1, "committed", new[] { a.Uuid });
                Check.Eventually(() => r.Engine.BatchResults == 1, TimeSpan.FromSeconds(5), "result counted", r.Pump);
                Check.Equal(seqBefore, r.Engine.LastSeq, "LastSeq frozen while paused");
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "no change sent during Play");
                r.Engine.SetPaused(false, snap);
                Check.Near(new[] { 1.0, 1, 1 }, a.Position, 1e-9, "pre-Play state restored");
                Check.True(r.Scene.Find(u) == null, "held batch not applied after Play either (the resync brings it)");
                var rs = r.Daemon.WaitFor("resync", 1, r.Pump);
                Check.Equal(seqBefore, (long)rs[0].Message["since_seq"], "resync since the last seq applied before Play");
                Check.True(Msg.IsValidUuid(r.Scene.Find(a.Uuid).Uuid), "object kept");
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "the restore is not echoed as a change");
                Check.Equal(1L, r.Engine.BatchesHeld, "held counter");
            }
        }

        [VsTest]
        public static void BatchResultAdvancesLastSeqAndTheNextBaseSeq()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "create queued, result awaited", r.Pump);
                Check.True(!r.Engine.Idle, "not idle while a result is outstanding");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), 50, "committed", new[] { a.Uuid });
                Check.Eventually(() => r.Engine.LastSeq == 50, TimeSpan.FromSeconds(5), "LastSeq advanced by batch_result", r.Pump);
                Check.Eventually(() => r.Engine.Idle, TimeSpan.FromSeconds(5), "idle once the result arrived", r.Pump);
                Check.Equal(1L, r.Engine.BatchesCommitted, "committed counted");
                var ev = r.EventFields[r.Events.LastIndexOf("batch_result")];
                Check.Equal("committed", (string)ev["outcome"], "batch_result event");
                // An older result does not move it back.
                r.Daemon.SendResult(Guid.NewGuid().ToString(), 40, "committed", new string[0]);
                Check.Eventually(() => r.Engine.BatchResults == 2, TimeSpan.FromSeconds(5), "second result", r.Pump);
                Check.Equal(50L, r.Engine.LastSeq, "LastSeq never goes back");
                a.Name = "B";
                r.Engine.MarkDirty(a.Uuid);
                var ch = r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Equal(50L, (long)ch[1].Message["base_seq"], "base_seq = seq of the last batch_result");
            }
        }

        [VsTest]
        public static void CreateForAnExistingObjectUpdatesItInPlaceAllFields()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 5, 5, 5);
                a.Material = new MaterialState { BaseColor = new[] { 1.0, 0, 0, 1 } };
                byte[] cube = HeadlessScene.CubeMesh(0.5f);
                a.Mesh = new MeshInfo { Buffer = cube, MeshHash = MeshData.HashOf(cube), VertexCount = 8, TriangleCount = 12 };
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                // Our create is resolved first: a replay does not overwrite unresolved local work (§6.6).
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "create resolved", r.Pump);
                var create = CubeCreate(a.Uuid); // full state: Cube at the vector's transform, no mesh, no material
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", create);
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.Equal(1, r.Scene.Objects.Count, "updated in place, not duplicated");
                Check.True(r.Scene.Find(a.Uuid) == a, "same object");
                Check.Equal("Cube", a.Name, "name");
                Check.Near(new[] { 1.0, 3, 2 }, a.Position, 1e-12, "position (Unity frame)");
                Check.Near(new[] { 2.0, 2, 2 }, a.Scale, 0, "scale");
                Check.True(a.Material == null, "material cleared: the state has none");
                Check.True(a.Mesh == null, "mesh cleared: the state has none");
                Check.Equal("1e150c0c89aa6b5a1e0d6a9555a933a43f9197b5d899ad5a7d8924d480ae2072", (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "hash of the vector state");
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "the update is not echoed");
            }
        }

        /// <summary>
        /// PROTOCOL §6.1: each geometry goes to the daemon once per connection — three objects
        /// showing one mesh send it with the first and only name it after.
        /// </summary>
        [VsTest]
        public static void ObjectsShowingOneMeshSendItOncePerConnection()
        {
            using (var r = new Rig())
            {
                byte[] cube = HeadlessScene.CubeMesh(0.5f);
                string h = MeshData.HashOf(cube);
                var objs = new List<SceneObject>();
                for (int i = 0; i < 3; i++)
                {
                    var o = r.Add("Rock" + i, i, 0, 0);
                    o.Mesh = new MeshInfo { Buffer = cube, MeshHash = h, VertexCount = 8, TriangleCount = 12 };
                    objs.Add(o);
                }
                r.StartAndRegister();
                Check.Eventually(() =>
                {
                    int named = 0;
                    foreach (var f in r.Daemon.Received("change"))
                        foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                            if (op.ContainsKey("mesh_hash") && (string)op["mesh_hash"] == h) named++;
                    return named == 3;
                }, TimeSpan.FromSeconds(5), "three creates naming the mesh", r.Pump);
                int carried = 0;
                foreach (var f in r.Daemon.Received("change")) if (f.Attachment.Length > 0) { carried++; Check.Equal(h, MeshData.HashOf(f.Attachment), "the mesh itself"); }
                Check.Equal(1, carried, "the mesh travels once");
                Check.Equal((long)cube.Length, r.Engine.MeshBytesSent, "mesh bytes sent");
                // One more, after the daemon took the mesh (its ack read): named only too.
                int before = r.Daemon.Received("change").Count;
                var late = r.Add("Rock3", 3, 0, 0);
                late.Mesh = new MeshInfo { Buffer = cube, MeshHash = h, VertexCount = 8, TriangleCount = 12 };
                r.Engine.MarkDirty(late.Uuid);
                Check.Eventually(() =>
                {
                    foreach (var f in r.Daemon.Received("change"))
                        foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                            if ((string)op["uuid"] == late.Uuid && (string)op["op"] == "create") return true;
                    return false;
                }, TimeSpan.FromSeconds(5), "the fourth object's create", r.Pump);
                var all = r.Daemon.Received("change");
                for (int i = before; i < all.Count; i++) Check.Equal(0, all[i].Attachment.Length, "a mesh the daemon took is only named");
                Check.Equal((long)cube.Length, r.Engine.MeshBytesSent, "still one mesh sent");
            }
        }

        /// <summary>
        /// PROTOCOL §6.1: a change that only named its mesh, refused INVALID_FIELD (the daemon
        /// removed that mesh since: nothing referenced it), goes again with the mesh; a change that
        /// carried its mesh and is refused INVALID_FIELD is a real refusal, reported, not re-sent.
        /// What the engine knows is which changes it sent naming a mesh only, never the message.
        /// </summary>
        [VsTest]
        public static void AMeshTheDaemonNoLongerHoldsGoesAgainWithTheChangeThatOnlyNamedIt()
        {
            byte[] cube = HeadlessScene.CubeMesh(0.5f);
            string h = MeshData.HashOf(cube);
            byte[] other = HeadlessScene.CubeMesh(0.7f);
            string h2 = MeshData.HashOf(other);
            int refusals = 0;
            using (var r = new Rig(rig => rig.Daemon.OnRequest = f =>
            {
                if (f.Type != "change") return rig.Daemon.DefaultReply(f);
                var results = new List<object>();
                foreach (Dictionary<string, object> c in (List<object>)f.Message["changes"])
                {
                    bool namesMesh = c.ContainsKey("mesh_hash") && (string)c["mesh_hash"] == h;
                    // The first frame naming the mesh without it is refused, and every frame
                    // naming the other mesh.
                    bool forgotten = namesMesh && f.Attachment.Length == 0 && refusals == 0;
                    bool bad = c.ContainsKey("mesh_hash") && (string)c["mesh_hash"] == h2;
                    if (forgotten || bad)
                    {
                        refusals++;
                        results.Add(new Dictionary<string, object> { { "uuid", c["uuid"] }, { "status", "error" }, { "error_code", ErrorCode.InvalidField }, { "message", "refused by the test" } });
                    }
                    else results.Add(new Dictionary<string, object> { { "uuid", c["uuid"] }, { "status", "queued" } });
                }
                return new Dictionary<string, object> { { "type", "ack" }, { "request_id", f.Message["request_id"] }, { "seq", rig.Daemon.NextSeq() }, { "results", results } };
            }))
            {
                var objs = new List<SceneObject>();
                for (int i = 0; i < 2; i++)
                {
                    var o = r.Add("Rock" + i, i, 0, 0);
                    o.Mesh = new MeshInfo { Buffer = cube, MeshHash = h, VertexCount = 8, TriangleCount = 12 };
                    objs.Add(o);
                }
                r.StartAndRegister();
                Func<string, int> carriedFor = u =>
                {
                    int n = 0;
                    foreach (var f in r.Daemon.Received("change"))
                        foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                            if ((string)op["uuid"] == u && f.Attachment.Length > 0) n++;
                    return n;
                };
                Check.Eventually(() => carriedFor(objs[0].Uuid) + carriedFor(objs[1].Uuid) == 2, TimeSpan.FromSeconds(5),
                    "the refused object's create sent again, with the mesh", r.Pump);
                Check.Equal(1, refusals, "one refusal");
                Check.Equal(2L * cube.Length, r.Engine.MeshBytesSent, "the mesh went twice: once per object that carried it");

                Check.Equal(0, r.Engine.NotSynced.Count, "nothing left not synced");

                // Carried and refused INVALID_FIELD: a real refusal, reported, not sent again by
                // itself; the person's object stays here, marked not synced with the reason (§6.1).
                var bad = r.Add("Bad", 9, 0, 0);
                bad.Mesh = new MeshInfo { Buffer = other, MeshHash = h2, VertexCount = 8, TriangleCount = 12 };
                r.Engine.MarkDirty(bad.Uuid);
                Check.Eventually(() => refusals == 2, TimeSpan.FromSeconds(5), "Bad's create refused", r.Pump);
                r.Settle();
                Check.Equal(1, carriedFor(bad.Uuid), "not sent again");
                Check.True(r.Events.Contains("error"), "the refusal reported");
                Check.True(r.Engine.NotSynced.ContainsKey(bad.Uuid), "Bad marked not synced");
                Check.Equal("INVALID_FIELD: refused by the test", r.Engine.NotSynced[bad.Uuid], "with the reason");
                Check.True(!r.Engine.NotSynced.ContainsKey(objs[0].Uuid), "not the object sent again with its mesh");
            }
        }

        [VsTest]
        public static void RolledBackOwnChangeIsUndoneByTheResyncThatFollowsTheResult()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 1, 1, 1);
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                var authoritative = r.Scene.Capture(a.Uuid);
                r.Daemon.SendResult(Guid.NewGuid().ToString(), 20, "committed", new[] { a.Uuid });
                Check.Eventually(() => r.Engine.LastSeq == 20, TimeSpan.FromSeconds(5), "create committed", r.Pump);
                // Our move is forwarded and rolled back (another editor did not verify it).
                a.Position = new[] { 5.0, 5, 5 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "move queued", r.Pump);
                string batchId = Guid.NewGuid().ToString();
                // The daemon sends the result (our change is resolved), then the authoritative state
                // as a resync batch (§6.4).
                r.Daemon.SendResult(batchId, 24, "rolled_back", new[] { a.Uuid }, "VERIFY_MISMATCH");
                var st = authoritative.ToCreateOp();
                r.Daemon.SendBatch(24, "resync", st);
                Check.Eventually(() => r.Engine.BatchesRolledBack == 1 && r.Engine.ResyncBatchesApplied == 1, TimeSpan.FromSeconds(5), "rolled_back and resync received", r.Pump);
                Check.Near(new[] { 1.0, 1, 1 }, a.Position, 1e-12, "own change undone by the resync");
                Check.Equal(0L, r.Engine.ReplayKeptLocal, "nothing kept: the change was resolved");
                Check.Equal(24L, r.Engine.LastSeq, "LastSeq = the ROLLBACK seq");
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.Equal(authoritative.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "resync answered with the authoritative hash");
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(2, r.Daemon.Received("change").Count, "the correction is not sent back");
                var ev = r.EventFields[r.Events.LastIndexOf("batch_result")];
                Check.Equal("VERIFY_MISMATCH", (string)ev["error_code"], "error code reported");
            }
        }

        /// <summary>A created, its create committed (resolved): the start of the replay tests.</summary>
        internal static SceneObject CommittedObject(Rig r, double x)
        {
            var a = r.Add("A", x, x, x);
            r.StartAndRegister();
            r.Daemon.WaitFor("change", 1, r.Pump);
            r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
            Check.Eventually(() => r.Engine.UnresolvedCount == 0 && r.Engine.BatchResults == 1, TimeSpan.FromSeconds(5), "create resolved", r.Pump);
            return a;
        }

        static Dictionary<string, object> Applied(Rig r, string batchId)
        {
            var f = r.Daemon.Received("applied").Find(x => (string)x.Message["batch_id"] == batchId);
            return f == null ? null : (Dictionary<string, object>)f.Message["hashes"];
        }

        /// <summary>
        /// PROTOCOL §6.1: an object whose parent the receiver does not have is a root — the batch is
        /// applied, not refused — and it is attached when that parent arrives.
        /// </summary>
        [VsTest]
        public static void UnknownParentMakesARootAndTheParentArrivingAttachesIt()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string parent = Msg.NewUuid(), child = Msg.NewUuid(), other = Msg.NewUuid();
                var c = CubeCreate(child);
                c["parent"] = parent;
                c["name"] = "Light";
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", c, CubeCreate(other));
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "batch answered", r.Pump);
                Check.True(r.Scene.Find(child) != null && r.Scene.Find(other) != null, "the whole batch applied, not refused");
                Check.True(r.Scene.Find(child).Parent == null, "the child is a root meanwhile");
                Check.Equal(2, Applied(r, id).Count, "both answered with what the scene holds");
                var p = CubeCreate(parent);
                p["name"] = "Collection";
                string id2 = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", p);
                Check.Eventually(() => Applied(r, id2) != null, TimeSpan.FromSeconds(5), "parent batch answered", r.Pump);
                Check.Equal(parent, r.Scene.Find(child).Parent, "attached once its parent arrived");
            }
        }

        /// <summary>
        /// A batch_result resolves the changes the daemon acknowledged, never a newer change of the
        /// same uuid still waiting for its ack: a replay that follows does not undo the newer move.
        /// </summary>
        /// <summary>
        /// PROTOCOL §6.6, one change per uuid in flight: a newer edit of a uuid whose change (here a
        /// recolour, not only fast-path ops) has no batch_result yet waits (so that result cannot be
        /// taken for it), a replay meanwhile does not undo it, and it goes once the result arrives.
        /// </summary>
        [VsTest]
        public static void ANewerEditWaitsForTheResultOfTheChangeInFlight()
        {
            using (var r = new Rig())
            {
                var a = CommittedObject(r, 1);
                a.Material = new MaterialState { BaseColor = new[] { 1.0, 0, 0, 1 } };
                var authoritative = r.Scene.Capture(a.Uuid);
                a.Position = new[] { 2.0, 2, 2 };
                a.Material = new MaterialState { BaseColor = new[] { 0.0, 0, 1, 1 } };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "first move queued", r.Pump);
                a.Position = new[] { 3.0, 3, 3 };
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(2, r.Daemon.Received("change").Count, "the second move waits for the first one's batch_result");
                Check.True(r.Engine.IsInFlight(a.Uuid) && r.Engine.HasUnresolvedLocalWork(a.Uuid), "in flight, and local work");
                // A replay of the older state does not undo the waiting move.
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", authoritative.ToCreateOp());
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "resync answered", r.Pump);
                Check.Near(new[] { 3.0, 3, 3 }, a.Position, 1e-12, "the newer local move is kept");
                // The first move's batch commits: the second goes now, with the current state.
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                var op = (Dictionary<string, object>)((List<object>)ch[2].Message["changes"])[0];
                Check.Equal(a.Uuid, (string)op["uuid"], "the waiting move");
                Check.Near(new[] { 3.0, 3, -3 }, Vectors.Doubles(op["t"]), 1e-12, "the current position (canonical)");
                Check.True(r.Engine.IsInFlight(a.Uuid), "in flight again until its own result");
            }
        }

        /// <summary>
        /// PROTOCOL §6.6, a drag: while only fast-path changes of a uuid are in flight, each newer
        /// move goes at once (the other editor sees it as it is made); a batch_result ends the
        /// moves up to the request its `through` names (§6.4), the later ones stay in flight; a
        /// recolour meanwhile waits for all of them.
        /// </summary>
        [VsTest]
        public static void ADragSendsEachMoveAtOnceAndAResultEndsThemUpToItsThrough()
        {
            using (var r = new Rig())
            {
                var a = CommittedObject(r, 1);
                for (int i = 1; i <= 3; i++)
                {
                    a.Position = new[] { i * 1.0, 0, 0 };
                    r.Engine.MarkDirty(a.Uuid);
                    r.Daemon.WaitFor("change", 1 + i, r.Pump);
                }
                var moves = r.Daemon.Received("change");
                Check.Equal(4, moves.Count, "each move went at once");
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "acknowledged", r.Pump);
                a.Material = new MaterialState { BaseColor = new[] { 0.0, 1, 0, 1 } };
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(4, r.Daemon.Received("change").Count, "the recolour waits for the moves in flight");
                // The first window's result ends the first two moves; the third stays in flight.
                string second = (string)moves[2].Message["request_id"], third = (string)moves[3].Message["request_id"];
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.Committed },
                    { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, second } } },
                });
                r.Settle();
                Check.True(r.Engine.IsInFlight(a.Uuid), "the third move is still in flight");
                Check.Equal(4, r.Daemon.Received("change").Count, "the recolour still waits");
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.Committed },
                    { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, third } } },
                });
                var ch = r.Daemon.WaitFor("change", 5, r.Pump);
                Check.Equal("material", OpNames(ch[4].Message), "the recolour goes once every move has ended");
            }
        }

        /// <summary>
        /// PROTOCOL §6.8: a rolled-back batch that carried this person's edit, answered with
        /// kept_local, leaves the scene as it is, marks the uuid not synced with the reason, and the
        /// edit is re-sent in full when the person edits again and when a peer joins; a committed
        /// result clears the mark.
        /// </summary>
        [VsTest]
        public static void KeptLocalMarksNotSyncedAndRetriesOnEditAndPeerJoin()
        {
            using (var r = new Rig())
            {
                var a = CommittedObject(r, 1);
                a.Position = new[] { 4.0, 4, 4 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                    { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { a.Uuid } }, { "error_code", ErrorCode.VerifyMismatch },
                    { "kept_local", true }, { "reason", "Blender could not apply it: parent missing" },
                });
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "marked not synced", r.Pump);
                Check.Equal("Blender could not apply it: parent missing", r.Engine.NotSynced[a.Uuid], "with the reason");
                Check.Near(new[] { 4.0, 4, 4 }, a.Position, 1e-12, "the person's edit stays");
                Check.True(r.Events.Contains("not_synced"), "not_synced event");

                // The person edits again: the full state goes as `create`.
                a.Name = "A2";
                r.Engine.MarkDirty(a.Uuid);
                var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                var op = (Dictionary<string, object>)((List<object>)ch[2].Message["changes"])[0];
                Check.Equal("create", (string)op["op"], "re-sent in full after the next edit");
                // It fails again (one change per uuid in flight: the next retry waits for this result).
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                    { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { a.Uuid } }, { "error_code", ErrorCode.VerifyTimeout },
                    { "kept_local", true }, { "reason", "still failing" },
                });
                Check.Eventually(() => !r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "the retry ended", r.Pump);

                // A peer joins: re-sent again.
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "peers" }, { "project_id", "demo" },
                    { "peers", new List<object> { new Dictionary<string, object> { { "session_id", "s-b" }, { "client", "blender" }, { "client_id", "c-b" } } } },
                    { "other_projects", new List<object>() },
                });
                var ch2 = r.Daemon.WaitFor("change", 4, r.Pump);
                var op2 = (Dictionary<string, object>)((List<object>)ch2[3].Message["changes"])[0];
                Check.Equal("create", (string)op2["op"], "re-sent in full when a peer joins");
                Check.Equal(1, r.Engine.Peers.Count, "peer listed");
                Check.Equal("blender", r.Engine.Peers[0].Client, "its client kind");

                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                Check.Eventually(() => !r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "a commit clears the mark", r.Pump);
            }
        }

        /// <summary>
        /// PROTOCOL.md §6.1: kept work goes again in one `change`, an ancestor's full state before
        /// its descendant's — also through an ancestor that is not sent. Here A (root) and C (under
        /// B, under A) are kept; C first would be judged against A's committed parent, not the one
        /// sent right after it (kept work sent child first closed a loop that way, refused
        /// INVALID_FIELD, and was held here for good).
        /// </summary>
        [VsTest]
        public static void KeptWorkGoesAgainAncestorsFirstThroughAnObjectNotSent()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A");
                var b = r.Add("B", 1, 0, 0);
                var c = r.Add("C", 2, 0, 0);
                b.Parent = a.Uuid;
                c.Parent = b.Uuid;
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid, b.Uuid, c.Uuid });
                Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "creates resolved", r.Pump);
                int changes = r.Daemon.Received("change").Count;
                c.Position = new[] { 2.0, 5, 0 };
                r.Engine.MarkDirty(c.Uuid);
                a.Position = new[] { 0.0, 5, 0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", changes + 1, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults > 0 && !r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "the moves in flight", r.Pump);
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                    { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { c.Uuid, a.Uuid } }, { "error_code", ErrorCode.VerifyMismatch },
                    { "kept_local", true }, { "reason", "Blender could not apply it" },
                });
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid) && r.Engine.NotSynced.ContainsKey(c.Uuid), TimeSpan.FromSeconds(5), "both kept", r.Pump);
                changes = r.Daemon.Received("change").Count;
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "peers" }, { "project_id", "demo" },
                    { "peers", new List<object> { new Dictionary<string, object> { { "session_id", "s-b" }, { "client", "blender" }, { "client_id", "c-b" } } } },
                    { "other_projects", new List<object>() },
                });
                var again = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var order = new List<string>();
                foreach (Dictionary<string, object> op in (List<object>)again["changes"])
                {
                    Check.Equal("create", (string)op["op"], "kept work goes whole");
                    order.Add((string)op["uuid"]);
                }
                Check.Equal(a.Uuid + "," + c.Uuid, string.Join(",", order), "A before C, in one change");
            }
        }

        /// <summary>
        /// PROTOCOL §6.4: a person's edit kept after a VERIFY_TIMEOUT (a participant too slow to
        /// answer) goes again in full by itself after a pause, with no edit and no peer joining.
        /// </summary>
        [VsTest]
        public static void AnEditKeptAfterAVerifyTimeoutGoesAgainByItself()
        {
            var was = SyncEngine.TimeoutRetry;
            SyncEngine.TimeoutRetry = new[] { TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(600), TimeSpan.FromSeconds(1) };
            try
            {
                using (var r = new Rig())
                {
                    var a = CommittedObject(r, 1);
                    a.Position = new[] { 2.0, 2, 2 };
                    r.Engine.MarkDirty(a.Uuid);
                    r.Daemon.WaitFor("change", 2, r.Pump);
                    r.Daemon.Broadcast(new Dictionary<string, object>
                    {
                        { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                        { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { a.Uuid } }, { "error_code", ErrorCode.VerifyTimeout },
                        { "kept_local", true }, { "reason", "Blender did not confirm the change in time" },
                    });
                    Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "marked not synced", r.Pump);
                    var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                    var op = (Dictionary<string, object>)((List<object>)ch[2].Message["changes"])[0];
                    Check.Equal("create", (string)op["op"], "sent again in full, by itself");
                    Check.Near(new[] { 2.0, 2, 2 }, a.Position, 1e-12, "the person's edit stays");
                    r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                    Check.Eventually(() => !r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "committed at last", r.Pump);
                }
            }
            finally { SyncEngine.TimeoutRetry = was; }
        }

        /// <summary>
        /// PROTOCOL §6.4: a batch rolled back because another uuid mismatched (`mismatched`): the
        /// person's edit of a uuid it does not name goes again in full by itself after a pause;
        /// the edit of the uuid that caused it waits for the usual triggers.
        /// </summary>
        [VsTest]
        public static void AnEditRolledBackForAnotherObjectsMismatchGoesAgainByItself()
        {
            var was = SyncEngine.CollateralRetry;
            SyncEngine.CollateralRetry = new[] { TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(600), TimeSpan.FromSeconds(1) };
            try
            {
                using (var r = new Rig())
                {
                    var a = r.Add("A", 1, 1, 1);
                    var b = r.Add("B", 2, 2, 2);
                    r.StartAndRegister();
                    Check.Eventually(() => r.Ops().Count == 2, TimeSpan.FromSeconds(5), "both created", r.Pump);
                    r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid, b.Uuid });
                    Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "creates resolved", r.Pump);
                    a.Position = new[] { 5.0, 5, 5 };
                    b.Position = new[] { 6.0, 6, 6 };
                    r.Engine.MarkDirty(a.Uuid);
                    r.Engine.MarkDirty(b.Uuid);
                    Check.Eventually(() => r.Ops().Count == 4, TimeSpan.FromSeconds(5), "both moves sent", r.Pump);
                    r.Daemon.Broadcast(new Dictionary<string, object>
                    {
                        { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                        { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { a.Uuid, b.Uuid } }, { "error_code", ErrorCode.VerifyMismatch },
                        { "kept_local", true }, { "reason", "Blender could not apply the change as sent (its state differs)" },
                        { "mismatched", new List<object> { b.Uuid } },
                    });
                    Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid) && r.Engine.NotSynced.ContainsKey(b.Uuid), TimeSpan.FromSeconds(5), "both marked not synced", r.Pump);
                    Check.Eventually(() => r.Ops().Count == 5, TimeSpan.FromSeconds(5), "one goes again by itself", r.Pump);
                    var op = r.Ops()[4];
                    Check.Equal("create", (string)op["op"], "sent again in full");
                    Check.Equal(a.Uuid, (string)op["uuid"], "the uuid the rollback did not name");
                    r.Settle(900);
                    Check.Equal(5, r.Ops().Count, "the uuid that mismatched waits for the usual triggers");
                    Check.Near(new[] { 6.0, 6, 6 }, b.Position, 1e-12, "the person's edit of it stays");
                }
            }
            finally { SyncEngine.CollateralRetry = was; }
        }

        [VsTest]
        public static void AnEditMadeWhileAKeptEditWentAgainInFullGoesAsItsPartsOnceThatCommits()
        {
            // PROTOCOL.md §6.4: A's move was rolled back and kept here; the person moved it again,
            // so it went again in full. While that was on its way, another editor's hide of A
            // arrived and was applied (the person had not touched the eye), and the person moved A
            // once more. The full state commits; the newest move goes as a move. Sent in full, it
            // also carried the other editor's hide as this person's edit (the random edits test:
            // a hide the other person had undone came back over their last edit).
            using (var r = new Rig())
            {
                var a = r.Add("A", 1, 1, 1);
                r.StartAndRegister();
                Check.Eventually(() => r.Ops().Count == 1, TimeSpan.FromSeconds(5), "created", r.Pump);
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "create resolved", r.Pump);
                a.Position = new[] { 5.0, 5, 5 };
                r.Engine.MarkDirty(a.Uuid);
                Check.Eventually(() => r.Ops().Count == 2, TimeSpan.FromSeconds(5), "the move sent", r.Pump);
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                    { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { a.Uuid } }, { "error_code", ErrorCode.VerifyMismatch },
                    { "kept_local", true }, { "reason", "Blender could not apply the change as sent (its state differs)" },
                    { "mismatched", new List<object> { a.Uuid } },
                });
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "kept, not synced", r.Pump);
                a.Position = new[] { 6.0, 6, 6 };
                r.Engine.MarkDirty(a.Uuid);
                Check.Eventually(() => r.Ops().Count == 3, TimeSpan.FromSeconds(5), "sent again", r.Pump);
                Check.Equal("create", (string)r.Ops()[2]["op"], "in full");
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "acknowledged", r.Pump);
                var hide = new Dictionary<string, object> { { "op", "visibility" }, { "uuid", a.Uuid }, { "visible", false } };
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", hide);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the hide answered", r.Pump);
                Check.True(!a.Visible, "the other editor's hide is applied");
                a.Position = new[] { 7.0, 7, 7 };
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(3, r.Ops().Count, "the newest move waits for the full state's result");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                Check.Eventually(() => r.Ops().Count == 4, TimeSpan.FromSeconds(5), "the newest move goes", r.Pump);
                Check.Equal("transform", (string)r.Ops()[3]["op"], "as the move the person made, not the whole object");
                Check.Equal(4, r.Ops().Count, "and nothing else");
            }
        }

        /// <summary>PROTOCOL §6.8: without a project id, hello omits it and the client keeps the assigned one.</summary>
        [VsTest]
        public static void HelloOmitsAnUnsetProjectIdAndKeepsTheAssignedOne()
        {
            using (var d = new FakeDaemon())
            {
                d.OnHello = h =>
                {
                    var w = new Dictionary<string, object>
                    {
                        { "type", "welcome" }, { "session_id", Guid.NewGuid().ToString() }, { "daemon_version", "fake" }, { "protocol", 1L },
                        { "seq", d.Seq }, { "safe_mode", false }, { "project_id", h.ContainsKey("project_id") ? h["project_id"] : "assigned-1" },
                    };
                    return w;
                };
                var c = ClientTests.NewClient(d.Port, d.TokenFile, o => o.ProjectId = null);
                try
                {
                    c.Start();
                    Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "connected");
                    Check.True(!d.WaitFor("hello", 1, null)[0].Message.ContainsKey("project_id"), "hello omits project_id");
                    Check.Equal("assigned-1", c.AssignedProjectId, "assigned id kept for the host to persist");
                    d.DropAll();
                    Check.Eventually(() => d.Received("hello").Count >= 2, TimeSpan.FromSeconds(10), "reconnected");
                    Check.Equal("assigned-1", (string)d.Received("hello")[1].Message["project_id"], "the reconnect names the assigned project");
                }
                finally { c.Stop(); }
            }
        }

        [VsTest]
        public static void ReplayDoesNotUndoASentChangeWithoutResult()
        {
            using (var r = new Rig())
            {
                var a = CommittedObject(r, 1);
                var authoritative = r.Scene.Capture(a.Uuid);
                a.Position = new[] { 5.0, 5, 5 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "move queued, no result yet", r.Pump);
                Check.True(r.Engine.HasUnresolvedLocalWork(a.Uuid), "the move is unresolved");

                // A replay with the older authoritative pose (e.g. the daemon restarted) and a name
                // another editor gave it: the move in flight is kept, the name applied (§6.6).
                var renamed = authoritative.Clone();
                renamed.Name = "Renamed elsewhere";
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", renamed.ToCreateOp());
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "resync answered", r.Pump);
                Check.Near(new[] { 5.0, 5, 5 }, a.Position, 1e-12, "local move kept");
                Check.Equal("Renamed elsewhere", r.Scene.Capture(a.Uuid).Name, "the part the move does not touch applied");
                Check.Equal(r.Scene.Capture(a.Uuid).Hash(), (string)Applied(r, id)[a.Uuid], "answered with the hash it holds");
                Check.True(r.Scene.Capture(a.Uuid).Hash() != renamed.Hash(), "which is not the replayed one");
                int ev = r.Events.IndexOf("replay_kept_local");
                Check.True(ev >= 0, "replay_kept_local event");
                Check.Equal(a.Uuid, (string)((List<object>)r.EventFields[ev]["uuids"])[0], "naming the uuid");
                Check.Equal(1L, r.Engine.ReplayKeptLocal, "counted");
                // The move already queued at the daemon carries exactly this pose: not repeated.
                r.Settle();
                Check.Equal(2, r.Daemon.Received("change").Count, "the queued move is the change that becomes authoritative");

                // Edited again: a replay now also sends the person's part.
                a.Position = new[] { 6.0, 6, 6 };
                r.Engine.MarkDirty(a.Uuid);
                string id2 = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", renamed.ToCreateOp());
                Check.Eventually(() => r.Client.IncomingCount >= 3, TimeSpan.FromSeconds(5), "replay frames queued");
                r.Pump();
                Check.Eventually(() => Applied(r, id2) != null, TimeSpan.FromSeconds(5), "second resync answered", r.Pump);
                Check.Near(new[] { 6.0, 6, 6 }, a.Position, 1e-12, "still kept");
                // The queued move (5, 5, 5) commits (its result names it: the edit made since may
                // be on its way already, a drag); the edit made since goes.
                long results = r.Engine.BatchResults;
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.Committed },
                    { "uuids", new List<object> { a.Uuid } },
                    { "through", new Dictionary<string, object> { { a.Uuid, (string)r.Daemon.Received("change")[1].Message["request_id"] } } },
                });
                Check.Eventually(() => r.Engine.BatchResults > results, TimeSpan.FromSeconds(5), "the result read", r.Pump);
                var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                var op = (Dictionary<string, object>)((List<object>)ch[2].Message["changes"])[0];
                Check.Equal(1, ((List<object>)ch[2].Message["changes"]).Count, "one op");
                Check.Equal("transform", (string)op["op"], "the part the person changed, not the name the replay brought");
                Check.Equal(a.Uuid, (string)op["uuid"], "of the kept uuid");
                Check.Near(new[] { 6.0, 6, -6 }, Vectors.Doubles(op["t"]), 1e-12, "the local position (canonical)");
                Check.True((long)ch[2].Message["base_seq"] >= (long)r.Daemon.Received("applied")[1].Message["seq"], "base_seq at the resync's seq (not STALE)");

                // A forwarded batch's op of a part whose change is on its way is not applied
                // (§6.4): the move stays, the answer is the state the batch made, and the move's
                // own result (with the correction of a loser) settles it.
                Check.Eventually(() => r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "the move on its way", r.Pump);
                var moved = authoritative.Clone();
                moved.T = new[] { 3.0, 3, -3 };
                var fast = new Dictionary<string, object> { { "op", "transform" }, { "uuid", a.Uuid }, { "t", Msg.List(3, 3, -3) }, { "r", Msg.List(moved.R) }, { "s", Msg.List(moved.S) } };
                var madeByIt = StateDiff.Apply(r.Scene.Capture(a.Uuid), RemoteChange.Parse(fast, null, 1.0));
                string id3 = r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", fast);
                Check.Eventually(() => Applied(r, id3) != null, TimeSpan.FromSeconds(5), "fast batch answered", r.Pump);
                Check.Near(new[] { 6.0, 6, 6 }, a.Position, 1e-12, "the move on its way stays");
                Check.Equal(madeByIt.Hash(), (string)Applied(r, id3)[a.Uuid], "answered with the state the batch made");
                r.Settle();
                Check.Equal(3, r.Daemon.Received("change").Count, "the move on its way is not sent again");

                // Once a batch_result names the uuid it is resolved: the next replay is applied.
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                Check.Eventually(() => !r.Engine.HasUnresolvedLocalWork(a.Uuid), TimeSpan.FromSeconds(5), "resolved by the batch_result", r.Pump);
                var later = authoritative.Clone();
                later.T = new[] { 2.0, 2, -2 };
                string id4 = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", later.ToCreateOp());
                Check.Eventually(() => Applied(r, id4) != null, TimeSpan.FromSeconds(5), "later resync answered", r.Pump);
                Check.Near(new[] { 2.0, 2, 2 }, a.Position, 1e-12, "later resync applied");
                Check.Equal(later.Hash(), (string)Applied(r, id4)[a.Uuid], "answered with the replayed hash");
                Check.Equal(2L, r.Engine.ReplayKeptLocal, "kept twice in all");
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(3, r.Daemon.Received("change").Count, "the applied replay is not echoed");
            }
        }

        [VsTest]
        public static void ReplayDoesNotUndoAnEditNotSentYetAndSendsIt()
        {
            using (var r = new Rig())
            {
                var a = CommittedObject(r, 1);
                var b = r.Add("B", 2, 2, 2); // created before the connection: synced by the register + create
                r.Engine.MarkDirty(b.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { b.Uuid });
                Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "both resolved", r.Pump);
                var authA = r.Scene.Capture(a.Uuid);
                var authB = r.Scene.Capture(b.Uuid).Clone();
                authB.Name = "B from the daemon";
                // A is edited and marked, not sent yet; B is only marked (no real change).
                a.Position = new[] { 7.0, 7, 7 };
                r.Engine.MarkDirty(a.Uuid);
                r.Engine.MarkDirty(b.Uuid);
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", authA.ToCreateOp(), authB.ToCreateOp());
                // The replay is read before the next Tick sends the dirty edit.
                Check.Eventually(() => r.Client.IncomingCount >= 4, TimeSpan.FromSeconds(5), "replay frames queued");
                r.Pump();
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "resync answered", r.Pump);
                var hashes = Applied(r, id);
                Check.Near(new[] { 7.0, 7, 7 }, a.Position, 1e-12, "unsent local edit kept");
                Check.Equal(r.Scene.Capture(a.Uuid).Hash(), (string)hashes[a.Uuid], "answered with the local hash");
                Check.Equal("B from the daemon", b.Name, "an object merely marked dirty gets the replay");
                Check.Equal(authB.Hash(), (string)hashes[b.Uuid], "and answers its hash");
                var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                var ops = (List<object>)ch[2].Message["changes"];
                Check.Equal(1, ops.Count, "only the kept object is sent");
                var op = (Dictionary<string, object>)ops[0];
                // Only the part the person changed: the replay's other parts are what A holds
                // (PROTOCOL.md §6.6).
                Check.Equal("transform", (string)op["op"], "the person's part");
                Check.Equal(a.Uuid, (string)op["uuid"], "the kept uuid");
                Check.Near(new[] { 7.0, 7, -7 }, Vectors.Doubles(op["t"]), 1e-12, "with the local position");
                r.Settle();
                Check.Equal(3, r.Daemon.Received("change").Count, "nothing else sent (B's replay is not echoed)");
            }
        }

        [VsTest]
        public static void StaleRefusalResolvesTheChangeSoItsResyncIsApplied()
        {
            // The real daemon sends the STALE resync before the ack that refuses the change.
            ObjectState other = null;
            using (var r = new Rig(rig => rig.Daemon.OnRequest = f =>
            {
                if (f.Type != "change" || other == null) return rig.Daemon.DefaultReply(f);
                var results = new List<object>();
                foreach (Dictionary<string, object> c in (List<object>)f.Message["changes"])
                    results.Add(new Dictionary<string, object> { { "uuid", c["uuid"] }, { "status", "error" }, { "error_code", "STALE" }, { "message", "test" } });
                rig.Daemon.SendBatch(rig.Daemon.NextSeq(), "resync", other.ToCreateOp());
                return new Dictionary<string, object> { { "type", "ack" }, { "request_id", f.Message["request_id"] }, { "seq", rig.Daemon.Seq }, { "results", results } };
            }))
            {
                var a = CommittedObject(r, 1);
                var st = r.Scene.Capture(a.Uuid).Clone();
                st.Parent = null;
                st.Name = "Renamed elsewhere";
                other = st;
                a.Name = "Renamed here";
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("applied", 1, r.Pump);
                Check.Eventually(() => a.Name == "Renamed elsewhere", TimeSpan.FromSeconds(5), "the other editor's state applied", r.Pump);
                Check.Equal(0L, r.Engine.ReplayKeptLocal, "not kept: the refused change is resolved");
                Check.Equal(other.Hash(), (string)((Dictionary<string, object>)r.Daemon.Received("applied")[0].Message["hashes"])[a.Uuid], "answered with the resync's hash");
                r.Engine.MarkDirty(a.Uuid);
                r.Settle();
                Check.Equal(2, r.Daemon.Received("change").Count, "STALE: no retry");
                Check.True(!r.Engine.HasUnresolvedLocalWork(a.Uuid), "nothing unresolved");
            }
        }

        [VsTest]
        public static void ChangeLostWithTheConnectionIsKeptOverTheReplayAndItsPartReSent()
        {
            using (var r = new Rig())
            {
                var a = CommittedObject(r, 1);
                var authoritative = r.Scene.Capture(a.Uuid);
                a.Position = new[] { 5.0, 5, 5 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "move acknowledged, no result", r.Pump);
                r.Daemon.Down = true;
                r.Daemon.DropAll(); // the daemon dies before the batch_result
                Check.Eventually(() => r.Events.Contains("disconnected"), TimeSpan.FromSeconds(5), "disconnected", r.Pump);
                a.Position = new[] { 6.0, 6, 6 }; // the user keeps working while it is down
                r.Engine.MarkDirty(a.Uuid);
                r.Pump();
                // The welcome replay brings the older state (kept); it comes right after the
                // welcome, as the daemon sends it — sent once the test saw the connection, it
                // came after the engine had re-sent the uuid whole (8 of 20 runs on a busy machine).
                string id = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq(), authoritative.ToCreateOp());
                r.Daemon.Down = false; // back only now: the edit above was made while it was down
                Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == 2, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                Check.Near(new[] { 6.0, 6, 6 }, a.Position, 1e-12, "local work kept over the replay");
                var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                // The replay named the uuid: its parts the person did not touch are the replay's,
                // so only the move (the lost change's part, at its latest value) is sent (§6.6).
                var changes = (List<object>)ch[2].Message["changes"];
                Check.Equal(1, changes.Count, "one op");
                var op = (Dictionary<string, object>)changes[0];
                Check.Equal("transform", (string)op["op"], "the lost change's part is re-sent");
                Check.Near(new[] { 6.0, 6, -6 }, Vectors.Doubles(op["t"]), 1e-12, "the latest local position");
            }
        }

        [VsTest]
        public static void NotFoundIsAnsweredWithACreateAndStaleWaitsForTheResync()
        {
            bool refuse = true;
            using (var r = new Rig(rig => { rig.Daemon.Commits = true; rig.Daemon.OnRequest = f =>
            {
                if (f.Type != "change" || !refuse) return rig.Daemon.DefaultReply(f);
                var results = new List<object>();
                foreach (Dictionary<string, object> c in (List<object>)f.Message["changes"])
                {
                    string op = (string)c["op"];
                    string code = op == "transform" ? "NOT_FOUND" : op == "reparent" ? "STALE" : null;
                    results.Add(code == null
                        ? new Dictionary<string, object> { { "uuid", c["uuid"] }, { "status", "queued" } }
                        : new Dictionary<string, object> { { "uuid", c["uuid"] }, { "status", "error" }, { "error_code", code }, { "message", "test" } });
                }
                return new Dictionary<string, object> { { "type", "ack" }, { "request_id", f.Message["request_id"] }, { "seq", 0L }, { "results", results } };
            }; }))
            {
                var a = r.Add("A");
                var b = r.Add("B");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                a.Position = new[] { 2.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                var ch = r.Daemon.WaitFor("change", 3, r.Pump);
                var op = (Dictionary<string, object>)((List<object>)ch[2].Message["changes"])[0];
                Check.Equal("create", (string)op["op"], "NOT_FOUND answered with a create");
                Check.Near(new[] { 2.0, 0, 0 }, Vectors.Doubles(op["t"]), 1e-12, "with the current state");
                b.Parent = a.Uuid;
                r.Engine.MarkDirty(b.Uuid);
                r.Daemon.WaitFor("change", 4, r.Pump);
                r.Settle();
                Check.Equal(4, r.Daemon.Received("change").Count, "STALE: no retry");
                Check.Equal(0, r.Daemon.Received("resync").Count, "STALE: no resync request (the daemon sends one by itself)");
                Check.Equal(2L, r.Engine.ChangeErrors, "two refused ops counted");
            }
        }

        [VsTest]
        public static void MeshCreateTravelsAloneWithItsAttachmentAndOrderIsKept()
        {
            using (var r = new Rig())
            {
                var child = new SceneObject { Uuid = Msg.NewUuid(), Name = "Child" };
                var parent = new SceneObject { Uuid = Msg.NewUuid(), Name = "Parent" };
                child.Parent = parent.Uuid;
                byte[] cube = HeadlessScene.CubeMesh(0.5f);
                child.Mesh = new MeshInfo { Buffer = cube, MeshHash = MeshData.HashOf(cube), VertexCount = 8, TriangleCount = 12 };
                r.Scene.Add(child); // the child comes first in the scene's order
                r.Scene.Add(parent);
                var other = r.Add("Other");
                r.StartAndRegister();
                var frames = r.Daemon.WaitFor("change", 3, r.Pump);
                var ops = new List<string>();
                foreach (var f in frames)
                    foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"]) ops.Add((string)op["uuid"]);
                Check.Equal(parent.Uuid, ops[0], "parent created first");
                Check.Equal(child.Uuid, ops[1], "then the child");
                Check.Equal(other.Uuid, ops[2], "then the rest, in order");
                var meshFrame = frames[1];
                Check.Equal(1, ((List<object>)meshFrame.Message["changes"]).Count, "a frame with an attachment carries exactly one change");
                Check.Equal(MeshData.HashOf(cube), (string)((Dictionary<string, object>)((List<object>)meshFrame.Message["changes"])[0])["mesh_hash"], "create names the mesh");
                Check.Equal(MeshData.HashOf(cube), MeshData.HashOf(meshFrame.Attachment), "the attachment is that mesh");
                Check.Equal(0, frames[0].Attachment.Length, "no attachment on the plain frame");
            }
        }

        [VsTest]
        public static void IncomingCreateWithMeshAttachmentIsApplied()
        {
            using (var r = new Rig())
            {
                r.StartAndRegister();
                string u = Msg.NewUuid();
                byte[] cube = HeadlessScene.CubeMesh(1f);
                var create = CubeCreate(u);
                create["mesh_hash"] = MeshData.HashOf(cube);
                r.Daemon.SendBatchWithAttachments(r.Daemon.NextSeq(), "slow", new KeyValuePair<Dictionary<string, object>, byte[]>(create, cube));
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var o = r.Scene.Find(u);
                Check.True(o != null && o.Mesh != null, "object with mesh");
                Check.Equal(8, o.Mesh.VertexCount, "vertices from the attachment");
                Check.Equal(12, o.Mesh.TriangleCount, "triangles");
                var st = r.Scene.Capture(u);
                Check.Equal(MeshData.HashOf(cube), st.MeshHash, "mesh hash in the state");
                Check.Equal(st.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[u], "hash includes mesh_hash");
            }
        }

        [VsTest]
        public static void LengthsArriveAndLeaveInTheEditorsUnitsHashesStayInMeters()
        {
            // A scene in centimeters (unit_scale 0.01): the daemon sends `t` in the receiver's units.
            using (var r = new Rig(null, 0.01))
            {
                r.StartAndRegister();
                Check.Equal(0.01, Convert.ToDouble(r.Daemon.Received("hello")[0].Message["unit_scale"]), "hello.unit_scale");
                string u = Msg.NewUuid();
                var create = CubeCreate(u);
                create["t"] = Msg.List(100, 300, -200); // (1, 3, -2) m
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", create);
                var ans = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var o = r.Scene.Find(u);
                Check.Near(new[] { 100.0, 300, 200 }, o.Position, 1e-9, "Unity frame, scene units");
                Check.Equal("1e150c0c89aa6b5a1e0d6a9555a933a43f9197b5d899ad5a7d8924d480ae2072", (string)((Dictionary<string, object>)ans["hashes"])[u], "hash over canonical meters");
                o.Position = new[] { 50.0, 0, 0 };
                r.Engine.MarkDirty(u);
                var ch = r.Daemon.WaitFor("change", 1, r.Pump);
                var op = (Dictionary<string, object>)((List<object>)ch[0].Message["changes"])[0];
                Check.Near(new[] { 50.0, 0, 0 }, Vectors.Doubles(op["t"]), 1e-9, "sent in the editor's units (canonical frame)");
            }
        }

        [VsTest]
        public static void RemoteDeleteOfAParentKeepsItsChildrenWhereTheyStandWithoutEcho()
        {
            // PROTOCOL.md §6.1: a received `delete` removes that one object; its children's fate
            // is the origin's to send (Blender keeps them). Destroying them with the parent, as
            // Unity does for a person's delete, deleted a person's objects in the other editor.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.Add("A", 1, 2, 3);
                a.Rotation = new[] { 0, 0, Math.Sin(Math.PI / 4), Math.Cos(Math.PI / 4) }; // 90° about Z
                a.Scale = new[] { 2.0, 2.0, 2.0 };
                var b = r.Add("B", 1, 0, 0);
                b.Parent = a.Uuid;
                var c = r.Add("C");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                // A delete of an unknown uuid is a no-op, not a failure.
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow",
                    new Dictionary<string, object> { { "op", "delete" }, { "uuid", a.Uuid } },
                    new Dictionary<string, object> { { "op", "delete" }, { "uuid", Msg.NewUuid() } });
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.Equal(0, ((Dictionary<string, object>)applied["hashes"]).Count, "deleted uuids are omitted");
                Check.True(r.Scene.Find(a.Uuid) == null, "the parent is deleted");
                var kept = r.Scene.Find(b.Uuid);
                Check.True(kept != null, "the child is kept");
                Check.True(kept.Parent == null, "as a root");
                // World pose: A's position + A's rotation (90° about Z) of A's scale (2) × (1, 0, 0).
                Check.Near(new[] { 1.0, 4.0, 3.0 }, kept.Position, 1e-9, "where it stood in the world");
                Check.Near(a.Rotation, kept.Rotation, 1e-9, "turned as it was");
                Check.Near(new[] { 2.0, 2.0, 2.0 }, kept.Scale, 1e-9, "scaled as it was");
                // The next local edit goes alone: the child's new parent was the batch's doing.
                c.Position = new[] { 5.0, 0, 0 };
                r.Engine.MarkDirty(c.Uuid);
                var ch = r.Daemon.WaitFor("change", 2, r.Pump);
                var ops = (List<object>)ch[1].Message["changes"];
                foreach (Dictionary<string, object> op in ops)
                    Check.Equal(c.Uuid, (string)op["uuid"], "only the person's edit is sent (no echo of the kept child)");
            }
        }

        [VsTest]
        public static void AnotherEditorsFullStateNeverOverwritesAPersonsUnsentEdit()
        {
            // PROTOCOL.md §6.4: a batch carries a `create` of A (Blender's not-synced edit sent
            // again in full) while the person has just moved A here. A `create` names every part:
            // applied whole it took the move away. Its other parts are applied (the name), the
            // move stays, the answer is the state the batch made, the move is sent after.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid);
                a.Position = new[] { 5.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                var full = before.ToCreateOp(1.0);
                full["uuid"] = a.Uuid;
                full["name"] = "Renamed in Blender";
                full["t"] = Msg.List(0, 0, 9);
                int changes = r.Daemon.Received("change").Count;
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", full);
                Check.Eventually(() => r.Client.IncomingCount >= 3, TimeSpan.FromSeconds(5), "the batch waiting, unread");
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var made = StateDiff.Apply(before, RemoteChange.Parse(full, null, 1.0));
                Check.Equal(made.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "the answer is the state the batch made");
                Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, "the person's move stays");
                Check.Equal("Renamed in Blender", a.Name, "the parts the person did not change are applied");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var ops = new List<string>();
                foreach (Dictionary<string, object> op in (List<object>)sent["changes"]) ops.Add((string)op["op"]);
                Check.Equal("transform", string.Join(",", ops), "only the person's move is sent after");
            }
        }

        [VsTest]
        public static void AnotherEditorsFullStateNeverOverwritesAPersonsEditOnItsWay()
        {
            // PROTOCOL.md §6.4: the person renamed A here and the rename is on its way (sent, no
            // result yet) when a batch brings Blender's full state of A, which arrived at the
            // daemon first and still has the old name. The batch commits the person's rename
            // (the later writer) and holds Unity to keep it. Applied whole, the create put
            // Blender's old name back here and nothing corrected it (the random edits test).
            // Now the other parts are applied, the name stays, the answer is the state the batch
            // made, and the rename is not sent again: its own result settles it.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                int changes = r.Daemon.Received("change").Count;
                r.RenameOnItsWay(a, "Mine");
                var mine = r.Scene.Capture(a.Uuid);
                var full = mine.ToCreateOp(1.0);
                full["name"] = "A";
                full["t"] = Msg.List(0, 0, 9);
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", full);
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var made = StateDiff.Apply(mine, RemoteChange.Parse(full, null, 1.0));
                Check.Equal(made.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "the answer is the state the batch made");
                Check.Equal(a.Uuid, string.Join(",", (List<object>)applied["spared"]), "`applied.spared` names A");
                Check.Equal("Mine", a.Name, "the person's rename on its way stays");
                Check.Equal(StateDiff.WithParts(made, mine, new[] { "rename" }).Hash(), r.Scene.Capture(a.Uuid).Hash(), "the batch's other parts are applied");
                r.Settle();
                Check.Equal(changes + 1, r.Daemon.Received("change").Count, "the rename is not sent again");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                r.Settle();
                Check.Equal(changes + 1, r.Daemon.Received("change").Count, "nor after its result");
                Check.True(!r.Engine.IsInFlight(a.Uuid) && !r.Engine.HasUnresolvedLocalWork(a.Uuid), "settled");
            }
        }

        [VsTest]
        public static void AnotherEditorsFullStateNeverTakesAKeptEditAway()
        {
            // PROTOCOL.md §6.2, §6.4: the person renamed A; that batch rolled back, and the rename
            // is kept here, not synced, with nothing on its way. Blender's full state of A then
            // arrives (its own kept move, sent again: it writes only what its person changed, so
            // its name is the one the daemon holds). Its move is applied, the kept name stays,
            // the answer is the state the batch made, and the kept edit goes again. Applied
            // whole, the batch took the kept rename away here while the daemon held the old name:
            // the person's rename was lost in both editors (the random edits test).
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid);
                r.RenameKeptNotSynced(a, "Mine");
                int changes = r.Daemon.Received("change").Count;
                var full = before.ToCreateOp(1.0);
                full["uuid"] = a.Uuid;
                full["t"] = Msg.List(0, 0, 9);
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", full);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                var applied = r.Daemon.Received("applied").Find(x => (string)x.Message["batch_id"] == id).Message;
                var made = StateDiff.Apply(before, RemoteChange.Parse(full, null, 1.0));
                Check.Equal(made.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "the answer is the state the batch made");
                Check.Equal(a.Uuid, string.Join(",", (List<object>)applied["spared"]), "`applied.spared` names A");
                Check.Equal("Mine", a.Name, "the person's kept rename stays");
                var held = r.Scene.Capture(a.Uuid);
                Check.Equal(StateDiff.WithParts(made, held, new[] { "rename" }).Hash(), held.Hash(), "the batch's other parts (Blender's move) are applied");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                bool named = false;
                foreach (Dictionary<string, object> op in (List<object>)sent["changes"])
                    named |= (string)op["uuid"] == a.Uuid && op.ContainsKey("name") && (string)op["name"] == "Mine";
                Check.True(named, "the kept rename goes again");
            }
        }

        /// <summary>The person's object "Mine" at (1, 2, 3): its `create` rolled back (Blender did not
        /// confirm it in time) and it is kept here, not synced, nothing on its way.</summary>
        static SceneObject KeptCreate(Rig r)
        {
            var a = r.Add("Mine", 1, 2, 3);
            r.StartAndRegister();
            var first = r.Daemon.WaitFor("change", 1, r.Pump);
            r.Daemon.Broadcast(new Dictionary<string, object>
            {
                { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.RolledBack },
                { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, (string)first[0].Message["request_id"] } } },
                { "error_code", "VERIFY_TIMEOUT" }, { "kept_local", true }, { "reason", "Blender did not confirm the change in time" },
            });
            Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid) && !r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "the person's create kept, not synced", r.Pump);
            return a;
        }

        /// <summary>Another editor's full state of <paramref name="a"/> ("Theirs", at (7, 0, 0)) in a
        /// batch; returns the batch id.</summary>
        static string TheirFullState(Rig r, SceneObject a)
        {
            var full = r.Scene.Capture(a.Uuid).ToCreateOp(1.0);
            full["name"] = "Theirs";
            full["t"] = Msg.List(7, 0, 0);
            return r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", full);
        }

        /// <summary>A person's object here whose `create` rolled back, kept not synced, then another
        /// editor's full state of it in a batch with <paramref name="outcome"/>.</summary>
        static void OtherFullStateOverAKeptCreate(string outcome)
        {
            using (var r = new Rig(rig => rig.Daemon.Commits = false))
            {
                var a = KeptCreate(r);
                string id = TheirFullState(r, a);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                Check.Equal("Theirs", a.Name, "applied whole: nothing of a kept create was ever committed");
                int changes = r.Daemon.Received("change").Count;
                r.Daemon.SendResult(id, r.Daemon.NextSeq(), outcome, new[] { a.Uuid }, outcome == BatchOutcome.RolledBack ? ErrorCode.VerifyMismatch : null);
                if (outcome == BatchOutcome.RolledBack)
                {
                    Check.Eventually(() => a.Name == "Mine", TimeSpan.FromSeconds(5), "the person's name back", r.Pump);
                    Check.Near(new[] { 1.0, 2, 3 }, a.Position, 1e-9, "the person's place back");
                    Check.True(r.Engine.NotSynced.ContainsKey(a.Uuid), "still not synced");
                    Check.True(r.Events.Contains("overtaken_undone"), "overtaken_undone event");
                }
                else
                {
                    Check.Eventually(() => !r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "synced: the daemon holds what Unity holds", r.Pump);
                    Check.Equal("Theirs", a.Name, "the committed state stands");
                }
                r.Settle(300);
                Check.Equal(changes, r.Daemon.Received("change").Count, "the bridge's doing: nothing sent");
            }
        }

        [VsTest]
        public static void AnotherEditorsFullStateOverAKeptCreateIsUndoneWhenItsBatchRollsBack()
        {
            // PROTOCOL.md §6.4: the person's object, whose create rolled back, is kept here. Another
            // editor's full state of it is applied whole; that batch rolls back, and the rollback's
            // correction (a `delete`: never committed) is skipped as kept work. The bridge puts back
            // what the batch overwrote: left, the other editor's name and place went out later as
            // this person's work.
            OtherFullStateOverAKeptCreate(BatchOutcome.RolledBack);
        }

        [VsTest]
        public static void AResultThatComesBeforeTheBatchIsAppliedIsReadOnceItIs()
        {
            // PROTOCOL.md §6.4: another editor's full state of the person's kept object waits here
            // unapplied, behind a replay that waits for the ack of a change in flight (§6.6), when
            // its batch_result comes: the daemon rolled it back at another editor's answer. What it
            // overwrites is read once it is applied, and put back. (Read at once, there was nothing
            // to put back yet, and the other editor's values stayed in the person's object.)
            bool ack = true;
            using (var r = new Rig(rig => { rig.Daemon.Commits = false; rig.Daemon.OnRequest = f => f.Type == "change" && !ack ? null : rig.Daemon.DefaultReply(f); }))
            {
                var a = KeptCreate(r);
                ack = false;
                var b = r.Add("Other", 5, 0, 0);
                r.Engine.MarkDirty(b.Uuid);
                int changes = r.Daemon.Received("change").Count;
                var unacked = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes];
                var otherState = r.Scene.Capture(b.Uuid).ToCreateOp(1.0);
                otherState["uuid"] = b.Uuid;
                string replay = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", otherState); // names the unacknowledged change
                string id = TheirFullState(r, a);
                r.Daemon.SendResult(id, r.Daemon.NextSeq(), BatchOutcome.RolledBack, new[] { a.Uuid }, ErrorCode.VerifyMismatch);
                Check.Eventually(() => r.Events.FindAll(e => e == "batch_result").Count >= 2, TimeSpan.FromSeconds(5), "the result read", r.Pump);
                Check.True(Applied(r, id) == null, "the batch still waits behind the replay");
                Check.Equal("Mine", a.Name, "not applied yet");
                ack = true;
                r.Daemon.Broadcast(r.Daemon.DefaultReply(unacked));
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch applied once the replay was", r.Pump);
                Check.True(Applied(r, replay) != null, "the replay applied first");
                a = r.Scene.Find(a.Uuid);
                Check.Equal("Mine", a.Name, "the person's name back");
                Check.Near(new[] { 1.0, 2, 3 }, a.Position, 1e-9, "the person's place back");
                Check.True(r.Events.Contains("overtaken_undone"), "overtaken_undone event");
            }
        }

        [VsTest]
        public static void APartThatCannotBePutBackLeavesTheOthersPutBack()
        {
            // PROTOCOL.md §6.4: putting back what a rolled-back batch overwrote goes part by part.
            // The editor refuses the rename back: the name stays as the batch wrote it, and the
            // person's place still comes back. (As one all-or-nothing batch, nothing came back.)
            using (var r = new Rig(rig => rig.Daemon.Commits = false))
            {
                var a = KeptCreate(r);
                string id = TheirFullState(r, a);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                r.Scene.Refuses = c => c.Uuid == a.Uuid && c.Op == Ops.Rename;
                r.Daemon.SendResult(id, r.Daemon.NextSeq(), BatchOutcome.RolledBack, new[] { a.Uuid }, ErrorCode.VerifyMismatch);
                Check.Eventually(() => r.Events.Contains("overtaken_undone"), TimeSpan.FromSeconds(5), "put back", r.Pump);
                a = r.Scene.Find(a.Uuid); // (the scene undid the whole batch first: its objects anew)
                Check.Near(new[] { 1.0, 2, 3 }, a.Position, 1e-9, "the person's place back");
                Check.Equal("Theirs", a.Name, "the refused part stays as the batch wrote it");
                Check.True(r.Engine.NotSynced.ContainsKey(a.Uuid), "still not synced");
            }
        }

        [VsTest]
        public static void AFullStateOverAKeptCreateSentAgainIsNotPutBackWhenTheirBatchRollsBack()
        {
            // The same, but the person's kept create was sent again (an edit) and is on its way
            // when the other editor's full state arrives: the batch carries both and answers this
            // editor's, and its rollback keeps what Unity holds (`kept_local`), which the daemon
            // reads as what Unity was sent. Put back, Unity held values the daemon did not know of
            // and their re-sends never settled (random edits, seed 233).
            using (var r = new Rig(rig => rig.Daemon.Commits = false))
            {
                var a = KeptCreate(r);
                a.Name = "Mine2";
                r.Engine.MarkDirty(a.Uuid);
                var again = r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Eventually(() => r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "its full state on its way", r.Pump);
                string id = TheirFullState(r, a);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", id }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.RolledBack },
                    { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, (string)again[1].Message["request_id"] } } },
                    { "error_code", "VERIFY_MISMATCH" }, { "kept_local", true }, { "reason", "Blender could not apply the change as sent (its state differs)" },
                });
                Check.Eventually(() => !r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "the result read", r.Pump);
                r.Settle(200);
                Check.True(!r.Events.Contains("overtaken_undone"), "nothing put back: the batch answered this editor's own full state");
                Check.True(r.Engine.NotSynced.ContainsKey(a.Uuid), "still kept");
            }
        }

        [VsTest]
        public static void AFullStateOverAKeptCreateWhoseResultWasLostIsUndoneWhenTheDaemonSaysItRolledBack()
        {
            // PROTOCOL.md §6.4: the connection drops after Unity applied another editor's full state
            // of the person's kept object and before that batch's result. After the reconnect Unity
            // asks `resync` from before that batch and sends nothing of the object until the answer:
            // not named there, the batch did not commit it (the daemon replays no state of a uuid
            // Unity keeps), so the person's name and place come back and go again in full; named,
            // it committed and the object is synced. (Before, the lost result left the other
            // editor's values, and they went out as this person's work.) Paused (Play Mode) when
            // the answer comes, Unity holds it unapplied and asks again when the pause ends.
            foreach (var variant in new[] { BatchOutcome.RolledBack, BatchOutcome.Committed, BatchOutcome.RolledBack + ", paused" })
            {
                string outcome = variant.Split(',')[0];
                bool paused = variant.EndsWith(", paused");
                using (var r = new Rig(rig => rig.Daemon.Commits = false))
                {
                    var a = KeptCreate(r);
                    long batchSeq = r.Daemon.Seq + 1;
                    string id = TheirFullState(r, a);
                    Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                    Check.Equal("Theirs", a.Name, "applied whole");
                    var theirs = r.Scene.Capture(a.Uuid).ToCreateOp(1.0);
                    int resyncs = r.Daemon.Received("resync").Count;
                    r.Daemon.Down = true;
                    r.Daemon.DropAll(); // the connection drops before the batch's result
                    Check.Eventually(() => r.Events.Contains("disconnected"), TimeSpan.FromSeconds(5), "disconnected", r.Pump);
                    int changes = r.Daemon.Received("change").Count;
                    r.Daemon.Down = false;
                    Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == 2, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
                    var asked = r.Daemon.WaitFor("resync", resyncs + 1, r.Pump);
                    var ask = asked.Find(f => f.Message.ContainsKey("since_seq") && (long)f.Message["since_seq"] == batchSeq - 1);
                    Check.True(ask != null, "asked from before the batch (since_seq " + (batchSeq - 1) + ")");
                    r.Settle(300);
                    foreach (var f in r.Daemon.Received("change").GetRange(changes, r.Daemon.Received("change").Count - changes))
                        foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                            Check.True((string)op["uuid"] != a.Uuid, "nothing of the object sent before the answer");
                    if (paused)
                    {
                        r.Engine.SetPaused(true);
                        string held = r.Daemon.SendResyncAnswer((string)ask.Message["request_id"], r.Daemon.NextSeq());
                        Check.Eventually(() => Applied(r, held) != null, TimeSpan.FromSeconds(5), "the answer held", r.Pump);
                        Check.Equal("Theirs", a.Name, "nothing decided while paused");
                        int before = r.Daemon.Received("resync").Count;
                        r.Engine.SetPaused(false);
                        asked = r.Daemon.WaitFor("resync", before + 2, r.Pump);
                        ask = asked.FindLast(f => (long)f.Message["since_seq"] == batchSeq - 1);
                        Check.True(ask != null && asked.IndexOf(ask) >= before, "asked again after the pause");
                    }
                    string answer = outcome == BatchOutcome.Committed
                        ? r.Daemon.SendResyncAnswer((string)ask.Message["request_id"], r.Daemon.NextSeq(), theirs)
                        : r.Daemon.SendResyncAnswer((string)ask.Message["request_id"], r.Daemon.NextSeq());
                    Check.Eventually(() => Applied(r, answer) != null, TimeSpan.FromSeconds(5), "the answer applied", r.Pump);
                    if (outcome == BatchOutcome.RolledBack)
                    {
                        Check.Equal("Mine", a.Name, "the person's name back");
                        Check.Near(new[] { 1.0, 2, 3 }, a.Position, 1e-9, "the person's place back");
                        Check.True(r.Engine.NotSynced.ContainsKey(a.Uuid), "still not synced");
                        var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump);
                        bool mine = false;
                        foreach (var f in sent.GetRange(changes, sent.Count - changes))
                            foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                                if ((string)op["uuid"] == a.Uuid)
                                {
                                    Check.Equal("Mine", (string)op["name"], "the person's name goes, not the other editor's");
                                    mine = true;
                                }
                        Check.True(mine, "the kept object goes again, in full");
                    }
                    else
                    {
                        Check.Eventually(() => !r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "synced", r.Pump);
                        Check.Equal("Theirs", a.Name, "the committed state stands");
                    }
                }
            }
        }

        [VsTest]
        public static void AnotherEditorsFullStateOverAKeptCreateThatCommitsSyncsIt()
        {
            // The same batch commits: the daemon holds what Unity now holds, the mark ends.
            OtherFullStateOverAKeptCreate(BatchOutcome.Committed);
        }

        [VsTest]
        public static void AKeptEditTheOtherPersonEditedSinceIsNoLongerSparedFromTheirFullState()
        {
            // PROTOCOL.md §6.4: the person renamed A; that batch rolled back and the rename is
            // kept here, not synced. Blender's person then renamed A (a plain op: their later
            // edit, applied here), and later sent A's full state with a newer name. That name is
            // applied: the kept rename was already overtaken, and A holds no name of this
            // person's to spare. Still counted kept, the full state's name was spared, and the
            // editor later sent the name it had received as its own person's (random edits,
            // seed 66, in Blender).
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid);
                r.RenameKeptNotSynced(a, "Mine");
                string first = r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", new Dictionary<string, object> { { "op", "rename" }, { "uuid", a.Uuid }, { "name", "Theirs" } });
                Check.Eventually(() => Applied(r, first) != null, TimeSpan.FromSeconds(5), "their rename answered", r.Pump);
                Check.Equal("Theirs", a.Name, "the other person's later rename is applied");
                var full = before.ToCreateOp(1.0);
                full["uuid"] = a.Uuid;
                full["name"] = "Newest";
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", full);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "their full state answered", r.Pump);
                var applied = r.Daemon.Received("applied").Find(x => (string)x.Message["batch_id"] == id).Message;
                object spared;
                Check.True(!applied.TryGetValue("spared", out spared) || !((List<object>)spared).Contains(a.Uuid), "A is not spared");
                Check.Equal("Newest", a.Name, "the other person's newest name is applied");
            }
        }

        [VsTest]
        public static void AKeptEditGoesAgainOnceAMoveMadeBeforeItsResultCommits()
        {
            // PROTOCOL.md §6.4: the person renamed A, then moved it before the rename's result
            // came; the rename's batch rolled back (kept, not synced) while the move was on its
            // way. The move carries only the pose, so its commit ends no mark: A stays not synced,
            // and once nothing sent before the mark is on its way the kept edit goes again in full.
            // Before, that commit cleared the mark and the rename was never sent again (random
            // edits, seed 87, in Blender).
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                KeptEditGoesAgainOnceTheEditAfterItEnds(r, a, o => o.Position = new[] { 3.0, 0, 0 }, BatchOutcome.Committed);
            }
        }

        [VsTest]
        public static void AKeptEditGoesAgainOnceAHideMadeBeforeItsResultIsRefusedStale()
        {
            // PROTOCOL.md §6.4: the person renamed A, then hid it before the rename's result came;
            // the rename's batch rolled back (kept, not synced) while the hide was on its way, and
            // the daemon then refused the hide `STALE` (Blender's person had shown A, committed
            // first), sending A's state before the refusal, as the daemon does. The resync finds A
            // kept and the hide on its way, so it is skipped; the refusal of a change that carried
            // no kept edit ends no mark, and the kept edit goes again in full. Before, the refusal
            // cleared the mark and the full state the resync made due with it: Unity held the kept
            // rename alone, nothing marked.
            bool holdNext = false;
            Dictionary<string, object> held = null;
            using (var r = new Rig(rig =>
            {
                rig.Daemon.Commits = true;
                rig.Daemon.OnRequest = f =>
                {
                    if (f.Type != "change" || !holdNext) return rig.Daemon.DefaultReply(f);
                    holdNext = false;
                    held = f.Message;
                    return null; // answered below
                };
            }))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid).Clone();
                string rename = r.RenameOnItsWay(a, "Mine");
                int changes = r.Daemon.Received("change").Count;
                holdNext = true;
                a.Visible = false;
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", changes + 1, r.Pump);
                Check.True(held != null, "the hide is at the daemon, not answered yet");
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.RolledBack },
                    { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, rename } } },
                    { "error_code", "VERIFY_MISMATCH" }, { "mismatched", new List<object> { a.Uuid } }, { "kept_local", true }, { "reason", "Blender held another state of it" },
                });
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "the rename kept", r.Pump);
                changes = r.Daemon.Received("change").Count;
                // (The package applies a resync once its changes sent before it are answered.)
                string resync = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", before.ToCreateOp());
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "ack" }, { "request_id", held["request_id"] }, { "seq", r.Daemon.Seq },
                    { "results", new List<object> { new Dictionary<string, object> { { "uuid", a.Uuid }, { "status", ItemStatus.Error }, { "error_code", ErrorCode.Stale }, { "message", "Blender's person changed it since" } } } },
                });
                Check.Eventually(() => Applied(r, resync) != null, TimeSpan.FromSeconds(5), "the resync answered", r.Pump);
                Check.Equal("Mine", a.Name, "the kept rename is not undone by the resync");
                KeptRenameGoesAgainInFull(r, a, changes);
            }
        }

        /// <summary>The person renamed A, then made <paramref name="edit"/> before the rename's
        /// result came; the rename's batch rolls back (kept, not synced) while that edit is on its
        /// way, and that edit then ends with <paramref name="outcome"/>: A stays not synced, and
        /// the kept edit goes again in full (PROTOCOL.md §6.4).</summary>
        static void KeptEditGoesAgainOnceTheEditAfterItEnds(Rig r, SceneObject a, Action<SceneObject> edit, string outcome)
        {
            string rename = r.RenameOnItsWay(a, "Mine");
            int changes = r.Daemon.Received("change").Count;
            edit(a);
            r.Engine.MarkDirty(a.Uuid);
            string after = (string)r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message["request_id"];
            r.Daemon.Broadcast(new Dictionary<string, object>
            {
                { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.RolledBack },
                { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, rename } } },
                { "error_code", "VERIFY_MISMATCH" }, { "mismatched", new List<object> { a.Uuid } }, { "kept_local", true }, { "reason", "Blender held another state of it" },
            });
            Check.Eventually(() => r.Engine.NotSynced.ContainsKey(a.Uuid), TimeSpan.FromSeconds(5), "the rename kept", r.Pump);
            Check.True(r.Engine.IsInFlight(a.Uuid), "the edit after it still on its way");
            changes = r.Daemon.Received("change").Count;
            r.Daemon.Broadcast(new Dictionary<string, object>
            {
                { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", outcome },
                { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, after } } },
            });
            KeptRenameGoesAgainInFull(r, a, changes);
        }

        /// <summary>The next `change` after the first <paramref name="changes"/> sends A's kept
        /// rename ("Mine") again in full, and A stays not synced until it commits.</summary>
        static void KeptRenameGoesAgainInFull(Rig r, SceneObject a, int changes)
        {
            var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
            var op = (Dictionary<string, object>)((List<object>)sent["changes"])[0];
            Check.Equal("create", (string)op["op"], "the kept edit goes again in full");
            Check.Equal("Mine", (string)op["name"], "with the kept rename");
            Check.True(r.Engine.NotSynced.ContainsKey(a.Uuid), "still not synced until that full state commits");
        }

        [VsTest]
        public static void AKeptEditGoesAgainOnceAHideMadeBeforeItsResultIsDropped()
        {
            // PROTOCOL.md §6.4: the person renamed A, then hid it before the rename's result came;
            // the rename's batch rolled back (kept, not synced) while the hide was on its way, and
            // the hide then lost a conflict at the daemon (`dropped`: Blender's person showed A
            // later). The hide carried no kept edit, so its loss ends no mark: A stays not synced,
            // and the kept edit goes again in full. Before, the drop cleared the mark and Unity
            // waited for a correction the daemon never sends over kept work: Unity held A hidden
            // under the old name's rename, the others did not, nothing marked (random edits, seed 2).
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                KeptEditGoesAgainOnceTheEditAfterItEnds(r, a, o => o.Visible = false, BatchOutcome.Dropped);
            }
        }

        [VsTest]
        public static void ARenameWhoseResultCameIsNoLongerSparedWhileTheDragAfterItIsOnItsWay()
        {
            // PROTOCOL.md §6.4: what is spared is what the daemon has not taken yet. The person
            // renamed A, then dragged it; the rename's result came (`through` names it), the
            // moves are still on their way. A batch then brings Blender's later rename and move
            // of A: the rename is applied, the move is not. Counting every part sent since A
            // last had nothing in flight, Unity kept its old name for good over a drag.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                int changes = r.Daemon.Received("change").Count;
                string rename = r.RenameOnItsWay(a, "Mine");
                a.Position = new[] { 1.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", changes + 2, r.Pump);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "both acknowledged", r.Pump);
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() }, { "outcome", BatchOutcome.Committed },
                    { "uuids", new List<object> { a.Uuid } }, { "through", new Dictionary<string, object> { { a.Uuid, rename } } },
                });
                r.Settle();
                Check.True(r.Engine.IsInFlight(a.Uuid), "the move is still on its way");
                var theirName = new Dictionary<string, object> { { "op", "rename" }, { "uuid", a.Uuid }, { "name", "Blender's" } };
                var theirMove = new Dictionary<string, object> { { "op", "transform" }, { "uuid", a.Uuid }, { "t", Msg.List(0, 0, 9) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) } };
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", theirName, theirMove);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                Check.Equal("Blender's", a.Name, "the rename the daemon has taken is not spared");
                Check.Near(new[] { 1.0, 0, 0 }, a.Position, 1e-12, "the move on its way is");
                r.Settle();
                Check.Equal(changes + 2, r.Daemon.Received("change").Count, "nothing is sent again");
            }
        }

        [VsTest]
        public static void APersonsEditNotCapturedYetIsNotOverwrittenByABatch()
        {
            // PROTOCOL.md §6.4: a person moved and renamed A in Unity; before the engine captured
            // it, a batch from Blender moves A and hides it. The batch was applied over the move
            // and A was captured as applied: the move was undone and the rename never sent. Now
            // the batch's op of a part the person changed is not applied, its other ops are, the
            // answer is the state the batch made, and the person's edit is sent after it.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid);
                a.Position = new[] { 5.0, 0, 0 };
                a.Name = "Mine";
                r.Engine.MarkDirty(a.Uuid);
                var move = new Dictionary<string, object> { { "op", "transform" }, { "uuid", a.Uuid }, { "t", Msg.List(0, 0, 9) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) } };
                var hide = new Dictionary<string, object> { { "op", "visibility" }, { "uuid", a.Uuid }, { "visible", false } };
                int changes = r.Daemon.Received("change").Count;
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", move, hide);
                Check.Eventually(() => r.Client.IncomingCount >= 4, TimeSpan.FromSeconds(5), "the batch waiting, unread");
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var made = StateDiff.Apply(StateDiff.Apply(before, RemoteChange.Parse(move, null, 1.0)), RemoteChange.Parse(hide, null, 1.0));
                Check.Equal(made.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "the answer is the state the batch made");
                var spared = (List<object>)applied["spared"];
                Check.Equal(1, spared.Count, "`applied.spared` names what it left unapplied (§6.4)");
                Check.Equal(a.Uuid, (string)spared[0], "A, whose move stays");
                Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, "the person's move stays");
                Check.Equal("Mine", a.Name, "the person's rename stays");
                Check.True(!a.Visible, "the batch's other part is applied");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var ops = new HashSet<string>();
                foreach (Dictionary<string, object> op in (List<object>)sent["changes"])
                {
                    Check.Equal(a.Uuid, (string)op["uuid"], "only A");
                    ops.Add((string)op["op"]);
                }
                Check.True(ops.SetEquals(new[] { "transform", "rename" }), "the person's edit is sent after: " + string.Join(",", ops));
            }
        }

        /// <summary>
        /// PROTOCOL.md §6.4, §6.1: the person put B under A, and that reparent is in flight when a
        /// batch puts A under B (another editor's, made before it heard of this one). Applied, it
        /// made a parent loop; the batch rolled back and each editor kept its own reparent, not
        /// synced. Now A stays where it is, the answer is the state the batch made, nothing of A
        /// is sent back, and the daemon's correction (the person's reparent lost: both objects,
        /// parents first) is applied whole.
        /// </summary>
        [VsTest]
        public static void AReparentMakingALoopWithThePersonsReparentInFlightIsLeftUnappliedAndAnsweredAsMade()
        {
            ReparentLoopingWithThePersons(PersonsReparent.InFlight);
        }

        /// <summary>
        /// The same with the person's reparent not captured yet when the batch is applied: it is
        /// sent after the answer, from the seq before the batch (made without it), so the daemon
        /// can tell it lost rather than refuse it as a loop this editor knew of.
        /// </summary>
        [VsTest]
        public static void AReparentMakingALoopWithThePersonsUncapturedReparentSendsThatOneFromTheSeqBefore()
        {
            ReparentLoopingWithThePersons(PersonsReparent.NotCaptured);
        }

        /// <summary>
        /// The same with the person's reparent kept here, not synced (its batch rolled back with
        /// kept_local: the other editor timed out). Left out of the loop rule, it was answered as
        /// held, the other editor's reparent rolled back too and each editor kept its own, not
        /// synced, for good. Now it loses like one not captured: sent after the answer from the
        /// seq before the batch, refused STALE (a conflict), and the correction is applied over it.
        /// </summary>
        [VsTest]
        public static void AReparentMakingALoopWithThePersonsKeptReparentSendsThatOneFromTheSeqBefore()
        {
            ReparentLoopingWithThePersons(PersonsReparent.Kept);
        }

        /// <summary>
        /// PROTOCOL.md §6.4: the person's reparent of B under A is kept here, not synced; another
        /// editor's batch puts A under B and carries B's full state at the root (its own newer
        /// change of B). The batch's `create` of B overwrites the kept reparent, so A under B
        /// makes no loop: it is applied. Left out as a loop, A stayed at the root here while the
        /// answer said it was under B, and nothing ever corrected it.
        /// </summary>
        [VsTest]
        public static void AReparentWhoseLoopTheSameBatchUndoesIsApplied()
        {
            using (var r = new Rig())
            {
                SceneObject a, b;
                TwoCommitted(r, out a, out b);
                var bBefore = r.Scene.Capture(b.Uuid);
                PutBUnderA(r, a, b);
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                    { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { b.Uuid } }, { "error_code", ErrorCode.VerifyTimeout },
                    { "kept_local", true }, { "reason", "Blender did not confirm the change in time" },
                });
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(b.Uuid) && !r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B kept, not synced", r.Pump);
                var theirs = new Dictionary<string, object> { { "op", "reparent" }, { "uuid", a.Uuid }, { "parent", b.Uuid } };
                var bTheirs = bBefore.ToCreateOp(1.0);
                bTheirs["uuid"] = b.Uuid;
                bTheirs["name"] = "B renamed in Blender";
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", theirs, bTheirs);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                Check.True(b.Parent == null, "B at the root, as the batch's full state of it says");
                Check.Equal(b.Uuid, a.Parent, "A under B: the same batch undid the loop, so it is applied");
                Check.Equal(r.Scene.Capture(a.Uuid).Hash(), (string)Applied(r, id)[a.Uuid], "answered as it holds");
                Check.Equal(r.Scene.Capture(b.Uuid).Hash(), (string)Applied(r, id)[b.Uuid], "B answered as it holds");
            }
        }

        /// <summary>
        /// PROTOCOL.md §6.4, §6.6: the person put B under A; while that was in flight, a batch put A
        /// under B — left out here (a loop with the person's reparent in flight), answered as made.
        /// The connection dropped before the daemon answered the person's reparent. After the
        /// reconnect it goes again from the seq before that batch (Unity never held A under B), not
        /// the seq Unity connected with: the daemon refuses it STALE, a conflict the other editor
        /// won, corrected with both objects — from the later seq it was refused INVALID_FIELD, a
        /// loop Unity "knew" of, and nothing ever corrected it.
        /// </summary>
        [VsTest]
        public static void AChangeInFlightThatLostALoopGoesAgainFromBeforeThatBatch()
        {
            using (var r = new Rig())
            {
                SceneObject a, b;
                TwoCommitted(r, out a, out b);
                int changes = r.Daemon.Received("change").Count;
                PutBUnderA(r, a, b);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "B's reparent acknowledged", r.Pump);
                long before = r.Engine.LastSeq; // the seq Unity had before the batch
                var theirs = new Dictionary<string, object> { { "op", "reparent" }, { "uuid", a.Uuid }, { "parent", b.Uuid } };
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", theirs);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                Check.True(a.Parent == null && b.Parent == a.Uuid, "left out: a loop with the person's reparent");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new string[0]);
                long later = r.Daemon.Seq;
                Check.Eventually(() => r.Engine.LastSeq >= later, TimeSpan.FromSeconds(5), "a later seq", r.Pump);
                r.Daemon.Down = true;
                r.Daemon.DropAll(); // the connection drops before the daemon answers B's reparent
                Check.Eventually(() => r.Events.Contains("disconnected"), TimeSpan.FromSeconds(5), "disconnected", r.Pump);
                string replay = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq()); // nothing changed meanwhile
                r.Daemon.Down = false;
                Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == 2, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
                Check.Eventually(() => Applied(r, replay) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                var again = r.Daemon.WaitFor("change", changes + 2, r.Pump)[changes + 1].Message;
                var op = (Dictionary<string, object>)((List<object>)again["changes"])[0];
                Check.Equal(b.Uuid, (string)op["uuid"], "B sent again");
                Check.Equal(a.Uuid, (string)op["parent"], "its reparent");
                Check.Equal(before, (long)again["base_seq"], "from the seq before the batch it lost the loop to");
            }
        }

        /// <summary>
        /// PROTOCOL.md §6.6 "Edits made while away": the person's reparent was in flight when the
        /// connection dropped; after the reconnect it goes again from the seq Unity connected with
        /// (the seq it was made on), not the replay's. The connection drops again before the
        /// daemon answers that re-send: it goes once more from that first seq. From the later seq
        /// (the first replay's) another editor's reparent it had never held read as a loop Unity
        /// knew of, refused INVALID_FIELD and kept for good (model seed 3012).
        /// </summary>
        [VsTest]
        public static void AChangeLostTwiceGoesAgainFromTheSeqItWasMadeOn()
        {
            using (var r = new Rig())
            {
                SceneObject a, b;
                TwoCommitted(r, out a, out b);
                int changes = r.Daemon.Received("change").Count;
                PutBUnderA(r, a, b);
                Check.Eventually(() => r.Engine.AwaitingResults == 1, TimeSpan.FromSeconds(5), "B's reparent acknowledged", r.Pump);
                long made = r.Engine.LastSeq;
                int connected = 1;
                for (int drop = 1; drop <= 2; drop++)
                {
                    r.Daemon.Down = true;
                    r.Daemon.DropAll(); // the connection drops before the daemon answers B's reparent
                    Check.Eventually(() => r.Events.FindAll(e => e == "disconnected").Count == drop, TimeSpan.FromSeconds(5), "disconnected", r.Pump);
                    r.Daemon.NextSeq();
                    string replay = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq()); // nothing of A or B
                    r.Daemon.Down = false;
                    connected++;
                    Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == connected, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
                    Check.Eventually(() => Applied(r, replay) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                    var again = r.Daemon.WaitFor("change", changes + 1 + drop, r.Pump)[changes + drop].Message;
                    var op = (Dictionary<string, object>)((List<object>)again["changes"])[0];
                    Check.Equal(b.Uuid, (string)op["uuid"], "B sent again");
                    Check.Equal(made, (long)again["base_seq"], "from the seq it was made on, after drop " + drop);
                }
            }
        }

        /// <summary>
        /// PROTOCOL.md §6.4: a batch's reparent left out for a loop with the person's reparent in
        /// flight (A under B, while the person put B under A) waits: the daemon holds it. The
        /// person's reparent loses, and the correction brings B alone back to the root (two of the
        /// person's reparents made the loop, and the daemon's cycle did not name A: model seed
        /// 217). A goes under B then, the batch's doing: nothing of it is sent. Before, A stayed
        /// at the root here, under B everywhere else, for good. One that another parent of A
        /// reaches first waits no more.
        /// </summary>
        [VsTest]
        public static void AReparentLeftOutForALoopIsAppliedOnceTheLoopIsGone()
        {
            foreach (bool movedMeanwhile in new[] { false, true })
            {
                using (var r = new Rig())
                {
                    SceneObject a, b;
                    ObjectState bBefore;
                    LeaveAUnderBOut(r, out a, out b, out bBefore);
                    if (movedMeanwhile)
                    {
                        // A later batch puts A somewhere else first: that is where the daemon has it.
                        var root = new Dictionary<string, object> { { "op", "reparent" }, { "uuid", a.Uuid }, { "parent", null } };
                        string later = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", root);
                        Check.Eventually(() => Applied(r, later) != null, TimeSpan.FromSeconds(5), "the later batch answered", r.Pump);
                    }
                    r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "dropped", new[] { b.Uuid });
                    Check.Eventually(() => !r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B's reparent lost", r.Pump);
                    int changes = r.Daemon.Received("change").Count;
                    var bTheirs = bBefore.ToCreateOp(1.0);
                    bTheirs["uuid"] = b.Uuid;
                    string fix = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", bTheirs);
                    Check.Eventually(() => Applied(r, fix) != null, TimeSpan.FromSeconds(5), "the correction answered", r.Pump);
                    Check.True(b.Parent == null, "B back at the root");
                    if (movedMeanwhile) Check.True(a.Parent == null, "A where the later batch put it");
                    else Check.Equal(b.Uuid, a.Parent, "A under B once the loop is gone");
                    for (int i = 0; i < 20; i++) r.Pump();
                    Check.Equal(changes, r.Daemon.Received("change").Count, "nothing of A is sent: the batch's doing");
                }
            }
        }

        /// <summary>
        /// PROTOCOL.md §6.4: a batch's reparent left out for a loop with the person's reparent (A
        /// under B, while the person put B under A) waits only while the daemon may hold it. Its
        /// batch rolled back — here the result went with the connection (the daemon restarted),
        /// and nothing in the replay restated A, whose committed state that batch never changed —
        /// so when a later batch puts B back at the root, A stays where it is. Before, A went
        /// under B: the rolled-back reparent (an agent's tool's, in model seed 64), applied here
        /// alone, and the editors stayed apart. A rolled-back result read on the connection ends
        /// the wait too.
        /// </summary>
        [VsTest]
        public static void AReparentLeftOutForALoopWaitsNoMoreOnceItsBatchRollsBackOrItsResultIsLost()
        {
            foreach (bool lost in new[] { true, false })
            {
                using (var r = new Rig())
                {
                    SceneObject a, b;
                    ObjectState bBefore;
                    string id = LeaveAUnderBOut(r, out a, out b, out bBefore);
                    if (lost)
                    {
                        r.Daemon.Down = true;
                        r.Daemon.DropAll(); // the daemon restarts before the batch's result
                        Check.Eventually(() => r.Events.Contains("disconnected"), TimeSpan.FromSeconds(5), "disconnected", r.Pump);
                        string replay = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq()); // nothing changed
                        r.Daemon.Down = false;
                        Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == 2, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
                        Check.Eventually(() => Applied(r, replay) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                        r.Daemon.WaitFor("change", 3, r.Pump); // B's reparent, sent again
                    }
                    else
                    {
                        r.Daemon.SendResult(id, r.Daemon.NextSeq(), "rolled_back", new[] { a.Uuid }, ErrorCode.VerifyTimeout);
                    }
                    r.Settle(); // acknowledged
                    r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "dropped", new[] { b.Uuid });
                    Check.Eventually(() => !r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B's reparent ended", r.Pump);
                    var bTheirs = bBefore.ToCreateOp(1.0);
                    bTheirs["uuid"] = b.Uuid;
                    string fix = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", bTheirs);
                    Check.Eventually(() => Applied(r, fix) != null, TimeSpan.FromSeconds(5), "the batch putting B at the root answered", r.Pump);
                    Check.True(b.Parent == null, "B at the root");
                    Check.True(a.Parent == null, lost ? "A stays: the batch's result was lost with the connection" : "A stays: the batch rolled back");
                }
            }
        }

        /// <summary>
        /// PROTOCOL §6.4: a batch's `delete` that automation made (`apply.automation`) of an object
        /// a person here moved and the daemon has not taken yet (not captured, sent without a
        /// result, or kept not synced after its batch rolled back) is not applied: the object stays with the person's move, the answer is what
        /// Unity holds (so the batch rolls back, and automation's delete with it, everywhere), and
        /// the move goes to the daemon. Before, the object was deleted under the person's hands.
        /// A person's delete from the other editor is still applied (a conflict the delete won).
        /// </summary>
        [VsTest]
        public static void AutomationsDeleteOfWhatAPersonIsMovingIsNotApplied()
        {
            foreach (var mode in new[] { PersonsReparent.NotCaptured, PersonsReparent.InFlight, PersonsReparent.Kept })
            foreach (bool automation in new[] { true, false })
            {
                bool sent = mode != PersonsReparent.NotCaptured;
                using (var r = new Rig())
                {
                    SceneObject a, b;
                    TwoCommitted(r, out a, out b);
                    int changes = r.Daemon.Received("change").Count;
                    a.Position = new[] { 5.0, 0, 0 }; // the person's move
                    r.Engine.MarkDirty(a.Uuid);
                    if (sent)
                    {
                        r.Daemon.WaitFor("change", changes + 1, r.Pump);
                        Check.Eventually(() => r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "the move in flight", r.Pump);
                    }
                    if (mode == PersonsReparent.Kept) KeepNotSynced(r, a.Uuid);
                    int frames = r.Client.IncomingCount;
                    string id = Guid.NewGuid().ToString();
                    long seq = r.Daemon.NextSeq();
                    r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "batch_begin" }, { "batch_id", id }, { "seq", seq }, { "path", "slow" }, { "count", 1L } });
                    var apply = new Dictionary<string, object> { { "type", "apply" }, { "batch_id", id }, { "change", new Dictionary<string, object> { { "op", "delete" }, { "uuid", a.Uuid } } } };
                    if (automation) apply["automation"] = true;
                    r.Daemon.Broadcast(apply);
                    r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "batch_end" }, { "batch_id", id }, { "seq", seq } });
                    if (!sent) Check.Eventually(() => r.Client.IncomingCount >= frames + 3, TimeSpan.FromSeconds(5), "the batch waiting, unread");
                    Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                    var answer = r.Daemon.Received("applied").Find(x => (string)x.Message["batch_id"] == id).Message;
                    string tag = mode + (automation ? ", automation's delete" : ", a person's delete") + ": ";
                    if (!automation)
                    {
                        Check.True(!r.Scene.Holds(a.Uuid), tag + "a person's delete is applied");
                        Check.True(!Applied(r, id).ContainsKey(a.Uuid), tag + "answered without it");
                        continue;
                    }
                    Check.True(r.Scene.Holds(a.Uuid), tag + "the object stays");
                    Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, tag + "with the person's move");
                    Check.Equal(r.Scene.Capture(a.Uuid).Hash(), (string)Applied(r, id)[a.Uuid], tag + "answered as Unity holds it");
                    var failed = (Dictionary<string, object>)answer["failed"];
                    Check.True(((string)failed[a.Uuid]).Contains("a person in Unity was editing it"), tag + "why, for the agent: " + failed[a.Uuid]);
                    if (!sent)
                    {
                        // The move goes after the answer, as any person's edit a batch spared.
                        var mine = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                        var op = (Dictionary<string, object>)((List<object>)mine["changes"])[0];
                        Check.Equal(a.Uuid + " transform", (string)op["uuid"] + " " + (string)op["op"], tag + "the person's move sent");
                    }
                    // The batch rolls back: the daemon's resync of the state before it keeps the move here.
                    var before = r.Scene.Capture(b.Uuid); // unchanged by any of this
                    r.Daemon.SendResult(id, r.Daemon.NextSeq(), "rolled_back", new[] { a.Uuid }, "VERIFY_MISMATCH");
                    r.Settle();
                    Check.True(r.Scene.Holds(a.Uuid), tag + "still there after the rollback");
                    Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, tag + "the move still there");
                    Check.Equal(before.Hash(), r.Scene.Capture(b.Uuid).Hash(), tag + "B untouched");
                }
            }
        }

        /// <summary>A (at the origin) and B (at x=2) registered, sent and committed.</summary>
        static void TwoCommitted(Rig r, out SceneObject a, out SceneObject b)
        {
            var x = r.Add("A");
            var y = r.Add("B", 2, 0, 0);
            r.StartAndRegister();
            r.Daemon.WaitFor("change", 1, r.Pump);
            r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { x.Uuid, y.Uuid });
            Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "creates resolved", r.Pump);
            a = x;
            b = y;
        }

        /// <summary>A and B committed; the person puts B under A, and while that is in flight
        /// another editor's batch puts A under B: left out here, a loop with the person's
        /// reparent (PROTOCOL.md §6.4). Returns that batch's id.</summary>
        static string LeaveAUnderBOut(Rig r, out SceneObject a, out SceneObject b, out ObjectState bBefore)
        {
            TwoCommitted(r, out a, out b);
            bBefore = r.Scene.Capture(b.Uuid);
            PutBUnderA(r, a, b);
            var theirs = new Dictionary<string, object> { { "op", "reparent" }, { "uuid", a.Uuid }, { "parent", b.Uuid } };
            string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", theirs);
            Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
            Check.True(a.Parent == null && b.Parent == a.Uuid, "left out: a loop with the person's reparent");
            return id;
        }

        /// <summary>The person puts B under A; the reparent is sent and in flight.</summary>
        static void PutBUnderA(Rig r, SceneObject a, SceneObject b)
        {
            int changes = r.Daemon.Received("change").Count;
            b.Parent = a.Uuid;
            r.Engine.MarkDirty(b.Uuid);
            r.Daemon.WaitFor("change", changes + 1, r.Pump);
            Check.Eventually(() => r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B's reparent in flight", r.Pump);
        }

        /// <summary>
        /// A person here put B under A; its batch rolled back, so B is kept here, not synced
        /// (PROTOCOL.md §6.4). Then another editor's delete of A arrives: the scene leaves B at
        /// the root where it stands (§6.1). Nothing sent B again — its kept edit named A, and was
        /// retried only when the person touched B again — while the other editor, which never
        /// held B under A, kept B where it was: the two stayed apart (the end-to-end case: Unity
        /// puts the Cube under an Empty that Blender's person deletes at that moment). B now goes
        /// again, whole, as it stands.
        /// </summary>
        [VsTest]
        public static void AKeptObjectWhoseParentIsDeletedIsSentAgainAsItStands()
        {
            using (var r = new Rig())
            {
                var a = r.Add("A", 1, 2, 3);
                var b = r.Add("B", 2, 0, 0);
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid, b.Uuid });
                Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "creates resolved", r.Pump);
                int changes = r.Daemon.Received("change").Count;
                b.Parent = a.Uuid; // the person's reparent
                r.Engine.MarkDirty(b.Uuid);
                r.Daemon.WaitFor("change", changes + 1, r.Pump);
                Check.Eventually(() => r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B's reparent in flight", r.Pump);
                KeepNotSynced(r, b.Uuid);
                r.Settle();
                changes = r.Daemon.Received("change").Count;
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", new Dictionary<string, object> { { "op", "delete" }, { "uuid", a.Uuid } });
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the delete applied", r.Pump);
                Check.True(r.Scene.Capture(a.Uuid) == null, "A is gone");
                Check.True(b.Parent == null, "B at the root where it stands");
                var mine = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var op = (Dictionary<string, object>)((List<object>)mine["changes"])[0];
                Check.Equal(b.Uuid + " create", (string)op["uuid"] + " " + (string)op["op"], "B sent again, whole");
                Check.True(op["parent"] == null, "as it stands: at the root");
                Check.Equal(r.Scene.Capture(b.Uuid).Hash(), ObjectState.FromCreate(RemoteChange.Parse(op, null, 1.0)).Hash(), "what it holds now");
            }
        }

        /// <summary>
        /// A rig whose daemon refuses a change of a uuid `INVALID_FIELD` ("a parent cycle")
        /// when <paramref name="refuses"/> says so, with A, B and C registered and their
        /// creates committed.
        /// </summary>
        static Rig LoopRefusingRig(Func<string, bool> refuses, out SceneObject a, out SceneObject b, out SceneObject c)
        {
            var r = new Rig(rig => rig.Daemon.OnRequest = f =>
            {
                if (f.Type != "change") return rig.Daemon.DefaultReply(f);
                var results = new List<object>();
                foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                {
                    if (refuses((string)op["uuid"]))
                        results.Add(new Dictionary<string, object> { { "uuid", op["uuid"] }, { "status", "error" }, { "error_code", ErrorCode.InvalidField }, { "message", "a parent cycle" } });
                    else results.Add(new Dictionary<string, object> { { "uuid", op["uuid"] }, { "status", "queued" } });
                }
                return new Dictionary<string, object> { { "type", "ack" }, { "request_id", f.Message["request_id"] }, { "seq", rig.Daemon.NextSeq() }, { "results", results } };
            });
            a = r.Add("A");
            b = r.Add("B", 2, 0, 0);
            c = r.Add("C", 4, 0, 0);
            r.StartAndRegister();
            r.Daemon.WaitFor("change", 1, r.Pump);
            r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid, b.Uuid, c.Uuid });
            Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "creates resolved", r.Pump);
            return r;
        }

        /// <summary>How many changes of <paramref name="uuid"/> the daemon has received.</summary>
        static int ChangesSent(Rig r, string uuid)
        {
            int n = 0;
            foreach (var f in r.Daemon.Received("change"))
                foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                    if ((string)op["uuid"] == uuid) n++;
            return n;
        }

        /// <summary>
        /// The person put A under B; its batch rolled back, so A is kept here, not synced. Then
        /// they put C under A, which the daemon refused INVALID_FIELD: read against A's committed
        /// parent (not B), it closed a loop. C is kept too (PROTOCOL.md §6.4). When A's kept
        /// reparent commits (here: sent again after the person's next edit of A), the parents C
        /// was refused for have changed: C goes again, whole, by itself. Before, it went only on
        /// the usual triggers (the person's next edit of C, a peer joining), and the editors
        /// stayed apart until then (model seed 222). A batch with a reparent, create or delete is
        /// such a change too.
        /// </summary>
        [VsTest]
        public static void AnEditRefusedAsALoopGoesAgainWhenTheParentsItWasReadAgainstChange()
        {
            string refuse = null;
            SceneObject a, b, c;
            using (var r = LoopRefusingRig(u => { if (u != refuse) return false; refuse = null; return true; }, out a, out b, out c))
            {
                Func<string, int> sent = u => ChangesSent(r, u);
                a.Parent = b.Uuid; // the person's reparent of A
                r.Engine.MarkDirty(a.Uuid);
                Check.Eventually(() => r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "A's reparent in flight", r.Pump);
                r.Settle(); // acknowledged
                KeepNotSynced(r, a.Uuid);
                refuse = c.Uuid;
                c.Parent = a.Uuid; // and of C, under A
                r.Engine.MarkDirty(c.Uuid);
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(c.Uuid), TimeSpan.FromSeconds(5), "C refused, kept", r.Pump);
                r.Settle();
                int cSent = sent(c.Uuid);
                a.Position = new[] { 1.0, 0, 0 }; // the person edits A again: it goes whole
                r.Engine.MarkDirty(a.Uuid);
                Check.Eventually(() => r.Engine.IsInFlight(a.Uuid), TimeSpan.FromSeconds(5), "A sent again", r.Pump);
                r.Settle();
                Check.Equal(cSent, sent(c.Uuid), "C waits: nothing changed the parents it was read against yet");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "committed", new[] { a.Uuid });
                Check.Eventually(() => sent(c.Uuid) == cSent + 1, TimeSpan.FromSeconds(5), "C sent again once A committed", r.Pump);
                var op2 = (Dictionary<string, object>)null;
                foreach (var f in r.Daemon.Received("change"))
                    foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                        if ((string)op["uuid"] == c.Uuid) op2 = op;
                Check.Equal("create " + a.Uuid, (string)op2["op"] + " " + (string)op2["parent"], "whole, under A");
            }
        }

        /// <summary>
        /// C, kept here, was refused INVALID_FIELD as a loop. Another editor's batch that moves
        /// parents is applied here: C goes again at once, and the daemon refuses it again — it
        /// reads committed parents, and the batch is not committed until its batch_result. When
        /// that result says committed, C goes once more, by itself; before, it stayed kept, shown
        /// "not synced" although nothing was left to stop it (model seed 2011, PROTOCOL.md §6.1).
        /// </summary>
        [VsTest]
        public static void AnEditRefusedAsALoopGoesAgainWhenABatchThatMovedParentsCommits()
        {
            string refuse = null;
            int refusals = 0;
            SceneObject a, b, c;
            using (var r = LoopRefusingRig(u => { if (u != refuse || refusals == 0) return false; refusals--; return true; }, out a, out b, out c))
            {
                Func<int> sent = () => ChangesSent(r, c.Uuid);
                refuse = c.Uuid;
                refusals = 2;
                c.Parent = a.Uuid; // the person's reparent of C, read as a loop
                r.Engine.MarkDirty(c.Uuid);
                Check.Eventually(() => r.Engine.NotSynced.ContainsKey(c.Uuid), TimeSpan.FromSeconds(5), "C refused, kept", r.Pump);
                r.Settle();
                int cSent = sent();
                var theirs = new Dictionary<string, object> { { "op", "reparent" }, { "uuid", b.Uuid }, { "parent", null } };
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", theirs);
                Check.Eventually(() => sent() == cSent + 1, TimeSpan.FromSeconds(5), "C again once the batch is applied", r.Pump);
                Check.Eventually(() => refusals == 0, TimeSpan.FromSeconds(5), "and refused again", r.Pump);
                r.Settle();
                Check.True(r.Engine.NotSynced.ContainsKey(c.Uuid), "still kept");
                r.Daemon.SendResult(id, r.Daemon.NextSeq(), "committed", new[] { b.Uuid });
                Check.Eventually(() => sent() == cSent + 2, TimeSpan.FromSeconds(5), "C again once the batch committed", r.Pump);
            }
        }

        enum PersonsReparent { NotCaptured, InFlight, Kept }

        /// <summary>The batch of the uuid's change in flight rolls back (Blender did not answer in
        /// time): kept here, not synced (PROTOCOL.md §6.4).</summary>
        static void KeepNotSynced(Rig r, string uuid)
        {
            r.Daemon.Broadcast(new Dictionary<string, object>
            {
                { "type", "batch_result" }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", r.Daemon.NextSeq() },
                { "outcome", BatchOutcome.RolledBack }, { "uuids", new List<object> { uuid } }, { "error_code", ErrorCode.VerifyTimeout },
                { "kept_local", true }, { "reason", "Blender did not confirm the change in time" },
            });
            Check.Eventually(() => r.Engine.NotSynced.ContainsKey(uuid) && !r.Engine.IsInFlight(uuid), TimeSpan.FromSeconds(5), "kept, not synced", r.Pump);
        }

        static void ReparentLoopingWithThePersons(PersonsReparent mode)
        {
            bool sent = mode != PersonsReparent.NotCaptured;
            using (var r = new Rig())
            {
                var a = r.Add("A");
                var b = r.Add("B", 2, 0, 0);
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                long committed = r.Daemon.NextSeq();
                r.Daemon.SendResult(Guid.NewGuid().ToString(), committed, "committed", new[] { a.Uuid, b.Uuid });
                Check.Eventually(() => r.Engine.UnresolvedCount == 0, TimeSpan.FromSeconds(5), "creates resolved", r.Pump);
                var aBefore = r.Scene.Capture(a.Uuid);
                var bBefore = r.Scene.Capture(b.Uuid);
                int changes = r.Daemon.Received("change").Count;
                b.Parent = a.Uuid; // the person's reparent
                r.Engine.MarkDirty(b.Uuid);
                if (sent)
                {
                    r.Daemon.WaitFor("change", changes + 1, r.Pump);
                    Check.Eventually(() => r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B's reparent in flight", r.Pump);
                }
                if (mode == PersonsReparent.Kept)
                {
                    KeepNotSynced(r, b.Uuid);
                    changes = r.Daemon.Received("change").Count;
                    // The batch has committed by the time the person's reparent arrives: STALE.
                    r.Daemon.OnRequest = f =>
                    {
                        if (f.Type != "change") return r.Daemon.DefaultReply(f);
                        var rid = f.Message["request_id"];
                        var results = new List<object>();
                        foreach (Dictionary<string, object> it in (List<object>)f.Message["changes"])
                            results.Add(new Dictionary<string, object> { { "uuid", it["uuid"] }, { "status", ItemStatus.Error }, { "error_code", ErrorCode.Stale }, { "message", "closes a parent cycle with another editor's reparent" } });
                        return new Dictionary<string, object> { { "type", "ack" }, { "request_id", rid }, { "seq", r.Daemon.Seq }, { "results", results } };
                    };
                }
                long seqBefore = r.Daemon.Seq;
                int frames = r.Client.IncomingCount;
                var theirs = new Dictionary<string, object> { { "op", "reparent" }, { "uuid", a.Uuid }, { "parent", b.Uuid } };
                string id = r.Daemon.SendBatch(r.Daemon.NextSeq(), "slow", theirs);
                if (!sent) Check.Eventually(() => r.Client.IncomingCount >= frames + 3, TimeSpan.FromSeconds(5), "the batch waiting, unread");
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "the batch answered", r.Pump);
                var made = StateDiff.Apply(aBefore, RemoteChange.Parse(theirs, null, 1.0));
                Check.Equal(made.Hash(), (string)Applied(r, id)[a.Uuid], "the answer is the state the batch made");
                Check.True(a.Parent == null, "A stays where it is: no loop");
                Check.Equal(a.Uuid, b.Parent, "the person's reparent stays");
                var mine = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var op = (Dictionary<string, object>)((List<object>)mine["changes"])[0];
                // A kept edit goes whole (its base became what was sent: §6.8), else the reparent.
                string opName = mode == PersonsReparent.Kept ? "create" : "reparent";
                Check.Equal(b.Uuid + " " + opName + " " + a.Uuid, (string)op["uuid"] + " " + (string)op["op"] + " " + (string)op["parent"], "the person's reparent");
                if (mode != PersonsReparent.InFlight) Check.Equal(seqBefore, Convert.ToInt64(mine["base_seq"]), "made without the batch: from the seq before it");
                r.Settle();
                Check.Equal(changes + 1, r.Daemon.Received("change").Count, "nothing of A is sent back as a person's edit");
                // The person's reparent lost: dropped (or refused STALE), then the correction with
                // both, parents first.
                if (mode == PersonsReparent.Kept)
                    Check.Eventually(() => !r.Engine.NotSynced.ContainsKey(b.Uuid), TimeSpan.FromSeconds(5), "the kept reparent lost: not kept any more", r.Pump);
                else
                    r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), "dropped", new[] { b.Uuid });
                Check.Eventually(() => !r.Engine.IsInFlight(b.Uuid), TimeSpan.FromSeconds(5), "B's reparent ended", r.Pump);
                string fix = r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", bBefore.ToCreateOp(), made.ToCreateOp());
                Check.Eventually(() => Applied(r, fix) != null, TimeSpan.FromSeconds(5), "the correction answered", r.Pump);
                Check.Equal(b.Uuid, a.Parent, "the other editor's reparent stands");
                Check.True(b.Parent == null, "B is back where it was");
                Check.Equal(made.Hash(), (string)Applied(r, fix)[a.Uuid], "A as the daemon holds it");
                Check.Equal(bBefore.Hash(), (string)Applied(r, fix)[b.Uuid], "B as the daemon holds it");
                r.Settle();
                Check.Equal(changes + 1, r.Daemon.Received("change").Count, "no echo of the correction");
            }
        }

        [VsTest]
        public static void APersonsUnsentEditOfAnObjectABatchDeletesIsStillSentFromTheOldBase()
        {
            // PROTOCOL.md §6.1: a person moved A in Unity; before the engine captured it, a batch
            // from Blender deletes A. The delete is applied, and the move — which vanished with A,
            // unheard of — is sent after the answer from the base before the batch, so that the
            // daemon refuses it STALE: a conflict the delete won, in both editors and the WAL.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                long baseBefore = r.Engine.LastSeq;
                a.Position = new[] { 5.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                int changes = r.Daemon.Received("change").Count;
                long seq = r.Daemon.NextSeq();
                r.Daemon.SendBatch(seq, "slow", new Dictionary<string, object> { { "op", "delete" }, { "uuid", a.Uuid } });
                Check.Eventually(() => r.Client.IncomingCount >= 3, TimeSpan.FromSeconds(5), "the batch waiting, unread");
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.True(!((Dictionary<string, object>)applied["hashes"]).ContainsKey(a.Uuid), "answered as deleted");
                Check.True(r.Scene.Capture(a.Uuid) == null, "the delete is applied");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var op = (Dictionary<string, object>)((List<object>)sent["changes"])[0];
                Check.Equal("transform", (string)op["op"], "the person's move is sent");
                Check.Equal(a.Uuid, (string)op["uuid"], "of A");
                Check.Equal(baseBefore, (long)sent["base_seq"], "from the base before the batch");
                Check.True(baseBefore < seq, "below the delete's seq");
                r.Settle();
                Check.Equal(changes + 1, r.Daemon.Received("change").Count, "sent once, nothing else");
            }
        }

        [VsTest]
        public static void AnObjectDeletedHereBeforeABatchOfItIsLeftOutAndItsDeleteGoesFirst()
        {
            // PROTOCOL.md §6.2, §6.4: a person deleted A in Unity; before the engine captured it,
            // a batch from Blender moves A and B. Applied over the missing A, the whole batch
            // failed (B's move too) and rolled back. Now A's ops are left out, A's delete (a
            // `tombstone`) goes to the daemon before the answer, and B's move is applied.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.Add("A");
                var bObj = r.Add("B");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                r.Settle();
                r.Scene.Delete(a);
                r.Engine.MarkDirty(a.Uuid);
                Func<string, double, Dictionary<string, object>> move = (u, x) => new Dictionary<string, object> { { "op", "transform" }, { "uuid", u }, { "t", Msg.List(x, 0, 0) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) } };
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "fast", move(a.Uuid, 3), move(bObj.Uuid, 4));
                Check.Eventually(() => r.Client.IncomingCount >= 4, TimeSpan.FromSeconds(5), "the batch waiting, unread");
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                var hashes = (Dictionary<string, object>)applied["hashes"];
                Check.True(!hashes.ContainsKey(a.Uuid), "A left out of the answer");
                Check.Equal(r.Scene.Capture(bObj.Uuid).Hash(), (string)hashes[bObj.Uuid], "B answered as moved");
                Check.Near(new[] { 4.0, 0, 0 }, bObj.Position, 1e-12, "B's move is applied");
                var types = r.Daemon.ReceivedTypes();
                int t = types.IndexOf("tombstone"), ans = types.IndexOf("applied");
                Check.True(t >= 0 && t < ans, "A's delete goes before the answer: " + string.Join(",", types));
                Check.Equal(a.Uuid, (string)((List<object>)r.Daemon.Received("tombstone")[0].Message["uuids"])[0], "of A");
                r.Settle();
                Check.Equal(1, r.Daemon.Received("tombstone").Count, "sent once");
                Check.Equal(0L, (long)r.Engine.Stats()["not_synced"], "nothing not synced");
            }
        }

        [VsTest]
        public static void AReplayOfAUuidKeptForAPersonsEditAppliesTheOtherParts()
        {
            // PROTOCOL.md §6.6: a person renamed A in Unity (not sent yet) when a replay brings A
            // moved by Blender. A was kept whole and sent in full: the old pose in it undid the
            // move made in Blender. Now the replay's other parts are applied, and only the
            // rename is sent.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                a.Name = "Mine";
                r.Engine.MarkDirty(a.Uuid);
                var replay = new Dictionary<string, object>
                {
                    { "op", "create" }, { "uuid", a.Uuid }, { "kind", "object" }, { "name", "A" }, { "parent", null },
                    { "t", Msg.List(0, 0, 9) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) }, { "visible", true },
                };
                int changes = r.Daemon.Received("change").Count;
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", replay);
                Check.Eventually(() => r.Client.IncomingCount >= 3, TimeSpan.FromSeconds(5), "the replay waiting, unread");
                var applied = r.Daemon.WaitFor("applied", 1, r.Pump)[0].Message;
                Check.Equal("Mine", a.Name, "the person's rename stays");
                var held = r.Scene.Capture(a.Uuid);
                Check.Near(new[] { 0.0, 0, 9 }, held.T, 1e-9, "the move made in Blender is applied");
                Check.Equal(held.Hash(), (string)((Dictionary<string, object>)applied["hashes"])[a.Uuid], "the answer is what it holds");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var ops = new List<string>();
                foreach (Dictionary<string, object> op in (List<object>)sent["changes"]) ops.Add((string)op["op"] + ":" + (string)op["uuid"]);
                Check.Equal("rename:" + a.Uuid, string.Join(",", ops), "only the rename is sent, not the old pose");
            }
        }

        /// <summary>The daemon drops every connection; `whileDown` runs once the engine saw it;
        /// then the engine's second connection is up.</summary>
        static void DropAndReconnect(Rig r, Action whileDown)
        {
            r.Daemon.DropAll();
            Check.Eventually(() => r.Events.Contains("disconnected"), TimeSpan.FromSeconds(5), "disconnected", r.Pump);
            whileDown();
            Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == 2, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
        }

        /// <summary>The `op` names of a `change` message, in order, joined with commas.</summary>
        static string OpNames(Dictionary<string, object> change)
        {
            var ops = new List<string>();
            foreach (Dictionary<string, object> op in (List<object>)change["changes"]) ops.Add((string)op["op"]);
            return string.Join(",", ops);
        }

        [VsTest]
        public static void AMoveLostWithItsConnectionKeepsOnlyItsPartOverTheReplay()
        {
            // PROTOCOL.md §6.6: Unity moved A; the daemon died before acknowledging it. While it
            // was down Blender renamed A. The replay brings the rename: it is applied, and only
            // the move is sent again (sent in full, the old name in it overwrote the rename).
            bool ack = true;
            using (var r = new Rig(rig => { rig.Daemon.Commits = true; rig.Daemon.OnRequest = f => f.Type == "change" && !ack ? null : rig.Daemon.DefaultReply(f); }))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid);
                ack = false;
                a.Position = new[] { 5.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                var renamed = before.Clone();
                renamed.Name = "Renamed In Blender";
                int changes = r.Daemon.Received("change").Count;
                // The replay comes right after the next welcome, as the daemon sends it.
                string id = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq(), renamed.ToCreateOp());
                DropAndReconnect(r, () => ack = true); // the daemon dies before it acknowledged the move
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                Check.Equal("Renamed In Blender", a.Name, "the rename made meanwhile is applied");
                Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, "the move is kept");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                Check.Equal("transform", OpNames(sent), "only the move is sent again");
            }
        }

        [VsTest]
        public static void AMoveAcknowledgedButUnresolvedAtADisconnectKeepsOnlyItsPartOverTheReplay()
        {
            // PROTOCOL.md §6.6: Unity moved A; the daemon acknowledged the move (`queued`) and
            // died before its batch_result. While it was down Blender renamed A. The replay
            // brings the rename with the old pose: the rename is applied, the move is kept and
            // only the move is sent again (sent in full, the old name in it overwrote the rename).
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                var before = r.Scene.Capture(a.Uuid);
                r.Daemon.Commits = false; // acknowledged, never ended by a batch_result
                a.Position = new[] { 5.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                Check.Eventually(() => r.Events.FindAll(e => e == "change_ack").Count == 2, TimeSpan.FromSeconds(5), "the move acknowledged", r.Pump);
                Check.True(r.Engine.IsInFlight(a.Uuid), "the move is in flight");
                var renamed = before.Clone();
                renamed.Name = "Renamed In Blender";
                int changes = r.Daemon.Received("change").Count;
                string id = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq(), renamed.ToCreateOp());
                DropAndReconnect(r, () => r.Daemon.Commits = true);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                Check.Equal("Renamed In Blender", a.Name, "the rename made meanwhile is applied");
                Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, "the move is kept");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                Check.Equal("transform", OpNames(sent), "only the move is sent again");
                r.Settle();
                Check.Equal(changes + 1, r.Daemon.Received("change").Count, "nothing else is sent");
            }
        }

        [VsTest]
        public static void AnEditMadeWhileAwayGoesFromTheSeqItWasMadeOn()
        {
            // PROTOCOL.md §6.6 "Edits made while away": while Unity is disconnected its person
            // renames A, and another editor's change of B commits. The replay at the next welcome
            // brings B (a seq past the one Unity had). The rename goes after it from the seq Unity
            // had when it connected — the one it was made on — not the replay's: so the daemon can
            // tell it was made without B's change (a reparent closing a cycle with one is a
            // conflict, §6.1). A later edit goes from the current seq.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                long madeOn = r.Engine.LastSeq;
                var b = r.Scene.Capture(a.Uuid).Clone();
                b.Uuid = Msg.NewUuid();
                b.Name = "B";
                int changes = r.Daemon.Received("change").Count;
                long replaySeq = r.Daemon.NextSeq() + 5;
                string id = r.Daemon.ReplayAtNextWelcome(replaySeq, b.ToCreateOp());
                r.Daemon.DropAll();
                a.Name = "Renamed Offline"; // before the engine has read anything of the new connection
                r.Engine.MarkDirty(a.Uuid);
                Check.Eventually(() => r.Events.FindAll(e => e == "connected").Count == 2, TimeSpan.FromSeconds(10), "reconnected", r.Pump);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                Check.True(r.Engine.LastSeq >= replaySeq, "the replay moved the seq past the one the rename was made on");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                Check.Equal("rename", OpNames(sent), "the rename is sent");
                Check.Equal(madeOn, (long)sent["base_seq"], "from the seq it was made on");
                r.Settle();
                changes = r.Daemon.Received("change").Count;
                a.Position = new[] { 3.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                var later = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                Check.Equal(r.Engine.LastSeq, (long)later["base_seq"], "a later edit goes from the current seq");
            }
        }

        /// <summary>
        /// Unity reopens its scene holding A as last synced; while Unity was closed, Blender changed
        /// A (`theirs`: the welcome replay carries it). The person edits another part of A at once
        /// (`mine`), before the daemon answered the register. Both stand, in the scene and at the
        /// daemon: the replay's part is applied, and only the person's part is sent (PROTOCOL.md
        /// §6.6; sent whole, the old name or pose in it undid Blender's change).
        /// </summary>
        static void AnEditBeforeTheRegisterAnswerKeepsTheReplaysOtherParts(
            Action<ObjectState> theirs, Action<SceneObject> mine, Action<SceneObject> check, string mineOps)
        {
            SceneObject a = null;
            string id = null;
            using (var r = new Rig(rig =>
            {
                rig.Daemon.Commits = true;
                a = rig.Add("A", 1, 2, 3); // the scene as saved: what was last synced
                rig.Daemon.Knows(a.Uuid);
                var other = rig.Scene.Capture(a.Uuid);
                theirs(other);
                id = rig.Daemon.ReplayAtNextWelcome(rig.Daemon.NextSeq(), other.ToCreateOp());
            }))
            {
                mine(a); // the person's edit, right after the scene opened
                r.Engine.MarkDirty(a.Uuid);
                r.StartAndRegister();
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                var sent = r.Daemon.WaitFor("change", 1, r.Pump)[0].Message;
                Check.Equal(mineOps, OpNames(sent), "only the person's part is sent");
                r.Settle();
                Check.Equal(1, r.Daemon.Received("change").Count, "nothing else is sent");
                check(a);
                Check.Equal(0, r.Engine.UnresolvedCount, "the person's change is resolved");
            }
        }

        [VsTest]
        public static void AHideRightAfterTheSceneReopensKeepsTheOtherEditorsRename()
        {
            AnEditBeforeTheRegisterAnswerKeepsTheReplaysOtherParts(
                s => s.Name = "Renamed In Blender",
                o => o.Visible = false,
                o =>
                {
                    Check.Equal("Renamed In Blender", o.Name, "Blender's rename made while Unity was closed stands");
                    Check.True(!o.Visible, "the person's hide stands");
                    Check.Near(new[] { 1.0, 2, 3 }, o.Position, 1e-12, "the pose is untouched");
                },
                "visibility");
        }

        [VsTest]
        public static void AMoveRightAfterTheSceneReopensKeepsTheOtherEditorsRename()
        {
            AnEditBeforeTheRegisterAnswerKeepsTheReplaysOtherParts(
                s => s.Name = "Renamed In Blender",
                o => o.Position = new[] { 5.0, 0, 0 },
                o =>
                {
                    Check.Equal("Renamed In Blender", o.Name, "Blender's rename made while Unity was closed stands");
                    Check.Near(new[] { 5.0, 0, 0 }, o.Position, 1e-12, "the person's move stands");
                },
                "transform");
        }

        [VsTest]
        public static void AHideRightAfterTheSceneReopensKeepsTheOtherEditorsMove()
        {
            AnEditBeforeTheRegisterAnswerKeepsTheReplaysOtherParts(
                s => s.T = new[] { 7.0, 0, 0 }, // canonical: Unity (7, 0, 0)
                o => o.Visible = false,
                o =>
                {
                    Check.Near(new[] { 7.0, 0, 0 }, o.Position, 1e-12, "Blender's move made while Unity was closed stands");
                    Check.True(!o.Visible, "the person's hide stands");
                    Check.Equal("A", o.Name, "the name is untouched");
                },
                "visibility");
        }

        [VsTest]
        public static void ADeleteRightAfterTheSceneReopensIsSentAsATombstone()
        {
            // PROTOCOL.md §5, §6.6: the person deletes A right after the scene opened, before the
            // register answer. The replay (Blender renamed A meanwhile) does not bring it back,
            // and the delete goes as a `tombstone`: it was sent nowhere (no synced state of A
            // yet), and the other editor kept the object.
            SceneObject a = null;
            string id = null;
            using (var r = new Rig(rig =>
            {
                rig.Daemon.Commits = true;
                a = rig.Add("A", 1, 2, 3);
                rig.Daemon.Knows(a.Uuid);
                var other = rig.Scene.Capture(a.Uuid);
                other.Name = "Renamed In Blender";
                id = rig.Daemon.ReplayAtNextWelcome(rig.Daemon.NextSeq(), other.ToCreateOp());
            }))
            {
                r.Scene.Delete(a);
                r.Engine.MarkDirty(a.Uuid);
                r.StartAndRegister();
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                var t = r.Daemon.WaitFor("tombstone", 1, r.Pump)[0].Message;
                Check.Equal(a.Uuid, (string)((List<object>)t["uuids"])[0], "the person's delete is sent");
                r.Settle();
                Check.True(r.Scene.Find(a.Uuid) == null, "the replay did not bring it back");
                Check.Equal(0, r.Daemon.Received("change").Count, "nothing else is sent");
                Check.Equal(0, r.Engine.UnresolvedCount, "nothing left unresolved");
            }
        }

        /// <summary>
        /// Unity was open while the daemon was away: the person moved A (and deleted B), saved and
        /// quit. The scene file kept what it last synced of A and B (`BaseSnapshot`). Opened again
        /// with the daemon up, the move is the person's: sent, and a replay from seq 0 (a Unity
        /// session keeps no seq across a restart) carrying the old pose does not undo it; B's
        /// delete goes as a `tombstone` and the replay does not bring B back (PROTOCOL.md §6.6).
        /// Taken for the scene as loaded, the move was never sent and the replay undid it.
        /// </summary>
        [VsTest]
        public static void EditsSavedWhileTheDaemonWasAwayAreThePersonsWork()
        {
            SceneObject a = null;
            string bu = null, id = null;
            using (var r = new Rig(rig =>
            {
                rig.Daemon.Commits = true;
                a = rig.Add("A", 1, 2, 3);
                var b = rig.Add("B", 0, 0, 0);
                bu = b.Uuid;
                rig.Daemon.Knows(a.Uuid);
                rig.Daemon.Knows(b.Uuid);
                var synced = new Dictionary<string, ObjectState>
                {
                    { a.Uuid, rig.Scene.Capture(a.Uuid) }, { b.Uuid, rig.Scene.Capture(b.Uuid) },
                };
                // Through the file format, as the scene keeps it.
                rig.SavedBases = ObjectState.ReadBases((List<object>)Json.Parse(Json.Write(ObjectState.WriteBases(synced))), "synced");
                id = rig.Daemon.ReplayAtNextWelcome(rig.Daemon.NextSeq(), synced[a.Uuid].ToCreateOp(), synced[b.Uuid].ToCreateOp());
                a.Position = new[] { 5.0, 0, 0 }; // the person's edits, saved with the scene
                rig.Scene.Delete(b);
            }))
            {
                r.StartAndRegister();
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                var sent = r.Daemon.WaitFor("change", 1, r.Pump)[0].Message;
                Check.Equal("transform", OpNames(sent), "only the person's move is sent");
                var t = r.Daemon.WaitFor("tombstone", 1, r.Pump)[0].Message;
                Check.Equal(bu, (string)((List<object>)t["uuids"])[0], "the person's delete is sent");
                r.Settle();
                Check.Near(new[] { 5.0, 0, 0 }, a.Position, 1e-12, "the person's move stands");
                Check.True(r.Scene.Find(bu) == null, "the replay did not bring B back");
                Check.Equal(1, r.Daemon.Received("change").Count, "nothing else is sent");
            }
        }

        [VsTest]
        public static void AReopenedSceneRegistersAfterTheReplaySoADeletedObjectStaysDeleted()
        {
            // PROTOCOL.md §5, §6.6: the scene was saved holding A and B; while it was closed
            // Blender deleted B. Registered before the replay, B's record at the daemon was made
            // live again for an object the replay then deleted here. The register waits for it.
            SceneObject a = null, b = null;
            string id = null;
            using (var r = new Rig(rig =>
            {
                rig.Daemon.Commits = true;
                a = rig.Add("A", 1, 2, 3);
                b = rig.Add("B", 0, 0, 0);
                rig.Daemon.Knows(a.Uuid);
                rig.SavedBases = new Dictionary<string, ObjectState>
                {
                    { a.Uuid, rig.Scene.Capture(a.Uuid) }, { b.Uuid, rig.Scene.Capture(b.Uuid) },
                };
                id = rig.Daemon.ReplayAtNextWelcome(rig.Daemon.NextSeq(),
                    new Dictionary<string, object> { { "op", "delete" }, { "uuid", b.Uuid } });
            }))
            {
                r.StartAndRegister();
                Check.True(Applied(r, id) != null, "the replay was applied before the register");
                Check.True(r.Scene.Find(b.Uuid) == null, "B deleted by the replay");
                var items = (List<object>)r.Daemon.WaitFor("register", 1, r.Pump)[0].Message["items"];
                Check.Equal(1, items.Count, "only what the scene holds after the replay is registered");
                Check.Equal(a.Uuid, (string)((Dictionary<string, object>)items[0])["uuid"], "A registered");
                Check.Equal(1, r.Daemon.Received("resync").Count, "it asked for the replay");
            }
        }

        [VsTest]
        public static void AChangeWithNoOutcomeWhenTheSceneWasSavedIsSentWhole()
        {
            // PROTOCOL.md §6.6: A's move was in flight (no batch_result) as the scene was saved:
            // the file keeps no base of A (null), so all of A is the person's, sent whole.
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
            {
                var a = r.StartWithOneSynced("A");
                r.Daemon.Commits = false;
                a.Position = new[] { 5.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                var kept = r.Engine.BaseSnapshot(new[] { a.Uuid });
                Check.True(kept.ContainsKey(a.Uuid) && kept[a.Uuid] == null, "no base kept of a change in flight");
                var list = ObjectState.WriteBases(kept);
                Check.Equal("{\"uuid\":\"" + a.Uuid + "\",\"unresolved\":true}", Json.Write(list[0]), "written as unresolved");
            }
            SceneObject b = null;
            string id = null;
            using (var r = new Rig(rig =>
            {
                rig.Daemon.Commits = true;
                b = rig.Add("A", 5, 0, 0);
                rig.Daemon.Knows(b.Uuid);
                var old = rig.Scene.Capture(b.Uuid);
                old.T = new[] { 1.0, 2, 3 };
                rig.SavedBases = new Dictionary<string, ObjectState> { { b.Uuid, null } };
                id = rig.Daemon.ReplayAtNextWelcome(rig.Daemon.NextSeq(), old.ToCreateOp());
            }))
            {
                r.StartAndRegister();
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                var sent = r.Daemon.WaitFor("change", 1, r.Pump)[0].Message;
                Check.Equal("create", OpNames(sent), "sent whole");
                r.Settle();
                Check.Near(new[] { 5.0, 0, 0 }, b.Position, 1e-12, "the person's move stands");
            }
        }

        [VsTest]
        public static void AnAcknowledgedCreateLostWithItsConnectionIsStillSentWhole()
        {
            // A `create` acknowledged and lost carries the object's existence: its parts are not
            // the person's alone, so a replay naming the uuid keeps it whole and it is sent in full.
            using (var r = new Rig(rig => rig.Daemon.Commits = false))
            {
                var a = r.Add("A");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                Check.Eventually(() => r.Events.Contains("change_ack"), TimeSpan.FromSeconds(5), "the create acknowledged", r.Pump);
                var held = r.Scene.Capture(a.Uuid);
                var other = held.Clone();
                other.Name = "Someone Else's";
                int changes = r.Daemon.Received("change").Count;
                string id = r.Daemon.ReplayAtNextWelcome(r.Daemon.NextSeq(), other.ToCreateOp());
                DropAndReconnect(r, () => r.Daemon.Commits = true);
                Check.Eventually(() => Applied(r, id) != null, TimeSpan.FromSeconds(5), "replay answered", r.Pump);
                Check.Equal("A", a.Name, "the object as the person made it is kept");
                var sent = r.Daemon.WaitFor("change", changes + 1, r.Pump)[changes].Message;
                var op = (Dictionary<string, object>)((List<object>)sent["changes"])[0];
                Check.Equal("create", (string)op["op"], "sent whole");
                Check.Equal("A", (string)op["name"], "with the person's name");
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
            using (var r = new Rig(rig => rig.Daemon.Commits = true))
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
                // Held here, shown not synced with why (PROTOCOL §6.7).
                Check.Equal("SAFE_MODE: previous session crashed", r.Engine.NotSynced[a.Uuid], "marked not synced");
                // ... and told to the daemon, which lists it in `vibesync status` (editor_state.held).
                r.Daemon.WaitFor("editor_state", 1, r.Pump);
                var told = r.Daemon.Received("editor_state")[0].Message;
                Check.Equal("running", (string)told["state"], "its sync runs: it holds for the daemon");
                var held = (List<object>)told["held"];
                Check.Equal(1, held.Count, "one edit held");
                Check.Equal(a.Uuid, (string)held[0], "the renamed object");
                Check.Equal(1L, (long)told["held_count"], "held_count");
                r.Settle();
                Check.Equal(1, r.Daemon.Received("editor_state").Count, "said once while it does not change");
                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", "safe_mode" }, { "active", false } });
                r.Daemon.WaitFor("change", 2, r.Pump);
                var op = r.Ops()[1];
                Check.Equal("create", (string)op["op"], "held edit sent in full after safe mode");
                Check.Equal("Renamed", (string)op["name"], "with the held rename");
                Check.Eventually(() => r.Engine.NotSynced.Count == 0, TimeSpan.FromSeconds(5), "committed: the mark is gone", r.Pump);
            }
        }

        [VsTest]
        public static void UnacknowledgedChangesAreResentAfterReconnect()
        {
            bool swallow = false;
            using (var r = new Rig(rig => { rig.Daemon.Commits = true; rig.Daemon.OnRequest = f => (swallow && f.Type == "change") ? null : rig.Daemon.DefaultReply(f); }))
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

        // ---------------------------------------------------- adoption (crash before the save)

        static HeadlessScene SceneFromFile(string json)
        {
            string path = System.IO.Path.GetTempFileName();
            try
            {
                System.IO.File.WriteAllText(path, json);
                var s = new HeadlessScene();
                s.Load(path);
                return s;
            }
            finally { System.IO.File.Delete(path); }
        }

        const string Tr = "\"transform\":{\"position\":[0,0,0],\"rotation\":[0,0,0,1],\"scale\":[1,1,1]}";

        static Dictionary<string, object> NamedCreate(string uuid, string name)
        {
            var c = CubeCreate(uuid);
            c["name"] = name;
            return c;
        }

        [VsTest]
        public static void AdoptionPairsOnlyUnambiguousMatchesTheSceneDoesNotHold()
        {
            Func<string, string, RemoteChange> create = (u, n) => new RemoteChange { Op = "create", Uuid = u, Kind = "object", Name = n };
            string k1 = Msg.NewUuid(), k2 = Msg.NewUuid(), k3 = Msg.NewUuid(), k4 = Msg.NewUuid(), held = Msg.NewUuid();
            string f1 = Msg.NewUuid(), f2 = Msg.NewUuid(), f3 = Msg.NewUuid(), f4 = Msg.NewUuid(), f5 = Msg.NewUuid();
            var replay = new List<RemoteChange> { create(k1, "Main Camera"), create(k2, "Twin"), create(k3, "Twin"), create(k4, "Lamp"), create(held, "Held") };
            var fresh = new Dictionary<string, ObjectState>
            {
                { f1, new ObjectState { Uuid = f1, Kind = "object", Name = "Main Camera" } },
                { f2, new ObjectState { Uuid = f2, Kind = "object", Name = "Twin" } },     // two replayed Twins: ambiguous
                { f3, new ObjectState { Uuid = f3, Kind = "object", Name = "Lamp" } },
                { f4, new ObjectState { Uuid = f4, Kind = "object", Name = "Lamp" } },     // two local Lamps: ambiguous
                { f5, new ObjectState { Uuid = f5, Kind = "collection", Name = "Held" } },
            };
            var pairs = Adoption.Match(replay, fresh, u => u == held);
            Check.Equal(1, pairs.Count, "one unambiguous pair");
            Check.Equal(k1, pairs[f1], "Main Camera takes back its uuid");
        }

        [VsTest]
        public static void AfterACrashBeforeTheSaveFreshObjectsTakeBackTheirUuidsFromTheReplay()
        {
            string saved = Msg.NewUuid(), known = Msg.NewUuid(), other = Msg.NewUuid();
            var scene = SceneFromFile("{\"objects\":[{\"name\":\"Main Camera\"," + Tr + "},{\"name\":\"Lamp\"," + Tr + "},"
                                      + "{\"uuid\":\"" + saved + "\",\"name\":\"Saved\"," + Tr + "}]}");
            var fresh = new List<string>(scene.FreshUuids);
            Check.Equal(2, fresh.Count, "the two objects without a uuid are fresh");
            using (var r = new Rig(rig => rig.Scene = scene))
            {
                r.StartAndRegister();
                // (counted as received once answered: waited for, not read at once)
                var reg = (List<object>)r.Daemon.WaitFor("register", 1, r.Pump)[0].Message["items"];
                Check.Equal(1, reg.Count, "only the saved object is registered before the replay");
                Check.Equal(saved, (string)((Dictionary<string, object>)reg[0])["uuid"], "the saved one");
                var rs = r.Daemon.WaitFor("resync", 1, r.Pump);
                Check.Equal(0L, (long)rs[0].Message["since_seq"], "the whole project is asked for");
                r.Settle();
                Check.Equal(0, r.Ops().FindAll(o => (string)o["op"] == "create" && fresh.Contains((string)o["uuid"])).Count,
                    "no create for a fresh uuid before the replay");
                // The replay: the daemon knows Main Camera (its uuid before the crash) and another object.
                r.Daemon.Knows(known);
                r.Daemon.Knows(other);
                r.Daemon.SendBatch(r.Daemon.NextSeq(), "resync", NamedCreate(known, "Main Camera"), NamedCreate(other, "Added elsewhere"));
                Check.Eventually(() => r.Engine.Adopted == 1 && r.Scene.Find(other) != null, TimeSpan.FromSeconds(5), "adopted and applied", r.Pump);
                var cam = r.Scene.FindByName("Main Camera");
                Check.Equal(known, cam.Uuid, "Main Camera carries the daemon's uuid");
                Check.Near(new[] { 1.0, 3, 2 }, cam.Position, 1e-9, "and the synced state (canonical [1,3,-2] in the Unity frame)");
                Check.Equal(4, r.Scene.Objects.Count, "nothing duplicated in the scene");
                // Lamp matched nothing: it is a new object, registered and created now.
                string lamp = r.Scene.FindByName("Lamp").Uuid;
                Check.Eventually(() => r.Ops().Exists(o => (string)o["op"] == "create" && (string)o["uuid"] == lamp), TimeSpan.FromSeconds(5), "Lamp created", r.Pump);
                r.Settle();
                Check.Equal(0, r.Ops().FindAll(o => (string)o["op"] == "create" && (string)o["uuid"] != lamp && (string)o["uuid"] != saved).Count,
                    "no create for Main Camera under any uuid");
                Check.Equal(0, new List<string>(r.Scene.FreshUuids).Count, "nothing is fresh any more");
            }
        }

        [VsTest]
        public static void FreshObjectsAreSentAsNewWhenNoReplayComes()
        {
            var scene = SceneFromFile("{\"objects\":[{\"name\":\"Lonely\"," + Tr + "}]}");
            using (var r = new Rig(rig => rig.Scene = scene))
            {
                r.Engine.AdoptWaitLimit = TimeSpan.FromMilliseconds(300);
                r.StartAndRegister();
                string u = r.Scene.FindByName("Lonely").Uuid;
                Check.Eventually(() => r.Ops().Exists(o => (string)o["op"] == "create" && (string)o["uuid"] == u), TimeSpan.FromSeconds(5), "created after the wait", r.Pump);
                Check.True(r.Events.Contains("adopt_timeout"), "the wait ended by its limit");
            }
        }
    }
}
#endif
