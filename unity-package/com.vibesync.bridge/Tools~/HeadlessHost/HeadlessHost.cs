// VibeSync headless host: a console stand-in for the Unity Editor, built on the same core.
// It connects like the editor, registers its in-memory scene, applies fenced batches exactly as the
// editor would (PROTOCOL §6: canonical -> Unity frame, `applied` hashes over canonical meters,
// `held` while paused, `batch_result` advancing the last seq), makes edits on command and dumps
// its scene as JSON. Every event is printed to stdout as one JSON line, so tests (and people
// debugging the protocol) can follow it. Documentation~/index.md lists commands and events.
//
//   mono VibeSyncHeadlessHost.exe --connect 127.0.0.1:47800 --token-file ~/.local/share/vibesync/token \
//        --project demo [--dump scene.json] [--script edits.txt] [--scene initial.json]
//
// Commands (script file first, then stdin; one per line; `#` starts a comment; `@Name` means
// "the uuid of the object named Name"): see Usage below.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Reflection;
using System.Threading;
using VibeSync.Bridge.Core;

namespace VibeSync.Bridge.Headless
{
    public static class Program
    {
        const string Usage = @"usage: VibeSyncHeadlessHost.exe [options]
options:
  --connect HOST:PORT   daemon address (default 127.0.0.1:47800)
  --token-file FILE     token file (default <data dir>/token; data dir from VIBESYNC_DATA_DIR or the OS default)
  --project ID          project id (default ""default"")
  --dump FILE           where `dump` writes; also written on exit
  --script FILE         run these commands first, then read stdin
  --scene FILE          load objects from a dump-format JSON file before connecting
                        (an object may carry ""mesh"": {""grid"": N}: an N x N vertex grid)
  --editor NAME         editor name in hello (default unity)
  --client-id ID        stable client id (default: random per run)
  --last-seq N          resume from this seq (as after a domain reload)
  --unit-scale X        meters per scene unit (default 1)
  --backoff-ms A,B,...  reconnect backoff schedule in ms (default 0,1000,3000,5000,10000,30000)
  --auto-dump           rewrite the --dump FILE after every applied batch and local edit
  --stay                keep running when stdin ends (end it with `quit`; Mono cannot catch SIGTERM)
  --no-connect          do not connect (offline scene tool)
commands:
  create <uuid|auto> <name> [parent]     new object at the origin
  move <uuid> x y z                      set local position (Unity frame, scene units)
  rotate <uuid> x y z w                  set local rotation quaternion (Unity frame)
  scale <uuid> x y z                     set local scale
  rename <uuid> <new name...>            rename
  component <uuid> <name>                add a Unity-only component (not synced; kept over another editor's delete and its undo)
  visible <uuid> true|false              show / hide
  parent <uuid> <parent-uuid|none>       reparent
  mesh <uuid> cube [half-size]           give the object a cube mesh
  material <uuid> r g b a metallic roughness   (or: material <uuid> none — remove its material)
  duplicate <uuid>                       Ctrl+D: the copy gets a fresh uuid, the original keeps its own
  delete <uuid>                          delete the object and its children
  undo                                   Ctrl+Z of the last `delete`: the objects come back as they were, same uuids
  together CMD ; CMD ...                 several edits in one editor frame: they leave in one `change`
                                         (one change per object is in flight, PROTOCOL §6.6)
  dump [FILE]                            write the scene JSON (default: --dump FILE)
  stats                                  print {""event"":""stats"",...} with the sync counters
  status-view                            print {""event"":""status_view"",""lines"":[{key,level,text}]}: what the
                                         editor's VibeSync window shows now (the same lines as Blender's sidebar)
  corrupt-next-hash                      the next `applied` answer carries a wrong hash for every uuid
  pause | resume                         enter / leave Play Mode (batches answered `held`; resync after)
  ping | status | resync                 protocol requests
  wait-connected [SECONDS]               wait for a welcome (default 30 s)
  wait-registered [SECONDS]              wait until the initial register is acknowledged
  wait-seq N [SECONDS]                   wait until the host's last seq (batch_end / batch_result seq) is >= N
  wait-idle [SECONDS]                    wait until nothing is pending (local changes sent and acked,
                                         their batch_result received, no batch half-received);
                                         prints {""event"":""idle"",...}
  wait-stat NAME N [SECONDS]             wait until counter NAME (see `stats`) is >= N
  sleep MS                               wait (messages keep being applied)
  echo TEXT                              print {""event"":""echo"",""text"":TEXT}
  quit                                   dump (if --dump) and exit
exit code: 0, or 1 if any command failed, 2 for bad arguments.";

        static readonly object sceneLock = new object();
        static readonly object cmdLock = new object();
        static readonly Queue<string> commands = new Queue<string>();
        static readonly AutoResetEvent wake = new AutoResetEvent(false);
        static HeadlessScene scene;
        // What the person's last `delete` removed, parent first, as it was (for `undo`).
        static List<SceneObject> lastDeleted = new List<SceneObject>();
        static SyncEngine engine;
        static BridgeClient client;
        static string dumpFile;
        static volatile bool quit;
        static int failures;
        static bool exitDumped;
        static bool autoDump;
        static Dictionary<string, ObjectState> playSnapshot;
        static bool corruptNext;

        public static int Main(string[] args)
        {
            string host = "127.0.0.1", tokenFile = null, project = "default", script = null, sceneFile = null, editor = ClientKind.Unity, clientId = null;
            int port = 47800;
            long lastSeq = 0;
            double unitScale = 1.0;
            bool stay = false, noConnect = false;
            TimeSpan[] backoff = BridgeClientOptions.DefaultBackoff;
            try
            {
                for (int i = 0; i < args.Length; i++)
                {
                    string a = args[i];
                    Func<string> next = () =>
                    {
                        if (i + 1 >= args.Length) throw new ArgumentException(a + " needs a value");
                        return args[++i];
                    };
                    switch (a)
                    {
                        case "--connect":
                            {
                                string v = next();
                                int colon = v.LastIndexOf(':');
                                if (colon <= 0 || !int.TryParse(v.Substring(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) || port <= 0 || port > 65535)
                                    throw new ArgumentException("--connect expects HOST:PORT, got \"" + v + "\"");
                                host = v.Substring(0, colon);
                                break;
                            }
                        case "--token-file": tokenFile = next(); break;
                        case "--project": project = next(); break;
                        case "--dump": dumpFile = next(); break;
                        case "--script": script = next(); break;
                        case "--scene": sceneFile = next(); break;
                        case "--editor": editor = next(); break;
                        case "--client-id": clientId = next(); break;
                        case "--last-seq": lastSeq = long.Parse(next(), CultureInfo.InvariantCulture); break;
                        case "--unit-scale": unitScale = double.Parse(next(), CultureInfo.InvariantCulture); break;
                        case "--backoff-ms":
                            {
                                var parts = next().Split(',');
                                backoff = new TimeSpan[parts.Length];
                                for (int k = 0; k < parts.Length; k++) backoff[k] = TimeSpan.FromMilliseconds(int.Parse(parts[k], CultureInfo.InvariantCulture));
                                break;
                            }
                        case "--stay": stay = true; break;
                        case "--auto-dump": autoDump = true; break;
                        case "--no-connect": noConnect = true; break;
                        case "-h":
                        case "--help": Console.WriteLine(Usage); return 0;
                        default: throw new ArgumentException("unknown option " + a);
                    }
                }
                if (autoDump && dumpFile == null) throw new ArgumentException("--auto-dump needs --dump FILE");
                if (!Msg.IsValidProjectId(project)) throw new ArgumentException("--project \"" + project + "\" is invalid: 1-128 chars of A-Z a-z 0-9 . _ - not starting with '.'");
                if (!(unitScale > 0)) throw new ArgumentException("--unit-scale must be > 0");
            }
            catch (Exception e) when (e is ArgumentException || e is FormatException || e is OverflowException)
            {
                Console.Error.WriteLine("vibesync-headless: " + e.Message);
                Console.Error.WriteLine(Usage);
                return 2;
            }

            scene = new HeadlessScene { UnitScale = unitScale };
            if (sceneFile != null)
            {
                try
                {
                    foreach (var ch in scene.Load(sceneFile))
                        Print("reidentified", F("old_uuid", ch.OldUuid, "uuid", ch.NewUuid, "reason", ch.Reason));
                    Print("scene_loaded", F("file", sceneFile, "objects", (long)scene.Objects.Count));
                }
                catch (Exception e)
                {
                    Console.Error.WriteLine("vibesync-headless: cannot load --scene " + sceneFile + ": " + e.Message);
                    return 2;
                }
            }
            if (script != null)
            {
                try { foreach (var line in File.ReadAllLines(script)) commands.Enqueue(line); }
                catch (IOException e)
                {
                    Console.Error.WriteLine("vibesync-headless: cannot read --script " + script + ": " + e.Message);
                    return 2;
                }
            }

            var opt = new BridgeClientOptions
            {
                Host = host, Port = port, TokenFile = tokenFile, ProjectId = project, Editor = editor,
                EditorVersion = "headless-" + Assembly.GetExecutingAssembly().GetName().Version,
                ClientId = clientId ?? Msg.NewUuid(), UnitScale = unitScale, Backoff = backoff, Wake = () => wake.Set(),
            };
            client = new BridgeClient(opt);
            engine = new SyncEngine(client, scene, unitScale, scene.SavedBases) { LastSeq = lastSeq };
            engine.Event += (name, fields) => Print(name, fields);
            engine.BeforeAppliedSent = (batch, hashes) =>
            {
                if (!corruptNext) return;
                corruptNext = false;
                // A valid-looking hash that is not the state's: flip the first hex digit.
                foreach (var u in new List<string>(hashes.Keys))
                {
                    string h = hashes[u];
                    hashes[u] = (h[0] == '0' ? "1" : "0") + h.Substring(1);
                }
                var l = new List<object>();
                foreach (var u in hashes.Keys) l.Add(u);
                Print("hash_corrupted", F("batch_id", batch.BatchId, "seq", batch.Seq, "uuids", l));
            };

            AppDomain.CurrentDomain.ProcessExit += (s, e) => FinalDump();
            Console.CancelKeyPress += (s, e) => { e.Cancel = true; quit = true; wake.Set(); };
            var reader = new Thread(() => ReadStdin(stay)) { IsBackground = true, Name = "stdin" };
            reader.Start();

            Print("ready", F("project", project, "connect", host + ":" + port, "objects", (long)scene.Objects.Count));
            if (!noConnect) client.Start();
            try
            {
                RunLoop();
            }
            finally
            {
                engine.Closing("the host quits"); // on purpose (PROTOCOL §6.8)
                client.Flush(TimeSpan.FromSeconds(2)); // let the last `applied`/`change` reach the daemon
                client.Stop();
                FinalDump();
                Print("exit", F("code", (long)(failures > 0 ? 1 : 0), "last_seq", engine.LastSeq, "stats", engine.Stats()));
            }
            return failures > 0 ? 1 : 0;
        }

        static void ReadStdin(bool stay)
        {
            try
            {
                string line;
                while ((line = Console.In.ReadLine()) != null)
                {
                    lock (cmdLock) commands.Enqueue(line);
                    wake.Set();
                }
            }
            catch (IOException) { }
            if (!stay)
            {
                lock (cmdLock) commands.Enqueue("quit");
                wake.Set();
            }
        }

        // ------------------------------------------------------------------ main loop

        sealed class Wait
        {
            public Func<bool> Done;
            public DateTime Deadline;
            public string What;
        }

        static void RunLoop()
        {
            Wait waiting = null;
            var budget = TimeSpan.FromMilliseconds(8);
            long appliedSeen = 0;
            while (!quit)
            {
                lock (sceneLock)
                {
                    engine.Tick(budget);
                    if (autoDump && engine.BatchesApplied != appliedSeen)
                    {
                        appliedSeen = engine.BatchesApplied;
                        scene.Dump(dumpFile, engine.LastSeq, engine.Stats(), Bases());
                    }
                }
                if (waiting != null)
                {
                    if (waiting.Done()) waiting = null;
                    else if (DateTime.UtcNow > waiting.Deadline)
                    {
                        Fail("timed out: " + waiting.What);
                        waiting = null;
                    }
                    else { wake.WaitOne(20); continue; }
                }
                string cmd = null;
                lock (cmdLock) if (commands.Count > 0) cmd = commands.Dequeue();
                if (cmd == null)
                {
                    // Sleep until a message or a command arrives; wake regularly for timers.
                    wake.WaitOne(client.IncomingCount > 0 ? 0 : 50);
                    continue;
                }
                try
                {
                    lock (sceneLock)
                    {
                        waiting = Execute(cmd.Trim());
                        if (autoDump) scene.Dump(dumpFile, engine.LastSeq, engine.Stats(), Bases());
                    }
                }
                catch (Exception e) when (e is ArgumentException || e is FormatException || e is InvalidOperationException || e is IOException || e is KeyNotFoundException || e is UnauthorizedAccessException)
                {
                    Fail(cmd.Trim() + ": " + e.Message);
                }
            }
        }

        /// <summary>What the scene keeps, as it is saved, of what it last synced (the Editor keeps
        /// it in the scene's identity map): the base of edits made while the daemon is away.</summary>
        static Dictionary<string, ObjectState> Bases()
        {
            if (engine == null) return null;
            var uuids = new List<string>();
            foreach (var o in scene.Objects) uuids.Add(o.Uuid);
            uuids.AddRange(engine.DeletedHere());
            return engine.BaseSnapshot(uuids);
        }

        static void FinalDump()
        {
            lock (sceneLock)
            {
                if (exitDumped || dumpFile == null || scene == null) return;
                exitDumped = true;
                try { scene.Dump(dumpFile, engine != null ? engine.LastSeq : 0, engine != null ? engine.Stats() : null, Bases()); Print("dumped", F("file", Path.GetFullPath(dumpFile), "objects", (long)scene.Objects.Count)); }
                catch (Exception e) { Print("error", F("message", "dump to " + dumpFile + " failed: " + e.Message)); }
            }
        }

        static Wait Execute(string line)
        {
            if (line.Length == 0 || line.StartsWith("#", StringComparison.Ordinal)) return null;
            string[] p = line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);
            string verb = p[0];
            switch (verb)
            {
                case "together":
                    {
                        // Several edits in one editor frame (one engine tick): they leave in one `change`.
                        Need(p, 2, "together <command> ; <command> ...");
                        foreach (var part in line.Substring(verb.Length).Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries))
                        {
                            string one = part.Trim();
                            if (one.Length == 0) continue;
                            if (Execute(one) != null) throw new ArgumentException("together: `" + one + "` waits; only edits can go together");
                        }
                        return null;
                    }
                case "create":
                    {
                        Need(p, 3, "create <uuid|auto> <name> [parent]");
                        string uuid = p[1] == "auto" ? Msg.NewUuid() : p[1];
                        if (!Msg.IsValidUuid(uuid)) throw new ArgumentException("\"" + p[1] + "\" is not a lowercase uuid (or `auto`)");
                        var o = new SceneObject { Uuid = uuid, Name = p[2], Parent = p.Length > 3 ? Obj(p[3]).Uuid : null };
                        var ch = scene.Add(o);
                        engine.MarkDirty(o.Uuid);
                        Print("created", F("uuid", o.Uuid, "name", o.Name, "parent", o.Parent, "reidentified_from", ch != null ? ch.OldUuid : null));
                        return null;
                    }
                case "move": { Need(p, 5, "move <uuid> x y z"); var o = Obj(p[1]); o.Position = Nums(p, 2, 3); Edited(o); return null; }
                case "rotate": { Need(p, 6, "rotate <uuid> x y z w"); var o = Obj(p[1]); o.Rotation = Nums(p, 2, 4); Edited(o); return null; }
                case "scale": { Need(p, 5, "scale <uuid> x y z"); var o = Obj(p[1]); o.Scale = Nums(p, 2, 3); Edited(o); return null; }
                case "component":
                    {
                        // A Unity-only component added by the person (a script, a collider):
                        // not synced state, nothing is sent.
                        Need(p, 3, "component <uuid> <name>");
                        var o = Obj(p[1]);
                        if (!o.Components.Contains(p[2])) o.Components.Add(p[2]);
                        return null;
                    }
                case "rename":
                    {
                        Need(p, 3, "rename <uuid> <name>");
                        var o = Obj(p[1]);
                        int at = line.IndexOf(p[1], StringComparison.Ordinal) + p[1].Length;
                        o.Name = line.Substring(at).Trim();
                        Edited(o);
                        return null;
                    }
                case "visible":
                    {
                        Need(p, 3, "visible <uuid> true|false");
                        var o = Obj(p[1]);
                        if (p[2] != "true" && p[2] != "false") throw new ArgumentException("visible expects true or false");
                        o.Visible = p[2] == "true";
                        Edited(o);
                        return null;
                    }
                case "parent":
                    {
                        Need(p, 3, "parent <uuid> <parent|none>");
                        var o = Obj(p[1]);
                        o.Parent = p[2] == "none" ? null : Obj(p[2]).Uuid;
                        if (o.Parent == o.Uuid) throw new ArgumentException("an object cannot be its own parent");
                        Edited(o);
                        return null;
                    }
                case "mesh":
                    {
                        Need(p, 3, "mesh <uuid> cube [half-size]");
                        if (p[2] != "cube") throw new ArgumentException("only `cube` meshes can be generated");
                        var o = Obj(p[1]);
                        float half = p.Length > 3 ? float.Parse(p[3], CultureInfo.InvariantCulture) : 0.5f;
                        byte[] buf = HeadlessScene.CubeMesh(half);
                        var m = MeshData.Parse(buf);
                        o.Mesh = new MeshInfo { Buffer = buf, MeshHash = MeshData.HashOf(buf), VertexCount = m.VertexCount, TriangleCount = m.TriangleCount };
                        Edited(o);
                        return null;
                    }
                case "material":
                    {
                        if (p.Length == 3 && p[2] == "none")
                        {
                            var bare = Obj(p[1]);
                            bare.Material = null; // the person removed its material
                            Edited(bare);
                            return null;
                        }
                        Need(p, 8, "material <uuid> r g b a metallic roughness | material <uuid> none");
                        var o = Obj(p[1]);
                        var n = Nums(p, 2, 6);
                        o.Material = new MaterialState { BaseColor = new[] { n[0], n[1], n[2], n[3] }, Metallic = n[4], Roughness = n[5] };
                        Edited(o);
                        return null;
                    }
                case "duplicate":
                    {
                        Need(p, 2, "duplicate <uuid>");
                        var src = Obj(p[1]);
                        IdentityChange ch;
                        var copy = scene.Duplicate(src, out ch);
                        engine.MarkDirty(copy.Uuid);
                        Print("duplicated", F("original", src.Uuid, "uuid", copy.Uuid, "name", copy.Name, "reason", ch != null ? ch.Reason : null));
                        return null;
                    }
                case "delete":
                    {
                        Need(p, 2, "delete <uuid>");
                        var gone = Obj(p[1]);
                        var before = new Dictionary<string, SceneObject>(StringComparer.Ordinal);
                        foreach (var o in scene.Objects) before[o.Uuid] = o.Clone();
                        var removed = scene.Delete(gone);
                        lastDeleted = new List<SceneObject>();
                        foreach (var u in removed) lastDeleted.Add(before[u]);
                        foreach (var u in removed) engine.MarkDirty(u);
                        var l = new List<object>();
                        foreach (var u in removed) l.Add(u);
                        Print("deleted", F("uuids", l));
                        return null;
                    }
                case "undo":
                    {
                        // Unity's Undo of a delete gives back the same objects (their serialized
                        // uuids and state): each is made again, parent first, and sent whole.
                        if (lastDeleted.Count == 0) throw new ArgumentException("undo: no delete to undo");
                        var back = new List<object>();
                        foreach (var o in lastDeleted)
                        {
                            var ch = scene.Add(o);
                            if (ch != null) throw new InvalidOperationException("undo: " + o.Uuid + " came back as " + ch.NewUuid);
                            engine.MarkDirty(o.Uuid);
                            back.Add(o.Uuid);
                        }
                        lastDeleted = new List<SceneObject>();
                        Print("undone", F("uuids", back));
                        return null;
                    }
                case "dump":
                    {
                        string file = p.Length > 1 ? line.Substring(line.IndexOf(' ') + 1).Trim() : dumpFile;
                        if (file == null) throw new ArgumentException("dump needs a FILE (or start with --dump FILE)");
                        scene.Dump(file, engine.LastSeq, engine.Stats(), Bases());
                        Print("dumped", F("file", Path.GetFullPath(file), "objects", (long)scene.Objects.Count));
                        return null;
                    }
                case "stats":
                    Print("stats", engine.Stats());
                    return null;
                case "status-view":
                    {
                        // The lines the Unity window (and Blender's sidebar) would show now (StatusView).
                        var lines = new List<object>();
                        foreach (var l in StatusView.Lines(StatusView.From(engine, DateTime.UtcNow)))
                            lines.Add(new Dictionary<string, object> { { "key", l.Key }, { "level", l.Level }, { "text", l.Text } });
                        Print("status_view", F("lines", lines));
                        return null;
                    }
                case "corrupt-next-hash":
                    corruptNext = true;
                    Print("corrupt_armed", null);
                    return null;
                case "pause":
                    playSnapshot = engine.Snapshot();
                    engine.SetPaused(true);
                    return null;
                case "resume":
                    engine.SetPaused(false, playSnapshot);
                    playSnapshot = null;
                    return null;
                case "ping":
                    if (!client.Send(Msg.Ping("p" + DateTime.UtcNow.Ticks))) throw new InvalidOperationException("not connected");
                    return null;
                case "status":
                    if (!client.Send(Msg.StatusRequest("s" + DateTime.UtcNow.Ticks))) throw new InvalidOperationException("not connected");
                    return null;
                case "resync": engine.RequestResync(); return null;
                case "wait-connected":
                    return new Wait { Done = () => client.IsConnected, Deadline = Deadline(p, 1, 30), What = "connection to the daemon" };
                case "wait-registered":
                    return new Wait { Done = () => client.IsConnected && engine.InitialRegisterDone, Deadline = Deadline(p, 1, 30), What = "initial register ack" };
                case "wait-seq":
                    {
                        Need(p, 2, "wait-seq N [SECONDS]");
                        long n = long.Parse(p[1], CultureInfo.InvariantCulture);
                        return new Wait { Done = () => engine.LastSeq >= n, Deadline = Deadline(p, 2, 30), What = "applied seq " + n };
                    }
                case "wait-idle":
                    return new Wait
                    {
                        Done = () =>
                        {
                            if (!engine.Idle) return false;
                            var st = engine.Stats();
                            st["awaiting_results"] = (long)engine.AwaitingResults;
                            Print("idle", st);
                            return true;
                        },
                        Deadline = Deadline(p, 1, 30), What = "idle (nothing sent unacknowledged, no batch_result outstanding, no batch half-received)",
                    };
                case "wait-stat":
                    {
                        Need(p, 3, "wait-stat NAME N [SECONDS]");
                        string name = p[1];
                        long n = long.Parse(p[2], CultureInfo.InvariantCulture);
                        if (!engine.Stats().ContainsKey(name)) throw new ArgumentException("unknown counter `" + name + "`; one of: " + string.Join(", ", new List<string>(engine.Stats().Keys).ToArray()));
                        return new Wait { Done = () => Convert.ToInt64(engine.Stats()[name], CultureInfo.InvariantCulture) >= n, Deadline = Deadline(p, 3, 30), What = name + " >= " + n };
                    }
                case "sleep":
                    {
                        Need(p, 2, "sleep MS");
                        var until = DateTime.UtcNow.AddMilliseconds(int.Parse(p[1], CultureInfo.InvariantCulture));
                        return new Wait { Done = () => DateTime.UtcNow >= until, Deadline = until.AddSeconds(1), What = "sleep" };
                    }
                case "echo":
                    Print("echo", F("text", line.Length > 5 ? line.Substring(5) : ""));
                    return null;
                case "quit":
                case "exit":
                    quit = true;
                    return null;
                default:
                    throw new ArgumentException("unknown command `" + verb + "` (see --help)");
            }
        }

        static void Edited(SceneObject o)
        {
            scene.Identity.UpdateRef(o.Uuid, scene.PathOf(o));
            engine.MarkDirty(o.Uuid);
        }

        static DateTime Deadline(string[] p, int idx, double dflt)
        {
            double s = p.Length > idx ? double.Parse(p[idx], CultureInfo.InvariantCulture) : dflt;
            return DateTime.UtcNow.AddSeconds(s);
        }

        static void Need(string[] p, int n, string usage)
        {
            if (p.Length < n) throw new ArgumentException("usage: " + usage);
        }

        static SceneObject Obj(string reference)
        {
            SceneObject o = reference.StartsWith("@", StringComparison.Ordinal) ? scene.FindByName(reference.Substring(1)) : scene.Find(reference);
            if (o == null) throw new KeyNotFoundException("no object " + reference + " in the scene");
            return o;
        }

        static double[] Nums(string[] p, int from, int count)
        {
            if (p.Length < from + count) throw new ArgumentException("expected " + count + " numbers");
            var r = new double[count];
            for (int i = 0; i < count; i++)
            {
                if (!double.TryParse(p[from + i], NumberStyles.Float, CultureInfo.InvariantCulture, out r[i]) || double.IsNaN(r[i]) || double.IsInfinity(r[i]))
                    throw new ArgumentException("\"" + p[from + i] + "\" is not a finite number");
            }
            return r;
        }

        static void Fail(string message)
        {
            failures++;
            Print("error", F("message", message));
        }

        static readonly object printLock = new object();

        static void Print(string name, Dictionary<string, object> fields)
        {
            var d = new Dictionary<string, object> { { "event", name } };
            if (fields != null) foreach (var kv in fields) if (kv.Key != "event") d[kv.Key] = kv.Value;
            string line;
            try { line = Json.Write(d); }
            catch (ArgumentException e) { line = "{\"event\":\"error\",\"message\":\"cannot print event " + name + ": " + e.Message.Replace("\"", "'") + "\"}"; }
            lock (printLock)
            {
                Console.Out.WriteLine(line);
                Console.Out.Flush();
            }
        }

        static Dictionary<string, object> F(params object[] kv)
        {
            var d = new Dictionary<string, object>();
            for (int i = 0; i + 1 < kv.Length; i += 2) d[(string)kv[i]] = kv[i + 1];
            return d;
        }
    }
}
