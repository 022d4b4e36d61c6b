// A scriptable stand-in for the daemon's wire side, for tests of the client and the sync engine
// that need exact control over what arrives when (PROTOCOL §6: batches, results, errors).
// Speaks real frames over real TCP on 127.0.0.1:0. DaemonTests cover the real daemon.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public sealed class FakeDaemon : IDisposable
    {
        readonly TcpListener listener;
        readonly Thread acceptThread;
        readonly List<TcpClient> conns = new List<TcpClient>();
        readonly List<Frame> received = new List<Frame>();
        readonly object gate = new object();
        readonly HashSet<string> registered = new HashSet<string>();
        volatile bool stopped;
        long seq = 10;
        int connections;

        public readonly string Dir;
        public readonly string TokenFile;
        public readonly string Token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        public int Port { get { return ((IPEndPoint)listener.LocalEndpoint).Port; } }
        public int ConnectionCount { get { lock (gate) return connections; } }

        /// <summary>Reply to hello; default: welcome when the token matches, else AUTH_FAILED.</summary>
        public Func<Dictionary<string, object>, Dictionary<string, object>> OnHello;
        /// <summary>Reply to other requests; default: register -> all registered, change -> all queued.</summary>
        public Func<Frame, Dictionary<string, object>> OnRequest;
        public bool SilentHandshake; // never answer hello
        /// <summary>The daemon is down: a connection is closed as soon as it is accepted.</summary>
        public volatile bool Down;
        public bool SafeModeAtWelcome;
        /// <summary>
        /// Like the real daemon with no other editor connected: after acknowledging a `change`, send
        /// a `committed` batch_result naming its queued uuids (an editor sends a uuid's next change
        /// only after that, PROTOCOL §6.6). Off: tests send results themselves.
        /// </summary>
        public volatile bool Commits;

        public FakeDaemon()
        {
            Dir = Path.Combine(Path.GetTempPath(), "vsfake-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Dir);
            TokenFile = Path.Combine(Dir, "token");
            File.WriteAllText(TokenFile, Token + "\n");
            listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "fake daemon accept" };
            acceptThread.Start();
        }

        public long Seq { get { return Interlocked.Read(ref seq); } }
        public long NextSeq() { return Interlocked.Increment(ref seq); }

        void AcceptLoop()
        {
            while (!stopped)
            {
                TcpClient c;
                try { c = listener.AcceptTcpClient(); }
                catch (Exception) { return; }
                if (Down) { try { c.Close(); } catch (Exception) { } continue; }
                lock (gate) { conns.Add(c); connections++; }
                var t = new Thread(() => Serve(c)) { IsBackground = true, Name = "fake daemon conn" };
                t.Start();
            }
        }

        void Serve(TcpClient c)
        {
            var dec = new FrameDecoder();
            var buf = new byte[65536];
            bool welcomed = false;
            try
            {
                // Inside the try: a test may drop the connection (or stop) before this thread
                // starts, and a closed client's stream throws — never out of a thread, which
                // would end the whole test run.
                var stream = c.GetStream();
                while (!stopped)
                {
                    int n = stream.Read(buf, 0, buf.Length);
                    if (n == 0) break;
                    var frames = new List<Frame>();
                    dec.Feed(buf, 0, n, frames.Add, e => { });
                    foreach (var f in frames)
                    {
                        // A frame counts as received once it is answered: a test that waits for it
                        // and then sends something never gets ahead of the answer (as with the
                        // daemon, whose ack of a change precedes any batch_result naming it).
                        bool keep;
                        try { keep = Answer(c, f, ref welcomed); }
                        finally { lock (gate) { received.Add(f); Monitor.PulseAll(gate); } }
                        if (!keep) return;
                    }
                }
            }
            catch (Exception) { }
            finally
            {
                lock (gate) conns.Remove(c);
                try { c.Close(); } catch (Exception) { }
            }
        }

        /// <summary>Answers one frame; false when the connection is to be closed.</summary>
        bool Answer(TcpClient c, Frame f, ref bool welcomed)
        {
            if (!welcomed)
            {
                if (SilentHandshake) return true;
                var reply = OnHello != null ? OnHello(f.Message) : DefaultHello(f.Message);
                Write(c, reply, null);
                if ((string)reply["type"] != MessageType.Welcome) { c.Close(); return false; }
                welcomed = true;
                // The replay the daemon sends right after `welcome`, before it answers anything
                // (PROTOCOL §6.6), when a test set one up.
                List<Dictionary<string, object>> replay;
                lock (gate) { replay = welcomeReplay; welcomeReplay = null; }
                if (replay != null) foreach (var m in replay) Write(c, m, null);
                return true;
            }
            var r = OnRequest != null ? OnRequest(f) : DefaultReply(f);
            if (r != null) Write(c, r, null);
            if (r != null && Commits && f.Type == MessageType.Change && (string)r["type"] == MessageType.Ack)
            {
                var queued = new List<object>();
                foreach (Dictionary<string, object> res in (List<object>)r["results"])
                    if ((string)res["status"] == ItemStatus.Queued) queued.Add(res["uuid"]);
                if (queued.Count > 0)
                    Write(c, new Dictionary<string, object>
                    {
                        { "type", MessageType.BatchResult }, { "batch_id", Guid.NewGuid().ToString() }, { "seq", NextSeq() },
                        { "outcome", BatchOutcome.Committed }, { "uuids", queued },
                    }, null);
            }
            return true;
        }

        Dictionary<string, object> DefaultHello(Dictionary<string, object> hello)
        {
            object tok;
            hello.TryGetValue("token", out tok);
            if ((tok as string) != Token)
                return new Dictionary<string, object> { { "type", "error" }, { "code", ErrorCode.AuthFailed }, { "message", "token missing or wrong" } };
            return new Dictionary<string, object>
            {
                { "type", "welcome" }, { "session_id", Guid.NewGuid().ToString() }, { "daemon_version", "fake" }, { "protocol", 1L },
                { "seq", Seq }, { "safe_mode", SafeModeAtWelcome },
            };
        }

        public Dictionary<string, object> DefaultReply(Frame f)
        {
            var m = f.Message;
            object rid;
            m.TryGetValue("request_id", out rid);
            switch (f.Type)
            {
                case "register":
                    {
                        // Like the registry: new uuids are `registered`, known ones `unchanged`.
                        var results = new List<object>();
                        foreach (Dictionary<string, object> it in (List<object>)m["items"])
                        {
                            string u = (string)it["uuid"];
                            bool known;
                            lock (gate) { known = registered.Contains(u); registered.Add(u); }
                            results.Add(new Dictionary<string, object> { { "uuid", u }, { "status", known ? ItemStatus.Unchanged : ItemStatus.Registered } });
                        }
                        return new Dictionary<string, object> { { "type", "ack" }, { "request_id", rid }, { "seq", NextSeq() }, { "results", results } };
                    }
                case "change":
                    return Ack(rid, (List<object>)m["changes"], "uuid", ItemStatus.Queued);
                case "tombstone":
                    {
                        var results = new List<object>();
                        foreach (var u in (List<object>)m["uuids"])
                            results.Add(new Dictionary<string, object> { { "uuid", u }, { "status", ItemStatus.Tombstoned } });
                        return new Dictionary<string, object> { { "type", "ack" }, { "request_id", rid }, { "seq", NextSeq() }, { "results", results } };
                    }
                case "ping":
                    return new Dictionary<string, object> { { "type", "pong" }, { "request_id", rid }, { "seq", Seq } };
                default:
                    return null;
            }
        }

        public Dictionary<string, object> Ack(object rid, List<object> items, string key, string status)
        {
            var results = new List<object>();
            foreach (Dictionary<string, object> it in items)
                results.Add(new Dictionary<string, object> { { "uuid", it[key] }, { "status", status } });
            return new Dictionary<string, object> { { "type", "ack" }, { "request_id", rid }, { "seq", NextSeq() }, { "results", results } };
        }

        static void Write(TcpClient c, Dictionary<string, object> m, byte[] att)
        {
            var b = Frame.Encode(m, att);
            lock (c) c.GetStream().Write(b, 0, b.Length);
        }

        /// <summary>Sends to every welcomed connection.</summary>
        public void Broadcast(Dictionary<string, object> m, byte[] att = null)
        {
            List<TcpClient> all;
            lock (gate) all = new List<TcpClient>(conns);
            foreach (var c in all) { try { Write(c, m, att); } catch (Exception) { } }
        }

        /// <summary>Sends a fenced batch (§6.2) of changes.</summary>
        public string SendBatch(long batchSeq, string path, params Dictionary<string, object>[] changes)
        {
            string id = Guid.NewGuid().ToString();
            Broadcast(new Dictionary<string, object> { { "type", "batch_begin" }, { "batch_id", id }, { "seq", batchSeq }, { "path", path }, { "count", (long)changes.Length } });
            foreach (var ch in changes) Broadcast(new Dictionary<string, object> { { "type", "apply" }, { "batch_id", id }, { "change", ch } });
            Broadcast(new Dictionary<string, object> { { "type", "batch_end" }, { "batch_id", id }, { "seq", batchSeq } });
            return id;
        }

        List<Dictionary<string, object>> welcomeReplay;

        /// <summary>
        /// A `resync` batch sent on the next connection right after its `welcome`, before any
        /// request is answered — as the daemon sends a reconnecting editor's replay (§6.6).
        /// Returns its batch id.
        /// </summary>
        public string ReplayAtNextWelcome(long batchSeq, params Dictionary<string, object>[] changes)
        {
            string id = Guid.NewGuid().ToString();
            var frames = new List<Dictionary<string, object>>
            {
                new Dictionary<string, object> { { "type", "batch_begin" }, { "batch_id", id }, { "seq", batchSeq }, { "path", "resync" }, { "count", (long)changes.Length } },
            };
            foreach (var ch in changes) frames.Add(new Dictionary<string, object> { { "type", "apply" }, { "batch_id", id }, { "change", ch } });
            frames.Add(new Dictionary<string, object> { { "type", "batch_end" }, { "batch_id", id }, { "seq", batchSeq } });
            lock (gate) welcomeReplay = frames;
            return id;
        }

        /// <summary>Sends a fenced batch whose `apply` frames may carry attachments (a mesh-bearing change).</summary>
        /// <summary>The `resync` batch answering the request <paramref name="requestId"/>: its
        /// `batch_begin` and `batch_end` carry that request id (§6.6). Returns its batch id.</summary>
        public string SendResyncAnswer(string requestId, long batchSeq, params Dictionary<string, object>[] changes)
        {
            string id = Guid.NewGuid().ToString();
            Broadcast(new Dictionary<string, object> { { "type", "batch_begin" }, { "batch_id", id }, { "seq", batchSeq }, { "path", "resync" }, { "count", (long)changes.Length }, { "request_id", requestId } });
            foreach (var ch in changes) Broadcast(new Dictionary<string, object> { { "type", "apply" }, { "batch_id", id }, { "change", ch } });
            Broadcast(new Dictionary<string, object> { { "type", "batch_end" }, { "batch_id", id }, { "seq", batchSeq }, { "request_id", requestId } });
            return id;
        }

        public string SendBatchWithAttachments(long batchSeq, string path, params KeyValuePair<Dictionary<string, object>, byte[]>[] changes)
        {
            string id = Guid.NewGuid().ToString();
            Broadcast(new Dictionary<string, object> { { "type", "batch_begin" }, { "batch_id", id }, { "seq", batchSeq }, { "path", path }, { "count", (long)changes.Length } });
            foreach (var ch in changes) Broadcast(new Dictionary<string, object> { { "type", "apply" }, { "batch_id", id }, { "change", ch.Key } }, ch.Value);
            Broadcast(new Dictionary<string, object> { { "type", "batch_end" }, { "batch_id", id }, { "seq", batchSeq } });
            return id;
        }

        /// <summary>The registry holds this uuid already (a later `register` of it is `unchanged`).</summary>
        public void Knows(string uuid) { lock (gate) registered.Add(uuid); }

        /// <summary>`batch_result` (§6.4).</summary>
        public void SendResult(string batchId, long resultSeq, string outcome, IEnumerable<string> uuids, string errorCode = null)
        {
            var l = new List<object>();
            foreach (var u in uuids) l.Add(u);
            var m = new Dictionary<string, object> { { "type", "batch_result" }, { "batch_id", batchId }, { "seq", resultSeq }, { "outcome", outcome }, { "uuids", l } };
            if (errorCode != null) m["error_code"] = errorCode;
            Broadcast(m);
        }

        public void DropAll()
        {
            List<TcpClient> all;
            lock (gate) all = new List<TcpClient>(conns);
            foreach (var c in all) { try { c.Client.Shutdown(SocketShutdown.Both); c.Close(); } catch (Exception) { } }
        }

        public List<Frame> Received(string type)
        {
            var l = new List<Frame>();
            lock (gate) foreach (var f in received) if (f.Type == type) l.Add(f);
            return l;
        }

        public void ClearReceived() { lock (gate) received.Clear(); }

        /// <summary>The types of every frame received, in arrival order.</summary>
        public List<string> ReceivedTypes()
        {
            var l = new List<string>();
            lock (gate) foreach (var f in received) l.Add(f.Type);
            return l;
        }

        /// <summary>Waits until at least <paramref name="count"/> frames of the type arrived; pumps the engine meanwhile.</summary>
        public List<Frame> WaitFor(string type, int count, Action pump, double seconds = 5)
        {
            Check.Eventually(() => Received(type).Count >= count, TimeSpan.FromSeconds(seconds), count + " `" + type + "` frame(s) at the fake daemon", pump);
            return Received(type);
        }

        public void Dispose()
        {
            stopped = true;
            try { listener.Stop(); } catch (Exception) { }
            DropAll();
            try { Directory.Delete(Dir, true); } catch (Exception) { }
        }
    }
}
