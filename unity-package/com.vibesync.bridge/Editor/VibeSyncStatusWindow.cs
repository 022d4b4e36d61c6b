// Window > VibeSync > Status. It only draws: what it says comes from the core's StatusView (the
// same lines, word for word, as Blender's sidebar: connection state, the command that starts a
// daemon that is not running, a refused handshake, Play Mode and safe mode with their reasons, the
// project and its peers, first-sync progress, held batches, objects not synced, collisions,
// conflicts, the last error), then a few Unity counters and the actions.
using UnityEditor;
using UnityEngine;
using VibeSync.Bridge.Core;
using MessageType = UnityEditor.MessageType;

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

        // Repaints ~10 times a second while open: state changes show without moving the mouse.
        void OnInspectorUpdate() { Repaint(); }

        void OnGUI()
        {
            var st = VibeSyncBootstrap.Status();
            foreach (var line in st.Lines) Draw(line);
            if (st.NotSynced != null && st.NotSynced.Count > 0)
            {
                var lines = new System.Text.StringBuilder("Not synced (kept here; re-sent when you edit them again or another editor joins):\n");
                int shown = 0;
                foreach (var kv in st.NotSynced) { if (shown++ == 5) { lines.Append("…"); break; } lines.Append(kv.Key.Substring(0, 8)).Append(": ").Append(kv.Value).Append('\n'); }
                EditorGUILayout.HelpBox(lines.ToString(), MessageType.None);
            }
            if (st.Running)
            {
                EditorGUILayout.Space();
                EditorGUILayout.LabelField("Session", st.SessionId ?? "-");
                EditorGUILayout.LabelField("Tracked objects", st.Tracked.ToString());
                EditorGUILayout.LabelField("Pending local changes", st.Dirty.ToString());
                EditorGUILayout.LabelField("Batches applied", st.BatchesApplied.ToString());
                EditorGUILayout.LabelField("Batches committed / rolled back", st.Committed + " / " + st.RolledBack);
                EditorGUILayout.LabelField("Changes sent", st.ChangesSent.ToString());
            }
            EditorGUILayout.Space();
            using (new EditorGUILayout.HorizontalScope())
            {
                if (GUILayout.Button("Reconnect")) VibeSyncBootstrap.Restart();
                using (new EditorGUI.DisabledScope(!st.Connected)) if (GUILayout.Button("Resync")) VibeSyncBootstrap.Resync();
                if (GUILayout.Button(st.Running ? "Disconnect" : "Connect")) { if (st.Running) VibeSyncBootstrap.Shutdown(); else VibeSyncBootstrap.Restart(); }
                if (GUILayout.Button("Settings")) SettingsService.OpenProjectSettings("Project/VibeSync");
            }
        }

        static void Draw(StatusLine line)
        {
            if (line.Key == StatusKey.State) { EditorGUILayout.LabelField(line.Text, EditorStyles.boldLabel); return; }
            switch (line.Level)
            {
                case StatusLevel.Info: EditorGUILayout.HelpBox(line.Text, MessageType.Info); break;
                case StatusLevel.Warning: EditorGUILayout.HelpBox(line.Text, MessageType.Warning); break;
                case StatusLevel.Error: EditorGUILayout.HelpBox(line.Text, MessageType.Error); break;
                default: EditorGUILayout.LabelField(line.Text); break;
            }
        }
    }
}
