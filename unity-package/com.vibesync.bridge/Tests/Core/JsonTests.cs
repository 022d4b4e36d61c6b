using System;
using System.Collections.Generic;
using System.Text;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class JsonTests
    {
        [VsTest]
        public static void RoundTripsEveryVectorMessage()
        {
            var doc = (Dictionary<string, object>)Vectors.Load("frames.json");
            int n = 0;
            foreach (Dictionary<string, object> v in (List<object>)doc["frames"])
            {
                if ((string)v["expect"] != "ok") continue;
                object msg = v["message"];
                string text = Json.Write(msg);
                object back = Json.Parse(text);
                Check.True(Json.DeepEquals(msg, back), "round trip of " + v["name"] + ": " + text);
                Check.Equal(text, Json.Write(back), "writing is stable for " + v["name"]);
                n++;
            }
            foreach (var file in new[] { "state_hash.json", "coords.json", "stable.json", "quantize.json", "mesh.json" })
            {
                object all = Vectors.Load(file);
                Check.True(Json.DeepEquals(all, Json.Parse(Json.Write(all))), "round trip of " + file);
                n++;
            }
            Check.True(n >= 10, "vectors were round-tripped");
        }

        [VsTest]
        public static void ValueModel()
        {
            var o = (Dictionary<string, object>)Json.Parse("{\"a\":1,\"b\":-2.5,\"c\":1e3,\"d\":true,\"e\":null,\"f\":[],\"g\":\"\\u00e9\\ud83d\\ude42\",\"h\":12345678901234567890}");
            Check.True(o["a"] is long && (long)o["a"] == 1, "integer -> long");
            Check.True(o["b"] is double && (double)o["b"] == -2.5, "fraction -> double");
            Check.True(o["c"] is double && (double)o["c"] == 1000, "exponent -> double");
            Check.Equal(true, (bool)o["d"], "bool");
            Check.True(o["e"] == null, "null");
            Check.Equal(0, ((List<object>)o["f"]).Count, "empty array");
            Check.Equal("é🙂", (string)o["g"], "escapes and surrogate pairs");
            Check.True(o["h"] is double, "integer beyond long -> double");
        }

        [VsTest]
        public static void WriterEscapesOnlyWhatTheProtocolSays()
        {
            string s = Json.Write(new Dictionary<string, object> { { "k", "a\"b\\c\nd\te\u0001f/é漢🙂\u007f\b\f\r" } });
            Check.Equal("{\"k\":\"a\\\"b\\\\c\\nd\\te\\u0001f/é漢🙂\u007f\\b\\f\\r\"}", s, "escaping per PROTOCOL §6.4");
            Check.Equal("1.0", Json.Write(1.0), "a whole double stays a float");
            Check.Equal("0.1", Json.Write(0.1), "shortest round-trip form");
            Check.Equal("-0.25881904510252074", Json.Write(-0.25881904510252074), "17 significant digits when needed");
            Check.Equal("[1,2.5,null,true]", Json.Write(new List<object> { 1L, 2.5, null, true }), "array");
            Check.Throws<ArgumentException>(() => Json.Write(double.NaN), "NaN refused");
            Check.Throws<ArgumentException>(() => Json.Write(double.PositiveInfinity), "Infinity refused");
        }

        static void Bad(string text, string expectInMessage, long offset)
        {
            var e = Check.Throws<JsonException>(() => Json.Parse(Encoding.UTF8.GetBytes(text)), "malformed: " + text);
            Check.Contains(e.Message, expectInMessage, "message for " + text);
            Check.Equal(offset, e.Offset, "byte offset for " + text);
            Check.Contains(e.Message, "at byte " + offset, "message states the offset for " + text);
        }

        [VsTest]
        public static void RejectsMalformedInputWithClearErrors()
        {
            Bad("", "empty input", 0);
            Bad("{\"type\":", "unexpected end of input", 8);
            Bad("{\"a\":1,}", "expected a string key", 7);
            Bad("{\"a\" 1}", "expected ':'", 5);
            Bad("[1 2]", "expected ',' or ']'", 3);
            Bad("{\"a\":tru}", "invalid literal", 5);
            Bad("{\"a\":01}", "expected ',' or '}'", 6);
            Bad("{\"a\":1.}", "digit after '.'", 7);
            Bad("{\"a\":-}", "expected a digit", 6);
            Bad("\"abc", "unterminated string", 4);
            Bad("\"a\nb\"", "control character", 2);
            Bad("\"\\x\"", "invalid escape", 2);
            Bad("\"\\ud83d\"", "unpaired high surrogate", 6);
            Bad("{} x", "unexpected data after", 3);
            Bad("{\"a\":1,\"a\":2}", "duplicate key \"a\"", 7);
            Bad("{\"a\":1e999}", "out of range", 5);
            Bad("NaN", "unexpected character 'N'", 0);
            var utf = Check.Throws<JsonException>(() => Json.Parse(new byte[] { 0x22, 0x61, 0xff, 0x22 }), "invalid UTF-8");
            Check.Contains(utf.Message, "not valid UTF-8", "utf-8 message");
            var deep = new StringBuilder();
            for (int i = 0; i < 200; i++) deep.Append('[');
            Check.Contains(Check.Throws<JsonException>(() => Json.Parse(deep.ToString()), "deep nesting").Message, "nesting deeper", "depth message");
        }

        [VsTest]
        public static void CanonicalWriterSortsKeys()
        {
            var d = new Dictionary<string, object> { { "b", 1L }, { "a", new Dictionary<string, object> { { "z", 1L }, { "Z", 2L } } }, { "_", null } };
            Check.Equal("{\"_\":null,\"a\":{\"Z\":2,\"z\":1},\"b\":1}", Json.WriteCanonical(d), "ordinal key order");
        }
    }
}
