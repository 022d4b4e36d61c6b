// The shared engine scenarios (tests/vectors/engine_scenarios.json) against SyncEngine, through the
// headless host's scene and a scripted daemon that answers nothing by itself: every ack, result and
// peers event is a step of the scenario. The Blender addon's bpy-free engine runs the same file
// (tests/blender_engine/test_scenarios.py).
#if !UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.Linq;
using VibeSync.Bridge.Core;
using VibeSync.Bridge.Headless;

namespace VibeSync.Bridge.Tests
{
    public static class ScenarioTests
    {
        static readonly string[] Steps = { "send", "verify", "replay", "apply" };

        [VsTest]
        public static void SharedEngineScenarios()
        {
            var v = (Dictionary<string, object>)Vectors.Load("engine_scenarios.json");
            var all = ((List<object>)v["scenarios"]).Cast<Dictionary<string, object>>().ToList();
            Check.True(all.Count >= 5, "the scenarios are there");
            foreach (var s in all) Run(s);
        }

        static List<string> Strings(object o) { return ((List<object>)o).Cast<string>().ToList(); }

        static void Run(Dictionary<string, object> scenario)
        {
            string name = (string)scenario["name"];
            Check.True(Steps.Contains(name.Split(':')[0]), "named for its pipeline step: " + name);
            using (var r = new EngineTests.Rig(rig => rig.Daemon.OnRequest = f => f.Type == MessageType.Change ? null : rig.Daemon.DefaultReply(f)))
            {
                // Every object starts synced: created, committed, nothing in flight.
                var objs = new Dictionary<string, SceneObject>();
                foreach (var n in Strings(scenario["objects"])) objs[n] = r.Add(n);
                r.StartAndRegister();
                var first = r.Daemon.WaitFor("change", 1, r.Pump)[0].Message;
                r.Daemon.Broadcast(r.Daemon.Ack(first["request_id"], (List<object>)first["changes"], "uuid", ItemStatus.Queued));
                r.Daemon.SendResult(Guid.NewGuid().ToString(), r.Daemon.NextSeq(), BatchOutcome.Committed, objs.Values.Select(o => o.Uuid));
                Check.Eventually(() => objs.Values.All(o => !r.Engine.IsInFlight(o.Uuid)) && r.Engine.BatchResults == 1, TimeSpan.FromSeconds(5), name + ": set up", r.Pump);
                var byUuid = objs.ToDictionary(kv => kv.Value.Uuid, kv => kv.Key);
                var peers = new List<object>();
                var received = new Dictionary<string, string>(); // scenario batch name -> batch id
                var committedAt = new Dictionary<string, long>(); // object -> seq of its last committed result
                List<string> kept = null;
                Dictionary<string, string> live = null;

                var steps = ((List<object>)scenario["steps"]).Cast<Dictionary<string, object>>().ToList();
                for (int i = 0; i < steps.Count; i++)
                {
                    var step = steps[i];
                    string where = name + ", step " + i + " (" + step["do"] + ")";
                    int seen = r.Daemon.Received("change").Count;
                    switch ((string)step["do"])
                    {
                        case "edit":
                            foreach (var n in Strings(step["objects"]))
                            {
                                var o = objs[n];
                                // A move (fast-path, PROTOCOL §6.6), or with `slow` a recolour.
                                if (step.ContainsKey("slow") && (bool)step["slow"])
                                    o.Material = new MaterialState { BaseColor = new[] { (o.Material == null ? 0.0 : o.Material.BaseColor[0] + 0.125) % 1.0, 0, 0, 1 } };
                                else o.Position = new[] { o.Position[0] + 1, o.Position[1], o.Position[2] };
                                r.Engine.MarkDirty(o.Uuid);
                            }
                            break;
                        case "ack":
                            {
                                // Each object's last change; one ack per change message, in order.
                                var results = (Dictionary<string, object>)step["results"];
                                var frames = r.Daemon.Received("change");
                                var answered = new List<Frame>();
                                foreach (var n in results.Keys)
                                {
                                    var f = frames.Last(x => ((List<object>)x.Message["changes"]).Cast<Dictionary<string, object>>().Any(op => (string)op["uuid"] == objs[n].Uuid));
                                    if (!answered.Contains(f)) answered.Add(f);
                                }
                                foreach (var f in answered.OrderBy(x => frames.IndexOf(x)))
                                {
                                    var res = new List<object>();
                                    foreach (Dictionary<string, object> op in (List<object>)f.Message["changes"])
                                    {
                                        object st;
                                        string status = results.TryGetValue(byUuid[(string)op["uuid"]], out st) ? (string)st : ItemStatus.Queued;
                                        res.Add(status == ItemStatus.Queued
                                            ? new Dictionary<string, object> { { "uuid", op["uuid"] }, { "status", ItemStatus.Queued } }
                                            : new Dictionary<string, object> { { "uuid", op["uuid"] }, { "status", ItemStatus.Error }, { "error_code", status }, { "message", "scenario" } });
                                    }
                                    r.Daemon.Broadcast(new Dictionary<string, object> { { "type", MessageType.Ack }, { "request_id", f.Message["request_id"] }, { "seq", r.Daemon.Seq }, { "results", res } });
                                }
                                break;
                            }
                        case "batch_result":
                            {
                                string batchId = step.ContainsKey("batch") ? received[(string)step["batch"]] : Guid.NewGuid().ToString();
                                var m = new Dictionary<string, object>
                                {
                                    { "type", MessageType.BatchResult }, { "batch_id", batchId }, { "seq", r.Daemon.NextSeq() },
                                    { "outcome", step["outcome"] }, { "uuids", Strings(step["objects"]).Select(n => (object)objs[n].Uuid).ToList() },
                                };
                                foreach (var k in new[] { "error_code", "kept_local", "reason" }) if (step.ContainsKey(k)) m[k] = step[k];
                                if (step.ContainsKey("through"))
                                {
                                    // The objects whose last change the result ends: their last change request.
                                    var through = new Dictionary<string, object>();
                                    var frames = r.Daemon.Received("change");
                                    foreach (var n in Strings(step["through"]))
                                        through[objs[n].Uuid] = frames.Last(x => ((List<object>)x.Message["changes"]).Cast<Dictionary<string, object>>().Any(op => (string)op["uuid"] == objs[n].Uuid)).Message["request_id"];
                                    m["through"] = through;
                                }
                                if ((string)step["outcome"] == BatchOutcome.Committed && !step.ContainsKey("batch"))
                                    foreach (var n in Strings(step["objects"])) committedAt[n] = (long)m["seq"];
                                r.Daemon.Broadcast(m);
                                break;
                            }
                        case "batch":
                            {
                                // Another editor's change of these objects, forwarded to this editor as a participant.
                                var moves = Strings(step["objects"]).Select(n => new Dictionary<string, object>
                                {
                                    { "op", Ops.Transform }, { "uuid", objs[n].Uuid }, { "t", Msg.List(9, 9, 9) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) },
                                }).ToArray();
                                int answered = r.Daemon.Received("applied").Count;
                                received[(string)step["id"]] = r.Daemon.SendBatch(r.Daemon.NextSeq(), BatchPath.Fast, moves);
                                r.Daemon.WaitFor("applied", answered + 1, r.Pump);
                                break;
                            }
                        case "live":
                            {
                                // Another editor's live preview (a transform), one object at a time.
                                live = new Dictionary<string, string>();
                                foreach (var n in Strings(step["objects"]))
                                {
                                    long before = r.Engine.LiveApplied + r.Engine.LiveDropped, applied = r.Engine.LiveApplied;
                                    r.Daemon.Broadcast(new Dictionary<string, object>
                                    {
                                        { "type", MessageType.Live }, { "origin", ClientKind.Blender },
                                        { "change", new Dictionary<string, object> { { "op", Ops.Transform }, { "uuid", objs[n].Uuid }, { "t", Msg.List(5, 5, 5) }, { "r", Msg.List(0, 0, 0, 1) }, { "s", Msg.List(1, 1, 1) } } },
                                    });
                                    Check.Eventually(() => r.Engine.LiveApplied + r.Engine.LiveDropped > before, TimeSpan.FromSeconds(5), where + ": live handled", r.Pump);
                                    live[n] = r.Engine.LiveApplied > applied ? "applied" : "dropped";
                                }
                                break;
                            }
                        case "replay":
                            {
                                // A resync batch with other states (position 7, 7, 7 in Unity's frame).
                                long seq = step.ContainsKey("stale") && (bool)step["stale"] ? committedAt[Strings(step["objects"])[0]] - 1 : r.Daemon.NextSeq();
                                var creates = Strings(step["objects"]).Select(n =>
                                {
                                    var st = r.Scene.Capture(objs[n].Uuid).Clone();
                                    st.T = new[] { 7.0, 7, -7 };
                                    return st.ToCreateOp();
                                }).ToArray();
                                int answered = r.Daemon.Received("applied").Count;
                                string id = r.Daemon.SendBatch(seq, BatchPath.Resync, creates);
                                r.Daemon.WaitFor("applied", answered + 1, r.Pump);
                                int ev = r.EventFields.FindIndex(f => r.Events[r.EventFields.IndexOf(f)] == "replay_kept_local" && (string)f["batch_id"] == id);
                                kept = ev < 0 ? new List<string>() : ((List<object>)r.EventFields[ev]["uuids"]).Select(u => byUuid[(string)u]).ToList();
                                foreach (var n in Strings(step["objects"]))
                                    Check.True(kept.Contains(n) == !StateDiff.Near(objs[n].Position, new[] { 7.0, 7, 7 }, 1e-9), where + ": " + n + " applied or kept as reported");
                                break;
                            }
                        case "peers":
                            peers.Add(new Dictionary<string, object> { { "session_id", Guid.NewGuid().ToString() }, { "client", ClientKind.Blender }, { "client_id", "scenario" } });
                            r.Daemon.Broadcast(new Dictionary<string, object>
                            {
                                { "type", MessageType.Peers }, { "project_id", "demo" }, { "peers", new List<object>(peers) }, { "other_projects", new List<object>() },
                            });
                            break;
                        case "refused":
                            {
                                // The daemon refuses the last change as a whole (an `error`).
                                var last = r.Daemon.Received("change").Last();
                                r.Daemon.Broadcast(new Dictionary<string, object>
                                {
                                    { "type", MessageType.Error }, { "code", step["code"] }, { "message", "scenario" }, { "request_id", last.Message["request_id"] },
                                });
                                break;
                            }
                        case "safe_mode":
                            r.Daemon.Broadcast(new Dictionary<string, object> { { "type", MessageType.SafeMode }, { "active", step["active"] }, { "reason", "scenario" } });
                            break;
                        case "released":
                            r.Daemon.Broadcast(new Dictionary<string, object>
                            {
                                { "type", MessageType.QuarantineReleased }, { "uuids", Strings(step["objects"]).Select(n => (object)objs[n].Uuid).ToList() },
                            });
                            break;
                        default:
                            throw new AssertionException(where + ": unknown step");
                    }
                    var want = (Dictionary<string, object>)step["expect"];
                    var wantSent = ((List<object>)want["sent"]).Select(m => Describe(((List<object>)m).Select(p => (List<object>)p).Select(p => (string)p[0] + " " + (string)p[1]))).ToList();
                    var wantFlight = Describe(Strings(want["in_flight"]));
                    var wantNotSynced = Describe(((Dictionary<string, object>)want["not_synced"]).Select(kv => kv.Key + ": " + kv.Value));
                    Func<List<string>> sent = () => r.Daemon.Received("change").Skip(seen).Select(f => Describe(OpsOf(f, byUuid))).ToList();
                    Func<string> flight = () => Describe(objs.Where(kv => r.Engine.IsInFlight(kv.Value.Uuid)).Select(kv => kv.Key));
                    Func<string> notSynced = () => Describe(r.Engine.NotSynced.Where(kv => byUuid.ContainsKey(kv.Key)).Select(kv => byUuid[kv.Key] + ": " + kv.Value));
                    Check.Eventually(() => sent().Count >= wantSent.Count && flight() == wantFlight && notSynced() == wantNotSynced,
                        TimeSpan.FromSeconds(5), where + ": want sent " + string.Join(" / ", wantSent) + ", in flight [" + wantFlight + "], not synced [" + wantNotSynced + "]", r.Pump);
                    r.Settle(100); // nothing more follows
                    Check.Equal(string.Join(" / ", wantSent), string.Join(" / ", sent()), where + ": sent");
                    Check.Equal(wantFlight, flight(), where + ": in flight");
                    Check.Equal(wantNotSynced, notSynced(), where + ": not synced");
                    if (want.ContainsKey("live"))
                        Check.Equal(Describe(((Dictionary<string, object>)want["live"]).Select(kv => kv.Key + " " + kv.Value)), Describe(live.Select(kv => kv.Key + " " + kv.Value)), where + ": live preview");
                    if (want.ContainsKey("kept")) Check.Equal(Describe(Strings(want["kept"])), Describe(kept), where + ": kept by the replay");
                }
            }
        }

        /// <summary>A change message as "name op" per object: `create` (full state) or `edit`.</summary>
        static IEnumerable<string> OpsOf(Frame f, Dictionary<string, string> byUuid)
        {
            var ops = ((List<object>)f.Message["changes"]).Cast<Dictionary<string, object>>().ToList();
            return ops.Select(op => (string)op["uuid"]).Distinct().Select(u =>
                byUuid[u] + " " + (ops.Any(op => (string)op["uuid"] == u && (string)op["op"] == Ops.Create) ? "create" : "edit"));
        }

        static string Describe(IEnumerable<string> items) { return string.Join(", ", items.OrderBy(x => x, StringComparer.Ordinal).ToArray()); }
    }
}
#endif
