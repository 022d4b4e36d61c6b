// The Unity window's lines (StatusView): the shared vector tests/vectors/status_view.json, which the
// Blender sidebar's statusview.py reads too, and the engine's state reaching them through a fake
// daemon (first-sync progress, collisions, conflicts, peers, Play Mode, safe mode, no daemon).
#if !UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Tests
{
    public static class StatusViewTests
    {
        static string Str(Dictionary<string, object> d, string k) { object v; return d.TryGetValue(k, out v) ? v as string : null; }
        static long Num(Dictionary<string, object> d, string k) { object v; return d.TryGetValue(k, out v) && v != null ? (long)Json.ToDouble(v) : 0; }
        static bool Flag(Dictionary<string, object> d, string k) { object v; return d.TryGetValue(k, out v) && v is bool && (bool)v; }
        static List<Dictionary<string, object>> Objs(Dictionary<string, object> d, string k)
        {
            object v;
            if (!d.TryGetValue(k, out v) || !(v is List<object>)) return new List<Dictionary<string, object>>();
            return ((List<object>)v).Cast<Dictionary<string, object>>().ToList();
        }

        /// <summary>The vector's `status` (the Blender addon's field names) as the view's input.</summary>
        static StatusInput Input(Dictionary<string, object> st)
        {
            var s = new StatusInput
            {
                State = Str(st, "state"), NextTryS = Num(st, "next_try_s"), Connected = Flag(st, "connected"),
                PauseReason = Str(st, "pause_reason"), SafeMode = Flag(st, "safe_mode"), SafeModeReason = Str(st, "safe_mode_reason"),
                Host = Str(st, "host"), Port = Num(st, "port"), ProjectId = Str(st, "project_id"),
                DaemonSeq = Num(st, "daemon_seq"), LastSeq = Num(st, "last_seq"),
                DeferredBatches = Num(st, "deferred_batches"), BlockedReason = Str(st, "blocked_reason"),
                Linked = Num(st, "linked"),
            };
            object untracked;
            if (st.TryGetValue("untracked", out untracked) && untracked is List<object>)
                s.Untracked = ((List<object>)untracked).Cast<string>().ToList();
            object he;
            if (st.TryGetValue("handshake_error", out he) && he is Dictionary<string, object>)
            {
                s.HandshakeErrorCode = Str((Dictionary<string, object>)he, "code");
                s.HandshakeErrorMessage = Str((Dictionary<string, object>)he, "message");
            }
            foreach (var p in Objs(st, "peers")) s.Peers.Add(Str(p, "client"));
            foreach (var p in Objs(st, "other_projects"))
                s.OtherProjects.Add(new OtherProject { ProjectId = Str(p, "project_id"), Clients = ((List<object>)p["clients"]).Cast<string>().ToList() });
            object prog;
            if (st.TryGetValue("progress", out prog) && prog is Dictionary<string, object>)
            {
                s.ProgressSynced = Num((Dictionary<string, object>)prog, "synced");
                s.ProgressTotal = Num((Dictionary<string, object>)prog, "total");
            }
            foreach (var n in Objs(st, "not_synced")) s.NotSyncedReasons.Add(Str(n, "reason"));
            foreach (var c in Objs(st, "collisions")) s.Collisions.Add(new CollisionInfo { Kind = Str(c, "kind"), Name = Str(c, "name") });
            foreach (var c in Objs(st, "conflicts")) s.Conflicts.Add(new ConflictInfo { Winner = Str(c, "winner"), Loser = Str(c, "loser"), Op = Str(c, "op") });
            var errors = Objs(st, "errors");
            if (errors.Count > 0)
            {
                s.HasError = true;
                s.LastErrorCode = Str(errors[errors.Count - 1], "code");
                s.LastErrorMessage = Str(errors[errors.Count - 1], "message");
            }
            return s;
        }

        static string Texts(IEnumerable<StatusLine> lines) { return string.Join("\n", lines.Select(l => l.ToString()).ToArray()); }

        [VsTest]
        public static void TheWindowSaysWhatTheBlenderSidebarSays()
        {
            var v = (Dictionary<string, object>)Vectors.Load("status_view.json");
            var cases = ((List<object>)v["cases"]).Cast<Dictionary<string, object>>().ToList();
            Check.True(cases.Count >= 10, "the vector has its cases");
            var keys = new HashSet<string>();
            foreach (var c in cases)
            {
                var want = Objs(c, "lines").Select(l => new StatusLine(Str(l, "key"), Str(l, "level"), Str(l, "text"))).ToList();
                var got = StatusView.Lines(Input((Dictionary<string, object>)c["status"]));
                Check.Equal(Texts(want), Texts(got), "case " + c["name"]);
                foreach (var l in got)
                {
                    keys.Add(l.Key);
                    Check.True(StatusLevel.All.Contains(l.Level), "known level " + l.Level);
                }
            }
            var every = typeof(StatusKey).GetFields().Select(f => (string)f.GetValue(null)).ToList();
            foreach (var k in every) Check.True(keys.Contains(k), "the vector covers the line " + k);
        }

        static List<StatusLine> Lines(EngineTests.Rig r) { return StatusView.Lines(StatusView.From(r.Engine, DateTime.UtcNow)); }

        static StatusLine Line(List<StatusLine> lines, string key) { return lines.FirstOrDefault(l => l.Key == key); }

        [VsTest]
        public static void FirstSyncProgressCountsWhatTheDaemonConfirmed()
        {
            using (var r = new EngineTests.Rig())
            {
                var a = r.Add("A");
                var b = r.Add("B");
                r.StartAndRegister();
                r.Daemon.WaitFor("change", 1, r.Pump);
                var lines = Lines(r);
                Check.Equal("State: connected", lines[0].Text, "connected");
                Check.Equal("First sync: 0 / 2 objects", Line(lines, StatusKey.FirstSync).Text, "nothing committed yet");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), BatchOutcome.Committed, new[] { a.Uuid });
                Check.Eventually(() => r.Engine.BatchResults == 1, TimeSpan.FromSeconds(5), "first result", r.Pump);
                Check.Equal("First sync: 1 / 2 objects", Line(Lines(r), StatusKey.FirstSync).Text, "one committed");
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), BatchOutcome.Dropped, new[] { b.Uuid });
                Check.Eventually(() => r.Engine.BatchResults == 2, TimeSpan.FromSeconds(5), "second result", r.Pump);
                Check.True(Line(Lines(r), StatusKey.FirstSync) == null, "no progress line once everything is synced");
                // Later edits in flight are not a first sync.
                a.Position = new[] { 1.0, 0, 0 };
                r.Engine.MarkDirty(a.Uuid);
                r.Daemon.WaitFor("change", 2, r.Pump);
                Check.True(Line(Lines(r), StatusKey.FirstSync) == null, "an edit in flight shows no first-sync progress");
                Check.Equal("Daemon: 127.0.0.1:" + r.Daemon.Port, Line(Lines(r), StatusKey.Daemon).Text, "endpoint");
                Check.Equal("Project: demo", Line(Lines(r), StatusKey.Project).Text, "project");
            }
        }

        [VsTest]
        public static void PeersCollisionsAndConflictsReachTheWindow()
        {
            bool collided = false;
            using (var r = new EngineTests.Rig(rig => rig.Daemon.OnRequest = f =>
            {
                if (f.Type != "register" || collided) return rig.Daemon.DefaultReply(f);
                collided = true;
                var it = (Dictionary<string, object>)((List<object>)f.Message["items"])[0];
                var res = new List<object> { new Dictionary<string, object> { { "uuid", it["uuid"] }, { "status", ItemStatus.Collision }, { "error_code", null }, { "message", "uuid is live for /Cube" } } };
                return new Dictionary<string, object> { { "type", "ack" }, { "request_id", f.Message["request_id"] }, { "seq", rig.Daemon.NextSeq() }, { "results", res } };
            }))
            {
                var a = r.Add("Cube");
                r.StartAndRegister();
                r.Daemon.WaitFor("register", 2, r.Pump);
                Check.Equal("1 uuid collision(s); last: object \"Cube\" got a fresh uuid", Line(Lines(r), StatusKey.Collisions).Text, "collision shown");
                Check.Equal(a.Uuid, r.Engine.Collisions[0].NewUuid, "the fresh uuid is remembered");

                Check.Equal("No other editor in this project", Line(Lines(r), StatusKey.Alone).Text, "alone before any peers event");
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", MessageType.Peers }, { "project_id", "demo" }, { "peers", new List<object>() },
                    { "other_projects", new List<object> { new Dictionary<string, object> { { "project_id", "p2" }, { "clients", new List<object> { "blender" } } } } },
                });
                Check.Eventually(() => r.Engine.OtherProjectsWithClients.Count == 1, TimeSpan.FromSeconds(5), "peers event", r.Pump);
                Check.Equal("Blender is in project p2: set the same project id to sync", Line(Lines(r), StatusKey.OtherProject).Text, "other project named");
                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", MessageType.Peers }, { "project_id", "demo" },
                    { "peers", new List<object> { new Dictionary<string, object> { { "session_id", "s-b" }, { "client", "blender" }, { "client_id", "c-b" } } } },
                    { "other_projects", new List<object>() },
                });
                Check.Eventually(() => r.Engine.Peers.Count == 1, TimeSpan.FromSeconds(5), "a peer joined", r.Pump);
                var lines = Lines(r);
                Check.Equal("Blender: connected", Line(lines, StatusKey.Peer).Text, "peer shown");
                Check.True(Line(lines, StatusKey.Alone) == null, "not alone any more");

                r.Daemon.Broadcast(new Dictionary<string, object>
                {
                    { "type", MessageType.Conflict }, { "uuid", a.Uuid }, { "winner", ClientKind.Blender }, { "loser", ClientKind.Unity }, { "op", Ops.Transform }, { "seq", 9L },
                });
                Check.Eventually(() => r.Engine.Conflicts.Count == 1, TimeSpan.FromSeconds(5), "conflict event", r.Pump);
                Check.Equal("Conflict: Blender won over Unity (transform)", Line(Lines(r), StatusKey.Conflict).Text, "conflict shown");
                Check.True(r.Events.Contains("conflict") && !r.Events.Contains("ignored"), "the conflict event is handled, not ignored");
            }
        }

        [VsTest]
        public static void PlayModeSafeModeAndErrorsReachTheWindow()
        {
            using (var r = new EngineTests.Rig())
            {
                EngineTests.CommittedObject(r, 1);
                r.Engine.SetPaused(true);
                r.Daemon.SendBatch(r.Daemon.NextSeq(), BatchPath.Fast, new Dictionary<string, object> { { "op", Ops.Rename }, { "uuid", Msg.NewUuid() }, { "name", "X" } });
                Check.Eventually(() => r.Engine.BatchesHeld == 1, TimeSpan.FromSeconds(5), "held in Play Mode", r.Pump);
                var lines = Lines(r);
                Check.Equal("State: paused", lines[0].Text, "paused");
                Check.Equal(StatusLevel.Warning, lines[0].Level, "paused is a warning");
                Check.Equal("Paused: " + StatusView.PlayModePause, Line(lines, StatusKey.Paused).Text, "why");
                Check.Contains(Line(lines, StatusKey.HeldBatches).Text, "1 batch(es) held: paused: Play Mode", "held batches counted");
                r.Engine.SetPaused(false);
                Check.True(Line(Lines(r), StatusKey.HeldBatches) == null && Line(Lines(r), StatusKey.Paused) == null, "nothing held after Play");

                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", MessageType.SafeMode }, { "active", true }, { "reason", "3 unclean boots in a row" } });
                Check.Eventually(() => r.Engine.SafeMode, TimeSpan.FromSeconds(5), "safe mode", r.Pump);
                lines = Lines(r);
                Check.Equal("State: safe mode", lines[0].Text, "safe mode state");
                Check.Equal("Safe mode: 3 unclean boots in a row; `vibesync safe-mode clear`", Line(lines, StatusKey.SafeMode).Text, "reason and the command");

                r.Daemon.Broadcast(new Dictionary<string, object> { { "type", MessageType.Error }, { "code", ErrorCode.RateLimited }, { "message", "slow down" } });
                Check.Eventually(() => r.Engine.LastErrorCode == ErrorCode.RateLimited, TimeSpan.FromSeconds(5), "error", r.Pump);
                Check.Equal("Last error: RATE_LIMITED: slow down", Line(Lines(r), StatusKey.LastError).Text, "last error with its code");
            }
        }

        [VsTest]
        public static void NoDaemonSaysHowToStartIt()
        {
            // Nothing listens on the port, then no token file at all: both read "daemon not running".
            string tok;
            int port = ClientTests.ClosedPort(out tok);
            foreach (var tokenFile in new[] { tok, "/nonexistent/vibesync/token" })
            {
                var c = ClientTests.NewClient(port, tokenFile);
                var e = new SyncEngine(c, new Headless.HeadlessScene());
                try
                {
                    c.Start();
                    Check.Eventually(() => c.DaemonUnreachable != null, TimeSpan.FromSeconds(5), "unreachable noticed", () => e.Tick(TimeSpan.FromMilliseconds(20)));
                    var lines = StatusView.Lines(StatusView.From(e, DateTime.UtcNow));
                    Check.Equal("State: daemon not running", lines[0].Text, "state (" + tokenFile + ")");
                    Check.Equal("Start it with `vibesync serve`", lines[1].Text, "the command that starts it");
                    Check.True(Line(lines, StatusKey.LastError) == null, "no duplicate error line");
                }
                finally { c.Stop(); }
                var stopped = StatusView.Lines(StatusView.From(e, DateTime.UtcNow));
                Check.Equal("State: disconnected", stopped[0].Text, "a stopped client reads disconnected");
            }
            File.Delete(tok);
        }

        [VsTest]
        public static void ARefusedHandshakeShowsTheDaemonsCode()
        {
            using (var d = new FakeDaemon())
            {
                string wrong = Path.Combine(d.Dir, "wrong-token");
                File.WriteAllText(wrong, "ffff\n");
                var c = ClientTests.NewClient(d.Port, wrong);
                var e = new SyncEngine(c, new Headless.HeadlessScene());
                try
                {
                    c.Start();
                    Check.Eventually(() => c.HandshakeErrorCode != null, TimeSpan.FromSeconds(5), "refusal noticed");
                    var lines = StatusView.Lines(StatusView.From(e, DateTime.UtcNow));
                    Check.True(lines[0].Text.StartsWith("State: reconnecting", StringComparison.Ordinal), "the daemon runs: reconnecting, got " + lines[0].Text);
                    var he = Line(lines, StatusKey.HandshakeError);
                    Check.True(he != null && he.Text.StartsWith(ErrorCode.AuthFailed + ": ", StringComparison.Ordinal), "the daemon's code, got " + Texts(lines));
                    Check.Contains(he.Text, "token file", "what to fix");
                    Check.True(Line(lines, StatusKey.LastError) == null, "said once");
                }
                finally { c.Stop(); }
            }
        }
        /// <summary>The real daemon's `peers`: the headless host (Unity) and an engine connecting as Blender see each other.</summary>
        [VsTest]
        public static void AgainstTheDaemonEachEditorSeesTheOther()
        {
            using (var d = DaemonProcess.WithBatchWindow(20).Start())
            using (var host = new HostProcess("--connect " + d.Address + " --token-file \"" + d.TokenFile + "\" --project demo --stay"))
            {
                host.Send("wait-registered 20");
                host.Send("status-view");
                var alone = host.WaitEvent("status_view");
                var texts = ((List<object>)alone["lines"]).Cast<Dictionary<string, object>>().Select(l => (string)l["text"]).ToList();
                Check.True(texts.Contains("State: connected") && texts.Contains("No other editor in this project") && texts.Contains("Project: demo"),
                    "the host alone: " + string.Join(" | ", texts.ToArray()));

                var c = ClientTests.NewClient(d.Port, d.TokenFile, o => { o.ProjectId = "demo"; o.Editor = ClientKind.Blender; });
                var e = new SyncEngine(c, new Headless.HeadlessScene());
                try
                {
                    c.Start();
                    Check.Eventually(() => e.Peers.Count == 1, TimeSpan.FromSeconds(10), "the host is a peer", () => e.Tick(TimeSpan.FromMilliseconds(20)));
                    Check.Equal("Unity: connected", Line(StatusView.Lines(StatusView.From(e, DateTime.UtcNow)), StatusKey.Peer).Text, "Blender's side names Unity");
                    // Ask the host again until its window names Blender (the peers event may still be on its way).
                    var deadline = DateTime.UtcNow.AddSeconds(10);
                    var answered = new HashSet<Dictionary<string, object>> { alone };
                    List<string> seen = null;
                    while (DateTime.UtcNow < deadline)
                    {
                        host.Send("status-view");
                        var ev = host.WaitEvent("status_view", f => !answered.Contains(f), 10, () => e.Tick(TimeSpan.FromMilliseconds(5)));
                        answered.Add(ev);
                        seen = ((List<object>)ev["lines"]).Cast<Dictionary<string, object>>().Select(l => (string)l["text"]).ToList();
                        if (seen.Contains("Blender: connected")) break;
                        System.Threading.Thread.Sleep(50);
                    }
                    Check.True(seen != null && seen.Contains("Blender: connected"), "the host names Blender: " + (seen == null ? "-" : string.Join(" | ", seen.ToArray())));
                }
                finally { c.Stop(); }
                host.Quit();
            }
        }
    }
}
#endif
