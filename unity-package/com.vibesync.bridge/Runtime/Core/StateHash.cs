// State hash (PROTOCOL.md §6.4): blake3 over the canonical JSON of an object's synced state,
// keys sorted, compact, every float replaced by its quantized integer
// q(v) = sign(v) * floor(|v| * 100000 + 0.5) (meters, canonical frame). Quaternions (`r`) are
// sign-canonicalized first (see CanonicalQuaternion): not yet written in PROTOCOL.md, pinned by the vectors.
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
            Write(sb, state, 0);
            return sb.ToString();
        }

        public static string Hash(IDictionary<string, object> state)
        {
            return Blake3.HashHex(Encoding.UTF8.GetBytes(CanonicalJson(state)));
        }

        /// <summary>
        /// q and -q are the same rotation: the hashed form has w &gt; 0, or when w == 0 its first
        /// non-zero component in the order x, y, z is positive. Applies to `r` arrays of 4 numbers.
        /// (Matches crates/vibesync-protocol state.rs and tests/vectors/state_hash.json.)
        /// </summary>
        public static object CanonicalQuaternion(object v)
        {
            var l = v as IList;
            if (l == null || l.Count != 4) return v;
            var q = new double[4];
            for (int i = 0; i < 4; i++)
            {
                if (!Json.IsNumber(l[i])) return v;
                q[i] = Json.ToDouble(l[i]);
            }
            return Msg.List(CanonicalQuaternion(q));
        }

        public static double[] CanonicalQuaternion(double[] q)
        {
            bool negate = false;
            foreach (int i in new[] { 3, 0, 1, 2 })
            {
                if (q[i] != 0.0) { negate = q[i] < 0.0; break; }
            }
            var r = new double[4];
            for (int i = 0; i < 4; i++) r[i] = (negate ? -q[i] : q[i]) + 0.0;
            return r;
        }

        static void Write(StringBuilder sb, object v, int depth)
        {
            if (depth > Json.MaxDepth) throw new ArgumentException("state nested too deeply");
            if (v == null) { sb.Append("null"); return; }
            var s = v as string;
            if (s != null) { Json.WriteString(sb, s); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (Json.IsNumber(v))
            {
                // All numbers in a synced state are floats (positions, quaternions, scales, colors).
                sb.Append(Quantize(Json.ToDouble(v)).ToString(CultureInfo.InvariantCulture));
                return;
            }
            var d = v as IDictionary<string, object>;
            if (d != null)
            {
                var keys = new List<string>(d.Keys);
                keys.Sort(string.CompareOrdinal);
                sb.Append('{');
                for (int i = 0; i < keys.Count; i++)
                {
                    if (i > 0) sb.Append(',');
                    Json.WriteString(sb, keys[i]);
                    sb.Append(':');
                    object val = d[keys[i]];
                    if (keys[i] == "r") val = CanonicalQuaternion(val);
                    Write(sb, val, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var e = v as IEnumerable;
            if (e != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (var item in e)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    Write(sb, item, depth + 1);
                }
                sb.Append(']');
                return;
            }
            throw new ArgumentException("cannot hash a value of type " + v.GetType().FullName);
        }
    }
}
