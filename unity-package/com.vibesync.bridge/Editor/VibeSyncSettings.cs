// Project-scoped settings, stored in ProjectSettings/VibeSyncSettings.asset (shared through version
// control; per-editor state such as the resume flag lives in SessionState instead).
using System.IO;
using System.Text.RegularExpressions;
using UnityEditor;
using UnityEngine;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Editor
{
    [FilePath("ProjectSettings/VibeSyncSettings.asset", FilePathAttribute.Location.ProjectFolder)]
    internal sealed class VibeSyncSettings : ScriptableSingleton<VibeSyncSettings>
    {
        public bool autoConnect = true;
        public string host = "127.0.0.1";
        public int port = 47800;
        [Tooltip("Empty: <daemon data dir>/token (VIBESYNC_DATA_DIR or the OS default)")]
        public string tokenFile = "";
        [Tooltip("Empty: the daemon pairs this project with the editors already running (zero-config), and the id it assigns is kept below")]
        public string projectId = "";
        [Tooltip("The project id the daemon assigned on first connect (kept so this Unity project keeps its project and replay position)")]
        public string assignedProjectId = "";
        [Tooltip("Milliseconds per editor frame spent applying incoming changes")]
        public int frameBudgetMs = 8;

        public void SaveNow() { Save(true); }

        /// <summary>The id sent in hello: the one set by the user, else the one the daemon assigned
        /// earlier, else null (omitted: the daemon assigns one, PROTOCOL §6.8).</summary>
        public string EffectiveProjectId
        {
            get
            {
                if (!string.IsNullOrEmpty(projectId)) return projectId;
                return string.IsNullOrEmpty(assignedProjectId) ? null : assignedProjectId;
            }
        }

        /// <summary>Keeps the id the daemon assigned (saved with the project settings).</summary>
        public void KeepAssigned(string id)
        {
            if (string.IsNullOrEmpty(id) || !string.IsNullOrEmpty(projectId) || id == assignedProjectId) return;
            assignedProjectId = id;
            SaveNow();
        }

        public string EffectiveTokenFile { get { return string.IsNullOrEmpty(tokenFile) ? DataDir.DefaultTokenFile() : tokenFile; } }

        /// <summary>What is wrong with the settings, or null.</summary>
        public string Problem()
        {
            if (EffectiveProjectId != null && !Msg.IsValidProjectId(EffectiveProjectId)) return "Project id \"" + EffectiveProjectId + "\" is invalid: use 1-128 chars of A-Z a-z 0-9 . _ - not starting with '.'";
            if (port <= 0 || port > 65535) return "Port " + port + " is out of range 1-65535";
            if (string.IsNullOrEmpty(host)) return "Host is empty";
            if (!File.Exists(EffectiveTokenFile)) return "Token file " + EffectiveTokenFile + " does not exist yet: start the daemon (`vibesync serve`)";
            return null;
        }
    }

    internal static class VibeSyncSettingsProvider
    {
        [SettingsProvider]
        static SettingsProvider Create()
        {
            return new SettingsProvider("Project/VibeSync", SettingsScope.Project)
            {
                label = "VibeSync",
                keywords = new System.Collections.Generic.HashSet<string>(new[] { "VibeSync", "Blender", "sync", "daemon", "token", "port" }),
                guiHandler = search =>
                {
                    var s = VibeSyncSettings.instance;
                    EditorGUI.BeginChangeCheck();
                    s.autoConnect = EditorGUILayout.Toggle(new GUIContent("Connect automatically", "Connect to the daemon when the editor starts and after every script reload"), s.autoConnect);
                    s.host = EditorGUILayout.TextField("Host", s.host);
                    s.port = EditorGUILayout.IntField("Port", s.port);
                    using (new EditorGUILayout.HorizontalScope())
                    {
                        s.tokenFile = EditorGUILayout.TextField(new GUIContent("Token file", "Empty: " + DataDir.DefaultTokenFile()), s.tokenFile);
                        if (GUILayout.Button("Browse", GUILayout.Width(70)))
                        {
                            string f = EditorUtility.OpenFilePanel("VibeSync token file", Path.GetDirectoryName(s.EffectiveTokenFile), "");
                            if (!string.IsNullOrEmpty(f)) s.tokenFile = f;
                        }
                    }
                    s.projectId = EditorGUILayout.TextField(new GUIContent("Project id", "Empty: " + (s.EffectiveProjectId ?? "assigned by the daemon")), s.projectId);
                    s.frameBudgetMs = EditorGUILayout.IntSlider(new GUIContent("Frame budget (ms)", "Time per editor frame for applying incoming changes"), s.frameBudgetMs, 1, 50);
                    if (EditorGUI.EndChangeCheck()) s.SaveNow();
                    EditorGUILayout.Space();
                    string problem = s.Problem();
                    if (problem != null) EditorGUILayout.HelpBox(problem, UnityEditor.MessageType.Warning);
                    EditorGUILayout.LabelField("Status", VibeSyncBootstrap.StatusLine());
                    using (new EditorGUILayout.HorizontalScope())
                    {
                        if (GUILayout.Button("Apply and reconnect")) VibeSyncBootstrap.Restart();
                        if (GUILayout.Button("Open status window")) VibeSyncStatusWindow.Open();
                    }
                },
            };
        }
    }
}
