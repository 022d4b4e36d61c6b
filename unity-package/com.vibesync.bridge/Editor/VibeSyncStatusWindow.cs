// Window > VibeSync > Status: connection state (connected / reconnecting / safe mode / paused), whether
// the daemon runs (and the command that starts it), the project and its peers, objects not synced and
// why, last applied seq, tracked objects, last error, and a few actions.
using UnityEditor;
using UnityEngine;
using Peer = VibeSync.Bridge.Core.Peer;

namespace VibeSync.Bridge.Editor
{
    internal sealed class VibeSyncStatusWindow : EditorWindow
    {
        [MenuItem("Window/VibeSync/Status")]
        public static void Open()
        {
            var w = GetWindow<VibeSyncStatusWindow>();
            w.titleContent = new GUIContent("VibeSync");
            w.Show();
        }

        // Repaints ~10 times a second while open; cheap (reads cached fields only).
        void OnInspectorUpdate() { Repaint(); }

        void OnGUI()
        {
            var st = VibeSyncBootstrap.Status();
            EditorGUILayout.LabelField("State", st.State, EditorStyles.boldLabel);
            if (st.DaemonNotRunning)
                EditorGUILayout.HelpBox("The VibeSync daemon is not running. Start it in a terminal with:\n    vibesync serve\n(install it with `cargo install --path crates/vibesync`). This window connects by itself once it runs.", MessageType.Warning);
            if (st.SafeMode) EditorGUILayout.HelpBox("Safe mode: the daemon refuses changes" + (string.IsNullOrEmpty(st.SafeModeReason) ? "" : " (" + st.SafeModeReason + ")") + ". Local edits are kept and sent when it ends.", MessageType.Warning);
            if (st.Paused) EditorGUILayout.HelpBox("Paused during Play Mode: nothing is synced; incoming batches are held and fetched again with a resync when Play ends, after the pre-Play state is restored.", MessageType.Info);
            EditorGUILayout.LabelField("Daemon", st.Endpoint);
            EditorGUILayout.LabelField("Project id", st.ProjectId);
            if (st.Peers != null)
            {
                if (st.Peers.Count == 0)
                    EditorGUILayout.LabelField("Peers", st.Connected ? "none: no other editor is in this project" : "-");
                foreach (var p in st.Peers) EditorGUILayout.LabelField("Peer", p.Client + ": connected");
                if (st.Peers.Count == 0 && st.OtherProjects != null && st.OtherProjects.Count > 0)
                    EditorGUILayout.HelpBox("This editor is alone in project \"" + st.ProjectId + "\" while other editors are in " + string.Join(", ", st.OtherProjects) + ". Set the same project id in both (Project Settings > VibeSync) to sync them.", MessageType.Warning);
            }
            if (st.NotSynced != null && st.NotSynced.Count > 0)
            {
                var lines = new System.Text.StringBuilder();
                int shown = 0;
                foreach (var kv in st.NotSynced) { if (shown++ == 5) { lines.Append("…"); break; } lines.Append(kv.Key.Substring(0, 8)).Append(": ").Append(kv.Value).Append('\n'); }
                EditorGUILayout.HelpBox(st.NotSynced.Count + " object(s) not synced — your edits are kept here and re-sent when you edit them again or another editor joins:\n" + lines, MessageType.Warning);
            }
            EditorGUILayout.LabelField("Session", st.SessionId ?? "-");
            EditorGUILayout.LabelField("Last seq", st.LastSeq.ToString());
            EditorGUILayout.LabelField("Tracked objects", st.Tracked.ToString());
            EditorGUILayout.LabelField("Pending local changes", st.Dirty.ToString());
            EditorGUILayout.LabelField("Batches applied", st.BatchesApplied.ToString() + (st.BatchesHeld > 0 ? " (" + st.BatchesHeld + " held in Play Mode)" : ""));
            EditorGUILayout.LabelField("Batches committed / rolled back", st.Committed + " / " + st.RolledBack);
            EditorGUILayout.LabelField("Changes sent", st.ChangesSent.ToString());
            if (!string.IsNullOrEmpty(st.LastError)) EditorGUILayout.HelpBox(st.LastError, MessageType.Error);
            EditorGUILayout.Space();
            using (new EditorGUILayout.HorizontalScope())
            {
                if (GUILayout.Button("Reconnect")) VibeSyncBootstrap.Restart();
                using (new EditorGUI.DisabledScope(!st.Connected)) if (GUILayout.Button("Resync")) VibeSyncBootstrap.Resync();
                if (GUILayout.Button(st.Running ? "Disconnect" : "Connect")) { if (st.Running) VibeSyncBootstrap.Shutdown(); else VibeSyncBootstrap.Restart(); }
                if (GUILayout.Button("Settings")) SettingsService.OpenProjectSettings("Project/VibeSync");
            }
        }
    }
}
