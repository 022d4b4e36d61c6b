// Small JSON reader/writer for the wire protocol (PROTOCOL.md §1, §6.4).
// Why hand-written: JsonUtility cannot read dynamic payloads and third-party JSON DLLs in a
// package conflict with the user's own copies.
// Value model: object -> Dictionary<string, object>, array -> List<object>, string -> string,
// integer literal -> long (double when it does not fit), other numbers -> double,
// true/false -> bool, null -> null.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace VibeSync.Bridge.Core
{
    /// <summary>Malformed JSON. <see cref="Offset"/> is the byte offset of the problem.</summary>
    public sealed class JsonException : Exception
    {
        public readonly long Offset;
        public JsonException(string message, long offset)
            : base(offset >= 0 ? message + " (at byte " + offset + ")" : message)
        {
            Offset = offset;
        }
    }

    public static class Json
    {
        public const int MaxDepth = 128;
        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        // ------------------------------------------------------------------ reading

        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            return Parse(StrictUtf8.GetBytes(text));
        }

        public static object Parse(byte[] utf8)
        {
            if (utf8 == null) throw new ArgumentNullException("utf8");
            return Parse(utf8, 0, utf8.Length);
        }

        /// <summary>Parses exactly one JSON value spanning utf8[offset, offset+count).</summary>
        public static object Parse(byte[] utf8, int offset, int count)
        {
            var r = new Reader(utf8, offset, offset + count);
            r.SkipWs();
            if (r.Pos >= r.End) throw r.Error("empty input: expected a JSON value");
            object v = r.ReadValue(0);
            r.SkipWs();
            if (r.Pos < r.End) throw r.Error("unexpected data after the JSON value");
            return v;
        }

        /// <summary>Parses a JSON object; throws JsonException when the text is not an object.</summary>
        public static Dictionary<string, object> ParseObject(byte[] utf8, int offset, int count)
        {
            var v = Parse(utf8, offset, count);
            var d = v as Dictionary<string, object>;
            if (d == null) throw new JsonException("expected a JSON object, found " + TypeName(v), offset);
            return d;
        }

        public static string TypeName(object v)
        {
            if (v == null) return "null";
            if (v is string) return "string";
            if (v is bool) return "boolean";
            if (v is long || v is double || v is int) return "number";
            if (v is Dictionary<string, object>) return "object";
            if (v is List<object>) return "array";
            return v.GetType().Name;
        }

        sealed class Reader
        {
            readonly byte[] b;
            readonly int start;
            public int Pos;
            public readonly int End;

            public Reader(byte[] bytes, int pos, int end)
            {
                if (pos < 0 || end > bytes.Length || pos > end) throw new ArgumentOutOfRangeException("offset/count");
                b = bytes; start = pos; Pos = pos; End = end;
            }

            public JsonException Error(string msg) { return new JsonException(msg, Pos - start); }
            JsonException ErrorAt(string msg, int at) { return new JsonException(msg, at - start); }

            public void SkipWs()
            {
                while (Pos < End)
                {
                    byte c = b[Pos];
                    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') Pos++; else break;
                }
            }

            public object ReadValue(int depth)
            {
                if (depth > MaxDepth) throw Error("nesting deeper than " + MaxDepth + " levels");
                if (Pos >= End) throw Error("unexpected end of input: expected a value");
                byte c = b[Pos];
                switch (c)
                {
                    case (byte)'{': return ReadObject(depth);
                    case (byte)'[': return ReadArray(depth);
                    case (byte)'"': return ReadString();
                    case (byte)'t': Literal("true"); return true;
                    case (byte)'f': Literal("false"); return false;
                    case (byte)'n': Literal("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                        throw Error("unexpected character " + Describe(c) + ": expected a value");
                }
            }

            static string Describe(byte c)
            {
                if (c >= 0x20 && c < 0x7f) return "'" + (char)c + "'";
                return "byte 0x" + c.ToString("x2");
            }

            void Literal(string word)
            {
                for (int i = 0; i < word.Length; i++)
                {
                    if (Pos + i >= End || b[Pos + i] != word[i])
                        throw Error("invalid literal: expected '" + word + "'");
                }
                Pos += word.Length;
            }

            Dictionary<string, object> ReadObject(int depth)
            {
                var d = new Dictionary<string, object>();
                Pos++; // {
                SkipWs();
                if (Pos < End && b[Pos] == '}') { Pos++; return d; }
                while (true)
                {
                    SkipWs();
                    if (Pos >= End) throw Error("unexpected end of input inside an object");
                    if (b[Pos] != '"') throw Error("expected a string key in object, found " + Describe(b[Pos]));
                    int keyAt = Pos;
                    string key = ReadString();
                    SkipWs();
                    if (Pos >= End || b[Pos] != ':') throw Error("expected ':' after object key \"" + key + "\"");
                    Pos++;
                    SkipWs();
                    object v = ReadValue(depth + 1);
                    if (d.ContainsKey(key)) throw ErrorAt("duplicate key \"" + key + "\" in object", keyAt);
                    d.Add(key, v);
                    SkipWs();
                    if (Pos >= End) throw Error("unexpected end of input inside an object: expected ',' or '}'");
                    if (b[Pos] == ',') { Pos++; continue; }
                    if (b[Pos] == '}') { Pos++; return d; }
                    throw Error("expected ',' or '}' in object, found " + Describe(b[Pos]));
                }
            }

            List<object> ReadArray(int depth)
            {
                var l = new List<object>();
                Pos++; // [
                SkipWs();
                if (Pos < End && b[Pos] == ']') { Pos++; return l; }
                while (true)
                {
                    SkipWs();
                    l.Add(ReadValue(depth + 1));
                    SkipWs();
                    if (Pos >= End) throw Error("unexpected end of input inside an array: expected ',' or ']'");
                    if (b[Pos] == ',') { Pos++; continue; }
                    if (b[Pos] == ']') { Pos++; return l; }
                    throw Error("expected ',' or ']' in array, found " + Describe(b[Pos]));
                }
            }

            string ReadString()
            {
                Pos++; // opening quote
                StringBuilder sb = null;
                int runStart = Pos;
                while (true)
                {
                    if (Pos >= End) throw Error("unterminated string");
                    byte c = b[Pos];
                    if (c == '"')
                    {
                        string tail = Decode(runStart, Pos);
                        Pos++;
                        if (sb == null) return tail;
                        sb.Append(tail);
                        return sb.ToString();
                    }
                    if (c < 0x20) throw Error("control character " + Describe(c) + " in string must be escaped");
                    if (c != '\\') { Pos++; continue; }
                    if (sb == null) sb = new StringBuilder();
                    sb.Append(Decode(runStart, Pos));
                    Pos++;
                    if (Pos >= End) throw Error("unterminated escape sequence");
                    byte e = b[Pos];
                    switch (e)
                    {
                        case (byte)'"': sb.Append('"'); break;
                        case (byte)'\\': sb.Append('\\'); break;
                        case (byte)'/': sb.Append('/'); break;
                        case (byte)'b': sb.Append('\b'); break;
                        case (byte)'f': sb.Append('\f'); break;
                        case (byte)'n': sb.Append('\n'); break;
                        case (byte)'r': sb.Append('\r'); break;
                        case (byte)'t': sb.Append('\t'); break;
                        case (byte)'u':
                            {
                                int cp = Hex4(Pos + 1);
                                Pos += 4;
                                if (cp >= 0xD800 && cp <= 0xDBFF)
                                {
                                    if (Pos + 6 < End && b[Pos + 1] == '\\' && b[Pos + 2] == 'u')
                                    {
                                        int lo = Hex4(Pos + 3);
                                        if (lo < 0xDC00 || lo > 0xDFFF) throw Error("invalid low surrogate in \\u escape");
                                        sb.Append((char)cp); sb.Append((char)lo);
                                        Pos += 6;
                                    }
                                    else throw Error("unpaired high surrogate in \\u escape");
                                }
                                else if (cp >= 0xDC00 && cp <= 0xDFFF) throw Error("unpaired low surrogate in \\u escape");
                                else sb.Append((char)cp);
                                break;
                            }
                        default: throw Error("invalid escape '\\" + (char)e + "'");
                    }
                    Pos++;
                    runStart = Pos;
                }
            }

            int Hex4(int at)
            {
                if (at + 4 > End) throw ErrorAt("truncated \\u escape: expected 4 hex digits", at);
                int v = 0;
                for (int i = 0; i < 4; i++)
                {
                    int c = b[at + i], d;
                    if (c >= '0' && c <= '9') d = c - '0';
                    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
                    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
                    else throw ErrorAt("invalid hex digit in \\u escape", at + i);
                    v = v * 16 + d;
                }
                return v;
            }

            string Decode(int from, int to)
            {
                if (to == from) return "";
                try { return StrictUtf8.GetString(b, from, to - from); }
                catch (DecoderFallbackException)
                {
                    throw ErrorAt("string is not valid UTF-8", from);
                }
            }

            object ReadNumber()
            {
                int s = Pos;
                bool isFloat = false;
                if (b[Pos] == '-') Pos++;
                if (Pos >= End) throw Error("invalid number: '-' without digits");
                if (b[Pos] == '0') Pos++;
                else if (b[Pos] >= '1' && b[Pos] <= '9') { while (Pos < End && IsDigit(b[Pos])) Pos++; }
                else throw Error("invalid number: expected a digit");
                if (Pos < End && b[Pos] == '.')
                {
                    isFloat = true; Pos++;
                    if (Pos >= End || !IsDigit(b[Pos])) throw Error("invalid number: expected a digit after '.'");
                    while (Pos < End && IsDigit(b[Pos])) Pos++;
                }
                if (Pos < End && (b[Pos] == 'e' || b[Pos] == 'E'))
                {
                    isFloat = true; Pos++;
                    if (Pos < End && (b[Pos] == '+' || b[Pos] == '-')) Pos++;
                    if (Pos >= End || !IsDigit(b[Pos])) throw Error("invalid number: expected a digit in the exponent");
                    while (Pos < End && IsDigit(b[Pos])) Pos++;
                }
                string text = Encoding.ASCII.GetString(b, s, Pos - s);
                if (!isFloat)
                {
                    long l;
                    if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l)) return l;
                }
                double d;
                try { d = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture); }
                catch (OverflowException) { throw ErrorAt("number " + text + " is out of range", s); }
                if (double.IsInfinity(d) || double.IsNaN(d)) throw ErrorAt("number " + text + " is out of range", s);
                return d;
            }

            static bool IsDigit(byte c) { return c >= '0' && c <= '9'; }
        }

        // ------------------------------------------------------------------ writing

        /// <summary>
        /// How <see cref="WriteValue"/> writes: key order, numbers, and members written in a form
        /// of their own. The one JSON writer serves the wire (<see cref="Write"/>), sorted keys
        /// (<see cref="WriteCanonical"/>) and the state hash's canonical form (StateHash).
        /// </summary>
        public class WriteStyle
        {
            public readonly bool SortKeys;
            public WriteStyle(bool sortKeys) { SortKeys = sortKeys; }

            /// <summary>Writes a number (long, int, uint, ulong, double or float).</summary>
            public virtual void WriteNumber(StringBuilder sb, object v)
            {
                if (v is long) sb.Append(((long)v).ToString(CultureInfo.InvariantCulture));
                else if (v is int) sb.Append(((int)v).ToString(CultureInfo.InvariantCulture));
                else if (v is uint) sb.Append(((uint)v).ToString(CultureInfo.InvariantCulture));
                else if (v is ulong) sb.Append(((ulong)v).ToString(CultureInfo.InvariantCulture));
                else if (v is double) WriteDouble(sb, (double)v);
                else WriteDouble(sb, (double)(float)v);
            }

            /// <summary>Writes the value of member <paramref name="key"/> itself and returns true, or returns false to have it written as usual.</summary>
            public virtual bool WriteMember(StringBuilder sb, string key, object value) { return false; }
        }

        static readonly WriteStyle Plain = new WriteStyle(false), Sorted = new WriteStyle(true);

        /// <summary>Compact JSON text (no spaces) with the escaping rules of PROTOCOL §6.4.</summary>
        public static string Write(object value)
        {
            var sb = new StringBuilder();
            WriteValue(sb, value, Plain, 0);
            return sb.ToString();
        }

        public static byte[] WriteUtf8(object value) { return StrictUtf8.GetBytes(Write(value)); }

        /// <summary>Canonical form: object keys sorted (ordinal), compact. Numbers written as given.</summary>
        public static string WriteCanonical(object value)
        {
            var sb = new StringBuilder();
            WriteValue(sb, value, Sorted, 0);
            return sb.ToString();
        }

        /// <summary>Writes <paramref name="v"/> compactly in <paramref name="style"/>.</summary>
        public static void WriteValue(StringBuilder sb, object v, WriteStyle style, int depth)
        {
            if (depth > MaxDepth) throw new ArgumentException("JSON value nested deeper than " + MaxDepth + " levels");
            if (v == null) { sb.Append("null"); return; }
            var s = v as string;
            if (s != null) { WriteString(sb, s); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is long || v is int || v is uint || v is ulong || v is double || v is float) { style.WriteNumber(sb, v); return; }
            var dict = v as IDictionary<string, object>;
            if (dict != null)
            {
                sb.Append('{');
                IEnumerable<string> keys = dict.Keys;
                if (style.SortKeys)
                {
                    var list = new List<string>(dict.Keys);
                    list.Sort(string.CompareOrdinal);
                    keys = list;
                }
                bool first = true;
                foreach (var k in keys)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, k);
                    sb.Append(':');
                    if (!style.WriteMember(sb, k, dict[k])) WriteValue(sb, dict[k], style, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var seq = v as IEnumerable;
            if (seq != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (var item in seq)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteValue(sb, item, style, depth + 1);
                }
                sb.Append(']');
                return;
            }
            throw new ArgumentException("cannot write a value of type " + v.GetType().FullName + " as JSON");
        }

        static void WriteDouble(StringBuilder sb, double d)
        {
            if (double.IsNaN(d) || double.IsInfinity(d))
                throw new ArgumentException("JSON cannot carry NaN or Infinity (PROTOCOL §2: numbers must be finite)");
            string t = d.ToString("R", CultureInfo.InvariantCulture);
            sb.Append(t);
            // Keep a float a float when read back ("1" would come back as an integer).
            if (t.IndexOf('.') < 0 && t.IndexOf('E') < 0 && t.IndexOf('e') < 0) sb.Append(".0");
        }

        /// <summary>Escapes only '"', '\' and control characters (\b \f \n \r \t, others \u00xx).</summary>
        public static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u00").Append(((int)c).ToString("x2"));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }

        // ------------------------------------------------------------------ typed access helpers

        /// <summary>Structural equality (numbers compared by value, long vs double allowed).</summary>
        public static bool DeepEquals(object a, object b)
        {
            if (a == null || b == null) return a == null && b == null;
            if (IsNumber(a) && IsNumber(b))
            {
                if (a is long && b is long) return (long)a == (long)b;
                return ToDouble(a) == ToDouble(b);
            }
            var da = a as Dictionary<string, object>;
            var db = b as Dictionary<string, object>;
            if (da != null || db != null)
            {
                if (da == null || db == null || da.Count != db.Count) return false;
                foreach (var kv in da)
                {
                    object o;
                    if (!db.TryGetValue(kv.Key, out o) || !DeepEquals(kv.Value, o)) return false;
                }
                return true;
            }
            var la = a as List<object>;
            var lb = b as List<object>;
            if (la != null || lb != null)
            {
                if (la == null || lb == null || la.Count != lb.Count) return false;
                for (int i = 0; i < la.Count; i++) if (!DeepEquals(la[i], lb[i])) return false;
                return true;
            }
            return a.Equals(b);
        }

        public static bool IsNumber(object v) { return v is long || v is double || v is int || v is float; }

        public static double ToDouble(object v)
        {
            if (v is double) return (double)v;
            if (v is long) return (long)v;
            if (v is int) return (int)v;
            if (v is float) return (float)v;
            throw new InvalidCastException("expected a number, found " + TypeName(v));
        }
    }
}
