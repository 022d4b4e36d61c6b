// Frame conversions (PROTOCOL.md §6 table). The wire uses the canonical frame: glTF's,
// Y up, right-handed, meters. Quaternions are [x, y, z, w].
// Unity is Y up, left-handed: mirroring Z maps positions (x,y,z) -> (x,y,-z) and
// quaternions (x,y,z,w) -> (-x,-y,z,w); scale is unchanged. The map is its own inverse.
// Blender is here only so tests (and the headless host) can check the composed mapping.
using System;

namespace VibeSync.Bridge.Core
{
    /// <summary>Position, rotation [x,y,z,w] and scale in one frame.</summary>
    public struct Trs
    {
        public double[] T; // 3
        public double[] R; // 4, [x, y, z, w]
        public double[] S; // 3

        public Trs(double[] t, double[] r, double[] s)
        {
            if (t == null || t.Length != 3) throw new ArgumentException("position needs 3 components");
            if (r == null || r.Length != 4) throw new ArgumentException("rotation needs 4 components [x,y,z,w]");
            if (s == null || s.Length != 3) throw new ArgumentException("scale needs 3 components");
            T = t; R = r; S = s;
        }

        public static Trs Identity { get { return new Trs(new double[] { 0, 0, 0 }, new double[] { 0, 0, 0, 1 }, new double[] { 1, 1, 1 }); } }
    }

    public static class Coordinates
    {
        /// <summary>Unity (Y up, LH, editor units) -> canonical (Y up, RH, meters).</summary>
        public static Trs UnityToCanonical(Trs u, double unitScale = 1.0)
        {
            CheckScale(unitScale);
            return new Trs(
                new[] { u.T[0] * unitScale, u.T[1] * unitScale, -u.T[2] * unitScale },
                new[] { -u.R[0], -u.R[1], u.R[2], u.R[3] },
                new[] { u.S[0], u.S[1], u.S[2] });
        }

        /// <summary>Canonical (meters) -> Unity (editor units).</summary>
        public static Trs CanonicalToUnity(Trs c, double unitScale = 1.0)
        {
            CheckScale(unitScale);
            return new Trs(
                new[] { c.T[0] / unitScale, c.T[1] / unitScale, -c.T[2] / unitScale },
                new[] { -c.R[0], -c.R[1], c.R[2], c.R[3] },
                new[] { c.S[0], c.S[1], c.S[2] });
        }

        public static double[] UnityToCanonicalPosition(double[] p) { return new[] { p[0], p[1], -p[2] }; }
        public static double[] CanonicalToUnityPosition(double[] p) { return new[] { p[0], p[1], -p[2] }; }
        public static double[] UnityToCanonicalRotation(double[] q) { return new[] { -q[0], -q[1], q[2], q[3] }; }
        public static double[] CanonicalToUnityRotation(double[] q) { return new[] { -q[0], -q[1], q[2], q[3] }; }

        /// <summary>Blender (Z up, RH) -> canonical.</summary>
        public static Trs BlenderToCanonical(Trs b)
        {
            return new Trs(
                new[] { b.T[0], b.T[2], -b.T[1] },
                new[] { b.R[0], b.R[2], -b.R[1], b.R[3] },
                new[] { b.S[0], b.S[2], b.S[1] });
        }

        /// <summary>Canonical -> Blender (Z up, RH).</summary>
        public static Trs CanonicalToBlender(Trs c)
        {
            return new Trs(
                new[] { c.T[0], -c.T[2], c.T[1] },
                new[] { c.R[0], -c.R[2], c.R[1], c.R[3] },
                new[] { c.S[0], c.S[2], c.S[1] });
        }

        static void CheckScale(double unitScale)
        {
            if (!(unitScale > 0) || double.IsInfinity(unitScale))
                throw new ArgumentOutOfRangeException("unitScale", "unit_scale must be finite and > 0 (PROTOCOL §3)");
        }

        /// <summary>The Hamilton product a·b of quaternions [x,y,z,w]: rotation b, then a.</summary>
        public static double[] Multiply(double[] a, double[] b)
        {
            return new[]
            {
                a[3] * b[0] + a[0] * b[3] + a[1] * b[2] - a[2] * b[1],
                a[3] * b[1] - a[0] * b[2] + a[1] * b[3] + a[2] * b[0],
                a[3] * b[2] + a[0] * b[1] - a[1] * b[0] + a[2] * b[3],
                a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2],
            };
        }

        /// <summary>
        /// Rotates vector v by unit quaternion q ([x,y,z,w]). Used by tests to check that a
        /// converted rotation maps converted vectors like the original (handedness check).
        /// </summary>
        public static double[] Rotate(double[] q, double[] v)
        {
            double x = q[0], y = q[1], z = q[2], w = q[3];
            // t = 2 * cross(q.xyz, v); v' = v + w * t + cross(q.xyz, t)
            double tx = 2 * (y * v[2] - z * v[1]);
            double ty = 2 * (z * v[0] - x * v[2]);
            double tz = 2 * (x * v[1] - y * v[0]);
            return new[]
            {
                v[0] + w * tx + (y * tz - z * ty),
                v[1] + w * ty + (z * tx - x * tz),
                v[2] + w * tz + (x * ty - y * tx),
            };
        }
    }
}
