// Frame layout (PROTOCOL.md §1):
//   u32 BE total_len | u32 BE json_len | json bytes (UTF-8) | attachment bytes
// total_len counts everything after the first four bytes.
using System;
using System.Collections.Generic;
using System.Text;

namespace VibeSync.Bridge.Core
{
    /// <summary>One decoded frame: the JSON object and its (possibly empty) attachment.</summary>
    public sealed class Frame
    {
        public readonly Dictionary<string, object> Message;
        public readonly byte[] Attachment;

        public Frame(Dictionary<string, object> message, byte[] attachment)
        {
            Message = message;
            Attachment = attachment ?? Empty;
        }

        public string Type { get { object t; Message.TryGetValue("type", out t); return t as string; } }

        public static readonly byte[] Empty = new byte[0];
        public const int DefaultMaxFrameBytes = 64 * 1024 * 1024;

        /// <summary>Encodes a message object. Throws ArgumentException if it cannot be framed.</summary>
        public static byte[] Encode(IDictionary<string, object> message, byte[] attachment = null)
        {
            return EncodeJson(Encoding.UTF8.GetBytes(Json.Write(message)), attachment);
        }

        /// <summary>Frames already-serialized JSON bytes and an optional attachment.</summary>
        public static byte[] EncodeJson(byte[] json, byte[] attachment = null, int maxFrameBytes = DefaultMaxFrameBytes)
        {
            if (json == null) throw new ArgumentNullException("json");
            if (attachment == null) attachment = Empty;
            long total = 4L + json.Length + attachment.Length;
            if (total > maxFrameBytes)
                throw new ArgumentException("frame of " + total + " bytes exceeds the limit of " + maxFrameBytes +
                                            " bytes (PROTOCOL §1, the daemon's server.max_frame_bytes); split the payload");
            var buf = new byte[4 + total];
            WriteU32BE(buf, 0, (uint)total);
            WriteU32BE(buf, 4, (uint)json.Length);
            Buffer.BlockCopy(json, 0, buf, 8, json.Length);
            Buffer.BlockCopy(attachment, 0, buf, 8 + json.Length, attachment.Length);
            return buf;
        }

        public static void WriteU32BE(byte[] b, int at, uint v)
        {
            b[at] = (byte)(v >> 24); b[at + 1] = (byte)(v >> 16); b[at + 2] = (byte)(v >> 8); b[at + 3] = (byte)v;
        }

        public static uint ReadU32BE(byte[] b, int at)
        {
            return ((uint)b[at] << 24) | ((uint)b[at + 1] << 16) | ((uint)b[at + 2] << 8) | b[at + 3];
        }
    }

    /// <summary>A frame-level problem. <see cref="Fatal"/> means the stream can no longer be trusted.</summary>
    public sealed class FrameError
    {
        public readonly string Code;     // ErrorCode.*
        public readonly string Message;
        public readonly bool Fatal;
        public readonly string RequestId; // when the bad JSON still had a readable request_id

        public FrameError(string code, string message, bool fatal, string requestId = null)
        {
            Code = code; Message = message; Fatal = fatal; RequestId = requestId;
        }

        public override string ToString() { return Code + ": " + Message; }
    }

    /// <summary>
    /// Incremental frame decoder: feed any slice of bytes, collect complete frames.
    /// An oversize total_len is rejected from the 4 header bytes, before allocating the body.
    /// After a fatal error (FRAME_TOO_LARGE, BAD_FRAME) the decoder refuses further input.
    /// A BAD_MESSAGE (bad JSON, not an object, missing/non-string type, empty JSON) is reported
    /// per frame and decoding continues with the next frame.
    /// </summary>
    public sealed class FrameDecoder
    {
        readonly int maxFrameBytes;
        readonly byte[] header = new byte[8];
        int headerFill;
        byte[] body;       // json + attachment, allocated once the header is validated
        int bodyFill;
        uint jsonLen;
        FrameError fatal;

        public FrameDecoder(int maxFrameBytes = Frame.DefaultMaxFrameBytes)
        {
            if (maxFrameBytes < 4) throw new ArgumentOutOfRangeException("maxFrameBytes");
            this.maxFrameBytes = maxFrameBytes;
        }

        public FrameError FatalError { get { return fatal; } }

        /// <summary>True when no partial frame is buffered.</summary>
        public bool IsIdle { get { return headerFill == 0 && body == null; } }

        /// <summary>
        /// Consumes bytes. Complete frames go to <paramref name="frames"/>, problems to
        /// <paramref name="errors"/> in stream order (the callbacks keep the order between the two).
        /// </summary>
        public void Feed(byte[] data, int offset, int count, Action<Frame> frames, Action<FrameError> errors)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (offset < 0 || count < 0 || offset + count > data.Length) throw new ArgumentOutOfRangeException("offset/count");
            int end = offset + count;
            while (offset < end)
            {
                if (fatal != null) return;
                if (body == null)
                {
                    int take = Math.Min(8 - headerFill, end - offset);
                    // total_len is known after 4 bytes: check the limit before waiting for json_len.
                    Buffer.BlockCopy(data, offset, header, headerFill, take);
                    int before = headerFill;
                    headerFill += take;
                    offset += take;
                    if (before < 4 && headerFill >= 4)
                    {
                        uint total = Frame.ReadU32BE(header, 0);
                        if (total > (uint)maxFrameBytes)
                        {
                            Fail(errors, ErrorCode.FrameTooLarge, "frame total_len " + total + " exceeds the limit of " + maxFrameBytes + " bytes");
                            return;
                        }
                        if (total < 4)
                        {
                            Fail(errors, ErrorCode.BadFrame, "frame total_len " + total + " is below the minimum of 4 (it must count json_len)");
                            return;
                        }
                    }
                    if (headerFill < 8) continue;
                    uint totalLen = Frame.ReadU32BE(header, 0);
                    jsonLen = Frame.ReadU32BE(header, 4);
                    if (jsonLen > totalLen - 4)
                    {
                        Fail(errors, ErrorCode.BadFrame, "frame json_len " + jsonLen + " is larger than total_len - 4 = " + (totalLen - 4));
                        return;
                    }
                    body = new byte[totalLen - 4];
                    bodyFill = 0;
                }
                int want = body.Length - bodyFill;
                int n = Math.Min(want, end - offset);
                Buffer.BlockCopy(data, offset, body, bodyFill, n);
                bodyFill += n;
                offset += n;
                if (bodyFill == body.Length) Complete(frames, errors);
            }
            // A header-only frame (total_len == 4, json_len == 0) completes without body bytes.
            if (fatal == null && body != null && body.Length == 0) Complete(frames, errors);
        }

        void Fail(Action<FrameError> errors, string code, string message)
        {
            fatal = new FrameError(code, message, true);
            body = null;
            if (errors != null) errors(fatal);
        }

        void Complete(Action<Frame> frames, Action<FrameError> errors)
        {
            byte[] b = body;
            int jl = (int)jsonLen;
            body = null;
            headerFill = 0;
            bodyFill = 0;
            FrameError err;
            Frame f = DecodeBody(b, jl, out err);
            if (f != null) { if (frames != null) frames(f); }
            else if (errors != null) errors(err);
        }

        /// <summary>Validates the JSON part of a complete frame body (json + attachment).</summary>
        public static Frame DecodeBody(byte[] body, int jsonLen, out FrameError error)
        {
            error = null;
            if (jsonLen == 0)
            {
                error = new FrameError(ErrorCode.BadMessage, "frame has an empty JSON part (json_len 0); every frame carries a JSON object with a `type`", false);
                return null;
            }
            Dictionary<string, object> msg;
            try
            {
                object v = Json.Parse(body, 0, jsonLen);
                msg = v as Dictionary<string, object>;
                if (msg == null)
                {
                    error = new FrameError(ErrorCode.BadMessage, "frame JSON is a " + Json.TypeName(v) + ", expected an object with a string field `type`", false);
                    return null;
                }
            }
            catch (JsonException e)
            {
                error = new FrameError(ErrorCode.BadMessage, "frame JSON is invalid: " + e.Message, false);
                return null;
            }
            object rid;
            msg.TryGetValue("request_id", out rid);
            object type;
            if (!msg.TryGetValue("type", out type))
            {
                error = new FrameError(ErrorCode.BadMessage, "field `type`: missing", false, rid as string);
                return null;
            }
            if (!(type is string))
            {
                error = new FrameError(ErrorCode.BadMessage, "field `type`: expected a string, found " + Json.TypeName(type), false, rid as string);
                return null;
            }
            byte[] attachment = Frame.Empty;
            if (body.Length > jsonLen)
            {
                attachment = new byte[body.Length - jsonLen];
                Buffer.BlockCopy(body, jsonLen, attachment, 0, attachment.Length);
            }
            return new Frame(msg, attachment);
        }
    }
}
