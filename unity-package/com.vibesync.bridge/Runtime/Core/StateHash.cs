// State hash (PROTOCOL.md §6.5): SHA-256 over the canonical JSON of an object's synced state,
// keys sorted, compact, every float replaced by its quantized integer
// q(v) = sign(v) * floor(|v| * 100000 + 0.5) (meters, canonical frame); the quaternion `r` in its
// hashed "smallest three" form (HashedRotation). Mesh hashes (§7) are SHA-256 too (Sha256Hex).
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace VibeSync.Bridge.Core
{
    public static class StateHash
    {
        public const double Epsilon = 1e-5;
        const double Scale = 100000.0;

        public static long Quantize(double v)
        {
            if (double.IsNaN(v) || double.IsInfinity(v))
                throw new ArgumentException("cannot quantize a non-finite number (PROTOCOL §2: numbers must be finite)");
            double q = Math.Floor(Math.Abs(v) * Scale + 0.5);
            if (q >= 9.2e18) throw new ArgumentOutOfRangeException("v", "value " + v + " is too large to quantize");
            long l = (long)q;
            return v < 0 ? -l : l;
        }

        /// <summary>Canonical JSON text: sorted keys, compact, every number quantized.</summary>
        public static string CanonicalJson(IDictionary<string, object> state)
        {
            var sb = new StringBuilder();
            Json.WriteValue(sb, state, Canonical, 0);
            return sb.ToString();
        }

        public static string Hash(IDictionary<string, object> state)
        {
            return Sha256Hex(Encoding.UTF8.GetBytes(CanonicalJson(state)));
        }

        /// <summary>Lowercase hex SHA-256 (the .NET class library's, native in Unity and Mono).</summary>
        public static string Sha256Hex(byte[] data)
        {
            using (var sha = System.Security.Cryptography.SHA256.Create())
                return ToHex(sha.ComputeHash(data));
        }

        public static string ToHex(byte[] b)
        {
            var sb = new StringBuilder(b.Length * 2);
            foreach (byte x in b) sb.Append(x.ToString("x2", CultureInfo.InvariantCulture));
            return sb.ToString();
        }

        /// <summary>
        /// The hashed form of a quaternion [x, y, z, w] (§6.5, "smallest three"): [L, a, b, c] with
        /// L the index of the component of largest magnitude (ties: lowest index) and a, b, c the
        /// other three quantized in index order, negated when component L is negative. q and -q
        /// give the same form; the dropped component is implied by the others.
        /// </summary>
        public static long[] HashedRotation(double[] q)
        {
            int big = 0;
            for (int i = 1; i < 4; i++) if (Math.Abs(q[i]) > Math.Abs(q[big])) big = i;
            double sign = q[big] < 0.0 ? -1.0 : 1.0;
            var r = new long[4];
            r[0] = big;
            int k = 1;
            for (int i = 0; i < 4; i++) if (i != big) r[k++] = Quantize(sign * q[i]);
            return r;
        }

        static double[] AsQuaternion(object v)
        {
            var l = v as IList;
            if (l == null || l.Count != 4) return null;
            var q = new double[4];
            for (int i = 0; i < 4; i++)
            {
                if (!Json.IsNumber(l[i])) return null;
                q[i] = Json.ToDouble(l[i]);
            }
            return q;
        }

        /// <summary>The state hash's canonical form, written by the one JSON writer (Json.WriteValue):
        /// sorted keys, every number quantized, `r` in its hashed form.</summary>
        sealed class HashStyle : Json.WriteStyle
        {
            public HashStyle() : base(true) { }

            // All numbers in a synced state are floats (positions, quaternions, scales, colors).
            public override void WriteNumber(StringBuilder sb, object v)
            {
                sb.Append(Quantize(Json.ToDouble(v)).ToString(CultureInfo.InvariantCulture));
            }

            public override bool WriteMember(StringBuilder sb, string key, object value)
            {
                var q = key == "r" ? AsQuaternion(value) : null;
                if (q == null) return false;
                var h = HashedRotation(q);
                sb.Append('[').Append(h[0]).Append(',').Append(h[1]).Append(',').Append(h[2]).Append(',').Append(h[3]).Append(']');
                return true;
            }
        }

        static readonly HashStyle Canonical = new HashStyle();
    }
}
