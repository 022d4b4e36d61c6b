using System;
using System.Collections.Generic;
using System.Text;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class HashTests
    {
        [VsTest]
        public static void Blake3MatchesSharedVectors()
        {
            var list = (List<object>)Vectors.Load("blake3.json");
            Check.True(list.Count >= 5, "vectors present");
            bool sawMultiChunk = false;
            foreach (Dictionary<string, object> v in list)
            {
                int n = (int)(long)v["input_len"];
                var input = new byte[n];
                for (int i = 0; i < n; i++) input[i] = (byte)(i % 251);
                Check.Equal((string)v["hash"], Blake3.HashHex(input), "blake3 of " + n + " bytes");
                // Incremental feeding in odd pieces gives the same hash.
                var h = new Blake3();
                for (int i = 0; i < n; i += 97) h.Update(input, i, Math.Min(97, n - i));
                Check.Equal((string)v["hash"], Blake3.ToHex(h.Finalize()), "incremental blake3 of " + n + " bytes");
                if (n > 2048) sawMultiChunk = true;
            }
            Check.True(sawMultiChunk, "vectors cover the chunk tree (> 2 chunks)");
        }

        [VsTest]
        public static void Blake3KnownAnswers()
        {
            // From the official BLAKE3 test_vectors.json (input = i % 251).
            Check.Equal("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262", Blake3.HashHex(new byte[0]), "empty");
            Check.Equal("2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213", Blake3.HashHex(new byte[] { 0 }), "one byte");
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
    }
}
