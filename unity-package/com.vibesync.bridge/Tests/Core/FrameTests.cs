using System;
using System.Collections.Generic;
using System.Text;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class FrameTests
    {
        sealed class Collected
        {
            public readonly List<Frame> Frames = new List<Frame>();
            public readonly List<FrameError> Errors = new List<FrameError>();
        }

        static Collected FeedAll(byte[] input, int chunk, int max)
        {
            var c = new Collected();
            var d = new FrameDecoder(max);
            for (int i = 0; i < input.Length; i += chunk)
                d.Feed(input, i, Math.Min(chunk, input.Length - i), c.Frames.Add, c.Errors.Add);
            return c;
        }

        static void CheckVector(Dictionary<string, object> v, int max, int chunk)
        {
            string name = (string)v["name"] + (chunk == 1 ? " (byte by byte)" : " (whole)");
            byte[] input = Vectors.Hex((string)v["hex"]);
            var c = FeedAll(input, chunk, max);
            if ((string)v["expect"] == "ok")
            {
                Check.Equal(0, c.Errors.Count, name + ": errors " + (c.Errors.Count > 0 ? c.Errors[0].ToString() : ""));
                Check.Equal(1, c.Frames.Count, name + ": frame count");
                Check.True(Json.DeepEquals(v["message"], c.Frames[0].Message), name + ": decoded message equals the vector");
                string att = v.ContainsKey("attachment_hex") ? (string)v["attachment_hex"] : "";
                Check.Equal(att, Vectors.ToHex(c.Frames[0].Attachment), name + ": attachment");
            }
            else
            {
                Check.Equal(0, c.Frames.Count, name + ": no frame decoded");
                Check.Equal(1, c.Errors.Count, name + ": one error reported");
                Check.Equal((string)v["error_code"], c.Errors[0].Code, name + ": error code");
                bool frameLayer = (string)v["error_code"] != ErrorCode.BadMessage;
                Check.Equal(frameLayer, c.Errors[0].Fatal, name + ": fatal only for frame-level errors");
                Check.True(c.Errors[0].Message.Length > 10, name + ": error has a message");
            }
        }

        [VsTest]
        public static void SharedVectorsDecodeWholeAndByteByByte()
        {
            var doc = (Dictionary<string, object>)Vectors.Load("frames.json");
            int max = (int)(long)doc["max_frame_bytes"];
            Check.Equal(Frame.DefaultMaxFrameBytes, max, "default limit equals the vectors' max_frame_bytes");
            var frames = (List<object>)doc["frames"];
            Check.True(frames.Count >= 10, "vector file has frames");
            foreach (Dictionary<string, object> v in frames)
            {
                CheckVector(v, max, int.MaxValue / 2);
                CheckVector(v, max, 1);
                CheckVector(v, max, 3);
            }
        }

        [VsTest]
        public static void SharedEncodeVectorsProduceExactBytes()
        {
            var doc = (Dictionary<string, object>)Vectors.Load("frames.json");
            foreach (Dictionary<string, object> v in (List<object>)doc["encode"])
            {
                byte[] json = Encoding.UTF8.GetBytes((string)v["json"]);
                byte[] att = Vectors.Hex((string)v["attachment_hex"]);
                Check.Equal((string)v["hex"], Vectors.ToHex(Frame.EncodeJson(json, att)), "encode " + v["name"]);
                // And our own writer produces JSON that decodes to the same value.
                var parsed = (Dictionary<string, object>)Json.Parse((string)v["json"]);
                var again = FeedAll(Frame.Encode(parsed, att), 1, Frame.DefaultMaxFrameBytes);
                if (parsed.ContainsKey("type"))
                {
                    Check.Equal(1, again.Frames.Count, "re-encoded " + v["name"]);
                    Check.True(Json.DeepEquals(parsed, again.Frames[0].Message), "re-encoded " + v["name"] + " round-trips");
                }
            }
        }

        [VsTest]
        public static void OversizeIsRejectedFromTheFirstFourBytes()
        {
            var d = new FrameDecoder(1024);
            var errors = new List<FrameError>();
            // Only the length prefix has arrived: the decoder must already refuse (no allocation, no waiting).
            d.Feed(new byte[] { 0x7f, 0xff, 0xff, 0xff }, 0, 4, f => { throw new Exception("no frame expected"); }, errors.Add);
            Check.Equal(1, errors.Count, "error after 4 bytes");
            Check.Equal(ErrorCode.FrameTooLarge, errors[0].Code, "code");
            Check.Contains(errors[0].Message, "1024", "message names the limit");
            // After a fatal error further input is ignored.
            d.Feed(Frame.Encode(new Dictionary<string, object> { { "type", "ping" } }), 0, 23, f => { throw new Exception("decoder must stay failed"); }, errors.Add);
            Check.Equal(1, errors.Count, "no more output after a fatal error");
            Check.True(d.FatalError != null, "FatalError set");
        }

        [VsTest]
        public static void ExactLimitIsAccepted()
        {
            var json = Encoding.UTF8.GetBytes("{\"type\":\"ping\"}");
            var att = new byte[100 - 4 - json.Length];
            var frame = Frame.EncodeJson(json, att, 100);
            var c = FeedAll(frame, 7, 100);
            Check.Equal(1, c.Frames.Count, "frame with total_len == limit decodes");
            Check.Throws<ArgumentException>(() => Frame.EncodeJson(json, new byte[att.Length + 1], 100), "encoding above the limit is refused");
        }

        [VsTest]
        public static void BadMessageKeepsTheStreamUsable()
        {
            var bad = Vectors.Hex("0000000c000000087b2274797065223a"); // invalid JSON, well framed
            var good = Frame.Encode(new Dictionary<string, object> { { "type", "pong" }, { "request_id", "p1" }, { "seq", 7L } });
            var both = new byte[bad.Length + good.Length + bad.Length];
            Buffer.BlockCopy(bad, 0, both, 0, bad.Length);
            Buffer.BlockCopy(good, 0, both, bad.Length, good.Length);
            Buffer.BlockCopy(bad, 0, both, bad.Length + good.Length, bad.Length);
            foreach (int chunk in new[] { 1, 5, both.Length })
            {
                var order = new List<string>();
                var d = new FrameDecoder();
                for (int i = 0; i < both.Length; i += chunk)
                    d.Feed(both, i, Math.Min(chunk, both.Length - i), f => order.Add("frame:" + f.Type), e => order.Add("error:" + e.Code));
                Check.Equal("error:BAD_MESSAGE,frame:pong,error:BAD_MESSAGE", string.Join(",", order.ToArray()), "order with chunk " + chunk);
                Check.True(d.IsIdle, "nothing left buffered");
            }
        }

        [VsTest]
        public static void ManyFramesInOneRead()
        {
            var buf = new List<byte>();
            for (int i = 0; i < 50; i++)
                buf.AddRange(Frame.Encode(new Dictionary<string, object> { { "type", "ping" }, { "request_id", "p" + i } }, i % 3 == 0 ? new byte[i] : null));
            var c = FeedAll(buf.ToArray(), 4096, Frame.DefaultMaxFrameBytes);
            Check.Equal(50, c.Frames.Count, "frames");
            Check.Equal("p49", (string)c.Frames[49].Message["request_id"], "last request id");
            Check.Equal(48, c.Frames[48].Attachment.Length, "attachment length kept");
        }

        [VsTest]
        public static void BadMessageNamesTheField()
        {
            FrameError err;
            var body = Encoding.UTF8.GetBytes("{\"type\":5,\"request_id\":\"r9\"}");
            Check.True(FrameDecoder.DecodeBody(body, body.Length, out err) == null, "not decoded");
            Check.Contains(err.Message, "`type`", "message names the field");
            Check.Equal("r9", err.RequestId, "request id recovered for the reply");
        }
    }
}
