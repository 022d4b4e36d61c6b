// Mesh attachment (PROTOCOL.md §7), little-endian:
//   "VSM1" | u32 vertex_count | u32 index_count | u32 flags (bit0 normals, bit1 uv0)
//   f32[3n] positions (canonical, meters) | f32[3n] normals? | f32[2n] uv0? | u32[index_count] indices
// Triangles wind counter-clockwise in the canonical frame. mesh_hash = SHA-256 hex of the bytes (PROTOCOL §7).
using System;
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    public sealed class MeshData
    {
        public const uint FlagNormals = 1, FlagUv0 = 2;

        public float[] Positions = new float[0]; // 3 per vertex
        public float[] Normals;                  // 3 per vertex or null
        public float[] Uv0;                      // 2 per vertex or null
        public uint[] Indices = new uint[0];     // 3 per triangle

        public int VertexCount { get { return Positions.Length / 3; } }
        public int TriangleCount { get { return Indices.Length / 3; } }

        public static MeshData Parse(byte[] b)
        {
            if (b == null) throw new ArgumentNullException("b");
            if (b.Length < 16 || b[0] != 'V' || b[1] != 'S' || b[2] != 'M' || b[3] != '1')
                throw new FormatException("mesh attachment does not start with the \"VSM1\" header (PROTOCOL §7)");
            uint vc = U32(b, 4), ic = U32(b, 8), flags = U32(b, 12);
            if ((flags & ~(FlagNormals | FlagUv0)) != 0) throw new FormatException("mesh attachment has unknown flag bits 0x" + flags.ToString("x"));
            if (ic % 3 != 0) throw new FormatException("mesh index_count " + ic + " is not a multiple of 3 (triangles)");
            long floatsPerVertex = 3 + ((flags & FlagNormals) != 0 ? 3 : 0) + ((flags & FlagUv0) != 0 ? 2 : 0);
            long expected = 16L + 4L * floatsPerVertex * vc + 4L * ic;
            if (expected != b.Length)
                throw new FormatException("mesh attachment is " + b.Length + " bytes, header (" + vc + " vertices, " + ic + " indices, flags " + flags + ") needs " + expected);
            var m = new MeshData();
            int at = 16;
            m.Positions = Floats(b, ref at, 3 * (int)vc);
            if ((flags & FlagNormals) != 0) m.Normals = Floats(b, ref at, 3 * (int)vc);
            if ((flags & FlagUv0) != 0) m.Uv0 = Floats(b, ref at, 2 * (int)vc);
            m.Indices = new uint[ic];
            if (BitConverter.IsLittleEndian) Buffer.BlockCopy(b, at, m.Indices, 0, 4 * (int)ic);
            else for (int i = 0; i < ic; i++, at += 4) m.Indices[i] = U32(b, at);
            for (int i = 0; i < ic; i++)
                if (m.Indices[i] >= vc) throw new FormatException("mesh index " + i + " = " + m.Indices[i] + " is out of range (" + vc + " vertices)");
            return m;
        }

        public byte[] Encode()
        {
            if (Positions.Length % 3 != 0) throw new InvalidOperationException("positions length must be a multiple of 3");
            int vc = Positions.Length / 3;
            uint flags = (Normals != null ? FlagNormals : 0) | (Uv0 != null ? FlagUv0 : 0);
            if (Normals != null && Normals.Length != 3 * vc) throw new InvalidOperationException("normals must have 3 floats per vertex");
            if (Uv0 != null && Uv0.Length != 2 * vc) throw new InvalidOperationException("uv0 must have 2 floats per vertex");
            int size = 16 + 4 * (Positions.Length + (Normals != null ? Normals.Length : 0) + (Uv0 != null ? Uv0.Length : 0) + Indices.Length);
            var b = new byte[size];
            b[0] = (byte)'V'; b[1] = (byte)'S'; b[2] = (byte)'M'; b[3] = (byte)'1';
            PutU32(b, 4, (uint)vc); PutU32(b, 8, (uint)Indices.Length); PutU32(b, 12, flags);
            int at = 16;
            PutFloats(b, ref at, Positions);
            if (Normals != null) PutFloats(b, ref at, Normals);
            if (Uv0 != null) PutFloats(b, ref at, Uv0);
            foreach (var i in Indices) { PutU32(b, at, i); at += 4; }
            return b;
        }

        public static string HashOf(byte[] attachment) { return StateHash.Sha256Hex(attachment); }

        // The last attachments found to hash to their mesh_hash (hash -> bytes), oldest first.
        static readonly object verifiedLock = new object();
        static readonly LinkedList<KeyValuePair<string, byte[]>> verified =
            new LinkedList<KeyValuePair<string, byte[]>>();
        const int VerifiedMax = 8;

        /// <summary>
        /// Whether `attachment` hashes to `meshHash` (PROTOCOL §7). The last few attachments
        /// found to match are remembered: the same bytes again — a thousand objects instancing
        /// one geometry (§7.1) — are compared byte for byte instead of hashed again (SHA-256 in
        /// managed code is ~9 ms for a 12,500-vertex mesh; the comparison a fraction of that).
        /// </summary>
        public static bool HashIs(byte[] attachment, string meshHash)
        {
            return Verified(attachment, meshHash) != null;
        }

        /// <summary>
        /// `attachment` checked against `meshHash` as <see cref="HashIs"/> does: null when it does not
        /// match; else the buffer to keep — the remembered one when the same bytes were verified
        /// lately, so that a thousand objects showing one geometry hold one buffer, not a thousand
        /// copies (0.7 GB for 1,000 instances of a 12,500-vertex collection).
        /// </summary>
        public static byte[] Verified(byte[] attachment, string meshHash)
        {
            if (attachment == null || meshHash == null) return null;
            lock (verifiedLock)
            {
                foreach (var e in verified)
                    if (e.Key == meshHash && SameBytes(e.Value, attachment)) return e.Value;
            }
            if (HashOf(attachment) != meshHash) return null;
            lock (verifiedLock)
            {
                verified.AddLast(new KeyValuePair<string, byte[]>(meshHash, attachment));
                while (verified.Count > VerifiedMax) verified.RemoveFirst();
            }
            return attachment;
        }

        static bool SameBytes(byte[] a, byte[] b)
        {
            if (ReferenceEquals(a, b)) return true;
            if (a.Length != b.Length) return false;
            int i = 0;
            for (; i + 8 <= a.Length; i += 8)
                if (BitConverter.ToInt64(a, i) != BitConverter.ToInt64(b, i)) return false;
            for (; i < a.Length; i++)
                if (a[i] != b[i]) return false;
            return true;
        }

        static uint U32(byte[] b, int at) { return (uint)(b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)); }

        static void PutU32(byte[] b, int at, uint v) { b[at] = (byte)v; b[at + 1] = (byte)(v >> 8); b[at + 2] = (byte)(v >> 16); b[at + 3] = (byte)(v >> 24); }

        static float[] Floats(byte[] b, ref int at, int n)
        {
            var f = new float[n];
            if (BitConverter.IsLittleEndian)
            {
                Buffer.BlockCopy(b, at, f, 0, 4 * n);
                at += 4 * n;
                return f;
            }
            for (int i = 0; i < n; i++, at += 4)
            {
                if (!BitConverter.IsLittleEndian) Array.Reverse(b, at, 4);
                f[i] = BitConverter.ToSingle(b, at);
                if (!BitConverter.IsLittleEndian) Array.Reverse(b, at, 4);
            }
            return f;
        }

        static void PutFloats(byte[] b, ref int at, float[] f)
        {
            foreach (var x in f)
            {
                var bytes = BitConverter.GetBytes(x);
                if (!BitConverter.IsLittleEndian) Array.Reverse(bytes);
                Buffer.BlockCopy(bytes, 0, b, at, 4);
                at += 4;
            }
        }

        /// <summary>
        /// Canonical (RH) -> Unity (LH): mirror Z of positions/normals and reverse each triangle's
        /// winding so faces keep pointing outward. The same function converts back.
        /// </summary>
        public MeshData MirrorZ()
        {
            var m = new MeshData
            {
                Positions = (float[])Positions.Clone(),
                Normals = Normals == null ? null : (float[])Normals.Clone(),
                Uv0 = Uv0 == null ? null : (float[])Uv0.Clone(),
                Indices = (uint[])Indices.Clone(),
            };
            for (int i = 2; i < m.Positions.Length; i += 3) m.Positions[i] = -m.Positions[i];
            if (m.Normals != null) for (int i = 2; i < m.Normals.Length; i += 3) m.Normals[i] = -m.Normals[i];
            for (int i = 0; i + 2 < m.Indices.Length; i += 3) { var t = m.Indices[i + 1]; m.Indices[i + 1] = m.Indices[i + 2]; m.Indices[i + 2] = t; }
            return m;
        }
    }
}
