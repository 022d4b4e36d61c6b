// Background-thread TCP client for the daemon (PROTOCOL.md §1, §3).
//
// Threads: one connection thread (connect, hello, read frames) and, while connected, one writer
// thread draining the outgoing queue. The caller's thread (Unity's main thread) never touches the
// socket: it calls Send (enqueue, returns at once) and Pump (drains incoming events within a time
// budget). Network problems never throw into the caller; they become Disconnected events and a
// reconnect after a backoff.
//
// Backoff: 0, 1, 3, 5, 10, 30 s, then every 30 s: quick retries while a daemon
// restarts, then a slow poll that costs nothing while none runs. The attempt
// counter resets after a welcome, so a dropped connection is retried immediately once.
// Queues are bounded: a full outgoing queue makes Send return false; a full incoming queue makes the
// reader wait (TCP backpressure reaches the daemon) instead of growing without limit.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Threading;

namespace VibeSync.Bridge.Core
{
    public enum ConnectionState
    {
        Stopped,            // not started, or Stop() called
        Connecting,         // TCP connect + hello/welcome in progress
        Connected,          // welcome received
        WaitingToReconnect, // backoff delay before the next attempt
    }

    public enum ClientEventKind { Connected, Disconnected, Frame }

    public sealed class ClientEvent
    {
        public ClientEventKind Kind;
        public Frame Frame;                           // Kind == Frame
        public Dictionary<string, object> Welcome;    // Kind == Connected
        public string Reason;                         // Kind == Disconnected
    }

    public sealed class BridgeClientOptions
    {
        public string Host = "127.0.0.1";
        public int Port = 47800;
        public string TokenFile;          // null: <data dir>/token (DataDir)
        /// <summary>
        /// The project to join; null: omitted from `hello`, the daemon assigns one (PROTOCOL §3, §6.8)
        /// and the client keeps using the assigned id on reconnects (see AssignedProjectId).
        /// </summary>
        public volatile string ProjectId;
        public string Editor = ClientKind.Unity;
        public string EditorVersion = "";
        public string ClientId = Msg.NewUuid();
        public double UnitScale = 1.0;
        public Func<long> LastSeq;        // called on the connection thread for each hello; must be thread-safe
        public TimeSpan[] Backoff = DefaultBackoff;
        public TimeSpan ConnectTimeout = TimeSpan.FromSeconds(3);
        public TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(5);
        public int MaxIncoming = 4096;    // events
        public int MaxOutgoing = 4096;    // frames
        public int MaxFrameBytes = Frame.DefaultMaxFrameBytes;
        public Action Wake;               // called on a background thread after an event is queued

        public static readonly TimeSpan[] DefaultBackoff =
        {
            TimeSpan.Zero, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(5),
            TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30),
        };
    }

    public sealed class BridgeClient : IDisposable
    {
        readonly BridgeClientOptions opt;
        readonly object stateLock = new object();
        readonly object inLock = new object();
        readonly object outLock = new object();
        readonly Queue<ClientEvent> incoming = new Queue<ClientEvent>();
        readonly Queue<byte[]> outgoing = new Queue<byte[]>();
        readonly ManualResetEvent stopSignal = new ManualResetEvent(false);

        Thread connThread;
        volatile bool stopping;
        volatile ConnectionState state = ConnectionState.Stopped;
        TcpClient tcp;              // guarded by stateLock
        bool sessionOpen;           // guarded by outLock: writer may run
        bool writing;               // guarded by outLock: a dequeued frame is being written
        string lastError, daemonUnreachable, handshakeErrorCode, handshakeErrorMessage;
        string sessionId;
        int attempt;
        long connectAttempts, connections;
        DateTime nextAttemptUtc;

        /// <summary>The project id the daemon assigned when hello omitted it (null otherwise); persist it.</summary>
        public volatile string AssignedProjectId;

        public BridgeClient(BridgeClientOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (options.ProjectId != null && !Msg.IsValidProjectId(options.ProjectId))
                throw new ArgumentException("project id \"" + options.ProjectId + "\" is invalid: use 1-128 chars of A-Z a-z 0-9 . _ - not starting with '.'");
            if (options.Port <= 0 || options.Port > 65535) throw new ArgumentException("port " + options.Port + " is out of range 1-65535");
            if (options.Backoff == null || options.Backoff.Length == 0) throw new ArgumentException("backoff schedule must have at least one delay");
            opt = options;
        }

        public BridgeClientOptions Options { get { return opt; } }
        public ConnectionState State { get { return state; } }
        public bool IsConnected { get { return state == ConnectionState.Connected; } }
        public string LastError { get { lock (stateLock) return lastError; } }
        /// <summary>
        /// Why the daemon looks not running (its token file is missing or unreadable, or nothing
        /// accepts the TCP connection), or null once a connection was accepted.
        /// </summary>
        public string DaemonUnreachable { get { lock (stateLock) return daemonUnreachable; } }
        /// <summary>The `error` the daemon refused the last handshake with (code, message); null after a welcome.</summary>
        public string HandshakeErrorCode { get { lock (stateLock) return handshakeErrorCode; } }
        public string HandshakeErrorMessage { get { lock (stateLock) return handshakeErrorMessage; } }
        public string SessionId { get { lock (stateLock) return sessionId; } }
        /// <summary>Number of TCP connect attempts so far (for status and tests).</summary>
        public long ConnectAttempts { get { return Interlocked.Read(ref connectAttempts); } }
        /// <summary>Number of successful handshakes so far.</summary>
        public long Connections { get { return Interlocked.Read(ref connections); } }
        public DateTime NextAttemptUtc { get { lock (stateLock) return nextAttemptUtc; } }
        public int IncomingCount { get { lock (inLock) return incoming.Count; } }
        public int OutgoingCount { get { lock (outLock) return outgoing.Count; } }

        /// <summary>Delay before attempt number <paramref name="attempt"/> (0-based), the last delay repeating.</summary>
        public static TimeSpan BackoffDelay(TimeSpan[] schedule, int attempt)
        {
            if (attempt < 0) attempt = 0;
            return schedule[Math.Min(attempt, schedule.Length - 1)];
        }

        public void Start()
        {
            lock (stateLock)
            {
                if (connThread != null) return;
                stopping = false;
                stopSignal.Reset();
                attempt = 0;
                state = ConnectionState.Connecting;
                connThread = new Thread(ConnectionLoop) { IsBackground = true, Name = "VibeSync connection" };
                connThread.Start();
            }
        }

        /// <summary>
        /// Closes the socket and stops the threads synchronously (before a domain reload the
        /// socket must not outlive the assembly). Safe to call more than once.
        /// </summary>
        public void Stop(int joinMillis = 2000)
        {
            Thread t;
            lock (stateLock)
            {
                stopping = true;
                stopSignal.Set();
                CloseSocketLocked();
                t = connThread;
                connThread = null;
            }
            lock (outLock) { sessionOpen = false; outgoing.Clear(); Monitor.PulseAll(outLock); }
            lock (inLock) Monitor.PulseAll(inLock);
            if (t != null && t != Thread.CurrentThread) t.Join(joinMillis);
            state = ConnectionState.Stopped;
        }

        public void Dispose() { Stop(); }

        /// <summary>Queues a message. False when not connected or the outgoing queue is full (never blocks).</summary>
        public bool Send(IDictionary<string, object> message, byte[] attachment = null)
        {
            byte[] frame;
            try { frame = Frame.EncodeJson(System.Text.Encoding.UTF8.GetBytes(Json.Write(message)), attachment, opt.MaxFrameBytes); }
            catch (ArgumentException e) { SetError("cannot send " + TypeOf(message) + ": " + e.Message); return false; }
            lock (outLock)
            {
                if (!sessionOpen || state != ConnectionState.Connected) return false;
                if (outgoing.Count >= opt.MaxOutgoing)
                {
                    SetError("outgoing queue full (" + opt.MaxOutgoing + " frames): the daemon is not reading; message " + TypeOf(message) + " dropped");
                    return false;
                }
                outgoing.Enqueue(frame);
                Monitor.Pulse(outLock);
            }
            return true;
        }

        /// <summary>
        /// Waits (bounded) until every queued frame was written to the socket, e.g. before a
        /// planned shutdown. Returns false on timeout or when the connection is gone.
        /// </summary>
        public bool Flush(TimeSpan timeout)
        {
            var end = DateTime.UtcNow + timeout;
            lock (outLock)
            {
                while (sessionOpen && (outgoing.Count > 0 || writing))
                {
                    var left = end - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero) return false;
                    Monitor.Wait(outLock, left);
                }
                return outgoing.Count == 0 && !writing;
            }
        }

        static string TypeOf(IDictionary<string, object> m)
        {
            object t;
            return m != null && m.TryGetValue("type", out t) ? "`" + t + "`" : "message";
        }

        /// <summary>
        /// Drains incoming events on the caller's thread until the queue is empty or the budget is
        /// spent (at least one event is handled per call). Returns the number handled.
        /// </summary>
        public int Pump(Action<ClientEvent> handler, TimeSpan budget)
        {
            var sw = Stopwatch.StartNew();
            int n = 0;
            while (true)
            {
                ClientEvent e;
                lock (inLock)
                {
                    if (incoming.Count == 0) break;
                    e = incoming.Dequeue();
                    Monitor.PulseAll(inLock); // a reader may be waiting for room
                }
                n++;
                handler(e);
                if (sw.Elapsed >= budget) break;
            }
            return n;
        }

        /// <summary>Blocks until an event is queued or the timeout passes (for console hosts and tests).</summary>
        public bool WaitForEvent(TimeSpan timeout)
        {
            lock (inLock)
            {
                if (incoming.Count > 0) return true;
                Monitor.Wait(inLock, timeout);
                return incoming.Count > 0;
            }
        }

        // ------------------------------------------------------------------ background side

        void SetError(string e) { lock (stateLock) lastError = e; }
        void SetUnreachable(string why) { lock (stateLock) daemonUnreachable = why; }

        void Enqueue(ClientEvent e, bool control)
        {
            lock (inLock)
            {
                // Frames wait for room (backpressure); connect/disconnect notices are never dropped.
                while (!control && incoming.Count >= opt.MaxIncoming && !stopping) Monitor.Wait(inLock, 200);
                if (stopping && !control) return;
                incoming.Enqueue(e);
                Monitor.PulseAll(inLock);
            }
            var wake = opt.Wake;
            if (wake != null)
            {
                try { wake(); } catch (Exception) { /* a wake hook must never kill the connection thread */ }
            }
        }

        void CloseSocketLocked()
        {
            if (tcp == null) return;
            try { tcp.Client.Shutdown(SocketShutdown.Both); } catch (Exception) { }
            try { tcp.Close(); } catch (Exception) { }
            tcp = null;
        }

        void ConnectionLoop()
        {
            while (!stopping)
            {
                TimeSpan delay = BackoffDelay(opt.Backoff, attempt);
                if (delay > TimeSpan.Zero)
                {
                    lock (stateLock) nextAttemptUtc = DateTime.UtcNow + delay;
                    state = ConnectionState.WaitingToReconnect;
                    if (stopSignal.WaitOne(delay)) break;
                }
                if (stopping) break;
                state = ConnectionState.Connecting;
                bool welcomed = false;
                string reason;
                try
                {
                    welcomed = RunSession(out reason);
                }
                catch (Exception e) // last line of defence: the thread must survive anything
                {
                    reason = "unexpected client error: " + e.GetType().Name + ": " + e.Message;
                }
                lock (stateLock)
                {
                    CloseSocketLocked();
                    if (!stopping && reason != null) lastError = reason;
                    sessionId = null;
                }
                if (!stopping) state = ConnectionState.Connecting;
                // After a working session dropped, reconnect at once; otherwise back off further.
                attempt = welcomed ? 0 : attempt + 1;
                if (welcomed && !stopping) Enqueue(new ClientEvent { Kind = ClientEventKind.Disconnected, Reason = reason }, true);
            }
            state = ConnectionState.Stopped;
        }

        /// <summary>One connection: connect, handshake, read until it ends. Returns true if welcomed.</summary>
        bool RunSession(out string reason)
        {
            reason = null;
            string token;
            try { token = DataDir.ReadToken(opt.TokenFile); }
            catch (IOException e) { reason = e.Message; SetUnreachable(reason); return false; }

            Interlocked.Increment(ref connectAttempts);
            var client = new TcpClient();
            lock (stateLock)
            {
                if (stopping) { client.Close(); return false; }
                tcp = client;
            }
            try
            {
                IAsyncResult ar = client.BeginConnect(opt.Host, opt.Port, null, null);
                int which = WaitHandle.WaitAny(new[] { ar.AsyncWaitHandle, stopSignal }, opt.ConnectTimeout);
                if (which == 1) return false;
                if (which == WaitHandle.WaitTimeout)
                {
                    reason = "connecting to " + opt.Host + ":" + opt.Port + " timed out after " + opt.ConnectTimeout.TotalSeconds + " s";
                    SetUnreachable(reason);
                    return false;
                }
                client.EndConnect(ar);
            }
            catch (Exception e) when (e is SocketException || e is IOException || e is ObjectDisposedException || e is InvalidOperationException)
            {
                reason = "cannot connect to the daemon at " + opt.Host + ":" + opt.Port + " (" + e.Message + "): is `vibesync serve` running?";
                SetUnreachable(reason);
                return false;
            }
            SetUnreachable(null); // something listens there

            client.NoDelay = true;
            NetworkStream stream;
            try
            {
                stream = client.GetStream();
                client.ReceiveTimeout = (int)opt.HandshakeTimeout.TotalMilliseconds;
                long lastSeq = 0;
                if (opt.LastSeq != null) lastSeq = opt.LastSeq();
                var hello = Msg.Hello(opt.ProjectId, opt.Editor, opt.EditorVersion, opt.ClientId, token, opt.UnitScale, lastSeq);
                byte[] helloFrame = Frame.Encode(hello);
                stream.Write(helloFrame, 0, helloFrame.Length);
            }
            catch (Exception e) when (e is SocketException || e is IOException || e is ObjectDisposedException || e is InvalidOperationException)
            {
                reason = "sending hello to " + opt.Host + ":" + opt.Port + " failed: " + e.Message;
                return false;
            }

            var decoder = new FrameDecoder(opt.MaxFrameBytes);
            var buf = new byte[64 * 1024];
            bool welcomed = false;
            string sessionReason = null;
            Thread writer = null;
            try
            {
                while (!stopping && sessionReason == null)
                {
                    int n;
                    try { n = stream.Read(buf, 0, buf.Length); }
                    catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
                    {
                        if (!welcomed && e.InnerException is SocketException && ((SocketException)e.InnerException).SocketErrorCode == SocketError.TimedOut)
                            sessionReason = "no welcome from the daemon within " + opt.HandshakeTimeout.TotalSeconds + " s";
                        else if (!welcomed && e is IOException && e.InnerException is SocketException && ((SocketException)e.InnerException).SocketErrorCode == SocketError.WouldBlock)
                            sessionReason = "no welcome from the daemon within " + opt.HandshakeTimeout.TotalSeconds + " s";
                        else
                            sessionReason = "connection lost: " + e.Message;
                        break;
                    }
                    if (n == 0) { sessionReason = welcomed ? "daemon closed the connection" : "daemon closed the connection during the handshake"; break; }
                    decoder.Feed(buf, 0, n, f =>
                    {
                        if (sessionReason != null) return;
                        if (!welcomed)
                        {
                            if (f.Type == MessageType.Welcome)
                            {
                                welcomed = true;
                                try { client.ReceiveTimeout = 0; } catch (Exception) { }
                                lock (stateLock)
                                {
                                    sessionId = f.Message.ContainsKey("session_id") ? f.Message["session_id"] as string : null;
                                    lastError = null;
                                    handshakeErrorCode = handshakeErrorMessage = null;
                                }
                                // Zero-config pairing: keep the project the daemon assigned for later hellos.
                                object pid;
                                if (f.Message.TryGetValue("project_id", out pid) && pid is string && Msg.IsValidProjectId((string)pid))
                                {
                                    if (opt.ProjectId == null) AssignedProjectId = (string)pid;
                                    opt.ProjectId = (string)pid;
                                }
                                Interlocked.Increment(ref connections);
                                lock (outLock) { outgoing.Clear(); sessionOpen = true; }
                                state = ConnectionState.Connected;
                                writer = new Thread(() => WriterLoop(stream)) { IsBackground = true, Name = "VibeSync writer" };
                                writer.Start();
                                Enqueue(new ClientEvent { Kind = ClientEventKind.Connected, Welcome = f.Message }, true);
                            }
                            else if (f.Type == MessageType.Error)
                            {
                                object code, message;
                                f.Message.TryGetValue("code", out code);
                                f.Message.TryGetValue("message", out message);
                                sessionReason = "daemon refused the handshake: " + code + ": " + message + HandshakeHint(code as string);
                                lock (stateLock)
                                {
                                    handshakeErrorCode = code as string ?? "?";
                                    handshakeErrorMessage = (message as string ?? "") + HandshakeHint(code as string);
                                }
                            }
                            else sessionReason = "daemon sent `" + f.Type + "` before `welcome`";
                            return;
                        }
                        Enqueue(new ClientEvent { Kind = ClientEventKind.Frame, Frame = f }, false);
                    }, err =>
                    {
                        if (err.Fatal) sessionReason = "daemon sent a malformed frame: " + err;
                        else if (welcomed)
                        {
                            // Surface it as a synthetic error frame so the engine logs it with the rest.
                            var m = new Dictionary<string, object> { { "type", MessageType.Error }, { "code", err.Code }, { "message", "from daemon: " + err.Message } };
                            Enqueue(new ClientEvent { Kind = ClientEventKind.Frame, Frame = new Frame(m, null) }, false);
                        }
                        else sessionReason = "daemon sent a bad first frame: " + err;
                    });
                }
            }
            finally
            {
                lock (outLock) { sessionOpen = false; outgoing.Clear(); Monitor.PulseAll(outLock); }
                lock (stateLock) CloseSocketLocked();
                if (writer != null) writer.Join(1000);
            }
            reason = stopping ? "stopped" : sessionReason;
            return welcomed;
        }

        static string HandshakeHint(string code)
        {
            switch (code)
            {
                case ErrorCode.AuthFailed: return " (the token does not match: check the token file in Project Settings > VibeSync points at the running daemon's data directory)";
                case ErrorCode.BadProjectId: return " (fix the project id in Project Settings > VibeSync)";
                case ErrorCode.ProtocolMismatch: return " (update the package or the daemon so both speak the same protocol)";
                default: return "";
            }
        }

        void WriterLoop(NetworkStream stream)
        {
            while (true)
            {
                byte[] frame;
                lock (outLock)
                {
                    while (sessionOpen && outgoing.Count == 0) Monitor.Wait(outLock);
                    if (!sessionOpen) return;
                    frame = outgoing.Dequeue();
                    writing = true;
                }
                try
                {
                    stream.Write(frame, 0, frame.Length);
                    lock (outLock) { writing = false; Monitor.PulseAll(outLock); }
                }
                catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException || e is InvalidOperationException)
                {
                    lock (outLock) { writing = false; Monitor.PulseAll(outLock); }
                    SetError("writing to the daemon failed: " + e.Message);
                    lock (stateLock) CloseSocketLocked(); // wakes the reader, which reconnects
                    return;
                }
            }
        }
    }
}
