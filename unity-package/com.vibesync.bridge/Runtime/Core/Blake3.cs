// BLAKE3 (default hash mode, 32-byte output), written from the reference implementation in the
// BLAKE3 paper. .NET/Mono ship no BLAKE3 and the package allows no third-party DLLs.
// Portable and allocation-light rather than fast: state hashes cover a few hundred bytes and
// mesh attachments are hashed off the main thread.
using System;
using System.Text;

namespace VibeSync.Bridge.Core
{
    public sealed class Blake3
    {
        const int BlockLen = 64;
        const int ChunkLen = 1024;
        const uint ChunkStart = 1, ChunkEnd = 2, Parent = 4, Root = 8;

        static readonly uint[] IV =
        {
            0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
        };

        static readonly int[] Perm = { 2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8 };

        // -------------------------------------------------------------- one-shot helpers

        public static byte[] Hash(byte[] data)
        {
            var h = new Blake3();
            h.Update(data, 0, data.Length);
            return h.Finalize();
        }

        public static string HashHex(byte[] data) { return ToHex(Hash(data)); }

        public static string HashHex(string utf8Text) { return HashHex(Encoding.UTF8.GetBytes(utf8Text)); }

        public static string ToHex(byte[] b)
        {
            var sb = new StringBuilder(b.Length * 2);
            foreach (byte x in b) sb.Append(x.ToString("x2"));
            return sb.ToString();
        }

        // -------------------------------------------------------------- compression

        static uint Rotr(uint x, int n) { return (x >> n) | (x << (32 - n)); }

        static void G(uint[] s, int a, int b, int c, int d, uint mx, uint my)
        {
            s[a] = s[a] + s[b] + mx; s[d] = Rotr(s[d] ^ s[a], 16);
            s[c] = s[c] + s[d]; s[b] = Rotr(s[b] ^ s[c], 12);
            s[a] = s[a] + s[b] + my; s[d] = Rotr(s[d] ^ s[a], 8);
            s[c] = s[c] + s[d]; s[b] = Rotr(s[b] ^ s[c], 7);
        }

        static void Round(uint[] s, uint[] m)
        {
            G(s, 0, 4, 8, 12, m[0], m[1]);
            G(s, 1, 5, 9, 13, m[2], m[3]);
            G(s, 2, 6, 10, 14, m[4], m[5]);
            G(s, 3, 7, 11, 15, m[6], m[7]);
            G(s, 0, 5, 10, 15, m[8], m[9]);
            G(s, 1, 6, 11, 12, m[10], m[11]);
            G(s, 2, 7, 8, 13, m[12], m[13]);
            G(s, 3, 4, 9, 14, m[14], m[15]);
        }

        /// <summary>Returns the 16-word output state.</summary>
        static uint[] Compress(uint[] cv, uint[] blockWords, ulong counter, uint blockLen, uint flags)
        {
            var s = new uint[16];
            Array.Copy(cv, 0, s, 0, 8);
            s[8] = IV[0]; s[9] = IV[1]; s[10] = IV[2]; s[11] = IV[3];
            s[12] = (uint)counter; s[13] = (uint)(counter >> 32); s[14] = blockLen; s[15] = flags;
            var m = (uint[])blockWords.Clone();
            var tmp = new uint[16];
            for (int r = 0; r < 7; r++)
            {
                Round(s, m);
                if (r < 6)
                {
                    for (int i = 0; i < 16; i++) tmp[i] = m[Perm[i]];
                    var t = m; m = tmp; tmp = t;
                }
            }
            for (int i = 0; i < 8; i++) { s[i] ^= s[i + 8]; s[i + 8] ^= cv[i]; }
            return s;
        }

        static uint[] First8(uint[] s) { var r = new uint[8]; Array.Copy(s, r, 8); return r; }

        static uint[] WordsLE(byte[] block)
        {
            var w = new uint[16];
            for (int i = 0; i < 16; i++)
                w[i] = (uint)(block[4 * i] | (block[4 * i + 1] << 8) | (block[4 * i + 2] << 16) | (block[4 * i + 3] << 24));
            return w;
        }

        struct Output
        {
            public uint[] Cv; public uint[] Block; public ulong Counter; public uint BlockLen; public uint Flags;
            public uint[] ChainingValue() { return First8(Compress(Cv, Block, Counter, BlockLen, Flags)); }
            public byte[] Root32()
            {
                var s = Compress(Cv, Block, 0, BlockLen, Flags | Root);
                var o = new byte[32];
                for (int i = 0; i < 8; i++)
                {
                    o[4 * i] = (byte)s[i]; o[4 * i + 1] = (byte)(s[i] >> 8); o[4 * i + 2] = (byte)(s[i] >> 16); o[4 * i + 3] = (byte)(s[i] >> 24);
                }
                return o;
            }
        }

        static Output ParentOutput(uint[] left, uint[] right)
        {
            var block = new uint[16];
            Array.Copy(left, 0, block, 0, 8);
            Array.Copy(right, 0, block, 8, 8);
            return new Output { Cv = IV, Block = block, Counter = 0, BlockLen = BlockLen, Flags = Parent };
        }

        // -------------------------------------------------------------- incremental state

        uint[] chunkCv = (uint[])IV.Clone();
        ulong chunkCounter;
        readonly byte[] block = new byte[BlockLen];
        int blockFill;
        int blocksCompressed;
        readonly uint[][] cvStack = new uint[54][];
        int cvStackLen;

        int ChunkBytes { get { return BlockLen * blocksCompressed + blockFill; } }

        public void Update(byte[] input, int offset, int count)
        {
            if (input == null) throw new ArgumentNullException("input");
            if (offset < 0 || count < 0 || offset + count > input.Length) throw new ArgumentOutOfRangeException("offset/count");
            while (count > 0)
            {
                if (ChunkBytes == ChunkLen)
                {
                    uint[] cv = ChunkOutput().ChainingValue();
                    ulong totalChunks = chunkCounter + 1;
                    AddChunkCv(cv, totalChunks);
                    chunkCv = (uint[])IV.Clone();
                    chunkCounter = totalChunks;
                    blockFill = 0;
                    blocksCompressed = 0;
                    Array.Clear(block, 0, BlockLen);
                }
                int take = Math.Min(ChunkLen - ChunkBytes, count);
                int end = offset + take;
                while (offset < end)
                {
                    if (blockFill == BlockLen)
                    {
                        uint flags = blocksCompressed == 0 ? ChunkStart : 0;
                        chunkCv = First8(Compress(chunkCv, WordsLE(block), chunkCounter, BlockLen, flags));
                        blocksCompressed++;
                        blockFill = 0;
                        Array.Clear(block, 0, BlockLen);
                    }
                    int n = Math.Min(BlockLen - blockFill, end - offset);
                    Buffer.BlockCopy(input, offset, block, blockFill, n);
                    blockFill += n;
                    offset += n;
                }
                count -= take;
            }
        }

        Output ChunkOutput()
        {
            uint flags = ChunkEnd | (blocksCompressed == 0 ? ChunkStart : 0);
            return new Output { Cv = chunkCv, Block = WordsLE(block), Counter = chunkCounter, BlockLen = (uint)blockFill, Flags = flags };
        }

        void AddChunkCv(uint[] cv, ulong totalChunks)
        {
            while ((totalChunks & 1) == 0)
            {
                cv = ParentOutput(cvStack[--cvStackLen], cv).ChainingValue();
                totalChunks >>= 1;
            }
            cvStack[cvStackLen++] = cv;
        }

        /// <summary>The 32-byte hash of everything fed so far (the hasher stays usable).</summary>
        public byte[] Finalize()
        {
            Output o = ChunkOutput();
            for (int i = cvStackLen - 1; i >= 0; i--) o = ParentOutput(cvStack[i], o.ChainingValue());
            return o.Root32();
        }
    }
}
