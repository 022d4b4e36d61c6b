using System;
using System.Collections.Generic;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class CoordinateTests
    {
        const double Tol = 1e-6;

        static Trs Read(object o, double unit = 1.0)
        {
            var d = (Dictionary<string, object>)o;
            var t = Vectors.Doubles(d["t"]);
            return new Trs(new[] { t[0] * unit, t[1] * unit, t[2] * unit }, Vectors.Doubles(d["r"]), Vectors.Doubles(d["s"]));
        }

        static void Same(Trs expected, Trs actual, string what)
        {
            Check.Near(expected.T, actual.T, Tol, what + " position");
            Check.Near(expected.S, actual.S, Tol, what + " scale");
            Check.True(StateDiff.NearRotation(expected.R, actual.R, Tol), what + " rotation: expected [" + string.Join(",", Array.ConvertAll(expected.R, x => x.ToString("R"))) + "], got [" + string.Join(",", Array.ConvertAll(actual.R, x => x.ToString("R"))) + "]");
        }

        [VsTest]
        public static void SharedVectorsConvertBothWays()
        {
            var list = (List<object>)Vectors.Load("coords.json");
            Check.True(list.Count >= 4, "vectors present");
            foreach (Dictionary<string, object> v in list)
            {
                string name = (string)v["name"];
                double bu = v.ContainsKey("blender_unit_scale") ? Json.ToDouble(v["blender_unit_scale"]) : 1.0;
                var canonical = Read(v["canonical"]);
                var unity = Read(v["unity"]);
                Same(canonical, Coordinates.UnityToCanonical(unity), name + " unity->canonical");
                Same(unity, Coordinates.CanonicalToUnity(canonical), name + " canonical->unity");
                // Blender lengths are in Blender units: convert to meters first
                // (unit normalization, docs/PROTOCOL.md §6).
                var blenderMeters = Read(v["blender"], bu);
                Same(canonical, Coordinates.BlenderToCanonical(blenderMeters), name + " blender->canonical");
                Same(unity, Coordinates.CanonicalToUnity(Coordinates.BlenderToCanonical(blenderMeters)), name + " blender->unity composed");
            }
        }

        [VsTest]
        public static void E2eExampleFromTheProtocol()
        {
            double s15 = Math.Sin(Math.PI / 12), c15 = Math.Cos(Math.PI / 12);
            var blender = new Trs(new[] { 1.0, 2, 3 }, new[] { 0, 0, s15, c15 }, new[] { 2.0, 2, 2 });
            var unity = Coordinates.CanonicalToUnity(Coordinates.BlenderToCanonical(blender));
            Check.Near(new[] { 1.0, 3, 2 }, unity.T, 1e-12, "Unity position");
            Check.Near(new[] { 0, -0.2588190451, 0, 0.9659258263 }, unity.R, 1e-10, "Unity rotation");
            Check.Near(new[] { 2.0, 2, 2 }, unity.S, 0, "Unity scale");
        }

        [VsTest]
        public static void RandomRoundTripsWithin1e6IncludingMirroredScale()
        {
            var rng = new Random(1234);
            for (int i = 0; i < 2000; i++)
            {
                var q = new[] { rng.NextDouble() * 2 - 1, rng.NextDouble() * 2 - 1, rng.NextDouble() * 2 - 1, rng.NextDouble() * 2 - 1 };
                double n = Math.Sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
                for (int k = 0; k < 4; k++) q[k] /= n;
                double sx = (rng.Next(2) == 0 ? -1 : 1) * (0.01 + rng.NextDouble() * 10);
                var u = new Trs(new[] { rng.NextDouble() * 2000 - 1000, rng.NextDouble() * 2000 - 1000, rng.NextDouble() * 2000 - 1000 }, q,
                                new[] { sx, -(0.01 + rng.NextDouble()), 0.5 + rng.NextDouble() });
                double unit = i % 3 == 0 ? 0.01 : 1.0;
                var back = Coordinates.CanonicalToUnity(Coordinates.UnityToCanonical(u, unit), unit);
                Same(u, back, "round trip " + i);
                var b = Coordinates.CanonicalToBlender(Coordinates.BlenderToCanonical(u));
                Same(u, b, "blender round trip " + i);
            }
        }

        [VsTest]
        public static void ConvertedRotationRotatesConvertedVectors()
        {
            // Handedness check: for any rotation q and vector v, mirror(rotate(q, v)) == rotate(mirror(q), mirror(v)).
            var rng = new Random(99);
            for (int i = 0; i < 500; i++)
            {
                var q = new[] { rng.NextDouble() - .5, rng.NextDouble() - .5, rng.NextDouble() - .5, rng.NextDouble() - .5 };
                double n = Math.Sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
                for (int k = 0; k < 4; k++) q[k] /= n;
                var v = new[] { rng.NextDouble() * 10 - 5, rng.NextDouble() * 10 - 5, rng.NextDouble() * 10 - 5 };
                var lhs = Coordinates.CanonicalToUnityPosition(Coordinates.Rotate(q, v));
                var rhs = Coordinates.Rotate(Coordinates.CanonicalToUnityRotation(q), Coordinates.CanonicalToUnityPosition(v));
                Check.Near(lhs, rhs, 1e-9, "rotation " + i);
            }
        }

        [VsTest]
        public static void RejectsBadUnitScale()
        {
            Check.Throws<ArgumentOutOfRangeException>(() => Coordinates.UnityToCanonical(Trs.Identity, 0), "zero unit scale");
            Check.Throws<ArgumentOutOfRangeException>(() => Coordinates.CanonicalToUnity(Trs.Identity, double.NaN), "NaN unit scale");
        }
    }

    public static class MeshTests
    {
        [VsTest]
        public static void SharedMeshVectorParsesAndHashes()
        {
            foreach (Dictionary<string, object> v in (List<object>)Vectors.Load("mesh.json"))
            {
                byte[] b = Vectors.Hex((string)v["hex"]);
                var m = MeshData.Parse(b);
                Check.Equal((int)(long)v["vertex_count"], m.VertexCount, "vertex count " + v["name"]);
                Check.Equal((int)(long)v["index_count"], m.Indices.Length, "index count " + v["name"]);
                Check.Equal((string)v["mesh_hash"], MeshData.HashOf(b), "mesh_hash " + v["name"]);
                Check.Equal((string)v["hex"], Vectors.ToHex(m.Encode()), "re-encode " + v["name"]);
                var twice = m.MirrorZ().MirrorZ();
                Check.Equal((string)v["hex"], Vectors.ToHex(twice.Encode()), "mirroring twice is identity");
            }
        }

        [VsTest]
        public static void RejectsBadMeshBuffers()
        {
            Check.Contains(Check.Throws<FormatException>(() => MeshData.Parse(new byte[16]), "no magic").Message, "VSM1", "magic");
            var m = new MeshData { Positions = new float[] { 0, 0, 0, 1, 0, 0, 0, 1, 0 }, Indices = new uint[] { 0, 1, 2 } };
            var b = m.Encode();
            var shortB = new byte[b.Length - 1];
            Array.Copy(b, shortB, shortB.Length);
            Check.Contains(Check.Throws<FormatException>(() => MeshData.Parse(shortB), "truncated").Message, "needs", "size");
            b[16 + 36] = 7; // index 0 -> 7, out of range
            Check.Contains(Check.Throws<FormatException>(() => MeshData.Parse(b), "bad index").Message, "out of range", "index");
        }

        [VsTest]
        public static void ARememberedMeshIsComparedNotTrusted()
        {
            // The same bytes again pass without hashing; other bytes under the same hash never do
            // (the cache compares content, it does not trust the name).
            var m = new MeshData { Positions = new float[] { 0, 0, 0, 1, 0, 0, 0, 1, 0 }, Uv0 = new float[] { 0, 0, 1, 0, 0, 1 }, Indices = new uint[] { 0, 1, 2 } };
            byte[] a = m.Encode();
            string h = MeshData.HashOf(a);
            Check.True(MeshData.HashIs(a, h), "a mesh matches its hash");
            var copy = (byte[])a.Clone();
            Check.True(MeshData.HashIs(copy, h), "a copy of a remembered mesh matches");
            Check.True(ReferenceEquals(a, MeshData.Verified(copy, h)), "and the remembered buffer is the one to keep");
            var changed = (byte[])a.Clone();
            changed[changed.Length - 13] ^= 1; // one bit of one UV
            Check.True(!MeshData.HashIs(changed, h), "other bytes under a remembered hash do not match");
            var shorter = new byte[a.Length - 4];
            Array.Copy(a, shorter, shorter.Length);
            Check.True(!MeshData.HashIs(shorter, h), "a shorter buffer does not match");
            Check.True(!MeshData.HashIs(a, new string('0', 64)), "a mesh does not match another hash");
            var parsed = MeshData.Parse(a);
            Check.Equal(1f, parsed.Positions[3], "positions read back");
            Check.Equal(1f, parsed.Uv0[5], "uv0 read back");
            Check.Equal(2u, parsed.Indices[2], "indices read back");
        }
    }
}
