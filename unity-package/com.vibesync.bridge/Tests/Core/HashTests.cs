using System;
using System.Collections.Generic;
using System.Text;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class HashTests
    {
        [VsTest]
        public static void Sha256KnownAnswers()
        {
            Check.Equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", StateHash.Sha256Hex(new byte[0]), "empty");
            Check.Equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", StateHash.Sha256Hex(Encoding.UTF8.GetBytes("abc")), "abc");
            Check.Equal(StateHash.Sha256Hex(new byte[] { 1, 2 }), MeshData.HashOf(new byte[] { 1, 2 }), "mesh hash is SHA-256");
        }

        /// <summary>A scene file's <c>"mesh": {"grid": N}</c> (the first-sync benchmark's
        /// meshes): an N x N vertex grid of 2 (N-1)^2 triangles, hashed as its attachment; a
        /// bad size is refused with the field's path.</summary>
        [VsTest]
        public static void SceneFileGridMeshLoadsAsAnNByNGrid()
        {
            string file = System.IO.Path.GetTempFileName();
            try
            {
                System.IO.File.WriteAllText(file, "{\"objects\":[{\"uuid\":\"" + Msg.NewUuid() + "\",\"name\":\"G\",\"parent\":null,"
                    + "\"transform\":{\"position\":[0,0,0],\"rotation\":[0,0,0,1],\"scale\":[1,1,1]},\"mesh\":{\"grid\":50}}]}");
                var scene = new VibeSync.Bridge.Headless.HeadlessScene();
                scene.Load(file);
                var mesh = scene.Objects[0].Mesh;
                Check.True(mesh != null, "the object carries its mesh");
                Check.Equal(2500, mesh.VertexCount, "50 x 50 vertices");
                Check.Equal(2 * 49 * 49, mesh.TriangleCount, "two triangles per cell");
                Check.Equal(MeshData.HashOf(mesh.Buffer), mesh.MeshHash, "hash of the attachment");
                System.IO.File.WriteAllText(file, "{\"objects\":[{\"name\":\"G\",\"transform\":{\"position\":[0,0,0],"
                    + "\"rotation\":[0,0,0,1],\"scale\":[1,1,1]},\"mesh\":{\"grid\":1}}]}");
                string error = null;
                try { new VibeSync.Bridge.Headless.HeadlessScene().Load(file); }
                catch (MessageFormatException e) { error = e.Message; }
                Check.True(error != null && error.Contains("objects[0].mesh.grid"), "refused with its path: " + error);
            }
            finally { System.IO.File.Delete(file); }
        }

        [VsTest]
        public static void HashedRotationDropsTheLargestComponent()
        {
            Check.Equal("3,0,25882,0", string.Join(",", StateHash.HashedRotation(new[] { 0.0, 0.2588190451, 0.0, 0.9659258263 })), "cube");
            Check.Equal("3,0,25882,0", string.Join(",", StateHash.HashedRotation(new[] { -0.0, -0.2588190451, -0.0, -0.9659258263 })), "negated");
            Check.Equal(string.Join(",", StateHash.HashedRotation(new[] { 0.0, 1.0, 0.0, 1e-7 })),
                string.Join(",", StateHash.HashedRotation(new[] { 0.0, -1.0, 0.0, 1e-7 })), "w on either side of 0");
        }

        /// <summary>
        /// Equal stored poses hash equal (PROTOCOL §6.5 "Stable values"): each of the 500 poses of
        /// tests/vectors/stable.json, applied to the headless scene (float32 storage and float32
        /// quaternion normalization, as a Unity Transform) through the engine's apply path, is
        /// read back with the hash the daemon expects.
        /// </summary>
        [VsTest]
        public static void StoredStableValuesHashAsTheDaemonSays()
        {
            var v = (Dictionary<string, object>)Vectors.Load("stable.json");
            var cases = (List<object>)v["cases"];
            Check.True(cases.Count >= 500, "500 poses");
            var scene = new VibeSync.Bridge.Headless.HeadlessScene();
            int failures = 0;
            string first = null;
            for (int i = 0; i < cases.Count; i++)
            {
                var c = (Dictionary<string, object>)cases[i];
                var u = Msg.NewUuid();
                var change = new Dictionary<string, object>
                {
                    { "op", "create" }, { "uuid", u }, { "kind", "object" }, { "name", "o" + i }, { "parent", null },
                    { "visible", true }, { "t", c["t"] }, { "r", c["r"] }, { "s", c["s"] },
                };
                var batch = new IncomingBatch { BatchId = "b" + i, Path = "resync", Count = 1 };
                batch.Changes.Add(RemoteChange.Parse(change, null, 1.0));
                scene.ApplyBatch(batch);
                var st = scene.Capture(u);
                if (st.Hash() != (string)c["hash"])
                {
                    failures++;
                    if (first == null) first = i + ": " + StateHash.CanonicalJson(st.ToHashState());
                }
                var unity = Coordinates.CanonicalToUnity(new Trs(Vectors.Doubles(c["t"]), Vectors.Doubles(c["r"]), Vectors.Doubles(c["s"])), 1.0);
                var stored = VibeSync.Bridge.Headless.HeadlessScene.StoreAsUnity(unity);
                var back = Coordinates.UnityToCanonical(stored, 1.0);
                Check.Equal(StateHash.CanonicalJson(new Dictionary<string, object> { { "r", Msg.List(Vectors.Doubles(c["r"])) } }),
                    StateHash.CanonicalJson(new Dictionary<string, object> { { "r", Msg.List(back.R) } }), "rotation " + i);
            }
            Check.Equal(0, failures, "poses hashing differently after float32 storage; first " + first);
        }

        [VsTest]
        public static void QuantizeMatchesSharedVectors()
        {
            foreach (Dictionary<string, object> v in (List<object>)Vectors.Load("quantize.json"))
            {
                double x = Json.ToDouble(v["v"]);
                Check.Equal((long)v["q"], StateHash.Quantize(x), "q(" + x.ToString("R") + ")");
            }
            Check.Throws<ArgumentException>(() => StateHash.Quantize(double.NaN), "NaN refused");
        }

        [VsTest]
        public static void StateHashMatchesSharedVectors()
        {
            foreach (Dictionary<string, object> v in (List<object>)Vectors.Load("state_hash.json"))
            {
                var state = (Dictionary<string, object>)v["state"];
                Check.Equal((string)v["canonical"], StateHash.CanonicalJson(state), "canonical JSON of " + v["name"]);
                Check.Equal((string)v["hash"], StateHash.Hash(state), "hash of " + v["name"]);
                // The typed model hashes the same as the raw dictionary.
                var os = FromDict(state);
                Check.Equal((string)v["hash"], os.Hash(), "ObjectState hash of " + v["name"]);
            }
        }

        static ObjectState FromDict(Dictionary<string, object> d)
        {
            var o = new ObjectState
            {
                Kind = (string)d["kind"], Name = (string)d["name"], Parent = d["parent"] as string, Visible = (bool)d["visible"],
                T = Vectors.Doubles(d["t"]), R = Vectors.Doubles(d["r"]), S = Vectors.Doubles(d["s"]),
            };
            if (d.ContainsKey("mesh_hash")) o.MeshHash = (string)d["mesh_hash"];
            if (d.ContainsKey("material")) o.Material = MaterialState.FromJson((Dictionary<string, object>)d["material"], "material");
            return o;
        }

        [VsTest]
        public static void EpsilonInvariance()
        {
            var a = new ObjectState { Uuid = Msg.NewUuid(), Name = "Cube", T = new[] { 1.0, 3.0, -2.0 } };
            var b = a.Clone();
            b.T = new[] { 1.000004, 2.999996, -2.0000049 };
            Check.Equal(a.Hash(), b.Hash(), "sub-epsilon differences hash equal");
            Check.True(StateDiff.NearlyEquals(a, b), "and diff as equal");
            Check.Equal(0, StateDiff.Diff(a, b).Count, "no ops for sub-epsilon change");
            b.T[0] = 1.00002;
            Check.True(a.Hash() != b.Hash(), "2e-5 change hashes differently");
            Check.Equal(1, StateDiff.Diff(a, b).Count, "and produces one op");
            var c = a.Clone();
            c.R = new[] { -0.0, -0.0, -0.0, -1.0 };
            Check.Equal(a.Hash(), c.Hash(), "q and -q hash equal");
            Check.Equal(0, StateDiff.Diff(a, c).Count, "q and -q diff equal");
        }

        [VsTest]
        public static void AMaterialRemovedGoesOutAsNullAndClearsIt()
        {
            // PROTOCOL.md §6.1: `material` with `null` — the object has no material any more.
            var a = new ObjectState { Uuid = Msg.NewUuid(), Name = "Cube",
                Material = new MaterialState { BaseColor = new[] { 1.0, 0, 0, 1 }, Metallic = 0, Roughness = 0.5 } };
            var b = a.Clone();
            b.Material = null;
            var ops = StateDiff.Diff(a, b);
            Check.Equal(1, ops.Count, "one op");
            Check.Equal("material", (string)ops[0]["op"], "a material op");
            Check.True(ops[0].ContainsKey("material") && ops[0]["material"] == null, "carrying material: null");
            var rc = RemoteChange.Parse(Json.Parse(Json.Write(ops[0])) as Dictionary<string, object>, null, 1.0);
            Check.True(rc.Material == null, "parsed as a clear");
            var made = StateDiff.Apply(a, rc);
            Check.True(made.Material == null, "applied: no material");
            Check.Equal(b.Hash(), made.Hash(), "hashes as the state without one");
            bool refused = false;
            try { RemoteChange.Parse(new Dictionary<string, object> { { "op", "material" }, { "uuid", a.Uuid } }, null, 1.0); }
            catch (MessageFormatException) { refused = true; }
            Check.True(refused, "a material op without the field is refused");
        }
    }
}
