// Editor bootstrap: wires Unity events to the engine-free core. Nothing here touches the socket
// (BridgeClient owns it on background threads); everything here runs on the main thread.
//
//  * [InitializeOnLoad]: start after the editor finished loading (delayCall), auto-connect.
//  * EditorApplication.update: engine.Tick with a per-frame time budget; incoming work wakes an
//    unfocused editor through the main-thread SynchronizationContext -> QueuePlayerLoopUpdate.
//  * beforeAssemblyReload: close the socket synchronously, store resume flag + last seq in
//    SessionState (per editor session; EditorPrefs is shared by every open editor).
//    After the reload the static constructor runs again, reads them and reconnects with
//    hello.last_seq so the daemon replays what was missed.
//  * Play Mode: snapshot the synced state (in SessionState, since entering Play reloads the
//    domain), pause sync (incoming batches are answered `applied {held: true}`), restore and
//    resync when back in Edit Mode.
//  * ObjectChangeEvents.changesPublished -> dirty set (processed in batches by the engine);
//    CreateGameObjectHierarchy applies the duplicate rule.
using System;
using System.Collections.Generic;
using System.Threading;
using UnityEditor;
using UnityEditor.SceneManagement;
using UnityEngine;
using UnityEngine.SceneManagement;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Editor
{
    [InitializeOnLoad]
    internal static class VibeSyncBootstrap
    {
        const string ResumeKey = "VibeSync.Resume";
        const string LastSeqKey = "VibeSync.LastSeq";
        const string ClientIdKey = "VibeSync.ClientId";
        const string SnapshotKey = "VibeSync.PlaySnapshot";

        static BridgeClient client;
        static SyncEngine engine;
        static UnitySceneAdapter scene;
        static SynchronizationContext mainThread;
        static int wakePosted;
        static long savedSeq = -1;
        static string lastLoggedState;
        static bool hooked;

        static VibeSyncBootstrap()
        {
            // Scenes are not loaded yet while [InitializeOnLoad] constructors run.
            EditorApplication.delayCall += () =>
            {
                if (VibeSyncSettings.instance.autoConnect || SessionState.GetBool(ResumeKey, false)) Restart();
            };
        }

        // ------------------------------------------------------------------ lifecycle

        public static void Restart()
        {
            Shutdown();
            var settings = VibeSyncSettings.instance;
            string problem = settings.Problem();
            if (problem != null && !problem.StartsWith("Token file", StringComparison.Ordinal))
            {
                Debug.LogWarning("[VibeSync] not connecting: " + problem + " (Project Settings > VibeSync)");
                return;
            }
            mainThread = SynchronizationContext.Current;
            scene = new UnitySceneAdapter();
            scene.Log += s => Debug.Log("[VibeSync] " + s);
            bool playing = EditorApplication.isPlayingOrWillChangePlaymode;
            if (!playing) scene.Rescan(); // in Play Mode the scene holds runtime objects; rescan when it ends

            string clientId = SessionState.GetString(ClientIdKey, "");
            if (!Msg.IsValidUuid(clientId)) { clientId = Msg.NewUuid(); SessionState.SetString(ClientIdKey, clientId); }
            client = new BridgeClient(new BridgeClientOptions
            {
                Host = settings.host, Port = settings.port, TokenFile = settings.EffectiveTokenFile, ProjectId = settings.EffectiveProjectId,
                Editor = ClientKind.Unity, EditorVersion = Application.unityVersion, ClientId = clientId, UnitScale = 1.0, Wake = Wake,
            });
            engine = new SyncEngine(client, scene, 1.0, playing ? null : scene.SavedBases());
            long resumeSeq;
            if (SessionState.GetBool(ResumeKey, false) && long.TryParse(SessionState.GetString(LastSeqKey, "0"), out resumeSeq))
                engine.LastSeq = resumeSeq; // hello.last_seq: the daemon replays what this editor missed
            SessionState.SetBool(ResumeKey, false);
            engine.Event += OnEngineEvent;
            if (playing) engine.SetPaused(true);

            if (!hooked)
            {
                hooked = true;
                EditorApplication.update += Update;
                AssemblyReloadEvents.beforeAssemblyReload += BeforeReload;
                EditorApplication.playModeStateChanged += OnPlayModeChanged;
                ObjectChangeEvents.changesPublished += OnChangesPublished;
                EditorSceneManager.sceneOpened += OnSceneOpened;
                EditorSceneManager.sceneClosing += OnSceneClosing;
                EditorSceneManager.sceneSaving += OnSceneSaving;
                EditorApplication.quitting += Shutdown;
            }
            client.Start();
        }

        public static void Shutdown() { Shutdown("Unity stops the bridge"); }

        static void Shutdown(string why)
        {
            // On purpose: a batch left unanswered is no evidence against the data (PROTOCOL §6.8).
            if (engine != null) engine.Closing(why);
            // The scenes stay as they are (a restart, a domain reload), not as saved: the engine
            // made next takes their maps' bases, so they must be this engine's (what another
            // editor changed since the save is synced, not the person's edit to send back).
            if (engine != null && scene != null && !EditorApplication.isPlayingOrWillChangePlaymode)
                for (int i = 0; i < SceneManager.sceneCount; i++)
                {
                    var sc = SceneManager.GetSceneAt(i);
                    UnitySceneAdapter.SaveBases(sc, engine.BaseSnapshot(UnitySceneAdapter.MapUuids(sc)), false);
                }
            if (client != null) client.Flush(TimeSpan.FromMilliseconds(250)); // bounded
            if (client != null) client.Stop(); // synchronous: the socket is closed when this returns
            client = null;
            engine = null;
            scene = null;
        }

        public static void Resync() { if (engine != null) engine.RequestResync(); }

        static void BeforeReload()
        {
            if (engine == null) return;
            SessionState.SetBool(ResumeKey, true);
            SessionState.SetString(LastSeqKey, engine.LastSeq.ToString());
            Shutdown("scripts reload"); // its flush is bounded: never stall the reload
        }

        // Called on the connection thread: only hand a callback to the main thread's context.
        static void Wake()
        {
            var ctx = mainThread;
            if (ctx == null || Interlocked.Exchange(ref wakePosted, 1) == 1) return;
            ctx.Post(_ =>
            {
                Interlocked.Exchange(ref wakePosted, 0);
                EditorApplication.QueuePlayerLoopUpdate(); // an unfocused editor runs update again
            }, null);
        }

        static void Update()
        {
            if (engine == null) return;
            engine.Tick(TimeSpan.FromMilliseconds(Math.Max(1, VibeSyncSettings.instance.frameBudgetMs)));
            if (client != null && client.IncomingCount > 0) EditorApplication.QueuePlayerLoopUpdate(); // budget ran out: come back soon
            if (client != null && client.AssignedProjectId != null) VibeSyncSettings.instance.KeepAssigned(client.AssignedProjectId);
            if (engine.LastSeq != savedSeq)
            {
                savedSeq = engine.LastSeq;
                SessionState.SetString(LastSeqKey, savedSeq.ToString());
            }
        }

        static void OnEngineEvent(string name, Dictionary<string, object> f)
        {
            switch (name)
            {
                case "connected":
                case "disconnected":
                    string line = name == "connected" ? "connected to the daemon (session " + f["session_id"] + ")" : "disconnected: " + f["reason"] + "; reconnecting";
                    if (line != lastLoggedState) Debug.Log("[VibeSync] " + line);
                    lastLoggedState = line;
                    break;
                case "collision":
                    Debug.Log("[VibeSync] uuid " + f["uuid"] + " is already used by another object; this one now has " + f["new_uuid"]);
                    break;
                case "error":
                    Debug.LogWarning("[VibeSync] " + f["message"]);
                    break;
                case "daemon_error":
                    Debug.LogWarning("[VibeSync] daemon: " + f["code"] + ": " + f["message"]);
                    break;
                case "batch_result":
                    if ((string)f["outcome"] == BatchOutcome.RolledBack && (bool)f["kept_local"])
                        Debug.LogWarning("[VibeSync] batch " + f["batch_id"] + " was rolled back (" + f["error_code"] + "); your edits are kept here, marked not synced, and sent again on your next edit");
                    else if ((string)f["outcome"] == BatchOutcome.RolledBack)
                        Debug.LogWarning("[VibeSync] batch " + f["batch_id"] + " was rolled back (" + f["error_code"] + "); the daemon's state was re-applied");
                    break;
                case "safe_mode":
                    Debug.LogWarning("[VibeSync] daemon safe mode " + ((bool)f["active"] ? "ON: " + f["reason"] : "off"));
                    break;
                case "conflict":
                    Debug.Log("[VibeSync] conflict on " + f["uuid"] + " (" + f["op"] + "): " + StatusView.ClientName((string)f["winner"]) + " won over " + StatusView.ClientName((string)f["loser"]));
                    break;
            }
        }

        // ------------------------------------------------------------------ Play Mode

        static void OnPlayModeChanged(PlayModeStateChange change)
        {
            if (engine == null) return;
            switch (change)
            {
                case PlayModeStateChange.ExitingEditMode:
                    // Entering Play reloads the domain by default: keep the snapshot in SessionState.
                    SessionState.SetString(SnapshotKey, ObjectState.WriteSnapshot(engine.Snapshot()));
                    engine.SetPaused(true);
                    break;
                case PlayModeStateChange.EnteredPlayMode:
                    engine.SetPaused(true);
                    break;
                case PlayModeStateChange.EnteredEditMode:
                    {
                        Dictionary<string, ObjectState> snap = null;
                        string json = SessionState.GetString(SnapshotKey, "");
                        if (json.Length > 0)
                        {
                            try { snap = ObjectState.ReadSnapshot(json); }
                            catch (Exception e) { Debug.LogWarning("[VibeSync] pre-Play snapshot unreadable (" + e.Message + "); resyncing from the daemon instead"); }
                        }
                        SessionState.EraseString(SnapshotKey);
                        scene.Rescan(); // handles are stale after Play
                        engine.SetPaused(false, snap); // also asks the daemon for `resync {since_seq: LastSeq}`
                        break;
                    }
            }
        }

        // ------------------------------------------------------------------ change capture

        static void OnChangesPublished(ref ObjectChangeEventStream stream)
        {
            if (engine == null || scene == null || engine.Paused) return; // Play Mode edits are not synced
            bool sweep = false;
            for (int i = 0; i < stream.length; i++)
            {
                switch (stream.GetEventType(i))
                {
                    case ObjectChangeKind.CreateGameObjectHierarchy:
                        {
                            CreateGameObjectHierarchyEventArgs e;
                            stream.GetCreateGameObjectHierarchyEvent(i, out e);
                            var go = EditorUtility.InstanceIDToObject(e.instanceId) as GameObject;
                            if (go != null) foreach (var u in scene.OnHierarchyCreated(go)) engine.MarkDirty(u);
                            break;
                        }
                    case ObjectChangeKind.ChangeGameObjectOrComponentProperties:
                        {
                            ChangeGameObjectOrComponentPropertiesEventArgs e;
                            stream.GetChangeGameObjectOrComponentPropertiesEvent(i, out e);
                            MarkObject(EditorUtility.InstanceIDToObject(e.instanceId), false);
                            break;
                        }
                    case ObjectChangeKind.ChangeGameObjectStructure:
                        {
                            ChangeGameObjectStructureEventArgs e;
                            stream.GetChangeGameObjectStructureEvent(i, out e);
                            MarkObject(EditorUtility.InstanceIDToObject(e.instanceId), false);
                            break;
                        }
                    case ObjectChangeKind.ChangeGameObjectStructureHierarchy:
                        {
                            ChangeGameObjectStructureHierarchyEventArgs e;
                            stream.GetChangeGameObjectStructureHierarchyEvent(i, out e);
                            MarkObject(EditorUtility.InstanceIDToObject(e.instanceId), true);
                            sweep = true;
                            break;
                        }
                    case ObjectChangeKind.ChangeGameObjectParent:
                        {
                            ChangeGameObjectParentEventArgs e;
                            stream.GetChangeGameObjectParentEvent(i, out e);
                            MarkObject(EditorUtility.InstanceIDToObject(e.instanceId), false);
                            break;
                        }
                    case ObjectChangeKind.DestroyGameObjectHierarchy:
                        sweep = true;
                        break;
                    case ObjectChangeKind.ChangeAssetObjectProperties:
                        {
                            ChangeAssetObjectPropertiesEventArgs e;
                            stream.GetChangeAssetObjectPropertiesEvent(i, out e);
                            var asset = EditorUtility.InstanceIDToObject(e.instanceId);
                            if (asset is Mesh || asset is Material) MarkUsers(asset);
                            break;
                        }
                    case ObjectChangeKind.ChangeScene:
                    case ObjectChangeKind.UpdatePrefabInstances:
                        // Coarse events (e.g. undo of several things, prefab apply): re-check everything.
                        foreach (var u in new List<string>(scene.Identity.Uuids)) engine.MarkDirty(u);
                        sweep = true;
                        break;
                }
            }
            if (sweep) foreach (var u in scene.SweepDestroyed()) engine.MarkDirty(u); // capture finds nothing -> `delete`
        }

        static void MarkObject(UnityEngine.Object obj, bool hierarchy)
        {
            GameObject go = obj as GameObject;
            if (go == null && obj is Component) go = ((Component)obj).gameObject;
            if (go == null) return;
            if (hierarchy)
            {
                foreach (var t in go.GetComponentsInChildren<Transform>(true)) Mark(t.gameObject);
            }
            else Mark(go);
        }

        static void Mark(GameObject go)
        {
            string u = scene.UuidOf(go);
            if (u == null)
            {
                // Not tracked yet (e.g. a component was added to an untracked object): treat as created.
                foreach (var nu in scene.OnHierarchyCreated(go)) engine.MarkDirty(nu);
                return;
            }
            engine.MarkDirty(u);
        }

        static void MarkUsers(UnityEngine.Object asset)
        {
            if (asset is Mesh) scene.InvalidateMesh(asset.GetInstanceID());
            foreach (var u in new List<string>(scene.Identity.Uuids))
            {
                GameObject go;
                if (!scene.Identity.TryGet(u, out go) || go == null) continue;
                var mf = go.GetComponent<MeshFilter>();
                var r = go.GetComponent<Renderer>();
                if ((mf != null && mf.sharedMesh == asset) || (r != null && r.sharedMaterial == asset)) engine.MarkDirty(u);
            }
        }

        static void OnSceneOpened(Scene s, OpenSceneMode mode)
        {
            if (engine == null) return;
            scene.Rescan();
            engine.MarkAllDirty(scene.SavedBases(s)); // new objects get registered; known ones diff to nothing
        }

        static void OnSceneSaving(Scene s, string path)
        {
            // What the scene last synced of its objects, those deleted since its last save
            // included (their delete is sent when it is opened again if it was not yet).
            var bases = engine != null ? engine.BaseSnapshot(UnitySceneAdapter.MapUuids(s)) : null;
            UnitySceneAdapter.PruneBeforeSave(s); // identity pairs of objects deleted for good
            if (bases != null) UnitySceneAdapter.SaveBases(s, bases, true);
        }

        static void OnSceneClosing(Scene s, bool removingScene)
        {
            if (engine == null) return;
            var uuids = scene.UuidsInScene(s);
            engine.Forget(uuids); // closing a scene is not deleting its objects
            scene.ForgetAll(uuids);
        }

        // ------------------------------------------------------------------ status for the UI

        /// <summary>What the status window draws: the shared status view (StatusView, the same lines as
        /// Blender's sidebar) and a few Unity-only counters.</summary>
        internal struct StatusInfo
        {
            public List<StatusLine> Lines;
            public string SessionId;
            public bool Connected, Running;
            public long BatchesApplied, Committed, RolledBack, ChangesSent;
            public int Tracked, Dirty;
            public IDictionary<string, string> NotSynced;
        }

        public static StatusInfo Status()
        {
            var s = VibeSyncSettings.instance;
            var st = new StatusInfo();
            if (client == null || engine == null)
            {
                st.Lines = StatusView.Lines(StatusView.Stopped(s.host, s.port, s.EffectiveProjectId));
                return st;
            }
            st.Lines = StatusView.Lines(StatusView.From(engine, DateTime.UtcNow));
            st.Running = true;
            st.Connected = client.IsConnected;
            st.SessionId = engine.SessionId;
            st.Tracked = engine.TrackedObjects;
            st.Dirty = engine.DirtyCount;
            st.BatchesApplied = engine.BatchesApplied;
            st.Committed = engine.BatchesCommitted;
            st.RolledBack = engine.BatchesRolledBack;
            st.ChangesSent = engine.ChangeOpsSent;
            st.NotSynced = engine.NotSynced;
            return st;
        }

        public static string StatusLine()
        {
            var st = Status();
            return st.Lines[0].Text + (st.Running ? " · " + st.Tracked + " objects" : "");
        }
    }
}
