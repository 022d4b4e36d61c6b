using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class ClientTests
    {
        internal static readonly TimeSpan[] FastBackoff = { TimeSpan.Zero, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(200) };

        internal static BridgeClient NewClient(int port, string tokenFile, Action<BridgeClientOptions> tweak = null)
        {
            var o = new BridgeClientOptions { Port = port, TokenFile = tokenFile, ProjectId = "demo", Backoff = FastBackoff, EditorVersion = "test" };
            if (tweak != null) tweak(o);
            return new BridgeClient(o);
        }

        /// <summary>A loopback port nothing listens on (bound, read, closed), and a token file for it.</summary>
        internal static int ClosedPort(out string tokenFile)
        {
            var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            int port = ((IPEndPoint)l.LocalEndpoint).Port;
            l.Stop();
            tokenFile = Path.GetTempFileName();
            File.WriteAllText(tokenFile, "abc");
            return port;
        }

        static List<ClientEvent> Drain(BridgeClient c)
        {
            var l = new List<ClientEvent>();
            c.Pump(l.Add, TimeSpan.FromSeconds(1));
            return l;
        }

        [VsTest]
        public static void DefaultBackoffIs0_1_3_5_10_30ThenEvery30()
        {
            var s = BridgeClientOptions.DefaultBackoff;
            var got = new List<string>();
            for (int i = 0; i < 9; i++) got.Add(BridgeClient.BackoffDelay(s, i).TotalSeconds.ToString());
            Check.Equal("0,1,3,5,10,30,30,30,30", string.Join(",", got.ToArray()), "schedule");
        }

        [VsTest]
        public static void HelloCarriesProtocolFieldsAndTrimmedToken()
        {
            using (var d = new FakeDaemon())
            {
                var c = NewClient(d.Port, d.TokenFile, o => { o.LastSeq = () => 42; o.ClientId = "client-1"; o.UnitScale = 1.0; });
                try
                {
                    c.Start();
                    Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "connected");
                    // The fake daemon records a frame once it has answered it: the client may
                    // read the welcome first (under load it did, and this read an empty list).
                    var hello = d.WaitFor("hello", 1, null)[0].Message;
                    Check.Equal(1L, (long)hello["protocol"], "protocol");
                    Check.Equal("demo", (string)hello["project_id"], "project_id");
                    Check.Equal("unity", (string)hello["editor"], "editor");
                    Check.Equal("test", (string)hello["editor_version"], "editor_version");
                    Check.Equal("client-1", (string)hello["client_id"], "client_id");
                    Check.Equal(d.Token, (string)hello["token"], "token read from file and trimmed");
                    Check.Equal(1.0, (double)hello["unit_scale"], "unit_scale");
                    Check.Equal(42L, (long)hello["last_seq"], "last_seq from the host");
                    // IsConnected flips on the socket thread; the event reaches Pump a moment later
                    // (under load, later than one 1 s pump): wait for it, failing at the deadline.
                    var ev = new List<ClientEvent>();
                    Check.Eventually(() => { c.Pump(ev.Add, TimeSpan.FromMilliseconds(200)); return ev.Count > 0; }, TimeSpan.FromSeconds(5), "Connected event");
                    Check.True(ev.Count == 1 && ev[0].Kind == ClientEventKind.Connected, "one Connected event");
                    Check.True(c.SessionId != null, "session id kept");
                    Check.True(c.Send(Msg.Ping("p1")), "send while connected");
                    Check.Eventually(() => { c.Pump(ev.Add, TimeSpan.FromSeconds(1)); return ev.Exists(e => e.Kind == ClientEventKind.Frame && e.Frame.Type == "pong"); }, TimeSpan.FromSeconds(5), "pong");
                }
                finally { c.Stop(); }
            }
        }

        [VsTest]
        public static void AuthFailureIsExplainedAndRetriedWithBackoff()
        {
            using (var d = new FakeDaemon())
            {
                string wrong = Path.Combine(d.Dir, "wrong-token");
                File.WriteAllText(wrong, "ffff\n");
                var c = NewClient(d.Port, wrong);
                try
                {
                    c.Start();
                    Check.Eventually(() => c.ConnectAttempts >= 3, TimeSpan.FromSeconds(5), "three attempts");
                    Check.True(!c.IsConnected, "never connected");
                    Check.Contains(c.LastError, "AUTH_FAILED", "error code in LastError");
                    Check.Contains(c.LastError, "token file", "hint what to fix");
                    Check.Equal(0, Drain(c).Count, "no Connected/Disconnected events for failed handshakes");
                }
                finally { c.Stop(); }
            }
        }

        [VsTest]
        public static void MissingTokenFileSaysWhatToDo()
        {
            var c = NewClient(1, "/nonexistent/vibesync/token");
            try
            {
                c.Start();
                Check.Eventually(() => c.LastError != null, TimeSpan.FromSeconds(5), "error reported");
                Check.Contains(c.LastError, "/nonexistent/vibesync/token", "names the file");
                Check.Contains(c.LastError, "vibesync serve", "says how to fix it");
                Check.Equal(0L, c.ConnectAttempts, "no TCP attempt without a token");
            }
            finally { c.Stop(); }
        }

        [VsTest]
        public static void RefusedConnectionBacksOffWithoutThrowing()
        {
            string tok;
            int port = ClosedPort(out tok);
            var c = NewClient(port, tok, o => o.Backoff = new[] { TimeSpan.Zero, TimeSpan.FromMilliseconds(300) });
            try
            {
                var start = DateTime.UtcNow;
                c.Start();
                Check.Eventually(() => c.ConnectAttempts >= 3, TimeSpan.FromSeconds(5), "attempts continue");
                var elapsed = DateTime.UtcNow - start;
                Check.True(elapsed >= TimeSpan.FromMilliseconds(550), "attempts are spaced by the backoff (took " + elapsed.TotalMilliseconds + " ms)");
                Check.Contains(c.LastError, "is `vibesync serve` running", "refusal explained");
                Check.True(c.State == ConnectionState.WaitingToReconnect || c.State == ConnectionState.Connecting, "state shows reconnecting");
                Check.True(!c.Send(Msg.Ping("p")), "Send returns false while disconnected");
            }
            finally { c.Stop(); File.Delete(tok); }
        }

        [VsTest]
        public static void HandshakeTimeoutIsReported()
        {
            using (var d = new FakeDaemon { SilentHandshake = true })
            {
                var c = NewClient(d.Port, d.TokenFile, o => o.HandshakeTimeout = TimeSpan.FromMilliseconds(300));
                try
                {
                    c.Start();
                    Check.Eventually(() => c.LastError != null && c.LastError.Contains("no welcome"), TimeSpan.FromSeconds(5), "handshake timeout reported, got: " + c.LastError);
                }
                finally { c.Stop(); }
            }
        }

        [VsTest]
        public static void ReconnectsAfterTheDaemonDropsTheConnection()
        {
            using (var d = new FakeDaemon())
            {
                var c = NewClient(d.Port, d.TokenFile);
                try
                {
                    c.Start();
                    Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "connected");
                    d.DropAll();
                    var ev = new List<ClientEvent>();
                    Check.Eventually(() => { c.Pump(ev.Add, TimeSpan.FromSeconds(1)); return ev.Count >= 3; }, TimeSpan.FromSeconds(5), "reconnected");
                    Check.True(c.IsConnected && c.Connections == 2, "connected again, second handshake");
                    var kinds = new List<string>();
                    foreach (var e in ev) kinds.Add(e.Kind.ToString());
                    Check.Equal("Connected,Disconnected,Connected", string.Join(",", kinds.ToArray()), "event order");
                    Check.True(ev[1].Reason != null && ev[1].Reason.Length > 0, "disconnect has a reason");
                }
                finally { c.Stop(); }
            }
        }

        [VsTest]
        public static void StopClosesSynchronously()
        {
            using (var d = new FakeDaemon())
            {
                var c = NewClient(d.Port, d.TokenFile);
                c.Start();
                Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "connected");
                var t0 = DateTime.UtcNow;
                c.Stop();
                Check.True(DateTime.UtcNow - t0 < TimeSpan.FromSeconds(2), "Stop returns promptly");
                Check.Equal(ConnectionState.Stopped, c.State, "stopped");
                Check.True(!c.Send(Msg.Ping("x")), "no sending after stop");
                int before = d.ConnectionCount;
                System.Threading.Thread.Sleep(300);
                Check.Equal(before, d.ConnectionCount, "no reconnect after Stop");
                c.Start(); // a stopped client can start again (after a domain reload the glue makes a new one)
                Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "restarted");
                c.Stop();
            }
        }

        [VsTest]
        public static void IncomingQueueIsBoundedAndPumpRespectsTheBudget()
        {
            using (var d = new FakeDaemon())
            {
                var c = NewClient(d.Port, d.TokenFile, o => o.MaxIncoming = 50);
                try
                {
                    c.Start();
                    Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "connected");
                    Drain(c);
                    for (int i = 0; i < 500; i++) d.Broadcast(new Dictionary<string, object> { { "type", "pong" }, { "request_id", "p" + i }, { "seq", 1L } });
                    Check.Eventually(() => c.IncomingCount >= 50, TimeSpan.FromSeconds(5), "queue fills");
                    System.Threading.Thread.Sleep(100);
                    Check.True(c.IncomingCount <= 50, "queue never exceeds its bound (" + c.IncomingCount + ")");
                    int handled = c.Pump(e => System.Threading.Thread.Sleep(5), TimeSpan.FromMilliseconds(20));
                    Check.True(handled >= 1 && handled <= 6, "pump stops when the budget is spent (handled " + handled + ")");
                    int total = handled;
                    Check.Eventually(() => { total += c.Pump(e => { }, TimeSpan.FromMilliseconds(50)); return total >= 500; }, TimeSpan.FromSeconds(10), "all 500 delivered in order through the bounded queue");
                }
                finally { c.Stop(); }
            }
        }
    }
}

namespace VibeSync.Bridge.Tests
{
    public static class DataDirTests
    {
        [VsTest]
        public static void TokenLocationFollowsEnvThenXdgThenHome()
        {
            string oldData = Environment.GetEnvironmentVariable("VIBESYNC_DATA_DIR");
            string oldXdg = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
            try
            {
                Environment.SetEnvironmentVariable("VIBESYNC_DATA_DIR", "/srv/vs");
                Check.Equal("/srv/vs/token", DataDir.DefaultTokenFile(), "env var wins");
                Environment.SetEnvironmentVariable("VIBESYNC_DATA_DIR", null);
                bool linux = Environment.OSVersion.Platform == PlatformID.Unix && !Directory.Exists("/System/Library/CoreServices");
                if (linux)
                {
                Environment.SetEnvironmentVariable("XDG_DATA_HOME", "/xdg");
                Check.Equal("/xdg/vibesync", DataDir.Resolve(), "XDG_DATA_HOME on Linux");
                Environment.SetEnvironmentVariable("XDG_DATA_HOME", null);
                Check.Equal(Path.Combine(Environment.GetEnvironmentVariable("HOME"), ".local/share/vibesync"), DataDir.Resolve(), "~/.local/share/vibesync");
                }
                string f = Path.GetTempFileName();
                File.WriteAllText(f, "  abc123\r\n");
                Check.Equal("abc123", DataDir.ReadToken(f), "token trimmed");
                File.WriteAllText(f, " \n");
                Check.Contains(Check.Throws<IOException>(() => DataDir.ReadToken(f), "empty token").Message, "is empty", "empty token explained");
                File.Delete(f);
            }
            finally
            {
                Environment.SetEnvironmentVariable("VIBESYNC_DATA_DIR", oldData);
                Environment.SetEnvironmentVariable("XDG_DATA_HOME", oldXdg);
            }
        }

        [VsTest]
        public static void FlushWaitsUntilQueuedFramesAreWritten()
        {
            using (var d = new FakeDaemon())
            {
                var c = ClientTests.NewClient(d.Port, d.TokenFile);
                try
                {
                    c.Start();
                    Check.Eventually(() => c.IsConnected, TimeSpan.FromSeconds(5), "connected");
                    for (int i = 0; i < 300; i++) Check.True(c.Send(Msg.UserActivity(i % 2 == 0)), "queued " + i);
                    Check.True(c.Flush(TimeSpan.FromSeconds(5)), "flushed");
                    Check.Equal(0, c.OutgoingCount, "queue empty");
                    d.WaitFor("user_activity", 300, null);
                }
                finally { c.Stop(); }
            }
        }
    }
}
