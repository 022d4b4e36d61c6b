using System;
using System.Collections.Generic;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class IdentityTests
    {
        sealed class Obj { public string Name; public string Uuid; public override string ToString() { return Name; } }

        [VsTest]
        public static void DuplicateGetsFreshUuidOriginalKeepsItsOwn()
        {
            var reg = new IdentityRegistry<Obj>();
            var original = new Obj { Name = "Cube", Uuid = Msg.NewUuid() };
            IdentityChange ch;
            Check.Equal(original.Uuid, reg.OnCreated(original, original.Uuid, "/Cube", out ch), "first object keeps its uuid");
            Check.True(ch == null, "no change for the original");

            // Ctrl+D copies the serialized uuid into the copy.
            var copy = new Obj { Name = "Cube (1)", Uuid = original.Uuid };
            string assigned = reg.OnCreated(copy, copy.Uuid, "/Cube (1)", out ch);
            Check.True(ch != null, "the copy must be re-identified");
            Check.True(assigned != original.Uuid && Msg.IsValidUuid(assigned), "copy got a fresh valid uuid");
            Check.Equal(original.Uuid, ch.OldUuid, "change reports the copied uuid");
            Check.Contains(ch.Reason, "original keeps", "reason explains the rule");
            Obj holder;
            Check.True(reg.TryGet(original.Uuid, out holder) && holder == original, "original still owns its uuid");
            Check.True(reg.TryGet(assigned, out holder) && holder == copy, "copy owns the fresh uuid");
            Check.Equal(2, reg.Count, "two tracked");

            // Reported twice (event + rescan): stable.
            Check.Equal(assigned, reg.OnCreated(copy, original.Uuid, "/Cube (1)", out ch), "second report returns the same uuid");
            Check.True(ch == null, "no second change");
        }

        [VsTest]
        public static void WhatIsKeptOfADeletedObjectIsGivenBackOnceAndTheOldestIsForgotten()
        {
            var keep = new DeletedKeep<string>(2);
            string a = Msg.NewUuid(), b = Msg.NewUuid(), c = Msg.NewUuid();
            keep.Keep(a, "a1");
            keep.Keep(a, "a2"); // deleted again: what it had last
            keep.Keep(b, "b");
            string got;
            Check.True(keep.TryTake(a, out got) && got == "a2", "the last kept of a");
            Check.True(!keep.TryTake(a, out got), "given back once");
            keep.Keep(a, "a3");
            keep.Keep(c, "c"); // a third: the oldest (b) is forgotten
            Check.Equal(2, keep.Count, "at most its capacity");
            Check.True(!keep.TryTake(b, out got), "the oldest forgotten");
            Check.True(keep.TryTake(c, out got) && got == "c", "the newest kept");
            keep.Forget(a);
            Check.Equal(0, keep.Count, "forgotten");
        }

        [VsTest]
        public static void AnotherEditorsDeleteUndoneThereGivesTheObjectBackItsUnityComponents()
        {
            // PROTOCOL.md §6.1: Blender deletes the Cube (a `delete` here), then Ctrl+Z brings
            // it back (a `create` of the same uuid). Its Unity-only components come back with it;
            // a create of a uuid never deleted here makes a bare object.
            var scene = new Headless.HeadlessScene();
            var cube = new Headless.SceneObject { Uuid = Msg.NewUuid(), Name = "Cube" };
            cube.Components.Add("Rigidbody");
            cube.Components.Add("PlayerController");
            scene.Add(cube);
            var del = RemoteChange.Parse(new Dictionary<string, object> { { "op", Ops.Delete }, { "uuid", cube.Uuid } }, null, 1.0);
            scene.ApplyBatch(new IncomingBatch { BatchId = "b1", Seq = 1, Path = BatchPath.Slow, Changes = { del } });
            Check.True(scene.Find(cube.Uuid) == null, "deleted");
            var state = new ObjectState { Uuid = cube.Uuid, Kind = EntityKind.Object, Name = "Cube", T = new[] { 0.0, 0, 0 }, R = new[] { 0.0, 0, 0, 1 }, S = new[] { 1.0, 1, 1 } };
            var again = RemoteChange.Parse(state.ToCreateOp(), null, 1.0);
            var other = state.Clone();
            other.Uuid = Msg.NewUuid();
            scene.ApplyBatch(new IncomingBatch { BatchId = "b2", Seq = 2, Path = BatchPath.Slow, Changes = { again, RemoteChange.Parse(other.ToCreateOp(), null, 1.0) } });
            Check.Equal("Rigidbody,PlayerController", string.Join(",", scene.Find(cube.Uuid).Components), "its components are back");
            Check.Equal(0, scene.Find(other.Uuid).Components.Count, "a new object is bare");
        }

        [VsTest]
        public static void TheHeadlessSceneRefusesAParentLoopAsUnityDoesUnlessTheBatchUndoesIt()
        {
            // Unity refuses a parent under the object; the glue tries it again once the batch's
            // other parents are set (PROTOCOL.md §6.4), and the headless scene does the same.
            var scene = new Headless.HeadlessScene();
            var a = new Headless.SceneObject { Uuid = Msg.NewUuid(), Name = "A" };
            var b = new Headless.SceneObject { Uuid = Msg.NewUuid(), Name = "B", Parent = a.Uuid };
            scene.Add(a);
            scene.Add(b);
            Func<string, string, RemoteChange> reparent = (u, p) => RemoteChange.Parse(new Dictionary<string, object> { { "op", Ops.Reparent }, { "uuid", u }, { "parent", p } }, null, 1.0);
            scene.ApplyBatch(new IncomingBatch { BatchId = "b1", Seq = 1, Path = BatchPath.Slow, Changes = { reparent(a.Uuid, b.Uuid) } });
            Check.True(a.Parent == null, "A under B would be a loop: A stays where it is");
            Check.Equal(a.Uuid, b.Parent, "B stays under A");
            scene.ApplyBatch(new IncomingBatch { BatchId = "b2", Seq = 2, Path = BatchPath.Slow, Changes = { reparent(a.Uuid, b.Uuid), reparent(b.Uuid, null) } });
            Check.True(b.Parent == null, "B to the root");
            Check.Equal(b.Uuid, a.Parent, "then A under B: the same batch took B out from under A");
        }

        [VsTest]
        public static void DuplicateOfADuplicateAndInvalidUuids()
        {
            var reg = new IdentityRegistry<Obj>();
            var a = new Obj { Name = "A" };
            IdentityChange ch;
            string ua = reg.OnCreated(a, null, "/A", out ch);
            Check.True(ch != null && ch.OldUuid == null, "object without uuid gets one");
            string ub = reg.OnCreated(new Obj { Name = "B" }, ua, "/B", out ch);
            string uc = reg.OnCreated(new Obj { Name = "C" }, ua, "/C", out ch);
            Check.True(ua != ub && ub != uc && ua != uc, "every copy distinct");
            reg.OnCreated(new Obj { Name = "D" }, "6F1C2A4E-4B7D-4A53-9A43-9D7F9B0F1F3A", "/D", out ch);
            Check.True(ch != null, "uppercase uuid is not valid on the wire and gets replaced");
            reg.OnCreated(new Obj { Name = "E" }, "00000000-0000-0000-0000-000000000000", "/E", out ch);
            Check.True(ch != null, "nil uuid replaced");
        }

        [VsTest]
        public static void DeletedUuidIsFreeAgainForUndo()
        {
            var reg = new IdentityRegistry<Obj>();
            var a = new Obj { Name = "A", Uuid = Msg.NewUuid() };
            IdentityChange ch;
            reg.OnCreated(a, a.Uuid, "/A", out ch);
            Check.Equal(a.Uuid, reg.OnDestroyed(a), "destroy returns uuid");
            // Undo of the delete brings the same object (same serialized uuid) back: it keeps the uuid.
            var restored = new Obj { Name = "A", Uuid = a.Uuid };
            Check.Equal(a.Uuid, reg.OnCreated(restored, restored.Uuid, "/A", out ch), "undo-restored object keeps its uuid");
            Check.True(ch == null, "no change");
        }

        [VsTest]
        public static void RebuildKeepsTheKnownHolder()
        {
            var reg = new IdentityRegistry<Obj>();
            string u = Msg.NewUuid();
            var a = new Obj { Name = "A", Uuid = u };
            IdentityChange ch;
            reg.OnCreated(a, u, "/Root/A", out ch);
            // After a reload, the scan finds a stray copy FIRST in hierarchy order, then the real holder.
            var stray = new Obj { Name = "A copy", Uuid = u };
            var a2 = new Obj { Name = "A", Uuid = u };
            var fixes = reg.Rebuild(new List<IdentityRegistry<Obj>.ScanItem>
            {
                new IdentityRegistry<Obj>.ScanItem(stray, u, "/Other/A copy"),
                new IdentityRegistry<Obj>.ScanItem(a2, u, "/Root/A"),
            });
            Check.Equal(1, fixes.Count, "one object re-identified");
            Check.True(fixes[0].Key == stray, "the stray copy, not the known holder");
            Obj holder;
            Check.True(reg.TryGet(u, out holder) && holder == a2, "known holder keeps the uuid");
        }

        [VsTest]
        public static void ReassignAfterCollision()
        {
            var reg = new IdentityRegistry<Obj>();
            var a = new Obj { Name = "A", Uuid = Msg.NewUuid() };
            IdentityChange ch;
            reg.OnCreated(a, a.Uuid, "/A", out ch);
            string fresh = reg.Reassign(a.Uuid);
            Obj holder;
            Check.True(!reg.TryGet(a.Uuid, out holder), "old uuid released");
            Check.True(reg.TryGet(fresh, out holder) && holder == a, "fresh uuid bound");
            Check.Equal("/A", reg.LastRef(fresh), "editor_ref carried over");
        }
    }

    public static class DiffTests
    {
        [VsTest]
        public static void DiffProducesProtocolOps()
        {
            string u = Msg.NewUuid(), p = Msg.NewUuid();
            var a = new ObjectState { Uuid = u, Name = "Cube" };
            Check.Equal("create", (string)StateDiff.Diff(null, a)[0]["op"], "create");
            Check.Equal("delete", (string)StateDiff.Diff(a, null)[0]["op"], "delete");
            var b = a.Clone();
            b.Name = "Box"; b.Parent = p; b.Visible = false; b.T = new[] { 1.0, 0, 0 };
            b.Material = new MaterialState();
            b.MeshHash = new string('a', 64);
            var ops = StateDiff.Diff(a, b);
            var names = new List<string>();
            foreach (var op in ops) names.Add((string)op["op"]);
            Check.Equal("reparent,rename,visibility,transform,mesh,material", string.Join(",", names.ToArray()), "ops in order");
            foreach (var op in ops)
            {
                // Every op parses back with the receiving side's validator.
                var rc = RemoteChange.Parse(op, new byte[0], 1.0);
                Check.Equal(u, rc.Uuid, "uuid of " + op["op"]);
            }
            var create = RemoteChange.Parse(StateDiff.Diff(null, b)[0], null, 1.0);
            Check.Equal(p, create.Parent, "create carries parent");
            Check.Equal(false, create.Visible.Value, "create carries visible");
        }

        [VsTest]
        public static void UnitScaleAppliesToLengthsOnly()
        {
            var a = new ObjectState { Uuid = Msg.NewUuid(), T = new[] { 1.0, 2, 3 }, S = new[] { 2.0, 2, 2 } };
            var op = StateDiff.Diff(null, a, StateHash.Epsilon, 0.01)[0];
            Check.Near(new[] { 100.0, 200, 300 }, Vectors.Doubles(op["t"]), 1e-9, "lengths in editor units (cm)");
            Check.Near(new[] { 2.0, 2, 2 }, Vectors.Doubles(op["s"]), 0, "scale unitless");
            var back = RemoteChange.Parse(op, null, 0.01);
            Check.Near(new[] { 1.0, 2, 3 }, back.T, 1e-9, "back to meters");
        }

        [VsTest]
        public static void RemoteChangeValidationNamesTheField()
        {
            string u = Msg.NewUuid();
            var e = Check.Throws<MessageFormatException>(() => RemoteChange.Parse(new Dictionary<string, object> { { "op", "transform" }, { "uuid", u }, { "t", Msg.List(1, 2) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) } }, null, 1), "short t");
            Check.Contains(e.Message, "change.t", "names change.t");
            e = Check.Throws<MessageFormatException>(() => RemoteChange.Parse(new Dictionary<string, object> { { "op", "rename" }, { "uuid", u.ToUpperInvariant() }, { "name", "x" } }, null, 1), "uppercase uuid");
            Check.Contains(e.Message, "change.uuid", "names change.uuid");
            e = Check.Throws<MessageFormatException>(() => RemoteChange.Parse(new Dictionary<string, object> { { "op", "explode" }, { "uuid", u } }, null, 1), "unknown op");
            Check.Contains(e.Message, "unknown op", "unknown op");
        }
    }
}

namespace VibeSync.Bridge.Tests
{
    public static class SnapshotTests
    {
        [VsTest]
        public static void SnapshotSurvivesSerialization()
        {
            var a = new ObjectState { Uuid = Msg.NewUuid(), Name = "A \"quoted\"", T = new[] { 0.1, -2, 3e-7 }, Visible = false, MeshHash = new string('b', 64), Material = new MaterialState { Metallic = 0.25 } };
            var b = new ObjectState { Uuid = Msg.NewUuid(), Name = "B", Parent = a.Uuid };
            var snap = new System.Collections.Generic.Dictionary<string, ObjectState> { { a.Uuid, a }, { b.Uuid, b } };
            var back = ObjectState.ReadSnapshot(ObjectState.WriteSnapshot(snap));
            Check.Equal(2, back.Count, "two states");
            Check.Equal(a.Hash(), back[a.Uuid].Hash(), "A identical");
            Check.Equal(b.Hash(), back[b.Uuid].Hash(), "B identical");
            Check.Equal(a.Uuid, back[b.Uuid].Parent, "parent kept");
            Check.Throws<MessageFormatException>(() => ObjectState.ReadSnapshot("[{\"uuid\":\"x\"}]"), "bad snapshot rejected");
        }
    }
}
