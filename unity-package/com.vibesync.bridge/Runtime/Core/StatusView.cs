// What the editor's VibeSync window says, as lines, built from the engine's and the connection's
// state (docs/ARCHITECTURE.md, "Editors say what is going on"). The Unity window only draws these
// lines; the Blender sidebar draws the same ones from the same fields (addons/blender/vibesync/
// statusview.py), and tests/vectors/status_view.json pins both: the same state reads the same in
// both editors, word for word.
using System;
using System.Collections.Generic;
using System.Globalization;

namespace VibeSync.Bridge.Core
{
    /// <summary>How loud a status line is (the window picks a label or a help box by it).</summary>
    public static class StatusLevel
    {
        public const string Plain = "plain";
        public const string Ok = "ok";
        public const string Info = "info";
        public const string Progress = "progress";
        public const string Warning = "warning";
        public const string Error = "error";
        public static readonly string[] All = { Plain, Ok, Info, Progress, Warning, Error };
    }

    /// <summary>The connection states both editors show (the first line).</summary>
    public static class EditorStatus
    {
        public const string Connected = "connected";
        public const string Reconnecting = "reconnecting";
        public const string SafeMode = "safe mode";
        public const string Paused = "paused";
        public const string DaemonNotRunning = "daemon not running";
        public const string Disconnected = "disconnected";
    }

    /// <summary>What a status line is about.</summary>
    public static class StatusKey
    {
        public const string State = "state", DaemonNotRunning = "daemon_not_running", HandshakeError = "handshake_error";
        public const string Paused = "paused", SafeMode = "safe_mode", Daemon = "daemon", Project = "project";
        public const string Peer = "peer", Alone = "alone", OtherProject = "other_project", FirstSync = "first_sync";
        public const string Seq = "seq", HeldBatches = "held_batches", NotSynced = "not_synced", Collisions = "collisions";
        public const string Conflict = "conflict", LastError = "last_error";
        /// <summary>Blender's alone (data linked from library files): never in the Unity window.</summary>
        public const string Linked = "linked", Untracked = "untracked";
    }

    public sealed class StatusLine
    {
        public string Key, Level, Text;
        public StatusLine(string key, string level, string text) { Key = key; Level = level; Text = text; }
        public override string ToString() { return Key + " " + Level + " | " + Text; }
    }

    /// <summary>A uuid the daemon found already used by another object: this one got a fresh uuid.</summary>
    public sealed class CollisionInfo
    {
        public string Uuid, NewUuid, Kind, Name, Message;
    }

    /// <summary>A `conflict` event (PROTOCOL §6.2): two people changed one object in one window.</summary>
    public sealed class ConflictInfo
    {
        public string Uuid, Winner, Loser, Op;
        public long Seq;
    }

    /// <summary>Another project that has scene-holding sessions, with their editor kinds (`peers.other_projects`).</summary>
    public sealed class OtherProject
    {
        public string ProjectId;
        public List<string> Clients = new List<string>();
    }

    /// <summary>
    /// The fields the status view reads: the same names as the Blender addon's `status()` (the
    /// vector's `status` objects). Null or empty reads as "nothing to say".
    /// </summary>
    public sealed class StatusInput
    {
        public string State = EditorStatus.Disconnected;
        public long NextTryS;                // > 0: seconds to the next connection attempt
        public bool Connected;
        public string HandshakeErrorCode, HandshakeErrorMessage; // the daemon refused the handshake
        public string PauseReason;
        public bool SafeMode;
        public string SafeModeReason;
        public string Host;
        public long Port;
        public string ProjectId;
        public List<string> Peers = new List<string>();   // the peers' client kinds
        public List<OtherProject> OtherProjects = new List<OtherProject>();
        public long ProgressSynced, ProgressTotal;
        public long DaemonSeq, LastSeq;
        public long Linked;                                 // Blender: datablocks linked from library files
        public List<string> Untracked = new List<string>(); // Blender: why each untracked datablock is not synced
        public long DeferredBatches;
        public string BlockedReason;
        public List<string> NotSyncedReasons = new List<string>(); // ordered by uuid
        public List<CollisionInfo> Collisions = new List<CollisionInfo>();
        public List<ConflictInfo> Conflicts = new List<ConflictInfo>();
        public string LastErrorCode, LastErrorMessage;    // the last error (a code when it has one)
        public bool HasError;
    }

    public static class StatusView
    {
        public const int MaxErrorChars = 200;

        /// <summary>Why the Unity editor pauses sync (SyncEngine.SetPaused from Play Mode).</summary>
        public const string PlayModePause = "Play Mode: nothing is synced until it ends, then a resync brings what was missed";

        /// <summary>The window's lines, in order (the Blender sidebar says the same, statusview.py).</summary>
        public static List<StatusLine> Lines(StatusInput s)
        {
            var o = new List<StatusLine>();
            string state = string.IsNullOrEmpty(s.State) ? EditorStatus.Disconnected : s.State;
            string head = "State: " + state;
            if (state == EditorStatus.Reconnecting && s.NextTryS > 0) head += " (next try in " + N(s.NextTryS) + " s)";
            o.Add(new StatusLine(StatusKey.State, StateLevel(state), head));
            if (state == EditorStatus.DaemonNotRunning) o.Add(new StatusLine(StatusKey.DaemonNotRunning, StatusLevel.Info, "Start it with `vibesync serve`"));
            if (s.HandshakeErrorCode != null && !s.Connected)
                o.Add(new StatusLine(StatusKey.HandshakeError, StatusLevel.Error, s.HandshakeErrorCode + ": " + s.HandshakeErrorMessage));
            if (!string.IsNullOrEmpty(s.PauseReason)) o.Add(new StatusLine(StatusKey.Paused, StatusLevel.Warning, "Paused: " + s.PauseReason));
            if (s.SafeMode)
                o.Add(new StatusLine(StatusKey.SafeMode, StatusLevel.Error,
                    "Safe mode: " + (string.IsNullOrEmpty(s.SafeModeReason) ? "sync is read-only" : s.SafeModeReason) + "; `vibesync safe-mode clear`"));
            o.Add(new StatusLine(StatusKey.Daemon, StatusLevel.Plain, "Daemon: " + s.Host + ":" + N(s.Port)));
            o.Add(new StatusLine(StatusKey.Project, StatusLevel.Plain, "Project: " + (string.IsNullOrEmpty(s.ProjectId) ? "(assigned by the daemon)" : s.ProjectId)));
            if (s.Connected)
            {
                foreach (var p in s.Peers) o.Add(new StatusLine(StatusKey.Peer, StatusLevel.Ok, ClientName(p) + ": connected"));
                if (s.Peers.Count == 0)
                {
                    o.Add(new StatusLine(StatusKey.Alone, StatusLevel.Warning, "No other editor in this project"));
                    foreach (var other in s.OtherProjects)
                    {
                        var names = new List<string>();
                        foreach (var c in other.Clients) names.Add(ClientName(c));
                        o.Add(new StatusLine(StatusKey.OtherProject, StatusLevel.Error,
                            string.Join(", ", names.ToArray()) + (names.Count == 1 ? " is" : " are") + " in project " + other.ProjectId + ": set the same project id to sync"));
                    }
                }
                if (s.ProgressTotal > 0 && s.ProgressSynced < s.ProgressTotal)
                    o.Add(new StatusLine(StatusKey.FirstSync, StatusLevel.Progress, "First sync: " + Thousands(s.ProgressSynced) + " / " + Thousands(s.ProgressTotal) + " objects"));
            }
            o.Add(new StatusLine(StatusKey.Seq, StatusLevel.Plain, "Last seq: " + N(s.DaemonSeq) + " (applied " + N(s.LastSeq) + ")"));
            if (s.Linked > 0)
                o.Add(new StatusLine(StatusKey.Linked, StatusLevel.Info, "Linked from library files: " + Thousands(s.Linked)
                    + " datablock(s), read-only here (edit them through a library override)"));
            if (s.Untracked.Count > 0)
                o.Add(new StatusLine(StatusKey.Untracked, StatusLevel.Warning, s.Untracked.Count + " datablock(s) not synced: " + s.Untracked[s.Untracked.Count - 1]));
            if (!string.IsNullOrEmpty(s.BlockedReason))
                o.Add(new StatusLine(StatusKey.HeldBatches, StatusLevel.Progress, N(s.DeferredBatches) + " batch(es) held: " + s.BlockedReason));
            if (s.NotSyncedReasons.Count > 0)
                o.Add(new StatusLine(StatusKey.NotSynced, StatusLevel.Error,
                    s.NotSyncedReasons.Count + " object(s) not synced (kept here): " + s.NotSyncedReasons[s.NotSyncedReasons.Count - 1]));
            if (s.Collisions.Count > 0)
            {
                var c = s.Collisions[s.Collisions.Count - 1];
                o.Add(new StatusLine(StatusKey.Collisions, StatusLevel.Info,
                    s.Collisions.Count + " uuid collision(s); last: " + c.Kind + " \"" + c.Name + "\" got a fresh uuid"));
            }
            if (s.Conflicts.Count > 0)
            {
                var c = s.Conflicts[s.Conflicts.Count - 1];
                o.Add(new StatusLine(StatusKey.Conflict, StatusLevel.Info, "Conflict: " + ClientName(c.Winner) + " won over " + ClientName(c.Loser) + " (" + c.Op + ")"));
            }
            if (s.HasError)
            {
                string text = "Last error: " + (string.IsNullOrEmpty(s.LastErrorCode) ? s.LastErrorMessage : s.LastErrorCode + ": " + s.LastErrorMessage);
                o.Add(new StatusLine(StatusKey.LastError, StatusLevel.Error, CutChars(text, MaxErrorChars)));
            }
            return o;
        }

        /// <summary>The status of a bridge that is not running (no client): disconnected.</summary>
        public static StatusInput Stopped(string host, int port, string projectId)
        {
            return new StatusInput { State = EditorStatus.Disconnected, Host = host, Port = port, ProjectId = projectId };
        }

        /// <summary>The status of a running bridge, read from its engine and connection (main thread).</summary>
        public static StatusInput From(SyncEngine engine, DateTime utcNow)
        {
            var client = engine.Client;
            var o = client.Options;
            var s = new StatusInput
            {
                Host = o.Host, Port = o.Port, Connected = client.IsConnected,
                ProjectId = engine.ProjectId ?? o.ProjectId,
                SafeMode = engine.SafeMode, SafeModeReason = engine.SafeModeReason,
                PauseReason = engine.Paused ? engine.PauseReason : null,
                DaemonSeq = engine.DaemonSeq, LastSeq = engine.LastSeq,
                HandshakeErrorCode = client.HandshakeErrorCode, HandshakeErrorMessage = client.HandshakeErrorMessage,
            };
            if (engine.Paused) s.State = EditorStatus.Paused;
            else if (s.Connected && s.SafeMode) s.State = EditorStatus.SafeMode;
            else if (s.Connected) s.State = EditorStatus.Connected;
            else if (client.State == ConnectionState.Stopped) s.State = EditorStatus.Disconnected;
            else if (client.DaemonUnreachable != null) s.State = EditorStatus.DaemonNotRunning;
            else
            {
                s.State = EditorStatus.Reconnecting;
                var wait = client.NextAttemptUtc - utcNow;
                if (client.State == ConnectionState.WaitingToReconnect && wait > TimeSpan.Zero) s.NextTryS = (long)Math.Ceiling(wait.TotalSeconds);
            }
            foreach (var p in engine.Peers) s.Peers.Add(p.Client);
            foreach (var p in engine.OtherProjectsWithClients) s.OtherProjects.Add(p);
            var progress = engine.Progress();
            s.ProgressSynced = progress.Synced;
            s.ProgressTotal = progress.Total;
            s.DeferredBatches = engine.DeferredBatches;
            s.BlockedReason = engine.DeferredBatches > 0 ? engine.DeferredReason : null;
            var ids = new List<string>(engine.NotSynced.Keys);
            ids.Sort(StringComparer.Ordinal);
            foreach (var u in ids) s.NotSyncedReasons.Add(engine.NotSynced[u]);
            s.Collisions.AddRange(engine.Collisions);
            s.Conflicts.AddRange(engine.Conflicts);
            // While disconnected the connection's own error says why (refused, timed out, ...).
            string clientError = s.Connected ? null : client.LastError;
            if (clientError != null && s.State != EditorStatus.DaemonNotRunning && s.HandshakeErrorCode == null)
            {
                s.HasError = true;
                s.LastErrorMessage = clientError;
            }
            else if (engine.LastError != null)
            {
                s.HasError = true;
                s.LastErrorCode = engine.LastErrorCode;
                s.LastErrorMessage = engine.LastErrorMessage;
            }
            return s;
        }

        public static string ClientName(string kind)
        {
            if (kind == ClientKind.Unity) return "Unity";
            if (kind == ClientKind.Blender) return "Blender";
            return kind ?? "None";
        }

        static string StateLevel(string state)
        {
            switch (state)
            {
                case EditorStatus.Connected: return StatusLevel.Ok;
                case EditorStatus.Reconnecting: return StatusLevel.Progress;
                case EditorStatus.SafeMode: return StatusLevel.Error;
                case EditorStatus.Paused: return StatusLevel.Warning;
                case EditorStatus.DaemonNotRunning: return StatusLevel.Error;
                default: return StatusLevel.Plain;
            }
        }

        static string N(long v) { return v.ToString(CultureInfo.InvariantCulture); }

        /// <summary>10000 -> "10,000" (Python's `{:,}`).</summary>
        static string Thousands(long v) { return v.ToString("#,0", CultureInfo.InvariantCulture); }

        /// <summary>The first `max` characters (Unicode code points, as Python slices), never half a surrogate pair.</summary>
        static string CutChars(string s, int max)
        {
            int chars = 0;
            for (int i = 0; i < s.Length; i++)
            {
                if (chars == max) return s.Substring(0, i);
                if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
                chars++;
            }
            return s;
        }
    }
}
